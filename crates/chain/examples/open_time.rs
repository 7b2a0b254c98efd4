//! Open time of the state store with a current `buckets-0` checkpoint and
//! with a stale one (as after a crash), which rebuilds the app-hash index
//! from `kv-0`.
//!
//! Run: `cargo run --release -p r3mes-chain --example open_time [N]`
//! (default 1,000,000 entries of a 40-byte key and a 250-byte value).

use std::time::Instant;

use r3mes_chain::state::State;

#[path = "common/records.rs"]
mod records;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let first = args.next();
    // Child mode: commit one block and exit without the closing checkpoint.
    if first.as_deref() == Some("crash") {
        let path = args.next().ok_or("crash needs a path")?;
        let state = State::open(std::path::Path::new(&path))?;
        let mut b = state.begin_block(state.height()? + 1)?;
        b.put(b"crash", b"one more block");
        b.commit()?;
        std::process::exit(0);
    }
    let n: u64 = match first {
        Some(arg) => arg.parse()?,
        None => 1_000_000,
    };
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("state.redb");
    {
        let state = State::open(&path)?;
        let mut id = 0u64;
        while id < n {
            let mut b = state.begin_block(state.height()? + 1)?;
            let end = (id + 10_000).min(n);
            records::put_records(&mut b, id..end);
            b.commit()?;
            id = end;
        }
        let start = Instant::now();
        drop(state);
        println!("entries: {n}");
        println!(
            "checkpoint at close: {:.2} s",
            start.elapsed().as_secs_f64()
        );
    }
    let start = Instant::now();
    let state = State::open(&path)?;
    println!(
        "open, checkpoint current: {:.2} s",
        start.elapsed().as_secs_f64()
    );
    drop(state);
    let status = std::process::Command::new(std::env::current_exe()?)
        .arg("crash")
        .arg(&path)
        .status()?;
    if !status.success() {
        return Err("crash child failed".into());
    }
    let start = Instant::now();
    let state = State::open(&path)?;
    println!(
        "open, checkpoint stale (rebuild from kv-0): {:.2} s",
        start.elapsed().as_secs_f64()
    );
    assert_eq!(state.app_hash()?, state.recompute_app_hash()?);
    Ok(())
}
