//! Preference lists: who serves a partition right now, given who is healthy.

use serde::{Deserialize, Serialize};

use crate::{NodeId, PartitionId};

/// One of a partition's first `n` replicas, with its health when the list was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Primary {
    /// The replica.
    pub node: NodeId,
    /// Whether the health predicate accepted it.
    pub healthy: bool,
}

/// Where a partition's requests go: its primaries, healthy or not, then the healthy
/// fallbacks that stand in for unhealthy primaries (sloppy quorum, DESIGN.md §3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreferenceList {
    /// The partition.
    pub partition: PartitionId,
    /// The first `n` nodes of the partition's replica set, in order.
    pub primaries: Vec<Primary>,
    /// Every other healthy storage node, in the partition's rendezvous-hash order.
    pub fallbacks: Vec<NodeId>,
}

/// A node a write goes to, and the primary it stands in for, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// Where the write goes.
    pub node: NodeId,
    /// The unhealthy primary whose replica this is: the write carries a hint naming it,
    /// and the fallback hands the data back when the primary returns.
    pub hint_for: Option<NodeId>,
}

impl PreferenceList {
    /// The healthy primaries, in order (what `pr` and `pw` count).
    pub fn healthy_primaries(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.primaries.iter().filter(|p| p.healthy).map(|p| p.node)
    }

    /// The sloppy-quorum targets: each healthy primary itself; each unhealthy primary,
    /// in order, replaced by the next unused fallback with a hint naming it. Shorter than
    /// `n` only when fallbacks run out.
    pub fn sloppy_targets(&self) -> Vec<Target> {
        let mut fallbacks = self.fallbacks.iter();
        let stand_in = |primary: &Primary| {
            if primary.healthy {
                return Some(Target {
                    node: primary.node,
                    hint_for: None,
                });
            }
            fallbacks.next().map(|node| Target {
                node: *node,
                hint_for: Some(primary.node),
            })
        };
        self.primaries.iter().filter_map(stand_in).collect()
    }
}
