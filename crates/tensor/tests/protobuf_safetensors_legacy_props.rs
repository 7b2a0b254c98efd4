//! Property tests for every decoder of this crate's range-readable and legacy
//! protobuf formats (r3mes protobuf, safetensors, legacy `GradientPackage`,
//! and `GradientIndex::from_prefix`): arbitrary bytes, mutated valid files and
//! random headers never panic, and with small limits never allocate more than
//! a small bound. A counting global allocator measures the peak of live bytes
//! on the decoding thread.
#![allow(unsafe_code)] // The counting allocator wraps `System`; nothing else is unsafe.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use proptest::prelude::*;
use prost::Message;
use r3mes_tensor::index::IndexOrNeedMore;
use r3mes_tensor::{
    DType, Format, Gradient, GradientIndex, Limits, Metadata, Order, Tensor, flatten, legacy,
    protobuf, safetensors_io,
};

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn grew(bytes: usize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get().saturating_add(bytes);
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

fn shrank(bytes: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(bytes)));
}

/// `System`, counting live bytes per thread.
struct Counting;

// SAFETY: every call forwards to `System` with the caller's arguments unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        // SAFETY: forwarded as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        // SAFETY: forwarded as is.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        shrank(layout.size());
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        shrank(layout.size());
        grew(new_size);
        // SAFETY: forwarded as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns the most bytes it had allocated at once on this thread.
fn peak_of(f: impl FnOnce()) -> usize {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    f();
    PEAK.with(Cell::get).saturating_sub(base)
}

/// Small limits: inputs here are at most a few KiB.
fn limits() -> Limits {
    Limits {
        max_decompressed_bytes: 1 << 20,
        max_elements: 1 << 16,
        max_depth: 16,
        max_memo_entries: 1024,
        max_string_bytes: 4096,
        max_tensors: 64,
        max_header_bytes: 4096,
    }
}

/// Most bytes any decoder here may hold at once for an input of at most 4 KiB.
const ALLOCATION_BOUND: usize = 1 << 20;

/// Feeds `bytes` to every decoder, checks the bound, and checks that whatever
/// decodes is self-consistent.
fn exercise(bytes: &[u8]) {
    let limits = limits();
    let len = bytes.len() as u64;
    let mut outcomes = Vec::new();
    let peak = peak_of(|| {
        outcomes.push(protobuf::decode(bytes, &limits));
        outcomes.push(safetensors_io::decode(bytes, &limits));
        outcomes.push(legacy::decode(bytes, &limits));
    });
    assert!(
        peak <= ALLOCATION_BOUND,
        "decoders allocated {peak} bytes for {} input bytes",
        bytes.len()
    );
    for gradient in outcomes.into_iter().flatten() {
        let _ = flatten(&gradient, Order::Canonical);
    }
    for cut in [bytes.len(), bytes.len() / 2, 64.min(bytes.len())] {
        let mut result = None;
        let peak =
            peak_of(|| result = Some(GradientIndex::from_prefix(&bytes[..cut], len, &limits)));
        assert!(peak <= ALLOCATION_BOUND, "index allocated {peak} bytes");
        match result {
            Some(Ok(IndexOrNeedMore::NeedMore(n))) => {
                assert!(n > cut as u64 && n <= len, "asked {n} at {cut}")
            }
            Some(Ok(IndexOrNeedMore::Index(index))) => check_index(&index, bytes),
            _ => {}
        }
    }
}

/// An index that builds must point inside the file and agree with the decoder.
fn check_index(index: &GradientIndex, bytes: &[u8]) {
    let Ok(gradient) = r3mes_tensor::decode(bytes, Some(index.format()), &limits()) else {
        // The index only needs the header; the whole file may still be bad (e.g. cut short).
        return;
    };
    let flat = flatten(&gradient, Order::Canonical);
    assert_eq!(index.elements(), flat.len() as u64);
    for (i, want) in flat.iter().enumerate() {
        let loc = index.locate(i as u64, Order::Canonical).expect("in range");
        let r = loc.range();
        let got = loc
            .value(&bytes[r.start as usize..r.end as usize])
            .expect("element bytes");
        assert_eq!(got.to_bits(), want.to_bits());
    }
}

/// Valid files of each format to mutate.
fn seeds() -> Vec<Vec<u8>> {
    let tensors = vec![
        Tensor::from_f32("b.grad_a", &[1.0, -2.0, 3.0, 4.5]),
        Tensor::new("a.grad_b", DType::F16, vec![2, 1], vec![0, 0x3c, 0, 0xc0])
            .expect("valid tensor"),
        Tensor::new(
            "c.grad_alpha",
            DType::F64,
            vec![],
            0.25f64.to_le_bytes().to_vec(),
        )
        .expect("valid tensor"),
    ];
    let metadata = Metadata::from([
        ("miner_id".to_string(), "m".to_string()),
        ("k".to_string(), "v".to_string()),
    ]);
    let g = Gradient::new(Format::Protobuf, metadata, tensors).expect("unique names");
    let package = legacy::proto::GradientPackage {
        gradients: vec![legacy::proto::GradientTensor {
            data: vec![1.0, 2.0, 3.0],
            shape: vec![3],
            dtype: "torch.float32".into(),
            name: "w".into(),
        }],
        metadata: [("a".to_string(), "b".to_string())].into(),
        training_round_id: 3,
        miner_address: "m".into(),
        gradient_hash: "h".into(),
        timestamp: 9,
    };
    vec![
        protobuf::encode(&g).expect("encodes"),
        safetensors_io::encode(&g).expect("encodes"),
        package.encode_to_vec(),
    ]
}

/// One edit of a byte string.
#[derive(Debug, Clone)]
enum Edit {
    Set(u16, u8),
    Insert(u16, u8),
    Remove(u16),
    Truncate(u16),
    Fill(u16, u8),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<u16>(), any::<u8>()).prop_map(|(p, b)| Edit::Set(p, b)),
        (any::<u16>(), any::<u8>()).prop_map(|(p, b)| Edit::Insert(p, b)),
        any::<u16>().prop_map(Edit::Remove),
        any::<u16>().prop_map(Edit::Truncate),
        (
            any::<u16>(),
            prop_oneof![Just(0u8), Just(0x7f), Just(0x80), Just(0xff)]
        )
            .prop_map(|(p, b)| Edit::Fill(p, b)),
    ]
}

fn apply(bytes: &mut Vec<u8>, edit: &Edit) {
    let at = |p: u16, len: usize| if len == 0 { 0 } else { p as usize % len };
    match *edit {
        Edit::Set(p, b) if !bytes.is_empty() => {
            let i = at(p, bytes.len());
            bytes[i] = b;
        }
        Edit::Insert(p, b) => {
            let i = at(p, bytes.len() + 1);
            bytes.insert(i, b);
        }
        Edit::Remove(p) if !bytes.is_empty() => {
            let i = at(p, bytes.len());
            bytes.remove(i);
        }
        Edit::Truncate(p) => {
            let i = at(p, bytes.len() + 1);
            bytes.truncate(i);
        }
        Edit::Fill(p, b) if !bytes.is_empty() => {
            let i = at(p, bytes.len());
            let end = (i + 10).min(bytes.len());
            bytes[i..end].fill(b);
        }
        _ => {}
    }
}

/// A tensor table entry: often consistent (length = shape x dtype), otherwise
/// with values around the edges.
fn info() -> impl Strategy<Value = protobuf::proto::TensorInfo> {
    let consistent = (
        prop_oneof![Just("a"), Just("b"), Just("c"), Just("d")],
        prop::sample::select(DType::ALL.to_vec()),
        proptest::collection::vec(0..4u64, 0..3),
        0..120u64,
    )
        .prop_map(|(name, dtype, shape, offset)| protobuf::proto::TensorInfo {
            name: name.into(),
            dtype: dtype.name().into(),
            length: shape.iter().product::<u64>() * dtype.size() as u64,
            shape,
            offset,
        });
    prop_oneof![3 => consistent, 1 => edgy_info()]
}

/// A tensor table entry with values around the edges.
fn edgy_info() -> impl Strategy<Value = protobuf::proto::TensorInfo> {
    let dtype = prop_oneof![
        Just("f32"),
        Just("f16"),
        Just("bf16"),
        Just("f64"),
        Just("u8"),
        Just("bool"),
        Just("x")
    ];
    let number = prop_oneof![0..40u64, Just(u64::MAX), Just(1 << 62), any::<u64>()];
    (
        prop_oneof![Just("a"), Just("b"), Just("c"), Just("")],
        dtype,
        proptest::collection::vec(prop_oneof![0..6u64, Just(u64::MAX)], 0..4),
        number.clone(),
        number,
    )
        .prop_map(
            |(name, dtype, shape, offset, length)| protobuf::proto::TensorInfo {
                name: name.into(),
                dtype: dtype.into(),
                shape,
                offset,
                length,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        exercise(&bytes);
    }

    #[test]
    fn arbitrary_bytes_behind_a_magic(which in 0..3usize, tail in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut bytes = match which {
            0 => b"\x0a\x11r3mes.gradient.v1".to_vec(),
            1 => ((tail.len() as u64) / 2).to_le_bytes().to_vec(),
            _ => vec![0x0a],
        };
        bytes.extend_from_slice(&tail);
        exercise(&bytes);
    }

    #[test]
    fn mutated_valid_files(which in 0..3usize, edits in proptest::collection::vec(edit(), 1..6)) {
        let mut bytes = seeds().swap_remove(which);
        for e in &edits {
            apply(&mut bytes, e);
        }
        exercise(&bytes);
    }

    #[test]
    fn random_headers(
        tensors in proptest::collection::vec(info(), 0..5),
        data in proptest::collection::vec(any::<u8>(), 0..160),
        padding in proptest::collection::vec(Just(0u8), 0..3),
    ) {
        let header = protobuf::proto::Header { tensors, ..Default::default() };
        let file = protobuf::proto::GradientFile {
            magic: "r3mes.gradient.v1".into(),
            header: Some(header),
            padding,
            data,
        };
        let bytes = file.encode_to_vec();
        exercise(&bytes);
        // Whatever decodes re-encodes to a file with the same canonical vector.
        if let Ok(g) = protobuf::decode(&bytes, &limits()) {
            let again = protobuf::decode(&protobuf::encode(&g).expect("encodes"), &limits()).expect("decodes");
            let a: Vec<u64> = flatten(&g, Order::Canonical).iter().map(|v| v.to_bits()).collect();
            let b: Vec<u64> = flatten(&again, Order::Canonical).iter().map(|v| v.to_bits()).collect();
            prop_assert_eq!(a, b);
        }
    }
}

#[test]
fn the_allocator_counts() {
    let peak = peak_of(|| drop(std::hint::black_box(vec![0u8; 3 << 20])));
    assert!(peak >= 3 << 20);
    assert!(peak > ALLOCATION_BOUND);
}
