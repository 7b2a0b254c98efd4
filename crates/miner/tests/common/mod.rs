//! Shared fixtures: a tiny model and a text chunk.

#![allow(dead_code)]

use r3mes_miner::{BackboneConfig, FIXED_CHUNK_SIZE, LoraConfig, Model, Precision};

/// Text the chunks are cut from.
pub const TEXT: &str = "The miner receives a chunk of exactly two thousand and forty-eight \
tokens. It may split the chunk into micro-batches that fit its memory, but the gradient it \
submits is always the gradient of the whole chunk, so validators can check it against the \
same data. The backbone is frozen and ternary; only the small low-rank adapters learn. ";

/// Width 64, 2 blocks, 4 heads, byte vocabulary.
pub fn tiny() -> BackboneConfig {
    BackboneConfig::small(2, 64, 4)
}

/// Rank 8, alpha 16.
pub fn lora(precision: Precision) -> LoraConfig {
    LoraConfig {
        rank: 8,
        alpha: 16.0,
        precision,
    }
}

/// The tiny model from `seed`, with `B` filled from the seed too so that
/// every gradient is nonzero.
pub fn model(seed: u64) -> Model {
    let mut m = Model::init(&tiny(), &lora(Precision::Fp32), seed).expect("init");
    m.lora_mut().fill_b_from_seed(seed, 0.2).expect("fill B");
    m
}

/// 2048 byte tokens of [`TEXT`], starting `offset` bytes in.
pub fn chunk(offset: usize) -> Vec<u32> {
    TEXT.bytes()
        .cycle()
        .skip(offset)
        .take(FIXED_CHUNK_SIZE)
        .map(u32::from)
        .collect()
}

/// `max |a - b| / max |b|` (0 when both are all zeros).
pub fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let diff = a
        .iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).abs())
        .fold(0.0, f64::max);
    let scale = b.iter().map(|y| f64::from(y.abs())).fold(0.0, f64::max);
    if scale == 0.0 { diff } else { diff / scale }
}
