//! The trustless gateway: `GET`/`HEAD /ipfs/{cid}` answered from the repo,
//! following the IPFS HTTP gateway specs (trustless and path gateway).
//!
//! - `?format=raw` or `Accept: application/vnd.ipld.raw`: the block itself.
//! - `?format=car` or `Accept: application/vnd.ipld.car`: a CAR v1 stream,
//!   depth-first, each block once (`version=1; order=dfs; dups=n` in the
//!   `Content-Type`), with `dag-scope=all|entity|block` and
//!   `entity-bytes=from:to`: only the blocks a client needs to verify that
//!   byte range of a file, the very blocks a range read fetches
//!   ([`crate::plan`]).
//! - no format: the file's bytes, with HTTP `Range` (`206`/`416`).
//!
//! Every success carries `Etag` (`"<cid>.raw"`, `"<cid>.car.<hash of the CAR
//! parameters>"`, `"<cid>"` for file bytes; `If-None-Match` answers `304`),
//! `Cache-Control: public, max-age=29030400, immutable`, `X-Ipfs-Path`,
//! `X-Ipfs-Roots` and `X-Content-Type-Options: nosniff`. A root block absent
//! from the repo is `404` (the gateway never fetches from the network; `412`
//! with `Cache-Control: only-if-cached`), a malformed CID `400`, a format it
//! does not serve `406` or `400`. `/ipfs/bafkqaaa`, the empty identity CID,
//! answers the trustless-gateway probe. A block found missing or corrupt while
//! a CAR or file streams cuts the connection, so the client sees an incomplete
//! answer rather than a complete-looking wrong one.

pub mod negotiate;

use std::collections::HashSet;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use r3mes_ipfs::car::CarWriter;
use r3mes_ipfs::reader::{decode_file_node, walk_dag};
use r3mes_ipfs::{Cid, Repo, cids};

use crate::query::QueryPairs;
use crate::stream::stream_body;
use negotiate::{
    CAR_CONTENT_TYPE, CarRequest, DagScope, Format, HttpRange, RAW_TYPE, Refusal, Resolved,
    http_range, negotiate,
};
use r3mes_ipfs::reader::plan_range;

/// `Cache-Control` of every answer under `/ipfs/` (immutable content).
pub const IMMUTABLE: &str = "public, max-age=29030400, immutable";

/// The gateway over `repo`, ready to serve.
pub fn router(repo: Repo) -> Router {
    Router::new()
        .route("/ipfs/{*rest}", get(ipfs))
        .route("/ipns/{*rest}", get(ipns))
        .fallback(not_found)
        .with_state(repo)
}

async fn not_found() -> Response {
    text(StatusCode::NOT_FOUND, "404 page not found")
}

async fn ipns() -> Response {
    text(
        StatusCode::NOT_IMPLEMENTED,
        "IPNS is not supported by the embedded gateway: request /ipfs/{cid}",
    )
}

fn text(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{message}\n"),
    )
        .into_response()
}

async fn ipfs(State(repo): State<Repo>, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    match respond(repo, &method, &uri, &headers).await {
        Ok(response) => response,
        Err(refusal) => text(refusal.status, &refusal.message),
    }
}

/// What a request for one CID needs to be answered.
struct Target {
    repo: Repo,
    cid: Cid,
    /// `/ipfs/<cid as requested>`.
    content_path: String,
    head: bool,
}

async fn respond(
    repo: Repo,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Response, Refusal> {
    let rest = uri.path().strip_prefix("/ipfs/").unwrap_or_default();
    let (cid_text, sub_path) = rest.split_once('/').unwrap_or((rest, ""));
    let query = QueryPairs::parse(uri.query());
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let (format, negotiated) = negotiate(&query, accept)?;
    let cid = parse_cid(cid_text)?;
    if !sub_path.is_empty() {
        return Err(match format {
            Format::Raw => {
                Refusal::bad("raw blocks are served for /ipfs/{cid} only, without a path")
            }
            _ => Refusal::new(
                StatusCode::NOT_IMPLEMENTED,
                format!(
                    "paths inside a DAG are not supported by the embedded gateway: \
                     request /ipfs/{{cid}} of the entity itself (not /ipfs/{cid_text}/{sub_path})"
                ),
            ),
        });
    }
    let present = run(&repo, move |repo| repo.store().has(&cid)).await?;
    if !present {
        let only_cached = headers
            .get(header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("only-if-cached"));
        return Err(if only_cached {
            Refusal::new(
                StatusCode::PRECONDITION_FAILED,
                format!("{cid} is not in this node's repo (only-if-cached)"),
            )
        } else {
            Refusal::new(
                StatusCode::NOT_FOUND,
                format!(
                    "{cid} is not in this node's repo (the embedded gateway serves local content only)"
                ),
            )
        });
    }
    let target = Target {
        repo,
        cid,
        content_path: format!("/ipfs/{cid_text}"),
        head: method == Method::HEAD,
    };
    // A format chosen by `Accept` is named in `Content-Location`.
    let negotiated = match &format {
        Format::Raw if negotiated => Some("raw"),
        Format::Car(_) if negotiated => Some("car"),
        _ => None,
    };
    let etag = match &format {
        Format::Raw => format!("\"{cid_text}.raw\""),
        Format::Car(car) => car.etag(cid_text),
        Format::File => format!("\"{cid_text}\""),
    };
    let mut response = if if_none_match(headers, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        match format {
            Format::Raw => raw(&target).await?,
            Format::Car(car) => car_stream(&target, car).await?,
            Format::File => file(&target, headers).await?,
        }
    };
    let out = response.headers_mut();
    put(out, header::ETAG, &etag);
    put(out, header::CACHE_CONTROL, IMMUTABLE);
    put(
        out,
        HeaderName::from_static("x-ipfs-path"),
        &target.content_path,
    );
    put(
        out,
        HeaderName::from_static("x-ipfs-roots"),
        &cid.to_string(),
    );
    put(out, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    put(out, header::VARY, "Accept");
    if let Some(kind) = negotiated {
        let location = match uri.query() {
            Some(q) if !q.is_empty() => format!("{}?{q}&format={kind}", target.content_path),
            _ => format!("{}?format={kind}", target.content_path),
        };
        put(out, header::CONTENT_LOCATION, &location);
    }
    Ok(response)
}

/// Sets a header; values that are not valid header text are left out.
fn put(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

/// Whether `If-None-Match` names `etag` (weak comparison, `*` matches all).
fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

fn parse_cid(text: &str) -> Result<Cid, Refusal> {
    match cids::parse(text) {
        Ok(cid) if text.trim() == text && !text.is_empty() => Ok(cid),
        Ok(_) => Err(Refusal::bad(format!("invalid CID {text:?}"))),
        Err(e @ r3mes_ipfs::Error::InvalidCid { .. }) => Err(Refusal::bad(e.to_string())),
        Err(e) => Err(Refusal::new(
            StatusCode::NOT_FOUND,
            format!(
                "{e}: this gateway's repo holds dag-pb and raw blocks with sha2-256 hashes only"
            ),
        )),
    }
}

/// Runs blocking repo work; repo errors become refusals.
async fn run<T, F>(repo: &Repo, work: F) -> Result<T, Refusal>
where
    T: Send + 'static,
    F: FnOnce(Repo) -> r3mes_ipfs::Result<T> + Send + 'static,
{
    let repo = repo.clone();
    tokio::task::spawn_blocking(move || work(repo))
        .await
        .map_err(|e| {
            Refusal::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("repo task failed: {e}"),
            )
        })?
        .map_err(refusal)
}

fn refusal(err: r3mes_ipfs::Error) -> Refusal {
    use r3mes_ipfs::Error as E;
    let status = match err {
        E::BlockNotFound(_) => StatusCode::NOT_FOUND,
        E::InvalidCid { .. } | E::InvalidArgument(_) => StatusCode::BAD_REQUEST,
        E::NotAFile { .. } => StatusCode::NOT_IMPLEMENTED,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let message = match err {
        E::NotAFile { .. } => format!(
            "{err}: the embedded gateway serves file bytes only (use ?format=car for the DAG)"
        ),
        other => other.to_string(),
    };
    Refusal::new(status, message)
}

fn attachment(name: String) -> String {
    format!("attachment; filename=\"{name}\"")
}

/// The root block, as is.
async fn raw(target: &Target) -> Result<Response, Refusal> {
    let cid = target.cid;
    let (body, length) = if target.head {
        let size = run(&target.repo, move |repo| repo.block_stat(&cid)).await?;
        (Body::empty(), size)
    } else {
        let block = run(&target.repo, move |repo| repo.block_get(&cid)).await?;
        let size = block.len() as u64;
        (Body::from(block), size)
    };
    let mut response = body.into_response();
    let out = response.headers_mut();
    put(out, header::CONTENT_TYPE, RAW_TYPE);
    put(out, header::CONTENT_LENGTH, &length.to_string());
    put(
        out,
        header::CONTENT_DISPOSITION,
        &attachment(format!("{cid}.bin")),
    );
    Ok(response)
}

/// Which blocks a CAR carries, decided before the first byte is sent.
enum CarBlocks {
    /// The whole DAG, depth-first.
    Walk,
    /// These blocks, in this order (repeats are sent once).
    List(Vec<Cid>),
}

/// A CAR v1 stream of the blocks `car` asks for.
async fn car_stream(target: &Target, car: CarRequest) -> Result<Response, Refusal> {
    let cid = target.cid;
    let blocks = run(&target.repo, move |repo| choose_blocks(&repo, &cid, &car)).await??;
    let body = if target.head {
        Body::empty()
    } else {
        let repo = target.repo.clone();
        stream_body(format!("CAR of {cid}"), move |out| {
            write_car(&repo, &cid, blocks, out).map_err(|e| e.to_string())
        })
    };
    let mut response = body.into_response();
    let out = response.headers_mut();
    put(out, header::CONTENT_TYPE, CAR_CONTENT_TYPE);
    put(
        out,
        header::CONTENT_DISPOSITION,
        &attachment(format!("{cid}.car")),
    );
    put(out, header::ACCEPT_RANGES, "none");
    Ok(response)
}

/// Decides the blocks of a CAR from the root (read unverified: it is verified
/// when it is sent).
fn choose_blocks(
    repo: &Repo,
    cid: &Cid,
    car: &CarRequest,
) -> r3mes_ipfs::Result<Result<CarBlocks, Refusal>> {
    let file_size = || -> r3mes_ipfs::Result<Option<u64>> {
        let block = if cids::is_inline(cid) {
            cid.hash().digest().to_vec()
        } else {
            repo.store()
                .get_unverified(cid)?
                .ok_or(r3mes_ipfs::Error::BlockNotFound(*cid))?
        };
        Ok(decode_file_node(cid, block).ok().map(|node| node.size))
    };
    Ok(Ok(match (car.scope, car.bytes) {
        (DagScope::Block, _) => CarBlocks::List(vec![*cid]),
        (DagScope::All, _) => CarBlocks::Walk,
        (DagScope::Entity, None) => match file_size()? {
            Some(_) => CarBlocks::Walk,
            None => CarBlocks::List(vec![*cid]),
        },
        (DagScope::Entity, Some(bytes)) => match file_size()? {
            None => CarBlocks::List(vec![*cid]),
            Some(size) => match bytes.resolve(size) {
                Resolved::Empty => CarBlocks::List(vec![*cid]),
                Resolved::Outside => {
                    return Ok(Err(Refusal::bad(format!(
                        "entity-bytes starts past the end of {cid} ({size} bytes)"
                    ))));
                }
                Resolved::Range(start, end) => {
                    let plan = plan_range(repo.store(), cid, start, Some(end - start))?;
                    CarBlocks::List(plan.blocks.into_iter().map(|b| b.cid).collect())
                }
            },
        },
    }))
}

/// Writes the CAR: header with `root`, then the blocks, each verified, once,
/// identity CIDs left out (their data is in the CID).
fn write_car(
    repo: &Repo,
    root: &Cid,
    blocks: CarBlocks,
    out: &mut dyn std::io::Write,
) -> r3mes_ipfs::Result<()> {
    let mut car = CarWriter::new(out, &[*root])?;
    match blocks {
        CarBlocks::Walk => walk_dag(repo.store(), root, &mut |cid, block| {
            if cids::is_inline(cid) {
                Ok(())
            } else {
                car.write_block(cid, block)
            }
        })?,
        CarBlocks::List(list) => {
            let mut sent = HashSet::new();
            for cid in list {
                if cids::is_inline(&cid) || !sent.insert(cids::block_key(&cid)) {
                    continue;
                }
                let block = repo.store().get(&cid)?;
                car.write_block(&cid, &block)?;
            }
        }
    }
    car.finish()?;
    Ok(())
}

/// The file's bytes, or the part an HTTP `Range` asks for.
async fn file(target: &Target, headers: &HeaderMap) -> Result<Response, Refusal> {
    let cid = target.cid;
    let size = run(&target.repo, move |repo| repo.file_size(&cid)).await?;
    let range = http_range(
        headers.get(header::RANGE).and_then(|v| v.to_str().ok()),
        size,
    );
    let (status, start, end) = match range {
        HttpRange::Whole => (StatusCode::OK, 0, size),
        HttpRange::Part(start, end) => (StatusCode::PARTIAL_CONTENT, start, end),
        HttpRange::Unsatisfiable => {
            let mut response = text(
                StatusCode::RANGE_NOT_SATISFIABLE,
                &format!("the range is outside {cid} ({size} bytes)"),
            );
            put(
                response.headers_mut(),
                header::CONTENT_RANGE,
                &format!("bytes */{size}"),
            );
            return Ok(response);
        }
    };
    let length = end - start;
    let body = if target.head || length == 0 {
        Body::empty()
    } else {
        let repo = target.repo.clone();
        stream_body(format!("file {cid}"), move |out| {
            repo.cat(&cid, start, Some(length), out)
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    };
    let mut response = (status, body).into_response();
    let out = response.headers_mut();
    put(out, header::CONTENT_TYPE, "application/octet-stream");
    put(out, header::CONTENT_LENGTH, &length.to_string());
    put(out, header::ACCEPT_RANGES, "bytes");
    if status == StatusCode::PARTIAL_CONTENT {
        put(
            out,
            header::CONTENT_RANGE,
            &format!("bytes {start}-{}/{size}", end - 1),
        );
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etag_matching() {
        let mut headers = HeaderMap::new();
        assert!(!if_none_match(&headers, "\"x.raw\""));
        headers.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"a\", W/\"x.raw\""),
        );
        assert!(if_none_match(&headers, "\"x.raw\""));
        assert!(!if_none_match(&headers, "\"x\""));
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(if_none_match(&headers, "\"anything\""));
    }

    #[test]
    fn cid_errors_are_400_or_404() {
        assert_eq!(
            parse_cid("nope").unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(parse_cid("").unwrap_err().status, StatusCode::BAD_REQUEST);
        // dag-cbor: well formed, but never in this repo.
        let cbor = Cid::new_v1(0x71, cids::sha256_multihash(b"x"));
        assert_eq!(
            parse_cid(&cbor.to_string()).unwrap_err().status,
            StatusCode::NOT_FOUND
        );
        assert!(parse_cid("bafkqaaa").is_ok());
    }
}
