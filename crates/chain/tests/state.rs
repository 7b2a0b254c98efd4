//! State store tests: persistence across reopen, dropped blocks, atomic
//! transactions inside a block, the lock on a second open, a known-answer
//! app hash, and property tests of app-hash determinism (and of prefix
//! scans against a model map).

use std::collections::BTreeMap;

use proptest::prelude::*;
use r3mes_chain::Error;
use r3mes_chain::apphash;
use r3mes_chain::state::{Key, State};

fn open(path: &std::path::Path) -> State {
    State::open(path).expect("open state")
}

#[test]
fn commit_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let key = Key::new(3).u64(42).tail(b"x");
    let hash = {
        let s = open(&path);
        let mut b = s.begin_block(1).unwrap();
        b.put(key.as_bytes(), b"v1");
        b.put(b"other", b"v2");
        b.commit().unwrap();
        let mut b = s.begin_block(2).unwrap();
        b.delete(b"other");
        b.commit().unwrap()
    };
    let s = open(&path);
    assert_eq!(s.height().unwrap(), 2);
    assert_eq!(s.app_hash().unwrap(), hash);
    assert_eq!(s.recompute_app_hash().unwrap(), hash);
    assert_eq!(s.get(key.as_bytes()).unwrap(), Some(b"v1".to_vec()));
    assert_eq!(s.get(b"other").unwrap(), None);
    assert_eq!(hash, apphash::app_hash([(key.as_bytes(), b"v1")]));
}

#[test]
fn dropped_block_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let before = {
        let s = open(&path);
        let mut b = s.begin_block(1).unwrap();
        b.put(b"a", b"1");
        let before = b.commit().unwrap();
        let mut b = s.begin_block(2).unwrap();
        b.put(b"a", b"changed");
        b.put(b"b", b"2");
        drop(b);
        assert_eq!(s.height().unwrap(), 1);
        assert_eq!(s.app_hash().unwrap(), before);
        before
    };
    let s = open(&path);
    assert_eq!(s.height().unwrap(), 1);
    assert_eq!(s.app_hash().unwrap(), before);
    assert_eq!(s.get(b"a").unwrap(), Some(b"1".to_vec()));
    assert_eq!(s.get(b"b").unwrap(), None);
    // The next block is still height 2.
    s.begin_block(2).unwrap().commit().unwrap();
    assert_eq!(s.height().unwrap(), 2);
}

#[test]
fn failed_transaction_changes_nothing_while_block_commits() {
    let s = State::in_memory().unwrap();
    let mut b = s.begin_block(1).unwrap();
    b.put(b"a", b"1");
    b.transaction(|tx| {
        tx.put(b"b", b"2");
        Ok(())
    })
    .unwrap();
    let err = b
        .transaction(|tx| -> r3mes_chain::Result<()> {
            tx.put(b"a", b"overwritten");
            tx.delete(b"b");
            tx.put(b"c", b"3");
            Err(Error::WrongSequence {
                expected: 1,
                found: 7,
            })
        })
        .unwrap_err();
    assert_eq!(err.code(), 26);
    b.put(b"d", b"4");
    let hash = b.commit().unwrap();
    assert_eq!(
        hash,
        apphash::app_hash([(b"a", b"1"), (b"b", b"2"), (b"d", b"4")])
    );
    assert_eq!(s.get(b"a").unwrap(), Some(b"1".to_vec()));
    assert_eq!(s.get(b"b").unwrap(), Some(b"2".to_vec()));
    assert_eq!(s.get(b"c").unwrap(), None);
}

#[test]
fn second_open_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let _first = open(&path);
    let err = State::open(&path).unwrap_err();
    assert!(matches!(err, Error::StateLocked { .. }), "{err:?}");
    assert_eq!(err.code(), 40);
    assert!(err.to_string().contains("locked"), "{err}");
}

/// Expected roots computed by the independent Python reference
/// `tests/fixtures/apphash.py` (hashlib only).
#[test]
fn known_answer_app_hash() {
    let expected = "85d9a76aa05d87215527e997e589089e65db847105fca1471c04f9cac93ae9fb";
    let s = State::in_memory().unwrap();
    let mut b = s.begin_block(1).unwrap();
    // Written out of order: the root depends only on the contents.
    b.put(b"c", b"3");
    b.put(b"a", b"1");
    b.put(b"b", b"2");
    let hash = b.commit().unwrap();
    assert_eq!(hex::encode(hash), expected);
    assert_eq!(hex::encode(s.app_hash().unwrap()), expected);
    assert_eq!(
        hex::encode(apphash::empty_root()),
        "4d404f345f2c96a214f92ff1099b9fc7a92782583a3f165ed11688fbf87a7ab2"
    );

    // Five more keys that all fall in bucket 0: a bucket tree of five
    // leaves, written across two blocks with a delete and a re-put.
    let ids = [62433u32, 139823, 267141, 332267, 447701];
    let key = |i: u32| Key::new(b'b').tail(b"ucket0-").u32(i).into_bytes();
    let mut b = s.begin_block(2).unwrap();
    for i in ids {
        assert_eq!(apphash::bucket_of(&key(i)), 0);
        b.put(&key(i), b"wrong");
    }
    b.commit().unwrap();
    let mut b = s.begin_block(3).unwrap();
    for i in ids {
        b.delete(&key(i));
        b.put(&key(i), format!("v{i}").as_bytes());
    }
    let hash = b.commit().unwrap();
    assert_eq!(
        hex::encode(hash),
        "5a9e49ee5c78d29d390fd3111894c1170abace9cc1cc2da55752a047995c0f3a"
    );
    assert_eq!(s.recompute_app_hash().unwrap(), hash);
}

fn key_of(k: u8) -> Vec<u8> {
    Key::new(1).u8(k).into_bytes()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn same_blocks_give_same_app_hash(
        blocks in proptest::collection::vec(proptest::collection::vec(write(), 0..8), 1..8)
    ) {
        let dir = tempfile::tempdir().unwrap();
        let on_disk = open(&dir.path().join("state.redb"));
        let in_memory = State::in_memory().unwrap();
        let mut model_a = BTreeMap::new();
        let mut model_b = BTreeMap::new();
        for (i, ops) in blocks.iter().enumerate() {
            let height = i as u64 + 1;
            let a = apply_writes(&on_disk, height, ops, &mut model_a, key_of);
            let b = apply_writes(&in_memory, height, ops, &mut model_b, key_of);
            prop_assert_eq!(a, b);
            prop_assert_eq!(a, apphash::app_hash(&model_a));
            prop_assert_eq!(on_disk.app_hash().unwrap(), in_memory.app_hash().unwrap());
            prop_assert_eq!(on_disk.height().unwrap(), height);
        }
        // Changing any one value changes the app hash.
        let height = blocks.len() as u64 + 1;
        let before = in_memory.app_hash().unwrap();
        if let Some((key, value)) = model_b.iter().next_back() {
            let mut changed = value.clone();
            changed.push(0xff);
            let mut b = in_memory.begin_block(height).unwrap();
            b.put(key, &changed);
            prop_assert_ne!(b.commit().unwrap(), before);
        }
    }

    #[test]
    fn any_value_change_changes_the_hash(
        entries in proptest::collection::btree_map(
            proptest::collection::vec(any::<u8>(), 0..4),
            proptest::collection::vec(any::<u8>(), 0..4),
            1..20,
        ),
        pick in any::<prop::sample::Index>(),
        new_value in proptest::collection::vec(any::<u8>(), 0..4),
    ) {
        let before = apphash::app_hash(&entries);
        let key = entries.keys().nth(pick.index(entries.len())).unwrap().clone();
        prop_assume!(entries.get(&key) != Some(&new_value));
        let mut changed = entries.clone();
        changed.insert(key, new_value);
        prop_assert_ne!(apphash::app_hash(&changed), before);
    }
}

/// Keys of the incremental-hash property test: five keys that share bucket 0
/// (see `known_answer_app_hash`) and eleven ordinary ones.
fn pool_key(k: u8) -> Vec<u8> {
    const BUCKET0: [u32; 5] = [62433, 139823, 267141, 332267, 447701];
    match BUCKET0.get(usize::from(k)) {
        Some(&i) => Key::new(b'b').tail(b"ucket0-").u32(i).into_bytes(),
        None => Key::new(2).u8(k).into_bytes(),
    }
}

/// One write of a random block for the incremental-hash test.
#[derive(Debug, Clone)]
enum Write {
    Put(u8, Vec<u8>),
    /// Deletes a key, present or not.
    Delete(u8),
    /// Deletes a key then puts it again in the same block.
    DeletePut(u8, Vec<u8>),
    /// A transaction of puts (`Some`) and deletes (`None`) that succeeds
    /// (`true`) or fails (`false`).
    Tx(Vec<(u8, Option<Vec<u8>>)>, bool),
}

fn write() -> impl Strategy<Value = Write> {
    let value = proptest::collection::vec(any::<u8>(), 0..5);
    prop_oneof![
        (0u8..16, value.clone()).prop_map(|(k, v)| Write::Put(k, v)),
        (0u8..16).prop_map(Write::Delete),
        (0u8..16, value.clone()).prop_map(|(k, v)| Write::DeletePut(k, v)),
        (
            proptest::collection::vec((0u8..16, proptest::option::of(value)), 0..4),
            any::<bool>()
        )
            .prop_map(|(w, ok)| Write::Tx(w, ok)),
    ]
}

/// Applies one block of `writes` (keys made by `key`) to `state` and to the
/// model map, checks that the block and then the committed state scan
/// exactly as the model, and returns the app hash.
fn apply_writes(
    state: &State,
    height: u64,
    writes: &[Write],
    model: &mut BTreeMap<Vec<u8>, Vec<u8>>,
    key: fn(u8) -> Vec<u8>,
) -> apphash::Hash {
    let mut b = state.begin_block(height).expect("begin block");
    for w in writes {
        match w {
            Write::Put(k, v) => {
                b.put(&key(*k), v);
                model.insert(key(*k), v.clone());
            }
            Write::Delete(k) => {
                b.delete(&key(*k));
                model.remove(&key(*k));
            }
            Write::DeletePut(k, v) => {
                b.delete(&key(*k));
                b.put(&key(*k), v);
                model.insert(key(*k), v.clone());
            }
            Write::Tx(writes, ok) => {
                let result = b.transaction(|tx| {
                    for (k, v) in writes {
                        match v {
                            Some(v) => tx.put(&key(*k), v),
                            None => tx.delete(&key(*k)),
                        }
                    }
                    if *ok {
                        Ok(())
                    } else {
                        Err(Error::Store("rejected".into()))
                    }
                });
                assert_eq!(result.is_ok(), *ok);
                if *ok {
                    for (k, v) in writes {
                        match v {
                            Some(v) => model.insert(key(*k), v.clone()),
                            None => model.remove(&key(*k)),
                        };
                    }
                }
            }
        }
    }
    let expected: Vec<_> = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let seen = b.scan_prefix(&[], 3).expect("scan block");
    assert_eq!(seen, expected.iter().take(3).cloned().collect::<Vec<_>>());
    let hash = b.commit().expect("commit");
    assert_eq!(state.scan_prefix(&[], usize::MAX).expect("scan"), expected);
    hash
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// The incrementally maintained app hash equals the from-scratch
    /// reference over the model at every height, in memory and on disk,
    /// also after closing and reopening the database between blocks.
    #[test]
    fn incremental_app_hash_matches_reference(
        blocks in proptest::collection::vec(
            (proptest::collection::vec(write(), 0..10), any::<bool>()),
            1..10,
        )
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        let mut on_disk = open(&path);
        let in_memory = State::in_memory().unwrap();
        let mut model = BTreeMap::new();
        let mut mem_model = BTreeMap::new();
        for (i, (writes, reopen)) in blocks.iter().enumerate() {
            let height = i as u64 + 1;
            let a = apply_writes(&on_disk, height, writes, &mut model, pool_key);
            let b = apply_writes(&in_memory, height, writes, &mut mem_model, pool_key);
            let reference = apphash::app_hash(&model);
            prop_assert_eq!(a, reference);
            prop_assert_eq!(b, reference);
            prop_assert_eq!(on_disk.recompute_app_hash().unwrap(), reference);
            if *reopen {
                drop(on_disk);
                on_disk = open(&path);
                prop_assert_eq!(on_disk.height().unwrap(), height);
                prop_assert_eq!(on_disk.app_hash().unwrap(), reference);
            }
        }
        prop_assert_eq!(
            on_disk.scan_prefix(&[], usize::MAX).unwrap(),
            model.into_iter().collect::<Vec<_>>()
        );
    }
}
