//! Crashes between `FinalizeBlock` and `Commit`, as CometBFT recovers from
//! them: the server is dropped after `FinalizeBlock` without `Commit` and
//! started again on the same home. `Info` must report the last block whose
//! `Commit` completed, CometBFT then replays `FinalizeBlock` for the block
//! the keeper already ran and must get the identical response, and the
//! chain goes on with the same app hashes as one that never stopped.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};

use r3mes_abci::client::{self, Client};
use r3mes_abci::journal::{Journal, LastBlock};
use r3mes_abci::{App, Server};
use r3mes_chain::params::Params;
use r3mes_chain::state::State;
use tendermint_proto::v0_38::abci::{
    Request, RequestCommit, RequestFinalizeBlock, RequestInfo, ResponseFinalizeBlock, request,
    response,
};

use common::{TestChain, block_hash, open_state, serve};

fn chain() -> TestChain {
    TestChain {
        id: "r3mes-abci-crash",
        key_tag: 3,
        accounts: 2,
        balance: "1000000",
        stake: "1000",
        params: Params::default(),
    }
}

/// CometBFT block `height`: a transfer of account 1 (sequence `height -
/// 1`) and one that fails, with a hash standing for CometBFT's.
fn block(height: i64) -> RequestFinalizeBlock {
    let time = 1_700_000_000_000 + (height + 1) * 1000;
    let seq = u64::try_from(height - 1).expect("height");
    let chain = chain();
    RequestFinalizeBlock {
        txs: vec![
            chain.send(1, 2, 5, seq, time).into(),
            chain.send(1, 2, u64::MAX, seq + 1, time).into(),
        ],
        hash: block_hash(height).into(),
        height,
        ..Default::default()
    }
}

/// The last committed height and app hash, by `Info`.
fn info(c: &mut Client) -> (i64, Vec<u8>) {
    let i = c.info(RequestInfo::default()).expect("Info");
    (i.last_block_height, i.last_block_app_hash.to_vec())
}

/// The genesis app hash, by `InitChain`.
fn init(c: &mut Client) -> Vec<u8> {
    c.init_chain(chain().init_chain())
        .expect("InitChain")
        .app_hash
        .to_vec()
}

fn finalize(c: &mut Client, height: i64) -> ResponseFinalizeBlock {
    c.finalize_block(block(height)).expect("FinalizeBlock")
}

fn commit(c: &mut Client) {
    c.commit().expect("Commit");
}

/// A node's home: the keeper's store and the FinalizeBlock record.
struct Home<'a>(&'a Path);

impl Home<'_> {
    fn journal(&self) -> std::path::PathBuf {
        self.0.join("abci-last-block.pb")
    }

    /// Serves the home; waits (up to 5 s) for a previous server's
    /// connection threads to let go of the store.
    fn start(&self) -> (Server, Client) {
        let state = open_state(&self.0.join("state.redb"));
        let app = App::with_journal(state, &self.journal()).expect("open the app");
        let server = serve(app);
        let client = Client::connect(server.local_addr()).expect("connect");
        (server, client)
    }
}

/// The crash: the connection goes away and the server with it, no Commit.
fn crash(server: Server, client: Client) {
    drop(client);
    server.stop();
}

/// A chain that never stops, for the expected responses.
fn uninterrupted(blocks: i64) -> Vec<ResponseFinalizeBlock> {
    let mut app = App::new(State::in_memory().expect("state")).expect("app");
    assert!(matches!(
        call(&mut app, request::Value::InitChain(chain().init_chain())),
        response::Value::InitChain(_)
    ));
    (1..=blocks)
        .map(|h| {
            let r = match call(&mut app, request::Value::FinalizeBlock(block(h))) {
                response::Value::FinalizeBlock(r) => r,
                other => panic!("unexpected {other:?}"),
            };
            assert!(matches!(
                call(&mut app, request::Value::Commit(RequestCommit {})),
                response::Value::Commit(_)
            ));
            r
        })
        .collect()
}

#[test]
fn a_block_finalized_but_not_committed_is_replayed_after_a_restart() {
    let expected = uninterrupted(4);
    let dir = tempfile::tempdir().unwrap();
    let home = Home(dir.path());

    let (server, mut c) = home.start();
    let genesis_hash = init(&mut c);
    assert_eq!(finalize(&mut c, 1), expected[0]);
    commit(&mut c);
    assert_eq!(info(&mut c), (1, expected[0].app_hash.to_vec()));
    assert_eq!(finalize(&mut c, 2), expected[1]);
    // Between FinalizeBlock and Commit, Info still reports block 1.
    assert_eq!(info(&mut c), (1, expected[0].app_hash.to_vec()));
    crash(server, c);

    // After the restart: block 1 is the last committed; the replayed
    // block 2 gets the identical response (app hash included) although the
    // keeper ran it before the crash.
    let (server, mut c) = home.start();
    assert_eq!(info(&mut c), (1, expected[0].app_hash.to_vec()));
    assert_eq!(finalize(&mut c, 2), expected[1]);
    // The replay must be the same block.
    let mut other = block(2);
    other.hash = vec![9; 32].into();
    match c.finalize_block(other) {
        Err(client::Error::Exception(e)) => assert!(e.contains("another block hash"), "{e:?}"),
        other => panic!("unexpected {other:?}"),
    }
    commit(&mut c);
    assert_eq!(info(&mut c), (2, expected[1].app_hash.to_vec()));
    crash(server, c);

    // Committed before the restart: reported as such.
    let (server, mut c) = home.start();
    assert_eq!(info(&mut c), (2, expected[1].app_hash.to_vec()));
    assert_eq!(finalize(&mut c, 3), expected[2]);
    commit(&mut c);
    crash(server, c);

    // A record written ahead of a keeper commit that never happened (the
    // crash came between the two): dropped, the block runs for real.
    Journal::at(&home.journal())
        .store(&LastBlock {
            height: 4,
            hash: block(4).hash.to_vec(),
            previous_app_hash: expected[2].app_hash.to_vec(),
            response: Some(ResponseFinalizeBlock::default()),
            committed: false,
            keeper_events: Vec::new(),
        })
        .unwrap();
    let (server, mut c) = home.start();
    assert_eq!(info(&mut c), (3, expected[2].app_hash.to_vec()));
    assert_eq!(finalize(&mut c, 4), expected[3]);
    commit(&mut c);
    assert_eq!(info(&mut c), (4, expected[3].app_hash.to_vec()));
    crash(server, c);

    // A record from the future does not fit the keeper: refused.
    Journal::at(&home.journal())
        .store(&LastBlock {
            height: 9,
            ..Default::default()
        })
        .unwrap();
    let state = State::open(&dir.path().join("state.redb")).unwrap();
    assert!(matches!(
        App::with_journal(state, &home.journal()),
        Err(r3mes_abci::Error::Journal(_))
    ));
    assert_ne!(genesis_hash, expected[0].app_hash.to_vec());
}

#[test]
fn block_1_finalized_but_not_committed_goes_back_through_init_chain() {
    let expected = uninterrupted(2);
    let dir = tempfile::tempdir().unwrap();
    let home = Home(dir.path());

    let (server, mut c) = home.start();
    let genesis_hash = init(&mut c);
    assert_eq!(finalize(&mut c, 1), expected[0]);
    crash(server, c);

    // Info reports height 0, so CometBFT sends InitChain again: the
    // genesis app hash, then the replay of block 1.
    let (server, mut c) = home.start();
    assert_eq!(info(&mut c), (0, Vec::new()));
    assert_eq!(init(&mut c), genesis_hash);
    assert_eq!(finalize(&mut c, 1), expected[0]);
    commit(&mut c);
    assert_eq!(info(&mut c), (1, expected[0].app_hash.to_vec()));
    // Once block 1 is committed, InitChain is refused.
    match c.init_chain(chain().init_chain()) {
        Err(client::Error::Exception(e)) => assert!(e.contains("already has blocks"), "{e:?}"),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(finalize(&mut c, 2), expected[1]);
    commit(&mut c);
    crash(server, c);
}

/// What the commit hook saw of one block: height, transactions applied and
/// failed, the keeper's events.
type Seen = (u64, u64, u64, Vec<r3mes_chain::proto::Event>);

/// An application over the store and record in `dir` whose commit hook
/// appends to `seen`.
fn hooked(dir: &Path, seen: &Arc<Mutex<Vec<Seen>>>) -> App {
    let state = State::open(&dir.join("state.redb")).expect("state");
    let mut app = App::with_journal(state, &dir.join("abci-last-block.pb")).expect("app");
    let seen = Arc::clone(seen);
    app.set_commit_hook(Box::new(move |b| {
        seen.lock()
            .expect("seen")
            .push((b.height, b.txs_applied, b.txs_failed, b.events.to_vec()));
    }));
    app
}

fn call(app: &mut App, value: request::Value) -> response::Value {
    app.handle(Request { value: Some(value) })
        .value
        .expect("a response value")
}

#[test]
fn the_commit_hook_sees_each_block_once_after_its_commit_also_after_a_replay() {
    let dir = tempfile::tempdir().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut app = hooked(dir.path(), &seen);
    call(&mut app, request::Value::InitChain(chain().init_chain()));
    call(&mut app, request::Value::FinalizeBlock(block(1)));
    assert!(seen.lock().unwrap().is_empty(), "called before Commit");
    call(&mut app, request::Value::Commit(RequestCommit {}));
    call(&mut app, request::Value::Commit(RequestCommit {}));
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1, "one call per block");
        let (height, applied, failed, events) = &seen[0];
        assert_eq!((*height, *applied, *failed), (2, 1, 1));
        assert!(!events.is_empty(), "the transfer's events");
    }

    // Block 2 run, then a crash before its Commit: after the restart the
    // replayed block reaches the hook with the events it had.
    call(&mut app, request::Value::FinalizeBlock(block(2)));
    drop(app);
    let before = seen.lock().unwrap().len();
    assert_eq!(before, 1);
    let mut app = hooked(dir.path(), &seen);
    call(&mut app, request::Value::FinalizeBlock(block(2)));
    call(&mut app, request::Value::Commit(RequestCommit {}));

    // What a chain that never stopped hands to its hook.
    let other = tempfile::tempdir().unwrap();
    let expected = Arc::new(Mutex::new(Vec::new()));
    let mut app = hooked(other.path(), &expected);
    call(&mut app, request::Value::InitChain(chain().init_chain()));
    for height in 1..=2 {
        call(&mut app, request::Value::FinalizeBlock(block(height)));
        call(&mut app, request::Value::Commit(RequestCommit {}));
    }
    let seen = seen.lock().unwrap();
    assert_eq!(*seen, *expected.lock().unwrap());
    assert_eq!(seen[1].0, 3);
}
