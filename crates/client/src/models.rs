//! Which model version a round trains from, and its files fetched from IPFS
//! and checked against the chain.
//!
//! The rule (miners and aggregators both follow it, so they agree without
//! talking): round `R` trains from the newest model version registered at
//! or before the height round `R` started. An aggregate of round `R`
//! registered later is therefore picked up by the first round that starts
//! after it lands.
//!
//! The check chain: the model record's `checksum` is the SHA-256 of
//! `metadata.json` (fetched by `metadata_hash`); `metadata.json` names the
//! SHA-256 of the backbone file (`backbone_sha256`, inside the directory
//! `backbone_hash`), of the adapters (`lora_sha256`, the adapter
//! references' CID) and, when there is one, of the training state
//! (`training_state_sha256`, by `training_state_hash`). Every file is also
//! checked against its CID ([`crate::content`]).

use bytes::Bytes;
use r3mes_chain::proto::{ModelVersion, Round};
use r3mes_ipfs::{Cid, ContentStore};
use sha2::{Digest, Sha256};

use crate::content::{fetch_file, fetch_in_directory};
use crate::{Error, NodeClient, Result};

/// Largest model file fetched (backbone, adapters, state, metadata).
pub const MAX_MODEL_FILE_BYTES: u64 = 4 << 30;
/// The backbone file's name inside the backbone directory.
pub const BACKBONE_FILE: &str = "model.safetensors";

/// The model version round `round` trains from: the newest registered at
/// or before the round's start, as the node's keeper decides it
/// (`Query.Model` by round).
pub async fn model_for_round(client: &NodeClient, round: &Round) -> Result<ModelVersion> {
    client
        .model_for_round(round.round_id)
        .await?
        .ok_or_else(|| {
            Error::Missing(format!(
                "no model version was registered by height {} (round {} start)",
                round.start_height, round.round_id
            ))
        })
}

/// A model version's files, checked.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    /// The record.
    pub model: ModelVersion,
    /// `metadata.json`, parsed.
    pub metadata: serde_json::Value,
    /// `metadata.json` as stored.
    pub metadata_bytes: Bytes,
    /// The backbone safetensors.
    pub backbone: Bytes,
    /// The adapters safetensors.
    pub adapters: Bytes,
    /// The training state, if the version has one.
    pub training_state: Option<Bytes>,
}

impl ModelFiles {
    /// Fetches and checks every file of `model`.
    pub async fn fetch(store: &dyn ContentStore, model: &ModelVersion) -> Result<Self> {
        let missing =
            |what: &str| Error::Missing(format!("model version {} has no {what}", model.version));
        let (metadata_bytes, metadata) = fetch_metadata(store, model).await?;
        let backbone = fetch_in_directory(
            store,
            &cid(&model.backbone_hash)?,
            BACKBONE_FILE,
            MAX_MODEL_FILE_BYTES,
        )
        .await?;
        check_sha(
            &metadata,
            "backbone_sha256",
            &backbone,
            &model.backbone_hash,
        )?;
        let adapter_cid = model
            .lora_adapters
            .first()
            .map(|a| a.adapter_hash.clone())
            .ok_or_else(|| missing("LoRA adapters"))?;
        if let Some(other) = model
            .lora_adapters
            .iter()
            .find(|a| a.adapter_hash != adapter_cid)
        {
            return Err(Error::Content {
                cid: other.adapter_hash.clone(),
                reason: format!(
                    "adapter {} is in another file than the rest ({adapter_cid}); one adapters file per version is expected",
                    other.layer_id
                ),
            });
        }
        let adapters = fetch_file(store, &cid(&adapter_cid)?, MAX_MODEL_FILE_BYTES).await?;
        check_sha(&metadata, "lora_sha256", &adapters, &adapter_cid)?;
        let training_state = if model.training_state_hash.is_empty() {
            None
        } else {
            let bytes = fetch_file(
                store,
                &cid(&model.training_state_hash)?,
                MAX_MODEL_FILE_BYTES,
            )
            .await?;
            check_sha(
                &metadata,
                "training_state_sha256",
                &bytes,
                &model.training_state_hash,
            )?;
            Some(bytes)
        };
        Ok(Self {
            model: model.clone(),
            metadata,
            metadata_bytes,
            backbone,
            adapters,
            training_state,
        })
    }

    /// The backbone hash gradients on this model name (`backbone_sha256`).
    pub fn backbone_sha256(&self) -> &str {
        self.metadata["backbone_sha256"]
            .as_str()
            .unwrap_or_default()
    }
}

/// A model version's `metadata.json`, checked against the record's
/// checksum: its bytes and its JSON.
pub async fn fetch_metadata(
    store: &dyn ContentStore,
    model: &ModelVersion,
) -> Result<(Bytes, serde_json::Value)> {
    if model.metadata_hash.is_empty() {
        return Err(Error::Missing(format!(
            "model version {} has no metadata_hash",
            model.version
        )));
    }
    let bytes = fetch_file(store, &cid(&model.metadata_hash)?, MAX_MODEL_FILE_BYTES).await?;
    if Sha256::digest(&bytes).as_slice() != model.checksum.as_slice() {
        return Err(Error::Content {
            cid: model.metadata_hash.clone(),
            reason: format!(
                "metadata.json does not match model version {}'s checksum",
                model.version
            ),
        });
    }
    let json = serde_json::from_slice(&bytes).map_err(|e| Error::Content {
        cid: model.metadata_hash.clone(),
        reason: format!("metadata.json is not JSON: {e}"),
    })?;
    Ok((bytes, json))
}

fn cid(text: &str) -> Result<Cid> {
    r3mes_ipfs::cids::parse(text).map_err(|e| Error::Content {
        cid: text.to_owned(),
        reason: e.to_string(),
    })
}

fn check_sha(metadata: &serde_json::Value, key: &str, bytes: &[u8], cid: &str) -> Result<()> {
    let expected = metadata[key].as_str().ok_or_else(|| Error::Content {
        cid: cid.to_owned(),
        reason: format!("metadata.json has no {key}"),
    })?;
    let actual = hex::encode(Sha256::digest(bytes));
    if actual != expected {
        return Err(Error::Content {
            cid: cid.to_owned(),
            reason: format!("sha256 {actual}, metadata.json's {key} says {expected}"),
        });
    }
    Ok(())
}
