//! Import of a Hugging Face style BitNet b1.58 checkpoint (one
//! `model.safetensors`, optionally with its `config.json`) as a
//! [`Backbone`].
//!
//! # What loads
//!
//! A checkpoint whose architecture is exactly this crate's backbone (see
//! [`crate::backbone`]): a pre-norm decoder with multi-head attention
//! (every head has its own keys and values), rotary positions in the
//! Llama "rotate half" layout, the squared-ReLU gated MLP
//! (`hidden_act: "relu2"`), no biases, no sub-layer norms. Tensor names are
//! the Hugging Face Llama/BitNet names:
//!
//! | tensor | shape |
//! | --- | --- |
//! | `model.embed_tokens.weight` | `[vocab_size, hidden_size]` |
//! | `model.layers.{i}.input_layernorm.weight` | `[hidden_size]` |
//! | `model.layers.{i}.self_attn.{q,k,v,o}_proj.weight` | `[hidden_size, hidden_size]` |
//! | `model.layers.{i}.post_attention_layernorm.weight` | `[hidden_size]` |
//! | `model.layers.{i}.mlp.{gate,up}_proj.weight` | `[intermediate_size, hidden_size]` |
//! | `model.layers.{i}.mlp.down_proj.weight` | `[hidden_size, intermediate_size]` |
//! | `model.norm.weight` | `[hidden_size]` |
//! | `lm_head.weight` (absent when the embeddings are tied) | `[vocab_size, hidden_size]` |
//!
//! Weights are F32, F16 or BF16 latent ("master") weights: every projection
//! and the LM head is quantised to ternary with its absmean scale at load,
//! which is what BitNet b1.58 does in its forward pass. The embedding and
//! the norm weights stay full precision (as f32). Tied embeddings
//! (`tie_word_embeddings`, or no `lm_head.weight` in the file) are
//! supported: the head is the absmean-ternary quantisation of a copy of the
//! embedding matrix. Note that this backbone's head is always a BitLinear
//! layer, so a checkpoint trained with a full-precision head (BitNet b1.58
//! 2B4T) computes slightly different logits here. Buffers
//! `*.rotary_emb.inv_freq` of older Llama exports are ignored (the
//! frequencies follow from `rope_theta`).
//!
//! # The configuration
//!
//! From `config.json` when given, else inferred from the shapes:
//! `hidden_size` and `vocab_size` from the embedding, `num_hidden_layers`
//! from the `model.layers.{i}` indices, `intermediate_size` from
//! `gate_proj`. `num_attention_heads` cannot be inferred (q_proj is
//! `[hidden, hidden]` whatever the heads) and must be given. Defaults for
//! the rest: `rope_theta` 10000, `rms_norm_eps` 1e-5, and
//! `max_position_embeddings` 2048; the model's `max_seq_len` is
//! `max_position_embeddings` capped at [`crate::config::MAX_SEQ_LEN`]. Values
//! given in `config.json` must agree with the shapes.
//!
//! # What is refused, and why
//!
//! Each error names the field or the tensor and its shape:
//!
//! * grouped-query attention (`num_key_value_heads` different from
//!   `num_attention_heads`, or `k_proj` / `v_proj` narrower than
//!   `[hidden_size, hidden_size]`): BitNet b1.58 2B4T has 5 key/value heads
//!   for 20 query heads;
//! * sub-layer norms (`self_attn.attn_sub_norm`, `mlp.ffn_sub_norm`, as in
//!   2B4T, or `inner_attn_ln` / `ffn_layernorm`);
//! * any `hidden_act` but `relu2` (1bitLLM's `bitnet_b1_58-*` use `silu`);
//! * `rope_scaling`, biases (`attention_bias`, `mlp_bias`, `*.bias`
//!   tensors), a `head_dim` other than `hidden_size / num_attention_heads`;
//! * packed or integer weights (the `U8` 2-bit packing of
//!   `microsoft/bitnet-b1.58-2B-4T`: use the `-bf16` master weights);
//! * sharded checkpoints (`model-0000x-of-0000y.safetensors`): one file
//!   only (a shard is refused for the first tensor it lacks);
//! * anything missing, misshapen, non-finite, unknown, or over the limits of
//!   [`crate::MAX_HEADER_BYTES`] and [`crate::MAX_TENSORS`].
//!
//! So Microsoft's `bitnet-b1.58-2B-4T-bf16` is refused for its
//! grouped-query attention and sub-norms, and 1bitLLM's
//! `bitnet_b1_58-large` for its SiLU MLP: the backbone would have to grow
//! those features first.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::backbone::{Backbone, EMBED, HEAD, LoadOptions, PROJECTIONS};
use crate::config::{BackboneConfig, MAX_SEQ_LEN};
use crate::st;
use crate::{Error, Result};

/// Largest `config.json` accepted.
pub const MAX_CONFIG_BYTES: usize = 1 << 20;

/// Default `rope_theta` when `config.json` has none (Llama's).
pub const DEFAULT_ROPE_THETA: f32 = 10_000.0;
/// Default `rms_norm_eps` when `config.json` has none.
pub const DEFAULT_NORM_EPS: f32 = 1e-5;
/// Default `max_position_embeddings` when `config.json` has none.
pub const DEFAULT_MAX_POSITIONS: usize = 2048;

/// The fields of a Hugging Face `config.json` that matter here; every one
/// optional (the rest of the file is ignored).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HfConfig {
    /// `hidden_size`: the model width.
    pub hidden_size: Option<usize>,
    /// `num_hidden_layers`.
    pub num_hidden_layers: Option<usize>,
    /// `num_attention_heads`.
    pub num_attention_heads: Option<usize>,
    /// `num_key_value_heads` (must equal the attention heads).
    pub num_key_value_heads: Option<usize>,
    /// `intermediate_size`: the MLP's hidden width.
    pub intermediate_size: Option<usize>,
    /// `vocab_size`.
    pub vocab_size: Option<usize>,
    /// `max_position_embeddings`.
    pub max_position_embeddings: Option<usize>,
    /// `rms_norm_eps`.
    pub rms_norm_eps: Option<f64>,
    /// `rope_theta` (or `rope_parameters.rope_theta`).
    pub rope_theta: Option<f64>,
    /// `hidden_act` (must be `relu2`).
    pub hidden_act: Option<String>,
    /// `tie_word_embeddings`.
    pub tie_word_embeddings: Option<bool>,
    /// `head_dim` (must be `hidden_size / num_attention_heads`).
    pub head_dim: Option<usize>,
    /// `rope_scaling` is present and not null.
    pub rope_scaling: bool,
    /// `attention_bias` or `mlp_bias` is true.
    pub bias: bool,
}

/// What an import did besides loading the named tensors.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HfImport {
    /// The head was quantised from the embedding (tied embeddings).
    pub tied_head: bool,
    /// Tensors ignored (`*.rotary_emb.inv_freq`).
    pub ignored: Vec<String>,
    /// Configuration fields that were inferred from shapes or defaulted.
    pub inferred: Vec<&'static str>,
}

fn config_err(detail: String) -> Error {
    Error::Config(format!("config.json: {detail}"))
}

impl HfConfig {
    /// Parses a `config.json`.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_CONFIG_BYTES {
            return Err(config_err(format!(
                "{} bytes, more than the {MAX_CONFIG_BYTES} accepted",
                bytes.len()
            )));
        }
        let doc: Value =
            serde_json::from_slice(bytes).map_err(|e| config_err(format!("not JSON: {e}")))?;
        let Value::Object(map) = &doc else {
            return Err(config_err("not a JSON object".into()));
        };
        let field = |key: &str| map.get(key).filter(|v| !v.is_null());
        let uint = |key: &'static str| -> Result<Option<usize>> {
            field(key)
                .map(|v| {
                    v.as_u64()
                        .and_then(|n| usize::try_from(n).ok())
                        .ok_or_else(|| {
                            config_err(format!("{key} must be a non-negative integer, not {v}"))
                        })
                })
                .transpose()
        };
        let float = |v: &Value, key: &str| -> Result<f64> {
            v.as_f64()
                .filter(|f| f.is_finite())
                .ok_or_else(|| config_err(format!("{key} must be a number, not {v}")))
        };
        let flag = |key: &str| -> Result<Option<bool>> {
            field(key)
                .map(|v| {
                    v.as_bool()
                        .ok_or_else(|| config_err(format!("{key} must be true or false, not {v}")))
                })
                .transpose()
        };
        let rope_theta = match field("rope_theta") {
            Some(v) => Some(float(v, "rope_theta")?),
            None => match field("rope_parameters").and_then(|p| p.get("rope_theta")) {
                Some(v) => Some(float(v, "rope_parameters.rope_theta")?),
                None => None,
            },
        };
        let hidden_act = field("hidden_act")
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| config_err(format!("hidden_act must be a string, not {v}")))
            })
            .transpose()?;
        let rope_type = field("rope_parameters")
            .and_then(|p| p.get("rope_type"))
            .and_then(Value::as_str);
        Ok(Self {
            hidden_size: uint("hidden_size")?,
            num_hidden_layers: uint("num_hidden_layers")?,
            num_attention_heads: uint("num_attention_heads")?,
            num_key_value_heads: uint("num_key_value_heads")?,
            intermediate_size: uint("intermediate_size")?,
            vocab_size: uint("vocab_size")?,
            max_position_embeddings: uint("max_position_embeddings")?,
            rms_norm_eps: field("rms_norm_eps")
                .map(|v| float(v, "rms_norm_eps"))
                .transpose()?,
            rope_theta,
            hidden_act,
            tie_word_embeddings: flag("tie_word_embeddings")?,
            head_dim: uint("head_dim")?,
            rope_scaling: field("rope_scaling").is_some()
                || rope_type.is_some_and(|t| t != "default"),
            bias: flag("attention_bias")?.unwrap_or(false) || flag("mlp_bias")?.unwrap_or(false),
        })
    }

    /// Refuses what the backbone's architecture lacks (see the module docs).
    fn check_architecture(&self) -> Result<()> {
        if let Some(act) = &self.hidden_act
            && act != "relu2"
        {
            return Err(config_err(format!(
                "hidden_act {act:?} is not supported: the backbone's MLP is \
                 down(relu(gate(x))^2 * up(x)) (hidden_act \"relu2\")"
            )));
        }
        if let (Some(kv), Some(heads)) = (self.num_key_value_heads, self.num_attention_heads)
            && kv != heads
        {
            return Err(config_err(format!(
                "num_key_value_heads {kv} differs from num_attention_heads {heads}: \
                 grouped-query attention is not supported"
            )));
        }
        if self.rope_scaling {
            return Err(config_err(
                "rope_scaling is not supported (plain rotary positions only)".into(),
            ));
        }
        if self.bias {
            return Err(config_err(
                "attention_bias / mlp_bias are not supported (no biases)".into(),
            ));
        }
        if let (Some(hd), Some(d), Some(h)) =
            (self.head_dim, self.hidden_size, self.num_attention_heads)
            && h > 0
            && hd * h != d
        {
            return Err(config_err(format!(
                "head_dim {hd} x {h} heads is not hidden_size {d}: not supported"
            )));
        }
        Ok(())
    }
}

/// Tensor names of sub-layer norms, which this backbone lacks.
const SUB_NORMS: [&str; 4] = [
    "attn_sub_norm.",
    "ffn_sub_norm.",
    "inner_attn_ln.",
    "ffn_layernorm.",
];

/// Loads a Hugging Face style checkpoint (see the module documentation)
/// with the given `config.json` fields (all may be absent but
/// `num_attention_heads`). A file carrying r3mes metadata is loaded as the
/// canonical backbone file it is.
pub fn import(bytes: &[u8], hf: &HfConfig) -> Result<(Backbone, HfImport)> {
    let parsed = st::parse(bytes, Error::backbone)?;
    if parsed.metadata.contains_key(crate::backbone::METADATA_KEY) {
        return Ok((Backbone::from_safetensors(bytes)?, HfImport::default()));
    }
    hf.check_architecture()?;
    let shape_of = |name: &str| parsed.tensors.get(name).map(|t| t.shape.clone());
    let mut report = HfImport::default();
    let mut layer_ids = BTreeSet::new();
    for (name, raw) in &parsed.tensors {
        if name.ends_with(".rotary_emb.inv_freq") {
            report.ignored.push(name.clone());
            continue;
        }
        if SUB_NORMS.iter().any(|s| name.contains(s)) {
            return Err(Error::backbone(format!(
                "{name} {:?}: sub-layer norms (subln) are not part of this backbone",
                raw.shape
            )));
        }
        if name.ends_with(".bias") {
            return Err(Error::backbone(format!(
                "{name} {:?}: biases are not supported",
                raw.shape
            )));
        }
        if let Some(rest) = name.strip_prefix("model.layers.") {
            let index = rest.split('.').next().unwrap_or_default();
            let layer: usize = index
                .parse()
                .map_err(|_| Error::backbone(format!("{name}: layer index {index:?}")))?;
            if layer >= crate::config::MAX_LAYERS {
                return Err(Error::backbone(format!(
                    "{name}: layer {layer}, at most {} layers are supported",
                    crate::config::MAX_LAYERS
                )));
            }
            layer_ids.insert(layer);
        }
    }
    let embed = shape_of(EMBED).ok_or_else(|| {
        Error::backbone(format!(
            "missing tensor {EMBED} (the token embedding, [vocab_size, hidden_size])"
        ))
    })?;
    let [vocab, dim] = embed[..] else {
        return Err(Error::backbone(format!(
            "{EMBED}: shape {embed:?}, expected [vocab_size, hidden_size]"
        )));
    };
    let layers = layer_ids.last().map_or(0, |l| l + 1);
    if layers == 0 {
        return Err(Error::backbone("no model.layers.{i}.* tensors"));
    }
    if let Some(missing) = (0..layers).find(|l| !layer_ids.contains(l)) {
        return Err(Error::backbone(format!(
            "layers 0..{layers} present but no model.layers.{missing}.* tensors"
        )));
    }
    let gate = format!("model.layers.0.{}.weight", PROJECTIONS[4]);
    let gate_shape = shape_of(&gate).ok_or_else(|| {
        Error::backbone(format!(
            "missing tensor {gate} ([intermediate_size, hidden_size])"
        ))
    })?;
    let [mlp_hidden, gate_in] = gate_shape[..] else {
        return Err(Error::backbone(format!(
            "{gate}: shape {gate_shape:?}, expected [intermediate_size, hidden_size]"
        )));
    };
    if gate_in != dim {
        return Err(Error::backbone(format!(
            "{gate}: shape {gate_shape:?}, expected [intermediate_size, {dim}]"
        )));
    }
    for layer in 0..layers {
        for p in ["self_attn.k_proj", "self_attn.v_proj"] {
            let name = format!("model.layers.{layer}.{p}.weight");
            if let Some(shape) = shape_of(&name)
                && shape.len() == 2
                && shape[0] < dim
                && shape[1] == dim
            {
                return Err(Error::backbone(format!(
                    "{name}: shape {shape:?}, expected [{dim}, {dim}]: grouped-query \
                     attention (fewer key/value heads than query heads) is not supported"
                )));
            }
        }
    }
    let agree = |field: &str, given: Option<usize>, found: usize, from: &str| -> Result<()> {
        match given {
            Some(g) if g != found => {
                Err(config_err(format!("{field} {g}, but {from} gives {found}")))
            }
            _ => Ok(()),
        }
    };
    agree("hidden_size", hf.hidden_size, dim, EMBED)?;
    agree("vocab_size", hf.vocab_size, vocab, EMBED)?;
    agree(
        "num_hidden_layers",
        hf.num_hidden_layers,
        layers,
        "the model.layers.{i} tensors",
    )?;
    agree("intermediate_size", hf.intermediate_size, mlp_hidden, &gate)?;
    for (field, given) in [
        ("hidden_size", hf.hidden_size.is_some()),
        ("vocab_size", hf.vocab_size.is_some()),
        ("num_hidden_layers", hf.num_hidden_layers.is_some()),
        ("intermediate_size", hf.intermediate_size.is_some()),
    ] {
        if !given {
            report.inferred.push(field);
        }
    }
    let heads = hf.num_attention_heads.ok_or_else(|| {
        config_err(
            "num_attention_heads is needed and cannot be inferred from the shapes \
             (give config.json or the head count)"
                .into(),
        )
    })?;
    let tied = shape_of(HEAD).is_none();
    if tied && hf.tie_word_embeddings == Some(false) {
        return Err(Error::backbone(format!(
            "missing tensor {HEAD} ([{vocab}, {dim}]) while config.json says \
             tie_word_embeddings false"
        )));
    }
    report.tied_head = tied;
    let max_positions = match hf.max_position_embeddings {
        Some(m) => m,
        None => {
            report.inferred.push("max_position_embeddings");
            DEFAULT_MAX_POSITIONS
        }
    };
    let rope_theta = match hf.rope_theta {
        Some(t) => t as f32,
        None => {
            report.inferred.push("rope_theta");
            DEFAULT_ROPE_THETA
        }
    };
    let norm_eps = match hf.rms_norm_eps {
        Some(e) => e as f32,
        None => {
            report.inferred.push("rms_norm_eps");
            DEFAULT_NORM_EPS
        }
    };
    let config = BackboneConfig {
        vocab_size: vocab,
        layers,
        dim,
        heads,
        mlp_hidden,
        max_seq_len: max_positions.min(MAX_SEQ_LEN),
        rope_theta,
        norm_eps,
    };
    config
        .validate()
        .map_err(|e| Error::backbone(format!("unsupported shape: {e}")))?;
    let options = LoadOptions {
        tied_head: tied,
        ignored: report.ignored.len(),
    };
    let backbone = Backbone::from_parsed(&parsed, config, &options)?;
    Ok((backbone, report))
}
