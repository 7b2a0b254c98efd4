//! [`GradientIndex`] on a 64 MiB LoRA gradient: built from a few KiB of
//! header read in rounds, it locates random elements whose bytes equal the
//! flattened values bit for bit, and reading values touches only the header
//! and the elements' own bytes.

use std::cell::Cell;
use std::ops::Range;

use r3mes_tensor::index::IndexOrNeedMore;
use r3mes_tensor::{
    DType, Error, Format, Gradient, GradientIndex, Limits, Metadata, Order, Tensor, flatten,
    metadata_keys,
};

/// Deterministic pseudo-random numbers (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

const LAYERS: usize = 32;
const RANK: u64 = 16;
const DIM: u64 = 16384;

/// 32 LoRA layers of rank 16 on a 16384-wide model: 64 MiB of f32 (random
/// bits, NaNs included), tensors in an order that is not the canonical one.
fn big_gradient() -> Gradient {
    let mut rng = Rng(7);
    let mut tensors = Vec::with_capacity(LAYERS * 3);
    for layer in (0..LAYERS).rev() {
        let name = format!("model.layers.{layer}.self_attn.q_proj");
        let a = rng.bytes((RANK * DIM * 4) as usize);
        let b = rng.bytes((DIM * RANK * 4) as usize);
        tensors.push(
            Tensor::new(format!("{name}.grad_b"), DType::F32, vec![DIM, RANK], b)
                .expect("valid tensor"),
        );
        tensors.push(
            Tensor::new(format!("{name}.grad_a"), DType::F32, vec![RANK, DIM], a)
                .expect("valid tensor"),
        );
        tensors.push(
            Tensor::new(
                format!("{name}.grad_alpha"),
                DType::F32,
                vec![],
                rng.bytes(4),
            )
            .expect("valid tensor"),
        );
    }
    let metadata = Metadata::from([
        (
            metadata_keys::MINER_ID.to_string(),
            "remes1qy352euf40x77qfrg4ncn27dauqjx3t83x4ummcpydzk0zdtehhse25p5t".to_string(),
        ),
        (metadata_keys::BACKBONE_HASH.to_string(), "ab".repeat(32)),
        (metadata_keys::WINDOW_ID.to_string(), "123456".to_string()),
        (metadata_keys::DATA_SHARD_ID.to_string(), "42".to_string()),
        (
            metadata_keys::TIMESTAMP.to_string(),
            "1700000000".to_string(),
        ),
    ]);
    Gradient::new(Format::Protobuf, metadata, tensors).expect("unique names")
}

/// Builds the index the way a range reader does, counting the bytes it reads.
fn index_by_rounds(file: &[u8], read: &Cell<u64>) -> (GradientIndex, usize) {
    let mut have = GradientIndex::MIN_PREFIX as usize;
    let mut rounds = 0;
    loop {
        rounds += 1;
        let prefix = &file[..have.min(file.len())];
        read.set(prefix.len() as u64);
        match GradientIndex::from_prefix(prefix, file.len() as u64, &Limits::default())
            .expect("valid header")
        {
            IndexOrNeedMore::Index(index) => return (*index, rounds),
            IndexOrNeedMore::NeedMore(n) => {
                assert!(n as usize > prefix.len() && n as usize <= file.len());
                have = n as usize;
            }
        }
    }
}

fn slice(file: &[u8], r: Range<u64>) -> &[u8] {
    &file[r.start as usize..r.end as usize]
}

#[test]
fn sixty_four_mib_gradient_is_indexed_from_a_few_kib() {
    let g = big_gradient();
    assert_eq!(g.tensor_bytes(), 64 * 1024 * 1024 + 4 * LAYERS as u64);
    let canonical = flatten(&g, Order::Canonical);
    for format in [Format::Protobuf, Format::Safetensors] {
        let file = r3mes_tensor::encode(&g, format).unwrap();
        // File order is the writer's: the gradient's for protobuf, dtype then name for safetensors.
        let file_order = flatten(
            &r3mes_tensor::decode(&file, None, &Limits::default()).unwrap(),
            Order::File,
        );
        let header_read = Cell::new(0);
        let (index, rounds) = index_by_rounds(&file, &header_read);
        eprintln!(
            "{}: {} byte file, header {} bytes, read {} bytes in {rounds} rounds",
            format.name(),
            file.len(),
            index.header_len(),
            header_read.get()
        );
        assert_eq!(index.format(), format);
        assert_eq!(index.file_len(), file.len() as u64);
        assert_eq!(index.metadata(), &g.metadata);
        assert_eq!(index.elements(), canonical.len() as u64);
        // The JSON of safetensors is about twice as long as the protobuf header.
        let few_kib = if format == Format::Protobuf {
            8 * 1024
        } else {
            16 * 1024
        };
        assert!(
            index.header_len() < few_kib,
            "header of {} bytes",
            index.header_len()
        );
        assert!(header_read.get() <= index.header_len() + 64);
        assert!(rounds <= 3);

        let mut rng = Rng(format as u64 + 1);
        for (order, flat) in [(Order::Canonical, &canonical), (Order::File, &file_order)] {
            let mut indices: Vec<u64> = (0..1000).map(|_| rng.next() % flat.len() as u64).collect();
            indices.extend([0, flat.len() as u64 - 1]);
            for &i in &indices {
                let loc = index.locate(i, order).unwrap();
                assert_eq!(loc.dtype, DType::F32);
                let value = loc.value(slice(&file, loc.range())).unwrap();
                assert_eq!(
                    value.to_bits(),
                    flat[i as usize].to_bits(),
                    "{format:?} {order:?} index {i}"
                );
            }
            // Reading values touches only the elements' bytes.
            let fetched = Cell::new(0u64);
            let values = index
                .read_values(&indices, order, |r| {
                    fetched.set(fetched.get() + (r.end - r.start));
                    assert!(r.start >= index.header_len());
                    Ok(slice(&file, r).to_vec())
                })
                .unwrap();
            assert!(fetched.get() <= 4 * indices.len() as u64);
            for (v, &i) in values.iter().zip(&indices) {
                assert_eq!(v.to_bits(), flat[i as usize].to_bits());
            }
            let total = header_read.get() + fetched.get();
            assert!(
                total * 100 < file.len() as u64,
                "read {total} of {} bytes",
                file.len()
            );
            assert!(matches!(
                index.locate(flat.len() as u64, order),
                Err(Error::IndexOutOfRange { .. })
            ));
        }
    }
}

#[test]
fn the_two_formats_agree_on_canonical_values() {
    let mut rng = Rng(99);
    let mut tensors = Vec::new();
    for (i, dtype) in DType::ALL.into_iter().enumerate() {
        let n = 1 + (rng.next() % 50) as usize;
        let mut data = rng.bytes(n * dtype.size());
        if dtype == DType::Bool {
            data.iter_mut().for_each(|b| *b &= 1);
        }
        tensors.push(
            Tensor::new(format!("{:02}", 13 - i), dtype, vec![n as u64], data)
                .expect("valid tensor"),
        );
    }
    let g = Gradient::new(Format::Protobuf, Metadata::new(), tensors).unwrap();
    let pb = r3mes_tensor::encode(&g, Format::Protobuf).unwrap();
    let st = r3mes_tensor::encode(&g, Format::Safetensors).unwrap();
    let pi = GradientIndex::from_bytes(&pb, &Limits::default()).unwrap();
    let si = GradientIndex::from_bytes(&st, &Limits::default()).unwrap();
    let flat = flatten(&g, Order::Canonical);
    for i in 0..flat.len() as u64 {
        let (a, b) = (
            pi.locate(i, Order::Canonical).unwrap(),
            si.locate(i, Order::Canonical).unwrap(),
        );
        assert_eq!(a.dtype, b.dtype);
        assert_eq!(slice(&pb, a.range()), slice(&st, b.range()));
        assert_eq!(
            a.value(slice(&pb, a.range())).unwrap().to_bits(),
            flat[i as usize].to_bits()
        );
    }
}

#[test]
fn short_and_bad_prefixes() {
    let g = Gradient::new(
        Format::Protobuf,
        Metadata::new(),
        vec![Tensor::from_f32("x", &[1.0; 100])],
    )
    .unwrap();
    for format in [Format::Protobuf, Format::Safetensors] {
        let file = r3mes_tensor::encode(&g, format).unwrap();
        let len = file.len() as u64;
        // Every prefix either needs more (never more than the file) or completes.
        for cut in 0..=file.len() {
            match GradientIndex::from_prefix(&file[..cut], len, &Limits::default()).unwrap() {
                IndexOrNeedMore::NeedMore(n) => assert!(n > cut as u64 && n <= len),
                IndexOrNeedMore::Index(index) => assert!(index.header_len() <= cut as u64),
            }
        }
        // A prefix longer than the file is refused, and so is a file shorter than its header says.
        assert!(GradientIndex::from_prefix(&file, len - 1, &Limits::default()).is_err());
        assert!(GradientIndex::from_bytes(&file[..file.len() - 1], &Limits::default()).is_err());
    }
    // Pickles have no index, and the error says what to do.
    let pickle = [0x80u8, 4, 0x95, 0, 0, 0, 0, 0, 0, 0, 0, b'N', b'.'];
    let err = GradientIndex::from_bytes(&pickle, &Limits::default()).unwrap_err();
    assert!(
        matches!(&err, Error::Unsupported(m) if m.contains("no index") && m.contains("convert")),
        "{err}"
    );
    let gz = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
    let err = GradientIndex::from_bytes(&gz, &Limits::default()).unwrap_err();
    assert!(
        err.to_string()
            .contains("pickle+gzip gradients have no index"),
        "{err}"
    );
}
