//! The `r3mes node init` and `r3mes keys` command contract, run as a user
//! runs them: output, exit codes, file modes, clear errors.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

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
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails(out: Output, needle: &str) {
    assert!(!out.status.success(), "unexpected success");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains(needle), "expected {needle:?} in {err:?}");
}

#[test]
fn init_writes_a_home_once_and_keys_manage_its_keyring() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("h");
    let init: serde_json::Value = serde_json::from_str(&ok(r3mes(
        &[
            "node",
            "init",
            "--chain-id",
            "c-1",
            "--dev-accounts",
            "2",
            "--json",
        ],
        &home,
    )))
    .unwrap();
    assert_eq!(init["chain_id"], "c-1");
    let validator = init["validator"].as_str().unwrap().to_owned();
    assert!(validator.starts_with("remes1"));
    let genesis: serde_json::Value =
        serde_json::from_slice(&std::fs::read(home.join("genesis.json")).unwrap()).unwrap();
    assert_eq!(genesis["validators"][0], validator.as_str());
    assert_eq!(genesis["accounts"].as_array().unwrap().len(), 3);
    assert_eq!(genesis["params"]["block_time_ms"], 1000);
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(home.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["grpc_addr"], "127.0.0.1:9090");
    assert_eq!(config["metrics_addr"], "127.0.0.1:26660");
    fails(
        r3mes(
            &["node", "init", "--home", home.to_str().unwrap()],
            dir.path(),
        ),
        "already exists",
    );

    let listed = ok(r3mes(&["keys", "list"], &home));
    let names: Vec<_> = listed
        .lines()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(names, ["dev1", "dev2", "validator"]);
    let added: serde_json::Value =
        serde_json::from_str(&ok(r3mes(&["keys", "add", "miner-1", "--json"], &home))).unwrap();
    let mode = std::fs::metadata(home.join("keyring/miner-1.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let shown: serde_json::Value =
        serde_json::from_str(&ok(r3mes(&["keys", "show", "miner-1", "--json"], &home))).unwrap();
    assert_eq!(shown, added);
    let secret = ok(r3mes(&["keys", "export", "miner-1"], &home));
    assert_eq!(secret.trim().len(), 64);
    fails(r3mes(&["keys", "add", "miner-1"], &home), "already exists");
    fails(
        r3mes(&["keys", "show", "nobody"], &home),
        "no key named \"nobody\"",
    );
    fails(r3mes(&["keys", "add", "a/b"], &home), "invalid key name");
    fails(
        r3mes(&["node", "start"], &dir.path().join("empty")),
        "run `r3mes node init` first",
    );
}

#[test]
fn start_with_init_makes_a_missing_home_and_without_it_says_so() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().expect("tempdir");
    let h = dir.path();
    fails(r3mes(&["node", "start"], h), "--init");
    let mut child = Command::new(env!("CARGO_BIN_EXE_r3mes"))
        .args([
            "node",
            "start",
            "--init",
            "--ipfs-api",
            "http://127.0.0.1:9",
        ])
        .args([
            "--grpc-addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .env("R3MES_HOME", h)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    // The reader lives until the process has exited, so its stdout stays open.
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    stdout.read_line(&mut line).expect("read");
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().expect("wait");
    drop(stdout);
    assert!(line.starts_with("node started: gRPC "), "{line:?}");
    assert!(status.success(), "SIGTERM stops it cleanly");
    for file in ["config.json", "genesis.json"] {
        assert!(h.join(file).exists(), "{file}");
    }
    // The keyring holds the validator and the dev keys.
    let keys = ok(r3mes(&["keys", "list"], h));
    assert!(
        keys.contains("validator") && keys.contains("dev3"),
        "{keys}"
    );
}
