//! The availability responder (miner side): answers the open
//! data-availability challenges that target an address, from the blocks of
//! a content store.
//!
//! A challenge names its content's root CID and k draws; draw `d` names the
//! leaf holding byte `d mod filesize`. The answer is those leaves and their
//! ancestors ([`r3mes_ipfs::proof::build_proof`]), which the keeper hashes
//! back up to the CID it stores. Before an answer is handed out it is
//! checked here exactly as the keeper will check it
//! ([`r3mes_ipfs::proof::verify_proof`] with the keeper's limits) and its
//! size against `max_response_bytes`, so a corrupt local block or an
//! oversized proof is reported here instead of being rejected on chain.
//!
//! Content missing locally gives no answer for that challenge (reported as
//! [`Unanswered::ContentMissing`] and logged); the other challenges are
//! still answered. Nothing here panics on what the store or the chain holds.
//!
//! Two entry points: [`answers_from_blocks`] over a synchronous
//! [`BlockStore`] (an embedded repo's store, a `MemoryBlockStore`), and
//! [`answers`] over any [`ContentStore`] (the embedded store or Kubo), which
//! walks the DAG on tokio's blocking pool and fetches each block it needs.

use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use r3mes_chain::accounts::StoreRead;
use r3mes_chain::proto::{Challenge, MsgRespondChallenge, Tx, TxBody, tx_body};
use r3mes_chain::tables::hex_lower;
use r3mes_chain::{Address, Keeper, queries};
use r3mes_ipfs::blockstore::{BlockSource, BlockStore};
use r3mes_ipfs::proof::{ProofError, ProofLimits, build_proof, verify_proof};
use r3mes_ipfs::{Cid, ContentStore, cids};

use crate::{Error, Result};

/// Most open challenges read per call (the oldest ids first).
pub const MAX_OPEN_CHALLENGES: usize = 1024;
/// How long one block may take to arrive from a content store.
pub const DEFAULT_BLOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// What an answer must fit for the keeper to accept it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseLimits {
    /// The limits the keeper verifies proofs with.
    pub proof: ProofLimits,
    /// Largest encoded `TxBody` holding the answer: the keeper's
    /// `max_response_bytes` less what signing adds around the body.
    pub max_body_bytes: usize,
}

impl ResponseLimits {
    /// The limits `keeper` applies to `MsgRespondChallenge` transactions.
    pub fn of_keeper(keeper: &Keeper) -> Self {
        Self::new(keeper.params().max_response_bytes, keeper.chain_id())
    }

    /// The limits of a keeper with parameter `max_response_bytes` on
    /// `chain_id` (for a responder that knows the keeper only remotely).
    pub fn new(max_response_bytes: u64, chain_id: &str) -> Self {
        let max_tx = usize::try_from(max_response_bytes).unwrap_or(usize::MAX);
        Self {
            // The keeper checks answers with the default proof limits.
            proof: ProofLimits::default(),
            max_body_bytes: max_tx.saturating_sub(envelope_bytes(chain_id)),
        }
    }
}

/// An upper bound of what a signed transaction adds around its body on
/// chain `chain_id`: public key, signature, the longest sequence and
/// timestamp encodings, the chain id, and the body's own tag and length.
fn envelope_bytes(chain_id: &str) -> usize {
    let shell = Tx {
        body: None,
        signer_pubkey: vec![0; 33],
        sequence: u64::MAX,
        chain_id: chain_id.to_owned(),
        timestamp_ms: i64::MIN,
        signature: vec![0; 64],
    };
    // Body field: one tag byte and at most ten bytes of length.
    shell.encoded_len() + 11
}

/// One answered challenge.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// Hex challenge id.
    pub challenge_id: String,
    /// The challenged content.
    pub content: Cid,
    /// Last height at which the keeper accepts the answer.
    pub response_deadline: u64,
    /// The message to sign.
    pub msg: MsgRespondChallenge,
}

/// Why a challenge got no answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Unanswered {
    /// A block on the path of a draw is not in the local store: the content
    /// (or part of it) is gone, and the keeper will slash at the deadline.
    #[error("content {content} is not held locally: block {block} is missing")]
    ContentMissing {
        /// The challenged content.
        content: Cid,
        /// The first missing block found.
        block: Box<Cid>,
    },
    /// The content store failed (unreachable, timed out, corrupt block).
    #[error("content store failed while proving {content}: {reason}")]
    Store {
        /// The challenged content.
        content: Cid,
        /// What the store said.
        reason: String,
    },
    /// The proof does not fit the keeper's limits (too many blocks or bytes,
    /// too deep) or the transaction size limit.
    #[error("the answer for {content} is too large: {reason}")]
    TooLarge {
        /// The challenged content.
        content: Cid,
        /// Which limit.
        reason: String,
    },
    /// The challenge record cannot be answered as stored (its CID does not
    /// parse, it has no draws, or the built proof does not verify).
    #[error("challenge cannot be answered: {0}")]
    Invalid(String),
}

/// What one pass over the open challenges gave.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Answers {
    /// Challenges answered, in the keeper's order (challenge id order).
    pub answered: Vec<Answer>,
    /// Challenges not answered: hex id and why.
    pub unanswered: Vec<(String, Unanswered)>,
}

/// The pending challenges targeting `me` (oldest ids first, at most
/// [`MAX_OPEN_CHALLENGES`]).
pub fn open_challenges(store: &impl StoreRead, me: &Address) -> Result<Vec<Challenge>> {
    Ok(queries::open_challenges(store, me, MAX_OPEN_CHALLENGES)?)
}

/// Builds and checks the answer to one challenge from `blocks`.
pub fn answer(
    challenge: &Challenge,
    me: &Address,
    blocks: &dyn BlockStore,
    limits: &ResponseLimits,
) -> std::result::Result<Answer, Unanswered> {
    let challenge_id = hex_lower(&challenge.challenge_id);
    let content = Cid::try_from(challenge.ipfs_hash.as_slice())
        .map_err(|e| Unanswered::Invalid(format!("stored content CID: {e}")))?;
    let proof = build_proof(blocks, &content, &challenge.draws).map_err(|e| match e {
        // While building, a missing root is a missing block like any other.
        ProofError::MissingBlock { cid } | ProofError::MissingRoot { root: cid } => {
            Unanswered::ContentMissing {
                content,
                block: Box::new(cid),
            }
        }
        ProofError::Store(e) => Unanswered::Store {
            content,
            reason: e.to_string(),
        },
        other => Unanswered::Invalid(other.to_string()),
    })?;
    verify_proof(&content, &challenge.draws, &proof, &limits.proof).map_err(|e| match e {
        ProofError::TooManyBlocks { .. }
        | ProofError::TooManyBytes { .. }
        | ProofError::TooManyDraws { .. }
        | ProofError::TooDeep { .. } => Unanswered::TooLarge {
            content,
            reason: e.to_string(),
        },
        other => Unanswered::Invalid(format!("the built proof does not verify: {other}")),
    })?;
    let msg = MsgRespondChallenge {
        responder: me.to_string(),
        challenge_id: challenge_id.clone(),
        blocks: proof,
    };
    let body_len = TxBody {
        msg: Some(tx_body::Msg::RespondChallenge(msg.clone())),
    }
    .encoded_len();
    if body_len > limits.max_body_bytes {
        return Err(Unanswered::TooLarge {
            content,
            reason: format!(
                "the message is {body_len} bytes, at most {} fit max_response_bytes",
                limits.max_body_bytes
            ),
        });
    }
    Ok(Answer {
        challenge_id,
        content,
        response_deadline: challenge.response_deadline,
        msg,
    })
}

/// Answers each of `challenges` from `blocks`, logging those it cannot.
pub fn answer_all(
    challenges: &[Challenge],
    me: &Address,
    blocks: &dyn BlockStore,
    limits: &ResponseLimits,
) -> Answers {
    let mut out = Answers::default();
    for challenge in challenges {
        match answer(challenge, me, blocks, limits) {
            Ok(a) => {
                tracing::info!(
                    challenge = %a.challenge_id,
                    content = %a.content,
                    blocks = a.msg.blocks.len(),
                    deadline = a.response_deadline,
                    "availability challenge answered"
                );
                out.answered.push(a);
            }
            Err(why) => {
                let id = hex_lower(&challenge.challenge_id);
                tracing::warn!(challenge = %id, "availability challenge not answered: {why}");
                out.unanswered.push((id, why));
            }
        }
    }
    out
}

/// Answers every open challenge targeting `me` from a synchronous block store.
pub fn answers_from_blocks(
    store: &impl StoreRead,
    me: &Address,
    blocks: &dyn BlockStore,
    limits: &ResponseLimits,
) -> Result<Answers> {
    let open = open_challenges(store, me)?;
    Ok(answer_all(&open, me, blocks, limits))
}

/// Answers every open challenge targeting `me` from a content store; each
/// block must arrive within `block_timeout`.
pub async fn answers(
    store: &(impl StoreRead + Sync),
    me: &Address,
    content: Arc<dyn ContentStore>,
    limits: &ResponseLimits,
    block_timeout: Duration,
) -> Result<Answers> {
    let open = open_challenges(store, me)?;
    answer_from_content(open, me, content, limits, block_timeout).await
}

/// Answers each of `challenges` from a content store; each block must
/// arrive within `block_timeout`.
pub async fn answer_from_content(
    challenges: Vec<Challenge>,
    me: &Address,
    content: Arc<dyn ContentStore>,
    limits: &ResponseLimits,
    block_timeout: Duration,
) -> Result<Answers> {
    if challenges.is_empty() {
        return Ok(Answers::default());
    }
    let blocks = ContentBlocks {
        content,
        handle: tokio::runtime::Handle::current(),
        timeout: block_timeout,
    };
    let (me, limits) = (*me, *limits);
    tokio::task::spawn_blocking(move || answer_all(&challenges, &me, &blocks, &limits))
        .await
        .map_err(|e| Error::Task(e.to_string()))
}

/// A read-only [`BlockStore`] over a [`ContentStore`], for the proof walk
/// (which is synchronous) on tokio's blocking pool.
struct ContentBlocks {
    content: Arc<dyn ContentStore>,
    handle: tokio::runtime::Handle,
    timeout: Duration,
}

impl ContentBlocks {
    fn fetch(&self, cid: &Cid) -> r3mes_ipfs::Result<Option<Vec<u8>>> {
        let answer = self.handle.block_on(tokio::time::timeout(
            self.timeout,
            self.content.block_get(cid),
        ));
        match answer {
            Err(_) => Err(r3mes_ipfs::Error::Transport(format!(
                "block {cid}: no answer from the content store within {:?}",
                self.timeout
            ))),
            Ok(Err(r3mes_ipfs::Error::BlockNotFound(_))) => Ok(None),
            Ok(Err(e)) => Err(e),
            Ok(Ok(block)) => {
                cids::verify(cid, &block)?;
                Ok(Some(block.to_vec()))
            }
        }
    }
}

impl BlockSource for ContentBlocks {
    fn fetch(&self, cid: &Cid) -> r3mes_ipfs::Result<Option<Vec<u8>>> {
        ContentBlocks::fetch(self, cid)
    }

    fn name(&self) -> &'static str {
        "the responder's block source"
    }
}
