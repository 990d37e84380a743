//! PN-counter: per-actor totals of increments and decrements.

use crate::causal::Actor;
use crate::error::{ApplyError, CounterOverflow};
use crate::{Crdt, Replica};

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

/// A PN-counter with an `i64` value.
///
/// Laws: merge is the pointwise maximum of per-actor totals, hence commutative,
/// associative and idempotent. Only the coordinating actor's entry changes on an update,
/// so the delta is that one entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Counter {
    /// Sorted by actor; never holds an all-zero entry.
    entries: Vec<(Actor, PnEntry)>,
}

impl Counter {
    /// The counter's value, or an error when concurrent increments took it past `i64`.
    pub fn value(&self) -> Result<i64, CounterOverflow> {
        total(self.entries.iter().map(|&(_, e)| e))
    }

    /// Per-actor totals, in actor order.
    pub fn entries(&self) -> impl Iterator<Item = (Actor, PnEntry)> + '_ {
        self.entries.iter().copied()
    }

    /// Rebuilds a counter from sorted, unique, non-zero entries.
    pub fn from_entries(entries: Vec<(Actor, PnEntry)>) -> Result<Self, crate::InvalidState> {
        let sorted = entries.windows(2).all(|w| w[0].0 < w[1].0);
        if !sorted || entries.iter().any(|(_, e)| *e == PnEntry::default()) {
            return Err(crate::InvalidState(
                "counter entries not sorted, unique and non-zero",
            ));
        }
        Ok(Counter { entries })
    }

    fn entry(&self, actor: Actor) -> PnEntry {
        match self.entries.binary_search_by_key(&actor, |&(a, _)| a) {
            Ok(i) => self.entries[i].1,
            Err(_) => PnEntry::default(),
        }
    }

    fn set_entry(&mut self, actor: Actor, entry: PnEntry) {
        match self.entries.binary_search_by_key(&actor, |&(a, _)| a) {
            Ok(i) => self.entries[i].1 = entry,
            Err(i) => self.entries.insert(i, (actor, entry)),
        }
    }
}

impl Crdt for Counter {
    type Op = CounterOp;

    fn merge(&mut self, other: &Self) {
        for &(actor, theirs) in &other.entries {
            let joined = self.entry(actor).join(theirs);
            self.set_entry(actor, joined);
        }
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
        Ok(Counter {
            entries: vec![(replica.actor, updated)],
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
    fn delta_is_one_entry() {
        let mut c = Counter::default();
        for actor in 0..50 {
            c.apply(&CounterOp::Increment(1), at(actor)).unwrap();
        }
        let delta = c.apply(&CounterOp::Increment(3), at(7)).unwrap();
        assert_eq!(delta.entries().count(), 1);
    }
}
