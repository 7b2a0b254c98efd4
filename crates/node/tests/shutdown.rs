//! Graceful shutdown under load: every waiting client gets an answer
//! (committed, or `UNAVAILABLE` and never applied), shutdown returns only
//! once the state is closed, and the state holds exactly the acknowledged
//! transactions.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{TestNode, init_home, test_params};
use r3mes_chain::proto::{MsgSend, TxBody, tx_body};
use r3mes_chain::{Address, SecretKey, SignedTx};
use r3mes_node::proto::msg_client::MsgClient;
use r3mes_node::proto::query_client::QueryClient;
use r3mes_node::proto::{BroadcastTxRequest, StatusRequest};
use tonic::transport::Channel;

/// Sends transfers of 1 to fresh addresses until the node refuses; returns
/// how many were acknowledged.
async fn send_until_refused(
    mut msg: MsgClient<Channel>,
    mut query: QueryClient<Channel>,
    key: SecretKey,
    salt: u8,
    acked: Arc<Mutex<Vec<Address>>>,
) -> u64 {
    let from = key.public_key().address();
    let mut sequence = 0u64;
    loop {
        let Ok(status) = query.status(StatusRequest {}).await else {
            return sequence;
        };
        let status = status.into_inner();
        let mut to = [salt; 20];
        to[..8].copy_from_slice(&sequence.to_be_bytes());
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
            Ok(r) => {
                assert_eq!(r.get_ref().code, 0, "{}", r.get_ref().log);
                acked.lock().expect("lock").push(to);
                sequence += 1;
            }
            Err(status) => {
                // Refused at admission, answered at the drain, or the
                // connection closed (the transport's code then varies):
                // never applied, which the sequences checked at the end
                // prove. A valid transfer is never refused by the rules.
                assert!(
                    !matches!(
                        status.code(),
                        tonic::Code::InvalidArgument
                            | tonic::Code::FailedPrecondition
                            | tonic::Code::AlreadyExists
                            | tonic::Code::PermissionDenied
                    ),
                    "{status:?}"
                );
                eprintln!("sender {salt} stopped: {status:?}");
                return sequence;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_every_client_and_keeps_exactly_what_it_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let home = init_home(dir.path(), test_params(100_000));
    let node = TestNode::start(&home).await;
    let acked = Arc::new(Mutex::new(Vec::new()));
    let names = ["validator", "dev1", "dev2", "dev3"];
    let senders: Vec<_> = names
        .iter()
        .zip(1u8..)
        .map(|(name, salt)| {
            tokio::spawn(send_until_refused(
                node.msg.clone(),
                node.query.clone(),
                node.key(name),
                salt,
                Arc::clone(&acked),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    // Returns only once the state is closed: it can be opened at once.
    tokio::time::timeout(Duration::from_secs(20), node.handle.shutdown())
        .await
        .expect("shutdown in time")
        .expect("clean shutdown");
    let mut sent = Vec::new();
    for s in senders {
        sent.push(
            tokio::time::timeout(Duration::from_secs(10), s)
                .await
                .expect("every client answered")
                .unwrap(),
        );
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 8, "only {} acknowledged", acked.len());

    let keeper = r3mes_node::node::open_keeper(&home).unwrap();
    for to in &acked {
        assert_eq!(
            keeper.account(to).unwrap().balance,
            1,
            "transfer to {to} lost"
        );
    }
    let ring = r3mes_node::keyring::Keyring::new(home.keyring());
    for (name, n) in names.iter().zip(sent) {
        let address = ring.secret(name).unwrap().public_key().address();
        // Nothing applied without an answer, nothing answered unapplied.
        assert_eq!(keeper.account(&address).unwrap().sequence, n, "{name}");
    }
}
