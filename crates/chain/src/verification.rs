//! Tolerant-verification results (the seed's "IPFS Gradient Retrieval for
//! Tolerant Verification").
//!
//! Validators compute the cosine similarity of a miner's gradient with
//! their secret vault values off-chain and report it here as an integer
//! (parts per million) with a commitment to the vault entry used. The keeper
//! only records and applies integers: a failed result slashes the miner by
//! `slash_verification_ppm`, with the challenger share to the validator.
//! One result per (gradient, validator); it lives as long as the gradient.

use crate::accounts::Store;
use crate::crypto::Address;
use crate::exec::{Ctx, Events, emit, parse_cid, require_validator, stored_address};
use crate::gradients::get_gradient;
use crate::proto::{EvVerification, MsgSubmitVerification, VerificationResult, event};
use crate::staking::slash_account;
use crate::state::Key;
use crate::tables::{ExpiryKind, VERIFICATION, owner_key, put_record, schedule_expiry};
use crate::{Error, Result};

/// The key of a verification result.
pub fn verification_key(cid_bytes: &[u8], validator: &Address) -> Key {
    Key::new(VERIFICATION)
        .tail(cid_bytes)
        .tail(validator.as_bytes())
}

/// `MsgSubmitVerification` from `validator`.
pub fn submit(
    store: &mut impl Store,
    ctx: &Ctx<'_>,
    validator: &Address,
    msg: &MsgSubmitVerification,
    events: &mut Events,
) -> Result<()> {
    require_validator(store, validator, "submit verification results")?;
    let cid = parse_cid("ipfs_hash", &msg.ipfs_hash)?;
    if !(-1_000_000..=1_000_000).contains(&msg.cosine_ppm) {
        return Err(Error::InvalidMessage(format!(
            "cosine_ppm {} is outside [-1000000, 1000000]",
            msg.cosine_ppm
        )));
    }
    if msg.vault_commitment.len() != 32 {
        return Err(Error::InvalidMessage(format!(
            "vault_commitment is {} bytes, expected 32",
            msg.vault_commitment.len()
        )));
    }
    let cid_bytes = cid.to_bytes();
    let gradient = get_gradient(store, &cid_bytes)?
        .ok_or_else(|| Error::NotFound(format!("gradient {cid}")))?;
    let key = verification_key(&cid_bytes, validator);
    if store.get(key.as_bytes())?.is_some() {
        return Err(Error::AlreadyExists(format!(
            "verification of {cid} by {validator}"
        )));
    }
    let slashed = if msg.passed {
        0
    } else {
        let miner = stored_address(&gradient.miner, "gradient miner")?;
        slash_account(
            store,
            ctx,
            &miner,
            ctx.params.slash_verification_ppm,
            Some(validator),
            "verification",
            events,
        )?
        .amount
    };
    let record = VerificationResult {
        ipfs_hash: cid_bytes.clone(),
        validator: validator.as_bytes().to_vec(),
        cosine_ppm: msg.cosine_ppm,
        vault_commitment: msg.vault_commitment.clone(),
        passed: msg.passed,
        block_height: ctx.height,
        slash_amount: slashed.to_string(),
        expiry_height: gradient.expiry_height,
    };
    put_record(store, &key, &record);
    store.put(
        owner_key(validator, ExpiryKind::Verification, &cid_bytes).as_bytes(),
        b"",
    );
    let mut id = cid_bytes;
    id.extend_from_slice(validator.as_bytes());
    schedule_expiry(
        store,
        gradient.expiry_height.max(ctx.height + 1),
        ExpiryKind::Verification,
        &id,
    )?;
    emit(
        events,
        event::Kind::Verification(EvVerification {
            ipfs_hash: cid.to_string(),
            validator: validator.to_string(),
            cosine_ppm: msg.cosine_ppm,
            passed: msg.passed,
        }),
    );
    Ok(())
}
