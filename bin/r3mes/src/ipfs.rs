//! `r3mes ipfs ...`: the content-layer commands.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{ArgAction, Args, Subcommand};
use r3mes_ipfs::{AddOptions, PinMode, Repo, cids};

/// Where commands find content: a repo directory, or a daemon's API.
#[derive(Args, Clone)]
pub struct Target {
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
        IpfsCommand::Gc(args) => {
            let report = args.target.open_repo()?.gc()?;
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
            let repo = args.target.open_repo()?;
            write_atomically(&args.output, |file| Ok(repo.export_car(&cid, file)?))
                .with_context(|| format!("exporting {cid}"))?;
            Ok(())
        }
        IpfsCommand::Import(args) => {
            let repo = args.target.open_repo()?;
            let file = std::fs::File::open(&args.file)
                .with_context(|| format!("opening {}", args.file.display()))?;
            let mut reader = std::io::BufReader::new(file);
            let imported = repo
                .import_car(&mut reader, !args.no_pin)
                .with_context(|| format!("importing {}", args.file.display()))?;
            for root in &imported.roots {
                println!("{root}");
            }
            eprintln!("imported {} blocks", imported.blocks);
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
    let imported = if args.only_hash {
        Repo::in_memory().add_file(path, &options)
    } else {
        args.target.open_repo()?.add_file(path, &options)
    }
    .with_context(|| format!("adding {}", path.display()))?;
    println!("{}", imported.root);
    Ok(())
}

fn cat(args: CatArgs) -> Result<()> {
    let cid = cids::parse(&args.cid)?;
    let repo = args.target.open_repo()?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    let stats = repo
        .cat(&cid, args.offset, args.length, &mut out)
        .with_context(|| format!("reading {cid}"))?;
    out.flush()?;
    if args.stats {
        eprintln!("blocks={} bytes={}", stats.blocks, stats.bytes);
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
            target.open_repo()?.pin_add(&cid, mode, name.as_deref())?;
            println!("pinned {cid} {}", mode.as_str());
        }
        PinCommand::Rm { cid, target } => {
            let cid = cids::parse(&cid)?;
            target.open_repo()?.pin_rm(&cid)?;
            println!("unpinned {cid}");
        }
        PinCommand::Ls { target } => {
            for pin in target.open_repo()?.pin_ls()? {
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
