//! Every `r3mes tx` command against a running node, as a user runs them,
//! each checked by the matching `r3mes query`: stake and unstake; dataset
//! proposal, approval and deactivation; pin registration and reward
//! claims; a replica registered, challenged and answered by hand; a model
//! version; a computation trace; a gradient verified by hand with a vault;
//! a replica challenge answered by a node started with `--respond-as`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::{address, fails, fixture, json, ok, r3mes};

/// Finds the first string under key `key` anywhere in `v`.
fn find<'a>(v: &'a serde_json::Value, key: &str) -> Option<&'a str> {
    match v {
        serde_json::Value::Object(map) => map
            .get(key)
            .and_then(|x| x.as_str())
            .or_else(|| map.values().find_map(|x| find(x, key))),
        serde_json::Value::Array(items) => items.iter().find_map(|x| find(x, key)),
        _ => None,
    }
}

/// Content of `len` pseudo-random bytes added through the node's IPFS API.
fn add(home: &Path, ipfs: &str, name: &str, seed: u8, len: usize) -> String {
    let path = home.join(name);
    let data: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect();
    std::fs::write(&path, data).unwrap();
    ok(r3mes(home)
        .args(["ipfs", "add", "--api", ipfs])
        .arg(&path)
        .output()
        .unwrap())
    .trim()
    .to_owned()
}

#[test]
fn every_message_has_a_tx_command_and_its_effect_can_be_queried() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let keys = common::init(home, 100, 2, |_| {});
    let dev1 = address(&keys, "dev1");
    let node = common::start(home, &[]);
    let (url, ipfs) = (node.url.as_str(), node.ipfs.as_str());
    let tx = |args: &[&str]| -> Output {
        r3mes(home)
            .arg("tx")
            .args(args)
            .args(["--node", url, "--json"])
            .output()
            .unwrap()
    };
    let query = |args: &[&str]| -> serde_json::Value {
        json(&ok(r3mes(home)
            .arg("query")
            .args(args)
            .args(["--node", url, "--json"])
            .output()
            .unwrap()))
    };
    let amount = |v: &serde_json::Value, field: &str| -> u128 {
        v[field].as_str().unwrap().parse().unwrap()
    };

    // Stake and unstake.
    let before = query(&["balance", &dev1]);
    let staked = json(&ok(tx(&["stake", "--from", "dev1", "100"])));
    assert!(staked["height"].as_u64().unwrap() >= 1);
    ok(tx(&["unstake", "--from", "dev1", "40"]));
    let after = query(&["balance", &dev1]);
    assert_eq!(amount(&after, "stake"), amount(&before, "stake") + 60);
    assert_eq!(amount(&after, "unbonding"), 40);
    fails(
        tx(&["stake", "--from", "dev1", "1000000000000000000000000000"]),
        "insufficient",
    );

    // A dataset: proposed by its provider, approved and deactivated by the validator.
    let shard0 = add(home, ipfs, "shard0", 1, 40_000);
    let shard1 = add(home, ipfs, "shard1", 2, 40_000);
    let root = add(home, ipfs, "manifest", 3, 1_000);
    ok(tx(&[
        "propose-dataset",
        "--from",
        "dev1",
        &root,
        "--shard",
        &shard0,
        "--shard",
        &shard1,
        "--name",
        "corpus",
        "--size",
        "80000",
        "--license",
        "CC0",
        "--tag",
        "text",
    ]));
    let status = |q: serde_json::Value| q["status"].clone();
    assert_eq!(status(query(&["dataset", &root])), json("1"));
    ok(tx(&["approve-dataset", "--from", "validator", &root]));
    assert_eq!(status(query(&["dataset", &root])), json("2"));
    ok(tx(&["deactivate-dataset", "--from", "validator", &root]));
    assert_eq!(status(query(&["dataset", &root])), json("3"));
    fails(
        tx(&["approve-dataset", "--from", "dev1", &shard0]),
        "not a validator",
    );

    // A pin with stake, then its rewards.
    let height = query(&["status"])["height"].as_u64().unwrap();
    ok(tx(&[
        "register-pin",
        "--from",
        "dev1",
        &shard0,
        "--stake",
        "1000",
        "--reward-per-block",
        "5",
        "--expiry-height",
        &(height + 1000).to_string(),
    ]));
    let pins = query(&["pins", &shard0]);
    assert_eq!(pins.as_array().unwrap().len(), 1, "{pins}");
    std::thread::sleep(Duration::from_millis(300));
    let claimed = json(&ok(tx(&["claim-pin-rewards", "--from", "dev1", &shard0])));
    let paid: u128 = claimed["result"].as_str().unwrap().parse().unwrap();
    assert!(paid > 0 && paid.is_multiple_of(5), "{claimed}");

    // A replica: built from the content, registered, challenged by the
    // validator and answered by hand from the store.
    let registered = json(&ok(tx(&[
        "register-replica",
        "--from",
        "dev1",
        &shard1,
        "--api",
        ipfs,
    ])));
    let replica = find(&registered, "replica_hash")
        .unwrap_or_else(|| panic!("no replica in {registered}"))
        .to_owned();
    assert_ne!(replica, shard1);
    assert_eq!(query(&["replica", &replica])["data_hash"], shard1.as_str());
    let issued = json(&ok(tx(&[
        "issue-challenge",
        "--from",
        "validator",
        "--kind",
        "replica",
        &replica,
    ])));
    let challenge = issued["result"].as_str().unwrap().to_owned();
    ok(tx(&[
        "respond-challenge",
        "--from",
        "dev1",
        &challenge,
        "--api",
        ipfs,
    ]));
    assert_eq!(query(&["challenge", &challenge])["status"], json("2"));
    fails(
        tx(&["respond-challenge", "--from", "dev1", "00ff", "--api", ipfs]),
        "challenge 00ff",
    );

    // A model version and a trace.
    ok(tx(&[
        "register-model",
        "--from",
        "validator",
        "--version",
        "1",
        "--backbone",
        &shard0,
        "--adapter",
        &format!("blocks.0.attn.q_proj:8:{shard1}"),
        "--checksum",
        "abcd",
    ]));
    assert_eq!(query(&["model"])["version"], 1);
    fails(
        tx(&[
            "register-model",
            "--from",
            "validator",
            "--version",
            "2",
            "--backbone",
            &shard0,
            "--adapter",
            "no-rank",
        ]),
        "LAYER:RANK:CID",
    );
    let traced = json(&ok(tx(&[
        "record-trace",
        "--from",
        "dev1",
        &root,
        "--gradient",
        &shard0,
    ])));
    let trace = traced["result"].as_str().unwrap().to_owned();
    assert_eq!(query(&["trace", &trace])["trace_hash"], root.as_str());

    // What dev1 holds, listed by its address: the pin, the replica, the
    // trace (no verification results: it is not a validator).
    let owned = query(&["owned", &dev1]);
    assert_eq!(owned["pins"][0]["content_hash"], shard0.as_str(), "{owned}");
    assert_eq!(owned["replicas"][0]["replica_hash"], replica.as_str());
    assert_eq!(owned["traces"][0]["trace_hash"], root.as_str());
    assert_eq!(owned["verifications"], serde_json::json!([]));
    let pins_only = query(&["owned", &dev1, "--kind", "pin"]);
    assert_eq!(pins_only["replicas"], serde_json::json!([]), "{pins_only}");
    assert_eq!(pins_only["pins"].as_array().unwrap().len(), 1);
    fails(
        r3mes(home)
            .args(["query", "owned", &dev1, "--kind", "gradient", "--node", url])
            .output()
            .unwrap(),
        "not one of replica, pin, verification, trace",
    );
    // Content nothing on chain keeps cannot be pinned for rewards.
    fails(
        tx(&[
            "register-pin",
            "--from",
            "dev1",
            &unkept_cid(),
            "--stake",
            "1000",
            "--reward-per-block",
            "1",
            "--expiry-height",
            "100000",
        ]),
        "pinning it earns nothing",
    );
    // The seed's data policies come with the params; the status has the
    // total supply.
    let params = query(&["params"]);
    let policies = params["data_policies"].as_array().unwrap();
    assert_eq!(policies.len(), 3, "{params}");
    assert_eq!(policies[1]["data_type"], "gradient_update");
    assert_eq!(policies[1]["replication_level"], 3);
    assert_eq!(
        policies[1]["retention_blocks"],
        params["retention_gradient_blocks"]
    );
    let supply: u128 = query(&["status"])["total_supply"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(supply > 0);

    // A gradient submitted, then verified by hand against a vault.
    let gradient_file = fixture("torch_style_lora.safetensors");
    let chunk = shard0.clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    let assignment = loop {
        let out = r3mes(home)
            .args([
                "query",
                "shard",
                "--address",
                &dev1,
                "--json",
                "--node",
                url,
            ])
            .output()
            .unwrap();
        if out.status.success() {
            break json(&String::from_utf8_lossy(&out.stdout));
        }
        assert!(Instant::now() < deadline, "no round opened");
        std::thread::sleep(Duration::from_millis(100));
    };
    let submitted = json(&ok(tx(&[
        "submit-gradient",
        "--from",
        "dev1",
        &gradient_file,
        "--round",
        &assignment["round_id"].to_string(),
        "--shard",
        &assignment["shard_id"].to_string(),
        "--chunk",
        &format!("0:{chunk}"),
        "--backbone",
        &shard0,
        "--api",
        ipfs,
    ])));
    let gradient = submitted["ipfs_hash"].as_str().unwrap().to_owned();
    // The stored record, and the listings by round and by miner.
    let stored = query(&["gradient", &gradient]);
    assert_eq!(stored["miner"], dev1.as_str(), "{stored}");
    assert_eq!(stored["ipfs_hash"], gradient.as_str());
    let round = assignment["round_id"].to_string();
    for listing in [
        query(&["gradients", "--round", &round]),
        query(&["gradients", "--round", &round, "--miner", &dev1]),
        query(&["gradients", "--miner", &dev1]),
    ] {
        let cids: Vec<_> = listing
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["ipfs_hash"].clone())
            .collect();
        assert_eq!(cids, vec![serde_json::json!(gradient)], "{listing}");
    }
    // A challenge on it is listed as open for dev1 until answered.
    let issued = json(&ok(tx(&[
        "issue-challenge",
        "--from",
        "validator",
        "--kind",
        "gradient",
        &gradient,
    ])));
    let challenge = issued["result"].as_str().unwrap().to_owned();
    // The block after the submission may also have sampled it (10 %).
    let open = query(&["challenges", "--target", &dev1, "--status", "open"]);
    let open = open.as_array().unwrap();
    assert!(
        open.iter().any(|c| c["challenge_id"] == challenge.as_str()),
        "{open:?}"
    );
    for c in open {
        assert_eq!(c["ipfs_hash"], gradient.as_str());
        ok(tx(&[
            "respond-challenge",
            "--from",
            "dev1",
            c["challenge_id"].as_str().unwrap(),
            "--api",
            ipfs,
        ]));
    }
    let open = query(&["challenges", "--target", &dev1]);
    assert_eq!(open, serde_json::json!([]), "{open}");
    let vault = home.join("vault.json");
    ok(r3mes(home)
        .args(["vault", "new", &gradient_file, "--out"])
        .arg(&vault)
        .args(["--chunk-hash", &chunk, "--chunk-id", "0", "--shard-id", "0"])
        .output()
        .unwrap());
    ok(tx(&[
        "submit-verification",
        "--from",
        "validator",
        &gradient,
        "--vault",
        vault.to_str().unwrap(),
        "--api",
        ipfs,
    ]));
    let results = query(&["verifications", &gradient]);
    let results = results.as_array().unwrap();
    assert_eq!(results.len(), 1, "{results:?}");
    assert_eq!(results[0]["passed"], true);
    assert_eq!(results[0]["cosine_ppm"], 1_000_000);

    // Without --from: a clear error, nothing sent.
    fails(tx(&["stake", "100"]), "--from");
}

/// A valid CID (Kubo's, of "content nothing on chain names\n") of content
/// nothing on the test chain names.
fn unkept_cid() -> String {
    "QmTNsAGTvyjdnbn19AfWgtuqLTBiL6LBXXwE6my2MLUpY3".to_owned()
}

#[test]
fn a_node_started_with_respond_as_answers_its_key_s_challenge() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    common::init(home, 100, 1, |_| {});
    let node = common::start(home, &["--respond-as", "dev1"]);
    let (url, ipfs) = (node.url.as_str(), node.ipfs.as_str());
    let run = |what: &str, args: &[&str]| -> serde_json::Value {
        json(&ok(r3mes(home)
            .arg(what)
            .args(args)
            .args(["--node", url, "--json"])
            .output()
            .unwrap()))
    };
    let content = add(home, ipfs, "kept", 7, 300_000);
    let registered = run(
        "tx",
        &[
            "register-replica",
            "--from",
            "dev1",
            &content,
            "--api",
            ipfs,
        ],
    );
    let replica = find(&registered, "replica_hash")
        .unwrap_or_else(|| panic!("no replica in {registered}"))
        .to_owned();
    let issued = run(
        "tx",
        &[
            "issue-challenge",
            "--from",
            "validator",
            "--kind",
            "replica",
            &replica,
        ],
    );
    let challenge = issued["result"].as_str().unwrap().to_owned();
    // Nobody answers by hand: the node's responder duty does, from its
    // own store, through its own mempool.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let c = run("query", &["challenge", &challenge]);
        if c["status"] == json("2") {
            break;
        }
        assert_eq!(
            c["status"],
            json("1"),
            "the challenge closed unanswered: {c}"
        );
        assert!(Instant::now() < deadline, "not answered within 20 s: {c}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (stopped, _) = node.process.stop();
    assert!(stopped, "SIGTERM exit");
}
