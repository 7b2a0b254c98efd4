//! Commands that take a multipart upload: `add`, `block/put`, `dag/import`.
//!
//! `add` and `dag/import` never hold an upload in memory: each part's chunks
//! go through a bounded channel to the blocking importer, which reads them as a
//! `std::io::Read` ([`ChannelReader`]), so a multi-gigabyte upload costs a few
//! chunks of memory and the client is slowed to the importer's pace. A part
//! cut short by the client fails the command; what was imported of it stays
//! unpinned, for the next GC.

use axum::extract::multipart::{Field, MultipartRejection};
use axum::extract::{Multipart, RawQuery, State};
use r3mes_ipfs::{AddOptions, Cid, MAX_CHUNK_SIZE, PinInfo, PinMode, Repo, cids};
use serde::Serialize;
use serde_json::json;

use super::{ApiError, ApiResult, blocking, flag, json_line, ndjson};
use crate::query::{self, QueryPairs};
use crate::stream::ChannelReader;

/// Largest block `block/put` accepts without `allow-big-block` (Kubo's limit).
const MAX_BLOCK: usize = 1 << 20;
/// Largest block `block/put` accepts at all (the largest a CAR section holds).
const MAX_BIG_BLOCK: usize = 2 << 20;

/// Options of `add` that r3mes' importer does not implement; each would give a
/// CID other than Kubo's, so it is refused rather than ignored.
const UNSUPPORTED_ADD_FLAGS: [(&[&str], &str); 6] = [
    (
        &["trickle", "t"],
        "the trickle layout is not supported (balanced only)",
    ),
    (
        &["wrap-with-directory", "w"],
        "directories are not supported (add files one by one)",
    ),
    (
        &["inline"],
        "inlining small blocks in identity CIDs is not supported",
    ),
    (&["nocopy"], "the filestore (nocopy) is not supported"),
    (&["raw-leaves-only"], "this option is not supported"),
    (
        &["preserve-mode", "preserve-mtime"],
        "UnixFS mode and mtime are not supported",
    ),
];

/// What `add` was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AddRequest {
    options: AddOptions,
    pin_name: Option<String>,
    /// MFS path to link each added file at (`to-files`).
    to_files: Option<String>,
}

impl AddRequest {
    /// Reads Kubo's `add` options. `quiet`, `quieter`, `silent` and `progress`
    /// only shape Kubo's command-line output and are accepted without effect.
    fn from_query(query: &QueryPairs) -> ApiResult<Self> {
        for (names, reason) in UNSUPPORTED_ADD_FLAGS {
            if flag(query, names, false)? {
                return Err(ApiError::bad(format!(
                    "add: option {:?}: {reason}",
                    names[0]
                )));
            }
        }
        let to_files = query
            .first(&["to-files"])
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        if let Some(to) = &to_files {
            r3mes_ipfs::MfsPath::parse(to)
                .map_err(|e| ApiError::bad(format!("add: option \"to-files\" ({to:?}): {e}")))?;
        }
        if let Some(hash) = query.first(&["hash"])
            && hash != "sha2-256"
        {
            return Err(ApiError::bad(format!(
                "add: hash function {hash:?} is not supported (sha2-256 only)"
            )));
        }
        let cid_version = match query.first(&["cid-version"]) {
            None => 0,
            Some(text) => text.trim().parse::<u8>().map_err(|_| {
                ApiError::bad(format!("add: invalid cid-version {text:?} (use 0 or 1)"))
            })?,
        };
        let raw_leaves = match query.first(&["raw-leaves"]) {
            None => None,
            Some(_) => Some(flag(query, &["raw-leaves"], false)?),
        };
        let chunk_size = match query.first(&["chunker", "s"]) {
            None | Some("") => r3mes_ipfs::DEFAULT_CHUNK_SIZE,
            Some(spec) => parse_chunker(spec)?,
        };
        let options = AddOptions {
            cid_version,
            raw_leaves,
            pin: flag(query, &["pin"], true)?,
            only_hash: flag(query, &["only-hash", "n"], false)?,
            chunk_size,
        };
        // Refuse bad combinations before the upload is read.
        r3mes_ipfs::importer::ImportParams::from_options(&options)
            .map_err(|e| ApiError::repo("add", e))?;
        let pin_name = query
            .first(&["pin-name"])
            .filter(|n| !n.is_empty())
            .map(str::to_string);
        if to_files.is_some() && options.only_hash {
            return Err(ApiError::bad(
                "add: \"to-files\" and \"only-hash\" cannot be combined (nothing is stored)",
            ));
        }
        Ok(Self {
            options,
            pin_name,
            to_files,
        })
    }
}

/// Kubo's `size-N` chunker spelling (`size` alone is the default size).
fn parse_chunker(spec: &str) -> ApiResult<usize> {
    let size = match spec {
        "size" => Some(r3mes_ipfs::DEFAULT_CHUNK_SIZE),
        _ => spec
            .strip_prefix("size-")
            .and_then(|n| n.parse::<usize>().ok()),
    };
    match size {
        Some(n) if n > 0 && n <= MAX_CHUNK_SIZE => Ok(n),
        Some(n) => Err(ApiError::bad(format!(
            "add: chunk size {n} out of range (1 to {MAX_CHUNK_SIZE} bytes)"
        ))),
        None => Err(ApiError::bad(format!(
            "add: chunker {spec:?} is not supported (use size-<bytes>, such as size-262144)"
        ))),
    }
}

/// One line of `add`'s answer, exactly as Kubo writes it.
#[derive(Debug, Serialize)]
struct AddLine {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Hash")]
    hash: String,
    /// Cumulative DAG size, as a decimal string.
    #[serde(rename = "Size")]
    size: String,
}

/// `add`: imports every file part of the upload (any field name) as UnixFS and
/// answers one `{"Name","Hash","Size"}` line per file, `Size` being the
/// cumulative size of the DAG as a decimal string, as Kubo answers.
pub async fn add(
    State(repo): State<Repo>,
    RawQuery(query): RawQuery,
    multipart: Result<Multipart, MultipartRejection>,
) -> ApiResult {
    let request = AddRequest::from_query(&QueryPairs::parse(query.as_deref()))?;
    let mut multipart = upload("add", multipart)?;
    let mut lines = String::new();
    while let Some(field) = next_part("add", &mut multipart).await? {
        if field.content_type() == Some("application/x-directory") {
            return Err(ApiError::bad(
                "add: directories are not supported (add files one by one)",
            ));
        }
        let name = field.file_name().map(query::decode);
        let request = request.clone();
        let link_name = name.clone();
        let imported = feed("add", &repo, field, move |repo, reader| {
            let imported = repo.add(reader, &request.options)?;
            if let Some(name) = request.pin_name
                && request.options.pin
                && !request.options.only_hash
            {
                repo.store().put_pin(&PinInfo {
                    cid: imported.root,
                    mode: PinMode::Recursive,
                    name: Some(name),
                })?;
            }
            if let Some(to) = &request.to_files {
                // Kubo: a path ending in "/" receives the file under its own name.
                let dest = if to.ends_with('/') {
                    let base = link_name
                        .as_deref()
                        .and_then(|n| n.rsplit('/').next())
                        .filter(|n| !n.is_empty())
                        .map(str::to_string)
                        .unwrap_or_else(|| imported.root.to_string());
                    format!("{to}{base}")
                } else {
                    to.clone()
                };
                repo.mfs()
                    .cp(&format!("/ipfs/{}", imported.root), &dest, false)
                    .map_err(|e| {
                        r3mes_ipfs::Error::Files(format!(
                            "cannot put the added file at {dest} (to-files): {e}"
                        ))
                    })?;
            }
            Ok(imported)
        })
        .await?;
        let hash = imported.root.to_string();
        let line = AddLine {
            name: name
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| hash.clone()),
            hash,
            size: imported.dag_size.to_string(),
        };
        lines += &json_line("add", &line)?;
    }
    if lines.is_empty() {
        return Err(ApiError::bad(
            "add: the request holds no file (send it as a multipart/form-data part)",
        ));
    }
    Ok(ndjson(lines))
}

/// `block/put`: stores each part as one block (`cid-codec` raw, the default, or
/// dag-pb; legacy `format=v0` gives dag-pb CIDv0) and answers one
/// `{"Key","Size"}` line per block. `pin=true` pins each recursively.
pub async fn block_put(
    State(repo): State<Repo>,
    RawQuery(query): RawQuery,
    multipart: Result<Multipart, MultipartRejection>,
) -> ApiResult {
    let query = QueryPairs::parse(query.as_deref());
    let (codec, cid_version) = block_format(&query)?;
    if let Some(mh) = query.first(&["mhtype"])
        && mh != "sha2-256"
    {
        return Err(ApiError::bad(format!(
            "block/put: multihash {mh:?} is not supported (sha2-256 only)"
        )));
    }
    let pin = flag(&query, &["pin"], false)?;
    let limit = if flag(&query, &["allow-big-block"], false)? {
        MAX_BIG_BLOCK
    } else {
        MAX_BLOCK
    };
    let mut multipart = upload("block/put", multipart)?;
    let mut lines = String::new();
    while let Some(mut field) = next_part("block/put", &mut multipart).await? {
        let mut data = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(|e| {
            ApiError::bad(format!("block/put: reading the upload: {}", e.body_text()))
        })? {
            if data.len() + chunk.len() > limit {
                return Err(ApiError::bad(format!(
                    "block/put: the block is over {limit} bytes; big blocks cannot be \
                     exchanged with other peers (add the content with `add`, which chunks it{})",
                    if limit == MAX_BLOCK {
                        ", or pass allow-big-block=true"
                    } else {
                        ""
                    }
                )));
            }
            data.extend_from_slice(&chunk);
        }
        let size = data.len();
        let cid = blocking("block/put", &repo, move |repo| {
            let cid = repo.block_put(&data, codec, cid_version)?;
            if pin {
                repo.pin_add(&cid, PinMode::Recursive, None)?;
            }
            Ok(cid)
        })
        .await?;
        lines += &json_line(
            "block/put",
            &json!({ "Key": cid.to_string(), "Size": size }),
        )?;
    }
    if lines.is_empty() {
        return Err(ApiError::bad("block/put: the request holds no block"));
    }
    Ok(ndjson(lines))
}

/// The codec and CID version `block/put` was asked for.
fn block_format(query: &QueryPairs) -> ApiResult<(u64, u8)> {
    let codec = |name: &str| match name {
        "raw" => Ok((cids::RAW, 1)),
        "dag-pb" => Ok((cids::DAG_PB, 1)),
        other => Err(ApiError::bad(format!(
            "block/put: codec {other:?} is not supported (raw or dag-pb)"
        ))),
    };
    match (query.first(&["cid-codec"]), query.first(&["format", "f"])) {
        (Some(name), _) => codec(name),
        (None, Some("v0" | "protobuf")) => Ok((cids::DAG_PB, 0)),
        (None, Some(name)) => codec(name),
        (None, None) => Ok((cids::RAW, 1)),
    }
}

/// `dag/import`: imports each part as a CAR v1 file. Every block is checked
/// against its CID first: one bad block rejects the whole file and nothing of
/// it is stored. Then (`pin-roots`, default true) each root is pinned
/// recursively and reported as `{"Root":{"Cid":{"/":cid},"PinErrorMsg":""}}`,
/// the message saying why a root whose DAG is incomplete could not be pinned.
pub async fn dag_import(
    State(repo): State<Repo>,
    RawQuery(query): RawQuery,
    multipart: Result<Multipart, MultipartRejection>,
) -> ApiResult {
    let query = QueryPairs::parse(query.as_deref());
    let pin_roots = flag(&query, &["pin-roots"], true)?;
    let mut multipart = upload("dag/import", multipart)?;
    let mut roots: Vec<Cid> = Vec::new();
    let mut files = 0;
    while let Some(field) = next_part("dag/import", &mut multipart).await? {
        files += 1;
        let imported = feed("dag/import", &repo, field, |repo, reader| {
            repo.import_car(reader, false)
        })
        .await?;
        for root in imported.roots {
            if !roots.contains(&root) {
                roots.push(root);
            }
        }
    }
    if files == 0 {
        return Err(ApiError::bad("dag/import: the request holds no CAR file"));
    }
    if !pin_roots {
        return Ok(ndjson(String::new()));
    }
    let outcomes = blocking("dag/import", &repo, move |repo| {
        Ok(roots
            .into_iter()
            .map(|root| {
                let message = match repo.pin_add(&root, PinMode::Recursive, None) {
                    Ok(()) => String::new(),
                    Err(e) => e.to_string(),
                };
                (root, message)
            })
            .collect::<Vec<_>>())
    })
    .await?;
    let mut lines = String::new();
    for (root, message) in outcomes {
        lines += &json_line(
            "dag/import",
            &json!({ "Root": { "Cid": { "/": root.to_string() }, "PinErrorMsg": message } }),
        )?;
    }
    Ok(ndjson(lines))
}

/// The multipart body, or Kubo's error when there is none.
pub(super) fn upload(
    command: &str,
    multipart: Result<Multipart, MultipartRejection>,
) -> ApiResult<Multipart> {
    multipart.map_err(|e| {
        ApiError::bad(format!(
            "{command}: the request body must be multipart/form-data: {}",
            e.body_text()
        ))
    })
}

pub(super) async fn next_part<'a>(
    command: &str,
    multipart: &'a mut Multipart,
) -> ApiResult<Option<Field<'a>>> {
    multipart
        .next_field()
        .await
        .map_err(|e| ApiError::bad(format!("{command}: reading the upload: {}", e.body_text())))
}

/// Streams one part into `work`, which runs on the blocking pool and reads the
/// part as a `Read`. Backpressure: a chunk waits until the importer takes it.
async fn feed<T, F>(command: &'static str, repo: &Repo, field: Field<'_>, work: F) -> ApiResult<T>
where
    T: Send + 'static,
    F: FnOnce(Repo, &mut ChannelReader) -> r3mes_ipfs::Result<T> + Send + 'static,
{
    feed_part(command, repo, field, |e| ApiError::repo(command, e), work).await
}

/// [`feed`] with the caller's mapping of repo errors to answers.
pub(super) async fn feed_part<T, F, M>(
    command: &'static str,
    repo: &Repo,
    mut field: Field<'_>,
    map_err: M,
    work: F,
) -> ApiResult<T>
where
    T: Send + 'static,
    F: FnOnce(Repo, &mut ChannelReader) -> r3mes_ipfs::Result<T> + Send + 'static,
    M: FnOnce(r3mes_ipfs::Error) -> ApiError,
{
    let (tx, mut reader) = ChannelReader::pair();
    let worker = repo.clone();
    let task = tokio::task::spawn_blocking(move || work(worker, &mut reader));
    let mut cut = None;
    loop {
        match field.chunk().await {
            Ok(Some(chunk)) => {
                if tx.send(Ok(chunk)).await.is_err() {
                    break; // the importer stopped early: its error says why
                }
            }
            Ok(None) => break,
            Err(e) => {
                let reason = e.body_text();
                let _ = tx.send(Err(std::io::Error::other(reason.clone()))).await;
                cut = Some(reason);
                break;
            }
        }
    }
    drop(tx);
    let outcome = task
        .await
        .map_err(|e| ApiError::failed(format!("{command}: the import task failed: {e}")))?;
    if let Some(reason) = cut {
        return Err(ApiError::bad(format!(
            "{command}: the upload was cut short: {reason}"
        )));
    }
    outcome.map_err(map_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(q: &str) -> ApiResult<AddRequest> {
        AddRequest::from_query(&QueryPairs::parse(Some(q)))
    }

    #[test]
    fn add_options_follow_kubo() {
        let default = request("").unwrap();
        assert_eq!(default.options, AddOptions::default());
        let v1 =
            request("cid-version=1&pin=false&chunker=size-1024&quiet=true&progress=true").unwrap();
        assert_eq!(v1.options.cid_version, 1);
        assert!(v1.options.effective_raw_leaves());
        assert!(!v1.options.pin);
        assert_eq!(v1.options.chunk_size, 1024);
        let no_raw = request("cid-version=1&raw-leaves=false&n=true&pin-name=x").unwrap();
        assert_eq!(no_raw.options.raw_leaves, Some(false));
        assert!(no_raw.options.only_hash);
        assert_eq!(no_raw.pin_name.as_deref(), Some("x"));
    }

    #[test]
    fn add_refuses_what_would_change_the_cid() {
        for q in [
            "trickle=true",
            "w=true",
            "hash=blake3",
            "chunker=rabin",
            "chunker=size-0",
            "chunker=size-99999999",
            "cid-version=2",
            "cid-version=x",
            "inline=true",
            "to-files=x",
            "to-files=/x&only-hash=true",
        ] {
            let err = request(q).unwrap_err();
            assert_eq!(err.status, 400, "{q}: {}", err.message);
            assert!(err.message.starts_with("add:"), "{q}: {}", err.message);
        }
        assert!(request("trickle=false").is_ok());
        assert_eq!(
            request("to-files=/a/").unwrap().to_files.as_deref(),
            Some("/a/")
        );
    }

    #[test]
    fn block_formats() {
        let f = |q: &str| block_format(&QueryPairs::parse(Some(q)));
        assert_eq!(f("").unwrap(), (cids::RAW, 1));
        assert_eq!(f("cid-codec=dag-pb").unwrap(), (cids::DAG_PB, 1));
        assert_eq!(f("format=v0").unwrap(), (cids::DAG_PB, 0));
        assert!(f("cid-codec=dag-cbor").is_err());
    }
}
