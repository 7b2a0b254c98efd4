//! Tokenizers: text bytes to the `u16` token ids a chunk file stores.
//!
//! Two kinds:
//!
//! * [`Tokenizer::Byte`]: token = byte value, vocabulary 256, pad id
//!   [`PAD_TOKEN`]. Any bytes are accepted.
//! * [`Tokenizer::Json`]: a Hugging Face `tokenizer.json` (any model the
//!   `tokenizers` crate reads: BPE, WordPiece, WordLevel, Unigram), loaded
//!   with its normalizer, pre-tokenizer and added tokens.
//!
//! # Rules for a `tokenizer.json`
//!
//! * **Ids fit `u16`.** Chunk files store 16-bit ids, so a tokenizer whose
//!   largest id (added tokens included) is above `u16::MAX` is refused when
//!   it is loaded, with its vocabulary size in the message. Whether the ids
//!   fit the *model's* vocabulary is the miner's check, not this crate's.
//! * **Text only.** The input must be UTF-8; the byte offset of the first
//!   invalid byte is reported otherwise.
//! * **A plain token stream.** No special tokens are added (no BOS/EOS: the
//!   `add_special_tokens` of the post-processor is off), and the file's own
//!   `truncation` and `padding` settings are switched off, so no text is ever
//!   dropped and the chunker alone decides where chunks end.
//! * **Bounded pieces.** The text is encoded in pieces of at most
//!   [`PIECE_BYTES`] that end just after a newline (a longer line is a piece
//!   of its own), and the ids of the pieces are concatenated. Memory stays
//!   proportional to a piece, not to the corpus; a token can therefore not
//!   span such a piece boundary, which for the usual tokenizers only matters
//!   for runs of blank lines.
//! * **Pad id.** The id filling the last chunk is, in this order: the
//!   `pad_id` of the file's `padding` section if it has one; else the id of
//!   the first of the tokens [`PAD_NAMES`] (`<pad>`, `[PAD]`, `<|pad|>`) the
//!   tokenizer knows; else 0. Padded positions are masked out of the loss
//!   anyway, so the choice only matters for what a reader of the chunk sees.
//! * **Identity.** [`JsonTokenizer::sha256`] is the SHA-256 of the file's
//!   bytes, recorded in a dataset's manifest beside the vocabulary size.

use std::panic::{AssertUnwindSafe, catch_unwind};

use sha2::{Digest, Sha256};

use crate::{Error, PAD_TOKEN, Result};

/// Largest `tokenizer.json` accepted (real ones are a few MiB to a few tens
/// of MiB).
pub const MAX_TOKENIZER_BYTES: usize = 64 << 20;

/// Largest piece of text given to the tokenizer at once (see the module
/// documentation).
pub const PIECE_BYTES: usize = 1 << 20;

/// Token names taken as the pad token, in order of preference.
pub const PAD_NAMES: [&str; 3] = ["<pad>", "[PAD]", "<|pad|>"];

/// Largest vocabulary a chunk file can address.
pub const MAX_VOCAB: usize = u16::MAX as usize + 1;

/// How text becomes token ids.
#[derive(Debug, Clone)]
pub enum Tokenizer {
    /// Byte-level: token = byte value.
    Byte,
    /// A Hugging Face `tokenizer.json`.
    Json(Box<JsonTokenizer>),
}

/// A loaded `tokenizer.json` with what a manifest records of it.
#[derive(Debug, Clone)]
pub struct JsonTokenizer {
    inner: tokenizers::Tokenizer,
    sha256: String,
    vocab_size: usize,
    pad: u16,
}

impl JsonTokenizer {
    /// Lowercase hex SHA-256 of the `tokenizer.json` bytes.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Vocabulary size: one more than the largest id, added tokens
    /// included (at most [`MAX_VOCAB`]).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }
}

impl Tokenizer {
    /// Loads a `tokenizer.json` from its bytes (see the module
    /// documentation for what is refused).
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let fail = |why: String| Error::Tokenizer(why);
        if bytes.len() > MAX_TOKENIZER_BYTES {
            return Err(fail(format!(
                "{} bytes, more than the {MAX_TOKENIZER_BYTES} accepted",
                bytes.len()
            )));
        }
        // The parser is third-party code: a panic on a hostile file becomes
        // an error like any other.
        let parsed = catch_unwind(AssertUnwindSafe(|| {
            tokenizers::Tokenizer::from_bytes(bytes)
        }))
        .map_err(|_| fail("the tokenizers library failed on this file".into()))?;
        let mut inner = parsed.map_err(|e| fail(format!("not a tokenizer.json: {e}")))?;
        let largest = inner
            .get_vocab(true)
            .into_values()
            .max()
            .ok_or_else(|| fail("the vocabulary is empty".into()))?;
        let vocab_size = largest as usize + 1;
        if vocab_size > MAX_VOCAB {
            return Err(fail(format!(
                "vocabulary of {vocab_size} tokens (largest id {largest}); chunk files store \
                 16-bit ids, so at most {MAX_VOCAB} tokens are supported"
            )));
        }
        let pad = inner
            .get_padding()
            .map(|p| p.pad_id)
            .or_else(|| PAD_NAMES.iter().find_map(|name| inner.token_to_id(name)))
            .unwrap_or(0);
        let pad =
            u16::try_from(pad).map_err(|_| fail(format!("pad id {pad} does not fit 16 bits")))?;
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| fail(format!("switching truncation off: {e}")))?;
        Ok(Self::Json(Box::new(JsonTokenizer {
            inner,
            sha256: hex::encode(Sha256::digest(bytes)),
            vocab_size,
            pad,
        })))
    }

    /// Reads and loads a `tokenizer.json`.
    pub fn load(path: &std::path::Path) -> Result<Self> {
        let len = std::fs::metadata(path)
            .map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))?
            .len();
        if len > MAX_TOKENIZER_BYTES as u64 {
            return Err(Error::Tokenizer(format!(
                "{}: {len} bytes, more than the {MAX_TOKENIZER_BYTES} accepted",
                path.display()
            )));
        }
        let bytes = std::fs::read(path)
            .map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))?;
        Self::from_json(&bytes)
            .map_err(|e| Error::Tokenizer(format!("{}: {}", path.display(), untag(&e))))
    }

    /// The id that pads a dataset's last chunk.
    pub fn pad_token(&self) -> u16 {
        match self {
            Self::Byte => PAD_TOKEN,
            Self::Json(t) => t.pad,
        }
    }

    /// Vocabulary size (256 for bytes).
    pub fn vocab_size(&self) -> usize {
        match self {
            Self::Byte => 256,
            Self::Json(t) => t.vocab_size,
        }
    }

    /// The token ids of `text`.
    pub fn encode(&self, text: &[u8]) -> Result<Vec<u16>> {
        let t = match self {
            Self::Byte => return Ok(crate::byte_tokens(text)),
            Self::Json(t) => t,
        };
        let text = std::str::from_utf8(text).map_err(|e| {
            Error::Tokenizer(format!(
                "the text is not UTF-8 (invalid byte at offset {})",
                e.valid_up_to()
            ))
        })?;
        let mut ids = Vec::with_capacity(text.len() / 3);
        for piece in pieces(text, PIECE_BYTES) {
            let encoding = t
                .inner
                .encode_fast(piece, false)
                .map_err(|e| Error::Tokenizer(format!("encoding failed: {e}")))?;
            for &id in encoding.get_ids() {
                ids.push(u16::try_from(id).map_err(|_| {
                    Error::Tokenizer(format!("token id {id} does not fit 16 bits"))
                })?);
            }
        }
        Ok(ids)
    }
}

/// The message of a tokenizer error without its `tokenizer: ` prefix.
fn untag(e: &Error) -> String {
    match e {
        Error::Tokenizer(why) => why.clone(),
        other => other.to_string(),
    }
}

/// `text` cut into pieces of at most `max` bytes, each ending just after a
/// newline where there is one; a line longer than `max` is one piece.
fn pieces(text: &str, max: usize) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = if rest.len() <= max {
            rest.len()
        } else {
            let window = &rest.as_bytes()[..max];
            match window.iter().rposition(|b| *b == b'\n') {
                Some(nl) => nl + 1,
                None => rest
                    .as_bytes()
                    .iter()
                    .position(|b| *b == b'\n')
                    .map_or(rest.len(), |nl| nl + 1),
            }
        };
        let (piece, tail) = rest.split_at(end);
        rest = tail;
        Some(piece)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_end_after_newlines_and_cover_the_text() {
        let text = "ab\ncd\nef\n\nlonger line here\nx";
        for max in [1, 3, 4, 7, 100] {
            let parts: Vec<&str> = pieces(text, max).collect();
            assert_eq!(parts.concat(), text, "max {max}");
            for p in &parts[..parts.len() - 1] {
                assert!(p.ends_with('\n'), "{p:?} with max {max}");
                assert!(p.len() <= max || !p[..p.len() - 1].contains('\n'));
            }
        }
        assert_eq!(pieces("", 4).count(), 0);
        assert_eq!(pieces("a\nb\n", 4).collect::<Vec<_>>(), ["a\nb\n"]);
        assert_eq!(pieces("a\nb\nc", 4).collect::<Vec<_>>(), ["a\nb\n", "c"]);
    }

    #[test]
    fn byte_tokenizer_is_the_byte_values() {
        let t = Tokenizer::Byte;
        assert_eq!(t.encode(b"\x00\xffA").unwrap(), vec![0, 255, 65]);
        assert_eq!((t.vocab_size(), t.pad_token()), (256, PAD_TOKEN));
    }
}
