//! A blocking client of the ABCI socket protocol: one TCP connection to an
//! ABCI application (this crate's [`crate::Server`] or any other), speaking
//! the length-prefixed `tendermint-proto` v0.38 messages of [`crate::codec`]
//! the way CometBFT does, one request and its response at a time.
//!
//! For tools and tests that drive an application as CometBFT would:
//! [`Client::call`] sends any request and returns the response as it came
//! (an `Exception` included); the typed helpers ([`Client::info`],
//! [`Client::init_chain`], [`Client::finalize_block`], [`Client::commit`],
//! …) send one kind of request and return that kind of response, turning
//! an `Exception` into [`Error::Exception`] and any other kind into
//! [`Error::Unexpected`].
//!
//! ```no_run
//! use r3mes_abci::client::Client;
//! use tendermint_proto::v0_38::abci::RequestInfo;
//!
//! let mut client = Client::connect("127.0.0.1:26658")?;
//! let info = client.info(RequestInfo::default())?;
//! println!("height {}", info.last_block_height);
//! # Ok::<(), r3mes_abci::client::Error>(())
//! ```

use std::io::{self, BufReader};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use tendermint_proto::v0_38::abci::{
    Request, RequestCheckTx, RequestCommit, RequestEcho, RequestFinalizeBlock, RequestInfo,
    RequestInitChain, RequestPrepareProposal, RequestProcessProposal, RequestQuery, Response,
    ResponseCheckTx, ResponseCommit, ResponseEcho, ResponseFinalizeBlock, ResponseInfo,
    ResponseInitChain, ResponsePrepareProposal, ResponseProcessProposal, ResponseQuery, request,
    response,
};

use crate::codec::{MAX_MESSAGE_BYTES, read_message, write_message};

/// Why a request got no usable response.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The connection could not be opened or configured.
    #[error("ABCI connection: {0}")]
    Io(#[from] io::Error),
    /// Writing the request or reading the response failed (the socket, a
    /// frame over the limit, a truncated or undecodable frame).
    #[error("ABCI exchange: {0}")]
    Protocol(#[from] crate::Error),
    /// The application closed the connection before it answered.
    #[error("the ABCI application closed the connection without answering")]
    Closed,
    /// A response without a value.
    #[error("an empty ABCI response")]
    Empty,
    /// The application answered with an `Exception`; its error text.
    #[error("ABCI exception: {0}")]
    Exception(String),
    /// The application answered with another kind of response.
    #[error("expected an ABCI {expected} response, got {got}")]
    Unexpected {
        /// The kind asked for.
        expected: &'static str,
        /// The kind that came.
        got: &'static str,
    },
}

/// One connection to an ABCI application.
pub struct Client {
    /// Reads the application's responses (buffered).
    reader: BufReader<TcpStream>,
    /// Writes requests (each frame in one write).
    writer: TcpStream,
    /// The largest response accepted, bytes.
    max_message_bytes: u64,
}

impl Client {
    /// Connects to the application at `addr`, with no timeouts and
    /// responses of up to [`MAX_MESSAGE_BYTES`].
    pub fn connect(addr: impl ToSocketAddrs) -> Result<Self, Error> {
        Self::from_stream(TcpStream::connect(addr)?)
    }

    /// A client over an open connection.
    pub fn from_stream(stream: TcpStream) -> Result<Self, Error> {
        stream.set_nodelay(true)?;
        let reader = BufReader::new(stream.try_clone()?);
        Ok(Client {
            reader,
            writer: stream,
            max_message_bytes: MAX_MESSAGE_BYTES,
        })
    }

    /// Bounds how long one read or write on the connection may wait
    /// (`None`: no bound). A read that times out is an [`Error::Protocol`].
    pub fn set_timeout(&self, timeout: Option<Duration>) -> Result<(), Error> {
        self.writer.set_read_timeout(timeout)?;
        self.writer.set_write_timeout(timeout)?;
        Ok(())
    }

    /// Sets the largest response accepted, bytes.
    pub fn set_max_message_bytes(&mut self, max: u64) {
        self.max_message_bytes = max;
    }

    /// The connection, for writing raw bytes (a hand-made frame) or closing
    /// a direction. Bytes read through it bypass the client's buffer, which
    /// holds what arrived after the last response read (nothing, unless the
    /// application sent more than it was asked for).
    pub fn stream(&self) -> &TcpStream {
        &self.writer
    }

    /// Sends `request` without waiting for its response.
    pub fn send(&mut self, request: &Request) -> Result<(), Error> {
        write_message(&mut self.writer, request)?;
        Ok(())
    }

    /// Reads the next response; [`Error::Closed`] if the application
    /// closed the connection before its first byte.
    pub fn receive(&mut self) -> Result<Response, Error> {
        read_message(&mut self.reader, self.max_message_bytes)?.ok_or(Error::Closed)
    }

    /// Sends `request` and returns the response as it came, an
    /// `Exception` included.
    pub fn call(&mut self, request: Request) -> Result<Response, Error> {
        self.send(&request)?;
        self.receive()
    }

    /// Sends the request `value` and picks the response kind `expected`
    /// out of the answer with `pick`.
    fn typed<T>(
        &mut self,
        value: request::Value,
        expected: &'static str,
        pick: fn(response::Value) -> Option<T>,
    ) -> Result<T, Error> {
        let value = self
            .call(Request { value: Some(value) })?
            .value
            .ok_or(Error::Empty)?;
        if let response::Value::Exception(e) = value {
            return Err(Error::Exception(e.error));
        }
        let got = kind(&value);
        pick(value).ok_or(Error::Unexpected { expected, got })
    }

    /// `Echo`: the application sends `message` back.
    pub fn echo(&mut self, message: &str) -> Result<ResponseEcho, Error> {
        let req = RequestEcho {
            message: message.into(),
        };
        self.typed(request::Value::Echo(req), "Echo", |v| match v {
            response::Value::Echo(r) => Some(r),
            _ => None,
        })
    }

    /// `Info`: the last committed height and app hash.
    pub fn info(&mut self, req: RequestInfo) -> Result<ResponseInfo, Error> {
        self.typed(request::Value::Info(req), "Info", |v| match v {
            response::Value::Info(r) => Some(r),
            _ => None,
        })
    }

    /// `InitChain`: the genesis.
    pub fn init_chain(&mut self, req: RequestInitChain) -> Result<ResponseInitChain, Error> {
        self.typed(request::Value::InitChain(req), "InitChain", |v| match v {
            response::Value::InitChain(r) => Some(r),
            _ => None,
        })
    }

    /// `Query`: a path (and data) against the committed state.
    pub fn query(&mut self, req: RequestQuery) -> Result<ResponseQuery, Error> {
        self.typed(request::Value::Query(req), "Query", |v| match v {
            response::Value::Query(r) => Some(r),
            _ => None,
        })
    }

    /// `CheckTx`: a transaction for the mempool.
    pub fn check_tx(&mut self, req: RequestCheckTx) -> Result<ResponseCheckTx, Error> {
        self.typed(request::Value::CheckTx(req), "CheckTx", |v| match v {
            response::Value::CheckTx(r) => Some(r),
            _ => None,
        })
    }

    /// `PrepareProposal`: the transactions of a block this validator
    /// proposes.
    pub fn prepare_proposal(
        &mut self,
        req: RequestPrepareProposal,
    ) -> Result<ResponsePrepareProposal, Error> {
        let value = request::Value::PrepareProposal(req);
        self.typed(value, "PrepareProposal", |v| match v {
            response::Value::PrepareProposal(r) => Some(r),
            _ => None,
        })
    }

    /// `ProcessProposal`: whether a proposed block is acceptable.
    pub fn process_proposal(
        &mut self,
        req: RequestProcessProposal,
    ) -> Result<ResponseProcessProposal, Error> {
        let value = request::Value::ProcessProposal(req);
        self.typed(value, "ProcessProposal", |v| match v {
            response::Value::ProcessProposal(r) => Some(r),
            _ => None,
        })
    }

    /// `FinalizeBlock`: runs a decided block.
    pub fn finalize_block(
        &mut self,
        req: RequestFinalizeBlock,
    ) -> Result<ResponseFinalizeBlock, Error> {
        let value = request::Value::FinalizeBlock(req);
        self.typed(value, "FinalizeBlock", |v| match v {
            response::Value::FinalizeBlock(r) => Some(r),
            _ => None,
        })
    }

    /// `Commit`: persists the block last finalized.
    pub fn commit(&mut self) -> Result<ResponseCommit, Error> {
        let value = request::Value::Commit(RequestCommit {});
        self.typed(value, "Commit", |v| match v {
            response::Value::Commit(r) => Some(r),
            _ => None,
        })
    }
}

/// The name of a response's kind, for [`Error::Unexpected`].
fn kind(value: &response::Value) -> &'static str {
    match value {
        response::Value::Exception(_) => "Exception",
        response::Value::Echo(_) => "Echo",
        response::Value::Flush(_) => "Flush",
        response::Value::Info(_) => "Info",
        response::Value::InitChain(_) => "InitChain",
        response::Value::Query(_) => "Query",
        response::Value::CheckTx(_) => "CheckTx",
        response::Value::Commit(_) => "Commit",
        response::Value::ListSnapshots(_) => "ListSnapshots",
        response::Value::OfferSnapshot(_) => "OfferSnapshot",
        response::Value::LoadSnapshotChunk(_) => "LoadSnapshotChunk",
        response::Value::ApplySnapshotChunk(_) => "ApplySnapshotChunk",
        response::Value::PrepareProposal(_) => "PrepareProposal",
        response::Value::ProcessProposal(_) => "ProcessProposal",
        response::Value::ExtendVote(_) => "ExtendVote",
        response::Value::VerifyVoteExtension(_) => "VerifyVoteExtension",
        response::Value::FinalizeBlock(_) => "FinalizeBlock",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};
    use std::thread;

    use r3mes_chain::state::State;
    use tendermint_proto::v0_38::abci::ResponseFlush;

    use crate::{App, Server};

    fn server() -> Server {
        let app = App::new(State::in_memory().unwrap()).unwrap();
        Server::start(
            TcpListener::bind("127.0.0.1:0").unwrap(),
            Arc::new(Mutex::new(app)),
        )
        .unwrap()
    }

    /// A fake application that reads one request and answers with
    /// `answer` (or closes the connection if `None`).
    fn fake(answer: Option<Response>) -> (std::net::SocketAddr, thread::JoinHandle<Request>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let req: Request = read_message(&mut stream, MAX_MESSAGE_BYTES)
                .unwrap()
                .unwrap();
            if let Some(answer) = answer {
                write_message(&mut stream, &answer).unwrap();
            }
            req
        });
        (addr, handle)
    }

    #[test]
    fn typed_requests_get_their_responses_from_the_server() {
        let server = server();
        let mut client = Client::connect(server.local_addr()).unwrap();
        client.set_timeout(Some(Duration::from_secs(10))).unwrap();
        assert_eq!(client.echo("hello").unwrap().message, "hello");
        let info = client.info(RequestInfo::default()).unwrap();
        assert_eq!(info.last_block_height, 0);
        assert!(info.last_block_app_hash.is_empty());
        // `call` returns an exception as it came.
        let resp = client
            .call(Request {
                value: Some(request::Value::InitChain(RequestInitChain {
                    app_state_bytes: b"not a genesis".to_vec().into(),
                    ..Default::default()
                })),
            })
            .unwrap();
        assert!(matches!(resp.value, Some(response::Value::Exception(_))));
        // The typed helper turns it into an error.
        let err = client
            .init_chain(RequestInitChain {
                app_state_bytes: b"not a genesis".to_vec().into(),
                ..Default::default()
            })
            .unwrap_err();
        assert!(
            matches!(err, Error::Exception(ref e) if !e.is_empty()),
            "{err}"
        );
        // The connection is still served.
        assert_eq!(client.echo("again").unwrap().message, "again");
    }

    #[test]
    fn another_kind_of_response_is_unexpected() {
        let flush = Response {
            value: Some(response::Value::Flush(ResponseFlush {})),
        };
        let (addr, fake) = fake(Some(flush));
        let mut client = Client::connect(addr).unwrap();
        let err = client.commit().unwrap_err();
        assert!(
            matches!(
                err,
                Error::Unexpected {
                    expected: "Commit",
                    got: "Flush"
                }
            ),
            "{err}"
        );
        assert_eq!(
            fake.join().unwrap().value,
            Some(request::Value::Commit(RequestCommit {}))
        );
    }

    #[test]
    fn an_empty_response_and_a_closed_connection_are_errors() {
        let (addr, fake_app) = fake(Some(Response { value: None }));
        let mut client = Client::connect(addr).unwrap();
        assert!(matches!(
            client.info(RequestInfo::default()),
            Err(Error::Empty)
        ));
        fake_app.join().unwrap();

        let (addr, fake_app) = fake(None);
        let mut client = Client::connect(addr).unwrap();
        assert!(matches!(client.echo("anyone?"), Err(Error::Closed)));
        fake_app.join().unwrap();
    }

    #[test]
    fn a_response_over_the_limit_is_refused() {
        let big = Response {
            value: Some(response::Value::Echo(ResponseEcho {
                message: "x".repeat(100),
            })),
        };
        let (addr, fake_app) = fake(Some(big));
        let mut client = Client::connect(addr).unwrap();
        client.set_max_message_bytes(10);
        assert!(matches!(
            client.echo("x"),
            Err(Error::Protocol(crate::Error::TooLarge { max: 10, .. }))
        ));
        fake_app.join().unwrap();
    }
}
