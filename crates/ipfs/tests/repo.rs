//! Repo behaviour end to end: add, range reads and what they fetch, pins and
//! GC, CAR round trips, corruption, persistence and locking.

use proptest::prelude::*;
use r3mes_ipfs::{AddOptions, Error, MemoryBlockStore, PinMode, Repo, cids};

fn data(len: usize, seed: u8) -> Vec<u8> {
    let mut x = u64::from(seed).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn small_chunks() -> AddOptions {
    AddOptions {
        chunk_size: 1024,
        ..Default::default()
    }
}

#[test]
fn range_reads_fetch_only_the_path_to_the_leaves() {
    let repo = Repo::in_memory();
    // 400 chunks of 1 KiB: depth 2 (root, 3 intermediate nodes, leaves).
    let content = data(400 * 1024, 1);
    let added = repo.add_bytes(&content, &small_chunks()).unwrap();
    for offset in [0u64, 1000, 1023, 200_000, 409_000] {
        let (bytes, stats) = repo
            .cat_bytes(&added.root, offset, Some(4096.min(409_600 - offset)))
            .unwrap();
        assert_eq!(
            bytes,
            &content[offset as usize..offset as usize + bytes.len()]
        );
        // root + at most 2 intermediates + leaves covering 4 KiB of 1 KiB chunks (at most 5).
        assert!(stats.blocks <= 1 + 2 + 5, "offset {offset}: {stats:?}");
    }
    let (all, stats) = repo.cat_bytes(&added.root, 0, None).unwrap();
    assert_eq!(all, content);
    assert_eq!(stats.blocks, added.blocks);
    assert_eq!(stats.bytes, added.dag_size);
}

#[test]
fn default_chunks_need_at_most_two_leaves_for_4096_bytes() {
    let repo = Repo::in_memory();
    let content = data(3 * 262_144, 2);
    let added = repo.add_bytes(&content, &AddOptions::default()).unwrap();
    // Straddles the first chunk boundary: root + 2 leaves.
    let (bytes, stats) = repo
        .cat_bytes(&added.root, 262_144 - 2048, Some(4096))
        .unwrap();
    assert_eq!(bytes, &content[262_144 - 2048..262_144 + 2048]);
    assert_eq!(stats.blocks, 3);
}

#[test]
fn offsets_past_the_end_are_errors_and_the_end_is_empty() {
    let repo = Repo::in_memory();
    let added = repo.add_bytes(b"hello", &AddOptions::default()).unwrap();
    assert!(repo.cat_bytes(&added.root, 5, None).unwrap().0.is_empty());
    let err = repo.cat_bytes(&added.root, 6, None).unwrap_err();
    assert!(
        matches!(
            err,
            Error::OffsetPastEnd {
                offset: 6,
                size: 5,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("past the end"));
}

#[test]
fn gc_keeps_pinned_dags_and_frees_the_rest() {
    let repo = Repo::in_memory();
    let kept = repo.add_bytes(&data(10_000, 3), &small_chunks()).unwrap();
    let dropped = repo
        .add_bytes(
            &data(10_000, 4),
            &AddOptions {
                pin: false,
                ..small_chunks()
            },
        )
        .unwrap();
    // Shares every block with `kept`: nothing of it may go.
    let twin = repo
        .add_bytes(
            &data(10_000, 3),
            &AddOptions {
                pin: false,
                ..small_chunks()
            },
        )
        .unwrap();
    assert_eq!(twin.root, kept.root);

    let report = repo.gc().unwrap();
    assert_eq!(report.removed.len() as u64, dropped.blocks);
    assert_eq!(report.freed_bytes, dropped.dag_size);
    assert_eq!(
        repo.cat_bytes(&kept.root, 0, None).unwrap().0,
        data(10_000, 3)
    );
    assert!(matches!(
        repo.cat_bytes(&dropped.root, 0, None),
        Err(Error::BlockNotFound(_))
    ));
    assert!(
        repo.gc().unwrap().removed.is_empty(),
        "a second GC finds nothing"
    );

    repo.pin_rm(&kept.root).unwrap();
    assert!(
        repo.pin_rm(&kept.root)
            .unwrap_err()
            .to_string()
            .contains("not pinned")
    );
    assert_eq!(repo.gc().unwrap().removed.len() as u64, kept.blocks);
    assert!(repo.store().keys().unwrap().is_empty());
}

#[test]
fn direct_pins_keep_only_the_root() {
    let repo = Repo::in_memory();
    let added = repo
        .add_bytes(
            &data(5000, 5),
            &AddOptions {
                pin: false,
                ..small_chunks()
            },
        )
        .unwrap();
    repo.pin_add(&added.root, PinMode::Direct, Some("root-only"))
        .unwrap();
    let report = repo.gc().unwrap();
    assert_eq!(report.removed.len() as u64, added.blocks - 1);
    assert!(repo.store().has(&added.root).unwrap());
    let pins = repo.pin_ls().unwrap();
    assert_eq!(pins.len(), 1);
    assert_eq!(pins[0].name.as_deref(), Some("root-only"));
    // A recursive pin of an incomplete DAG is refused.
    let err = repo
        .pin_add(&added.root, PinMode::Recursive, None)
        .unwrap_err();
    assert!(err.to_string().contains("is missing"), "{err}");
}

#[test]
fn car_round_trip_and_a_bad_block_rejects_everything() {
    let source = Repo::in_memory();
    let content = data(300 * 1024, 6);
    let added = source.add_bytes(&content, &small_chunks()).unwrap();
    let mut car = Vec::new();
    source.export_car(&added.root, &mut car).unwrap();

    let target = Repo::in_memory();
    let imported = target.import_car(&mut car.as_slice(), true).unwrap();
    assert_eq!(imported.roots, vec![added.root]);
    assert_eq!(imported.blocks, added.blocks);
    assert_eq!(imported.pinned, vec![added.root]);
    assert_eq!(target.cat_bytes(&added.root, 0, None).unwrap().0, content);

    // Flip one byte inside the last block's data.
    let mut bad = car.clone();
    let at = bad.len() - 10;
    bad[at] ^= 1;
    let fresh = Repo::in_memory();
    let err = fresh.import_car(&mut bad.as_slice(), true).unwrap_err();
    assert!(err.to_string().contains("does not match its CID"), "{err}");
    assert!(fresh.store().keys().unwrap().is_empty(), "nothing stored");
    assert!(fresh.pin_ls().unwrap().is_empty());

    // Truncated CAR: also rejected whole.
    let err = fresh
        .import_car(&mut &car[..car.len() - 3], true)
        .unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
    assert!(fresh.store().keys().unwrap().is_empty());
}

#[test]
fn corrupt_blocks_are_errors_naming_the_cid() {
    let store = MemoryBlockStore::new();
    let repo = Repo::with_store(store.clone());
    let added = repo.add_bytes(&data(5000, 7), &small_chunks()).unwrap();
    let (leaf, _) = repo.store().keys().unwrap().into_iter().next().unwrap();
    let leaf = cids::dag_pb_cid(0, multihash::Multihash::from_bytes(&leaf).unwrap());
    store.corrupt(&leaf, b"not the block".to_vec());
    let err = repo.cat_bytes(&added.root, 0, None).unwrap_err();
    assert!(err.to_string().contains("corrupt"), "{err}");
}

#[test]
fn persistent_repo_keeps_blocks_and_pins_and_locks() {
    let dir = tempfile::tempdir().unwrap();
    let content = data(700_000, 8);
    let root = {
        let repo = Repo::open(dir.path()).unwrap();
        let added = repo.add_bytes(&content, &AddOptions::default()).unwrap();
        assert!(matches!(
            Repo::open(dir.path()),
            Err(Error::RepoLocked { .. })
        ));
        added.root
    };
    let repo = Repo::open(dir.path()).unwrap();
    assert_eq!(repo.cat_bytes(&root, 0, None).unwrap().0, content);
    assert_eq!(repo.pin_ls().unwrap()[0].cid, root);
    assert!(repo.gc().unwrap().removed.is_empty());
    repo.pin_rm(&root).unwrap();
    let report = repo.gc().unwrap();
    assert_eq!(report.removed.len(), 4);
    // The emptied pack is gone from disk, not just from the index.
    let pack_bytes: u64 = std::fs::read_dir(dir.path().join("packs"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(pack_bytes <= 700_100, "{pack_bytes}");
}

#[test]
fn only_hash_stores_nothing() {
    let repo = Repo::in_memory();
    let options = AddOptions {
        only_hash: true,
        ..Default::default()
    };
    let added = repo.add_bytes(&data(600_000, 9), &options).unwrap();
    assert!(repo.store().keys().unwrap().is_empty());
    assert_eq!(
        added.root,
        Repo::in_memory()
            .add_bytes(&data(600_000, 9), &AddOptions::default())
            .unwrap()
            .root
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Any range of any file reads back exactly, for every layout parameter.
    #[test]
    fn any_range_reads_back(
        len in 0usize..20_000,
        chunk in 1usize..3000,
        raw_leaves in any::<bool>(),
        cid_version in 0u8..2,
        start in 0usize..20_000,
        span in 0usize..9000,
    ) {
        let repo = Repo::in_memory();
        let content = data(len, (len % 251) as u8);
        let options = AddOptions { chunk_size: chunk, raw_leaves: Some(raw_leaves), cid_version, ..Default::default() };
        let added = repo.add_bytes(&content, &options).unwrap();
        prop_assert_eq!(added.file_size, len as u64);
        let start = start.min(len);
        let (bytes, _) = repo.cat_bytes(&added.root, start as u64, Some(span as u64)).unwrap();
        let end = (start + span).min(len);
        prop_assert_eq!(bytes, &content[start..end]);
    }
}

#[test]
fn adding_the_same_content_twice_writes_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repo::open(dir.path()).unwrap();
    let content = data(800_000, 10);
    let first = repo.add_bytes(&content, &AddOptions::default()).unwrap();
    let pack = dir.path().join("packs/00000001.pack");
    let size = std::fs::metadata(&pack).unwrap().len();
    assert_eq!(size, first.dag_size);
    let second = repo.add_bytes(&content, &AddOptions::default()).unwrap();
    assert_eq!(first, second);
    assert_eq!(std::fs::metadata(&pack).unwrap().len(), size);
}
