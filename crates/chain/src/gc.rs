//! Retention and garbage collection (the seed's `DataPolicies` and
//! `PerformGarbageCollection`).
//!
//! Every record with a retention period is queued at creation under
//! `(expiry height, kind)` ([`crate::tables::schedule_expiry`]); gradients
//! are queued once per batch ([`crate::gradients`]) and a batch counts as
//! many records as it holds. The
//! end-of-block work of height `h` walks the queue in key order from the
//! oldest height up to `h` and removes at most `max_gc_per_block` records;
//! a partly processed list is written back with the rest, which the next
//! block continues. Work is proportional to what expires, never to the
//! state's size. Every removed record emits `EvRecordExpired`; a removed
//! gradient, replica, model version or trace also emits `EvUnpin` for each
//! CID it referenced that no live record references any more
//! ([`content_referenced`]: a gradient or replica with that CID, a pin of
//! it, a model version or trace naming it, a dataset or dataset shard with
//! that CID), so the node unpins content exactly when the chain stops
//! needing it. Pins end
//! their obligation ([`crate::pins::expire`]).

use crate::accounts::{Store, StoreRead};
use crate::exec::{Ctx, Events, cid_text, emit, parse_cid, stored_address};
use crate::models::{model_cids, model_key, trace_key};
use crate::proto::{
    Challenge, ComputationTrace, EvRecordExpired, EvUnpin, ModelVersion, ProofOfReplication, event,
};
use crate::replicas::replica_key;
use crate::state::Key;
use crate::tables::{
    CHALLENGE, CONTENT_REF, EXPIRY, ExpiryKind, PIN, VERIFICATION, content_ref_key, get_record,
    hex_lower, list_items, list_value, owner_key,
};
use crate::{Error, Result};

fn expired(events: &mut Events, kind: ExpiryKind, id: String) {
    emit(
        events,
        event::Kind::RecordExpired(EvRecordExpired {
            record_kind: kind.name().into(),
            id,
        }),
    );
}

/// Whether any live record references the content `cid_bytes`.
pub fn content_referenced(store: &impl StoreRead, cid_bytes: &[u8]) -> Result<bool> {
    Ok(content_kept(store, cid_bytes)?
        || !store
            .scan_prefix(Key::new(PIN).tail(cid_bytes).as_bytes(), 1)?
            .is_empty())
}

/// Whether a live record other than a pin references the content
/// `cid_bytes`: a gradient or replica with that CID, a dataset or dataset
/// shard, a model version or trace naming it. This is the content the
/// network keeps, and so the content pins are paid for.
pub fn content_kept(store: &impl StoreRead, cid_bytes: &[u8]) -> Result<bool> {
    let exists = |key: Key| -> Result<bool> { Ok(store.get(key.as_bytes())?.is_some()) };
    Ok(crate::gradients::is_stored(store, cid_bytes)?
        || exists(replica_key(cid_bytes))?
        || exists(crate::datasets::dataset_key(cid_bytes))?
        || !store
            .scan_prefix(Key::new(CONTENT_REF).tail(cid_bytes).as_bytes(), 1)?
            .is_empty())
}

/// Emits `EvUnpin` for `cid_bytes` unless a live record still references it.
fn unpin_if_unreferenced(
    store: &impl StoreRead,
    cid_bytes: &[u8],
    events: &mut Events,
) -> Result<()> {
    if !content_referenced(store, cid_bytes)? {
        emit(
            events,
            event::Kind::Unpin(EvUnpin {
                cid: cid_text(cid_bytes),
            }),
        );
    }
    Ok(())
}

/// End-of-block work: removes up to `max_gc_per_block` expired records.
/// Returns how many were processed.
pub fn end_block(store: &mut impl Store, ctx: &Ctx<'_>, events: &mut Events) -> Result<u32> {
    let mut budget = ctx.params.max_gc_per_block;
    let mut done = 0;
    while budget > 0 {
        let Some((key, value)) = store.scan_prefix(&[EXPIRY], 1)?.into_iter().next() else {
            break;
        };
        let (height, kind) = parse_key(&key)?;
        if height > ctx.height {
            break;
        }
        let items = list_items(&value)?;
        let mut finished_items = 0;
        for id in &items {
            if budget == 0 {
                break;
            }
            let (removed, finished) = if kind == ExpiryKind::Gradient {
                expire_gradients(store, height, id, budget, events)?
            } else {
                remove(store, ctx, height, kind, id, events)?;
                (1, true)
            };
            budget -= removed.min(budget);
            done += removed;
            if !finished {
                break;
            }
            finished_items += 1;
        }
        if finished_items == items.len() {
            store.delete(&key);
        } else {
            store.put(&key, &list_value(&items[finished_items..])?);
        }
    }
    Ok(done)
}

/// Removes up to `budget` gradients of one queued batch; returns how many
/// and whether the batch is done.
fn expire_gradients(
    store: &mut impl Store,
    height: u64,
    batch_id: &[u8],
    budget: u32,
    events: &mut Events,
) -> Result<(u32, bool)> {
    let (removed, finished) = crate::gradients::expire_batch(store, height, batch_id, budget)?;
    for cid in &removed {
        expired(events, ExpiryKind::Gradient, cid_text(cid));
        unpin_if_unreferenced(store, cid, events)?;
    }
    Ok((u32::try_from(removed.len()).unwrap_or(u32::MAX), finished))
}

fn parse_key(key: &[u8]) -> Result<(u64, ExpiryKind)> {
    let rest = key
        .get(1..)
        .ok_or_else(|| Error::Store("short expiry key".into()))?;
    let (height, kind) = rest
        .split_first_chunk::<8>()
        .ok_or_else(|| Error::Store("short expiry key".into()))?;
    let kind = match kind {
        [k, _shard] => ExpiryKind::from_byte(*k)?,
        _ => return Err(Error::Store("malformed expiry key".into())),
    };
    Ok((u64::from_be_bytes(*height), kind))
}

/// Removes one queued record if it still expires at `height` (a record
/// may have been removed or re-keyed since it was queued).
fn remove(
    store: &mut impl Store,
    ctx: &Ctx<'_>,
    height: u64,
    kind: ExpiryKind,
    id: &[u8],
    events: &mut Events,
) -> Result<()> {
    match kind {
        ExpiryKind::Gradient => {
            expire_gradients(store, height, id, u32::MAX, events)?;
        }
        ExpiryKind::Replica => {
            let key = replica_key(id);
            if let Some(r) = get_record::<ProofOfReplication>(store, &key)?
                && r.expiry_height == height
            {
                store.delete(key.as_bytes());
                let miner = stored_address(&r.miner_address, "replica miner")?;
                store.delete(owner_key(&miner, kind, id).as_bytes());
                expired(events, kind, cid_text(id));
                unpin_if_unreferenced(store, id, events)?;
            }
        }
        ExpiryKind::Pin => {
            if crate::pins::expire(store, ctx, id, events)? {
                expired(events, kind, hex_lower(id));
            }
        }
        ExpiryKind::Verification => {
            let key = Key::new(VERIFICATION).tail(id);
            if store.get(key.as_bytes())?.is_some() {
                store.delete(key.as_bytes());
                let split = id
                    .len()
                    .checked_sub(20)
                    .ok_or_else(|| Error::Store("verification expiry id is too short".into()))?;
                let (cid, validator) = id.split_at(split);
                let validator = stored_address(validator, "verification validator")?;
                store.delete(owner_key(&validator, kind, cid).as_bytes());
                expired(events, kind, hex_lower(id));
            }
        }
        ExpiryKind::Model => {
            let version: [u8; 8] = id
                .try_into()
                .map_err(|_| Error::Store("model expiry id is not 8 bytes".into()))?;
            let version = u64::from_be_bytes(version);
            let key = model_key(version);
            if let Some(m) = get_record::<ModelVersion>(store, &key)? {
                store.delete(key.as_bytes());
                expired(events, kind, version.to_string());
                let mut cids = Vec::new();
                for text in model_cids(&m) {
                    let cid = parse_cid("model", &text)?.to_bytes();
                    store.delete(content_ref_key(&cid, kind, id).as_bytes());
                    if !cids.contains(&cid) {
                        cids.push(cid);
                    }
                }
                for cid in cids {
                    unpin_if_unreferenced(store, &cid, events)?;
                }
            }
        }
        ExpiryKind::Trace => {
            let trace_id: [u8; 32] = id
                .try_into()
                .map_err(|_| Error::Store("trace expiry id is not 32 bytes".into()))?;
            let key = trace_key(&trace_id);
            if let Some(t) = get_record::<ComputationTrace>(store, &key)? {
                store.delete(key.as_bytes());
                store.delete(content_ref_key(&t.trace_hash, kind, id).as_bytes());
                let submitter = stored_address(&t.submitter, "trace submitter")?;
                store.delete(owner_key(&submitter, kind, id).as_bytes());
                expired(events, kind, hex_lower(id));
                unpin_if_unreferenced(store, &t.trace_hash, events)?;
            }
        }
        ExpiryKind::Challenge => {
            let key = Key::new(CHALLENGE).tail(id);
            if let Some(c) = get_record::<Challenge>(store, &key)? {
                store.delete(key.as_bytes());
                store.delete(crate::challenges::by_content_key(&c.ipfs_hash, id).as_bytes());
                expired(events, kind, hex_lower(id));
            }
        }
    }
    Ok(())
}
