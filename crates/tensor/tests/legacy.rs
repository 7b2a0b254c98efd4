//! The Python engine's legacy `gradient.GradientPackage`: pinned bytes as a
//! protobuf writer lays them out, file-order flattening, conversion to the
//! range-readable format, and hostile packages.

use prost::Message;
use r3mes_tensor::legacy::{self, proto};
use r3mes_tensor::{Error, Format, GradientIndex, Limits, Order, flatten, protobuf};

/// `GradientPackage { gradients: [{ data: [1.0, 2.0], shape: [2], dtype: "torch.float32", name: "w" }],
/// training_round_id: 5, miner_address: "m", timestamp: 7 }`, field by field.
#[rustfmt::skip]
const PINNED: &str = concat!(
    "0a1f",                                             // gradients: one tensor of 31 bytes
    "0a08", "0000803f", "00000040",                     //   data: packed floats 1.0, 2.0
    "120102",                                           //   shape: packed [2]
    "1a0d", "746f7263682e666c6f61743332",               //   dtype: "torch.float32"
    "220177",                                           //   name: "w"
    "1805",                                             // training_round_id: 5
    "22016d",                                           // miner_address: "m"
    "3007",                                             // timestamp: 7
);

#[test]
fn pinned_bytes_decode() {
    let bytes = hex::decode(PINNED).unwrap();
    assert_eq!(
        r3mes_tensor::detect(&bytes).unwrap(),
        Format::LegacyProtobuf
    );
    let g = r3mes_tensor::decode(&bytes, None, &Limits::default()).unwrap();
    assert_eq!(g.format, Format::LegacyProtobuf);
    assert_eq!(g.tensors.len(), 1);
    assert_eq!(g.tensors[0].name, "w");
    assert_eq!(g.tensors[0].shape, [2]);
    assert_eq!(flatten(&g, Order::File), [1.0, 2.0]);
    let meta: Vec<(&str, &str)> = g
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        meta,
        [("miner_id", "m"), ("timestamp", "7"), ("window_id", "5")]
    );
    // prost writes the same bytes: the pinned layout is the standard one.
    assert_eq!(
        proto::GradientPackage::decode(bytes.as_slice())
            .unwrap()
            .encode_to_vec(),
        bytes
    );
}

fn tensor(name: &str, data: Vec<f32>, shape: Vec<i64>) -> proto::GradientTensor {
    proto::GradientTensor {
        data,
        shape,
        dtype: "torch.float32".into(),
        name: name.into(),
    }
}

fn package() -> proto::GradientPackage {
    proto::GradientPackage {
        gradients: vec![
            tensor(
                "z.grad_b",
                vec![5.0, 6.0, f32::NAN, f32::INFINITY],
                vec![2, 2],
            ),
            tensor("a.grad_a", vec![1.0, -0.0, 3.0], vec![3]),
            tensor("m.grad_alpha", vec![0.125], vec![]),
        ],
        metadata: [("lr".to_string(), "1e-4".to_string())].into(),
        training_round_id: 12,
        miner_address: "remes1abc".into(),
        gradient_hash: "deadbeef".into(),
        timestamp: 1_700_000_000,
    }
}

#[test]
fn file_order_is_repeated_field_order_and_conversion_keeps_everything() {
    let bytes = package().encode_to_vec();
    let g = legacy::decode(&bytes, &Limits::default()).unwrap();
    let file: Vec<u64> = flatten(&g, Order::File)
        .iter()
        .map(|v| v.to_bits())
        .collect();
    let want: Vec<u64> = [5.0f32, 6.0, f32::NAN, f32::INFINITY, 1.0, -0.0, 3.0, 0.125]
        .iter()
        .map(|v| f64::from(*v).to_bits())
        .collect();
    assert_eq!(file, want);
    assert_eq!(g.metadata["gradient_hash"], "deadbeef");
    assert_eq!(g.metadata["lr"], "1e-4");

    // Converted, it becomes range-readable with the same flat vector and metadata.
    let converted = protobuf::encode(&g).unwrap();
    let header = r3mes_tensor::protobuf::proto::GradientFile::decode(converted.as_slice())
        .unwrap()
        .header
        .unwrap();
    assert_eq!(header.window_id, Some(12));
    assert_eq!(header.miner_id.as_deref(), Some("remes1abc"));
    let back = protobuf::decode(&converted, &Limits::default()).unwrap();
    assert_eq!(back.metadata, g.metadata);
    for order in [Order::File, Order::Canonical] {
        let a: Vec<u64> = flatten(&back, order).iter().map(|v| v.to_bits()).collect();
        let b: Vec<u64> = flatten(&g, order).iter().map(|v| v.to_bits()).collect();
        assert_eq!(a, b);
    }
}

#[test]
fn no_index_for_legacy_files() {
    let bytes = package().encode_to_vec();
    let err = GradientIndex::from_bytes(&bytes, &Limits::default()).unwrap_err();
    assert!(
        matches!(&err, Error::Unsupported(m) if m.contains("convert")),
        "{err}"
    );
}

#[test]
fn truncation_never_panics_and_mostly_fails() {
    let bytes = package().encode_to_vec();
    let mut errors = 0;
    for cut in 0..bytes.len() {
        // A cut on a field boundary is a valid, shorter package: the format has no end marker.
        if legacy::decode(&bytes[..cut], &Limits::default()).is_err() {
            errors += 1;
        }
    }
    assert!(
        errors * 10 >= bytes.len() * 9,
        "{errors} errors for {} cuts",
        bytes.len()
    );
}

#[test]
fn hostile_packages_are_typed_errors() {
    let limits = Limits::default();
    let mut p = package();
    p.gradients[0].shape = vec![3, 2];
    assert!(
        matches!(legacy::decode(&p.encode_to_vec(), &limits), Err(Error::Shape { name, .. }) if name == "z.grad_b")
    );
    let mut p = package();
    p.gradients[0].shape = vec![i64::MAX, i64::MAX];
    assert!(matches!(
        legacy::decode(&p.encode_to_vec(), &limits),
        Err(Error::Shape { .. })
    ));
    let mut p = package();
    p.gradients[2].name = "a.grad_a".into();
    assert!(matches!(
        legacy::decode(&p.encode_to_vec(), &limits),
        Err(Error::DuplicateTensor(_))
    ));
    let mut p = package();
    p.gradients[0].dtype = "torch.complex64".into();
    assert!(matches!(
        legacy::decode(&p.encode_to_vec(), &limits),
        Err(Error::UnknownDType(_))
    ));
    let mut p = package();
    p.gradients[1].shape = vec![1; 65];
    p.gradients[1].data = vec![1.0];
    assert!(matches!(
        legacy::decode(&p.encode_to_vec(), &limits),
        Err(Error::Limit { .. })
    ));
    let few = Limits {
        max_tensors: 2,
        ..limits
    };
    assert!(matches!(
        legacy::decode(&package().encode_to_vec(), &few),
        Err(Error::Limit { .. })
    ));
    // Framing: a length past the end, an overlong varint, a reserved wire type.
    for bad in [
        &[0x0a, 0x05, 0x00][..],
        &[
            0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ],
        &[0x0f],
    ] {
        assert!(
            matches!(legacy::decode(bad, &limits), Err(Error::Malformed { .. })),
            "{bad:?}"
        );
    }
}
