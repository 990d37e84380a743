//! Causality: actors, dots, version vectors and compact causal contexts.
//!
//! A [`Dot`] names one event: the `counter`-th update coordinated by an [`Actor`]. A
//! [`CausalContext`] is the set of dots a replica has seen, kept compact as a version
//! vector (every dot `1..=n` of an actor) plus a *dot cloud* of dots seen out of order.
//! Compaction is canonical: two contexts that hold the same dots are equal as values.

use std::collections::BTreeSet;
use std::fmt;

use smallvec::SmallVec;

/// One replica incarnation that coordinates updates (DESIGN.md §4.2: never one per client).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Actor(pub u64);

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a{:x}", self.0)
    }
}

/// One event: the `counter`-th update coordinated by `actor`. Counters start at 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dot {
    /// Who coordinated the event.
    pub actor: Actor,
    /// Its sequence number at that actor, from 1.
    pub counter: u64,
}

impl Dot {
    /// A dot; `counter` must be at least 1 for the dot to be valid.
    pub const fn new(actor: Actor, counter: u64) -> Self {
        Dot { actor, counter }
    }
}

/// Per-actor maximum counters, sorted by actor. A vector holds dot `(a, k)` iff `k <= vv[a]`.
///
/// A sorted `Vec` rather than a map: a cluster has few actors per key (one per replica
/// incarnation), so binary search over a contiguous slice beats tree pointers.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VersionVector {
    entries: Vec<(Actor, u64)>,
}

impl VersionVector {
    /// The highest counter held for `actor` (0 when none).
    pub fn get(&self, actor: Actor) -> u64 {
        match self.position(actor) {
            Ok(i) => self.entries[i].1,
            Err(_) => 0,
        }
    }

    /// Whether the vector holds `dot`.
    pub fn contains(&self, dot: Dot) -> bool {
        dot.counter != 0 && dot.counter <= self.get(dot.actor)
    }

    /// Raises `actor`'s counter to at least `counter`.
    pub fn raise(&mut self, actor: Actor, counter: u64) {
        if counter == 0 {
            return;
        }
        match self.position(actor) {
            Ok(i) => self.entries[i].1 = self.entries[i].1.max(counter),
            Err(i) => self.entries.insert(i, (actor, counter)),
        }
    }

    /// `(actor, counter)` pairs in actor order; counters are never 0.
    pub fn iter(&self) -> impl Iterator<Item = (Actor, u64)> + '_ {
        self.entries.iter().copied()
    }

    /// Number of actors with a non-zero counter.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no actor has a counter.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Pointwise maximum.
    pub fn join(&mut self, other: &VersionVector) {
        if other.entries.is_empty() {
            return;
        }
        if self.entries.is_empty() {
            self.entries.clone_from(&other.entries);
            return;
        }
        let mut out = Vec::with_capacity(self.entries.len().max(other.entries.len()));
        let (mut a, mut b) = (
            self.entries.iter().peekable(),
            other.entries.iter().peekable(),
        );
        loop {
            match (a.peek(), b.peek()) {
                (Some(&&x), Some(&&y)) if x.0 == y.0 => {
                    out.push((x.0, x.1.max(y.1)));
                    a.next();
                    b.next();
                }
                (Some(&&x), Some(&&y)) if x.0 < y.0 => {
                    out.push(x);
                    a.next();
                }
                (_, Some(&&y)) => {
                    out.push(y);
                    b.next();
                }
                (Some(&&x), None) => {
                    out.push(x);
                    a.next();
                }
                (None, None) => break,
            }
        }
        self.entries = out;
    }

    /// Whether every dot of `other` is in `self`.
    pub fn descends(&self, other: &VersionVector) -> bool {
        other.entries.iter().all(|&(a, n)| self.get(a) >= n)
    }

    /// Builds a vector from pairs, rejecting unsorted, duplicate or zero entries.
    pub fn from_sorted(entries: Vec<(Actor, u64)>) -> Result<Self, InvalidState> {
        let sorted = entries.windows(2).all(|w| w[0].0 < w[1].0);
        if !sorted || entries.iter().any(|&(_, n)| n == 0) {
            return Err(InvalidState(
                "version vector not sorted, unique and non-zero",
            ));
        }
        Ok(VersionVector { entries })
    }

    fn position(&self, actor: Actor) -> Result<usize, usize> {
        self.entries.binary_search_by_key(&actor, |&(a, _)| a)
    }
}

/// A state that breaks a type's invariants (found when rebuilding one from decoded parts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid CRDT state: {0}")]
pub struct InvalidState(pub &'static str);

/// A compact set of dots: a version vector plus the dots seen out of order.
///
/// Invariant: no cloud dot is in the vector or directly follows it (such a dot is folded
/// into the vector), so equal sets of dots have equal representations.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CausalContext {
    vv: VersionVector,
    cloud: BTreeSet<Dot>,
}

impl CausalContext {
    /// The empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// The context holding exactly `dots`.
    pub fn from_dots(dots: impl IntoIterator<Item = Dot>) -> Self {
        let mut ctx = CausalContext::new();
        for dot in dots {
            ctx.insert(dot);
        }
        ctx
    }

    /// Rebuilds a context from its parts, rejecting a non-canonical cloud.
    pub fn from_parts(vv: VersionVector, cloud: BTreeSet<Dot>) -> Result<Self, InvalidState> {
        let canonical = cloud
            .iter()
            .all(|d| d.counter > vv.get(d.actor).saturating_add(1));
        if !canonical {
            return Err(InvalidState(
                "causal context cloud overlaps its version vector",
            ));
        }
        Ok(CausalContext { vv, cloud })
    }

    /// The compact prefix of the context.
    pub fn vv(&self) -> &VersionVector {
        &self.vv
    }

    /// The dots seen out of order, in dot order.
    pub fn cloud(&self) -> &BTreeSet<Dot> {
        &self.cloud
    }

    /// Whether the context holds `dot`.
    pub fn contains(&self, dot: Dot) -> bool {
        self.vv.contains(dot) || (!self.cloud.is_empty() && self.cloud.contains(&dot))
    }

    /// True when the context holds no dot.
    pub fn is_empty(&self) -> bool {
        self.vv.is_empty() && self.cloud.is_empty()
    }

    /// Number of dots held, saturating.
    pub fn dot_count(&self) -> u64 {
        self.vv
            .iter()
            .fold(self.cloud.len() as u64, |n, (_, c)| n.saturating_add(c))
    }

    /// All dots held, in dot order. Only sensible for small contexts (see [`Self::dot_count`]).
    pub fn dots(&self) -> impl Iterator<Item = Dot> + '_ {
        let ranged = self
            .vv
            .iter()
            .flat_map(|(a, n)| (1..=n).map(move |c| Dot::new(a, c)));
        ranged.chain(self.cloud.iter().copied())
    }

    /// The highest counter of `actor` held anywhere in the context.
    pub fn max_counter(&self, actor: Actor) -> u64 {
        let in_cloud = self
            .cloud
            .range(Dot::new(actor, 0)..=Dot::new(actor, u64::MAX))
            .next_back()
            .map_or(0, |d| d.counter);
        self.vv.get(actor).max(in_cloud)
    }

    /// The next dot `actor` may issue (it sees all of its own dots), or `None` once the
    /// actor has used every counter: a state only hostile input can reach.
    pub fn next_dot(&self, actor: Actor) -> Option<Dot> {
        let counter = self.max_counter(actor).checked_add(1)?;
        Some(Dot::new(actor, counter))
    }

    /// Adds one dot.
    pub fn insert(&mut self, dot: Dot) {
        if dot.counter == 0 || self.vv.contains(dot) {
            return;
        }
        if dot.counter == self.vv.get(dot.actor) + 1 {
            self.vv.raise(dot.actor, dot.counter);
            self.fold_cloud(dot.actor);
        } else {
            self.cloud.insert(dot);
        }
    }

    /// Set union.
    ///
    /// Costs O(size of `other`), not of `self`: a replica that missed some dots keeps a
    /// large cloud, and merging a small delta into it must stay cheap. Only actors whose
    /// vector entry grows or that bring cloud dots can change the cloud.
    pub fn join(&mut self, other: &CausalContext) {
        let raised: SmallVec<[Actor; 8]> = other
            .vv
            .iter()
            .filter(|&(a, n)| n > self.vv.get(a))
            .map(|(a, _)| a)
            .collect();
        if !raised.is_empty() {
            self.vv.join(&other.vv);
        }
        for d in &other.cloud {
            if !self.vv.contains(*d) {
                self.cloud.insert(*d);
            }
        }
        if self.cloud.is_empty() {
            return;
        }
        for actor in raised {
            self.fold_cloud(actor);
        }
        let mut last = None;
        for d in &other.cloud {
            if last != Some(d.actor) {
                last = Some(d.actor);
                self.fold_cloud(d.actor);
            }
        }
    }

    /// Whether every dot of `other` is in `self`.
    pub fn descends(&self, other: &CausalContext) -> bool {
        if self.vv.descends(&other.vv) {
            return other.cloud.iter().all(|d| self.contains(*d));
        }
        // A vector entry of `other` may still be covered by our vector plus cloud.
        // Counting instead of walking keeps a hostile counter (say 2^60) from looping.
        other.vv.iter().all(|(a, n)| {
            let mine = self.vv.get(a);
            mine >= n || {
                let held = self
                    .cloud
                    .range(Dot::new(a, mine + 1)..=Dot::new(a, n))
                    .count();
                held as u64 == n - mine
            }
        }) && other.cloud.iter().all(|d| self.contains(*d))
    }

    /// Moves cloud dots of `actor` that now follow the vector into it.
    fn fold_cloud(&mut self, actor: Actor) {
        while let Some(counter) = self.vv.get(actor).checked_add(1) {
            let next = Dot::new(actor, counter);
            if !self.cloud.remove(&next) {
                break;
            }
            self.vv.raise(actor, next.counter);
        }
        let top = self.vv.get(actor);
        if top > 0 {
            let stale: Vec<Dot> = self
                .cloud
                .range(Dot::new(actor, 0)..=Dot::new(actor, top))
                .copied()
                .collect();
            for d in stale {
                self.cloud.remove(&d);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(a: u64, c: u64) -> Dot {
        Dot::new(Actor(a), c)
    }

    #[test]
    fn insert_compacts_contiguous_dots() {
        let mut ctx = CausalContext::from_dots([d(1, 3), d(1, 1)]);
        assert_eq!(ctx.vv().get(Actor(1)), 1);
        assert_eq!(ctx.cloud().len(), 1);
        ctx.insert(d(1, 2));
        assert_eq!(ctx.vv().get(Actor(1)), 3);
        assert!(ctx.cloud().is_empty());
    }

    #[test]
    fn join_is_union_and_canonical() {
        let a = CausalContext::from_dots([d(1, 1), d(1, 2), d(2, 5)]);
        let b = CausalContext::from_dots([d(1, 3), d(2, 1)]);
        let mut ab = a.clone();
        ab.join(&b);
        let mut ba = b.clone();
        ba.join(&a);
        assert_eq!(ab, ba);
        assert_eq!(
            ab,
            CausalContext::from_dots([d(1, 1), d(1, 2), d(1, 3), d(2, 1), d(2, 5)])
        );
        assert!(ab.descends(&a) && ab.descends(&b) && !a.descends(&b));
    }

    #[test]
    fn descends_counts_cloud_against_vector() {
        let big = CausalContext::from_dots([d(1, 1), d(1, 3)]);
        let small = CausalContext::from_dots([d(1, 1)]);
        assert!(big.descends(&small));
        let gap = CausalContext::from_dots([d(1, 1), d(1, 2)]);
        assert!(!big.descends(&gap));
    }

    #[test]
    fn next_dot_follows_cloud() {
        let ctx = CausalContext::from_dots([d(7, 1), d(7, 4)]);
        assert_eq!(ctx.next_dot(Actor(7)), Some(d(7, 5)));
        assert_eq!(ctx.next_dot(Actor(8)), Some(d(8, 1)));
        assert_eq!(
            CausalContext::from_dots([d(7, u64::MAX)]).next_dot(Actor(7)),
            None
        );
    }

    #[test]
    fn join_near_the_top_of_the_counter_range_does_not_overflow() {
        // Found by fuzzing: folding the cloud computed `vv + 1` at u64::MAX.
        let vv = VersionVector::from_sorted(vec![(Actor(1), u64::MAX - 2)]).unwrap();
        let mut a = CausalContext::from_parts(vv, [d(1, u64::MAX)].into()).unwrap();
        let vv = VersionVector::from_sorted(vec![(Actor(1), u64::MAX - 1)]).unwrap();
        let b = CausalContext::from_parts(vv, Default::default()).unwrap();
        a.join(&b);
        assert_eq!(a.vv().get(Actor(1)), u64::MAX);
        assert!(a.cloud().is_empty());
    }

    #[test]
    fn from_parts_rejects_overlap() {
        let vv = VersionVector::from_sorted(vec![(Actor(1), 2)]).unwrap();
        assert!(CausalContext::from_parts(vv.clone(), [d(1, 2)].into()).is_err());
        assert!(CausalContext::from_parts(vv.clone(), [d(1, 3)].into()).is_err());
        assert!(CausalContext::from_parts(vv, [d(1, 4)].into()).is_ok());
        assert!(VersionVector::from_sorted(vec![(Actor(2), 1), (Actor(1), 1)]).is_err());
    }
}
