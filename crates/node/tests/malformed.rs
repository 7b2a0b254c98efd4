//! Every malformed request gets a gRPC status with a clear message and
//! changes nothing: the signer's sequence, its gradients and its events are
//! exactly as if the request had never been sent.

mod common;

use std::time::Duration;

use common::{TestNode, content, encode, init_home, test_params};
use prost::Message;
use r3mes_chain::gradients::{leading_zero_bits, pow_digest};
use r3mes_chain::proto::{MsgSend, Tx, event, tx_body};
use r3mes_chain::{SecretKey, SignedTx};
use r3mes_node::proto::{
    AccountRequest, BroadcastTxRequest, CidRequest, GradientsByMinerRequest, SubmitGradientRequest,
    SubscribeEventsRequest,
};
use tokio_stream::StreamExt;
use tonic::Code;

/// Asserts `result` failed with `code` and a message containing `text`.
fn refused<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code, text: &str) {
    let status = result.expect_err("request must be refused");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().contains(text),
        "message {:?} lacks {text:?}",
        status.message()
    );
}

#[tokio::test]
async fn malformed_transactions_are_refused_with_clear_statuses_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let home = init_home(dir.path(), test_params(100_000));
    let mut node = TestNode::start(&home).await;
    let key = node.key("dev1");
    let other = node.key("dev2");
    let miner = key.public_key().address();

    // One valid submission first, so a replay has something to replay.
    let cid = node.add_content(content(7, 20_000)).await;
    let good = node.gradient_msg(&key, &cid).await;
    let first = node
        .sign(&key, tx_body::Msg::SubmitGradient(good.clone()), 0)
        .await;
    node.submit_gradient(&first).await.unwrap();

    let mut events = node
        .query
        .subscribe_events(SubscribeEventsRequest {
            types: Vec::new(),
            address: miner.to_string(),
        })
        .await
        .unwrap()
        .into_inner();

    let other_cid = node.add_content(content(8, 20_000)).await;
    let fresh = node.gradient_msg(&key, &other_cid).await;
    let gradient = |m: r3mes_chain::proto::MsgSubmitGradient| tx_body::Msg::SubmitGradient(m);

    // Bytes that are no transaction at all.
    refused(
        node.submit_bytes(vec![0xff; 16]).await,
        Code::InvalidArgument,
        "does not decode",
    );
    refused(
        node.submit_bytes(Vec::new()).await,
        Code::InvalidArgument,
        "empty",
    );
    refused(
        node.msg
            .submit_gradient(SubmitGradientRequest { transaction: None })
            .await,
        Code::InvalidArgument,
        "no transaction",
    );

    // An unknown message type: TxBody field 99, unknown to this node.
    let signed = node.sign(&key, gradient(fresh.clone()), 1).await;
    let mut unknown = Tx {
        body: None,
        ..signed.as_proto().clone()
    }
    .encode_to_vec();
    unknown.extend_from_slice(&[0x0a, 0x03, 0x9a, 0x06, 0x00]);
    refused(
        node.submit_bytes(unknown).await,
        Code::InvalidArgument,
        "unknown message type",
    );

    // Not the canonical encoding: the sequence field repeated.
    let mut noncanonical = signed.encode();
    noncanonical.extend_from_slice(&[0x18, 0x01]);
    refused(
        node.submit_bytes(noncanonical).await,
        Code::InvalidArgument,
        "canonical",
    );

    // A bad CID.
    let mut bad_cid = fresh.clone();
    bad_cid.ipfs_hash = "QmNotACid".into();
    let tx = node.sign(&key, gradient(bad_cid), 1).await;
    refused(
        node.submit_gradient(&tx).await,
        Code::InvalidArgument,
        "invalid CID",
    );

    // A chunk that is not 2048 tokens.
    let mut short_chunk = fresh.clone();
    if let Some(meta) = short_chunk.metadata.as_mut() {
        meta.chunks[0].token_count = 1000;
    }
    let tx = node.sign(&key, gradient(short_chunk), 1).await;
    refused(
        node.submit_gradient(&tx).await,
        Code::InvalidArgument,
        "chunk must be exactly 2048 tokens",
    );

    // A bad signature.
    let mut forged = signed.as_proto().clone();
    forged.signature[5] ^= 0x40;
    refused(
        node.submit_bytes(encode(&forged)).await,
        Code::InvalidArgument,
        "signature",
    );

    // Signed by one key for another account.
    let mut theirs = fresh.clone();
    theirs.miner = other.public_key().address().to_string();
    let tx = node.sign(&key, gradient(theirs), 1).await;
    refused(
        node.submit_gradient(&tx).await,
        Code::InvalidArgument,
        "signer",
    );

    // Another chain; a timestamp far from the block time.
    let status = node.status().await;
    let body = r3mes_chain::proto::TxBody {
        msg: Some(gradient(fresh.clone())),
    };
    let tx = SignedTx::sign(
        body.clone(),
        &key,
        1,
        "other-chain",
        status.next_block_time_ms,
    )
    .unwrap();
    refused(
        node.submit_gradient(&tx).await,
        Code::InvalidArgument,
        "chain id",
    );
    let tx = SignedTx::sign(
        body,
        &key,
        1,
        &status.chain_id,
        status.next_block_time_ms - 3_600_000,
    )
    .unwrap();
    refused(
        node.submit_gradient(&tx).await,
        Code::FailedPrecondition,
        "timestamp",
    );

    // Replay of the committed transaction; a sequence that skips ahead.
    refused(
        node.submit_gradient(&first).await,
        Code::AlreadyExists,
        "replay",
    );
    let tx = node.sign(&key, gradient(fresh.clone()), 5).await;
    refused(
        node.submit_gradient(&tx).await,
        Code::FailedPrecondition,
        "skips ahead",
    );

    // Oversized: past the per-message limit, and past the transport's.
    let mut huge = fresh.clone();
    if let Some(meta) = huge.metadata.as_mut() {
        meta.gpu_architecture = "x".repeat(70_000);
    }
    let tx = node.sign(&key, gradient(huge), 1).await;
    refused(
        node.submit_gradient(&tx).await,
        Code::InvalidArgument,
        "limit",
    );
    let status = node.submit_bytes(vec![0u8; 9 << 20]).await.unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(status.message().contains("too large"), "{status:?}");

    // Checked against committed state before waiting for a block: too
    // little proof of work.
    let mut weak = fresh.clone();
    let round = weak.metadata.as_ref().unwrap().round_id;
    weak.pow_nonce = (0..)
        .find(|&n| leading_zero_bits(&pow_digest(&miner, &other_cid, round, n)) < 4)
        .unwrap();
    let tx = node.sign(&key, gradient(weak), 1).await;
    refused(
        node.submit_gradient(&tx).await,
        Code::FailedPrecondition,
        "proof of work",
    );

    // The same gradient again (already stored).
    let again = node.sign(&key, gradient(good), 1).await;
    refused(
        node.submit_gradient(&again).await,
        Code::AlreadyExists,
        "already exists",
    );

    // A message other than a gradient through SubmitGradient.
    let send = send_msg(&key, &other, 1);
    let tx = node.sign(&key, send, 1).await;
    refused(
        node.submit_gradient(&tx).await,
        Code::InvalidArgument,
        "BroadcastTx",
    );

    // Nothing changed: sequence, gradients, mempool, events.
    assert_eq!(node.sequence(&miner).await, 1);
    let mine = node
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
    assert_eq!(mine.len(), 1);
    refused(
        node.query
            .gradient(CidRequest {
                cid: other_cid.to_string(),
            })
            .await,
        Code::NotFound,
        "not found",
    );
    assert_eq!(node.status().await.mempool_size, 0);
    // The first transaction event naming the miner after all that is the
    // next valid transaction's.
    let tx = node.sign(&key, send_msg(&key, &other, 1), 1).await;
    let r = node
        .msg
        .broadcast_tx(BroadcastTxRequest {
            tx_bytes: tx.encode(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.code, 0, "{}", r.log);
    // Block events (a challenge sampled for the first gradient, say) carry
    // no transaction hash and may come first; only transaction events count.
    let seen = loop {
        let seen = tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if !seen.tx_hash.is_empty() {
            break seen;
        }
    };
    assert_eq!(seen.tx_hash, r.tx_hash);
    assert!(matches!(
        seen.event.and_then(|e| e.kind),
        Some(event::Kind::Transfer(_))
    ));
    node.handle.shutdown().await.unwrap();
}

fn send_msg(from: &SecretKey, to: &SecretKey, amount: u64) -> tx_body::Msg {
    tx_body::Msg::Send(MsgSend {
        from: from.public_key().address().to_string(),
        to: to.public_key().address().to_string(),
        amount_low: amount,
        amount_high: 0,
    })
}

#[tokio::test]
async fn malformed_queries_are_refused_with_clear_statuses() {
    let dir = tempfile::tempdir().unwrap();
    let home = init_home(dir.path(), test_params(100_000));
    let mut node = TestNode::start(&home).await;
    refused(
        node.query
            .gradient(CidRequest {
                cid: "not-a-cid".into(),
            })
            .await,
        Code::InvalidArgument,
        "invalid CID",
    );
    refused(
        node.query
            .gradient(CidRequest {
                cid: "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG".into(),
            })
            .await,
        Code::NotFound,
        "gradient QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG not found",
    );
    refused(
        node.query
            .account(AccountRequest {
                address: "cosmos1xyz".into(),
            })
            .await,
        Code::InvalidArgument,
        "address",
    );
    refused(
        node.query
            .challenge(r3mes_node::proto::ChallengeRequest {
                challenge_id: "zz".into(),
            })
            .await,
        Code::InvalidArgument,
        "challenge_id",
    );
    refused(
        node.query
            .subscribe_events(SubscribeEventsRequest {
                types: vec!["gradient_sorted".into()],
                address: String::new(),
            })
            .await,
        Code::InvalidArgument,
        "unknown event type \"gradient_sorted\"",
    );
    node.handle.shutdown().await.unwrap();
}
