//! Arguments of the text opcodes of protocols 0 and 1: decimal ints, float
//! reprs, quoted byte strings (`STRING`) and raw-unicode-escape (`UNICODE`).

use super::object::FORMAT;
use crate::{Error, Result};

/// Parses a decimal int as `INT`, `LONG`, `PUT` and `GET` write it
/// (surrounding whitespace, optional sign, digits). Beyond 128 bits is an error.
pub(super) fn int(line: &[u8]) -> Result<i128> {
    let text = ascii(line, "integer")?.trim();
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::malformed(
            FORMAT,
            format!("invalid integer literal {text:?}"),
        ));
    }
    text.parse()
        .map_err(|_| Error::malformed(FORMAT, format!("integer {text} is beyond 128 bits")))
}

/// Parses a float as `FLOAT` writes it (`repr(x)`: `1.5`, `1e-05`, `inf`, `nan`).
pub(super) fn float(line: &[u8]) -> Result<f64> {
    let text = ascii(line, "float")?.trim();
    text.parse()
        .map_err(|_| Error::malformed(FORMAT, format!("invalid float literal {text:?}")))
}

/// Decodes the argument of `STRING`: a quoted Python 2 `repr` of a byte
/// string, unescaped as `codecs.escape_decode` does.
pub(super) fn quoted(line: &[u8]) -> Result<Vec<u8>> {
    let inner = match line {
        [q, inner @ .., last] if (*q == b'\'' || *q == b'"') && q == last => inner,
        _ => {
            return Err(Error::malformed(
                FORMAT,
                "the STRING opcode argument must be quoted",
            ));
        }
    };
    let mut out = Vec::with_capacity(inner.len());
    let mut rest = inner;
    while let Some((&b, tail)) = rest.split_first() {
        rest = tail;
        if b != b'\\' {
            out.push(b);
            continue;
        }
        let Some((&e, tail)) = rest.split_first() else {
            return Err(Error::malformed(FORMAT, "STRING ends in a lone backslash"));
        };
        rest = tail;
        match e {
            b'\n' => {}
            b'\\' | b'\'' | b'"' => out.push(e),
            b'a' => out.push(0x07),
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(0x0b),
            b'0'..=b'7' => {
                let mut value = u32::from(e - b'0');
                for _ in 0..2 {
                    match rest.split_first() {
                        Some((&d @ b'0'..=b'7', tail)) => {
                            value = value * 8 + u32::from(d - b'0');
                            rest = tail;
                        }
                        _ => break,
                    }
                }
                out.push((value & 0xff) as u8);
            }
            b'x' => {
                let (digits, tail) = rest.split_at_checked(2).ok_or_else(|| bad_escape("\\x"))?;
                out.push(hex(digits).ok_or_else(|| bad_escape("\\x"))? as u8);
                rest = tail;
            }
            other => out.extend_from_slice(&[b'\\', other]),
        }
    }
    Ok(out)
}

/// Decodes the argument of `UNICODE` (raw-unicode-escape): bytes are Latin-1
/// characters except `\uXXXX` and `\UXXXXXXXX` escapes.
pub(super) fn raw_unicode_escape(line: &[u8]) -> Result<String> {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some((&b, tail)) = rest.split_first() {
        rest = tail;
        let width = match (b, rest.first()) {
            (b'\\', Some(b'u')) => 4,
            (b'\\', Some(b'U')) => 8,
            _ => {
                out.push(char::from(b));
                continue;
            }
        };
        let digits = rest.get(1..1 + width).ok_or_else(|| bad_escape("\\u"))?;
        let code = hex(digits).ok_or_else(|| bad_escape("\\u"))?;
        let c = char::from_u32(code).ok_or_else(|| {
            Error::malformed(
                FORMAT,
                format!(
                    "\\u escape U+{code:04X} is no Unicode scalar (lone surrogates are refused)"
                ),
            )
        })?;
        out.push(c);
        rest = rest.get(1 + width..).unwrap_or_default();
    }
    Ok(out)
}

/// Bytes as ASCII text (as Python 3 reads Python 2 `str` by default).
pub(super) fn ascii<'a>(bytes: &'a [u8], what: &str) -> Result<&'a str> {
    if !bytes.is_ascii() {
        return Err(Error::malformed(FORMAT, format!("{what} is not ASCII")));
    }
    std::str::from_utf8(bytes).map_err(|_| Error::malformed(FORMAT, format!("{what} is not ASCII")))
}

fn hex(digits: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(digits).ok()?;
    if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(text, 16).ok()
}

fn bad_escape(kind: &str) -> Error {
    Error::malformed(FORMAT, format!("truncated or invalid {kind} escape"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ints_and_floats() {
        assert_eq!(int(b"  -42 ").unwrap(), -42);
        assert_eq!(
            int(b"170141183460469231731687303715884105727").unwrap(),
            i128::MAX
        );
        assert!(int(b"170141183460469231731687303715884105728").is_err());
        assert!(int(b"0x10").is_err());
        assert!(int(b"").is_err());
        assert_eq!(float(b"1e-05").unwrap(), 1e-5);
        assert!(float(b"nan").unwrap().is_nan());
        assert_eq!(float(b"-inf").unwrap(), f64::NEG_INFINITY);
        assert!(float(b"1.5x").is_err());
    }

    #[test]
    fn quoted_strings_unescape() {
        assert_eq!(
            quoted(br"'a\'b\\\n\x41\101\7z'").unwrap(),
            b"a'b\\\nAA\x07z"
        );
        assert_eq!(quoted(br#""\q""#).unwrap(), b"\\q");
        assert!(quoted(b"'abc").is_err());
        assert!(quoted(br"'\x4'").is_err());
        assert!(quoted(b"'").is_err());
    }

    #[test]
    fn raw_unicode_escapes() {
        assert_eq!(
            raw_unicode_escape(b"a\\u005cb\xe9\\U0001F600").unwrap(),
            "a\\b\u{e9}\u{1F600}"
        );
        assert_eq!(raw_unicode_escape(b"\\x").unwrap(), "\\x");
        assert!(raw_unicode_escape(b"\\u12").is_err());
        assert!(raw_unicode_escape(b"\\ud800").is_err());
    }
}
