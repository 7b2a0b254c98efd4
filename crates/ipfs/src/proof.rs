//! Availability proofs over the UnixFS DAG: the DAG `ipfs add` builds is the
//! Merkle tree, so a holder proves it still has a file by answering a challenge
//! with a few leaf blocks and their ancestors, and a verifier that knows only
//! the root CID checks the answer by hashing it back up to that CID.
//!
//! A challenge is a list of pseudo-random 64-bit *draws*. Draw `d` names the
//! byte at offset `d mod filesize` (see [`leaf_offsets`]) and so the one block
//! that holds that byte: the leaf under which the offset falls when the DAG is
//! walked from the root by `blocksizes`, exactly as a range read walks it. The
//! answer ([`build_proof`]) is the set of blocks on those paths, root first,
//! each block once. [`verify_proof`] is pure (no I/O, no clock, no floats, no
//! randomness) and never panics, so the chain keeper can call it: it hashes
//! every block it is given (SHA2-256), walks the DAG from the root for every
//! draw with the same checks as `reader.rs` (strict dag-pb and UnixFS decode,
//! as many `blocksizes` as links, every child holding exactly the bytes its
//! parent claims, bounded depth), and refuses answers with a block missing, a
//! block that is on no path (padding), the same block twice, or more draws,
//! blocks, bytes or depth than its [`ProofLimits`] allow.
//!
//! The verifier does not need the blocks in any particular order, and the
//! result does not depend on it. An empty file has only its root: that one
//! block answers every draw.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use cid::Cid;
use sha2::{Digest, Sha256};

use crate::blockstore::BlockStore;
use crate::dagpb::PbNode;
use crate::unixfs::{DataType, UnixFsData};
use crate::{Error, cids};

/// Deepest DAG [`build_proof`] walks (as the range reader: far beyond any file).
const BUILD_MAX_DEPTH: usize = 32;

/// Bounds on what [`verify_proof`] accepts, so an answer costs the verifier a
/// known amount of hashing and memory at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProofLimits {
    /// Most blocks an answer may hold.
    pub max_blocks: usize,
    /// Most bytes all blocks of an answer may hold together.
    pub max_total_bytes: u64,
    /// Deepest leaf accepted, in links from the root (the root is depth 0).
    pub max_depth: usize,
    /// Most draws a challenge may name.
    pub max_draws: usize,
}

impl Default for ProofLimits {
    /// Room for 8 draws landing on distinct 256 KiB leaves with all their
    /// ancestors, several times over (4 MiB, 256 blocks), DAGs up to 8 levels
    /// deep (174^8 leaves), and at most 64 draws per challenge.
    fn default() -> Self {
        Self {
            max_blocks: 256,
            max_total_bytes: 4 << 20,
            max_depth: 8,
            max_draws: 64,
        }
    }
}

/// Why an availability proof was refused (or could not be built).
#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    /// The challenge names no draws: an answer would prove nothing.
    #[error("the challenge has no draws")]
    NoDraws,
    /// The challenge names more draws than the limits allow.
    #[error("{draws} draws, at most {max} allowed")]
    TooManyDraws {
        /// Draws given.
        draws: usize,
        /// The limit.
        max: usize,
    },
    /// The answer holds more blocks than the limits allow.
    #[error("{blocks} blocks in the answer, at most {max} allowed")]
    TooManyBlocks {
        /// Blocks given.
        blocks: usize,
        /// The limit.
        max: usize,
    },
    /// The answer's blocks hold more bytes than the limits allow.
    #[error("{bytes} bytes in the answer, at most {max} allowed")]
    TooManyBytes {
        /// Bytes given (saturating).
        bytes: u64,
        /// The limit.
        max: u64,
    },
    /// The same block appears twice in the answer.
    #[error("block {second} repeats block {first} of the answer")]
    DuplicateBlock {
        /// Index of the first copy.
        first: usize,
        /// Index of the repeat.
        second: usize,
    },
    /// No block of the answer hashes to the root CID (a wrong root, or the root left out).
    #[error("no block of the answer hashes to the root {root}")]
    MissingRoot {
        /// The root CID the verifier holds.
        root: Cid,
    },
    /// A block on a draw's path is not in the answer (left out, or its bytes changed).
    #[error("block {cid} on the path of a draw is missing from the answer")]
    MissingBlock {
        /// The block the path needs.
        cid: Cid,
    },
    /// A block of the answer lies on no draw's path (padding or a stray block).
    #[error("block {index} of the answer is not on the path of any draw")]
    UnusedBlock {
        /// Index of the block in the answer.
        index: usize,
    },
    /// A CID on a path names a codec other than dag-pb or raw.
    #[error("unsupported codec 0x{codec:x} in {cid}")]
    UnsupportedCodec {
        /// The CID.
        cid: Cid,
        /// Its multicodec.
        codec: u64,
    },
    /// A CID on a path uses a hash other than SHA2-256 (or an identity hash longer than allowed).
    #[error("unsupported hash function 0x{code:x} (digest of {len} bytes) in {cid}")]
    UnsupportedHash {
        /// The CID.
        cid: Cid,
        /// Its multihash code.
        code: u64,
        /// Its digest length.
        len: usize,
    },
    /// A block is not valid dag-pb or UnixFS.
    #[error("cannot decode block {cid}: {reason}")]
    Decode {
        /// The block.
        cid: Cid,
        /// What is wrong with it.
        reason: String,
    },
    /// A node on a path is UnixFS but not a file (a directory, symlink, ...).
    #[error("{cid} is not a UnixFS file ({kind})")]
    NotAFile {
        /// The node.
        cid: Cid,
        /// What it is instead.
        kind: &'static str,
    },
    /// A node has a different number of links and `blocksizes`.
    #[error("{cid} has {links} links but {blocksizes} blocksizes")]
    LinkCountMismatch {
        /// The node.
        cid: Cid,
        /// Its links.
        links: usize,
        /// Its `blocksizes` entries.
        blocksizes: usize,
    },
    /// A node's `filesize` differs from its inline data plus its `blocksizes`
    /// (or their sum overflows).
    #[error("{cid} claims filesize {filesize} but its data and blocksizes add up to {claimed}")]
    SizeMismatch {
        /// The node.
        cid: Cid,
        /// Its `filesize` field.
        filesize: u64,
        /// What its parts add up to (saturating).
        claimed: u64,
    },
    /// A child holds a different number of bytes than its parent's `blocksizes` says.
    #[error("block {child} holds {actual} bytes, its parent claims {claimed}")]
    ChildSizeMismatch {
        /// The child.
        child: Cid,
        /// Bytes the parent claims for it.
        claimed: u64,
        /// Bytes it holds.
        actual: u64,
    },
    /// A draw's path goes deeper than the limits allow.
    #[error("the path to {cid} is deeper than {max_depth} levels")]
    TooDeep {
        /// The first node past the limit.
        cid: Cid,
        /// The limit.
        max_depth: usize,
    },
    /// The block store failed while a proof was being built (only from [`build_proof`]).
    #[error("block store: {0}")]
    Store(#[source] Error),
}

/// What one draw of a verified proof landed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrawProof {
    /// The draw as the challenge gave it.
    pub draw: u64,
    /// The byte offset it names (`draw mod filesize`, 0 for an empty file).
    pub offset: u64,
    /// The block holding that byte.
    pub leaf: Cid,
    /// The file bytes that block holds (contains `offset` unless the file is empty).
    pub leaf_range: Range<u64>,
}

/// A proof that passed [`verify_proof`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedProof {
    /// Content size of the file, as its root states it.
    pub filesize: u64,
    /// Distinct leaf blocks the draws landed on.
    pub leaves: usize,
    /// Blocks in the answer.
    pub blocks: usize,
    /// Bytes in the answer.
    pub bytes: u64,
    /// One entry per draw, in challenge order.
    pub draws: Vec<DrawProof>,
}

/// The byte offset each draw names: `draw mod filesize`; every draw names
/// offset 0 of an empty file.
pub fn leaf_offsets(filesize: u64, draws: &[u64]) -> Vec<u64> {
    draws
        .iter()
        .map(|d| d.checked_rem(filesize).unwrap_or(0))
        .collect()
}

/// Verifies an answer to the challenge `draws` against the file `root`.
///
/// `blocks` are the raw bytes of the answer's blocks, in any order. Pure and
/// panic-free on any input; see the module documentation for the checks.
pub fn verify_proof(
    root: &Cid,
    draws: &[u64],
    blocks: &[Vec<u8>],
    limits: &ProofLimits,
) -> Result<VerifiedProof, ProofError> {
    check_draws(draws)?;
    if draws.len() > limits.max_draws {
        return Err(ProofError::TooManyDraws {
            draws: draws.len(),
            max: limits.max_draws,
        });
    }
    if blocks.len() > limits.max_blocks {
        return Err(ProofError::TooManyBlocks {
            blocks: blocks.len(),
            max: limits.max_blocks,
        });
    }
    let bytes = blocks
        .iter()
        .fold(0u64, |acc, b| acc.saturating_add(b.len() as u64));
    if bytes > limits.max_total_bytes {
        return Err(ProofError::TooManyBytes {
            bytes,
            max: limits.max_total_bytes,
        });
    }
    let mut by_digest = BTreeMap::new();
    for (index, block) in blocks.iter().enumerate() {
        let digest: [u8; 32] = Sha256::digest(block).into();
        if let Some(first) = by_digest.insert(digest, index) {
            return Err(ProofError::DuplicateBlock {
                first,
                second: index,
            });
        }
    }
    let source = AnswerBlocks {
        blocks,
        by_digest,
        used: vec![false; blocks.len()],
    };
    let mut walker = Walker::new(source, limits.max_depth);
    let (filesize, answers) = walker.walk_all(root, draws)?;
    if let Some(index) = walker.source.used.iter().position(|used| !used) {
        return Err(ProofError::UnusedBlock { index });
    }
    let leaves = answers
        .iter()
        .map(|a| a.leaf)
        .collect::<BTreeSet<_>>()
        .len();
    Ok(VerifiedProof {
        filesize,
        leaves,
        blocks: blocks.len(),
        bytes,
        draws: answers,
    })
}

/// Builds the answer to the challenge `draws` for the file `root` from
/// `store`: every block on the draws' paths, each once, root first and then
/// in walk order (draw by draw, parents before children). Identity CIDs carry
/// their block inline and are left out. The answer is deterministic and
/// [`verify_proof`] accepts it if it fits the verifier's limits.
pub fn build_proof(
    store: &dyn BlockStore,
    root: &Cid,
    draws: &[u64],
) -> Result<Vec<Vec<u8>>, ProofError> {
    check_draws(draws)?;
    let source = StoreBlocks {
        store,
        seen: BTreeSet::new(),
        out: Vec::new(),
    };
    let mut walker = Walker::new(source, BUILD_MAX_DEPTH);
    walker.walk_all(root, draws)?;
    Ok(walker.source.out)
}

fn check_draws(draws: &[u64]) -> Result<(), ProofError> {
    if draws.is_empty() {
        Err(ProofError::NoDraws)
    } else {
        Ok(())
    }
}

/// Fails unless the walk can check a block named by `cid`.
fn check_cid(cid: &Cid) -> Result<(), ProofError> {
    match cid.codec() {
        cids::DAG_PB | cids::RAW => {}
        codec => return Err(ProofError::UnsupportedCodec { cid: *cid, codec }),
    }
    let hash = cid.hash();
    let len = hash.digest().len();
    match hash.code() {
        cids::SHA2_256 if len == 32 => Ok(()),
        cids::IDENTITY if len <= cids::MAX_IDENTITY_LEN => Ok(()),
        code => Err(ProofError::UnsupportedHash {
            cid: *cid,
            code,
            len,
        }),
    }
}

/// Where the walk gets the bytes of a (non-identity, supported) block.
trait BlockSource {
    /// The block named `cid`, which must hash to it.
    fn block(&mut self, cid: &Cid) -> Result<Cow<'_, [u8]>, ProofError>;
}

/// The blocks of an answer, looked up by SHA2-256 digest, remembering which
/// ones a path used.
struct AnswerBlocks<'a> {
    blocks: &'a [Vec<u8>],
    by_digest: BTreeMap<[u8; 32], usize>,
    used: Vec<bool>,
}

impl BlockSource for AnswerBlocks<'_> {
    fn block(&mut self, cid: &Cid) -> Result<Cow<'_, [u8]>, ProofError> {
        let index = <[u8; 32]>::try_from(cid.hash().digest())
            .ok()
            .and_then(|digest| self.by_digest.get(&digest).copied())
            .ok_or(ProofError::MissingBlock { cid: *cid })?;
        let block = self
            .blocks
            .get(index)
            .ok_or(ProofError::MissingBlock { cid: *cid })?;
        if let Some(used) = self.used.get_mut(index) {
            *used = true;
        }
        Ok(Cow::Borrowed(block.as_slice()))
    }
}

/// A block store, collecting each distinct block it hands out in order.
struct StoreBlocks<'a> {
    store: &'a dyn BlockStore,
    seen: BTreeSet<Vec<u8>>,
    out: Vec<Vec<u8>>,
}

impl BlockSource for StoreBlocks<'_> {
    fn block(&mut self, cid: &Cid) -> Result<Cow<'_, [u8]>, ProofError> {
        let block = self.store.get(cid).map_err(|e| match e {
            Error::BlockNotFound(cid) => ProofError::MissingBlock { cid },
            other => ProofError::Store(other),
        })?;
        if self.seen.insert(cids::block_key(cid)) {
            self.out.push(block.clone());
        }
        Ok(Cow::Owned(block))
    }
}

/// What the walk needs of a decoded file node.
struct Node {
    /// Content bytes the node holds itself (all of a leaf's).
    inline_len: u64,
    /// Children and the content bytes the node claims each holds.
    children: Vec<(Cid, u64)>,
    /// Total content bytes under the node.
    size: u64,
}

/// Decodes a block as a UnixFS file node, with the checks of `reader.rs`.
fn decode_node(cid: &Cid, block: &[u8]) -> Result<Node, ProofError> {
    if cid.codec() == cids::RAW {
        let size = block.len() as u64;
        return Ok(Node {
            inline_len: size,
            children: Vec::new(),
            size,
        });
    }
    let decode_err = |reason: String| ProofError::Decode { cid: *cid, reason };
    let node = PbNode::decode(block).map_err(decode_err)?;
    let data = node
        .data
        .ok_or_else(|| decode_err("dag-pb node without UnixFS data".into()))?;
    let fs = UnixFsData::decode(&data).map_err(decode_err)?;
    match fs.kind {
        DataType::File | DataType::Raw => {}
        other => {
            return Err(ProofError::NotAFile {
                cid: *cid,
                kind: other.name(),
            });
        }
    }
    if fs.blocksizes.len() != node.links.len() {
        return Err(ProofError::LinkCountMismatch {
            cid: *cid,
            links: node.links.len(),
            blocksizes: fs.blocksizes.len(),
        });
    }
    let inline_len = fs.data.as_ref().map_or(0, Vec::len) as u64;
    let claimed = fs
        .blocksizes
        .iter()
        .try_fold(inline_len, |acc, s| acc.checked_add(*s));
    let size = match (claimed, fs.filesize) {
        (Some(claimed), None) => claimed,
        (Some(claimed), Some(filesize)) if claimed == filesize => claimed,
        (claimed, filesize) => {
            return Err(ProofError::SizeMismatch {
                cid: *cid,
                filesize: filesize.unwrap_or(u64::MAX),
                claimed: claimed.unwrap_or(u64::MAX),
            });
        }
    };
    let children = node
        .links
        .iter()
        .map(|l| l.cid)
        .zip(fs.blocksizes)
        .collect();
    Ok(Node {
        inline_len,
        children,
        size,
    })
}

/// The walk from the root to the block holding an offset, shared by the
/// prover and the verifier so both see the same paths. Each distinct CID is
/// fetched and decoded once. Ordered maps only: no hasher seeded from the OS.
struct Walker<S> {
    source: S,
    max_depth: usize,
    nodes: Vec<Node>,
    index: BTreeMap<Cid, usize>,
}

impl<S: BlockSource> Walker<S> {
    fn new(source: S, max_depth: usize) -> Self {
        Self {
            source,
            max_depth,
            nodes: Vec::new(),
            index: BTreeMap::new(),
        }
    }

    /// Walks every draw; returns the file size and what each draw landed on.
    fn walk_all(&mut self, root: &Cid, draws: &[u64]) -> Result<(u64, Vec<DrawProof>), ProofError> {
        let root_node = self.load(root).map_err(|e| match e {
            ProofError::MissingBlock { .. } => ProofError::MissingRoot { root: *root },
            other => other,
        })?;
        let filesize = self.nodes.get(root_node).map_or(0, |n| n.size);
        let offsets = leaf_offsets(filesize, draws);
        let mut answers = Vec::with_capacity(draws.len());
        for (&draw, offset) in draws.iter().zip(offsets) {
            let (leaf, leaf_range) = self.walk(root, root_node, offset)?;
            answers.push(DrawProof {
                draw,
                offset,
                leaf,
                leaf_range,
            });
        }
        Ok((filesize, answers))
    }

    /// Fetches and decodes `cid` (once), returning its node's index.
    fn load(&mut self, cid: &Cid) -> Result<usize, ProofError> {
        if let Some(&i) = self.index.get(cid) {
            return Ok(i);
        }
        check_cid(cid)?;
        let node = if cids::is_inline(cid) {
            decode_node(cid, cid.hash().digest())?
        } else {
            let block = self.source.block(cid)?;
            decode_node(cid, &block)?
        };
        let i = self.nodes.len();
        self.nodes.push(node);
        self.index.insert(*cid, i);
        Ok(i)
    }

    /// Walks from the root (already loaded at `root_node`) to the block
    /// holding byte `offset`; returns that block and the file range it holds.
    fn walk(
        &mut self,
        root: &Cid,
        root_node: usize,
        offset: u64,
    ) -> Result<(Cid, Range<u64>), ProofError> {
        let mut cid = *root;
        let mut at = root_node;
        let mut base = 0u64;
        let mut depth = 0usize;
        loop {
            let Some(node) = self.nodes.get(at) else {
                return Err(ProofError::MissingBlock { cid });
            };
            let rel = offset.saturating_sub(base);
            let holder = (cid, base..base.saturating_add(node.inline_len));
            if rel < node.inline_len {
                return Ok(holder);
            }
            // The child whose range holds `rel`; none only under an empty node.
            let mut child_start = node.inline_len;
            let mut next = None;
            for &(child, claimed) in &node.children {
                let child_end = child_start.saturating_add(claimed);
                if rel < child_end {
                    next = Some((child, claimed, child_start));
                    break;
                }
                child_start = child_end;
            }
            let Some((child, claimed, child_start)) = next else {
                return Ok(holder);
            };
            depth += 1;
            if depth > self.max_depth {
                return Err(ProofError::TooDeep {
                    cid: child,
                    max_depth: self.max_depth,
                });
            }
            let child_at = self.load(&child)?;
            let actual = self.nodes.get(child_at).map_or(0, |n| n.size);
            if actual != claimed {
                return Err(ProofError::ChildSizeMismatch {
                    child,
                    claimed,
                    actual,
                });
            }
            base = base.saturating_add(child_start);
            cid = child;
            at = child_at;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryBlockStore;
    use crate::dagpb::PbLink;
    use crate::importer::{ImportParams, VecSink, import_bytes};
    use proptest::prelude::*;

    /// A deterministic byte pattern that makes every chunk distinct.
    fn data(len: usize) -> Vec<u8> {
        (0..len as u64)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect()
    }

    fn params(chunk_size: usize, max_links: usize, raw: bool) -> ImportParams {
        ImportParams {
            chunk_size,
            max_links,
            raw_leaves: raw,
            cid_version: u8::from(raw),
        }
    }

    /// Imports `bytes` into a fresh memory store; returns the root and the store.
    fn import(bytes: &[u8], p: &ImportParams) -> (Cid, MemoryBlockStore) {
        let mut sink = VecSink::default();
        let imported = import_bytes(bytes, p, &mut sink).unwrap();
        let store = MemoryBlockStore::new();
        put_all(&store, &sink.0);
        (imported.root, store)
    }

    fn put_all(store: &MemoryBlockStore, blocks: &[(Cid, Vec<u8>)]) {
        let mut batch = store.batch().unwrap();
        for (cid, block) in blocks {
            batch.put(cid, block).unwrap();
        }
        batch.commit(false).unwrap();
    }

    fn generous() -> ProofLimits {
        ProofLimits {
            max_blocks: 10_000,
            max_total_bytes: 1 << 30,
            max_depth: 32,
            max_draws: 1000,
        }
    }

    /// Builds and verifies a proof, checking what it says against the data.
    fn round_trip(bytes: &[u8], p: &ImportParams, draws: &[u64]) -> (VerifiedProof, Vec<Vec<u8>>) {
        let (root, store) = import(bytes, p);
        let proof = build_proof(&store, &root, draws).unwrap();
        let verified = verify_proof(&root, draws, &proof, &generous()).unwrap();
        assert_eq!(verified.filesize, bytes.len() as u64);
        assert_eq!(verified.blocks, proof.len());
        assert_eq!(verified.draws.len(), draws.len());
        let offsets = leaf_offsets(bytes.len() as u64, draws);
        for (answer, offset) in verified.draws.iter().zip(offsets) {
            assert_eq!(answer.offset, offset);
            if bytes.is_empty() {
                assert_eq!(answer.leaf_range, 0..0);
            } else {
                assert!(answer.leaf_range.contains(&offset), "{answer:?}");
            }
            let leaf = store.get(&answer.leaf).unwrap();
            assert!(proof.contains(&leaf), "the leaf is in the answer");
            let range = answer.leaf_range.start as usize..answer.leaf_range.end as usize;
            if answer.leaf.codec() == cids::RAW {
                assert_eq!(leaf, bytes[range]);
            } else {
                let node = PbNode::decode(&leaf).unwrap();
                let fs = UnixFsData::decode(&node.data.unwrap()).unwrap();
                assert_eq!(fs.data.unwrap_or_default(), bytes[range]);
            }
        }
        // Root first, and the same answer every time.
        assert_eq!(cids::sha256_multihash(&proof[0]), *root.hash());
        assert_eq!(build_proof(&store, &root, draws).unwrap(), proof);
        (verified, proof)
    }

    const DRAWS: [u64; 8] = [0, 1, 77, 1_000, 4_095, u64::MAX, 123_456_789, 9_999];

    #[test]
    fn single_block_files() {
        for p in [params(1024, 174, false), params(1024, 174, true)] {
            let (v, proof) = round_trip(&data(700), &p, &DRAWS);
            assert_eq!(proof.len(), 1);
            assert_eq!(v.leaves, 1);
        }
    }

    #[test]
    fn empty_file_is_its_root() {
        for p in [params(1024, 174, false), params(1024, 174, true)] {
            let (v, proof) = round_trip(&[], &p, &DRAWS);
            assert_eq!((proof.len(), v.filesize, v.leaves), (1, 0, 1));
        }
    }

    #[test]
    fn two_levels() {
        for raw in [false, true] {
            // 10 chunks of 100 bytes under one root.
            let (v, proof) = round_trip(&data(1000), &params(100, 174, raw), &DRAWS);
            assert_eq!(v.filesize, 1000);
            assert!(v.leaves >= 4, "{v:?}");
            assert_eq!(proof.len(), 1 + v.leaves);
        }
    }

    #[test]
    fn three_and_four_levels() {
        // 4 links per node: 12 chunks need root -> 3 nodes -> leaves (depth 2),
        // 40 chunks one level more (16 < 40 <= 64, depth 3).
        for (len, depth) in [(1200, 2), (4000, 3)] {
            for raw in [false, true] {
                let p = params(100, 4, raw);
                let (v, proof) = round_trip(&data(len), &p, &DRAWS);
                assert!(proof.len() > 1 + v.leaves, "ancestors are included");
                let (root, store) = import(&data(len), &p);
                let proof = build_proof(&store, &root, &DRAWS).unwrap();
                let limits = |max_depth| ProofLimits {
                    max_depth,
                    ..generous()
                };
                verify_proof(&root, &DRAWS, &proof, &limits(depth)).unwrap();
                let err = verify_proof(&root, &DRAWS, &proof, &limits(depth - 1)).unwrap_err();
                assert!(
                    matches!(err, ProofError::TooDeep { max_depth, .. } if max_depth == depth - 1),
                    "{err}"
                );
            }
        }
    }

    #[test]
    fn kubo_default_chunks_with_default_limits() {
        // Three 256 KiB leaves and a root: 8 draws fit the default limits.
        let bytes = data(3 * 262_144 - 5);
        let (root, store) = import(&bytes, &ImportParams::default());
        let proof = build_proof(&store, &root, &DRAWS).unwrap();
        let v = verify_proof(&root, &DRAWS, &proof, &ProofLimits::default()).unwrap();
        assert_eq!(v.leaves, 3);
        assert_eq!(proof.len(), 4);
    }

    #[test]
    fn leaf_offsets_wrap_and_handle_empty_files() {
        assert_eq!(leaf_offsets(10, &[0, 9, 10, 25]), vec![0, 9, 0, 5]);
        assert_eq!(leaf_offsets(0, &[3, u64::MAX]), vec![0, 0]);
        assert!(leaf_offsets(5, &[]).is_empty());
    }

    fn fixture() -> (Cid, Vec<Vec<u8>>, MemoryBlockStore) {
        let (root, store) = import(&data(4000), &params(100, 4, false));
        let proof = build_proof(&store, &root, &DRAWS).unwrap();
        verify_proof(&root, &DRAWS, &proof, &generous()).unwrap();
        (root, proof, store)
    }

    #[test]
    fn tampered_leaf_is_missing() {
        let (root, mut proof, _) = fixture();
        let last = proof.len() - 1;
        let mid = proof[last].len() / 2;
        proof[last][mid] ^= 1;
        let err = verify_proof(&root, &DRAWS, &proof, &generous()).unwrap_err();
        assert!(matches!(err, ProofError::MissingBlock { .. }), "{err}");
    }

    #[test]
    fn missing_ancestor() {
        let (root, mut proof, _) = fixture();
        proof.remove(1); // the first level-1 node on the first draw's path
        let err = verify_proof(&root, &DRAWS, &proof, &generous()).unwrap_err();
        assert!(matches!(err, ProofError::MissingBlock { .. }), "{err}");
    }

    #[test]
    fn extra_block_is_refused() {
        let (root, mut proof, store) = fixture();
        // A genuine block of the same file, but on no draw's path.
        let mut all = Vec::new();
        crate::reader::walk_dag(&store, &root, &mut |_, b| {
            all.push(b.to_vec());
            Ok(())
        })
        .unwrap();
        let stray = all.into_iter().find(|b| !proof.contains(b)).unwrap();
        proof.push(stray);
        let err = verify_proof(&root, &DRAWS, &proof, &generous()).unwrap_err();
        assert!(
            matches!(err, ProofError::UnusedBlock { index } if index == proof.len() - 1),
            "{err}"
        );
        // Junk padding too.
        proof.pop();
        proof.insert(0, b"padding".to_vec());
        let err = verify_proof(&root, &DRAWS, &proof, &generous()).unwrap_err();
        assert!(matches!(err, ProofError::UnusedBlock { index: 0 }), "{err}");
    }

    #[test]
    fn duplicate_block_is_refused() {
        let (root, mut proof, _) = fixture();
        proof.push(proof[2].clone());
        let err = verify_proof(&root, &DRAWS, &proof, &generous()).unwrap_err();
        assert!(
            matches!(err, ProofError::DuplicateBlock { first: 2, .. }),
            "{err}"
        );
    }

    #[test]
    fn wrong_root_is_refused() {
        let (_, proof, _) = fixture();
        let (other, _) = import(&data(3999), &params(100, 4, false));
        let err = verify_proof(&other, &DRAWS, &proof, &generous()).unwrap_err();
        assert!(
            matches!(err, ProofError::MissingRoot { root } if root == other),
            "{err}"
        );
        // The same bytes under a raw CID are not a UnixFS root.
        let (root, proof, _) = fixture();
        let raw = cids::raw_cid(*root.hash());
        assert!(verify_proof(&raw, &DRAWS, &proof, &generous()).is_err());
    }

    #[test]
    fn proof_blocks_may_come_in_any_order() {
        let (root, mut proof, _) = fixture();
        proof.reverse();
        verify_proof(&root, &DRAWS, &proof, &generous()).unwrap();
    }

    #[test]
    fn a_proof_answers_only_its_own_draws() {
        let (root, proof, _) = fixture();
        let other = [2_000u64, 3_500];
        assert!(verify_proof(&root, &other, &proof, &generous()).is_err());
    }

    #[test]
    fn limits_are_enforced() {
        let (root, proof, _) = fixture();
        let check = |limits: ProofLimits, draws: &[u64]| {
            verify_proof(&root, draws, &proof, &limits).unwrap_err()
        };
        let err = check(
            ProofLimits {
                max_draws: 7,
                ..generous()
            },
            &DRAWS,
        );
        assert!(
            matches!(err, ProofError::TooManyDraws { draws: 8, max: 7 }),
            "{err}"
        );
        let err = check(
            ProofLimits {
                max_blocks: proof.len() - 1,
                ..generous()
            },
            &DRAWS,
        );
        assert!(matches!(err, ProofError::TooManyBlocks { .. }), "{err}");
        let bytes: u64 = proof.iter().map(|b| b.len() as u64).sum();
        let err = check(
            ProofLimits {
                max_total_bytes: bytes - 1,
                ..generous()
            },
            &DRAWS,
        );
        assert!(matches!(err, ProofError::TooManyBytes { .. }), "{err}");
        assert!(matches!(check(generous(), &[]), ProofError::NoDraws));
        let at_limit = ProofLimits {
            max_total_bytes: bytes,
            max_blocks: proof.len(),
            max_draws: DRAWS.len(),
            max_depth: 3,
        };
        verify_proof(&root, &DRAWS, &proof, &at_limit).unwrap();
    }

    #[test]
    fn build_reports_missing_blocks() {
        let (root, store) = import(&data(4000), &params(100, 4, true));
        let leaf = {
            let proof = build_proof(&store, &root, &[0]).unwrap();
            cids::raw_cid(cids::sha256_multihash(proof.last().unwrap()))
        };
        store.delete(&[cids::block_key(&leaf)]).unwrap();
        let err = build_proof(&store, &root, &[0]).unwrap_err();
        assert!(
            matches!(err, ProofError::MissingBlock { cid } if cid == leaf),
            "{err}"
        );
        // Another leaf is still provable.
        build_proof(&store, &root, &[3_999]).unwrap();
    }

    // Hand-made hostile DAGs.

    fn pb(links: Vec<Cid>, fs: UnixFsData) -> Vec<u8> {
        PbNode {
            links: links
                .into_iter()
                .map(|cid| PbLink {
                    cid,
                    name: Some(String::new()),
                    tsize: Some(1),
                })
                .collect(),
            data: Some(fs.encode()),
        }
        .encode()
    }

    fn v0(block: &[u8]) -> Cid {
        cids::dag_pb_cid(0, cids::sha256_multihash(block))
    }

    fn raw(block: &[u8]) -> Cid {
        cids::raw_cid(cids::sha256_multihash(block))
    }

    fn verify_hostile(root: &[u8], rest: &[&[u8]]) -> ProofError {
        let mut blocks = vec![root.to_vec()];
        blocks.extend(rest.iter().map(|b| b.to_vec()));
        verify_proof(&v0(root), &[0, 5], &blocks, &generous()).unwrap_err()
    }

    #[test]
    fn hostile_dags_are_refused() {
        let leaf = b"abcdef".as_slice();
        // The parent claims 7 bytes for a 6-byte child.
        let root = pb(vec![raw(leaf)], UnixFsData::file(None, 7, vec![7]));
        let err = verify_hostile(&root, &[leaf]);
        assert!(
            matches!(
                err,
                ProofError::ChildSizeMismatch {
                    claimed: 7,
                    actual: 6,
                    ..
                }
            ),
            "{err}"
        );
        // Two links, one blocksize.
        let root = pb(
            vec![raw(leaf), raw(leaf)],
            UnixFsData::file(None, 6, vec![6]),
        );
        let err = verify_hostile(&root, &[leaf]);
        assert!(
            matches!(
                err,
                ProofError::LinkCountMismatch {
                    links: 2,
                    blocksizes: 1,
                    ..
                }
            ),
            "{err}"
        );
        // filesize disagrees with blocksizes.
        let root = pb(vec![raw(leaf)], UnixFsData::file(None, 9, vec![6]));
        let err = verify_hostile(&root, &[leaf]);
        assert!(
            matches!(
                err,
                ProofError::SizeMismatch {
                    filesize: 9,
                    claimed: 6,
                    ..
                }
            ),
            "{err}"
        );
        // blocksizes overflow.
        let root = pb(
            vec![raw(leaf), raw(leaf)],
            UnixFsData::file(None, 6, vec![u64::MAX, 6]),
        );
        assert!(matches!(
            verify_hostile(&root, &[leaf]),
            ProofError::SizeMismatch { .. }
        ));
        // A directory is not a file.
        let dir = UnixFsData {
            kind: DataType::Directory,
            data: None,
            filesize: None,
            blocksizes: vec![],
        };
        let root = pb(vec![], dir);
        assert!(matches!(
            verify_hostile(&root, &[]),
            ProofError::NotAFile {
                kind: "directory",
                ..
            }
        ));
        // Not dag-pb at all.
        let err = verify_hostile(b"\xff\xff", &[]);
        assert!(matches!(err, ProofError::Decode { .. }), "{err}");
        // A child named by a codec the walk cannot check (dag-cbor).
        let cbor = Cid::new_v1(0x71, cids::sha256_multihash(leaf));
        let root = pb(vec![cbor], UnixFsData::file(None, 6, vec![6]));
        let err = verify_hostile(&root, &[leaf]);
        assert!(
            matches!(err, ProofError::UnsupportedCodec { codec: 0x71, .. }),
            "{err}"
        );
        // A child named by a hash the walk cannot check (sha2-512 code, 32 bytes).
        let odd = Cid::new_v1(
            cids::RAW,
            multihash::Multihash::wrap(0x13, &[0u8; 32]).unwrap(),
        );
        let root = pb(vec![odd], UnixFsData::file(None, 6, vec![6]));
        let err = verify_hostile(&root, &[]);
        assert!(
            matches!(err, ProofError::UnsupportedHash { code: 0x13, .. }),
            "{err}"
        );
    }

    #[test]
    fn identity_children_need_no_block() {
        let leaf = b"tiny".as_slice();
        let inline = Cid::new_v1(
            cids::RAW,
            multihash::Multihash::wrap(cids::IDENTITY, leaf).unwrap(),
        );
        let root = pb(vec![inline], UnixFsData::file(None, 4, vec![4]));
        let v = verify_proof(&v0(&root), &[2], std::slice::from_ref(&root), &generous()).unwrap();
        assert_eq!(v.draws[0].leaf, inline);
        assert_eq!(v.draws[0].leaf_range, 0..4);
        let store = MemoryBlockStore::new();
        put_all(&store, &[(v0(&root), root.clone())]);
        assert_eq!(build_proof(&store, &v0(&root), &[2]).unwrap(), vec![root]);
    }

    #[test]
    fn nodes_with_inline_data_and_children() {
        // Not what Kubo writes, but valid UnixFS: bytes 0..3 live in the root.
        let leaf = b"defg".as_slice();
        let root = pb(
            vec![raw(leaf)],
            UnixFsData::file(Some(b"abc".to_vec()), 7, vec![4]),
        );
        let v = verify_proof(&v0(&root), &[1], std::slice::from_ref(&root), &generous()).unwrap();
        assert_eq!(
            (v.draws[0].leaf, v.draws[0].leaf_range.clone()),
            (v0(&root), 0..3)
        );
        let v = verify_proof(
            &v0(&root),
            &[5],
            &[root.clone(), leaf.to_vec()],
            &generous(),
        )
        .unwrap();
        assert_eq!(
            (v.draws[0].leaf, v.draws[0].leaf_range.clone()),
            (raw(leaf), 3..7)
        );
    }

    #[derive(Debug, Clone)]
    enum Mutation {
        Flip { block: usize, at: usize, bit: u8 },
        Truncate { block: usize, len: usize },
        Remove { block: usize },
        Duplicate { block: usize },
        Append { junk: Vec<u8> },
        Swap { a: usize, b: usize },
        Draw { index: usize, value: u64 },
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        prop_oneof![
            (any::<usize>(), any::<usize>(), 0u8..8).prop_map(|(block, at, bit)| Mutation::Flip {
                block,
                at,
                bit
            }),
            (any::<usize>(), any::<usize>())
                .prop_map(|(block, len)| Mutation::Truncate { block, len }),
            any::<usize>().prop_map(|block| Mutation::Remove { block }),
            any::<usize>().prop_map(|block| Mutation::Duplicate { block }),
            proptest::collection::vec(any::<u8>(), 0..64)
                .prop_map(|junk| Mutation::Append { junk }),
            (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::Swap { a, b }),
            (any::<usize>(), any::<u64>())
                .prop_map(|(index, value)| Mutation::Draw { index, value }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        #[test]
        fn random_files_round_trip(
            len in 0usize..12_000,
            chunk in 64usize..1_500,
            links in 2usize..6,
            raw in any::<bool>(),
            draws in proptest::collection::vec(any::<u64>(), 1..10),
        ) {
            round_trip(&data(len), &params(chunk, links, raw), &draws);
        }

        #[test]
        fn mutated_proofs_never_panic_and_changed_blocks_fail(
            len in 1usize..6_000,
            chunk in 64usize..1_000,
            links in 2usize..5,
            raw in any::<bool>(),
            draws in proptest::collection::vec(any::<u64>(), 1..6),
            mutations in proptest::collection::vec(mutation(), 1..4),
        ) {
            let (root, store) = import(&data(len), &params(chunk, links, raw));
            let mut blocks = build_proof(&store, &root, &draws).unwrap();
            let mut draws = draws;
            let mut original = blocks.clone();
            original.sort();
            let original_draws = draws.clone();
            for m in mutations {
                let n = blocks.len();
                match m {
                    Mutation::Flip { block, at, bit } if n > 0 && !blocks[block % n].is_empty() => {
                        let b = &mut blocks[block % n];
                        let at = at % b.len();
                        b[at] ^= 1 << bit;
                    }
                    Mutation::Truncate { block, len } if n > 0 => {
                        let b = &mut blocks[block % n];
                        let keep = len % (b.len() + 1);
                        b.truncate(keep);
                    }
                    Mutation::Remove { block } if n > 0 => {
                        blocks.remove(block % n);
                    }
                    Mutation::Duplicate { block } if n > 0 => {
                        let b = blocks[block % n].clone();
                        blocks.push(b);
                    }
                    Mutation::Append { junk } => {
                        blocks.push(junk);
                    }
                    Mutation::Swap { a, b } if n > 0 => blocks.swap(a % n, b % n),
                    Mutation::Draw { index, value } => {
                        let i = index % draws.len();
                        draws[i] = value;
                    }
                    _ => {}
                }
            }
            let result = verify_proof(&root, &draws, &blocks, &generous());
            let mut now = blocks.clone();
            now.sort();
            // With the same draws, any change to the multiset of blocks must fail
            // (new draws may need fewer blocks, so only order changes may pass).
            if draws == original_draws && now != original {
                prop_assert!(result.is_err(), "changed blocks verified: {:?}", result);
            }
        }

        #[test]
        fn arbitrary_blocks_never_panic(
            blocks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..80), 0..6),
            draws in proptest::collection::vec(any::<u64>(), 0..4),
            version in 0u8..3,
        ) {
            let first = blocks.first().cloned().unwrap_or_default();
            let root = match version {
                0 => v0(&first),
                1 => cids::dag_pb_cid(1, cids::sha256_multihash(&first)),
                _ => raw(&first),
            };
            let _ = verify_proof(&root, &draws, &blocks, &generous());
        }
    }
}
