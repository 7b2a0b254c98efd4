//! End-to-end keeper flows: a round starts, a miner submits, the next block
//! samples it, the miner answers with a Merkle proof (or does not and is
//! slashed), retention GC removes the record and asks to unpin it.

mod common;

use common::{Chain, addr, test_params};
use r3mes_chain::challenges::get_challenge;
use r3mes_chain::proto::{ChallengeStatus, MsgRespondChallenge, event, tx_body};
use r3mes_chain::queries;
use r3mes_chain::tables::{hex_lower, parse_hex};
use r3mes_ipfs::proof::build_proof;

fn all_sampled() -> r3mes_chain::params::Params {
    r3mes_chain::params::Params {
        sample_rate_ppm: 1_000_000,
        ..test_params()
    }
}

#[test]
fn submit_sample_answer_resolve() {
    let mut chain = Chain::new(1, 2, all_sampled());
    chain.advance_to(2);
    let (cid, store) = chain.submit_gradient(2, 1);
    let stored = queries::gradient(chain.keeper.state(), &cid.to_string())
        .unwrap()
        .unwrap();
    assert_eq!(stored.block_height, 3);
    assert_eq!(stored.expiry_height, 33);
    // Block 4 samples block 3's gradient.
    let r = chain.block(Vec::new());
    let issued: Vec<_> = r
        .end_events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(event::Kind::ChallengeIssued(c)) => Some(c.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(issued.len(), 1);
    assert_eq!(issued[0].target, addr(2).to_string());
    assert_eq!(issued[0].response_deadline, 7);
    let open = queries::open_challenges(chain.keeper.state(), &addr(2), 10).unwrap();
    assert_eq!(open.len(), 1);
    let id = issued[0].challenge_id.clone();
    let blocks = build_proof(&store, &cid, &issued[0].draws).unwrap();
    let tx = chain.sign(
        2,
        tx_body::Msg::RespondChallenge(MsgRespondChallenge {
            responder: addr(2).to_string(),
            challenge_id: id.clone(),
            blocks,
        }),
    );
    chain.one(tx).expect("valid answer");
    let c = get_challenge(chain.keeper.state(), &parse_hex::<32>("id", &id).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(c.status, ChallengeStatus::Resolved as i32);
    assert!(
        queries::open_challenges(chain.keeper.state(), &addr(2), 10)
            .unwrap()
            .is_empty()
    );
    // Nothing is slashed at the deadline.
    let stake = chain.keeper.account(&addr(2)).unwrap().stake;
    chain.advance_to(10);
    assert_eq!(chain.keeper.account(&addr(2)).unwrap().stake, stake);
    // GC at height 33 removes the record and asks to unpin it.
    let events = chain.advance_to(33);
    assert!(events.iter().any(|e| matches!(&e.kind,
        Some(event::Kind::Unpin(u)) if u.cid == cid.to_string())));
    assert!(
        queries::gradient(chain.keeper.state(), &cid.to_string())
            .unwrap()
            .is_none()
    );
    let _ = hex_lower(&[]);
}

#[test]
fn silence_is_slashed_at_the_deadline() {
    let mut chain = Chain::new(1, 2, all_sampled());
    chain.advance_to(2);
    chain.submit_gradient(3, 9);
    chain.block(Vec::new());
    let before = chain.keeper.account(&addr(3)).unwrap();
    let validator_before = chain.keeper.account(&addr(1)).unwrap();
    let supply_before = queries::supply(chain.keeper.state()).unwrap();
    chain.advance_to(6);
    assert_eq!(chain.keeper.account(&addr(3)).unwrap().stake, before.stake);
    let r = chain.block(Vec::new());
    assert!(
        r.end_events
            .iter()
            .any(|e| matches!(&e.kind, Some(event::Kind::Slashed(_))))
    );
    let after = chain.keeper.account(&addr(3)).unwrap();
    let slashed = before.stake - after.stake;
    assert_eq!(slashed, before.stake / 20);
    let reward = chain.keeper.account(&addr(1)).unwrap().balance - validator_before.balance;
    assert_eq!(reward, slashed / 2);
    assert_eq!(
        queries::supply(chain.keeper.state()).unwrap(),
        supply_before - (slashed - reward)
    );
}
