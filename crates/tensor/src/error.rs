//! The one error type of r3mes-tensor. Every variant says what is wrong.

/// Errors of decoding, encoding and flattening gradient files.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bytes match no known format (or not the one forced).
    #[error("unrecognised gradient format: {0}")]
    UnknownFormat(String),
    /// The file is cut short.
    #[error("truncated {format} file: {detail}")]
    Truncated {
        /// Which format was being read.
        format: &'static str,
        /// What was missing.
        detail: String,
    },
    /// The bytes are malformed for their format.
    #[error("malformed {format} file: {detail}")]
    Malformed {
        /// Which format was being read.
        format: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// A dtype name no reader here understands.
    #[error("unknown dtype {0:?}")]
    UnknownDType(String),
    /// Two tensors with one name.
    #[error("duplicate tensor name {0:?}")]
    DuplicateTensor(String),
    /// A tensor's shape and byte length disagree, or a declared shape/dtype does not match the data.
    #[error("tensor {name:?}: {detail}")]
    Shape {
        /// The tensor.
        name: String,
        /// What disagrees.
        detail: String,
    },
    /// A limit of [`crate::Limits`] was reached.
    #[error("limit exceeded: {what} (limit {limit})")]
    Limit {
        /// Which quantity.
        what: &'static str,
        /// The configured limit.
        limit: u64,
    },
    /// A pickle names a global the reader refuses (anything but containers and numpy arrays).
    #[error(
        "refused pickle global {module}.{name}: only numpy arrays and builtin containers are read, nothing is executed"
    )]
    ForbiddenGlobal {
        /// Module of the global.
        module: String,
        /// Name of the global.
        name: String,
    },
    /// A pickle opcode the reader does not interpret.
    #[error("unsupported pickle opcode 0x{opcode:02x} at byte {offset}")]
    UnsupportedOpcode {
        /// The opcode byte.
        opcode: u8,
        /// Where it was.
        offset: u64,
    },
    /// An operation the format cannot do (such as a range index of a pickle).
    #[error("{0}")]
    Unsupported(String),
    /// A flat index past the last element.
    #[error("index {index} out of range ({len} elements)")]
    IndexOutOfRange {
        /// The index asked for.
        index: u64,
        /// Number of elements.
        len: u64,
    },
    /// A file-system or stream operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// A malformed-input error.
    pub fn malformed(format: &'static str, detail: impl Into<String>) -> Self {
        Error::Malformed {
            format,
            detail: detail.into(),
        }
    }

    /// A truncated-input error.
    pub fn truncated(format: &'static str, detail: impl Into<String>) -> Self {
        Error::Truncated {
            format,
            detail: detail.into(),
        }
    }

    /// An I/O error with the operation that failed.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
