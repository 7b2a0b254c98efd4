//! The `r3mes node init`, `r3mes node start` and `r3mes keys` command
//! contract, run as a user runs them: output, exit codes, file modes, clear
//! errors, a clean stop on SIGINT (also under CometBFT, `--abci`); and a
//! smoke run of `r3mes bench submit`.

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

/// `node init` in `home` on ephemeral ports, without the IPFS HTTP servers.
fn init_ephemeral(home: &Path, block_ms: u64) {
    ok(r3mes(
        &[
            "node",
            "init",
            "--block-time-ms",
            &block_ms.to_string(),
            "--grpc-addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "127.0.0.1:0",
            "--no-ipfs-http",
        ],
        home,
    ));
}

#[test]
fn start_stops_cleanly_on_sigint() {
    use std::io::{BufRead, BufReader, Read};
    let dir = tempfile::tempdir().expect("tempdir");
    let h = dir.path();
    init_ephemeral(h, 100);
    let mut child = Command::new(env!("CARGO_BIN_EXE_r3mes"))
        .args(["node", "start"])
        .args([
            "--verify-cache-ttl",
            "60",
            "--verify-cache-max-bytes",
            "1048576",
        ])
        .env("R3MES_HOME", h)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    stdout.read_line(&mut line).expect("read");
    assert!(line.starts_with("node started: gRPC "), "{line:?}");
    // A few blocks, then Ctrl-C.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let int = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(int.success());
    let status = child.wait().expect("wait");
    drop(stdout);
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    assert!(status.success(), "SIGINT exit: {status:?}: {stderr}");
    assert!(stderr.contains("stopping the node (SIGINT)"), "{stderr}");
    // It closed its state cleanly: the next start opens it at once.
    let mut again = Command::new(env!("CARGO_BIN_EXE_r3mes"))
        .args(["node", "start"])
        .env("R3MES_HOME", h)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    let mut stdout = BufReader::new(again.stdout.take().expect("stdout"));
    stdout.read_line(&mut line).expect("read");
    assert!(line.starts_with("node started: gRPC "), "{line:?}");
    let _ = Command::new("kill")
        .args(["-INT", &again.id().to_string()])
        .status();
    assert!(again.wait().expect("wait").success());
}

#[test]
fn start_with_abci_serves_metrics_refuses_duties_and_stops_on_sigint() {
    use std::io::{BufRead, BufReader, Read, Write};
    let dir = tempfile::tempdir().expect("tempdir");
    let h = dir.path();
    init_ephemeral(h, 100);
    fails(
        r3mes(
            &[
                "node",
                "start",
                "--abci",
                "127.0.0.1:0",
                "--respond-as",
                "dev1",
            ],
            h,
        ),
        "--respond-as is not available with --abci",
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_r3mes"))
        .args(["node", "start", "--abci", "127.0.0.1:0"])
        .env("R3MES_HOME", h)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    stdout.read_line(&mut line).expect("read");
    assert!(
        line.starts_with("node started: ABCI 127.0.0.1:"),
        "{line:?}"
    );
    let metrics = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http://"))
        .and_then(|w| w.strip_suffix("/metrics"))
        .expect("the metrics address");
    // No block yet (CometBFT has not called): height 0.
    let mut conn = std::net::TcpStream::connect(metrics).expect("connect");
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("write");
    let mut body = String::new();
    conn.read_to_string(&mut body).expect("read");
    assert!(body.contains("r3mes_height 0\n"), "{body}");
    let int = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(int.success());
    let status = child.wait().expect("wait");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    assert!(status.success(), "SIGINT exit: {status:?}: {stderr}");
    assert!(
        stderr.contains("stopping the ABCI server (SIGINT)"),
        "{stderr}"
    );
}

#[test]
fn bench_submit_includes_every_transaction_of_a_small_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = ok(r3mes(
        &[
            "bench",
            "submit",
            "--clients",
            "4",
            "--txs",
            "40",
            "--block-time-ms",
            "100",
            "--connections",
            "2",
            "--pow-bits",
            "4",
            "--json",
        ],
        dir.path(),
    ));
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["clients"], 4, "{report}");
    assert_eq!(report["txs_sent"], 40, "{report}");
    assert_eq!(report["txs_ok"], 40, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    let f = |name: &str| {
        report[name]
            .as_f64()
            .unwrap_or_else(|| panic!("{name} in {report}"))
    };
    assert!(f("tx_per_sec") > 0.0, "{report}");
    let (p50, p99, max) = (
        f("latency_ms_p50"),
        f("latency_ms_p99"),
        f("latency_ms_max"),
    );
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{report}");
}
