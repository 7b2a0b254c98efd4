//! UnixFS directory decoding never panics; a directory that decodes
//! re-encodes to a block that decodes to the same entries, and `stat_node`
//! agrees that it is a directory.
#![no_main]

use libfuzzer_sys::fuzz_target;
use r3mes_ipfs::cids;
use r3mes_ipfs::directory::{Directory, EntryKind, stat_node};

fuzz_target!(|data: &[u8]| {
    let cid = cids::dag_pb_cid(0, cids::sha256_multihash(data));
    let stat = stat_node(&cid, data);
    if let Ok(dir) = Directory::decode(&cid, data) {
        assert_eq!(stat.map(|s| s.kind).ok(), Some(EntryKind::Directory));
        if let Ok(encoded) = dir.encode("/fuzz") {
            let again = Directory::decode(&encoded.cid, &encoded.block).expect("re-decodes");
            assert_eq!(again, dir);
        }
    }
});
