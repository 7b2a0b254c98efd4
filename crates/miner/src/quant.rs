//! BitNet b1.58 quantisation.
//!
//! * **Weights** (at load, once): `scale = mean(|W|)`,
//!   `W_q = clamp(round(W / scale), -1, 1)`, so every weight is in
//!   `{-1, 0, +1}` and the layer computes with `W_q * scale`. A matrix of
//!   zeros gets `scale = 1` and `W_q = 0`. `round` is half away from zero.
//! * **Activations** (every forward, per token): `s = max(|x|)` over the
//!   features of the token (at least [`ACT_EPS`]),
//!   `x_q = clamp(round(x * 127 / s), -128, 127)`; the layer multiplies the
//!   integers `x_q` by the ternary `W_q` and dequantises the product with
//!   `scale * s / 127`.
//!
//! Both operands of that product are small integers, and so is every partial
//! sum (at most `128 * in_features`, far below 2^24), so the f32 matmul is
//! exact whatever order the kernel adds in: the forward pass of a sequence
//! does not depend on how many sequences share its batch.
//!
//! **Straight-through estimator.** `round` has zero gradient almost
//! everywhere, which would stop every gradient at the first BitLinear layer.
//! The forward value used is exactly `x_q`, but it is built as
//! `x_q + (v - detach(v))` with `v = x * 127 / detach(s)`: the added term is
//! exactly zero in value and carries the gradient `127 / s` to `x`, and since
//! the product is then multiplied by `s / 127` the layer's gradient with
//! respect to `x` is that of `x · (W_q * scale)^T`, as if the activations were
//! not quantised. The scale `s` itself is treated as a constant. This is the
//! estimator of the BitNet papers; it lets gradients reach the LoRA adapters
//! of every layer below.

use candle_core::{D, Tensor};

use crate::Result;

/// Smallest activation scale: a token of zeros quantises to zeros.
pub const ACT_EPS: f32 = 1e-5;

/// A weight matrix quantised to ternary values with its absmean scale.
#[derive(Debug, Clone, PartialEq)]
pub struct Ternary {
    /// `out x in`, row-major, each in `{-1, 0, 1}`.
    pub values: Vec<i8>,
    /// The absmean scale.
    pub scale: f32,
}

/// Quantises a latent weight matrix (any layout: the values are quantised
/// one by one with the scale of the whole matrix).
pub fn ternary(weights: &[f32]) -> Ternary {
    let sum: f64 = weights.iter().map(|w| f64::from(w.abs())).sum();
    let mean = if weights.is_empty() {
        0.0
    } else {
        (sum / weights.len() as f64) as f32
    };
    if !(mean.is_finite() && mean > 0.0) {
        return Ternary {
            values: vec![0; weights.len()],
            scale: 1.0,
        };
    }
    let values = weights
        .iter()
        .map(|w| (w / mean).round().clamp(-1.0, 1.0) as i8)
        .collect();
    Ternary {
        values,
        scale: mean,
    }
}

/// 8-bit absmax quantisation of the activations `x` (`[.., features]`),
/// per token, with the straight-through estimator.
///
/// Returns `(x_q, s / 127)`: `x_q` holds the integers in `[-128, 127]` (as
/// f32, gradient passing straight through to `x` scaled by `127 / s`), and
/// the second tensor (`[.., 1]`, constant) dequantises a product with `x_q`.
pub fn activations(x: &Tensor) -> Result<(Tensor, Tensor)> {
    let plain = x.detach();
    let absmax = plain
        .abs()?
        .max_keepdim(D::Minus1)?
        .clamp(ACT_EPS, f32::MAX)?;
    let up = absmax.recip()?.affine(127.0, 0.0)?;
    let scaled = x.broadcast_mul(&up)?;
    let q = scaled.detach().round()?.clamp(-128f32, 127f32)?;
    let ste = (&scaled - scaled.detach())?;
    let q = (q + ste)?;
    let down = absmax.affine(1.0 / 127.0, 0.0)?;
    Ok((q, down))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn weights_become_ternary_with_absmean_scale() {
        let w = [0.5f32, -1.5, 0.1, 0.0, 2.0, -0.2];
        let t = ternary(&w);
        let mean = (0.5 + 1.5 + 0.1 + 0.0 + 2.0 + 0.2) / 6.0;
        assert!((t.scale - mean).abs() < 1e-7);
        assert_eq!(t.values, vec![1, -1, 0, 0, 1, 0]);
        let z = ternary(&[0.0; 4]);
        assert_eq!((z.values, z.scale), (vec![0; 4], 1.0));
        assert_eq!(ternary(&[f32::NAN, 1.0]).values, vec![0, 0]);
    }

    #[test]
    fn activations_are_int8_and_gradient_passes_straight_through() -> Result<()> {
        let dev = Device::Cpu;
        let x = Var::from_vec(vec![0.5f32, -1.0, 0.25, 0.0, 3.0, -0.03], (2, 3), &dev)?;
        let (q, down) = activations(x.as_tensor())?;
        let q_vals = q.to_vec2::<f32>()?;
        assert_eq!(
            q_vals,
            vec![vec![64.0, -127.0, 32.0], vec![0.0, 127.0, -1.0]]
        );
        assert_eq!(
            down.to_vec2::<f32>()?,
            vec![vec![1.0 / 127.0], vec![3.0 / 127.0]]
        );
        // d/dx sum(q * down) is 1 everywhere under the straight-through estimator.
        let y = q.broadcast_mul(&down)?.sum_all()?;
        let grads = y.backward()?;
        let g = grads.get(x.as_tensor()).map(|g| g.to_vec2::<f32>());
        let g = g.transpose()?.unwrap_or_default();
        for row in g {
            for v in row {
                assert!((v - 1.0).abs() < 1e-6, "gradient {v}");
            }
        }
        Ok(())
    }
}
