//! [`Layout`]: what the header of a range-readable file (r3mes protobuf,
//! safetensors) says — metadata, and per tensor its name, dtype, shape and
//! byte range — checked once, shared by the whole-file decoders and by
//! [`super::GradientIndex`], which is built from the header bytes alone.

use std::collections::HashSet;

use crate::{DType, Error, Format, Gradient, Limits, Metadata, Result, Tensor, element_count};

/// One tensor of a [`Layout`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Name, unique in the file.
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Shape; empty for a scalar.
    pub shape: Vec<u64>,
    /// Offset of the first byte, relative to the start of the data section.
    pub offset: u64,
    /// Byte length, `elements * dtype.size()`.
    pub len: u64,
    /// Number of elements.
    pub elements: u64,
}

impl Entry {
    /// An entry, checking that `len` is what `shape` and `dtype` need.
    pub(crate) fn new(
        name: String,
        dtype: DType,
        shape: Vec<u64>,
        offset: u64,
        len: u64,
    ) -> Result<Self> {
        let Some(elements) = element_count(&shape) else {
            return Err(Error::Shape {
                name,
                detail: format!("shape {shape:?} overflows"),
            });
        };
        match elements.checked_mul(dtype.size() as u64) {
            Some(bytes) if bytes == len => Ok(Self {
                name,
                dtype,
                shape,
                offset,
                len,
                elements,
            }),
            Some(bytes) => Err(Error::Shape {
                name,
                detail: format!(
                    "shape {shape:?} of {} needs {bytes} bytes, the header says {len}",
                    dtype.name()
                ),
            }),
            None => Err(Error::Shape {
                name,
                detail: format!("shape {shape:?} of {} overflows in bytes", dtype.name()),
            }),
        }
    }

    /// One past the last byte, relative to the data section (checked in [`Layout::validate`]).
    pub(crate) fn end(&self) -> u64 {
        self.offset.saturating_add(self.len)
    }
}

/// A checked header: where every tensor's bytes are.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Layout {
    /// Protobuf or safetensors.
    pub format: Format,
    /// The file's metadata.
    pub metadata: Metadata,
    /// Tensors in file order.
    pub tensors: Vec<Entry>,
    /// Absolute offset of the data section (the number of header bytes).
    pub data_start: u64,
    /// Length of the data section; the file is `data_start + data_len` bytes.
    pub data_len: u64,
}

/// How tensors must sit in the data section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Packing {
    /// Any place inside the section, without overlap (r3mes protobuf: gaps are alignment).
    NoOverlap,
    /// In file order, back to back from offset 0 to the end of the section (safetensors).
    Contiguous,
}

impl Layout {
    /// Checks the rules every reader relies on: unique names, byte ranges
    /// inside the data section (no overflow), packing, and the limits on
    /// tensor count, total elements and header size.
    pub(crate) fn validate(&self, limits: &Limits, packing: Packing) -> Result<()> {
        let format = self.format.name();
        Limits::check(
            "tensors in one file",
            self.tensors.len() as u64,
            limits.max_tensors,
        )?;
        Limits::check("header bytes", self.data_start, limits.max_header_bytes)?;
        if self.data_start.checked_add(self.data_len).is_none() {
            return Err(Error::malformed(format, "data section length overflows"));
        }
        let mut names = HashSet::with_capacity(self.tensors.len());
        let mut elements = 0u64;
        for entry in &self.tensors {
            if !names.insert(entry.name.as_str()) {
                return Err(Error::DuplicateTensor(entry.name.clone()));
            }
            match entry.offset.checked_add(entry.len) {
                Some(end) if end <= self.data_len => {}
                _ => {
                    return Err(Error::malformed(
                        format,
                        format!(
                            "tensor {:?} claims bytes {}+{} of a data section of {} bytes",
                            entry.name, entry.offset, entry.len, self.data_len
                        ),
                    ));
                }
            }
            elements = elements.saturating_add(entry.elements);
        }
        Limits::check("total elements", elements, limits.max_elements)?;
        match packing {
            Packing::Contiguous => {
                let mut next = 0u64;
                for entry in &self.tensors {
                    if entry.offset != next {
                        return Err(Error::malformed(
                            format,
                            format!(
                                "tensor {:?} starts at data byte {} where {} was expected (tensors must be contiguous, in offset order)",
                                entry.name, entry.offset, next
                            ),
                        ));
                    }
                    next = entry.end();
                }
                if next != self.data_len {
                    return Err(Error::malformed(
                        format,
                        format!(
                            "tensors end at data byte {next} but the data section has {} bytes",
                            self.data_len
                        ),
                    ));
                }
            }
            Packing::NoOverlap => {
                let mut spans: Vec<&Entry> = self.tensors.iter().filter(|e| e.len > 0).collect();
                spans.sort_by_key(|e| (e.offset, e.end()));
                for pair in spans.windows(2) {
                    if let [a, b] = pair
                        && b.offset < a.end()
                    {
                        return Err(Error::malformed(
                            format,
                            format!(
                                "tensors {:?} (bytes {}..{}) and {:?} (bytes {}..{}) overlap",
                                a.name,
                                a.offset,
                                a.end(),
                                b.name,
                                b.offset,
                                b.end()
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Copies the tensors out of the whole file `file` (validated layout, `file.len() == file_len()`).
    pub(crate) fn into_gradient(self, file: &[u8]) -> Result<Gradient> {
        let format = self.format;
        let mut tensors = Vec::with_capacity(self.tensors.len());
        for entry in self.tensors {
            let bytes = self
                .data_start
                .checked_add(entry.offset)
                .and_then(|start| Some(start..start.checked_add(entry.len)?))
                .and_then(|r| {
                    file.get(usize::try_from(r.start).ok()?..usize::try_from(r.end).ok()?)
                })
                .ok_or_else(|| {
                    Error::truncated(
                        format.name(),
                        format!("tensor {:?} runs past the end of the file", entry.name),
                    )
                })?;
            tensors.push(Tensor {
                name: entry.name,
                dtype: entry.dtype,
                shape: entry.shape,
                data: bytes.to_vec(),
            });
        }
        Gradient::new(format, self.metadata, tensors)
    }
}

/// Checks what a writer relies on and [`Gradient`]'s public fields do not
/// guarantee: unique names, and data lengths that match shape and dtype.
pub(crate) fn check_tensors(gradient: &Gradient) -> Result<()> {
    let mut names = HashSet::with_capacity(gradient.tensors.len());
    for tensor in &gradient.tensors {
        if !names.insert(tensor.name.as_str()) {
            return Err(Error::DuplicateTensor(tensor.name.clone()));
        }
        let len = tensor.data.len() as u64;
        let expected =
            element_count(&tensor.shape).and_then(|n| n.checked_mul(tensor.dtype.size() as u64));
        if expected != Some(len) {
            return Err(Error::Shape {
                name: tensor.name.clone(),
                detail: format!(
                    "shape {:?} of {} does not hold {len} bytes",
                    tensor.shape,
                    tensor.dtype.name()
                ),
            });
        }
    }
    Ok(())
}

/// A header parse from a prefix of the file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Parsed {
    /// The header was complete.
    Layout(Layout),
    /// The first `n` bytes of the file are needed (`n` is more than was given
    /// and at most the file length).
    NeedMore(u64),
}

/// Why a prefix parse stopped before the end.
#[derive(Debug)]
pub(crate) enum Stop {
    /// More bytes needed (see [`Parsed::NeedMore`]).
    NeedMore(u64),
    /// The header is bad.
    Error(Error),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Error(e)
    }
}

/// Turns a parse result that may have stopped for more bytes into [`Parsed`].
pub(crate) fn finish(result: std::result::Result<Layout, Stop>) -> Result<Parsed> {
    match result {
        Ok(layout) => Ok(Parsed::Layout(layout)),
        Err(Stop::NeedMore(n)) => Ok(Parsed::NeedMore(n)),
        Err(Stop::Error(e)) => Err(e),
    }
}

/// The first bytes of a file of known length.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Prefix<'a> {
    /// The bytes read so far, from offset 0.
    pub bytes: &'a [u8],
    /// Length of the whole file.
    pub file_len: u64,
    /// Format name for errors.
    pub format: &'static str,
}

impl<'a> Prefix<'a> {
    /// A prefix, refusing one longer than the file.
    pub(crate) fn new(bytes: &'a [u8], file_len: u64, format: &'static str) -> Result<Self> {
        if bytes.len() as u64 > file_len {
            return Err(Error::malformed(
                format,
                format!(
                    "{} prefix bytes given for a file of {file_len} bytes",
                    bytes.len()
                ),
            ));
        }
        Ok(Self {
            bytes,
            file_len,
            format,
        })
    }

    /// Succeeds when the first `end` bytes are here. Otherwise asks for at
    /// least `end` and up to `ask` bytes when the file has them, or fails as
    /// truncated when it does not (`what` names the missing part).
    pub(crate) fn need(
        &self,
        end: u64,
        ask: u64,
        what: impl FnOnce() -> String,
    ) -> std::result::Result<(), Stop> {
        if end <= self.bytes.len() as u64 {
            return Ok(());
        }
        if end > self.file_len {
            return Err(Stop::Error(Error::truncated(
                self.format,
                format!(
                    "{} needs the file's first {end} bytes, the file has {}",
                    what(),
                    self.file_len
                ),
            )));
        }
        Err(Stop::NeedMore(ask.min(self.file_len).max(end)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, offset: u64, elements: u64) -> Entry {
        Entry::new(
            name.into(),
            DType::F32,
            vec![elements],
            offset,
            elements * 4,
        )
        .unwrap()
    }

    fn layout(tensors: Vec<Entry>, data_len: u64) -> Layout {
        Layout {
            format: Format::Protobuf,
            metadata: Metadata::new(),
            tensors,
            data_start: 64,
            data_len,
        }
    }

    #[test]
    fn entries_check_shape_against_length() {
        assert!(Entry::new("a".into(), DType::F16, vec![3, 2], 0, 12).is_ok());
        assert!(matches!(
            Entry::new("a".into(), DType::F16, vec![3, 2], 0, 11),
            Err(Error::Shape { .. })
        ));
        assert!(matches!(
            Entry::new("a".into(), DType::F64, vec![1 << 62], 0, 0),
            Err(Error::Shape { .. })
        ));
        assert!(matches!(
            Entry::new("a".into(), DType::F64, vec![u64::MAX, 2], 0, 0),
            Err(Error::Shape { .. })
        ));
    }

    #[test]
    fn validation_catches_overlap_bounds_duplicates_and_limits() {
        let limits = Limits::default();
        let ok = layout(
            vec![entry("a", 0, 2), entry("b", 64, 1), entry("e", 8, 0)],
            68,
        );
        ok.validate(&limits, Packing::NoOverlap).unwrap();
        assert!(ok.validate(&limits, Packing::Contiguous).is_err());

        let overlap = layout(vec![entry("a", 0, 2), entry("b", 4, 1)], 68);
        assert!(
            overlap
                .validate(&limits, Packing::NoOverlap)
                .unwrap_err()
                .to_string()
                .contains("overlap")
        );
        let past = layout(vec![entry("a", 64, 2)], 68);
        assert!(
            past.validate(&limits, Packing::NoOverlap)
                .unwrap_err()
                .to_string()
                .contains("data section")
        );
        let mut wrap = entry("a", 0, 2);
        wrap.offset = u64::MAX - 2;
        assert!(
            layout(vec![wrap], 68)
                .validate(&limits, Packing::NoOverlap)
                .is_err()
        );
        let dup = layout(vec![entry("a", 0, 1), entry("a", 4, 1)], 8);
        assert!(
            matches!(dup.validate(&limits, Packing::NoOverlap), Err(Error::DuplicateTensor(n)) if n == "a")
        );
        let small = Limits {
            max_elements: 2,
            ..limits
        };
        assert!(matches!(
            ok.validate(&small, Packing::NoOverlap),
            Err(Error::Limit { .. })
        ));
        let contiguous = layout(vec![entry("a", 0, 2), entry("b", 8, 1)], 12);
        contiguous.validate(&limits, Packing::Contiguous).unwrap();
    }

    #[test]
    fn prefixes_ask_for_more_or_report_truncation() {
        let bytes = [0u8; 10];
        let p = Prefix::new(&bytes, 100, "protobuf").unwrap();
        assert!(p.need(10, 10, String::new).is_ok());
        assert!(matches!(
            p.need(20, 50, String::new),
            Err(Stop::NeedMore(50))
        ));
        assert!(matches!(
            p.need(20, 500, String::new),
            Err(Stop::NeedMore(100))
        ));
        assert!(matches!(
            p.need(101, 500, String::new),
            Err(Stop::Error(Error::Truncated { .. }))
        ));
        assert!(Prefix::new(&bytes, 5, "protobuf").is_err());
    }
}
