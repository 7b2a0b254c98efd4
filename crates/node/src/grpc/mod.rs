//! The gRPC server: the `Msg` and `Query` services of
//! `r3mes.node.v1`, gRPC health (`grpc.health.v1`) and reflection
//! (`grpc.reflection.v1`), on one listener until shutdown.

pub mod msg;
pub mod query;

use std::sync::Arc;

use r3mes_chain::Keeper;
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

use crate::admission::Admission;
use crate::mempool::Mempool;
use crate::metrics::Metrics;
use crate::producer::EventBatch;
use crate::proto::msg_server::MsgServer;
use crate::proto::query_server::QueryServer;
use crate::{Error, Result};

/// What the services share.
#[derive(Clone)]
pub struct Shared {
    /// The keeper (committed reads).
    pub keeper: Arc<Keeper>,
    /// The mempool.
    pub mempool: Arc<Mempool>,
    /// Admission into the mempool.
    pub admission: Admission,
    /// Committed events.
    pub events: broadcast::Sender<EventBatch>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Cancelled at shutdown (ends event streams).
    pub token: CancellationToken,
}

/// Serves every service on `listener` until `shared.token` is cancelled.
pub async fn serve(listener: TcpListener, shared: Shared) -> Result<()> {
    let token = shared.token.clone();
    // Room for the largest transaction (a challenge answer) and its
    // envelope, so an oversized transaction gets the keeper's clear error
    // rather than the transport's.
    let max_message = shared.keeper.max_tx_bytes_any().saturating_mul(2);
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_serving::<MsgServer<msg::MsgService>>().await;
    reporter
        .set_serving::<QueryServer<query::QueryService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| Error::Runtime(format!("gRPC reflection: {e}")))?;
    let msg =
        MsgServer::new(msg::MsgService::new(shared.clone())).max_decoding_message_size(max_message);
    let query = QueryServer::new(query::QueryService::new(shared));
    Server::builder()
        .add_service(health)
        .add_service(reflection)
        .add_service(msg)
        .add_service(query)
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), token.cancelled_owned())
        .await
        .map_err(|e| Error::Runtime(format!("gRPC server: {e}")))
}

/// `limit` of a listing request: 0 means 100, at most 1000.
pub fn limit(requested: u32) -> usize {
    match requested {
        0 => 100,
        n => usize::try_from(n).unwrap_or(usize::MAX).min(1000),
    }
}
