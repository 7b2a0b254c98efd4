//! Training rounds (windows) and shard assignment.
//!
//! A round starts in the end-of-block work of height `S` when no round is
//! open or the open one reaches its `end_height`; it stores its id, `S`,
//! the hash of block `S` and the shard count of the dataset rounds train on
//! then (`default_total_shards` while none is approved). Submissions for
//! the round are accepted in blocks `S+1 ..= S+round_length`.
//!
//! `AssignShard(wallet, block_hash, round_id, total_shards)` is the seed's
//! function ([`r3mes_protocol::shard::assign_shard`]) over the stored start
//! hash, so it answers the same at any later height.

use crate::accounts::{Store, StoreRead};
use crate::crypto::Address;
use crate::exec::{Ctx, Events, cid_text, emit};
use crate::proto::{Dataset, DatasetStatus, EvRoundStarted, Round, event};
use crate::state::Key;
use crate::tables::{
    CURRENT_ROUND, DATASET, ROUND, ROUND_DATASET, get_record, get_u64, hex_lower, put_record,
    singleton,
};
use crate::{Error, Result};

/// The key of round `id`.
pub fn round_key(id: u64) -> Key {
    Key::new(ROUND).u64(id)
}

/// The round `id`, if it exists.
pub fn get_round(store: &impl StoreRead, id: u64) -> Result<Option<Round>> {
    get_record(store, &round_key(id))
}

/// The most recently started round.
pub fn current_round(store: &impl StoreRead) -> Result<Option<Round>> {
    let id = get_u64(store, &singleton(CURRENT_ROUND))?;
    if id == 0 {
        return Ok(None);
    }
    get_round(store, id)
}

/// Whether a submission in block `height` belongs to `round`.
pub fn is_open(round: &Round, height: u64) -> bool {
    round.start_height < height && height <= round.end_height
}

/// The shard `miner` must train in `round`.
pub fn assigned_shard(round: &Round, miner: &Address) -> Result<u64> {
    r3mes_protocol::shard::assign_shard(
        &miner.to_string(),
        &round.start_block_hash,
        round.round_id,
        round.total_shards,
    )
    .map_err(|e| Error::Store(format!("round {}: {e}", round.round_id)))
}

/// The round that `height`'s submissions belong to: the open round.
pub fn open_round(store: &impl StoreRead, height: u64) -> Result<Option<Round>> {
    Ok(current_round(store)?.filter(|r| is_open(r, height)))
}

/// The dataset new rounds train on, if one is approved and active.
fn round_dataset(store: &impl StoreRead) -> Result<Option<Dataset>> {
    let Some(hash) = store.get(singleton(ROUND_DATASET).as_bytes())? else {
        return Ok(None);
    };
    let dataset: Option<Dataset> = get_record(store, &Key::new(DATASET).tail(&hash))?;
    Ok(dataset.filter(|d| d.status == DatasetStatus::Approved as i32))
}

/// End-of-block work: starts the next round when none is open past this
/// block.
pub fn end_block(store: &mut impl Store, ctx: &Ctx<'_>, events: &mut Events) -> Result<()> {
    let current = current_round(store)?;
    if let Some(r) = &current
        && ctx.height < r.end_height
    {
        return Ok(());
    }
    let id = current.map_or(1, |r| r.round_id + 1);
    let dataset = round_dataset(store)?;
    let (dataset_hash, total_shards) = match &dataset {
        Some(d) => (d.dataset_hash.clone(), d.shard_count.max(1)),
        None => (Vec::new(), ctx.params.default_total_shards),
    };
    let round = Round {
        round_id: id,
        start_height: ctx.height,
        start_block_hash: ctx.block_hash.to_vec(),
        end_height: ctx.height.saturating_add(ctx.params.round_length),
        dataset_hash: dataset_hash.clone(),
        total_shards,
    };
    put_record(store, &round_key(id), &round);
    store.put(singleton(CURRENT_ROUND).as_bytes(), &id.to_be_bytes());
    emit(
        events,
        event::Kind::RoundStarted(EvRoundStarted {
            round_id: id,
            start_height: ctx.height,
            start_block_hash: hex_lower(&ctx.block_hash),
            total_shards,
            dataset_hash: if dataset_hash.is_empty() {
                String::new()
            } else {
                cid_text(&dataset_hash)
            },
        }),
    );
    Ok(())
}
