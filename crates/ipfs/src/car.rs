//! CAR v1 (Content Addressable aRchive): export a DAG as one file and import
//! one back, verifying every block.
//!
//! Layout: `varint(len) header` then `varint(len) cid block` sections. The
//! header is the DAG-CBOR map `{"roots": [CID...], "version": 1}`; CIDs in
//! DAG-CBOR are tag 42 over a byte string of `0x00 ++ binary CID`. Only that
//! shape of header is read; anything else is an error saying what it found.

use std::io::{Read, Write};

use cid::Cid;

use crate::wire;
use crate::{Error, Result, cids};

/// Largest header accepted.
const MAX_HEADER: u64 = 1 << 16;
/// Largest section accepted: a CID plus Kubo's 2 MiB hard block limit.
pub const MAX_SECTION: u64 = (2 << 20) + 256;

fn car_err(msg: impl Into<String>) -> Error {
    Error::Car(msg.into())
}

/// Writes CAR v1 to a writer: header first, then blocks as given.
pub struct CarWriter<W: Write> {
    out: W,
    /// Bytes written so far.
    pub written: u64,
}

impl<W: Write> CarWriter<W> {
    /// Writes the header with `roots`.
    pub fn new(mut out: W, roots: &[Cid]) -> Result<Self> {
        let header = encode_header(roots);
        let mut prefix = Vec::with_capacity(10);
        wire::put_varint(&mut prefix, header.len() as u64);
        out.write_all(&prefix)
            .and_then(|_| out.write_all(&header))
            .map_err(|e| Error::io("writing CAR", e))?;
        Ok(Self {
            out,
            written: (prefix.len() + header.len()) as u64,
        })
    }

    /// Appends one block section.
    pub fn write_block(&mut self, cid: &Cid, data: &[u8]) -> Result<()> {
        let cid_bytes = cid.to_bytes();
        let mut prefix = Vec::with_capacity(10);
        wire::put_varint(&mut prefix, (cid_bytes.len() + data.len()) as u64);
        self.out
            .write_all(&prefix)
            .and_then(|_| self.out.write_all(&cid_bytes))
            .and_then(|_| self.out.write_all(data))
            .map_err(|e| Error::io("writing CAR", e))?;
        self.written += (prefix.len() + cid_bytes.len() + data.len()) as u64;
        Ok(())
    }

    /// Flushes and returns the writer.
    pub fn finish(mut self) -> Result<W> {
        self.out.flush().map_err(|e| Error::io("writing CAR", e))?;
        Ok(self.out)
    }
}

fn encode_header(roots: &[Cid]) -> Vec<u8> {
    let mut out = vec![0xa2]; // map(2)
    out.push(0x65);
    out.extend_from_slice(b"roots");
    cbor_head(&mut out, 4, roots.len() as u64);
    for root in roots {
        let bytes = root.to_bytes();
        out.extend_from_slice(&[0xd8, 42]);
        cbor_head(&mut out, 2, bytes.len() as u64 + 1);
        out.push(0);
        out.extend_from_slice(&bytes);
    }
    out.push(0x67);
    out.extend_from_slice(b"version");
    out.push(0x01);
    out
}

fn cbor_head(out: &mut Vec<u8>, major: u8, value: u64) {
    let m = major << 5;
    match value {
        0..=23 => out.push(m | value as u8),
        24..=0xff => out.extend_from_slice(&[m | 24, value as u8]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend_from_slice(&(value as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(m | 26);
            out.extend_from_slice(&(value as u32).to_be_bytes());
        }
        _ => {
            out.push(m | 27);
            out.extend_from_slice(&value.to_be_bytes());
        }
    }
}

/// Reads a CAR v1 stream section by section, verifying each block against its CID.
pub struct CarReader<R: Read> {
    input: R,
    roots: Vec<Cid>,
    offset: u64,
}

impl<R: Read> CarReader<R> {
    /// Reads and checks the header.
    pub fn new(mut input: R) -> Result<Self> {
        let len = read_varint(&mut input)?.ok_or_else(|| car_err("empty input: no CAR header"))?;
        if len == 0 || len > MAX_HEADER {
            return Err(car_err(format!("header length {len} out of range")));
        }
        let mut header = vec![0; len as usize];
        input
            .read_exact(&mut header)
            .map_err(|_| car_err("truncated header"))?;
        let roots = decode_header(&header)?;
        let offset = wire::varint_len(len) as u64 + len;
        Ok(Self {
            input,
            roots,
            offset,
        })
    }

    /// Roots named by the header.
    pub fn roots(&self) -> &[Cid] {
        &self.roots
    }

    /// The next block, verified; `None` at the end.
    pub fn next_block(&mut self) -> Result<Option<(Cid, Vec<u8>)>> {
        let at = self.offset;
        let Some(len) = read_varint(&mut self.input)? else {
            return Ok(None);
        };
        if len == 0 || len > MAX_SECTION {
            return Err(car_err(format!(
                "section at byte {at} has length {len} (limit {MAX_SECTION})"
            )));
        }
        let mut section = vec![0; len as usize];
        self.input
            .read_exact(&mut section)
            .map_err(|_| car_err(format!("truncated section at byte {at}")))?;
        self.offset += wire::varint_len(len) as u64 + len;
        let (cid, cid_len) =
            read_cid_prefix(&section).map_err(|e| car_err(format!("section at byte {at}: {e}")))?;
        cids::check_supported(&cid)?;
        let data = section.split_off(cid_len);
        cids::verify(&cid, &data)
            .map_err(|_| car_err(format!("block {cid} at byte {at} does not match its CID")))?;
        Ok(Some((cid, data)))
    }
}

/// Reads a varint; `None` on a clean end of stream before its first byte.
fn read_varint(input: &mut impl Read) -> Result<Option<u64>> {
    let mut value = 0u64;
    for i in 0..10 {
        let mut byte = [0u8];
        match input.read(&mut byte) {
            Ok(0) if i == 0 => return Ok(None),
            Ok(0) => return Err(car_err("truncated varint")),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("reading CAR", e)),
        }
        value |= u64::from(byte[0] & 0x7f) << (7 * i);
        if byte[0] & 0x80 == 0 {
            return Ok(Some(value));
        }
    }
    Err(car_err("varint longer than 10 bytes"))
}

/// Splits the CID at the front of a section; returns it and its length in bytes.
fn read_cid_prefix(section: &[u8]) -> std::result::Result<(Cid, usize), String> {
    let mut cursor = std::io::Cursor::new(section);
    let cid = Cid::read_bytes(&mut cursor).map_err(|e| format!("bad CID: {e}"))?;
    Ok((cid, cursor.position() as usize))
}

/// Decodes `{"roots": [...], "version": 1}` in either key order.
fn decode_header(bytes: &[u8]) -> Result<Vec<Cid>> {
    let mut cbor = Cbor { buf: bytes, pos: 0 };
    let entries = cbor.head(5).map_err(car_err)?;
    let mut roots = None;
    let mut version = None;
    for _ in 0..entries {
        let key_len = cbor.head(3).map_err(car_err)?;
        let key = cbor.take(key_len).map_err(car_err)?;
        match key {
            b"roots" => {
                let n = cbor.head(4).map_err(car_err)?;
                let mut list = Vec::new();
                for _ in 0..n {
                    if cbor.head(6).map_err(car_err)? != 42 {
                        return Err(car_err("root is not a CID (tag 42)"));
                    }
                    let len = cbor.head(2).map_err(car_err)?;
                    let raw = cbor.take(len).map_err(car_err)?;
                    let (prefix, cid_bytes) =
                        raw.split_first().ok_or_else(|| car_err("empty root CID"))?;
                    if *prefix != 0 {
                        return Err(car_err("root CID lacks the 0x00 multibase prefix"));
                    }
                    list.push(
                        cids::decode_exact(cid_bytes)
                            .map_err(|e| car_err(format!("bad root CID: {e}")))?,
                    );
                }
                roots = Some(list);
            }
            b"version" => version = Some(cbor.head(0).map_err(car_err)?),
            other => {
                return Err(car_err(format!(
                    "unexpected header key {:?}",
                    String::from_utf8_lossy(other)
                )));
            }
        }
    }
    match version {
        Some(1) => {}
        Some(2) => return Err(car_err("CAR v2 is not supported; export CAR v1")),
        Some(v) => return Err(car_err(format!("unsupported CAR version {v}"))),
        None => return Err(car_err("header has no version")),
    }
    roots.ok_or_else(|| car_err("header has no roots"))
}

/// Just enough CBOR to read a CAR header.
struct Cbor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cbor<'a> {
    fn byte(&mut self) -> std::result::Result<u8, String> {
        let b = *self.buf.get(self.pos).ok_or("truncated header")?;
        self.pos += 1;
        Ok(b)
    }

    /// Reads an item head of the expected major type; returns its argument.
    fn head(&mut self, major: u8) -> std::result::Result<u64, String> {
        let b = self.byte()?;
        if b >> 5 != major {
            return Err(format!(
                "expected CBOR major type {major}, found {}",
                b >> 5
            ));
        }
        let n = match b & 0x1f {
            v @ 0..=23 => u64::from(v),
            24 => u64::from(self.byte()?),
            w @ 25..=27 => {
                let len = 1usize << (w - 24);
                let bytes = self.take(len as u64)?;
                bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
            }
            other => return Err(format!("unsupported CBOR additional info {other}")),
        };
        Ok(n)
    }

    fn take(&mut self, len: u64) -> std::result::Result<&'a [u8], String> {
        let len = usize::try_from(len).map_err(|_| "length too large")?;
        let end = self.pos.checked_add(len).ok_or("length overflows")?;
        let out = self.buf.get(self.pos..end).ok_or("truncated header")?;
        self.pos = end;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let root = cids::dag_pb_cid(0, cids::sha256_multihash(b"x"));
        let mut w = CarWriter::new(Vec::new(), &[root]).unwrap();
        w.write_block(&root, b"x").unwrap_err_or_ok();
        let bytes = w.finish().unwrap();
        let mut r = CarReader::new(bytes.as_slice()).unwrap();
        assert_eq!(r.roots(), &[root]);
        // "x" is not a dag-pb node, but hashing is all CAR checks.
        assert_eq!(r.next_block().unwrap().unwrap().1, b"x");
        assert!(r.next_block().unwrap().is_none());
    }

    trait Ignore {
        fn unwrap_err_or_ok(self);
    }
    impl Ignore for Result<()> {
        fn unwrap_err_or_ok(self) {
            self.unwrap();
        }
    }

    #[test]
    fn rejects_mismatched_block_and_bad_headers() {
        let root = cids::raw_cid(cids::sha256_multihash(b"good"));
        let mut w = CarWriter::new(Vec::new(), &[root]).unwrap();
        w.write_block(&root, b"evil").unwrap();
        let bytes = w.finish().unwrap();
        let mut r = CarReader::new(bytes.as_slice()).unwrap();
        assert!(
            r.next_block()
                .unwrap_err()
                .to_string()
                .contains("does not match its CID")
        );

        assert!(CarReader::new(&[][..]).is_err());
        assert!(CarReader::new(&[0x05, 0xa2][..]).is_err());
        // version 2
        let mut h = vec![0xa2, 0x65];
        h.extend_from_slice(b"roots");
        h.push(0x80);
        h.push(0x67);
        h.extend_from_slice(b"version");
        h.push(0x02);
        let mut car = vec![h.len() as u8];
        car.extend_from_slice(&h);
        assert!(
            CarReader::new(car.as_slice())
                .err()
                .unwrap()
                .to_string()
                .contains("v2")
        );
    }
}
