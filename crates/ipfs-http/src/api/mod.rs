//! The RPC API: the subset of Kubo's `/api/v0/` commands r3mes uses, with
//! Kubo's options, answers and errors.
//!
//! Every command is `POST /api/v0/<command>?arg=...&<option>=...`; other
//! methods answer `405` and unknown commands `404`, with Kubo's plain-text
//! bodies. A failed command answers Kubo's error JSON
//! `{"Message":"...","Code":0,"Type":"error"}` with status 500, or `Code` 1 and
//! status 400 when the request itself is wrong (a malformed CID, a bad option).
//! Requests from a browser page of another origin are refused (`403`), as
//! Kubo refuses them, so a web page cannot drive the API of a local daemon.
//!
//! | command | answer |
//! | --- | --- |
//! | `add` | NDJSON `{"Name","Hash","Size"}` per file (multipart upload, streamed; `to-files` links it in the MFS) |
//! | `cat` | the bytes; `X-Content-Length`, `X-R3mes-Blocks`, `X-R3mes-Bytes` |
//! | `block/get`, `block/stat`, `block/put` | bytes; `{"Key","Size"}` |
//! | `pin/add`, `pin/rm`, `pin/ls` | `{"Pins":[...]}`; `{"Keys":{cid:{"Type","Name"}}}` |
//! | `repo/gc` | NDJSON `{"Key":{"/":cid}}` per removed block |
//! | `dag/export`, `dag/import` | CAR v1 bytes; NDJSON `{"Root":{"Cid":{"/":cid},"PinErrorMsg"}}` |
//! | `id`, `version` | `{"ID",...}`; `{"Version",...}` |
//! | `files/mkdir`, `files/cp`, `files/mv`, `files/rm`, `files/write` | empty (MFS changes) |
//! | `files/stat`, `files/ls`, `files/flush` | `{"Hash","Size","CumulativeSize","Blocks","Type"}`; `{"Entries":[...]}`; `{"Cid"}` |
//! | `files/read` | the bytes |

mod commands;
mod files;
mod upload;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use r3mes_ipfs::directory::split_ipfs_path;
use r3mes_ipfs::{Cid, Repo};
use serde::Serialize;

use crate::query::QueryPairs;

/// Header announcing the number of bytes a streamed answer carries (Kubo's).
pub const X_CONTENT_LENGTH: &str = "x-content-length";
/// Header with the number of blocks a `cat` fetched.
pub const X_R3MES_BLOCKS: &str = "x-r3mes-blocks";
/// Header with the bytes of the blocks a `cat` fetched.
pub const X_R3MES_BYTES: &str = "x-r3mes-bytes";

/// The RPC API over `repo`, ready to serve.
pub fn router(repo: Repo) -> Router {
    Router::new()
        .route("/api/v0/add", post(upload::add))
        .route("/api/v0/block/put", post(upload::block_put))
        .route("/api/v0/dag/import", post(upload::dag_import))
        .route("/api/v0/cat", post(commands::cat))
        .route("/api/v0/ls", post(commands::ls))
        .route("/api/v0/block/get", post(commands::block_get))
        .route("/api/v0/block/stat", post(commands::block_stat))
        .route("/api/v0/pin/add", post(commands::pin_add))
        .route("/api/v0/pin/rm", post(commands::pin_rm))
        .route("/api/v0/pin/ls", post(commands::pin_ls))
        .route("/api/v0/repo/gc", post(commands::repo_gc))
        .route("/api/v0/dag/export", post(commands::dag_export))
        .route("/api/v0/id", post(commands::id))
        .route("/api/v0/version", post(commands::version))
        .route("/api/v0/files/mkdir", post(files::mkdir))
        .route("/api/v0/files/cp", post(files::cp))
        .route("/api/v0/files/mv", post(files::mv))
        .route("/api/v0/files/stat", post(files::stat))
        .route("/api/v0/files/ls", post(files::ls))
        .route("/api/v0/files/rm", post(files::rm))
        .route("/api/v0/files/read", post(files::read))
        .route("/api/v0/files/write", post(files::write))
        .route("/api/v0/files/flush", post(files::flush))
        .fallback(not_found)
        // Uploads stream into the importer, so the size of a body is no concern.
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn(gatekeeper))
        .with_state(repo)
}

/// Kubo's answer to an unknown command.
async fn not_found() -> Response {
    plain(StatusCode::NOT_FOUND, "404 page not found")
}

/// Refuses what Kubo refuses before looking at the command: methods other than
/// POST, and cross-origin browser requests.
async fn gatekeeper(request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "405 - Method Not Allowed");
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    if !same_origin(&request) {
        tracing::warn!(
            "API refused a cross-origin request to {} (possible CSRF)",
            request.uri().path()
        );
        return plain(StatusCode::FORBIDDEN, "403 - Forbidden");
    }
    next.run(request).await
}

/// Whether the request comes from no browser page, or from one served by this
/// API itself: `Origin` (and `Referer`) must name the host the request is for.
fn same_origin(request: &Request) -> bool {
    let headers = request.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let allowed = |value: &str| {
        ["http://", "https://"].iter().any(|scheme| {
            value
                .strip_prefix(scheme)
                .map(|rest| rest.split('/').next().unwrap_or_default())
                .is_some_and(|authority| !host.is_empty() && authority == host)
        })
    };
    [header::ORIGIN, header::REFERER].iter().all(|name| {
        headers
            .get(name)
            .is_none_or(|v| v.to_str().is_ok_and(&allowed))
    })
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{text}\n"),
    )
        .into_response()
}

/// A failed command, answered with Kubo's error JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// 400 for a request that is wrong, 500 for a command that failed.
    pub status: StatusCode,
    /// What failed and why.
    pub message: String,
}

impl ApiError {
    /// The request is wrong (Kubo's `ErrClient`, code 1, HTTP 400).
    pub fn bad(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    /// The command failed (Kubo's `ErrNormal`, code 0, HTTP 500).
    pub fn failed(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
        }
    }

    /// A repo error of `command`: the caller's fault (400) when the input was
    /// malformed, the command's (500) otherwise.
    pub fn repo(command: &str, err: r3mes_ipfs::Error) -> Self {
        use r3mes_ipfs::Error as E;
        let message = format!("{command}: {err}");
        match err {
            E::InvalidCid { .. }
            | E::UnsupportedCodec { .. }
            | E::UnsupportedHash { .. }
            | E::InvalidArgument(_)
            | E::Car(_) => Self::bad(message),
            _ => Self::failed(message),
        }
    }

    /// Kubo's `Code`: 1 for client errors, 0 otherwise.
    pub fn code(&self) -> u8 {
        u8::from(self.status == StatusCode::BAD_REQUEST)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Body<'a> {
            #[serde(rename = "Message")]
            message: &'a str,
            #[serde(rename = "Code")]
            code: u8,
            #[serde(rename = "Type")]
            kind: &'static str,
        }
        let body = Body {
            message: &self.message,
            code: self.code(),
            kind: "error",
        };
        let text = serde_json::to_string(&body).unwrap_or_else(|_| {
            r#"{"Message":"(the error message could not be encoded)","Code":0,"Type":"error"}"#
                .to_string()
        });
        (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            text + "\n",
        )
            .into_response()
    }
}

/// Result of a command handler.
type ApiResult<T = Response> = Result<T, ApiError>;

/// Runs blocking repo work on the blocking pool.
async fn blocking<T, F>(command: &'static str, repo: &Repo, work: F) -> ApiResult<T>
where
    T: Send + 'static,
    F: FnOnce(Repo) -> r3mes_ipfs::Result<T> + Send + 'static,
{
    let repo = repo.clone();
    tokio::task::spawn_blocking(move || work(repo))
        .await
        .map_err(|e| ApiError::failed(format!("{command}: the repo task failed: {e}")))?
        .map_err(|e| ApiError::repo(command, e))
}

/// One JSON value as a line.
fn json_line<T: Serialize>(command: &str, value: &T) -> ApiResult<String> {
    serde_json::to_string(value)
        .map(|s| s + "\n")
        .map_err(|e| ApiError::failed(format!("{command}: encoding the answer: {e}")))
}

/// A one-value JSON answer.
fn json<T: Serialize>(command: &str, value: &T) -> ApiResult {
    let body = json_line(command, value)?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// An answer of JSON lines, as Kubo streams them (`X-Chunked-Output: 1`).
fn ndjson(lines: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::HeaderName::from_static("x-chunked-output"), "1"),
        ],
        lines,
    )
        .into_response()
}

/// Reads a boolean option (any of `names`), Go-style (`true`, `1`, `t`, ...);
/// present without a value means true.
fn flag(query: &QueryPairs, names: &[&str], default: bool) -> ApiResult<bool> {
    match query.first(names) {
        None => Ok(default),
        Some("" | "1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
        Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
        Some(other) => Err(ApiError::bad(format!(
            "invalid value {other:?} for option {:?}: expected true or false",
            names[0]
        ))),
    }
}

/// Reads a non-negative integer option.
fn count(query: &QueryPairs, names: &[&str]) -> ApiResult<Option<u64>> {
    let Some(text) = query.first(names) else {
        return Ok(None);
    };
    match text.trim().parse::<i64>() {
        Ok(n) if n < 0 => Err(ApiError::bad(format!(
            "cannot specify negative {}",
            names[0]
        ))),
        Ok(n) => Ok(Some(n.unsigned_abs())),
        Err(_) => Err(ApiError::bad(format!(
            "invalid value {text:?} for option {:?}: expected an integer",
            names[0]
        ))),
    }
}

/// Parses one CID argument: a CID, or `/ipfs/<cid>`. Paths inside a DAG and
/// IPNS names are refused with a clear reason.
fn cid_arg(command: &str, text: &str) -> ApiResult<Cid> {
    let (cid, rest) = path_arg(command, text)?;
    if !rest.trim_matches('/').is_empty() {
        return Err(ApiError::bad(format!(
            "{command}: {text:?}: paths inside a DAG are not supported; name the CID itself"
        )));
    }
    Ok(cid)
}

/// Parses one IPFS path argument: a CID or `/ipfs/<cid>`, optionally
/// followed by `/name/...` inside the DAG (returned as the second part, for
/// [`r3mes_ipfs::Repo::resolve_path`]). IPNS names are refused.
fn path_arg(command: &str, text: &str) -> ApiResult<(Cid, String)> {
    let trimmed = text.trim();
    if trimmed.starts_with("/ipns/") {
        return Err(ApiError::bad(format!(
            "{command}: {text:?}: IPNS names are not supported by the embedded daemon"
        )));
    }
    let bare = trimmed.strip_prefix("/ipfs/").unwrap_or(trimmed);
    let (cid, rest) = split_ipfs_path(bare).map_err(|e| ApiError::repo(command, e))?;
    Ok((cid, rest.to_string()))
}

/// Every `arg` as a CID; at least one is required (`name` is Kubo's name for it).
fn cid_args(command: &str, query: &QueryPairs, name: &str) -> ApiResult<Vec<Cid>> {
    required(name, query.all("arg").map(|a| cid_arg(command, a)))
}

/// Every `arg` as an IPFS path (see [`path_arg`]); at least one is required.
fn path_args(command: &str, query: &QueryPairs, name: &str) -> ApiResult<Vec<(Cid, String)>> {
    required(name, query.all("arg").map(|a| path_arg(command, a)))
}

fn required<T>(name: &str, args: impl Iterator<Item = ApiResult<T>>) -> ApiResult<Vec<T>> {
    let args = args.collect::<ApiResult<Vec<_>>>()?;
    if args.is_empty() {
        return Err(ApiError::bad(format!("argument {name:?} is required")));
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_as_kubo_parses_them() {
        let q = QueryPairs::parse(Some("pin=false&n&r=1&offset=5&length=-1&bad=x&big=9x"));
        assert!(!flag(&q, &["pin"], true).unwrap());
        assert!(flag(&q, &["only-hash", "n"], false).unwrap());
        assert!(flag(&q, &["recursive", "r"], false).unwrap());
        assert!(flag(&q, &["absent"], true).unwrap());
        assert_eq!(flag(&q, &["bad"], true).unwrap_err().status, 400);
        assert_eq!(count(&q, &["offset"]).unwrap(), Some(5));
        assert!(
            count(&q, &["length"])
                .unwrap_err()
                .message
                .contains("negative length")
        );
        assert!(count(&q, &["big"]).is_err());
        assert_eq!(count(&q, &["absent"]).unwrap(), None);
    }

    #[test]
    fn cid_arguments() {
        let v0 = "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH";
        assert_eq!(cid_arg("cat", v0).unwrap().to_string(), v0);
        assert_eq!(
            cid_arg("cat", &format!("/ipfs/{v0}")).unwrap().to_string(),
            v0
        );
        assert_eq!(
            cid_arg("cat", &format!("/ipfs/{v0}/")).unwrap().to_string(),
            v0
        );
        let err = cid_arg("pin/add", &format!("/ipfs/{v0}/a/b")).unwrap_err();
        assert!(
            err.message.contains("paths inside a DAG"),
            "{}",
            err.message
        );
        assert!(cid_arg("cat", "/ipns/example.com").is_err());
        let err = cid_arg("cat", "not-a-cid").unwrap_err();
        assert_eq!((err.status, err.code()), (StatusCode::BAD_REQUEST, 1));
        assert!(
            err.message.starts_with("cat: invalid CID"),
            "{}",
            err.message
        );
        let q = QueryPairs::parse(Some("x=1"));
        assert!(
            cid_args("cat", &q, "ipfs-path")
                .unwrap_err()
                .message
                .contains("\"ipfs-path\" is required")
        );
    }

    #[test]
    fn error_json_is_kubos() {
        let response = ApiError::failed("boom").into_response();
        assert_eq!(response.status(), 500);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    }
}
