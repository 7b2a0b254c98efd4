//! Signed transactions: sign bytes, signing, size-limited canonical
//! encoding and decoding, and verification against the keeper's view
//! (chain id, expected sequence, block time and allowed clock skew).
//!
//! The sign bytes are defined in `proto/r3mes/chain/v1/tx.proto` and built
//! by [`sign_bytes`].

use prost::Message;

use crate::crypto::{Address, PublicKey, SecretKey, Signature};
use crate::proto::{Tx, TxBody, tx_body};
use crate::{Error, Result};

/// Domain tag at the start of the sign bytes.
pub const SIGN_DOMAIN: &[u8] = b"r3mes-tx-v1";

/// The bytes a signer signs (see `tx.proto`):
/// `"r3mes-tx-v1" || 0x00 || chain_id || 0x00 || be64(sequence) ||
/// be64(timestamp_ms) || signer_pubkey || body_bytes`. Fails with
/// [`Error::InvalidChainId`] if `chain_id` contains a NUL byte.
pub fn sign_bytes(
    body: &TxBody,
    signer_pubkey: &[u8],
    sequence: u64,
    chain_id: &str,
    timestamp_ms: i64,
) -> Result<Vec<u8>> {
    if chain_id.as_bytes().contains(&0) {
        return Err(Error::InvalidChainId);
    }
    let body_bytes = body.encode_to_vec();
    let mut out = Vec::with_capacity(
        SIGN_DOMAIN.len() + chain_id.len() + 18 + signer_pubkey.len() + body_bytes.len(),
    );
    out.extend_from_slice(SIGN_DOMAIN);
    out.push(0);
    out.extend_from_slice(chain_id.as_bytes());
    out.push(0);
    out.extend_from_slice(&sequence.to_be_bytes());
    out.extend_from_slice(&timestamp_ms.to_be_bytes());
    out.extend_from_slice(signer_pubkey);
    out.extend_from_slice(&body_bytes);
    Ok(out)
}

/// A transaction as carried on the wire; all checks happen in
/// [`SignedTx::verify`].
#[derive(Clone, Debug, PartialEq)]
pub struct SignedTx {
    tx: Tx,
}

impl SignedTx {
    /// Builds and signs a transaction with `secret`.
    pub fn sign(
        body: TxBody,
        secret: &SecretKey,
        sequence: u64,
        chain_id: &str,
        timestamp_ms: i64,
    ) -> Result<Self> {
        let pubkey = secret.public_key().to_bytes();
        let msg = sign_bytes(&body, &pubkey, sequence, chain_id, timestamp_ms)?;
        let signature = secret.sign(&msg)?;
        Ok(SignedTx {
            tx: Tx {
                body: Some(body),
                signer_pubkey: pubkey.to_vec(),
                sequence,
                chain_id: chain_id.to_owned(),
                timestamp_ms,
                signature: signature.0.to_vec(),
            },
        })
    }

    /// Wraps a protobuf `Tx` (unchecked until [`verify`](Self::verify)).
    pub fn from_proto(tx: Tx) -> Self {
        SignedTx { tx }
    }

    /// The protobuf form.
    pub fn as_proto(&self) -> &Tx {
        &self.tx
    }

    /// The canonical protobuf encoding.
    pub fn encode(&self) -> Vec<u8> {
        self.tx.encode_to_vec()
    }

    /// The length of [`encode`](Self::encode)'s output, without encoding.
    pub fn encoded_len(&self) -> usize {
        self.tx.encoded_len()
    }

    /// Decodes `bytes`, at most `max_tx_bytes` long, which must be the
    /// canonical encoding (re-encoding gives the same bytes). Never panics.
    pub fn decode(bytes: &[u8], max_tx_bytes: usize) -> Result<Self> {
        if bytes.len() > max_tx_bytes {
            return Err(Error::TxTooLarge {
                len: bytes.len(),
                max: max_tx_bytes,
            });
        }
        let tx = Tx::decode(bytes).map_err(|e| Error::TxDecode(e.to_string()))?;
        if tx.encoded_len() != bytes.len() || tx.encode_to_vec() != bytes {
            return Err(Error::TxNonCanonical);
        }
        Ok(SignedTx { tx })
    }

    /// Checks the transaction against the keeper's view and returns the
    /// signer's address. In order: chain id equals `expected_chain_id`, the
    /// sequence equals `expected_sequence`, `|timestamp_ms - block_time_ms|
    /// <= max_clock_skew_ms`, a message is present, the public key is valid,
    /// the signature is valid and low-S over the sign bytes, and every
    /// message's signer field names the public key's address.
    pub fn verify(
        &self,
        expected_chain_id: &str,
        expected_sequence: u64,
        block_time_ms: i64,
        max_clock_skew_ms: u64,
    ) -> Result<Address> {
        let tx = &self.tx;
        if tx.chain_id != expected_chain_id {
            return Err(Error::WrongChainId {
                expected: expected_chain_id.to_owned(),
                found: tx.chain_id.clone(),
            });
        }
        if tx.sequence != expected_sequence {
            return Err(Error::WrongSequence {
                expected: expected_sequence,
                found: tx.sequence,
            });
        }
        let distance = (i128::from(tx.timestamp_ms) - i128::from(block_time_ms)).unsigned_abs();
        if distance > u128::from(max_clock_skew_ms) {
            return Err(Error::TimestampOutOfWindow {
                timestamp_ms: tx.timestamp_ms,
                block_time_ms,
                max_skew_ms: max_clock_skew_ms,
            });
        }
        let body = tx.body.as_ref().ok_or(Error::MissingMessage)?;
        let msg = body.msg.as_ref().ok_or(Error::MissingMessage)?;
        let pubkey = PublicKey::from_compressed(&tx.signer_pubkey)?;
        let signature = Signature::from_slice(&tx.signature)?;
        let bytes = sign_bytes(
            body,
            &tx.signer_pubkey,
            tx.sequence,
            &tx.chain_id,
            tx.timestamp_ms,
        )?;
        pubkey.verify(&bytes, &signature)?;
        let signer = pubkey.address();
        let named = message_signer(msg);
        let from = Address::parse(named)?;
        if from != signer {
            return Err(Error::SignerMismatch {
                msg_signer: named.to_owned(),
                tx_signer: signer.to_string(),
            });
        }
        Ok(signer)
    }
}

/// The address a message names as its signer (its first field).
pub fn message_signer(msg: &tx_body::Msg) -> &str {
    use tx_body::Msg;
    match msg {
        Msg::Send(m) => &m.from,
        Msg::Stake(m) => &m.from,
        Msg::Unstake(m) => &m.from,
        Msg::SubmitGradient(m) => &m.miner,
        Msg::ProposeDataset(m) => &m.proposer,
        Msg::ApproveDataset(m) => &m.validator,
        Msg::DeactivateDataset(m) => &m.validator,
        Msg::IssueChallenge(m) => &m.challenger,
        Msg::RespondChallenge(m) => &m.responder,
        Msg::RegisterReplica(m) => &m.miner,
        Msg::RegisterPin(m) => &m.pinner,
        Msg::ClaimPinRewards(m) => &m.pinner,
        Msg::SubmitVerification(m) => &m.validator,
        Msg::RegisterModel(m) => &m.authority,
        Msg::RecordTrace(m) => &m.submitter,
    }
}

/// Joins the two halves of a u128 carried as `(low, high)` u64 fields.
pub fn join_amount(low: u64, high: u64) -> u128 {
    (u128::from(high) << 64) | u128::from(low)
}

/// The u128 amount of a `MsgSend` (`amount_high << 64 | amount_low`).
pub fn send_amount(msg: &crate::proto::MsgSend) -> u128 {
    (u128::from(msg.amount_high) << 64) | u128::from(msg.amount_low)
}

/// Splits a u128 amount into `(amount_low, amount_high)`.
pub fn split_amount(amount: u128) -> (u64, u64) {
    #[allow(clippy::cast_possible_truncation)]
    let low = amount as u64;
    #[allow(clippy::cast_possible_truncation)]
    let high = (amount >> 64) as u64;
    (low, high)
}
