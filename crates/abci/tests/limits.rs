//! The socket's resource bounds under hostile peers: a length prefix over
//! the limit is answered and closed at once; one within the limit whose
//! bytes never come holds only what arrived and is answered when its peer
//! gives up; connections past the limit are refused with an `Exception`;
//! and the server keeps serving the well-behaved connections throughout.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use r3mes_abci::client::Client;
use r3mes_abci::{App, Limits, Server};
use r3mes_chain::state::State;
use tendermint_proto::v0_38::abci::response;

const MAX: u64 = 1 << 20;

fn start(max_connections: usize) -> Server {
    let app = App::new(State::in_memory().expect("state")).expect("app");
    Server::start_with(
        TcpListener::bind("127.0.0.1:0").expect("bind"),
        Arc::new(Mutex::new(app)),
        Limits {
            max_message_bytes: MAX,
            max_connections,
        },
    )
    .expect("start")
}

fn connect(server: &Server) -> Client {
    let mut c = Client::connect(server.local_addr()).expect("connect");
    c.set_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    c.set_max_message_bytes(MAX);
    c
}

fn read(client: &mut Client) -> Option<response::Value> {
    client.receive().ok().and_then(|r| r.value)
}

/// Sends an Echo; whether the answer came.
fn echo(client: &mut Client, message: &str) -> bool {
    matches!(client.echo(message), Ok(e) if e.message == message)
}

fn exception(value: Option<response::Value>) -> String {
    match value {
        Some(response::Value::Exception(e)) => e.error,
        other => panic!("expected an exception, got {other:?}"),
    }
}

/// Whether the peer closed `client`'s connection (end of stream or reset).
fn closed(client: &Client) -> bool {
    let mut byte = [0u8; 1];
    matches!(client.stream().read(&mut byte), Ok(0) | Err(_))
}

#[test]
fn hostile_length_prefixes_are_answered_and_others_carry_on() {
    let server = start(4);
    let mut good = connect(&server);
    assert!(echo(&mut good, "before"));

    // Over the limit (2^62 bytes announced): an exception, then the end.
    let mut vast = connect(&server);
    vast.stream()
        .write_all(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40])
        .unwrap();
    let error = exception(read(&mut vast));
    assert!(error.contains("exceeds"), "{error}");
    assert!(closed(&vast));
    assert!(echo(&mut good, "after a vast prefix"));

    // Within the limit, but only a few bytes come: the connection waits
    // for them (holding what arrived, not the announced megabyte) while
    // the others are served; when the peer stops sending, an exception.
    let mut slow = connect(&server);
    slow.stream()
        .write_all(&[0x80, 0x80, 0x40, 1, 2, 3])
        .unwrap();
    assert!(echo(&mut good, "while a frame is incomplete"));
    slow.stream().shutdown(Shutdown::Write).unwrap();
    let error = exception(read(&mut slow));
    assert!(error.contains("ended inside a message"), "{error}");
    assert!(echo(&mut good, "after an incomplete frame"));
}

#[test]
fn connections_past_the_limit_are_refused_until_one_closes() {
    let server = start(4);
    // CometBFT's four: consensus, mempool, info, snapshot.
    let mut four: Vec<Client> = (0..4).map(|_| connect(&server)).collect();
    for (i, s) in four.iter_mut().enumerate() {
        assert!(echo(s, &format!("connection {i}")));
    }
    let mut fifth = connect(&server);
    let error = exception(read(&mut fifth));
    assert!(error.contains("too many ABCI connections"), "{error}");
    assert!(closed(&fifth));
    for s in &mut four {
        assert!(echo(s, "still served"));
    }

    // One closes: its slot is free again (once its thread has seen the end).
    drop(four.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut again = connect(&server);
        if echo(&mut again, "a new connection") {
            break;
        }
        assert!(Instant::now() < deadline, "the slot was never released");
        std::thread::sleep(Duration::from_millis(20));
    }
    for s in &mut four {
        assert!(echo(s, "still served"));
    }
}
