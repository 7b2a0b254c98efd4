//! Admission: every check a transaction passes before it may wait in the
//! mempool, so a malformed or hopeless request is refused with a clear
//! gRPC status and changes nothing.
//!
//! In order: size, protobuf decoding, a known message type, canonical
//! encoding and the per-kind size limit (the keeper's `decode_tx`), then
//! the sequence against the mempool and the committed account. When the
//! account has nothing waiting, the transaction is tried on a scratch block
//! over the committed state (dropped, never committed): chain id,
//! timestamp, public key, signature, signer and every rule of the keeper
//! are checked before the client waits for a block. Otherwise (it follows
//! waiting transactions, so the committed state cannot judge it) the same
//! checks run without the state (`SignedTx::verify` at the transaction's
//! own sequence, the gradient message's CID and metadata). Either way the
//! signature is verified once.
//!
//! The checks run on the gRPC task itself (about 70 µs of CPU, mostly the
//! signature): handing each to tokio's blocking pool cost a thread wake-up
//! per transaction and, under thousands of concurrent clients, grew the
//! pool to dozens of threads, each with its own allocator arena (`r3mes
//! bench submit`: 3,900 tx/s and a rising RSS before, 4,860 tx/s after).

use std::sync::Arc;

use prost::Message;
use r3mes_chain::exec::{Ctx, parse_cid};
use r3mes_chain::proto::{Tx, tx_body};
use r3mes_chain::{Address, Keeper, SignedTx};
use tokio::sync::oneshot;
use tonic::{Code, Status};

use crate::mempool::{Admit, Mempool, Pending, Reply};

/// Admits transactions into the mempool.
#[derive(Debug, Clone)]
pub struct Admission {
    keeper: Arc<Keeper>,
    mempool: Arc<Mempool>,
}

/// An admitted transaction: where its result will arrive.
#[derive(Debug)]
pub struct Admitted {
    /// sha256 of the transaction bytes.
    pub hash: [u8; 32],
    /// Resolves once the block holding it is committed.
    pub reply: oneshot::Receiver<Reply>,
}

impl Admission {
    /// Admission over `keeper`'s committed state into `mempool`.
    pub fn new(keeper: Arc<Keeper>, mempool: Arc<Mempool>) -> Self {
        Admission { keeper, mempool }
    }

    /// Checks `bytes` and queues the transaction (see the module docs).
    pub fn admit(&self, bytes: &[u8]) -> Result<Admitted, Status> {
        let tx = self.decode(bytes)?;
        // The claimed signer; nothing is admitted before the signature over
        // it is verified below (by the dry run or by `verify`).
        let signer = Address::of_key_bytes(&tx.as_proto().signer_pubkey).map_err(to_status)?;
        let hash = r3mes_chain::crypto::sha256(bytes);
        let sequence = tx.as_proto().sequence;
        let committed = || self.committed_sequence(&signer);
        match self.mempool.check(&hash, &signer, sequence, committed)? {
            // The dry run checks everything `verify` does, and the rules.
            Admit::OnCommitted => self.try_on_committed(&tx)?,
            Admit::AfterPending => {
                self.verify(&tx)?;
            }
        }
        let (sender, reply) = oneshot::channel();
        let pending = Pending {
            tx,
            hash,
            signer,
            sequence,
            reply: sender,
        };
        self.mempool
            .insert(pending, || self.committed_sequence(&signer))?;
        Ok(Admitted { hash, reply })
    }

    /// Size, decoding, message type, canonical form and size per kind.
    fn decode(&self, bytes: &[u8]) -> Result<SignedTx, Status> {
        let max = self.keeper.max_tx_bytes_any();
        if bytes.len() > max {
            return Err(Status::invalid_argument(format!(
                "transaction is {} bytes, the limit is {max}",
                bytes.len()
            )));
        }
        if bytes.is_empty() {
            return Err(Status::invalid_argument("transaction bytes are empty"));
        }
        let raw = Tx::decode(bytes).map_err(|e| {
            Status::invalid_argument(format!(
                "transaction does not decode as r3mes.chain.v1.Tx: {e}"
            ))
        })?;
        if raw.body.as_ref().and_then(|b| b.msg.as_ref()).is_none() {
            return Err(Status::invalid_argument(
                "unknown message type: the transaction body carries no message this node knows \
                 (r3mes.chain.v1.TxBody fields 1-15)",
            ));
        }
        self.keeper.decode_tx(bytes).map_err(to_status)
    }

    /// Signature, chain id, timestamp and signer, plus the gradient
    /// message's stateless checks; returns the signer.
    fn verify(&self, tx: &SignedTx) -> Result<Address, Status> {
        let keeper = &*self.keeper;
        let height = keeper.height().map_err(to_status)?.saturating_add(1);
        let time_ms = keeper.block_time_ms(height).map_err(to_status)?;
        let params = keeper.params();
        let signer = tx
            .verify(
                keeper.chain_id(),
                tx.as_proto().sequence,
                time_ms,
                params.max_clock_skew_ms,
            )
            .map_err(to_status)?;
        if let Some(tx_body::Msg::SubmitGradient(m)) =
            tx.as_proto().body.as_ref().and_then(|b| b.msg.as_ref())
        {
            parse_cid("ipfs_hash", &m.ipfs_hash).map_err(to_status)?;
            let meta = m
                .metadata
                .as_ref()
                .ok_or_else(|| Status::invalid_argument("invalid message: metadata is missing"))?;
            let ctx = Ctx {
                params,
                chain_id: keeper.chain_id(),
                height,
                time_ms,
                block_hash: [0; 32],
                // The metadata checks do not look at the round.
                open_round: None,
            };
            r3mes_chain::gradients::check_metadata(&ctx, meta).map_err(to_status)?;
        }
        Ok(signer)
    }

    /// Runs `tx` on a scratch block over the committed state and drops it.
    fn try_on_committed(&self, tx: &SignedTx) -> Result<(), Status> {
        // The producer may commit between reading the height and beginning
        // the scratch block; one retry sees the new height.
        for _ in 0..2 {
            let height = self.keeper.height().map_err(to_status)?.saturating_add(1);
            let mut block = match self.keeper.begin_block(height, [0; 32]) {
                Ok(block) => block,
                Err(r3mes_chain::Error::WrongBlockHeight { .. }) => continue,
                Err(e) => return Err(to_status(e)),
            };
            return block.deliver(tx).map(drop).map_err(to_status);
        }
        Err(Status::unavailable(
            "blocks are being committed too quickly to check the transaction: retry",
        ))
    }

    fn committed_sequence(&self, signer: &Address) -> Result<u64, Status> {
        self.keeper
            .account(signer)
            .map(|a| a.sequence)
            .map_err(to_status)
    }
}

/// The gRPC status of a keeper error: its text, its stable numeric code in
/// the message and in the `r3mes-code` metadata entry.
pub fn to_status(err: r3mes_chain::Error) -> Status {
    use r3mes_chain::Error as E;
    let code = match &err {
        E::InvalidSecretKey
        | E::MalformedPublicKey(_)
        | E::MalformedSignature(_)
        | E::HighS
        | E::BadSignature
        | E::AddressMixedCase
        | E::AddressMalformed(_)
        | E::AddressBadChecksum
        | E::AddressWrongHrp { .. }
        | E::AddressWrongLength { .. }
        | E::TxTooLarge { .. }
        | E::TxDecode(_)
        | E::TxNonCanonical
        | E::MissingMessage
        | E::InvalidChainId
        | E::WrongChainId { .. }
        | E::SignerMismatch { .. }
        | E::InvalidCid { .. }
        | E::InvalidChunkSize { .. }
        | E::InvalidMessage(_)
        | E::InvalidProof(_) => Code::InvalidArgument,
        E::WrongSequence { expected, found } if found < expected => Code::AlreadyExists,
        E::WrongSequence { .. }
        | E::TimestampOutOfWindow { .. }
        | E::InsufficientFunds { .. }
        | E::AmountOverflow
        | E::SequenceOverflow
        | E::RoundNotOpen { .. }
        | E::WrongShard { .. }
        | E::InsufficientWork { .. }
        | E::ChallengeClosed { .. } => Code::FailedPrecondition,
        E::Unauthorized(_) => Code::PermissionDenied,
        E::AlreadyExists(_) => Code::AlreadyExists,
        E::NotFound(_) => Code::NotFound,
        E::SigningFailed
        | E::StateLocked { .. }
        | E::Store(_)
        | E::WrongBlockHeight { .. }
        | E::InvalidParams(_)
        | E::InvalidGenesis(_) => Code::Internal,
    };
    let mut status = Status::new(code, format!("{err} (r3mes code {})", err.code()));
    status
        .metadata_mut()
        .insert("r3mes-code", err.code().into());
    status
}
