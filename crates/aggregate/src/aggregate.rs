//! The aggregation itself: [`Aggregator`] takes a round's gradients one at a
//! time in CID order (memory: one gradient plus the running sums), and
//! [`Aggregator::finish`] averages them by tokens and takes the Adam step.

use std::collections::BTreeMap;

use r3mes_tensor::{Format, LoRAAdapterGradient, LoRAGradientUpdate, encode};
use serde::{Deserialize, Serialize};

use crate::state::Moments;
use crate::{AdapterFile, AdapterParams, Error, Result, TrainingState, sha256_hex};

/// Most gradients one aggregate takes.
pub const MAX_CONTRIBUTIONS: usize = 100_000;
const MANIFEST_FORMAT: &str = "r3mes-aggregate-v1";
/// The miner id written into the aggregate gradient.
pub const AGGREGATE_MINER_ID: &str = "aggregate";

/// One gradient of the round with the tokens the chain recorded for it.
#[derive(Debug, Clone)]
pub struct Contribution {
    /// The gradient's CID (text).
    pub cid: String,
    /// Tokens it was computed on (its chunks' token counts on chain).
    pub tokens: u64,
    /// The decoded gradient.
    pub update: LoRAGradientUpdate,
}

/// A gradient left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Excluded {
    /// CID.
    pub cid: String,
    /// Why.
    pub reason: String,
}

/// One gradient that went in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// CID.
    pub cid: String,
    /// The miner (from the gradient).
    pub miner: String,
    /// Weight: tokens.
    pub tokens: u64,
}

/// What an aggregate was made from and what it made (`manifest.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// `r3mes-aggregate-v1`.
    pub format: String,
    /// The round (window).
    pub round: u64,
    /// The model version the round trained from.
    pub base_version: u64,
    /// SHA-256 of the base adapters file.
    pub base_adapters_sha256: String,
    /// SHA-256 of the base training-state file ("" for a fresh state).
    pub base_state_sha256: String,
    /// Backbone hash every gradient names.
    pub backbone_hash: String,
    /// Optimizer step after this aggregate.
    pub step: u64,
    /// Sum of the weights.
    pub total_tokens: u64,
    /// The gradients averaged, in CID order.
    pub contributions: Vec<ManifestEntry>,
    /// The gradients left out.
    pub excluded: Vec<Excluded>,
    /// SHA-256 of `gradient.pb`.
    pub gradient_sha256: String,
    /// SHA-256 of the new `adapters.safetensors`.
    pub adapters_sha256: String,
    /// SHA-256 of the new `training_state.safetensors`.
    pub state_sha256: String,
}

/// The result of a round.
#[derive(Debug, Clone)]
pub struct Aggregate {
    /// The token-weighted mean gradient.
    pub gradient: LoRAGradientUpdate,
    /// It as a protobuf gradient file (`gradient.pb`).
    pub gradient_bytes: Vec<u8>,
    /// The adapters after the optimizer step.
    pub adapters: AdapterFile,
    /// Their file.
    pub adapters_bytes: Vec<u8>,
    /// The training state after the step.
    pub state: TrainingState,
    /// Its file.
    pub state_bytes: Vec<u8>,
    /// What went in.
    pub manifest: Manifest,
}

impl Aggregate {
    /// `manifest.json` (pretty JSON, fixed field order).
    pub fn manifest_bytes(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(&self.manifest).unwrap_or_default();
        out.push(b'\n');
        out
    }
}

/// Why `c` cannot join an aggregate of `round` over `base` trained on
/// backbone `backbone_hash`, if it cannot.
pub fn check_contribution(
    base: &AdapterFile,
    round: u64,
    backbone_hash: &str,
    c: &Contribution,
) -> std::result::Result<(), String> {
    let u = &c.update;
    if c.tokens == 0 {
        return Err("no tokens".into());
    }
    if u.window_id != round {
        return Err(format!("made for window {}, not {round}", u.window_id));
    }
    if u.backbone_hash != backbone_hash {
        return Err(format!(
            "made on backbone {:?}, not {backbone_hash:?}",
            u.backbone_hash
        ));
    }
    if u.adapters.len() != base.adapters.len() {
        return Err(format!(
            "{} adapter gradients for {} adapters",
            u.adapters.len(),
            base.adapters.len()
        ));
    }
    for (id, p) in &base.adapters {
        let g = u
            .adapters
            .get(id)
            .ok_or_else(|| format!("no gradient for adapter {id}"))?;
        if g.shape_a != p.shape_a
            || g.shape_b != p.shape_b
            || g.grad_a.len() != p.a.len()
            || g.grad_b.len() != p.b.len()
        {
            return Err(format!(
                "{id}: gradient shapes {:?} / {:?}, adapter {:?} / {:?}",
                g.shape_a, g.shape_b, p.shape_a, p.shape_b
            ));
        }
        let finite =
            g.grad_a.iter().chain(&g.grad_b).all(|v| v.is_finite()) && g.grad_alpha.is_finite();
        if !finite {
            return Err(format!("{id}: non-finite gradient values"));
        }
    }
    Ok(())
}

/// Running sums of one adapter's gradient times tokens.
struct Sums {
    a: Vec<f64>,
    b: Vec<f64>,
    alpha: f64,
}

/// Aggregates a round incrementally; see the module documentation.
pub struct Aggregator {
    round: u64,
    base_version: u64,
    backbone_hash: String,
    base: AdapterFile,
    sums: BTreeMap<String, Sums>,
    entries: Vec<ManifestEntry>,
    excluded: Vec<Excluded>,
    total_tokens: u64,
    last_cid: Option<String>,
    timestamp: i64,
}

impl Aggregator {
    /// An aggregate of `round` over `base` (model version `base_version`)
    /// for gradients made on backbone `backbone_hash`.
    pub fn new(round: u64, base_version: u64, backbone_hash: &str, base: AdapterFile) -> Self {
        let sums = base
            .adapters
            .iter()
            .map(|(id, p)| {
                (
                    id.clone(),
                    Sums {
                        a: vec![0.0; p.a.len()],
                        b: vec![0.0; p.b.len()],
                        alpha: 0.0,
                    },
                )
            })
            .collect();
        Self {
            round,
            base_version,
            backbone_hash: backbone_hash.to_string(),
            base,
            sums,
            entries: Vec::new(),
            excluded: Vec::new(),
            total_tokens: 0,
            last_cid: None,
            timestamp: 0,
        }
    }

    /// Adds a gradient. Gradients must come in strictly increasing CID order
    /// (the order fixes the sums' rounding); one that does not fit is
    /// recorded as excluded and `Err` says why.
    pub fn add(&mut self, c: Contribution) -> std::result::Result<(), String> {
        let verdict = self.admit(&c);
        if let Err(reason) = &verdict {
            self.exclude(&c.cid, reason);
            return verdict;
        }
        self.last_cid = Some(c.cid.clone());
        let w = c.tokens as f64;
        for (id, s) in &mut self.sums {
            // check_contribution made sure every id is there.
            let Some(g) = c.update.adapters.get(id) else {
                continue;
            };
            for (acc, v) in s.a.iter_mut().zip(&g.grad_a) {
                *acc += w * f64::from(*v);
            }
            for (acc, v) in s.b.iter_mut().zip(&g.grad_b) {
                *acc += w * f64::from(*v);
            }
            s.alpha += w * f64::from(g.grad_alpha);
        }
        self.total_tokens += c.tokens;
        self.timestamp = self.timestamp.max(c.update.timestamp);
        self.entries.push(ManifestEntry {
            cid: c.cid,
            miner: c.update.miner_id,
            tokens: c.tokens,
        });
        Ok(())
    }

    fn admit(&self, c: &Contribution) -> std::result::Result<(), String> {
        if let Some(last) = &self.last_cid
            && c.cid.as_str() <= last.as_str()
        {
            return Err(if c.cid == *last {
                "listed twice".into()
            } else {
                format!("out of CID order (after {last})")
            });
        }
        if self.entries.len() >= MAX_CONTRIBUTIONS {
            return Err(format!("more than {MAX_CONTRIBUTIONS} gradients"));
        }
        if self.total_tokens.checked_add(c.tokens).is_none() {
            return Err("token total overflows".into());
        }
        check_contribution(&self.base, self.round, &self.backbone_hash, c)
    }

    /// Records a gradient left out before it was decoded (fetch failures,
    /// failed challenges, failed verification).
    pub fn exclude(&mut self, cid: &str, reason: &str) {
        self.excluded.push(Excluded {
            cid: cid.to_string(),
            reason: reason.to_string(),
        });
    }

    /// Gradients added so far.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The mean gradient, the Adam step from `state` (the base version's,
    /// or a fresh one), and the files.
    pub fn finish(self, state: &TrainingState) -> Result<Aggregate> {
        if self.entries.is_empty() {
            return Err(Error::Empty(format!(
                "round {} has no usable gradient ({} excluded)",
                self.round,
                self.excluded.len()
            )));
        }
        state.check_fits(&self.base)?;
        state.adam.validate()?;
        let total = self.total_tokens as f64;
        let mut mean = BTreeMap::new();
        for (id, s) in &self.sums {
            let p = &self.base.adapters[id];
            let avg = |v: &[f64]| v.iter().map(|x| (x / total) as f32).collect::<Vec<f32>>();
            mean.insert(
                id.clone(),
                LoRAAdapterGradient {
                    layer_id: id.clone(),
                    grad_a: avg(&s.a),
                    shape_a: p.shape_a,
                    grad_b: avg(&s.b),
                    shape_b: p.shape_b,
                    grad_alpha: (s.alpha / total) as f32,
                },
            );
        }
        let gradient = LoRAGradientUpdate {
            adapters: mean,
            miner_id: AGGREGATE_MINER_ID.into(),
            data_shard_id: 0,
            backbone_hash: self.backbone_hash.clone(),
            window_id: self.round,
            timestamp: self.timestamp,
        };
        let gradient_bytes = encode(&gradient.to_gradient(Format::Protobuf)?, Format::Protobuf)?;
        let (adapters, new_state) = adam_step(&self.base, state, &gradient)?;
        let adapters_bytes = adapters.to_safetensors()?;
        let state_bytes = new_state.to_safetensors()?;
        let base_state_sha256 = if state.step == 0 && state.moments.is_empty() {
            String::new()
        } else {
            sha256_hex(&state.to_safetensors()?)
        };
        let manifest = Manifest {
            format: MANIFEST_FORMAT.into(),
            round: self.round,
            base_version: self.base_version,
            base_adapters_sha256: sha256_hex(&self.base.to_safetensors()?),
            base_state_sha256,
            backbone_hash: self.backbone_hash,
            step: new_state.step,
            total_tokens: self.total_tokens,
            contributions: self.entries,
            excluded: self.excluded,
            gradient_sha256: sha256_hex(&gradient_bytes),
            adapters_sha256: sha256_hex(&adapters_bytes),
            state_sha256: sha256_hex(&state_bytes),
        };
        Ok(Aggregate {
            gradient,
            gradient_bytes,
            adapters,
            adapters_bytes,
            state: new_state,
            state_bytes,
            manifest,
        })
    }
}

/// Aggregates `contributions` (any order; they are sorted by CID).
pub fn aggregate(
    round: u64,
    base_version: u64,
    backbone_hash: &str,
    base: AdapterFile,
    state: &TrainingState,
    mut contributions: Vec<Contribution>,
) -> Result<Aggregate> {
    contributions.sort_by(|x, y| x.cid.cmp(&y.cid));
    let mut aggregator = Aggregator::new(round, base_version, backbone_hash, base);
    for c in contributions {
        // A refused gradient is recorded in the manifest.
        let _ = aggregator.add(c);
    }
    aggregator.finish(state)
}

/// `base^n` by repeated multiplication (not `powi`, whose rounding may
/// differ between platforms).
fn power(base: f64, n: u64) -> f64 {
    let mut out = 1.0;
    for _ in 0..n {
        out *= base;
    }
    out
}

/// One Adam step on every parameter of `base` with gradient `g`.
fn adam_step(
    base: &AdapterFile,
    state: &TrainingState,
    g: &LoRAGradientUpdate,
) -> Result<(AdapterFile, TrainingState)> {
    let adam = state.adam;
    let step = state
        .step
        .checked_add(1)
        .ok_or_else(|| Error::State("step count overflows".into()))?;
    let correction1 = 1.0 - power(adam.beta1, step);
    let correction2 = 1.0 - power(adam.beta2, step);
    let precision = base.precision;
    let mut moments = BTreeMap::new();
    let mut update = |name: String, values: &[f32], grads: &[f32]| -> Vec<f32> {
        let old = state.moments.get(&name);
        let mut m = Vec::with_capacity(values.len());
        let mut v = Vec::with_capacity(values.len());
        let mut out = Vec::with_capacity(values.len());
        for (i, (p, gr)) in values.iter().zip(grads).enumerate() {
            let gr = f64::from(*gr);
            let m0 = old.map_or(0.0, |o| f64::from(o.m[i]));
            let v0 = old.map_or(0.0, |o| f64::from(o.v[i]));
            let m1 = adam.beta1 * m0 + (1.0 - adam.beta1) * gr;
            let v1 = adam.beta2 * v0 + (1.0 - adam.beta2) * gr * gr;
            let m_hat = m1 / correction1;
            let v_hat = v1 / correction2;
            let next = f64::from(*p) - adam.lr * m_hat / (v_hat.sqrt() + adam.eps);
            m.push(m1 as f32);
            v.push(v1 as f32);
            out.push(precision.round(next as f32));
        }
        moments.insert(name, Moments { m, v });
        out
    };
    let mut adapters = BTreeMap::new();
    for (id, p) in &base.adapters {
        let gr = g
            .adapters
            .get(id)
            .ok_or_else(|| Error::Empty(format!("no mean gradient for {id}")))?;
        let a = update(format!("{id}.lora_a"), &p.a, &gr.grad_a);
        let b = update(format!("{id}.lora_b"), &p.b, &gr.grad_b);
        let alpha = update(format!("{id}.alpha"), &[p.alpha], &[gr.grad_alpha]);
        adapters.insert(
            id.clone(),
            AdapterParams {
                a,
                shape_a: p.shape_a,
                b,
                shape_b: p.shape_b,
                alpha: alpha[0],
            },
        );
    }
    Ok((
        AdapterFile {
            precision,
            config_json: base.config_json.clone(),
            adapters,
        },
        TrainingState {
            step,
            adam,
            moments,
        },
    ))
}
