//! `r3mes bench verify`: bytes a tolerant verification fetches from a large
//! protobuf gradient against the file's size (the 1 % target).

use anyhow::{Context, Result};
use clap::Args;
use r3mes_verify::Placement;
use r3mes_verify::budget::{BudgetConfig, measure};

#[derive(Args)]
pub struct VerifyBench {
    /// Gradient size in MiB.
    #[arg(long, default_value_t = 64)]
    size_mib: u64,
    /// Secret windows per vault entry.
    #[arg(long, default_value_t = Placement::default().windows)]
    windows: u32,
    /// Indices per window.
    #[arg(long, default_value_t = Placement::default().per_window)]
    per_window: u32,
    /// Window width in elements.
    #[arg(long, default_value_t = Placement::default().span)]
    span: u64,
    /// Leaf size the gradient is added with.
    #[arg(long, default_value_t = r3mes_verify::GRADIENT_CHUNK_SIZE)]
    chunk_size: usize,
    /// CID version (1: raw leaves).
    #[arg(long, default_value_t = 0)]
    cid_version: u8,
    /// Vault entries to measure (fresh secret seed each, cold cache each).
    #[arg(long, default_value_t = 8)]
    trials: u32,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: VerifyBench) -> Result<()> {
    let config = BudgetConfig {
        size: args.size_mib << 20,
        placement: Placement {
            windows: args.windows,
            per_window: args.per_window,
            span: args.span,
        },
        chunk_size: args.chunk_size,
        cid_version: args.cid_version,
        trials: args.trials,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = runtime.block_on(measure(&config))?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    println!(
        "gradient: {} bytes (protobuf), {}-byte leaves, CIDv{}",
        report.file_size, report.chunk_size, report.cid_version
    );
    println!(
        "vault: {} indices in {} secret windows, {} entries measured (cold cache each)",
        report.indices, report.windows, report.trials
    );
    println!(
        "bytes_fetched: mean {} ({:.3} %), max {} ({:.3} %), mean {} blocks",
        report.mean_bytes_fetched,
        report.mean_ratio * 100.0,
        report.max_bytes_fetched,
        report.max_ratio * 100.0,
        report.mean_blocks_fetched
    );
    Ok(())
}
