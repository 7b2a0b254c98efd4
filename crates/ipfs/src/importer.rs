//! The UnixFS importer: turns a byte stream into the same DAG, and so the same
//! CID, as Kubo's `ipfs add`.
//!
//! - Chunker: fixed size (`size-262144` by default); every chunk is full but the last.
//! - Leaves: dag-pb nodes holding `UnixFS { File, Data, filesize }` (CIDv0
//!   default), or raw blocks (`--raw-leaves`, default under CIDv1; raw leaves are
//!   always CIDv1 because CIDv0 can only name dag-pb).
//! - Layout: balanced, at most 174 links per node. Kubo grows the tree by making a
//!   full root the first child of a new root and filling the rest depth-first;
//!   the result is that every leaf sits at the same depth and each level is
//!   packed left to right. [`TreeBuilder`] produces that shape while streaming:
//!   a level that fills up is closed into a node of the level above, and at the
//!   end partial levels are closed bottom-up.
//!
//! Memory is bounded by the chunks in flight (a few per core) plus 174 links per
//! level of the tree; it never depends on the file size. Leaves are hashed on
//! every available core while one thread reads ahead.

use std::io::Read;
use std::sync::mpsc;

use cid::Cid;
use sha2::{Digest, Sha256};

use crate::content::AddOptions;
use crate::dagpb::{PbLink, PbNode};
use crate::unixfs::{self, UnixFsData};
use crate::{Error, MAX_CHUNK_SIZE, MAX_LINKS, Result, cids};

/// Parameters of one import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportParams {
    /// Fixed chunk size in bytes.
    pub chunk_size: usize,
    /// Leaves as raw blocks instead of dag-pb UnixFS nodes.
    pub raw_leaves: bool,
    /// CID version of the dag-pb nodes.
    pub cid_version: u8,
    /// Maximum links per node.
    pub max_links: usize,
}

impl ImportParams {
    /// Parameters from `add` options, refusing values Kubo refuses.
    pub fn from_options(options: &AddOptions) -> Result<Self> {
        if options.cid_version > 1 {
            return Err(Error::InvalidArgument(format!(
                "unknown CID version {} (use 0 or 1)",
                options.cid_version
            )));
        }
        if options.chunk_size == 0 || options.chunk_size > MAX_CHUNK_SIZE {
            return Err(Error::InvalidArgument(format!(
                "chunk size {} out of range (1 to {MAX_CHUNK_SIZE} bytes)",
                options.chunk_size
            )));
        }
        Ok(Self {
            chunk_size: options.chunk_size,
            raw_leaves: options.effective_raw_leaves(),
            cid_version: options.cid_version,
            max_links: MAX_LINKS,
        })
    }
}

impl Default for ImportParams {
    fn default() -> Self {
        Self {
            chunk_size: crate::DEFAULT_CHUNK_SIZE,
            raw_leaves: false,
            cid_version: 0,
            max_links: MAX_LINKS,
        }
    }
}

/// Receives the blocks of an import, in an order where children come before parents.
pub trait BlockSink {
    /// Whether the sink keeps blocks; when false, leaves are hashed without being framed.
    fn wants_blocks(&self) -> bool {
        true
    }
    /// Takes one block.
    fn put(&mut self, cid: &Cid, block: Vec<u8>) -> Result<()>;
}

/// A sink that keeps nothing (`--only-hash`).
pub struct DiscardSink;

impl BlockSink for DiscardSink {
    fn wants_blocks(&self) -> bool {
        false
    }

    fn put(&mut self, _cid: &Cid, _block: Vec<u8>) -> Result<()> {
        Ok(())
    }
}

/// A sink that collects blocks in memory (tests, small content).
#[derive(Default)]
pub struct VecSink(pub Vec<(Cid, Vec<u8>)>);

impl BlockSink for VecSink {
    fn put(&mut self, cid: &Cid, block: Vec<u8>) -> Result<()> {
        self.0.push((*cid, block));
        Ok(())
    }
}

/// The outcome of an import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Imported {
    /// Root CID.
    pub root: Cid,
    /// Content bytes.
    pub file_size: u64,
    /// Cumulative size of all blocks of the DAG (what Kubo reports as `Size`).
    pub dag_size: u64,
    /// Number of blocks produced.
    pub blocks: u64,
}

/// Imports everything `reader` yields.
///
/// Three stages run at once: a reader thread cuts chunks, hasher threads (one
/// per core) turn chunks into leaves, and this thread puts leaves back in order,
/// hands blocks to the sink and grows the tree. Bounded queues keep at most a
/// few chunks per hasher in flight.
pub fn import(
    reader: &mut (dyn Read + Send),
    params: &ImportParams,
    sink: &mut dyn BlockSink,
) -> Result<Imported> {
    let hashers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    let keep_blocks = sink.wants_blocks();
    let mut tree = TreeBuilder::new(params);
    let (chunk_tx, chunk_rx) = mpsc::sync_channel::<(u64, Vec<u8>)>(hashers * 2);
    // Hashers share the queue of chunks.
    let chunk_rx = std::sync::Mutex::new(chunk_rx);

    std::thread::scope(|scope| {
        let (leaf_tx, leaf_rx) = mpsc::sync_channel::<(u64, Leaf, Option<Vec<u8>>)>(hashers * 2);
        // Chunk buffers double as credits: the reader needs one per chunk and gets
        // it back only when that chunk's leaf is consumed in order, so at most
        // `in_flight` chunks exist whatever the file size or thread timing.
        let (recycle_tx, recycle_rx) = mpsc::channel::<Vec<u8>>();
        let in_flight = hashers * 4;
        for _ in 0..in_flight {
            let _ = recycle_tx.send(Vec::new());
        }
        let (error_tx, error_rx) = mpsc::channel::<std::io::Error>();
        let chunk_size = params.chunk_size;
        scope.spawn(move || read_chunks(reader, chunk_size, &chunk_tx, &recycle_rx, &error_tx));

        let chunk_rx = &chunk_rx;
        for _ in 0..hashers {
            let leaf_tx = leaf_tx.clone();
            scope.spawn(move || {
                loop {
                    let next = chunk_rx.lock().map_or(None, |rx| rx.recv().ok());
                    let Some((index, chunk)) = next else { return };
                    let (leaf, spare) = make_leaf(chunk, params, keep_blocks);
                    if leaf_tx.send((index, leaf, spare)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(leaf_tx);

        // Leaves arrive in any order; put them back in file order.
        let mut pending = std::collections::BTreeMap::new();
        let mut next_index = 0u64;
        for (index, leaf, spare) in leaf_rx {
            pending.insert(index, (leaf, spare));
            while let Some((leaf, spare)) = pending.remove(&next_index) {
                next_index += 1;
                let _ = recycle_tx.send(spare.unwrap_or_default());
                if let Some(block) = leaf.block {
                    sink.put(&leaf.link.cid, block)?;
                }
                tree.push_leaf(leaf.link, sink)?;
            }
        }
        if let Ok(error) = error_rx.try_recv() {
            return Err(Error::io("reading input", error));
        }
        if next_index == 0 {
            // Kubo stores an empty file as one empty leaf.
            let (leaf, _) = make_leaf(Vec::new(), params, true);
            if let Some(block) = leaf.block {
                sink.put(&leaf.link.cid, block)?;
            }
            tree.push_leaf(leaf.link, sink)?;
        }
        tree.finish(sink)
    })
}

/// Imports a byte slice.
pub fn import_bytes(
    data: &[u8],
    params: &ImportParams,
    sink: &mut dyn BlockSink,
) -> Result<Imported> {
    import(&mut std::io::Cursor::new(data), params, sink)
}

/// Cuts the input into full chunks (the last may be short), numbered in order,
/// each into a buffer taken from `recycled` (waiting for one when none is free).
/// A read failure is reported on `errors` and ends the stream.
fn read_chunks(
    reader: &mut (dyn Read + Send),
    chunk_size: usize,
    out: &mpsc::SyncSender<(u64, Vec<u8>)>,
    recycled: &mpsc::Receiver<Vec<u8>>,
    errors: &mpsc::Sender<std::io::Error>,
) {
    for index in 0.. {
        let Ok(mut buf) = recycled.recv() else { return };
        buf.resize(chunk_size, 0);
        match read_full(reader, &mut buf) {
            Ok(0) => return,
            Ok(n) => {
                buf.truncate(n);
                if out.send((index, buf)).is_err() || n < chunk_size {
                    return;
                }
            }
            Err(e) => {
                let _ = errors.send(e);
                return;
            }
        }
    }
}

/// Fills `buf` unless the stream ends first; returns the bytes read.
fn read_full(reader: &mut (dyn Read + Send), buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// A link to a finished subtree, with what its parent needs to know.
#[derive(Debug, Clone, Copy)]
struct ChildLink {
    cid: Cid,
    /// Cumulative DAG bytes of the subtree.
    tsize: u64,
    /// Content bytes of the subtree.
    filesize: u64,
}

struct Leaf {
    link: ChildLink,
    block: Option<Vec<u8>>,
}

/// Builds one leaf from a chunk. Returns the chunk buffer back when the leaf
/// does not keep it, so it can be reused for reading.
fn make_leaf(chunk: Vec<u8>, params: &ImportParams, keep_blocks: bool) -> (Leaf, Option<Vec<u8>>) {
    let filesize = chunk.len() as u64;
    if params.raw_leaves {
        let cid = cids::raw_cid(cids::multihash_from_digest(&Sha256::digest(&chunk)));
        let link = ChildLink {
            cid,
            tsize: filesize,
            filesize,
        };
        return if keep_blocks {
            (
                Leaf {
                    link,
                    block: Some(chunk),
                },
                None,
            )
        } else {
            (Leaf { link, block: None }, Some(chunk))
        };
    }
    let (head, tail) = unixfs::leaf_frame(chunk.len());
    let tsize = (head.len() + chunk.len() + tail.len()) as u64;
    let (digest, block, spare) = if keep_blocks {
        let mut block = Vec::with_capacity(tsize as usize);
        block.extend_from_slice(&head);
        block.extend_from_slice(&chunk);
        block.extend_from_slice(&tail);
        (Sha256::digest(&block), Some(block), Some(chunk))
    } else {
        let mut h = Sha256::new();
        h.update(&head);
        h.update(&chunk);
        h.update(&tail);
        (h.finalize(), None, Some(chunk))
    };
    let cid = cids::dag_pb_cid(params.cid_version, cids::multihash_from_digest(&digest));
    (
        Leaf {
            link: ChildLink {
                cid,
                tsize,
                filesize,
            },
            block,
        },
        spare,
    )
}

/// Streams leaves into Kubo's balanced layout.
struct TreeBuilder {
    /// `levels[0]` holds leaves, `levels[i]` nodes of height `i`, each waiting for its parent.
    levels: Vec<Vec<ChildLink>>,
    max_links: usize,
    cid_version: u8,
    blocks: u64,
}

impl TreeBuilder {
    fn new(params: &ImportParams) -> Self {
        Self {
            levels: vec![Vec::new()],
            max_links: params.max_links.max(2),
            cid_version: params.cid_version,
            blocks: 0,
        }
    }

    fn push_leaf(&mut self, leaf: ChildLink, sink: &mut dyn BlockSink) -> Result<()> {
        self.blocks += 1;
        self.push_at(0, leaf, sink)
    }

    fn push_at(&mut self, level: usize, link: ChildLink, sink: &mut dyn BlockSink) -> Result<()> {
        if self.levels.len() <= level {
            self.levels.push(Vec::new());
        }
        self.levels[level].push(link);
        if self.levels[level].len() == self.max_links {
            let children = std::mem::take(&mut self.levels[level]);
            let parent = self.close(&children, sink)?;
            self.push_at(level + 1, parent, sink)?;
        }
        Ok(())
    }

    /// Makes the parent node of `children` and hands its block to the sink.
    fn close(&mut self, children: &[ChildLink], sink: &mut dyn BlockSink) -> Result<ChildLink> {
        let filesize = children.iter().map(|c| c.filesize).sum();
        let data = UnixFsData::file(
            None,
            filesize,
            children.iter().map(|c| c.filesize).collect(),
        );
        let node = PbNode {
            links: children
                .iter()
                .map(|c| PbLink {
                    cid: c.cid,
                    name: Some(String::new()),
                    tsize: Some(c.tsize),
                })
                .collect(),
            data: Some(data.encode()),
        };
        let block = node.encode();
        let cid = cids::dag_pb_cid(self.cid_version, cids::sha256_multihash(&block));
        let tsize = block.len() as u64 + children.iter().map(|c| c.tsize).sum::<u64>();
        self.blocks += 1;
        sink.put(&cid, block)?;
        Ok(ChildLink {
            cid,
            tsize,
            filesize,
        })
    }

    /// Closes partial levels bottom-up; the single node left on top is the root.
    fn finish(mut self, sink: &mut dyn BlockSink) -> Result<Imported> {
        let mut level = 0;
        loop {
            let top = self.levels.iter().rposition(|l| !l.is_empty()).unwrap_or(0);
            if level == top && self.levels[level].len() == 1 {
                let root = self.levels[level][0];
                return Ok(Imported {
                    root: root.cid,
                    file_size: root.filesize,
                    dag_size: root.tsize,
                    blocks: self.blocks,
                });
            }
            let children = std::mem::take(&mut self.levels[level]);
            if !children.is_empty() {
                let parent = self.close(&children, sink)?;
                if self.levels.len() <= level + 1 {
                    self.levels.push(Vec::new());
                }
                self.levels[level + 1].push(parent);
            }
            level += 1;
            if level >= self.levels.len() {
                return Err(Error::InvalidArgument("import produced no root".into()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cid_of(data: &[u8], params: &ImportParams) -> Imported {
        import_bytes(data, params, &mut DiscardSink).unwrap()
    }

    #[test]
    fn empty_file_is_kubo_empty_leaf() {
        let r = cid_of(b"", &ImportParams::default());
        assert_eq!(
            r.root.to_string(),
            "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
        );
        assert_eq!(r.file_size, 0);
        let raw = ImportParams {
            raw_leaves: true,
            cid_version: 1,
            ..Default::default()
        };
        assert_eq!(
            cid_of(b"", &raw).root.to_string(),
            "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
        );
    }

    #[test]
    fn hashing_only_equals_storing() {
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for params in [
            ImportParams {
                chunk_size: 1000,
                max_links: 4,
                ..Default::default()
            },
            ImportParams {
                chunk_size: 1000,
                max_links: 4,
                raw_leaves: true,
                cid_version: 1,
            },
        ] {
            let only = cid_of(&data, &params);
            let mut sink = VecSink::default();
            let stored = import_bytes(&data, &params, &mut sink).unwrap();
            assert_eq!(only, stored);
            assert_eq!(sink.0.len() as u64, stored.blocks);
            assert_eq!(sink.0.last().unwrap().0, stored.root, "root comes last");
            let total: u64 = sink.0.iter().map(|(_, b)| b.len() as u64).sum();
            assert_eq!(total, stored.dag_size);
            for (cid, block) in &sink.0 {
                cids::verify(cid, block).unwrap();
            }
        }
    }

    /// With 3 links per node, 10 leaves need depth 3 (27 >= 10 > 9): every leaf at the same depth.
    #[test]
    fn balanced_layout_keeps_leaves_level() {
        let params = ImportParams {
            chunk_size: 1,
            max_links: 3,
            ..Default::default()
        };
        for n in [1usize, 2, 3, 4, 9, 10, 27, 28] {
            let data = vec![1u8; n];
            let mut sink = VecSink::default();
            let r = import_bytes(&data, &params, &mut sink).unwrap();
            let blocks: std::collections::HashMap<_, _> = sink.0.into_iter().collect();
            let mut depths = Vec::new();
            walk_depths(&blocks, &r.root, 0, &mut depths);
            assert_eq!(depths.len(), n);
            let expected = if n == 1 {
                0
            } else {
                (1..).find(|d| 3usize.pow(*d) >= n).unwrap() as usize
            };
            assert!(
                depths.iter().all(|d| *d == expected),
                "n={n} depths={depths:?}"
            );
        }
    }

    fn walk_depths(
        blocks: &std::collections::HashMap<Cid, Vec<u8>>,
        cid: &Cid,
        depth: usize,
        out: &mut Vec<usize>,
    ) {
        let node = PbNode::decode(&blocks[cid]).unwrap();
        if node.links.is_empty() {
            out.push(depth);
        }
        for l in &node.links {
            walk_depths(blocks, &l.cid, depth + 1, out);
        }
    }

    #[test]
    fn rejects_bad_options() {
        let bad = AddOptions {
            chunk_size: 0,
            ..Default::default()
        };
        assert!(ImportParams::from_options(&bad).is_err());
        let bad = AddOptions {
            cid_version: 2,
            ..Default::default()
        };
        assert!(ImportParams::from_options(&bad).is_err());
    }
}
