//! IPFS layout paths: parsing never panics, and whatever parses prints back
//! to exactly the same text (one spelling per path).
#![no_main]

use libfuzzer_sys::fuzz_target;
use r3mes_protocol::layout::ContentPath;

fuzz_target!(|text: &str| {
    if let Ok(path) = text.parse::<ContentPath>() {
        assert_eq!(path.to_string(), text);
    }
});
