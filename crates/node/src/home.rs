//! The layout of a node's home directory (default `~/.r3mes`, env
//! `R3MES_HOME`): where each file of the node lives.

use std::path::{Path, PathBuf};

/// Paths inside a home directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// The home at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Home { root: root.into() }
    }

    /// The default home: `$R3MES_HOME`, else `~/.r3mes`, else `./.r3mes`.
    pub fn default_root() -> PathBuf {
        if let Some(dir) = std::env::var_os("R3MES_HOME") {
            return PathBuf::from(dir);
        }
        match std::env::var_os("HOME") {
            Some(home) => PathBuf::from(home).join(".r3mes"),
            None => PathBuf::from(".r3mes"),
        }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `config.json`: listen addresses, block time, mempool and IPFS settings.
    pub fn config(&self) -> PathBuf {
        self.root.join("config.json")
    }

    /// `genesis.json`: the keeper's genesis.
    pub fn genesis(&self) -> PathBuf {
        self.root.join("genesis.json")
    }

    /// `data/`: the keeper's state.
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// `data/state.redb`: the keeper's redb database.
    pub fn state_db(&self) -> PathBuf {
        self.data_dir().join("state.redb")
    }

    /// `ipfs/`: the embedded IPFS repo.
    pub fn ipfs_repo(&self) -> PathBuf {
        self.root.join("ipfs")
    }

    /// `keyring/`: one file per key, mode 0600.
    pub fn keyring(&self) -> PathBuf {
        self.root.join("keyring")
    }
}
