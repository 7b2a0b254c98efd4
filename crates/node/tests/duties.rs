//! The node's background duties: a node started with `respond_as` answers
//! the availability challenge its miner's gradient draws, from its own
//! content store, through its own mempool, and the challenge resolves with
//! no slash.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{TestNode, content, init_home, test_config, test_params};
use r3mes_chain::params::Params;
use r3mes_chain::proto::{ChallengeStatus, event, tx_body};
use r3mes_node::proto::SubscribeEventsRequest;
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
