//! Bridges between blocking repo work and async HTTP bodies.
//!
//! - [`stream_body`] runs a blocking producer (a `cat`, a CAR export) that writes
//!   into a [`ChannelWriter`]; the response body reads the other end. The
//!   channel is bounded, so a slow client slows the producer instead of filling
//!   memory, and a client that goes away stops it (its next write fails).
//! - [`ChannelReader`] is the other direction: an upload's chunks arrive on a
//!   channel and a blocking importer reads them as a `std::io::Read`.

use std::io::{self, Read, Write};

use axum::body::Body;
use bytes::Bytes;
use tokio::sync::mpsc;

/// Bytes collected before a chunk is handed to the body.
const CHUNK: usize = 256 * 1024;
/// Chunks in flight per response or upload.
const DEPTH: usize = 4;

type Item = Result<Bytes, io::Error>;

/// The writing end of a response body, used from a blocking thread.
pub struct ChannelWriter {
    tx: mpsc::Sender<Item>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }

    /// Ends the body with an error: the connection is cut before the final
    /// chunk, so the client sees an incomplete response rather than a short one
    /// that looks complete.
    fn fail(mut self, message: String) {
        self.buf.clear();
        let _ = self.tx.blocking_send(Err(io::Error::other(message)));
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        let room = CHUNK - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// A response body filled by `produce` on the blocking pool. An error from
/// `produce` (other than the client going away) is logged and cuts the body.
pub fn stream_body<F>(what: String, produce: F) -> Body
where
    F: FnOnce(&mut ChannelWriter) -> Result<(), String> + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<Item>(DEPTH);
    tokio::task::spawn_blocking(move || {
        let mut writer = ChannelWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
        };
        let outcome = produce(&mut writer).and_then(|()| {
            writer
                .flush()
                .map_err(|e| format!("sending the last bytes: {e}"))
        });
        if let Err(message) = outcome {
            if writer.tx.is_closed() {
                tracing::debug!("{what}: the client went away");
            } else {
                tracing::warn!("{what} failed while streaming: {message}");
                writer.fail(format!("{what}: {message}"));
            }
        }
    });
    Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

/// The sending end of an upload: the async side pushes chunks, then drops it.
pub type UploadSender = mpsc::Sender<Item>;

/// A blocking `Read` over chunks sent from the async side.
pub struct ChannelReader {
    rx: mpsc::Receiver<Item>,
    current: Bytes,
}

impl ChannelReader {
    /// A connected sender and reader.
    pub fn pair() -> (UploadSender, ChannelReader) {
        let (tx, rx) = mpsc::channel(DEPTH);
        (
            tx,
            ChannelReader {
                rx,
                current: Bytes::new(),
            },
        )
    }
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.current.len());
        out[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn body_carries_everything_written() {
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let expected = data.clone();
        let body = stream_body("test".into(), move |w| {
            for piece in data.chunks(7777) {
                w.write_all(piece).map_err(|e| e.to_string())?;
            }
            Ok(())
        });
        let mut got = Vec::new();
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            got.extend_from_slice(&chunk.unwrap());
        }
        assert_eq!(got, expected);
    }

    #[tokio::test]
    async fn a_failing_producer_cuts_the_body() {
        let body = stream_body("test".into(), |w| {
            w.write_all(b"partial").map_err(|e| e.to_string())?;
            w.flush().map_err(|e| e.to_string())?;
            Err("block missing".into())
        });
        let mut stream = body.into_data_stream();
        assert_eq!(stream.next().await.unwrap().unwrap(), "partial");
        let err = stream.next().await.unwrap().unwrap_err();
        assert!(err.to_string().contains("block missing"), "{err}");
    }

    #[tokio::test]
    async fn reader_sees_chunks_then_eof_or_error() {
        let (tx, mut reader) = ChannelReader::pair();
        let task = tokio::task::spawn_blocking(move || {
            let mut all = Vec::new();
            let res = reader.read_to_end(&mut all);
            (all, res.is_ok())
        });
        tx.send(Ok(Bytes::from_static(b"hello "))).await.unwrap();
        tx.send(Ok(Bytes::from_static(b"world"))).await.unwrap();
        drop(tx);
        let (all, ok) = task.await.unwrap();
        assert_eq!(all, b"hello world");
        assert!(ok);

        let (tx, mut reader) = ChannelReader::pair();
        let task = tokio::task::spawn_blocking(move || {
            let mut all = Vec::new();
            reader.read_to_end(&mut all).unwrap_err().to_string()
        });
        tx.send(Err(io::Error::other("upload cut"))).await.unwrap();
        assert!(task.await.unwrap().contains("upload cut"));
    }
}
