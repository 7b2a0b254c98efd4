//! Protocol-buffer wire primitives shared by the dag-pb and UnixFS codecs:
//! varints and a bounds-checked field reader that never panics on input.

/// Wire type of varint fields.
pub(crate) const VARINT: u8 = 0;
/// Wire type of length-delimited fields.
pub(crate) const LEN: u8 = 2;

/// Appends `value` as an unsigned LEB128 varint.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Encoded length of `value` as a varint.
pub(crate) fn varint_len(value: u64) -> usize {
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Appends a field key.
pub(crate) fn put_key(out: &mut Vec<u8>, field: u32, wire_type: u8) {
    put_varint(out, (u64::from(field) << 3) | u64::from(wire_type));
}

/// Appends a length-delimited field.
pub(crate) fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_key(out, field, LEN);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Appends a varint field.
pub(crate) fn put_uint(out: &mut Vec<u8>, field: u32, value: u64) {
    put_key(out, field, VARINT);
    put_varint(out, value);
}

/// One decoded field value.
pub(crate) enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

/// Reads fields from a protobuf message, failing on anything malformed.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// Reads one varint (at most 10 bytes, no overflow).
    pub(crate) fn varint(&mut self) -> Result<u64, String> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let byte = *self.buf.get(self.pos).ok_or("truncated varint")?;
            self.pos += 1;
            if i == 9 && byte > 1 {
                return Err("varint overflows 64 bits".into());
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                if i > 0 && byte == 0 {
                    return Err("varint is not minimally encoded".into());
                }
                return Ok(value);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    /// Reads the next field: its number and value. Groups and fixed-width
    /// fields are refused: none of the formats read here uses them.
    pub(crate) fn field(&mut self) -> Result<(u32, Value<'a>), String> {
        let key = self.varint()?;
        let field = u32::try_from(key >> 3).map_err(|_| "field number too large")?;
        if field == 0 {
            return Err("field number 0".into());
        }
        match (key & 7) as u8 {
            VARINT => Ok((field, Value::Varint(self.varint()?))),
            LEN => {
                let len = self.varint()?;
                let len = usize::try_from(len).map_err(|_| "length too large")?;
                let end = self.pos.checked_add(len).ok_or("length overflows")?;
                let bytes = self.buf.get(self.pos..end).ok_or_else(|| {
                    format!(
                        "field {field} claims {len} bytes, {} remain",
                        self.buf.len() - self.pos
                    )
                })?;
                self.pos = end;
                Ok((field, Value::Bytes(bytes)))
            }
            other => Err(format!("field {field} has unsupported wire type {other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn varint_round_trips(v in any::<u64>()) {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            prop_assert_eq!(out.len(), varint_len(v));
            let mut r = Reader::new(&out);
            prop_assert_eq!(r.varint().unwrap(), v);
            prop_assert!(r.is_empty());
        }

        #[test]
        fn reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut r = Reader::new(&bytes);
            while !r.is_empty() {
                if r.field().is_err() { break; }
            }
        }
    }

    #[test]
    fn rejects_overlong_and_truncated() {
        assert!(Reader::new(&[0x80]).varint().is_err());
        assert!(Reader::new(&[0xff; 11]).varint().is_err());
        assert!(Reader::new(&[0x80, 0x00]).varint().is_err());
        assert!(Reader::new(&[0x0a, 0x05, 1, 2]).field().is_err());
    }
}
