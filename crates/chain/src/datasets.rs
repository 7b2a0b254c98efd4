//! Dataset governance (the seed's `DatasetMetadata`, `ApprovedDataset` and
//! `DataShard`).
//!
//! Anyone with stake proposes a dataset: its CID, the provider-signed
//! metadata and one CID per shard. Validators approve it; with
//! `dataset_approvals` approvals it enters the approved registry
//! (`status = APPROVED`, `approval_height` set on it and its shards) and
//! becomes the dataset that new rounds train on (its shard count drives
//! `AssignShard`). A validator can deactivate it later; rounds then fall
//! back to the most recently approved dataset still active, or to
//! `default_total_shards` when there is none.
//!
//! Provider sign bytes ([`dataset_sign_bytes`]):
//! `"r3mes-dataset-v1" || 0x00 || be32(len(dataset CID)) || dataset CID bytes
//! || be32(len(m)) || m || be32(shard count) || for each shard: be32(len) ||
//! shard CID bytes`, where `m` is the canonical protobuf encoding of the
//! `DatasetMetadata` with `signature` empty and `quality_ppm` 0. The
//! signature is ECDSA secp256k1 over SHA-256 of these bytes, 64 bytes r || s,
//! low-S (as for transactions), by the key in `provider_pubkey`, whose
//! address must be `provider`.

use cid::Cid;
use prost::Message;

use crate::accounts::{Store, StoreRead};
use crate::crypto::{Address, PublicKey, SecretKey, Signature};
use crate::exec::{
    Ctx, Events, check_len, emit, parse_address, parse_cid, require_stake, require_validator,
};
use crate::proto::{
    DataShard, Dataset, DatasetMetadata, DatasetStatus, EvDataset, MsgApproveDataset,
    MsgDeactivateDataset, MsgProposeDataset, event,
};
use crate::state::Key;
use crate::tables::{
    DATASET, ROUND_DATASET, SHARD, get_record, put_record, scan_records, shard_ref_key, singleton,
};
use crate::{Error, Result};

/// Most shards one dataset may have.
pub const MAX_SHARDS: usize = 4096;
/// Data types the seed names.
pub const DATA_TYPES: [&str; 3] = ["text", "image", "audio"];

/// The key of a dataset.
pub fn dataset_key(cid_bytes: &[u8]) -> Key {
    Key::new(DATASET).tail(cid_bytes)
}

/// The key of a shard.
pub fn shard_key(dataset: &[u8], shard_id: u64) -> Key {
    Key::new(SHARD).tail(dataset).u64(shard_id)
}

/// The dataset with CID bytes `cid_bytes`.
pub fn get_dataset(store: &impl StoreRead, cid_bytes: &[u8]) -> Result<Option<Dataset>> {
    get_record(store, &dataset_key(cid_bytes))
}

fn push_len_prefixed(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

/// The bytes a provider signs (see the module docs).
pub fn dataset_sign_bytes(dataset: &Cid, metadata: &DatasetMetadata, shards: &[Cid]) -> Vec<u8> {
    let mut unsigned = metadata.clone();
    unsigned.signature.clear();
    unsigned.quality_ppm = 0;
    let mut out = b"r3mes-dataset-v1\0".to_vec();
    push_len_prefixed(&mut out, &dataset.to_bytes());
    push_len_prefixed(&mut out, &unsigned.encode_to_vec());
    let count = u32::try_from(shards.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&count.to_be_bytes());
    for s in shards {
        push_len_prefixed(&mut out, &s.to_bytes());
    }
    out
}

/// Fills `provider`, `provider_pubkey` and `signature` of `metadata` for
/// `key` (what a provider's tool runs).
pub fn sign_dataset(
    key: &SecretKey,
    dataset: &Cid,
    metadata: &mut DatasetMetadata,
    shards: &[Cid],
) -> Result<()> {
    let public = key.public_key();
    metadata.provider = public.address().to_string();
    metadata.provider_pubkey = public.to_bytes().to_vec();
    let sig = key.sign(&dataset_sign_bytes(dataset, metadata, shards))?;
    metadata.signature = sig.0.to_vec();
    Ok(())
}

fn check_metadata(meta: &DatasetMetadata, shards: usize) -> Result<()> {
    if meta.name.is_empty() {
        return Err(Error::InvalidMessage("metadata.name is empty".into()));
    }
    check_len("metadata.name", &meta.name, 128)?;
    check_len("metadata.description", &meta.description, 4096)?;
    check_len("metadata.license", &meta.license, 128)?;
    if !DATA_TYPES.contains(&meta.data_type.as_str()) {
        return Err(Error::InvalidMessage(format!(
            "metadata.data_type must be one of {DATA_TYPES:?}"
        )));
    }
    if meta.tags.len() > 32 {
        return Err(Error::InvalidMessage(
            "metadata.tags has more than 32 entries".into(),
        ));
    }
    for t in &meta.tags {
        check_len("metadata.tags", t, 64)?;
    }
    if meta.shard_count == 0 || meta.shard_count != shards as u64 {
        return Err(Error::InvalidMessage(format!(
            "metadata.shard_count is {} but {shards} shard CIDs are given (at least 1)",
            meta.shard_count
        )));
    }
    if shards > MAX_SHARDS {
        return Err(Error::InvalidMessage(format!(
            "{shards} shards, at most {MAX_SHARDS}"
        )));
    }
    if meta.quality_ppm != 0 {
        return Err(Error::InvalidMessage(
            "metadata.quality_ppm is set by governance on approval; propose with 0".into(),
        ));
    }
    Ok(())
}

/// `MsgProposeDataset` from `proposer`.
pub fn propose(
    store: &mut impl Store,
    ctx: &Ctx<'_>,
    proposer: &Address,
    msg: &MsgProposeDataset,
    events: &mut Events,
) -> Result<()> {
    let dataset = parse_cid("dataset_hash", &msg.dataset_hash)?;
    let meta = msg
        .metadata
        .as_ref()
        .ok_or_else(|| Error::InvalidMessage("metadata is missing".into()))?;
    check_metadata(meta, msg.shard_cids.len())?;
    check_len("schema", &msg.schema, 128)?;
    let shards = msg
        .shard_cids
        .iter()
        .map(|s| parse_cid("shard_cids", s))
        .collect::<Result<Vec<_>>>()?;
    let provider = parse_address("metadata.provider", &meta.provider)?;
    let key = PublicKey::from_compressed(&meta.provider_pubkey)?;
    if key.address() != provider {
        return Err(Error::InvalidMessage(format!(
            "metadata.provider_pubkey belongs to {}, not the provider {provider}",
            key.address()
        )));
    }
    let sig = Signature::from_slice(&meta.signature)?;
    key.verify(&dataset_sign_bytes(&dataset, meta, &shards), &sig)?;
    require_stake(store, ctx, proposer, "proposer")?;
    let cid_bytes = dataset.to_bytes();
    if get_dataset(store, &cid_bytes)?.is_some() {
        return Err(Error::AlreadyExists(format!("dataset {dataset}")));
    }
    let record = Dataset {
        dataset_hash: cid_bytes.clone(),
        metadata: Some(meta.clone()),
        proposer: proposer.as_bytes().to_vec(),
        proposal_height: ctx.height,
        approvals: Vec::new(),
        approval_height: 0,
        shard_count: meta.shard_count,
        status: DatasetStatus::Proposed as i32,
        schema: msg.schema.clone(),
    };
    put_record(store, &dataset_key(&cid_bytes), &record);
    for (i, shard) in shards.iter().enumerate() {
        let shard_id = i as u64;
        let rec = DataShard {
            shard_id,
            dataset_hash: cid_bytes.clone(),
            data_hash: shard.to_bytes(),
            schema: msg.schema.clone(),
            approval_height: 0,
        };
        put_record(store, &shard_key(&cid_bytes, shard_id), &rec);
        store.put(
            shard_ref_key(&rec.data_hash, &cid_bytes, shard_id).as_bytes(),
            b"",
        );
    }
    dataset_event(events, &dataset, "proposed", proposer);
    Ok(())
}

fn dataset_event(events: &mut Events, dataset: &Cid, action: &str, actor: &Address) {
    emit(
        events,
        event::Kind::Dataset(EvDataset {
            dataset_hash: dataset.to_string(),
            action: action.into(),
            actor: actor.to_string(),
        }),
    );
}

/// `MsgApproveDataset` from `validator`.
pub fn approve(
    store: &mut impl Store,
    ctx: &Ctx<'_>,
    validator: &Address,
    msg: &MsgApproveDataset,
    events: &mut Events,
) -> Result<()> {
    require_validator(store, validator, "approve datasets")?;
    let dataset = parse_cid("dataset_hash", &msg.dataset_hash)?;
    if msg.quality_ppm > crate::params::PPM {
        return Err(Error::InvalidMessage(format!(
            "quality_ppm {} exceeds 1000000",
            msg.quality_ppm
        )));
    }
    let cid_bytes = dataset.to_bytes();
    let mut record = get_dataset(store, &cid_bytes)?
        .ok_or_else(|| Error::NotFound(format!("dataset {dataset}")))?;
    if record.status != DatasetStatus::Proposed as i32 {
        return Err(Error::InvalidMessage(format!(
            "dataset {dataset} is not awaiting approval"
        )));
    }
    if record.approvals.iter().any(|a| a == validator.as_bytes()) {
        return Err(Error::AlreadyExists(format!(
            "approval of {dataset} by {validator}"
        )));
    }
    let n = record.approvals.len() as u64;
    if let Some(meta) = record.metadata.as_mut() {
        // Running mean of the approvals' quality scores, rounded down.
        meta.quality_ppm = (meta.quality_ppm * n + msg.quality_ppm) / (n + 1);
    }
    record.approvals.push(validator.as_bytes().to_vec());
    dataset_event(events, &dataset, "approval", validator);
    if record.approvals.len() >= ctx.params.dataset_approvals as usize {
        record.status = DatasetStatus::Approved as i32;
        record.approval_height = ctx.height;
        for shard_id in 0..record.shard_count {
            let key = shard_key(&cid_bytes, shard_id);
            if let Some(mut shard) = get_record::<DataShard>(store, &key)? {
                shard.approval_height = ctx.height;
                put_record(store, &key, &shard);
            }
        }
        store.put(singleton(ROUND_DATASET).as_bytes(), &cid_bytes);
        dataset_event(events, &dataset, "approved", validator);
    }
    put_record(store, &dataset_key(&cid_bytes), &record);
    Ok(())
}

/// The CID bytes of the most recently approved dataset still active (ties:
/// the larger CID), which rounds fall back to when theirs is deactivated.
fn latest_approved(store: &impl StoreRead) -> Result<Option<Vec<u8>>> {
    let mut best: Option<(u64, Vec<u8>)> = None;
    for d in scan_records::<Dataset>(store, &[DATASET], usize::MAX)? {
        if d.status == DatasetStatus::Approved as i32 {
            let candidate = (d.approval_height, d.dataset_hash);
            if best.as_ref().is_none_or(|b| candidate > *b) {
                best = Some(candidate);
            }
        }
    }
    Ok(best.map(|(_, hash)| hash))
}

/// `MsgDeactivateDataset` from `validator`.
pub fn deactivate(
    store: &mut impl Store,
    _ctx: &Ctx<'_>,
    validator: &Address,
    msg: &MsgDeactivateDataset,
    events: &mut Events,
) -> Result<()> {
    require_validator(store, validator, "deactivate datasets")?;
    let dataset = parse_cid("dataset_hash", &msg.dataset_hash)?;
    let cid_bytes = dataset.to_bytes();
    let mut record = get_dataset(store, &cid_bytes)?
        .ok_or_else(|| Error::NotFound(format!("dataset {dataset}")))?;
    if record.status != DatasetStatus::Approved as i32 {
        return Err(Error::InvalidMessage(format!(
            "dataset {dataset} is not an active approved dataset"
        )));
    }
    record.status = DatasetStatus::Inactive as i32;
    put_record(store, &dataset_key(&cid_bytes), &record);
    if store.get(singleton(ROUND_DATASET).as_bytes())?.as_deref() == Some(cid_bytes.as_slice()) {
        match latest_approved(store)? {
            Some(other) => store.put(singleton(ROUND_DATASET).as_bytes(), &other),
            None => store.delete(singleton(ROUND_DATASET).as_bytes()),
        }
    }
    dataset_event(events, &dataset, "deactivated", validator);
    Ok(())
}
