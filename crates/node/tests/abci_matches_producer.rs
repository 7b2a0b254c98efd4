//! The ABCI adapter against the node's own block producer: the same signed
//! transactions in the same blocks must give the same app hashes, the same
//! result codes and the same events on both.
//!
//! The reference side runs [`r3mes_node::producer::execute`], the function
//! the producer calls for every block. The ABCI side is a real
//! [`r3mes_abci::Server`] on a TCP socket, driven with length-prefixed
//! encoded `tendermint-proto` v0.38 requests the way CometBFT drives it:
//! `InitChain`, then per block `CheckTx` for each transaction,
//! `PrepareProposal`, `ProcessProposal`, `FinalizeBlock`, `Commit`, `Info`
//! and `Query`.
//!
//! Block hashes: the producer hashes its own block
//! ([`r3mes_node::producer::block_hash`]: height, previous app hash,
//! transaction hashes), CometBFT sends the hash of its block header. The
//! keeper seeds shard assignment, sampling and challenge draws with that
//! hash, and stores what it seeds (rounds, challenges), so two chains fed
//! different hashes diverge even with the same transactions (checked at
//! the end). The comparison is therefore made with the producer's hash
//! sent as `FinalizeBlock.hash`: the keeper's rules are the same, only the
//! source of the seed differs between the two ways of running a chain.
//!
//! The transactions: a transfer every block, a gradient of each miner in
//! every block with an open round (every gradient is sampled and
//! challenged, nobody answers, the challenges fail and the miners are
//! slashed; rounds end and start, records expire), and in every block two
//! transactions the keeper rejects (a transfer beyond the balance and a
//! gradient over a CID already stored).

mod common;

use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use r3mes_abci::client::Client;
use r3mes_abci::{App, Server};
use r3mes_chain::crypto::sha256;
use r3mes_chain::genesis::{Genesis, GenesisAccount, GenesisFile};
use r3mes_chain::gradients::solve_pow;
use r3mes_chain::params::Params;
use r3mes_chain::proto::{ChunkData, GradientMetadata, MsgSend, MsgSubmitGradient, event, tx_body};
use r3mes_chain::state::State;
use r3mes_chain::{Address, Keeper, SecretKey, SignedTx, queries, rounds};
use r3mes_node::producer::{block_hash, execute};
use tendermint_proto::v0_38::abci::{
    RequestCheckTx, RequestFinalizeBlock, RequestInfo, RequestPrepareProposal,
    RequestProcessProposal, RequestQuery,
};

use common::abci::{init_chain, sign_next};

const CHAIN: &str = "r3mes-abci-producer";
/// Account 1 is the validator and sends funds; 2..=MINERS+1 mine.
const MINERS: u32 = 3;
/// CometBFT heights 1..=BLOCKS (the keeper's 2..=BLOCKS+1).
const BLOCKS: i64 = 12;

fn key(i: u32) -> SecretKey {
    let mut bytes = [0u8; 32];
    bytes[..4].copy_from_slice(&i.to_be_bytes());
    bytes[31] = 9;
    SecretKey::from_bytes(&bytes).expect("valid test key")
}

fn addr(i: u32) -> Address {
    key(i).public_key().address()
}

/// Short rounds, every gradient sampled, a short answer window and short
/// retention, so rounds, challenges, slashing and GC all happen within a
/// dozen blocks.
fn genesis_json() -> String {
    let file = GenesisFile {
        chain_id: CHAIN.into(),
        genesis_time_ms: 1_700_000_000_000,
        params: Params {
            pow_difficulty_bits: 4,
            round_length: 3,
            sample_rate_ppm: 1_000_000,
            response_window: 2,
            retention_gradient_blocks: 6,
            ..Params::default()
        },
        accounts: (1..=MINERS + 1)
            .map(|i| GenesisAccount {
                address: addr(i).to_string(),
                balance: "1000000000".into(),
                stake: "1000000".into(),
            })
            .collect(),
        validators: vec![addr(1).to_string()],
    };
    serde_json::to_string(&file).expect("genesis JSON")
}

/// The distinct CIDv0 of gradient `n` (the keeper never reads content).
fn gradient_cid(n: u64) -> cid::Cid {
    let digest = sha256(&[b"abci-producer".as_slice(), &n.to_be_bytes()].concat());
    cid::Cid::new_v0(r3mes_ipfs::cids::multihash_from_digest(&digest)).expect("CIDv0")
}

fn sign(keeper: &Keeper, signer: u32, seq: u64, msg: tx_body::Msg) -> Vec<u8> {
    sign_next(keeper, CHAIN, &key(signer), seq, msg)
}

/// A valid submission of `cid` by miner `i` in `round` (its shard, solved
/// proof of work).
fn gradient_msg(
    keeper: &Keeper,
    round: &r3mes_chain::proto::Round,
    i: u32,
    cid: &cid::Cid,
) -> tx_body::Msg {
    let shard = rounds::assigned_shard(round, &addr(i)).expect("shard");
    let bits = keeper.params().pow_difficulty_bits;
    tx_body::Msg::SubmitGradient(MsgSubmitGradient {
        miner: addr(i).to_string(),
        ipfs_hash: cid.to_string(),
        metadata: Some(GradientMetadata {
            round_id: round.round_id,
            shard_id: shard,
            chunks: vec![ChunkData {
                chunk_id: 1,
                data_hash: gradient_cid(u64::MAX).to_string(),
                token_count: 2048,
                shard_id: shard,
                window_id: round.round_id,
            }],
            gpu_architecture: "cpu".into(),
            backbone_hash: gradient_cid(u64::MAX - 1).to_string(),
            format: "protobuf".into(),
            byte_size: 4096,
            element_count: 1024,
        }),
        pow_nonce: solve_pow(&addr(i), cid, round.round_id, bits, 0),
    })
}

fn send_msg(from: u32, to: u32, amount: u64) -> tx_body::Msg {
    tx_body::Msg::Send(MsgSend {
        from: addr(from).to_string(),
        to: addr(to).to_string(),
        amount_low: amount,
        amount_high: 0,
    })
}

/// The last committed height and app hash, by `Info`.
fn info(c: &mut Client) -> (i64, Vec<u8>) {
    let i = c.info(RequestInfo::default()).expect("Info");
    (i.last_block_height, i.last_block_app_hash.to_vec())
}

/// The value of a `Query` of `path`, which must succeed.
fn query(c: &mut Client, path: &str) -> Vec<u8> {
    let q = c
        .query(RequestQuery {
            path: path.into(),
            ..Default::default()
        })
        .expect("Query");
    assert_eq!(q.code, 0, "{path}: {}", q.log);
    q.value.to_vec()
}

/// One block's transactions, built over the reference's committed state:
/// the transfer, each miner's gradient if a round is open, then the two
/// transactions the keeper must reject. Returns them with the number of
/// valid ones in front.
fn block_txs(
    keeper: &Keeper,
    next_cid: &mut u64,
    last_cid: &mut Option<cid::Cid>,
) -> (Vec<Vec<u8>>, usize) {
    let next_height = keeper.height().expect("height") + 1;
    let seq = |i: u32| keeper.account(&addr(i)).expect("account").sequence;
    let mut txs = vec![sign(keeper, 1, seq(1), send_msg(1, 2, 25))];
    let open = rounds::open_round(keeper.state(), next_height).expect("round");
    let mut newest = None;
    if let Some(round) = &open {
        for i in 2..=MINERS + 1 {
            let cid = gradient_cid(*next_cid);
            *next_cid += 1;
            txs.push(sign(
                keeper,
                i,
                seq(i),
                gradient_msg(keeper, round, i, &cid),
            ));
            newest = Some(cid);
        }
    }
    let valid = txs.len();
    // Beyond the balance: fails, the sequence is not consumed.
    txs.push(sign(keeper, 1, seq(1) + 1, send_msg(1, 3, u64::MAX)));
    // A CID stored in an earlier block: fails.
    if let (Some(round), Some(cid)) = (&open, last_cid.as_ref()) {
        let i = MINERS + 1;
        txs.push(sign(
            keeper,
            i,
            seq(i) + 1,
            gradient_msg(keeper, round, i, cid),
        ));
    }
    if newest.is_some() {
        *last_cid = newest;
    }
    (txs, valid)
}

#[test]
fn abci_and_the_producer_agree_on_every_block() {
    let dir = tempfile::tempdir().unwrap();
    let genesis = Genesis::from_json(&genesis_json()).unwrap();
    let reference = Keeper::init(State::in_memory().unwrap(), &genesis).unwrap();
    // The same chain fed CometBFT-like hashes instead of the producer's.
    let other_seed = Keeper::init(State::in_memory().unwrap(), &genesis).unwrap();

    let app = App::new(State::open(&dir.path().join("abci.redb")).unwrap()).unwrap();
    let server = Server::start(
        TcpListener::bind("127.0.0.1:0").unwrap(),
        Arc::new(Mutex::new(app)),
    )
    .unwrap();
    // CometBFT's consensus, mempool and query connections.
    let connect = || Client::connect(server.local_addr()).unwrap();
    let (mut consensus, mut mempool, mut querier) = (connect(), connect(), connect());

    assert_eq!(info(&mut querier), (0, Vec::new()));
    init_chain(&mut consensus, CHAIN, &genesis_json(), &reference);

    let (mut next_cid, mut last_cid) = (0u64, None);
    let mut seen = std::collections::HashSet::new();
    let mut diverged = false;
    for height in 1..=BLOCKS {
        let (txs, valid) = block_txs(&reference, &mut next_cid, &mut last_cid);
        for tx in &txs[..valid] {
            let r = mempool
                .check_tx(RequestCheckTx {
                    tx: tx.clone().into(),
                    ..Default::default()
                })
                .unwrap();
            assert_eq!(r.code, 0, "{}", r.log);
        }

        // The producer's block.
        let previous = reference.app_hash().unwrap();
        let decoded: Vec<(SignedTx, [u8; 32])> = txs
            .iter()
            .map(|b| (reference.decode_tx(b).unwrap(), sha256(b)))
            .collect();
        let keeper_height = reference.height().unwrap() + 1;
        let hash = block_hash(keeper_height, &previous, decoded.iter().map(|(_, h)| h));
        let out = execute(&reference, &decoded).unwrap();
        assert_eq!(out.height, keeper_height);
        assert_eq!(keeper_height, u64::try_from(height).unwrap() + 1);

        // The same block through CometBFT's requests, with the producer's
        // hash as the block hash (see the module docs).
        let proposed = consensus
            .prepare_proposal(RequestPrepareProposal {
                max_tx_bytes: 1 << 20,
                txs: txs.iter().cloned().map(Into::into).collect(),
                height,
                ..Default::default()
            })
            .unwrap()
            .txs;
        assert_eq!(proposed.len(), txs.len());
        let r = consensus
            .process_proposal(RequestProcessProposal {
                txs: proposed.clone(),
                hash: hash.to_vec().into(),
                height,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(r.status, 1);
        let result = consensus
            .finalize_block(RequestFinalizeBlock {
                txs: proposed,
                hash: hash.to_vec().into(),
                height,
                ..Default::default()
            })
            .unwrap();
        consensus.commit().unwrap();

        let app_hash = reference.app_hash().unwrap();
        assert_eq!(
            result.app_hash.to_vec(),
            app_hash.to_vec(),
            "height {height}"
        );
        let codes: Vec<u32> = out
            .results
            .iter()
            .map(|r| r.as_ref().map_or_else(|e| e.code(), |_| 0))
            .collect();
        let got: Vec<u32> = result.tx_results.iter().map(|r| r.code).collect();
        assert_eq!(got, codes, "height {height}");
        assert!(
            codes[..valid].iter().all(|c| *c == 0),
            "height {height}: {codes:?}"
        );
        assert!(
            codes[valid..].iter().all(|c| *c != 0),
            "height {height}: {codes:?}"
        );
        for (r, outcome) in result.tx_results.iter().zip(&out.results) {
            if let Ok(outcome) = outcome {
                assert_eq!(r.events, r3mes_abci::app::abci_events(&outcome.events));
            }
        }
        assert_eq!(
            result.events,
            r3mes_abci::app::abci_events(&out.end_events),
            "height {height}"
        );
        for e in &out.end_events {
            if let Some(kind) = &e.kind {
                seen.insert(std::mem::discriminant(kind));
            }
        }

        // Info and Query see the committed block.
        assert_eq!(info(&mut querier), (height, app_hash.to_vec()));
        let status: serde_json::Value =
            serde_json::from_slice(&query(&mut querier, "/status")).unwrap();
        assert_eq!(status["height"], height);
        assert_eq!(
            status["app_hash"],
            r3mes_chain::tables::hex_lower(&app_hash)
        );
        for i in 1..=MINERS + 1 {
            let account: serde_json::Value =
                serde_json::from_slice(&query(&mut querier, &format!("/account/{}", addr(i))))
                    .unwrap();
            let expected = reference.account(&addr(i)).unwrap();
            assert_eq!(account["sequence"], expected.sequence);
            assert_eq!(account["stake"], expected.stake.to_string());
            assert_eq!(account["balance"], expected.balance.to_string());
        }
        if let Some(cid) = &last_cid {
            let stored = queries::gradient(reference.state(), &cid.to_string()).unwrap();
            if let Some(stored) = stored {
                use prost::Message;
                assert_eq!(
                    query(&mut querier, &format!("/gradient/{cid}")),
                    stored.encode_to_vec()
                );
            }
        }

        // Another seed for the same transactions.
        let seed = sha256(&[b"cometbft-header".as_slice(), &height.to_be_bytes()].concat());
        let mut block = other_seed.begin_block(keeper_height, seed).unwrap();
        for tx in &txs {
            let _ = block.deliver_bytes(tx);
        }
        block.end_block().unwrap();
        diverged |= block.commit().unwrap() != app_hash;
    }

    // The end-of-block work really ran: rounds, challenges, failures,
    // slashing and retention GC.
    for (kind, what) in [
        (
            event::Kind::RoundStarted(Default::default()),
            "round started",
        ),
        (
            event::Kind::ChallengeIssued(Default::default()),
            "challenge issued",
        ),
        (
            event::Kind::ChallengeClosed(Default::default()),
            "challenge closed",
        ),
        (event::Kind::Slashed(Default::default()), "slashed"),
        (
            event::Kind::RecordExpired(Default::default()),
            "record expired",
        ),
    ] {
        assert!(
            seen.contains(&std::mem::discriminant(&kind)),
            "no {what} event"
        );
    }
    assert!(
        diverged,
        "another block hash gave the same app hashes: the seed would not matter"
    );
    server.stop();
}
