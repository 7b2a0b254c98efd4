//! MsgSend execution: success, each rejection, atomicity, supply
//! conservation and app-hash determinism.

use proptest::prelude::*;
use r3mes_chain::accounts::{
    Account, burn, committed_total_supply, get_account, get_committed_account, mint,
};
use r3mes_chain::apply::{TxOutcome, apply_tx};
use r3mes_chain::exec::Ctx;
use r3mes_chain::genesis::{Genesis, apply_genesis};
use r3mes_chain::params::Params;
use r3mes_chain::proto::{MsgSend, TxBody, tx_body};
use r3mes_chain::state::BlockWriter;
use r3mes_chain::state::State;
use r3mes_chain::tx::split_amount;
use r3mes_chain::{Address, SecretKey, SignedTx};

const FIXTURE: &str = include_str!("fixtures/genesis.json");
const CHAIN: &str = "r3mes-test-1";

fn key(i: u8) -> SecretKey {
    SecretKey::from_bytes(&[i; 32]).expect("helper")
}

fn addr(i: u8) -> Address {
    key(i).public_key().address()
}

fn send(from: u8, to: &str, amount: u128, seq: u64, chain: &str, t: i64) -> SignedTx {
    let (amount_low, amount_high) = split_amount(amount);
    let body = TxBody {
        msg: Some(tx_body::Msg::Send(MsgSend {
            from: addr(from).to_string(),
            to: to.to_owned(),
            amount_low,
            amount_high,
        })),
    };
    SignedTx::sign(body, &key(from), seq, chain, t).expect("helper")
}

/// Applies `tx` in `b` at block time `t` with a zero block hash.
fn apply(
    b: &mut BlockWriter<'_>,
    tx: &SignedTx,
    params: &Params,
    chain: &str,
    t: i64,
) -> r3mes_chain::Result<TxOutcome> {
    let ctx = Ctx {
        params,
        chain_id: chain,
        height: b.height(),
        time_ms: t,
        block_hash: [0; 32],
        open_round: None,
    };
    apply_tx(b, tx, &ctx)
}

fn setup() -> (State, Genesis) {
    let g = Genesis::from_json(FIXTURE).expect("helper");
    let s = State::in_memory().expect("helper");
    apply_genesis(&s, &g).expect("helper");
    (s, g)
}

fn t2(g: &Genesis) -> i64 {
    g.block_time_ms(2).expect("helper")
}

#[test]
fn send_moves_funds_and_bumps_sequence() {
    let (s, g) = setup();
    let mut b = s.begin_block(2).unwrap();
    let to = addr(3).to_string();
    apply(
        &mut b,
        &send(1, &to, 400, 0, CHAIN, t2(&g)),
        &g.params,
        CHAIN,
        t2(&g),
    )
    .unwrap();
    apply(
        &mut b,
        &send(1, &to, 100, 1, CHAIN, t2(&g)),
        &g.params,
        CHAIN,
        t2(&g),
    )
    .unwrap();
    let from = get_account(&b, &addr(1)).unwrap();
    assert_eq!(
        (from.balance, from.stake, from.sequence),
        (999_999_500, 500, 2)
    );
    assert_eq!(get_account(&b, &addr(3)).unwrap().balance, 500);
    b.commit().unwrap();
    assert_eq!(get_committed_account(&s, &addr(3)).unwrap().balance, 500);
    assert_eq!(committed_total_supply(&s).unwrap(), g.total_supply);
}

#[test]
fn send_to_self_only_bumps_sequence() {
    let (s, g) = setup();
    let mut b = s.begin_block(2).unwrap();
    let me = addr(2).to_string();
    apply(
        &mut b,
        &send(2, &me, 1000, 0, CHAIN, t2(&g)),
        &g.params,
        CHAIN,
        t2(&g),
    )
    .unwrap();
    let acc = get_account(&b, &addr(2)).unwrap();
    assert_eq!((acc.balance, acc.sequence), (1000, 1));
    let err = apply(
        &mut b,
        &send(2, &me, 1001, 1, CHAIN, t2(&g)),
        &g.params,
        CHAIN,
        t2(&g),
    );
    assert_eq!(err.unwrap_err().code(), 52);
}

#[test]
fn failed_txs_change_nothing() {
    let (s, g) = setup();
    let mut b = s.begin_block(2).unwrap();
    let t = t2(&g);
    let to = addr(3).to_string();
    let before = get_account(&b, &addr(2)).unwrap();
    let cases: Vec<(SignedTx, u32)> = vec![
        (send(2, &to, 1001, 0, CHAIN, t), 52),
        (send(2, &to, 1, 1, CHAIN, t), 26),
        (send(2, &to, 1, 0, "other-chain", t), 25),
        (send(2, &to, 1, 0, CHAIN, t + 60_001), 27),
        (send(2, "remes1notanaddress", 1, 0, CHAIN, t), 11),
        (
            send(
                2,
                "cosmos1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqnrql8a",
                1,
                0,
                CHAIN,
                t,
            ),
            13,
        ),
    ];
    for (tx, code) in &cases {
        let err = apply(&mut b, tx, &g.params, CHAIN, t).unwrap_err();
        assert_eq!(err.code(), *code, "{err}");
        assert_eq!(get_account(&b, &addr(2)).unwrap(), before);
        assert_eq!(get_account(&b, &addr(3)).unwrap(), Account::default());
    }
    let mut small = g.params.clone();
    small.max_tx_bytes = 10;
    let err = apply(&mut b, &send(2, &to, 1, 0, CHAIN, t), &small, CHAIN, t);
    assert_eq!(err.unwrap_err().code(), 20);
    assert_eq!(get_account(&b, &addr(2)).unwrap(), before);
}

#[test]
fn replay_is_rejected() {
    let (s, g) = setup();
    let t = t2(&g);
    let tx = send(1, &addr(2).to_string(), 7, 0, CHAIN, t);
    let mut b = s.begin_block(2).unwrap();
    apply(&mut b, &tx, &g.params, CHAIN, t).unwrap();
    assert_eq!(
        apply(&mut b, &tx, &g.params, CHAIN, t).unwrap_err().code(),
        26
    );
    b.commit().unwrap();
    let t3 = g.block_time_ms(3).unwrap();
    let mut b = s.begin_block(3).unwrap();
    assert_eq!(
        apply(&mut b, &tx, &g.params, CHAIN, t3).unwrap_err().code(),
        26
    );
    assert_eq!(get_account(&b, &addr(2)).unwrap().balance, 1007);
}

#[test]
fn mint_and_burn_move_the_supply() {
    let (s, g) = setup();
    let mut b = s.begin_block(2).unwrap();
    mint(&mut b, &addr(3), 10).unwrap();
    burn(&mut b, &addr(2), 4).unwrap();
    assert_eq!(burn(&mut b, &addr(3), 11).unwrap_err().code(), 52);
    assert_eq!(mint(&mut b, &addr(3), u128::MAX).unwrap_err().code(), 53);
    b.commit().unwrap();
    assert_eq!(committed_total_supply(&s).unwrap(), g.total_supply + 6);
}

#[derive(Debug, Clone)]
struct Op {
    from: u8,
    to: u8,
    amount: u128,
    seq_offset: u64,
}

fn op() -> impl Strategy<Value = Op> {
    (
        1u8..=4,
        1u8..=4,
        prop_oneof![0u128..2000, 0u128..2_000_000_000, Just(u128::MAX)],
        prop_oneof![4 => Just(0u64), 1 => 0u64..3],
    )
        .prop_map(|(from, to, amount, seq_offset)| Op {
            from,
            to,
            amount,
            seq_offset,
        })
}

/// Runs `blocks` on a fresh genesis state; returns per-block app hashes.
fn run(blocks: &[Vec<Op>]) -> (State, Vec<[u8; 32]>, u128) {
    let (s, g) = setup();
    let mut hashes = Vec::new();
    for (i, ops) in blocks.iter().enumerate() {
        let height = i as u64 + 2;
        let t = g.block_time_ms(height).expect("helper");
        let mut b = s.begin_block(height).expect("helper");
        for o in ops {
            let seq = get_account(&b, &addr(o.from)).expect("helper").sequence + o.seq_offset;
            let tx = send(o.from, &addr(o.to).to_string(), o.amount, seq, CHAIN, t);
            let _ = apply(&mut b, &tx, &g.params, CHAIN, t);
        }
        hashes.push(b.commit().expect("helper"));
    }
    (s, hashes, g.total_supply)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn supply_is_conserved_and_hashes_agree(
        blocks in prop::collection::vec(prop::collection::vec(op(), 0..6), 1..4)
    ) {
        let (s1, h1, supply) = run(&blocks);
        let (_s2, h2, _) = run(&blocks);
        prop_assert_eq!(&h1, &h2);
        prop_assert_eq!(committed_total_supply(&s1).unwrap(), supply);
        let sum: u128 = (1..=4u8)
            .map(|i| {
                let a = get_committed_account(&s1, &addr(i)).unwrap();
                a.balance + a.stake + a.unbonding
            })
            .sum();
        prop_assert_eq!(sum, supply);
        prop_assert_eq!(s1.recompute_app_hash().unwrap(), *h1.last().unwrap());
    }
}
