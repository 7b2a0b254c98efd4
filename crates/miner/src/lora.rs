//! [`LoraAdapters`]: the trainable part of the model, one LoRA adapter on
//! every projection of every block (attention q, k, v, o and MLP gate, up,
//! down), as the seed's `LoRAAdapter`.
//!
//! An adapter on a projection `W` (`out x in`) adds `(alpha / rank) · B A x`
//! to its output, with `A` `rank x in`, `B` `out x rank` and the scalar
//! `alpha`. `A`, `B` and `alpha` are the only trainable parameters of the
//! model. At init `A` is uniform in `±1/sqrt(in)` (Kaiming-uniform with
//! `a = sqrt(5)`, as PEFT does) from the seeded stream
//! [`crate::rng::LORA_A_DOMAIN`], `B` is zero (so the model starts as the
//! backbone; note that `B = 0` makes the gradient of `A` zero on the first
//! step), and `alpha` is the configured value.
//!
//! # File layout (tensor naming)
//!
//! For every layer id `model.layers.{i}.{self_attn.q_proj, ..., mlp.down_proj}`:
//! `{layer_id}.lora_a` (`[rank, in]`), `{layer_id}.lora_b` (`[out, rank]`)
//! and `{layer_id}.alpha` (`[]`), all F32, or all F16 when the precision is
//! fp16. The single metadata entry `r3mes.lora` holds the [`LoraConfig`] as
//! JSON (its `alpha` is the initial alpha; each adapter's current alpha is
//! its tensor).

use std::collections::BTreeMap;

use candle_core::{Device, Tensor, Var};
use r3mes_tensor::LoRAAdapterGradient;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::backbone::{PROJECTIONS, layer_id, projection_shape};
use crate::config::{BackboneConfig, LoraConfig, Precision};
use crate::st::{self, Owned};
use crate::{Error, Result, rng};

/// Metadata key of the adapters file.
pub const METADATA_KEY: &str = "r3mes.lora";

/// The seed's `LoRAAdapter`, as plain data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(clippy::upper_case_acronyms)]
pub struct LoRAAdapter {
    /// `model.layers.{i}.{projection}`.
    pub layer_id: String,
    /// Rank, 4 to 64.
    pub rank: u64,
    /// `A`, rank x input_dim, row-major.
    pub matrix_a: Vec<f32>,
    /// `B`, output_dim x rank, row-major.
    pub matrix_b: Vec<f32>,
    /// Scaling factor (the output is scaled by `alpha / rank`).
    pub alpha: f32,
    /// `"fp16"` or `"fp32"`.
    pub precision: String,
}

/// One trainable adapter.
#[derive(Debug)]
pub struct LoraAdapter {
    layer_id: String,
    rank: usize,
    out_features: usize,
    in_features: usize,
    a: Var,
    b: Var,
    alpha: Var,
}

impl LoraAdapter {
    /// `model.layers.{i}.{projection}`.
    pub fn layer_id(&self) -> &str {
        &self.layer_id
    }

    /// `(out_features, in_features)` of the adapted projection.
    pub fn shape(&self) -> (usize, usize) {
        (self.out_features, self.in_features)
    }

    /// The rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    pub(crate) fn vars(&self) -> [&Var; 3] {
        [&self.a, &self.b, &self.alpha]
    }

    /// `(alpha / rank) · x A^T B^T` for `x` of shape `[batch, seq, in]`.
    ///
    /// `A^T` and `B^T` are materialised per sequence so that every matmul is
    /// one product per sequence with the same shapes whatever the batch
    /// size: a sequence's forward pass is bit-identical in any micro-batch.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let batch = x.dim(0)?;
        let a_t = self
            .a
            .as_tensor()
            .t()?
            .broadcast_as((batch, self.in_features, self.rank))?
            .contiguous()?;
        let b_t = self
            .b
            .as_tensor()
            .t()?
            .broadcast_as((batch, self.rank, self.out_features))?
            .contiguous()?;
        let h = x.matmul(&a_t)?.matmul(&b_t)?;
        let scale = self.alpha.as_tensor().affine(1.0 / self.rank as f64, 0.0)?;
        Ok(h.broadcast_mul(&scale)?)
    }

    /// `A` row-major.
    pub fn matrix_a(&self) -> Result<Vec<f32>> {
        Ok(self.a.as_tensor().flatten_all()?.to_vec1()?)
    }

    /// `B` row-major.
    pub fn matrix_b(&self) -> Result<Vec<f32>> {
        Ok(self.b.as_tensor().flatten_all()?.to_vec1()?)
    }

    /// Current alpha.
    pub fn alpha(&self) -> Result<f32> {
        Ok(self.alpha.as_tensor().to_scalar()?)
    }
}

/// The adapters of a model, in block order then [`PROJECTIONS`] order.
#[derive(Debug)]
pub struct LoraAdapters {
    config: LoraConfig,
    adapters: Vec<LoraAdapter>,
}

fn var(values: Vec<f32>, shape: &[usize]) -> Result<Var> {
    Ok(Var::from_tensor(&Tensor::from_vec(
        values,
        shape,
        &Device::Cpu,
    )?)?)
}

impl LoraAdapters {
    /// Fresh adapters for a backbone of `backbone` shape: `A` from the seeded
    /// stream, `B` zero, alpha from `config`.
    pub fn init(backbone: &BackboneConfig, config: &LoraConfig, seed: u64) -> Result<Self> {
        backbone.validate()?;
        config.validate()?;
        let p = config.precision;
        let mut adapters = Vec::with_capacity(backbone.layers * PROJECTIONS.len());
        for layer in 0..backbone.layers {
            for (index, proj) in PROJECTIONS.iter().enumerate() {
                let (out, inp) = projection_shape(backbone, index);
                let id = layer_id(layer, proj);
                let bound = 1.0 / (inp as f32).sqrt();
                let a = rng::uniform(
                    rng::LORA_A_DOMAIN,
                    seed,
                    &format!("{id}.lora_a"),
                    config.rank * inp,
                    bound,
                );
                adapters.push(LoraAdapter {
                    a: var(
                        a.into_iter().map(|v| p.round(v)).collect(),
                        &[config.rank, inp],
                    )?,
                    b: var(vec![0.0; out * config.rank], &[out, config.rank])?,
                    alpha: var(vec![p.round(config.alpha)], &[])?,
                    layer_id: id,
                    rank: config.rank,
                    out_features: out,
                    in_features: inp,
                });
            }
        }
        Ok(Self {
            config: config.clone(),
            adapters,
        })
    }

    /// Replaces every `B` by values uniform in `±bound` from the seeded
    /// stream [`rng::LORA_B_DOMAIN`] (tests and benchmarks use it to get
    /// adapters whose every gradient is nonzero).
    pub fn fill_b_from_seed(&mut self, seed: u64, bound: f32) -> Result<()> {
        let p = self.config.precision;
        for ad in &mut self.adapters {
            let name = format!("{}.lora_b", ad.layer_id);
            let values = rng::uniform(
                rng::LORA_B_DOMAIN,
                seed,
                &name,
                ad.out_features * ad.rank,
                bound,
            );
            let values: Vec<f32> = values.into_iter().map(|v| p.round(v)).collect();
            ad.b.set(&Tensor::from_vec(
                values,
                (ad.out_features, ad.rank),
                &Device::Cpu,
            )?)?;
        }
        Ok(())
    }

    /// The configuration.
    pub fn config(&self) -> &LoraConfig {
        &self.config
    }

    /// The adapters.
    pub fn adapters(&self) -> &[LoraAdapter] {
        &self.adapters
    }

    /// Adapter of projection `index` of block `layer`.
    pub(crate) fn get(&self, layer: usize, index: usize) -> Option<&LoraAdapter> {
        self.adapters.get(layer * PROJECTIONS.len() + index)
    }

    /// Whether these adapters fit a backbone of `config` shape.
    pub fn fits(&self, config: &BackboneConfig) -> bool {
        self.adapters.len() == config.layers * PROJECTIONS.len()
            && self.adapters.iter().enumerate().all(|(i, ad)| {
                let (out, inp) = projection_shape(config, i % PROJECTIONS.len());
                ad.out_features == out && ad.in_features == inp
            })
    }

    /// The seed's `LoRAAdapter` records.
    pub fn to_seed(&self) -> Result<Vec<LoRAAdapter>> {
        self.adapters
            .iter()
            .map(|ad| {
                Ok(LoRAAdapter {
                    layer_id: ad.layer_id.clone(),
                    rank: ad.rank as u64,
                    matrix_a: ad.matrix_a()?,
                    matrix_b: ad.matrix_b()?,
                    alpha: ad.alpha()?,
                    precision: self.config.precision.as_str().to_string(),
                })
            })
            .collect()
    }

    /// One plain SGD step: every parameter `p -= lr * grad(p)`, the result
    /// rounded to the storage precision. Every adapter must have a gradient
    /// of the right shape.
    pub fn apply_sgd(
        &mut self,
        gradients: &BTreeMap<String, LoRAAdapterGradient>,
        lr: f32,
    ) -> Result<()> {
        let p = self.config.precision;
        // Check everything first: a failed step changes nothing.
        for ad in &self.adapters {
            let g = gradients.get(&ad.layer_id).ok_or_else(|| Error::Shape {
                name: ad.layer_id.clone(),
                detail: "no gradient for this adapter".into(),
            })?;
            let want_a = [ad.rank as u64, ad.in_features as u64];
            let want_b = [ad.out_features as u64, ad.rank as u64];
            if g.shape_a != want_a
                || g.shape_b != want_b
                || g.grad_a.len() != ad.rank * ad.in_features
                || g.grad_b.len() != ad.out_features * ad.rank
            {
                return Err(Error::Shape {
                    name: ad.layer_id.clone(),
                    detail: format!(
                        "gradient shapes {:?} / {:?}, adapter {want_a:?} / {want_b:?}",
                        g.shape_a, g.shape_b
                    ),
                });
            }
        }
        let step = |values: Vec<f32>, grad: &[f32]| -> Vec<f32> {
            values
                .iter()
                .zip(grad)
                .map(|(v, g)| p.round(v - lr * g))
                .collect()
        };
        for ad in &mut self.adapters {
            let Some(g) = gradients.get(&ad.layer_id) else {
                continue;
            };
            let a = step(ad.matrix_a()?, &g.grad_a);
            ad.a.set(&Tensor::from_vec(
                a,
                (ad.rank, ad.in_features),
                &Device::Cpu,
            )?)?;
            let b = step(ad.matrix_b()?, &g.grad_b);
            ad.b.set(&Tensor::from_vec(
                b,
                (ad.out_features, ad.rank),
                &Device::Cpu,
            )?)?;
            let alpha = step(vec![ad.alpha()?], &[g.grad_alpha]);
            ad.alpha.set(&Tensor::from_vec(alpha, (), &Device::Cpu)?)?;
        }
        Ok(())
    }

    /// The canonical safetensors bytes (layout in the module documentation).
    pub fn to_safetensors(&self) -> Result<Vec<u8>> {
        let p = self.config.precision;
        let mut tensors = Vec::with_capacity(self.adapters.len() * 3);
        let make = |name: String, shape: Vec<usize>, values: &[f32]| match p {
            Precision::Fp32 => Owned::f32(name, shape, values),
            Precision::Fp16 => Owned::f16(name, shape, values),
        };
        for ad in &self.adapters {
            let id = &ad.layer_id;
            tensors.push(make(
                format!("{id}.lora_a"),
                vec![ad.rank, ad.in_features],
                &ad.matrix_a()?,
            ));
            tensors.push(make(
                format!("{id}.lora_b"),
                vec![ad.out_features, ad.rank],
                &ad.matrix_b()?,
            ));
            tensors.push(make(format!("{id}.alpha"), vec![], &[ad.alpha()?]));
        }
        let meta = serde_json::to_string(&self.config).map_err(|e| Error::Config(e.to_string()))?;
        st::write(&tensors, METADATA_KEY, meta)
    }

    /// Lowercase hex SHA-256 of [`Self::to_safetensors`].
    pub fn hash(&self) -> Result<String> {
        Ok(hex::encode(Sha256::digest(self.to_safetensors()?)))
    }

    /// Loads an adapters file for a backbone of `backbone` shape: every
    /// adapter must be present with the exact shapes, nothing else may be.
    pub fn from_safetensors(bytes: &[u8], backbone: &BackboneConfig) -> Result<Self> {
        backbone
            .validate()
            .map_err(|e| Error::lora(e.to_string()))?;
        let parsed = st::parse(bytes, Error::lora)?;
        let json = parsed
            .metadata
            .get(METADATA_KEY)
            .ok_or_else(|| Error::lora(format!("no {METADATA_KEY} metadata")))?;
        if json.len() > 64 * 1024 {
            return Err(Error::lora("metadata too long"));
        }
        let config: LoraConfig = serde_json::from_str(json)
            .map_err(|e| Error::lora(format!("metadata {METADATA_KEY}: {e}")))?;
        config.validate().map_err(|e| Error::lora(e.to_string()))?;
        let expected = backbone.layers * PROJECTIONS.len() * 3;
        if parsed.tensors.len() != expected {
            return Err(Error::lora(format!(
                "{} tensors, expected {expected}",
                parsed.tensors.len()
            )));
        }
        let want = match config.precision {
            Precision::Fp32 => st::Dtype::F32,
            Precision::Fp16 => st::Dtype::F16,
        };
        let read = |name: String, shape: &[usize]| -> Result<Vec<f32>> {
            let raw = parsed
                .tensors
                .get(&name)
                .ok_or_else(|| Error::lora(format!("missing tensor {name}")))?;
            raw.expect_shape(&name, shape, Error::lora)?;
            if raw.dtype != want {
                return Err(Error::lora(format!(
                    "{name}: dtype {:?}, precision {} needs {want:?}",
                    raw.dtype,
                    config.precision.as_str()
                )));
            }
            raw.floats(&name, Error::lora)
        };
        let r = config.rank;
        let mut adapters = Vec::with_capacity(backbone.layers * PROJECTIONS.len());
        for layer in 0..backbone.layers {
            for (index, proj) in PROJECTIONS.iter().enumerate() {
                let (out, inp) = projection_shape(backbone, index);
                let id = layer_id(layer, proj);
                let a = read(format!("{id}.lora_a"), &[r, inp])?;
                let b = read(format!("{id}.lora_b"), &[out, r])?;
                let alpha = read(format!("{id}.alpha"), &[])?;
                adapters.push(LoraAdapter {
                    a: var(a, &[r, inp])?,
                    b: var(b, &[out, r])?,
                    alpha: var(alpha, &[])?,
                    layer_id: id,
                    rank: r,
                    out_features: out,
                    in_features: inp,
                });
            }
        }
        Ok(Self { config, adapters })
    }

    /// Reads and loads an adapters file.
    pub fn load_file(path: &std::path::Path, backbone: &BackboneConfig) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_safetensors(&bytes, backbone)
    }

    /// Writes the canonical file.
    pub fn save_file(&self, path: &std::path::Path) -> Result<()> {
        std::fs::write(path, self.to_safetensors()?).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })
    }
}
