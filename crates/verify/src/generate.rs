//! Making a vault entry: the validator computes the gradient of a chunk
//! itself (the reference), draws secret indices with [`Placement`], and keeps
//! the reference values there with a threshold.

use r3mes_tensor::{Limits, flatten};

use crate::placement::{Placement, SecretRng};
use crate::vault::{ChunkRef, FlatOrder, VaultEntry};
use crate::{Error, Result};

/// Default threshold: cosine 0.95.
pub const DEFAULT_THRESHOLD_PPM: i64 = 950_000;

/// What to build an entry with.
#[derive(Debug, Clone)]
pub struct EntryOptions {
    /// Name of the entry.
    pub id: String,
    /// The chunk the reference gradient was computed on.
    pub chunk: ChunkRef,
    /// Where the indices go.
    pub placement: Placement,
    /// Cosine threshold in ppm.
    pub threshold_ppm: i64,
    /// Flattening order the indices refer to.
    pub order: FlatOrder,
    /// The validator's secret seed; `None` draws a fresh one from the OS.
    pub seed: Option<[u8; 32]>,
}

/// Builds an entry from the bytes of the reference gradient file (any format
/// the tensor crate reads, within `limits`).
pub fn entry_from_file(
    reference: &[u8],
    options: &EntryOptions,
    limits: &Limits,
) -> Result<VaultEntry> {
    let gradient = r3mes_tensor::decode(reference, None, limits)
        .map_err(|e| Error::gradient("reading the reference gradient", e))?;
    let elements = gradient.elements();
    let seed = match options.seed {
        Some(seed) => seed,
        None => SecretRng::os_seed()?,
    };
    let mut rng = SecretRng::new(&seed, &options.id);
    let order = options.order.into();
    let indices = options.placement.choose(elements, &mut rng)?;
    let values = flatten::values_at(&gradient, order, &indices)
        .map_err(|e| Error::gradient("reading the reference gradient", e))?;
    let entry = VaultEntry {
        id: options.id.clone(),
        chunk: options.chunk.clone(),
        order: options.order,
        elements,
        threshold_ppm: options.threshold_ppm,
        indices,
        values,
        model_version: None,
    };
    entry.validate()?;
    Ok(entry)
}
