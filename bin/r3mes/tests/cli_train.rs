//! `r3mes miner train`: a chunk file from `dataset build` and a model from
//! `model init` give a protobuf LoRA gradient; the micro-batch size changes
//! nothing but memory; a damaged chunk is a clear error.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{fails, json, ok, r3mes};

#[test]
fn a_chunk_trains_to_the_same_gradient_whatever_the_micro_batch() {
    let dir = tempfile::tempdir().unwrap();
    let h = dir.path();
    let corpus = h.join("corpus.txt");
    let text: Vec<u8> = (0..3000).map(|i| b"the quick brown fox "[i % 20]).collect();
    std::fs::write(&corpus, &text).unwrap();
    ok(r3mes(h)
        .args(["dataset", "build"])
        .arg(&corpus)
        .args(["--name", "fox", "--out"])
        .arg(h.join("ds"))
        .output()
        .unwrap());
    ok(r3mes(h)
        .args([
            "model", "init", "--layers", "1", "--dim", "32", "--heads", "2", "--out",
        ])
        .arg(h.join("model"))
        .output()
        .unwrap());
    let train = |chunk: &str, b: &str, out: &str| {
        r3mes(h)
            .args(["miner", "train", "--model"])
            .arg(h.join("model"))
            .arg("--chunk")
            .arg(h.join("ds").join("shard_0").join(chunk))
            .args([
                "--local-batch-size",
                b,
                "--seq-len",
                "256",
                "--miner",
                "remes1x",
            ])
            .arg("--out")
            .arg(h.join(out))
            .output()
            .unwrap()
    };
    let one = json(&ok(train("chunk_0", "1", "g1.pb")));
    let four = json(&ok(train("chunk_0", "4", "g4.pb")));
    assert_eq!(one["micro_batches"], 8);
    assert_eq!(four["micro_batches"], 2);
    assert_eq!(one["target_tokens"], four["target_tokens"]);
    let (l1, l4) = (
        one["loss"].as_f64().unwrap(),
        four["loss"].as_f64().unwrap(),
    );
    assert!((l1 - l4).abs() <= 1e-6 * l1.abs(), "{l1} vs {l4}");
    // The last chunk is padded: only its real tokens are targets.
    let tail = json(&ok(train("chunk_1", "2", "g_tail.pb")));
    assert!(tail["target_tokens"].as_u64().unwrap() < 3000 - 2048);

    let inspected = json(&ok(r3mes(h)
        .args(["gradient", "inspect", "--json"])
        .arg(h.join("g1.pb"))
        .output()
        .unwrap()));
    assert_eq!(inspected["format"], "protobuf");

    let damaged = h.join("ds").join("shard_0").join("chunk_0");
    let mut bytes = std::fs::read(&damaged).unwrap();
    bytes.truncate(1000);
    std::fs::write(&damaged, bytes).unwrap();
    fails(train("chunk_0", "1", "bad.pb"), "chunk file");
}
