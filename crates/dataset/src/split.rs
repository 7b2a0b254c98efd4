//! From tokens to shards: byte-level tokens, fixed 2048-token chunks (the
//! tail padded and masked), chunks grouped into shards in order.

use crate::{CHUNK_TOKENS, Chunk, Error, PAD_TOKEN, Result};

/// Byte-level tokens of `text` (token = byte value).
pub fn byte_tokens(text: &[u8]) -> Vec<u16> {
    text.iter().map(|b| u16::from(*b)).collect()
}

/// Cuts `tokens` into chunks of exactly 2048; the last is filled with
/// [`PAD_TOKEN`], which its mask leaves out of the loss.
pub fn split_into_chunks(tokens: &[u16]) -> Result<Vec<Chunk>> {
    split_into_chunks_with_pad(tokens, PAD_TOKEN)
}

/// [`split_into_chunks`] with the tokenizer's own pad id `pad`.
pub fn split_into_chunks_with_pad(tokens: &[u16], pad: u16) -> Result<Vec<Chunk>> {
    if tokens.is_empty() {
        return Err(Error::Empty);
    }
    tokens
        .chunks(CHUNK_TOKENS)
        .map(|part| {
            let mut t = part.to_vec();
            let mut mask = vec![true; part.len()];
            t.resize(CHUNK_TOKENS, pad);
            mask.resize(CHUNK_TOKENS, false);
            Chunk::new(t, mask)
        })
        .collect()
}

/// A shard: consecutive chunks, numbered from 0 within the dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    /// Shard id (its index in the dataset).
    pub id: u64,
    /// Dataset-wide index of its first chunk.
    pub first_chunk: u64,
    /// Its chunks.
    pub chunks: Vec<Chunk>,
}

/// Groups `chunks` into shards of `per_shard` (the last may hold fewer).
pub fn shards_of(chunks: Vec<Chunk>, per_shard: usize) -> Result<Vec<Shard>> {
    if per_shard == 0 {
        return Err(Error::ZeroShardSize);
    }
    let mut shards = Vec::new();
    let mut first = 0u64;
    let mut rest = chunks.into_iter().peekable();
    while rest.peek().is_some() {
        let chunks: Vec<Chunk> = rest.by_ref().take(per_shard).collect();
        let n = chunks.len() as u64;
        shards.push(Shard {
            id: shards.len() as u64,
            first_chunk: first,
            chunks,
        });
        first += n;
    }
    Ok(shards)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tail_is_padded_and_masked() {
        let chunks = split_into_chunks(&byte_tokens(&vec![b'a'; 5000])).unwrap();
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[0].counted(), 2048);
        assert_eq!(chunks[2].counted(), 5000 - 4096);
        assert_eq!(chunks[2].tokens()[904], PAD_TOKEN);
        assert!(!chunks[2].mask()[904]);
        assert_eq!(split_into_chunks(&[]).unwrap_err(), Error::Empty);
    }

    #[test]
    fn shards_keep_order() {
        let chunks = split_into_chunks(&byte_tokens(&vec![1; 2048 * 5])).unwrap();
        let shards = shards_of(chunks, 2).unwrap();
        let sizes: Vec<usize> = shards.iter().map(|s| s.chunks.len()).collect();
        assert_eq!(sizes, [2, 2, 1]);
        assert_eq!(shards[2].first_chunk, 4);
        assert_eq!(shards_of(Vec::new(), 0).unwrap_err(), Error::ZeroShardSize);
    }

    proptest! {
        #[test]
        fn chunks_hold_every_token_once(text in proptest::collection::vec(any::<u8>(), 1..9000)) {
            let chunks = split_into_chunks(&byte_tokens(&text)).unwrap();
            let counted: Vec<u16> = chunks
                .iter()
                .flat_map(|c| c.tokens().iter().zip(c.mask()).filter(|(_, m)| **m).map(|(t, _)| *t))
                .collect();
            prop_assert_eq!(counted, byte_tokens(&text));
            prop_assert!(chunks.iter().all(|c| c.tokens().len() == CHUNK_TOKENS));
        }
    }
}
