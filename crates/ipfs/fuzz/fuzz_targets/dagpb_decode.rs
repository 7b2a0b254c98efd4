//! dag-pb decoding never panics, and whatever decodes re-encodes to the same bytes
//! (the decoder accepts canonical encodings only).
#![no_main]

use libfuzzer_sys::fuzz_target;
use r3mes_ipfs::dagpb::PbNode;

fuzz_target!(|data: &[u8]| {
    if let Ok(node) = PbNode::decode(data) {
        assert_eq!(node.encode(), data);
    }
});
