//! gzip decompression with a hard output limit.
//!
//! Accepts what Python's `gzip.decompress` accepts from the writers that
//! matter here: one gzip member or several concatenated members. Output grows
//! in bounded steps and never beyond `Limits::max_decompressed_bytes`, so a
//! gzip bomb stops with [`Error::Limit`] after at most that many bytes were
//! produced, whatever it claims. Corrupt input (bad header, bad deflate data,
//! CRC or length mismatch) is [`Error::Malformed`]; input that ends early is
//! [`Error::Truncated`].

use std::io::{ErrorKind, Read};

use flate2::read::MultiGzDecoder;

use crate::{Error, Limits, Result};

const FORMAT: &str = "gzip";

/// Smallest step by which the output buffer grows.
const MIN_STEP: usize = 64 << 10;

/// Deflate expands by at most about 1032:1; a size hint above that is a lie.
const MAX_RATIO: usize = 1032;

/// Decompresses a gzip stream (one or more members), stopping with
/// [`Error::Limit`] at `limits.max_decompressed_bytes` without allocating more.
pub fn decompress(bytes: &[u8], limits: &Limits) -> Result<Vec<u8>> {
    let limit = usize::try_from(limits.max_decompressed_bytes).unwrap_or(usize::MAX);
    let mut decoder = MultiGzDecoder::new(bytes);
    let mut out = Vec::new();
    out.reserve_exact(size_hint(bytes, limit));
    let mut filled = 0usize;
    loop {
        if filled == out.len() {
            if filled >= limit {
                return if produces_more(&mut decoder)? {
                    Err(over_limit(limits))
                } else {
                    Ok(out)
                };
            }
            let step = filled.max(MIN_STEP);
            let new_len = filled.saturating_add(step).min(limit);
            out.reserve_exact(new_len - filled);
            out.resize(new_len, 0);
        }
        let Some(free) = out.get_mut(filled..) else {
            return Err(Error::malformed(FORMAT, "internal buffer bookkeeping"));
        };
        match decoder.read(free) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(map_error(&e)),
        }
    }
    out.truncate(filled);
    Ok(out)
}

/// Initial capacity: the last member's ISIZE trailer (size mod 2^32), trusted
/// only as far as the limit and deflate's best ratio allow.
fn size_hint(bytes: &[u8], limit: usize) -> usize {
    let Some(trailer) = bytes.len().checked_sub(4).and_then(|at| bytes.get(at..)) else {
        return 0;
    };
    let isize = trailer.try_into().map(u32::from_le_bytes).unwrap_or(0);
    let isize = usize::try_from(isize).unwrap_or(0);
    isize.min(limit).min(bytes.len().saturating_mul(MAX_RATIO))
}

/// Whether the decoder still yields data once the output is full.
fn produces_more(decoder: &mut impl Read) -> Result<bool> {
    let mut probe = [0u8; 1];
    loop {
        match decoder.read(&mut probe) {
            Ok(n) => return Ok(n > 0),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(map_error(&e)),
        }
    }
}

fn over_limit(limits: &Limits) -> Error {
    Error::Limit {
        what: "decompressed gzip bytes",
        limit: limits.max_decompressed_bytes,
    }
}

fn map_error(e: &std::io::Error) -> Error {
    match e.kind() {
        ErrorKind::UnexpectedEof => Error::truncated(FORMAT, e.to_string()),
        _ => Error::malformed(FORMAT, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::write::GzEncoder;
    use flate2::{Compress, Compression, FlushCompress};

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::new(6));
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    fn limits(max: u64) -> Limits {
        Limits {
            max_decompressed_bytes: max,
            ..Limits::default()
        }
    }

    #[test]
    fn round_trips_one_member() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(decompress(&gzip(&data), &Limits::default()).unwrap(), data);
        assert_eq!(decompress(&gzip(b""), &Limits::default()).unwrap(), b"");
    }

    #[test]
    fn concatenated_members_are_one_stream() {
        let mut two = gzip(b"hello ");
        two.extend(gzip(b"world"));
        assert_eq!(
            decompress(&two, &Limits::default()).unwrap(),
            b"hello world"
        );
    }

    #[test]
    fn exactly_at_the_limit_is_fine_one_more_is_not() {
        let data = vec![7u8; 100_000];
        let packed = gzip(&data);
        assert_eq!(decompress(&packed, &limits(100_000)).unwrap(), data);
        let err = decompress(&packed, &limits(99_999)).unwrap_err();
        assert!(matches!(err, Error::Limit { limit: 99_999, .. }), "{err}");
    }

    #[test]
    fn truncated_and_corrupt_streams_are_errors() {
        let packed = gzip(&vec![1u8; 10_000]);
        for cut in [0, 5, 10, 20, packed.len() - 4, packed.len() - 1] {
            let err = decompress(&packed[..cut], &Limits::default()).unwrap_err();
            assert!(matches!(err, Error::Truncated { .. }), "cut {cut}: {err}");
        }
        let mut bad_crc = packed.clone();
        let at = bad_crc.len() - 8;
        bad_crc[at] ^= 0xff;
        let err = decompress(&bad_crc, &Limits::default()).unwrap_err();
        assert!(matches!(err, Error::Malformed { .. }), "{err}");
        let mut bad_magic = packed;
        bad_magic[1] = 0;
        assert!(matches!(
            decompress(&bad_magic, &Limits::default()),
            Err(Error::Malformed { .. })
        ));
    }

    /// A member whose deflate data expands to `blocks` MiB of zeros: one
    /// compressed MiB repeated (each copy ends byte-aligned by a sync flush).
    fn bomb(blocks: usize) -> Vec<u8> {
        let mut compress = Compress::new(Compression::best(), false);
        let mut block = Vec::with_capacity(4096);
        compress
            .compress_vec(&vec![0u8; 1 << 20], &mut block, FlushCompress::Sync)
            .unwrap();
        let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
        out.reserve(block.len() * blocks + 16);
        for _ in 0..blocks {
            out.extend_from_slice(&block);
        }
        out.extend_from_slice(&[0x03, 0x00]); // final empty fixed-Huffman block
        out.extend_from_slice(&[0; 8]); // CRC and size: never reached
        out
    }

    #[test]
    fn ten_gib_bomb_stops_at_the_limit_quickly() {
        let packed = bomb(10 << 10);
        assert!(packed.len() < 12 << 20, "bomb is {} bytes", packed.len());
        let start = std::time::Instant::now();
        let err = decompress(&packed, &limits(32 << 20)).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Limit {
                    what: "decompressed gzip bytes",
                    ..
                }
            ),
            "{err}"
        );
        assert!(start.elapsed().as_secs() < 20, "took {:?}", start.elapsed());
    }

    #[test]
    fn lying_size_hint_is_capped() {
        let mut packed = gzip(b"tiny");
        let n = packed.len();
        packed[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(size_hint(&packed, usize::MAX) <= packed.len() * MAX_RATIO);
        assert!(decompress(&packed, &Limits::default()).is_err());
    }
}
