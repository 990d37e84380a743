//! PN-counter: per-actor totals of increments and decrements.

use smallvec::SmallVec;

use crate::causal::Actor;
use crate::error::{ApplyError, CounterOverflow};
use crate::{Crdt, Replica};

/// Actors whose entries a counter keeps inline. A counter is written by the replicas'
/// coordinators, usually one to three actors, and an increment's delta holds one: inline,
/// reading a counter costs no second cache miss and a delta no allocation (session 25's
/// profiles of batched increments: 3.6–4.0% of the I/O thread read the entries' heap
/// block). Two keeps [`crate::Value`] at its size; three would grow it.
const INLINE_ACTORS: usize = 2;

/// A counter's entries, sorted by actor.
type Entries = SmallVec<[(Actor, PnEntry); INLINE_ACTORS]>;

/// One actor's totals. Both only grow, so a merge takes the maximum of each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PnEntry {
    /// Sum of positive increments.
    pub inc: u64,
    /// Sum of magnitudes of negative increments.
    pub dec: u64,
}

impl PnEntry {
    fn join(self, other: PnEntry) -> PnEntry {
        PnEntry {
            inc: self.inc.max(other.inc),
            dec: self.dec.max(other.dec),
        }
    }

    /// This entry after adding `amount`, or `None` if a total would overflow `u64`.
    pub(crate) fn add(self, amount: i64) -> Option<PnEntry> {
        let magnitude = amount.unsigned_abs();
        if amount >= 0 {
            Some(PnEntry {
                inc: self.inc.checked_add(magnitude)?,
                dec: self.dec,
            })
        } else {
            Some(PnEntry {
                inc: self.inc,
                dec: self.dec.checked_add(magnitude)?,
            })
        }
    }

    /// The entry's contribution to the value.
    pub(crate) fn net(self) -> i128 {
        i128::from(self.inc) - i128::from(self.dec)
    }
}

/// Sums contributions, failing if the total leaves the `i64` range.
pub(crate) fn total(entries: impl Iterator<Item = PnEntry>) -> Result<i64, CounterOverflow> {
    // Each net fits in 65 bits, so an i128 sum of up to 2^62 entries cannot overflow.
    let sum: i128 = entries.map(PnEntry::net).sum();
    i64::try_from(sum).map_err(|_| CounterOverflow)
}

/// An operation on a counter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CounterOp {
    /// Adds a signed amount.
    Increment(i64),
}

/// A PN-counter with an `i64` value, that can be reset.
///
/// Laws: merge is the pointwise maximum of per-actor totals and of per-actor *floors*,
/// hence commutative, associative and idempotent. Only the coordinating actor's entry
/// changes on an update, so the delta is that one entry.
///
/// **Reset** (a delete) raises each actor's floor to the totals the replica has observed;
/// the value counts only what lies above the floors, so increments concurrent with the
/// reset survive it. Floors never exceed entries: a reset's delta carries both.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Counter {
    /// Sorted by actor; never holds an all-zero entry.
    entries: Entries,
    /// Sorted by actor; never holds an all-zero floor; pointwise at most `entries`.
    floors: Vec<(Actor, PnEntry)>,
}

impl Counter {
    /// The counter's value, or an error when concurrent increments took it past `i64`.
    pub fn value(&self) -> Result<i64, CounterOverflow> {
        let above = total(self.entries.iter().map(|&(_, e)| e))?;
        let floor = total(self.floors.iter().map(|&(_, e)| e))?;
        i64::try_from(i128::from(above) - i128::from(floor)).map_err(|_| CounterOverflow)
    }

    /// Per-actor floors left by resets, in actor order.
    pub fn floors(&self) -> impl ExactSizeIterator<Item = (Actor, PnEntry)> + Clone + '_ {
        self.floors.iter().copied()
    }

    /// Per-actor totals, in actor order.
    pub fn entries(&self) -> impl ExactSizeIterator<Item = (Actor, PnEntry)> + Clone + '_ {
        self.entries.iter().copied()
    }

    /// Rebuilds a counter from sorted, unique, non-zero entries (and no floors).
    pub fn from_entries(entries: Vec<(Actor, PnEntry)>) -> Result<Self, crate::InvalidState> {
        Self::from_parts(entries, Vec::new())
    }

    /// Rebuilds a counter from sorted, unique, non-zero entries and floors, each floor at
    /// most its actor's entry.
    pub fn from_parts(
        entries: Vec<(Actor, PnEntry)>,
        floors: Vec<(Actor, PnEntry)>,
    ) -> Result<Self, crate::InvalidState> {
        for list in [&entries, &floors] {
            let sorted = list.windows(2).all(|w| w[0].0 < w[1].0);
            if !sorted || list.iter().any(|(_, e)| *e == PnEntry::default()) {
                return Err(crate::InvalidState(
                    "counter entries not sorted, unique and non-zero",
                ));
            }
        }
        let c = Counter {
            // Collected, not `from_vec`: that keeps a heap block larger than inline.
            entries: entries.into_iter().collect(),
            floors,
        };
        let under = c.floors.iter().all(|&(a, f)| {
            let e = get(&c.entries, a);
            f.inc <= e.inc && f.dec <= e.dec
        });
        if !under {
            return Err(crate::InvalidState("counter floor above its entry"));
        }
        Ok(c)
    }

    fn entry(&self, actor: Actor) -> PnEntry {
        get(&self.entries, actor)
    }

    fn set_entry(&mut self, actor: Actor, entry: PnEntry) {
        if let Err(i) = set_in_place(&mut self.entries, actor, entry) {
            self.entries.insert(i, (actor, entry));
        }
    }

    fn join_floors(&mut self, other: &[(Actor, PnEntry)]) {
        for &(actor, theirs) in other {
            let joined = get(&self.floors, actor).join(theirs);
            if let Err(i) = set_in_place(&mut self.floors, actor, joined) {
                self.floors.insert(i, (actor, joined));
            }
        }
    }
}

fn get(list: &[(Actor, PnEntry)], actor: Actor) -> PnEntry {
    match list.binary_search_by_key(&actor, |&(a, _)| a) {
        Ok(i) => list[i].1,
        Err(_) => PnEntry::default(),
    }
}

/// Sets `actor`'s entry in the sorted `list` if it has one; else where to insert it (the
/// caller inserts: entries and floors are different list types).
fn set_in_place(list: &mut [(Actor, PnEntry)], actor: Actor, entry: PnEntry) -> Result<(), usize> {
    let i = list.binary_search_by_key(&actor, |&(a, _)| a)?;
    list[i].1 = entry;
    Ok(())
}

impl Crdt for Counter {
    type Op = CounterOp;

    fn merge(&mut self, other: &Self) {
        for &(actor, theirs) in &other.entries {
            let joined = self.entry(actor).join(theirs);
            self.set_entry(actor, joined);
        }
        self.join_floors(&other.floors);
    }

    fn reset(&mut self, _replica: Replica) -> Self {
        let delta = Counter {
            entries: self.entries.clone(),
            floors: self.entries.to_vec(),
        };
        self.join_floors(&delta.floors);
        delta
    }

    fn is_bottom(&self) -> bool {
        self.entries.iter().all(|&(a, e)| get(&self.floors, a) == e)
    }

    fn apply(&mut self, op: &CounterOp, replica: Replica) -> Result<Self, ApplyError> {
        let CounterOp::Increment(amount) = *op;
        let updated = self
            .entry(replica.actor)
            .add(amount)
            .ok_or(ApplyError::CounterOverflow)?;
        let value = i128::from(self.value()?) + i128::from(amount);
        i64::try_from(value).map_err(|_| ApplyError::CounterOverflow)?;
        if amount == 0 {
            return Ok(Counter::default());
        }
        self.set_entry(replica.actor, updated);
        let mut entries = Entries::new();
        entries.push((replica.actor, updated));
        Ok(Counter {
            entries,
            floors: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Timestamp;

    fn at(actor: u64) -> Replica {
        Replica {
            actor: Actor(actor),
            now: Timestamp::ZERO,
        }
    }

    #[test]
    fn two_actors_and_a_delta_keep_their_entries_inline_and_value_keeps_its_size() {
        let mut c = Counter::default();
        let delta = c.apply(&CounterOp::Increment(1), at(1)).unwrap();
        assert!(!delta.entries.spilled());
        c.apply(&CounterOp::Increment(1), at(2)).unwrap();
        assert!(!c.entries.spilled());
        c.apply(&CounterOp::Increment(1), at(3)).unwrap();
        assert_eq!(c.value(), Ok(3), "a third actor spills, and counts");
        // Rebuilt from a decoder's list, even one with room to spare.
        let mut decoded = Vec::with_capacity(8);
        decoded.push((Actor(1), PnEntry { inc: 1, dec: 0 }));
        assert!(!Counter::from_entries(decoded).unwrap().entries.spilled());
        // A larger counter would grow every value and every move of one.
        assert!(std::mem::size_of::<Counter>() <= std::mem::size_of::<crate::Set>());
    }

    #[test]
    fn increments_and_decrements_add_up() {
        let mut c = Counter::default();
        c.apply(&CounterOp::Increment(5), at(1)).unwrap();
        c.apply(&CounterOp::Increment(-7), at(2)).unwrap();
        assert_eq!(c.value(), Ok(-2));
    }

    #[test]
    fn overflow_is_a_typed_error_and_leaves_state_alone() {
        let mut c = Counter::default();
        c.apply(&CounterOp::Increment(i64::MAX), at(1)).unwrap();
        let before = c.clone();
        assert_eq!(
            c.apply(&CounterOp::Increment(1), at(2)),
            Err(ApplyError::CounterOverflow)
        );
        assert_eq!(c, before);
        c.apply(&CounterOp::Increment(i64::MIN), at(1)).unwrap();
        assert_eq!(c.value(), Ok(-1));
    }

    #[test]
    fn concurrent_overflow_shows_on_read() {
        let (mut a, mut b) = (Counter::default(), Counter::default());
        a.apply(&CounterOp::Increment(i64::MAX), at(1)).unwrap();
        b.apply(&CounterOp::Increment(i64::MAX), at(2)).unwrap();
        a.merge(&b);
        assert_eq!(a.value(), Err(CounterOverflow));
    }

    #[test]
    fn reset_keeps_concurrent_increments_only() {
        let mut a = Counter::default();
        a.apply(&CounterOp::Increment(10), at(1)).unwrap();
        let mut b = a.clone();
        a.reset(at(1));
        assert!(a.is_bottom());
        assert_eq!(a.value(), Ok(0));
        b.apply(&CounterOp::Increment(3), at(2)).unwrap();
        a.merge(&b);
        assert_eq!(a.value(), Ok(3));
        assert!(!a.is_bottom());
    }

    #[test]
    fn delta_is_one_entry() {
        let mut c = Counter::default();
        for actor in 0..50 {
            c.apply(&CounterOp::Increment(1), at(actor)).unwrap();
        }
        let delta = c.apply(&CounterOp::Increment(3), at(7)).unwrap();
        assert_eq!(delta.entries().count(), 1);
    }
}
