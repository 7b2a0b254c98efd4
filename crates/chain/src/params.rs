//! Keeper parameters (issue 5) with the seed's defaults.
//!
//! Every value is an integer: durations are in blocks or milliseconds,
//! fractions in parts per million (ppm). Retention periods are derived from
//! `block_time_ms` and the seed's `DataPolicies`
//! ([`r3mes_protocol::retention::DataClass`]) by
//! [`Params::default_for_block_time`], so a chain with a different block
//! time keeps the seed's wall-clock retention; [`Params::data_policies`]
//! gives the whole policy table (retention in blocks, replication level,
//! pinning) as this chain applies it.

use r3mes_protocol::retention::DataClass;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// One million: the denominator of every `*_ppm` parameter.
pub const PPM: u64 = 1_000_000;

/// The keeper's parameters, stored in genesis (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Milliseconds per block; block time is `height * block_time_ms`.
    /// Default 1000 (1 s, the node's default block time).
    pub block_time_ms: u64,
    /// Blocks a challenged party has to answer. Default 3.
    pub response_window: u64,
    /// Leaf positions named by one availability challenge. Default 8.
    pub challenge_leaves: u32,
    /// Share of a block's gradients sampled for challenges, ppm. Default
    /// 100,000 (10 %).
    pub sample_rate_ppm: u64,
    /// Upper bound of challenges created per block. Default 100.
    pub max_challenges_per_block: u32,
    /// Share of the stake slashed for a failed availability challenge, ppm.
    /// Default 50,000 (5 %).
    pub slash_availability_ppm: u64,
    /// Blocks per training round. Default 100.
    pub round_length: u64,
    /// Blocks a checkpoint is retained (1 year of blocks).
    pub retention_checkpoint_blocks: u64,
    /// Blocks a gradient is retained (1 week of blocks).
    pub retention_gradient_blocks: u64,
    /// Blocks a trace is retained (1 day of blocks).
    pub retention_trace_blocks: u64,
    /// Largest encoded transaction accepted, bytes. Default 65,536.
    pub max_tx_bytes: u64,
    /// Largest allowed distance between a transaction's timestamp and the
    /// block time, ms. Default 60,000.
    pub max_clock_skew_ms: u64,
    /// Leading zero bits required of a gradient's proof-of-work hash.
    /// Default 16.
    pub pow_difficulty_bits: u32,
    /// Largest encoded `MsgRespondChallenge` transaction, bytes (it carries
    /// up to `challenge_leaves` leaf blocks of 256 KiB and their ancestors).
    /// Default 4 MiB.
    pub max_response_bytes: u64,
    /// Share of a slashed amount credited to the challenger (or verifying
    /// validator), ppm; the rest is burned. Default 500,000 (50 %).
    pub challenger_reward_ppm: u64,
    /// Share of the miner's stake slashed for a failed tolerant
    /// verification, ppm. Default 20,000 (2 %).
    pub slash_verification_ppm: u64,
    /// Smallest stake that lets an account submit gradients, uremes.
    /// Default 1.
    pub min_miner_stake: u64,
    /// Blocks unbonding stake stays slashable before it returns to the
    /// balance. Default 100.
    pub unbonding_blocks: u64,
    /// Most chunks one gradient may claim (at most 8, which keeps a stored
    /// record under 1 KB). Default 8.
    pub max_chunks_per_gradient: u32,
    /// Validator approvals that move a proposed dataset to the approved
    /// registry. Default 1.
    pub dataset_approvals: u32,
    /// Shard count of rounds while no dataset is approved. Default 1.
    pub default_total_shards: u64,
    /// Most records removed by retention GC per block; the rest wait for
    /// the next block. Default 1,000.
    pub max_gc_per_block: u32,
    /// Most overdue challenges failed per block; the rest wait for the next
    /// block. Default 1,000.
    pub max_challenge_deadlines_per_block: u32,
    /// Largest pinning reward per block a pin may claim, uremes. Default 10.
    pub max_pin_reward_per_block: u64,
    /// Smallest stake a pin must bond, uremes. Default 1,000.
    pub min_pin_stake: u64,
    /// Longest pinning obligation, blocks (default: the checkpoint
    /// retention).
    pub max_pin_blocks: u64,
}

impl Default for Params {
    fn default() -> Self {
        Self::default_for_block_time(1000)
    }
}

impl Params {
    /// The seed's defaults with retention periods computed for
    /// `block_time_ms` (rounded up to whole blocks; a zero block time gives
    /// zero retention and fails [`validate`](Self::validate)).
    pub fn default_for_block_time(block_time_ms: u64) -> Self {
        let blocks = |class: DataClass| class.retention_blocks(block_time_ms).unwrap_or(0);
        Params {
            block_time_ms,
            response_window: 3,
            challenge_leaves: 8,
            sample_rate_ppm: 100_000,
            max_challenges_per_block: 100,
            slash_availability_ppm: 50_000,
            round_length: 100,
            retention_checkpoint_blocks: blocks(DataClass::CheckpointModel),
            retention_gradient_blocks: blocks(DataClass::GradientUpdate),
            retention_trace_blocks: blocks(DataClass::ComputationTrace),
            max_tx_bytes: 65_536,
            max_clock_skew_ms: 60_000,
            pow_difficulty_bits: 16,
            max_response_bytes: 4 * 1024 * 1024,
            challenger_reward_ppm: 500_000,
            slash_verification_ppm: 20_000,
            min_miner_stake: 1,
            unbonding_blocks: 100,
            max_chunks_per_gradient: 8,
            dataset_approvals: 1,
            default_total_shards: 1,
            max_gc_per_block: 1_000,
            max_challenge_deadlines_per_block: 1_000,
            max_pin_reward_per_block: 10,
            min_pin_stake: 1_000,
            max_pin_blocks: blocks(DataClass::CheckpointModel),
        }
    }

    /// Blocks content of `class` is retained on this chain.
    pub fn retention_blocks(&self, class: DataClass) -> u64 {
        match class {
            DataClass::CheckpointModel => self.retention_checkpoint_blocks,
            DataClass::GradientUpdate => self.retention_gradient_blocks,
            DataClass::ComputationTrace => self.retention_trace_blocks,
        }
    }

    /// The seed's `DataPolicies` as this chain applies them: per class, the
    /// retention in blocks (these parameters) with the seed's replication
    /// level and pinning requirement. Model versions are checkpoints;
    /// gradients and replicas are gradient updates; traces, closed
    /// challenges and verification results are computation traces.
    pub fn data_policies(&self) -> Vec<DataPolicy> {
        DataClass::ALL
            .into_iter()
            .map(|class| DataPolicy {
                data_type: class.as_str().to_owned(),
                retention_blocks: self.retention_blocks(class),
                replication_level: class.replication_level(),
                pinning_required: class.pinning_required(),
            })
            .collect()
    }

    /// Checks every parameter's range; the error names the first bad one.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(Error::InvalidParams(what.to_owned()));
        if self.block_time_ms == 0 {
            return bad("block_time_ms must be positive");
        }
        if self.response_window == 0 {
            return bad("response_window must be positive");
        }
        if self.challenge_leaves == 0 {
            return bad("challenge_leaves must be positive");
        }
        if self.sample_rate_ppm > PPM {
            return bad("sample_rate_ppm must be at most 1000000");
        }
        if self.slash_availability_ppm > PPM {
            return bad("slash_availability_ppm must be at most 1000000");
        }
        if self.round_length == 0 {
            return bad("round_length must be positive");
        }
        if self.retention_trace_blocks == 0
            || self.retention_gradient_blocks == 0
            || self.retention_checkpoint_blocks == 0
        {
            return bad("retention periods must be positive");
        }
        if self.retention_gradient_blocks <= self.response_window.saturating_add(1) {
            return bad(
                "retention_gradient_blocks must exceed response_window + 1 (a gradient sampled the block after its inclusion must outlive its challenge deadline)",
            );
        }
        if self.max_tx_bytes == 0 {
            return bad("max_tx_bytes must be positive");
        }
        if self.pow_difficulty_bits > 256 {
            return bad("pow_difficulty_bits must be at most 256");
        }
        if self.max_response_bytes < self.max_tx_bytes {
            return bad("max_response_bytes must be at least max_tx_bytes");
        }
        if self.challenger_reward_ppm > PPM || self.slash_verification_ppm > PPM {
            return bad("challenger_reward_ppm and slash_verification_ppm must be at most 1000000");
        }
        if self.challenge_leaves > 64 {
            return bad("challenge_leaves must be at most 64");
        }
        if self.max_chunks_per_gradient == 0 || self.max_chunks_per_gradient > 8 {
            return bad("max_chunks_per_gradient must be in 1..=8");
        }
        if self.dataset_approvals == 0 {
            return bad("dataset_approvals must be positive");
        }
        if self.default_total_shards == 0 {
            return bad("default_total_shards must be positive");
        }
        if self.max_gc_per_block == 0 || self.max_challenge_deadlines_per_block == 0 {
            return bad("max_gc_per_block and max_challenge_deadlines_per_block must be positive");
        }
        if self.unbonding_blocks <= self.response_window.saturating_add(1) {
            return bad(
                "unbonding_blocks must exceed response_window + 1 (stake must stay slashable until a sampled submission's deadline)",
            );
        }
        if self.max_pin_blocks == 0 {
            return bad("max_pin_blocks must be positive");
        }
        Ok(())
    }
}

/// One row of the seed's `DataPolicies` (`RetentionPolicy`), in blocks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataPolicy {
    /// The seed's data type name (`checkpoint_model`, `gradient_update`,
    /// `computation_trace`).
    pub data_type: String,
    /// Blocks the chain keeps its records.
    pub retention_blocks: u64,
    /// Copies the network should hold (pinners, replicas).
    pub replication_level: u64,
    /// Whether holders must keep it pinned for the whole retention.
    pub pinning_required: bool,
}
