//! Fuzzes gzip decompression under a small output limit, and the pickle
//! reader behind it: any bytes give data within the limit or an error,
//! never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use r3mes_tensor::{Limits, gzip, pickle};

fn limits() -> Limits {
    Limits {
        max_decompressed_bytes: 1 << 20,
        max_elements: 1 << 18,
        max_depth: 32,
        max_memo_entries: 1 << 12,
        max_string_bytes: 1 << 16,
        max_tensors: 256,
        max_header_bytes: 1 << 16,
    }
}

fuzz_target!(|data: &[u8]| {
    let limits = limits();
    if let Ok(raw) = gzip::decompress(data, &limits) {
        assert!(raw.len() as u64 <= limits.max_decompressed_bytes);
        let _ = pickle::decode(&raw, &limits);
    }
});
