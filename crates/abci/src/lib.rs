//! r3mes-abci: the keeper behind CometBFT (DESIGN.md decision 8).
//!
//! Serves ABCI 2.0 (CometBFT v0.38: `Info`, `InitChain`, `CheckTx`,
//! `PrepareProposal`, `ProcessProposal`, `FinalizeBlock`, `Commit`, `Query`,
//! and empty answers for vote extensions and state sync) over the socket
//! protocol with the official message types (`tendermint-proto`), so many
//! validators can run the keeper under CometBFT's consensus. The same
//! transactions in the same blocks give the same app hashes as the node's
//! own block producer: both drive [`r3mes_chain::Keeper`] the same way.
//!
//! - [`codec`]: the uvarint length-prefixed framing;
//! - [`app`]: requests mapped onto the keeper (heights, hashes, errors);
//! - [`journal`]: the durable record of the last `FinalizeBlock`, for
//!   crashes between `FinalizeBlock` and `Commit`;
//! - [`server`]: the TCP server, one thread per CometBFT connection;
//! - [`client`]: a blocking client of the socket protocol, for tools and
//!   tests that drive an application the way CometBFT does.

pub mod app;
pub mod client;
pub mod codec;
pub mod journal;
pub mod server;

pub use app::{App, CommitHook, CommittedBlock};
pub use server::{Limits, Server};

/// Why a connection could not be served.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The socket failed.
    #[error("ABCI socket: {0}")]
    Io(#[from] std::io::Error),
    /// A length prefix over the limit.
    #[error("ABCI message of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// The announced length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// A length prefix longer than a u64 varint.
    #[error("malformed ABCI length prefix (more than 10 varint bytes)")]
    BadLength,
    /// The stream ended inside a message.
    #[error("ABCI stream ended inside a message")]
    Truncated,
    /// The bytes are not an ABCI request.
    #[error("undecodable ABCI message: {0}")]
    Decode(String),
    /// The keeper could not be opened.
    #[error("keeper: {0}")]
    Chain(#[from] r3mes_chain::Error),
    /// The record of the last `FinalizeBlock` does not fit the keeper.
    #[error("FinalizeBlock record: {0}")]
    Journal(String),
}
