//! The RPC API over real HTTP: a daemon on free ports, driven with reqwest.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Node, content, expected, header};
use r3mes_ipfs::{AddOptions, Cid, PinMode, cids};
use serde_json::Value;

#[tokio::test]
async fn add_answers_exactly_what_kubo_answers() {
    let node = Node::start().await;
    let data = content(1_000_017, 1);
    let response = node.upload("add", "", "gradient.bin", data.clone()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), "application/json");
    let text = response.text().await.unwrap();
    let (cid, dag_size) = expected(&data, &AddOptions::default());
    assert_eq!(
        text,
        format!("{{\"Name\":\"gradient.bin\",\"Hash\":\"{cid}\",\"Size\":\"{dag_size}\"}}\n")
    );
    // What `requests`' `response.json()` does: the whole body is one JSON value.
    let value: Value = serde_json::from_str(&text).unwrap();
    let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 3);
    assert!(cid.to_string().starts_with("Qm"));
    // Pinned by default, as Kubo does.
    let pins = node.repo.pin_ls().unwrap();
    assert!(
        pins.iter()
            .any(|p| p.cid == cid && p.mode == PinMode::Recursive)
    );
}

#[tokio::test]
async fn add_then_cat_round_trips_with_ranges_and_stats() {
    let node = Node::start().await;
    let data = content(3 * 262_144 + 5_000, 2);
    let response = node.upload("add", "", "x.bin", data.clone()).await;
    let line: Value = response.json().await.unwrap();
    let cid: Cid = line["Hash"].as_str().unwrap().parse().unwrap();

    for (offset, length) in [
        (None, None),
        (Some(0u64), Some(10u64)),
        (Some(262_140), Some(10)),
        (Some(700_000), None),
        (Some(data.len() as u64 - 1), Some(100)),
        (Some(data.len() as u64 + 10), None),
    ] {
        let mut query = format!("arg={cid}");
        if let Some(o) = offset {
            query += &format!("&offset={o}");
        }
        if let Some(l) = length {
            query += &format!("&length={l}");
        }
        let response = node.rpc("cat", &query).await;
        assert_eq!(response.status(), 200, "{query}");
        let blocks: u64 = header(&response, "x-r3mes-blocks").parse().unwrap();
        let bytes: u64 = header(&response, "x-r3mes-bytes").parse().unwrap();
        let announced: u64 = header(&response, "x-content-length").parse().unwrap();
        let body = response.bytes().await.unwrap();

        let start = (offset.unwrap_or(0) as usize).min(data.len());
        let end = length.map_or(data.len(), |l| (start + l as usize).min(data.len()));
        assert_eq!(&body[..], &data[start..end], "{query}");
        assert_eq!(announced, body.len() as u64);
        if offset.unwrap_or(0) <= data.len() as u64 {
            let (_, stats) = node
                .repo
                .cat_bytes(&cid, offset.unwrap_or(0), length)
                .unwrap();
            assert_eq!((blocks, bytes), (stats.blocks, stats.bytes), "{query}");
        }
    }
    // A small range costs the root and the one leaf that holds it.
    let response = node
        .rpc("cat", &format!("arg={cid}&offset=5&length=3"))
        .await;
    assert_eq!(header(&response, "x-r3mes-blocks"), "2");
}

#[tokio::test]
async fn cat_stat_and_ls_resolve_paths_inside_directories() {
    let node = Node::start().await;
    let data = content(300_000, 7);
    let response = node.upload("add", "", "chunk_0", data.clone()).await;
    let line: Value = response.json().await.unwrap();
    let file = line["Hash"].as_str().unwrap().to_string();
    for (command, query) in [
        ("files/mkdir", "arg=/shard".to_string()),
        ("files/cp", format!("arg=/ipfs/{file}&arg=/shard/chunk_0")),
    ] {
        assert_eq!(node.rpc(command, &query).await.status(), 200, "{command}");
    }
    let stat: Value = node
        .rpc("files/stat", "arg=/shard")
        .await
        .json()
        .await
        .unwrap();
    let directory = stat["Hash"].as_str().unwrap().to_string();
    for arg in [
        format!("/ipfs/{directory}/chunk_0"),
        format!("{directory}/chunk_0"),
        format!("/ipfs/{directory}//chunk_0/"),
    ] {
        let response = node.rpc("cat", &format!("arg={arg}&offset=10")).await;
        assert_eq!(response.status(), 200, "{arg}");
        assert_eq!(&response.bytes().await.unwrap()[..], &data[10..], "{arg}");
    }
    let response = node
        .rpc("cat", &format!("arg=/ipfs/{directory}/chunk_9"))
        .await;
    assert_eq!(response.status(), 500);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["Message"]
            .as_str()
            .unwrap()
            .contains("no link named \"chunk_9\""),
        "{body}"
    );
    let response = node.rpc("cat", &format!("arg=/ipfs/{file}/x")).await;
    let body: Value = response.json().await.unwrap();
    assert!(
        body["Message"]
            .as_str()
            .unwrap()
            .contains("is not a directory"),
        "{body}"
    );
    // `files stat` takes IPFS paths too, as Kubo's does.
    let stat: Value = node
        .rpc("files/stat", &format!("arg=/ipfs/{directory}/chunk_0"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stat["Hash"], file.as_str());
    assert_eq!(stat["Size"], data.len());
    // `ls` lists the directory as Kubo does.
    let listing: Value = node
        .rpc("ls", &format!("arg=/ipfs/{directory}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        listing,
        serde_json::json!({"Objects": [{"Hash": format!("/ipfs/{directory}"), "Links": [
            {"Name": "chunk_0", "Hash": file, "Size": data.len(), "Type": 2, "Target": ""}
        ]}]})
    );
    // Other commands still take CIDs only.
    let response = node
        .rpc("pin/add", &format!("arg=/ipfs/{directory}/chunk_0"))
        .await;
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn add_options_change_the_cid_as_kubo_does() {
    let node = Node::start().await;
    let data = content(600_000, 3);
    for (query, options) in [
        (
            "cid-version=1",
            AddOptions {
                cid_version: 1,
                ..AddOptions::default()
            },
        ),
        (
            "raw-leaves=true&chunker=size-65536",
            AddOptions {
                raw_leaves: Some(true),
                chunk_size: 65_536,
                ..AddOptions::default()
            },
        ),
        (
            "only-hash=true&quiet=true",
            AddOptions {
                only_hash: true,
                ..AddOptions::default()
            },
        ),
    ] {
        let response = node.upload("add", query, "f", data.clone()).await;
        assert_eq!(response.status(), 200, "{query}");
        let line: Value = response.json().await.unwrap();
        let (cid, size) = expected(&data, &options);
        assert_eq!(line["Hash"], cid.to_string(), "{query}");
        assert_eq!(line["Size"], size.to_string(), "{query}");
        let stored = node.repo.store().has(&cid).unwrap();
        assert_eq!(stored, !options.only_hash, "{query}");
    }
    // pin=false stores without pinning; pin-name names the pin.
    let line: Value = node
        .upload("add", "pin=false", "f", b"unpinned".to_vec())
        .await
        .json()
        .await
        .unwrap();
    let unpinned: Cid = line["Hash"].as_str().unwrap().parse().unwrap();
    assert!(
        node.repo
            .pin_ls()
            .unwrap()
            .iter()
            .all(|p| p.cid != unpinned)
    );
    node.upload("add", "pin-name=grad-7", "f", b"named".to_vec())
        .await;
    assert!(
        node.repo
            .pin_ls()
            .unwrap()
            .iter()
            .any(|p| p.name.as_deref() == Some("grad-7"))
    );
}

#[tokio::test]
async fn several_files_give_one_line_each() {
    let node = Node::start().await;
    let form = reqwest::multipart::Form::new()
        .part(
            "a",
            reqwest::multipart::Part::bytes(b"one".to_vec()).file_name("one.txt"),
        )
        .part(
            "b",
            reqwest::multipart::Part::bytes(b"two".to_vec()).file_name("two%20.txt"),
        );
    let text = node
        .http
        .post(format!("{}/add", node.handle.api_url()))
        .multipart(form)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["Name"], "one.txt");
    assert_eq!(lines[1]["Name"], "two .txt");
    assert_eq!(
        lines[0]["Hash"],
        expected(b"one", &AddOptions::default()).0.to_string()
    );
}

#[tokio::test]
async fn errors_are_kubos_json() {
    let node = Node::start().await;
    let response = node.rpc("cat", "arg=not-a-cid").await;
    assert_eq!(response.status(), 400);
    assert_eq!(header(&response, "content-type"), "application/json");
    let error: Value = response.json().await.unwrap();
    let object = error.as_object().unwrap();
    assert_eq!(object.len(), 3);
    assert_eq!(error["Type"], "error");
    assert_eq!(error["Code"], 1);
    let message = error["Message"].as_str().unwrap();
    assert!(
        message.contains("invalid CID") && message.contains("not-a-cid"),
        "{message}"
    );

    let absent = cids::raw_cid(cids::sha256_multihash(b"absent"));
    let response = node.rpc("block/get", &format!("arg={absent}")).await;
    assert_eq!(response.status(), 500);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["Code"], 0);
    assert!(error["Message"].as_str().unwrap().contains("not found"));

    let response = node.rpc("cat", "").await;
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["Message"], "argument \"ipfs-path\" is required");

    let response = node.rpc("cat", "arg=bafkqaaa&offset=-1").await;
    assert_eq!(response.status(), 400);

    let response = node.rpc("add", "").await;
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert!(error["Message"].as_str().unwrap().contains("multipart"));
}

#[tokio::test]
async fn methods_and_unknown_commands_answer_as_kubo() {
    let node = Node::start().await;
    let response = node
        .http
        .get(format!("{}/add", node.handle.api_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.text().await.unwrap(), "405 - Method Not Allowed\n");
    let response = node.rpc("no/such/command", "").await;
    assert_eq!(response.status(), 404);
    assert_eq!(response.text().await.unwrap(), "404 page not found\n");

    // A page of another origin cannot drive the API; a same-origin page can.
    let url = format!("{}/version", node.handle.api_url());
    let response = node
        .http
        .post(&url)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let response = node
        .http
        .post(&url)
        .header("origin", format!("http://{}", node.handle.api_addr()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn blocks_pins_and_gc() {
    let node = Node::start().await;
    let response = node
        .upload("block/put", "", "b", b"raw block".to_vec())
        .await;
    let line: Value = response.json().await.unwrap();
    let raw = cids::raw_cid(cids::sha256_multihash(b"raw block"));
    assert_eq!(line, serde_json::json!({"Key": raw.to_string(), "Size": 9}));

    let response = node.rpc("block/get", &format!("arg={raw}")).await;
    assert_eq!(response.bytes().await.unwrap(), &b"raw block"[..]);
    let stat: Value = node
        .rpc("block/stat", &format!("arg={raw}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stat, serde_json::json!({"Key": raw.to_string(), "Size": 9}));

    // A dag-pb block must decode; garbage is refused.
    let response = node
        .upload("block/put", "cid-codec=dag-pb", "b", vec![0xff, 0xff])
        .await;
    assert_eq!(response.status(), 400);
    let big = node
        .upload("block/put", "", "b", vec![0; (1 << 20) + 1])
        .await;
    assert_eq!(big.status(), 400);

    // pin add / ls / rm
    let pinned: Value = node
        .rpc("pin/add", &format!("arg={raw}&recursive=false&name=keep"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(pinned, serde_json::json!({"Pins": [raw.to_string()]}));
    let listed: Value = node
        .rpc("pin/ls", "type=direct&names=true")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed,
        serde_json::json!({"Keys": {raw.to_string(): {"Type": "direct", "Name": "keep"}}})
    );
    let file = node.upload("add", "", "f", content(300_000, 9)).await;
    let file: Value = file.json().await.unwrap();
    let root = file["Hash"].as_str().unwrap().to_string();
    let all: Value = node.rpc("pin/ls", "").await.json().await.unwrap();
    let keys = all["Keys"].as_object().unwrap();
    assert_eq!(keys[&root]["Type"], "recursive");
    assert_eq!(keys.values().filter(|v| v["Type"] == "indirect").count(), 2);
    let streamed = node
        .rpc("pin/ls", "type=recursive&stream=true")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(streamed.lines().count(), 1);
    assert!(streamed.contains(&root));

    let removed: Value = node
        .rpc("pin/rm", &format!("arg={raw}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(removed, serde_json::json!({"Pins": [raw.to_string()]}));
    let again = node.rpc("pin/rm", &format!("arg={raw}")).await;
    assert_eq!(again.status(), 500);

    // GC removes the unpinned block, and only it.
    let response = node.rpc("repo/gc", "").await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines,
        vec![serde_json::json!({"Key": {"/": raw.to_string()}})]
    );
    assert!(!node.repo.store().has(&raw).unwrap());
    let root: Cid = root.parse().unwrap();
    assert!(node.repo.cat_bytes(&root, 0, None).is_ok());
}

#[tokio::test]
async fn dag_export_and_import_round_trip() {
    let source = Node::start().await;
    let data = content(900_000, 4);
    let line: Value = source
        .upload("add", "", "f", data.clone())
        .await
        .json()
        .await
        .unwrap();
    let root: Cid = line["Hash"].as_str().unwrap().parse().unwrap();
    let response = source.rpc("dag/export", &format!("arg={root}")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "content-type"),
        "application/vnd.ipld.car"
    );
    let car = response.bytes().await.unwrap().to_vec();
    let mut expected_car = Vec::new();
    source.repo.export_car(&root, &mut expected_car).unwrap();
    assert_eq!(car, expected_car);

    let target = Node::start().await;
    let response = target.upload("dag/import", "", "x.car", car.clone()).await;
    assert_eq!(response.status(), 200);
    let line: Value = response.json().await.unwrap();
    assert_eq!(
        line,
        serde_json::json!({"Root": {"Cid": {"/": root.to_string()}, "PinErrorMsg": ""}})
    );
    assert_eq!(target.repo.cat_bytes(&root, 0, None).unwrap().0, data);

    // One flipped byte in the last block rejects the whole file.
    let fresh = Node::start().await;
    let mut bad = car;
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let response = fresh.upload("dag/import", "", "x.car", bad).await;
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert!(
        error["Message"]
            .as_str()
            .unwrap()
            .contains("does not match its CID")
    );
    assert!(fresh.repo.store().keys().unwrap().is_empty());

    let absent = cids::raw_cid(cids::sha256_multihash(b"absent"));
    assert_eq!(
        source
            .rpc("dag/export", &format!("arg={absent}"))
            .await
            .status(),
        500
    );
}

#[tokio::test]
async fn id_and_version() {
    let node = Node::start().await;
    let id: Value = node.rpc("id", "").await.json().await.unwrap();
    for key in ["ID", "AgentVersion", "Addresses", "Protocols", "PublicKey"] {
        assert!(id.get(key).is_some(), "{key} in {id}");
    }
    assert!(id["AgentVersion"].as_str().unwrap().starts_with("r3mes/"));
    let version: Value = node.rpc("version", "").await.json().await.unwrap();
    for key in ["Version", "Commit", "Repo", "System", "Golang"] {
        assert!(version.get(key).is_some(), "{key} in {version}");
    }
}

#[tokio::test]
async fn large_uploads_stream_through() {
    // 40 MiB, more than the importer's 32 MiB commit batch: the body is never
    // held whole, and the CID still matches.
    let node = Node::start().await;
    let data = content(40 << 20, 5);
    let (cid, _) = expected(&data, &AddOptions::default());
    let line: Value = node
        .upload("add", "", "big", data)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(line["Hash"], cid.to_string());
    assert_eq!(node.repo.file_size(&cid).unwrap(), 40 << 20);
}

/// Peak resident memory of this process, from `/proc/self/status` (Linux).
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[tokio::test]
#[ignore = "slow: streams 1 GiB through add and cat (run with --ignored)"]
async fn a_gigabyte_streams_in_flat_memory() {
    use futures::StreamExt;
    const TOTAL: usize = 1 << 30;
    const PIECE: usize = 1 << 20;
    let node = Node::start().await;
    let before = peak_rss_bytes().unwrap_or(0);
    let pieces = futures::stream::iter(0..TOTAL / PIECE)
        .map(|i| Ok::<_, std::io::Error>(content(PIECE, i as u64)));
    let part = reqwest::multipart::Part::stream_with_length(
        reqwest::Body::wrap_stream(pieces),
        TOTAL as u64,
    )
    .file_name("big.bin");
    let form = reqwest::multipart::Form::new().part("file", part);
    let response = node
        .http
        .post(format!("{}/add?raw-leaves=true", node.handle.api_url()))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let line: Value = response.json().await.unwrap();
    let cid: Cid = line["Hash"].as_str().unwrap().parse().unwrap();
    let mut body = node.rpc("cat", &format!("arg={cid}")).await.bytes_stream();
    let mut read = 0usize;
    while let Some(chunk) = body.next().await {
        read += chunk.unwrap().len();
    }
    assert_eq!(read, TOTAL);
    let growth = peak_rss_bytes().unwrap_or(0).saturating_sub(before);
    eprintln!(
        "peak RSS grew by {} MiB for a 1 GiB add + cat",
        growth >> 20
    );
    assert!(growth < 256 << 20, "memory grew by {growth} bytes");
}
