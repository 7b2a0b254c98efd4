//! The seed's Python miner code (`IPFSClient.add_gradients`, copied verbatim
//! into `examples/python/ipfs_client.py`, driven by `seed_ipfs_client.py`) against the embedded daemon: it must get the
//! CID r3mes-ipfs computes for the bytes it uploaded. Skipped when python3 or
//! its `requests` module is missing.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::{Node, expected};
use r3mes_ipfs::{AddOptions, Cid};

async fn python_with_requests() -> bool {
    tokio::process::Command::new("python3")
        .args(["-c", "import requests"])
        .output()
        .await
        .is_ok_and(|out| out.status.success())
}

#[tokio::test]
async fn seed_ipfs_client_gets_our_cid() {
    if !python_with_requests().await {
        eprintln!("skipped: python3 with the `requests` module is not available");
        return;
    }
    let node = Node::start().await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/seed_ipfs_client.py");
    let uploaded = node.dir.path().join("uploaded.bin");
    // Async, so this runtime keeps serving the daemon while Python talks to it.
    let out = tokio::process::Command::new("python3")
        .arg(&script)
        .arg(node.handle.api_addr().port().to_string())
        .arg(&uploaded)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "the seed client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    let cid: Cid = printed.trim().parse().unwrap();

    let bytes = std::fs::read(&uploaded).unwrap();
    assert!(bytes.len() > 262_144, "the gradient spans several chunks");
    let (ours, _) = expected(&bytes, &AddOptions::default());
    assert_eq!(cid, ours);
    assert_eq!(node.repo.cat_bytes(&cid, 0, None).unwrap().0, bytes);
}
