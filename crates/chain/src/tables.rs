//! Where every keeper record lives in the `kv-0` key space, and the small
//! codecs shared by the rule modules.
//!
//! A key is one table byte followed by big-endian parts ([`Key`]), so each
//! record kind occupies its own sorted range:
//!
//! | byte | key after the byte | value |
//! | --- | --- | --- |
//! | `0x01` | - | params, JSON |
//! | `0x02` | - | chain info (chain id, genesis time), JSON |
//! | `0x10` | address | account (see [`crate::accounts`]) |
//! | `0x11` | - | total supply |
//! | `0x12` | address | validator marker (empty) |
//! | `0x14` | owner address, kind byte ([`ExpiryKind`]), record id | marker of a record the address holds (empty): a replica (id: replica CID bytes) of its miner, a pin (content CID bytes) of its pinner, a verification result (gradient CID bytes) of its validator, a trace (trace id) of its submitter |
//! | `0x20` | be64 inclusion height, list shard of the CID | batch of `StoredGradient`s, CID as item id ([`crate::batches`]) |
//! | `0x23` | be64 height, kind byte, list shard | list of record ids expiring at that height |
//! | `0x24` | CID bytes, kind byte, record id | content reference by a model or trace (kind byte: the [`ExpiryKind`]), or by a dataset shard (kind byte `0x80`, record id: dataset CID bytes, be64 shard id) (empty) |
//! | `0x28` | be64 round | `Round` |
//! | `0x29` | - | be64 current round id |
//! | `0x30` | challenge id | `Challenge` |
//! | `0x31` | be64 deadline, challenge id | pending-challenge marker |
//! | `0x32` | target address, challenge id | pending-challenge marker per target |
//! | `0x33` | content CID bytes, challenge id | challenge marker per content (removed with the challenge) |
//! | `0x40` | replica CID bytes | `ProofOfReplication` |
//! | `0x50` | content CID bytes, pinner address | `PinningIncentive` |
//! | `0x60` | gradient CID bytes, validator address | `VerificationResult` |
//! | `0x70` | be64 version | `ModelVersion` |
//! | `0x71` | - | be64 latest model version |
//! | `0x72` | trace id | `ComputationTrace` |
//! | `0x80` | dataset CID bytes | `Dataset` |
//! | `0x81` | dataset CID bytes, be64 shard id | `DataShard` |
//! | `0x82` | - | CID bytes of the dataset new rounds use |
//!
//! Lists are values made of items `be16(len) || bytes`, appended in order.
//! The retention queue and the gradient batches are split into 16 shards
//! by the low four bits of the item's last byte ([`list_shard`]), so
//! appending copies a sixteenth of a busy block's list, not all of it;
//! readers take the shards in key order.

use prost::Message;

use crate::accounts::{Store, StoreRead};
use crate::state::Key;
use crate::{Error, Result};

/// Params (JSON).
pub const PARAMS: u8 = 0x01;
/// Chain id and genesis time (JSON).
pub const CHAIN_INFO: u8 = 0x02;
/// Validator markers.
pub const VALIDATOR: u8 = 0x12;
/// Records by the address that holds them (markers).
pub const BY_OWNER: u8 = 0x14;
/// Batches of stored gradients by inclusion height and list shard.
pub const GRADIENT: u8 = 0x20;
/// Retention queue: ids expiring at a height, per record kind.
pub const EXPIRY: u8 = 0x23;
/// References to content by models and traces (markers).
pub const CONTENT_REF: u8 = 0x24;
/// Rounds by id.
pub const ROUND: u8 = 0x28;
/// The current round id.
pub const CURRENT_ROUND: u8 = 0x29;
/// Challenges by id.
pub const CHALLENGE: u8 = 0x30;
/// Pending challenges by deadline.
pub const CHALLENGE_DEADLINE: u8 = 0x31;
/// Pending challenges by target.
pub const CHALLENGE_BY_TARGET: u8 = 0x32;
/// Challenges by content CID (markers, removed with the challenge).
pub const CHALLENGE_BY_CONTENT: u8 = 0x33;
/// Replicas by replica CID.
pub const REPLICA: u8 = 0x40;
/// Pins by content and pinner.
pub const PIN: u8 = 0x50;
/// Verification results by gradient and validator.
pub const VERIFICATION: u8 = 0x60;
/// Model versions.
pub const MODEL: u8 = 0x70;
/// The latest model version.
pub const LATEST_MODEL: u8 = 0x71;
/// Computation traces by id.
pub const TRACE: u8 = 0x72;
/// Datasets by CID.
pub const DATASET: u8 = 0x80;
/// Data shards by dataset and shard id.
pub const SHARD: u8 = 0x81;
/// The dataset new rounds train on.
pub const ROUND_DATASET: u8 = 0x82;

/// Kinds of records in the retention queue (`0x23`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ExpiryKind {
    /// A batch of stored gradients (id: be64 inclusion height || list
    /// shard, the batch key without its table byte).
    Gradient = 1,
    /// A replica (id: replica CID bytes).
    Replica = 2,
    /// A pin (id: content CID bytes || pinner address).
    Pin = 3,
    /// A verification result (id: gradient CID bytes || validator address).
    Verification = 4,
    /// A model version (id: be64 version).
    Model = 5,
    /// A computation trace (id: trace id).
    Trace = 6,
    /// A closed challenge (id: challenge id).
    Challenge = 7,
}

impl ExpiryKind {
    /// The kind of a stored byte.
    pub fn from_byte(b: u8) -> Result<Self> {
        Ok(match b {
            1 => ExpiryKind::Gradient,
            2 => ExpiryKind::Replica,
            3 => ExpiryKind::Pin,
            4 => ExpiryKind::Verification,
            5 => ExpiryKind::Model,
            6 => ExpiryKind::Trace,
            7 => ExpiryKind::Challenge,
            other => return Err(Error::Store(format!("unknown expiry kind {other}"))),
        })
    }

    /// The name used in events.
    pub fn name(self) -> &'static str {
        match self {
            ExpiryKind::Gradient => "gradient",
            ExpiryKind::Replica => "replica",
            ExpiryKind::Pin => "pin",
            ExpiryKind::Verification => "verification",
            ExpiryKind::Model => "model",
            ExpiryKind::Trace => "trace",
            ExpiryKind::Challenge => "challenge",
        }
    }
}

/// The key of a singleton record.
pub fn singleton(table: u8) -> Key {
    Key::new(table)
}

/// Decodes a stored protobuf record; `what` names it in the error.
pub fn decode_record<M: Message + Default>(bytes: &[u8], what: &str) -> Result<M> {
    M::decode(bytes).map_err(|e| Error::Store(format!("{what}: {e}")))
}

/// Reads and decodes the protobuf record under `key`.
pub fn get_record<M: Message + Default>(store: &impl StoreRead, key: &Key) -> Result<Option<M>> {
    match store.get(key.as_bytes())? {
        None => Ok(None),
        Some(bytes) => {
            decode_record(&bytes, &format!("record {}", hex_lower(key.as_bytes()))).map(Some)
        }
    }
}

/// Decodes the first `limit` records under `prefix`, in key order.
pub fn scan_records<M: Message + Default>(
    store: &impl StoreRead,
    prefix: &[u8],
    limit: usize,
) -> Result<Vec<M>> {
    store
        .scan_prefix(prefix, limit)?
        .iter()
        .map(|(key, value)| decode_record(value, &format!("record {}", hex_lower(key))))
        .collect()
}

/// Encodes and stages `record` under `key`.
pub fn put_record<M: Message>(store: &mut impl Store, key: &Key, record: &M) {
    store.put(key.as_bytes(), &record.encode_to_vec());
}

/// Reads a big-endian u64 singleton (0 if absent).
pub fn get_u64(store: &impl StoreRead, key: &Key) -> Result<u64> {
    match store.get(key.as_bytes())? {
        None => Ok(0),
        Some(b) => {
            let arr: [u8; 8] = b
                .as_slice()
                .try_into()
                .map_err(|_| Error::Store("u64 record is not 8 bytes".into()))?;
            Ok(u64::from_be_bytes(arr))
        }
    }
}

/// Appends `item` to the list under `key`.
pub fn list_push(store: &mut impl Store, key: &Key, item: &[u8]) -> Result<()> {
    let len = u16::try_from(item.len())
        .map_err(|_| Error::Store(format!("list item of {} bytes", item.len())))?;
    let mut value = store.get(key.as_bytes())?.unwrap_or_default();
    value.extend_from_slice(&len.to_be_bytes());
    value.extend_from_slice(item);
    store.put(key.as_bytes(), &value);
    Ok(())
}

/// Splits a list value into its items.
pub fn list_items(value: &[u8]) -> Result<Vec<Vec<u8>>> {
    let mut items = Vec::new();
    let mut rest = value;
    while !rest.is_empty() {
        let (len, tail) = rest
            .split_first_chunk::<2>()
            .ok_or_else(|| Error::Store("truncated list item length".into()))?;
        let len = usize::from(u16::from_be_bytes(*len));
        if tail.len() < len {
            return Err(Error::Store("truncated list item".into()));
        }
        items.push(tail[..len].to_vec());
        rest = &tail[len..];
    }
    Ok(items)
}

/// Encodes items as a list value.
pub fn list_value(items: &[Vec<u8>]) -> Result<Vec<u8>> {
    let mut value = Vec::new();
    for item in items {
        let len = u16::try_from(item.len())
            .map_err(|_| Error::Store(format!("list item of {} bytes", item.len())))?;
        value.extend_from_slice(&len.to_be_bytes());
        value.extend_from_slice(item);
    }
    Ok(value)
}

/// The shard (0 to 15) of a list item: the low four bits of its last byte.
pub fn list_shard(item: &[u8]) -> u8 {
    item.last().map_or(0, |b| b & 0x0f)
}

/// Queues `id` of `kind` for removal at `height`.
pub fn schedule_expiry(
    store: &mut impl Store,
    height: u64,
    kind: ExpiryKind,
    id: &[u8],
) -> Result<()> {
    list_push(store, &expiry_key(height, kind, list_shard(id)), id)
}

/// The retention-queue key of `height`, `kind` and list shard `shard`.
pub fn expiry_key(height: u64, kind: ExpiryKind, shard: u8) -> Key {
    Key::new(EXPIRY).u64(height).u8(kind as u8).u8(shard)
}

/// The marker saying record `id` of `kind` references content `cid`.
pub fn content_ref_key(cid_bytes: &[u8], kind: ExpiryKind, id: &[u8]) -> Key {
    Key::new(CONTENT_REF)
        .tail(cid_bytes)
        .u8(kind as u8)
        .tail(id)
}

/// The marker saying `owner` holds record `id` of `kind` (see the table in
/// the module docs for what `id` is per kind).
pub fn owner_key(owner: &crate::crypto::Address, kind: ExpiryKind, id: &[u8]) -> Key {
    Key::new(BY_OWNER)
        .tail(owner.as_bytes())
        .u8(kind as u8)
        .tail(id)
}

/// The ids of up to `limit` records of `kind` that `owner` holds, in id
/// order.
pub fn owned_ids(
    store: &impl StoreRead,
    owner: &crate::crypto::Address,
    kind: ExpiryKind,
    limit: usize,
) -> Result<Vec<Vec<u8>>> {
    let prefix = Key::new(BY_OWNER).tail(owner.as_bytes()).u8(kind as u8);
    let skip = prefix.as_bytes().len();
    store
        .scan_prefix(prefix.as_bytes(), limit)?
        .into_iter()
        .map(|(key, _)| {
            key.get(skip..)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| Error::Store("short owner marker key".into()))
        })
        .collect()
}

/// The kind byte of a content reference by a dataset shard (outside the
/// [`ExpiryKind`] range: datasets never expire).
pub const SHARD_REF_KIND: u8 = 0x80;

/// The marker saying shard `shard_id` of dataset `dataset_cid` is content
/// `shard_cid`.
pub fn shard_ref_key(shard_cid: &[u8], dataset_cid: &[u8], shard_id: u64) -> Key {
    Key::new(CONTENT_REF)
        .tail(shard_cid)
        .u8(SHARD_REF_KIND)
        .tail(dataset_cid)
        .u64(shard_id)
}

/// Lower-case hex.
pub fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// Parses lower- or upper-case hex of exactly `N` bytes.
pub fn parse_hex<const N: usize>(field: &str, s: &str) -> Result<[u8; N]> {
    let bad = || Error::InvalidMessage(format!("{field}: expected {} hex digits", 2 * N));
    if s.len() != 2 * N {
        return Err(bad());
    }
    let mut out = [0u8; N];
    for (i, pair) in s.as_bytes().chunks(2).enumerate() {
        let digit = |c: u8| char::from(c).to_digit(16).ok_or_else(bad);
        let hi = digit(pair[0])?;
        let lo = digit(pair[1])?;
        out[i] = u8::try_from(hi * 16 + lo).map_err(|_| bad())?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_round_trips_and_rejects_truncation() {
        let items = vec![b"abc".to_vec(), Vec::new(), vec![7; 300]];
        let value = list_value(&items).unwrap();
        assert_eq!(list_items(&value).unwrap(), items);
        assert!(list_items(&value[..value.len() - 1]).is_err());
        assert!(list_items(&[0]).is_err());
    }

    #[test]
    fn hex_round_trips() {
        let bytes = [0u8, 1, 0xab, 0xff];
        let s = hex_lower(&bytes);
        assert_eq!(s, "0001abff");
        assert_eq!(parse_hex::<4>("f", &s).unwrap(), bytes);
        assert_eq!(parse_hex::<4>("f", "0001ABFF").unwrap(), bytes);
        assert!(parse_hex::<4>("f", "0001abf").is_err());
        assert!(parse_hex::<4>("f", "0001abfg").is_err());
        assert!(parse_hex::<2>("f", "é1").is_err());
    }
}
