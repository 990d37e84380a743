//! Infeasible layouts and bad changes are typed errors that leave the layout unchanged.

use cairn_ring::{
    Capacity, ConfigError, ConfigMismatch, Layout, LayoutConfig, NodeId, NodeRole, PlanError,
    StageError, Zone,
};

use crate::{committed, role, ADMIN};

#[test]
fn fewer_storage_nodes_than_replicas() {
    let mut layout = Layout::new(LayoutConfig::new(16, 3).expect("valid"));
    layout
        .stage_node(NodeId(1), role("a", 1), ADMIN)
        .expect("stages");
    layout
        .stage_node(NodeId(2), role("b", 1), ADMIN)
        .expect("stages");
    layout
        .stage_node(NodeId(3), role("c", 0), ADMIN)
        .expect("stages");
    let before = layout.clone();
    let err = PlanError::NotEnoughNodes {
        needed: 3,
        available: 2,
    };
    assert_eq!(layout.commit(), Err(err));
    assert_eq!(layout, before);
}

#[test]
fn zero_capacity_everywhere() {
    let mut layout = Layout::new(LayoutConfig::default());
    for id in 1..=4 {
        layout
            .stage_node(NodeId(id), role("a", 0), ADMIN)
            .expect("stages");
    }
    assert_eq!(layout.plan(), Err(PlanError::NoCapacity));
    assert_eq!(
        Layout::new(LayoutConfig::default()).plan(),
        Err(PlanError::NoCapacity)
    );
}

#[test]
fn removing_below_the_replica_count_is_refused() {
    let mut layout = committed(16, 3, &[(1, "a", 1), (2, "b", 1), (3, "c", 1)]);
    layout.stage_remove(NodeId(3), ADMIN).expect("stages");
    assert!(matches!(
        layout.commit(),
        Err(PlanError::NotEnoughNodes { .. })
    ));
    assert_eq!(layout.replicas(cairn_ring::PartitionId(0)).len(), 3);
}

#[test]
fn an_empty_stage_commits_nothing() {
    let mut layout = committed(16, 3, &[(1, "a", 1), (2, "b", 1), (3, "c", 1)]);
    assert_eq!(layout.commit(), Err(PlanError::NothingStaged));
}

#[test]
fn bad_changes_are_refused() {
    let mut layout = committed(16, 3, &[(1, "a", 1), (2, "b", 1), (3, "c", 1)]);
    assert_eq!(
        layout.stage_remove(NodeId(9), ADMIN),
        Err(StageError::UnknownNode(NodeId(9)))
    );
    assert_eq!(
        layout.stage_capacity(NodeId(9), Capacity(1), ADMIN),
        Err(StageError::UnknownNode(NodeId(9)))
    );
    let zone = Zone::new("a").expect("short");
    let long = NodeRole::new("h".repeat(257), zone, Capacity(1));
    assert_eq!(
        layout.stage_node(NodeId(4), long, ADMIN),
        Err(StageError::AddressTooLong { len: 257 })
    );
    // A node staged for removal has no role left to change.
    layout.stage_remove(NodeId(3), ADMIN).expect("stages");
    let zone = Zone::new("b").expect("short");
    assert_eq!(
        layout.stage_zone(NodeId(3), zone, ADMIN),
        Err(StageError::UnknownNode(NodeId(3)))
    );
    assert_eq!(layout.staged().len(), 1);
}

#[test]
fn bad_shapes_and_names() {
    assert_eq!(
        LayoutConfig::new(48, 3),
        Err(ConfigError::Partitions { count: 48 })
    );
    assert_eq!(
        LayoutConfig::new(8192, 3),
        Err(ConfigError::Partitions { count: 8192 })
    );
    assert_eq!(
        LayoutConfig::new(0, 3),
        Err(ConfigError::Partitions { count: 0 })
    );
    assert_eq!(
        LayoutConfig::new(64, 0),
        Err(ConfigError::Replication { replication: 0 })
    );
    assert!(LayoutConfig::new(4096, 8).is_ok());
    assert!(Zone::new("").is_err());
    assert!(Zone::new("z".repeat(65)).is_err());
}

#[test]
fn layouts_of_other_shapes_do_not_merge() {
    let mut ours = committed(16, 3, &[(1, "a", 1), (2, "b", 1), (3, "c", 1)]);
    let theirs = committed(32, 3, &[(1, "a", 1), (2, "b", 1), (3, "c", 1)]);
    let before = ours.clone();
    let err = ConfigMismatch {
        ours: ours.config(),
        theirs: theirs.config(),
    };
    assert_eq!(ours.merge(&theirs), Err(err));
    assert_eq!(ours, before);
}
