//! The node's config file (`config.json` in the home): where it listens,
//! how often it makes blocks, how large blocks and the mempool may grow,
//! which content store it uses, which duties it runs and how long the
//! verification duty caches what it fetched. Every field has a default, so
//! a config file may name only what it changes.

use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Default gRPC address.
pub const DEFAULT_GRPC_ADDR: &str = "127.0.0.1:9090";
/// Default Prometheus metrics address.
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:26660";

/// The node's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// gRPC listen address (`Msg`, `Query`, health, reflection).
    pub grpc_addr: SocketAddr,
    /// Prometheus text metrics at `http://<addr>/metrics`.
    pub metrics_addr: SocketAddr,
    /// Wall-clock time between blocks, ms. The keeper's own clock is
    /// `genesis_time + height * params.block_time_ms`; `init` writes the
    /// same value to both.
    pub block_time_ms: u64,
    /// Most transactions in one block.
    pub max_txs_per_block: usize,
    /// Most transactions waiting in the mempool; admission fails beyond.
    pub mempool_capacity: usize,
    /// The content store.
    pub ipfs: IpfsConfig,
    /// Background duties run after every block.
    pub duties: DutySettings,
}

/// Default time to live of the verification cache's entries, s (the seed's
/// 1 hour).
pub const DEFAULT_VERIFY_CACHE_TTL_SECS: u64 = 3600;

/// Which background duties the node runs after each committed block
/// (`r3mes-worker`), and with which keyring keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DutySettings {
    /// Answer availability challenges aimed at this key's address from the
    /// node's content store (a node holding a miner's data).
    pub respond_as: Option<String>,
    /// Verify gradients against this vault file and submit the results
    /// (the key must be a validator's).
    pub vault: Option<std::path::PathBuf>,
    /// The key that signs verification results (default: `validator`).
    pub verify_as: Option<String>,
    /// How long the verification cache keeps a fetched block or parsed
    /// header, s.
    pub verify_cache_ttl_secs: u64,
    /// Most block bytes the verification cache holds.
    pub verify_cache_max_bytes: u64,
}

impl Default for DutySettings {
    fn default() -> Self {
        DutySettings {
            respond_as: None,
            vault: None,
            verify_as: None,
            verify_cache_ttl_secs: DEFAULT_VERIFY_CACHE_TTL_SECS,
            verify_cache_max_bytes: r3mes_verify::cache::DEFAULT_MAX_BYTES,
        }
    }
}

impl DutySettings {
    /// The verification cache's configuration.
    pub fn verify_cache(&self) -> r3mes_verify::CacheConfig {
        r3mes_verify::CacheConfig {
            ttl: std::time::Duration::from_secs(self.verify_cache_ttl_secs),
            max_bytes: self.verify_cache_max_bytes,
        }
    }
}

/// Which content store the node uses: unpin events of the keeper's GC
/// unpin there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum IpfsConfig {
    /// The embedded repo under `<home>/ipfs`, opened in-process. With
    /// `serve_http` its Kubo-compatible RPC API and gateway are served too,
    /// so miners can add content to it.
    Embedded {
        /// Serve the RPC API and the gateway.
        serve_http: bool,
        /// RPC API address.
        api_addr: SocketAddr,
        /// Gateway address.
        gateway_addr: SocketAddr,
    },
    /// A Kubo daemon reached through its RPC API.
    Kubo {
        /// The API, such as `http://127.0.0.1:5001`.
        api_url: String,
    },
}

impl Default for IpfsConfig {
    fn default() -> Self {
        IpfsConfig::Embedded {
            serve_http: true,
            api_addr: SocketAddr::from(([127, 0, 0, 1], 5001)),
            gateway_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
        }
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 9090)),
            metrics_addr: SocketAddr::from(([127, 0, 0, 1], 26660)),
            block_time_ms: 1000,
            max_txs_per_block: 10_000,
            mempool_capacity: 50_000,
            ipfs: IpfsConfig::default(),
            duties: DutySettings::default(),
        }
    }
}

impl NodeConfig {
    /// Checks the values a node cannot run with.
    pub fn validate(&self) -> Result<()> {
        if self.block_time_ms == 0 {
            return Err(Error::Config("block_time_ms must be at least 1".into()));
        }
        if self.max_txs_per_block == 0 {
            return Err(Error::Config("max_txs_per_block must be at least 1".into()));
        }
        if self.mempool_capacity == 0 {
            return Err(Error::Config("mempool_capacity must be at least 1".into()));
        }
        if self.grpc_addr == self.metrics_addr && self.grpc_addr.port() != 0 {
            return Err(Error::Config(format!(
                "gRPC and metrics cannot both listen on {}",
                self.grpc_addr
            )));
        }
        Ok(())
    }

    /// Reads and validates the config file at `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let config: NodeConfig = serde_json::from_str(&text)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        config.validate()?;
        Ok(config)
    }

    /// Writes the config file at `path` (pretty JSON).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::Config(format!("encoding: {e}")))?;
        text.push('\n');
        std::fs::write(path, text).map_err(|e| Error::io(path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_file_takes_defaults_and_bad_values_are_refused() {
        let c: NodeConfig = serde_json::from_str(r#"{"block_time_ms": 250}"#).unwrap();
        assert_eq!(c.block_time_ms, 250);
        assert_eq!(c.grpc_addr.to_string(), DEFAULT_GRPC_ADDR);
        assert_eq!(c.metrics_addr.to_string(), DEFAULT_METRICS_ADDR);
        let kubo: NodeConfig =
            serde_json::from_str(r#"{"ipfs": {"mode": "kubo", "api_url": "http://x:5001"}}"#)
                .unwrap();
        assert!(matches!(kubo.ipfs, IpfsConfig::Kubo { .. }));
        let zero = NodeConfig {
            block_time_ms: 0,
            ..NodeConfig::default()
        };
        assert!(
            zero.validate()
                .unwrap_err()
                .to_string()
                .contains("block_time_ms")
        );
        assert!(serde_json::from_str::<NodeConfig>(r#"{"grpc": "x"}"#).is_err());
    }

    #[test]
    fn the_verification_cache_defaults_to_one_hour_and_can_be_changed() {
        // A config file written before these fields existed still loads.
        let old: NodeConfig =
            serde_json::from_str(r#"{"duties": {"respond_as": "dev1"}}"#).unwrap();
        assert_eq!(old.duties.respond_as.as_deref(), Some("dev1"));
        assert_eq!(old.duties.verify_cache_ttl_secs, 3600);
        assert_eq!(
            old.duties.verify_cache(),
            r3mes_verify::CacheConfig::default()
        );
        assert_eq!(NodeConfig::default(), serde_json::from_str("{}").unwrap());
        let set: NodeConfig = serde_json::from_str(
            r#"{"duties": {"verify_cache_ttl_secs": 60, "verify_cache_max_bytes": 1048576}}"#,
        )
        .unwrap();
        let cache = set.duties.verify_cache();
        assert_eq!(cache.ttl, std::time::Duration::from_secs(60));
        assert_eq!(cache.max_bytes, 1 << 20);
        // What save writes, load reads back.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        set.save(&path).unwrap();
        assert_eq!(NodeConfig::load(&path).unwrap(), set);
    }
}
