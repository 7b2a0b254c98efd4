//! Content fetched by CID is the content the CID names, whatever it was
//! added with, or an error: tampered blocks, oversized files and missing
//! directory entries are refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_trait::async_trait;
use bytes::Bytes;
use r3mes_client::content::{fetch_file, fetch_in_directory, list_directory};
use r3mes_ipfs::{
    AddOptions, AddSource, Added, Cid, ContentStore, EmbeddedStore, GcReport, NodeIdentity,
    PinInfo, PinMode, ReadStats, Repo, Result,
};

fn bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// A store that flips one byte of every CAR export past its header.
struct Tampering(EmbeddedStore);

#[async_trait]
impl ContentStore for Tampering {
    async fn add(&self, source: AddSource, options: &AddOptions) -> Result<Added> {
        self.0.add(source, options).await
    }
    async fn cat(
        &self,
        cid: &Cid,
        offset: u64,
        length: Option<u64>,
    ) -> Result<(Bytes, Option<ReadStats>)> {
        self.0.cat(cid, offset, length).await
    }
    async fn block_get(&self, cid: &Cid) -> Result<Bytes> {
        self.0.block_get(cid).await
    }
    async fn block_stat(&self, cid: &Cid) -> Result<u64> {
        self.0.block_stat(cid).await
    }
    async fn pin_add(&self, cid: &Cid, mode: PinMode, name: Option<&str>) -> Result<()> {
        self.0.pin_add(cid, mode, name).await
    }
    async fn pin_rm(&self, cid: &Cid) -> Result<()> {
        self.0.pin_rm(cid).await
    }
    async fn pin_ls(&self) -> Result<Vec<PinInfo>> {
        self.0.pin_ls().await
    }
    async fn gc(&self) -> Result<GcReport> {
        self.0.gc().await
    }
    async fn dag_export(&self, root: &Cid) -> Result<Bytes> {
        let mut car = self.0.dag_export(root).await?.to_vec();
        let at = car.len() - 10;
        car[at] ^= 0x40;
        Ok(car.into())
    }
    async fn dag_import(&self, car: Bytes) -> Result<Vec<Cid>> {
        self.0.dag_import(car).await
    }
    async fn id(&self) -> Result<NodeIdentity> {
        self.0.id().await
    }
    async fn version(&self) -> Result<String> {
        self.0.version().await
    }
}

#[tokio::test]
async fn files_of_any_chunking_come_back_whole_and_checked() {
    let store = EmbeddedStore::new(Repo::in_memory());
    let data = bytes(700_000);
    for options in [
        AddOptions::default(),
        AddOptions {
            chunk_size: 4096,
            ..AddOptions::default()
        },
        AddOptions {
            cid_version: 1,
            ..AddOptions::default()
        },
    ] {
        let added = store
            .add(AddSource::Bytes(data.clone().into()), &options)
            .await
            .unwrap();
        let fetched = fetch_file(&store, &added.cid, 1 << 20).await.unwrap();
        assert_eq!(fetched.as_ref(), data.as_slice());
        let err = fetch_file(&store, &added.cid, 1000).await.unwrap_err();
        assert!(
            err.to_string().contains("over the 1000-byte limit"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn tampered_blocks_are_refused() {
    let inner = EmbeddedStore::new(Repo::in_memory());
    let added = inner
        .add(
            AddSource::Bytes(bytes(300_000).into()),
            &AddOptions::default(),
        )
        .await
        .unwrap();
    let store = Tampering(inner);
    let err = fetch_file(&store, &added.cid, 1 << 20).await.unwrap_err();
    assert!(err.to_string().contains("does not match its CID"), "{err}");
}

#[tokio::test]
async fn directories_list_and_serve_their_files() {
    let store = EmbeddedStore::new(Repo::in_memory());
    let mfs = store.repo().mfs();
    let chunk = bytes(4396);
    for name in ["chunk_1", "chunk_2"] {
        mfs.write(
            &format!("/shard/{name}"),
            &mut chunk.as_slice(),
            &r3mes_ipfs::WriteOptions {
                create: true,
                parents: true,
                ..r3mes_ipfs::WriteOptions::default()
            },
        )
        .unwrap();
    }
    let dir = mfs.flush("/shard").unwrap();
    let names: Vec<String> = list_directory(&store, &dir)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["chunk_1", "chunk_2"]);
    let file = fetch_in_directory(&store, &dir, "chunk_2", 1 << 16)
        .await
        .unwrap();
    assert_eq!(file.as_ref(), chunk.as_slice());
    let err = fetch_in_directory(&store, &dir, "chunk_3", 1 << 16)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no \"chunk_3\""), "{err}");
    // A file is not a directory.
    let file_cid = list_directory(&store, &dir).await.unwrap()[0].cid;
    assert!(list_directory(&store, &file_cid).await.is_err());
}
