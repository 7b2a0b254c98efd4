//! Typed paths for the content directory layout:
//!
//! ```text
//! models/v{version}/backbone
//! models/v{version}/lora_adapters
//! models/v{version}/metadata.json
//! gradients/window_{window}/miner_{address}
//! gradients/window_{window}/aggregated
//! datasets/approved/{name}
//! datasets/shards/{name}/shard_{shard}
//! checkpoints/epoch_{epoch}
//! ```
//!
//! The seed leaves `datasets/shards/` unstructured; shards are numbered per
//! dataset, so we file them under the dataset's name.
//!
//! Every path renders in one canonical form (relative, `/`-separated, no
//! trailing slash, numbers in decimal without leading zeros) and parses back
//! only from that form, so `parse(render(p)) == p` and `render(parse(s)) == s`.
//! Parsing rejects absolute paths, empty, `.` and `..` segments, unknown
//! roots, non-numeric numbers, and names outside their character sets, which
//! makes a parsed path safe to join onto a directory.

use std::fmt;
use std::str::FromStr;

use crate::ProtocolError;

/// Why a path, or a name meant to be one of its segments, was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathRejection {
    /// The path starts with `/`.
    Absolute,
    /// The path is empty, or has `//` or a trailing `/`.
    EmptySegment,
    /// A segment is `.` or `..`.
    DotSegment,
    /// The first segment is not the expected root directory.
    UnexpectedRoot {
        /// The root or roots that would have been accepted.
        expected: &'static str,
    },
    /// The segments after the root do not match any path of the layout.
    UnexpectedLayout,
    /// A version, window, epoch or shard is not a canonical decimal `u64`.
    InvalidNumber,
    /// A miner address is empty or has characters outside `[a-z0-9]`.
    InvalidMinerAddress,
    /// A dataset name is empty, starts with `.`, or has characters outside
    /// `[a-z0-9_.-]`.
    InvalidDatasetName,
}

impl fmt::Display for PathRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathRejection::Absolute => f.write_str("absolute paths are not allowed"),
            PathRejection::EmptySegment => f.write_str("empty path segment"),
            PathRejection::DotSegment => f.write_str("`.` and `..` segments are not allowed"),
            PathRejection::UnexpectedRoot { expected } => write!(f, "root must be {expected}"),
            PathRejection::UnexpectedLayout => f.write_str("does not match the content layout"),
            PathRejection::InvalidNumber => {
                f.write_str("expected a decimal number without sign or leading zeros")
            }
            PathRejection::InvalidMinerAddress => {
                f.write_str("miner address must be non-empty and only [a-z0-9]")
            }
            PathRejection::InvalidDatasetName => {
                f.write_str("dataset name must be non-empty [a-z0-9_.-] and not start with `.`")
            }
        }
    }
}

/// A miner's address as used in gradient paths: non-empty, `[a-z0-9]` only.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MinerAddress(String);

impl MinerAddress {
    /// Checks `address` and wraps it.
    pub fn new(address: impl Into<String>) -> Result<Self, ProtocolError> {
        let address = address.into();
        match Self::check(&address) {
            Ok(()) => Ok(MinerAddress(address)),
            Err(reason) => Err(ProtocolError::InvalidPath {
                path: address,
                reason,
            }),
        }
    }

    /// The address as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn check(address: &str) -> Result<(), PathRejection> {
        let valid = !address.is_empty()
            && address
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        valid
            .then_some(())
            .ok_or(PathRejection::InvalidMinerAddress)
    }
}

impl fmt::Display for MinerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A dataset's name as used in dataset paths: non-empty, `[a-z0-9_.-]` only,
/// not starting with `.` (which also rules out `.` and `..`). Lowercase only,
/// so two names never collide on a case-insensitive file system.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DatasetName(String);

impl DatasetName {
    /// Checks `name` and wraps it.
    pub fn new(name: impl Into<String>) -> Result<Self, ProtocolError> {
        let name = name.into();
        match Self::check(&name) {
            Ok(()) => Ok(DatasetName(name)),
            Err(reason) => Err(ProtocolError::InvalidPath { path: name, reason }),
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn check(name: &str) -> Result<(), PathRejection> {
        let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b);
        let valid = !name.is_empty() && !name.starts_with('.') && name.bytes().all(allowed);
        valid.then_some(()).ok_or(PathRejection::InvalidDatasetName)
    }
}

impl fmt::Display for DatasetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A part of a model version: `models/v{version}/...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelPath {
    /// `models/v{version}/backbone`: the frozen backbone weights.
    Backbone {
        /// Model version.
        version: u64,
    },
    /// `models/v{version}/lora_adapters`: the shared LoRA adapters.
    LoraAdapters {
        /// Model version.
        version: u64,
    },
    /// `models/v{version}/metadata.json`: the model's metadata.
    Metadata {
        /// Model version.
        version: u64,
    },
}

/// Gradients of a training window: `gradients/window_{window}/...`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum GradientPath {
    /// `gradients/window_{window}/miner_{miner}`: one miner's gradient.
    Miner {
        /// Training window.
        window: u64,
        /// The submitting miner.
        miner: MinerAddress,
    },
    /// `gradients/window_{window}/aggregated`: the window's aggregate.
    Aggregated {
        /// Training window.
        window: u64,
    },
}

/// Training data: `datasets/...`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DatasetPath {
    /// `datasets/approved/{name}`: a governance-approved dataset.
    Approved {
        /// The dataset.
        name: DatasetName,
    },
    /// `datasets/shards/{name}/shard_{shard}`: one shard of a dataset.
    Shard {
        /// The dataset the shard belongs to.
        name: DatasetName,
        /// The shard number within the dataset.
        shard: u64,
    },
}

/// A model checkpoint: `checkpoints/epoch_{epoch}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CheckpointPath {
    /// Training epoch of the checkpoint.
    pub epoch: u64,
}

/// Any path of the layout, told apart by its root directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ContentPath {
    /// Under `models/`.
    Model(ModelPath),
    /// Under `gradients/`.
    Gradient(GradientPath),
    /// Under `datasets/`.
    Dataset(DatasetPath),
    /// Under `checkpoints/`.
    Checkpoint(CheckpointPath),
}

impl fmt::Display for ModelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (version, leaf) = match self {
            ModelPath::Backbone { version } => (version, "backbone"),
            ModelPath::LoraAdapters { version } => (version, "lora_adapters"),
            ModelPath::Metadata { version } => (version, "metadata.json"),
        };
        write!(f, "models/v{version}/{leaf}")
    }
}

impl fmt::Display for GradientPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GradientPath::Miner { window, miner } => {
                write!(f, "gradients/window_{window}/miner_{miner}")
            }
            GradientPath::Aggregated { window } => {
                write!(f, "gradients/window_{window}/aggregated")
            }
        }
    }
}

impl fmt::Display for DatasetPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatasetPath::Approved { name } => write!(f, "datasets/approved/{name}"),
            DatasetPath::Shard { name, shard } => write!(f, "datasets/shards/{name}/shard_{shard}"),
        }
    }
}

impl fmt::Display for CheckpointPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "checkpoints/epoch_{}", self.epoch)
    }
}

impl fmt::Display for ContentPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContentPath::Model(path) => path.fmt(f),
            ContentPath::Gradient(path) => path.fmt(f),
            ContentPath::Dataset(path) => path.fmt(f),
            ContentPath::Checkpoint(path) => path.fmt(f),
        }
    }
}

impl ModelPath {
    fn from_segments(segments: &[&str]) -> Result<Self, PathRejection> {
        let [root, version, leaf] = segments else {
            return Err(root_or_layout(segments, "models"));
        };
        expect_root(root, "models")?;
        let version = prefixed_number(version, "v")?;
        match *leaf {
            "backbone" => Ok(ModelPath::Backbone { version }),
            "lora_adapters" => Ok(ModelPath::LoraAdapters { version }),
            "metadata.json" => Ok(ModelPath::Metadata { version }),
            _ => Err(PathRejection::UnexpectedLayout),
        }
    }
}

impl GradientPath {
    fn from_segments(segments: &[&str]) -> Result<Self, PathRejection> {
        let [root, window, leaf] = segments else {
            return Err(root_or_layout(segments, "gradients"));
        };
        expect_root(root, "gradients")?;
        let window = prefixed_number(window, "window_")?;
        if *leaf == "aggregated" {
            return Ok(GradientPath::Aggregated { window });
        }
        let address = leaf
            .strip_prefix("miner_")
            .ok_or(PathRejection::UnexpectedLayout)?;
        MinerAddress::check(address)?;
        let miner = MinerAddress(address.to_owned());
        Ok(GradientPath::Miner { window, miner })
    }
}

impl DatasetPath {
    fn from_segments(segments: &[&str]) -> Result<Self, PathRejection> {
        match segments {
            ["datasets", "approved", name] => Ok(DatasetPath::Approved {
                name: dataset_name(name)?,
            }),
            ["datasets", "shards", name, shard] => Ok(DatasetPath::Shard {
                name: dataset_name(name)?,
                shard: prefixed_number(shard, "shard_")?,
            }),
            _ => Err(root_or_layout(segments, "datasets")),
        }
    }
}

impl CheckpointPath {
    fn from_segments(segments: &[&str]) -> Result<Self, PathRejection> {
        let [root, epoch] = segments else {
            return Err(root_or_layout(segments, "checkpoints"));
        };
        expect_root(root, "checkpoints")?;
        let epoch = prefixed_number(epoch, "epoch_")?;
        Ok(CheckpointPath { epoch })
    }
}

impl ContentPath {
    fn from_segments(segments: &[&str]) -> Result<Self, PathRejection> {
        match segments.first() {
            Some(&"models") => ModelPath::from_segments(segments).map(ContentPath::Model),
            Some(&"gradients") => GradientPath::from_segments(segments).map(ContentPath::Gradient),
            Some(&"datasets") => DatasetPath::from_segments(segments).map(ContentPath::Dataset),
            Some(&"checkpoints") => {
                CheckpointPath::from_segments(segments).map(ContentPath::Checkpoint)
            }
            _ => Err(PathRejection::UnexpectedRoot {
                expected: "models, gradients, datasets or checkpoints",
            }),
        }
    }
}

macro_rules! from_str_via_segments {
    ($($path:ty),*) => {$(
        impl FromStr for $path {
            type Err = ProtocolError;

            fn from_str(path: &str) -> Result<Self, Self::Err> {
                segments(path)
                    .and_then(|segments| <$path>::from_segments(&segments))
                    .map_err(|reason| ProtocolError::InvalidPath {
                        path: path.to_owned(),
                        reason,
                    })
            }
        }
    )*};
}

from_str_via_segments!(
    ModelPath,
    GradientPath,
    DatasetPath,
    CheckpointPath,
    ContentPath
);

impl From<ModelPath> for ContentPath {
    fn from(path: ModelPath) -> Self {
        ContentPath::Model(path)
    }
}

impl From<GradientPath> for ContentPath {
    fn from(path: GradientPath) -> Self {
        ContentPath::Gradient(path)
    }
}

impl From<DatasetPath> for ContentPath {
    fn from(path: DatasetPath) -> Self {
        ContentPath::Dataset(path)
    }
}

impl From<CheckpointPath> for ContentPath {
    fn from(path: CheckpointPath) -> Self {
        ContentPath::Checkpoint(path)
    }
}

/// Splits a relative path into segments, rejecting the shapes no layout path has.
fn segments(path: &str) -> Result<Vec<&str>, PathRejection> {
    if path.starts_with('/') {
        return Err(PathRejection::Absolute);
    }
    let segments: Vec<&str> = path.split('/').collect();
    for segment in &segments {
        match *segment {
            "" => return Err(PathRejection::EmptySegment),
            "." | ".." => return Err(PathRejection::DotSegment),
            _ => {}
        }
    }
    Ok(segments)
}

fn expect_root(root: &str, expected: &'static str) -> Result<(), PathRejection> {
    if root == expected {
        Ok(())
    } else {
        Err(PathRejection::UnexpectedRoot { expected })
    }
}

/// The rejection for a path with the wrong number of segments: a wrong root
/// is the more useful thing to report when both are wrong.
fn root_or_layout(segments: &[&str], expected: &'static str) -> PathRejection {
    match segments.first() {
        Some(root) if *root == expected => PathRejection::UnexpectedLayout,
        _ => PathRejection::UnexpectedRoot { expected },
    }
}

fn dataset_name(segment: &str) -> Result<DatasetName, PathRejection> {
    DatasetName::check(segment)?;
    Ok(DatasetName(segment.to_owned()))
}

/// Parses `{prefix}{number}`, the number in canonical decimal: `u64::from_str`
/// alone would also take `+7` and `007`, which would not render back the same.
fn prefixed_number(segment: &str, prefix: &str) -> Result<u64, PathRejection> {
    let digits = segment
        .strip_prefix(prefix)
        .ok_or(PathRejection::UnexpectedLayout)?;
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    if !canonical {
        return Err(PathRejection::InvalidNumber);
    }
    digits.parse().map_err(|_| PathRejection::InvalidNumber)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn miner(address: &str) -> MinerAddress {
        MinerAddress::new(address).unwrap()
    }

    fn dataset(name: &str) -> DatasetName {
        DatasetName::new(name).unwrap()
    }

    fn rejection(path: &str) -> PathRejection {
        match path.parse::<ContentPath>() {
            Err(ProtocolError::InvalidPath {
                path: given,
                reason,
            }) => {
                assert_eq!(given, path);
                reason
            }
            other => panic!("{path:?} should be rejected, got {other:?}"),
        }
    }

    #[test]
    fn renders_the_seed_layout() {
        let cases: [(ContentPath, &str); 8] = [
            (
                ModelPath::Backbone { version: 1 }.into(),
                "models/v1/backbone",
            ),
            (
                ModelPath::LoraAdapters { version: 2 }.into(),
                "models/v2/lora_adapters",
            ),
            (
                ModelPath::Metadata { version: 1 }.into(),
                "models/v1/metadata.json",
            ),
            (
                GradientPath::Miner {
                    window: 1000,
                    miner: miner("abc123"),
                }
                .into(),
                "gradients/window_1000/miner_abc123",
            ),
            (
                GradientPath::Aggregated { window: 1001 }.into(),
                "gradients/window_1001/aggregated",
            ),
            (
                DatasetPath::Approved {
                    name: dataset("dataset_1"),
                }
                .into(),
                "datasets/approved/dataset_1",
            ),
            (
                DatasetPath::Shard {
                    name: dataset("dataset_2"),
                    shard: 17,
                }
                .into(),
                "datasets/shards/dataset_2/shard_17",
            ),
            (
                CheckpointPath { epoch: 100 }.into(),
                "checkpoints/epoch_100",
            ),
        ];
        for (path, text) in cases {
            assert_eq!(path.to_string(), text);
            assert_eq!(text.parse::<ContentPath>(), Ok(path));
        }
    }

    #[test]
    fn typed_parsers_accept_only_their_root() {
        assert_eq!(
            "checkpoints/epoch_0".parse::<CheckpointPath>(),
            Ok(CheckpointPath { epoch: 0 })
        );
        let err = "checkpoints/epoch_0".parse::<ModelPath>().unwrap_err();
        assert_eq!(
            err,
            ProtocolError::InvalidPath {
                path: "checkpoints/epoch_0".to_owned(),
                reason: PathRejection::UnexpectedRoot { expected: "models" },
            }
        );
        assert_eq!(
            err.to_string(),
            "invalid content path \"checkpoints/epoch_0\": root must be models"
        );
    }

    #[test]
    fn rejects_malformed_paths() {
        use PathRejection::*;
        let cases = [
            ("", EmptySegment),
            ("/models/v1/backbone", Absolute),
            ("models//v1/backbone", EmptySegment),
            ("models/v1/backbone/", EmptySegment),
            ("models/v1/../v2/backbone", DotSegment),
            ("./models/v1/backbone", DotSegment),
            ("datasets/approved/..", DotSegment),
            (
                "tmp/v1/backbone",
                UnexpectedRoot {
                    expected: "models, gradients, datasets or checkpoints",
                },
            ),
            (
                "Models/v1/backbone",
                UnexpectedRoot {
                    expected: "models, gradients, datasets or checkpoints",
                },
            ),
            ("models/v1", UnexpectedLayout),
            ("models/v1/backbone/extra", UnexpectedLayout),
            ("models/v1/weights", UnexpectedLayout),
            ("models/1/backbone", UnexpectedLayout),
            ("models/vone/backbone", InvalidNumber),
            ("models/v/backbone", InvalidNumber),
            ("models/v01/backbone", InvalidNumber),
            ("models/v+1/backbone", InvalidNumber),
            ("models/v-1/backbone", InvalidNumber),
            ("models/v18446744073709551616/backbone", InvalidNumber),
            ("gradients/window_x/aggregated", InvalidNumber),
            ("gradients/window_1000/miner_", InvalidMinerAddress),
            ("gradients/window_1000/miner_ABC", InvalidMinerAddress),
            ("gradients/window_1000/miner_a_b", InvalidMinerAddress),
            ("gradients/window_1000/miner_a.b", InvalidMinerAddress),
            ("gradients/window_1000/abc123", UnexpectedLayout),
            ("datasets/approved/Dataset", InvalidDatasetName),
            ("datasets/approved/.hidden", InvalidDatasetName),
            ("datasets/approved/a\\b", InvalidDatasetName),
            ("datasets/shards/dataset_1", UnexpectedLayout),
            ("datasets/shards/dataset_1/shard_a", InvalidNumber),
            ("datasets/other/dataset_1", UnexpectedLayout),
            ("checkpoints/epoch_", InvalidNumber),
            ("checkpoints/100", UnexpectedLayout),
        ];
        for (path, reason) in cases {
            assert_eq!(rejection(path), reason, "{path:?}");
        }
    }

    #[test]
    fn names_are_checked_on_construction() {
        assert!(MinerAddress::new("remes1qyfkm2y3j9v6wz").is_ok());
        assert!(DatasetName::new("wikitext-103.v2_raw").is_ok());
        for bad in ["", "A", "a b", "a/b", "a_b", "é"] {
            assert!(MinerAddress::new(bad).is_err(), "{bad:?}");
        }
        for bad in ["", ".", "..", ".git", "a/b", "A", "a b"] {
            assert!(DatasetName::new(bad).is_err(), "{bad:?}");
        }
    }

    fn address() -> impl Strategy<Value = MinerAddress> {
        "[a-z0-9]{1,48}".prop_map(MinerAddress)
    }

    fn name() -> impl Strategy<Value = DatasetName> {
        "[a-z0-9_-][a-z0-9_.-]{0,32}".prop_map(DatasetName)
    }

    fn model_path() -> impl Strategy<Value = ModelPath> {
        prop_oneof![
            any::<u64>().prop_map(|version| ModelPath::Backbone { version }),
            any::<u64>().prop_map(|version| ModelPath::LoraAdapters { version }),
            any::<u64>().prop_map(|version| ModelPath::Metadata { version }),
        ]
    }

    fn gradient_path() -> impl Strategy<Value = GradientPath> {
        prop_oneof![
            (any::<u64>(), address())
                .prop_map(|(window, miner)| GradientPath::Miner { window, miner }),
            any::<u64>().prop_map(|window| GradientPath::Aggregated { window }),
        ]
    }

    fn dataset_path() -> impl Strategy<Value = DatasetPath> {
        prop_oneof![
            name().prop_map(|name| DatasetPath::Approved { name }),
            (name(), any::<u64>()).prop_map(|(name, shard)| DatasetPath::Shard { name, shard }),
        ]
    }

    fn checkpoint_path() -> impl Strategy<Value = CheckpointPath> {
        any::<u64>().prop_map(|epoch| CheckpointPath { epoch })
    }

    fn content_path() -> impl Strategy<Value = ContentPath> {
        prop_oneof![
            model_path().prop_map(ContentPath::from),
            gradient_path().prop_map(ContentPath::from),
            dataset_path().prop_map(ContentPath::from),
            checkpoint_path().prop_map(ContentPath::from),
        ]
    }

    proptest! {
        #[test]
        fn model_paths_round_trip(path in model_path()) {
            prop_assert_eq!(path.to_string().parse::<ModelPath>()?, path);
        }

        #[test]
        fn gradient_paths_round_trip(path in gradient_path()) {
            prop_assert_eq!(path.to_string().parse::<GradientPath>()?, path);
        }

        #[test]
        fn dataset_paths_round_trip(path in dataset_path()) {
            prop_assert_eq!(path.to_string().parse::<DatasetPath>()?, path);
        }

        #[test]
        fn checkpoint_paths_round_trip(path in checkpoint_path()) {
            prop_assert_eq!(path.to_string().parse::<CheckpointPath>()?, path);
        }

        #[test]
        fn content_paths_round_trip(path in content_path()) {
            prop_assert_eq!(path.to_string().parse::<ContentPath>()?, path);
        }

        // One-character edits of valid paths land on both sides of every rule
        // (a digit becomes a leading zero, a `/` doubles, a letter turns
        // uppercase); whatever the parser accepts must already be canonical.
        #[test]
        fn accepted_strings_are_canonical(
            path in content_path(),
            at in any::<proptest::sample::Index>(),
            edit in 0..3u8,
            ch in proptest::sample::select(vec!['/', '.', '0', '7', 'a', 'A', '_', '+', '-']),
        ) {
            let mut text = path.to_string();
            let at = at.index(text.len() + 1);
            match edit {
                0 => text.insert(at, ch),
                1 if at < text.len() => { text.remove(at); }
                _ if at < text.len() => text.replace_range(at..=at, ch.encode_utf8(&mut [0; 4])),
                _ => text.push(ch),
            }
            if let Ok(path) = text.parse::<ContentPath>() {
                prop_assert_eq!(path.to_string(), text);
            }
        }
    }
}
