//! Where a vault entry's indices go: a few windows of the flat vector drawn
//! by a secret random generator, a few indices drawn inside each.
//!
//! Every element of the vector is equally likely to be checked (windows are
//! aligned slots of `span` elements drawn uniformly without replacement,
//! offsets inside a window likewise), and the draw depends only on a 32-byte
//! secret seed the validator never publishes: a miner who sees neither the
//! seed nor the vault cannot tell which parts of its gradient are checked.
//! Windows keep the indices on few IPFS leaves; see the crate docs for why
//! that is the byte-budget choice.

use chacha20::ChaCha20;
use chacha20::cipher::{KeyIvInit, StreamCipher};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// How many indices an entry checks and how they cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// Number of windows.
    pub windows: u32,
    /// Indices drawn inside each window.
    pub per_window: u32,
    /// Width of a window, in elements.
    pub span: u64,
}

impl Default for Placement {
    /// 64 indices: 16 windows of 256 elements (1 KiB of f32), 4 indices each.
    fn default() -> Self {
        Self {
            windows: 16,
            per_window: 4,
            span: 256,
        }
    }
}

impl Placement {
    /// Total number of indices.
    pub fn indices(&self) -> u64 {
        u64::from(self.windows) * u64::from(self.per_window)
    }

    /// Checks the numbers against a vector of `elements` elements.
    pub fn check(&self, elements: u64) -> Result<()> {
        if self.windows == 0 || self.per_window == 0 || self.span == 0 {
            return Err(Error::InvalidArgument(
                "windows, per-window and span must all be at least 1".into(),
            ));
        }
        if u64::from(self.per_window) > self.span {
            return Err(Error::InvalidArgument(format!(
                "{} indices do not fit a window of {} elements",
                self.per_window, self.span
            )));
        }
        if self.indices() > crate::vault::MAX_INDICES as u64 {
            return Err(Error::InvalidArgument(format!(
                "{} indices, a vault entry holds at most {}",
                self.indices(),
                crate::vault::MAX_INDICES
            )));
        }
        if self.indices() > elements {
            return Err(Error::InvalidArgument(format!(
                "{} indices asked of a gradient of {elements} elements",
                self.indices()
            )));
        }
        Ok(())
    }

    /// The sorted, distinct indices for a vector of `elements` elements.
    ///
    /// When the vector is too short for `windows` windows of `span`, the
    /// span shrinks to `elements / windows`; when that leaves no room for
    /// `per_window` indices, all indices are drawn independently.
    pub fn choose(&self, elements: u64, rng: &mut SecretRng) -> Result<Vec<u64>> {
        self.check(elements)?;
        let span = self.span.min(elements / u64::from(self.windows));
        let mut indices = if span < u64::from(self.per_window) {
            sample(rng, elements, self.indices())
        } else {
            let slots = elements / span;
            let mut out = Vec::new();
            for slot in sample(rng, slots, u64::from(self.windows)) {
                for offset in sample(rng, span, u64::from(self.per_window)) {
                    out.push(slot * span + offset);
                }
            }
            out
        };
        indices.sort_unstable();
        Ok(indices)
    }
}

/// `count` distinct values below `bound`, uniformly (Floyd's algorithm).
fn sample(rng: &mut SecretRng, bound: u64, count: u64) -> Vec<u64> {
    let mut chosen = std::collections::BTreeSet::new();
    for j in bound - count..bound {
        let t = rng.below(j + 1);
        if !chosen.insert(t) {
            chosen.insert(j);
        }
    }
    chosen.into_iter().collect()
}

/// A ChaCha20 keystream keyed by a secret: the vault's random source.
pub struct SecretRng {
    cipher: ChaCha20,
}

impl SecretRng {
    /// A generator for the entry `label` under the validator's `seed`.
    pub fn new(seed: &[u8; 32], label: &str) -> Self {
        let mut hash = Sha256::new();
        hash.update(b"r3mes-vault-placement-v1");
        hash.update(seed);
        hash.update(label.as_bytes());
        let key: [u8; 32] = hash.finalize().into();
        Self {
            cipher: ChaCha20::new(&key.into(), &[0u8; 12].into()),
        }
    }

    /// A fresh 32-byte seed from the operating system.
    pub fn os_seed() -> Result<[u8; 32]> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| Error::Randomness(e.to_string()))?;
        Ok(seed)
    }

    fn next_u64(&mut self) -> u64 {
        let mut bytes = [0u8; 8];
        self.cipher.apply_keystream(&mut bytes);
        u64::from_le_bytes(bytes)
    }

    /// A uniform value below `bound` (> 0), without modulo bias.
    pub fn below(&mut self, bound: u64) -> u64 {
        let zone = u64::MAX - (u64::MAX % bound);
        loop {
            let x = self.next_u64();
            if x < zone {
                return x % bound;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_hold_their_indices_and_are_secret() {
        let p = Placement::default();
        let elements = 16 << 20;
        let a = p
            .choose(elements, &mut SecretRng::new(&[1; 32], "e"))
            .unwrap();
        assert_eq!(a.len(), 64);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        let mut windows: Vec<u64> = a.iter().map(|i| i / p.span).collect();
        windows.dedup();
        assert_eq!(windows.len(), 16);
        let again = p
            .choose(elements, &mut SecretRng::new(&[1; 32], "e"))
            .unwrap();
        assert_eq!(a, again);
        let other_seed = p
            .choose(elements, &mut SecretRng::new(&[2; 32], "e"))
            .unwrap();
        let other_label = p
            .choose(elements, &mut SecretRng::new(&[1; 32], "f"))
            .unwrap();
        assert_ne!(a, other_seed);
        assert_ne!(a, other_label);
    }

    #[test]
    fn small_vectors_shrink_windows_or_scatter() {
        let p = Placement::default();
        let mut rng = SecretRng::new(&[3; 32], "x");
        let mid = p.choose(200, &mut rng).unwrap();
        assert_eq!(mid.len(), 64);
        assert!(mid.iter().all(|&i| i < 200));
        let all = p.choose(64, &mut rng).unwrap();
        assert_eq!(all, (0..64).collect::<Vec<_>>());
        assert!(p.choose(63, &mut rng).is_err());
        let bad = Placement {
            per_window: 5,
            span: 4,
            ..p
        };
        assert!(bad.choose(1 << 20, &mut rng).is_err());
    }

    #[test]
    fn every_slot_is_drawn_about_equally() {
        let mut rng = SecretRng::new(&[9; 32], "uniform");
        let mut counts = [0u32; 8];
        for _ in 0..8000 {
            for s in sample(&mut rng, 8, 2) {
                counts[s as usize] += 1;
            }
        }
        // Each slot is expected 2000 times; 6 sigma is about 230.
        assert!(
            counts.iter().all(|&c| (1770..=2230).contains(&c)),
            "{counts:?}"
        );
    }
}
