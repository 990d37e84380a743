//! Staged changes: roles proposed for the next layout version, merged as a CRDT.
//!
//! # The CRDT
//!
//! A [`Stage`] is a map from node to its last staged [`NodeChange`], each tagged with a
//! [`Stamp`] `(counter, origin)`: a Lamport counter (one more than any counter the stage
//! has seen) and the node that staged it. Merge keeps, per node, the entry with the
//! greater `(stamp, change)`; stamps compare by counter then origin, and the change
//! breaks the (impossible in practice) tie of equal stamps. A per-key maximum under a
//! total order is a join, so for all stages `a`, `b`, `c`:
//!
//! - **commutative:** `a ⊔ b == b ⊔ a`;
//! - **associative:** `(a ⊔ b) ⊔ c == a ⊔ (b ⊔ c)`;
//! - **idempotent:** `a ⊔ a == a`.
//!
//! Changes are per node and whole: two operators who concurrently change one node's zone
//! and its capacity end with one of the two roles (the later stamp), not a blend; each
//! sees the result in the plan before committing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{NodeId, NodeRole};

/// When and where a change was staged. Orders by `counter`, then `origin`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Stamp {
    /// Lamport counter: greater than every counter in the stage it was made against.
    pub counter: u64,
    /// The node where the operator staged the change.
    pub origin: NodeId,
}

/// A staged change to one node.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum NodeChange {
    /// Add the node, or replace its role (address, zone, capacity).
    Set(NodeRole),
    /// Remove the node from the layout.
    Remove,
}

/// A change with its stamp.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Staged {
    /// When and where it was staged.
    pub stamp: Stamp,
    /// What it does.
    pub change: NodeChange,
}

/// The changes staged for the next layout version, by node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stage {
    changes: BTreeMap<NodeId, Staged>,
}

impl Stage {
    /// Whether nothing is staged.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// How many nodes have staged changes.
    pub fn len(&self) -> usize {
        self.changes.len()
    }

    /// The staged changes, by node id.
    pub fn changes(&self) -> impl Iterator<Item = (NodeId, &Staged)> {
        self.changes.iter().map(|(id, staged)| (*id, staged))
    }

    /// The change staged for `node`, if any.
    pub fn change(&self, node: NodeId) -> Option<&Staged> {
        self.changes.get(&node)
    }

    /// The stamp for a new change made at `origin`: one past every counter seen.
    pub fn next_stamp(&self, origin: NodeId) -> Stamp {
        let seen = self.changes.values().map(|s| s.stamp.counter).max();
        Stamp {
            counter: seen.unwrap_or(0).saturating_add(1),
            origin,
        }
    }

    /// Records `change` for `node` at `stamp`, as a merge of a one-entry stage: it takes
    /// effect only if it is greater than what `node` has.
    pub fn insert(&mut self, node: NodeId, stamp: Stamp, change: NodeChange) {
        self.join_entry(node, Staged { stamp, change });
    }

    /// Joins `other` into `self` (see the module docs for the laws).
    pub fn merge(&mut self, other: &Stage) {
        for (node, staged) in &other.changes {
            self.join_entry(*node, staged.clone());
        }
    }

    fn join_entry(&mut self, node: NodeId, staged: Staged) {
        match self.changes.get(&node) {
            Some(mine) if *mine >= staged => {}
            _ => {
                self.changes.insert(node, staged);
            }
        }
    }

    /// `roster` with the staged changes applied.
    pub fn apply_to(&self, roster: &BTreeMap<NodeId, NodeRole>) -> BTreeMap<NodeId, NodeRole> {
        let mut out = roster.clone();
        for (node, staged) in &self.changes {
            match &staged.change {
                NodeChange::Set(role) => out.insert(*node, role.clone()),
                NodeChange::Remove => out.remove(node),
            };
        }
        out
    }

    pub(crate) fn clear(&mut self) {
        self.changes.clear();
    }
}
