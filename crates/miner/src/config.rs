//! Configurations: [`BackboneConfig`] (the frozen BitNet model's shape) and
//! [`LoraConfig`] (rank, alpha and storage precision of the adapters), each
//! with the limits a configuration must respect. Configurations read from a
//! file are validated before anything is allocated from them.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Largest vocabulary accepted (token ids are `u32`).
pub const MAX_VOCAB: usize = 1 << 20;
/// Largest model width accepted.
pub const MAX_DIM: usize = 16_384;
/// Largest MLP hidden width accepted.
pub const MAX_MLP_HIDDEN: usize = 65_536;
/// Largest number of transformer blocks accepted.
pub const MAX_LAYERS: usize = 256;
/// Largest number of attention heads accepted.
pub const MAX_HEADS: usize = 256;
/// Longest sequence a model may be built for.
pub const MAX_SEQ_LEN: usize = 8192;
/// Largest number of backbone parameters accepted (a 2^33 sanity bound).
pub const MAX_PARAMS: u64 = 1 << 33;
/// Smallest LoRA rank (the seed's range is 4 to 64).
pub const MIN_RANK: usize = 4;
/// Largest LoRA rank.
pub const MAX_RANK: usize = 64;

/// Shape of the frozen backbone: a decoder-only transformer whose block
/// projections and LM head are BitLinear layers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackboneConfig {
    /// Vocabulary size; 256 is the byte-level tokenizer.
    pub vocab_size: usize,
    /// Number of transformer blocks.
    pub layers: usize,
    /// Model width.
    pub dim: usize,
    /// Attention heads; `dim / heads` must be even (rotary embeddings).
    pub heads: usize,
    /// Hidden width of the gated MLP.
    pub mlp_hidden: usize,
    /// Longest sequence the model accepts (2048: one whole chunk).
    pub max_seq_len: usize,
    /// Base of the rotary position embedding.
    pub rope_theta: f32,
    /// Epsilon of the RMS norms.
    pub norm_eps: f32,
}

impl Default for BackboneConfig {
    /// The default small model: byte-level, 4 blocks of width 256.
    fn default() -> Self {
        Self {
            vocab_size: 256,
            layers: 4,
            dim: 256,
            heads: 4,
            mlp_hidden: 688,
            max_seq_len: 2048,
            rope_theta: 10_000.0,
            norm_eps: 1e-5,
        }
    }
}

impl BackboneConfig {
    /// A small model: `layers` blocks of width `dim` with `heads` heads, an
    /// MLP of about 8/3 `dim` (rounded up to a multiple of 8), byte-level
    /// vocabulary, 2048-token context.
    pub fn small(layers: usize, dim: usize, heads: usize) -> Self {
        Self {
            layers,
            dim,
            heads,
            mlp_hidden: (dim * 8 / 3).div_ceil(8) * 8,
            ..Self::default()
        }
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.dim / self.heads.max(1)
    }

    /// Checks every field against its range.
    pub fn validate(&self) -> Result<()> {
        let check = |ok: bool, what: String| {
            if ok { Ok(()) } else { Err(Error::Config(what)) }
        };
        check(
            (2..=MAX_VOCAB).contains(&self.vocab_size),
            format!("vocab_size {} not in 2..={MAX_VOCAB}", self.vocab_size),
        )?;
        check(
            (1..=MAX_LAYERS).contains(&self.layers),
            format!("layers {} not in 1..={MAX_LAYERS}", self.layers),
        )?;
        check(
            (1..=MAX_HEADS).contains(&self.heads),
            format!("heads {} not in 1..={MAX_HEADS}", self.heads),
        )?;
        check(
            (2..=MAX_DIM).contains(&self.dim),
            format!("dim {} not in 2..={MAX_DIM}", self.dim),
        )?;
        check(
            self.dim.is_multiple_of(self.heads) && self.head_dim().is_multiple_of(2),
            format!(
                "dim {} must split into {} heads of even width",
                self.dim, self.heads
            ),
        )?;
        check(
            (1..=MAX_MLP_HIDDEN).contains(&self.mlp_hidden),
            format!("mlp_hidden {} not in 1..={MAX_MLP_HIDDEN}", self.mlp_hidden),
        )?;
        check(
            (2..=MAX_SEQ_LEN).contains(&self.max_seq_len),
            format!("max_seq_len {} not in 2..={MAX_SEQ_LEN}", self.max_seq_len),
        )?;
        check(
            self.rope_theta.is_finite() && self.rope_theta > 1.0,
            format!("rope_theta {} must be finite and > 1", self.rope_theta),
        )?;
        check(
            self.norm_eps.is_finite() && self.norm_eps > 0.0 && self.norm_eps < 1.0,
            format!("norm_eps {} must be in (0, 1)", self.norm_eps),
        )?;
        check(
            self.parameter_count() <= MAX_PARAMS,
            format!(
                "{} backbone parameters exceed {MAX_PARAMS}",
                self.parameter_count()
            ),
        )
    }

    /// Number of backbone parameters (embedding, norms, projections, head).
    pub fn parameter_count(&self) -> u64 {
        let (v, d, h, l) = (
            self.vocab_size as u64,
            self.dim as u64,
            self.mlp_hidden as u64,
            self.layers as u64,
        );
        // Saturating: an absurd configuration reports u64::MAX, not a panic.
        let block = d
            .saturating_mul(4)
            .saturating_mul(d)
            .saturating_add(d.saturating_mul(3).saturating_mul(h))
            .saturating_add(d.saturating_mul(2));
        v.saturating_mul(d)
            .saturating_mul(2)
            .saturating_add(l.saturating_mul(block))
            .saturating_add(d)
    }
}

/// Storage precision of the LoRA adapters (the seed's `precision` field).
/// Computation is always fp32; with `Fp16` every adapter value is kept
/// representable in half precision, so a save / load round trip is exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit floats.
    #[default]
    Fp32,
    /// 16-bit IEEE half floats.
    Fp16,
}

impl Precision {
    /// The seed's spelling: `"fp32"` or `"fp16"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fp32 => "fp32",
            Self::Fp16 => "fp16",
        }
    }

    /// `value` rounded to this precision.
    pub fn round(self, value: f32) -> f32 {
        match self {
            Self::Fp32 => value,
            Self::Fp16 => half::f16::from_f32(value).to_f32(),
        }
    }
}

/// LoRA adapters: rank, initial alpha (scaling is `alpha / rank`) and storage
/// precision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraConfig {
    /// Rank, in `4..=64`.
    pub rank: usize,
    /// Initial alpha of every adapter.
    pub alpha: f32,
    /// Storage precision.
    pub precision: Precision,
}

impl Default for LoraConfig {
    /// Rank 8, alpha 16, fp32.
    fn default() -> Self {
        Self {
            rank: 8,
            alpha: 16.0,
            precision: Precision::Fp32,
        }
    }
}

impl LoraConfig {
    /// Checks rank and alpha.
    pub fn validate(&self) -> Result<()> {
        if !(MIN_RANK..=MAX_RANK).contains(&self.rank) {
            return Err(Error::Config(format!(
                "LoRA rank {} not in {MIN_RANK}..={MAX_RANK}",
                self.rank
            )));
        }
        if !self.alpha.is_finite() || self.alpha <= 0.0 || self.alpha > 1e4 {
            return Err(Error::Config(format!(
                "LoRA alpha {} must be finite, positive and at most 1e4",
                self.alpha
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_limits_hold() {
        assert!(BackboneConfig::default().validate().is_ok());
        assert!(BackboneConfig::small(2, 64, 4).validate().is_ok());
        assert!(LoraConfig::default().validate().is_ok());
        let mut c = BackboneConfig::small(2, 64, 4);
        c.heads = 3;
        assert!(c.validate().is_err());
        c = BackboneConfig::small(2, 64, 64);
        assert!(c.validate().is_err(), "odd head width");
        c = BackboneConfig {
            dim: MAX_DIM,
            mlp_hidden: MAX_MLP_HIDDEN,
            layers: MAX_LAYERS,
            ..BackboneConfig::default()
        };
        assert!(c.validate().is_err(), "too many parameters");
        for rank in [0, 3, 65, 1000] {
            let l = LoraConfig {
                rank,
                ..LoraConfig::default()
            };
            assert!(l.validate().is_err(), "rank {rank}");
        }
        for rank in [4, 8, 64] {
            let l = LoraConfig {
                rank,
                ..LoraConfig::default()
            };
            assert!(l.validate().is_ok(), "rank {rank}");
        }
    }
}
