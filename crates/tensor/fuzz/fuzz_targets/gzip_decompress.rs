//! Fuzzes gzip decompression under a small output limit, and the pickle
//! reader behind it: any bytes give data within the limit or an error,
//! never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use r3mes_tensor::{Limits, gzip, pickle};


fuzz_target!(|data: &[u8]| {
    let limits = Limits::tight();
    if let Ok(raw) = gzip::decompress(data, &limits) {
        assert!(raw.len() as u64 <= limits.max_decompressed_bytes);
        let _ = pickle::decode(&raw, &limits);
    }
});
