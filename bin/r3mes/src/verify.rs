//! `r3mes verify CID --vault FILE` (tolerant verification by hand) and
//! `r3mes vault ...` (make and list a validator's secret vault).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use r3mes_ipfs::{ContentStore, EmbeddedStore, Repo, cids};
use r3mes_kubo::{ClientOptions, KuboClient};
use r3mes_tensor::Limits;
use r3mes_verify::{
    ChunkRef, DEFAULT_THRESHOLD_PPM, EntryOptions, FlatOrder, Placement, Report, Vault, VaultEntry,
    Verifier, VerifierConfig, VerifyCache, entry_from_file,
};

#[derive(Args)]
pub struct VerifyArgs {
    /// CID of the gradient to verify.
    cid: String,
    /// The vault file.
    #[arg(long)]
    vault: PathBuf,
    /// Vault entry to use (needed when the vault has more than one).
    #[arg(long)]
    entry: Option<String>,
    /// Kubo (or `r3mes ipfs daemon`) RPC API to read from instead of the repo.
    #[arg(long)]
    api: Option<String>,
    /// Repo directory (default: $R3MES_HOME/ipfs, or ~/.r3mes/ipfs).
    #[arg(long)]
    repo: Option<PathBuf>,
    /// Seconds one block may take to arrive.
    #[arg(long, default_value_t = 30)]
    block_timeout: u64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
pub enum VaultCommand {
    /// Add an entry for a chunk to a vault file (created with mode 0600 when absent).
    New(NewArgs),
    /// List a vault's entries (ids, chunks, index counts, commitments; not the values).
    List {
        /// The vault file.
        vault: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct NewArgs {
    /// The reference gradient: this validator's own gradient of the chunk (any format).
    gradient: PathBuf,
    /// The vault file to add the entry to.
    #[arg(long)]
    out: PathBuf,
    /// CID of the chunk's data.
    #[arg(long)]
    chunk_hash: String,
    /// Chunk id within its shard.
    #[arg(long)]
    chunk_id: u64,
    /// The chunk's shard.
    #[arg(long)]
    shard_id: u64,
    /// Entry id (default: shard<S>-chunk<C>).
    #[arg(long)]
    id: Option<String>,
    /// Cosine threshold in ppm.
    #[arg(long, default_value_t = DEFAULT_THRESHOLD_PPM, allow_negative_numbers = true)]
    threshold_ppm: i64,
    /// Secret windows the indices are drawn in.
    #[arg(long, default_value_t = Placement::default().windows)]
    windows: u32,
    /// Indices per window.
    #[arg(long, default_value_t = Placement::default().per_window)]
    per_window: u32,
    /// Window width in elements.
    #[arg(long, default_value_t = Placement::default().span)]
    span: u64,
    /// Flattening order the indices refer to: canonical or file.
    #[arg(long, default_value = "canonical")]
    order: String,
    /// The model version the reference gradient was computed with: the entry
    /// then checks only gradients of rounds that train from that version.
    #[arg(long)]
    model_version: Option<u64>,
    /// Secret seed, 64 hex digits (default: fresh from the OS; keep it secret).
    #[arg(long)]
    seed: Option<String>,
    /// Print the new entry's summary as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run_verify(args: VerifyArgs) -> Result<()> {
    let cid = cids::parse(&args.cid)?;
    let vault = Vault::load(&args.vault)?;
    let entry = pick_entry(&vault, args.entry.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = runtime.block_on(async {
        let store = open_store(args.api.as_deref(), args.repo).await?;
        let config = VerifierConfig {
            block_timeout: Duration::from_secs(args.block_timeout),
            ..VerifierConfig::default()
        };
        let verifier = Verifier::new(store, VerifyCache::default(), config);
        anyhow::Ok(verifier.verify(&cid, entry).await?)
    })?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_report(&report);
    }
    if !report.passed {
        bail!(
            "gradient {cid} failed verification: {}",
            report.reason.as_deref().unwrap_or("below the threshold")
        );
    }
    Ok(())
}

pub(crate) fn pick_entry<'a>(vault: &'a Vault, id: Option<&str>) -> Result<&'a VaultEntry> {
    match (id, vault.entries.as_slice()) {
        (Some(id), _) => vault
            .entry(id)
            .with_context(|| format!("the vault has no entry {id:?}")),
        (None, [only]) => Ok(only),
        (None, []) => bail!("the vault has no entries"),
        (None, entries) => {
            let ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).take(10).collect();
            bail!(
                "the vault has {} entries: name one with --entry (such as {})",
                entries.len(),
                ids.join(", ")
            )
        }
    }
}

/// `--api` wins; otherwise a daemon that holds the repo (its `api` file
/// answers); otherwise the repo, opened here.
pub(crate) async fn open_store(
    api: Option<&str>,
    repo: Option<PathBuf>,
) -> Result<Arc<dyn ContentStore>> {
    if let Some(api) = api {
        let client = KuboClient::new(api).with_context(|| format!("using API {api}"))?;
        return Ok(Arc::new(client));
    }
    let dir = repo.unwrap_or_else(|| crate::ipfs::home_dir().join("ipfs"));
    if let Some(probe) = KuboClient::from_repo_api_file_with_options(&dir, ClientOptions::probe())
        && probe.id().await.is_ok()
    {
        return Ok(Arc::new(KuboClient::new(probe.base_url())?));
    }
    let repo = Repo::open(&dir).with_context(|| format!("opening repo {}", dir.display()))?;
    Ok(Arc::new(EmbeddedStore::new(repo)))
}

fn print_report(r: &Report) {
    let verdict = if r.passed { "PASS" } else { "FAIL" };
    println!("{verdict} {} (entry {})", r.gradient, r.entry);
    match r.cosine {
        Some(c) => println!(
            "cosine: {c:.6} ({} ppm, threshold {} ppm)",
            r.cosine_ppm, r.threshold_ppm
        ),
        None => println!("cosine: undefined (threshold {} ppm)", r.threshold_ppm),
    }
    if let Some(reason) = &r.reason {
        println!("reason: {reason}");
    }
    println!(
        "read: {} via {}, {} indices",
        r.format.unwrap_or("unknown format"),
        match r.method {
            r3mes_verify::Method::RangeRead => "range reads",
            r3mes_verify::Method::FullDownload => "full download",
        },
        r.indices
    );
    println!(
        "bytes_fetched: {} of {} ({:.3} %) in {} blocks; {} bytes from cache",
        r.bytes_fetched,
        r.file_size,
        r.fetched_ratio() * 100.0,
        r.blocks_fetched,
        r.bytes_from_cache
    );
    println!("vault_commitment: {}", r.vault_commitment);
}

pub fn run_vault(command: VaultCommand) -> Result<()> {
    match command {
        VaultCommand::New(args) => new_entry(args),
        VaultCommand::List { vault, json } => list(&vault, json),
    }
}

fn new_entry(args: NewArgs) -> Result<()> {
    let order = match args.order.as_str() {
        "canonical" => FlatOrder::Canonical,
        "file" => FlatOrder::File,
        other => bail!("unknown order {other:?} (use canonical or file)"),
    };
    let seed = match &args.seed {
        None => None,
        Some(text) => {
            let bytes = hex::decode(text).context("--seed is not hex")?;
            Some(
                <[u8; 32]>::try_from(bytes.as_slice())
                    .map_err(|_| anyhow::anyhow!("--seed must be 32 bytes (64 hex digits)"))?,
            )
        }
    };
    let mut vault = if args.out.exists() {
        Vault::load(&args.out)?
    } else {
        Vault::default()
    };
    let options = EntryOptions {
        id: args
            .id
            .unwrap_or_else(|| format!("shard{}-chunk{}", args.shard_id, args.chunk_id)),
        chunk: ChunkRef {
            data_hash: args.chunk_hash,
            chunk_id: args.chunk_id,
            shard_id: args.shard_id,
        },
        placement: Placement {
            windows: args.windows,
            per_window: args.per_window,
            span: args.span,
        },
        threshold_ppm: args.threshold_ppm,
        order,
        seed,
    };
    if vault.entry(&options.id).is_some() {
        bail!(
            "{} already has an entry {:?}",
            args.out.display(),
            options.id
        );
    }
    let reference = std::fs::read(&args.gradient)
        .with_context(|| format!("reading {}", args.gradient.display()))?;
    let mut entry = entry_from_file(&reference, &options, &Limits::default())
        .with_context(|| format!("making a vault entry from {}", args.gradient.display()))?;
    entry.model_version = args.model_version;
    let summary = summary(&entry);
    vault.entries.push(entry);
    vault.save(&args.out)?;
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!(
            "added entry {} ({} indices in {} windows, threshold {} ppm) to {}",
            summary.id,
            summary.indices,
            args.windows,
            summary.threshold_ppm,
            args.out.display()
        );
    }
    Ok(())
}

#[derive(serde::Serialize)]
struct Summary {
    id: String,
    chunk_hash: String,
    chunk_id: u64,
    shard_id: u64,
    elements: u64,
    indices: usize,
    threshold_ppm: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    model_version: Option<u64>,
    commitment: String,
}

fn summary(entry: &VaultEntry) -> Summary {
    Summary {
        id: entry.id.clone(),
        chunk_hash: entry.chunk.data_hash.clone(),
        chunk_id: entry.chunk.chunk_id,
        shard_id: entry.chunk.shard_id,
        elements: entry.elements,
        indices: entry.indices.len(),
        threshold_ppm: entry.threshold_ppm,
        model_version: entry.model_version,
        commitment: hex::encode(entry.commitment()),
    }
}

fn list(path: &std::path::Path, json: bool) -> Result<()> {
    let vault = Vault::load(path)?;
    let rows: Vec<Summary> = vault.entries.iter().map(summary).collect();
    if json {
        println!("{}", serde_json::to_string(&rows)?);
        return Ok(());
    }
    for s in rows {
        let version = s
            .model_version
            .map(|v| format!(" model_version={v}"))
            .unwrap_or_default();
        println!(
            "{} shard={} chunk={} {} indices={} elements={} threshold_ppm={}{version} commitment={}",
            s.id,
            s.shard_id,
            s.chunk_id,
            s.chunk_hash,
            s.indices,
            s.elements,
            s.threshold_ppm,
            s.commitment
        );
    }
    Ok(())
}
