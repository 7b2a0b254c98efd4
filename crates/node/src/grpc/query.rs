//! The `Query` service: committed state, one rpc per record kind, and the
//! `SubscribeEvents` stream. Reads run on the blocking pool against the
//! keeper's committed state; a record that does not exist is `NOT_FOUND`,
//! a malformed CID, id or address `INVALID_ARGUMENT`.

use std::sync::Arc;

use r3mes_chain::queries;
use r3mes_chain::tables::ExpiryKind;
use r3mes_chain::{Address, Keeper};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{Shared, limit};
use crate::admission::to_status;
use crate::events::Filter;
use crate::proto::query_server::Query;
use crate::proto::*;

/// The `Query` service.
pub struct QueryService {
    shared: Shared,
}

impl QueryService {
    /// The service over the node's shared parts.
    pub fn new(shared: Shared) -> Self {
        QueryService { shared }
    }

    /// Runs `read` on the committed state on the blocking pool.
    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Keeper) -> r3mes_chain::Result<T> + Send + 'static,
    ) -> Result<T, Status> {
        let keeper = Arc::clone(&self.shared.keeper);
        tokio::task::spawn_blocking(move || read(&keeper))
            .await
            .map_err(|e| Status::internal(format!("query task failed: {e}")))?
            .map_err(to_status)
    }
}

fn address(field: &str, text: &str) -> Result<Address, Status> {
    Address::parse(text).map_err(|e| Status::invalid_argument(format!("{field}: {e}")))
}

fn optional_address(field: &str, text: &str) -> Result<Option<Address>, Status> {
    if text.is_empty() {
        Ok(None)
    } else {
        address(field, text).map(Some)
    }
}

fn found<T>(record: Option<T>, what: impl FnOnce() -> String) -> Result<T, Status> {
    record.ok_or_else(|| Status::not_found(format!("{} not found", what())))
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl Query for QueryService {
    async fn status(&self, _: Request<StatusRequest>) -> Reply<StatusResponse> {
        let mempool_size = self.shared.mempool.len() as u64;
        self.read(move |k| {
            let (height, app_hash) = k.tip()?;
            Ok(StatusResponse {
                chain_id: k.chain_id().to_owned(),
                height,
                app_hash: hex::encode(app_hash),
                next_block_time_ms: k.block_time_ms(height.saturating_add(1))?,
                mempool_size,
                total_supply: queries::supply(k.state())?.to_string(),
            })
        })
        .await
        .map(Response::new)
    }

    async fn block(&self, request: Request<BlockRequest>) -> Reply<BlockResponse> {
        let wanted = request.into_inner().height;
        let (height, header, time_ms) = self
            .read(move |k| {
                let height = if wanted == 0 { k.height()? } else { wanted };
                let header = k.header(height)?;
                let time_ms = k.block_time_ms(height)?;
                Ok((height, header, time_ms))
            })
            .await?;
        let h = found(header, || format!("block {height}"))?;
        Ok(Response::new(BlockResponse {
            height: h.height,
            block_hash: hex::encode(h.block_hash),
            previous_app_hash: hex::encode(h.previous_app_hash),
            app_hash: hex::encode(h.app_hash),
            tx_count: h.tx_count,
            time_ms,
        }))
    }

    async fn params(&self, _: Request<ParamsRequest>) -> Reply<ParamsResponse> {
        let params = self.shared.keeper.params();
        let params_json = serde_json::to_string(params)
            .map_err(|e| Status::internal(format!("encoding params: {e}")))?;
        let data_policies = params
            .data_policies()
            .into_iter()
            .map(|p| DataPolicy {
                data_type: p.data_type,
                retention_blocks: p.retention_blocks,
                replication_level: p.replication_level,
                pinning_required: p.pinning_required,
            })
            .collect();
        Ok(Response::new(ParamsResponse {
            params_json,
            data_policies,
        }))
    }

    async fn account(&self, request: Request<AccountRequest>) -> Reply<AccountResponse> {
        let text = request.into_inner().address;
        let addr = address("address", &text)?;
        let acc = self.read(move |k| k.account(&addr)).await?;
        Ok(Response::new(AccountResponse {
            address: text,
            balance: acc.balance.to_string(),
            stake: acc.stake.to_string(),
            unbonding: acc.unbonding.to_string(),
            unbonding_release_height: acc.unbonding_release_height,
            sequence: acc.sequence,
        }))
    }

    async fn validators(&self, _: Request<ValidatorsRequest>) -> Reply<ValidatorsResponse> {
        let list = self.read(|k| queries::validators(k.state())).await?;
        Ok(Response::new(ValidatorsResponse {
            addresses: list.iter().map(ToString::to_string).collect(),
        }))
    }

    async fn gradient(&self, request: Request<CidRequest>) -> Reply<GradientResponse> {
        let cid = request.into_inner().cid;
        let c = cid.clone();
        let g = self.read(move |k| queries::gradient(k.state(), &c)).await?;
        Ok(Response::new(GradientResponse {
            gradient: Some(found(g, || format!("gradient {cid}"))?),
        }))
    }

    async fn gradients_by_round(
        &self,
        request: Request<GradientsByRoundRequest>,
    ) -> Reply<GradientsResponse> {
        let r = request.into_inner();
        let miner = optional_address("miner", &r.miner)?;
        let n = limit(r.limit);
        let gradients = self
            .read(move |k| queries::gradients_in_round(k.state(), r.round_id, miner.as_ref(), n))
            .await?;
        Ok(Response::new(GradientsResponse { gradients }))
    }

    async fn gradients_by_miner(
        &self,
        request: Request<GradientsByMinerRequest>,
    ) -> Reply<GradientsResponse> {
        let r = request.into_inner();
        let miner = address("miner", &r.miner)?;
        let rounds = if r.max_rounds == 0 { 10 } else { r.max_rounds };
        let n = limit(r.limit);
        let gradients = self
            .read(move |k| queries::gradients_of_miner(k.state(), &miner, rounds, n))
            .await?;
        Ok(Response::new(GradientsResponse { gradients }))
    }

    async fn round(&self, request: Request<RoundRequest>) -> Reply<RoundResponse> {
        let id = request.into_inner().round_id;
        let round = self.read(move |k| queries::round(k.state(), id)).await?;
        let round = found(round, || match id {
            Some(id) => format!("round {id}"),
            None => "a started round".into(),
        })?;
        Ok(Response::new(RoundResponse { round: Some(round) }))
    }

    async fn shard_assignment(
        &self,
        request: Request<ShardAssignmentRequest>,
    ) -> Reply<ShardAssignmentResponse> {
        let r = request.into_inner();
        let addr = address("address", &r.address)?;
        let (round, shard_id) = self
            .read(move |k| queries::shard_of(k.state(), &addr, r.round_id))
            .await?;
        Ok(Response::new(ShardAssignmentResponse {
            round_id: round.round_id,
            shard_id,
            total_shards: round.total_shards,
        }))
    }

    async fn challenge(&self, request: Request<ChallengeRequest>) -> Reply<ChallengeResponse> {
        let id = request.into_inner().challenge_id;
        let i = id.clone();
        let c = self
            .read(move |k| queries::challenge(k.state(), &i))
            .await?;
        Ok(Response::new(ChallengeResponse {
            challenge: Some(found(c, || format!("challenge {id}"))?),
        }))
    }

    async fn open_challenges(
        &self,
        request: Request<OpenChallengesRequest>,
    ) -> Reply<ChallengesResponse> {
        let r = request.into_inner();
        let target = address("target", &r.target)?;
        let n = limit(r.limit);
        let challenges = self
            .read(move |k| queries::open_challenges(k.state(), &target, n))
            .await?;
        Ok(Response::new(ChallengesResponse { challenges }))
    }

    async fn content_challenges(
        &self,
        request: Request<ContentChallengesRequest>,
    ) -> Reply<ChallengesResponse> {
        let r = request.into_inner();
        let n = limit(r.limit);
        let challenges = self
            .read(move |k| queries::challenges_of(k.state(), &r.content_cid, n))
            .await?;
        Ok(Response::new(ChallengesResponse { challenges }))
    }

    async fn dataset(&self, request: Request<CidRequest>) -> Reply<DatasetResponse> {
        let cid = request.into_inner().cid;
        let c = cid.clone();
        let d = self.read(move |k| queries::dataset(k.state(), &c)).await?;
        Ok(Response::new(DatasetResponse {
            dataset: Some(found(d, || format!("dataset {cid}"))?),
        }))
    }

    async fn datasets(&self, request: Request<ListRequest>) -> Reply<DatasetsResponse> {
        let n = limit(request.into_inner().limit);
        let datasets = self.read(move |k| queries::datasets(k.state(), n)).await?;
        Ok(Response::new(DatasetsResponse { datasets }))
    }

    async fn shards(&self, request: Request<ShardsRequest>) -> Reply<ShardsResponse> {
        let r = request.into_inner();
        let n = limit(r.limit);
        let shards = self
            .read(move |k| queries::shards(k.state(), &r.dataset_cid, n))
            .await?;
        Ok(Response::new(ShardsResponse { shards }))
    }

    async fn replica(&self, request: Request<CidRequest>) -> Reply<ReplicaResponse> {
        let cid = request.into_inner().cid;
        let c = cid.clone();
        let r = self.read(move |k| queries::replica(k.state(), &c)).await?;
        Ok(Response::new(ReplicaResponse {
            replica: Some(found(r, || format!("replica {cid}"))?),
        }))
    }

    async fn pins(&self, request: Request<PinsRequest>) -> Reply<PinsResponse> {
        let r = request.into_inner();
        let pinner = optional_address("pinner", &r.pinner)?;
        let n = limit(r.limit);
        let pins = self
            .read(move |k| match pinner {
                Some(p) => Ok(queries::pin(k.state(), &r.content_cid, &p)?
                    .into_iter()
                    .collect()),
                None => queries::pins_of(k.state(), &r.content_cid, n),
            })
            .await?;
        Ok(Response::new(PinsResponse { pins }))
    }

    async fn verifications(
        &self,
        request: Request<VerificationsRequest>,
    ) -> Reply<VerificationsResponse> {
        let r = request.into_inner();
        let n = limit(r.limit);
        let verifications = self
            .read(move |k| queries::verifications(k.state(), &r.gradient_cid, n))
            .await?;
        Ok(Response::new(VerificationsResponse { verifications }))
    }

    async fn model(&self, request: Request<ModelRequest>) -> Reply<ModelResponse> {
        let ModelRequest { version, round_id } = request.into_inner();
        if let Some(id) = round_id {
            if version.is_some() {
                return Err(Status::invalid_argument(
                    "name a version or a round, not both",
                ));
            }
            let m = self
                .read(
                    move |k| match r3mes_chain::rounds::get_round(k.state(), id)? {
                        Some(round) => r3mes_chain::models::model_for_round(k.state(), &round),
                        None => Ok(None),
                    },
                )
                .await?;
            let m = found(m, || {
                format!("round {id} or a model version registered by its start")
            })?;
            return Ok(Response::new(ModelResponse { model: Some(m) }));
        }
        let m = self
            .read(move |k| queries::model(k.state(), version))
            .await?;
        let m = found(m, || match version {
            Some(v) => format!("model version {v}"),
            None => "a registered model".into(),
        })?;
        Ok(Response::new(ModelResponse { model: Some(m) }))
    }

    async fn trace(&self, request: Request<TraceRequest>) -> Reply<TraceResponse> {
        let id = request.into_inner().trace_id;
        let i = id.clone();
        let t = self.read(move |k| queries::trace(k.state(), &i)).await?;
        Ok(Response::new(TraceResponse {
            trace: Some(found(t, || format!("trace {id}"))?),
        }))
    }

    async fn owned(&self, request: Request<OwnedRequest>) -> Reply<OwnedResponse> {
        let r = request.into_inner();
        let owner = address("address", &r.address)?;
        let kinds = r
            .kinds
            .iter()
            .map(|k| match k.as_str() {
                "replica" => Ok(ExpiryKind::Replica),
                "pin" => Ok(ExpiryKind::Pin),
                "verification" => Ok(ExpiryKind::Verification),
                "trace" => Ok(ExpiryKind::Trace),
                other => Err(Status::invalid_argument(format!(
                    "kinds: {other:?} is not one of replica, pin, verification, trace"
                ))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let n = limit(r.limit);
        let owned = self
            .read(move |k| queries::owned(k.state(), &owner, &kinds, n))
            .await?;
        Ok(Response::new(OwnedResponse {
            replicas: owned.replicas,
            pins: owned.pins,
            verifications: owned.verifications,
            traces: owned.traces,
        }))
    }

    type SubscribeEventsStream = ReceiverStream<Result<BlockEvent, Status>>;

    async fn subscribe_events(
        &self,
        request: Request<SubscribeEventsRequest>,
    ) -> Reply<Self::SubscribeEventsStream> {
        let filter = Filter::new(request.get_ref()).map_err(Status::invalid_argument)?;
        let mut events = self.shared.events.subscribe();
        let token = self.shared.token.clone();
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(async move {
            loop {
                let batch = tokio::select! {
                    () = token.cancelled() => break,
                    () = tx.closed() => break,
                    batch = events.recv() => batch,
                };
                match batch {
                    Ok(batch) => {
                        for e in batch.iter().filter(|e| filter.matches(e)) {
                            if tx.send(Ok(e.clone())).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        let _ = tx
                            .send(Err(Status::resource_exhausted(format!(
                                "the subscriber fell {n} blocks behind and missed their \
                                 events: subscribe again"
                            ))))
                            .await;
                        break;
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
