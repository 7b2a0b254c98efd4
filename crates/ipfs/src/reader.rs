//! Range reads of UnixFS files: `cat(cid, offset, length)` walks the DAG from
//! the root using `blocksizes` and fetches only the blocks on the paths to the
//! leaves that overlap the range, counting blocks and bytes fetched.
//!
//! Every block is verified against its CID as it is read, and the DAG's own
//! claims are checked (a child must hold exactly the bytes its parent's
//! `blocksizes` says), so a hostile DAG yields an error, not wrong bytes.

use std::io::Write;

use cid::Cid;

use crate::blockstore::BlockStore;
use crate::content::ReadStats;
use crate::dagpb::PbNode;
use crate::unixfs::{DataType, UnixFsData};
use crate::{Error, Result, cids};

/// Deepest DAG accepted (174^16 leaves is far beyond any file).
const MAX_DEPTH: usize = 32;

/// A decoded file node: inline content and children with their content sizes.
pub struct FileNode {
    /// Content bytes carried by the node itself.
    pub data: Vec<u8>,
    /// Children and the content bytes each holds.
    pub children: Vec<(Cid, u64)>,
    /// Total content size.
    pub size: u64,
}

/// Decodes a block as a UnixFS file node (raw blocks are leaves).
pub fn decode_file_node(cid: &Cid, block: Vec<u8>) -> Result<FileNode> {
    if cid.codec() == cids::RAW {
        let size = block.len() as u64;
        return Ok(FileNode {
            data: block,
            children: Vec::new(),
            size,
        });
    }
    let node = PbNode::decode(&block).map_err(|e| Error::decode(cid, e))?;
    let data = node
        .data
        .ok_or_else(|| Error::decode(cid, "dag-pb node without UnixFS data"))?;
    let fs = UnixFsData::decode(&data).map_err(|e| Error::decode(cid, e))?;
    match fs.kind {
        DataType::File | DataType::Raw => {}
        other => {
            return Err(Error::NotAFile {
                cid: *cid,
                kind: other.name(),
            });
        }
    }
    if fs.blocksizes.len() != node.links.len() {
        return Err(Error::decode(
            cid,
            format!(
                "{} links but {} blocksizes",
                node.links.len(),
                fs.blocksizes.len()
            ),
        ));
    }
    let inline = fs.data.unwrap_or_default();
    let children: Vec<(Cid, u64)> = node
        .links
        .iter()
        .map(|l| l.cid)
        .zip(fs.blocksizes)
        .collect();
    let claimed: u64 = children
        .iter()
        .try_fold(inline.len() as u64, |acc, (_, s)| acc.checked_add(*s))
        .ok_or_else(|| Error::decode(cid, "blocksizes overflow"))?;
    let size = fs.filesize.unwrap_or(claimed);
    if size != claimed {
        return Err(Error::decode(
            cid,
            format!("filesize {size} but data and blocksizes add up to {claimed}"),
        ));
    }
    Ok(FileNode {
        data: inline,
        children,
        size,
    })
}

/// One block a range read fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedBlock {
    /// The block.
    pub cid: Cid,
    /// Its size in bytes.
    pub size: u64,
}

/// The blocks a range read fetches, in fetch order (parents before children),
/// known before any byte is read: what an HTTP answer announces in its headers,
/// and what a trustless client needs to verify the range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangePlan {
    /// Content size of the whole file.
    pub file_size: u64,
    /// First byte of the range (the offset, clamped to the file size).
    pub start: u64,
    /// One past the last byte of the range.
    pub end: u64,
    /// Blocks fetched: the root, then every node on the paths to the leaves
    /// that overlap `[start, end)`.
    pub blocks: Vec<PlannedBlock>,
}

impl RangePlan {
    /// Bytes the read yields.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Whether the read yields no bytes.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// What the read costs, as [`RangeReader::stats`] reports it.
    pub fn stats(&self) -> ReadStats {
        ReadStats {
            blocks: self.blocks.len() as u64,
            bytes: self.blocks.iter().map(|b| b.size).sum(),
        }
    }
}

/// Plans the read of `length` bytes (to the end when `None`) from `offset`:
/// the same walk as [`RangeReader::read`] with the same checks, but dag-pb
/// nodes are read without hashing and raw leaves are only sized, since the
/// blocks are verified when they are actually read. An offset past the end
/// plans an empty read (the root only), as Kubo's `cat` answers it.
pub fn plan_range(
    store: &dyn BlockStore,
    cid: &Cid,
    offset: u64,
    length: Option<u64>,
) -> Result<RangePlan> {
    let mut walker = RangeReader {
        store,
        stats: ReadStats::default(),
        recorded: None,
        planned: Some(Vec::new()),
    };
    let root = walker.fetch(cid)?;
    let file_size = root.size;
    let start = offset.min(file_size);
    let end = match length {
        Some(len) => start.saturating_add(len).min(file_size),
        None => file_size,
    };
    if end > start {
        walker.walk(cid, root, start, end, &mut std::io::sink(), 0)?;
    }
    Ok(RangePlan {
        file_size,
        start,
        end,
        blocks: walker.planned.unwrap_or_default(),
    })
}

/// Reads bytes of a UnixFS file from a block store, counting what it fetched.
pub struct RangeReader<'a> {
    store: &'a dyn BlockStore,
    stats: ReadStats,
    recorded: Option<Vec<(Cid, Vec<u8>)>>,
    /// `Some` when planning: blocks are listed, not verified or written.
    planned: Option<Vec<PlannedBlock>>,
}

impl<'a> RangeReader<'a> {
    /// A reader over `store`.
    pub fn new(store: &'a dyn BlockStore) -> Self {
        Self {
            store,
            stats: ReadStats::default(),
            recorded: None,
            planned: None,
        }
    }

    /// A reader that also keeps every block it fetches, in fetch order (parents
    /// before children): the blocks a trustless client needs to verify the range.
    pub fn recording(store: &'a dyn BlockStore) -> Self {
        Self {
            recorded: Some(Vec::new()),
            ..Self::new(store)
        }
    }

    /// The blocks kept by a recording reader.
    pub fn take_recorded(&mut self) -> Vec<(Cid, Vec<u8>)> {
        self.recorded.take().unwrap_or_default()
    }

    /// What has been fetched so far.
    pub fn stats(&self) -> ReadStats {
        self.stats
    }

    fn fetch(&mut self, cid: &Cid) -> Result<FileNode> {
        let block = match &mut self.planned {
            None => self.store.get(cid)?,
            Some(planned) => {
                if cid.codec() == cids::RAW && !cids::is_inline(cid) {
                    // A raw leaf has no children: its size is all the plan needs.
                    let size = self
                        .store
                        .block_size(cid)?
                        .ok_or(Error::BlockNotFound(*cid))?;
                    planned.push(PlannedBlock { cid: *cid, size });
                    self.stats.blocks += 1;
                    self.stats.bytes += size;
                    return Ok(FileNode {
                        data: Vec::new(),
                        children: Vec::new(),
                        size,
                    });
                }
                let block = if cids::is_inline(cid) {
                    cid.hash().digest().to_vec()
                } else {
                    self.store
                        .get_unverified(cid)?
                        .ok_or(Error::BlockNotFound(*cid))?
                };
                planned.push(PlannedBlock {
                    cid: *cid,
                    size: block.len() as u64,
                });
                block
            }
        };
        self.stats.blocks += 1;
        self.stats.bytes += block.len() as u64;
        if let Some(recorded) = &mut self.recorded {
            recorded.push((*cid, block.clone()));
        }
        decode_file_node(cid, block)
    }

    /// Size of the file under `cid` (fetches the root block only).
    pub fn file_size(&mut self, cid: &Cid) -> Result<u64> {
        Ok(self.fetch(cid)?.size)
    }

    /// Writes `length` bytes (to the end when `None`) from `offset` to `out`.
    /// Returns the bytes written.
    pub fn read(
        &mut self,
        cid: &Cid,
        offset: u64,
        length: Option<u64>,
        out: &mut dyn Write,
    ) -> Result<u64> {
        let root = self.fetch(cid)?;
        if offset > root.size {
            return Err(Error::OffsetPastEnd {
                cid: *cid,
                offset,
                size: root.size,
            });
        }
        let end = match length {
            Some(len) => offset.saturating_add(len).min(root.size),
            None => root.size,
        };
        if end == offset {
            return Ok(0);
        }
        self.walk(cid, root, offset, end, out, 0)?;
        Ok(end - offset)
    }

    /// Writes the bytes of `[start, end)` (relative to this node) to `out`,
    /// fetching the children that overlap it.
    fn walk(
        &mut self,
        cid: &Cid,
        node: FileNode,
        start: u64,
        end: u64,
        out: &mut dyn Write,
        depth: usize,
    ) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(Error::decode(
                cid,
                format!("DAG deeper than {MAX_DEPTH} levels"),
            ));
        }
        let inline_len = node.data.len() as u64;
        if start < inline_len {
            let s = start as usize;
            let e = end.min(inline_len) as usize;
            out.write_all(&node.data[s..e])
                .map_err(|e| Error::io("writing output", e))?;
        }
        let mut child_start = inline_len;
        for (child_cid, child_size) in node.children {
            let child_end = child_start + child_size;
            if child_end > start && child_start < end {
                let child = self.fetch(&child_cid)?;
                if child.size != child_size {
                    return Err(Error::decode(
                        cid,
                        format!(
                            "child {child_cid} holds {} bytes, parent claims {child_size}",
                            child.size
                        ),
                    ));
                }
                let s = start.saturating_sub(child_start);
                let e = end.min(child_end) - child_start;
                self.walk(&child_cid, child, s, e, out, depth + 1)?;
            }
            if child_end >= end {
                break;
            }
            child_start = child_end;
        }
        Ok(())
    }
}

/// Every block of the DAG under `root`, depth-first in link order (the CAR
/// export order), calling `visit` with each CID and block. Links of raw blocks
/// are none; dag-pb links are followed whatever the UnixFS type.
pub fn walk_dag(
    store: &dyn BlockStore,
    root: &Cid,
    visit: &mut dyn FnMut(&Cid, &[u8]) -> Result<()>,
) -> Result<()> {
    let mut stack = vec![(*root, 0usize)];
    let mut seen = std::collections::HashSet::new();
    while let Some((cid, depth)) = stack.pop() {
        if depth > MAX_DEPTH * 4 || !seen.insert(cid) {
            continue;
        }
        let block = store.get(&cid)?;
        visit(&cid, &block)?;
        for child in links_of(&cid, &block)?.into_iter().rev() {
            stack.push((child, depth + 1));
        }
    }
    Ok(())
}

/// The CIDs a block links to (none for raw blocks).
pub fn links_of(cid: &Cid, block: &[u8]) -> Result<Vec<Cid>> {
    match cid.codec() {
        cids::DAG_PB => Ok(PbNode::decode(block)
            .map_err(|e| Error::decode(cid, e))?
            .links
            .into_iter()
            .map(|l| l.cid)
            .collect()),
        _ => Ok(Vec::new()),
    }
}
