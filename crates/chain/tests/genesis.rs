//! Genesis parsing, validation and application.

use r3mes_chain::accounts::{committed_total_supply, get_committed_account};
use r3mes_chain::genesis::{Genesis, apply_genesis, parse_amount};
use r3mes_chain::params::Params;
use r3mes_chain::state::State;
use r3mes_chain::{Address, Error};

const FIXTURE: &str = include_str!("fixtures/genesis.json");

fn with(f: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut v: serde_json::Value = serde_json::from_str(FIXTURE).expect("helper");
    f(&mut v);
    v.to_string()
}

fn code(json: &str) -> u32 {
    Genesis::from_json(json).expect_err("must fail").code()
}

#[test]
fn fixture_parses_with_default_params() {
    let g = Genesis::from_json(FIXTURE).unwrap();
    assert_eq!(g.chain_id, "r3mes-test-1");
    assert_eq!(g.params, Params::default());
    assert_eq!(g.accounts.len(), 3);
    assert_eq!(g.total_supply, 1_000_001_500);
    assert_eq!(g.block_time_ms(2), Some(1_700_000_002_000));
}

#[test]
fn default_retention_follows_block_time() {
    let p = Params::default_for_block_time(1000);
    assert_eq!(p.retention_trace_blocks, 86_400);
    assert_eq!(p.retention_gradient_blocks, 7 * 86_400);
    assert_eq!(p.retention_checkpoint_blocks, 365 * 86_400);
    assert_eq!(
        Params::default_for_block_time(7000).retention_trace_blocks,
        12_343
    );
    assert!(Params::default_for_block_time(0).validate().is_err());
}

#[test]
fn data_policies_are_the_seeds_in_blocks() {
    let p = Params::default_for_block_time(1000);
    let table: Vec<_> = p
        .data_policies()
        .into_iter()
        .map(|d| {
            (
                d.data_type,
                d.retention_blocks,
                d.replication_level,
                d.pinning_required,
            )
        })
        .collect();
    assert_eq!(
        table,
        vec![
            ("checkpoint_model".to_owned(), 365 * 86_400, 10, true),
            ("gradient_update".to_owned(), 7 * 86_400, 3, false),
            ("computation_trace".to_owned(), 86_400, 2, false),
        ]
    );
    // Retention follows the chain's own parameters.
    let short = Params {
        retention_gradient_blocks: 40,
        ..p
    };
    assert_eq!(short.data_policies()[1].retention_blocks, 40);
}

#[test]
fn parse_errors_are_rejected() {
    assert_eq!(code("{"), 51);
    assert_eq!(code(&with(|v| v["chain_id"] = "".into())), 51);
    assert_eq!(code(&with(|v| v["extra"] = 1.into())), 51);
    assert_eq!(code(&with(|v| v["params"]["block_time_ms"] = 0.into())), 50);
    assert_eq!(
        code(&with(|v| v["params"]["sample_rate_ppm"] = 1_000_001.into())),
        50
    );
    assert_eq!(
        code(&with(|v| v["params"]["round_length"] = (-1).into())),
        51
    );
    assert_eq!(
        code(&with(|v| v["accounts"][1]["address"] = "remes1xyz".into())),
        51
    );
    let first = with(|v| v["accounts"][1]["address"] = v["accounts"][0]["address"].clone());
    assert!(
        Genesis::from_json(&first)
            .unwrap_err()
            .to_string()
            .contains("duplicate")
    );
    for bad in [
        "",
        "-1",
        "1.5",
        "01",
        " 1",
        "1e3",
        "340282366920938463463374607431768211456",
    ] {
        assert_eq!(
            code(&with(|v| v["accounts"][0]["balance"] = bad.into())),
            51,
            "{bad}"
        );
    }
    assert_eq!(code(&with(|v| v["accounts"][0]["balance"] = 5.into())), 51);
    let max = u128::MAX.to_string();
    let over = with(|v| {
        v["accounts"][0]["balance"] = max.as_str().into();
        v["accounts"][1]["stake"] = "1".into();
    });
    assert!(
        Genesis::from_json(&over)
            .unwrap_err()
            .to_string()
            .contains("total supply")
    );
    assert_eq!(parse_amount(&max).unwrap(), u128::MAX);
    assert_eq!(parse_amount("0").unwrap(), 0);
}

#[test]
fn apply_genesis_persists_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let g = Genesis::from_json(FIXTURE).unwrap();
    let hash = {
        let s = State::open(&path).unwrap();
        let h = apply_genesis(&s, &g).unwrap();
        assert!(apply_genesis(&s, &g).is_err());
        h
    };
    let s = State::open(&path).unwrap();
    assert_eq!(s.height().unwrap(), 1);
    assert_eq!(s.app_hash().unwrap(), hash);
    assert_eq!(s.recompute_app_hash().unwrap(), hash);
    let a: Address = "remes10xcqpzrky6eff2g52qdye53xkk9jxkvr7lpq6p"
        .parse()
        .unwrap();
    let acc = get_committed_account(&s, &a).unwrap();
    assert_eq!(
        (acc.balance, acc.stake, acc.sequence),
        (1_000_000_000, 500, 0)
    );
    assert_eq!(committed_total_supply(&s).unwrap(), g.total_supply);
    let mem = State::in_memory().unwrap();
    assert_eq!(apply_genesis(&mem, &g).unwrap(), hash);
    assert_eq!(Error::InvalidGenesis(String::new()).code(), 51);
}
