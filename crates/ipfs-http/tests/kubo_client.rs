//! r3mes' own Kubo RPC client against the embedded daemon, through the
//! `ContentStore` trait both sides implement: the two halves of the content
//! layer agree on every command the rest of the system uses.

mod common;

use bytes::Bytes;
use common::Node;
use r3mes_ipfs::{AddOptions, AddSource, ContentStore, EmbeddedStore, PinMode};
use r3mes_kubo::KuboClient;

fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[tokio::test]
async fn client_and_embedded_store_agree_on_every_command() {
    let node = Node::start().await;
    let remote = KuboClient::new(&node.handle.api_url()).unwrap();
    let local = EmbeddedStore::new(r3mes_ipfs::Repo::in_memory());
    let data = content(700_000);

    for options in [
        AddOptions::default(),
        AddOptions {
            cid_version: 1,
            ..AddOptions::default()
        },
    ] {
        let added = remote
            .add(AddSource::Bytes(Bytes::from(data.clone())), &options)
            .await
            .unwrap();
        let expected = local
            .add(AddSource::Bytes(Bytes::from(data.clone())), &options)
            .await
            .unwrap();
        assert_eq!(added, expected, "{options:?}");
    }
    let root = local
        .add(
            AddSource::Bytes(Bytes::from(data.clone())),
            &AddOptions::default(),
        )
        .await
        .unwrap()
        .cid;

    // Range reads, with the fetch stats the embedded daemon reports.
    let (bytes, stats) = ContentStore::cat(&remote, &root, 262_000, Some(4096))
        .await
        .unwrap();
    assert_eq!(bytes.as_ref(), &data[262_000..266_096]);
    let (_, local_stats) = ContentStore::cat(&local, &root, 262_000, Some(4096))
        .await
        .unwrap();
    assert_eq!(stats, local_stats);

    // Blocks.
    let block = ContentStore::block_get(&remote, &root).await.unwrap();
    assert_eq!(
        ContentStore::block_stat(&remote, &root).await.unwrap(),
        block.len() as u64
    );

    // Pins and GC: unpinned content goes, pinned content stays.
    let pins = ContentStore::pin_ls(&remote).await.unwrap();
    assert!(
        pins.iter()
            .any(|p| p.cid == root && p.mode == PinMode::Recursive)
    );
    let car = ContentStore::dag_export(&remote, &root).await.unwrap();
    ContentStore::pin_rm(&remote, &root).await.unwrap();
    let other = remote
        .add(
            AddSource::Bytes(Bytes::from_static(b"kept")),
            &AddOptions::default(),
        )
        .await
        .unwrap();
    let report = ContentStore::gc(&remote).await.unwrap();
    assert!(!report.removed.is_empty());
    assert!(ContentStore::cat(&remote, &root, 0, None).await.is_err());
    assert_eq!(
        ContentStore::cat(&remote, &other.cid, 0, None)
            .await
            .unwrap()
            .0
            .as_ref(),
        b"kept"
    );

    // CAR round trip through the API.
    let roots = ContentStore::dag_import(&remote, car).await.unwrap();
    assert_eq!(roots, vec![root]);
    assert_eq!(
        ContentStore::cat(&remote, &root, 0, None)
            .await
            .unwrap()
            .0
            .as_ref(),
        &data[..]
    );

    // Identity.
    let id = ContentStore::id(&remote).await.unwrap();
    assert!(id.agent_version.starts_with("r3mes/"), "{id:?}");
    assert!(!ContentStore::version(&remote).await.unwrap().is_empty());

    // Errors travel as Kubo's JSON and come back typed.
    let missing: r3mes_ipfs::Cid = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
        .parse()
        .unwrap();
    let err = ContentStore::block_get(&remote, &missing)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not found"), "{err}");
}
