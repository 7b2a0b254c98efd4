//! `r3mes dataset build` as a provider runs it: text to 2048-token chunk
//! files and shards on disk and, with `--api`, in IPFS under
//! `/datasets/shards/{name}` (MFS); then proposed and approved on chain
//! with the manifest's CIDs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{fails, json, ok, r3mes};

#[test]
fn a_built_dataset_is_in_ipfs_and_can_be_proposed_and_approved() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    common::init(home, 100, 1, |_| {});
    let node = common::start(home, &[]);
    let corpus = home.join("corpus.txt");
    // 5 chunks and a bit: the last is padded.
    let text: Vec<u8> = (0..2048 * 5 + 100).map(|i| b'a' + (i % 26) as u8).collect();
    std::fs::write(&corpus, &text).unwrap();
    let out = home.join("ds");
    let manifest = json(&ok(r3mes(home)
        .args(["dataset", "build"])
        .arg(&corpus)
        .args([
            "--name",
            "alphabet",
            "--chunks-per-shard",
            "4",
            "--json",
            "--api",
            &node.ipfs,
        ])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap()));
    assert_eq!(manifest["shard_count"], 2);
    assert_eq!(manifest["size"], text.len());
    let shards = manifest["shards"].as_array().unwrap();
    let last = shards[1]["chunks"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["chunk_id"], 5);
    assert_eq!(last["counted_tokens"], 100);
    assert_eq!(
        std::fs::read(out.join("shard_1").join("chunk_5"))
            .unwrap()
            .len(),
        4396
    );
    // The chunk in IPFS is the file on disk, filed under the seed's layout.
    let cid = last["cid"].as_str().unwrap();
    let fetched = r3mes(home)
        .args([
            "ipfs",
            "files",
            "read",
            "/datasets/shards/alphabet/shard_1/chunk_5",
        ])
        .args(["--api", &node.ipfs])
        .output()
        .unwrap();
    assert!(fetched.status.success());
    let on_disk = std::fs::read(out.join("shard_1").join("chunk_5")).unwrap();
    assert!(
        fetched.stdout == on_disk,
        "the chunk in IPFS differs from the file"
    );
    assert!(cid.starts_with("Qm"));

    // Proposed from the manifest by its provider, approved by the validator.
    let hash = manifest["dataset_hash"].as_str().unwrap();
    let proposed = json(&ok(r3mes(home)
        .args(["dataset", "propose"])
        .arg(&out)
        .args(["--from", "dev1", "--license", "CC0", "--node", &node.url])
        .output()
        .unwrap()));
    assert!(proposed["height"].as_u64().unwrap() >= 1, "{proposed}");
    let proposed = json(&ok(r3mes(home)
        .args(["query", "dataset", hash, "--json", "--node", &node.url])
        .output()
        .unwrap()));
    assert_eq!(proposed["status"], 1);
    ok(r3mes(home)
        .args([
            "tx",
            "approve-dataset",
            "--from",
            "validator",
            hash,
            "--node",
            &node.url,
        ])
        .output()
        .unwrap());
    let dataset = json(&ok(r3mes(home)
        .args(["query", "dataset", hash, "--json", "--node", &node.url])
        .output()
        .unwrap()));
    assert_eq!(dataset["status"], 2);

    // A second build into the same directory is refused; bad names too.
    fails(
        r3mes(home)
            .args(["dataset", "build"])
            .arg(&corpus)
            .args(["--name", "alphabet", "--out"])
            .arg(&out)
            .output()
            .unwrap(),
        "exists",
    );
    fails(
        r3mes(home)
            .args(["dataset", "build"])
            .arg(&corpus)
            .args(["--name", "../x", "--out"])
            .arg(home.join("other"))
            .output()
            .unwrap(),
        "dataset name",
    );
}
