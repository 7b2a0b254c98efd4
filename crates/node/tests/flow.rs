//! A node end to end over gRPC: a signed gradient submission answered with
//! `{ipfs_hash, block_height}` after commit, read back, seen on the event
//! stream; other messages through `BroadcastTx`; health, reflection and
//! metrics; the state found again after a restart; GC unpinning content.

mod common;

use std::time::Duration;

use common::{BLOCK_MS, TestNode, content, http_get, init_home, test_params};
use r3mes_chain::proto::{MsgSend, event, tx_body};
use r3mes_ipfs::PinMode;
use r3mes_node::proto::{
    AccountRequest, BroadcastTxRequest, CidRequest, GradientsByMinerRequest,
    GradientsByRoundRequest, SubscribeEventsRequest,
};
use tokio_stream::StreamExt;

#[tokio::test]
async fn a_signed_gradient_is_stored_acknowledged_after_commit_and_announced() {
    let dir = tempfile::tempdir().unwrap();
    let home = init_home(dir.path(), test_params(100_000));
    let mut node = TestNode::start(&home).await;
    let key = node.key("dev1");
    let miner = key.public_key().address();

    let mut stream = node
        .query
        .subscribe_events(SubscribeEventsRequest {
            types: vec!["gradient_stored".into()],
            address: miner.to_string(),
        })
        .await
        .unwrap()
        .into_inner();

    let cid = node.add_content(content(1, 300_000)).await;
    let msg = node.gradient_msg(&key, &cid).await;
    let tx = node.sign(&key, tx_body::Msg::SubmitGradient(msg), 0).await;
    let answer = node.submit_gradient(&tx).await.unwrap();
    assert_eq!(answer.ipfs_hash, cid.to_string());
    assert!(answer.block_height >= 2);
    assert_eq!(answer.tx_hash.len(), 64);

    // Acknowledged only after commit: the block is already visible.
    let status = node.status().await;
    assert!(status.height >= answer.block_height);
    let stored = node
        .query
        .gradient(CidRequest {
            cid: cid.to_string(),
        })
        .await
        .unwrap()
        .into_inner()
        .gradient
        .unwrap();
    assert_eq!(stored.ipfs_hash, cid.to_bytes());
    assert_eq!(stored.miner, miner.as_bytes().to_vec());
    assert_eq!(stored.block_height, answer.block_height);
    assert_eq!(node.sequence(&miner).await, 1);

    let round = stored.metadata.as_ref().unwrap().round_id;
    let by_round = node
        .query
        .gradients_by_round(GradientsByRoundRequest {
            round_id: round,
            miner: miner.to_string(),
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .gradients;
    assert_eq!(by_round, vec![stored.clone()]);
    let by_miner = node
        .query
        .gradients_by_miner(GradientsByMinerRequest {
            miner: miner.to_string(),
            max_rounds: 0,
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .gradients;
    assert_eq!(by_miner, vec![stored]);

    let seen = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("event in time")
        .expect("stream open")
        .expect("event");
    assert_eq!(seen.r#type, "gradient_stored");
    assert_eq!(seen.height, answer.block_height);
    assert_eq!(seen.tx_hash, answer.tx_hash);
    match seen.event.and_then(|e| e.kind) {
        Some(event::Kind::GradientStored(g)) => {
            assert_eq!(g.ipfs_hash, cid.to_string());
            assert_eq!(g.miner, miner.to_string());
        }
        other => panic!("unexpected event {other:?}"),
    }
    node.handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn broadcast_tx_applies_any_message_and_reports_keeper_failures() {
    let dir = tempfile::tempdir().unwrap();
    let home = init_home(dir.path(), test_params(100_000));
    let mut node = TestNode::start(&home).await;
    let alice = node.key("dev1");
    let bob = node.key("dev2").public_key().address();
    let before: u128 = node
        .query
        .account(AccountRequest {
            address: bob.to_string(),
        })
        .await
        .unwrap()
        .into_inner()
        .balance
        .parse()
        .unwrap();

    let send = |amount_low| {
        tx_body::Msg::Send(MsgSend {
            from: alice.public_key().address().to_string(),
            to: bob.to_string(),
            amount_low,
            amount_high: 0,
        })
    };
    // Two transactions of one account in flight at once: the mempool keeps
    // them in sequence order.
    let first = node.sign(&alice, send(5), 0).await;
    let second = node.sign(&alice, send(7), 1).await;
    let mut c1 = node.msg.clone();
    let mut c2 = node.msg.clone();
    let r1 = tokio::spawn(async move {
        c1.broadcast_tx(BroadcastTxRequest {
            tx_bytes: first.encode(),
            ..Default::default()
        })
        .await
    });
    // The second waits until the first is admitted (waiting or already
    // committed), else its sequence would skip ahead.
    let alice_address = alice.public_key().address();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while node.status().await.mempool_size == 0 && node.sequence(&alice_address).await == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "first transfer never admitted"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let r2 = c2
        .broadcast_tx(BroadcastTxRequest {
            tx_bytes: second.encode(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let r1 = r1.await.unwrap().unwrap().into_inner();
    for r in [&r1, &r2] {
        assert_eq!(r.code, 0, "{}", r.log);
        assert!(matches!(r.events[0].kind, Some(event::Kind::Transfer(_))));
    }
    assert!(r2.height >= r1.height);
    let after: u128 = node
        .query
        .account(AccountRequest {
            address: bob.to_string(),
        })
        .await
        .unwrap()
        .into_inner()
        .balance
        .parse()
        .unwrap();
    assert_eq!(after, before + 12);

    // A transfer beyond the balance passes admission's stateless checks
    // but not the keeper: refused before it waits for a block.
    let too_much = node.sign(&alice, send(u64::MAX), 2).await;
    let err = node
        .msg
        .broadcast_tx(BroadcastTxRequest {
            tx_bytes: too_much.encode(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("insufficient funds"), "{err:?}");
    assert_eq!(node.sequence(&alice.public_key().address()).await, 2);
    node.handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn health_reflection_and_metrics_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let home = init_home(dir.path(), test_params(100_000));
    let node = TestNode::start(&home).await;
    let url = format!("http://{}", node.handle.grpc_addr());

    let channel = tonic::transport::Channel::from_shared(url)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    for service in ["r3mes.node.v1.Msg", "r3mes.node.v1.Query"] {
        let r = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            r.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
    }

    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let listed = responses.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = listed.message_response else {
        panic!("unexpected reflection answer");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"r3mes.node.v1.Msg".to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"r3mes.node.v1.Query".to_string()),
        "{names:?}"
    );

    tokio::time::sleep(Duration::from_millis(3 * BLOCK_MS)).await;
    let body = http_get(node.handle.metrics_addr(), "/metrics").await;
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    for name in [
        "r3mes_height ",
        "r3mes_mempool_size 0",
        "r3mes_tx_per_second ",
        "r3mes_txs_total ",
        "r3mes_blocks_total ",
        "r3mes_challenges_total{status=\"issued\"} ",
        "r3mes_verify_cache_hits_total 0",
        "r3mes_verify_cache_misses_total 0",
        "r3mes_verify_bytes_fetched_total 0",
        "r3mes_verify_verifications_total 0",
        "r3mes_verify_cache_entries{kind=\"block\"} 0",
        "r3mes_verify_cache_bytes 0",
    ] {
        assert!(body.contains(name), "{name} missing in {body}");
    }
    let height: u64 = body
        .lines()
        .find_map(|l| l.strip_prefix("r3mes_height "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(height >= 2, "{body}");
    node.handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_restarted_node_finds_its_state() {
    let dir = tempfile::tempdir().unwrap();
    let home = init_home(dir.path(), test_params(100_000));
    let mut node = TestNode::start(&home).await;
    let key = node.key("dev1");
    let miner = key.public_key().address();
    let cid = node.add_content(content(2, 10_000)).await;
    let msg = node.gradient_msg(&key, &cid).await;
    let tx = node.sign(&key, tx_body::Msg::SubmitGradient(msg), 0).await;
    let answer = node.submit_gradient(&tx).await.unwrap();
    node.handle.shutdown().await.unwrap();

    // Closed cleanly: the state opens again, at or past the gradient's
    // block, with an app hash that matches its records.
    let keeper = r3mes_node::node::open_keeper(&home).unwrap();
    let height = keeper.height().unwrap();
    let app_hash = keeper.app_hash().unwrap();
    assert!(height >= answer.block_height);
    assert_eq!(keeper.state().recompute_app_hash().unwrap(), app_hash);
    drop(keeper);

    let mut node = TestNode::start(&home).await;
    let status = node.status().await;
    assert!(status.height >= height);
    let stored = node
        .query
        .gradient(CidRequest {
            cid: cid.to_string(),
        })
        .await
        .unwrap()
        .into_inner()
        .gradient
        .unwrap();
    assert_eq!(stored.block_height, answer.block_height);
    assert_eq!(node.sequence(&miner).await, 1);
    // The sequence carried over: the same transaction is a replay, the
    // next one is accepted.
    let replay = node.submit_gradient(&tx).await.unwrap_err();
    assert_eq!(replay.code(), tonic::Code::AlreadyExists, "{replay:?}");
    let cid2 = node.add_content(content(3, 10_000)).await;
    let msg = node.gradient_msg(&key, &cid2).await;
    let tx = node.sign(&key, tx_body::Msg::SubmitGradient(msg), 1).await;
    // This time as the Tx message rather than its bytes.
    let again = node
        .msg
        .submit_gradient(r3mes_node::proto::SubmitGradientRequest {
            transaction: Some(r3mes_node::proto::submit_gradient_request::Transaction::Tx(
                tx.as_proto().clone(),
            )),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.ipfs_hash, cid2.to_string());
    assert!(again.block_height > answer.block_height);
    node.handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn expired_gradients_are_unpinned_from_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let home = init_home(dir.path(), test_params(5));
    let mut node = TestNode::start(&home).await;
    let store = node.handle.content_store();
    expire_and_unpin(&mut node, store).await;
    node.handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn expired_gradients_are_unpinned_through_a_kubo_api() {
    // The embedded daemon's Kubo-compatible RPC API stands in for Kubo:
    // the node reaches it only over HTTP (`--ipfs-api`).
    let repo = r3mes_ipfs::Repo::in_memory();
    let daemon =
        r3mes_ipfs_http::Daemon::start(repo.clone(), r3mes_ipfs_http::DaemonConfig::loopback(0, 0))
            .await
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let home = init_home(dir.path(), test_params(5));
    let config = r3mes_node::config::NodeConfig::load(&home.config()).unwrap();
    let config =
        r3mes_node::node::with_ipfs_api(config, Some(format!("http://{}", daemon.api_addr())));
    let mut node = TestNode::start_with(&home, config).await;
    assert!(node.handle.ipfs_api_url().is_none());
    let daemon_store: std::sync::Arc<dyn r3mes_ipfs::ContentStore> =
        std::sync::Arc::new(r3mes_ipfs::EmbeddedStore::new(repo));
    expire_and_unpin(&mut node, daemon_store).await;
    node.handle.shutdown().await.unwrap();
    daemon.shutdown().await.unwrap();
}

/// Adds content through the node's store, submits it as a gradient with a
/// 5-block retention, waits for the keeper's unpin event, and checks the
/// pin is gone from `pins` (the store as its owner sees it).
async fn expire_and_unpin(node: &mut TestNode, pins: std::sync::Arc<dyn r3mes_ipfs::ContentStore>) {
    let key = node.key("dev1");
    let mut unpins = node
        .query
        .subscribe_events(SubscribeEventsRequest {
            types: vec!["unpin".into()],
            address: String::new(),
        })
        .await
        .expect("subscribe")
        .into_inner();
    let cid = node.add_content(content(4, 50_000)).await;
    let pinned = |list: Vec<r3mes_ipfs::PinInfo>| {
        list.iter()
            .any(|p| p.cid == cid && p.mode == PinMode::Recursive)
    };
    assert!(pinned(pins.pin_ls().await.expect("pin ls")));
    let msg = node.gradient_msg(&key, &cid).await;
    let tx = node.sign(&key, tx_body::Msg::SubmitGradient(msg), 0).await;
    node.submit_gradient(&tx).await.expect("gradient accepted");

    let unpin = tokio::time::timeout(Duration::from_secs(10), unpins.next())
        .await
        .expect("unpin event in time")
        .expect("stream open")
        .expect("event");
    match unpin.event.and_then(|e| e.kind) {
        Some(event::Kind::Unpin(u)) => assert_eq!(u.cid, cid.to_string()),
        other => panic!("unexpected event {other:?}"),
    }
    // The producer unpins right after publishing.
    for _ in 0..250 {
        if !pinned(pins.pin_ls().await.expect("pin ls")) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the expired gradient is still pinned");
}

#[tokio::test]
async fn a_transaction_failing_in_its_block_is_reported_and_drops_its_successors() {
    let dir = tempfile::tempdir().unwrap();
    let home = init_home(dir.path(), test_params(100_000));
    // Slow blocks of two: the three transactions below wait in the mempool
    // together, and the third stays there when the first two are taken.
    let config = r3mes_node::config::NodeConfig {
        block_time_ms: 2000,
        max_txs_per_block: 2,
        ..r3mes_node::config::NodeConfig::load(&home.config()).unwrap()
    };
    let mut node = TestNode::start_with(&home, config).await;
    let alice = node.key("dev1");
    let from = alice.public_key().address();
    let to = node.key("dev2").public_key().address();
    let send = |amount_low| {
        tx_body::Msg::Send(MsgSend {
            from: from.to_string(),
            to: to.to_string(),
            amount_low,
            amount_high: 0,
        })
    };
    // Start right after a block, with a whole block time ahead.
    let start = node.status().await.height;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while node.status().await.height == start {
        assert!(std::time::Instant::now() < deadline, "no block made");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut calls = Vec::new();
    for (seq, amount) in [(0, 1), (1, u64::MAX), (2, 1)] {
        let tx = node.sign(&alice, send(amount), seq).await;
        let mut client = node.msg.clone();
        calls.push(tokio::spawn(async move {
            client
                .broadcast_tx(BroadcastTxRequest {
                    tx_bytes: tx.encode(),
                    ..Default::default()
                })
                .await
                .map(tonic::Response::into_inner)
        }));
        // Admitted before the next one is sent (its sequence follows).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while node.status().await.mempool_size < seq + 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "transaction {seq} not waiting in the mempool"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if seq == 0 {
            // Behind a waiting transaction there is no dry run, yet a
            // forged signature is still refused at admission.
            let mut forged = node.sign(&alice, send(1), 1).await.as_proto().clone();
            forged.signature[7] ^= 0x10;
            let err = node
                .msg
                .broadcast_tx(BroadcastTxRequest {
                    tx_bytes: prost::Message::encode_to_vec(&forged),
                    ..Default::default()
                })
                .await
                .unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
            assert!(err.message().contains("signature"), "{err:?}");
        }
    }
    let mut results = Vec::new();
    for c in calls {
        results.push(c.await.unwrap());
    }
    let first = results[0].as_ref().unwrap();
    assert_eq!(first.code, 0, "{}", first.log);
    // The second waited behind the first, so only its block could find the
    // balance short: reported with the keeper's code, nothing applied.
    let second = results[1].as_ref().unwrap();
    assert_eq!(second.code, 52, "{second:?}");
    assert!(second.log.contains("insufficient funds"), "{}", second.log);
    assert!(second.events.is_empty());
    assert_eq!(second.height, first.height);
    // The third, still waiting, can no longer follow: refused without a
    // block, naming the transaction that failed.
    let third = results[2].as_ref().unwrap_err();
    assert_eq!(third.code(), tonic::Code::FailedPrecondition, "{third:?}");
    assert!(
        third
            .message()
            .contains("earlier transaction with sequence 1")
            && third.message().contains("insufficient funds"),
        "{third:?}"
    );
    assert_eq!(node.sequence(&from).await, 1);
    // The account goes on from its committed sequence.
    let next = node.sign(&alice, send(1), 1).await;
    let r = node
        .msg
        .broadcast_tx(BroadcastTxRequest {
            tx_bytes: next.encode(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.code, 0, "{}", r.log);
    node.handle.shutdown().await.unwrap();
}
