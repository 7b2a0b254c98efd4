//! [`TrainingState`]: the seed's `LoRATrainingState` — the optimizer's step
//! count, settings and moments — stored beside the adapters as
//! `training_state.safetensors`.
//!
//! Layout: for every adapter parameter `P` (`ID.lora_a`, `ID.lora_b`,
//! `ID.alpha`) two F32 tensors `P.m` and `P.v` (Adam's first and second
//! moments, the parameter's shape), and one metadata entry `r3mes.adam`:
//! `{"format":"r3mes-adam-v1","step":N,"lr":..,"beta1":..,"beta2":..,"eps":..}`.
//! A state at step 0 has no tensors (every moment is zero).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::adapters::{Owned, Precision, floats, parse_safetensors, write_safetensors};
use crate::{AdapterFile, Error, Result};

/// The metadata key of a training-state file.
pub const STATE_METADATA_KEY: &str = "r3mes.adam";
const FORMAT: &str = "r3mes-adam-v1";

/// Adam's settings. They are stored in the state, so every later round (and
/// everyone recomputing one) uses the same.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f64,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Added to the denominator.
    pub eps: f64,
}

impl Default for AdamConfig {
    /// lr 2e-3, betas 0.9 / 0.999, eps 1e-8.
    fn default() -> Self {
        Self {
            lr: 2e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

impl AdamConfig {
    /// Checks the settings are usable.
    pub fn validate(&self) -> Result<()> {
        let ok = self.lr.is_finite()
            && self.lr > 0.0
            && (0.0..1.0).contains(&self.beta1)
            && (0.0..1.0).contains(&self.beta2)
            && self.eps.is_finite()
            && self.eps > 0.0;
        if ok {
            Ok(())
        } else {
            Err(Error::State(format!(
                "Adam settings {self:?}: need lr > 0, betas in [0, 1), eps > 0"
            )))
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Header {
    format: String,
    step: u64,
    #[serde(flatten)]
    adam: AdamConfig,
}

/// Adam moments of one parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct Moments {
    /// First moment.
    pub m: Vec<f32>,
    /// Second moment.
    pub v: Vec<f32>,
}

/// The optimizer state of a model version's adapters.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingState {
    /// Optimizer steps taken (one per aggregated round).
    pub step: u64,
    /// Settings.
    pub adam: AdamConfig,
    /// Moments by parameter name (`ID.lora_a`, `ID.lora_b`, `ID.alpha`);
    /// a missing entry is all zeros.
    pub moments: BTreeMap<String, Moments>,
}

impl TrainingState {
    /// A fresh state (step 0, zero moments).
    pub fn new(adam: AdamConfig) -> Result<Self> {
        adam.validate()?;
        Ok(Self {
            step: 0,
            adam,
            moments: BTreeMap::new(),
        })
    }

    /// Parses a state file.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let (st, metadata) = parse_safetensors(bytes, Error::State)?;
        let json = metadata
            .get(STATE_METADATA_KEY)
            .ok_or_else(|| Error::State(format!("no {STATE_METADATA_KEY} metadata")))?;
        let header: Header = serde_json::from_str(json)
            .map_err(|e| Error::State(format!("{STATE_METADATA_KEY} metadata: {e}")))?;
        if header.format != FORMAT {
            return Err(Error::State(format!(
                "format {:?}, expected {FORMAT:?}",
                header.format
            )));
        }
        header.adam.validate()?;
        let mut parts: BTreeMap<String, [Option<Vec<f32>>; 2]> = BTreeMap::new();
        for (name, view) in st.iter() {
            let (param, slot) = if let Some(p) = name.strip_suffix(".m") {
                (p, 0)
            } else if let Some(p) = name.strip_suffix(".v") {
                (p, 1)
            } else {
                return Err(Error::State(format!("unexpected tensor {name}")));
            };
            parts.entry(param.to_string()).or_default()[slot] =
                Some(floats(name, &view, Error::State)?);
        }
        let mut moments = BTreeMap::new();
        for (param, [m, v]) in parts {
            let (Some(m), Some(v)) = (m, v) else {
                return Err(Error::State(format!("{param}: needs both .m and .v")));
            };
            if m.len() != v.len() {
                return Err(Error::State(format!(
                    "{param}: .m has {} values and .v {}",
                    m.len(),
                    v.len()
                )));
            }
            if v.iter().any(|x| *x < 0.0) {
                return Err(Error::State(format!("{param}.v: negative second moment")));
            }
            moments.insert(param, Moments { m, v });
        }
        Ok(Self {
            step: header.step,
            adam: header.adam,
            moments,
        })
    }

    /// The file's bytes.
    pub fn to_safetensors(&self) -> Result<Vec<u8>> {
        let mut tensors = Vec::with_capacity(self.moments.len() * 2);
        for (param, mo) in &self.moments {
            tensors.push(Owned::new(
                format!("{param}.m"),
                Precision::Fp32,
                vec![mo.m.len()],
                &mo.m,
            ));
            tensors.push(Owned::new(
                format!("{param}.v"),
                Precision::Fp32,
                vec![mo.v.len()],
                &mo.v,
            ));
        }
        let header = Header {
            format: FORMAT.into(),
            step: self.step,
            adam: self.adam,
        };
        let json = serde_json::to_string(&header).map_err(|e| Error::State(e.to_string()))?;
        write_safetensors(&tensors, STATE_METADATA_KEY, &json, Error::State)
    }

    /// Checks every stored moment belongs to a parameter of `adapters` with
    /// its element count.
    pub fn check_fits(&self, adapters: &AdapterFile) -> Result<()> {
        for (param, mo) in &self.moments {
            let len = param_len(adapters, param).ok_or_else(|| {
                Error::State(format!("moments for {param}, which the adapters lack"))
            })?;
            if mo.m.len() != len {
                return Err(Error::State(format!(
                    "{param}: {} moments for {len} values",
                    mo.m.len()
                )));
            }
        }
        Ok(())
    }
}

/// Elements of parameter `param` (`ID.lora_a|lora_b|alpha`) of `adapters`.
fn param_len(adapters: &AdapterFile, param: &str) -> Option<usize> {
    let (id, kind) = param.rsplit_once('.')?;
    let p = adapters.adapters.get(id)?;
    match kind {
        "lora_a" => Some(p.a.len()),
        "lora_b" => Some(p.b.len()),
        "alpha" => Some(1),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_nonsense() {
        let mut s = TrainingState::new(AdamConfig::default()).unwrap();
        s.step = 3;
        s.moments.insert(
            "x.lora_a".into(),
            Moments {
                m: vec![0.1, -0.2],
                v: vec![0.01, 0.04],
            },
        );
        let bytes = s.to_safetensors().unwrap();
        let back = TrainingState::parse(&bytes).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.to_safetensors().unwrap(), bytes);
        let fresh = TrainingState::new(AdamConfig::default()).unwrap();
        assert_eq!(
            TrainingState::parse(&fresh.to_safetensors().unwrap()).unwrap(),
            fresh
        );
        assert!(
            TrainingState::new(AdamConfig {
                lr: -1.0,
                ..AdamConfig::default()
            })
            .is_err()
        );
        s.moments.get_mut("x.lora_a").unwrap().v[0] = -1.0;
        let err = TrainingState::parse(&s.to_safetensors().unwrap()).unwrap_err();
        assert!(err.to_string().contains("negative"), "{err}");
    }
}
