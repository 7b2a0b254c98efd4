//! r3mes-worker: the node's background duties, run after each committed block.
//!
//! The node's block producer commits block `h`, then calls
//! [`Duties::after_block`]; what comes back are signed transactions for its
//! mempool. Two duties exist, each optional and each with its own key:
//!
//! - **Availability responder** ([`availability`], miner side): every open
//!   challenge whose target is the responder's address is answered from a
//!   content store with the Merkle proof of the challenged leaves
//!   (`r3mes_ipfs::proof::build_proof`), checked locally with the keeper's
//!   own proof limits and transaction size limit before it is sent. Content
//!   missing locally gives no answer (the keeper slashes at the deadline).
//! - **Verification duty** ([`verification`], validator side): every new
//!   gradient of a chunk the validator's secret vault knows is checked by
//!   range reads (`r3mes_verify::Verifier`) and reported with
//!   `MsgSubmitVerification` (cosine in ppm, pass flag, vault commitment).
//!   A gradient the validator cannot read (store unreachable, block missing)
//!   gives no message: that is not proof the miner cheated.
//!
//! [`signer`] keeps the next sequence of each key in memory and signs with
//! the next block's time, so transactions are valid where the producer
//! puts them. The duties keep in memory which challenges they answered and
//! which gradients they verified, retry what the chain did not record after
//! a few blocks, and never panic on what they read.
//!
//! This crate does not produce blocks, hold a mempool or speak gRPC (that
//! is the node), and does not decide availability or verification rules
//! (that is the keeper in `r3mes-chain`).

pub mod availability;
pub mod duties;
pub mod signer;
pub mod verification;

pub use availability::{Answer, Answers, ResponseLimits, Unanswered};
pub use duties::{Duties, DutiesConfig, DutyReport, ResponderConfig, VerifierDutyConfig};
pub use signer::Signer;
pub use verification::{Skipped, Verifications, Verified};

/// Every way a duty can fail as a whole. A single challenge or gradient
/// that cannot be handled is not an error: it is reported (and logged) as
/// unanswered or skipped, and the rest go on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading the keeper's committed state, or signing, failed.
    #[error("keeper: {0}")]
    Chain(#[from] r3mes_chain::Error),
    /// A blocking task of the duty panicked or was cancelled.
    #[error("worker task failed: {0}")]
    Task(String),
    /// The duty was configured in a way that cannot work.
    #[error("invalid worker configuration: {0}")]
    Config(String),
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
