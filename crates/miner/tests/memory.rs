//! Peak memory grows with the micro-batch size, not with the chunk.
//!
//! A counting global allocator (this test binary only) records the peak of
//! live heap bytes while one chunk is processed, for several batch sizes.
//! This file holds a single test so no other test allocates meanwhile.

#![allow(unsafe_code)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{chunk, model};
use r3mes_miner::{ChunkProcessor, DEFAULT_SEQ_LEN, activation_bytes};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counters only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Peak live bytes above the level before `f`.
fn peak_of(f: impl FnOnce()) -> usize {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    f();
    PEAK.load(Ordering::Relaxed).saturating_sub(base)
}

#[test]
fn peak_memory_grows_with_the_batch_not_the_chunk() {
    let m = model(1);
    let tokens = chunk(0);
    let config = m.backbone().config().clone();
    let mut peaks = Vec::new();
    for b in [1usize, 2, 4, 8, 16] {
        let p = ChunkProcessor::new(DEFAULT_SEQ_LEN, b).unwrap();
        let peak = peak_of(|| {
            p.process_chunk(&m, &tokens, None).unwrap();
        });
        let estimate = activation_bytes(&config, DEFAULT_SEQ_LEN, b);
        println!(
            "B={b:2}: peak {:.1} MiB, estimate {:.1} MiB",
            peak as f64 / 1048576.0,
            estimate as f64 / 1048576.0
        );
        peaks.push((b, peak, estimate));
    }
    let (_, p1, _) = peaks[0];
    let (_, p16, _) = peaks[4];
    // The whole chunk goes through every run; only B changes. Peak memory
    // rises with B ...
    for w in peaks.windows(2) {
        assert!(w[1].1 > w[0].1, "peak not increasing with B: {peaks:?}");
    }
    // ... about linearly: one pass over the chunk (B=16) costs many times
    // what one sequence at a time (B=1) costs, so at B=1 the peak is a
    // sequence's worth, not the chunk's.
    let ratio = p16 as f64 / p1 as f64;
    assert!(ratio > 10.0, "B=16 / B=1 peak ratio {ratio:.1}: {peaks:?}");
    // The budget estimate bounds the measured peak.
    for (b, peak, estimate) in &peaks {
        assert!(
            *peak as u64 <= *estimate,
            "B={b}: measured {peak} > estimate {estimate}"
        );
    }
}
