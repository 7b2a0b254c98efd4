//! Cosine similarity of the miner's masked vector with the vault values, and
//! its integer form for the chain (parts per million, the keeper has no floats).

/// Cosine similarity of `a` and `b` (equal lengths), or `None` when it is
/// undefined: a zero vector, or a non-finite value or product.
pub fn cosine(a: &[f64], b: &[f64]) -> Option<f64> {
    if a.len() != b.len() {
        return None;
    }
    let (mut dot, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        dot += x * y;
        aa += x * x;
        bb += y * y;
    }
    let denominator = aa.sqrt() * bb.sqrt();
    if !(dot.is_finite() && denominator.is_finite()) || denominator == 0.0 {
        return None;
    }
    Some((dot / denominator).clamp(-1.0, 1.0))
}

/// `cosine` times 10^6, rounded, within `[-1000000, 1000000]`.
pub fn to_ppm(cosine: f64) -> i64 {
    (cosine.clamp(-1.0, 1.0) * 1e6).round() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        assert_eq!(cosine(&[1.0, 0.0], &[2.0, 0.0]), Some(1.0));
        assert_eq!(cosine(&[1.0, 0.0], &[0.0, 3.0]), Some(0.0));
        let opposite = cosine(&[1.0, 2.0], &[-1.0, -2.0]).unwrap();
        assert!((opposite + 1.0).abs() < 1e-15);
        assert_eq!(to_ppm(opposite), -1_000_000);
        let c = cosine(&[1.0, 1.0], &[1.0, 0.0]).unwrap();
        assert!((c - std::f64::consts::FRAC_1_SQRT_2).abs() < 1e-15);
        assert_eq!(to_ppm(c), 707_107);
        assert_eq!(to_ppm(-1.0), -1_000_000);
    }

    #[test]
    fn undefined_cases_are_none() {
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 2.0]), None);
        assert_eq!(cosine(&[f64::NAN, 1.0], &[1.0, 2.0]), None);
        assert_eq!(cosine(&[f64::MAX, f64::MAX], &[1.0, 2.0]), None);
        assert_eq!(cosine(&[1.0], &[1.0, 2.0]), None);
    }
}
