//! Disk bytes per entry of the state store: inserts N records (default
//! 100,000) of a 40-byte key and a 250-byte value in blocks of 1,000, then
//! prints the database's file length and allocated disk blocks divided by
//! N, with the mean and slowest commit time of a block.
//!
//! Run: `cargo run --release -p r3mes-chain --example disk_usage [N]`.

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use r3mes_chain::state::State;

#[path = "common/records.rs"]
mod records;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u64 = match std::env::args().nth(1) {
        Some(arg) => arg.parse()?,
        None => 100_000,
    };
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("state.redb");
    let state = State::open(&path)?;
    let mut total = Duration::ZERO;
    let mut slowest = Duration::ZERO;
    let mut blocks = 0u32;
    let mut id = 0u64;
    while id < n {
        let mut b = state.begin_block(state.height()? + 1)?;
        let end = (id + 1000).min(n);
        records::put_records(&mut b, id..end);
        let start = Instant::now();
        b.commit()?;
        let took = start.elapsed();
        total += took;
        slowest = slowest.max(took);
        blocks += 1;
        id = end;
    }
    drop(state);
    let meta = std::fs::metadata(&path)?;
    // redb grows its file by doubling with `set_len`, leaving the new tail
    // sparse until pages are written: the bytes really on disk are the
    // allocated blocks.
    let on_disk = meta.blocks() * 512;
    println!("entries: {n}");
    println!(
        "file length: {} bytes ({:.1} per entry)",
        meta.len(),
        meta.len() as f64 / n as f64
    );
    println!(
        "on disk (allocated blocks): {on_disk} bytes ({:.1} per entry)",
        on_disk as f64 / n as f64
    );
    println!("payload bytes per entry (key + value): 290");
    println!(
        "commit per 1000-record block: mean {:.2} ms, slowest {:.2} ms",
        total.as_secs_f64() * 1000.0 / f64::from(blocks),
        slowest.as_secs_f64() * 1000.0
    );
    Ok(())
}
