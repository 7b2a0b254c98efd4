//! Property tests of the keeper (issue 5): the app hash is deterministic
//! (an in-memory keeper and a redb keeper that is closed and reopened
//! midway agree at every height), the total supply is conserved (only
//! slashing burns and pin rewards mint, by the declared amounts), and no
//! message, however malformed, makes the keeper panic or change state when
//! it is rejected.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use cid::Cid;
use common::{
    addr, block_hash, content, dataset_proposal, genesis, import, key, model_version, replica_msg,
    replica_of, sign_raw, test_params,
};
use proptest::prelude::*;
use r3mes_chain::apply::TxOutcome;
use r3mes_chain::gradients::{leading_zero_bits, pow_digest, solve_pow};
use r3mes_chain::params::Params;
use r3mes_chain::proto::{
    ChallengeKind, ChunkData, DatasetMetadata, Event, GradientMetadata, LoraAdapterRef,
    ModelVersion, MsgApproveDataset, MsgClaimPinRewards, MsgDeactivateDataset, MsgIssueChallenge,
    MsgProposeDataset, MsgRecordTrace, MsgRegisterModel, MsgRegisterPin, MsgRegisterReplica,
    MsgRespondChallenge, MsgSend, MsgStake, MsgSubmitGradient, MsgSubmitVerification, MsgUnstake,
    TxBody, event, tx_body::Msg,
};
use r3mes_chain::state::State;
use r3mes_chain::{Keeper, SignedTx, queries};
use r3mes_ipfs::MemoryBlockStore;
use r3mes_ipfs::proof::build_proof;

/// Parameters that reach every end-of-block path within a few dozen blocks.
fn sim_params() -> Params {
    Params {
        round_length: 8,
        retention_gradient_blocks: 12,
        retention_trace_blocks: 6,
        retention_checkpoint_blocks: 20,
        max_pin_blocks: 15,
        unbonding_blocks: 5,
        sample_rate_ppm: 600_000,
        max_challenges_per_block: 2,
        max_gc_per_block: 3,
        ..test_params()
    }
}

/// Accounts 1 and 2 are validators, 3..=5 miners, 6 has no genesis entry.
const ACCOUNTS: u32 = 6;

#[derive(Debug, Clone)]
enum Op {
    Send {
        from: u32,
        to: u32,
        amount: u64,
    },
    Stake {
        who: u32,
        amount: u64,
    },
    Unstake {
        who: u32,
        amount: u64,
    },
    Gradient {
        miner: u32,
        content: usize,
        flaw: u8,
    },
    Answer {
        who: u32,
        corrupt: bool,
    },
    Issue {
        validator: u32,
        kind: i32,
        content: usize,
        target: u32,
    },
    Pin {
        who: u32,
        content: usize,
        stake: u64,
        reward: u64,
        blocks: u64,
    },
    Claim {
        who: u32,
        content: usize,
    },
    Verify {
        validator: u32,
        content: usize,
        passed: bool,
        cosine: i64,
    },
    Trace {
        who: u32,
        content: usize,
    },
    Stale {
        who: u32,
    },
    Dataset {
        who: u32,
        provider: u32,
        content: usize,
    },
    Approve {
        validator: u32,
        content: usize,
        deactivate: bool,
    },
    Replica {
        miner: u32,
        content: usize,
    },
    Model {
        authority: u32,
        content: usize,
        version: u64,
    },
}

const POOL: usize = 10;

fn op() -> impl Strategy<Value = Op> {
    let who = 1..=ACCOUNTS;
    let c = 0..POOL;
    prop_oneof![
        1 => (who.clone(), who.clone(), 0u64..2_000_000_000_000)
            .prop_map(|(from, to, amount)| Op::Send { from, to, amount }),
        1 => (who.clone(), 0u64..1_500_000_000).prop_map(|(who, amount)| Op::Stake { who, amount }),
        1 => (who.clone(), 0u64..1_200_000_000)
            .prop_map(|(who, amount)| Op::Unstake { who, amount }),
        4 => (who.clone(), c.clone(), 0u8..6)
            .prop_map(|(miner, content, flaw)| Op::Gradient { miner, content, flaw }),
        4 => (who.clone(), any::<bool>()).prop_map(|(who, corrupt)| Op::Answer { who, corrupt }),
        2 => (1u32..=3, 0i32..4, c.clone(), who.clone()).prop_map(
            |(validator, kind, content, target)| Op::Issue { validator, kind, content, target }
        ),
        2 => (who.clone(), c.clone(), 900u64..5_000, 0u64..12, 0u64..18).prop_map(
            |(who, content, stake, reward, blocks)| Op::Pin { who, content, stake, reward, blocks }
        ),
        1 => (who.clone(), c.clone()).prop_map(|(who, content)| Op::Claim { who, content }),
        1 => (1u32..=3, c.clone(), any::<bool>(), -1_000_100i64..1_000_100).prop_map(
            |(validator, content, passed, cosine)| Op::Verify { validator, content, passed, cosine }
        ),
        1 => (who.clone(), c.clone()).prop_map(|(who, content)| Op::Trace { who, content }),
        1 => who.clone().prop_map(|who| Op::Stale { who }),
        1 => (who.clone(), 1u32..=7, c.clone())
            .prop_map(|(who, provider, content)| Op::Dataset { who, provider, content }),
        1 => (1u32..=3, c.clone(), any::<bool>()).prop_map(
            |(validator, content, deactivate)| Op::Approve { validator, content, deactivate }
        ),
        1 => (who, c.clone()).prop_map(|(miner, content)| Op::Replica { miner, content }),
        1 => (1u32..=3, c, 0u64..4)
            .prop_map(|(authority, content, version)| Op::Model { authority, content, version }),
    ]
}

fn schedule() -> impl Strategy<Value = Vec<Vec<Op>>> {
    proptest::collection::vec(proptest::collection::vec(op(), 0..4), 20..40)
}

/// The content pool: CIDs and their blocks.
fn pool() -> Vec<(Cid, MemoryBlockStore)> {
    (0..POOL).map(|i| import(&pool_bytes(i))).collect()
}

/// The bytes of pool entry `i`.
fn pool_bytes(i: usize) -> Vec<u8> {
    content(1_000 + i as u64, 1_500 + 700 * i)
}

/// Signs the ops of one block against `keeper`'s committed state.
fn build_txs(keeper: &Keeper, ops: &[Op], pool: &[(Cid, MemoryBlockStore)]) -> Vec<SignedTx> {
    let state = keeper.state();
    let height = keeper.height().unwrap() + 1;
    let time = keeper.block_time_ms(height).unwrap();
    let mut seqs: BTreeMap<u32, u64> = BTreeMap::new();
    let mut txs = Vec::new();
    for op in ops {
        let (signer, msg) = match op.clone() {
            Op::Send { from, to, amount } => (
                from,
                Msg::Send(MsgSend {
                    from: addr(from).to_string(),
                    to: addr(to).to_string(),
                    amount_low: amount,
                    amount_high: 0,
                }),
            ),
            Op::Stake { who, amount } => (
                who,
                Msg::Stake(MsgStake {
                    from: addr(who).to_string(),
                    amount_low: amount,
                    amount_high: 0,
                }),
            ),
            Op::Unstake { who, amount } => (
                who,
                Msg::Unstake(MsgUnstake {
                    from: addr(who).to_string(),
                    amount_low: amount,
                    amount_high: 0,
                }),
            ),
            Op::Gradient {
                miner,
                content,
                flaw,
            } => (miner, gradient(keeper, miner, &pool[content].0, flaw)),
            Op::Answer { who, corrupt } => {
                let open = queries::open_challenges(state, &addr(who), 4).unwrap();
                let msg = match open.first() {
                    Some(c) => {
                        let (cid, store) = pool
                            .iter()
                            .find(|(cid, _)| cid.to_bytes() == c.ipfs_hash)
                            .expect("challenged content is from the pool");
                        let mut blocks = build_proof(store, cid, &c.draws).unwrap();
                        if corrupt {
                            let last = blocks.last_mut().unwrap();
                            let n = last.len();
                            last[n / 2] ^= 0x40;
                        }
                        MsgRespondChallenge {
                            responder: addr(who).to_string(),
                            challenge_id: r3mes_chain::tables::hex_lower(&c.challenge_id),
                            blocks,
                        }
                    }
                    None => MsgRespondChallenge {
                        responder: addr(who).to_string(),
                        challenge_id: "ab".repeat(32),
                        blocks: vec![vec![1, 2, 3]],
                    },
                };
                (who, Msg::RespondChallenge(msg))
            }
            Op::Issue {
                validator,
                kind,
                content,
                target,
            } => (
                validator,
                Msg::IssueChallenge(MsgIssueChallenge {
                    challenger: addr(validator).to_string(),
                    kind,
                    ipfs_hash: pool[content].0.to_string(),
                    target: if kind == ChallengeKind::Pin as i32 {
                        addr(target).to_string()
                    } else {
                        String::new()
                    },
                }),
            ),
            Op::Pin {
                who,
                content,
                stake,
                reward,
                blocks,
            } => (
                who,
                Msg::RegisterPin(MsgRegisterPin {
                    pinner: addr(who).to_string(),
                    content_hash: pool[content].0.to_string(),
                    stake_low: stake,
                    stake_high: 0,
                    reward_per_block: reward,
                    expiry_height: height + blocks,
                }),
            ),
            Op::Claim { who, content } => (
                who,
                Msg::ClaimPinRewards(MsgClaimPinRewards {
                    pinner: addr(who).to_string(),
                    content_hash: pool[content].0.to_string(),
                }),
            ),
            Op::Verify {
                validator,
                content,
                passed,
                cosine,
            } => (
                validator,
                Msg::SubmitVerification(MsgSubmitVerification {
                    validator: addr(validator).to_string(),
                    ipfs_hash: pool[content].0.to_string(),
                    cosine_ppm: cosine,
                    vault_commitment: vec![7; 32],
                    passed,
                }),
            ),
            Op::Trace { who, content } => (
                who,
                Msg::RecordTrace(MsgRecordTrace {
                    submitter: addr(who).to_string(),
                    trace_hash: pool[content].0.to_string(),
                    gradient_hash: String::new(),
                }),
            ),
            Op::Stale { who } => {
                let seq = keeper.account(&addr(who)).unwrap().sequence + 7;
                let msg = Msg::Send(MsgSend {
                    from: addr(who).to_string(),
                    to: addr(1).to_string(),
                    amount_low: 1,
                    amount_high: 0,
                });
                txs.push(sign_raw(who, msg, seq, common::CHAIN, time));
                continue;
            }
            Op::Dataset {
                who,
                provider,
                content,
            } => {
                let shards = [pool[(content + 3) % POOL].0, pool[(content + 5) % POOL].0];
                let msg = dataset_proposal(who, provider, &pool[content].0, &shards, "set");
                (who, Msg::ProposeDataset(msg))
            }
            Op::Approve {
                validator,
                content,
                deactivate,
            } => {
                let dataset_hash = pool[content].0.to_string();
                let msg = if deactivate {
                    Msg::DeactivateDataset(MsgDeactivateDataset {
                        validator: addr(validator).to_string(),
                        dataset_hash,
                    })
                } else {
                    Msg::ApproveDataset(MsgApproveDataset {
                        validator: addr(validator).to_string(),
                        dataset_hash,
                        quality_ppm: 900_000,
                    })
                };
                (validator, msg)
            }
            Op::Replica { miner, content } => {
                let (data, replica, _, rid) = replica_of(miner, &pool_bytes(content));
                (miner, replica_msg(miner, &data, &replica, &rid))
            }
            Op::Model {
                authority,
                content,
                version,
            } => {
                let adapter = pool[(content + 1) % POOL].0;
                let model = model_version(version, &pool[content].0, &[(&adapter, 8, "f16")]);
                (
                    authority,
                    Msg::RegisterModel(MsgRegisterModel {
                        authority: addr(authority).to_string(),
                        model: Some(model),
                    }),
                )
            }
        };
        let seq = seqs
            .entry(signer)
            .or_insert_with(|| keeper.account(&addr(signer)).unwrap().sequence);
        txs.push(sign_raw(signer, msg, *seq, common::CHAIN, time));
        *seq += 1;
    }
    txs
}

/// A gradient submission for the open round; `flaw` 0..=2 is valid, 3 has
/// too little work, 4 names the next round, 5 a 2047-token chunk.
fn gradient(keeper: &Keeper, miner: u32, cid: &Cid, flaw: u8) -> Msg {
    let (round, shard) = queries::shard_of(keeper.state(), &addr(miner), None)
        .map(|(r, s)| (r.round_id, s))
        .unwrap_or((1, 0));
    let round = if flaw == 4 { round + 1 } else { round };
    let bits = keeper.params().pow_difficulty_bits;
    let mut pow_nonce = solve_pow(&addr(miner), cid, round, bits, 0);
    if flaw == 3 {
        pow_nonce = (0u64..)
            .find(|n| leading_zero_bits(&pow_digest(&addr(miner), cid, round, *n)) < bits)
            .unwrap();
    }
    Msg::SubmitGradient(MsgSubmitGradient {
        miner: addr(miner).to_string(),
        ipfs_hash: cid.to_string(),
        metadata: Some(GradientMetadata {
            round_id: round,
            shard_id: shard,
            chunks: vec![ChunkData {
                chunk_id: 1,
                data_hash: cid.to_string(),
                token_count: if flaw == 5 { 2047 } else { 2048 },
                shard_id: shard,
                window_id: round,
            }],
            gpu_architecture: "cpu".into(),
            backbone_hash: cid.to_string(),
            format: "safetensors".into(),
            byte_size: 10,
            element_count: 2,
        }),
        pow_nonce,
    })
}

struct BlockRun {
    results: Vec<r3mes_chain::Result<TxOutcome>>,
    end_events: Vec<Event>,
    app_hash: [u8; 32],
}

fn run_block(keeper: &Keeper, txs: &[SignedTx]) -> BlockRun {
    let height = keeper.height().unwrap() + 1;
    let mut b = keeper.begin_block(height, block_hash(height)).unwrap();
    let results = txs.iter().map(|tx| b.deliver(tx)).collect();
    let end_events = b.end_block().unwrap();
    let app_hash = b.commit().unwrap();
    BlockRun {
        results,
        end_events,
        app_hash,
    }
}

fn amount(s: &str) -> u128 {
    s.parse().expect("decimal amount")
}

/// Minted (pin rewards) and burned (slashing) amounts declared by events.
fn minted_and_burned<'a>(events: impl Iterator<Item = &'a Event>) -> (u128, u128) {
    let (mut minted, mut burned) = (0, 0);
    for e in events {
        match &e.kind {
            Some(event::Kind::Pin(p)) if p.action == "reward" => minted += amount(&p.amount),
            Some(event::Kind::Slashed(s)) => {
                burned += amount(&s.burned);
                assert_eq!(
                    amount(&s.amount),
                    amount(&s.burned) + amount(&s.to_beneficiary)
                );
            }
            _ => {}
        }
    }
    (minted, burned)
}

#[derive(Default, Debug)]
struct Stats {
    ok: usize,
    err: usize,
    slashes: usize,
    rewards: usize,
}

/// Runs `schedule` on an in-memory keeper and, if `with_file`, on a redb
/// keeper reopened halfway; checks hashes agree and supply is conserved.
fn run_schedule(schedule: &[Vec<Op>], with_file: bool) -> Stats {
    let pool = pool();
    let g = genesis(2, 3, sim_params());
    let memory = Keeper::init(State::in_memory().unwrap(), &g).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let mut file = with_file.then(|| Keeper::init(State::open(&path).unwrap(), &g).unwrap());
    if let Some(f) = &file {
        assert_eq!(f.app_hash().unwrap(), memory.app_hash().unwrap());
    }
    let mut stats = Stats::default();
    for (i, ops) in schedule.iter().enumerate() {
        if i == schedule.len() / 2
            && let Some(f) = file.take()
        {
            let height = f.height().unwrap();
            drop(f);
            let reopened = Keeper::open(State::open(&path).unwrap()).unwrap();
            assert_eq!(reopened.height().unwrap(), height);
            assert_eq!(reopened.app_hash().unwrap(), memory.app_hash().unwrap());
            file = Some(reopened);
        }
        let txs = build_txs(&memory, ops, &pool);
        let supply_before = queries::supply(memory.state()).unwrap();
        let run = run_block(&memory, &txs);
        // Conservation.
        let tx_events = run
            .results
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .flat_map(|o| o.events.iter());
        let (minted, burned) = minted_and_burned(tx_events.chain(run.end_events.iter()));
        let supply = queries::supply(memory.state()).unwrap();
        assert_eq!(supply + burned, supply_before + minted, "block {}", i + 2);
        assert_eq!(supply, common::holdings(memory.state()), "block {}", i + 2);
        for r in &run.results {
            match r {
                Ok(_) => stats.ok += 1,
                Err(_) => stats.err += 1,
            }
        }
        for e in run
            .results
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .flat_map(|o| o.events.iter())
            .chain(run.end_events.iter())
        {
            match &e.kind {
                Some(event::Kind::Slashed(_)) => stats.slashes += 1,
                Some(event::Kind::Pin(p)) if p.action == "reward" => stats.rewards += 1,
                _ => {}
            }
        }
        // Determinism.
        if let Some(f) = &file {
            let other = run_block(f, &txs);
            assert_eq!(other.app_hash, run.app_hash, "block {}", i + 2);
            assert_eq!(other.results, run.results);
            assert_eq!(other.end_events, run.end_events);
        }
    }
    assert_eq!(
        memory.state().recompute_app_hash().unwrap(),
        memory.app_hash().unwrap()
    );
    if let Some(f) = &file {
        assert_eq!(
            f.state().recompute_app_hash().unwrap(),
            f.app_hash().unwrap()
        );
        assert_eq!(f.app_hash().unwrap(), memory.app_hash().unwrap());
    }
    stats
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn app_hash_is_deterministic_across_stores_and_reopen(s in schedule()) {
        run_schedule(&s, true);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn supply_is_conserved(s in schedule()) {
        run_schedule(&s, false);
    }
}

/// The generated schedules do exercise the rules: over a few fixed seeds
/// transactions succeed and fail, slashing burns and pins mint.
#[test]
fn schedules_reach_slashing_and_rewards() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    );
    let mut total = Stats::default();
    for _ in 0..6 {
        let s = schedule().new_tree(&mut runner).unwrap().current();
        let stats = run_schedule(&s, false);
        total.ok += stats.ok;
        total.err += stats.err;
        total.slashes += stats.slashes;
        total.rewards += stats.rewards;
    }
    eprintln!("{total:?}");
    assert!(total.ok > 0 && total.err > 0, "{total:?}");
    assert!(total.slashes > 0, "{total:?}");
    assert!(total.rewards > 0, "{total:?}");
}

// ---------------------------------------------------------------------------
// No panic on arbitrary messages

fn text() -> impl Strategy<Value = String> {
    let cid = import(&content(5, 300)).0.to_string();
    prop_oneof![
        ".{0,40}",
        "[a-z0-9]{0,130}",
        Just(cid),
        Just(addr(1).to_string()),
        Just(addr(3).to_string()),
        "[0-9a-f]{64}",
        Just(String::new()),
    ]
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..80)
}

fn chunk() -> impl Strategy<Value = ChunkData> {
    (
        any::<u64>(),
        text(),
        prop_oneof![Just(2048u64), any::<u64>()],
        0u64..3,
        any::<u64>(),
    )
        .prop_map(
            |(chunk_id, data_hash, token_count, shard_id, window_id)| ChunkData {
                chunk_id,
                data_hash,
                token_count,
                shard_id,
                window_id,
            },
        )
}

fn metadata() -> impl Strategy<Value = Option<GradientMetadata>> {
    proptest::option::of(
        (
            0u64..4,
            0u64..3,
            proptest::collection::vec(chunk(), 0..20),
            (text(), text(), text()),
            any::<u64>(),
            any::<u64>(),
        )
            .prop_map(
                |(round_id, shard_id, chunks, (gpu, backbone, format), byte_size, elements)| {
                    GradientMetadata {
                        round_id,
                        shard_id,
                        chunks,
                        gpu_architecture: gpu,
                        backbone_hash: backbone,
                        format,
                        byte_size,
                        element_count: elements,
                    }
                },
            ),
    )
}

fn dataset_metadata() -> impl Strategy<Value = Option<DatasetMetadata>> {
    proptest::option::of(
        (
            (text(), text(), text()),
            (any::<u64>(), 0u64..5, text(), text()),
            any::<u64>(),
            proptest::collection::vec(text(), 0..4),
            (bytes(), bytes()),
        )
            .prop_map(
                |(
                    (name, description, data_type),
                    (size, shard_count, provider, license),
                    quality_ppm,
                    tags,
                    (provider_pubkey, signature),
                )| {
                    DatasetMetadata {
                        name,
                        description,
                        data_type,
                        size,
                        shard_count,
                        provider,
                        license,
                        quality_ppm,
                        tags,
                        provider_pubkey,
                        signature,
                    }
                },
            ),
    )
}

fn arbitrary_model() -> impl Strategy<Value = Option<ModelVersion>> {
    let adapter = (
        text(),
        any::<u64>(),
        text(),
        prop_oneof![Just("fp16".to_string()), text()],
    )
        .prop_map(|(layer_id, rank, adapter_hash, precision)| LoraAdapterRef {
            layer_id,
            rank,
            adapter_hash,
            precision,
        });
    proptest::option::of(
        (
            any::<u64>(),
            text(),
            proptest::collection::vec(adapter, 0..4),
            (text(), bytes(), text()),
            any::<u64>(),
            any::<u64>(),
        )
            .prop_map(
                |(
                    version,
                    backbone_hash,
                    lora_adapters,
                    (training_state_hash, checksum, metadata_hash),
                    block_height,
                    expiry_height,
                )| {
                    ModelVersion {
                        version,
                        backbone_hash,
                        lora_adapters,
                        training_state_hash,
                        checksum,
                        metadata_hash,
                        block_height,
                        expiry_height,
                    }
                },
            ),
    )
}

/// Any message of any kind; the signer field is filled in later.
fn any_msg() -> impl Strategy<Value = Msg> {
    let amount = (any::<u64>(), prop_oneof![Just(0u64), any::<u64>()]);
    prop_oneof![
        (text(), amount.clone()).prop_map(|(to, (amount_low, amount_high))| Msg::Send(MsgSend {
            from: String::new(),
            to,
            amount_low,
            amount_high
        })),
        amount
            .clone()
            .prop_map(|(amount_low, amount_high)| Msg::Stake(MsgStake {
                from: String::new(),
                amount_low,
                amount_high
            })),
        amount
            .clone()
            .prop_map(|(amount_low, amount_high)| Msg::Unstake(MsgUnstake {
                from: String::new(),
                amount_low,
                amount_high
            })),
        (text(), metadata(), any::<u64>()).prop_map(|(ipfs_hash, metadata, pow_nonce)| {
            Msg::SubmitGradient(MsgSubmitGradient {
                miner: String::new(),
                ipfs_hash,
                metadata,
                pow_nonce,
            })
        }),
        (
            text(),
            dataset_metadata(),
            proptest::collection::vec(text(), 0..5),
            text()
        )
            .prop_map(|(dataset_hash, metadata, shard_cids, schema)| {
                Msg::ProposeDataset(MsgProposeDataset {
                    proposer: String::new(),
                    dataset_hash,
                    metadata,
                    shard_cids,
                    schema,
                })
            }),
        (text(), any::<u64>()).prop_map(|(dataset_hash, quality_ppm)| {
            Msg::ApproveDataset(MsgApproveDataset {
                validator: String::new(),
                dataset_hash,
                quality_ppm,
            })
        }),
        text().prop_map(|dataset_hash| Msg::DeactivateDataset(MsgDeactivateDataset {
            validator: String::new(),
            dataset_hash
        })),
        (any::<i32>(), 0i32..4, text(), text()).prop_map(|(k, small, ipfs_hash, target)| {
            Msg::IssueChallenge(MsgIssueChallenge {
                challenger: String::new(),
                kind: if k % 2 == 0 { small } else { k },
                ipfs_hash,
                target,
            })
        }),
        (text(), proptest::collection::vec(bytes(), 0..6)).prop_map(|(challenge_id, blocks)| {
            Msg::RespondChallenge(MsgRespondChallenge {
                responder: String::new(),
                challenge_id,
                blocks,
            })
        }),
        (text(), text(), text()).prop_map(|(data_hash, replica_hash, replication_id)| {
            Msg::RegisterReplica(MsgRegisterReplica {
                miner: String::new(),
                data_hash,
                replica_hash,
                replication_id,
            })
        }),
        (text(), amount, any::<u64>(), any::<u64>()).prop_map(
            |(content_hash, (stake_low, stake_high), reward_per_block, expiry_height)| {
                Msg::RegisterPin(MsgRegisterPin {
                    pinner: String::new(),
                    content_hash,
                    stake_low,
                    stake_high,
                    reward_per_block,
                    expiry_height,
                })
            }
        ),
        text().prop_map(|content_hash| Msg::ClaimPinRewards(MsgClaimPinRewards {
            pinner: String::new(),
            content_hash
        })),
        (text(), any::<i64>(), bytes(), any::<bool>()).prop_map(
            |(ipfs_hash, cosine_ppm, vault_commitment, passed)| {
                Msg::SubmitVerification(MsgSubmitVerification {
                    validator: String::new(),
                    ipfs_hash,
                    cosine_ppm,
                    vault_commitment,
                    passed,
                })
            }
        ),
        arbitrary_model().prop_map(|model| Msg::RegisterModel(MsgRegisterModel {
            authority: String::new(),
            model
        })),
        (text(), text()).prop_map(|(trace_hash, gradient_hash)| {
            Msg::RecordTrace(MsgRecordTrace {
                submitter: String::new(),
                trace_hash,
                gradient_hash,
            })
        }),
    ]
}

fn set_signer(msg: &mut Msg, signer: String) {
    let field = match msg {
        Msg::Send(m) => &mut m.from,
        Msg::Stake(m) => &mut m.from,
        Msg::Unstake(m) => &mut m.from,
        Msg::SubmitGradient(m) => &mut m.miner,
        Msg::ProposeDataset(m) => &mut m.proposer,
        Msg::ApproveDataset(m) => &mut m.validator,
        Msg::DeactivateDataset(m) => &mut m.validator,
        Msg::IssueChallenge(m) => &mut m.challenger,
        Msg::RespondChallenge(m) => &mut m.responder,
        Msg::RegisterReplica(m) => &mut m.miner,
        Msg::RegisterPin(m) => &mut m.pinner,
        Msg::ClaimPinRewards(m) => &mut m.pinner,
        Msg::SubmitVerification(m) => &mut m.validator,
        Msg::RegisterModel(m) => &mut m.authority,
        Msg::RecordTrace(m) => &mut m.submitter,
    };
    *field = signer;
}

/// A fresh chain at height 2 (round 1 open), in memory.
fn fresh() -> Keeper {
    let keeper = Keeper::init(State::in_memory().unwrap(), &genesis(2, 3, sim_params())).unwrap();
    run_block(&keeper, &[]);
    keeper
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Any message, signed correctly (or with a bad sequence or time),
    /// gives Ok or a typed error; a rejected one leaves the block's app
    /// hash equal to an empty block's.
    #[test]
    fn arbitrary_messages_never_panic_and_rejections_change_nothing(
        mut msg in any_msg(),
        signer in prop_oneof![1u32..=5, Just(9u32)],
        own in prop_oneof![5 => Just(true), 1 => Just(false)],
        other_signer in text(),
        seq_off in prop_oneof![8 => Just(0u64), 1 => any::<u64>()],
        time_off in prop_oneof![8 => Just(0i64), 1 => -200_000i64..200_000],
    ) {
        set_signer(&mut msg, if own { addr(signer).to_string() } else { other_signer });
        let a = fresh();
        let b = fresh();
        let time = a.block_time_ms(3).unwrap().saturating_add(time_off);
        let tx = SignedTx::sign(TxBody { msg: Some(msg) }, &key(signer), seq_off, common::CHAIN, time)
            .unwrap();
        let run = run_block(&a, std::slice::from_ref(&tx));
        let empty = run_block(&b, &[]);
        match &run.results[0] {
            Ok(_) => {}
            Err(e) => {
                prop_assert!((1..=70).contains(&e.code()));
                prop_assert_eq!(run.app_hash, empty.app_hash, "rejected ({}) but changed state", e);
            }
        }
        // The bytes path agrees with the decoded path.
        let c = fresh();
        let height = c.height().unwrap() + 1;
        let mut blk = c.begin_block(height, block_hash(height)).unwrap();
        let again = blk.deliver_bytes(&tx.encode());
        prop_assert_eq!(again.is_ok(), run.results[0].is_ok());
        if let (Err(x), Err(y)) = (&again, &run.results[0]) {
            prop_assert_eq!(x.code(), y.code());
        }
        blk.commit().unwrap();
        prop_assert_eq!(a.state().recompute_app_hash().unwrap(), a.app_hash().unwrap());
    }

    /// Arbitrary bytes, and single-byte mutations of a valid transaction,
    /// never panic the decoder or a block.
    #[test]
    fn arbitrary_bytes_never_panic(
        raw in proptest::collection::vec(any::<u8>(), 0..400),
        flip in any::<prop::sample::Index>(),
        value in any::<u8>(),
    ) {
        let keeper = fresh();
        let _ = keeper.decode_tx(&raw);
        let valid = SignedTx::sign(
            TxBody {
                msg: Some(Msg::Send(MsgSend {
                    from: addr(3).to_string(),
                    to: addr(4).to_string(),
                    amount_low: 5,
                    amount_high: 0,
                })),
            },
            &key(3),
            0,
            common::CHAIN,
            keeper.block_time_ms(3).unwrap(),
        )
        .unwrap()
        .encode();
        let mut mutated = valid.clone();
        let i = flip.index(mutated.len());
        mutated[i] = value;
        let mut b = keeper.begin_block(3, block_hash(3)).unwrap();
        let r1 = b.deliver_bytes(&raw);
        let r2 = b.deliver_bytes(&mutated);
        if let Err(e) = &r1 {
            prop_assert!((1..=70).contains(&e.code()));
        }
        if let Err(e) = &r2 {
            prop_assert!((1..=70).contains(&e.code()));
        }
        let after = b.commit().unwrap();
        if r1.is_err() && r2.is_err() {
            // Only the end-of-block work ran: same as an empty block.
            let empty = fresh();
            prop_assert_eq!(run_block(&empty, &[]).app_hash, after);
        }
    }
}
