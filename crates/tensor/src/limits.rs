//! [`Limits`]: what a decoder may spend on one file. Defaults fit gradients of
//! LoRA adapters (megabytes to a few GiB) and stop hostile inputs early.

/// Bounds every decoder checks before it allocates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest decompressed size of a gzip stream, in bytes.
    pub max_decompressed_bytes: u64,
    /// Largest total number of tensor elements.
    pub max_elements: u64,
    /// Deepest nesting of containers (pickle dicts/lists, metadata).
    pub max_depth: u32,
    /// Most pickle memo entries.
    pub max_memo_entries: u64,
    /// Longest single string or bytes object, in bytes.
    pub max_string_bytes: u64,
    /// Most tensors in one file.
    pub max_tensors: u64,
    /// Largest header (protobuf or safetensors), in bytes.
    pub max_header_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_decompressed_bytes: 4 << 30,
            max_elements: 1 << 30,
            max_depth: 64,
            max_memo_entries: 1 << 20,
            max_string_bytes: 4 << 30,
            max_tensors: 1 << 16,
            max_header_bytes: 64 << 20,
        }
    }
}

impl Limits {
    /// Small limits for fuzzing and property tests: a decoder under them
    /// allocates at most a few MiB whatever the input.
    pub fn tight() -> Self {
        Self {
            max_decompressed_bytes: 1 << 20,
            max_elements: 1 << 20,
            max_depth: 32,
            max_memo_entries: 1 << 12,
            max_string_bytes: 1 << 16,
            max_tensors: 256,
            max_header_bytes: 1 << 16,
        }
    }

    /// Fails with [`crate::Error::Limit`] when `value > limit`.
    pub fn check(what: &'static str, value: u64, limit: u64) -> crate::Result<()> {
        if value > limit {
            Err(crate::Error::Limit { what, limit })
        } else {
            Ok(())
        }
    }
}
