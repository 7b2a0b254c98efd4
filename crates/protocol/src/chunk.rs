//! Fixed-size data chunks.
//!
//! The protocol hands out training data in chunks of exactly
//! [`FIXED_CHUNK_SIZE_TOKENS`] tokens and never splits them, so every gradient
//! is computed over a whole chunk and validators can reproduce it. Miners may
//! micro-batch a chunk locally; that is not visible here.

use serde::{Deserialize, Serialize};

use crate::ProtocolError;

/// The number of tokens in every chunk. Never changes.
pub const FIXED_CHUNK_SIZE_TOKENS: u64 = 2048;

/// A chunk as recorded on chain: its content hash and where it belongs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChunkData {
    /// Identifier of the chunk.
    pub chunk_id: u64,
    /// Content identifier (CID) of the chunk's data in the content store.
    pub data_hash: String,
    /// Number of tokens in the chunk; must equal [`FIXED_CHUNK_SIZE_TOKENS`].
    pub token_count: u64,
    /// The data shard the chunk was drawn from.
    pub shard_id: u64,
    /// The training window the chunk is used in.
    pub window_id: u64,
}

/// Chain-side check: the chunk record claims exactly
/// [`FIXED_CHUNK_SIZE_TOKENS`] tokens.
pub fn validate_chunk_size(chunk: &ChunkData) -> Result<(), ProtocolError> {
    if chunk.token_count != FIXED_CHUNK_SIZE_TOKENS {
        return Err(ProtocolError::InvalidChunkSize {
            token_count: chunk.token_count,
        });
    }
    Ok(())
}

/// Miner-side check: the received token list has exactly
/// [`FIXED_CHUNK_SIZE_TOKENS`] entries.
pub fn check_chunk_tokens(len: usize) -> Result<(), ProtocolError> {
    if u64::try_from(len) != Ok(FIXED_CHUNK_SIZE_TOKENS) {
        return Err(ProtocolError::InvalidChunkLength { len });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk_with(token_count: u64) -> ChunkData {
        ChunkData {
            chunk_id: 1,
            data_hash: "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG".to_owned(),
            token_count,
            shard_id: 2,
            window_id: 1000,
        }
    }

    #[test]
    fn accepts_exactly_the_fixed_size() {
        assert_eq!(validate_chunk_size(&chunk_with(2048)), Ok(()));
        assert_eq!(check_chunk_tokens(2048), Ok(()));
    }

    #[test]
    fn chain_error_reads_like_the_seed() {
        for bad in [0, 1, 1024, 2047, 2049, u64::MAX] {
            let err = validate_chunk_size(&chunk_with(bad)).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("invalid chunk size: chunk must be exactly 2048 tokens, got {bad}")
            );
        }
    }

    #[test]
    fn miner_error_reads_like_the_seed() {
        for bad in [0, 2047, 2049, usize::MAX] {
            let err = check_chunk_tokens(bad).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("Invalid chunk size: {bad} (expected 2048)")
            );
        }
    }

    #[test]
    fn json_uses_the_seed_field_names() {
        let json = serde_json::to_value(chunk_with(2048)).unwrap();
        let expected = serde_json::json!({
            "chunk_id": 1,
            "data_hash": "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG",
            "token_count": 2048,
            "shard_id": 2,
            "window_id": 1000,
        });
        assert_eq!(json, expected);
        let back: ChunkData = serde_json::from_value(json).unwrap();
        assert_eq!(back, chunk_with(2048));
    }
}
