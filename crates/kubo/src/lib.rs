//! r3mes-kubo: the Kubo RPC client and the managed IPFS sidecar.
//!
//! [`KuboClient`] speaks Kubo's RPC API (`POST /api/v0/...`) and implements
//! [`r3mes_ipfs::ContentStore`], so the miner, node and validator use a Kubo
//! daemon exactly as they use the embedded store. The [`sidecar`] module is the
//! seed's "Managed Sidecar Pattern": it starts an isolated IPFS daemon (Kubo
//! when a binary is found, otherwise r3mes' embedded daemon) on a repo under
//! `~/.r3mes/ipfs`, tracks it with a pid file, reports its status and stops it.
//!
//! It is not an IPFS implementation (that is `r3mes-ipfs`) and holds no CLI:
//! the `r3mes` binary parses arguments and calls in here.

// `r3mes_ipfs::Error` (fixed by the `ContentStore` trait) carries CIDs inline and
// is over 128 bytes; boxing it is that crate's decision, not this one's.
#![warn(missing_docs)]

pub mod addr;
pub mod client;
mod error;
pub mod sidecar;
mod store;

pub use client::{BlockStat, ClientOptions, KuboClient};
pub use error::SidecarError;
