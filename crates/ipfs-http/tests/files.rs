//! The `files/*` commands (MFS) over HTTP against the embedded daemon: Kubo's
//! argument names, answer shapes and error JSON, `add?to-files`, GC keeping
//! MFS content, the root surviving a daemon restart, and r3mes' Kubo client
//! driving all of it.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

mod common;

use bytes::Bytes;
use common::Node;
use r3mes_ipfs::{AddOptions, AddSource, EntryKind, Repo, WriteOptions};
use r3mes_ipfs_http::{Daemon, DaemonConfig};
use r3mes_kubo::KuboClient;
use serde_json::{Value, json};

const EMPTY_DIR: &str = "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn";

async fn body_json(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn mkdir_stat_ls_and_errors_answer_as_kubo() {
    let node = Node::start().await;
    let (status, stat) = body_json(node.rpc("files/stat", "arg=/").await).await;
    assert_eq!(status, 200);
    assert_eq!(
        stat,
        json!({"Hash": EMPTY_DIR, "Size": 0, "CumulativeSize": 4, "Blocks": 0, "Type": "directory"})
    );
    let (status, ls) = body_json(node.rpc("files/ls", "arg=/").await).await;
    assert_eq!((status, ls), (200, json!({ "Entries": null })));

    let response = node
        .rpc(
            "files/mkdir",
            "arg=/gradients/window_1000/miner_abc123&parents=true",
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "");
    let (status, err) = body_json(node.rpc("files/mkdir", "arg=/gradients").await).await;
    assert_eq!(
        (status, err),
        (
            500,
            json!({"Message": "file already exists", "Code": 0, "Type": "error"})
        )
    );
    let (status, err) = body_json(node.rpc("files/mkdir", "arg=/a/b").await).await;
    assert_eq!(
        (status, &err["Message"]),
        (500, &json!("file does not exist"))
    );
    let (status, err) = body_json(node.rpc("files/stat", "arg=/nope").await).await;
    assert_eq!(
        (status, &err["Message"]),
        (500, &json!("file does not exist"))
    );
    let (status, err) = body_json(node.rpc("files/stat", "arg=relative").await).await;
    assert_eq!(
        (status, &err["Message"]),
        (500, &json!("paths must start with a leading slash"))
    );
    let (status, err) = body_json(node.rpc("files/stat", "").await).await;
    assert_eq!(
        (status, err),
        (
            400,
            json!({"Message": "argument \"path\" is required", "Code": 1, "Type": "error"})
        )
    );
    let (status, _) = body_json(node.rpc("files/mkdir", "arg=/x&parents=maybe").await).await;
    assert_eq!(status, 400);

    let (_, ls) = body_json(node.rpc("files/ls", "arg=/gradients").await).await;
    assert_eq!(
        ls,
        json!({"Entries": [{"Name": "window_1000", "Type": 0, "Size": 0, "Hash": ""}]})
    );
    let (_, ls) = body_json(
        node.rpc("files/ls", "arg=/gradients/window_1000&long=true")
            .await,
    )
    .await;
    assert_eq!(
        ls,
        json!({"Entries": [{"Name": "miner_abc123", "Type": 1, "Size": 0, "Hash": EMPTY_DIR}]})
    );
    let (_, stat) = body_json(node.rpc("files/stat", "arg=/gradients").await).await;
    assert_eq!(stat["Type"], "directory");
    assert_eq!(stat["Blocks"], 1);
    let (_, flushed) = body_json(node.rpc("files/flush", "arg=/gradients").await).await;
    assert_eq!(flushed, json!({ "Cid": stat["Hash"] }));
    let (_, root) = body_json(node.rpc("files/flush", "").await).await;
    assert_eq!(root["Cid"], node.repo.mfs().root().unwrap().to_string());
}

#[tokio::test]
async fn write_read_cp_mv_rm() {
    let node = Node::start().await;
    let data = common::content(600_000, 7);
    let response = node
        .upload(
            "files/write",
            "arg=/models/v1/backbone/weights.bin&create=true&parents=true",
            "weights.bin",
            data.clone(),
        )
        .await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let (_, stat) = body_json(
        node.rpc("files/stat", "arg=/models/v1/backbone/weights.bin")
            .await,
    )
    .await;
    let (cid, dag_size) = common::expected(&data, &AddOptions::default());
    assert_eq!(
        stat,
        json!({"Hash": cid.to_string(), "Size": 600_000, "CumulativeSize": dag_size, "Blocks": 3, "Type": "file"})
    );
    let read = node
        .rpc(
            "files/read",
            "arg=/models/v1/backbone/weights.bin&offset=100&count=1000",
        )
        .await;
    assert_eq!(read.status(), 200);
    assert_eq!(read.bytes().await.unwrap(), &data[100..1100]);
    let read = node
        .rpc("files/read", "arg=/models/v1/backbone/weights.bin&o=599990")
        .await;
    assert_eq!(read.bytes().await.unwrap(), &data[599_990..]);
    let (status, err) = body_json(
        node.rpc(
            "files/read",
            "arg=/models/v1/backbone/weights.bin&offset=600001",
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, &err["Message"]),
        (500, &json!("offset was past end of file (600001 > 600000)"))
    );
    let (_, err) = body_json(node.rpc("files/read", "arg=/models").await).await;
    assert_eq!(err["Message"], "/models was not a file");

    // Overwrite in place, then truncate.
    node.upload(
        "files/write",
        "arg=/models/v1/backbone/weights.bin&offset=10",
        "x",
        b"XYZ".to_vec(),
    )
    .await;
    let read = node
        .rpc("files/read", "arg=/models/v1/backbone/weights.bin&n=16")
        .await;
    let mut expected = data[..16].to_vec();
    expected[10..13].copy_from_slice(b"XYZ");
    assert_eq!(read.bytes().await.unwrap(), expected);
    let (status, err) = body_json(
        node.upload("files/write", "arg=/not-there", "x", b"x".to_vec())
            .await,
    )
    .await;
    assert_eq!(
        (status, &err["Message"]),
        (500, &json!("file does not exist"))
    );

    // cp from /ipfs/ and within MFS, mv, rm.
    let added = node
        .upload("add", "pin=false", "g.pb", b"a gradient".to_vec())
        .await
        .text()
        .await
        .unwrap();
    let hash = serde_json::from_str::<Value>(added.trim()).unwrap()["Hash"]
        .as_str()
        .unwrap()
        .to_string();
    let response = node
        .rpc(
            "files/cp",
            &format!("arg=/ipfs/{hash}&arg=/gradients/window_1/miner_a/&parents=true"),
        )
        .await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let (_, ls) = body_json(
        node.rpc("files/ls", "arg=/gradients/window_1/miner_a&l=true")
            .await,
    )
    .await;
    assert_eq!(
        ls,
        json!({"Entries": [{"Name": &hash, "Type": 0, "Size": 10, "Hash": &hash}]})
    );
    let (status, err) = body_json(
        node.rpc(
            "files/cp",
            &format!("arg=/ipfs/{hash}&arg=/gradients/window_1/miner_a/"),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, &err["Message"]),
        (500, &json!("directory already has entry by that name"))
    );
    assert_eq!(
        node.rpc("files/cp", "arg=/gradients&arg=/backup")
            .await
            .status(),
        200
    );
    assert_eq!(
        node.rpc("files/mv", "arg=/backup&arg=/models")
            .await
            .status(),
        200
    );
    let (_, ls) = body_json(node.rpc("files/ls", "arg=/models").await).await;
    let names: Vec<&str> = ls["Entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["backup", "v1"]);
    let (status, err) = body_json(node.rpc("files/rm", "arg=/models").await).await;
    assert_eq!(
        (status, &err["Message"]),
        (
            500,
            &json!("/models is a directory, use -r to remove directories")
        )
    );
    assert_eq!(
        node.rpc("files/rm", "arg=/models&arg=/gradients&recursive=true")
            .await
            .status(),
        200
    );
    assert_eq!(
        node.rpc("files/rm", "arg=/models&force=true")
            .await
            .status(),
        200
    );
    let (_, err) = body_json(node.rpc("files/rm", "arg=/").await).await;
    assert_eq!(err["Message"], "cannot delete root");
    let (_, ls) = body_json(node.rpc("files/ls", "").await).await;
    assert_eq!(ls, json!({ "Entries": null }));
}

#[tokio::test]
async fn add_to_files_and_gc_keep_mfs_content() {
    let node = Node::start().await;
    node.rpc("files/mkdir", "arg=/datasets/shards&p=true").await;
    let data = common::content(300_000, 3);
    let response = node
        .upload(
            "add",
            "pin=false&to-files=/datasets/shards/",
            "shard_0000",
            data.clone(),
        )
        .await;
    assert_eq!(response.status(), 200);
    let line: Value = serde_json::from_str(response.text().await.unwrap().trim()).unwrap();
    let (cid, _) = common::expected(&data, &AddOptions::default());
    assert_eq!(line["Hash"], cid.to_string());
    let read = node
        .rpc("files/read", "arg=/datasets/shards/shard_0000")
        .await;
    assert_eq!(read.bytes().await.unwrap(), data);
    // A named destination.
    node.upload(
        "add",
        "pin=false&to-files=/one-shard",
        "ignored",
        b"one".to_vec(),
    )
    .await;
    assert_eq!(
        node.rpc("files/read", "arg=/one-shard")
            .await
            .bytes()
            .await
            .unwrap(),
        &b"one"[..]
    );
    let (status, err) = body_json(
        node.upload(
            "add",
            "pin=false&to-files=/no/such/dir/",
            "f",
            b"x".to_vec(),
        )
        .await,
    )
    .await;
    assert_eq!(status, 500);
    assert!(
        err["Message"]
            .as_str()
            .unwrap()
            .contains("file does not exist"),
        "{err}"
    );

    // GC keeps what the MFS reaches, unpinned as it is.
    let gc = node.rpc("repo/gc", "").await.text().await.unwrap();
    assert!(!gc.contains(&r3mes_ipfs::cids::raw_cid(*cid.hash()).to_string()));
    assert_eq!(
        node.rpc("files/read", "arg=/datasets/shards/shard_0000&count=10")
            .await
            .bytes()
            .await
            .unwrap(),
        &data[..10]
    );
    node.rpc("files/rm", "arg=/datasets&r=true").await;
    let gc = node.rpc("repo/gc", "").await.text().await.unwrap();
    assert!(
        gc.contains(&r3mes_ipfs::cids::raw_cid(*cid.hash()).to_string()),
        "{gc}"
    );
    let cat = node.rpc("cat", &format!("arg={cid}")).await;
    assert_eq!(cat.status(), 500);
}

#[tokio::test]
async fn the_root_survives_a_restart() {
    let node = Node::start().await;
    node.upload(
        "files/write",
        "arg=/checkpoints/c1&create=true&parents=true",
        "c1",
        b"ckpt".to_vec(),
    )
    .await;
    let (_, before) = body_json(node.rpc("files/stat", "arg=/").await).await;
    let Node {
        repo, handle, dir, ..
    } = node;
    handle.shutdown().await.unwrap();
    drop(repo);
    let repo = Repo::open(dir.path()).unwrap();
    let handle = Daemon::start(repo.clone(), DaemonConfig::loopback(0, 0))
        .await
        .unwrap();
    let client = KuboClient::new(&handle.api_url()).unwrap();
    let stat = client.files_stat("/").await.unwrap();
    assert_eq!(stat.hash.to_string(), before["Hash"].as_str().unwrap());
    assert_eq!(
        client.files_read("/checkpoints/c1", 0, None).await.unwrap(),
        &b"ckpt"[..]
    );
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_kubo_client_drives_the_mfs() {
    let node = Node::start().await;
    let client = KuboClient::new(&node.handle.api_url()).unwrap();
    client
        .files_mkdir("/gradients/window_7", true)
        .await
        .unwrap();
    let err = client.files_mkdir("/gradients", false).await.unwrap_err();
    assert!(err.to_string().contains("file already exists"), "{err}");
    let options = WriteOptions {
        create: true,
        ..WriteOptions::default()
    };
    client
        .files_write(
            "/gradients/window_7/g.pb",
            AddSource::Bytes(Bytes::from_static(b"hello gradient")),
            &options,
        )
        .await
        .unwrap();
    assert_eq!(
        client
            .files_read("/gradients/window_7/g.pb", 6, Some(4))
            .await
            .unwrap(),
        &b"grad"[..]
    );
    let stat = client.files_stat("/gradients/window_7/g.pb").await.unwrap();
    assert_eq!(
        (stat.kind, stat.size, stat.blocks),
        (EntryKind::File, 14, 0)
    );
    assert_eq!(
        stat,
        node.repo.mfs().stat("/gradients/window_7/g.pb").unwrap()
    );
    let short = client.files_ls("/gradients/window_7", false).await.unwrap();
    assert_eq!(short.len(), 1);
    assert_eq!(
        (short[0].name.as_str(), short[0].kind, short[0].hash),
        ("g.pb", None, None)
    );
    let long = client.files_ls("/gradients/window_7", true).await.unwrap();
    assert_eq!(
        long,
        node.repo.mfs().ls("/gradients/window_7", true).unwrap()
    );
    client
        .files_cp("/gradients/window_7", "/aggregated/window_7", true)
        .await
        .unwrap();
    client.files_mv("/aggregated", "/agg").await.unwrap();
    assert!(
        client
            .files_ls("/", false)
            .await
            .unwrap()
            .iter()
            .any(|e| e.name == "agg")
    );
    client.files_rm("/gradients", true, false).await.unwrap();
    client.files_rm("/gradients", false, true).await.unwrap();
    let err = client
        .files_rm("/gradients", false, false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("file does not exist"), "{err}");
    let root = client.files_flush("/").await.unwrap();
    assert_eq!(root, node.repo.mfs().root().unwrap());
    assert_eq!(client.files_stat("/").await.unwrap().hash, root);
}
