//! Placement: which `n_max` nodes hold each partition.
//!
//! # Properties
//!
//! For `Q` partitions, `n_max` replicas each, and the storage nodes (capacity > 0) of a
//! roster spread over `Z` zones:
//!
//! 1. **Valid sets.** Every partition gets `n_max` distinct nodes spanning
//!    `min(n_max, Z)` zones, and every prefix of its ordered set spans as many zones as
//!    it can (so a bucket with `n < n_max`, which uses the first `n`, is spread too).
//! 2. **Proportional.** Node `i` holds exactly `quota_i` slots, the bounded Webster
//!    apportionment of `n_max x Q` by capacity (see [`crate::quota`]): within one
//!    slot of `n_max x Q x capacity_i / total` when no bound binds; `Q` for a node whose
//!    share would exceed one replica per partition; zone caps or floors split
//!    proportionally inside the zone.
//! 3. **Minimal movement.** Among all assignments with properties 1 and 2, the one
//!    returned keeps the largest number of (partition, node) pairs of the previous
//!    assignment. Slots move only where the quotas or the zone rules force them to.
//! 4. **Deterministic.** Inputs are sorted maps and every loop runs in index order;
//!    nothing depends on hashing order, so equal inputs give equal outputs.
//!
//! # How
//!
//! First the quotas (property 2). Then a flow network in Garage's shape:
//!
//! ```text
//!            cap min(n,Z)            cap 1                cap 1, cost -1 if kept    cap quota_i
//! source ──────────────► up(p) ──────────────► (p,z) ─────────────────────► node i ─────────► sink
//!        ──────────────► low(p) ─────────────►        (one edge per node i of zone z)
//!            cap n-min(n,Z)      cap n-min(n,Z)
//! ```
//!
//! A flow of value `n x Q` is exactly an assignment: `up(p)` sends `min(n, Z)` units
//! through distinct zones, `low(p)` the rest through any zone, each `(p,z) -> i` edge
//! carries at most one unit (distinct nodes), and node edges carry the quotas. Such a flow
//! exists for any quotas within the bounds: list the slots node by node, grouped by zone,
//! and deal slot `j` to partition `j mod Q` (McNaughton's wrap-around). A node's at most
//! `Q` consecutive slots land in distinct partitions; with `Z >= n` a zone's at most `Q`
//! slots do too; with `Z < n` a zone's at least `Q` slots reach every partition.
//!
//! Edges to a node that held the partition before cost -1, so the minimum-cost maximum
//! flow (`flow.rs`) is the assignment that keeps the most pairs (property 3). A greedy
//! pass with repair swaps would be simpler but cannot promise 3; the flow certifies it
//! (no negative cycle remains).
//!
//! Among equally cheap flows the solver keeps the first edges it finds, so each
//! partition lists its zones and nodes in rendezvous-hash order of `(partition, node)`.
//! That varies every node's co-replicas from partition to partition; in plain index order
//! nodes 1 and 2 would share every partition until one was full, and removing node 2 would
//! then force node 1's slots to move too.
//!
//! # What moves, measured
//!
//! Property 3 is exact, but how much *must* move depends on the quotas and the zone
//! rules. Over thousands of random clusters (see `tests/ring/properties.rs`, which prints
//! the figures): adding a node moves exactly the slots the new node gains whenever no
//! bound binds; removing a node moves exactly its slots within one zone, and up to about
//! 1.2 times them across zones (the survivors' new shares need not fall on the removed
//! node's partitions); when a zone rule binds (a zone that must now appear in every
//! partition, say), the rule decides and more moves.
//!
//! Last, each set is ordered: nodes that stay keep their relative order (so the nodes
//! that already hold the data stay first), new nodes follow in rendezvous-hash order of
//! `(partition, node)` (which spreads first replicas evenly), and a stable pass moves
//! the first node of an unseen zone forward while any remains (the prefix rule of 1).

use std::collections::{BTreeMap, BTreeSet};

use crate::flow::Network;
use crate::partition::rendezvous;
use crate::quota::{self, Member};
use crate::{LayoutConfig, NodeId, NodeRole, PartitionId, PlanError, Zone};

/// Places every partition for `roster`, keeping as much of `previous` (partition-major,
/// `Q x n_max` ids, or empty) as the rules allow. Returns `Q x n_max` ids.
pub(crate) fn assign(
    config: LayoutConfig,
    roster: &BTreeMap<NodeId, NodeRole>,
    previous: &[NodeId],
) -> Result<Vec<NodeId>, PlanError> {
    let problem = Problem::new(config, roster, previous)?;
    let quotas = problem.quotas()?;
    let (mut network, pairs) = problem.network(&quotas);
    let needed = (problem.q * problem.n) as u64;
    let placed = network.min_cost_max_flow(SOURCE, SINK);
    if placed != needed {
        return Err(PlanError::Unplaceable { placed, needed });
    }
    let mut out = Vec::with_capacity(problem.q * problem.n);
    for (p, candidates) in pairs.iter().enumerate() {
        let chosen = candidates
            .iter()
            .filter(|&&(_, edge)| network.flow(edge) > 0);
        let chosen: Vec<usize> = chosen.map(|&(member, _)| member).collect();
        out.extend(problem.order(p, chosen));
    }
    Ok(out)
}

const SOURCE: usize = 0;
const SINK: usize = 1;

struct Problem<'a> {
    q: usize,
    n: usize,
    /// Storage nodes, sorted by id.
    ids: Vec<NodeId>,
    members: Vec<Member>,
    /// Member indices per zone.
    zones: Vec<Vec<usize>>,
    previous: &'a [NodeId],
}

impl<'a> Problem<'a> {
    fn new(
        config: LayoutConfig,
        roster: &BTreeMap<NodeId, NodeRole>,
        previous: &'a [NodeId],
    ) -> Result<Self, PlanError> {
        let storage: Vec<(&NodeId, &NodeRole)> = roster
            .iter()
            .filter(|(_, role)| role.stores_data())
            .collect();
        let (q, n) = (
            usize::from(config.partitions()),
            usize::from(config.replication()),
        );
        if storage.is_empty() {
            return Err(PlanError::NoCapacity);
        }
        if storage.len() < n {
            let (needed, available) = (config.replication(), storage.len());
            return Err(PlanError::NotEnoughNodes { needed, available });
        }
        let zone_names: Vec<&Zone> = storage
            .iter()
            .map(|(_, role)| &role.zone)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let previous = if previous.len() == q * n {
            previous
        } else {
            &[]
        };
        let mut held: BTreeMap<NodeId, u32> = BTreeMap::new();
        for id in previous {
            *held.entry(*id).or_default() += 1;
        }
        let mut zones = vec![Vec::new(); zone_names.len()];
        let mut members = Vec::with_capacity(storage.len());
        for (i, (id, role)) in storage.iter().enumerate() {
            let zone = zone_names
                .binary_search(&&role.zone)
                .expect("zone_names holds every storage node's zone");
            zones[zone].push(i);
            let previous = held.get(id).copied().unwrap_or(0);
            let capacity = role.capacity.0;
            members.push(Member {
                zone,
                capacity,
                previous,
            });
        }
        let ids = storage.iter().map(|(id, _)| **id).collect();
        Ok(Self {
            q,
            n,
            ids,
            members,
            zones,
            previous,
        })
    }

    fn quotas(&self) -> Result<Vec<u32>, PlanError> {
        let (q, n) = (small(self.q), small(self.n));
        quota::quotas(&self.members, self.zones.len(), q, n).ok_or(PlanError::Unplaceable {
            placed: 0,
            needed: (self.q * self.n) as u64,
        })
    }

    fn previous_of(&self, p: usize) -> &[NodeId] {
        self.previous
            .get(p * self.n..(p + 1) * self.n)
            .unwrap_or(&[])
    }

    /// The network, and for each partition its `(member, edge)` candidate pairs.
    fn network(&self, quotas: &[u32]) -> (Network, Vec<Vec<(usize, usize)>>) {
        let (q, z) = (self.q, self.zones.len());
        let spread = self.n.min(z);
        let spare = self.n - spread;
        let up = |p: usize| 2 + p;
        let low = |p: usize| 2 + q + p;
        let cell = |p: usize, zone: usize| 2 + 2 * q + p * z + zone;
        let member = |i: usize| 2 + 2 * q + q * z + i;
        let mut net = Network::with_vertices(2 + 2 * q + q * z + self.members.len());
        let mut pairs = Vec::with_capacity(q);
        for p in 0..q {
            net.add_edge(SOURCE, up(p), small(spread), 0);
            if spare > 0 {
                net.add_edge(SOURCE, low(p), small(spare), 0);
            }
            let previous = self.previous_of(p);
            let mut candidates = Vec::with_capacity(self.members.len());
            for (zone, in_zone) in self.ranked_zones(p) {
                net.add_edge(up(p), cell(p, zone), 1, 0);
                if spare > 0 {
                    net.add_edge(low(p), cell(p, zone), small(spare), 0);
                }
                for i in in_zone {
                    let cost = if previous.contains(&self.ids[i]) {
                        -1
                    } else {
                        0
                    };
                    candidates.push((i, net.add_edge(cell(p, zone), member(i), 1, cost)));
                }
            }
            pairs.push(candidates);
        }
        for (i, &quota) in quotas.iter().enumerate() {
            net.add_edge(member(i), SINK, quota, 0);
        }
        (net, pairs)
    }

    /// Partition `p`'s zones with their members, in the order the flow tries them: members
    /// by rendezvous hash of `(p, node)`, zones by their first member's hash. Among equally
    /// cheap flows the solver takes the first edges it finds, so this order is what makes
    /// each node's partners vary from partition to partition (in index order, node 1 and
    /// node 2 would share every partition until one is full): when a node leaves, its
    /// partitions then have replacements in every other node.
    fn ranked_zones(&self, p: usize) -> Vec<(usize, Vec<usize>)> {
        let hash = |i: usize| (rendezvous(partition_id(p), self.ids[i]), i);
        let mut zones: Vec<(usize, Vec<usize>)> = self
            .zones
            .iter()
            .enumerate()
            .map(|(zone, members)| {
                let mut members = members.clone();
                members.sort_by_key(|&i| hash(i));
                (zone, members)
            })
            .collect();
        zones.sort_by_key(|(_, members)| members.first().map(|&i| hash(i)));
        zones
    }

    /// Orders partition `p`'s chosen members: stayers in their old order, then newcomers
    /// by rendezvous hash, then a stable pass that brings unseen zones forward.
    fn order(&self, p: usize, chosen: Vec<usize>) -> Vec<NodeId> {
        let partition = partition_id(p);
        let previous = self.previous_of(p);
        let rank = |i: &usize| {
            let id = self.ids[*i];
            let old = previous.iter().position(|x| *x == id).unwrap_or(self.n);
            (old, rendezvous(partition, id), id)
        };
        let mut rest = chosen;
        rest.sort_by_key(rank);
        let mut seen_zones = Vec::with_capacity(self.n);
        let mut out = Vec::with_capacity(self.n);
        while !rest.is_empty() {
            let fresh = rest
                .iter()
                .position(|i| !seen_zones.contains(&self.members[*i].zone));
            let next = rest.remove(fresh.unwrap_or(0));
            seen_zones.push(self.members[next].zone);
            out.push(self.ids[next]);
        }
        out
    }
}

fn partition_id(p: usize) -> PartitionId {
    PartitionId(u16::try_from(p).expect("Q <= 4096"))
}

fn small(x: usize) -> u32 {
    u32::try_from(x).expect("placement counts are at most Q x n_max <= 4096 x 8")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::{Capacity, Zone};

    fn roster(nodes: &[(u8, u64)]) -> BTreeMap<NodeId, NodeRole> {
        let role = |zone: u8, capacity| {
            let zone = Zone::new(format!("z{zone}")).expect("short");
            NodeRole::new("addr", zone, Capacity(capacity))
        };
        let nodes = nodes.iter().enumerate();
        nodes
            .map(|(i, &(zone, cap))| (NodeId(i as u64), role(zone, cap)))
            .collect()
    }

    proptest! {
        /// Placement's own networks, after a roster change: the flow is maximum and no
        /// negative residual cycle remains, so no assignment with these quotas keeps more.
        #[test]
        fn placement_flows_are_certified_optimal(
            n in 1u8..=3,
            before in prop::collection::vec((0u8..3, 1u64..4), 3..7),
            after in prop::collection::vec((0u8..3, 1u64..4), 3..7),
        ) {
            let config = LayoutConfig::new(16, n).expect("valid");
            let previous = assign(config, &roster(&before), &[]).expect("placeable");
            let after = roster(&after);
            let problem = Problem::new(config, &after, &previous).expect("enough nodes");
            let quotas = problem.quotas().expect("placeable");
            let (mut network, _) = problem.network(&quotas);
            let placed = network.min_cost_max_flow(SOURCE, SINK);
            prop_assert_eq!(placed, 16 * u64::from(n));
            prop_assert!(!network.has_negative_cycle());
        }
    }
}
