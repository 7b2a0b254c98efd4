//! Account records and supply accounting.
//!
//! Layout in `kv-0`:
//! - account: key `0x10 || address (20 bytes)`, value 40 bytes
//!   `be128(balance) || be128(stake) || be64(sequence)`. An account that
//!   was never written reads as all zeros.
//! - total supply: key `0x11`, value `be128(total)`: the sum of every
//!   balance and stake. Only [`mint`] and [`burn`] change it; transfers
//!   move amounts between accounts and leave it unchanged.

use crate::crypto::Address;
use crate::state::{BlockWriter, Key, Tx};
use crate::{Error, Result};

/// Table prefix byte of account records.
pub const ACCOUNT_TABLE: u8 = 0x10;
/// Table prefix byte of the total-supply record.
pub const SUPPLY_TABLE: u8 = 0x11;
/// Encoded length of an [`Account`].
pub const ACCOUNT_LEN: usize = 40;

/// Read and write access to the staged state: implemented by
/// [`BlockWriter`] and by a transaction [`Tx`] inside it.
pub trait Store {
    /// The value under `key`, as this writer sees it.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Stages `key = value`.
    fn put(&mut self, key: &[u8], value: &[u8]);
}

impl Store for BlockWriter<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        BlockWriter::get(self, key)
    }
    fn put(&mut self, key: &[u8], value: &[u8]) {
        BlockWriter::put(self, key, value);
    }
}

impl Store for Tx<'_, '_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Tx::get(self, key)
    }
    fn put(&mut self, key: &[u8], value: &[u8]) {
        Tx::put(self, key, value);
    }
}

/// One account: liquid balance, bonded stake (both in `uremes`) and the
/// sequence the next transaction must carry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Account {
    /// Spendable balance, uremes.
    pub balance: u128,
    /// Bonded stake, uremes.
    pub stake: u128,
    /// Number of transactions this account has executed.
    pub sequence: u64,
}

impl Account {
    /// The fixed 40-byte big-endian encoding (see the module docs).
    pub fn encode(&self) -> [u8; ACCOUNT_LEN] {
        let mut out = [0u8; ACCOUNT_LEN];
        out[..16].copy_from_slice(&self.balance.to_be_bytes());
        out[16..32].copy_from_slice(&self.stake.to_be_bytes());
        out[32..].copy_from_slice(&self.sequence.to_be_bytes());
        out
    }

    /// Decodes [`encode`](Self::encode)'s output; other lengths are
    /// [`Error::Store`].
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let arr: &[u8; ACCOUNT_LEN] = bytes
            .try_into()
            .map_err(|_| Error::Store(format!("account record of {} bytes", bytes.len())))?;
        let mut b = [0u8; 16];
        b.copy_from_slice(&arr[..16]);
        let balance = u128::from_be_bytes(b);
        b.copy_from_slice(&arr[16..32]);
        let stake = u128::from_be_bytes(b);
        let mut s = [0u8; 8];
        s.copy_from_slice(&arr[32..]);
        Ok(Account {
            balance,
            stake,
            sequence: u64::from_be_bytes(s),
        })
    }
}

/// The state key of `address`'s account.
pub fn account_key(address: &Address) -> Key {
    Key::new(ACCOUNT_TABLE).tail(address.as_bytes())
}

/// The state key of the total supply.
pub fn supply_key() -> Key {
    Key::new(SUPPLY_TABLE)
}

/// `address`'s account (all zeros if never written).
pub fn get_account(store: &impl Store, address: &Address) -> Result<Account> {
    match store.get(account_key(address).as_bytes())? {
        Some(bytes) => Account::decode(&bytes),
        None => Ok(Account::default()),
    }
}

/// Account as committed in `state` (all zeros if never written).
pub fn get_committed_account(state: &crate::state::State, address: &Address) -> Result<Account> {
    match state.get(account_key(address).as_bytes())? {
        Some(bytes) => Account::decode(&bytes),
        None => Ok(Account::default()),
    }
}

/// Stages `account` under `address`.
pub fn set_account(store: &mut impl Store, address: &Address, account: &Account) {
    store.put(account_key(address).as_bytes(), &account.encode());
}

fn decode_supply(bytes: Option<Vec<u8>>) -> Result<u128> {
    match bytes {
        None => Ok(0),
        Some(b) => {
            let arr: [u8; 16] = b
                .as_slice()
                .try_into()
                .map_err(|_| Error::Store(format!("supply record of {} bytes", b.len())))?;
            Ok(u128::from_be_bytes(arr))
        }
    }
}

/// The total supply as `store` sees it (0 if never written).
pub fn total_supply(store: &impl Store) -> Result<u128> {
    decode_supply(store.get(supply_key().as_bytes())?)
}

/// The committed total supply of `state`.
pub fn committed_total_supply(state: &crate::state::State) -> Result<u128> {
    decode_supply(state.get(supply_key().as_bytes())?)
}

/// Creates `amount` uremes in `address`'s balance and raises the total
/// supply by the same amount. Fails with [`Error::AmountOverflow`] if
/// either would exceed u128 (nothing is written then).
pub fn mint(store: &mut impl Store, address: &Address, amount: u128) -> Result<()> {
    let supply = total_supply(store)?
        .checked_add(amount)
        .ok_or(Error::AmountOverflow)?;
    let mut acc = get_account(store, address)?;
    acc.balance = acc
        .balance
        .checked_add(amount)
        .ok_or(Error::AmountOverflow)?;
    set_account(store, address, &acc);
    store.put(supply_key().as_bytes(), &supply.to_be_bytes());
    Ok(())
}

/// Creates `amount` uremes as `address`'s stake (genesis bonding) and
/// raises the total supply by the same amount.
pub fn mint_stake(store: &mut impl Store, address: &Address, amount: u128) -> Result<()> {
    let supply = total_supply(store)?
        .checked_add(amount)
        .ok_or(Error::AmountOverflow)?;
    let mut acc = get_account(store, address)?;
    acc.stake = acc.stake.checked_add(amount).ok_or(Error::AmountOverflow)?;
    set_account(store, address, &acc);
    store.put(supply_key().as_bytes(), &supply.to_be_bytes());
    Ok(())
}

/// Destroys `amount` uremes of `address`'s balance and lowers the total
/// supply. Fails with [`Error::InsufficientFunds`] (nothing written) if the
/// balance is smaller.
pub fn burn(store: &mut impl Store, address: &Address, amount: u128) -> Result<()> {
    let mut acc = get_account(store, address)?;
    acc.balance = acc
        .balance
        .checked_sub(amount)
        .ok_or(Error::InsufficientFunds {
            balance: acc.balance,
            needed: amount,
        })?;
    let supply = total_supply(store)?
        .checked_sub(amount)
        .ok_or_else(|| Error::Store("total supply below a balance".into()))?;
    set_account(store, address, &acc);
    store.put(supply_key().as_bytes(), &supply.to_be_bytes());
    Ok(())
}

/// Moves `amount` from `from`'s balance to `to`'s; the supply is
/// unchanged. A transfer to oneself only checks the balance. Fails with
/// [`Error::InsufficientFunds`] or [`Error::AmountOverflow`], writing
/// nothing.
pub fn transfer(store: &mut impl Store, from: &Address, to: &Address, amount: u128) -> Result<()> {
    let mut src = get_account(store, from)?;
    let remaining = src
        .balance
        .checked_sub(amount)
        .ok_or(Error::InsufficientFunds {
            balance: src.balance,
            needed: amount,
        })?;
    if from == to {
        return Ok(());
    }
    let mut dst = get_account(store, to)?;
    dst.balance = dst
        .balance
        .checked_add(amount)
        .ok_or(Error::AmountOverflow)?;
    src.balance = remaining;
    set_account(store, from, &src);
    set_account(store, to, &dst);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_encoding_round_trips_big_endian() {
        let a = Account {
            balance: 1,
            stake: 2,
            sequence: 3,
        };
        let e = a.encode();
        assert_eq!(e[15], 1);
        assert_eq!(e[31], 2);
        assert_eq!(e[39], 3);
        assert_eq!(Account::decode(&e).unwrap(), a);
        assert!(Account::decode(&e[..39]).is_err());
    }
}
