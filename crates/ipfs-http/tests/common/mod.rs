//! Shared by the integration tests: a daemon on free ports over a fresh repo,
//! deterministic content, and what r3mes-ipfs itself says about that content.

#![allow(dead_code, clippy::unwrap_used)]

use r3mes_ipfs::importer::{ImportParams, VecSink, import_bytes};
use r3mes_ipfs::{AddOptions, Cid, Repo};
use r3mes_ipfs_http::{Daemon, DaemonConfig, DaemonHandle};
use tempfile::TempDir;

/// A running daemon, its repo (the same one it serves) and the repo directory.
pub struct Node {
    pub repo: Repo,
    pub handle: DaemonHandle,
    pub dir: TempDir,
    pub http: reqwest::Client,
}

impl Node {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repo::open(dir.path()).unwrap();
        let handle = Daemon::start(repo.clone(), DaemonConfig::loopback(0, 0))
            .await
            .unwrap();
        Self {
            repo,
            handle,
            dir,
            http: reqwest::Client::new(),
        }
    }

    /// `POST /api/v0/<command>?<query>` without a body.
    pub async fn rpc(&self, command: &str, query: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/{command}?{query}", self.handle.api_url()))
            .send()
            .await
            .unwrap()
    }

    /// `POST /api/v0/<command>?<query>` with one multipart file part.
    pub async fn upload(
        &self,
        command: &str,
        query: &str,
        name: &str,
        data: Vec<u8>,
    ) -> reqwest::Response {
        let part = reqwest::multipart::Part::bytes(data)
            .file_name(name.to_string())
            .mime_str("application/octet-stream")
            .unwrap();
        let form = reqwest::multipart::Form::new().part("file", part);
        self.http
            .post(format!("{}/{command}?{query}", self.handle.api_url()))
            .multipart(form)
            .send()
            .await
            .unwrap()
    }

    /// `GET <gateway><path>` with optional `Accept`.
    pub async fn gateway(&self, path: &str, accept: Option<&str>) -> reqwest::Response {
        let mut request = self
            .http
            .get(format!("{}{path}", self.handle.gateway_url()));
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        request.send().await.unwrap()
    }
}

/// Deterministic pseudo-random bytes (xorshift).
pub fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

/// The CID and cumulative DAG size r3mes-ipfs' importer gives `data`.
pub fn expected(data: &[u8], options: &AddOptions) -> (Cid, u64) {
    let params = ImportParams::from_options(options).unwrap();
    let imported = import_bytes(data, &params, &mut VecSink::default()).unwrap();
    (imported.root, imported.dag_size)
}

pub fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
        .to_string()
}
