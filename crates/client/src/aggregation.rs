//! A round's aggregation against a node and an IPFS API: which gradients
//! count, fetching them, aggregating (`r3mes-aggregate`), filing the result
//! in the MFS and registering the new adapters as the next model version.
//!
//! A gradient of round `R` counts when, once every sampling challenge of
//! the round is past its deadline (height `end_height + response_window +
//! 2`), none of its challenges failed or is pending and no validator
//! recorded a failed verification for it; its weight is the tokens of its
//! chunks as the chain stored them. Gradients that cannot be fetched, do
//! not hash to their CID, or do not fit the base adapters are left out and
//! listed in the manifest with the reason.
//!
//! Files (MFS, the seed's layout, one directory per registered version):
//! `/gradients/window_R/aggregated/{gradient.pb, manifest.json}`, and
//! `/models/vV/{backbone/, lora_adapters/adapters.safetensors,
//! lora_adapters/training_state.safetensors, metadata.json}` for the new
//! version `V`, whose `metadata.json` is the base's with the new hashes,
//! `parent_version` and `round`.

use r3mes_aggregate::{
    AdamConfig, AdapterFile, Aggregate, Aggregator, Contribution, TrainingState,
};
use r3mes_chain::SecretKey;
use r3mes_chain::proto::{
    ChallengeStatus, LoraAdapterRef, ModelVersion, MsgRegisterModel, StoredGradient, tx_body,
};
use r3mes_ipfs::{AddOptions, AddSource, ContentStore};
use r3mes_kubo::KuboClient;
use r3mes_tensor::{Limits, LoRAGradientUpdate};
use sha2::{Digest, Sha256};

use crate::content::fetch_file;
use crate::models::{ModelFiles, fetch_metadata, model_for_round};
use crate::{Error, NodeClient, Result};

/// Largest gradient file an aggregator fetches.
pub const MAX_GRADIENT_BYTES: u64 = 1 << 30;

/// A computed (not yet published) aggregate.
pub struct RoundAggregate {
    /// The round.
    pub round: u64,
    /// The version it trained from, with its checked files.
    pub base: ModelFiles,
    /// The result.
    pub aggregate: Aggregate,
}

/// Where a published aggregate went.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Published {
    /// The new model version.
    pub version: u64,
    /// CID of `gradient.pb`.
    pub gradient_cid: String,
    /// CID of `manifest.json`.
    pub manifest_cid: String,
    /// CID of the new adapters.
    pub adapters_cid: String,
    /// CID of the new training state.
    pub training_state_cid: String,
    /// CID of the new `metadata.json`.
    pub metadata_cid: String,
    /// Height the version was registered at (0 if not registered).
    pub registered_height: u64,
}

/// The first height at which round `round_end`'s gradients can be judged.
pub fn ready_height(round_end: u64, response_window: u64) -> u64 {
    // Sampling happens in the block after inclusion; its deadline is
    // response_window later; that block's end fails what is still open.
    round_end.saturating_add(response_window).saturating_add(2)
}

/// Why a stored gradient does not count, from the chain's records.
async fn chain_verdict(client: &NodeClient, cid: &str) -> Result<Option<String>> {
    for c in client.content_challenges(cid).await? {
        if c.status == ChallengeStatus::Failed as i32 {
            return Ok(Some("failed an availability challenge".into()));
        }
        if c.status == ChallengeStatus::Pending as i32 {
            return Ok(Some(format!(
                "an availability challenge is pending until height {}",
                c.response_deadline
            )));
        }
    }
    if client.verifications(cid).await?.iter().any(|v| !v.passed) {
        return Ok(Some("failed verification".into()));
    }
    Ok(None)
}

fn cid_text(g: &StoredGradient) -> String {
    r3mes_ipfs::cids::from_bytes(&g.ipfs_hash)
        .map(|c| c.to_string())
        .unwrap_or_else(|_| hex::encode(&g.ipfs_hash))
}

/// Computes round `round`'s aggregate. `adam` sets the optimizer when the
/// base version has no training state yet (a stored state keeps its own).
pub async fn compute(
    client: &NodeClient,
    store: &dyn ContentStore,
    round: u64,
    adam: AdamConfig,
) -> Result<RoundAggregate> {
    let r = client
        .round(Some(round))
        .await?
        .ok_or_else(|| Error::Missing(format!("round {round} has not started")))?;
    let params = client.params().await?;
    let height = client.status().await?.height;
    let ready = ready_height(r.end_height, params.response_window);
    if height < ready {
        return Err(Error::NotYet {
            what: format!(
                "round {round} can be aggregated once its challenges close, at height {ready} (now {height})"
            ),
            height: ready,
        });
    }
    let model = model_for_round(client, &r).await?;
    let base = ModelFiles::fetch(store, &model).await?;
    let adapters = AdapterFile::parse(&base.adapters).map_err(aggregate_error)?;
    let state = match &base.training_state {
        Some(bytes) => TrainingState::parse(bytes).map_err(aggregate_error)?,
        None => TrainingState::new(adam).map_err(aggregate_error)?,
    };
    let mut gradients: Vec<(String, StoredGradient)> = client
        .gradients_in_round(round)
        .await?
        .into_iter()
        .map(|g| (cid_text(&g), g))
        .collect();
    gradients.sort_by(|a, b| a.0.cmp(&b.0));
    let mut aggregator = Aggregator::new(round, model.version, base.backbone_sha256(), adapters);
    let limits = Limits::default();
    for (cid, g) in gradients {
        if let Some(reason) = chain_verdict(client, &cid).await? {
            aggregator.exclude(&cid, &reason);
            continue;
        }
        let update = match fetch_update(store, &cid, &limits).await {
            Ok(u) => u,
            Err(reason) => {
                aggregator.exclude(&cid, &reason);
                continue;
            }
        };
        let tokens = g
            .metadata
            .as_ref()
            .map_or(0, |m| m.chunks.iter().map(|c| c.token_count).sum());
        if let Err(reason) = aggregator.add(Contribution {
            cid: cid.clone(),
            tokens,
            update,
        }) {
            tracing::info!("round {round}: leaving out {cid}: {reason}");
        }
    }
    let aggregate = aggregator.finish(&state).map_err(aggregate_error)?;
    Ok(RoundAggregate {
        round,
        base,
        aggregate,
    })
}

fn aggregate_error(e: r3mes_aggregate::Error) -> Error {
    Error::Aggregate(e.to_string())
}

async fn fetch_update(
    store: &dyn ContentStore,
    cid: &str,
    limits: &Limits,
) -> std::result::Result<LoRAGradientUpdate, String> {
    let parsed = r3mes_ipfs::cids::parse(cid).map_err(|e| e.to_string())?;
    let bytes = fetch_file(store, &parsed, MAX_GRADIENT_BYTES)
        .await
        .map_err(|e| e.to_string())?;
    let gradient = r3mes_tensor::decode(&bytes, None, limits).map_err(|e| e.to_string())?;
    LoRAGradientUpdate::from_gradient(&gradient).map_err(|e| e.to_string())
}

/// Adds `bytes` and files them at MFS `path` (replacing what was there);
/// returns the file's CID.
pub async fn file_bytes(store: &KuboClient, bytes: Vec<u8>, path: &str) -> Result<String> {
    let ipfs = |e: r3mes_ipfs::Error| Error::Content {
        cid: path.to_owned(),
        reason: e.to_string(),
    };
    let added = store
        .add(AddSource::Bytes(bytes.into()), &AddOptions::default())
        .await
        .map_err(ipfs)?;
    if store.files_stat(path).await.is_ok() {
        store.files_rm(path, true, true).await.map_err(ipfs)?;
    }
    store
        .files_cp(&format!("/ipfs/{}", added.cid), path, true)
        .await
        .map_err(ipfs)?;
    Ok(added.cid.to_string())
}

/// Files the aggregate and the new version in the MFS and, with `key` (a
/// validator), registers the version. The new version number is one past
/// the newest registered.
pub async fn publish(
    client: &NodeClient,
    store: &KuboClient,
    key: Option<&SecretKey>,
    out: &RoundAggregate,
) -> Result<Published> {
    let a = &out.aggregate;
    let round = out.round;
    let dir = format!("/gradients/window_{round}/aggregated");
    let gradient_cid = file_bytes(
        store,
        a.gradient_bytes.clone(),
        &format!("{dir}/gradient.pb"),
    )
    .await?;
    let manifest_cid =
        file_bytes(store, a.manifest_bytes(), &format!("{dir}/manifest.json")).await?;
    let latest = client.model(None).await?.map_or(0, |m| m.version);
    let version = latest + 1;
    let root = format!("/models/v{version}");
    if store.files_stat(&root).await.is_ok() {
        store
            .files_rm(&root, true, true)
            .await
            .map_err(|e| Error::Content {
                cid: root.clone(),
                reason: e.to_string(),
            })?;
    }
    store
        .files_cp(
            &format!("/ipfs/{}", out.base.model.backbone_hash),
            &format!("{root}/backbone"),
            true,
        )
        .await
        .map_err(|e| Error::Content {
            cid: out.base.model.backbone_hash.clone(),
            reason: e.to_string(),
        })?;
    let adapters_cid = file_bytes(
        store,
        a.adapters_bytes.clone(),
        &format!("{root}/lora_adapters/adapters.safetensors"),
    )
    .await?;
    let training_state_cid = file_bytes(
        store,
        a.state_bytes.clone(),
        &format!("{root}/lora_adapters/training_state.safetensors"),
    )
    .await?;
    let mut metadata = out.base.metadata.clone();
    metadata["version"] = version.into();
    metadata["parent_version"] = out.base.model.version.into();
    metadata["round"] = round.into();
    metadata["step"] = a.state.step.into();
    metadata["lora_sha256"] = a.manifest.adapters_sha256.clone().into();
    metadata["training_state_sha256"] = a.manifest.state_sha256.clone().into();
    metadata["aggregate_manifest"] = manifest_cid.clone().into();
    metadata["files"]["training_state"] = "lora_adapters/training_state.safetensors".into();
    let mut metadata_bytes =
        serde_json::to_vec_pretty(&metadata).map_err(|e| Error::Malformed {
            call: "metadata.json",
            reason: e.to_string(),
        })?;
    metadata_bytes.push(b'\n');
    let checksum = Sha256::digest(&metadata_bytes).to_vec();
    let metadata_cid = file_bytes(store, metadata_bytes, &format!("{root}/metadata.json")).await?;
    let mut registered_height = 0;
    if let Some(key) = key {
        let precision = match a.adapters.precision {
            r3mes_aggregate::Precision::Fp32 => "fp32",
            r3mes_aggregate::Precision::Fp16 => "fp16",
        };
        let lora_adapters = a
            .adapters
            .adapters
            .iter()
            .map(|(id, p)| LoraAdapterRef {
                layer_id: id.clone(),
                rank: p.shape_a[0],
                adapter_hash: adapters_cid.clone(),
                precision: precision.into(),
            })
            .collect();
        let msg = tx_body::Msg::RegisterModel(MsgRegisterModel {
            authority: key.public_key().address().to_string(),
            model: Some(ModelVersion {
                version,
                backbone_hash: out.base.model.backbone_hash.clone(),
                lora_adapters,
                training_state_hash: training_state_cid.clone(),
                checksum,
                metadata_hash: metadata_cid.clone(),
                ..ModelVersion::default()
            }),
        });
        registered_height = client.send(key, msg).await?.height;
    }
    Ok(Published {
        version,
        gradient_cid,
        manifest_cid,
        adapters_cid,
        training_state_cid,
        metadata_cid,
        registered_height,
    })
}

/// The round the newest registered aggregate came from (its
/// `metadata.json`'s `round`), if the newest version is an aggregate.
pub async fn last_aggregated_round(
    client: &NodeClient,
    store: &dyn ContentStore,
) -> Result<Option<u64>> {
    let Some(model) = client.model(None).await? else {
        return Ok(None);
    };
    // Only metadata.json: the backbone and adapters are not needed here.
    let (_, metadata) = fetch_metadata(store, &model).await?;
    Ok(metadata["round"].as_u64())
}
