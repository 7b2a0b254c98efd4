//! [`ChunkProcessor`]: the seed's "Fixed Chunk / Variable Speed Protocol" on
//! the miner's side.
//!
//! * A chunk is exactly [`FIXED_CHUNK_SIZE`] (2048) tokens; anything else is
//!   refused with the seed's error, `Invalid chunk size: N (expected 2048)`,
//!   before any work is done.
//! * **Sequences.** The chunk is cut into `S = 2048 / seq_len` consecutive
//!   sequences of `seq_len` tokens (`seq_len` divides 2048; default
//!   [`DEFAULT_SEQ_LEN`] = 128, so `S = 16`). Attention never crosses a
//!   sequence boundary. Within a sequence, token `j` (for `j >= 1`) is the
//!   target of the prediction made at `j - 1`: a chunk has `S * (seq_len - 1)`
//!   targets. With a loss mask (one flag per chunk token, for a padded tail),
//!   a target counts only when its own flag is set.
//! * **Micro-batches.** The `S` sequences are processed `B` at a time
//!   (`local_batch_size`, the last micro-batch may be shorter; `B >= S` is one
//!   pass). Each micro-batch runs forward and backward on the loss
//!   `sum(token losses of the micro-batch) / N`, where `N` is the number of
//!   counted targets in the **whole chunk**, and the LoRA gradients are summed
//!   over micro-batches (in f64). The sum is exactly the gradient of the mean
//!   next-token cross entropy over the whole chunk, whatever `B` is, also
//!   when micro-batches hold different numbers of counted targets (the
//!   seed's `loss / accumulation_steps` is only right when they all hold the
//!   same number).
//! * Memory: only one micro-batch's activations live at a time, so peak
//!   memory grows with `B` and not with the chunk. [`ChunkProcessor::with_memory_budget`]
//!   derives `B` from a budget with [`activation_bytes`].
//!
//! The output is the seed's `LoRAGradientUpdate` (via
//! [`ChunkGradient::to_update`]) and the chunk's mean loss.

use std::collections::BTreeMap;

use candle_core::{Device, Tensor};
use r3mes_tensor::{LoRAAdapterGradient, LoRAGradientUpdate};

use crate::config::BackboneConfig;
use crate::model::{Model, log_softmax_last};
use crate::{Error, Result};

/// The protocol's chunk size in tokens; it never changes.
pub const FIXED_CHUNK_SIZE: usize = 2048;
/// Default sequence length: a chunk is 16 sequences of 128 tokens.
pub const DEFAULT_SEQ_LEN: usize = 128;

/// Estimated peak bytes of one micro-batch of `batch` sequences of
/// `seq_len` tokens, fp32, above the model itself:
///
/// `12 * params + 8 * batch * (layers * (90 * seq * dim + 24 * seq * mlp_hidden + 6 * heads * seq^2) + 8 * seq * vocab)`
///
/// The per-sequence term counts the activations the forward pass keeps for
/// the backward pass (90 values per token and unit of width for the norms,
/// the q/k/v/o BitLinear and LoRA intermediates, rotary and residuals; 24
/// per unit of MLP width for gate/up/down and the squared-ReLU product; 6
/// attention maps per head; 8 per vocabulary entry for the head and the
/// log-softmax), at 4 bytes, doubled for the gradients alive during the
/// backward pass. The fixed term (three f32 copies of the backbone's
/// parameters) covers the per-micro-batch working set that does not scale
/// with the batch. The benchmark's counting allocator measures the true
/// peak; this estimate is meant to bound it (it does, by 0 to 25 %, on the
/// default and test models).
pub fn activation_bytes(config: &BackboneConfig, seq_len: usize, batch: usize) -> u64 {
    // u128: no overflow for any configuration; saturates into u64.
    let (t, d, h, hm, l, v) = (
        seq_len as u128,
        config.dim as u128,
        config.heads as u128,
        config.mlp_hidden as u128,
        config.layers as u128,
        config.vocab_size as u128,
    );
    let per_seq = l * (90 * t * d + 24 * t * hm + 6 * h * t * t) + 8 * t * v;
    let total = 12 * u128::from(config.parameter_count()) + 8 * batch as u128 * per_seq;
    u64::try_from(total).unwrap_or(u64::MAX)
}

/// Splits fixed chunks into micro-batches and accumulates their gradients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkProcessor {
    seq_len: usize,
    local_batch_size: usize,
}

/// Who made a gradient and on what: the fields of the seed's
/// `LoRAGradientUpdate` that the chunk itself does not give.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UpdateInfo {
    /// The miner's address.
    pub miner_id: String,
    /// The data shard the chunk came from.
    pub data_shard_id: u64,
    /// Training window (round) id.
    pub window_id: u64,
    /// Unix timestamp in seconds.
    pub timestamp: i64,
}

/// The result of one chunk.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkGradient {
    /// Mean next-token cross entropy (nats) over the chunk's counted targets.
    pub loss: f64,
    /// Number of counted targets `N`.
    pub target_tokens: usize,
    /// Micro-batches run.
    pub micro_batches: usize,
    /// Gradient of `loss` for every adapter, by layer id.
    pub adapters: BTreeMap<String, LoRAAdapterGradient>,
}

impl ChunkGradient {
    /// The mean of several chunks' gradients, every chunk weighing the same
    /// (each is 2048 tokens on chain, which is how aggregation weighs a
    /// gradient): element-wise mean of the adapters' gradients (summed in
    /// f64, in the given order), mean loss, summed targets and
    /// micro-batches. `None` for an empty list or chunks whose adapters
    /// differ in names or sizes.
    pub fn mean(chunks: &[ChunkGradient]) -> Option<ChunkGradient> {
        let first = chunks.first()?;
        let n = chunks.len() as f64;
        let mut adapters = BTreeMap::new();
        for (id, g0) in &first.adapters {
            let mut a = vec![0.0f64; g0.grad_a.len()];
            let mut b = vec![0.0f64; g0.grad_b.len()];
            let mut alpha = 0.0f64;
            for c in chunks {
                let g = c.adapters.get(id)?;
                if g.grad_a.len() != a.len() || g.grad_b.len() != b.len() {
                    return None;
                }
                for (acc, v) in a.iter_mut().zip(&g.grad_a) {
                    *acc += f64::from(*v);
                }
                for (acc, v) in b.iter_mut().zip(&g.grad_b) {
                    *acc += f64::from(*v);
                }
                alpha += f64::from(g.grad_alpha);
            }
            let f32s = |v: Vec<f64>| v.into_iter().map(|x| (x / n) as f32).collect::<Vec<f32>>();
            adapters.insert(
                id.clone(),
                LoRAAdapterGradient {
                    grad_a: f32s(a),
                    grad_b: f32s(b),
                    grad_alpha: (alpha / n) as f32,
                    ..g0.clone()
                },
            );
        }
        if chunks.iter().any(|c| c.adapters.len() != adapters.len()) {
            return None;
        }
        Some(ChunkGradient {
            loss: chunks.iter().map(|c| c.loss).sum::<f64>() / n,
            target_tokens: chunks.iter().map(|c| c.target_tokens).sum(),
            micro_batches: chunks.iter().map(|c| c.micro_batches).sum(),
            adapters,
        })
    }

    /// The seed's `LoRAGradientUpdate`, ready for
    /// `to_gradient(Format::Protobuf)` and `r3mes_tensor::encode`.
    pub fn to_update(&self, backbone_hash: &str, info: &UpdateInfo) -> LoRAGradientUpdate {
        LoRAGradientUpdate {
            adapters: self.adapters.clone(),
            miner_id: info.miner_id.clone(),
            data_shard_id: info.data_shard_id,
            backbone_hash: backbone_hash.to_string(),
            window_id: info.window_id,
            timestamp: info.timestamp,
        }
    }
}

impl ChunkProcessor {
    /// A processor for sequences of `seq_len` tokens (a divisor of 2048, at
    /// least 2) run `local_batch_size` (at least 1) at a time. A batch size
    /// above the number of sequences is one pass over the chunk.
    pub fn new(seq_len: usize, local_batch_size: usize) -> Result<Self> {
        if seq_len < 2 || !FIXED_CHUNK_SIZE.is_multiple_of(seq_len) {
            return Err(Error::Config(format!(
                "sequence length {seq_len} must be at least 2 and divide {FIXED_CHUNK_SIZE}"
            )));
        }
        if local_batch_size == 0 {
            return Err(Error::Config("local batch size must be at least 1".into()));
        }
        let sequences = FIXED_CHUNK_SIZE / seq_len;
        Ok(Self {
            seq_len,
            local_batch_size: local_batch_size.min(sequences),
        })
    }

    /// A processor whose batch size is the largest whose
    /// [`activation_bytes`] fit in `budget_mb` MiB (never below 1: a chunk is
    /// always processed, one sequence at a time at worst).
    pub fn with_memory_budget(
        config: &BackboneConfig,
        seq_len: usize,
        budget_mb: u64,
    ) -> Result<Self> {
        config.validate()?;
        let probe = Self::new(seq_len, 1)?;
        let budget = budget_mb.saturating_mul(1 << 20);
        let fixed = activation_bytes(config, seq_len, 0);
        let per_seq = activation_bytes(config, seq_len, 1)
            .saturating_sub(fixed)
            .max(1);
        let fit = usize::try_from(budget.saturating_sub(fixed) / per_seq).unwrap_or(usize::MAX);
        Self::new(probe.seq_len, fit.clamp(1, probe.sequences()))
    }

    /// Tokens per sequence.
    pub fn seq_len(&self) -> usize {
        self.seq_len
    }

    /// Sequences per chunk, `2048 / seq_len`.
    pub fn sequences(&self) -> usize {
        FIXED_CHUNK_SIZE / self.seq_len
    }

    /// Sequences per micro-batch.
    pub fn local_batch_size(&self) -> usize {
        self.local_batch_size
    }

    /// Forward and backward over the whole chunk, micro-batch by
    /// micro-batch; returns the gradient of the chunk's mean loss. `mask`,
    /// if given, has one flag per token (`false` for padding). Nothing is
    /// computed, and the model is untouched, if the chunk or mask is invalid.
    pub fn process_chunk(
        &self,
        model: &Model,
        tokens: &[u32],
        mask: Option<&[bool]>,
    ) -> Result<ChunkGradient> {
        if tokens.len() != FIXED_CHUNK_SIZE {
            return Err(Error::InvalidChunkSize { got: tokens.len() });
        }
        if let Some(m) = mask
            && m.len() != tokens.len()
        {
            return Err(Error::MaskLength {
                got: m.len(),
                expected: tokens.len(),
            });
        }
        let config = model.backbone().config();
        if self.seq_len > config.max_seq_len {
            return Err(Error::Config(format!(
                "sequence length {} exceeds the model's {}",
                self.seq_len, config.max_seq_len
            )));
        }
        if let Some((position, &token)) = tokens
            .iter()
            .enumerate()
            .find(|(_, t)| **t as usize >= config.vocab_size)
        {
            return Err(Error::TokenOutOfRange {
                token,
                position,
                vocab: config.vocab_size,
            });
        }
        let t = self.seq_len;
        // counted[i]: chunk token i is a target that counts.
        let counted: Vec<bool> = (0..FIXED_CHUNK_SIZE)
            .map(|i| i % t != 0 && mask.is_none_or(|m| m[i]))
            .collect();
        let n = counted.iter().filter(|c| **c).count();
        if n == 0 {
            return Err(Error::EmptyChunk);
        }
        let weight = 1.0 / n as f32;

        let adapters = model.lora().adapters();
        let mut acc: Vec<[Vec<f64>; 3]> = adapters
            .iter()
            .map(|ad| {
                let (out, inp) = ad.shape();
                [
                    vec![0.0; ad.rank() * inp],
                    vec![0.0; out * ad.rank()],
                    vec![0.0; 1],
                ]
            })
            .collect();
        let mut loss = 0.0f64;
        let mut micro_batches = 0;
        let dev = Device::Cpu;
        let sequences = self.sequences();
        let mut first = 0;
        while first < sequences {
            let b = self.local_batch_size.min(sequences - first);
            let span = first * t..(first + b) * t;
            let ids = &tokens[span.clone()];
            let logits = model.forward(ids, b, t)?.narrow(1, 0, t - 1)?;
            let logp = log_softmax_last(&logits)?;
            let mut targets = Vec::with_capacity(b * (t - 1));
            let mut weights = Vec::with_capacity(b * (t - 1));
            for s in 0..b {
                for j in 1..t {
                    let i = span.start + s * t + j;
                    targets.push(tokens[i]);
                    weights.push(if counted[i] { weight } else { 0.0 });
                }
            }
            let targets = Tensor::from_vec(targets, (b, t - 1, 1), &dev)?;
            let weights = Tensor::from_vec(weights, (b, t - 1, 1), &dev)?;
            let mb_loss = (logp.gather(&targets, 2)? * weights)?.sum_all()?.neg()?;
            loss += f64::from(mb_loss.to_scalar::<f32>()?);
            let grads = mb_loss.backward()?;
            for (ad, sums) in adapters.iter().zip(acc.iter_mut()) {
                for (var, sum) in ad.vars().into_iter().zip(sums.iter_mut()) {
                    if let Some(g) = grads.get(var.as_tensor()) {
                        let g = g.flatten_all()?.to_vec1::<f32>()?;
                        for (s, v) in sum.iter_mut().zip(g) {
                            *s += f64::from(v);
                        }
                    }
                }
            }
            micro_batches += 1;
            first += b;
        }

        let mut out = BTreeMap::new();
        for (ad, [ga, gb, galpha]) in adapters.iter().zip(acc) {
            let (o, i) = ad.shape();
            let r = ad.rank() as u64;
            let f32s = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<f32>>();
            out.insert(
                ad.layer_id().to_string(),
                LoRAAdapterGradient {
                    layer_id: ad.layer_id().to_string(),
                    grad_a: f32s(ga),
                    shape_a: [r, i as u64],
                    grad_b: f32s(gb),
                    shape_b: [o as u64, r],
                    grad_alpha: galpha.first().copied().unwrap_or(0.0) as f32,
                },
            );
        }
        Ok(ChunkGradient {
            loss,
            target_tokens: n,
            micro_batches,
            adapters: out,
        })
    }
}
