//! The model: deterministic init, ternary weights, safetensors round trips,
//! batch-invariant forward pass.

mod common;

use common::{chunk, lora, model, tiny};
use r3mes_miner::{Backbone, BackboneConfig, Error, LoraAdapters, Model, Precision};

#[test]
fn same_seed_same_backbone_bytes_and_hash() {
    let c = tiny();
    let a = Backbone::init(&c, 7).unwrap();
    let b = Backbone::init(&c, 7).unwrap();
    assert_eq!(a.to_safetensors().unwrap(), b.to_safetensors().unwrap());
    assert_eq!(a.hash(), b.hash());
    assert_eq!(a.hash().len(), 64);
    assert!(
        a.hash()
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    let other = Backbone::init(&c, 8).unwrap();
    assert_ne!(a.hash(), other.hash());
    let la = LoraAdapters::init(&c, &lora(Precision::Fp32), 7).unwrap();
    let lb = LoraAdapters::init(&c, &lora(Precision::Fp32), 7).unwrap();
    assert_eq!(la.to_safetensors().unwrap(), lb.to_safetensors().unwrap());
    assert_eq!(la.hash().unwrap(), lb.hash().unwrap());
}

#[test]
fn pinned_backbone_hash() {
    // The seeded init is part of the protocol: this hash must not drift.
    let b = Backbone::init(&BackboneConfig::small(1, 16, 2), 42).unwrap();
    assert_eq!(b.hash(), PINNED_HASH);
}

const PINNED_HASH: &str = "37bbefae9c26a1ba9cca2e4fbe67d0cd0ee1ec48e22f09a1e07777450c989dad";

#[test]
fn quantised_weights_are_ternary_with_absmean_scale() {
    let b = Backbone::init(&tiny(), 3).unwrap();
    let mut linears: Vec<_> = b.blocks().iter().flat_map(|bl| bl.projections()).collect();
    linears.push(b.head());
    assert_eq!(linears.len(), 2 * 7 + 1);
    for lin in linears {
        let t = lin.ternary();
        let (out, inp) = lin.shape();
        assert_eq!(t.values.len(), out * inp);
        assert!(t.values.iter().all(|v| (-1..=1).contains(v)));
        // Uniform latent weights: about a third of them round to zero.
        let zeros = t.values.iter().filter(|v| **v == 0).count() as f64 / t.values.len() as f64;
        assert!((0.15..0.5).contains(&zeros), "zero fraction {zeros}");
        // absmean of U(-1/sqrt(in), 1/sqrt(in)) is 1/(2 sqrt(in)).
        let expect = 0.5 / (inp as f32).sqrt();
        assert!((t.scale / expect - 1.0).abs() < 0.05, "scale {}", t.scale);
    }
}

#[test]
fn backbone_and_adapters_round_trip_through_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    let m = model(5);
    let path = dir.path().join("backbone.safetensors");
    m.backbone().save_file(&path).unwrap();
    let back = Backbone::load_file(&path).unwrap();
    assert_eq!(back.hash(), m.backbone().hash());
    assert_eq!(back.config(), m.backbone().config());
    assert_eq!(
        back.to_safetensors().unwrap(),
        m.backbone().to_safetensors().unwrap()
    );
    let lpath = dir.path().join("lora.safetensors");
    m.lora().save_file(&lpath).unwrap();
    let lback = LoraAdapters::load_file(&lpath, &tiny()).unwrap();
    assert_eq!(lback.to_seed().unwrap(), m.lora().to_seed().unwrap());
    let again = Model::new(back, lback).unwrap();
    let tokens = &chunk(0)[..256];
    let x = m.forward(tokens, 2, 128).unwrap().flatten_all().unwrap();
    let y = again
        .forward(tokens, 2, 128)
        .unwrap()
        .flatten_all()
        .unwrap();
    assert_eq!(x.to_vec1::<f32>().unwrap(), y.to_vec1::<f32>().unwrap());
    // Adapters of another backbone shape are refused.
    let other = BackboneConfig::small(3, 64, 4);
    let bytes = m.lora().to_safetensors().unwrap();
    assert!(matches!(
        LoraAdapters::from_safetensors(&bytes, &other),
        Err(Error::Format { .. })
    ));
}

#[test]
fn fp16_adapters_round_trip_exactly() {
    let c = tiny();
    let mut l = LoraAdapters::init(&c, &lora(Precision::Fp16), 9).unwrap();
    l.fill_b_from_seed(9, 0.3).unwrap();
    let bytes = l.to_safetensors().unwrap();
    let back = LoraAdapters::from_safetensors(&bytes, &c).unwrap();
    let (a, b) = (l.to_seed().unwrap(), back.to_seed().unwrap());
    assert_eq!(a, b);
    assert!(a.iter().all(|ad| ad.precision == "fp16" && ad.rank == 8));
    // fp16 storage is half the size of fp32.
    let mut l32 = LoraAdapters::init(&c, &lora(Precision::Fp32), 9).unwrap();
    l32.fill_b_from_seed(9, 0.3).unwrap();
    let ratio = l32.to_safetensors().unwrap().len() as f64 / bytes.len() as f64;
    assert!(ratio > 1.8, "fp32/fp16 size ratio {ratio}");
}

#[test]
fn latent_float_checkpoints_are_quantised_at_load() {
    // A Hugging Face style file: the same names, float projection weights,
    // no metadata. Rewrite the canonical file's ternary weights as latent
    // floats (W_q * scale * 1.3): they quantise back to the same backbone.
    let b = Backbone::init(&tiny(), 4).unwrap();
    let bytes = b.to_safetensors().unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut owned: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, view) in st.iter() {
        if name.ends_with("_scale") {
            continue;
        }
        if view.dtype() == safetensors::Dtype::I8 {
            let scale_view = st.tensor(&format!("{name}_scale")).unwrap();
            let s = f32::from_le_bytes(scale_view.data().try_into().unwrap());
            let data = view
                .data()
                .iter()
                .flat_map(|q| (f32::from(*q as i8) * s * 1.3).to_le_bytes())
                .collect();
            owned.push((
                name.to_string(),
                safetensors::Dtype::F32,
                view.shape().to_vec(),
                data,
            ));
        } else {
            owned.push((
                name.to_string(),
                view.dtype(),
                view.shape().to_vec(),
                view.data().to_vec(),
            ));
        }
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = owned
        .iter()
        .map(|(n, d, s, data)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), data).unwrap(),
            )
        })
        .collect();
    let latent = safetensors::serialize(views, None).unwrap();
    assert!(
        Backbone::from_safetensors(&latent).is_err(),
        "no config, no load"
    );
    let loaded = Backbone::from_safetensors_with_config(&latent, &tiny()).unwrap();
    for (x, y) in loaded.blocks().iter().zip(b.blocks()) {
        for (p, q) in x.projections().iter().zip(y.projections()) {
            assert_eq!(p.ternary().values, q.ternary().values);
        }
    }
    // A different configuration than the file's metadata is refused.
    let wrong = BackboneConfig::small(2, 64, 2);
    assert!(Backbone::from_safetensors_with_config(&bytes, &wrong).is_err());
}

#[test]
fn a_sequence_has_the_same_logits_in_any_batch() {
    let m = model(6);
    let tokens = chunk(3);
    let t = 128;
    let all = m.forward(&tokens[..8 * t], 8, t).unwrap();
    for s in [0usize, 5, 7] {
        let one = m.forward(&tokens[s * t..(s + 1) * t], 1, t).unwrap();
        let from_batch = all.narrow(0, s, 1).unwrap();
        assert_eq!(
            one.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            from_batch.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            "sequence {s}"
        );
    }
}

#[test]
fn forward_checks_its_input() {
    let m = model(6);
    assert!(m.forward(&[1, 2, 3], 2, 2).is_err());
    assert!(matches!(
        m.forward(&[1, 300], 1, 2),
        Err(Error::TokenOutOfRange {
            token: 300,
            position: 1,
            ..
        })
    ));
    let long = vec![1u32; 2049];
    assert!(m.forward(&long, 1, 2049).is_err());
    // Adapters for another shape do not fit.
    let other =
        LoraAdapters::init(&BackboneConfig::small(1, 64, 4), &lora(Precision::Fp32), 1).unwrap();
    assert!(Model::new(Backbone::init(&tiny(), 1).unwrap(), other).is_err());
}
