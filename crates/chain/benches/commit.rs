//! Commit cost of one block of 1,000 new ~250-byte records on states of
//! 0, 100k and 1M entries (on disk, durable commits). The app hash is
//! maintained incrementally, so the cost should not grow with the state.
//!
//! Each measured iteration commits 1,000 fresh records; the untimed setup
//! first deletes the previous iteration's records, so the state size stays
//! put. Run: `cargo bench -p r3mes-chain --bench commit`.
//!
//! Measured on the 2-core dev VM (durable commits, fsync included) while the
//! bucket index was still written to redb every block: 8.7 ms on the empty
//! state, 49 ms at 100k entries, 63 ms at 1M entries, the growth being the
//! disk writes of the ~1,000 index pages a block touched. With the index
//! in memory (checkpointed at close) a block writes only its records:
//! `examples/disk_usage.rs` went from 32.2 to 13.5 ms per block and from
//! 491 to 357 allocated bytes per entry at 100k entries. Not re-run since.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use r3mes_chain::state::State;

#[path = "../examples/common/records.rs"]
mod records;
use records::{key, put_records};

/// Fills `state` with `n` records in blocks of 10,000.
fn fill(state: &State, n: u64) {
    let mut next = 0;
    while next < n {
        let height = state.height().expect("height") + 1;
        let mut b = state.begin_block(height).expect("begin");
        let end = (next + 10_000).min(n);
        put_records(&mut b, next..end);
        b.commit().expect("commit");
        next = end;
    }
}

fn commit_block(c: &mut Criterion) {
    let mut group = c.benchmark_group("commit_1000_records");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    for size in [0u64, 100_000, 1_000_000] {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = State::open(&dir.path().join("state.redb")).expect("open");
        fill(&state, size);
        // Ids of the records added by the previous iteration.
        let next_id = std::cell::Cell::new(1u64 << 40);
        group.bench_with_input(BenchmarkId::from_parameter(size), &size, |bench, _| {
            bench.iter_batched(
                || {
                    let first = next_id.get();
                    let height = state.height().expect("height") + 1;
                    if first > 1 << 40 {
                        let mut b = state.begin_block(height).expect("begin");
                        for id in first - 1000..first {
                            b.delete(&key(id));
                        }
                        b.commit().expect("commit");
                    }
                    let height = state.height().expect("height") + 1;
                    let mut b = state.begin_block(height).expect("begin");
                    put_records(&mut b, first..first + 1000);
                    next_id.set(first + 1000);
                    b
                },
                |b| black_box(b.commit().expect("commit")),
                BatchSize::PerIteration,
            );
        });
    }
    group.finish();
}

criterion_group!(benches, commit_block);
criterion_main!(benches);
