//! safetensors, read and written by hand with the same rules as the
//! `safetensors` crate (which Python's `safetensors` package also runs).
//!
//! Layout: 8 bytes little-endian `N`, `N` bytes of JSON header, then the data
//! section. The header maps each tensor name to `{"dtype", "shape",
//! "data_offsets": [begin, end]}` (offsets relative to the data section) and
//! may hold `"__metadata__"`, a string-to-string map: the gradient's metadata.
//!
//! Why by hand: the crate reads the header length against its own fixed
//! 100 MB bound instead of [`Limits::max_header_bytes`], lets a repeated name
//! silently replace the first, and writes `__metadata__` from a `HashMap`,
//! so its output bytes change from run to run (a content address must not).
//!
//! Reading checks the header length against the limit before reading the
//! header, then, like the crate, requires the tensors sorted by offset to be
//! back to back from 0 to the end of the file, each `end - begin` equal to
//! shape x dtype size; it also refuses duplicate names and keys, unknown
//! dtypes (`F8_*`, `C64`, ... have no [`DType`]) and more tensors than
//! [`Limits::max_tensors`]. Tensors come out in file order (by offset).
//!
//! Writing follows the crate's layout exactly: tensors sorted by dtype
//! alignment (largest first, the crate's dtype order) then bytewise name,
//! compact JSON with `__metadata__` first (keys sorted; left out when there
//! is no metadata), the header padded with spaces to a multiple of 8 bytes.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, MapAccess, Visitor};

use crate::index::layout::{Entry, Layout, Packing, Parsed, Prefix, Stop, check_tensors, finish};
use crate::{DType, Error, Format, Gradient, Limits, Metadata, Result};

/// Name in errors.
const NAME: &str = "safetensors";
/// Key of the metadata map in the header.
const METADATA_KEY: &str = "__metadata__";
/// Bytes of the header-length prefix.
const N_LEN: u64 = 8;

/// Decodes a whole safetensors file: tensors in file (offset) order.
pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Gradient> {
    match parse_prefix(bytes, bytes.len() as u64, limits)? {
        Parsed::Layout(layout) => {
            let mut gradient = layout.into_gradient(bytes)?;
            gradient.format = Format::Safetensors;
            Ok(gradient)
        }
        Parsed::NeedMore(n) => Err(Error::truncated(
            NAME,
            format!("the header needs {n} bytes"),
        )),
    }
}

/// Encodes a gradient as safetensors (byte for byte what the `safetensors`
/// crate writes for the same tensors and at most one metadata entry).
pub fn encode(gradient: &Gradient) -> Result<Vec<u8>> {
    let (head, order) = plan(gradient)?;
    let total = head.len() as u64 + gradient.tensor_bytes();
    let total = usize::try_from(total).map_err(|_| {
        Error::Unsupported(format!("a {total} byte file does not fit in memory here"))
    })?;
    let mut out = Vec::with_capacity(total);
    write(gradient, &head, &order, &mut out)?;
    Ok(out)
}

/// Writes a gradient as safetensors to `out`, streaming the tensor bytes.
pub fn write_to(gradient: &Gradient, out: &mut impl Write) -> Result<()> {
    let (head, order) = plan(gradient)?;
    write(gradient, &head, &order, out)
}

/// Parses the header from the first bytes of a file of `file_len` bytes.
pub(crate) fn parse_prefix(prefix: &[u8], file_len: u64, limits: &Limits) -> Result<Parsed> {
    finish(parse(Prefix::new(prefix, file_len, NAME)?, limits))
}

fn parse(p: Prefix<'_>, limits: &Limits) -> std::result::Result<Layout, Stop> {
    p.need(N_LEN, 64, || "the header length".to_string())?;
    let mut n = [0u8; N_LEN as usize];
    n.copy_from_slice(
        p.bytes
            .get(..N_LEN as usize)
            .unwrap_or(&[0; N_LEN as usize]),
    );
    let n = u64::from_le_bytes(n);
    let header_end = N_LEN
        .checked_add(n)
        .ok_or_else(|| Error::malformed(NAME, format!("header length {n} overflows")))?;
    Limits::check("header bytes", header_end, limits.max_header_bytes)?;
    p.need(header_end, header_end, || {
        format!("the JSON header of {n} bytes")
    })?;
    let json = p
        .bytes
        .get(N_LEN as usize..header_end as usize)
        .ok_or_else(|| Error::truncated(NAME, "the JSON header is cut"))?;
    let json = std::str::from_utf8(json)
        .map_err(|e| Error::malformed(NAME, format!("the header is not UTF-8: {e}")))?;
    let raw = parse_json(json, limits)?;
    let mut tensors = Vec::with_capacity(raw.tensors.len());
    for (name, info) in raw.tensors {
        let dtype = DType::from_safetensors_name(&info.dtype)?;
        let (begin, end) = info.data_offsets;
        let len = end.checked_sub(begin).ok_or_else(|| {
            Error::malformed(
                NAME,
                format!(
                    "tensor {name:?} has data_offsets [{begin}, {end}] that end before they begin"
                ),
            )
        })?;
        tensors.push(Entry::new(name, dtype, info.shape, begin, len)?);
    }
    // File order is offset order; a stable sort keeps header order among empty tensors.
    tensors.sort_by_key(|e| (e.offset, e.end()));
    let layout = Layout {
        format: Format::Safetensors,
        metadata: raw.metadata.unwrap_or_default(),
        tensors,
        data_start: header_end,
        data_len: p.file_len - header_end,
    };
    layout.validate(limits, Packing::Contiguous)?;
    Ok(layout)
}

/// The header as written, before checks.
struct RawHeader {
    metadata: Option<Metadata>,
    tensors: Vec<(String, RawTensor)>,
}

/// One tensor entry as written.
#[derive(Deserialize)]
struct RawTensor {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: (u64, u64),
}

fn parse_json(json: &str, limits: &Limits) -> Result<RawHeader> {
    let too_many = Cell::new(false);
    let mut de = serde_json::Deserializer::from_str(json);
    let parsed = HeaderSeed {
        max_tensors: limits.max_tensors,
        too_many: &too_many,
    }
    .deserialize(&mut de)
    .and_then(|header| de.end().map(|()| header));
    match parsed {
        Ok(header) => Ok(header),
        Err(_) if too_many.get() => Err(Error::Limit {
            what: "tensors in one file",
            limit: limits.max_tensors,
        }),
        Err(e) => Err(Error::malformed(NAME, format!("header JSON: {e}"))),
    }
}

/// Reads the top-level header object in order, counting tensors as it goes.
struct HeaderSeed<'a> {
    max_tensors: u64,
    too_many: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for HeaderSeed<'_> {
    type Value = RawHeader;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> std::result::Result<RawHeader, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for HeaderSeed<'_> {
    type Value = RawHeader;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object of tensor entries")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<RawHeader, A::Error> {
        let mut metadata = None;
        let mut tensors = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if key == METADATA_KEY {
                if metadata.is_some() {
                    return Err(de::Error::custom("__metadata__ appears twice"));
                }
                metadata = Some(map.next_value_seed(MetadataSeed)?);
            } else {
                if tensors.len() as u64 >= self.max_tensors {
                    self.too_many.set(true);
                    return Err(de::Error::custom("too many tensors"));
                }
                let info: RawTensor = map.next_value()?;
                tensors.push((key, info));
            }
        }
        Ok(RawHeader { metadata, tensors })
    }
}

/// Reads `__metadata__`, refusing a repeated key and non-string values.
struct MetadataSeed;

impl<'de> DeserializeSeed<'de> for MetadataSeed {
    type Value = Metadata;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> std::result::Result<Metadata, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for MetadataSeed {
    type Value = Metadata;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object of string values")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Metadata, A::Error> {
        let mut out = BTreeMap::new();
        while let Some((key, value)) = map.next_entry::<String, String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!(
                    "metadata key {key:?} appears twice"
                )));
            }
            out.insert(key, value);
        }
        Ok(out)
    }
}

/// The crate's dtype, whose order (by alignment) sorts tensors on write.
fn crate_dtype(dtype: DType) -> safetensors::Dtype {
    use safetensors::Dtype as S;
    match dtype {
        DType::F16 => S::F16,
        DType::BF16 => S::BF16,
        DType::F32 => S::F32,
        DType::F64 => S::F64,
        DType::I8 => S::I8,
        DType::I16 => S::I16,
        DType::I32 => S::I32,
        DType::I64 => S::I64,
        DType::U8 => S::U8,
        DType::U16 => S::U16,
        DType::U32 => S::U32,
        DType::U64 => S::U64,
        DType::Bool => S::BOOL,
    }
}

/// The 8-byte length plus the padded JSON header, and the tensors' write order.
fn plan(gradient: &Gradient) -> Result<(Vec<u8>, Vec<usize>)> {
    check_tensors(gradient)?;
    let tensors = &gradient.tensors;
    let mut order: Vec<usize> = (0..tensors.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&tensors[a], &tensors[b]);
        crate_dtype(b.dtype)
            .cmp(&crate_dtype(a.dtype))
            .then_with(|| a.name.as_bytes().cmp(b.name.as_bytes()))
    });
    let json_err =
        |e: serde_json::Error| Error::malformed(NAME, format!("writing the header: {e}"));
    let mut json = Vec::with_capacity(64 + tensors.len() * 96);
    json.push(b'{');
    if !gradient.metadata.is_empty() {
        json.extend_from_slice(b"\"__metadata__\":");
        serde_json::to_writer(&mut json, &gradient.metadata).map_err(json_err)?;
    }
    let mut offset = 0u64;
    for &i in &order {
        let t = &tensors[i];
        if json.len() > 1 {
            json.push(b',');
        }
        let end = offset + t.data.len() as u64;
        serde_json::to_writer(&mut json, &t.name).map_err(json_err)?;
        json.extend_from_slice(b":{\"dtype\":\"");
        json.extend_from_slice(t.dtype.safetensors_name().as_bytes());
        json.extend_from_slice(b"\",\"shape\":");
        serde_json::to_writer(&mut json, &t.shape).map_err(json_err)?;
        json.extend_from_slice(format!(",\"data_offsets\":[{offset},{end}]}}").as_bytes());
        offset = end;
    }
    json.push(b'}');
    json.resize(json.len().next_multiple_of(N_LEN as usize), b' ');
    let mut head = Vec::with_capacity(N_LEN as usize + json.len());
    head.extend_from_slice(&(json.len() as u64).to_le_bytes());
    head.extend_from_slice(&json);
    Ok((head, order))
}

fn write(gradient: &Gradient, head: &[u8], order: &[usize], out: &mut impl Write) -> Result<()> {
    let io = |e| Error::io("writing a safetensors gradient", e);
    out.write_all(head).map_err(io)?;
    for &i in order {
        if let Some(t) = gradient.tensors.get(i) {
            out.write_all(&t.data).map_err(io)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Tensor;

    fn header(json: &str) -> Vec<u8> {
        let mut out = (json.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(json.as_bytes());
        out
    }

    #[test]
    fn round_trips_in_offset_order() {
        let tensors = vec![
            Tensor::from_f32("b", &[1.0, 2.0]),
            Tensor::new("a", DType::F16, vec![1], vec![0, 0x3c]).unwrap(),
            Tensor::new("c", DType::F64, vec![], 2.0f64.to_le_bytes().to_vec()).unwrap(),
        ];
        let metadata = Metadata::from([("miner_id".to_string(), "m".to_string())]);
        let g = Gradient::new(Format::Safetensors, metadata, tensors).unwrap();
        let bytes = encode(&g).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap());
        assert_eq!(n % 8, 0);
        assert_eq!(bytes.len() as u64, 8 + n + 2 + 8 + 8);
        let back = decode(&bytes, &Limits::default()).unwrap();
        let names: Vec<_> = back.tensors.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["c", "b", "a"]);
        assert_eq!(back.metadata, g.metadata);
        for t in &g.tensors {
            assert_eq!(back.tensor(&t.name), Some(t));
        }
    }

    #[test]
    fn hostile_headers_are_typed_errors() {
        let limits = Limits::default();
        let dup = header(
            r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
        );
        let mut dup_file = dup.clone();
        dup_file.extend_from_slice(&[0; 8]);
        assert!(matches!(decode(&dup_file, &limits), Err(Error::DuplicateTensor(n)) if n == "a"));
        let mut f8 = header(r#"{"a":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}}"#);
        f8.push(0);
        assert!(matches!(decode(&f8, &limits), Err(Error::UnknownDType(d)) if d == "F8_E4M3"));
        let mut big = u64::MAX.to_le_bytes().to_vec();
        big.extend_from_slice(b"{}");
        assert!(decode(&big, &limits).is_err());
        let mut huge = (1u64 << 40).to_le_bytes().to_vec();
        huge.extend_from_slice(b"{}");
        assert!(matches!(
            decode(&huge, &limits),
            Err(Error::Limit {
                what: "header bytes",
                ..
            })
        ));
        let mut gap = header(r#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}"#);
        gap.extend_from_slice(&[0, 0]);
        assert!(
            decode(&gap, &limits)
                .unwrap_err()
                .to_string()
                .contains("contiguous")
        );
        let mut meta = header(r#"{"__metadata__":{"k":"1","k":"2"}}"#);
        assert!(
            decode(&meta, &limits)
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
        meta = header(r#"{"__metadata__":{"k":1}}"#);
        assert!(matches!(
            decode(&meta, &limits),
            Err(Error::Malformed { .. })
        ));
        let few = Limits {
            max_tensors: 1,
            ..limits
        };
        assert!(matches!(
            decode(&dup_file, &few),
            Err(Error::Limit {
                what: "tensors in one file",
                ..
            })
        ));
    }

    #[test]
    fn empty_gradient_round_trips() {
        let g = Gradient::new(Format::Safetensors, Metadata::new(), vec![]).unwrap();
        let bytes = encode(&g).unwrap();
        assert_eq!(&bytes[8..], b"{}      ");
        assert_eq!(decode(&bytes, &Limits::default()).unwrap(), g);
    }
}
