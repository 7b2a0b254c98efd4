//! Batched records: many small immutable records of one block stored as a
//! few large values, and the in-memory index that finds a record by its id.
//!
//! Why: a gradient record keyed by its CID lands on a random B-tree page,
//! so a block of 1,000 submissions dirtied about 1,000 pages (4 MB written
//! and synced per block) and left pages half full after splits. Records
//! are written once and removed by retention in the order they came, so
//! the keeper appends each to a batch value under `(table byte, be64
//! height, u8 shard)`: a block writes a few fresh values and the file holds
//! the records densely.
//!
//! A batch value is a sequence of items `u8(id length) || id || be16(body
//! length) || body`, in insertion order. The state ([`crate::state`]) keeps,
//! for the committed store, a map from each item id to the key of the
//! batch holding it ([`BatchIndex`]), rebuilt from the batches when the
//! store opens, so finding a record by id costs a hash lookup and one read.
//! The index is derived data: the app hash commits to the batch values, and
//! the index is used only for lookups, never iterated, so it cannot make
//! two keepers disagree. It indexes a value's items up to the first
//! malformed one: the keeper only writes well-formed batches, and reading
//! a damaged one through [`items`] or [`find`] reports the damage.

use std::collections::HashMap;

use crate::{Error, Result};

/// The table bytes whose values are batches (see [`crate::tables`]).
pub const BATCH_TABLES: [u8; 1] = [crate::tables::GRADIENT];

/// Whether values under `key` are batches.
pub fn is_batch_key(key: &[u8]) -> bool {
    key.first().is_some_and(|b| BATCH_TABLES.contains(b))
}

/// One item of a batch value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Item<'a> {
    /// The record's id (a gradient's CID bytes).
    pub id: &'a [u8],
    /// The encoded record.
    pub body: &'a [u8],
}

/// Appends an item to a batch value. Fails if the id is 256 bytes or more
/// or the body 64 KiB or more.
pub fn push(value: &mut Vec<u8>, id: &[u8], body: &[u8]) -> Result<()> {
    let id_len = u8::try_from(id.len())
        .map_err(|_| Error::Store(format!("batch item id of {} bytes", id.len())))?;
    let body_len = u16::try_from(body.len())
        .map_err(|_| Error::Store(format!("batch item body of {} bytes", body.len())))?;
    value.reserve(3 + id.len() + body.len());
    value.push(id_len);
    value.extend_from_slice(id);
    value.extend_from_slice(&body_len.to_be_bytes());
    value.extend_from_slice(body);
    Ok(())
}

/// The items of a batch value, in order; a truncated value is an error.
pub fn items(value: &[u8]) -> Result<Vec<Item<'_>>> {
    let mut out = Vec::new();
    let mut rest = value;
    while !rest.is_empty() {
        let (item, tail) = split_item(rest)?;
        out.push(item);
        rest = tail;
    }
    Ok(out)
}

/// The body of the item with id `id` in a batch value, if present.
pub fn find<'a>(value: &'a [u8], id: &[u8]) -> Result<Option<&'a [u8]>> {
    let mut rest = value;
    while !rest.is_empty() {
        let (item, tail) = split_item(rest)?;
        if item.id == id {
            return Ok(Some(item.body));
        }
        rest = tail;
    }
    Ok(None)
}

/// The ids of the well-formed items at the start of a batch value.
fn ids(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = value;
    std::iter::from_fn(move || {
        let (item, tail) = split_item(rest).ok()?;
        rest = tail;
        Some(item.id)
    })
}

/// Re-encodes items as a batch value.
pub fn encode(items: &[Item<'_>]) -> Result<Vec<u8>> {
    let mut value = Vec::new();
    for item in items {
        push(&mut value, item.id, item.body)?;
    }
    Ok(value)
}

fn split_item(bytes: &[u8]) -> Result<(Item<'_>, &[u8])> {
    let truncated = || Error::Store("truncated batch item".into());
    let (&id_len, rest) = bytes.split_first().ok_or_else(truncated)?;
    let (id, rest) = rest
        .split_at_checked(usize::from(id_len))
        .ok_or_else(truncated)?;
    let (body_len, rest) = rest.split_first_chunk::<2>().ok_or_else(truncated)?;
    let (body, rest) = rest
        .split_at_checked(usize::from(u16::from_be_bytes(*body_len)))
        .ok_or_else(truncated)?;
    Ok((Item { id, body }, rest))
}

/// How one committed batch changed: the ids it lost and gained. Planned
/// before the store commits (so a malformed value aborts the commit) and
/// applied to the index after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchChange {
    key: Box<[u8]>,
    removed: Vec<Box<[u8]>>,
    added: Vec<Box<[u8]>>,
}

impl BatchChange {
    /// The change of the batch under `key` from `old` to `new` (`None`:
    /// absent).
    pub fn plan(key: &[u8], old: Option<&[u8]>, new: Option<&[u8]>) -> Self {
        let all = |value: Option<&[u8]>| -> Vec<Box<[u8]>> {
            value.map_or_else(Vec::new, |v| ids(v).map(Into::into).collect())
        };
        BatchChange {
            key: key.into(),
            removed: all(old),
            added: all(new),
        }
    }
}

/// Item id -> key of the committed batch holding it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchIndex {
    by_id: HashMap<Box<[u8]>, Box<[u8]>>,
}

impl BatchIndex {
    /// The key of the batch holding `id`.
    pub fn get(&self, id: &[u8]) -> Option<&[u8]> {
        self.by_id.get(id).map(|k| &**k)
    }

    /// Number of indexed items.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether no item is indexed.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Applies a planned change (ids another batch holds since stay).
    pub fn apply(&mut self, change: BatchChange) {
        for id in change.removed {
            if self.by_id.get(&id).is_some_and(|k| *k == change.key) {
                self.by_id.remove(&id);
            }
        }
        for id in change.added {
            self.by_id.insert(id, change.key.clone());
        }
    }

    /// Indexes the items of the batch under `key`.
    pub fn insert_all(&mut self, key: &[u8], value: &[u8]) {
        for id in ids(value) {
            self.by_id.insert(id.into(), key.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_round_trip_and_find() {
        let mut v = Vec::new();
        push(&mut v, b"a", b"body-a").unwrap();
        push(&mut v, b"", b"").unwrap();
        push(&mut v, b"ccc", &[7; 300]).unwrap();
        let all = items(&v).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(
            all[0],
            Item {
                id: b"a",
                body: b"body-a"
            }
        );
        assert_eq!(find(&v, b"ccc").unwrap(), Some(&[7u8; 300][..]));
        assert_eq!(find(&v, b"zz").unwrap(), None);
        assert_eq!(encode(&all).unwrap(), v);
    }

    proptest::proptest! {
        #[test]
        fn any_items_round_trip(
            entries in proptest::collection::vec(
                (proptest::collection::vec(proptest::num::u8::ANY, 0..255),
                 proptest::collection::vec(proptest::num::u8::ANY, 0..600)),
                0..20,
            )
        ) {
            let mut v = Vec::new();
            for (id, body) in &entries {
                push(&mut v, id, body).unwrap();
            }
            let got = items(&v).unwrap();
            proptest::prop_assert_eq!(got.len(), entries.len());
            for (item, (id, body)) in got.iter().zip(&entries) {
                proptest::prop_assert_eq!(item.id, id.as_slice());
                proptest::prop_assert_eq!(item.body, body.as_slice());
            }
            proptest::prop_assert_eq!(encode(&got).unwrap(), v);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let _ = items(&bytes);
            let _ = find(&bytes, b"x");
            let mut index = BatchIndex::default();
            index.apply(BatchChange::plan(b"k", Some(&bytes), Some(&bytes)));
            index.insert_all(b"k", &bytes);
        }
    }

    #[test]
    fn truncated_values_are_errors() {
        let mut v = Vec::new();
        push(&mut v, b"id", b"body").unwrap();
        for cut in 1..v.len() {
            assert!(items(&v[..cut]).is_err(), "cut at {cut}");
        }
        assert!(push(&mut Vec::new(), &[0; 256], b"").is_err());
        assert!(push(&mut Vec::new(), b"", &vec![0; 65536]).is_err());
    }

    #[test]
    fn index_follows_updates() {
        let mut a = Vec::new();
        push(&mut a, b"x", b"1").unwrap();
        push(&mut a, b"y", b"2").unwrap();
        let mut idx = BatchIndex::default();
        let update = |idx: &mut BatchIndex, old: Option<&[u8]>, new: Option<&[u8]>| {
            idx.apply(BatchChange::plan(b"k1", old, new));
        };
        update(&mut idx, None, Some(&a));
        assert_eq!(idx.get(b"y"), Some(&b"k1"[..]));
        let mut b = Vec::new();
        push(&mut b, b"y", b"2").unwrap();
        update(&mut idx, Some(&a), Some(&b));
        assert_eq!(idx.get(b"x"), None);
        assert_eq!(idx.get(b"y"), Some(&b"k1"[..]));
        update(&mut idx, Some(&b), None);
        assert!(idx.is_empty());
        // A malformed value indexes its well-formed start.
        let mut c = a.clone();
        c.push(9);
        update(&mut idx, None, Some(&c));
        assert_eq!(idx.len(), 2);
    }
}
