//! Fuzzes the r3mes protobuf decoder: any bytes give a gradient or an error,
//! never a panic or an allocation past the (small) limits; whatever decodes
//! encodes and decodes back to the same gradient.
#![no_main]

use libfuzzer_sys::fuzz_target;
use r3mes_tensor::{Limits, protobuf};

fn limits() -> Limits {
    Limits {
        max_decompressed_bytes: 1 << 20,
        max_elements: 1 << 20,
        max_depth: 32,
        max_memo_entries: 1 << 12,
        max_string_bytes: 1 << 16,
        max_tensors: 256,
        max_header_bytes: 1 << 16,
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(gradient) = protobuf::decode(data, &limits()) {
        let bytes = protobuf::encode(&gradient).expect("a decoded gradient encodes");
        let again =
            protobuf::decode(&bytes, &Limits::default()).expect("an encoded gradient decodes");
        assert_eq!(again, gradient);
    }
});
