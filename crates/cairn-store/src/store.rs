//! `RedbStore`: the `Store` trait over redb, the overlay and the writer.

use std::cell::RefCell;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::atomic::Ordering;
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cairn_core::aae::{leaf, segment_of, SegmentId, Tree, SEGMENTS};
use cairn_core::{Backlog, NodeMeta, ObjectKey, Store, StoreError, WriteToken};
use cairn_crdt::Value;
use cairn_ring::{NodeId, PartitionId};
use redb::ReadTransaction;

use crate::error::{storage_error, table_error, txn_error};
use crate::format::{self, DiskKey, MetaKey, HINTS, LARGE_OBJECTS, META, OBJECTS};
use crate::open::Recovery;
use crate::overlay::{Overlay, Staged, StagedHint, StagedObject};
use crate::warm::Warm;
use crate::writer::{ApplyTx, Op, Shared, ToApply, Write};

/// Most writes [`RedbStore::hold`] keeps back; the write that reaches it sends them all.
/// A node's turn of up to 256 events stages one or two writes per event, so a turn fits;
/// and it is one log record's worth at the default [`BATCH_WRITES_MAX`](crate::BATCH_WRITES_MAX).
pub const HELD_WRITES_MAX: usize = 1024;

/// A node's store on one redb file. See the crate docs.
///
/// Staging (`stage_*`) happens on the owner's thread and blocks only when the writer's
/// queue is full. Reads run on the owner's thread in redb read transactions, concurrently
/// with the writer's commits.
pub struct RedbStore {
    pub(crate) shared: Arc<Shared>,
    pub(crate) tx: Option<SyncSender<Write>>,
    /// The applier's queue, for [`flush`](Self::flush) to hurry it.
    pub(crate) hurry: Option<ApplyTx>,
    pub(crate) writer: Option<JoinHandle<()>>,
    pub(crate) next_seq: u64,
    pub(crate) file: String,
    pub(crate) recovery: Recovery,
    pub(crate) synced: bool,
    pub(crate) identity: Option<(u64, u64)>,
    /// The state hash [`object`](Store::object) or
    /// [`object_for_update`](Store::object_for_update) last found for a key, so that the
    /// write that usually follows (read, apply, stage) need not look the record up again to
    /// update the key's anti-entropy segment. Cleared by every staged object write, the
    /// only thing that changes an object's committed or staged state.
    pub(crate) last_read: RefCell<Option<LastRead>>,
    /// Every owner's hint totals (count, bytes), staged writes included. This store is
    /// their only writer, so it keeps them here from open on: the write path asks for
    /// them on every write (are there hints of this key to join? is the backlog full?),
    /// and a read transaction per write to learn "no hints" cost ~5% of a node's CPU.
    pub(crate) hint_totals: BTreeMap<[u8; 8], (u64, u64)>,
    /// The `objects` table as of the applier's last commit, reused by object reads until
    /// the next commit (see [`objects`](Self::objects)).
    pub(crate) objects_view: RefCell<Option<ObjectsView>>,
    /// Decoded values of recently staged objects, for their next update (see
    /// `crate::warm`). Every staged object write replaces or removes its key's entry.
    pub(crate) warm: RefCell<Warm>,
    /// Writes staged while holding (see [`hold`](Self::hold)), in staging order, not yet
    /// sent to the log writer.
    pub(crate) held: Vec<Write>,
    /// Whether staged writes are held (between [`hold`](Self::hold) and
    /// [`release`](Self::release)).
    pub(crate) holding: bool,
}

/// A read view of the `objects` and `large_objects` tables and the commit count it was
/// opened at.
pub(crate) struct ObjectsView {
    commits: u64,
    table: ReadOnly,
    large: ReadOnly,
}

type ReadOnly = redb::ReadOnlyTable<&'static [u8], &'static [u8]>;

/// What [`RedbStore::last_read`] remembers: an object key's bytes and its state hash
/// (`None`: no such object).
#[derive(Debug)]
pub(crate) struct LastRead {
    key: DiskKey,
    hash: Option<u64>,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("file", &self.file)
            .field("next_seq", &self.next_seq)
            .finish_non_exhaustive()
    }
}

/// What the writer has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Batches made durable (log records appended and synced).
    pub batches: u64,
    /// Writes in them.
    pub writes: u64,
    /// Time spent making them durable (append and fsync).
    pub commit_time: Duration,
    /// Batches whose append and fsync took at most each of
    /// [`COMMIT_BUCKETS_US`](crate::COMMIT_BUCKETS_US) (cumulative), then all batches
    /// counted there (at most `batches`, which is read apart). With
    /// [`Durability::Fsync`](crate::Durability::Fsync) durable writes wait for this, so
    /// its tail is a floor under the write latency's tail.
    pub commit_buckets: [u64; crate::COMMIT_BUCKETS_US.len() + 1],
    /// Staged entries not yet applied to redb.
    pub overlay_entries: usize,
    /// Decoded values kept for their next update ([`Options::warm_bytes`](crate::Options::warm_bytes)).
    pub warm_values: usize,
    /// Their estimated memory.
    pub warm_bytes: u64,
    /// Writes held back from the log writer now (see [`RedbStore::hold`]).
    pub held_writes: usize,
    /// redb transactions the applier committed; each holds many batches (see
    /// [`APPLY_WAIT`](crate::APPLY_WAIT)).
    pub applies: u64,
    /// Times the write-ahead log started over ([`spread_restart_bytes`](crate::spread_restart_bytes)).
    pub log_restarts: u64,
    /// Time the log writer waited for the checkpoints some of them needed (when the
    /// applier was a whole lap behind); every write on the node waits with it.
    pub log_restart_wait: Duration,
    /// Writes durable in the log and not yet applied to redb: how far the applier trails.
    pub unapplied_writes: u64,
    /// About how many bytes they hold; at
    /// [`UNAPPLIED_BYTES_MAX`](crate::UNAPPLIED_BYTES_MAX) the log writer stops taking
    /// writes until the applier catches up.
    pub unapplied_bytes: u64,
}

impl RedbStore {
    /// The file this store lives in.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// What open found and did: clean or not, a generation rotation, an upgrade.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// Tokens of writes made durable since the last call, in staging order.
    pub fn take_persisted(&self) -> Vec<WriteToken> {
        std::mem::take(&mut self.shared.done().tokens)
    }

    /// Keeps writes staged from now on from the log writer until [`release`](Self::release)
    /// (at most [`HELD_WRITES_MAX`]; the write that reaches it sends them all). A caller that stages
    /// several writes in a row, as the node does for the events of one turn, holds them
    /// so that they reach the log writer together: it wakes once and syncs them in one
    /// commit, where each write sent on its own could wake it and start a commit of its
    /// own. Held writes are staged (reads see them) but not durable, so no token of
    /// theirs is reported before the release. [`flush`](Self::flush) and close send them.
    pub fn hold(&mut self) {
        self.holding = true;
    }

    /// Sends the held writes to the log writer, in staging order, and stops holding. If
    /// the writer has failed they are dropped, their tokens are never reported, and the
    /// failure is returned (as every later stage returns it).
    pub fn release(&mut self) -> Result<(), StoreError> {
        self.holding = false;
        self.send_held()
    }

    /// Like [`take_persisted`](Self::take_persisted), but waits up to `timeout` for at
    /// least one token (or a writer failure, returned as the error). Held writes (see
    /// [`hold`](Self::hold)) are not reported before they are released.
    pub fn wait_persisted(&self, timeout: Duration) -> Result<Vec<WriteToken>, StoreError> {
        let deadline = Instant::now() + timeout;
        let mut done = self.shared.done();
        loop {
            if !done.tokens.is_empty() {
                return Ok(std::mem::take(&mut done.tokens));
            }
            if let Some(e) = &done.failed {
                return Err(e.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(Vec::new());
            }
            done = match self.shared.done_cv.wait_timeout(done, left) {
                Ok((d, _)) => d,
                Err(p) => p.into_inner().0,
            };
        }
    }

    /// Waits until every write staged so far is durable (its token is then waiting in
    /// [`take_persisted`](Self::take_persisted)) and applied to redb (out of the overlay).
    /// Held writes are sent first; a store that was holding goes on holding.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        self.send_held()?;
        let target = self.next_seq;
        // Not under the lock held below: the send may wait for the applier, which takes
        // that lock to report what it applied.
        let applied = self.shared.done().applied;
        if let Some(hurry) = self.hurry.as_ref().filter(|_| applied < target) {
            // An error means the applier is gone, and `done.failed` says why.
            let _ = hurry.urgent(ToApply::Hurry(target));
        }
        let mut done = self.shared.done();
        loop {
            if let Some(e) = &done.failed {
                return Err(e.clone());
            }
            if (done.committed >= target && done.applied >= target) || self.writer.is_none() {
                return Ok(());
            }
            done = self.shared.wait_done(done);
        }
    }

    /// What the writer has done so far.
    pub fn stats(&self) -> Stats {
        let c = &self.shared.counters;
        let (warm_values, warm_bytes) = self.warm.borrow().usage();
        let (unapplied_writes, unapplied_bytes) = {
            let done = self.shared.done();
            let bytes = u64::try_from(done.unapplied_bytes).unwrap_or(u64::MAX);
            (done.committed.saturating_sub(done.applied), bytes)
        };
        Stats {
            batches: c.batches.load(Ordering::Relaxed),
            writes: c.writes.load(Ordering::Relaxed),
            commit_time: Duration::from_nanos(c.commit_ns.load(Ordering::Relaxed)),
            commit_buckets: c.commit_buckets(),
            overlay_entries: self.shared.overlay().len(),
            warm_values,
            warm_bytes,
            held_writes: self.held.len(),
            applies: c.applies.load(Ordering::Relaxed),
            log_restarts: c.restarts.load(Ordering::Relaxed),
            log_restart_wait: Duration::from_nanos(c.restart_wait_ns.load(Ordering::Relaxed)),
            unapplied_writes,
            unapplied_bytes,
        }
    }

    /// Flushes, stops the writer, and records a clean shutdown.
    pub fn close(mut self) -> Result<(), StoreError> {
        self.shutdown()
    }

    // ---- staging ----

    /// Sends write `seq` (already in the overlay) to the writer, or keeps it while
    /// holding; blocks while the writer's queue is full.
    fn stage(&mut self, seq: u64, ops: Vec<Op>) -> Result<WriteToken, StoreError> {
        if self.holding {
            self.held.push(Write { seq, ops });
            if self.held.len() >= HELD_WRITES_MAX {
                self.send_held()?;
            }
            return Ok(WriteToken(seq));
        }
        // Not holding: every way out of holding sent or dropped the held writes.
        debug_assert!(self.held.is_empty());
        let tx = self.tx.as_ref().ok_or_else(|| self.failure())?;
        if tx.send(Write { seq, ops }).is_err() {
            return Err(self.failure());
        }
        Ok(WriteToken(seq))
    }

    /// Sends the held writes to the log writer, in order.
    fn send_held(&mut self) -> Result<(), StoreError> {
        if self.held.is_empty() {
            return Ok(());
        }
        let Some(tx) = self.tx.as_ref() else {
            self.held.clear();
            return Err(self.failure());
        };
        // Drained in place: the vector keeps its capacity for the next turn.
        let sent = self.held.drain(..).try_for_each(|w| tx.send(w));
        // Dropping the drain empties `held` even when a send failed part way.
        sent.map_err(|_| self.failure())
    }

    fn failure(&self) -> StoreError {
        match &self.shared.done().failed {
            Some(e) => e.clone(),
            None => StoreError::Io(format!("{}: the store is closed", self.file)),
        }
    }

    fn check_writable(&self) -> Result<(), StoreError> {
        if self.shared.failed.load(Ordering::Acquire) {
            return Err(self.failure());
        }
        Ok(())
    }

    /// Stages object `key`: `new` is its value with that value's record, or `None` to
    /// remove it.
    fn stage_stored(
        &mut self,
        key: ObjectKey,
        new: Option<(Value, StagedObject, Vec<u8>)>,
    ) -> Result<WriteToken, StoreError> {
        self.check_writable()?;
        self.release_stale_view();
        // An update read its object just before: that read encoded the key and found its
        // state hash, so neither is made again. From here the object's state changes,
        // and what was read of it is stale either way.
        let (k, old) = match self.last_read.get_mut().take() {
            Some(read) if format::is_object_key_of(&read.key, &key) => (read.key, read.hash),
            _ => {
                let k = format::object_key(&key);
                let old = self.current_hash(&k)?;
                (k, old)
            }
        };
        // The on-disk key begins with the segment: read, not hashed again.
        let segment = format::key_segment(&k).unwrap_or_else(|| segment_of(&key));
        let partition = key.partition;
        let seg_key = format::segment_key(key.partition, segment);
        let (value, new, record) = match new {
            Some((value, staged, record)) => (Some(value), Some(staged), Some(record)),
            None => (None, None, None),
        };
        let new_hash = new.as_ref().map(|s| s.hash);
        let mut flip = 0;
        if let Some(h) = old {
            flip ^= leaf(&key, h);
        }
        if let Some(h) = new_hash {
            flip ^= leaf(&key, h);
        }
        // Taken only once nothing can fail before the write is sent: a number that is
        // never sent would leave `flush` waiting for it.
        let seq = self.next_seq + 1;
        let seg = {
            let mut overlay = self.shared.overlay();
            // The partition's segment hashes, staged writes included, stay in memory once
            // built: a write updates one in place instead of reading its row.
            let slot = &mut self.tree(&mut overlay, partition)?[usize::from(segment.0)];
            *slot ^= flip;
            let seg = *slot;
            overlay.objects.insert(k.clone(), Staged { seq, item: new });
            seg
        };
        // Only now, with the write in the overlay: a failure above leaves the key's entry
        // as it was, the key's latest value still.
        let warm = self.warm.get_mut();
        match (value, &new_hash, &record) {
            (Some(value), Some(hash), Some(r)) => warm.put(&k, value, *hash, r.len()),
            _ => warm.remove(&k),
        }
        self.next_seq = seq;
        let ops = vec![
            Op::Object { key: k, record },
            Op::Segment {
                key: seg_key,
                hash: seg,
            },
        ];
        self.stage(seq, ops)
    }

    /// Object `key`: its decoded value if kept (taken out of `warm` when `take`, else
    /// copied), else [`read_object`](Self::read_object).
    fn object_from_warm(&self, key: &ObjectKey, take: bool) -> Result<Option<Value>, StoreError> {
        let k = format::object_key(key);
        // An entry in `warm` is the key's latest value, staged or committed.
        let kept = if take {
            self.warm.borrow_mut().take(&k)
        } else {
            self.warm.borrow().get(&k)
        };
        if let Some((value, hash)) = kept {
            self.remember_read(k, Some(hash));
            return Ok(Some(value));
        }
        self.read_object(k)
    }

    /// Object `k` from the overlay or, if not staged, from disk: a decode of its record.
    fn read_object(&self, k: DiskKey) -> Result<Option<Value>, StoreError> {
        let staged = {
            let overlay = self.shared.overlay();
            overlay.objects.get(&k).map(|e| e.item.clone())
        };
        if let Some(staged) = staged {
            // Decoded after the overlay lock is let go: the applier takes it too.
            let decoded = staged.map(|s| format::decode_object_record(&s.record));
            let found = decoded.transpose()?;
            self.remember_read(k, found.as_ref().map(|(hash, _)| *hash));
            return Ok(found.map(|(_, value)| value));
        }
        // The overlay was checked first: a write that left it is committed, so the view
        // `objects` reads from (opened at that commit or later) holds it.
        let record = self.objects(|v| {
            let got = v.table.get(&k[..]).map_err(storage_error)?;
            got.map(|g| format::decode_object_row(Some(&v.large), &k, g.value()))
                .transpose()
        })?;
        self.remember_read(k, record.as_ref().map(|(hash, _)| *hash));
        Ok(record.map(|(_, value)| value))
    }

    fn remember_read(&self, key: DiskKey, hash: Option<u64>) {
        *self.last_read.borrow_mut() = Some(LastRead { key, hash });
    }

    /// The state hash [`remember_read`](Self::remember_read) kept for `k`, if it was `k`.
    fn remembered_hash(&self, k: &[u8]) -> Option<Option<u64>> {
        let last = self.last_read.borrow();
        last.as_ref().filter(|r| r.key[..] == *k).map(|r| r.hash)
    }

    /// The state hash of object `k`, staged or committed.
    fn current_hash(&self, k: &[u8]) -> Result<Option<u64>, StoreError> {
        // What the read before this write found is current (every staged object write
        // forgets it), and asking it first spares the overlay's lock and lookup.
        if let Some(hash) = self.remembered_hash(k) {
            return Ok(hash);
        }
        let staged = {
            let overlay = self.shared.overlay();
            overlay
                .objects
                .get(k)
                .map(|e| e.item.as_ref().map(|s| s.hash))
        };
        if let Some(hash) = staged {
            return Ok(hash);
        }
        self.objects(|v| {
            let got = v.table.get(k).map_err(storage_error)?;
            got.map(|g| format::object_record_hash(g.value()))
                .transpose()
        })
    }

    /// Every segment hash of `partition`, staged writes included, kept in `overlay` once
    /// built. The first call for a partition makes [`SEGMENTS`] point reads of the
    /// committed segment rows under the overlay lock. Those are all there is: a staged
    /// write builds its partition's tree before it stages anything, under the same lock,
    /// and trees are never dropped, so a partition without one has nothing staged (and
    /// writes replayed from the log at open are committed to redb before the overlay
    /// exists). Every staged write to the partition keeps it current; commits do not
    /// change it (a commit moves a staged hash to disk unchanged).
    fn tree<'a>(
        &self,
        overlay: &'a mut Overlay,
        partition: PartitionId,
    ) -> Result<&'a mut [u64], StoreError> {
        let Overlay { trees, objects, .. } = overlay;
        let tree = match trees.entry(partition) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                debug_assert!(
                    objects.in_partition(partition).next().is_none(),
                    "a tree built from redb while writes to {partition:?} are staged"
                );
                let txn = self.read()?;
                let t = txn.open_table(OBJECTS).map_err(table_error)?;
                let mut built = vec![0u64; SEGMENTS];
                for (s, slot) in (0u16..).zip(built.iter_mut()) {
                    let k = format::segment_key(partition, SegmentId(s));
                    *slot = db_segment(&t, &k)?;
                }
                e.insert(built.into_boxed_slice())
            }
        };
        Ok(tree)
    }

    fn read(&self) -> Result<ReadTransaction, StoreError> {
        self.shared.db.begin_read().map_err(txn_error)
    }

    /// Runs `f` on the `objects` and `large_objects` tables as of the applier's last commit or later. Call it
    /// only after looking in the overlay: a write that was not there is in that commit.
    ///
    /// Beginning a read transaction and opening a table cost about as much as the point
    /// read itself, so one view serves every read until the applier commits again. It
    /// keeps one snapshot alive meanwhile, which holds back the reuse of pages freed after
    /// it, so every staged write lets go of a stale one (`release_stale_view`): a store
    /// that writes without reading (hints) does not pin an old snapshot, and an idle one
    /// pins at most what its last commit freed.
    fn objects<T>(
        &self,
        f: impl FnOnce(&ObjectsView) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        // Read before the snapshot is taken, so the snapshot is at least this new.
        let commits = self.shared.commits.load(Ordering::Acquire);
        let mut view = self.objects_view.borrow_mut();
        if let Some(v) = view.as_ref().filter(|v| v.commits == commits) {
            return f(v);
        }
        // Let go of the old snapshot before taking a new one.
        *view = None;
        let txn = self.read()?;
        let table = txn.open_table(OBJECTS).map_err(table_error)?;
        let large = txn.open_table(LARGE_OBJECTS).map_err(table_error)?;
        f(view.insert(ObjectsView {
            commits,
            table,
            large,
        }))
    }

    /// Drops the read view if the applier has committed since it was opened.
    fn release_stale_view(&mut self) {
        let commits = self.shared.commits.load(Ordering::Acquire);
        let view = self.objects_view.get_mut();
        if view.as_ref().is_some_and(|v| v.commits != commits) {
            *view = None;
        }
    }

    /// A read transaction begun while the overlay is locked, with what `f` takes from the
    /// overlay: nothing leaves the overlay between the two, so together they are one
    /// consistent view.
    fn snapshot<T>(
        &self,
        f: impl FnOnce(&crate::overlay::Overlay) -> T,
    ) -> Result<(ReadTransaction, T), StoreError> {
        let overlay = self.shared.overlay();
        let txn = self.read()?;
        Ok((txn, f(&overlay)))
    }

    /// Hint totals of the owners this node holds hints for, staged included.
    fn totals(&self) -> impl Iterator<Item = ([u8; 8], (u64, u64))> + '_ {
        // Zero counts are dropped as staged and never stored; the filter keeps a file
        // that holds one anyway from listing an owner with no hints.
        self.hint_totals
            .iter()
            .filter(|(_, (count, _))| *count > 0)
            .map(|(o, t)| (*o, *t))
    }

    fn owner_totals(&self, owner: [u8; 8]) -> (u64, u64) {
        self.hint_totals.get(&owner).copied().unwrap_or((0, 0))
    }

    /// The encoded size of a hint, staged or committed.
    fn hint_size(&self, k: &[u8]) -> Result<Option<u64>, StoreError> {
        if let Some(e) = self.shared.overlay().hints.get(k) {
            return Ok(e.item.1.as_ref().map(|h| h.bytes));
        }
        let txn = self.read()?;
        let t = txn.open_table(HINTS).map_err(table_error)?;
        let got = t.get(k).map_err(storage_error)?;
        got.map(|g| Ok(format::hint_record_value(g.value())?.len() as u64))
            .transpose()
    }

    fn stage_hint_entry(
        &mut self,
        owner: NodeId,
        key: ObjectKey,
        new: Option<(StagedHint, Vec<u8>)>,
    ) -> Result<WriteToken, StoreError> {
        self.check_writable()?;
        self.release_stale_view();
        let k = format::hint_key(owner, &key);
        let o = format::owner_key(owner);
        let old = self.hint_size(&k)?;
        let (mut count, mut bytes) = self.owner_totals(o);
        if let Some(b) = old {
            count = count.saturating_sub(1);
            bytes = bytes.saturating_sub(b);
        }
        let (new, record) = new.unzip();
        if let Some(h) = &new {
            count += 1;
            bytes += h.bytes;
        }
        let ops = vec![
            Op::Hint {
                key: k.clone(),
                record,
            },
            Op::Totals {
                owner: o,
                totals: (count, bytes),
            },
        ];
        self.next_seq += 1;
        let seq = self.next_seq;
        {
            let mut overlay = self.shared.overlay();
            overlay.hints.insert(
                k,
                Staged {
                    seq,
                    item: (key, new),
                },
            );
        }
        // Updated before the stage below, whose send (now, or when held writes are
        // sent) fails only once the writer has died: the store is failed then, and
        // nothing stages again.
        if count == 0 {
            self.hint_totals.remove(&o);
        } else {
            self.hint_totals.insert(o, (count, bytes));
        }
        self.stage(seq, ops)
    }
}

/// A committed segment hash: a row of `objects` (absent = 0).
fn db_segment(
    t: &redb::ReadOnlyTable<&'static [u8], &'static [u8]>,
    s: &[u8; 4],
) -> Result<u64, StoreError> {
    let got = t.get(&s[..]).map_err(storage_error)?;
    got.map_or(Ok(0), |g| format::u64_le(g.value(), "segment hash"))
}

fn bound(start: Bound<Vec<u8>>, end: Option<Vec<u8>>) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    (start, end.map_or(Bound::Unbounded, Bound::Excluded))
}

fn as_slices(b: &(Bound<Vec<u8>>, Bound<Vec<u8>>)) -> (Bound<&[u8]>, Bound<&[u8]>) {
    (slice_bound(&b.0), slice_bound(&b.1))
}

fn slice_bound(x: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match x {
        Bound::Included(v) => Bound::Included(v.as_slice()),
        Bound::Excluded(v) => Bound::Excluded(v.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl Store for RedbStore {
    fn object(&self, key: &ObjectKey) -> Result<Option<Value>, StoreError> {
        self.object_from_warm(key, false)
    }

    fn object_for_update(&self, key: &ObjectKey) -> Result<Option<Value>, StoreError> {
        self.object_from_warm(key, true)
    }

    fn stage_object(&mut self, key: ObjectKey, value: Value) -> Result<WriteToken, StoreError> {
        let (hash, record) = format::object_record(&value);
        let staged = StagedObject {
            record: record.clone(),
            hash,
        };
        self.stage_stored(key, Some((value, staged, record)))
    }

    fn stage_object_removal(&mut self, key: &ObjectKey) -> Result<WriteToken, StoreError> {
        self.stage_stored(key.clone(), None)
    }

    fn aae_tree(&self, partition: PartitionId) -> Result<Tree, StoreError> {
        let segments = {
            let mut overlay = self.shared.overlay();
            self.tree(&mut overlay, partition)?.to_vec()
        };
        Tree::from_segments(segments).ok_or_else(|| StoreError::Corrupt("tree size".into()))
    }

    // Disk keys of one partition sort as `aae_order` does: the segment (big-endian), then
    // the escaped bucket and key, whose escaping keeps byte order. So the list is one scan
    // from the cursor through the wanted segments, stopped after `limit` keys.
    fn aae_keys(
        &self,
        partition: PartitionId,
        segments: &[SegmentId],
        after: Option<&ObjectKey>,
        limit: usize,
    ) -> Result<Vec<(ObjectKey, u64)>, StoreError> {
        let wanted: BTreeSet<SegmentId> = segments.iter().copied().collect();
        let after = after.map(format::object_key);
        let past = |k: &[u8]| after.as_ref().is_none_or(|a| k > &a[..]);
        let (txn, mut found) = self.snapshot(|o| {
            o.objects
                .in_partition(partition)
                .filter(|(k, _)| past(k))
                .filter(|(k, _)| format::key_segment(k).is_some_and(|s| wanted.contains(&s)))
                .map(|(k, e)| (DiskKey::from_slice(k), e.item.as_ref().map(|s| s.hash)))
                .collect::<BTreeMap<_, _>>()
        })?;
        let t = txn.open_table(OBJECTS).map_err(table_error)?;
        let first = after.as_deref().and_then(format::key_segment);
        let mut taken = 0;
        'segments: for s in wanted.range(first.unwrap_or(SegmentId(0))..) {
            let lo = format::segment_key(partition, *s);
            let start = match &after {
                Some(a) if Some(*s) == first => Bound::Excluded(&a[..]),
                _ => Bound::Included(&lo[..]),
            };
            for row in t
                .range::<&[u8]>((start, Bound::Unbounded))
                .map_err(storage_error)?
            {
                let (k, v) = row.map_err(storage_error)?;
                if !k.value().starts_with(&lo) {
                    break;
                }
                if taken >= limit {
                    break 'segments;
                }
                if format::is_segment_key(k.value()) {
                    continue; // the segment's hash, stored just before its objects
                }
                // A staged write or removal of the key wins over the stored row.
                if let std::collections::btree_map::Entry::Vacant(e) =
                    found.entry(DiskKey::from_slice(k.value()))
                {
                    e.insert(Some(format::object_record_hash(v.value())?));
                    taken += 1;
                }
            }
        }
        found
            .into_iter()
            .filter_map(|(k, h)| Some((k, h?)))
            .take(limit)
            .map(|(k, h)| Ok((format::decode_object_key(&k)?, h)))
            .collect()
    }

    fn hint(&self, owner: NodeId, key: &ObjectKey) -> Result<Option<Value>, StoreError> {
        let k = format::hint_key(owner, key);
        if let Some(e) = self.shared.overlay().hints.get(&k) {
            return Ok(e.item.1.as_ref().map(|h| h.value.clone()));
        }
        let txn = self.read()?;
        let t = txn.open_table(HINTS).map_err(table_error)?;
        let got = t.get(&k[..]).map_err(storage_error)?;
        got.map(|g| format::decode_hint_record(g.value()))
            .transpose()
    }

    fn stage_hint(
        &mut self,
        owner: NodeId,
        key: ObjectKey,
        value: Value,
    ) -> Result<WriteToken, StoreError> {
        // One encoding serves both the record and the size the hint totals count.
        let (bytes, record) = format::hint_record(&value);
        self.stage_hint_entry(owner, key, Some((StagedHint { value, bytes }, record)))
    }

    // One point read per owner with hints: hints are keyed by owner first, owners are few.
    fn key_hints(&self, key: &ObjectKey) -> Result<Vec<(NodeId, Value)>, StoreError> {
        let mut out = Vec::new();
        for (owner, _) in self.totals() {
            let owner = NodeId(u64::from_be_bytes(owner));
            if let Some(v) = self.hint(owner, key)? {
                out.push((owner, v));
            }
        }
        Ok(out)
    }

    fn hints(
        &self,
        owner: NodeId,
        after: Option<&ObjectKey>,
        limit: usize,
    ) -> Result<Vec<(ObjectKey, Value)>, StoreError> {
        let start = match after {
            Some(a) => Bound::Excluded(format::hint_key(owner, a)),
            None => Bound::Included(owner.0.to_be_bytes().to_vec()),
        };
        let end = owner.0.checked_add(1).map(|n| n.to_be_bytes().to_vec());
        let range = bound(start, end);
        let (txn, staged) = self.snapshot(|o| {
            o.hints
                .range(range.clone())
                .map(|(k, e)| {
                    (
                        k.clone(),
                        e.item
                            .1
                            .as_ref()
                            .map(|h| (e.item.0.clone(), h.value.clone())),
                    )
                })
                .collect::<BTreeMap<_, _>>()
        })?;
        let t = txn.open_table(HINTS).map_err(table_error)?;
        let mut found: BTreeMap<Vec<u8>, (ObjectKey, Value)> = BTreeMap::new();
        for row in t.range::<&[u8]>(as_slices(&range)).map_err(storage_error)? {
            if found.len() >= limit {
                break;
            }
            let (k, v) = row.map_err(storage_error)?;
            if !staged.contains_key(k.value()) {
                let (_, key) = format::decode_hint_key(k.value())?;
                found.insert(
                    k.value().to_vec(),
                    (key, format::decode_hint_record(v.value())?),
                );
            }
        }
        found.extend(staged.into_iter().filter_map(|(k, e)| Some((k, e?))));
        Ok(found.into_values().take(limit).collect())
    }

    fn stage_hint_removal(
        &mut self,
        owner: NodeId,
        key: &ObjectKey,
    ) -> Result<WriteToken, StoreError> {
        self.stage_hint_entry(owner, key.clone(), None)
    }

    fn hint_counts(&self) -> Result<Vec<(NodeId, u64)>, StoreError> {
        Ok(self
            .totals()
            .map(|(o, (count, _))| (NodeId(u64::from_be_bytes(o)), count))
            .collect())
    }

    fn hint_backlog(&self) -> Result<Backlog, StoreError> {
        Ok(self
            .totals()
            .fold(Backlog::default(), |b, (_, (count, bytes))| Backlog {
                count: b.count + count,
                bytes: b.bytes + bytes,
            }))
    }

    fn meta(&self) -> Result<Option<NodeMeta>, StoreError> {
        if let Some(n) = &self.shared.overlay().node {
            return Ok(Some(n.item.clone()));
        }
        let txn = self.read()?;
        let t = txn.open_table(META).map_err(table_error)?;
        let got = t.get(MetaKey::NODE).map_err(storage_error)?;
        got.map(|g| format::decode_node_record(g.value()))
            .transpose()
    }

    fn stage_meta(&mut self, meta: NodeMeta) -> Result<WriteToken, StoreError> {
        self.check_writable()?;
        let record = format::node_record(&meta);
        self.next_seq += 1;
        let seq = self.next_seq;
        self.shared.overlay().node = Some(Staged { seq, item: meta });
        self.stage(seq, vec![Op::Node(record)])
    }
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        // Errors cannot be returned from drop; a failed shutdown leaves the file without
        // its clean marker, which the next open handles.
        let _ = self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use cairn_crdt::ValueType;

    use super::*;
    use crate::Options;

    /// Options that keep no decoded values: every read of a committed object goes to
    /// redb.
    fn cold() -> Options {
        Options {
            warm_bytes: 0,
            ..Options::new(1)
        }
    }

    /// Options whose log is not synced: tests that need thousands of log batches.
    fn unsynced() -> Options {
        Options {
            durability: crate::Durability::None,
            ..Options::new(1)
        }
    }

    #[test]
    fn staging_lets_go_of_a_read_view_the_applier_has_committed_past() {
        let dir = std::env::temp_dir().join(format!("cairn-view-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // No decoded values kept: the read below must go to redb.
        let mut s = RedbStore::open(dir.join("node.redb"), cold()).unwrap();
        let key = ObjectKey {
            partition: PartitionId(0),
            bucket: b"b"[..].into(),
            key: b"k"[..].into(),
        };
        let counter = || Value::empty(ValueType::Counter);
        s.stage_object(key.clone(), counter()).unwrap();
        s.flush().unwrap();
        s.object(&key).unwrap(); // Out of the overlay: read through a view.
        assert!(s.objects_view.borrow().is_some());
        // Hints never read objects, so only staging can notice the view went stale.
        s.stage_hint(NodeId(2), key.clone(), counter()).unwrap();
        assert!(s.objects_view.borrow().is_some(), "still current");
        s.flush().unwrap(); // The applier commits past the view.
        s.stage_hint_removal(NodeId(2), &key).unwrap();
        assert!(s.objects_view.borrow().is_none(), "released, not pinned");
        s.close().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A set of `n` members, the same each time.
    fn set_of(n: usize) -> Value {
        let mut v = Value::empty(ValueType::Set);
        for i in 0..n {
            // Spread out: sorted members that share a prefix encode in fewer bytes.
            let member = format!("{:016x}", (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let add = cairn_crdt::Op::Set(cairn_crdt::SetOp::Add(vec![member.into_bytes()]));
            let at = cairn_crdt::Replica {
                actor: cairn_crdt::Actor(1),
                now: cairn_crdt::Timestamp::ZERO,
            };
            v.apply(&add, at).unwrap();
        }
        v
    }

    /// Key `k`'s rows in `objects` and `large_objects`, as committed.
    fn rows(s: &RedbStore, k: &ObjectKey) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
        let k = format::object_key(k);
        let txn = s.read().unwrap();
        let get = |t: format::Bytes| {
            let t = txn.open_table(t).unwrap();
            let got = t.get(&k[..]).unwrap();
            got.map(|g| g.value().to_vec())
        };
        (get(OBJECTS), get(LARGE_OBJECTS))
    }

    #[test]
    fn a_large_record_is_kept_apart_until_it_shrinks_or_goes() {
        let (dir, mut s) = fresh_store("large", cold());
        let key = ObjectKey {
            partition: PartitionId(3),
            bucket: b"b"[..].into(),
            key: b"k"[..].into(),
        };
        let write = |s: &mut RedbStore, v: Option<Value>| {
            match v {
                Some(v) => s.stage_object(key.clone(), v).unwrap(),
                None => s.stage_object_removal(&key).unwrap(),
            };
            s.flush().unwrap();
            let audit = s.audit().unwrap();
            assert!(audit.problems.is_empty(), "{audit:?}");
            audit.large_objects
        };
        assert_eq!(write(&mut s, Some(set_of(40))), 1);
        let (stub, record) = rows(&s, &key);
        let (stub, record) = (stub.unwrap(), record.unwrap());
        assert!(record.len() > format::LARGE_RECORD_BYTES);
        assert_eq!(
            stub,
            [&[2][..], &record[1..9]].concat(),
            "a stub with the hash"
        );
        assert_eq!(
            s.object(&key).unwrap(),
            Some(set_of(40)),
            "read through the stub"
        );
        assert_eq!(write(&mut s, Some(set_of(1))), 0);
        let (inline, record) = rows(&s, &key);
        assert_eq!(inline.unwrap()[0], 1, "inline again");
        assert_eq!(record, None, "its large record gone");
        assert_eq!(s.object(&key).unwrap(), Some(set_of(1)));
        assert_eq!(write(&mut s, Some(set_of(40))), 1);
        assert_eq!(write(&mut s, None), 0);
        assert_eq!(rows(&s, &key), (None, None), "both rows removed");
        s.close().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_stub_without_its_record_and_a_record_without_its_stub_are_found() {
        let (dir, mut s) = fresh_store("large-damaged", cold());
        let key = |k: &[u8]| ObjectKey {
            partition: PartitionId(3),
            bucket: b"b"[..].into(),
            key: k.into(),
        };
        s.stage_object(key(b"a"), set_of(40)).unwrap();
        s.flush().unwrap();
        let (_, record) = rows(&s, &key(b"a"));
        // A record with no stub: the audit counts one more than the stubs.
        let w = s.shared.db.begin_write().unwrap();
        w.open_table(LARGE_OBJECTS)
            .unwrap()
            .insert(&format::object_key(&key(b"z"))[..], &record.unwrap()[..])
            .unwrap();
        w.commit().unwrap();
        let audit = s.audit().unwrap();
        assert_eq!(audit.problems.len(), 1, "{audit:?}");
        assert!(audit.problems[0].contains("large_objects holds 2 records for 1 stubs"));
        // A stub with no record: reading it is an error, not a missing object.
        let w = s.shared.db.begin_write().unwrap();
        w.open_table(LARGE_OBJECTS)
            .unwrap()
            .remove(&format::object_key(&key(b"a"))[..])
            .unwrap();
        w.commit().unwrap();
        s.shared.commits.fetch_add(1, Ordering::Release); // Let go of the read view.
        let e = s.object(&key(b"a"));
        assert!(matches!(e, Err(StoreError::Corrupt(_))), "{e:?}");
        assert!(matches!(s.audit(), Err(StoreError::Corrupt(_))));
        drop(s);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A store opened with `opts` in a fresh directory named after `name` and this process.
    fn fresh_store(name: &str, opts: Options) -> (std::path::PathBuf, RedbStore) {
        let dir = std::env::temp_dir().join(format!("cairn-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let s = RedbStore::open(dir.join("node.redb"), opts).unwrap();
        (dir, s)
    }

    /// Stages `value` at `key` and waits until it is durable: a log batch of its own.
    fn write_durably(s: &mut RedbStore, key: ObjectKey, value: Value) {
        s.stage_object(key, value).unwrap();
        durable_tokens(s, 1);
    }

    /// The tokens of the next `n` writes made durable, failing if 10 s pass without one.
    fn durable_tokens(s: &RedbStore, n: usize) -> Vec<WriteToken> {
        let mut got = Vec::new();
        while got.len() < n {
            let more = s.wait_persisted(Duration::from_secs(10)).unwrap();
            assert!(
                !more.is_empty(),
                "{} of {n} writes never became durable",
                n - got.len()
            );
            got.extend(more);
        }
        got
    }

    fn counter_key(i: u64) -> ObjectKey {
        ObjectKey {
            partition: PartitionId(3),
            bucket: b"b"[..].into(),
            key: i.to_be_bytes().to_vec().into(),
        }
    }

    /// The log writer keeps reporting writes durable while the applier is stuck in a
    /// commit, for more batches than its queue once held (1,024). On a store of 300,000
    /// keys a commit took 100–500 ms, and a full queue stopped every write on the node
    /// until the commit ended: bursts of 50–150 ms at 8k increments/s (session 31).
    #[test]
    fn writes_stay_durable_while_the_applier_is_stuck_in_a_commit() {
        let (dir, mut s) = fresh_store("stuck-applier", unsynced());
        let counter = || Value::empty(ValueType::Counter);
        // A write transaction open here makes the applier's next commit wait for it.
        let stuck = s.shared.db.begin_write().unwrap();
        // One write opens the applier's window; once the window ends it commits, and
        // waits. Batches sent after that stay in its queue.
        write_durably(&mut s, counter_key(0), counter());
        std::thread::sleep(crate::APPLY_WAIT * 2);
        let batches = 3 * 1024;
        for i in 1..=batches {
            write_durably(&mut s, counter_key(i), counter());
        }
        assert!(batches + 1 < crate::APPLY_QUEUE_BATCHES as u64);
        drop(stuck);
        s.flush().unwrap();
        assert!(s.object(&counter_key(batches)).unwrap().is_some());
        s.close().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A lap of the log ends, and the next begins, while the applier is stuck in a
    /// commit: the next lap overwrites only the lap before the one ending, which redb
    /// holds. Until laps alternated between two areas every restart waited for a
    /// checkpoint of the whole lap, and every write on the node with it (110–580 ms on a
    /// store of 300,000 keys; session 31).
    #[test]
    fn a_new_lap_begins_while_the_applier_is_stuck_in_a_commit() {
        let opts = Options {
            wal_restart_bytes: 64 << 10,
            ..Options::new(1)
        };
        let (dir, mut s) = fresh_store("lap-stuck", opts);
        // A write transaction open here makes the applier's next commit wait for it.
        let stuck = s.shared.db.begin_write().unwrap();
        let mut i = 0;
        while s.stats().log_restarts == 0 {
            assert!(i < 1_000, "the first lap never ended");
            write_durably(&mut s, counter_key(i), set_of(64));
            i += 1;
        }
        // A few more go into the new lap, made durable as the applier still waits.
        for j in i..i + 8 {
            write_durably(&mut s, counter_key(j), set_of(64));
        }
        let st = s.stats();
        assert_eq!(
            (st.log_restarts, st.log_restart_wait),
            (1, Duration::ZERO),
            "{st:?}"
        );
        drop(stuck);
        s.flush().unwrap();
        assert!(s.object(&counter_key(i + 7)).unwrap().is_some());
        s.close().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn log_restarts_are_counted_with_the_time_writes_waited_for_them() {
        let opts = Options {
            wal_restart_bytes: 64 << 10,
            ..unsynced()
        };
        let (dir, mut s) = fresh_store("restarts", opts);
        assert_eq!(s.stats().log_restarts, 0);
        for i in 0..200 {
            write_durably(&mut s, counter_key(i), set_of(64));
        }
        let st = s.stats();
        assert!(st.log_restarts >= 2, "{st:?}");
        assert!(st.log_restart_wait > Duration::ZERO, "{st:?}");
        s.close().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn held_writes_become_durable_only_once_released_in_staging_order() {
        let (dir, mut s) = fresh_store("held", Options::new(1));
        let counter = || Value::empty(ValueType::Counter);
        s.hold();
        let tokens: Vec<WriteToken> = (0..3)
            .map(|i| s.stage_object(counter_key(i), counter()).unwrap())
            .collect();
        assert!(
            s.object(&counter_key(1)).unwrap().is_some(),
            "staged: readable"
        );
        let early = s.wait_persisted(Duration::from_millis(200)).unwrap();
        assert!(early.is_empty(), "held, yet reported durable: {early:?}");
        s.release().unwrap();
        assert_eq!(durable_tokens(&s, tokens.len()), tokens);
        s.close().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reaching_the_bound_sends_every_held_write_on() {
        let (dir, mut s) = fresh_store("held-max", Options::new(1));
        s.hold();
        let n = HELD_WRITES_MAX as u64;
        for i in 0..n {
            assert_eq!(s.held.len() as u64, i, "sent before the bound");
            s.stage_object(counter_key(i), Value::empty(ValueType::Counter))
                .unwrap();
        }
        assert!(
            s.held.is_empty(),
            "the write that reaches the bound sends them all"
        );
        s.stage_object(counter_key(n), Value::empty(ValueType::Counter))
            .unwrap();
        assert_eq!(s.held.len(), 1, "still holding after the bound");
        s.release().unwrap();
        let got = durable_tokens(&s, HELD_WRITES_MAX + 1);
        assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "in staging order");
        s.close().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_release_after_the_writer_is_gone_reports_its_failure_and_drops_them() {
        let (dir, mut s) = fresh_store("held-gone", Options::new(1));
        s.hold();
        s.stage_object(counter_key(1), Value::empty(ValueType::Counter))
            .unwrap();
        drop(s.tx.take()); // As a closed store's: nowhere to send them.
        assert!(s.release().is_err(), "a lost write must not pass silently");
        assert!(s.held.is_empty());
        assert!(s.take_persisted().is_empty(), "never made durable");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_failed_store_refuses_to_stage() {
        let (dir, mut s) = fresh_store("failed-refuses", Options::new(1));
        s.stage_object(counter_key(1), Value::empty(ValueType::Counter))
            .unwrap();
        crate::writer::fail_with(&s.shared, "the disk is gone");
        let e = s.stage_object(counter_key(2), Value::empty(ValueType::Counter));
        assert!(
            matches!(&e, Err(StoreError::Io(m)) if m.contains("the disk is gone")),
            "{e:?}"
        );
        drop(s);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn flush_and_close_send_held_writes() {
        let (dir, mut s) = fresh_store("held-close", Options::new(1));
        let file = dir.join("node.redb");
        s.hold();
        s.stage_object(counter_key(1), Value::empty(ValueType::Counter))
            .unwrap();
        // On another thread: a flush that waited for a held write would never return.
        let (tx, rx) = std::sync::mpsc::channel();
        let flushing = std::thread::spawn(move || {
            let r = s.flush();
            let _ = tx.send(r);
            s
        });
        let flushed = rx.recv_timeout(Duration::from_secs(10));
        assert!(matches!(flushed, Ok(Ok(()))), "flush: {flushed:?}");
        let mut s = flushing.join().unwrap();
        assert_eq!(s.take_persisted().len(), 1);
        // Still holding: this one is sent by the close.
        s.stage_object(counter_key(2), Value::empty(ValueType::Counter))
            .unwrap();
        s.close().unwrap();
        let s = RedbStore::open(&file, Options::new(1)).unwrap();
        assert!(
            s.object(&counter_key(2)).unwrap().is_some(),
            "lost at close"
        );
        assert!(s.recovery().previous_clean, "{:?}", s.recovery());
        s.close().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_write_that_fails_to_stage_leaves_no_decoded_value_behind() {
        let dir = std::env::temp_dir().join(format!("cairn-warm-fail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut s = RedbStore::open(dir.join("node.redb"), Options::new(1)).unwrap();
        let key = ObjectKey {
            partition: PartitionId(5),
            bucket: b"b"[..].into(),
            key: b"k"[..].into(),
        };
        // A damaged segment row of a partition not yet touched: the write's first step
        // that reads it (building the partition's tree) fails.
        let seg = format::segment_key(key.partition, segment_of(&key));
        let w = s.shared.db.begin_write().unwrap();
        w.open_table(OBJECTS)
            .unwrap()
            .insert(&seg[..], &b"bad"[..])
            .unwrap();
        w.commit().unwrap();
        let e = s.stage_object(key.clone(), Value::empty(ValueType::Counter));
        assert!(matches!(e, Err(StoreError::Corrupt(_))), "{e:?}");
        assert_eq!(
            s.object(&key).unwrap(),
            None,
            "the failed write is not read back"
        );
        assert_eq!(s.warm.borrow().usage().0, 0);
        drop(s);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
