//! Element types, their names in each format, and conversion of
//! little-endian element bytes to f64 (the flattened vector's type).

use crate::{Error, Result};

/// The element types a gradient tensor may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    /// IEEE 754 binary16.
    F16,
    /// bfloat16.
    BF16,
    /// IEEE 754 binary32.
    F32,
    /// IEEE 754 binary64.
    F64,
    /// Signed 8-bit integer.
    I8,
    /// Signed 16-bit integer.
    I16,
    /// Signed 32-bit integer.
    I32,
    /// Signed 64-bit integer.
    I64,
    /// Unsigned 8-bit integer.
    U8,
    /// Unsigned 16-bit integer.
    U16,
    /// Unsigned 32-bit integer.
    U32,
    /// Unsigned 64-bit integer.
    U64,
    /// Boolean stored as one byte (0 or 1).
    Bool,
}

impl DType {
    /// Every dtype.
    pub const ALL: [DType; 13] = [
        DType::F16,
        DType::BF16,
        DType::F32,
        DType::F64,
        DType::I8,
        DType::I16,
        DType::I32,
        DType::I64,
        DType::U8,
        DType::U16,
        DType::U32,
        DType::U64,
        DType::Bool,
    ];

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::I8 | DType::U8 | DType::Bool => 1,
            DType::F16 | DType::BF16 | DType::I16 | DType::U16 => 2,
            DType::F32 | DType::I32 | DType::U32 => 4,
            DType::F64 | DType::I64 | DType::U64 => 8,
        }
    }

    /// Short lower-case name (`f32`, `bf16`, `i64`, ...), used by r3mes' protobuf format and the CLI.
    pub fn name(self) -> &'static str {
        match self {
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::I8 => "i8",
            DType::I16 => "i16",
            DType::I32 => "i32",
            DType::I64 => "i64",
            DType::U8 => "u8",
            DType::U16 => "u16",
            DType::U32 => "u32",
            DType::U64 => "u64",
            DType::Bool => "bool",
        }
    }

    /// Parses [`DType::name`].
    pub fn from_name(name: &str) -> Result<Self> {
        DType::ALL
            .into_iter()
            .find(|d| d.name() == name)
            .ok_or_else(|| Error::UnknownDType(name.to_string()))
    }

    /// Name in safetensors headers (`F32`, `BF16`, `I64`, `BOOL`, ...).
    pub fn safetensors_name(self) -> &'static str {
        match self {
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            DType::F32 => "F32",
            DType::F64 => "F64",
            DType::I8 => "I8",
            DType::I16 => "I16",
            DType::I32 => "I32",
            DType::I64 => "I64",
            DType::U8 => "U8",
            DType::U16 => "U16",
            DType::U32 => "U32",
            DType::U64 => "U64",
            DType::Bool => "BOOL",
        }
    }

    /// Parses [`DType::safetensors_name`].
    pub fn from_safetensors_name(name: &str) -> Result<Self> {
        DType::ALL
            .into_iter()
            .find(|d| d.safetensors_name() == name)
            .ok_or_else(|| Error::UnknownDType(name.to_string()))
    }

    /// Torch's spelling (`torch.float32`), as the Python engine's packages record it.
    pub fn torch_name(self) -> &'static str {
        match self {
            DType::F16 => "torch.float16",
            DType::BF16 => "torch.bfloat16",
            DType::F32 => "torch.float32",
            DType::F64 => "torch.float64",
            DType::I8 => "torch.int8",
            DType::I16 => "torch.int16",
            DType::I32 => "torch.int32",
            DType::I64 => "torch.int64",
            DType::U8 => "torch.uint8",
            DType::U16 => "torch.uint16",
            DType::U32 => "torch.uint32",
            DType::U64 => "torch.uint64",
            DType::Bool => "torch.bool",
        }
    }

    /// Parses a dtype as Python code names it: torch (`torch.float32`, `torch.half`),
    /// numpy (`float32`, `<f4`), or the short names here.
    pub fn from_python_name(name: &str) -> Result<Self> {
        let bare = name
            .strip_prefix("torch.")
            .or_else(|| name.strip_prefix("numpy."))
            .unwrap_or(name);
        let found = match bare {
            "float16" | "half" => DType::F16,
            "bfloat16" => DType::BF16,
            "float32" | "float" => DType::F32,
            "float64" | "double" => DType::F64,
            "int8" => DType::I8,
            "int16" | "short" => DType::I16,
            "int32" | "int" => DType::I32,
            "int64" | "long" => DType::I64,
            "uint8" => DType::U8,
            "uint16" => DType::U16,
            "uint32" => DType::U32,
            "uint64" => DType::U64,
            "bool" => DType::Bool,
            other => {
                return DType::from_name(other).or_else(|_| Ok(DType::from_numpy_descr(other)?.0));
            }
        };
        Ok(found)
    }

    /// Parses a numpy type descriptor such as `<f4`, `>i8`, `|u1`, `?`; returns
    /// the dtype and whether its bytes are big-endian.
    pub fn from_numpy_descr(descr: &str) -> Result<(Self, bool)> {
        let unknown = || Error::UnknownDType(descr.to_string());
        let (big_endian, code) = match descr.as_bytes().first() {
            Some(b'<') | Some(b'=') => (false, &descr[1..]),
            Some(b'>') | Some(b'!') => (true, &descr[1..]),
            Some(b'|') => (false, &descr[1..]),
            _ => (false, descr),
        };
        let dtype = match code {
            "f2" | "e" => DType::F16,
            "f4" | "f" => DType::F32,
            "f8" | "d" => DType::F64,
            "i1" | "b" => DType::I8,
            "i2" | "h" => DType::I16,
            "i4" | "i" => DType::I32,
            "i8" | "q" | "l" => DType::I64,
            "u1" | "B" => DType::U8,
            "u2" | "H" => DType::U16,
            "u4" | "I" => DType::U32,
            "u8" | "Q" | "L" => DType::U64,
            "b1" | "?" => DType::Bool,
            _ => return Err(unknown()),
        };
        Ok((dtype, big_endian && dtype.size() > 1))
    }

    /// Whether the type is a floating-point one.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F16 | DType::BF16 | DType::F32 | DType::F64)
    }

    /// Appends the f64 value of every element of `bytes` (little-endian) to `out`.
    /// `bytes.len()` must be a multiple of [`DType::size`]; a trailing partial element is ignored.
    pub fn extend_f64(self, bytes: &[u8], out: &mut Vec<f64>) {
        out.reserve(bytes.len() / self.size());
        match self {
            DType::F32 => out.extend(
                bytes
                    .chunks_exact(4)
                    .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]]))),
            ),
            DType::F64 => out.extend(bytes.chunks_exact(8).map(|c| f64::from_le_bytes(le8(c)))),
            DType::F16 => out.extend(
                bytes
                    .chunks_exact(2)
                    .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f64()),
            ),
            DType::BF16 => out.extend(
                bytes
                    .chunks_exact(2)
                    .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f64()),
            ),
            DType::I8 => out.extend(bytes.iter().map(|b| f64::from(*b as i8))),
            DType::U8 => out.extend(bytes.iter().map(|b| f64::from(*b))),
            DType::Bool => out.extend(bytes.iter().map(|b| f64::from(u8::from(*b != 0)))),
            DType::I16 => out.extend(
                bytes
                    .chunks_exact(2)
                    .map(|c| f64::from(i16::from_le_bytes([c[0], c[1]]))),
            ),
            DType::U16 => out.extend(
                bytes
                    .chunks_exact(2)
                    .map(|c| f64::from(u16::from_le_bytes([c[0], c[1]]))),
            ),
            DType::I32 => out.extend(
                bytes
                    .chunks_exact(4)
                    .map(|c| f64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]]))),
            ),
            DType::U32 => out.extend(
                bytes
                    .chunks_exact(4)
                    .map(|c| f64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]]))),
            ),
            // Integers beyond 2^53 round to the nearest f64, as numpy's astype(float64) does.
            DType::I64 => out.extend(
                bytes
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(le8(c)) as f64),
            ),
            DType::U64 => out.extend(
                bytes
                    .chunks_exact(8)
                    .map(|c| u64::from_le_bytes(le8(c)) as f64),
            ),
        }
    }

    /// Writes the f64 value of every element of `bytes` (little-endian) into
    /// `out`, one per slot; stops at whichever of the two ends first.
    pub fn write_f64(self, bytes: &[u8], out: &mut [f64]) {
        fn fill<const N: usize>(bytes: &[u8], out: &mut [f64], convert: impl Fn([u8; N]) -> f64) {
            for (slot, chunk) in out.iter_mut().zip(bytes.chunks_exact(N)) {
                let mut raw = [0u8; N];
                raw.copy_from_slice(chunk);
                *slot = convert(raw);
            }
        }
        match self {
            DType::F32 => fill(bytes, out, |b| f64::from(f32::from_le_bytes(b))),
            DType::F64 => fill(bytes, out, f64::from_le_bytes),
            DType::F16 => fill(bytes, out, |b| half::f16::from_le_bytes(b).to_f64()),
            DType::BF16 => fill(bytes, out, |b| half::bf16::from_le_bytes(b).to_f64()),
            DType::I8 => fill(bytes, out, |[b]: [u8; 1]| f64::from(b as i8)),
            DType::U8 => fill(bytes, out, |[b]: [u8; 1]| f64::from(b)),
            DType::Bool => fill(bytes, out, |[b]: [u8; 1]| f64::from(u8::from(b != 0))),
            DType::I16 => fill(bytes, out, |b| f64::from(i16::from_le_bytes(b))),
            DType::U16 => fill(bytes, out, |b| f64::from(u16::from_le_bytes(b))),
            DType::I32 => fill(bytes, out, |b| f64::from(i32::from_le_bytes(b))),
            DType::U32 => fill(bytes, out, |b| f64::from(u32::from_le_bytes(b))),
            DType::I64 => fill(bytes, out, |b| i64::from_le_bytes(b) as f64),
            DType::U64 => fill(bytes, out, |b| u64::from_le_bytes(b) as f64),
        }
    }

    /// The f64 value of one little-endian element (`bytes.len() == self.size()`).
    pub fn value_f64(self, bytes: &[u8]) -> f64 {
        let mut out = Vec::with_capacity(1);
        self.extend_f64(bytes, &mut out);
        out.first().copied().unwrap_or(f64::NAN)
    }
}

fn le8(c: &[u8]) -> [u8; 8] {
    [c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for d in DType::ALL {
            assert_eq!(DType::from_name(d.name()).unwrap(), d);
            assert_eq!(
                DType::from_safetensors_name(d.safetensors_name()).unwrap(),
                d
            );
            assert_eq!(DType::from_python_name(d.torch_name()).unwrap(), d);
        }
        assert_eq!(DType::from_numpy_descr(">f4").unwrap(), (DType::F32, true));
        assert_eq!(DType::from_numpy_descr("|u1").unwrap(), (DType::U8, false));
        assert!(DType::from_name("f128").is_err());
        assert!(DType::from_numpy_descr("<c16").is_err());
    }

    #[test]
    fn converts_to_f64_exactly() {
        let mut out = Vec::new();
        DType::F32.extend_f64(&1.5f32.to_le_bytes(), &mut out);
        DType::F16.extend_f64(&half::f16::from_f32(-2.0).to_le_bytes(), &mut out);
        DType::BF16.extend_f64(&half::bf16::from_f32(0.5).to_le_bytes(), &mut out);
        DType::I16.extend_f64(&(-7i16).to_le_bytes(), &mut out);
        DType::F64.extend_f64(&f64::NAN.to_le_bytes(), &mut out);
        assert_eq!(&out[..4], &[1.5, -2.0, 0.5, -7.0]);
        assert!(out[4].is_nan());
    }
}
