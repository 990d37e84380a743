//! Model-based: the same random operations on `RedbStore` and on `MemStore` give the same
//! reads — objects, hints, trees, aae keys, backlogs and metadata — whether the writes are
//! staged, committed, or survived a close and reopen.

use cairn_core::aae::{segment_of, SegmentId};
use cairn_core::{MemStore, NodeMeta, ObjectKey, Store};
use cairn_crdt::{Actor, CounterOp, Op, Replica, SetOp, Timestamp, ValueType};
use cairn_ring::{NodeId, PartitionId};
use cairn_store::{Durability, Options, RedbStore};

use crate::util::{key, opts, value, Rng, TempDir, PARTITIONS};

/// Every read the trait offers, on both stores.
fn compare(rng: &mut Rng, redb: &RedbStore, mem: &MemStore, seed: u64, step: usize) {
    let ctx = format!("seed {seed} step {step}");
    for _ in 0..4 {
        let k = key(rng);
        // A read for update hands over the store's decoded copy and stages nothing after
        // it here: later reads must find the value all the same.
        let found = if rng.chance(30) {
            redb.object_for_update(&k).unwrap()
        } else {
            redb.object(&k).unwrap()
        };
        assert_eq!(found, mem.object(&k).unwrap(), "object {k:?}, {ctx}");
        let owner = NodeId(rng.below(3));
        assert_eq!(
            redb.hint(owner, &k).unwrap(),
            mem.hint(owner, &k).unwrap(),
            "hint, {ctx}"
        );
    }
    for p in PARTITIONS {
        let p = PartitionId(p);
        assert_eq!(
            redb.aae_tree(p).unwrap(),
            mem.aae_tree(p).unwrap(),
            "tree {p:?}, {ctx}"
        );
        let mut segments: Vec<SegmentId> = (0..3).map(|_| segment_of(&key(rng))).collect();
        if rng.chance(20) {
            segments = (0..1024).map(SegmentId).collect();
        }
        let limit = rng.below(6) as usize;
        // A cursor anywhere in the partition, held or not: the buckets' escaping and the
        // keys' lengths must sort on disk as `aae_order` does.
        let after = rng.chance(50).then(|| ObjectKey {
            partition: p,
            ..key(rng)
        });
        assert_eq!(
            redb.aae_keys(p, &segments, after.as_ref(), limit).unwrap(),
            mem.aae_keys(p, &segments, after.as_ref(), limit).unwrap(),
            "aae_keys {segments:?} after {after:?} limit {limit}, {ctx}"
        );
    }
    let owner = NodeId(rng.below(3));
    let after = rng.chance(50).then(|| key(rng));
    let limit = rng.below(8) as usize;
    assert_eq!(
        redb.hints(owner, after.as_ref(), limit).unwrap(),
        mem.hints(owner, after.as_ref(), limit).unwrap(),
        "hints after {after:?} limit {limit}, {ctx}"
    );
    assert_eq!(
        redb.hint_counts().unwrap(),
        mem.hint_counts().unwrap(),
        "counts, {ctx}"
    );
    assert_eq!(
        redb.hint_backlog().unwrap(),
        mem.hint_backlog().unwrap(),
        "backlog, {ctx}"
    );
    assert_eq!(redb.meta().unwrap(), mem.meta().unwrap(), "meta, {ctx}");
}

fn step(rng: &mut Rng, redb: &mut RedbStore, mem: &mut MemStore) {
    let k = key(rng);
    let owner = NodeId(rng.below(3));
    match rng.below(100) {
        0..=24 => {
            let v = value(rng);
            redb.stage_object(k.clone(), v.clone()).unwrap();
            mem.stage_object(k, v).unwrap();
        }
        25..=39 => {
            // What a node does: read for update, change, stage.
            let found = redb.object_for_update(&k).unwrap();
            assert_eq!(found, mem.object(&k).unwrap(), "read for update {k:?}");
            let at = Replica {
                actor: Actor(rng.below(3)),
                now: Timestamp::ZERO,
            };
            let member = format!("m{}", rng.below(20)).into_bytes();
            let v = match found {
                Some(mut v) if v.value_type() == ValueType::Counter => {
                    v.apply(&Op::Counter(CounterOp::Increment(1)), at).unwrap();
                    v
                }
                Some(mut v) if v.value_type() == ValueType::Set => {
                    v.apply(&Op::Set(SetOp::Add(vec![member])), at).unwrap();
                    v
                }
                _ => value(rng),
            };
            redb.stage_object(k.clone(), v.clone()).unwrap();
            mem.stage_object(k, v).unwrap();
        }
        40..=54 => {
            redb.stage_object_removal(&k).unwrap();
            mem.stage_object_removal(&k).unwrap();
        }
        55..=79 => {
            let v = value(rng);
            redb.stage_hint(owner, k.clone(), v.clone()).unwrap();
            mem.stage_hint(owner, k, v).unwrap();
        }
        80..=94 => {
            redb.stage_hint_removal(owner, &k).unwrap();
            mem.stage_hint_removal(owner, &k).unwrap();
        }
        _ => {
            let mut m = NodeMeta {
                generation: rng.below(5),
                ..NodeMeta::default()
            };
            for _ in 0..rng.below(3) {
                m.epochs
                    .insert(PartitionId(rng.below(4) as u16), rng.below(9));
                m.dropped.insert(PartitionId(rng.below(4) as u16));
            }
            redb.stage_meta(m.clone()).unwrap();
            mem.stage_meta(m).unwrap();
        }
    }
}

fn run(seed: u64, steps: usize) {
    let dir = TempDir::new("model");
    let mut rng = Rng::new(seed);
    let mut o = opts(Durability::None);
    o.batch_writes_max = 1 + rng.below(8) as usize;
    // No decoded values kept, a few (evicting all the time), or the default.
    o.warm_bytes = [0, 16 << 10, cairn_store::WARM_BYTES][rng.below(3) as usize];
    let mut redb = RedbStore::open(dir.file(), o.clone()).unwrap();
    let mut mem = MemStore::new();
    let mut staged = 0u64;
    let mut persisted = Vec::new();
    for i in 0..steps {
        step(&mut rng, &mut redb, &mut mem);
        staged += 1;
        // Reads race the writer: some staged writes are committed by now, some not.
        compare(&mut rng, &redb, &mem, seed, i);
        match rng.below(20) {
            0 => {
                redb.flush().unwrap();
                mem.commit();
            }
            1 => {
                redb.close().unwrap();
                mem.commit();
                redb = RedbStore::open(dir.file(), o.clone()).unwrap();
                assert_eq!(
                    redb.recovery().rotated,
                    None,
                    "a clean close keeps the generation"
                );
                staged = 0;
                persisted.clear();
            }
            // Writes held back from the log writer are staged all the same: reads see
            // them, and flush and close send them on.
            2 => redb.hold(),
            3 => redb.release().unwrap(),
            _ => persisted.extend(redb.take_persisted()),
        }
    }
    redb.flush().unwrap();
    persisted.extend(redb.take_persisted());
    assert_eq!(
        persisted.len() as u64,
        staged,
        "every staged write is reported once, seed {seed}"
    );
    assert!(
        persisted.windows(2).all(|w| w[0] < w[1]),
        "in order, seed {seed}"
    );
    let audit = redb.audit().unwrap();
    assert!(
        audit.problems.is_empty(),
        "seed {seed}: {:?}",
        audit.problems
    );
    assert_eq!(
        redb.stats().overlay_entries,
        0,
        "committed writes leave the overlay"
    );
}

#[test]
fn redb_store_reads_like_mem_store() {
    for seed in 1..=12 {
        run(seed, 300);
    }
}

#[test]
fn redb_store_reads_like_mem_store_with_fsync() {
    let dir = TempDir::new("model-fsync");
    let mut rng = Rng::new(99);
    let mut redb = RedbStore::open(dir.file(), opts(Durability::Fsync)).unwrap();
    let mut mem = MemStore::new();
    for i in 0..60 {
        step(&mut rng, &mut redb, &mut mem);
        compare(&mut rng, &redb, &mem, 99, i);
    }
    redb.flush().unwrap();
    assert_eq!(redb.take_persisted().len(), 60);
}

#[test]
fn a_write_after_a_read_and_a_commit_updates_the_tree_from_the_current_state() {
    // The store remembers the state hash of the object it last read, for the write that
    // usually follows. A write must forget it: otherwise the key's next write, once the
    // first has left the overlay, takes the stale hash out of the key's segment.
    for warm_bytes in [0, cairn_store::WARM_BYTES] {
        write_after_read_and_commit(warm_bytes);
    }
}

fn write_after_read_and_commit(warm_bytes: u64) {
    let dir = TempDir::new("read-memo");
    let o = Options {
        warm_bytes,
        ..opts(Durability::None)
    };
    let mut redb = RedbStore::open(dir.file(), o).unwrap();
    let mut mem = MemStore::new();
    let mut rng = Rng::new(5);
    let k = key(&mut rng);
    let write = |redb: &mut RedbStore, mem: &mut MemStore, rng: &mut Rng| {
        let v = value(rng);
        redb.stage_object(k.clone(), v.clone()).unwrap();
        mem.stage_object(k.clone(), v).unwrap();
        redb.flush().unwrap();
        mem.commit();
    };
    write(&mut redb, &mut mem, &mut rng);
    assert_eq!(redb.object(&k).unwrap(), mem.object(&k).unwrap());
    write(&mut redb, &mut mem, &mut rng);
    write(&mut redb, &mut mem, &mut rng);
    assert_eq!(
        redb.aae_tree(k.partition).unwrap(),
        mem.aae_tree(k.partition).unwrap()
    );
    let audit = redb.audit().unwrap();
    assert!(audit.problems.is_empty(), "{:?}", audit.problems);
}

#[test]
fn a_read_after_a_commit_sees_it_not_the_view_an_earlier_read_opened() {
    // Object reads share one read view of redb until the applier commits again. A read
    // made after a write has left the overlay must see the commit that took it out.
    // No decoded values kept, so that reads go to redb and its views.
    let dir = TempDir::new("read-view");
    let o = Options {
        warm_bytes: 0,
        ..opts(Durability::None)
    };
    let mut redb = RedbStore::open(dir.file(), o).unwrap();
    let mut rng = Rng::new(8);
    let k = key(&mut rng);
    for round in 0..4 {
        // The read opens (or reuses) a view; the write then commits past it.
        let before = redb.object(&k).unwrap();
        let v = value(&mut rng);
        redb.stage_object(k.clone(), v.clone()).unwrap();
        redb.flush().unwrap();
        assert_eq!(
            redb.stats().overlay_entries,
            0,
            "the write left the overlay"
        );
        assert_eq!(
            redb.object(&k).unwrap(),
            Some(v),
            "round {round}: read the committed value, not {before:?}"
        );
    }
}

#[test]
fn hint_totals_follow_every_staged_hint_and_survive_a_reopen() {
    // The store keeps hint totals in memory; they must match the hints it holds.
    let dir = TempDir::new("hint-totals");
    let mut redb = RedbStore::open(dir.file(), opts(Durability::None)).unwrap();
    let mut rng = Rng::new(3);
    let owner = NodeId(7);
    let key = |k: &str| ObjectKey {
        partition: PartitionId(1),
        bucket: b"b"[..].into(),
        key: k.as_bytes().into(),
    };
    let (a, b) = (key("a"), key("b"));
    redb.stage_hint(owner, a.clone(), value(&mut rng)).unwrap();
    redb.stage_hint(owner, b.clone(), value(&mut rng)).unwrap();
    assert_eq!(redb.hint_counts().unwrap(), vec![(owner, 2)]);
    assert_eq!(redb.key_hints(&a).unwrap().len(), 1);
    redb.stage_hint_removal(owner, &a).unwrap();
    assert_eq!(redb.hint_counts().unwrap(), vec![(owner, 1)]);
    assert!(redb.key_hints(&a).unwrap().is_empty());
    redb.close().unwrap();
    let mut redb = RedbStore::open(dir.file(), opts(Durability::None)).unwrap();
    assert_eq!(
        redb.hint_counts().unwrap(),
        vec![(owner, 1)],
        "after reopen"
    );
    assert_eq!(redb.hint_backlog().unwrap().count, 1);
    let audit = redb.audit().unwrap();
    assert!(
        audit.problems.is_empty(),
        "stored totals: {:?}",
        audit.problems
    );
    redb.stage_hint_removal(owner, &b).unwrap();
    assert!(
        redb.hint_counts().unwrap().is_empty(),
        "no owner with no hints"
    );
    assert_eq!(redb.hint_backlog().unwrap(), Default::default());
}
