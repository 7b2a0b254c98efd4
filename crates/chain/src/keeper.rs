//! The keeper: the chain state machine a node drives block by block.
//!
//! ```text
//! Keeper::init(state, genesis)          genesis as block 1
//! let mut b = keeper.begin_block(h, block_hash)?;
//! b.deliver(&tx)?  (each transaction: atomic, typed error or events)
//! b.end_block()?   (deadlines, sampling, rounds, GC)
//! b.commit()?      (one durable write: state, height, app hash, header)
//! keeper.header(h)? (block hash, app hash before and after, tx count)
//! ```
//!
//! The block hash is the caller's (the node's block producer, or CometBFT
//! through the ABCI adapter); the keeper uses it as the seed of sampling and
//! challenge draws and as a round's shard-assignment seed. Block time is
//! `genesis_time_ms + height * block_time_ms`. End-of-block order: fail
//! overdue challenges, sample the previous block's gradients, start a round
//! if due, collect expired records.

use crate::accounts::{self, StoreRead};
use crate::apphash::Hash;
use crate::apply::{TxOutcome, apply_tx, size_limit};
use crate::exec::{Ctx, Events};
use crate::genesis::{ChainInfo, Genesis, apply_genesis, block_time_at};
use crate::params::Params;
use crate::proto::Round;
use crate::state::{BlockWriter, Header, State};
use crate::tables::{CHAIN_INFO, PARAMS, singleton};
use crate::tx::SignedTx;
use crate::{Error, Result, challenges, gc, rounds};

/// The keeper over its state store.
#[derive(Debug)]
pub struct Keeper {
    state: State,
    info: ChainInfo,
    params: Params,
}

impl Keeper {
    /// Applies `genesis` to an empty state (height 0) as block 1.
    pub fn init(state: State, genesis: &Genesis) -> Result<Self> {
        if state.height()? != 0 {
            return Err(Error::InvalidGenesis(format!(
                "state is already at height {}",
                state.height()?
            )));
        }
        apply_genesis(&state, genesis)?;
        Self::open(state)
    }

    /// Opens a keeper whose genesis was applied; reads the chain info and
    /// parameters from the committed state.
    pub fn open(state: State) -> Result<Self> {
        let read = |table: u8, what: &str| -> Result<Vec<u8>> {
            state.get(singleton(table).as_bytes())?.ok_or_else(|| {
                Error::Store(format!("state has no {what}: genesis was not applied"))
            })
        };
        let info: ChainInfo = serde_json::from_slice(&read(CHAIN_INFO, "chain info")?)
            .map_err(|e| Error::Store(format!("chain info: {e}")))?;
        let params: Params = serde_json::from_slice(&read(PARAMS, "params")?)
            .map_err(|e| Error::Store(format!("params: {e}")))?;
        Ok(Keeper {
            state,
            info,
            params,
        })
    }

    /// The state store (committed reads for queries).
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The chain id.
    pub fn chain_id(&self) -> &str {
        &self.info.chain_id
    }

    /// The last committed height.
    pub fn height(&self) -> Result<u64> {
        self.state.height()
    }

    /// The app hash after the last committed block.
    pub fn app_hash(&self) -> Result<Hash> {
        self.state.app_hash()
    }

    /// The last committed height and its app hash, read together.
    pub fn tip(&self) -> Result<(u64, Hash)> {
        self.state.tip()
    }

    /// The header of committed block `height` (see
    /// [`State::header`]): its hash, the app hash before and after it and
    /// its transaction count. `None` for heights not committed (or
    /// committed before the store kept headers).
    pub fn header(&self, height: u64) -> Result<Option<Header>> {
        self.state.header(height)
    }

    /// Block time of `height`, ms.
    pub fn block_time_ms(&self, height: u64) -> Result<i64> {
        block_time_at(self.info.genesis_time_ms, self.params.block_time_ms, height)
            .ok_or_else(|| Error::Store(format!("block time of height {height} overflows")))
    }

    /// The largest encoded transaction of any kind.
    pub fn max_tx_bytes_any(&self) -> usize {
        usize::try_from(self.params.max_response_bytes.max(self.params.max_tx_bytes))
            .unwrap_or(usize::MAX)
    }

    /// Decodes transaction bytes with the keeper's size limits.
    pub fn decode_tx(&self, bytes: &[u8]) -> Result<SignedTx> {
        let tx = SignedTx::decode(bytes, self.max_tx_bytes_any())?;
        let max = size_limit(&tx, &self.params);
        if bytes.len() > max {
            return Err(Error::TxTooLarge {
                len: bytes.len(),
                max,
            });
        }
        Ok(tx)
    }

    /// Starts block `height` (the committed height plus one) with hash
    /// `block_hash`.
    pub fn begin_block(&self, height: u64, block_hash: [u8; 32]) -> Result<Block<'_>> {
        let writer = self.state.begin_block(height)?;
        let time_ms = self.block_time_ms(height)?;
        let open_round = rounds::open_round(&writer, height)?;
        Ok(Block {
            keeper: self,
            writer,
            time_ms,
            block_hash,
            open_round,
            ended: false,
            tx_count: 0,
        })
    }

    /// A committed account.
    pub fn account(&self, address: &crate::Address) -> Result<accounts::Account> {
        accounts::get_committed_account(&self.state, address)
    }
}

/// One block being executed (dropping it without commit changes nothing).
#[derive(Debug)]
pub struct Block<'k> {
    keeper: &'k Keeper,
    writer: BlockWriter<'k>,
    time_ms: i64,
    block_hash: [u8; 32],
    open_round: Option<Round>,
    ended: bool,
    /// Transactions delivered so far, applied or failed (the header's
    /// count).
    tx_count: u64,
}

impl<'k> Block<'k> {
    /// The writer and the context rules run in.
    fn parts(&mut self) -> (&mut BlockWriter<'k>, Ctx<'_>) {
        let keeper = self.keeper;
        let ctx = Ctx {
            params: &keeper.params,
            chain_id: &keeper.info.chain_id,
            height: self.writer.height(),
            time_ms: self.time_ms,
            block_hash: self.block_hash,
            open_round: self.open_round.as_ref(),
        };
        (&mut self.writer, ctx)
    }

    /// The block's height.
    pub fn height(&self) -> u64 {
        self.writer.height()
    }

    /// The block's time, ms.
    pub fn time_ms(&self) -> i64 {
        self.time_ms
    }

    /// Applies one transaction; on error nothing changed.
    pub fn deliver(&mut self, tx: &SignedTx) -> Result<TxOutcome> {
        if self.ended {
            return Err(Error::Store("transaction delivered after end_block".into()));
        }
        self.tx_count = self.tx_count.saturating_add(1);
        let (writer, ctx) = self.parts();
        apply_tx(writer, tx, &ctx)
    }

    /// Decodes and applies transaction bytes.
    pub fn deliver_bytes(&mut self, bytes: &[u8]) -> Result<TxOutcome> {
        let tx = match self.keeper.decode_tx(bytes) {
            Ok(tx) => tx,
            Err(e) => {
                // Undecodable, yet part of the block.
                if !self.ended {
                    self.tx_count = self.tx_count.saturating_add(1);
                }
                return Err(e);
            }
        };
        self.deliver(&tx)
    }

    /// Runs the end-of-block work once and returns its events.
    pub fn end_block(&mut self) -> Result<Events> {
        if self.ended {
            return Ok(Events::new());
        }
        let mut events = Events::new();
        let (writer, ctx) = self.parts();
        writer.transaction(|t| {
            challenges::end_block(t, &ctx, &mut events)?;
            rounds::end_block(t, &ctx, &mut events)?;
            gc::end_block(t, &ctx, &mut events)?;
            Ok(())
        })?;
        self.ended = true;
        Ok(events)
    }

    /// Read access to the block's state as it stands.
    pub fn store(&self) -> &impl StoreRead {
        &self.writer
    }

    /// Runs the end-of-block work if not yet run, then commits (state,
    /// height, app hash and the block's header: its hash and transaction
    /// count); returns the app hash.
    pub fn commit(mut self) -> Result<Hash> {
        self.end_block()?;
        self.writer.set_block(self.block_hash, self.tx_count);
        self.writer.commit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn genesis() -> Genesis {
        Genesis {
            chain_id: "r3mes-header-test".into(),
            genesis_time_ms: 0,
            params: Params::default(),
            accounts: Vec::new(),
            total_supply: 0,
            validators: Vec::new(),
        }
    }

    #[test]
    fn committed_blocks_keep_their_hash_tx_count_and_app_hash_chain() {
        let keeper = Keeper::init(State::in_memory().unwrap(), &genesis()).unwrap();
        let genesis_header = keeper.header(1).unwrap().unwrap();
        assert_eq!(genesis_header.app_hash, keeper.app_hash().unwrap());
        let mut b = keeper.begin_block(2, [9; 32]).unwrap();
        // Undecodable bytes fail, yet count as delivered in the block.
        assert!(b.deliver_bytes(b"not a transaction").is_err());
        let app_hash = b.commit().unwrap();
        let h = keeper.header(2).unwrap().unwrap();
        assert_eq!(h.height, 2);
        assert_eq!(h.block_hash, [9; 32]);
        assert_eq!(h.tx_count, 1);
        assert_eq!(h.previous_app_hash, genesis_header.app_hash);
        assert_eq!(h.app_hash, app_hash);
        // A block dropped without commit leaves no header.
        drop(keeper.begin_block(3, [3; 32]).unwrap());
        assert_eq!(keeper.header(3).unwrap(), None);
    }
}
