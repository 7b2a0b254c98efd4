//! The chunk processor: accumulation equals the single pass, wrong sizes are
//! refused, results are deterministic, and a step on the gradient trains.

mod common;

use common::{chunk, model, rel_err, tiny};
use r3mes_miner::{
    ChunkGradient, ChunkProcessor, DEFAULT_SEQ_LEN, Error, LoraConfig, Model, UpdateInfo,
};
use r3mes_tensor::{Format, LoRAGradientUpdate, decode, encode};

/// Largest relative error between two chunk gradients: per tensor
/// `max|a - b| / max|b|` for every `grad_a` and `grad_b`, and for the
/// alphas, the vector of every adapter's `grad_alpha` taken as one tensor.
fn max_rel_err(a: &ChunkGradient, b: &ChunkGradient) -> (f64, f64, f64) {
    let (mut ea, mut eb) = (0.0f64, 0.0f64);
    let (mut alpha_a, mut alpha_b) = (Vec::new(), Vec::new());
    assert_eq!(a.adapters.len(), b.adapters.len());
    for (id, ga) in &a.adapters {
        let gb = &b.adapters[id];
        ea = ea.max(rel_err(&ga.grad_a, &gb.grad_a));
        eb = eb.max(rel_err(&ga.grad_b, &gb.grad_b));
        alpha_a.push(ga.grad_alpha);
        alpha_b.push(gb.grad_alpha);
    }
    (ea, eb, rel_err(&alpha_a, &alpha_b))
}

#[test]
fn accumulated_gradient_equals_single_pass_for_every_batch_size() {
    let m = model(1);
    let tokens = chunk(0);
    let single = ChunkProcessor::new(DEFAULT_SEQ_LEN, 16)
        .unwrap()
        .process_chunk(&m, &tokens, None)
        .unwrap();
    assert_eq!(single.micro_batches, 1);
    assert_eq!(single.target_tokens, 16 * 127);
    assert_eq!(single.adapters.len(), 2 * 7);
    for g in single.adapters.values() {
        assert!(
            g.grad_a.iter().any(|v| *v != 0.0),
            "{} grad_a is zero",
            g.layer_id
        );
        assert!(
            g.grad_b.iter().any(|v| *v != 0.0),
            "{} grad_b is zero",
            g.layer_id
        );
        assert!(g.grad_alpha != 0.0, "{} grad_alpha is zero", g.layer_id);
    }
    for b in [1, 2, 4, 8, 16] {
        let acc = ChunkProcessor::new(DEFAULT_SEQ_LEN, b)
            .unwrap()
            .process_chunk(&m, &tokens, None)
            .unwrap();
        assert_eq!(acc.micro_batches, 16 / b);
        let (ea, eb, ealpha) = max_rel_err(&acc, &single);
        let loss_err = (acc.loss - single.loss).abs() / single.loss;
        println!(
            "B={b:2}: max rel err grad_a {ea:.3e} grad_b {eb:.3e} grad_alpha {ealpha:.3e} loss {loss_err:.3e}"
        );
        assert!(ea <= 1e-5 && eb <= 1e-5 && ealpha <= 1e-5, "B={b}");
        assert!(loss_err <= 1e-5, "B={b}");
    }
}

#[test]
fn uneven_micro_batches_and_masked_tails_are_still_the_whole_chunk() {
    let m = model(2);
    let tokens = chunk(17);
    // Padding: the last 300 tokens do not count.
    let mask: Vec<bool> = (0..2048).map(|i| i < 2048 - 300).collect();
    let single = ChunkProcessor::new(64, 32)
        .unwrap()
        .process_chunk(&m, &tokens, Some(&mask))
        .unwrap();
    let counted = (0..2048).filter(|i| i % 64 != 0 && mask[*i]).count();
    assert_eq!(single.target_tokens, counted);
    for b in [3, 7] {
        let acc = ChunkProcessor::new(64, b)
            .unwrap()
            .process_chunk(&m, &tokens, Some(&mask))
            .unwrap();
        assert_eq!(acc.micro_batches, 32usize.div_ceil(b));
        let (ea, eb, ealpha) = max_rel_err(&acc, &single);
        assert!(
            ea <= 1e-5 && eb <= 1e-5 && ealpha <= 1e-5,
            "B={b}: {ea} {eb} {ealpha}"
        );
    }
    let none = vec![false; 2048];
    let err = ChunkProcessor::new(64, 4)
        .unwrap()
        .process_chunk(&m, &tokens, Some(&none))
        .unwrap_err();
    assert!(matches!(err, Error::EmptyChunk));
    let short = vec![true; 10];
    let err = ChunkProcessor::new(64, 4)
        .unwrap()
        .process_chunk(&m, &tokens, Some(&short))
        .unwrap_err();
    assert!(matches!(err, Error::MaskLength { got: 10, .. }));
}

#[test]
fn wrong_chunk_sizes_give_the_seed_error_and_touch_nothing() {
    let m = model(3);
    let before = m.lora().to_safetensors().unwrap();
    let processor = ChunkProcessor::new(DEFAULT_SEQ_LEN, 4).unwrap();
    for n in [0usize, 2047, 2049, 4096] {
        let tokens = vec![65u32; n];
        let err = processor.process_chunk(&m, &tokens, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("Invalid chunk size: {n} (expected 2048)")
        );
        assert!(matches!(err, Error::InvalidChunkSize { got } if got == n));
    }
    assert_eq!(m.lora().to_safetensors().unwrap(), before);
    let mut bad = chunk(0);
    bad[100] = 256;
    let err = processor.process_chunk(&m, &bad, None).unwrap_err();
    assert!(matches!(
        err,
        Error::TokenOutOfRange {
            token: 256,
            position: 100,
            ..
        }
    ));
    assert_eq!(m.lora().to_safetensors().unwrap(), before);
}

#[test]
fn processor_configuration_is_checked() {
    assert!(ChunkProcessor::new(0, 1).is_err());
    assert!(ChunkProcessor::new(1, 1).is_err());
    assert!(ChunkProcessor::new(100, 1).is_err());
    assert!(ChunkProcessor::new(128, 0).is_err());
    assert_eq!(ChunkProcessor::new(128, 99).unwrap().local_batch_size(), 16);
    assert_eq!(ChunkProcessor::new(2048, 1).unwrap().sequences(), 1);
    let c = tiny();
    let fixed = r3mes_miner::activation_bytes(&c, 128, 0);
    let one = r3mes_miner::activation_bytes(&c, 128, 1) - fixed;
    assert_eq!(r3mes_miner::activation_bytes(&c, 128, 4), fixed + 4 * one);
    let mb = |bytes: u64| bytes.div_ceil(1 << 20);
    let p = ChunkProcessor::with_memory_budget(&c, 128, mb(fixed + 4 * one)).unwrap();
    assert_eq!(p.local_batch_size(), 4);
    let p = ChunkProcessor::with_memory_budget(&c, 128, 0).unwrap();
    assert_eq!(p.local_batch_size(), 1);
    let p = ChunkProcessor::with_memory_budget(&c, 128, u64::MAX).unwrap();
    assert_eq!(p.local_batch_size(), 16);
}

#[test]
fn same_seed_gives_the_same_gradient_bytes() {
    let tokens = chunk(5);
    let info = UpdateInfo {
        miner_id: "remes1miner".into(),
        data_shard_id: 3,
        window_id: 9,
        timestamp: 1_700_000_000,
    };
    let file = |m: &Model| {
        let g = ChunkProcessor::new(DEFAULT_SEQ_LEN, 4)
            .unwrap()
            .process_chunk(m, &tokens, None)
            .unwrap();
        let update = g.to_update(m.backbone().hash(), &info);
        encode(
            &update.to_gradient(Format::Protobuf).unwrap(),
            Format::Protobuf,
        )
        .unwrap()
    };
    let (a, b) = (model(11), model(11));
    let bytes = file(&a);
    assert_eq!(bytes, file(&b));
    assert_eq!(bytes, file(&a), "a second run on the same model");
    // The file decodes back to the update.
    let decoded = decode(&bytes, Some(Format::Protobuf), &Default::default()).unwrap();
    let update = LoRAGradientUpdate::from_gradient(&decoded).unwrap();
    assert_eq!(update.miner_id, "remes1miner");
    assert_eq!(update.backbone_hash, a.backbone().hash());
    assert_eq!(update.adapters.len(), 14);
    let q = &update.adapters["model.layers.0.self_attn.q_proj"];
    assert_eq!(q.shape_a, [8, 64]);
    assert_eq!(q.shape_b, [64, 8]);
    let down = &update.adapters["model.layers.1.mlp.down_proj"];
    assert_eq!(down.shape_a, [8, tiny().mlp_hidden as u64]);
}

#[test]
fn a_step_along_the_gradient_lowers_the_chunk_loss() {
    // Fresh adapters (B = 0), as a miner starts: a real training step.
    let mut m = Model::init(&tiny(), &LoraConfig::default(), 21).unwrap();
    let tokens = chunk(0);
    let processor = ChunkProcessor::new(DEFAULT_SEQ_LEN, 8).unwrap();
    let mut losses = Vec::new();
    for _ in 0..3 {
        let g = processor.process_chunk(&m, &tokens, None).unwrap();
        losses.push(g.loss);
        m.lora_mut().apply_sgd(&g.adapters, 1.0).unwrap();
    }
    let last = processor.process_chunk(&m, &tokens, None).unwrap().loss;
    losses.push(last);
    println!("losses over SGD steps: {losses:?}");
    for w in losses.windows(2) {
        assert!(w[1] < w[0], "loss did not go down: {losses:?}");
    }
    assert!(last < losses[0] - 0.1, "too little progress: {losses:?}");
}
