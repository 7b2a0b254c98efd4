//! The Python engine's legacy protobuf, `gradient.GradientPackage`
//! (`proto/gradient/legacy.proto`): read-only. Its floats are packed inside
//! each tensor message, so nothing short of the whole file says where an
//! element lies; `convert` upgrades such a file to r3mes' protobuf.
//!
//! Each `GradientTensor` becomes an f32 tensor named by its `name`, in
//! repeated-field order; its `shape` must hold exactly as many elements as
//! `data` (an empty shape is a scalar), and its `dtype` string, when set, must
//! be a dtype Python would name (`torch.float32`, `float16`, ...): the values
//! are f32 whatever it says. The `metadata` map is the gradient's metadata,
//! plus the package fields under r3mes' keys: `miner_address` as `miner_id`,
//! `training_round_id` as `window_id`, `timestamp` as `timestamp`, and
//! `gradient_hash` as `gradient_hash`, each only when set (proto3 cannot tell
//! an unset field from 0 or ""). A map entry that disagrees with such a field
//! is an error.
//!
//! Before prost decodes anything, a walk over the wire format checks the
//! framing and counts tensors, elements and dimensions against [`Limits`], so
//! the decoded form never grows past them.

/// Types generated from `legacy.proto` (prost), for writers and tests.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/gradient.rs"));
}

use prost::Message;

use crate::protobuf::MAX_DIMS;
use crate::protobuf::wire::{self, Fields};
use crate::{DType, Error, Format, Gradient, Limits, Result, Tensor, element_count, metadata_keys};

/// Name in errors.
const NAME: &str = "legacy-protobuf";

/// Decodes a whole `gradient.GradientPackage`.
pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Gradient> {
    prescan(bytes, limits)?;
    let package = proto::GradientPackage::decode(bytes)
        .map_err(|e| Error::malformed(NAME, format!("GradientPackage: {e}")))?;
    let mut tensors = Vec::with_capacity(package.gradients.len());
    for t in package.gradients {
        if !t.dtype.is_empty() {
            DType::from_python_name(&t.dtype)?;
        }
        let shape = t
            .shape
            .iter()
            .map(|&d| u64::try_from(d))
            .collect::<std::result::Result<Vec<u64>, _>>()
            .map_err(|_| Error::Shape {
                name: t.name.clone(),
                detail: format!("negative dimension in shape {:?}", t.shape),
            })?;
        if element_count(&shape) != Some(t.data.len() as u64) {
            return Err(Error::Shape {
                name: t.name,
                detail: format!(
                    "shape {shape:?} does not hold the {} values of its data",
                    t.data.len()
                ),
            });
        }
        let data = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
        tensors.push(Tensor {
            name: t.name,
            dtype: DType::F32,
            shape,
            data,
        });
    }
    let mut metadata = package.metadata;
    let fields = [
        (metadata_keys::MINER_ID, package.miner_address),
        (metadata_keys::WINDOW_ID, nonzero(package.training_round_id)),
        (metadata_keys::TIMESTAMP, nonzero(package.timestamp)),
        ("gradient_hash", package.gradient_hash),
    ];
    for (key, value) in fields {
        if value.is_empty() {
            continue;
        }
        if let Some(old) = metadata.get(key)
            && *old != value
        {
            return Err(Error::malformed(
                NAME,
                format!("metadata {key:?} = {old:?} disagrees with the package field's {value:?}"),
            ));
        }
        metadata.insert(key.to_string(), value);
    }
    Gradient::new(Format::LegacyProtobuf, metadata, tensors)
}

/// `value` in decimal, or "" for 0 (proto3's unset).
fn nonzero<T: PartialEq + Default + ToString>(value: T) -> String {
    if value == T::default() {
        String::new()
    } else {
        value.to_string()
    }
}

/// Checks framing and counts against the limits without allocating.
fn prescan(bytes: &[u8], limits: &Limits) -> Result<()> {
    let bad = |detail: String| Error::malformed(NAME, detail);
    let mut tensors = 0u64;
    let mut elements = 0u64;
    for field in Fields::new(bytes) {
        let field = field.map_err(bad)?;
        if field.number != 1 || field.wire_type != wire::LEN {
            continue;
        }
        tensors += 1;
        Limits::check("tensors in one file", tensors, limits.max_tensors)?;
        let mut dims = 0u64;
        for inner in Fields::new(field.payload) {
            let inner = inner.map_err(|e| bad(format!("gradient tensor {tensors}: {e}")))?;
            match (inner.number, inner.wire_type) {
                (1, wire::LEN) => elements = elements.saturating_add(inner.value / 4),
                (1, 5) => elements = elements.saturating_add(1),
                (2, wire::LEN) => {
                    dims += inner.payload.iter().filter(|b| **b < 0x80).count() as u64
                }
                (2, 0) => dims += 1,
                (3 | 4, wire::LEN) => {
                    Limits::check("string bytes", inner.value, limits.max_string_bytes)?
                }
                _ => {}
            }
        }
        Limits::check("dimensions of one tensor", dims, MAX_DIMS)?;
        Limits::check("total elements", elements, limits.max_elements)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn package() -> proto::GradientPackage {
        proto::GradientPackage {
            gradients: vec![
                proto::GradientTensor {
                    data: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
                    shape: vec![2, 3],
                    dtype: "torch.float32".into(),
                    name: "layer.grad_a".into(),
                },
                proto::GradientTensor {
                    data: vec![0.5],
                    shape: vec![],
                    dtype: String::new(),
                    name: "alpha".into(),
                },
            ],
            metadata: BTreeMap::from([("lr".to_string(), "0.001".to_string())]),
            training_round_id: 9,
            miner_address: "remes1xyz".into(),
            gradient_hash: String::new(),
            timestamp: 1_700_000_000,
        }
    }

    #[test]
    fn decodes_tensors_in_order_with_metadata() {
        let g = decode(&package().encode_to_vec(), &Limits::default()).unwrap();
        assert_eq!(g.format, Format::LegacyProtobuf);
        assert_eq!(g.tensors[0].name, "layer.grad_a");
        assert_eq!(g.tensors[0].shape, [2, 3]);
        assert_eq!(g.tensors[0].to_f32(), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(g.tensors[1].shape, Vec::<u64>::new());
        assert_eq!(g.metadata["miner_id"], "remes1xyz");
        assert_eq!(g.metadata["window_id"], "9");
        assert_eq!(g.metadata["timestamp"], "1700000000");
        assert_eq!(g.metadata["lr"], "0.001");
        assert!(!g.metadata.contains_key("gradient_hash"));
    }

    #[test]
    fn bad_packages_are_typed_errors() {
        let mut p = package();
        p.gradients[0].shape = vec![4, 2];
        assert!(matches!(
            decode(&p.encode_to_vec(), &Limits::default()),
            Err(Error::Shape { .. })
        ));
        let mut p = package();
        p.gradients[0].shape = vec![-2, -3];
        assert!(matches!(
            decode(&p.encode_to_vec(), &Limits::default()),
            Err(Error::Shape { .. })
        ));
        let mut p = package();
        p.gradients[1].name = "layer.grad_a".into();
        assert!(matches!(
            decode(&p.encode_to_vec(), &Limits::default()),
            Err(Error::DuplicateTensor(_))
        ));
        let mut p = package();
        p.gradients[0].dtype = "complex64".into();
        assert!(matches!(
            decode(&p.encode_to_vec(), &Limits::default()),
            Err(Error::UnknownDType(_))
        ));
        let mut p = package();
        p.metadata.insert("miner_id".into(), "someone else".into());
        assert!(
            decode(&p.encode_to_vec(), &Limits::default())
                .unwrap_err()
                .to_string()
                .contains("disagrees")
        );
        let few = Limits {
            max_elements: 6,
            ..Limits::default()
        };
        assert!(matches!(
            decode(&package().encode_to_vec(), &few),
            Err(Error::Limit { .. })
        ));
        let bytes = package().encode_to_vec();
        assert!(matches!(
            decode(&bytes[..bytes.len() - 1], &Limits::default()),
            Err(Error::Malformed { .. })
        ));
    }
}
