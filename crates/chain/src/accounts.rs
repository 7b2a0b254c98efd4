//! Account records and supply accounting.
//!
//! Layout in `kv-0`:
//! - account: key `0x10 || address (20 bytes)`, value 64 bytes
//!   `be128(balance) || be128(stake) || be128(unbonding) ||
//!   be64(unbonding_release_height) || be64(sequence)`. An account that
//!   was never written reads as all zeros.
//! - total supply: key `0x11`, value `be128(total)`: the sum of every
//!   balance, stake and unbonding amount. Only [`mint`], [`mint_stake`] and
//!   [`burn`] (and slashing, which burns) change it; transfers and bonding
//!   move amounts within or between accounts and leave it unchanged.

use crate::crypto::Address;
use crate::state::{BlockWriter, Key, State, Tx};
use crate::{Error, Result};

/// Table prefix byte of account records.
pub const ACCOUNT_TABLE: u8 = 0x10;
/// Table prefix byte of the total-supply record.
pub const SUPPLY_TABLE: u8 = 0x11;
/// Encoded length of an [`Account`].
pub const ACCOUNT_LEN: usize = 64;

/// Read access to state: the committed [`State`] (queries), a
/// [`BlockWriter`] or a transaction [`Tx`] inside it (staged writes seen
/// first).
pub trait StoreRead {
    /// The value under `key`, as this view sees it.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// The first `limit` pairs under `prefix`, in key order.
    fn scan_prefix(&self, prefix: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;
    /// The key of the committed batch that held the record `id` at the last
    /// commit ([`crate::batches`]); the view's own writes may since have
    /// changed that batch, so read it through the view.
    fn committed_batch_of(&self, id: &[u8]) -> Result<Option<Vec<u8>>>;
    /// The height of the block this view writes, if it writes one (the
    /// batches it may have added are under that height).
    fn writing_height(&self) -> Option<u64>;
}

/// Read and write access to the staged state of a block.
pub trait Store: StoreRead {
    /// Stages `key = value`.
    fn put(&mut self, key: &[u8], value: &[u8]);
    /// Stages the removal of `key`.
    fn delete(&mut self, key: &[u8]);
}

impl StoreRead for State {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        State::get(self, key)
    }
    fn scan_prefix(&self, prefix: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        State::scan_prefix(self, prefix, limit)
    }
    fn committed_batch_of(&self, id: &[u8]) -> Result<Option<Vec<u8>>> {
        State::batch_of(self, id)
    }
    fn writing_height(&self) -> Option<u64> {
        None
    }
}

impl StoreRead for BlockWriter<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        BlockWriter::get(self, key)
    }
    fn scan_prefix(&self, prefix: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        BlockWriter::scan_prefix(self, prefix, limit)
    }
    fn committed_batch_of(&self, id: &[u8]) -> Result<Option<Vec<u8>>> {
        BlockWriter::batch_of(self, id)
    }
    fn writing_height(&self) -> Option<u64> {
        Some(BlockWriter::height(self))
    }
}

impl Store for BlockWriter<'_> {
    fn put(&mut self, key: &[u8], value: &[u8]) {
        BlockWriter::put(self, key, value);
    }
    fn delete(&mut self, key: &[u8]) {
        BlockWriter::delete(self, key);
    }
}

impl StoreRead for Tx<'_, '_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Tx::get(self, key)
    }
    fn scan_prefix(&self, prefix: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        Tx::scan_prefix(self, prefix, limit)
    }
    fn committed_batch_of(&self, id: &[u8]) -> Result<Option<Vec<u8>>> {
        Tx::batch_of(self, id)
    }
    fn writing_height(&self) -> Option<u64> {
        Some(Tx::height(self))
    }
}

impl Store for Tx<'_, '_> {
    fn put(&mut self, key: &[u8], value: &[u8]) {
        Tx::put(self, key, value);
    }
    fn delete(&mut self, key: &[u8]) {
        Tx::delete(self, key);
    }
}

/// One account: liquid balance, bonded stake, stake being unbonded (all in
/// `uremes`) and the sequence the next transaction must carry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Account {
    /// Spendable balance, uremes.
    pub balance: u128,
    /// Bonded stake, uremes.
    pub stake: u128,
    /// Stake leaving the bond: still slashable, returned to the balance at
    /// `unbonding_release_height`.
    pub unbonding: u128,
    /// Height from which `unbonding` may return to the balance.
    pub unbonding_release_height: u64,
    /// Number of transactions this account has executed.
    pub sequence: u64,
}

impl Account {
    /// Takes `amount` from the balance; fails with
    /// [`Error::InsufficientFunds`] (the account unchanged) if it is smaller.
    pub fn debit(&mut self, amount: u128) -> Result<()> {
        self.balance = self
            .balance
            .checked_sub(amount)
            .ok_or(Error::InsufficientFunds {
                balance: self.balance,
                needed: amount,
            })?;
        Ok(())
    }

    /// Adds `amount` to the balance; fails with [`Error::AmountOverflow`].
    pub fn credit(&mut self, amount: u128) -> Result<()> {
        self.balance = self
            .balance
            .checked_add(amount)
            .ok_or(Error::AmountOverflow)?;
        Ok(())
    }

    /// The fixed 40-byte big-endian encoding (see the module docs).
    pub fn encode(&self) -> [u8; ACCOUNT_LEN] {
        let mut out = [0u8; ACCOUNT_LEN];
        out[..16].copy_from_slice(&self.balance.to_be_bytes());
        out[16..32].copy_from_slice(&self.stake.to_be_bytes());
        out[32..48].copy_from_slice(&self.unbonding.to_be_bytes());
        out[48..56].copy_from_slice(&self.unbonding_release_height.to_be_bytes());
        out[56..].copy_from_slice(&self.sequence.to_be_bytes());
        out
    }

    /// Decodes [`encode`](Self::encode)'s output; other lengths are
    /// [`Error::Store`].
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let arr: &[u8; ACCOUNT_LEN] = bytes
            .try_into()
            .map_err(|_| Error::Store(format!("account record of {} bytes", bytes.len())))?;
        let u128_at = |at: usize| {
            let mut b = [0u8; 16];
            b.copy_from_slice(&arr[at..at + 16]);
            u128::from_be_bytes(b)
        };
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&arr[at..at + 8]);
            u64::from_be_bytes(b)
        };
        Ok(Account {
            balance: u128_at(0),
            stake: u128_at(16),
            unbonding: u128_at(32),
            unbonding_release_height: u64_at(48),
            sequence: u64_at(56),
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
pub fn get_account(store: &impl StoreRead, address: &Address) -> Result<Account> {
    match store.get(account_key(address).as_bytes())? {
        Some(bytes) => Account::decode(&bytes),
        None => Ok(Account::default()),
    }
}

/// Account as committed in `state` (all zeros if never written).
pub fn get_committed_account(state: &State, address: &Address) -> Result<Account> {
    get_account(state, address)
}

/// Stages `account` under `address`.
pub fn set_account(store: &mut impl Store, address: &Address, account: &Account) {
    store.put(account_key(address).as_bytes(), &account.encode());
}

/// The total supply as `store` sees it (0 if never written).
pub fn total_supply(store: &impl StoreRead) -> Result<u128> {
    match store.get(supply_key().as_bytes())? {
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

/// The committed total supply of `state`.
pub fn committed_total_supply(state: &State) -> Result<u128> {
    total_supply(state)
}

/// Creates `amount` uremes in `address`'s balance and raises the total
/// supply by the same amount. Fails with [`Error::AmountOverflow`] if
/// either would exceed u128 (nothing is written then).
pub fn mint(store: &mut impl Store, address: &Address, amount: u128) -> Result<()> {
    let supply = total_supply(store)?
        .checked_add(amount)
        .ok_or(Error::AmountOverflow)?;
    let mut acc = get_account(store, address)?;
    acc.credit(amount)?;
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
    acc.debit(amount)?;
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
    src.debit(amount)?;
    if from == to {
        return Ok(());
    }
    let mut dst = get_account(store, to)?;
    dst.credit(amount)?;
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
            unbonding: 4,
            unbonding_release_height: 5,
            sequence: 3,
        };
        let e = a.encode();
        assert_eq!(e[15], 1);
        assert_eq!(e[31], 2);
        assert_eq!(e[47], 4);
        assert_eq!(e[55], 5);
        assert_eq!(e[63], 3);
        assert_eq!(Account::decode(&e).unwrap(), a);
        assert!(Account::decode(&e[..63]).is_err());
    }
}
