//! `r3mes vault new|list` and `r3mes verify` against the embedded repo under
//! `R3MES_HOME`: an honest gradient passes (exit 0), another fails (exit 1
//! with the reason), hostile vaults and absent gradients are clear errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const CHUNK: &str = "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH";

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../crates/tensor/tests/fixtures/safetensors")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

fn r3mes(args: &[&str], home: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_r3mes"))
        .args(args)
        .env("R3MES_HOME", home)
        .output()
        .expect("the r3mes binary runs")
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string()
}

fn err(out: Output) -> String {
    assert!(!out.status.success(), "unexpectedly succeeded");
    String::from_utf8(out.stderr).expect("utf-8")
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).expect("JSON output")
}

#[test]
fn vault_new_then_verify_passes_and_fails_with_reasons() {
    use std::os::unix::fs::PermissionsExt;
    let home = tempfile::tempdir().expect("tempdir");
    let h = home.path();
    let reference = fixture("torch_style_lora.safetensors");
    let cid = ok(r3mes(
        &["ipfs", "add", "--chunker", "size-16384", &reference],
        h,
    ));
    let vault: PathBuf = h.join("vault.json");
    let v = vault.to_str().expect("utf-8 path");
    let seed = "11".repeat(32);
    let made = ok(r3mes(
        &[
            "vault",
            "new",
            &reference,
            "--out",
            v,
            "--chunk-hash",
            CHUNK,
            "--chunk-id",
            "1",
            "--shard-id",
            "2",
            "--windows",
            "4",
            "--per-window",
            "2",
            "--span",
            "16",
            "--seed",
            &seed,
            "--json",
        ],
        h,
    ));
    let made = json(&made);
    assert_eq!(made["id"], "shard2-chunk1");
    assert_eq!(made["indices"], 8);
    let mode = std::fs::metadata(&vault)
        .expect("vault")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let report = json(&ok(r3mes(&["verify", &cid, "--vault", v, "--json"], h)));
    assert_eq!(report["passed"], true);
    assert_eq!(report["cosine_ppm"], 1_000_000);
    assert_eq!(report["method"], "range_read");
    assert_eq!(report["vault_commitment"], made["commitment"]);
    assert!(report["bytes_fetched"].as_u64().expect("bytes") > 0);
    assert!(report["file_size"].as_u64().expect("size") > 2048);
    let text = ok(r3mes(&["verify", &cid, "--vault", v], h));
    assert!(text.starts_with("PASS"), "{text}");
    assert!(text.contains("bytes_fetched: "), "{text}");

    // A second entry: the vault now needs --entry.
    ok(r3mes(
        &[
            "vault",
            "new",
            &reference,
            "--out",
            v,
            "--chunk-hash",
            CHUNK,
            "--chunk-id",
            "9",
            "--shard-id",
            "2",
        ],
        h,
    ));
    let listed = ok(r3mes(&["vault", "list", v], h));
    assert_eq!(listed.lines().count(), 2, "{listed}");
    let e = err(r3mes(&["verify", &cid, "--vault", v], h));
    assert!(e.contains("--entry"), "{e}");
    ok(r3mes(
        &["verify", &cid, "--vault", v, "--entry", "shard2-chunk9"],
        h,
    ));

    // Another gradient: it fails, exit 1, with the reason.
    let other = ok(r3mes(
        &[
            "ipfs",
            "add",
            "--chunker",
            "size-16384",
            &fixture("lora_update.safetensors"),
        ],
        h,
    ));
    let out = r3mes(
        &["verify", &other, "--vault", v, "--entry", "shard2-chunk1"],
        h,
    );
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let e = err(out);
    assert!(stdout.starts_with("FAIL"), "{stdout}");
    assert!(
        e.contains("failed verification") && e.contains("elements"),
        "{e}"
    );
}

#[test]
fn bad_vaults_and_absent_gradients_are_clear_errors() {
    let home = tempfile::tempdir().expect("tempdir");
    let h = home.path();
    let vault = h.join("vault.json");
    let v = vault.to_str().expect("utf-8 path");
    std::fs::write(
        &vault,
        r#"{"format":"r3mes-vault","version":7,"entries":[]}"#,
    )
    .expect("write");
    let e = err(r3mes(&["verify", CHUNK, "--vault", v], h));
    assert!(
        e.starts_with("error: invalid vault") && e.contains("version 7"),
        "{e}"
    );

    std::fs::write(
        &vault,
        r#"{"format":"r3mes-vault","version":1,"entries":[]}"#,
    )
    .expect("write");
    let e = err(r3mes(&["verify", CHUNK, "--vault", v], h));
    assert!(e.contains("no entries"), "{e}");

    let e = err(r3mes(&["verify", "not-a-cid", "--vault", v], h));
    assert!(e.contains("invalid CID"), "{e}");

    let reference = fixture("torch_style_lora.safetensors");
    ok(r3mes(
        &[
            "vault",
            "new",
            &reference,
            "--out",
            v,
            "--chunk-hash",
            CHUNK,
            "--chunk-id",
            "1",
            "--shard-id",
            "2",
        ],
        h,
    ));
    let e = err(r3mes(&["verify", CHUNK, "--vault", v], h));
    assert!(e.contains("missing from the content store"), "{e}");

    let e = err(r3mes(
        &[
            "vault",
            "new",
            &reference,
            "--out",
            v,
            "--chunk-hash",
            CHUNK,
            "--chunk-id",
            "1",
            "--shard-id",
            "2",
        ],
        h,
    ));
    assert!(e.contains("already has an entry"), "{e}");
    let e = err(r3mes(
        &[
            "vault",
            "new",
            &reference,
            "--out",
            v,
            "--chunk-hash",
            CHUNK,
            "--chunk-id",
            "3",
            "--shard-id",
            "2",
            "--seed",
            "abc",
        ],
        h,
    ));
    assert!(e.contains("--seed"), "{e}");
}
