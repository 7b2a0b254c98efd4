//! The chunk file: one 2048-token chunk with its loss mask.
//!
//! ```text
//! offset  size   field
//! 0       8      magic "R3CHUNK1"
//! 8       4      token count, u32 little-endian, always 2048
//! 12      4096   tokens, u16 little-endian each
//! 4108    256    loss mask, bit i (byte i / 8, least significant bit
//!                first) set when token i counts in the loss
//! 4364    32     sha256 of bytes 0..4364
//! ```
//!
//! 4,396 bytes in all, so a chunk is always one IPFS leaf. Decoding checks
//! every field and refuses anything else with a reason; it never panics.

use sha2::{Digest, Sha256};

use crate::{CHUNK_TOKENS, Error, Result};

/// The file's first bytes.
pub const MAGIC: &[u8; 8] = b"R3CHUNK1";
/// Bytes of the loss mask.
const MASK_BYTES: usize = CHUNK_TOKENS / 8;
/// Bytes before the checksum.
const BODY_BYTES: usize = 8 + 4 + 2 * CHUNK_TOKENS + MASK_BYTES;
/// Bytes of a chunk file.
pub const CHUNK_FILE_BYTES: usize = BODY_BYTES + 32;

/// A chunk: exactly 2048 tokens and which of them count in the loss.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    tokens: Vec<u16>,
    mask: Vec<bool>,
}

impl Chunk {
    /// A chunk of `tokens` with `mask`; both must be 2048 long.
    pub fn new(tokens: Vec<u16>, mask: Vec<bool>) -> Result<Self> {
        if tokens.len() != CHUNK_TOKENS {
            return Err(Error::InvalidChunkSize(tokens.len()));
        }
        if mask.len() != CHUNK_TOKENS {
            return Err(Error::Malformed(format!(
                "the mask has {} entries, expected {CHUNK_TOKENS}",
                mask.len()
            )));
        }
        Ok(Chunk { tokens, mask })
    }

    /// The tokens.
    pub fn tokens(&self) -> &[u16] {
        &self.tokens
    }

    /// The loss mask (true: the token counts).
    pub fn mask(&self) -> &[bool] {
        &self.mask
    }

    /// Tokens that count in the loss.
    pub fn counted(&self) -> usize {
        self.mask.iter().filter(|m| **m).count()
    }
}

/// The chunk file of `chunk`.
pub fn encode_chunk(chunk: &Chunk) -> Vec<u8> {
    let mut out = Vec::with_capacity(CHUNK_FILE_BYTES);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(CHUNK_TOKENS as u32).to_le_bytes());
    for t in &chunk.tokens {
        out.extend_from_slice(&t.to_le_bytes());
    }
    let mut mask = [0u8; MASK_BYTES];
    for (i, counted) in chunk.mask.iter().enumerate() {
        if *counted {
            mask[i / 8] |= 1 << (i % 8);
        }
    }
    out.extend_from_slice(&mask);
    let digest = Sha256::digest(&out);
    out.extend_from_slice(&digest);
    out
}

/// Reads a chunk file (see the module docs).
pub fn decode_chunk(bytes: &[u8]) -> Result<Chunk> {
    if bytes.len() < 12 || &bytes[..8] != MAGIC {
        return Err(Error::Malformed(
            "not a chunk file (no R3CHUNK1 magic)".into(),
        ));
    }
    let count = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
    if count != CHUNK_TOKENS {
        return Err(Error::InvalidChunkSize(count));
    }
    if bytes.len() != CHUNK_FILE_BYTES {
        return Err(Error::Malformed(format!(
            "{} bytes, a chunk file has {CHUNK_FILE_BYTES}",
            bytes.len()
        )));
    }
    let (body, checksum) = bytes.split_at(BODY_BYTES);
    if Sha256::digest(body).as_slice() != checksum {
        return Err(Error::Malformed("checksum mismatch".into()));
    }
    let tokens = body[12..12 + 2 * CHUNK_TOKENS]
        .chunks_exact(2)
        .map(|p| u16::from_le_bytes([p[0], p[1]]))
        .collect();
    let mask_bytes = &body[12 + 2 * CHUNK_TOKENS..];
    let mask = (0..CHUNK_TOKENS)
        .map(|i| mask_bytes[i / 8] & (1 << (i % 8)) != 0)
        .collect();
    Chunk::new(tokens, mask)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Chunk {
        let tokens = (0..CHUNK_TOKENS).map(|i| (i * 7 % 300) as u16).collect();
        let mask = (0..CHUNK_TOKENS).map(|i| i < 2000).collect();
        Chunk::new(tokens, mask).unwrap()
    }

    #[test]
    fn round_trip_and_size() {
        let c = sample();
        let bytes = encode_chunk(&c);
        assert_eq!(bytes.len(), CHUNK_FILE_BYTES);
        assert_eq!(decode_chunk(&bytes).unwrap(), c);
        assert_eq!(c.counted(), 2000);
    }

    #[test]
    fn wrong_sizes_and_tampering_are_refused() {
        assert_eq!(
            Chunk::new(vec![1; 2047], vec![true; 2047])
                .unwrap_err()
                .to_string(),
            "Invalid chunk size: 2047 (expected 2048)"
        );
        let mut bytes = encode_chunk(&sample());
        bytes[20] ^= 1;
        assert!(
            decode_chunk(&bytes)
                .unwrap_err()
                .to_string()
                .contains("checksum")
        );
        let mut bytes = encode_chunk(&sample());
        bytes[8..12].copy_from_slice(&4096u32.to_le_bytes());
        assert_eq!(
            decode_chunk(&bytes).unwrap_err(),
            Error::InvalidChunkSize(4096)
        );
        assert!(decode_chunk(&bytes[..100]).is_err());
        assert!(decode_chunk(b"").is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..5000)) {
            let _ = decode_chunk(&bytes);
        }

        #[test]
        fn any_chunk_round_trips(tokens in proptest::collection::vec(any::<u16>(), CHUNK_TOKENS),
                                 mask in proptest::collection::vec(any::<bool>(), CHUNK_TOKENS)) {
            let c = Chunk::new(tokens, mask).unwrap();
            prop_assert_eq!(decode_chunk(&encode_chunk(&c)).unwrap(), c);
        }
    }
}
