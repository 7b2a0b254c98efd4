//! The verification duty (validator side): tolerant verification of new
//! gradients against the validator's secret vault, reported on chain.
//!
//! For the gradients included at some heights it picks the candidates
//! ([`candidates`]): a gradient over exactly one data chunk for which the
//! vault holds an entry, that this validator has not verified yet (the
//! keeper keeps one result per gradient and validator). A vault entry is
//! the gradient of one chunk, so a gradient summed over several chunks has
//! no reference it should match and is left alone rather than failed. When
//! the vault holds several entries for the chunk, the gradient's CID picks
//! one, so different gradients of a chunk are checked at different windows.
//! An entry tagged with a model version (`VaultEntry::model_version`) only
//! checks gradients of rounds that train from that version
//! (`r3mes_chain::models::model_for_round`), so a validator can hold the
//! references of the previous and the new version while a new version takes
//! over, and never checks a gradient against the wrong one.
//!
//! Each candidate is checked by `r3mes_verify::Verifier` (range reads of the
//! leaves holding the entry's indices) and becomes a
//! `MsgSubmitVerification` with the cosine in ppm, the pass flag and the
//! entry's 32-byte commitment ([`VaultEntry::commitment`]), which is what
//! `r3mes_chain::verification::submit` records; a failing result slashes
//! the miner there. A gradient the validator could not read (the verifier's
//! errors: store unreachable, block missing or corrupt) produces no message
//! and is reported in [`Verifications::skipped`] and logged: that is the
//! availability challenge's business, not proof of a wrong gradient.

use std::ops::RangeInclusive;

use r3mes_chain::accounts::StoreRead;
use r3mes_chain::crypto::sha256;
use r3mes_chain::gradients::included_at;
use r3mes_chain::proto::{MsgSubmitVerification, StoredGradient};
use r3mes_chain::verification::verification_key;
use r3mes_chain::{Address, exec};
use r3mes_ipfs::Cid;
use r3mes_verify::{Report, Vault, VaultEntry, Verifier};

use crate::{Error, Result};

/// A gradient to verify and the vault entry to verify it with.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The gradient's CID.
    pub gradient: Cid,
    /// Height of the block that included it.
    pub height: u64,
    /// The vault entry of its chunk.
    pub entry: VaultEntry,
}

/// One verified gradient.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// The gradient's CID.
    pub gradient: Cid,
    /// What the verifier found and what it cost.
    pub report: Report,
    /// The message to sign.
    pub msg: MsgSubmitVerification,
}

/// A candidate the validator could not verify.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    /// The gradient's CID.
    pub gradient: Cid,
    /// The vault entry that was to be used.
    pub entry: String,
    /// The verifier's error.
    pub reason: String,
}

/// What one pass of the duty gave.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Verifications {
    /// Gradients verified (passed or failed), in inclusion order.
    pub verified: Vec<Verified>,
    /// Gradients that could not be read.
    pub skipped: Vec<Skipped>,
}

/// The gradients included at `heights` that `me` should verify with
/// `vault` (see the module docs). Fails if `me` is not a validator: the
/// keeper would refuse its results.
pub fn candidates(
    store: &impl StoreRead,
    me: &Address,
    vault: &Vault,
    heights: RangeInclusive<u64>,
) -> Result<Vec<Candidate>> {
    if !exec::is_validator(store, me)? {
        return Err(Error::Config(format!(
            "{me} is not a validator: the keeper accepts verification results from validators only"
        )));
    }
    let mut out = Vec::new();
    for height in heights {
        for g in included_at(store, height, |_| true)? {
            if let Some(candidate) = candidate(store, me, vault, &g, height)? {
                out.push(candidate);
            }
        }
    }
    Ok(out)
}

/// `g` as a candidate, if it is one.
fn candidate(
    store: &impl StoreRead,
    me: &Address,
    vault: &Vault,
    g: &StoredGradient,
    height: u64,
) -> Result<Option<Candidate>> {
    let [chunk] = g
        .metadata
        .as_ref()
        .map(|m| m.chunks.as_slice())
        .unwrap_or_default()
    else {
        return Ok(None);
    };
    let mut entries: Vec<&VaultEntry> = vault.entries_for_chunk(&chunk.data_hash).collect();
    if entries.iter().any(|e| e.model_version.is_some()) {
        let round_id = g.metadata.as_ref().map_or(0, |m| m.round_id);
        let version = match r3mes_chain::rounds::get_round(store, round_id)? {
            Some(round) => r3mes_chain::models::model_for_round(store, &round)?.map(|m| m.version),
            None => None,
        };
        entries.retain(|e| e.model_version.is_none() || e.model_version == version);
    }
    if entries.is_empty() {
        return Ok(None);
    }
    let Ok(gradient) = Cid::try_from(g.ipfs_hash.as_slice()) else {
        tracing::warn!(height, "stored gradient has a malformed CID; not verified");
        return Ok(None);
    };
    if store
        .get(verification_key(&g.ipfs_hash, me).as_bytes())?
        .is_some()
    {
        return Ok(None);
    }
    let digest = sha256(&g.ipfs_hash);
    let pick = u64::from_be_bytes([
        digest[0], digest[1], digest[2], digest[3], digest[4], digest[5], digest[6], digest[7],
    ]);
    let index = usize::try_from(pick % entries.len() as u64).unwrap_or(0);
    let Some(entry) = entries.get(index) else {
        return Ok(None);
    };
    Ok(Some(Candidate {
        gradient,
        height,
        entry: (*entry).clone(),
    }))
}

/// Verifies each candidate and builds its message for validator `me`.
pub async fn verify_candidates(
    candidates: Vec<Candidate>,
    me: &Address,
    verifier: &Verifier,
) -> Verifications {
    let mut out = Verifications::default();
    for c in candidates {
        match verifier.verify(&c.gradient, &c.entry).await {
            Ok(report) => {
                tracing::info!(
                    gradient = %c.gradient,
                    entry = %c.entry.id,
                    cosine_ppm = report.cosine_ppm,
                    passed = report.passed,
                    bytes_fetched = report.bytes_fetched,
                    file_size = report.file_size,
                    "gradient verified"
                );
                let msg = MsgSubmitVerification {
                    validator: me.to_string(),
                    ipfs_hash: c.gradient.to_string(),
                    cosine_ppm: report.cosine_ppm.clamp(-1_000_000, 1_000_000),
                    vault_commitment: c.entry.commitment().to_vec(),
                    passed: report.passed,
                };
                out.verified.push(Verified {
                    gradient: c.gradient,
                    report,
                    msg,
                });
            }
            Err(e) => {
                tracing::warn!(
                    gradient = %c.gradient,
                    entry = %c.entry.id,
                    "gradient not verified (validator-side error, no result sent): {e}"
                );
                out.skipped.push(Skipped {
                    gradient: c.gradient,
                    entry: c.entry.id,
                    reason: e.to_string(),
                });
            }
        }
    }
    out
}

/// Verifies the gradients included at `heights` that `me` should verify
/// with `vault` (see the module docs).
pub async fn verifications(
    store: &(impl StoreRead + Sync),
    me: &Address,
    vault: &Vault,
    verifier: &Verifier,
    heights: RangeInclusive<u64>,
) -> Result<Verifications> {
    let candidates = candidates(store, me, vault, heights)?;
    Ok(verify_candidates(candidates, me, verifier).await)
}
