//! The node under CometBFT (`r3mes node start --abci`,
//! [`r3mes_node::abci`]): a real ABCI server on a TCP socket, driven with
//! encoded `tendermint-proto` v0.38 requests the way CometBFT drives it,
//! over a home made by `node init` with its embedded IPFS store and a
//! 5-block gradient retention.
//!
//! Content is added to the node's store, submitted as a gradient, and
//! empty blocks follow until retention GC releases it: the content must
//! stay pinned between that block's `FinalizeBlock` and its `Commit`, and
//! be unpinned from the embedded store once `Commit` returned; `/metrics`
//! must report the keeper's height and the transaction and unpin counters.
//!
//! The blocks are built over a reference keeper fed the same blocks (for
//! the open round, the shard, sequences and the chain's clock); its app
//! hashes must match the node's.

mod common;

use std::time::Duration;

use r3mes_abci::client::Client;
use r3mes_chain::crypto::sha256;
use r3mes_chain::genesis::Genesis;
use r3mes_chain::proto::{event, tx_body};
use r3mes_chain::state::State;
use r3mes_chain::{Keeper, rounds};
use r3mes_ipfs::{AddOptions, AddSource, ContentStore, PinMode};
use r3mes_node::config::NodeConfig;
use r3mes_node::keyring::Keyring;
use tendermint_proto::v0_38::abci::{RequestFinalizeBlock, ResponseFinalizeBlock};

use common::abci::{init_chain, sign_next};
use common::{content, gradient_msg, http_get, init_home, test_params};

/// Blocks after which a stored gradient's record expires.
const RETENTION: u64 = 5;

/// CometBFT block `height` with `txs`, and the same block run on the
/// reference keeper; returns the node's response and whether the reference
/// released `cid` (an `EvUnpin` naming it).
fn block(
    client: &mut Client,
    reference: &Keeper,
    height: i64,
    txs: Vec<Vec<u8>>,
    cid: &str,
) -> (ResponseFinalizeBlock, bool) {
    let hash = sha256(&[b"cometbft".as_slice(), &height.to_be_bytes()].concat());
    let next = reference.height().expect("height") + 1;
    let mut b = reference.begin_block(next, hash).expect("begin");
    for tx in &txs {
        b.deliver_bytes(tx).expect("the reference applies the tx");
    }
    let end = b.end_block().expect("end");
    let app_hash = b.commit().expect("commit");
    let released = end
        .iter()
        .any(|e| matches!(&e.kind, Some(event::Kind::Unpin(u)) if u.cid == cid));
    let resp = client
        .finalize_block(RequestFinalizeBlock {
            txs: txs.into_iter().map(Into::into).collect(),
            hash: hash.to_vec().into(),
            height,
            ..Default::default()
        })
        .expect("FinalizeBlock");
    assert_eq!(resp.app_hash.to_vec(), app_hash.to_vec(), "block {height}");
    (resp, released)
}

async fn pinned(store: &dyn ContentStore, cid: &r3mes_ipfs::Cid) -> bool {
    store
        .pin_ls()
        .await
        .expect("pin ls")
        .iter()
        .any(|p| p.cid == *cid && p.mode == PinMode::Recursive)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_cometbft_expired_content_is_unpinned_after_commit_and_metrics_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let home = init_home(dir.path(), test_params(RETENTION));
    let config = NodeConfig::load(&home.config()).unwrap();
    let node = r3mes_node::abci::start(&home, &config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let store = node.content_store();
    let genesis_json = std::fs::read_to_string(home.genesis()).unwrap();
    let genesis = Genesis::from_json(&genesis_json).unwrap();
    let reference = Keeper::init(State::in_memory().unwrap(), &genesis).unwrap();

    let mut client = Client::connect(node.abci_addr()).unwrap();
    init_chain(&mut client, &genesis.chain_id, &genesis_json, &reference);

    let added = store
        .add(
            AddSource::Bytes(content(7, 50_000).into()),
            &AddOptions::default(),
        )
        .await
        .unwrap();
    let cid = added.cid;
    assert!(pinned(&*store, &cid).await);

    // Empty blocks until a round is open for the next block, then the
    // gradient.
    let key = Keyring::new(home.keyring()).secret("dev1").unwrap();
    let miner = key.public_key().address();
    let mut height = 0i64;
    let tx = loop {
        let next = reference.height().unwrap() + 1;
        if let Some(round) = rounds::open_round(reference.state(), next).unwrap() {
            let shard = rounds::assigned_shard(&round, &miner).unwrap();
            let msg = gradient_msg(&miner, &cid, round.round_id, shard);
            let seq = reference.account(&miner).unwrap().sequence;
            break sign_next(
                &reference,
                &genesis.chain_id,
                &key,
                seq,
                tx_body::Msg::SubmitGradient(msg),
            );
        }
        height += 1;
        assert!(height < 20, "no round opened");
        block(&mut client, &reference, height, Vec::new(), "");
        client.commit().unwrap();
    };
    height += 1;
    let (resp, _) = block(&mut client, &reference, height, vec![tx], &cid.to_string());
    assert_eq!(resp.tx_results[0].code, 0, "{}", resp.tx_results[0].log);
    client.commit().unwrap();

    // Empty blocks until retention releases the gradient.
    let released_at = loop {
        height += 1;
        assert!(height < 40, "the gradient never expired");
        let (_, released) = block(
            &mut client,
            &reference,
            height,
            Vec::new(),
            &cid.to_string(),
        );
        if released {
            break height;
        }
        client.commit().unwrap();
    };
    // Run, not yet committed: still pinned.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        pinned(&*store, &cid).await,
        "unpinned before the block's Commit"
    );
    client.commit().unwrap();
    let mut unpinned = false;
    for _ in 0..250 {
        if !pinned(&*store, &cid).await {
            unpinned = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(unpinned, "the expired gradient is still pinned");

    // Metrics: the keeper's height (CometBFT's plus one), one transaction,
    // one unpin, no mempool gauge (CometBFT holds the mempool).
    let keeper_height = u64::try_from(released_at).unwrap() + 1;
    assert_eq!(reference.height().unwrap(), keeper_height);
    let body = http_get(node.metrics_addr(), "/metrics").await;
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    for line in [
        format!("r3mes_height {keeper_height}\n"),
        format!("r3mes_blocks_total {released_at}\n"),
        "r3mes_txs_total 1\n".to_owned(),
        "r3mes_txs_failed_total 0\n".to_owned(),
        "r3mes_unpinned_total 1\n".to_owned(),
        "r3mes_tx_per_second ".to_owned(),
    ] {
        assert!(body.contains(&line), "{line} missing in {body}");
    }
    assert!(!body.contains("r3mes_mempool_size"), "{body}");

    drop(client);
    node.shutdown().await.unwrap();
}
