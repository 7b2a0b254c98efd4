//! [`Duties`]: both duties behind one entry point the node's producer loop
//! calls after each committed block, with their state kept in memory.
//!
//! ```text
//! let mut duties = Duties::new(config)?;
//! loop {
//!     ... commit block h ...
//!     let report = duties.after_block(&keeper, h).await;
//!     mempool.extend(report.txs);
//! }
//! ```
//!
//! State between blocks: one [`Signer`] per key (the responder and the
//! verifier may share one), and the challenges answered and gradients
//! verified by transactions not yet recorded, each with the sequence it was
//! signed with. A transaction is recorded once the committed sequence
//! passes its own (the keeper rolls a rejected transaction back, sequence
//! included), and then the chain itself says the work is done (the
//! challenge is no longer open, the result is stored). When a signer falls
//! back to the committed sequence (see [`crate::signer`]), its unrecorded
//! work is forgotten and done again at this block.
//!
//! Verification covers the blocks since the last call, at most
//! `max_catch_up_blocks` of them (the first call: that many blocks back, so
//! a restarted node verifies what it missed; results already on chain are
//! not sent twice).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use r3mes_chain::proto::tx_body;
use r3mes_chain::{Address, Keeper, SecretKey, SignedTx};
use r3mes_ipfs::{Cid, ContentStore};
use r3mes_verify::{Vault, Verifier};

use crate::availability::{self, Answers, DEFAULT_BLOCK_TIMEOUT, ResponseLimits};
use crate::signer::Signer;
use crate::verification::{self, Verifications};
use crate::{Error, Result};

/// Default blocks after which unrecorded transactions are signed again.
pub const DEFAULT_RETRY_AFTER_BLOCKS: u64 = 2;
/// Default most blocks one call verifies back to.
pub const DEFAULT_MAX_CATCH_UP_BLOCKS: u64 = 16;

/// The responder's role: answer challenges targeting `key`'s address from
/// `content`.
#[derive(Clone)]
pub struct ResponderConfig {
    /// The miner's key (the challenges' target).
    pub key: SecretKey,
    /// Where the miner's content lives.
    pub content: Arc<dyn ContentStore>,
    /// How long one block may take to arrive.
    pub block_timeout: Duration,
}

impl ResponderConfig {
    /// A responder for `key` over `content` with the default block timeout.
    pub fn new(key: SecretKey, content: Arc<dyn ContentStore>) -> Self {
        Self {
            key,
            content,
            block_timeout: DEFAULT_BLOCK_TIMEOUT,
        }
    }
}

/// The validator's role: verify new gradients of the vault's chunks.
#[derive(Clone)]
pub struct VerifierDutyConfig {
    /// The validator's key.
    pub key: SecretKey,
    /// The validator's secret vault.
    pub vault: Vault,
    /// The verification engine (its content store and cache).
    pub verifier: Verifier,
}

/// Which duties run and how.
#[derive(Clone)]
pub struct DutiesConfig {
    /// Answer availability challenges (miner side), if set.
    pub responder: Option<ResponderConfig>,
    /// Verify gradients (validator side), if set.
    pub verifier: Option<VerifierDutyConfig>,
    /// Blocks after which transactions the chain has not recorded are
    /// signed again (at least 1).
    pub retry_after_blocks: u64,
    /// Most blocks one call verifies back to (at least 1).
    pub max_catch_up_blocks: u64,
}

impl DutiesConfig {
    /// No duty, default retry and catch-up windows.
    pub fn new() -> Self {
        Self {
            responder: None,
            verifier: None,
            retry_after_blocks: DEFAULT_RETRY_AFTER_BLOCKS,
            max_catch_up_blocks: DEFAULT_MAX_CATCH_UP_BLOCKS,
        }
    }
}

impl Default for DutiesConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// What one call did.
#[derive(Debug, Default)]
pub struct DutyReport {
    /// The committed height the call ran after.
    pub height: u64,
    /// Signed transactions for the mempool, in sequence order per signer.
    pub txs: Vec<SignedTx>,
    /// The responder's pass (new answers only).
    pub answers: Answers,
    /// The verification pass.
    pub verifications: Verifications,
    /// Failures of a whole duty or of signing (also logged).
    pub errors: Vec<Error>,
}

/// The duties and their in-memory state.
pub struct Duties {
    responder: Option<ResponderConfig>,
    verifier: Option<VerifierDutyConfig>,
    retry_after_blocks: u64,
    max_catch_up_blocks: u64,
    signers: BTreeMap<Address, Signer>,
    /// Challenge id -> sequence of the unrecorded answer.
    answered: BTreeMap<String, u64>,
    /// Gradient -> sequence of the unrecorded result.
    verified: BTreeMap<Cid, u64>,
    /// First height the next verification pass covers.
    next_scan: Option<u64>,
}

impl Duties {
    /// Checks `config` and sets up its signers.
    pub fn new(config: DutiesConfig) -> Result<Self> {
        if config.retry_after_blocks == 0 || config.max_catch_up_blocks == 0 {
            return Err(Error::Config(
                "retry_after_blocks and max_catch_up_blocks must be at least 1".into(),
            ));
        }
        if let Some(v) = &config.verifier {
            v.vault
                .validate()
                .map_err(|e| Error::Config(e.to_string()))?;
        }
        let mut signers = BTreeMap::new();
        let keys = config
            .responder
            .iter()
            .map(|r| &r.key)
            .chain(config.verifier.iter().map(|v| &v.key));
        for key in keys {
            let signer = Signer::new(key.clone());
            signers.entry(signer.address()).or_insert(signer);
        }
        Ok(Self {
            responder: config.responder,
            verifier: config.verifier,
            retry_after_blocks: config.retry_after_blocks,
            max_catch_up_blocks: config.max_catch_up_blocks,
            signers,
            answered: BTreeMap::new(),
            verified: BTreeMap::new(),
            next_scan: None,
        })
    }

    /// Replaces the verification duty's vault (a validator that computed
    /// reference gradients for a new model version). The new vault must be
    /// valid; gradients already verified stay verified. The next pass scans
    /// the whole catch-up window again, so gradients included before the new
    /// entries existed (a round that began on a version whose references
    /// were still being computed) are verified with them.
    pub fn replace_vault(&mut self, vault: Vault) -> Result<()> {
        let Some(v) = &mut self.verifier else {
            return Err(Error::Config("the verification duty is not running".into()));
        };
        vault.validate().map_err(|e| Error::Config(e.to_string()))?;
        v.vault = vault;
        self.next_scan = None;
        Ok(())
    }

    /// The responder's address, if that duty runs.
    pub fn responder_address(&self) -> Option<Address> {
        self.responder
            .as_ref()
            .map(|r| r.key.public_key().address())
    }

    /// The validator's address, if the verification duty runs.
    pub fn verifier_address(&self) -> Option<Address> {
        self.verifier.as_ref().map(|v| v.key.public_key().address())
    }

    /// Runs every configured duty after block `height` (the keeper's
    /// committed height) and returns the transactions to submit, signed for
    /// inclusion from block `height + 1` on. A duty that fails
    /// as a whole is reported in [`DutyReport::errors`]; the other still runs.
    pub async fn after_block(&mut self, keeper: &Keeper, height: u64) -> DutyReport {
        let mut report = DutyReport {
            height,
            ..DutyReport::default()
        };
        self.sync_signers(keeper, height, &mut report);
        if let Err(e) = self.respond(keeper, height, &mut report).await {
            tracing::error!(height, "availability responder failed: {e}");
            report.errors.push(e);
        }
        if let Err(e) = self.verify(keeper, height, &mut report).await {
            tracing::error!(height, "verification duty failed: {e}");
            report.errors.push(e);
        }
        report
    }

    /// Aligns every signer with the chain and forgets the work the chain
    /// recorded (the committed sequence passed the transaction's), or all
    /// unrecorded work of a signer that fell back (it is done again).
    fn sync_signers(&mut self, keeper: &Keeper, height: u64, report: &mut DutyReport) {
        let responder = self.responder_address();
        let verifier = self.verifier_address();
        for (address, signer) in &mut self.signers {
            let synced = signer.sync(keeper, height, self.retry_after_blocks);
            let committed = keeper
                .account(address)
                .map(|a| a.sequence)
                .map_err(Error::from);
            let (resynced, committed) = match (synced, committed) {
                (Ok(resynced), Ok(committed)) => (resynced, committed),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::error!(%address, "cannot read the signer's account: {e}");
                    report.errors.push(e);
                    continue;
                }
            };
            let keep = |seq: &mut u64| !resynced && *seq >= committed;
            if responder == Some(*address) {
                self.answered.retain(|_, seq| keep(seq));
            }
            if verifier == Some(*address) {
                self.verified.retain(|_, seq| keep(seq));
            }
        }
    }

    async fn respond(
        &mut self,
        keeper: &Keeper,
        height: u64,
        report: &mut DutyReport,
    ) -> Result<()> {
        let Some(config) = &self.responder else {
            return Ok(());
        };
        let me = config.key.public_key().address();
        let open: Vec<_> = availability::open_challenges(keeper.state(), &me)?
            .into_iter()
            .filter(|c| {
                !self
                    .answered
                    .contains_key(&r3mes_chain::tables::hex_lower(&c.challenge_id))
            })
            .collect();
        let answers = availability::answer_from_content(
            open,
            &me,
            config.content.clone(),
            &ResponseLimits::of_keeper(keeper),
            config.block_timeout,
        )
        .await?;
        let signer = signer_of(&mut self.signers, &me)?;
        for a in &answers.answered {
            let seq = signer.next_sequence();
            match signer.sign(
                keeper,
                height,
                tx_body::Msg::RespondChallenge(a.msg.clone()),
            ) {
                Ok(tx) => {
                    self.answered.insert(a.challenge_id.clone(), seq);
                    report.txs.push(tx);
                }
                Err(e) => {
                    tracing::error!(challenge = %a.challenge_id, "cannot sign the answer: {e}");
                    report.errors.push(e);
                }
            }
        }
        report.answers = answers;
        Ok(())
    }

    async fn verify(
        &mut self,
        keeper: &Keeper,
        height: u64,
        report: &mut DutyReport,
    ) -> Result<()> {
        let Some(config) = &self.verifier else {
            return Ok(());
        };
        let me = config.key.public_key().address();
        let oldest = height.saturating_sub(self.max_catch_up_blocks - 1);
        let from = self.next_scan.unwrap_or(oldest).max(oldest);
        let candidates: Vec<_> =
            verification::candidates(keeper.state(), &me, &config.vault, from..=height)?
                .into_iter()
                .filter(|c| !self.verified.contains_key(&c.gradient))
                .collect();
        // Heights whose candidates could be read are done; a gradient the
        // verifier cannot read now is the availability challenge's business.
        self.next_scan = Some(height.saturating_add(1));
        let done = verification::verify_candidates(candidates, &me, &config.verifier).await;
        let signer = signer_of(&mut self.signers, &me)?;
        for v in &done.verified {
            let seq = signer.next_sequence();
            match signer.sign(
                keeper,
                height,
                tx_body::Msg::SubmitVerification(v.msg.clone()),
            ) {
                Ok(tx) => {
                    self.verified.insert(v.gradient, seq);
                    report.txs.push(tx);
                }
                Err(e) => {
                    tracing::error!(gradient = %v.gradient, "cannot sign the result: {e}");
                    report.errors.push(e);
                }
            }
        }
        report.verifications = done;
        Ok(())
    }
}

/// The signer of `address`.
fn signer_of<'a>(
    signers: &'a mut BTreeMap<Address, Signer>,
    address: &Address,
) -> Result<&'a mut Signer> {
    signers
        .get_mut(address)
        .ok_or_else(|| Error::Config(format!("no signer for {address}")))
}
