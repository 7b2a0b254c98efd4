//! r3mes' protobuf format end to end: round trips of every dtype, agreement
//! with a standard protobuf codec (prost) in both directions, the same flat
//! vector as safetensors, and hostile files refused with typed errors.

mod common;

use common::{bits, noise};
use prost::Message;
use r3mes_tensor::protobuf::{self, proto};
use r3mes_tensor::{
    DType, Error, Format, Gradient, Limits, LoRAAdapterGradient, LoRAGradientUpdate, Metadata,
    Order, Tensor, flatten, metadata_keys, safetensors_io,
};

/// One tensor of every dtype (random bits, NaNs included), plus empty and scalar tensors.
fn every_dtype() -> Gradient {
    let mut tensors = Vec::new();
    for (i, dtype) in DType::ALL.into_iter().enumerate() {
        let shape = vec![3, 1 + i as u64];
        let elements = 3 * (1 + i);
        let mut data = noise(i as u64, elements * dtype.size());
        if dtype == DType::Bool {
            data.iter_mut().for_each(|b| *b &= 1);
        }
        tensors.push(
            Tensor::new(format!("t.{}", dtype.name()), dtype, shape, data).expect("valid tensor"),
        );
    }
    tensors.push(Tensor::new("empty", DType::F32, vec![4, 0], vec![]).expect("valid tensor"));
    tensors
        .push(Tensor::new("scalar", DType::BF16, vec![], vec![0x80, 0x3f]).expect("valid tensor"));
    let metadata = Metadata::from([
        (metadata_keys::MINER_ID.to_string(), "remes1qqq".to_string()),
        (metadata_keys::TIMESTAMP.to_string(), "-5".to_string()),
        (
            metadata_keys::WINDOW_ID.to_string(),
            "18446744073709551615".to_string(),
        ),
        ("extra".to_string(), "ünïcode ✓".to_string()),
    ]);
    Gradient::new(Format::Protobuf, metadata, tensors).expect("unique names")
}

#[test]
fn every_dtype_round_trips() {
    let g = every_dtype();
    let bytes = protobuf::encode(&g).unwrap();
    assert_eq!(r3mes_tensor::detect(&bytes).unwrap(), Format::Protobuf);
    let back = r3mes_tensor::decode(&bytes, None, &Limits::default()).unwrap();
    assert_eq!(back, g);
    let mut streamed = Vec::new();
    protobuf::write_to(&g, &mut streamed).unwrap();
    assert_eq!(streamed, bytes);
}

#[test]
fn flat_vectors_agree_with_safetensors() {
    let mut g = every_dtype();
    let pb = protobuf::decode(&protobuf::encode(&g).unwrap(), &Limits::default()).unwrap();
    let st =
        safetensors_io::decode(&safetensors_io::encode(&g).unwrap(), &Limits::default()).unwrap();
    let canonical = bits(&flatten(&g, Order::Canonical));
    assert_eq!(bits(&flatten(&pb, Order::Canonical)), canonical);
    assert_eq!(bits(&flatten(&st, Order::Canonical)), canonical);
    // Protobuf keeps the gradient's own order; safetensors its offset order.
    assert_eq!(
        bits(&flatten(&pb, Order::File)),
        bits(&flatten(&g, Order::File))
    );
    g.format = Format::Safetensors;
    assert_eq!(st.metadata, g.metadata);
}

#[test]
fn lora_update_round_trips() {
    let adapter = |layer: &str, k: f32| LoRAAdapterGradient {
        layer_id: layer.into(),
        grad_a: (0..8).map(|i| i as f32 * k).collect(),
        shape_a: [2, 4],
        grad_b: (0..12).map(|i| -(i as f32) * k).collect(),
        shape_b: [6, 2],
        grad_alpha: k,
    };
    let update = LoRAGradientUpdate {
        adapters: [("blocks.0.q", 0.5), ("blocks.1.v", 0.25)]
            .into_iter()
            .map(|(l, k)| (l.to_string(), adapter(l, k)))
            .collect(),
        miner_id: "remes1miner".into(),
        data_shard_id: 3,
        backbone_hash: "ab".repeat(32),
        window_id: 77,
        timestamp: 1_700_000_123,
    };
    let bytes = protobuf::encode(&update.to_gradient(Format::Protobuf).unwrap()).unwrap();
    let header = proto::GradientFile::decode(bytes.as_slice())
        .unwrap()
        .header
        .unwrap();
    assert_eq!(header.miner_id.as_deref(), Some("remes1miner"));
    assert_eq!(
        (header.data_shard_id, header.window_id, header.timestamp),
        (Some(3), Some(77), Some(1_700_000_123))
    );
    assert!(header.metadata.is_empty());
    let back =
        LoRAGradientUpdate::from_gradient(&protobuf::decode(&bytes, &Limits::default()).unwrap())
            .unwrap();
    assert_eq!(back, update);
}

#[test]
fn a_standard_protobuf_codec_reads_and_writes_the_format() {
    let g = every_dtype();
    let bytes = protobuf::encode(&g).unwrap();
    // prost reads our file as a plain GradientFile...
    let file = proto::GradientFile::decode(bytes.as_slice()).unwrap();
    assert_eq!(file.magic, "r3mes.gradient.v1");
    let header = file.header.clone().unwrap();
    assert_eq!(header.tensors.len(), g.tensors.len());
    for (info, tensor) in header.tensors.iter().zip(&g.tensors) {
        assert_eq!(info.name, tensor.name);
        assert_eq!(info.dtype, tensor.dtype.name());
        assert_eq!(info.shape, tensor.shape);
        let (start, end) = (info.offset as usize, (info.offset + info.length) as usize);
        assert_eq!(&file.data[start..end], tensor.data.as_slice());
        assert_eq!(info.offset % protobuf::ALIGNMENT, 0);
    }
    // ...and what prost writes (no padding, as a Python writer would) reads back.
    let plain = proto::GradientFile {
        padding: Vec::new(),
        ..file
    }
    .encode_to_vec();
    assert_ne!(plain, bytes);
    assert_eq!(protobuf::decode(&plain, &Limits::default()).unwrap(), g);
}

#[test]
fn a_writer_may_leave_out_an_empty_data_field() {
    let header = proto::Header {
        tensors: vec![proto::TensorInfo {
            name: "e".into(),
            dtype: "f16".into(),
            shape: vec![0],
            offset: 0,
            length: 0,
        }],
        ..Default::default()
    };
    let file = proto::GradientFile {
        magic: "r3mes.gradient.v1".into(),
        header: Some(header),
        ..Default::default()
    };
    let g = protobuf::decode(&file.encode_to_vec(), &Limits::default()).unwrap();
    assert_eq!(g.tensors.len(), 1);
    assert_eq!(g.elements(), 0);
}

/// A file with this header and data, written by prost.
fn file_with(tensors: Vec<proto::TensorInfo>, data: Vec<u8>) -> Vec<u8> {
    let header = proto::Header {
        tensors,
        ..Default::default()
    };
    proto::GradientFile {
        magic: "r3mes.gradient.v1".into(),
        header: Some(header),
        padding: Vec::new(),
        data,
    }
    .encode_to_vec()
}

fn info(name: &str, dtype: &str, shape: &[u64], offset: u64, length: u64) -> proto::TensorInfo {
    proto::TensorInfo {
        name: name.into(),
        dtype: dtype.into(),
        shape: shape.to_vec(),
        offset,
        length,
    }
}

fn decode(bytes: &[u8]) -> Result<Gradient, Error> {
    protobuf::decode(bytes, &Limits::default())
}

#[test]
fn truncation_at_every_byte_is_a_typed_error() {
    let g = Gradient::new(
        Format::Protobuf,
        Metadata::from([("k".to_string(), "v".to_string())]),
        vec![
            Tensor::from_f32("a", &[1.0, 2.0]),
            Tensor::from_f32("b", &[3.0]),
        ],
    )
    .unwrap();
    let bytes = protobuf::encode(&g).unwrap();
    for cut in 0..bytes.len() {
        let err = decode(&bytes[..cut]).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Truncated { .. } | Error::Malformed { .. } | Error::UnknownFormat(_)
            ),
            "cut at {cut}: {err}"
        );
        assert!(
            r3mes_tensor::GradientIndex::from_bytes(&bytes[..cut], &Limits::default()).is_err(),
            "cut at {cut}"
        );
    }
    assert_eq!(decode(&bytes).unwrap(), g);
}

#[test]
fn ranges_outside_the_data_or_overlapping_are_refused() {
    let past = file_with(vec![info("a", "f32", &[2], 4, 8)], vec![0; 8]);
    assert!(
        matches!(decode(&past), Err(Error::Malformed { detail, .. }) if detail.contains("data section"))
    );
    let wrap = file_with(vec![info("a", "f32", &[2], u64::MAX - 3, 8)], vec![0; 8]);
    assert!(matches!(decode(&wrap), Err(Error::Malformed { .. })));
    let overlap = file_with(
        vec![info("a", "f32", &[2], 0, 8), info("b", "f32", &[1], 4, 4)],
        vec![0; 8],
    );
    assert!(
        matches!(decode(&overlap), Err(Error::Malformed { detail, .. }) if detail.contains("overlap"))
    );
    let same_place = file_with(
        vec![info("a", "u8", &[1], 0, 1), info("b", "u8", &[1], 0, 1)],
        vec![0; 1],
    );
    assert!(matches!(decode(&same_place), Err(Error::Malformed { .. })));
    // Empty tensors overlap nothing; gaps are fine.
    let ok = file_with(
        vec![info("a", "u8", &[1], 3, 1), info("e", "u8", &[0], 3, 0)],
        vec![0; 6],
    );
    assert_eq!(decode(&ok).unwrap().tensors.len(), 2);
}

#[test]
fn shapes_lengths_and_dtypes_are_checked() {
    let short = file_with(vec![info("a", "f32", &[3], 0, 8)], vec![0; 12]);
    assert!(matches!(decode(&short), Err(Error::Shape { name, .. }) if name == "a"));
    let overflow = file_with(vec![info("a", "f64", &[1 << 32, 1 << 32], 0, 0)], vec![]);
    assert!(matches!(decode(&overflow), Err(Error::Shape { .. })));
    let bytes_overflow = file_with(vec![info("a", "f64", &[1 << 62], 0, 0)], vec![]);
    assert!(matches!(decode(&bytes_overflow), Err(Error::Shape { .. })));
    let unknown = file_with(vec![info("a", "f128", &[1], 0, 16)], vec![0; 16]);
    assert!(matches!(decode(&unknown), Err(Error::UnknownDType(d)) if d == "f128"));
    let upper = file_with(vec![info("a", "F32", &[1], 0, 4)], vec![0; 4]);
    assert!(matches!(decode(&upper), Err(Error::UnknownDType(_))));
    let dup = file_with(
        vec![info("a", "u8", &[1], 0, 1), info("a", "u8", &[1], 1, 1)],
        vec![0; 2],
    );
    assert!(matches!(decode(&dup), Err(Error::DuplicateTensor(n)) if n == "a"));
    let dims = file_with(vec![info("a", "u8", &[1; 65], 0, 1)], vec![0; 1]);
    assert!(matches!(
        decode(&dims),
        Err(Error::Limit {
            what: "dimensions of one tensor",
            ..
        })
    ));
}

#[test]
fn limits_are_enforced_before_work() {
    let g = every_dtype();
    let bytes = protobuf::encode(&g).unwrap();
    let small_header = Limits {
        max_header_bytes: 100,
        ..Limits::default()
    };
    assert!(matches!(
        protobuf::decode(&bytes, &small_header),
        Err(Error::Limit {
            what: "header bytes",
            ..
        })
    ));
    let few_tensors = Limits {
        max_tensors: 3,
        ..Limits::default()
    };
    assert!(matches!(
        protobuf::decode(&bytes, &few_tensors),
        Err(Error::Limit {
            what: "tensors in one file",
            ..
        })
    ));
    let few_elements = Limits {
        max_elements: 10,
        ..Limits::default()
    };
    assert!(matches!(
        protobuf::decode(&bytes, &few_elements),
        Err(Error::Limit {
            what: "total elements",
            ..
        })
    ));
    // A header length of 2^63 is refused by the limit, not allocated.
    let mut huge = MAGIC.to_vec();
    huge.push(0x12);
    huge.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
    assert!(matches!(
        decode(&huge),
        Err(Error::Limit {
            what: "header bytes",
            ..
        })
    ));
}

const MAGIC: &[u8] = b"\x0a\x11r3mes.gradient.v1";

#[test]
fn framing_errors_are_typed() {
    // The data field claims more bytes than the file has, or 2^64 - 1.
    let mut past = MAGIC.to_vec();
    past.extend_from_slice(&[0x12, 0x00, 0x7a, 0x10, 1, 2]);
    assert!(matches!(decode(&past), Err(Error::Truncated { .. })));
    let mut wrap = MAGIC.to_vec();
    wrap.extend_from_slice(&[
        0x12, 0x00, 0x7a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
    ]);
    assert!(matches!(
        decode(&wrap),
        Err(Error::Truncated { .. } | Error::Malformed { .. })
    ));
    let mut overlong = MAGIC.to_vec();
    overlong.extend_from_slice(&[
        0x7a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
    ]);
    assert!(
        matches!(decode(&overlong), Err(Error::Malformed { detail, .. }) if detail.contains("varint"))
    );
    // Fields out of order, repeated, or of the wrong wire type.
    for tail in [
        &[0x7a, 0x00, 0x12, 0x00][..],
        &[0x12, 0x00, 0x12, 0x00],
        &[0x10, 0x00],
        &[0x0a, 0x00],
    ] {
        let mut bad = MAGIC.to_vec();
        bad.extend_from_slice(tail);
        assert!(
            matches!(decode(&bad), Err(Error::Malformed { .. })),
            "{tail:?}"
        );
    }
    // A header that is not a Header message.
    let mut garbage = MAGIC.to_vec();
    garbage.extend_from_slice(&[0x12, 0x02, 0xff, 0xff]);
    assert!(matches!(decode(&garbage), Err(Error::Malformed { .. })));
}

#[test]
fn metadata_may_not_name_a_header_field_twice() {
    let header = proto::Header {
        miner_id: Some("a".into()),
        metadata: [("miner_id".to_string(), "b".to_string())].into(),
        ..Default::default()
    };
    let file = proto::GradientFile {
        magic: "r3mes.gradient.v1".into(),
        header: Some(header),
        ..Default::default()
    };
    let err = decode(&file.encode_to_vec()).unwrap_err();
    assert!(err.to_string().contains("miner_id"), "{err}");
}

/// `{miner_id: "m", window_id: "7", k: "v"}` with tensors `a` = f32 [1.0, -2.0]
/// and `b` = u8 scalar 5, as this writer lays it out. A change here is a
/// change of the on-disk format.
#[rustfmt::skip]
const PINNED: &str = concat!(
    "0a11", "72336d65732e6772616469656e742e7631", // magic "r3mes.gradient.v1"
    "1229",                                       // header, 41 bytes:
    "0a016d",                                     //   miner_id "m"
    "2007",                                       //   window_id 7
    "32060a016b120176",                           //   metadata {k: v}
    "3a0d", "0a0161", "1203663332", "1a0102", "2808", //   a: f32, shape [2], offset 0, length 8
    "3a0b", "0a0162", "12027538", "2040", "2801",     //   b: u8, shape [], offset 64, length 1
    "7a41",                                       // data, 65 bytes, starting at byte 64
    "0000803f", "000000c0",                       //   a
    "0000000000000000000000000000000000000000000000000000000000000000",
    "000000000000000000000000000000000000000000000000",  // zeros to offset 64
    "05",                                         //   b
);

#[test]
fn the_layout_is_pinned() {
    let metadata = Metadata::from([
        ("miner_id".to_string(), "m".to_string()),
        ("window_id".to_string(), "7".to_string()),
        ("k".to_string(), "v".to_string()),
    ]);
    let tensors = vec![
        Tensor::from_f32("a", &[1.0, -2.0]),
        Tensor::new("b", DType::U8, vec![], vec![5]).unwrap(),
    ];
    let g = Gradient::new(Format::Protobuf, metadata, tensors).unwrap();
    let pinned = hex::decode(PINNED).unwrap();
    assert_eq!(hex::encode(protobuf::encode(&g).unwrap()), PINNED);
    assert_eq!(protobuf::decode(&pinned, &Limits::default()).unwrap(), g);
    let index = r3mes_tensor::GradientIndex::from_bytes(&pinned, &Limits::default()).unwrap();
    assert_eq!(index.header_len(), 64);
    assert_eq!(index.locate(2, Order::Canonical).unwrap().offset, 128);
}
