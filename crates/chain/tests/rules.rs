//! Unit tests per keeper rule (issue 5): every message's success effect
//! (records, events, balances) and each rejection path's error code, with
//! the rejected transaction shown to change nothing (`Chain::reject`
//! compares the whole state before and after it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use cid::Cid;
use common::{
    Chain, addr, block_hash, content, dataset_proposal, import, key, model_version, replica_msg,
    replica_of, sign_raw, test_params,
};
use prost::Message;
use r3mes_chain::apply::{TxOutcome, TxResponse};
use r3mes_chain::gradients::{leading_zero_bits, pow_digest, solve_pow};
use r3mes_chain::params::Params;
use r3mes_chain::proto::{
    ChallengeKind, ChallengeStatus, ChunkData, DatasetStatus, Event, ModelVersion,
    MsgApproveDataset, MsgClaimPinRewards, MsgDeactivateDataset, MsgIssueChallenge,
    MsgProposeDataset, MsgRecordTrace, MsgRegisterModel, MsgRegisterPin, MsgRespondChallenge,
    MsgSend, MsgStake, MsgSubmitGradient, MsgSubmitVerification, MsgUnstake, StoredGradient, event,
    tx_body::Msg,
};
use r3mes_chain::queries;
use r3mes_chain::tables::{ExpiryKind, hex_lower};
use r3mes_ipfs::MemoryBlockStore;
use r3mes_ipfs::proof::build_proof;

/// Collects the payloads of one event kind.
macro_rules! pick {
    ($events:expr, $variant:ident) => {
        $events
            .iter()
            .filter_map(|e: &Event| match &e.kind {
                Some(event::Kind::$variant(x)) => Some(x.clone()),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
}

/// Test parameters without random sampling (no surprise challenges).
fn params() -> Params {
    Params {
        sample_rate_ppm: 0,
        ..test_params()
    }
}

/// A chain with validator 1 and miners 2..=4, round 1 open (height 2).
fn chain_with(params: Params) -> Chain {
    let mut chain = Chain::new(1, 3, params);
    chain.advance_to(2);
    chain
}

/// The CID of small content (one block).
fn cid_of(seed: u64) -> Cid {
    import(&content(seed, 300)).0
}

fn gradient_of(chain: &Chain, i: u32, cid: &Cid) -> MsgSubmitGradient {
    match chain.gradient_msg(i, cid) {
        Msg::SubmitGradient(m) => m,
        _ => unreachable!(),
    }
}

/// Re-solves the proof of work of `m` for miner `i`.
fn resolve(chain: &Chain, i: u32, m: &mut MsgSubmitGradient) {
    let cid = Cid::try_from(m.ipfs_hash.as_str()).unwrap();
    let round = m.metadata.as_ref().unwrap().round_id;
    m.pow_nonce = solve_pow(
        &addr(i),
        &cid,
        round,
        chain.keeper.params().pow_difficulty_bits,
        0,
    );
}

fn submit_sized(chain: &mut Chain, i: u32, seed: u64, len: usize) -> (Cid, MemoryBlockStore) {
    let (cid, store) = import(&content(seed, len));
    let msg = chain.gradient_msg(i, &cid);
    let tx = chain.sign(i, msg);
    chain.one(tx).expect("gradient accepted");
    (cid, store)
}

fn ok(r: r3mes_chain::Result<TxOutcome>) -> TxOutcome {
    r.unwrap_or_else(|e| panic!("transaction rejected: {e} (code {})", e.code()))
}

fn stake_msg(i: u32, amount: u128) -> Msg {
    Msg::Stake(MsgStake {
        from: addr(i).to_string(),
        amount_low: amount as u64,
        amount_high: (amount >> 64) as u64,
    })
}

fn unstake_msg(i: u32, amount: u128) -> Msg {
    Msg::Unstake(MsgUnstake {
        from: addr(i).to_string(),
        amount_low: amount as u64,
        amount_high: (amount >> 64) as u64,
    })
}

fn send_msg(from: u32, to: u32, amount: u64) -> Msg {
    Msg::Send(MsgSend {
        from: addr(from).to_string(),
        to: addr(to).to_string(),
        amount_low: amount,
        amount_high: 0,
    })
}

const STAKE: u128 = 1_000_000_000;
const BALANCE: u128 = 1_000_000_000_000;

// ---------------------------------------------------------------------------
// MsgSubmitGradient

#[test]
fn gradient_accepted_with_record_event_and_response() {
    let mut chain = chain_with(params());
    let (cid, _) = import(&content(1, 5000));
    let msg = chain.gradient_msg(2, &cid);
    let tx = chain.sign(2, msg);
    let out = ok(chain.one(tx));
    let h = 3;
    match &out.response {
        TxResponse::SubmitGradient(r) => {
            assert_eq!(r.ipfs_hash, cid.to_string());
            assert_eq!(r.block_height, h);
        }
        other => panic!("response {other:?}"),
    }
    let stored = pick!(out.events, GradientStored);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].ipfs_hash, cid.to_string());
    assert_eq!(stored[0].miner, addr(2).to_string());
    assert_eq!(stored[0].round_id, 1);
    assert_eq!(stored[0].block_height, h);
    let g = queries::gradient(chain.keeper.state(), &cid.to_string())
        .unwrap()
        .unwrap();
    assert_eq!(g.miner, addr(2).as_bytes().to_vec());
    assert_eq!(g.ipfs_hash, cid.to_bytes());
    assert_eq!(g.block_height, h);
    assert_eq!(g.expiry_height, h + 30);
    assert_eq!(g.metadata.unwrap().chunks[0].token_count, 2048);
    assert_eq!(chain.acct(2).sequence, 1);
    // Fees do not exist: balance and stake are untouched.
    assert_eq!(chain.acct(2).balance, BALANCE);
    assert_eq!(chain.acct(2).stake, STAKE);
}

#[test]
fn gradient_bad_cids_are_rejected() {
    let mut chain = chain_with(params());
    let (cid, _) = import(&content(1, 5000));
    let v1 = Cid::new_v1(cid.codec(), *cid.hash());
    let identity = Cid::new_v1(
        0x55,
        cid::multihash::Multihash::<64>::wrap(0, b"inline").unwrap(),
    );
    let md5ish = Cid::new_v1(
        0x55,
        cid::multihash::Multihash::<64>::wrap(0x13, &[7u8; 64]).unwrap(),
    );
    let bad = [
        String::new(),
        "hello".to_string(),
        format!("/ipfs/{cid}"),
        format!("{cid} "),
        v1.to_string_of_base(cid::multibase::Base::Base58Btc)
            .unwrap(),
        v1.to_string_of_base(cid::multibase::Base::Base32Upper)
            .unwrap(),
        v1.to_string_of_base(cid::multibase::Base::Base64).unwrap(),
        identity.to_string(),
        md5ish.to_string(),
        Cid::new_v1(0x71, *cid.hash()).to_string(), // dag-cbor
        "Q".repeat(200),
    ];
    for text in bad {
        let mut m = gradient_of(&chain, 2, &cid);
        m.ipfs_hash = text.clone();
        let tx = chain.sign(2, Msg::SubmitGradient(m));
        let err = chain.reject(tx, 60);
        assert!(err.to_string().contains("ipfs_hash"), "{text:?}: {err}");
    }
    // The canonical CIDv1 (base32 lower case) of the same content is fine.
    let mut m = gradient_of(&chain, 2, &v1);
    resolve(&chain, 2, &mut m);
    let tx = chain.sign(2, Msg::SubmitGradient(m));
    ok(chain.one(tx));
    // A bad chunk CID is rejected as well.
    let (other, _) = import(&content(2, 700));
    let mut m = gradient_of(&chain, 2, &other);
    m.metadata.as_mut().unwrap().chunks[0].data_hash = format!("/ipfs/{other}");
    let tx = chain.sign(2, Msg::SubmitGradient(m));
    chain.reject(tx, 60);
}

#[test]
fn gradient_metadata_rejections() {
    let mut chain = chain_with(params());
    let cid = cid_of(5);
    type Edit = fn(&mut MsgSubmitGradient);
    let cases: Vec<(&str, u32, Edit)> = vec![
        ("missing metadata", 62, |m| m.metadata = None),
        ("no chunks", 62, |m| {
            m.metadata.as_mut().unwrap().chunks.clear()
        }),
        ("9 chunks", 62, |m| {
            let meta = m.metadata.as_mut().unwrap();
            let c = meta.chunks[0].clone();
            meta.chunks = vec![c; 9];
        }),
        ("2047 tokens", 61, |m| {
            m.metadata.as_mut().unwrap().chunks[0].token_count = 2047
        }),
        ("4096 tokens", 61, |m| {
            m.metadata.as_mut().unwrap().chunks[0].token_count = 4096
        }),
        ("0 tokens", 61, |m| {
            m.metadata.as_mut().unwrap().chunks[0].token_count = 0
        }),
        ("chunk shard", 62, |m| {
            m.metadata.as_mut().unwrap().chunks[0].shard_id += 1
        }),
        ("chunk window", 62, |m| {
            m.metadata.as_mut().unwrap().chunks[0].window_id += 1
        }),
        ("format", 62, |m| {
            m.metadata.as_mut().unwrap().format = "json".into()
        }),
        ("empty format", 62, |m| {
            m.metadata.as_mut().unwrap().format.clear()
        }),
        ("long gpu", 62, |m| {
            m.metadata.as_mut().unwrap().gpu_architecture = "g".repeat(33)
        }),
        ("long backbone", 62, |m| {
            m.metadata.as_mut().unwrap().backbone_hash = "b".repeat(129)
        }),
        ("zero byte size", 62, |m| {
            m.metadata.as_mut().unwrap().byte_size = 0
        }),
        ("zero elements", 62, |m| {
            m.metadata.as_mut().unwrap().element_count = 0
        }),
    ];
    for (what, code, edit) in cases {
        let mut m = gradient_of(&chain, 2, &cid);
        edit(&mut m);
        let tx = chain.sign(2, Msg::SubmitGradient(m));
        let err = chain.reject(tx, code);
        if code == 61 {
            assert!(
                err.to_string()
                    .contains("chunk must be exactly 2048 tokens"),
                "{what}: {err}"
            );
        }
    }
    // 8 chunks and every accepted format pass.
    for (i, format) in ["protobuf", "safetensors", "pickle_gzip"]
        .into_iter()
        .enumerate()
    {
        let cid = cid_of(100 + i as u64);
        let mut m = gradient_of(&chain, 2, &cid);
        let meta = m.metadata.as_mut().unwrap();
        meta.format = format.into();
        let c = meta.chunks[0].clone();
        meta.chunks = vec![c; 8];
        let tx = chain.sign(2, Msg::SubmitGradient(m));
        ok(chain.one(tx));
    }
}

#[test]
fn gradient_insufficient_work_is_rejected() {
    let mut chain = chain_with(params());
    let cid = cid_of(6);
    let mut m = gradient_of(&chain, 2, &cid);
    let round = m.metadata.as_ref().unwrap().round_id;
    let weak = (0u64..)
        .find(|n| leading_zero_bits(&pow_digest(&addr(2), &cid, round, *n)) < 4)
        .unwrap();
    m.pow_nonce = weak;
    let tx = chain.sign(2, Msg::SubmitGradient(m.clone()));
    let err = chain.reject(tx, 66);
    assert!(matches!(
        err,
        r3mes_chain::Error::InsufficientWork { required: 4, .. }
    ));
    // A nonce solved for another miner does not count for this one.
    let mut stolen = gradient_of(&chain, 2, &cid);
    stolen.pow_nonce = (0u64..)
        .find(|n| {
            leading_zero_bits(&pow_digest(&addr(3), &cid, round, *n)) >= 4
                && leading_zero_bits(&pow_digest(&addr(2), &cid, round, *n)) < 4
        })
        .unwrap();
    let tx = chain.sign(2, Msg::SubmitGradient(stolen));
    chain.reject(tx, 66);
}

#[test]
fn gradient_from_unstaked_miner_is_rejected() {
    let mut chain = chain_with(params());
    let cid = cid_of(7);
    // Account 9 has no genesis entry at all.
    let m = chain.gradient_msg(9, &cid);
    let tx = chain.sign(9, m);
    chain.reject(tx, 63);
    // Miner 3 unbonds everything: unbonding stake does not count.
    let tx = chain.sign(3, unstake_msg(3, STAKE));
    ok(chain.one(tx));
    let m = chain.gradient_msg(3, &cid);
    let tx = chain.sign(3, m);
    chain.reject(tx, 63);
}

#[test]
fn gradient_before_the_first_round_and_for_a_closed_round() {
    let mut chain = Chain::new(1, 2, params());
    assert!(
        queries::round(chain.keeper.state(), None)
            .unwrap()
            .is_none()
    );
    let cid = cid_of(8);
    let pow_nonce = solve_pow(&addr(2), &cid, 1, 4, 0);
    let m = MsgSubmitGradient {
        miner: addr(2).to_string(),
        ipfs_hash: cid.to_string(),
        metadata: Some(r3mes_chain::proto::GradientMetadata {
            round_id: 1,
            shard_id: 0,
            chunks: vec![ChunkData {
                chunk_id: 0,
                data_hash: cid.to_string(),
                token_count: 2048,
                shard_id: 0,
                window_id: 1,
            }],
            gpu_architecture: "cpu".into(),
            backbone_hash: cid.to_string(),
            format: "protobuf".into(),
            byte_size: 1,
            element_count: 1,
        }),
        pow_nonce,
    };
    // Block 2: no round has started yet (round 1 starts in block 2's end).
    let tx = chain.sign(2, Msg::SubmitGradient(m.clone()));
    let err = chain.reject(tx, 64);
    assert_eq!(
        err,
        r3mes_chain::Error::RoundNotOpen {
            round: 1,
            current: 0
        }
    );
    // Round 1 is open in blocks 3..=22.
    let mut wrong = m.clone();
    let meta = wrong.metadata.as_mut().unwrap();
    meta.round_id = 2;
    meta.chunks[0].window_id = 2;
    resolve(&chain, 2, &mut wrong);
    let tx = chain.sign(2, Msg::SubmitGradient(wrong));
    let err = chain.reject(tx, 64);
    assert_eq!(
        err,
        r3mes_chain::Error::RoundNotOpen {
            round: 2,
            current: 1
        }
    );
    chain.advance_to(21);
    let tx = chain.sign(2, Msg::SubmitGradient(m.clone()));
    ok(chain.one(tx)); // height 22: the last block of round 1
    let mut late = m.clone();
    late.ipfs_hash = cid_of(9).to_string();
    resolve(&chain, 2, &mut late);
    let tx = chain.sign(2, Msg::SubmitGradient(late));
    let err = chain.reject(tx, 64); // height 23: round 2 is open
    assert_eq!(
        err,
        r3mes_chain::Error::RoundNotOpen {
            round: 1,
            current: 2
        }
    );
}

#[test]
fn gradient_for_the_wrong_shard_is_rejected() {
    let p = Params {
        default_total_shards: 4,
        ..params()
    };
    let mut chain = chain_with(p);
    let round = queries::round(chain.keeper.state(), None).unwrap().unwrap();
    assert_eq!(round.total_shards, 4);
    let cid = cid_of(10);
    let (_, shard) = chain.assignment(2);
    let mut m = gradient_of(&chain, 2, &cid);
    let wrong = (shard + 1) % 4;
    let meta = m.metadata.as_mut().unwrap();
    meta.shard_id = wrong;
    meta.chunks[0].shard_id = wrong;
    let tx = chain.sign(2, Msg::SubmitGradient(m));
    let err = chain.reject(tx, 65);
    assert_eq!(
        err,
        r3mes_chain::Error::WrongShard {
            expected: shard,
            found: wrong
        }
    );
    let m = chain.gradient_msg(2, &cid);
    let tx = chain.sign(2, m);
    ok(chain.one(tx));
}

#[test]
fn gradient_duplicate_cid_is_rejected() {
    let mut chain = chain_with(params());
    let (cid, _) = chain.submit_gradient(2, 11);
    for miner in [2, 3] {
        let m = chain.gradient_msg(miner, &cid);
        let tx = chain.sign(miner, m);
        chain.reject(tx, 67);
    }
    // Same CID twice in one block: the second is rejected.
    let cid = cid_of(12);
    let a = chain.gradient_msg(2, &cid);
    let b = chain.gradient_msg(3, &cid);
    let txs = vec![chain.sign(2, a), chain.sign(3, b)];
    let r = chain.block(txs);
    assert!(r.txs[0].is_ok());
    assert_eq!(r.txs[1].as_ref().unwrap_err().code(), 67);
    assert_eq!(chain.acct(3).sequence, 0);
}

#[test]
fn gradient_lookups_survive_a_reopen_and_end_with_retention() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let mut chain = Chain::on_disk(&path, 1, 3, params());
    chain.advance_to(2);
    let (first, _) = chain.submit_gradient(2, 21);
    let (second, _) = chain.submit_gradient(3, 22);
    let hash = chain.keeper.app_hash().unwrap();
    let mut chain = chain.reopen(&path);
    assert_eq!(chain.keeper.app_hash().unwrap(), hash);
    for cid in [&first, &second] {
        let g = queries::gradient(chain.keeper.state(), &cid.to_string())
            .unwrap()
            .expect("stored");
        assert_eq!(g.ipfs_hash, cid.to_bytes());
        let m = chain.gradient_msg(4, cid);
        let tx = chain.sign(4, m);
        chain.reject(tx, 67);
    }
    let listed = queries::gradients_in_round(chain.keeper.state(), 1, None, 10).unwrap();
    assert_eq!(listed.len(), 2);
    let mine = queries::gradients_in_round(chain.keeper.state(), 1, Some(&addr(3)), 10).unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].ipfs_hash, second.to_bytes());
    // Retention removes both, unpins them, and the CID is free again.
    let expiry = listed.iter().map(|g| g.expiry_height).max().unwrap();
    let events = chain.advance_to(expiry);
    let unpinned = events
        .iter()
        .filter(|e| matches!(e.kind, Some(event::Kind::Unpin(_))))
        .count();
    assert_eq!(unpinned, 2);
    assert!(
        queries::gradient(chain.keeper.state(), &first.to_string())
            .unwrap()
            .is_none()
    );
    let chain = chain.reopen(&path);
    assert!(
        queries::gradient(chain.keeper.state(), &second.to_string())
            .unwrap()
            .is_none()
    );
    assert_eq!(
        chain.keeper.state().recompute_app_hash().unwrap(),
        chain.keeper.app_hash().unwrap()
    );
}

#[test]
fn gradient_envelope_rejections() {
    let mut chain = chain_with(params());
    let cid = cid_of(13);
    // Signer mismatch: miner 3's message signed by miner 2.
    let m = chain.gradient_msg(3, &cid);
    let tx = chain.sign(2, m);
    chain.reject(tx, 28);
    // Wrong chain id.
    let m = chain.gradient_msg(2, &cid);
    let tx = sign_raw(2, m.clone(), 0, "other-chain", chain.next_time());
    chain.reject(tx, 25);
    // Timestamp out of window, both sides; the edge is inside.
    let skew = chain.keeper.params().max_clock_skew_ms as i64;
    for t in [chain.next_time() + skew + 1, chain.next_time() - skew - 1] {
        let tx = sign_raw(2, m.clone(), 0, common::CHAIN, t);
        chain.reject(tx, 27);
    }
    // Sequence gap.
    let tx = sign_raw(2, m.clone(), 5, common::CHAIN, chain.next_time());
    chain.reject(tx, 26);
    // A signature over other bytes (one bit of s flipped), and one made
    // by another key over these bytes.
    let good = sign_raw(2, m.clone(), 0, common::CHAIN, chain.next_time());
    let mut proto = good.as_proto().clone();
    proto.signature[40] ^= 0x01;
    chain.reject(r3mes_chain::SignedTx::from_proto(proto), 5);
    let by_other = sign_raw(3, m.clone(), 0, common::CHAIN, chain.next_time());
    let mut proto = good.as_proto().clone();
    proto.signature = by_other.as_proto().signature.clone();
    chain.reject(r3mes_chain::SignedTx::from_proto(proto), 5);
    let tx = sign_raw(2, m, 0, common::CHAIN, chain.next_time() + skew);
    ok(chain.one(tx.clone()));
    // Replay: in a later block and inside one block.
    chain.reject(tx, 26);
    let other = cid_of(14);
    let m = chain.gradient_msg(2, &other);
    let tx = chain.sign(2, m);
    let r = chain.block(vec![tx.clone(), tx]);
    assert!(r.txs[0].is_ok());
    assert_eq!(r.txs[1].as_ref().unwrap_err().code(), 26);
}

fn record_len(chunks: usize) -> usize {
    let mut chain = chain_with(params());
    let cid = cid_of(20 + chunks as u64);
    let mut m = gradient_of(&chain, 2, &cid);
    let meta = m.metadata.as_mut().unwrap();
    let c = meta.chunks[0].clone();
    meta.chunks = (0..chunks)
        .map(|i| ChunkData {
            chunk_id: 1_000 + i as u64,
            data_hash: cid_of(500 + i as u64).to_string(),
            ..c.clone()
        })
        .collect();
    meta.gpu_architecture = "ampere".into();
    meta.byte_size = 4 * 1024 * 1024;
    meta.element_count = 1024 * 1024;
    let tx = chain.sign(2, Msg::SubmitGradient(m));
    ok(chain.one(tx));
    let g: StoredGradient = queries::gradient(chain.keeper.state(), &cid.to_string())
        .unwrap()
        .unwrap();
    assert_eq!(g.metadata.as_ref().unwrap().chunks.len(), chunks);
    g.encode_to_vec().len()
}

#[test]
fn gradient_record_with_one_chunk_is_under_1kb() {
    let len = record_len(1);
    assert!(len < 1024, "1-chunk record is {len} bytes");
}

#[test]
fn gradient_record_with_the_most_chunks_is_under_1kb() {
    let len = record_len(8);
    assert!(len < 1024, "8-chunk record is {len} bytes");
}

/// The largest record the rules allow: 8 chunks with CIDv1 hashes (59
/// characters, the longest canonical sha2-256 CID), every number at its
/// maximum, every string at its length limit.
#[test]
fn worst_case_gradient_record_is_under_1kb() {
    let mut chain = chain_with(params());
    let cid = cid_of(40);
    let v1 = |seed: u64| {
        let c = cid_of(seed);
        Cid::new_v1(0x70, *c.hash()).to_string()
    };
    let mut m = gradient_of(&chain, 2, &cid);
    let meta = m.metadata.as_mut().unwrap();
    let c = meta.chunks[0].clone();
    meta.chunks = (0..8)
        .map(|i| ChunkData {
            chunk_id: u64::MAX - i,
            data_hash: v1(600 + i),
            ..c.clone()
        })
        .collect();
    assert_eq!(meta.chunks[0].data_hash.len(), 59);
    meta.gpu_architecture = "g".repeat(32);
    meta.backbone_hash = "b".repeat(64);
    meta.format = "safetensors".into();
    meta.byte_size = u64::MAX;
    meta.element_count = u64::MAX;
    let tx = chain.sign(2, Msg::SubmitGradient(m));
    ok(chain.one(tx));
    let g: StoredGradient = queries::gradient(chain.keeper.state(), &cid.to_string())
        .unwrap()
        .unwrap();
    let len = g.encode_to_vec().len();
    assert!(len < 1024, "worst-case record is {len} bytes");
}

// ---------------------------------------------------------------------------
// Rounds

#[test]
fn rounds_start_end_and_assignment_is_stable() {
    let p = Params {
        default_total_shards: 5,
        ..params()
    };
    let mut chain = Chain::new(1, 3, p);
    let r = chain.block(Vec::new()); // height 2
    let started = pick!(r.end_events, RoundStarted);
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].round_id, 1);
    assert_eq!(started[0].start_height, 2);
    assert_eq!(started[0].start_block_hash, hex_lower(&block_hash(2)));
    assert_eq!(started[0].total_shards, 5);
    assert_eq!(started[0].dataset_hash, "");
    let round = queries::round(chain.keeper.state(), Some(1))
        .unwrap()
        .unwrap();
    assert_eq!(round.start_height, 2);
    assert_eq!(round.end_height, 22);
    assert_eq!(round.start_block_hash, block_hash(2).to_vec());
    let shards: Vec<u64> = (2..=4)
        .map(|i| {
            let (_, s) = queries::shard_of(chain.keeper.state(), &addr(i), None).unwrap();
            let expected =
                r3mes_protocol::shard::assign_shard(&addr(i).to_string(), &block_hash(2), 1, 5)
                    .unwrap();
            assert_eq!(s, expected);
            assert!(s < 5);
            s
        })
        .collect();
    // No new round until height 22.
    let events = chain.advance_to(21);
    assert!(pick!(events, RoundStarted).is_empty());
    let r = chain.block(Vec::new());
    let started = pick!(r.end_events, RoundStarted);
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].round_id, 2);
    assert_eq!(started[0].start_height, 22);
    let round2 = queries::round(chain.keeper.state(), None).unwrap().unwrap();
    assert_eq!(round2.round_id, 2);
    assert_eq!(round2.end_height, 42);
    chain.advance_to(60);
    assert_eq!(
        queries::round(chain.keeper.state(), None)
            .unwrap()
            .unwrap()
            .round_id,
        3
    );
    // Round 1's answers do not change at later heights.
    for (i, s) in (2..=4).zip(shards) {
        let (r, again) = queries::shard_of(chain.keeper.state(), &addr(i), Some(1)).unwrap();
        assert_eq!(r.round_id, 1);
        assert_eq!(again, s);
    }
    assert_eq!(
        queries::shard_of(chain.keeper.state(), &addr(2), Some(99))
            .unwrap_err()
            .code(),
        68
    );
}

// ---------------------------------------------------------------------------
// Datasets

/// A dataset proposal by `proposer`, signed by provider key `provider`.
fn dataset_msg(proposer: u32, provider: u32, seed: u64, shards: usize) -> (Cid, MsgProposeDataset) {
    let dataset = cid_of(seed);
    let shard_cids: Vec<Cid> = (0..shards)
        .map(|i| cid_of(seed * 1000 + 1 + i as u64))
        .collect();
    let msg = dataset_proposal(
        proposer,
        provider,
        &dataset,
        &shard_cids,
        &format!("set-{seed}"),
    );
    (dataset, msg)
}

fn approve_msg(validator: u32, dataset: &Cid, quality_ppm: u64) -> Msg {
    Msg::ApproveDataset(MsgApproveDataset {
        validator: addr(validator).to_string(),
        dataset_hash: dataset.to_string(),
        quality_ppm,
    })
}

fn deactivate_msg(validator: u32, dataset: &Cid) -> Msg {
    Msg::DeactivateDataset(MsgDeactivateDataset {
        validator: addr(validator).to_string(),
        dataset_hash: dataset.to_string(),
    })
}

#[test]
fn dataset_proposal_success_and_rejections() {
    let mut chain = chain_with(params());
    // Provider 7 (not an account) signs; miner 2 proposes.
    let (dataset, msg) = dataset_msg(2, 7, 40, 3);
    let base = msg.clone();
    type Edit = fn(&mut MsgProposeDataset);
    let cases: Vec<(&str, u32, Edit)> = vec![
        ("tampered name", 5, |m| {
            m.metadata.as_mut().unwrap().name.push('!')
        }),
        ("tampered shard list", 5, |m| m.shard_cids.swap(0, 1)),
        ("tampered schema-free size", 5, |m| {
            m.metadata.as_mut().unwrap().size += 1
        }),
        ("flipped signature", 5, |m| {
            m.metadata.as_mut().unwrap().signature[3] ^= 1
        }),
        ("short signature", 3, |m| {
            m.metadata.as_mut().unwrap().signature.pop();
        }),
        ("bad pubkey", 2, |m| {
            m.metadata.as_mut().unwrap().provider_pubkey[0] = 9
        }),
        ("pubkey of another provider", 62, |m| {
            m.metadata.as_mut().unwrap().provider = addr(8).to_string()
        }),
        ("provider not an address", 62, |m| {
            m.metadata.as_mut().unwrap().provider = "nobody".into()
        }),
        ("shard count mismatch", 62, |m| {
            m.metadata.as_mut().unwrap().shard_count = 2
        }),
        ("no shards", 62, |m| {
            m.metadata.as_mut().unwrap().shard_count = 0;
            m.shard_cids.clear();
        }),
        ("missing metadata", 62, |m| m.metadata = None),
        ("empty name", 62, |m| {
            m.metadata.as_mut().unwrap().name.clear()
        }),
        ("data type", 62, |m| {
            m.metadata.as_mut().unwrap().data_type = "video".into()
        }),
        ("quality set", 62, |m| {
            m.metadata.as_mut().unwrap().quality_ppm = 5
        }),
        ("bad dataset cid", 60, |m| m.dataset_hash = "nope".into()),
        ("bad shard cid", 60, |m| m.shard_cids[1] = "nope".into()),
        ("long schema", 62, |m| m.schema = "s".repeat(129)),
    ];
    for (what, code, edit) in cases {
        let mut m = base.clone();
        edit(&mut m);
        let tx = chain.sign(2, Msg::ProposeDataset(m));
        let err = chain.reject(tx, code);
        let _ = (what, err);
    }
    // An unstaked proposer (account 9) is refused.
    let mut m = base.clone();
    m.proposer = addr(9).to_string();
    let tx = chain.sign(9, Msg::ProposeDataset(m));
    chain.reject(tx, 63);

    let h = chain.next_height();
    let tx = chain.sign(2, Msg::ProposeDataset(msg.clone()));
    let out = ok(chain.one(tx));
    let ev = pick!(out.events, Dataset);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].action, "proposed");
    assert_eq!(ev[0].actor, addr(2).to_string());
    assert_eq!(ev[0].dataset_hash, dataset.to_string());
    let d = queries::dataset(chain.keeper.state(), &dataset.to_string())
        .unwrap()
        .unwrap();
    assert_eq!(d.status, DatasetStatus::Proposed as i32);
    assert_eq!(d.shard_count, 3);
    assert_eq!(d.proposer, addr(2).as_bytes().to_vec());
    assert_eq!(d.proposal_height, h);
    assert_eq!(d.approval_height, 0);
    assert_eq!(
        d.metadata.as_ref().unwrap().provider,
        key(7).public_key().address().to_string()
    );
    let shards = queries::shards(chain.keeper.state(), &dataset.to_string(), 100).unwrap();
    assert_eq!(shards.len(), 3);
    for (i, s) in shards.iter().enumerate() {
        assert_eq!(s.shard_id, i as u64);
        assert_eq!(s.approval_height, 0);
        assert_eq!(
            s.data_hash,
            Cid::try_from(msg.shard_cids[i].as_str())
                .unwrap()
                .to_bytes()
        );
        assert_eq!(s.schema, "r3mes-tokens-v1");
    }
    // Duplicate (even from another proposer, same provider signature).
    let mut again = msg.clone();
    again.proposer = addr(3).to_string();
    let tx = chain.sign(3, Msg::ProposeDataset(again));
    chain.reject(tx, 67);
    // Proposer and provider may be the same account.
    let (_, own) = dataset_msg(3, 3, 41, 1);
    let tx = chain.sign(3, Msg::ProposeDataset(own));
    ok(chain.one(tx));
    assert_eq!(
        queries::datasets(chain.keeper.state(), 10).unwrap().len(),
        2
    );
}

#[test]
fn dataset_approval_threshold_quality_and_deactivation() {
    let p = Params {
        dataset_approvals: 2,
        ..params()
    };
    let mut chain = Chain::new(2, 2, p);
    chain.advance_to(2);
    let (dataset, msg) = dataset_msg(3, 9, 50, 4);
    let tx = chain.sign(3, Msg::ProposeDataset(msg));
    ok(chain.one(tx));
    // Rejections: non-validator, unknown dataset, quality out of range,
    // bad CID.
    let tx = chain.sign(3, approve_msg(3, &dataset, 1));
    chain.reject(tx, 63);
    let tx = chain.sign(1, approve_msg(1, &cid_of(999), 1));
    chain.reject(tx, 68);
    let tx = chain.sign(1, approve_msg(1, &dataset, 1_000_001));
    chain.reject(tx, 62);
    let mut bad = approve_msg(1, &dataset, 1);
    if let Msg::ApproveDataset(m) = &mut bad {
        m.dataset_hash = format!("/ipfs/{dataset}");
    }
    let tx = chain.sign(1, bad);
    chain.reject(tx, 60);
    // Deactivating a proposed dataset is refused.
    let tx = chain.sign(1, deactivate_msg(1, &dataset));
    chain.reject(tx, 62);
    // First approval: still proposed.
    let tx = chain.sign(1, approve_msg(1, &dataset, 800_000));
    let out = ok(chain.one(tx));
    let actions: Vec<String> = pick!(out.events, Dataset)
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(actions, ["approval"]);
    let d = queries::dataset(chain.keeper.state(), &dataset.to_string())
        .unwrap()
        .unwrap();
    assert_eq!(d.status, DatasetStatus::Proposed as i32);
    assert_eq!(d.approvals, vec![addr(1).as_bytes().to_vec()]);
    // Double approval.
    let tx = chain.sign(1, approve_msg(1, &dataset, 800_000));
    chain.reject(tx, 67);
    // Second approval: approved at this height, quality is the mean.
    let h = chain.next_height();
    let tx = chain.sign(2, approve_msg(2, &dataset, 600_001));
    let out = ok(chain.one(tx));
    let actions: Vec<String> = pick!(out.events, Dataset)
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(actions, ["approval", "approved"]);
    let d = queries::dataset(chain.keeper.state(), &dataset.to_string())
        .unwrap()
        .unwrap();
    assert_eq!(d.status, DatasetStatus::Approved as i32);
    assert_eq!(d.approval_height, h);
    assert_eq!(d.metadata.as_ref().unwrap().quality_ppm, 700_000);
    for s in queries::shards(chain.keeper.state(), &dataset.to_string(), 100).unwrap() {
        assert_eq!(s.approval_height, h);
    }
    // A third approval is refused: it is no longer awaiting approval.
    let tx = chain.sign(1, approve_msg(1, &dataset, 1));
    chain.reject(tx, 62);
    // Round 2 (starting at height 22) trains on it with 4 shards.
    let events = chain.advance_to(22);
    let started = pick!(events, RoundStarted);
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].round_id, 2);
    assert_eq!(started[0].total_shards, 4);
    assert_eq!(started[0].dataset_hash, dataset.to_string());
    let round = queries::round(chain.keeper.state(), None).unwrap().unwrap();
    assert_eq!(round.dataset_hash, dataset.to_bytes());
    assert_eq!(round.total_shards, 4);
    let (_, shard) = chain.assignment(3);
    assert!(shard < 4);
    // Deactivation: non-validator refused; then the next round falls back.
    let tx = chain.sign(3, deactivate_msg(3, &dataset));
    chain.reject(tx, 63);
    let tx = chain.sign(2, deactivate_msg(2, &dataset));
    let out = ok(chain.one(tx));
    assert_eq!(pick!(out.events, Dataset)[0].action, "deactivated");
    let d = queries::dataset(chain.keeper.state(), &dataset.to_string())
        .unwrap()
        .unwrap();
    assert_eq!(d.status, DatasetStatus::Inactive as i32);
    let tx = chain.sign(2, deactivate_msg(2, &dataset));
    chain.reject(tx, 62);
    // The running round keeps its dataset; the next one has none.
    assert_eq!(
        queries::round(chain.keeper.state(), None)
            .unwrap()
            .unwrap()
            .total_shards,
        4
    );
    let events = chain.advance_to(42);
    let started = pick!(events, RoundStarted);
    assert_eq!(started[0].round_id, 3);
    assert_eq!(started[0].total_shards, 1);
    assert_eq!(started[0].dataset_hash, "");
}

// ---------------------------------------------------------------------------
// Challenges

fn issue_msg(validator: u32, kind: ChallengeKind, cid: &Cid, target: &str) -> Msg {
    Msg::IssueChallenge(MsgIssueChallenge {
        challenger: addr(validator).to_string(),
        kind: kind as i32,
        ipfs_hash: cid.to_string(),
        target: target.into(),
    })
}

fn respond_msg(responder: u32, id: &str, blocks: Vec<Vec<u8>>) -> Msg {
    Msg::RespondChallenge(MsgRespondChallenge {
        responder: addr(responder).to_string(),
        challenge_id: id.into(),
        blocks,
    })
}

/// Issues a manual challenge; returns its id.
fn issue(
    chain: &mut Chain,
    validator: u32,
    kind: ChallengeKind,
    cid: &Cid,
    target: &str,
) -> String {
    let tx = chain.sign(validator, issue_msg(validator, kind, cid, target));
    let out = ok(chain.one(tx));
    let issued = pick!(out.events, ChallengeIssued);
    assert_eq!(issued.len(), 1);
    match out.response {
        TxResponse::ChallengeId(id) => {
            assert_eq!(issued[0].challenge_id, id);
            id
        }
        other => panic!("response {other:?}"),
    }
}

fn challenge(chain: &Chain, id: &str) -> r3mes_chain::proto::Challenge {
    queries::challenge(chain.keeper.state(), id)
        .unwrap()
        .unwrap()
}

#[test]
fn manual_gradient_challenge_answers() {
    // A long window: every rejected answer below takes a block.
    let mut chain = chain_with(Params {
        response_window: 20,
        unbonding_blocks: 30,
        ..params()
    });
    let (cid, store) = submit_sized(&mut chain, 2, 60, 60_000);
    // Rejections of the issue itself.
    let tx = chain.sign(3, issue_msg(3, ChallengeKind::Gradient, &cid, ""));
    chain.reject(tx, 63);
    let tx = chain.sign(1, issue_msg(1, ChallengeKind::Gradient, &cid_of(61), ""));
    chain.reject(tx, 68);
    let tx = chain.sign(1, issue_msg(1, ChallengeKind::Unspecified, &cid, ""));
    chain.reject(tx, 62);
    let mut odd = issue_msg(1, ChallengeKind::Gradient, &cid, "");
    if let Msg::IssueChallenge(m) = &mut odd {
        m.kind = 42;
    }
    let tx = chain.sign(1, odd);
    chain.reject(tx, 62);
    let tx = chain.sign(
        1,
        issue_msg(1, ChallengeKind::Gradient, &cid, &addr(3).to_string()),
    );
    chain.reject(tx, 62);
    let tx = chain.sign(1, issue_msg(1, ChallengeKind::Replica, &cid, ""));
    chain.reject(tx, 68);
    // Two identical challenges in one block: the second is a duplicate.
    let a = chain.sign(1, issue_msg(1, ChallengeKind::Gradient, &cid, ""));
    let b = chain.sign(1, issue_msg(1, ChallengeKind::Gradient, &cid, ""));
    let h = chain.next_height();
    let r = chain.block(vec![a, b]);
    assert_eq!(r.txs[1].as_ref().unwrap_err().code(), 67);
    let id = match &r.txs[0].as_ref().unwrap().response {
        TxResponse::ChallengeId(id) => id.clone(),
        other => panic!("{other:?}"),
    };
    let c = challenge(&chain, &id);
    assert_eq!(c.kind, ChallengeKind::Gradient as i32);
    assert_eq!(c.status, ChallengeStatus::Pending as i32);
    assert_eq!(c.target, addr(2).as_bytes().to_vec());
    assert_eq!(c.challenger, addr(1).as_bytes().to_vec());
    assert_eq!(c.challenge_height, h);
    assert_eq!(c.response_deadline, h + 20);
    assert_eq!(c.draws.len(), 8);
    assert_eq!(c.ipfs_hash, cid.to_bytes());
    let open = queries::open_challenges(chain.keeper.state(), &addr(2), 10).unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(hex_lower(&open[0].challenge_id), id);
    let of_content = |chain: &Chain| {
        queries::challenges_of(chain.keeper.state(), &cid.to_string(), 10)
            .unwrap()
            .iter()
            .map(|c| (hex_lower(&c.challenge_id), c.status))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        of_content(&chain),
        vec![(id.clone(), ChallengeStatus::Pending as i32)]
    );
    assert!(
        queries::challenges_of(chain.keeper.state(), &cid_of(61).to_string(), 10)
            .unwrap()
            .is_empty()
    );
    assert!(queries::challenges_of(chain.keeper.state(), "not-a-cid", 10).is_err());
    assert!(
        queries::open_challenges(chain.keeper.state(), &addr(3), 10)
            .unwrap()
            .is_empty()
    );

    let good = build_proof(&store, &cid, &c.draws).unwrap();
    // Answer by someone else.
    let tx = chain.sign(3, respond_msg(3, &id, good.clone()));
    chain.reject(tx, 63);
    // Wrong blocks: tampered leaf, missing root, blocks for other draws,
    // nothing at all. The challenge stays pending.
    let mut tampered = good.clone();
    let last = tampered.last_mut().unwrap();
    let n = last.len();
    last[n - 1] ^= 0xff;
    let mut missing_root = good.clone();
    missing_root.remove(0);
    let mut missing_inner = good.clone();
    if missing_inner.len() > 2 {
        missing_inner.remove(1);
    }
    let other_draws: Vec<u64> = c.draws.iter().map(|d| d ^ 0x5555_5555).collect();
    let others = build_proof(&store, &cid, &other_draws).unwrap();
    assert_ne!(others, good);
    for blocks in [tampered, missing_root, missing_inner, others, Vec::new()] {
        let tx = chain.sign(2, respond_msg(2, &id, blocks));
        chain.reject(tx, 70);
        assert_eq!(
            challenge(&chain, &id).status,
            ChallengeStatus::Pending as i32
        );
    }
    // Unknown and malformed ids.
    let tx = chain.sign(2, respond_msg(2, &hex_lower(&[7u8; 32]), good.clone()));
    chain.reject(tx, 68);
    let tx = chain.sign(2, respond_msg(2, "zz", good.clone()));
    let err = chain.reject(tx, 62);
    let _ = err;
    // The deadline block still accepts an answer.
    chain.advance_to(h + 19);
    let tx = chain.sign(2, respond_msg(2, &id, good.clone()));
    let out = ok(chain.one(tx));
    let closed = pick!(out.events, ChallengeClosed);
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].status, ChallengeStatus::Resolved as i32);
    let c = challenge(&chain, &id);
    assert_eq!(c.status, ChallengeStatus::Resolved as i32);
    assert_eq!(
        of_content(&chain),
        vec![(id.clone(), ChallengeStatus::Resolved as i32)]
    );
    assert!(c.response_provided);
    assert_eq!(c.closed_height, h + 20);
    assert_eq!(
        c.response_hash,
        r3mes_chain::challenges::response_hash(&good).to_vec()
    );
    assert!(
        queries::open_challenges(chain.keeper.state(), &addr(2), 10)
            .unwrap()
            .is_empty()
    );
    // Answering twice.
    let tx = chain.sign(2, respond_msg(2, &id, good));
    chain.reject(tx, 69);
    // Nothing is slashed later; the closed challenge expires after
    // retention_trace_blocks.
    let events = chain.advance_to(h + 20 + 10);
    assert!(pick!(events, Slashed).is_empty());
    assert!(
        pick!(events, RecordExpired)
            .iter()
            .any(|e| e.record_kind == "challenge" && e.id == id)
    );
    assert!(
        queries::challenge(chain.keeper.state(), &id)
            .unwrap()
            .is_none()
    );
    assert!(of_content(&chain).is_empty(), "the marker goes with it");
}

#[test]
fn late_answer_is_refused_and_deadline_slashes_exactly() {
    let mut chain = chain_with(params());
    let (cid, store) = submit_sized(&mut chain, 2, 62, 20_000);
    // Miner 2 moves most of its stake to unbonding: slashing reaches it.
    let tx = chain.sign(2, unstake_msg(2, STAKE - 1_000));
    ok(chain.one(tx));
    let h = chain.next_height();
    let id = issue(&mut chain, 1, ChallengeKind::Gradient, &cid, "");
    let c = challenge(&chain, &id);
    let before = chain.acct(2);
    let validator = chain.acct(1);
    let supply = chain.supply();
    chain.advance_to(h + 2);
    assert_eq!(chain.acct(2), before);
    let r = chain.block(Vec::new()); // h + 3: the deadline
    let slashed = pick!(r.end_events, Slashed);
    assert_eq!(slashed.len(), 1);
    let bonded = before.stake + before.unbonding;
    let amount = bonded * 50_000 / 1_000_000;
    let reward = amount / 2;
    assert_eq!(slashed[0].amount, amount.to_string());
    assert_eq!(slashed[0].to_beneficiary, reward.to_string());
    assert_eq!(slashed[0].burned, (amount - reward).to_string());
    assert_eq!(slashed[0].beneficiary, addr(1).to_string());
    assert_eq!(slashed[0].reason, "availability");
    let after = chain.acct(2);
    assert_eq!(after.stake, 0);
    assert_eq!(after.unbonding, before.unbonding - (amount - before.stake));
    assert_eq!(after.balance, before.balance);
    assert_eq!(chain.acct(1).balance, validator.balance + reward);
    assert_eq!(chain.supply(), supply - (amount - reward));
    assert_eq!(chain.supply(), common::holdings(chain.keeper.state()));
    let closed = pick!(r.end_events, ChallengeClosed);
    assert_eq!(closed[0].status, ChallengeStatus::Failed as i32);
    let failed = challenge(&chain, &id);
    assert_eq!(failed.status, ChallengeStatus::Failed as i32);
    assert_eq!(failed.fault_type, "no_response");
    assert!(failed.slash_triggered);
    assert_eq!(failed.slash_amount, amount.to_string());
    // A late (even correct) answer is refused.
    let good = build_proof(&store, &cid, &c.draws).unwrap();
    let tx = chain.sign(2, respond_msg(2, &id, good));
    chain.reject(tx, 69);
    // It is slashed once only.
    let events = chain.advance_to(h + 8);
    assert!(pick!(events, Slashed).is_empty());
}

#[test]
fn content_expiring_before_the_deadline_cannot_be_challenged() {
    // Retention drops a gradient at its expiry height and tells its holder
    // to unpin it: a challenge that would still be open then must not be
    // issued, or the holder would be slashed for following the chain.
    let mut chain = chain_with(params());
    let window = params().response_window;
    let (cid, _store) = submit_sized(&mut chain, 2, 63, 20_000);
    let expiry = queries::gradient(chain.keeper.state(), &cid.to_string())
        .unwrap()
        .unwrap()
        .expiry_height;
    // The last height whose deadline falls before the expiry: accepted.
    chain.advance_to(expiry - window - 2);
    let id = issue(&mut chain, 1, ChallengeKind::Gradient, &cid, "");
    assert_eq!(challenge(&chain, &id).response_deadline, expiry - 1);
    // One block later the deadline would meet the expiry: refused, atomically.
    assert_eq!(chain.next_height() + window, expiry);
    let tx = chain.sign(1, issue_msg(1, ChallengeKind::Gradient, &cid, ""));
    let err = chain.reject(tx, 62);
    assert!(
        err.to_string()
            .contains(&format!("expires at height {expiry}")),
        "{err}"
    );
    // Replicas follow the same rule.
    let (data, replica, _replica_store, rid) = replica_of(3, &content(64, 5_000));
    let tx = chain.sign(3, replica_msg(3, &data, &replica, &rid));
    ok(chain.one(tx));
    let replica_expiry = queries::replica(chain.keeper.state(), &replica.to_string())
        .unwrap()
        .unwrap()
        .expiry_height;
    chain.advance_to(replica_expiry - window);
    let tx = chain.sign(1, issue_msg(1, ChallengeKind::Replica, &replica, ""));
    chain.reject(tx, 62);
}

#[test]
fn gradient_retention_must_outlive_a_sampled_challenge() {
    let short = Params {
        retention_gradient_blocks: params().response_window + 1,
        ..params()
    };
    let err = short.validate().unwrap_err();
    assert!(
        err.to_string().contains("retention_gradient_blocks"),
        "{err}"
    );
    Params {
        retention_gradient_blocks: params().response_window + 2,
        ..params()
    }
    .validate()
    .unwrap();
}

#[test]
fn sampling_rate_zero_issues_nothing_and_the_cap_holds() {
    let mut chain = chain_with(params());
    for seed in 0..4 {
        chain.submit_gradient(2, 70 + seed);
    }
    let events = chain.advance_to(10);
    assert!(pick!(events, ChallengeIssued).is_empty());

    let p = Params {
        sample_rate_ppm: 1_000_000,
        max_challenges_per_block: 2,
        ..test_params()
    };
    let mut chain = chain_with(p);
    let txs: Vec<_> = (0..5)
        .map(|s| {
            let cid = cid_of(80 + s);
            let m = chain.gradient_msg(2 + (s as u32 % 3), &cid);
            chain.sign(2 + (s as u32 % 3), m)
        })
        .collect();
    let r = chain.block(txs);
    assert!(r.txs.iter().all(Result::is_ok));
    let r = chain.block(Vec::new());
    let issued = pick!(r.end_events, ChallengeIssued);
    assert_eq!(issued.len(), 2);
    for c in &issued {
        assert_eq!(c.challenger, addr(1).to_string());
        assert_eq!(c.kind, ChallengeKind::Gradient as i32);
    }
    // The rest are not challenged later either (sampling looks only at the
    // previous block).
    let r = chain.block(Vec::new());
    assert!(pick!(r.end_events, ChallengeIssued).is_empty());
}

#[test]
fn failed_pin_challenge_slashes_the_pin_stake() {
    let mut chain = chain_with(params());
    let (cid, store) = submit_sized(&mut chain, 2, 90, 9000);
    let expiry = chain.next_height() + 50;
    let pinned_at = chain.next_height();
    let tx = chain.sign(3, pin_until(3, &cid, 10_000, 2, expiry));
    ok(chain.one(tx));
    // Pin challenges need the pinner; another account's pin does not exist.
    let tx = chain.sign(1, issue_msg(1, ChallengeKind::Pin, &cid, ""));
    chain.reject(tx, 62);
    let tx = chain.sign(
        1,
        issue_msg(1, ChallengeKind::Pin, &cid, &addr(2).to_string()),
    );
    chain.reject(tx, 68);
    // Answered: resolved and recorded on the pin.
    let id = issue(
        &mut chain,
        1,
        ChallengeKind::Pin,
        &cid,
        &addr(3).to_string(),
    );
    let c = challenge(&chain, &id);
    assert_eq!(c.target, addr(3).as_bytes().to_vec());
    let blocks = build_proof(&store, &cid, &c.draws).unwrap();
    let tx = chain.sign(3, respond_msg(3, &id, blocks.clone()));
    ok(chain.one(tx));
    let pin = queries::pin(chain.keeper.state(), &cid.to_string(), &addr(3))
        .unwrap()
        .unwrap();
    assert_eq!(
        pin.verification_proof,
        r3mes_chain::challenges::response_hash(&blocks).to_vec()
    );
    // Silent: the pin's stake is slashed, not the account's.
    let h = chain.next_height();
    let id = issue(
        &mut chain,
        1,
        ChallengeKind::Pin,
        &cid,
        &addr(3).to_string(),
    );
    let account = chain.acct(3);
    let validator = chain.acct(1).balance;
    let supply = chain.supply();
    let events = chain.advance_to(h + 3);
    let slashed = pick!(events, Slashed);
    assert_eq!(slashed.len(), 1);
    assert_eq!(slashed[0].reason, "pin_availability");
    assert_eq!(slashed[0].amount, "500");
    assert_eq!(slashed[0].to_beneficiary, "250");
    assert_eq!(slashed[0].burned, "250");
    let pin = queries::pin(chain.keeper.state(), &cid.to_string(), &addr(3))
        .unwrap()
        .unwrap();
    assert_eq!(pin.stake_amount, "9500");
    // The rewards accrued since registration are forfeited, not minted.
    let forfeited = pick!(events, Pin);
    assert_eq!(forfeited.len(), 1);
    assert_eq!(forfeited[0].action, "rewards_forfeited");
    assert_eq!(forfeited[0].amount, (2 * (h + 3 - pinned_at)).to_string());
    assert_eq!(pin.rewarded_height, h + 3);
    assert_eq!(pin.rewards_paid, "0");
    assert_eq!(chain.acct(3), account);
    assert_eq!(chain.acct(1).balance, validator + 250);
    assert_eq!(chain.supply(), supply - 250);
    assert_eq!(chain.supply(), common::holdings(chain.keeper.state()));
    assert_eq!(challenge(&chain, &id).slash_amount, "500");
}

// ---------------------------------------------------------------------------
// Replicas

#[test]
fn replica_registration_and_challenge() {
    let mut chain = chain_with(params());
    let data = content(100, 12_000);
    let (data_cid, replica_cid, store, rid) = replica_of(3, &data);
    assert_ne!(data_cid, replica_cid);
    // Rejections.
    let (_, _, _, rid_of_2) = replica_of(2, &data);
    let tx = chain.sign(3, replica_msg(3, &data_cid, &replica_cid, &rid_of_2));
    chain.reject(tx, 62);
    let tx = chain.sign(3, replica_msg(3, &data_cid, &replica_cid, "abcd"));
    chain.reject(tx, 62);
    let tx = chain.sign(3, replica_msg(3, &data_cid, &data_cid, &rid));
    chain.reject(tx, 62);
    let tx = chain.sign(
        3,
        replica_msg(3, &data_cid, &cid_of(1), &hex_lower(&[0; 32])),
    );
    chain.reject(tx, 62);
    let mut bad = replica_msg(3, &data_cid, &replica_cid, &rid);
    if let Msg::RegisterReplica(m) = &mut bad {
        m.replica_hash = "x".into();
    }
    let tx = chain.sign(3, bad);
    chain.reject(tx, 60);
    // Unstaked account 9 (with its own replication id).
    let (_, r9, _, rid9) = replica_of(9, &data);
    let tx = chain.sign(9, replica_msg(9, &data_cid, &r9, &rid9));
    chain.reject(tx, 63);
    // Success.
    let h = chain.next_height();
    let tx = chain.sign(3, replica_msg(3, &data_cid, &replica_cid, &rid));
    let out = ok(chain.one(tx));
    let ev = pick!(out.events, ReplicaRegistered);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].data_hash, data_cid.to_string());
    assert_eq!(ev[0].replica_hash, replica_cid.to_string());
    assert_eq!(ev[0].miner, addr(3).to_string());
    let rec = queries::replica(chain.keeper.state(), &replica_cid.to_string())
        .unwrap()
        .unwrap();
    assert_eq!(rec.block_height, h);
    assert_eq!(rec.expiry_height, h + 30);
    assert_eq!(rec.miner_address, addr(3).as_bytes().to_vec());
    assert_eq!(hex_lower(&rec.replication_id), rid);
    assert_eq!(rec.timestamp_ms, chain.keeper.block_time_ms(h).unwrap());
    // Duplicate.
    let tx = chain.sign(3, replica_msg(3, &data_cid, &replica_cid, &rid));
    chain.reject(tx, 67);
    // Challenge on the replica, answered from the replica's blocks; an
    // answer with the original data's blocks fails.
    let id = issue(&mut chain, 1, ChallengeKind::Replica, &replica_cid, "");
    let c = challenge(&chain, &id);
    assert_eq!(c.target, addr(3).as_bytes().to_vec());
    let (_, data_store) = import(&data);
    let from_data = build_proof(&data_store, &data_cid, &c.draws).unwrap();
    let tx = chain.sign(3, respond_msg(3, &id, from_data));
    chain.reject(tx, 70);
    let blocks = build_proof(&store, &replica_cid, &c.draws).unwrap();
    let tx = chain.sign(3, respond_msg(3, &id, blocks));
    ok(chain.one(tx));
    assert_eq!(
        challenge(&chain, &id).status,
        ChallengeStatus::Resolved as i32
    );
    // Expiry removes it and unpins the replica CID.
    let events = chain.advance_to(h + 30);
    assert!(
        pick!(events, Unpin)
            .iter()
            .any(|u| u.cid == replica_cid.to_string())
    );
    assert!(
        queries::replica(chain.keeper.state(), &replica_cid.to_string())
            .unwrap()
            .is_none()
    );
}

// ---------------------------------------------------------------------------
// Pins

/// A pin of `cid` by `pinner` expiring at `expiry`.
fn pin_until(pinner: u32, cid: &Cid, stake: u128, reward: u64, expiry: u64) -> Msg {
    Msg::RegisterPin(MsgRegisterPin {
        pinner: addr(pinner).to_string(),
        content_hash: cid.to_string(),
        stake_low: stake as u64,
        stake_high: (stake >> 64) as u64,
        reward_per_block: reward,
        expiry_height: expiry,
    })
}

fn claim_msg(pinner: u32, cid: &Cid) -> Msg {
    Msg::ClaimPinRewards(MsgClaimPinRewards {
        pinner: addr(pinner).to_string(),
        content_hash: cid.to_string(),
    })
}

#[test]
fn pin_registration_bounds() {
    let mut chain = chain_with(params());
    // Content nothing on chain keeps earns nothing: refused.
    let h = chain.next_height();
    let tx = chain.sign(3, pin_until(3, &cid_of(111), 1_000, 1, h + 10));
    let err = chain.reject(tx, 68);
    assert!(
        err.to_string().contains("pinning it earns nothing"),
        "{err}"
    );
    let (cid, _) = submit_sized(&mut chain, 4, 110, 300);
    // (stake, reward, expiry relative to the block, code)
    let cases: [(u128, u64, i64, u32); 7] = [
        (999, 1, 10, 62),
        (1_000, 11, 10, 62),
        (1_000, 1, 0, 62),
        (1_000, 1, -1, 62),
        (1_000, 1, 101, 62),
        (BALANCE + 1, 1, 10, 52),
        (u128::MAX, 1, 10, 52),
    ];
    for (stake, reward, rel, code) in cases {
        let expiry = chain.next_height().checked_add_signed(rel).unwrap();
        let tx = chain.sign(3, pin_until(3, &cid, stake, reward, expiry));
        chain.reject(tx, code);
    }
    let h = chain.next_height();
    let mut bad = pin_until(3, &cid, 1_000, 1, h + 10);
    if let Msg::RegisterPin(m) = &mut bad {
        m.content_hash = format!("/ipfs/{cid}");
    }
    let tx = chain.sign(3, bad);
    chain.reject(tx, 60);
    // Edges are accepted: minimum stake, maximum reward, latest expiry; the
    // whole balance may be bonded.
    let h = chain.next_height();
    let tx = chain.sign(3, pin_until(3, &cid, 1_000, 10, h + 100));
    let out = ok(chain.one(tx));
    let ev = pick!(out.events, Pin);
    assert_eq!(ev[0].action, "registered");
    assert_eq!(ev[0].amount, "1000");
    let tx = chain.sign(3, pin_until(3, &cid, 1_000, 1, h + 10));
    chain.reject(tx, 67);
    let h = chain.next_height();
    let tx = chain.sign(2, pin_until(2, &cid, BALANCE, 0, h + 1));
    ok(chain.one(tx));
    assert_eq!(chain.acct(2).balance, 0);
    assert_eq!(
        queries::pins_of(chain.keeper.state(), &cid.to_string(), 10)
            .unwrap()
            .len(),
        2
    );
    assert_eq!(chain.supply(), common::holdings(chain.keeper.state()));
}

#[test]
fn pin_rewards_claims_expiry_and_obligation_end() {
    let mut chain = chain_with(params());
    let (cid, _) = submit_sized(&mut chain, 4, 120, 300);
    let start = chain.next_height();
    let expiry = start + 20;
    let tx = chain.sign(3, pin_until(3, &cid, 5_000, 7, expiry));
    ok(chain.one(tx));
    let acc = chain.acct(3);
    assert_eq!(acc.balance, BALANCE - 5_000);
    let pin = queries::pin(chain.keeper.state(), &cid.to_string(), &addr(3))
        .unwrap()
        .unwrap();
    assert_eq!(pin.stake_amount, "5000");
    assert_eq!(pin.start_height, start);
    assert_eq!(pin.rewarded_height, start);
    assert_eq!(pin.expiry_height, expiry);
    assert_eq!(pin.rewards_paid, "0");
    let supply0 = chain.supply();
    assert_eq!(supply0, common::holdings(chain.keeper.state()));
    // Claim at start + 6: 6 blocks.
    chain.advance_to(start + 5);
    let tx = chain.sign(3, claim_msg(3, &cid));
    let out = ok(chain.one(tx));
    assert_eq!(out.response, TxResponse::Rewards(42));
    let ev = pick!(out.events, Pin);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].action, "reward");
    assert_eq!(ev[0].amount, "42");
    assert_eq!(chain.supply(), supply0 + 42);
    assert_eq!(chain.acct(3).balance, BALANCE - 5_000 + 42);
    // Claiming again in the next block pays one block.
    let tx = chain.sign(3, claim_msg(3, &cid));
    assert_eq!(ok(chain.one(tx)).response, TxResponse::Rewards(7));
    // Two claims in one block: the second pays nothing.
    let a = chain.sign(3, claim_msg(3, &cid));
    let b = chain.sign(3, claim_msg(3, &cid));
    let r = chain.block(vec![a, b]);
    assert_eq!(r.txs[0].as_ref().unwrap().response, TxResponse::Rewards(7));
    assert_eq!(r.txs[1].as_ref().unwrap().response, TxResponse::Rewards(0));
    // Claims for unknown pins.
    let tx = chain.sign(2, claim_msg(2, &cid));
    chain.reject(tx, 68);
    let tx = chain.sign(3, claim_msg(3, &cid_of(121)));
    chain.reject(tx, 68);
    // At the expiry height a challenge is refused (obligation ended), and
    // the GC pays the rest and returns the stake.
    chain.advance_to(expiry - 1);
    let balance = chain.acct(3).balance;
    let supply = chain.supply();
    let tx = chain.sign(
        1,
        issue_msg(1, ChallengeKind::Pin, &cid, &addr(3).to_string()),
    );
    let r = chain.block(vec![tx]);
    assert_eq!(r.txs[0].as_ref().unwrap_err().code(), 62);
    let pins = pick!(r.end_events, Pin);
    let actions: Vec<&str> = pins.iter().map(|p| p.action.as_str()).collect();
    assert_eq!(actions, ["reward", "expired"]);
    let rest = u128::from(expiry - (start + 8)) * 7;
    assert_eq!(pins[0].amount, rest.to_string());
    assert_eq!(pins[1].amount, "5000");
    assert!(
        pick!(r.end_events, RecordExpired)
            .iter()
            .any(|e| e.record_kind == "pin")
    );
    assert_eq!(chain.acct(3).balance, balance + rest + 5_000);
    assert_eq!(chain.supply(), supply + rest);
    // Total rewards: (expiry - start) * rate.
    assert_eq!(
        chain.acct(3).balance,
        BALANCE + u128::from(expiry - start) * 7
    );
    assert!(
        queries::pin(chain.keeper.state(), &cid.to_string(), &addr(3))
            .unwrap()
            .is_none()
    );
    let tx = chain.sign(
        1,
        issue_msg(1, ChallengeKind::Pin, &cid, &addr(3).to_string()),
    );
    chain.reject(tx, 68);
    let tx = chain.sign(3, claim_msg(3, &cid));
    chain.reject(tx, 68);
    assert_eq!(chain.supply(), common::holdings(chain.keeper.state()));
}

// ---------------------------------------------------------------------------
// Verification results

fn verification_msg(
    validator: u32,
    cid: &Cid,
    cosine: i64,
    commitment: usize,
    passed: bool,
) -> Msg {
    Msg::SubmitVerification(MsgSubmitVerification {
        validator: addr(validator).to_string(),
        ipfs_hash: cid.to_string(),
        cosine_ppm: cosine,
        vault_commitment: vec![0xab; commitment],
        passed,
    })
}

#[test]
fn verification_results() {
    let mut chain = Chain::new(2, 2, params());
    chain.advance_to(2);
    let (cid, _) = chain.submit_gradient(3, 130);
    let gradient = queries::gradient(chain.keeper.state(), &cid.to_string())
        .unwrap()
        .unwrap();
    let cases = [
        (verification_msg(3, &cid, 0, 32, true), 3, 63),
        (verification_msg(1, &cid, 1_000_001, 32, true), 1, 62),
        (verification_msg(1, &cid, -1_000_001, 32, true), 1, 62),
        (verification_msg(1, &cid, i64::MIN, 32, true), 1, 62),
        (verification_msg(1, &cid, 0, 31, true), 1, 62),
        (verification_msg(1, &cid, 0, 33, true), 1, 62),
        (verification_msg(1, &cid, 0, 0, true), 1, 62),
        (verification_msg(1, &cid_of(131), 0, 32, true), 1, 68),
    ];
    for (msg, signer, code) in cases {
        let tx = chain.sign(signer, msg);
        chain.reject(tx, code);
    }
    // Passed: recorded, nothing slashed; edges of the cosine range.
    let miner = chain.acct(3);
    let h = chain.next_height();
    let tx = chain.sign(1, verification_msg(1, &cid, -1_000_000, 32, true));
    let out = ok(chain.one(tx));
    let ev = pick!(out.events, Verification);
    assert_eq!(ev[0].cosine_ppm, -1_000_000);
    assert!(ev[0].passed);
    assert!(pick!(out.events, Slashed).is_empty());
    assert_eq!(chain.acct(3), miner);
    let v = queries::verifications(chain.keeper.state(), &cid.to_string(), 10).unwrap();
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].validator, addr(1).as_bytes().to_vec());
    assert_eq!(v[0].block_height, h);
    assert_eq!(v[0].slash_amount, "0");
    assert_eq!(v[0].expiry_height, gradient.expiry_height);
    // Duplicate.
    let tx = chain.sign(1, verification_msg(1, &cid, 5, 32, false));
    chain.reject(tx, 67);
    // Failed, by validator 2: 2 % of the miner's bond, half to validator 2.
    let v2 = chain.acct(2).balance;
    let supply = chain.supply();
    let tx = chain.sign(2, verification_msg(2, &cid, 1_000_000, 32, false));
    let out = ok(chain.one(tx));
    let amount = STAKE * 20_000 / 1_000_000;
    let slashed = pick!(out.events, Slashed);
    assert_eq!(slashed.len(), 1);
    assert_eq!(slashed[0].reason, "verification");
    assert_eq!(slashed[0].amount, amount.to_string());
    assert_eq!(slashed[0].beneficiary, addr(2).to_string());
    assert_eq!(chain.acct(3).stake, STAKE - amount);
    assert_eq!(chain.acct(2).balance, v2 + amount / 2);
    assert_eq!(chain.supply(), supply - amount / 2);
    let v = queries::verifications(chain.keeper.state(), &cid.to_string(), 10).unwrap();
    assert_eq!(v.len(), 2);
    assert!(
        v.iter()
            .any(|r| r.slash_amount == amount.to_string() && !r.passed)
    );
    // Results expire with the gradient.
    let events = chain.advance_to(gradient.expiry_height);
    assert_eq!(
        pick!(events, RecordExpired)
            .iter()
            .filter(|e| e.record_kind == "verification")
            .count(),
        2
    );
    assert!(
        queries::verifications(chain.keeper.state(), &cid.to_string(), 10)
            .unwrap()
            .is_empty()
    );
}

// ---------------------------------------------------------------------------
// Models and traces

fn model(version: u64, backbone: &Cid, adapters: &[(&Cid, u64, &str)]) -> ModelVersion {
    model_version(version, backbone, adapters)
}

fn model_msg(authority: u32, m: ModelVersion) -> Msg {
    Msg::RegisterModel(MsgRegisterModel {
        authority: addr(authority).to_string(),
        model: Some(m),
    })
}

fn trace_msg(submitter: u32, trace: &Cid, gradient: &str) -> Msg {
    Msg::RecordTrace(MsgRecordTrace {
        submitter: addr(submitter).to_string(),
        trace_hash: trace.to_string(),
        gradient_hash: gradient.into(),
    })
}

#[test]
fn model_registration_rules() {
    let mut chain = chain_with(params());
    let (b, a) = (cid_of(140), cid_of(141));
    let good = model(1, &b, &[(&a, 16, "fp16")]);
    type Edit = fn(&mut ModelVersion);
    let cases: Vec<(u32, Edit)> = vec![
        (62, |m| m.version = 0),
        (62, |m| m.lora_adapters[0].rank = 3),
        (62, |m| m.lora_adapters[0].rank = 65),
        (62, |m| m.lora_adapters[0].precision = "int8".into()),
        (62, |m| m.lora_adapters[0].precision = "FP16".into()),
        (62, |m| m.lora_adapters[0].layer_id = "l".repeat(129)),
        (62, |m| m.checksum = vec![0; 65]),
        (60, |m| m.backbone_hash = "nope".into()),
        (60, |m| m.backbone_hash.clear()),
        (60, |m| m.lora_adapters[0].adapter_hash = "nope".into()),
        (60, |m| m.training_state_hash = "nope".into()),
        (60, |m| m.metadata_hash = "/ipfs/x".into()),
    ];
    for (code, edit) in cases {
        let mut m = good.clone();
        edit(&mut m);
        let tx = chain.sign(1, model_msg(1, m));
        chain.reject(tx, code);
    }
    let tx = chain.sign(2, model_msg(2, good.clone()));
    chain.reject(tx, 63);
    let tx = chain.sign(
        1,
        Msg::RegisterModel(MsgRegisterModel {
            authority: addr(1).to_string(),
            model: None,
        }),
    );
    chain.reject(tx, 62);
    // Rank edges and both precisions pass.
    let mut first = model(1, &b, &[(&a, 4, "fp16"), (&a, 64, "fp32")]);
    first.training_state_hash = cid_of(142).to_string();
    first.metadata_hash = cid_of(143).to_string();
    let h = chain.next_height();
    let tx = chain.sign(1, model_msg(1, first));
    let out = ok(chain.one(tx));
    let ev = pick!(out.events, ModelRegistered);
    assert_eq!(ev[0].version, 1);
    assert_eq!(ev[0].backbone_hash, b.to_string());
    let stored = queries::model(chain.keeper.state(), None).unwrap().unwrap();
    assert_eq!(stored.version, 1);
    assert_eq!(stored.block_height, h);
    assert_eq!(stored.expiry_height, h + 50);
    // Versions strictly increase; gaps are fine.
    for v in [1, 0] {
        let tx = chain.sign(1, model_msg(1, model(v, &b, &[])));
        chain.reject(tx, 62);
    }
    let h5 = chain.next_height();
    let tx = chain.sign(1, model_msg(1, model(5, &b, &[])));
    ok(chain.one(tx));
    // A round trains from the newest version registered by its start,
    // across the gap between versions.
    for (start, expected) in [
        (h - 1, None),
        (h, Some(1)),
        (h5 - 1, Some(1)),
        (h5, Some(5)),
    ] {
        let round = r3mes_chain::proto::Round {
            start_height: start,
            ..Default::default()
        };
        let found = r3mes_chain::models::model_for_round(chain.keeper.state(), &round).unwrap();
        assert_eq!(
            found.map(|m| m.version),
            expected,
            "round starting at {start}"
        );
    }
    let tx = chain.sign(1, model_msg(1, model(3, &b, &[])));
    chain.reject(tx, 62);
    assert_eq!(
        queries::model(chain.keeper.state(), None)
            .unwrap()
            .unwrap()
            .version,
        5
    );
    assert_eq!(
        queries::model(chain.keeper.state(), Some(1))
            .unwrap()
            .unwrap()
            .version,
        1
    );
    assert!(
        queries::model(chain.keeper.state(), Some(3))
            .unwrap()
            .is_none()
    );
}

#[test]
fn model_expiry_unpins_only_cids_the_latest_no_longer_uses() {
    let mut chain = chain_with(params());
    let (backbone, old_adapter, new_adapter) = (cid_of(150), cid_of(151), cid_of(152));
    let h1 = chain.next_height();
    let tx = chain.sign(
        1,
        model_msg(1, model(1, &backbone, &[(&old_adapter, 8, "fp32")])),
    );
    ok(chain.one(tx));
    let tx = chain.sign(
        1,
        model_msg(1, model(2, &backbone, &[(&new_adapter, 8, "fp32")])),
    );
    ok(chain.one(tx));
    let events = chain.advance_to(h1 + 50);
    let expired = pick!(events, RecordExpired);
    assert!(
        expired
            .iter()
            .any(|e| e.record_kind == "model" && e.id == "1")
    );
    let unpinned: Vec<String> = pick!(events, Unpin).into_iter().map(|u| u.cid).collect();
    assert_eq!(unpinned, vec![old_adapter.to_string()]);
    assert!(
        queries::model(chain.keeper.state(), Some(1))
            .unwrap()
            .is_none()
    );
    // The latest version's own expiry unpins everything it used.
    let events = chain.advance_to(h1 + 51);
    let mut unpinned: Vec<String> = pick!(events, Unpin).into_iter().map(|u| u.cid).collect();
    unpinned.sort();
    let mut expected = vec![backbone.to_string(), new_adapter.to_string()];
    expected.sort();
    assert_eq!(unpinned, expected);
}

#[test]
fn model_expiry_keeps_cids_of_every_later_version() {
    let mut chain = chain_with(params());
    let (shared, other) = (cid_of(160), cid_of(161));
    let h1 = chain.next_height();
    for (v, b) in [(1, &shared), (2, &shared), (3, &other)] {
        let tx = chain.sign(1, model_msg(1, model(v, b, &[])));
        ok(chain.one(tx));
    }
    // Version 1 expires while version 2 (still retained) uses its backbone.
    let events = chain.advance_to(h1 + 50);
    assert!(
        pick!(events, RecordExpired)
            .iter()
            .any(|e| e.record_kind == "model")
    );
    assert!(
        queries::model(chain.keeper.state(), Some(2))
            .unwrap()
            .is_some()
    );
    let unpinned: Vec<String> = pick!(events, Unpin).into_iter().map(|u| u.cid).collect();
    assert!(
        !unpinned.contains(&shared.to_string()),
        "unpinned {shared} although version 2 still uses it"
    );
}

#[test]
fn traces_recorded_queried_and_expired() {
    let mut chain = chain_with(params());
    let (gradient, _) = chain.submit_gradient(2, 170);
    let trace = cid_of(171);
    let tx = chain.sign(3, trace_msg(3, &trace, "nope"));
    chain.reject(tx, 60);
    let mut bad = trace_msg(3, &trace, "");
    if let Msg::RecordTrace(m) = &mut bad {
        m.trace_hash = String::new();
    }
    let tx = chain.sign(3, bad);
    chain.reject(tx, 60);
    let h = chain.next_height();
    let tx = chain.sign(3, trace_msg(3, &trace, &gradient.to_string()));
    let out = ok(chain.one(tx));
    let id = match out.response {
        TxResponse::TraceId(id) => id,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        id,
        hex_lower(&r3mes_chain::models::trace_id(&trace.to_bytes(), &addr(3)))
    );
    let ev = pick!(out.events, TraceRecorded);
    assert_eq!(ev[0].trace_id, id);
    assert_eq!(ev[0].trace_hash, trace.to_string());
    let t = queries::trace(chain.keeper.state(), &id).unwrap().unwrap();
    assert_eq!(t.trace_hash, trace.to_bytes());
    assert_eq!(t.gradient_hash, gradient.to_bytes());
    assert_eq!(t.submitter, addr(3).as_bytes().to_vec());
    assert_eq!(t.block_height, h);
    assert_eq!(t.expiry_height, h + 10);
    // Duplicate by the same submitter; another submitter (no stake needed,
    // no gradient link) may record the same CID.
    let tx = chain.sign(3, trace_msg(3, &trace, ""));
    chain.reject(tx, 67);
    let other = cid_of(172);
    let tx = chain.sign(9, trace_msg(9, &other, ""));
    ok(chain.one(tx));
    let events = chain.advance_to(h + 10);
    let expired = pick!(events, RecordExpired);
    assert!(
        expired
            .iter()
            .any(|e| e.record_kind == "trace" && e.id == id)
    );
    assert!(
        pick!(events, Unpin)
            .iter()
            .any(|u| u.cid == trace.to_string())
    );
    assert!(queries::trace(chain.keeper.state(), &id).unwrap().is_none());
}

#[test]
fn unpin_only_when_the_last_record_of_a_cid_expires() {
    let mut chain = chain_with(params());
    let trace = cid_of(180);
    let h = chain.next_height();
    let tx = chain.sign(2, trace_msg(2, &trace, ""));
    ok(chain.one(tx));
    chain.advance_to(h + 4);
    let tx = chain.sign(3, trace_msg(3, &trace, ""));
    ok(chain.one(tx));
    // Submitter 2's trace expires at h + 10; submitter 3's lives to h + 15.
    let events = chain.advance_to(h + 10);
    assert!(
        pick!(events, RecordExpired)
            .iter()
            .any(|e| e.record_kind == "trace")
    );
    assert!(
        !pick!(events, Unpin)
            .iter()
            .any(|u| u.cid == trace.to_string()),
        "the CID was unpinned while another trace record still uses it"
    );
}

// ---------------------------------------------------------------------------
// Staking

#[test]
fn stake_unstake_and_unbonding_release() {
    let mut chain = chain_with(params());
    let tx = chain.sign(2, stake_msg(2, BALANCE + 1));
    chain.reject(tx, 52);
    let tx = chain.sign(2, unstake_msg(2, STAKE + 1));
    chain.reject(tx, 62);
    let tx = chain.sign(2, stake_msg(2, u128::MAX));
    chain.reject(tx, 52);
    let supply = chain.supply();
    let tx = chain.sign(2, stake_msg(2, 500));
    let out = ok(chain.one(tx));
    let ev = pick!(out.events, Stake);
    assert_eq!(
        (ev[0].action.as_str(), ev[0].amount.as_str()),
        ("bond", "500")
    );
    assert_eq!(chain.acct(2).balance, BALANCE - 500);
    assert_eq!(chain.acct(2).stake, STAKE + 500);
    let h = chain.next_height();
    let tx = chain.sign(2, unstake_msg(2, 800));
    let out = ok(chain.one(tx));
    assert_eq!(pick!(out.events, Stake)[0].action, "unbond");
    let acc = chain.acct(2);
    assert_eq!(acc.stake, STAKE - 300);
    assert_eq!(acc.unbonding, 800);
    assert_eq!(acc.unbonding_release_height, h + 5);
    assert_eq!(chain.supply(), supply);
    // Not released without a transaction, nor by one before the height.
    chain.advance_to(h + 3);
    let tx = chain.sign(2, send_msg(2, 3, 1));
    let out = ok(chain.one(tx)); // h + 4
    assert!(pick!(out.events, Stake).is_empty());
    assert_eq!(chain.acct(2).unbonding, 800);
    chain.advance_to(h + 8);
    assert_eq!(chain.acct(2).unbonding, 800);
    // A failing transaction releases nothing either (atomic).
    let tx = chain.sign(2, stake_msg(2, BALANCE * 2));
    chain.reject(tx, 52);
    assert_eq!(chain.acct(2).unbonding, 800);
    // The account's next transaction releases it first.
    let before = chain.acct(2).balance;
    let tx = chain.sign(2, send_msg(2, 3, 1));
    let out = ok(chain.one(tx));
    let ev = pick!(out.events, Stake);
    assert_eq!(
        (ev[0].action.as_str(), ev[0].amount.as_str()),
        ("release", "800")
    );
    let acc = chain.acct(2);
    assert_eq!(acc.unbonding, 0);
    assert_eq!(acc.balance, before + 800 - 1);
    assert_eq!(chain.supply(), supply);
    assert_eq!(chain.supply(), common::holdings(chain.keeper.state()));
}

#[test]
fn a_later_unstake_restarts_the_wait() {
    let mut chain = chain_with(params());
    let h = chain.next_height();
    let tx = chain.sign(2, unstake_msg(2, 100));
    ok(chain.one(tx));
    chain.advance_to(h + 3);
    let tx = chain.sign(2, unstake_msg(2, 50)); // h + 4
    ok(chain.one(tx));
    assert_eq!(chain.acct(2).unbonding_release_height, h + 4 + 5);
    chain.advance_to(h + 5);
    let tx = chain.sign(2, send_msg(2, 3, 1));
    ok(chain.one(tx)); // h + 6: not yet
    assert_eq!(chain.acct(2).unbonding, 150);
}

// ---------------------------------------------------------------------------
// Retention GC

#[test]
fn gc_is_bounded_per_block_and_the_queue_continues() {
    let p = Params {
        max_gc_per_block: 5,
        ..params()
    };
    let mut chain = chain_with(p);
    // 12 gradients in one block (height 3), one more at height 4.
    let mut txs = Vec::new();
    let mut cids = Vec::new();
    for s in 0..12u64 {
        let miner = 2 + (s % 3) as u32;
        let cid = cid_of(200 + s);
        let m = chain.gradient_msg(miner, &cid);
        txs.push(chain.sign(miner, m));
        cids.push(cid);
    }
    let r = chain.block(txs);
    assert!(r.txs.iter().all(Result::is_ok));
    let (late, _) = chain.submit_gradient(2, 300);
    let count = |events: &[Event]| {
        pick!(events, RecordExpired)
            .iter()
            .filter(|e| e.record_kind == "gradient")
            .count()
    };
    let events = chain.advance_to(32);
    assert_eq!(count(&events), 0);
    let mut per_block = Vec::new();
    let mut unpinned = Vec::new();
    for _ in 0..4 {
        let r = chain.block(Vec::new());
        per_block.push(count(&r.end_events));
        unpinned.extend(pick!(r.end_events, Unpin).into_iter().map(|u| u.cid));
    }
    // Height 33: 5, 34: 5 (the height-34 record waits), 35: 2 + 1, 36: 0.
    assert_eq!(per_block, [5, 5, 3, 0]);
    let mut expected: Vec<String> = cids.iter().map(Cid::to_string).collect();
    expected.push(late.to_string());
    unpinned.sort();
    expected.sort();
    assert_eq!(unpinned, expected);
    for cid in cids.iter().chain([&late]) {
        assert!(
            queries::gradient(chain.keeper.state(), &cid.to_string())
                .unwrap()
                .is_none()
        );
    }
    assert!(
        queries::gradients_in_round(chain.keeper.state(), 1, None, 100)
            .unwrap()
            .is_empty()
    );
}

// ---------------------------------------------------------------------------
// Queries

#[test]
fn queries_list_what_was_stored() {
    let mut chain = chain_with(params());
    let (a, _) = chain.submit_gradient(2, 400);
    let (b, _) = chain.submit_gradient(2, 401);
    let (c, _) = chain.submit_gradient(3, 402);
    let state = chain.keeper.state();
    assert_eq!(
        queries::gradients_in_round(state, 1, None, 100)
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        queries::gradients_in_round(state, 1, None, 2)
            .unwrap()
            .len(),
        2
    );
    let of2 = queries::gradients_in_round(state, 1, Some(&addr(2)), 100).unwrap();
    let mut cids: Vec<Vec<u8>> = of2.iter().map(|g| g.ipfs_hash.clone()).collect();
    cids.sort();
    let mut expected = vec![a.to_bytes(), b.to_bytes()];
    expected.sort();
    assert_eq!(cids, expected);
    assert_eq!(
        queries::gradients_in_round(state, 1, Some(&addr(3)), 100).unwrap()[0].ipfs_hash,
        c.to_bytes()
    );
    assert!(
        queries::gradients_in_round(state, 1, Some(&addr(4)), 100)
            .unwrap()
            .is_empty()
    );
    assert!(
        queries::gradients_in_round(state, 2, None, 100)
            .unwrap()
            .is_empty()
    );
    // Next round: miner 2 submits again; gradients_of_miner is newest first.
    chain.advance_to(22);
    let (d, _) = chain.submit_gradient(2, 403);
    let state = chain.keeper.state();
    let mine = queries::gradients_of_miner(state, &addr(2), 10, 100).unwrap();
    assert_eq!(mine.len(), 3);
    assert_eq!(mine[0].ipfs_hash, d.to_bytes());
    assert_eq!(
        queries::gradients_of_miner(state, &addr(2), 1, 100)
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        queries::gradients_of_miner(state, &addr(2), 10, 2)
            .unwrap()
            .len(),
        2
    );
    assert!(
        queries::gradients_of_miner(state, &addr(4), 10, 100)
            .unwrap()
            .is_empty()
    );
    let (round, shard) = queries::shard_of(state, &addr(2), None).unwrap();
    assert_eq!((round.round_id, shard), (2, 0));
    assert_eq!(queries::validators(state).unwrap(), vec![addr(1)]);
    assert_eq!(queries::account(state, &addr(2)).unwrap().sequence, 3);
    // Datasets, shards, pins, verifications, models, traces.
    let (dataset, msg) = dataset_msg(2, 2, 404, 2);
    let tx = chain.sign(2, Msg::ProposeDataset(msg));
    ok(chain.one(tx));
    let h = chain.next_height();
    let txs = vec![
        chain.sign(2, pin_until(2, &a, 1_000, 1, h + 5)),
        chain.sign(3, pin_until(3, &a, 2_000, 1, h + 5)),
        chain.sign(1, verification_msg(1, &a, 900_000, 32, true)),
        chain.sign(1, model_msg(1, model(7, &a, &[]))),
        chain.sign(4, trace_msg(4, &b, &a.to_string())),
    ];
    let r = chain.block(txs);
    assert!(r.txs.iter().all(Result::is_ok));
    let trace_id = match &r.txs[4].as_ref().unwrap().response {
        TxResponse::TraceId(id) => id.clone(),
        other => panic!("{other:?}"),
    };
    let state = chain.keeper.state();
    assert_eq!(
        queries::datasets(state, 10).unwrap()[0].dataset_hash,
        dataset.to_bytes()
    );
    assert_eq!(
        queries::shards(state, &dataset.to_string(), 10)
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        queries::shards(state, &dataset.to_string(), 1)
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        queries::pins_of(state, &a.to_string(), 10).unwrap().len(),
        2
    );
    assert_eq!(queries::pins_of(state, &a.to_string(), 1).unwrap().len(), 1);
    assert!(
        queries::pins_of(state, &b.to_string(), 10)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        queries::verifications(state, &a.to_string(), 10)
            .unwrap()
            .len(),
        1
    );
    assert!(
        queries::verifications(state, &b.to_string(), 10)
            .unwrap()
            .is_empty()
    );
    assert_eq!(queries::model(state, None).unwrap().unwrap().version, 7);
    assert_eq!(
        queries::trace(state, &trace_id).unwrap().unwrap().submitter,
        addr(4).as_bytes().to_vec()
    );
    // Malformed query inputs are typed errors.
    assert_eq!(queries::gradient(state, "nope").unwrap_err().code(), 60);
    assert_eq!(queries::trace(state, "00").unwrap_err().code(), 62);
    assert_eq!(queries::challenge(state, "xyz").unwrap_err().code(), 62);
    assert!(
        queries::dataset(state, &cid_of(405).to_string())
            .unwrap()
            .is_none()
    );
}

#[test]
fn pin_challenged_just_before_expiry_is_still_slashable() {
    let mut chain = chain_with(params());
    let (cid, _) = submit_sized(&mut chain, 2, 190, 4000);
    let expiry = chain.next_height() + 10;
    let tx = chain.sign(3, pin_until(3, &cid, 10_000, 0, expiry));
    ok(chain.one(tx));
    chain.advance_to(expiry - 2);
    // Issued at expiry - 1 (allowed: the pin has not expired); the deadline
    // is expiry + 2, after the GC of height `expiry` ended the pin.
    let id = issue(
        &mut chain,
        1,
        ChallengeKind::Pin,
        &cid,
        &addr(3).to_string(),
    );
    assert_eq!(challenge(&chain, &id).response_deadline, expiry + 2);
    let supply = chain.supply();
    let events = chain.advance_to(expiry + 2);
    assert_eq!(
        challenge(&chain, &id).status,
        ChallengeStatus::Failed as i32
    );
    let slashed = pick!(events, Slashed);
    assert_eq!(slashed.len(), 1, "the silent pinner was not slashed");
    assert_eq!(slashed[0].amount, "500");
    assert!(chain.supply() < supply);
}

// ---------------------------------------------------------------------------
// Listings by address

#[test]
fn records_are_listed_by_the_address_that_holds_them() {
    let mut chain = chain_with(params());
    let (cid, _) = submit_sized(&mut chain, 2, 140, 2_000);
    let h = chain.next_height();
    let pin = chain.sign(3, pin_until(3, &cid, 1_000, 1, h + 5));
    let (data, replica, _, rid) = replica_of(4, &content(141, 3_000));
    let replica_tx = chain.sign(4, replica_msg(4, &data, &replica, &rid));
    let verification = chain.sign(1, verification_msg(1, &cid, 990_000, 32, true));
    let trace = chain.sign(2, trace_msg(2, &cid_of(142), ""));
    let r = chain.block(vec![pin, replica_tx, verification, trace]);
    assert!(r.txs.iter().all(Result::is_ok), "{:?}", r.txs);
    let owned = |chain: &Chain, who: u32, kinds: &[ExpiryKind]| {
        queries::owned(chain.keeper.state(), &addr(who), kinds, 10).unwrap()
    };
    let pins = owned(&chain, 3, &[]);
    assert_eq!(pins.pins.len(), 1);
    assert_eq!(pins.pins[0].content_hash, cid.to_bytes());
    assert!(pins.replicas.is_empty() && pins.traces.is_empty());
    let replicas = owned(&chain, 4, &[]);
    assert_eq!(replicas.replicas.len(), 1);
    assert_eq!(replicas.replicas[0].replica_hash, replica.to_bytes());
    let verifications = owned(&chain, 1, &[]);
    assert_eq!(verifications.verifications.len(), 1);
    assert_eq!(verifications.verifications[0].ipfs_hash, cid.to_bytes());
    let traces = owned(&chain, 2, &[]);
    assert_eq!(traces.traces.len(), 1);
    assert_eq!(traces.traces[0].trace_hash, cid_of(142).to_bytes());
    // Asking for one kind reads only that kind.
    let only = owned(&chain, 2, &[ExpiryKind::Replica]);
    assert_eq!(only, queries::Owned::default());
    // Markers leave with their records: the pin at its expiry, the rest
    // with retention.
    chain.advance_to(h + 5);
    assert!(owned(&chain, 3, &[]).pins.is_empty());
    assert_eq!(owned(&chain, 4, &[]).replicas.len(), 1);
    chain.advance_to(h + 40);
    for who in 1..=4 {
        assert_eq!(owned(&chain, who, &[]), queries::Owned::default());
    }
    let markers = chain
        .keeper
        .state()
        .scan_prefix(&[r3mes_chain::tables::BY_OWNER], 10)
        .unwrap();
    assert!(markers.is_empty(), "{markers:?}");
}
