//! Arbitrary input through every keeper message handler: the bytes are
//! decoded as a `TxBody` (any message kind with any field values), signed
//! correctly by a staked validator with the right sequence, and delivered
//! to a fresh keeper; the raw bytes also go through `deliver_bytes`. Never
//! panics; a rejected transaction leaves the block's state unchanged.

#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use r3mes_chain::accounts::StoreRead;
use r3mes_chain::genesis::{Genesis, GenesisAccount, GenesisFile};
use r3mes_chain::params::Params;
use r3mes_chain::proto::TxBody;
use r3mes_chain::state::State;
use r3mes_chain::{Keeper, SecretKey, SignedTx};

fn keeper(key: &SecretKey) -> Keeper {
    let address = key.public_key().address().to_string();
    let genesis = Genesis::from_file(GenesisFile {
        chain_id: "fuzz-1".into(),
        genesis_time_ms: 0,
        params: Params {
            pow_difficulty_bits: 0,
            ..Params::default()
        },
        accounts: vec![GenesisAccount {
            address: address.clone(),
            balance: "1000000000".into(),
            stake: "1000000".into(),
        }],
        validators: vec![address],
    })
    .expect("valid genesis");
    Keeper::init(State::in_memory().expect("state"), &genesis).expect("genesis")
}

fuzz_target!(|data: &[u8]| {
    let key = SecretKey::from_bytes(&[7; 32]).expect("key");
    let keeper = keeper(&key);
    // Block 2 starts round 1, so gradient submissions can reach deep checks.
    keeper
        .begin_block(2, [2; 32])
        .and_then(|b| b.commit())
        .expect("block 2");
    let mut block = keeper.begin_block(3, [3; 32]).expect("block 3");
    let before = dump(block.store());
    if block.deliver_bytes(data).is_err() {
        assert!(dump(block.store()) == before, "a rejected tx changed state");
    }
    if let Ok(body) = TxBody::decode(data) {
        let time = keeper.block_time_ms(3).expect("time");
        let sequence = keeper.account(&key.public_key().address()).expect("account").sequence;
        if let Ok(tx) = SignedTx::sign(body, &key, sequence, "fuzz-1", time) {
            let before = dump(block.store());
            if block.deliver(&tx).is_err() {
                assert!(dump(block.store()) == before, "a rejected tx changed state");
            }
        }
    }
    let _ = block.end_block();
});

/// Every key and value the block's state holds.
fn dump(store: &impl StoreRead) -> Vec<(Vec<u8>, Vec<u8>)> {
    store.scan_prefix(&[], usize::MAX).expect("scan")
}
