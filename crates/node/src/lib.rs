//! `r3mes-node`: the node daemon that turns the keeper (`r3mes-chain`) into
//! a running single-validator chain (issue 6).
//!
//! A node lives in a home directory ([`home`]): a config file, a genesis, a
//! keyring ([`keyring`]), the keeper's redb state and the embedded IPFS
//! repo. [`init`] writes a fresh home; [`node::start`] runs it:
//!
//! ```text
//! gRPC Msg ──admission checks──▶ mempool ──every block time──▶ producer
//!   ▲                            (per account, by sequence)    begin/deliver/end/commit
//!   └──────────── answer after commit ◀───────────────────────────┘
//!                                 committed events ──▶ SubscribeEvents, unpin, metrics
//! ```
//!
//! Transactions are acknowledged only after the block holding them is
//! committed durably, so a crash at any moment loses no acknowledged
//! transaction. After every block the configured duties run ([`duties`]:
//! the miner-side availability responder and the validator's verification
//! duty from `r3mes-worker`).
//!
//! Under CometBFT ([`abci`]) the keeper is served over ABCI instead; the
//! node then runs its content store (unpinning what retention released
//! after each committed block) and metrics, not its mempool, producer,
//! gRPC or duties.

pub mod abci;
pub mod admission;
pub mod config;
pub mod content;
pub mod duties;
pub mod events;
pub mod grpc;
pub mod home;
pub mod init;
pub mod keyring;
pub mod mempool;
pub mod metrics;
pub mod node;
pub mod producer;

/// Generated protobuf types and gRPC stubs of `r3mes.node.v1` (see
/// `proto/r3mes/node/v1/node.proto`).
#[allow(clippy::all, missing_docs, rust_2018_idioms)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/r3mes.node.v1.rs"));

    /// The encoded file descriptor set of the node's API (and the keeper
    /// types it imports), served by gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/node_descriptor.bin"));
}

/// Result type of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Every way starting, running or preparing a node can fail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory of the home could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The config file is malformed or inconsistent.
    #[error("config: {0}")]
    Config(String),
    /// A key of the keyring is missing, malformed or already present.
    #[error("keyring: {0}")]
    Keyring(String),
    /// The keeper failed (state store, genesis, ...).
    #[error("keeper: {0}")]
    Chain(#[from] r3mes_chain::Error),
    /// The content store failed.
    #[error("content store: {0}")]
    Content(String),
    /// A listener could not be bound.
    #[error("cannot listen on {addr} for {service}: {source}")]
    Bind {
        /// The service.
        service: &'static str,
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A server or task of the node failed while running.
    #[error("{0}")]
    Runtime(String),
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
