//! The duties as the node's producer loop runs them: a validator node and a
//! miner node call `after_block` after every committed block and put what
//! comes back into the next block. Submit, sample, verify by range reads,
//! challenge, answer, resolve; and one key holding both roles signs
//! consecutive sequences the keeper accepts in one block.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::{CHUNK, Chain, STAKE, addr, content_store, key, params};
use r3mes_chain::proto::ChallengeStatus;
use r3mes_chain::{Keeper, SignedTx, queries};
use r3mes_ipfs::ContentStore;
use r3mes_tensor::{Format, Limits};
use r3mes_verify::budget::synthetic_gradient;
use r3mes_verify::{
    ChunkRef, EntryOptions, FlatOrder, GRADIENT_CHUNK_SIZE, Placement, Vault, Verifier,
    VerifierConfig, VerifyCache, entry_from_file,
};
use r3mes_worker::{Duties, DutiesConfig, Error, ResponderConfig, VerifierDutyConfig};

const SIZE: u64 = 256 << 10;

/// The gradient file and a vault entry for it.
fn gradient_and_vault() -> (Vec<u8>, Vault) {
    let file =
        r3mes_tensor::encode(&synthetic_gradient(SIZE, 3).unwrap(), Format::Protobuf).unwrap();
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
    let entry = entry_from_file(&file, &options, &Limits::default()).unwrap();
    (file, Vault::new(vec![entry]))
}

fn verifier_role(i: u32, vault: Vault, store: &Arc<dyn ContentStore>) -> VerifierDutyConfig {
    VerifierDutyConfig {
        key: key(i),
        vault,
        verifier: Verifier::new(
            store.clone(),
            VerifyCache::default(),
            VerifierConfig::default(),
        ),
    }
}

/// Submits `file` as miner `i`'s gradient in the next block.
async fn submit(chain: &mut Chain, store: &Arc<dyn ContentStore>, i: u32, file: Vec<u8>) {
    let len = file.len() as u64;
    let cid = common::add(store, file, GRADIENT_CHUNK_SIZE).await;
    let tx = chain.sign(i, chain.gradient_msg(i, &cid, len, len / 4));
    let (results, _) = chain.block(&[tx]);
    results[0].as_ref().expect("gradient accepted");
}

/// Every result of a block must be accepted.
fn deliver(chain: &mut Chain, txs: &[SignedTx]) {
    let (results, _) = chain.block(txs);
    for r in results {
        r.expect("the keeper accepts every duty transaction");
    }
}

fn assert_send<T: Send>(_: &T) {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validator_and_miner_nodes_run_the_flow_block_by_block() {
    let mut chain = Chain::new(1, params(1_000_000));
    let (_repo, store) = content_store();
    let (file, vault) = gradient_and_vault();
    let mut validator = Duties::new(DutiesConfig {
        verifier: Some(verifier_role(1, vault, &store)),
        ..DutiesConfig::new()
    })
    .unwrap();
    let mut miner = Duties::new(DutiesConfig {
        responder: Some(ResponderConfig::new(key(2), store.clone())),
        ..DutiesConfig::new()
    })
    .unwrap();
    assert_eq!(validator.verifier_address(), Some(addr(1)));
    assert_eq!(miner.responder_address(), Some(addr(2)));

    chain.advance_to(2);
    submit(&mut chain, &store, 2, file).await;
    // The producer loop: after each block, both nodes' duties feed the next.
    let mut seen_verification = false;
    let mut seen_answer = false;
    while chain.height() < 8 {
        let h = chain.height();
        let future = validator.after_block(&chain.keeper, h);
        assert_send(&future);
        let v = future.await;
        let m = miner.after_block(&chain.keeper, h).await;
        assert!(v.errors.is_empty() && m.errors.is_empty());
        seen_verification |= !v.txs.is_empty();
        seen_answer |= !m.txs.is_empty();
        let txs: Vec<_> = v.txs.into_iter().chain(m.txs).collect();
        deliver(&mut chain, &txs);
    }
    assert!(seen_verification && seen_answer);
    let cid = queries::gradients_in_round(chain.keeper.state(), 1, None, 10).unwrap()[0]
        .ipfs_hash
        .clone();
    let cid = r3mes_ipfs::Cid::try_from(cid.as_slice())
        .unwrap()
        .to_string();
    let results = queries::verifications(chain.keeper.state(), &cid, 10).unwrap();
    assert_eq!(results.len(), 1);
    assert!(results[0].passed && results[0].cosine_ppm >= 999_000);
    let challenges = closed_challenges_of(&chain.keeper, 2);
    assert_eq!(challenges, vec![ChallengeStatus::Resolved as i32]);
    assert_eq!(chain.stake(2), STAKE);
}

/// Statuses of every stored challenge targeting account `target` (a scan
/// of the keeper's challenge table).
fn closed_challenges_of(keeper: &Keeper, target: u32) -> Vec<i32> {
    let table = [r3mes_chain::tables::CHALLENGE];
    keeper
        .state()
        .scan_prefix(&table, 100)
        .unwrap()
        .into_iter()
        .map(|(key, _)| {
            let id = r3mes_chain::tables::hex_lower(&key[1..]);
            queries::challenge(keeper.state(), &id).unwrap().unwrap()
        })
        .filter(|c| c.target == addr(target).as_bytes().to_vec())
        .map(|c| c.status)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_with_both_roles_signs_consecutive_sequences() {
    // The validator also mines: its own gradient is challenged and verified.
    let mut chain = Chain::new(0, params(1_000_000));
    let (_repo, store) = content_store();
    let (file, vault) = gradient_and_vault();
    let mut duties = Duties::new(DutiesConfig {
        responder: Some(ResponderConfig::new(key(1), store.clone())),
        verifier: Some(verifier_role(1, vault, &store)),
        ..DutiesConfig::new()
    })
    .unwrap();
    chain.advance_to(2);
    submit(&mut chain, &store, 1, file).await;
    // Block 4 samples it; the duties' first call looks back and finds block 3's gradient.
    chain.advance_to(4);
    let report = duties.after_block(&chain.keeper, 4).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.answers.answered.len(), 1);
    assert_eq!(report.verifications.verified.len(), 1);
    let seq = chain.keeper.account(&addr(1)).unwrap().sequence;
    let seqs: Vec<u64> = report.txs.iter().map(|t| t.as_proto().sequence).collect();
    assert_eq!(seqs, vec![seq, seq + 1]);
    deliver(&mut chain, &report.txs);
    assert_eq!(
        closed_challenges_of(&chain.keeper, 1),
        vec![ChallengeStatus::Resolved as i32]
    );
    assert!(duties.after_block(&chain.keeper, 5).await.txs.is_empty());
}

#[test]
fn bad_configurations_are_refused() {
    let none = DutiesConfig {
        retry_after_blocks: 0,
        ..DutiesConfig::new()
    };
    assert!(matches!(Duties::new(none), Err(Error::Config(_))));
    let (_repo, store) = content_store();
    let mut broken = gradient_and_vault().1;
    broken.entries[0].threshold_ppm = 2_000_000;
    let err = Duties::new(DutiesConfig {
        verifier: Some(verifier_role(1, broken, &store)),
        ..DutiesConfig::new()
    })
    .err()
    .expect("a vault breaking its rules is refused");
    assert!(err.to_string().contains("threshold_ppm"), "{err}");
}

#[test]
fn a_vault_is_replaced_only_by_a_valid_one_and_only_with_the_duty() {
    let (_repo, store) = content_store();
    let (_, vault) = gradient_and_vault();
    let mut without = Duties::new(DutiesConfig {
        responder: Some(ResponderConfig::new(key(2), store.clone())),
        ..DutiesConfig::new()
    })
    .unwrap();
    let err = without.replace_vault(vault.clone()).unwrap_err();
    assert!(err.to_string().contains("not running"), "{err}");
    let mut duties = Duties::new(DutiesConfig {
        verifier: Some(verifier_role(1, vault.clone(), &store)),
        ..DutiesConfig::new()
    })
    .unwrap();
    let mut broken = vault.clone();
    broken.entries[0].threshold_ppm = 2_000_000;
    let err = duties.replace_vault(broken).unwrap_err();
    assert!(err.to_string().contains("threshold_ppm"), "{err}");
    let mut renewed = vault;
    renewed.entries[0].id = "chunk-1-v2".into();
    duties.replace_vault(renewed).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_vault_verifies_gradients_included_before_it_arrived() {
    let mut chain = Chain::new(1, params(0));
    let (_repo, store) = content_store();
    let (file, vault) = gradient_and_vault();
    let mut other_chunk = vault.clone();
    other_chunk.entries[0].chunk.data_hash =
        r3mes_ipfs::cids::raw_cid(r3mes_ipfs::cids::sha256_multihash(b"another chunk")).to_string();
    let mut duties = Duties::new(DutiesConfig {
        verifier: Some(verifier_role(1, other_chunk, &store)),
        ..DutiesConfig::new()
    })
    .unwrap();
    chain.advance_to(2);
    submit(&mut chain, &store, 2, file).await;
    let h = chain.height();
    assert!(duties.after_block(&chain.keeper, h).await.txs.is_empty());
    chain.advance_to(h + 2);
    assert!(
        duties
            .after_block(&chain.keeper, h + 2)
            .await
            .txs
            .is_empty()
    );
    // The entry for the gradient's chunk arrives later: the gradient is
    // verified on the next pass, once.
    duties.replace_vault(vault).unwrap();
    let report = duties.after_block(&chain.keeper, h + 2).await;
    assert_eq!(report.txs.len(), 1, "{:?}", report.errors);
    assert!(report.verifications.verified[0].report.passed);
    deliver(&mut chain, &report.txs);
    let again = duties.after_block(&chain.keeper, h + 3).await;
    assert!(again.txs.is_empty());
}
