//! Format detection from the first bytes of a file.

use crate::{Error, Result};

/// The gradient file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// r3mes' range-readable protobuf (header first, raw tensor bytes last).
    Protobuf,
    /// safetensors.
    Safetensors,
    /// A pickle (protocol 2 to 5), uncompressed.
    Pickle,
    /// A gzip-compressed pickle, as the seed's miner writes.
    PickleGzip,
    /// The Python engine's `gradient.GradientPackage` protobuf (packed floats, not range-readable).
    LegacyProtobuf,
}

/// Magic that opens r3mes' protobuf format: field 1 (string) = `r3mes.gradient.v1`.
pub const PROTOBUF_MAGIC: &[u8] = b"\x0a\x11r3mes.gradient.v1";

impl Format {
    /// Name as the CLI spells it.
    pub fn name(self) -> &'static str {
        match self {
            Format::Protobuf => "protobuf",
            Format::Safetensors => "safetensors",
            Format::Pickle => "pickle",
            Format::PickleGzip => "pickle+gzip",
            Format::LegacyProtobuf => "legacy-protobuf",
        }
    }

    /// Parses [`Format::name`].
    pub fn from_name(name: &str) -> Result<Self> {
        [
            Format::Protobuf,
            Format::Safetensors,
            Format::Pickle,
            Format::PickleGzip,
            Format::LegacyProtobuf,
        ]
        .into_iter()
        .find(|f| f.name() == name)
        .ok_or_else(|| {
            Error::UnknownFormat(format!(
                "{name:?} (use protobuf, safetensors, pickle, pickle+gzip or legacy-protobuf)"
            ))
        })
    }

    /// Whether a [`crate::index`]-style element index can be built from the header alone.
    pub fn is_range_readable(self) -> bool {
        matches!(self, Format::Protobuf | Format::Safetensors)
    }
}

/// Guesses the format from the first bytes: gzip magic, pickle protocol byte,
/// r3mes protobuf magic, a safetensors header length followed by `{`, and
/// otherwise the legacy protobuf (whose decoder then decides).
pub fn detect(head: &[u8]) -> Result<Format> {
    match head {
        [0x1f, 0x8b, ..] => Ok(Format::PickleGzip),
        [0x80, 2..=5, ..] => Ok(Format::Pickle),
        _ if head.starts_with(PROTOBUF_MAGIC) => Ok(Format::Protobuf),
        [a, b, c, d, e, f, g, h, b'{', ..] => {
            let len = u64::from_le_bytes([*a, *b, *c, *d, *e, *f, *g, *h]);
            if len >= 2 {
                Ok(Format::Safetensors)
            } else {
                Err(Error::UnknownFormat(
                    "safetensors-like header of length < 2".into(),
                ))
            }
        }
        [0x0a, ..] | [0x12, ..] | [0x18, ..] | [0x22, ..] | [0x2a, ..] | [0x30, ..] => {
            Ok(Format::LegacyProtobuf)
        }
        [] => Err(Error::UnknownFormat("empty file".into())),
        [first, ..] => Err(Error::UnknownFormat(format!(
            "first byte 0x{first:02x} starts none of gzip, pickle (protocol 2-5), r3mes protobuf, safetensors or the legacy protobuf"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_each_format() {
        assert_eq!(detect(&[0x1f, 0x8b, 8]).unwrap(), Format::PickleGzip);
        assert_eq!(detect(&[0x80, 4, 0x95]).unwrap(), Format::Pickle);
        assert_eq!(
            detect(b"\x0a\x11r3mes.gradient.v1\x12").unwrap(),
            Format::Protobuf
        );
        assert_eq!(
            detect(b"\x10\0\0\0\0\0\0\0{\"a\":1}").unwrap(),
            Format::Safetensors
        );
        assert_eq!(detect(&[0x0a, 0x05]).unwrap(), Format::LegacyProtobuf);
        assert!(detect(b"").is_err());
        assert!(detect(b"hello").unwrap_err().to_string().contains("0x68"));
        assert!(Format::from_name("zip").is_err());
    }
}
