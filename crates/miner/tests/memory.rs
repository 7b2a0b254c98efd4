//! Peak memory grows with the micro-batch size, not with the chunk.
//!
//! A counting global allocator (this test binary only) records the peak of
//! live heap bytes while one chunk is processed, for several batch sizes.
//! This file holds a single test so no other test allocates meanwhile.

mod common;
mod counting;

use common::{chunk, model};
use r3mes_miner::{ChunkProcessor, DEFAULT_SEQ_LEN, activation_bytes};

#[test]
fn peak_memory_grows_with_the_batch_not_the_chunk() {
    let m = model(1);
    let tokens = chunk(0);
    let config = m.backbone().config().clone();
    let mut peaks = Vec::new();
    for b in [1usize, 2, 4, 8, 16] {
        let p = ChunkProcessor::new(DEFAULT_SEQ_LEN, b).unwrap();
        let (_, peak) = counting::peak_of(|| {
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
