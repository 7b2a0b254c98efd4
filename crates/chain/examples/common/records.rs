//! The synthetic records of the state-store benchmark and examples: a
//! 40-byte key and a 250-byte value per id, both derived from the id.

use std::ops::Range;

use r3mes_chain::state::BlockWriter;
use sha2::{Digest, Sha256};

/// A 40-byte record key: a table byte, the record id (big-endian) and 31
/// bytes of a hash of the id.
pub fn key(id: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(40);
    k.push(0x10);
    k.extend_from_slice(&id.to_be_bytes());
    k.extend_from_slice(&Sha256::digest(id.to_le_bytes())[..31]);
    k
}

/// A 250-byte record value derived from the id.
pub fn value(id: u64) -> Vec<u8> {
    let seed = Sha256::digest(id.to_be_bytes());
    (0..250u8).map(|i| seed[usize::from(i % 32)] ^ i).collect()
}

/// Stages the records of `ids` in `block`.
pub fn put_records(block: &mut BlockWriter<'_>, ids: Range<u64>) {
    for id in ids {
        block.put(&key(id), &value(id));
    }
}
