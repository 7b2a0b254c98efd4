//! Decodes every pickle fixture written by `fixtures/gen.py` (real Python,
//! numpy 1.x and 2.x) to its expected flat vectors bit for bit, and every
//! hostile fixture to its expected error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use r3mes_tensor::{Error, Format, Gradient, Limits, Order, decode, flatten};
use serde_json::Value;

fn fixture_dir(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/pickle")
        .join(sub)
}

fn read(dir: &Path, file: &str) -> Vec<u8> {
    std::fs::read(dir.join(file))
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.join(file).display()))
}

fn manifest(dir: &Path) -> Value {
    serde_json::from_slice(&read(dir, "manifest.json")).expect("manifest.json is JSON")
}

fn cases<'m>(manifest: &'m Value, key: &str) -> &'m Vec<Value> {
    manifest[key].as_array().expect("manifest lists cases")
}

fn text<'v>(case: &'v Value, key: &str) -> &'v str {
    case[key]
        .as_str()
        .unwrap_or_else(|| panic!("case field {key} in {case}"))
}

/// The format a case forces, if any.
fn forced_format(case: &Value) -> Option<Format> {
    case["format"]
        .as_str()
        .map(|name| Format::from_name(name).expect("known format name"))
}

/// Raw little-endian f64 values as their bit patterns (so NaN payloads compare exactly).
fn f64_bits(bytes: &[u8]) -> Vec<u64> {
    assert_eq!(
        bytes.len() % 8,
        0,
        "expected vector is a whole number of f64"
    );
    bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect()
}

fn bits(values: &[f64]) -> Vec<u64> {
    values.iter().map(|v| v.to_bits()).collect()
}

fn check_valid_case(dir: &Path, case: &Value) {
    let name = text(case, "name");
    let file = text(case, "file");
    let gradient: Gradient = decode(&read(dir, file), forced_format(case), &Limits::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"));

    let expected_format = if file.ends_with(".gz") {
        Format::PickleGzip
    } else {
        Format::Pickle
    };
    assert_eq!(gradient.format, expected_format, "{name}");

    let tensors = case["tensors"].as_array().expect("tensor list");
    assert_eq!(
        gradient.tensors.len(),
        tensors.len(),
        "{name}: tensor count"
    );
    for (tensor, want) in gradient.tensors.iter().zip(tensors) {
        let shape: Vec<u64> = want["shape"]
            .as_array()
            .expect("shape")
            .iter()
            .map(|d| d.as_u64().expect("dimension"))
            .collect();
        assert_eq!(
            tensor.name,
            text(want, "name"),
            "{name}: file order of tensors"
        );
        assert_eq!(
            tensor.dtype.name(),
            text(want, "dtype"),
            "{name}: dtype of {}",
            tensor.name
        );
        assert_eq!(tensor.shape, shape, "{name}: shape of {}", tensor.name);
    }

    let metadata: BTreeMap<String, String> =
        serde_json::from_value(case["metadata"].clone()).expect("metadata is a map of strings");
    assert_eq!(gradient.metadata, metadata, "{name}: metadata");

    let canonical = f64_bits(&read(dir, text(case, "canonical")));
    assert_eq!(
        bits(&flatten(&gradient, Order::Canonical)),
        canonical,
        "{name}: canonical vector"
    );
    let file_order = f64_bits(&read(dir, text(case, "file_order")));
    assert_eq!(
        bits(&flatten(&gradient, Order::File)),
        file_order,
        "{name}: file-order vector"
    );
}

fn check_valid_folder(sub: &str) -> usize {
    let dir = fixture_dir(sub);
    let manifest = manifest(&dir);
    let valid = cases(&manifest, "cases");
    assert!(!valid.is_empty(), "{sub} has cases");
    for case in valid {
        check_valid_case(&dir, case);
    }
    valid.len()
}

#[test]
fn numpy1_pickles_decode_bit_for_bit() {
    assert!(check_valid_folder("numpy1") >= 30);
}

#[test]
fn numpy2_pickles_decode_bit_for_bit() {
    assert!(check_valid_folder("numpy2") >= 30);
}

/// Default limits with the manifest's overrides.
fn limits_of(case: &Value) -> Limits {
    let mut limits = Limits::default();
    let overrides = case["limits"].as_object().expect("limits object");
    for (key, value) in overrides {
        let value = value.as_u64().expect("limit is a number");
        match key.as_str() {
            "max_decompressed_bytes" => limits.max_decompressed_bytes = value,
            "max_memo_entries" => limits.max_memo_entries = value,
            "max_elements" => limits.max_elements = value,
            "max_string_bytes" => limits.max_string_bytes = value,
            "max_tensors" => limits.max_tensors = value,
            "max_depth" => limits.max_depth = u32::try_from(value).expect("depth fits u32"),
            other => panic!("unknown limit {other}"),
        }
    }
    limits
}

fn error_matches(err: &Error, case: &Value) -> bool {
    let details = &case["details"];
    match (text(case, "error"), err) {
        ("ForbiddenGlobal", Error::ForbiddenGlobal { module, name }) => {
            details["module"] == module.as_str() && details["name"] == name.as_str()
        }
        ("UnsupportedOpcode", Error::UnsupportedOpcode { opcode, .. }) => {
            details["opcode"] == *opcode
        }
        ("Limit", Error::Limit { what, .. }) => details.get("what").is_none_or(|w| w == what),
        ("Truncated", Error::Truncated { .. })
        | ("Malformed", Error::Malformed { .. })
        | ("Shape", Error::Shape { .. })
        | ("DuplicateTensor", Error::DuplicateTensor(_))
        | ("UnknownDType", Error::UnknownDType(_)) => true,
        _ => false,
    }
}

#[test]
fn hostile_pickles_are_refused_with_their_error() {
    let dir = fixture_dir("hostile");
    let manifest = manifest(&dir);
    let hostile = cases(&manifest, "hostile");
    assert!(hostile.len() >= 30);
    for case in hostile {
        let name = text(case, "name");
        let started = std::time::Instant::now();
        let result = decode(
            &read(&dir, text(case, "file")),
            forced_format(case),
            &limits_of(case),
        );
        let err = match result {
            Ok(g) => panic!(
                "{name}: decoded to {} tensors, expected {}",
                g.tensors.len(),
                case["error"]
            ),
            Err(e) => e,
        };
        assert!(
            error_matches(&err, case),
            "{name}: got {err:?}, expected {} {}",
            case["error"],
            case["details"]
        );
        assert!(
            started.elapsed().as_secs() < 10,
            "{name} took {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn forbidden_globals_name_the_global() {
    let dir = fixture_dir("hostile");
    let err =
        decode(&read(&dir, "os_system_p4.pkl"), None, &Limits::default()).expect_err("refused");
    let message = err.to_string();
    assert!(
        message.contains("system") && message.contains("refused"),
        "{message}"
    );
}
