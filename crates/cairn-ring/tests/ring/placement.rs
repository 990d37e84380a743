//! Table-driven placement: small clusters, their exact slot counts, and for the tiniest,
//! their exact replica sets.

use std::collections::BTreeMap;

use cairn_ring::{NodeId, PartitionId};

use crate::{check_placement, committed};

struct Case {
    name: &'static str,
    q: u16,
    n: u8,
    /// `(id, zone, capacity)`.
    nodes: &'static [(u64, &'static str, u64)],
    /// Slots per node, in node order.
    slots: &'static [u32],
    /// Zones each partition spans.
    zones_per_partition: usize,
}

const CASES: &[Case] = &[
    Case {
        name: "3 nodes, 1 zone, Q=16: every node in every partition",
        q: 16,
        n: 3,
        nodes: &[(1, "a", 10), (2, "a", 10), (3, "a", 10)],
        slots: &[16, 16, 16],
        zones_per_partition: 1,
    },
    Case {
        name: "3 nodes, 3 zones, Q=64",
        q: 64,
        n: 3,
        nodes: &[(1, "a", 10), (2, "b", 10), (3, "c", 10)],
        slots: &[64, 64, 64],
        zones_per_partition: 3,
    },
    Case {
        name: "3 nodes, 3 zones, unequal capacity: one per partition regardless",
        q: 16,
        n: 3,
        nodes: &[(1, "a", 1), (2, "b", 5), (3, "c", 50)],
        slots: &[16, 16, 16],
        zones_per_partition: 3,
    },
    Case {
        name: "4 nodes, 1 zone, Q=16: 48 slots, 12 each",
        q: 16,
        n: 3,
        nodes: &[(1, "a", 10), (2, "a", 10), (3, "a", 10), (4, "a", 10)],
        slots: &[12, 12, 12, 12],
        zones_per_partition: 1,
    },
    Case {
        name: "5 nodes, 2 zones, unequal capacities, Q=64: node 5 capped at one per partition",
        q: 64,
        n: 3,
        // Capacity 800 would give 24, 48, 24, 24, 72; node 5 holds at most 64, and the
        // other 128 slots split 100:200:100:100 (25.6, 51.2, 25.6, 25.6).
        nodes: &[
            (1, "a", 100),
            (2, "a", 200),
            (3, "a", 100),
            (4, "b", 100),
            (5, "b", 300),
        ],
        slots: &[26, 51, 26, 25, 64],
        zones_per_partition: 2,
    },
    Case {
        name: "5 nodes, 2 zones, unequal capacities, Q=16",
        q: 16,
        n: 3,
        nodes: &[
            (1, "a", 100),
            (2, "a", 200),
            (3, "a", 100),
            (4, "b", 100),
            (5, "b", 300),
        ],
        slots: &[7, 13, 6, 6, 16],
        zones_per_partition: 2,
    },
    Case {
        name: "5 nodes, 2 zones, the small zone must still be in every partition",
        q: 64,
        n: 3,
        // Zone b's share would be 192/41 ~ 4.7 slots, but with 2 zones < 3 replicas every
        // partition spans both zones: node 5 holds 64, zone a the other 128.
        nodes: &[
            (1, "a", 10),
            (2, "a", 10),
            (3, "a", 10),
            (4, "a", 10),
            (5, "b", 1),
        ],
        slots: &[32, 32, 32, 32, 64],
        zones_per_partition: 2,
    },
    Case {
        name: "6 nodes, 3 zones of unequal size: a zone holds at most one replica per partition",
        q: 64,
        n: 3,
        nodes: &[
            (1, "a", 10),
            (2, "a", 10),
            (3, "a", 10),
            (4, "a", 10),
            (5, "b", 10),
            (6, "c", 10),
        ],
        slots: &[16, 16, 16, 16, 64, 64],
        zones_per_partition: 3,
    },
    Case {
        name: "gateways (capacity 0) hold nothing",
        q: 16,
        n: 2,
        nodes: &[(1, "a", 10), (2, "b", 10), (3, "a", 0), (4, "b", 10)],
        slots: &[16, 8, 0, 8],
        zones_per_partition: 2,
    },
];

#[test]
fn slot_counts_and_zone_spread() {
    for case in CASES {
        let layout = committed(case.q, case.n, case.nodes);
        check_placement(&layout).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let slots: Vec<u32> = layout.slot_counts().values().copied().collect();
        assert_eq!(slots, case.slots, "{}", case.name);
        for p in layout.partitions() {
            let zones: std::collections::BTreeSet<_> = layout
                .replicas(p)
                .iter()
                .map(|id| layout.node(*id).map(|role| role.zone.clone()))
                .collect();
            assert_eq!(zones.len(), case.zones_per_partition, "{}: {p}", case.name);
        }
    }
}

fn sets(layout: &cairn_ring::Layout) -> Vec<Vec<u64>> {
    let partitions = layout.partitions();
    partitions
        .map(|p| layout.replicas(p).iter().map(|id| id.0).collect())
        .collect()
}

#[test]
fn exact_sets_two_zones_two_replicas() {
    let layout = committed(4, 2, &[(1, "a", 1), (2, "a", 1), (3, "b", 1), (4, "b", 1)]);
    // Each partition has one node of each zone; each node holds two of the eight slots,
    // with two different partners (so losing any node spreads its load).
    assert_eq!(sets(&layout), [[3, 1], [3, 2], [2, 4], [1, 4]]);
}

#[test]
fn exact_sets_three_zones_three_replicas() {
    let layout = committed(8, 3, &[(1, "a", 1), (2, "b", 1), (3, "c", 1)]);
    // Every set is {1, 2, 3}; only the order (rendezvous hash per partition) differs,
    // which spreads first replicas: nodes 1, 2, 3 lead 4, 1 and 3 partitions.
    let expected = [
        [3, 1, 2],
        [3, 2, 1],
        [2, 3, 1],
        [1, 3, 2],
        [1, 2, 3],
        [1, 3, 2],
        [1, 3, 2],
        [1, 3, 2],
    ];
    assert_eq!(sets(&layout), expected);
}

#[test]
fn exact_sets_after_adding_a_node() {
    let mut layout = committed(4, 2, &[(1, "a", 1), (2, "a", 1), (3, "b", 1), (4, "b", 1)]);
    layout
        .stage_node(NodeId(5), crate::role("a", 1), crate::ADMIN)
        .expect("stages");
    let plan = layout.commit().expect("placeable");
    // Zone a's 4 slots now split 2:1:1 or 1:2:1 ...; node 5 takes one slot from a node
    // of its zone, and nothing else moves.
    assert_eq!(plan.moved_slots(), 1);
    let moved: Vec<PartitionId> = plan.moves().iter().map(|m| m.partition).collect();
    assert_eq!(moved.len(), 1);
    let after = sets(&layout);
    let counts: BTreeMap<u64, usize> = [1, 2, 3, 4, 5]
        .into_iter()
        .map(|id| (id, after.iter().flatten().filter(|x| **x == id).count()))
        .collect();
    assert_eq!(counts.values().sum::<usize>(), 8);
    assert_eq!((counts[&3], counts[&4], counts[&5]), (2, 2, 1));
    check_placement(&layout).expect("valid");
}

#[test]
fn one_node_one_replica() {
    let layout = committed(1, 1, &[(7, "solo", 1)]);
    assert_eq!(sets(&layout), [[7]]);
}
