//! Hostile backbone and adapter files: every one is an error, none a panic,
//! and nothing is allocated from a shape the file merely claims.

use proptest::prelude::*;
use r3mes_miner::{Backbone, BackboneConfig, LoraAdapters, LoraConfig, Precision};

fn small() -> BackboneConfig {
    BackboneConfig {
        vocab_size: 16,
        layers: 1,
        dim: 8,
        heads: 2,
        mlp_hidden: 8,
        max_seq_len: 32,
        ..BackboneConfig::default()
    }
}

fn valid_backbone() -> Vec<u8> {
    Backbone::init(&small(), 1)
        .expect("init")
        .to_safetensors()
        .expect("serialise")
}

fn valid_lora() -> Vec<u8> {
    let l = LoraConfig {
        rank: 4,
        alpha: 8.0,
        precision: Precision::Fp32,
    };
    LoraAdapters::init(&small(), &l, 1)
        .expect("init")
        .to_safetensors()
        .expect("serialise")
}

/// A safetensors file with the given JSON header and data bytes.
fn file(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

#[test]
fn crafted_headers_are_refused() {
    let cfg = serde_json::to_string(&small())
        .unwrap()
        .replace('"', "\\\"");
    let cases = [
        // Truncated and empty.
        Vec::new(),
        vec![1, 2, 3],
        // Header length beyond the file and beyond the limit.
        file("{}", &[]).into_iter().take(8).collect(),
        {
            let mut f = file("{}", &[]);
            f[..8].copy_from_slice(&(u64::MAX).to_le_bytes());
            f
        },
        // A huge claimed shape with no data.
        file(
            r#"{"model.embed_tokens.weight":{"dtype":"F32","shape":[1099511627776,1099511627776],"data_offsets":[0,0]}}"#,
            &[],
        ),
        // Metadata claiming an enormous model.
        file(
            r#"{"__metadata__":{"r3mes.backbone":"{\"vocab_size\":256,\"layers\":256,\"dim\":16384,\"heads\":4,\"mlp_hidden\":65536,\"max_seq_len\":2048,\"rope_theta\":10000.0,\"norm_eps\":1e-5}"}}"#,
            &[],
        ),
        // Valid metadata, no tensors.
        file(
            &format!(r#"{{"__metadata__":{{"r3mes.backbone":"{cfg}"}}}}"#),
            &[],
        ),
        // Non-JSON metadata.
        file(r#"{"__metadata__":{"r3mes.backbone":"not json"}}"#, &[]),
    ];
    for (i, bytes) in cases.iter().enumerate() {
        assert!(Backbone::from_safetensors(bytes).is_err(), "case {i}");
        assert!(
            LoraAdapters::from_safetensors(bytes, &small()).is_err(),
            "case {i}"
        );
    }
}

#[test]
fn non_ternary_and_non_finite_weights_are_refused() {
    let good = valid_backbone();
    let st = safetensors::SafeTensors::deserialize(&good).unwrap();
    let (header_len, _) = safetensors::SafeTensors::read_metadata(&good).unwrap();
    let base = 8 + header_len;
    // Find the head's I8 bytes and put a 2 in them.
    let head = st.tensor("lm_head.weight").unwrap();
    let offset = head.data().as_ptr() as usize - good.as_ptr() as usize;
    assert!(offset >= base);
    let mut bad = good.clone();
    bad[offset] = 2;
    assert!(Backbone::from_safetensors(&bad).is_err());
    // A NaN in the embedding.
    let embed = st.tensor("model.embed_tokens.weight").unwrap();
    let offset = embed.data().as_ptr() as usize - good.as_ptr() as usize;
    let mut bad = good.clone();
    bad[offset..offset + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    assert!(Backbone::from_safetensors(&bad).is_err());
    // A zero scale.
    let scale = st.tensor("lm_head.weight_scale").unwrap();
    let offset = scale.data().as_ptr() as usize - good.as_ptr() as usize;
    let mut bad = good.clone();
    bad[offset..offset + 4].copy_from_slice(&0f32.to_le_bytes());
    assert!(Backbone::from_safetensors(&bad).is_err());
    // The untouched file loads.
    assert!(Backbone::from_safetensors(&good).is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        prop_assert!(Backbone::from_safetensors(&bytes).is_err());
        prop_assert!(LoraAdapters::from_safetensors(&bytes, &small()).is_err());
    }

    #[test]
    fn mutated_backbone_files_never_panic(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut bytes = valid_backbone();
        for (at, value) in &edits {
            let i = at.index(bytes.len());
            bytes[i] = *value;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len()));
        }
        // Either it still is a valid backbone or it is an error: never a panic.
        if let Ok(b) = Backbone::from_safetensors(&bytes) {
            prop_assert!(b.blocks().iter().all(|bl| bl
                .projections()
                .iter()
                .all(|p| p.ternary().values.iter().all(|v| (-1..=1).contains(v)))));
        }
    }

    #[test]
    fn mutated_lora_files_never_panic(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut bytes = valid_lora();
        for (at, value) in &edits {
            let i = at.index(bytes.len());
            bytes[i] = *value;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len()));
        }
        let _ = LoraAdapters::from_safetensors(&bytes, &small());
    }
}
