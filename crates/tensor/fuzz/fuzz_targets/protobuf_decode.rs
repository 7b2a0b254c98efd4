//! Fuzzes the r3mes protobuf decoder: any bytes give a gradient or an error,
//! never a panic or an allocation past the (small) limits; whatever decodes
//! encodes and decodes back to the same gradient.
#![no_main]

use libfuzzer_sys::fuzz_target;
use r3mes_tensor::{Limits, protobuf};


fuzz_target!(|data: &[u8]| {
    if let Ok(gradient) = protobuf::decode(data, &Limits::tight()) {
        let bytes = protobuf::encode(&gradient).expect("a decoded gradient encodes");
        let again =
            protobuf::decode(&bytes, &Limits::default()).expect("an encoded gradient decodes");
        assert_eq!(again, gradient);
    }
});
