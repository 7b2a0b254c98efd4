//! `r3mes node init|start`: prepare a home and run the node daemon
//! (library: `r3mes-node`).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use r3mes_ipfs_http::ShutdownSignals;
use r3mes_node::config::{IpfsConfig, NodeConfig};
use r3mes_node::home::Home;
use r3mes_node::init::{InitOptions, init};

#[derive(Subcommand)]
pub enum NodeCommand {
    /// Write a genesis (validator key, funded dev accounts, default
    /// parameters), a config file and a keyring into the home.
    Init(InitArgs),
    /// Run the node: block producer, gRPC, metrics, content store. Stops
    /// cleanly on SIGINT or SIGTERM.
    Start(StartArgs),
}

#[derive(Args)]
pub struct HomeArg {
    /// Node home (default: $R3MES_HOME, or ~/.r3mes).
    #[arg(long)]
    home: Option<PathBuf>,
}

impl HomeArg {
    pub fn home(&self) -> Home {
        Home::new(self.home.clone().unwrap_or_else(Home::default_root))
    }
}

#[derive(Args)]
pub struct InitArgs {
    #[command(flatten)]
    home: HomeArg,
    /// The chain id.
    #[arg(long, default_value = "r3mes-local-1")]
    chain_id: String,
    /// Block time, ms (the producer's and the keeper's).
    #[arg(long, default_value_t = 1000)]
    block_time_ms: u64,
    /// Dev accounts `dev1..=devN` funded and staked at genesis.
    #[arg(long, default_value_t = 3)]
    dev_accounts: u32,
    /// gRPC listen address.
    #[arg(long, default_value = r3mes_node::config::DEFAULT_GRPC_ADDR)]
    grpc_addr: SocketAddr,
    /// Prometheus metrics listen address.
    #[arg(long, default_value = r3mes_node::config::DEFAULT_METRICS_ADDR)]
    metrics_addr: SocketAddr,
    /// Do not serve the embedded IPFS RPC API and gateway (5001, 8080).
    #[arg(long)]
    no_ipfs_http: bool,
    /// The embedded IPFS RPC API's listen address.
    #[arg(long, default_value = "127.0.0.1:5001")]
    ipfs_api_addr: SocketAddr,
    /// The embedded IPFS gateway's listen address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    gateway_addr: SocketAddr,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct StartArgs {
    #[command(flatten)]
    home: HomeArg,
    /// Use a Kubo daemon's RPC API (such as http://127.0.0.1:5001) instead
    /// of the embedded IPFS repo.
    #[arg(long)]
    ipfs_api: Option<String>,
    /// gRPC listen address (overrides the config file).
    #[arg(long)]
    grpc_addr: Option<SocketAddr>,
    /// Metrics listen address (overrides the config file).
    #[arg(long)]
    metrics_addr: Option<SocketAddr>,
    /// Answer availability challenges aimed at this keyring key from the
    /// node's content store.
    #[arg(long, value_name = "KEY")]
    respond_as: Option<String>,
    /// Verify new gradients against this vault and submit the results.
    #[arg(long, value_name = "FILE")]
    vault: Option<PathBuf>,
    /// The validator key that signs verification results (default:
    /// `validator`).
    #[arg(long, value_name = "KEY")]
    verify_as: Option<String>,
    /// How long the verification cache keeps fetched blocks and parsed
    /// headers, s (overrides the config file; default 3600).
    #[arg(long, value_name = "SECS")]
    verify_cache_ttl: Option<u64>,
    /// Most block bytes the verification cache holds (overrides the config
    /// file; default 256 MiB).
    #[arg(long, value_name = "BYTES")]
    verify_cache_max_bytes: Option<u64>,
    /// Run the aggregator role: aggregate every round once its challenges
    /// close and register the result as the next model version, signed by
    /// this validator key (needs the embedded IPFS API or --ipfs-api).
    #[arg(long, value_name = "KEY")]
    aggregate_as: Option<String>,
    /// Adam's learning rate for the aggregator when the model has no
    /// training state yet.
    #[arg(long, default_value_t = r3mes_aggregate::AdamConfig::default().lr)]
    aggregate_lr: f64,
    /// Serve the keeper to CometBFT over ABCI at this address (such as
    /// 127.0.0.1:26658) instead of producing blocks: CometBFT's genesis
    /// carries the keeper's genesis JSON as `app_state`. The content store
    /// (unpinning what retention releases) and metrics run as without it;
    /// gRPC, the mempool, the duties and the aggregator do not.
    #[arg(long, value_name = "ADDR")]
    abci: Option<SocketAddr>,
    /// Initialise a home that has no config first, with `node init`'s
    /// defaults (chain r3mes-local-1, 1 s blocks, dev1..dev3).
    #[arg(long)]
    init: bool,
}

pub fn run(command: NodeCommand) -> Result<()> {
    match command {
        NodeCommand::Init(args) => run_init(args),
        NodeCommand::Start(args) => run_start(args),
    }
}

fn run_init(args: InitArgs) -> Result<()> {
    let home = args.home.home();
    let mut config = NodeConfig {
        grpc_addr: args.grpc_addr,
        metrics_addr: args.metrics_addr,
        block_time_ms: args.block_time_ms,
        ..NodeConfig::default()
    };
    config.ipfs = IpfsConfig::Embedded {
        serve_http: !args.no_ipfs_http,
        api_addr: args.ipfs_api_addr,
        gateway_addr: args.gateway_addr,
    };
    let options = InitOptions {
        chain_id: args.chain_id,
        dev_accounts: args.dev_accounts,
        config,
        params: None,
    };
    let report =
        init(&home, &options).with_context(|| format!("initialising {}", home.root().display()))?;
    if args.json {
        let keys: Vec<_> = std::iter::once(&report.validator)
            .chain(&report.dev_accounts)
            .collect();
        let out = serde_json::json!({
            "home": home.root(),
            "chain_id": report.chain_id,
            "validator": report.validator.address,
            "keys": keys,
        });
        println!("{out}");
    } else {
        println!(
            "initialised {} for chain {}",
            home.root().display(),
            report.chain_id
        );
        println!("validator  {}", report.validator.address);
        for k in &report.dev_accounts {
            println!("{:<10} {}", k.name, k.address);
        }
    }
    Ok(())
}

/// Serves the home's keeper to CometBFT, with the content store and
/// metrics of `config` (`r3mes_node::abci`), until SIGINT or SIGTERM.
fn run_abci(home: &Home, config: &NodeConfig, addr: SocketAddr, args: &StartArgs) -> Result<()> {
    // These submit transactions through the built-in mempool, which a node
    // under CometBFT does not run.
    for (flag, set) in [
        ("--respond-as", args.respond_as.is_some()),
        ("--vault", args.vault.is_some()),
        ("--verify-as", args.verify_as.is_some()),
        ("--aggregate-as", args.aggregate_as.is_some()),
    ] {
        if set {
            anyhow::bail!(
                "{flag} is not available with --abci: the node's duties and the aggregator \
                 submit through the built-in mempool, which does not run under CometBFT"
            );
        }
    }
    if config.duties.respond_as.is_some() || config.duties.vault.is_some() {
        eprintln!(
            "warning: the config's duties (respond_as, vault) do not run under CometBFT (--abci)"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let mut signals = ShutdownSignals::install()?;
        let node = r3mes_node::abci::start(home, config, addr)
            .await
            .context("starting the node under CometBFT")?;
        // One line a supervisor (or a test) can read for the bound ports.
        let ipfs = node
            .ipfs_api_url()
            .map(|url| format!(" ipfs-api {url}"))
            .unwrap_or_default();
        println!(
            "node started: ABCI {} metrics http://{}/metrics{ipfs}",
            node.abci_addr(),
            node.metrics_addr()
        );
        let reason = tokio::select! {
            name = signals.recv() => name,
            () = node.stopped() => "a fatal error",
        };
        eprintln!("stopping the ABCI server ({reason})");
        node.shutdown().await.context("stopping the node")?;
        anyhow::Ok(())
    })
}

fn run_start(args: StartArgs) -> Result<()> {
    let home = args.home.home();
    if !home.config().exists() && args.init {
        let options = InitOptions {
            chain_id: "r3mes-local-1".into(),
            dev_accounts: 3,
            config: NodeConfig::default(),
            params: None,
        };
        let report = init(&home, &options)
            .with_context(|| format!("initialising {}", home.root().display()))?;
        // Stdout's first line stays the "node started" line supervisors read.
        eprintln!(
            "initialised {} for chain {}: validator {}, {}",
            home.root().display(),
            report.chain_id,
            report.validator.address,
            report
                .dev_accounts
                .iter()
                .map(|k| format!("{} {}", k.name, k.address))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if !home.config().exists() {
        anyhow::bail!(
            "loading the config of {}: {} does not exist (run `r3mes node init` first, or start with --init)",
            home.root().display(),
            home.config().display()
        );
    }
    let config = NodeConfig::load(&home.config())
        .with_context(|| format!("loading the config of {}", home.root().display()))?;
    let mut config = r3mes_node::node::with_ipfs_api(config, args.ipfs_api.clone());
    if let Some(addr) = args.grpc_addr {
        config.grpc_addr = addr;
    }
    if let Some(addr) = args.metrics_addr {
        config.metrics_addr = addr;
    }
    if let Some(addr) = args.abci {
        return run_abci(&home, &config, addr, &args);
    }
    if args.respond_as.is_some() {
        config.duties.respond_as = args.respond_as;
    }
    if args.vault.is_some() {
        config.duties.vault = args.vault;
    }
    if args.verify_as.is_some() {
        config.duties.verify_as = args.verify_as;
    }
    if let Some(secs) = args.verify_cache_ttl {
        config.duties.verify_cache_ttl_secs = secs;
    }
    if let Some(bytes) = args.verify_cache_max_bytes {
        config.duties.verify_cache_max_bytes = bytes;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let mut signals = ShutdownSignals::install()?;
        let node = r3mes_node::node::start(&home, config)
            .await
            .context("starting the node")?;
        // One line a supervisor (or a test) can read for the bound ports.
        match node.ipfs_api_url() {
            Some(ipfs) => println!(
                "node started: gRPC {} metrics http://{}/metrics ipfs-api {ipfs}",
                node.grpc_addr(),
                node.metrics_addr()
            ),
            None => println!(
                "node started: gRPC {} metrics http://{}/metrics",
                node.grpc_addr(),
                node.metrics_addr()
            ),
        }
        let aggregator = match &args.aggregate_as {
            Some(name) => {
                let key = crate::keys_cmd::secret_key(&home, name)?;
                let ipfs = args
                    .ipfs_api
                    .clone()
                    .or_else(|| node.ipfs_api_url())
                    .context("--aggregate-as needs an IPFS RPC API: the embedded one served over HTTP, or --ipfs-api")?;
                let url = format!("http://{}", node.grpc_addr());
                let adam = r3mes_aggregate::AdamConfig {
                    lr: args.aggregate_lr,
                    ..r3mes_aggregate::AdamConfig::default()
                };
                Some(tokio::spawn(crate::aggregate_cmd::role(url, ipfs, key, adam)))
            }
            None => None,
        };
        let reason = tokio::select! {
            name = signals.recv() => name,
            () = node.stopped() => "a fatal error",
        };
        if let Some(task) = aggregator {
            task.abort();
        }
        eprintln!("stopping the node ({reason})");
        node.shutdown().await.context("stopping the node")?;
        anyhow::Ok(())
    })
}
