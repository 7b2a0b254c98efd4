//! The `ContentStore` trait: what the rest of r3mes needs from IPFS, whichever
//! engine runs it (the embedded repo here, or a Kubo daemon through its RPC API).

use std::path::PathBuf;

use async_trait::async_trait;
use bytes::Bytes;
use cid::Cid;

use crate::Result;

/// Options of `add`, named as Kubo names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddOptions {
    /// 0 (default, dag-pb leaves, base58 `Qm...`) or 1 (raw leaves, base32 `bafy...`).
    pub cid_version: u8,
    /// Raw leaves; `None` means Kubo's default for the CID version (off for 0, on for 1).
    pub raw_leaves: Option<bool>,
    /// Pin the root recursively after adding (Kubo's default: true).
    pub pin: bool,
    /// Only compute the CID; store nothing.
    pub only_hash: bool,
    /// Chunk size of the fixed-size chunker (Kubo's default: 262144).
    pub chunk_size: usize,
}

impl Default for AddOptions {
    fn default() -> Self {
        Self {
            cid_version: 0,
            raw_leaves: None,
            pin: true,
            only_hash: false,
            chunk_size: crate::DEFAULT_CHUNK_SIZE,
        }
    }
}

impl AddOptions {
    /// Whether leaves are raw blocks, applying Kubo's default for the CID version.
    pub fn effective_raw_leaves(&self) -> bool {
        self.raw_leaves.unwrap_or(self.cid_version >= 1)
    }
}

/// What to add: bytes already in memory, or a file read by streaming.
#[derive(Debug, Clone)]
pub enum AddSource {
    /// Content held in memory (gradients are megabytes).
    Bytes(Bytes),
    /// A file on the local disk, read as a stream.
    File(PathBuf),
}

/// The outcome of `add`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Added {
    /// The root CID, exactly the one `ipfs add` prints.
    pub cid: Cid,
    /// File size in bytes (the content, not the DAG).
    pub size: u64,
    /// Cumulative size of the DAG's blocks (what Kubo's `add` reports as `Size`).
    pub dag_size: u64,
}

/// What a read cost: the figures the validator's bandwidth report depends on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Blocks fetched (root and intermediate nodes included).
    pub blocks: u64,
    /// Bytes of those blocks.
    pub bytes: u64,
}

/// A pin as listed by `pin ls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinInfo {
    /// The pinned root.
    pub cid: Cid,
    /// Recursive or direct.
    pub mode: PinMode,
    /// Optional name given when pinning.
    pub name: Option<String>,
}

/// How a pin protects blocks from GC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PinMode {
    /// The root and every block reachable from it.
    Recursive,
    /// The root block only.
    Direct,
}

impl PinMode {
    /// Kubo's spelling: `recursive` or `direct`.
    pub fn as_str(self) -> &'static str {
        match self {
            PinMode::Recursive => "recursive",
            PinMode::Direct => "direct",
        }
    }
}

/// What a garbage collection removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// CIDs of the removed blocks.
    pub removed: Vec<Cid>,
    /// Total bytes of the removed blocks.
    pub freed_bytes: u64,
}

/// Identity of the IPFS node behind a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    /// Peer ID (Kubo) or a stable repo identifier (embedded).
    pub id: String,
    /// Agent version string, such as `kubo/0.32.1/` or `r3mes/0.1.0`.
    pub agent_version: String,
}

/// Everything r3mes needs from an IPFS engine. Two implementations: the embedded
/// repo ([`crate::Repo`] through [`crate::EmbeddedStore`]) and a Kubo daemon (crate `r3mes-kubo`).
#[async_trait]
pub trait ContentStore: Send + Sync {
    /// Imports content as UnixFS and returns its root CID.
    async fn add(&self, source: AddSource, options: &AddOptions) -> Result<Added>;
    /// Reads `length` bytes (all to the end when `None`) from `offset` of a UnixFS file.
    /// Stats are `Some` when the engine can count what it fetched (the embedded one can).
    async fn cat(
        &self,
        cid: &Cid,
        offset: u64,
        length: Option<u64>,
    ) -> Result<(Bytes, Option<ReadStats>)>;
    /// One raw block, verified against its CID.
    async fn block_get(&self, cid: &Cid) -> Result<Bytes>;
    /// Size of one block in bytes.
    async fn block_stat(&self, cid: &Cid) -> Result<u64>;
    /// Pins a root (recursive pins fetch or require the whole DAG).
    async fn pin_add(&self, cid: &Cid, mode: PinMode, name: Option<&str>) -> Result<()>;
    /// Removes a pin.
    async fn pin_rm(&self, cid: &Cid) -> Result<()>;
    /// Lists pins.
    async fn pin_ls(&self) -> Result<Vec<PinInfo>>;
    /// Removes every block not reachable from a pin.
    async fn gc(&self) -> Result<GcReport>;
    /// Exports the DAG under `root` as a CAR v1 file (one root, DAG order).
    async fn dag_export(&self, root: &Cid) -> Result<Bytes>;
    /// Imports a CAR v1 file; returns its roots. A block that does not match its CID rejects all.
    async fn dag_import(&self, car: Bytes) -> Result<Vec<Cid>>;
    /// Identity of the node.
    async fn id(&self) -> Result<NodeIdentity>;
    /// Version string of the engine.
    async fn version(&self) -> Result<String>;
}
