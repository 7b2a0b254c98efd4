//! MFS, the Mutable File System of Kubo's `ipfs files`: a tree of UnixFS
//! directories whose root CID the repo keeps, changed by path.
//!
//! Every mutation loads the directories on the paths it touches, edits them in
//! memory, then re-encodes each changed directory bottom-up to the root (a
//! directory's link `Tsize` is its child's cumulative size, as Kubo writes it)
//! and stores the new blocks in one durable batch before the new root is
//! recorded in one durable database transaction. A crash therefore leaves the
//! old root or the new one; blocks of an interrupted change are unreachable
//! and go at the next GC. The MFS root is a GC root, as in Kubo: everything
//! reachable from it is kept. Mutations are serialised and exclude GC while
//! they run, so a GC never sweeps blocks a change is about to link.
//!
//! Paths follow Kubo's rules: absolute, `/`-separated; here empty, `.` and
//! `..` components are refused rather than cleaned away. Errors use Kubo's
//! wording (`file does not exist`, `directory already has entry by that
//! name`, ...).
//!
//! Two differences from Kubo, both deliberate. `write` re-imports the whole
//! file with `ipfs add`'s balanced layout, so a written file has the CID
//! `ipfs add` gives its bytes (Kubo's `files write` uses the trickle layout
//! and gives other CIDs, kubo#5024). And HAMT-sharded directories are refused
//! (see [`crate::directory`]). `flush` exists for compatibility: every
//! change is flushed when it returns.

use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};

use cid::Cid;

use crate::blockstore::BlockStore;
use crate::directory::{
    DirEntry, Directory, EMPTY_DIRECTORY_BLOCK, EntryKind, NodeStat, check_name,
    empty_directory_cid, resolve_path, split_ipfs_path, stat_node,
};
use crate::importer::ImportParams;
use crate::reader::RangeReader;
use crate::{Error, Repo, Result};

/// An absolute MFS path, split into checked names. The root has no names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MfsPath {
    parts: Vec<String>,
    trailing_slash: bool,
}

impl MfsPath {
    /// Parses an absolute path (`/`, `/a/b`, `/a/b/`). Kubo's messages for a
    /// path that is empty or relative; empty, `.` and `..` components and
    /// names [`check_name`] refuses are errors too.
    pub fn parse(text: &str) -> Result<Self> {
        if text.is_empty() {
            return Err(Error::InvalidPath("paths must not be empty".into()));
        }
        let Some(rest) = text.strip_prefix('/') else {
            return Err(Error::InvalidPath(
                "paths must start with a leading slash".into(),
            ));
        };
        let trailing_slash = !rest.is_empty() && rest.ends_with('/');
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if trailing_slash && rest.is_empty() {
            return Err(Error::InvalidPath(format!(
                "invalid path {text:?}: an entry name is empty"
            )));
        }
        let mut parts = Vec::new();
        if !rest.is_empty() {
            for part in rest.split('/') {
                check_name(part).map_err(|reason| {
                    Error::InvalidPath(format!("invalid path {text:?}: {reason}"))
                })?;
                parts.push(part.to_string());
            }
        }
        Ok(Self {
            parts,
            trailing_slash,
        })
    }

    /// The root, `/`.
    pub fn root() -> Self {
        Self {
            parts: Vec::new(),
            trailing_slash: false,
        }
    }

    /// The names from the root down.
    pub fn parts(&self) -> &[String] {
        &self.parts
    }

    /// Whether this is `/`.
    pub fn is_root(&self) -> bool {
        self.parts.is_empty()
    }

    /// Whether the text ended with `/` (a `cp` destination that names a directory).
    pub fn has_trailing_slash(&self) -> bool {
        self.trailing_slash
    }

    /// The last name, `None` for the root.
    pub fn name(&self) -> Option<&str> {
        self.parts.last().map(String::as_str)
    }

    /// The path with `name` appended.
    pub fn join(&self, name: &str) -> Result<Self> {
        check_name(name).map_err(Error::InvalidPath)?;
        let mut parts = self.parts.clone();
        parts.push(name.to_string());
        Ok(Self {
            parts,
            trailing_slash: false,
        })
    }
}

impl std::fmt::Display for MfsPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.parts.is_empty() {
            return f.write_str("/");
        }
        for part in &self.parts {
            write!(f, "/{part}")?;
        }
        Ok(())
    }
}

fn show(parts: &[String]) -> String {
    if parts.is_empty() {
        "/".to_string()
    } else {
        parts.iter().map(|p| format!("/{p}")).collect()
    }
}

/// One entry of `ls`: the name always, the CID of the entry, and with `long`
/// its kind and size (content bytes of a file, 0 for a directory). A Kubo
/// daemon answers a short listing with names only, so a client fills in only
/// what it was told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    /// Entry name.
    pub name: String,
    /// File or directory (long listings).
    pub kind: Option<EntryKind>,
    /// Content size of a file, 0 for a directory (long listings).
    pub size: Option<u64>,
    /// The entry's CID.
    pub hash: Option<Cid>,
}

/// Options of `write`, named as Kubo names them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WriteOptions {
    /// Byte offset to write at (`offset`); past the end, the gap is zeros.
    pub offset: u64,
    /// Create the file if it does not exist (`create`).
    pub create: bool,
    /// Make parent directories as needed (`parents`).
    pub parents: bool,
    /// Empty the file before writing (`truncate`).
    pub truncate: bool,
    /// Write at most this many bytes of the input (`count`).
    pub count: Option<u64>,
    /// Raw leaves; `None` is Kubo's default for the CID version.
    pub raw_leaves: Option<bool>,
    /// CID version of the file's nodes (`cid-version`, default 0).
    pub cid_version: u8,
}

/// The MFS of one repo. Cheap to clone; see the module documentation.
#[derive(Clone)]
pub struct Mfs {
    repo: Repo,
}

impl Mfs {
    /// The MFS of `repo` (also [`Repo::mfs`]).
    pub fn new(repo: Repo) -> Self {
        Self { repo }
    }

    fn store(&self) -> &dyn BlockStore {
        self.repo.store()
    }

    /// The root directory's CID (the empty directory until something is made).
    pub fn root(&self) -> Result<Cid> {
        Ok(self.store().mfs_root()?.unwrap_or_else(empty_directory_cid))
    }

    /// `files mkdir`: makes a directory; with `parents` also its missing
    /// ancestors, and an existing directory is no error. New directories take
    /// `cid_version` when given, else their parent's.
    pub fn mkdir(&self, path: &str, parents: bool, cid_version: Option<u8>) -> Result<()> {
        let path = MfsPath::parse(path)?;
        if let Some(v) = cid_version
            && v > 1
        {
            return Err(Error::InvalidArgument(format!(
                "unknown CID version {v} (use 0 or 1)"
            )));
        }
        self.change(|work| {
            if path.is_root() {
                return if parents {
                    Ok(())
                } else {
                    Err(Error::Files(
                        "cannot create directory '/': Already exists".into(),
                    ))
                };
            }
            let parts = path.parts();
            let parent = &parts[..parts.len() - 1];
            work.ensure_dir(parent, parents, cid_version)?;
            match work.entry(parts)? {
                Some(entry) => {
                    let kind = work.kind_of(&entry.cid)?;
                    if parents && kind == EntryKind::Directory {
                        Ok(())
                    } else {
                        Err(Error::FileExists {
                            path: path.to_string(),
                        })
                    }
                }
                None => work.create_dir(parts, cid_version),
            }
        })
        .map(|_| ())
    }

    /// `files cp`: links `from` (`/ipfs/<cid>[/names...]` or an MFS path) at
    /// `to`. A `to` ending in `/` puts it inside that directory under its own
    /// name. `to` must not exist; its parent must, unless `parents`. The
    /// source's root block must be in the repo (nothing is fetched).
    pub fn cp(&self, from: &str, to: &str, parents: bool) -> Result<()> {
        let to_path = MfsPath::parse(to)?;
        self.change(|work| {
            let (source, name) = work.resolve_source(from)?;
            let target = if to_path.has_trailing_slash() || to_path.is_root() {
                to_path.join(&name)?
            } else {
                to_path.clone()
            };
            let parts = target.parts();
            let parent = &parts[..parts.len() - 1];
            work.ensure_dir(parent, parents, None)?;
            if work.entry(parts)?.is_some() {
                return Err(Error::EntryExists {
                    path: target.to_string(),
                });
            }
            work.set_entry(parts, source.cid, source.tsize)
        })
        .map(|_| ())
    }

    /// `files stat`: hash, sizes, link count and kind of the node at `path`.
    /// As Kubo's, it also takes an IPFS path, `/ipfs/CID[/names...]`.
    pub fn stat(&self, path: &str) -> Result<NodeStat> {
        let mut work = Work::new(self.store(), self.root()?);
        let cid = match path.strip_prefix("/ipfs/") {
            Some(rest) => {
                let (root, names) = split_ipfs_path(rest)?;
                resolve_path(&mut |c| work.block(c), &root, names)?
            }
            None => work.cid_at(MfsPath::parse(path)?.parts())?,
        };
        let block = work.block(&cid)?;
        stat_node(&cid, &block)
    }

    /// `files ls`: the entries of a directory in name order, or the file
    /// itself. `long` adds each entry's kind and size (reading its block).
    pub fn ls(&self, path: &str, long: bool) -> Result<Vec<ListEntry>> {
        let path = MfsPath::parse(path)?;
        let mut work = Work::new(self.store(), self.root()?);
        let cid = work.cid_at(path.parts())?;
        let block = work.block(&cid)?;
        let stat = stat_node(&cid, &block)?;
        let entries: Vec<(String, Cid)> = match stat.kind {
            EntryKind::File => vec![(path.name().unwrap_or_default().to_string(), cid)],
            EntryKind::Directory => Directory::decode(&cid, &block)?
                .entries()
                .map(|e| (e.name, e.cid))
                .collect(),
        };
        entries
            .into_iter()
            .map(|(name, cid)| {
                let (kind, size) = if long {
                    let stat = stat_node(&cid, &work.block(&cid)?)?;
                    (Some(stat.kind), Some(stat.size))
                } else {
                    (None, None)
                };
                Ok(ListEntry {
                    name,
                    kind,
                    size,
                    hash: Some(cid),
                })
            })
            .collect()
    }

    /// `files rm`: unlinks `path`. A directory needs `recursive` (or `force`);
    /// with `force` a missing path is no error, and an entry whose block is
    /// missing or broken is unlinked all the same.
    pub fn rm(&self, path: &str, recursive: bool, force: bool) -> Result<()> {
        let path = MfsPath::parse(path)?;
        if path.is_root() {
            return Err(Error::Files("cannot delete root".into()));
        }
        self.change(|work| {
            let parts = path.parts();
            let entry = match work.entry(parts) {
                Ok(Some(entry)) => entry,
                Ok(None) | Err(Error::FileDoesNotExist { .. }) if force => return Ok(()),
                Ok(None) => {
                    return Err(Error::FileDoesNotExist {
                        path: path.to_string(),
                    });
                }
                Err(e) => return Err(e),
            };
            if !(recursive || force) && work.kind_of(&entry.cid)? == EntryKind::Directory {
                return Err(Error::IsADirectory {
                    path: path.to_string(),
                });
            }
            work.remove_entry(parts)
        })
        .map(|_| ())
    }

    /// `files read`: writes `count` bytes (all when `None`) from `offset` of
    /// the file at `path` to `out`; returns the bytes written.
    pub fn read(
        &self,
        path: &str,
        offset: u64,
        count: Option<u64>,
        out: &mut dyn Write,
    ) -> Result<u64> {
        let (cid, size) = self.file_at(path)?;
        if offset > size {
            return Err(Error::Files(format!(
                "offset was past end of file ({offset} > {size})"
            )));
        }
        let mut reader = RangeReader::new(self.store());
        reader.read(&cid, offset, count, out)
    }

    /// [`Mfs::read`] into memory.
    pub fn read_bytes(&self, path: &str, offset: u64, count: Option<u64>) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.read(path, offset, count, &mut out)?;
        Ok(out)
    }

    /// The CID and content size of the file at `path`.
    pub fn file_at(&self, path: &str) -> Result<(Cid, u64)> {
        let parsed = MfsPath::parse(path)?;
        let mut work = Work::new(self.store(), self.root()?);
        let cid = work.cid_at(parsed.parts())?;
        let stat = stat_node(&cid, &work.block(&cid)?)?;
        if stat.kind != EntryKind::File {
            return Err(Error::IsNotAFile {
                path: parsed.to_string(),
            });
        }
        Ok((cid, stat.size))
    }

    /// `files write`: writes `data` into the file at `path` from
    /// `options.offset` (see [`WriteOptions`]) and returns the file's new
    /// CID. The result is re-imported as `ipfs add` would import its bytes;
    /// the old bytes around the written range are streamed from the store.
    pub fn write(
        &self,
        path: &str,
        data: &mut (dyn Read + Send),
        options: &WriteOptions,
    ) -> Result<Cid> {
        let path = MfsPath::parse(path)?;
        if path.is_root() {
            return Err(Error::IsNotAFile {
                path: "/".to_string(),
            });
        }
        let params = ImportParams::from_options(&crate::AddOptions {
            cid_version: options.cid_version,
            raw_leaves: options.raw_leaves,
            ..crate::AddOptions::default()
        })?;
        let repo = self.repo.clone();
        let mut written = None;
        self.change(|work| {
            let parts = path.parts();
            let parent = &parts[..parts.len() - 1];
            work.ensure_dir(parent, options.parents, None)?;
            let old = match work.entry(parts)? {
                Some(entry) => {
                    let stat = stat_node(&entry.cid, &work.block(&entry.cid)?)?;
                    if stat.kind != EntryKind::File {
                        return Err(Error::IsNotAFile {
                            path: path.to_string(),
                        });
                    }
                    (!options.truncate).then_some((entry.cid, stat.size))
                }
                None if options.create => None,
                None => {
                    return Err(Error::FileDoesNotExist {
                        path: path.to_string(),
                    });
                }
            };
            let mut input: Box<dyn Read + Send + '_> = match options.count {
                Some(n) => Box::new(Read::take(&mut *data, n)),
                None => Box::new(&mut *data),
            };
            let mut splice = Splice::new(&repo, old, options.offset, &mut input);
            let imported = repo.import_unguarded(&mut splice, &params)?;
            // The root block's own size plus its links' Tsize, as a parent records it.
            let tsize = stat_node(&imported.root, &work.block(&imported.root)?)?.cumulative_size;
            written = Some(imported.root);
            work.set_entry(parts, imported.root, tsize)
        })?;
        written.ok_or_else(|| Error::Files("write: nothing was written".into()))
    }

    /// `files mv`: moves `from` to `to`. An existing directory at `to`
    /// receives `from` under its own name; an existing file at `to` is
    /// replaced. A directory cannot move into itself.
    pub fn mv(&self, from: &str, to: &str) -> Result<()> {
        let from = MfsPath::parse(from)?;
        let to = MfsPath::parse(to)?;
        if from.is_root() {
            return Err(Error::Files("cannot move the root directory".into()));
        }
        if from.parts() == to.parts() {
            return Ok(());
        }
        self.change(|work| {
            let entry = work
                .entry(from.parts())?
                .ok_or_else(|| Error::FileDoesNotExist {
                    path: from.to_string(),
                })?;
            let mut target = to.clone();
            let existing = if to.is_root() {
                Some(work.root)
            } else {
                work.entry(to.parts())?.map(|e| e.cid)
            };
            if let Some(existing) = existing
                && work.kind_of(&existing)? == EntryKind::Directory
            {
                target = to.join(from.name().unwrap_or_default())?;
                if work.entry(target.parts())?.is_some() {
                    return Err(Error::EntryExists {
                        path: target.to_string(),
                    });
                }
            }
            if target.parts().starts_with(from.parts()) {
                return Err(Error::Files(format!(
                    "cannot move {from} into itself ({target})"
                )));
            }
            let target_parent = &target.parts()[..target.parts().len() - 1];
            work.dir(target_parent)?;
            work.remove_entry(from.parts())?;
            work.set_entry(target.parts(), entry.cid, entry.tsize)
        })
        .map(|_| ())
    }

    /// `files flush`: the CID of the node at `path` (every change is already flushed).
    pub fn flush(&self, path: &str) -> Result<Cid> {
        let path = MfsPath::parse(path)?;
        Work::new(self.store(), self.root()?).cid_at(path.parts())
    }

    /// Runs one mutation: loads, edits, commits. Returns the new root.
    fn change(&self, edit: impl FnOnce(&mut Work<'_>) -> Result<()>) -> Result<Cid> {
        let _one_at_a_time = self.repo.mfs_guard();
        let _no_gc = self.repo.shared();
        let mut work = Work::new(self.store(), self.root()?);
        edit(&mut work)?;
        work.commit()
    }
}

/// The directories one operation has loaded or changed.
struct Work<'a> {
    store: &'a dyn BlockStore,
    root: Cid,
    dirs: HashMap<Vec<String>, Directory>,
    dirty: BTreeSet<Vec<String>>,
}

impl<'a> Work<'a> {
    fn new(store: &'a dyn BlockStore, root: Cid) -> Self {
        Self {
            store,
            root,
            dirs: HashMap::new(),
            dirty: BTreeSet::new(),
        }
    }

    /// A block, verified; the empty directory needs no store (Kubo's repo always has it).
    fn block(&self, cid: &Cid) -> Result<Vec<u8>> {
        match self.store.get(cid) {
            Err(Error::BlockNotFound(_)) if *cid == empty_directory_cid() => {
                Ok(EMPTY_DIRECTORY_BLOCK.to_vec())
            }
            other => other,
        }
    }

    fn kind_of(&self, cid: &Cid) -> Result<EntryKind> {
        Ok(stat_node(cid, &self.block(cid)?)?.kind)
    }

    /// The directory at `path`, loading it and its ancestors.
    fn dir(&mut self, path: &[String]) -> Result<&mut Directory> {
        if !self.dirs.contains_key(path) {
            let cid = match path.split_last() {
                None => self.root,
                Some((name, parent)) => {
                    let entry = self
                        .dir(parent)?
                        .get(name)
                        .ok_or_else(|| Error::FileDoesNotExist { path: show(path) })?;
                    entry.cid
                }
            };
            let block = self.block(&cid)?;
            if stat_node(&cid, &block)?.kind != EntryKind::Directory {
                return Err(Error::NotADirectory { path: show(path) });
            }
            let dir = Directory::decode(&cid, &block)?;
            self.dirs.insert(path.to_vec(), dir);
        }
        self.dirs
            .get_mut(path)
            .ok_or_else(|| Error::Files(format!("{} vanished while loading", show(path))))
    }

    /// The entry at `path` (`None` when its parent lacks the name; the root has none).
    fn entry(&mut self, path: &[String]) -> Result<Option<DirEntry>> {
        match path.split_last() {
            None => Ok(None),
            Some((name, parent)) => Ok(self.dir(parent)?.get(name)),
        }
    }

    /// The CID at `path`, the root included.
    fn cid_at(&mut self, path: &[String]) -> Result<Cid> {
        if path.is_empty() {
            return Ok(self.root);
        }
        self.entry(path)?
            .map(|e| e.cid)
            .ok_or_else(|| Error::FileDoesNotExist { path: show(path) })
    }

    fn mark_dirty(&mut self, path: &[String]) {
        for n in 0..=path.len() {
            self.dirty.insert(path[..n].to_vec());
        }
    }

    /// Makes sure a directory exists at `path`; with `parents` creates what is
    /// missing, otherwise a missing one is Kubo's `file does not exist`.
    fn ensure_dir(
        &mut self,
        path: &[String],
        parents: bool,
        cid_version: Option<u8>,
    ) -> Result<()> {
        for n in 1..=path.len() {
            let prefix = &path[..n];
            match self.entry(prefix)? {
                Some(_) => {
                    self.dir(prefix)?;
                }
                None if parents => self.create_dir(prefix, cid_version)?,
                None => return Err(Error::FileDoesNotExist { path: show(prefix) }),
            }
        }
        self.dir(path).map(|_| ())
    }

    /// A new empty directory at `path` (its parent must be loaded or loadable).
    fn create_dir(&mut self, path: &[String], cid_version: Option<u8>) -> Result<()> {
        let Some((name, parent)) = path.split_last() else {
            return Ok(());
        };
        let parent_dir = self.dir(parent)?;
        let version = cid_version.unwrap_or(parent_dir.cid_version);
        // A placeholder link until the commit encodes the new directory.
        parent_dir.insert(
            name,
            empty_directory_cid(),
            EMPTY_DIRECTORY_BLOCK.len() as u64,
        )?;
        self.dirs
            .insert(path.to_vec(), Directory::with_cid_version(version));
        self.mark_dirty(path);
        Ok(())
    }

    /// Links `cid` at `path` (replacing what was there).
    fn set_entry(&mut self, path: &[String], cid: Cid, tsize: u64) -> Result<()> {
        let Some((name, parent)) = path.split_last() else {
            return Err(Error::Files("cannot replace the root directory".into()));
        };
        self.forget(path);
        self.dir(parent)?.insert(name, cid, tsize)?;
        self.mark_dirty(parent);
        Ok(())
    }

    /// Unlinks `path`.
    fn remove_entry(&mut self, path: &[String]) -> Result<()> {
        let Some((name, parent)) = path.split_last() else {
            return Err(Error::Files("cannot delete root".into()));
        };
        self.forget(path);
        self.dir(parent)?.remove(name);
        self.mark_dirty(parent);
        Ok(())
    }

    /// Drops loaded state at and under `path`, which is being replaced.
    fn forget(&mut self, path: &[String]) {
        self.dirs.retain(|p, _| !p.starts_with(path));
        self.dirty.retain(|p| !p.starts_with(path));
    }

    /// Resolves a `cp` source: `/ipfs/<cid>[/names]` through directories in
    /// the repo, or an MFS path. Returns the node (with its cumulative size
    /// as `tsize`) and the name it would take in a directory.
    fn resolve_source(&mut self, from: &str) -> Result<(DirEntry, String)> {
        let (cid, name) = if let Some(rest) = from.strip_prefix("/ipfs/") {
            let text = rest.trim_end_matches('/');
            let (root, names) = split_ipfs_path(text)?;
            for part in names.split('/').filter(|p| !p.is_empty()) {
                check_name(part).map_err(|reason| {
                    Error::InvalidPath(format!("invalid path {from:?}: {reason}"))
                })?;
            }
            let cid = resolve_path(&mut |c| self.block(c), &root, names)?;
            let name = names.rsplit('/').find(|p| !p.is_empty()).unwrap_or(text);
            (cid, name.to_string())
        } else if from.starts_with("/ipns/") {
            return Err(Error::InvalidArgument(format!(
                "{from:?}: IPNS names are not supported by the embedded daemon"
            )));
        } else {
            let path = MfsPath::parse(from)?;
            let cid = self.cid_at(path.parts())?;
            (cid, path.name().unwrap_or_default().to_string())
        };
        let block = self.block(&cid)?;
        let stat = stat_node(&cid, &block)?;
        if stat.kind == EntryKind::Directory {
            // Fails for HAMT shards, which MFS cannot edit.
            Directory::decode(&cid, &block)?;
        }
        Ok((
            DirEntry {
                name: name.clone(),
                cid,
                tsize: stat.cumulative_size,
            },
            name,
        ))
    }

    /// Encodes changed directories deepest first, stores them, records the root.
    fn commit(mut self) -> Result<Cid> {
        if self.dirty.is_empty() {
            return Ok(self.root);
        }
        let mut order: Vec<Vec<String>> = self.dirty.iter().cloned().collect();
        order.sort_by_key(|p| std::cmp::Reverse(p.len()));
        let mut batch = self.store.batch()?;
        let mut root = self.root;
        for path in order {
            let dir = self.dirs.get(&path).ok_or_else(|| {
                Error::Files(format!("{} was changed but not loaded", show(&path)))
            })?;
            let encoded = dir.encode(&show(&path))?;
            batch.put(&encoded.cid, &encoded.block)?;
            match path.split_last() {
                None => root = encoded.cid,
                Some((name, parent)) => {
                    let parent_dir = self.dirs.get_mut(parent).ok_or_else(|| {
                        Error::Files(format!("{} was changed but not loaded", show(parent)))
                    })?;
                    parent_dir.insert(name, encoded.cid, encoded.cumulative_size)?;
                }
            }
        }
        batch.commit(true)?;
        self.store.set_mfs_root(&root)?;
        Ok(root)
    }
}

/// The bytes of a written file: the old bytes before the offset, zeros up to
/// it, the new data, then the old bytes after the new data.
struct Splice<'a, 'd> {
    repo: &'a Repo,
    old: Option<(Cid, u64)>,
    offset: u64,
    data: &'d mut (dyn Read + Send + 'd),
    /// Bytes produced so far.
    pos: u64,
    /// New bytes written (known once `data` ends).
    written: u64,
    data_done: bool,
    buffer: Vec<u8>,
    buffer_pos: usize,
}

/// Old bytes are read from the store this many at a time.
const SPLICE_PIECE: u64 = 1 << 20;

impl<'a, 'd> Splice<'a, 'd> {
    fn new(
        repo: &'a Repo,
        old: Option<(Cid, u64)>,
        offset: u64,
        data: &'d mut (dyn Read + Send + 'd),
    ) -> Self {
        Self {
            repo,
            old,
            offset,
            data,
            pos: 0,
            written: 0,
            data_done: false,
            buffer: Vec::new(),
            buffer_pos: 0,
        }
    }

    fn old_len(&self) -> u64 {
        self.old.map_or(0, |(_, len)| len)
    }

    /// Copies old bytes `[from, from + want)` into `buf` through a piece buffer.
    fn old_bytes(&mut self, from: u64, want: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.buffer_pos >= self.buffer.len() {
            let Some((cid, _)) = self.old else {
                return Ok(0);
            };
            let piece = want.clamp(1, SPLICE_PIECE);
            let mut reader = RangeReader::new(self.repo.store());
            self.buffer.clear();
            self.buffer_pos = 0;
            reader
                .read(&cid, from, Some(piece), &mut self.buffer)
                .map_err(std::io::Error::other)?;
            if self.buffer.is_empty() {
                return Err(std::io::Error::other(format!(
                    "file {cid} ended before its stated size"
                )));
            }
        }
        let n = (self.buffer.len() - self.buffer_pos)
            .min(buf.len())
            .min(usize::try_from(want).unwrap_or(usize::MAX));
        buf[..n].copy_from_slice(&self.buffer[self.buffer_pos..self.buffer_pos + n]);
        self.buffer_pos += n;
        Ok(n)
    }
}

impl Read for Splice<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let old_len = self.old_len();
        let n = if self.pos < self.offset {
            // Before the offset: old bytes, then zeros past the old end.
            let head_end = self.offset.min(old_len);
            if self.pos < head_end {
                let pos = self.pos;
                self.old_bytes(pos, head_end - pos, buf)?
            } else {
                let n = usize::try_from(self.offset - self.pos)
                    .unwrap_or(usize::MAX)
                    .min(buf.len());
                buf[..n].fill(0);
                n
            }
        } else if !self.data_done {
            let n = self.data.read(buf)?;
            if n == 0 {
                self.data_done = true;
                // The old bytes the new data covered are skipped: drop buffered ones.
                self.buffer.clear();
                self.buffer_pos = 0;
                return self.read(buf);
            }
            self.written += n as u64;
            n
        } else {
            // After the new data: the rest of the old file.
            if self.pos >= old_len {
                return Ok(0);
            }
            let pos = self.pos;
            self.old_bytes(pos, old_len - pos, buf)?
        };
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mfs() -> Mfs {
        Repo::in_memory().mfs()
    }

    fn write(m: &Mfs, path: &str, data: &[u8], options: WriteOptions) -> Result<Cid> {
        m.write(path, &mut std::io::Cursor::new(data.to_vec()), &options)
    }

    fn create() -> WriteOptions {
        WriteOptions {
            create: true,
            ..WriteOptions::default()
        }
    }

    #[test]
    fn paths_follow_kubo() {
        assert_eq!(MfsPath::parse("/").unwrap(), MfsPath::root());
        let p = MfsPath::parse("/a/b/").unwrap();
        assert_eq!(p.parts(), ["a", "b"]);
        assert!(p.has_trailing_slash());
        assert_eq!(p.to_string(), "/a/b");
        assert_eq!(
            MfsPath::parse("").unwrap_err().to_string(),
            "paths must not be empty"
        );
        assert_eq!(
            MfsPath::parse("a/b").unwrap_err().to_string(),
            "paths must start with a leading slash"
        );
        for bad in ["//", "/a//b", "/a/./b", "/..", "/a/\0"] {
            assert!(
                matches!(MfsPath::parse(bad), Err(Error::InvalidPath(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn fresh_root_is_the_empty_directory() {
        let m = mfs();
        let stat = m.stat("/").unwrap();
        assert_eq!(
            stat.hash.to_string(),
            "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"
        );
        assert_eq!((stat.cumulative_size, stat.blocks), (4, 0));
        assert!(m.ls("/", true).unwrap().is_empty());
        assert_eq!(m.flush("/").unwrap(), stat.hash);
    }

    #[test]
    fn mkdir_rules() {
        let m = mfs();
        m.mkdir("/a", false, None).unwrap();
        assert_eq!(
            m.mkdir("/a", false, None).unwrap_err().to_string(),
            "file already exists"
        );
        m.mkdir("/a", true, None).unwrap();
        assert_eq!(
            m.mkdir("/x/y", false, None).unwrap_err().to_string(),
            "file does not exist"
        );
        m.mkdir("/x/y/z", true, None).unwrap();
        assert_eq!(m.stat("/x/y/z").unwrap().kind, EntryKind::Directory);
        assert!(m.mkdir("/", false, None).is_err());
        m.mkdir("/", true, None).unwrap();
        write(&m, "/f", b"hi", create()).unwrap();
        assert_eq!(
            m.mkdir("/f/g", true, None).unwrap_err().to_string(),
            "/f is not a directory"
        );
        assert!(m.mkdir("/f", true, None).is_err());
        m.mkdir("/v1", false, Some(1)).unwrap();
        assert_eq!(m.stat("/v1").unwrap().hash.version(), cid::Version::V1);
    }

    #[test]
    fn write_read_splice_and_truncate() {
        let m = mfs();
        assert_eq!(
            write(&m, "/f", b"x", WriteOptions::default())
                .unwrap_err()
                .to_string(),
            "file does not exist"
        );
        let cid = write(&m, "/f", b"hello world", create()).unwrap();
        // The CID `ipfs add` gives the bytes.
        let direct = Repo::in_memory()
            .add_bytes(b"hello world", &crate::AddOptions::default())
            .unwrap();
        assert_eq!(cid, direct.root);
        assert_eq!(m.read_bytes("/f", 0, None).unwrap(), b"hello world");
        assert_eq!(m.read_bytes("/f", 6, Some(3)).unwrap(), b"wor");
        let at = |offset| WriteOptions {
            offset,
            ..WriteOptions::default()
        };
        write(&m, "/f", b"W", at(6)).unwrap();
        assert_eq!(m.read_bytes("/f", 0, None).unwrap(), b"hello World");
        write(&m, "/f", b"!!", at(13)).unwrap();
        assert_eq!(m.read_bytes("/f", 0, None).unwrap(), b"hello World\0\0!!");
        write(
            &m,
            "/f",
            b"new",
            WriteOptions {
                truncate: true,
                ..WriteOptions::default()
            },
        )
        .unwrap();
        assert_eq!(m.read_bytes("/f", 0, None).unwrap(), b"new");
        write(
            &m,
            "/f",
            b"abcdef",
            WriteOptions {
                count: Some(2),
                ..WriteOptions::default()
            },
        )
        .unwrap();
        assert_eq!(m.read_bytes("/f", 0, None).unwrap(), b"abw");
        assert_eq!(
            m.read_bytes("/f", 4, None).unwrap_err().to_string(),
            "offset was past end of file (4 > 3)"
        );
        m.mkdir("/d", false, None).unwrap();
        assert_eq!(
            m.read_bytes("/d", 0, None).unwrap_err().to_string(),
            "/d was not a file"
        );
        assert_eq!(
            write(&m, "/d", b"x", create()).unwrap_err().to_string(),
            "/d was not a file"
        );
        write(
            &m,
            "/p/q/r",
            b"deep",
            WriteOptions {
                create: true,
                parents: true,
                ..WriteOptions::default()
            },
        )
        .unwrap();
        assert_eq!(m.read_bytes("/p/q/r", 0, None).unwrap(), b"deep");
    }

    #[test]
    fn splice_across_chunks() {
        let m = mfs();
        let big: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
        write(&m, "/big", &big, create()).unwrap();
        let patch = vec![0xAAu8; 300_000];
        write(
            &m,
            "/big",
            &patch,
            WriteOptions {
                offset: 200_000,
                ..WriteOptions::default()
            },
        )
        .unwrap();
        let mut expected = big.clone();
        expected[200_000..500_000].copy_from_slice(&patch);
        assert_eq!(m.read_bytes("/big", 0, None).unwrap(), expected);
        let direct = Repo::in_memory()
            .add_bytes(&expected, &crate::AddOptions::default())
            .unwrap();
        assert_eq!(m.stat("/big").unwrap().hash, direct.root);
        assert_eq!(m.stat("/big").unwrap().size, 700_000);
    }

    #[test]
    fn cp_mv_rm() {
        let m = mfs();
        let repo = m.repo.clone();
        let added = repo
            .add_bytes(b"gradient", &crate::AddOptions::default())
            .unwrap();
        m.mkdir("/gradients/window_1000", true, None).unwrap();
        m.cp(
            &format!("/ipfs/{}", added.root),
            "/gradients/window_1000/",
            false,
        )
        .unwrap();
        let ls = m.ls("/gradients/window_1000", true).unwrap();
        assert_eq!(ls.len(), 1);
        assert_eq!(ls[0].name, added.root.to_string());
        assert_eq!((ls[0].kind, ls[0].size), (Some(EntryKind::File), Some(8)));
        assert_eq!(
            m.cp(
                &format!("/ipfs/{}", added.root),
                "/gradients/window_1000/",
                false
            )
            .unwrap_err()
            .to_string(),
            "directory already has entry by that name"
        );
        m.cp("/gradients", "/copy", false).unwrap();
        assert_eq!(
            m.stat("/copy").unwrap().hash,
            m.stat("/gradients").unwrap().hash
        );
        // /ipfs/<dir>/<name> resolves through directories.
        let dir = m.stat("/gradients").unwrap().hash;
        m.cp(&format!("/ipfs/{dir}/window_1000"), "/w", false)
            .unwrap();
        assert_eq!(m.ls("/w", false).unwrap().len(), 1);
        m.mv("/w", "/copy").unwrap();
        assert!(m.stat("/copy/w").is_ok());
        assert!(m.stat("/w").is_err());
        assert!(m.mv("/copy", "/copy/w/inner").is_err());
        assert_eq!(
            m.rm("/copy", false, false).unwrap_err().to_string(),
            "/copy is a directory, use -r to remove directories"
        );
        m.rm("/copy", true, false).unwrap();
        assert_eq!(
            m.rm("/copy", true, false).unwrap_err().to_string(),
            "file does not exist"
        );
        m.rm("/copy", false, true).unwrap();
        m.rm("/nope/deeper", false, true).unwrap();
        assert_eq!(
            m.rm("/", true, true).unwrap_err().to_string(),
            "cannot delete root"
        );
        write(&m, "/a", b"a", create()).unwrap();
        write(&m, "/b", b"b", create()).unwrap();
        m.mv("/a", "/b").unwrap();
        assert_eq!(m.read_bytes("/b", 0, None).unwrap(), b"a");
        let names: Vec<_> = m
            .ls("/", false)
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["b", "gradients"]);
    }

    #[test]
    fn root_survives_and_is_a_gc_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = {
            let repo = Repo::open(dir.path()).unwrap();
            let m = repo.mfs();
            write(
                &m,
                "/models/v1/w.bin",
                b"weights",
                WriteOptions {
                    create: true,
                    parents: true,
                    ..WriteOptions::default()
                },
            )
            .unwrap();
            assert!(repo.gc().unwrap().removed.is_empty());
            m.root().unwrap()
        };
        let repo = Repo::open(dir.path()).unwrap();
        let m = repo.mfs();
        assert_eq!(m.root().unwrap(), root);
        assert_eq!(
            m.read_bytes("/models/v1/w.bin", 0, None).unwrap(),
            b"weights"
        );
        m.rm("/models", true, false).unwrap();
        let report = repo.gc().unwrap();
        // The file leaf, /models/v1, /models and the old root go.
        assert_eq!(report.removed.len(), 4, "{:?}", report.removed);
        assert!(m.read_bytes("/models/v1/w.bin", 0, None).is_err());
    }
}
