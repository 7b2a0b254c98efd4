//! Fuzzes the safetensors decoder: any bytes give a gradient or an error,
//! never a panic or an allocation past the (small) limits; whatever decodes
//! encodes and decodes back to the same tensors and metadata.
#![no_main]

use libfuzzer_sys::fuzz_target;
use r3mes_tensor::{Limits, safetensors_io};


fuzz_target!(|data: &[u8]| {
    if let Ok(gradient) = safetensors_io::decode(data, &Limits::tight()) {
        let bytes = safetensors_io::encode(&gradient).expect("a decoded gradient encodes");
        let again = safetensors_io::decode(&bytes, &Limits::default())
            .expect("an encoded gradient decodes");
        assert_eq!(again.metadata, gradient.metadata);
        assert_eq!(again.tensors.len(), gradient.tensors.len());
        for tensor in &gradient.tensors {
            assert_eq!(again.tensor(&tensor.name), Some(tensor));
        }
    }
});
