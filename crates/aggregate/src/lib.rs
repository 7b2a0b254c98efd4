//! `r3mes-aggregate`: the end-of-round aggregation of LoRA gradients (the
//! seed's `LoRATrainingState` and `gradients/window_N/aggregated/`).
//!
//! Given the adapters of the model version a round trained from, their
//! training state, and the round's accepted gradients (the seed's
//! `LoRAGradientUpdate`, each with the token count the chain recorded for
//! it), [`aggregate`]:
//!
//! 1. checks every gradient against the adapters (same layer ids, same
//!    shapes, finite values) and refuses the ones that do not fit, saying
//!    why, without letting one bad gradient stop the round;
//! 2. averages the rest weighted by tokens, in CID order, in f64;
//! 3. applies one Adam step to every adapter parameter (A, B and alpha) and
//!    advances the training state (step count and moments);
//! 4. returns the aggregate gradient as a protobuf gradient file, the new
//!    adapters and training state as safetensors, and a manifest listing
//!    every input, all as bytes that depend only on the inputs.
//!
//! Reproducibility: no threads, no hash-map iteration, no wall clock; every
//! sum runs in a fixed order and every power is a fixed sequence of
//! multiplications, so anyone with the listed gradient CIDs and the base
//! version gets the same bytes ([`Manifest`] records what went in).
//!
//! The crate does not link candle: the node can run it as a role.

mod adapters;
mod aggregate;
mod error;
mod state;

pub use adapters::{
    AdapterFile, AdapterParams, LORA_METADATA_KEY, MAX_HEADER_BYTES, MAX_TENSORS, Precision,
    parse_safetensors,
};
pub use aggregate::{
    AGGREGATE_MINER_ID, Aggregate, Aggregator, Contribution, Excluded, MAX_CONTRIBUTIONS, Manifest,
    ManifestEntry, aggregate, check_contribution,
};
pub use error::{Error, Result};
pub use state::{AdamConfig, Moments, STATE_METADATA_KEY, TrainingState};

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}
