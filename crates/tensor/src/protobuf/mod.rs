//! r3mes' range-readable protobuf format, `r3mes.gradient.v1`
//! (`proto/r3mes/gradient/v1/gradient.proto` documents it for other writers).
//!
//! A file is one `GradientFile` message: field 1 the magic string
//! `r3mes.gradient.v1` (the file's first 19 bytes), field 2 a small `Header`
//! (the `LoRAGradientUpdate` metadata; per tensor name, dtype, shape, byte
//! offset and length), optional field 14 zero padding, and last field 15 the
//! raw little-endian tensor bytes. Offsets count from the first data byte, so
//! the header bytes alone locate every element. This writer aligns the data
//! section and every tensor to 64 bytes and writes tensors in the gradient's
//! order; the reader does not require alignment but refuses overlaps, ranges
//! outside the data, unknown dtypes, duplicate names, a trailing byte after
//! the data, a missing header, and headers over [`Limits::max_header_bytes`].

pub(crate) mod wire;

/// Types generated from `gradient.proto` (prost), for writers and tests that
/// want to build or inspect the messages themselves.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/r3mes.gradient.v1.rs"));
}

use std::io::Write;

use prost::Message;

use crate::detect::PROTOBUF_MAGIC;
use crate::index::layout::{Entry, Layout, Packing, Parsed, Prefix, Stop, check_tensors, finish};
use crate::{DType, Error, Format, Gradient, Limits, Metadata, Result, metadata_keys};
use wire::{MAX_VARINT_LEN, Varint};

/// Name in errors.
const NAME: &str = "protobuf";
/// Field number of the header.
const FIELD_HEADER: u32 = 2;
/// Field number of the alignment padding.
const FIELD_PADDING: u32 = 14;
/// Field number of the tensor bytes (last).
const FIELD_DATA: u32 = 15;
/// Tag byte of the padding field (14, length-delimited).
const TAG_PADDING: u8 = 0x72;
/// Tag byte of the data field (15, length-delimited).
const TAG_DATA: u8 = 0x7a;
/// Tag byte of the header field (2, length-delimited).
const TAG_HEADER: u8 = 0x12;
/// Bytes a tag plus a length varint may take.
const FIELD_HEAD_MAX: u64 = 1 + MAX_VARINT_LEN as u64;

/// Alignment, in bytes, of the data section and of every tensor in files this module writes.
pub const ALIGNMENT: u64 = 64;

/// Most dimensions a tensor may have (numpy's limit), checked before a header is decoded.
pub const MAX_DIMS: u64 = 64;

/// Decodes a whole `r3mes.gradient.v1` file: tensors in header order.
pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Gradient> {
    match parse_prefix(bytes, bytes.len() as u64, limits)? {
        Parsed::Layout(layout) => layout.into_gradient(bytes),
        Parsed::NeedMore(n) => Err(Error::truncated(
            NAME,
            format!("the header needs {n} bytes"),
        )),
    }
}

/// Encodes a gradient as `r3mes.gradient.v1` (tensors in the gradient's order).
pub fn encode(gradient: &Gradient) -> Result<Vec<u8>> {
    let plan = Plan::new(gradient)?;
    let total = usize::try_from(plan.file_len()).map_err(|_| {
        Error::Unsupported(format!(
            "a {} byte file does not fit in memory here",
            plan.file_len()
        ))
    })?;
    let mut out = Vec::with_capacity(total);
    plan.write(gradient, &mut out)?;
    Ok(out)
}

/// Writes a gradient as `r3mes.gradient.v1` to `out`, streaming the tensor
/// bytes (no copy of the data is made).
pub fn write_to(gradient: &Gradient, out: &mut impl Write) -> Result<()> {
    Plan::new(gradient)?.write(gradient, out)
}

/// Parses the header from the first bytes of a file of `file_len` bytes.
pub(crate) fn parse_prefix(prefix: &[u8], file_len: u64, limits: &Limits) -> Result<Parsed> {
    finish(parse(Prefix::new(prefix, file_len, NAME)?, limits))
}

/// Reads a varint of the prefix, asking for more bytes when it is cut.
fn read_varint(p: &Prefix<'_>, pos: usize, what: &str) -> std::result::Result<(u64, usize), Stop> {
    match wire::varint(p.bytes, pos) {
        Varint::Value(v, next) => Ok((v, next)),
        Varint::Overlong => Err(Error::malformed(
            NAME,
            format!("{what} at byte {pos} is not a valid varint"),
        )
        .into()),
        Varint::Short => {
            let have = p.bytes.len() as u64;
            p.need(have + 1, pos as u64 + FIELD_HEAD_MAX * 2, || {
                format!("{what} at byte {pos}")
            })?;
            Err(Error::truncated(NAME, format!("{what} at byte {pos}")).into())
        }
    }
}

fn parse(p: Prefix<'_>, limits: &Limits) -> std::result::Result<Layout, Stop> {
    let magic_len = PROTOBUF_MAGIC.len() as u64;
    p.need(magic_len, 64, || "the magic".to_string())?;
    if !p.bytes.starts_with(PROTOBUF_MAGIC) {
        return Err(Error::UnknownFormat(
            "not an r3mes.gradient.v1 file: it does not start with field 1 = \"r3mes.gradient.v1\""
                .into(),
        )
        .into());
    }
    let mut pos = PROTOBUF_MAGIC.len();
    let mut last_field = 1;
    let mut header = None;
    let (data_start, data_len) = loop {
        if pos as u64 == p.file_len {
            if header.is_none() {
                return Err(
                    Error::truncated(NAME, "the file ends before the header (field 2)").into(),
                );
            }
            // A proto3 writer omits an empty data field.
            break (pos as u64, 0);
        }
        let (tag, body) = read_varint(&p, pos, "a field tag")?;
        let (field, wire_type) = wire::split_tag(tag).ok_or_else(|| {
            Error::malformed(NAME, format!("invalid field tag {tag} at byte {pos}"))
        })?;
        if wire_type != wire::LEN
            || field <= last_field
            || !matches!(field, FIELD_HEADER | FIELD_PADDING | FIELD_DATA)
        {
            return Err(Error::malformed(
                NAME,
                format!(
                    "unexpected field {field} (wire type {wire_type}) at byte {pos}: after the magic come the header (2), \
                     optional padding (14) and the data (15), in that order, each once, all length-delimited"
                ),
            )
            .into());
        }
        let (len, body) = read_varint(&p, body, "a field length")?;
        let end = (body as u64).checked_add(len).ok_or_else(|| {
            Error::malformed(
                NAME,
                format!("field {field} at byte {pos} claims {len} bytes, past any file"),
            )
        })?;
        if field == FIELD_DATA {
            if header.is_none() {
                return Err(Error::malformed(
                    NAME,
                    "the data field comes without a header (field 2)",
                )
                .into());
            }
            Limits::check("header bytes", body as u64, limits.max_header_bytes)?;
            if end > p.file_len {
                return Err(Error::truncated(
                    NAME,
                    format!("the data field of {len} bytes at byte {body} runs past the end of the file ({} bytes)", p.file_len),
                )
                .into());
            }
            if end < p.file_len {
                return Err(Error::malformed(
                    NAME,
                    format!(
                        "{} bytes follow the data field, which must be last",
                        p.file_len - end
                    ),
                )
                .into());
            }
            break (body as u64, len);
        }
        Limits::check("header bytes", end, limits.max_header_bytes)?;
        p.need(end, end + 2 * FIELD_HEAD_MAX, || {
            format!("field {field} ({len} bytes at byte {body})")
        })?;
        if field == FIELD_HEADER {
            // `need` succeeded, so `end` is within the prefix.
            let bytes = p
                .bytes
                .get(body..end as usize)
                .ok_or_else(|| Error::truncated(NAME, format!("the header ends at byte {end}")))?;
            header = Some(decode_header(bytes, limits)?);
        }
        pos = end as usize;
        last_field = field;
    };
    let header = header.ok_or_else(|| Error::malformed(NAME, "the header (field 2) is missing"))?;
    Ok(layout_from(header, data_start, data_len, limits)?)
}

/// Decodes the header message after checking, without allocating, the counts
/// that would make its decoded form large: tensors and dimensions per tensor.
fn decode_header(bytes: &[u8], limits: &Limits) -> Result<proto::Header> {
    let bad = |detail: String| Error::malformed(NAME, format!("header: {detail}"));
    let mut tensors = 0u64;
    for field in wire::Fields::new(bytes) {
        let field = field.map_err(bad)?;
        if field.number == 7 && field.wire_type == wire::LEN {
            tensors += 1;
            Limits::check("tensors in one file", tensors, limits.max_tensors)?;
            let mut dims = 0u64;
            for inner in wire::Fields::new(field.payload) {
                let inner = inner.map_err(|e| bad(format!("tensor entry {tensors}: {e}")))?;
                if inner.number == 3 {
                    dims += match inner.wire_type {
                        // Packed: one varint ends at each byte without the high bit.
                        wire::LEN => inner.payload.iter().filter(|b| **b < 0x80).count() as u64,
                        _ => 1,
                    };
                }
            }
            Limits::check("dimensions of one tensor", dims, MAX_DIMS)?;
        }
    }
    proto::Header::decode(bytes).map_err(|e| bad(e.to_string()))
}

/// The metadata keys the header holds in typed fields.
const TYPED_KEYS: [&str; 5] = [
    metadata_keys::MINER_ID,
    metadata_keys::DATA_SHARD_ID,
    metadata_keys::BACKBONE_HASH,
    metadata_keys::WINDOW_ID,
    metadata_keys::TIMESTAMP,
];

fn layout_from(
    header: proto::Header,
    data_start: u64,
    data_len: u64,
    limits: &Limits,
) -> Result<Layout> {
    Limits::check(
        "tensors in one file",
        header.tensors.len() as u64,
        limits.max_tensors,
    )?;
    let mut metadata = header.metadata;
    let typed = [
        header.miner_id,
        header.data_shard_id.map(|v| v.to_string()),
        header.backbone_hash,
        header.window_id.map(|v| v.to_string()),
        header.timestamp.map(|v| v.to_string()),
    ];
    for (key, value) in TYPED_KEYS.into_iter().zip(typed) {
        if let Some(value) = value
            && metadata.insert(key.to_string(), value).is_some()
        {
            return Err(Error::malformed(
                NAME,
                format!(
                    "metadata key {key:?} is both a header field and an entry of the metadata map"
                ),
            ));
        }
    }
    let mut tensors = Vec::with_capacity(header.tensors.len());
    for info in header.tensors {
        let dtype = DType::from_name(&info.dtype)?;
        tensors.push(Entry::new(
            info.name,
            dtype,
            info.shape,
            info.offset,
            info.length,
        )?);
    }
    let layout = Layout {
        format: Format::Protobuf,
        metadata,
        tensors,
        data_start,
        data_len,
    };
    layout.validate(limits, Packing::NoOverlap)?;
    Ok(layout)
}

/// Moves the [`TYPED_KEYS`] whose values the typed fields reproduce exactly
/// into `header`; everything else stays in the map.
fn split_metadata(metadata: &Metadata, header: &mut proto::Header) {
    fn exact<T: std::str::FromStr + ToString>(text: &str) -> Option<T> {
        text.parse::<T>().ok().filter(|v| v.to_string() == text)
    }
    for (key, value) in metadata {
        let taken = match key.as_str() {
            metadata_keys::MINER_ID => {
                header.miner_id = Some(value.clone());
                true
            }
            metadata_keys::BACKBONE_HASH => {
                header.backbone_hash = Some(value.clone());
                true
            }
            metadata_keys::DATA_SHARD_ID => {
                header.data_shard_id = exact(value);
                header.data_shard_id.is_some()
            }
            metadata_keys::WINDOW_ID => {
                header.window_id = exact(value);
                header.window_id.is_some()
            }
            metadata_keys::TIMESTAMP => {
                header.timestamp = exact(value);
                header.timestamp.is_some()
            }
            _ => false,
        };
        if !taken {
            header.metadata.insert(key.clone(), value.clone());
        }
    }
}

/// Everything before the tensor bytes, and where each tensor goes.
struct Plan {
    /// Magic, header field, padding field, data tag and length.
    head: Vec<u8>,
    /// Offset of each tensor (gradient order), relative to the data section.
    offsets: Vec<u64>,
    /// Length of the data section.
    data_len: u64,
}

impl Plan {
    fn new(gradient: &Gradient) -> Result<Self> {
        check_tensors(gradient)?;
        let mut header = proto::Header::default();
        split_metadata(&gradient.metadata, &mut header);
        let mut offsets = Vec::with_capacity(gradient.tensors.len());
        let mut next = 0u64;
        let overflow = || Error::Unsupported("the gradient's data exceeds 2^64 bytes".into());
        for tensor in &gradient.tensors {
            let len = tensor.data.len() as u64;
            let offset = next
                .checked_next_multiple_of(ALIGNMENT)
                .ok_or_else(overflow)?;
            next = offset.checked_add(len).ok_or_else(overflow)?;
            offsets.push(offset);
            header.tensors.push(proto::TensorInfo {
                name: tensor.name.clone(),
                dtype: tensor.dtype.name().to_string(),
                shape: tensor.shape.clone(),
                offset,
                length: len,
            });
        }
        let data_len = next;
        let header = header.encode_to_vec();
        let mut head = Vec::with_capacity(
            PROTOBUF_MAGIC.len() + header.len() + 2 * FIELD_HEAD_MAX as usize + 64,
        );
        head.extend_from_slice(PROTOBUF_MAGIC);
        head.push(TAG_HEADER);
        wire::put_varint(&mut head, header.len() as u64);
        head.extend_from_slice(&header);
        // Pad so that the data section starts on an ALIGNMENT boundary. The
        // padding field takes 2 + p bytes (p < 128): any gap but 1, which
        // becomes 1 + ALIGNMENT.
        let data_field_head = 1 + wire::varint_len(data_len) as u64;
        let gap = (ALIGNMENT - (head.len() as u64 + data_field_head) % ALIGNMENT) % ALIGNMENT;
        let padding = match gap {
            0 => None,
            1 => Some(ALIGNMENT - 1),
            g => Some(g - 2),
        };
        if let Some(p) = padding {
            head.push(TAG_PADDING);
            wire::put_varint(&mut head, p);
            head.resize(head.len() + p as usize, 0);
        }
        head.push(TAG_DATA);
        wire::put_varint(&mut head, data_len);
        Ok(Self {
            head,
            offsets,
            data_len,
        })
    }

    fn file_len(&self) -> u64 {
        self.head.len() as u64 + self.data_len
    }

    fn write(&self, gradient: &Gradient, out: &mut impl Write) -> Result<()> {
        const ZEROS: [u8; ALIGNMENT as usize] = [0; ALIGNMENT as usize];
        let io = |e| Error::io("writing a protobuf gradient", e);
        out.write_all(&self.head).map_err(io)?;
        let mut at = 0u64;
        for (tensor, &offset) in gradient.tensors.iter().zip(&self.offsets) {
            // Gaps are shorter than ALIGNMENT by construction.
            let gap = usize::try_from(offset - at).unwrap_or(0).min(ZEROS.len());
            out.write_all(&ZEROS[..gap]).map_err(io)?;
            out.write_all(&tensor.data).map_err(io)?;
            at = offset + tensor.data.len() as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Tensor;

    fn sample() -> Gradient {
        let metadata = Metadata::from([
            (
                metadata_keys::MINER_ID.to_string(),
                "remes1miner".to_string(),
            ),
            (metadata_keys::WINDOW_ID.to_string(), "42".to_string()),
            (metadata_keys::DATA_SHARD_ID.to_string(), "007".to_string()),
            ("note".to_string(), "hello".to_string()),
        ]);
        let tensors = vec![
            Tensor::from_f32("layer.grad_b", &[1.0, -2.0, 3.5]),
            Tensor::new("layer.grad_a", DType::F16, vec![2], vec![0, 0x3c, 0, 0xbc]).unwrap(),
            Tensor::new("empty", DType::F64, vec![0, 3], vec![]).unwrap(),
            Tensor::new(
                "layer.grad_alpha",
                DType::F32,
                vec![],
                0.5f32.to_le_bytes().to_vec(),
            )
            .unwrap(),
        ];
        Gradient::new(Format::Protobuf, metadata, tensors).unwrap()
    }

    #[test]
    fn round_trips_and_aligns() {
        let g = sample();
        let bytes = encode(&g).unwrap();
        assert!(bytes.starts_with(PROTOBUF_MAGIC));
        assert_eq!(decode(&bytes, &Limits::default()).unwrap(), g);
        let Parsed::Layout(layout) =
            parse_prefix(&bytes, bytes.len() as u64, &Limits::default()).unwrap()
        else {
            panic!("whole file must parse");
        };
        assert_eq!(layout.data_start % ALIGNMENT, 0);
        assert!(layout.tensors.iter().all(|t| t.offset % ALIGNMENT == 0));
        let mut streamed = Vec::new();
        write_to(&g, &mut streamed).unwrap();
        assert_eq!(streamed, bytes);
    }

    #[test]
    fn typed_metadata_fields_are_used_only_when_exact() {
        let mut header = proto::Header::default();
        split_metadata(&sample().metadata, &mut header);
        assert_eq!(header.miner_id.as_deref(), Some("remes1miner"));
        assert_eq!(header.window_id, Some(42));
        assert_eq!(header.data_shard_id, None);
        assert_eq!(
            header.metadata.get("data_shard_id").map(String::as_str),
            Some("007")
        );
    }

    #[test]
    fn padding_covers_every_gap() {
        // Grow one name so the header length walks through every residue.
        for n in 0..140 {
            let t = Tensor::from_f32("x".repeat(n), &[1.0]);
            let g = Gradient::new(Format::Protobuf, Metadata::new(), vec![t]).unwrap();
            let bytes = encode(&g).unwrap();
            let Parsed::Layout(layout) =
                parse_prefix(&bytes, bytes.len() as u64, &Limits::default()).unwrap()
            else {
                panic!("whole file must parse");
            };
            assert_eq!(layout.data_start % ALIGNMENT, 0, "name length {n}");
            assert_eq!(decode(&bytes, &Limits::default()).unwrap(), g);
        }
    }

    #[test]
    fn encoder_refuses_inconsistent_tensors() {
        let mut g = sample();
        g.tensors[0].data.pop();
        assert!(matches!(encode(&g), Err(Error::Shape { .. })));
        let mut g = sample();
        let copy = g.tensors[0].clone();
        g.tensors.push(copy);
        assert!(matches!(encode(&g), Err(Error::DuplicateTensor(_))));
    }

    #[test]
    fn trailing_bytes_and_foreign_fields_are_refused() {
        let mut bytes = encode(&sample()).unwrap();
        bytes.push(0);
        assert!(
            decode(&bytes, &Limits::default())
                .unwrap_err()
                .to_string()
                .contains("must be last")
        );
        let mut odd = PROTOBUF_MAGIC.to_vec();
        odd.extend_from_slice(&[0x1a, 0x00]);
        assert!(
            decode(&odd, &Limits::default())
                .unwrap_err()
                .to_string()
                .contains("unexpected field 3")
        );
        assert!(matches!(
            decode(b"\x0a\x11r3mes.gradient.v2", &Limits::default()),
            Err(Error::UnknownFormat(_))
        ));
    }
}
