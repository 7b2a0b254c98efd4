//! Executing signed transactions against the state.
//!
//! [`apply_tx`] runs one transaction inside [`BlockWriter::transaction`]:
//! it checks the size, verifies the transaction against the signer's stored
//! sequence ([`SignedTx::verify`]), increments the sequence, releases the
//! signer's matured unbonding stake and executes the message. Any failure
//! leaves the block exactly as before (the sequence included) and returns
//! the typed error; events are returned only on success.

use crate::accounts::{self, get_account, set_account};
use crate::crypto::Address;
use crate::exec::{Ctx, Events, emit};
use crate::proto::{EvTransfer, MsgSubmitGradientResponse, event, tx_body};
use crate::state::BlockWriter;
use crate::tx::{SignedTx, join_amount, send_amount};
use crate::{Error, Result};
use crate::{challenges, datasets, gradients, models, pins, replicas, staking, verification};

/// What a message returns besides its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxResponse {
    /// Nothing beyond the events.
    None,
    /// `MsgSubmitGradient`: the seed's `{ipfs_hash, block_height}`.
    SubmitGradient(MsgSubmitGradientResponse),
    /// `MsgIssueChallenge`: the hex challenge id.
    ChallengeId(String),
    /// `MsgRecordTrace`: the hex trace id.
    TraceId(String),
    /// `MsgClaimPinRewards`: the amount paid.
    Rewards(u128),
}

/// A transaction that was applied.
#[derive(Debug, Clone, PartialEq)]
pub struct TxOutcome {
    /// The signer.
    pub signer: Address,
    /// Events in order.
    pub events: Events,
    /// The message's response.
    pub response: TxResponse,
}

/// The largest encoding accepted for `tx`: `max_response_bytes` for a
/// challenge answer, `max_tx_bytes` otherwise.
pub fn size_limit(tx: &SignedTx, params: &crate::params::Params) -> usize {
    let is_response = matches!(
        tx.as_proto().body.as_ref().and_then(|b| b.msg.as_ref()),
        Some(tx_body::Msg::RespondChallenge(_))
    );
    let max = if is_response {
        params.max_response_bytes
    } else {
        params.max_tx_bytes
    };
    usize::try_from(max).unwrap_or(usize::MAX)
}

/// Applies `tx` to `block` in context `ctx` (see the module docs).
pub fn apply_tx(block: &mut BlockWriter<'_>, tx: &SignedTx, ctx: &Ctx<'_>) -> Result<TxOutcome> {
    let len = tx.encoded_len();
    let max = size_limit(tx, ctx.params);
    if len > max {
        return Err(Error::TxTooLarge { len, max });
    }
    let proto = tx.as_proto();
    // The signer's address comes from the public key; verify checks the key
    // and the signature and that the address matches the message's signer.
    let claimed = Address::of_key_bytes(&proto.signer_pubkey)?;
    block.transaction(|t| {
        let mut acc = get_account(t, &claimed)?;
        let signer = tx.verify(
            ctx.chain_id,
            acc.sequence,
            ctx.time_ms,
            ctx.params.max_clock_skew_ms,
        )?;
        acc.sequence = acc.sequence.checked_add(1).ok_or(Error::SequenceOverflow)?;
        set_account(t, &signer, &acc);
        let msg = proto
            .body
            .as_ref()
            .and_then(|b| b.msg.as_ref())
            .ok_or(Error::MissingMessage)?;
        let mut events = Events::new();
        staking::release_matured(t, ctx, &signer, &mut events)?;
        let response = execute(t, ctx, &signer, msg, &mut events)?;
        Ok(TxOutcome {
            signer,
            events,
            response,
        })
    })
}

/// Runs one message for its verified signer.
fn execute(
    t: &mut crate::state::Tx<'_, '_>,
    ctx: &Ctx<'_>,
    signer: &Address,
    msg: &tx_body::Msg,
    events: &mut Events,
) -> Result<TxResponse> {
    use tx_body::Msg;
    let none = |r: Result<()>| r.map(|()| TxResponse::None);
    match msg {
        Msg::Send(send) => {
            let to = Address::parse(&send.to)?;
            let amount = send_amount(send);
            accounts::transfer(t, signer, &to, amount)?;
            emit(
                events,
                event::Kind::Transfer(EvTransfer {
                    from: signer.to_string(),
                    to: to.to_string(),
                    amount: amount.to_string(),
                }),
            );
            Ok(TxResponse::None)
        }
        Msg::Stake(m) => none(staking::stake(
            t,
            signer,
            join_amount(m.amount_low, m.amount_high),
            events,
        )),
        Msg::Unstake(m) => none(staking::unstake(
            t,
            ctx,
            signer,
            join_amount(m.amount_low, m.amount_high),
            events,
        )),
        Msg::SubmitGradient(m) => {
            gradients::submit(t, ctx, signer, m, events).map(TxResponse::SubmitGradient)
        }
        Msg::ProposeDataset(m) => none(datasets::propose(t, ctx, signer, m, events)),
        Msg::ApproveDataset(m) => none(datasets::approve(t, ctx, signer, m, events)),
        Msg::DeactivateDataset(m) => none(datasets::deactivate(t, ctx, signer, m, events)),
        Msg::IssueChallenge(m) => {
            challenges::issue(t, ctx, signer, m, events).map(TxResponse::ChallengeId)
        }
        Msg::RespondChallenge(m) => none(challenges::respond(t, ctx, signer, m, events)),
        Msg::RegisterReplica(m) => none(replicas::register(t, ctx, signer, m, events)),
        Msg::RegisterPin(m) => none(pins::register(t, ctx, signer, m, events)),
        Msg::ClaimPinRewards(m) => pins::claim(t, ctx, signer, m, events).map(TxResponse::Rewards),
        Msg::SubmitVerification(m) => none(verification::submit(t, ctx, signer, m, events)),
        Msg::RegisterModel(m) => none(models::register_model(t, ctx, signer, m, events)),
        Msg::RecordTrace(m) => {
            models::record_trace(t, ctx, signer, m, events).map(TxResponse::TraceId)
        }
    }
}
