//! The layout: the committed roster and placement of one version, the partitions still
//! moving from earlier versions, and the changes staged for the next version.
//!
//! `Layout` sorts its methods like quinn-proto's `Connection`: getters (what the layout
//! says), the placement decisions (`replicas`, `preference_list`, `write_sets`,
//! `read_set`), staging and committing, and the CRDT operations (`mark_synced`, `merge`).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::assign::assign;
use crate::limits::{NODES_MAX, TRANSITION_DEPTH_MAX};
use crate::partition::rendezvous;
use crate::{
    Capacity, ConfigMismatch, LayoutConfig, LayoutVersion, NodeChange, NodeId, NodeRole,
    PartitionId, PlanError, PreferenceList, Primary, Stage, StageError, Stamp, Zone,
};

mod repr;

use repr::LayoutRepr;

/// A cluster layout: the committed roster and placement of one version, the partitions
/// still moving from earlier versions, and the changes staged for the next version.
///
/// # Versions and merge
///
/// A commit computes the next placement from the current one and the stage, numbers it
/// `v + 1` and clears the stage. Layouts merge as a join: the one with the greater
/// committed part wins whole (compared by version first; two different commits of the
/// same version, made concurrently on two nodes, are ordered by their content so every
/// node picks the same one). When both committed parts are equal, the stages merge
/// ([`Stage`]'s laws) and the synced-partition sets unite. So merge is commutative,
/// associative and idempotent, and gossip converges. A stage made against an older
/// version is dropped when a newer version arrives (as in Garage): plans are made
/// against the version the operator sees.
///
/// # Moving data (DESIGN.md §4.6)
///
/// When a commit changes a partition's replica *set*, the partition is *in transition*:
/// it keeps the sets it had before, whose data the new replicas may not have yet.
/// [`Layout::write_sets`] returns the current set and those older sets (a write should
/// reach a quorum of each), and [`Layout::read_set`] the oldest of them (the one that
/// has every acknowledged write). [`Layout::mark_synced`] ends the transition once the
/// current replicas hold the data; marks are grow-only within a version, so they merge
/// by union. A commit made while a partition is still moving stacks one more older set,
/// up to [`TRANSITION_DEPTH_MAX`]. Synced marks belong to one version: a commit before a
/// partition is marked keeps its older sets in the next version too. Nodes removed while
/// their data still moves keep their role in [`Layout::node`] (so they stay reachable)
/// until the first commit after their moves end.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "LayoutRepr", into = "LayoutRepr")]
pub struct Layout {
    config: LayoutConfig,
    committed: Committed,
    /// Partitions of `committed.transitions` whose data has reached the current set.
    synced: BTreeSet<PartitionId>,
    stage: Stage,
}

/// What a commit fixes. Field order matters: the derived `Ord` compares versions first.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Committed {
    version: LayoutVersion,
    nodes: BTreeMap<NodeId, NodeRole>,
    /// `Q x n_max` ids, partition-major; empty before the first commit.
    assignment: Vec<NodeId>,
    /// Older replica sets of moving partitions, newest first.
    transitions: BTreeMap<PartitionId, Vec<Vec<NodeId>>>,
    /// Roles of removed nodes that some transition still names.
    retired: BTreeMap<NodeId, NodeRole>,
}

/// What a commit would change; [`Layout::commit`] returns the one it applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    next: Committed,
    replication: usize,
    moves: Vec<PartitionMove>,
    moved_slots: u64,
}

/// One partition whose ordered replica set changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionMove {
    /// The partition.
    pub partition: PartitionId,
    /// Its replicas before (empty before the first commit).
    pub old: Vec<NodeId>,
    /// Its replicas after.
    pub new: Vec<NodeId>,
}

/// Where a write to a partition must go; see [`Layout::write_sets`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteSets<'a> {
    /// The current replica set.
    pub current: &'a [NodeId],
    /// Older sets while the partition is in transition, newest first; else empty.
    pub previous: &'a [Vec<NodeId>],
}

impl Layout {
    /// An empty layout (version 0, no nodes) of the given shape.
    pub fn new(config: LayoutConfig) -> Self {
        Self {
            config,
            committed: Committed::default(),
            synced: BTreeSet::new(),
            stage: Stage::default(),
        }
    }

    // --- Getters ---

    /// The cluster's shape.
    pub fn config(&self) -> LayoutConfig {
        self.config
    }

    /// The committed version.
    pub fn version(&self) -> LayoutVersion {
        self.committed.version
    }

    /// The committed nodes, by id.
    pub fn nodes(&self) -> impl Iterator<Item = (NodeId, &NodeRole)> {
        self.committed.nodes.iter().map(|(id, role)| (*id, role))
    }

    /// A committed node's role, or a removed node's while a transition still names it.
    pub fn node(&self, id: NodeId) -> Option<&NodeRole> {
        let committed = &self.committed;
        committed
            .nodes
            .get(&id)
            .or_else(|| committed.retired.get(&id))
    }

    /// The changes staged for the next version.
    pub fn staged(&self) -> &Stage {
        &self.stage
    }

    /// Replica slots per committed node (zero for gateways).
    pub fn slot_counts(&self) -> BTreeMap<NodeId, u32> {
        let mut counts: BTreeMap<NodeId, u32> =
            self.committed.nodes.keys().map(|id| (*id, 0)).collect();
        for id in &self.committed.assignment {
            *counts.entry(*id).or_default() += 1;
        }
        counts
    }

    /// Every partition, `0..Q`.
    pub fn partitions(&self) -> impl Iterator<Item = PartitionId> {
        self.config.partitioning().partitions()
    }

    /// The partitions still in transition.
    pub fn moving_partitions(&self) -> impl Iterator<Item = PartitionId> + '_ {
        let moving = self.committed.transitions.keys();
        moving.copied().filter(|p| !self.synced.contains(p))
    }

    // --- Placement decisions ---

    /// The partition of `(bucket, key)`: the top `log2(Q)` bits of
    /// [`key_hash`](crate::key_hash).
    pub fn partition_of(&self, bucket: &[u8], key: &[u8]) -> PartitionId {
        self.config.partitioning().partition_of(bucket, key)
    }

    /// Partition `p`'s ordered replica set: `n_max` distinct nodes, or none before the
    /// first commit or for a partition outside `0..Q`.
    pub fn replicas(&self, p: PartitionId) -> &[NodeId] {
        let n = usize::from(self.config.replication());
        let range = p.index() * n..(p.index() + 1) * n;
        self.committed.assignment.get(range).unwrap_or(&[])
    }

    /// Who serves partition `p` for a bucket of `n` replicas: the first `n` replicas
    /// (fewer if `n > n_max`) with their health, then every other healthy storage node
    /// in the partition's rendezvous-hash order. `healthy` is asked once per node.
    pub fn preference_list(
        &self,
        p: PartitionId,
        n: usize,
        healthy: impl Fn(NodeId) -> bool,
    ) -> PreferenceList {
        let replicas = self.replicas(p);
        let primaries = &replicas[..n.min(replicas.len())];
        let mut fallbacks: Vec<NodeId> = self
            .committed
            .nodes
            .iter()
            .filter(|(id, role)| role.stores_data() && !primaries.contains(id))
            .map(|(id, _)| *id)
            .filter(|id| healthy(*id))
            .collect();
        fallbacks.sort_by_key(|id| (rendezvous(p, *id), *id));
        let primaries = primaries.iter().map(|&node| Primary {
            node,
            healthy: healthy(node),
        });
        PreferenceList {
            partition: p,
            primaries: primaries.collect(),
            fallbacks,
        }
    }

    /// The replica sets a write to `p` must reach: the current set and, while `p` is in
    /// transition, the older sets whose replicas may still hold data the current ones
    /// lack (DESIGN.md §4.6). A write should reach its quorum in each.
    pub fn write_sets(&self, p: PartitionId) -> WriteSets<'_> {
        let previous = match self.committed.transitions.get(&p) {
            Some(stack) if !self.synced.contains(&p) => stack.as_slice(),
            _ => &[],
        };
        WriteSets {
            current: self.replicas(p),
            previous,
        }
    }

    /// The set reads of `p` should use: while `p` is in transition, the oldest set still
    /// kept (it received every write, before and during the move); else the current set.
    pub fn read_set(&self, p: PartitionId) -> &[NodeId] {
        let sets = self.write_sets(p);
        sets.previous.last().map_or(sets.current, Vec::as_slice)
    }

    /// Whether `p` still moves data to its current replicas.
    pub fn in_transition(&self, p: PartitionId) -> bool {
        !self.write_sets(p).previous.is_empty()
    }

    // --- Staging and committing ---

    /// Stages adding `node`, or replacing its role; `origin` is where the operator is.
    pub fn stage_node(
        &mut self,
        node: NodeId,
        role: NodeRole,
        origin: NodeId,
    ) -> Result<Stamp, StageError> {
        role.check()?;
        self.stage_change(node, NodeChange::Set(role), origin)
    }

    /// Stages removing `node`.
    pub fn stage_remove(&mut self, node: NodeId, origin: NodeId) -> Result<Stamp, StageError> {
        self.staged_role(node)?;
        self.stage_change(node, NodeChange::Remove, origin)
    }

    /// Stages moving `node` to another zone, keeping the rest of its (staged) role.
    pub fn stage_zone(
        &mut self,
        node: NodeId,
        zone: Zone,
        origin: NodeId,
    ) -> Result<Stamp, StageError> {
        let role = NodeRole {
            zone,
            ..self.staged_role(node)?.clone()
        };
        self.stage_node(node, role, origin)
    }

    /// Stages a new capacity for `node`, keeping the rest of its (staged) role.
    pub fn stage_capacity(
        &mut self,
        node: NodeId,
        capacity: Capacity,
        origin: NodeId,
    ) -> Result<Stamp, StageError> {
        let role = NodeRole {
            capacity,
            ..self.staged_role(node)?.clone()
        };
        self.stage_node(node, role, origin)
    }

    /// `node`'s role once the stage is applied.
    fn staged_role(&self, node: NodeId) -> Result<&NodeRole, StageError> {
        let role = match self.stage.change(node) {
            Some(staged) => match &staged.change {
                NodeChange::Set(role) => Some(role),
                NodeChange::Remove => None,
            },
            None => self.committed.nodes.get(&node),
        };
        role.ok_or(StageError::UnknownNode(node))
    }

    fn stage_change(
        &mut self,
        node: NodeId,
        change: NodeChange,
        origin: NodeId,
    ) -> Result<Stamp, StageError> {
        if self.stage.change(node).is_none() && self.stage.len() >= NODES_MAX {
            return Err(StageError::TooManyChanges);
        }
        let stamp = self.stage.next_stamp(origin);
        self.stage.insert(node, stamp, change);
        Ok(stamp)
    }

    /// What committing the stage would do: the next version's placement, computed from
    /// the current one so that as few slots as possible move.
    pub fn plan(&self) -> Result<Plan, PlanError> {
        let nodes = self.stage.apply_to(&self.committed.nodes);
        if nodes.len() > NODES_MAX {
            return Err(PlanError::TooManyNodes { nodes: nodes.len() });
        }
        let version = self.version().next().ok_or(PlanError::VersionExhausted)?;
        let assignment = assign(self.config, &nodes, &self.committed.assignment)?;
        let n = usize::from(self.config.replication());
        let mut moves = Vec::new();
        let mut transitions = BTreeMap::new();
        for (p, new) in self
            .config
            .partitioning()
            .partitions()
            .zip(assignment.chunks(n))
        {
            let old = self.replicas(p);
            if old != new {
                let (old, new) = (old.to_vec(), new.to_vec());
                moves.push(PartitionMove {
                    partition: p,
                    old,
                    new,
                });
            }
            if let Some(stack) = self.next_transition(p, new)? {
                transitions.insert(p, stack);
            }
        }
        let retired = self.retired_after(&nodes, &transitions);
        let moved_slots = moves.iter().map(|m| m.moved_slots() as u64).sum();
        let next = Committed {
            version,
            nodes,
            assignment,
            transitions,
            retired,
        };
        Ok(Plan {
            next,
            replication: n,
            moves,
            moved_slots,
        })
    }

    /// `p`'s older sets after a commit that gives it `new`: the sets still unsynced, and
    /// the current one if the set changes; each set once, its oldest occurrence kept.
    fn next_transition(
        &self,
        p: PartitionId,
        new: &[NodeId],
    ) -> Result<Option<Vec<Vec<NodeId>>>, PlanError> {
        let old = self.replicas(p);
        let mut stack = Vec::new();
        if !old.is_empty() && !same_members(old, new) {
            stack.push(old.to_vec());
        }
        stack.extend(self.write_sets(p).previous.iter().cloned());
        let mut kept: Vec<Vec<NodeId>> = Vec::with_capacity(stack.len());
        for set in stack.into_iter().rev() {
            if !kept.iter().any(|k| same_members(k, &set)) {
                kept.push(set);
            }
        }
        kept.reverse();
        if kept.len() > TRANSITION_DEPTH_MAX {
            return Err(PlanError::TransitionBacklog { partition: p });
        }
        Ok((!kept.is_empty()).then_some(kept))
    }

    fn retired_after(
        &self,
        nodes: &BTreeMap<NodeId, NodeRole>,
        transitions: &BTreeMap<PartitionId, Vec<Vec<NodeId>>>,
    ) -> BTreeMap<NodeId, NodeRole> {
        let named = transitions.values().flatten().flatten();
        let gone = named.filter(|id| !nodes.contains_key(id));
        let with_role = gone.filter_map(|id| Some((*id, self.node(*id)?.clone())));
        with_role.collect()
    }

    /// Commits the stage as version `v + 1` and clears it; returns the plan applied.
    pub fn commit(&mut self) -> Result<Plan, PlanError> {
        if self.stage.is_empty() {
            return Err(PlanError::NothingStaged);
        }
        let plan = self.plan()?;
        self.committed = plan.next.clone();
        self.synced.clear();
        self.stage.clear();
        Ok(plan)
    }

    // --- CRDT operations ---

    /// Ends `p`'s transition: its current replicas hold all its data. Returns whether it
    /// was in transition.
    pub fn mark_synced(&mut self, p: PartitionId) -> bool {
        self.in_transition(p) && self.synced.insert(p)
    }

    /// Joins a peer's layout into this one (see [`Layout`] on versions and merge); returns whether
    /// this one changed. Layouts of different shapes do not merge.
    pub fn merge(&mut self, other: &Layout) -> Result<bool, ConfigMismatch> {
        if self.config != other.config {
            let (ours, theirs) = (self.config, other.config);
            return Err(ConfigMismatch { ours, theirs });
        }
        match self.committed.cmp(&other.committed) {
            std::cmp::Ordering::Less => {
                *self = other.clone();
                Ok(true)
            }
            std::cmp::Ordering::Greater => Ok(false),
            std::cmp::Ordering::Equal => {
                let before = (self.synced.len(), self.stage.clone());
                self.synced.extend(other.synced.iter().copied());
                self.stage.merge(&other.stage);
                Ok(before != (self.synced.len(), self.stage.clone()))
            }
        }
    }
}

impl Plan {
    /// The version the commit makes.
    pub fn version(&self) -> LayoutVersion {
        self.next.version
    }

    /// The nodes of the next version.
    pub fn nodes(&self) -> impl Iterator<Item = (NodeId, &NodeRole)> {
        self.next.nodes.iter().map(|(id, role)| (*id, role))
    }

    /// The partitions whose ordered replica set changes, in partition order.
    pub fn moves(&self) -> &[PartitionMove] {
        &self.moves
    }

    /// Replica slots that move: the sum over partitions of nodes in the new set and not
    /// in the old. Reordering a set moves nothing.
    pub fn moved_slots(&self) -> u64 {
        self.moved_slots
    }

    /// Partition `p`'s replicas after the commit.
    pub fn replicas(&self, p: PartitionId) -> &[NodeId] {
        let range = p.index() * self.replication..(p.index() + 1) * self.replication;
        self.next.assignment.get(range).unwrap_or(&[])
    }
}

impl PartitionMove {
    /// Nodes that gain the partition.
    pub fn added(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.new.iter().copied().filter(|id| !self.old.contains(id))
    }

    /// Nodes that lose the partition.
    pub fn removed(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.old.iter().copied().filter(|id| !self.new.contains(id))
    }

    /// How many replica slots move (`added().count()`).
    pub fn moved_slots(&self) -> usize {
        self.added().count()
    }
}

impl<'a> WriteSets<'a> {
    /// Every set, current first.
    pub fn sets(&self) -> impl Iterator<Item = &'a [NodeId]> + 'a {
        let previous = self.previous.iter().map(Vec::as_slice);
        std::iter::once(self.current).chain(previous)
    }

    /// Every node of every set, once each, current set first.
    pub fn nodes(&self) -> Vec<NodeId> {
        let mut out: Vec<NodeId> = Vec::new();
        for id in self.sets().flatten() {
            if !out.contains(id) {
                out.push(*id);
            }
        }
        out
    }
}

fn same_members(a: &[NodeId], b: &[NodeId]) -> bool {
    a.len() == b.len() && a.iter().all(|id| b.contains(id))
}
