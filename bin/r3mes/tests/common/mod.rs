//! Helpers shared by the CLI tests that run `r3mes` as a user does: the
//! binary with a home, output checks, and a node process with its
//! embedded IPFS API on ephemeral ports.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

/// `r3mes` with `home` as `R3MES_HOME`.
pub fn r3mes(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_r3mes"));
    cmd.env("R3MES_HOME", home).env_remove("R3MES_KUBO_BIN");
    cmd
}

/// The stdout of a command that must succeed.
pub fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts a command failed with `needle` in its stderr.
pub fn fails(out: Output, needle: &str) {
    assert!(!out.status.success(), "unexpected success");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(needle), "expected {needle:?} in {err:?}");
}

/// `text` as JSON.
pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// A test fixture gradient file (safetensors).
pub fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../crates/tensor/tests/fixtures/safetensors")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// A child process stopped with SIGTERM when dropped.
pub struct Process(pub Child);

impl Process {
    /// Sends SIGTERM and returns whether it exited 0 and what it printed.
    pub fn stop(mut self) -> (bool, String) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let mut out = String::new();
        if let Some(mut stdout) = self.0.stdout.take() {
            let _ = std::io::Read::read_to_string(&mut stdout, &mut out);
        }
        let status = self.0.wait().unwrap();
        (status.success(), out)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.0.try_wait() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

/// `node init --json` on ephemeral ports with `dev_accounts` dev keys and
/// blocks of `block_ms`; `params` edits the genesis parameters before the
/// first start. Returns init's JSON.
pub fn init(
    home: &Path,
    block_ms: u64,
    dev_accounts: u32,
    params: impl FnOnce(&mut serde_json::Value),
) -> serde_json::Value {
    let init = ok(r3mes(home)
        .args(["node", "init", "--block-time-ms", &block_ms.to_string()])
        .args(["--dev-accounts", &dev_accounts.to_string()])
        .args([
            "--grpc-addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .args([
            "--ipfs-api-addr",
            "127.0.0.1:0",
            "--gateway-addr",
            "127.0.0.1:0",
        ])
        .arg("--json")
        .output()
        .unwrap());
    let genesis_path = home.join("genesis.json");
    let mut genesis = json(&std::fs::read_to_string(&genesis_path).unwrap());
    params(&mut genesis["params"]);
    std::fs::write(&genesis_path, genesis.to_string()).unwrap();
    json(&init)
}

/// The address of key `name` in init's JSON.
pub fn address(init: &serde_json::Value, name: &str) -> String {
    init["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == name)
        .and_then(|k| k["address"].as_str())
        .unwrap_or_else(|| panic!("no key {name} in {init}"))
        .to_owned()
}

/// A running node: the process, its gRPC URL and its IPFS API URL.
pub struct Node {
    pub process: Process,
    pub url: String,
    pub ipfs: String,
}

/// `node start` with `extra` arguments; reads the bound addresses from
/// its first line.
pub fn start(home: &Path, extra: &[&str]) -> Node {
    let mut child = r3mes(home)
        .args(["node", "start"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let words: Vec<&str> = line.split_whitespace().collect();
    let (Some(grpc), Some(ipfs)) = (
        words.get(3),
        words
            .iter()
            .position(|w| *w == "ipfs-api")
            .and_then(|i| words.get(i + 1)),
    ) else {
        panic!("unexpected start line {line:?}");
    };
    Node {
        url: format!("http://{grpc}"),
        ipfs: (*ipfs).to_owned(),
        process: Process(child),
    }
}
