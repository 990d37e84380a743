//! Group commit: one writer thread, a bounded queue, one redb transaction per batch.
//!
//! The node stages writes from its own thread; each staged write is a list of [`Op`]s
//! (an object and its segment hash, both rows of `objects`; or a hint and its owner's totals)
//! sent whole, so a batch never splits one. The writer takes the first queued write, then
//! everything else already queued (up to `batch_writes_max`), waiting at most
//! `batch_wait` for more, and commits them in one transaction. Writes that arrive during
//! a commit's fsync form the next batch, so the batch size follows the load by itself.
//! After the commit it drops the batch from the overlay, then reports the batch's tokens.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cairn_core::{StoreError, WriteToken};
use redb::{Database, WriteTransaction};

use crate::error::{commit_error, storage_error, table_error, txn_error};
use crate::format::{MetaKey, HINTS, HINT_TOTALS, META, OBJECTS};
use crate::overlay::Overlay;
use crate::Durability;

/// One change to one table; `None` (or zero) removes the row.
#[derive(Clone, Debug)]
pub(crate) enum Op {
    Object {
        key: Vec<u8>,
        record: Option<Vec<u8>>,
    },
    Segment {
        key: [u8; 4],
        hash: u64,
    },
    Hint {
        key: Vec<u8>,
        record: Option<Vec<u8>>,
    },
    Totals {
        owner: [u8; 8],
        totals: (u64, u64),
    },
    Node(Vec<u8>),
}

/// A staged write: everything one `stage_*` call changes.
#[derive(Debug)]
pub(crate) struct Write {
    pub(crate) seq: u64,
    pub(crate) ops: Vec<Op>,
}

/// What the writer has made durable, for the driver to take.
#[derive(Debug, Default)]
pub(crate) struct Done {
    pub(crate) tokens: Vec<WriteToken>,
    /// Every write with a sequence number up to this one is committed.
    pub(crate) committed: u64,
    /// Set when a commit failed; nothing after it is ever reported.
    pub(crate) failed: Option<StoreError>,
}

/// Counters for benchmarks and metrics.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) batches: AtomicU64,
    pub(crate) writes: AtomicU64,
    pub(crate) commit_ns: AtomicU64,
}

/// State shared by the node's thread and the writer.
pub(crate) struct Shared {
    pub(crate) db: Database,
    pub(crate) overlay: Mutex<Overlay>,
    pub(crate) done: Mutex<Done>,
    pub(crate) done_cv: Condvar,
    pub(crate) on_persisted: Option<Arc<dyn Fn() + Send + Sync>>,
    pub(crate) counters: Counters,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl Shared {
    pub(crate) fn overlay(&self) -> MutexGuard<'_, Overlay> {
        // A panic while holding the lock is a bug in this crate; the data is still the
        // staged layer, so keep serving it rather than poisoning every later read.
        self.overlay.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn done(&self) -> MutexGuard<'_, Done> {
        self.done.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The group-commit settings the writer needs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Batching {
    pub(crate) writes_max: usize,
    pub(crate) wait: Duration,
    pub(crate) durability: Durability,
}

/// With [`Durability::None`], one batch in this many is committed durably anyway: redb
/// frees pages only in durable commits, so without them the file grows without bound.
pub const NONE_DURABLE_EVERY_BATCHES: u64 = 256;

/// The writer thread's loop; returns when the queue's sender is dropped and drained, or
/// after a failed commit.
pub(crate) fn run(shared: &Shared, rx: &Receiver<Write>, batching: Batching) {
    let mut batches = 0u64;
    while let Some(batch) = next_batch(rx, batching) {
        batches += 1;
        let durable = match batching.durability {
            Durability::Fsync => true,
            Durability::None => batches % NONE_DURABLE_EVERY_BATCHES == 0,
        };
        let started = Instant::now();
        let result = commit(&shared.db, &batch, durable);
        let elapsed = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let c = &shared.counters;
        c.batches.fetch_add(1, Ordering::Relaxed);
        c.writes.fetch_add(batch.len() as u64, Ordering::Relaxed);
        c.commit_ns.fetch_add(elapsed, Ordering::Relaxed);
        if let Err(e) = result {
            shared.done().failed = Some(e);
            shared.done_cv.notify_all();
            notify(shared);
            return;
        }
        report(shared, &batch);
    }
}

fn next_batch(rx: &Receiver<Write>, b: Batching) -> Option<Vec<Write>> {
    let first = rx.recv().ok()?;
    let mut batch = vec![first];
    let deadline = Instant::now() + b.wait;
    while batch.len() < b.writes_max {
        match rx.try_recv() {
            Ok(w) => batch.push(w),
            Err(TryRecvError::Disconnected) => break,
            Err(TryRecvError::Empty) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                match rx.recv_timeout(left) {
                    Ok(w) => batch.push(w),
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                }
            }
        }
    }
    Some(batch)
}

/// Applies a batch in one transaction.
pub(crate) fn commit(db: &Database, batch: &[Write], durable: bool) -> Result<(), StoreError> {
    let mut txn = db.begin_write().map_err(txn_error)?;
    txn.set_durability(if durable {
        redb::Durability::Immediate
    } else {
        redb::Durability::None
    });
    apply(&txn, batch.iter().flat_map(|w| &w.ops))?;
    txn.commit().map_err(commit_error)
}

/// Writes `ops` into `txn`'s tables.
pub(crate) fn apply<'a>(
    txn: &WriteTransaction,
    ops: impl Iterator<Item = &'a Op>,
) -> Result<(), StoreError> {
    let mut objects = txn.open_table(OBJECTS).map_err(table_error)?;
    let mut hints = txn.open_table(HINTS).map_err(table_error)?;
    let mut totals = txn.open_table(HINT_TOTALS).map_err(table_error)?;
    let mut meta = txn.open_table(META).map_err(table_error)?;
    for op in ops {
        let r = match op {
            Op::Object {
                key,
                record: Some(r),
            } => objects.insert(&key[..], &r[..]).map(drop),
            Op::Object { key, record: None } => objects.remove(&key[..]).map(drop),
            // Segment hashes are rows of `objects`, next to their segment's objects.
            Op::Segment { key, hash: 0 } => objects.remove(&key[..]).map(drop),
            Op::Segment { key, hash } => {
                objects.insert(&key[..], &hash.to_le_bytes()[..]).map(drop)
            }
            Op::Hint {
                key,
                record: Some(r),
            } => hints.insert(&key[..], &r[..]).map(drop),
            Op::Hint { key, record: None } => hints.remove(&key[..]).map(drop),
            Op::Totals {
                owner,
                totals: (0, _),
            } => totals.remove(&owner[..]).map(drop),
            Op::Totals {
                owner,
                totals: (c, b),
            } => {
                let rec = crate::format::totals_record(*c, *b);
                totals.insert(&owner[..], &rec[..]).map(drop)
            }
            Op::Node(r) => meta.insert(MetaKey::NODE, &r[..]).map(drop),
        };
        r.map_err(storage_error)?;
    }
    Ok(())
}

fn report(shared: &Shared, batch: &[Write]) {
    let last = batch.last().map_or(0, |w| w.seq);
    {
        let mut overlay = shared.overlay();
        for w in batch {
            overlay.forget(&w.ops, last);
        }
    }
    {
        let mut done = shared.done();
        done.tokens.extend(batch.iter().map(|w| WriteToken(w.seq)));
        done.committed = last;
    }
    shared.done_cv.notify_all();
    notify(shared);
}

fn notify(shared: &Shared) {
    if let Some(f) = &shared.on_persisted {
        f();
    }
}
