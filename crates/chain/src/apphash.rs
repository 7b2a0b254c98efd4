//! The app hash: a Merkle root over the whole keeper state that can be
//! maintained incrementally, in `O(changes · log)` per block.
//!
//! The state is a set of `(key, value)` byte-string pairs with distinct keys
//! (the `kv` table of [`crate::state`]). The app hash depends only on that
//! set, never on the order or history of the writes that produced it
//! (history independence). It is defined precisely enough for a second
//! implementation to match it bit for bit:
//!
//! 1. **Leaf.** Each pair gives a leaf hash
//!    `leaf = sha256(0x00 || u64_be(len(key)) || key || u64_be(len(value)) || value)`.
//! 2. **Bucket.** Each pair lies in bucket `b = u16_be(sha256(key)[0..2])`,
//!    one of [`BUCKETS`] = 65536 buckets.
//! 3. **Bucket root.** The leaves of the pairs in bucket `b`, ordered by
//!    ascending leaf hash (compared as unsigned byte strings), are hashed into a
//!    binary tree level by level: in each level adjacent nodes are hashed
//!    left to right into `sha256(0x01 || left || right)`; if the level has
//!    an odd number of nodes the last one is promoted unchanged to the next
//!    level; repeat until one node remains. A bucket holding one pair has
//!    that pair's leaf as its root; an empty bucket's root is 32 zero bytes
//!    ([`EMPTY_BUCKET`]).
//! 4. **Top tree.** The 65536 bucket roots, in bucket order, are the leaves
//!    of a complete binary tree of depth 16 whose inner nodes are
//!    `sha256(0x02 || left || right)`. Level 16 holds the bucket roots;
//!    node `i` of level `d < 16` hashes nodes `2i` and `2i + 1` of level
//!    `d + 1`. The app hash is the single node of level 0.
//! 5. **Empty state.** Following the rules above, the empty state's app
//!    hash is `E16` where `E0 = 0^32` and `E(j+1) = sha256(0x02 || Ej || Ej)`
//!    ([`empty_root`], `4d404f34…7a7ab2`, pinned by a test).
//!
//! The domain bytes `0x00` (leaf), `0x01` (bucket-tree node) and `0x02`
//! (top-tree node) keep any one kind of node from being read as another;
//! the length prefixes keep `(key, value)` boundaries unambiguous. Placing a
//! pair by a hash of its key keeps buckets balanced whatever keys the
//! keeper writes (about `n / 65536` pairs per bucket). Ordering a bucket by
//! leaf hash rather than by key lets the store keep only the 32-byte leaves
//! of a bucket (the leaf a write replaces is recomputed from the old value
//! the write displaces); keys are distinct, so leaves are too. An inclusion
//! proof is a bucket-tree path plus 16 top-tree siblings; an exclusion proof
//! is the bucket's pairs (about `n / 65536`) plus the 16 siblings. An
//! independent Python implementation of this definition, with the pinned
//! known answers, is `tests/fixtures/apphash.py`.
//!
//! Cost: a block that changes `c` keys re-hashes the `c` changed leaves,
//! at most `c` bucket trees (each about `n / 65536` pairs, i.e. a handful of
//! hashes up to millions of pairs) and at most `16 c` top-tree nodes; the
//! store ([`State`](crate::state::State)) keeps each bucket's sorted
//! leaf list and the top tree in memory, and checkpoints the leaf lists on
//! disk when it closes (see its module docs). [`app_hash`]
//! is the from-scratch reference of this definition.

use std::sync::OnceLock;

use sha2::{Digest, Sha256};

/// A 32-byte SHA-256 digest: a leaf, an inner node or a root.
pub type Hash = [u8; 32];

/// The number of buckets (the top tree's width).
pub const BUCKETS: usize = 1 << TOP_DEPTH;

/// The depth of the top tree over the bucket roots.
pub const TOP_DEPTH: usize = 16;

/// The root of an empty bucket: 32 zero bytes.
pub const EMPTY_BUCKET: Hash = [0; 32];

/// The app hash of the empty state (see the module docs, rule 5).
pub fn empty_root() -> Hash {
    empty_subtrees()[TOP_DEPTH]
}

/// `E0..=E16`: the top-tree node over `2^j` empty buckets at height `j`
/// above the bucket roots.
pub fn empty_subtrees() -> &'static [Hash; TOP_DEPTH + 1] {
    static EMPTY: OnceLock<[Hash; TOP_DEPTH + 1]> = OnceLock::new();
    EMPTY.get_or_init(|| {
        let mut e = [EMPTY_BUCKET; TOP_DEPTH + 1];
        for j in 0..TOP_DEPTH {
            e[j + 1] = top_node_hash(&e[j], &e[j]);
        }
        e
    })
}

/// The leaf hash of one pair:
/// `sha256(0x00 || u64_be(len(key)) || key || u64_be(len(value)) || value)`.
pub fn leaf_hash(key: &[u8], value: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update((key.len() as u64).to_be_bytes());
    h.update(key);
    h.update((value.len() as u64).to_be_bytes());
    h.update(value);
    h.finalize().into()
}

/// The bucket of a key: `u16_be(sha256(key)[0..2])`.
pub fn bucket_of(key: &[u8]) -> u16 {
    let kh = Sha256::digest(key);
    u16::from_be_bytes([kh[0], kh[1]])
}

/// A bucket-tree inner node `sha256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// A top-tree inner node `sha256(0x02 || left || right)`.
pub fn top_node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x02]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of one bucket over its leaf hashes already in ascending order
/// (rule 3): pairs hashed left to right, an odd last node promoted, the
/// empty list giving [`EMPTY_BUCKET`].
pub fn bucket_root<I>(leaves: I) -> Hash
where
    I: IntoIterator<Item = Hash>,
{
    let mut level: Vec<Hash> = leaves.into_iter().collect();
    if level.is_empty() {
        return EMPTY_BUCKET;
    }
    while level.len() > 1 {
        let mut next = Vec::with_capacity(level.len().div_ceil(2));
        for pair in level.chunks(2) {
            match pair {
                [left, right] => next.push(node_hash(left, right)),
                [single] => next.push(*single),
                _ => {}
            }
        }
        level = next;
    }
    level[0]
}

/// The app hash of a set of `(key, value)` pairs with distinct keys, given
/// in any order: the from-scratch reference of the definition in the module
/// docs. It sorts the pairs by bucket and leaf, so it costs `O(n log n)`
/// time and `34 n` bytes; the store maintains the same value incrementally.
pub fn app_hash<K, V, I>(pairs: I) -> Hash
where
    K: AsRef<[u8]>,
    V: AsRef<[u8]>,
    I: IntoIterator<Item = (K, V)>,
{
    let mut leaves: Vec<(u16, Hash)> = pairs
        .into_iter()
        .map(|(k, v)| (bucket_of(k.as_ref()), leaf_hash(k.as_ref(), v.as_ref())))
        .collect();
    leaves.sort_unstable();
    // Level 16: the roots of the non-empty buckets, in bucket order.
    let mut level: Vec<(usize, Hash)> = leaves
        .chunk_by(|a, b| a.0 == b.0)
        .map(|group| {
            let bucket = usize::from(group[0].0);
            (bucket, bucket_root(group.iter().map(|(_, leaf)| *leaf)))
        })
        .collect();
    // Each level up, absent nodes are empty subtrees.
    let empty = empty_subtrees();
    for e in empty.iter().take(TOP_DEPTH) {
        let mut next: Vec<(usize, Hash)> = Vec::with_capacity(level.len());
        let mut i = 0;
        while i < level.len() {
            let (index, node) = level[i];
            let parent = index / 2;
            let (left, right) = if index % 2 == 0 {
                match level.get(i + 1) {
                    Some(&(j, sibling)) if j == index + 1 => {
                        i += 1;
                        (node, sibling)
                    }
                    _ => (node, *e),
                }
            } else {
                (*e, node)
            };
            next.push((parent, top_node_hash(&left, &right)));
            i += 1;
        }
        level = next;
    }
    level.first().map_or(empty[TOP_DEPTH], |&(_, root)| root)
}

/// The top tree held in memory: all `2 · 65536 - 1` nodes, updated one
/// bucket path at a time.
///
/// Nodes are stored heap-style: index 1 is the root, the children of `i`
/// are `2i` and `2i + 1`, and bucket `b`'s root is at `65536 + b`. An update
/// is computed first ([`TopTree::plan`]) and applied later
/// ([`TopTree::apply`]), so the caller can apply it only once the matching
/// bucket roots are durably stored.
#[derive(Clone, PartialEq, Eq)]
pub struct TopTree {
    nodes: Vec<Hash>,
}

/// The node writes of one top-tree update (see [`TopTree::plan`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopUpdate {
    writes: Vec<(usize, Hash)>,
}

impl std::fmt::Debug for TopTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopTree")
            .field("root", &self.root())
            .finish_non_exhaustive()
    }
}

impl TopTree {
    /// The tree over the given non-empty bucket roots (every other bucket
    /// empty). Subtrees that are entirely empty cost no hashing.
    pub fn build<I>(bucket_roots: I) -> Self
    where
        I: IntoIterator<Item = (u16, Hash)>,
    {
        let mut nodes = vec![EMPTY_BUCKET; 2 * BUCKETS];
        for (bucket, root) in bucket_roots {
            nodes[BUCKETS + usize::from(bucket)] = root;
        }
        let empty = empty_subtrees();
        for depth in (0..TOP_DEPTH).rev() {
            // Nodes of this level are at height `TOP_DEPTH - depth`.
            let below = &empty[TOP_DEPTH - depth - 1];
            let here = empty[TOP_DEPTH - depth];
            for i in (1 << depth)..(2 << depth) {
                let (left, right) = (nodes[2 * i], nodes[2 * i + 1]);
                nodes[i] = if left == *below && right == *below {
                    here
                } else {
                    top_node_hash(&left, &right)
                };
            }
        }
        TopTree { nodes }
    }

    /// The root: the app hash.
    pub fn root(&self) -> Hash {
        self.nodes[1]
    }

    /// The current root of `bucket`.
    pub fn bucket_root(&self, bucket: u16) -> Hash {
        self.nodes[BUCKETS + usize::from(bucket)]
    }

    /// The new root and the node writes that replace the roots of the given
    /// buckets (sorted by bucket, each at most once), without changing the
    /// tree.
    pub fn plan(&self, changes: &[(u16, Hash)]) -> (Hash, TopUpdate) {
        let mut level: Vec<(usize, Hash)> = changes
            .iter()
            .map(|&(bucket, root)| (BUCKETS + usize::from(bucket), root))
            .collect();
        let mut writes = Vec::with_capacity(level.len() * (TOP_DEPTH + 1));
        while let Some(&(first, _)) = level.first() {
            writes.extend_from_slice(&level);
            if first == 1 {
                break;
            }
            let mut next = Vec::with_capacity(level.len());
            let mut i = 0;
            while i < level.len() {
                let (index, node) = level[i];
                let (left, right) = if index % 2 == 0 {
                    match level.get(i + 1) {
                        Some(&(j, sibling)) if j == index + 1 => {
                            i += 1;
                            (node, sibling)
                        }
                        _ => (node, self.nodes[index + 1]),
                    }
                } else {
                    (self.nodes[index - 1], node)
                };
                next.push((index / 2, top_node_hash(&left, &right)));
                i += 1;
            }
            level = next;
        }
        let root = writes.last().map_or(self.root(), |&(_, root)| root);
        (root, TopUpdate { writes })
    }

    /// Applies an update from [`plan`](Self::plan) on this same tree.
    pub fn apply(&mut self, update: TopUpdate) {
        for (index, node) in update.writes {
            self.nodes[index] = node;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_state_is_the_empty_top_tree() {
        let root = app_hash(Vec::<(Vec<u8>, Vec<u8>)>::new());
        assert_eq!(root, empty_root());
        // Direct: a full tree over 65536 zero bucket roots.
        let mut level = vec![EMPTY_BUCKET; BUCKETS];
        while level.len() > 1 {
            level = level
                .chunks(2)
                .map(|p| top_node_hash(&p[0], &p[1]))
                .collect();
        }
        assert_eq!(root, level[0]);
    }

    /// A full (non-sparse) evaluation of the definition, to check the
    /// sparse walk in [`app_hash`].
    fn dense_app_hash(pairs: &[(&[u8], &[u8])]) -> Hash {
        let mut buckets: Vec<Vec<Hash>> = vec![Vec::new(); BUCKETS];
        for (k, v) in pairs {
            buckets[usize::from(bucket_of(k))].push(leaf_hash(k, v));
        }
        let mut level: Vec<Hash> = buckets
            .into_iter()
            .map(|mut b| {
                b.sort_unstable();
                bucket_root(b)
            })
            .collect();
        while level.len() > 1 {
            level = level
                .chunks(2)
                .map(|p| top_node_hash(&p[0], &p[1]))
                .collect();
        }
        level[0]
    }

    #[test]
    fn sparse_reference_matches_dense_evaluation() {
        let keys: Vec<Vec<u8>> = (0u32..300).map(|i| i.to_be_bytes().to_vec()).collect();
        let pairs: Vec<(&[u8], &[u8])> = keys.iter().map(|k| (&k[..], &k[1..])).collect();
        for n in [0, 1, 2, 3, 17, 300] {
            assert_eq!(app_hash(pairs[..n].to_vec()), dense_app_hash(&pairs[..n]));
        }
    }

    #[test]
    fn order_of_pairs_does_not_matter() {
        let forward = app_hash([(b"a", b"1"), (b"b", b"2"), (b"c", b"3")]);
        let backward = app_hash([(b"c", b"3"), (b"b", b"2"), (b"a", b"1")]);
        assert_eq!(forward, backward);
    }

    #[test]
    fn bucket_root_promotes_odd_node() {
        let a = leaf_hash(b"a", b"1");
        let b = leaf_hash(b"b", b"2");
        let c = leaf_hash(b"c", b"3");
        let expected = node_hash(&node_hash(&a, &b), &c);
        assert_eq!(bucket_root([a, b, c]), expected);
        assert_eq!(bucket_root([a]), a);
        assert_eq!(bucket_root([]), EMPTY_BUCKET);
    }

    #[test]
    fn length_prefix_separates_key_and_value() {
        assert_ne!(leaf_hash(b"ab", b"c"), leaf_hash(b"a", b"bc"));
        assert_ne!(leaf_hash(b"", b""), EMPTY_BUCKET);
    }

    #[test]
    fn domains_differ() {
        let a = leaf_hash(b"a", b"1");
        let b = leaf_hash(b"b", b"2");
        let mut inner = Vec::new();
        inner.extend_from_slice(&a);
        inner.extend_from_slice(&b);
        // A leaf whose key/value bytes spell an inner node's input still
        // hashes differently because of the domain byte.
        assert_ne!(node_hash(&a, &b), leaf_hash(&inner[..32], &inner[32..]));
        assert_ne!(node_hash(&a, &b), top_node_hash(&a, &b));
    }

    #[test]
    fn top_tree_updates_match_a_rebuild() {
        let mut tree = TopTree::build([]);
        assert_eq!(tree.root(), empty_root());
        let steps: [&[(u16, Hash)]; 4] = [
            &[(0, [1; 32]), (1, [2; 32]), (65535, [3; 32])],
            &[(1, EMPTY_BUCKET), (300, [4; 32]), (301, [5; 32])],
            &[],
            &[(0, EMPTY_BUCKET), (300, EMPTY_BUCKET), (301, EMPTY_BUCKET)],
        ];
        let mut roots = std::collections::BTreeMap::new();
        for changes in steps {
            let (root, update) = tree.plan(changes);
            tree.apply(update);
            for &(b, r) in changes {
                roots.insert(b, r);
            }
            let rebuilt = TopTree::build(roots.iter().map(|(&b, &r)| (b, r)));
            assert_eq!(root, tree.root());
            assert_eq!(rebuilt.root(), root);
            assert!(rebuilt == tree);
        }
    }
}
