//! The one error type of r3mes-ipfs. Every variant says what failed and why.

use cid::Cid;

/// Errors of content addressing, storage and transport.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A string or byte sequence is not a valid CID.
    #[error("invalid CID {input:?}: {reason}")]
    InvalidCid {
        /// What was given.
        input: String,
        /// Why it is not a CID.
        reason: String,
    },
    /// The CID names a codec this store does not understand.
    #[error("unsupported codec 0x{codec:x} in {cid}")]
    UnsupportedCodec {
        /// The CID.
        cid: Cid,
        /// Its multicodec.
        codec: u64,
    },
    /// The CID uses a hash function this store cannot verify.
    #[error("unsupported hash function 0x{code:x} in {cid}")]
    UnsupportedHash {
        /// The CID.
        cid: Cid,
        /// Its multihash code.
        code: u64,
    },
    /// The block is not in the store.
    #[error("block not found: {0}")]
    BlockNotFound(Cid),
    /// A stored or received block does not hash to its CID.
    #[error("block {0} is corrupt: its bytes do not hash to its CID")]
    CorruptBlock(Cid),
    /// A block's bytes are not valid for its codec (dag-pb or UnixFS).
    #[error("cannot decode block {cid}: {reason}")]
    Decode {
        /// The block.
        cid: Cid,
        /// What is wrong with it (boxed to keep the error small).
        reason: Box<str>,
    },
    /// The node is not a UnixFS file (a directory, symlink or raw non-file).
    #[error("{cid} is not a UnixFS file ({kind})")]
    NotAFile {
        /// The node.
        cid: Cid,
        /// What it is instead.
        kind: &'static str,
    },
    /// A read starts past the end of the file.
    #[error("offset {offset} is past the end of {cid} ({size} bytes)")]
    OffsetPastEnd {
        /// The file.
        cid: Cid,
        /// Requested offset.
        offset: u64,
        /// File size.
        size: u64,
    },
    /// Options that cannot be combined or values out of range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A pin operation that cannot be done.
    #[error("pin: {0}")]
    Pin(String),
    /// A CAR file that is malformed or does not match its CIDs.
    #[error("invalid CAR: {0}")]
    Car(String),
    /// Another process holds the repository.
    #[error("repository {path} is locked by another process (is a daemon running? use --api)")]
    RepoLocked {
        /// The repository directory.
        path: String,
    },
    /// The embedded database failed.
    #[error("repository database: {0}")]
    Database(String),
    /// A file-system operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A remote IPFS API answered with an error (Kubo's `{"Message","Code","Type"}`).
    #[error("IPFS API error: {message} (code {code}, type {kind})")]
    Api {
        /// Kubo's `Message`.
        message: String,
        /// Kubo's `Code`.
        code: i64,
        /// Kubo's `Type`.
        kind: String,
    },
    /// The remote IPFS API could not be reached or answered nonsense.
    #[error("IPFS API transport: {0}")]
    Transport(String),
    /// A UnixFS directory node is malformed or its entries break the naming rules.
    #[error("{cid} is not a valid UnixFS directory: {reason}")]
    InvalidDirectory {
        /// The node.
        cid: Cid,
        /// What is wrong with it (boxed to keep the error small).
        reason: Box<str>,
    },
    /// A HAMT-sharded directory, which can be neither read nor written here.
    #[error(
        "{0} is a HAMT-sharded directory, which is not supported (Kubo shards directories \
         whose links exceed 256 KiB)"
    )]
    HamtDirectory(Cid),
    /// A directory would grow past the size where Kubo switches to a HAMT.
    #[error(
        "directory {path} would hold {size} bytes of links, at or past Kubo's sharding \
         threshold of {limit} bytes; HAMT-sharded directories are not supported"
    )]
    DirectoryTooLarge {
        /// The directory's MFS path.
        path: String,
        /// Estimated link bytes (name plus binary CID of every entry).
        size: usize,
        /// The threshold.
        limit: usize,
    },
    /// An MFS path that is not absolute or not well formed (Kubo's wording).
    #[error("{0}")]
    InvalidPath(String),
    /// Nothing exists at an MFS path (Kubo's `os.ErrNotExist` wording).
    #[error("file does not exist")]
    FileDoesNotExist {
        /// The path looked up.
        path: String,
    },
    /// `mkdir` of a path that exists (Kubo's `os.ErrExist` wording).
    #[error("file already exists")]
    FileExists {
        /// The path.
        path: String,
    },
    /// A copy or move onto a name its directory already has (Kubo's `ErrDirExists`).
    #[error("directory already has entry by that name")]
    EntryExists {
        /// The path.
        path: String,
    },
    /// A path goes through, or names, a file where a directory is needed.
    #[error("{path} is not a directory")]
    NotADirectory {
        /// The path.
        path: String,
    },
    /// A path names a directory where a file is needed (Kubo's wording).
    #[error("{path} was not a file")]
    IsNotAFile {
        /// The path.
        path: String,
    },
    /// `rm` of a directory without `recursive` (Kubo's wording).
    #[error("{path} is a directory, use -r to remove directories")]
    IsADirectory {
        /// The path.
        path: String,
    },
    /// An MFS operation that cannot be done for another reason (the message says why).
    #[error("{0}")]
    Files(String),
}

impl Error {
    /// Wraps an I/O error with the operation that failed.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// A decode error for block `cid`.
    pub fn decode(cid: &Cid, reason: impl Into<String>) -> Self {
        Error::Decode {
            cid: *cid,
            reason: reason.into().into_boxed_str(),
        }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
