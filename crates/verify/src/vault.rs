//! The validator's secret vault: reference values at secret flat indices of
//! the gradient of known data chunks, and the cosine threshold a miner's
//! gradient of the same chunk must reach.
//!
//! # File format (version 1)
//!
//! UTF-8 JSON, one object, unknown fields rejected everywhere:
//!
//! ```json
//! {
//!   "format": "r3mes-vault",
//!   "version": 1,
//!   "entries": [{
//!     "id": "shard3-chunk7",
//!     "chunk": { "data_hash": "Qm...", "chunk_id": 7, "shard_id": 3 },
//!     "order": "canonical",
//!     "elements": 16777216,
//!     "threshold_ppm": 950000,
//!     "indices": [1024, 1311, ...],
//!     "values": [0.0123, -0.5, ...]
//!   }]
//! }
//! ```
//!
//! - `chunk`: the data chunk the entry was computed on (`data_hash` is the
//!   chunk's CID, as in `ChunkData` on chain), so the node can match a
//!   submitted gradient to the entries of its chunks;
//! - `order`: the flattening the indices refer to (`canonical`: tensors in
//!   bytewise name order, or `file`), see `r3mes_tensor::flatten`;
//! - `elements`: length of the flat vector of the reference gradient; a
//!   gradient of another length fails verification;
//! - `threshold_ppm`: the cosine similarity, times 10^6, to reach or exceed;
//! - `indices`: strictly increasing flat indices below `elements`;
//! - `values`: the reference value at each index (finite, not all zero).
//!
//! Limits: at most [`MAX_VAULT_BYTES`] bytes, [`MAX_ENTRIES`] entries,
//! [`MAX_INDICES`] indices per entry, ids of at most [`MAX_ID_LEN`] bytes,
//! unique. Vault files are written with mode 0600 (atomically, through a
//! temporary file); the file is the secret, the miner must never see it.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::Path;

use r3mes_tensor::Order;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// The `format` field every vault file carries.
pub const FORMAT: &str = "r3mes-vault";
/// The version this build reads and writes.
pub const VERSION: u32 = 1;
/// Largest vault file read.
pub const MAX_VAULT_BYTES: u64 = 64 << 20;
/// Most entries in one vault.
pub const MAX_ENTRIES: usize = 100_000;
/// Most indices in one entry.
pub const MAX_INDICES: usize = 1 << 16;
/// Longest entry id, in bytes.
pub const MAX_ID_LEN: usize = 128;
/// Longest chunk data hash, in bytes.
const MAX_HASH_LEN: usize = 128;
/// Largest flat vector an entry may describe (the tensor crate's element limit is lower).
const MAX_ELEMENTS: u64 = 1 << 40;

/// A vault: entries for the chunks this validator can check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vault {
    /// Always [`FORMAT`].
    pub format: String,
    /// Always [`VERSION`].
    pub version: u32,
    /// The entries, ids unique.
    pub entries: Vec<VaultEntry>,
}

/// The data chunk an entry's reference gradient was computed on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkRef {
    /// CID of the chunk's data.
    pub data_hash: String,
    /// Identifier of the chunk within its shard.
    pub chunk_id: u64,
    /// The data shard the chunk belongs to.
    pub shard_id: u64,
}

/// Flattening order as the file spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlatOrder {
    /// Tensors in bytewise name order ([`Order::Canonical`]).
    #[default]
    Canonical,
    /// Tensors in file order ([`Order::File`]).
    File,
}

impl From<FlatOrder> for Order {
    fn from(order: FlatOrder) -> Self {
        match order {
            FlatOrder::Canonical => Order::Canonical,
            FlatOrder::File => Order::File,
        }
    }
}

/// One secret check: reference values at secret indices of one chunk's gradient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultEntry {
    /// Unique name of the entry.
    pub id: String,
    /// The chunk it belongs to.
    pub chunk: ChunkRef,
    /// The flattening the indices refer to.
    #[serde(default)]
    pub order: FlatOrder,
    /// Length of the reference gradient's flat vector.
    pub elements: u64,
    /// Cosine similarity times 10^6 to reach, in `[-1000000, 1000000]`.
    pub threshold_ppm: i64,
    /// Strictly increasing flat indices.
    pub indices: Vec<u64>,
    /// Reference value at each index.
    pub values: Vec<f64>,
    /// The model version the reference gradient was computed with: the entry
    /// then checks only gradients of rounds that train from that version
    /// (the newest registered at or before the round's start). `None`
    /// checks every gradient of the chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_version: Option<u64>,
}

impl VaultEntry {
    /// Checks every rule of the format for one entry.
    pub fn validate(&self) -> Result<()> {
        let id = &self.id;
        if id.is_empty() || id.len() > MAX_ID_LEN {
            return Err(Error::Vault(format!(
                "entry id {:?} must be 1 to {MAX_ID_LEN} bytes",
                truncate(id)
            )));
        }
        if id.chars().any(char::is_control) {
            return Err(Error::Vault(format!(
                "entry id {:?} contains control characters",
                truncate(id)
            )));
        }
        let hash = &self.chunk.data_hash;
        if hash.len() > MAX_HASH_LEN {
            return Err(Error::Vault(format!(
                "entry {id}: chunk data_hash is {} bytes, at most {MAX_HASH_LEN} allowed",
                hash.len()
            )));
        }
        r3mes_ipfs::cids::parse(hash)
            .map_err(|e| Error::Vault(format!("entry {id}: chunk data_hash: {e}")))?;
        if self.elements == 0 || self.elements > MAX_ELEMENTS {
            return Err(Error::Vault(format!(
                "entry {id}: elements {} must be 1 to {MAX_ELEMENTS}",
                self.elements
            )));
        }
        if !(-1_000_000..=1_000_000).contains(&self.threshold_ppm) {
            return Err(Error::Vault(format!(
                "entry {id}: threshold_ppm {} is outside [-1000000, 1000000]",
                self.threshold_ppm
            )));
        }
        if self.indices.is_empty() || self.indices.len() > MAX_INDICES {
            return Err(Error::Vault(format!(
                "entry {id}: {} indices, 1 to {MAX_INDICES} allowed",
                self.indices.len()
            )));
        }
        if self.indices.len() != self.values.len() {
            return Err(Error::Vault(format!(
                "entry {id}: {} indices but {} values",
                self.indices.len(),
                self.values.len()
            )));
        }
        if let Some(pair) = self.indices.windows(2).find(|w| w[0] >= w[1]) {
            return Err(Error::Vault(format!(
                "entry {id}: indices must be strictly increasing ({} then {})",
                pair[0], pair[1]
            )));
        }
        if let Some(last) = self.indices.last().filter(|&&i| i >= self.elements) {
            return Err(Error::Vault(format!(
                "entry {id}: index {last} is out of range for {} elements",
                self.elements
            )));
        }
        if let Some(bad) = self.values.iter().find(|v| !v.is_finite()) {
            return Err(Error::Vault(format!(
                "entry {id}: value {bad} is not finite"
            )));
        }
        if self.values.iter().all(|v| *v == 0.0) {
            return Err(Error::Vault(format!(
                "entry {id}: all reference values are zero (the cosine is undefined)"
            )));
        }
        Ok(())
    }

    /// The 32-byte commitment `MsgSubmitVerification` carries: sha256 of the
    /// entry's JSON encoding (fields in declaration order, shortest exact floats).
    pub fn commitment(&self) -> [u8; 32] {
        let json = serde_json::to_vec(self).unwrap_or_default();
        Sha256::digest(&json).into()
    }

    /// The flattening order as the tensor crate names it.
    pub fn flat_order(&self) -> Order {
        self.order.into()
    }
}

impl Default for Vault {
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

impl Vault {
    /// A vault of `entries` (not yet validated).
    pub fn new(entries: Vec<VaultEntry>) -> Self {
        Self {
            format: FORMAT.into(),
            version: VERSION,
            entries,
        }
    }

    /// Checks the header, every entry, and that ids are unique.
    pub fn validate(&self) -> Result<()> {
        if self.format != FORMAT {
            return Err(Error::Vault(format!(
                "format is {:?}, expected {FORMAT:?}",
                truncate(&self.format)
            )));
        }
        if self.version != VERSION {
            return Err(Error::Vault(format!(
                "version {} is not supported (this build reads version {VERSION})",
                self.version
            )));
        }
        if self.entries.len() > MAX_ENTRIES {
            return Err(Error::Vault(format!(
                "{} entries, at most {MAX_ENTRIES} allowed",
                self.entries.len()
            )));
        }
        let mut ids = HashSet::with_capacity(self.entries.len());
        for entry in &self.entries {
            entry.validate()?;
            if !ids.insert(entry.id.as_str()) {
                return Err(Error::Vault(format!("duplicate entry id {:?}", entry.id)));
            }
        }
        Ok(())
    }

    /// Decodes and validates a vault from its file bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        if bytes.len() as u64 > MAX_VAULT_BYTES {
            return Err(Error::Vault(format!(
                "{} bytes, at most {MAX_VAULT_BYTES} allowed",
                bytes.len()
            )));
        }
        let vault: Vault =
            serde_json::from_slice(bytes).map_err(|e| Error::Vault(e.to_string()))?;
        vault.validate()?;
        Ok(vault)
    }

    /// Validates and encodes the vault as its file bytes (pretty JSON, trailing newline).
    pub fn to_vec(&self) -> Result<Vec<u8>> {
        self.validate()?;
        let mut out = serde_json::to_vec_pretty(self).map_err(|e| Error::Vault(e.to_string()))?;
        out.push(b'\n');
        Ok(out)
    }

    /// Reads a vault file, refusing one over [`MAX_VAULT_BYTES`] before reading it.
    pub fn load(path: &Path) -> Result<Self> {
        let context = || format!("reading vault {}", path.display());
        let file = std::fs::File::open(path).map_err(|e| Error::io(context(), e))?;
        let mut bytes = Vec::new();
        file.take(MAX_VAULT_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io(context(), e))?;
        Self::from_slice(&bytes).map_err(|e| match e {
            Error::Vault(reason) => Error::Vault(format!("{}: {reason}", path.display())),
            other => other,
        })
    }

    /// Writes the vault to `path` with mode 0600, replacing any file there atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let bytes = self.to_vec()?;
        let context = || format!("writing vault {}", path.display());
        let name = path
            .file_name()
            .ok_or_else(|| Error::InvalidArgument(format!("{} names no file", path.display())))?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".tmp-{}", std::process::id()));
        let tmp = path.with_file_name(tmp_name);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| Error::io(context(), e))?;
        let written = file
            .write_all(&bytes)
            .and_then(|()| file.sync_all())
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::io(context(), e));
        }
        Ok(())
    }

    /// The entry named `id`.
    pub fn entry(&self, id: &str) -> Option<&VaultEntry> {
        self.entries.iter().find(|e| e.id == id)
    }

    /// The entries computed on the chunk whose data CID is `data_hash`.
    pub fn entries_for_chunk<'a>(
        &'a self,
        data_hash: &'a str,
    ) -> impl Iterator<Item = &'a VaultEntry> + 'a {
        self.entries
            .iter()
            .filter(move |e| e.chunk.data_hash == data_hash)
    }
}

/// At most 40 characters of `text`, for error messages about hostile input.
fn truncate(text: &str) -> String {
    let mut out: String = text.chars().take(40).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const CHUNK: &str = "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH";

    fn entry() -> VaultEntry {
        VaultEntry {
            id: "e1".into(),
            chunk: ChunkRef {
                data_hash: CHUNK.into(),
                chunk_id: 7,
                shard_id: 3,
            },
            order: FlatOrder::Canonical,
            elements: 100,
            threshold_ppm: 900_000,
            indices: vec![1, 5, 99],
            values: vec![0.5, -1.25, 1e-30],
            model_version: None,
        }
    }

    fn rejects(mutate: impl FnOnce(&mut VaultEntry), needle: &str) {
        let mut e = entry();
        mutate(&mut e);
        let err = Vault::new(vec![e]).validate().unwrap_err().to_string();
        assert!(err.contains(needle), "{err:?} lacks {needle:?}");
    }

    #[test]
    fn round_trips_exactly() {
        let vault = Vault::new(vec![entry()]);
        let bytes = vault.to_vec().unwrap();
        assert_eq!(Vault::from_slice(&bytes).unwrap(), vault);
    }

    #[test]
    fn every_entry_rule_is_checked() {
        rejects(|e| e.id.clear(), "entry id");
        rejects(|e| e.id = "a\nb".into(), "control");
        rejects(|e| e.chunk.data_hash = "nope".into(), "data_hash");
        rejects(|e| e.elements = 0, "elements");
        rejects(|e| e.threshold_ppm = 1_000_001, "threshold_ppm");
        rejects(|e| e.indices.clear(), "indices");
        rejects(|e| e.values.truncate(2), "3 indices but 2 values");
        rejects(|e| e.indices = vec![1, 1, 2], "strictly increasing");
        rejects(|e| e.indices = vec![1, 5, 100], "out of range");
        rejects(|e| e.values[0] = f64::NAN, "not finite");
        rejects(|e| e.values = vec![0.0; 3], "all reference values are zero");
    }

    #[test]
    fn header_and_ids_are_checked() {
        let mut v = Vault::new(vec![entry(), entry()]);
        assert!(v.validate().unwrap_err().to_string().contains("duplicate"));
        v.entries.pop();
        v.version = 2;
        assert!(v.validate().unwrap_err().to_string().contains("version 2"));
        v.version = VERSION;
        v.format = "other".into();
        assert!(v.validate().unwrap_err().to_string().contains("format"));
    }

    #[test]
    fn unknown_fields_and_oversized_input_are_rejected() {
        let text = String::from_utf8(Vault::new(vec![entry()]).to_vec().unwrap()).unwrap();
        let extra = text.replacen("\"version\"", "\"evil\": 1, \"version\"", 1);
        assert!(Vault::from_slice(extra.as_bytes()).is_err());
        let huge = vec![b' '; MAX_VAULT_BYTES as usize + 1];
        assert!(
            Vault::from_slice(&huge)
                .unwrap_err()
                .to_string()
                .contains("at most")
        );
    }

    #[test]
    fn commitment_changes_with_any_field() {
        let a = entry();
        let mut b = entry();
        b.values[2] = 2e-30;
        assert_ne!(a.commitment(), b.commitment());
        assert_eq!(a.commitment(), entry().commitment());
    }

    #[test]
    fn saved_files_are_private_and_load_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault.json");
        let vault = Vault::new(vec![entry()]);
        vault.save(&path).unwrap();
        vault.save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(Vault::load(&path).unwrap(), vault);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
