//! Proof of Replication records (the seed's `ProofOfReplication`).
//!
//! A miner registers a replica of some data: the data XORed with a ChaCha20
//! keystream keyed by its replication id `sha256(miner address || data CID
//! bytes)` ([`r3mes_protocol::replica`]), so each miner's replica is
//! different content with its own CID. The keeper checks the replication id
//! and stores the record; the Merkle and storage proofs of the seed come as
//! answers to availability challenges on the replica CID
//! ([`crate::challenges`]).
//!
//! What this proves: a miner that answers challenges on its replica holds,
//! or can produce within the response window, the challenged replica
//! leaves; and replicas of different miners cannot be served from one
//! shared copy by CID. What it does not prove: the encoding is fast and
//! public, so a miner that keeps only the original data (or fetches it) can
//! regenerate any challenged replica leaf on demand. Without slow sealing
//! this is not a time-hard proof that a distinct physical copy is stored.
//! The keeper never sees the bytes, so it cannot check that the replica CID
//! really is the encoded data; a validator can, off-chain, and challenge.

use crate::accounts::Store;
use crate::crypto::Address;
use crate::exec::{Ctx, Events, emit, parse_cid, require_stake};
use crate::proto::{EvReplicaRegistered, MsgRegisterReplica, ProofOfReplication, event};
use crate::state::Key;
use crate::tables::{ExpiryKind, REPLICA, owner_key, parse_hex, put_record, schedule_expiry};
use crate::{Error, Result};

/// The key of a replica record.
pub fn replica_key(replica_cid: &[u8]) -> Key {
    Key::new(REPLICA).tail(replica_cid)
}

/// `MsgRegisterReplica` from `miner`.
pub fn register(
    store: &mut impl Store,
    ctx: &Ctx<'_>,
    miner: &Address,
    msg: &MsgRegisterReplica,
    events: &mut Events,
) -> Result<()> {
    let data = parse_cid("data_hash", &msg.data_hash)?;
    let replica = parse_cid("replica_hash", &msg.replica_hash)?;
    if data == replica {
        return Err(Error::InvalidMessage(
            "replica_hash equals data_hash: a replica must be encoded".into(),
        ));
    }
    let claimed: [u8; 32] = parse_hex("replication_id", &msg.replication_id)?;
    let data_bytes = data.to_bytes();
    let expected = r3mes_protocol::replica::replication_id(&miner.to_string(), &data_bytes);
    if claimed != expected {
        return Err(Error::InvalidMessage(
            "replication_id is not sha256(miner || data CID bytes)".into(),
        ));
    }
    require_stake(store, ctx, miner, "miner")?;
    let replica_bytes = replica.to_bytes();
    let key = replica_key(&replica_bytes);
    if store.get(key.as_bytes())?.is_some() {
        return Err(Error::AlreadyExists(format!("replica {replica}")));
    }
    let expiry = ctx
        .height
        .saturating_add(ctx.params.retention_gradient_blocks);
    let record = ProofOfReplication {
        data_hash: data_bytes,
        replica_hash: replica_bytes.clone(),
        replication_id: expected.to_vec(),
        miner_address: miner.as_bytes().to_vec(),
        timestamp_ms: ctx.time_ms,
        block_height: ctx.height,
        expiry_height: expiry,
    };
    put_record(store, &key, &record);
    store.put(
        owner_key(miner, ExpiryKind::Replica, &replica_bytes).as_bytes(),
        b"",
    );
    schedule_expiry(store, expiry, ExpiryKind::Replica, &replica_bytes)?;
    emit(
        events,
        event::Kind::ReplicaRegistered(EvReplicaRegistered {
            data_hash: data.to_string(),
            replica_hash: replica.to_string(),
            miner: miner.to_string(),
        }),
    );
    Ok(())
}
