//! The Python miner of `examples/python/` against a running devnet, as issue 8
//! asks: the seed's `IPFSClient` uploads a pickle+gzip gradient, a grpcio
//! client generated from our protos signs and submits it, and the gradient is
//! on chain and verified by the devnet's validator (which reads the legacy
//! pickle). Runs when `python3` is present: it makes a venv under the target
//! directory and installs `examples/python/requirements.txt` there with pip.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Process, json, ok, r3mes};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A venv with the example's requirements, or None without python3.
fn python_with_requirements() -> Option<PathBuf> {
    let present = Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !present {
        return None;
    }
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-miner-venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        let out = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "python3 -m venv failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let requirements = repo_root().join("examples/python/requirements.txt");
    let out = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(&requirements)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pip install failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(python)
}

#[test]
fn the_python_miner_lands_a_pickle_gradient_on_a_devnet() {
    let Some(python) = python_with_requirements() else {
        eprintln!("skipped: python3 is not available");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("devnet-home");
    let child = r3mes(dir.path())
        .args(["devnet", "--miners", "1", "--withholding", "0"])
        .args([
            "--rounds",
            "50",
            "--round-length",
            "60",
            "--block-time-ms",
            "200",
        ])
        .arg("--home")
        .arg(&home)
        .args(["--grpc-port", "0", "--ipfs-port", "0"])
        .args(["--gateway-port", "0", "--metrics-port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut devnet = Process(child);
    let stdout = devnet.0.stdout.take().unwrap();
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let (url, ipfs) = loop {
        let line = received
            .recv_timeout(Duration::from_secs(300))
            .expect("the devnet prints its addresses");
        if let Some(rest) = line.strip_prefix("devnet: node gRPC ") {
            let (url, rest) = rest.split_once(", IPFS API ").unwrap();
            let ipfs = rest.split(',').next().unwrap();
            break (url.to_string(), ipfs.to_string());
        }
    };
    // "http://127.0.0.1:PORT/api/v0": the seed's client takes host and port.
    let ipfs_port = ipfs.split(':').nth(2).unwrap().split('/').next().unwrap();

    // A key of its own, funded and staked by the devnet's validator.
    let cli = |args: &[&str]| ok(r3mes(&home).args(args).output().unwrap());
    let key = json(&cli(&["keys", "add", "py", "--json"]));
    let address = key["address"].as_str().unwrap().to_string();
    cli(&[
        "tx",
        "--node",
        &url,
        "send",
        "--from",
        "validator",
        &address,
        "10000000000",
    ]);
    cli(&["tx", "--node", &url, "stake", "--from", "py", "5000000000"]);
    let secret = cli(&["keys", "export", "py"]);

    let out = Command::new(&python)
        .arg(repo_root().join("examples/python/miner.py"))
        .args(["--key", secret.trim(), "--node", &url])
        .args(["--ipfs-host", "127.0.0.1", "--ipfs-port", ipfs_port])
        .env("R3MES_BIN", env!("CARGO_BIN_EXE_r3mes"))
        .output()
        .unwrap();
    let printed = ok(out);
    let result = json(printed.lines().last().unwrap());
    assert_eq!(result["miner"], address.as_str(), "{result}");
    assert_eq!(result["format"], "pickle_gzip", "{result}");
    let cid = result["cid"].as_str().unwrap().to_string();

    // On chain, as the Rust CLI reads it.
    let stored = json(&cli(&["query", "--node", &url, "gradient", &cid, "--json"]));
    assert_eq!(stored["metadata"]["format"], "pickle_gzip", "{stored}");
    // The validator reads the pickle (full download) and finds it is the
    // gradient of the round's model on that chunk.
    let deadline = Instant::now() + Duration::from_secs(120);
    let verification = loop {
        let found = json(&cli(&[
            "query",
            "--node",
            &url,
            "verifications",
            &cid,
            "--json",
        ]));
        if let Some(first) = found.as_array().and_then(|a| a.first()) {
            break first.clone();
        }
        assert!(Instant::now() < deadline, "no verification of {cid}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(verification["passed"], true, "{verification}");
    let (stopped, _) = devnet.stop();
    assert!(stopped, "the devnet stops cleanly on SIGTERM");
}
