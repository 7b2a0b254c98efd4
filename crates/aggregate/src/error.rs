//! Errors of aggregation.

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An adapters file is malformed or does not fit.
    #[error("adapters file: {0}")]
    Adapters(String),
    /// A training-state file is malformed or does not fit the adapters.
    #[error("training state: {0}")]
    State(String),
    /// Nothing to aggregate.
    #[error("no gradient to aggregate: {0}")]
    Empty(String),
    /// Writing the gradient file failed.
    #[error("gradient file: {0}")]
    Gradient(#[from] r3mes_tensor::Error),
}

/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
