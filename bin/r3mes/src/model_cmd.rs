//! `r3mes model init`: a small deterministic BitNet backbone with fresh LoRA
//! adapters (`r3mes-miner`), written as safetensors plus `metadata.json`,
//! with `--api` filed in IPFS under the seed's `/models/v{version}/`
//! layout (`backbone/model.safetensors`, `lora_adapters/adapters.safetensors`,
//! `metadata.json`), and with `--from` registered on the node
//! (`MsgRegisterModel`: backbone CID, one adapter reference per adapted
//! projection, sha256 of metadata.json as the checksum).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use r3mes_chain::proto::{LoraAdapterRef, ModelVersion, MsgRegisterModel, tx_body};
use r3mes_client::aggregation::file_bytes;
use r3mes_kubo::KuboClient;
use r3mes_miner::{Backbone, BackboneConfig, LoraAdapters, LoraConfig};
use sha2::{Digest, Sha256};

#[derive(Args)]
pub struct ModelInitArgs {
    /// Transformer blocks.
    #[arg(long, default_value_t = 2)]
    layers: usize,
    /// Model width.
    #[arg(long, default_value_t = 64)]
    dim: usize,
    /// Attention heads.
    #[arg(long, default_value_t = 4)]
    heads: usize,
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
}

pub fn run(command: ModelCommand) -> Result<()> {
    let ModelCommand::Init(args) = command;
    if args.from.is_some() && args.api.is_none() {
        bail!("--from registers the model's CIDs: add the files with --api URL too");
    }
    let config = BackboneConfig::small(args.layers, args.dim, args.heads);
    let lora_config = LoraConfig {
        rank: args.rank,
        alpha: args.alpha,
        ..LoraConfig::default()
    };
    let backbone = Backbone::init(&config, args.seed)?;
    let lora = LoraAdapters::init(&config, &lora_config, args.seed)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let backbone_bytes = backbone.to_safetensors()?;
    let lora_bytes = lora.to_safetensors()?;
    let metadata = serde_json::json!({
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
    let metadata_bytes = serde_json::to_vec_pretty(&metadata)?;
    write(&args.out.join("model.safetensors"), &backbone_bytes)?;
    write(&args.out.join("adapters.safetensors"), &lora_bytes)?;
    write(&args.out.join("metadata.json"), &metadata_bytes)?;
    let mut report = serde_json::json!({
        "out": args.out,
        "backbone_sha256": backbone.hash(),
        "parameters": config.parameter_count(),
    });
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

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}
