//! What every rule sees while it runs: the block context ([`Ctx`]), the
//! events it emits, and the checks shared by several rules (CIDs, roles,
//! string limits).

use cid::Cid;

use crate::accounts::StoreRead;
use crate::crypto::{Address, sha256};
use crate::genesis::validator_key;
use crate::params::Params;
use crate::proto::{Event, Round, event};
use crate::tables::VALIDATOR;
use crate::{Error, Result};

/// The block a rule runs in. Everything a rule may depend on besides the
/// state: no clock, no randomness but the block hash.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    /// The keeper's parameters.
    pub params: &'a Params,
    /// The chain id.
    pub chain_id: &'a str,
    /// The block's height.
    pub height: u64,
    /// The block's time, ms (genesis time plus height times block time).
    pub time_ms: i64,
    /// The block's hash: the seed of sampling and challenge draws.
    pub block_hash: [u8; 32],
    /// The round open for submissions in this block, read once when the
    /// block begins (rounds change only in end-of-block work, after every
    /// transaction of the block).
    pub open_round: Option<&'a Round>,
}

/// Events emitted by one transaction or one end-of-block step.
pub type Events = Vec<Event>;

/// Wraps an event kind.
pub fn emit(events: &mut Events, kind: event::Kind) {
    events.push(Event { kind: Some(kind) });
}

/// An event's type name (the `Event.kind` field name, e.g.
/// `gradient_stored`) and its fields as text, in declaration order; `None`
/// for an event without a kind. Numbers print in decimal.
pub fn event_parts(event: &Event) -> Option<(String, Vec<(String, String)>)> {
    let kind = event.kind.as_ref()?;
    let serde_json::Value::Object(outer) = serde_json::to_value(kind).ok()? else {
        return None;
    };
    let (name, body) = outer.into_iter().next()?;
    let fields = match body {
        serde_json::Value::Object(fields) => fields
            .into_iter()
            .map(|(k, v)| {
                let text = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, text)
            })
            .collect(),
        _ => Vec::new(),
    };
    Some((name, fields))
}

/// Parses a CID the keeper accepts: in canonical text form (no `/ipfs/`
/// prefix; base58btc for CIDv0, base32 lower case for CIDv1), dag-pb or raw
/// codec, sha2-256 with a 32-byte digest (identity CIDs inline their data
/// and cannot be challenged). `field` names the message field in the error.
pub fn parse_cid(field: &'static str, text: &str) -> Result<Cid> {
    let bad = |reason: String| Error::InvalidCid {
        field,
        input: text.chars().take(120).collect(),
        reason,
    };
    if text.is_empty() {
        return Err(bad("empty".into()));
    }
    if text.len() > 128 {
        return Err(bad(format!("{} characters, at most 128", text.len())));
    }
    let cid = Cid::try_from(text).map_err(|e| bad(e.to_string()))?;
    check_cid(&cid).map_err(bad)?;
    // A CIDv0 read from 46 base58 characters starting "Qm" is canonical:
    // base58 is a bijection once leading zeros ('1') are fixed, and neither
    // the text nor the bytes (0x12 0x20 ...) have any. Only other forms need
    // the re-encoding check.
    if cid.version() == cid::Version::V0 && text.len() == 46 && text.starts_with("Qm") {
        return Ok(cid);
    }
    let canonical = cid.to_string();
    if canonical != text {
        return Err(bad(format!(
            "not in canonical form (base58btc for CIDv0, base32 lower case for CIDv1): {canonical}"
        )));
    }
    Ok(cid)
}

/// Decodes CID bytes stored by the keeper.
pub fn cid_from_stored(bytes: &[u8]) -> Result<Cid> {
    r3mes_ipfs::cids::decode_exact(bytes)
        .map_err(|e| Error::Store(format!("stored CID does not decode: {e}")))
}

/// The text form of stored CID bytes (hex if they do not decode).
pub fn cid_text(bytes: &[u8]) -> String {
    match r3mes_ipfs::cids::decode_exact(bytes) {
        Ok(cid) => cid.to_string(),
        Err(_) => crate::tables::hex_lower(bytes),
    }
}

fn check_cid(cid: &Cid) -> std::result::Result<(), String> {
    use r3mes_ipfs::cids::{DAG_PB, RAW, SHA2_256};
    if cid.codec() != DAG_PB && cid.codec() != RAW {
        return Err(format!(
            "codec 0x{:x} is neither dag-pb nor raw",
            cid.codec()
        ));
    }
    if cid.hash().code() != SHA2_256 || cid.hash().digest().len() != 32 {
        return Err(format!("hash 0x{:x} is not sha2-256", cid.hash().code()));
    }
    Ok(())
}

/// Parses the address a message names, with the field in the error.
pub fn parse_address(field: &'static str, text: &str) -> Result<Address> {
    Address::parse(text).map_err(|e| Error::InvalidMessage(format!("{field}: {e}")))
}

/// A 20-byte address read from a stored record or key; `what` names it in
/// the error.
pub fn stored_address(bytes: &[u8], what: &str) -> Result<Address> {
    let arr: [u8; 20] = bytes
        .try_into()
        .map_err(|_| Error::Store(format!("{what} is not a 20-byte address")))?;
    Ok(Address(arr))
}

/// The validators, sorted by address.
pub fn validators(store: &impl StoreRead) -> Result<Vec<Address>> {
    store
        .scan_prefix(&[VALIDATOR], usize::MAX)?
        .into_iter()
        .map(|(k, _)| stored_address(&k[1..], "validator key"))
        .collect()
}

/// Whether `address` is a validator.
pub fn is_validator(store: &impl StoreRead, address: &Address) -> Result<bool> {
    Ok(store.get(validator_key(address).as_bytes())?.is_some())
}

/// Fails with [`Error::Unauthorized`] unless `address` is a validator.
pub fn require_validator(store: &impl StoreRead, address: &Address, what: &str) -> Result<()> {
    if is_validator(store, address)? {
        Ok(())
    } else {
        Err(Error::Unauthorized(format!(
            "{address} is not a validator; only validators may {what}"
        )))
    }
}

/// Fails with [`Error::Unauthorized`] unless `who` has at least
/// `min_miner_stake` bonded; `role` names it in the message ("miner").
pub fn require_stake(
    store: &impl StoreRead,
    ctx: &Ctx<'_>,
    who: &Address,
    role: &str,
) -> Result<()> {
    let stake = crate::accounts::get_account(store, who)?.stake;
    let min = ctx.params.min_miner_stake;
    if stake < u128::from(min) {
        return Err(Error::Unauthorized(format!(
            "{role} {who} has stake {stake}, at least {min} is required"
        )));
    }
    Ok(())
}

/// Fails unless `text` has at most `max` bytes.
pub fn check_len(field: &str, text: &str, max: usize) -> Result<()> {
    if text.len() > max {
        return Err(Error::InvalidMessage(format!(
            "{field} is {} bytes, at most {max}",
            text.len()
        )));
    }
    Ok(())
}

/// `amount * ppm / 1_000_000`, rounded down, without overflow.
pub fn ppm_of(amount: u128, ppm: u64) -> u128 {
    let ppm = u128::from(ppm.min(crate::params::PPM));
    // amount / 1e6 * ppm + (amount % 1e6) * ppm / 1e6 cannot overflow.
    let million = u128::from(crate::params::PPM);
    amount / million * ppm + (amount % million) * ppm / million
}

/// The first 8 bytes of `sha256(parts...)`, big-endian.
pub fn hash_u64(parts: &[&[u8]]) -> u64 {
    let mut buf = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        buf.extend_from_slice(p);
    }
    let digest = sha256(&buf);
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(head)
}

#[cfg(test)]
mod tests {
    #[test]
    fn event_parts_name_the_kind_and_its_fields() {
        let e = Event {
            kind: Some(event::Kind::GradientStored(
                crate::proto::EvGradientStored {
                    ipfs_hash: "Qm".into(),
                    miner: "remes1x".into(),
                    round_id: 3,
                    shard_id: 4,
                    block_height: 9,
                },
            )),
        };
        let (name, fields) = event_parts(&e).unwrap();
        assert_eq!(name, "gradient_stored");
        assert!(fields.contains(&("round_id".into(), "3".into())));
        assert!(fields.contains(&("ipfs_hash".into(), "Qm".into())));
        assert_eq!(event_parts(&Event { kind: None }), None);
    }

    use super::*;

    #[test]
    fn ppm_of_rounds_down_and_never_overflows() {
        assert_eq!(ppm_of(1_000_000, 50_000), 50_000);
        assert_eq!(ppm_of(19, 50_000), 0);
        assert_eq!(ppm_of(20, 50_000), 1);
        assert_eq!(ppm_of(u128::MAX, 1_000_000), u128::MAX);
        assert_eq!(ppm_of(u128::MAX, 2_000_000), u128::MAX);
    }

    #[test]
    fn cids_are_checked() {
        let v0 = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG";
        assert_eq!(parse_cid("f", v0).unwrap().to_string(), v0);
        for bad in [
            "",
            "Qm",
            "/ipfs/QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG",
            "hello",
        ] {
            let err = parse_cid("ipfs_hash", bad).unwrap_err();
            assert_eq!(err.code(), 60, "{bad}: {err}");
            assert!(err.to_string().starts_with("ipfs_hash: invalid CID"));
        }
        // identity multihash: rejected.
        let identity = Cid::new_v1(0x55, multihash::Multihash::wrap(0, b"hi").unwrap());
        assert!(parse_cid("f", &identity.to_string()).is_err());
    }
}
