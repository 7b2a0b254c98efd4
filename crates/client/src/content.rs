//! Content fetched from an IPFS store and checked against the CID it was
//! asked for, so a miner or aggregator trusts the chain's CIDs, not the
//! store.
//!
//! A file is fetched as its DAG (a CAR export), every block checked against
//! its CID as it arrives, and read from those blocks alone: whatever
//! chunking or CID version it was added with, the bytes returned are the
//! ones the CID names, or an error. The root block is fetched first so a
//! file over the size limit is refused before it is downloaded. A
//! directory is one block, checked by its hash and decoded.

use bytes::Bytes;
use r3mes_ipfs::car::CarReader;
use r3mes_ipfs::reader::{RangeReader, decode_file_node};
use r3mes_ipfs::{BlockStore, Cid, ContentStore, DirEntry, Directory, MemoryBlockStore};

use crate::{Error, Result};

fn content_error(cid: &Cid, reason: impl Into<String>) -> Error {
    Error::Content {
        cid: cid.to_string(),
        reason: reason.into(),
    }
}

/// The whole file `cid` (at most `max_bytes`), checked against `cid`.
pub async fn fetch_file(store: &dyn ContentStore, cid: &Cid, max_bytes: u64) -> Result<Bytes> {
    let root = store
        .block_get(cid)
        .await
        .map_err(|e| content_error(cid, format!("fetching the root block: {e}")))?;
    r3mes_ipfs::cids::verify(cid, &root).map_err(|e| content_error(cid, e.to_string()))?;
    let size = decode_file_node(cid, root.to_vec())
        .map_err(|e| content_error(cid, e.to_string()))?
        .size;
    if size > max_bytes {
        return Err(content_error(
            cid,
            format!("{size} bytes, over the {max_bytes}-byte limit"),
        ));
    }
    let car = store
        .dag_export(cid)
        .await
        .map_err(|e| content_error(cid, format!("fetching the DAG: {e}")))?;
    let blocks = MemoryBlockStore::new();
    let mut reader = CarReader::new(car.as_ref()).map_err(|e| content_error(cid, e.to_string()))?;
    let mut batch = blocks
        .batch()
        .map_err(|e| content_error(cid, e.to_string()))?;
    // Every block is checked against its CID as it is read.
    while let Some((block_cid, data)) = reader
        .next_block()
        .map_err(|e| content_error(cid, e.to_string()))?
    {
        batch
            .put(&block_cid, &data)
            .map_err(|e| content_error(cid, e.to_string()))?;
    }
    batch
        .commit(false)
        .map_err(|e| content_error(cid, e.to_string()))?;
    let mut out = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    RangeReader::new(&blocks)
        .read(cid, 0, None, &mut out)
        .map_err(|e| content_error(cid, format!("reading the file from its blocks: {e}")))?;
    Ok(Bytes::from(out))
}

/// The entries of directory `cid` (a single-block UnixFS directory), by name.
pub async fn list_directory(store: &dyn ContentStore, cid: &Cid) -> Result<Vec<DirEntry>> {
    let block = store
        .block_get(cid)
        .await
        .map_err(|e| content_error(cid, format!("fetching the directory block: {e}")))?;
    r3mes_ipfs::cids::verify(cid, &block).map_err(|e| content_error(cid, e.to_string()))?;
    let dir = Directory::decode(cid, &block).map_err(|e| content_error(cid, e.to_string()))?;
    Ok(dir.entries().collect())
}

/// File `name` of directory `dir`, checked as [`fetch_file`] checks.
pub async fn fetch_in_directory(
    store: &dyn ContentStore,
    dir: &Cid,
    name: &str,
    max_bytes: u64,
) -> Result<Bytes> {
    let entry = list_directory(store, dir)
        .await?
        .into_iter()
        .find(|e| e.name == name)
        .ok_or_else(|| content_error(dir, format!("the directory has no {name:?}")))?;
    fetch_file(store, &entry.cid, max_bytes).await
}
