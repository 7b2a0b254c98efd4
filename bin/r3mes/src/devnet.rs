//! `r3mes devnet`: the whole network on one machine. In one process it runs
//! a node (block producer, gRPC, the embedded IPFS daemon with its RPC API
//! and gateway, the validator's verification duty with a vault it made
//! itself, and the aggregator role), N honest miners and M withholding ones
//! (they delete their gradient after submitting and never answer a
//! challenge), all as tasks of this process. The setup steps (node init,
//! dataset build, proposal and approval, model init, the vault's reference
//! gradients) run the `r3mes` commands a user would, as child processes.
//!
//! Every round it prints what happened (submissions, challenges issued /
//! answered / failed, slashes, verification similarity, bytes on chain
//! against bytes in IPFS, records garbage-collected, the miners' loss); at
//! the end a summary table, and `report.md`, `summary.json` and SVG plots
//! in `HOME/devnet/`. Ctrl-C stops everything cleanly; a second run on the
//! same home resumes (the chain, the store and the miners' spools persist).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use prost::Message;
use r3mes_chain::proto::{ChallengeStatus, event};
use r3mes_client::NodeClient;
use r3mes_ipfs_http::ShutdownSignals;
use r3mes_node::config::NodeConfig;
use r3mes_node::home::Home;
use r3mes_node::keyring::Keyring;
use serde::Serialize;

use crate::miner_run::{MinerEvent, RunOptions};

/// The shipped corpus, built into the binary so the devnet runs from anywhere.
const CORPUS: [(&str, &str); 2] = [
    (
        "declaration-of-independence.txt",
        include_str!("../../../data/corpus/declaration-of-independence.txt"),
    ),
    (
        "gettysburg-address.txt",
        include_str!("../../../data/corpus/gettysburg-address.txt"),
    ),
];
/// A miner's gradient passes verification at this cosine (ppm).
const VAULT_THRESHOLD_PPM: i64 = 500_000;

#[derive(Args)]
pub struct DevnetArgs {
    /// Honest miners.
    #[arg(long, default_value_t = 4)]
    miners: u32,
    /// Miners that delete their gradient after submitting it.
    #[arg(long, default_value_t = 1)]
    withholding: u32,
    /// Rounds every miner trains.
    #[arg(long, default_value_t = 5)]
    rounds: u64,
    /// Block time, ms.
    #[arg(long, default_value_t = 200)]
    block_time_ms: u64,
    /// Blocks per round.
    #[arg(long, default_value_t = 40)]
    round_length: u64,
    /// The devnet's home (default: ~/.r3mes-devnet).
    #[arg(long)]
    home: Option<PathBuf>,
    /// gRPC port (0: any free port).
    #[arg(long, default_value_t = 9090)]
    grpc_port: u16,
    /// IPFS RPC API port.
    #[arg(long, default_value_t = 5001)]
    ipfs_port: u16,
    /// IPFS gateway port.
    #[arg(long, default_value_t = 8080)]
    gateway_port: u16,
    /// Metrics port.
    #[arg(long, default_value_t = 26660)]
    metrics_port: u16,
}

fn default_home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".r3mes-devnet")
}

/// Runs `r3mes ARGS` with `home` as the home; its stdout.
pub(crate) async fn r3mes(home: &Path, args: &[&str]) -> Result<String> {
    let exe = std::env::current_exe().context("finding the r3mes binary")?;
    let out = tokio::process::Command::new(exe)
        .env("R3MES_HOME", home)
        .args(args)
        .output()
        .await
        .with_context(|| format!("running r3mes {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "r3mes {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

/// What happened in one round.
#[derive(Debug, Default, Clone, Serialize)]
struct RoundStats {
    submissions: u64,
    challenges_issued: u64,
    challenges_answered: u64,
    challenges_failed: u64,
    slashes: u64,
    verifications: u64,
    verifications_passed: u64,
    cosine_ppm_sum: i64,
    bytes_on_chain: u64,
    bytes_in_ipfs: u64,
    records_expired: u64,
    unpinned: u64,
    transactions: u64,
    loss_sum: f64,
    losses: u64,
    model_versions: Vec<u64>,
    seconds: f64,
}

impl RoundStats {
    fn mean_loss(&self) -> Option<f64> {
        (self.losses > 0).then(|| self.loss_sum / self.losses as f64)
    }
    fn mean_cosine(&self) -> Option<f64> {
        (self.verifications > 0)
            .then(|| self.cosine_ppm_sum as f64 / self.verifications as f64 / 1e6)
    }
    fn line(&self, round: u64) -> String {
        format!(
            "round {round}: {} gradients, challenges {} issued / {} answered / {} failed, {} slashed, \
             verified {}/{} (cosine {}), {} B on chain vs {} B in IPFS, {} records expired, {} unpinned, loss {}",
            self.submissions,
            self.challenges_issued,
            self.challenges_answered,
            self.challenges_failed,
            self.slashes,
            self.verifications_passed,
            self.verifications,
            self.mean_cosine().map_or("-".into(), |c| format!("{c:.3}")),
            self.bytes_on_chain,
            self.bytes_in_ipfs,
            self.records_expired,
            self.unpinned,
            self.mean_loss().map_or("-".into(), |l| format!("{l:.4}")),
        )
    }
}

/// The whole run.
#[derive(Debug, Default, Serialize)]
struct Summary {
    miners: u32,
    withholding: u32,
    rounds: BTreeMap<u64, RoundStats>,
    honest_submitted: u64,
    honest_on_chain: u64,
    honest_verified: u64,
    withholding_submitted: u64,
    withholding_slashed: u64,
    honest_slashed: u64,
    gradient_records_expired: u64,
    model_versions: u64,
    seconds: f64,
    tx_per_second: f64,
}

struct Shared {
    summary: Summary,
    current_round: u64,
    honest: Vec<String>,
    withholding: Vec<String>,
    gradients: BTreeMap<String, (String, u64)>,
    started: Instant,
}

pub fn run(args: DevnetArgs) -> Result<()> {
    if args.miners == 0 {
        bail!("--miners must be at least 1");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(devnet(args))
}

async fn devnet(args: DevnetArgs) -> Result<()> {
    let mut signals = ShutdownSignals::install()?;
    let root = args.home.clone().unwrap_or_else(default_home);
    let home = Home::new(root.clone());
    let work = root.join("devnet");
    tokio::select! {
        r = prepare(&args, &home, &work) => r?,
        name = signals.recv() => {
            eprintln!("devnet: stopped during setup ({name})");
            return Ok(());
        }
    }
    // The node, in this process.
    let mut config = NodeConfig::load(&home.config())
        .with_context(|| format!("loading the config of {}", root.display()))?;
    config.duties.vault = Some(work.join("vault.json"));
    config.duties.verify_as = Some("validator".into());
    let node = r3mes_node::node::start(&home, config)
        .await
        .context("starting the node")?;
    let url = format!("http://{}", node.grpc_addr());
    let ipfs = node
        .ipfs_api_url()
        .context("the devnet needs the embedded IPFS API")?;
    println!(
        "devnet: node gRPC {url}, IPFS API {ipfs}, metrics http://{}/metrics, home {}",
        node.metrics_addr(),
        root.display()
    );
    let keyring = Keyring::new(home.keyring());
    let aggregator = tokio::spawn(crate::aggregate_cmd::role(
        url.clone(),
        ipfs.clone(),
        keyring.secret("validator")?,
        r3mes_aggregate::AdamConfig {
            lr: 1e-2,
            ..r3mes_aggregate::AdamConfig::default()
        },
    ));
    let outcome = tokio::select! {
        r = network(&args, &home, &work, &url, &ipfs) => r,
        name = signals.recv() => {
            eprintln!("devnet: stopping ({name}); run it again on {} to resume", root.display());
            Ok(())
        }
    };
    aggregator.abort();
    node.shutdown().await.context("stopping the node")?;
    outcome
}

/// Makes the home, the dataset, the model and the vault (each once).
async fn prepare(args: &DevnetArgs, home: &Home, work: &Path) -> Result<()> {
    let root = home.root().to_path_buf();
    if !home.config().exists() {
        let accounts = (args.miners + args.withholding).to_string();
        let addr = |port: u16| format!("127.0.0.1:{port}");
        r3mes(
            &root,
            &[
                "node",
                "init",
                "--json",
                "--dev-accounts",
                &accounts,
                "--block-time-ms",
                &args.block_time_ms.to_string(),
                "--grpc-addr",
                &addr(args.grpc_port),
                "--metrics-addr",
                &addr(args.metrics_port),
                "--ipfs-api-addr",
                &addr(args.ipfs_port),
                "--gateway-addr",
                &addr(args.gateway_port),
            ],
        )
        .await?;
        let genesis = root.join("genesis.json");
        let mut g: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&genesis)?)?;
        let p = &mut g["params"];
        p["round_length"] = args.round_length.into();
        // Every gradient is challenged; records live a round and a bit
        // (long enough for the aggregate of their round).
        p["sample_rate_ppm"] = 1_000_000.into();
        p["retention_gradient_blocks"] = (args.round_length + 10).into();
        p["retention_trace_blocks"] = (2 * args.round_length).into();
        p["pow_difficulty_bits"] = 8.into();
        std::fs::write(&genesis, g.to_string())?;
        eprintln!("devnet: initialised {}", root.display());
    }
    if work.join("vault.json").exists() {
        return Ok(());
    }
    let corpus = work.join("corpus");
    std::fs::create_dir_all(&corpus)?;
    let mut files = Vec::new();
    for (name, text) in CORPUS {
        let file = corpus.join(name);
        std::fs::write(&file, text)?;
        files.push(file);
    }
    // The dataset and model as files first: the vault needs their chunks'
    // CIDs and reference gradients before the node starts.
    let local = work.join("dataset-local");
    let _ = std::fs::remove_dir_all(&local);
    let build = dataset_build(&files, &local, "1", None);
    let manifest: serde_json::Value = serde_json::from_str(&r3mes(&root, &build).await?)?;
    let model = work.join("model-local");
    let _ = std::fs::remove_dir_all(&model);
    r3mes(
        &root,
        &["model", "init", "--seed", "1", "--out", path(&model)],
    )
    .await?;
    let entries = make_vault(&root, work, &model, 1).await?;
    eprintln!(
        "devnet: built the corpus ({} shards), the model and a vault of {entries} entries",
        manifest["shard_count"]
    );
    Ok(())
}

/// Writes `vault.json` (atomically): for the first chunk of every shard of
/// the local dataset, the reference gradient of the model in `model` (a
/// directory with `model.safetensors` and `adapters.safetensors`), as the
/// validator computes it. Returns the number of entries.
async fn make_vault(root: &Path, work: &Path, model: &Path, version: u64) -> Result<usize> {
    let local = work.join("dataset-local");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(local.join("manifest.json"))?)?;
    let vault = work.join("vault.json");
    let tmp_vault = work.join("vault.json.partial");
    let _ = std::fs::remove_file(&tmp_vault);
    // The previous version's entries stay: the round under way may still
    // train from it (each entry checks only rounds of its own version).
    if vault.exists() {
        let mut kept = r3mes_verify::Vault::load(&vault)?;
        kept.entries
            .retain(|e| e.model_version.is_some_and(|v| v + 1 == version));
        kept.save(&tmp_vault)?;
    }
    let shards = manifest["shards"].as_array().cloned().unwrap_or_default();
    let mut entries = 0;
    for shard in &shards {
        let shard_id = shard["shard_id"].as_u64().unwrap_or_default();
        let Some(chunk) = shard["chunks"].as_array().and_then(|c| c.first()) else {
            continue;
        };
        let chunk_id = chunk["chunk_id"].as_u64().unwrap_or_default();
        let chunk_file = local
            .join(format!("shard_{shard_id}"))
            .join(format!("chunk_{chunk_id}"));
        let cid = chunk_cid(&std::fs::read(&chunk_file)?)?;
        let reference = work.join(format!("reference_{shard_id}.pb"));
        r3mes(
            root,
            &[
                "miner",
                "train",
                "--model",
                path(model),
                "--chunk",
                path(&chunk_file),
                "--local-batch-size",
                "1",
                "--out",
                path(&reference),
            ],
        )
        .await?;
        r3mes(
            root,
            &[
                "vault",
                "new",
                path(&reference),
                "--out",
                path(&tmp_vault),
                "--chunk-hash",
                &cid,
                "--chunk-id",
                &chunk_id.to_string(),
                "--shard-id",
                &shard_id.to_string(),
                "--threshold-ppm",
                &VAULT_THRESHOLD_PPM.to_string(),
                "--model-version",
                &version.to_string(),
                "--id",
                &format!("shard{shard_id}-chunk{chunk_id}-v{version}"),
            ],
        )
        .await?;
        entries += 1;
    }
    std::fs::rename(&tmp_vault, &vault)?;
    Ok(entries)
}

/// The validator's answer to a new model version: reference gradients of
/// that version, so miners training from it are checked against it (the
/// node reloads a changed vault file before its next block).
async fn refresh_vault(root: PathBuf, work: PathBuf, url: String, api: String, version: u64) {
    let outcome = async {
        let dir = work.join(format!("model-v{version}"));
        let v = version.to_string();
        r3mes(
            &root,
            &[
                "model",
                "fetch",
                "--version",
                &v,
                "--out",
                path(&dir),
                "--node",
                &url,
                "--api",
                &api,
            ],
        )
        .await?;
        make_vault(&root, &work, &dir, version).await
    }
    .await;
    match outcome {
        Ok(n) => tracing::info!("devnet: vault of {n} entries for model version {version}"),
        Err(e) => eprintln!("devnet: refreshing the vault for model version {version}: {e:#}"),
    }
}

/// The network's governance as its users run it: `files` built into a
/// dataset under `work/dataset` (`chunks_per_shard`), added to IPFS,
/// proposed by dev1 and approved by the validator; then a model
/// (`model init` with `model_args`) made under `work/model`, added and
/// registered as version 1. Returns the dataset hash.
pub(crate) async fn approve_dataset_and_register_model(
    root: &Path,
    work: &Path,
    files: &[PathBuf],
    chunks_per_shard: usize,
    model_args: &[&str],
    url: &str,
    ipfs: &str,
) -> Result<String> {
    let ds = work.join("dataset");
    let _ = std::fs::remove_dir_all(&ds);
    let per_shard = chunks_per_shard.to_string();
    let build = dataset_build(files, &ds, &per_shard, Some(ipfs));
    let manifest: serde_json::Value = serde_json::from_str(&r3mes(root, &build).await?)?;
    let hash = manifest["dataset_hash"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    r3mes(
        root,
        &[
            "dataset",
            "propose",
            path(&ds),
            "--from",
            "dev1",
            "--license",
            "public-domain",
            "--node",
            url,
        ],
    )
    .await?;
    r3mes(
        root,
        &[
            "tx",
            "approve-dataset",
            "--from",
            "validator",
            &hash,
            "--node",
            url,
        ],
    )
    .await?;
    let model = work.join("model");
    let _ = std::fs::remove_dir_all(&model);
    let mut init = vec!["model", "init", "--out", path(&model)];
    init.extend_from_slice(model_args);
    init.extend(["--api", ipfs, "--from", "validator", "--node", url]);
    r3mes(root, &init).await?;
    Ok(hash)
}

/// `dataset build` of the corpus `files` into `out` (`per_shard` chunks per
/// shard), added to IPFS through `api` if given.
fn dataset_build<'a>(
    files: &'a [PathBuf],
    out: &'a Path,
    per_shard: &'a str,
    api: Option<&'a str>,
) -> Vec<&'a str> {
    let mut args = vec![
        "dataset",
        "build",
        "--name",
        "corpus",
        "--chunks-per-shard",
        per_shard,
        "--json",
    ];
    if let Some(api) = api {
        args.extend(["--api", api]);
    }
    args.extend(files.iter().map(|f| path(f)));
    args.extend(["--out", path(out)]);
    args
}

/// The CID `ipfs add` gives a chunk file (default settings).
fn chunk_cid(bytes: &[u8]) -> Result<String> {
    use r3mes_ipfs::importer::{DiscardSink, ImportParams, import_bytes};
    let params = ImportParams::from_options(&r3mes_ipfs::AddOptions::default())?;
    Ok(import_bytes(bytes, &params, &mut DiscardSink)?
        .root
        .to_string())
}

/// Governance and the model on chain (once), then the miners and the live view.
async fn network(args: &DevnetArgs, home: &Home, work: &Path, url: &str, ipfs: &str) -> Result<()> {
    let root = home.root().to_path_buf();
    let client = NodeClient::connect(url).await?;
    if client.model(None).await?.is_none() {
        let corpus: Vec<PathBuf> = CORPUS
            .iter()
            .map(|(n, _)| work.join("corpus").join(n))
            .collect();
        let hash = approve_dataset_and_register_model(
            &root,
            work,
            &corpus,
            1,
            &["--seed", "1"],
            url,
            ipfs,
        )
        .await?;
        eprintln!("devnet: dataset {hash} approved, model version 1 registered");
    }
    let keyring = Keyring::new(home.keyring());
    let total = args.miners + args.withholding;
    let mut honest = Vec::new();
    let mut withholding = Vec::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<MinerEvent>();
    let mut miners = Vec::new();
    for i in 1..=total {
        let key = keyring.secret(&format!("dev{i}"))?;
        let address = key.public_key().address().to_string();
        let withholds = i > args.miners;
        if withholds {
            withholding.push(address.clone());
        } else {
            honest.push(address.clone());
        }
        let options = RunOptions {
            key,
            node: url.to_owned(),
            api: ipfs.to_owned(),
            spool: root.join("miner").join(&address),
            // One sequence per micro-batch: with several trainers sharing
            // the cores, bigger batches only add memory traffic (the devnet
            // model trains a chunk in 0.45 s at 1 against 0.7 s at 16).
            batching: crate::miner_cmd::Batching {
                local_batch_size: Some(1),
                memory_budget: None,
                seq_len: r3mes_miner::DEFAULT_SEQ_LEN,
            },
            rounds: Some(args.rounds),
            max_chunks: Some(1),
            poll: Duration::from_millis(100),
            respond: !withholds,
            withhold: withholds,
            events: Some(tx.clone()),
        };
        miners.push(tokio::spawn(crate::miner_run::run(options)));
    }
    drop(tx);
    let shared = Arc::new(Mutex::new(Shared {
        summary: Summary {
            miners: args.miners,
            withholding: args.withholding,
            ..Summary::default()
        },
        current_round: client.round(None).await?.map_or(0, |r| r.round_id),
        honest,
        withholding,
        gradients: BTreeMap::new(),
        started: Instant::now(),
    }));
    let watcher = tokio::spawn(watch(
        client.clone(),
        shared.clone(),
        (
            root.clone(),
            work.to_path_buf(),
            url.to_owned(),
            ipfs.to_owned(),
        ),
    ));
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    });
    let mut pending = miners.len();
    let mut ticker = tokio::time::interval(Duration::from_millis(500));
    while pending > 0 {
        tokio::select! {
            event = rx.recv() => match event {
                Some(e) => {
                    let mut s = shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    let honest = s.honest.contains(&e.miner);
                    s.gradients.insert(e.ipfs_hash.clone(), (e.miner.clone(), e.round));
                    let r = s.summary.rounds.entry(e.round).or_default();
                    r.loss_sum += e.loss;
                    r.losses += 1;
                    r.bytes_in_ipfs += e.bytes;
                    if !r.model_versions.contains(&e.model_version) {
                        r.model_versions.push(e.model_version);
                    }
                    if honest {
                        s.summary.honest_submitted += 1;
                    } else {
                        s.summary.withholding_submitted += 1;
                    }
                }
                None => pending = 0,
            },
            _ = ticker.tick() => {
                pending = miners.iter().filter(|m| !m.is_finished()).count();
                if let Some(bar) = &bar {
                    let s = shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    let r = s.current_round;
                    let stats = s.summary.rounds.get(&r).cloned().unwrap_or_default();
                    bar.set_message(stats.line(r));
                }
            }
        }
    }
    for m in miners {
        match m.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("devnet: a miner stopped: {e:#}"),
            Err(e) => eprintln!("devnet: a miner task failed: {e}"),
        }
    }
    // Let the last verifications land, and retention collect the first
    // round's records (at most one round and a bit later).
    let deadline =
        Instant::now() + Duration::from_millis(args.block_time_ms * (args.round_length + 20));
    tokio::time::sleep(Duration::from_millis(args.block_time_ms * 10)).await;
    while Instant::now() < deadline {
        let done = {
            let s = shared
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            s.summary.gradient_records_expired > 0
                && s.summary.honest_verified >= s.summary.honest_on_chain
        };
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(args.block_time_ms)).await;
    }
    watcher.abort();
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let latest = client.model(None).await?.map(|m| m.version);
    let mut s = shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    finish(&mut s, latest, work)
}

/// Counts the chain's events per round.
async fn watch(
    client: NodeClient,
    shared: Arc<Mutex<Shared>>,
    (root, work, url, api): (PathBuf, PathBuf, String, String),
) -> Result<()> {
    let mut stream = client.subscribe(&[], None).await?;
    let mut last_height = 0;
    let mut round_started = Instant::now();
    while let Some(item) = futures::StreamExt::next(&mut stream).await {
        let Ok(block_event) = item else { continue };
        let Some(kind) = block_event.event.and_then(|e| e.kind) else {
            continue;
        };
        let mut chain_bytes = None;
        if let event::Kind::GradientStored(g) = &kind
            && let Ok(Some(stored)) = client.gradient(&g.ipfs_hash).await
        {
            chain_bytes = Some(stored.encoded_len() as u64);
        }
        let mut s = shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let round = s.current_round;
        if !block_event.tx_hash.is_empty() && block_event.height != last_height {
            last_height = block_event.height;
        }
        let is_honest = |s: &Shared, a: &str| s.honest.iter().any(|h| h == a);
        match kind {
            event::Kind::RoundStarted(r) => {
                if let Some(stats) = s.summary.rounds.get_mut(&round) {
                    stats.seconds = round_started.elapsed().as_secs_f64();
                    let line = stats.line(round);
                    println!("{line}");
                }
                round_started = Instant::now();
                s.current_round = r.round_id;
            }
            event::Kind::GradientStored(g) => {
                let honest = is_honest(&s, &g.miner);
                let stats = s.summary.rounds.entry(g.round_id).or_default();
                stats.submissions += 1;
                stats.transactions += 1;
                stats.bytes_on_chain += chain_bytes.unwrap_or_default();
                if honest {
                    s.summary.honest_on_chain += 1;
                }
            }
            event::Kind::ChallengeIssued(_) => {
                s.summary.rounds.entry(round).or_default().challenges_issued += 1
            }
            event::Kind::ChallengeClosed(c) => {
                let stats = s.summary.rounds.entry(round).or_default();
                if c.status == ChallengeStatus::Resolved as i32 {
                    stats.challenges_answered += 1;
                    stats.transactions += 1;
                } else {
                    stats.challenges_failed += 1;
                }
            }
            event::Kind::Slashed(sl) => {
                s.summary.rounds.entry(round).or_default().slashes += 1;
                if is_honest(&s, &sl.address) {
                    s.summary.honest_slashed += 1;
                } else if s.withholding.contains(&sl.address) {
                    s.summary.withholding_slashed += 1;
                }
            }
            event::Kind::Verification(v) => {
                let honest = s
                    .gradients
                    .get(&v.ipfs_hash)
                    .is_some_and(|(m, _)| s.honest.contains(m));
                let stats = s.summary.rounds.entry(round).or_default();
                stats.verifications += 1;
                stats.transactions += 1;
                stats.cosine_ppm_sum += v.cosine_ppm;
                if v.passed {
                    stats.verifications_passed += 1;
                    if honest {
                        s.summary.honest_verified += 1;
                    }
                }
            }
            event::Kind::RecordExpired(e) => {
                s.summary.rounds.entry(round).or_default().records_expired += 1;
                if e.record_kind == "gradient" {
                    s.summary.gradient_records_expired += 1;
                }
            }
            event::Kind::Unpin(_) => s.summary.rounds.entry(round).or_default().unpinned += 1,
            event::Kind::ModelRegistered(m) => {
                s.summary.model_versions += 1;
                if m.version > 1 {
                    tokio::spawn(refresh_vault(
                        root.clone(),
                        work.clone(),
                        url.clone(),
                        api.clone(),
                        m.version,
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The summary table, report.md, summary.json and the plots.
fn finish(s: &mut Shared, latest_model: Option<u64>, work: &Path) -> Result<()> {
    let seconds = s.started.elapsed().as_secs_f64();
    s.summary.seconds = seconds;
    let txs: u64 = s.summary.rounds.values().map(|r| r.transactions).sum();
    s.summary.tx_per_second = txs as f64 / seconds.max(1e-9);
    if let Some(version) = latest_model {
        s.summary.model_versions = version;
    }
    let summary = &s.summary;
    let mut table = String::from(
        "| round | gradients | challenges issued | answered | failed | slashes | verified | cosine | bytes on chain | bytes in IPFS | records expired | mean loss |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for (round, r) in &summary.rounds {
        table.push_str(&format!(
            "| {round} | {} | {} | {} | {} | {} | {}/{} | {} | {} | {} | {} | {} |\n",
            r.submissions,
            r.challenges_issued,
            r.challenges_answered,
            r.challenges_failed,
            r.slashes,
            r.verifications_passed,
            r.verifications,
            r.mean_cosine().map_or("-".into(), |c| format!("{c:.3}")),
            r.bytes_on_chain,
            r.bytes_in_ipfs,
            r.records_expired,
            r.mean_loss().map_or("-".into(), |l| format!("{l:.4}")),
        ));
    }
    let totals = format!(
        "honest miners {}: {} gradients submitted, {} on chain, {} verified, {} slashed; \
         withholding miners {}: {} submitted, slashed {} times; {} gradient records expired; \
         model versions {}; {:.0} s, {:.1} tx/s",
        summary.miners,
        summary.honest_submitted,
        summary.honest_on_chain,
        summary.honest_verified,
        summary.honest_slashed,
        summary.withholding,
        summary.withholding_submitted,
        summary.withholding_slashed,
        summary.gradient_records_expired,
        summary.model_versions,
        summary.seconds,
        summary.tx_per_second,
    );
    println!("\n{table}\n{totals}");
    std::fs::create_dir_all(work)?;
    std::fs::write(
        work.join("summary.json"),
        serde_json::to_vec_pretty(summary)?,
    )?;
    let plots = crate::devnet_plots::write(work, summary_series(summary))?;
    let mut report = format!("# r3mes devnet report\n\n{totals}\n\n{table}\n");
    for (title, file) in &plots {
        report.push_str(&format!("## {title}\n\n![{title}]({file})\n\n"));
    }
    std::fs::write(work.join("report.md"), report)?;
    println!("report: {}", work.join("report.md").display());
    Ok(())
}

/// Per-round series for the plots: (round, loss, tx/s, bytes on chain, bytes in IPFS).
fn summary_series(summary: &Summary) -> Vec<(u64, Option<f64>, f64, u64, u64)> {
    summary
        .rounds
        .iter()
        .map(|(round, r)| {
            let tps = if r.seconds > 0.0 {
                r.transactions as f64 / r.seconds
            } else {
                0.0
            };
            (
                *round,
                r.mean_loss(),
                tps,
                r.bytes_on_chain,
                r.bytes_in_ipfs,
            )
        })
        .collect()
}
