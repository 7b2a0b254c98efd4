//! Data-availability challenges on gradients, replicas and pins (the seed's
//! `DataAvailabilityChallenge`, `AvailabilityChallenge`,
//! `RandomSampleDAVerification` and `VerifyDataAvailabilityResponse`, with
//! DESIGN.md decisions 2 and 4).
//!
//! - **Sampling.** The end-of-block work of block `h+1` looks at the
//!   gradients included in block `h` and challenges each one whose
//!   `sha256("r3mes-sample-v1" || hash(h+1) || CID bytes)` (first 8 bytes,
//!   big-endian) mod 1e6 is below `sample_rate_ppm`, at most
//!   `max_challenges_per_block`, in storage order (the block's gradient batches in
//!   key order, each in inclusion order). The challenger is the
//!   validator at index `sha256("r3mes-challenger-v1" || hash(h+1) || CID
//!   bytes) mod n` of the validators sorted by address (none: the slashed
//!   amount is all burned). Miners cannot predict the block hash when they
//!   submit, so they cannot know which submissions will be sampled.
//! - **Manual challenges.** Validators may challenge any stored gradient,
//!   replica or pin with `MsgIssueChallenge`.
//! - **Draws.** A challenge carries `challenge_leaves` draws
//!   `sha256("r3mes-da-draws-v1" || seed || challenge id || be32(i))` (first 8
//!   bytes), seed being the hash of the block that issued it. Draw `i` names
//!   the leaf holding byte `draw_i mod filesize` of the content.
//! - **Answer.** `MsgRespondChallenge` from the target carries those leaves
//!   and their ancestor nodes; [`r3mes_ipfs::proof::verify_proof`] hashes
//!   them up to the stored CID. A valid answer by the deadline (`challenge
//!   height + response_window`, inclusive) resolves the challenge; an invalid
//!   one is rejected and changes nothing (the target may try again until the
//!   deadline). Unlike the seed, a bad answer does not slash at once: the
//!   rejection keeps every transaction atomic, and the deadline decides.
//! - **Deadline.** The end-of-block work of the deadline block fails every
//!   challenge still pending (`fault_type = "no_response"`): the target
//!   loses `slash_availability_ppm` of its stake (for a pin, of the pin's
//!   stake, and the pin's unpaid rewards), `challenger_reward_ppm` of that
//!   goes to the challenger, the rest is burned.
//! - **Expiry.** A gradient or replica cannot be challenged once its
//!   deadline would reach its expiry height: retention drops it there and
//!   tells its holder to unpin it.
//!
//! Closed challenges stay queryable for `retention_trace_blocks`.
//!
//! Challenge id: `sha256("r3mes-challenge-v1" || be16(len(cid)) || CID bytes
//! || target || challenger || be64(height) || be32(index))`, index counting
//! the challenges of one block.

use cid::Cid;

use crate::accounts::{Store, StoreRead};
use crate::crypto::{Address, sha256};
use crate::exec::{Ctx, Events, cid_from_stored, cid_text, emit, hash_u64, parse_cid};
use crate::exec::{parse_address, require_validator, stored_address, validators};
use crate::gradients::{get_gradient, included_at};
use crate::proto::{
    Challenge, ChallengeKind, ChallengeStatus, EvChallengeClosed, EvChallengeIssued,
    MsgIssueChallenge, MsgRespondChallenge, PinningIncentive, ProofOfReplication, event,
};
use crate::staking::{slash_account, slash_pin_stake, stored_amount};
use crate::state::Key;
use crate::tables::{
    CHALLENGE, CHALLENGE_BY_CONTENT, CHALLENGE_BY_TARGET, CHALLENGE_DEADLINE, ExpiryKind,
    get_record, hex_lower, parse_hex, put_record, schedule_expiry,
};
use crate::{Error, Result};

/// The key of a challenge.
pub fn challenge_key(id: &[u8; 32]) -> Key {
    Key::new(CHALLENGE).tail(id)
}

fn deadline_key(deadline: u64, id: &[u8]) -> Key {
    Key::new(CHALLENGE_DEADLINE).u64(deadline).tail(id)
}

/// The prefix of `target`'s pending challenges.
pub fn by_target_prefix(target: &Address) -> Key {
    Key::new(CHALLENGE_BY_TARGET).tail(target.as_bytes())
}

/// The marker of challenge `id` of content `cid_bytes`. CID bytes are
/// self-delimiting, so one CID's markers never share a prefix with another's.
pub fn by_content_key(cid_bytes: &[u8], id: &[u8]) -> Key {
    Key::new(CHALLENGE_BY_CONTENT).tail(cid_bytes).tail(id)
}

fn by_target_key(target: &[u8], id: &[u8]) -> Key {
    Key::new(CHALLENGE_BY_TARGET).tail(target).tail(id)
}

/// The challenge with id `id`.
pub fn get_challenge(store: &impl StoreRead, id: &[u8; 32]) -> Result<Option<Challenge>> {
    get_record(store, &challenge_key(id))
}

/// The id of a challenge (see the module docs).
pub fn challenge_id(
    cid_bytes: &[u8],
    target: &Address,
    challenger: &[u8],
    height: u64,
    index: u32,
) -> [u8; 32] {
    let mut buf = Vec::with_capacity(128);
    buf.extend_from_slice(b"r3mes-challenge-v1");
    let len = u16::try_from(cid_bytes.len()).unwrap_or(u16::MAX);
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(cid_bytes);
    buf.extend_from_slice(target.as_bytes());
    buf.extend_from_slice(challenger);
    buf.extend_from_slice(&height.to_be_bytes());
    buf.extend_from_slice(&index.to_be_bytes());
    sha256(&buf)
}

/// The `count` draws of a challenge issued in a block with hash `seed`.
pub fn draws(seed: &[u8; 32], id: &[u8; 32], count: u32) -> Vec<u64> {
    (0..count)
        .map(|i| hash_u64(&[b"r3mes-da-draws-v1", seed, id, &i.to_be_bytes()]))
        .collect()
}

/// Creates a pending challenge and emits its event.
#[allow(clippy::too_many_arguments)]
fn create(
    store: &mut impl Store,
    ctx: &Ctx<'_>,
    kind: ChallengeKind,
    cid_bytes: &[u8],
    target: &Address,
    challenger: Option<&Address>,
    index: u32,
    events: &mut Events,
) -> Result<[u8; 32]> {
    let challenger_bytes = challenger
        .map(|c| c.as_bytes().to_vec())
        .unwrap_or_default();
    let id = challenge_id(cid_bytes, target, &challenger_bytes, ctx.height, index);
    let key = challenge_key(&id);
    if store.get(key.as_bytes())?.is_some() {
        return Err(Error::AlreadyExists(format!(
            "challenge {} (same content, target and challenger in this block)",
            hex_lower(&id)
        )));
    }
    let deadline = ctx.height.saturating_add(ctx.params.response_window);
    let draws = draws(&ctx.block_hash, &id, ctx.params.challenge_leaves);
    let record = Challenge {
        challenge_id: id.to_vec(),
        kind: kind as i32,
        ipfs_hash: cid_bytes.to_vec(),
        challenger: challenger_bytes,
        target: target.as_bytes().to_vec(),
        challenge_height: ctx.height,
        response_deadline: deadline,
        status: ChallengeStatus::Pending as i32,
        draws: draws.clone(),
        slash_amount: "0".into(),
        ..Default::default()
    };
    put_record(store, &key, &record);
    store.put(deadline_key(deadline, &id).as_bytes(), &[]);
    store.put(by_target_key(target.as_bytes(), &id).as_bytes(), &[]);
    store.put(by_content_key(cid_bytes, &id).as_bytes(), &[]);
    emit(
        events,
        event::Kind::ChallengeIssued(EvChallengeIssued {
            challenge_id: hex_lower(&id),
            kind: kind as i32,
            ipfs_hash: cid_text(cid_bytes),
            target: target.to_string(),
            challenger: challenger.map(|c| c.to_string()).unwrap_or_default(),
            response_deadline: deadline,
            draws,
        }),
    );
    Ok(id)
}

/// `MsgIssueChallenge` from validator `challenger`; returns the hex id.
pub fn issue(
    store: &mut impl Store,
    ctx: &Ctx<'_>,
    challenger: &Address,
    msg: &MsgIssueChallenge,
    events: &mut Events,
) -> Result<String> {
    require_validator(store, challenger, "issue challenges")?;
    let cid = parse_cid("ipfs_hash", &msg.ipfs_hash)?;
    let cid_bytes = cid.to_bytes();
    let kind = ChallengeKind::try_from(msg.kind)
        .map_err(|_| Error::InvalidMessage(format!("unknown challenge kind {}", msg.kind)))?;
    // Retention drops a gradient or replica (and tells holders to unpin it)
    // at its expiry height: a challenge whose deadline falls at or after it
    // would slash a holder for following the chain.
    let deadline = ctx.height.saturating_add(ctx.params.response_window);
    let outlives_deadline = |what: &str, expiry_height: u64| {
        if expiry_height <= deadline {
            return Err(Error::InvalidMessage(format!(
                "{what} {cid} expires at height {expiry_height}, before the challenge deadline {deadline} could pass"
            )));
        }
        Ok(())
    };
    let target = match kind {
        ChallengeKind::Gradient => {
            let g = get_gradient(store, &cid_bytes)?
                .ok_or_else(|| Error::NotFound(format!("gradient {cid}")))?;
            outlives_deadline("gradient", g.expiry_height)?;
            stored_address(&g.miner, "gradient miner")?
        }
        ChallengeKind::Replica => {
            let r: ProofOfReplication =
                get_record(store, &crate::replicas::replica_key(&cid_bytes))?
                    .ok_or_else(|| Error::NotFound(format!("replica {cid}")))?;
            outlives_deadline("replica", r.expiry_height)?;
            stored_address(&r.miner_address, "replica miner")?
        }
        ChallengeKind::Pin => {
            let pinner = parse_address("target", &msg.target)?;
            let key = crate::pins::pin_key(&cid_bytes, &pinner);
            let pin: Option<PinningIncentive> = get_record(store, &key)?;
            let pin = pin.ok_or_else(|| Error::NotFound(format!("pin of {cid} by {pinner}")))?;
            if pin.expiry_height <= ctx.height {
                return Err(Error::InvalidMessage(format!(
                    "pin of {cid} by {pinner} expired at height {}",
                    pin.expiry_height
                )));
            }
            pinner
        }
        ChallengeKind::Unspecified => {
            return Err(Error::InvalidMessage(
                "challenge kind is unspecified".into(),
            ));
        }
    };
    if kind != ChallengeKind::Pin && !msg.target.is_empty() {
        let named = parse_address("target", &msg.target)?;
        if named != target {
            return Err(Error::InvalidMessage(format!(
                "target {named} does not hold {cid}; its holder is {target}"
            )));
        }
    }
    let id = create(
        store,
        ctx,
        kind,
        &cid_bytes,
        &target,
        Some(challenger),
        0,
        events,
    )?;
    Ok(hex_lower(&id))
}

/// The hash recorded for an accepted answer: sha256 over the blocks, each
/// preceded by its be32 length.
pub fn response_hash(blocks: &[Vec<u8>]) -> [u8; 32] {
    let mut buf = Vec::with_capacity(blocks.iter().map(|b| b.len() + 4).sum());
    for b in blocks {
        buf.extend_from_slice(&u32::try_from(b.len()).unwrap_or(u32::MAX).to_be_bytes());
        buf.extend_from_slice(b);
    }
    sha256(&buf)
}

/// Removes the pending markers of a challenge.
fn unmark_pending(store: &mut impl Store, c: &Challenge) {
    store.delete(deadline_key(c.response_deadline, &c.challenge_id).as_bytes());
    store.delete(by_target_key(&c.target, &c.challenge_id).as_bytes());
}

fn close_event(c: &Challenge, events: &mut Events) -> Result<()> {
    emit(
        events,
        event::Kind::ChallengeClosed(EvChallengeClosed {
            challenge_id: hex_lower(&c.challenge_id),
            status: c.status,
            target: stored_address(&c.target, "challenge target")?.to_string(),
        }),
    );
    Ok(())
}

/// `MsgRespondChallenge` from `responder`.
pub fn respond(
    store: &mut impl Store,
    ctx: &Ctx<'_>,
    responder: &Address,
    msg: &MsgRespondChallenge,
    events: &mut Events,
) -> Result<()> {
    let id: [u8; 32] = parse_hex("challenge_id", &msg.challenge_id)?;
    let mut c = get_challenge(store, &id)?
        .ok_or_else(|| Error::NotFound(format!("challenge {}", msg.challenge_id)))?;
    let closed = |reason: String| Error::ChallengeClosed {
        id: msg.challenge_id.clone(),
        reason,
    };
    if c.target != responder.as_bytes() {
        return Err(Error::Unauthorized(format!(
            "only the challenge's target may answer it, not {responder}"
        )));
    }
    if c.status != ChallengeStatus::Pending as i32 {
        return Err(closed("it is no longer pending".into()));
    }
    if ctx.height > c.response_deadline {
        return Err(closed(format!(
            "its deadline was height {}",
            c.response_deadline
        )));
    }
    let root: Cid = cid_from_stored(&c.ipfs_hash)?;
    r3mes_ipfs::proof::verify_proof(
        &root,
        &c.draws,
        &msg.blocks,
        &r3mes_ipfs::proof::ProofLimits::default(),
    )
    .map_err(|e| Error::InvalidProof(e.to_string()))?;
    let hash = response_hash(&msg.blocks);
    c.status = ChallengeStatus::Resolved as i32;
    c.response_hash = hash.to_vec();
    c.response_provided = true;
    c.closed_height = ctx.height;
    unmark_pending(store, &c);
    if c.kind == ChallengeKind::Pin as i32 {
        let key = crate::pins::pin_key(&c.ipfs_hash, responder);
        if let Some(mut pin) = get_record::<PinningIncentive>(store, &key)? {
            pin.verification_proof = hash.to_vec();
            put_record(store, &key, &pin);
        }
    }
    store_closed(store, ctx, &id, &c, events)
}

/// Stores a closed challenge, queues it for removal after
/// `retention_trace_blocks` and emits its event.
fn store_closed(
    store: &mut impl Store,
    ctx: &Ctx<'_>,
    id: &[u8; 32],
    c: &Challenge,
    events: &mut Events,
) -> Result<()> {
    put_record(store, &challenge_key(id), c);
    schedule_expiry(
        store,
        ctx.height.saturating_add(ctx.params.retention_trace_blocks),
        ExpiryKind::Challenge,
        id,
    )?;
    close_event(c, events)
}

/// Fails one overdue challenge and slashes its target.
fn fail(
    store: &mut impl Store,
    ctx: &Ctx<'_>,
    mut c: Challenge,
    events: &mut Events,
) -> Result<()> {
    let target = stored_address(&c.target, "challenge target")?;
    let challenger = if c.challenger.is_empty() {
        None
    } else {
        Some(stored_address(&c.challenger, "challenger")?)
    };
    let amount = if c.kind == ChallengeKind::Pin as i32 {
        let key = crate::pins::pin_key(&c.ipfs_hash, &target);
        match get_record::<PinningIncentive>(store, &key)? {
            Some(mut pin) => {
                let stake = stored_amount(&pin.stake_amount)?;
                let (slash, rest) =
                    slash_pin_stake(store, ctx, &target, stake, challenger.as_ref(), events)?;
                pin.stake_amount = rest.to_string();
                crate::pins::forfeit_rewards(ctx.height, &target, &mut pin, events);
                put_record(store, &key, &pin);
                slash.amount
            }
            None => 0,
        }
    } else {
        slash_account(
            store,
            ctx,
            &target,
            ctx.params.slash_availability_ppm,
            challenger.as_ref(),
            "availability",
            events,
        )?
        .amount
    };
    c.status = ChallengeStatus::Failed as i32;
    c.fault_type = "no_response".into();
    c.slash_triggered = true;
    c.slash_amount = amount.to_string();
    c.closed_height = ctx.height;
    unmark_pending(store, &c);
    let id: [u8; 32] = c
        .challenge_id
        .as_slice()
        .try_into()
        .map_err(|_| Error::Store("challenge id is not 32 bytes".into()))?;
    store_closed(store, ctx, &id, &c, events)
}

/// End-of-block work: fails the pending challenges whose deadline is this
/// block or earlier (at most `max_challenge_deadlines_per_block`), then
/// samples the previous block's gradients.
pub fn end_block(store: &mut impl Store, ctx: &Ctx<'_>, events: &mut Events) -> Result<()> {
    let limit = ctx.params.max_challenge_deadlines_per_block as usize;
    let due = store.scan_prefix(&[CHALLENGE_DEADLINE], limit)?;
    for (key, _) in due {
        let (deadline, id) = key[1..]
            .split_first_chunk::<8>()
            .ok_or_else(|| Error::Store("short challenge deadline key".into()))?;
        if u64::from_be_bytes(*deadline) > ctx.height {
            break;
        }
        let id: [u8; 32] = id
            .try_into()
            .map_err(|_| Error::Store("challenge deadline key id is not 32 bytes".into()))?;
        let c = get_challenge(store, &id)?
            .ok_or_else(|| Error::Store(format!("pending challenge {} missing", hex_lower(&id))))?;
        fail(store, ctx, c, events)?;
    }
    sample(store, ctx, events)
}

/// Whether a gradient with CID bytes `cid` is sampled in a block with hash
/// `seed` at `rate_ppm`.
pub fn is_sampled(seed: &[u8; 32], cid: &[u8], rate_ppm: u64) -> bool {
    hash_u64(&[b"r3mes-sample-v1", seed, cid]) % crate::params::PPM < rate_ppm
}

/// Samples the gradients included in the previous block (see the module
/// docs; batches in key order, each in inclusion order).
fn sample(store: &mut impl Store, ctx: &Ctx<'_>, events: &mut Events) -> Result<()> {
    let Some(prev) = ctx.height.checked_sub(1) else {
        return Ok(());
    };
    let sampled = included_at(store, prev, |cid| {
        is_sampled(&ctx.block_hash, cid, ctx.params.sample_rate_ppm)
    })?;
    if sampled.is_empty() {
        return Ok(());
    }
    let validators = validators(store)?;
    let mut issued = 0u32;
    for g in sampled {
        let cid_bytes = g.ipfs_hash.as_slice();
        if issued >= ctx.params.max_challenges_per_block {
            break;
        }
        let target = stored_address(&g.miner, "gradient miner")?;
        let challenger = if validators.is_empty() {
            None
        } else {
            let pick = hash_u64(&[b"r3mes-challenger-v1", &ctx.block_hash, cid_bytes]);
            let n = validators.len() as u64;
            validators
                .get(usize::try_from(pick % n).unwrap_or(0))
                .copied()
        };
        issued += 1;
        create(
            store,
            ctx,
            ChallengeKind::Gradient,
            cid_bytes,
            &target,
            challenger.as_ref(),
            issued,
            events,
        )?;
    }
    Ok(())
}

/// Every challenge of content `cid_bytes` still stored (pending, or closed
/// less than `retention_trace_blocks` ago; at most `limit`), in id order.
pub fn of_content(
    store: &impl StoreRead,
    cid_bytes: &[u8],
    limit: usize,
) -> Result<Vec<Challenge>> {
    let prefix = Key::new(CHALLENGE_BY_CONTENT).tail(cid_bytes);
    let mut out = Vec::new();
    for (key, _) in store.scan_prefix(prefix.as_bytes(), limit)? {
        let id: [u8; 32] = key[prefix.as_bytes().len()..]
            .try_into()
            .map_err(|_| Error::Store("challenge marker id is not 32 bytes".into()))?;
        if let Some(c) = get_challenge(store, &id)? {
            out.push(c);
        }
    }
    Ok(out)
}

/// Pending challenges of `target` (at most `limit`), oldest id order.
pub fn pending_for(
    store: &impl StoreRead,
    target: &Address,
    limit: usize,
) -> Result<Vec<Challenge>> {
    let prefix = by_target_prefix(target);
    let mut out = Vec::new();
    for (key, _) in store.scan_prefix(prefix.as_bytes(), limit)? {
        let id: [u8; 32] = key[prefix.as_bytes().len()..]
            .try_into()
            .map_err(|_| Error::Store("pending challenge key id is not 32 bytes".into()))?;
        if let Some(c) = get_challenge(store, &id)? {
            out.push(c);
        }
    }
    Ok(out)
}
