//! [`AdapterFile`]: the LoRA adapters file (`adapters.safetensors`) read
//! and written without the model.
//!
//! Layout (the one `r3mes-miner` writes): for every adapted projection with
//! layer id `ID`, tensors `ID.lora_a` (rank x in), `ID.lora_b` (out x rank)
//! and `ID.alpha` (a scalar), all F32 or all F16 (the precision), plus one
//! metadata entry `r3mes.lora` (the adapter configuration as JSON), kept as
//! it is. Writing goes through the `safetensors` crate with the same single
//! metadata entry, so a file read and written back unchanged is the same
//! bytes.

use std::collections::{BTreeMap, HashMap};

use safetensors::Dtype;
use safetensors::tensor::{SafeTensors, TensorView};

use crate::{Error, Result};

/// The metadata key holding the adapter configuration.
pub const LORA_METADATA_KEY: &str = "r3mes.lora";
/// Largest safetensors header accepted.
pub const MAX_HEADER_BYTES: u64 = 1 << 20;
/// Most tensors a file may hold.
pub const MAX_TENSORS: usize = 1 << 16;

/// Storage precision of the adapters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// IEEE single.
    Fp32,
    /// IEEE half: values are rounded to it when written.
    Fp16,
}

impl Precision {
    /// `v` rounded to this precision.
    pub fn round(self, v: f32) -> f32 {
        match self {
            Precision::Fp32 => v,
            Precision::Fp16 => half::f16::from_f32(v).to_f32(),
        }
    }

    fn dtype(self) -> Dtype {
        match self {
            Precision::Fp32 => Dtype::F32,
            Precision::Fp16 => Dtype::F16,
        }
    }
}

/// One adapter's parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterParams {
    /// A, row-major.
    pub a: Vec<f32>,
    /// Shape of A: `[rank, in]`.
    pub shape_a: [u64; 2],
    /// B, row-major.
    pub b: Vec<f32>,
    /// Shape of B: `[out, rank]`.
    pub shape_b: [u64; 2],
    /// The scaling factor.
    pub alpha: f32,
}

/// A parsed adapters file.
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterFile {
    /// Precision of every tensor.
    pub precision: Precision,
    /// The `r3mes.lora` metadata, verbatim.
    pub config_json: String,
    /// Adapters by layer id.
    pub adapters: BTreeMap<String, AdapterParams>,
}

/// Parses a safetensors file after checking its header length against
/// [`MAX_HEADER_BYTES`] (the crate would otherwise allocate what a hostile
/// length asks) and its tensor count against [`MAX_TENSORS`]; returns the
/// tensors and the `__metadata__` entries. `err` makes the caller's error
/// from a message (the miner's model files use it too).
pub fn parse_safetensors<E>(
    bytes: &[u8],
    err: fn(String) -> E,
) -> std::result::Result<(SafeTensors<'_>, BTreeMap<String, String>), E> {
    let Some(len) = bytes.get(..8) else {
        return Err(err(format!("{} bytes, shorter than a header", bytes.len())));
    };
    let mut n = [0u8; 8];
    n.copy_from_slice(len);
    let header = u64::from_le_bytes(n);
    if header > MAX_HEADER_BYTES || header.saturating_add(8) > bytes.len() as u64 {
        return Err(err(format!(
            "header of {header} bytes (limit {MAX_HEADER_BYTES}, file {} bytes)",
            bytes.len()
        )));
    }
    let st = SafeTensors::deserialize(bytes).map_err(|e| err(e.to_string()))?;
    if st.len() > MAX_TENSORS {
        return Err(err(format!("{} tensors (limit {MAX_TENSORS})", st.len())));
    }
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| err(e.to_string()))?;
    let metadata = meta
        .metadata()
        .as_ref()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    Ok((st, metadata))
}

/// The finite f32 values of an F32 or F16 tensor.
pub(crate) fn floats(
    name: &str,
    view: &TensorView<'_>,
    err: fn(String) -> Error,
) -> Result<Vec<f32>> {
    let values: Vec<f32> = match view.dtype() {
        Dtype::F32 => view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => view
            .data()
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        other => return Err(err(format!("{name}: dtype {other:?}, expected F32 or F16"))),
    };
    if values.iter().any(|v| !v.is_finite()) {
        return Err(err(format!("{name}: non-finite value")));
    }
    Ok(values)
}

/// A tensor to write.
pub(crate) struct Owned {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl Owned {
    pub(crate) fn new(
        name: String,
        precision: Precision,
        shape: Vec<usize>,
        values: &[f32],
    ) -> Self {
        let data = match precision {
            Precision::Fp32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Precision::Fp16 => values
                .iter()
                .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                .collect(),
        };
        Self {
            name,
            dtype: precision.dtype(),
            shape,
            data,
        }
    }
}

/// Serialises `tensors` with the single metadata entry `key = value`.
pub(crate) fn write_safetensors(
    tensors: &[Owned],
    key: &str,
    value: &str,
    err: fn(String) -> Error,
) -> Result<Vec<u8>> {
    let mut views = Vec::with_capacity(tensors.len());
    for t in tensors {
        let view = TensorView::new(t.dtype, t.shape.clone(), &t.data)
            .map_err(|e| err(format!("{}: {e}", t.name)))?;
        views.push((t.name.as_str(), view));
    }
    let metadata = HashMap::from([(key.to_string(), value.to_string())]);
    safetensors::serialize(views, Some(metadata)).map_err(|e| err(e.to_string()))
}

fn matrix_shape(name: &str, shape: &[usize]) -> Result<[u64; 2]> {
    match shape {
        [r, c] if *r > 0 && *c > 0 => Ok([*r as u64, *c as u64]),
        _ => Err(Error::Adapters(format!(
            "{name}: shape {shape:?}, expected a non-empty matrix"
        ))),
    }
}

impl AdapterFile {
    /// Parses an adapters file: every layer id needs `lora_a`, `lora_b` and
    /// `alpha` of one precision, A's rank equal to B's, and nothing else.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let (st, metadata) = parse_safetensors(bytes, Error::Adapters)?;
        let config_json = metadata
            .get(LORA_METADATA_KEY)
            .cloned()
            .ok_or_else(|| Error::Adapters(format!("no {LORA_METADATA_KEY} metadata")))?;
        let mut precision = None;
        // Per layer id: lora_a, lora_b, alpha as (shape, values).
        type Parts = [Option<(Vec<usize>, Vec<f32>)>; 3];
        let mut parts: BTreeMap<String, Parts> = BTreeMap::new();
        for (name, view) in st.iter() {
            let (id, slot) = if let Some(id) = name.strip_suffix(".lora_a") {
                (id, 0)
            } else if let Some(id) = name.strip_suffix(".lora_b") {
                (id, 1)
            } else if let Some(id) = name.strip_suffix(".alpha") {
                (id, 2)
            } else {
                return Err(Error::Adapters(format!("unexpected tensor {name}")));
            };
            let p = match view.dtype() {
                Dtype::F32 => Precision::Fp32,
                Dtype::F16 => Precision::Fp16,
                other => {
                    return Err(Error::Adapters(format!(
                        "{name}: dtype {other:?}, expected F32 or F16"
                    )));
                }
            };
            if *precision.get_or_insert(p) != p {
                return Err(Error::Adapters(format!(
                    "{name}: mixed precisions in one file"
                )));
            }
            let values = floats(name, &view, Error::Adapters)?;
            parts.entry(id.to_string()).or_default()[slot] = Some((view.shape().to_vec(), values));
        }
        let precision =
            precision.ok_or_else(|| Error::Adapters("the file holds no adapters".into()))?;
        let mut adapters = BTreeMap::new();
        for (id, [a, b, alpha]) in parts {
            let missing = |what: &str| Error::Adapters(format!("{id}: no {what} tensor"));
            let (sa, a) = a.ok_or_else(|| missing("lora_a"))?;
            let (sb, b) = b.ok_or_else(|| missing("lora_b"))?;
            let (salpha, alpha) = alpha.ok_or_else(|| missing("alpha"))?;
            let shape_a = matrix_shape(&format!("{id}.lora_a"), &sa)?;
            let shape_b = matrix_shape(&format!("{id}.lora_b"), &sb)?;
            if shape_a[0] != shape_b[1] {
                return Err(Error::Adapters(format!(
                    "{id}: A is {shape_a:?} and B {shape_b:?}: their ranks differ"
                )));
            }
            if !salpha.is_empty() || alpha.len() != 1 {
                return Err(Error::Adapters(format!(
                    "{id}.alpha: shape {salpha:?}, expected a scalar"
                )));
            }
            adapters.insert(
                id,
                AdapterParams {
                    a,
                    shape_a,
                    b,
                    shape_b,
                    alpha: alpha[0],
                },
            );
        }
        Ok(Self {
            precision,
            config_json,
            adapters,
        })
    }

    /// The file's bytes.
    pub fn to_safetensors(&self) -> Result<Vec<u8>> {
        let mut tensors = Vec::with_capacity(self.adapters.len() * 3);
        for (id, p) in &self.adapters {
            let shape = |s: [u64; 2]| vec![s[0] as usize, s[1] as usize];
            tensors.push(Owned::new(
                format!("{id}.lora_a"),
                self.precision,
                shape(p.shape_a),
                &p.a,
            ));
            tensors.push(Owned::new(
                format!("{id}.lora_b"),
                self.precision,
                shape(p.shape_b),
                &p.b,
            ));
            tensors.push(Owned::new(
                format!("{id}.alpha"),
                self.precision,
                vec![],
                &[p.alpha],
            ));
        }
        write_safetensors(
            &tensors,
            LORA_METADATA_KEY,
            &self.config_json,
            Error::Adapters,
        )
    }

    /// Parameters over all adapters.
    pub fn parameter_count(&self) -> usize {
        self.adapters
            .values()
            .map(|p| p.a.len() + p.b.len() + 1)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(precision: Precision) -> AdapterFile {
        let mut adapters = BTreeMap::new();
        adapters.insert(
            "blocks.0.attn.q_proj".to_string(),
            AdapterParams {
                a: vec![0.5, -0.25, 1.0, 2.0, 0.0, 3.0],
                shape_a: [2, 3],
                b: vec![0.0; 8],
                shape_b: [4, 2],
                alpha: 16.0,
            },
        );
        AdapterFile {
            precision,
            config_json: r#"{"rank":2}"#.into(),
            adapters,
        }
    }

    #[test]
    fn round_trips_to_the_same_bytes() {
        for p in [Precision::Fp32, Precision::Fp16] {
            let f = file(p);
            let bytes = f.to_safetensors().unwrap();
            let back = AdapterFile::parse(&bytes).unwrap();
            assert_eq!(back, f);
            assert_eq!(back.to_safetensors().unwrap(), bytes);
            assert_eq!(back.parameter_count(), 6 + 8 + 1);
        }
    }

    #[test]
    fn refuses_what_does_not_fit() {
        let mut f = file(Precision::Fp32);
        f.adapters.get_mut("blocks.0.attn.q_proj").unwrap().shape_b = [2, 4];
        f.adapters.get_mut("blocks.0.attn.q_proj").unwrap().b = vec![0.0; 8];
        let err = AdapterFile::parse(&f.to_safetensors().unwrap()).unwrap_err();
        assert!(err.to_string().contains("ranks differ"), "{err}");
        assert!(AdapterFile::parse(b"short").is_err());
        let mut huge = vec![0xff; 16];
        huge[7] = 0;
        assert!(
            AdapterFile::parse(&huge)
                .unwrap_err()
                .to_string()
                .contains("header of")
        );
    }
}
