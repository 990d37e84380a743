//! Last-writer-wins register ordered by hybrid logical clock timestamps.

use crate::causal::Actor;
use crate::error::ApplyError;
use crate::limits::Bound;
use crate::{Crdt, Replica};

/// A hybrid logical clock reading: wall-clock milliseconds plus a logical counter that
/// orders events within one millisecond (Kulkarni et al., 2014).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    /// Milliseconds since the Unix epoch, as the clock believed.
    pub wall_ms: u64,
    /// Orders readings that share `wall_ms`.
    pub logical: u32,
}

impl Timestamp {
    /// The smallest timestamp.
    pub const ZERO: Timestamp = Timestamp {
        wall_ms: 0,
        logical: 0,
    };

    /// The smallest timestamp greater than `self`.
    pub fn successor(self) -> Timestamp {
        match self.logical.checked_add(1) {
            Some(logical) => Timestamp {
                wall_ms: self.wall_ms,
                logical,
            },
            None => Timestamp {
                wall_ms: self.wall_ms.saturating_add(1),
                logical: 0,
            },
        }
    }
}

/// A remote timestamp ran further ahead of our wall clock than the clock allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "clock drift: remote timestamp {remote_ms} ms is more than {max_ms} ms ahead of {now_ms} ms"
)]
pub struct ClockDrift {
    /// The remote reading.
    pub remote_ms: u64,
    /// Our wall clock.
    pub now_ms: u64,
    /// The allowed drift.
    pub max_ms: u64,
}

/// A hybrid logical clock. It never reads time itself: callers pass `now_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hlc {
    last: Timestamp,
    max_drift_ms: u64,
}

impl Hlc {
    /// A clock that refuses remote readings more than `max_drift_ms` ahead of ours.
    pub fn new(max_drift_ms: u64) -> Self {
        Hlc {
            last: Timestamp::ZERO,
            max_drift_ms,
        }
    }

    /// The last reading handed out.
    pub fn last(&self) -> Timestamp {
        self.last
    }

    /// A reading for a local event; strictly greater than every earlier reading.
    pub fn tick(&mut self, now_ms: u64) -> Timestamp {
        self.last = if now_ms > self.last.wall_ms {
            Timestamp {
                wall_ms: now_ms,
                logical: 0,
            }
        } else {
            self.last.successor()
        };
        self.last
    }

    /// Folds in a remote reading so later local readings order after it.
    pub fn observe(&mut self, remote: Timestamp, now_ms: u64) -> Result<Timestamp, ClockDrift> {
        if remote.wall_ms > now_ms.saturating_add(self.max_drift_ms) {
            return Err(ClockDrift {
                remote_ms: remote.wall_ms,
                now_ms,
                max_ms: self.max_drift_ms,
            });
        }
        let floor = self.last.max(remote);
        self.last = if now_ms > floor.wall_ms {
            Timestamp {
                wall_ms: now_ms,
                logical: 0,
            }
        } else {
            floor.successor()
        };
        Ok(self.last)
    }
}

/// One write: its timestamp, its coordinator and its bytes. Writes are totally ordered by
/// `(ts, actor, value)`; the value only breaks ties that a correct clock never produces.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LwwEntry {
    /// When it was written.
    pub ts: Timestamp,
    /// Who coordinated it.
    pub actor: Actor,
    /// The bytes written.
    pub value: Box<[u8]>,
}

impl LwwEntry {
    /// A write at `replica` that orders after `floor` (the newest write the replica has
    /// seen), so a node whose clock lags still overwrites what it read.
    pub(crate) fn after(floor: Option<Timestamp>, value: &[u8], replica: Replica) -> Self {
        let ts = match floor {
            Some(seen) => replica.now.max(seen.successor()),
            None => replica.now,
        };
        LwwEntry {
            ts,
            actor: replica.actor,
            value: value.into(),
        }
    }
}

/// An operation on a register.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegisterOp {
    /// Replaces the value.
    Assign(Vec<u8>),
}

/// A last-writer-wins register of bytes.
///
/// Laws: merge keeps the greater entry of a total order, and the greater reset mark,
/// hence commutative, associative and idempotent. The delta of an assignment is the new
/// entry; the delta of a reset (a delete) is its mark, a write of "nothing" that takes
/// part in last-writer-wins like any other write.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Register {
    entry: Option<LwwEntry>,
    /// The newest reset, `(ts, actor)`: the entry shows only if it is newer.
    cleared: Option<(Timestamp, Actor)>,
}

impl Register {
    /// The current value: the newest write, unless a newer reset hides it.
    pub fn value(&self) -> Option<&[u8]> {
        self.visible().map(|e| &*e.value)
    }

    /// The newest write (shown or not).
    pub fn entry(&self) -> Option<&LwwEntry> {
        self.entry.as_ref()
    }

    /// The newest reset mark.
    pub fn cleared(&self) -> Option<(Timestamp, Actor)> {
        self.cleared
    }

    /// A register holding `entry` and no reset.
    pub fn from_entry(entry: Option<LwwEntry>) -> Self {
        Register {
            entry,
            cleared: None,
        }
    }

    /// A register holding `entry` and reset mark `cleared`.
    pub fn from_parts(entry: Option<LwwEntry>, cleared: Option<(Timestamp, Actor)>) -> Self {
        Register { entry, cleared }
    }

    fn visible(&self) -> Option<&LwwEntry> {
        let entry = self.entry.as_ref()?;
        match self.cleared {
            Some(mark) if mark >= (entry.ts, entry.actor) => None,
            _ => Some(entry),
        }
    }

    /// The newest timestamp seen, write or reset.
    fn newest(&self) -> Option<Timestamp> {
        let written = self.entry.as_ref().map(|e| e.ts);
        written.max(self.cleared.map(|(ts, _)| ts))
    }
}

impl Crdt for Register {
    type Op = RegisterOp;

    fn merge(&mut self, other: &Self) {
        if other.entry > self.entry {
            self.entry.clone_from(&other.entry);
        }
        self.cleared = self.cleared.max(other.cleared);
    }

    fn reset(&mut self, replica: Replica) -> Self {
        let ts = match self.newest() {
            Some(seen) => replica.now.max(seen.successor()),
            None => replica.now,
        };
        let delta = Register {
            entry: None,
            cleared: Some((ts, replica.actor)),
        };
        self.merge(&delta);
        delta
    }

    fn is_bottom(&self) -> bool {
        self.visible().is_none()
    }

    fn apply(&mut self, op: &RegisterOp, replica: Replica) -> Result<Self, ApplyError> {
        let RegisterOp::Assign(value) = op;
        Bound::RegisterBytes.check(value.len())?;
        let entry = LwwEntry::after(self.newest(), value, replica);
        self.entry = Some(entry.clone());
        Ok(Register {
            entry: Some(entry),
            cleared: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(actor: u64, wall_ms: u64) -> Replica {
        Replica {
            actor: Actor(actor),
            now: Timestamp {
                wall_ms,
                logical: 0,
            },
        }
    }

    #[test]
    fn hlc_is_monotonic_when_the_wall_clock_steps_back() {
        let mut hlc = Hlc::new(1000);
        let a = hlc.tick(100);
        let b = hlc.tick(50);
        let c = hlc.tick(100);
        assert!(a < b && b < c);
        assert_eq!(
            c,
            Timestamp {
                wall_ms: 100,
                logical: 2
            }
        );
    }

    #[test]
    fn hlc_observe_orders_after_remote_and_bounds_drift() {
        let mut hlc = Hlc::new(1000);
        let remote = Timestamp {
            wall_ms: 500,
            logical: 7,
        };
        let t = hlc.observe(remote, 200).unwrap();
        assert!(t > remote);
        assert!(hlc.tick(200) > t);
        assert!(hlc
            .observe(
                Timestamp {
                    wall_ms: 5000,
                    logical: 0
                },
                200
            )
            .is_err());
    }

    #[test]
    fn later_timestamp_wins_and_actor_breaks_ties() {
        let (mut a, mut b) = (Register::default(), Register::default());
        a.apply(&RegisterOp::Assign(b"old".to_vec()), at(9, 10))
            .unwrap();
        b.apply(&RegisterOp::Assign(b"new".to_vec()), at(1, 20))
            .unwrap();
        a.merge(&b);
        assert_eq!(a.value(), Some(&b"new"[..]));
        let (mut x, mut y) = (Register::default(), Register::default());
        x.apply(&RegisterOp::Assign(b"x".to_vec()), at(1, 10))
            .unwrap();
        y.apply(&RegisterOp::Assign(b"y".to_vec()), at(2, 10))
            .unwrap();
        let mut xy = x.clone();
        xy.merge(&y);
        y.merge(&x);
        assert_eq!(xy, y);
        assert_eq!(xy.value(), Some(&b"y"[..]));
    }

    #[test]
    fn a_lagging_clock_still_overwrites_what_it_read() {
        let mut r = Register::default();
        r.apply(&RegisterOp::Assign(b"future".to_vec()), at(1, 1_000))
            .unwrap();
        r.apply(&RegisterOp::Assign(b"mine".to_vec()), at(2, 10))
            .unwrap();
        assert_eq!(r.value(), Some(&b"mine"[..]));
    }

    #[test]
    fn oversized_value_is_refused() {
        let mut r = Register::default();
        let big = vec![0; crate::limits::REGISTER_BYTES_MAX + 1];
        assert!(matches!(
            r.apply(&RegisterOp::Assign(big), at(1, 1)),
            Err(ApplyError::TooLarge {
                bound: Bound::RegisterBytes,
                ..
            })
        ));
        assert_eq!(r, Register::default());
    }
}
