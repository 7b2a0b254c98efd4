//! Vault files from disk: hostile or malformed ones are refused with a clear
//! error, valid ones survive a round trip bit for bit (property tests).

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

use std::io::Write;

use proptest::prelude::*;
use r3mes_verify::vault::{MAX_INDICES, MAX_VAULT_BYTES};
use r3mes_verify::{ChunkRef, FlatOrder, Vault, VaultEntry};

const CHUNK: &str = "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH";

fn valid_json() -> String {
    format!(
        r#"{{"format":"r3mes-vault","version":1,"entries":[{{"id":"a","chunk":{{"data_hash":"{CHUNK}","chunk_id":1,"shard_id":2}},"order":"canonical","elements":10,"threshold_ppm":900000,"indices":[1,2],"values":[0.5,-0.5]}}]}}"#
    )
}

fn load(text: &[u8]) -> Result<Vault, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vault.json");
    std::fs::write(&path, text).unwrap();
    Vault::load(&path).map_err(|e| e.to_string())
}

#[test]
fn the_valid_file_loads() {
    let vault = load(valid_json().as_bytes()).unwrap();
    assert_eq!(vault.entries[0].indices, vec![1, 2]);
}

#[test]
fn hostile_files_are_rejected_with_a_reason() {
    let valid = valid_json();
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "EOF"),
        ("not json".into(), "expected"),
        (valid[..valid.len() - 5].into(), "EOF"),
        ("[".repeat(10_000), "expected a string"),
        (
            valid.replace(
                "\"entries\":[",
                &format!("\"entries\":{}", "[".repeat(10_000)),
            ),
            "invalid type",
        ),
        (
            valid.replace("\"version\":1", "\"version\":99"),
            "version 99",
        ),
        (valid.replace("r3mes-vault", "zip"), "format"),
        (
            valid.replace("\"version\":1", "\"version\":1,\"version\":1"),
            "duplicate field",
        ),
        (
            valid.replace("\"order\"", "\"secret\":1,\"order\""),
            "unknown field",
        ),
        (
            valid.replace("\"canonical\"", "\"random\""),
            "unknown variant",
        ),
        (valid.replace("[1,2]", "[2,1]"), "strictly increasing"),
        (valid.replace("[1,2]", "[1,10]"), "out of range"),
        (valid.replace("[1,2]", "[-1,2]"), "invalid value"),
        (
            valid.replace("[1,2]", "[1,99999999999999999999999]"),
            "invalid",
        ),
        (
            valid.replace("[0.5,-0.5]", "[0.5]"),
            "2 indices but 1 values",
        ),
        (valid.replace("[0.5,-0.5]", "[0.5,NaN]"), "expected value"),
        (
            valid.replace("[0.5,-0.5]", "[0.5,1e400]"),
            "number out of range",
        ),
        (
            valid.replace("[0.5,-0.5]", "[0,0]"),
            "all reference values are zero",
        ),
        (valid.replace("900000", "-1000001"), "threshold_ppm"),
        (valid.replace(CHUNK, "Qmnot-a-cid"), "data_hash"),
        (valid.replace("\"id\":\"a\"", "\"id\":\"\""), "entry id"),
        (
            valid.replace("\"id\":\"a\"", "\"id\":\"a\\u0000\""),
            "control",
        ),
        (
            valid.replace("\"elements\":10", "\"elements\":0"),
            "elements",
        ),
        (valid.replace("\"elements\":10,", ""), "missing field"),
    ];
    for (text, needle) in cases {
        let err = load(text.as_bytes()).unwrap_err();
        assert!(err.contains("invalid vault"), "{err}");
        assert!(err.contains(needle), "{needle:?} not in {err:?}");
    }
}

#[test]
fn oversized_files_are_refused_without_reading_them_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.json");
    let mut file = std::fs::File::create(&path).unwrap();
    file.write_all(b"{").unwrap();
    file.set_len(MAX_VAULT_BYTES * 4).unwrap();
    let err = Vault::load(&path).unwrap_err().to_string();
    assert!(err.contains("at most"), "{err}");
    let missing = Vault::load(&dir.path().join("absent.json"))
        .unwrap_err()
        .to_string();
    assert!(
        missing.contains("reading vault") && missing.contains("absent.json"),
        "{missing}"
    );
}

#[test]
fn too_many_indices_are_refused() {
    let indices: Vec<String> = (0..=MAX_INDICES as u64).map(|i| i.to_string()).collect();
    let values = vec!["1"; MAX_INDICES + 1];
    let text = valid_json()
        .replace("\"elements\":10", "\"elements\":100000000")
        .replace("[1,2]", &format!("[{}]", indices.join(",")))
        .replace("[0.5,-0.5]", &format!("[{}]", values.join(",")));
    assert!(load(text.as_bytes()).unwrap_err().contains("indices"));
}

fn entry_strategy() -> impl Strategy<Value = VaultEntry> {
    (
        "[a-zA-Z0-9 _.-]{1,40}",
        any::<u64>(),
        any::<u64>(),
        any::<bool>(),
        -1_000_000i64..=1_000_000,
        prop::collection::btree_set(0u64..1 << 40, 1..40),
    )
        .prop_flat_map(|(id, chunk_id, shard_id, file_order, threshold, set)| {
            let indices: Vec<u64> = set.into_iter().collect();
            let n = indices.len();
            let last = *indices.last().unwrap_or(&0);
            (
                Just((id, chunk_id, shard_id, file_order, threshold, indices)),
                last + 1..=1 << 40,
                prop::collection::vec(
                    prop::num::f64::NORMAL | prop::num::f64::SUBNORMAL | prop::num::f64::ZERO,
                    n,
                ),
                0..n,
                prop::num::f64::NORMAL,
            )
        })
        .prop_map(
            |(
                (id, chunk_id, shard_id, file_order, threshold_ppm, indices),
                elements,
                mut values,
                k,
                v,
            )| {
                values[k] = v;
                VaultEntry {
                    id,
                    chunk: ChunkRef {
                        data_hash: CHUNK.into(),
                        chunk_id,
                        shard_id,
                    },
                    order: if file_order {
                        FlatOrder::File
                    } else {
                        FlatOrder::Canonical
                    },
                    elements,
                    threshold_ppm,
                    indices,
                    values,
                    model_version: (k % 2 == 1).then_some(k as u64),
                }
            },
        )
}

fn vault_strategy() -> impl Strategy<Value = Vault> {
    prop::collection::vec(entry_strategy(), 0..4).prop_map(|entries| {
        let entries = entries
            .into_iter()
            .enumerate()
            .map(|(i, mut e)| {
                e.id = format!("{i}-{}", e.id);
                e
            })
            .collect();
        Vault::new(entries)
    })
}

proptest! {
    #[test]
    fn valid_vaults_round_trip_bit_for_bit(vault in vault_strategy()) {
        let bytes = vault.to_vec().unwrap();
        let back = Vault::from_slice(&bytes).unwrap();
        for (a, b) in vault.entries.iter().zip(&back.entries) {
            let bits = |e: &VaultEntry| e.values.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            prop_assert_eq!(bits(a), bits(b));
            prop_assert_eq!(a.commitment(), b.commitment());
        }
        prop_assert_eq!(back, vault);
    }

    #[test]
    fn mutated_files_never_panic(vault in vault_strategy(), flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut bytes = vault.to_vec().unwrap();
        for (at, byte) in flips {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        if let Ok(decoded) = Vault::from_slice(&bytes) {
            prop_assert!(decoded.validate().is_ok());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = Vault::from_slice(&bytes);
    }
}
