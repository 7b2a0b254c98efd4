//! Shared harness of the worker's tests: a real keeper in memory (validator
//! 1, staked miners 2..), blocks with deterministic hashes, gradient
//! submissions signed by the test, and real embedded content stores.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use r3mes_chain::apply::TxOutcome;
use r3mes_chain::crypto::sha256;
use r3mes_chain::genesis::{Genesis, GenesisAccount, GenesisFile};
use r3mes_chain::gradients::{GradientFacts, one_chunk_submission};
use r3mes_chain::params::Params;
use r3mes_chain::proto::{Event, TxBody, tx_body};
use r3mes_chain::state::State;
use r3mes_chain::{Address, Keeper, SecretKey, SignedTx};
use r3mes_ipfs::{AddOptions, AddSource, Cid, ContentStore, EmbeddedStore, Repo};

/// The chain id of every test chain.
pub const CHAIN: &str = "r3mes-worker-test-1";
/// The data chunk every test gradient claims to be trained on.
pub const CHUNK: &str = "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH";
/// Stake of every genesis account, uremes.
pub const STAKE: u128 = 1_000_000_000;

/// The secret key of test account `i` (1-based).
pub fn key(i: u32) -> SecretKey {
    let mut bytes = [0u8; 32];
    bytes[..4].copy_from_slice(&i.to_be_bytes());
    bytes[31] = 7;
    SecretKey::from_bytes(&bytes).expect("valid test key")
}

/// The address of test account `i`.
pub fn addr(i: u32) -> Address {
    key(i).public_key().address()
}

/// The seed's defaults with cheap proof of work and short rounds;
/// `sample_rate_ppm` as given.
pub fn params(sample_rate_ppm: u64) -> Params {
    Params {
        pow_difficulty_bits: 4,
        round_length: 50,
        retention_gradient_blocks: 200,
        retention_trace_blocks: 100,
        sample_rate_ppm,
        ..Params::default()
    }
}

/// The deterministic hash of test block `height`.
pub fn block_hash(height: u64) -> [u8; 32] {
    sha256(&[b"worker-test-block".as_slice(), &height.to_be_bytes()].concat())
}

/// A real embedded content store (an in-memory repo).
pub fn content_store() -> (Repo, Arc<dyn ContentStore>) {
    let repo = Repo::in_memory();
    let store: Arc<dyn ContentStore> = Arc::new(EmbeddedStore::new(repo.clone()));
    (repo, store)
}

/// Adds `bytes` to `store` with `chunk_size` leaves, pinned; returns the CID.
pub async fn add(store: &Arc<dyn ContentStore>, bytes: Vec<u8>, chunk_size: usize) -> Cid {
    let options = AddOptions {
        chunk_size,
        ..AddOptions::default()
    };
    store
        .add(AddSource::Bytes(bytes.into()), &options)
        .await
        .expect("add")
        .cid
}

/// Deterministic content of `len` bytes for `seed`.
pub fn content(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(&sha256(&[seed.to_be_bytes(), i.to_be_bytes()].concat()));
        i += 1;
    }
    out.truncate(len);
    out
}

/// A chain under test: validator 1, miners 2..=1+miners.
pub struct Chain {
    pub keeper: Keeper,
}

impl Chain {
    /// A fresh chain in memory at height 1 (genesis).
    pub fn new(miners: u32, params: Params) -> Self {
        let accounts = (1..=1 + miners)
            .map(|i| GenesisAccount {
                address: addr(i).to_string(),
                balance: "1000000000000".into(),
                stake: STAKE.to_string(),
            })
            .collect();
        let genesis = Genesis::from_file(GenesisFile {
            chain_id: CHAIN.into(),
            genesis_time_ms: 1_700_000_000_000,
            params,
            accounts,
            validators: vec![addr(1).to_string()],
        })
        .expect("valid test genesis");
        let keeper = Keeper::init(State::in_memory().expect("state"), &genesis).expect("genesis");
        Chain { keeper }
    }

    /// The committed height.
    pub fn height(&self) -> u64 {
        self.keeper.height().expect("height")
    }

    /// Runs one block with `txs` and commits it; returns each transaction's
    /// result and the end-of-block events.
    pub fn block(&mut self, txs: &[SignedTx]) -> (Vec<r3mes_chain::Result<TxOutcome>>, Vec<Event>) {
        let height = self.height() + 1;
        let mut b = self
            .keeper
            .begin_block(height, block_hash(height))
            .expect("begin");
        let results = txs.iter().map(|tx| b.deliver(tx)).collect();
        let events = b.end_block().expect("end block");
        b.commit().expect("commit");
        (results, events)
    }

    /// Runs empty blocks until the committed height is `height`.
    pub fn advance_to(&mut self, height: u64) -> Vec<Event> {
        let mut events = Vec::new();
        while self.height() < height {
            events.extend(self.block(&[]).1);
        }
        events
    }

    /// Signs `msg` as account `i` with its committed sequence, for the next block.
    pub fn sign(&self, i: u32, msg: tx_body::Msg) -> SignedTx {
        let seq = self.keeper.account(&addr(i)).expect("account").sequence;
        let t = self.keeper.block_time_ms(self.height() + 1).expect("time");
        SignedTx::sign(TxBody { msg: Some(msg) }, &key(i), seq, CHAIN, t).expect("sign")
    }

    /// A valid `MsgSubmitGradient` of miner `i` over `cid`, trained on
    /// [`CHUNK`], in the current round and the miner's shard.
    pub fn gradient_msg(&self, i: u32, cid: &Cid, byte_size: u64, elements: u64) -> tx_body::Msg {
        let (round, shard) =
            r3mes_chain::queries::shard_of(self.keeper.state(), &addr(i), None).expect("round");
        let round = round.round_id;
        let bits = self.keeper.params().pow_difficulty_bits;
        let facts = GradientFacts {
            chunk: CHUNK.into(),
            backbone: CHUNK.into(),
            format: "protobuf".into(),
            byte_size: byte_size.max(1),
            element_count: elements.max(1),
        };
        tx_body::Msg::SubmitGradient(one_chunk_submission(
            &addr(i),
            cid,
            round,
            shard,
            bits,
            &facts,
        ))
    }

    /// The stake of account `i`.
    pub fn stake(&self, i: u32) -> u128 {
        self.keeper.account(&addr(i)).expect("account").stake
    }

    /// The balance of account `i`.
    pub fn balance(&self, i: u32) -> u128 {
        self.keeper.account(&addr(i)).expect("account").balance
    }
}
