//! The socket server: CometBFT opens several connections (consensus,
//! mempool, query, snapshot); each gets a thread that answers its requests
//! in order, all sharing one [`App`].
//!
//! Resources are bounded by [`Limits`]: a message's length prefix may not
//! exceed `max_message_bytes` (and memory follows the bytes received, not
//! the prefix: see [`crate::codec::read_message`]), and at most
//! `max_connections` connections are served at once; one more is answered
//! with an `Exception` and closed. CometBFT needs four.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use tendermint_proto::v0_38::abci::{Request, Response, ResponseException, response};

use crate::codec::{MAX_MESSAGE_BYTES, read_message, write_message};
use crate::{App, Error};

/// What one server may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest message accepted, bytes.
    pub max_message_bytes: u64,
    /// The most connections served at once.
    pub max_connections: usize,
}

impl Default for Limits {
    /// [`MAX_MESSAGE_BYTES`] and 8 connections (CometBFT's four, and room
    /// for a reconnecting one or an operator's tool).
    fn default() -> Self {
        Limits {
            max_message_bytes: MAX_MESSAGE_BYTES,
            max_connections: 8,
        }
    }
}

/// A running server; [`Server::stop`] (or drop) ends the accept loop.
pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accept: Option<thread::JoinHandle<()>>,
}

impl Server {
    /// Serves `app` on `listener` with the default [`Limits`] until
    /// stopped.
    pub fn start(listener: TcpListener, app: Arc<Mutex<App>>) -> io::Result<Self> {
        Self::start_with(listener, app, Limits::default())
    }

    /// Serves `app` on `listener` within `limits` until stopped.
    pub fn start_with(
        listener: TcpListener,
        app: Arc<Mutex<App>>,
        limits: Limits,
    ) -> io::Result<Self> {
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let accept = thread::Builder::new()
            .name("abci-accept".into())
            .spawn(move || accept_loop(&listener, &app, &flag, limits))?;
        Ok(Server {
            addr,
            stop,
            accept: Some(accept),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections (open ones end when CometBFT closes
    /// them) and waits for the accept loop.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(handle) = self.accept.take() {
            let _ = handle.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Counts a connection while it is served.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    /// Takes a slot if fewer than `max` are taken.
    fn take(open: &Arc<AtomicUsize>, max: usize) -> Option<Slot> {
        open.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
            (n < max).then_some(n + 1)
        })
        .ok()
        .map(|_| Slot(open.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn accept_loop(listener: &TcpListener, app: &Arc<Mutex<App>>, stop: &AtomicBool, limits: Limits) {
    let open = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, peer)) => {
                let Some(slot) = Slot::take(&open, limits.max_connections) else {
                    tracing::warn!(%peer, max = limits.max_connections, "ABCI connection refused");
                    refuse(stream, limits.max_connections);
                    continue;
                };
                let app = app.clone();
                let spawned =
                    thread::Builder::new()
                        .name(format!("abci-{peer}"))
                        .spawn(move || {
                            let _slot = slot;
                            if let Err(error) = serve(stream, &app, limits.max_message_bytes) {
                                tracing::warn!(%peer, %error, "ABCI connection closed");
                            }
                        });
                if let Err(error) = spawned {
                    tracing::error!(%error, "cannot start an ABCI connection thread");
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(20));
            }
            Err(error) => {
                tracing::warn!(%error, "ABCI accept failed");
                thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Answers a connection over the limit with an `Exception` and closes it
/// (without waiting for the peer: the write is small and best effort).
fn refuse(mut stream: TcpStream, max: usize) {
    let exception = Response {
        value: Some(response::Value::Exception(ResponseException {
            error: format!("too many ABCI connections (at most {max})"),
        })),
    };
    let _ = stream
        .set_nonblocking(false)
        .and_then(|()| stream.set_write_timeout(Some(Duration::from_secs(1))));
    let _ = write_message(&mut stream, &exception);
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// Answers requests in order until the peer closes the connection, with
/// messages of at most [`MAX_MESSAGE_BYTES`]. A malformed frame gets an
/// `Exception` response and ends the connection.
pub fn serve_connection(stream: TcpStream, app: &Mutex<App>) -> Result<(), Error> {
    serve(stream, app, MAX_MESSAGE_BYTES)
}

fn serve(stream: TcpStream, app: &Mutex<App>, max_message_bytes: u64) -> Result<(), Error> {
    stream.set_nonblocking(false)?;
    stream.set_nodelay(true)?;
    let mut reader = io::BufReader::new(stream.try_clone()?);
    let mut writer = io::BufWriter::new(stream);
    loop {
        let req: Request = match read_message(&mut reader, max_message_bytes) {
            Ok(Some(req)) => req,
            Ok(None) => return Ok(()),
            Err(e) => {
                let exception = Response {
                    value: Some(response::Value::Exception(ResponseException {
                        error: e.to_string(),
                    })),
                };
                let _ = write_message(&mut writer, &exception).and_then(|()| Ok(writer.flush()?));
                return Err(e);
            }
        };
        let resp = match app.lock() {
            Ok(mut app) => app.handle(req),
            Err(_) => Response {
                value: Some(response::Value::Exception(ResponseException {
                    error: "the application panicked earlier; restart the node".into(),
                })),
            },
        };
        write_message(&mut writer, &resp)?;
        // Every response goes out at once: CometBFT waits for each.
        writer.flush()?;
    }
}
