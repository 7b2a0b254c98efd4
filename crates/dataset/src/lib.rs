//! r3mes-dataset: training data as the protocol sees it.
//!
//! Text becomes tokens ([`Tokenizer`]: byte-level, token = byte value and
//! vocabulary 256, or a Hugging Face `tokenizer.json` whose ids fit 16
//! bits), tokens are cut into chunks of exactly [`CHUNK_TOKENS`] (2048, the
//! seed's `FIXED_CHUNK_SIZE_TOKENS`), and chunks are grouped into shards.
//! The protocol never splits or shortens a chunk: the last chunk of a
//! dataset is filled up with the tokenizer's pad id ([`PAD_TOKEN`] for
//! bytes) and its loss mask marks the
//! padding as not counted, so every chunk a miner trains on is 2048 tokens
//! and its loss covers only real text.
//!
//! Each chunk is its own content-addressed file (the [`chunk`] format), so
//! the `data_hash` a gradient names is the CID of exactly the tokens it was
//! trained on, and a shard is a directory of chunk files
//! (`datasets/shards/{name}/shard_{k}/chunk_{i}`). This crate makes and
//! reads the bytes; adding them to IPFS and signing the dataset's metadata
//! is the CLI's and the chain's work.

pub mod chunk;
pub mod split;
pub mod tokenizer;

pub use chunk::{Chunk, decode_chunk, encode_chunk};
pub use split::{Shard, byte_tokens, shards_of, split_into_chunks, split_into_chunks_with_pad};
pub use tokenizer::{JsonTokenizer, Tokenizer};

/// Tokens in a chunk: the protocol's fixed chunk size.
pub const CHUNK_TOKENS: usize = r3mes_protocol::chunk::FIXED_CHUNK_SIZE_TOKENS as usize;

/// The token that fills a byte-level dataset's last chunk (masked out of
/// the loss); a `tokenizer.json` has its own (see [`tokenizer`]).
pub const PAD_TOKEN: u16 = 0;

/// Every way dataset bytes can be wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A chunk file is malformed.
    #[error("chunk file: {0}")]
    Malformed(String),
    /// A chunk does not hold exactly 2048 tokens (the seed's message).
    #[error("Invalid chunk size: {0} (expected 2048)")]
    InvalidChunkSize(usize),
    /// Nothing to make a dataset of.
    #[error("no tokens: the inputs are empty")]
    Empty,
    /// A shard size of zero chunks.
    #[error("chunks per shard must be at least 1")]
    ZeroShardSize,
    /// A `tokenizer.json` that cannot be used, or text it cannot encode.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
}

/// This crate's result.
pub type Result<T> = std::result::Result<T, Error>;
