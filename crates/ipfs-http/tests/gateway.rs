//! The trustless gateway over real HTTP: raw blocks, CAR streams (whole DAG,
//! scopes, byte ranges), file bytes, headers and refusals.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Node, content, header};
use r3mes_ipfs::car::CarReader;
use r3mes_ipfs::reader::RangeReader;
use r3mes_ipfs::{AddOptions, Cid, Repo, cids};

const CAR: &str = "application/vnd.ipld.car; version=1; order=dfs; dups=n";

/// A node holding a multi-leaf file; returns it, the root and the bytes.
async fn node_with_file(options: &AddOptions) -> (Node, Cid, Vec<u8>) {
    let node = Node::start().await;
    let data = content(5 * 262_144 + 777, 11);
    let root = node.repo.add_bytes(&data, options).unwrap().root;
    (node, root, data)
}

fn car_blocks(car: &[u8]) -> (Vec<Cid>, Vec<(Cid, Vec<u8>)>) {
    let mut reader = CarReader::new(car).unwrap();
    let roots = reader.roots().to_vec();
    let mut blocks = Vec::new();
    while let Some(block) = reader.next_block().unwrap() {
        blocks.push(block);
    }
    (roots, blocks)
}

#[tokio::test]
async fn raw_blocks_with_spec_headers() {
    let (node, root, _) = node_with_file(&AddOptions::default()).await;
    let response = node
        .gateway(&format!("/ipfs/{root}?format=raw"), None)
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "content-type"),
        "application/vnd.ipld.raw"
    );
    assert_eq!(header(&response, "etag"), format!("\"{root}.raw\""));
    assert_eq!(
        header(&response, "cache-control"),
        "public, max-age=29030400, immutable"
    );
    assert_eq!(header(&response, "x-content-type-options"), "nosniff");
    assert_eq!(header(&response, "x-ipfs-path"), format!("/ipfs/{root}"));
    assert_eq!(
        header(&response, "content-disposition"),
        format!("attachment; filename=\"{root}.bin\"")
    );
    let body = response.bytes().await.unwrap();
    assert_eq!(body.to_vec(), node.repo.block_get(&root).unwrap());
    cids::verify(&root, &body).unwrap();

    // The same through Accept: the answer names the format it chose.
    let response = node
        .gateway(&format!("/ipfs/{root}"), Some("application/vnd.ipld.raw"))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "content-location"),
        format!("/ipfs/{root}?format=raw")
    );
    assert_eq!(response.bytes().await.unwrap(), body);
}

#[tokio::test]
async fn car_of_the_whole_dag_imports_and_reads_back() {
    let (node, root, data) = node_with_file(&AddOptions {
        cid_version: 1,
        ..AddOptions::default()
    })
    .await;
    let response = node
        .gateway(&format!("/ipfs/{root}?format=car"), None)
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), CAR);
    let etag = header(&response, "etag");
    assert!(etag.starts_with(&format!("\"{root}.car.")), "{etag}");
    let car = response.bytes().await.unwrap();

    let fresh = Repo::in_memory();
    let imported = fresh.import_car(&mut car.as_ref(), true).unwrap();
    assert_eq!(imported.roots, vec![root]);
    assert_eq!(imported.pinned, vec![root]);
    assert_eq!(fresh.cat_bytes(&root, 0, None).unwrap().0, data);

    // Accept alone gives the same bytes; other scopes give other Etags.
    let by_accept = node.gateway(&format!("/ipfs/{root}"), Some(CAR)).await;
    assert_eq!(header(&by_accept, "etag"), etag);
    assert_eq!(by_accept.bytes().await.unwrap(), car);
    let block = node
        .gateway(&format!("/ipfs/{root}?format=car&dag-scope=block"), None)
        .await;
    assert_ne!(header(&block, "etag"), etag);
    let (roots, blocks) = car_blocks(&block.bytes().await.unwrap());
    assert_eq!(roots, vec![root]);
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0].0, root);
    let entity = node
        .gateway(&format!("/ipfs/{root}?format=car&dag-scope=entity"), None)
        .await;
    assert_eq!(entity.bytes().await.unwrap(), car);
}

#[tokio::test]
async fn entity_bytes_carries_exactly_the_blocks_of_the_range() {
    let (node, root, data) = node_with_file(&AddOptions::default()).await;
    let (from, to) = (262_000u64, 262_300u64); // straddles leaves 0 and 1
    let response = node
        .gateway(
            &format!("/ipfs/{root}?format=car&entity-bytes={from}:{to}"),
            None,
        )
        .await;
    assert_eq!(response.status(), 200);
    let car = response.bytes().await.unwrap();
    let (roots, blocks) = car_blocks(&car);
    assert_eq!(roots, vec![root]);

    // The blocks a recording range reader fetches for that range, in order.
    let mut reader = RangeReader::recording(node.repo.store());
    reader
        .read(&root, from, Some(to - from + 1), &mut std::io::sink())
        .unwrap();
    let recorded = reader.take_recorded();
    assert_eq!(blocks, recorded);
    assert_eq!(blocks.len(), 3);

    // A verifying client can read the range from these blocks alone, and
    // nothing outside it.
    let fresh = Repo::in_memory();
    let imported = fresh.import_car(&mut car.as_ref(), true).unwrap();
    assert!(
        imported.pinned.is_empty(),
        "an incomplete DAG is not pinned"
    );
    let (bytes, _) = fresh.cat_bytes(&root, from, Some(to - from + 1)).unwrap();
    assert_eq!(bytes, data[from as usize..=to as usize]);
    assert!(fresh.cat_bytes(&root, 600_000, Some(1)).is_err());

    // The last 100 bytes: root and last leaf; Etags differ per range.
    let tail = node
        .gateway(
            &format!("/ipfs/{root}?format=car&entity-bytes=-100:*"),
            None,
        )
        .await;
    let tail_etag = header(&tail, "etag");
    let tail = tail.bytes().await.unwrap();
    assert_eq!(car_blocks(&tail).1.len(), 2);
    let fresh = Repo::in_memory();
    fresh.import_car(&mut tail.as_ref(), false).unwrap();
    let n = data.len() as u64;
    assert_eq!(
        fresh.cat_bytes(&root, n - 100, None).unwrap().0,
        data[data.len() - 100..]
    );
    let other = node
        .gateway(&format!("/ipfs/{root}?format=car&entity-bytes=0:99"), None)
        .await;
    assert_ne!(header(&other, "etag"), tail_etag);

    // A range past the end is refused; an empty one gives the root only.
    let past = node
        .gateway(&format!("/ipfs/{root}?format=car&entity-bytes={n}:*"), None)
        .await;
    assert_eq!(past.status(), 400);
    let empty = node
        .gateway(
            &format!("/ipfs/{root}?format=car&entity-bytes=10:-{n}"),
            None,
        )
        .await;
    assert_eq!(empty.status(), 200);
    assert_eq!(car_blocks(&empty.bytes().await.unwrap()).1.len(), 1);
    let bad = node
        .gateway(&format!("/ipfs/{root}?format=car&entity-bytes=9:3"), None)
        .await;
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn head_not_found_refusals_and_conditional_requests() {
    let (node, root, _) = node_with_file(&AddOptions::default()).await;
    let url = format!("{}/ipfs/{root}?format=raw", node.handle.gateway_url());
    let head = node.http.head(&url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    let size = node.repo.block_stat(&root).unwrap();
    assert_eq!(header(&head, "content-length"), size.to_string());
    assert_eq!(header(&head, "etag"), format!("\"{root}.raw\""));
    assert!(head.bytes().await.unwrap().is_empty());

    let car_url = format!("{}/ipfs/{root}?format=car", node.handle.gateway_url());
    let head = node.http.head(&car_url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(header(&head, "content-type"), CAR);

    let absent = cids::raw_cid(cids::sha256_multihash(b"absent"));
    for format in ["raw", "car"] {
        let response = node
            .gateway(&format!("/ipfs/{absent}?format={format}"), None)
            .await;
        assert_eq!(response.status(), 404, "{format}");
    }
    let head = node
        .http
        .head(format!(
            "{}/ipfs/{absent}?format=raw",
            node.handle.gateway_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 404);

    assert_eq!(
        node.gateway("/ipfs/not-a-cid?format=raw", None)
            .await
            .status(),
        400
    );
    assert_eq!(
        node.gateway(&format!("/ipfs/{root}?format=tar"), None)
            .await
            .status(),
        406
    );
    assert_eq!(
        node.gateway(
            &format!("/ipfs/{root}"),
            Some("application/vnd.ipld.dag-json")
        )
        .await
        .status(),
        406
    );
    assert_eq!(
        node.gateway(&format!("/ipfs/{root}?format=car&car-dups=y"), None)
            .await
            .status(),
        400
    );
    assert_eq!(
        node.gateway(&format!("/ipfs/{root}/a/path?format=car"), None)
            .await
            .status(),
        501
    );

    let etag = format!("\"{root}.raw\"");
    let cached = node
        .http
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status(), 304);
    assert_eq!(header(&cached, "etag"), etag);
}

#[tokio::test]
async fn identity_probe_answers() {
    let node = Node::start().await;
    let raw = node.gateway("/ipfs/bafkqaaa?format=raw", None).await;
    assert_eq!(raw.status(), 200);
    assert!(raw.bytes().await.unwrap().is_empty());
    let head = node
        .http
        .head(format!("{}/ipfs/bafkqaaa", node.handle.gateway_url()))
        .header("accept", "application/vnd.ipld.raw")
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    let car = node.gateway("/ipfs/bafkqaaa?format=car", None).await;
    assert_eq!(car.status(), 200);
    let (roots, blocks) = car_blocks(&car.bytes().await.unwrap());
    assert_eq!(roots, vec!["bafkqaaa".parse::<Cid>().unwrap()]);
    assert!(blocks.is_empty(), "identity blocks are never sent");
}

#[tokio::test]
async fn file_bytes_with_http_ranges() {
    let (node, root, data) = node_with_file(&AddOptions::default()).await;
    let whole = node.gateway(&format!("/ipfs/{root}"), None).await;
    assert_eq!(whole.status(), 200);
    assert_eq!(header(&whole, "etag"), format!("\"{root}\""));
    assert_eq!(header(&whole, "accept-ranges"), "bytes");
    assert_eq!(header(&whole, "content-length"), data.len().to_string());
    assert_eq!(whole.bytes().await.unwrap().to_vec(), data);

    let url = format!("{}/ipfs/{root}", node.handle.gateway_url());
    let part = node
        .http
        .get(&url)
        .header("range", "bytes=1000-1999")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(
        header(&part, "content-range"),
        format!("bytes 1000-1999/{}", data.len())
    );
    assert_eq!(part.bytes().await.unwrap(), data[1000..2000]);
    let unsatisfiable = node
        .http
        .get(&url)
        .header("range", format!("bytes={}-", data.len()))
        .send()
        .await
        .unwrap();
    assert_eq!(unsatisfiable.status(), 416);
    assert_eq!(
        header(&unsatisfiable, "content-range"),
        format!("bytes */{}", data.len())
    );
}
