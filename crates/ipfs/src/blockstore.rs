//! Block stores: where block bytes and pins live, behind one trait.
//!
//! Blocks are keyed by multihash. Every read through [`BlockStore::get`] is
//! re-hashed against the CID asked for, so a corrupt block is an error naming
//! the CID, never silently returned. Writes go through a [`BlockBatch`]: a
//! block becomes visible only when its batch commits, all at once or not at all.
//!
//! Two implementations: [`RedbBlockStore`] (persistent, one redb file) and
//! [`MemoryBlockStore`] (for tests and `--only-hash`-like uses).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use cid::Cid;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};

use crate::content::{PinInfo, PinMode};
use crate::{Error, Result, cids};

/// A set of writes that becomes visible atomically on [`BlockBatch::commit`];
/// dropping it without committing discards it.
pub trait BlockBatch: Send {
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
// In memory

#[derive(Default)]
struct MemoryState {
    blocks: BTreeMap<Vec<u8>, Vec<u8>>,
    pins: BTreeMap<Vec<u8>, PinInfo>,
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
}

// ---------------------------------------------------------------------------
// redb

const BLOCKS: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("blocks-0");
const PINS: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("pins-0");

/// Cache redb may hold in memory; bounds the memory of large imports.
const REDB_CACHE_BYTES: usize = 32 << 20;

/// A persistent block store in one redb file (`blocks.redb` in the repo).
///
/// Chosen over flat files after measuring: one file keeps a batch atomic with
/// one fsync, where a file per block needs one fsync per block (see README).
pub struct RedbBlockStore {
    db: Database,
}

fn db_err(e: impl std::fmt::Display) -> Error {
    Error::Database(e.to_string())
}

impl RedbBlockStore {
    /// Opens or creates the store file. A file held by another process gives
    /// [`Error::RepoLocked`].
    pub fn open(path: &Path) -> Result<Self> {
        let db = Database::builder()
            .set_cache_size(REDB_CACHE_BYTES)
            .create(path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => Error::RepoLocked {
                    path: path.parent().unwrap_or(path).display().to_string(),
                },
                other => Error::Database(format!("opening {}: {other}", path.display())),
            })?;
        let txn = db.begin_write().map_err(db_err)?;
        txn.open_table(BLOCKS).map_err(db_err)?;
        txn.open_table(PINS).map_err(db_err)?;
        txn.commit().map_err(db_err)?;
        Ok(Self { db })
    }
}

struct RedbBatch {
    txn: redb::WriteTransaction,
}

impl BlockBatch for RedbBatch {
    fn put(&mut self, cid: &Cid, data: &[u8]) -> Result<()> {
        let key = cids::block_key(cid);
        let mut table = self.txn.open_table(BLOCKS).map_err(db_err)?;
        table.insert(key.as_slice(), data).map_err(db_err)?;
        Ok(())
    }

    fn commit(mut self: Box<Self>, durable: bool) -> Result<()> {
        if !durable {
            self.txn.set_durability(Durability::None).map_err(db_err)?;
        }
        self.txn.commit().map_err(db_err)
    }
}

fn encode_pin(pin: &PinInfo) -> Vec<u8> {
    let mut out = vec![match pin.mode {
        PinMode::Recursive => b'R',
        PinMode::Direct => b'D',
    }];
    if let Some(name) = &pin.name {
        out.extend_from_slice(name.as_bytes());
    }
    out
}

fn decode_pin(key: &[u8], value: &[u8]) -> Result<PinInfo> {
    let cid = cids::from_bytes(key)?;
    let (mode, name) = value
        .split_first()
        .ok_or_else(|| Error::Database(format!("empty pin record for {cid}")))?;
    let mode = match mode {
        b'R' => PinMode::Recursive,
        b'D' => PinMode::Direct,
        other => {
            return Err(Error::Database(format!(
                "pin record for {cid} has unknown mode {other}"
            )));
        }
    };
    let name = if value.len() > 1 {
        Some(
            String::from_utf8(name.to_vec())
                .map_err(|_| Error::Database(format!("pin name of {cid} is not UTF-8")))?,
        )
    } else {
        None
    };
    Ok(PinInfo { cid, mode, name })
}

impl BlockStore for RedbBlockStore {
    fn get_unverified(&self, cid: &Cid) -> Result<Option<Vec<u8>>> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(BLOCKS).map_err(db_err)?;
        Ok(table
            .get(cids::block_key(cid).as_slice())
            .map_err(db_err)?
            .map(|v| v.value().to_vec()))
    }

    fn block_size(&self, cid: &Cid) -> Result<Option<u64>> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(BLOCKS).map_err(db_err)?;
        Ok(table
            .get(cids::block_key(cid).as_slice())
            .map_err(db_err)?
            .map(|v| v.value().len() as u64))
    }

    fn batch(&self) -> Result<Box<dyn BlockBatch + '_>> {
        Ok(Box::new(RedbBatch {
            txn: self.db.begin_write().map_err(db_err)?,
        }))
    }

    fn delete(&self, keys: &[Vec<u8>]) -> Result<u64> {
        let txn = self.db.begin_write().map_err(db_err)?;
        let mut freed = 0;
        {
            let mut table = txn.open_table(BLOCKS).map_err(db_err)?;
            for key in keys {
                if let Some(old) = table.remove(key.as_slice()).map_err(db_err)? {
                    freed += old.value().len() as u64;
                }
            }
        }
        txn.commit().map_err(db_err)?;
        Ok(freed)
    }

    fn keys(&self) -> Result<Vec<(Vec<u8>, u64)>> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(BLOCKS).map_err(db_err)?;
        let mut out =
            Vec::with_capacity(usize::try_from(table.len().map_err(db_err)?).unwrap_or(0));
        for entry in table.iter().map_err(db_err)? {
            let (k, v) = entry.map_err(db_err)?;
            out.push((k.value().to_vec(), v.value().len() as u64));
        }
        Ok(out)
    }

    fn pins(&self) -> Result<Vec<PinInfo>> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(PINS).map_err(db_err)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(db_err)? {
            let (k, v) = entry.map_err(db_err)?;
            out.push(decode_pin(k.value(), v.value())?);
        }
        Ok(out)
    }

    fn put_pin(&self, pin: &PinInfo) -> Result<()> {
        let txn = self.db.begin_write().map_err(db_err)?;
        txn.open_table(PINS)
            .map_err(db_err)?
            .insert(pin.cid.to_bytes().as_slice(), encode_pin(pin).as_slice())
            .map_err(db_err)?;
        txn.commit().map_err(db_err)
    }

    fn remove_pin(&self, cid: &Cid) -> Result<bool> {
        let txn = self.db.begin_write().map_err(db_err)?;
        let existed = txn
            .open_table(PINS)
            .map_err(db_err)?
            .remove(cid.to_bytes().as_slice())
            .map_err(db_err)?
            .is_some();
        txn.commit().map_err(db_err)?;
        Ok(existed)
    }
}
