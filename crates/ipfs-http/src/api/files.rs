//! The `files/*` commands: Kubo's MFS over the repo's [`r3mes_ipfs::Mfs`].
//!
//! Arguments and options carry Kubo's names (`arg`, `parents`/`p`,
//! `long`/`l`, `recursive`/`r`, `force`, `offset`/`o`, `count`/`n`,
//! `create`/`e`, `truncate`/`t`, `raw-leaves`, `cid-version`, `hash`,
//! `flush`), answers Kubo's shapes (`files/ls` gives
//! `{"Entries":[{"Name","Type","Size","Hash"}]}`, `files/stat`
//! `{"Hash","Size","CumulativeSize","Blocks","Type"}`, `files/flush`
//! `{"Cid"}`; the others answer an empty 200). A failed command answers
//! Kubo's own message (`file does not exist`, ...) with code 0 and status
//! 500, as Kubo does; a malformed request (a missing argument, a bad option
//! value) code 1 and status 400. Every change is flushed when it returns, so
//! `flush=false` is accepted and changes nothing.

use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use r3mes_ipfs::{EntryKind, Mfs, Repo, WriteOptions};
use serde::Serialize;
use serde_json::json;

use super::upload::{feed_part, next_part, upload};
use super::{ApiError, ApiResult, X_CONTENT_LENGTH, count, flag, json};
use crate::query::QueryPairs;
use crate::stream::stream_body;

/// A files error: Kubo's message as it is; 400 when the input was malformed.
fn files_error(err: r3mes_ipfs::Error) -> ApiError {
    use r3mes_ipfs::Error as E;
    let message = err.to_string();
    match err {
        E::InvalidCid { .. }
        | E::UnsupportedCodec { .. }
        | E::UnsupportedHash { .. }
        | E::InvalidArgument(_) => ApiError::bad(message),
        _ => ApiError::failed(message),
    }
}

/// Runs MFS work on the blocking pool.
async fn run<T, F>(command: &'static str, repo: &Repo, work: F) -> ApiResult<T>
where
    T: Send + 'static,
    F: FnOnce(Mfs) -> r3mes_ipfs::Result<T> + Send + 'static,
{
    let mfs = repo.mfs();
    tokio::task::spawn_blocking(move || work(mfs))
        .await
        .map_err(|e| ApiError::failed(format!("{command}: the repo task failed: {e}")))?
        .map_err(files_error)
}

/// The empty answer of a command without output.
fn done() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "",
    )
        .into_response()
}

/// The `arg` values, `names` being Kubo's names for them; all are required.
fn args(query: &QueryPairs, names: &[&str]) -> ApiResult<Vec<String>> {
    let given: Vec<String> = query.all("arg").map(str::to_string).collect();
    if let Some(missing) = names.get(given.len()) {
        return Err(ApiError::bad(format!("argument {missing:?} is required")));
    }
    if given.len() > names.len() {
        return Err(ApiError::bad(format!(
            "expected {} argument(s), got {}",
            names.len(),
            given.len()
        )));
    }
    Ok(given)
}

/// The one `arg`, or `/` when none is given (`ls`, `flush`).
fn path_or_root(query: &QueryPairs) -> ApiResult<String> {
    let mut given: Vec<&str> = query.all("arg").collect();
    match given.len() {
        0 => Ok("/".to_string()),
        1 => Ok(given.remove(0).to_string()),
        n => Err(ApiError::bad(format!("expected 1 argument, got {n}"))),
    }
}

/// `cid-version` (alias `cid-ver`) and `hash` of `mkdir` and `write`.
fn cid_version(query: &QueryPairs) -> ApiResult<Option<u8>> {
    if let Some(hash) = query.first(&["hash"])
        && !hash.eq_ignore_ascii_case("sha2-256")
    {
        return Err(ApiError::bad(format!(
            "hash function {hash:?} is not supported (sha2-256 only)"
        )));
    }
    let Some(text) = query.first(&["cid-version", "cid-ver"]) else {
        // Kubo: naming a hash function implies CIDv1.
        return Ok(query.has(&["hash"]).then_some(1));
    };
    match text.trim().parse::<u8>() {
        Ok(v @ (0 | 1)) => Ok(Some(v)),
        _ => Err(ApiError::bad(format!(
            "invalid cid-version {text:?} (use 0 or 1)"
        ))),
    }
}

/// Checks the global `flush` option (any value Kubo takes is fine: changes are always flushed).
fn check_flush(query: &QueryPairs) -> ApiResult<()> {
    flag(query, &["flush", "f"], true).map(|_| ())
}

/// `files/mkdir?arg=<path>&parents=<bool>&cid-version=<0|1>`.
pub async fn mkdir(State(repo): State<Repo>, RawQuery(query): RawQuery) -> ApiResult {
    let query = QueryPairs::parse(query.as_deref());
    let [path] = <[String; 1]>::try_from(args(&query, &["path"])?)
        .map_err(|_| ApiError::bad("argument \"path\" is required"))?;
    let parents = flag(&query, &["parents", "p"], false)?;
    let version = cid_version(&query)?;
    check_flush(&query)?;
    run("files/mkdir", &repo, move |mfs| {
        mfs.mkdir(&path, parents, version)
    })
    .await?;
    Ok(done())
}

/// `files/cp?arg=<source>&arg=<dest>&parents=<bool>`.
pub async fn cp(State(repo): State<Repo>, RawQuery(query): RawQuery) -> ApiResult {
    let query = QueryPairs::parse(query.as_deref());
    let [from, to] = <[String; 2]>::try_from(args(&query, &["source", "dest"])?)
        .map_err(|_| ApiError::bad("argument \"dest\" is required"))?;
    let parents = flag(&query, &["parents", "p"], false)?;
    check_flush(&query)?;
    run("files/cp", &repo, move |mfs| mfs.cp(&from, &to, parents)).await?;
    Ok(done())
}

/// `files/mv?arg=<source>&arg=<dest>`.
pub async fn mv(State(repo): State<Repo>, RawQuery(query): RawQuery) -> ApiResult {
    let query = QueryPairs::parse(query.as_deref());
    let [from, to] = <[String; 2]>::try_from(args(&query, &["source", "dest"])?)
        .map_err(|_| ApiError::bad("argument \"dest\" is required"))?;
    check_flush(&query)?;
    run("files/mv", &repo, move |mfs| mfs.mv(&from, &to)).await?;
    Ok(done())
}

/// `files/stat?arg=<path>`. `format`, `hash` and `size` shape Kubo's text
/// output only and are accepted; `with-local` is not supported.
pub async fn stat(State(repo): State<Repo>, RawQuery(query): RawQuery) -> ApiResult {
    let query = QueryPairs::parse(query.as_deref());
    let [path] = <[String; 1]>::try_from(args(&query, &["path"])?)
        .map_err(|_| ApiError::bad("argument \"path\" is required"))?;
    if flag(&query, &["with-local"], false)? {
        return Err(ApiError::bad(
            "files/stat: option \"with-local\" is not supported (all content is local)",
        ));
    }
    let stat = run("files/stat", &repo, move |mfs| mfs.stat(&path)).await?;
    json("files/stat", &stat)
}

/// One entry of Kubo's `files/ls` answer.
#[derive(Debug, Serialize)]
struct LsEntry {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Type")]
    kind: u8,
    #[serde(rename = "Size")]
    size: u64,
    #[serde(rename = "Hash")]
    hash: String,
}

/// `files/ls?arg=<path>&long=<bool>`: `{"Entries":[...]}` in name order. As
/// in Kubo, a short listing carries names only (`Type` 0, `Size` 0, `Hash`
/// ""), and an empty directory gives `"Entries":null`. `U` (unsorted) is
/// accepted: directory order is name order.
pub async fn ls(State(repo): State<Repo>, RawQuery(query): RawQuery) -> ApiResult {
    let query = QueryPairs::parse(query.as_deref());
    let path = path_or_root(&query)?;
    let long = flag(&query, &["long", "l"], false)?;
    flag(&query, &["U"], false)?;
    let entries = run("files/ls", &repo, move |mfs| mfs.ls(&path, long)).await?;
    let entries: Vec<LsEntry> = entries
        .into_iter()
        .map(|e| LsEntry {
            name: e.name,
            kind: if long {
                e.kind.unwrap_or(EntryKind::File).code()
            } else {
                0
            },
            size: if long { e.size.unwrap_or(0) } else { 0 },
            hash: match (long, e.hash) {
                (true, Some(cid)) => cid.to_string(),
                _ => String::new(),
            },
        })
        .collect();
    if entries.is_empty() {
        return json("files/ls", &json!({ "Entries": null }));
    }
    json("files/ls", &json!({ "Entries": entries }))
}

/// `files/rm?arg=<path>...&recursive=<bool>&force=<bool>`: every path in turn.
pub async fn rm(State(repo): State<Repo>, RawQuery(query): RawQuery) -> ApiResult {
    let query = QueryPairs::parse(query.as_deref());
    let paths: Vec<String> = query.all("arg").map(str::to_string).collect();
    if paths.is_empty() {
        return Err(ApiError::bad("argument \"path\" is required"));
    }
    let recursive = flag(&query, &["recursive", "r"], false)?;
    let force = flag(&query, &["force"], false)?;
    check_flush(&query)?;
    run("files/rm", &repo, move |mfs| {
        paths
            .iter()
            .try_for_each(|path| mfs.rm(path, recursive, force))
    })
    .await?;
    Ok(done())
}

/// `files/read?arg=<path>&offset=<n>&count=<n>`: the bytes, streamed.
pub async fn read(State(repo): State<Repo>, RawQuery(query): RawQuery) -> ApiResult {
    let query = QueryPairs::parse(query.as_deref());
    let [path] = <[String; 1]>::try_from(args(&query, &["path"])?)
        .map_err(|_| ApiError::bad("argument \"path\" is required"))?;
    let offset = count(&query, &["offset", "o"])?.unwrap_or(0);
    let limit = count(&query, &["count", "n"])?;
    let (cid, size) = run("files/read", &repo, move |mfs| {
        let (cid, size) = mfs.file_at(&path)?;
        if offset > size {
            return Err(r3mes_ipfs::Error::Files(format!(
                "offset was past end of file ({offset} > {size})"
            )));
        }
        Ok((cid, size))
    })
    .await?;
    let length = limit.map_or(size - offset, |n| n.min(size - offset));
    let body = stream_body("files/read".to_string(), move |out| {
        if length > 0 {
            repo.cat(&cid, offset, Some(length), out)
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    });
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain".to_string()),
            (
                header::HeaderName::from_static("x-stream-output"),
                "1".to_string(),
            ),
            (
                header::HeaderName::from_static(X_CONTENT_LENGTH),
                length.to_string(),
            ),
        ],
        body,
    )
        .into_response())
}

/// `files/write?arg=<path>&...` with the data as the first multipart part.
/// Options: `offset`/`o`, `create`/`e`, `parents`/`p`, `truncate`/`t`,
/// `count`/`n`, `raw-leaves`, `cid-version`, `hash`. The file is re-imported
/// with `ipfs add`'s layout (see [`r3mes_ipfs::mfs`]).
pub async fn write(
    State(repo): State<Repo>,
    RawQuery(query): RawQuery,
    multipart: Result<Multipart, MultipartRejection>,
) -> ApiResult {
    let query = QueryPairs::parse(query.as_deref());
    let [path] = <[String; 1]>::try_from(args(&query, &["path"])?)
        .map_err(|_| ApiError::bad("argument \"path\" is required"))?;
    let offset = match count(&query, &["offset", "o"]) {
        Err(e) if e.message.contains("negative") => {
            return Err(ApiError::failed("cannot have negative write offset"));
        }
        other => other?.unwrap_or(0),
    };
    let limit = match count(&query, &["count", "n"]) {
        Err(e) if e.message.contains("negative") => {
            return Err(ApiError::failed("cannot have negative byte count"));
        }
        other => other?,
    };
    let raw_leaves = match query.first(&["raw-leaves"]) {
        None => None,
        Some(_) => Some(flag(&query, &["raw-leaves"], false)?),
    };
    let options = WriteOptions {
        offset,
        create: flag(&query, &["create", "e"], false)?,
        parents: flag(&query, &["parents", "p"], false)?,
        truncate: flag(&query, &["truncate", "t"], false)?,
        count: limit,
        raw_leaves,
        cid_version: cid_version(&query)?.unwrap_or(0),
    };
    check_flush(&query)?;
    let mut multipart = upload("files/write", multipart)?;
    let field = next_part("files/write", &mut multipart)
        .await?
        .ok_or_else(|| ApiError::bad("argument \"data\" is required"))?;
    feed_part(
        "files/write",
        &repo,
        field,
        files_error,
        move |repo, reader| repo.mfs().write(&path, reader, &options).map(|_| ()),
    )
    .await?;
    Ok(done())
}

/// `files/flush?arg=<path>`: `{"Cid":"<cid>"}` of the path (default `/`).
pub async fn flush(State(repo): State<Repo>, RawQuery(query): RawQuery) -> ApiResult {
    let query = QueryPairs::parse(query.as_deref());
    let path = path_or_root(&query)?;
    let cid = run("files/flush", &repo, move |mfs| mfs.flush(&path)).await?;
    json("files/flush", &json!({ "Cid": cid.to_string() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_and_options() {
        let q = QueryPairs::parse(Some("arg=/a&arg=/b"));
        assert_eq!(args(&q, &["source", "dest"]).unwrap(), ["/a", "/b"]);
        let err = args(&q, &["source", "dest", "third"]).unwrap_err();
        assert_eq!(
            (err.status, err.message.as_str()),
            (StatusCode::BAD_REQUEST, "argument \"third\" is required")
        );
        assert!(args(&q, &["path"]).is_err());
        assert_eq!(path_or_root(&QueryPairs::parse(None)).unwrap(), "/");
        let v = |s: &str| cid_version(&QueryPairs::parse(Some(s)));
        assert_eq!(v("").unwrap(), None);
        assert_eq!(v("cid-version=1").unwrap(), Some(1));
        assert_eq!(v("cid-ver=0").unwrap(), Some(0));
        assert_eq!(v("hash=sha2-256").unwrap(), Some(1));
        assert!(v("cid-version=2").is_err());
        assert!(v("hash=blake3").is_err());
    }

    #[test]
    fn errors_keep_kubos_messages() {
        let err = files_error(r3mes_ipfs::Error::FileDoesNotExist { path: "/x".into() });
        assert_eq!(
            (err.status, err.code()),
            (StatusCode::INTERNAL_SERVER_ERROR, 0)
        );
        assert_eq!(err.message, "file does not exist");
        let err = files_error(r3mes_ipfs::Error::InvalidArgument("bad".into()));
        assert_eq!(err.code(), 1);
    }
}
