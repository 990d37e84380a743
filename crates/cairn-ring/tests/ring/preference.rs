//! Preference lists: primaries with their health, then healthy fallbacks.

use std::collections::BTreeSet;

use cairn_ring::{NodeId, PartitionId, Primary, Target};

use crate::committed;

fn six_nodes() -> cairn_ring::Layout {
    let nodes = [
        (1, "a", 1),
        (2, "a", 1),
        (3, "b", 1),
        (4, "b", 1),
        (5, "c", 1),
        (6, "c", 0),
    ];
    committed(64, 3, &nodes)
}

#[test]
fn primaries_then_healthy_fallbacks() {
    let layout = six_nodes();
    for p in layout.partitions() {
        let replicas = layout.replicas(p);
        let down = replicas[1];
        let list = layout.preference_list(p, 3, |id| id != down);
        let expected: Vec<Primary> = replicas
            .iter()
            .map(|&node| Primary {
                node,
                healthy: node != down,
            })
            .collect();
        assert_eq!(list.primaries, expected);
        // Every other healthy storage node: not the primaries, not the gateway (node 6).
        let fallbacks: BTreeSet<NodeId> = list.fallbacks.iter().copied().collect();
        assert_eq!(list.fallbacks.len(), fallbacks.len());
        let all: BTreeSet<NodeId> = (1..=5).map(NodeId).collect();
        let primaries: BTreeSet<NodeId> = replicas.iter().copied().collect();
        assert_eq!(fallbacks, &all - &primaries);
        assert_eq!(list.healthy_primaries().count(), 2);
        let targets = list.sloppy_targets();
        assert_eq!(targets.len(), 3);
        assert_eq!(
            targets[1],
            Target {
                node: list.fallbacks[0],
                hint_for: Some(down)
            }
        );
        assert_eq!(
            targets[0],
            Target {
                node: replicas[0],
                hint_for: None
            }
        );
    }
}

#[test]
fn unhealthy_nodes_are_never_fallbacks() {
    let layout = six_nodes();
    let p = PartitionId(3);
    let list = layout.preference_list(p, 1, |id| id.0 % 2 == 1);
    assert!(list.fallbacks.iter().all(|id| id.0 % 2 == 1));
    assert!(!list.fallbacks.contains(&layout.replicas(p)[0]));
}

#[test]
fn fallback_order_differs_per_partition_and_spreads_load() {
    let layout = six_nodes();
    let down = NodeId(1);
    let mut first_stand_ins = BTreeSet::new();
    for p in layout.partitions() {
        let list = layout.preference_list(p, 3, |id| id != down);
        if let Some(target) = list
            .sloppy_targets()
            .iter()
            .find(|t| t.hint_for == Some(down))
        {
            first_stand_ins.insert(target.node);
        }
        assert_eq!(
            list,
            layout.preference_list(p, 3, |id| id != down),
            "deterministic"
        );
    }
    // Node 1's hinted writes spread over several nodes, not one unlucky neighbour.
    assert!(first_stand_ins.len() >= 3, "{first_stand_ins:?}");
}

#[test]
fn smaller_buckets_use_a_prefix_and_larger_ones_are_clamped() {
    let layout = six_nodes();
    let p = PartitionId(0);
    let two = layout.preference_list(p, 2, |_| true);
    assert_eq!(
        two.primaries.iter().map(|x| x.node).collect::<Vec<_>>(),
        &layout.replicas(p)[..2]
    );
    assert!(two.fallbacks.contains(&layout.replicas(p)[2]));
    let many = layout.preference_list(p, 9, |_| true);
    assert_eq!(many.primaries.len(), 3);
}

#[test]
fn unknown_partitions_and_empty_layouts_have_no_primaries() {
    let layout = six_nodes();
    assert!(layout.replicas(PartitionId(64)).is_empty());
    assert!(layout
        .preference_list(PartitionId(999), 3, |_| true)
        .primaries
        .is_empty());
    let empty = cairn_ring::Layout::new(cairn_ring::LayoutConfig::default());
    assert!(empty.replicas(PartitionId(0)).is_empty());
    assert!(empty
        .preference_list(PartitionId(0), 3, |_| true)
        .fallbacks
        .is_empty());
}

#[test]
fn when_fallbacks_run_out_the_targets_are_fewer() {
    let layout = committed(4, 3, &[(1, "a", 1), (2, "b", 1), (3, "c", 1)]);
    let list = layout.preference_list(PartitionId(0), 3, |id| id != NodeId(2));
    assert!(list.fallbacks.is_empty());
    assert_eq!(list.sloppy_targets().len(), 2);
}
