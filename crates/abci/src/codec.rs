//! The CometBFT socket protocol's framing: each protobuf message is
//! preceded by its length as an unsigned varint (CometBFT v0.38
//! `protoio`; the pre-0.35 signed varint is not accepted).

use std::io::{self, Read, Write};

use prost::Message;

use crate::Error;

/// The largest message accepted (CometBFT's own limit for ABCI messages
/// is 100 MB; blocks of the keeper are far smaller).
pub const MAX_MESSAGE_BYTES: u64 = 104_857_600;

/// The buffer set aside before a message's bytes arrive; it grows with the
/// bytes actually read, never ahead of them by more than this.
pub const INITIAL_BUFFER_BYTES: usize = 64 * 1024;

/// Reads one message; `Ok(None)` on a clean end of stream before its first
/// byte. A varint longer than 10 bytes, a length over `max`, a stream that
/// ends inside a message, or bytes that do not decode are errors.
///
/// The announced length is not trusted for memory: the buffer starts at
/// [`INITIAL_BUFFER_BYTES`] at most and grows as the bytes come, so a
/// peer announcing `max` bytes and sending few holds little memory.
pub fn read_message<M: Message + Default>(r: &mut impl Read, max: u64) -> Result<Option<M>, Error> {
    let Some(len) = read_uvarint(r)? else {
        return Ok(None);
    };
    if len > max {
        return Err(Error::TooLarge { len, max });
    }
    let expected = usize::try_from(len).map_err(|_| Error::TooLarge { len, max })?;
    let mut buf = Vec::with_capacity(expected.min(INITIAL_BUFFER_BYTES));
    let read = r.take(len).read_to_end(&mut buf)?;
    if read < expected {
        return Err(Error::Truncated);
    }
    M::decode(buf.as_slice())
        .map(Some)
        .map_err(|e| Error::Decode(e.to_string()))
}

/// Writes one length-prefixed message.
pub fn write_message(w: &mut impl Write, msg: &impl Message) -> Result<(), Error> {
    let body = msg.encode_to_vec();
    let mut frame = Vec::with_capacity(body.len() + 10);
    let mut len = body.len() as u64;
    while len >= 0x80 {
        frame.push((len as u8) | 0x80);
        len >>= 7;
    }
    frame.push(len as u8);
    frame.extend_from_slice(&body);
    w.write_all(&frame)?;
    Ok(())
}

/// Reads an unsigned LEB128 varint; `None` at a clean end of stream.
fn read_uvarint(r: &mut impl Read) -> Result<Option<u64>, Error> {
    let mut value: u64 = 0;
    for i in 0..10 {
        let mut byte = [0u8; 1];
        match r.read_exact(&mut byte) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return if i == 0 {
                    Ok(None)
                } else {
                    Err(Error::Truncated)
                };
            }
            Err(e) => return Err(Error::Io(e)),
        }
        let b = byte[0];
        if i == 9 && b > 1 {
            return Err(Error::BadLength);
        }
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some(value));
        }
    }
    Err(Error::BadLength)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tendermint_proto::v0_38::abci::{Request, RequestEcho, request};

    fn echo(message: &str) -> Request {
        Request {
            value: Some(request::Value::Echo(RequestEcho {
                message: message.into(),
            })),
        }
    }

    #[test]
    fn frames_round_trip_with_uvarint_lengths() {
        let long = "x".repeat(300);
        let mut buf = Vec::new();
        write_message(&mut buf, &echo("hi")).unwrap();
        write_message(&mut buf, &echo(&long)).unwrap();
        // "hi" encodes to 6 bytes: a one-byte prefix.
        assert_eq!(buf[0], 6);
        let mut r = buf.as_slice();
        assert_eq!(
            read_message::<Request>(&mut r, MAX_MESSAGE_BYTES).unwrap(),
            Some(echo("hi"))
        );
        assert_eq!(
            read_message::<Request>(&mut r, MAX_MESSAGE_BYTES).unwrap(),
            Some(echo(&long))
        );
        assert_eq!(
            read_message::<Request>(&mut r, MAX_MESSAGE_BYTES).unwrap(),
            None
        );
    }

    #[test]
    fn hostile_frames_are_errors() {
        let huge = [0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(matches!(
            read_message::<Request>(&mut huge.as_slice(), MAX_MESSAGE_BYTES),
            Err(Error::TooLarge { .. })
        ));
        let endless = [0x80u8; 11];
        assert!(matches!(
            read_message::<Request>(&mut endless.as_slice(), MAX_MESSAGE_BYTES),
            Err(Error::BadLength)
        ));
        let short = [10u8, 1, 2];
        assert!(matches!(
            read_message::<Request>(&mut short.as_slice(), MAX_MESSAGE_BYTES),
            Err(Error::Truncated)
        ));
        // A length far beyond any memory, allowed by the limit, with three
        // bytes behind it: nothing is allocated for the announced length.
        let mut vast = vec![0x80u8, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40];
        vast.extend_from_slice(&[1, 2, 3]);
        assert!(matches!(
            read_message::<Request>(&mut vast.as_slice(), u64::MAX),
            Err(Error::Truncated)
        ));
        let garbage = [3u8, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_message::<Request>(&mut garbage.as_slice(), MAX_MESSAGE_BYTES),
            Err(Error::Decode(_))
        ));
    }
}
