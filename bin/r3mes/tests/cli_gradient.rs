//! The `r3mes gradient` command contract on the committed fixtures: inspect,
//! decode (values identical to the fixtures' expected vectors), convert to
//! range-readable formats, and hostile files refused with clear errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crates/tensor/tests/fixtures")
}

fn r3mes(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_r3mes"))
        .args(args)
        .output()
        .expect("the r3mes binary runs")
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn expected(path: &Path) -> Vec<f64> {
    std::fs::read(path)
        .expect("expected vector")
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect()
}

fn parse_lines(text: &str) -> Vec<f64> {
    text.lines()
        .map(|l| match l {
            "NaN" => f64::NAN,
            "Infinity" => f64::INFINITY,
            "-Infinity" => f64::NEG_INFINITY,
            other => other.parse().expect("a float per line"),
        })
        .collect()
}

fn same_bits(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
}

#[test]
fn decode_gives_the_expected_vectors_in_both_orders() {
    let dir = fixtures().join("pickle/numpy2");
    let file = dir.join("seed_serialize_gradients.pkl.gz");
    let f = file.to_str().unwrap();
    let canonical = parse_lines(&ok(r3mes(&["gradient", "decode", f])));
    assert!(same_bits(
        &canonical,
        &expected(&dir.join("seed_serialize_gradients.f64"))
    ));
    let in_file_order = parse_lines(&ok(r3mes(&["gradient", "decode", f, "--order", "file"])));
    assert!(same_bits(
        &in_file_order,
        &expected(&dir.join("seed_serialize_gradients.file.f64"))
    ));

    let json = ok(r3mes(&[
        "gradient",
        "decode",
        f,
        "--json",
        "--indices",
        "0,2,1",
    ]));
    assert!(
        json.starts_with('[') && json.trim_end().ends_with(']'),
        "{json}"
    );
    let picked: Vec<f64> = json
        .trim()
        .trim_matches(['[', ']'])
        .split(", ")
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(picked, vec![canonical[0], canonical[2], canonical[1]]);
}

#[test]
fn inspect_reports_format_tensors_and_hash() {
    let file = fixtures().join("pickle/numpy2/engine_gradients.pkl.gz");
    let text = ok(r3mes(&[
        "gradient",
        "inspect",
        file.to_str().unwrap(),
        "--json",
    ]));
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(report["format"], "pickle+gzip");
    assert_eq!(report["tensors"].as_array().unwrap().len(), 6);
    assert_eq!(report["sha256"].as_str().unwrap().len(), 64);
    assert!(report["elements"].as_u64().unwrap() > 0);
}

#[test]
fn convert_makes_range_readable_files_with_the_same_vector() {
    let dir = tempfile::tempdir().unwrap();
    let source = fixtures().join("pickle/numpy1/engine_lora_params.pkl.gz");
    let before = ok(r3mes(&["gradient", "decode", source.to_str().unwrap()]));
    for to in ["protobuf", "safetensors"] {
        let out = dir.path().join(format!("converted.{to}"));
        ok(r3mes(&[
            "gradient",
            "convert",
            source.to_str().unwrap(),
            out.to_str().unwrap(),
            "--to",
            to,
        ]));
        let text = ok(r3mes(&["gradient", "inspect", out.to_str().unwrap()]));
        assert!(text.starts_with(&format!("format:   {to}")), "{text}");
        assert_eq!(
            ok(r3mes(&["gradient", "decode", out.to_str().unwrap()])),
            before,
            "{to}"
        );
    }
    let refused = r3mes(&[
        "gradient",
        "convert",
        source.to_str().unwrap(),
        "/tmp/x.pkl",
        "--to",
        "pickle",
    ]);
    assert!(!refused.status.success());
}

#[test]
fn hostile_files_are_refused_by_name() {
    let dir = fixtures().join("pickle/hostile");
    for (file, needle) in [
        ("os_system_global.pkl", "refused pickle global"),
        ("builtins_eval.pkl", "eval"),
        ("subprocess_popen.pkl", "subprocess"),
        ("torch_rebuild.pkl", "torch"),
        ("gzip_bomb.pkl.gz", ""),
        ("truncated.pkl.gz", "truncated"),
        ("binbytes8_2pow60.pkl", "limit"),
    ] {
        let out = r3mes(&["gradient", "decode", dir.join(file).to_str().unwrap()]);
        assert!(!out.status.success(), "{file} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("error: decoding"), "{file}: {err}");
        assert!(err.contains(needle), "{file}: {err}");
    }
}
