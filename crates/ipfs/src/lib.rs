//! r3mes-ipfs: content addressing and storage that is byte-compatible with Kubo.
//!
//! It imports files as UnixFS DAGs whose CIDs equal those of `ipfs add`
//! (CIDv0 with 256 KiB chunks, balanced layout, 174 links per node; CIDv1 with
//! raw leaves on request), keeps blocks in a store that re-hashes every block it
//! reads, pins roots and garbage-collects the rest, reads byte ranges by fetching
//! only the leaves that hold them, and moves DAGs in and out as CAR v1 files.
//! It builds and reads UnixFS directories as Kubo does and keeps a persistent
//! MFS (Kubo's `ipfs files` tree) whose root is a GC root.
//!
//! It does not speak HTTP: the Kubo RPC client lives in `r3mes-kubo`, the
//! embedded daemon and gateway in `r3mes-ipfs-http`. Both meet here in the
//! [`ContentStore`] trait.

pub mod bench;
pub mod blockstore;
pub mod car;
pub mod cids;
pub mod content;
pub mod dagpb;
pub mod directory;
mod embedded;
mod error;
pub mod importer;
pub mod mfs;
mod packstore;
pub mod proof;
pub mod reader;
pub mod repo;
pub mod unixfs;
mod wire;

pub use blockstore::{BlockBatch, BlockSource, BlockStore, MemoryBlockStore};
pub use cid::Cid;
pub use content::{
    AddOptions, AddSource, Added, ContentStore, GcReport, NodeIdentity, PinInfo, PinMode, ReadStats,
};
pub use directory::{DirEntry, Directory, EntryKind, NodeStat};
pub use embedded::EmbeddedStore;
pub use error::{Error, Result};
pub use mfs::{ListEntry, Mfs, MfsPath, WriteOptions};
pub use packstore::PackBlockStore;
pub use repo::Repo;

/// Kubo's default chunk size (`size-262144`).
pub const DEFAULT_CHUNK_SIZE: usize = 262_144;
/// Kubo's default maximum number of links per UnixFS node (balanced layout).
pub const MAX_LINKS: usize = 174;
/// Largest chunk size Kubo accepts (1 MiB + 256 bytes of framing is its block limit).
pub const MAX_CHUNK_SIZE: usize = 1 << 20;
