//! DESIGN.md §4.6: while a partition's data moves, writes reach the old and the new
//! replica sets, reads use the set that has everything, and `mark_synced` ends it.

use cairn_ring::{Capacity, LayoutVersion, NodeId, PartitionId, PlanError};

use crate::{committed, role, ADMIN};

fn three_zones() -> cairn_ring::Layout {
    committed(16, 3, &[(1, "a", 1), (2, "b", 1), (3, "c", 1)])
}

#[test]
fn moved_partitions_write_to_old_and_new_sets_until_synced() {
    let mut layout = three_zones();
    let before = layout.clone();
    layout
        .stage_node(NodeId(4), role("a", 1), ADMIN)
        .expect("stages");
    let plan = layout.commit().expect("placeable");
    // Zone a's 16 slots split between nodes 1 and 4: 8 partitions move one slot each.
    assert_eq!((plan.moved_slots(), plan.moves().len()), (8, 8));
    assert_eq!(layout.version(), LayoutVersion(2));
    let moving: Vec<PartitionId> = layout.moving_partitions().collect();
    let planned: Vec<PartitionId> = plan.moves().iter().map(|m| m.partition).collect();
    assert_eq!(moving, planned);
    for m in plan.moves() {
        let p = m.partition;
        assert_eq!(m.added().collect::<Vec<_>>(), [NodeId(4)]);
        assert_eq!(m.removed().collect::<Vec<_>>(), [NodeId(1)]);
        let sets: Vec<&[NodeId]> = layout.write_sets(p).sets().collect();
        assert_eq!(sets, [layout.replicas(p), before.replicas(p)]);
        assert_eq!(layout.read_set(p), before.replicas(p));
        let mut everyone = layout.write_sets(p).nodes();
        everyone.sort();
        assert_eq!(everyone, [NodeId(1), NodeId(2), NodeId(3), NodeId(4)]);
        assert!(layout.in_transition(p));
        assert!(layout.mark_synced(p));
        assert!(!layout.mark_synced(p), "already synced");
        assert_eq!(layout.write_sets(p).sets().count(), 1);
        assert_eq!(layout.read_set(p), layout.replicas(p));
    }
    for p in layout.partitions() {
        assert!(!layout.in_transition(p));
        assert!(!layout.mark_synced(p), "{p} never moved or is synced");
    }
}

#[test]
fn synced_marks_merge_by_union() {
    let mut a = three_zones();
    a.stage_node(NodeId(4), role("a", 1), ADMIN)
        .expect("stages");
    a.commit().expect("placeable");
    let moving: Vec<PartitionId> = a.moving_partitions().collect();
    let mut b = a.clone();
    assert!(a.mark_synced(moving[0]));
    assert!(b.mark_synced(moving[1]));
    let mut ab = a.clone();
    assert_eq!(ab.merge(&b), Ok(true));
    let mut ba = b.clone();
    assert_eq!(ba.merge(&a), Ok(true));
    assert_eq!(ab, ba);
    assert!(!ab.in_transition(moving[0]) && !ab.in_transition(moving[1]));
    assert_eq!(ab.moving_partitions().count(), moving.len() - 2);
}

#[test]
fn a_commit_during_a_move_stacks_older_sets() {
    let mut layout = committed(1, 3, &[(1, "a", 1), (2, "b", 1), (3, "c", 1)]);
    let p = PartitionId(0);
    let v1 = layout.replicas(p).to_vec();
    // Node 4 outweighs node 1 in zone a, so it takes zone a's only slot.
    layout
        .stage_node(NodeId(4), role("a", 10), ADMIN)
        .expect("stages");
    layout.commit().expect("placeable");
    let v2 = layout.replicas(p).to_vec();
    layout
        .stage_node(NodeId(5), role("a", 100), ADMIN)
        .expect("stages");
    layout.commit().expect("placeable");
    let v3 = layout.replicas(p).to_vec();
    assert!(v1.contains(&NodeId(1)) && v2.contains(&NodeId(4)) && v3.contains(&NodeId(5)));
    let sets: Vec<&[NodeId]> = layout.write_sets(p).sets().collect();
    assert_eq!(sets, [&v3[..], &v2[..], &v1[..]]);
    assert_eq!(
        layout.read_set(p),
        &v1[..],
        "the oldest set has every write"
    );
    assert!(layout.mark_synced(p));
    assert_eq!(layout.write_sets(p).sets().count(), 1);
}

#[test]
fn unsynced_moves_are_bounded() {
    let mut layout = committed(1, 3, &[(1, "a", 1), (2, "b", 1), (3, "c", 1)]);
    let p = PartitionId(0);
    let mut capacity = 1;
    for id in 4..=7 {
        capacity *= 10;
        layout
            .stage_node(NodeId(id), role("a", capacity), ADMIN)
            .expect("stages");
        layout.commit().expect("within the bound");
    }
    assert_eq!(
        layout.write_sets(p).previous.len(),
        cairn_ring::limits::TRANSITION_DEPTH_MAX
    );
    layout
        .stage_node(NodeId(8), role("a", 100_000), ADMIN)
        .expect("stages");
    let before = layout.clone();
    assert_eq!(
        layout.commit(),
        Err(PlanError::TransitionBacklog { partition: p })
    );
    assert_eq!(layout, before, "a refused commit changes nothing");
    layout.mark_synced(p);
    layout.commit().expect("the move caught up");
    assert_eq!(layout.write_sets(p).previous.len(), 1);
}

#[test]
fn removed_nodes_stay_reachable_while_their_data_moves() {
    let mut layout = committed(16, 3, &[(1, "a", 1), (2, "a", 1), (3, "a", 1), (4, "a", 1)]);
    let addr = layout.node(NodeId(4)).expect("present").addr.clone();
    layout.stage_remove(NodeId(4), ADMIN).expect("stages");
    let plan = layout.commit().expect("placeable");
    assert_eq!(plan.moved_slots(), 12, "exactly node 4's slots move");
    assert!(layout.nodes().all(|(id, _)| id != NodeId(4)));
    assert_eq!(layout.node(NodeId(4)).map(|r| r.addr.clone()), Some(addr));
    let moving: Vec<PartitionId> = layout.moving_partitions().collect();
    assert_eq!(moving.len(), 12);
    assert!(moving
        .iter()
        .all(|p| layout.read_set(*p).contains(&NodeId(4))));
    for p in moving {
        layout.mark_synced(p);
    }
    layout
        .stage_capacity(NodeId(1), Capacity(1), ADMIN)
        .expect("stages");
    layout.commit().expect("placeable");
    assert_eq!(
        layout.node(NodeId(4)),
        None,
        "forgotten once no move names it"
    );
}

#[test]
fn capacity_and_zone_changes_move_data_too() {
    let mut layout = committed(16, 2, &[(1, "a", 1), (2, "a", 1), (3, "b", 1), (4, "b", 1)]);
    layout
        .stage_capacity(NodeId(1), Capacity(3), ADMIN)
        .expect("stages");
    let plan = layout.commit().expect("placeable");
    // Zone a holds 16 slots (2 zones = n): now 12 for node 1 and 4 for node 2.
    assert_eq!(plan.moved_slots(), 4);
    assert_eq!(layout.slot_counts()[&NodeId(1)], 12);
    layout
        .stage_zone(NodeId(2), cairn_ring::Zone::new("c").expect("short"), ADMIN)
        .expect("stages");
    layout.commit().expect("placeable");
    crate::check_placement(&layout).expect("valid");
}

#[test]
fn a_newer_version_drops_an_older_stage() {
    let v1 = three_zones();
    let mut operator = v1.clone();
    operator
        .stage_node(NodeId(9), role("a", 1), NodeId(1))
        .expect("stages");
    let mut elsewhere = v1.clone();
    elsewhere
        .stage_node(NodeId(4), role("b", 1), NodeId(2))
        .expect("stages");
    elsewhere.commit().expect("placeable");
    operator.merge(&elsewhere).expect("same shape");
    assert_eq!(operator, elsewhere);
    assert!(operator.staged().is_empty());
}

#[test]
fn equal_versions_merge_their_stages() {
    let v1 = three_zones();
    let (mut a, mut b) = (v1.clone(), v1.clone());
    a.stage_node(NodeId(4), role("a", 1), NodeId(1))
        .expect("stages");
    b.stage_node(NodeId(5), role("b", 1), NodeId(2))
        .expect("stages");
    a.merge(&b).expect("same shape");
    assert_eq!(a.staged().len(), 2);
    let plan = a.commit().expect("placeable");
    assert_eq!(plan.nodes().count(), 5);
}
