//! The record of the last `FinalizeBlock`, kept so that a crash between
//! `FinalizeBlock` and `Commit` is recovered the way CometBFT expects.
//!
//! The keeper commits a block to its store inside `FinalizeBlock` (the app
//! hash that request returns must be the committed one). CometBFT, however,
//! counts a block as the application's only once `Commit` returned: `Info`
//! must report the last height whose `Commit` completed and that height's
//! app hash. After a crash past `FinalizeBlock` but before `Commit`,
//! CometBFT may not even have stored the `FinalizeBlock` response, and it
//! sends the same block's `FinalizeBlock` again; the keeper, already past
//! that block, cannot run it twice, so it answers from this record.
//!
//! The record is written before the keeper commits the block (a write-ahead
//! record without the app hash, which the committed keeper gives) and again
//! with `committed` set when `Commit` arrives, each time to a temporary file
//! that is synced and renamed over the record. On open, the keeper's height
//! says which of the two writes the block reached:
//!
//! | record height | keeper (CometBFT) height `k` | meaning |
//! |---------------|------------------------------|---------|
//! | `k + 1`       |                              | the keeper never committed that block: dropped, it will be run again |
//! | `k`, not committed |                         | `Info` reports `k - 1`; the replayed `FinalizeBlock` gets the record |
//! | `k`, committed |                             | `Info` reports `k` |
//! | none or below `k` |                          | `Info` reports `k` (a state written without a record) |

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use prost::Message;
use tendermint_proto::v0_38::abci::ResponseFinalizeBlock;

/// The last `FinalizeBlock` (what is stored, protobuf).
#[derive(Clone, PartialEq, Message)]
pub struct LastBlock {
    /// CometBFT's height of the block.
    #[prost(int64, tag = "1")]
    pub height: i64,
    /// The block hash `FinalizeBlock` carried.
    #[prost(bytes = "vec", tag = "2")]
    pub hash: Vec<u8>,
    /// The app hash before the block: what `Info` reports until `Commit`.
    #[prost(bytes = "vec", tag = "3")]
    pub previous_app_hash: Vec<u8>,
    /// The response (its `app_hash` is empty in the record on disk: it is
    /// the committed keeper's).
    #[prost(message, optional, tag = "4")]
    pub response: Option<ResponseFinalizeBlock>,
    /// Whether `Commit` completed for the block.
    #[prost(bool, tag = "5")]
    pub committed: bool,
    /// The keeper's events of the block (each applied transaction's in
    /// block order, then the end-of-block ones), for the commit hook: a
    /// block replayed after a crash before `Commit` hands them on too.
    #[prost(message, repeated, tag = "6")]
    pub keeper_events: Vec<r3mes_chain::proto::Event>,
}

/// Where the record lives: a file, or nowhere (tests and tools that do not
/// need crash recovery).
#[derive(Debug, Clone)]
pub struct Journal {
    path: Option<PathBuf>,
}

impl Journal {
    /// A record in memory only.
    pub fn in_memory() -> Self {
        Journal { path: None }
    }

    /// A record in the file `path`.
    pub fn at(path: &Path) -> Self {
        Journal {
            path: Some(path.to_owned()),
        }
    }

    /// Reads the record; `None` if there is none.
    pub fn load(&self) -> io::Result<Option<LastBlock>> {
        let Some(path) = &self.path else {
            return Ok(None);
        };
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        LastBlock::decode(bytes.as_slice()).map(Some).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })
    }

    /// Replaces the record durably: a temporary file, synced, renamed over
    /// the record, and the directory synced.
    pub fn store(&self, record: &LastBlock) -> io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let mut tmp = path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        {
            let mut file = fs::File::create(&tmp)?;
            file.write_all(&record.encode_to_vec())?;
            file.sync_all()?;
        }
        fs::rename(&tmp, path)?;
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        fs::File::open(dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_replace_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::at(&dir.path().join("last-block.pb"));
        assert_eq!(journal.load().unwrap(), None);
        let mut record = LastBlock {
            height: 7,
            hash: vec![1; 32],
            previous_app_hash: vec![2; 32],
            response: Some(ResponseFinalizeBlock::default()),
            committed: false,
            keeper_events: vec![r3mes_chain::proto::Event {
                kind: Some(r3mes_chain::proto::event::Kind::Unpin(
                    r3mes_chain::proto::EvUnpin { cid: "Qm".into() },
                )),
            }],
        };
        journal.store(&record).unwrap();
        assert_eq!(journal.load().unwrap(), Some(record.clone()));
        record.committed = true;
        journal.store(&record).unwrap();
        assert_eq!(journal.load().unwrap(), Some(record));
        assert!(!dir.path().join("last-block.pb.tmp").exists());

        std::fs::write(dir.path().join("last-block.pb"), [0xff, 0xff]).unwrap();
        assert!(journal.load().is_err());
        assert_eq!(Journal::in_memory().load().unwrap(), None);
    }
}
