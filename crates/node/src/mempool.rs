//! The mempool: admitted transactions waiting for a block, in arrival
//! order, which is also each account's sequence order (admission accepts
//! only an account's next sequence, so an account's transactions form a
//! contiguous run in the queue). Bounded; a transaction already waiting or
//! in the block being made is refused as a duplicate.
//!
//! An account's expected sequence is its committed sequence, or one past
//! its last waiting transaction. Entries stay counted until the producer
//! [`settle`](Mempool::settle)s them after their block is committed, so the
//! expected sequence never goes back to a stale committed value while a
//! block is being made. When a transaction fails in its block, the
//! account's later waiting transactions cannot succeed (their sequences
//! now have a gap) and are handed back to be refused.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};

use r3mes_chain::apply::TxOutcome;
use r3mes_chain::{Address, SignedTx};
use tokio::sync::oneshot;
use tonic::Status;

/// What the submitter of a transaction is told once its block is
/// committed (or why it never will be).
pub type Reply = Result<Committed, Status>;

/// A transaction's fate in a committed block.
#[derive(Debug)]
pub struct Committed {
    /// The block's height.
    pub height: u64,
    /// sha256 of the transaction bytes.
    pub hash: [u8; 32],
    /// Applied (with events) or refused by the keeper (nothing changed).
    pub outcome: Result<TxOutcome, r3mes_chain::Error>,
}

/// One admitted transaction.
#[derive(Debug)]
pub struct Pending {
    /// The transaction.
    pub tx: SignedTx,
    /// sha256 of its bytes.
    pub hash: [u8; 32],
    /// Its verified signer.
    pub signer: Address,
    /// Its sequence.
    pub sequence: u64,
    /// Where its result goes.
    pub reply: oneshot::Sender<Reply>,
}

/// How admission may proceed for a transaction that passed [`Mempool::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// The account has nothing waiting: the transaction runs directly on
    /// the committed state, so it can be tried there first.
    OnCommitted,
    /// It follows the account's waiting transactions.
    AfterPending,
}

#[derive(Debug)]
struct Slot {
    /// The sequence the account's next transaction must carry.
    next: u64,
    /// Its transactions waiting or in the block being made.
    count: usize,
}

#[derive(Debug, Default)]
struct Inner {
    queue: VecDeque<Pending>,
    slots: HashMap<Address, Slot>,
    hashes: HashSet<[u8; 32]>,
    /// Set by [`Mempool::drain`]: nothing is admitted any more.
    closed: bool,
}

/// The mempool (see the module docs).
#[derive(Debug)]
pub struct Mempool {
    inner: Mutex<Inner>,
    capacity: usize,
}

impl Mempool {
    /// An empty mempool holding at most `capacity` waiting transactions.
    pub fn new(capacity: usize) -> Self {
        Mempool {
            inner: Mutex::new(Inner::default()),
            capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (every
        // update is a few field writes), so a poisoned lock is still usable.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Transactions waiting for a block.
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks that a transaction of `signer` with `sequence` and `hash`
    /// could be admitted now; `committed` reads the account's committed
    /// sequence.
    pub fn check(
        &self,
        hash: &[u8; 32],
        signer: &Address,
        sequence: u64,
        committed: impl FnOnce() -> Result<u64, Status>,
    ) -> Result<Admit, Status> {
        let inner = self.lock();
        inner.check(self.capacity, hash, signer, sequence, committed)
    }

    /// Admits `pending`, checking again under the same lock as the insert.
    pub fn insert(
        &self,
        pending: Pending,
        committed: impl FnOnce() -> Result<u64, Status>,
    ) -> Result<(), Status> {
        let mut inner = self.lock();
        inner.check(
            self.capacity,
            &pending.hash,
            &pending.signer,
            pending.sequence,
            committed,
        )?;
        let slot = inner.slots.entry(pending.signer).or_insert(Slot {
            next: pending.sequence,
            count: 0,
        });
        slot.next = pending.sequence.saturating_add(1);
        slot.count += 1;
        inner.hashes.insert(pending.hash);
        inner.queue.push_back(pending);
        Ok(())
    }

    /// Takes up to `max` transactions, oldest first, for the next block.
    /// They stay counted until [`settle`](Self::settle)d.
    pub fn take(&self, max: usize) -> Vec<Pending> {
        let mut inner = self.lock();
        let n = max.min(inner.queue.len());
        inner.queue.drain(..n).collect()
    }

    /// Marks a transaction taken by [`take`](Self::take) as done. If it
    /// `failed`, the signer's waiting transactions are removed and
    /// returned: their sequences can no longer follow.
    pub fn settle(&self, signer: &Address, hash: &[u8; 32], failed: bool) -> Vec<Pending> {
        let mut inner = self.lock();
        inner.hashes.remove(hash);
        let mut dropped = Vec::new();
        if failed {
            let (mine, rest): (VecDeque<_>, VecDeque<_>) =
                inner.queue.drain(..).partition(|p| p.signer == *signer);
            inner.queue = rest;
            for p in &mine {
                inner.hashes.remove(&p.hash);
            }
            dropped = mine.into();
        }
        if let Some(slot) = inner.slots.get_mut(signer) {
            slot.count = slot.count.saturating_sub(1 + dropped.len());
            if slot.count == 0 {
                inner.slots.remove(signer);
            }
        }
        dropped
    }

    /// Removes every waiting transaction and closes the mempool: later
    /// admissions are refused (shutdown), so no transaction can be left
    /// waiting for a block that will never come.
    pub fn drain(&self) -> Vec<Pending> {
        let mut inner = self.lock();
        inner.closed = true;
        inner.hashes.clear();
        inner.slots.clear();
        inner.queue.drain(..).collect()
    }
}

impl Inner {
    fn check(
        &self,
        capacity: usize,
        hash: &[u8; 32],
        signer: &Address,
        sequence: u64,
        committed: impl FnOnce() -> Result<u64, Status>,
    ) -> Result<Admit, Status> {
        if self.closed {
            return Err(Status::unavailable(
                "the node is shutting down: no transaction is admitted",
            ));
        }
        if self.hashes.contains(hash) {
            return Err(Status::already_exists(
                "transaction is already in the mempool",
            ));
        }
        let (expected, admit) = match self.slots.get(signer) {
            Some(slot) => (slot.next, Admit::AfterPending),
            None => {
                let seq = committed()?;
                if sequence < seq {
                    return Err(Status::already_exists(format!(
                        "replay: sequence {sequence} of {signer} is already used \
                         (the account's next sequence is {seq})"
                    )));
                }
                (seq, Admit::OnCommitted)
            }
        };
        if sequence < expected {
            return Err(Status::already_exists(format!(
                "sequence {sequence} of {signer} is already taken by a waiting transaction \
                 (next is {expected})"
            )));
        }
        if sequence > expected {
            return Err(Status::failed_precondition(format!(
                "sequence {sequence} of {signer} skips ahead: the next sequence is {expected}"
            )));
        }
        if self.queue.len() >= capacity {
            return Err(Status::resource_exhausted(format!(
                "mempool is full ({capacity} transactions): retry later"
            )));
        }
        Ok(admit)
    }
}

#[cfg(test)]
mod tests {
    use r3mes_chain::proto::{MsgSend, TxBody, tx_body};
    use r3mes_chain::{SecretKey, SignedTx};
    use tonic::Code;

    use super::*;

    fn key(i: u8) -> SecretKey {
        let mut bytes = [0u8; 32];
        bytes[0] = i;
        bytes[31] = 1;
        SecretKey::from_bytes(&bytes).unwrap()
    }

    /// A pending transfer of account `i` at `sequence`, and its reply.
    fn pending(i: u8, sequence: u64) -> (Pending, oneshot::Receiver<Reply>) {
        let k = key(i);
        let signer = k.public_key().address();
        let body = TxBody {
            msg: Some(tx_body::Msg::Send(MsgSend {
                from: signer.to_string(),
                to: signer.to_string(),
                amount_low: 1,
                amount_high: 0,
            })),
        };
        let tx = SignedTx::sign(body, &k, sequence, "c", 0).unwrap();
        let hash = r3mes_chain::crypto::sha256(&tx.encode());
        let (reply, rx) = oneshot::channel();
        let p = Pending {
            tx,
            hash,
            signer,
            sequence,
            reply,
        };
        (p, rx)
    }

    #[test]
    fn sequences_must_follow_and_duplicates_are_refused() {
        let pool = Mempool::new(10);
        let committed = || Ok(3);
        let (p3, _r3) = pending(1, 3);
        let a = p3.signer;
        let hash3 = p3.hash;
        assert_eq!(
            pool.check(&hash3, &a, 3, committed).unwrap(),
            Admit::OnCommitted
        );
        pool.insert(p3, committed).unwrap();
        // The same bytes again, a taken sequence, a replay, a gap.
        assert_eq!(
            pool.check(&hash3, &a, 3, committed).unwrap_err().code(),
            Code::AlreadyExists
        );
        let (dup, _) = pending(1, 3);
        let err = pool.check(&[9; 32], &dup.signer, 3, committed).unwrap_err();
        assert_eq!(err.code(), Code::AlreadyExists);
        assert!(err.message().contains("already taken"), "{err:?}");
        let (p5, _r5) = pending(1, 5);
        let err = pool.insert(p5, committed).unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition);
        assert!(err.message().contains("skips ahead"), "{err:?}");
        let (p4, _r4) = pending(1, 4);
        assert_eq!(
            pool.check(&p4.hash, &a, 4, committed).unwrap(),
            Admit::AfterPending
        );
        pool.insert(p4, committed).unwrap();
        let (old, _) = pending(2, 1);
        let err = pool.insert(old, committed).unwrap_err();
        assert!(err.message().contains("replay"), "{err:?}");
        assert_eq!(pool.len(), 2);
    }

    #[test]
    fn a_failed_transaction_drops_its_account_s_later_ones_only() {
        let pool = Mempool::new(10);
        let committed = || Ok(0);
        let mut replies = Vec::new();
        for (i, seq) in [(1, 0), (2, 0), (1, 1), (1, 2), (2, 1)] {
            let (p, r) = pending(i, seq);
            pool.insert(p, committed).unwrap();
            replies.push(r);
        }
        // Arrival order, which is each account's sequence order.
        let block = pool.take(2);
        let order: Vec<_> = block.iter().map(|p| p.sequence).collect();
        assert_eq!(order, [0, 0]);
        let failed = &block[0];
        let dropped = pool.settle(&failed.signer, &failed.hash, true);
        let seqs: Vec<_> = dropped.iter().map(|p| p.sequence).collect();
        assert_eq!(seqs, [1, 2]);
        assert!(dropped.iter().all(|p| p.signer == failed.signer));
        assert!(
            pool.settle(&block[1].signer, &block[1].hash, false)
                .is_empty()
        );
        assert_eq!(pool.len(), 1);
        // Account 1 starts again from its committed sequence; account 2
        // continues after its waiting transaction.
        let (again, _) = pending(1, 0);
        assert_eq!(
            pool.check(&again.hash, &again.signer, 0, committed)
                .unwrap(),
            Admit::OnCommitted
        );
        let (next, _) = pending(2, 2);
        assert_eq!(
            pool.check(&next.hash, &next.signer, 2, committed).unwrap(),
            Admit::AfterPending
        );
    }

    #[test]
    fn a_full_mempool_refuses_until_a_block_takes_some() {
        let pool = Mempool::new(2);
        for i in 1..=2 {
            let (p, _) = pending(i, 0);
            pool.insert(p, || Ok(0)).unwrap();
        }
        let (p, _) = pending(3, 0);
        let err = pool.check(&p.hash, &p.signer, 0, || Ok(0)).unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted);
        pool.take(1);
        pool.insert(p, || Ok(0)).unwrap();
        assert_eq!(pool.drain().len(), 2);
        assert!(pool.is_empty());
        let (late, _) = pending(4, 0);
        let err = pool.insert(late, || Ok(0)).unwrap_err();
        assert_eq!(err.code(), Code::Unavailable);
    }
}
