//! Drives the ABCI server over a real TCP socket with encoded CometBFT
//! requests, next to a keeper driven directly the way the node's block
//! producer drives it: the same transactions in the same blocks must give
//! the same app hashes, and bad input must get clear answers.

mod common;

use std::io::Write;
use std::path::Path;

use r3mes_abci::client::{self, Client};
use r3mes_abci::{App, Server};
use r3mes_chain::Keeper;
use r3mes_chain::genesis::Genesis;
use r3mes_chain::params::Params;
use r3mes_chain::state::State;
use tendermint_proto::v0_38::abci::{
    RequestCheckTx, RequestFinalizeBlock, RequestInfo, RequestInitChain, RequestPrepareProposal,
    RequestProcessProposal, RequestQuery, response,
};

use common::{TestChain, block_hash, open_state, serve};

const ACCOUNTS: u32 = 4;

fn chain() -> TestChain {
    TestChain {
        id: "r3mes-abci-test",
        key_tag: 7,
        accounts: ACCOUNTS,
        balance: "1000000000",
        stake: "1000000",
        params: Params {
            round_length: 3,
            ..Params::default()
        },
    }
}

/// Serves the store at `path` (once a previous server let go of it).
fn start(path: &Path) -> Server {
    serve(App::new(open_state(path)).expect("app"))
}

fn info(c: &mut Client) -> (i64, Vec<u8>) {
    let i = c.info(RequestInfo::default()).expect("Info");
    (i.last_block_height, i.last_block_app_hash.to_vec())
}

#[test]
fn socket_blocks_match_the_keeper_and_bad_input_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("abci.redb");
    let server = start(&path);
    let mut c = Client::connect(server.local_addr()).unwrap();
    let chain = chain();

    // Before genesis.
    assert_eq!(info(&mut c), (0, Vec::new()));
    let reference = Keeper::init(
        State::in_memory().unwrap(),
        &Genesis::from_json(&chain.genesis_json()).unwrap(),
    )
    .unwrap();

    // A genesis for another chain id is refused; the right one is taken.
    match c.init_chain(RequestInitChain {
        chain_id: "other-chain".into(),
        ..chain.init_chain()
    }) {
        Err(client::Error::Exception(e)) => assert!(e.contains("chain id"), "{e}"),
        other => panic!("unexpected {other:?}"),
    }
    let r = c.init_chain(chain.init_chain()).unwrap();
    assert_eq!(r.app_hash.to_vec(), reference.app_hash().unwrap().to_vec());

    let mut seqs = [0u64; ACCOUNTS as usize + 1];
    for height in 1..=5i64 {
        let keeper_height = u64::try_from(height).unwrap() + 1;
        let t = reference.block_time_ms(keeper_height).unwrap();
        let mut txs = Vec::new();
        for from in 1..=ACCOUNTS {
            let to = from % ACCOUNTS + 1;
            txs.push(chain.send(from, to, 10 * u64::from(from), seqs[from as usize], t));
            seqs[from as usize] += 1;
        }
        // A transaction that fails inside the block (a send beyond the
        // balance): an error code, and nothing changes.
        txs.push(chain.send(2, 3, u64::MAX, seqs[2], t));
        for tx in &txs[..ACCOUNTS as usize] {
            let r = c
                .check_tx(RequestCheckTx {
                    tx: tx.clone().into(),
                    ..Default::default()
                })
                .unwrap();
            assert_eq!(r.code, 0, "{}", r.log);
        }
        let proposed = c
            .prepare_proposal(RequestPrepareProposal {
                max_tx_bytes: 1 << 20,
                txs: txs.iter().cloned().map(Into::into).collect(),
                height,
                ..Default::default()
            })
            .unwrap()
            .txs;
        assert_eq!(proposed.len(), txs.len());
        let r = c
            .process_proposal(RequestProcessProposal {
                txs: proposed.clone(),
                height,
                hash: block_hash(height).into(),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(r.status, 1);
        let finalize = RequestFinalizeBlock {
            txs: proposed,
            hash: block_hash(height).into(),
            height,
            ..Default::default()
        };
        let result = c.finalize_block(finalize.clone()).unwrap();
        // The reference: the keeper driven directly with the same bytes.
        let hash: [u8; 32] = block_hash(height).try_into().unwrap();
        let mut block = reference.begin_block(keeper_height, hash).unwrap();
        let codes: Vec<u32> = txs
            .iter()
            .map(|tx| block.deliver_bytes(tx).map_or_else(|e| e.code(), |_| 0))
            .collect();
        block.end_block().unwrap();
        let expected = block.commit().unwrap();
        assert_eq!(
            result.app_hash.to_vec(),
            expected.to_vec(),
            "height {height}"
        );
        let got: Vec<u32> = result.tx_results.iter().map(|r| r.code).collect();
        assert_eq!(got, codes);
        assert!(codes[..ACCOUNTS as usize].iter().all(|c| *c == 0));
        assert_ne!(codes[ACCOUNTS as usize], 0);
        assert!(result.tx_results[0].events.iter().any(|e| {
            e.r#type == "transfer"
                && e.attributes
                    .iter()
                    .any(|a| a.key == "amount" && a.value == "10")
        }));
        // A replayed FinalizeBlock for the same height gets the same answer.
        assert_eq!(c.finalize_block(finalize).unwrap(), result);
        c.commit().unwrap();
    }
    assert_eq!(info(&mut c), (5, reference.app_hash().unwrap().to_vec()));

    // Bad input: garbage and replayed transactions, a wrong height, a
    // proposal with garbage, an unknown query path.
    let t = reference.block_time_ms(7).unwrap();
    for (tx, what) in [
        (vec![1, 2, 3], "garbage"),
        (chain.send(1, 2, 1, seqs[1] - 1, t), "replay"),
    ] {
        let r = c
            .check_tx(RequestCheckTx {
                tx: tx.into(),
                ..Default::default()
            })
            .unwrap();
        assert_ne!(r.code, 0, "{what} accepted");
        assert!(!r.log.is_empty());
    }
    let r = c
        .process_proposal(RequestProcessProposal {
            txs: vec![vec![9, 9, 9].into()],
            height: 6,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(r.status, 2);
    match c.finalize_block(RequestFinalizeBlock {
        height: 9,
        hash: block_hash(9).into(),
        ..Default::default()
    }) {
        Err(client::Error::Exception(e)) => assert!(e.contains("height 9"), "{e}"),
        other => panic!("unexpected {other:?}"),
    }
    let query = |path: &str| RequestQuery {
        path: path.into(),
        ..Default::default()
    };
    let q = c.query(query("/status")).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&q.value).unwrap();
    assert_eq!(v["height"], 5);
    assert_eq!(v["chain_id"], chain.id);
    let q = c
        .query(query(&format!("/account/{}", chain.addr(1))))
        .unwrap();
    assert_eq!(q.code, 0, "{}", q.log);
    let v: serde_json::Value = serde_json::from_slice(&q.value).unwrap();
    assert_eq!(v["sequence"], 5);
    assert_eq!(c.query(query("/nope")).unwrap().code, 2);

    // A hostile frame gets an Exception and its connection ends; other
    // connections carry on.
    let mut hostile = Client::connect(server.local_addr()).unwrap();
    hostile
        .stream()
        .write_all(&[0xff, 0xff, 0xff, 0xff, 0x7f])
        .unwrap();
    let resp = hostile.receive().unwrap();
    assert!(matches!(resp.value, Some(response::Value::Exception(_))));
    assert_eq!(info(&mut c).0, 5);

    // Restart on the same store: the same height and app hash.
    drop(c);
    server.stop();
    let server = start(&path);
    let mut c = Client::connect(server.local_addr()).unwrap();
    assert_eq!(info(&mut c), (5, reference.app_hash().unwrap().to_vec()));
}
