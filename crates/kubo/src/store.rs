//! [`ContentStore`] for [`KuboClient`]: the rest of r3mes reaches a Kubo daemon
//! through the same trait as the embedded store.
//!
//! Differences from the embedded engine, all Kubo's own behaviour: `cat` reports
//! no [`ReadStats`] (Kubo does not say which blocks it fetched; r3mes' embedded
//! daemon does, in headers, and then they are returned) and answers an offset
//! past the end with no bytes; `gc` reports `freed_bytes = 0` (Kubo lists
//! removed keys, not sizes); `dag_import` pins the CAR's roots recursively.

use async_trait::async_trait;
use bytes::Bytes;
use r3mes_ipfs::{
    AddOptions, AddSource, Added, Cid, ContentStore, GcReport, NodeIdentity, PinInfo, PinMode,
    ReadStats, Result,
};

use crate::KuboClient;

#[async_trait]
impl ContentStore for KuboClient {
    async fn add(&self, source: AddSource, options: &AddOptions) -> Result<Added> {
        KuboClient::add(self, source, options).await
    }

    async fn cat(
        &self,
        cid: &Cid,
        offset: u64,
        length: Option<u64>,
    ) -> Result<(Bytes, Option<ReadStats>)> {
        KuboClient::cat_with_stats(self, cid, offset, length).await
    }

    async fn block_get(&self, cid: &Cid) -> Result<Bytes> {
        KuboClient::block_get(self, cid).await
    }

    async fn block_stat(&self, cid: &Cid) -> Result<u64> {
        Ok(KuboClient::block_stat(self, cid).await?.size)
    }

    async fn pin_add(&self, cid: &Cid, mode: PinMode, name: Option<&str>) -> Result<()> {
        KuboClient::pin_add(self, cid, mode, name).await
    }

    async fn pin_rm(&self, cid: &Cid) -> Result<()> {
        KuboClient::pin_rm(self, cid).await
    }

    async fn pin_ls(&self) -> Result<Vec<PinInfo>> {
        KuboClient::pin_ls(self).await
    }

    async fn gc(&self) -> Result<GcReport> {
        KuboClient::repo_gc(self).await
    }

    async fn dag_export(&self, root: &Cid) -> Result<Bytes> {
        KuboClient::dag_export(self, root).await
    }

    async fn dag_import(&self, car: Bytes) -> Result<Vec<Cid>> {
        KuboClient::dag_import(self, car).await
    }

    async fn id(&self) -> Result<NodeIdentity> {
        KuboClient::id(self).await
    }

    async fn version(&self) -> Result<String> {
        KuboClient::version(self).await
    }
}
