//! The few pieces of the protobuf wire format the readers walk by hand
//! (varints, tags, length-delimited fields), where a full decode through prost
//! would copy the tensor bytes or allocate before the limits are checked.

/// Longest varint: ten bytes carry 64 bits.
pub(crate) const MAX_VARINT_LEN: usize = 10;

/// Wire type of length-delimited fields (strings, bytes, messages, packed repeats).
pub(crate) const LEN: u8 = 2;

/// What reading a varint at a position gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Varint {
    /// The value and the position right after it.
    Value(u64, usize),
    /// The buffer ends inside the varint.
    Short,
    /// More than ten bytes, or a tenth byte above 1: not a 64-bit varint.
    Overlong,
}

/// Reads a base-128 varint starting at `pos`.
pub(crate) fn varint(buf: &[u8], pos: usize) -> Varint {
    let mut value = 0u64;
    for i in 0..MAX_VARINT_LEN {
        let Some(&byte) = buf.get(pos.saturating_add(i)) else {
            return Varint::Short;
        };
        if i == MAX_VARINT_LEN - 1 && byte > 1 {
            return Varint::Overlong;
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Varint::Value(value, pos + i + 1);
        }
    }
    Varint::Overlong
}

/// Number of bytes `value` takes as a varint.
pub(crate) fn varint_len(value: u64) -> usize {
    let bits = 64 - value.leading_zeros() as usize;
    bits.div_ceil(7).max(1)
}

/// Appends `value` as a varint.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Splits a tag into field number and wire type; `None` for field number 0
/// or one above the protobuf maximum (2^29 - 1).
pub(crate) fn split_tag(tag: u64) -> Option<(u32, u8)> {
    let field = tag >> 3;
    if field == 0 || field > (1 << 29) - 1 {
        return None;
    }
    Some((field as u32, (tag & 7) as u8))
}

/// One field of a message held completely in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Field<'a> {
    /// Field number.
    pub number: u32,
    /// Wire type.
    pub wire_type: u8,
    /// For length-delimited fields, the payload; empty otherwise.
    pub payload: &'a [u8],
    /// For varint fields, the value; the payload length otherwise.
    pub value: u64,
}

/// Walks the fields of a complete message, checking that each one is well
/// formed and ends inside the buffer. Errors are plain descriptions (the
/// caller adds the format name).
pub(crate) struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    /// Fields of `buf`, from its first byte.
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn take_varint(&mut self, what: &str) -> Result<u64, String> {
        match varint(self.buf, self.pos) {
            Varint::Value(v, next) => {
                self.pos = next;
                Ok(v)
            }
            Varint::Short => Err(format!("{what} at byte {} is cut short", self.pos)),
            Varint::Overlong => Err(format!("{what} at byte {} is not a valid varint", self.pos)),
        }
    }

    fn take(&mut self, len: u64, what: &str) -> Result<&'a [u8], String> {
        let start = self.pos;
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| start.checked_add(l))
            .filter(|end| *end <= self.buf.len())
            .ok_or_else(|| {
                format!(
                    "{what} of {len} bytes at byte {start} runs past the end ({} bytes)",
                    self.buf.len()
                )
            })?;
        self.pos = end;
        Ok(&self.buf[start..end])
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<Field<'a>, String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let at = self.pos;
        let result = (|| {
            let tag = self.take_varint("field tag")?;
            let (number, wire_type) =
                split_tag(tag).ok_or_else(|| format!("invalid field tag {tag} at byte {at}"))?;
            match wire_type {
                0 => {
                    let value = self.take_varint("varint field")?;
                    Ok(Field {
                        number,
                        wire_type,
                        payload: &[],
                        value,
                    })
                }
                1 => {
                    let payload = self.take(8, "fixed64 field")?;
                    Ok(Field {
                        number,
                        wire_type,
                        payload,
                        value: 8,
                    })
                }
                LEN => {
                    let len = self.take_varint("field length")?;
                    let payload = self.take(len, "length-delimited field")?;
                    Ok(Field {
                        number,
                        wire_type,
                        payload,
                        value: len,
                    })
                }
                5 => {
                    let payload = self.take(4, "fixed32 field")?;
                    Ok(Field {
                        number,
                        wire_type,
                        payload,
                        value: 4,
                    })
                }
                other => Err(format!(
                    "field {number} at byte {at} has unsupported wire type {other}"
                )),
            }
        })();
        if result.is_err() {
            // Stop after the first error: the rest of the buffer has no known framing.
            self.pos = self.buf.len();
        }
        Some(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_refuse_overlong() {
        for v in [0u64, 1, 127, 128, 300, 1 << 35, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v));
            assert_eq!(varint(&out, 0), Varint::Value(v, out.len()));
            assert_eq!(varint(&out[..out.len() - 1], 0), Varint::Short);
        }
        assert_eq!(varint(&[0xff; 10], 0), Varint::Overlong);
        assert_eq!(
            varint(
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02],
                0
            ),
            Varint::Overlong
        );
        assert_eq!(varint(&[], 0), Varint::Short);
    }

    #[test]
    fn fields_walk_and_stop_at_bad_framing() {
        // field 1 varint 150, field 2 bytes "hi", field 3 fixed32
        let msg = [0x08, 0x96, 0x01, 0x12, 0x02, b'h', b'i', 0x1d, 1, 2, 3, 4];
        let fields: Vec<_> = Fields::new(&msg).collect::<Result<_, _>>().unwrap();
        assert_eq!(fields.len(), 3);
        assert_eq!(fields[0].value, 150);
        assert_eq!(fields[1].payload, b"hi");
        assert_eq!(fields[2].payload, &[1, 2, 3, 4]);

        let cut = [0x12, 0x05, b'h'];
        let mut it = Fields::new(&cut);
        assert!(
            it.next()
                .unwrap()
                .unwrap_err()
                .contains("runs past the end")
        );
        assert!(it.next().is_none());
        assert!(Fields::new(&[0x00]).next().unwrap().is_err());
        assert!(
            Fields::new(&[0x0b])
                .next()
                .unwrap()
                .unwrap_err()
                .contains("wire type 3")
        );
    }
}
