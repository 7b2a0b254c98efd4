//! The daemon's error type: what failed while starting, serving or stopping,
//! and why. Errors of individual requests never get here; they become HTTP
//! answers (see [`crate::api`] and [`crate::gateway`]).

use std::net::SocketAddr;
use std::path::PathBuf;

/// Errors of starting, running and stopping the daemon.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A listener could not be bound (the port is busy, or not ours to take).
    #[error("cannot listen for the {service} on {addr}: {reason}")]
    Bind {
        /// "IPFS RPC API" or "IPFS gateway".
        service: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// Why, with a hint for a busy port.
        reason: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The configuration cannot work (such as both servers on one port).
    #[error("invalid daemon configuration: {0}")]
    Config(String),
    /// The `api` file in the repo could not be written or removed.
    #[error("{action} {path}: {source}")]
    ApiFile {
        /// "writing" or "removing".
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A server stopped with an error.
    #[error("the {service} stopped with an error: {source}")]
    Serve {
        /// Which server.
        service: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A server task panicked or was cancelled.
    #[error("the {service} task failed: {reason}")]
    Task {
        /// Which server.
        service: &'static str,
        /// The join error.
        reason: String,
    },
    /// Installing the SIGINT/SIGTERM handlers failed.
    #[error("cannot listen for shutdown signals: {0}")]
    Signal(#[source] std::io::Error),
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
