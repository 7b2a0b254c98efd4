//! [`Backbone`]: the frozen BitNet b1.58 style model (the seed's
//! `FrozenBackboneLayers`), its deterministic initialisation, its
//! safetensors file and its `backbone_hash`.
//!
//! # Architecture
//!
//! Decoder-only transformer, pre-norm: token embedding; `layers` blocks of
//! `h += o_proj(attention(rope(q_proj(n)), rope(k_proj(n)), v_proj(n)))` with
//! `n = rms_norm(h)` (causal, `heads` heads, rotary positions), then
//! `h += down_proj(relu(gate_proj(m))^2 * up_proj(m))` with `m = rms_norm(h)`
//! (the squared-ReLU gated MLP of BitNet b1.58 2B4T); a final RMS norm and the
//! LM head. Every projection and the LM head is a BitLinear layer (see
//! [`crate::quant`]); the embedding and the norm weights stay fp32, as in
//! BitNet. Nothing here is trainable: only the LoRA adapters are.
//!
//! # File layout (tensor naming)
//!
//! | tensor | dtype | shape |
//! | --- | --- | --- |
//! | `model.embed_tokens.weight` | F32 | `[vocab, dim]` |
//! | `model.layers.{i}.input_layernorm.weight` | F32 | `[dim]` |
//! | `model.layers.{i}.self_attn.{q,k,v,o}_proj.weight` | I8 ternary | `[dim, dim]` |
//! | `model.layers.{i}.post_attention_layernorm.weight` | F32 | `[dim]` |
//! | `model.layers.{i}.mlp.{gate,up}_proj.weight` | I8 ternary | `[mlp_hidden, dim]` |
//! | `model.layers.{i}.mlp.down_proj.weight` | I8 ternary | `[dim, mlp_hidden]` |
//! | `model.norm.weight` | F32 | `[dim]` |
//! | `lm_head.weight` | I8 ternary | `[vocab, dim]` |
//!
//! Each I8 `X.weight` has an F32 scalar (shape `[]`) `X.weight_scale`, its
//! absmean scale; weights are `out x in` (row `o` maps the input to output
//! `o`). The single metadata entry `r3mes.backbone` holds the
//! [`BackboneConfig`] as JSON. A file may instead hold latent float weights
//! (F32, F16 or BF16) for the projections, without `weight_scale`: they are
//! quantised at load, so a Hugging Face style checkpoint with these names and
//! shapes loads with [`Backbone::from_safetensors_with_config`], or with
//! [`crate::hf::import`], which reads its `config.json`, infers the rest
//! from the shapes, accepts tied embeddings and says exactly which feature
//! of an unsupported checkpoint is missing here.
//!
//! The canonical file is what [`Backbone::to_safetensors`] writes (always the
//! ternary form), and `backbone_hash` is the lowercase hex SHA-256 of it: two
//! checkpoints that quantise to the same ternary weights have the same hash.

use candle_core::{DType, Device, Tensor};
use sha2::{Digest, Sha256};

use crate::config::BackboneConfig;
use crate::quant::{self, Ternary};
use crate::rng;
use crate::st::{self, Dtype, Owned};
use crate::{Error, Result};

/// Metadata key of the backbone file.
pub const METADATA_KEY: &str = "r3mes.backbone";

/// The projections of a block, by name under `model.layers.{i}.`, in the
/// order of [`Block::projections`].
pub const PROJECTIONS: [&str; 7] = [
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
];

/// `(out, in)` of projection `index` of [`PROJECTIONS`].
pub fn projection_shape(config: &BackboneConfig, index: usize) -> (usize, usize) {
    match index {
        0..=3 => (config.dim, config.dim),
        4 | 5 => (config.mlp_hidden, config.dim),
        _ => (config.dim, config.mlp_hidden),
    }
}

/// Layer id of a projection: `model.layers.{layer}.{projection}`.
pub fn layer_id(layer: usize, projection: &str) -> String {
    format!("model.layers.{layer}.{projection}")
}

/// A frozen BitLinear layer: ternary weights and their scale.
#[derive(Debug, Clone)]
pub struct BitLinear {
    ternary: Ternary,
    out_features: usize,
    in_features: usize,
    /// `W_q^T` as f32 `[in, out]` (a transposed view), ready for `x · W_q^T`.
    weight_t: Tensor,
}

impl BitLinear {
    fn new(ternary: Ternary, out_features: usize, in_features: usize) -> Result<Self> {
        let values: Vec<f32> = ternary.values.iter().map(|v| f32::from(*v)).collect();
        let weight = Tensor::from_vec(values, (out_features, in_features), &Device::Cpu)?;
        Ok(Self {
            ternary,
            out_features,
            in_features,
            weight_t: weight.t()?,
        })
    }

    /// The ternary weights, `out x in` row-major.
    pub fn ternary(&self) -> &Ternary {
        &self.ternary
    }

    /// `(out_features, in_features)`.
    pub fn shape(&self) -> (usize, usize) {
        (self.out_features, self.in_features)
    }

    /// `x · (W_q * scale)^T` with 8-bit activations: `x` is `[batch, seq, in]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (q, down) = quant::activations(x)?;
        // Integer operands: exact whatever the kernel's summation order.
        let y = q.broadcast_matmul(&self.weight_t)?;
        Ok(y.broadcast_mul(&down)?
            .affine(f64::from(self.ternary.scale), 0.0)?)
    }
}

/// One transformer block.
#[derive(Debug, Clone)]
pub struct Block {
    /// Weight of the RMS norm before attention.
    pub(crate) attn_norm: Tensor,
    /// Weight of the RMS norm before the MLP.
    pub(crate) mlp_norm: Tensor,
    /// q, k, v, o, gate, up, down (the order of [`PROJECTIONS`]).
    pub(crate) projections: Vec<BitLinear>,
}

impl Block {
    /// The BitLinear layers in the order of [`PROJECTIONS`].
    pub fn projections(&self) -> &[BitLinear] {
        &self.projections
    }
}

/// The frozen backbone.
#[derive(Debug, Clone)]
pub struct Backbone {
    config: BackboneConfig,
    embed: Tensor,
    blocks: Vec<Block>,
    norm: Tensor,
    head: BitLinear,
    hash: String,
}

/// How a projection's weights were found in a file.
enum Source {
    Latent(Vec<f32>),
    Stored(Ternary),
}

impl Backbone {
    /// A backbone whose latent weights come from the seeded ChaCha streams of
    /// [`crate::rng`] (domain [`rng::BACKBONE_DOMAIN`], one stream per tensor
    /// name): the embedding uniform in `[-1, 1)`, each projection and the
    /// head uniform in `±1/sqrt(in)` then quantised to ternary; norm weights
    /// are ones. The same seed gives bit-identical weights on every machine.
    pub fn init(config: &BackboneConfig, seed: u64) -> Result<Self> {
        config.validate()?;
        let (v, d) = (config.vocab_size, config.dim);
        let embed = rng::uniform(rng::BACKBONE_DOMAIN, seed, EMBED, v * d, 1.0);
        let latent = |name: &str, out: usize, inp: usize| {
            let bound = 1.0 / (inp as f32).sqrt();
            quant::ternary(&rng::uniform(
                rng::BACKBONE_DOMAIN,
                seed,
                name,
                out * inp,
                bound,
            ))
        };
        let mut blocks = Vec::with_capacity(config.layers);
        for layer in 0..config.layers {
            let mut projections = Vec::with_capacity(PROJECTIONS.len());
            for (index, p) in PROJECTIONS.iter().enumerate() {
                let (out, inp) = projection_shape(config, index);
                let name = format!("{}.weight", layer_id(layer, p));
                projections.push(BitLinear::new(latent(&name, out, inp), out, inp)?);
            }
            blocks.push(Block {
                attn_norm: ones(d)?,
                mlp_norm: ones(d)?,
                projections,
            });
        }
        let head = BitLinear::new(latent(HEAD, v, d), v, d)?;
        Self::assemble(config.clone(), embed, blocks, ones(d)?, head)
    }

    fn assemble(
        config: BackboneConfig,
        embed: Vec<f32>,
        blocks: Vec<Block>,
        norm: Tensor,
        head: BitLinear,
    ) -> Result<Self> {
        let embed = Tensor::from_vec(embed, (config.vocab_size, config.dim), &Device::Cpu)?;
        let mut backbone = Self {
            config,
            embed,
            blocks,
            norm,
            head,
            hash: String::new(),
        };
        backbone.hash = hex::encode(Sha256::digest(backbone.to_safetensors()?));
        Ok(backbone)
    }

    /// The configuration.
    pub fn config(&self) -> &BackboneConfig {
        &self.config
    }

    /// `backbone_hash`: lowercase hex SHA-256 of [`Self::to_safetensors`].
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The transformer blocks.
    pub fn blocks(&self) -> &[Block] {
        &self.blocks
    }

    /// The LM head.
    pub fn head(&self) -> &BitLinear {
        &self.head
    }

    pub(crate) fn embed(&self) -> &Tensor {
        &self.embed
    }

    pub(crate) fn final_norm(&self) -> &Tensor {
        &self.norm
    }

    /// The canonical safetensors bytes (layout in the module documentation).
    pub fn to_safetensors(&self) -> Result<Vec<u8>> {
        let c = &self.config;
        let mut tensors = Vec::with_capacity(3 + c.layers * (2 + 2 * PROJECTIONS.len()));
        tensors.push(Owned::f32(
            EMBED,
            vec![c.vocab_size, c.dim],
            &floats(&self.embed)?,
        ));
        for (layer, block) in self.blocks.iter().enumerate() {
            tensors.push(Owned::f32(
                format!("model.layers.{layer}.{ATTN_NORM}"),
                vec![c.dim],
                &floats(&block.attn_norm)?,
            ));
            tensors.push(Owned::f32(
                format!("model.layers.{layer}.{MLP_NORM}"),
                vec![c.dim],
                &floats(&block.mlp_norm)?,
            ));
            for (p, lin) in PROJECTIONS.iter().zip(&block.projections) {
                push_ternary(&mut tensors, &format!("{}.weight", layer_id(layer, p)), lin);
            }
        }
        tensors.push(Owned::f32(FINAL_NORM, vec![c.dim], &floats(&self.norm)?));
        push_ternary(&mut tensors, HEAD, &self.head);
        let meta = serde_json::to_string(c).map_err(|e| Error::Config(e.to_string()))?;
        st::write(&tensors, METADATA_KEY, meta)
    }

    /// Loads a backbone file whose configuration is in its metadata.
    pub fn from_safetensors(bytes: &[u8]) -> Result<Self> {
        Self::load(bytes, None)
    }

    /// Loads a backbone file with the given configuration (for checkpoints
    /// without r3mes metadata); if the file has metadata it must agree.
    pub fn from_safetensors_with_config(bytes: &[u8], config: &BackboneConfig) -> Result<Self> {
        Self::load(bytes, Some(config))
    }

    /// Reads and loads a backbone file.
    pub fn load_file(path: &std::path::Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_safetensors(&bytes)
    }

    /// Writes the canonical file.
    pub fn save_file(&self, path: &std::path::Path) -> Result<()> {
        std::fs::write(path, self.to_safetensors()?).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })
    }

    fn load(bytes: &[u8], given: Option<&BackboneConfig>) -> Result<Self> {
        let parsed = st::parse(bytes, Error::backbone)?;
        let stored = match parsed.metadata.get(METADATA_KEY) {
            Some(json) => {
                if json.len() > 64 * 1024 {
                    return Err(Error::backbone("metadata too long"));
                }
                let c: BackboneConfig = serde_json::from_str(json)
                    .map_err(|e| Error::backbone(format!("metadata {METADATA_KEY}: {e}")))?;
                Some(c)
            }
            None => None,
        };
        let config = match (given, stored) {
            (Some(g), Some(s)) if *g != s => {
                return Err(Error::backbone(format!(
                    "file configuration {s:?} differs from the given {g:?}"
                )));
            }
            (Some(g), _) => g.clone(),
            (None, Some(s)) => s,
            (None, None) => {
                return Err(Error::backbone(format!(
                    "no {METADATA_KEY} metadata: give the configuration"
                )));
            }
        };
        Self::from_parsed(&parsed, config, &LoadOptions::default())
    }

    /// Builds the backbone of `config` from the tensors of `parsed`,
    /// refusing any tensor it does not use (but `options.ignored` of them).
    pub(crate) fn from_parsed(
        parsed: &st::Parsed<'_>,
        config: BackboneConfig,
        options: &LoadOptions,
    ) -> Result<Self> {
        config
            .validate()
            .map_err(|e| Error::backbone(e.to_string()))?;
        let mut used = options.ignored;
        let mut float = |name: &str, shape: &[usize]| -> Result<Vec<f32>> {
            let raw = parsed
                .tensors
                .get(name)
                .ok_or_else(|| Error::backbone(format!("missing tensor {name}")))?;
            raw.expect_shape(name, shape, Error::backbone)?;
            used += 1;
            raw.floats(name, Error::backbone)
        };
        let (v, d) = (config.vocab_size, config.dim);
        let embed = float(EMBED, &[v, d])?;
        let mut norms = Vec::with_capacity(2 * config.layers + 1);
        for layer in 0..config.layers {
            norms.push(float(&format!("model.layers.{layer}.{ATTN_NORM}"), &[d])?);
            norms.push(float(&format!("model.layers.{layer}.{MLP_NORM}"), &[d])?);
        }
        let final_norm = float(FINAL_NORM, &[d])?;
        let mut linear = |name: &str, out: usize, inp: usize| -> Result<BitLinear> {
            let source = read_projection(parsed, name, out, inp)?;
            let ternary = match source {
                Source::Latent(w) => {
                    used += 1;
                    quant::ternary(&w)
                }
                Source::Stored(t) => {
                    used += 2;
                    t
                }
            };
            BitLinear::new(ternary, out, inp)
        };
        let mut blocks = Vec::with_capacity(config.layers);
        let mut norms = norms.into_iter();
        for layer in 0..config.layers {
            let mut projections = Vec::with_capacity(PROJECTIONS.len());
            for (index, p) in PROJECTIONS.iter().enumerate() {
                let (out, inp) = projection_shape(&config, index);
                projections.push(linear(&format!("{}.weight", layer_id(layer, p)), out, inp)?);
            }
            let mut norm = || -> Result<Tensor> {
                let w = norms.next().ok_or_else(|| Error::backbone("norm count"))?;
                Ok(Tensor::from_vec(w, d, &Device::Cpu)?)
            };
            blocks.push(Block {
                attn_norm: norm()?,
                mlp_norm: norm()?,
                projections,
            });
        }
        let head = if options.tied_head {
            BitLinear::new(quant::ternary(&embed), v, d)?
        } else {
            linear(HEAD, v, d)?
        };
        if used != parsed.tensors.len() {
            let known = expected_names(&config);
            let extra: Vec<&String> = parsed
                .tensors
                .keys()
                .filter(|k| !known.contains(k))
                .take(3)
                .collect();
            return Err(Error::backbone(format!("unexpected tensors {extra:?}")));
        }
        let final_norm = Tensor::from_vec(final_norm, d, &Device::Cpu)?;
        Self::assemble(config, embed, blocks, final_norm, head)
    }
}

/// How [`Backbone::from_parsed`] reads a file beyond the canonical layout.
#[derive(Debug, Default)]
pub(crate) struct LoadOptions {
    /// No `lm_head.weight`: the head is the ternary quantisation of the
    /// embedding (tied embeddings).
    pub tied_head: bool,
    /// Tensors of the file deliberately left unused.
    pub ignored: usize,
}

pub(crate) const EMBED: &str = "model.embed_tokens.weight";
const ATTN_NORM: &str = "input_layernorm.weight";
const MLP_NORM: &str = "post_attention_layernorm.weight";
const FINAL_NORM: &str = "model.norm.weight";
pub(crate) const HEAD: &str = "lm_head.weight";

/// Every tensor name a canonical file of `config` holds.
fn expected_names(config: &BackboneConfig) -> Vec<String> {
    let mut names = vec![EMBED.to_string(), FINAL_NORM.to_string()];
    let mut push_linear = |base: String| {
        names.push(format!("{base}_scale"));
        names.push(base);
    };
    push_linear(HEAD.to_string());
    for layer in 0..config.layers {
        for p in PROJECTIONS {
            push_linear(format!("{}.weight", layer_id(layer, p)));
        }
    }
    for layer in 0..config.layers {
        names.push(format!("model.layers.{layer}.{ATTN_NORM}"));
        names.push(format!("model.layers.{layer}.{MLP_NORM}"));
    }
    names
}

fn read_projection(parsed: &st::Parsed<'_>, name: &str, out: usize, inp: usize) -> Result<Source> {
    let raw = parsed
        .tensors
        .get(name)
        .ok_or_else(|| Error::backbone(format!("missing tensor {name}")))?;
    raw.expect_shape(name, &[out, inp], Error::backbone)?;
    let scale_name = format!("{name}_scale");
    let scale = parsed.tensors.get(&scale_name);
    match (raw.dtype, scale) {
        (Dtype::I8, Some(scale)) => {
            scale.expect_shape(&scale_name, &[], Error::backbone)?;
            let s = scale.floats(&scale_name, Error::backbone)?;
            let s = s.first().copied().unwrap_or(0.0);
            if s <= 0.0 {
                return Err(Error::backbone(format!(
                    "{scale_name}: scale {s} must be > 0"
                )));
            }
            let mut values = Vec::with_capacity(raw.data.len());
            for byte in raw.data {
                let v = i8::from_le_bytes([*byte]);
                if !(-1..=1).contains(&v) {
                    return Err(Error::backbone(format!("{name}: value {v} is not ternary")));
                }
                values.push(v);
            }
            Ok(Source::Stored(Ternary { values, scale: s }))
        }
        (Dtype::I8, None) => Err(Error::backbone(format!(
            "{name}: I8 weights without {scale_name}"
        ))),
        (_, Some(_)) => Err(Error::backbone(format!(
            "{name}: {scale_name} given for latent float weights"
        ))),
        (Dtype::U8 | Dtype::I32 | Dtype::U32, None) => Err(Error::backbone(format!(
            "{name}: dtype {:?} (packed or integer weights) is not supported: give the \
             latent F32, F16 or BF16 master weights",
            raw.dtype
        ))),
        (_, None) => Ok(Source::Latent(raw.floats(name, Error::backbone)?)),
    }
}

fn push_ternary(tensors: &mut Vec<Owned>, name: &str, lin: &BitLinear) {
    let (out, inp) = lin.shape();
    tensors.push(Owned {
        name: name.to_string(),
        dtype: Dtype::I8,
        shape: vec![out, inp],
        data: lin
            .ternary
            .values
            .iter()
            .map(|v| v.to_le_bytes()[0])
            .collect(),
    });
    tensors.push(Owned::f32(
        format!("{name}_scale"),
        vec![],
        &[lin.ternary.scale],
    ));
}

fn ones(n: usize) -> Result<Tensor> {
    Ok(Tensor::ones(n, DType::F32, &Device::Cpu)?)
}

fn floats(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_vec1::<f32>()?)
}
