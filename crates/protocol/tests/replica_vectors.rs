//! Pins the replica encoding to known answers computed outside this code base
//! (`fixtures/replica_vectors.py`: hashlib and pycryptodome's ChaCha20), so
//! the replication id and keystream can never drift.

use r3mes_protocol::replica::{apply_keystream, encode_replica, replication_id};
use serde_json::Value;

fn hex_field(v: &Value, key: &str) -> Vec<u8> {
    let text = v[key].as_str().expect("hex fields are strings");
    hex::decode(text).expect("hex fields are hex")
}

#[test]
fn replica_known_answers() {
    let text = include_str!("fixtures/replica_vectors.json");
    let json: Value = serde_json::from_str(text).unwrap();
    let vectors = json["vectors"].as_array().unwrap();
    assert!(vectors.len() >= 10);
    for v in vectors {
        let miner = v["miner"].as_str().unwrap();
        let cid = hex_field(v, "data_cid_hex");
        let offset = v["offset"].as_u64().unwrap();
        let data = hex_field(v, "data_hex");
        let replica = hex_field(v, "replica_hex");

        let id = replication_id(miner, &cid);
        assert_eq!(id.to_vec(), hex_field(v, "replication_id_hex"), "{miner}");

        let mut buf = data.clone();
        apply_keystream(&id, offset, &mut buf).unwrap();
        assert_eq!(buf, replica, "{miner} at {offset}");
        apply_keystream(&id, offset, &mut buf).unwrap();
        assert_eq!(buf, data, "decoding gives the data back");
        if offset == 0 {
            assert_eq!(encode_replica(&id, &data).unwrap(), replica);
        }
    }
}
