//! Signing the duties' messages: one [`Signer`] per key, keeping the key's
//! next sequence in memory between blocks, and [`sign_all`] for a caller
//! that tracks sequences itself.
//!
//! Transactions are stamped with the time of the block after the one just
//! committed (`Keeper::block_time_ms(height + 1)`): the keeper's clock is
//! block height times block time, so no wall clock is needed and the stamp
//! is within the allowed skew wherever the producer includes them soon.
//!
//! Sequences: the committed account sequence is the next one the keeper
//! expects. While transactions of ours are in flight the signer runs ahead
//! of it; if the chain has not caught up `retry_after_blocks` blocks after
//! the last signature (a transaction was dropped or rejected), the signer
//! falls back to the committed sequence and says so, and the duties send
//! again what the chain did not record.

use r3mes_chain::apply::size_limit;
use r3mes_chain::proto::{TxBody, tx_body};
use r3mes_chain::{Address, Error as ChainError, Keeper, SecretKey, SignedTx};

use crate::Result;

/// Signs each message of `msgs`, in order, with `key` from sequence
/// `start_sequence` on.
pub fn sign_all(
    msgs: impl IntoIterator<Item = tx_body::Msg>,
    key: &SecretKey,
    start_sequence: u64,
    chain_id: &str,
    timestamp_ms: i64,
) -> Result<Vec<SignedTx>> {
    let mut sequence = start_sequence;
    let mut out = Vec::new();
    for msg in msgs {
        out.push(SignedTx::sign(
            TxBody { msg: Some(msg) },
            key,
            sequence,
            chain_id,
            timestamp_ms,
        )?);
        sequence = sequence
            .checked_add(1)
            .ok_or(ChainError::SequenceOverflow)?;
    }
    Ok(out)
}

/// One key and its next sequence.
#[derive(Debug, Clone)]
pub struct Signer {
    key: SecretKey,
    address: Address,
    next: u64,
    /// Height of the last signature while the chain had not yet recorded it.
    in_flight_since: Option<u64>,
}

impl Signer {
    /// A signer for `key`; its sequence is read from the chain at the first
    /// [`sync`](Self::sync).
    pub fn new(key: SecretKey) -> Self {
        let address = key.public_key().address();
        Self {
            key,
            address,
            next: 0,
            in_flight_since: None,
        }
    }

    /// The key's address.
    pub fn address(&self) -> Address {
        self.address
    }

    /// The sequence the next transaction will carry.
    pub fn next_sequence(&self) -> u64 {
        self.next
    }

    /// Aligns the next sequence with the committed account after block
    /// `height`. Returns `true` when it had to fall back to the committed
    /// sequence because transactions signed at least `retry_after_blocks`
    /// blocks ago were never recorded.
    pub fn sync(&mut self, keeper: &Keeper, height: u64, retry_after_blocks: u64) -> Result<bool> {
        let committed = keeper.account(&self.address)?.sequence;
        if committed >= self.next {
            self.next = committed;
            self.in_flight_since = None;
            return Ok(false);
        }
        let stale = self
            .in_flight_since
            .is_some_and(|since| height >= since.saturating_add(retry_after_blocks));
        if stale {
            tracing::warn!(
                address = %self.address,
                committed,
                signed_up_to = self.next,
                "transactions were not recorded; signing again from the committed sequence"
            );
            self.next = committed;
            self.in_flight_since = None;
        }
        Ok(stale)
    }

    /// Signs `msg` with the next sequence for inclusion after block
    /// `height`. Fails, consuming no sequence, if the transaction would
    /// exceed the keeper's size limit for its kind.
    pub fn sign(&mut self, keeper: &Keeper, height: u64, msg: tx_body::Msg) -> Result<SignedTx> {
        let time_ms = keeper.block_time_ms(height.saturating_add(1))?;
        let tx = SignedTx::sign(
            TxBody { msg: Some(msg) },
            &self.key,
            self.next,
            keeper.chain_id(),
            time_ms,
        )?;
        let (len, max) = (tx.encoded_len(), size_limit(&tx, keeper.params()));
        if len > max {
            return Err(ChainError::TxTooLarge { len, max }.into());
        }
        self.next = self
            .next
            .checked_add(1)
            .ok_or(ChainError::SequenceOverflow)?;
        self.in_flight_since = Some(height);
        Ok(tx)
    }
}
