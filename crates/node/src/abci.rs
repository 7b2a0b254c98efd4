//! The node under CometBFT (`r3mes node start --abci ADDR`): the keeper is
//! served over ABCI ([`r3mes_abci`]) instead of being driven by the
//! built-in producer, and the node keeps the parts of its work that need
//! no mempool of its own:
//!
//! - the content store of `node start` (the embedded repo `ipfs/`, with its
//!   RPC API and gateway if the config serves them, or Kubo with
//!   `--ipfs-api`), where the content retention GC releases (`EvUnpin`) is
//!   unpinned: the same [`crate::producer::after_commit`] the producer
//!   calls, run from the ABCI application's commit hook, so only for blocks
//!   whose `Commit` is durably recorded;
//! - the Prometheus endpoint ([`crate::metrics`]): the keeper's height,
//!   transactions per second, block, transaction, challenge and unpin
//!   counters (there is no mempool gauge: CometBFT holds the mempool).
//!
//! Not run: the gRPC services, the built-in mempool and producer, and the
//! duties (availability responder, verification) and the aggregator, which
//! submit their transactions through the built-in mempool.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use r3mes_chain::state::State;
use r3mes_ipfs::ContentStore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::NodeConfig;
use crate::content::Content;
use crate::home::Home;
use crate::metrics::Metrics;
use crate::{Error, Result};

/// The file of the last `FinalizeBlock`'s record, in the data directory.
pub const JOURNAL_FILE: &str = "abci-last-block.pb";

/// A node serving CometBFT.
pub struct AbciNode {
    server: r3mes_abci::Server,
    metrics_addr: SocketAddr,
    token: CancellationToken,
    metrics_task: JoinHandle<Result<()>>,
    content: Content,
    store: Arc<dyn ContentStore>,
}

impl std::fmt::Debug for AbciNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AbciNode")
            .field("abci_addr", &self.server.local_addr())
            .field("metrics_addr", &self.metrics_addr)
            .finish_non_exhaustive()
    }
}

/// Opens the keeper of `home` and serves it to CometBFT on `addr`, with
/// the content store and metrics of `config` (inside a tokio runtime,
/// whose handle runs the unpins).
pub async fn start(home: &Home, config: &NodeConfig, addr: SocketAddr) -> Result<AbciNode> {
    config.validate()?;
    let (metrics_listener, metrics_addr) =
        crate::node::bind("metrics", config.metrics_addr).await?;
    let abci_listener = std::net::TcpListener::bind(addr).map_err(|source| Error::Bind {
        service: "ABCI",
        addr,
        source,
    })?;
    let data = home.data_dir();
    let state_db = home.state_db();
    let mut app = tokio::task::spawn_blocking(move || -> Result<r3mes_abci::App> {
        std::fs::create_dir_all(&data).map_err(|e| Error::io(&data, e))?;
        let state = State::open(&state_db)?;
        // The last FinalizeBlock's record, for a crash before its Commit.
        r3mes_abci::App::with_journal(state, &data.join(JOURNAL_FILE))
            .map_err(|e| Error::Runtime(format!("opening the keeper for ABCI: {e}")))
    })
    .await
    .map_err(|e| Error::Runtime(format!("opening the keeper: {e}")))??;
    let content = Content::open(home, &config.ipfs).await?;
    let store = Arc::clone(&content.store);

    let metrics = Arc::new(Metrics::default());
    if let Some(keeper) = app.keeper() {
        metrics.height.store(keeper.height()?, Relaxed);
    }
    app.set_commit_hook(commit_hook(
        Arc::clone(&metrics),
        Arc::clone(&store),
        tokio::runtime::Handle::current(),
    ));
    let server = r3mes_abci::Server::start(abci_listener, Arc::new(Mutex::new(app)))
        .map_err(|e| Error::Runtime(format!("starting the ABCI server: {e}")))?;
    let token = CancellationToken::new();
    let metrics_task = tokio::spawn({
        let token = token.clone();
        async move {
            let served =
                crate::metrics::serve(metrics_listener, metrics, None, token.clone()).await;
            // A failed server stops the node (see `stopped`).
            token.cancel();
            served.map_err(|e| Error::Runtime(format!("metrics server: {e}")))
        }
    });
    tracing::info!(
        "ABCI listening on {}, metrics on http://{metrics_addr}/metrics",
        server.local_addr()
    );
    Ok(AbciNode {
        server,
        metrics_addr,
        token,
        metrics_task,
        content,
        store,
    })
}

/// After each committed block: the block's counters, then what the
/// producer does with its events (unpins on `runtime`).
fn commit_hook(
    metrics: Arc<Metrics>,
    store: Arc<dyn ContentStore>,
    runtime: tokio::runtime::Handle,
) -> r3mes_abci::CommitHook {
    Box::new(move |block| {
        metrics.record_block(block.height, block.txs_applied, block.took);
        metrics.txs_applied.fetch_add(block.txs_applied, Relaxed);
        metrics.txs_failed.fetch_add(block.txs_failed, Relaxed);
        crate::producer::after_commit(block.events, &metrics, &store, &runtime);
    })
}

impl AbciNode {
    /// The address CometBFT connects to.
    pub fn abci_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The bound metrics address.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }

    /// The node's content store.
    pub fn content_store(&self) -> Arc<dyn ContentStore> {
        Arc::clone(&self.store)
    }

    /// The embedded IPFS API URL, when served.
    pub fn ipfs_api_url(&self) -> Option<String> {
        self.content.daemon.as_ref().map(|d| d.api_url())
    }

    /// Resolves when the node stops by itself (the metrics server failed).
    pub async fn stopped(&self) {
        self.token.cancelled().await;
    }

    /// Stops accepting ABCI connections (open ones end when CometBFT
    /// closes them), the metrics server and the content store's servers.
    pub async fn shutdown(self) -> Result<()> {
        self.server.stop();
        self.token.cancel();
        let mut first = match self.metrics_task.await {
            Ok(r) => r.err(),
            Err(e) => Some(Error::Runtime(format!("metrics server task failed: {e}"))),
        };
        drop(self.store);
        if let Err(e) = self.content.shutdown().await {
            first.get_or_insert(e);
        }
        first.map_or(Ok(()), Err)
    }
}
