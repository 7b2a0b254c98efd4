//! Arbitrary and mutated pickle and gzip bytes never panic the legacy reader
//! and never make it allocate much beyond its (small) limits.
//!
//! Memory is measured by a counting global allocator: each thread tracks its
//! own live bytes and peak, so tests running in parallel do not disturb each
//! other. That allocator is the only unsafe code here; it forwards to the
//! system allocator unchanged.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::Path;
use std::sync::OnceLock;

use proptest::prelude::*;
use proptest::sample::Index;
use r3mes_tensor::{Format, Limits, Order, decode, flatten, gzip};

struct Counting;

thread_local! {
    static LIVE: Cell<i64> = const { Cell::new(0) };
    static PEAK: Cell<i64> = const { Cell::new(0) };
}

fn track(delta: i64) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

fn size(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

// SAFETY: every call is forwarded to `System` with the same arguments; the
// counters only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            track(size(layout.size()));
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            track(size(layout.size()));
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        track(-size(layout.size()));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            track(size(new_size) - size(layout.size()));
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns how many bytes above the starting point it held at its peak.
fn peak_bytes(f: impl FnOnce()) -> i64 {
    let start = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(start));
    f();
    PEAK.with(Cell::get) - start
}

fn small_limits() -> Limits {
    Limits {
        max_decompressed_bytes: 4 << 20,
        max_elements: 1 << 18,
        max_depth: 32,
        max_memo_entries: 4096,
        max_string_bytes: 1 << 20,
        max_tensors: 512,
        max_header_bytes: 1 << 20,
    }
}

/// What decoding may hold at once under [`small_limits`]: the gzip output,
/// the interpreter's budget with its vectors' growth slack, and the tensors
/// with their flat copy.
const MEMORY_BOUND: i64 = 48 << 20;

/// Decodes as pickle and as gzip'd pickle, flattening what decodes.
fn decode_all_ways(bytes: &[u8]) {
    let limits = small_limits();
    for format in [Format::Pickle, Format::PickleGzip] {
        let peak = peak_bytes(|| {
            if let Ok(gradient) = decode(bytes, Some(format), &limits) {
                assert!(gradient.elements() <= limits.max_elements);
                assert!(gradient.tensors.len() as u64 <= limits.max_tensors);
                let _ = flatten(&gradient, Order::Canonical);
            }
        });
        assert!(
            peak <= MEMORY_BOUND,
            "{format:?} decoding held {peak} bytes"
        );
    }
}

/// Every fixture file (valid and hostile), plus the pickle inside each gzip'd one.
fn seeds() -> &'static [Vec<u8>] {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pickle");
        let mut seeds = Vec::new();
        for folder in ["numpy1", "numpy2", "hostile"] {
            let entries = std::fs::read_dir(root.join(folder)).expect("fixture folder");
            let mut paths: Vec<_> = entries.map(|e| e.expect("fixture entry").path()).collect();
            paths.sort();
            for path in paths {
                let name = path.to_string_lossy().into_owned();
                if !(name.ends_with(".pkl") || name.ends_with(".pkl.gz"))
                    || name.contains("gzip_bomb")
                {
                    continue;
                }
                let bytes = std::fs::read(&path).expect("fixture bytes");
                if name.ends_with(".gz")
                    && let Ok(raw) = gzip::decompress(&bytes, &Limits::default())
                {
                    seeds.push(raw);
                }
                seeds.push(bytes);
            }
        }
        assert!(seeds.len() > 100, "found {} fixtures", seeds.len());
        seeds
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(Index, u8),
    Set(Index, u8),
    Insert(Index, Vec<u8>),
    Remove(Index, usize),
    Truncate(Index),
    Repeat(Index, usize, u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(i, bit)| Mutation::Flip(i, bit)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<Index>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<Index>(), 1usize..64).prop_map(|(i, n)| Mutation::Remove(i, n)),
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), 1usize..32, 1u8..16)
            .prop_map(|(i, n, times)| Mutation::Repeat(i, n, times)),
    ]
}

fn apply(bytes: &mut Vec<u8>, mutation: &Mutation) {
    if bytes.is_empty() {
        bytes.push(0x80);
    }
    let len = bytes.len();
    match mutation {
        Mutation::Flip(i, bit) => bytes[i.index(len)] ^= 1 << bit,
        Mutation::Set(i, b) => bytes[i.index(len)] = *b,
        Mutation::Insert(i, new) => {
            let at = i.index(len + 1);
            bytes.splice(at..at, new.iter().copied());
        }
        Mutation::Remove(i, n) => {
            let at = i.index(len);
            bytes.drain(at..(at + n).min(len));
        }
        Mutation::Truncate(i) => bytes.truncate(i.index(len)),
        Mutation::Repeat(i, n, times) => {
            let at = i.index(len);
            let slice = bytes[at..(at + n).min(len)].to_vec();
            for _ in 0..*times {
                bytes.splice(at..at, slice.iter().copied());
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        decode_all_ways(&bytes);
    }

    #[test]
    fn arbitrary_opcodes_after_a_header_never_panic(
        proto in 0u8..7,
        body in prop::collection::vec(prop_oneof![any::<u8>(), 0x80u8..0x99, Just(b'('), Just(b'.')], 0..256),
    ) {
        let mut bytes = vec![0x80, proto];
        bytes.extend(body);
        decode_all_ways(&bytes);
    }

    #[test]
    fn mutated_fixtures_never_panic(
        seed in any::<Index>(),
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        let seeds = seeds();
        let mut bytes = seeds[seed.index(seeds.len())].clone();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        decode_all_ways(&bytes);
    }
}

#[test]
fn the_allocation_counter_sees_allocations() {
    let peak = peak_bytes(|| drop(std::hint::black_box(vec![0u8; 1 << 20])));
    assert!(peak >= 1 << 20);
}

#[test]
fn claimed_lengths_fail_before_allocating() {
    // BINBYTES8 claiming 2^60 bytes, and one claiming just under the small limit in a tiny file.
    for n in [1u64 << 60, (1 << 20) - 1] {
        let mut bytes = vec![0x80, 4, 0x8e];
        bytes.extend_from_slice(&n.to_le_bytes());
        bytes.extend_from_slice(b"ab.");
        let peak =
            peak_bytes(|| assert!(decode(&bytes, Some(Format::Pickle), &small_limits()).is_err()));
        assert!(peak < 64 << 10, "held {peak} bytes");
    }
}
