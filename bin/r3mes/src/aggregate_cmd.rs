//! `r3mes aggregate --round R`: the end-of-round aggregate of a round's
//! accepted gradients (`r3mes_client::aggregation`): token-weighted mean,
//! one Adam step on the adapters of the version the round trained from,
//! filed in the MFS under `/gradients/window_R/aggregated/` and
//! `/models/vV/`, and with `--from` registered as model version `V` so the
//! next round trains from it. `--dry-run` only computes and prints the
//! hashes: anyone can check a published aggregate that way.
//!
//! [`role`] is the same as a loop the node runs with `--aggregate-as KEY`:
//! every round, once its challenges have closed, is aggregated and
//! registered (a round without usable gradients is skipped, and logged).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use r3mes_aggregate::AdamConfig;
use r3mes_client::NodeClient;
use r3mes_client::aggregation::{compute, publish};
use r3mes_kubo::KuboClient;
use r3mes_node::home::Home;

#[derive(Args)]
pub struct AggregateArgs {
    /// The round (window) to aggregate.
    #[arg(long)]
    round: u64,
    /// The node's gRPC address.
    #[arg(long, default_value = "http://127.0.0.1:9090")]
    node: String,
    /// The IPFS RPC API holding the gradients and models.
    #[arg(long, default_value = "http://127.0.0.1:5001")]
    api: String,
    /// Register the new version, signed by this validator key.
    #[arg(long, conflicts_with = "dry_run")]
    from: Option<String>,
    /// Home whose keyring holds the key (default: $R3MES_HOME or ~/.r3mes).
    #[arg(long)]
    home: Option<PathBuf>,
    /// Adam's learning rate, used when the base version has no training state yet.
    #[arg(long, default_value_t = AdamConfig::default().lr)]
    lr: f64,
    /// Also write gradient.pb, manifest.json, adapters.safetensors and
    /// training_state.safetensors here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Compute and print only: nothing is filed or registered.
    #[arg(long)]
    dry_run: bool,
    /// Wait until the round's challenges have closed instead of failing.
    #[arg(long)]
    wait: bool,
}

pub fn run(args: AggregateArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let key = match &args.from {
        Some(from) => {
            let home = Home::new(args.home.clone().unwrap_or_else(Home::default_root));
            Some(crate::keys_cmd::secret_key(&home, from)?)
        }
        None => None,
    };
    let adam = AdamConfig {
        lr: args.lr,
        ..AdamConfig::default()
    };
    runtime.block_on(async {
        let client = NodeClient::connect(&args.node).await?;
        let store = KuboClient::new(&args.api).with_context(|| format!("IPFS API {}", args.api))?;
        let computed = loop {
            match compute(&client, &store, args.round, adam).await {
                Err(r3mes_client::Error::NotYet { what, .. }) if args.wait => {
                    tracing::info!("{what}; waiting");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                other => break other?,
            }
        };
        let a = &computed.aggregate;
        if let Some(dir) = &args.out {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            for (name, bytes) in [
                ("gradient.pb", &a.gradient_bytes),
                ("manifest.json", &a.manifest_bytes()),
                ("adapters.safetensors", &a.adapters_bytes),
                ("training_state.safetensors", &a.state_bytes),
            ] {
                let path = dir.join(name);
                std::fs::write(&path, bytes)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
        let mut report = serde_json::json!({
            "round": computed.round,
            "base_version": computed.base.model.version,
            "contributions": a.manifest.contributions.len(),
            "excluded": a.manifest.excluded,
            "total_tokens": a.manifest.total_tokens,
            "step": a.manifest.step,
            "gradient_sha256": a.manifest.gradient_sha256,
            "adapters_sha256": a.manifest.adapters_sha256,
            "state_sha256": a.manifest.state_sha256,
        });
        if !args.dry_run {
            let published = publish(&client, &store, key.as_ref(), &computed).await?;
            report["published"] = serde_json::to_value(&published)?;
        }
        println!("{}", serde_json::to_string_pretty(&report)?);
        anyhow::Ok(())
    })
}

/// The aggregator role: aggregates rounds in order, from the one after the
/// newest registered aggregate, forever. Errors are logged and retried.
pub async fn role(node: String, api: String, key: r3mes_chain::SecretKey, adam: AdamConfig) {
    let pause = Duration::from_millis(500);
    let (client, store) = loop {
        match (NodeClient::connect(&node).await, KuboClient::new(&api)) {
            (Ok(c), Ok(s)) => break (c, s),
            (Err(e), _) => tracing::warn!("aggregator: connecting to {node}: {e}"),
            (_, Err(e)) => tracing::warn!("aggregator: IPFS API {api}: {e}"),
        }
        tokio::time::sleep(pause).await;
    };
    let mut next = loop {
        match r3mes_client::aggregation::last_aggregated_round(&client, &store).await {
            Ok(last) => break last.map_or(1, |r| r + 1),
            Err(r3mes_client::Error::Missing(_)) => break 1,
            Err(e) => tracing::warn!("aggregator: reading the newest model: {e}"),
        }
        tokio::time::sleep(pause).await;
    };
    loop {
        match compute(&client, &store, next, adam).await {
            Ok(computed) => match publish(&client, &store, Some(&key), &computed).await {
                Ok(p) => {
                    tracing::info!(
                        "aggregator: round {next} ({} gradients) registered as model version {}",
                        computed.aggregate.manifest.contributions.len(),
                        p.version
                    );
                    next += 1;
                }
                Err(e) => tracing::warn!("aggregator: publishing round {next}: {e}"),
            },
            Err(r3mes_client::Error::NotYet { .. }) => {}
            Err(r3mes_client::Error::Missing(why))
                if client.round(Some(next)).await.ok().flatten().is_none() =>
            {
                tracing::debug!("aggregator: {why}");
            }
            Err(e) => {
                // Nothing usable in this round (or no model yet): move on.
                tracing::info!("aggregator: skipping round {next}: {e}");
                next += 1;
            }
        }
        tokio::time::sleep(pause).await;
    }
}
