//! [`Repo`]: a block store with the operations of an IPFS node on top: add,
//! cat with ranges, blocks, pins, mark-and-sweep GC, CAR export and import,
//! and the MFS ([`Repo::mfs`]).
//!
//! Adds and GC exclude each other (a read-write lock), so a GC never sweeps the
//! blocks of an add in progress whose root is not pinned yet.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use cid::Cid;

use crate::blockstore::{BlockBatch, BlockStore, MemoryBlockStore};
use crate::car::{CarReader, CarWriter};
use crate::content::{AddOptions, GcReport, PinInfo, PinMode, ReadStats};
use crate::importer::{self, BlockSink, DiscardSink, ImportParams, Imported};
use crate::packstore::PackBlockStore;
use crate::reader::{RangeReader, links_of, walk_dag};
use crate::{Error, Result, cids};

/// File name of the block index and pin database inside a repo directory.
pub const BLOCKS_FILE: &str = "blocks.redb";

/// Bytes staged before an intermediate (non-durable) commit during `add`,
/// which bounds the memory of a large import.
const ADD_COMMIT_BYTES: usize = 32 << 20;

/// An IPFS repository: blocks, pins and the operations on them. Cheap to clone.
#[derive(Clone)]
pub struct Repo {
    inner: Arc<Inner>,
}

struct Inner {
    store: Box<dyn BlockStore>,
    path: Option<PathBuf>,
    gc_lock: RwLock<()>,
    /// Serialises MFS mutations (each reads the root, rewrites directories, sets the root).
    mfs_lock: std::sync::Mutex<()>,
}

/// The outcome of a CAR import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarImport {
    /// Roots named by the CAR header.
    pub roots: Vec<Cid>,
    /// Blocks stored.
    pub blocks: u64,
    /// Roots pinned (those whose DAG is complete after the import).
    pub pinned: Vec<Cid>,
}

impl Repo {
    /// Opens (creating if needed) the repo in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        let store = PackBlockStore::open(dir)?;
        Ok(Self::from_parts(Box::new(store), Some(dir.to_path_buf())))
    }

    /// A repo held in memory.
    pub fn in_memory() -> Self {
        Self::with_store(MemoryBlockStore::new())
    }

    /// A repo over any block store.
    pub fn with_store(store: impl BlockStore + 'static) -> Self {
        Self::from_parts(Box::new(store), None)
    }

    fn from_parts(store: Box<dyn BlockStore>, path: Option<PathBuf>) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                path,
                gc_lock: RwLock::new(()),
                mfs_lock: std::sync::Mutex::new(()),
            }),
        }
    }

    /// The block store underneath.
    pub fn store(&self) -> &dyn BlockStore {
        self.inner.store.as_ref()
    }

    /// The repo directory, when it is on disk.
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    /// Holds off GC (shared with adds and other writers).
    pub(crate) fn shared(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.inner
            .gc_lock
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// One MFS mutation at a time.
    pub(crate) fn mfs_guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.inner
            .mfs_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The MFS (Kubo's `ipfs files`) of this repo.
    pub fn mfs(&self) -> crate::mfs::Mfs {
        crate::mfs::Mfs::new(self.clone())
    }

    fn exclusive(&self) -> std::sync::RwLockWriteGuard<'_, ()> {
        self.inner
            .gc_lock
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    // -- add --------------------------------------------------------------

    /// Imports a stream as UnixFS; stores and pins it as the options say.
    pub fn add(&self, reader: &mut (dyn Read + Send), options: &AddOptions) -> Result<Imported> {
        let params = ImportParams::from_options(options)?;
        if options.only_hash {
            return importer::import(reader, &params, &mut DiscardSink);
        }
        let _guard = self.shared();
        let imported = self.import_unguarded(reader, &params)?;
        if options.pin {
            self.store().put_pin(&PinInfo {
                cid: imported.root,
                mode: PinMode::Recursive,
                name: None,
            })?;
        }
        Ok(imported)
    }

    /// Imports and stores blocks without taking the GC guard: the caller holds
    /// it, and keeps the root reachable before letting it go.
    pub(crate) fn import_unguarded(
        &self,
        reader: &mut (dyn Read + Send),
        params: &ImportParams,
    ) -> Result<Imported> {
        let mut sink = StoreSink::new(self.store())?;
        let imported = importer::import(reader, params, &mut sink)?;
        sink.finish()?;
        Ok(imported)
    }

    /// Imports bytes held in memory.
    pub fn add_bytes(&self, data: &[u8], options: &AddOptions) -> Result<Imported> {
        self.add(&mut std::io::Cursor::new(data), options)
    }

    /// Imports a file from disk.
    pub fn add_file(&self, path: &Path, options: &AddOptions) -> Result<Imported> {
        let file = std::fs::File::open(path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
        self.add(&mut reader, options)
    }

    // -- read -------------------------------------------------------------

    /// Writes bytes `[offset, offset+length)` of a UnixFS file to `out`.
    pub fn cat(
        &self,
        cid: &Cid,
        offset: u64,
        length: Option<u64>,
        out: &mut dyn Write,
    ) -> Result<ReadStats> {
        let mut reader = RangeReader::new(self.store());
        reader.read(cid, offset, length, out)?;
        Ok(reader.stats())
    }

    /// Reads a byte range into memory.
    pub fn cat_bytes(
        &self,
        cid: &Cid,
        offset: u64,
        length: Option<u64>,
    ) -> Result<(Vec<u8>, ReadStats)> {
        let mut out = Vec::new();
        let stats = self.cat(cid, offset, length, &mut out)?;
        Ok((out, stats))
    }

    /// Content size of a UnixFS file.
    pub fn file_size(&self, cid: &Cid) -> Result<u64> {
        RangeReader::new(self.store()).file_size(cid)
    }

    /// The node an IPFS path names: `root`, then the names of `path` looked
    /// up through UnixFS directories (what Kubo's `cat /ipfs/CID/a/b`
    /// resolves); see [`crate::directory::resolve_path`].
    pub fn resolve_path(&self, root: &Cid, path: &str) -> Result<Cid> {
        crate::directory::resolve_path(&mut |cid| self.block_get(cid), root, path)
    }

    // -- blocks -----------------------------------------------------------

    /// One block, verified.
    pub fn block_get(&self, cid: &Cid) -> Result<Vec<u8>> {
        self.store().get(cid)
    }

    /// Size of one block.
    pub fn block_stat(&self, cid: &Cid) -> Result<u64> {
        if cids::is_inline(cid) {
            return Ok(cid.hash().digest().len() as u64);
        }
        self.store()
            .block_size(cid)?
            .ok_or(Error::BlockNotFound(*cid))
    }

    /// Stores one block under a CID computed here (`codec` dag-pb or raw).
    pub fn block_put(&self, data: &[u8], codec: u64, cid_version: u8) -> Result<Cid> {
        let hash = cids::sha256_multihash(data);
        let cid = match codec {
            cids::RAW => cids::raw_cid(hash),
            cids::DAG_PB => {
                crate::dagpb::PbNode::decode(data)
                    .map_err(|e| Error::InvalidArgument(format!("not a dag-pb block: {e}")))?;
                cids::dag_pb_cid(cid_version, hash)
            }
            other => {
                return Err(Error::InvalidArgument(format!(
                    "unsupported codec 0x{other:x} (use raw or dag-pb)"
                )));
            }
        };
        let _guard = self.shared();
        let mut batch = self.store().batch()?;
        batch.put(&cid, data)?;
        batch.commit(true)?;
        Ok(cid)
    }

    // -- pins -------------------------------------------------------------

    /// Pins a root. A recursive pin needs every block of the DAG present and intact.
    pub fn pin_add(&self, cid: &Cid, mode: PinMode, name: Option<&str>) -> Result<()> {
        let _guard = self.shared();
        match mode {
            PinMode::Recursive => {
                walk_dag(self.store(), cid, &mut |_, _| Ok(())).map_err(|e| match e {
                    Error::BlockNotFound(missing) => Error::Pin(format!(
                        "cannot pin {cid} recursively: block {missing} of its DAG is missing"
                    )),
                    other => other,
                })?
            }
            PinMode::Direct => {
                self.store().get(cid)?;
            }
        }
        self.store().put_pin(&PinInfo {
            cid: *cid,
            mode,
            name: name.filter(|n| !n.is_empty()).map(String::from),
        })
    }

    /// Removes a pin; an error when `cid` is not pinned.
    pub fn pin_rm(&self, cid: &Cid) -> Result<()> {
        if self.store().remove_pin(cid)? {
            Ok(())
        } else {
            Err(Error::Pin(format!("{cid} is not pinned")))
        }
    }

    /// Every pin, recursive first, then by CID.
    pub fn pin_ls(&self) -> Result<Vec<PinInfo>> {
        let mut pins = self.store().pins()?;
        pins.sort_by(|a, b| {
            a.mode
                .cmp(&b.mode)
                .then_with(|| a.cid.to_string().cmp(&b.cid.to_string()))
        });
        Ok(pins)
    }

    // -- garbage collection -----------------------------------------------

    /// Mark and sweep: removes every block not reachable from a pin or from
    /// the MFS root (a GC root, as in Kubo) and reports what it freed. Blocks
    /// are named by raw CIDv1, as Kubo reports them.
    pub fn gc(&self) -> Result<GcReport> {
        let _guard = self.exclusive();
        let live = self.mark()?;
        let dead: Vec<(Vec<u8>, u64)> = self
            .store()
            .keys()?
            .into_iter()
            .filter(|(k, _)| !live.contains(k))
            .collect();
        let keys: Vec<Vec<u8>> = dead.iter().map(|(k, _)| k.clone()).collect();
        let freed_bytes = self.store().delete(&keys)?;
        let removed = keys
            .iter()
            .filter_map(|k| multihash::Multihash::<64>::from_bytes(k).ok())
            .map(cids::raw_cid)
            .collect();
        Ok(GcReport {
            removed,
            freed_bytes,
        })
    }

    /// Multihash keys of every block reachable from a pin or the MFS root. Missing blocks are
    /// skipped (they cannot be swept anyway); present ones are kept even when
    /// they do not decode, since something pinned names them.
    fn mark(&self) -> Result<HashSet<Vec<u8>>> {
        let mut live = HashSet::new();
        let mut stack: Vec<(Cid, bool)> = self
            .store()
            .pins()?
            .into_iter()
            .map(|p| (p.cid, p.mode == PinMode::Recursive))
            .collect();
        if let Some(root) = self.store().mfs_root()? {
            stack.push((root, true));
        }
        while let Some((cid, recursive)) = stack.pop() {
            if !live.insert(cids::block_key(&cid)) || !recursive {
                continue;
            }
            if cid.codec() != cids::DAG_PB {
                continue;
            }
            let Some(block) = self.store().get_unverified(&cid)? else {
                continue;
            };
            if let Ok(children) = links_of(&cid, &block) {
                stack.extend(children.into_iter().map(|c| (c, true)));
            }
        }
        Ok(live)
    }

    // -- CAR ----------------------------------------------------------------

    /// Exports the DAG under `root` as CAR v1 in depth-first order; returns bytes written.
    pub fn export_car(&self, root: &Cid, out: &mut dyn Write) -> Result<u64> {
        let mut car = CarWriter::new(out, &[*root])?;
        walk_dag(self.store(), root, &mut |cid, block| {
            car.write_block(cid, block)
        })?;
        let written = car.written;
        car.finish()?;
        Ok(written)
    }

    /// Imports a CAR v1 stream. Every block is verified first; one bad block
    /// rejects the whole file and nothing is stored. Complete roots are pinned
    /// recursively when `pin_roots` is set (Kubo's default).
    pub fn import_car(&self, input: &mut dyn Read, pin_roots: bool) -> Result<CarImport> {
        let _guard = self.shared();
        let mut reader = CarReader::new(input)?;
        let roots = reader.roots().to_vec();
        let mut batch = self.store().batch()?;
        let mut blocks = 0;
        while let Some((cid, data)) = reader.next_block()? {
            batch.put(&cid, &data)?;
            blocks += 1;
        }
        batch.commit(true)?;
        let mut pinned = Vec::new();
        if pin_roots {
            for root in &roots {
                if walk_dag(self.store(), root, &mut |_, _| Ok(())).is_ok() {
                    self.store().put_pin(&PinInfo {
                        cid: *root,
                        mode: PinMode::Recursive,
                        name: None,
                    })?;
                    pinned.push(*root);
                }
            }
        }
        Ok(CarImport {
            roots,
            blocks,
            pinned,
        })
    }
}

/// Writes imported blocks into the store in bounded batches; the last commit is durable.
struct StoreSink<'a> {
    store: &'a dyn BlockStore,
    batch: Option<Box<dyn BlockBatch + 'a>>,
    staged: usize,
}

impl<'a> StoreSink<'a> {
    fn new(store: &'a dyn BlockStore) -> Result<Self> {
        Ok(Self {
            store,
            batch: Some(store.batch()?),
            staged: 0,
        })
    }

    fn finish(mut self) -> Result<()> {
        match self.batch.take() {
            Some(batch) => batch.commit(true),
            None => Ok(()),
        }
    }
}

impl BlockSink for StoreSink<'_> {
    fn put(&mut self, cid: &Cid, block: Vec<u8>) -> Result<()> {
        let batch = match &mut self.batch {
            Some(b) => b,
            None => self.batch.insert(self.store.batch()?),
        };
        batch.put(cid, &block)?;
        self.staged += block.len();
        if self.staged >= ADD_COMMIT_BYTES {
            if let Some(full) = self.batch.take() {
                full.commit(false)?;
            }
            self.staged = 0;
        }
        Ok(())
    }
}
