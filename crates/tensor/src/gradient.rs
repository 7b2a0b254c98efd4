//! [`Gradient`]: what every format decodes to — named tensors (little-endian
//! bytes in C order) plus string metadata — and the seed's typed
//! `LoRAGradientUpdate` / `LoRAAdapterGradient` on top of it.

use std::collections::{BTreeMap, HashSet};

use crate::{DType, Error, Format, Result};

/// String metadata carried with a gradient (safetensors' `__metadata__`, the
/// protobuf header, a pickle package's `metadata` dict as JSON values).
pub type Metadata = BTreeMap<String, String>;

/// Metadata keys of the seed's `LoRAGradientUpdate`.
pub mod metadata_keys {
    /// The miner's address.
    pub const MINER_ID: &str = "miner_id";
    /// The data shard the gradient was computed on.
    pub const DATA_SHARD_ID: &str = "data_shard_id";
    /// Hash of the frozen backbone.
    pub const BACKBONE_HASH: &str = "backbone_hash";
    /// Training window (round) id.
    pub const WINDOW_ID: &str = "window_id";
    /// Unix timestamp (seconds) of the update.
    pub const TIMESTAMP: &str = "timestamp";
}

/// One named tensor: element bytes in little-endian, C (row-major) order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tensor {
    /// Name (`{layer_id}.grad_a`, or a key path such as `layers.0.grad_a`).
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Shape; empty for a scalar.
    pub shape: Vec<u64>,
    /// `product(shape) * dtype.size()` bytes.
    pub data: Vec<u8>,
}

/// Number of elements of `shape`, refusing overflow.
pub fn element_count(shape: &[u64]) -> Option<u64> {
    shape.iter().try_fold(1u64, |acc, d| acc.checked_mul(*d))
}

impl Tensor {
    /// A tensor, checking that the bytes fit the shape and dtype.
    pub fn new(
        name: impl Into<String>,
        dtype: DType,
        shape: Vec<u64>,
        data: Vec<u8>,
    ) -> Result<Self> {
        let name = name.into();
        let expected = element_count(&shape)
            .and_then(|n| n.checked_mul(dtype.size() as u64))
            .ok_or_else(|| Error::Shape {
                name: name.clone(),
                detail: format!("shape {shape:?} overflows"),
            })?;
        if expected != data.len() as u64 {
            return Err(Error::Shape {
                name,
                detail: format!(
                    "shape {shape:?} of {} needs {expected} bytes, found {}",
                    dtype.name(),
                    data.len()
                ),
            });
        }
        Ok(Self {
            name,
            dtype,
            shape,
            data,
        })
    }

    /// A 1-D f32 tensor.
    pub fn from_f32(name: impl Into<String>, values: &[f32]) -> Self {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Self {
            name: name.into(),
            dtype: DType::F32,
            shape: vec![values.len() as u64],
            data,
        }
    }

    /// Number of elements.
    pub fn elements(&self) -> u64 {
        (self.data.len() / self.dtype.size()) as u64
    }

    /// The elements as f64, in C order.
    pub fn to_f64(&self) -> Vec<f64> {
        let mut out = Vec::new();
        self.dtype.extend_f64(&self.data, &mut out);
        out
    }

    /// The elements as f32 (f64 and integer values rounded), in C order.
    pub fn to_f32(&self) -> Vec<f32> {
        match self.dtype {
            DType::F32 => self
                .data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            _ => self.to_f64().into_iter().map(|v| v as f32).collect(),
        }
    }
}

/// A decoded gradient file.
#[derive(Debug, Clone, PartialEq)]
pub struct Gradient {
    /// The format it was read from (or will be written as).
    pub format: Format,
    /// Metadata.
    pub metadata: Metadata,
    /// Tensors in file order.
    pub tensors: Vec<Tensor>,
}

impl Gradient {
    /// A gradient, refusing duplicate tensor names.
    pub fn new(format: Format, metadata: Metadata, tensors: Vec<Tensor>) -> Result<Self> {
        let mut seen = HashSet::with_capacity(tensors.len());
        for t in &tensors {
            if !seen.insert(t.name.as_str()) {
                return Err(Error::DuplicateTensor(t.name.clone()));
            }
        }
        Ok(Self {
            format,
            metadata,
            tensors,
        })
    }

    /// Total elements over all tensors.
    pub fn elements(&self) -> u64 {
        self.tensors.iter().map(Tensor::elements).sum()
    }

    /// Total tensor bytes.
    pub fn tensor_bytes(&self) -> u64 {
        self.tensors.iter().map(|t| t.data.len() as u64).sum()
    }

    /// A tensor by name.
    pub fn tensor(&self, name: &str) -> Option<&Tensor> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// The seed's `LoRAAdapterGradient`: gradients of one layer's adapter.
#[derive(Debug, Clone, PartialEq)]
pub struct LoRAAdapterGradient {
    /// Layer id (`blocks.0.attn.q_proj`, ...).
    pub layer_id: String,
    /// Gradient of matrix A (rank x input_dim), row-major.
    pub grad_a: Vec<f32>,
    /// Shape of A: `[rank, input_dim]`.
    pub shape_a: [u64; 2],
    /// Gradient of matrix B (output_dim x rank), row-major.
    pub grad_b: Vec<f32>,
    /// Shape of B: `[output_dim, rank]`.
    pub shape_b: [u64; 2],
    /// Gradient of the scaling factor alpha.
    pub grad_alpha: f32,
}

/// The seed's `LoRAGradientUpdate`: every adapter's gradient plus who made it and on what.
#[derive(Debug, Clone, PartialEq)]
pub struct LoRAGradientUpdate {
    /// Adapters by layer id.
    pub adapters: BTreeMap<String, LoRAAdapterGradient>,
    /// The miner's address.
    pub miner_id: String,
    /// The data shard the gradient was computed on.
    pub data_shard_id: u64,
    /// Hash of the frozen backbone.
    pub backbone_hash: String,
    /// Training window (round) id.
    pub window_id: u64,
    /// Unix timestamp in seconds.
    pub timestamp: i64,
}

impl LoRAGradientUpdate {
    /// As a [`Gradient`]: tensors `{layer_id}.grad_a`, `.grad_b`, `.grad_alpha` (f32),
    /// update fields in the metadata.
    pub fn to_gradient(&self, format: Format) -> Result<Gradient> {
        use metadata_keys::*;
        let mut tensors = Vec::with_capacity(self.adapters.len() * 3);
        for (layer, adapter) in &self.adapters {
            let f32_bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
            tensors.push(Tensor::new(
                format!("{layer}.grad_a"),
                DType::F32,
                adapter.shape_a.to_vec(),
                f32_bytes(&adapter.grad_a),
            )?);
            tensors.push(Tensor::new(
                format!("{layer}.grad_b"),
                DType::F32,
                adapter.shape_b.to_vec(),
                f32_bytes(&adapter.grad_b),
            )?);
            tensors.push(Tensor::new(
                format!("{layer}.grad_alpha"),
                DType::F32,
                vec![],
                adapter.grad_alpha.to_le_bytes().to_vec(),
            )?);
        }
        let metadata = Metadata::from([
            (MINER_ID.to_string(), self.miner_id.clone()),
            (DATA_SHARD_ID.to_string(), self.data_shard_id.to_string()),
            (BACKBONE_HASH.to_string(), self.backbone_hash.clone()),
            (WINDOW_ID.to_string(), self.window_id.to_string()),
            (TIMESTAMP.to_string(), self.timestamp.to_string()),
        ]);
        Gradient::new(format, metadata, tensors)
    }

    /// Reads an update back from a [`Gradient`] whose tensors follow the
    /// `{layer_id}.grad_a|grad_b|grad_alpha` naming.
    pub fn from_gradient(gradient: &Gradient) -> Result<Self> {
        use metadata_keys::*;
        let field = |key: &str| gradient.metadata.get(key).cloned().unwrap_or_default();
        let number = |key: &str| -> Result<u64> {
            let text = field(key);
            if text.is_empty() {
                return Ok(0);
            }
            text.parse().map_err(|_| {
                Error::malformed(
                    "gradient",
                    format!("metadata {key} = {text:?} is not a number"),
                )
            })
        };
        let mut adapters: BTreeMap<String, LoRAAdapterGradient> = BTreeMap::new();
        for tensor in &gradient.tensors {
            let (layer, part) = tensor.name.rsplit_once('.').ok_or_else(|| Error::Shape {
                name: tensor.name.clone(),
                detail: "not a LoRA gradient name (layer.grad_a|grad_b|grad_alpha)".into(),
            })?;
            let adapter =
                adapters
                    .entry(layer.to_string())
                    .or_insert_with(|| LoRAAdapterGradient {
                        layer_id: layer.to_string(),
                        grad_a: Vec::new(),
                        shape_a: [0, 0],
                        grad_b: Vec::new(),
                        shape_b: [0, 0],
                        grad_alpha: 0.0,
                    });
            let matrix = |t: &Tensor| -> Result<[u64; 2]> {
                match t.shape.as_slice() {
                    [r, c] => Ok([*r, *c]),
                    other => Err(Error::Shape {
                        name: t.name.clone(),
                        detail: format!("expected a matrix, shape {other:?}"),
                    }),
                }
            };
            match part {
                "grad_a" => {
                    adapter.shape_a = matrix(tensor)?;
                    adapter.grad_a = tensor.to_f32();
                }
                "grad_b" => {
                    adapter.shape_b = matrix(tensor)?;
                    adapter.grad_b = tensor.to_f32();
                }
                "grad_alpha" => {
                    adapter.grad_alpha =
                        tensor
                            .to_f32()
                            .first()
                            .copied()
                            .ok_or_else(|| Error::Shape {
                                name: tensor.name.clone(),
                                detail: "empty alpha gradient".into(),
                            })?
                }
                other => {
                    return Err(Error::Shape {
                        name: tensor.name.clone(),
                        detail: format!("unknown LoRA part {other:?}"),
                    });
                }
            }
        }
        let timestamp = field(TIMESTAMP);
        Ok(Self {
            adapters,
            miner_id: field(MINER_ID),
            data_shard_id: number(DATA_SHARD_ID)?,
            backbone_hash: field(BACKBONE_HASH),
            window_id: number(WINDOW_ID)?,
            timestamp: if timestamp.is_empty() {
                0
            } else {
                timestamp.parse().map_err(|_| {
                    Error::malformed(
                        "gradient",
                        format!("metadata timestamp = {timestamp:?} is not a number"),
                    )
                })?
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensors_check_their_bytes() {
        assert!(Tensor::new("a", DType::F32, vec![2, 3], vec![0; 24]).is_ok());
        assert!(Tensor::new("a", DType::F32, vec![2, 3], vec![0; 23]).is_err());
        assert!(Tensor::new("a", DType::F64, vec![u64::MAX, 3], vec![]).is_err());
        assert_eq!(
            Tensor::new("s", DType::F64, vec![], vec![0; 8])
                .unwrap()
                .elements(),
            1
        );
    }

    #[test]
    fn duplicate_names_are_refused() {
        let t = Tensor::from_f32("x", &[1.0]);
        let err = Gradient::new(Format::Protobuf, Metadata::new(), vec![t.clone(), t]).unwrap_err();
        assert!(matches!(err, Error::DuplicateTensor(n) if n == "x"));
    }

    #[test]
    fn lora_update_round_trips_through_a_gradient() {
        let adapter = LoRAAdapterGradient {
            layer_id: "blocks.0.q".into(),
            grad_a: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            shape_a: [2, 3],
            grad_b: vec![0.5; 8],
            shape_b: [4, 2],
            grad_alpha: -0.25,
        };
        let update = LoRAGradientUpdate {
            adapters: BTreeMap::from([("blocks.0.q".to_string(), adapter)]),
            miner_id: "remes1abc".into(),
            data_shard_id: 7,
            backbone_hash: "deadbeef".into(),
            window_id: 1000,
            timestamp: 1_700_000_000,
        };
        let g = update.to_gradient(Format::Protobuf).unwrap();
        assert_eq!(g.tensors.len(), 3);
        assert_eq!(LoRAGradientUpdate::from_gradient(&g).unwrap(), update);
    }
}
