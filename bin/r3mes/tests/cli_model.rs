//! `r3mes model init` as an operator runs it: the same seed gives the same
//! files, `--api` files them under `/models/v1/` in IPFS, and `--from`
//! registers the version on the node with those CIDs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{fails, json, ok, r3mes};

#[test]
fn a_model_is_made_deterministically_added_and_registered() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    common::init(home, 100, 1, |_| {});
    let node = common::start(home, &[]);
    let init = |out: &str, extra: &[&str]| {
        r3mes(home)
            .args([
                "model", "init", "--layers", "1", "--dim", "32", "--heads", "2",
            ])
            .args(["--seed", "7", "--out"])
            .arg(home.join(out))
            .args(extra)
            .output()
            .unwrap()
    };
    let first = json(&ok(init("a", &[])));
    let second = json(&ok(init("b", &[])));
    assert_eq!(first["backbone_sha256"], second["backbone_sha256"]);
    assert_eq!(
        std::fs::read(home.join("a/adapters.safetensors")).unwrap(),
        std::fs::read(home.join("b/adapters.safetensors")).unwrap()
    );

    let made = json(&ok(init(
        "c",
        &[
            "--api",
            &node.ipfs,
            "--from",
            "validator",
            "--node",
            &node.url,
        ],
    )));
    assert!(made["registered_height"].as_u64().unwrap() >= 1, "{made}");
    let model = json(&ok(r3mes(home)
        .args(["query", "model", "--json", "--node", &node.url])
        .output()
        .unwrap()));
    assert_eq!(model["version"], 1);
    assert_eq!(model["backbone_hash"], made["backbone_cid"]);
    assert_eq!(model["metadata_hash"], made["metadata_cid"]);
    let listed = ok(r3mes(home)
        .args(["ipfs", "files", "ls", "/models/v1", "--api", &node.ipfs])
        .output()
        .unwrap());
    assert_eq!(listed, "backbone\nlora_adapters\nmetadata.json\n");

    // Registering needs the CIDs; a bad rank is refused before anything is made.
    fails(init("d", &["--from", "validator"]), "--api");
    fails(init("e", &["--rank", "2"]), "rank");
}
