//! The rules every R3MES participant must agree on: the fixed chunk size, the
//! retention classes, the layout of content paths, deterministic shard
//! assignment, and the replica encoding of Proof-of-Replication.
//!
//! Everything here is a pure function of its arguments: no I/O, no wall clock,
//! no floating point, so the chain's state machine can call it and every node
//! gets the same answer. This crate does not talk to IPFS, hold state, or
//! decode gradients; those live in `r3mes-ipfs`, `r3mes-chain` and
//! `r3mes-tensor`.

#![warn(missing_docs)]

pub mod chunk;
pub mod layout;
pub mod replica;
pub mod retention;
pub mod shard;

use layout::PathRejection;

/// Every way a protocol rule can reject its input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// A chunk record on chain does not carry exactly
    /// [`chunk::FIXED_CHUNK_SIZE_TOKENS`] tokens.
    #[error(
        "invalid chunk size: chunk must be exactly {expected} tokens, got {token_count}",
        expected = chunk::FIXED_CHUNK_SIZE_TOKENS
    )]
    InvalidChunkSize {
        /// The token count the chunk claimed.
        token_count: u64,
    },

    /// A miner received a chunk whose token list is not exactly
    /// [`chunk::FIXED_CHUNK_SIZE_TOKENS`] long.
    #[error(
        "Invalid chunk size: {len} (expected {expected})",
        expected = chunk::FIXED_CHUNK_SIZE_TOKENS
    )]
    InvalidChunkLength {
        /// The number of tokens actually received.
        len: usize,
    },

    /// A name does not match any [`retention::DataClass`].
    #[error(
        "unknown data class {0:?}: expected checkpoint_model, gradient_update or computation_trace"
    )]
    UnknownDataClass(String),

    /// A block time of zero was given where durations are converted to blocks.
    #[error("block time must be greater than zero milliseconds")]
    ZeroBlockTime,

    /// Shard assignment was asked to pick among zero shards.
    #[error("total shard count must be greater than zero")]
    ZeroShards,

    /// A content path, or a miner address or dataset name meant to be one of
    /// its segments, does not follow the layout in [`layout`].
    #[error("invalid content path {path:?}: {reason}")]
    InvalidPath {
        /// The path, address or name as given.
        path: String,
        /// Which rule it broke.
        reason: PathRejection,
    },

    /// Replica bytes were asked for past the end of the replica keystream
    /// ([`replica::MAX_REPLICA_LEN`] bytes).
    #[error(
        "replica range of {len} bytes at offset {offset} passes the keystream end ({max} bytes)",
        max = replica::MAX_REPLICA_LEN
    )]
    ReplicaTooLong {
        /// First byte of the range.
        offset: u64,
        /// Bytes in the range.
        len: u64,
    },
}
