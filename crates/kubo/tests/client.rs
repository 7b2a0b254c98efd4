//! The Kubo RPC client against a small axum server that answers with Kubo's
//! documented response shapes and errors. Every request is recorded, so the
//! encoding (method, path, query names, multipart field) is asserted too.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use r3mes_ipfs::cids::{raw_cid, sha256_multihash};
use r3mes_ipfs::{AddOptions, AddSource, Cid, ContentStore, Error, PinMode, ReadStats};
use r3mes_kubo::{ClientOptions, KuboClient};

/// What the server saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    /// (field name, file name, content type, bytes)
    parts: Vec<(String, Option<String>, Option<String>, Bytes)>,
}

impl Seen {
    fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn params(&self) -> BTreeMap<&str, &str> {
        self.query
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }
}

#[derive(Clone, Default)]
struct Server {
    seen: Arc<Mutex<Vec<Seen>>>,
}

const CONTENT: &[u8] = b"0123456789abcdefghij";
const QM: &str = "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn";
const QM2: &str = "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH";
const MISSING: &str = "QmXoypizjW3WknFiJnKLwHCnL72vedxjQkDDP1mXWo6uco";

fn block() -> (Cid, Bytes) {
    let data = Bytes::from_static(b"a raw leaf block");
    (raw_cid(sha256_multihash(&data)), data)
}

fn json(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{body}\n"),
    )
        .into_response()
}

fn ndjson(lines: &[serde_json::Value]) -> Response {
    let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::HeaderName::from_static("x-chunked-output"), "1"),
        ],
        body,
    )
        .into_response()
}

fn kubo_error(message: &str) -> Response {
    json(
        StatusCode::INTERNAL_SERVER_ERROR,
        serde_json::json!({"Message": message, "Code": 0, "Type": "error"}),
    )
}

async fn handle(State(server): State<Server>, request: Request) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let query: Vec<(String, String)> = request.uri().query().map(url_pairs).unwrap_or_default();
    let mut parts = Vec::new();
    let is_multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    if is_multipart {
        let mut form = Multipart::from_request(request, &()).await.unwrap();
        while let Some(field) = form.next_field().await.unwrap() {
            let name = field.name().unwrap_or_default().to_string();
            let file_name = field.file_name().map(str::to_string);
            let content_type = field.content_type().map(str::to_string);
            parts.push((name, file_name, content_type, field.bytes().await.unwrap()));
        }
    }
    let seen = Seen {
        method: method.clone(),
        path: path.clone(),
        query,
        parts,
    };
    server.seen.lock().unwrap().push(seen.clone());

    if method != Method::POST {
        return (StatusCode::METHOD_NOT_ALLOWED, "405 - Method Not Allowed\n").into_response();
    }
    let arg = seen.param("arg").unwrap_or_default().to_string();
    if arg == MISSING {
        return kubo_error(&format!(
            "failed to resolve /ipfs/{MISSING}: merkledag: not found"
        ));
    }
    match path.as_str() {
        "/api/v0/add" => {
            let Some((_, name, _, data)) = seen.parts.first() else {
                return kubo_error("no file given");
            };
            if data.as_ref() == b"fail mid-stream" {
                return ndjson(&[
                    serde_json::json!({"Message": "disk full", "Code": 0, "Type": "error"}),
                ]);
            }
            // Kubo's Size is the DAG size (a string), not the content size.
            ndjson(&[serde_json::json!({
                "Name": name.clone().unwrap_or_default(),
                "Hash": QM2,
                "Size": (data.len() + 11).to_string(),
            })])
        }
        "/api/v0/cat" => {
            let offset: usize = seen.param("offset").map_or(0, |o| o.parse().unwrap());
            let start = offset.min(CONTENT.len());
            let end = seen.param("length").map_or(CONTENT.len(), |l| {
                (start + l.parse::<usize>().unwrap()).min(CONTENT.len())
            });
            let slice = &CONTENT[start..end];
            // QM2 plays a daemon that fails mid-stream: it announced more.
            let announced = slice.len() + if arg == QM2 { 5 } else { 0 };
            let mut response = (
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, "text/plain"),
                    (header::HeaderName::from_static("x-stream-output"), "1"),
                ],
                Body::from(Bytes::copy_from_slice(slice)),
            )
                .into_response();
            let headers = response.headers_mut();
            headers.insert("x-content-length", announced.into());
            // The raw block's CID plays r3mes' embedded daemon, which reports read stats.
            if arg == block().0.to_string() {
                headers.insert("x-r3mes-blocks", 2.into());
                headers.insert("x-r3mes-bytes", 300.into());
            }
            response
        }
        "/api/v0/block/get" => {
            let (cid, data) = block();
            if arg == cid.to_string() {
                (StatusCode::OK, data).into_response()
            } else {
                (StatusCode::OK, "not the block you asked for").into_response()
            }
        }
        "/api/v0/block/stat" => json(
            StatusCode::OK,
            serde_json::json!({"Key": arg, "Size": 262158}),
        ),
        "/api/v0/pin/add" => ndjson(&[
            serde_json::json!({"Progress": 1}),
            serde_json::json!({"Progress": 3}),
            serde_json::json!({"Pins": [arg]}),
        ]),
        "/api/v0/pin/rm" => json(StatusCode::OK, serde_json::json!({"Pins": [arg]})),
        "/api/v0/pin/ls" => json(
            StatusCode::OK,
            serde_json::json!({"Keys": {
                QM: {"Type": "recursive", "Name": "gradient-7"},
                QM2: {"Type": "direct", "Name": ""},
                block().0.to_string(): {"Type": "indirect", "Name": ""},
                MISSING: {"Type": "indirect through QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn", "Name": ""},
            }}),
        ),
        "/api/v0/repo/gc" => ndjson(&[
            serde_json::json!({"Key": {"/": QM}}),
            serde_json::json!({"Key": {"/": block().0.to_string()}}),
        ]),
        "/api/v0/dag/export" => {
            (StatusCode::OK, Bytes::from_static(b"\x0aCARBYTES")).into_response()
        }
        "/api/v0/dag/import" => {
            let partial = seen
                .parts
                .first()
                .is_some_and(|p| p.3.as_ref() == b"partial");
            let pin_error = if partial {
                "block was not found locally (offline)"
            } else {
                ""
            };
            ndjson(&[
                serde_json::json!({"Root": {"Cid": {"/": QM}, "PinErrorMsg": ""}}),
                serde_json::json!({"Root": {"Cid": {"/": QM2}, "PinErrorMsg": pin_error}}),
                serde_json::json!({"Stats": {"BlockCount": 3, "BlockBytesCount": 120}}),
            ])
        }
        "/api/v0/id" => json(
            StatusCode::OK,
            serde_json::json!({
                "ID": "12D3KooWQ9f8R6oVuqUn2Ag3RrFCKTKTtb6Sy7M2QUw3AKvWLVwe",
                "PublicKey": "CAESI...",
                "Addresses": ["/ip4/127.0.0.1/tcp/4001/p2p/12D3KooW..."],
                "AgentVersion": "kubo/0.32.1/",
                "ProtocolVersion": "ipfs/0.1.0",
            }),
        ),
        "/api/v0/version" => json(
            StatusCode::OK,
            serde_json::json!({"Version": "0.32.1", "Commit": "", "Repo": "16", "System": "amd64/linux", "Golang": "go1.23.2"}),
        ),
        _ => (StatusCode::NOT_FOUND, "404 page not found\n").into_response(),
    }
}

/// Decodes a query string as the server sees it.
fn url_pairs(query: &str) -> Vec<(String, String)> {
    let url = reqwest::Url::parse(&format!("http://server/?{query}")).unwrap();
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

async fn start() -> (KuboClient, Server) {
    let server = Server::default();
    let app = Router::new()
        .fallback(handle)
        .layer(DefaultBodyLimit::disable())
        .with_state(server.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    // The multiaddr form, as found in $IPFS_PATH/api.
    let client = KuboClient::new(&format!("/ip4/127.0.0.1/tcp/{port}")).unwrap();
    (client, server)
}

fn last(server: &Server) -> Seen {
    server.seen.lock().unwrap().last().cloned().unwrap()
}

fn cid(text: &str) -> Cid {
    Cid::try_from(text).unwrap()
}

#[tokio::test]
async fn add_bytes_encodes_kubo_options() {
    let (client, server) = start().await;
    let data = Bytes::from_static(b"gradient bytes");
    let added = client
        .add(AddSource::Bytes(data.clone()), &AddOptions::default())
        .await
        .unwrap();
    assert_eq!(added.cid, cid(QM2));
    assert_eq!(added.size, data.len() as u64, "the content size");
    assert_eq!(
        added.dag_size,
        data.len() as u64 + 11,
        "Kubo's Size: the DAG's"
    );

    let seen = last(&server);
    assert_eq!(seen.method, Method::POST);
    assert_eq!(seen.path, "/api/v0/add");
    let params = seen.params();
    assert_eq!(params["cid-version"], "0");
    assert_eq!(params["pin"], "true");
    assert_eq!(params["only-hash"], "false");
    assert_eq!(params["chunker"], "size-262144");
    assert!(
        !params.contains_key("raw-leaves"),
        "left to Kubo's default for the CID version"
    );
    assert_eq!(seen.parts.len(), 1);
    let (field, file_name, content_type, body) = &seen.parts[0];
    assert_eq!(field, "file");
    assert!(file_name.is_some());
    assert_eq!(content_type.as_deref(), Some("application/octet-stream"));
    assert_eq!(body, &data);

    let options = AddOptions {
        cid_version: 1,
        raw_leaves: Some(true),
        pin: false,
        only_hash: true,
        chunk_size: 1 << 20,
    };
    client.add(AddSource::Bytes(data), &options).await.unwrap();
    let seen = last(&server);
    let params = seen.params();
    assert_eq!(params["cid-version"], "1");
    assert_eq!(params["raw-leaves"], "true");
    assert_eq!(params["pin"], "false");
    assert_eq!(params["only-hash"], "true");
    assert_eq!(params["chunker"], "size-1048576");

    let bad = AddOptions {
        chunk_size: 0,
        ..AddOptions::default()
    };
    let err = client
        .add(AddSource::Bytes(Bytes::new()), &bad)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
}

#[tokio::test]
async fn add_streams_a_file() {
    let (client, server) = start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gradient.bin");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&path, &data).unwrap();
    let added = client
        .add(AddSource::File(path), &AddOptions::default())
        .await
        .unwrap();
    assert_eq!(added.size, data.len() as u64);
    let seen = last(&server);
    let (field, file_name, _, body) = &seen.parts[0];
    assert_eq!(field, "file");
    assert_eq!(file_name.as_deref(), Some("gradient.bin"));
    assert_eq!(body.as_ref(), data.as_slice());

    let err = client
        .add(
            AddSource::File(dir.path().join("missing")),
            &AddOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert!(err.to_string().contains("missing"), "{err}");
    let err = client
        .add(AddSource::File(dir.path().into()), &AddOptions::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
}

#[tokio::test]
async fn add_stops_at_a_streamed_error() {
    let (client, _) = start().await;
    let err = client
        .add(
            AddSource::Bytes(Bytes::from_static(b"fail mid-stream")),
            &AddOptions::default(),
        )
        .await
        .unwrap_err();
    match err {
        Error::Api { message, kind, .. } => {
            assert_eq!(message, "disk full");
            assert_eq!(kind, "error");
        }
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn cat_ranges_and_streaming() {
    let (client, server) = start().await;
    assert_eq!(
        client.cat(&cid(QM), 0, None).await.unwrap().as_ref(),
        CONTENT
    );
    let seen = last(&server);
    assert_eq!(seen.path, "/api/v0/cat");
    assert_eq!(seen.param("arg"), Some(QM));
    assert_eq!(seen.param("offset"), None);
    assert_eq!(seen.param("length"), None);

    assert_eq!(
        client.cat(&cid(QM), 5, Some(4)).await.unwrap().as_ref(),
        b"5678"
    );
    let seen = last(&server);
    assert_eq!(seen.param("offset"), Some("5"));
    assert_eq!(seen.param("length"), Some("4"));

    let mut out = Vec::new();
    let written = client.cat_to(&cid(QM), 10, None, &mut out).await.unwrap();
    assert_eq!(written, 10);
    assert_eq!(out, b"abcdefghij");

    // Through the trait: no read stats from Kubo.
    let store: &dyn ContentStore = &client;
    let (bytes, stats) = store.cat(&cid(QM), 18, Some(100)).await.unwrap();
    assert_eq!(bytes.as_ref(), b"ij");
    assert!(stats.is_none());

    // Fewer bytes than X-Content-Length announced: the daemon failed mid-stream.
    let err = client.cat(&cid(QM2), 0, None).await.unwrap_err();
    assert!(
        err.to_string().contains("announced 25 bytes but sent 20"),
        "{err}"
    );
    let err = client
        .cat_to(&cid(QM2), 0, None, &mut Vec::new())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Transport(_)), "{err}");

    // r3mes' embedded daemon reports what the read cost.
    let (bytes, stats) = store.cat(&block().0, 0, Some(4)).await.unwrap();
    assert_eq!(bytes.as_ref(), b"0123");
    assert_eq!(
        stats,
        Some(ReadStats {
            blocks: 2,
            bytes: 300
        })
    );

    let err = client.cat(&cid(QM), u64::MAX, None).await.unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
}

#[tokio::test]
async fn kubo_errors_are_decoded() {
    let (client, _) = start().await;
    match client.cat(&cid(MISSING), 0, None).await.unwrap_err() {
        Error::Api {
            message,
            code,
            kind,
        } => {
            assert!(message.contains("merkledag: not found"), "{message}");
            assert_eq!(code, 0);
            assert_eq!(kind, "error");
        }
        other => panic!("{other}"),
    }
    match client
        .pin_add(&cid(MISSING), PinMode::Recursive, None)
        .await
        .unwrap_err()
    {
        Error::Api { message, .. } => assert!(message.contains("not found")),
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn non_json_errors_keep_the_body() {
    // A server that is not Kubo: the 404 text comes back as the message.
    let (client, _) = start().await;
    let other = KuboClient::new(&format!("{}/api/v0/", client.base_url())).unwrap();
    assert_eq!(other.base_url(), client.base_url());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = Router::new().fallback(|| async { (StatusCode::NOT_FOUND, "404 page not found\n") });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let stranger = KuboClient::new(&format!("http://127.0.0.1:{port}")).unwrap();
    match stranger.version().await.unwrap_err() {
        Error::Api {
            message,
            code,
            kind,
        } => {
            assert_eq!(message, "404 page not found");
            assert_eq!(code, 404);
            assert_eq!(kind, "http");
        }
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn blocks_are_verified() {
    let (client, server) = start().await;
    let (block_cid, data) = block();
    assert_eq!(client.block_get(&block_cid).await.unwrap(), data);
    let seen = last(&server);
    assert_eq!(seen.path, "/api/v0/block/get");
    assert_eq!(seen.param("arg"), Some(block_cid.to_string().as_str()));

    // The server answers other CIDs with bytes that do not hash to them.
    let err = client.block_get(&cid(QM)).await.unwrap_err();
    assert!(
        matches!(err, Error::CorruptBlock(c) if c == cid(QM)),
        "{err}"
    );

    let stat = client.block_stat(&cid(QM)).await.unwrap();
    assert_eq!(stat.size, 262158);
    assert_eq!(stat.cid, cid(QM));
    assert_eq!(last(&server).path, "/api/v0/block/stat");
    let store: &dyn ContentStore = &client;
    assert_eq!(store.block_stat(&cid(QM)).await.unwrap(), 262158);
}

#[tokio::test]
async fn pins() {
    let (client, server) = start().await;
    client
        .pin_add(&cid(QM), PinMode::Recursive, Some("gradient-7"))
        .await
        .unwrap();
    let seen = last(&server);
    assert_eq!(seen.path, "/api/v0/pin/add");
    assert_eq!(seen.param("arg"), Some(QM));
    assert_eq!(seen.param("recursive"), Some("true"));
    assert_eq!(seen.param("name"), Some("gradient-7"));
    assert_eq!(seen.param("progress"), Some("true"));

    client
        .pin_add(&cid(QM2), PinMode::Direct, None)
        .await
        .unwrap();
    let seen = last(&server);
    assert_eq!(seen.param("recursive"), Some("false"));
    assert_eq!(seen.param("name"), None);

    client.pin_rm(&cid(QM)).await.unwrap();
    let seen = last(&server);
    assert_eq!(seen.path, "/api/v0/pin/rm");
    assert_eq!(seen.param("arg"), Some(QM));

    let pins = client.pin_ls().await.unwrap();
    let seen = last(&server);
    assert_eq!(seen.path, "/api/v0/pin/ls");
    assert_eq!(seen.param("type"), Some("all"));
    assert_eq!(seen.param("names"), Some("true"));
    assert_eq!(pins.len(), 2, "indirect entries are skipped: {pins:?}");
    let recursive = pins.iter().find(|p| p.cid == cid(QM)).unwrap();
    assert_eq!(recursive.mode, PinMode::Recursive);
    assert_eq!(recursive.name.as_deref(), Some("gradient-7"));
    let direct = pins.iter().find(|p| p.cid == cid(QM2)).unwrap();
    assert_eq!(direct.mode, PinMode::Direct);
    assert_eq!(direct.name, None);
}

#[tokio::test]
async fn gc_lists_removed_blocks() {
    let (client, server) = start().await;
    let store: &dyn ContentStore = &client;
    let report = store.gc().await.unwrap();
    assert_eq!(report.removed, vec![cid(QM), block().0]);
    assert_eq!(report.freed_bytes, 0, "Kubo does not report sizes");
    let seen = last(&server);
    assert_eq!(seen.path, "/api/v0/repo/gc");
    assert_eq!(seen.param("stream-errors"), Some("true"));
}

#[tokio::test]
async fn gc_errors_are_collected() {
    // A server whose GC streams an error line between removed keys.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = Router::new().fallback(|| async {
        ndjson(&[
            serde_json::json!({"Key": {"/": QM}}),
            serde_json::json!({"Error": "could not remove QmX: permission denied"}),
        ])
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client = KuboClient::new(&format!("127.0.0.1:{port}")).unwrap();
    let err = client.repo_gc().await.unwrap_err();
    assert!(
        err.to_string().contains("removed 1 blocks, then failed"),
        "{err}"
    );
    assert!(err.to_string().contains("permission denied"), "{err}");
}

#[tokio::test]
async fn dag_export_and_import() {
    let (client, server) = start().await;
    let car = client.dag_export(&cid(QM)).await.unwrap();
    assert_eq!(car.as_ref(), b"\x0aCARBYTES");
    let seen = last(&server);
    assert_eq!(seen.path, "/api/v0/dag/export");
    assert_eq!(seen.param("arg"), Some(QM));
    let mut out = Vec::new();
    assert_eq!(client.dag_export_to(&cid(QM), &mut out).await.unwrap(), 9);
    assert_eq!(out, b"\x0aCARBYTES");

    let store: &dyn ContentStore = &client;
    let roots = store
        .dag_import(Bytes::from_static(b"a car file"))
        .await
        .unwrap();
    assert_eq!(roots, vec![cid(QM), cid(QM2)]);
    let seen = last(&server);
    assert_eq!(seen.path, "/api/v0/dag/import");
    assert_eq!(seen.param("pin-roots"), Some("true"));
    assert_eq!(seen.parts.len(), 1);
    assert_eq!(seen.parts[0].0, "file");
    assert_eq!(seen.parts[0].3.as_ref(), b"a car file");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.car");
    std::fs::write(&path, b"partial").unwrap();
    let err = client.dag_import_file(&path).await.unwrap_err();
    assert!(matches!(err, Error::Pin(_)), "{err}");
    assert!(
        err.to_string().contains(QM2) && err.to_string().contains("not found locally"),
        "{err}"
    );
    assert_eq!(last(&server).parts[0].1.as_deref(), Some("x.car"));
}

#[tokio::test]
async fn identity_and_version() {
    let (client, server) = start().await;
    let store: &dyn ContentStore = &client;
    let id = store.id().await.unwrap();
    assert_eq!(
        id.id,
        "12D3KooWQ9f8R6oVuqUn2Ag3RrFCKTKTtb6Sy7M2QUw3AKvWLVwe"
    );
    assert_eq!(id.agent_version, "kubo/0.32.1/");
    let seen = last(&server);
    assert_eq!(
        (seen.method, seen.path.as_str()),
        (Method::POST, "/api/v0/id")
    );
    assert!(seen.query.is_empty());
    assert_eq!(store.version().await.unwrap(), "0.32.1");
    assert_eq!(last(&server).path, "/api/v0/version");
}

#[tokio::test]
async fn no_daemon_is_a_clear_error() {
    // Port 1 (tcpmux) has no listener here; a port freed by this test could be
    // taken by a server of a test running in parallel.
    let port = 1;
    let client = KuboClient::new(&format!("http://127.0.0.1:{port}")).unwrap();
    let err = client.id().await.unwrap_err();
    assert!(matches!(err, Error::Transport(_)), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&format!(
            "no IPFS daemon answers at http://127.0.0.1:{port}"
        )),
        "{text}"
    );
}

#[tokio::test]
async fn timeouts_apply() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let options = ClientOptions {
        connect_timeout: Duration::from_secs(1),
        read_timeout: Some(Duration::from_millis(300)),
        request_timeout: Some(Duration::from_millis(500)),
    };
    let client = KuboClient::with_options(&format!("127.0.0.1:{port}"), options).unwrap();
    let started = std::time::Instant::now();
    let err = client.version().await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(err.to_string().contains("timed out"), "{err}");
}
