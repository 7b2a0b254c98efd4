//! safetensors end to end: round trips of every dtype, agreement with the
//! `safetensors` crate (Python's writer) in both directions, the fixtures
//! written by real Python, and hostile files refused with typed errors.

mod common;

use common::{bits, noise};
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use r3mes_tensor::{
    DType, Error, Format, Gradient, Limits, Metadata, Order, Tensor, flatten, safetensors_io,
};
use safetensors::{SafeTensors, View};

/// One tensor of every dtype plus empty and scalar ones, with `metadata`.
fn every_dtype(metadata: Metadata) -> Gradient {
    let mut tensors = Vec::new();
    for (i, dtype) in DType::ALL.into_iter().enumerate() {
        let elements = 2 * (1 + i);
        let mut data = noise(100 + i as u64, elements * dtype.size());
        if dtype == DType::Bool {
            data.iter_mut().for_each(|b| *b &= 1);
        }
        let name = format!("layer{}.grad_{}", i % 4, dtype.name());
        tensors.push(Tensor::new(name, dtype, vec![2, 1 + i as u64], data).expect("valid tensor"));
    }
    tensors.push(Tensor::new("empty", DType::I64, vec![0], vec![]).expect("valid tensor"));
    tensors.push(
        Tensor::new("scalar", DType::F64, vec![], 1.25f64.to_le_bytes().to_vec())
            .expect("valid tensor"),
    );
    Gradient::new(Format::Safetensors, metadata, tensors).expect("unique names")
}

/// A tensor as the crate's writer sees it.
struct CrateView<'a> {
    tensor: &'a Tensor,
    shape: Vec<usize>,
}

impl View for CrateView<'_> {
    fn dtype(&self) -> safetensors::Dtype {
        serde_json::from_value(serde_json::Value::from(
            self.tensor.dtype.safetensors_name(),
        ))
        .expect("known dtype")
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.tensor.data)
    }
    fn data_len(&self) -> usize {
        self.tensor.data.len()
    }
}

/// What the `safetensors` crate writes for `g`.
fn crate_serialize(g: &Gradient) -> Vec<u8> {
    let views = g.tensors.iter().map(|t| {
        (
            t.name.clone(),
            CrateView {
                tensor: t,
                shape: t.shape.iter().map(|d| *d as usize).collect(),
            },
        )
    });
    let metadata: Option<HashMap<String, String>> =
        (!g.metadata.is_empty()).then(|| g.metadata.clone().into_iter().collect());
    safetensors::serialize(views, metadata).expect("crate serializes")
}

#[test]
fn every_dtype_round_trips() {
    let g = every_dtype(Metadata::from([
        ("miner_id".into(), "m".into()),
        ("window_id".into(), "4".into()),
    ]));
    let bytes = safetensors_io::encode(&g).unwrap();
    assert_eq!(r3mes_tensor::detect(&bytes).unwrap(), Format::Safetensors);
    let back = r3mes_tensor::decode(&bytes, None, &Limits::default()).unwrap();
    assert_eq!(back.metadata, g.metadata);
    assert_eq!(back.tensors.len(), g.tensors.len());
    for t in &g.tensors {
        assert_eq!(back.tensor(&t.name), Some(t));
    }
    assert_eq!(
        bits(&flatten(&back, Order::Canonical)),
        bits(&flatten(&g, Order::Canonical))
    );
    let mut streamed = Vec::new();
    safetensors_io::write_to(&g, &mut streamed).unwrap();
    assert_eq!(streamed, bytes);
}

#[test]
fn output_is_what_the_crate_writes() {
    // The crate writes `__metadata__` from a HashMap: byte equality needs at most one entry.
    for metadata in [
        Metadata::new(),
        Metadata::from([("miner_id".into(), "remes1\"q\\".into())]),
    ] {
        let g = every_dtype(metadata);
        assert_eq!(safetensors_io::encode(&g).unwrap(), crate_serialize(&g));
    }
}

#[test]
fn the_crate_reads_our_files_and_we_read_the_crates() {
    let g = every_dtype(Metadata::from([
        ("a".into(), "1".into()),
        ("b".into(), "2".into()),
        ("c".into(), "".into()),
    ]));
    let ours = safetensors_io::encode(&g).unwrap();
    let parsed = SafeTensors::deserialize(&ours).unwrap();
    assert_eq!(parsed.len(), g.tensors.len());
    for t in &g.tensors {
        let view = parsed.tensor(&t.name).unwrap();
        assert_eq!(view.data(), t.data.as_slice());
        assert_eq!(
            view.shape().iter().map(|d| *d as u64).collect::<Vec<_>>(),
            t.shape
        );
        assert_eq!(format!("{:?}", view.dtype()), t.dtype.safetensors_name());
    }
    let (_, metadata) = SafeTensors::read_metadata(&ours).unwrap();
    let crate_meta: Metadata = metadata
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    assert_eq!(crate_meta, g.metadata);

    let theirs = crate_serialize(&g);
    let back = safetensors_io::decode(&theirs, &Limits::default()).unwrap();
    assert_eq!(back.metadata, g.metadata);
    for t in &g.tensors {
        assert_eq!(back.tensor(&t.name), Some(t));
    }
}

/// Reads a vector of little-endian f64 as bit patterns.
fn f64_bits(path: &Path) -> Vec<u64> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect()
}

#[test]
fn python_fixtures_decode_to_their_expected_vectors() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/safetensors");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let cases = manifest["cases"].as_array().unwrap();
    assert!(cases.len() >= 4);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let bytes = std::fs::read(dir.join(case["file"].as_str().unwrap())).unwrap();
        let g = r3mes_tensor::decode(&bytes, None, &Limits::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(g.format, Format::Safetensors);
        // Tensors in file (offset) order, as the manifest lists them.
        let listed: Vec<(String, String, Vec<u64>)> = case["tensors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                let shape = t["shape"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_u64().unwrap())
                    .collect();
                (
                    t["name"].as_str().unwrap().to_string(),
                    t["dtype"].as_str().unwrap().to_string(),
                    shape,
                )
            })
            .collect();
        let decoded: Vec<(String, String, Vec<u64>)> = g
            .tensors
            .iter()
            .map(|t| (t.name.clone(), t.dtype.name().to_string(), t.shape.clone()))
            .collect();
        assert_eq!(decoded, listed, "{name}");
        let metadata: Metadata = serde_json::from_value(case["metadata"].clone()).unwrap();
        assert_eq!(g.metadata, metadata, "{name}");
        let canonical = f64_bits(&dir.join(case["canonical"].as_str().unwrap()));
        let file_order = f64_bits(&dir.join(case["file_order"].as_str().unwrap()));
        assert_eq!(bits(&flatten(&g, Order::Canonical)), canonical, "{name}");
        assert_eq!(bits(&flatten(&g, Order::File)), file_order, "{name}");
        // Our writer reproduces Python's file byte for byte (its metadata map
        // has no fixed order beyond one entry).
        let again = safetensors_io::encode(&g).unwrap();
        if g.metadata.len() <= 1 {
            assert_eq!(again, bytes, "{name}");
        }
        // The index, built from the header alone, finds every element.
        let index = r3mes_tensor::GradientIndex::from_bytes(&bytes, &Limits::default()).unwrap();
        for (i, want) in canonical.iter().enumerate() {
            let loc = index.locate(i as u64, Order::Canonical).unwrap();
            let r = loc.range();
            assert_eq!(
                loc.value(&bytes[r.start as usize..r.end as usize])
                    .unwrap()
                    .to_bits(),
                *want,
                "{name} {i}"
            );
        }
        // Through r3mes' protobuf, the same vectors.
        let pb = r3mes_tensor::protobuf::decode(
            &r3mes_tensor::protobuf::encode(&g).unwrap(),
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(bits(&flatten(&pb, Order::Canonical)), canonical, "{name}");
        assert_eq!(bits(&flatten(&pb, Order::File)), file_order, "{name}");
        assert_eq!(pb.metadata, g.metadata);
    }
}

/// A file with this JSON header and `data_len` zero bytes of data.
fn file(json: &str, data_len: usize) -> Vec<u8> {
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(json.as_bytes());
    out.resize(out.len() + data_len, 0);
    out
}

fn decode(bytes: &[u8]) -> Result<Gradient, Error> {
    safetensors_io::decode(bytes, &Limits::default())
}

#[test]
fn truncation_at_every_byte_is_a_typed_error() {
    let g = every_dtype(Metadata::from([("k".into(), "v".into())]));
    let bytes = safetensors_io::encode(&g).unwrap();
    for cut in 0..bytes.len() {
        let err = decode(&bytes[..cut]).unwrap_err();
        assert!(
            matches!(err, Error::Truncated { .. } | Error::Malformed { .. }),
            "cut at {cut}: {err}"
        );
    }
}

#[test]
fn hostile_headers_are_typed_errors() {
    // Header length past the end, overflowing, or over the limit.
    let mut past = 100u64.to_le_bytes().to_vec();
    past.extend_from_slice(b"{}");
    assert!(matches!(decode(&past), Err(Error::Truncated { .. })));
    let mut wrap = (u64::MAX - 4).to_le_bytes().to_vec();
    wrap.extend_from_slice(b"{}");
    assert!(matches!(
        decode(&wrap),
        Err(Error::Malformed { .. } | Error::Limit { .. })
    ));
    let big = file(
        &format!("{{\"__metadata__\":{{\"k\":\"{}\"}}}}", "x".repeat(200)),
        0,
    );
    let small = Limits {
        max_header_bytes: 64,
        ..Limits::default()
    };
    assert!(matches!(
        safetensors_io::decode(&big, &small),
        Err(Error::Limit {
            what: "header bytes",
            ..
        })
    ));
    // Offsets past the end, overflowing, reversed, overlapping.
    let past_end = file(
        r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
        4,
    );
    assert!(matches!(decode(&past_end), Err(Error::Malformed { .. })));
    let overflow = file(
        r#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[18446744073709551615,0]}}"#,
        1,
    );
    assert!(matches!(decode(&overflow), Err(Error::Malformed { .. })));
    let too_big = file(
        r#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,18446744073709551616]}}"#,
        1,
    );
    assert!(matches!(decode(&too_big), Err(Error::Malformed { .. })));
    let overlap = file(
        r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
        8,
    );
    assert!(matches!(decode(&overlap), Err(Error::Malformed { .. })));
    // Shape and length disagree; shape overflows.
    let shape = file(
        r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
        8,
    );
    assert!(matches!(decode(&shape), Err(Error::Shape { .. })));
    let huge = file(
        r#"{"a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}}"#,
        8,
    );
    assert!(matches!(decode(&huge), Err(Error::Shape { .. })));
    // Unknown dtype, duplicate names, negative dimensions, not JSON, not UTF-8.
    let dtype = file(
        r#"{"a":{"dtype":"C64","shape":[1],"data_offsets":[0,8]}}"#,
        8,
    );
    assert!(matches!(decode(&dtype), Err(Error::UnknownDType(d)) if d == "C64"));
    let dup = file(
        r#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}"#,
        2,
    );
    assert!(matches!(decode(&dup), Err(Error::DuplicateTensor(n)) if n == "a"));
    let negative = file(
        r#"{"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}}"#,
        1,
    );
    assert!(matches!(decode(&negative), Err(Error::Malformed { .. })));
    assert!(matches!(
        decode(&file("[1,2]", 0)),
        Err(Error::Malformed { .. })
    ));
    assert!(matches!(
        decode(&file("{} x", 0)),
        Err(Error::Malformed { .. })
    ));
    let mut latin = file("{\"\u{e9}\":1}", 0);
    latin[10] = 0xe9;
    assert!(
        matches!(decode(&latin), Err(Error::Malformed { detail, .. }) if detail.contains("UTF-8"))
    );
    // Too many tensors stops while parsing.
    let many = Limits {
        max_tensors: 1,
        ..Limits::default()
    };
    assert!(matches!(
        safetensors_io::decode(&dup, &many),
        Err(Error::Limit {
            what: "tensors in one file",
            ..
        })
    ));
}

#[test]
fn empty_tensors_keep_header_order_among_themselves() {
    let json = r#"{"z":{"dtype":"U8","shape":[0],"data_offsets":[0,0]},"a":{"dtype":"U8","shape":[0],"data_offsets":[0,0]},"m":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}"#;
    let g = decode(&file(json, 1)).unwrap();
    let names: Vec<_> = g.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["z", "a", "m"]);
}
