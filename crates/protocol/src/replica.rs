//! Proof-of-Replication replica encoding: how a miner turns the data it stores
//! into its own replica, whose CID the chain records in
//! `ProofOfReplication { data CID, replica CID, replication_id, miner }`.
//!
//! The replication id is `sha256(miner_address_utf8 || data_hash)`, where
//! `data_hash` is the binary CID of the data (`cid.to_bytes()`). The replica is
//! the data XORed with a keystream: IETF ChaCha20 keyed with the replication
//! id, a nonce of 12 zero bytes, and the block counter starting at 0. The
//! keystream is seekable, so a file of any size is encoded (and decoded) piece
//! by piece at any offset, and applying the same function again gives the data
//! back. The stream holds [`MAX_REPLICA_LEN`] bytes (ChaCha20's 32-bit block
//! counter); content past that is refused, never wrapped around.
//!
//! # What this proves, and what it does not
//!
//! A miner that answers availability challenges on its replica's DAG shows it
//! holds the replica bytes, or can produce them on demand. Because the
//! encoding is fast and public, a miner holding only the original data (or
//! fetching it from elsewhere when challenged) can regenerate any replica leaf
//! in microseconds. So without slow, time-hard sealing this is **not** a proof
//! of unique physical replication: it does not show that each miner keeps its
//! own copy on its own disk. What it does is make the replicas of different
//! miners distinct content with distinct CIDs, so they cannot share a single
//! stored copy by CID, and make serving many replicas from one shared copy of
//! the data cost a recomputation of the keystream on every challenge.

use chacha20::ChaCha20;
use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use sha2::{Digest, Sha256};

use crate::ProtocolError;

/// Bytes of keystream one replication id gives: 2^32 - 1 ChaCha20 blocks of
/// 64 bytes (the 32-bit block counter cannot pass its last value), just under
/// 256 GiB.
pub const MAX_REPLICA_LEN: u64 = (u32::MAX as u64) * 64;

/// The replication id of `miner`'s replica of the data whose binary CID is
/// `data_hash`: `sha256(miner_address_utf8 || data_hash)`.
pub fn replication_id(miner: &str, data_hash: &[u8]) -> [u8; 32] {
    let digest = Sha256::new()
        .chain_update(miner.as_bytes())
        .chain_update(data_hash)
        .finalize();
    let mut id = [0u8; 32];
    id.copy_from_slice(&digest);
    id
}

/// XORs `buf` in place with the keystream of `replication_id`, as if `buf`
/// sat at byte `offset` of the data: encodes data into replica bytes and
/// decodes replica bytes back into data. Fails, leaving `buf` untouched, when
/// `offset + buf.len()` passes [`MAX_REPLICA_LEN`].
pub fn apply_keystream(
    replication_id: &[u8; 32],
    offset: u64,
    buf: &mut [u8],
) -> Result<(), ProtocolError> {
    let len = buf.len() as u64;
    let too_long = || ProtocolError::ReplicaTooLong { offset, len };
    let end = offset.checked_add(len).ok_or_else(too_long)?;
    if end > MAX_REPLICA_LEN {
        return Err(too_long());
    }
    let mut cipher = ChaCha20::new(replication_id.into(), &[0u8; 12].into());
    cipher.try_seek(offset).map_err(|_| too_long())?;
    cipher.try_apply_keystream(buf).map_err(|_| too_long())
}

/// The replica of `data` (the whole content, from offset 0) under
/// `replication_id`; applied to a replica it gives the data back.
pub fn encode_replica(replication_id: &[u8; 32], data: &[u8]) -> Result<Vec<u8>, ProtocolError> {
    let mut out = data.to_vec();
    apply_keystream(replication_id, 0, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn encoding_twice_is_identity() {
        let id = replication_id("remes1miner", b"\x12\x20cid bytes");
        let data = sample(10_000);
        let replica = encode_replica(&id, &data).unwrap();
        assert_ne!(replica, data);
        assert_eq!(encode_replica(&id, &replica).unwrap(), data);
    }

    #[test]
    fn distinct_miners_get_distinct_replicas() {
        let cid = b"\x01\x70\x12\x20some data cid";
        let data = sample(4096);
        let a = replication_id("remes1alice", cid);
        let b = replication_id("remes1bob", cid);
        assert_ne!(a, b);
        let (ra, rb) = (
            encode_replica(&a, &data).unwrap(),
            encode_replica(&b, &data).unwrap(),
        );
        assert_ne!(ra, rb);
        // Every 64-byte block differs, not only some.
        for (x, y) in ra.chunks(64).zip(rb.chunks(64)) {
            assert_ne!(x, y);
        }
        // The same miner on other data gets another id too.
        assert_ne!(a, replication_id("remes1alice", b"\x01\x55other"));
    }

    #[test]
    fn replication_id_is_sha256_of_miner_then_cid() {
        let id = replication_id("remes1miner", &[1, 0x55]);
        let expected: [u8; 32] = Sha256::digest(b"remes1miner\x01\x55").into();
        assert_eq!(id, expected);
    }

    #[test]
    fn the_end_of_the_keystream_is_refused_not_wrapped() {
        let id = [7u8; 32];
        let mut buf = [0u8; 10];
        apply_keystream(&id, MAX_REPLICA_LEN - 10, &mut buf).unwrap();
        let mut buf = [0u8; 11];
        let err = apply_keystream(&id, MAX_REPLICA_LEN - 10, &mut buf).unwrap_err();
        assert!(
            matches!(err, ProtocolError::ReplicaTooLong { len: 11, .. }),
            "{err}"
        );
        assert_eq!(buf, [0u8; 11], "untouched on error");
        assert!(apply_keystream(&id, u64::MAX, &mut [0u8; 2]).is_err());
        // An empty buffer at the very end is fine.
        apply_keystream(&id, MAX_REPLICA_LEN, &mut []).unwrap();
    }

    proptest! {
        #[test]
        fn seeking_equals_one_shot(
            len in 0usize..2_000,
            cuts in proptest::collection::vec(any::<usize>(), 0..6),
            miner in "[a-z0-9]{1,20}",
            start in 0u64..1_000_000,
        ) {
            let id = replication_id(&miner, b"data cid");
            let data = sample(len);
            let mut whole = data.clone();
            apply_keystream(&id, start, &mut whole).unwrap();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (len + 1)).collect();
            cuts.push(0);
            cuts.push(len);
            cuts.sort_unstable();
            let mut pieces = data.clone();
            for w in cuts.windows(2) {
                apply_keystream(&id, start + w[0] as u64, &mut pieces[w[0]..w[1]]).unwrap();
            }
            prop_assert_eq!(&pieces, &whole);
            apply_keystream(&id, start, &mut pieces).unwrap();
            prop_assert_eq!(pieces, data);
        }
    }
}
