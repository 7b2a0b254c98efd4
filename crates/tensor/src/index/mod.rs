//! [`GradientIndex`]: from the header bytes alone of a range-readable file
//! (r3mes protobuf, safetensors), where every element of the flat vector lies
//! in the file — so a validator fetches only the bytes of the elements it
//! checks (plus the header) instead of the whole gradient.
//!
//! Build it in rounds: read the first [`GradientIndex::MIN_PREFIX`] bytes (or
//! a few KiB, which usually hold the whole header), call
//! [`GradientIndex::from_prefix`], and while it answers
//! [`IndexOrNeedMore::NeedMore`]`(n)` read the first `n` bytes and call again.
//! Flat indices follow [`crate::flatten()`]: [`Order::Canonical`] puts tensors in
//! bytewise name order, [`Order::File`] in file order; elements in C order.
//! Pickle and legacy protobuf files have no such header: asking is an
//! [`Error::Unsupported`] that says to convert them first.

pub(crate) mod layout;

use std::ops::Range;

use crate::{
    DType, Error, Format, Limits, Metadata, Order, Result, detect, protobuf, safetensors_io,
};
use layout::{Layout, Parsed};

/// Where one element lies: `offset..offset + dtype.size()` of the file, little-endian.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// Absolute byte offset in the file.
    pub offset: u64,
    /// Element type.
    pub dtype: DType,
}

impl Location {
    /// The byte range of the element.
    pub fn range(&self) -> Range<u64> {
        self.offset..self.offset.saturating_add(self.dtype.size() as u64)
    }

    /// The element's value from exactly its bytes.
    pub fn value(&self, bytes: &[u8]) -> Result<f64> {
        if bytes.len() != self.dtype.size() {
            return Err(Error::Unsupported(format!(
                "a {} element is {} bytes, {} given",
                self.dtype.name(),
                self.dtype.size(),
                bytes.len()
            )));
        }
        Ok(self.dtype.value_f64(bytes))
    }
}

/// One tensor as the header describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedTensor {
    /// Name.
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Shape; empty for a scalar.
    pub shape: Vec<u64>,
    /// Absolute byte offset of the first element in the file.
    pub offset: u64,
    /// Byte length.
    pub len: u64,
    /// Number of elements.
    pub elements: u64,
}

/// What [`GradientIndex::from_prefix`] made of a prefix.
#[derive(Debug, Clone, PartialEq)]
pub enum IndexOrNeedMore {
    /// The header was complete.
    Index(Box<GradientIndex>),
    /// Call again with at least the first `n` bytes of the file (`n` is more
    /// than was given and at most the file length).
    NeedMore(u64),
}

/// Maps flat indices to byte offsets in a range-readable gradient file.
#[derive(Debug, Clone, PartialEq)]
pub struct GradientIndex {
    format: Format,
    metadata: Metadata,
    /// File order.
    tensors: Vec<IndexedTensor>,
    /// Positions in `tensors`, in bytewise name order.
    canonical: Vec<usize>,
    /// First flat index of each tensor of `tensors` ([`Order::File`]).
    file_starts: Vec<u64>,
    /// First flat index of each tensor of `canonical` ([`Order::Canonical`]).
    canonical_starts: Vec<u64>,
    header_len: u64,
    file_len: u64,
    elements: u64,
}

impl GradientIndex {
    /// Fewest bytes worth reading first: enough to tell the format and the
    /// header's length. A prefix shorter than this (unless it is the whole
    /// file) gets a [`IndexOrNeedMore::NeedMore`].
    pub const MIN_PREFIX: u64 = 64;

    /// Builds the index from the first bytes of a file of `file_len` bytes,
    /// detecting the format, or says how many bytes it needs.
    pub fn from_prefix(prefix: &[u8], file_len: u64, limits: &Limits) -> Result<IndexOrNeedMore> {
        Self::from_prefix_as(None, prefix, file_len, limits)
    }

    /// [`GradientIndex::from_prefix`] for a format known beforehand (`None` detects it).
    pub fn from_prefix_as(
        format: Option<Format>,
        prefix: &[u8],
        file_len: u64,
        limits: &Limits,
    ) -> Result<IndexOrNeedMore> {
        let first = Self::MIN_PREFIX.min(file_len);
        if (prefix.len() as u64) < first {
            return Ok(IndexOrNeedMore::NeedMore(first));
        }
        let format = match format {
            Some(f) => f,
            None => detect(prefix)?,
        };
        let parsed = match format {
            Format::Protobuf => protobuf::parse_prefix(prefix, file_len, limits)?,
            Format::Safetensors => safetensors_io::parse_prefix(prefix, file_len, limits)?,
            Format::Pickle | Format::PickleGzip => {
                return Err(Error::Unsupported(format!(
                    "{} gradients have no index: their arrays sit among pickle opcodes (compressed, for gzip), so no \
                     header tells where an element lies; convert the file to protobuf or safetensors first \
                     (r3mes gradient convert IN OUT --to protobuf)",
                    format.name()
                )));
            }
            Format::LegacyProtobuf => {
                return Err(Error::Unsupported(
                    "legacy-protobuf gradients have no index: their floats are packed inside each tensor message, \
                     after no header; convert the file to protobuf or safetensors first \
                     (r3mes gradient convert IN OUT --to protobuf)"
                        .into(),
                ));
            }
        };
        Ok(match parsed {
            Parsed::Layout(layout) => IndexOrNeedMore::Index(Box::new(Self::from_layout(layout))),
            Parsed::NeedMore(n) => IndexOrNeedMore::NeedMore(n),
        })
    }

    /// The index of a whole file held in memory.
    pub fn from_bytes(file: &[u8], limits: &Limits) -> Result<Self> {
        match Self::from_prefix(file, file.len() as u64, limits)? {
            IndexOrNeedMore::Index(index) => Ok(*index),
            IndexOrNeedMore::NeedMore(n) => Err(Error::truncated(
                "gradient",
                format!("the header needs {n} bytes, the file has {}", file.len()),
            )),
        }
    }

    fn from_layout(layout: Layout) -> Self {
        let data_start = layout.data_start;
        let tensors: Vec<IndexedTensor> = layout
            .tensors
            .into_iter()
            .map(|e| IndexedTensor {
                offset: data_start.saturating_add(e.offset),
                len: e.len,
                elements: e.elements,
                name: e.name,
                dtype: e.dtype,
                shape: e.shape,
            })
            .collect();
        let mut canonical: Vec<usize> = (0..tensors.len()).collect();
        canonical.sort_by(|&a, &b| tensors[a].name.as_bytes().cmp(tensors[b].name.as_bytes()));
        let starts = |order: &mut dyn Iterator<Item = &IndexedTensor>| {
            let mut total = 0u64;
            order
                .map(|t| {
                    let start = total;
                    total = total.saturating_add(t.elements);
                    start
                })
                .collect::<Vec<u64>>()
        };
        let file_starts = starts(&mut tensors.iter());
        let canonical_starts = starts(&mut canonical.iter().map(|&i| &tensors[i]));
        let elements = tensors
            .iter()
            .map(|t| t.elements)
            .fold(0u64, u64::saturating_add);
        Self {
            format: layout.format,
            metadata: layout.metadata,
            tensors,
            canonical,
            file_starts,
            canonical_starts,
            header_len: data_start,
            file_len: data_start.saturating_add(layout.data_len),
            elements,
        }
    }

    /// The file's format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The file's metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Tensors in file order.
    pub fn tensors(&self) -> &[IndexedTensor] {
        &self.tensors
    }

    /// Bytes before the tensor data: what had to be read to build the index.
    pub fn header_len(&self) -> u64 {
        self.header_len
    }

    /// Length of the whole file according to its header.
    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    /// Number of elements of the flat vector.
    pub fn elements(&self) -> u64 {
        self.elements
    }

    /// Where flat element `index` lies.
    pub fn locate(&self, index: u64, order: Order) -> Result<Location> {
        if index >= self.elements {
            return Err(Error::IndexOutOfRange {
                index,
                len: self.elements,
            });
        }
        let starts = match order {
            Order::File => &self.file_starts,
            Order::Canonical => &self.canonical_starts,
        };
        // The last tensor starting at or before `index` holds it (empty tensors share a start).
        let slot = starts.partition_point(|s| *s <= index).saturating_sub(1);
        let position = match order {
            Order::File => Some(slot),
            Order::Canonical => self.canonical.get(slot).copied(),
        };
        match (position.and_then(|p| self.tensors.get(p)), starts.get(slot)) {
            (Some(t), Some(start)) => {
                let offset = (index - start)
                    .checked_mul(t.dtype.size() as u64)
                    .and_then(|o| o.checked_add(t.offset))
                    .ok_or(Error::IndexOutOfRange {
                        index,
                        len: self.elements,
                    })?;
                Ok(Location {
                    offset,
                    dtype: t.dtype,
                })
            }
            _ => Err(Error::IndexOutOfRange {
                index,
                len: self.elements,
            }),
        }
    }

    /// The byte ranges holding the elements at `indices`: sorted, with
    /// overlapping or touching ranges merged.
    pub fn byte_ranges(&self, indices: &[u64], order: Order) -> Result<Vec<Range<u64>>> {
        let mut ranges = indices
            .iter()
            .map(|&i| Ok(self.locate(i, order)?.range()))
            .collect::<Result<Vec<_>>>()?;
        ranges.sort_by_key(|r| (r.start, r.end));
        let mut merged: Vec<Range<u64>> = Vec::with_capacity(ranges.len());
        for r in ranges {
            match merged.last_mut() {
                Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
                _ => merged.push(r),
            }
        }
        Ok(merged)
    }

    /// The values at `indices` (in that order), reading the file only through
    /// `fetch`, which returns the bytes of a range of the file; it is called
    /// once per range of [`GradientIndex::byte_ranges`].
    pub fn read_values(
        &self,
        indices: &[u64],
        order: Order,
        mut fetch: impl FnMut(Range<u64>) -> Result<Vec<u8>>,
    ) -> Result<Vec<f64>> {
        let mut fetched = Vec::new();
        for range in self.byte_ranges(indices, order)? {
            let bytes = fetch(range.clone())?;
            if bytes.len() as u64 != range.end - range.start {
                return Err(Error::truncated(
                    self.format.name(),
                    format!(
                        "bytes {}..{} came back as {} bytes",
                        range.start,
                        range.end,
                        bytes.len()
                    ),
                ));
            }
            fetched.push((range, bytes));
        }
        indices
            .iter()
            .map(|&index| {
                let location = self.locate(index, order)?;
                let slot = fetched.partition_point(|(r, _)| r.end <= location.offset);
                let bytes = fetched.get(slot).and_then(|(r, b)| {
                    let start = usize::try_from(location.offset.checked_sub(r.start)?).ok()?;
                    b.get(start..start.checked_add(location.dtype.size())?)
                });
                location.value(bytes.ok_or(Error::IndexOutOfRange {
                    index,
                    len: self.elements,
                })?)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Gradient, Tensor, flatten};

    fn sample() -> Gradient {
        let tensors = vec![
            Tensor::from_f32("z", &[1.0, 2.0, 3.0]),
            Tensor::new("empty", DType::F16, vec![0], vec![]).unwrap(),
            Tensor::new("a", DType::I16, vec![2, 1], vec![0xff, 0xff, 7, 0]).unwrap(),
            Tensor::new("m", DType::F64, vec![], (-0.0f64).to_le_bytes().to_vec()).unwrap(),
        ];
        Gradient::new(Format::Protobuf, Metadata::new(), tensors).unwrap()
    }

    #[test]
    fn every_element_is_located_in_both_formats_and_orders() {
        let g = sample();
        for format in [Format::Protobuf, Format::Safetensors] {
            let bytes = crate::encode(&g, format).unwrap();
            let index = GradientIndex::from_bytes(&bytes, &Limits::default()).unwrap();
            assert_eq!(index.format(), format);
            assert_eq!(index.file_len(), bytes.len() as u64);
            let decoded = crate::decode(&bytes, None, &Limits::default()).unwrap();
            for order in [Order::Canonical, Order::File] {
                let flat = flatten(&decoded, order);
                assert_eq!(index.elements(), flat.len() as u64);
                for (i, want) in flat.iter().enumerate() {
                    let loc = index.locate(i as u64, order).unwrap();
                    let r = loc.range();
                    let got = loc.value(&bytes[r.start as usize..r.end as usize]).unwrap();
                    assert_eq!(got.to_bits(), want.to_bits(), "{format:?} {order:?} {i}");
                }
                assert!(matches!(
                    index.locate(flat.len() as u64, order),
                    Err(Error::IndexOutOfRange { .. })
                ));
                let all: Vec<u64> = (0..flat.len() as u64).rev().collect();
                let values = index
                    .read_values(&all, order, |r| {
                        Ok(bytes[r.start as usize..r.end as usize].to_vec())
                    })
                    .unwrap();
                let expected: Vec<f64> = all.iter().map(|&i| flat[i as usize]).collect();
                assert_eq!(
                    values.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    expected.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
                );
            }
        }
    }

    #[test]
    fn asks_for_more_until_the_header_is_complete() {
        let bytes = crate::encode(&sample(), Format::Protobuf).unwrap();
        let len = bytes.len() as u64;
        let mut have = 0u64;
        let mut rounds = 0;
        let index = loop {
            rounds += 1;
            match GradientIndex::from_prefix(&bytes[..have as usize], len, &Limits::default())
                .unwrap()
            {
                IndexOrNeedMore::Index(index) => break index,
                IndexOrNeedMore::NeedMore(n) => {
                    assert!(n > have && n <= len);
                    have = n;
                }
            }
        };
        assert!(rounds <= 4, "{rounds} rounds");
        assert!(have <= index.header_len() + 22);
    }

    #[test]
    fn legacy_formats_have_no_index() {
        let limits = Limits::default();
        for head in [
            &[0x1f, 0x8b, 8, 0][..],
            &[0x80, 4, 0x95, 0][..],
            &[0x0a, 0x02, 0x0a, 0x00][..],
        ] {
            let err = GradientIndex::from_prefix(head, head.len() as u64, &limits).unwrap_err();
            assert!(
                matches!(&err, Error::Unsupported(m) if m.contains("no index") && m.contains("convert")),
                "{err}"
            );
        }
    }

    #[test]
    fn ranges_merge_neighbours() {
        let bytes = crate::encode(&sample(), Format::Safetensors).unwrap();
        let index = GradientIndex::from_bytes(&bytes, &Limits::default()).unwrap();
        let ranges = index.byte_ranges(&[0, 1, 1, 5], Order::File).unwrap();
        assert_eq!(ranges.len(), 2, "{ranges:?}");
        assert_eq!(ranges[0].end - ranges[0].start, 8 + 4);
    }
}
