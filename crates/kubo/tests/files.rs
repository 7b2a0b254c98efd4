//! The `files_*` (MFS) client methods against a small axum server that
//! answers as Kubo answers (`"Entries":null` for an empty directory, names
//! only in a short listing, extra `files/stat` fields, no body for changes,
//! error objects). Every request is recorded so the argument and option names
//! Kubo expects are asserted too. The same methods run against r3mes'
//! embedded daemon in `crates/ipfs-http/tests/files.rs`.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use r3mes_ipfs::{AddSource, EntryKind, Error, WriteOptions};
use r3mes_kubo::KuboClient;
use serde_json::json;

const DIR: &str = "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn";
const FILE: &str = "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH";

type Seen = Arc<Mutex<Vec<(String, Vec<(String, String)>, Vec<Bytes>)>>>;

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{body}\n"),
    )
        .into_response()
}

async fn handle(State(seen): State<Seen>, request: Request) -> Response {
    let path = request.uri().path().to_string();
    let query: Vec<(String, String)> = request
        .uri()
        .query()
        .map(|q| {
            reqwest::Url::parse(&format!("http://x/?{q}"))
                .unwrap()
                .query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default();
    let mut parts = Vec::new();
    if request
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.to_str().unwrap_or_default().starts_with("multipart/"))
    {
        let mut form = Multipart::from_request(request, &()).await.unwrap();
        while let Some(field) = form.next_field().await.unwrap() {
            parts.push(field.bytes().await.unwrap());
        }
    }
    let arg = query
        .iter()
        .find(|(k, _)| k == "arg")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    seen.lock().unwrap().push((path.clone(), query, parts));
    if arg == "/missing" {
        return answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"Message": "file does not exist", "Code": 0, "Type": "error"}),
        );
    }
    match path.as_str() {
        "/api/v0/files/stat" => answer(
            StatusCode::OK,
            json!({"Hash": DIR, "Size": 0, "CumulativeSize": 62, "Blocks": 1, "Type": "directory",
                   "Mode": "", "Mtime": 0}),
        ),
        "/api/v0/files/ls" if arg == "/empty" => answer(StatusCode::OK, json!({ "Entries": null })),
        "/api/v0/files/ls" => {
            let long = query_has(&seen, "long");
            if long {
                answer(
                    StatusCode::OK,
                    json!({"Entries": [
                        {"Name": "d", "Type": 1, "Size": 0, "Hash": DIR},
                        {"Name": "f", "Type": 0, "Size": 11, "Hash": FILE},
                    ]}),
                )
            } else {
                answer(
                    StatusCode::OK,
                    json!({"Entries": [
                        {"Name": "d", "Type": 0, "Size": 0, "Hash": ""},
                        {"Name": "f", "Type": 0, "Size": 0, "Hash": ""},
                    ]}),
                )
            }
        }
        "/api/v0/files/read" => (StatusCode::OK, "hello world").into_response(),
        "/api/v0/files/flush" => answer(StatusCode::OK, json!({ "Cid": DIR })),
        _ => StatusCode::OK.into_response(),
    }
}

fn query_has(seen: &Seen, name: &str) -> bool {
    seen.lock()
        .unwrap()
        .last()
        .is_some_and(|(_, q, _)| q.iter().any(|(k, _)| k == name))
}

async fn serve() -> (KuboClient, Seen) {
    let seen: Seen = Arc::default();
    let app = Router::new().fallback(handle).with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (KuboClient::new(&format!("http://{addr}")).unwrap(), seen)
}

fn last(seen: &Seen) -> (String, Vec<(String, String)>, Vec<Bytes>) {
    seen.lock().unwrap().last().cloned().unwrap()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn requests_use_kubos_names() {
    let (client, seen) = serve().await;
    client.files_mkdir("/a/b", true).await.unwrap();
    assert_eq!(last(&seen).0.as_str(), "/api/v0/files/mkdir",);
    assert_eq!(
        last(&seen).1,
        pairs(&[("arg", "/a/b"), ("parents", "true")])
    );
    client.files_mkdir("/a", false).await.unwrap();
    assert_eq!(last(&seen).1, pairs(&[("arg", "/a")]));
    client.files_cp("/ipfs/x", "/a/", false).await.unwrap();
    assert_eq!(last(&seen).1, pairs(&[("arg", "/ipfs/x"), ("arg", "/a/")]));
    client.files_mv("/a", "/b").await.unwrap();
    assert_eq!(
        (last(&seen).0.as_str(), last(&seen).1),
        ("/api/v0/files/mv", pairs(&[("arg", "/a"), ("arg", "/b")]))
    );
    client.files_rm("/b", true, true).await.unwrap();
    assert_eq!(
        last(&seen).1,
        pairs(&[("arg", "/b"), ("recursive", "true"), ("force", "true")])
    );
    let options = WriteOptions {
        offset: 5,
        create: true,
        parents: true,
        truncate: true,
        count: Some(3),
        raw_leaves: Some(true),
        cid_version: 1,
    };
    client
        .files_write(
            "/w",
            AddSource::Bytes(Bytes::from_static(b"data")),
            &options,
        )
        .await
        .unwrap();
    let (path, query, parts) = last(&seen);
    assert_eq!(path, "/api/v0/files/write");
    assert_eq!(
        query,
        pairs(&[
            ("arg", "/w"),
            ("offset", "5"),
            ("create", "true"),
            ("parents", "true"),
            ("truncate", "true"),
            ("count", "3"),
            ("raw-leaves", "true"),
            ("cid-version", "1"),
        ])
    );
    assert_eq!(parts, [Bytes::from_static(b"data")]);
    let bytes = client.files_read("/f", 2, Some(4)).await.unwrap();
    assert_eq!(bytes, &b"hello world"[..]);
    assert_eq!(
        last(&seen).1,
        pairs(&[("arg", "/f"), ("offset", "2"), ("count", "4")])
    );
}

#[tokio::test]
async fn answers_are_read_as_kubo_writes_them() {
    let (client, _seen) = serve().await;
    let stat = client.files_stat("/").await.unwrap();
    assert_eq!(
        (
            stat.hash.to_string().as_str(),
            stat.size,
            stat.cumulative_size,
            stat.blocks,
            stat.kind
        ),
        (DIR, 0, 62, 1, EntryKind::Directory)
    );
    assert!(client.files_ls("/empty", true).await.unwrap().is_empty());
    let short = client.files_ls("/", false).await.unwrap();
    assert_eq!(
        short
            .iter()
            .map(|e| (e.name.as_str(), e.kind, e.size, e.hash))
            .collect::<Vec<_>>(),
        [("d", None, None, None), ("f", None, None, None)]
    );
    let long = client.files_ls("/", true).await.unwrap();
    assert_eq!(long[0].kind, Some(EntryKind::Directory));
    assert_eq!(
        (long[1].kind, long[1].size),
        (Some(EntryKind::File), Some(11))
    );
    assert_eq!(long[1].hash.unwrap().to_string(), FILE);
    assert_eq!(client.files_flush("/").await.unwrap().to_string(), DIR);
    match client.files_stat("/missing").await.unwrap_err() {
        Error::Api { message, code, .. } => {
            assert_eq!((message.as_str(), code), ("file does not exist", 0));
        }
        other => panic!("{other}"),
    }
}
