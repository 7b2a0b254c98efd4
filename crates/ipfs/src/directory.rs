//! UnixFS directories as Kubo (boxo) writes and reads them.
//!
//! A directory is a dag-pb node whose `Data` is `UnixFS { Type: Directory }`
//! (the two bytes `08 01`) and whose links are its entries, sorted by name in
//! byte order. Each link carries the entry's name and, as `Tsize`, the child's
//! cumulative size: its block size plus the `Tsize` of all its links, which is
//! what Kubo's `Node.Size()` returns. The node is named by CIDv0 unless asked
//! otherwise, as `ipfs add -r` and Kubo's MFS root do; the empty directory is
//! `QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn`.
//!
//! Kubo switches a directory to a HAMT shard once its estimated link bytes
//! (name plus binary CID of every entry) reach 256 KiB. Sharded directories are
//! neither built nor read here: building one past the threshold and decoding
//! one are both clear errors ([`Error::DirectoryTooLarge`],
//! [`Error::HamtDirectory`]).

use std::collections::BTreeMap;

use cid::Cid;

use crate::dagpb::{PbLink, PbNode};
use crate::unixfs::{DataType, UnixFsData};
use crate::{Error, Result, cids};

/// Link bytes (names plus binary CIDs) at which Kubo shards a directory
/// (boxo's `HAMTShardingSize`, 256 KiB).
pub const HAMT_SHARDING_SIZE: usize = 262_144;

/// Longest entry name accepted (the common file-system limit; Kubo has none,
/// but a longer name is no file name any tool can write out).
pub const MAX_NAME_LEN: usize = 255;

/// The dag-pb bytes of the empty directory: `PBNode { Data: 08 01 }`.
pub const EMPTY_DIRECTORY_BLOCK: [u8; 4] = [0x0a, 0x02, 0x08, 0x01];

/// CID of the empty directory (CIDv0), `QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn`.
pub fn empty_directory_cid() -> Cid {
    cids::dag_pb_cid(0, cids::sha256_multihash(&EMPTY_DIRECTORY_BLOCK))
}

/// Splits an IPFS path without its `/ipfs/` prefix, `CID[/names...]`, into
/// the root CID and the names after it (for [`resolve_path`]).
pub fn split_ipfs_path(path: &str) -> Result<(Cid, &str)> {
    let (root, names) = path.split_once('/').unwrap_or((path, ""));
    Ok((cids::parse(root)?, names))
}

/// The node an IPFS path names: `root`, then each `/`-separated name of
/// `names` looked up in the UnixFS directory reached so far (Kubo's path
/// resolution, `/ipfs/CID/a/b`). Empty segments are skipped, so `""` names
/// `root`. A name missing gives Kubo's "no link named" message; going
/// through a file gives [`Error::NotADirectory`].
pub fn resolve_path(
    block: &mut dyn FnMut(&Cid) -> Result<Vec<u8>>,
    root: &Cid,
    names: &str,
) -> Result<Cid> {
    let mut current = *root;
    let mut walked = format!("/ipfs/{root}");
    for name in names.split('/').filter(|s| !s.is_empty()) {
        let directory = match Directory::decode(&current, &block(&current)?) {
            Ok(d) => d,
            Err(Error::InvalidDirectory { .. }) => {
                return Err(Error::NotADirectory { path: walked });
            }
            Err(e) => return Err(e),
        };
        current = directory
            .get(name)
            .ok_or_else(|| Error::InvalidPath(format!("no link named {name:?} under {current}")))?
            .cid;
        walked.push('/');
        walked.push_str(name);
    }
    Ok(current)
}

/// One entry of a directory: a name and the child it links to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// Entry name (no `/`, not empty, not `.` or `..`).
    pub name: String,
    /// The child.
    pub cid: Cid,
    /// Cumulative size of the child's DAG (the link's `Tsize`).
    pub tsize: u64,
}

/// A directory node built or decoded: its entries and the CID version it is named with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directory {
    entries: BTreeMap<String, (Cid, u64)>,
    /// CID version of the node (0 for Kubo's defaults).
    pub cid_version: u8,
}

/// A directory encoded as a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedDirectory {
    /// The node's CID.
    pub cid: Cid,
    /// The dag-pb bytes.
    pub block: Vec<u8>,
    /// Block size plus the `Tsize` of every link: the `Tsize` a parent gives it.
    pub cumulative_size: u64,
}

impl Default for Directory {
    fn default() -> Self {
        Self::new()
    }
}

/// Checks an entry name: not empty, not `.` or `..`, no `/`, no NUL, at most
/// [`MAX_NAME_LEN`] bytes. The reason is returned for the caller's error.
pub fn check_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("an entry name is empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("an entry is named {name:?}"));
    }
    if name.contains('/') {
        return Err(format!("entry name {name:?} contains '/'"));
    }
    if name.contains('\0') {
        return Err(format!("entry name {name:?} contains a NUL byte"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "an entry name is {} bytes long (at most {MAX_NAME_LEN})",
            name.len()
        ));
    }
    Ok(())
}

impl Directory {
    /// An empty CIDv0 directory.
    pub fn new() -> Self {
        Self::with_cid_version(0)
    }

    /// An empty directory named with CID version `cid_version` (0 or 1).
    pub fn with_cid_version(cid_version: u8) -> Self {
        Self {
            entries: BTreeMap::new(),
            cid_version,
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the directory has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry called `name`.
    pub fn get(&self, name: &str) -> Option<DirEntry> {
        self.entries.get(name).map(|(cid, tsize)| DirEntry {
            name: name.to_string(),
            cid: *cid,
            tsize: *tsize,
        })
    }

    /// Entries in link order (names in byte order).
    pub fn entries(&self) -> impl Iterator<Item = DirEntry> + '_ {
        self.entries.iter().map(|(name, (cid, tsize))| DirEntry {
            name: name.clone(),
            cid: *cid,
            tsize: *tsize,
        })
    }

    /// Adds or replaces an entry; returns the one it replaced. The name must pass [`check_name`].
    pub fn insert(&mut self, name: &str, cid: Cid, tsize: u64) -> Result<Option<DirEntry>> {
        check_name(name).map_err(Error::InvalidArgument)?;
        Ok(self
            .entries
            .insert(name.to_string(), (cid, tsize))
            .map(|(cid, tsize)| DirEntry {
                name: name.to_string(),
                cid,
                tsize,
            }))
    }

    /// Removes an entry; returns it.
    pub fn remove(&mut self, name: &str) -> Option<DirEntry> {
        self.entries.remove(name).map(|(cid, tsize)| DirEntry {
            name: name.to_string(),
            cid,
            tsize,
        })
    }

    /// Kubo's size estimate for the sharding decision: name bytes plus binary
    /// CID bytes of every entry.
    pub fn estimated_link_bytes(&self) -> usize {
        self.entries
            .iter()
            .map(|(name, (cid, _))| name.len() + cid.encoded_len())
            .sum()
    }

    /// Whether Kubo would hold this directory as a HAMT shard.
    pub fn needs_sharding(&self) -> bool {
        self.estimated_link_bytes() >= HAMT_SHARDING_SIZE
    }

    /// The dag-pb node, links sorted by name.
    pub fn to_node(&self) -> PbNode {
        PbNode {
            links: self
                .entries
                .iter()
                .map(|(name, (cid, tsize))| PbLink {
                    cid: *cid,
                    name: Some(name.clone()),
                    tsize: Some(*tsize),
                })
                .collect(),
            data: Some(
                UnixFsData {
                    kind: DataType::Directory,
                    data: None,
                    filesize: None,
                    blocksizes: Vec::new(),
                }
                .encode(),
            ),
        }
    }

    /// Encodes the node and computes its CID and cumulative size. A directory
    /// Kubo would shard is refused ([`Error::DirectoryTooLarge`], `path` naming it).
    pub fn encode(&self, path: &str) -> Result<EncodedDirectory> {
        let size = self.estimated_link_bytes();
        if size >= HAMT_SHARDING_SIZE {
            return Err(Error::DirectoryTooLarge {
                path: path.to_string(),
                size,
                limit: HAMT_SHARDING_SIZE,
            });
        }
        if self.cid_version > 1 {
            return Err(Error::InvalidArgument(format!(
                "unknown CID version {} (use 0 or 1)",
                self.cid_version
            )));
        }
        let block = self.to_node().encode();
        let cid = cids::dag_pb_cid(self.cid_version, cids::sha256_multihash(&block));
        let cumulative_size = self
            .entries
            .values()
            .fold(block.len() as u64, |acc, (_, t)| acc.saturating_add(*t));
        Ok(EncodedDirectory {
            cid,
            block,
            cumulative_size,
        })
    }

    /// Decodes a directory node. A HAMT shard gives [`Error::HamtDirectory`];
    /// any other non-directory, links without names, names that fail
    /// [`check_name`] and a name given twice give [`Error::InvalidDirectory`].
    /// A missing `Tsize` counts as 0.
    pub fn decode(cid: &Cid, block: &[u8]) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidDirectory {
            cid: *cid,
            reason: reason.into_boxed_str(),
        };
        if cid.codec() != cids::DAG_PB {
            return Err(invalid("a raw block is a file, not a directory".into()));
        }
        let node = PbNode::decode(block).map_err(|e| Error::decode(cid, e))?;
        let data = node
            .data
            .as_deref()
            .ok_or_else(|| invalid("dag-pb node without UnixFS data".into()))?;
        let fs = UnixFsData::decode(data).map_err(|e| Error::decode(cid, e))?;
        match fs.kind {
            DataType::Directory => {}
            DataType::HamtShard => return Err(Error::HamtDirectory(*cid)),
            other => return Err(invalid(format!("it is a UnixFS {}", other.name()))),
        }
        let mut entries = BTreeMap::new();
        for link in node.links {
            let name = link
                .name
                .ok_or_else(|| invalid("a link has no name".into()))?;
            check_name(&name).map_err(invalid)?;
            if entries
                .insert(name.clone(), (link.cid, link.tsize.unwrap_or(0)))
                .is_some()
            {
                return Err(invalid(format!("entry {name:?} appears twice")));
            }
        }
        Ok(Self {
            entries,
            cid_version: if cid.version() == cid::Version::V0 {
                0
            } else {
                1
            },
        })
    }
}

/// What a node is, as `files stat` and `files ls` tell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A UnixFS file (or raw block).
    File,
    /// A UnixFS directory (plain or HAMT-sharded).
    Directory,
}

impl EntryKind {
    /// Kubo's `files stat` spelling: `file` or `directory`.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::File => "file",
            EntryKind::Directory => "directory",
        }
    }

    /// Kubo's `files ls` type code: 0 for files, 1 for directories.
    pub fn code(self) -> u8 {
        match self {
            EntryKind::File => 0,
            EntryKind::Directory => 1,
        }
    }
}

/// What `files stat` reports of a node, computed from its block alone.
/// Serializes as Kubo's `files/stat` JSON answer
/// (`{"Hash","Size","CumulativeSize","Blocks","Type"}`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeStat {
    /// The node's CID.
    #[serde(rename = "Hash", serialize_with = "as_text")]
    pub hash: Cid,
    /// Content size of a file (UnixFS `filesize`, or the raw block's size); 0 for directories.
    #[serde(rename = "Size")]
    pub size: u64,
    /// Block size plus the `Tsize` of every link.
    #[serde(rename = "CumulativeSize")]
    pub cumulative_size: u64,
    /// Number of links.
    #[serde(rename = "Blocks")]
    pub blocks: u64,
    /// File or directory.
    #[serde(rename = "Type", serialize_with = "as_text")]
    pub kind: EntryKind,
}

impl std::fmt::Display for EntryKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Serializes a value as its `Display` text (a CID, an entry kind).
fn as_text<T: std::fmt::Display, S: serde::Serializer>(
    value: &T,
    serializer: S,
) -> std::result::Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

/// Stats a node from its block, as Kubo's `files stat` does. Symlinks and
/// unknown UnixFS types are refused, as Kubo refuses them.
pub fn stat_node(cid: &Cid, block: &[u8]) -> Result<NodeStat> {
    let len = block.len() as u64;
    if cid.codec() == cids::RAW {
        return Ok(NodeStat {
            hash: *cid,
            size: len,
            cumulative_size: len,
            blocks: 0,
            kind: EntryKind::File,
        });
    }
    if cid.codec() != cids::DAG_PB {
        return Err(Error::UnsupportedCodec {
            cid: *cid,
            codec: cid.codec(),
        });
    }
    let node = PbNode::decode(block).map_err(|e| Error::decode(cid, e))?;
    let data = node
        .data
        .as_deref()
        .ok_or_else(|| Error::decode(cid, "dag-pb node without UnixFS data"))?;
    let fs = UnixFsData::decode(data).map_err(|e| Error::decode(cid, e))?;
    let kind = match fs.kind {
        DataType::Directory | DataType::HamtShard => EntryKind::Directory,
        DataType::File | DataType::Raw | DataType::Metadata => EntryKind::File,
        DataType::Symlink => {
            return Err(Error::decode(cid, "unrecognized node type: symlink"));
        }
    };
    let cumulative_size = node
        .links
        .iter()
        .fold(len, |acc, l| acc.saturating_add(l.tsize.unwrap_or(0)));
    Ok(NodeStat {
        hash: *cid,
        size: match kind {
            EntryKind::File => fs.filesize.unwrap_or(0),
            EntryKind::Directory => 0,
        },
        cumulative_size,
        blocks: node.links.len() as u64,
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn child(n: u8) -> Cid {
        cids::dag_pb_cid(0, cids::sha256_multihash(&[n]))
    }

    #[test]
    fn empty_directory_is_kubos() {
        let encoded = Directory::new().encode("/").unwrap();
        assert_eq!(
            encoded.cid.to_string(),
            "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"
        );
        assert_eq!(encoded.block, EMPTY_DIRECTORY_BLOCK);
        assert_eq!(encoded.cumulative_size, 4);
        assert_eq!(encoded.cid, empty_directory_cid());
        let stat = stat_node(&encoded.cid, &encoded.block).unwrap();
        assert_eq!(
            (stat.size, stat.cumulative_size, stat.blocks, stat.kind),
            (0, 4, 0, EntryKind::Directory)
        );
    }

    #[test]
    fn links_are_sorted_by_bytes_and_round_trip() {
        let mut dir = Directory::new();
        for (i, name) in ["b", "B", "a", "\u{e9}", "_", "10", "9"].iter().enumerate() {
            dir.insert(name, child(i as u8), 10 + i as u64).unwrap();
        }
        let encoded = dir.encode("/x").unwrap();
        let node = PbNode::decode(&encoded.block).unwrap();
        let names: Vec<_> = node.links.iter().filter_map(|l| l.name.clone()).collect();
        assert_eq!(names, ["10", "9", "B", "_", "a", "b", "\u{e9}"]);
        assert_eq!(
            encoded.cumulative_size,
            encoded.block.len() as u64 + (10..17).sum::<u64>()
        );
        assert_eq!(
            Directory::decode(&encoded.cid, &encoded.block).unwrap(),
            dir
        );
        let v1 = Directory {
            cid_version: 1,
            ..dir
        };
        let e1 = v1.encode("/x").unwrap();
        assert_eq!(e1.block, encoded.block);
        assert_eq!(
            Directory::decode(&e1.cid, &e1.block).unwrap().cid_version,
            1
        );
    }

    #[test]
    fn bad_names_are_refused() {
        let mut dir = Directory::new();
        for name in ["", ".", "..", "a/b", "nul\0", &"x".repeat(256)] {
            assert!(dir.insert(name, child(1), 1).is_err(), "{name:?}");
        }
        assert!(dir.insert(&"x".repeat(255), child(1), 1).is_ok());
    }

    #[test]
    fn hamt_and_files_are_not_directories() {
        let hamt = PbNode {
            links: vec![],
            data: Some(vec![0x08, 0x05, 0x30, 0x80, 0x02]),
        }
        .encode();
        let cid = cids::dag_pb_cid(0, cids::sha256_multihash(&hamt));
        assert!(matches!(
            Directory::decode(&cid, &hamt),
            Err(Error::HamtDirectory(_))
        ));
        assert_eq!(stat_node(&cid, &hamt).unwrap().kind, EntryKind::Directory);
        let file = PbNode {
            links: vec![],
            data: Some(UnixFsData::file(Some(b"hi".to_vec()), 2, vec![]).encode()),
        }
        .encode();
        let cid = cids::dag_pb_cid(0, cids::sha256_multihash(&file));
        let err = Directory::decode(&cid, &file).unwrap_err();
        assert!(err.to_string().contains("UnixFS file"), "{err}");
        let stat = stat_node(&cid, &file).unwrap();
        assert_eq!((stat.size, stat.kind), (2, EntryKind::File));
        // a duplicate name and a nameless link
        let dup = PbNode {
            links: vec![
                PbLink {
                    cid: child(1),
                    name: Some("a".into()),
                    tsize: Some(1),
                },
                PbLink {
                    cid: child(2),
                    name: Some("a".into()),
                    tsize: Some(1),
                },
            ],
            data: Some(vec![8, 1]),
        };
        let bytes = dup.encode();
        assert!(Directory::decode(&cid, &bytes).is_err());
        let nameless = PbNode {
            links: vec![PbLink {
                cid: child(1),
                name: None,
                tsize: None,
            }],
            data: Some(vec![8, 1]),
        };
        assert!(Directory::decode(&cid, &nameless.encode()).is_err());
    }

    #[test]
    fn sharding_threshold_is_refused() {
        let mut dir = Directory::new();
        // 34-byte CIDv0 plus a 222-byte name: 256 bytes a link, 1024 links reach 256 KiB.
        let mut i = 0u32;
        while !dir.needs_sharding() {
            let name = format!("{i:0>222}");
            dir.insert(&name, child((i % 250) as u8), 1).unwrap();
            i += 1;
        }
        assert_eq!(dir.len(), 1024);
        assert!(matches!(
            dir.encode("/big"),
            Err(Error::DirectoryTooLarge { .. })
        ));
        dir.remove(&format!("{:0>222}", 0)).unwrap();
        assert!(dir.encode("/big").is_ok());
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let cid = cids::dag_pb_cid(0, cids::sha256_multihash(&bytes));
            let _ = Directory::decode(&cid, &bytes);
            let _ = stat_node(&cid, &bytes);
        }

        #[test]
        fn encode_decode_round_trip(names in proptest::collection::btree_set("[a-zA-Z0-9._-]{1,12}", 0..20)) {
            let mut dir = Directory::new();
            for (i, name) in names.iter().enumerate() {
                if check_name(name).is_ok() {
                    dir.insert(name, child(i as u8), i as u64).unwrap();
                }
            }
            let encoded = dir.encode("/").unwrap();
            prop_assert_eq!(Directory::decode(&encoded.cid, &encoded.block).unwrap(), dir);
        }
    }
}
