//! `r3mes model init`: a small deterministic BitNet backbone, or with
//! `--backbone FILE` a real checkpoint (a Hugging Face style BitNet
//! safetensors file whose shapes `r3mes_miner::hf` supports, quantised to
//! ternary at load, or a canonical r3mes backbone file), with fresh LoRA
//! adapters (`r3mes-miner`), written as safetensors plus `metadata.json`,
//! with `--api` filed in IPFS under the seed's `/models/v{version}/`
//! layout (`backbone/model.safetensors`, `lora_adapters/adapters.safetensors`,
//! `metadata.json`), and with `--from` registered on the node
//! (`MsgRegisterModel`: backbone CID, one adapter reference per adapted
//! projection, sha256 of metadata.json as the checksum).
//!
//! `r3mes model fetch`: the files of a registered version (or of the version
//! a round trains from), checked against the chain's checksum and their CIDs,
//! written in the layout `miner train --model` reads, so a miner in another
//! language can use r3mes as its trainer.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use r3mes_chain::proto::{LoraAdapterRef, ModelVersion, MsgRegisterModel, tx_body};
use r3mes_client::aggregation::file_bytes;
use r3mes_kubo::KuboClient;
use r3mes_miner::{Backbone, BackboneConfig, HfConfig, LoraAdapters, LoraConfig};
use sha2::{Digest, Sha256};

#[derive(Args)]
pub struct ModelInitArgs {
    /// Load this backbone instead of making one: a Hugging Face style BitNet
    /// b1.58 safetensors file (F32/F16/BF16 master weights, quantised to
    /// ternary at load) or a canonical r3mes backbone file.
    #[arg(long, value_name = "FILE")]
    backbone: Option<PathBuf>,
    /// The checkpoint's Hugging Face config.json (else inferred from the
    /// shapes; --heads then gives the head count).
    #[arg(long, value_name = "FILE", requires = "backbone")]
    backbone_config: Option<PathBuf>,
    /// Transformer blocks.
    #[arg(long, default_value_t = 2, conflicts_with = "backbone")]
    layers: usize,
    /// Model width.
    #[arg(long, default_value_t = 64, conflicts_with = "backbone")]
    dim: usize,
    /// Attention heads [default: 4, or the checkpoint's].
    #[arg(long)]
    heads: Option<usize>,
    /// Seed of the weights (the same seed gives the same files everywhere).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// LoRA rank (4 to 64).
    #[arg(long, default_value_t = 8)]
    rank: usize,
    /// LoRA alpha.
    #[arg(long, default_value_t = 16.0)]
    alpha: f32,
    /// Model version.
    #[arg(long, default_value_t = 1)]
    version: u64,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    /// Add the files to this IPFS API and file them under /models/v{version}.
    #[arg(long)]
    api: Option<String>,
    /// Register the version on the node, signed by this validator key (needs --api).
    #[arg(long)]
    from: Option<String>,
    /// The node's gRPC address.
    #[arg(long, default_value = "http://127.0.0.1:9090")]
    node: String,
    /// Home whose keyring holds the key (default: $R3MES_HOME or ~/.r3mes).
    #[arg(long)]
    home: Option<PathBuf>,
}

#[derive(clap::Subcommand)]
pub enum ModelCommand {
    /// Make a small deterministic backbone and LoRA adapters; add and register them.
    Init(ModelInitArgs),
    /// Fetch and check a registered version's files (the one a round trains
    /// from with --round, else --version, else the latest).
    Fetch(ModelFetchArgs),
}

#[derive(Args)]
pub struct ModelFetchArgs {
    /// The version the round trains from (the newest registered at or before
    /// the round's start).
    #[arg(long, conflicts_with = "version")]
    round: Option<u64>,
    /// This version.
    #[arg(long)]
    version: Option<u64>,
    /// Output directory (model.safetensors, adapters.safetensors,
    /// metadata.json, and training_state.safetensors if the version has one).
    #[arg(long)]
    out: PathBuf,
    /// The node's gRPC address.
    #[arg(long, default_value = "http://127.0.0.1:9090")]
    node: String,
    /// The IPFS API the files are read from.
    #[arg(long, default_value = "http://127.0.0.1:5001")]
    api: String,
}

pub fn run(command: ModelCommand) -> Result<()> {
    let args = match command {
        ModelCommand::Init(args) => args,
        ModelCommand::Fetch(args) => return fetch(&args),
    };
    if args.from.is_some() && args.api.is_none() {
        bail!("--from registers the model's CIDs: add the files with --api URL too");
    }
    let lora_config = LoraConfig {
        rank: args.rank,
        alpha: args.alpha,
        ..LoraConfig::default()
    };
    lora_config.validate()?;
    let (backbone, source) = match &args.backbone {
        Some(path) => {
            let (backbone, source) =
                load_backbone(path, args.backbone_config.as_deref(), args.heads)?;
            (backbone, Some(source))
        }
        None => {
            let config = BackboneConfig::small(args.layers, args.dim, args.heads.unwrap_or(4));
            (Backbone::init(&config, args.seed)?, None)
        }
    };
    let config = backbone.config().clone();
    let lora = LoraAdapters::init(&config, &lora_config, args.seed)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let backbone_bytes = backbone.to_safetensors()?;
    let lora_bytes = lora.to_safetensors()?;
    let mut metadata = serde_json::json!({
        "format": "r3mes-model-v1",
        "version": args.version,
        "seed": args.seed,
        "backbone": config,
        "lora": lora_config,
        "backbone_sha256": backbone.hash(),
        "lora_sha256": lora.hash()?,
        "files": {
            "backbone": "backbone/model.safetensors",
            "lora_adapters": "lora_adapters/adapters.safetensors",
        },
    });
    if let Some(source) = &source {
        metadata["backbone_source"] = source.clone();
    }
    let metadata_bytes = serde_json::to_vec_pretty(&metadata)?;
    write(&args.out.join("model.safetensors"), &backbone_bytes)?;
    write(&args.out.join("adapters.safetensors"), &lora_bytes)?;
    write(&args.out.join("metadata.json"), &metadata_bytes)?;
    let mut report = serde_json::json!({
        "out": args.out,
        "backbone_sha256": backbone.hash(),
        "parameters": config.parameter_count(),
    });
    if let Some(source) = source {
        report["backbone_source"] = source;
    }
    if let Some(api) = &args.api {
        let store = KuboClient::new(api).with_context(|| format!("IPFS API {api}"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        let root = format!("/models/v{}", args.version);
        let (backbone_dir, lora_file, metadata_file) = runtime.block_on(async {
            file_bytes(
                &store,
                backbone_bytes,
                &format!("{root}/backbone/model.safetensors"),
            )
            .await?;
            let lora_file = file_bytes(
                &store,
                lora_bytes,
                &format!("{root}/lora_adapters/adapters.safetensors"),
            )
            .await?;
            let metadata_file = file_bytes(
                &store,
                metadata_bytes.clone(),
                &format!("{root}/metadata.json"),
            )
            .await?;
            let backbone_dir = store.files_flush(&format!("{root}/backbone")).await?;
            anyhow::Ok((backbone_dir.to_string(), lora_file, metadata_file))
        })?;
        report["backbone_cid"] = backbone_dir.clone().into();
        report["lora_cid"] = lora_file.clone().into();
        report["metadata_cid"] = metadata_file.clone().into();
        if let Some(from) = &args.from {
            let precision = lora_config.precision.as_str().to_owned();
            let adapters = lora
                .adapters()
                .iter()
                .map(|a| LoraAdapterRef {
                    layer_id: a.layer_id().to_owned(),
                    rank: a.rank() as u64,
                    adapter_hash: lora_file.clone(),
                    precision: precision.clone(),
                })
                .collect();
            let msg = tx_body::Msg::RegisterModel(MsgRegisterModel {
                authority: String::new(),
                model: Some(ModelVersion {
                    version: args.version,
                    backbone_hash: backbone_dir,
                    lora_adapters: adapters,
                    checksum: Sha256::digest(&metadata_bytes).to_vec(),
                    metadata_hash: metadata_file,
                    ..ModelVersion::default()
                }),
            });
            let out = crate::tx_cmd::sign_and_send(&args.node, args.home.clone(), from, |key| {
                let mut msg = msg;
                if let tx_body::Msg::RegisterModel(m) = &mut msg {
                    m.authority = key.public_key().address().to_string();
                }
                Ok(msg)
            })?;
            report["registered_height"] = out["height"].clone();
        }
    }
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// Loads `--backbone` (with `--backbone-config` and `--heads`); returns the
/// backbone and what metadata.json records of its origin.
fn load_backbone(
    path: &Path,
    config: Option<&Path>,
    heads: Option<usize>,
) -> Result<(Backbone, serde_json::Value)> {
    let mut hf = match config {
        Some(c) => {
            let bytes = std::fs::read(c).with_context(|| format!("reading {}", c.display()))?;
            HfConfig::from_json(&bytes).with_context(|| format!("{}", c.display()))?
        }
        None => HfConfig::default(),
    };
    match (hf.num_attention_heads, heads) {
        (Some(file), Some(flag)) if file != flag => {
            bail!("--heads {flag} contradicts num_attention_heads {file} of the backbone config")
        }
        (None, Some(flag)) => hf.num_attention_heads = Some(flag),
        _ => {}
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let (backbone, import) = r3mes_miner::hf::import(&bytes, &hf)
        .with_context(|| format!("loading the backbone {}", path.display()))?;
    let source = serde_json::json!({
        "file": path.file_name().map(|n| n.to_string_lossy().into_owned()),
        "sha256": hex::encode(Sha256::digest(&bytes)),
        "tied_head": import.tied_head,
        "inferred": import.inferred,
        "ignored": import.ignored,
    });
    Ok((backbone, source))
}

fn fetch(args: &ModelFetchArgs) -> Result<()> {
    use r3mes_client::NodeClient;
    use r3mes_client::models::{ModelFiles, model_for_round};
    let store = KuboClient::new(&args.api).with_context(|| format!("IPFS API {}", args.api))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let files = runtime.block_on(async {
        let client = NodeClient::connect(&args.node).await?;
        let record = match args.round {
            Some(id) => {
                let round = client
                    .round(Some(id))
                    .await?
                    .with_context(|| format!("round {id} has not started"))?;
                model_for_round(&client, &round).await?
            }
            None => client
                .model(args.version)
                .await?
                .with_context(|| match args.version {
                    Some(v) => format!("model version {v} is not registered"),
                    None => "no model version is registered".to_string(),
                })?,
        };
        anyhow::Ok(ModelFiles::fetch(&store, &record).await?)
    })?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    write(&args.out.join("model.safetensors"), &files.backbone)?;
    write(&args.out.join("adapters.safetensors"), &files.adapters)?;
    write(&args.out.join("metadata.json"), &files.metadata_bytes)?;
    if let Some(state) = &files.training_state {
        write(&args.out.join("training_state.safetensors"), state)?;
    }
    let report = serde_json::json!({
        "version": files.model.version,
        "out": args.out,
        "backbone_cid": files.model.backbone_hash,
        "backbone_sha256": files.backbone_sha256(),
        "training_state": files.training_state.is_some(),
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}
