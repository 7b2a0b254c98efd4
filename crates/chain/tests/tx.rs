//! Signed transaction tests: every rejection path of `SignedTx::verify` and
//! `SignedTx::decode`, plus property tests (round trip, single-bit flips,
//! arbitrary bytes).

use proptest::prelude::*;
use r3mes_chain::proto::{MsgSend, Tx, TxBody, tx_body};
use r3mes_chain::tx::{send_amount, split_amount};
use r3mes_chain::{Error, SecretKey, SignedTx};

const CHAIN: &str = "r3mes-test-1";
const T0: i64 = 1_700_000_000_000;
const SKEW: u64 = 30_000;
const MAX: usize = 4096;

fn key(b: u8) -> SecretKey {
    SecretKey::from_bytes(&[b; 32]).expect("valid key")
}

fn send_body(from: &SecretKey, amount: u128) -> TxBody {
    let (amount_low, amount_high) = split_amount(amount);
    TxBody {
        msg: Some(tx_body::Msg::Send(MsgSend {
            from: from.public_key().address().to_string(),
            to: key(200).public_key().address().to_string(),
            amount_low,
            amount_high,
        })),
    }
}

fn signed(sk: &SecretKey, seq: u64, ts: i64) -> SignedTx {
    SignedTx::sign(send_body(sk, 1234), sk, seq, CHAIN, ts).expect("sign")
}

fn resign_raw(mut tx: Tx, sk: &SecretKey) -> SignedTx {
    let body = tx.body.take().expect("body");
    let again = SignedTx::sign(body, sk, tx.sequence, &tx.chain_id, tx.timestamp_ms).expect("sign");
    SignedTx::from_proto(again.as_proto().clone())
}

#[test]
fn accepts_valid() {
    let sk = key(1);
    let tx = signed(&sk, 3, T0);
    let back = SignedTx::decode(&tx.encode(), MAX).unwrap();
    assert_eq!(back, tx);
    assert_eq!(
        back.verify(CHAIN, 3, T0 + 30_000, SKEW).unwrap(),
        sk.public_key().address()
    );
    assert_eq!(
        back.verify(CHAIN, 3, T0 - 30_000, SKEW).unwrap(),
        sk.public_key().address()
    );
}

#[test]
fn rejects_wrong_chain_id() {
    let tx = signed(&key(1), 0, T0);
    let err = tx.verify("other", 0, T0, SKEW).unwrap_err();
    assert!(matches!(err, Error::WrongChainId { .. }));
    assert_eq!(err.code(), 25);
}

#[test]
fn rejects_replay_and_gap() {
    let tx = signed(&key(1), 5, T0);
    assert_eq!(
        tx.verify(CHAIN, 6, T0, SKEW).unwrap_err(),
        Error::WrongSequence {
            expected: 6,
            found: 5
        }
    );
    assert_eq!(
        tx.verify(CHAIN, 4, T0, SKEW).unwrap_err(),
        Error::WrongSequence {
            expected: 4,
            found: 5
        }
    );
}

#[test]
fn rejects_timestamp_outside_window() {
    let tx = signed(&key(1), 0, T0);
    for block in [T0 + 30_001, T0 - 30_001, i64::MIN, i64::MAX] {
        let err = tx.verify(CHAIN, 0, block, SKEW).unwrap_err();
        assert!(matches!(err, Error::TimestampOutOfWindow { .. }), "{err}");
    }
    let extreme = signed(&key(1), 0, i64::MIN);
    assert!(extreme.verify(CHAIN, 0, i64::MAX, u64::MAX).is_ok());
}

#[test]
fn rejects_bad_signature() {
    let sk = key(1);
    let mut raw = signed(&sk, 0, T0).as_proto().clone();
    raw.signature[10] ^= 1;
    let err = SignedTx::from_proto(raw.clone())
        .verify(CHAIN, 0, T0, SKEW)
        .unwrap_err();
    assert!(
        matches!(err, Error::BadSignature | Error::MalformedSignature(_)),
        "{err}"
    );
    raw.signature.pop();
    let err = SignedTx::from_proto(raw)
        .verify(CHAIN, 0, T0, SKEW)
        .unwrap_err();
    assert_eq!(err.code(), 3);

    // Signature by another key over the same tx with this pubkey.
    let mut raw = signed(&sk, 0, T0).as_proto().clone();
    let other = signed(&key(2), 0, T0).as_proto().clone();
    raw.signature = other.signature;
    assert_eq!(
        SignedTx::from_proto(raw)
            .verify(CHAIN, 0, T0, SKEW)
            .unwrap_err(),
        Error::BadSignature
    );
}

#[test]
fn rejects_signer_mismatch() {
    let sk = key(1);
    // Body names key 2 as sender but key 1 signs.
    let tx = SignedTx::sign(send_body(&key(2), 1), &sk, 0, CHAIN, T0).unwrap();
    let err = tx.verify(CHAIN, 0, T0, SKEW).unwrap_err();
    assert!(matches!(err, Error::SignerMismatch { .. }));
    assert_eq!(err.code(), 28);

    // Sender field not an address at all.
    let mut raw = tx.as_proto().clone();
    if let Some(TxBody {
        msg: Some(tx_body::Msg::Send(send)),
    }) = raw.body.as_mut()
    {
        send.from = "cosmos1xyz".into();
    }
    let err = resign_raw(raw, &sk).verify(CHAIN, 0, T0, SKEW).unwrap_err();
    assert!(err.code() >= 10 && err.code() <= 14, "{err}");
}

#[test]
fn rejects_malformed_pubkey_and_missing_message() {
    let sk = key(1);
    let mut raw = signed(&sk, 0, T0).as_proto().clone();
    raw.signer_pubkey[0] = 0x04;
    let err = SignedTx::from_proto(raw)
        .verify(CHAIN, 0, T0, SKEW)
        .unwrap_err();
    assert!(matches!(err, Error::MalformedPublicKey(_)));

    let mut raw = signed(&sk, 0, T0).as_proto().clone();
    raw.signer_pubkey.truncate(20);
    assert_eq!(
        SignedTx::from_proto(raw)
            .verify(CHAIN, 0, T0, SKEW)
            .unwrap_err()
            .code(),
        2
    );

    let empty = SignedTx::sign(TxBody { msg: None }, &sk, 0, CHAIN, T0).unwrap();
    assert_eq!(
        empty.verify(CHAIN, 0, T0, SKEW).unwrap_err(),
        Error::MissingMessage
    );
    let mut raw = signed(&sk, 0, T0).as_proto().clone();
    raw.body = None;
    assert_eq!(
        SignedTx::from_proto(raw)
            .verify(CHAIN, 0, T0, SKEW)
            .unwrap_err(),
        Error::MissingMessage
    );
}

#[test]
fn rejects_nul_in_chain_id() {
    let sk = key(1);
    let err = SignedTx::sign(send_body(&sk, 1), &sk, 0, "a\0b", T0).unwrap_err();
    assert_eq!(err, Error::InvalidChainId);
}

#[test]
fn decode_limits_and_canonical_form() {
    let bytes = signed(&key(1), 0, T0).encode();
    assert_eq!(
        SignedTx::decode(&bytes, bytes.len() - 1).unwrap_err(),
        Error::TxTooLarge {
            len: bytes.len(),
            max: bytes.len() - 1
        }
    );
    assert!(SignedTx::decode(&bytes, bytes.len()).is_ok());
    // An unknown field appended: decodes in prost, but is not canonical.
    let mut extra = bytes.clone();
    extra.extend_from_slice(&[0x38, 0x01]);
    assert_eq!(
        SignedTx::decode(&extra, MAX).unwrap_err(),
        Error::TxNonCanonical
    );
    // A field repeated (last one wins in protobuf): not canonical either.
    let mut dup = bytes.clone();
    dup.extend_from_slice(&[0x18, 0x00]);
    assert_eq!(SignedTx::decode(&dup, MAX).unwrap_err().code(), 22);
    assert_eq!(SignedTx::decode(&[0xff], MAX).unwrap_err().code(), 21);
}

#[test]
fn amount_split_round_trips() {
    for a in [
        0u128,
        1,
        u128::from(u64::MAX),
        u128::from(u64::MAX) + 1,
        u128::MAX,
    ] {
        let (low, high) = split_amount(a);
        let m = MsgSend {
            from: String::new(),
            to: String::new(),
            amount_low: low,
            amount_high: high,
        };
        assert_eq!(send_amount(&m), a);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn sign_verify_round_trip(
        seed in any::<[u8; 32]>(),
        seq in any::<u64>(),
        ts in any::<i64>(),
        amount in any::<u128>(),
        chain in "[a-z0-9-]{0,24}",
    ) {
        let Ok(sk) = SecretKey::from_bytes(&seed) else { return Ok(()) };
        let tx = SignedTx::sign(send_body(&sk, amount), &sk, seq, &chain, ts).unwrap();
        let back = SignedTx::decode(&tx.encode(), MAX).unwrap();
        prop_assert_eq!(back.verify(&chain, seq, ts, 0).unwrap(), sk.public_key().address());
    }

    #[test]
    fn single_bit_flip_is_rejected(seq in 1u64..1000, amount in 1u128.., bit in any::<prop::sample::Index>()) {
        let sk = key(11);
        let ts = T0 + 17;
        let bytes = SignedTx::sign(send_body(&sk, amount), &sk, seq, CHAIN, ts).unwrap().encode();
        let i = bit.index(bytes.len() * 8);
        let mut flipped = bytes.clone();
        flipped[i / 8] ^= 1 << (i % 8);
        let outcome = SignedTx::decode(&flipped, MAX).and_then(|t| t.verify(CHAIN, seq, ts, 0));
        prop_assert!(outcome.is_err(), "bit {} accepted", i);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(tx) = SignedTx::decode(&bytes, MAX) {
            let _ = tx.verify(CHAIN, 0, T0, SKEW);
            prop_assert_eq!(tx.encode(), bytes);
        }
    }
}

#[test]
fn every_bit_flip_of_one_tx_is_rejected() {
    let sk = key(12);
    let bytes = signed(&sk, 9, T0).encode();
    for i in 0..bytes.len() * 8 {
        let mut flipped = bytes.clone();
        flipped[i / 8] ^= 1 << (i % 8);
        let outcome = SignedTx::decode(&flipped, MAX).and_then(|t| t.verify(CHAIN, 9, T0, 0));
        assert!(outcome.is_err(), "bit {i} accepted");
    }
}

#[test]
fn rejects_malleated_high_s_signature() {
    // n - s: the other valid-looking signature for the same (r, message).
    const ORDER: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xfe, 0xba, 0xae, 0xdc, 0xe6, 0xaf, 0x48, 0xa0, 0x3b, 0xbf, 0xd2, 0x5e, 0x8c, 0xd0, 0x36,
        0x41, 0x41,
    ];
    let mut raw = signed(&key(1), 0, T0).as_proto().clone();
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let d = i16::from(ORDER[i]) - i16::from(raw.signature[32 + i]) - borrow;
        borrow = i16::from(d < 0);
        raw.signature[32 + i] = u8::try_from(d.rem_euclid(256)).unwrap();
    }
    assert_eq!(
        SignedTx::from_proto(raw)
            .verify(CHAIN, 0, T0, SKEW)
            .unwrap_err(),
        Error::HighS
    );
}
