//! `r3mes bench submit`: the project's load generator for a node (like
//! redis-benchmark). C concurrent clients, each its own funded and staked
//! account, submit signed gradients one after another; each submission is
//! answered when the block holding it is committed, so its latency is the
//! time to inclusion. Reports tx/s, p50/p99/max latency, errors and the
//! node's resident memory over the run.
//!
//! By default it makes a bench chain in a temporary home (C dev accounts,
//! cheap proof of work, one long round) and runs the node as a child
//! process of the same binary, so the figures are those of node and load
//! generator together on this machine; the node's RSS is read from
//! `/proc/<pid>/status`. With `--node URL --home DIR` it loads a running
//! node whose home keyring holds `dev1..devC`.
//!
//! Transactions are signed before the clock starts. A client's `k`-th
//! transaction cannot be included before the `k`-th block from now, so it
//! carries that block's time: runs longer than the chain's clock-skew
//! window (60 s by default) stay valid.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cid::Cid;
use clap::Args;
use r3mes_chain::gradients::{GradientFacts, one_chunk_submission};
use r3mes_chain::params::Params;
use r3mes_chain::proto::{TxBody, tx_body};
use r3mes_chain::{SecretKey, SignedTx};
use r3mes_node::config::{IpfsConfig, NodeConfig};
use r3mes_node::home::Home;
use r3mes_node::init::{InitOptions, init};
use r3mes_node::keyring::Keyring;
use r3mes_node::proto::msg_client::MsgClient;
use r3mes_node::proto::query_client::QueryClient;
use r3mes_node::proto::{
    ParamsRequest, ShardAssignmentRequest, StatusRequest, SubmitGradientRequest,
    submit_gradient_request,
};
use serde::Serialize;
use tonic::transport::Channel;

#[derive(Args)]
pub struct SubmitBench {
    /// Concurrent clients, each with its own account.
    #[arg(long, default_value_t = 5000)]
    clients: u32,
    /// Transactions in all (spread evenly over the clients).
    #[arg(long, default_value_t = 25_000)]
    txs: u64,
    /// Block time of the bench chain, ms.
    #[arg(long, default_value_t = 1000)]
    block_time_ms: u64,
    /// gRPC connections the clients share.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Proof-of-work difficulty of the bench chain.
    #[arg(long, default_value_t = 8)]
    pow_bits: u32,
    /// Load this running node (needs --home for the dev account keys).
    #[arg(long, requires = "home")]
    node: Option<String>,
    /// Home of the node: its keyring holds the client keys. Without
    /// --node, the bench chain is made here (default: a temporary dir).
    #[arg(long)]
    home: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// The measured figures.
#[derive(Debug, Serialize)]
struct SubmitReport {
    clients: u32,
    txs_sent: u64,
    txs_ok: u64,
    errors: u64,
    first_error: Option<String>,
    seconds: f64,
    tx_per_sec: f64,
    block_time_ms: u64,
    latency_ms_p50: f64,
    latency_ms_p99: f64,
    latency_ms_max: f64,
    node_rss_mib_start: Option<f64>,
    node_rss_mib_end: Option<f64>,
    node_rss_mib_max: Option<f64>,
}

pub fn run(args: SubmitBench) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = runtime.block_on(bench(&args))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "submit: {} clients, {} of {} transactions included in {:.2} s: {:.0} tx/s \
             (block time {} ms)",
            report.clients,
            report.txs_ok,
            report.txs_sent,
            report.seconds,
            report.tx_per_sec,
            report.block_time_ms
        );
        println!(
            "latency to inclusion: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
            report.latency_ms_p50, report.latency_ms_p99, report.latency_ms_max
        );
        if let (Some(start), Some(end), Some(max)) = (
            report.node_rss_mib_start,
            report.node_rss_mib_end,
            report.node_rss_mib_max,
        ) {
            println!(
                "node RSS: {start:.0} MiB at the start, {end:.0} MiB at the end, {max:.0} MiB at most"
            );
        }
        if report.errors > 0 {
            println!(
                "errors: {} (first: {})",
                report.errors,
                report.first_error.as_deref().unwrap_or("?")
            );
        }
    }
    Ok(())
}

/// The node under load: one we started (and stop), or one already running.
struct Target {
    url: String,
    child: Option<Child>,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }
}

async fn bench(args: &SubmitBench) -> Result<SubmitReport> {
    if args.clients == 0 || args.txs == 0 {
        bail!("--clients and --txs must be at least 1");
    }
    let (target, home) = match &args.node {
        Some(url) => {
            let home = Home::new(args.home.clone().context("--node needs --home")?);
            let target = Target {
                url: url.clone(),
                child: None,
                _dir: None,
            };
            (target, home)
        }
        None => start_node(args)?,
    };
    eprintln!("node at {}; preparing signed transactions", target.url);
    let channels = connect(&target.url, args.connections.max(1)).await?;
    let per_client = args.txs.div_ceil(u64::from(args.clients));
    let batches = prepare(args, &home, &channels[0], per_client).await?;
    let pid = target.child.as_ref().map(Child::id);
    let rss_start = pid.and_then(rss_mib);

    eprintln!(
        "{} clients sending {} transactions each",
        args.clients, per_client
    );
    let sampler = tokio::spawn(sample_rss(pid));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(batches.len());
    for (i, txs) in batches.into_iter().enumerate() {
        let mut client = MsgClient::new(channels[i % channels.len()].clone())
            .max_decoding_message_size(16 << 20);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(txs.len());
            let mut errors = Vec::new();
            for bytes in txs {
                let sent = Instant::now();
                let request = SubmitGradientRequest {
                    transaction: Some(submit_gradient_request::Transaction::TxBytes(bytes)),
                };
                match client.submit_gradient(request).await {
                    Ok(_) => latencies.push(sent.elapsed()),
                    Err(status) => {
                        errors.push(format!("{:?}: {}", status.code(), status.message()))
                    }
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = Vec::new();
    for task in tasks {
        let (l, e) = task.await.context("a client task failed")?;
        latencies.extend(l);
        errors.extend(e);
    }
    let seconds = started.elapsed().as_secs_f64();
    sampler.abort();
    // The high-water mark covers the start too.
    let rss_max = pid.and_then(hwm_mib);
    let rss_end = pid.and_then(rss_mib);
    drop(target);

    latencies.sort_unstable();
    let ms = |q: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let i = ((latencies.len() - 1) as f64 * q).round() as usize;
        latencies[i].as_secs_f64() * 1e3
    };
    let ok = latencies.len() as u64;
    Ok(SubmitReport {
        clients: args.clients,
        txs_sent: ok + errors.len() as u64,
        txs_ok: ok,
        errors: errors.len() as u64,
        first_error: errors.first().cloned(),
        seconds,
        tx_per_sec: ok as f64 / seconds,
        block_time_ms: args.block_time_ms,
        latency_ms_p50: ms(0.5),
        latency_ms_p99: ms(0.99),
        latency_ms_max: ms(1.0),
        node_rss_mib_start: rss_start,
        node_rss_mib_end: rss_end,
        node_rss_mib_max: rss_max,
    })
}

/// Makes the bench chain's home and starts its node as a child process.
fn start_node(args: &SubmitBench) -> Result<(Target, Home)> {
    let (dir, root) = match &args.home {
        Some(root) => (None, root.clone()),
        None => {
            let dir = tempfile::tempdir().context("creating a temporary home")?;
            let root = dir.path().to_path_buf();
            (Some(dir), root)
        }
    };
    let home = Home::new(&root);
    let any = "127.0.0.1:0".parse().context("address")?;
    let config = NodeConfig {
        grpc_addr: any,
        metrics_addr: any,
        block_time_ms: args.block_time_ms,
        max_txs_per_block: 20_000,
        mempool_capacity: 100_000,
        ipfs: IpfsConfig::Embedded {
            serve_http: false,
            api_addr: any,
            gateway_addr: any,
        },
        ..NodeConfig::default()
    };
    let params = Params {
        pow_difficulty_bits: args.pow_bits,
        round_length: 1_000_000,
        ..Params::default_for_block_time(args.block_time_ms)
    };
    eprintln!(
        "making a bench chain with {} accounts in {}",
        args.clients,
        root.display()
    );
    init(
        &home,
        &InitOptions {
            chain_id: "r3mes-bench-1".into(),
            dev_accounts: args.clients,
            config,
            params: Some(params),
        },
    )
    .context("initialising the bench chain")?;
    let exe = std::env::current_exe().context("finding the r3mes binary")?;
    let mut child = Command::new(exe)
        .args(["node", "start", "--home"])
        .arg(&root)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the node")?;
    let stdout = child.stdout.take().context("the node's stdout")?;
    let mut line = String::new();
    let mut reader = BufReader::new(stdout);
    let url = loop {
        line.clear();
        if reader
            .read_line(&mut line)
            .context("reading the node's output")?
            == 0
        {
            bail!("the node exited before it started");
        }
        if let Some(rest) = line.strip_prefix("node started: gRPC ") {
            let addr = rest
                .split_whitespace()
                .next()
                .context("the node's address")?;
            break format!("http://{addr}");
        }
    };
    let target = Target {
        url,
        child: Some(child),
        _dir: dir,
    };
    Ok((target, home))
}

async fn connect(url: &str, n: usize) -> Result<Vec<Channel>> {
    let mut channels = Vec::with_capacity(n);
    for _ in 0..n {
        let channel = Channel::from_shared(url.to_owned())
            .context("node URL")?
            .connect_timeout(Duration::from_secs(10))
            .connect()
            .await
            .with_context(|| format!("connecting to {url}"))?;
        channels.push(channel);
    }
    Ok(channels)
}

/// Signs every client's transactions (gradients with fresh CIDs for the
/// client's shard, proof of work solved, sequences from 0 up).
async fn prepare(
    args: &SubmitBench,
    home: &Home,
    channel: &Channel,
    per_client: u64,
) -> Result<Vec<Vec<Vec<u8>>>> {
    let mut query = QueryClient::new(channel.clone());
    let status = query
        .status(StatusRequest {})
        .await
        .context("querying the node's status")?
        .into_inner();
    let ring = Keyring::new(home.keyring());
    let mut clients = Vec::with_capacity(args.clients as usize);
    for i in 1..=args.clients {
        let key = ring
            .secret(&format!("dev{i}"))
            .with_context(|| format!("key dev{i} of {}", home.keyring().display()))?;
        let address = key.public_key().address().to_string();
        let shard = query
            .shard_assignment(ShardAssignmentRequest {
                address,
                round_id: None,
            })
            .await
            .with_context(|| format!("shard assignment of dev{i}"))?
            .into_inner();
        clients.push((i, key, shard.round_id, shard.shard_id));
    }
    let params = query
        .params(ParamsRequest {})
        .await
        .context("querying the node's params")?
        .into_inner();
    let params: Params =
        serde_json::from_str(&params.params_json).context("the node's params JSON")?;
    let block_ms = i64::try_from(params.block_time_ms).context("block_time_ms")?;
    let chain_id = status.chain_id;
    let time = status.next_block_time_ms;
    let bits = args.pow_bits;
    let workers = std::thread::available_parallelism().map_or(2, usize::from);
    let clients = Arc::new(clients);
    let mut handles = Vec::new();
    for w in 0..workers {
        let clients = Arc::clone(&clients);
        let chain_id = chain_id.clone();
        handles.push(tokio::task::spawn_blocking(move || {
            clients
                .iter()
                .skip(w)
                .step_by(workers)
                .map(|(i, key, round, shard)| {
                    (0..per_client)
                        .map(|seq| {
                            let cid = bench_cid(*i, seq);
                            let msg = gradient(key, &cid, *round, *shard, bits);
                            // `seq` blocks after the first, at the earliest.
                            let at = i64::try_from(seq)
                                .ok()
                                .and_then(|s| s.checked_mul(block_ms))
                                .and_then(|d| time.checked_add(d))
                                .unwrap_or(time);
                            SignedTx::sign(TxBody { msg: Some(msg) }, key, seq, &chain_id, at)
                                .map(|tx| tx.encode())
                        })
                        .collect::<r3mes_chain::Result<Vec<_>>>()
                })
                .collect::<r3mes_chain::Result<Vec<_>>>()
        }));
    }
    let mut batches = Vec::with_capacity(clients.len());
    for h in handles {
        batches.extend(h.await.context("signing task")?.context("signing")?);
    }
    Ok(batches)
}

/// A CIDv0 unique to client `i` and sequence `seq` (the keeper never reads
/// gradient bytes, so no content is needed).
fn bench_cid(i: u32, seq: u64) -> Cid {
    let digest = r3mes_chain::crypto::sha256(
        &[
            b"r3mes-bench".as_slice(),
            &i.to_be_bytes(),
            &seq.to_be_bytes(),
        ]
        .concat(),
    );
    let mut mh = vec![0x12, 0x20];
    mh.extend_from_slice(&digest);
    // A sha2-256 multihash of 32 bytes always parses.
    Cid::try_from(mh.as_slice()).unwrap_or_default()
}

fn gradient(key: &SecretKey, cid: &Cid, round: u64, shard: u64, bits: u32) -> tx_body::Msg {
    let facts = GradientFacts {
        chunk: cid.to_string(),
        backbone: cid.to_string(),
        format: "protobuf".into(),
        byte_size: 4096,
        element_count: 1024,
    };
    let miner = key.public_key().address();
    tx_body::Msg::SubmitGradient(one_chunk_submission(
        &miner, cid, round, shard, bits, &facts,
    ))
}

/// The resident set of process `pid` (`VmRSS`), MiB.
fn rss_mib(pid: u32) -> Option<f64> {
    proc_status_mib(pid, "VmRSS:")
}

/// The process's RSS high-water mark since it started (`VmHWM`), MiB.
fn hwm_mib(pid: u32) -> Option<f64> {
    proc_status_mib(pid, "VmHWM:")
}

/// A `kB` field of `/proc/<pid>/status`, MiB.
fn proc_status_mib(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// Logs the node's RSS every second while the load runs.
async fn sample_rss(pid: Option<u32>) {
    let Some(pid) = pid else {
        return;
    };
    let started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Some(rss) = rss_mib(pid) {
            eprintln!(
                "  {:>4.0} s: node RSS {rss:.0} MiB",
                started.elapsed().as_secs_f64()
            );
        }
    }
}
