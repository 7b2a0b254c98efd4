//! [`Fetcher`]: a read-only [`BlockStore`] over any [`ContentStore`] (the
//! embedded repo or Kubo), through the [`VerifyCache`], counting what one
//! verification fetched. It lets crates/ipfs's [`RangeReader`] walk a remote
//! DAG: the reader asks for exactly the blocks on the paths to the leaves
//! that hold a range and verifies each against its CID.
//!
//! The reader is synchronous, so a fetcher runs on tokio's blocking pool and
//! waits for each block with the runtime's handle.
//!
//! [`RangeReader`]: r3mes_ipfs::reader::RangeReader

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use r3mes_ipfs::blockstore::{BlockBatch, BlockStore};
use r3mes_ipfs::{Cid, ContentStore, PinInfo, cids};

use crate::cache::VerifyCache;

/// What one verification read: from the content store, and from the cache.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub blocks_fetched: AtomicU64,
    pub bytes_fetched: AtomicU64,
    pub bytes_from_cache: AtomicU64,
}

/// A read-only block store backed by a content store and the cache.
pub(crate) struct Fetcher {
    pub store: Arc<dyn ContentStore>,
    pub cache: VerifyCache,
    pub handle: tokio::runtime::Handle,
    pub timeout: Duration,
    pub tally: Tally,
}

impl Fetcher {
    fn fetch(&self, cid: &Cid) -> r3mes_ipfs::Result<Option<Vec<u8>>> {
        if let Some(block) = self.cache.block(cid) {
            self.tally
                .bytes_from_cache
                .fetch_add(block.len() as u64, Ordering::Relaxed);
            return Ok(Some(block.to_vec()));
        }
        let answer = self.handle.block_on(tokio::time::timeout(
            self.timeout,
            self.store.block_get(cid),
        ));
        let block = match answer {
            Err(_) => {
                return Err(r3mes_ipfs::Error::Transport(format!(
                    "block {cid}: no answer from the content store within {:?}",
                    self.timeout
                )));
            }
            Ok(Err(r3mes_ipfs::Error::BlockNotFound(_))) => return Ok(None),
            Ok(other) => other?,
        };
        // Only verified blocks enter the cache, whatever the engine checked.
        cids::verify(cid, &block)?;
        self.tally.blocks_fetched.fetch_add(1, Ordering::Relaxed);
        self.tally
            .bytes_fetched
            .fetch_add(block.len() as u64, Ordering::Relaxed);
        self.cache.put_block(*cid, Arc::from(&block[..]));
        Ok(Some(block.to_vec()))
    }
}

fn read_only() -> r3mes_ipfs::Error {
    r3mes_ipfs::Error::InvalidArgument("the verification block source is read-only".into())
}

impl BlockStore for Fetcher {
    fn get_unverified(&self, cid: &Cid) -> r3mes_ipfs::Result<Option<Vec<u8>>> {
        self.fetch(cid)
    }

    fn block_size(&self, cid: &Cid) -> r3mes_ipfs::Result<Option<u64>> {
        Ok(self.fetch(cid)?.map(|b| b.len() as u64))
    }

    fn batch(&self) -> r3mes_ipfs::Result<Box<dyn BlockBatch + '_>> {
        Err(read_only())
    }

    fn delete(&self, _keys: &[Vec<u8>]) -> r3mes_ipfs::Result<u64> {
        Err(read_only())
    }

    fn keys(&self) -> r3mes_ipfs::Result<Vec<(Vec<u8>, u64)>> {
        Err(read_only())
    }

    fn pins(&self) -> r3mes_ipfs::Result<Vec<PinInfo>> {
        Ok(Vec::new())
    }

    fn put_pin(&self, _pin: &PinInfo) -> r3mes_ipfs::Result<()> {
        Err(read_only())
    }

    fn remove_pin(&self, _cid: &Cid) -> r3mes_ipfs::Result<bool> {
        Err(read_only())
    }
}
