//! `kill -9` under load loses no acknowledged transaction: the `r3mes`
//! binary runs a node, concurrent clients send signed transfers over gRPC
//! (each to a fresh address, so each one's effect is visible on its own),
//! the node is SIGKILLed mid-stream, and after a restart every transfer
//! that was acknowledged is in state, the store's app hash matches its
//! records, the stored block headers chain from block 1 to the tip (each
//! block starting from the app hash the previous one ended with) and agree
//! with every (height, app hash) the clients saw in `Status` before the
//! kill, and the chain goes on from there until a SIGTERM stops it cleanly.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use r3mes_chain::proto::{MsgSend, TxBody, tx_body};
use r3mes_chain::{Address, SecretKey, SignedTx};
use r3mes_node::home::Home;
use r3mes_node::keyring::Keyring;
use r3mes_node::proto::msg_client::MsgClient;
use r3mes_node::proto::query_client::QueryClient;
use r3mes_node::proto::{AccountRequest, BlockRequest, BroadcastTxRequest, StatusRequest};

const SENDERS: u32 = 12;

fn r3mes(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_r3mes"));
    cmd.env("R3MES_HOME", home).env_remove("R3MES_KUBO_BIN");
    cmd
}

/// Starts `r3mes node start` and returns it with its gRPC URL.
fn start(home: &Path) -> (Child, String) {
    let mut child = r3mes(home)
        .args(["node", "start"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("r3mes node start runs");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the start line");
    let addr = line
        .strip_prefix("node started: gRPC ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected start line {line:?}"));
    (child, format!("http://{addr}"))
}

/// (height, hex app hash) pairs seen in `Status` answers.
type Seen = Arc<Mutex<Vec<(u64, String)>>>;

/// One sender: transfers of 1 uremes to fresh addresses, one at a time,
/// until `stop`; every acknowledged recipient goes into `acked`, every
/// `Status` it read into `seen`.
async fn send_until(
    url: String,
    key: SecretKey,
    salt: u32,
    stop: Instant,
    acked: Arc<Mutex<Vec<Address>>>,
    seen: Seen,
) -> u64 {
    let Ok(mut msg) = MsgClient::connect(url.clone()).await else {
        return 0;
    };
    let Ok(mut query) = QueryClient::connect(url).await else {
        return 0;
    };
    let from = key.public_key().address();
    let mut sequence = 0u64;
    while Instant::now() < stop {
        let Ok(status) = query.status(StatusRequest {}).await else {
            break;
        };
        let status = status.into_inner();
        seen.lock()
            .expect("lock")
            .push((status.height, status.app_hash.clone()));
        let mut to = [0u8; 20];
        to[..4].copy_from_slice(&salt.to_be_bytes());
        to[4..12].copy_from_slice(&sequence.to_be_bytes());
        to[19] = 0xaa;
        let to = Address(to);
        let body = TxBody {
            msg: Some(tx_body::Msg::Send(MsgSend {
                from: from.to_string(),
                to: to.to_string(),
                amount_low: 1,
                amount_high: 0,
            })),
        };
        let tx = SignedTx::sign(
            body,
            &key,
            sequence,
            &status.chain_id,
            status.next_block_time_ms,
        )
        .expect("sign");
        match msg
            .broadcast_tx(BroadcastTxRequest {
                tx_bytes: tx.encode(),
                ..Default::default()
            })
            .await
        {
            Ok(r) if r.get_ref().code == 0 => {
                acked.lock().expect("lock").push(to);
                sequence += 1;
            }
            Ok(r) => panic!("transfer refused in its block: {}", r.get_ref().log),
            // The node was killed (or is going down): not acknowledged.
            Err(_) => break,
        }
    }
    sequence
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_no_acknowledged_transaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path();
    let init = r3mes(home)
        .args([
            "node",
            "init",
            "--block-time-ms",
            "100",
            "--dev-accounts",
            &SENDERS.to_string(),
            "--grpc-addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "127.0.0.1:0",
            "--no-ipfs-http",
        ])
        .output()
        .expect("init runs");
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );

    let (mut node, url) = start(home);
    let ring = Keyring::new(Home::new(home).keyring());
    let acked = Arc::new(Mutex::new(Vec::new()));
    let seen: Seen = Arc::new(Mutex::new(Vec::new()));
    let stop = Instant::now() + Duration::from_secs(30);
    let senders: Vec<_> = (1..=SENDERS)
        .map(|i| {
            let key = ring.secret(&format!("dev{i}")).expect("dev key");
            tokio::spawn(send_until(
                url.clone(),
                key,
                i,
                stop,
                Arc::clone(&acked),
                Arc::clone(&seen),
            ))
        })
        .collect();
    // Kill once a good number of transfers is acknowledged, mid-stream.
    let deadline = Instant::now() + Duration::from_secs(20);
    while acked.lock().expect("lock").len() < 150 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    node.kill().expect("SIGKILL the node");
    node.wait().expect("reap the node");
    let mut per_sender = Vec::new();
    for s in senders {
        per_sender.push(s.await.expect("sender task"));
    }
    let acked = acked.lock().expect("lock").clone();
    assert!(
        acked.len() >= 150,
        "only {} transfers acknowledged",
        acked.len()
    );

    // After the crash the store opens at its last committed block, and its
    // app hash is the hash of exactly the records it holds.
    let keeper = r3mes_node::node::open_keeper(&Home::new(home)).expect("reopen after SIGKILL");
    assert_eq!(
        keeper.state().recompute_app_hash().expect("recompute"),
        keeper.app_hash().expect("app hash")
    );
    let height = keeper.height().expect("height");
    // Every block from the genesis to the tip has its header, each starts
    // from the app hash the previous one ended with, and the tip's is the
    // state's; an empty block's hash is the producer's over no transactions.
    let mut previous = r3mes_chain::apphash::empty_root();
    for h in 1..=height {
        let header = keeper
            .header(h)
            .expect("header")
            .unwrap_or_else(|| panic!("no header for committed block {h}"));
        assert_eq!(header.height, h);
        assert_eq!(
            header.previous_app_hash,
            previous,
            "block {h} does not start from block {}'s app hash",
            h - 1
        );
        if h > 1 && header.tx_count == 0 {
            let hash = r3mes_node::producer::block_hash(h, &previous, std::iter::empty());
            assert_eq!(header.block_hash, hash, "block {h}'s hash");
        }
        previous = header.app_hash;
    }
    assert_eq!(previous, keeper.app_hash().expect("app hash"));
    let tip_app_hash = previous;
    assert!(keeper.header(height + 1).expect("header").is_none());
    // What clients saw before the kill was committed, and is what is stored.
    let seen = seen.lock().expect("lock").clone();
    assert!(!seen.is_empty());
    for (h, app_hash) in &seen {
        assert!(
            *h <= height,
            "Status showed height {h}, the store has {height}"
        );
        let header = keeper.header(*h).expect("header").expect("seen header");
        assert_eq!(
            &r3mes_chain::tables::hex_lower(&header.app_hash),
            app_hash,
            "height {h}: Status before the kill and the stored header differ"
        );
    }
    drop(keeper);

    let (mut node, url) = start(home);
    let mut query = QueryClient::connect(url).await.expect("connect");
    let status = query
        .status(StatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert!(status.height >= height);
    // The restarted node serves the same headers over Query.Block.
    let (h, app_hash) = seen.last().expect("seen").clone();
    let block = query
        .block(BlockRequest { height: h })
        .await
        .expect("block")
        .into_inner();
    assert_eq!((block.height, block.app_hash), (h, app_hash));
    let tip = query
        .block(BlockRequest { height })
        .await
        .expect("block")
        .into_inner();
    assert_eq!(tip.app_hash, r3mes_chain::tables::hex_lower(&tip_app_hash));
    for to in &acked {
        let account = query
            .account(AccountRequest {
                address: to.to_string(),
            })
            .await
            .expect("account")
            .into_inner();
        assert_eq!(
            account.balance, "1",
            "acknowledged transfer to {to} is lost"
        );
    }
    for (i, sent) in (1..=SENDERS).zip(per_sender) {
        let from = ring.show(&format!("dev{i}")).expect("key").address;
        let account = query
            .account(AccountRequest { address: from })
            .await
            .expect("account")
            .into_inner();
        // Acknowledged ones are in; at most the one in flight at the kill
        // may have been committed without its answer arriving.
        assert!(
            account.sequence == sent || account.sequence == sent + 1,
            "dev{i}: {sent} acknowledged, sequence {}",
            account.sequence
        );
    }
    // The chain goes on after the restart.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let later = query
        .status(StatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert!(later.height > status.height);
    // SIGTERM stops it cleanly with exit status 0.
    let term = Command::new("kill")
        .args(["-TERM", &node.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(term.success());
    let exit = node.wait().expect("reap the node");
    assert!(exit.success(), "SIGTERM exit: {exit:?}");
}
