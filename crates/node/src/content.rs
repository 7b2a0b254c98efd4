//! The node's content store: the embedded IPFS repo under `<home>/ipfs`,
//! opened in-process (optionally with its Kubo-compatible HTTP API and
//! gateway), or a Kubo daemon through its RPC API. Both are an
//! `r3mes_ipfs::ContentStore`; the producer unpins there the content the
//! keeper's retention GC releases (`EvUnpin`).

use std::sync::Arc;

use r3mes_ipfs::{ContentStore, EmbeddedStore, Repo};
use r3mes_ipfs_http::{Daemon, DaemonConfig, DaemonHandle};
use r3mes_kubo::KuboClient;

use crate::config::IpfsConfig;
use crate::home::Home;
use crate::{Error, Result};

/// An open content store and, for the embedded one, its HTTP servers.
pub struct Content {
    /// The store.
    pub store: Arc<dyn ContentStore>,
    /// The embedded daemon's HTTP servers, if served.
    pub daemon: Option<DaemonHandle>,
}

impl std::fmt::Debug for Content {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Content")
            .field("daemon", &self.daemon.as_ref().map(DaemonHandle::api_url))
            .finish_non_exhaustive()
    }
}

impl Content {
    /// Opens the store `config` names (inside a tokio runtime).
    pub async fn open(home: &Home, config: &IpfsConfig) -> Result<Self> {
        match config {
            IpfsConfig::Embedded {
                serve_http,
                api_addr,
                gateway_addr,
            } => {
                let dir = home.ipfs_repo();
                std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
                let repo = Repo::open(&dir)
                    .map_err(|e| Error::Content(format!("{}: {e}", dir.display())))?;
                let daemon = if *serve_http {
                    let config = DaemonConfig {
                        api_addr: *api_addr,
                        gateway_addr: *gateway_addr,
                    };
                    let handle = Daemon::start(repo.clone(), config)
                        .await
                        .map_err(|e| Error::Content(e.to_string()))?;
                    Some(handle)
                } else {
                    None
                };
                Ok(Content {
                    store: Arc::new(EmbeddedStore::new(repo)),
                    daemon,
                })
            }
            IpfsConfig::Kubo { api_url } => {
                let client = KuboClient::new(api_url).map_err(|e| Error::Content(e.to_string()))?;
                Ok(Content {
                    store: Arc::new(client),
                    daemon: None,
                })
            }
        }
    }

    /// Stops the embedded daemon's servers, if any.
    pub async fn shutdown(self) -> Result<()> {
        if let Some(daemon) = self.daemon {
            daemon
                .shutdown()
                .await
                .map_err(|e| Error::Content(e.to_string()))?;
        }
        Ok(())
    }
}

/// Unpins `cid` (text) from `store`; content that was never pinned here is
/// not an error worth more than a debug line. Returns whether a pin was
/// removed.
pub async fn unpin(store: &dyn ContentStore, cid: &str) -> bool {
    let parsed = match r3mes_ipfs::Cid::try_from(cid) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("unpin event names an invalid CID {cid:?}: {e}");
            return false;
        }
    };
    match store.pin_rm(&parsed).await {
        Ok(()) => {
            tracing::info!("unpinned {cid} (retention expired)");
            true
        }
        Err(e) => {
            tracing::debug!("unpin {cid}: {e}");
            false
        }
    }
}
