//! The app hash: a binary Merkle root over the whole keeper state.
//!
//! The state is a set of `(key, value)` byte-string pairs (the `kv` table of
//! [`crate::state`]). The app hash is defined precisely enough for a second
//! implementation to match it bit for bit:
//!
//! 1. Sort the pairs by key, comparing keys as unsigned byte strings
//!    (lexicographic, a proper prefix sorts first). Keys are unique.
//! 2. Each pair gives a leaf hash
//!    `sha256(0x00 || u64_be(len(key)) || key || u64_be(len(value)) || value)`.
//! 3. Build the tree level by level: in each level, hash adjacent pairs
//!    left to right into `sha256(0x01 || left || right)`; if the level has an
//!    odd number of nodes, the last one is promoted unchanged to the next
//!    level. Repeat until one node remains: that node is the root.
//! 4. A single pair's root is its leaf hash; the empty state's root is
//!    `sha256("")` (`e3b0c442…b855`).
//!
//! The `0x00`/`0x01` domain prefixes keep a leaf from ever being read as an
//! inner node; the length prefixes keep `(key, value)` boundaries unambiguous.
//!
//! Cost: [`State`](crate::state::State) recomputes the root from scratch
//! after every block, reading every pair once and hashing about `2n` times
//! with `32 n` bytes of memory for `n` pairs. That is fine for a young chain;
//! an incremental structure (cached subtree hashes) can replace it later as
//! long as it keeps this exact definition.

use sha2::{Digest, Sha256};

/// A 32-byte SHA-256 digest: a leaf, an inner node or a root.
pub type Hash = [u8; 32];

/// The root of the empty state: `sha256("")`.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
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

/// The inner-node hash `sha256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root over leaf hashes already in key order (see the module docs):
/// pairs hashed left to right, an odd last node promoted, the empty list
/// giving [`empty_root`].
pub fn root_of_leaves(mut level: Vec<Hash>) -> Hash {
    if level.is_empty() {
        return empty_root();
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

/// The app hash of `(key, value)` pairs given in strictly ascending key
/// order (the caller's duty; a [`BTreeMap`](std::collections::BTreeMap) or a
/// redb table iterates that way).
pub fn app_hash<K, V, I>(pairs: I) -> Hash
where
    K: AsRef<[u8]>,
    V: AsRef<[u8]>,
    I: IntoIterator<Item = (K, V)>,
{
    let leaves = pairs
        .into_iter()
        .map(|(k, v)| leaf_hash(k.as_ref(), v.as_ref()))
        .collect();
    root_of_leaves(leaves)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_is_sha256_of_nothing() {
        let root = app_hash(Vec::<(Vec<u8>, Vec<u8>)>::new());
        assert_eq!(root, empty_root());
        assert_eq!(root[..4], [0xe3, 0xb0, 0xc4, 0x42]);
    }

    #[test]
    fn one_pair_is_its_leaf() {
        assert_eq!(app_hash([(b"k", b"v")]), leaf_hash(b"k", b"v"));
    }

    #[test]
    fn odd_node_is_promoted() {
        let a = leaf_hash(b"a", b"1");
        let b = leaf_hash(b"b", b"2");
        let c = leaf_hash(b"c", b"3");
        let expected = node_hash(&node_hash(&a, &b), &c);
        assert_eq!(root_of_leaves(vec![a, b, c]), expected);
    }

    #[test]
    fn length_prefix_separates_key_and_value() {
        assert_ne!(leaf_hash(b"ab", b"c"), leaf_hash(b"a", b"bc"));
        assert_ne!(leaf_hash(b"", b""), empty_root());
    }

    #[test]
    fn leaf_and_node_domains_differ() {
        let a = leaf_hash(b"a", b"1");
        let b = leaf_hash(b"b", b"2");
        let mut inner = Vec::new();
        inner.extend_from_slice(&a);
        inner.extend_from_slice(&b);
        // A leaf whose key/value bytes spell an inner node's input still
        // hashes differently because of the domain byte.
        assert_ne!(node_hash(&a, &b), leaf_hash(&inner[..32], &inner[32..]));
    }
}
