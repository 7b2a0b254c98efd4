//! `r3mes ipfs ...`: the content-layer commands.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{ArgAction, Args, Subcommand};
use r3mes_ipfs::{AddOptions, AddSource, PinMode, Repo, cids};
use r3mes_kubo::{ClientOptions, KuboClient};

/// Where commands find content: a repo directory, or a daemon's API.
#[derive(Args, Clone)]
pub(crate) struct Target {
    /// Repo directory (default: $R3MES_HOME/ipfs, or ~/.r3mes/ipfs).
    #[arg(long, global = true)]
    repo: Option<PathBuf>,
    /// Talk to a Kubo (or embedded) daemon's RPC API instead of opening the repo.
    #[arg(long, global = true)]
    api: Option<String>,
}

#[derive(Subcommand)]
pub enum IpfsCommand {
    /// Import a file as UnixFS and print its CID (the same CID `ipfs add` gives).
    Add(AddArgs),
    /// Write a file's bytes (or a range of them) to stdout.
    Cat(CatArgs),
    /// Manage pins.
    #[command(subcommand)]
    Pin(PinCommand),
    /// Remove every block not reachable from a pin.
    Gc(TargetOnly),
    /// Export a DAG as a CAR v1 file.
    Export(ExportArgs),
    /// Import a CAR v1 file (every block verified; pins its roots).
    Import(ImportArgs),
    /// Run the embedded IPFS daemon: Kubo RPC API and trustless gateway.
    Daemon(DaemonArgs),
    /// Start the managed sidecar (Kubo if a binary is found, else the embedded daemon).
    Start(SidecarArgs),
    /// Stop the managed sidecar (SIGTERM, then SIGKILL after a timeout).
    Stop(SidecarArgs),
    /// Report whether the managed sidecar runs; cleans up after a crash.
    Status(SidecarArgs),
    /// The Mutable File System (the seed's directory layout): ls, stat, mkdir, cp, mv, rm, read, flush.
    #[command(subcommand)]
    Files(crate::ipfs_files::FilesCommand),
}

#[derive(Args)]
pub struct SidecarArgs {
    /// Kubo binary (default: $R3MES_KUBO_BIN, else `ipfs` on PATH, else the embedded daemon).
    #[arg(long)]
    kubo_bin: Option<PathBuf>,
    /// Use the embedded daemon even when Kubo is installed.
    #[arg(long)]
    embedded: bool,
    /// RPC API port.
    #[arg(long, default_value_t = r3mes_ipfs_http::DEFAULT_API_PORT)]
    api_port: u16,
    /// Gateway port.
    #[arg(long, default_value_t = r3mes_ipfs_http::DEFAULT_GATEWAY_PORT)]
    gateway_port: u16,
    /// Swarm port (Kubo only).
    #[arg(long, default_value_t = 4001)]
    swarm_port: u16,
    /// Stay in the foreground and stop the daemon when interrupted (start only).
    #[arg(long)]
    foreground: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct DaemonArgs {
    /// Port of the RPC API on 127.0.0.1.
    #[arg(long, default_value_t = r3mes_ipfs_http::DEFAULT_API_PORT)]
    api_port: u16,
    /// Port of the trustless gateway on 127.0.0.1.
    #[arg(long, default_value_t = r3mes_ipfs_http::DEFAULT_GATEWAY_PORT)]
    gateway_port: u16,
    /// Repo directory (default: $R3MES_HOME/ipfs, or ~/.r3mes/ipfs).
    #[arg(long)]
    repo: Option<PathBuf>,
}

#[derive(Args)]
pub struct TargetOnly {
    #[command(flatten)]
    target: Target,
}

#[derive(Args)]
pub struct AddArgs {
    /// The file to add.
    file: PathBuf,
    /// Only compute the CID; store nothing.
    #[arg(long, short = 'n')]
    only_hash: bool,
    /// CID version: 0 (Qm..., default) or 1 (bafy..., raw leaves).
    #[arg(long, default_value_t = 0)]
    cid_version: u8,
    /// Raw leaves (default: off for CIDv0, on for CIDv1).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    raw_leaves: Option<bool>,
    /// Pin the root (default true; `--pin=false` to skip).
    #[arg(long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pin: bool,
    /// Chunker, as Kubo spells it: `size-N`.
    #[arg(long, default_value = "size-262144")]
    chunker: String,
    #[command(flatten)]
    target: Target,
}

#[derive(Args)]
pub struct CatArgs {
    /// CID of a UnixFS file.
    cid: String,
    /// First byte to write.
    #[arg(long, default_value_t = 0)]
    offset: u64,
    /// Bytes to write (default: to the end).
    #[arg(long)]
    length: Option<u64>,
    /// Print `blocks=N bytes=M` (what the read fetched) to stderr.
    #[arg(long)]
    stats: bool,
    #[command(flatten)]
    target: Target,
}

#[derive(Subcommand)]
pub enum PinCommand {
    /// Pin a root (recursive unless --direct).
    Add {
        /// CID to pin.
        cid: String,
        /// Pin only the root block.
        #[arg(long)]
        direct: bool,
        /// A name for the pin.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Remove a pin.
    Rm {
        /// CID to unpin.
        cid: String,
        #[command(flatten)]
        target: Target,
    },
    /// List pins: `<cid> <recursive|direct> [name]`.
    Ls {
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Args)]
pub struct ExportArgs {
    /// Root CID.
    cid: String,
    /// Output CAR file.
    #[arg(short = 'o', long)]
    output: PathBuf,
    #[command(flatten)]
    target: Target,
}

#[derive(Args)]
pub struct ImportArgs {
    /// CAR v1 file.
    file: PathBuf,
    /// Do not pin the roots.
    #[arg(long)]
    no_pin: bool,
    #[command(flatten)]
    target: Target,
}

/// Files at least this large show a progress bar when stderr is a terminal.
const PROGRESS_MIN_BYTES: u64 = 64 << 20;

/// The r3mes home: `$R3MES_HOME`, or `~/.r3mes`.
pub fn home_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("R3MES_HOME") {
        return PathBuf::from(home);
    }
    let user_home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    user_home.join(".r3mes")
}

impl Target {
    fn repo_dir(&self) -> PathBuf {
        self.repo.clone().unwrap_or_else(|| home_dir().join("ipfs"))
    }

    fn open_repo(&self) -> Result<Repo> {
        let dir = self.repo_dir();
        Repo::open(&dir).with_context(|| format!("opening repo {}", dir.display()))
    }

    /// The repo itself, or the API of the daemon that holds it: `--api` wins;
    /// otherwise a daemon that answers at the address in `<repo>/api` (as Kubo's
    /// CLI finds its daemon); otherwise the repo, opened here.
    pub(crate) fn backend(&self) -> Result<Backend> {
        if let Some(api) = &self.api {
            return Backend::remote(
                KuboClient::new(api).with_context(|| format!("using API {api}"))?,
            );
        }
        let dir = self.repo_dir();
        if let Some(probe) =
            KuboClient::from_repo_api_file_with_options(&dir, ClientOptions::probe())
        {
            let runtime = runtime()?;
            if runtime.block_on(probe.id()).is_ok() {
                let client = KuboClient::new(probe.base_url())?;
                return Ok(Backend::Remote(client, runtime));
            }
            tracing::info!(
                "{}/api names no running daemon; opening the repo",
                dir.display()
            );
        }
        Ok(Backend::Local(self.open_repo()?))
    }
}

/// Where a command runs.
pub(crate) enum Backend {
    /// The repo, opened by this process.
    Local(Repo),
    /// A daemon's RPC API (Kubo or `r3mes ipfs daemon`).
    Remote(KuboClient, tokio::runtime::Runtime),
}

impl Backend {
    fn remote(client: KuboClient) -> Result<Self> {
        Ok(Backend::Remote(client, runtime()?))
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn parse_chunker(spec: &str) -> Result<usize> {
    let size = spec
        .strip_prefix("size-")
        .and_then(|n| n.parse::<usize>().ok())
        .with_context(|| format!("unsupported chunker {spec:?} (use size-N)"))?;
    Ok(size)
}

/// Runs one `r3mes ipfs` command.
pub fn run(command: IpfsCommand) -> Result<()> {
    match command {
        IpfsCommand::Add(args) => add(args),
        IpfsCommand::Cat(args) => cat(args),
        IpfsCommand::Pin(cmd) => pin(cmd),
        IpfsCommand::Files(cmd) => crate::ipfs_files::run(cmd),
        IpfsCommand::Gc(args) => {
            let report = match args.target.backend()? {
                Backend::Local(repo) => repo.gc()?,
                Backend::Remote(client, rt) => rt.block_on(client.repo_gc())?,
            };
            let mut out = std::io::stdout().lock();
            for cid in &report.removed {
                writeln!(out, "removed {cid}")?;
            }
            eprintln!(
                "freed {} blocks, {} bytes",
                report.removed.len(),
                report.freed_bytes
            );
            Ok(())
        }
        IpfsCommand::Export(args) => {
            let cid = cids::parse(&args.cid)?;
            let backend = args.target.backend()?;
            write_atomically(&args.output, |file| match &backend {
                Backend::Local(repo) => Ok(repo.export_car(&cid, file)?),
                Backend::Remote(client, rt) => rt.block_on(async {
                    let mut out = tokio::fs::File::from_std(file.try_clone()?);
                    let written = client.dag_export_to(&cid, &mut out).await?;
                    anyhow::Ok(written)
                }),
            })
            .with_context(|| format!("exporting {cid}"))?;
            Ok(())
        }
        IpfsCommand::Daemon(args) => daemon(args),
        IpfsCommand::Start(args) => sidecar(SidecarAction::Start, args),
        IpfsCommand::Stop(args) => sidecar(SidecarAction::Stop, args),
        IpfsCommand::Status(args) => sidecar(SidecarAction::Status, args),
        IpfsCommand::Import(args) => {
            let context = || format!("importing {}", args.file.display());
            let roots = match args.target.backend()? {
                Backend::Local(repo) => {
                    let file = std::fs::File::open(&args.file)
                        .with_context(|| format!("opening {}", args.file.display()))?;
                    let mut reader = std::io::BufReader::new(file);
                    let imported = repo
                        .import_car(&mut reader, !args.no_pin)
                        .with_context(context)?;
                    eprintln!("imported {} blocks", imported.blocks);
                    imported.roots
                }
                Backend::Remote(client, rt) => {
                    anyhow::ensure!(!args.no_pin, "--no-pin is not supported through the API");
                    rt.block_on(client.dag_import_file(&args.file))
                        .with_context(context)?
                }
            };
            for root in &roots {
                println!("{root}");
            }
            Ok(())
        }
    }
}

fn add(args: AddArgs) -> Result<()> {
    let options = AddOptions {
        cid_version: args.cid_version,
        raw_leaves: args.raw_leaves,
        pin: args.pin,
        only_hash: args.only_hash,
        chunk_size: parse_chunker(&args.chunker)?,
    };
    let path = &args.file;
    if !path.is_file() {
        anyhow::bail!("adding {}: no such file", path.display());
    }
    let backend = if args.only_hash && args.target.api.is_none() {
        Backend::Local(Repo::in_memory())
    } else {
        args.target.backend()?
    };
    let root = match backend {
        Backend::Local(repo) => add_local(&repo, path, &options)?,
        Backend::Remote(client, rt) => {
            rt.block_on(client.add(AddSource::File(path.clone()), &options))
                .with_context(|| format!("adding {}", path.display()))?
                .cid
        }
    };
    println!("{root}");
    Ok(())
}

/// Imports a file into an open repo, with a progress bar on a terminal.
fn add_local(repo: &Repo, path: &std::path::Path, options: &AddOptions) -> Result<cid::Cid> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let reader = std::io::BufReader::with_capacity(1 << 20, file);
    let imported = if std::io::stderr().is_terminal() && size >= PROGRESS_MIN_BYTES {
        let bar = indicatif::ProgressBar::new(size).with_style(
            indicatif::ProgressStyle::with_template(
                "{bytes}/{total_bytes} {wide_bar} {binary_bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let result = repo.add(&mut bar.wrap_read(reader), options);
        bar.finish_and_clear();
        result
    } else {
        repo.add(&mut { reader }, options)
    }
    .with_context(|| format!("adding {}", path.display()))?;
    Ok(imported.root)
}

fn cat(args: CatArgs) -> Result<()> {
    let cid = cids::parse(&args.cid)?;
    let context = || format!("reading {cid}");
    let stats = match args.target.backend()? {
        Backend::Local(repo) => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
            let stats = repo
                .cat(&cid, args.offset, args.length, &mut out)
                .with_context(context)?;
            out.flush()?;
            Some(stats)
        }
        Backend::Remote(client, rt) if args.stats => {
            let (bytes, stats) = rt
                .block_on(client.cat_with_stats(&cid, args.offset, args.length))
                .with_context(context)?;
            std::io::stdout().lock().write_all(&bytes)?;
            stats
        }
        Backend::Remote(client, rt) => {
            rt.block_on(async {
                let mut out = tokio::io::stdout();
                client
                    .cat_to(&cid, args.offset, args.length, &mut out)
                    .await
            })
            .with_context(context)?;
            None
        }
    };
    if args.stats {
        match stats {
            Some(stats) => eprintln!("blocks={} bytes={}", stats.blocks, stats.bytes),
            None => eprintln!("blocks=? bytes=? (the daemon does not report what it fetched)"),
        }
    }
    Ok(())
}

fn pin(command: PinCommand) -> Result<()> {
    match command {
        PinCommand::Add {
            cid,
            direct,
            name,
            target,
        } => {
            let cid = cids::parse(&cid)?;
            let mode = if direct {
                PinMode::Direct
            } else {
                PinMode::Recursive
            };
            match target.backend()? {
                Backend::Local(repo) => repo.pin_add(&cid, mode, name.as_deref())?,
                Backend::Remote(client, rt) => {
                    rt.block_on(client.pin_add(&cid, mode, name.as_deref()))?
                }
            }
            println!("pinned {cid} {}", mode.as_str());
        }
        PinCommand::Rm { cid, target } => {
            let cid = cids::parse(&cid)?;
            match target.backend()? {
                Backend::Local(repo) => repo.pin_rm(&cid)?,
                Backend::Remote(client, rt) => rt.block_on(client.pin_rm(&cid))?,
            }
            println!("unpinned {cid}");
        }
        PinCommand::Ls { target } => {
            let pins = match target.backend()? {
                Backend::Local(repo) => repo.pin_ls()?,
                Backend::Remote(client, rt) => rt.block_on(client.pin_ls())?,
            };
            for pin in pins {
                match pin.name {
                    Some(name) => println!("{} {} {name}", pin.cid, pin.mode.as_str()),
                    None => println!("{} {}", pin.cid, pin.mode.as_str()),
                }
            }
        }
    }
    Ok(())
}

/// Writes a file through a temporary sibling renamed into place, so a failure leaves nothing half-written.
fn write_atomically(
    path: &std::path::Path,
    write: impl FnOnce(&mut std::fs::File) -> Result<u64>,
) -> Result<u64> {
    let tmp = path.with_extension("car.tmp");
    let mut file =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let result = write(&mut file).and_then(|n| {
        file.sync_all()?;
        Ok(n)
    });
    match result {
        Ok(n) => {
            std::fs::rename(&tmp, path)
                .with_context(|| format!("renaming into {}", path.display()))?;
            Ok(n)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

fn daemon(args: DaemonArgs) -> Result<()> {
    let target = Target {
        repo: args.repo,
        api: None,
    };
    let repo = target.open_repo()?;
    let config = r3mes_ipfs_http::DaemonConfig::loopback(args.api_port, args.gateway_port);
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let signals = r3mes_ipfs_http::ShutdownSignals::install()?;
        let handle = r3mes_ipfs_http::Daemon::start(repo, config).await?;
        println!("repo: {}", target.repo_dir().display());
        println!("RPC API server listening on {}", handle.api_multiaddr());
        println!("Gateway server listening on {}", handle.gateway_url());
        println!("Daemon is ready");
        handle.run_until_signal(signals).await?;
        anyhow::Ok(())
    })
}

enum SidecarAction {
    Start,
    Stop,
    Status,
}

fn sidecar(action: SidecarAction, args: SidecarArgs) -> Result<()> {
    use r3mes_kubo::sidecar::{
        DaemonCommand, Ports, Sidecar, SidecarConfig, SidecarStatus, StopOutcome,
    };

    let mut config = SidecarConfig::new(home_dir());
    config.ports = Ports {
        api: args.api_port,
        gateway: args.gateway_port,
        swarm: args.swarm_port,
    };
    let sidecar = Sidecar::new(config.clone());
    runtime()?.block_on(async {
        match action {
            SidecarAction::Start => {
                let exe = std::env::current_exe().context("locating the r3mes binary")?;
                let command = if args.embedded {
                    DaemonCommand::embedded(&exe, &config)
                } else {
                    DaemonCommand::auto(args.kubo_bin.as_deref(), &exe, &config)?
                };
                if args.foreground {
                    let outcome = sidecar
                        .run_foreground(&command, |info| {
                            eprintln!("{} daemon (pid {}) ready at {}; Ctrl-C stops it", info.engine.as_str(), info.pid, info.api_url);
                        })
                        .await?;
                    return if args.json { print_json(&outcome) } else { Ok(()) };
                }
                let info = sidecar.start(&command).await?;
                if args.json {
                    return print_json(&info);
                }
                if info.engine.as_str() != "kubo" {
                    eprintln!("no Kubo binary found (--kubo-bin, R3MES_KUBO_BIN or `ipfs` on PATH): running the embedded daemon");
                }
                println!("started {} daemon, pid {}, API {}, repo {}", info.engine.as_str(), info.pid, info.api_url, info.repo.display());
            }
            SidecarAction::Stop => {
                let outcome = sidecar.stop().await?;
                if args.json {
                    return print_json(&outcome);
                }
                match outcome {
                    StopOutcome::Stopped { info, forced } => println!(
                        "stopped {} daemon, pid {}{}",
                        info.engine.as_str(),
                        info.pid,
                        if forced { " (killed after the timeout)" } else { "" }
                    ),
                    StopOutcome::WasStale { info, removed } => {
                        println!("not running: pid {} had died; removed {} stale file(s)", info.pid, removed.len())
                    }
                    StopOutcome::NotRunning => println!("not running"),
                }
            }
            SidecarAction::Status => {
                let status = sidecar.status().await?;
                if args.json {
                    return print_json(&status);
                }
                match status {
                    SidecarStatus::Running { info, peer_id, agent_version } => println!(
                        "running: {} daemon, pid {}, API {}, peer {peer_id}, agent {agent_version}",
                        info.engine.as_str(),
                        info.pid,
                        info.api_url
                    ),
                    SidecarStatus::Unresponsive { info } => {
                        println!("unresponsive: pid {} is alive but its API {} does not answer", info.pid, info.api_url)
                    }
                    SidecarStatus::Stale { info, removed } => {
                        println!("stopped (crashed): pid {} is gone; removed {} stale file(s)", info.pid, removed.len())
                    }
                    SidecarStatus::Stopped => println!("stopped"),
                }
            }
        }
        anyhow::Ok(())
    })
}

fn print_json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}
