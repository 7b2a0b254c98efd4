//! Model versions (the seed's `BitNetModel` metadata) and computation
//! traces.
//!
//! A model version names its frozen backbone, its LoRA adapters (rank 4 to
//! 64, fp16 or fp32), the training state and metadata by CID, with a
//! checksum; versions strictly increase and only validators register them
//! (the aggregator runs as a node role). Models are checkpoints: they are
//! kept `retention_checkpoint_blocks`. Traces are kept
//! `retention_trace_blocks`.

use crate::accounts::{Store, StoreRead};
use crate::crypto::{Address, sha256};
use crate::exec::{Ctx, Events, check_len, emit, parse_cid, require_validator};
use crate::proto::{
    ComputationTrace, EvModelRegistered, EvTraceRecorded, ModelVersion, MsgRecordTrace,
    MsgRegisterModel, Round, event,
};
use crate::state::Key;
use crate::tables::{
    ExpiryKind, LATEST_MODEL, MODEL, TRACE, content_ref_key, get_record, get_u64, hex_lower,
    owner_key, put_record, schedule_expiry, singleton,
};
use crate::{Error, Result};

/// Most adapters one model version may list.
pub const MAX_ADAPTERS: usize = 256;

/// The key of model version `version`.
pub fn model_key(version: u64) -> Key {
    Key::new(MODEL).u64(version)
}

/// The key of a trace.
pub fn trace_key(id: &[u8; 32]) -> Key {
    Key::new(TRACE).tail(id)
}

/// The latest registered model version (0 if none).
pub fn latest_version(store: &impl StoreRead) -> Result<u64> {
    get_u64(store, &singleton(LATEST_MODEL))
}

/// Versions walked down from the latest when looking for a round's model.
pub const MAX_MODEL_WALK: u64 = 10_000;

/// The model version `round` trains from: the newest version registered at or
/// before the round's start height (what miners, validators and aggregators
/// all use), or `None` if there is none (or it has expired). Walks down from
/// the latest version, at most [`MAX_MODEL_WALK`] versions.
pub fn model_for_round(store: &impl StoreRead, round: &Round) -> Result<Option<ModelVersion>> {
    let latest = latest_version(store)?;
    for version in (1..=latest).rev().take(MAX_MODEL_WALK as usize) {
        if let Some(model) = get_record::<ModelVersion>(store, &model_key(version))?
            && model.block_height <= round.start_height
        {
            return Ok(Some(model));
        }
    }
    Ok(None)
}

/// Every CID a model version references.
pub fn model_cids(model: &ModelVersion) -> Vec<String> {
    let mut cids = vec![model.backbone_hash.clone()];
    cids.extend(model.lora_adapters.iter().map(|a| a.adapter_hash.clone()));
    for extra in [&model.training_state_hash, &model.metadata_hash] {
        if !extra.is_empty() {
            cids.push(extra.clone());
        }
    }
    cids
}

/// `MsgRegisterModel` from `authority`.
pub fn register_model(
    store: &mut impl Store,
    ctx: &Ctx<'_>,
    authority: &Address,
    msg: &MsgRegisterModel,
    events: &mut Events,
) -> Result<()> {
    require_validator(store, authority, "register model versions")?;
    let mut model = msg
        .model
        .clone()
        .ok_or_else(|| Error::InvalidMessage("model is missing".into()))?;
    let latest = latest_version(store)?;
    if model.version <= latest {
        return Err(Error::InvalidMessage(format!(
            "model version {} must exceed the latest version {latest}",
            model.version
        )));
    }
    parse_cid("model.backbone_hash", &model.backbone_hash)?;
    if model.lora_adapters.len() > MAX_ADAPTERS {
        return Err(Error::InvalidMessage(format!(
            "{} LoRA adapters, at most {MAX_ADAPTERS}",
            model.lora_adapters.len()
        )));
    }
    for a in &model.lora_adapters {
        check_len("lora_adapters.layer_id", &a.layer_id, 128)?;
        if !(4..=64).contains(&a.rank) {
            return Err(Error::InvalidMessage(format!(
                "adapter {}: rank {} is outside 4..=64",
                a.layer_id, a.rank
            )));
        }
        if a.precision != "fp16" && a.precision != "fp32" {
            return Err(Error::InvalidMessage(format!(
                "adapter {}: precision must be fp16 or fp32",
                a.layer_id
            )));
        }
        parse_cid("lora_adapters.adapter_hash", &a.adapter_hash)?;
    }
    if !model.training_state_hash.is_empty() {
        parse_cid("model.training_state_hash", &model.training_state_hash)?;
    }
    if !model.metadata_hash.is_empty() {
        parse_cid("model.metadata_hash", &model.metadata_hash)?;
    }
    if model.checksum.len() > 64 {
        return Err(Error::InvalidMessage(
            "model.checksum exceeds 64 bytes".into(),
        ));
    }
    model.block_height = ctx.height;
    model.expiry_height = ctx
        .height
        .saturating_add(ctx.params.retention_checkpoint_blocks);
    put_record(store, &model_key(model.version), &model);
    for cid in model_cids(&model) {
        let cid = parse_cid("model", &cid)?.to_bytes();
        let key = content_ref_key(&cid, ExpiryKind::Model, &model.version.to_be_bytes());
        store.put(key.as_bytes(), &[]);
    }
    store.put(
        singleton(LATEST_MODEL).as_bytes(),
        &model.version.to_be_bytes(),
    );
    schedule_expiry(
        store,
        model.expiry_height,
        ExpiryKind::Model,
        &model.version.to_be_bytes(),
    )?;
    emit(
        events,
        event::Kind::ModelRegistered(EvModelRegistered {
            version: model.version,
            backbone_hash: model.backbone_hash.clone(),
        }),
    );
    Ok(())
}

/// The id of a trace: `sha256(trace CID bytes || submitter)`.
pub fn trace_id(trace_cid: &[u8], submitter: &Address) -> [u8; 32] {
    let mut buf = trace_cid.to_vec();
    buf.extend_from_slice(submitter.as_bytes());
    sha256(&buf)
}

/// `MsgRecordTrace` from `submitter`; returns the hex trace id.
pub fn record_trace(
    store: &mut impl Store,
    ctx: &Ctx<'_>,
    submitter: &Address,
    msg: &MsgRecordTrace,
    events: &mut Events,
) -> Result<String> {
    let cid = parse_cid("trace_hash", &msg.trace_hash)?;
    let gradient = if msg.gradient_hash.is_empty() {
        Vec::new()
    } else {
        parse_cid("gradient_hash", &msg.gradient_hash)?.to_bytes()
    };
    let cid_bytes = cid.to_bytes();
    let id = trace_id(&cid_bytes, submitter);
    let key = trace_key(&id);
    if store.get(key.as_bytes())?.is_some() {
        return Err(Error::AlreadyExists(format!("trace {cid} by {submitter}")));
    }
    let expiry = ctx.height.saturating_add(ctx.params.retention_trace_blocks);
    let record = ComputationTrace {
        trace_id: id.to_vec(),
        trace_hash: cid_bytes,
        gradient_hash: gradient,
        submitter: submitter.as_bytes().to_vec(),
        block_height: ctx.height,
        expiry_height: expiry,
    };
    put_record(store, &key, &record);
    store.put(
        content_ref_key(&record.trace_hash, ExpiryKind::Trace, &id).as_bytes(),
        &[],
    );
    store.put(owner_key(submitter, ExpiryKind::Trace, &id).as_bytes(), b"");
    schedule_expiry(store, expiry, ExpiryKind::Trace, &id)?;
    emit(
        events,
        event::Kind::TraceRecorded(EvTraceRecorded {
            trace_id: hex_lower(&id),
            trace_hash: cid.to_string(),
        }),
    );
    Ok(hex_lower(&id))
}
