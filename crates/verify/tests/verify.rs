//! Verification end to end on a real embedded repo (on disk, or in memory
//! where a block must be corrupted): honest gradients pass, tampered ones
//! fail, missing or corrupt blocks are clear errors, legacy files are
//! downloaded whole under the tensor crate's limits, the cache serves repeats.

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

use std::path::PathBuf;
use std::sync::Arc;

use r3mes_ipfs::reader::plan_range;
use r3mes_ipfs::{AddSource, Cid, ContentStore, EmbeddedStore, MemoryBlockStore, Repo, cids};
use r3mes_tensor::{Format, Gradient, GradientIndex, Limits, Order, Tensor};
use r3mes_verify::budget::synthetic_gradient;
use r3mes_verify::{
    ChunkRef, EntryOptions, Error, FlatOrder, Method, Placement, VaultEntry, Verifier,
    VerifierConfig, VerifyCache, entry_from_file, gradient_add_options,
};

const CHUNK: &str = "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH";
const SIZE: u64 = 2 << 20;

struct Node {
    _dir: tempfile::TempDir,
    repo: Repo,
    store: Arc<dyn ContentStore>,
}

fn node() -> Node {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repo::open(&dir.path().join("ipfs")).unwrap();
    let store: Arc<dyn ContentStore> = Arc::new(EmbeddedStore::new(repo.clone()));
    Node {
        _dir: dir,
        repo,
        store,
    }
}

fn options(id: &str) -> EntryOptions {
    EntryOptions {
        id: id.into(),
        chunk: ChunkRef {
            data_hash: CHUNK.into(),
            chunk_id: 1,
            shard_id: 2,
        },
        placement: Placement::default(),
        threshold_ppm: 950_000,
        order: FlatOrder::Canonical,
        seed: Some([42; 32]),
    }
}

fn encode(g: &Gradient, format: Format) -> Vec<u8> {
    r3mes_tensor::encode(g, format).unwrap()
}

/// The reference gradient with every value moved by up to `noise` of its size.
fn perturbed(g: &Gradient, noise: f32) -> Gradient {
    let tensors = g
        .tensors
        .iter()
        .enumerate()
        .map(|(t, tensor)| {
            let values: Vec<f32> = tensor
                .to_f32()
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let wobble = (((i * 7919 + t * 104_729) % 2001) as f32 - 1000.0) / 1000.0;
                    v * (1.0 + noise * wobble)
                })
                .collect();
            Tensor::from_f32(tensor.name.clone(), &values)
        })
        .collect();
    Gradient::new(g.format, g.metadata.clone(), tensors).unwrap()
}

async fn add(store: &Arc<dyn ContentStore>, bytes: Vec<u8>) -> Cid {
    store
        .add(AddSource::Bytes(bytes.into()), &gradient_add_options())
        .await
        .unwrap()
        .cid
}

fn verifier(store: &Arc<dyn ContentStore>) -> Verifier {
    Verifier::new(
        store.clone(),
        VerifyCache::default(),
        VerifierConfig::default(),
    )
}

fn fixture(path: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tensor/tests/fixtures")
        .join(path);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honest_gradient_passes_by_range_reads() {
    let node = node();
    let reference = synthetic_gradient(SIZE, 1).unwrap();
    let entry = entry_from_file(
        &encode(&reference, Format::Protobuf),
        &options("e"),
        &Limits::default(),
    )
    .unwrap();
    // The miner's own run differs a little (another GPU, another summation order).
    let cid = add(
        &node.store,
        encode(&perturbed(&reference, 0.01), Format::Protobuf),
    )
    .await;
    let report = verifier(&node.store).verify(&cid, &entry).await.unwrap();
    assert!(report.passed, "{report:#?}");
    assert!(report.cosine.unwrap() > 0.999);
    assert!(report.cosine_ppm >= 999_000 && report.cosine_ppm < 1_000_000);
    assert_eq!(report.method, Method::RangeRead);
    assert_eq!(report.format, Some("protobuf"));
    assert_eq!(report.indices, 64);
    assert_eq!(report.vault_commitment, hex_of(&entry));
    assert!(report.bytes_fetched * 5 < report.file_size, "{report:#?}");
    assert!(report.header_len > 0 && report.header_len < 16 << 10);
}

fn hex_of(entry: &VaultEntry) -> String {
    entry
        .commitment()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safetensors_gradients_are_range_read_too() {
    let node = node();
    let reference = synthetic_gradient(SIZE, 3).unwrap();
    let entry = entry_from_file(
        &encode(&reference, Format::Protobuf),
        &options("s"),
        &Limits::default(),
    )
    .unwrap();
    let cid = add(&node.store, encode(&reference, Format::Safetensors)).await;
    let report = verifier(&node.store).verify(&cid, &entry).await.unwrap();
    assert!(report.passed, "{report:#?}");
    assert_eq!(report.format, Some("safetensors"));
    assert_eq!(report.method, Method::RangeRead);
    assert_eq!(report.cosine_ppm, 1_000_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_gradients_fail() {
    let node = node();
    let reference = synthetic_gradient(SIZE, 1).unwrap();
    let entry = entry_from_file(
        &encode(&reference, Format::Protobuf),
        &options("e"),
        &Limits::default(),
    )
    .unwrap();
    let v = verifier(&node.store);

    // Another chunk's gradient (a miner who did not train on this chunk).
    let other = add(
        &node.store,
        encode(&synthetic_gradient(SIZE, 99).unwrap(), Format::Protobuf),
    )
    .await;
    let report = v.verify(&other, &entry).await.unwrap();
    assert!(!report.passed);
    assert!(report.cosine.unwrap().abs() < 0.5, "{report:#?}");
    assert!(report.reason.unwrap().contains("below the threshold"));

    // The honest gradient with the values of the checked windows replaced.
    let mut file = encode(&reference, Format::Protobuf);
    let index = GradientIndex::from_bytes(&file, &Limits::default()).unwrap();
    for (n, &i) in entry.indices.iter().enumerate() {
        let at = index.locate(i, Order::Canonical).unwrap().offset as usize;
        let fake = if n % 2 == 0 { 0.25f32 } else { -0.5 };
        file[at..at + 4].copy_from_slice(&fake.to_le_bytes());
    }
    let tampered = add(&node.store, file).await;
    let report = v.verify(&tampered, &entry).await.unwrap();
    assert!(!report.passed, "{report:#?}");

    // Zeros everywhere: the cosine is undefined, which fails.
    let zeros: Vec<Tensor> = reference
        .tensors
        .iter()
        .map(|t| Tensor::from_f32(t.name.clone(), &vec![0.0; t.elements() as usize]))
        .collect();
    let zero = Gradient::new(Format::Protobuf, reference.metadata.clone(), zeros).unwrap();
    let zero = add(&node.store, encode(&zero, Format::Protobuf)).await;
    let report = v.verify(&zero, &entry).await.unwrap();
    assert!(!report.passed);
    assert_eq!(report.cosine, None);
    assert!(report.reason.unwrap().contains("undefined"));

    // A gradient of another shape.
    let short = add(
        &node.store,
        encode(&synthetic_gradient(SIZE / 2, 1).unwrap(), Format::Protobuf),
    )
    .await;
    let report = v.verify(&short, &entry).await.unwrap();
    assert!(!report.passed);
    assert!(
        report.reason.as_deref().unwrap().contains("elements"),
        "{report:#?}"
    );

    // Not a gradient at all.
    let junk = add(&node.store, vec![0xffu8; 5000]).await;
    let report = v.verify(&junk, &entry).await.unwrap();
    assert!(!report.passed);
    assert!(report.reason.unwrap().contains("unreadable gradient"));

    let stats = v.cache().stats();
    assert_eq!((stats.verifications, stats.failed), (5, 5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_leaves_are_a_clear_error() {
    let node = node();
    let reference = synthetic_gradient(SIZE, 1).unwrap();
    let file = encode(&reference, Format::Protobuf);
    let entry = entry_from_file(&file, &options("e"), &Limits::default()).unwrap();
    let index = GradientIndex::from_bytes(&file, &Limits::default()).unwrap();
    let cid = add(&node.store, file).await;
    let at = index
        .locate(entry.indices[20], Order::Canonical)
        .unwrap()
        .offset;
    let plan = plan_range(node.repo.store(), &cid, at, Some(4)).unwrap();
    let leaf = plan.blocks.last().unwrap().cid;
    node.repo.store().delete(&[cids::block_key(&leaf)]).unwrap();

    let err = verifier(&node.store)
        .verify(&cid, &entry)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::MissingBlock { gradient, block } if **gradient == cid && **block == leaf)
    );
    let text = err.to_string();
    assert!(
        text.contains("missing") && text.contains(&leaf.to_string()),
        "{text}"
    );

    // A gradient nobody has.
    let absent: Cid = cids::parse(CHUNK).unwrap();
    let err = verifier(&node.store)
        .verify(&absent, &entry)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::MissingBlock { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_blocks_are_an_error_not_a_verdict() {
    let blocks = MemoryBlockStore::new();
    let repo = Repo::with_store(blocks.clone());
    let store: Arc<dyn ContentStore> = Arc::new(EmbeddedStore::new(repo.clone()));
    let file = encode(&synthetic_gradient(SIZE, 1).unwrap(), Format::Protobuf);
    let entry = entry_from_file(&file, &options("e"), &Limits::default()).unwrap();
    let index = GradientIndex::from_bytes(&file, &Limits::default()).unwrap();
    let cid = add(&store, file).await;
    let at = index
        .locate(entry.indices[0], Order::Canonical)
        .unwrap()
        .offset;
    let leaf = plan_range(repo.store(), &cid, at, Some(4))
        .unwrap()
        .blocks
        .last()
        .unwrap()
        .cid;
    let mut bytes = repo.store().get(&leaf).unwrap();
    bytes[100] ^= 1;
    blocks.corrupt(&leaf, bytes);
    let err = verifier(&store).verify(&cid, &entry).await.unwrap_err();
    assert!(err.to_string().contains("corrupt"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_serves_repeated_verifications() {
    let node = node();
    let reference = synthetic_gradient(SIZE, 1).unwrap();
    let file = encode(&reference, Format::Protobuf);
    let entry = entry_from_file(&file, &options("e"), &Limits::default()).unwrap();
    let second = entry_from_file(
        &file,
        &EntryOptions {
            seed: Some([7; 32]),
            ..options("f")
        },
        &Limits::default(),
    )
    .unwrap();
    let cid = add(&node.store, file).await;
    let v = verifier(&node.store);
    let first = v.verify(&cid, &entry).await.unwrap();
    assert!(first.bytes_fetched > 0);
    let again = v.verify(&cid, &entry).await.unwrap();
    assert_eq!(again.bytes_fetched, 0);
    assert_eq!(again.blocks_fetched, 0);
    assert!(again.bytes_from_cache > 0);
    assert_eq!(again.cosine_ppm, first.cosine_ppm);
    // Another entry on the same gradient reuses the header and the DAG's root.
    let other = v.verify(&cid, &second).await.unwrap();
    assert!(other.passed);
    assert!(other.bytes_fetched < first.bytes_fetched, "{other:#?}");
    let stats = v.cache().stats();
    assert!(stats.hits > 0 && stats.misses > 0);
    assert_eq!(
        stats.bytes_fetched,
        first.bytes_fetched + other.bytes_fetched
    );
    assert_eq!(stats.verifications, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_pickle_gzip_is_downloaded_whole() {
    let node = node();
    let file = fixture("pickle/numpy2/engine_gradients.pkl.gz");
    let placement = Placement {
        windows: 2,
        per_window: 2,
        span: 4,
    };
    let entry = entry_from_file(
        &file,
        &EntryOptions {
            placement,
            ..options("legacy")
        },
        &Limits::default(),
    )
    .unwrap();
    let cid = add(&node.store, file.clone()).await;
    let report = verifier(&node.store).verify(&cid, &entry).await.unwrap();
    assert!(report.passed, "{report:#?}");
    assert_eq!(report.method, Method::FullDownload);
    assert_eq!(report.format, Some("pickle+gzip"));
    assert_eq!(report.file_size, file.len() as u64);
    assert!(report.bytes_fetched >= report.file_size);

    // Too big for a full download.
    let small = VerifierConfig {
        max_full_download: 100,
        ..VerifierConfig::default()
    };
    let err = Verifier::new(node.store.clone(), VerifyCache::default(), small)
        .verify(&cid, &entry)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_bombs_stop_at_the_decompression_limit() {
    let node = node();
    let bomb = fixture("pickle/hostile/gzip_bomb.pkl.gz");
    let cid = add(&node.store, bomb).await;
    let entry = VaultEntry {
        id: "bomb".into(),
        chunk: options("x").chunk,
        order: FlatOrder::Canonical,
        elements: 10,
        threshold_ppm: 0,
        indices: vec![1],
        values: vec![1.0],
        model_version: None,
    };
    let config = VerifierConfig {
        limits: Limits::tight(),
        ..VerifierConfig::default()
    };
    let report = Verifier::new(node.store.clone(), VerifyCache::default(), config)
        .verify(&cid, &entry)
        .await
        .unwrap();
    assert!(!report.passed);
    assert!(report.reason.unwrap().contains("limit"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_entries_are_refused_before_any_read() {
    let node = node();
    let mut entry = entry_from_file(
        &encode(&synthetic_gradient(1 << 16, 1).unwrap(), Format::Protobuf),
        &options("e"),
        &Limits::default(),
    )
    .unwrap();
    entry.values.pop();
    let cid: Cid = cids::parse(CHUNK).unwrap();
    let err = verifier(&node.store)
        .verify(&cid, &entry)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Vault(_)), "{err}");
}
