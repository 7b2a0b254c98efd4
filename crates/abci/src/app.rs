//! The ABCI application: each CometBFT request mapped onto the keeper.
//!
//! Heights: the keeper applies the genesis as its block 1, so CometBFT's
//! block `h` (the chain starts at `initial_height` 1) is the keeper's block
//! `h + 1`, and `Info` reports the keeper's height minus one. The block
//! hash CometBFT sends is the keeper's seed for sampling and shard
//! assignment; CometBFT's block time is not used (the keeper's time is
//! `genesis_time_ms + height * block_time_ms`, the same on every node).
//!
//! `FinalizeBlock` runs the block and commits it to the store (the app hash
//! it must return is the committed one); `Commit` only records that
//! CometBFT has taken the block. `Info` reports the last block whose
//! `Commit` completed, and a `FinalizeBlock` repeated for the block already
//! run (CometBFT's replay after a crash before `Commit`) gets the same
//! response again, from the record of the last block ([`crate::journal`],
//! durable when the application is opened with
//! [`App::with_journal`]). `CheckTx` keeps the next
//! expected sequence per signer over the committed state, so several
//! transactions of one account can wait in the mempool; it starts afresh
//! after every block, when CometBFT rechecks its mempool.
//!
//! A hook set with [`App::set_commit_hook`] sees every block once its
//! `Commit` is recorded ([`CommittedBlock`]: height, transaction counts,
//! the keeper's events): what the node does after a block (unpinning the
//! content retention released, metrics) happens only for blocks that are
//! durably committed, and for a block replayed after a crash too.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use prost::Message;
use r3mes_chain::apply::TxResponse;
use r3mes_chain::exec::{Events, event_parts};
use r3mes_chain::genesis::Genesis;
use r3mes_chain::proto::Event;
use r3mes_chain::state::State;
use r3mes_chain::tables::hex_lower;
use r3mes_chain::{Address, Keeper, queries};
use tendermint_proto::v0_38::abci::{
    self as abci, ExecTxResult, Request, RequestCheckTx, RequestFinalizeBlock, RequestInitChain,
    RequestPrepareProposal, RequestProcessProposal, RequestQuery, Response, ResponseCheckTx,
    ResponseCommit, ResponseEcho, ResponseException, ResponseFinalizeBlock, ResponseFlush,
    ResponseInfo, ResponseInitChain, ResponsePrepareProposal, ResponseProcessProposal,
    ResponseQuery, request, response,
};

use crate::journal::{Journal, LastBlock};

/// `codespace` of every error the keeper returns.
pub const CODESPACE: &str = "r3mes";

/// Query answer codes besides the keeper's error codes.
pub mod query_code {
    /// The record does not exist.
    pub const NOT_FOUND: u32 = 1;
    /// The path or its argument is malformed.
    pub const BAD_REQUEST: u32 = 2;
}

/// A block CometBFT has committed, as the commit hook sees it.
#[derive(Debug)]
pub struct CommittedBlock<'a> {
    /// The keeper's height of the block (CometBFT's plus one).
    pub height: u64,
    /// Transactions the keeper applied.
    pub txs_applied: u64,
    /// Transactions the keeper refused inside the block.
    pub txs_failed: u64,
    /// The keeper's events: each applied transaction's in block order,
    /// then the end-of-block events.
    pub events: &'a [Event],
    /// How long `FinalizeBlock` took to run and commit the block (zero for
    /// a block answered from the record after a restart).
    pub took: Duration,
}

/// Called with each block once its `Commit` is recorded, on the thread of
/// CometBFT's consensus connection while the application is locked: it
/// must return quickly (hand slow work to another thread or runtime).
pub type CommitHook = Box<dyn FnMut(&CommittedBlock<'_>) + Send>;

enum Phase {
    /// No genesis yet: waiting for `InitChain`.
    Fresh(State),
    Running(Box<Keeper>),
    /// Genesis failed half way; every request gets this error.
    Failed(String),
}

/// The application CometBFT drives (see the module docs).
pub struct App {
    phase: Phase,
    /// CheckTx: next expected sequence per signer, over the committed state.
    check: HashMap<Address, u64>,
    /// Where the last `FinalizeBlock` is recorded.
    journal: Journal,
    /// The last `FinalizeBlock` (its response with the app hash), for
    /// replays and `Info`; `None` when the keeper's last block is committed
    /// and its response is unknown (a state written without a record).
    last: Option<LastBlock>,
    /// How long the last `FinalizeBlock` of this process took.
    last_took: Duration,
    /// Sees each committed block.
    on_commit: Option<CommitHook>,
}

type Handled<T> = Result<T, String>;

impl App {
    /// An application over `state`: opened as is if a genesis was applied,
    /// otherwise waiting for `InitChain`. The last `FinalizeBlock` is kept
    /// in memory only: after a restart every block the keeper holds counts
    /// as committed. A node under CometBFT uses [`App::with_journal`].
    pub fn new(state: State) -> Result<Self, r3mes_chain::Error> {
        Ok(App {
            phase: open_phase(state)?,
            check: HashMap::new(),
            journal: Journal::in_memory(),
            last: None,
            last_took: Duration::ZERO,
            on_commit: None,
        })
    }

    /// An application over `state` whose last `FinalizeBlock` is recorded
    /// in the file `journal` (see [`crate::journal`]): after a crash between
    /// `FinalizeBlock` and `Commit`, `Info` reports the block before and
    /// the replayed `FinalizeBlock` gets the response it had.
    pub fn with_journal(state: State, journal: &Path) -> Result<Self, crate::Error> {
        let phase = open_phase(state)?;
        let journal = Journal::at(journal);
        let record = journal
            .load()
            .map_err(|e| crate::Error::Journal(e.to_string()))?;
        let comet_height = match &phase {
            Phase::Running(k) => i64::try_from(k.height()?.saturating_sub(1))
                .map_err(|e| crate::Error::Journal(e.to_string()))?,
            _ => 0,
        };
        let last = match record {
            None => None,
            // Written ahead of a keeper commit that never happened: the
            // block runs again when CometBFT sends it.
            Some(r) if r.height == comet_height + 1 => None,
            Some(mut r) if r.height == comet_height && comet_height > 0 => {
                if let (Phase::Running(k), Some(resp)) = (&phase, r.response.as_mut()) {
                    resp.app_hash = k.app_hash()?.to_vec().into();
                }
                Some(r)
            }
            Some(r) if r.height > 0 && r.height < comet_height => {
                tracing::warn!(
                    record = r.height,
                    keeper = comet_height,
                    "the FinalizeBlock record is older than the keeper's last block: ignored"
                );
                None
            }
            Some(r) => {
                return Err(crate::Error::Journal(format!(
                    "the record is of block {} but the keeper's last block is {comet_height}",
                    r.height
                )));
            }
        };
        Ok(App {
            phase,
            check: HashMap::new(),
            journal,
            last,
            last_took: Duration::ZERO,
            on_commit: None,
        })
    }

    /// Calls `hook` with every block whose `Commit` is recorded from now
    /// on (replacing an earlier hook).
    pub fn set_commit_hook(&mut self, hook: CommitHook) {
        self.on_commit = Some(hook);
    }

    /// The keeper, once the chain is initialised.
    pub fn keeper(&self) -> Option<&Keeper> {
        match &self.phase {
            Phase::Running(k) => Some(k),
            _ => None,
        }
    }

    /// Answers one request. Failures that CometBFT must not ignore come
    /// back as `Exception`.
    pub fn handle(&mut self, req: Request) -> Response {
        let value = match req.value {
            None => Err("empty ABCI request".to_owned()),
            Some(value) => self.dispatch(value),
        };
        Response {
            value: Some(value.unwrap_or_else(|error| {
                tracing::warn!(%error, "ABCI exception");
                response::Value::Exception(ResponseException { error })
            })),
        }
    }

    fn dispatch(&mut self, value: request::Value) -> Handled<response::Value> {
        use request::Value as Q;
        use response::Value as A;
        Ok(match value {
            Q::Echo(r) => A::Echo(ResponseEcho { message: r.message }),
            Q::Flush(_) => A::Flush(ResponseFlush {}),
            Q::Info(_) => A::Info(self.info()?),
            Q::InitChain(r) => A::InitChain(self.init_chain(r)?),
            Q::Query(r) => A::Query(self.query(&r)),
            Q::CheckTx(r) => A::CheckTx(self.check_tx(&r)?),
            Q::Commit(_) => A::Commit(self.commit()?),
            Q::PrepareProposal(r) => A::PrepareProposal(self.prepare(r)?),
            Q::ProcessProposal(r) => A::ProcessProposal(self.process(&r)),
            Q::FinalizeBlock(r) => A::FinalizeBlock(self.finalize(r)?),
            Q::ExtendVote(_) => A::ExtendVote(abci::ResponseExtendVote::default()),
            Q::VerifyVoteExtension(r) => {
                let status = if r.vote_extension.is_empty() {
                    abci::response_verify_vote_extension::VerifyStatus::Accept
                } else {
                    abci::response_verify_vote_extension::VerifyStatus::Reject
                };
                A::VerifyVoteExtension(abci::ResponseVerifyVoteExtension {
                    status: status as i32,
                })
            }
            // State sync is not offered: no snapshots, none accepted.
            Q::ListSnapshots(_) => A::ListSnapshots(abci::ResponseListSnapshots::default()),
            Q::OfferSnapshot(_) => A::OfferSnapshot(abci::ResponseOfferSnapshot {
                result: abci::response_offer_snapshot::Result::Reject as i32,
            }),
            Q::LoadSnapshotChunk(_) => {
                A::LoadSnapshotChunk(abci::ResponseLoadSnapshotChunk::default())
            }
            Q::ApplySnapshotChunk(_) => A::ApplySnapshotChunk(abci::ResponseApplySnapshotChunk {
                result: abci::response_apply_snapshot_chunk::Result::Abort as i32,
                ..Default::default()
            }),
        })
    }

    fn running(&self) -> Handled<&Keeper> {
        match &self.phase {
            Phase::Running(k) => Ok(k),
            Phase::Fresh(_) => Err("the chain has no genesis yet: InitChain first".into()),
            Phase::Failed(e) => Err(format!("genesis failed: {e}")),
        }
    }

    fn info(&self) -> Handled<ResponseInfo> {
        let (height, app_hash) = match &self.phase {
            Phase::Running(k) => {
                let height = k.height().map_err(|e| e.to_string())?;
                (height, k.app_hash().map_err(|e| e.to_string())?)
            }
            _ => (0, [0; 32]),
        };
        // The keeper's block 1 is the genesis, CometBFT's height 0.
        let mut comet_height = height.saturating_sub(1);
        let mut app_hash = app_hash.to_vec();
        // A block run but not yet taken by `Commit` is not reported.
        if let Some(last) = self.uncommitted() {
            comet_height = u64::try_from(last.height.saturating_sub(1)).unwrap_or(0);
            app_hash.clone_from(&last.previous_app_hash);
        }
        Ok(ResponseInfo {
            data: "r3mes".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            app_version: 1,
            last_block_height: i64::try_from(comet_height).map_err(|e| e.to_string())?,
            last_block_app_hash: if comet_height == 0 {
                Default::default()
            } else {
                app_hash.into()
            },
        })
    }

    /// The last `FinalizeBlock` if `Commit` has not followed it.
    fn uncommitted(&self) -> Option<&LastBlock> {
        self.last.as_ref().filter(|l| !l.committed)
    }

    /// Records that CometBFT took the last block (durably, before the
    /// answer: once `Commit` returned, `Info` must report that block), then
    /// hands it to the commit hook.
    fn commit(&mut self) -> Handled<ResponseCommit> {
        if let Some(last) = self.last.as_mut()
            && !last.committed
        {
            let mut record = last.clone();
            record.committed = true;
            if let Some(resp) = record.response.as_mut() {
                resp.app_hash = Default::default();
            }
            self.journal
                .store(&record)
                .map_err(|e| format!("recording the commit of block {}: {e}", record.height))?;
            last.committed = true;
            if let Some(hook) = self.on_commit.as_mut() {
                let results = last
                    .response
                    .as_ref()
                    .map_or(&[][..], |r| r.tx_results.as_slice());
                let applied = results.iter().filter(|r| r.code == 0).count();
                let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
                hook(&CommittedBlock {
                    height: u64::try_from(last.height).unwrap_or(0).saturating_add(1),
                    txs_applied: count(applied),
                    txs_failed: count(results.len() - applied),
                    events: &last.keeper_events,
                    took: std::mem::take(&mut self.last_took),
                });
            }
        }
        Ok(ResponseCommit { retain_height: 0 })
    }

    fn init_chain(&mut self, req: RequestInitChain) -> Handled<ResponseInitChain> {
        let json = std::str::from_utf8(&req.app_state_bytes)
            .map_err(|_| "app_state_bytes is not UTF-8 JSON".to_owned())?;
        let genesis = Genesis::from_json(json).map_err(|e| e.to_string())?;
        if genesis.chain_id != req.chain_id {
            return Err(format!(
                "CometBFT chain id {:?} differs from the genesis chain id {:?}",
                req.chain_id, genesis.chain_id
            ));
        }
        if req.initial_height > 1 {
            return Err(format!(
                "initial_height {} is not supported (the keeper starts at 1)",
                req.initial_height
            ));
        }
        let phase = std::mem::replace(&mut self.phase, Phase::Failed("genesis in progress".into()));
        let keeper = match phase {
            Phase::Fresh(state) => match Keeper::init(state, &genesis) {
                Ok(k) => k,
                Err(e) => {
                    self.phase = Phase::Failed(e.to_string());
                    return Err(e.to_string());
                }
            },
            // InitChain again before any committed block (a restart): same
            // genesis. CometBFT calls it when `Info` reports height 0, also
            // when block 1 was run but not committed; the answer is then the
            // genesis app hash recorded with block 1.
            Phase::Running(k) => {
                let height = k.height().map_err(|e| e.to_string())?;
                let same = k.chain_id() == genesis.chain_id;
                self.phase = Phase::Running(k);
                let before_block_1 = self
                    .uncommitted()
                    .filter(|l| l.height == 1 && height == 2)
                    .map(|l| l.previous_app_hash.clone());
                if !same || (height != 1 && before_block_1.is_none()) {
                    return Err("InitChain on a chain that already has blocks".into());
                }
                if let Some(app_hash) = before_block_1 {
                    return Ok(ResponseInitChain {
                        app_hash: app_hash.into(),
                        ..Default::default()
                    });
                }
                let k = self.running()?;
                return init_response(k);
            }
            Phase::Failed(e) => {
                self.phase = Phase::Failed(e.clone());
                return Err(e);
            }
        };
        let out = init_response(&keeper)?;
        self.phase = Phase::Running(Box::new(keeper));
        Ok(out)
    }

    fn check_tx(&mut self, req: &RequestCheckTx) -> Handled<ResponseCheckTx> {
        let keeper = self.running()?;
        let checked = (|| -> r3mes_chain::Result<(Address, u64)> {
            let tx = keeper.decode_tx(&req.tx)?;
            let signer = Address::of_key_bytes(&tx.as_proto().signer_pubkey)?;
            let expected = match self.check.get(&signer) {
                Some(seq) => *seq,
                None => keeper.account(&signer)?.sequence,
            };
            let time = keeper.block_time_ms(keeper.height()?.saturating_add(1))?;
            tx.verify(
                keeper.chain_id(),
                expected,
                time,
                keeper.params().max_clock_skew_ms,
            )?;
            Ok((signer, expected.saturating_add(1)))
        })();
        Ok(match checked {
            Ok((signer, next)) => {
                self.check.insert(signer, next);
                ResponseCheckTx::default()
            }
            Err(e) => ResponseCheckTx {
                code: e.code(),
                log: e.to_string(),
                codespace: CODESPACE.into(),
                ..Default::default()
            },
        })
    }

    /// Keeps the proposed transactions that decode, in order, within
    /// `max_tx_bytes`.
    fn prepare(&self, req: RequestPrepareProposal) -> Handled<ResponsePrepareProposal> {
        let keeper = self.running()?;
        let mut room = req.max_tx_bytes;
        let mut txs = Vec::with_capacity(req.txs.len());
        for tx in req.txs {
            let len = i64::try_from(tx.len()).unwrap_or(i64::MAX);
            if len > room {
                break;
            }
            if keeper.decode_tx(&tx).is_ok() {
                room -= len;
                txs.push(tx);
            }
        }
        Ok(ResponsePrepareProposal { txs })
    }

    /// Accepts a proposal whose transactions all decode.
    fn process(&self, req: &RequestProcessProposal) -> ResponseProcessProposal {
        use abci::response_process_proposal::ProposalStatus;
        let ok = self
            .running()
            .is_ok_and(|k| req.txs.iter().all(|tx| k.decode_tx(tx).is_ok()));
        let status = if ok {
            ProposalStatus::Accept
        } else {
            ProposalStatus::Reject
        };
        ResponseProcessProposal {
            status: status as i32,
        }
    }

    fn finalize(&mut self, req: RequestFinalizeBlock) -> Handled<ResponseFinalizeBlock> {
        if let Some(last) = &self.last
            && last.height == req.height
        {
            if last.hash != req.hash.as_ref() {
                return Err(format!(
                    "FinalizeBlock replayed for block {} with another block hash",
                    req.height
                ));
            }
            return last
                .response
                .clone()
                .ok_or_else(|| format!("no response recorded for block {}", req.height));
        }
        let keeper = self.running()?;
        let previous_app_hash = keeper.app_hash().map_err(|e| e.to_string())?;
        let next = keeper.height().map_err(|e| e.to_string())?;
        if u64::try_from(req.height).ok() != Some(next) {
            return Err(format!(
                "FinalizeBlock for height {} but the next block is {next}",
                req.height
            ));
        }
        let hash: [u8; 32] = req.hash.as_ref().try_into().map_err(|_| {
            format!(
                "block hash of {} bytes, expected 32",
                req.hash.as_ref().len()
            )
        })?;
        let started = Instant::now();
        let err = |e: r3mes_chain::Error| e.to_string();
        let mut block = keeper.begin_block(next + 1, hash).map_err(err)?;
        let mut keeper_events = Vec::new();
        let tx_results = req
            .txs
            .iter()
            .map(|tx| match block.deliver_bytes(tx) {
                Ok(outcome) => {
                    let result = ExecTxResult {
                        data: response_data(&outcome.response).into(),
                        events: abci_events(&outcome.events),
                        ..Default::default()
                    };
                    keeper_events.extend(outcome.events);
                    result
                }
                Err(e) => ExecTxResult {
                    code: e.code(),
                    log: e.to_string(),
                    codespace: CODESPACE.into(),
                    ..Default::default()
                },
            })
            .collect();
        let end_events = block.end_block().map_err(err)?;
        let events = abci_events(&end_events);
        keeper_events.extend(end_events);
        // Recorded before the keeper commits: if the commit happens, the
        // record is there to answer a replay.
        let mut record = LastBlock {
            height: req.height,
            hash: hash.to_vec(),
            previous_app_hash: previous_app_hash.to_vec(),
            response: Some(ResponseFinalizeBlock {
                events,
                tx_results,
                ..Default::default()
            }),
            committed: false,
            keeper_events,
        };
        self.journal
            .store(&record)
            .map_err(|e| format!("recording block {}: {e}", req.height))?;
        let app_hash = block.commit().map_err(err)?;
        let mut resp = record.response.take().unwrap_or_default();
        resp.app_hash = app_hash.to_vec().into();
        record.response = Some(resp.clone());
        self.check.clear();
        self.last = Some(record);
        self.last_took = started.elapsed();
        Ok(resp)
    }

    /// Read-only queries over the committed state:
    /// - `/status`: JSON `{chain_id, height, app_hash}` (CometBFT height);
    /// - `/account/{address}`: JSON balance, stake, unbonding, sequence;
    /// - `/gradient/{cid}`: the `StoredGradient`, protobuf;
    /// - `/store` with `data` = a state key: the raw value.
    fn query(&self, req: &RequestQuery) -> ResponseQuery {
        let keeper = match self.running() {
            Ok(k) => k,
            Err(e) => return query_error(query_code::NOT_FOUND, e),
        };
        let height = keeper.height().unwrap_or(0).saturating_sub(1);
        let answer = (|| -> Result<Vec<u8>, (u32, String)> {
            let path = req.path.trim_end_matches('/');
            let bad = |e: r3mes_chain::Error| (query_code::BAD_REQUEST, e.to_string());
            if path == "/status" {
                let hash = keeper.app_hash().map_err(bad)?;
                let json = serde_json::json!({
                    "chain_id": keeper.chain_id(),
                    "height": height,
                    "app_hash": hex_lower(&hash),
                });
                return Ok(json.to_string().into_bytes());
            }
            if let Some(addr) = path.strip_prefix("/account/") {
                let addr = Address::parse(addr).map_err(bad)?;
                let a = keeper.account(&addr).map_err(bad)?;
                let json = serde_json::json!({
                    "address": addr.to_string(),
                    "balance": a.balance.to_string(),
                    "stake": a.stake.to_string(),
                    "unbonding": a.unbonding.to_string(),
                    "unbonding_release_height": a.unbonding_release_height,
                    "sequence": a.sequence,
                });
                return Ok(json.to_string().into_bytes());
            }
            if let Some(cid) = path.strip_prefix("/gradient/") {
                return match queries::gradient(keeper.state(), cid).map_err(bad)? {
                    Some(g) => Ok(g.encode_to_vec()),
                    None => Err((query_code::NOT_FOUND, format!("no gradient {cid}"))),
                };
            }
            if path == "/store" {
                return keeper
                    .state()
                    .get(&req.data)
                    .map_err(bad)?
                    .ok_or_else(|| (query_code::NOT_FOUND, "no such key".into()));
            }
            Err((
                query_code::BAD_REQUEST,
                format!("unknown query path {:?}", req.path),
            ))
        })();
        match answer {
            Ok(value) => ResponseQuery {
                value: value.into(),
                key: req.data.clone(),
                height: i64::try_from(height).unwrap_or(i64::MAX),
                ..Default::default()
            },
            Err((code, log)) => query_error(code, log),
        }
    }
}

fn open_phase(state: State) -> Result<Phase, r3mes_chain::Error> {
    Ok(if state.height()? > 0 {
        Phase::Running(Box::new(Keeper::open(state)?))
    } else {
        Phase::Fresh(state)
    })
}

fn init_response(keeper: &Keeper) -> Handled<ResponseInitChain> {
    Ok(ResponseInitChain {
        app_hash: keeper
            .app_hash()
            .map_err(|e| e.to_string())?
            .to_vec()
            .into(),
        ..Default::default()
    })
}

fn query_error(code: u32, log: String) -> ResponseQuery {
    ResponseQuery {
        code,
        log,
        codespace: CODESPACE.into(),
        ..Default::default()
    }
}

/// A message's response as `ExecTxResult.data`: the protobuf
/// `MsgSubmitGradientResponse`, an id or amount as text, or nothing.
fn response_data(response: &TxResponse) -> Vec<u8> {
    match response {
        TxResponse::None => Vec::new(),
        TxResponse::SubmitGradient(r) => r.encode_to_vec(),
        TxResponse::ChallengeId(id) | TxResponse::TraceId(id) => id.clone().into_bytes(),
        TxResponse::Rewards(amount) => amount.to_string().into_bytes(),
    }
}

/// Keeper events as ABCI events: the kind's name as type, each field an
/// indexed attribute.
pub fn abci_events(events: &Events) -> Vec<abci::Event> {
    events
        .iter()
        .filter_map(|e: &Event| {
            let (name, fields) = event_parts(e)?;
            Some(abci::Event {
                r#type: name,
                attributes: fields
                    .into_iter()
                    .map(|(key, value)| abci::EventAttribute {
                        key,
                        value,
                        index: true,
                    })
                    .collect(),
            })
        })
        .collect()
}
