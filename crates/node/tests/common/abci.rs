//! What the node's ABCI tests share: the genesis sent over an
//! [`r3mes_abci::client::Client`] and checked against a reference keeper,
//! and transactions signed for a keeper's next block.

use r3mes_abci::client::Client;
use r3mes_chain::proto::{TxBody, tx_body};
use r3mes_chain::{Keeper, SecretKey, SignedTx};
use tendermint_proto::v0_38::abci::RequestInitChain;

/// Sends CometBFT's `InitChain` for `genesis_json` (chain `chain_id`, from
/// height 1); the genesis app hash must be `reference`'s.
pub fn init_chain(client: &mut Client, chain_id: &str, genesis_json: &str, reference: &Keeper) {
    let r = client
        .init_chain(RequestInitChain {
            chain_id: chain_id.into(),
            app_state_bytes: genesis_json.as_bytes().to_vec().into(),
            initial_height: 1,
            ..Default::default()
        })
        .expect("InitChain");
    assert_eq!(
        r.app_hash.to_vec(),
        reference.app_hash().expect("app hash").to_vec()
    );
}

/// `msg` signed by `key` at `seq` on chain `chain_id` for the time of
/// `keeper`'s next block, encoded.
pub fn sign_next(
    keeper: &Keeper,
    chain_id: &str,
    key: &SecretKey,
    seq: u64,
    msg: tx_body::Msg,
) -> Vec<u8> {
    let time = keeper
        .block_time_ms(keeper.height().expect("height") + 1)
        .expect("block time");
    SignedTx::sign(TxBody { msg: Some(msg) }, key, seq, chain_id, time)
        .expect("sign")
        .encode()
}
