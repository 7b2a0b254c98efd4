//! The `Msg` service: transactions in, answered after commit.

use std::sync::atomic::Ordering::Relaxed;

use prost::Message;
use r3mes_chain::apply::TxResponse;
use r3mes_chain::proto::{Tx, tx_body};
use tonic::{Request, Response, Status};

use super::Shared;
use crate::admission::{Admitted, to_status};
use crate::mempool::Committed;
use crate::proto::msg_server::Msg;
use crate::proto::submit_gradient_request;
use crate::proto::{
    BroadcastMode, BroadcastTxRequest, BroadcastTxResponse, SubmitGradientRequest,
    SubmitGradientResponse,
};

/// The `Msg` service.
pub struct MsgService {
    shared: Shared,
}

impl MsgService {
    /// The service over the node's shared parts.
    pub fn new(shared: Shared) -> Self {
        MsgService { shared }
    }

    /// Admits `bytes` to the mempool.
    fn admit(&self, bytes: Vec<u8>) -> Result<Admitted, Status> {
        self.shared.admission.admit(&bytes).inspect_err(|_| {
            self.shared.metrics.txs_rejected.fetch_add(1, Relaxed);
        })
    }

    /// Admits `bytes` and waits for the block that holds them.
    async fn submit(&self, bytes: Vec<u8>) -> Result<Committed, Status> {
        let admitted = self.admit(bytes)?;
        admitted.reply.await.map_err(|_| {
            Status::unavailable("the node stopped before the transaction's block was committed")
        })?
    }
}

#[tonic::async_trait]
impl Msg for MsgService {
    async fn submit_gradient(
        &self,
        request: Request<SubmitGradientRequest>,
    ) -> Result<Response<SubmitGradientResponse>, Status> {
        let bytes = match request.into_inner().transaction {
            Some(submit_gradient_request::Transaction::TxBytes(b)) => b,
            Some(submit_gradient_request::Transaction::Tx(tx)) => tx.encode_to_vec(),
            None => return Err(Status::invalid_argument("no transaction in the request")),
        };
        // A transaction that decodes must carry a gradient; one that does
        // not decode gets admission's error.
        if let Ok(tx) = Tx::decode(bytes.as_slice()) {
            let msg = tx.body.as_ref().and_then(|b| b.msg.as_ref());
            if msg.is_some() && !matches!(msg, Some(tx_body::Msg::SubmitGradient(_))) {
                return Err(Status::invalid_argument(
                    "SubmitGradient takes a transaction carrying MsgSubmitGradient; \
                     send other messages with BroadcastTx",
                ));
            }
        }
        let committed = self.submit(bytes).await?;
        let outcome = committed.outcome.map_err(to_status)?;
        match outcome.response {
            TxResponse::SubmitGradient(r) => Ok(Response::new(SubmitGradientResponse {
                ipfs_hash: r.ipfs_hash,
                block_height: r.block_height,
                tx_hash: hex::encode(committed.hash),
            })),
            other => Err(Status::internal(format!(
                "the keeper answered a gradient submission with {other:?}"
            ))),
        }
    }

    async fn broadcast_tx(
        &self,
        request: Request<BroadcastTxRequest>,
    ) -> Result<Response<BroadcastTxResponse>, Status> {
        let request = request.into_inner();
        if request.mode() == BroadcastMode::Sync {
            let admitted = self.admit(request.tx_bytes)?;
            return Ok(Response::new(BroadcastTxResponse {
                tx_hash: hex::encode(admitted.hash),
                ..BroadcastTxResponse::default()
            }));
        }
        let committed = self.submit(request.tx_bytes).await?;
        let mut response = BroadcastTxResponse {
            tx_hash: hex::encode(committed.hash),
            height: committed.height,
            ..BroadcastTxResponse::default()
        };
        match committed.outcome {
            Ok(outcome) => {
                response.events = outcome.events;
                response.result = match outcome.response {
                    TxResponse::None => String::new(),
                    TxResponse::SubmitGradient(r) => r.ipfs_hash,
                    TxResponse::ChallengeId(id) | TxResponse::TraceId(id) => id,
                    TxResponse::Rewards(amount) => amount.to_string(),
                };
            }
            Err(err) => {
                response.code = err.code();
                response.log = err.to_string();
            }
        }
        Ok(Response::new(response))
    }
}
