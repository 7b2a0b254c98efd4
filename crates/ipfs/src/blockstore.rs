//! Block stores: where block bytes and pins live, behind one trait.
//!
//! Blocks are keyed by multihash. Every read through [`BlockStore::get`] is
//! re-hashed against the CID asked for, so a corrupt block is an error naming
//! the CID, never silently returned. Writes go through a [`BlockBatch`]: a
//! block becomes visible only when its batch commits, all at once or not at all.
//!
//! Two implementations: [`crate::PackBlockStore`] (persistent: append-only pack
//! files indexed by redb) and [`MemoryBlockStore`] (for tests).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use cid::Cid;

use crate::content::PinInfo;
use crate::{Error, Result, cids};

/// A set of writes that becomes visible atomically on [`BlockBatch::commit`];
/// dropping it without committing discards it.
pub trait BlockBatch {
    /// Stages one block (the caller has computed `cid` from `data`).
    fn put(&mut self, cid: &Cid, data: &[u8]) -> Result<()>;
    /// Makes the staged blocks visible; `durable` waits until they are on disk.
    fn commit(self: Box<Self>, durable: bool) -> Result<()>;
}

/// Storage of blocks and pins.
pub trait BlockStore: Send + Sync {
    /// Raw bytes stored under the CID's multihash, unverified.
    fn get_unverified(&self, cid: &Cid) -> Result<Option<Vec<u8>>>;
    /// Size of a stored block.
    fn block_size(&self, cid: &Cid) -> Result<Option<u64>>;
    /// Starts a write batch.
    fn batch(&self) -> Result<Box<dyn BlockBatch + '_>>;
    /// Removes blocks by multihash key; returns the bytes freed.
    fn delete(&self, keys: &[Vec<u8>]) -> Result<u64>;
    /// Every stored block: multihash key and size.
    fn keys(&self) -> Result<Vec<(Vec<u8>, u64)>>;
    /// Every pin.
    fn pins(&self) -> Result<Vec<PinInfo>>;
    /// Adds or replaces a pin.
    fn put_pin(&self, pin: &PinInfo) -> Result<()>;
    /// Removes a pin; false when there was none.
    fn remove_pin(&self, cid: &Cid) -> Result<bool>;

    /// The MFS root directory, if one was ever set.
    fn mfs_root(&self) -> Result<Option<Cid>> {
        Ok(None)
    }

    /// Replaces the MFS root, atomically and durably: after a crash the store
    /// names either the old root or the new one. The new root's blocks must
    /// already be committed.
    fn set_mfs_root(&self, root: &Cid) -> Result<()> {
        Err(Error::InvalidArgument(format!(
            "this block store keeps no MFS root (cannot set {root})"
        )))
    }

    /// A block, verified against its CID. Identity CIDs need no store.
    fn get(&self, cid: &Cid) -> Result<Vec<u8>> {
        if cids::is_inline(cid) {
            return Ok(cid.hash().digest().to_vec());
        }
        let data = self
            .get_unverified(cid)?
            .ok_or(Error::BlockNotFound(*cid))?;
        cids::verify(cid, &data)?;
        Ok(data)
    }

    /// Whether a block is present (identity CIDs always are).
    fn has(&self, cid: &Cid) -> Result<bool> {
        Ok(cids::is_inline(cid) || self.block_size(cid)?.is_some())
    }
}

// ---------------------------------------------------------------------------
// Read-only sources

/// Somewhere blocks can be read from but not written to (a cache in front
/// of a remote store, a content store reached through an async runtime).
/// Every `BlockSource` is a [`BlockStore`] whose writes fail with
/// [`Error::InvalidArgument`] and which holds no pins, so proof builders
/// and range readers can read through it.
pub trait BlockSource: Send + Sync {
    /// The raw bytes of `cid`, `None` if the source does not have it.
    fn fetch(&self, cid: &Cid) -> Result<Option<Vec<u8>>>;
    /// What the source is, for the error a write gets.
    fn name(&self) -> &'static str;
}

fn read_only(source: &impl BlockSource) -> Error {
    Error::InvalidArgument(format!("{} is read-only", source.name()))
}

impl<S: BlockSource> BlockStore for S {
    fn get_unverified(&self, cid: &Cid) -> Result<Option<Vec<u8>>> {
        self.fetch(cid)
    }

    fn block_size(&self, cid: &Cid) -> Result<Option<u64>> {
        Ok(self.fetch(cid)?.map(|b| b.len() as u64))
    }

    fn batch(&self) -> Result<Box<dyn BlockBatch + '_>> {
        Err(read_only(self))
    }

    fn delete(&self, _keys: &[Vec<u8>]) -> Result<u64> {
        Err(read_only(self))
    }

    fn keys(&self) -> Result<Vec<(Vec<u8>, u64)>> {
        Err(read_only(self))
    }

    fn pins(&self) -> Result<Vec<PinInfo>> {
        Ok(Vec::new())
    }

    fn put_pin(&self, _pin: &PinInfo) -> Result<()> {
        Err(read_only(self))
    }

    fn remove_pin(&self, _cid: &Cid) -> Result<bool> {
        Err(read_only(self))
    }
}

// ---------------------------------------------------------------------------
// In memory

#[derive(Default)]
struct MemoryState {
    blocks: BTreeMap<Vec<u8>, Vec<u8>>,
    pins: BTreeMap<Vec<u8>, PinInfo>,
    mfs_root: Option<Cid>,
}

/// A block store held in memory: same semantics as the persistent one.
#[derive(Default, Clone)]
pub struct MemoryBlockStore {
    state: Arc<RwLock<MemoryState>>,
}

impl MemoryBlockStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, MemoryState> {
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, MemoryState> {
        self.state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Overwrites a stored block's bytes without hashing (for corruption tests).
    pub fn corrupt(&self, cid: &Cid, bytes: Vec<u8>) {
        self.write().blocks.insert(cids::block_key(cid), bytes);
    }
}

struct MemoryBatch<'a> {
    store: &'a MemoryBlockStore,
    staged: Vec<(Vec<u8>, Vec<u8>)>,
}

impl BlockBatch for MemoryBatch<'_> {
    fn put(&mut self, cid: &Cid, data: &[u8]) -> Result<()> {
        self.staged.push((cids::block_key(cid), data.to_vec()));
        Ok(())
    }

    fn commit(self: Box<Self>, _durable: bool) -> Result<()> {
        let mut state = self.store.write();
        state.blocks.extend(self.staged);
        Ok(())
    }
}

impl BlockStore for MemoryBlockStore {
    fn get_unverified(&self, cid: &Cid) -> Result<Option<Vec<u8>>> {
        Ok(self.read().blocks.get(&cids::block_key(cid)).cloned())
    }

    fn block_size(&self, cid: &Cid) -> Result<Option<u64>> {
        Ok(self
            .read()
            .blocks
            .get(&cids::block_key(cid))
            .map(|b| b.len() as u64))
    }

    fn batch(&self) -> Result<Box<dyn BlockBatch + '_>> {
        Ok(Box::new(MemoryBatch {
            store: self,
            staged: Vec::new(),
        }))
    }

    fn delete(&self, keys: &[Vec<u8>]) -> Result<u64> {
        let mut state = self.write();
        Ok(keys
            .iter()
            .filter_map(|k| state.blocks.remove(k))
            .map(|b| b.len() as u64)
            .sum())
    }

    fn keys(&self) -> Result<Vec<(Vec<u8>, u64)>> {
        Ok(self
            .read()
            .blocks
            .iter()
            .map(|(k, v)| (k.clone(), v.len() as u64))
            .collect())
    }

    fn pins(&self) -> Result<Vec<PinInfo>> {
        Ok(self.read().pins.values().cloned().collect())
    }

    fn put_pin(&self, pin: &PinInfo) -> Result<()> {
        self.write().pins.insert(pin.cid.to_bytes(), pin.clone());
        Ok(())
    }

    fn remove_pin(&self, cid: &Cid) -> Result<bool> {
        Ok(self.write().pins.remove(&cid.to_bytes()).is_some())
    }

    fn mfs_root(&self) -> Result<Option<Cid>> {
        Ok(self.read().mfs_root)
    }

    fn set_mfs_root(&self, root: &Cid) -> Result<()> {
        self.write().mfs_root = Some(*root);
        Ok(())
    }
}
