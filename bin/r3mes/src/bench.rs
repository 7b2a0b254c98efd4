//! `r3mes bench ...`: performance figures measured by the binary itself.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use r3mes_ipfs::bench::{BenchConfig, BenchReport, run};

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Content layer: add --only-hash, durable add, peak memory, range-read fetches.
    Ipfs(IpfsBench),
    /// Gradient formats: flatten throughput, pickle+gzip against the seed's Python path, indexed lookups.
    Gradient(crate::bench_gradient::GradientBench),
    /// Keeper: signed gradient submissions applied in blocks, bytes per record, bounded GC.
    Chain(crate::bench_chain::ChainBench),
    /// Tolerant verification: bytes fetched against the gradient's size (64 MiB, 64 indices).
    Verify(crate::bench_verify::VerifyBench),
    /// A node under load: concurrent clients submitting signed gradients, tx/s, latency to inclusion, node memory.
    Submit(crate::bench_submit::SubmitBench),
    /// The miner end to end on a local node: chunk received to gradient acknowledged, training vs submission.
    Miner(crate::bench_miner::MinerBench),
}

#[derive(Args)]
pub struct IpfsBench {
    /// Size of the generated file in MiB.
    #[arg(long, default_value_t = 512)]
    size_mib: u64,
    /// Measure this file instead of a generated one.
    #[arg(long)]
    file: Option<PathBuf>,
    /// Size in MiB of the file the 4096-byte reads sample.
    #[arg(long, default_value_t = 1024)]
    read_file_mib: u64,
    /// Random 4096-byte reads to sample.
    #[arg(long, default_value_t = 200)]
    reads: u32,
    /// Runs of each import step (ours and Kubo's); the fastest counts.
    #[arg(long, default_value_t = 3)]
    runs: u32,
    /// Scratch directory (default: a temporary one, removed afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Kubo's `add --only-hash` reference: the `kubo-cid` tool to time on the same file.
    #[arg(long, env = "R3MES_KUBO_CID")]
    kubo_cid: Option<PathBuf>,
    /// Kubo's `add --only-hash` MB/s when not measured (the figure for this machine).
    #[arg(long, default_value_t = 450.0)]
    kubo_only_hash_mbps: f64,
    /// Kubo's durable `add` MB/s (no Kubo daemon here to measure; the figure).
    #[arg(long, default_value_t = 235.0)]
    kubo_add_mbps: f64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run_bench(command: BenchCommand) -> Result<()> {
    match command {
        BenchCommand::Ipfs(args) => ipfs(args),
        BenchCommand::Gradient(args) => crate::bench_gradient::run(args),
        BenchCommand::Chain(args) => crate::bench_chain::run(args),
        BenchCommand::Verify(args) => crate::bench_verify::run(args),
        BenchCommand::Submit(args) => crate::bench_submit::run(args),
        BenchCommand::Miner(args) => crate::bench_miner::run(args),
    }
}

/// Seconds a command takes.
pub(crate) fn time_command(program: &std::path::Path, args: &[&std::path::Path]) -> Result<f64> {
    let start = Instant::now();
    let status = Command::new(program)
        .args(args)
        .stdout(std::process::Stdio::null())
        .status()
        .with_context(|| format!("running {}", program.display()))?;
    anyhow::ensure!(status.success(), "{} failed: {status}", program.display());
    Ok(start.elapsed().as_secs_f64())
}

fn ipfs(args: IpfsBench) -> Result<()> {
    let config = BenchConfig {
        size_mib: args.size_mib,
        file: args.file.clone(),
        work_dir: args.dir.clone(),
        reads: args.reads,
        runs: args.runs,
        read_file_mib: args.read_file_mib,
    };
    // Keep the generated file for the reference tools: measure in a directory we control.
    let scratch = args.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("r3mes-bench-{}", std::process::id()))
    });
    let config = BenchConfig {
        work_dir: Some(scratch.clone()),
        ..config
    };
    let report = run(&config).context("running the benchmark")?;

    let mut references = Vec::new();
    if let Some(tool) = &args.kubo_cid {
        // Kubo's importer in-process, minus its start-up (timed on an empty file).
        let empty = scratch.join("empty.bin");
        std::fs::write(&empty, b"").context("writing empty file")?;
        let base = best_time(args.runs, || time_command(tool, &[&empty]))?;
        let full = best_time(args.runs, || time_command(tool, &[&report.file]))?;
        let mbps = report.file_bytes as f64 / (full - base).max(1e-6) / 1e6;
        references.push(("kubo add --only-hash (kubo-cid, start-up subtracted)", mbps));
    }
    if let Ok(path) = which("openssl") {
        let dgst = [
            std::path::Path::new("dgst"),
            std::path::Path::new("-sha256"),
            &report.file,
        ];
        let secs = best_time(args.runs, || time_command(&path, &dgst))?;
        references.push((
            "openssl dgst -sha256 (one core)",
            report.file_bytes as f64 / secs / 1e6,
        ));
    }
    if args.dir.is_none() {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    let kubo_only_hash = references
        .iter()
        .find(|(name, _)| name.starts_with("kubo"))
        .map_or(args.kubo_only_hash_mbps, |(_, v)| *v);
    print_report(
        &report,
        &references,
        kubo_only_hash,
        args.kubo_add_mbps,
        args.json,
    );
    Ok(())
}

/// The shortest of `runs` timings.
pub(crate) fn best_time(runs: u32, mut time: impl FnMut() -> Result<f64>) -> Result<f64> {
    let mut best = time()?;
    for _ in 1..runs {
        best = best.min(time()?);
    }
    Ok(best)
}

fn which(name: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").context("no PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .with_context(|| format!("{name} not on PATH"))
}

fn print_report(
    report: &BenchReport,
    references: &[(&str, f64)],
    kubo_only_hash: f64,
    kubo_add: f64,
    json: bool,
) {
    let only_hash = report.steps.first().map_or(0.0, |s| s.mb_per_s);
    let add = report.steps.get(1).map_or(0.0, |s| s.mb_per_s);
    let peak = report
        .steps
        .iter()
        .filter_map(|s| s.peak_rss_mib)
        .fold(0.0, f64::max);
    let read_limit = 2 + 2 * u64::from(report.depth.saturating_sub(1)) + 1;
    if json {
        let steps: Vec<String> = report
            .steps
            .iter()
            .map(|s| {
                format!(
                    "{{\"name\":\"{}\",\"seconds\":{:.3},\"mb_per_s\":{:.0},\"peak_rss_mib\":{}}}",
                    s.name,
                    s.seconds,
                    s.mb_per_s,
                    s.peak_rss_mib.map_or("null".into(), |v| format!("{v:.1}"))
                )
            })
            .collect();
        println!(
            "{{\"file_bytes\":{},\"cid\":\"{}\",\"steps\":[{}],\"only_hash_vs_kubo\":{:.2},\"add_vs_kubo\":{:.2},\"read_file_bytes\":{},\"depth\":{},\"max_read_blocks\":{},\"max_read_bytes\":{}}}",
            report.file_bytes,
            report.cid,
            steps.join(","),
            only_hash / kubo_only_hash,
            add / kubo_add,
            report.read_file_bytes,
            report.depth,
            report.max_read_blocks,
            report.max_read_bytes
        );
        return;
    }
    println!(
        "file: {} ({} MiB), CID {}",
        report.file.display(),
        report.file_bytes >> 20,
        report.cid
    );
    println!(
        "{:<44} {:>8} {:>10} {:>10}",
        "step", "seconds", "MB/s", "peak MiB"
    );
    for s in &report.steps {
        let peak = s.peak_rss_mib.map_or("-".into(), |v| format!("{v:.1}"));
        println!(
            "{:<44} {:>8.3} {:>10.0} {:>10}",
            s.name, s.seconds, s.mb_per_s, peak
        );
    }
    for (name, mbps) in references {
        println!("{name:<44} {:>8} {mbps:>10.0} {:>10}", "", "");
    }
    let verdict = |ok: bool| if ok { "ok" } else { "MISSED" };
    println!();
    println!(
        "add --only-hash vs Kubo ({kubo_only_hash:.0} MB/s): {:.2}x (target 3x) {}",
        only_hash / kubo_only_hash,
        verdict(only_hash >= 3.0 * kubo_only_hash)
    );
    println!(
        "add (durable) vs Kubo ({kubo_add:.0} MB/s):       {:.2}x (target 2x) {}",
        add / kubo_add,
        verdict(add >= 2.0 * kubo_add)
    );
    println!(
        "peak memory of add: {peak:.1} MiB (target < 64) {}",
        verdict(peak < 64.0)
    );
    println!(
        "cat --length 4096 on {} MiB (depth {}), {} reads: at most {} blocks, {} bytes (limit: 2 leaves + ancestors = {read_limit}) {}",
        report.read_file_bytes >> 20,
        report.depth,
        report.reads,
        report.max_read_blocks,
        report.max_read_bytes,
        verdict(report.max_read_blocks <= read_limit)
    );
}
