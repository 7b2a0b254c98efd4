//! [`Model`]: the seed's `BitNetModel`, a frozen [`Backbone`] plus trainable
//! [`LoraAdapters`], and its forward pass (architecture in
//! [`crate::backbone`]).
//!
//! Every operation of the forward pass treats the sequences of a batch
//! independently and with the same shapes whatever the batch size (per-token
//! norms and quantisation, per-sequence attention, exact integer BitLinear
//! products, per-sequence LoRA products), so the logits of a sequence are
//! bit-identical in a batch of 1 or of 16. That is what lets the chunk
//! processor's accumulated gradient match the single-pass gradient to
//! float rounding: a one-ulp difference before an 8-bit activation
//! quantiser could otherwise flip a rounding and change the function.

use candle_core::{D, Device, Tensor};

use crate::backbone::Backbone;
use crate::config::{BackboneConfig, LoraConfig};
use crate::lora::LoraAdapters;
use crate::{Error, Result};

/// The seed's `BitNetModel`: frozen backbone, trainable adapters.
#[derive(Debug)]
pub struct Model {
    backbone: Backbone,
    lora: LoraAdapters,
}

impl Model {
    /// Puts a backbone and adapters together; the adapters must fit the
    /// backbone's shape.
    pub fn new(backbone: Backbone, lora: LoraAdapters) -> Result<Self> {
        if !lora.fits(backbone.config()) {
            return Err(Error::Shape {
                name: "lora adapters".into(),
                detail: "do not fit the backbone's shape".into(),
            });
        }
        Ok(Self { backbone, lora })
    }

    /// A backbone and fresh adapters, both from `seed`.
    pub fn init(backbone: &BackboneConfig, lora: &LoraConfig, seed: u64) -> Result<Self> {
        Self::new(
            Backbone::init(backbone, seed)?,
            LoraAdapters::init(backbone, lora, seed)?,
        )
    }

    /// The frozen backbone.
    pub fn backbone(&self) -> &Backbone {
        &self.backbone
    }

    /// The adapters.
    pub fn lora(&self) -> &LoraAdapters {
        &self.lora
    }

    /// The adapters, to update them.
    pub fn lora_mut(&mut self) -> &mut LoraAdapters {
        &mut self.lora
    }

    /// Logits `[batch, seq_len, vocab]` for `tokens` (`batch` sequences of
    /// `seq_len` tokens, row-major). Gradients of anything computed from them
    /// reach the LoRA parameters only.
    pub fn forward(&self, tokens: &[u32], batch: usize, seq_len: usize) -> Result<Tensor> {
        let c = self.backbone.config();
        if batch == 0 || seq_len == 0 || batch.checked_mul(seq_len) != Some(tokens.len()) {
            return Err(Error::Shape {
                name: "tokens".into(),
                detail: format!("{} tokens for {batch} x {seq_len}", tokens.len()),
            });
        }
        if seq_len > c.max_seq_len {
            return Err(Error::Config(format!(
                "sequence length {seq_len} exceeds the model's {}",
                c.max_seq_len
            )));
        }
        if let Some((position, &token)) = tokens
            .iter()
            .enumerate()
            .find(|(_, t)| **t as usize >= c.vocab_size)
        {
            return Err(Error::TokenOutOfRange {
                token,
                position,
                vocab: c.vocab_size,
            });
        }
        let dev = Device::Cpu;
        let ids = Tensor::from_slice(tokens, tokens.len(), &dev)?;
        let mut h = self
            .backbone
            .embed()
            .index_select(&ids, 0)?
            .reshape((batch, seq_len, c.dim))?;
        let (cos, sin) = rope_tables(c, seq_len)?;
        let mask = causal_mask(seq_len)?;
        let (heads, hd) = (c.heads, c.head_dim());
        for (layer, block) in self.backbone.blocks().iter().enumerate() {
            let proj = |index: usize, x: &Tensor| -> Result<Tensor> {
                let base = block.projections[index].forward(x)?;
                match self.lora.get(layer, index) {
                    Some(ad) => Ok((base + ad.forward(x)?)?),
                    None => Ok(base),
                }
            };
            let n = rms_norm(&h, &block.attn_norm, c.norm_eps)?;
            let split = |t: Tensor| -> Result<Tensor> {
                Ok(t.reshape((batch, seq_len, heads, hd))?
                    .transpose(1, 2)?
                    .contiguous()?)
            };
            let q = rope(&split(proj(0, &n)?)?, &cos, &sin)?;
            let k = rope(&split(proj(1, &n)?)?, &cos, &sin)?;
            let v = split(proj(2, &n)?)?;
            let att = q
                .matmul(&k.t()?)?
                .affine(1.0 / (hd as f64).sqrt(), 0.0)?
                .broadcast_add(&mask)?;
            let att = softmax_last(&att)?;
            let o = att
                .matmul(&v)?
                .transpose(1, 2)?
                .reshape((batch, seq_len, c.dim))?;
            h = (h + proj(3, &o)?)?;
            let m = rms_norm(&h, &block.mlp_norm, c.norm_eps)?;
            let act = (proj(4, &m)?.relu()?.sqr()? * proj(5, &m)?)?;
            h = (h + proj(6, &act)?)?;
        }
        let h = rms_norm(&h, self.backbone.final_norm(), c.norm_eps)?;
        self.backbone.head().forward(&h)
    }
}

/// `x / sqrt(mean(x^2) + eps) * w` over the last dimension.
fn rms_norm(x: &Tensor, w: &Tensor, eps: f32) -> Result<Tensor> {
    let inv = x
        .sqr()?
        .mean_keepdim(D::Minus1)?
        .affine(1.0, f64::from(eps))?
        .sqrt()?
        .recip()?;
    Ok(x.broadcast_mul(&inv)?.broadcast_mul(w)?)
}

/// Softmax over the last dimension (the max is subtracted as a constant).
fn softmax_last(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    let sum = e.sum_keepdim(D::Minus1)?;
    Ok(e.broadcast_div(&sum)?)
}

/// Log-softmax over the last dimension.
pub(crate) fn log_softmax_last(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let z = x.broadcast_sub(&max)?;
    let lse = z.exp()?.sum_keepdim(D::Minus1)?.log()?;
    Ok(z.broadcast_sub(&lse)?)
}

/// Rotary tables `[seq_len, head_dim / 2]`: angle `pos * theta^(-2i / head_dim)`
/// (computed in f64).
fn rope_tables(c: &BackboneConfig, seq_len: usize) -> Result<(Tensor, Tensor)> {
    let half = c.head_dim() / 2;
    let mut cos = Vec::with_capacity(seq_len * half);
    let mut sin = Vec::with_capacity(seq_len * half);
    for pos in 0..seq_len {
        for i in 0..half {
            let freq = f64::from(c.rope_theta).powf(-2.0 * i as f64 / c.head_dim() as f64);
            let angle = pos as f64 * freq;
            cos.push(angle.cos() as f32);
            sin.push(angle.sin() as f32);
        }
    }
    let dev = Device::Cpu;
    Ok((
        Tensor::from_vec(cos, (seq_len, half), &dev)?,
        Tensor::from_vec(sin, (seq_len, half), &dev)?,
    ))
}

/// Rotates the two halves of each head (`[batch, heads, seq, head_dim]`).
fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let half = x.dim(D::Minus1)? / 2;
    let x1 = x.narrow(D::Minus1, 0, half)?;
    let x2 = x.narrow(D::Minus1, half, half)?;
    let r1 = (x1.broadcast_mul(cos)? - x2.broadcast_mul(sin)?)?;
    let r2 = (x1.broadcast_mul(sin)? + x2.broadcast_mul(cos)?)?;
    Ok(Tensor::cat(&[r1, r2], D::Minus1)?)
}

/// `[seq, seq]`: 0 where a query may see a key (key <= query), -inf elsewhere.
fn causal_mask(seq_len: usize) -> Result<Tensor> {
    let mut m = vec![0f32; seq_len * seq_len];
    for q in 0..seq_len {
        for k in q + 1..seq_len {
            m[q * seq_len + k] = f32::NEG_INFINITY;
        }
    }
    Ok(Tensor::from_vec(m, (seq_len, seq_len), &Device::Cpu)?)
}
