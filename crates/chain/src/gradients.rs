//! `MsgSubmitGradient`: the seed's `HandleMsgSubmitGradient`.
//!
//! The keeper checks the message and stores only the CID and metadata (a
//! `StoredGradient` well under 1 KB); it never fetches gradient bytes. In
//! order: the CID, the metadata (1 to `max_chunks_per_gradient` chunks of
//! exactly 2048 tokens each, every chunk in the gradient's shard and round,
//! bounded strings), the proof of work, the miner's stake, the round being
//! open, the shard being `AssignShard`'s, and the CID being new. The record
//! expires `retention_gradient_blocks` later.
//!
//! Storage: a block's records are appended to 16 batches under `(height,
//! list shard of the CID)` ([`crate::batches`], the CID as item id, the
//! record without its CID as body), so a block writes a few fresh values
//! instead of a random B-tree page per record. The batches of a height are
//! what the next block samples for availability challenges, what a round's
//! listing reads, and what retention removes: each batch is queued for
//! expiry once, when its first record arrives.
//!
//! Proof of work (hashcash): `sha256("r3mes-pow-v1" || miner (20 bytes) ||
//! CID bytes || be64(round_id) || be64(pow_nonce))` must start with
//! `pow_difficulty_bits` zero bits.

use cid::Cid;
use prost::Message;

use crate::accounts::{Store, StoreRead};
use crate::batches::{self, Item};
use crate::crypto::{Address, sha256};
use crate::exec::{Ctx, Events, check_len, emit, parse_cid, require_stake};
use crate::proto::{
    ChunkData, EvGradientStored, GradientMetadata, MsgSubmitGradient, MsgSubmitGradientResponse,
    StoredGradient, event,
};
use crate::rounds::assigned_shard;
use crate::state::Key;
use crate::tables::{ExpiryKind, GRADIENT, decode_record, list_shard, schedule_expiry};
use crate::{Error, Result};

/// Domain tag of the proof-of-work hash.
pub const POW_DOMAIN: &[u8] = b"r3mes-pow-v1";

/// Gradient formats the keeper accepts in metadata.
pub const FORMATS: [&str; 3] = ["protobuf", "safetensors", "pickle_gzip"];

/// The key of the batch of gradients included at `height` whose CIDs fall
/// in list shard `shard`.
pub fn batch_key(height: u64, shard: u8) -> Key {
    Key::new(GRADIENT).u64(height).u8(shard)
}

/// The prefix of the batches of gradients included at `height`.
pub fn batches_at(height: u64) -> Key {
    Key::new(GRADIENT).u64(height)
}

/// The record of a batch item (its CID is the item id).
fn decode_item(item: Item<'_>) -> Result<StoredGradient> {
    let mut g: StoredGradient = decode_record(item.body, "stored gradient")?;
    g.ipfs_hash = item.id.to_vec();
    Ok(g)
}

/// The stored gradient with CID bytes `cid_bytes`.
pub fn get_gradient(store: &impl StoreRead, cid_bytes: &[u8]) -> Result<Option<StoredGradient>> {
    with_body(store, cid_bytes, |body| {
        decode_item(Item {
            id: cid_bytes,
            body,
        })
    })
}

/// Whether a gradient with CID bytes `cid_bytes` is stored.
pub fn is_stored(store: &impl StoreRead, cid_bytes: &[u8]) -> Result<bool> {
    Ok(with_body(store, cid_bytes, |_| Ok(()))?.is_some())
}

/// Applies `f` to the stored body of `cid_bytes`, looked up in the batch
/// the committed index names and, inside a block, in the batch this block
/// would have added it to.
fn with_body<T>(
    store: &impl StoreRead,
    cid_bytes: &[u8],
    f: impl FnOnce(&[u8]) -> Result<T>,
) -> Result<Option<T>> {
    let committed = store.committed_batch_of(cid_bytes)?;
    let pending = store
        .writing_height()
        .map(|h| batch_key(h, list_shard(cid_bytes)).into_bytes())
        .filter(|key| Some(key) != committed.as_ref());
    for key in committed.iter().chain(pending.iter()) {
        if let Some(value) = store.get(key)?
            && let Some(body) = batches::find(&value, cid_bytes)?
        {
            return f(body).map(Some);
        }
    }
    Ok(None)
}

/// The gradients included at `height` for which `keep(CID bytes)` holds,
/// by list shard, each shard in inclusion order (only those are decoded).
pub fn included_at(
    store: &impl StoreRead,
    height: u64,
    mut keep: impl FnMut(&[u8]) -> bool,
) -> Result<Vec<StoredGradient>> {
    let mut out = Vec::new();
    for (_, value) in store.scan_prefix(batches_at(height).as_bytes(), usize::MAX)? {
        for item in batches::items(&value)? {
            if keep(item.id) {
                out.push(decode_item(item)?);
            }
        }
    }
    Ok(out)
}

/// Removes, in order, up to `budget` gradients of the batch `batch_id`
/// (`be64 height || shard`, as queued) that expire at `expiry`; the rest
/// stay. Returns the removed CIDs and whether none of those that expire
/// at `expiry` is left.
pub fn expire_batch(
    store: &mut impl Store,
    expiry: u64,
    batch_id: &[u8],
    budget: u32,
) -> Result<(Vec<Vec<u8>>, bool)> {
    let key = Key::new(GRADIENT).tail(batch_id);
    let Some(value) = store.get(key.as_bytes())? else {
        return Ok((Vec::new(), true));
    };
    let mut removed = Vec::new();
    let mut kept = Vec::new();
    let mut finished = true;
    for item in batches::items(&value)? {
        if decode_item(item)?.expiry_height != expiry {
            kept.push(item);
        } else if removed.len() < budget as usize {
            removed.push(item.id.to_vec());
        } else {
            finished = false;
            kept.push(item);
        }
    }
    if kept.is_empty() {
        store.delete(key.as_bytes());
    } else if !removed.is_empty() {
        store.put(key.as_bytes(), &batches::encode(&kept)?);
    }
    Ok((removed, finished))
}

/// The proof-of-work digest of a submission.
pub fn pow_digest(miner: &Address, cid: &Cid, round_id: u64, pow_nonce: u64) -> [u8; 32] {
    let cid_bytes = cid.to_bytes();
    let mut buf = Vec::with_capacity(POW_DOMAIN.len() + 20 + cid_bytes.len() + 16);
    buf.extend_from_slice(POW_DOMAIN);
    buf.extend_from_slice(miner.as_bytes());
    buf.extend_from_slice(&cid_bytes);
    buf.extend_from_slice(&round_id.to_be_bytes());
    buf.extend_from_slice(&pow_nonce.to_be_bytes());
    sha256(&buf)
}

/// Leading zero bits of a digest.
pub fn leading_zero_bits(digest: &[u8; 32]) -> u32 {
    let mut bits = 0;
    for b in digest {
        if *b == 0 {
            bits += 8;
        } else {
            return bits + b.leading_zeros();
        }
    }
    bits
}

/// The smallest nonce from `start` whose digest meets `difficulty_bits`
/// (what a miner runs; expected work `2^difficulty_bits` hashes).
pub fn solve_pow(
    miner: &Address,
    cid: &Cid,
    round_id: u64,
    difficulty_bits: u32,
    start: u64,
) -> u64 {
    let mut nonce = start;
    while leading_zero_bits(&pow_digest(miner, cid, round_id, nonce)) < difficulty_bits {
        nonce = nonce.wrapping_add(1);
    }
    nonce
}

/// What a gradient file is, as its submission states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GradientFacts {
    /// CID of the data chunk it was trained on.
    pub chunk: String,
    /// CID of the backbone.
    pub backbone: String,
    /// `protobuf`, `safetensors` or `pickle_gzip`.
    pub format: String,
    /// File size in bytes.
    pub byte_size: u64,
    /// Number of gradient elements.
    pub element_count: u64,
}

/// A `MsgSubmitGradient` of `miner` for the gradient `cid` trained on one
/// 2048-token chunk (id 1) of `round` and `shard` on a CPU, with its proof
/// of work solved at `difficulty_bits`.
pub fn one_chunk_submission(
    miner: &Address,
    cid: &Cid,
    round: u64,
    shard: u64,
    difficulty_bits: u32,
    facts: &GradientFacts,
) -> MsgSubmitGradient {
    MsgSubmitGradient {
        miner: miner.to_string(),
        ipfs_hash: cid.to_string(),
        metadata: Some(GradientMetadata {
            round_id: round,
            shard_id: shard,
            chunks: vec![ChunkData {
                chunk_id: 1,
                data_hash: facts.chunk.clone(),
                token_count: r3mes_protocol::chunk::FIXED_CHUNK_SIZE_TOKENS,
                shard_id: shard,
                window_id: round,
            }],
            gpu_architecture: "cpu".into(),
            backbone_hash: facts.backbone.clone(),
            format: facts.format.clone(),
            byte_size: facts.byte_size,
            element_count: facts.element_count,
        }),
        pow_nonce: solve_pow(miner, cid, round, difficulty_bits, 0),
    }
}

/// Checks the metadata's shape (no state needed).
pub fn check_metadata(ctx: &Ctx<'_>, meta: &GradientMetadata) -> Result<()> {
    let max = ctx.params.max_chunks_per_gradient as usize;
    if meta.chunks.is_empty() || meta.chunks.len() > max {
        return Err(Error::InvalidMessage(format!(
            "metadata.chunks has {} entries, expected 1 to {max}",
            meta.chunks.len()
        )));
    }
    for (i, chunk) in meta.chunks.iter().enumerate() {
        if chunk.token_count != r3mes_protocol::chunk::FIXED_CHUNK_SIZE_TOKENS {
            return Err(Error::InvalidChunkSize {
                token_count: chunk.token_count,
            });
        }
        if chunk.shard_id != meta.shard_id {
            return Err(Error::InvalidMessage(format!(
                "chunk {i} is from shard {}, the gradient's shard is {}",
                chunk.shard_id, meta.shard_id
            )));
        }
        if chunk.window_id != meta.round_id {
            return Err(Error::InvalidMessage(format!(
                "chunk {i} is for window {}, the gradient's round is {}",
                chunk.window_id, meta.round_id
            )));
        }
        parse_cid("metadata.chunks.data_hash", &chunk.data_hash)?;
    }
    check_len("metadata.gpu_architecture", &meta.gpu_architecture, 32)?;
    check_len("metadata.backbone_hash", &meta.backbone_hash, 64)?;
    if !FORMATS.contains(&meta.format.as_str()) {
        return Err(Error::InvalidMessage(format!(
            "metadata.format {:?} is not one of {FORMATS:?}",
            meta.format.chars().take(40).collect::<String>()
        )));
    }
    if meta.byte_size == 0 || meta.element_count == 0 {
        return Err(Error::InvalidMessage(
            "metadata.byte_size and metadata.element_count must be positive".into(),
        ));
    }
    Ok(())
}

/// Handles `MsgSubmitGradient` from `miner` (the verified signer).
pub fn submit(
    store: &mut impl Store,
    ctx: &Ctx<'_>,
    miner: &Address,
    msg: &MsgSubmitGradient,
    events: &mut Events,
) -> Result<MsgSubmitGradientResponse> {
    let cid = parse_cid("ipfs_hash", &msg.ipfs_hash)?;
    let meta = msg
        .metadata
        .as_ref()
        .ok_or_else(|| Error::InvalidMessage("metadata is missing".into()))?;
    check_metadata(ctx, meta)?;
    let required = ctx.params.pow_difficulty_bits;
    let found = leading_zero_bits(&pow_digest(miner, &cid, meta.round_id, msg.pow_nonce));
    if found < required {
        return Err(Error::InsufficientWork { required, found });
    }
    require_stake(store, ctx, miner, "miner")?;
    let round = match ctx.open_round {
        Some(r) if r.round_id == meta.round_id => r,
        other => {
            return Err(Error::RoundNotOpen {
                round: meta.round_id,
                current: other.map_or(0, |r| r.round_id),
            });
        }
    };
    let expected = assigned_shard(round, miner)?;
    if meta.shard_id != expected {
        return Err(Error::WrongShard {
            expected,
            found: meta.shard_id,
        });
    }
    let cid_bytes = cid.to_bytes();
    if is_stored(store, &cid_bytes)? {
        return Err(Error::AlreadyExists(format!("gradient {cid}")));
    }
    let expiry = ctx
        .height
        .saturating_add(ctx.params.retention_gradient_blocks);
    // The CID is the item id; the body leaves it out.
    let record = StoredGradient {
        miner: miner.as_bytes().to_vec(),
        ipfs_hash: Vec::new(),
        metadata: Some(meta.clone()),
        block_height: ctx.height,
        expiry_height: expiry,
    };
    let key = batch_key(ctx.height, list_shard(&cid_bytes));
    let mut batch = match store.get(key.as_bytes())? {
        Some(batch) => batch,
        None => {
            schedule_expiry(store, expiry, ExpiryKind::Gradient, &key.as_bytes()[1..])?;
            Vec::new()
        }
    };
    batches::push(&mut batch, &cid_bytes, &record.encode_to_vec())?;
    store.put(key.as_bytes(), &batch);
    emit(
        events,
        event::Kind::GradientStored(EvGradientStored {
            // parse_cid accepted only the canonical text.
            ipfs_hash: msg.ipfs_hash.clone(),
            miner: miner.to_string(),
            round_id: meta.round_id,
            shard_id: meta.shard_id,
            block_height: ctx.height,
        }),
    );
    Ok(MsgSubmitGradientResponse {
        ipfs_hash: msg.ipfs_hash.clone(),
        block_height: ctx.height,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_zero_bits_counts_across_bytes() {
        let mut d = [0u8; 32];
        assert_eq!(leading_zero_bits(&d), 256);
        d[1] = 0x10;
        assert_eq!(leading_zero_bits(&d), 11);
        d[0] = 0x80;
        assert_eq!(leading_zero_bits(&d), 0);
    }

    #[test]
    fn solved_pow_meets_difficulty() {
        let miner = Address([7; 20]);
        let cid = parse_cid("c", "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG").unwrap();
        let nonce = solve_pow(&miner, &cid, 3, 10, 0);
        assert!(leading_zero_bits(&pow_digest(&miner, &cid, 3, nonce)) >= 10);
        // Another round needs another nonce (almost surely).
        let other = solve_pow(&miner, &cid, 4, 10, 0);
        assert!(leading_zero_bits(&pow_digest(&miner, &cid, 4, other)) >= 10);
    }
}
