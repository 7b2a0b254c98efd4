//! `r3mes bench miner`: the miner end to end on a local node, as a user
//! runs it. In a temporary home it starts `r3mes node start` (embedded
//! IPFS), builds the shipped corpus into a dataset, proposes and approves
//! it, makes and registers a model, then runs `r3mes miner run` for a few
//! rounds and reports, per submitted round, the time from chunks received
//! to gradient acknowledged (committed on chain), split into training and
//! submission (add to IPFS, file in the MFS, proof of work, sign, commit),
//! and the training throughput.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{Context, Result, bail};
use clap::Args;

#[derive(Args)]
pub struct MinerBench {
    /// Rounds to mine.
    #[arg(long, default_value_t = 3)]
    rounds: u64,
    /// Chunks per gradient.
    #[arg(long, default_value_t = 2)]
    chunks: usize,
    /// Sequences per micro-batch.
    #[arg(long, default_value_t = 4)]
    local_batch_size: usize,
    /// Model layers / width / heads.
    #[arg(long, default_value_t = 2)]
    layers: usize,
    #[arg(long, default_value_t = 64)]
    dim: usize,
    #[arg(long, default_value_t = 4)]
    heads: usize,
    /// Block time, ms.
    #[arg(long, default_value_t = 200)]
    block_time_ms: u64,
    /// Blocks per round.
    #[arg(long, default_value_t = 100)]
    round_length: u64,
    /// The corpus directory (default: the repo's data/corpus).
    #[arg(long)]
    corpus: Option<PathBuf>,
}

fn r3mes(home: &Path) -> Result<Command> {
    let mut cmd = Command::new(std::env::current_exe().context("finding the r3mes binary")?);
    cmd.env("R3MES_HOME", home);
    Ok(cmd)
}

fn checked(what: &str, out: std::io::Result<Output>) -> Result<String> {
    let out = out.with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!("{what} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn default_corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/corpus")
}

pub fn run(args: MinerBench) -> Result<()> {
    let dir = tempfile::tempdir().context("making a temporary home")?;
    let home = dir.path();
    checked(
        "node init",
        r3mes(home)?
            .args(["node", "init", "--dev-accounts", "1", "--json"])
            .args(["--block-time-ms", &args.block_time_ms.to_string()])
            .args([
                "--grpc-addr",
                "127.0.0.1:0",
                "--metrics-addr",
                "127.0.0.1:0",
            ])
            .args([
                "--ipfs-api-addr",
                "127.0.0.1:0",
                "--gateway-addr",
                "127.0.0.1:0",
            ])
            .output(),
    )?;
    let genesis = home.join("genesis.json");
    let mut g: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&genesis)?)?;
    g["params"]["round_length"] = args.round_length.into();
    std::fs::write(&genesis, g.to_string())?;
    let mut node = r3mes(home)?
        .args(["node", "start"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the node")?;
    let result = (|| {
        let mut line = String::new();
        BufReader::new(node.stdout.take().context("node stdout")?).read_line(&mut line)?;
        let words: Vec<&str> = line.split_whitespace().collect();
        let (Some(grpc), Some(ipfs)) = (words.get(3), words.get(7)) else {
            bail!("unexpected node start line {line:?}");
        };
        let url = format!("http://{grpc}");
        bench(&args, home, &url, ipfs)
    })();
    let _ = Command::new("kill")
        .args(["-TERM", &node.id().to_string()])
        .status();
    let _ = node.wait();
    result
}

fn bench(args: &MinerBench, home: &Path, url: &str, ipfs: &str) -> Result<()> {
    let corpus = args.corpus.clone().unwrap_or_else(default_corpus);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&corpus)
        .with_context(|| format!("reading {}", corpus.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    let (layers, dim, heads) = (
        args.layers.to_string(),
        args.dim.to_string(),
        args.heads.to_string(),
    );
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(crate::devnet::approve_dataset_and_register_model(
            home,
            home,
            &files,
            8,
            &["--layers", &layers, "--dim", &dim, "--heads", &heads],
            url,
            ipfs,
        ))?;
    let mined = checked(
        "miner run",
        r3mes(home)?
            .args([
                "miner", "run", "--from", "dev1", "--node", url, "--api", ipfs,
            ])
            .args(["--rounds", &args.rounds.to_string()])
            .args(["--max-chunks", &args.chunks.to_string()])
            .args(["--local-batch-size", &args.local_batch_size.to_string()])
            .args(["--poll-ms", "50"])
            .stderr(Stdio::null())
            .output(),
    )?;
    println!(
        "miner end to end: model L{} D{} H{}, {} chunk(s) per gradient, B = {}, block time {} ms",
        args.layers, args.dim, args.heads, args.chunks, args.local_batch_size, args.block_time_ms
    );
    println!("| round | chunk to ack (s) | training (s) | submission (s) | tokens/s | loss |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for line in mined.lines() {
        let l: serde_json::Value = serde_json::from_str(line)?;
        println!(
            "| {} | {:.3} | {:.3} | {:.3} | {:.0} | {:.4} |",
            l["round"],
            l["chunk_to_ack_seconds"].as_f64().unwrap_or(0.0),
            l["train_seconds"].as_f64().unwrap_or(0.0),
            l["submit_seconds"].as_f64().unwrap_or(0.0),
            l["tokens_per_second"].as_f64().unwrap_or(0.0),
            l["loss"].as_f64().unwrap_or(0.0),
        );
    }
    Ok(())
}
