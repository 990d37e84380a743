//! Layouts travel between nodes (gossip): encoding round-trips, and decoding hostile
//! bytes gives an error or a layout that keeps its invariants, never a panic.

use cairn_ring::{Layout, LayoutConfig, NodeId, PartitionId, Zone};
use proptest::prelude::*;

use crate::{committed, role, ADMIN};

/// A layout with every part filled: nodes, transitions, synced marks, a stage.
fn busy_layout() -> Layout {
    let mut layout = committed(16, 3, &[(1, "a", 1), (2, "b", 1), (3, "c", 1), (4, "a", 1)]);
    layout.stage_remove(NodeId(4), ADMIN).expect("stages");
    layout.commit().expect("placeable");
    let first = layout.moving_partitions().next().expect("something moved");
    layout.mark_synced(first);
    layout
        .stage_node(NodeId(5), role("b", 2), NodeId(2))
        .expect("stages");
    layout
}

#[test]
fn layouts_round_trip() {
    let layout = busy_layout();
    let bytes = postcard::to_allocvec(&layout).expect("encodes");
    let back: Layout = postcard::from_bytes(&bytes).expect("decodes");
    assert_eq!(back, layout);
}

#[test]
fn bad_shapes_and_zones_are_refused() {
    for (partitions, replication) in [(3u16, 3u8), (8192, 3), (0, 3), (64, 0), (64, 9)] {
        let bytes = postcard::to_allocvec(&(partitions, replication)).expect("encodes");
        assert!(
            postcard::from_bytes::<LayoutConfig>(&bytes).is_err(),
            "{partitions} {replication}"
        );
    }
    let long = "z".repeat(65);
    for name in ["", long.as_str()] {
        let bytes = postcard::to_allocvec(name).expect("encodes");
        assert!(postcard::from_bytes::<Zone>(&bytes).is_err());
    }
}

/// Whatever decodes keeps the invariants the getters index by.
fn check_decoded(layout: &Layout) -> Result<(), TestCaseError> {
    let n = usize::from(layout.config().replication());
    for p in layout.partitions() {
        let set = layout.replicas(p);
        prop_assert!(set.is_empty() || set.len() == n);
        for id in layout.write_sets(p).nodes() {
            prop_assert!(layout.node(id).is_some(), "{} names unknown {}", p, id);
        }
        let _ = layout.preference_list(p, n, |_| true);
    }
    let _ = layout.replicas(PartitionId(u16::MAX));
    let _ = layout.plan();
    Ok(())
}

proptest! {
    #[test]
    fn hostile_bytes_never_panic(
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = postcard::to_allocvec(&busy_layout()).expect("encodes");
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        if let Ok(layout) = postcard::from_bytes::<Layout>(&bytes) {
            check_decoded(&layout)?;
        }
        let short = &bytes[..cut.index(bytes.len())];
        if let Ok(layout) = postcard::from_bytes::<Layout>(short) {
            check_decoded(&layout)?;
        }
    }
}
