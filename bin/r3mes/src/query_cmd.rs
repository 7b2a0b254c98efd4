//! `r3mes query ...`: reads a node's records over its gRPC `Query` service
//! and prints them as `field: value` lines, or as JSON with `--json`.
//! Byte fields of records print readably: 20-byte addresses as bech32
//! `remes1...`, CIDs as text, anything else as hex.

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use r3mes_chain::Address;
use r3mes_chain::tables::hex_lower;
use r3mes_node::proto::query_client::QueryClient;
use r3mes_node::proto::{
    AccountRequest, BlockRequest, ChallengeRequest, CidRequest, GradientsByMinerRequest,
    GradientsByRoundRequest, ModelRequest, OpenChallengesRequest, OwnedRequest, ParamsRequest,
    PinsRequest, RoundRequest, ShardAssignmentRequest, StatusRequest, TraceRequest,
    VerificationsRequest,
};
use serde::Serialize;
use serde_json::{Map, Value};
use tonic::transport::Channel;

/// Record fields that hold bytes (from `proto/r3mes/chain/v1/types.proto`).
const BYTE_FIELDS: &[&str] = &[
    "approvals",
    "challenge_id",
    "challenger",
    "checksum",
    "content_hash",
    "data_hash",
    "dataset_hash",
    "gradient_hash",
    "ipfs_hash",
    "miner",
    "miner_address",
    "pinner_address",
    "proposer",
    "provider_pubkey",
    "replica_hash",
    "replication_id",
    "response_hash",
    "signature",
    "start_block_hash",
    "submitter",
    "target",
    "trace_hash",
    "trace_id",
    "validator",
    "vault_commitment",
    "verification_proof",
];

#[derive(Args)]
pub struct QueryArgs {
    /// The node's gRPC address.
    #[arg(long, global = true, default_value = "http://127.0.0.1:9090")]
    node: String,
    /// Print JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    what: QueryCommand,
}

#[derive(Subcommand)]
enum QueryCommand {
    /// Chain id, height, app hash, next block time, mempool size, total
    /// supply.
    Status,
    /// A committed block's header: hash, app hash before and after,
    /// transaction count, time.
    Block {
        /// Height (default: the last committed block).
        height: Option<u64>,
    },
    /// The keeper's parameters, with the data policies they give.
    Params,
    /// An account's balance, stake and sequence.
    Balance {
        /// bech32 `remes1...` address.
        address: String,
    },
    /// A stored gradient by CID.
    Gradient {
        /// The gradient's CID.
        cid: String,
    },
    /// Gradients of a round (optionally one miner's), or a miner's recent ones.
    Gradients {
        /// Round id.
        #[arg(long)]
        round: Option<u64>,
        /// Miner address.
        #[arg(long)]
        miner: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Availability challenges of a target.
    Challenges {
        /// The challenged address.
        #[arg(long)]
        target: String,
        /// Only `open` challenges are indexed by target.
        #[arg(long, default_value = "open")]
        status: String,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// The shard an address must train in a round.
    Shard {
        /// The miner's address.
        #[arg(long)]
        address: String,
        /// Round id (default: the current round).
        #[arg(long)]
        round: Option<u64>,
    },
    /// A round (default: the current one).
    Round {
        /// Round id.
        id: Option<u64>,
    },
    /// A dataset by CID.
    Dataset {
        /// The dataset's CID.
        id: String,
    },
    /// An availability challenge by hex id (open or closed).
    Challenge {
        /// Hex challenge id.
        id: String,
    },
    /// The validators' verification results of a gradient.
    Verifications {
        /// The gradient's CID.
        cid: String,
    },
    /// The pinning commitments on a content CID.
    Pins {
        /// The content's CID.
        cid: String,
        /// Only this pinner's.
        #[arg(long)]
        pinner: Option<String>,
    },
    /// A Proof-of-Replication record by replica CID.
    Replica {
        /// The replica's CID.
        cid: String,
    },
    /// A model version (default: the latest).
    Model {
        /// Version.
        version: Option<u64>,
    },
    /// A computation trace by hex id.
    Trace {
        /// Hex trace id.
        id: String,
    },
    /// The replicas, pins, verification results and traces an address
    /// holds.
    Owned {
        /// bech32 `remes1...` address.
        address: String,
        /// Only these kinds: replica, pin, verification, trace (repeatable).
        #[arg(long = "kind")]
        kinds: Vec<String>,
        /// At most this many of each kind.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

pub fn run(args: QueryArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let value = runtime.block_on(query(&args))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print_lines("", &value);
    }
    Ok(())
}

async fn query(args: &QueryArgs) -> Result<Value> {
    let channel = Channel::from_shared(args.node.clone())
        .context("node URL")?
        .connect()
        .await
        .with_context(|| format!("connecting to {}", args.node))?;
    let mut q = QueryClient::new(channel);
    let status = |s: tonic::Status| anyhow::anyhow!("{:?}: {}", s.code(), s.message());
    Ok(match &args.what {
        QueryCommand::Status => {
            let s = q
                .status(StatusRequest {})
                .await
                .map_err(status)?
                .into_inner();
            serde_json::json!({
                "chain_id": s.chain_id,
                "height": s.height,
                "app_hash": s.app_hash,
                "next_block_time_ms": s.next_block_time_ms,
                "mempool_size": s.mempool_size,
                "total_supply": s.total_supply,
            })
        }
        QueryCommand::Block { height } => {
            let b = q
                .block(BlockRequest {
                    height: height.unwrap_or(0),
                })
                .await
                .map_err(status)?
                .into_inner();
            serde_json::json!({
                "height": b.height,
                "block_hash": b.block_hash,
                "previous_app_hash": b.previous_app_hash,
                "app_hash": b.app_hash,
                "tx_count": b.tx_count,
                "time_ms": b.time_ms,
            })
        }
        QueryCommand::Params => {
            let p = q
                .params(ParamsRequest {})
                .await
                .map_err(status)?
                .into_inner();
            let mut params: Value =
                serde_json::from_str(&p.params_json).context("the node's params JSON")?;
            let policies: Vec<Value> = p
                .data_policies
                .iter()
                .map(|d| {
                    serde_json::json!({
                        "data_type": d.data_type,
                        "retention_blocks": d.retention_blocks,
                        "replication_level": d.replication_level,
                        "pinning_required": d.pinning_required,
                    })
                })
                .collect();
            if let Value::Object(map) = &mut params {
                map.insert("data_policies".into(), Value::Array(policies));
            }
            params
        }
        QueryCommand::Balance { address } => {
            let a = q
                .account(AccountRequest {
                    address: address.clone(),
                })
                .await
                .map_err(status)?
                .into_inner();
            serde_json::json!({
                "address": a.address,
                "balance": a.balance,
                "stake": a.stake,
                "unbonding": a.unbonding,
                "unbonding_release_height": a.unbonding_release_height,
                "sequence": a.sequence,
            })
        }
        QueryCommand::Gradient { cid } => {
            let g = q
                .gradient(CidRequest { cid: cid.clone() })
                .await
                .map_err(status)?
                .into_inner();
            record(&g.gradient)?
        }
        QueryCommand::Gradients {
            round,
            miner,
            limit,
        } => {
            let gradients = match (round, miner) {
                (Some(round), miner) => {
                    q.gradients_by_round(GradientsByRoundRequest {
                        round_id: *round,
                        miner: miner.clone().unwrap_or_default(),
                        limit: *limit,
                    })
                    .await
                }
                (None, Some(miner)) => {
                    q.gradients_by_miner(GradientsByMinerRequest {
                        miner: miner.clone(),
                        max_rounds: 0,
                        limit: *limit,
                    })
                    .await
                }
                (None, None) => anyhow::bail!("give --round, --miner or both"),
            }
            .map_err(status)?
            .into_inner()
            .gradients;
            record(&gradients)?
        }
        QueryCommand::Challenges {
            target,
            status: wanted,
            limit,
        } => {
            if wanted != "open" {
                anyhow::bail!(
                    "only --status open is indexed by target; closed challenges are \
                     found by id (their events name them)"
                );
            }
            let c = q
                .open_challenges(OpenChallengesRequest {
                    target: target.clone(),
                    limit: *limit,
                })
                .await
                .map_err(status)?
                .into_inner();
            record(&c.challenges)?
        }
        QueryCommand::Shard { address, round } => {
            let s = q
                .shard_assignment(ShardAssignmentRequest {
                    address: address.clone(),
                    round_id: *round,
                })
                .await
                .map_err(status)?
                .into_inner();
            serde_json::json!({
                "round_id": s.round_id,
                "shard_id": s.shard_id,
                "total_shards": s.total_shards,
            })
        }
        QueryCommand::Round { id } => {
            let r = q
                .round(RoundRequest { round_id: *id })
                .await
                .map_err(status)?
                .into_inner();
            record(&r.round)?
        }
        QueryCommand::Dataset { id } => {
            let d = q
                .dataset(CidRequest { cid: id.clone() })
                .await
                .map_err(status)?
                .into_inner();
            record(&d.dataset)?
        }
        QueryCommand::Challenge { id } => {
            let c = q
                .challenge(ChallengeRequest {
                    challenge_id: id.clone(),
                })
                .await
                .map_err(status)?
                .into_inner();
            record(&c.challenge)?
        }
        QueryCommand::Verifications { cid } => {
            let v = q
                .verifications(VerificationsRequest {
                    gradient_cid: cid.clone(),
                    limit: 0,
                })
                .await
                .map_err(status)?
                .into_inner();
            record(&v.verifications)?
        }
        QueryCommand::Pins { cid, pinner } => {
            let p = q
                .pins(PinsRequest {
                    content_cid: cid.clone(),
                    pinner: pinner.clone().unwrap_or_default(),
                    limit: 0,
                })
                .await
                .map_err(status)?
                .into_inner();
            record(&p.pins)?
        }
        QueryCommand::Replica { cid } => {
            let r = q
                .replica(CidRequest { cid: cid.clone() })
                .await
                .map_err(status)?
                .into_inner();
            record(&r.replica)?
        }
        QueryCommand::Model { version } => {
            let m = q
                .model(ModelRequest {
                    version: *version,
                    round_id: None,
                })
                .await
                .map_err(status)?
                .into_inner();
            record(&m.model)?
        }
        QueryCommand::Trace { id } => {
            let t = q
                .trace(TraceRequest {
                    trace_id: id.clone(),
                })
                .await
                .map_err(status)?
                .into_inner();
            record(&t.trace)?
        }
        QueryCommand::Owned {
            address,
            kinds,
            limit,
        } => {
            let o = q
                .owned(OwnedRequest {
                    address: address.clone(),
                    kinds: kinds.clone(),
                    limit: *limit,
                })
                .await
                .map_err(status)?
                .into_inner();
            serde_json::json!({
                "replicas": record(&o.replicas)?,
                "pins": record(&o.pins)?,
                "verifications": record(&o.verifications)?,
                "traces": record(&o.traces)?,
            })
        }
    })
}

/// A record as JSON with its byte fields made readable.
fn record(value: &impl Serialize) -> Result<Value> {
    let mut v = serde_json::to_value(value).context("encoding the record")?;
    readable(&mut v, None);
    Ok(v)
}

fn readable(v: &mut Value, field: Option<&str>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                readable(child, Some(k));
            }
        }
        Value::Array(items) => {
            let is_bytes_field = field.is_some_and(|f| BYTE_FIELDS.contains(&f));
            let bytes: Option<Vec<u8>> = items
                .iter()
                .map(|i| i.as_u64().and_then(|n| u8::try_from(n).ok()))
                .collect();
            match (is_bytes_field, bytes) {
                (true, Some(bytes)) if !bytes.is_empty() => *v = Value::String(show(&bytes)),
                _ => {
                    for item in items.iter_mut() {
                        readable(item, field);
                    }
                }
            }
        }
        _ => {}
    }
}

/// Bytes as an address, a CID, or hex.
fn show(bytes: &[u8]) -> String {
    if let Ok(a) = <[u8; 20]>::try_from(bytes) {
        return Address(a).to_string();
    }
    if let Ok(cid) = cid::Cid::try_from(bytes) {
        return cid.to_string();
    }
    hex_lower(bytes)
}

fn print_lines(prefix: &str, v: &Value) {
    match v {
        Value::Object(map) => print_map(prefix, map),
        Value::Array(items) if items.iter().all(|i| i.is_object() || i.is_array()) => {
            for (i, item) in items.iter().enumerate() {
                print_lines(&format!("{prefix}[{i}]"), item);
            }
            if items.is_empty() {
                println!("{}(none)", label(prefix));
            }
        }
        Value::String(s) => println!("{}{s}", label(prefix)),
        other => println!("{}{other}", label(prefix)),
    }
}

fn print_map(prefix: &str, map: &Map<String, Value>) {
    for (k, child) in map {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        print_lines(&key, child);
    }
}

fn label(prefix: &str) -> String {
    if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}: ")
    }
}
