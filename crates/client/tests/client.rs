//! `NodeClient` and `Responder` against a node started in-process: batches
//! of one key's transactions in sequence, failures reported with the
//! keeper's code, a gradient submitted, and its availability challenge
//! answered over gRPC from the content store.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use r3mes_chain::gradients::{GradientFacts, one_chunk_submission};
use r3mes_chain::params::Params;
use r3mes_chain::proto::{ChallengeStatus, MsgSend, event, tx_body};
use r3mes_chain::{Address, SecretKey};
use r3mes_client::{Error, NodeClient, Responder, ResponderReport};
use r3mes_ipfs::{AddOptions, AddSource};
use r3mes_node::config::{IpfsConfig, NodeConfig};
use r3mes_node::home::Home;
use r3mes_node::init::{InitOptions, init};
use r3mes_node::keyring::Keyring;
use r3mes_node::node::{NodeHandle, start};
use r3mes_node::proto::ShardAssignmentRequest;
use tokio_stream::StreamExt;

const BLOCK_MS: u64 = 100;

async fn node(dir: &std::path::Path) -> (Home, NodeHandle, NodeClient) {
    let home = Home::new(dir);
    let config = NodeConfig {
        grpc_addr: "127.0.0.1:0".parse().unwrap(),
        metrics_addr: "127.0.0.1:0".parse().unwrap(),
        block_time_ms: BLOCK_MS,
        ipfs: IpfsConfig::Embedded {
            serve_http: false,
            api_addr: "127.0.0.1:0".parse().unwrap(),
            gateway_addr: "127.0.0.1:0".parse().unwrap(),
        },
        ..NodeConfig::default()
    };
    let params = Params {
        pow_difficulty_bits: 4,
        round_length: 100_000,
        sample_rate_ppm: 1_000_000,
        ..Params::default_for_block_time(BLOCK_MS)
    };
    init(
        &home,
        &InitOptions {
            chain_id: "r3mes-client-test".into(),
            dev_accounts: 2,
            config: config.clone(),
            params: Some(params),
        },
    )
    .unwrap();
    let handle = start(&home, config).await.unwrap();
    let client = NodeClient::connect(&format!("http://{}", handle.grpc_addr()))
        .await
        .unwrap();
    (home, handle, client)
}

fn key(home: &Home, name: &str) -> SecretKey {
    Keyring::new(home.keyring()).secret(name).unwrap()
}

fn send(from: &SecretKey, to: &Address, amount: u64) -> tx_body::Msg {
    tx_body::Msg::Send(MsgSend {
        from: from.public_key().address().to_string(),
        to: to.to_string(),
        amount_low: amount,
        amount_high: 0,
    })
}

async fn balance(client: &NodeClient, who: &Address) -> u128 {
    client.account(who).await.unwrap().balance.parse().unwrap()
}

#[tokio::test]
async fn batches_go_in_sequence_and_failures_carry_the_keeper_s_code() {
    let dir = tempfile::tempdir().unwrap();
    let (home, handle, client) = node(dir.path()).await;
    let (alice, bob) = (key(&home, "dev1"), key(&home, "dev2"));
    let bob_address = bob.public_key().address();
    let before = balance(&client, &bob_address).await;

    // Three transfers in one batch: consecutive sequences, one answer.
    let msgs = vec![
        send(&alice, &bob_address, 1),
        send(&alice, &bob_address, 2),
        send(&alice, &bob_address, 3),
    ];
    let outcome = client.send_all(&alice, msgs).await.unwrap();
    assert!(outcome.height >= 1);
    assert!(matches!(
        outcome.events[0].kind,
        Some(event::Kind::Transfer(_))
    ));
    assert_eq!(balance(&client, &bob_address).await, before + 6);
    let alice_address = alice.public_key().address();
    assert_eq!(client.account(&alice_address).await.unwrap().sequence, 3);

    // More than the balance: refused by the keeper's dry run at admission,
    // with its reason; nothing moved.
    let all = balance(&client, &alice_address).await;
    let err = client
        .send(
            &alice,
            send(&alice, &bob_address, u64::try_from(all).unwrap() + 1),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Refused { .. }) && err.to_string().contains("insufficient funds"),
        "{err}"
    );
    assert_eq!(balance(&client, &bob_address).await, before + 6);

    // A failing transaction first in a batch takes the rest with it.
    let err = client
        .send_all(
            &alice,
            vec![
                send(&alice, &bob_address, u64::MAX),
                send(&alice, &bob_address, 5),
            ],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Refused { .. } | Error::Failed { .. }),
        "{err}"
    );
    assert_eq!(balance(&client, &bob_address).await, before + 6);

    // The key goes on from its committed sequence.
    client
        .send(&alice, send(&alice, &bob_address, 7))
        .await
        .unwrap();
    assert_eq!(balance(&client, &bob_address).await, before + 13);

    // An empty batch is an error, not a hang.
    assert!(client.send_all(&alice, Vec::new()).await.is_err());
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_remote_responder_answers_the_challenge_of_a_submitted_gradient() {
    let dir = tempfile::tempdir().unwrap();
    let (home, handle, client) = node(dir.path()).await;
    let miner = key(&home, "dev1");
    let me = miner.public_key().address();
    let content = handle.content_store();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    let cid = content
        .add(AddSource::Bytes(data.into()), &AddOptions::default())
        .await
        .unwrap()
        .cid;

    let mut events = client
        .subscribe(
            &["challenge_issued", "challenge_closed", "slashed"],
            Some(&me),
        )
        .await
        .unwrap();
    let responder = Responder::new(client.clone(), miner.clone(), Arc::clone(&content));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(async move {
        responder
            .run(Duration::from_millis(50), async {
                let _ = stop_rx.await;
            })
            .await
    });

    // Wait for round 1, then submit through the client.
    let assignment = loop {
        match client
            .query()
            .shard_assignment(ShardAssignmentRequest {
                address: me.to_string(),
                round_id: None,
            })
            .await
        {
            Ok(a) => break a.into_inner(),
            Err(_) => tokio::time::sleep(Duration::from_millis(BLOCK_MS)).await,
        }
    };
    let (round, shard) = (assignment.round_id, assignment.shard_id);
    let facts = GradientFacts {
        chunk: cid.to_string(),
        backbone: cid.to_string(),
        format: "protobuf".into(),
        byte_size: 300_000,
        element_count: 75_000,
    };
    let msg = one_chunk_submission(&me, &cid, round, shard, 4, &facts);
    let stored = client.submit_gradient(&miner, msg).await.unwrap();
    assert_eq!(stored.ipfs_hash, cid.to_string());

    let mut issued = false;
    let closed = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(Ok(e)) = events.next().await {
            match e.event.and_then(|e| e.kind) {
                Some(event::Kind::ChallengeIssued(_)) => issued = true,
                Some(event::Kind::ChallengeClosed(c)) => return c.status,
                Some(event::Kind::Slashed(s)) => panic!("slashed: {s:?}"),
                _ => {}
            }
        }
        panic!("the event stream ended");
    })
    .await
    .expect("the challenge closes");
    assert!(issued);
    assert_eq!(closed, ChallengeStatus::Resolved as i32);
    let _ = stop_tx.send(());
    let report: ResponderReport = running.await.unwrap();
    assert_eq!(report.answered, 1, "{report:?}");
    assert_eq!(report.failed, 0, "{report:?}");
    assert!(client.open_challenges(&me).await.unwrap().is_empty());
    handle.shutdown().await.unwrap();
}
