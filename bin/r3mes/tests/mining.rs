//! Issue 7's "done": miners train on a governance-approved dataset from a
//! local node and its IPFS, their gradients land on chain and pass the
//! availability challenges (every gradient is sampled here), the aggregate
//! of a round becomes the adapters later rounds train from, and anyone
//! recomputes the aggregate to the same bytes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Child, Stdio};

use common::{json, ok, r3mes};

/// The tests train models against round deadlines: one at a time, so two
/// nodes and three miners never share the two cores of a CI machine.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn corpus() -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/corpus");
    vec![
        dir.join("declaration-of-independence.txt"),
        dir.join("gettysburg-address.txt"),
    ]
}

/// The network's setup: an approved dataset of the shipped corpus and a
/// registered model version 1.
fn set_up(home: &Path, node: &common::Node) {
    let out = home.join("dataset");
    let manifest = json(&ok(r3mes(home)
        .args(["dataset", "build"])
        .args(corpus())
        .args(["--name", "corpus", "--chunks-per-shard", "3", "--json"])
        .args(["--api", &node.ipfs, "--out"])
        .arg(&out)
        .output()
        .unwrap()));
    assert_eq!(manifest["shard_count"], 2, "{manifest}");
    let hash = manifest["dataset_hash"].as_str().unwrap().to_owned();
    ok(r3mes(home)
        .args(["dataset", "propose"])
        .arg(&out)
        .args(["--from", "dev1", "--node", &node.url])
        .output()
        .unwrap());
    ok(r3mes(home)
        .args(["tx", "approve-dataset", "--from", "validator", &hash])
        .args(["--node", &node.url])
        .output()
        .unwrap());
    ok(r3mes(home)
        .args([
            "model", "init", "--layers", "2", "--dim", "64", "--heads", "4",
        ])
        .args(["--seed", "5", "--out"])
        .arg(home.join("model"))
        .args([
            "--api",
            &node.ipfs,
            "--from",
            "validator",
            "--node",
            &node.url,
        ])
        .output()
        .unwrap());
}

fn miner(home: &Path, node: &common::Node, key: &str, rounds: u64) -> Child {
    r3mes(home)
        .args(["miner", "run", "--from", key, "--node", &node.url])
        .args(["--api", &node.ipfs, "--rounds", &rounds.to_string()])
        .args(["--max-chunks", "1", "--local-batch-size", "16"])
        .args(["--poll-ms", "100"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for a miner; returns its JSON lines and stderr.
fn finish(child: Child) -> (Vec<serde_json::Value>, String) {
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "miner failed: {stderr}");
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(json)
        .collect();
    (lines, stderr)
}

#[test]
fn miners_train_submit_answer_and_the_aggregate_becomes_the_next_adapters() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    common::init(home, 100, 2, |p| {
        p["round_length"] = 100.into();
        p["sample_rate_ppm"] = 1_000_000.into();
        p["pow_difficulty_bits"] = 8.into();
    });
    // The node aggregates every round as the aggregator role.
    let node = common::start(
        home,
        &["--aggregate-as", "validator", "--aggregate-lr", "0.01"],
    );
    set_up(home, &node);

    let a = miner(home, &node, "dev1", 3);
    let b = miner(home, &node, "dev2", 3);
    // The first round the miners train in is the first with the dataset.
    let mut first = None;
    for _ in 0..400 {
        let round = json(&ok(r3mes(home)
            .args(["query", "round", "--json", "--node", &node.url])
            .output()
            .unwrap()));
        if round["dataset_hash"]
            .as_str()
            .is_some_and(|h| h.starts_with("Qm"))
        {
            first = round["round_id"].as_u64();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let first = first.expect("a round with the dataset starts");
    // Anyone recomputes that round's aggregate once its challenges close.
    let recomputed = json(&ok(r3mes(home)
        .args([
            "aggregate",
            "--round",
            &first.to_string(),
            "--wait",
            "--dry-run",
        ])
        .args(["--lr", "0.01", "--node", &node.url, "--api", &node.ipfs])
        .output()
        .unwrap()));
    let (lines_a, err_a) = finish(a);
    let (lines_b, err_b) = finish(b);

    // Every miner submitted 3 rounds, the first of them `first`.
    for (lines, err) in [(&lines_a, &err_a), (&lines_b, &err_b)] {
        let rounds: Vec<u64> = lines.iter().map(|l| l["round"].as_u64().unwrap()).collect();
        assert_eq!(rounds.len(), 3, "{lines:?} {err}");
        assert!(rounds.windows(2).all(|w| w[0] < w[1]), "{rounds:?}");
        assert!(rounds[0] <= first + 1, "{rounds:?} vs {first}");
        for l in lines {
            assert_eq!(l["chunks"], 1);
            assert!(l["loss"].as_f64().unwrap() > 0.0);
            assert!(l["block_height"].as_u64().unwrap() > 0);
        }
        // Every gradient was challenged and every challenge answered.
        assert!(err.contains("unanswered: 0, failed: 0"), "{err}");
        assert!(!err.contains("challenges answered: 0,"), "{err}");
    }
    // The node's aggregate of `first` took every gradient of the round,
    // weighted by tokens, and is what anyone recomputes.
    let in_round = lines_a
        .iter()
        .chain(&lines_b)
        .filter(|l| l["round"] == first)
        .count();
    assert!(in_round >= 1);
    let manifest = json(&ok(r3mes(home)
        .args(["ipfs", "files", "read"])
        .arg(format!(
            "/gradients/window_{first}/aggregated/manifest.json"
        ))
        .args(["--api", &node.ipfs])
        .output()
        .unwrap()));
    assert_eq!(
        manifest["contributions"].as_array().unwrap().len(),
        in_round,
        "{manifest}"
    );
    assert_eq!(manifest["excluded"].as_array().unwrap().len(), 0);
    assert_eq!(manifest["total_tokens"], in_round * 2048);
    assert_eq!(manifest["base_version"], 1);
    for key in ["gradient_sha256", "adapters_sha256", "state_sha256"] {
        assert_eq!(recomputed[key], manifest[key], "{key}");
    }
    assert_eq!(recomputed["contributions"], in_round);
    // Version 2 is that aggregate, with its training state.
    let model = json(&ok(r3mes(home)
        .args(["query", "model", "2", "--json", "--node", &node.url])
        .output()
        .unwrap()));
    assert_eq!(model["version"], 2);
    assert!(
        model["training_state_hash"]
            .as_str()
            .is_some_and(|h| h.starts_with("Qm")),
        "{model}"
    );
    // `model fetch` writes that version's files, checked, as `miner train`
    // reads them.
    let fetched = home.join("fetched-v2");
    let out = json(&ok(r3mes(home)
        .args(["model", "fetch", "--version", "2", "--out"])
        .arg(&fetched)
        .args(["--node", &node.url, "--api", &node.ipfs])
        .output()
        .unwrap()));
    assert_eq!(out["version"], 2, "{out}");
    assert_eq!(out["training_state"], true, "{out}");
    let sha256 = |name: &str| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(
            std::fs::read(fetched.join(name)).unwrap(),
        ))
    };
    assert_eq!(
        sha256("adapters.safetensors"),
        manifest["adapters_sha256"].as_str().unwrap()
    );
    assert_eq!(
        sha256("training_state.safetensors"),
        manifest["state_sha256"].as_str().unwrap()
    );
    assert!(fetched.join("model.safetensors").exists());
    common::fails(
        r3mes(home)
            .args(["model", "fetch", "--version", "99", "--out"])
            .arg(home.join("nope"))
            .args(["--node", &node.url, "--api", &node.ipfs])
            .output()
            .unwrap(),
        "model version 99 is not registered",
    );
    // A round that started after version 2 landed trained from it.
    let versions: Vec<u64> = lines_a
        .iter()
        .chain(&lines_b)
        .map(|l| l["model_version"].as_u64().unwrap())
        .collect();
    assert!(
        versions.iter().any(|v| *v >= 2),
        "no round trained from an aggregate: {versions:?}"
    );
    // The node answers which version a round trains from by the keeper's
    // rule (`Query.Model` by round), as the miners found it.
    let last = lines_b.last().unwrap();
    let by_round = json(&ok(r3mes(home)
        .args(["model", "fetch", "--round"])
        .arg(last["round"].to_string())
        .arg("--out")
        .arg(home.join("fetched-by-round"))
        .args(["--node", &node.url, "--api", &node.ipfs])
        .output()
        .unwrap()));
    assert_eq!(by_round["version"], last["model_version"], "{by_round}");
    // The seed's layout in the MFS.
    let listed = ok(r3mes(home)
        .args(["ipfs", "files", "ls"])
        .arg(format!("/gradients/window_{first}/aggregated"))
        .args(["--api", &node.ipfs])
        .output()
        .unwrap());
    assert_eq!(listed, "gradient.pb\nmanifest.json\n");
    let listed = ok(r3mes(home)
        .args(["ipfs", "files", "ls", "/models/v2/lora_adapters"])
        .args(["--api", &node.ipfs])
        .output()
        .unwrap());
    assert_eq!(listed, "adapters.safetensors\ntraining_state.safetensors\n");
    // Nothing is left in the spools.
    for key in ["dev1", "dev2"] {
        let spool = home.join("miner").join(address_of(home, key));
        let pending = std::fs::read_dir(&spool)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "json")
            })
            .count();
        assert_eq!(pending, 0, "{}", spool.display());
    }
}

/// The address of keyring key `key`.
fn address_of(home: &Path, key: &str) -> String {
    let shown = ok(r3mes(home).args(["keys", "show", key]).output().unwrap());
    shown
        .lines()
        .find_map(|l| l.strip_prefix("address:"))
        .unwrap()
        .trim()
        .to_owned()
}

/// A free local port (bound and released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_gradient_computed_while_the_node_dies_is_spooled_and_submitted_when_it_is_back() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    // Fixed ports: the restarted node must be where the miner looks.
    let grpc = format!("127.0.0.1:{}", free_port());
    let ipfs = format!("127.0.0.1:{}", free_port());
    ok(r3mes(home)
        .args([
            "node",
            "init",
            "--block-time-ms",
            "100",
            "--dev-accounts",
            "1",
        ])
        .args(["--grpc-addr", &grpc, "--ipfs-api-addr", &ipfs])
        .args([
            "--metrics-addr",
            "127.0.0.1:0",
            "--gateway-addr",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap());
    let genesis = home.join("genesis.json");
    let mut g = json(&std::fs::read_to_string(&genesis).unwrap());
    g["params"]["round_length"] = 150.into();
    g["params"]["pow_difficulty_bits"] = 8.into();
    std::fs::write(&genesis, g.to_string()).unwrap();
    let node = common::start(home, &[]);
    set_up(home, &node);
    let miner = miner(home, &node, "dev1", 1);
    let spool = home.join("miner").join(address_of(home, "dev1"));
    // The moment the gradient is spooled, the node (and its IPFS) dies.
    let spooled = (0..60_000).find(|_| {
        let found = std::fs::read_dir(&spool).is_ok_and(|d| {
            d.filter_map(Result::ok)
                .any(|e| e.path().extension().is_some_and(|x| x == "json"))
        });
        if !found {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        found
    });
    assert!(spooled.is_some(), "the miner never spooled a gradient");
    let mut process = node.process;
    let _ = process.0.kill();
    let _ = process.0.wait();
    std::mem::forget(process);
    std::thread::sleep(std::time::Duration::from_secs(2));
    let node = common::start(home, &[]);
    assert_eq!(node.url, format!("http://{grpc}"));
    let (lines, err) = finish(miner);
    assert_eq!(lines.len(), 1, "{err}");
    let cid = lines[0]["ipfs_hash"].as_str().unwrap();
    let stored = json(&ok(r3mes(home)
        .args(["query", "gradient", cid, "--json", "--node", &node.url])
        .output()
        .unwrap()));
    assert_eq!(
        stored["metadata"]["round_id"], lines[0]["round"],
        "{stored}"
    );
    assert!(
        !std::fs::read_dir(&spool)
            .unwrap()
            .filter_map(Result::ok)
            .any(|e| e.path().extension().is_some_and(|x| x == "json")),
        "the spool is empty once submitted"
    );
}
