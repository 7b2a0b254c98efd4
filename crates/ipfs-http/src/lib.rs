//! r3mes-ipfs-http: the HTTP side of the embedded IPFS daemon.
//!
//! Two servers over one [`r3mes_ipfs::Repo`]:
//!
//! - the **RPC API** (default `127.0.0.1:5001`): the subset of Kubo's
//!   `/api/v0/` commands r3mes and the seed's Python miner use (`add`, `cat`,
//!   `block/*`, `pin/*`, `repo/gc`, `dag/export`, `dag/import`, `files/*`
//!   (the MFS), `id`, `version`), with Kubo's request options, answer shapes and error JSON, so
//!   a Kubo client (the seed's `requests.post(f"{base}/add", files=...)`, or
//!   `r3mes-kubo`) works against it unchanged;
//! - the **trustless gateway** (default `127.0.0.1:8080`): `GET`/`HEAD
//!   /ipfs/{cid}` as raw blocks or CAR streams (`dag-scope`, `entity-bytes`),
//!   plus plain file bytes with HTTP `Range`.
//!
//! [`Daemon::start`] binds both, writes `<repo>/api` as Kubo does so other
//! commands find the running daemon, and returns a [`DaemonHandle`] that stops
//! them gracefully. Repo work is blocking and runs on tokio's blocking pool;
//! uploads and downloads stream through bounded channels, so memory stays flat
//! whatever the content size.
//!
//! It is not an IPFS node: there is no swarm, no DHT, no fetching from peers.
//! Content is what the repo holds. Content addressing, storage and range reads
//! live in `r3mes-ipfs`; the Kubo client and sidecar launcher in `r3mes-kubo`.

// `r3mes_ipfs::Error` carries CIDs inline and is over 128 bytes; repo work
// returns it, and boxing it is that crate's decision, not this one's.

pub mod api;
mod daemon;
mod error;
pub mod gateway;
pub mod query;
mod stream;

pub use daemon::{Daemon, DaemonConfig, DaemonHandle, ShutdownSignals};
pub use error::{Error, Result};

/// Default port of the RPC API (Kubo's).
pub const DEFAULT_API_PORT: u16 = 5001;
/// Default port of the gateway (Kubo's).
pub const DEFAULT_GATEWAY_PORT: u16 = 8080;
/// Name of the file in the repo directory that tells other processes where the
/// running daemon's API listens (Kubo's `$IPFS_PATH/api`).
pub const API_FILE: &str = "api";
