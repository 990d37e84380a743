//! The node's view of the cluster, as `GET /v1/cluster` and `cairn cluster status` show it.

use std::collections::{BTreeMap, BTreeSet};

use cairn_core::Store;
use std::net::SocketAddr;

use cairn_core::Node;
use cairn_ring::{Layout, NodeChange, NodeId, Plan};
use cairn_store::RedbStore;
use serde::Serialize;

/// Node ids print as 16 hex digits (JSON numbers cannot hold every u64).
pub fn node_name(id: NodeId) -> String {
    format!("{:016x}", id.0)
}

/// One node of the layout.
#[derive(Clone, Debug, Serialize)]
pub struct NodeStatus {
    /// Its id.
    pub id: String,
    /// Its QUIC address.
    pub addr: String,
    /// Its zone.
    pub zone: String,
    /// Its capacity.
    pub capacity: u64,
    /// Partition replicas it holds in the committed layout.
    pub partitions: u32,
    /// Whether this node routes to it now: its heartbeat moved lately and no request to
    /// it timed out since it was last heard from (`Node::is_healthy`).
    pub up: bool,
    /// Whether it is the node answering.
    #[serde(rename = "self")]
    pub this: bool,
    /// Hints the answering node keeps for this node.
    pub hints_for: u64,
    /// Milliseconds since the answering node last started an anti-entropy exchange
    /// with this node (`null`: never, or this is the answering node).
    pub last_aae_ms_ago: Option<u64>,
}

/// What anti-entropy has done at the answering node.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct AaeSummary {
    /// Exchanges started.
    pub exchanges: u64,
    /// Exchanges that found the replicas equal.
    pub in_sync: u64,
    /// Objects sent to repair peers.
    pub keys_repaired: u64,
    /// Their bytes.
    pub bytes_sent: u64,
}

/// What the store's writer has done.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct StoreSummary {
    /// Batches made durable (write-ahead log records).
    pub batches: u64,
    /// Writes in them.
    pub writes: u64,
    /// Time appending them to the log, fsync included, in microseconds.
    pub commit_us: u64,
    /// Batches whose append and fsync took at most each of
    /// [`cairn_store::COMMIT_BUCKETS_US`] (cumulative), then all of them.
    pub commit_buckets: [u64; cairn_store::COMMIT_BUCKETS_US.len() + 1],
    /// redb transactions applying them (each a checkpoint holding many batches).
    pub applies: u64,
    /// Laps of the write-ahead log begun.
    pub log_restarts: u64,
    /// Time every write on the node waited for the checkpoints some laps needed (when
    /// the applier was a lap behind), in microseconds.
    pub log_restart_wait_us: u64,
    /// Decoded values of recent writes kept for their next update.
    pub warm_values: u64,
    /// Their estimated memory, in bytes.
    pub warm_bytes: u64,
    /// Writes the core holds back from the log writer until its turn ends (0 between
    /// turns).
    pub held_writes: u64,
    /// Writes durable in the log and not yet applied to the store file: how far the
    /// applier trails.
    pub unapplied_writes: u64,
    /// About how many bytes they hold (the log stops taking writes at
    /// [`cairn_store::UNAPPLIED_BYTES_MAX`]).
    pub unapplied_bytes: u64,
}

/// A staged, uncommitted change.
#[derive(Clone, Debug, Serialize)]
pub struct StagedChange {
    /// The node it is about.
    pub node: String,
    /// `set` (join or change role) or `remove`.
    pub change: &'static str,
    /// The staged address, for `set`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    /// The staged zone, for `set`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// The staged capacity, for `set`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity: Option<u64>,
}

/// What `GET /v1/cluster` returns.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    /// The answering node's id.
    pub node: String,
    /// Its name.
    pub name: String,
    /// Its HTTP address.
    pub http: String,
    /// Whether it coordinates requests yet (its new generation is durable).
    pub generation: u64,
    /// The committed layout's version.
    pub layout_version: u64,
    /// Replicas per partition.
    pub replication: u8,
    /// Partitions in the ring.
    pub partitions: u16,
    /// Nodes in the committed layout, and staged ones.
    pub nodes: Vec<NodeStatus>,
    /// Changes waiting for a commit.
    pub staged: Vec<StagedChange>,
    /// Hints this node keeps for others.
    pub hints: u64,
    /// Their bytes.
    pub hint_bytes: u64,
    /// Requests this node has in flight.
    pub in_flight: usize,
    /// Anti-entropy at this node.
    pub anti_entropy: AaeSummary,
    /// Partitions this node has not synced with their other replicas since its store
    /// started empty (a new node, a lost disk): it refuses reads of them until it has
    /// (`cairn_core`'s `node/sync.rs`). Empty once synced.
    pub syncing: Vec<u16>,
    /// This node's store.
    pub store: StoreSummary,
}

/// Reads the status off `node`.
pub fn collect(node: &Node<RedbStore>, name: &str, http: SocketAddr, now_ms: u64) -> Status {
    let layout = node.layout();
    let slots = layout.slot_counts();
    let hints_for: BTreeMap<NodeId, u64> = node
        .store()
        .hint_counts()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let last_aae: BTreeMap<NodeId, u64> = node.aae_last_exchange().collect();
    let nodes = layout
        .nodes()
        .map(|(id, role)| NodeStatus {
            id: node_name(id),
            addr: role.addr.clone(),
            zone: role.zone.as_str().to_owned(),
            capacity: role.capacity.0,
            partitions: slots.get(&id).copied().unwrap_or(0),
            up: node.is_healthy(id, now_ms),
            this: id == node.id(),
            hints_for: hints_for.get(&id).copied().unwrap_or(0),
            last_aae_ms_ago: last_aae.get(&id).map(|t| now_ms.saturating_sub(*t)),
        })
        .collect();
    let staged = layout
        .staged()
        .changes()
        .map(|(id, staged)| match &staged.change {
            NodeChange::Set(role) => StagedChange {
                node: node_name(id),
                change: "set",
                addr: Some(role.addr.clone()),
                zone: Some(role.zone.as_str().to_owned()),
                capacity: Some(role.capacity.0),
            },
            NodeChange::Remove => StagedChange {
                node: node_name(id),
                change: "remove",
                addr: None,
                zone: None,
                capacity: None,
            },
        })
        .collect();
    let backlog = node.hint_backlog().unwrap_or_default();
    let aae = node.aae_stats();
    let store = node.store().stats();
    Status {
        node: node_name(node.id()),
        name: name.to_owned(),
        http: http.to_string(),
        generation: node.generation(),
        layout_version: layout.version().0,
        replication: layout.config().replication(),
        partitions: layout.config().partitions(),
        nodes,
        staged,
        hints: backlog.count,
        hint_bytes: backlog.bytes,
        in_flight: node.pending_len(),
        syncing: node.syncing_partitions().iter().map(|p| p.0).collect(),
        anti_entropy: AaeSummary {
            exchanges: aae.exchanges,
            in_sync: aae.in_sync,
            keys_repaired: aae.keys_repaired,
            bytes_sent: aae.bytes_sent,
        },
        store: StoreSummary {
            batches: store.batches,
            writes: store.writes,
            commit_us: u64::try_from(store.commit_time.as_micros()).unwrap_or(u64::MAX),
            commit_buckets: store.commit_buckets,
            applies: store.applies,
            log_restarts: store.log_restarts,
            log_restart_wait_us: u64::try_from(store.log_restart_wait.as_micros())
                .unwrap_or(u64::MAX),
            warm_values: store.warm_values as u64,
            warm_bytes: store.warm_bytes,
            held_writes: store.held_writes as u64,
            unapplied_writes: store.unapplied_writes,
            unapplied_bytes: store.unapplied_bytes,
        },
    }
}

/// What a commit did (or, for a dry run, would do).
#[derive(Clone, Debug, Serialize)]
pub struct PlanSummary {
    /// Whether this is only a plan.
    pub dry_run: bool,
    /// The layout version the commit makes.
    pub version: u64,
    /// Nodes the commit adds.
    pub added: Vec<String>,
    /// Nodes it removes.
    pub removed: Vec<String>,
    /// Partitions whose replica sets change.
    pub moved_partitions: usize,
    /// Replica slots that move.
    pub moved_slots: u64,
}

impl PlanSummary {
    /// Summarises `plan`, made from the committed layout `before`.
    pub fn new(plan: &Plan, before: &Layout, dry_run: bool) -> Self {
        let old: BTreeSet<NodeId> = before.nodes().map(|(id, _)| id).collect();
        let new: BTreeSet<NodeId> = plan.nodes().map(|(id, _)| id).collect();
        PlanSummary {
            dry_run,
            version: plan.version().0,
            added: new.difference(&old).copied().map(node_name).collect(),
            removed: old.difference(&new).copied().map(node_name).collect(),
            moved_partitions: plan.moves().len(),
            moved_slots: plan.moved_slots(),
        }
    }
}
