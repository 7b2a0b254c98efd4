//! `r3mes query ...` and `r3mes tx ...` against a running `r3mes node
//! start`, as a user runs them: readable lines by default, JSON with
//! `--json`, clear errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Output;

use common::{Node, fails, ok, r3mes};

/// `node init` (100 ms blocks, one dev account, ephemeral ports) and
/// `node start` in `home`; returns the validator's address, the node and
/// its gRPC URL.
fn init_and_start(home: &Path) -> (String, Node, String) {
    let init = common::init(home, 100, 1, |_| {});
    let validator = init["validator"].as_str().unwrap().to_owned();
    let node = common::start(home, &[]);
    let url = node.url.clone();
    (validator, node, url)
}

fn query(home: &Path, url: &str, args: &[&str]) -> Output {
    r3mes(home)
        .arg("query")
        .args(args)
        .args(["--node", url])
        .output()
        .unwrap()
}

#[test]
fn queries_print_lines_or_json_and_refuse_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let (validator, _node, url) = init_and_start(home);

    let status: serde_json::Value =
        serde_json::from_str(&ok(query(home, &url, &["status", "--json"]))).unwrap();
    assert_eq!(status["chain_id"], "r3mes-local-1");
    let lines = ok(query(home, &url, &["status"]));
    assert!(lines.contains("chain_id: r3mes-local-1"), "{lines}");

    // Block headers: the genesis block, then one that chains on from it.
    let genesis: serde_json::Value =
        serde_json::from_str(&ok(query(home, &url, &["block", "1", "--json"]))).unwrap();
    assert_eq!(genesis["height"], 1);
    assert_eq!(genesis["tx_count"], 0);
    let tip: serde_json::Value =
        serde_json::from_str(&ok(query(home, &url, &["block", "--json"]))).unwrap();
    let tip_height = tip["height"].as_u64().unwrap();
    assert!(tip_height >= 1, "{tip}");
    let mut second = query(home, &url, &["block", "2", "--json"]);
    for _ in 0..50 {
        if second.status.success() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        second = query(home, &url, &["block", "2", "--json"]);
    }
    let second: serde_json::Value = serde_json::from_str(&ok(second)).unwrap();
    assert_eq!(second["previous_app_hash"], genesis["app_hash"]);
    assert_eq!(second["block_hash"].as_str().unwrap().len(), 64, "{second}");
    let lines = ok(query(home, &url, &["block", "2"]));
    assert!(lines.contains("previous_app_hash: "), "{lines}");
    fails(query(home, &url, &["block", "999999999"]), "NotFound");

    let balance: serde_json::Value =
        serde_json::from_str(&ok(query(home, &url, &["balance", &validator, "--json"]))).unwrap();
    assert_eq!(balance["address"], validator.as_str());
    assert_ne!(balance["stake"], "0");

    let params: serde_json::Value =
        serde_json::from_str(&ok(query(home, &url, &["params", "--json"]))).unwrap();
    assert_eq!(params["block_time_ms"], 100);

    // Wait for round 1, then the shard assignment answers.
    let mut shard = None;
    for _ in 0..100 {
        let out = query(home, &url, &["shard", "--address", &validator, "--json"]);
        if out.status.success() {
            shard = Some(serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap());
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let shard = shard.expect("a round opens");
    assert!(shard["round_id"].as_u64().unwrap() >= 1);
    let round = ok(query(home, &url, &["round"]));
    assert!(round.contains("start_block_hash: "), "{round}");

    fails(
        query(home, &url, &["balance", "remes1notanaddress"]),
        "InvalidArgument",
    );
    fails(
        query(
            home,
            &url,
            &["gradient", "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"],
        ),
        "NotFound",
    );
    fails(
        query(
            home,
            &url,
            &["challenges", "--target", &validator, "--status", "closed"],
        ),
        "only --status open",
    );
    fails(query(home, &url, &["gradients"]), "--round, --miner");
    let none = ok(query(home, &url, &["challenges", "--target", &validator]));
    assert!(
        none.contains("(none)") || none.trim().is_empty() || none.contains("[]"),
        "{none}"
    );
}

#[test]
fn tx_send_is_committed_and_bad_submissions_send_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let (validator, _node, url) = init_and_start(home);
    let balance = |who: &str| -> u128 {
        let v: serde_json::Value =
            serde_json::from_str(&ok(query(home, &url, &["balance", who, "--json"]))).unwrap();
        v["balance"].as_str().unwrap().parse().unwrap()
    };
    let before = balance(&validator);
    let sent: serde_json::Value = serde_json::from_str(&ok(r3mes(home)
        .args([
            "tx", "send", "--from", "dev1", &validator, "12345", "--json", "--node", &url,
        ])
        .output()
        .unwrap()))
    .unwrap();
    assert!(sent["height"].as_u64().unwrap() >= 1);
    assert_eq!(balance(&validator), before + 12345);

    // Unknown key, bad recipient, an unreachable IPFS API: clear errors.
    let tx = |args: &[&str]| {
        r3mes(home)
            .arg("tx")
            .args(args)
            .args(["--node", &url])
            .output()
            .unwrap()
    };
    fails(tx(&["send", "--from", "nobody", &validator, "1"]), "nobody");
    fails(
        tx(&["send", "--from", "dev1", "remes1bad", "1"]),
        "recipient",
    );
    let file = dir.path().join("g.bin");
    std::fs::write(&file, b"not a gradient").unwrap();
    fails(
        tx(&[
            "submit-gradient",
            "--from",
            "dev1",
            file.to_str().unwrap(),
            "--round",
            "1",
            "--shard",
            "0",
            "--chunk",
            "1:QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG",
            "--backbone",
            "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG",
            "--api",
            "http://127.0.0.1:9",
        ]),
        "gradient format",
    );
    assert_eq!(balance(&validator), before + 12345);
}
