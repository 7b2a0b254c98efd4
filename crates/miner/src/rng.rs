//! Seeded initialisation: every tensor filled at init time comes from its own
//! ChaCha20 keystream, so the same seed gives bit-identical values on every
//! machine (the keystream is RFC 8439; the float conversion below uses only
//! exactly specified IEEE operations).
//!
//! Definition, for a tensor named `name` and a `u64` seed:
//!
//! * key = SHA-256(`domain` || `0x00` || seed as 8 little-endian bytes ||
//!   `name` as UTF-8), nonce = 12 zero bytes, block counter from 0;
//! * element `i` (C order) takes keystream bytes `4i..4i+4` as a
//!   little-endian `u32` `u`;
//! * `unit = (u >> 8) as f32 * 2^-24` (exact, in `[0, 1)`), and the value is
//!   `(2 * unit - 1) * bound` (uniform in `[-bound, bound)`).
//!
//! Domains: [`BACKBONE_DOMAIN`] for the backbone's latent weights,
//! [`LORA_A_DOMAIN`] for the adapters' `A` matrices, [`LORA_B_DOMAIN`] when
//! `B` is filled from a seed instead of zeros.

use chacha20::ChaCha20;
use chacha20::cipher::{KeyIvInit, StreamCipher};
use sha2::{Digest, Sha256};

/// Domain of the backbone's latent weights.
pub const BACKBONE_DOMAIN: &str = "r3mes-miner/backbone/v1";
/// Domain of the LoRA `A` matrices.
pub const LORA_A_DOMAIN: &str = "r3mes-miner/lora-a/v1";
/// Domain of LoRA `B` matrices filled from a seed.
pub const LORA_B_DOMAIN: &str = "r3mes-miner/lora-b/v1";

/// `n` values uniform in `[-bound, bound)` from the keystream of
/// (`domain`, `seed`, `name`), as defined in the module documentation.
pub fn uniform(domain: &str, seed: u64, name: &str, n: usize, bound: f32) -> Vec<f32> {
    let mut hasher = Sha256::new();
    hasher.update(domain.as_bytes());
    hasher.update([0u8]);
    hasher.update(seed.to_le_bytes());
    hasher.update(name.as_bytes());
    let key: [u8; 32] = hasher.finalize().into();
    let mut cipher = ChaCha20::new(&key.into(), &[0u8; 12].into());
    let mut out = Vec::with_capacity(n);
    let mut block = [0u8; 4096];
    let mut left = n;
    while left > 0 {
        let take = left.min(block.len() / 4);
        let bytes = &mut block[..take * 4];
        bytes.fill(0);
        cipher.apply_keystream(bytes);
        for word in bytes.chunks_exact(4) {
            let u = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
            let unit = (u >> 8) as f32 * (1.0 / 16_777_216.0);
            out.push((2.0 * unit - 1.0) * bound);
        }
        left -= take;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_fixed_and_separated() {
        let a = uniform(BACKBONE_DOMAIN, 7, "w", 3000, 1.0);
        assert_eq!(a, uniform(BACKBONE_DOMAIN, 7, "w", 3000, 1.0));
        // A prefix is the same stream (chunked generation is seamless).
        assert_eq!(a[..5], uniform(BACKBONE_DOMAIN, 7, "w", 5, 1.0)[..]);
        assert_ne!(a[..8], uniform(BACKBONE_DOMAIN, 8, "w", 8, 1.0)[..]);
        assert_ne!(a[..8], uniform(BACKBONE_DOMAIN, 7, "x", 8, 1.0)[..]);
        assert_ne!(a[..8], uniform(LORA_A_DOMAIN, 7, "w", 8, 1.0)[..]);
        assert!(a.iter().all(|v| (-1.0..1.0).contains(v)));
        let mean = a.iter().map(|v| f64::from(*v)).sum::<f64>() / a.len() as f64;
        assert!(mean.abs() < 0.05, "mean {mean}");
    }

    #[test]
    fn known_answer() {
        // Pinned so the stream definition cannot drift.
        let v = uniform(BACKBONE_DOMAIN, 0, "model.norm.weight", 4, 1.0);
        let bits: Vec<u32> = v.iter().map(|x| x.to_bits()).collect();
        assert_eq!(bits, KNOWN_BITS, "values {v:?}");
    }

    const KNOWN_BITS: [u32; 4] = [1057934686, 3202377536, 1057784112, 3199364260];
}
