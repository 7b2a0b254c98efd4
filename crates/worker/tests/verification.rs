//! The verification duty against a real keeper, a real embedded content
//! store and the real verification engine: an honest gradient (the
//! reference as another run would compute it) passes and is recorded; a
//! tampered one fails, is recorded, and the keeper slashes its miner; a
//! gradient the validator cannot read gets no result at all.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::{CHUNK, Chain, STAKE, addr, content_store, key, params};
use r3mes_chain::proto::event;
use r3mes_chain::queries;
use r3mes_ipfs::{Cid, ContentStore};
use r3mes_tensor::{Format, Gradient, Limits, Tensor};
use r3mes_verify::budget::synthetic_gradient;
use r3mes_verify::{
    ChunkRef, EntryOptions, FlatOrder, GRADIENT_CHUNK_SIZE, Placement, Vault, Verifier,
    VerifierConfig, VerifyCache, entry_from_file,
};
use r3mes_worker::verification;
use r3mes_worker::{Duties, DutiesConfig, Error, VerifierDutyConfig};

const VALIDATOR: u32 = 1;
const HONEST: u32 = 2;
const CHEAT: u32 = 3;
const ABSENT: u32 = 4;
/// Gradient file size: 256 KiB of f32 (65,536 elements, 16 leaves of 16 KiB).
const SIZE: u64 = 256 << 10;

/// The reference with every value moved by up to `noise` of its size
/// (another GPU, another summation order).
fn perturbed(g: &Gradient, noise: f32) -> Gradient {
    let tensors = g
        .tensors
        .iter()
        .enumerate()
        .map(|(t, tensor)| {
            let values: Vec<f32> = tensor
                .to_f32()
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let wobble = (((i * 7919 + t * 104_729) % 2001) as f32 - 1000.0) / 1000.0;
                    v * (1.0 + noise * wobble)
                })
                .collect();
            Tensor::from_f32(tensor.name.clone(), &values)
        })
        .collect();
    Gradient::new(g.format, g.metadata.clone(), tensors).unwrap()
}

/// A vault with one entry for [`CHUNK`], computed from `reference`.
fn vault(reference: &Gradient) -> Vault {
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
        seed: Some([9; 32]),
    };
    let file = r3mes_tensor::encode(reference, Format::Protobuf).unwrap();
    let vault = Vault::new(vec![
        entry_from_file(&file, &options, &Limits::default()).unwrap(),
    ]);
    vault.validate().unwrap();
    vault
}

/// Adds `g` as a gradient file and submits it as miner `i`'s; returns the CID.
async fn submit(chain: &mut Chain, store: &Arc<dyn ContentStore>, i: u32, g: &Gradient) -> Cid {
    let file = r3mes_tensor::encode(g, Format::Protobuf).unwrap();
    let len = file.len() as u64;
    let cid = common::add(store, file, GRADIENT_CHUNK_SIZE).await;
    let tx = chain.sign(i, chain.gradient_msg(i, &cid, len, g.elements()));
    let (results, _) = chain.block(&[tx]);
    results[0].as_ref().expect("gradient accepted");
    cid
}

fn verifier(store: &Arc<dyn ContentStore>) -> Verifier {
    Verifier::new(
        store.clone(),
        VerifyCache::default(),
        VerifierConfig::default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honest_gradient_passes_and_tampered_one_fails_with_the_keepers_consequences() {
    // No availability sampling: this test is about verification only.
    let mut chain = Chain::new(3, params(0));
    let (_repo, store) = content_store();
    let reference = synthetic_gradient(SIZE, 1).unwrap();
    let vault = vault(&reference);
    let entry = vault.entries[0].clone();
    let mut duties = Duties::new(DutiesConfig {
        verifier: Some(VerifierDutyConfig {
            key: key(VALIDATOR),
            vault,
            verifier: verifier(&store),
        }),
        ..DutiesConfig::new()
    })
    .unwrap();
    chain.advance_to(2);
    assert!(duties.after_block(&chain.keeper, 2).await.txs.is_empty());

    let honest = submit(&mut chain, &store, HONEST, &perturbed(&reference, 0.01)).await;
    let honest_report = duties.after_block(&chain.keeper, 3).await;
    // Another chunk's gradient passed off as this chunk's.
    let cheat = submit(
        &mut chain,
        &store,
        CHEAT,
        &synthetic_gradient(SIZE, 77).unwrap(),
    )
    .await;
    let cheat_report = duties.after_block(&chain.keeper, 4).await;
    for r in [&honest_report, &cheat_report] {
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!(r.txs.len(), 1);
        assert!(r.verifications.skipped.is_empty());
    }

    let passed = &honest_report.verifications.verified[0];
    assert_eq!(passed.gradient, honest);
    assert!(passed.report.passed, "{:#?}", passed.report);
    assert!(passed.msg.passed && passed.msg.cosine_ppm >= 990_000);
    assert_eq!(passed.msg.vault_commitment, entry.commitment().to_vec());
    assert_eq!(passed.msg.validator, addr(VALIDATOR).to_string());
    // Range reads: a fraction of the file.
    assert!(passed.report.bytes_fetched < passed.report.file_size);

    let failed = &cheat_report.verifications.verified[0];
    assert_eq!(failed.gradient, cheat);
    assert!(!failed.msg.passed, "{:#?}", failed.report);
    assert!(failed.msg.cosine_ppm < 950_000);

    let validator_balance = chain.balance(VALIDATOR);
    let txs: Vec<_> = honest_report
        .txs
        .iter()
        .chain(&cheat_report.txs)
        .cloned()
        .collect();
    let (results, _) = chain.block(&txs);
    let mut slashed_events = 0;
    for r in &results {
        let outcome = r.as_ref().expect("the keeper records the result");
        slashed_events += outcome
            .events
            .iter()
            .filter(|e| matches!(&e.kind, Some(event::Kind::Slashed(_))))
            .count();
    }
    assert_eq!(slashed_events, 1, "only the failing result slashes");

    let recorded = |cid: &Cid| {
        let mut v = queries::verifications(chain.keeper.state(), &cid.to_string(), 10).unwrap();
        assert_eq!(v.len(), 1);
        v.remove(0)
    };
    let ok = recorded(&honest);
    assert!(ok.passed);
    assert_eq!(ok.cosine_ppm, passed.msg.cosine_ppm);
    assert_eq!(ok.vault_commitment, entry.commitment().to_vec());
    assert_eq!(ok.validator, addr(VALIDATOR).as_bytes().to_vec());
    assert_eq!(ok.slash_amount, "0");
    let bad = recorded(&cheat);
    assert!(!bad.passed);
    // 2 % of the cheat's stake, half of it to the validator.
    let slash = STAKE / 50;
    assert_eq!(bad.slash_amount, slash.to_string());
    assert_eq!(chain.stake(CHEAT), STAKE - slash);
    assert_eq!(chain.stake(HONEST), STAKE);
    assert_eq!(chain.balance(VALIDATOR) - validator_balance, slash / 2);

    // Recorded results are not submitted again, even when rescanning.
    let later = duties.after_block(&chain.keeper, 5).await;
    assert!(later.txs.is_empty() && later.errors.is_empty());
    let again = verification::candidates(
        chain.keeper.state(),
        &addr(VALIDATOR),
        &Vault::new(vec![entry]),
        1..=5,
    )
    .unwrap();
    assert!(again.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_gradients_and_non_validators_produce_no_result() {
    let mut chain = Chain::new(3, params(0));
    let (_repo, miner_store) = content_store();
    // The validator's store does not have the miner's content.
    let (_validator_repo, validator_store) = content_store();
    let reference = synthetic_gradient(SIZE, 1).unwrap();
    let vault = vault(&reference);
    chain.advance_to(2);
    let cid = submit(&mut chain, &miner_store, ABSENT, &reference).await;

    let out = verification::verifications(
        chain.keeper.state(),
        &addr(VALIDATOR),
        &vault,
        &verifier(&validator_store),
        3..=3,
    )
    .await
    .unwrap();
    assert!(out.verified.is_empty(), "no message without the content");
    assert_eq!(out.skipped.len(), 1);
    assert_eq!(out.skipped[0].gradient, cid);
    assert!(
        out.skipped[0].reason.contains("missing"),
        "{}",
        out.skipped[0].reason
    );

    // Through the duties: nothing sent, nothing recorded, nobody slashed.
    let mut duties = Duties::new(DutiesConfig {
        verifier: Some(VerifierDutyConfig {
            key: key(VALIDATOR),
            vault: vault.clone(),
            verifier: verifier(&validator_store),
        }),
        ..DutiesConfig::new()
    })
    .unwrap();
    let report = duties.after_block(&chain.keeper, 3).await;
    assert!(report.txs.is_empty());
    assert_eq!(report.verifications.skipped.len(), 1);
    chain.block(&report.txs);
    assert!(
        queries::verifications(chain.keeper.state(), &cid.to_string(), 10)
            .unwrap()
            .is_empty()
    );
    assert_eq!(chain.stake(ABSENT), STAKE);

    // A miner's key is not a validator's: a clear configuration error.
    let err =
        verification::candidates(chain.keeper.state(), &addr(HONEST), &vault, 3..=3).unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
    assert!(err.to_string().contains("not a validator"));

    // A gradient of a chunk the vault does not know is not a candidate.
    let empty = Vault::new(Vec::new());
    assert!(
        verification::candidates(chain.keeper.state(), &addr(VALIDATOR), &empty, 1..=4)
            .unwrap()
            .is_empty()
    );
}

/// Registers model `version` (signed by the validator) in the next block.
fn register_model(chain: &mut Chain, version: u64) {
    use r3mes_chain::proto::{ModelVersion, MsgRegisterModel, tx_body::Msg};
    let msg = Msg::RegisterModel(MsgRegisterModel {
        authority: addr(VALIDATOR).to_string(),
        model: Some(ModelVersion {
            version,
            backbone_hash: CHUNK.into(),
            checksum: vec![version as u8; 32],
            ..ModelVersion::default()
        }),
    });
    let tx = chain.sign(VALIDATOR, msg);
    let (results, _) = chain.block(&[tx]);
    results[0].as_ref().expect("model registered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_tagged_with_a_model_version_check_only_rounds_of_that_version() {
    let mut chain = Chain::new(3, params(0));
    let (_repo, store) = content_store();
    let reference = synthetic_gradient(SIZE, 1).unwrap();
    let mut v1 = vault(&reference).entries[0].clone();
    v1.id = "chunk-1-v1".into();
    v1.model_version = Some(1);
    let mut v2 = v1.clone();
    v2.id = "chunk-1-v2".into();
    v2.model_version = Some(2);
    let both = Vault::new(vec![v1.clone(), v2.clone()]);
    both.validate().unwrap();
    let only = |e: &r3mes_verify::VaultEntry| Vault::new(vec![e.clone()]);
    let me = addr(VALIDATOR);
    let round_length = params(0).round_length;

    // Version 1 before round 2 starts, version 2 just after: round 2 still
    // trains from version 1.
    register_model(&mut chain, 1);
    chain.advance_to(round_length + 2);
    let round2 = queries::round(chain.keeper.state(), None).unwrap().unwrap();
    register_model(&mut chain, 2);
    let h2 = chain.height() + 1;
    submit(&mut chain, &store, HONEST, &reference).await;
    let picked = verification::candidates(chain.keeper.state(), &me, &both, h2..=h2).unwrap();
    assert_eq!(picked.len(), 1, "round {}", round2.round_id);
    assert_eq!(picked[0].entry.id, "chunk-1-v1");
    assert!(
        verification::candidates(chain.keeper.state(), &me, &only(&v2), h2..=h2)
            .unwrap()
            .is_empty(),
        "a version-2 reference never checks a version-1 round"
    );

    // The next round trains from version 2.
    chain.advance_to(round2.end_height + 1);
    let h3 = chain.height() + 1;
    submit(&mut chain, &store, HONEST, &perturbed(&reference, 0.01)).await;
    let picked = verification::candidates(chain.keeper.state(), &me, &both, h3..=h3).unwrap();
    assert_eq!(picked.len(), 1);
    assert_eq!(picked[0].entry.id, "chunk-1-v2");
    // An untagged entry checks every round.
    let mut any = v1.clone();
    any.model_version = None;
    for h in [h2, h3] {
        assert_eq!(
            verification::candidates(chain.keeper.state(), &me, &only(&any), h..=h)
                .unwrap()
                .len(),
            1
        );
    }
}
