//! The verification cache: fetched blocks (gradient slices, the header's
//! leaf, DAG nodes) by block CID and parsed headers by gradient CID, each
//! kept for a TTL (1 hour by default), plus counters and a usage snapshot
//! a node exports as metrics. Blocks are immutable and content-addressed, so a cached block is
//! as good as a fetched one; it was verified against its CID when fetched.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use moka::sync::Cache;
use r3mes_ipfs::Cid;
use r3mes_tensor::GradientIndex;

/// A block's bytes, shared between the cache and its readers.
pub(crate) type Bytes = Arc<[u8]>;

/// Default time to live of cached entries (the seed's 1 hour).
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);
/// Default bound on cached block bytes.
pub const DEFAULT_MAX_BYTES: u64 = 256 << 20;
/// Most parsed headers kept.
const MAX_HEADERS: u64 = 4096;
/// Longest TTL honoured (moka refuses more than 1000 years).
const MAX_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Cache configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// How long an entry lives after it was inserted.
    pub ttl: Duration,
    /// Most block bytes held.
    pub max_bytes: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            ttl: DEFAULT_TTL,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// Counters since the cache was made (monotonic, for Prometheus counters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Block or header lookups answered from the cache.
    pub hits: u64,
    /// Lookups that had to go to the content store.
    pub misses: u64,
    /// Blocks fetched from the content store.
    pub blocks_fetched: u64,
    /// Bytes of those blocks.
    pub bytes_fetched: u64,
    /// Bytes answered from the cache instead.
    pub bytes_from_cache: u64,
    /// Verifications run (passed or failed).
    pub verifications: u64,
    /// Verifications that failed the threshold.
    pub failed: u64,
}

impl CacheStats {
    /// The counters in Prometheus' text format, names prefixed with `prefix`
    /// (such as `r3mes_verify`).
    pub fn to_prometheus(&self, prefix: &str) -> String {
        let rows = [
            ("cache_hits_total", "Verification cache hits.", self.hits),
            (
                "cache_misses_total",
                "Verification cache misses.",
                self.misses,
            ),
            (
                "blocks_fetched_total",
                "Blocks fetched for verification.",
                self.blocks_fetched,
            ),
            (
                "bytes_fetched_total",
                "Bytes fetched for verification.",
                self.bytes_fetched,
            ),
            (
                "bytes_from_cache_total",
                "Bytes answered from the verification cache.",
                self.bytes_from_cache,
            ),
            (
                "verifications_total",
                "Tolerant verifications run.",
                self.verifications,
            ),
            (
                "verifications_failed_total",
                "Tolerant verifications failed.",
                self.failed,
            ),
        ];
        let mut out = String::new();
        for (name, help, value) in rows {
            out.push_str(&format!(
                "# HELP {prefix}_{name} {help}\n# TYPE {prefix}_{name} counter\n{prefix}_{name} {value}\n"
            ));
        }
        out
    }
}

/// What a cache holds at one moment (gauges, unlike [`CacheStats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheUsage {
    /// Blocks cached.
    pub blocks: u64,
    /// Parsed gradient headers cached.
    pub headers: u64,
    /// Bytes of the cached blocks.
    pub block_bytes: u64,
}

impl CacheUsage {
    /// The gauges in Prometheus' text format, names prefixed with `prefix`
    /// (such as `r3mes_verify`): entries by kind and cached block bytes.
    pub fn to_prometheus(&self, prefix: &str) -> String {
        format!(
            "# HELP {prefix}_cache_entries Entries in the verification cache by kind.\n\
             # TYPE {prefix}_cache_entries gauge\n\
             {prefix}_cache_entries{{kind=\"block\"}} {}\n\
             {prefix}_cache_entries{{kind=\"header\"}} {}\n\
             # HELP {prefix}_cache_bytes Bytes of the blocks in the verification cache.\n\
             # TYPE {prefix}_cache_bytes gauge\n\
             {prefix}_cache_bytes {}\n",
            self.blocks, self.headers, self.block_bytes
        )
    }
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    blocks_fetched: AtomicU64,
    bytes_fetched: AtomicU64,
    bytes_from_cache: AtomicU64,
    verifications: AtomicU64,
    failed: AtomicU64,
}

/// Blocks and parsed headers, shared by every verification of a validator.
/// Cheap to clone (the clones share everything).
#[derive(Clone)]
pub struct VerifyCache {
    blocks: Cache<Cid, Bytes>,
    headers: Cache<Cid, Arc<GradientIndex>>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for VerifyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyCache")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Default for VerifyCache {
    fn default() -> Self {
        Self::new(CacheConfig::default())
    }
}

impl VerifyCache {
    /// An empty cache (a TTL over 100 years counts as 100 years).
    pub fn new(config: CacheConfig) -> Self {
        let ttl = config.ttl.min(MAX_TTL);
        let blocks = Cache::builder()
            .max_capacity(config.max_bytes)
            .weigher(|_: &Cid, block: &Bytes| u32::try_from(block.len()).unwrap_or(u32::MAX))
            .time_to_live(ttl)
            .build();
        let headers = Cache::builder()
            .max_capacity(MAX_HEADERS)
            .time_to_live(ttl)
            .build();
        Self {
            blocks,
            headers,
            counters: Arc::default(),
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> CacheStats {
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CacheStats {
            hits: load(&c.hits),
            misses: load(&c.misses),
            blocks_fetched: load(&c.blocks_fetched),
            bytes_fetched: load(&c.bytes_fetched),
            bytes_from_cache: load(&c.bytes_from_cache),
            verifications: load(&c.verifications),
            failed: load(&c.failed),
        }
    }

    /// What the cache holds now. Pending expirations and evictions are
    /// applied first, so expired entries are not counted.
    pub fn usage(&self) -> CacheUsage {
        self.blocks.run_pending_tasks();
        self.headers.run_pending_tasks();
        CacheUsage {
            blocks: self.blocks.entry_count(),
            headers: self.headers.entry_count(),
            block_bytes: self.blocks.weighted_size(),
        }
    }

    /// Drops every entry (counters stay).
    pub fn clear(&self) {
        self.blocks.invalidate_all();
        self.headers.invalidate_all();
    }

    pub(crate) fn block(&self, cid: &Cid) -> Option<Bytes> {
        let found = self.blocks.get(cid);
        match &found {
            Some(block) => {
                self.counters.hits.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .bytes_from_cache
                    .fetch_add(block.len() as u64, Ordering::Relaxed);
            }
            None => {
                self.counters.misses.fetch_add(1, Ordering::Relaxed);
            }
        }
        found
    }

    pub(crate) fn put_block(&self, cid: Cid, block: Bytes) {
        self.counters.blocks_fetched.fetch_add(1, Ordering::Relaxed);
        self.counters
            .bytes_fetched
            .fetch_add(block.len() as u64, Ordering::Relaxed);
        self.blocks.insert(cid, block);
    }

    pub(crate) fn header(&self, cid: &Cid) -> Option<Arc<GradientIndex>> {
        let found = self.headers.get(cid);
        let counter = if found.is_some() {
            &self.counters.hits
        } else {
            &self.counters.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    pub(crate) fn put_header(&self, cid: Cid, index: Arc<GradientIndex>) {
        self.headers.insert(cid, index);
    }

    pub(crate) fn count_verification(&self, passed: bool) {
        self.counters.verifications.fetch_add(1, Ordering::Relaxed);
        if !passed {
            self.counters.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cid(data: &[u8]) -> Cid {
        r3mes_ipfs::cids::raw_cid(r3mes_ipfs::cids::sha256_multihash(data))
    }

    #[test]
    fn counts_hits_misses_and_bytes() {
        let cache = VerifyCache::default();
        let a = cid(b"a");
        assert!(cache.block(&a).is_none());
        cache.put_block(a, Arc::from(&b"abc"[..]));
        assert_eq!(cache.block(&a).as_deref(), Some(&b"abc"[..]));
        let s = cache.stats();
        assert_eq!(
            (
                s.hits,
                s.misses,
                s.blocks_fetched,
                s.bytes_fetched,
                s.bytes_from_cache
            ),
            (1, 1, 1, 3, 3)
        );
        let text = s.to_prometheus("r3mes_verify");
        assert!(text.contains("r3mes_verify_cache_hits_total 1\n"));
        assert!(text.contains("# TYPE r3mes_verify_bytes_fetched_total counter\n"));
        let usage = cache.usage();
        assert_eq!(
            usage,
            CacheUsage {
                blocks: 1,
                headers: 0,
                block_bytes: 3
            }
        );
        let gauges = usage.to_prometheus("r3mes_verify");
        assert!(gauges.contains("r3mes_verify_cache_entries{kind=\"block\"} 1\n"));
        assert!(
            gauges.contains("# TYPE r3mes_verify_cache_bytes gauge\nr3mes_verify_cache_bytes 3\n")
        );
        cache.clear();
        assert!(cache.block(&a).is_none());
        assert_eq!(cache.usage(), CacheUsage::default());
    }

    #[test]
    fn entries_expire_after_the_ttl() {
        let cache = VerifyCache::new(CacheConfig {
            ttl: Duration::from_millis(50),
            ..CacheConfig::default()
        });
        let a = cid(b"a");
        cache.put_block(a, Arc::from(&b"abc"[..]));
        assert!(cache.block(&a).is_some());
        std::thread::sleep(Duration::from_millis(120));
        assert!(cache.block(&a).is_none());
        let forever = VerifyCache::new(CacheConfig {
            ttl: Duration::MAX,
            ..CacheConfig::default()
        });
        forever.put_block(a, Arc::from(&b"abc"[..]));
        assert!(forever.block(&a).is_some());
    }
}
