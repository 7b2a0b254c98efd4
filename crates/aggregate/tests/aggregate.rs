//! Aggregation end to end on small hand-made adapters: the token-weighted
//! mean, the Adam step, exclusions, and byte-for-byte reproducibility.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use r3mes_aggregate::{
    AdamConfig, AdapterFile, AdapterParams, Contribution, Error, Precision, TrainingState,
    aggregate,
};
use r3mes_tensor::{LoRAAdapterGradient, LoRAGradientUpdate};

const BACKBONE: &str = "ab12";
const ROUND: u64 = 7;

fn base(precision: Precision) -> AdapterFile {
    let mut adapters = BTreeMap::new();
    for (i, id) in ["blocks.0.attn.q_proj", "blocks.0.mlp.up_proj"]
        .iter()
        .enumerate()
    {
        adapters.insert(
            id.to_string(),
            AdapterParams {
                a: (0..6).map(|k| (k as f32 - 2.5) * 0.1 + i as f32).collect(),
                shape_a: [2, 3],
                b: vec![0.0; 8],
                shape_b: [4, 2],
                alpha: 16.0,
            },
        );
    }
    AdapterFile {
        precision,
        config_json: r#"{"rank":2,"alpha":16.0,"precision":"fp32"}"#.into(),
        adapters,
    }
}

fn update(scale: f32, miner: &str) -> LoRAGradientUpdate {
    let mut adapters = BTreeMap::new();
    for id in ["blocks.0.attn.q_proj", "blocks.0.mlp.up_proj"] {
        adapters.insert(
            id.to_string(),
            LoRAAdapterGradient {
                layer_id: id.to_string(),
                grad_a: (0..6).map(|k| scale * (k as f32 + 1.0)).collect(),
                shape_a: [2, 3],
                grad_b: (0..8).map(|k| -scale * k as f32).collect(),
                shape_b: [4, 2],
                grad_alpha: scale,
            },
        );
    }
    LoRAGradientUpdate {
        adapters,
        miner_id: miner.into(),
        data_shard_id: 1,
        backbone_hash: BACKBONE.into(),
        window_id: ROUND,
        timestamp: 1_700_000_000,
    }
}

fn contribution(cid: &str, tokens: u64, scale: f32) -> Contribution {
    Contribution {
        cid: cid.into(),
        tokens,
        update: update(scale, &format!("miner-{cid}")),
    }
}

fn fresh() -> TrainingState {
    TrainingState::new(AdamConfig::default()).unwrap()
}

#[test]
fn mean_is_weighted_by_tokens() {
    let out = aggregate(
        ROUND,
        1,
        BACKBONE,
        base(Precision::Fp32),
        &fresh(),
        vec![
            contribution("bafy-b", 6144, 2.0),
            contribution("bafy-a", 2048, 1.0),
        ],
    )
    .unwrap();
    // (1 * 2048 + 2 * 6144) / 8192 = 1.75 times the unit gradient.
    let g = &out.gradient.adapters["blocks.0.attn.q_proj"];
    let expected: Vec<f32> = (0..6).map(|k| 1.75 * (k as f32 + 1.0)).collect();
    assert_eq!(g.grad_a, expected);
    assert_eq!(g.grad_alpha, 1.75);
    assert_eq!(out.manifest.total_tokens, 8192);
    let cids: Vec<&str> = out
        .manifest
        .contributions
        .iter()
        .map(|e| e.cid.as_str())
        .collect();
    assert_eq!(cids, ["bafy-a", "bafy-b"], "CID order");
    assert_eq!(out.gradient.window_id, ROUND);
    assert_eq!(out.gradient.miner_id, "aggregate");
    // The gradient file decodes back to the mean.
    let decoded =
        r3mes_tensor::decode(&out.gradient_bytes, None, &r3mes_tensor::Limits::default()).unwrap();
    assert_eq!(
        LoRAGradientUpdate::from_gradient(&decoded).unwrap(),
        out.gradient
    );
}

#[test]
fn first_adam_step_moves_each_parameter_by_about_lr_against_its_gradient() {
    let b = base(Precision::Fp32);
    let out = aggregate(
        ROUND,
        1,
        BACKBONE,
        b.clone(),
        &fresh(),
        vec![contribution("c1", 2048, 0.5)],
    )
    .unwrap();
    let lr = AdamConfig::default().lr as f32;
    for (id, p) in &b.adapters {
        let q = &out.adapters.adapters[id];
        let g = &out.gradient.adapters[id];
        for ((old, new), gr) in p.a.iter().zip(&q.a).zip(&g.grad_a) {
            let step = old - new;
            assert!((step - lr * gr.signum()).abs() < 1e-6, "{step}");
        }
        // B's first gradient entry is zero: it does not move.
        assert_eq!(q.b[0], 0.0);
        assert!(q.alpha < p.alpha);
    }
    assert_eq!(out.state.step, 1);
    assert_eq!(out.manifest.step, 1);
    // Files parse back to what was computed.
    assert_eq!(
        AdapterFile::parse(&out.adapters_bytes).unwrap(),
        out.adapters
    );
    assert_eq!(TrainingState::parse(&out.state_bytes).unwrap(), out.state);
}

#[test]
fn second_round_from_the_stored_state_matches_the_in_memory_one() {
    let first = aggregate(
        ROUND,
        1,
        BACKBONE,
        base(Precision::Fp32),
        &fresh(),
        vec![contribution("c1", 2048, 0.5)],
    )
    .unwrap();
    let mut next = update(-0.25, "m");
    next.window_id = ROUND + 1;
    let run = |adapters: AdapterFile, state: &TrainingState| {
        aggregate(
            ROUND + 1,
            2,
            BACKBONE,
            adapters,
            state,
            vec![Contribution {
                cid: "c2".into(),
                tokens: 4096,
                update: next.clone(),
            }],
        )
        .unwrap()
    };
    let in_memory = run(first.adapters.clone(), &first.state);
    let from_files = run(
        AdapterFile::parse(&first.adapters_bytes).unwrap(),
        &TrainingState::parse(&first.state_bytes).unwrap(),
    );
    assert_eq!(in_memory.adapters_bytes, from_files.adapters_bytes);
    assert_eq!(in_memory.state_bytes, from_files.state_bytes);
    assert_eq!(from_files.state.step, 2);
    assert_ne!(
        from_files.manifest.base_state_sha256, "",
        "the base state is named"
    );
}

#[test]
fn gradients_that_do_not_fit_are_excluded_with_reasons() {
    let mut wrong_window = contribution("c2", 2048, 1.0);
    wrong_window.update.window_id = 3;
    let mut wrong_backbone = contribution("c3", 2048, 1.0);
    wrong_backbone.update.backbone_hash = "ff".into();
    let mut wrong_shape = contribution("c4", 2048, 1.0);
    wrong_shape
        .update
        .adapters
        .get_mut("blocks.0.mlp.up_proj")
        .unwrap()
        .shape_b = [2, 4];
    let mut not_finite = contribution("c5", 2048, 1.0);
    not_finite
        .update
        .adapters
        .get_mut("blocks.0.attn.q_proj")
        .unwrap()
        .grad_a[0] = f32::NAN;
    let mut missing = contribution("c6", 2048, 1.0);
    missing.update.adapters.remove("blocks.0.mlp.up_proj");
    let no_tokens = contribution("c7", 0, 1.0);
    let twice = contribution("c1", 2048, 9.0);
    let good = contribution("c1", 2048, 1.0);
    let out = aggregate(
        ROUND,
        1,
        BACKBONE,
        base(Precision::Fp32),
        &fresh(),
        vec![
            not_finite,
            wrong_window,
            good,
            wrong_backbone,
            wrong_shape,
            missing,
            no_tokens,
            twice,
        ],
    )
    .unwrap();
    assert_eq!(out.manifest.contributions.len(), 1);
    let reasons: BTreeMap<&str, &str> = out
        .manifest
        .excluded
        .iter()
        .map(|e| (e.cid.as_str(), e.reason.as_str()))
        .collect();
    assert!(reasons["c2"].contains("window 3"), "{reasons:?}");
    assert!(reasons["c3"].contains("backbone"));
    assert!(reasons["c4"].contains("shapes"));
    assert!(reasons["c5"].contains("non-finite"));
    assert!(reasons["c6"].contains("1 adapter gradients for 2"));
    assert!(reasons["c7"].contains("no tokens"));
    assert!(reasons["c1"].contains("twice"));
    // Only bad gradients: an error, not an empty step.
    let err = aggregate(
        ROUND,
        1,
        BACKBONE,
        base(Precision::Fp32),
        &fresh(),
        vec![contribution("c7", 0, 1.0)],
    )
    .unwrap_err();
    assert!(matches!(err, Error::Empty(_)), "{err}");
}

#[test]
fn fp16_adapters_stay_fp16() {
    let out = aggregate(
        ROUND,
        1,
        BACKBONE,
        base(Precision::Fp16),
        &fresh(),
        vec![contribution("c1", 2048, 0.5)],
    )
    .unwrap();
    let parsed = AdapterFile::parse(&out.adapters_bytes).unwrap();
    assert_eq!(parsed.precision, Precision::Fp16);
    for p in parsed.adapters.values() {
        for v in &p.a {
            assert_eq!(half::f16::from_f32(*v).to_f32(), *v);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// The same gradients in any order give the same bytes, and every mean
    /// entry lies between the smallest and largest input.
    #[test]
    fn any_order_gives_the_same_bytes(
        items in proptest::collection::vec((1u64..10_000, -100.0f32..100.0), 1..8),
        seed in any::<u64>(),
    ) {
        let contributions: Vec<Contribution> = items
            .iter()
            .enumerate()
            .map(|(i, (tokens, scale))| contribution(&format!("cid-{i:03}"), *tokens, *scale))
            .collect();
        let mut shuffled = contributions.clone();
        // A deterministic shuffle from the seed.
        let n = shuffled.len();
        let mut s = seed;
        for i in (1..n).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (s >> 33) as usize % (i + 1));
        }
        let a = aggregate(ROUND, 1, BACKBONE, base(Precision::Fp32), &fresh(), contributions).unwrap();
        let b = aggregate(ROUND, 1, BACKBONE, base(Precision::Fp32), &fresh(), shuffled).unwrap();
        prop_assert_eq!(&a.gradient_bytes, &b.gradient_bytes);
        prop_assert_eq!(&a.adapters_bytes, &b.adapters_bytes);
        prop_assert_eq!(&a.state_bytes, &b.state_bytes);
        prop_assert_eq!(a.manifest_bytes(), b.manifest_bytes());
        let lo = items.iter().map(|(_, s)| *s).fold(f32::INFINITY, f32::min);
        let hi = items.iter().map(|(_, s)| *s).fold(f32::NEG_INFINITY, f32::max);
        let alpha = a.gradient.adapters["blocks.0.attn.q_proj"].grad_alpha;
        prop_assert!(alpha >= lo - 1e-3 && alpha <= hi + 1e-3, "{} not in [{}, {}]", alpha, lo, hi);
    }
}
