//! Retention classes: how long each kind of content is kept, whether it must
//! be pinned, and how many replicas the network should hold.
//!
//! Durations are in milliseconds rather than the seed's `time.Duration`: the
//! chain has no wall clock, so it turns them into block counts with
//! [`DataClass::retention_blocks`] and the block-time parameter.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ProtocolError;

const MS_PER_DAY: u64 = 24 * 60 * 60 * 1000;

/// A kind of content with its own retention policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataClass {
    /// Model checkpoints: kept a year, pinned, highly replicated.
    CheckpointModel,
    /// Miners' gradient updates: kept a week.
    GradientUpdate,
    /// Computation traces: kept a day, long enough for challenges.
    ComputationTrace,
}

impl DataClass {
    /// Every class, in the seed's order.
    pub const ALL: [DataClass; 3] = [
        DataClass::CheckpointModel,
        DataClass::GradientUpdate,
        DataClass::ComputationTrace,
    ];

    /// How long content of this class is kept, in milliseconds.
    /// A year is 365 days.
    pub const fn retention_ms(self) -> u64 {
        match self {
            DataClass::CheckpointModel => 365 * MS_PER_DAY,
            DataClass::GradientUpdate => 7 * MS_PER_DAY,
            DataClass::ComputationTrace => MS_PER_DAY,
        }
    }

    /// Whether holders must pin the content for the whole retention period.
    pub const fn pinning_required(self) -> bool {
        matches!(self, DataClass::CheckpointModel)
    }

    /// How many replicas of the content the network should keep.
    pub const fn replication_level(self) -> u64 {
        match self {
            DataClass::CheckpointModel => 10,
            DataClass::GradientUpdate => 3,
            DataClass::ComputationTrace => 2,
        }
    }

    /// The class's name as it appears in the seed and on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            DataClass::CheckpointModel => "checkpoint_model",
            DataClass::GradientUpdate => "gradient_update",
            DataClass::ComputationTrace => "computation_trace",
        }
    }

    /// The retention period in blocks of `block_time_ms` milliseconds,
    /// rounded up so content never expires early.
    ///
    /// A zero block time is an error ([`ProtocolError::ZeroBlockTime`]) rather
    /// than a saturated count: it can only come from a broken parameter, and
    /// "keep forever" would hide that.
    pub fn retention_blocks(self, block_time_ms: u64) -> Result<u64, ProtocolError> {
        if block_time_ms == 0 {
            return Err(ProtocolError::ZeroBlockTime);
        }
        Ok(self.retention_ms().div_ceil(block_time_ms))
    }
}

impl fmt::Display for DataClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DataClass {
    type Err = ProtocolError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        DataClass::ALL
            .into_iter()
            .find(|class| class.as_str() == name)
            .ok_or_else(|| ProtocolError::UnknownDataClass(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn policies_match_the_seed_table() {
        let hour = 60 * 60 * 1000;
        let table = [
            ("checkpoint_model", 365 * 24 * hour, true, 10),
            ("gradient_update", 7 * 24 * hour, false, 3),
            ("computation_trace", 24 * hour, false, 2),
        ];
        for (class, (name, ms, pinned, replicas)) in DataClass::ALL.into_iter().zip(table) {
            assert_eq!(class.as_str(), name);
            assert_eq!(class.retention_ms(), ms);
            assert_eq!(class.pinning_required(), pinned);
            assert_eq!(class.replication_level(), replicas);
        }
        assert_eq!(DataClass::CheckpointModel.retention_ms(), 31_536_000_000);
    }

    #[test]
    fn names_round_trip_through_from_str_display_and_serde() {
        for class in DataClass::ALL {
            assert_eq!(class.as_str().parse::<DataClass>(), Ok(class));
            assert_eq!(class.to_string(), class.as_str());
            let json = serde_json::to_string(&class).unwrap();
            assert_eq!(json, format!("\"{}\"", class.as_str()));
            assert_eq!(serde_json::from_str::<DataClass>(&json).unwrap(), class);
        }
    }

    #[test]
    fn unknown_names_are_rejected_with_the_name() {
        for bad in ["", "checkpoint", "Checkpoint_Model", "gradient_update "] {
            let err = bad.parse::<DataClass>().unwrap_err();
            assert_eq!(err, ProtocolError::UnknownDataClass(bad.to_owned()));
            assert!(err.to_string().contains(&format!("{bad:?}")));
        }
    }

    #[test]
    fn retention_blocks_rounds_up() {
        let week = DataClass::GradientUpdate;
        assert_eq!(week.retention_blocks(1), Ok(604_800_000));
        assert_eq!(week.retention_blocks(6_000), Ok(100_800));
        // 7_000 ms divides a week exactly; 7_001 ms leaves a remainder (86_387.66).
        assert_eq!(week.retention_blocks(7_000), Ok(86_400));
        assert_eq!(week.retention_blocks(7_001), Ok(86_388));
        assert_eq!(week.retention_blocks(u64::MAX), Ok(1));
    }

    #[test]
    fn zero_block_time_is_an_error() {
        for class in DataClass::ALL {
            assert_eq!(class.retention_blocks(0), Err(ProtocolError::ZeroBlockTime));
        }
    }

    proptest! {
        #[test]
        fn retention_blocks_is_the_smallest_covering_count(
            index in 0..DataClass::ALL.len(),
            block_time_ms in 1u64..=u64::MAX,
        ) {
            let class = DataClass::ALL[index];
            let blocks = u128::from(class.retention_blocks(block_time_ms)?);
            let ms = u128::from(class.retention_ms());
            let block_time = u128::from(block_time_ms);
            prop_assert!(blocks * block_time >= ms);
            prop_assert!((blocks - 1) * block_time < ms);
        }
    }
}
