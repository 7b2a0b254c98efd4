//! The availability responder against a real keeper and a real embedded
//! content store: every gradient is sampled (rate 100 %), the responder's
//! signed answer is delivered in the next block and resolves the challenge
//! with no slash; a miner whose content is gone gives no answer and is
//! slashed at the deadline; a dropped answer is sent again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Chain, addr, content, content_store, key, params};
use r3mes_chain::proto::{ChallengeStatus, event};
use r3mes_chain::queries;
use r3mes_ipfs::Cid;
use r3mes_worker::availability::{self, ResponseLimits};
use r3mes_worker::{Duties, DutiesConfig, ResponderConfig, Unanswered};

const MINER: u32 = 2;

/// Responder duties for `MINER` over `store`.
fn responder(store: &std::sync::Arc<dyn r3mes_ipfs::ContentStore>) -> Duties {
    Duties::new(DutiesConfig {
        responder: Some(ResponderConfig::new(key(MINER), store.clone())),
        ..DutiesConfig::new()
    })
    .unwrap()
}

/// Submits a 64 KiB gradient file of `MINER` (1 KiB leaves: a two-level
/// DAG) in block 3; block 4 samples and challenges it.
async fn submitted_and_challenged(
    chain: &mut Chain,
    store: &std::sync::Arc<dyn r3mes_ipfs::ContentStore>,
) -> (Cid, String) {
    chain.advance_to(2);
    let bytes = content(11, 64 << 10);
    let len = bytes.len() as u64;
    let cid = common::add(store, bytes, 1024).await;
    let tx = chain.sign(MINER, chain.gradient_msg(MINER, &cid, len, len / 4));
    let (results, _) = chain.block(&[tx]);
    results[0].as_ref().expect("gradient accepted");
    let (_, events) = chain.block(&[]);
    let issued: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(event::Kind::ChallengeIssued(c)) => Some(c.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(issued.len(), 1, "rate 100 % samples the gradient");
    assert_eq!(issued[0].target, addr(MINER).to_string());
    assert_eq!(chain.height(), 4);
    (cid, issued[0].challenge_id.clone())
}

fn status(chain: &Chain, id: &str) -> i32 {
    queries::challenge(chain.keeper.state(), id)
        .unwrap()
        .expect("challenge stored")
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answer_is_delivered_and_resolves_the_challenge_without_slash() {
    let mut chain = Chain::new(2, params(1_000_000));
    let (_repo, store) = content_store();
    let mut duties = responder(&store);
    chain.advance_to(2);
    assert!(duties.after_block(&chain.keeper, 2).await.txs.is_empty());
    let (cid, id) = submitted_and_challenged(&mut chain, &store).await;

    let report = duties.after_block(&chain.keeper, 4).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.txs.len(), 1);
    assert_eq!(report.answers.answered.len(), 1);
    let answer = &report.answers.answered[0];
    assert_eq!(answer.challenge_id, id);
    assert_eq!(answer.content, cid);
    assert_eq!(answer.response_deadline, 7);
    // The proof is a handful of blocks, far below the file's 64 leaves.
    assert!(answer.msg.blocks.len() >= 2 && answer.msg.blocks.len() <= 9);

    // Nothing new to answer while the answer is in flight.
    let again = duties.after_block(&chain.keeper, 4).await;
    assert!(again.txs.is_empty());

    let stake = chain.stake(MINER);
    let (results, _) = chain.block(&report.txs);
    results[0].as_ref().expect("the keeper accepts the answer");
    assert_eq!(status(&chain, &id), ChallengeStatus::Resolved as i32);
    let c = queries::challenge(chain.keeper.state(), &id)
        .unwrap()
        .unwrap();
    assert!(c.response_provided && !c.slash_triggered);
    assert!(
        queries::open_challenges(chain.keeper.state(), &addr(MINER), 10)
            .unwrap()
            .is_empty()
    );

    // Past the deadline: no slash, and the duty has nothing more to send.
    for h in 5..=9 {
        chain.advance_to(h);
        assert!(duties.after_block(&chain.keeper, h).await.txs.is_empty());
    }
    assert_eq!(chain.stake(MINER), stake);
    assert_eq!(status(&chain, &id), ChallengeStatus::Resolved as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_content_gets_no_answer_and_is_slashed_at_the_deadline() {
    let mut chain = Chain::new(2, params(1_000_000));
    let (repo, store) = content_store();
    let mut duties = responder(&store);
    let (cid, id) = submitted_and_challenged(&mut chain, &store).await;

    // The miner drops its data: unpin and collect garbage.
    store.pin_rm(&cid).await.unwrap();
    store.gc().await.unwrap();
    assert!(repo.block_get(&cid).is_err());

    let stake = chain.stake(MINER);
    let validator_balance = chain.balance(1);
    for h in 4..=6 {
        chain.advance_to(h);
        let report = duties.after_block(&chain.keeper, h).await;
        assert!(report.txs.is_empty(), "no answer without the content");
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        assert_eq!(report.answers.unanswered.len(), 1);
        let (unanswered_id, why) = &report.answers.unanswered[0];
        assert_eq!(unanswered_id, &id);
        assert!(
            matches!(why, Unanswered::ContentMissing { content, .. } if *content == cid),
            "{why}"
        );
        assert!(why.to_string().contains("missing"));
        assert_eq!(status(&chain, &id), ChallengeStatus::Pending as i32);
    }
    // The deadline block (7) fails the challenge and slashes 5 % of the stake.
    let events = chain.advance_to(7);
    assert!(
        events
            .iter()
            .any(|e| matches!(&e.kind, Some(event::Kind::Slashed(_))))
    );
    let c = queries::challenge(chain.keeper.state(), &id)
        .unwrap()
        .unwrap();
    assert_eq!(c.status, ChallengeStatus::Failed as i32);
    assert!(c.slash_triggered && !c.response_provided);
    let slashed = stake - chain.stake(MINER);
    assert_eq!(slashed, stake / 20);
    assert_eq!(chain.balance(1) - validator_balance, slashed / 2);
    // After the deadline nothing is open any more.
    assert!(
        duties
            .after_block(&chain.keeper, 7)
            .await
            .answers
            .unanswered
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_answer_is_signed_again_and_resolves_in_time() {
    let mut chain = Chain::new(2, params(1_000_000));
    let (_repo, store) = content_store();
    let mut duties = responder(&store);
    let (_cid, id) = submitted_and_challenged(&mut chain, &store).await;
    let sequence = chain.keeper.account(&addr(MINER)).unwrap().sequence;

    let first = duties.after_block(&chain.keeper, 4).await;
    assert_eq!(first.txs.len(), 1);
    assert_eq!(first.txs[0].as_proto().sequence, sequence);
    // The producer loses it: block 5 is empty; block 6 still waits for it.
    chain.advance_to(5);
    assert!(duties.after_block(&chain.keeper, 5).await.txs.is_empty());
    chain.advance_to(6);
    let second = duties.after_block(&chain.keeper, 6).await;
    assert_eq!(second.txs.len(), 1, "answered again after the retry window");
    assert_eq!(second.txs[0].as_proto().sequence, sequence);
    let (results, _) = chain.block(&second.txs);
    results[0].as_ref().expect("accepted at the deadline block");
    assert_eq!(chain.height(), 7);
    assert_eq!(status(&chain, &id), ChallengeStatus::Resolved as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn library_functions_answer_from_blocks_and_refuse_oversized_answers() {
    let mut chain = Chain::new(2, params(1_000_000));
    let (repo, store) = content_store();
    let (cid, id) = submitted_and_challenged(&mut chain, &store).await;
    let limits = ResponseLimits::of_keeper(&chain.keeper);
    assert!(limits.max_body_bytes > 4_000_000 && limits.max_body_bytes < 4 << 20);

    // Synchronous, straight from the repo's block store: the same answer as
    // through the content store.
    let sync = availability::answers_from_blocks(
        chain.keeper.state(),
        &addr(MINER),
        repo.store(),
        &limits,
    )
    .unwrap();
    let through_store = availability::answers(
        chain.keeper.state(),
        &addr(MINER),
        store.clone(),
        &limits,
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(sync, through_store);
    assert_eq!(sync.answered[0].challenge_id, id);

    // Signed with an explicit key and sequence, the keeper takes it.
    let msgs = sync
        .answered
        .iter()
        .map(|a| r3mes_chain::proto::tx_body::Msg::RespondChallenge(a.msg.clone()));
    let seq = chain.keeper.account(&addr(MINER)).unwrap().sequence;
    let time = chain.keeper.block_time_ms(5).unwrap();
    let txs = r3mes_worker::signer::sign_all(msgs, &key(MINER), seq, common::CHAIN, time).unwrap();

    // Another address has nothing to answer.
    let other =
        availability::answers_from_blocks(chain.keeper.state(), &addr(3), repo.store(), &limits)
            .unwrap();
    assert!(other.answered.is_empty() && other.unanswered.is_empty());

    // A limit below the proof's size: reported, not sent.
    let tight = ResponseLimits {
        max_body_bytes: 1000,
        ..limits
    };
    let refused =
        availability::answers_from_blocks(chain.keeper.state(), &addr(MINER), repo.store(), &tight)
            .unwrap();
    assert!(refused.answered.is_empty());
    assert!(
        matches!(&refused.unanswered[0].1, Unanswered::TooLarge { content, .. } if *content == cid)
    );
    let few_blocks = ResponseLimits {
        proof: r3mes_ipfs::proof::ProofLimits {
            max_blocks: 1,
            ..limits.proof
        },
        ..limits
    };
    let refused = availability::answers_from_blocks(
        chain.keeper.state(),
        &addr(MINER),
        repo.store(),
        &few_blocks,
    )
    .unwrap();
    assert!(matches!(
        &refused.unanswered[0].1,
        Unanswered::TooLarge { .. }
    ));

    let (results, _) = chain.block(&txs);
    results[0].as_ref().expect("accepted");
    assert_eq!(status(&chain, &id), ChallengeStatus::Resolved as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_local_block_is_a_store_error_not_an_answer() {
    let mut chain = Chain::new(2, params(1_000_000));
    let blocks = r3mes_ipfs::MemoryBlockStore::new();
    let repo = r3mes_ipfs::Repo::with_store(blocks.clone());
    let store: std::sync::Arc<dyn r3mes_ipfs::ContentStore> =
        std::sync::Arc::new(r3mes_ipfs::EmbeddedStore::new(repo));
    let (cid, id) = submitted_and_challenged(&mut chain, &store).await;
    // Bit rot in the root block: every draw's path starts there.
    blocks.corrupt(&cid, b"not the root any more".to_vec());
    let mut duties = responder(&store);
    let report = duties.after_block(&chain.keeper, 4).await;
    assert!(report.txs.is_empty());
    assert_eq!(report.answers.unanswered[0].0, id);
    let why = &report.answers.unanswered[0].1;
    assert!(matches!(why, Unanswered::Store { .. }), "{why:?}");
}
