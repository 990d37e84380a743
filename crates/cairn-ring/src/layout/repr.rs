//! A layout's encoded form, and the checks a decoded one must pass before it is a
//! `Layout` (parse, don't validate): layouts arrive from peers, and the placement
//! getters index into them.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{Committed, Layout};
use crate::limits::{NODES_MAX, TRANSITION_DEPTH_MAX};
use crate::{InvalidLayout, LayoutConfig, NodeChange, NodeId, NodeRole, PartitionId, Stage};

#[derive(Serialize, Deserialize)]
pub(super) struct LayoutRepr {
    config: LayoutConfig,
    committed: Committed,
    synced: BTreeSet<PartitionId>,
    stage: Stage,
}

impl From<Layout> for LayoutRepr {
    fn from(layout: Layout) -> Self {
        let Layout {
            config,
            committed,
            synced,
            stage,
        } = layout;
        Self {
            config,
            committed,
            synced,
            stage,
        }
    }
}

impl TryFrom<LayoutRepr> for Layout {
    type Error = InvalidLayout;

    fn try_from(repr: LayoutRepr) -> Result<Self, InvalidLayout> {
        let LayoutRepr {
            config,
            committed,
            synced,
            stage,
        } = repr;
        check_roles(&committed.nodes, &committed.retired)?;
        check_assignment(config, &committed)?;
        check_transitions(config, &committed)?;
        if !synced.iter().all(|p| committed.transitions.contains_key(p)) {
            return Err(InvalidLayout("a synced partition is not in transition"));
        }
        let staged_roles = stage.changes().filter_map(|(_, s)| match &s.change {
            NodeChange::Set(role) => Some(role),
            NodeChange::Remove => None,
        });
        for role in staged_roles {
            role.check()
                .map_err(|_| InvalidLayout("a staged address is too long"))?;
        }
        Ok(Self {
            config,
            committed,
            synced,
            stage,
        })
    }
}

fn check_roles(
    nodes: &BTreeMap<NodeId, NodeRole>,
    retired: &BTreeMap<NodeId, NodeRole>,
) -> Result<(), InvalidLayout> {
    if nodes.len() > NODES_MAX || retired.len() > NODES_MAX {
        return Err(InvalidLayout("too many nodes"));
    }
    if retired.keys().any(|id| nodes.contains_key(id)) {
        return Err(InvalidLayout("a retired node is still in the layout"));
    }
    for role in nodes.values().chain(retired.values()) {
        role.check()
            .map_err(|_| InvalidLayout("a node address is too long"))?;
    }
    Ok(())
}

fn check_assignment(config: LayoutConfig, committed: &Committed) -> Result<(), InvalidLayout> {
    let n = usize::from(config.replication());
    let slots = usize::from(config.partitions()) * n;
    match committed.assignment.len() {
        0 => return Ok(()),
        len if len != slots => return Err(InvalidLayout("the assignment has the wrong size")),
        _ => {}
    }
    for set in committed.assignment.chunks(n) {
        let stores = |id: &NodeId| committed.nodes.get(id).is_some_and(NodeRole::stores_data);
        if !distinct(set) || !set.iter().all(stores) {
            return Err(InvalidLayout(
                "a replica set repeats a node or names a non-storage node",
            ));
        }
    }
    Ok(())
}

fn check_transitions(config: LayoutConfig, committed: &Committed) -> Result<(), InvalidLayout> {
    let n = usize::from(config.replication());
    let known =
        |id: &NodeId| committed.nodes.contains_key(id) || committed.retired.contains_key(id);
    for (p, stack) in &committed.transitions {
        if p.0 >= config.partitions() || stack.is_empty() || stack.len() > TRANSITION_DEPTH_MAX {
            return Err(InvalidLayout("a transition has a bad partition or depth"));
        }
        for set in stack {
            if set.is_empty() || set.len() > n || !distinct(set) || !set.iter().all(known) {
                return Err(InvalidLayout("a transition's older set is malformed"));
            }
        }
    }
    Ok(())
}

fn distinct(set: &[NodeId]) -> bool {
    set.iter().enumerate().all(|(i, id)| !set[..i].contains(id))
}
