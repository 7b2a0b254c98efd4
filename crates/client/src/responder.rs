//! The miner-side availability responder, run against a node over gRPC.
//!
//! A miner keeps its gradients in its own content store (its embedded
//! IPFS or Kubo). [`Responder::run`] watches the node's event stream for
//! `challenge_issued` events naming the miner, and on each one (and every
//! `interval`, to catch what a dropped stream missed and to retry) asks the
//! node for the miner's open challenges, builds each answer from the
//! content store with `r3mes_worker::availability::answer_from_content`
//! (leaves and ancestors, checked locally against the keeper's limits) and
//! sends them all as one batch of consecutive transactions
//! ([`NodeClient::send_all`]). A challenge answered and committed is no
//! longer open, so a pass never answers one twice; one whose answer failed
//! is still open and is tried again on the next pass until its deadline.
//!
//! Content missing from the store gives no answer: the keeper slashes at
//! the deadline, which is the point of the challenge.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use r3mes_chain::proto::tx_body;
use r3mes_chain::{Address, SecretKey};
use r3mes_ipfs::ContentStore;
use r3mes_worker::availability::{DEFAULT_BLOCK_TIMEOUT, ResponseLimits, answer_from_content};
use tokio_stream::StreamExt;

use crate::{NodeClient, Result};

/// What a responder did, in total.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResponderReport {
    /// Answers committed on chain.
    pub answered: u64,
    /// Challenges the store could not answer (content missing, unreadable
    /// or too large), counted once per pass.
    pub unanswered: u64,
    /// Answers sent whose batch failed (late, or refused by the keeper).
    pub failed: u64,
}

/// Answers one address's availability challenges from a content store.
pub struct Responder {
    client: NodeClient,
    key: SecretKey,
    address: Address,
    content: Arc<dyn ContentStore>,
    block_timeout: Duration,
}

impl Responder {
    /// A responder for `key`'s address reading `content`.
    pub fn new(client: NodeClient, key: SecretKey, content: Arc<dyn ContentStore>) -> Self {
        Responder {
            client,
            address: key.public_key().address(),
            key,
            content,
            block_timeout: DEFAULT_BLOCK_TIMEOUT,
        }
    }

    /// The address whose challenges it answers.
    pub fn address(&self) -> Address {
        self.address
    }

    /// Answers every challenge open now; adds what it did to `report`.
    pub async fn answer_open(&self, report: &mut ResponderReport) -> Result<()> {
        let open = self.client.open_challenges(&self.address).await?;
        if open.is_empty() {
            return Ok(());
        }
        let status = self.client.status().await?;
        let params = self.client.params().await?;
        let limits = ResponseLimits::new(params.max_response_bytes, &status.chain_id);
        let answers = answer_from_content(
            open,
            &self.address,
            self.content.clone(),
            &limits,
            self.block_timeout,
        )
        .await?;
        report.unanswered += answers.unanswered.len() as u64;
        let count = answers.answered.len() as u64;
        let msgs: Vec<_> = answers
            .answered
            .into_iter()
            .map(|a| tx_body::Msg::RespondChallenge(a.msg))
            .collect();
        if msgs.is_empty() {
            return Ok(());
        }
        match self.client.send_all(&self.key, msgs).await {
            Ok(outcome) => {
                tracing::info!(
                    count,
                    height = outcome.height,
                    "challenge answers committed"
                );
                report.answered += count;
            }
            Err(e) => {
                tracing::warn!(count, "challenge answers failed: {e}");
                report.failed += count;
            }
        }
        Ok(())
    }

    /// Answers challenges until `stop` completes: once at start, on every
    /// `challenge_issued` event naming the address, and every `interval`.
    /// A node that cannot be reached is retried every `interval`; only
    /// `stop` ends the loop.
    pub async fn run(&self, interval: Duration, stop: impl Future<Output = ()>) -> ResponderReport {
        let mut report = ResponderReport::default();
        let mut events = None;
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        loop {
            if events.is_none() {
                events = self
                    .client
                    .subscribe(&["challenge_issued"], Some(&self.address))
                    .await
                    .inspect_err(|e| tracing::warn!("watching challenges: {e}"))
                    .ok();
            }
            tokio::select! {
                () = &mut stop => return report,
                event = next_event(&mut events) => {
                    if event.is_none() {
                        // The stream ended (the node restarted): resubscribe.
                        events = None;
                        continue;
                    }
                }
                _ = tick.tick() => {}
            }
            if let Err(e) = self.answer_open(&mut report).await {
                tracing::warn!("answering challenges: {e}");
            }
        }
    }
}

/// The next item of an event stream; pending forever without one.
async fn next_event<S>(events: &mut Option<S>) -> Option<()>
where
    S: tokio_stream::Stream + Unpin,
{
    match events {
        Some(stream) => stream.next().await.map(|_| ()),
        None => std::future::pending().await,
    }
}
