//! Deterministic assignment of miners to data shards.
//!
//! A miner's shard for a round is derived from its wallet address, the block
//! hash pinned at the round's start, and the round number, so any node at any
//! later height recomputes the same shard without extra state.

use sha2::{Digest, Sha256};

use crate::ProtocolError;

/// The shard, in `0..total_shards`, that `wallet` trains on in round `round_id`.
///
/// Byte for byte the seed's Go `AssignShard`:
/// `sha256(wallet || block_hash || round_id)`, with `round_id` as 8 bytes
/// big-endian (the seed's `uint64ToBytes` is not shown; we take
/// `binary.BigEndian.PutUint64`, the usual Go idiom and the same order the
/// seed uses to read the digest). The first 8 bytes of the digest, read
/// big-endian, are reduced modulo `total_shards`.
///
/// The parts are joined without length prefixes, as in the seed, so the
/// result stays compatible with it; the block hash has a fixed length in
/// practice, which keeps the concatenation unambiguous.
///
/// Returns [`ProtocolError::ZeroShards`] when `total_shards` is zero.
pub fn assign_shard(
    wallet: &str,
    block_hash: &[u8],
    round_id: u64,
    total_shards: u64,
) -> Result<u64, ProtocolError> {
    if total_shards == 0 {
        return Err(ProtocolError::ZeroShards);
    }
    let digest = Sha256::new()
        .chain_update(wallet.as_bytes())
        .chain_update(block_hash)
        .chain_update(round_id.to_be_bytes())
        .finalize();
    let mut prefix = [0u8; 8];
    prefix.copy_from_slice(&digest[..8]);
    Ok(u64::from_be_bytes(prefix) % total_shards)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    // With total_shards = u64::MAX the result is the raw 8-byte prefix (unless
    // it happens to equal u64::MAX), so these vectors pin the byte order of
    // both the round id and the digest read, not only the final modulo.
    #[test]
    fn matches_python_hashlib() {
        // python3 -c "import hashlib,struct; d=hashlib.sha256(b'remes1qyfkm2y3j9v6wz'+bytes(range(32))+struct.pack('>Q',7)).digest(); v=int.from_bytes(d[:8],'big'); print(v, v%1000)"
        // -> 1944417024448953694 694
        let block_hash: Vec<u8> = (0..32).collect();
        let wallet = "remes1qyfkm2y3j9v6wz";
        assert_eq!(
            assign_shard(wallet, &block_hash, 7, u64::MAX),
            Ok(1_944_417_024_448_953_694)
        );
        assert_eq!(assign_shard(wallet, &block_hash, 7, 1000), Ok(694));

        // python3 -c "import hashlib,struct; d=hashlib.sha256(b''+b''+struct.pack('>Q',0)).digest(); v=int.from_bytes(d[:8],'big'); print(v, v%1000)"
        // -> 12634128529936681850 850
        assert_eq!(
            assign_shard("", &[], 0, u64::MAX),
            Ok(12_634_128_529_936_681_850)
        );
        assert_eq!(assign_shard("", &[], 0, 1000), Ok(850));
    }

    #[test]
    fn zero_shards_is_an_error() {
        assert_eq!(
            assign_shard("remes1abc", &[0; 32], 1, 0),
            Err(ProtocolError::ZeroShards)
        );
    }

    #[test]
    fn a_single_shard_takes_everyone() {
        assert_eq!(assign_shard("remes1abc", &[7; 32], 99, 1), Ok(0));
    }

    proptest! {
        #[test]
        fn always_in_range_and_repeatable(
            wallet in ".{0,64}",
            block_hash in proptest::collection::vec(any::<u8>(), 0..64),
            round_id in any::<u64>(),
            total_shards in 1u64..=u64::MAX,
        ) {
            let shard = assign_shard(&wallet, &block_hash, round_id, total_shards)?;
            prop_assert!(shard < total_shards);
            prop_assert_eq!(assign_shard(&wallet, &block_hash, round_id, total_shards)?, shard);
        }
    }
}
