//! [`NodeClient`]: one connection to a node's `Msg` and `Query` services.
//!
//! A transaction must carry its account's next sequence, so transactions
//! of one key are sent one batch at a time: [`NodeClient::send_all`] holds
//! that key's lock from reading the sequence until the batch's last
//! transaction is committed. Within a batch every transaction but the last
//! is sent in `BROADCAST_MODE_SYNC` (answered once admitted, so the next
//! sequence can follow at once) and the last in commit mode, whose answer
//! therefore covers the whole batch: the node's mempool drops an account's
//! later transactions when one fails, naming it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use r3mes_chain::params::Params;
use r3mes_chain::proto::{
    Challenge, DataShard, Event, ModelVersion, MsgSubmitGradient, Round, StoredGradient, TxBody,
    VerificationResult, tx_body,
};
use r3mes_chain::{Address, SecretKey, SignedTx};
use r3mes_node::proto::msg_client::MsgClient;
use r3mes_node::proto::query_client::QueryClient;
use r3mes_node::proto::{
    AccountRequest, AccountResponse, BlockEvent, BroadcastMode, BroadcastTxRequest, CidRequest,
    ContentChallengesRequest, GradientsByRoundRequest, ModelRequest, OpenChallengesRequest,
    ParamsRequest, RoundRequest, ShardAssignmentRequest, ShardsRequest, StatusRequest,
    StatusResponse, SubmitGradientRequest, SubmitGradientResponse, SubscribeEventsRequest,
    VerificationsRequest, submit_gradient_request,
};
use tonic::transport::Channel;

use crate::{Error, Result};

/// The committed outcome of a transaction the keeper applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Hex sha256 of the transaction bytes.
    pub tx_hash: String,
    /// The block that holds it.
    pub height: u64,
    /// The events it emitted.
    pub events: Vec<Event>,
    /// The message's result (a challenge id, a CID, an amount; see
    /// `BroadcastTxResponse.result`).
    pub result: String,
}

/// A connection to one node (cheap to clone; clones share the connection
/// and the per-key locks).
#[derive(Clone)]
pub struct NodeClient {
    msg: MsgClient<Channel>,
    query: QueryClient<Channel>,
    locks: Arc<Mutex<HashMap<Address, Arc<tokio::sync::Mutex<()>>>>>,
}

impl NodeClient {
    /// Connects to the node's gRPC endpoint at `url` (`http://127.0.0.1:9090`).
    pub async fn connect(url: &str) -> Result<Self> {
        let connect_error = |reason: String| Error::Connect {
            url: url.to_owned(),
            reason,
        };
        let channel = Channel::from_shared(url.to_owned())
            .map_err(|e| connect_error(e.to_string()))?
            .connect()
            .await
            .map_err(|e| connect_error(e.to_string()))?;
        Ok(NodeClient {
            msg: MsgClient::new(channel.clone()),
            query: QueryClient::new(channel),
            locks: Arc::default(),
        })
    }

    /// The raw `Query` client, for reads this type does not wrap.
    pub fn query(&self) -> QueryClient<Channel> {
        self.query.clone()
    }

    /// The raw `Msg` client.
    pub fn msg(&self) -> MsgClient<Channel> {
        self.msg.clone()
    }

    /// Chain id, committed height and app hash, next block time.
    pub async fn status(&self) -> Result<StatusResponse> {
        let answer = self.query().status(StatusRequest {}).await;
        Ok(answer
            .map_err(|s| Error::refused("Status", s))?
            .into_inner())
    }

    /// The keeper's parameters.
    pub async fn params(&self) -> Result<Params> {
        let answer = self.query().params(ParamsRequest {}).await;
        let json = answer
            .map_err(|s| Error::refused("Params", s))?
            .into_inner()
            .params_json;
        serde_json::from_str(&json).map_err(|e| Error::Malformed {
            call: "Params",
            reason: e.to_string(),
        })
    }

    /// An account's balances and next sequence.
    pub async fn account(&self, address: &Address) -> Result<AccountResponse> {
        let answer = self
            .query()
            .account(AccountRequest {
                address: address.to_string(),
            })
            .await;
        Ok(answer
            .map_err(|s| Error::refused("Account", s))?
            .into_inner())
    }

    /// A round (the current one if `id` is `None`); `None` if the node has
    /// no such round.
    pub async fn round(&self, id: Option<u64>) -> Result<Option<Round>> {
        let answer = self.query().round(RoundRequest { round_id: id }).await;
        found("Round", answer.map(|r| r.into_inner().round))
    }

    /// The shard `AssignShard` gives `address` in round `round` (the current
    /// one if `None`): `(round, shard, total shards)`.
    pub async fn shard_assignment(
        &self,
        address: &Address,
        round: Option<u64>,
    ) -> Result<(u64, u64, u64)> {
        let answer = self
            .query()
            .shard_assignment(ShardAssignmentRequest {
                address: address.to_string(),
                round_id: round,
            })
            .await
            .map_err(|s| Error::refused("ShardAssignment", s))?
            .into_inner();
        Ok((answer.round_id, answer.shard_id, answer.total_shards))
    }

    /// The shard records of a dataset (at most 1000).
    pub async fn shards(&self, dataset_cid: &str) -> Result<Vec<DataShard>> {
        let answer = self
            .query()
            .shards(ShardsRequest {
                dataset_cid: dataset_cid.to_owned(),
                limit: 1000,
            })
            .await;
        Ok(answer
            .map_err(|s| Error::refused("Shards", s))?
            .into_inner()
            .shards)
    }

    /// A model version (the latest if `None`); `None` if there is none.
    pub async fn model(&self, version: Option<u64>) -> Result<Option<ModelVersion>> {
        let answer = self
            .query()
            .model(ModelRequest {
                version,
                round_id: None,
            })
            .await;
        found("Model", answer.map(|r| r.into_inner().model))
    }

    /// The model version round `round_id` trains from (the newest registered
    /// at or before the round's start, by the keeper's rule); `None` if the
    /// round or such a version is unknown.
    pub async fn model_for_round(&self, round_id: u64) -> Result<Option<ModelVersion>> {
        let answer = self
            .query()
            .model(ModelRequest {
                version: None,
                round_id: Some(round_id),
            })
            .await;
        found("Model", answer.map(|r| r.into_inner().model))
    }

    /// A stored gradient by CID; `None` if the chain does not hold it.
    pub async fn gradient(&self, cid: &str) -> Result<Option<StoredGradient>> {
        let answer = self
            .query()
            .gradient(CidRequest {
                cid: cid.to_owned(),
            })
            .await;
        found("Gradient", answer.map(|r| r.into_inner().gradient))
    }

    /// The gradients stored for a round (at most 1000).
    pub async fn gradients_in_round(&self, round: u64) -> Result<Vec<StoredGradient>> {
        let answer = self
            .query()
            .gradients_by_round(GradientsByRoundRequest {
                round_id: round,
                miner: String::new(),
                limit: 1000,
            })
            .await;
        Ok(answer
            .map_err(|s| Error::refused("GradientsByRound", s))?
            .into_inner()
            .gradients)
    }

    /// Every stored challenge of content `cid` (pending and recently closed).
    pub async fn content_challenges(&self, cid: &str) -> Result<Vec<Challenge>> {
        let answer = self
            .query()
            .content_challenges(ContentChallengesRequest {
                content_cid: cid.to_owned(),
                limit: 1000,
            })
            .await;
        Ok(answer
            .map_err(|s| Error::refused("ContentChallenges", s))?
            .into_inner()
            .challenges)
    }

    /// The verification results of a gradient.
    pub async fn verifications(&self, cid: &str) -> Result<Vec<VerificationResult>> {
        let answer = self
            .query()
            .verifications(VerificationsRequest {
                gradient_cid: cid.to_owned(),
                limit: 1000,
            })
            .await;
        Ok(answer
            .map_err(|s| Error::refused("Verifications", s))?
            .into_inner()
            .verifications)
    }

    /// The pending challenges targeting `address`, oldest first.
    pub async fn open_challenges(&self, address: &Address) -> Result<Vec<Challenge>> {
        let answer = self
            .query()
            .open_challenges(r3mes_node::proto::OpenChallengesRequest {
                target: address.to_string(),
                ..OpenChallengesRequest::default()
            })
            .await;
        Ok(answer
            .map_err(|s| Error::refused("OpenChallenges", s))?
            .into_inner()
            .challenges)
    }

    /// The events of every block committed from now on, of the given kinds
    /// (all if empty) and naming `address` if given.
    pub async fn subscribe(
        &self,
        types: &[&str],
        address: Option<&Address>,
    ) -> Result<tonic::Streaming<BlockEvent>> {
        let answer = self
            .query()
            .subscribe_events(SubscribeEventsRequest {
                types: types.iter().map(|t| (*t).to_owned()).collect(),
                address: address.map(ToString::to_string).unwrap_or_default(),
            })
            .await;
        Ok(answer
            .map_err(|s| Error::refused("SubscribeEvents", s))?
            .into_inner())
    }

    /// Signs `msgs` with consecutive sequences from `key`'s next committed
    /// one, at the next block's time.
    pub async fn sign_all(
        &self,
        key: &SecretKey,
        msgs: Vec<tx_body::Msg>,
    ) -> Result<Vec<SignedTx>> {
        let status = self.status().await?;
        let first = self.account(&key.public_key().address()).await?.sequence;
        msgs.into_iter()
            .zip(first..)
            .map(|(msg, sequence)| {
                let body = TxBody { msg: Some(msg) };
                Ok(SignedTx::sign(
                    body,
                    key,
                    sequence,
                    &status.chain_id,
                    status.next_block_time_ms,
                )?)
            })
            .collect()
    }

    /// Signs and sends one message and waits for its block.
    pub async fn send(&self, key: &SecretKey, msg: tx_body::Msg) -> Result<Outcome> {
        self.send_all(key, vec![msg]).await
    }

    /// Signs and sends `msgs` as consecutive transactions of `key` and
    /// waits for the block holding the last; its outcome is returned (an
    /// earlier one failing makes it fail too, naming the earlier one).
    pub async fn send_all(&self, key: &SecretKey, msgs: Vec<tx_body::Msg>) -> Result<Outcome> {
        let lock = self.lock_for(&key.public_key().address());
        let _held = lock.lock().await;
        let txs = self.sign_all(key, msgs).await?;
        let Some((last, first)) = txs.split_last() else {
            return Err(Error::Malformed {
                call: "BroadcastTx",
                reason: "no message to send".into(),
            });
        };
        for tx in first {
            self.broadcast(tx, BroadcastMode::Sync).await?;
        }
        let r = self.broadcast(last, BroadcastMode::Commit).await?;
        if r.code != 0 {
            return Err(Error::Failed {
                height: r.height,
                code: r.code,
                log: r.log,
            });
        }
        Ok(Outcome {
            tx_hash: r.tx_hash,
            height: r.height,
            events: r.events,
            result: r.result,
        })
    }

    /// Signs a gradient submission with `key` and sends it to
    /// `Msg.SubmitGradient`; answers `{ipfs_hash, block_height}` once its
    /// block is committed.
    pub async fn submit_gradient(
        &self,
        key: &SecretKey,
        msg: MsgSubmitGradient,
    ) -> Result<SubmitGradientResponse> {
        let lock = self.lock_for(&key.public_key().address());
        let _held = lock.lock().await;
        let mut txs = self
            .sign_all(key, vec![tx_body::Msg::SubmitGradient(msg)])
            .await?;
        let tx = txs.pop().ok_or_else(|| Error::Malformed {
            call: "SubmitGradient",
            reason: "nothing signed".into(),
        })?;
        let answer = self
            .msg()
            .submit_gradient(SubmitGradientRequest {
                transaction: Some(submit_gradient_request::Transaction::TxBytes(tx.encode())),
            })
            .await;
        Ok(answer
            .map_err(|s| Error::refused("SubmitGradient", s))?
            .into_inner())
    }

    async fn broadcast(
        &self,
        tx: &SignedTx,
        mode: BroadcastMode,
    ) -> Result<r3mes_node::proto::BroadcastTxResponse> {
        let answer = self
            .msg()
            .broadcast_tx(BroadcastTxRequest {
                tx_bytes: tx.encode(),
                mode: mode.into(),
            })
            .await;
        Ok(answer
            .map_err(|s| Error::refused("BroadcastTx", s))?
            .into_inner())
    }

    fn lock_for(&self, address: &Address) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
        locks.entry(*address).or_default().clone()
    }
}

/// A lookup's answer: `NotFound` is `None`, other refusals are errors.
fn found<T>(
    call: &'static str,
    answer: std::result::Result<Option<T>, tonic::Status>,
) -> Result<Option<T>> {
    match answer {
        Ok(value) => Ok(value),
        Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
        Err(s) => Err(Error::refused(call, s)),
    }
}
