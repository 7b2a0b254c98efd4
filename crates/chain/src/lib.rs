//! `r3mes-chain`: the deterministic keeper, the chain state machine of r3mes
//! (issue 5, DESIGN.md decision 5).
//!
//! The [`Keeper`] applies signed transactions in blocks and runs each
//! block's end-of-block work; one module per rule of the seed's Go keeper
//! (`remes/x/remes`):
//!
//! - accounts, keys and transactions: secp256k1 keys and bech32 `remes`
//!   addresses ([`crypto`]), balances, stakes, sequences and supply
//!   ([`accounts`], [`staking`]), signed transactions with documented
//!   deterministic sign bytes ([`tx`]; wire format in
//!   `proto/r3mes/chain/v1/tx.proto`), their application ([`apply`]);
//! - gradients with the fixed 2048-token chunk rule and proof of work
//!   ([`gradients`], stored in per-block batches, [`batches`]), rounds and
//!   `AssignShard` ([`rounds`]), datasets and shards ([`datasets`]);
//! - data availability: sampling, challenges, Merkle answers and slashing
//!   ([`challenges`]); proof of replication ([`replicas`]); pinning
//!   incentives ([`pins`]); tolerant verification results
//!   ([`verification`]); model versions and traces ([`models`]);
//! - retention and garbage collection ([`gc`], the policies in
//!   [`params::Params::data_policies`]); read-only [`queries`].
//!
//! State lives in redb, written one block per write transaction, with an
//! app hash over the whole state ([`state`], [`apphash`], the key layout in
//! [`tables`]); parameters and genesis in [`params`] and [`genesis`].
//!
//! What it never is: the rule code uses no floats, no wall clock and no
//! I/O besides its store; the caller supplies block height and hash, and
//! time is the height times `block_time_ms`, so the same blocks always give
//! the same state and app hash. [`bench`] (`r3mes bench chain`) is the one
//! module that reads a clock, to time the keeper.

pub mod accounts;
pub mod apphash;
pub mod apply;
pub mod batches;
pub mod bench;
pub mod challenges;
pub mod crypto;
pub mod datasets;
pub mod exec;
pub mod gc;
pub mod genesis;
pub mod gradients;
pub mod keeper;
pub mod models;
pub mod params;
pub mod pins;
pub mod queries;
pub mod replicas;
pub mod rounds;
pub mod staking;
pub mod state;
pub mod tables;
pub mod tx;
pub mod verification;

/// Generated protobuf types of `r3mes.chain.v1` (see `tx.proto`).
#[allow(clippy::all, missing_docs, rust_2018_idioms)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/r3mes.chain.v1.rs"));
}

pub use crypto::{Address, PublicKey, SecretKey, Signature};
pub use keeper::{Block, Keeper};
pub use tx::SignedTx;

/// Result type of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Every way an operation of this crate can fail. Each variant has a stable
/// numeric [`code`](Error::code) that clients may match on; codes are never
/// reused or renumbered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The 32 secret-key bytes are zero or not below the curve order.
    #[error("invalid secret key: zero or not below the secp256k1 order")]
    InvalidSecretKey,
    /// The public key is not a 33-byte SEC1 compressed point on secp256k1.
    #[error("malformed public key: {0}")]
    MalformedPublicKey(String),
    /// The signature is not 64 bytes r || s with both scalars in 1..n.
    #[error("malformed signature: {0}")]
    MalformedSignature(String),
    /// The signature's s is in the high half of the order (malleable form).
    #[error("signature s is not low (s > n/2)")]
    HighS,
    /// The signature does not verify against the public key and message.
    #[error("signature verification failed")]
    BadSignature,
    /// Signing failed (cannot happen for a valid key and a 32-byte digest).
    #[error("signing failed")]
    SigningFailed,
    /// The address mixes upper- and lower-case characters.
    #[error("address mixes upper and lower case")]
    AddressMixedCase,
    /// The address is not a syntactically valid bech32 string.
    #[error("malformed address: {0}")]
    AddressMalformed(String),
    /// The address's bech32 checksum is wrong (or it is bech32m).
    #[error("address checksum is invalid (bech32 expected)")]
    AddressBadChecksum,
    /// The address's human-readable part is not `remes`.
    #[error("address prefix is {found:?}, expected \"remes\"")]
    AddressWrongHrp {
        /// The prefix found (lower case).
        found: String,
    },
    /// The address's payload is not 20 bytes.
    #[error("address payload is {len} bytes, expected 20")]
    AddressWrongLength {
        /// The payload length found.
        len: usize,
    },
    /// The encoded transaction exceeds the size limit.
    #[error("transaction is {len} bytes, limit {max}")]
    TxTooLarge {
        /// Encoded length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The transaction bytes are not valid protobuf for `Tx`.
    #[error("transaction does not decode: {0}")]
    TxDecode(String),
    /// The transaction decodes but is not in canonical encoding.
    #[error("transaction encoding is not canonical")]
    TxNonCanonical,
    /// The transaction has no body or its body has no message.
    #[error("transaction has no message")]
    MissingMessage,
    /// The chain id contains a NUL byte (it would make sign bytes ambiguous).
    #[error("chain id contains a NUL byte")]
    InvalidChainId,
    /// The transaction is for another chain.
    #[error("chain id is {found:?}, expected {expected:?}")]
    WrongChainId {
        /// The keeper's chain id.
        expected: String,
        /// The transaction's chain id.
        found: String,
    },
    /// The sequence is not the account's next one (replay or gap).
    #[error("sequence is {found}, expected {expected}")]
    WrongSequence {
        /// The account's stored sequence.
        expected: u64,
        /// The transaction's sequence.
        found: u64,
    },
    /// The transaction timestamp is too far from the block time.
    #[error(
        "timestamp {timestamp_ms} ms is more than {max_skew_ms} ms from block time {block_time_ms} ms"
    )]
    TimestampOutOfWindow {
        /// The transaction's timestamp.
        timestamp_ms: i64,
        /// The block time.
        block_time_ms: i64,
        /// The allowed distance.
        max_skew_ms: u64,
    },
    /// A message names a signer other than the transaction's signer.
    #[error("message signer {msg_signer} is not the transaction signer {tx_signer}")]
    SignerMismatch {
        /// The address the message names.
        msg_signer: String,
        /// The address of the transaction's public key.
        tx_signer: String,
    },
    /// The state database is already open (by this or another process).
    #[error("state database {path} is locked: already open")]
    StateLocked {
        /// The database path.
        path: String,
    },
    /// The state store failed or holds malformed data.
    #[error("state store: {0}")]
    Store(String),
    /// A block was begun or committed at a height other than the committed
    /// height plus one.
    #[error("block height is {found}, expected {expected}")]
    WrongBlockHeight {
        /// The committed height plus one.
        expected: u64,
        /// The height given.
        found: u64,
    },
    /// A parameter is out of range.
    #[error("invalid parameters: {0}")]
    InvalidParams(String),
    /// The genesis file is malformed or inconsistent.
    #[error("invalid genesis: {0}")]
    InvalidGenesis(String),
    /// A balance is smaller than the amount to debit.
    #[error("insufficient funds: balance {balance}, needed {needed}")]
    InsufficientFunds {
        /// The balance available.
        balance: u128,
        /// The amount needed.
        needed: u128,
    },
    /// An amount, balance or the total supply would exceed u128.
    #[error("amount overflows u128")]
    AmountOverflow,
    /// The account's sequence would exceed u64.
    #[error("account sequence overflows u64")]
    SequenceOverflow,
    /// A field that must hold a CID does not (malformed, unsupported codec,
    /// or a hash other than sha2-256).
    #[error("{field}: invalid CID {input:?}: {reason}")]
    InvalidCid {
        /// The message field.
        field: &'static str,
        /// What was given.
        input: String,
        /// Why it is rejected.
        reason: String,
    },
    /// A chunk does not carry exactly 2048 tokens (the seed's
    /// `ValidateChunkSize`).
    #[error("invalid chunk size: chunk must be exactly 2048 tokens, got {token_count}")]
    InvalidChunkSize {
        /// The token count claimed.
        token_count: u64,
    },
    /// A message field is missing, malformed or out of range.
    #[error("invalid message: {0}")]
    InvalidMessage(String),
    /// The signer lacks the role or stake the message needs.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The submission is for a round that is not open.
    #[error("round {round} is not open (current round: {current})")]
    RoundNotOpen {
        /// The round named.
        round: u64,
        /// The open round (0 before the first).
        current: u64,
    },
    /// The shard is not the one `AssignShard` gives the miner this round.
    #[error("shard {found} is not the miner's shard for this round (expected {expected})")]
    WrongShard {
        /// The assigned shard.
        expected: u64,
        /// The shard claimed.
        found: u64,
    },
    /// The proof-of-work hash has too few leading zero bits.
    #[error("proof of work has {found} leading zero bits, need {required}")]
    InsufficientWork {
        /// Bits required.
        required: u32,
        /// Bits found.
        found: u32,
    },
    /// A record that must be new already exists.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// A record the message refers to does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The challenge is not pending or its deadline has passed.
    #[error("challenge {id} cannot be answered: {reason}")]
    ChallengeClosed {
        /// Hex challenge id.
        id: String,
        /// Why.
        reason: String,
    },
    /// A challenge answer does not prove the challenged leaves.
    #[error("invalid availability proof: {0}")]
    InvalidProof(String),
}

impl Error {
    /// The stable numeric code of this error.
    pub fn code(&self) -> u32 {
        match self {
            Error::InvalidSecretKey => 1,
            Error::MalformedPublicKey(_) => 2,
            Error::MalformedSignature(_) => 3,
            Error::HighS => 4,
            Error::BadSignature => 5,
            Error::SigningFailed => 6,
            Error::AddressMixedCase => 10,
            Error::AddressMalformed(_) => 11,
            Error::AddressBadChecksum => 12,
            Error::AddressWrongHrp { .. } => 13,
            Error::AddressWrongLength { .. } => 14,
            Error::TxTooLarge { .. } => 20,
            Error::TxDecode(_) => 21,
            Error::TxNonCanonical => 22,
            Error::MissingMessage => 23,
            Error::InvalidChainId => 24,
            Error::WrongChainId { .. } => 25,
            Error::WrongSequence { .. } => 26,
            Error::TimestampOutOfWindow { .. } => 27,
            Error::SignerMismatch { .. } => 28,
            Error::StateLocked { .. } => 40,
            Error::Store(_) => 41,
            Error::WrongBlockHeight { .. } => 42,
            Error::InvalidParams(_) => 50,
            Error::InvalidGenesis(_) => 51,
            Error::InsufficientFunds { .. } => 52,
            Error::AmountOverflow => 53,
            Error::SequenceOverflow => 54,
            Error::InvalidCid { .. } => 60,
            Error::InvalidChunkSize { .. } => 61,
            Error::InvalidMessage(_) => 62,
            Error::Unauthorized(_) => 63,
            Error::RoundNotOpen { .. } => 64,
            Error::WrongShard { .. } => 65,
            Error::InsufficientWork { .. } => 66,
            Error::AlreadyExists(_) => 67,
            Error::NotFound(_) => 68,
            Error::ChallengeClosed { .. } => 69,
            Error::InvalidProof(_) => 70,
        }
    }
}
