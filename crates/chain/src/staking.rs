//! Bonding, unbonding and slashing.
//!
//! Stake bonds from the balance (`MsgStake`); `MsgUnstake` moves it to
//! *unbonding*, where it stays slashable for `unbonding_blocks` and then
//! returns to the balance the next time the account signs a transaction
//! ([`release_matured`]). Slashing takes a share of stake plus unbonding
//! (stake first), credits `challenger_reward_ppm` of it to a beneficiary and
//! burns the rest, lowering the total supply by exactly the burned amount.

use crate::accounts::{Store, get_account, set_account, total_supply};
use crate::crypto::Address;
use crate::exec::{Ctx, Events, emit, ppm_of};
use crate::proto::{EvSlashed, EvStake, event};
use crate::{Error, Result};

/// `MsgStake`: moves `amount` from the balance to the stake.
pub fn stake(
    store: &mut impl Store,
    who: &Address,
    amount: u128,
    events: &mut Events,
) -> Result<()> {
    let mut acc = get_account(store, who)?;
    acc.debit(amount)?;
    acc.stake = acc.stake.checked_add(amount).ok_or(Error::AmountOverflow)?;
    set_account(store, who, &acc);
    emit(
        events,
        event::Kind::Stake(EvStake {
            address: who.to_string(),
            action: "bond".into(),
            amount: amount.to_string(),
        }),
    );
    Ok(())
}

/// `MsgUnstake`: moves `amount` of stake to unbonding, released
/// `unbonding_blocks` after this block (a later unstake restarts the
/// wait for the whole unbonding amount).
pub fn unstake(
    store: &mut impl Store,
    ctx: &Ctx<'_>,
    who: &Address,
    amount: u128,
    events: &mut Events,
) -> Result<()> {
    let mut acc = get_account(store, who)?;
    acc.stake = acc.stake.checked_sub(amount).ok_or_else(|| {
        Error::InvalidMessage(format!("unstake of {amount} exceeds stake {}", acc.stake))
    })?;
    acc.unbonding = acc
        .unbonding
        .checked_add(amount)
        .ok_or(Error::AmountOverflow)?;
    acc.unbonding_release_height = ctx.height.saturating_add(ctx.params.unbonding_blocks);
    set_account(store, who, &acc);
    emit(
        events,
        event::Kind::Stake(EvStake {
            address: who.to_string(),
            action: "unbond".into(),
            amount: amount.to_string(),
        }),
    );
    Ok(())
}

/// Returns matured unbonding stake of `who` to its balance.
pub fn release_matured(
    store: &mut impl Store,
    ctx: &Ctx<'_>,
    who: &Address,
    events: &mut Events,
) -> Result<()> {
    let mut acc = get_account(store, who)?;
    if acc.unbonding == 0 || ctx.height < acc.unbonding_release_height {
        return Ok(());
    }
    let amount = acc.unbonding;
    acc.credit(amount)?;
    acc.unbonding = 0;
    acc.unbonding_release_height = 0;
    set_account(store, who, &acc);
    emit(
        events,
        event::Kind::Stake(EvStake {
            address: who.to_string(),
            action: "release".into(),
            amount: amount.to_string(),
        }),
    );
    Ok(())
}

/// What a slash did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Slash {
    /// Total taken.
    pub amount: u128,
    /// Credited to the beneficiary.
    pub to_beneficiary: u128,
    /// Burned.
    pub burned: u128,
}

/// Splits `amount` into the beneficiary's share and the burned rest.
fn split(ctx: &Ctx<'_>, amount: u128, has_beneficiary: bool) -> Slash {
    let to_beneficiary = if has_beneficiary {
        ppm_of(amount, ctx.params.challenger_reward_ppm)
    } else {
        0
    };
    Slash {
        amount,
        to_beneficiary,
        burned: amount - to_beneficiary,
    }
}

/// Credits the beneficiary, burns the rest and emits the event.
fn settle(
    store: &mut impl Store,
    victim: &Address,
    slash: Slash,
    beneficiary: Option<&Address>,
    reason: &str,
    events: &mut Events,
) -> Result<()> {
    if let Some(b) = beneficiary {
        let mut acc = get_account(store, b)?;
        acc.credit(slash.to_beneficiary)?;
        set_account(store, b, &acc);
    }
    let supply = total_supply(store)?
        .checked_sub(slash.burned)
        .ok_or_else(|| Error::Store("total supply below a slashed amount".into()))?;
    store.put(
        crate::accounts::supply_key().as_bytes(),
        &supply.to_be_bytes(),
    );
    emit(
        events,
        event::Kind::Slashed(EvSlashed {
            address: victim.to_string(),
            amount: slash.amount.to_string(),
            to_beneficiary: slash.to_beneficiary.to_string(),
            beneficiary: beneficiary.map(|b| b.to_string()).unwrap_or_default(),
            burned: slash.burned.to_string(),
            reason: reason.to_owned(),
        }),
    );
    Ok(())
}

/// Slashes `ppm` of `victim`'s stake plus unbonding (stake first).
pub fn slash_account(
    store: &mut impl Store,
    ctx: &Ctx<'_>,
    victim: &Address,
    ppm: u64,
    beneficiary: Option<&Address>,
    reason: &str,
    events: &mut Events,
) -> Result<Slash> {
    let mut acc = get_account(store, victim)?;
    let bonded = acc
        .stake
        .checked_add(acc.unbonding)
        .ok_or(Error::AmountOverflow)?;
    let amount = ppm_of(bonded, ppm);
    let from_stake = amount.min(acc.stake);
    acc.stake -= from_stake;
    acc.unbonding -= amount - from_stake;
    set_account(store, victim, &acc);
    let slash = split(ctx, amount, beneficiary.is_some());
    settle(store, victim, slash, beneficiary, reason, events)?;
    Ok(slash)
}

/// Slashes `ppm` of a pin's own stake `pin_stake` (held in the pin record,
/// which the caller updates with the returned remainder).
pub fn slash_pin_stake(
    store: &mut impl Store,
    ctx: &Ctx<'_>,
    pinner: &Address,
    pin_stake: u128,
    beneficiary: Option<&Address>,
    events: &mut Events,
) -> Result<(Slash, u128)> {
    let amount = ppm_of(pin_stake, ctx.params.slash_availability_ppm);
    let slash = split(ctx, amount, beneficiary.is_some());
    settle(
        store,
        pinner,
        slash,
        beneficiary,
        "pin_availability",
        events,
    )?;
    Ok((slash, pin_stake - amount))
}

/// Decodes a decimal amount stored in a record.
pub fn stored_amount(s: &str) -> Result<u128> {
    if s.is_empty() {
        return Ok(0);
    }
    s.parse::<u128>()
        .map_err(|_| Error::Store(format!("stored amount {s:?} is not a u128")))
}
