//! The node's background duties: a node started with `respond_as` answers
//! the availability challenge its miner's gradient draws, from its own
//! content store, through its own mempool, and the challenge resolves with
//! no slash; a node started with a vault verifies a new gradient by range
//! reads and its metrics count the bytes it fetched.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{TestNode, content, init_home, test_config, test_params};
use r3mes_chain::gradients::{GradientFacts, one_chunk_submission};
use r3mes_chain::params::Params;
use r3mes_chain::proto::{ChallengeStatus, event, tx_body};
use r3mes_ipfs::AddSource;
use r3mes_node::proto::SubscribeEventsRequest;
use r3mes_verify::budget::synthetic_gradient;
use r3mes_verify::{ChunkRef, EntryOptions, FlatOrder, Placement, Vault, entry_from_file};
use tokio_stream::StreamExt;

#[tokio::test]
async fn a_responder_node_answers_its_miner_s_challenge() {
    let dir = tempfile::tempdir().unwrap();
    let params = Params {
        sample_rate_ppm: 1_000_000,
        ..test_params(100_000)
    };
    let home = init_home(dir.path(), params);
    let mut config = test_config();
    config.duties.respond_as = Some("dev1".into());
    let mut node = TestNode::start_with(&home, config).await;
    let key = node.key("dev1");
    let miner = key.public_key().address();
    let mut stream = node
        .query
        .subscribe_events(SubscribeEventsRequest {
            types: vec![
                "challenge_issued".into(),
                "challenge_closed".into(),
                "slashed".into(),
            ],
            address: miner.to_string(),
        })
        .await
        .unwrap()
        .into_inner();

    let cid = node.add_content(content(7, 600_000)).await;
    let msg = node.gradient_msg(&key, &cid).await;
    let sequence = node.sequence(&miner).await;
    let tx = node
        .sign(&key, tx_body::Msg::SubmitGradient(msg), sequence)
        .await;
    node.submit_gradient(&tx).await.unwrap();

    let (mut issued, mut closed) = (false, None);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while closed.is_none() {
        let next = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("the challenge closes within 30 s")
            .expect("the stream stays open")
            .unwrap();
        match next.event.and_then(|e| e.kind) {
            Some(event::Kind::ChallengeIssued(_)) => issued = true,
            Some(event::Kind::ChallengeClosed(c)) => closed = Some(c.status),
            Some(event::Kind::Slashed(s)) => panic!("the miner was slashed: {s:?}"),
            _ => {}
        }
    }
    assert!(issued);
    assert_eq!(closed, Some(ChallengeStatus::Resolved as i32));
    node.handle.shutdown().await.unwrap();
}

/// The data chunk the vault's entry names.
const CHUNK: &str = "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH";

/// The value of the metric line `name value` in a Prometheus text body.
fn metric(body: &str, name: &str) -> Option<u64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

/// A plain HTTP/1.1 GET of the node's metrics; returns the body.
async fn scrape(addr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validator_node_verifies_a_gradient_and_counts_the_bytes_it_fetched() {
    let dir = tempfile::tempdir().unwrap();
    let home = init_home(dir.path(), test_params(100_000));
    let file = r3mes_tensor::encode(
        &synthetic_gradient(256 << 10, 3).unwrap(),
        r3mes_tensor::Format::Protobuf,
    )
    .unwrap();
    let options = EntryOptions {
        id: "chunk-1".into(),
        chunk: ChunkRef {
            data_hash: CHUNK.into(),
            chunk_id: 1,
            shard_id: 0,
        },
        placement: Placement::default(),
        threshold_ppm: 950_000,
        order: FlatOrder::Canonical,
        seed: Some([5; 32]),
    };
    let entry = entry_from_file(&file, &options, &r3mes_tensor::Limits::default()).unwrap();
    let elements = entry.elements;
    let vault = dir.path().join("vault.json");
    Vault::new(vec![entry]).save(&vault).unwrap();
    let mut config = test_config();
    config.duties.vault = Some(vault);
    let mut node = TestNode::start_with(&home, config).await;

    let before = scrape(node.handle.metrics_addr()).await;
    assert_eq!(
        metric(&before, "r3mes_verify_bytes_fetched_total"),
        Some(0),
        "{before}"
    );
    assert_eq!(
        metric(&before, "r3mes_verify_verifications_total"),
        Some(0),
        "{before}"
    );

    let store = node.handle.content_store();
    let len = file.len() as u64;
    let cid = store
        .add(
            AddSource::Bytes(bytes::Bytes::from(file)),
            &r3mes_verify::gradient_add_options(),
        )
        .await
        .unwrap()
        .cid;
    let key = node.key("dev1");
    let miner = key.public_key().address();
    let (round, shard) = node.assignment(&miner).await;
    let facts = GradientFacts {
        chunk: CHUNK.into(),
        backbone: CHUNK.into(),
        format: "protobuf".into(),
        byte_size: len,
        element_count: elements,
    };
    let msg = one_chunk_submission(&miner, &cid, round, shard, 4, &facts);
    let sequence = node.sequence(&miner).await;
    let tx = node
        .sign(&key, tx_body::Msg::SubmitGradient(msg), sequence)
        .await;
    node.submit_gradient(&tx).await.unwrap();

    // The duty verifies after the gradient's block; its result lands in a
    // later block and the cache's counters show the range reads.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let body = loop {
        let body = scrape(node.handle.metrics_addr()).await;
        if metric(&body, "r3mes_verify_verifications_total").unwrap_or(0) >= 1 {
            break body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no verification within 30 s: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let fetched = metric(&body, "r3mes_verify_bytes_fetched_total").unwrap();
    assert!(fetched > 0, "{body}");
    // Range reads: far less than the whole gradient.
    assert!(fetched < len, "fetched {fetched} of {len} bytes: {body}");
    assert!(
        metric(&body, "r3mes_verify_blocks_fetched_total").unwrap() >= 1,
        "{body}"
    );
    assert_eq!(
        metric(&body, "r3mes_verify_verifications_failed_total"),
        Some(0),
        "{body}"
    );
    assert!(
        metric(&body, "r3mes_verify_cache_bytes").unwrap() > 0,
        "{body}"
    );
    assert!(
        metric(&body, "r3mes_verify_cache_entries{kind=\"block\"}").unwrap() >= 1,
        "{body}"
    );
    node.handle.shutdown().await.unwrap();
}
