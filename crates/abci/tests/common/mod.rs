//! Shared scaffolding of the ABCI integration tests: deterministic test
//! chains (keys, addresses, genesis, signed transfers, the `InitChain`
//! request), block hashes standing for CometBFT's, and servers over a
//! keeper store on disk.

use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use r3mes_abci::{App, Server};
use r3mes_chain::genesis::{GenesisAccount, GenesisFile};
use r3mes_chain::params::Params;
use r3mes_chain::proto::{MsgSend, TxBody, tx_body};
use r3mes_chain::state::State;
use r3mes_chain::{Address, SecretKey, SignedTx};
use tendermint_proto::v0_38::abci::RequestInitChain;

/// A test chain: its id, the accounts of its genesis (keys `1..=accounts`,
/// told apart from other tests' by `key_tag`, account 1 the validator) and
/// its parameters.
pub struct TestChain {
    /// The chain id.
    pub id: &'static str,
    /// The last byte of every key of this chain.
    pub key_tag: u8,
    /// How many genesis accounts.
    pub accounts: u32,
    /// Each account's genesis balance.
    pub balance: &'static str,
    /// Each account's genesis stake.
    pub stake: &'static str,
    /// The chain's parameters.
    pub params: Params,
}

impl TestChain {
    /// The secret key of account `i`.
    pub fn key(&self, i: u32) -> SecretKey {
        let mut bytes = [0u8; 32];
        bytes[..4].copy_from_slice(&i.to_be_bytes());
        bytes[31] = self.key_tag;
        SecretKey::from_bytes(&bytes).expect("valid test key")
    }

    /// The address of account `i`.
    pub fn addr(&self, i: u32) -> Address {
        self.key(i).public_key().address()
    }

    /// The genesis file, as CometBFT passes it in `app_state_bytes`.
    pub fn genesis_json(&self) -> String {
        let file = GenesisFile {
            chain_id: self.id.into(),
            genesis_time_ms: 1_700_000_000_000,
            params: self.params.clone(),
            accounts: (1..=self.accounts)
                .map(|i| GenesisAccount {
                    address: self.addr(i).to_string(),
                    balance: self.balance.into(),
                    stake: self.stake.into(),
                })
                .collect(),
            validators: vec![self.addr(1).to_string()],
        };
        serde_json::to_string(&file).expect("genesis JSON")
    }

    /// CometBFT's `InitChain` for this chain, from height 1.
    pub fn init_chain(&self) -> RequestInitChain {
        RequestInitChain {
            chain_id: self.id.into(),
            app_state_bytes: self.genesis_json().into_bytes().into(),
            initial_height: 1,
            ..Default::default()
        }
    }

    /// A signed transfer of `amount` from account `from` to `to` at
    /// sequence `seq` for a block at `time_ms`, encoded.
    pub fn send(&self, from: u32, to: u32, amount: u64, seq: u64, time_ms: i64) -> Vec<u8> {
        let body = TxBody {
            msg: Some(tx_body::Msg::Send(MsgSend {
                from: self.addr(from).to_string(),
                to: self.addr(to).to_string(),
                amount_low: amount,
                amount_high: 0,
            })),
        };
        SignedTx::sign(body, &self.key(from), seq, self.id, time_ms)
            .expect("sign")
            .encode()
    }
}

/// A block hash as CometBFT would send for `height` (any 32 bytes).
pub fn block_hash(height: i64) -> Vec<u8> {
    r3mes_chain::crypto::sha256(&height.to_be_bytes()).to_vec()
}

/// Opens the keeper store at `path`; waits (up to 5 s) for a previous
/// server's connection threads to let go of it.
pub fn open_state(path: &Path) -> State {
    // The stopped server's connection thread drops its store when it sees
    // the closed socket; on a loaded machine that can take a while.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match State::open(path) {
            Ok(state) => return state,
            Err(r3mes_chain::Error::StateLocked { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// Serves `app` on an ephemeral local port with the default limits.
pub fn serve(app: App) -> Server {
    Server::start(
        TcpListener::bind("127.0.0.1:0").expect("bind"),
        Arc::new(Mutex::new(app)),
    )
    .expect("start")
}
