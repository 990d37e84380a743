//! Dot stores: the building blocks of every causal type (Almeida et al., "Delta State
//! Replicated Data Types", 2018).
//!
//! A dot store holds dots (and possibly values under them); its meaning comes from a
//! [`CausalContext`] kept beside it. Joining two stores keeps a dot when both sides hold
//! it, or when one side holds it and the other side's context has never seen it: a dot the
//! other side *has* seen but no longer holds was removed there. This one rule gives
//! add-wins sets, enable-wins flags, multi-value registers and reset-remove maps.

use std::collections::BTreeMap;

use smallvec::SmallVec;

use crate::causal::{CausalContext, Dot, InvalidState};

/// Operations every dot store supports. Stores never hold empty children.
pub(crate) trait DotStore: Clone + PartialEq {
    /// True when the store holds no dot.
    fn is_empty(&self) -> bool;
    /// Joins `other` into `self`, given the context beside each.
    fn join(&mut self, self_ctx: &CausalContext, other: &Self, other_ctx: &CausalContext);
    /// Drops every dot that `ctx` holds.
    fn remove_covered(&mut self, ctx: &CausalContext);
    /// Calls `f` on every dot held.
    fn for_each_dot(&self, f: &mut dyn FnMut(Dot));
}

/// A sorted set of dots; most members of a set hold exactly one, so one is inline.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct DotSet(SmallVec<[Dot; 1]>);

impl DotSet {
    /// The set holding one dot.
    pub fn single(dot: Dot) -> Self {
        DotSet(smallvec::smallvec![dot])
    }

    /// Builds a set from dots that are sorted and unique.
    pub fn from_sorted(dots: Vec<Dot>) -> Result<Self, InvalidState> {
        if !dots.windows(2).all(|w| w[0] < w[1]) {
            return Err(InvalidState("dots not sorted and unique"));
        }
        Ok(DotSet(SmallVec::from_vec(dots)))
    }

    /// The dots, in order.
    pub fn iter(&self) -> impl Iterator<Item = Dot> + '_ {
        self.0.iter().copied()
    }

    /// Number of dots.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when no dot is held.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `dot` is held.
    pub fn contains(&self, dot: Dot) -> bool {
        self.0.binary_search(&dot).is_ok()
    }
}

impl DotStore for DotSet {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn join(&mut self, self_ctx: &CausalContext, other: &Self, other_ctx: &CausalContext) {
        if self.0 == other.0 {
            return;
        }
        let keep = join_sorted(&self.0, self_ctx, &other.0, other_ctx, |d| *d, |a, _| a);
        self.0 = keep;
    }

    fn remove_covered(&mut self, ctx: &CausalContext) {
        self.0.retain(|d| !ctx.contains(*d));
    }

    fn for_each_dot(&self, f: &mut dyn FnMut(Dot)) {
        self.0.iter().for_each(|d| f(*d));
    }
}

/// A map from dots to immutable values (a value is written once, under a fresh dot).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DotFun<V>(SmallVec<[(Dot, V); 1]>);

impl<V> Default for DotFun<V> {
    fn default() -> Self {
        DotFun(SmallVec::new())
    }
}

impl<V: Clone + PartialEq> DotFun<V> {
    /// The store holding one value under `dot`.
    pub fn single(dot: Dot, value: V) -> Self {
        DotFun(smallvec::smallvec![(dot, value)])
    }

    /// Builds a store from entries sorted by unique dot.
    pub fn from_sorted(entries: Vec<(Dot, V)>) -> Result<Self, InvalidState> {
        if !entries.windows(2).all(|w| w[0].0 < w[1].0) {
            return Err(InvalidState("dots not sorted and unique"));
        }
        Ok(DotFun(SmallVec::from_vec(entries)))
    }

    /// `(dot, value)` pairs in dot order.
    pub fn iter(&self) -> impl Iterator<Item = (Dot, &V)> + '_ {
        self.0.iter().map(|(d, v)| (*d, v))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there is no entry.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Keeps only each actor's newest dot.
    pub(crate) fn keep_newest_per_actor(&mut self) {
        // Sorted by dot, hence by actor then counter: an entry survives when the next one
        // belongs to another actor.
        let entries = std::mem::take(&mut self.0);
        let mut kept: SmallVec<[(Dot, V); 1]> = SmallVec::with_capacity(entries.len());
        let mut it = entries.into_iter().peekable();
        while let Some(entry) = it.next() {
            if it.peek().is_none_or(|next| next.0.actor != entry.0.actor) {
                kept.push(entry);
            }
        }
        self.0 = kept;
    }
}

impl<V: Clone + PartialEq> DotStore for DotFun<V> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn join(&mut self, self_ctx: &CausalContext, other: &Self, other_ctx: &CausalContext) {
        if self.0 == other.0 {
            return;
        }
        // The same dot always carries the same value, so either side's copy will do.
        let keep = join_sorted(&self.0, self_ctx, &other.0, other_ctx, |e| e.0, |a, _| a);
        self.0 = keep;
    }

    fn remove_covered(&mut self, ctx: &CausalContext) {
        self.0.retain(|(d, _)| !ctx.contains(*d));
    }

    fn for_each_dot(&self, f: &mut dyn FnMut(Dot)) {
        self.0.iter().for_each(|(d, _)| f(*d));
    }
}

/// A map from keys to nested dot stores, all sharing one context.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DotMap<K: Ord, S>(pub(crate) BTreeMap<K, S>);

impl<K: Ord, S> DotMap<K, S> {
    /// A map over `entries`; the owning type's `from_parts` checks what it holds.
    pub fn new(entries: BTreeMap<K, S>) -> Self {
        DotMap(entries)
    }

    /// Entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &S)> + '_ {
        self.0.iter()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there is no entry.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<K: Ord, S> Default for DotMap<K, S> {
    fn default() -> Self {
        DotMap(BTreeMap::new())
    }
}

impl<K: Ord + Clone, S: DotStore> DotStore for DotMap<K, S> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn join(&mut self, self_ctx: &CausalContext, other: &Self, other_ctx: &CausalContext) {
        if other.0.is_empty() {
            self.remove_covered(other_ctx);
            return;
        }
        // One in-order pass over our entries, walking theirs alongside: entries both hold
        // join, entries only we hold lose what they removed, and entries only they hold
        // are collected and inserted at the end. No entry of ours moves, so merging states
        // that mostly agree costs little more than reading them.
        let mut theirs = other.0.iter().peekable();
        let mut fresh: Vec<(K, S)> = Vec::new();
        let keep_fresh = |fresh: &mut Vec<(K, S)>, key: &K, store: &S| {
            let mut store = store.clone();
            store.remove_covered(self_ctx);
            if !store.is_empty() {
                fresh.push((key.clone(), store));
            }
        };
        self.0.retain(|key, store| {
            while let Some((k, s)) = theirs.next_if(|(k, _)| *k < key) {
                keep_fresh(&mut fresh, k, s);
            }
            match theirs.next_if(|(k, _)| *k == key) {
                Some((_, s)) => store.join(self_ctx, s, other_ctx),
                None => store.remove_covered(other_ctx),
            }
            !store.is_empty()
        });
        for (k, s) in theirs {
            keep_fresh(&mut fresh, k, s);
        }
        self.0.extend(fresh);
    }

    fn remove_covered(&mut self, ctx: &CausalContext) {
        self.0.retain(|_, s| {
            s.remove_covered(ctx);
            !s.is_empty()
        });
    }

    fn for_each_dot(&self, f: &mut dyn FnMut(Dot)) {
        self.0.values().for_each(|s| s.for_each_dot(f));
    }
}

/// The dot-store join rule over two lists sorted by dot.
fn join_sorted<T: Clone, A: smallvec::Array<Item = T>>(
    mine: &[T],
    mine_ctx: &CausalContext,
    theirs: &[T],
    theirs_ctx: &CausalContext,
    dot: impl Fn(&T) -> Dot,
    pick: impl Fn(T, &T) -> T,
) -> SmallVec<A> {
    let mut out = SmallVec::new();
    let (mut i, mut j) = (0, 0);
    while i < mine.len() || j < theirs.len() {
        let order = match (mine.get(i), theirs.get(j)) {
            (Some(x), Some(y)) => dot(x).cmp(&dot(y)),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        match order {
            std::cmp::Ordering::Equal => {
                out.push(pick(mine[i].clone(), &theirs[j]));
                i += 1;
                j += 1;
            }
            std::cmp::Ordering::Less => {
                if !theirs_ctx.contains(dot(&mine[i])) {
                    out.push(mine[i].clone());
                }
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                if !mine_ctx.contains(dot(&theirs[j])) {
                    out.push(theirs[j].clone());
                }
                j += 1;
            }
        }
    }
    out
}
