//! [`Verifier`]: one vault entry against one gradient CID.
//!
//! Range-readable gradients (r3mes protobuf, safetensors): read the first
//! KiBs, build the `GradientIndex` from the header, map the entry's indices
//! to byte ranges, read only the leaves that hold them (each verified against
//! its CID on the way down from the root), decode the values. Legacy formats
//! (pickle, pickle+gzip, the engine's protobuf) have no header index: they
//! are downloaded whole, up to a size limit, and decoded under the tensor
//! crate's limits (gzip bombs stop at `max_decompressed_bytes`).
//!
//! Errors are for what the validator cannot decide (the store is unreachable,
//! a block is missing or corrupt); a gradient the miner got wrong (unreadable,
//! wrong length, non-finite values, low similarity) is a failed [`Report`].

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use r3mes_ipfs::reader::RangeReader;
use r3mes_ipfs::{Cid, ContentStore};
use r3mes_tensor::index::IndexOrNeedMore;
use r3mes_tensor::{Format, GradientIndex, Limits, flatten};
use serde::Serialize;

use crate::cache::VerifyCache;
use crate::fetch::{Fetcher, Tally};
use crate::similarity::{cosine, to_ppm};
use crate::vault::VaultEntry;
use crate::{Error, Result};

/// First bytes read to find the format and, usually, the whole header.
pub const HEADER_PROBE: u64 = 4096;
/// Largest legacy (non-indexed) gradient downloaded whole.
pub const DEFAULT_MAX_FULL_DOWNLOAD: u64 = 1 << 30;
/// How long one block may take to arrive.
pub const DEFAULT_BLOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// Verifier settings.
#[derive(Debug, Clone, Copy)]
pub struct VerifierConfig {
    /// Decoder limits for headers and whole files.
    pub limits: Limits,
    /// Largest gradient without a header index that is downloaded whole.
    pub max_full_download: u64,
    /// How long one block may take to arrive.
    pub block_timeout: Duration,
}

impl Default for VerifierConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            max_full_download: DEFAULT_MAX_FULL_DOWNLOAD,
            block_timeout: DEFAULT_BLOCK_TIMEOUT,
        }
    }
}

/// How the values were read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Header, then only the leaves holding the indices.
    RangeRead,
    /// The whole file (no header index).
    FullDownload,
}

/// The result of one verification: what goes into `MsgSubmitVerification`
/// (`cosine_ppm`, `passed`, `vault_commitment`) and what it cost.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The gradient's CID.
    pub gradient: String,
    /// The vault entry used.
    pub entry: String,
    /// sha256 of the entry, hex (the message's `vault_commitment`).
    pub vault_commitment: String,
    /// The gradient's format, when it could be told.
    pub format: Option<&'static str>,
    /// How the values were read.
    pub method: Method,
    /// Number of indices checked.
    pub indices: usize,
    /// Cosine similarity of the masked vector with the vault values, when defined.
    pub cosine: Option<f64>,
    /// The cosine in ppm (0 when undefined).
    pub cosine_ppm: i64,
    /// The entry's threshold.
    pub threshold_ppm: i64,
    /// Whether `cosine_ppm >= threshold_ppm`.
    pub passed: bool,
    /// Why it failed, when it did.
    pub reason: Option<String>,
    /// Size of the gradient file.
    pub file_size: u64,
    /// Bytes of its header (0 for a full download).
    pub header_len: u64,
    /// Blocks fetched from the content store.
    pub blocks_fetched: u64,
    /// Bytes of those blocks (DAG nodes included).
    pub bytes_fetched: u64,
    /// Bytes read from the cache instead.
    pub bytes_from_cache: u64,
}

impl Report {
    /// `bytes_fetched / file_size`.
    pub fn fetched_ratio(&self) -> f64 {
        if self.file_size == 0 {
            0.0
        } else {
            self.bytes_fetched as f64 / self.file_size as f64
        }
    }
}

/// Verifies gradients against vault entries through a content store and a cache.
#[derive(Clone)]
pub struct Verifier {
    store: Arc<dyn ContentStore>,
    cache: VerifyCache,
    config: VerifierConfig,
}

/// What the blocking part found.
struct Read {
    format: Option<Format>,
    method: Method,
    file_size: u64,
    header_len: u64,
    /// The miner's values at the indices, or why there are none.
    values: std::result::Result<Vec<f64>, String>,
}

impl Verifier {
    /// A verifier over `store`, sharing `cache` with any clone.
    pub fn new(store: Arc<dyn ContentStore>, cache: VerifyCache, config: VerifierConfig) -> Self {
        Self {
            store,
            cache,
            config,
        }
    }

    /// The cache (and its counters).
    pub fn cache(&self) -> &VerifyCache {
        &self.cache
    }

    /// Checks the gradient under `gradient` against `entry`.
    pub async fn verify(&self, gradient: &Cid, entry: &VaultEntry) -> Result<Report> {
        entry.validate()?;
        let fetcher = Arc::new(Fetcher {
            store: self.store.clone(),
            cache: self.cache.clone(),
            handle: tokio::runtime::Handle::current(),
            timeout: self.config.block_timeout,
            tally: Tally::default(),
        });
        let (task_fetcher, cid, task_entry, config) =
            (fetcher.clone(), *gradient, entry.clone(), self.config);
        let cache = self.cache.clone();
        let read = tokio::task::spawn_blocking(move || {
            read_values(&task_fetcher, &cache, &cid, &task_entry, &config)
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))??;
        let (cosine, reason) = match read.values {
            Ok(values) => match cosine(&values, &entry.values) {
                Some(c) => (Some(c), None),
                None => (
                    None,
                    Some(
                        "the cosine is undefined: the masked values are all zero or not finite"
                            .into(),
                    ),
                ),
            },
            Err(reason) => (None, Some(reason)),
        };
        let cosine_ppm = cosine.map_or(0, to_ppm);
        let passed = cosine.is_some() && cosine_ppm >= entry.threshold_ppm;
        let reason = reason.or_else(|| {
            (!passed).then(|| {
                format!(
                    "cosine {cosine_ppm} ppm is below the threshold {} ppm",
                    entry.threshold_ppm
                )
            })
        });
        self.cache.count_verification(passed);
        let tally = &fetcher.tally;
        Ok(Report {
            gradient: gradient.to_string(),
            entry: entry.id.clone(),
            vault_commitment: hex::encode(entry.commitment()),
            format: read.format.map(Format::name),
            method: read.method,
            indices: entry.indices.len(),
            cosine,
            cosine_ppm,
            threshold_ppm: entry.threshold_ppm,
            passed,
            reason,
            file_size: read.file_size,
            header_len: read.header_len,
            blocks_fetched: tally.blocks_fetched.load(Ordering::Relaxed),
            bytes_fetched: tally.bytes_fetched.load(Ordering::Relaxed),
            bytes_from_cache: tally.bytes_from_cache.load(Ordering::Relaxed),
        })
    }
}

/// Reads `len` bytes at `offset` of the file under `cid`.
fn read_range(fetcher: &Fetcher, cid: &Cid, offset: u64, len: u64) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0).min(1 << 20));
    RangeReader::new(fetcher)
        .read(cid, offset, Some(len), &mut out)
        .map_err(|e| Error::content(*cid, e))?;
    Ok(out)
}

fn read_values(
    fetcher: &Fetcher,
    cache: &VerifyCache,
    cid: &Cid,
    entry: &VaultEntry,
    config: &VerifierConfig,
) -> Result<Read> {
    let file_size = RangeReader::new(fetcher)
        .file_size(cid)
        .map_err(|e| Error::content(*cid, e))?;
    let index = match cache.header(cid) {
        Some(index) => index,
        None => {
            let prefix = read_range(fetcher, cid, 0, HEADER_PROBE.min(file_size))?;
            let format = match r3mes_tensor::detect(&prefix) {
                Ok(format) => format,
                Err(e) => return Ok(unreadable(None, file_size, e)),
            };
            if !format.is_range_readable() {
                return full_download(fetcher, cid, entry, config, format, file_size);
            }
            match build_index(fetcher, cid, format, prefix, file_size, &config.limits)? {
                Ok(index) => {
                    let index = Arc::new(index);
                    cache.put_header(*cid, index.clone());
                    index
                }
                Err(e) => return Ok(unreadable(Some(format), file_size, e)),
            }
        }
    };
    let mut read = Read {
        format: Some(index.format()),
        method: Method::RangeRead,
        file_size,
        header_len: index.header_len(),
        values: Err(String::new()),
    };
    if index.elements() != entry.elements {
        read.values = Err(length_mismatch(index.elements(), entry.elements));
        return Ok(read);
    }
    let order = entry.flat_order();
    let ranges = index
        .byte_ranges(&entry.indices, order)
        .map_err(|e| Error::gradient(format!("gradient {cid}"), e))?;
    let mut fetched: Vec<(Range<u64>, Vec<u8>)> = Vec::with_capacity(ranges.len());
    for range in ranges {
        let bytes = read_range(fetcher, cid, range.start, range.end - range.start)?;
        fetched.push((range, bytes));
    }
    read.values = index
        .read_values(&entry.indices, order, |range| {
            Ok(fetched
                .iter()
                .find(|(r, _)| *r == range)
                .map(|(_, b)| b.clone())
                .unwrap_or_default())
        })
        .map_err(|e| format!("unreadable gradient: {e}"));
    Ok(read)
}

/// The header index, reading more of the file while the parser asks for it;
/// the inner error is the miner's (a bad header), the outer one the store's.
fn build_index(
    fetcher: &Fetcher,
    cid: &Cid,
    format: Format,
    mut prefix: Vec<u8>,
    file_size: u64,
    limits: &Limits,
) -> Result<std::result::Result<GradientIndex, r3mes_tensor::Error>> {
    loop {
        match GradientIndex::from_prefix_as(Some(format), &prefix, file_size, limits) {
            Err(e) => return Ok(Err(e)),
            Ok(IndexOrNeedMore::Index(index)) => return Ok(Ok(*index)),
            Ok(IndexOrNeedMore::NeedMore(n)) => {
                let have = prefix.len() as u64;
                // The parser asks for at most the file; a header past the limit is refused.
                if n <= have || n > limits.max_header_bytes.saturating_add(HEADER_PROBE) {
                    return Ok(Err(r3mes_tensor::Error::Limit {
                        what: "header bytes",
                        limit: limits.max_header_bytes,
                    }));
                }
                prefix.extend(read_range(fetcher, cid, have, n - have)?);
            }
        }
    }
}

fn full_download(
    fetcher: &Fetcher,
    cid: &Cid,
    entry: &VaultEntry,
    config: &VerifierConfig,
    format: Format,
    file_size: u64,
) -> Result<Read> {
    if file_size > config.max_full_download {
        return Err(Error::TooLarge {
            gradient: Box::new(*cid),
            format: format.name(),
            size: file_size,
            limit: config.max_full_download,
        });
    }
    let bytes = read_range(fetcher, cid, 0, file_size)?;
    let values = match r3mes_tensor::decode(&bytes, Some(format), &config.limits) {
        Err(e) => Err(format!("unreadable gradient: {e}")),
        Ok(gradient) if gradient.elements() != entry.elements => {
            Err(length_mismatch(gradient.elements(), entry.elements))
        }
        Ok(gradient) => flatten::values_at(&gradient, entry.flat_order(), &entry.indices)
            .map_err(|e| format!("unreadable gradient: {e}")),
    };
    Ok(Read {
        format: Some(format),
        method: Method::FullDownload,
        file_size,
        header_len: 0,
        values,
    })
}

/// A gradient whose first bytes or header the tensor crate refuses.
fn unreadable(format: Option<Format>, file_size: u64, error: r3mes_tensor::Error) -> Read {
    Read {
        format,
        method: Method::RangeRead,
        file_size,
        header_len: 0,
        values: Err(format!("unreadable gradient: {error}")),
    }
}

fn length_mismatch(got: u64, want: u64) -> String {
    format!("the gradient has {got} elements, the vault's reference has {want}")
}
