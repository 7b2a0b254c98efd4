//! The genesis file: chain id, start time, parameters and initial accounts.
//!
//! JSON form (amounts are decimal strings because JSON numbers cannot hold
//! every u128 exactly):
//! ```json
//! {"chain_id": "r3mes-test-1", "genesis_time_ms": 0, "params": {..},
//!  "accounts": [{"address": "remes1..", "balance": "1000", "stake": "0"}]}
//! ```
//! [`Genesis::from_json`] checks the params, the chain id (non-empty, no
//! NUL), every address, that no address repeats, that amounts are plain
//! decimal u128 (digits only, no sign, no leading zeros) and that the total
//! supply fits u128. [`apply_genesis`] writes the accounts and the supply
//! as block 1 (height 0 is the empty state), so the genesis state has an
//! app hash like any other block.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::accounts::{mint, mint_stake};
use crate::apphash::Hash;
use crate::crypto::Address;
use crate::params::Params;
use crate::state::State;
use crate::tables::{CHAIN_INFO, PARAMS, VALIDATOR, singleton};
use crate::{Error, Result};

/// One account as written in the genesis file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisAccount {
    /// bech32 `remes` address.
    pub address: String,
    /// Balance in uremes, decimal string.
    pub balance: String,
    /// Stake in uremes, decimal string.
    pub stake: String,
}

/// The genesis file as parsed from JSON (unchecked; see [`Genesis`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisFile {
    /// The chain id every transaction must carry.
    pub chain_id: String,
    /// Block time of height 0, ms (block time is this plus
    /// `height * block_time_ms`).
    pub genesis_time_ms: i64,
    /// The keeper's parameters.
    pub params: Params,
    /// Initial accounts.
    pub accounts: Vec<GenesisAccount>,
    /// Validator addresses (bech32): they approve datasets, issue
    /// challenges, submit verification results and register models.
    #[serde(default)]
    pub validators: Vec<String>,
}

/// A checked initial account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitialAccount {
    /// The address.
    pub address: Address,
    /// Balance, uremes.
    pub balance: u128,
    /// Stake, uremes.
    pub stake: u128,
}

/// A validated genesis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Genesis {
    /// The chain id.
    pub chain_id: String,
    /// Block time of height 0, ms.
    pub genesis_time_ms: i64,
    /// Validated parameters.
    pub params: Params,
    /// Accounts in file order.
    pub accounts: Vec<InitialAccount>,
    /// Sum of every balance and stake.
    pub total_supply: u128,
    /// Validators, in file order.
    pub validators: Vec<Address>,
}

fn invalid(msg: String) -> Error {
    Error::InvalidGenesis(msg)
}

/// Parses a plain decimal u128: ASCII digits only, no leading zero unless
/// the value is `"0"`.
pub fn parse_amount(s: &str) -> Result<u128> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(format!("amount {s:?} is not a decimal integer")));
    }
    if s.len() > 1 && s.starts_with('0') {
        return Err(invalid(format!("amount {s:?} has a leading zero")));
    }
    s.parse::<u128>()
        .map_err(|_| invalid(format!("amount {s:?} exceeds u128")))
}

impl Genesis {
    /// Parses and validates a JSON genesis (see the module docs).
    pub fn from_json(json: &str) -> Result<Self> {
        let file: GenesisFile =
            serde_json::from_str(json).map_err(|e| invalid(format!("json: {e}")))?;
        Self::from_file(file)
    }

    /// Validates an already parsed genesis file.
    pub fn from_file(file: GenesisFile) -> Result<Self> {
        if file.chain_id.is_empty() || file.chain_id.as_bytes().contains(&0) {
            return Err(invalid("chain_id must be non-empty without NUL".into()));
        }
        file.params.validate()?;
        let mut seen = BTreeSet::new();
        let mut accounts = Vec::with_capacity(file.accounts.len());
        let mut total: u128 = 0;
        for (i, a) in file.accounts.iter().enumerate() {
            let address = Address::parse(&a.address)
                .map_err(|e| invalid(format!("account {i}: address: {e}")))?;
            if !seen.insert(address) {
                return Err(invalid(format!("account {i}: duplicate address {address}")));
            }
            let balance = parse_amount(&a.balance)
                .map_err(|e| invalid(format!("account {i}: balance: {e}")))?;
            let stake =
                parse_amount(&a.stake).map_err(|e| invalid(format!("account {i}: stake: {e}")))?;
            total = total
                .checked_add(balance)
                .and_then(|t| t.checked_add(stake))
                .ok_or_else(|| invalid("total supply exceeds u128".into()))?;
            accounts.push(InitialAccount {
                address,
                balance,
                stake,
            });
        }
        let mut validators = Vec::with_capacity(file.validators.len());
        let mut seen_validators = BTreeSet::new();
        for (i, v) in file.validators.iter().enumerate() {
            let address =
                Address::parse(v).map_err(|e| invalid(format!("validator {i}: address: {e}")))?;
            if !seen_validators.insert(address) {
                return Err(invalid(format!(
                    "validator {i}: duplicate address {address}"
                )));
            }
            validators.push(address);
        }
        Ok(Genesis {
            validators,
            chain_id: file.chain_id,
            genesis_time_ms: file.genesis_time_ms,
            params: file.params,
            accounts,
            total_supply: total,
        })
    }

    /// Block time of `height`: `genesis_time_ms + height * block_time_ms`,
    /// or `None` if it leaves i64.
    pub fn block_time_ms(&self, height: u64) -> Option<i64> {
        block_time_at(self.genesis_time_ms, self.params.block_time_ms, height)
    }
}

/// `genesis_time_ms + height * block_time_ms`, or `None` if it leaves i64.
pub fn block_time_at(genesis_time_ms: i64, block_time_ms: u64, height: u64) -> Option<i64> {
    let offset = u128::from(height).checked_mul(u128::from(block_time_ms))?;
    let t = i128::from(genesis_time_ms).checked_add(i128::try_from(offset).ok()?)?;
    i64::try_from(t).ok()
}

/// The chain's identity as stored in state (key `0x02`, JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainInfo {
    /// The chain id.
    pub chain_id: String,
    /// Block time of height 0, ms.
    pub genesis_time_ms: i64,
}

/// Writes the genesis accounts (balances and stakes minted, so the total
/// supply record equals [`Genesis::total_supply`]), the validators, the
/// parameters and the chain info as block 1 and commits it, returning the
/// app hash. The state must be at height 0.
pub fn apply_genesis(state: &State, genesis: &Genesis) -> Result<Hash> {
    let mut block = state.begin_block(1)?;
    for a in &genesis.accounts {
        mint(&mut block, &a.address, a.balance)?;
        mint_stake(&mut block, &a.address, a.stake)?;
    }
    for v in &genesis.validators {
        block.put(validator_key(v).as_bytes(), &[]);
    }
    let params = serde_json::to_vec(&genesis.params).map_err(|e| Error::Store(e.to_string()))?;
    block.put(singleton(PARAMS).as_bytes(), &params);
    let info = ChainInfo {
        chain_id: genesis.chain_id.clone(),
        genesis_time_ms: genesis.genesis_time_ms,
    };
    let info = serde_json::to_vec(&info).map_err(|e| Error::Store(e.to_string()))?;
    block.put(singleton(CHAIN_INFO).as_bytes(), &info);
    block.commit()
}

/// The state key marking `address` as a validator.
pub fn validator_key(address: &Address) -> crate::state::Key {
    crate::state::Key::new(VALIDATOR).tail(address.as_bytes())
}
