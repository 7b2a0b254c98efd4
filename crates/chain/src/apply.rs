//! Executing signed transactions against the state.
//!
//! [`apply_tx`] runs one transaction inside [`BlockWriter::transaction`]:
//! it verifies the transaction against the signer's stored sequence
//! ([`SignedTx::verify`]), increments the sequence and executes the
//! message. Any failure leaves the block exactly as before (the sequence
//! included) and returns the typed error.

use crate::accounts::{self, get_account, set_account};
use crate::crypto::{Address, PublicKey};
use crate::params::Params;
use crate::proto::tx_body;
use crate::state::BlockWriter;
use crate::tx::{SignedTx, send_amount};
use crate::{Error, Result};

/// Applies `tx` (at most `max_tx_bytes` encoded) to the block `block` at `block_time_ms` on chain
/// `chain_id`. `MsgSend`: `to` must be a valid `remes` address; the amount
/// may be zero; sending to oneself is allowed (it only checks the balance
/// and advances the sequence).
pub fn apply_tx(
    block: &mut BlockWriter<'_>,
    tx: &SignedTx,
    params: &Params,
    chain_id: &str,
    block_time_ms: i64,
) -> Result<()> {
    let len = tx.encode().len();
    let max = usize::try_from(params.max_tx_bytes).unwrap_or(usize::MAX);
    if len > max {
        return Err(Error::TxTooLarge { len, max });
    }
    let proto = tx.as_proto();
    // The signer's address comes from the public key; verify checks the key
    // and the signature and that the address matches every message.
    let claimed = PublicKey::from_compressed(&proto.signer_pubkey)?.address();
    block.transaction(|t| {
        let mut acc = get_account(t, &claimed)?;
        let signer = tx.verify(
            chain_id,
            acc.sequence,
            block_time_ms,
            params.max_clock_skew_ms,
        )?;
        acc.sequence = acc.sequence.checked_add(1).ok_or(Error::SequenceOverflow)?;
        set_account(t, &signer, &acc);
        let msg = proto
            .body
            .as_ref()
            .and_then(|b| b.msg.as_ref())
            .ok_or(Error::MissingMessage)?;
        match msg {
            tx_body::Msg::Send(send) => {
                let to = Address::parse(&send.to)?;
                accounts::transfer(t, &signer, &to, send_amount(send))
            }
        }
    })
}
