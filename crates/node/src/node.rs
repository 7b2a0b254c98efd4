//! Starting and stopping a node: open the keeper on the home's state
//! (applying the genesis on first start), bind the gRPC and metrics
//! listeners, open the content store, and run the producer and the servers
//! until shutdown.
//!
//! [`NodeHandle::shutdown`] cancels everything, lets the block in progress
//! commit, answers waiting clients, and returns once the keeper is closed
//! (its state checkpointed), so the same home can be opened again at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use r3mes_chain::Keeper;
use r3mes_chain::genesis::Genesis;
use r3mes_chain::state::State;
use r3mes_ipfs::ContentStore;
use r3mes_verify::VerifyCache;
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::admission::Admission;
use crate::config::{IpfsConfig, NodeConfig};
use crate::content::Content;
use crate::grpc::Shared;
use crate::home::Home;
use crate::mempool::Mempool;
use crate::metrics::Metrics;
use crate::producer::Producer;
use crate::{Error, Result};

/// Blocks of events kept for a slow subscriber before it is dropped.
const EVENT_BUFFER_BLOCKS: usize = 256;

/// How long shutdown waits for the last users of the keeper to let go.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// A running node.
pub struct NodeHandle {
    grpc_addr: SocketAddr,
    metrics_addr: SocketAddr,
    token: CancellationToken,
    tasks: Vec<(&'static str, JoinHandle<Result<()>>)>,
    content: Content,
    store: Arc<dyn ContentStore>,
    keeper: Arc<Keeper>,
}

impl std::fmt::Debug for NodeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeHandle")
            .field("grpc_addr", &self.grpc_addr)
            .field("metrics_addr", &self.metrics_addr)
            .finish_non_exhaustive()
    }
}

/// Opens the keeper of `home`: applies the genesis to an empty state,
/// otherwise checks the state belongs to the genesis's chain.
pub fn open_keeper(home: &Home) -> Result<Keeper> {
    let path = home.genesis();
    let json = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let genesis = Genesis::from_json(&json)?;
    let data = home.data_dir();
    std::fs::create_dir_all(&data).map_err(|e| Error::io(&data, e))?;
    let state = State::open(&home.state_db())?;
    let keeper = if state.height()? == 0 {
        Keeper::init(state, &genesis)?
    } else {
        Keeper::open(state)?
    };
    if keeper.chain_id() != genesis.chain_id {
        return Err(Error::Config(format!(
            "the state is of chain {:?} but {} is of chain {:?}",
            keeper.chain_id(),
            path.display(),
            genesis.chain_id
        )));
    }
    Ok(keeper)
}

/// Binds `addr` for `service`; returns the listener and its bound address.
pub(crate) async fn bind(
    service: &'static str,
    addr: SocketAddr,
) -> Result<(TcpListener, SocketAddr)> {
    let bind_err = |source| Error::Bind {
        service,
        addr,
        source,
    };
    let listener = TcpListener::bind(addr).await.map_err(bind_err)?;
    let local = listener.local_addr().map_err(bind_err)?;
    Ok((listener, local))
}

/// Starts the node of `home` with `config` (inside a tokio runtime).
pub async fn start(home: &Home, config: NodeConfig) -> Result<NodeHandle> {
    config.validate()?;
    let (grpc_listener, grpc_addr) = bind("gRPC", config.grpc_addr).await?;
    let (metrics_listener, metrics_addr) = bind("metrics", config.metrics_addr).await?;
    let h = home.clone();
    let keeper = tokio::task::spawn_blocking(move || open_keeper(&h))
        .await
        .map_err(|e| Error::Runtime(format!("opening the keeper: {e}")))??;
    warn_on_clock_gap(&keeper);
    let keeper = Arc::new(keeper);
    let content = Content::open(home, &config.ipfs).await?;
    let store = Arc::clone(&content.store);

    let token = CancellationToken::new();
    let mempool = Arc::new(Mempool::new(config.mempool_capacity));
    let verify_cache = VerifyCache::new(config.duties.verify_cache());
    let metrics = Arc::new(Metrics::with_verify_cache(verify_cache.clone()));
    metrics
        .height
        .store(keeper.height()?, std::sync::atomic::Ordering::Relaxed);
    let (events, _) = broadcast::channel(EVENT_BUFFER_BLOCKS);
    let duties = crate::duties::configure(home, &config.duties, &store, &verify_cache)?;
    let (committed, committed_rx) = tokio::sync::watch::channel(keeper.height()?);
    let producer = Producer {
        keeper: Arc::clone(&keeper),
        mempool: Arc::clone(&mempool),
        events: events.clone(),
        metrics: Arc::clone(&metrics),
        content: Arc::clone(&store),
        block_time: Duration::from_millis(config.block_time_ms),
        max_txs: config.max_txs_per_block,
        committed,
    };
    let shared = Shared {
        admission: Admission::new(Arc::clone(&keeper), Arc::clone(&mempool)),
        keeper: Arc::clone(&keeper),
        mempool: Arc::clone(&mempool),
        events,
        metrics: Arc::clone(&metrics),
        token: token.clone(),
    };
    let admission = shared.admission.clone();
    let mut tasks = vec![
        ("block producer", tokio::spawn(producer.run(token.clone()))),
        (
            "gRPC server",
            tokio::spawn(crate::grpc::serve(grpc_listener, shared)),
        ),
        (
            "metrics server",
            tokio::spawn({
                let token = token.clone();
                async move {
                    crate::metrics::serve(metrics_listener, metrics, Some(mempool), token)
                        .await
                        .map_err(|e| Error::Runtime(format!("metrics server: {e}")))
                }
            }),
        ),
    ];
    if let Some(duties) = duties {
        tasks.push((
            "duties",
            tokio::spawn(crate::duties::run(
                duties,
                config.duties.vault.clone(),
                Arc::clone(&keeper),
                admission,
                committed_rx,
                token.clone(),
            )),
        ));
    }
    tracing::info!("gRPC listening on {grpc_addr}, metrics on http://{metrics_addr}/metrics");
    Ok(NodeHandle {
        grpc_addr,
        metrics_addr,
        token,
        tasks,
        content,
        store,
        keeper,
    })
}

impl NodeHandle {
    /// The bound gRPC address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
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

    /// Resolves when the node stops by itself (a fatal error cancels it).
    pub async fn stopped(&self) {
        self.token.cancelled().await;
    }

    /// Stops the node (see the module docs); returns the first error any
    /// part of it ended with.
    pub async fn shutdown(self) -> Result<()> {
        self.token.cancel();
        let mut first = None;
        for (name, task) in self.tasks {
            let outcome = match task.await {
                Ok(r) => r,
                Err(e) => Err(Error::Runtime(format!("{name} task failed: {e}"))),
            };
            if let Err(e) = outcome {
                first.get_or_insert(e);
            }
            tracing::debug!("{name} stopped");
        }
        drop(self.store);
        if let Err(e) = self.content.shutdown().await {
            first.get_or_insert(e);
        }
        tracing::debug!("content store closed");
        // Queries and admissions in flight hold the keeper for a moment.
        // Once this handle holds the last reference, dropping it here
        // checkpoints and closes the state before shutdown returns.
        let deadline = tokio::time::Instant::now() + CLOSE_TIMEOUT;
        while Arc::strong_count(&self.keeper) > 1 {
            if tokio::time::Instant::now() > deadline {
                first.get_or_insert(Error::Runtime(
                    "the keeper was still in use 10 s after shutdown".into(),
                ));
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let keeper = self.keeper;
        if let Err(e) = tokio::task::spawn_blocking(move || drop(keeper)).await {
            first.get_or_insert(Error::Runtime(format!("closing the keeper: {e}")));
        }
        tracing::debug!("keeper closed");
        first.map_or(Ok(()), Err)
    }
}

/// Warns when the keeper's clock (`genesis time + height * block time`)
/// is far from the wall clock, as after a long stop: clients that sign with
/// wall-clock timestamps would then be refused, and must take the time from
/// `Query.Status.next_block_time_ms`.
fn warn_on_clock_gap(keeper: &Keeper) {
    let Ok(next) = keeper
        .height()
        .and_then(|h| keeper.block_time_ms(h.saturating_add(1)))
    else {
        return;
    };
    let gap = crate::init::now_ms().saturating_sub(next);
    let skew = i64::try_from(keeper.params().max_clock_skew_ms).unwrap_or(i64::MAX);
    if gap.saturating_abs() > skew {
        tracing::warn!(
            "the wall clock is {gap} ms past the chain's clock (allowed transaction skew \
             {skew} ms): clients must sign with Query.Status.next_block_time_ms"
        );
    }
}

/// Applies the command line's overrides to a loaded config: a Kubo API URL
/// replaces the embedded store.
pub fn with_ipfs_api(mut config: NodeConfig, ipfs_api: Option<String>) -> NodeConfig {
    if let Some(api_url) = ipfs_api {
        config.ipfs = IpfsConfig::Kubo { api_url };
    }
    config
}
