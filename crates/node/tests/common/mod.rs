//! Shared harness of the node's integration tests: a real node (redb
//! keeper, embedded IPFS repo, tonic gRPC on an ephemeral port) in a
//! temporary home, real tonic clients, and transactions signed with keys
//! from the node's own keyring.

#![allow(dead_code)]

pub mod abci;

use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use r3mes_chain::SignedTx;
use r3mes_chain::gradients::{GradientFacts, one_chunk_submission};
use r3mes_chain::params::Params;
use r3mes_chain::proto::{MsgSubmitGradient, TxBody, tx_body};
use r3mes_chain::{Address, SecretKey};
use r3mes_ipfs::{AddOptions, AddSource, Cid};
use r3mes_node::config::{IpfsConfig, NodeConfig};
use r3mes_node::home::Home;
use r3mes_node::init::{InitOptions, init};
use r3mes_node::keyring::Keyring;
use r3mes_node::node::{NodeHandle, start};
use r3mes_node::proto::msg_client::MsgClient;
use r3mes_node::proto::query_client::QueryClient;
use r3mes_node::proto::{
    AccountRequest, ShardAssignmentRequest, StatusRequest, StatusResponse, SubmitGradientRequest,
    submit_gradient_request,
};
use tonic::transport::Channel;

/// Block time of test nodes, ms.
pub const BLOCK_MS: u64 = 100;

/// Test parameters: the defaults for the test block time with cheap proof
/// of work, long rounds (no round ends during a test) and a short gradient
/// retention (`retention` blocks).
pub fn test_params(retention: u64) -> Params {
    Params {
        pow_difficulty_bits: 4,
        round_length: 100_000,
        retention_gradient_blocks: retention,
        ..Params::default_for_block_time(BLOCK_MS)
    }
}

/// The config of a test node: ephemeral ports, embedded store without
/// HTTP servers.
pub fn test_config() -> NodeConfig {
    NodeConfig {
        grpc_addr: "127.0.0.1:0".parse().expect("addr"),
        metrics_addr: "127.0.0.1:0".parse().expect("addr"),
        block_time_ms: BLOCK_MS,
        ipfs: IpfsConfig::Embedded {
            serve_http: false,
            api_addr: "127.0.0.1:0".parse().expect("addr"),
            gateway_addr: "127.0.0.1:0".parse().expect("addr"),
        },
        ..NodeConfig::default()
    }
}

/// A node under test and clients connected to it.
pub struct TestNode {
    pub home: Home,
    pub handle: NodeHandle,
    pub msg: MsgClient<Channel>,
    pub query: QueryClient<Channel>,
}

/// Initialises a home in `dir` with `params`.
pub fn init_home(dir: &std::path::Path, params: Params) -> Home {
    let home = Home::new(dir);
    init(
        &home,
        &InitOptions {
            chain_id: "r3mes-test-1".into(),
            dev_accounts: 3,
            config: test_config(),
            params: Some(params),
        },
    )
    .expect("init");
    home
}

impl TestNode {
    /// Starts the node of `home` and connects clients.
    pub async fn start(home: &Home) -> Self {
        let config = NodeConfig::load(&home.config()).expect("config");
        Self::start_with(home, config).await
    }

    /// Starts the node of `home` with `config` and connects clients.
    pub async fn start_with(home: &Home, config: NodeConfig) -> Self {
        let handle = start(home, config).await.expect("start node");
        let url = format!("http://{}", handle.grpc_addr());
        let msg = MsgClient::connect(url.clone()).await.expect("connect");
        let query = QueryClient::connect(url).await.expect("connect");
        TestNode {
            home: home.clone(),
            handle,
            msg,
            query,
        }
    }

    /// The secret key `name` of the node's keyring.
    pub fn key(&self, name: &str) -> SecretKey {
        Keyring::new(self.home.keyring()).secret(name).expect("key")
    }

    pub async fn status(&mut self) -> StatusResponse {
        self.query
            .status(StatusRequest {})
            .await
            .expect("status")
            .into_inner()
    }

    /// The committed sequence of `address`.
    pub async fn sequence(&mut self, address: &Address) -> u64 {
        self.query
            .account(AccountRequest {
                address: address.to_string(),
            })
            .await
            .expect("account")
            .into_inner()
            .sequence
    }

    /// Waits until a round is open; returns `(round, shard)` of `address`.
    pub async fn assignment(&mut self, address: &Address) -> (u64, u64) {
        for _ in 0..100 {
            let r = self
                .query
                .shard_assignment(ShardAssignmentRequest {
                    address: address.to_string(),
                    round_id: None,
                })
                .await;
            if let Ok(r) = r {
                let r = r.into_inner();
                return (r.round_id, r.shard_id);
            }
            tokio::time::sleep(Duration::from_millis(BLOCK_MS)).await;
        }
        panic!("no round started");
    }

    /// Adds `data` to the node's content store (pinned); returns its CID.
    pub async fn add_content(&self, data: Vec<u8>) -> Cid {
        self.handle
            .content_store()
            .add(AddSource::Bytes(Bytes::from(data)), &AddOptions::default())
            .await
            .expect("add")
            .cid
    }

    /// Signs `msg` with `key` at `sequence` for the next block's time.
    pub async fn sign(&mut self, key: &SecretKey, msg: tx_body::Msg, sequence: u64) -> SignedTx {
        let status = self.status().await;
        SignedTx::sign(
            TxBody { msg: Some(msg) },
            key,
            sequence,
            &status.chain_id,
            status.next_block_time_ms,
        )
        .expect("sign")
    }

    /// A valid gradient message of `key`'s account over `cid`.
    pub async fn gradient_msg(&mut self, key: &SecretKey, cid: &Cid) -> MsgSubmitGradient {
        let miner = key.public_key().address();
        let (round, shard) = self.assignment(&miner).await;
        gradient_msg(&miner, cid, round, shard)
    }

    /// Submits `tx` with `SubmitGradient`.
    pub async fn submit_gradient(
        &mut self,
        tx: &SignedTx,
    ) -> Result<r3mes_node::proto::SubmitGradientResponse, tonic::Status> {
        self.msg
            .submit_gradient(SubmitGradientRequest {
                transaction: Some(submit_gradient_request::Transaction::TxBytes(tx.encode())),
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// Submits raw bytes with `SubmitGradient`.
    pub async fn submit_bytes(
        &mut self,
        bytes: Vec<u8>,
    ) -> Result<r3mes_node::proto::SubmitGradientResponse, tonic::Status> {
        self.msg
            .submit_gradient(SubmitGradientRequest {
                transaction: Some(submit_gradient_request::Transaction::TxBytes(bytes)),
            })
            .await
            .map(tonic::Response::into_inner)
    }
}

/// A valid submission by `miner` of `cid` (its one chunk and its backbone)
/// for `shard` of `round`, with the proof of work of test parameters.
pub fn gradient_msg(miner: &Address, cid: &Cid, round: u64, shard: u64) -> MsgSubmitGradient {
    let facts = GradientFacts {
        chunk: cid.to_string(),
        backbone: cid.to_string(),
        format: "protobuf".into(),
        byte_size: 4096,
        element_count: 1024,
    };
    one_chunk_submission(miner, cid, round, shard, 4, &facts)
}

/// A plain HTTP/1.1 GET; returns the whole response.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    out
}

/// Deterministic content of `len` bytes for `seed`.
pub fn content(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(&r3mes_chain::crypto::sha256(
            &[seed.to_be_bytes(), i.to_be_bytes()].concat(),
        ));
        i += 1;
    }
    out.truncate(len);
    out
}

/// The encoding of a `Tx` (for hand-made malformed transactions).
pub fn encode(tx: &r3mes_chain::proto::Tx) -> Vec<u8> {
    tx.encode_to_vec()
}
