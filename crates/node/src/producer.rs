//! The single-validator block producer. Every block time it takes up to N
//! transactions from the mempool, runs `begin_block`, `deliver` each,
//! `end_block` and `commit` on the keeper (on the blocking pool: the commit
//! is a durable redb write), and only then answers each waiting client,
//! publishes the block's events and unpins the content GC released.
//!
//! Empty blocks are made too: the keeper's clock, challenge deadlines,
//! rounds and retention all advance by height. A block's hash commits to
//! its height, the previous app hash and its transactions.
//!
//! Shutdown is checked between blocks only, so a block in progress is
//! always finished and committed; transactions still waiting are answered
//! `UNAVAILABLE` and were never applied.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use r3mes_chain::apply::TxOutcome;
use r3mes_chain::crypto::sha256;
use r3mes_chain::proto::{ChallengeStatus, Event, event::Kind};
use r3mes_chain::{Keeper, SignedTx};
use r3mes_ipfs::ContentStore;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::events::block_event;
use crate::mempool::{Committed, Mempool, Pending};
use crate::metrics::Metrics;
use crate::proto::BlockEvent;
use crate::{Error, Result};

/// A committed block's events, as published to subscribers.
pub type EventBatch = Arc<Vec<BlockEvent>>;

/// The block producer's parts.
pub struct Producer {
    /// The keeper.
    pub keeper: Arc<Keeper>,
    /// Where transactions wait.
    pub mempool: Arc<Mempool>,
    /// Where committed events go.
    pub events: broadcast::Sender<EventBatch>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Where unpin events unpin.
    pub content: Arc<dyn ContentStore>,
    /// Time between blocks.
    pub block_time: Duration,
    /// Most transactions per block.
    pub max_txs: usize,
    /// Announces each committed height (to the background duties).
    pub committed: tokio::sync::watch::Sender<u64>,
}

/// What executing one block gave.
pub struct BlockOutput {
    /// The committed block's height.
    pub height: u64,
    /// Each transaction's outcome or error, in block order.
    pub results: Vec<r3mes_chain::Result<TxOutcome>>,
    /// The end-of-block events.
    pub end_events: Vec<Event>,
}

impl Producer {
    /// Makes blocks until `token` is cancelled (or the store fails, which
    /// cancels `token` and returns the error).
    pub async fn run(self, token: CancellationToken) -> Result<()> {
        let mut interval = tokio::time::interval(self.block_time);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let outcome = loop {
            tokio::select! {
                biased;
                () = token.cancelled() => break Ok(()),
                _ = interval.tick() => {}
            }
            if let Err(e) = self.block().await {
                tracing::error!("block production stopped: {e}");
                token.cancel();
                break Err(e);
            }
        };
        for pending in self.mempool.drain() {
            let _ = pending.reply.send(Err(Status::unavailable(
                "the node is shutting down: the transaction was not included",
            )));
        }
        outcome
    }

    /// Makes, commits and announces one block.
    async fn block(&self) -> Result<()> {
        let batch = self.mempool.take(self.max_txs);
        let txs: Vec<(SignedTx, [u8; 32])> = batch.iter().map(|p| (p.tx.clone(), p.hash)).collect();
        let keeper = Arc::clone(&self.keeper);
        let started = Instant::now();
        let executed = tokio::task::spawn_blocking(move || execute(&keeper, &txs))
            .await
            .map_err(|e| Error::Runtime(format!("block task failed: {e}")))
            .and_then(|r| r.map_err(Error::from));
        let out = match executed {
            Ok(out) => out,
            Err(e) => {
                for pending in batch {
                    let _ = pending.reply.send(Err(Status::unavailable(format!(
                        "the block failed ({e}) and the node stopped: whether the transaction \
                         was committed is unknown; check its effects once the node runs again"
                    ))));
                }
                return Err(e);
            }
        };
        let applied = out.results.iter().filter(|r| r.is_ok()).count();
        self.metrics
            .record_block(out.height, applied as u64, started.elapsed());
        self.publish(&out, &batch);
        self.committed.send_replace(out.height);
        self.answer(out, batch);
        Ok(())
    }

    /// Publishes the block's events; counts challenges; unpins released
    /// content in the background.
    fn publish(&self, out: &BlockOutput, batch: &[Pending]) {
        let mut events = Vec::new();
        for (result, pending) in out.results.iter().zip(batch) {
            if let Ok(outcome) = result {
                events.extend(
                    outcome
                        .events
                        .iter()
                        .map(|e| block_event(out.height, Some(&pending.hash), e)),
                );
            }
        }
        events.extend(
            out.end_events
                .iter()
                .map(|e| block_event(out.height, None, e)),
        );
        after_commit(
            events.iter().filter_map(|e| e.event.as_ref()),
            &self.metrics,
            &self.content,
            &tokio::runtime::Handle::current(),
        );
        if !events.is_empty() {
            // No subscriber is not an error.
            let _ = self.events.send(Arc::new(events));
        }
    }

    /// Answers every transaction of the committed block, and refuses the
    /// waiting transactions of accounts whose transaction failed.
    fn answer(&self, out: BlockOutput, batch: Vec<Pending>) {
        for (result, pending) in out.results.into_iter().zip(batch) {
            let failed = result.as_ref().err().cloned();
            let dropped = self
                .mempool
                .settle(&pending.signer, &pending.hash, failed.is_some());
            match &failed {
                Some(_) => self.metrics.txs_failed.fetch_add(1, Relaxed),
                None => self.metrics.txs_applied.fetch_add(1, Relaxed),
            };
            let _ = pending.reply.send(Ok(Committed {
                height: out.height,
                hash: pending.hash,
                outcome: result,
            }));
            if let Some(err) = failed {
                for later in dropped {
                    let _ = later.reply.send(Err(Status::failed_precondition(format!(
                        "dropped: the earlier transaction with sequence {} of {} failed in \
                         block {}: {err}",
                        pending.sequence, pending.signer, out.height
                    ))));
                }
            }
        }
    }
}

/// What the node does with the events of a durably committed block, made
/// by the producer or run under CometBFT ([`crate::abci`]): counts
/// challenges issued and closed, and unpins from `content` each CID an
/// `EvUnpin` names (retention GC released it), in the background on
/// `runtime`, counting the pins removed.
pub fn after_commit<'a>(
    events: impl IntoIterator<Item = &'a Event>,
    metrics: &Arc<Metrics>,
    content: &Arc<dyn ContentStore>,
    runtime: &tokio::runtime::Handle,
) {
    for e in events {
        match &e.kind {
            Some(Kind::ChallengeIssued(_)) => {
                metrics.challenges_issued.fetch_add(1, Relaxed);
            }
            Some(Kind::ChallengeClosed(c)) => {
                let counter = if c.status == ChallengeStatus::Resolved as i32 {
                    &metrics.challenges_resolved
                } else {
                    &metrics.challenges_failed
                };
                counter.fetch_add(1, Relaxed);
            }
            Some(Kind::Unpin(u)) => {
                let store = Arc::clone(content);
                let metrics = Arc::clone(metrics);
                let cid = u.cid.clone();
                runtime.spawn(async move {
                    if crate::content::unpin(&*store, &cid).await {
                        metrics.unpinned.fetch_add(1, Relaxed);
                    }
                });
            }
            _ => {}
        }
    }
}

/// Runs one block over `txs` (each with its hash, sha256 of its bytes) and
/// commits it; the block's hash is [`block_hash`] of the next height, the
/// committed app hash and the transaction hashes.
pub fn execute(keeper: &Keeper, txs: &[(SignedTx, [u8; 32])]) -> r3mes_chain::Result<BlockOutput> {
    let height = keeper
        .height()?
        .checked_add(1)
        .ok_or_else(|| r3mes_chain::Error::Store("block height overflows u64".into()))?;
    let hash = block_hash(height, &keeper.app_hash()?, txs.iter().map(|(_, h)| h));
    let mut block = keeper.begin_block(height, hash)?;
    let results = txs.iter().map(|(tx, _)| block.deliver(tx)).collect();
    let end_events = block.end_block()?;
    block.commit()?;
    Ok(BlockOutput {
        height,
        results,
        end_events,
    })
}

/// `sha256("r3mes-block-v1" || be64(height) || previous app hash || tx
/// hashes in block order)`.
pub fn block_hash<'a>(
    height: u64,
    previous_app_hash: &[u8; 32],
    tx_hashes: impl Iterator<Item = &'a [u8; 32]>,
) -> [u8; 32] {
    let mut buf = Vec::with_capacity(14 + 8 + 32);
    buf.extend_from_slice(b"r3mes-block-v1");
    buf.extend_from_slice(&height.to_be_bytes());
    buf.extend_from_slice(previous_app_hash);
    for h in tx_hashes {
        buf.extend_from_slice(h);
    }
    sha256(&buf)
}
