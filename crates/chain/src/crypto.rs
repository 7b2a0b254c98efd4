//! secp256k1 keys, ECDSA signatures and `remes` bech32 addresses.
//!
//! - Secret keys are 32 big-endian bytes taken as the scalar itself (no
//!   derivation, no randomness here: callers bring their own entropy).
//! - Public keys are 33-byte SEC1 compressed points.
//! - Signatures are ECDSA with digest SHA-256(message), RFC 6979
//!   deterministic nonces, encoded as 64 bytes r || s, always low-S;
//!   verification rejects high-S signatures (malleability).
//! - Addresses are bech32 (BIP 173, not bech32m) with the human-readable
//!   part `remes` over ripemd160(sha256(compressed public key)).
//!
//! The curve arithmetic is libsecp256k1's (the `secp256k1` crate), not
//! k256: verification costs 40 µs there against 112 µs with k256 on the
//! project's 2-core machine, and the keeper's target of 10,000 signed
//! transactions per second on one core leaves no room for the difference.
//! Signatures are the same bytes either way (RFC 6979, low-S); the vectors
//! in `tests/fixtures/vectors.txt` were cross-checked with Python.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Mutex, OnceLock};

use bech32::primitives::decode::{CheckedHrpstring, CheckedHrpstringError};
use bech32::{Bech32, Hrp};
use ripemd::Ripemd160;
use secp256k1::ecdsa::Signature as EcdsaSignature;
use secp256k1::{Message, SECP256K1};
use sha2::{Digest, Sha256};

use crate::tables::hex_lower;
use crate::{Error, Result};

/// The bech32 human-readable part of r3mes addresses.
pub const ADDRESS_HRP: &str = "remes";
/// Length of a compressed public key.
pub const PUBLIC_KEY_LEN: usize = 33;
/// Length of an encoded signature (r || s).
pub const SIGNATURE_LEN: usize = 64;
/// Length of an address payload.
pub const ADDRESS_LEN: usize = 20;

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// A secp256k1 secret key.
#[derive(Clone)]
pub struct SecretKey(secp256k1::SecretKey);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl SecretKey {
    /// The key whose scalar is `bytes` (big-endian). Fails with
    /// [`Error::InvalidSecretKey`] if the scalar is zero or not below the
    /// curve order.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self> {
        secp256k1::SecretKey::from_byte_array(*bytes)
            .map(SecretKey)
            .map_err(|_| Error::InvalidSecretKey)
    }

    /// The scalar's 32 big-endian bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.secret_bytes()
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey::from_key(secp256k1::PublicKey::from_secret_key(SECP256K1, &self.0))
    }

    /// Signs `message`: ECDSA over SHA-256(`message`), RFC 6979 nonce,
    /// low-S.
    pub fn sign(&self, message: &[u8]) -> Result<Signature> {
        let digest = Message::from_digest(sha256(message));
        let mut sig = SECP256K1.sign_ecdsa(digest, &self.0);
        sig.normalize_s();
        Ok(Signature(sig.serialize_compact()))
    }
}

/// A secp256k1 public key, always a valid curve point, kept compressed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey {
    compressed: [u8; PUBLIC_KEY_LEN],
    key: secp256k1::PublicKey,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", hex_lower(&self.compressed))
    }
}

/// Most verified signatures remembered by [`PublicKey::verify`]: a node
/// checks a transaction's signature when admitting it to the mempool and
/// again when its block runs; the second check finds the first's result.
/// Entries are `sha256(key || digest || signature)` of signatures that
/// verified (a pure function of those bytes, so remembering it changes no
/// answer); the set is emptied when full.
pub const VERIFIED_MAX: usize = 1 << 17;

static VERIFIED: OnceLock<Mutex<HashMap<[u8; 32], ()>>> = OnceLock::new();

/// Most decoded public keys kept by [`PublicKey::from_compressed`].
pub const PARSED_KEYS_MAX: usize = 1 << 16;

type ParsedKeys = Mutex<HashMap<[u8; PUBLIC_KEY_LEN], secp256k1::PublicKey>>;

static PARSED_KEYS: OnceLock<ParsedKeys> = OnceLock::new();

/// Puts `key -> value` into a process-wide cache of pure results, emptying
/// it first when it holds `max` entries (a poisoned lock skips the insert).
fn remember<K: std::hash::Hash + Eq, V>(
    cache: &Mutex<HashMap<K, V>>,
    max: usize,
    key: K,
    value: V,
) {
    if let Ok(mut map) = cache.lock() {
        if map.len() >= max {
            map.clear();
        }
        map.insert(key, value);
    }
}

impl PublicKey {
    fn from_key(key: secp256k1::PublicKey) -> Self {
        PublicKey {
            compressed: key.serialize(),
            key,
        }
    }

    /// Checks the length and prefix of a compressed key without decoding
    /// the point.
    fn check_encoding(bytes: &[u8]) -> Result<&[u8; PUBLIC_KEY_LEN]> {
        let arr: &[u8; PUBLIC_KEY_LEN] = bytes.try_into().map_err(|_| {
            Error::MalformedPublicKey(format!("{} bytes, expected {PUBLIC_KEY_LEN}", bytes.len()))
        })?;
        if arr[0] != 0x02 && arr[0] != 0x03 {
            return Err(Error::MalformedPublicKey(format!(
                "prefix byte {:#04x}, expected 0x02 or 0x03",
                arr[0]
            )));
        }
        Ok(arr)
    }

    /// Parses a 33-byte SEC1 compressed point. Uncompressed (65-byte) and
    /// off-curve inputs fail with [`Error::MalformedPublicKey`].
    ///
    /// Decompressing takes a field square root (about 7 µs, a tenth of a
    /// transaction's cost), and the same few thousand miners sign every
    /// block, so valid keys are remembered in a bounded process-wide cache
    /// ([`PARSED_KEYS_MAX`] entries, emptied when full). Parsing is a pure
    /// function, so the cache cannot change any answer.
    pub fn from_compressed(bytes: &[u8]) -> Result<Self> {
        let arr = Self::check_encoding(bytes)?;
        let cache = PARSED_KEYS.get_or_init(Default::default);
        let cached = cache.lock().ok().and_then(|map| map.get(arr).copied());
        let key = match cached {
            Some(key) => key,
            None => {
                let key = secp256k1::PublicKey::from_slice(arr)
                    .map_err(|_| Error::MalformedPublicKey("not a point on secp256k1".into()))?;
                remember(cache, PARSED_KEYS_MAX, *arr, key);
                key
            }
        };
        Ok(PublicKey {
            compressed: *arr,
            key,
        })
    }

    /// The 33 compressed bytes.
    pub fn to_bytes(&self) -> [u8; PUBLIC_KEY_LEN] {
        self.compressed
    }

    /// The account address of this key.
    pub fn address(&self) -> Address {
        Address::of_compressed_key(&self.compressed)
    }

    /// Verifies `signature` over `message` (digest SHA-256(`message`)).
    /// High-S signatures fail with [`Error::HighS`]; a malformed r or s with
    /// [`Error::MalformedSignature`]; a wrong one with [`Error::BadSignature`].
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<()> {
        let (r, s) = signature.0.split_at(32);
        if r.iter().all(|b| *b == 0) || s.iter().all(|b| *b == 0) {
            return Err(Error::MalformedSignature("r or s is zero".into()));
        }
        let mut sig = EcdsaSignature::from_compact(&signature.0)
            .map_err(|_| Error::MalformedSignature("r or s is not below n".into()))?;
        let as_given = sig;
        sig.normalize_s();
        if sig != as_given {
            return Err(Error::HighS);
        }
        let digest = sha256(message);
        let seen = sha256(&[self.compressed.as_slice(), &digest, &signature.0].concat());
        let cache = VERIFIED.get_or_init(Default::default);
        if cache.lock().is_ok_and(|set| set.contains_key(&seen)) {
            return Ok(());
        }
        SECP256K1
            .verify_ecdsa(Message::from_digest(digest), &sig, &self.key)
            .map_err(|_| Error::BadSignature)?;
        remember(cache, VERIFIED_MAX, seen, ());
        Ok(())
    }
}

/// A 64-byte ECDSA signature r || s (validity is checked on verification).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; SIGNATURE_LEN]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", hex_lower(&self.0))
    }
}

impl Signature {
    /// Takes exactly 64 bytes; other lengths fail with
    /// [`Error::MalformedSignature`].
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        let arr: [u8; SIGNATURE_LEN] = bytes.try_into().map_err(|_| {
            Error::MalformedSignature(format!("{} bytes, expected {SIGNATURE_LEN}", bytes.len()))
        })?;
        Ok(Signature(arr))
    }
}

/// An account address: ripemd160(sha256(compressed public key)). Displays as
/// lower-case bech32 with prefix `remes`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address(pub [u8; ADDRESS_LEN]);

impl Address {
    /// ripemd160(sha256(`compressed`)): the address of a compressed public
    /// key, computed from its bytes alone (the point is not decoded).
    pub fn of_compressed_key(compressed: &[u8; PUBLIC_KEY_LEN]) -> Self {
        Address(Ripemd160::digest(sha256(compressed)).into())
    }

    /// The address a 33-byte compressed key encoding names, checking only
    /// its length and prefix (cheap; [`PublicKey::from_compressed`] checks
    /// the point).
    pub fn of_key_bytes(bytes: &[u8]) -> Result<Self> {
        Ok(Self::of_compressed_key(PublicKey::check_encoding(bytes)?))
    }

    /// The 20 payload bytes.
    pub fn as_bytes(&self) -> &[u8; ADDRESS_LEN] {
        &self.0
    }

    /// Parses a bech32 `remes` address. All-upper-case input is accepted
    /// (BIP 173); mixed case, bech32m, a wrong prefix, a payload other than
    /// 20 bytes or non-zero padding are rejected with distinct errors.
    pub fn parse(s: &str) -> Result<Self> {
        let has_upper = s.bytes().any(|b| b.is_ascii_uppercase());
        let has_lower = s.bytes().any(|b| b.is_ascii_lowercase());
        if has_upper && has_lower {
            return Err(Error::AddressMixedCase);
        }
        let checked = CheckedHrpstring::new::<Bech32>(s).map_err(|e| match e {
            CheckedHrpstringError::Checksum(_) => Error::AddressBadChecksum,
            other => Error::AddressMalformed(other.to_string()),
        })?;
        let hrp = checked.hrp().to_lowercase();
        if hrp != ADDRESS_HRP {
            return Err(Error::AddressWrongHrp { found: hrp });
        }
        checked
            .validate_segwit_padding()
            .map_err(|e| Error::AddressMalformed(e.to_string()))?;
        let payload: Vec<u8> = checked.byte_iter().collect();
        let arr: [u8; ADDRESS_LEN] = payload
            .as_slice()
            .try_into()
            .map_err(|_| Error::AddressWrongLength { len: payload.len() })?;
        Ok(Address(arr))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hrp = Hrp::parse_unchecked(ADDRESS_HRP);
        bech32::encode_lower_to_fmt::<Bech32, _>(f, hrp, &self.0).map_err(|_| fmt::Error)
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({self})")
    }
}

impl FromStr for Address {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Address::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bech32::Bech32m;

    const ORDER: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xfe, 0xba, 0xae, 0xdc, 0xe6, 0xaf, 0x48, 0xa0, 0x3b, 0xbf, 0xd2, 0x5e, 0x8c, 0xd0, 0x36,
        0x41, 0x41,
    ];

    fn key(b: u8) -> SecretKey {
        SecretKey::from_bytes(&[b; 32]).unwrap()
    }

    /// n - s, big-endian.
    fn negate_s(sig: &Signature) -> Signature {
        let mut out = sig.0;
        let mut borrow = 0i16;
        for i in (0..32).rev() {
            let d = i16::from(ORDER[i]) - i16::from(sig.0[32 + i]) - borrow;
            borrow = i16::from(d < 0);
            out[32 + i] = d.rem_euclid(256) as u8;
        }
        Signature(out)
    }

    #[test]
    fn secret_key_rejects_zero_and_order() {
        assert_eq!(
            SecretKey::from_bytes(&[0; 32]).unwrap_err(),
            Error::InvalidSecretKey
        );
        assert_eq!(
            SecretKey::from_bytes(&ORDER).unwrap_err(),
            Error::InvalidSecretKey
        );
        assert_eq!(key(7).to_bytes(), [7; 32]);
    }

    #[test]
    fn sign_verify_and_reject() {
        let sk = key(3);
        let pk = sk.public_key();
        let sig = sk.sign(b"hello").unwrap();
        pk.verify(b"hello", &sig).unwrap();
        assert_eq!(pk.verify(b"hellO", &sig).unwrap_err(), Error::BadSignature);
        assert_eq!(
            key(4).public_key().verify(b"hello", &sig).unwrap_err(),
            Error::BadSignature
        );
        let high = negate_s(&sig);
        assert_ne!(high, sig);
        assert_eq!(pk.verify(b"hello", &high).unwrap_err(), Error::HighS);
        let zero = Signature([0; 64]);
        assert_eq!(pk.verify(b"hello", &zero).unwrap_err().code(), 3);
        assert_eq!(Signature::from_slice(&[1; 63]).unwrap_err().code(), 3);
    }

    #[test]
    fn public_key_parsing() {
        let pk = key(5).public_key();
        assert_eq!(PublicKey::from_compressed(&pk.to_bytes()).unwrap(), pk);
        assert_eq!(PublicKey::from_compressed(&[2; 32]).unwrap_err().code(), 2);
        let mut bad = pk.to_bytes();
        bad[0] = 0x04;
        assert_eq!(PublicKey::from_compressed(&bad).unwrap_err().code(), 2);
        // x = 5 is not the x coordinate of a secp256k1 point (5^3 + 7 = 132 is a non-residue).
        let mut off = [0u8; 33];
        off[0] = 2;
        off[32] = 5;
        assert_eq!(PublicKey::from_compressed(&off).unwrap_err().code(), 2);
    }

    #[test]
    fn remembered_signatures_do_not_vouch_for_other_messages_or_keys() {
        let mut bytes = [0u8; 32];
        bytes[31] = 9;
        let key = SecretKey::from_bytes(&bytes).unwrap();
        bytes[31] = 10;
        let other = SecretKey::from_bytes(&bytes).unwrap();
        let sig = key.sign(b"message").unwrap();
        for _ in 0..2 {
            assert!(key.public_key().verify(b"message", &sig).is_ok());
            assert!(matches!(
                key.public_key().verify(b"massage", &sig),
                Err(Error::BadSignature)
            ));
            assert!(matches!(
                other.public_key().verify(b"message", &sig),
                Err(Error::BadSignature)
            ));
        }
    }

    #[test]
    fn address_round_trip_and_errors() {
        let addr = key(9).public_key().address();
        let s = addr.to_string();
        assert!(s.starts_with("remes1"));
        assert_eq!(Address::parse(&s).unwrap(), addr);
        assert_eq!(s.parse::<Address>().unwrap(), addr);
        assert_eq!(Address::parse(&s.to_uppercase()).unwrap(), addr);

        let mut mixed = s.clone();
        mixed.replace_range(0..1, "R");
        assert_eq!(Address::parse(&mixed).unwrap_err(), Error::AddressMixedCase);

        let last = s.chars().last().unwrap();
        let swapped = if last == 'q' { 'p' } else { 'q' };
        let bad_sum = format!("{}{swapped}", &s[..s.len() - 1]);
        assert_eq!(
            Address::parse(&bad_sum).unwrap_err(),
            Error::AddressBadChecksum
        );

        let m = bech32::encode::<Bech32m>(Hrp::parse("remes").unwrap(), &addr.0).unwrap();
        assert_eq!(Address::parse(&m).unwrap_err(), Error::AddressBadChecksum);

        let cosmos = bech32::encode::<Bech32>(Hrp::parse("cosmos").unwrap(), &addr.0).unwrap();
        assert_eq!(
            Address::parse(&cosmos).unwrap_err(),
            Error::AddressWrongHrp {
                found: "cosmos".into()
            }
        );

        let long = bech32::encode::<Bech32>(Hrp::parse("remes").unwrap(), &[1; 32]).unwrap();
        assert_eq!(
            Address::parse(&long).unwrap_err(),
            Error::AddressWrongLength { len: 32 }
        );

        assert_eq!(Address::parse("").unwrap_err().code(), 11);
        assert_eq!(Address::parse("remes").unwrap_err().code(), 11);
        assert_eq!(Address::parse("remes1b!").unwrap_err().code(), 11);
    }
}
