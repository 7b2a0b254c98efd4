//! `r3mes tx ...`: signs transactions with a keyring key and sends them to
//! a node over gRPC (`r3mes_client::NodeClient`); each command prints the
//! result once the block holding it is committed. Every message of the
//! chain has a command.
//!
//! `tx submit-gradient` is the seed's miner flow by hand: add the gradient
//! file to IPFS (16 KiB leaves, so validators read little; see
//! `r3mes-verify`) and file it in the store's MFS at
//! `/gradients/window_{round}/miner_{address}`, fill the metadata from the file, solve the proof of
//! work, sign with the account's next sequence and the chain's next block
//! time, and call `Msg.SubmitGradient`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use r3mes_chain::datasets::sign_dataset;
use r3mes_chain::gradients::{FORMATS, solve_pow};
use r3mes_chain::proto::{
    ChallengeKind, ChunkData, DatasetMetadata, GradientMetadata, LoraAdapterRef, ModelVersion,
    MsgApproveDataset, MsgClaimPinRewards, MsgDeactivateDataset, MsgIssueChallenge,
    MsgProposeDataset, MsgRecordTrace, MsgRegisterModel, MsgRegisterPin, MsgRegisterReplica,
    MsgSend, MsgStake, MsgSubmitGradient, MsgSubmitVerification, MsgUnstake, tx_body,
};
use r3mes_chain::{Address, SecretKey};
use r3mes_client::{NodeClient, Outcome};
use r3mes_ipfs::{AddOptions, AddSource, Cid, ContentStore, PinMode, cids};
use r3mes_kubo::KuboClient;
use r3mes_node::home::Home;
use r3mes_node::keyring::Keyring;
use r3mes_node::proto::ChallengeRequest;
use r3mes_protocol::layout::{GradientPath, MinerAddress};
use r3mes_tensor::{Format, Limits};
use r3mes_worker::availability::{DEFAULT_BLOCK_TIMEOUT, ResponseLimits, answer_from_content};

#[derive(Args)]
pub struct TxArgs {
    /// The node's gRPC address.
    #[arg(long, global = true, default_value = "http://127.0.0.1:9090")]
    node: String,
    /// Node home whose keyring holds the signing key (default: $R3MES_HOME or ~/.r3mes).
    #[arg(long, global = true)]
    home: Option<PathBuf>,
    /// Print JSON.
    #[arg(long, global = true)]
    json: bool,
    /// Keyring key that signs.
    #[arg(long, global = true)]
    from: Option<String>,
    #[command(subcommand)]
    what: TxCommand,
}

/// The IPFS RPC API a command reads or adds content through.
#[derive(Args)]
struct Api {
    /// The IPFS RPC API (the node's embedded one by default, or Kubo's).
    #[arg(long, default_value = "http://127.0.0.1:5001")]
    api: String,
}

#[derive(Subcommand)]
enum TxCommand {
    /// Add a gradient file to IPFS and submit its CID and metadata.
    SubmitGradient {
        /// The gradient file (protobuf, safetensors or pickle+gzip).
        file: PathBuf,
        /// Round (window) id it was trained in.
        #[arg(long)]
        round: u64,
        /// Shard it was trained on (`r3mes query shard`).
        #[arg(long)]
        shard: u64,
        /// Chunks trained on, as `ID:DATA_CID` (each exactly 2048 tokens).
        #[arg(long = "chunk", required = true)]
        chunks: Vec<String>,
        /// CID of the backbone the LoRA adapters sit on.
        #[arg(long)]
        backbone: String,
        /// GPU architecture it was trained on.
        #[arg(long, default_value = "cpu")]
        gpu: String,
        #[command(flatten)]
        api: Api,
    },
    /// Send uremes to an address.
    Send {
        /// Recipient `remes1...` address.
        to: String,
        /// Amount in uremes.
        amount: u128,
    },
    /// Bond uremes of the balance as stake.
    Stake {
        /// Amount in uremes.
        amount: u128,
    },
    /// Start unbonding stake.
    Unstake {
        /// Amount in uremes.
        amount: u128,
    },
    /// Propose a dataset for governance; the signer is its provider and
    /// signs its metadata.
    ProposeDataset {
        /// The dataset's CID (its root directory or manifest).
        dataset: String,
        /// Shard CIDs in shard-id order.
        #[arg(long = "shard", required = true)]
        shards: Vec<String>,
        /// Name.
        #[arg(long)]
        name: String,
        /// Description.
        #[arg(long, default_value = "")]
        description: String,
        /// "text", "image" or "audio".
        #[arg(long, default_value = "text")]
        data_type: String,
        /// Total size in bytes.
        #[arg(long)]
        size: u64,
        /// License.
        #[arg(long, default_value = "")]
        license: String,
        /// Tags.
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Shard schema.
        #[arg(long, default_value = "r3mes-tokens-v1")]
        schema: String,
    },
    /// A validator approves a proposed dataset.
    ApproveDataset {
        /// The dataset's CID.
        dataset: String,
        /// Quality score, parts per million.
        #[arg(long, default_value_t = 1_000_000)]
        quality_ppm: u64,
    },
    /// A validator deactivates an approved dataset.
    DeactivateDataset {
        /// The dataset's CID.
        dataset: String,
    },
    /// A validator challenges the availability of stored content.
    IssueChallenge {
        /// What is challenged.
        #[arg(long, value_enum)]
        kind: Kind,
        /// The content's CID.
        cid: String,
        /// For pins: the pinner to challenge.
        #[arg(long, default_value = "")]
        target: String,
    },
    /// Answer an availability challenge from the content in IPFS.
    RespondChallenge {
        /// Hex challenge id.
        id: String,
        #[command(flatten)]
        api: Api,
    },
    /// Build the signer's Proof-of-Replication replica of content in IPFS,
    /// add and pin it, and register it.
    RegisterReplica {
        /// CID of the original data.
        data: String,
        #[command(flatten)]
        api: Api,
    },
    /// Commit to pinning content, bonding stake.
    RegisterPin {
        /// CID of the content.
        cid: String,
        /// Stake bonded, uremes.
        #[arg(long)]
        stake: u128,
        /// Reward per block, uremes.
        #[arg(long)]
        reward_per_block: u64,
        /// Height at which the obligation ends.
        #[arg(long)]
        expiry_height: u64,
    },
    /// Claim the rewards a pin has accrued.
    ClaimPinRewards {
        /// CID of the pinned content.
        cid: String,
    },
    /// Verify a gradient against a vault entry by range reads and submit
    /// the result (what a validator's worker does by itself).
    SubmitVerification {
        /// The gradient's CID.
        cid: String,
        /// The validator's secret vault.
        #[arg(long)]
        vault: PathBuf,
        /// Vault entry id (needed when the vault has several).
        #[arg(long)]
        entry: Option<String>,
        #[command(flatten)]
        api: Api,
    },
    /// A validator registers a model version.
    RegisterModel {
        /// Version, above every registered one.
        #[arg(long)]
        version: u64,
        /// CID of the frozen backbone.
        #[arg(long)]
        backbone: String,
        /// LoRA adapters as `LAYER:RANK:CID` (precision fp32) or
        /// `LAYER:RANK:CID:PRECISION`.
        #[arg(long = "adapter")]
        adapters: Vec<String>,
        /// CID of the training state.
        #[arg(long, default_value = "")]
        training_state: String,
        /// CID of metadata.json.
        #[arg(long, default_value = "")]
        metadata: String,
        /// Hex checksum of the model.
        #[arg(long, default_value = "")]
        checksum: String,
    },
    /// Record a computation trace.
    RecordTrace {
        /// CID of the trace.
        trace: String,
        /// CID of the gradient it explains.
        #[arg(long, default_value = "")]
        gradient: String,
    },
}

/// What an availability challenge is about.
#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    Gradient,
    Replica,
    Pin,
}

pub fn run(args: TxArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let out = runtime.block_on(send(&args))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else if let serde_json::Value::Object(map) = &out {
        for (k, v) in map {
            match v {
                serde_json::Value::String(s) => println!("{k}: {s}"),
                other => println!("{k}: {other}"),
            }
        }
    }
    Ok(())
}

async fn send(args: &TxArgs) -> Result<serde_json::Value> {
    let home = Home::new(args.home.clone().unwrap_or_else(Home::default_root));
    let name = args
        .from
        .as_deref()
        .context("name the signing key with --from NAME (`r3mes keys list`)")?;
    let key = Keyring::new(home.keyring())
        .secret(name)
        .with_context(|| format!("key {name:?} of {}", home.keyring().display()))?;
    let me = key.public_key().address();
    let client = NodeClient::connect(&args.node).await?;
    let msg = match &args.what {
        TxCommand::SubmitGradient {
            file,
            round,
            shard,
            chunks,
            backbone,
            gpu,
            api,
        } => {
            return submit_gradient(
                &client, &key, file, *round, *shard, chunks, backbone, gpu, api,
            )
            .await;
        }
        TxCommand::Send { to, amount } => {
            Address::parse(to).with_context(|| format!("recipient {to}"))?;
            let (amount_low, amount_high) = split(*amount);
            tx_body::Msg::Send(MsgSend {
                from: me.to_string(),
                to: to.clone(),
                amount_low,
                amount_high,
            })
        }
        TxCommand::Stake { amount } => {
            let (amount_low, amount_high) = split(*amount);
            tx_body::Msg::Stake(MsgStake {
                from: me.to_string(),
                amount_low,
                amount_high,
            })
        }
        TxCommand::Unstake { amount } => {
            let (amount_low, amount_high) = split(*amount);
            tx_body::Msg::Unstake(MsgUnstake {
                from: me.to_string(),
                amount_low,
                amount_high,
            })
        }
        TxCommand::ProposeDataset {
            dataset,
            shards,
            name,
            description,
            data_type,
            size,
            license,
            tags,
            schema,
        } => propose_msg(
            &key,
            &Proposal {
                dataset,
                shards,
                name,
                description,
                data_type,
                size: *size,
                license,
                tags,
                schema,
            },
        )?,
        TxCommand::ApproveDataset {
            dataset,
            quality_ppm,
        } => tx_body::Msg::ApproveDataset(MsgApproveDataset {
            validator: me.to_string(),
            dataset_hash: dataset.clone(),
            quality_ppm: *quality_ppm,
        }),
        TxCommand::DeactivateDataset { dataset } => {
            tx_body::Msg::DeactivateDataset(MsgDeactivateDataset {
                validator: me.to_string(),
                dataset_hash: dataset.clone(),
            })
        }
        TxCommand::IssueChallenge { kind, cid, target } => {
            let kind = match kind {
                Kind::Gradient => ChallengeKind::Gradient,
                Kind::Replica => ChallengeKind::Replica,
                Kind::Pin => ChallengeKind::Pin,
            };
            tx_body::Msg::IssueChallenge(MsgIssueChallenge {
                challenger: me.to_string(),
                kind: kind.into(),
                ipfs_hash: cid.clone(),
                target: target.clone(),
            })
        }
        TxCommand::RespondChallenge { id, api } => respond_challenge(&client, &me, id, api).await?,
        TxCommand::RegisterReplica { data, api } => register_replica(&me, data, api).await?,
        TxCommand::RegisterPin {
            cid,
            stake,
            reward_per_block,
            expiry_height,
        } => {
            let (stake_low, stake_high) = split(*stake);
            tx_body::Msg::RegisterPin(MsgRegisterPin {
                pinner: me.to_string(),
                content_hash: cid.clone(),
                stake_low,
                stake_high,
                reward_per_block: *reward_per_block,
                expiry_height: *expiry_height,
            })
        }
        TxCommand::ClaimPinRewards { cid } => tx_body::Msg::ClaimPinRewards(MsgClaimPinRewards {
            pinner: me.to_string(),
            content_hash: cid.clone(),
        }),
        TxCommand::SubmitVerification {
            cid,
            vault,
            entry,
            api,
        } => verification(&me, cid, vault, entry.as_deref(), api).await?,
        TxCommand::RegisterModel {
            version,
            backbone,
            adapters,
            training_state,
            metadata,
            checksum,
        } => tx_body::Msg::RegisterModel(MsgRegisterModel {
            authority: me.to_string(),
            model: Some(ModelVersion {
                version: *version,
                backbone_hash: backbone.clone(),
                lora_adapters: adapters
                    .iter()
                    .map(|a| parse_adapter(a))
                    .collect::<Result<_>>()?,
                training_state_hash: training_state.clone(),
                checksum: hex::decode(checksum).context("--checksum is not hex")?,
                metadata_hash: metadata.clone(),
                ..ModelVersion::default()
            }),
        }),
        TxCommand::RecordTrace { trace, gradient } => tx_body::Msg::RecordTrace(MsgRecordTrace {
            submitter: me.to_string(),
            trace_hash: trace.clone(),
            gradient_hash: gradient.clone(),
        }),
    };
    let outcome = client.send(&key, msg).await?;
    Ok(outcome_json(&outcome))
}

/// What a dataset proposal states.
pub(crate) struct Proposal<'a> {
    pub dataset: &'a str,
    pub shards: &'a [String],
    pub name: &'a str,
    pub description: &'a str,
    pub data_type: &'a str,
    pub size: u64,
    pub license: &'a str,
    pub tags: &'a [String],
    pub schema: &'a str,
}

/// `MsgProposeDataset` with its metadata signed by `key` as the provider.
pub(crate) fn propose_msg(key: &SecretKey, p: &Proposal<'_>) -> Result<tx_body::Msg> {
    let dataset_cid = cids::parse(p.dataset).with_context(|| format!("dataset {}", p.dataset))?;
    let shard_cids = p
        .shards
        .iter()
        .map(|s| cids::parse(s).with_context(|| format!("shard {s}")))
        .collect::<Result<Vec<_>>>()?;
    let mut metadata = DatasetMetadata {
        name: p.name.to_owned(),
        description: p.description.to_owned(),
        data_type: p.data_type.to_owned(),
        size: p.size,
        shard_count: p.shards.len() as u64,
        license: p.license.to_owned(),
        tags: p.tags.to_vec(),
        ..DatasetMetadata::default()
    };
    sign_dataset(key, &dataset_cid, &mut metadata, &shard_cids)?;
    Ok(tx_body::Msg::ProposeDataset(MsgProposeDataset {
        proposer: key.public_key().address().to_string(),
        dataset_hash: p.dataset.to_owned(),
        metadata: Some(metadata),
        shard_cids: p.shards.to_vec(),
        schema: p.schema.to_owned(),
    }))
}

/// Signs `msg` with keyring key `from` of `home` and sends it to `node`;
/// the committed outcome as JSON.
pub(crate) fn sign_and_send(
    node: &str,
    home: Option<PathBuf>,
    from: &str,
    msg: impl FnOnce(&SecretKey) -> Result<tx_body::Msg>,
) -> Result<serde_json::Value> {
    let home = Home::new(home.unwrap_or_else(Home::default_root));
    let key = crate::keys_cmd::secret_key(&home, from)?;
    let msg = msg(&key)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let client = NodeClient::connect(node).await?;
        let outcome = client.send(&key, msg).await?;
        Ok(outcome_json(&outcome))
    })
}

fn outcome_json(outcome: &Outcome) -> serde_json::Value {
    let mut out = serde_json::json!({
        "tx_hash": outcome.tx_hash,
        "height": outcome.height,
    });
    if !outcome.result.is_empty() {
        out["result"] = outcome.result.clone().into();
    }
    out["events"] = outcome
        .events
        .iter()
        .filter_map(|e| e.kind.as_ref())
        .map(|k| serde_json::to_value(k).unwrap_or_default())
        .collect();
    out
}

/// A u128 as the proto's low and high halves.
fn split(amount: u128) -> (u64, u64) {
    (amount as u64, (amount >> 64) as u64)
}

#[allow(clippy::too_many_arguments)]
async fn submit_gradient(
    client: &NodeClient,
    key: &SecretKey,
    file: &std::path::Path,
    round: u64,
    shard: u64,
    chunks: &[String],
    backbone: &str,
    gpu: &str,
    api: &Api,
) -> Result<serde_json::Value> {
    let miner = key.public_key().address();
    let chunks = parse_chunks(chunks, round, shard)?;
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let format = gradient_format(&bytes)?;
    let element_count = r3mes_tensor::decode(&bytes, None, &Limits::default())
        .with_context(|| format!("decoding {}", file.display()))?
        .elements();
    let byte_size = bytes.len() as u64;
    let store = kubo(&api.api)?;
    let added = store
        .add(
            AddSource::Bytes(bytes.into()),
            &r3mes_verify::gradient_add_options(),
        )
        .await
        .with_context(|| format!("adding {} to {}", file.display(), api.api))?;
    let mfs_path = file_in_mfs(&store, &added.cid, round, &miner).await?;
    let bits = client.params().await?.pow_difficulty_bits;
    let msg = MsgSubmitGradient {
        miner: miner.to_string(),
        ipfs_hash: added.cid.to_string(),
        metadata: Some(GradientMetadata {
            round_id: round,
            shard_id: shard,
            chunks,
            gpu_architecture: gpu.to_owned(),
            backbone_hash: backbone.to_owned(),
            format: format.into(),
            byte_size,
            element_count,
        }),
        pow_nonce: solve_pow(&miner, &added.cid, round, bits, 0),
    };
    let answer = client.submit_gradient(key, msg).await?;
    Ok(serde_json::json!({
        "ipfs_hash": answer.ipfs_hash,
        "block_height": answer.block_height,
        "tx_hash": answer.tx_hash,
        "mfs_path": mfs_path,
    }))
}

/// Files the gradient `cid` in the store's MFS at the seed's
/// `/gradients/window_{round}/miner_{address}` (replacing an earlier
/// gradient of the same window); returns the path.
pub(crate) async fn file_in_mfs(
    store: &KuboClient,
    cid: &Cid,
    round: u64,
    miner: &Address,
) -> Result<String> {
    let path = GradientPath::Miner {
        window: round,
        miner: MinerAddress::new(miner.to_string())?,
    };
    let path = format!("/{path}");
    match store.files_stat(&path).await {
        Ok(stat) if stat.hash == *cid => return Ok(path),
        Ok(_) => store
            .files_rm(&path, true, true)
            .await
            .with_context(|| format!("replacing {path} in the MFS"))?,
        Err(_) => {}
    }
    store
        .files_cp(&format!("/ipfs/{cid}"), &path, true)
        .await
        .with_context(|| format!("filing the gradient at {path} in the MFS"))?;
    Ok(path)
}

fn kubo(api: &str) -> Result<KuboClient> {
    KuboClient::new(api).with_context(|| format!("IPFS API {api}"))
}

/// The answer to challenge `id` from the content behind `api`.
async fn respond_challenge(
    client: &NodeClient,
    me: &Address,
    id: &str,
    api: &Api,
) -> Result<tx_body::Msg> {
    let challenge = client
        .query()
        .challenge(ChallengeRequest {
            challenge_id: id.to_owned(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("challenge {id}: {:?}: {}", s.code(), s.message()))?
        .into_inner()
        .challenge
        .with_context(|| format!("the node returned no challenge {id}"))?;
    let status = client.status().await?;
    let params = client.params().await?;
    let limits = ResponseLimits::new(params.max_response_bytes, &status.chain_id);
    let content: Arc<dyn ContentStore> = Arc::new(kubo(&api.api)?);
    let mut answers =
        answer_from_content(vec![challenge], me, content, &limits, DEFAULT_BLOCK_TIMEOUT).await?;
    if let Some((_, why)) = answers.unanswered.pop() {
        bail!("challenge {id} cannot be answered from {}: {why}", api.api);
    }
    let answer = answers
        .answered
        .pop()
        .with_context(|| format!("challenge {id} gave no answer"))?;
    Ok(tx_body::Msg::RespondChallenge(answer.msg))
}

/// Encodes `me`'s replica of `data`, adds and pins it, and builds the
/// registration.
async fn register_replica(me: &Address, data: &str, api: &Api) -> Result<tx_body::Msg> {
    let cid = cids::parse(data).with_context(|| format!("data {data}"))?;
    let store = kubo(&api.api)?;
    let original = store
        .cat(&cid, 0, None)
        .await
        .with_context(|| format!("reading {cid} from {}", api.api))?;
    let id = r3mes_protocol::replica::replication_id(&me.to_string(), &cid.to_bytes());
    let replica = r3mes_protocol::replica::encode_replica(&id, &original)?;
    let added = store
        .add(AddSource::Bytes(replica.into()), &AddOptions::default())
        .await
        .context("adding the replica")?;
    store
        .pin_add(&added.cid, PinMode::Recursive, Some("r3mes-replica"))
        .await
        .context("pinning the replica")?;
    Ok(tx_body::Msg::RegisterReplica(MsgRegisterReplica {
        miner: me.to_string(),
        data_hash: data.to_owned(),
        replica_hash: added.cid.to_string(),
        replication_id: hex::encode(id),
    }))
}

/// Verifies `cid` with a vault entry and builds the result message.
async fn verification(
    me: &Address,
    cid: &str,
    vault: &std::path::Path,
    entry: Option<&str>,
    api: &Api,
) -> Result<tx_body::Msg> {
    let gradient = cids::parse(cid).with_context(|| format!("gradient {cid}"))?;
    let vault = r3mes_verify::Vault::load(vault)?;
    let entry = crate::verify::pick_entry(&vault, entry)?;
    let store = crate::verify::open_store(Some(&api.api), None).await?;
    let verifier = r3mes_verify::Verifier::new(
        store,
        r3mes_verify::VerifyCache::default(),
        r3mes_verify::VerifierConfig::default(),
    );
    let report = verifier.verify(&gradient, entry).await?;
    Ok(tx_body::Msg::SubmitVerification(MsgSubmitVerification {
        validator: me.to_string(),
        ipfs_hash: cid.to_owned(),
        cosine_ppm: report.cosine_ppm.clamp(-1_000_000, 1_000_000),
        vault_commitment: entry.commitment().to_vec(),
        passed: report.passed,
    }))
}

/// `LAYER:RANK:CID[:PRECISION]`.
fn parse_adapter(item: &str) -> Result<LoraAdapterRef> {
    let parts: Vec<&str> = item.split(':').collect();
    let (layer, rank, cid, precision) = match parts.as_slice() {
        [l, r, c] => (*l, *r, *c, "fp32"),
        [l, r, c, p] => (*l, *r, *c, *p),
        _ => bail!("--adapter {item:?} is not LAYER:RANK:CID[:PRECISION]"),
    };
    Ok(LoraAdapterRef {
        layer_id: layer.to_owned(),
        rank: rank
            .parse()
            .with_context(|| format!("--adapter {item:?}: the rank is not a number"))?,
        adapter_hash: cid.to_owned(),
        precision: precision.to_owned(),
    })
}

/// `ID:DATA_CID` items as 2048-token chunks of `round` and `shard`.
fn parse_chunks(items: &[String], round: u64, shard: u64) -> Result<Vec<ChunkData>> {
    items
        .iter()
        .map(|item| {
            let (id, cid) = item
                .split_once(':')
                .with_context(|| format!("--chunk {item:?} is not ID:DATA_CID"))?;
            Ok(ChunkData {
                chunk_id: id
                    .parse()
                    .with_context(|| format!("--chunk {item:?}: the id is not a number"))?,
                data_hash: cid.to_owned(),
                token_count: r3mes_protocol::chunk::FIXED_CHUNK_SIZE_TOKENS,
                shard_id: shard,
                window_id: round,
            })
        })
        .collect()
}

/// The metadata name of a gradient file's format.
fn gradient_format(bytes: &[u8]) -> Result<&'static str> {
    let head = &bytes[..bytes.len().min(4096)];
    let name = match r3mes_tensor::detect(head).context("detecting the gradient format")? {
        Format::Protobuf => "protobuf",
        Format::Safetensors => "safetensors",
        Format::PickleGzip => "pickle_gzip",
        other => bail!(
            "{other:?} gradients are not accepted on chain (accepted: {}); convert with \
             `r3mes gradient convert`",
            FORMATS.join(", ")
        ),
    };
    Ok(name)
}
