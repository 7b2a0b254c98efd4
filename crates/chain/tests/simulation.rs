//! The simulation: 100 miners over 60 blocks, 10 % of them delete
//! their data after submitting. Honest miners answer every challenge from
//! their stores in the block after it is issued; withholders cannot. Every
//! sampled withholder is slashed at its deadline, no honest miner ever is.

mod common;

use std::collections::BTreeMap;

use cid::Cid;
use common::{Chain, addr, content, import, test_params};
use r3mes_chain::proto::{ChallengeStatus, MsgRespondChallenge, event, tx_body};
use r3mes_chain::queries;
use r3mes_ipfs::MemoryBlockStore;
use r3mes_ipfs::proof::build_proof;

const VALIDATORS: u32 = 3;
const MINERS: u32 = 100;

fn is_withholder(miner: u32) -> bool {
    miner.is_multiple_of(10)
}

#[test]
fn withholders_are_slashed_honest_miners_never() {
    let params = r3mes_chain::params::Params {
        round_length: 30,
        retention_gradient_blocks: 1000,
        retention_trace_blocks: 1000,
        ..test_params()
    };
    let mut chain = Chain::new(VALIDATORS, MINERS, params);
    let miner_ids: Vec<u32> = (VALIDATORS + 1..=VALIDATORS + MINERS).collect();
    let initial: BTreeMap<u32, u128> = miner_ids
        .iter()
        .map(|&m| (m, chain.keeper.account(&addr(m)).unwrap().stake))
        .collect();
    // What each honest miner still holds: CID -> its blocks.
    let mut stores: BTreeMap<Vec<u8>, MemoryBlockStore> = BTreeMap::new();
    let mut issued = Vec::new();
    let mut pending_answers = Vec::new();
    chain.advance_to(2);
    let mut submitted = 0;
    for height in 3..=62u64 {
        let mut txs = std::mem::take(&mut pending_answers);
        if height <= 55 {
            for &m in &miner_ids {
                if (height + u64::from(m)) % 10 != 0 {
                    continue;
                }
                let (cid, store) = import(&content(height * 1000 + u64::from(m), 3000));
                let msg = chain.gradient_msg(m, &cid);
                txs.push(chain.sign(m, msg));
                submitted += 1;
                if !is_withholder(m) {
                    stores.insert(cid.to_bytes(), store);
                }
            }
        }
        let r = chain.block(txs);
        for t in &r.txs {
            t.as_ref().expect("every submission and answer is accepted");
        }
        for e in &r.end_events {
            if let Some(event::Kind::ChallengeIssued(c)) = &e.kind {
                issued.push(c.clone());
                let cid = Cid::try_from(c.ipfs_hash.as_str()).unwrap();
                let target = miner_ids
                    .iter()
                    .copied()
                    .find(|&m| addr(m).to_string() == c.target)
                    .unwrap();
                if let Some(store) = stores.get(&cid.to_bytes()) {
                    let blocks = build_proof(store, &cid, &c.draws).unwrap();
                    let msg = tx_body::Msg::RespondChallenge(MsgRespondChallenge {
                        responder: c.target.clone(),
                        challenge_id: c.challenge_id.clone(),
                        blocks,
                    });
                    pending_answers.push(chain.sign(target, msg));
                }
            }
        }
    }
    assert_eq!(submitted, 530);
    assert!(issued.len() >= 20, "only {} challenges", issued.len());
    let mut slashed_withholders = 0;
    for c in &issued {
        let record = queries::challenge(chain.keeper.state(), &c.challenge_id)
            .unwrap()
            .unwrap();
        let target = miner_ids
            .iter()
            .copied()
            .find(|&m| addr(m).to_string() == c.target)
            .unwrap();
        if is_withholder(target) {
            assert_eq!(record.status, ChallengeStatus::Failed as i32);
            assert!(record.slash_triggered);
            assert_eq!(record.closed_height, record.response_deadline);
            slashed_withholders += 1;
        } else {
            assert_eq!(record.status, ChallengeStatus::Resolved as i32);
            assert!(record.closed_height <= record.response_deadline);
        }
    }
    assert!(slashed_withholders > 0, "no withholder was sampled");
    for &m in &miner_ids {
        let stake = chain.keeper.account(&addr(m)).unwrap().stake;
        let sampled = issued.iter().any(|c| c.target == addr(m).to_string());
        if is_withholder(m) && sampled {
            assert!(stake < initial[&m], "withholder {m} kept its stake");
        } else {
            assert_eq!(stake, initial[&m], "miner {m} lost stake");
        }
    }
}
