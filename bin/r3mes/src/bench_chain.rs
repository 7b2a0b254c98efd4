//! `r3mes bench chain`: the keeper's throughput, bytes on disk per record
//! and GC bound, measured by `r3mes_chain::bench`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use r3mes_chain::bench::{BenchConfig, run as run_bench};

#[derive(Args)]
pub struct ChainBench {
    /// Signed MsgSubmitGradient transactions to apply.
    #[arg(long, default_value_t = 100_000)]
    txs: usize,
    /// Transactions per block (and the number of miners).
    #[arg(long, default_value_t = 1_000)]
    block_size: usize,
    /// Proof-of-work difficulty of the prepared submissions, bits.
    #[arg(long, default_value_t = 8)]
    pow_bits: u32,
    /// Scratch directory for the state file (default: a temporary one).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: ChainBench) -> Result<()> {
    let scratch = args.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("r3mes-chain-bench-{}", std::process::id()))
    });
    std::fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    let config = BenchConfig {
        txs: args.txs,
        block_size: args.block_size,
        pow_difficulty_bits: args.pow_bits,
        ..BenchConfig::default()
    };
    let json = args.json;
    let result = run_bench(&config, &scratch, |line| {
        if !json {
            eprintln!("{line}");
        }
    });
    if args.dir.is_none() {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    let report = result.context("chain benchmark")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "apply: {} txs in {} blocks of {}: {:.2} s, {:.0} tx/s (one thread, signatures checked), slowest block {:.1} ms",
        report.txs,
        report.blocks,
        args.block_size,
        report.apply_secs,
        report.tx_per_sec,
        report.max_block_ms
    );
    println!(
        "  of which: deliver {:.2} s, end of block {:.2} s, commit {:.2} s",
        report.deliver_secs, report.end_block_secs, report.commit_secs
    );
    println!(
        "disk: state file {} bytes long = {:.0} bytes per stored gradient; {} bytes allocated = {:.0} per gradient; live keys+values {:.0} per gradient (the record itself {:.0} bytes encoded)",
        report.state_file_bytes,
        report.bytes_per_record,
        report.state_allocated_bytes,
        report.allocated_bytes_per_record,
        report.live_bytes_per_record,
        report.record_encoded_bytes
    );
    println!(
        "gc: {} records in {} blocks, at most {} per block (bound {}), slowest GC block {:.1} ms",
        report.gc_removed,
        report.gc_blocks,
        report.gc_max_per_block,
        report.gc_bound,
        report.gc_max_block_ms
    );
    println!(
        "sampling: {} challenges issued; preparation (signing, PoW) {:.1} s, not counted",
        report.challenges, report.prepare_secs
    );
    Ok(())
}
