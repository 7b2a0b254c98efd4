//! [`EmbeddedStore`]: the [`ContentStore`] of the embedded repo. Repo work is
//! blocking (disk and hashing), so each call runs on tokio's blocking pool.

use async_trait::async_trait;
use bytes::Bytes;
use cid::Cid;

use crate::content::{
    AddOptions, AddSource, Added, ContentStore, GcReport, NodeIdentity, PinInfo, PinMode, ReadStats,
};
use crate::{Error, Repo, Result};

/// The embedded repo as a [`ContentStore`].
#[derive(Clone)]
pub struct EmbeddedStore {
    repo: Repo,
}

impl EmbeddedStore {
    /// Wraps a repo.
    pub fn new(repo: Repo) -> Self {
        Self { repo }
    }

    /// The repo underneath.
    pub fn repo(&self) -> &Repo {
        &self.repo
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(Repo) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let repo = self.repo.clone();
        tokio::task::spawn_blocking(move || work(repo))
            .await
            .map_err(|e| Error::Transport(format!("embedded store task failed: {e}")))?
    }
}

/// Agent version reported by the embedded node.
pub const AGENT_VERSION: &str = concat!("r3mes/", env!("CARGO_PKG_VERSION"));

#[async_trait]
impl ContentStore for EmbeddedStore {
    async fn add(&self, source: AddSource, options: &AddOptions) -> Result<Added> {
        let options = options.clone();
        self.run(move |repo| {
            let imported = match source {
                AddSource::Bytes(bytes) => repo.add_bytes(&bytes, &options)?,
                AddSource::File(path) => repo.add_file(&path, &options)?,
            };
            Ok(Added {
                cid: imported.root,
                size: imported.file_size,
                dag_size: imported.dag_size,
            })
        })
        .await
    }

    async fn cat(
        &self,
        cid: &Cid,
        offset: u64,
        length: Option<u64>,
    ) -> Result<(Bytes, Option<ReadStats>)> {
        let cid = *cid;
        self.run(move |repo| {
            let (data, stats) = repo.cat_bytes(&cid, offset, length)?;
            Ok((Bytes::from(data), Some(stats)))
        })
        .await
    }

    async fn block_get(&self, cid: &Cid) -> Result<Bytes> {
        let cid = *cid;
        self.run(move |repo| repo.block_get(&cid).map(Bytes::from))
            .await
    }

    async fn block_stat(&self, cid: &Cid) -> Result<u64> {
        let cid = *cid;
        self.run(move |repo| repo.block_stat(&cid)).await
    }

    async fn pin_add(&self, cid: &Cid, mode: PinMode, name: Option<&str>) -> Result<()> {
        let cid = *cid;
        let name = name.map(String::from);
        self.run(move |repo| repo.pin_add(&cid, mode, name.as_deref()))
            .await
    }

    async fn pin_rm(&self, cid: &Cid) -> Result<()> {
        let cid = *cid;
        self.run(move |repo| repo.pin_rm(&cid)).await
    }

    async fn pin_ls(&self) -> Result<Vec<PinInfo>> {
        self.run(|repo| repo.pin_ls()).await
    }

    async fn gc(&self) -> Result<GcReport> {
        self.run(|repo| repo.gc()).await
    }

    async fn dag_export(&self, root: &Cid) -> Result<Bytes> {
        let root = *root;
        self.run(move |repo| {
            let mut out = Vec::new();
            repo.export_car(&root, &mut out)?;
            Ok(Bytes::from(out))
        })
        .await
    }

    async fn dag_import(&self, car: Bytes) -> Result<Vec<Cid>> {
        self.run(move |repo| Ok(repo.import_car(&mut car.as_ref(), true)?.roots))
            .await
    }

    async fn id(&self) -> Result<NodeIdentity> {
        let id = match self.repo.path() {
            Some(path) => format!("r3mes-embedded:{}", path.display()),
            None => "r3mes-embedded:memory".to_string(),
        };
        Ok(NodeIdentity {
            id,
            agent_version: AGENT_VERSION.to_string(),
        })
    }

    async fn version(&self) -> Result<String> {
        Ok(env!("CARGO_PKG_VERSION").to_string())
    }
}
