//! The stage and the layout merge as join semilattices: commutative, associative,
//! idempotent (the laws `Stage` and `Layout` document).

use cairn_ring::{
    Capacity, Layout, LayoutConfig, NodeChange, NodeId, NodeRole, PartitionId, Stage, Stamp, Zone,
};
use proptest::prelude::*;

use crate::{role, ADMIN};

fn change() -> impl Strategy<Value = NodeChange> {
    prop_oneof![
        3 => (0u8..2, 0u64..3).prop_map(|(zone, capacity)| {
            let zone = Zone::new(format!("z{zone}")).expect("short");
            NodeChange::Set(NodeRole::new("addr", zone, Capacity(capacity)))
        }),
        1 => Just(NodeChange::Remove),
    ]
}

fn stage() -> impl Strategy<Value = Stage> {
    let entry = (0u64..4, 0u64..4, 0u64..3, change());
    prop::collection::vec(entry, 0..8).prop_map(|entries| {
        let mut stage = Stage::default();
        for (node, counter, origin, change) in entries {
            let stamp = Stamp {
                counter,
                origin: NodeId(origin),
            };
            stage.insert(NodeId(node), stamp, change);
        }
        stage
    })
}

fn joined_stage(a: &Stage, b: &Stage) -> Stage {
    let mut out = a.clone();
    out.merge(b);
    out
}

proptest! {
    #[test]
    fn stage_merge_is_a_join(a in stage(), b in stage(), c in stage()) {
        prop_assert_eq!(joined_stage(&a, &b), joined_stage(&b, &a));
        prop_assert_eq!(
            joined_stage(&joined_stage(&a, &b), &c),
            joined_stage(&a, &joined_stage(&b, &c))
        );
        prop_assert_eq!(joined_stage(&a, &a), a.clone());
        // The join is an upper bound: merging either operand again changes nothing.
        let ab = joined_stage(&a, &b);
        prop_assert_eq!(joined_stage(&ab, &a), ab.clone());
    }
}

#[test]
fn the_later_stamp_wins_whatever_the_arrival_order() {
    let mut a = Stage::default();
    let early = Stamp {
        counter: 1,
        origin: NodeId(9),
    };
    let late = Stamp {
        counter: 2,
        origin: NodeId(1),
    };
    a.insert(NodeId(5), late, NodeChange::Remove);
    a.insert(NodeId(5), early, NodeChange::Set(role("z", 1)));
    assert_eq!(
        a.change(NodeId(5)).map(|s| &s.change),
        Some(&NodeChange::Remove)
    );
    // Lamport: a change made against this stage outranks everything in it.
    assert_eq!(a.next_stamp(NodeId(1)).counter, 3);
}

/// The committed layouts histories start from: empty; three nodes (v1); and two
/// different v2s made concurrently from v1 (one adds node 4, one removes node 3).
fn bases() -> Vec<Layout> {
    let config = LayoutConfig::new(8, 2).expect("valid");
    let empty = Layout::new(config);
    let mut v1 = empty.clone();
    for (id, zone) in [(1, "a"), (2, "b"), (3, "a")] {
        v1.stage_node(NodeId(id), role(zone, 1), ADMIN)
            .expect("stages");
    }
    v1.commit().expect("placeable");
    let mut v2_add = v1.clone();
    v2_add
        .stage_node(NodeId(4), role("b", 1), ADMIN)
        .expect("stages");
    v2_add.commit().expect("placeable");
    let mut v2_remove = v1.clone();
    v2_remove.stage_remove(NodeId(3), ADMIN).expect("stages");
    v2_remove.commit().expect("placeable");
    vec![empty, v1, v2_add, v2_remove]
}

#[derive(Clone, Debug)]
enum Step {
    Stage {
        node: u64,
        zone: u8,
        capacity: u64,
        origin: u64,
    },
    Remove {
        node: u64,
        origin: u64,
    },
    Sync(u16),
}

fn layout() -> impl Strategy<Value = Layout> {
    let step = prop_oneof![
        (1u64..6, 0u8..2, 0u64..3, 0u64..3).prop_map(|(node, zone, capacity, origin)| {
            Step::Stage {
                node,
                zone,
                capacity,
                origin,
            }
        }),
        (1u64..6, 0u64..3).prop_map(|(node, origin)| Step::Remove { node, origin }),
        (0u16..8).prop_map(Step::Sync),
    ];
    (0usize..4, prop::collection::vec(step, 0..6)).prop_map(|(base, steps)| {
        let mut layout = bases().swap_remove(base);
        for step in steps {
            match step {
                Step::Stage {
                    node,
                    zone,
                    capacity,
                    origin,
                } => {
                    let role = role(&format!("z{zone}"), capacity);
                    layout
                        .stage_node(NodeId(node), role, NodeId(origin))
                        .expect("fits");
                }
                Step::Remove { node, origin } => {
                    // Unknown nodes are refused; that is fine here.
                    let _ = layout.stage_remove(NodeId(node), NodeId(origin));
                }
                Step::Sync(p) => {
                    layout.mark_synced(PartitionId(p));
                }
            }
        }
        layout
    })
}

fn joined(a: &Layout, b: &Layout) -> Layout {
    let mut out = a.clone();
    out.merge(b).expect("same shape");
    out
}

proptest! {
    #[test]
    fn layout_merge_is_a_join(a in layout(), b in layout(), c in layout()) {
        prop_assert_eq!(joined(&a, &b), joined(&b, &a));
        prop_assert_eq!(joined(&joined(&a, &b), &c), joined(&a, &joined(&b, &c)));
        prop_assert_eq!(joined(&a, &a), a.clone());
        let ab = joined(&a, &b);
        prop_assert!(ab.version() >= a.version().max(b.version()));
    }
}

#[test]
fn merge_reports_whether_anything_changed() {
    let [_, v1, v2, _] = <[Layout; 4]>::try_from(bases()).expect("four bases");
    let mut mine = v1.clone();
    assert_eq!(mine.merge(&v1), Ok(false));
    assert_eq!(mine.merge(&v2), Ok(true));
    assert_eq!(mine, v2);
    assert_eq!(mine.merge(&v1), Ok(false), "an older version never wins");
}
