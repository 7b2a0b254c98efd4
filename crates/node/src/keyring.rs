//! The keyring: secp256k1 account keys in `<home>/keyring`, one JSON file
//! per key (`NAME.json`, mode 0600, in a directory of mode 0700), holding
//! the secret key in hex, the compressed public key and the bech32
//! `remes1...` address.
//!
//! Secrets are kept in the clear, like an unencrypted test keyring: the
//! file mode is the only protection.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use r3mes_chain::{Address, SecretKey};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// One key as listed: its name, address and public key (no secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    /// The key's name.
    pub name: String,
    /// bech32 `remes1...` address.
    pub address: String,
    /// Hex of the 33-byte compressed public key.
    pub public_key: String,
}

/// The file form of a key.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    name: String,
    address: String,
    public_key: String,
    secret_key: String,
}

/// The keyring in a directory.
#[derive(Debug, Clone)]
pub struct Keyring {
    dir: PathBuf,
}

impl Keyring {
    /// The keyring in `dir` (created on the first [`add`](Self::add)).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Keyring { dir: dir.into() }
    }

    /// Creates a key `name` from fresh OS randomness.
    pub fn add(&self, name: &str) -> Result<KeyInfo> {
        self.import(name, &random_key()?)
    }

    /// Stores `secret` as key `name`; fails if the name exists.
    pub fn import(&self, name: &str, secret: &SecretKey) -> Result<KeyInfo> {
        let path = self.path_of(name)?;
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(&self.dir, e))?;
        let info = info_of(name, secret);
        let file = KeyFile {
            name: name.to_owned(),
            address: info.address.clone(),
            public_key: info.public_key.clone(),
            secret_key: hex::encode(secret.to_bytes()),
        };
        let json = serde_json::to_vec_pretty(&file)
            .map_err(|e| Error::Keyring(format!("encoding key {name}: {e}")))?;
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => {
                    Error::Keyring(format!("key {name:?} already exists"))
                }
                _ => Error::io(&path, e),
            })?;
        f.write_all(&json)
            .and_then(|()| f.sync_all())
            .map_err(|e| Error::io(&path, e))?;
        Ok(info)
    }

    /// The key `name` without its secret.
    pub fn show(&self, name: &str) -> Result<KeyInfo> {
        let secret = self.secret(name)?;
        Ok(info_of(name, &secret))
    }

    /// The secret key `name`.
    pub fn secret(&self, name: &str) -> Result<SecretKey> {
        let path = self.path_of(name)?;
        let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::Keyring(format!("no key named {name:?}")),
            _ => Error::io(&path, e),
        })?;
        let file: KeyFile = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Keyring(format!("{}: {e}", path.display())))?;
        let raw: [u8; 32] = hex::decode(&file.secret_key)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| {
                Error::Keyring(format!(
                    "{}: secret_key is not 32 hex bytes",
                    path.display()
                ))
            })?;
        let secret = SecretKey::from_bytes(&raw)
            .map_err(|e| Error::Keyring(format!("{}: {e}", path.display())))?;
        let address = secret.public_key().address().to_string();
        if address != file.address {
            return Err(Error::Keyring(format!(
                "{}: address {} does not belong to the secret key ({address})",
                path.display(),
                file.address
            )));
        }
        Ok(secret)
    }

    /// Every key, by name.
    pub fn list(&self) -> Result<Vec<KeyInfo>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(&self.dir, e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&self.dir, e))?;
            let file_name = entry.file_name();
            if let Some(name) = file_name.to_str().and_then(|n| n.strip_suffix(".json"))
                && valid_name(name)
            {
                names.push(name.to_owned());
            }
        }
        names.sort();
        names.iter().map(|n| self.show(n)).collect()
    }

    fn path_of(&self, name: &str) -> Result<PathBuf> {
        if !valid_name(name) {
            return Err(Error::Keyring(format!(
                "invalid key name {name:?}: use 1 to 64 letters, digits, '-' or '_'"
            )));
        }
        Ok(self.dir.join(format!("{name}.json")))
    }

    /// The keyring directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn info_of(name: &str, secret: &SecretKey) -> KeyInfo {
    let public = secret.public_key();
    KeyInfo {
        name: name.to_owned(),
        address: Address::of_compressed_key(&public.to_bytes()).to_string(),
        public_key: hex::encode(public.to_bytes()),
    }
}

/// A secret key from OS randomness (retrying the negligible chance of an
/// invalid scalar).
pub fn random_key() -> Result<SecretKey> {
    for _ in 0..16 {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)
            .map_err(|e| Error::Keyring(format!("no OS randomness: {e}")))?;
        if let Ok(key) = SecretKey::from_bytes(&bytes) {
            return Ok(key);
        }
    }
    Err(Error::Keyring("could not draw a valid secret key".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_with_private_file_modes() {
        let dir = tempfile::tempdir().unwrap();
        let ring = Keyring::new(dir.path().join("keyring"));
        let alice = ring.add("alice").unwrap();
        assert!(alice.address.starts_with("remes1"));
        assert_eq!(ring.show("alice").unwrap(), alice);
        let mode = std::fs::metadata(ring.dir().join("alice.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let secret = ring.secret("alice").unwrap();
        assert_eq!(secret.public_key().address().to_string(), alice.address);
        ring.add("bob").unwrap();
        let names: Vec<_> = ring.list().unwrap().into_iter().map(|k| k.name).collect();
        assert_eq!(names, ["alice", "bob"]);
        let dup = ring.add("alice").unwrap_err().to_string();
        assert!(dup.contains("already exists"), "{dup}");
        assert!(
            ring.add("../x")
                .unwrap_err()
                .to_string()
                .contains("invalid key name")
        );
        assert!(
            ring.show("carol")
                .unwrap_err()
                .to_string()
                .contains("no key named")
        );
    }
}
