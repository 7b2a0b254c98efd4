//! A Hugging Face `tokenizer.json` through [`Tokenizer`]: the hand-written
//! WordLevel fixture gives the expected ids, its `<pad>` pads the last
//! chunk, the file's truncation and padding settings are ignored, and
//! malformed files, ids above 16 bits and non-UTF-8 text are refused with a
//! reason.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use r3mes_dataset::{CHUNK_TOKENS, Error, Tokenizer, split_into_chunks_with_pad};

fn fixture_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-wordlevel.tokenizer.json")
}

fn fixture_text() -> String {
    std::fs::read_to_string(fixture_path()).unwrap()
}

fn message(e: Error) -> String {
    e.to_string()
}

#[test]
fn the_fixture_encodes_to_the_expected_ids() {
    let t = Tokenizer::load(&fixture_path()).unwrap();
    assert_eq!(
        t.encode(b"The quick brown fox, the lazy dog.").unwrap(),
        vec![2, 3, 4, 5, 11, 2, 8, 9, 10]
    );
    // Unknown words are <unk>; newlines are whitespace like any other.
    assert_eq!(
        t.encode(b"jumps over a cat\nthe DOG\n").unwrap(),
        vec![6, 7, 0, 0, 2, 9]
    );
    assert_eq!(t.vocab_size(), 12);
    assert_eq!(t.pad_token(), 1, "the <pad> token");
    let Tokenizer::Json(json) = &t else {
        panic!("a tokenizer.json")
    };
    assert_eq!(json.sha256().len(), 64);
    assert_eq!(json.vocab_size(), 12);
}

#[test]
fn a_long_text_is_encoded_whole_and_padded_with_the_pad_id() {
    let t = Tokenizer::load(&fixture_path()).unwrap();
    // More than one encoding piece (1 MiB) and more than one chunk.
    let line = "the quick brown fox jumps over the lazy dog.\n";
    let text = line.repeat((1 << 20) / line.len() + 10);
    let ids = t.encode(text.as_bytes()).unwrap();
    let per_line = [2u16, 3, 4, 5, 6, 7, 2, 8, 9, 10];
    assert_eq!(ids.len(), per_line.len() * (text.len() / line.len()));
    assert!(ids.chunks(per_line.len()).all(|c| c == per_line));
    let chunks = split_into_chunks_with_pad(&ids, t.pad_token()).unwrap();
    let last = chunks.last().unwrap();
    let counted = ids.len() % CHUNK_TOKENS;
    assert_eq!(last.counted(), counted);
    assert!(last.tokens()[counted..].iter().all(|t| *t == 1));
}

#[test]
fn the_files_truncation_and_padding_are_switched_off() {
    let mut doc: serde_json::Value = serde_json::from_str(&fixture_text()).unwrap();
    doc["truncation"] = serde_json::json!({
        "direction": "Right", "max_length": 2, "strategy": "LongestFirst", "stride": 0
    });
    doc["padding"] = serde_json::json!({
        "strategy": {"Fixed": 64}, "direction": "Right", "pad_to_multiple_of": null,
        "pad_id": 3, "pad_type_id": 0, "pad_token": "quick"
    });
    let t = Tokenizer::from_json(doc.to_string().as_bytes()).unwrap();
    assert_eq!(t.encode(b"the lazy dog").unwrap(), vec![2, 8, 9]);
    assert_eq!(t.pad_token(), 3, "the padding section's pad_id wins");
}

#[test]
fn without_a_pad_token_the_pad_id_is_zero() {
    let text = fixture_text()
        .replace("\"<pad>\"", "\"<notpad>\"")
        .replace("\"content\": \"<pad>\"", "\"content\": \"<notpad>\"");
    let t = Tokenizer::from_json(text.as_bytes()).unwrap();
    assert_eq!(t.pad_token(), 0);
}

#[test]
fn ids_above_sixteen_bits_are_refused_with_the_vocabulary_size() {
    let text = fixture_text().replace("\",\": 11", "\",\": 11, \"huge\": 65536");
    let e = message(Tokenizer::from_json(text.as_bytes()).unwrap_err());
    assert!(e.contains("65537 tokens"), "{e}");
    assert!(e.contains("largest id 65536"), "{e}");
    // 65535 is the largest id a chunk file holds.
    let text = fixture_text().replace("\",\": 11", "\",\": 11, \"big\": 65535");
    let t = Tokenizer::from_json(text.as_bytes()).unwrap();
    assert_eq!(t.vocab_size(), 65536);
    assert_eq!(t.encode(b"big dog").unwrap(), vec![65535, 9]);
}

#[test]
fn malformed_files_and_text_are_refused_with_a_reason() {
    for (bytes, needle) in [
        (&b""[..], "not a tokenizer.json"),
        (b"{", "not a tokenizer.json"),
        (b"[1, 2, 3]", "not a tokenizer.json"),
        (
            br#"{"version": "1.0", "model": {"type": "NoSuchModel"}}"#,
            "not a tokenizer.json",
        ),
        (b"\xff\xfe{}", "not a tokenizer.json"),
    ] {
        let e = message(Tokenizer::from_json(bytes).unwrap_err());
        assert!(e.starts_with("tokenizer: "), "{e}");
        assert!(e.contains(needle), "{e}");
    }
    let e =
        message(Tokenizer::load(std::path::Path::new("/nonexistent/tokenizer.json")).unwrap_err());
    assert!(e.contains("/nonexistent/tokenizer.json"), "{e}");
    let t = Tokenizer::load(&fixture_path()).unwrap();
    let e = message(t.encode(b"the fox \xc3\x28 dog").unwrap_err());
    assert!(e.contains("not UTF-8") && e.contains("offset 8"), "{e}");
}
