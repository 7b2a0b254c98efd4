//! CID parsing from text and bytes never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use r3mes_ipfs::cids;

fuzz_target!(|data: &[u8]| {
    let _ = cids::from_bytes(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = cids::parse(text);
    }
});
