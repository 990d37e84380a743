//! Which nodes serve a request: the one place the core asks the ring.

use cairn_ring::{Layout, NodeId, PartitionId};

/// One node a request goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    /// The node.
    pub node: NodeId,
    /// Whether it is one of the partition's first `n` replicas.
    pub primary: bool,
    /// For a fallback: the primary it stands in for (its copy is a hint for that node).
    pub hint_for: Option<NodeId>,
}

/// The sloppy-quorum target set: each healthy primary, and for each unhealthy one the
/// next healthy fallback in the preference list, keeping a hint for it.
pub fn targets(
    layout: &Layout,
    partition: PartitionId,
    n: u8,
    healthy: impl Fn(NodeId) -> bool,
) -> Vec<Target> {
    let list = layout.preference_list(partition, usize::from(n), &healthy);
    let mut fallbacks = list.fallbacks.iter().copied();
    let mut out = Vec::with_capacity(usize::from(n));
    for primary in list.primaries {
        let node = primary.node;
        if primary.healthy {
            out.push(Target {
                node,
                primary: true,
                hint_for: None,
            });
        } else if let Some(stand_in) = fallbacks.next() {
            out.push(Target {
                node: stand_in,
                primary: false,
                hint_for: Some(node),
            });
        }
    }
    out
}
