//! The crate's rules used together, through the public API only, the way a
//! node handling one gradient submission would.

use r3mes_protocol::ProtocolError;
use r3mes_protocol::chunk::{self, ChunkData, FIXED_CHUNK_SIZE_TOKENS};
use r3mes_protocol::layout::{ContentPath, GradientPath, MinerAddress};
use r3mes_protocol::retention::DataClass;
use r3mes_protocol::shard;

const BLOCK_TIME_MS: u64 = 6_000;

#[test]
fn a_submission_flows_through_every_rule() {
    let wallet = "remes1qyfkm2y3j9v6wz";
    let block_hash =
        hex::decode("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855").unwrap();
    // python3 -c "import hashlib,struct; d=hashlib.sha256(b'remes1miner'+bytes.fromhex('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855')+struct.pack('>Q',1000)).digest(); print(int.from_bytes(d[:8],'big') % 7)"
    // -> 5
    assert_eq!(
        shard::assign_shard("remes1miner", &block_hash, 1000, 7),
        Ok(5)
    );
    let shard_id = shard::assign_shard(wallet, &block_hash, 1000, 64).unwrap();

    let chunk = ChunkData {
        chunk_id: 42,
        data_hash: "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG".to_owned(),
        token_count: FIXED_CHUNK_SIZE_TOKENS,
        shard_id,
        window_id: 1000,
    };
    chunk::validate_chunk_size(&chunk).unwrap();
    chunk::check_chunk_tokens(vec![0u32; 2048].len()).unwrap();

    let path: ContentPath = GradientPath::Miner {
        window: chunk.window_id,
        miner: MinerAddress::new(wallet).unwrap(),
    }
    .into();
    let rendered = path.to_string();
    assert_eq!(rendered, "gradients/window_1000/miner_remes1qyfkm2y3j9v6wz");
    assert_eq!(rendered.parse::<ContentPath>(), Ok(path));

    let class: DataClass = "gradient_update".parse().unwrap();
    assert_eq!(class.retention_blocks(BLOCK_TIME_MS), Ok(100_800));
    assert!(!class.pinning_required());
    assert_eq!(class.replication_level(), 3);
}

#[test]
fn every_rule_reports_bad_input_as_an_error() {
    let too_short = ChunkData {
        chunk_id: 1,
        data_hash: String::new(),
        token_count: 1024,
        shard_id: 0,
        window_id: 0,
    };
    let errors = [
        chunk::validate_chunk_size(&too_short).unwrap_err(),
        chunk::check_chunk_tokens(4096).unwrap_err(),
        "model_weights".parse::<DataClass>().unwrap_err(),
        DataClass::CheckpointModel.retention_blocks(0).unwrap_err(),
        shard::assign_shard("remes1abc", &[0; 32], 1, 0).unwrap_err(),
        "../etc/passwd".parse::<ContentPath>().unwrap_err(),
    ];
    let messages: Vec<String> = errors.iter().map(ProtocolError::to_string).collect();
    assert_eq!(
        messages,
        [
            "invalid chunk size: chunk must be exactly 2048 tokens, got 1024",
            "Invalid chunk size: 4096 (expected 2048)",
            "unknown data class \"model_weights\": expected checkpoint_model, gradient_update or computation_trace",
            "block time must be greater than zero milliseconds",
            "total shard count must be greater than zero",
            "invalid content path \"../etc/passwd\": `.` and `..` segments are not allowed",
        ]
    );
}
