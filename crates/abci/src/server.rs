//! The socket server: CometBFT opens several connections (consensus,
//! mempool, query, snapshot); each gets a thread that answers its requests
//! in order, all sharing one [`App`].

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use tendermint_proto::v0_38::abci::{Request, Response, ResponseException, response};

use crate::codec::{MAX_MESSAGE_BYTES, read_message, write_message};
use crate::{App, Error};

/// A running server; [`Server::stop`] (or drop) ends the accept loop.
pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accept: Option<thread::JoinHandle<()>>,
}

impl Server {
    /// Serves `app` on `listener` until stopped.
    pub fn start(listener: TcpListener, app: Arc<Mutex<App>>) -> io::Result<Self> {
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let accept = thread::Builder::new()
            .name("abci-accept".into())
            .spawn(move || accept_loop(&listener, &app, &flag))?;
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

fn accept_loop(listener: &TcpListener, app: &Arc<Mutex<App>>, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, peer)) => {
                let app = app.clone();
                let spawned =
                    thread::Builder::new()
                        .name(format!("abci-{peer}"))
                        .spawn(move || {
                            if let Err(error) = serve_connection(stream, &app) {
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

/// Answers requests in order until the peer closes the connection. A
/// malformed frame gets an `Exception` response and ends the connection.
pub fn serve_connection(stream: TcpStream, app: &Mutex<App>) -> Result<(), Error> {
    stream.set_nonblocking(false)?;
    stream.set_nodelay(true)?;
    let mut reader = io::BufReader::new(stream.try_clone()?);
    let mut writer = io::BufWriter::new(stream);
    loop {
        let req: Request = match read_message(&mut reader, MAX_MESSAGE_BYTES) {
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
