//! Drives the ABCI server over a real TCP socket with encoded CometBFT
//! requests, next to a keeper driven directly the way the node's block
//! producer drives it: the same transactions in the same blocks must give
//! the same app hashes, and bad input must get clear answers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};

use r3mes_abci::codec::{MAX_MESSAGE_BYTES, read_message, write_message};
use r3mes_abci::{App, Server};
use r3mes_chain::genesis::{Genesis, GenesisAccount, GenesisFile};
use r3mes_chain::params::Params;
use r3mes_chain::proto::{MsgSend, TxBody, tx_body};
use r3mes_chain::state::State;
use r3mes_chain::{Address, Keeper, SecretKey, SignedTx};
use tendermint_proto::v0_38::abci::{
    Request, RequestCheckTx, RequestCommit, RequestFinalizeBlock, RequestInfo, RequestInitChain,
    RequestPrepareProposal, RequestProcessProposal, RequestQuery, Response, request, response,
};

const CHAIN: &str = "r3mes-abci-test";
const ACCOUNTS: u32 = 4;

fn key(i: u32) -> SecretKey {
    let mut bytes = [0u8; 32];
    bytes[..4].copy_from_slice(&i.to_be_bytes());
    bytes[31] = 7;
    SecretKey::from_bytes(&bytes).unwrap()
}

fn addr(i: u32) -> Address {
    key(i).public_key().address()
}

fn genesis_json() -> String {
    let file = GenesisFile {
        chain_id: CHAIN.into(),
        genesis_time_ms: 1_700_000_000_000,
        params: Params {
            round_length: 3,
            ..Params::default()
        },
        accounts: (1..=ACCOUNTS)
            .map(|i| GenesisAccount {
                address: addr(i).to_string(),
                balance: "1000000000".into(),
                stake: "1000000".into(),
            })
            .collect(),
        validators: vec![addr(1).to_string()],
    };
    serde_json::to_string(&file).unwrap()
}

/// A block hash as CometBFT would send (any 32 bytes).
fn block_hash(height: i64) -> Vec<u8> {
    r3mes_chain::crypto::sha256(&height.to_be_bytes()).to_vec()
}

fn send(from: u32, to: u32, amount: u64, seq: u64, time_ms: i64) -> Vec<u8> {
    let body = TxBody {
        msg: Some(tx_body::Msg::Send(MsgSend {
            from: addr(from).to_string(),
            to: addr(to).to_string(),
            amount_low: amount,
            amount_high: 0,
        })),
    };
    SignedTx::sign(body, &key(from), seq, CHAIN, time_ms)
        .unwrap()
        .encode()
}

struct Client(TcpStream);

impl Client {
    fn connect(server: &Server) -> Self {
        Client(TcpStream::connect(server.local_addr()).unwrap())
    }

    fn call(&mut self, value: request::Value) -> response::Value {
        write_message(&mut self.0, &Request { value: Some(value) }).unwrap();
        let resp: Response = read_message(&mut self.0, MAX_MESSAGE_BYTES)
            .unwrap()
            .expect("a response");
        resp.value.expect("a response value")
    }
}

/// Serves the store at `path`; waits (up to 5 s) for a previous server's
/// connection threads to let go of it.
fn start(path: &Path) -> Server {
    let mut tries = 0;
    let state = loop {
        match State::open(path) {
            Ok(state) => break state,
            Err(r3mes_chain::Error::StateLocked { .. }) if tries < 100 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) => panic!("{e}"),
        }
    };
    let app = App::new(state).unwrap();
    Server::start(
        TcpListener::bind("127.0.0.1:0").unwrap(),
        Arc::new(Mutex::new(app)),
    )
    .unwrap()
}

fn info(c: &mut Client) -> (i64, Vec<u8>) {
    match c.call(request::Value::Info(RequestInfo::default())) {
        response::Value::Info(i) => (i.last_block_height, i.last_block_app_hash.to_vec()),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn socket_blocks_match_the_keeper_and_bad_input_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("abci.redb");
    let server = start(&path);
    let mut c = Client::connect(&server);

    // Before genesis.
    assert_eq!(info(&mut c), (0, Vec::new()));
    let reference = Keeper::init(
        State::in_memory().unwrap(),
        &Genesis::from_json(&genesis_json()).unwrap(),
    )
    .unwrap();

    // A genesis for another chain id is refused; the right one is taken.
    let init = |chain_id: &str| {
        request::Value::InitChain(RequestInitChain {
            chain_id: chain_id.into(),
            app_state_bytes: genesis_json().into_bytes().into(),
            initial_height: 1,
            ..Default::default()
        })
    };
    match c.call(init("other-chain")) {
        response::Value::Exception(e) => assert!(e.error.contains("chain id"), "{}", e.error),
        other => panic!("unexpected {other:?}"),
    }
    match c.call(init(CHAIN)) {
        response::Value::InitChain(r) => {
            assert_eq!(r.app_hash.to_vec(), reference.app_hash().unwrap().to_vec())
        }
        other => panic!("unexpected {other:?}"),
    }

    let mut seqs = [0u64; ACCOUNTS as usize + 1];
    for height in 1..=5i64 {
        let keeper_height = u64::try_from(height).unwrap() + 1;
        let t = reference.block_time_ms(keeper_height).unwrap();
        let mut txs = Vec::new();
        for from in 1..=ACCOUNTS {
            let to = from % ACCOUNTS + 1;
            txs.push(send(from, to, 10 * u64::from(from), seqs[from as usize], t));
            seqs[from as usize] += 1;
        }
        // A transaction that fails inside the block (a send beyond the
        // balance): an error code, and nothing changes.
        txs.push(send(2, 3, u64::MAX, seqs[2], t));
        for tx in &txs[..ACCOUNTS as usize] {
            match c.call(request::Value::CheckTx(RequestCheckTx {
                tx: tx.clone().into(),
                ..Default::default()
            })) {
                response::Value::CheckTx(r) => assert_eq!(r.code, 0, "{}", r.log),
                other => panic!("unexpected {other:?}"),
            }
        }
        let proposed = match c.call(request::Value::PrepareProposal(RequestPrepareProposal {
            max_tx_bytes: 1 << 20,
            txs: txs.iter().cloned().map(Into::into).collect(),
            height,
            ..Default::default()
        })) {
            response::Value::PrepareProposal(r) => r.txs,
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(proposed.len(), txs.len());
        match c.call(request::Value::ProcessProposal(RequestProcessProposal {
            txs: proposed.clone(),
            height,
            hash: block_hash(height).into(),
            ..Default::default()
        })) {
            response::Value::ProcessProposal(r) => assert_eq!(r.status, 1),
            other => panic!("unexpected {other:?}"),
        }
        let finalize = request::Value::FinalizeBlock(RequestFinalizeBlock {
            txs: proposed,
            hash: block_hash(height).into(),
            height,
            ..Default::default()
        });
        let result = match c.call(finalize.clone()) {
            response::Value::FinalizeBlock(r) => r,
            other => panic!("unexpected {other:?}"),
        };
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
        match c.call(finalize) {
            response::Value::FinalizeBlock(again) => assert_eq!(again, result),
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            c.call(request::Value::Commit(RequestCommit {})),
            response::Value::Commit(_)
        ));
    }
    assert_eq!(info(&mut c), (5, reference.app_hash().unwrap().to_vec()));

    // Bad input: garbage and replayed transactions, a wrong height, a
    // proposal with garbage, an unknown query path.
    let t = reference.block_time_ms(7).unwrap();
    for (tx, what) in [
        (vec![1, 2, 3], "garbage"),
        (send(1, 2, 1, seqs[1] - 1, t), "replay"),
    ] {
        match c.call(request::Value::CheckTx(RequestCheckTx {
            tx: tx.into(),
            ..Default::default()
        })) {
            response::Value::CheckTx(r) => {
                assert_ne!(r.code, 0, "{what} accepted");
                assert!(!r.log.is_empty());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    match c.call(request::Value::ProcessProposal(RequestProcessProposal {
        txs: vec![vec![9, 9, 9].into()],
        height: 6,
        ..Default::default()
    })) {
        response::Value::ProcessProposal(r) => assert_eq!(r.status, 2),
        other => panic!("unexpected {other:?}"),
    }
    match c.call(request::Value::FinalizeBlock(RequestFinalizeBlock {
        height: 9,
        hash: block_hash(9).into(),
        ..Default::default()
    })) {
        response::Value::Exception(e) => assert!(e.error.contains("height 9"), "{}", e.error),
        other => panic!("unexpected {other:?}"),
    }
    let query = |path: &str, data: Vec<u8>| {
        request::Value::Query(RequestQuery {
            path: path.into(),
            data: data.into(),
            ..Default::default()
        })
    };
    match c.call(query("/status", Vec::new())) {
        response::Value::Query(q) => {
            let v: serde_json::Value = serde_json::from_slice(&q.value).unwrap();
            assert_eq!(v["height"], 5);
            assert_eq!(v["chain_id"], CHAIN);
        }
        other => panic!("unexpected {other:?}"),
    }
    match c.call(query(&format!("/account/{}", addr(1)), Vec::new())) {
        response::Value::Query(q) => {
            assert_eq!(q.code, 0, "{}", q.log);
            let v: serde_json::Value = serde_json::from_slice(&q.value).unwrap();
            assert_eq!(v["sequence"], 5);
        }
        other => panic!("unexpected {other:?}"),
    }
    match c.call(query("/nope", Vec::new())) {
        response::Value::Query(q) => assert_eq!(q.code, 2),
        other => panic!("unexpected {other:?}"),
    }

    // A hostile frame gets an Exception and its connection ends; other
    // connections carry on.
    let mut hostile = TcpStream::connect(server.local_addr()).unwrap();
    hostile.write_all(&[0xff, 0xff, 0xff, 0xff, 0x7f]).unwrap();
    let resp: Response = read_message(&mut hostile, MAX_MESSAGE_BYTES)
        .unwrap()
        .unwrap();
    assert!(matches!(resp.value, Some(response::Value::Exception(_))));
    assert_eq!(info(&mut c).0, 5);

    // Restart on the same store: the same height and app hash.
    drop(c);
    server.stop();
    let server = start(&path);
    let mut c = Client::connect(&server);
    assert_eq!(info(&mut c), (5, reference.app_hash().unwrap().to_vec()));
}
