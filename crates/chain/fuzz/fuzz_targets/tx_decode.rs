//! Arbitrary bytes through `SignedTx::decode` and `verify`: never panics,
//! and whatever decodes is canonical (re-encodes to the same bytes).

#![no_main]

use libfuzzer_sys::fuzz_target;
use r3mes_chain::SignedTx;

fuzz_target!(|data: &[u8]| {
    if let Ok(tx) = SignedTx::decode(data, 64 * 1024) {
        assert_eq!(tx.encode(), data);
        let chain_id = tx.as_proto().chain_id.clone();
        let sequence = tx.as_proto().sequence;
        let ts = tx.as_proto().timestamp_ms;
        let _ = tx.verify(&chain_id, sequence, ts, 0);
        let _ = tx.verify("r3mes-1", 0, 0, u64::MAX);
    }
});
