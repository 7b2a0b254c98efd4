//! Fuzzes the chunk file decoder: any bytes give a chunk or an error, never
//! a panic; whatever decodes encodes back to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use r3mes_dataset::{decode_chunk, encode_chunk};

fuzz_target!(|data: &[u8]| {
    if let Ok(chunk) = decode_chunk(data) {
        assert_eq!(encode_chunk(&chunk), data);
    }
});
