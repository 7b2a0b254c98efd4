//! UnixFS decoding never panics; decoded file nodes survive a re-encode.
#![no_main]

use libfuzzer_sys::fuzz_target;
use r3mes_ipfs::unixfs::UnixFsData;

fuzz_target!(|data: &[u8]| {
    if let Ok(decoded) = UnixFsData::decode(data) {
        let again = UnixFsData::decode(&decoded.encode()).expect("re-encoded data decodes");
        assert_eq!(again, decoded);
    }
});
