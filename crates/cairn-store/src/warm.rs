//! Decoded values of recently staged objects, kept on the owner's thread.
//!
//! An update reads its object, changes it and stages it whole. Read from disk, the value
//! is decoded (for a set: one allocation per member); read from the overlay, it is
//! cloned; and the old value is freed again when the applier drops it from the overlay.
//! For a set of a hundred members that is about as much CPU as the rest of the write.
//!
//! So the owner keeps the decoded value of each write here, and the overlay keeps only its
//! record. The key's next update takes the value back out of this map without a copy or a
//! decode ([`Warm::take`]), changes it in place and stages it again, which puts it back.
//!
//! **A take leaves its slot.** The update that took a value puts it back a moment later,
//! so `take` empties the entry rather than removing it, and `put` refills the slot the
//! last take left without looking the key up again. Removing and re-inserting cost a
//! second hash probe, a copy of the key and a move of the map's last entry into the hole
//! (session 25, one node batched: `put` fell from 1.7% to 0.4% of the I/O thread's
//! samples; `take`, ~10%, is its lookup's cache misses either way, and throughput moved
//! within the noise). An empty slot reads as no entry, and it still counts its key and
//! overhead against the bound, so slots that are never refilled (a write that failed
//! after its read) are evicted like any other entry.
//!
//! **Always current.** The store's owner is the only writer of objects, and every staged
//! object write replaces or removes the key's entry (`RedbStore::stage_stored`). The
//! applier moves values to disk unchanged. So an entry is the key's latest value, staged
//! or committed, and a read may answer from it before looking anywhere else.
//!
//! **Bounded** by an estimate of the decoded size ([`cost`]), at most
//! [`Options::warm_bytes`](crate::Options::warm_bytes). Past it, entries are evicted at
//! random: O(1), and no worse than LRU for the uniform and zipfian key choices this cache
//! serves (a hot key is written again, and so put back, soon after an eviction).

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

use cairn_crdt::Value;
use indexmap::IndexMap;

use crate::format::{DiskKey, KeyedHash};

/// Decoded bytes estimated per byte of a record, for values other than sets: a map's
/// fields or a register's bytes are close to their encoding, and this leaves room.
const DECODED_PER_RECORD_BYTE: u64 = 8;

/// Decoded bytes estimated per set member besides its own bytes: its boxed bytes'
/// allocation, its dot set and its share of a B-tree node. A member can encode in ~4
/// bytes (a shared prefix, one new byte, a one-byte dot code), so a set is estimated from
/// its members, not its record.
const DECODED_PER_SET_MEMBER: u64 = 96;

/// Estimated fixed cost of an entry besides its key: the map's slot and the value's head.
const ENTRY_OVERHEAD_BYTES: u64 = 128;

/// An entry may take at most this fraction (1/N) of the budget: a value larger than that
/// would evict many others for one key.
const ENTRY_SHARE_MAX: u64 = 8;

/// Most entries a cache holds, whatever its budget. Its map is allocated once, for this
/// many or for as many as the budget admits if fewer, and never grows (see [`Warm::new`]).
const ENTRIES_MAX: u64 = 1 << 20;

/// The estimated memory of `value`, whose record is `record_len` bytes long, kept under a
/// key of `key_len` bytes.
pub(crate) fn cost(value: &Value, record_len: usize, key_len: usize) -> u64 {
    let record = record_len as u64;
    let decoded = match value {
        // Member bytes are at most the record's; the rest is per member.
        Value::Set(s) => (s.len() as u64)
            .saturating_mul(DECODED_PER_SET_MEMBER)
            .saturating_add(record),
        _ => record.saturating_mul(DECODED_PER_RECORD_BYTE),
    };
    decoded
        .saturating_add(key_len as u64)
        .saturating_add(ENTRY_OVERHEAD_BYTES)
}

struct Entry {
    /// `None` once taken, until the update that took it puts it back.
    value: Option<Value>,
    hash: u64,
    cost: u64,
}

/// See the module docs.
pub(crate) struct Warm {
    entries: IndexMap<DiskKey, Entry, KeyedHash>,
    /// Entries holding a value (the others were taken).
    kept: usize,
    /// Where the last [`Warm::take`] left its slot, for the `put` that follows. Checked
    /// against the key before use: an eviction in between may move entries.
    taken: Option<usize>,
    /// Sum of the entries' costs.
    bytes: u64,
    max: u64,
    /// Most entries: the map's first capacity, never exceeded.
    entries_max: usize,
    /// xorshift64 state for the eviction choice (never 0).
    rng: u64,
}

impl Warm {
    /// An empty cache of at most `max` estimated bytes (0 keeps nothing).
    ///
    /// The map is allocated here at its largest. Grown on demand, it doubled on the
    /// owner's thread: a node whose cache held ~100,000 register values copied tens of
    /// MB and faulted in fresh pages in the middle of serving, and every request waited
    /// (session 30: a 356 ms burst of requests over 20 ms, `clear_page_erms` and
    /// `RawVec::finish_grow` on the I/O thread). Untouched, the reservation costs
    /// address space, not memory.
    pub(crate) fn new(max: u64) -> Self {
        // Every entry costs at least its overhead, so the budget admits no more.
        let entries_max =
            usize::try_from((max / ENTRY_OVERHEAD_BYTES).min(ENTRIES_MAX)).unwrap_or(0);
        Self::with_limits(max, entries_max)
    }

    /// An empty cache of at most `max` estimated bytes and `entries_max` entries. The
    /// entry cap binds only for budgets above `ENTRIES_MAX` × `ENTRY_OVERHEAD_BYTES`
    /// (128 MiB); below, the bytes run out first.
    fn with_limits(max: u64, entries_max: usize) -> Self {
        Warm {
            entries: IndexMap::with_capacity_and_hasher(entries_max, KeyedHash::default()),
            entries_max,
            kept: 0,
            taken: None,
            bytes: 0,
            max,
            rng: RandomState::new().hash_one(0x5eed_u64) | 1,
        }
    }

    /// A copy of the latest value of object `k` and its state hash, if kept.
    pub(crate) fn get(&self, k: &[u8]) -> Option<(Value, u64)> {
        let e = self.entries.get(k)?;
        Some((e.value.clone()?, e.hash))
    }

    /// The latest value of object `k` and its state hash, if kept, leaving its slot
    /// empty: the caller stages its change next, whose `put` refills it.
    pub(crate) fn take(&mut self, k: &[u8]) -> Option<(Value, u64)> {
        let (i, _, e) = self.entries.get_full_mut(k)?;
        self.taken = Some(i);
        let value = e.value.take()?;
        // The empty slot keeps the share of its key and overhead.
        let keep = empty_cost(k.len()).min(e.cost);
        self.bytes -= e.cost - keep;
        e.cost = keep;
        self.kept -= 1;
        Some((value, e.hash))
    }

    /// Keeps `value` (state hash `hash`, record `record_len` bytes) as object `k`'s latest.
    pub(crate) fn put(&mut self, k: &DiskKey, value: Value, hash: u64, record_len: usize) {
        let cost = cost(&value, record_len, k.len());
        if cost > self.max / ENTRY_SHARE_MAX {
            self.remove(k);
            return;
        }
        // The key's old entry, if any, still counts here, so this may evict a little
        // more than it must; its cost is returned below.
        while self.bytes.saturating_add(cost) > self.max && !self.entries.is_empty() {
            self.evict_one();
        }
        // Only a new key needs a slot; the budget above normally makes room first.
        while self.entries.len() >= self.entries_max && !self.entries.contains_key(&k[..]) {
            if self.entries.is_empty() {
                return;
            }
            self.evict_one();
        }
        let entry = Entry {
            value: Some(value),
            hash,
            cost,
        };
        self.bytes += cost;
        self.kept += 1;
        let slot = self
            .taken
            .take()
            .and_then(|i| self.entries.get_index_mut(i));
        let old = match slot {
            // The slot an update's take left: no second probe of the map.
            Some((key, e)) if key == k => Some(std::mem::replace(e, entry)),
            _ => self.entries.insert(k.clone(), entry),
        };
        if let Some(old) = old {
            self.forget(&old);
        }
    }

    /// Forgets object `k` (it was removed, or changed without a value to keep).
    pub(crate) fn remove(&mut self, k: &[u8]) {
        if let Some(e) = self.entries.swap_remove(k) {
            self.forget(&e);
        }
    }

    /// Values kept, and the estimated bytes of all entries.
    pub(crate) fn usage(&self) -> (usize, u64) {
        (self.kept, self.bytes)
    }

    /// Takes a replaced or removed entry out of the counts.
    fn forget(&mut self, e: &Entry) {
        self.bytes -= e.cost;
        if e.value.is_some() {
            self.kept -= 1;
        }
    }

    fn evict_one(&mut self) {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let len = self.entries.len() as u64;
        // `len` is at least 1 (the caller checks), and the index is below it.
        let i = usize::try_from(self.rng % len).unwrap_or(0);
        if let Some((_, e)) = self.entries.swap_remove_index(i) {
            self.forget(&e);
        }
    }
}

/// The cost an emptied (taken) entry keeps: its key and the fixed overhead.
fn empty_cost(key_len: usize) -> u64 {
    (key_len as u64).saturating_add(ENTRY_OVERHEAD_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_crdt::{Actor, Op, Replica, SetOp, Timestamp, ValueType};

    fn counter() -> Value {
        Value::empty(ValueType::Counter)
    }

    /// A set of one member, and where that member's bytes live.
    fn set() -> (Value, *const u8) {
        let mut v = Value::empty(ValueType::Set);
        let at = Replica {
            actor: Actor(1),
            now: Timestamp::ZERO,
        };
        v.apply(&Op::Set(SetOp::Add(vec![b"m".to_vec()])), at)
            .unwrap();
        let ptr = member_ptr(&v);
        (v, ptr)
    }

    fn member_ptr(v: &Value) -> *const u8 {
        match v {
            Value::Set(s) => s.members().next().map_or(std::ptr::null(), <[u8]>::as_ptr),
            _ => std::ptr::null(),
        }
    }

    /// The map is sized once: growing it on the owner's thread copied every entry
    /// (tens of MB for ~100,000 values) and stalled every request for tens of ms.
    #[test]
    fn the_map_never_grows_past_its_first_allocation() {
        let max = 1 << 20;
        let mut w = Warm::new(max);
        let first_entries = w.entries.capacity();
        assert!(first_entries > 0, "reserved up front");
        // The cheapest entries there are (a counter, a 1-byte record), twice as many as
        // the bytes allow, so eviction runs for the second half.
        for i in 0..2 * (max / ENTRY_OVERHEAD_BYTES) {
            w.put(&DiskKey::from_slice(&i.to_be_bytes()), counter(), 1, 1);
            assert_eq!(w.entries.capacity(), first_entries, "grew at entry {i}");
        }
        assert!(w.usage().1 <= max);
    }

    /// Where the entry cap binds (budgets above 128 MiB), a new key evicts one entry
    /// and a key already kept evicts none.
    #[test]
    fn past_the_entry_cap_only_a_new_key_evicts() {
        let mut w = Warm::with_limits(1 << 20, 4);
        let key = |i: u8| DiskKey::from_slice(&[b'k', i]);
        for i in 0..4 {
            w.put(&key(i), counter(), 1, 1);
        }
        assert_eq!(w.entries.len(), 4);
        // Kept keys again, at the cap: every one stays.
        for i in 0..4 {
            w.put(&key(i), counter(), 2, 1);
        }
        assert!((0..4).all(|i| w.get(&key(i)).is_some()));
        // A new key: one of the others goes, the new one is kept.
        w.put(&key(9), counter(), 3, 1);
        assert_eq!(w.entries.len(), 4);
        assert_eq!(w.get(&key(9)).map(|(_, h)| h), Some(3));
        assert_eq!(w.usage().0, 4);
    }

    #[test]
    fn take_hands_over_the_value_itself_and_leaves_no_value() {
        let mut w = Warm::new(1 << 20);
        let (v, at) = set();
        w.put(&DiskKey::from_slice(b"k"), v.clone(), 7, 10);
        let (taken, hash) = w.take(b"k").unwrap();
        assert_eq!((&taken, hash), (&v, 7));
        assert_eq!(
            w.usage(),
            (0, empty_cost(1)),
            "the slot keeps its key's share"
        );
        assert!(w.take(b"k").is_none());
        assert!(w.get(b"k").is_none());
        // Not a copy: the same member bytes come back.
        let (v, at2) = set();
        assert_ne!(at, at2);
        w.put(&DiskKey::from_slice(b"k"), v, 8, 10);
        let (taken, _) = w.take(b"k").unwrap();
        assert_eq!(member_ptr(&taken), at2);
    }

    #[test]
    fn get_copies_and_keeps_the_entry() {
        let mut w = Warm::new(1 << 20);
        let (v, at) = set();
        let expected = v.clone();
        w.put(&DiskKey::from_slice(b"k"), v, 3, 10);
        let (copy, hash) = w.get(b"k").unwrap();
        assert_eq!((&copy, hash), (&expected, 3));
        assert_ne!(member_ptr(&copy), at, "a copy, not the kept value");
        let (kept, _) = w.take(b"k").unwrap();
        assert_eq!(member_ptr(&kept), at, "the entry stayed");
    }

    #[test]
    fn a_set_costs_by_its_members_not_its_record() {
        let (v, _) = set();
        let one = cost(&v, 4, 0);
        assert!(
            one >= DECODED_PER_SET_MEMBER + ENTRY_OVERHEAD_BYTES,
            "{one}"
        );
        assert_eq!(
            cost(&counter(), 4, 10),
            4 * DECODED_PER_RECORD_BYTE + 10 + 128
        );
        assert_eq!(
            cost(&counter(), usize::MAX, usize::MAX),
            u64::MAX,
            "saturates"
        );
    }

    #[test]
    fn the_estimate_stays_within_the_bound_and_oversized_values_are_not_kept() {
        let each = cost(&counter(), 100, 4);
        let max = each * 10;
        let mut w = Warm::new(max);
        for i in 0..1000u32 {
            w.put(&DiskKey::from_slice(&i.to_le_bytes()), counter(), 0, 100);
            let (n, bytes) = w.usage();
            assert!(bytes <= max, "{bytes} > {max} after {i}");
            assert_eq!(bytes, n as u64 * each);
        }
        assert_eq!(w.usage().0, 10, "full, by evicting one entry per put");
        w.put(&DiskKey::from_slice(b"big"), counter(), 0, 1 << 20);
        assert!(w.get(b"big").is_none());
        // Putting a key again replaces its entry rather than adding a second one.
        w.put(&DiskKey::from_slice(b"wxyz"), counter(), 1, 100);
        w.put(&DiskKey::from_slice(b"wxyz"), counter(), 2, 100);
        assert_eq!(w.get(b"wxyz").map(|(_, h)| h), Some(2));
        assert_eq!(w.usage().1, w.usage().0 as u64 * each);
        // An oversized write of a kept key drops the old entry too.
        w.put(&DiskKey::from_slice(b"wxyz"), counter(), 3, 1 << 20);
        assert!(w.get(b"wxyz").is_none());
        w.put(&DiskKey::from_slice(b"abcd"), counter(), 1, 100);
        w.remove(b"abcd");
        assert!(w.get(b"abcd").is_none());
    }

    #[test]
    fn a_put_after_a_take_refills_the_slot_even_after_entries_moved() {
        let each = cost(&counter(), 100, 4);
        let mut w = Warm::new(each * ENTRY_SHARE_MAX);
        for k in [b"aaaa", b"bbbb", b"cccc"] {
            w.put(&DiskKey::from_slice(k), counter(), 0, 100);
        }
        // The usual update: take, then put the same key back into its slot.
        w.take(b"aaaa").unwrap();
        w.put(&DiskKey::from_slice(b"aaaa"), counter(), 1, 100);
        assert_eq!(w.entries.len(), 3, "refilled, not added");
        assert_eq!(w.get(b"aaaa").map(|(_, h)| h), Some(1));
        // A removal in between moves the last entry into the removed one's slot: the
        // remembered slot now holds another key, which the put must not overwrite.
        w.take(b"aaaa").unwrap();
        w.remove(b"aaaa");
        w.put(&DiskKey::from_slice(b"aaaa"), counter(), 2, 100);
        assert_eq!(w.get(b"aaaa").map(|(_, h)| h), Some(2));
        assert_eq!(
            w.get(b"cccc").map(|(_, h)| h),
            Some(0),
            "the moved entry is intact"
        );
        assert_eq!(w.usage(), (3, each * 3));
    }

    #[test]
    fn slots_taken_and_never_refilled_stay_bounded() {
        let each = cost(&counter(), 100, 4);
        let max = each * ENTRY_SHARE_MAX;
        let mut w = Warm::new(max);
        // Writes that failed after their read: each leaves an empty slot behind.
        for i in 0..1000u32 {
            let k = DiskKey::from_slice(&i.to_le_bytes());
            w.put(&k, counter(), 0, 100);
            w.take(&k).unwrap();
            assert!(w.usage().1 <= max);
        }
        assert_eq!(w.usage().0, 0);
        assert!(
            w.entries.len() as u64 <= max / empty_cost(4),
            "evicted like the rest"
        );
    }

    #[test]
    fn a_zero_budget_keeps_nothing() {
        let mut w = Warm::new(0);
        w.put(&DiskKey::from_slice(b"k"), counter(), 0, 1);
        assert_eq!(w.usage(), (0, 0));
    }
}
