//! Unclean shutdowns and generations, format upgrades, group commit and backpressure.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cairn_core::{NodeMeta, Store, WriteToken};
use cairn_crdt::{Value, ValueType};
use cairn_ring::{NodeId, PartitionId};
use cairn_store::{Durability, RedbStore, RotationReason};
use redb::ReadableTable;

use crate::util::{key, opts, value, Rng, TempDir, PARTITIONS};

fn meta(generation: u64) -> NodeMeta {
    NodeMeta {
        generation,
        ..NodeMeta::default()
    }
}

/// A rotated generation: the store may have lost what it reported durable, so the node
/// syncs its partitions before its reads count again.
fn rotated_meta(generation: u64) -> NodeMeta {
    NodeMeta {
        unsynced: true,
        ..meta(generation)
    }
}

/// Stages a generation and some objects, waits until they are reported persisted, then
/// "crashes": the file's bytes as they are now are written back after the store is gone,
/// into the same inode, without the clean marker the close wrote.
fn crash_after_persisting(path: &std::path::Path, durability: Durability) {
    let mut s = RedbStore::open(path, opts(Durability::Fsync)).unwrap();
    s.stage_meta(meta(7)).unwrap();
    s.close().unwrap();
    // The tests' small log would start over (a checkpoint: a redb commit) on its own
    // schedule, possibly while the image below is read, tearing it: no real crash leaves
    // half a commit's pages beside a header that is not yet written. A log long enough
    // for the whole session keeps the store still once `flush` returns.
    let mut o = opts(durability);
    o.wal_restart_bytes = 64 << 20;
    let mut s = RedbStore::open(path, o).unwrap();
    let mut rng = Rng::new(1);
    for _ in 0..50 {
        s.stage_object(key(&mut rng), value(&mut rng)).unwrap();
    }
    s.flush().unwrap();
    assert_eq!(s.take_persisted().len(), 50);
    let image = std::fs::read(path).unwrap();
    s.close().unwrap();
    std::fs::write(path, image).unwrap();
}

#[test]
fn an_fsync_crash_keeps_the_generation() {
    let dir = TempDir::new("fsync-crash");
    crash_after_persisting(&dir.file(), Durability::Fsync);
    let s = RedbStore::open(dir.file(), opts(Durability::Fsync)).unwrap();
    assert!(!s.recovery().previous_clean);
    assert_eq!(s.recovery().rotated, None);
    assert_eq!(s.meta().unwrap(), Some(meta(7)));
}

#[test]
fn an_unsynced_crash_rotates_the_generation_durably() {
    let dir = TempDir::new("none-crash");
    crash_after_persisting(&dir.file(), Durability::None);
    let mut o = opts(Durability::Fsync);
    o.incarnation_nonce = 1234;
    let s = RedbStore::open(dir.file(), o).unwrap();
    let r = s.recovery().rotated.expect("rotated");
    assert_eq!(
        (r.from, r.to, r.reason),
        (7, 1234, RotationReason::UnsyncedCrash)
    );
    assert_eq!(s.meta().unwrap(), Some(rotated_meta(1234)));
    // The rotation was written before open returned: another crash keeps it.
    let image = std::fs::read(dir.file()).unwrap();
    s.close().unwrap();
    std::fs::write(dir.file(), image).unwrap();
    let s = RedbStore::open(dir.file(), opts(Durability::Fsync)).unwrap();
    assert_eq!(
        s.recovery().rotated,
        None,
        "the crashed session synced everything"
    );
    assert_eq!(s.meta().unwrap(), Some(rotated_meta(1234)));
}

#[test]
fn a_crash_that_lost_its_log_rotates() {
    let dir = TempDir::new("log-lost");
    crash_after_persisting(&dir.file(), Durability::Fsync);
    std::fs::remove_file(RedbStore::wal_path(dir.file())).unwrap();
    let s = RedbStore::open(dir.file(), opts(Durability::Fsync)).unwrap();
    let r = s.recovery().rotated.expect("rotated");
    assert_eq!(r.reason, RotationReason::LogLost);
    assert_eq!(s.meta().unwrap(), Some(rotated_meta(r.to)));
    // A log from another copy of the store is no better than none.
    drop(s);
    let other = TempDir::new("log-other");
    crash_after_persisting(&other.file(), Durability::Fsync);
    std::fs::copy(
        RedbStore::wal_path(dir.file()),
        RedbStore::wal_path(other.file()),
    )
    .unwrap();
    let s = RedbStore::open(other.file(), opts(Durability::Fsync)).unwrap();
    assert_eq!(
        s.recovery().rotated.map(|r| r.reason),
        Some(RotationReason::LogLost)
    );
}

#[test]
fn a_cleanly_closed_store_needs_no_log() {
    let dir = TempDir::new("log-clean");
    let mut s = RedbStore::open(dir.file(), opts(Durability::Fsync)).unwrap();
    s.stage_meta(meta(7)).unwrap();
    let k = key(&mut Rng::new(3));
    let v = value(&mut Rng::new(4));
    s.stage_object(k.clone(), v.clone()).unwrap();
    s.close().unwrap();
    std::fs::remove_file(RedbStore::wal_path(dir.file())).unwrap();
    let s = RedbStore::open(dir.file(), opts(Durability::Fsync)).unwrap();
    assert_eq!(s.recovery().rotated, None);
    assert_eq!(s.recovery().replayed, 0);
    assert_eq!(s.meta().unwrap(), Some(meta(7)));
    assert_eq!(s.object(&k).unwrap(), Some(v));
    assert!(
        RedbStore::wal_path(dir.file()).exists(),
        "a new log was made"
    );
}

#[test]
fn a_clean_close_keeps_the_generation_even_without_fsync() {
    let dir = TempDir::new("none-clean");
    let mut s = RedbStore::open(dir.file(), opts(Durability::None)).unwrap();
    s.stage_meta(meta(7)).unwrap();
    s.close().unwrap();
    let s = RedbStore::open(dir.file(), opts(Durability::None)).unwrap();
    assert!(s.recovery().previous_clean);
    assert_eq!(s.recovery().rotated, None);
    assert_eq!(s.meta().unwrap(), Some(meta(7)));
}

#[test]
fn a_copied_or_restored_file_rotates() {
    let dir = TempDir::new("copied");
    let mut s = RedbStore::open(dir.file(), opts(Durability::Fsync)).unwrap();
    s.stage_meta(meta(7)).unwrap();
    s.close().unwrap();
    let copy = dir.path().join("restored.redb");
    std::fs::copy(dir.file(), &copy).unwrap();
    let s = RedbStore::open(&copy, opts(Durability::Fsync)).unwrap();
    let r = s.recovery().rotated.expect("rotated");
    assert_eq!(r.reason, RotationReason::FileReplaced);
    drop(s);
    let s = RedbStore::open(dir.file(), opts(Durability::Fsync)).unwrap();
    assert_eq!(s.recovery().rotated, None, "the original is where it was");
}

#[test]
fn a_new_store_has_no_generation_for_the_node_to_inherit() {
    let dir = TempDir::new("new");
    let s = RedbStore::open(dir.file(), opts(Durability::Fsync)).unwrap();
    assert!(s.recovery().created);
    assert_eq!(s.meta().unwrap(), None);
    assert!(!dir.path().join("node.redb.new").exists());
}

type Bytes<'a> = redb::TableDefinition<'a, &'static [u8], &'static [u8]>;

/// Format 4, built from a format-5 file by hand, from the format's description: every
/// stub in `objects` (first byte 2) replaced by its record from `large_objects`, and that
/// table gone. Panics if there was no stub: the test would not test the move.
fn downgrade_to_format_4(path: &std::path::Path) {
    let db = redb::Database::open(path).unwrap();
    let txn = db.begin_write().unwrap();
    let objects: Bytes<'_> = redb::TableDefinition::new("objects");
    let large: Bytes<'_> = redb::TableDefinition::new("large_objects");
    {
        let mut t = txn.open_table(objects).unwrap();
        let records = rows(&txn.open_table(large).unwrap());
        assert!(!records.is_empty(), "no large records to move back");
        for (k, r) in records {
            let stub = t.insert(&k[..], &r[..]).unwrap().unwrap();
            assert_eq!(stub.value(), [&[2][..], &r[1..9]].concat());
        }
    }
    assert!(txn.delete_table(large).unwrap());
    set_format(&txn, 4);
    txn.commit().unwrap();
}

/// Every row of `t`, as bytes.
fn rows(t: &impl ReadableTable<&'static [u8], &'static [u8]>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let rows = t.iter().unwrap().map(|r| {
        let (k, v) = r.unwrap();
        (k.value().to_vec(), v.value().to_vec())
    });
    rows.collect()
}

fn set_format(txn: &redb::WriteTransaction, format: u32) {
    let meta: redb::TableDefinition<'_, &str, &[u8]> = redb::TableDefinition::new("meta");
    txn.open_table(meta)
        .unwrap()
        .insert("format", &format.to_le_bytes()[..])
        .unwrap();
}

/// Format 2, built from a format-3 file by hand, from the format's description: the
/// segment hashes (4-byte keys `[partition] [segment]` in `objects`) move to their own
/// `aae_segments` table.
fn downgrade_to_format_2(path: &std::path::Path) {
    downgrade_to_format_4(path);
    let db = redb::Database::open(path).unwrap();
    let txn = db.begin_write().unwrap();
    let objects: Bytes<'_> = redb::TableDefinition::new("objects");
    let segments: Bytes<'_> = redb::TableDefinition::new("aae_segments");
    {
        let mut t = txn.open_table(objects).unwrap();
        let mut segment_rows = rows(&t);
        segment_rows.retain(|(k, _)| k.len() == 4);
        assert!(!segment_rows.is_empty());
        let mut seg = txn.open_table(segments).unwrap();
        for (k, v) in segment_rows {
            assert_eq!(v.len(), 8);
            t.remove(&k[..]).unwrap();
            seg.insert(&k[..], &v[..]).unwrap();
        }
    }
    set_format(&txn, 2);
    txn.commit().unwrap();
}

/// Format 1, built from a format-2 file by hand, from the format's description: objects
/// keyed `[partition] [escaped bucket] [00 00] [key]` (format 2's key without the segment
/// bytes 2..4), and an `aae_keys` index `[partition] [segment] [that key]` → state hash.
fn downgrade_to_format_1(path: &std::path::Path) {
    downgrade_to_format_2(path);
    let db = redb::Database::open(path).unwrap();
    let txn = db.begin_write().unwrap();
    let objects: Bytes<'_> = redb::TableDefinition::new("objects");
    let keyed = rows(&txn.open_table(objects).unwrap());
    assert!(!keyed.is_empty());
    assert!(txn.delete_table(objects).unwrap());
    {
        let mut t = txn.open_table(objects).unwrap();
        let mut index = txn
            .open_table::<&[u8], &[u8]>(redb::TableDefinition::new("aae_keys"))
            .unwrap();
        for (k, v) in keyed {
            let plain = [&k[..2], &k[4..]].concat();
            t.insert(&plain[..], &v[..]).unwrap();
            let entry = [&k[..4], &plain[..]].concat();
            index.insert(&entry[..], &v[1..9]).unwrap();
        }
    }
    set_format(&txn, 1);
    txn.commit().unwrap();
}

/// Format 0, built from a format-1 file by removing what format 1 added.
fn downgrade_to_format_0(path: &std::path::Path) {
    downgrade_to_format_1(path);
    let db = redb::Database::open(path).unwrap();
    let txn = db.begin_write().unwrap();
    for t in ["aae_keys", "aae_segments", "hint_totals"] {
        let def: redb::TableDefinition<'_, &[u8], &[u8]> = redb::TableDefinition::new(t);
        assert!(txn.delete_table(def).unwrap());
    }
    set_format(&txn, 0);
    txn.commit().unwrap();
}

/// Writes a store, downgrades it to format `from`, and checks that open upgrades it once
/// and that it then reads as before: objects, AAE trees and keys, hints.
fn upgrade_from(from: u32, downgrade: fn(&std::path::Path)) {
    let dir = TempDir::new("upgrade");
    let mut rng = Rng::new(8);
    let mut s = RedbStore::open(dir.file(), opts(Durability::None)).unwrap();
    let mut keys = Vec::new();
    for i in 0..300 {
        let k = key(&mut rng);
        s.stage_object(k.clone(), value(&mut rng)).unwrap();
        keys.push(k);
        s.stage_hint(NodeId(i % 3), key(&mut rng), value(&mut rng))
            .unwrap();
    }
    let every_segment: Vec<_> = (0..1024).map(cairn_core::aae::SegmentId).collect();
    let read = |s: &RedbStore| {
        let objects: Vec<_> = keys.iter().map(|k| s.object(k).unwrap()).collect();
        let aae: Vec<_> = PARTITIONS
            .iter()
            .map(|&p| {
                let p = PartitionId(p);
                (
                    s.aae_tree(p).unwrap(),
                    s.aae_keys(p, &every_segment, None, usize::MAX).unwrap(),
                )
            })
            .collect();
        (objects, aae, s.hint_backlog().unwrap())
    };
    let before = read(&s);
    s.close().unwrap();
    downgrade(&dir.file());
    let s = RedbStore::open(dir.file(), opts(Durability::None)).unwrap();
    assert_eq!(s.recovery().upgraded_from, Some(from));
    assert!(read(&s) == before);
    let audit = s.audit().unwrap();
    assert!(audit.problems.is_empty(), "{audit:?}");
    assert!(audit.large_objects > 0, "large records moved: {audit:?}");
    drop(s);
    let s = RedbStore::open(dir.file(), opts(Durability::None)).unwrap();
    assert_eq!(s.recovery().upgraded_from, None, "upgraded once");
    assert!(read(&s) == before);
}

/// Format 3, built from a format-4 file: no `wal` meta record and no log file.
fn downgrade_to_format_3(path: &std::path::Path) {
    downgrade_to_format_4(path);
    let db = redb::Database::open(path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut meta = txn
            .open_table(redb::TableDefinition::<&str, &[u8]>::new("meta"))
            .unwrap();
        meta.remove("wal").unwrap();
        meta.insert("format", &3u32.to_le_bytes()[..]).unwrap();
    }
    txn.commit().unwrap();
    std::fs::remove_file(RedbStore::wal_path(path)).unwrap();
}

#[test]
fn format_4_is_upgraded_and_its_large_records_moved() {
    upgrade_from(4, downgrade_to_format_4);
}

/// An upgrade to format 5 cut short leaves large records inline in a format-5 file: they
/// read as before, the file audits clean, and the next write of one moves it.
#[test]
fn large_records_left_inline_by_an_interrupted_upgrade_read_and_move_on_write() {
    let dir = TempDir::new("inline-large");
    let mut rng = Rng::new(9);
    let mut s = RedbStore::open(dir.file(), opts(Durability::None)).unwrap();
    let keys: Vec<_> = (0..20).map(|_| key(&mut rng)).collect();
    for k in &keys {
        s.stage_object(k.clone(), crate::util::large_set(&mut rng))
            .unwrap();
    }
    let before: Vec<_> = keys.iter().map(|k| s.object(k).unwrap()).collect();
    s.close().unwrap();
    downgrade_to_format_4(&dir.file());
    {
        let db = redb::Database::open(dir.file()).unwrap();
        let txn = db.begin_write().unwrap();
        let large: Bytes<'_> = redb::TableDefinition::new("large_objects");
        txn.open_table(large).unwrap();
        set_format(&txn, 5);
        txn.commit().unwrap();
    }
    let mut s = RedbStore::open(dir.file(), opts(Durability::None)).unwrap();
    assert_eq!(s.recovery().upgraded_from, None);
    let after: Vec<_> = keys.iter().map(|k| s.object(k).unwrap()).collect();
    assert_eq!(after, before);
    let audit = s.audit().unwrap();
    assert!(audit.problems.is_empty(), "{audit:?}");
    assert_eq!(audit.large_objects, 0);
    s.stage_object(keys[0].clone(), crate::util::large_set(&mut rng))
        .unwrap();
    s.flush().unwrap();
    let audit = s.audit().unwrap();
    assert!(audit.problems.is_empty(), "{audit:?}");
    assert_eq!(audit.large_objects, 1, "the rewritten record moved");
}

#[test]
fn format_3_is_upgraded_and_gets_a_log() {
    upgrade_from(3, downgrade_to_format_3);
}

#[test]
fn format_0_is_upgraded_and_its_derived_tables_rebuilt() {
    upgrade_from(0, downgrade_to_format_0);
}

#[test]
fn format_2_is_upgraded_its_segment_hashes_moved_into_objects() {
    upgrade_from(2, downgrade_to_format_2);
}

#[test]
fn format_1_is_upgraded_its_objects_rekeyed_and_its_index_dropped() {
    upgrade_from(1, downgrade_to_format_1);
}

/// An upgrade interrupted after its first commit left format 1 and a side table of
/// re-keyed objects; the next open starts over.
#[test]
fn an_interrupted_upgrade_from_format_1_starts_over() {
    upgrade_from(1, |path| {
        downgrade_to_format_1(path);
        let db = redb::Database::open(path).unwrap();
        let txn = db.begin_write().unwrap();
        let side: Bytes<'_> = redb::TableDefinition::new("objects_upgrade");
        txn.open_table(side)
            .unwrap()
            .insert(&b"stale"[..], &b"junk"[..])
            .unwrap();
        txn.commit().unwrap();
    });
}

#[test]
fn a_newer_format_is_refused() {
    let dir = TempDir::new("newer");
    RedbStore::open(dir.file(), opts(Durability::None))
        .unwrap()
        .close()
        .unwrap();
    {
        let db = redb::Database::open(dir.file()).unwrap();
        let txn = db.begin_write().unwrap();
        let meta: redb::TableDefinition<'_, &str, &[u8]> = redb::TableDefinition::new("meta");
        txn.open_table(meta)
            .unwrap()
            .insert("format", &99u32.to_le_bytes()[..])
            .unwrap();
        txn.commit().unwrap();
    }
    let e = RedbStore::open(dir.file(), opts(Durability::None)).unwrap_err();
    assert!(format!("{e}").contains("newer cairn binary"), "{e}");
}

#[test]
fn group_commit_shares_fsyncs_and_wakes_the_driver() {
    let dir = TempDir::new("group");
    let woken = Arc::new(AtomicU64::new(0));
    let mut o = opts(Durability::Fsync);
    let w = Arc::clone(&woken);
    o.on_persisted = Some(Arc::new(move || {
        w.fetch_add(1, Ordering::Relaxed);
    }));
    let mut s = RedbStore::open(dir.file(), o).unwrap();
    let mut rng = Rng::new(2);
    let mut tokens = Vec::new();
    for _ in 0..2000 {
        tokens.push(s.stage_object(key(&mut rng), value(&mut rng)).unwrap());
    }
    let mut got = Vec::new();
    while got.len() < tokens.len() {
        got.extend(s.wait_persisted(Duration::from_secs(10)).unwrap());
    }
    assert_eq!(got, tokens, "every token, once, in order");
    let stats = s.stats();
    assert!(
        stats.batches < 2000 / 4,
        "{stats:?}: writes did not share commits"
    );
    assert!(woken.load(Ordering::Relaxed) >= stats.batches.min(1));
    s.flush().unwrap();
    assert_eq!(
        s.stats().overlay_entries,
        0,
        "applied writes leave the overlay"
    );
}

/// Waits until the store reports `token` durable (it is reported once).
fn until_durable(s: &mut RedbStore, token: WriteToken) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !s
        .wait_persisted(Duration::from_secs(10))
        .unwrap()
        .contains(&token)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "write {token:?} never reported durable"
        );
    }
}

#[test]
fn the_appliers_backlog_is_reported_until_it_catches_up() {
    let dir = TempDir::new("backlog");
    let mut s = RedbStore::open(dir.file(), opts(Durability::Fsync)).unwrap();
    let mut rng = Rng::new(9);
    // A write durable in the log waits for the applier's window to end (`APPLY_WAIT`),
    // so the backlog shows it right after it is reported durable, save when the window
    // happened to end in between. The log writer reports a batch durable a moment before
    // it counts the batch's bytes, so a look in between sees writes and no bytes yet.
    let mut seen = None;
    for _ in 0..200 {
        let token = s.stage_object(key(&mut rng), value(&mut rng)).unwrap();
        until_durable(&mut s, token);
        let stats = s.stats();
        if stats.unapplied_writes > 0 && stats.unapplied_bytes > 0 {
            seen = Some(stats);
            break;
        }
    }
    let stats = seen.expect("no durable write was ever reported waiting for the applier");
    assert!(stats.unapplied_writes <= 200, "{stats:?}");
    s.flush().unwrap();
    let stats = s.stats();
    assert_eq!(
        (stats.unapplied_writes, stats.unapplied_bytes),
        (0, 0),
        "{stats:?}"
    );
}

#[test]
fn the_applier_puts_many_log_batches_in_one_redb_transaction() {
    let dir = TempDir::new("applies");
    let mut o = opts(Durability::Fsync);
    o.wal_restart_bytes = cairn_store::WAL_RESTART_BYTES; // no log restarts (checkpoints)
    let mut s = RedbStore::open(dir.file(), o).unwrap();
    let mut rng = Rng::new(5);
    let started = std::time::Instant::now();
    for _ in 0..40 {
        // One write at a time, each durable before the next (one log batch each), and
        // spread out in time as a node's writes are.
        let token = s.stage_object(key(&mut rng), value(&mut rng)).unwrap();
        until_durable(&mut s, token);
        std::thread::sleep(Duration::from_millis(5));
    }
    let windows = started.elapsed().as_millis() / cairn_store::APPLY_WAIT.as_millis();
    s.flush().unwrap();
    let stats = s.stats();
    assert!(stats.batches >= 40, "{stats:?}");
    // One commit per window the loop spanned, one for the flush, one spare: however slow
    // the disk, never one per batch.
    let most = u64::try_from(windows).unwrap() + 2;
    assert!(
        stats.applies <= most && stats.applies * 2 <= stats.batches,
        "{stats:?}, at most {most}: the applier committed about once per log batch"
    );
}

#[test]
fn batches_that_arrive_during_the_appliers_window_are_applied_at_its_end() {
    // Two writes reported durable well inside one window go into one redb commit at the
    // window's end. (An applier that looked at its deadline before its queue left the
    // second to the next window: two commits, and a write in the overlay for up to two
    // windows.)
    let dir = TempDir::new("window");
    let mut s = RedbStore::open(dir.file(), opts(Durability::Fsync)).unwrap();
    let mut rng = Rng::new(8);
    let before = s.stats().applies;
    for _ in 0..2 {
        s.stage_object(key(&mut rng), value(&mut rng)).unwrap();
        let persisted = s.wait_persisted(Duration::from_secs(10)).unwrap();
        assert_eq!(persisted.len(), 1);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while s.stats().overlay_entries > 0 {
        assert!(std::time::Instant::now() < deadline, "never applied");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(s.stats().applies - before, 1, "{:?}", s.stats());
}

#[test]
fn a_flush_hurries_the_applier_instead_of_waiting_out_its_gathering() {
    let dir = TempDir::new("hurry");
    let mut s = RedbStore::open(dir.file(), opts(Durability::Fsync)).unwrap();
    let mut rng = Rng::new(6);
    let mut took = Vec::new();
    for _ in 0..31 {
        s.stage_object(key(&mut rng), value(&mut rng)).unwrap();
        let started = std::time::Instant::now();
        s.flush().unwrap();
        took.push(started.elapsed());
        assert_eq!(s.stats().overlay_entries, 0, "a flush applies");
    }
    // Waiting out the window takes about `APPLY_WAIT` per flush; a flush that hurries
    // takes a log fsync and a redb commit. The median against half the window is loose.
    took.sort();
    let median = took[took.len() / 2];
    assert!(
        median < cairn_store::APPLY_WAIT / 2,
        "median flush {median:?}, all {took:?}"
    );
}

#[test]
fn a_full_queue_blocks_the_stager_until_the_writer_catches_up() {
    let dir = TempDir::new("queue");
    let mut o = opts(Durability::None);
    o.queue_writes_max = 1;
    o.batch_writes_max = 2;
    let mut s = RedbStore::open(dir.file(), o).unwrap();
    let k = key(&mut Rng::new(4));
    for i in 0..300 {
        let mut v = Value::empty(ValueType::Counter);
        v.apply(
            &cairn_crdt::Op::Counter(cairn_crdt::CounterOp::Increment(i)),
            cairn_crdt::Replica {
                actor: cairn_crdt::Actor(1),
                now: cairn_crdt::Timestamp::default(),
            },
        )
        .unwrap();
        s.stage_object(k.clone(), v.clone()).unwrap();
        assert_eq!(
            s.object(&k).unwrap(),
            Some(v),
            "reads see the latest staged write"
        );
    }
    s.flush().unwrap();
    assert_eq!(s.take_persisted().len(), 300);
}
