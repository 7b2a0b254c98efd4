//! r3mes-client: a node's gRPC API as seen from outside the node.
//!
//! [`NodeClient`] connects to a node's `Msg` and `Query` services, signs
//! messages with a key's next sequence and the chain's next block time,
//! sends them and reports the committed outcome; [`responder`] is the
//! miner-side availability responder that watches a node for challenges
//! to one address and answers them from a content store over that API
//! (the same proofs as the in-node duty in `r3mes-worker`, which reads the
//! keeper directly instead).
//!
//! This crate holds no chain state and produces no blocks: everything it
//! knows it asks the node.

pub mod aggregation;
pub mod content;
pub mod models;
pub mod node;
pub mod responder;

pub use node::{NodeClient, Outcome};
pub use responder::{Responder, ResponderReport};

/// Every way a client call can fail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The node could not be reached.
    #[error("connecting to {url}: {reason}")]
    Connect {
        /// The node's URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The node refused a call (admission, a bad argument, not found, ...).
    #[error("{call}: {code:?}: {message}")]
    Refused {
        /// Which call.
        call: &'static str,
        /// The gRPC status code.
        code: tonic::Code,
        /// The node's message.
        message: String,
    },
    /// The transaction was included but the keeper refused it (nothing
    /// changed).
    #[error("the transaction failed in block {height}: {log} (code {code})")]
    Failed {
        /// The block that held it.
        height: u64,
        /// The keeper's error code.
        code: u32,
        /// The keeper's message.
        log: String,
    },
    /// The node answered something this client cannot read.
    #[error("the node's answer to {call} is malformed: {reason}")]
    Malformed {
        /// Which call.
        call: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Content fetched from IPFS is missing, too large or not what its CID
    /// names.
    #[error("content {cid}: {reason}")]
    Content {
        /// The CID asked for.
        cid: String,
        /// What is wrong.
        reason: String,
    },
    /// Something the caller needs is not on chain (yet).
    #[error("{0}")]
    Missing(String),
    /// Not possible before a height.
    #[error("{what}")]
    NotYet {
        /// What and why.
        what: String,
        /// The height from which it is.
        height: u64,
    },
    /// Aggregation refused its inputs.
    #[error("aggregating: {0}")]
    Aggregate(String),
    /// Signing failed.
    #[error("signing: {0}")]
    Sign(#[from] r3mes_chain::Error),
    /// Building answers failed as a whole.
    #[error("answering challenges: {0}")]
    Worker(#[from] r3mes_worker::Error),
}

impl Error {
    fn refused(call: &'static str, status: tonic::Status) -> Self {
        Error::Refused {
            call,
            code: status.code(),
            message: status.message().to_owned(),
        }
    }
}

/// This crate's result.
pub type Result<T> = std::result::Result<T, Error>;
