//! Shared harness of the keeper's integration tests: a chain in memory with
//! validators and staked miners, deterministic block hashes, signing with
//! automatic sequences, and real UnixFS content (imported with r3mes-ipfs)
//! whose CIDs and availability proofs are what a miner would produce.

#![allow(dead_code)]

use std::collections::BTreeMap;

use cid::Cid;
use r3mes_chain::apply::{TxOutcome, TxResponse};
use r3mes_chain::crypto::sha256;
use r3mes_chain::genesis::{Genesis, GenesisAccount, GenesisFile};
use r3mes_chain::gradients::solve_pow;
use r3mes_chain::params::Params;
use r3mes_chain::proto::{ChunkData, GradientMetadata, MsgSubmitGradient, TxBody, tx_body};
use r3mes_chain::state::State;
use r3mes_chain::{Address, Keeper, SecretKey, SignedTx};
use r3mes_ipfs::importer::{ImportParams, VecSink, import_bytes};
use r3mes_ipfs::{BlockStore, MemoryBlockStore};

/// The chain id of every test chain.
pub const CHAIN: &str = "r3mes-test-1";

/// The secret key of test account `i` (1-based; never zero).
pub fn key(i: u32) -> SecretKey {
    let mut bytes = [0u8; 32];
    bytes[..4].copy_from_slice(&i.to_be_bytes());
    bytes[31] = 1;
    SecretKey::from_bytes(&bytes).expect("valid test key")
}

/// The address of test account `i`.
pub fn addr(i: u32) -> Address {
    key(i).public_key().address()
}

/// Test parameters: the defaults with cheap proof of work, short rounds
/// and retention periods short enough to reach in a test.
pub fn test_params() -> Params {
    Params {
        pow_difficulty_bits: 4,
        round_length: 20,
        retention_gradient_blocks: 30,
        retention_trace_blocks: 10,
        retention_checkpoint_blocks: 50,
        max_pin_blocks: 100,
        unbonding_blocks: 5,
        ..Params::default()
    }
}

/// Accounts: 1..=validators are validators, then `miners` miners; every
/// account has balance 1e12 and stake 1e9 uremes.
pub fn genesis(validators: u32, miners: u32, params: Params) -> Genesis {
    let accounts = (1..=validators + miners)
        .map(|i| GenesisAccount {
            address: addr(i).to_string(),
            balance: "1000000000000".into(),
            stake: "1000000000".into(),
        })
        .collect();
    Genesis::from_file(GenesisFile {
        chain_id: CHAIN.into(),
        genesis_time_ms: 1_700_000_000_000,
        params,
        accounts,
        validators: (1..=validators).map(|i| addr(i).to_string()).collect(),
    })
    .expect("valid test genesis")
}

/// The deterministic hash of test block `height` (a real node hashes its
/// header; any 32 bytes the producer cannot steer after the fact will do).
pub fn block_hash(height: u64) -> [u8; 32] {
    sha256(&[b"test-block".as_slice(), &height.to_be_bytes()].concat())
}

/// Imports `data` with 1 KiB chunks (multi-level DAGs from little data);
/// returns the root CID and a store holding every block.
pub fn import(data: &[u8]) -> (Cid, MemoryBlockStore) {
    let params = ImportParams {
        chunk_size: 1024,
        raw_leaves: false,
        cid_version: 0,
        max_links: 174,
    };
    let mut sink = VecSink::default();
    let root = import_bytes(data, &params, &mut sink).expect("import").root;
    let store = MemoryBlockStore::new();
    let mut batch = store.batch().expect("batch");
    for (cid, block) in &sink.0 {
        batch.put(cid, block).expect("put");
    }
    batch.commit(false).expect("commit");
    (root, store)
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

/// A chain under test.
pub struct Chain {
    /// The keeper.
    pub keeper: Keeper,
    /// Next sequence per signer, as this harness has signed.
    pub seqs: BTreeMap<u32, u64>,
}

/// The result of one block.
pub struct BlockResult {
    /// Per transaction: its outcome or error.
    pub txs: Vec<r3mes_chain::Result<TxOutcome>>,
    /// End-of-block events.
    pub end_events: Vec<r3mes_chain::proto::Event>,
    /// The app hash.
    pub app_hash: [u8; 32],
}

impl Chain {
    /// A fresh chain in memory at height 1 (genesis).
    pub fn new(validators: u32, miners: u32, params: Params) -> Self {
        let state = State::in_memory().expect("state");
        let keeper = Keeper::init(state, &genesis(validators, miners, params)).expect("genesis");
        Chain {
            keeper,
            seqs: BTreeMap::new(),
        }
    }

    /// A fresh chain whose state is the redb file `path`, at height 1.
    pub fn on_disk(path: &std::path::Path, validators: u32, miners: u32, params: Params) -> Self {
        let state = State::open(path).expect("state");
        let keeper = Keeper::init(state, &genesis(validators, miners, params)).expect("genesis");
        Chain {
            keeper,
            seqs: BTreeMap::new(),
        }
    }

    /// Closes the keeper (checkpointing its index) and opens `path` again.
    pub fn reopen(self, path: &std::path::Path) -> Self {
        let seqs = self.seqs;
        drop(self.keeper);
        let keeper = Keeper::open(State::open(path).expect("state")).expect("open");
        Chain { keeper, seqs }
    }

    /// The next block's height.
    pub fn next_height(&self) -> u64 {
        self.keeper.height().expect("height") + 1
    }

    /// Signs `msg` as account `signer` with the next sequence for the next
    /// block's time (the sequence is consumed even if the tx later fails;
    /// use [`Chain::resync`] after expected failures).
    pub fn sign(&mut self, signer: u32, msg: tx_body::Msg) -> SignedTx {
        let seq = self.seqs.entry(signer).or_insert(0);
        let t = self
            .keeper
            .block_time_ms(self.keeper.height().expect("height") + 1)
            .expect("time");
        let tx =
            SignedTx::sign(TxBody { msg: Some(msg) }, &key(signer), *seq, CHAIN, t).expect("sign");
        *seq += 1;
        tx
    }

    /// Sets every known signer's next sequence from committed state.
    pub fn resync(&mut self) {
        let signers: Vec<u32> = self.seqs.keys().copied().collect();
        for s in signers {
            let seq = self.keeper.account(&addr(s)).expect("account").sequence;
            self.seqs.insert(s, seq);
        }
    }

    /// Runs one block with `txs` and commits it.
    pub fn block(&mut self, txs: Vec<SignedTx>) -> BlockResult {
        let height = self.next_height();
        let mut b = self
            .keeper
            .begin_block(height, block_hash(height))
            .expect("begin");
        let results = txs.iter().map(|tx| b.deliver(tx)).collect();
        let end_events = b.end_block().expect("end block");
        let app_hash = b.commit().expect("commit");
        self.resync();
        BlockResult {
            txs: results,
            end_events,
            app_hash,
        }
    }

    /// Runs empty blocks until the committed height is `height`.
    pub fn advance_to(&mut self, height: u64) -> Vec<r3mes_chain::proto::Event> {
        let mut events = Vec::new();
        while self.keeper.height().expect("height") < height {
            events.extend(self.block(Vec::new()).end_events);
        }
        events
    }

    /// Runs one block with one transaction; returns its result.
    pub fn one(&mut self, tx: SignedTx) -> r3mes_chain::Result<TxOutcome> {
        let mut r = self.block(vec![tx]);
        r.txs.remove(0)
    }

    /// The current round id and the shard miner `i` must train.
    pub fn assignment(&self, i: u32) -> (u64, u64) {
        let (round, shard) =
            r3mes_chain::queries::shard_of(self.keeper.state(), &addr(i), None).expect("round");
        (round.round_id, shard)
    }

    /// A valid `MsgSubmitGradient` for miner `i` over `cid` in the current
    /// round and the miner's shard.
    pub fn gradient_msg(&self, i: u32, cid: &Cid) -> tx_body::Msg {
        let (round, shard) = self.assignment(i);
        let params = self.keeper.params();
        let pow_nonce = solve_pow(&addr(i), cid, round, params.pow_difficulty_bits, 0);
        tx_body::Msg::SubmitGradient(MsgSubmitGradient {
            miner: addr(i).to_string(),
            ipfs_hash: cid.to_string(),
            metadata: Some(GradientMetadata {
                round_id: round,
                shard_id: shard,
                chunks: vec![ChunkData {
                    chunk_id: 7,
                    data_hash: "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG".into(),
                    token_count: 2048,
                    shard_id: shard,
                    window_id: round,
                }],
                gpu_architecture: "cpu".into(),
                backbone_hash: "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG".into(),
                format: "protobuf".into(),
                byte_size: 4096,
                element_count: 1024,
            }),
            pow_nonce,
        })
    }

    /// Submits a fresh gradient of miner `i` (content seeded by `seed`) in
    /// one block; returns its CID and block store.
    pub fn submit_gradient(&mut self, i: u32, seed: u64) -> (Cid, MemoryBlockStore) {
        let (cid, store) = import(&content(seed, 5000));
        let msg = self.gradient_msg(i, &cid);
        let tx = self.sign(i, msg);
        let out = self.one(tx).expect("gradient accepted");
        assert!(matches!(out.response, TxResponse::SubmitGradient(_)));
        (cid, store)
    }
}

// ---------------------------------------------------------------------------
// Helpers of the rule and property tests (rules.rs, properties.rs).

/// Every key/value pair a view of the state holds, in key order.
pub fn dump(store: &impl r3mes_chain::accounts::StoreRead) -> Vec<(Vec<u8>, Vec<u8>)> {
    store.scan_prefix(&[], usize::MAX).expect("scan")
}

/// The sum of every account's balance, stake and unbonding stake plus the
/// stake held in pins: what the total supply must equal.
pub fn holdings(state: &State) -> u128 {
    let mut total: u128 = 0;
    for (_, v) in state
        .scan_prefix(&[r3mes_chain::accounts::ACCOUNT_TABLE], usize::MAX)
        .expect("scan accounts")
    {
        let acc = r3mes_chain::accounts::Account::decode(&v).expect("account");
        total += acc.balance + acc.stake + acc.unbonding;
    }
    total + r3mes_chain::pins::total_pin_stake(state).expect("pin stake")
}

/// Signs `msg` as account `signer` with everything explicit.
pub fn sign_raw(
    signer: u32,
    msg: tx_body::Msg,
    sequence: u64,
    chain_id: &str,
    timestamp_ms: i64,
) -> SignedTx {
    SignedTx::sign(
        TxBody { msg: Some(msg) },
        &key(signer),
        sequence,
        chain_id,
        timestamp_ms,
    )
    .expect("sign")
}

impl Chain {
    /// Runs one block with `tx`, which must fail with error `code` and
    /// leave the block's state exactly as before (the signer's sequence
    /// included); returns the error.
    pub fn reject(&mut self, tx: SignedTx, code: u32) -> r3mes_chain::Error {
        let height = self.next_height();
        let mut b = self
            .keeper
            .begin_block(height, block_hash(height))
            .expect("begin");
        let before = dump(b.store());
        let err = b.deliver(&tx).expect_err("transaction must be rejected");
        assert_eq!(err.code(), code, "unexpected error: {err}");
        assert!(
            before == dump(b.store()),
            "rejected tx changed state: {err}"
        );
        b.commit().expect("commit");
        self.resync();
        err
    }

    /// The committed account of test account `i`.
    pub fn acct(&self, i: u32) -> r3mes_chain::accounts::Account {
        self.keeper.account(&addr(i)).expect("account")
    }

    /// The committed total supply.
    pub fn supply(&self) -> u128 {
        r3mes_chain::queries::supply(self.keeper.state()).expect("supply")
    }

    /// Block time of the next block.
    pub fn next_time(&self) -> i64 {
        self.keeper
            .block_time_ms(self.next_height())
            .expect("block time")
    }
}

/// A `MsgProposeDataset` of `dataset` with `shards`, signed by `provider`
/// and proposed by `proposer`.
pub fn dataset_proposal(
    proposer: u32,
    provider: u32,
    dataset: &Cid,
    shards: &[Cid],
    name: &str,
) -> r3mes_chain::proto::MsgProposeDataset {
    let mut meta = r3mes_chain::proto::DatasetMetadata {
        name: name.into(),
        description: "tokenised text".into(),
        data_type: "text".into(),
        size: 123_456,
        shard_count: shards.len() as u64,
        license: "cc-by-4.0".into(),
        tags: vec!["en".into(), "wiki".into()],
        ..Default::default()
    };
    r3mes_chain::datasets::sign_dataset(&key(provider), dataset, &mut meta, shards)
        .expect("dataset signs");
    r3mes_chain::proto::MsgProposeDataset {
        proposer: addr(proposer).to_string(),
        dataset_hash: dataset.to_string(),
        metadata: Some(meta),
        shard_cids: shards.iter().map(Cid::to_string).collect(),
        schema: "r3mes-tokens-v1".into(),
    }
}

/// `miner`'s replica of `data`: (data CID, replica CID, the replica's
/// blocks, replication id in hex).
pub fn replica_of(miner: u32, data: &[u8]) -> (Cid, Cid, MemoryBlockStore, String) {
    let (data_cid, _) = import(data);
    let rid =
        r3mes_protocol::replica::replication_id(&addr(miner).to_string(), &data_cid.to_bytes());
    let encoded = r3mes_protocol::replica::encode_replica(&rid, data).expect("replica encodes");
    let (replica_cid, store) = import(&encoded);
    (
        data_cid,
        replica_cid,
        store,
        r3mes_chain::tables::hex_lower(&rid),
    )
}

/// A `MsgRegisterReplica` of `miner`.
pub fn replica_msg(miner: u32, data: &Cid, replica: &Cid, rid: &str) -> tx_body::Msg {
    tx_body::Msg::RegisterReplica(r3mes_chain::proto::MsgRegisterReplica {
        miner: addr(miner).to_string(),
        data_hash: data.to_string(),
        replica_hash: replica.to_string(),
        replication_id: rid.into(),
    })
}

/// A model version with `backbone` and adapters (CID, rank, precision).
pub fn model_version(
    version: u64,
    backbone: &Cid,
    adapters: &[(&Cid, u64, &str)],
) -> r3mes_chain::proto::ModelVersion {
    r3mes_chain::proto::ModelVersion {
        version,
        backbone_hash: backbone.to_string(),
        lora_adapters: adapters
            .iter()
            .enumerate()
            .map(
                |(i, (cid, rank, precision))| r3mes_chain::proto::LoraAdapterRef {
                    layer_id: format!("layers.{i}.attn"),
                    rank: *rank,
                    adapter_hash: cid.to_string(),
                    precision: (*precision).into(),
                },
            )
            .collect(),
        training_state_hash: String::new(),
        checksum: vec![1; 32],
        metadata_hash: String::new(),
        block_height: 0,
        expiry_height: 0,
    }
}
