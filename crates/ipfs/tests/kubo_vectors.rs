//! Known-answer tests: the importer must give the CIDs Kubo gives.
//!
//! Vectors are in `fixtures/kubo-vectors.json` (made by
//! `scripts/make-ipfs-vectors.py`, see `fixtures/README.md`). Inputs are
//! regenerated here as streams, so memory stays flat whatever the size.
//! Vectors above `R3MES_VECTOR_MAX_BYTES` (default 1.1 GB: all but the two 7.9 GB trees) are skipped; the
//! `go-random` ones need their inputs in `R3MES_VECTOR_DATA/<sha256>.bin`.

use std::io::Read;

use chacha20::ChaCha20;
use chacha20::cipher::{KeyIvInit, StreamCipher};
use r3mes_ipfs::importer::{DiscardSink, ImportParams, import};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Kubo's `DeterministicRandomReaderBytes`: the ChaCha20 (IETF) keystream under
/// key sha256(seed), zero nonce, counter 0.
struct ChaChaStream {
    cipher: ChaCha20,
    remaining: u64,
}

impl ChaChaStream {
    fn new(seed: &str, size: u64) -> Self {
        let key: [u8; 32] = Sha256::digest(seed.as_bytes()).into();
        Self {
            cipher: ChaCha20::new(&key.into(), &[0u8; 12].into()),
            remaining: size,
        }
    }
}

impl Read for ChaChaStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.remaining) as usize;
        buf[..n].fill(0);
        self.cipher.apply_keystream(&mut buf[..n]);
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// A byte pattern repeated to `size` bytes.
struct PatternStream {
    pattern: Vec<u8>,
    pos: u64,
    size: u64,
}

impl Read for PatternStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.size {
            return Ok(0);
        }
        let start = (self.pos % self.pattern.len() as u64) as usize;
        let n = (buf.len() as u64)
            .min(self.size - self.pos)
            .min((self.pattern.len() - start) as u64) as usize;
        buf[..n].copy_from_slice(&self.pattern[start..start + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

/// Hashes what passes through, to check the generator before the importer.
struct Tee<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

fn input_for(vector: &Value) -> Option<Box<dyn Read + Send>> {
    let generator = &vector["generator"];
    let size = vector["size"].as_u64()?;
    match generator["kind"].as_str()? {
        "chacha20" => Some(Box::new(ChaChaStream::new(
            generator["seed"].as_str()?,
            size,
        ))),
        "pattern" => {
            let pattern = hex::decode(generator["pattern_hex"].as_str()?).ok()?;
            if pattern.is_empty() && size > 0 {
                return None;
            }
            Some(Box::new(PatternStream {
                pattern,
                pos: 0,
                size,
            }))
        }
        _ => {
            let dir = std::env::var_os("R3MES_VECTOR_DATA")?;
            let path = std::path::Path::new(&dir)
                .join(format!("{}.bin", vector["input_sha256"].as_str()?));
            Some(Box::new(std::fs::File::open(path).ok()?))
        }
    }
}

#[test]
fn importer_matches_kubo_vectors() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/kubo-vectors.json"
    ))
    .unwrap();
    let vectors: Vec<Value> = serde_json::from_str(&text).unwrap();
    let max_bytes: u64 = std::env::var("R3MES_VECTOR_MAX_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_100_000_000);
    let (mut checked, mut skipped) = (0, Vec::new());
    let mut kinds = std::collections::BTreeSet::new();
    for vector in &vectors {
        let name = vector["name"].as_str().unwrap();
        let size = vector["size"].as_u64().unwrap();
        let input = if size <= max_bytes {
            input_for(vector)
        } else {
            None
        };
        let Some(input) = input else {
            skipped.push(name);
            continue;
        };
        let params = ImportParams {
            chunk_size: vector["chunk_size"].as_u64().unwrap() as usize,
            raw_leaves: vector["raw_leaves"].as_bool().unwrap(),
            cid_version: vector["cid_version"].as_u64().unwrap() as u8,
            max_links: vector["max_links"].as_u64().unwrap() as usize,
        };
        let mut tee = Tee {
            inner: input,
            hasher: Sha256::new(),
        };
        let imported = import(&mut tee, &params, &mut DiscardSink).unwrap();
        let digest = hex::encode(tee.hasher.finalize());
        assert_eq!(
            digest,
            vector["input_sha256"].as_str().unwrap(),
            "{name}: generator differs from the script's"
        );
        assert_eq!(
            imported.root.to_string(),
            vector["cid"].as_str().unwrap(),
            "{name}: CID differs from Kubo's"
        );
        assert_eq!(imported.file_size, size, "{name}");
        kinds.insert((
            params.cid_version,
            params.raw_leaves,
            params.chunk_size,
            params.max_links,
        ));
        checked += 1;
    }
    eprintln!(
        "checked {checked} vectors, skipped {}: {skipped:?}",
        skipped.len()
    );
    assert!(checked >= 40, "too few vectors checked: {checked}");
    // Every parameter family is exercised: v0, v0+raw leaves, v1, v1 without raw leaves, 1 MiB chunks, 1024 links.
    assert!(kinds.len() >= 5, "{kinds:?}");
}
