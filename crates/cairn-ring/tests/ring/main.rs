//! cairn-ring's integration tests, in one binary.

use std::collections::{BTreeMap, BTreeSet};

use cairn_ring::{Capacity, Layout, LayoutConfig, NodeId, NodeRole, Zone};

mod codec;
mod errors;
mod hash;
mod placement;
mod preference;
mod properties;
mod stage_laws;
mod transitions;

/// Where the tests' operator stages changes.
pub(crate) const ADMIN: NodeId = NodeId(0xad);

pub(crate) fn role(zone: &str, capacity: u64) -> NodeRole {
    let zone = Zone::new(zone).expect("test zones are short");
    NodeRole::new(format!("{zone}.example:7070"), zone, Capacity(capacity))
}

/// A committed layout (version 1) of `(id, zone, capacity)` nodes.
pub(crate) fn committed(q: u16, n: u8, nodes: &[(u64, &str, u64)]) -> Layout {
    let config = LayoutConfig::new(q, n).expect("test shapes are valid");
    let mut layout = Layout::new(config);
    for &(id, zone, capacity) in nodes {
        layout
            .stage_node(NodeId(id), role(zone, capacity), ADMIN)
            .expect("stages");
    }
    layout.commit().expect("test clusters are placeable");
    layout
}

/// Every rule a placement must keep: `n_max` distinct storage nodes per partition, spanning
/// `min(n_max, zones)` zones, each prefix spanning as many zones as it can.
pub(crate) fn check_placement(layout: &Layout) -> Result<(), String> {
    let n = usize::from(layout.config().replication());
    let storage: BTreeMap<NodeId, &NodeRole> = layout
        .nodes()
        .filter(|(_, role)| role.stores_data())
        .collect();
    let zones: BTreeSet<&Zone> = storage.values().map(|role| &role.zone).collect();
    for p in layout.partitions() {
        let set = layout.replicas(p);
        let distinct: BTreeSet<_> = set.iter().collect();
        if set.len() != n || distinct.len() != n {
            return Err(format!("{p}: {set:?} is not {n} distinct nodes"));
        }
        let mut seen = BTreeSet::new();
        for (i, id) in set.iter().enumerate() {
            let role = storage.get(id).ok_or(format!("{p}: {id} stores no data"))?;
            seen.insert(&role.zone);
            if seen.len() != (i + 1).min(zones.len()) {
                return Err(format!(
                    "{p}: prefix {:?} spans only {} zones",
                    &set[..=i],
                    seen.len()
                ));
            }
        }
    }
    Ok(())
}
