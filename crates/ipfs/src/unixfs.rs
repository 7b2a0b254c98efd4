//! UnixFS: the `Data` message inside dag-pb nodes that makes a DAG a file.
//!
//! Field numbers as in the UnixFS spec: `Type = 1, Data = 2, filesize = 3,
//! blocksizes = 4 (repeated), hashType = 5, fanout = 6, mode = 7, mtime = 8`.
//! Encoding matches Kubo (proto2, `blocksizes` unpacked); decoding also takes
//! packed `blocksizes` and skips `mode`/`mtime`, which do not change content.

use crate::wire::{self, Reader, Value};

/// The UnixFS node types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    /// Raw data (old-style leaves).
    Raw,
    /// A directory.
    Directory,
    /// A file or a part of one.
    File,
    /// Metadata (unused by Kubo today).
    Metadata,
    /// A symbolic link.
    Symlink,
    /// A sharded directory.
    HamtShard,
}

impl DataType {
    fn from_code(code: u64) -> Result<Self, String> {
        Ok(match code {
            0 => DataType::Raw,
            1 => DataType::Directory,
            2 => DataType::File,
            3 => DataType::Metadata,
            4 => DataType::Symlink,
            5 => DataType::HamtShard,
            other => return Err(format!("unknown UnixFS type {other}")),
        })
    }

    fn code(self) -> u64 {
        match self {
            DataType::Raw => 0,
            DataType::Directory => 1,
            DataType::File => 2,
            DataType::Metadata => 3,
            DataType::Symlink => 4,
            DataType::HamtShard => 5,
        }
    }

    /// Lower-case name for messages.
    pub fn name(self) -> &'static str {
        match self {
            DataType::Raw => "raw",
            DataType::Directory => "directory",
            DataType::File => "file",
            DataType::Metadata => "metadata",
            DataType::Symlink => "symlink",
            DataType::HamtShard => "hamt-sharded directory",
        }
    }
}

/// A decoded UnixFS `Data` message (the fields that matter for content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnixFsData {
    /// Node type.
    pub kind: DataType,
    /// Inline content bytes (leaves).
    pub data: Option<Vec<u8>>,
    /// Total content size of the subtree.
    pub filesize: Option<u64>,
    /// Content size of each child, in link order.
    pub blocksizes: Vec<u64>,
}

impl UnixFsData {
    /// A file node with the given fields.
    pub fn file(data: Option<Vec<u8>>, filesize: u64, blocksizes: Vec<u64>) -> Self {
        Self {
            kind: DataType::File,
            data,
            filesize: Some(filesize),
            blocksizes,
        }
    }

    /// Bytes as Kubo writes them.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            self.data.as_ref().map_or(0, Vec::len) + 8 + 4 * self.blocksizes.len(),
        );
        wire::put_uint(&mut out, 1, self.kind.code());
        if let Some(data) = &self.data {
            wire::put_bytes(&mut out, 2, data);
        }
        if let Some(size) = self.filesize {
            wire::put_uint(&mut out, 3, size);
        }
        for size in &self.blocksizes {
            wire::put_uint(&mut out, 4, *size);
        }
        out
    }

    /// Decodes a UnixFS message, refusing anything malformed.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let mut kind = None;
        let mut data = None;
        let mut filesize = None;
        let mut blocksizes = Vec::new();
        let mut reader = Reader::new(bytes);
        while !reader.is_empty() {
            match reader.field()? {
                (1, Value::Varint(code)) => kind = Some(DataType::from_code(code)?),
                (2, Value::Bytes(b)) => data = Some(b.to_vec()),
                (3, Value::Varint(v)) => filesize = Some(v),
                (4, Value::Varint(v)) => blocksizes.push(v),
                (4, Value::Bytes(packed)) => {
                    let mut inner = Reader::new(packed);
                    while !inner.is_empty() {
                        blocksizes.push(inner.varint()?);
                    }
                }
                (5..=7, Value::Varint(_)) | (8, Value::Bytes(_)) => {}
                (field, _) => return Err(format!("unexpected field {field} in UnixFS data")),
            }
        }
        let kind = kind.ok_or("UnixFS data without a type")?;
        Ok(Self {
            kind,
            data,
            filesize,
            blocksizes,
        })
    }
}

/// Pieces of a CIDv0-style leaf block (`PBNode { Data: UnixFS { File, data, filesize } }`)
/// around the chunk bytes, so the block can be hashed without copying the chunk.
pub fn leaf_frame(chunk_len: usize) -> (Vec<u8>, Vec<u8>) {
    let len = chunk_len as u64;
    let mut trailer = Vec::with_capacity(11);
    wire::put_uint(&mut trailer, 3, len);
    // UnixFS message: type (2 bytes) + data key, length and bytes + trailer.
    let inner_len = 2 + 1 + wire::varint_len(len) + chunk_len + trailer.len();
    let mut header = Vec::with_capacity(16);
    wire::put_key(&mut header, 1, wire::LEN);
    wire::put_varint(&mut header, inner_len as u64);
    wire::put_uint(&mut header, 1, DataType::File.code());
    if chunk_len > 0 {
        wire::put_key(&mut header, 2, wire::LEN);
        wire::put_varint(&mut header, len);
    } else {
        // Kubo's empty file leaf omits the data field: `0a 04 08 02 18 00`.
        let inner = [8, 2, 0x18, 0];
        header.clear();
        wire::put_bytes(&mut header, 1, &inner);
        return (header, Vec::new());
    }
    (header, trailer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dagpb::PbNode;
    use proptest::prelude::*;

    #[test]
    fn leaf_frame_matches_full_encoding() {
        for len in [0usize, 1, 127, 128, 262_144] {
            let chunk = vec![7u8; len];
            let (head, tail) = leaf_frame(len);
            let framed = [head.as_slice(), &chunk, &tail].concat();
            let data = if len == 0 { None } else { Some(chunk.clone()) };
            let node = PbNode {
                links: vec![],
                data: Some(UnixFsData::file(data, len as u64, vec![]).encode()),
            };
            assert_eq!(framed, node.encode(), "len {len}");
        }
    }

    #[test]
    fn decodes_packed_blocksizes_and_skips_mode() {
        let mut b = Vec::new();
        wire::put_uint(&mut b, 1, 2);
        wire::put_bytes(&mut b, 4, &[1, 2, 3]);
        wire::put_uint(&mut b, 7, 0o644);
        let d = UnixFsData::decode(&b).unwrap();
        assert_eq!(d.blocksizes, vec![1, 2, 3]);
        assert!(UnixFsData::decode(&[0x08, 0x09]).is_err());
        assert!(
            UnixFsData::decode(&[0x12, 0x00])
                .unwrap_err()
                .contains("without a type")
        );
    }

    proptest! {
        #[test]
        fn round_trip(data in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
                      filesize in any::<u64>(), sizes in proptest::collection::vec(any::<u64>(), 0..8)) {
            let d = UnixFsData::file(data, filesize, sizes);
            prop_assert_eq!(UnixFsData::decode(&d.encode()).unwrap(), d);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = UnixFsData::decode(&bytes);
        }
    }
}
