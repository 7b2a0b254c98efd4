//! Training is real: miners' chunk gradients, aggregated round by round
//! with `r3mes-aggregate` (token-weighted mean, Adam step, adapters and
//! state through their files as they travel through IPFS), lower the loss
//! on real text.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::tiny;
use r3mes_aggregate::{AdamConfig, AdapterFile, Contribution, TrainingState, aggregate};
use r3mes_miner::{
    ChunkGradient, ChunkProcessor, FIXED_CHUNK_SIZE, LoraAdapters, LoraConfig, Model, Precision,
    UpdateInfo,
};

const CORPUS: [&str; 2] = [
    include_str!("../../../data/corpus/declaration-of-independence.txt"),
    include_str!("../../../data/corpus/gettysburg-address.txt"),
];

/// The corpus' full 2048-byte chunks.
fn chunks() -> Vec<Vec<u32>> {
    let bytes: Vec<u32> = CORPUS
        .iter()
        .flat_map(|t| t.bytes())
        .map(u32::from)
        .collect();
    bytes
        .chunks_exact(FIXED_CHUNK_SIZE)
        .map(<[u32]>::to_vec)
        .collect()
}

fn mean_loss(model: &Model, processor: &ChunkProcessor, chunks: &[Vec<u32>]) -> f64 {
    chunks
        .iter()
        .map(|c| processor.process_chunk(model, c, None).unwrap().loss)
        .sum::<f64>()
        / chunks.len() as f64
}

#[test]
fn loss_goes_down_over_aggregated_rounds() {
    let config = tiny();
    let lora = LoraConfig {
        rank: 8,
        alpha: 16.0,
        precision: Precision::Fp32,
    };
    let mut model = Model::init(&config, &lora, 3).unwrap();
    let processor = ChunkProcessor::new(128, 16).unwrap();
    let chunks = chunks();
    assert_eq!(chunks.len(), 4, "the corpus holds four full chunks");
    let backbone = model.backbone().hash().to_string();
    let mut state = TrainingState::new(AdamConfig {
        lr: 1e-2,
        ..AdamConfig::default()
    })
    .unwrap();
    // losses[r]: the mean loss over every chunk of the adapters round r+1
    // trains from (the miners compute it anyway), then the final adapters'.
    let mut losses = Vec::new();
    for round in 1..=5u64 {
        let mut round_loss = 0.0;
        // Two miners, two chunks each (their shard), one gradient each.
        let contributions: Vec<Contribution> = chunks
            .chunks(2)
            .enumerate()
            .map(|(miner, shard)| {
                let per_chunk: Vec<ChunkGradient> = shard
                    .iter()
                    .map(|c| processor.process_chunk(&model, c, None).unwrap())
                    .collect();
                round_loss += per_chunk.iter().map(|g| g.loss).sum::<f64>();
                let gradient = ChunkGradient::mean(&per_chunk).unwrap();
                let update = gradient.to_update(
                    &backbone,
                    &UpdateInfo {
                        miner_id: format!("miner{miner}"),
                        data_shard_id: miner as u64,
                        window_id: round,
                        timestamp: 0,
                    },
                );
                Contribution {
                    cid: format!("cid-{round}-{miner}"),
                    tokens: (FIXED_CHUNK_SIZE * shard.len()) as u64,
                    update,
                }
            })
            .collect();
        losses.push(round_loss / chunks.len() as f64);
        let base = AdapterFile::parse(&model.lora().to_safetensors().unwrap()).unwrap();
        let out = aggregate(round, round, &backbone, base, &state, contributions).unwrap();
        assert_eq!(
            out.manifest.contributions.len(),
            2,
            "{:?}",
            out.manifest.excluded
        );
        // The next round's miners load the adapters from the file.
        let adapters = LoraAdapters::from_safetensors(&out.adapters_bytes, &config).unwrap();
        model = Model::new(model.backbone().clone(), adapters).unwrap();
        state = TrainingState::parse(&out.state_bytes).unwrap();
    }
    losses.push(mean_loss(&model, &processor, &chunks));
    let first = losses[0];
    let last = *losses.last().unwrap();
    assert!(
        last < first - 0.05,
        "loss should fall by more than 0.05 nats over 5 rounds: {losses:?}"
    );
    let falls = losses.windows(2).filter(|w| w[1] < w[0]).count();
    assert!(falls >= 4, "the loss falls in most rounds: {losses:?}");
    eprintln!("loss per round: {losses:?}");
}
