//! The byte budget: how gradient files are added (leaf size) and a
//! measurement of what a verification fetches against the file's size.
//! The reasoning behind the numbers is in the crate docs.

use std::sync::Arc;

use r3mes_ipfs::{AddOptions, AddSource, ContentStore, EmbeddedStore, Repo};
use r3mes_tensor::{Format, Gradient, Metadata, Tensor};
use serde::Serialize;

use crate::cache::VerifyCache;
use crate::placement::{Placement, SecretRng};
use crate::vault::{ChunkRef, FlatOrder, VaultEntry};
use crate::verifier::{Report, Verifier, VerifierConfig};
use crate::{Error, Result};

/// Leaf size gradient files are added with: 16 KiB (Kubo's `--chunker=size-16384`).
pub const GRADIENT_CHUNK_SIZE: usize = 16 * 1024;

/// `add` options for gradient files: Kubo's defaults but [`GRADIENT_CHUNK_SIZE`] leaves.
pub fn gradient_add_options() -> AddOptions {
    AddOptions {
        chunk_size: GRADIENT_CHUNK_SIZE,
        ..AddOptions::default()
    }
}

/// What to measure.
#[derive(Debug, Clone, Copy)]
pub struct BudgetConfig {
    /// Gradient file size in bytes (tensor data; the header adds a few hundred bytes).
    pub size: u64,
    /// Where the indices go.
    pub placement: Placement,
    /// Leaf size the gradient is added with.
    pub chunk_size: usize,
    /// CID version (1 means raw leaves).
    pub cid_version: u8,
    /// Vault entries to draw (each with its own secret seed); figures are averaged, the worst kept.
    pub trials: u32,
}

impl Default for BudgetConfig {
    /// 64 MiB, the default placement (64 indices), 16 KiB leaves, CIDv0, 8 trials.
    fn default() -> Self {
        Self {
            size: 64 << 20,
            placement: Placement::default(),
            chunk_size: GRADIENT_CHUNK_SIZE,
            cid_version: 0,
            trials: 8,
        }
    }
}

/// What a verification of a large gradient fetched.
#[derive(Debug, Clone, Serialize)]
pub struct BudgetReport {
    /// Size of the gradient file.
    pub file_size: u64,
    /// Leaf size it was added with.
    pub chunk_size: usize,
    /// CID version.
    pub cid_version: u8,
    /// Indices per vault entry.
    pub indices: u64,
    /// Windows per vault entry.
    pub windows: u32,
    /// Vault entries measured.
    pub trials: u32,
    /// Mean bytes fetched per verification (cold cache).
    pub mean_bytes_fetched: u64,
    /// Most bytes fetched by one verification.
    pub max_bytes_fetched: u64,
    /// Mean blocks fetched.
    pub mean_blocks_fetched: u64,
    /// `mean_bytes_fetched / file_size`.
    pub mean_ratio: f64,
    /// `max_bytes_fetched / file_size`.
    pub max_ratio: f64,
    /// One of the reports, for its details.
    pub sample: Report,
}

/// A synthetic LoRA gradient of about `size` bytes of f32 values: 64 tensor
/// pairs named like `layers.N.lora_A`, values from a fixed generator `seed`.
pub fn synthetic_gradient(size: u64, seed: u64) -> Result<Gradient> {
    let elements = size / 4;
    let pairs = 64u64;
    let per_tensor = (elements / (2 * pairs)).max(1);
    let mut state = seed | 1;
    let mut next = || {
        // xorshift64*: cheap, deterministic, spread over [-1, 1).
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let x = state.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (x >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    };
    let mut tensors = Vec::with_capacity(2 * pairs as usize);
    for layer in 0..pairs {
        for part in ["lora_A", "lora_B"] {
            let values: Vec<f32> = (0..per_tensor).map(|_| next()).collect();
            tensors.push(Tensor::from_f32(format!("layers.{layer}.{part}"), &values));
        }
    }
    Gradient::new(Format::Protobuf, Metadata::new(), tensors)
        .map_err(|e| Error::gradient("building the synthetic gradient", e))
}

/// Adds a synthetic gradient of `config.size` bytes to an in-memory
/// embedded repo, verifies it (honest: the same file) against
/// `config.trials` freshly drawn vault entries with a cold cache each, and
/// reports bytes fetched against the file size.
pub async fn measure(config: &BudgetConfig) -> Result<BudgetReport> {
    let gradient = synthetic_gradient(config.size, 7)?;
    let file = r3mes_tensor::encode(&gradient, Format::Protobuf)
        .map_err(|e| Error::gradient("encoding the synthetic gradient", e))?;
    let store: Arc<dyn ContentStore> = Arc::new(EmbeddedStore::new(Repo::in_memory()));
    let options = AddOptions {
        chunk_size: config.chunk_size,
        cid_version: config.cid_version,
        ..AddOptions::default()
    };
    let added = store
        .add(AddSource::Bytes(file.into()), &options)
        .await
        .map_err(|e| Error::InvalidArgument(format!("adding the synthetic gradient: {e}")))?;
    let elements = gradient.elements();
    let order = FlatOrder::Canonical;
    let mut reports = Vec::new();
    for trial in 0..config.trials.max(1) {
        let id = format!("bench-{trial}");
        let mut rng = SecretRng::new(&SecretRng::os_seed()?, &id);
        let indices = config.placement.choose(elements, &mut rng)?;
        let values = r3mes_tensor::flatten::values_at(&gradient, order.into(), &indices)
            .map_err(|e| Error::gradient("reading the synthetic gradient", e))?;
        let entry = VaultEntry {
            id,
            chunk: ChunkRef {
                data_hash: added.cid.to_string(),
                chunk_id: 0,
                shard_id: 0,
            },
            order,
            elements,
            threshold_ppm: 999_000,
            indices,
            values,
            model_version: None,
        };
        let verifier = Verifier::new(
            store.clone(),
            VerifyCache::default(),
            VerifierConfig::default(),
        );
        let report = verifier.verify(&added.cid, &entry).await?;
        if !report.passed {
            return Err(Error::InvalidArgument(format!(
                "the honest synthetic gradient failed: {:?}",
                report.reason
            )));
        }
        reports.push(report);
    }
    let n = reports.len() as u64;
    let total: u64 = reports.iter().map(|r| r.bytes_fetched).sum();
    let blocks: u64 = reports.iter().map(|r| r.blocks_fetched).sum();
    let max = reports.iter().map(|r| r.bytes_fetched).max().unwrap_or(0);
    let file_size = added.size;
    let sample = reports
        .into_iter()
        .next()
        .ok_or_else(|| Error::InvalidArgument("no trial ran".into()))?;
    Ok(BudgetReport {
        file_size,
        chunk_size: config.chunk_size,
        cid_version: config.cid_version,
        indices: config.placement.indices(),
        windows: config.placement.windows,
        trials: n as u32,
        mean_bytes_fetched: total / n,
        max_bytes_fetched: max,
        mean_blocks_fetched: blocks / n,
        mean_ratio: (total / n) as f64 / file_size as f64,
        max_ratio: max as f64 / file_size as f64,
        sample,
    })
}
