//! Prometheus text metrics at `GET /metrics`: height, mempool size,
//! transactions per second over the last 10 s, transaction, block,
//! admission and challenge counters, and the verification cache's counters
//! and usage (blocks and bytes fetched for verification, cache hits and
//! misses, entries and bytes held). Counters are atomics updated by the
//! producer and admission (or, under CometBFT, by the ABCI application's
//! commit hook: see [`crate::abci`]), the cache's by the verification
//! duty; nothing here reads the state store.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use r3mes_verify::VerifyCache;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::mempool::Mempool;

/// The window of the transactions-per-second gauge.
const RATE_WINDOW: Duration = Duration::from_secs(10);

/// The node's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Last committed height.
    pub height: AtomicU64,
    /// Blocks committed by this process.
    pub blocks: AtomicU64,
    /// Transactions applied in committed blocks.
    pub txs_applied: AtomicU64,
    /// Transactions refused by the keeper inside a block.
    pub txs_failed: AtomicU64,
    /// Transactions refused at admission.
    pub txs_rejected: AtomicU64,
    /// Challenges issued.
    pub challenges_issued: AtomicU64,
    /// Challenges resolved.
    pub challenges_resolved: AtomicU64,
    /// Challenges failed.
    pub challenges_failed: AtomicU64,
    /// Content unpinned after GC.
    pub unpinned: AtomicU64,
    /// Milliseconds the last block took (execute and commit).
    pub last_block_ms: AtomicU64,
    recent: Mutex<VecDeque<(Instant, u64)>>,
    /// The verification duty's cache, whose counters are rendered too.
    verify_cache: Option<VerifyCache>,
}

impl Metrics {
    /// Counters that also render `cache`'s (a clone of the cache the
    /// verification duty uses: the clones share their counters).
    pub fn with_verify_cache(cache: VerifyCache) -> Self {
        Metrics {
            verify_cache: Some(cache),
            ..Metrics::default()
        }
    }

    /// Records a committed block of `txs` transactions.
    pub fn record_block(&self, height: u64, txs: u64, took: Duration) {
        self.height.store(height, Relaxed);
        self.blocks.fetch_add(1, Relaxed);
        self.last_block_ms
            .store(u64::try_from(took.as_millis()).unwrap_or(u64::MAX), Relaxed);
        let now = Instant::now();
        let mut recent = self
            .recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        recent.push_back((now, txs));
        while recent
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > RATE_WINDOW)
        {
            recent.pop_front();
        }
    }

    /// Transactions per second committed over the last 10 s.
    pub fn tx_rate(&self) -> f64 {
        let recent = self
            .recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let total: u64 = recent.iter().map(|(_, n)| n).sum();
        // Counts are far below 2^52: the conversion is exact.
        #[allow(clippy::cast_precision_loss)]
        let rate = total as f64 / RATE_WINDOW.as_secs_f64();
        rate
    }

    /// The Prometheus text exposition; the mempool gauge only with a
    /// mempool size (a node under CometBFT has no mempool of its own).
    pub fn render(&self, mempool_size: Option<usize>) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {value}");
        };
        let get = |a: &AtomicU64| a.load(Relaxed).to_string();
        metric(
            "r3mes_height",
            "gauge",
            "Last committed block height.",
            get(&self.height),
        );
        if let Some(size) = mempool_size {
            metric(
                "r3mes_mempool_size",
                "gauge",
                "Transactions waiting for a block.",
                size.to_string(),
            );
        }
        metric(
            "r3mes_tx_per_second",
            "gauge",
            "Transactions committed per second over the last 10 s.",
            format!("{:.1}", self.tx_rate()),
        );
        metric(
            "r3mes_blocks_total",
            "counter",
            "Blocks committed by this process.",
            get(&self.blocks),
        );
        metric(
            "r3mes_txs_total",
            "counter",
            "Transactions applied in committed blocks.",
            get(&self.txs_applied),
        );
        metric(
            "r3mes_txs_failed_total",
            "counter",
            "Transactions refused by the keeper inside a block.",
            get(&self.txs_failed),
        );
        metric(
            "r3mes_txs_rejected_total",
            "counter",
            "Transactions refused at admission.",
            get(&self.txs_rejected),
        );
        metric(
            "r3mes_block_duration_ms",
            "gauge",
            "Time the last block took to execute and commit.",
            get(&self.last_block_ms),
        );
        metric(
            "r3mes_unpinned_total",
            "counter",
            "Content unpinned after retention GC.",
            get(&self.unpinned),
        );
        let _ = writeln!(
            out,
            "# HELP r3mes_challenges_total Availability challenges by outcome."
        );
        let _ = writeln!(out, "# TYPE r3mes_challenges_total counter");
        for (status, v) in [
            ("issued", &self.challenges_issued),
            ("resolved", &self.challenges_resolved),
            ("failed", &self.challenges_failed),
        ] {
            let _ = writeln!(
                out,
                "r3mes_challenges_total{{status=\"{status}\"}} {}",
                get(v)
            );
        }
        if let Some(cache) = &self.verify_cache {
            out.push_str(&cache.stats().to_prometheus("r3mes_verify"));
            out.push_str(&cache.usage().to_prometheus("r3mes_verify"));
        }
        out
    }
}

/// Serves `GET /metrics` on `listener` until `token` is cancelled, with
/// the size of `mempool` if the node has one.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    mempool: Option<Arc<Mempool>>,
    token: CancellationToken,
) -> std::io::Result<()> {
    let router = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let body = metrics.render(mempool.as_ref().map(|m| m.len()));
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    body,
                )
            }
        }),
    );
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { token.cancelled().await })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verification_cache_is_rendered_when_present() {
        let plain = Metrics::default().render(None);
        assert!(plain.contains("r3mes_height 0\n"));
        assert!(!plain.contains("r3mes_verify_"));
        assert!(!plain.contains("r3mes_mempool_size"));
        let with = Metrics::with_verify_cache(VerifyCache::default()).render(Some(3));
        assert!(with.contains("r3mes_mempool_size 3\n"));
        for line in [
            "r3mes_verify_cache_hits_total 0\n",
            "r3mes_verify_cache_misses_total 0\n",
            "r3mes_verify_bytes_fetched_total 0\n",
            "r3mes_verify_cache_entries{kind=\"block\"} 0\n",
            "r3mes_verify_cache_bytes 0\n",
        ] {
            assert!(with.contains(line), "{line} missing in {with}");
        }
    }
}
