//! [`Error`]: the one error type of the crate. Every fallible function of
//! `r3mes-miner` returns it; nothing in the crate panics on input.

use crate::chunk::FIXED_CHUNK_SIZE;

/// Everything that can go wrong in the miner's model and chunk processor.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A chunk that is not exactly [`FIXED_CHUNK_SIZE`] tokens. The message is
    /// the seed's `ChunkProcessor` error, word for word.
    #[error("Invalid chunk size: {got} (expected {expected})", expected = FIXED_CHUNK_SIZE)]
    InvalidChunkSize {
        /// Number of tokens received.
        got: usize,
    },
    /// A loss mask whose length differs from the chunk's.
    #[error("loss mask has {got} entries, the chunk has {expected} tokens")]
    MaskLength {
        /// Mask entries received.
        got: usize,
        /// Tokens in the chunk.
        expected: usize,
    },
    /// The loss mask leaves no target token to train on.
    #[error("the loss mask leaves no target token in the chunk")]
    EmptyChunk,
    /// A token id outside the vocabulary.
    #[error("token {token} at position {position} is outside the vocabulary of {vocab}")]
    TokenOutOfRange {
        /// The offending id.
        token: u32,
        /// Its position in the chunk.
        position: usize,
        /// Vocabulary size of the model.
        vocab: usize,
    },
    /// A model, LoRA or chunk configuration outside the supported ranges.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A safetensors file (backbone or adapters) that cannot be loaded:
    /// malformed, over the limits, or not matching the configuration.
    #[error("invalid {what} file: {detail}")]
    Format {
        /// `backbone` or `lora adapters`.
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// Gradients or adapters that do not match the model they are applied to.
    #[error("shape mismatch for {name}: {detail}")]
    Shape {
        /// Tensor or layer name.
        name: String,
        /// Expected against found.
        detail: String,
    },
    /// A failure inside candle (forward or backward pass).
    #[error("tensor computation failed: {0}")]
    Candle(#[from] candle_core::Error),
    /// Reading or writing a model file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// A [`Error::Format`] for the backbone file.
    pub(crate) fn backbone(detail: impl Into<String>) -> Self {
        Self::Format {
            what: "backbone",
            detail: detail.into(),
        }
    }

    /// A [`Error::Format`] for the adapters file.
    pub(crate) fn lora(detail: impl Into<String>) -> Self {
        Self::Format {
            what: "lora adapters",
            detail: detail.into(),
        }
    }
}

/// `Result` with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
