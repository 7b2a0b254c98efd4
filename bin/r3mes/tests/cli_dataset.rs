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

/// The hand-written WordLevel tokenizer of r3mes-dataset's tests (12
/// tokens, `<pad>` is 1).
fn tokenizer_fixture() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../crates/dataset/tests/fixtures/tiny-wordlevel.tokenizer.json")
}

#[test]
fn a_tokenizer_json_tokenizes_the_dataset_and_is_recorded_in_the_manifest() {
    use sha2::Digest;

    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let corpus = home.join("fox.txt");
    std::fs::write(&corpus, "The quick brown fox, the lazy dog.\n".repeat(300)).unwrap();
    let build = |tokenizer: &std::path::Path, input: &std::path::Path, out: &str| {
        r3mes(home)
            .args(["dataset", "build"])
            .arg(input)
            .args(["--name", "fox", "--json", "--tokenizer"])
            .arg(tokenizer)
            .arg("--out")
            .arg(home.join(out))
            .output()
            .unwrap()
    };
    let manifest = json(&ok(build(&tokenizer_fixture(), &corpus, "ds")));
    let file_hash = hex::encode(sha2::Sha256::digest(
        std::fs::read(tokenizer_fixture()).unwrap(),
    ));
    assert_eq!(
        manifest["tokenizer"],
        serde_json::json!({"kind": "tokenizer.json", "sha256": file_hash, "vocab_size": 12})
    );
    assert_eq!(manifest["pad_token"], 1);
    assert_eq!(manifest["token_count"], 9 * 300);
    // 2700 tokens: one full chunk, then 652 counted and the rest <pad>.
    let first =
        r3mes_dataset::decode_chunk(&std::fs::read(home.join("ds/shard_0/chunk_0")).unwrap())
            .unwrap();
    assert_eq!(&first.tokens()[..9], &[2, 3, 4, 5, 11, 2, 8, 9, 10]);
    let last =
        r3mes_dataset::decode_chunk(&std::fs::read(home.join("ds/shard_0/chunk_1")).unwrap())
            .unwrap();
    assert_eq!(last.counted(), 2700 - 2048);
    assert!(last.tokens()[652..].iter().all(|t| *t == 1));
    let on_disk = json(&std::fs::read_to_string(home.join("ds/manifest.json")).unwrap());
    assert_eq!(on_disk["tokenizer"]["kind"], "tokenizer.json");

    // The default is still byte-level, recorded as "byte".
    let bytes = json(&ok(r3mes(home)
        .args(["dataset", "build"])
        .arg(&corpus)
        .args(["--name", "fox", "--json", "--out"])
        .arg(home.join("bytes"))
        .output()
        .unwrap()));
    assert_eq!(bytes["tokenizer"], "byte");
    assert_eq!(bytes["pad_token"], 0);
    assert_eq!(bytes["token_count"], 35 * 300);

    // A malformed tokenizer.json, ids above 16 bits, or text that is not
    // UTF-8: a clear error and nothing written.
    let bad = home.join("bad.json");
    std::fs::write(&bad, r#"{"model": {"type": "NoSuchModel"}}"#).unwrap();
    fails(build(&bad, &corpus, "bad"), "not a tokenizer.json");
    assert!(!home.join("bad").exists());
    let wide = home.join("wide.json");
    std::fs::write(
        &wide,
        std::fs::read_to_string(tokenizer_fixture())
            .unwrap()
            .replace("\",\": 11", "\",\": 11, \"huge\": 70000"),
    )
    .unwrap();
    fails(build(&wide, &corpus, "wide"), "vocabulary of 70001 tokens");
    assert!(!home.join("wide").exists());
    let binary = home.join("blob.bin");
    std::fs::write(&binary, b"the fox \xff dog").unwrap();
    fails(
        build(&tokenizer_fixture(), &binary, "blob"),
        "blob.bin is not UTF-8 text (invalid byte at offset 8)",
    );
    assert!(!home.join("blob").exists());
    fails(
        build(&home.join("missing.json"), &corpus, "missing"),
        "missing.json",
    );
    assert!(!home.join("missing").exists());
}
