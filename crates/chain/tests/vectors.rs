//! Known-answer tests against `tests/fixtures/vectors.txt`, produced by the
//! independent Python reference `tests/fixtures/vectors.py` (hashlib, a
//! from-scratch bech32 encoder, a hand-written protobuf encoder and the
//! `ecdsa` package).

use std::collections::BTreeMap;

use r3mes_chain::proto::{MsgSend, TxBody, tx_body};
use r3mes_chain::tx::sign_bytes;
use r3mes_chain::{Address, PublicKey, SecretKey, Signature, SignedTx};

const VECTORS: &str = include_str!("fixtures/vectors.txt");

fn vectors() -> BTreeMap<&'static str, &'static str> {
    VECTORS
        .lines()
        .filter_map(|line| line.split_once('='))
        .collect()
}

fn get<'a>(v: &BTreeMap<&'a str, &'a str>, key: &str) -> &'a str {
    v.get(key).copied().expect("key present in vectors.txt")
}

fn secret_from_hex(hex_str: &str) -> SecretKey {
    let bytes: [u8; 32] = hex::decode(hex_str)
        .expect("hex")
        .try_into()
        .expect("32 bytes");
    SecretKey::from_bytes(&bytes).expect("valid secret")
}

#[test]
fn generator_point_address() {
    let v = vectors();
    let mut one = [0u8; 32];
    one[31] = 1;
    let pk = SecretKey::from_bytes(&one).unwrap().public_key();
    assert_eq!(hex::encode(pk.to_bytes()), get(&v, "g_pubkey"));
    assert_eq!(
        hex::encode(pk.address().as_bytes()),
        "751e76e8199196d454941c45d1b3a323f1433bd6"
    );
    assert_eq!(pk.address().to_string(), get(&v, "g_address"));
    assert_eq!(Address::parse(get(&v, "g_address")).unwrap(), pk.address());
}

#[test]
fn tx_vector_matches_python() {
    let v = vectors();
    let sk = secret_from_hex(get(&v, "secret"));
    let pk = sk.public_key();
    assert_eq!(hex::encode(pk.to_bytes()), get(&v, "pubkey"));
    assert_eq!(pk.address().to_string(), get(&v, "address"));
    let to = secret_from_hex(&"02".repeat(32)).public_key().address();
    assert_eq!(to.to_string(), get(&v, "to"));

    let body = TxBody {
        msg: Some(tx_body::Msg::Send(MsgSend {
            from: pk.address().to_string(),
            to: to.to_string(),
            amount_low: get(&v, "amount_low").parse().unwrap(),
            amount_high: get(&v, "amount_high").parse().unwrap(),
        })),
    };
    let chain_id = get(&v, "chain_id");
    let sequence: u64 = get(&v, "sequence").parse().unwrap();
    let ts: i64 = get(&v, "timestamp_ms").parse().unwrap();
    let sb = sign_bytes(&body, &pk.to_bytes(), sequence, chain_id, ts).unwrap();
    assert_eq!(hex::encode(&sb), get(&v, "sign_bytes"));

    let tx = SignedTx::sign(body, &sk, sequence, chain_id, ts).unwrap();
    let sig = hex::encode(&tx.as_proto().signature);
    println!("rust signature: {sig}");
    // RFC 6979 makes the signature deterministic: Rust and Python agree.
    assert_eq!(sig, get(&v, "signature"));
    assert_eq!(get(&v, "rust_signature_verified"), "true");
    assert_eq!(hex::encode(tx.encode()), get(&v, "tx"));
    let decoded = SignedTx::decode(&hex::decode(get(&v, "tx")).unwrap(), 1024).unwrap();
    assert_eq!(decoded, tx);

    let python_sig = Signature::from_slice(&hex::decode(get(&v, "signature")).unwrap()).unwrap();
    pk.verify(&sb, &python_sig).unwrap();
    assert_eq!(tx.verify(chain_id, sequence, ts, 0).unwrap(), pk.address());

    let pk2 = PublicKey::from_compressed(&pk.to_bytes()).unwrap();
    assert_eq!(pk2, pk);
}
