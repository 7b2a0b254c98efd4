//! [`KuboClient`]: Kubo's RPC API (`POST /api/v0/<command>?arg=...`) over HTTP.
//!
//! Every call is a POST with `arg=` and option query parameters, as Kubo
//! requires. An answer other than 2xx is decoded from Kubo's error object
//! `{"Message","Code","Type"}` into [`Error::Api`]; a body that is not such an
//! object (a proxy page, `404 page not found`) becomes [`Error::Api`] with the
//! body text as message, the HTTP status as code and `http` as kind. Streamed
//! answers (NDJSON, one object a line) are read line by line, and an error object
//! sent after streaming began (go-ipfs-cmds' `"Type":"error"`) ends the call
//! with that error. A daemon that does not answer gives [`Error::Transport`]
//! naming the URL.

use std::path::Path;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use r3mes_ipfs::{
    AddOptions, AddSource, Added, Cid, EntryKind, Error, GcReport, ListEntry, NodeIdentity,
    NodeStat, PinInfo, PinMode, ReadStats, Result, WriteOptions,
};
use reqwest::header::HeaderMap;
use reqwest::{Body, Response, StatusCode, Url, multipart};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::addr::api_base_url;

/// Largest line accepted in a streamed (NDJSON) answer.
const MAX_LINE: usize = 1 << 20;
/// Largest small JSON answer (`id`, `version`, `block/stat`...) read into memory.
const MAX_SMALL_ANSWER: usize = 4 << 20;
/// Largest block `block/get` accepts (Kubo refuses blocks over 2 MiB).
const MAX_BLOCK: usize = 4 << 20;
/// Largest buffer reserved in advance from a size the daemon announces.
const MAX_PREALLOC: u64 = 64 << 20;
/// Name of the multipart field Kubo reads files from.
const FILE_FIELD: &str = "file";

/// Timeouts of a [`KuboClient`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// Time allowed to open the TCP connection (default 5 s).
    pub connect_timeout: Duration,
    /// Longest silence allowed while reading an answer (default 120 s); `None`
    /// waits forever. It bounds idleness, not the length of a large transfer.
    pub read_timeout: Option<Duration>,
    /// Bound on a whole request, answer included (default `None`: large adds and
    /// reads take as long as they take).
    pub request_timeout: Option<Duration>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            read_timeout: Some(Duration::from_secs(120)),
            request_timeout: None,
        }
    }
}

impl ClientOptions {
    /// Short timeouts for probing whether a daemon is up (1 s to connect, 3 s in all).
    pub fn probe() -> Self {
        Self {
            connect_timeout: Duration::from_secs(1),
            read_timeout: Some(Duration::from_secs(3)),
            request_timeout: Some(Duration::from_secs(3)),
        }
    }
}

/// Size of one block as `block/stat` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockStat {
    /// The block's CID as Kubo prints it.
    pub cid: Cid,
    /// Size in bytes.
    pub size: u64,
}

/// A client of one Kubo daemon's RPC API. Cheap to clone (the connection pool is shared).
#[derive(Debug, Clone)]
pub struct KuboClient {
    http: reqwest::Client,
    base: String,
    options: ClientOptions,
}

impl KuboClient {
    /// A client of the daemon at `address`: `http://127.0.0.1:5001`, `127.0.0.1:5001`
    /// or a multiaddr such as `/ip4/127.0.0.1/tcp/5001`. Default timeouts.
    pub fn new(address: &str) -> Result<Self> {
        Self::with_options(address, ClientOptions::default())
    }

    /// Like [`KuboClient::new`] with explicit timeouts.
    pub fn with_options(address: &str, options: ClientOptions) -> Result<Self> {
        let base = api_base_url(address)?;
        // A local daemon must not be reached through an HTTP proxy from the environment.
        let mut builder = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .no_proxy();
        if let Some(timeout) = options.read_timeout {
            builder = builder.read_timeout(timeout);
        }
        if let Some(timeout) = options.request_timeout {
            builder = builder.timeout(timeout);
        }
        let http = builder.build().map_err(|e| {
            Error::Transport(format!("cannot build the HTTP client: {}", error_chain(&e)))
        })?;
        Ok(Self {
            http,
            base,
            options,
        })
    }

    /// A client of the daemon that runs on the Kubo repository `repo_dir`, from the
    /// multiaddr Kubo writes into `<repo_dir>/api` while it runs. `None` when the
    /// file is missing or does not hold a usable TCP address (the daemon is not
    /// running, or listens on a Unix socket).
    pub fn from_repo_api_file(repo_dir: &Path) -> Option<Self> {
        Self::from_repo_api_file_with_options(repo_dir, ClientOptions::default())
    }

    /// Like [`KuboClient::from_repo_api_file`] with explicit timeouts.
    pub fn from_repo_api_file_with_options(
        repo_dir: &Path,
        options: ClientOptions,
    ) -> Option<Self> {
        let text = std::fs::read_to_string(repo_dir.join("api")).ok()?;
        let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
        Self::with_options(line, options).ok()
    }

    /// The base URL calls go to, such as `http://127.0.0.1:5001`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The timeouts in use.
    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// `add`: imports one file as UnixFS and returns its root CID. The multipart
    /// field is `file`; a [`AddSource::File`] is streamed from disk. `size` is the
    /// content size as uploaded, `dag_size` Kubo's `Size` (that of the DAG).
    pub async fn add(&self, source: AddSource, options: &AddOptions) -> Result<Added> {
        check_add_options(options)?;
        let (part, size) = upload_part(source, "data").await?;
        let mut query = vec![
            ("cid-version", options.cid_version.to_string()),
            ("pin", options.pin.to_string()),
            ("only-hash", options.only_hash.to_string()),
            ("chunker", format!("size-{}", options.chunk_size)),
            ("progress", "false".to_string()),
        ];
        if let Some(raw) = options.raw_leaves {
            query.push(("raw-leaves", raw.to_string()));
        }
        let form = multipart::Form::new().part(FILE_FIELD, part);
        let response = self.post("add", &query, Some(form)).await?;
        // One line per file; the last one names the root.
        let mut root: Option<(String, u64)> = None;
        self.for_each_line("add", response, |value| {
            if let Some(hash) = value.get("Hash").and_then(Value::as_str) {
                let dag_size = value
                    .get("Size")
                    .and_then(json_u64)
                    .ok_or_else(|| Error::Transport(format!("add: no usable Size in {value}")))?;
                root = Some((hash.to_string(), dag_size));
            }
            Ok(())
        })
        .await?;
        let (hash, dag_size) =
            root.ok_or_else(|| Error::Transport("add: the daemon answered without a Hash".into()))?;
        Ok(Added {
            cid: parse_cid("add", &hash)?,
            size,
            dag_size,
        })
    }

    /// `cat`: reads `length` bytes (to the end when `None`) from `offset` of a UnixFS
    /// file. Unlike the embedded store, Kubo answers an offset past the end with
    /// no bytes rather than an error.
    pub async fn cat(&self, cid: &Cid, offset: u64, length: Option<u64>) -> Result<Bytes> {
        Ok(self.cat_with_stats(cid, offset, length).await?.0)
    }

    /// [`KuboClient::cat`] plus what the read cost, when the daemon says so: r3mes'
    /// embedded daemon sends `X-R3mes-Blocks` and `X-R3mes-Bytes`; Kubo does not,
    /// and then the stats are `None`.
    pub async fn cat_with_stats(
        &self,
        cid: &Cid,
        offset: u64,
        length: Option<u64>,
    ) -> Result<(Bytes, Option<ReadStats>)> {
        let (mut response, announced) = self.cat_response(cid, offset, length).await?;
        let stats = read_stats(response.headers());
        let capacity = announced.unwrap_or(0).min(MAX_PREALLOC);
        let mut out = BytesMut::with_capacity(usize::try_from(capacity).unwrap_or(0));
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport("cat", &e))?
        {
            out.extend_from_slice(&chunk);
        }
        check_length("cat", cid, out.len() as u64, announced)?;
        Ok((out.freeze(), stats))
    }

    /// `cat` streamed into `out` (flushed at the end); returns the number of bytes written.
    pub async fn cat_to<W>(
        &self,
        cid: &Cid,
        offset: u64,
        length: Option<u64>,
        out: &mut W,
    ) -> Result<u64>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        let (response, announced) = self.cat_response(cid, offset, length).await?;
        let written = self.copy_body("cat", response, out).await?;
        check_length("cat", cid, written, announced)?;
        Ok(written)
    }

    async fn cat_response(
        &self,
        cid: &Cid,
        offset: u64,
        length: Option<u64>,
    ) -> Result<(Response, Option<u64>)> {
        let mut query = vec![("arg", cid.to_string())];
        if offset > 0 {
            query.push(("offset", int64("offset", offset)?.to_string()));
        }
        if let Some(length) = length {
            query.push(("length", int64("length", length)?.to_string()));
        }
        let response = self.post("cat", &query, None).await?;
        let announced = announced_length(response.headers());
        Ok((response, announced))
    }

    /// `block/get`: one raw block, verified against its CID.
    pub async fn block_get(&self, cid: &Cid) -> Result<Bytes> {
        let response = self
            .post("block/get", &[("arg", cid.to_string())], None)
            .await?;
        let data = self.read_limited("block/get", response, MAX_BLOCK).await?;
        r3mes_ipfs::cids::verify(cid, &data)?;
        Ok(data)
    }

    /// `block/stat`: the size of one block (`{"Key","Size"}`).
    pub async fn block_stat(&self, cid: &Cid) -> Result<BlockStat> {
        #[derive(Deserialize)]
        struct Answer {
            #[serde(rename = "Key")]
            key: String,
            #[serde(rename = "Size")]
            size: u64,
        }
        let response = self
            .post("block/stat", &[("arg", cid.to_string())], None)
            .await?;
        let answer: Answer = self.read_json("block/stat", response).await?;
        Ok(BlockStat {
            cid: parse_cid("block/stat", &answer.key)?,
            size: answer.size,
        })
    }

    /// `pin/add`: pins `cid` recursively or directly, under an optional name.
    /// Recursive pins ask for progress lines so that fetching a large DAG from the
    /// network never looks idle to the read timeout.
    pub async fn pin_add(&self, cid: &Cid, mode: PinMode, name: Option<&str>) -> Result<()> {
        let recursive = mode == PinMode::Recursive;
        let mut query = vec![
            ("arg", cid.to_string()),
            ("recursive", recursive.to_string()),
        ];
        if let Some(name) = name {
            query.push(("name", name.to_string()));
        }
        if recursive {
            query.push(("progress", "true".to_string()));
        }
        let response = self.post("pin/add", &query, None).await?;
        let mut pinned = false;
        self.for_each_line("pin/add", response, |value| {
            pinned |= value.get("Pins").is_some_and(Value::is_array);
            Ok(())
        })
        .await?;
        if pinned {
            Ok(())
        } else {
            Err(Error::Transport(format!(
                "pin/add {cid}: the daemon answered without Pins"
            )))
        }
    }

    /// `pin/rm`: removes the pin of `cid`, recursive or direct.
    pub async fn pin_rm(&self, cid: &Cid) -> Result<()> {
        let query = [("arg", cid.to_string()), ("recursive", "true".to_string())];
        let response = self.post("pin/rm", &query, None).await?;
        let _: Value = self.read_json("pin/rm", response).await?;
        Ok(())
    }

    /// `pin/ls --type=all --names`: recursive and direct pins, sorted by CID text.
    /// Indirect entries (blocks kept alive by a recursive pin) are left out.
    pub async fn pin_ls(&self) -> Result<Vec<PinInfo>> {
        #[derive(Deserialize)]
        struct Entry {
            #[serde(rename = "Type")]
            kind: String,
            #[serde(rename = "Name", default)]
            name: Option<String>,
        }
        #[derive(Deserialize)]
        struct Answer {
            #[serde(rename = "Keys", default)]
            keys: Option<std::collections::BTreeMap<String, Entry>>,
        }
        let query = [("type", "all".to_string()), ("names", "true".to_string())];
        let response = self.post("pin/ls", &query, None).await?;
        let body = response
            .bytes()
            .await
            .map_err(|e| self.transport("pin/ls", &e))?;
        let answer: Answer = decode_json("pin/ls", &body)?;
        let mut pins = Vec::new();
        for (key, entry) in answer.keys.unwrap_or_default() {
            let mode = match entry.kind.as_str() {
                "recursive" => PinMode::Recursive,
                "direct" => PinMode::Direct,
                _ => continue,
            };
            let name = entry.name.filter(|n| !n.is_empty());
            pins.push(PinInfo {
                cid: parse_cid("pin/ls", &key)?,
                mode,
                name,
            });
        }
        Ok(pins)
    }

    /// `repo/gc --stream-errors`: removes unpinned blocks and lists them.
    ///
    /// `freed_bytes` is always 0: Kubo reports the keys it removed, not their
    /// sizes (compare `repo/stat` before and after for a figure). Errors Kubo
    /// streams are collected; when there are any the call fails after the stream
    /// ends, saying how many blocks were removed before.
    pub async fn repo_gc(&self) -> Result<GcReport> {
        let response = self
            .post("repo/gc", &[("stream-errors", "true".to_string())], None)
            .await?;
        let mut report = GcReport::default();
        let mut errors: Vec<String> = Vec::new();
        self.for_each_line("repo/gc", response, |value| {
            if let Some(message) = value.get("Error").and_then(Value::as_str)
                && !message.is_empty()
            {
                errors.push(message.to_string());
            }
            if let Some(key) = value.get("Key").and_then(link_cid) {
                report.removed.push(parse_cid("repo/gc", key)?);
            }
            Ok(())
        })
        .await?;
        if errors.is_empty() {
            Ok(report)
        } else {
            Err(Error::Api {
                message: format!(
                    "repo/gc removed {} blocks, then failed: {}",
                    report.removed.len(),
                    errors.join("; ")
                ),
                code: 0,
                kind: "error".to_string(),
            })
        }
    }

    /// `dag/export`: the DAG under `root` as CAR v1 bytes. The daemon reports an
    /// error that happens mid-stream only in an HTTP trailer, which is not read:
    /// validate the CAR (the embedded importer does) before trusting it.
    pub async fn dag_export(&self, root: &Cid) -> Result<Bytes> {
        let response = self.dag_export_response(root).await?;
        response
            .bytes()
            .await
            .map_err(|e| self.transport("dag/export", &e))
    }

    /// `dag/export` streamed into `out` (flushed at the end); returns the bytes written.
    pub async fn dag_export_to<W>(&self, root: &Cid, out: &mut W) -> Result<u64>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        let response = self.dag_export_response(root).await?;
        self.copy_body("dag/export", response, out).await
    }

    async fn dag_export_response(&self, root: &Cid) -> Result<Response> {
        let query = [("arg", root.to_string()), ("progress", "false".to_string())];
        self.post("dag/export", &query, None).await
    }

    /// `dag/import --pin-roots`: imports a CAR v1 file and pins its roots
    /// recursively (Kubo's default, and the only way it reports the roots). A root
    /// Kubo could not pin (the CAR holds only part of its DAG) fails the call
    /// with [`Error::Pin`]; the blocks stay imported.
    pub async fn dag_import(&self, car: Bytes) -> Result<Vec<Cid>> {
        self.dag_import_source(AddSource::Bytes(car)).await
    }

    /// [`KuboClient::dag_import`] of a CAR file on disk, streamed.
    pub async fn dag_import_file(&self, path: &Path) -> Result<Vec<Cid>> {
        self.dag_import_source(AddSource::File(path.to_path_buf()))
            .await
    }

    async fn dag_import_source(&self, source: AddSource) -> Result<Vec<Cid>> {
        let (part, _) = upload_part(source, "import.car").await?;
        let form = multipart::Form::new().part(FILE_FIELD, part);
        let query = [("pin-roots", "true".to_string())];
        let response = self.post("dag/import", &query, Some(form)).await?;
        let mut roots = Vec::new();
        let mut failures = Vec::new();
        self.for_each_line("dag/import", response, |value| {
            let Some(root) = value.get("Root") else {
                return Ok(());
            };
            let text = root.get("Cid").and_then(link_cid).ok_or_else(|| {
                Error::Transport(format!("dag/import: a Root without Cid in {value}"))
            })?;
            let cid = parse_cid("dag/import", text)?;
            match root.get("PinErrorMsg").and_then(Value::as_str) {
                Some(message) if !message.is_empty() => failures.push(format!("{cid}: {message}")),
                _ => {}
            }
            roots.push(cid);
            Ok(())
        })
        .await?;
        if failures.is_empty() {
            Ok(roots)
        } else {
            Err(Error::Pin(format!(
                "Kubo imported the CAR but could not pin its root(s): {}",
                failures.join("; ")
            )))
        }
    }

    /// `id`: the daemon's peer ID and agent version.
    pub async fn id(&self) -> Result<NodeIdentity> {
        #[derive(Deserialize)]
        struct Answer {
            #[serde(rename = "ID")]
            id: String,
            #[serde(rename = "AgentVersion", default)]
            agent_version: String,
        }
        let response = self.post("id", &[], None).await?;
        let answer: Answer = self.read_json("id", response).await?;
        Ok(NodeIdentity {
            id: answer.id,
            agent_version: answer.agent_version,
        })
    }

    /// `version`: Kubo's version string, such as `0.32.1`.
    pub async fn version(&self) -> Result<String> {
        #[derive(Deserialize)]
        struct Answer {
            #[serde(rename = "Version")]
            version: String,
        }
        let response = self.post("version", &[], None).await?;
        let answer: Answer = self.read_json("version", response).await?;
        Ok(answer.version)
    }

    // ----- MFS (`ipfs files`) -----------------------------------------------------

    /// `files/mkdir`: makes a directory in the MFS; with `parents` its missing
    /// ancestors too, and an existing directory is no error.
    pub async fn files_mkdir(&self, path: &str, parents: bool) -> Result<()> {
        let mut query = vec![("arg", path.to_string())];
        if parents {
            query.push(("parents", "true".to_string()));
        }
        self.post_no_answer("files/mkdir", &query).await
    }

    /// `files/cp`: links `from` (`/ipfs/<cid>` or an MFS path) at the MFS path
    /// `to` (a `to` ending in `/` puts it inside under its own name).
    pub async fn files_cp(&self, from: &str, to: &str, parents: bool) -> Result<()> {
        let mut query = vec![("arg", from.to_string()), ("arg", to.to_string())];
        if parents {
            query.push(("parents", "true".to_string()));
        }
        self.post_no_answer("files/cp", &query).await
    }

    /// `files/mv`: moves `from` to `to` within the MFS.
    pub async fn files_mv(&self, from: &str, to: &str) -> Result<()> {
        let query = [("arg", from.to_string()), ("arg", to.to_string())];
        self.post_no_answer("files/mv", &query).await
    }

    /// `files/stat`: hash, sizes, link count and kind of the node at `path`.
    pub async fn files_stat(&self, path: &str) -> Result<NodeStat> {
        #[derive(Deserialize)]
        struct Answer {
            #[serde(rename = "Hash")]
            hash: String,
            #[serde(rename = "Size")]
            size: u64,
            #[serde(rename = "CumulativeSize")]
            cumulative_size: u64,
            #[serde(rename = "Blocks")]
            blocks: u64,
            #[serde(rename = "Type")]
            kind: String,
        }
        let response = self
            .post("files/stat", &[("arg", path.to_string())], None)
            .await?;
        let answer: Answer = self.read_json("files/stat", response).await?;
        let kind = match answer.kind.as_str() {
            "directory" => EntryKind::Directory,
            "file" => EntryKind::File,
            other => {
                return Err(Error::Transport(format!(
                    "files/stat: unknown Type {other:?} for {path}"
                )));
            }
        };
        Ok(NodeStat {
            hash: parse_cid("files/stat", &answer.hash)?,
            size: answer.size,
            cumulative_size: answer.cumulative_size,
            blocks: answer.blocks,
            kind,
        })
    }

    /// `files/ls`: the entries of the directory at `path` (or the file itself).
    /// Kubo fills in `Type`, `Size` and `Hash` only for `long` listings, so a
    /// short listing gives names (and no kind or size).
    pub async fn files_ls(&self, path: &str, long: bool) -> Result<Vec<ListEntry>> {
        #[derive(Deserialize)]
        struct Entry {
            #[serde(rename = "Name")]
            name: String,
            #[serde(rename = "Type", default)]
            kind: u64,
            #[serde(rename = "Size", default)]
            size: u64,
            #[serde(rename = "Hash", default)]
            hash: String,
        }
        #[derive(Deserialize)]
        struct Answer {
            #[serde(rename = "Entries", default)]
            entries: Option<Vec<Entry>>,
        }
        let mut query = vec![("arg", path.to_string())];
        if long {
            query.push(("long", "true".to_string()));
        }
        let response = self.post("files/ls", &query, None).await?;
        let answer: Answer = self.read_json("files/ls", response).await?;
        answer
            .entries
            .unwrap_or_default()
            .into_iter()
            .map(|e| {
                let hash = if e.hash.is_empty() {
                    None
                } else {
                    Some(parse_cid("files/ls", &e.hash)?)
                };
                Ok(ListEntry {
                    name: e.name,
                    kind: long.then_some(if e.kind == 1 {
                        EntryKind::Directory
                    } else {
                        EntryKind::File
                    }),
                    size: long.then_some(e.size),
                    hash,
                })
            })
            .collect()
    }

    /// `files/rm`: unlinks `path` (`recursive` for directories; `force`
    /// ignores a missing path).
    pub async fn files_rm(&self, path: &str, recursive: bool, force: bool) -> Result<()> {
        let mut query = vec![("arg", path.to_string())];
        if recursive {
            query.push(("recursive", "true".to_string()));
        }
        if force {
            query.push(("force", "true".to_string()));
        }
        self.post_no_answer("files/rm", &query).await
    }

    /// `files/read`: `count` bytes (all when `None`) from `offset` of the MFS file at `path`.
    pub async fn files_read(&self, path: &str, offset: u64, count: Option<u64>) -> Result<Bytes> {
        let mut query = vec![("arg", path.to_string())];
        if offset > 0 {
            query.push(("offset", int64("offset", offset)?.to_string()));
        }
        if let Some(count) = count {
            query.push(("count", int64("count", count)?.to_string()));
        }
        let response = self.post("files/read", &query, None).await?;
        let announced = announced_length(response.headers());
        let body = response
            .bytes()
            .await
            .map_err(|e| self.transport("files/read", &e))?;
        if let Some(announced) = announced
            && announced != body.len() as u64
        {
            return Err(Error::Transport(format!(
                "files/read {path}: the daemon announced {announced} bytes but sent {}",
                body.len()
            )));
        }
        Ok(body)
    }

    /// `files/write`: writes `data` into the MFS file at `path` as `options`
    /// say (offset, create, parents, truncate, count, raw leaves, CID version).
    pub async fn files_write(
        &self,
        path: &str,
        data: AddSource,
        options: &WriteOptions,
    ) -> Result<()> {
        let mut query = vec![("arg", path.to_string())];
        if options.offset > 0 {
            query.push(("offset", int64("offset", options.offset)?.to_string()));
        }
        for (name, on) in [
            ("create", options.create),
            ("parents", options.parents),
            ("truncate", options.truncate),
        ] {
            if on {
                query.push((name, "true".to_string()));
            }
        }
        if let Some(count) = options.count {
            query.push(("count", int64("count", count)?.to_string()));
        }
        if let Some(raw) = options.raw_leaves {
            query.push(("raw-leaves", raw.to_string()));
        }
        if options.cid_version != 0 {
            query.push(("cid-version", options.cid_version.to_string()));
        }
        let (part, _) = upload_part(data, "data").await?;
        let form = multipart::Form::new().part(FILE_FIELD, part);
        let response = self.post("files/write", &query, Some(form)).await?;
        self.read_limited("files/write", response, MAX_SMALL_ANSWER)
            .await?;
        Ok(())
    }

    /// `files/flush`: the CID of the MFS node at `path` after flushing it.
    pub async fn files_flush(&self, path: &str) -> Result<Cid> {
        #[derive(Deserialize)]
        struct Answer {
            #[serde(rename = "Cid")]
            cid: String,
        }
        let response = self
            .post("files/flush", &[("arg", path.to_string())], None)
            .await?;
        let answer: Answer = self.read_json("files/flush", response).await?;
        parse_cid("files/flush", &answer.cid)
    }

    // ----- plumbing -------------------------------------------------------------

    /// Posts a command whose answer carries nothing, and reads that answer.
    async fn post_no_answer(&self, command: &str, query: &[(&str, String)]) -> Result<()> {
        let response = self.post(command, query, None).await?;
        self.read_limited(command, response, MAX_SMALL_ANSWER)
            .await?;
        Ok(())
    }

    /// Posts `/api/v0/<command>` and returns the answer when it is 2xx.
    async fn post(
        &self,
        command: &str,
        query: &[(&str, String)],
        form: Option<multipart::Form>,
    ) -> Result<Response> {
        let mut url = Url::parse(&format!("{}/api/v0/{command}", self.base)).map_err(|e| {
            Error::InvalidArgument(format!("cannot form the URL of {command}: {e}"))
        })?;
        if !query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (key, value) in query {
                pairs.append_pair(key, value);
            }
        }
        let mut request = self.http.post(url);
        if let Some(form) = form {
            request = request.multipart(form);
        }
        let response = request
            .send()
            .await
            .map_err(|e| self.transport(command, &e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        match response.bytes().await {
            Ok(body) => Err(api_error(status, &body)),
            Err(e) => Err(Error::Transport(format!(
                "{command} at {}: HTTP {status}, and its body could not be read: {}",
                self.base,
                error_chain(&e)
            ))),
        }
    }

    /// Maps a reqwest error to [`Error::Transport`] with the URL and the cause.
    fn transport(&self, command: &str, e: &reqwest::Error) -> Error {
        if e.is_connect() {
            Error::Transport(format!(
                "no IPFS daemon answers at {} ({}); is the daemon running?",
                self.base,
                root_cause(e)
            ))
        } else if e.is_timeout() {
            Error::Transport(format!(
                "{command} at {} timed out ({}); the timeouts are set in ClientOptions",
                self.base,
                root_cause(e)
            ))
        } else {
            Error::Transport(format!("{command} at {}: {}", self.base, error_chain(e)))
        }
    }

    /// Calls `f` on each JSON line of a streamed answer; stops at a streamed error object.
    async fn for_each_line<F>(&self, command: &str, mut response: Response, mut f: F) -> Result<()>
    where
        F: FnMut(&Value) -> Result<()>,
    {
        let mut pending = BytesMut::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport(command, &e))?
        {
            pending.extend_from_slice(&chunk);
            while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                let line = pending.split_to(end + 1);
                handle_line(command, &line, &mut f)?;
            }
            if pending.len() > MAX_LINE {
                return Err(Error::Transport(format!(
                    "{command}: an answer line is longer than {MAX_LINE} bytes"
                )));
            }
        }
        handle_line(command, &pending, &mut f)
    }

    /// Reads a whole answer of at most `limit` bytes.
    async fn read_limited(
        &self,
        command: &str,
        mut response: Response,
        limit: usize,
    ) -> Result<Bytes> {
        let mut out = BytesMut::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport(command, &e))?
        {
            if out.len() + chunk.len() > limit {
                return Err(Error::Transport(format!(
                    "{command}: the answer is larger than {limit} bytes"
                )));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out.freeze())
    }

    /// Reads a small JSON answer (a single object; a trailing newline is fine).
    async fn read_json<T: DeserializeOwned>(&self, command: &str, response: Response) -> Result<T> {
        let body = self
            .read_limited(command, response, MAX_SMALL_ANSWER)
            .await?;
        decode_json(command, &body)
    }

    /// Copies an answer body into `out`, flushing at the end.
    async fn copy_body<W>(&self, command: &str, mut response: Response, out: &mut W) -> Result<u64>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        let mut written = 0u64;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport(command, &e))?
        {
            out.write_all(&chunk)
                .await
                .map_err(|e| Error::io(format!("{command}: cannot write the output"), e))?;
            written += chunk.len() as u64;
        }
        out.flush()
            .await
            .map_err(|e| Error::io(format!("{command}: cannot flush the output"), e))?;
        Ok(written)
    }
}

/// Builds the multipart part of an upload and tells the content size.
async fn upload_part(source: AddSource, default_name: &str) -> Result<(multipart::Part, u64)> {
    let (part, size, name) = match source {
        AddSource::Bytes(bytes) => {
            let size = bytes.len() as u64;
            (
                multipart::Part::stream_with_length(Body::from(bytes), size),
                size,
                default_name.into(),
            )
        }
        AddSource::File(path) => {
            let (file, size) = open_regular_file(&path).await?;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| default_name.to_string());
            (multipart::Part::stream_with_length(file, size), size, name)
        }
    };
    let part = part
        .file_name(name)
        .mime_str("application/octet-stream")
        .map_err(|e| Error::InvalidArgument(format!("multipart content type: {e}")))?;
    Ok((part, size))
}

async fn open_regular_file(path: &Path) -> Result<(tokio::fs::File, u64)> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
    let meta = file
        .metadata()
        .await
        .map_err(|e| Error::io(format!("cannot stat {}", path.display()), e))?;
    if !meta.is_file() {
        return Err(Error::InvalidArgument(format!(
            "{} is not a regular file; only files can be uploaded",
            path.display()
        )));
    }
    Ok((file, meta.len()))
}

fn check_add_options(options: &AddOptions) -> Result<()> {
    if options.cid_version > 1 {
        return Err(Error::InvalidArgument(format!(
            "cid-version must be 0 or 1, not {}",
            options.cid_version
        )));
    }
    if options.chunk_size == 0 || options.chunk_size > r3mes_ipfs::MAX_CHUNK_SIZE {
        return Err(Error::InvalidArgument(format!(
            "chunk size must be between 1 and {} bytes, not {}",
            r3mes_ipfs::MAX_CHUNK_SIZE,
            options.chunk_size
        )));
    }
    Ok(())
}

/// Kubo's int64 options: a u64 above `i64::MAX` is an argument error, not a wrap.
fn int64(name: &str, value: u64) -> Result<i64> {
    i64::try_from(value)
        .map_err(|_| Error::InvalidArgument(format!("{name} {value} is larger than Kubo accepts")))
}

/// The `X-Content-Length` go-ipfs-cmds sets before streaming a reader.
fn announced_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get("x-content-length")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The read cost r3mes' embedded daemon reports with a `cat`.
fn read_stats(headers: &HeaderMap) -> Option<ReadStats> {
    let number =
        |name: &str| -> Option<u64> { headers.get(name)?.to_str().ok()?.trim().parse().ok() };
    Some(ReadStats {
        blocks: number("x-r3mes-blocks")?,
        bytes: number("x-r3mes-bytes")?,
    })
}

/// A stream shorter than announced means the daemon hit an error mid-stream.
fn check_length(command: &str, cid: &Cid, got: u64, announced: Option<u64>) -> Result<()> {
    match announced {
        Some(expected) if expected != got => Err(Error::Transport(format!(
            "{command} {cid}: the daemon announced {expected} bytes but sent {got} \
             (it failed mid-stream; a block may be missing)"
        ))),
        _ => Ok(()),
    }
}

fn handle_line<F>(command: &str, line: &[u8], f: &mut F) -> Result<()>
where
    F: FnMut(&Value) -> Result<()>,
{
    let line = line.trim_ascii();
    if line.is_empty() {
        return Ok(());
    }
    let value: Value = serde_json::from_slice(line).map_err(|e| {
        Error::Transport(format!(
            "{command}: an answer line is not JSON ({e}): {}",
            preview(line)
        ))
    })?;
    if let Some(error) = streamed_error(&value) {
        return Err(error);
    }
    f(&value)
}

/// go-ipfs-cmds ends a failed stream with `{"Message":..,"Code":..,"Type":"error"}`.
fn streamed_error(value: &Value) -> Option<Error> {
    if value.get("Type")?.as_str()? != "error" {
        return None;
    }
    let message = value.get("Message")?.as_str()?.to_string();
    let code = value.get("Code").and_then(Value::as_i64).unwrap_or(0);
    Some(Error::Api {
        message,
        code,
        kind: "error".to_string(),
    })
}

/// Kubo writes some integers as JSON strings (`add`'s `"Size":"14"`); accept both.
fn json_u64(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// An IPLD link as Kubo encodes CIDs in JSON: `{"/": "<cid>"}`.
fn link_cid(value: &Value) -> Option<&str> {
    value.get("/")?.as_str()
}

fn decode_json<T: DeserializeOwned>(command: &str, body: &[u8]) -> Result<T> {
    serde_json::from_slice(body.trim_ascii()).map_err(|e| {
        Error::Transport(format!(
            "{command}: the answer is not what Kubo sends ({e}): {}",
            preview(body)
        ))
    })
}

/// Decodes Kubo's error object; falls back to the body text for anything else.
fn api_error(status: StatusCode, body: &[u8]) -> Error {
    #[derive(Deserialize)]
    struct KuboError {
        #[serde(rename = "Message")]
        message: String,
        #[serde(rename = "Code", default)]
        code: i64,
        #[serde(rename = "Type", default)]
        kind: String,
    }
    if let Ok(e) = serde_json::from_slice::<KuboError>(body.trim_ascii()) {
        return Error::Api {
            message: e.message,
            code: e.code,
            kind: e.kind,
        };
    }
    let text = String::from_utf8_lossy(body.trim_ascii()).into_owned();
    let message = if text.is_empty() {
        format!("HTTP {status} with an empty body")
    } else {
        truncate(text, 1000)
    };
    Error::Api {
        message,
        code: i64::from(status.as_u16()),
        kind: "http".to_string(),
    }
}

fn parse_cid(command: &str, text: &str) -> Result<Cid> {
    Cid::try_from(text.trim()).map_err(|e| Error::InvalidCid {
        input: text.to_string(),
        reason: format!("in the answer of {command}: {e}"),
    })
}

fn preview(bytes: &[u8]) -> String {
    truncate(String::from_utf8_lossy(bytes).into_owned(), 200)
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    text
}

/// The error and its sources, joined by `: `.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The innermost cause (for connection errors: `Connection refused (os error 111)`).
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last: &(dyn std::error::Error + 'static) = e;
    while let Some(cause) = last.source() {
        last = cause;
    }
    last.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_kubo_errors() {
        let body = br#"{"Message":"merkledag: not found","Code":0,"Type":"error"}"#;
        match api_error(StatusCode::INTERNAL_SERVER_ERROR, body) {
            Error::Api {
                message,
                code,
                kind,
            } => {
                assert_eq!(message, "merkledag: not found");
                assert_eq!(code, 0);
                assert_eq!(kind, "error");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn falls_back_to_body_text() {
        match api_error(StatusCode::NOT_FOUND, b"404 page not found\n") {
            Error::Api {
                message,
                code,
                kind,
            } => {
                assert_eq!(message, "404 page not found");
                assert_eq!(code, 404);
                assert_eq!(kind, "http");
            }
            other => panic!("{other:?}"),
        }
        let empty = api_error(StatusCode::FORBIDDEN, b"");
        assert!(empty.to_string().contains("403"), "{empty}");
        let long = api_error(StatusCode::BAD_GATEWAY, "é".repeat(2000).as_bytes());
        assert!(long.to_string().len() < 1100);
    }

    #[test]
    fn streamed_errors_stop_the_stream() {
        let mut seen = 0;
        let mut count = |_: &Value| {
            seen += 1;
            Ok(())
        };
        handle_line("add", b"{\"Hash\":\"x\"}\n", &mut count).unwrap();
        handle_line("add", b"  \n", &mut count).unwrap();
        let err = handle_line(
            "add",
            br#"{"Message":"disk full","Code":0,"Type":"error"}"#,
            &mut count,
        )
        .unwrap_err();
        assert!(err.to_string().contains("disk full"));
        let err = handle_line("add", b"not json", &mut count).unwrap_err();
        assert!(
            err.to_string().contains("add: an answer line is not JSON"),
            "{err}"
        );
        assert_eq!(seen, 1);
    }

    #[test]
    fn checks_options() {
        let ok = AddOptions::default();
        check_add_options(&ok).unwrap();
        let bad = AddOptions {
            cid_version: 2,
            ..AddOptions::default()
        };
        assert!(check_add_options(&bad).is_err());
        let bad = AddOptions {
            chunk_size: 0,
            ..AddOptions::default()
        };
        assert!(check_add_options(&bad).is_err());
        let bad = AddOptions {
            chunk_size: (1 << 20) + 1,
            ..AddOptions::default()
        };
        assert!(check_add_options(&bad).is_err());
        assert!(int64("offset", u64::MAX).is_err());
        assert_eq!(int64("offset", 7).unwrap(), 7);
    }

    #[test]
    fn integers_as_strings() {
        assert_eq!(json_u64(&serde_json::json!("14")), Some(14));
        assert_eq!(json_u64(&serde_json::json!(14)), Some(14));
        assert_eq!(json_u64(&serde_json::json!(-1)), None);
        assert_eq!(json_u64(&serde_json::json!("x")), None);
        assert_eq!(json_u64(&serde_json::json!(null)), None);
    }

    #[test]
    fn length_check() {
        let cid = Cid::try_from("QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn").unwrap();
        check_length("cat", &cid, 5, Some(5)).unwrap();
        check_length("cat", &cid, 5, None).unwrap();
        let err = check_length("cat", &cid, 3, Some(5)).unwrap_err();
        assert!(
            err.to_string().contains("announced 5 bytes but sent 3"),
            "{err}"
        );
    }

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate("abc".into(), 10), "abc");
        assert_eq!(truncate("ééé".into(), 3), "é...");
    }

    #[test]
    fn rejects_bad_addresses() {
        assert!(KuboClient::new("https://example.com").is_err());
        let client = KuboClient::new("/ip4/127.0.0.1/tcp/5001").unwrap();
        assert_eq!(client.base_url(), "http://127.0.0.1:5001");
        assert_eq!(client.options(), &ClientOptions::default());
    }

    #[test]
    fn reads_the_repo_api_file() {
        let dir = tempfile::tempdir().unwrap();
        assert!(KuboClient::from_repo_api_file(dir.path()).is_none());
        std::fs::write(dir.path().join("api"), "/unix/tmp/sock").unwrap();
        assert!(KuboClient::from_repo_api_file(dir.path()).is_none());
        std::fs::write(dir.path().join("api"), "/ip4/127.0.0.1/tcp/45001\n").unwrap();
        let client = KuboClient::from_repo_api_file(dir.path()).unwrap();
        assert_eq!(client.base_url(), "http://127.0.0.1:45001");
    }
}
