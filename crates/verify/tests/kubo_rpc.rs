//! Verification through the Kubo RPC API (r3mes' client against the embedded
//! daemon on a loopback port): block by block over HTTP, the same verdict and
//! the same bytes fetched as through the repo itself.

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

use std::sync::Arc;

use r3mes_ipfs::{AddSource, ContentStore, EmbeddedStore, Repo};
use r3mes_ipfs_http::{Daemon, DaemonConfig};
use r3mes_kubo::KuboClient;
use r3mes_tensor::{Format, Limits};
use r3mes_verify::budget::synthetic_gradient;
use r3mes_verify::{
    ChunkRef, EntryOptions, Error, FlatOrder, Method, Placement, Verifier, VerifierConfig,
    VerifyCache, entry_from_file, gradient_add_options,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verifies_over_the_rpc_api_like_over_the_repo() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repo::open(dir.path()).unwrap();
    let daemon = Daemon::start(repo.clone(), DaemonConfig::loopback(0, 0))
        .await
        .unwrap();
    let remote: Arc<dyn ContentStore> = Arc::new(KuboClient::new(&daemon.api_url()).unwrap());
    let local: Arc<dyn ContentStore> = Arc::new(EmbeddedStore::new(repo));

    let file =
        r3mes_tensor::encode(&synthetic_gradient(4 << 20, 5).unwrap(), Format::Protobuf).unwrap();
    let options = EntryOptions {
        id: "rpc".into(),
        chunk: ChunkRef {
            data_hash: "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH".into(),
            chunk_id: 0,
            shard_id: 0,
        },
        placement: Placement::default(),
        threshold_ppm: 990_000,
        order: FlatOrder::Canonical,
        seed: None,
    };
    let entry = entry_from_file(&file, &options, &Limits::default()).unwrap();
    let cid = remote
        .add(AddSource::Bytes(file.into()), &gradient_add_options())
        .await
        .unwrap()
        .cid;

    let verify = |store: &Arc<dyn ContentStore>| {
        Verifier::new(
            store.clone(),
            VerifyCache::default(),
            VerifierConfig::default(),
        )
    };
    let over_http = verify(&remote).verify(&cid, &entry).await.unwrap();
    let in_process = verify(&local).verify(&cid, &entry).await.unwrap();
    assert!(over_http.passed, "{over_http:#?}");
    assert_eq!(over_http.method, Method::RangeRead);
    assert_eq!(over_http.cosine_ppm, in_process.cosine_ppm);
    assert_eq!(over_http.bytes_fetched, in_process.bytes_fetched);
    assert_eq!(over_http.blocks_fetched, in_process.blocks_fetched);
    assert!(
        over_http.bytes_fetched * 4 < over_http.file_size,
        "{over_http:#?}"
    );

    // A gradient the daemon does not have: the embedded daemon answers "not found".
    let absent = r3mes_ipfs::cids::parse("QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH").unwrap();
    let err = verify(&remote).verify(&absent, &entry).await.unwrap_err();
    assert!(
        matches!(err, Error::MissingBlock { .. } | Error::Content { .. }),
        "{err}"
    );
    daemon.shutdown().await.unwrap();
}
