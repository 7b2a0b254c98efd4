//! CID helpers: parsing with clear errors, building CIDs from block bytes, and
//! verifying that bytes hash to the CID that names them.
//!
//! Blocks are keyed by multihash (as Kubo keys its blockstore), so the same
//! bytes named by a CIDv0 and a CIDv1 are one block.

use cid::Cid;
use multihash::Multihash;
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// Multicodec of dag-pb (UnixFS nodes).
pub const DAG_PB: u64 = 0x70;
/// Multicodec of raw blocks (raw leaves).
pub const RAW: u64 = 0x55;
/// Multihash code of SHA2-256.
pub const SHA2_256: u64 = 0x12;
/// Multihash code of the identity "hash" (the digest is the data).
pub const IDENTITY: u64 = 0x00;
/// Largest identity digest accepted (Kubo's default limit for inlined blocks).
pub const MAX_IDENTITY_LEN: usize = 128;

/// Parses a CID from text, accepting an `/ipfs/` prefix as Kubo does.
pub fn parse(text: &str) -> Result<Cid> {
    let trimmed = text.trim();
    let bare = trimmed.strip_prefix("/ipfs/").unwrap_or(trimmed);
    let bare = bare.split('/').next().unwrap_or_default();
    if bare.is_empty() {
        return Err(Error::InvalidCid {
            input: text.to_string(),
            reason: "empty".into(),
        });
    }
    let cid = Cid::try_from(bare).map_err(|e| Error::InvalidCid {
        input: text.to_string(),
        reason: e.to_string(),
    })?;
    check_supported(&cid)?;
    Ok(cid)
}

/// Parses a CID from its binary form.
pub fn from_bytes(bytes: &[u8]) -> Result<Cid> {
    let cid = decode_exact(bytes).map_err(|reason| Error::InvalidCid {
        input: hex_prefix(bytes),
        reason,
    })?;
    check_supported(&cid)?;
    Ok(cid)
}

/// Decodes a binary CID that must span all of `bytes`: `Cid::try_from` stops
/// at the end of the multihash and would accept trailing bytes, giving one CID
/// two encodings.
pub fn decode_exact(bytes: &[u8]) -> std::result::Result<Cid, String> {
    let cid = Cid::try_from(bytes).map_err(|e| e.to_string())?;
    if cid.encoded_len() != bytes.len() {
        return Err(format!(
            "{} trailing bytes after the CID",
            bytes.len().saturating_sub(cid.encoded_len())
        ));
    }
    Ok(cid)
}

fn hex_prefix(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(40)];
    let mut s: String = shown.iter().map(|b| format!("{b:02x}")).collect();
    if bytes.len() > shown.len() {
        s.push_str("...");
    }
    s
}

/// Fails unless the CID's codec and hash are ones this store can verify.
pub fn check_supported(cid: &Cid) -> Result<()> {
    match cid.codec() {
        DAG_PB | RAW => {}
        codec => return Err(Error::UnsupportedCodec { cid: *cid, codec }),
    }
    match cid.hash().code() {
        SHA2_256 if cid.hash().digest().len() == 32 => Ok(()),
        IDENTITY if cid.hash().digest().len() <= MAX_IDENTITY_LEN => Ok(()),
        code => Err(Error::UnsupportedHash { cid: *cid, code }),
    }
}

/// SHA2-256 multihash of `data`.
pub fn sha256_multihash(data: &[u8]) -> Multihash<64> {
    multihash_from_digest(&Sha256::digest(data))
}

/// Wraps a SHA2-256 digest as a multihash.
pub fn multihash_from_digest(digest: &[u8]) -> Multihash<64> {
    // A 32-byte digest always fits the 64-byte multihash.
    Multihash::wrap(SHA2_256, digest).unwrap_or_default()
}

/// CID of a dag-pb block whose digest is known: CIDv0 or CIDv1 as asked.
pub fn dag_pb_cid(version: u8, hash: Multihash<64>) -> Cid {
    if version == 0 {
        Cid::new_v0(hash).unwrap_or_else(|_| Cid::new_v1(DAG_PB, hash))
    } else {
        Cid::new_v1(DAG_PB, hash)
    }
}

/// CID of a raw block (always CIDv1, as Kubo makes raw leaves even under CIDv0).
pub fn raw_cid(hash: Multihash<64>) -> Cid {
    Cid::new_v1(RAW, hash)
}

/// Checks that `data` hashes to `cid`. Corruption is an error naming the CID.
pub fn verify(cid: &Cid, data: &[u8]) -> Result<()> {
    let hash = cid.hash();
    let ok = match hash.code() {
        SHA2_256 => Sha256::digest(data).as_slice() == hash.digest(),
        IDENTITY => hash.digest() == data,
        code => return Err(Error::UnsupportedHash { cid: *cid, code }),
    };
    if ok {
        Ok(())
    } else {
        Err(Error::CorruptBlock(*cid))
    }
}

/// The block-store key of a CID: its multihash bytes.
pub fn block_key(cid: &Cid) -> Vec<u8> {
    cid.hash().to_bytes()
}

/// Whether the CID carries its data inline (identity multihash).
pub fn is_inline(cid: &Cid) -> bool {
    cid.hash().code() == IDENTITY
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_v0_and_v1_and_paths() {
        let v0 = parse("QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH").unwrap();
        assert_eq!(v0.version(), cid::Version::V0);
        let p = parse("/ipfs/QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH").unwrap();
        assert_eq!(v0, p);
        let v1 = parse("bafkqaaa").unwrap();
        assert!(is_inline(&v1));
    }

    #[test]
    fn rejects_garbage_with_clear_errors() {
        for bad in [
            "",
            "Qm",
            "hello",
            "bafy!",
            "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQ",
        ] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(err.contains("invalid CID"), "{bad}: {err}");
        }
        // dag-cbor (0x71) is a valid CID but not a codec this store serves.
        let cbor = Cid::new_v1(0x71, sha256_multihash(b"x"));
        assert!(matches!(
            parse(&cbor.to_string()),
            Err(Error::UnsupportedCodec { .. })
        ));
    }

    #[test]
    fn binary_cids_must_not_have_trailing_bytes() {
        let cid = raw_cid(sha256_multihash(b"x"));
        let mut bytes = cid.to_bytes();
        assert_eq!(from_bytes(&bytes).unwrap(), cid);
        bytes.push(0);
        assert!(
            from_bytes(&bytes)
                .unwrap_err()
                .to_string()
                .contains("trailing")
        );
    }

    #[test]
    fn verify_detects_corruption() {
        let data = b"hello";
        let cid = raw_cid(sha256_multihash(data));
        verify(&cid, data).unwrap();
        assert!(matches!(verify(&cid, b"hellp"), Err(Error::CorruptBlock(c)) if c == cid));
    }

    #[test]
    fn empty_unixfs_file_has_kubo_cid() {
        let block = [0x0a, 0x04, 0x08, 0x02, 0x18, 0x00];
        let cid = dag_pb_cid(0, sha256_multihash(&block));
        assert_eq!(
            cid.to_string(),
            "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
        );
    }
}
