//! `r3mes miner ...`: the miner's long-running roles against a node.
//!
//! `miner train` runs one 2048-token chunk file through the
//! `ChunkProcessor` and writes the LoRA gradient as a protobuf gradient
//! file. `miner respond` answers the availability challenges of one key from
//! the content in an IPFS API (the miner's own store) until SIGINT or
//! SIGTERM (`r3mes_client::Responder`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use r3mes_client::{NodeClient, Responder};
use r3mes_ipfs::ContentStore;
use r3mes_ipfs_http::ShutdownSignals;
use r3mes_kubo::KuboClient;
use r3mes_node::home::Home;

/// How a chunk is cut into micro-batches (`miner train` and `miner run`).
#[derive(Args, Clone, Copy, Debug)]
pub struct Batching {
    /// Sequences per micro-batch (default: derived from --memory-budget, else 1).
    #[arg(long, conflicts_with = "memory_budget")]
    pub local_batch_size: Option<usize>,
    /// Memory for activations, MiB, from which the micro-batch size is derived.
    #[arg(long)]
    pub memory_budget: Option<u64>,
    /// Tokens per sequence (divides 2048).
    #[arg(long, default_value_t = r3mes_miner::DEFAULT_SEQ_LEN)]
    pub seq_len: usize,
}

impl Batching {
    /// The chunk processor for a model of shape `config`.
    pub fn processor(
        &self,
        config: &r3mes_miner::BackboneConfig,
    ) -> r3mes_miner::Result<r3mes_miner::ChunkProcessor> {
        use r3mes_miner::ChunkProcessor;
        match (self.local_batch_size, self.memory_budget) {
            (Some(b), _) => ChunkProcessor::new(self.seq_len, b),
            (None, Some(mb)) => ChunkProcessor::with_memory_budget(config, self.seq_len, mb),
            (None, None) => ChunkProcessor::new(self.seq_len, 1),
        }
    }
}

#[derive(Subcommand)]
pub enum MinerCommand {
    /// Train on one 2048-token chunk file and write the LoRA gradient (protobuf).
    Train {
        /// The model directory `r3mes model init` wrote.
        #[arg(long)]
        model: PathBuf,
        /// A chunk file (`R3CHUNK1`, from `r3mes dataset build`).
        #[arg(long)]
        chunk: PathBuf,
        #[command(flatten)]
        batching: Batching,
        /// The miner's address, written into the gradient.
        #[arg(long, default_value = "")]
        miner: String,
        /// Data shard id.
        #[arg(long, default_value_t = 0)]
        shard: u64,
        /// Training window (round) id.
        #[arg(long, default_value_t = 0)]
        window: u64,
        /// Output gradient file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Mine: every round fetch the assigned shard, train, submit the gradient, answer challenges.
    Run {
        /// Keyring key of the miner.
        #[arg(long)]
        from: String,
        /// The node's gRPC address.
        #[arg(long, default_value = "http://127.0.0.1:9090")]
        node: String,
        /// The IPFS RPC API the miner fetches from and adds to.
        #[arg(long, alias = "ipfs-api", default_value = "http://127.0.0.1:5001")]
        api: String,
        /// Home whose keyring holds the key (default: $R3MES_HOME or ~/.r3mes).
        #[arg(long)]
        home: Option<PathBuf>,
        #[command(flatten)]
        batching: Batching,
        /// Spool directory for computed gradients (default: HOME/miner/ADDRESS).
        #[arg(long)]
        spool: Option<PathBuf>,
        /// Stop after this many submitted rounds (and their challenge windows).
        #[arg(long)]
        rounds: Option<u64>,
        /// At most this many chunks of the shard per gradient.
        #[arg(long)]
        max_chunks: Option<usize>,
        /// How often to look for a new round, ms.
        #[arg(long, default_value_t = 500)]
        poll_ms: u64,
        /// Do not answer availability challenges (for a withholding miner in tests).
        #[arg(long)]
        no_respond: bool,
    },
    /// Answer a key's availability challenges from an IPFS store until stopped.
    Respond {
        /// Keyring key of the miner.
        #[arg(long)]
        from: String,
        /// The node's gRPC address.
        #[arg(long, default_value = "http://127.0.0.1:9090")]
        node: String,
        /// The IPFS RPC API holding the miner's content.
        #[arg(long, default_value = "http://127.0.0.1:5001")]
        api: String,
        /// Home whose keyring holds the key (default: $R3MES_HOME or ~/.r3mes).
        #[arg(long)]
        home: Option<PathBuf>,
        /// How often to look for open challenges besides the event stream, ms.
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
    },
}

pub fn run(cmd: MinerCommand) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match cmd {
        MinerCommand::Train {
            model,
            chunk,
            batching,
            miner,
            shard,
            window,
            out,
        } => train(&TrainArgs {
            model,
            chunk,
            batching,
            info: r3mes_miner::UpdateInfo {
                miner_id: miner,
                data_shard_id: shard,
                window_id: window,
                timestamp: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64),
            },
            out,
        }),
        MinerCommand::Run {
            from,
            node,
            api,
            home,
            batching,
            spool,
            rounds,
            max_chunks,
            poll_ms,
            no_respond,
        } => runtime.block_on(async move {
            let home = Home::new(home.unwrap_or_else(Home::default_root));
            let key = crate::keys_cmd::secret_key(&home, &from)?;
            let spool = spool.unwrap_or_else(|| {
                home.root()
                    .join("miner")
                    .join(key.public_key().address().to_string())
            });
            crate::miner_run::run(crate::miner_run::RunOptions {
                key,
                node,
                api,
                spool,
                batching,
                rounds,
                max_chunks,
                poll: Duration::from_millis(poll_ms.max(10)),
                respond: !no_respond,
                withhold: false,
                events: None,
            })
            .await
        }),
        MinerCommand::Respond {
            from,
            node,
            api,
            home,
            interval_ms,
        } => runtime.block_on(async move {
            let home = Home::new(home.unwrap_or_else(Home::default_root));
            let key = crate::keys_cmd::secret_key(&home, &from)?;
            let content: Arc<dyn ContentStore> =
                Arc::new(KuboClient::new(&api).with_context(|| format!("IPFS API {api}"))?);
            let client = NodeClient::connect(&node).await?;
            let responder = Responder::new(client, key, content);
            eprintln!(
                "answering the challenges of {} from {api} (Ctrl-C stops)",
                responder.address()
            );
            let mut signals = ShutdownSignals::install()?;
            let report = responder
                .run(Duration::from_millis(interval_ms.max(10)), async {
                    signals.recv().await;
                })
                .await;
            println!(
                "answered: {}, unanswered: {}, failed: {}",
                report.answered, report.unanswered, report.failed
            );
            Ok(())
        }),
    }
}

struct TrainArgs {
    model: PathBuf,
    chunk: PathBuf,
    batching: Batching,
    info: r3mes_miner::UpdateInfo,
    out: PathBuf,
}

/// One chunk through the `ChunkProcessor`; the gradient of the whole chunk
/// whatever the micro-batch size.
fn train(args: &TrainArgs) -> Result<()> {
    let backbone = r3mes_miner::Backbone::load_file(&args.model.join("model.safetensors"))
        .with_context(|| format!("loading the backbone of {}", args.model.display()))?;
    let lora = r3mes_miner::LoraAdapters::load_file(
        &args.model.join("adapters.safetensors"),
        backbone.config(),
    )
    .with_context(|| format!("loading the adapters of {}", args.model.display()))?;
    let model = r3mes_miner::Model::new(backbone, lora)?;
    let bytes =
        std::fs::read(&args.chunk).with_context(|| format!("reading {}", args.chunk.display()))?;
    let chunk =
        r3mes_dataset::decode_chunk(&bytes).with_context(|| format!("{}", args.chunk.display()))?;
    let tokens: Vec<u32> = chunk.tokens().iter().map(|t| u32::from(*t)).collect();
    let processor = args.batching.processor(model.backbone().config())?;
    let started = std::time::Instant::now();
    let result = processor.process_chunk(&model, &tokens, Some(chunk.mask()))?;
    let seconds = started.elapsed().as_secs_f64();
    let update = result.to_update(model.backbone().hash(), &args.info);
    let file = r3mes_tensor::encode(
        &update.to_gradient(r3mes_tensor::Format::Protobuf)?,
        r3mes_tensor::Format::Protobuf,
    )?;
    std::fs::write(&args.out, &file).with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "{}",
        serde_json::json!({
            "out": args.out,
            "loss": result.loss,
            "target_tokens": result.target_tokens,
            "micro_batches": result.micro_batches,
            "local_batch_size": processor.local_batch_size(),
            "seconds": seconds,
            "bytes": file.len(),
            "backbone_hash": model.backbone().hash(),
        })
    );
    Ok(())
}
