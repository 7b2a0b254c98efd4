//! The one error type of r3mes-verify. Every variant says what failed and why.

use r3mes_ipfs::Cid;

/// Errors of vault handling and gradient verification.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A vault file is malformed, hostile or breaks a rule of the format.
    #[error("invalid vault: {0}")]
    Vault(String),
    /// A vault file could not be read or written.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A block of the gradient's DAG is in no store this validator can reach.
    #[error(
        "gradient {gradient}: block {block} is missing from the content store (the miner's data is not available)"
    )]
    MissingBlock {
        /// Root CID of the gradient.
        gradient: Box<Cid>,
        /// The missing block.
        block: Box<Cid>,
    },
    /// The content store failed or returned bad data (corrupt blocks included).
    #[error("gradient {gradient}: {source}")]
    Content {
        /// Root CID of the gradient.
        gradient: Box<Cid>,
        /// What the store said.
        #[source]
        source: Box<r3mes_ipfs::Error>,
    },
    /// The gradient file (or a reference gradient given to the generator) is not readable.
    #[error("{context}: {source}")]
    Gradient {
        /// Which file.
        context: String,
        /// What the tensor crate said.
        #[source]
        source: Box<r3mes_tensor::Error>,
    },
    /// A gradient without a header index is larger than a full download may be.
    #[error(
        "gradient {gradient}: {format} file of {size} bytes exceeds the full-download limit of {limit} bytes"
    )]
    TooLarge {
        /// Root CID of the gradient.
        gradient: Box<Cid>,
        /// Its format.
        format: &'static str,
        /// Its size.
        size: u64,
        /// The configured limit.
        limit: u64,
    },
    /// Options that cannot be used together or values out of range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The OS random number generator failed.
    #[error("no secure randomness for the vault seed: {0}")]
    Randomness(String),
    /// A background task panicked or was cancelled.
    #[error("verification task failed: {0}")]
    Task(String),
}

impl Error {
    /// Wraps an I/O error with the operation that failed.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// A content-store error met while reading `gradient`, missing blocks named as such.
    pub fn content(gradient: Cid, source: r3mes_ipfs::Error) -> Self {
        match source {
            r3mes_ipfs::Error::BlockNotFound(block) => Error::MissingBlock {
                gradient: Box::new(gradient),
                block: Box::new(block),
            },
            source => Error::Content {
                gradient: Box::new(gradient),
                source: Box::new(source),
            },
        }
    }

    /// A tensor-crate error about the file described by `context`.
    pub fn gradient(context: impl Into<String>, source: r3mes_tensor::Error) -> Self {
        Error::Gradient {
            context: context.into(),
            source: Box::new(source),
        }
    }
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
