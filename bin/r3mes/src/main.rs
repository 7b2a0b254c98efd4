//! The `r3mes` command line: parses arguments, calls the libraries, reports.
//! Errors print as `error: <what failed>: <why>` with a non-zero exit code.

mod aggregate_cmd;
mod bench;
mod bench_chain;
mod bench_gradient;
mod bench_miner;
mod bench_submit;
mod bench_verify;
mod dataset_cmd;
mod devnet;
mod devnet_plots;
mod gradient;
mod ipfs;
mod ipfs_files;
mod keys_cmd;
mod miner_cmd;
mod miner_run;
mod model_cmd;
mod node_cmd;
mod query_cmd;
mod tx_cmd;
mod verify;

use clap::{Parser, Subcommand};

/// r3mes: the R3MES data layer (content store, chain node, miner, validator).
#[derive(Parser)]
#[command(name = "r3mes", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The IPFS content layer: add, cat, pins, GC, CAR, daemon, sidecar.
    #[command(subcommand)]
    Ipfs(ipfs::IpfsCommand),
    /// Gradient files: inspect, decode (flatten), convert.
    #[command(subcommand)]
    Gradient(gradient::GradientCommand),
    /// The whole network on one machine: node, IPFS, validator, aggregator, honest and withholding miners.
    Devnet(devnet::DevnetArgs),
    /// Measure performance figures (the README's table).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// The chain node: init a home, start the daemon.
    #[command(subcommand)]
    Node(node_cmd::NodeCommand),
    /// The keyring of the node home: add, list, show, export keys.
    #[command(subcommand)]
    Keys(keys_cmd::KeysCommand),
    /// Sign and send transactions: every message of the chain (submit-gradient adds the file to IPFS first).
    Tx(tx_cmd::TxArgs),
    /// Training data: build a dataset of fixed 2048-token chunks and shards.
    #[command(subcommand)]
    Dataset(dataset_cmd::DatasetCommand),
    /// The model: init a small deterministic BitNet backbone with LoRA adapters, add and register it.
    #[command(subcommand)]
    Model(model_cmd::ModelCommand),
    /// Aggregate a round's gradients into the next adapters version (token-weighted mean, Adam step).
    Aggregate(aggregate_cmd::AggregateArgs),
    /// The miner: run (the engine: train every round and submit), train (one chunk), respond (answer challenges).
    #[command(subcommand)]
    Miner(miner_cmd::MinerCommand),
    /// Read a node's records: status, params, balance, gradient(s), challenges, shard, round, dataset.
    Query(query_cmd::QueryArgs),
    /// Verify a gradient against a secret vault entry by range reads (tolerant verification).
    Verify(verify::VerifyArgs),
    /// A validator's secret vault: make entries, list them.
    #[command(subcommand)]
    Vault(verify::VaultCommand),
}

/// jemalloc instead of glibc's malloc (as reth does): under thousands of
/// concurrent gRPC requests glibc's per-thread arenas kept freed memory
/// and the node's RSS rose with every transaction.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Devnet(_)) {
        single_threaded_kernels();
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("R3MES_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Ipfs(cmd) => ipfs::run(cmd),
        Command::Bench(cmd) => bench::run_bench(cmd),
        Command::Devnet(args) => devnet::run(args),
        Command::Gradient(cmd) => gradient::run(cmd),
        Command::Node(cmd) => node_cmd::run(cmd),
        Command::Keys(cmd) => keys_cmd::run(cmd),
        Command::Miner(cmd) => miner_cmd::run(cmd),
        Command::Dataset(cmd) => dataset_cmd::run(cmd),
        Command::Model(cmd) => model_cmd::run(cmd),
        Command::Aggregate(args) => aggregate_cmd::run(args),
        Command::Query(args) => query_cmd::run(args),
        Command::Tx(args) => tx_cmd::run(args),
        Command::Verify(args) => verify::run_verify(args),
        Command::Vault(cmd) => verify::run_vault(cmd),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // A closed pipe (`r3mes ipfs gc | head`) is the reader's choice, not a failure.
        Err(err) if is_broken_pipe(&err) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The devnet runs every miner, the validator and the aggregator in one
/// process (and its helper processes) on a few cores, each training on its
/// own thread: candle's intra-op pools (sized once from `RAYON_NUM_THREADS`,
/// spinning at their barriers) then only fight each other for the cores.
/// Unless the user chose a number, kernels run on the calling thread.
/// Measured on 2 cores, default devnet: 130 s with empty rounds against
/// 50 s with every round full.
#[allow(unsafe_code)]
fn single_threaded_kernels() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // SAFETY: called first thing in `main`, before the logger, the async
        // runtime or any other thread exists (jemalloc runs no background
        // threads by default), so nothing reads the environment concurrently.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", "1") };
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|cause| cause.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}
