//! Arbitrary bytes as a CometBFT connection: frames are read with the
//! socket codec and every request that decodes is answered by a fresh
//! application (first without a genesis, then with one). Nothing panics;
//! bad frames end the session with an error.

#![no_main]

use libfuzzer_sys::fuzz_target;
use r3mes_abci::App;
use r3mes_abci::codec::read_message;
use r3mes_chain::state::State;
use tendermint_proto::v0_38::abci::Request;

fuzz_target!(|data: &[u8]| {
    let Ok(state) = State::in_memory() else {
        return;
    };
    let Ok(mut app) = App::new(state) else {
        return;
    };
    let mut stream = data;
    while let Ok(Some(req)) = read_message::<Request>(&mut stream, 1 << 20) {
        let _ = app.handle(req);
    }
});
