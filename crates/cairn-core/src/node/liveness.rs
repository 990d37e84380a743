//! Gossiped liveness, in the manner of Cassandra's gossiper: every node bumps a heartbeat
//! each gossip round and sends its table of `(node, generation, heartbeat)` with its
//! layout to the next peer in turn; tables merge by maximum. A node whose heartbeat has
//! not moved for `liveness_timeout_ms` is down for routing (one never heard from counts
//! from the gossip round that first found it in the layout), and so is one that let a
//! request time out here until it is heard from again (request timeouts feed the
//! detector). A restarted node starts a higher generation, so its beats win at once: it
//! rejoins without an operator. The generation is the clock at start, moved past any
//! earlier run's that gossip brings back (a start with the clock behind an earlier one's
//! would otherwise never be heard).

use std::collections::BTreeMap;

use cairn_ring::NodeId;

use super::Node;
use crate::store::Store;

/// One node's heartbeat as this node knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Beat {
    /// `(generation, heartbeat)`: ordered, so a restart (higher generation) wins.
    pub(super) version: (u64, u64),
    /// This node's clock when the version last moved.
    pub(super) moved_ms: u64,
}

/// The version of a layout node not heard from yet: below every heartbeat (which starts
/// at 1), and never gossiped.
const UNHEARD: (u64, u64) = (0, 0);

/// The table this node gossips.
#[derive(Clone, Debug, Default)]
pub(super) struct Liveness {
    pub(super) beats: BTreeMap<NodeId, Beat>,
}

impl<S: Store> Node<S> {
    /// Whether routing may use `node` now: not timed out here since last heard from, and
    /// its heartbeat moved within `liveness_timeout_ms` (a layout node never heard from
    /// counts from the first gossip round that found it in the layout).
    pub fn is_healthy(&self, node: NodeId, now_ms: u64) -> bool {
        if node == self.cfg.id {
            return true;
        }
        if self.down.contains(&node) {
            return false;
        }
        match self.liveness.beats.get(&node) {
            Some(beat) => now_ms.saturating_sub(beat.moved_ms) <= self.cfg.liveness_timeout_ms,
            None => true,
        }
    }

    /// Starts the clock on every layout node not heard from yet, as if it had beaten now.
    /// Without it a peer that died before its first heartbeat reached this node (killed
    /// just after joining, or while this node was starting) would count as up forever:
    /// its placeholder `(0, 0)` is below every real heartbeat, so the first one heard wins.
    pub(super) fn await_unheard(&mut self, now_ms: u64) {
        let me = self.cfg.id;
        for (node, _) in self.layout.nodes() {
            if node != me {
                self.liveness.beats.entry(node).or_insert(Beat {
                    version: UNHEARD,
                    moved_ms: now_ms,
                });
            }
        }
    }

    /// Bumps this node's heartbeat; the table to gossip.
    pub(super) fn beat(&mut self, now_ms: u64) -> Vec<(NodeId, u64, u64)> {
        let me = self.cfg.id;
        let generation = self.liveness_generation;
        let entry = self.liveness.beats.entry(me).or_insert(Beat {
            version: (generation, 0),
            moved_ms: now_ms,
        });
        entry.version = (generation, entry.version.1 + 1);
        entry.moved_ms = now_ms;
        self.liveness
            .beats
            .iter()
            .filter(|(_, b)| b.version != UNHEARD)
            .map(|(n, b)| (*n, b.version.0, b.version.1))
            .collect()
    }

    /// Moves this node's generation past `version`, a heartbeat gossiped for it, when that
    /// is ahead of its own: it can only be an earlier run's. The generation starts as the
    /// clock at start, which can be behind an earlier start's (a clock stepped back, or an
    /// earlier run with its clock ahead); peers keep the higher version, so without this
    /// they would see this node's heartbeat never move, and route around it until it
    /// restarted with a later clock.
    fn outrun_earlier_run(&mut self, version: (u64, u64)) {
        let me = self.cfg.id;
        let mine = self
            .liveness
            .beats
            .get(&me)
            .map_or((self.liveness_generation, 0), |b| b.version);
        if version > mine {
            self.liveness_generation = version.0.saturating_add(1);
        }
    }

    /// Merges a gossiped table.
    pub(super) fn merge_beats(&mut self, now_ms: u64, theirs: &[(NodeId, u64, u64)]) {
        for &(node, generation, beat) in theirs.iter().take(super::GOSSIP_NODES_MAX) {
            let version = (generation, beat);
            if node == self.cfg.id {
                self.outrun_earlier_run(version);
                continue;
            }
            let known = self.liveness.beats.get(&node).map(|b| b.version);
            if known.is_none_or(|k| version > k) {
                self.liveness.beats.insert(
                    node,
                    Beat {
                        version,
                        moved_ms: now_ms,
                    },
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use cairn_ring::{Layout, LayoutConfig, NodeId};

    use crate::{Config, MemStore, Node};

    fn node_started_at(now_ms: u64) -> Node<MemStore> {
        let layout = Layout::new(LayoutConfig::new(16, 3).unwrap());
        Node::new(Config::new(NodeId(1), 7), layout, MemStore::new(), now_ms).unwrap()
    }

    /// This node's own `(generation, heartbeat)` after one more beat.
    fn own_version(node: &mut Node<MemStore>, now_ms: u64) -> (u64, u64) {
        let table = node.beat(now_ms);
        let (_, generation, beat) = table.into_iter().find(|(n, ..)| *n == NodeId(1)).unwrap();
        (generation, beat)
    }

    #[test]
    fn gossip_about_an_earlier_run_ahead_of_this_one_moves_the_generation_past_it() {
        let mut node = node_started_at(1_000);
        assert_eq!(own_version(&mut node, 1_000), (1_000, 1));
        // Its own beats echoed back, and an older run's, change nothing.
        node.merge_beats(1_001, &[(NodeId(1), 1_000, 1), (NodeId(1), 999, 50)]);
        assert_eq!(own_version(&mut node, 1_002), (1_000, 2));
        // An earlier run that started in the same millisecond and beat longer.
        node.merge_beats(1_003, &[(NodeId(1), 1_000, 40)]);
        let moved = own_version(&mut node, 1_004);
        assert!(moved > (1_000, 40), "{moved:?}");
        // An earlier run whose clock was ahead.
        node.merge_beats(1_005, &[(NodeId(1), 21_000, 3)]);
        let moved = own_version(&mut node, 1_006);
        assert!(moved > (21_000, 3), "{moved:?}");
    }

    #[test]
    fn a_layout_node_never_heard_from_is_down_once_the_liveness_timeout_passes() {
        let layout = crate::node::test_util::committed_layout(3);
        let mut node = Node::new(Config::new(NodeId(1), 7), layout, MemStore::new(), 0).unwrap();
        let timeout = node.cfg.liveness_timeout_ms;
        let round = node.cfg.gossip_interval_ms;
        // Node 2 beats through gossip; node 3 never does (it died before its first beat
        // reached here).
        let mut beat = 0;
        let mut now = 0;
        while now <= 3 * timeout {
            node.handle_timeout(now);
            beat += 1;
            node.merge_beats(now, &[(NodeId(2), 5, beat)]);
            now += round;
        }
        assert!(node.is_healthy(NodeId(2), now));
        assert!(!node.is_healthy(NodeId(3), now), "never heard from, yet up");
        // The placeholder is not gossiped, and the first real heartbeat wins over it.
        let table = node.beat(now);
        assert!(table.iter().all(|(n, ..)| *n != NodeId(3)), "{table:?}");
        node.merge_beats(now, &[(NodeId(3), 1, 1)]);
        assert!(node.is_healthy(NodeId(3), now));
    }
}
