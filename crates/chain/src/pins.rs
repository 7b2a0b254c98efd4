//! Pinning incentives (the seed's `PinningIncentive`).
//!
//! A pinner bonds `stake` from its balance into the pin, promises to keep
//! the content until `expiry_height`, and earns `reward_per_block` (at most
//! `max_pin_reward_per_block`) for every block from registration to expiry.
//! Only content the network keeps can be pinned for rewards: a live
//! gradient, replica, dataset or dataset shard, or a file a model version
//! or trace names ([`crate::gc::content_kept`]); rewards are minted, and
//! pins of arbitrary bytes would mint for nothing.
//!
//! Rewards are minted (the only minting besides genesis) and paid when
//! claimed and at expiry, so no per-block work is spent on pins. While the
//! pin runs, validators may challenge it ([`crate::challenges`], kind PIN);
//! a missed deadline slashes the pin's stake and forfeits the rewards
//! accrued since the last payment ([`forfeit_rewards`]): blocks in which the
//! pinner could not show the content earn nothing. At expiry the
//! end-of-block GC pays the remaining rewards, returns the remaining stake
//! and removes the pin: the obligation ends.

use crate::accounts::{Store, StoreRead, get_account, mint, set_account};
use crate::crypto::Address;
use crate::exec::{Ctx, Events, cid_text, emit, parse_cid, stored_address};
use crate::proto::{
    ChallengeKind, EvPin, MsgClaimPinRewards, MsgRegisterPin, PinningIncentive, event,
};
use crate::staking::stored_amount;
use crate::state::Key;
use crate::tables::{
    ExpiryKind, PIN, get_record, owner_key, put_record, scan_records, schedule_expiry,
};
use crate::tx::join_amount;
use crate::{Error, Result};

/// The key of a pin.
pub fn pin_key(content_cid: &[u8], pinner: &Address) -> Key {
    Key::new(PIN).tail(content_cid).tail(pinner.as_bytes())
}

/// `MsgRegisterPin` from `pinner`.
pub fn register(
    store: &mut impl Store,
    ctx: &Ctx<'_>,
    pinner: &Address,
    msg: &MsgRegisterPin,
    events: &mut Events,
) -> Result<()> {
    let cid = parse_cid("content_hash", &msg.content_hash)?;
    let stake = join_amount(msg.stake_low, msg.stake_high);
    if stake < u128::from(ctx.params.min_pin_stake) {
        return Err(Error::InvalidMessage(format!(
            "pin stake {stake} is below the minimum {}",
            ctx.params.min_pin_stake
        )));
    }
    if msg.reward_per_block > ctx.params.max_pin_reward_per_block {
        return Err(Error::InvalidMessage(format!(
            "reward_per_block {} exceeds the maximum {}",
            msg.reward_per_block, ctx.params.max_pin_reward_per_block
        )));
    }
    let latest = ctx.height.saturating_add(ctx.params.max_pin_blocks);
    if msg.expiry_height <= ctx.height || msg.expiry_height > latest {
        return Err(Error::InvalidMessage(format!(
            "expiry_height {} must be in {}..={latest}",
            msg.expiry_height,
            ctx.height + 1
        )));
    }
    let cid_bytes = cid.to_bytes();
    let key = pin_key(&cid_bytes, pinner);
    if store.get(key.as_bytes())?.is_some() {
        return Err(Error::AlreadyExists(format!("pin of {cid} by {pinner}")));
    }
    if !crate::gc::content_kept(store, &cid_bytes)? {
        return Err(Error::NotFound(format!(
            "content {cid}: no live gradient, replica, dataset, shard, model or trace names it, so pinning it earns nothing"
        )));
    }
    let mut acc = get_account(store, pinner)?;
    acc.debit(stake)?;
    set_account(store, pinner, &acc);
    let record = PinningIncentive {
        content_hash: cid_bytes.clone(),
        pinner_address: pinner.as_bytes().to_vec(),
        stake_amount: stake.to_string(),
        reward_per_block: msg.reward_per_block,
        expiry_height: msg.expiry_height,
        rewarded_height: ctx.height,
        start_height: ctx.height,
        rewards_paid: "0".into(),
        verification_proof: Vec::new(),
    };
    put_record(store, &key, &record);
    store.put(
        owner_key(pinner, ExpiryKind::Pin, &cid_bytes).as_bytes(),
        b"",
    );
    let mut id = cid_bytes;
    id.extend_from_slice(pinner.as_bytes());
    schedule_expiry(store, msg.expiry_height, ExpiryKind::Pin, &id)?;
    pin_event(events, cid.to_string(), pinner, "registered", stake);
    Ok(())
}

/// The rewards `pin` accrued from its last payment up to `min(height,
/// expiry)`; advances `rewarded_height` there, so they are settled once.
fn settle_accrued(height: u64, pin: &mut PinningIncentive) -> u128 {
    let until = height.min(pin.expiry_height);
    let blocks = until.saturating_sub(pin.rewarded_height);
    pin.rewarded_height = pin.rewarded_height.max(until);
    u128::from(blocks) * u128::from(pin.reward_per_block)
}

/// Mints the rewards `pin` accrued up to `min(height, expiry)` to the
/// pinner and advances `rewarded_height`. Returns the amount.
pub fn pay_rewards(
    store: &mut impl Store,
    height: u64,
    pinner: &Address,
    pin: &mut PinningIncentive,
    events: &mut Events,
) -> Result<u128> {
    let amount = settle_accrued(height, pin);
    if amount == 0 {
        return Ok(0);
    }
    mint(store, pinner, amount)?;
    let paid = stored_amount(&pin.rewards_paid)?
        .checked_add(amount)
        .ok_or(Error::AmountOverflow)?;
    pin.rewards_paid = paid.to_string();
    pin_event(
        events,
        cid_text(&pin.content_hash),
        pinner,
        "reward",
        amount,
    );
    Ok(amount)
}

/// Forfeits the rewards `pin` accrued since its last payment (up to
/// `min(height, expiry)`) without minting them; returns the amount.
pub fn forfeit_rewards(
    height: u64,
    pinner: &Address,
    pin: &mut PinningIncentive,
    events: &mut Events,
) -> u128 {
    let amount = settle_accrued(height, pin);
    if amount > 0 {
        let content = cid_text(&pin.content_hash);
        pin_event(events, content, pinner, "rewards_forfeited", amount);
    }
    amount
}

/// `MsgClaimPinRewards` from `pinner`.
pub fn claim(
    store: &mut impl Store,
    ctx: &Ctx<'_>,
    pinner: &Address,
    msg: &MsgClaimPinRewards,
    events: &mut Events,
) -> Result<u128> {
    let cid = parse_cid("content_hash", &msg.content_hash)?;
    let key = pin_key(&cid.to_bytes(), pinner);
    let mut pin: PinningIncentive = get_record(store, &key)?
        .ok_or_else(|| Error::NotFound(format!("pin of {cid} by {pinner}")))?;
    let amount = pay_rewards(store, ctx.height, pinner, &mut pin, events)?;
    put_record(store, &key, &pin);
    Ok(amount)
}

/// Ends a pin at expiry: pays the remaining rewards, returns the remaining
/// stake to the balance, removes the record.
pub fn expire(
    store: &mut impl Store,
    ctx: &Ctx<'_>,
    id: &[u8],
    events: &mut Events,
) -> Result<bool> {
    let Some(split) = id.len().checked_sub(20) else {
        return Err(Error::Store("pin expiry id shorter than an address".into()));
    };
    let (cid_bytes, pinner) = id.split_at(split);
    let pinner = stored_address(pinner, "pin expiry id address")?;
    let key = pin_key(cid_bytes, &pinner);
    let Some(mut pin) = get_record::<PinningIncentive>(store, &key)? else {
        return Ok(false);
    };
    if pin.expiry_height > ctx.height {
        return Ok(false);
    }
    // A challenge issued before expiry keeps the pin (and its stake) until
    // its deadline, so silence near the end is still slashed.
    let deadline = pending_pin_deadline(store, cid_bytes, &pinner)?;
    if let Some(deadline) = deadline.filter(|d| *d > ctx.height) {
        schedule_expiry(store, deadline, ExpiryKind::Pin, id)?;
        return Ok(false);
    }
    pay_rewards(store, ctx.height, &pinner, &mut pin, events)?;
    let stake = stored_amount(&pin.stake_amount)?;
    let mut acc = get_account(store, &pinner)?;
    acc.credit(stake)?;
    set_account(store, &pinner, &acc);
    store.delete(key.as_bytes());
    store.delete(owner_key(&pinner, ExpiryKind::Pin, cid_bytes).as_bytes());
    pin_event(events, cid_text(cid_bytes), &pinner, "expired", stake);
    Ok(true)
}

/// Emits `EvPin` with `action` and `amount` for `pinner`'s pin of
/// `content_hash`.
fn pin_event(
    events: &mut Events,
    content_hash: String,
    pinner: &Address,
    action: &str,
    amount: u128,
) {
    emit(
        events,
        event::Kind::Pin(EvPin {
            content_hash,
            pinner: pinner.to_string(),
            action: action.into(),
            amount: amount.to_string(),
        }),
    );
}

/// The latest deadline of the pending challenges on `pinner`'s pin of
/// `cid_bytes`.
fn pending_pin_deadline(
    store: &impl StoreRead,
    cid_bytes: &[u8],
    pinner: &Address,
) -> Result<Option<u64>> {
    // Pending challenges per target are few: at most one per block and
    // response window per challenger.
    let pending = crate::challenges::pending_for(store, pinner, usize::MAX)?;
    Ok(pending
        .iter()
        .filter(|c| c.kind == ChallengeKind::Pin as i32 && c.ipfs_hash == cid_bytes)
        .map(|c| c.response_deadline)
        .max())
}

/// Sum of the stakes held in pins (part of the total supply).
pub fn total_pin_stake(store: &impl StoreRead) -> Result<u128> {
    let mut total: u128 = 0;
    for pin in scan_records::<PinningIncentive>(store, &[PIN], usize::MAX)? {
        total = total
            .checked_add(stored_amount(&pin.stake_amount)?)
            .ok_or(Error::AmountOverflow)?;
    }
    Ok(total)
}
