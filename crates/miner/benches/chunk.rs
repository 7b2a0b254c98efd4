//! Tokens per second of one 2048-token chunk (forward + backward +
//! accumulation) for micro-batch sizes 1 to 16, and the peak heap memory of
//! each, on the default small model (4 blocks, width 256, rank 8) and the
//! test model (2 blocks, width 64).
//!
//! `cargo bench -p r3mes-miner` prints a table first (one timed chunk per B
//! after a warm-up, peak live heap bytes from a counting allocator), then
//! runs the criterion benchmarks. `R3MES_BENCH_TABLE_ONLY=1` stops after the
//! table.
//!
//! Figures of the first run (2-core VM shared with another build, so the
//! times are noisy; `RAYON_NUM_THREADS=1`, i.e. per core; peak = live heap
//! above the model during one chunk):
//!
//! | model | B | tokens/s | peak MiB | estimate MiB |
//! | --- | --- | --- | --- | --- |
//! | default (L4, D256, rank 8) | 1 | 1221 | 171.4 | 206.2 |
//! | default | 2 | 1043 | 305.8 | 374.7 |
//! | default | 4 | 1115 | 574.7 | 711.7 |
//! | default | 8 | 1175 | 1112.4 | 1385.7 |
//! | default | 16 | 1136 | 2187.9 | 2733.7 |
//! | test (L2, D64, rank 8) | 1 | 6806 | 24.1 | 29.0 |
//! | test | 2 | 10342 | 46.5 | 56.5 |
//! | test | 4 | 9246 | 91.3 | 111.5 |
//! | test | 8 | 10943 | 180.9 | 221.5 |
//! | test | 16 | 14655 | 360.1 | 441.5 |
//!
//! Peak memory is linear in B (about 134 MiB per sequence of 128 tokens on
//! the default model) and independent of the chunk, which every run
//! processes whole. With rayon's default two threads on the loaded machine,
//! throughput was lower and erratic (oversubscription).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use r3mes_miner::{
    BackboneConfig, ChunkProcessor, DEFAULT_SEQ_LEN, FIXED_CHUNK_SIZE, LoraConfig, Model,
    activation_bytes,
};

#[path = "../tests/counting/mod.rs"]
mod counting;

const BATCHES: [usize; 5] = [1, 2, 4, 8, 16];

fn tokens() -> Vec<u32> {
    let text = "Bench text for the r3mes miner: fixed chunks, local micro-batches. ";
    text.bytes()
        .cycle()
        .take(FIXED_CHUNK_SIZE)
        .map(u32::from)
        .collect()
}

fn models() -> Vec<(&'static str, Model)> {
    let lora = LoraConfig::default();
    let mut out = Vec::new();
    for (name, config) in [
        ("default-L4-D256", BackboneConfig::default()),
        ("tiny-L2-D64", BackboneConfig::small(2, 64, 4)),
    ] {
        match Model::init(&config, &lora, 1) {
            Ok(mut m) => {
                if let Err(e) = m.lora_mut().fill_b_from_seed(1, 0.1) {
                    eprintln!("fill B: {e}");
                }
                out.push((name, m));
            }
            Err(e) => eprintln!("init {name}: {e}"),
        }
    }
    out
}

fn table(models: &[(&'static str, Model)], chunk: &[u32]) {
    println!("model            B  micro-batches  seconds  tokens/s  peak MiB  estimate MiB");
    for (name, m) in models {
        for b in BATCHES {
            let Ok(p) = ChunkProcessor::new(DEFAULT_SEQ_LEN, b) else {
                continue;
            };
            // Warm-up (thread pool, page faults).
            let _ = p.process_chunk(m, chunk, None);
            let start = Instant::now();
            let (result, peak) = counting::peak_of(|| p.process_chunk(m, chunk, None));
            let secs = start.elapsed().as_secs_f64();
            match result {
                Ok(g) => println!(
                    "{name:15} {b:2}  {:13}  {secs:7.3}  {:8.0}  {:8.1}  {:12.1}",
                    g.micro_batches,
                    FIXED_CHUNK_SIZE as f64 / secs,
                    peak as f64 / 1048576.0,
                    activation_bytes(m.backbone().config(), DEFAULT_SEQ_LEN, b) as f64 / 1048576.0,
                ),
                Err(e) => println!("{name:15} {b:2}  error: {e}"),
            }
        }
    }
}

fn main() {
    let chunk = tokens();
    let models = models();
    table(&models, &chunk);
    if std::env::var_os("R3MES_BENCH_TABLE_ONLY").is_some() {
        return;
    }
    let mut c = Criterion::default()
        .sample_size(10)
        .measurement_time(Duration::from_secs(10))
        .configure_from_args();
    for (name, m) in &models {
        let mut group = c.benchmark_group(format!("chunk/{name}"));
        group.throughput(Throughput::Elements(FIXED_CHUNK_SIZE as u64));
        for b in BATCHES {
            let Ok(p) = ChunkProcessor::new(DEFAULT_SEQ_LEN, b) else {
                continue;
            };
            group.bench_with_input(BenchmarkId::from_parameter(b), &b, |bench, _| {
                bench.iter(|| black_box(p.process_chunk(m, &chunk, None).is_ok()));
            });
        }
        group.finish();
    }
    c.final_summary();
}
