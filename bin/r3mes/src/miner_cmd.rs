//! `r3mes miner ...`: the miner's long-running roles against a node.
//!
//! `miner respond` answers the availability challenges of one key from
//! the content in an IPFS API (the miner's own store) until SIGINT or
//! SIGTERM (`r3mes_client::Responder`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Subcommand;
use r3mes_client::{NodeClient, Responder};
use r3mes_ipfs::ContentStore;
use r3mes_kubo::KuboClient;
use r3mes_node::home::Home;
use r3mes_node::keyring::Keyring;

#[derive(Subcommand)]
pub enum MinerCommand {
    /// Answer a key's availability challenges from an IPFS store until stopped.
    Respond {
        /// Keyring key of the miner.
        #[arg(long)]
        from: String,
        /// The node's gRPC address.
        #[arg(long, default_value = "http://127.0.0.1:9090")]
        node: String,
        /// The IPFS RPC API holding the miner's content.
        #[arg(long, default_value = "http://127.0.0.1:5001")]
        api: String,
        /// Home whose keyring holds the key (default: $R3MES_HOME or ~/.r3mes).
        #[arg(long)]
        home: Option<PathBuf>,
        /// How often to look for open challenges besides the event stream, ms.
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
    },
}

pub fn run(cmd: MinerCommand) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match cmd {
        MinerCommand::Respond {
            from,
            node,
            api,
            home,
            interval_ms,
        } => runtime.block_on(async move {
            let home = Home::new(home.unwrap_or_else(Home::default_root));
            let key = Keyring::new(home.keyring())
                .secret(&from)
                .with_context(|| format!("key {from:?} of {}", home.keyring().display()))?;
            let content: Arc<dyn ContentStore> =
                Arc::new(KuboClient::new(&api).with_context(|| format!("IPFS API {api}"))?);
            let client = NodeClient::connect(&node).await?;
            let responder = Responder::new(client, key, content);
            eprintln!(
                "answering the challenges of {} from {api} (Ctrl-C stops)",
                responder.address()
            );
            let report = responder
                .run(Duration::from_millis(interval_ms.max(10)), async {
                    if let Err(e) = crate::node_cmd::shutdown_signal().await {
                        tracing::warn!("waiting for a signal: {e}");
                        std::future::pending::<()>().await;
                    }
                })
                .await;
            println!(
                "answered: {}, unanswered: {}, failed: {}",
                report.answered, report.unanswered, report.failed
            );
            Ok(())
        }),
    }
}
