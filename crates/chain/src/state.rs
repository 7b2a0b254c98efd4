//! The keeper's persistent state: a sorted key/value space in redb, written
//! one block at a time.
//!
//! Layout (table names carry a version suffix so a later format can live
//! beside this one):
//! - `kv-0`: every state record, `key bytes -> value bytes`. Keys are built
//!   with [`Key`] (a table-prefix byte then big-endian parts), so they sort
//!   deterministically. The [app hash](crate::apphash) commits to exactly
//!   this table.
//! - `buckets-0`: a checkpoint of the app-hash index, `u16 bucket ->
//!   leaves` for every non-empty bucket (see [`crate::apphash`]): the leaf
//!   hashes of the bucket's pairs in ascending order, concatenated (32
//!   bytes each). It is valid only if `meta-0` `"index_height"` equals
//!   `"height"`.
//! - `meta-0`: `"height" -> u64 big-endian` (last committed block, 0 before
//!   the first), `"app_hash" -> 32 bytes` (its app hash; before the first
//!   block the empty-state root) and `"index_height" -> u64 big-endian`
//!   (the height `buckets-0` describes; absent if never written).
//! - `headers-0`: `u64 height -> header` for every block committed since
//!   the table exists ([`Header`]): the block hash the caller gave, the
//!   app hash before and after the block and its transaction count, 104
//!   bytes. Written in the block's own commit (one insert), so a header
//!   exists exactly for the committed heights; not part of the app hash.
//!
//! The app-hash index (every bucket's sorted leaves, 32 bytes per pair,
//! and the top tree, [`apphash::TopTree`], 4 MiB) lives in memory. Blocks
//! write only `kv-0` and `meta-0`: writing each changed bucket to a B-tree
//! keyed by a uniform hash dirtied almost every index page every block (at
//! 100k records, 3,000 changed buckets of 65,536 per block), which cost
//! more than the records themselves. [`State::checkpoint`], called by
//! [`Drop`], writes the buckets changed since the last checkpoint and
//! `index_height` in one durable transaction. Opening loads `buckets-0`
//! if `index_height == height` (recomputing each bucket root from its
//! leaves), and otherwise (after a crash, or a store of the previous
//! layout) rebuilds the index from `kv-0`, hashing every pair; either way
//! the resulting root must equal `meta-0`'s `app_hash` (a checkpoint that
//! disagrees is discarded and rebuilt; a rebuild that disagrees is a
//! damaged store). Measured on the 2-core dev VM at 1M entries of 40 + 250
//! bytes (`examples/open_time.rs`): the rebuild takes 2.0 s, loading the
//! checkpoint 0.2 s, writing it at close 0.5 s.
//!
//! Writes go through a [`BlockWriter`] from [`State::begin_block`]: it stages
//! every write of the block in memory (reads see the staged writes) and
//! [`BlockWriter::commit`] applies them, the new height, the new app hash
//! and the block's header in one durable redb write transaction (`Durability::Immediate`):
//! its cost grows with the number of changed keys (times a logarithm), not
//! with the size of the state. The new bucket leaves and top-tree nodes are
//! computed before the redb commit and installed in memory only after it
//! succeeds; if the commit's outcome is unknown the index is dropped and
//! rebuilt from `kv-0` at the next commit. After a crash the state is
//! exactly at the last committed block; a writer dropped without commit
//! changes nothing. [`BlockWriter::transaction`] runs a closure over a
//! nested overlay whose writes reach the block only if the closure returns
//! `Ok`.
//!
//! Determinism: staged writes live in [`BTreeMap`]s and the app hash
//! depends only on the set of pairs; there are no floats, no clocks and no
//! I/O besides the store.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use redb::{
    Database, Durability, ReadOnlyTable, ReadableDatabase, ReadableTable, TableDefinition,
    backends::InMemoryBackend,
};

use crate::apphash::{self, Hash};
use crate::batches::{self, BatchChange, BatchIndex};
use crate::{Error, Result};

/// redb's page cache for the state file, bounded so a long-running node's
/// memory does not grow toward redb's default of 1 GiB; 32 MiB holds the
/// pages a block touches (its writes land in fresh pages) and the hot
/// branch pages.
pub const STATE_CACHE_BYTES: usize = 32 << 20;

/// Every state record: key bytes -> value bytes.
const KV: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("kv-0");
/// Chain metadata: `height` and `app_hash`.
const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta-0");
/// The app-hash index: bucket -> its leaf hashes, ascending.
const BUCKETS: TableDefinition<'_, u16, &[u8]> = TableDefinition::new("buckets-0");
/// The bucket roots of the previous layout, deleted at open.
const BUCKET_ROOTS: TableDefinition<'_, u16, [u8; 32]> = TableDefinition::new("bucket-roots-0");
/// One header per committed height ([`Header`]).
const HEADERS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("headers-0");
const META_HEIGHT: &str = "height";
const META_APP_HASH: &str = "app_hash";
const META_INDEX_HEIGHT: &str = "index_height";

fn store_err(e: impl std::fmt::Display) -> Error {
    Error::Store(e.to_string())
}

/// A typed state key: one table-prefix byte followed by big-endian parts,
/// so keys of one record kind share a prefix and sort by their parts.
///
/// Fixed-width integers are appended big-endian; [`Key::bytes`] appends a
/// `u32` big-endian length before the bytes so that no two part sequences
/// give the same key; [`Key::tail`] appends raw bytes and is meant for the
/// last part only.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(Vec<u8>);

impl Key {
    /// Starts a key in the table with prefix byte `table`.
    pub fn new(table: u8) -> Self {
        // Room for the longest usual key (table, CID, address, ids) so
        // building it allocates once.
        let mut bytes = Vec::with_capacity(64);
        bytes.push(table);
        Key(bytes)
    }

    /// Appends one byte.
    pub fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }

    /// Appends a `u32`, big-endian.
    pub fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Appends a `u64`, big-endian.
    pub fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Appends a `u128`, big-endian.
    pub fn u128(mut self, v: u128) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Appends `u32_be(len) || bytes`. Fails if `bytes` is 4 GiB or more.
    pub fn bytes(mut self, bytes: &[u8]) -> Result<Self> {
        let len = u32::try_from(bytes.len())
            .map_err(|_| Error::Store(format!("key part of {} bytes", bytes.len())))?;
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.extend_from_slice(bytes);
        Ok(self)
    }

    /// Appends raw bytes without a length: use for the last part only.
    pub fn tail(mut self, bytes: &[u8]) -> Self {
        self.0.extend_from_slice(bytes);
        self
    }

    /// The encoded key.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The encoded key, owned.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

impl AsRef<[u8]> for Key {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// What the store keeps of each committed block (`headers-0`): enough to
/// check that the blocks chain, each starting from the app hash the
/// previous one ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The block's height.
    pub height: u64,
    /// The block hash its producer gave ([`BlockWriter::set_block`]; zero
    /// if none was given, as for the genesis block).
    pub block_hash: [u8; 32],
    /// The app hash before the block (the previous block's app hash).
    pub previous_app_hash: Hash,
    /// The app hash after the block.
    pub app_hash: Hash,
    /// Transactions delivered in the block, applied or failed.
    pub tx_count: u64,
}

impl Header {
    /// Encoded size: three hashes and a big-endian count.
    const LEN: usize = 32 * 3 + 8;

    fn encode(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[..32].copy_from_slice(&self.block_hash);
        out[32..64].copy_from_slice(&self.previous_app_hash);
        out[64..96].copy_from_slice(&self.app_hash);
        out[96..].copy_from_slice(&self.tx_count.to_be_bytes());
        out
    }

    fn decode(height: u64, bytes: &[u8]) -> Result<Self> {
        let bytes = <&[u8; Self::LEN]>::try_from(bytes).map_err(|_| {
            Error::Store(format!(
                "headers-0 height {height} is {} bytes, not {}",
                bytes.len(),
                Self::LEN
            ))
        })?;
        let hash = |at: usize| {
            let mut h = [0u8; 32];
            h.copy_from_slice(&bytes[at..at + 32]);
            h
        };
        let mut count = [0u8; 8];
        count.copy_from_slice(&bytes[96..]);
        Ok(Header {
            height,
            block_hash: hash(0),
            previous_app_hash: hash(32),
            app_hash: hash(64),
            tx_count: u64::from_be_bytes(count),
        })
    }
}

/// Staged writes: `Some(value)` is a put, `None` a delete.
type Overlay = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// The keeper's state store (see the module docs).
#[derive(Debug)]
pub struct State {
    db: Database,
    /// The app-hash index of the committed state; `None` after a commit
    /// whose outcome is unknown, rebuilt from `kv-0` at the next commit.
    index: Mutex<Option<Index>>,
}

impl Drop for State {
    /// Checkpoints the app-hash index (best effort: if it fails, the next
    /// open rebuilds the index from `kv-0`).
    fn drop(&mut self) {
        let _ = self.checkpoint();
    }
}

/// The app-hash index of the committed state, in memory: every bucket's
/// leaves in ascending order, and the top tree over the bucket roots.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Index {
    /// The committed height this index describes.
    height: u64,
    /// Bucket `b`'s leaves, ascending.
    buckets: Vec<Vec<Hash>>,
    tree: apphash::TopTree,
    /// Buckets changed since the `buckets-0` checkpoint.
    dirty: BTreeSet<u16>,
    /// The checkpoint is unrelated to this index (rebuilt from `kv-0`):
    /// the next checkpoint rewrites `buckets-0` whole.
    rewrite: bool,
    /// Where each batched record is ([`crate::batches`]); not checkpointed,
    /// rebuilt from the batch values at open.
    batches: BatchIndex,
}

impl Index {
    /// The index over the pairs of `kv`, hashing every pair.
    fn rebuild(kv: &impl ReadableTable<&'static [u8], &'static [u8]>, height: u64) -> Result<Self> {
        let mut buckets = vec![Vec::new(); apphash::BUCKETS];
        let mut batch_index = BatchIndex::default();
        for entry in kv.iter().map_err(store_err)? {
            let (k, v) = entry.map_err(store_err)?;
            let (k, v) = (k.value(), v.value());
            buckets[usize::from(apphash::bucket_of(k))].push(apphash::leaf_hash(k, v));
            if batches::is_batch_key(k) {
                batch_index.insert_all(k, v);
            }
        }
        for leaves in &mut buckets {
            leaves.sort_unstable();
        }
        let mut index = Self::from_buckets(buckets, height, true);
        index.batches = batch_index;
        Ok(index)
    }

    /// The batch index of `kv`, reading only the batch tables.
    fn index_batches(kv: &impl ReadableTable<&'static [u8], &'static [u8]>) -> Result<BatchIndex> {
        let mut index = BatchIndex::default();
        for table in batches::BATCH_TABLES {
            for entry in kv.range([table].as_slice()..).map_err(store_err)? {
                let (k, v) = entry.map_err(store_err)?;
                if k.value().first() != Some(&table) {
                    break;
                }
                index.insert_all(k.value(), v.value());
            }
        }
        Ok(index)
    }

    /// The index from the `buckets-0` checkpoint (each root recomputed from
    /// the stored leaves).
    fn load(table: &impl ReadableTable<u16, &'static [u8]>, height: u64) -> Result<Self> {
        let mut buckets = vec![Vec::new(); apphash::BUCKETS];
        for entry in table.iter().map_err(store_err)? {
            let (bucket, leaves) = entry.map_err(store_err)?;
            let bucket = bucket.value();
            let leaves = decode_bucket(bucket, leaves.value())?;
            if !leaves.is_sorted_by(|a, b| a < b) {
                return Err(damaged_index(bucket));
            }
            buckets[usize::from(bucket)] = leaves;
        }
        Ok(Self::from_buckets(buckets, height, false))
    }

    fn from_buckets(buckets: Vec<Vec<Hash>>, height: u64, rewrite: bool) -> Self {
        let tree = apphash::TopTree::build(buckets.iter().enumerate().filter_map(|(b, leaves)| {
            let bucket = u16::try_from(b).ok()?;
            (!leaves.is_empty()).then(|| (bucket, apphash::bucket_root(leaves.iter().copied())))
        }));
        Index {
            height,
            buckets,
            tree,
            dirty: BTreeSet::new(),
            rewrite,
            batches: BatchIndex::default(),
        }
    }

    /// The new leaves and roots of the buckets `changes` touch, in bucket
    /// order, without changing the index.
    fn stage(
        &self,
        changes: BTreeMap<u16, Vec<BucketChange>>,
    ) -> Result<Vec<(u16, Vec<Hash>, Hash)>> {
        let mut staged = Vec::with_capacity(changes.len());
        for (bucket, changes) in changes {
            let mut entries = self.buckets[usize::from(bucket)].clone();
            for (old, new) in changes {
                if let Some(old) = old {
                    let i = entries
                        .binary_search(&old)
                        .map_err(|_| damaged_index(bucket))?;
                    entries.remove(i);
                }
                if let Some(new) = new {
                    let i = entries
                        .binary_search(&new)
                        .err()
                        .ok_or_else(|| damaged_index(bucket))?;
                    entries.insert(i, new);
                }
            }
            let root = apphash::bucket_root(entries.iter().copied());
            staged.push((bucket, entries, root));
        }
        Ok(staged)
    }
}

fn read_index_height(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Option<u64>> {
    match meta.get(META_INDEX_HEIGHT).map_err(store_err)? {
        None => Ok(None),
        Some(guard) => {
            let bytes = <[u8; 8]>::try_from(guard.value())
                .map_err(|_| Error::Store("meta-0 index_height is not 8 bytes".into()))?;
            Ok(Some(u64::from_be_bytes(bytes)))
        }
    }
}

impl State {
    /// Opens or creates the state database at `path`. A database already
    /// open (in this or another process) gives [`Error::StateLocked`].
    pub fn open(path: &Path) -> Result<Self> {
        let db = Database::builder()
            .set_cache_size(STATE_CACHE_BYTES)
            .create(path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => Error::StateLocked {
                    path: path.display().to_string(),
                },
                other => Error::Store(format!("opening {}: {other}", path.display())),
            })?;
        Self::init(db)
    }

    /// A fresh state held in memory only (tests, simulations).
    pub fn in_memory() -> Result<Self> {
        let db = Database::builder()
            .create_with_backend(InMemoryBackend::new())
            .map_err(store_err)?;
        Self::init(db)
    }

    /// Creates the tables and, for a new database, height 0 with the
    /// empty-state app hash; then loads the app-hash index from the
    /// `buckets-0` checkpoint if it is current, else rebuilds it from
    /// `kv-0`, and checks it against the stored app hash.
    fn init(db: Database) -> Result<Self> {
        let txn = db.begin_write().map_err(store_err)?;
        txn.open_table(KV).map_err(store_err)?;
        txn.open_table(BUCKETS).map_err(store_err)?;
        txn.open_table(HEADERS).map_err(store_err)?;
        // The per-bucket roots of the previous layout are no longer kept.
        txn.delete_table(BUCKET_ROOTS).map_err(store_err)?;
        {
            let mut meta = txn.open_table(META).map_err(store_err)?;
            if meta.get(META_HEIGHT).map_err(store_err)?.is_none() {
                meta.insert(META_HEIGHT, 0u64.to_be_bytes().as_slice())
                    .map_err(store_err)?;
                meta.insert(META_APP_HASH, apphash::empty_root().as_slice())
                    .map_err(store_err)?;
            }
        }
        txn.commit().map_err(store_err)?;
        let state = State {
            db,
            index: Mutex::new(None),
        };
        let expected = state.app_hash()?;
        let txn = state.db.begin_read().map_err(store_err)?;
        let meta = txn.open_table(META).map_err(store_err)?;
        let height = read_height(&meta)?;
        let mut index = None;
        if read_index_height(&meta)? == Some(height) {
            let buckets = txn.open_table(BUCKETS).map_err(store_err)?;
            let mut loaded = Index::load(&buckets, height)?;
            // A checkpoint that disagrees is rebuilt below, not trusted.
            if loaded.tree.root() == expected {
                let kv = txn.open_table(KV).map_err(store_err)?;
                loaded.batches = Index::index_batches(&kv)?;
                index = Some(loaded);
            }
        }
        let index = match index {
            Some(index) => index,
            None => {
                let kv = txn.open_table(KV).map_err(store_err)?;
                Index::rebuild(&kv, height)?
            }
        };
        if index.tree.root() != expected {
            return Err(Error::Store(
                "the app hash in meta-0 disagrees with kv-0 (a damaged store)".into(),
            ));
        }
        drop(meta);
        drop(txn);
        *state.lock_index() = Some(index);
        Ok(state)
    }

    /// Writes the in-memory app-hash index to `buckets-0` (only the buckets
    /// changed since the last checkpoint) with `index_height` = the
    /// committed height, in one durable transaction, so that the next open
    /// loads it instead of rebuilding it from `kv-0`. [`Drop`] calls it;
    /// calling it more often only makes opens after a crash no faster
    /// (they rebuild whenever the checkpoint is not current).
    pub fn checkpoint(&self) -> Result<()> {
        let mut guard = self.lock_index();
        let Some(index) = guard.as_mut() else {
            return Ok(());
        };
        let txn = self.db.begin_read().map_err(store_err)?;
        let meta = txn.open_table(META).map_err(store_err)?;
        let height = read_height(&meta)?;
        if height != index.height {
            return Err(Error::Store(
                "the app-hash index is not at the committed height".into(),
            ));
        }
        if read_index_height(&meta)? == Some(height) && !index.rewrite && index.dirty.is_empty() {
            return Ok(());
        }
        drop(meta);
        drop(txn);
        let mut txn = self.db.begin_write().map_err(store_err)?;
        txn.set_durability(Durability::Immediate)
            .map_err(store_err)?;
        {
            let mut meta = txn.open_table(META).map_err(store_err)?;
            if read_height(&meta)? != index.height {
                return Err(Error::Store(
                    "the app-hash index is not at the committed height".into(),
                ));
            }
            if index.rewrite {
                txn.delete_table(BUCKETS).map_err(store_err)?;
            }
            let mut table = txn.open_table(BUCKETS).map_err(store_err)?;
            let all: Box<dyn Iterator<Item = u16>> = if index.rewrite {
                Box::new(0..=u16::MAX)
            } else {
                Box::new(index.dirty.iter().copied())
            };
            let mut encoded = Vec::new();
            for bucket in all {
                let leaves = &index.buckets[usize::from(bucket)];
                if leaves.is_empty() {
                    if !index.rewrite {
                        table.remove(bucket).map_err(store_err)?;
                    }
                    continue;
                }
                encoded.clear();
                for leaf in leaves {
                    encoded.extend_from_slice(leaf);
                }
                table
                    .insert(bucket, encoded.as_slice())
                    .map_err(store_err)?;
            }
            meta.insert(META_INDEX_HEIGHT, index.height.to_be_bytes().as_slice())
                .map_err(store_err)?;
        }
        txn.commit().map_err(store_err)?;
        index.rewrite = false;
        index.dirty.clear();
        Ok(())
    }

    /// The index lock. A panic while it was held may have left the index
    /// half updated, so a poisoned lock gives `None` (rebuild).
    fn lock_index(&self) -> MutexGuard<'_, Option<Index>> {
        self.index.lock().unwrap_or_else(|poisoned| {
            self.index.clear_poison();
            let mut guard = poisoned.into_inner();
            *guard = None;
            guard
        })
    }

    /// The key of the committed batch holding the record `id` (see
    /// [`crate::batches`]), from the in-memory index.
    pub fn batch_of(&self, id: &[u8]) -> Result<Option<Vec<u8>>> {
        let mut guard = self.lock_index();
        if guard.is_none() {
            let txn = self.db.begin_read().map_err(store_err)?;
            let height = read_height(&txn.open_table(META).map_err(store_err)?)?;
            let kv = txn.open_table(KV).map_err(store_err)?;
            *guard = Some(Index::rebuild(&kv, height)?);
        }
        Ok(guard
            .as_ref()
            .and_then(|index| index.batches.get(id))
            .map(<[u8]>::to_vec))
    }

    /// The last committed block height (0 before the first block).
    pub fn height(&self) -> Result<u64> {
        let txn = self.db.begin_read().map_err(store_err)?;
        let meta = txn.open_table(META).map_err(store_err)?;
        read_height(&meta)
    }

    /// The last committed height and its app hash, read together (one read
    /// transaction, so a commit in between cannot mix two blocks).
    pub fn tip(&self) -> Result<(u64, Hash)> {
        let txn = self.db.begin_read().map_err(store_err)?;
        let meta = txn.open_table(META).map_err(store_err)?;
        let height = read_height(&meta)?;
        let guard = meta
            .get(META_APP_HASH)
            .map_err(store_err)?
            .ok_or_else(|| Error::Store("meta-0 has no app_hash".into()))?;
        let hash = Hash::try_from(guard.value())
            .map_err(|_| Error::Store("meta-0 app_hash is not 32 bytes".into()))?;
        Ok((height, hash))
    }

    /// The app hash after the last committed block (the empty-state root
    /// before the first).
    pub fn app_hash(&self) -> Result<Hash> {
        let txn = self.db.begin_read().map_err(store_err)?;
        let meta = txn.open_table(META).map_err(store_err)?;
        let guard = meta
            .get(META_APP_HASH)
            .map_err(store_err)?
            .ok_or_else(|| Error::Store("meta-0 has no app_hash".into()))?;
        Hash::try_from(guard.value())
            .map_err(|_| Error::Store("meta-0 app_hash is not 32 bytes".into()))
    }

    /// The header of committed block `height`; `None` above the committed
    /// height, at 0, and for blocks committed before `headers-0` existed.
    pub fn header(&self, height: u64) -> Result<Option<Header>> {
        let txn = self.db.begin_read().map_err(store_err)?;
        let headers = txn.open_table(HEADERS).map_err(store_err)?;
        headers
            .get(height)
            .map_err(store_err)?
            .map(|g| Header::decode(height, g.value()))
            .transpose()
    }

    /// The committed value under `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let txn = self.db.begin_read().map_err(store_err)?;
        let kv = txn.open_table(KV).map_err(store_err)?;
        Ok(kv.get(key).map_err(store_err)?.map(|g| g.value().to_vec()))
    }

    /// Recomputes the app hash of the committed `kv-0` table from scratch
    /// (equals [`app_hash`](Self::app_hash) unless the store is damaged).
    pub fn recompute_app_hash(&self) -> Result<Hash> {
        let txn = self.db.begin_read().map_err(store_err)?;
        let kv = txn.open_table(KV).map_err(store_err)?;
        let mut failed = None;
        let pairs = kv
            .iter()
            .map_err(store_err)?
            .map_while(|entry| match entry {
                Ok((k, v)) => Some((k.value().to_vec(), v.value().to_vec())),
                Err(e) => {
                    failed = Some(e);
                    None
                }
            });
        let hash = apphash::app_hash(pairs);
        match failed {
            Some(e) => Err(store_err(e)),
            None => Ok(hash),
        }
    }

    /// The first `limit` committed pairs whose key starts with `prefix`, in
    /// key order.
    pub fn scan_prefix(&self, prefix: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let txn = self.db.begin_read().map_err(store_err)?;
        let kv = txn.open_table(KV).map_err(store_err)?;
        scan_layers(&kv, &[], prefix, limit)
    }

    /// Starts block `height`, which must be the committed height plus one.
    pub fn begin_block(&self, height: u64) -> Result<BlockWriter<'_>> {
        let expected = next_height(self.height()?)?;
        if height != expected {
            return Err(Error::WrongBlockHeight {
                expected,
                found: height,
            });
        }
        let snapshot = self
            .db
            .begin_read()
            .map_err(store_err)?
            .open_table(KV)
            .map_err(store_err)?;
        Ok(BlockWriter {
            state: self,
            height,
            staged: Overlay::new(),
            snapshot,
            block_hash: [0; 32],
            tx_count: 0,
        })
    }
}

/// Prefix scan of the committed state seen through `layers` (bottom
/// first). It reads at most `limit` plus the layers' deletes under the
/// prefix committed pairs: enough, since each delete hides at most one.
fn scan_layers(
    kv: &impl ReadableTable<&'static [u8], &'static [u8]>,
    layers: &[&Overlay],
    prefix: &[u8],
    limit: usize,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let under = |layer: &'_ Overlay| {
        layer
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(_, v)| v.is_none())
            .count()
    };
    let deletes: usize = layers.iter().map(|l| under(l)).sum();
    let want = limit.saturating_add(deletes);
    let mut merged = BTreeMap::new();
    for entry in kv.range(prefix..).map_err(store_err)?.take(want) {
        let (k, v) = entry.map_err(store_err)?;
        if !k.value().starts_with(prefix) {
            break;
        }
        merged.insert(k.value().to_vec(), v.value().to_vec());
    }
    for layer in layers {
        let writes = layer
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix));
        for (k, v) in writes {
            match v {
                Some(v) => merged.insert(k.clone(), v.clone()),
                None => merged.remove(k),
            };
        }
    }
    Ok(merged.into_iter().take(limit).collect())
}

fn read_height(meta: &impl ReadableTable<&'static str, &'static [u8]>) -> Result<u64> {
    let guard = meta
        .get(META_HEIGHT)
        .map_err(store_err)?
        .ok_or_else(|| Error::Store("meta-0 has no height".into()))?;
    let bytes = <[u8; 8]>::try_from(guard.value())
        .map_err(|_| Error::Store("meta-0 height is not 8 bytes".into()))?;
    Ok(u64::from_be_bytes(bytes))
}

/// `height + 1`, or an error at the (unreachable in practice) top.
fn next_height(height: u64) -> Result<u64> {
    height
        .checked_add(1)
        .ok_or_else(|| Error::Store("block height overflows u64".into()))
}

/// One change in a bucket: the leaf it removes and the leaf it adds.
type BucketChange = (Option<Hash>, Option<Hash>);

fn damaged_index(bucket: u16) -> Error {
    Error::Store(format!(
        "buckets-0 bucket {bucket} disagrees with kv-0 (damaged store)"
    ))
}

/// Decodes a `buckets-0` value into its sorted leaves.
fn decode_bucket(bucket: u16, bytes: &[u8]) -> Result<Vec<Hash>> {
    if !bytes.len().is_multiple_of(32) {
        return Err(Error::Store(format!(
            "buckets-0 bucket {bucket} is {} bytes, not a multiple of 32",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(32)
        .map(|leaf| {
            let mut hash = [0u8; 32];
            hash.copy_from_slice(leaf);
            hash
        })
        .collect())
}

/// The writes of one block, staged in memory until [`commit`](Self::commit).
/// Dropping it without commit changes nothing.
#[derive(Debug)]
pub struct BlockWriter<'a> {
    state: &'a State,
    height: u64,
    staged: Overlay,
    /// The committed `kv-0` as of `begin_block`, read by every get and scan
    /// of the block (one read transaction instead of one per read).
    snapshot: ReadOnlyTable<&'static [u8], &'static [u8]>,
    /// The header's block hash.
    block_hash: [u8; 32],
    /// The header's transaction count.
    tx_count: u64,
}

impl BlockWriter<'_> {
    /// The height this block will commit at.
    pub fn height(&self) -> u64 {
        self.height
    }

    /// Sets what the block's [`Header`] records besides the app hashes:
    /// its hash and how many transactions it delivered (both zero unless
    /// set).
    pub fn set_block(&mut self, block_hash: [u8; 32], tx_count: u64) {
        self.block_hash = block_hash;
        self.tx_count = tx_count;
    }

    /// The key of the committed batch holding the record `id`
    /// ([`State::batch_of`]); this block's own batches are not in it.
    pub fn batch_of(&self, id: &[u8]) -> Result<Option<Vec<u8>>> {
        self.state.batch_of(id)
    }

    /// The value under `key` as this block sees it: staged writes first,
    /// then the committed state.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.staged.get(key) {
            Some(staged) => Ok(staged.clone()),
            None => Ok(self
                .snapshot
                .get(key)
                .map_err(store_err)?
                .map(|g| g.value().to_vec())),
        }
    }

    /// Stages `key = value`.
    pub fn put(&mut self, key: &[u8], value: &[u8]) {
        self.staged.insert(key.to_vec(), Some(value.to_vec()));
    }

    /// Stages the removal of `key` (a no-op if it does not exist).
    pub fn delete(&mut self, key: &[u8]) {
        self.staged.insert(key.to_vec(), None);
    }

    /// Runs `f` as an atomic transaction: its writes go to a nested overlay
    /// that is merged into the block only if `f` returns `Ok`; on `Err` the
    /// block is exactly as before and the error is returned.
    pub fn transaction<T>(&mut self, f: impl FnOnce(&mut Tx<'_, '_>) -> Result<T>) -> Result<T> {
        let mut tx = Tx {
            block: self,
            overlay: Overlay::new(),
        };
        let out = f(&mut tx)?;
        let overlay = tx.overlay;
        self.staged.extend(overlay);
        Ok(out)
    }

    /// The first `limit` pairs whose key starts with `prefix`, in key order,
    /// as this block sees them (staged writes over the committed state).
    pub fn scan_prefix(&self, prefix: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        scan_layers(&self.snapshot, &[&self.staged], prefix, limit)
    }

    /// Prefix scan of the block's snapshot seen through `layers`.
    fn scan_with(
        &self,
        layers: &[&Overlay],
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        scan_layers(&self.snapshot, layers, prefix, limit)
    }

    /// Writes the staged changes, the new height, the new app hash and the
    /// block's [`Header`] in one durable redb transaction and returns the
    /// app hash. Fails with
    /// [`Error::WrongBlockHeight`] if another block committed meanwhile.
    pub fn commit(self) -> Result<Hash> {
        // Taken before the write transaction and held until the index is
        // updated, so the index always matches the last commit.
        let mut guard = self.state.lock_index();
        let mut txn = self.state.db.begin_write().map_err(store_err)?;
        txn.set_durability(Durability::Immediate)
            .map_err(store_err)?;
        let (hash, staged, update, batch_changes) = {
            let mut meta = txn.open_table(META).map_err(store_err)?;
            let expected = next_height(read_height(&meta)?)?;
            if self.height != expected {
                return Err(Error::WrongBlockHeight {
                    expected,
                    found: self.height,
                });
            }
            let mut kv = txn.open_table(KV).map_err(store_err)?;
            if guard.is_none() {
                // The write transaction sees the last commit.
                *guard = Some(Index::rebuild(&kv, expected - 1)?);
            }
            let index = guard
                .as_ref()
                .ok_or_else(|| Error::Store("app-hash index missing".into()))?;
            // Each write displaces the old value, whose leaf leaves its
            // bucket; a write that changes nothing touches no bucket.
            let mut changes: BTreeMap<u16, Vec<BucketChange>> = BTreeMap::new();
            let mut batch_changes = Vec::new();
            for (key, value) in &self.staged {
                let old = match value {
                    Some(v) => kv.insert(key.as_slice(), v.as_slice()),
                    None => kv.remove(key.as_slice()),
                }
                .map_err(store_err)?;
                if batches::is_batch_key(key) {
                    let old = old.as_ref().map(|o| o.value());
                    batch_changes.push(BatchChange::plan(key, old, value.as_deref()));
                }
                let old = old.map(|old| apphash::leaf_hash(key, old.value()));
                let new = value.as_ref().map(|v| apphash::leaf_hash(key, v));
                if old != new {
                    changes
                        .entry(apphash::bucket_of(key))
                        .or_default()
                        .push((old, new));
                }
            }
            drop(kv);
            let staged = index.stage(changes)?;
            let roots: Vec<(u16, Hash)> = staged.iter().map(|(b, _, root)| (*b, *root)).collect();
            let (hash, update) = index.tree.plan(&roots);
            let previous_app_hash = meta
                .get(META_APP_HASH)
                .map_err(store_err)?
                .and_then(|g| Hash::try_from(g.value()).ok())
                .ok_or_else(|| Error::Store("meta-0 has no 32-byte app_hash".into()))?;
            meta.insert(META_HEIGHT, self.height.to_be_bytes().as_slice())
                .map_err(store_err)?;
            meta.insert(META_APP_HASH, hash.as_slice())
                .map_err(store_err)?;
            let header = Header {
                height: self.height,
                block_hash: self.block_hash,
                previous_app_hash,
                app_hash: hash,
                tx_count: self.tx_count,
            };
            txn.open_table(HEADERS)
                .map_err(store_err)?
                .insert(self.height, header.encode().as_slice())
                .map_err(store_err)?;
            (hash, staged, update, batch_changes)
        };
        if let Err(e) = txn.commit() {
            // The commit may or may not have reached the disk: rebuild the
            // index from whatever the store holds at the next commit.
            *guard = None;
            return Err(store_err(e));
        }
        if let Some(index) = guard.as_mut() {
            index.tree.apply(update);
            for (bucket, leaves, _) in staged {
                index.buckets[usize::from(bucket)] = leaves;
                index.dirty.insert(bucket);
            }
            for change in batch_changes {
                index.batches.apply(change);
            }
            index.height = self.height;
        }
        Ok(hash)
    }
}

/// An atomic transaction inside a block (see [`BlockWriter::transaction`]).
#[derive(Debug)]
pub struct Tx<'b, 'a> {
    block: &'b BlockWriter<'a>,
    overlay: Overlay,
}

impl Tx<'_, '_> {
    /// The height of the block this transaction belongs to.
    pub fn height(&self) -> u64 {
        self.block.height
    }

    /// The key of the committed batch holding the record `id`
    /// ([`State::batch_of`]).
    pub fn batch_of(&self, id: &[u8]) -> Result<Option<Vec<u8>>> {
        self.block.batch_of(id)
    }

    /// The value under `key` as this transaction sees it: its own writes,
    /// then the block's, then the committed state.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.overlay.get(key) {
            Some(v) => Ok(v.clone()),
            None => self.block.get(key),
        }
    }

    /// Stages `key = value` in this transaction.
    pub fn put(&mut self, key: &[u8], value: &[u8]) {
        self.overlay.insert(key.to_vec(), Some(value.to_vec()));
    }

    /// The first `limit` pairs whose key starts with `prefix`, in key order,
    /// as this transaction sees them.
    pub fn scan_prefix(&self, prefix: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.block
            .scan_with(&[&self.block.staged, &self.overlay], prefix, limit)
    }

    /// Stages the removal of `key` in this transaction.
    pub fn delete(&mut self, key: &[u8]) {
        self.overlay.insert(key.to_vec(), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_parts_sort_big_endian() {
        let a = Key::new(1).u64(2).u32(9);
        let b = Key::new(1).u64(256).u32(0);
        assert!(a < b);
        assert!(a.as_bytes() < b.as_bytes());
        assert!(Key::new(1).u128(u128::MAX).as_bytes() < Key::new(2).as_bytes());
        assert_eq!(
            Key::new(7).u8(3).tail(b"xy").into_bytes(),
            vec![7, 3, b'x', b'y']
        );
    }

    #[test]
    fn length_prefixed_parts_are_unambiguous() {
        let a = Key::new(1).bytes(b"ab").unwrap().bytes(b"c").unwrap();
        let b = Key::new(1).bytes(b"a").unwrap().bytes(b"bc").unwrap();
        assert_ne!(a, b);
        assert_eq!(a.as_bytes()[..5], [1, 0, 0, 0, 2]);
    }

    #[test]
    fn fresh_state_is_height_zero_with_empty_root() {
        let s = State::in_memory().unwrap();
        assert_eq!(s.height().unwrap(), 0);
        assert_eq!(s.app_hash().unwrap(), apphash::empty_root());
        assert_eq!(s.recompute_app_hash().unwrap(), apphash::empty_root());
    }

    #[test]
    fn block_reads_see_staged_writes_and_commit_applies_them() {
        let s = State::in_memory().unwrap();
        let mut b = s.begin_block(1).unwrap();
        b.put(b"a", b"1");
        b.put(b"b", b"2");
        b.delete(b"b");
        assert_eq!(b.get(b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(b.get(b"b").unwrap(), None);
        assert_eq!(s.get(b"a").unwrap(), None);
        let hash = b.commit().unwrap();
        assert_eq!(hash, apphash::app_hash([(b"a", b"1")]));
        assert_eq!(s.app_hash().unwrap(), hash);
        assert_eq!(s.recompute_app_hash().unwrap(), hash);
        assert_eq!(s.height().unwrap(), 1);
        assert_eq!(s.get(b"a").unwrap(), Some(b"1".to_vec()));
    }

    #[test]
    fn scan_prefix_merges_layers_in_key_order() {
        let s = State::in_memory().unwrap();
        let mut b = s.begin_block(1).unwrap();
        for i in 0..6u8 {
            b.put(&[1, i], &[i]);
        }
        b.put(&[2, 0], b"other table");
        b.commit().unwrap();
        let all = s.scan_prefix(&[1], 100).unwrap();
        assert_eq!(all.len(), 6);
        assert_eq!(s.scan_prefix(&[1], 2).unwrap(), all[..2].to_vec());
        let mut b = s.begin_block(2).unwrap();
        b.delete(&[1, 0]);
        b.delete(&[1, 1]);
        b.put(&[1, 9], b"new");
        assert_eq!(
            b.scan_prefix(&[1], 3).unwrap(),
            vec![
                (vec![1, 2], vec![2]),
                (vec![1, 3], vec![3]),
                (vec![1, 4], vec![4])
            ]
        );
        b.transaction(|tx| {
            tx.delete(&[1, 2]);
            tx.put(&[1, 1], b"back");
            let seen = tx.scan_prefix(&[1], 2)?;
            assert_eq!(
                seen,
                vec![(vec![1, 1], b"back".to_vec()), (vec![1, 3], vec![3])]
            );
            let tail = tx.scan_prefix(&[1], 100)?;
            assert_eq!(tail.last(), Some(&(vec![1, 9], b"new".to_vec())));
            assert_eq!(tail.len(), 5);
            Ok(())
        })
        .unwrap();
        assert_eq!(b.scan_prefix(&[2], 10).unwrap().len(), 1);
        assert!(b.scan_prefix(&[3], 10).unwrap().is_empty());
    }

    #[test]
    fn batch_index_follows_commits_and_is_rebuilt_when_lost() {
        let s = State::in_memory().unwrap();
        let key = |h: u8| vec![crate::tables::GRADIENT, h];
        let mut value = Vec::new();
        batches::push(&mut value, b"id-1", b"one").unwrap();
        batches::push(&mut value, b"id-2", b"two").unwrap();
        let mut b = s.begin_block(1).unwrap();
        b.put(&key(1), &value);
        // Not committed yet: not in the committed index.
        assert_eq!(b.batch_of(b"id-1").unwrap(), None);
        b.commit().unwrap();
        assert_eq!(s.batch_of(b"id-2").unwrap(), Some(key(1)));
        let mut moved = Vec::new();
        batches::push(&mut moved, b"id-2", b"two").unwrap();
        let mut b = s.begin_block(2).unwrap();
        b.put(&key(1), &moved);
        b.commit().unwrap();
        assert_eq!(s.batch_of(b"id-1").unwrap(), None);
        assert_eq!(s.batch_of(b"id-2").unwrap(), Some(key(1)));
        *s.lock_index() = None;
        assert_eq!(s.batch_of(b"id-2").unwrap(), Some(key(1)));
        assert_eq!(s.batch_of(b"id-1").unwrap(), None);
        let mut b = s.begin_block(3).unwrap();
        b.delete(&key(1));
        b.commit().unwrap();
        assert_eq!(s.batch_of(b"id-2").unwrap(), None);
    }

    #[test]
    fn a_lost_index_is_rebuilt_at_the_next_commit() {
        let s = State::in_memory().unwrap();
        let mut b = s.begin_block(1).unwrap();
        for i in 0..50u8 {
            b.put(&[i], &[i]);
        }
        b.commit().unwrap();
        // As after a commit whose outcome was unknown.
        let before = s.lock_index().clone().unwrap();
        *s.lock_index() = None;
        let mut b = s.begin_block(2).unwrap();
        b.delete(&[0]);
        b.put(&[1], b"changed");
        b.put(&[99], b"new");
        let hash = b.commit().unwrap();
        assert_eq!(hash, s.recompute_app_hash().unwrap());
        let index = s.lock_index().clone().unwrap();
        let txn = s.db.begin_read().unwrap();
        let rebuilt = Index::rebuild(&txn.open_table(KV).unwrap(), 2).unwrap();
        assert_eq!(index.buckets, rebuilt.buckets);
        assert!(index.tree == rebuilt.tree);
        assert_eq!(index.tree.root(), hash);
        assert_ne!(before.tree, index.tree);
    }

    #[test]
    fn wrong_heights_are_rejected() {
        let s = State::in_memory().unwrap();
        assert_eq!(
            s.begin_block(2).unwrap_err(),
            Error::WrongBlockHeight {
                expected: 1,
                found: 2
            }
        );
        let first = s.begin_block(1).unwrap();
        let mut second = s.begin_block(1).unwrap();
        second.put(b"x", b"y");
        second.commit().unwrap();
        let err = first.commit().unwrap_err();
        assert_eq!(err.code(), 42);
        assert_eq!(s.get(b"x").unwrap(), Some(b"y".to_vec()));
    }

    #[test]
    fn transaction_sees_block_writes_and_merges_only_on_ok() {
        let s = State::in_memory().unwrap();
        let mut b = s.begin_block(1).unwrap();
        b.put(b"a", b"1");
        let seen = b
            .transaction(|tx| {
                let a = tx.get(b"a")?;
                tx.put(b"c", b"3");
                tx.delete(b"a");
                assert_eq!(tx.get(b"a")?, None);
                Ok(a)
            })
            .unwrap();
        assert_eq!(seen, Some(b"1".to_vec()));
        assert_eq!(b.get(b"a").unwrap(), None);
        let err = b
            .transaction(|tx| -> Result<()> {
                tx.put(b"d", b"4");
                tx.delete(b"c");
                Err(Error::Store("boom".into()))
            })
            .unwrap_err();
        assert_eq!(err, Error::Store("boom".into()));
        assert_eq!(b.get(b"d").unwrap(), None);
        assert_eq!(b.get(b"c").unwrap(), Some(b"3".to_vec()));
    }

    #[test]
    fn each_commit_writes_a_header_that_chains_to_the_previous_one() {
        let s = State::in_memory().unwrap();
        assert_eq!(s.header(0).unwrap(), None);
        let mut b = s.begin_block(1).unwrap();
        b.put(b"a", b"1");
        let h1 = b.commit().unwrap();
        let first = s.header(1).unwrap().unwrap();
        assert_eq!(
            first,
            Header {
                height: 1,
                block_hash: [0; 32],
                previous_app_hash: apphash::empty_root(),
                app_hash: h1,
                tx_count: 0,
            }
        );
        let mut b = s.begin_block(2).unwrap();
        b.put(b"b", b"2");
        b.set_block([7; 32], 3);
        let h2 = b.commit().unwrap();
        let second = s.header(2).unwrap().unwrap();
        assert_eq!(second.block_hash, [7; 32]);
        assert_eq!(second.tx_count, 3);
        assert_eq!(second.previous_app_hash, h1);
        assert_eq!(second.app_hash, h2);
        assert_eq!(s.header(3).unwrap(), None);
        assert_eq!(s.tip().unwrap(), (2, h2));
        // The headers are beside kv-0, not in the app hash.
        assert_eq!(s.recompute_app_hash().unwrap(), h2);
    }

    #[test]
    fn a_dropped_block_writes_no_header_and_headers_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        let hashes = {
            let s = State::open(&path).unwrap();
            let mut hashes = vec![apphash::empty_root()];
            for height in 1..=3u64 {
                let mut b = s.begin_block(height).unwrap();
                b.put(&height.to_be_bytes(), b"v");
                b.set_block([u8::try_from(height).unwrap(); 32], height);
                hashes.push(b.commit().unwrap());
            }
            // Block 4 runs but never commits, as when the process dies
            // before its commit.
            let mut b = s.begin_block(4).unwrap();
            b.put(b"lost", b"x");
            b.set_block([4; 32], 1);
            drop(b);
            assert_eq!(s.header(4).unwrap(), None);
            hashes
        };
        let s = State::open(&path).unwrap();
        assert_eq!(s.height().unwrap(), 3);
        assert_eq!(s.header(4).unwrap(), None);
        for height in 1..=3u64 {
            let h = s.header(height).unwrap().unwrap();
            let i = usize::try_from(height).unwrap();
            assert_eq!(h.previous_app_hash, hashes[i - 1], "height {height}");
            assert_eq!(h.app_hash, hashes[i], "height {height}");
            assert_eq!(h.tx_count, height);
        }
        assert_eq!(
            s.header(3).unwrap().unwrap().app_hash,
            s.app_hash().unwrap()
        );
        // The next block chains on from the last committed one.
        s.begin_block(4).unwrap().commit().unwrap();
        assert_eq!(s.header(4).unwrap().unwrap().previous_app_hash, hashes[3]);
    }

    #[test]
    fn a_header_of_the_wrong_size_is_a_store_error() {
        let h = Header {
            height: 9,
            block_hash: [1; 32],
            previous_app_hash: [2; 32],
            app_hash: [3; 32],
            tx_count: 4,
        };
        assert_eq!(Header::decode(9, &h.encode()).unwrap(), h);
        assert!(matches!(Header::decode(9, &[0; 10]), Err(Error::Store(_))));
    }
}
