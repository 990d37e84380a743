//! Group commit: a bounded queue, a log writer and an applier.
//!
//! The node stages writes from its own thread; each staged write is a list of [`Op`]s
//! (an object and its segment hash, both rows of `objects`; or a hint and its owner's
//! totals) sent whole, so a batch never splits one. The log writer takes the first queued
//! write, then everything else already queued (up to `batch_writes_max`), waiting at most
//! `batch_wait` for more, appends them to the write-ahead log as one record, syncs it and
//! reports the batch's tokens. Writes that arrive during an fsync form the next batch, so
//! the batch size follows the load by itself. The applier then writes the batches into
//! redb, many per transaction (see `wal` for why and for what the two agree on), and
//! drops them from the overlay.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{
    sync_channel, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError,
};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cairn_core::{StoreError, WriteToken};
use redb::{Database, WriteTransaction};

use crate::error::{commit_error, storage_error, table_error, txn_error};
use crate::format::{DiskKey, MetaKey, HINTS, HINT_TOTALS, LARGE_OBJECTS, META, OBJECTS};
use crate::overlay::Overlay;
use crate::wal::{Applied, Wal};
use crate::Durability;

/// One change to one table; `None` (or zero) removes the row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Object {
        key: DiskKey,
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
    /// Every write with a sequence number up to this one is durable (in the log).
    pub(crate) committed: u64,
    /// Every write with a sequence number up to this one is in redb (and out of the
    /// overlay).
    pub(crate) applied: u64,
    /// About how many bytes of writes are reported but not yet applied (the log writer
    /// keeps it under [`UNAPPLIED_BYTES_MAX`]).
    pub(crate) unapplied_bytes: usize,
    /// How much of the log redb holds durably: the mark of the applier's last synced
    /// commit (at open, the one open committed). The log writer starts a new lap only
    /// when this covers the lap before the current one, which the new lap overwrites
    /// (`writer::holds_previous_lap`).
    pub(crate) synced: Option<Applied>,
    /// Set when the log writer or the applier failed. The log writer reports nothing
    /// after a failure of its own; a batch it logged and reported just as the applier
    /// failed is in the log and replayed at the next open.
    pub(crate) failed: Option<StoreError>,
}

/// Counters for benchmarks and metrics.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) batches: AtomicU64,
    pub(crate) writes: AtomicU64,
    pub(crate) commit_ns: AtomicU64,
    /// Log commits by duration: slot `i` counts those within `COMMIT_BUCKETS_US[i]` and
    /// above the bound before it; the last slot, those above every bound.
    pub(crate) commit_slots: [AtomicU64; crate::COMMIT_BUCKETS_US.len() + 1],
    pub(crate) applies: AtomicU64,
    /// Log restarts (laps begun), and the time the log writer (and every write behind
    /// it) waited for the checkpoints some of them needed.
    pub(crate) restarts: AtomicU64,
    pub(crate) restart_wait_ns: AtomicU64,
}

impl Counters {
    /// Counts a log commit that took `ns`.
    fn commit(&self, writes: usize, ns: u64) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.writes.fetch_add(writes as u64, Ordering::Relaxed);
        self.commit_ns.fetch_add(ns, Ordering::Relaxed);
        // The first bound the duration does not exceed; past them all, the last slot.
        let slot = crate::COMMIT_BUCKETS_US.partition_point(|us| us.saturating_mul(1_000) < ns);
        self.commit_slots[slot].fetch_add(1, Ordering::Relaxed);
    }

    /// Log commits within each of `COMMIT_BUCKETS_US`, cumulative as Prometheus counts
    /// them, then all of them. All from the slots, so that a commit counted meanwhile
    /// never leaves a bucket above the total.
    pub(crate) fn commit_buckets(&self) -> [u64; crate::COMMIT_BUCKETS_US.len() + 1] {
        let mut out = [0; crate::COMMIT_BUCKETS_US.len() + 1];
        let mut sum = 0;
        for (o, s) in out.iter_mut().zip(&self.commit_slots) {
            sum += s.load(Ordering::Relaxed);
            *o = sum;
        }
        out
    }
}

/// State shared by the node's thread and the writer.
pub(crate) struct Shared {
    pub(crate) db: Database,
    pub(crate) overlay: Mutex<Overlay>,
    pub(crate) done: Mutex<Done>,
    pub(crate) done_cv: Condvar,
    /// Set once `done.failed` is: the owner checks it at every staged write, where taking
    /// the `done` lock (which the log writer and the applier take at every batch) cost a
    /// contended lock per write (session 25, one node batched: that lock was ~1% of the
    /// I/O thread's samples, with `take_persisted`'s once per turn).
    pub(crate) failed: AtomicBool,
    pub(crate) on_persisted: Option<Arc<dyn Fn() + Send + Sync>>,
    pub(crate) counters: Counters,
    /// redb commits the applier has made, counted after each commit and before its writes
    /// leave the overlay: a reader that missed a write in the overlay and then reads this
    /// count sees the commit that holds it (the overlay lock orders the two), so a read
    /// view opened at this count or later holds it too (`RedbStore::objects`).
    pub(crate) commits: AtomicU64,
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

    /// Waits on `done_cv` with `done` locked (as [`done`](Self::done) does, never
    /// poisoned).
    pub(crate) fn wait_done<'a>(&self, done: MutexGuard<'a, Done>) -> MutexGuard<'a, Done> {
        self.done_cv.wait(done).unwrap_or_else(|p| p.into_inner())
    }
}

/// The group-commit settings the writer needs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Batching {
    pub(crate) writes_max: usize,
    pub(crate) wait: Duration,
    pub(crate) durability: Durability,
}

/// Most batches the log writer has passed on that the applier has not yet taken. A full
/// queue blocks the log writer, and through it every write on the node, so the queue must
/// outlast the applier's longest commit: the memory they hold is bounded in bytes
/// ([`UNAPPLIED_BYTES_MAX`]), not here. The applier does not take its queue while it
/// commits, and on a store of 300,000 keys a commit took 100–500 ms while the log writer
/// passed on ~3,000 batches a second: the old bound of 1,024 filled, every write
/// waited for the commit to end, and p99.9 at 8k increments/s was 107–140 ms in runs
/// with such stalls (12–15 ms without; session 31). This holds ~5 s of batches at
/// that rate, and costs ~1 MiB of slots.
pub const APPLY_QUEUE_BATCHES: usize = 16_384;

/// Most bytes of writes reported durable but not yet applied to redb, as `write_bytes`
/// counts them: the overlay holds their objects, hints and node records (segment hashes
/// and hint totals live elsewhere) and the applier's queue a second copy of each, so
/// this bounds their memory to about twice it. The log writer waits before
/// passing on a batch that would exceed it (unless nothing is unapplied: one batch, at
/// most [`BATCH_BYTES_MAX`], always goes), which blocks the stagers.
pub const UNAPPLIED_BYTES_MAX: usize = 256 << 20;

/// Most writes the applier puts in one redb transaction.
pub const APPLY_WRITES_MAX: usize = 65_536;

/// Most bytes of writes the applier puts in one redb transaction.
pub const APPLY_BYTES_MAX: usize = 64 << 20;

/// How long the applier gathers batches before one synced redb commit (a checkpoint,
/// which also records how much of the log redb holds). Applying is off the durability
/// path (a write is reported once it is in the log), so waiting costs only overlay
/// memory and replay length at the next open. It buys far fewer commits: a redb commit
/// costs hundreds of microseconds however small, and a row written many times in the
/// window is written once. A [`flush`](crate::RedbStore::flush) does not wait for it.
pub const APPLY_WAIT: Duration = Duration::from_millis(200);

/// What the log writer hands the applier.
pub(crate) enum ToApply {
    /// A batch reported durable, where its record ends in the log, and about how many
    /// bytes its writes hold (see [`UNAPPLIED_BYTES_MAX`]).
    Batch {
        writes: Vec<Write>,
        at: Applied,
        bytes: usize,
    },
    /// Apply everything before this, sync redb, then answer.
    Checkpoint(SyncSender<Result<(), StoreError>>),
    /// Someone waits for every write up to this sequence number to be applied: commit as
    /// soon as it is gathered rather than at the end of [`APPLY_WAIT`].
    Hurry(u64),
}

/// The way to the applier. Batches do not wake it: it takes them when its window ends
/// (or something urgent wakes it), so a busy log writer costs it one wake-up per window,
/// not one per batch (on the development VM a wake-up of an idle vCPU costs ~10 µs of
/// CPU; ARCHITECTURE.md). A hurry, a checkpoint, a full queue, a log writer about to wait
/// for room, and a sender's end do wake it, and so does every batch while the applier
/// waits for a hurry's writes ([`Hurrying`]).
#[derive(Clone)]
pub(crate) struct ApplyTx {
    /// `None` only while dropping (so the applier is woken after the queue closes).
    tx: Option<SyncSender<ToApply>>,
    applier: std::thread::Thread,
    hurrying: Hurrying,
}

/// Set by the applier while it waits for the writes a hurry named: batches then wake it.
/// The applier sets it before it next looks at its queue, and the log writer reads it
/// after its send, so a batch is either seen in that look or sent after the flag was set
/// (and then wakes it).
#[derive(Clone, Default)]
pub(crate) struct Hurrying(Arc<AtomicBool>);

impl Hurrying {
    fn set(&self, on: bool) {
        self.0.store(on, Ordering::SeqCst);
    }

    fn get(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// The applier is gone (it recorded why).
pub(crate) struct ApplierGone;

impl ApplyTx {
    pub(crate) fn new(
        tx: SyncSender<ToApply>,
        applier: std::thread::Thread,
        hurrying: Hurrying,
    ) -> Self {
        ApplyTx {
            tx: Some(tx),
            applier,
            hurrying,
        }
    }

    /// Queues a durable batch without waking the applier, unless the queue is full or the
    /// applier waits for it (a hurry).
    fn batch(&self, msg: ToApply) -> Result<(), ApplierGone> {
        let tx = self.tx.as_ref().ok_or(ApplierGone)?;
        match tx.try_send(msg) {
            Ok(()) => {
                if self.hurrying.get() {
                    self.wake();
                }
                Ok(())
            }
            Err(TrySendError::Full(msg)) => {
                self.wake();
                tx.send(msg).map_err(|_| ApplierGone)
            }
            Err(TrySendError::Disconnected(_)) => Err(ApplierGone),
        }
    }

    /// Queues `msg` and wakes the applier to take it now.
    pub(crate) fn urgent(&self, msg: ToApply) -> Result<(), ApplierGone> {
        let tx = self.tx.as_ref().ok_or(ApplierGone)?;
        // Woken before too: the send waits for room in a full queue, which only the
        // applier makes.
        self.wake();
        let sent = tx.send(msg).map_err(|_| ApplierGone);
        self.wake();
        sent
    }

    fn wake(&self) {
        self.applier.unpark();
    }
}

impl Drop for ApplyTx {
    /// The applier notices a closed queue only when it looks: close this sender's end,
    /// then let it look.
    fn drop(&mut self) {
        drop(self.tx.take());
        self.wake();
    }
}

/// The log writer's loop: appends each batch to the log, syncs it, reports it durable and
/// passes it to the applier. Returns when the queue's sender is dropped and drained, or
/// after a failure (recorded in `shared`). Dropping `apply` at the end lets the applier
/// finish; the caller joins it.
pub(crate) fn run(
    shared: &Shared,
    rx: &Receiver<Write>,
    mut wal: Wal,
    batching: Batching,
    apply: &ApplyTx,
) {
    while let Some((batch, bytes)) = next_batch(rx, batching) {
        let started = Instant::now();
        let result = log(shared, &mut wal, &batch, batching.durability, apply);
        let elapsed = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        shared.counters.commit(batch.len(), elapsed);
        if let Err(e) = result {
            fail(shared, e);
            return;
        }
        report(shared, &batch);
        let at = Applied {
            epoch: wal.epoch(),
            end: wal.end(),
        };
        if !reserve_unapplied(shared, bytes, apply) {
            return; // The applier failed and recorded why.
        }
        let batch = ToApply::Batch {
            writes: batch,
            at,
            bytes,
        };
        if apply.batch(batch).is_err() {
            return; // The applier failed and recorded why.
        }
        if wal.wants_restart() {
            if let Err(e) = next_lap(shared, &mut wal, apply) {
                fail(shared, e);
                return;
            }
        }
    }
}

/// Appends a batch to the log as one record and, for `Fsync`, syncs it. A record that
/// does not fit in a lower lap (one batch larger than what is left before the upper lap)
/// goes first into a new upper lap, which has no bound.
fn log(
    shared: &Shared,
    wal: &mut Wal,
    batch: &[Write],
    durability: Durability,
    apply: &ApplyTx,
) -> Result<(), StoreError> {
    let ops = || batch.iter().flat_map(|w| &w.ops);
    let mut record = wal.record(ops())?;
    if !wal.has_room(record.len()) {
        next_lap(shared, wal, apply)?;
        record = wal.record(ops())?;
    }
    wal.write_record(&record)?;
    match durability {
        Durability::Fsync => wal.sync(),
        Durability::None => Ok(()),
    }
}

/// Ends the log's lap and starts the next in the other area (see `wal`). The next lap
/// overwrites the lap before the previous one, so redb must hold that one durably first:
/// almost always long since, as a whole lap has been logged after it. Only when the
/// applier is that far behind (or with `Durability::None`, whose commits are not synced)
/// does the log writer wait for a checkpoint, and every write on the node with it.
///
/// Until laps alternated (store format 4, log version 1) every restart rewrote the one
/// lap in place and waited for a checkpoint of all of it; on a store of 300,000 keys
/// such a wait took 110–580 ms (session 31).
fn next_lap(shared: &Shared, wal: &mut Wal, apply: &ApplyTx) -> Result<(), StoreError> {
    if !holds_previous_lap(shared.done().synced, wal) {
        let started = Instant::now();
        ask_checkpoint(apply)?
            .recv()
            .map_err(|_| applier_gone())??;
        let waited = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        shared
            .counters
            .restart_wait_ns
            .fetch_add(waited, Ordering::Relaxed);
    }
    shared.counters.restarts.fetch_add(1, Ordering::Relaxed);
    wal.next_lap()
}

/// Whether redb's durable mark `synced` covers the lap before the current one, which the
/// next lap overwrites: the mark is in the current lap, or exactly where that lap ended.
/// The applier applies in log order, so a mark in the current lap means every earlier
/// lap is in redb.
fn holds_previous_lap(synced: Option<Applied>, wal: &Wal) -> bool {
    synced.is_some_and(|m| m.epoch == wal.epoch() || m == wal.previous())
}

/// Asks the applier to commit, synced, everything passed to it so far; the receiver gets
/// the outcome.
fn ask_checkpoint(apply: &ApplyTx) -> Result<Receiver<Result<(), StoreError>>, StoreError> {
    let (tx, rx) = sync_channel(1);
    apply
        .urgent(ToApply::Checkpoint(tx))
        .map_err(|_| applier_gone())?;
    Ok(rx)
}

fn applier_gone() -> StoreError {
    StoreError::Io("the store's applier stopped".to_string())
}

/// Runs a store thread's loop, recording a panic in it as the store's failure, so that
/// nothing waits for a thread that is gone (the log writer for room the applier would
/// have freed, a flush for an apply).
pub(crate) fn guarded(shared: &Shared, thread: &str, body: impl FnOnce()) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).is_err() {
        fail_with(shared, &format!("the {thread} thread panicked"));
    }
}

/// Records a failure described by `what` (see [`fail`]).
pub(crate) fn fail_with(shared: &Shared, what: &str) {
    fail(shared, StoreError::Io(what.to_string()));
}

/// Records the first failure and wakes everyone waiting: nothing is reported after it.
fn fail(shared: &Shared, e: StoreError) {
    let mut done = shared.done();
    if done.failed.is_none() {
        done.failed = Some(e);
        shared.failed.store(true, Ordering::Release);
    }
    drop(done);
    shared.done_cv.notify_all();
    notify(shared);
}

/// A batch stops growing once its writes hold this many bytes (as `write_bytes` counts
/// them, at least their keys and records), so a log record stays far below its 4 GiB
/// limit (one write is bounded by the largest value, far below that).
pub const BATCH_BYTES_MAX: usize = 64 << 20;

/// What one op costs in memory beyond its key and record bytes (its `Op`, its overlay
/// entry if it has one, and their allocations), for [`write_bytes`]: segment and totals
/// ops have no overlay entry, so they are counted high.
const OP_OVERHEAD_BYTES: usize = 128;

/// About how many bytes a write's ops take in the log, plus [`OP_OVERHEAD_BYTES`] each:
/// what the write holds in memory until it is applied, once in the queue to the applier
/// and once in the overlay (so memory is about twice the sum).
fn write_bytes(w: &Write) -> usize {
    w.ops
        .iter()
        .map(|op| {
            OP_OVERHEAD_BYTES
                + match op {
                    Op::Object { key, record } => row_bytes(key, record),
                    Op::Hint { key, record } => row_bytes(key, record),
                    Op::Segment { .. } => 13,
                    Op::Totals { .. } => 25,
                    Op::Node(r) => r.len() + 5,
                }
        })
        .sum()
}

/// A row's share of [`write_bytes`]: its key, its record, a tag and two lengths.
fn row_bytes(key: &[u8], record: &Option<Vec<u8>>) -> usize {
    key.len() + record.as_ref().map_or(0, Vec::len) + 9
}

/// Waits until `bytes` more fit under [`UNAPPLIED_BYTES_MAX`] (or nothing is unapplied)
/// and counts them; false if the store failed meanwhile. Wakes the applier before
/// waiting: it then takes its queue, and a gathering that reaches `APPLY_BYTES_MAX` (a
/// quarter of this bound) commits at once, which makes the room.
fn reserve_unapplied(shared: &Shared, bytes: usize, apply: &ApplyTx) -> bool {
    let mut done = shared.done();
    while done.failed.is_none()
        && done.unapplied_bytes > 0
        && done.unapplied_bytes.saturating_add(bytes) > UNAPPLIED_BYTES_MAX
    {
        apply.wake();
        done = shared.wait_done(done);
    }
    done.unapplied_bytes = done.unapplied_bytes.saturating_add(bytes);
    done.failed.is_none()
}

/// The next batch and about how many bytes its writes hold.
fn next_batch(rx: &Receiver<Write>, b: Batching) -> Option<(Vec<Write>, usize)> {
    let first = rx.recv().ok()?;
    let mut bytes = write_bytes(&first);
    let mut batch = vec![first];
    let deadline = Instant::now() + b.wait;
    while batch.len() < b.writes_max && bytes < BATCH_BYTES_MAX {
        match rx.try_recv() {
            Ok(w) => {
                bytes += write_bytes(&w);
                batch.push(w);
            }
            Err(TryRecvError::Disconnected) => break,
            Err(TryRecvError::Empty) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                match rx.recv_timeout(left) {
                    Ok(w) => {
                        bytes += write_bytes(&w);
                        batch.push(w);
                    }
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                }
            }
        }
    }
    Some((batch, bytes))
}

/// The applier's loop: gathers what the log writer reported for [`APPLY_WAIT`] (less if
/// [`APPLY_WRITES_MAX`] or [`APPLY_BYTES_MAX`] fill up, a checkpoint is asked for, or a
/// flush waits), applies it in one synced redb transaction that also records how much of
/// the log redb holds, then drops the applied writes from the overlay (reads find them in
/// redb from then on). When the log writer and the store are gone it makes a last commit,
/// so a clean close leaves nothing to replay.
///
/// With [`Durability::None`] only checkpoints and the last commit are synced, like the
/// log.
pub(crate) fn apply_loop(
    shared: &Shared,
    rx: &Receiver<ToApply>,
    durability: Durability,
    hurrying: &Hurrying,
) {
    let mut applied: Option<Applied> = None;
    let mut synced_at: Option<Applied> = None;
    let mut hurry = 0u64;
    while let Ok(first) = rx.recv() {
        let mut gather = Gather::default();
        let mut checkpoint = None;
        let mut next = Some(first);
        let deadline = Instant::now() + APPLY_WAIT;
        while let Some(msg) = next.take() {
            match msg {
                ToApply::Batch { writes, at, bytes } => {
                    gather.add(writes, bytes);
                    applied = Some(at);
                }
                ToApply::Checkpoint(reply) => {
                    checkpoint = Some(reply);
                    break;
                }
                // A hurry for writes already applied is stale: a flush's hurry can arrive
                // after the commit that covered it.
                ToApply::Hurry(seq) if seq > shared.done().applied => hurry = hurry.max(seq),
                ToApply::Hurry(_) => {}
            }
            // Set before the next wait, so every batch sent after it wakes this thread
            // (one sent before it is already queued, and is taken without waiting).
            hurrying.set(hurry > 0);
            if gather.is_full() || (hurry > 0 && gather.last_seq() >= hurry) {
                break;
            }
            next = next_within(rx, deadline);
        }
        if gather.writes.is_empty() && checkpoint.is_none() {
            continue; // Only a hurry for writes already applied.
        }
        let ops = coalesce(gather.writes.iter().flat_map(|w| &w.ops));
        let sync = durability == Durability::Fsync || checkpoint.is_some();
        let result = commit(&shared.db, ops.into_iter(), sync, applied);
        if let Some(reply) = checkpoint {
            let _ = reply.send(result.clone());
        }
        if let Err(e) = result {
            fail(shared, e);
            return;
        }
        shared.commits.fetch_add(1, Ordering::Release);
        shared.counters.applies.fetch_add(1, Ordering::Relaxed);
        if sync {
            synced_at = applied;
            if applied.is_some() {
                shared.done().synced = applied;
            }
        }
        if gather.last_seq() >= hurry {
            hurry = 0;
            hurrying.set(false);
        }
        forget(shared, &gather);
    }
    if applied != synced_at {
        match commit(&shared.db, std::iter::empty(), true, applied) {
            Ok(()) => {
                shared.commits.fetch_add(1, Ordering::Release);
            }
            Err(e) => fail(shared, e),
        }
    }
}

/// Lowers the calling thread's CPU priority by `nice` steps (capped at the lowest, 19),
/// relative to what it is now. Lowering one's own priority needs no privilege; the error
/// is for a system that refuses anyway (a seccomp filter). Not on Linux: nothing.
#[cfg(target_os = "linux")]
pub(crate) fn lower_priority(nice: i32) -> std::io::Result<()> {
    use rustix::process::{getpriority_process, setpriority_process};
    if nice <= 0 {
        return Ok(());
    }
    // On Linux a thread id names one thread here, not its whole process.
    let me = Some(rustix::thread::gettid());
    let now = getpriority_process(me)?;
    setpriority_process(me, now.saturating_add(nice).min(19))?;
    Ok(())
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn lower_priority(_nice: i32) -> std::io::Result<()> {
    Ok(())
}

/// The applier's next message before `deadline`: one already queued, else one taken
/// when something wakes it ([`ApplyTx`]: batches alone do not) or at the deadline. `None`
/// once the deadline passed or the queue closed.
fn next_within(rx: &Receiver<ToApply>, deadline: Instant) -> Option<ToApply> {
    loop {
        // The queue before the clock: what arrived while this thread slept belongs to
        // the window that is ending, not the next.
        match rx.try_recv() {
            Ok(msg) => return Some(msg),
            Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) => {}
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        std::thread::park_timeout(left);
    }
}

/// Most applied writes dropped from the overlay per hold of its lock: a few hash-map
/// removals each, so a hold stays short next to a core turn (not measured on its own;
/// a transaction on 3 nodes at 10.5k/s drops ~2,000 writes, 16 holds).
pub const FORGET_WRITES_PER_LOCK: usize = 128;

/// The batches one applier transaction holds.
#[derive(Default)]
struct Gather {
    writes: Vec<Write>,
    bytes: usize,
}

impl Gather {
    fn add(&mut self, writes: Vec<Write>, bytes: usize) {
        self.writes.extend(writes);
        self.bytes = self.bytes.saturating_add(bytes);
    }

    fn is_full(&self) -> bool {
        self.writes.len() >= APPLY_WRITES_MAX || self.bytes >= APPLY_BYTES_MAX
    }

    /// The sequence number of the last write gathered (0 if none).
    fn last_seq(&self) -> u64 {
        self.writes.last().map_or(0, |w| w.seq)
    }
}

/// The last op for each row, in key order. Every op writes a whole row, so earlier ops
/// on the same row in a batch are dead; and inserting in key order walks the tree once,
/// leaf after leaf, instead of jumping about it. Found by hashing, then sorted: a window
/// holds many writes to few rows (one node batched: ~130k ops on ~20k rows), and a
/// B-tree of rows compared keys ~15 times per op.
fn coalesce<'a>(ops: impl Iterator<Item = &'a Op>) -> Vec<&'a Op> {
    let mut last: HashMap<(u8, &'a [u8]), &'a Op> = HashMap::new();
    for op in ops {
        last.insert(row(op), op);
    }
    let mut rows: Vec<((u8, &'a [u8]), &'a Op)> = last.into_iter().collect();
    rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    rows.into_iter().map(|(_, op)| op).collect()
}

/// Which table and key `op` writes. Segment rows share the `objects` table with objects
/// (their 4-byte keys never equal an object's longer key).
fn row(op: &Op) -> (u8, &[u8]) {
    match op {
        Op::Object { key, .. } => (0, &key[..]),
        Op::Segment { key, .. } => (0, key),
        Op::Hint { key, .. } => (1, key),
        Op::Totals { owner, .. } => (2, owner),
        Op::Node(_) => (3, &[]),
    }
}

/// Drops applied writes from the overlay and their bytes from the unapplied count.
fn forget(shared: &Shared, gather: &Gather) {
    if gather.writes.is_empty() {
        return;
    }
    let last = gather.last_seq();
    // A few writes per hold of the lock: the node's thread stages and reads through it,
    // and this thread runs at a lower priority (`APPLIER_NICE`), so a long hold could
    // leave the node waiting while the scheduler runs others. Between holds a read finds
    // a not-yet-forgotten write in the overlay, the same value redb now holds.
    for chunk in gather.writes.chunks(FORGET_WRITES_PER_LOCK) {
        let mut overlay = shared.overlay();
        for w in chunk {
            overlay.forget(&w.ops, last);
        }
    }
    shared.overlay().trim();
    {
        let mut done = shared.done();
        done.applied = last;
        done.unapplied_bytes = done.unapplied_bytes.saturating_sub(gather.bytes);
    }
    shared.done_cv.notify_all();
}

/// Applies `ops` in one transaction, synced if `sync`; `mark` records in `meta` how much
/// of the log redb now holds.
pub(crate) fn commit<'a>(
    db: &Database,
    ops: impl Iterator<Item = &'a Op>,
    sync: bool,
    mark: Option<Applied>,
) -> Result<(), StoreError> {
    let mut txn = db.begin_write().map_err(txn_error)?;
    txn.set_durability(if sync {
        redb::Durability::Immediate
    } else {
        redb::Durability::None
    });
    apply(&txn, ops)?;
    if let Some(m) = mark {
        let mut meta = txn.open_table(META).map_err(table_error)?;
        meta.insert(MetaKey::WAL, &crate::format::wal_record(m)[..])
            .map_err(storage_error)?;
    }
    txn.commit().map_err(commit_error)
}

/// Writes `ops` into `txn`'s tables.
pub(crate) fn apply<'a>(
    txn: &WriteTransaction,
    ops: impl Iterator<Item = &'a Op>,
) -> Result<(), StoreError> {
    let mut objects = txn.open_table(OBJECTS).map_err(table_error)?;
    let mut large = txn.open_table(LARGE_OBJECTS).map_err(table_error)?;
    let mut hints = txn.open_table(HINTS).map_err(table_error)?;
    let mut totals = txn.open_table(HINT_TOTALS).map_err(table_error)?;
    let mut meta = txn.open_table(META).map_err(table_error)?;
    for op in ops {
        let r = match op {
            Op::Object {
                key,
                record: Some(r),
            } => put_object(&mut objects, &mut large, key, r),
            Op::Object { key, record: None } => remove_object(&mut objects, &mut large, key),
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

type WriteTable<'t> = redb::Table<'t, &'static [u8], &'static [u8]>;

/// Writes object record `r` at `key`: inline in `objects`, or in `large` with a stub in
/// `objects` (see [`LARGE_RECORD_BYTES`](crate::format::LARGE_RECORD_BYTES)).
pub(crate) fn put_object(
    objects: &mut WriteTable<'_>,
    large: &mut WriteTable<'_>,
    key: &[u8],
    r: &[u8],
) -> Result<(), redb::StorageError> {
    if let Some(stub) = crate::format::large_stub(r) {
        large.insert(key, r)?;
        objects.insert(key, &stub[..])?;
        return Ok(());
    }
    let old = objects.insert(key, r)?;
    if old.is_some_and(|o| crate::format::is_large_stub(o.value())) {
        large.remove(key)?;
    }
    Ok(())
}

/// Removes object `key` from `objects`, and from `large` if it was kept there.
fn remove_object(
    objects: &mut WriteTable<'_>,
    large: &mut WriteTable<'_>,
    key: &[u8],
) -> Result<(), redb::StorageError> {
    let old = objects.remove(key)?;
    if old.is_some_and(|o| crate::format::is_large_stub(o.value())) {
        large.remove(key)?;
    }
    Ok(())
}

/// Reports a batch durable. Its writes stay in the overlay until the applier has them.
fn report(shared: &Shared, batch: &[Write]) {
    let last = batch.last().map_or(0, |w| w.seq);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn object(key: &[u8], v: u8) -> Op {
        Op::Object {
            key: DiskKey::from_slice(key),
            record: Some(vec![v]),
        }
    }

    #[test]
    fn log_commits_are_counted_in_the_first_bucket_that_holds_them() {
        let c = Counters::default();
        c.commit(3, 50_000); // 50 µs: on the first bound, so in it.
        c.commit(1, 50_001); // Above it by a nanosecond: the second.
        c.commit(1, 100_000); // On the second bound.
        c.commit(1, 7_000_000_000); // Past every bound: only in the total.
        let b = c.commit_buckets();
        assert_eq!((b[0], b[1], b[2]), (1, 3, 3), "{b:?}");
        assert_eq!(b[b.len() - 2], 3, "the last bound: {b:?}");
        assert_eq!(b[b.len() - 1], 4, "the total: {b:?}");
        assert_eq!(c.batches.load(Ordering::Relaxed), 4);
        assert_eq!(c.writes.load(Ordering::Relaxed), 6);
    }

    fn shared() -> Shared {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .unwrap();
        Shared {
            db,
            overlay: Mutex::default(),
            done: Mutex::default(),
            done_cv: Condvar::new(),
            failed: AtomicBool::new(false),
            on_persisted: None,
            counters: Counters::default(),
            commits: AtomicU64::new(0),
        }
    }

    /// A way to an applier that is not there (waking it wakes nobody).
    fn no_applier() -> ApplyTx {
        let (tx, _) = sync_channel(1);
        ApplyTx::new(tx, std::thread::current(), Hurrying::default())
    }

    /// Fills the unapplied bound, then reserves one more byte on another thread and
    /// checks that it waits; the receiver gets whether that reservation succeeded.
    fn a_waiting_log_writer(shared: &Arc<Shared>) -> Receiver<bool> {
        // Nothing unapplied: a batch as large as the bound still goes through.
        assert!(reserve_unapplied(
            shared,
            UNAPPLIED_BYTES_MAX,
            &no_applier()
        ));
        let (tx, rx) = std::sync::mpsc::channel();
        let for_thread = Arc::clone(shared);
        std::thread::spawn(move || tx.send(reserve_unapplied(&for_thread, 1, &no_applier())));
        assert!(
            rx.recv_timeout(Duration::from_millis(100)).is_err(),
            "a batch passed the bound"
        );
        rx
    }

    #[test]
    fn the_log_writer_waits_while_too_much_is_unapplied() {
        let shared = Arc::new(shared());
        let waiting = a_waiting_log_writer(&shared);
        let applied = Gather {
            writes: vec![Write {
                seq: 1,
                ops: vec![],
            }],
            bytes: UNAPPLIED_BYTES_MAX,
        };
        forget(&shared, &applied);
        assert_eq!(waiting.recv_timeout(Duration::from_secs(10)), Ok(true));
        assert_eq!(shared.done().unapplied_bytes, 1);
        assert_eq!(shared.done().applied, 1);
    }

    #[test]
    fn a_failure_releases_a_waiting_log_writer() {
        let shared = Arc::new(shared());
        let waiting = a_waiting_log_writer(&shared);
        fail_with(&shared, "the disk went away");
        assert_eq!(waiting.recv_timeout(Duration::from_secs(10)), Ok(false));
    }

    #[test]
    fn a_panicking_store_thread_fails_the_store_and_releases_its_waiters() {
        let shared = Arc::new(shared());
        let waiting = a_waiting_log_writer(&shared);
        let for_thread = Arc::clone(&shared);
        std::thread::spawn(move || guarded(&for_thread, "applier", || panic!("redb asserted")))
            .join()
            .unwrap();
        assert_eq!(waiting.recv_timeout(Duration::from_secs(10)), Ok(false));
        assert!(
            shared.failed.load(Ordering::Acquire),
            "the owner's flag is set"
        );
        let failed = shared.done().failed.clone().map(|e| e.to_string());
        assert!(
            failed
                .as_deref()
                .is_some_and(|e| e.contains("applier thread panicked")),
            "{failed:?}"
        );
    }

    #[test]
    fn coalescing_keeps_the_last_op_per_row_in_key_order() {
        let ops = [
            object(b"k-2", 1),
            Op::Segment {
                key: *b"k-0\0",
                hash: 5,
            },
            object(b"k-1", 1),
            Op::Hint {
                key: b"k-1".to_vec(),
                record: None,
            },
            object(b"k-2", 2),
            Op::Object {
                key: DiskKey::from_slice(b"k-1"),
                record: None,
            },
            Op::Node(vec![1]),
            Op::Node(vec![2]),
        ];
        let got: Vec<Op> = coalesce(ops.iter()).into_iter().cloned().collect();
        assert_eq!(
            got,
            vec![
                Op::Segment {
                    key: *b"k-0\0",
                    hash: 5
                },
                Op::Object {
                    key: DiskKey::from_slice(b"k-1"),
                    record: None
                },
                object(b"k-2", 2),
                // Same key, another table: both stay.
                Op::Hint {
                    key: b"k-1".to_vec(),
                    record: None
                },
                Op::Node(vec![2]),
            ]
        );
    }

    /// A log in an unlinked temporary file whose laps are `restart_bytes` long.
    fn restarting_log(name: &str, restart_bytes: u64) -> Wal {
        let path = std::env::temp_dir().join(format!("cairn-{name}-{}.wal", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap(); // Open still; gone with the test.
        let backend = Box::new(redb::backends::FileBackend::new(file).unwrap());
        let start = Applied { epoch: 0, end: 0 };
        Wal::restart(backend, "test.wal".into(), start, restart_bytes).unwrap()
    }

    /// Logs records of ~1 KiB until the log's end passes `until`.
    fn log_until(wal: &mut Wal, until: u64) {
        let op = Op::Node(vec![7; 1000]);
        while wal.end() < until {
            wal.append(std::iter::once(&op)).unwrap();
        }
    }

    /// Answers the next checkpoint asked for with `answer`, on another thread.
    fn answer_checkpoint(
        rx: Receiver<ToApply>,
        answer: Result<(), StoreError>,
    ) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || match rx.recv() {
            Ok(ToApply::Checkpoint(reply)) => reply.send(answer).unwrap(),
            _ => panic!("no checkpoint asked for"),
        })
    }

    /// A shared state whose redb holds durably what open committed before `wal`.
    fn opened(wal: &Wal) -> Shared {
        let shared = shared();
        shared.done().synced = Some(wal.previous());
        shared
    }

    /// A way to an applier that refuses every checkpoint: a lap that should begin without
    /// one fails instead of waiting forever.
    fn refusing_applier() -> ApplyTx {
        let (tx, rx) = sync_channel(8);
        std::thread::spawn(move || {
            while let Ok(msg) = rx.recv() {
                if let ToApply::Checkpoint(reply) = msg {
                    let _ = reply.send(Err(StoreError::Io("unexpected checkpoint".into())));
                }
            }
        });
        ApplyTx::new(tx, std::thread::current(), Hurrying::default())
    }

    /// A way to an applier that answers the next checkpoint with `answer`; the handle
    /// fails if none was asked for once the way is dropped.
    fn answering_applier(answer: Result<(), StoreError>) -> (ApplyTx, std::thread::JoinHandle<()>) {
        let (tx, rx) = sync_channel(8);
        let apply = ApplyTx::new(tx, std::thread::current(), Hurrying::default());
        (apply, answer_checkpoint(rx, answer))
    }

    /// The current lap's mark, as the applier's synced commit of its last batch records.
    fn into_current_lap(shared: &Shared, wal: &Wal) {
        shared.done().synced = Some(Applied {
            epoch: wal.epoch(),
            end: wal.end(),
        });
    }

    #[test]
    fn a_lap_begins_at_once_when_redb_holds_the_one_before_and_waits_for_a_checkpoint_if_not() {
        let mut wal = restarting_log("laps", 64 << 10);
        let shared = opened(&wal);
        // Lap 1 (lower) is full; redb holds what came before it: the upper lap begins
        // without a checkpoint.
        log_until(&mut wal, 64 << 10);
        assert!(wal.wants_restart());
        next_lap(&shared, &mut wal, &refusing_applier()).unwrap();
        let upper = wal.end();
        assert!(upper >= 64 << 10, "the upper area: {upper}");
        // Lap 2 is full, but redb's durable mark is still from before lap 1: the lower
        // lap would overwrite lap 1, so the log writer waits for a checkpoint.
        log_until(&mut wal, upper + (60 << 10));
        assert!(wal.wants_restart());
        let (apply, applier) = answering_applier(Ok(()));
        next_lap(&shared, &mut wal, &apply).unwrap();
        drop(apply);
        applier.join().unwrap();
        assert!(wal.end() < 8 << 10, "the lower area again: {}", wal.end());
        // The applier's synced commits reach into the current lap: no checkpoint.
        log_until(&mut wal, 16 << 10);
        into_current_lap(&shared, &wal);
        log_until(&mut wal, 64 << 10);
        next_lap(&shared, &mut wal, &refusing_applier()).unwrap();
        assert_eq!(shared.counters.restarts.load(Ordering::Relaxed), 3);
        // A failed checkpoint is the store's failure, not a restart.
        let before = wal.end();
        log_until(&mut wal, before + (60 << 10));
        let (apply, applier) = answering_applier(Err(StoreError::Io("disk".into())));
        let e = next_lap(&shared, &mut wal, &apply);
        drop(apply);
        applier.join().unwrap();
        assert!(matches!(e, Err(StoreError::Io(_))), "{e:?}");
        assert!(wal.end() >= before + (60 << 10), "not restarted");
    }

    #[test]
    fn a_batch_too_large_for_the_lower_lap_goes_to_a_new_upper_lap() {
        let mut wal = restarting_log("bound", 64 << 10);
        let shared = opened(&wal);
        // Lap 1 lower, lap 2 upper, lap 3 lower: bounded by lap 2's start.
        log_until(&mut wal, 64 << 10);
        next_lap(&shared, &mut wal, &refusing_applier()).unwrap();
        let lap_2 = wal.end();
        log_until(&mut wal, lap_2 + 1);
        into_current_lap(&shared, &wal);
        let held = wal.end();
        log_until(&mut wal, held + 1); // redb holds lap 2 only in part.
        next_lap(&shared, &mut wal, &refusing_applier()).unwrap();
        assert_eq!(wal.end(), crate::wal::HEADER_BYTES);
        let big = Op::Node(vec![1; usize::try_from(lap_2).unwrap()]);
        let record = wal.record(std::iter::once(&big)).unwrap();
        assert!(!wal.has_room(record.len()));
        let e = wal.write_record(&record).unwrap_err();
        assert!(
            e.to_string().contains("would cross the previous lap"),
            "{e}"
        );
        // Through the log writer it goes to a new upper lap, which overwrites lap 2:
        // redb's durable mark is in lap 2, so a checkpoint first.
        let write = Write {
            seq: 1,
            ops: vec![big],
        };
        let (apply, applier) = answering_applier(Ok(()));
        log(&shared, &mut wal, &[write], Durability::Fsync, &apply).unwrap();
        drop(apply);
        applier.join().unwrap();
        let at = wal.end() - record.len() as u64;
        assert!(at >= 64 << 10, "the record went to the upper area: {at}");
        assert_eq!(
            wal.previous().end,
            crate::wal::HEADER_BYTES,
            "lap 3 was empty"
        );
    }
}
