//! Range planning: which blocks a range read of a UnixFS file fetches, in the
//! order [`r3mes_ipfs::reader::RangeReader`] fetches them, known before any
//! byte of the answer is sent.
//!
//! The RPC `cat` reports its fetch cost in response headers, which must go out
//! before the body streams; the gateway's `entity-bytes` CAR lists exactly the
//! blocks a verifying client needs for a range. Both come from a [`RangePlan`]:
//! a walk of the same nodes the range reader visits, with the same checks
//! (`decode_file_node`, child sizes against the parent's `blocksizes`, depth),
//! but without hashing and without keeping block bytes: dag-pb nodes are read
//! unverified to find their children, raw leaves are only sized. The blocks
//! themselves are verified later, when they are actually read and sent.
//!
//! `RangeReader::recording` gives the same list with the blocks in memory; the
//! tests hold the two to the same answer.

use r3mes_ipfs::blockstore::BlockStore;
use r3mes_ipfs::reader::{FileNode, decode_file_node};
use r3mes_ipfs::{Cid, Error, ReadStats, Result, cids};

/// Deepest DAG accepted, as in the range reader.
const MAX_DEPTH: usize = 32;

/// One block a range read fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedBlock {
    /// The block.
    pub cid: Cid,
    /// Its size in bytes.
    pub size: u64,
}

/// The blocks a range read fetches, in fetch order (parents before children;
/// a block repeated in the DAG is listed each time it is fetched).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangePlan {
    /// Content size of the whole file.
    pub file_size: u64,
    /// First byte read (the requested offset, clamped to the file size).
    pub start: u64,
    /// One past the last byte read.
    pub end: u64,
    /// Blocks fetched: the root first, then every node on the paths to the
    /// leaves that overlap `[start, end)`.
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

    /// What the read costs, as `RangeReader::stats` reports it.
    pub fn stats(&self) -> ReadStats {
        ReadStats {
            blocks: self.blocks.len() as u64,
            bytes: self.blocks.iter().map(|b| b.size).sum(),
        }
    }
}

/// Plans the read of `length` bytes (to the end when `None`) from `offset` of
/// the UnixFS file under `cid`. Unlike the range reader, an offset past the end
/// is not an error: it plans an empty read (the root only), as Kubo's `cat`
/// answers such an offset with no bytes.
pub fn plan_range(
    store: &dyn BlockStore,
    cid: &Cid,
    offset: u64,
    length: Option<u64>,
) -> Result<RangePlan> {
    let mut planner = Planner {
        store,
        blocks: Vec::new(),
    };
    let root = planner.load(cid)?;
    let file_size = root.size;
    let start = offset.min(file_size);
    let end = match length {
        Some(len) => start.saturating_add(len).min(file_size),
        None => file_size,
    };
    if end > start {
        planner.visit(cid, root, start, end, 0)?;
    }
    Ok(RangePlan {
        file_size,
        start,
        end,
        blocks: planner.blocks,
    })
}

struct Planner<'a> {
    store: &'a dyn BlockStore,
    blocks: Vec<PlannedBlock>,
}

impl Planner<'_> {
    /// Reads and decodes a node (unverified), recording it.
    fn load(&mut self, cid: &Cid) -> Result<FileNode> {
        let block = if cids::is_inline(cid) {
            cid.hash().digest().to_vec()
        } else {
            self.store
                .get_unverified(cid)?
                .ok_or(Error::BlockNotFound(*cid))?
        };
        self.blocks.push(PlannedBlock {
            cid: *cid,
            size: block.len() as u64,
        });
        decode_file_node(cid, block)
    }

    /// Sizes a raw leaf without reading it, recording it.
    fn size_raw_leaf(&mut self, cid: &Cid) -> Result<u64> {
        let size = self
            .store
            .block_size(cid)?
            .ok_or(Error::BlockNotFound(*cid))?;
        self.blocks.push(PlannedBlock { cid: *cid, size });
        Ok(size)
    }

    /// Visits the children of `node` that overlap `[start, end)` (relative to it).
    fn visit(
        &mut self,
        cid: &Cid,
        node: FileNode,
        start: u64,
        end: u64,
        depth: usize,
    ) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(Error::decode(
                cid,
                format!("DAG deeper than {MAX_DEPTH} levels"),
            ));
        }
        let mut child_start = node.data.len() as u64;
        for (child_cid, child_size) in node.children {
            let child_end = child_start + child_size;
            if child_end > start && child_start < end {
                let raw_leaf = child_cid.codec() == cids::RAW && !cids::is_inline(&child_cid);
                let (held, child) = if raw_leaf {
                    (self.size_raw_leaf(&child_cid)?, None)
                } else {
                    let child = self.load(&child_cid)?;
                    (child.size, Some(child))
                };
                if held != child_size {
                    return Err(Error::decode(
                        cid,
                        format!("child {child_cid} holds {held} bytes, parent claims {child_size}"),
                    ));
                }
                if let Some(child) = child {
                    let s = start.saturating_sub(child_start);
                    let e = end.min(child_end) - child_start;
                    self.visit(&child_cid, child, s, e, depth + 1)?;
                }
            }
            if child_end >= end {
                break;
            }
            child_start = child_end;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use r3mes_ipfs::reader::RangeReader;
    use r3mes_ipfs::{AddOptions, Repo};

    fn data(len: usize, seed: u32) -> Vec<u8> {
        let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 24) as u8
            })
            .collect()
    }

    /// The plan must list exactly what a recording range reader fetched.
    fn check(repo: &Repo, cid: &Cid, offset: u64, length: Option<u64>) {
        let plan = plan_range(repo.store(), cid, offset, length).unwrap();
        let mut reader = RangeReader::recording(repo.store());
        let mut out = Vec::new();
        let result = reader.read(cid, offset, length, &mut out);
        let recorded: Vec<PlannedBlock> = reader
            .take_recorded()
            .into_iter()
            .map(|(cid, block)| PlannedBlock {
                cid,
                size: block.len() as u64,
            })
            .collect();
        match result {
            Ok(n) => {
                assert_eq!(plan.len(), n, "offset {offset} length {length:?}");
                assert_eq!(plan.blocks, recorded, "offset {offset} length {length:?}");
                assert_eq!(plan.stats(), reader.stats());
            }
            Err(Error::OffsetPastEnd { .. }) => {
                assert!(plan.is_empty());
                assert_eq!(plan.blocks.len(), 1);
            }
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn plans_match_the_recording_reader() {
        let repo = Repo::in_memory();
        let chunk = 1024;
        let cases = [
            (
                AddOptions {
                    chunk_size: chunk,
                    ..AddOptions::default()
                },
                0,
            ),
            (
                AddOptions {
                    chunk_size: chunk,
                    cid_version: 1,
                    ..AddOptions::default()
                },
                1,
            ),
        ];
        for (options, seed) in cases {
            // 200 chunks: two levels (174 links per node), a partial last leaf.
            let bytes = data(200 * chunk + 123, seed);
            let root = repo.add_bytes(&bytes, &options).unwrap().root;
            let size = bytes.len() as u64;
            for (offset, length) in [
                (0, None),
                (0, Some(0)),
                (0, Some(1)),
                (1023, Some(2)),
                (1024, Some(1024)),
                (174 * 1024 - 10, Some(20)),
                (size - 1, None),
                (size, None),
                (size + 5, Some(3)),
                (5000, Some(u64::MAX)),
            ] {
                check(&repo, &root, offset, length);
            }
            // A one-leaf file and an empty one.
            let small = repo.add_bytes(b"hello", &options).unwrap().root;
            check(&repo, &small, 1, Some(3));
            let empty = repo.add_bytes(b"", &options).unwrap().root;
            check(&repo, &empty, 0, None);
        }
    }

    #[test]
    fn repeated_leaves_are_listed_each_time() {
        let repo = Repo::in_memory();
        let options = AddOptions {
            chunk_size: 256,
            ..AddOptions::default()
        };
        let root = repo.add_bytes(&[0u8; 256 * 4], &options).unwrap().root;
        let plan = plan_range(repo.store(), &root, 0, None).unwrap();
        assert_eq!(plan.blocks.len(), 5);
        assert_eq!(plan.blocks[1], plan.blocks[4]);
        check(&repo, &root, 0, None);
    }

    #[test]
    fn missing_blocks_and_bad_nodes_are_errors() {
        let repo = Repo::in_memory();
        let absent = cids::raw_cid(cids::sha256_multihash(b"absent"));
        assert!(matches!(
            plan_range(repo.store(), &absent, 0, None),
            Err(Error::BlockNotFound(c)) if c == absent
        ));
        // A dag-pb block that is not UnixFS.
        let cid = repo.block_put(&[], cids::DAG_PB, 1).unwrap();
        assert!(plan_range(repo.store(), &cid, 0, None).is_err());
        // An identity CID of empty data is an empty raw file.
        let probe: Cid = "bafkqaaa".parse().unwrap();
        let plan = plan_range(repo.store(), &probe, 0, None).unwrap();
        assert_eq!((plan.file_size, plan.blocks.len()), (0, 1));
    }
}
