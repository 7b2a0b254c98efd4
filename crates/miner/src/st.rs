//! Safetensors reading and writing shared by the backbone and adapter files,
//! with limits checked before the `safetensors` crate parses anything.
//!
//! Writing is canonical: the `safetensors` crate orders tensors by dtype
//! alignment then name, and the files carry exactly one metadata entry (a
//! JSON document with a fixed field order), so the same model always gives
//! the same bytes.

use std::collections::{BTreeMap, HashMap};

pub(crate) use safetensors::Dtype;
use safetensors::tensor::TensorView;

use crate::{Error, Result};

/// Largest header accepted (the JSON after the 8-byte length).
pub const MAX_HEADER_BYTES: u64 = r3mes_aggregate::MAX_HEADER_BYTES;
/// Most tensors a file may hold.
pub const MAX_TENSORS: usize = r3mes_aggregate::MAX_TENSORS;

/// One tensor as stored: dtype, shape and little-endian bytes.
#[derive(Debug)]
pub(crate) struct Raw<'a> {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: &'a [u8],
}

/// A parsed file: its metadata and tensors by name.
pub(crate) struct Parsed<'a> {
    pub metadata: BTreeMap<String, String>,
    pub tensors: BTreeMap<String, Raw<'a>>,
}

/// Parses `bytes` within the limits (`r3mes_aggregate::parse_safetensors`);
/// `err` wraps a message into the file kind's error.
pub(crate) fn parse(bytes: &[u8], err: fn(String) -> Error) -> Result<Parsed<'_>> {
    let (st, metadata) = r3mes_aggregate::parse_safetensors(bytes, err)?;
    let mut tensors = BTreeMap::new();
    for (name, view) in st.iter() {
        tensors.insert(
            name.to_string(),
            Raw {
                dtype: view.dtype(),
                shape: view.shape().to_vec(),
                data: view.data(),
            },
        );
    }
    Ok(Parsed { metadata, tensors })
}

impl Raw<'_> {
    /// The values as f32 (from F32, F16 or BF16), refusing non-finite ones.
    pub fn floats(&self, name: &str, err: fn(String) -> Error) -> Result<Vec<f32>> {
        let values: Vec<f32> = match self.dtype {
            Dtype::F32 => self
                .data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => self
                .data
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::BF16 => self
                .data
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            other => {
                return Err(err(format!(
                    "{name}: dtype {other:?}, expected F32, F16 or BF16"
                )));
            }
        };
        if values.iter().any(|v| !v.is_finite()) {
            return Err(err(format!("{name}: non-finite value")));
        }
        Ok(values)
    }

    /// Checks the shape.
    pub fn expect_shape(
        &self,
        name: &str,
        shape: &[usize],
        err: fn(String) -> Error,
    ) -> Result<()> {
        if self.shape != shape {
            return Err(err(format!(
                "{name}: shape {:?}, expected {shape:?}",
                self.shape
            )));
        }
        Ok(())
    }
}

/// One tensor to write.
pub(crate) struct Owned {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl Owned {
    /// An f32 tensor.
    pub fn f32(name: impl Into<String>, shape: Vec<usize>, values: &[f32]) -> Self {
        Self {
            name: name.into(),
            dtype: Dtype::F32,
            shape,
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    /// An f16 tensor (values rounded to half precision).
    pub fn f16(name: impl Into<String>, shape: Vec<usize>, values: &[f32]) -> Self {
        Self {
            name: name.into(),
            dtype: Dtype::F16,
            shape,
            data: values
                .iter()
                .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                .collect(),
        }
    }
}

/// Serialises `tensors` with the single metadata entry `key = value`.
pub(crate) fn write(tensors: &[Owned], key: &str, value: String) -> Result<Vec<u8>> {
    let mut views = Vec::with_capacity(tensors.len());
    for t in tensors {
        let view =
            TensorView::new(t.dtype, t.shape.clone(), &t.data).map_err(|e| Error::Shape {
                name: t.name.clone(),
                detail: e.to_string(),
            })?;
        views.push((t.name.as_str(), view));
    }
    let metadata = HashMap::from([(key.to_string(), value)]);
    safetensors::serialize(views, Some(metadata)).map_err(|e| Error::Shape {
        name: key.to_string(),
        detail: e.to_string(),
    })
}
