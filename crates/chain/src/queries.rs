//! Read-only queries over committed state (or any [`StoreRead`] view):
//! every record kind, per-miner and per-round listings, the records an
//! address holds ([`owned`]), params, stakes and balances. Listings take a
//! limit; nothing here writes.

use crate::accounts::{Account, StoreRead, get_account, total_supply};
use crate::challenges::{get_challenge, pending_for};
use crate::crypto::Address;
use crate::datasets::get_dataset;
use crate::gradients::{get_gradient, included_at};
use crate::models::{latest_version, model_key, trace_key};
use crate::pins::pin_key;
use crate::proto::{
    Challenge, ComputationTrace, DataShard, Dataset, ModelVersion, PinningIncentive,
    ProofOfReplication, Round, StoredGradient, VerificationResult,
};
use crate::replicas::replica_key;
use crate::rounds::{assigned_shard, current_round, get_round};
use crate::state::Key;
use crate::tables::{
    DATASET, ExpiryKind, PIN, SHARD, VERIFICATION, get_record, hex_lower, owned_ids, parse_hex,
    scan_records,
};
use crate::{Error, Result};

/// An account (balance, stake, unbonding, sequence).
pub fn account(store: &impl StoreRead, address: &Address) -> Result<Account> {
    get_account(store, address)
}

/// The total supply.
pub fn supply(store: &impl StoreRead) -> Result<u128> {
    total_supply(store)
}

/// The validators, sorted by address.
pub fn validators(store: &impl StoreRead) -> Result<Vec<Address>> {
    crate::exec::validators(store)
}

/// A stored gradient by CID text.
pub fn gradient(store: &impl StoreRead, cid: &str) -> Result<Option<StoredGradient>> {
    let cid = crate::exec::parse_cid("cid", cid)?;
    get_gradient(store, &cid.to_bytes())
}

/// Gradients of `round`, optionally only `miner`'s, at most `limit`, in
/// storage order (inclusion height, then batch, then inclusion). The
/// round's blocks are read one height at a time, so the cost is the
/// round's size.
pub fn gradients_in_round(
    store: &impl StoreRead,
    round: u64,
    miner: Option<&Address>,
    limit: usize,
) -> Result<Vec<StoredGradient>> {
    let Some(r) = get_round(store, round)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for height in r.start_height.saturating_add(1)..=r.end_height {
        if out.len() >= limit {
            break;
        }
        for g in included_at(store, height, |_| true)? {
            if out.len() >= limit {
                break;
            }
            if miner.is_none_or(|m| m.as_bytes() == g.miner.as_slice()) {
                out.push(g);
            }
        }
    }
    Ok(out)
}

/// A miner's gradients over its most recent rounds, newest round first
/// (scans back from the current round, at most `max_rounds` rounds).
pub fn gradients_of_miner(
    store: &impl StoreRead,
    miner: &Address,
    max_rounds: u64,
    limit: usize,
) -> Result<Vec<StoredGradient>> {
    let current = current_round(store)?.map_or(0, |r| r.round_id);
    let mut out = Vec::new();
    let mut round = current;
    while round > 0 && current - round < max_rounds && out.len() < limit {
        out.extend(gradients_in_round(
            store,
            round,
            Some(miner),
            limit - out.len(),
        )?);
        round -= 1;
    }
    Ok(out)
}

/// The current round.
pub fn round(store: &impl StoreRead, id: Option<u64>) -> Result<Option<Round>> {
    match id {
        Some(id) => get_round(store, id),
        None => current_round(store),
    }
}

/// The shard `AssignShard` gives `address` in `round` (current if `None`).
pub fn shard_of(
    store: &impl StoreRead,
    address: &Address,
    round_id: Option<u64>,
) -> Result<(Round, u64)> {
    let r = round(store, round_id)?.ok_or_else(|| {
        Error::NotFound(match round_id {
            Some(id) => format!("round {id}"),
            None => "a started round".into(),
        })
    })?;
    let shard = assigned_shard(&r, address)?;
    Ok((r, shard))
}

/// A challenge by hex id.
pub fn challenge(store: &impl StoreRead, id_hex: &str) -> Result<Option<Challenge>> {
    let id: [u8; 32] = parse_hex("challenge_id", id_hex)?;
    get_challenge(store, &id)
}

/// Pending challenges of `target` (what a miner watches).
pub fn open_challenges(
    store: &impl StoreRead,
    target: &Address,
    limit: usize,
) -> Result<Vec<Challenge>> {
    pending_for(store, target, limit)
}

/// Every stored challenge of content `cid` (pending and recently closed).
pub fn challenges_of(store: &impl StoreRead, cid: &str, limit: usize) -> Result<Vec<Challenge>> {
    let cid = crate::exec::parse_cid("content_cid", cid)?;
    crate::challenges::of_content(store, &cid.to_bytes(), limit)
}

/// A dataset by CID text.
pub fn dataset(store: &impl StoreRead, cid: &str) -> Result<Option<Dataset>> {
    let cid = crate::exec::parse_cid("dataset_hash", cid)?;
    get_dataset(store, &cid.to_bytes())
}

/// Datasets in CID order, at most `limit`.
pub fn datasets(store: &impl StoreRead, limit: usize) -> Result<Vec<Dataset>> {
    scan_records(store, &[DATASET], limit)
}

/// The shards of a dataset, at most `limit`.
pub fn shards(store: &impl StoreRead, dataset_cid: &str, limit: usize) -> Result<Vec<DataShard>> {
    let cid = crate::exec::parse_cid("dataset_hash", dataset_cid)?.to_bytes();
    let prefix = Key::new(SHARD).tail(&cid);
    scan_records(store, prefix.as_bytes(), limit)
}

/// A replica by replica CID text.
pub fn replica(store: &impl StoreRead, cid: &str) -> Result<Option<ProofOfReplication>> {
    let cid = crate::exec::parse_cid("replica_hash", cid)?;
    get_record(store, &replica_key(&cid.to_bytes()))
}

/// A pin by content CID text and pinner.
pub fn pin(
    store: &impl StoreRead,
    cid: &str,
    pinner: &Address,
) -> Result<Option<PinningIncentive>> {
    let cid = crate::exec::parse_cid("content_hash", cid)?;
    get_record(store, &pin_key(&cid.to_bytes(), pinner))
}

/// Every pin of a content CID, at most `limit`.
pub fn pins_of(store: &impl StoreRead, cid: &str, limit: usize) -> Result<Vec<PinningIncentive>> {
    let cid = crate::exec::parse_cid("content_hash", cid)?;
    let prefix = Key::new(PIN).tail(&cid.to_bytes());
    scan_records(store, prefix.as_bytes(), limit)
}

/// Verification results of a gradient.
pub fn verifications(
    store: &impl StoreRead,
    cid: &str,
    limit: usize,
) -> Result<Vec<VerificationResult>> {
    let cid = crate::exec::parse_cid("ipfs_hash", cid)?;
    let prefix = Key::new(VERIFICATION).tail(&cid.to_bytes());
    scan_records(store, prefix.as_bytes(), limit)
}

/// A model version (the latest if `None`).
pub fn model(store: &impl StoreRead, version: Option<u64>) -> Result<Option<ModelVersion>> {
    let v = match version {
        Some(v) => v,
        None => latest_version(store)?,
    };
    get_record(store, &model_key(v))
}

/// A trace by hex id.
pub fn trace(store: &impl StoreRead, id_hex: &str) -> Result<Option<ComputationTrace>> {
    let id: [u8; 32] = parse_hex("trace_id", id_hex)?;
    get_record(store, &trace_key(&id))
}

/// Records `owner` holds, per kind, at most `limit` of each kind asked for
/// (see [`owned`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Owned {
    /// Replicas the address registered as miner.
    pub replicas: Vec<ProofOfReplication>,
    /// Pins the address bonded.
    pub pins: Vec<PinningIncentive>,
    /// Verification results the address submitted as validator.
    pub verifications: Vec<VerificationResult>,
    /// Traces the address recorded.
    pub traces: Vec<ComputationTrace>,
}

/// The live replicas, pins, verification results and traces `owner`
/// holds, through the per-owner markers (cost: what is returned, never the
/// table's size); `kinds` limits which are read (empty: all four).
pub fn owned(
    store: &impl StoreRead,
    owner: &Address,
    kinds: &[ExpiryKind],
    limit: usize,
) -> Result<Owned> {
    let wants = |kind| kinds.is_empty() || kinds.contains(&kind);
    let missing = |what: &str, id: &[u8]| {
        Error::Store(format!(
            "owner marker names a missing {what} {}",
            hex_lower(id)
        ))
    };
    let mut out = Owned::default();
    if wants(ExpiryKind::Replica) {
        for id in owned_ids(store, owner, ExpiryKind::Replica, limit)? {
            let r = get_record(store, &replica_key(&id))?;
            out.replicas.push(r.ok_or_else(|| missing("replica", &id))?);
        }
    }
    if wants(ExpiryKind::Pin) {
        for id in owned_ids(store, owner, ExpiryKind::Pin, limit)? {
            let p = get_record(store, &pin_key(&id, owner))?;
            out.pins.push(p.ok_or_else(|| missing("pin", &id))?);
        }
    }
    if wants(ExpiryKind::Verification) {
        for id in owned_ids(store, owner, ExpiryKind::Verification, limit)? {
            let key = crate::verification::verification_key(&id, owner);
            let v = get_record(store, &key)?;
            out.verifications
                .push(v.ok_or_else(|| missing("verification", &id))?);
        }
    }
    if wants(ExpiryKind::Trace) {
        for id in owned_ids(store, owner, ExpiryKind::Trace, limit)? {
            let trace_id: [u8; 32] = id
                .as_slice()
                .try_into()
                .map_err(|_| Error::Store("trace marker id is not 32 bytes".into()))?;
            let t = get_record(store, &trace_key(&trace_id))?;
            out.traces.push(t.ok_or_else(|| missing("trace", &id))?);
        }
    }
    Ok(out)
}
