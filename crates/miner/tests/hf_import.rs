//! Hugging Face style BitNet checkpoints through `r3mes_miner::hf::import`:
//! a tiny synthetic 2-layer checkpoint with HF tensor names (BF16 and F32,
//! untied and tied) loads with its weights quantised to absmean ternary and
//! runs; unsupported architectures (grouped-query attention, sub-norms,
//! SiLU, biases, packed weights) and hostile files (missing or misshapen
//! tensors, huge headers, contradicting config.json) are refused naming
//! the tensor or field.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use r3mes_miner::hf::{HfConfig, import};
use r3mes_miner::quant::ternary;
use r3mes_miner::{Backbone, LoraAdapters, LoraConfig, Model};
use safetensors::Dtype;
use safetensors::tensor::TensorView;

const VOCAB: usize = 50;
const DIM: usize = 32;
const HIDDEN: usize = 64;
const LAYERS: usize = 2;
const HEADS: usize = 4;

/// A checkpoint under construction: name to (dtype, shape, bytes).
type Tensors = BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)>;

/// Deterministic values in about [-0.1, 0.1) (xorshift), distinct per name.
fn values(name: &str, n: usize) -> Vec<f32> {
    let mut state = name.bytes().fold(0x9e37_79b9_7f4a_7c15u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2
        })
        .collect()
}

fn encode(dtype: Dtype, v: &[f32]) -> Vec<u8> {
    match dtype {
        Dtype::BF16 => v
            .iter()
            .flat_map(|x| half::bf16::from_f32(*x).to_le_bytes())
            .collect(),
        Dtype::F32 => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        other => panic!("{other:?}"),
    }
}

fn put(t: &mut Tensors, name: &str, dtype: Dtype, shape: &[usize]) {
    let n = shape.iter().product();
    let mut v = values(name, n);
    if name.ends_with("norm.weight") {
        v.iter_mut().for_each(|x| *x += 1.0);
    }
    t.insert(name.into(), (dtype, shape.to_vec(), encode(dtype, &v)));
}

/// The tensors of a tiny BitNet checkpoint with Hugging Face names.
fn tiny(dtype: Dtype, with_head: bool) -> Tensors {
    let mut t = Tensors::new();
    put(&mut t, "model.embed_tokens.weight", dtype, &[VOCAB, DIM]);
    for l in 0..LAYERS {
        let p = format!("model.layers.{l}");
        put(
            &mut t,
            &format!("{p}.input_layernorm.weight"),
            dtype,
            &[DIM],
        );
        put(
            &mut t,
            &format!("{p}.post_attention_layernorm.weight"),
            dtype,
            &[DIM],
        );
        for q in ["q", "k", "v", "o"] {
            put(
                &mut t,
                &format!("{p}.self_attn.{q}_proj.weight"),
                dtype,
                &[DIM, DIM],
            );
        }
        put(
            &mut t,
            &format!("{p}.mlp.gate_proj.weight"),
            dtype,
            &[HIDDEN, DIM],
        );
        put(
            &mut t,
            &format!("{p}.mlp.up_proj.weight"),
            dtype,
            &[HIDDEN, DIM],
        );
        put(
            &mut t,
            &format!("{p}.mlp.down_proj.weight"),
            dtype,
            &[DIM, HIDDEN],
        );
    }
    put(&mut t, "model.norm.weight", dtype, &[DIM]);
    if with_head {
        put(&mut t, "lm_head.weight", dtype, &[VOCAB, DIM]);
    }
    t
}

fn file(t: &Tensors) -> Vec<u8> {
    let views: Vec<(String, TensorView<'_>)> = t
        .iter()
        .map(|(n, (d, s, b))| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize(views, Some(meta)).unwrap()
}

/// The `config.json` of the tiny model, as BitNet b1.58 2B4T writes it.
fn config_json() -> serde_json::Value {
    serde_json::json!({
        "architectures": ["BitNetForCausalLM"],
        "model_type": "bitnet",
        "hidden_act": "relu2",
        "hidden_size": DIM,
        "intermediate_size": HIDDEN,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": HEADS,
        "vocab_size": VOCAB,
        "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-6,
        "rope_theta": 500000.0,
        "tie_word_embeddings": false,
        "torch_dtype": "bfloat16",
        "quantization_config": {"quant_method": "bitnet"}
    })
}

fn config(doc: &serde_json::Value) -> HfConfig {
    HfConfig::from_json(doc.to_string().as_bytes()).unwrap()
}

fn heads_only() -> HfConfig {
    HfConfig {
        num_attention_heads: Some(HEADS),
        ..HfConfig::default()
    }
}

/// The latent values a tensor of `t` holds, as f32.
fn latent(t: &Tensors, name: &str) -> Vec<f32> {
    let (dtype, _, bytes) = &t[name];
    match dtype {
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        _ => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    }
}

fn refused(bytes: &[u8], hf: &HfConfig) -> String {
    import(bytes, hf).unwrap_err().to_string()
}

#[test]
fn a_bf16_checkpoint_loads_with_absmean_ternary_weights_and_runs() {
    let t = tiny(Dtype::BF16, true);
    let bytes = file(&t);
    let (backbone, report) = import(&bytes, &config(&config_json())).unwrap();
    let c = backbone.config();
    assert_eq!(
        (c.vocab_size, c.layers, c.dim, c.heads, c.mlp_hidden),
        (VOCAB, LAYERS, DIM, HEADS, HIDDEN)
    );
    assert_eq!(c.max_seq_len, 4096);
    assert_eq!((c.rope_theta, c.norm_eps), (500_000.0, 1e-6));
    assert!(!report.tied_head);
    assert!(report.inferred.is_empty(), "{:?}", report.inferred);
    // Every projection is the absmean ternary of its latent weights.
    let names = ["q", "k", "v", "o"]
        .map(|p| format!("self_attn.{p}_proj"))
        .into_iter()
        .chain(["gate", "up", "down"].map(|p| format!("mlp.{p}_proj")));
    let names: Vec<String> = names.collect();
    for (l, block) in backbone.blocks().iter().enumerate() {
        for (name, lin) in names.iter().zip(block.projections()) {
            let full = format!("model.layers.{l}.{name}.weight");
            let expected = ternary(&latent(&t, &full));
            assert_eq!(lin.ternary(), &expected, "{full}");
            assert!(expected.values.iter().any(|v| *v != 0), "{full}");
        }
    }
    assert_eq!(
        backbone.head().ternary(),
        &ternary(&latent(&t, "lm_head.weight"))
    );
    // The same as loading the file with the equivalent r3mes configuration.
    let same = Backbone::from_safetensors_with_config(&bytes, c).unwrap();
    assert_eq!(same.hash(), backbone.hash());
    // The canonical file it gives loads back through the same door.
    let canonical = backbone.to_safetensors().unwrap();
    let (again, _) = import(&canonical, &HfConfig::default()).unwrap();
    assert_eq!(again.hash(), backbone.hash());
    // Adapters initialised for that shape, and a forward pass.
    let lora = LoraAdapters::init(c, &LoraConfig::default(), 1).unwrap();
    let model = Model::new(backbone, lora).unwrap();
    let logits = model.forward(&[1, 2, 3, 4, 49, 0], 1, 6).unwrap();
    let values = logits.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(values.len(), 6 * VOCAB);
    assert!(values.iter().all(|v| v.is_finite()));
}

#[test]
fn tied_embeddings_without_config_json_are_inferred() {
    let mut t = tiny(Dtype::F32, false);
    // Older Llama exports carry the rotary frequencies: ignored.
    t.insert(
        "model.layers.0.self_attn.rotary_emb.inv_freq".into(),
        (
            Dtype::F32,
            vec![4],
            encode(Dtype::F32, &[1.0, 0.1, 0.01, 0.001]),
        ),
    );
    let (backbone, report) = import(&file(&t), &heads_only()).unwrap();
    assert!(report.tied_head);
    assert_eq!(
        report.ignored,
        ["model.layers.0.self_attn.rotary_emb.inv_freq"]
    );
    for field in [
        "hidden_size",
        "vocab_size",
        "num_hidden_layers",
        "intermediate_size",
        "max_position_embeddings",
        "rope_theta",
        "rms_norm_eps",
    ] {
        assert!(report.inferred.contains(&field), "{field}");
    }
    let c = backbone.config();
    assert_eq!(
        (c.dim, c.layers, c.mlp_hidden, c.max_seq_len),
        (DIM, 2, HIDDEN, 2048)
    );
    assert_eq!(
        backbone.head().ternary(),
        &ternary(&latent(&t, "model.embed_tokens.weight"))
    );
    // Without the head count there is nothing to go on.
    let e = refused(&file(&t), &HfConfig::default());
    assert!(e.contains("num_attention_heads"), "{e}");
    // A config that says the head is not tied needs lm_head.weight.
    let e = refused(&file(&t), &config(&config_json()));
    assert!(
        e.contains("missing tensor lm_head.weight") && e.contains("tie_word_embeddings false"),
        "{e}"
    );
}

#[test]
fn unsupported_architectures_are_refused_naming_what_is_missing() {
    let bytes = file(&tiny(Dtype::BF16, true));
    let with = |key: &str, value: serde_json::Value| {
        let mut doc = config_json();
        doc[key] = value;
        config(&doc)
    };
    for (hf, needle) in [
        (
            with("num_key_value_heads", 2.into()),
            "num_key_value_heads 2 differs from num_attention_heads 4: grouped-query",
        ),
        (
            with("hidden_act", "silu".into()),
            "hidden_act \"silu\" is not supported",
        ),
        (
            with(
                "rope_scaling",
                serde_json::json!({"type": "linear", "factor": 2.0}),
            ),
            "rope_scaling",
        ),
        (with("attention_bias", true.into()), "bias"),
        (with("head_dim", 16.into()), "head_dim 16"),
    ] {
        let e = refused(&bytes, &hf);
        assert!(e.contains(needle), "{needle:?} not in {e}");
    }
    // Grouped-query attention seen in the shapes alone.
    let mut t = tiny(Dtype::BF16, true);
    put(
        &mut t,
        "model.layers.1.self_attn.k_proj.weight",
        Dtype::BF16,
        &[16, DIM],
    );
    let e = refused(&file(&t), &heads_only());
    assert!(
        e.contains("model.layers.1.self_attn.k_proj.weight: shape [16, 32], expected [32, 32]")
            && e.contains("grouped-query"),
        "{e}"
    );
    // BitNet b1.58 2B4T's sub-layer norms.
    let mut t = tiny(Dtype::BF16, true);
    put(
        &mut t,
        "model.layers.0.mlp.ffn_sub_norm.weight",
        Dtype::BF16,
        &[HIDDEN],
    );
    let e = refused(&file(&t), &heads_only());
    assert!(
        e.contains("model.layers.0.mlp.ffn_sub_norm.weight [64]: sub-layer norms"),
        "{e}"
    );
    // Biases.
    let mut t = tiny(Dtype::BF16, true);
    put(
        &mut t,
        "model.layers.0.self_attn.q_proj.bias",
        Dtype::BF16,
        &[DIM],
    );
    assert!(refused(&file(&t), &heads_only()).contains("q_proj.bias [32]: biases"));
    // Packed 2-bit weights (U8).
    let mut t = tiny(Dtype::BF16, true);
    t.insert(
        "model.layers.0.mlp.up_proj.weight".into(),
        (Dtype::U8, vec![HIDDEN, DIM], vec![0x55; HIDDEN * DIM]),
    );
    let e = refused(&file(&t), &heads_only());
    assert!(
        e.contains("model.layers.0.mlp.up_proj.weight: dtype U8") && e.contains("master weights"),
        "{e}"
    );
}

#[test]
fn hostile_checkpoints_and_configs_are_refused() {
    let hf = config(&config_json());
    // A missing tensor.
    let mut t = tiny(Dtype::BF16, true);
    t.remove("model.layers.1.mlp.up_proj.weight");
    let e = refused(&file(&t), &hf);
    assert!(
        e.contains("missing tensor model.layers.1.mlp.up_proj.weight"),
        "{e}"
    );
    // A wrong shape.
    let mut t = tiny(Dtype::BF16, true);
    put(
        &mut t,
        "model.layers.1.mlp.down_proj.weight",
        Dtype::BF16,
        &[DIM, HIDDEN + 1],
    );
    let e = refused(&file(&t), &hf);
    assert!(
        e.contains("model.layers.1.mlp.down_proj.weight: shape [32, 65], expected [32, 64]"),
        "{e}"
    );
    // A missing layer, an unknown tensor, a one-dimensional embedding.
    let mut t = tiny(Dtype::BF16, true);
    put(
        &mut t,
        "model.layers.3.input_layernorm.weight",
        Dtype::BF16,
        &[DIM],
    );
    assert!(refused(&file(&t), &heads_only()).contains("no model.layers.2.*"));
    let mut t = tiny(Dtype::BF16, true);
    put(
        &mut t,
        "model.layers.0.self_attn.extra.weight",
        Dtype::BF16,
        &[DIM],
    );
    assert!(refused(&file(&t), &heads_only()).contains("unexpected tensors"));
    let mut t = tiny(Dtype::BF16, true);
    put(
        &mut t,
        "model.embed_tokens.weight",
        Dtype::BF16,
        &[VOCAB * DIM],
    );
    assert!(refused(&file(&t), &heads_only()).contains("model.embed_tokens.weight: shape [1600]"));
    // Non-finite weights.
    let mut t = tiny(Dtype::F32, true);
    let entry = t.get_mut("model.norm.weight").unwrap();
    entry.2[..4].copy_from_slice(&f32::NAN.to_le_bytes());
    assert!(refused(&file(&t), &heads_only()).contains("model.norm.weight: non-finite"));
    // A header that claims a terabyte, and plain garbage.
    let mut huge = (1u64 << 40).to_le_bytes().to_vec();
    huge.extend_from_slice(b"{}");
    assert!(refused(&huge, &hf).contains("header of 1099511627776 bytes"));
    assert!(refused(b"junk", &hf).contains("shorter than a header"));
    // A config.json that contradicts the shapes, or is not one.
    let bytes = file(&tiny(Dtype::BF16, true));
    let mut doc = config_json();
    doc["hidden_size"] = 64.into();
    let e = refused(&bytes, &config(&doc));
    assert!(
        e.contains("hidden_size 64, but model.embed_tokens.weight gives 32"),
        "{e}"
    );
    let mut doc = config_json();
    doc["num_hidden_layers"] = 3.into();
    assert!(refused(&bytes, &config(&doc)).contains("num_hidden_layers 3"));
    for (text, needle) in [
        ("{", "not JSON"),
        ("[]", "not a JSON object"),
        (
            r#"{"hidden_size": -1}"#,
            "hidden_size must be a non-negative integer",
        ),
        (r#"{"rope_theta": "big"}"#, "rope_theta must be a number"),
        (
            r#"{"tie_word_embeddings": 1}"#,
            "tie_word_embeddings must be true or false",
        ),
    ] {
        let e = HfConfig::from_json(text.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("config.json") && e.contains(needle), "{e}");
    }
    let big = vec![b' '; (1 << 20) + 1];
    assert!(
        HfConfig::from_json(&big)
            .unwrap_err()
            .to_string()
            .contains("bytes")
    );
}
