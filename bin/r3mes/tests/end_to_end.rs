//! The seed's whole data flow across separate processes, as an operator
//! runs it on one machine:
//!
//! - a node (`r3mes node start`) producing blocks, serving its embedded
//!   IPFS API, and acting as validator with a secret vault (`--vault`);
//! - a miner-side responder (`r3mes miner respond --from dev1`) answering
//!   dev1's availability challenges from that IPFS API over gRPC;
//! - two miners submitting with `r3mes tx submit-gradient`: dev1 keeps its
//!   data, dev2 deletes its gradient from the store (unpin + GC) and has no
//!   responder.
//!
//! Every gradient is sampled. The test watches the node's event stream and
//! checks: dev1's challenge resolved by the responder's answer, dev2's
//! failed and dev2 slashed; dev1's gradient verified by range reads with
//! cosine 1 (dev1 submitted the vault's reference); both records expired
//! by retention and dev1's content unpinned from the store.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use r3mes_chain::proto::{ChallengeStatus, event};
use r3mes_client::NodeClient;
use r3mes_kubo::KuboClient;
use r3mes_node::proto::BlockEvent;
use tokio_stream::StreamExt;

use common::{Process, address, fixture, json, ok, r3mes};

/// A data chunk id in the vault (any valid CID: chunks are named, never read here).
const CHUNK: &str = "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH";
/// A chunk no vault entry names.
const OTHER_CHUNK: &str = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG";
const BLOCK_MS: u64 = 400;
const RETENTION_BLOCKS: u64 = 30;

/// `r3mes vault new` over the honest gradient, for chunk [`CHUNK`].
fn make_vault(home: &Path, gradient: &str) -> PathBuf {
    let vault = home.join("vault.json");
    ok(r3mes(home)
        .args(["vault", "new", gradient, "--out"])
        .arg(&vault)
        .args([
            "--chunk-hash",
            CHUNK,
            "--chunk-id",
            "0",
            "--shard-id",
            "0",
            "--windows",
            "4",
            "--per-window",
            "2",
            "--span",
            "16",
        ])
        .output()
        .unwrap());
    vault
}

/// `r3mes tx submit-gradient` for `from`'s current round and shard;
/// returns the gradient's CID.
fn submit(
    home: &Path,
    node: &str,
    ipfs: &str,
    from: &str,
    address: &str,
    file: &str,
    chunk: &str,
) -> String {
    let shard = json(&ok(r3mes(home)
        .args([
            "query",
            "shard",
            "--address",
            address,
            "--json",
            "--node",
            node,
        ])
        .output()
        .unwrap()));
    let (round, shard) = (
        shard["round_id"].as_u64().unwrap().to_string(),
        shard["shard_id"].as_u64().unwrap().to_string(),
    );
    let out = json(&ok(r3mes(home)
        .args([
            "tx",
            "submit-gradient",
            "--from",
            from,
            file,
            "--round",
            &round,
            "--shard",
            &shard,
            "--chunk",
            &format!("0:{chunk}"),
            "--backbone",
            OTHER_CHUNK,
            "--api",
            ipfs,
            "--node",
            node,
            "--json",
        ])
        .output()
        .unwrap()));
    assert!(out["block_height"].as_u64().unwrap() >= 1, "{out}");
    // Filed in the store's MFS under the seed's layout.
    assert_eq!(
        out["mfs_path"].as_str().unwrap(),
        format!("/gradients/window_{round}/miner_{address}")
    );
    out["ipfs_hash"].as_str().unwrap().to_owned()
}

/// Waits until the shard query answers (round 1 is open).
fn wait_for_round(home: &Path, node: &str, address: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !r3mes(home)
        .args(["query", "shard", "--address", address, "--node", node])
        .output()
        .unwrap()
        .status
        .success()
    {
        assert!(Instant::now() < deadline, "no round opened");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Events seen so far.
type Seen = Arc<Mutex<Vec<BlockEvent>>>;

/// Polls `seen` until `found` gives something, for at most `limit`.
async fn wait_for<T>(
    seen: &Seen,
    limit: Duration,
    what: &str,
    found: impl Fn(&[BlockEvent]) -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(t) = found(&seen.lock().unwrap()) {
            return t;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn kinds(events: &[BlockEvent]) -> impl Iterator<Item = &event::Kind> {
    events
        .iter()
        .filter_map(|e| e.event.as_ref().and_then(|e| e.kind.as_ref()))
}

/// The id of the challenge issued on `cid`.
fn issued_on(events: &[BlockEvent], cid: &str) -> Option<String> {
    kinds(events).find_map(|k| match k {
        event::Kind::ChallengeIssued(c) if c.ipfs_hash == cid => Some(c.challenge_id.clone()),
        _ => None,
    })
}

fn closed(events: &[BlockEvent], id: &str) -> Option<i32> {
    kinds(events).find_map(|k| match k {
        event::Kind::ChallengeClosed(c) if c.challenge_id == id => Some(c.status),
        _ => None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_responder_and_validator_run_the_seed_flow_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let keys = common::init(home, BLOCK_MS, 2, |params| {
        params["sample_rate_ppm"] = 1_000_000.into();
        params["retention_gradient_blocks"] = RETENTION_BLOCKS.into();
        params["round_length"] = 1000.into();
    });
    let (dev1, dev2, validator) = (
        address(&keys, "dev1"),
        address(&keys, "dev2"),
        keys["validator"].as_str().unwrap().to_owned(),
    );
    let honest_file = fixture("torch_style_lora.safetensors");
    let withheld_file = fixture("lora_update.safetensors");
    let vault = make_vault(home, &honest_file);
    let node = common::start(home, &["--vault", vault.to_str().unwrap()]);
    let (url, ipfs) = (node.url.clone(), node.ipfs.clone());

    let responder = Process(
        r3mes(home)
            .args(["miner", "respond", "--from", "dev1", "--interval-ms", "200"])
            .args(["--node", &url, "--api", &ipfs])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    let client = NodeClient::connect(&url).await.unwrap();
    let mut stream = client.subscribe(&[], None).await.unwrap();
    let seen: Seen = Arc::default();
    let collector = {
        let seen = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Some(Ok(event)) = stream.next().await {
                seen.lock().unwrap().push(event);
            }
        })
    };

    let (home2, url2, ipfs2) = (home.to_owned(), url.clone(), ipfs.clone());
    let (honest, withheld) = tokio::task::spawn_blocking(move || {
        wait_for_round(&home2, &url2, &dev1);
        let honest = submit(&home2, &url2, &ipfs2, "dev1", &dev1, &honest_file, CHUNK);
        let withheld = submit(
            &home2,
            &url2,
            &ipfs2,
            "dev2",
            &dev2,
            &withheld_file,
            OTHER_CHUNK,
        );
        (honest, withheld)
    })
    .await
    .unwrap();

    // dev2 deletes its gradient right away: out of the MFS, unpinned and
    // collected. dev1's stays filed in the MFS.
    let store = KuboClient::new(&ipfs).unwrap();
    let withheld_cid = r3mes_ipfs::cids::parse(&withheld).unwrap();
    let honest_cid = r3mes_ipfs::cids::parse(&honest).unwrap();
    let windows = store.files_ls("/gradients", false).await.unwrap();
    assert_eq!(windows.len(), 1, "{windows:?}");
    let window = format!("/gradients/{}", windows[0].name);
    let dev2_path = format!("{window}/miner_{}", address(&keys, "dev2"));
    let dev1_path = format!("{window}/miner_{}", address(&keys, "dev1"));
    assert_eq!(store.files_stat(&dev1_path).await.unwrap().hash, honest_cid);
    store.files_rm(&dev2_path, false, false).await.unwrap();
    store.pin_rm(&withheld_cid).await.unwrap();
    store.repo_gc().await.unwrap();
    assert!(
        store.block_get(&withheld_cid).await.is_err(),
        "the withheld gradient is gone from the store"
    );

    let limit = Duration::from_secs(30);
    // Sampling challenges both; the responder answers dev1's in time.
    let honest_challenge =
        wait_for(&seen, limit, "dev1's challenge", |e| issued_on(e, &honest)).await;
    let withheld_challenge = wait_for(&seen, limit, "dev2's challenge", |e| {
        issued_on(e, &withheld)
    })
    .await;
    let status = wait_for(&seen, limit, "dev1's challenge to close", |e| {
        closed(e, &honest_challenge)
    })
    .await;
    assert_eq!(status, ChallengeStatus::Resolved as i32, "dev1 answered");
    let status = wait_for(&seen, limit, "dev2's challenge to close", |e| {
        closed(e, &withheld_challenge)
    })
    .await;
    assert_eq!(
        status,
        ChallengeStatus::Failed as i32,
        "dev2 could not answer"
    );
    let dev2_address = address(&keys, "dev2");
    wait_for(&seen, limit, "dev2's slash", |e| {
        kinds(e).find_map(|k| match k {
            event::Kind::Slashed(s) if s.address == dev2_address => Some(()),
            _ => None,
        })
    })
    .await;
    let dev1_address = address(&keys, "dev1");
    assert!(
        !kinds(&seen.lock().unwrap())
            .any(|k| matches!(k, event::Kind::Slashed(s) if s.address == dev1_address)),
        "the honest miner is not slashed"
    );

    // The validator verified dev1's gradient by range reads: it is the
    // vault's reference, so the cosine is exactly 1.
    let (cosine, passed, by) = wait_for(&seen, limit, "the verification of dev1's gradient", |e| {
        kinds(e).find_map(|k| match k {
            event::Kind::Verification(v) if v.ipfs_hash == honest => {
                Some((v.cosine_ppm, v.passed, v.validator.clone()))
            }
            _ => None,
        })
    })
    .await;
    assert_eq!((cosine, passed), (1_000_000, true));
    assert_eq!(by, validator);

    // Retention expires both records; dev1's content is unpinned.
    let expiry = Duration::from_millis(BLOCK_MS * (RETENTION_BLOCKS + 20));
    wait_for(&seen, expiry, "dev1's content unpinned", |e| {
        kinds(e).find_map(|k| match k {
            event::Kind::Unpin(u) if u.cid == honest => Some(()),
            _ => None,
        })
    })
    .await;
    for cid in [&honest, &withheld] {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = r3mes(home)
                .args(["query", "gradient", cid, "--node", &url])
                .output()
                .unwrap();
            if !out.status.success() {
                assert!(String::from_utf8_lossy(&out.stderr).contains("NotFound"));
                break;
            }
            assert!(Instant::now() < deadline, "{cid} still on chain");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while store
        .pin_ls()
        .await
        .unwrap()
        .iter()
        .any(|p| p.cid == honest_cid)
    {
        assert!(Instant::now() < deadline, "dev1's gradient still pinned");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (clean, report) = responder.stop();
    assert!(clean, "the responder exits 0 on SIGTERM");
    assert!(report.contains("answered: 1,"), "{report}");
    collector.abort();
    drop(node);
}
