//! Add-wins observed-remove set of byte strings (an ORSWOT: no tombstones).

use std::collections::BTreeSet;

use smallvec::SmallVec;

use crate::causal::{CausalContext, InvalidState};
use crate::dotstore::{DotMap, DotSet, DotStore};
use crate::error::ApplyError;
use crate::limits::Bound;
use crate::{Crdt, Replica};

/// Members up to this many bytes live inside the set's tree nodes.
pub const MEMBER_INLINE_BYTES: usize = 24;

/// A member's bytes: inline up to [`MEMBER_INLINE_BYTES`], on the heap past that.
///
/// A node walks a whole set on every write (it encodes the set whole), and a set kept in
/// memory between writes is cold: with each member behind its own pointer, the walk was
/// one cache miss per member (the largest single cost of a set add in a profile of one
/// node, ~15%). Inline, the walk reads the tree nodes only, and decoding a set allocates
/// nothing per short member.
pub type Member = SmallVec<[u8; MEMBER_INLINE_BYTES]>;

/// A delta at most this many dots large is merged by visiting only the members it names.
const SMALL_DELTA_DOTS: u64 = 64;

/// An operation on a set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetOp {
    /// Adds members. An add wins over every remove that did not observe it.
    Add(Vec<Vec<u8>>),
    /// Removes what `context` observed of each member. Without a context, removes what the
    /// coordinating replica has observed.
    Remove {
        /// Members to remove.
        members: Vec<Vec<u8>>,
        /// The context of the read the client based this remove on.
        context: Option<CausalContext>,
    },
}

/// An add-wins observed-remove set of byte strings.
///
/// Each member holds the dots of the adds that put it there; the context holds every dot
/// the replica has seen. Removed members leave no tombstone: a dot in the context but in
/// no member was removed.
///
/// **Removes and their context.** A remove drops the dots of a member that the client's
/// context observed. When that context holds dots this replica has not seen yet (the
/// client read from a replica further ahead), the remove is *deferred*: kept beside the
/// set, it also drops those dots when they arrive, and is forgotten once the replica's
/// context covers it (as riak_dt's ORSWOT does).
///
/// **Laws.** Merge is a join (commutative, associative, idempotent) over states reached by
/// operations and merges. The delta of an operation is itself a `Set`, and
/// `old.merge(&delta) == new`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Set {
    entries: DotMap<Member, DotSet>,
    ctx: CausalContext,
    /// Removes waiting for this replica to see all that their context saw. Kept as
    /// separate pairs, never joined per member: a joined context would mix a part already
    /// applied with a part still waiting, and equal sets of removes would differ in shape.
    deferred: BTreeSet<(Member, CausalContext)>,
}

impl Set {
    /// Whether `member` is in the set.
    pub fn contains(&self, member: &[u8]) -> bool {
        self.entries.0.contains_key(member)
    }

    /// The members, in byte order.
    pub fn members(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.entries.0.keys().map(|m| &**m)
    }

    /// Members with the dots that support them, in byte order.
    pub fn entries(&self) -> impl Iterator<Item = (&[u8], &DotSet)> + '_ {
        self.entries.0.iter().map(|(m, d)| (&**m, d))
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.entries.0.len()
    }

    /// True when the set has no member.
    pub fn is_empty(&self) -> bool {
        self.entries.0.is_empty()
    }

    /// Every dot this replica has seen: what a client passes back with a remove.
    pub fn context(&self) -> &CausalContext {
        &self.ctx
    }

    /// Removes waiting for their context, by member.
    pub fn deferred(&self) -> impl Iterator<Item = (&[u8], &CausalContext)> + '_ {
        self.deferred.iter().map(|(m, c)| (&**m, c))
    }

    /// Rebuilds a set from decoded parts, checking every invariant a decoder cannot.
    pub fn from_parts(
        entries: Vec<(Member, DotSet)>,
        ctx: CausalContext,
        deferred: Vec<(Member, CausalContext)>,
    ) -> Result<Self, InvalidState> {
        if !entries.windows(2).all(|w| w[0].0 < w[1].0) {
            return Err(InvalidState("set members not sorted and unique"));
        }
        if !deferred.windows(2).all(|w| w[0] < w[1]) {
            return Err(InvalidState("deferred removes not sorted and unique"));
        }
        if entries
            .iter()
            .any(|(_, d)| d.is_empty() || d.iter().any(|d| !ctx.contains(d)))
        {
            return Err(InvalidState(
                "set member without dots, or a dot outside the context",
            ));
        }
        // Sorted in one buffer rather than inserted into a set: this runs on every read of
        // a set from disk, and a tree allocates per node.
        let mut dots: Vec<_> = entries.iter().flat_map(|(_, d)| d.iter()).collect();
        dots.sort_unstable();
        if dots.windows(2).any(|w| w[0] == w[1]) {
            return Err(InvalidState("one dot under two members"));
        }
        let set = Set {
            entries: DotMap(entries.into_iter().collect()),
            ctx,
            deferred: deferred.into_iter().collect(),
        };
        let settled = set.deferred.iter().all(|(m, c)| {
            !set.ctx.descends(c)
                && set
                    .entries
                    .0
                    .get(m)
                    .is_none_or(|d| d.iter().all(|d| !c.contains(d)))
        });
        if !settled {
            return Err(InvalidState(
                "deferred remove that should have been applied",
            ));
        }
        Ok(set)
    }

    fn add(&mut self, members: &[Vec<u8>], replica: Replica) -> Result<Set, ApplyError> {
        let members: BTreeSet<&[u8]> = members.iter().map(|m| m.as_slice()).collect();
        for m in &members {
            Bound::MemberBytes.check(m.len())?;
        }
        let fresh = members.iter().filter(|m| !self.contains(m)).count();
        Bound::SetMembers.check(self.len() + fresh)?;
        let needed = u64::try_from(members.len()).unwrap_or(u64::MAX);
        if self
            .ctx
            .max_counter(replica.actor)
            .checked_add(needed)
            .is_none()
        {
            return Err(ApplyError::DotsExhausted);
        }
        let mut delta = Set::default();
        for m in members {
            let dot = self
                .ctx
                .next_dot(replica.actor)
                .expect("counters checked above");
            self.ctx.insert(dot);
            delta.ctx.insert(dot);
            let key = Member::from_slice(m);
            delta.entries.0.insert(key.clone(), DotSet::single(dot));
            // The new dot supersedes the member's old ones; the delta says so as a remove,
            // keeping its context made only of its own dots (see `is_small_delta`).
            if let Some(old) = self.entries.0.insert(key.clone(), DotSet::single(dot)) {
                let superseded = CausalContext::from_dots(old.iter());
                delta.deferred.insert((key, superseded));
            }
        }
        Ok(delta)
    }

    fn remove(
        &mut self,
        members: &[Vec<u8>],
        context: Option<&CausalContext>,
    ) -> Result<Set, ApplyError> {
        let members: BTreeSet<&[u8]> = members.iter().map(|m| m.as_slice()).collect();
        let mut delta = Set::default();
        for m in members {
            Bound::MemberBytes.check(m.len())?;
            let observed = match context {
                Some(ctx) => ctx.clone(),
                None => match self.entries.0.get(m) {
                    Some(dots) => CausalContext::from_dots(dots.iter()),
                    None => continue,
                },
            };
            delta.deferred.insert((Member::from_slice(m), observed));
        }
        // An empty context removes nothing; settling drops it so the delta is canonical.
        delta.settle_deferred();
        let waiting = delta
            .deferred
            .iter()
            .filter(|(_, c)| !self.ctx.descends(c))
            .count();
        Bound::DeferredRemoves.check(self.deferred.len() + waiting)?;
        self.merge(&delta);
        Ok(delta)
    }

    /// True when every dot of the context sits in the store: the shape of an add or remove
    /// delta. Then only the members it names can change (a dot belongs to one member).
    fn is_small_delta(&self) -> bool {
        let dots = self.ctx.dot_count();
        if dots > SMALL_DELTA_DOTS || self.entries.0.len() as u64 > SMALL_DELTA_DOTS {
            return false;
        }
        // Store dots are always in the context, so equal counts mean equal sets.
        let held: u64 = self.entries.0.values().map(|d| d.len() as u64).sum();
        held == dots
    }

    fn merge_small(&mut self, other: &Set) {
        use std::collections::btree_map::Entry;
        for (m, theirs) in &other.entries.0 {
            // One walk down the tree: a delta's members are usually new here.
            match self.entries.0.entry(m.clone()) {
                Entry::Occupied(mut mine) => {
                    mine.get_mut().join(&self.ctx, theirs, &other.ctx);
                    if mine.get().is_empty() {
                        mine.remove();
                    }
                }
                Entry::Vacant(slot) => {
                    let mut dots = theirs.clone();
                    dots.remove_covered(&self.ctx);
                    if !dots.is_empty() {
                        slot.insert(dots);
                    }
                }
            }
        }
    }

    /// Applies every deferred remove to the dots now present, and forgets those whose
    /// context this replica has caught up with.
    fn settle_deferred(&mut self) {
        let Set {
            entries,
            ctx,
            deferred,
        } = self;
        deferred.retain(|(m, observed)| {
            if let Some(dots) = entries.0.get_mut(m) {
                dots.remove_covered(observed);
                if dots.is_empty() {
                    entries.0.remove(m);
                }
            }
            !ctx.descends(observed)
        });
    }

    /// The full O(n + m) merge, used for states that are not small deltas.
    #[doc(hidden)]
    pub fn merge_full(&mut self, other: &Set) {
        self.entries.join(&self.ctx, &other.entries, &other.ctx);
        self.finish_merge(other);
    }

    fn finish_merge(&mut self, other: &Set) {
        self.ctx.join(&other.ctx);
        self.deferred.extend(other.deferred.iter().cloned());
        self.settle_deferred();
    }
}

impl Crdt for Set {
    type Op = SetOp;

    fn reset(&mut self, _replica: Replica) -> Self {
        let mut observed = CausalContext::new();
        self.entries.for_each_dot(&mut |d| observed.insert(d));
        let delta = Set {
            ctx: observed,
            ..Set::default()
        };
        self.merge(&delta);
        delta
    }

    fn is_bottom(&self) -> bool {
        self.is_empty()
    }

    fn merge(&mut self, other: &Self) {
        if other.is_small_delta() {
            self.merge_small(other);
            self.finish_merge(other);
        } else {
            self.merge_full(other);
        }
    }

    fn apply(&mut self, op: &SetOp, replica: Replica) -> Result<Self, ApplyError> {
        match op {
            SetOp::Add(members) => {
                Bound::OpItems.check(members.len())?;
                self.add(members, replica)
            }
            SetOp::Remove { members, context } => {
                Bound::OpItems.check(members.len())?;
                self.remove(members, context.as_ref())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Actor, Dot, Timestamp};

    fn at(actor: u64) -> Replica {
        Replica {
            actor: Actor(actor),
            now: Timestamp::ZERO,
        }
    }

    fn add(set: &mut Set, actor: u64, member: &str) -> Set {
        set.apply(&SetOp::Add(vec![member.into()]), at(actor))
            .unwrap()
    }

    fn remove(set: &mut Set, member: &str, context: Option<CausalContext>) -> Set {
        let op = SetOp::Remove {
            members: vec![member.into()],
            context,
        };
        set.apply(&op, at(0)).unwrap()
    }

    #[test]
    fn concurrent_add_wins_over_remove() {
        let mut a = Set::default();
        add(&mut a, 1, "x");
        let mut b = a.clone();
        remove(&mut a, "x", None);
        add(&mut b, 2, "x");
        a.merge(&b);
        assert!(a.contains(b"x"));
    }

    #[test]
    fn observed_remove_removes() {
        let mut a = Set::default();
        add(&mut a, 1, "x");
        let mut b = a.clone();
        let ctx = b.context().clone();
        remove(&mut b, "x", Some(ctx));
        a.merge(&b);
        assert!(!a.contains(b"x") && !b.contains(b"x"));
    }

    #[test]
    fn remove_ahead_of_replica_is_deferred_until_it_catches_up() {
        let mut ahead = Set::default();
        add(&mut ahead, 1, "x");
        let read_ctx = ahead.context().clone();
        // The client read `x` from `ahead` and asks `behind`, which has never seen it.
        let mut behind = Set::default();
        remove(&mut behind, "x", Some(read_ctx));
        assert_eq!(behind.deferred().count(), 1);
        behind.merge(&ahead);
        assert!(
            !behind.contains(b"x"),
            "the deferred remove drops the late dot"
        );
        assert_eq!(
            behind.deferred().count(),
            0,
            "and is forgotten once covered"
        );
        ahead.merge(&behind);
        assert!(!ahead.contains(b"x"));
    }

    #[test]
    fn add_delta_is_small_and_reproduces_the_add() {
        let mut s = Set::default();
        for i in 0..1000 {
            add(&mut s, i % 16, &format!("m{i}"));
        }
        let before = s.clone();
        let delta = add(&mut s, 3, "m5");
        assert!(delta.is_small_delta());
        assert_eq!(delta.len(), 1);
        let mut replay = before.clone();
        replay.merge(&delta);
        assert_eq!(replay, s);
        let mut full = before;
        full.merge_full(&delta);
        assert_eq!(full, s);
    }

    #[test]
    fn bounds_are_typed_errors() {
        let mut s = Set::default();
        let big = vec![0u8; crate::limits::MEMBER_BYTES_MAX + 1];
        let err = s.apply(&SetOp::Add(vec![big]), at(1)).unwrap_err();
        assert!(matches!(
            err,
            ApplyError::TooLarge {
                bound: Bound::MemberBytes,
                ..
            }
        ));
        assert!(s.is_empty());
    }

    #[test]
    fn from_parts_rejects_a_dot_under_two_members() {
        let dot = Dot::new(Actor(1), 1);
        let entries = vec![
            (Member::from_slice(b"x"), DotSet::single(dot)),
            (Member::from_slice(b"y"), DotSet::single(dot)),
        ];
        assert!(Set::from_parts(entries, CausalContext::from_dots([dot]), vec![]).is_err());
    }

    #[test]
    fn add_at_the_last_counter_is_refused_whole() {
        let ctx = CausalContext::from_dots([Dot::new(Actor(1), u64::MAX - 1)]);
        let mut s = Set::from_parts(vec![], ctx, vec![]).unwrap();
        let before = s.clone();
        let op = SetOp::Add(vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(s.apply(&op, at(1)), Err(ApplyError::DotsExhausted));
        assert_eq!(s, before);
        assert!(s.apply(&SetOp::Add(vec![b"a".to_vec()]), at(1)).is_ok());
    }

    #[test]
    fn from_parts_rejects_dot_outside_context() {
        let dot = Dot::new(Actor(1), 1);
        let entries = vec![(Member::from_slice(b"x"), DotSet::single(dot))];
        assert!(Set::from_parts(entries.clone(), CausalContext::new(), vec![]).is_err());
        assert!(Set::from_parts(entries, CausalContext::from_dots([dot]), vec![]).is_ok());
    }
}
