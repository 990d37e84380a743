//! The staged layer: writes handed to the writer thread but not yet applied to redb.
//!
//! Reads look here before redb (after the owner's decoded values of recent writes,
//! `crate::warm`), so a node reads its own writes before they are durable. Each
//! entry remembers the sequence number of the last write that set it; once the applier
//! has committed that write to redb, it drops the entry (a later write to the same key
//! keeps it). The overlay therefore holds the writes of about one applier window, and at
//! most what `UNAPPLIED_BYTES_MAX` lets wait for the applier plus the writer's queue.
//!
//! Objects are in hash maps, one per partition, not in a B-tree: every write looks its
//! key up here twice (its old hash, then the insert) and the applier twice more
//! (`forget`), and a window holds up to tens of thousands of keys, so a B-tree lookup is
//! a dozen key comparisons, each a pointer to a cold key. Anti-entropy, the one reader
//! of a range (`aae_keys`: one partition's keys in some segments), filters its
//! partition's map. (Profiled on one node taking batched counter increments, staging
//! plus `forget` fell from ~21% to ~14% of its CPU; throughput moved less than the
//! machine's noise.)

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};

use cairn_core::{NodeMeta, ObjectKey};
use cairn_crdt::Value;
use cairn_ring::PartitionId;
use rustc_hash::FxHashMap;

use crate::format::{self, DiskKey, KeyedHash};
use crate::writer::Op;

/// A staged entry and the write that set it.
#[derive(Clone, Debug)]
pub(crate) struct Staged<T> {
    pub(crate) seq: u64,
    pub(crate) item: T,
}

/// A staged object: `None` in [`Overlay::objects`] is a staged removal.
///
/// Kept as its record (the bytes it will have on disk), not decoded: the owner keeps the
/// decoded value of a recent write itself (`crate::warm`), so a read seldom needs this
/// copy, and the applier, which drops it under the overlay lock once committed, frees one
/// buffer instead of a whole value (for a set, an allocation per member).
#[derive(Clone, Debug)]
pub(crate) struct StagedObject {
    pub(crate) record: Vec<u8>,
    pub(crate) hash: u64,
}

/// A staged hint and its encoded size.
#[derive(Clone, Debug)]
pub(crate) struct StagedHint {
    pub(crate) value: Value,
    pub(crate) bytes: u64,
}

/// A staged object write: the object's new state. Its [`ObjectKey`] is not kept: the
/// on-disk key the entry is filed under decodes to it (`format::decode_object_key`), and
/// only anti-entropy's key listing needs it. Keeping it cost each write two more
/// allocations, freed later on the applier's thread.
pub(crate) type ObjectWrite = Option<StagedObject>;

/// A partition map whose capacity is past this, and eight times its length, is shrunk
/// once the applier has committed: a burst (a handoff, a lagging applier) would
/// otherwise keep its high-water mark of memory until restart.
const SHRINK_ABOVE: usize = 4096;

/// Staged objects: per partition, keyed by the bytes the object's key has on disk
/// (`[partition] [segment] ...`, see `format::object_key`).
#[derive(Debug, Default)]
pub(crate) struct StagedObjects {
    /// Partition ids are bounded by the ring's size, so the outer map hashes them with
    /// a fast unkeyed hash; keys within are a client's bytes, hashed with a keyed one
    /// (foldhash, seeded at random, rather than SipHash: ARCHITECTURE.md, "Keys longer than
    /// a short bucket", has the measurement).
    partitions: FxHashMap<u16, HashMap<DiskKey, Staged<ObjectWrite>, KeyedHash>>,
}

impl StagedObjects {
    /// The staged write of the object whose on-disk key is `k`.
    pub(crate) fn get(&self, k: &[u8]) -> Option<&Staged<ObjectWrite>> {
        self.partitions.get(&format::key_partition(k))?.get(k)
    }

    pub(crate) fn insert(&mut self, k: DiskKey, write: Staged<ObjectWrite>) {
        let p = format::key_partition(&k);
        self.partitions.entry(p).or_default().insert(k, write);
    }

    /// The staged writes of `partition`, in no order, with their on-disk keys.
    pub(crate) fn in_partition(
        &self,
        partition: PartitionId,
    ) -> impl Iterator<Item = (&[u8], &Staged<ObjectWrite>)> {
        let map = self.partitions.get(&partition.0);
        map.into_iter().flatten().map(|(k, e)| (k.as_slice(), e))
    }

    /// Drops the entry for `k` if the write that set it is at or before `committed`.
    fn forget(&mut self, k: &[u8], committed: u64) {
        let Entry::Occupied(mut part) = self.partitions.entry(format::key_partition(k)) else {
            return;
        };
        // The second lookup finds the entry in cache.
        if part.get().get(k).is_some_and(|s| s.seq <= committed) {
            part.get_mut().remove(k);
            if part.get().is_empty() {
                part.remove();
            }
        }
    }

    /// Gives back the memory of partition maps mostly emptied by the applier.
    fn trim(&mut self) {
        for map in self.partitions.values_mut() {
            if map.capacity() > SHRINK_ABOVE && map.len() < map.capacity() / 8 {
                map.shrink_to(map.len() * 2);
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.partitions.values().map(HashMap::len).sum()
    }
}

/// Every staged, uncommitted write, keyed by the bytes it will have on disk.
///
/// Segment hashes are not staged here: a write's segment hash lives in its partition's
/// tree (`trees`), which every write to the partition builds first, so no staged segment
/// hash can belong to a partition without one.
#[derive(Debug, Default)]
pub(crate) struct Overlay {
    pub(crate) objects: StagedObjects,
    pub(crate) hints: BTreeMap<Vec<u8>, Staged<(ObjectKey, Option<StagedHint>)>>,
    pub(crate) node: Option<Staged<NodeMeta>>,
    /// Every segment hash of the partitions written to or asked for, staged writes
    /// included: `aae_tree` answers from here and a write updates its segment here. Built
    /// from the committed rows alone when a partition is first needed: every staged write
    /// builds its partition's tree before it stages anything, under this lock, and trees
    /// are never dropped, so a partition without one has nothing staged (writes replayed
    /// from the log at open are committed to redb before the overlay exists). Then set by
    /// every staged write to the partition. Commits do not change it (a commit moves a
    /// staged hash to disk unchanged), so `forget` leaves it alone.
    pub(crate) trees: FxHashMap<PartitionId, Box<[u64]>>,
}

impl Overlay {
    /// Drops what a committed batch made durable: entries last set by a write at or before
    /// `committed` (sequence numbers only grow).
    pub(crate) fn forget(&mut self, ops: &[Op], committed: u64) {
        fn drop_if<K: Ord, T>(map: &mut BTreeMap<K, Staged<T>>, k: &K, committed: u64) {
            if map.get(k).is_some_and(|s| s.seq <= committed) {
                map.remove(k);
            }
        }
        for op in ops {
            match op {
                Op::Object { key, .. } => self.objects.forget(key, committed),
                Op::Hint { key, .. } => drop_if(&mut self.hints, key, committed),
                // Segment hashes live in `trees`; hint totals in the store itself
                // (`RedbStore::hint_totals`).
                Op::Segment { .. } | Op::Totals { .. } => {}
                Op::Node(_) => {
                    if self.node.as_ref().is_some_and(|s| s.seq <= committed) {
                        self.node = None;
                    }
                }
            }
        }
    }

    /// Gives back memory the applier's `forget`s left unused (see [`SHRINK_ABOVE`]).
    pub(crate) fn trim(&mut self) {
        self.objects.trim();
    }

    /// Staged entries in total (for tests and stats).
    pub(crate) fn len(&self) -> usize {
        self.objects.len() + self.hints.len() + usize::from(self.node.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(partition: u16, i: usize) -> (DiskKey, ObjectKey) {
        let key = ObjectKey {
            partition: PartitionId(partition),
            bucket: b"b".as_slice().into(),
            key: format!("k{i}").into_bytes().into(),
        };
        (format::object_key(&key), key)
    }

    fn stage(objects: &mut StagedObjects, partition: u16, i: usize, seq: u64) -> DiskKey {
        let (k, _) = object(partition, i);
        objects.insert(k.clone(), Staged { seq, item: None });
        k
    }

    #[test]
    fn a_key_is_found_in_its_own_partition_only() {
        let mut objects = StagedObjects::default();
        let k = stage(&mut objects, 256, 1, 1);
        assert!(objects.get(&k).is_some());
        // The same bucket and key in partitions that share one byte of 256's prefix.
        for other in [0, 1, 257, 4095] {
            assert!(objects.get(&object(other, 1).0).is_none(), "{other}");
            assert_eq!(objects.in_partition(PartitionId(other)).count(), 0);
        }
        let found: Vec<_> = objects.in_partition(PartitionId(256)).collect();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, k.as_slice());
        assert_eq!(format::key_partition(&k), 256);
        assert!(objects.get(&[]).is_none() && objects.get(&[1]).is_none());
    }

    #[test]
    fn forget_keeps_entries_set_after_the_commit_and_drops_empty_partitions() {
        let mut objects = StagedObjects::default();
        let a = stage(&mut objects, 3, 1, 1);
        let b = stage(&mut objects, 3, 2, 2);
        stage(&mut objects, 3, 2, 5); // b again, after the commit below
        objects.forget(&a, 2);
        objects.forget(&b, 2);
        assert!(objects.get(&a).is_none());
        assert_eq!(objects.get(&b).map(|s| s.seq), Some(5));
        objects.forget(&b, 5);
        assert_eq!(objects.len(), 0);
        assert!(
            objects.partitions.is_empty(),
            "an emptied partition's map is dropped"
        );
    }

    #[test]
    fn trim_gives_back_what_a_burst_left_unused() {
        let mut objects = StagedObjects::default();
        let keys: Vec<_> = (0..20_000).map(|i| stage(&mut objects, 7, i, 1)).collect();
        stage(&mut objects, 7, 0, 2); // keeps the partition's map alive
        for k in &keys {
            objects.forget(k, 1);
        }
        let map = |o: &StagedObjects| o.partitions.get(&7).map_or(0, HashMap::capacity);
        assert!(map(&objects) >= 20_000);
        objects.trim();
        assert!(map(&objects) <= SHRINK_ABOVE, "capacity {}", map(&objects));
        assert_eq!(objects.len(), 1);
    }
}
