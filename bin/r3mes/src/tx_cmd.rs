//! `r3mes tx ...`: signs transactions with a keyring key and sends them to
//! a node over gRPC; each command prints the result once the block holding
//! it is committed.
//!
//! `tx submit-gradient` is the seed's miner flow by hand: add the gradient
//! file to IPFS (16 KiB leaves, so validators read little; see
//! `r3mes-verify`), fill the metadata from the file, solve the proof of
//! work, sign with the account's next sequence and the chain's next block
//! time, and call `Msg.SubmitGradient`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use r3mes_chain::gradients::{FORMATS, solve_pow};
use r3mes_chain::proto::{
    ChunkData, GradientMetadata, MsgSend, MsgSubmitGradient, TxBody, tx_body,
};
use r3mes_chain::{Address, SecretKey, SignedTx};
use r3mes_ipfs::AddSource;
use r3mes_kubo::KuboClient;
use r3mes_node::home::Home;
use r3mes_node::keyring::Keyring;
use r3mes_node::proto::msg_client::MsgClient;
use r3mes_node::proto::query_client::QueryClient;
use r3mes_node::proto::{
    AccountRequest, BroadcastTxRequest, ParamsRequest, StatusRequest, SubmitGradientRequest,
    submit_gradient_request,
};
use r3mes_tensor::{Format, Limits};
use tonic::transport::Channel;

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
    #[command(subcommand)]
    what: TxCommand,
}

#[derive(Subcommand)]
enum TxCommand {
    /// Add a gradient file to IPFS and submit its CID and metadata.
    SubmitGradient {
        /// Keyring key of the miner.
        #[arg(long)]
        from: String,
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
        /// The IPFS RPC API to add the file to (the node's embedded one by default).
        #[arg(long, default_value = "http://127.0.0.1:5001")]
        api: String,
    },
    /// Send uremes to an address.
    Send {
        /// Keyring key of the sender.
        #[arg(long)]
        from: String,
        /// Recipient `remes1...` address.
        to: String,
        /// Amount in uremes.
        amount: u128,
    },
}

pub fn run(args: TxArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
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
    let channel = Channel::from_shared(args.node.clone())
        .context("node URL")?
        .connect()
        .await
        .with_context(|| format!("connecting to {}", args.node))?;
    let status = |s: tonic::Status| anyhow::anyhow!("{:?}: {}", s.code(), s.message());
    match &args.what {
        TxCommand::SubmitGradient {
            from,
            file,
            round,
            shard,
            chunks,
            backbone,
            gpu,
            api,
        } => {
            let key = key(&home, from)?;
            let miner = key.public_key().address();
            let chunks = parse_chunks(chunks, *round, *shard)?;
            let bytes =
                std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
            let format = gradient_format(&bytes)?;
            let element_count = r3mes_tensor::decode(&bytes, None, &Limits::default())
                .with_context(|| format!("decoding {}", file.display()))?
                .elements();
            let byte_size = bytes.len() as u64;
            let store = KuboClient::new(api).with_context(|| format!("IPFS API {api}"))?;
            let added = store
                .add(
                    AddSource::Bytes(bytes.into()),
                    &r3mes_verify::gradient_add_options(),
                )
                .await
                .with_context(|| format!("adding {} to {api}", file.display()))?;
            let bits = pow_bits(&channel).await?;
            let msg = MsgSubmitGradient {
                miner: miner.to_string(),
                ipfs_hash: added.cid.to_string(),
                metadata: Some(GradientMetadata {
                    round_id: *round,
                    shard_id: *shard,
                    chunks,
                    gpu_architecture: gpu.clone(),
                    backbone_hash: backbone.clone(),
                    format: format.into(),
                    byte_size,
                    element_count,
                }),
                pow_nonce: solve_pow(&miner, &added.cid, *round, bits, 0),
            };
            let tx = sign(&channel, &key, &miner, tx_body::Msg::SubmitGradient(msg)).await?;
            let answer = MsgClient::new(channel)
                .submit_gradient(SubmitGradientRequest {
                    transaction: Some(submit_gradient_request::Transaction::TxBytes(tx.encode())),
                })
                .await
                .map_err(status)?
                .into_inner();
            Ok(serde_json::json!({
                "ipfs_hash": answer.ipfs_hash,
                "block_height": answer.block_height,
                "tx_hash": answer.tx_hash,
            }))
        }
        TxCommand::Send { from, to, amount } => {
            let key = key(&home, from)?;
            let sender = key.public_key().address();
            Address::parse(to).with_context(|| format!("recipient {to}"))?;
            let msg = tx_body::Msg::Send(MsgSend {
                from: sender.to_string(),
                to: to.clone(),
                amount_low: *amount as u64,
                amount_high: (*amount >> 64) as u64,
            });
            let tx = sign(&channel, &key, &sender, msg).await?;
            let r = MsgClient::new(channel)
                .broadcast_tx(BroadcastTxRequest {
                    tx_bytes: tx.encode(),
                })
                .await
                .map_err(status)?
                .into_inner();
            if r.code != 0 {
                bail!(
                    "the transaction failed in block {}: {} (code {})",
                    r.height,
                    r.log,
                    r.code
                );
            }
            Ok(serde_json::json!({"tx_hash": r.tx_hash, "height": r.height}))
        }
    }
}

fn key(home: &Home, name: &str) -> Result<SecretKey> {
    Keyring::new(home.keyring())
        .secret(name)
        .with_context(|| format!("key {name:?} of {}", home.keyring().display()))
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

async fn pow_bits(channel: &Channel) -> Result<u32> {
    let p = QueryClient::new(channel.clone())
        .params(ParamsRequest {})
        .await
        .map_err(|s| anyhow::anyhow!("params: {}", s.message()))?
        .into_inner();
    let params: serde_json::Value = serde_json::from_str(&p.params_json)?;
    params["pow_difficulty_bits"]
        .as_u64()
        .and_then(|b| u32::try_from(b).ok())
        .context("the node's params have no pow_difficulty_bits")
}

/// Signs `msg` with the account's next sequence at the chain's next block time.
async fn sign(
    channel: &Channel,
    key: &SecretKey,
    signer: &Address,
    msg: tx_body::Msg,
) -> Result<SignedTx> {
    let mut q = QueryClient::new(channel.clone());
    let err = |s: tonic::Status| anyhow::anyhow!("{:?}: {}", s.code(), s.message());
    let status = q.status(StatusRequest {}).await.map_err(err)?.into_inner();
    let account = q
        .account(AccountRequest {
            address: signer.to_string(),
        })
        .await
        .map_err(err)?
        .into_inner();
    SignedTx::sign(
        TxBody { msg: Some(msg) },
        key,
        account.sequence,
        &status.chain_id,
        status.next_block_time_ms,
    )
    .context("signing")
}
