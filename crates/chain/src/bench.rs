//! The keeper's benchmark (`r3mes bench chain`): signed `MsgSubmitGradient`
//! transactions applied in blocks on a redb file, signature checks
//! included, then retention GC of every record they stored.
//!
//! Preparation (not timed): a genesis with `miners` staked accounts, and
//! `txs` transactions signed by them (one per miner per block, so blocks
//! hold distinct signers), each over a distinct CIDv0 with its proof of work
//! solved. The timed part is what a node does per block: decode and apply
//! every transaction (signature, sequence, PoW, stake, round, shard, new
//! CID), the end-of-block work (deadlines, sampling at the default 10 %,
//! rounds, GC) and the durable commit with the app hash. Then the state's
//! file size is divided by the number of records, and empty blocks run until
//! every record has expired, counting removals per block against
//! `max_gc_per_block`.
//!
//! This module reads the wall clock to time the run; it is never used by
//! the state machine.

use std::path::Path;
use std::time::Instant;

use crate::crypto::{SecretKey, sha256};
use crate::genesis::{Genesis, GenesisAccount, GenesisFile};
use crate::gradients::solve_pow;
use crate::keeper::Keeper;
use crate::params::Params;
use crate::proto::{ChunkData, GradientMetadata, MsgSubmitGradient, TxBody, event, tx_body};
use crate::state::State;
use crate::tx::SignedTx;
use crate::{Error, Result};

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Transactions to apply.
    pub txs: usize,
    /// Transactions per block (also the number of miners).
    pub block_size: usize,
    /// Leading zero bits of the proof of work (checking costs one hash
    /// whatever the difficulty; solving it is preparation).
    pub pow_difficulty_bits: u32,
    /// Threads that sign during preparation.
    pub prepare_threads: usize,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            txs: 100_000,
            block_size: 1_000,
            pow_difficulty_bits: 8,
            prepare_threads: 2,
        }
    }
}

/// What was measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchReport {
    /// Transactions applied.
    pub txs: usize,
    /// Blocks they filled.
    pub blocks: usize,
    /// Seconds spent preparing (signing, PoW): not part of the rate.
    pub prepare_secs: f64,
    /// Seconds to apply, end and commit every block.
    pub apply_secs: f64,
    /// Transactions per second (one thread).
    pub tx_per_sec: f64,
    /// Slowest block, ms.
    pub max_block_ms: f64,
    /// Seconds spent delivering transactions.
    pub deliver_secs: f64,
    /// Seconds spent in end-of-block work.
    pub end_block_secs: f64,
    /// Seconds spent committing (redb write, app hash, fsync).
    pub commit_secs: f64,
    /// State file size after the run, bytes.
    pub state_file_bytes: u64,
    /// State file size per stored gradient, bytes.
    pub bytes_per_record: f64,
    /// Disk blocks the state file occupies (its length has sparse,
    /// preallocated regions), bytes.
    pub state_allocated_bytes: u64,
    /// Allocated bytes per stored gradient.
    pub allocated_bytes_per_record: f64,
    /// Bytes per stored gradient of every live key and value in the state
    /// (records, indexes, accounts, challenges), before redb's overhead.
    pub live_bytes_per_record: f64,
    /// Mean encoded `StoredGradient`, bytes.
    pub record_encoded_bytes: f64,
    /// Challenges the sampling issued.
    pub challenges: usize,
    /// Records removed by GC.
    pub gc_removed: usize,
    /// Blocks GC took.
    pub gc_blocks: usize,
    /// Most records removed in one block.
    pub gc_max_per_block: usize,
    /// The bound (`max_gc_per_block`).
    pub gc_bound: u32,
    /// Slowest GC block, ms.
    pub gc_max_block_ms: f64,
}

fn miner_key(i: usize) -> Result<SecretKey> {
    let mut bytes = sha256(&(i as u64).to_be_bytes());
    bytes[0] = 0x10;
    SecretKey::from_bytes(&bytes)
}

/// A block's hash in the benchmark (the node hashes its header).
fn block_hash(height: u64) -> [u8; 32] {
    sha256(&[b"bench-block".as_slice(), &height.to_be_bytes()].concat())
}

/// The distinct CIDv0 of transaction `n` (the keeper never reads content).
fn gradient_cid(n: usize) -> cid::Cid {
    let mh = r3mes_ipfs::cids::multihash_from_digest(&sha256(&(n as u64).to_be_bytes()));
    cid::Cid::new_v0(mh).unwrap_or_default()
}

/// Runs the benchmark with the state file in `dir`. `progress` receives a
/// line per phase.
pub fn run(
    config: &BenchConfig,
    dir: &Path,
    mut progress: impl FnMut(&str),
) -> Result<BenchReport> {
    if config.block_size == 0 || config.txs == 0 {
        return Err(Error::InvalidParams(
            "txs and block_size must be positive".into(),
        ));
    }
    let blocks = config.txs.div_ceil(config.block_size);
    let miners = config.block_size.min(config.txs);
    let first_height = 3u64;
    let last_height = first_height + blocks as u64 - 1;
    let mut params = Params {
        pow_difficulty_bits: config.pow_difficulty_bits,
        round_length: blocks as u64 + 10,
        ..Params::default()
    };
    params.retention_gradient_blocks = blocks as u64 + 5;
    let keys = (0..miners).map(miner_key).collect::<Result<Vec<_>>>()?;
    let genesis = Genesis::from_file(GenesisFile {
        chain_id: "r3mes-bench".into(),
        genesis_time_ms: 0,
        params: params.clone(),
        accounts: keys
            .iter()
            .map(|k| GenesisAccount {
                address: k.public_key().address().to_string(),
                balance: "1000000".into(),
                stake: "1000000".into(),
            })
            .collect(),
        validators: vec![keys[0].public_key().address().to_string()],
    })?;
    let path = dir.join("bench-state.redb");
    let _ = std::fs::remove_file(&path);
    let keeper = Keeper::init(State::open(&path)?, &genesis)?;
    // Height 2 starts round 1 (its hash seeds AssignShard).
    keeper.begin_block(2, block_hash(2))?.commit()?;
    let round = crate::rounds::current_round(keeper.state())?
        .ok_or_else(|| Error::Store("no round after block 2".into()))?;

    progress(&format!(
        "preparing {} signed transactions from {miners} miners",
        config.txs
    ));
    let start = Instant::now();
    let prepare = |b: usize| -> Result<Vec<Vec<u8>>> {
        let height = first_height + b as u64;
        let time = genesis
            .block_time_ms(height)
            .ok_or_else(|| Error::Store("block time overflow".into()))?;
        let count = config.block_size.min(config.txs - b * config.block_size);
        (0..count)
            .map(|m| {
                let n = b * config.block_size + m;
                let key = &keys[m];
                let miner = key.public_key().address();
                let cid = gradient_cid(n);
                let shard = crate::rounds::assigned_shard(&round, &miner)?;
                let pow_nonce =
                    solve_pow(&miner, &cid, round.round_id, config.pow_difficulty_bits, 0);
                let msg = MsgSubmitGradient {
                    miner: miner.to_string(),
                    ipfs_hash: cid.to_string(),
                    metadata: Some(GradientMetadata {
                        round_id: round.round_id,
                        shard_id: shard,
                        chunks: vec![ChunkData {
                            chunk_id: n as u64,
                            data_hash: gradient_cid(usize::MAX - n).to_string(),
                            token_count: r3mes_protocol::chunk::FIXED_CHUNK_SIZE_TOKENS,
                            shard_id: shard,
                            window_id: round.round_id,
                        }],
                        gpu_architecture: "ampere".into(),
                        backbone_hash: gradient_cid(0).to_string(),
                        format: "protobuf".into(),
                        byte_size: 4 << 20,
                        element_count: 1 << 20,
                    }),
                    pow_nonce,
                };
                let body = TxBody {
                    msg: Some(tx_body::Msg::SubmitGradient(msg)),
                };
                Ok(SignedTx::sign(body, key, b as u64, "r3mes-bench", time)?.encode())
            })
            .collect()
    };
    let threads = config.prepare_threads.max(1);
    let mut prepared: Vec<Option<Vec<Vec<u8>>>> = vec![None; blocks];
    std::thread::scope(|scope| -> Result<()> {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let prepare = &prepare;
                scope.spawn(move || {
                    (t..blocks)
                        .step_by(threads)
                        .map(|b| prepare(b).map(|txs| (b, txs)))
                        .collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        for h in handles {
            let done = h
                .join()
                .map_err(|_| Error::Store("a preparing thread panicked".into()))??;
            for (b, txs) in done {
                prepared[b] = Some(txs);
            }
        }
        Ok(())
    })?;
    let prepare_secs = start.elapsed().as_secs_f64();

    progress(&format!("applying {blocks} blocks"));
    let mut challenges = 0;
    let mut max_block_ms: f64 = 0.0;
    let (mut deliver_secs, mut end_block_secs, mut commit_secs) = (0.0, 0.0, 0.0);
    let start = Instant::now();
    for (b, txs) in prepared.into_iter().enumerate() {
        let height = first_height + b as u64;
        let block_start = Instant::now();
        let mut block = keeper.begin_block(height, block_hash(height))?;
        for bytes in txs.unwrap_or_default() {
            block.deliver_bytes(&bytes)?;
        }
        let delivered = Instant::now();
        let events = block.end_block()?;
        challenges += events
            .iter()
            .filter(|e| matches!(e.kind, Some(event::Kind::ChallengeIssued(_))))
            .count();
        let ended = Instant::now();
        block.commit()?;
        deliver_secs += (delivered - block_start).as_secs_f64();
        end_block_secs += (ended - delivered).as_secs_f64();
        commit_secs += ended.elapsed().as_secs_f64();
        max_block_ms = max_block_ms.max(block_start.elapsed().as_secs_f64() * 1e3);
    }
    let apply_secs = start.elapsed().as_secs_f64();
    let meta =
        std::fs::metadata(&path).map_err(|e| Error::Store(format!("{}: {e}", path.display())))?;
    let state_file_bytes = meta.len();
    let state_allocated_bytes = {
        use std::os::unix::fs::MetadataExt;
        meta.blocks() * 512
    };
    let live_bytes: usize = keeper
        .state()
        .scan_prefix(&[], usize::MAX)?
        .iter()
        .map(|(k, v)| k.len() + v.len())
        .sum();
    let mut encoded = 0usize;
    let mut records = 0usize;
    for (_, v) in keeper
        .state()
        .scan_prefix(&[crate::tables::GRADIENT], usize::MAX)?
    {
        for item in crate::batches::items(&v)? {
            encoded += item.id.len() + item.body.len();
            records += 1;
        }
    }

    progress("collecting expired records");
    let mut gc_removed = 0;
    let mut gc_blocks = 0;
    let mut gc_max_per_block = 0;
    let mut gc_max_block_ms: f64 = 0.0;
    let mut height = last_height + 1;
    while gc_removed < records {
        let block_start = Instant::now();
        let mut block = keeper.begin_block(height, block_hash(height))?;
        let events = block.end_block()?;
        block.commit()?;
        let removed = events
            .iter()
            .filter(|e| {
                matches!(&e.kind, Some(event::Kind::RecordExpired(r)) if r.record_kind == "gradient")
            })
            .count();
        if removed > 0 {
            gc_blocks += 1;
            gc_max_block_ms = gc_max_block_ms.max(block_start.elapsed().as_secs_f64() * 1e3);
        }
        gc_removed += removed;
        gc_max_per_block = gc_max_per_block.max(removed);
        height += 1;
        if height > last_height + params.retention_gradient_blocks + blocks as u64 * 2 + 10 {
            return Err(Error::Store("GC did not finish".into()));
        }
    }
    Ok(BenchReport {
        txs: config.txs,
        blocks,
        prepare_secs,
        apply_secs,
        tx_per_sec: config.txs as f64 / apply_secs,
        max_block_ms,
        deliver_secs,
        end_block_secs,
        commit_secs,
        state_file_bytes,
        bytes_per_record: state_file_bytes as f64 / records.max(1) as f64,
        state_allocated_bytes,
        allocated_bytes_per_record: state_allocated_bytes as f64 / records.max(1) as f64,
        live_bytes_per_record: live_bytes as f64 / records.max(1) as f64,
        record_encoded_bytes: encoded as f64 / records.max(1) as f64,
        challenges,
        gc_removed,
        gc_blocks,
        gc_max_per_block,
        gc_bound: params.max_gc_per_block,
        gc_max_block_ms,
    })
}
