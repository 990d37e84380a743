//! `Node`: one Cairn node as a deterministic state machine.
//!
//! Methods come in four kinds, in the manner of quinn-proto's `Connection`:
//! - getters (`id`, `store`, `layout`, `pending_len`…);
//! - `handle_*`: the inputs — a client request, a peer message, a timer, a durable write —
//!   each with the node's `now_ms`;
//! - mutators (`set_layout`);
//! - `poll_*`: the outputs — messages and replies to send, and when to call
//!   `handle_timeout` next.
//!
//! Nothing in here reads a clock, opens a socket or draws a random number.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use cairn_crdt::{Actor, Hlc, Replica, Value};
use cairn_ring::{Layout, NodeId, PartitionId};
use smallvec::SmallVec;

use crate::msg::{
    ClientError, ClientOp, ClientReply, ClientRequest, ClientTag, Output, PeerMessage,
    ReplicaError, RequestId, BUCKET_BYTES_MAX, KEY_BYTES_MAX,
};
use crate::options::{BucketProps, Resolved};
use crate::placement::{targets, Target};
use crate::store::{Backlog, NodeMeta, ObjectKey, Store, StoreError, WriteToken};
use crate::values::{join_into, join_values, visible};
use deadlines::Deadlines;
use rustc_hash::FxHashMap;

mod anti_entropy;
mod deadlines;
mod liveness;
mod sync;

use liveness::Liveness;

use anti_entropy::AaeState;
pub use anti_entropy::{AaeStats, AAE_KEYS_MAX, AAE_SEGMENTS_MAX, SYNC_EXCHANGES_MAX};

/// A node's fixed settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// This node.
    pub id: NodeId,
    /// Options for buckets that set none.
    pub bucket_props: BucketProps,
    /// Remote HLC readings further ahead than this are not folded into ours.
    pub max_clock_drift_ms: u64,
    /// A number never used before by this node id (the driver draws it at random). It
    /// becomes the storage generation of a store that has none (DESIGN.md §4.2).
    pub incarnation_nonce: u64,
    /// Most requests in flight at once; more are refused as `Unavailable`.
    pub pending_max: usize,
    /// How often to probe nodes believed down, and to try delivering hints.
    pub probe_interval_ms: u64,
    /// Most hints in flight to one owner at once.
    pub hint_batch_max: usize,
    /// How long a hint delivery may wait for the owner's acknowledgement.
    pub handoff_timeout_ms: u64,
    /// Deliver hints to their owners (off only in tests that prove anti-entropy alone).
    pub handoff_enabled: bool,
    /// Most hints this node keeps; beyond it, it refuses to stand in for more keys.
    pub hint_count_max: u64,
    /// Most bytes of hints this node keeps; beyond it, as `hint_count_max`.
    pub hint_bytes_max: u64,
    /// Repair stale replicas after reads (off only in tests that prove anti-entropy alone).
    pub read_repair_enabled: bool,
    /// Run anti-entropy exchanges.
    pub aae_enabled: bool,
    /// Time between the starts of two anti-entropy exchanges (at most one runs at a time;
    /// a syncing node runs `SYNC_EXCHANGES_MAX` back to back instead).
    pub aae_interval_ms: u64,
    /// How long an exchange may take before it is abandoned.
    pub aae_timeout_ms: u64,
    /// How long a syncing exchange (`sync.rs`) may take before it is abandoned and the
    /// pair compared again: shorter than `aae_timeout_ms`, since reads wait on it.
    pub sync_timeout_ms: u64,
    /// How long a tombstone acknowledged by every primary waits before it is reaped.
    pub tombstone_grace_ms: u64,
    /// Time between two gossips (layout and heartbeats) to the next peer.
    pub gossip_interval_ms: u64,
    /// A node whose heartbeat has not moved for this long is down for routing.
    pub liveness_timeout_ms: u64,
}

impl Config {
    /// Defaults for node `id`.
    pub fn new(id: NodeId, incarnation_nonce: u64) -> Self {
        Config {
            id,
            bucket_props: BucketProps::default(),
            max_clock_drift_ms: 60_000,
            incarnation_nonce,
            pending_max: 100_000,
            probe_interval_ms: 500,
            hint_batch_max: 64,
            handoff_timeout_ms: 1_000,
            handoff_enabled: true,
            hint_count_max: 1_000_000,
            hint_bytes_max: 1 << 30,
            read_repair_enabled: true,
            aae_enabled: true,
            aae_interval_ms: 100,
            aae_timeout_ms: 2_000,
            sync_timeout_ms: 500,
            // Longer than any request (TIMEOUT_MS_MAX) and than hints are expected to wait:
            // a copy that comes back after the grace can resurrect what was reaped
            // (Cassandra's gc_grace rule; see ARCHITECTURE.md).
            tombstone_grace_ms: 24 * 60 * 60 * 1000,
            gossip_interval_ms: 500,
            liveness_timeout_ms: 5_000,
        }
    }
}

/// How much longer a forwarding node waits than the coordinator's own deadline.
const FORWARD_SLACK_MS: u64 = 1_000;

/// Most nodes a gossiped heartbeat table may name (the ring allows 256).
const GOSSIP_NODES_MAX: usize = 1024;

/// Where a request came from, so its answer can go back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    Client(ClientTag),
    Peer { from: NodeId, id: RequestId },
}

/// A write this node coordinates, from its own durable apply to the last acknowledgement.
#[derive(Debug)]
struct WriteState {
    origin: Origin,
    key: ObjectKey,
    targets: Vec<Target>,
    opts: Resolved,
    delta: Value,
    /// What to answer on success; `None` once the client is answered (either way).
    reply: Option<ClientReply>,
    /// Inline for the usual `n` of three or less: one allocation fewer per write.
    acked: SmallVec<[NodeId; 3]>,
    /// Targets that answered with an error (each counted once, duplicates or not).
    failed: Vec<NodeId>,
    /// For a delete: the tombstone's state hash, to reap it once every primary has it.
    tombstone: Option<u64>,
}

/// A read (or the read phase of a delete) this node coordinates.
#[derive(Debug)]
struct ReadState {
    origin: Origin,
    key: ObjectKey,
    targets: Vec<Target>,
    opts: Resolved,
    replies: Vec<(Target, Option<Value>)>,
    /// Targets that answered with an error (each counted once, duplicates or not).
    failed: Vec<NodeId>,
    replied: bool,
    /// What the read is for.
    then: Then,
}

/// What a coordinated read leads to.
#[derive(Debug)]
enum Then {
    /// Answer the client with the merged value.
    Reply,
    /// Reset what the read saw: a delete.
    Delete,
    /// Apply an operation over what the read saw. Register assignments go this way: the
    /// new timestamp then orders after every write a read quorum has acknowledged, so a
    /// write that starts after another was acknowledged wins over it even when the
    /// coordinator's clock lags or it missed that write.
    Apply(cairn_crdt::Op),
}

#[derive(Debug)]
enum Pending {
    Forward {
        origin: Origin,
        to: NodeId,
    },
    Write(WriteState),
    Read(ReadState),
    /// An anti-entropy exchange this node started.
    Aae {
        peer: NodeId,
        partition: PartitionId,
    },
    /// A tombstone every primary acknowledged, reaped when its grace period ends.
    Reap {
        key: ObjectKey,
        state_hash: u64,
        owners: Vec<NodeId>,
    },
    /// A hint sent to its owner; removed once the owner acknowledges.
    Handoff {
        owner: NodeId,
        key: ObjectKey,
        sent: Value,
    },
}

/// What a durable write unblocks.
#[derive(Clone, Copy, Debug)]
enum Waiter {
    /// The coordinator's own apply of a write: now replicate it.
    LocalWrite(RequestId),
    /// A replica's merge: now acknowledge it.
    Ack { to: NodeId, id: RequestId },
}

/// A Cairn node. See the module docs for how to drive it.
#[derive(Debug)]
pub struct Node<S> {
    cfg: Config,
    layout: Layout,
    store: S,
    meta: NodeMeta,
    hlc: Hlc,
    down: BTreeSet<NodeId>,
    next_id: u64,
    /// Ids and tokens are this node's own sequence numbers, never a client's bytes, so
    /// a fast unkeyed hash is safe; its order is fixed, so runs stay reproducible.
    pending: FxHashMap<RequestId, Pending>,
    deadlines: Deadlines,
    waiters: FxHashMap<WriteToken, Waiter>,
    /// Hints sent to their owners and not yet acknowledged (at most `hint_batch_max`
    /// per owner).
    handoffs: BTreeSet<(NodeId, ObjectKey)>,
    /// Forwards already taken, so a duplicated forward is not applied twice; each is kept
    /// until its sender has surely given up on it, and there are at most `pending_max`.
    forwards_seen: BTreeMap<(NodeId, RequestId), u64>,
    next_probe_ms: u64,
    aae: AaeState,
    /// Which (partition, peer) pairs have synced since this run started unsynced
    /// (`sync.rs`): at most one entry per pair of the layout, emptied once synced.
    synced_pairs: BTreeSet<(PartitionId, NodeId)>,
    next_gossip_ms: u64,
    gossip_cursor: usize,
    liveness: Liveness,
    /// This run's liveness generation: the node's clock when it started, moved past an
    /// earlier run's if gossip shows one ahead (`liveness.rs`).
    liveness_generation: u64,
    /// Until this metadata write is durable, the node coordinates nothing.
    starting: Option<WriteToken>,
    outputs: VecDeque<Output>,
}

impl<S: Store> Node<S> {
    /// Starts a node over `store`. A store without metadata (new, or lost) gets a new
    /// storage generation from `cfg.incarnation_nonce`, so no actor of an earlier
    /// incarnation is ever reused. The metadata write is staged: the driver reports it
    /// persisted like any other.
    pub fn new(cfg: Config, layout: Layout, mut store: S, now_ms: u64) -> Result<Self, StoreError> {
        // Every start takes a new generation, durable before this node coordinates: its
        // last run may have let staged (never durable) state leave in a read, a repair
        // or an anti-entropy exchange, so its old actors' next dots may exist elsewhere.
        let meta = match store.meta()? {
            Some(meta) => NodeMeta {
                generation: meta.generation.wrapping_add(1),
                ..meta
            },
            // An empty store may lack what quorums counted this node for (`sync.rs`).
            None => NodeMeta {
                generation: cfg.incarnation_nonce,
                unsynced: true,
                ..NodeMeta::default()
            },
        };
        let meta_token = store.stage_meta(meta.clone())?;
        let hlc = Hlc::new(cfg.max_clock_drift_ms);
        // Ids must not repeat across restarts (peers deduplicate forwards by them).
        let first_id = mix(cfg.incarnation_nonce) >> 1;
        let mut node = Node {
            next_probe_ms: now_ms,
            cfg,
            layout,
            store,
            meta,
            hlc,
            down: BTreeSet::new(),
            next_id: first_id,
            pending: FxHashMap::default(),
            deadlines: Deadlines::default(),
            waiters: FxHashMap::default(),
            handoffs: BTreeSet::new(),
            forwards_seen: BTreeMap::new(),
            // A restarted node compares trees at once (DESIGN.md §5, anti-entropy).
            aae: AaeState {
                next_at_ms: now_ms,
                ..AaeState::default()
            },
            next_gossip_ms: now_ms,
            gossip_cursor: 0,
            liveness: Liveness::default(),
            liveness_generation: now_ms,
            starting: Some(meta_token),
            outputs: VecDeque::new(),
            synced_pairs: BTreeSet::new(),
        };
        // A node alone in its partitions (n = 1) has no one to sync with.
        node.finish_sync_if_done();
        Ok(node)
    }

    // ---- getters ----

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.cfg.id
    }

    /// The storage.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The storage, for the driver's commits.
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// Gives the storage back (a simulated crash keeps only what it made durable).
    pub fn into_store(self) -> S {
        self.store
    }

    /// The layout in use.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The storage generation (part of every actor id).
    pub fn generation(&self) -> u64 {
        self.meta.generation
    }

    /// The actor this node uses for `partition` in this storage generation.
    pub fn actor(&self, partition: PartitionId) -> Actor {
        Actor(mix(mix(self.cfg.id.0 ^ mix(self.meta.generation))
            ^ mix(u64::from(partition.0) ^ mix(self.epoch(partition)))))
    }

    fn epoch(&self, partition: PartitionId) -> u64 {
        self.meta.epochs.get(&partition).copied().unwrap_or(0)
    }

    /// The actor to coordinate with in `partition`: a new one if this node dropped data of
    /// the partition since it last coordinated there (DESIGN.md §4.2).
    fn fresh_actor(&mut self, partition: PartitionId) -> Actor {
        if self.meta.dropped.remove(&partition) {
            *self.meta.epochs.entry(partition).or_default() += 1;
            // Staged with (before) the write that uses the new actor: a crash loses both.
            let _ = self.store.stage_meta(self.meta.clone());
        }
        self.actor(partition)
    }

    /// Records that this node dropped data of `partition`.
    fn mark_dropped(&mut self, partition: PartitionId) {
        if self.meta.dropped.insert(partition) {
            let _ = self.store.stage_meta(self.meta.clone());
        }
    }

    /// Every copy of `key` this node holds (its object and its hints for any owner),
    /// joined: the coordinator mints dots from the join, so its actor's history for the
    /// key stays one line however many copies it keeps. Both callers are writes that
    /// stage what they make of it (as the object, or as a hint on a fallback), so the
    /// object is read for update; a write that fails before staging leaves the store
    /// reading the key afresh.
    fn load_all(&self, key: &ObjectKey) -> Result<Option<Value>, StoreError> {
        let mut joined = self.store.object_for_update(key)?;
        for (_, hint) in &self.store.key_hints(key)? {
            match &mut joined {
                Some(acc) => join_into(acc, hint),
                None => joined = Some(hint.clone()),
            }
        }
        Ok(joined)
    }

    /// Requests in flight.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// The id under which this node coordinates (or forwarded) the client request
    /// `tag`, while it is in flight: peer messages about it carry this id, so logs can
    /// follow it across nodes. O(requests in flight): for debugging.
    pub fn request_for(&self, tag: ClientTag) -> Option<RequestId> {
        let origin = Origin::Client(tag);
        self.pending.iter().find_map(|(id, p)| match p {
            Pending::Forward { origin: o, .. } if *o == origin => Some(*id),
            Pending::Write(w) if w.origin == origin => Some(*id),
            Pending::Read(r) if r.origin == origin => Some(*id),
            _ => None,
        })
    }

    /// Hints this node keeps for others.
    pub fn hint_backlog(&self) -> Result<Backlog, StoreError> {
        self.store.hint_backlog()
    }

    // ---- mutators ----

    /// Switches to a new layout, and starts an anti-entropy exchange at once.
    pub fn set_layout(&mut self, layout: Layout) {
        self.layout = layout;
        self.aae.next_at_ms = 0;
    }

    // ---- inputs ----

    /// A client's request, answered later through `poll_output` with the same `tag`.
    pub fn handle_client(&mut self, now_ms: u64, tag: ClientTag, request: ClientRequest) {
        let origin = Origin::Client(tag);
        if let Err(e) = check_key(&request) {
            return self.answer(origin, Err(e));
        }
        self.route(now_ms, origin, request, false);
    }

    /// A message from a peer.
    pub fn handle_peer(&mut self, now_ms: u64, from: NodeId, msg: PeerMessage) {
        self.down.remove(&from);
        match msg {
            PeerMessage::Read { id, key, .. } if !self.owns_partition_of(&key) => {
                let result = Err(ReplicaError::WrongPartition);
                self.send(from, PeerMessage::ReadReply { id, result });
            }
            PeerMessage::Replicate { id, key, .. } if !self.owns_partition_of(&key) => {
                if let Some(id) = id {
                    let result = Err(ReplicaError::WrongPartition);
                    self.send(from, PeerMessage::ReplicateAck { id, result });
                }
            }
            PeerMessage::AaeRepair { key, .. } if !self.owns_partition_of(&key) => {}
            PeerMessage::Forward { id, request } => {
                if self.forwards_seen.len() >= self.cfg.pending_max {
                    let err = ClientError::Unavailable("too many forwards to remember");
                    return self.send(
                        from,
                        PeerMessage::ForwardReply {
                            id,
                            result: Err(err),
                        },
                    );
                }
                if !self.first_forward(now_ms, from, id) {
                    return;
                }
                let origin = Origin::Peer { from, id };
                match check_key(&request) {
                    Ok(()) => self.route(now_ms, origin, request, true),
                    Err(e) => self.answer(origin, Err(e)),
                }
            }
            PeerMessage::ForwardReply { id, result } => {
                if matches!(self.pending.get(&id), Some(Pending::Forward { to, .. }) if *to == from)
                {
                    if let Some(Pending::Forward { origin, .. }) = self.pending.remove(&id) {
                        self.answer(origin, result);
                    }
                }
            }
            PeerMessage::Replicate {
                id,
                key,
                value,
                hint_for,
            } => self.replicate(from, id, key, value, hint_for),
            PeerMessage::ReplicateAck { id, result } => self.on_ack(now_ms, from, id, result),
            PeerMessage::Read { id, key, hint_for } => {
                let result = self.read_copy(&key, hint_for);
                self.send(from, PeerMessage::ReadReply { id, result });
            }
            PeerMessage::ReadReply { id, result } => self.on_read_reply(now_ms, from, id, result),
            PeerMessage::AaeRoot {
                id,
                partition,
                root,
            } => self.on_aae_root(from, id, partition, root),
            PeerMessage::AaeRootReply {
                id,
                partition,
                in_sync,
            } => self.on_aae_root_reply(from, id, partition, in_sync),
            PeerMessage::AaeBranches {
                id,
                partition,
                branches,
            } => self.on_aae_branches(from, id, partition, branches),
            PeerMessage::AaeSegments {
                id,
                partition,
                branches,
                segments,
            } => self.on_aae_segments(from, id, partition, branches, segments),
            PeerMessage::AaeKeys {
                id,
                partition,
                segments,
                after,
                keys,
            } => self.on_aae_keys(from, id, partition, segments, after, keys),
            PeerMessage::AaeFetch {
                id,
                keys,
                complete,
                next,
            } => self.on_aae_fetch(from, id, keys, complete, next),
            PeerMessage::AaeRepair { key, value } => self.on_aae_repair(from, key, value),
            PeerMessage::Reap { key, state_hash } => self.reap(&key, state_hash),
            PeerMessage::Gossip { layout, beats } => self.on_gossip(now_ms, &layout, &beats),
            PeerMessage::Ping => self.send(from, PeerMessage::Pong),
            PeerMessage::Pong => {}
        }
        if self.meta.unsynced {
            // Syncing exchanges run back to back, not once per `aae_interval_ms`.
            self.schedule_aae(now_ms);
        }
    }

    /// Writes the store has made durable.
    pub fn handle_persisted(&mut self, now_ms: u64, tokens: &[WriteToken]) {
        for token in tokens {
            if self.starting == Some(*token) {
                self.starting = None;
            }
            match self.waiters.remove(token) {
                Some(Waiter::LocalWrite(id)) => self.replicate_write(now_ms, id),
                Some(Waiter::Ack { to, id }) => {
                    self.send(to, PeerMessage::ReplicateAck { id, result: Ok(()) })
                }
                None => {}
            }
        }
    }

    /// Time has passed: expire requests, probe nodes believed down, deliver hints.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        while let Some(id) = self.deadlines.pop_due(now_ms) {
            self.expire(now_ms, id);
        }
        if now_ms >= self.next_probe_ms {
            self.next_probe_ms = now_ms + self.cfg.probe_interval_ms;
            // Forgotten once their senders have surely given up (pruned here, not per message).
            self.forwards_seen.retain(|_, until| *until > now_ms);
            let down: Vec<NodeId> = self.down.iter().copied().collect();
            for node in down {
                self.send(node, PeerMessage::Ping);
            }
            if self.cfg.handoff_enabled {
                self.deliver_hints(now_ms);
            }
        }
        if now_ms >= self.next_gossip_ms {
            self.next_gossip_ms = now_ms + self.cfg.gossip_interval_ms;
            self.gossip(now_ms);
        }
        self.schedule_aae(now_ms);
    }

    /// Sends the layout to the next peer in turn; layouts merge as a CRDT, so every node
    /// learns every committed change (and restarted nodes catch up) without an operator.
    fn gossip(&mut self, now_ms: u64) {
        let me = self.cfg.id;
        let peers: Vec<NodeId> = self
            .layout
            .nodes()
            .map(|(id, _)| id)
            .filter(|id| *id != me)
            .collect();
        if peers.is_empty() {
            return;
        }
        let to = peers[self.gossip_cursor % peers.len()];
        self.gossip_cursor = self.gossip_cursor.wrapping_add(1);
        self.await_unheard(now_ms);
        let beats = self.beat(now_ms);
        let layout = Box::new(self.layout.clone());
        self.send(to, PeerMessage::Gossip { layout, beats });
    }

    fn on_gossip(&mut self, now_ms: u64, theirs: &Layout, beats: &[(NodeId, u64, u64)]) {
        self.merge_beats(now_ms, beats);
        let mut merged = self.layout.clone();
        if let Ok(true) = merged.merge(theirs) {
            self.set_layout(merged);
        }
    }

    /// Removes a tombstone that no write has touched since every primary acknowledged it.
    fn reap(&mut self, key: &ObjectKey, state_hash: u64) {
        if let Ok(Some(value)) = self.store.object(key) {
            let unchanged = value.is_bottom() && crate::aae::state_hash(&value) == state_hash;
            if unchanged {
                // The mark first: a crash must not keep the removal and lose the mark.
                self.mark_dropped(key.partition);
                let _ = self.store.stage_object_removal(key);
            }
        }
    }

    /// Whether `key` hashes to the partition it names (peers' keys are not trusted: a wrong
    /// partition would make a second copy of the key that nobody reads).
    fn owns_partition_of(&self, key: &ObjectKey) -> bool {
        self.layout.partition_of(&key.bucket, &key.key) == key.partition
    }

    /// Records a forward; false if it was seen before (a duplicate, or a replay).
    fn first_forward(&mut self, now_ms: u64, from: NodeId, id: RequestId) -> bool {
        // A forward's sender gives up after at most TIMEOUT_MS_MAX.
        let keep_until = now_ms.saturating_add(2 * crate::options::TIMEOUT_MS_MAX);
        self.forwards_seen.insert((from, id), keep_until).is_none()
    }

    // ---- outputs ----

    /// The next message or reply to send.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When to call `handle_timeout` next.
    pub fn poll_timeout(&self) -> Option<u64> {
        let mut next = self.next_probe_ms.min(self.next_gossip_ms);
        if let Some(at) = self.deadlines.first() {
            next = next.min(at);
        }
        let aae_on = self.cfg.aae_enabled || self.meta.unsynced;
        if aae_on && self.aae.in_flight.len() < self.aae_slots() {
            next = next.min(self.aae.next_at_ms);
        }
        Some(next)
    }

    // ---- routing ----

    fn route(&mut self, now_ms: u64, origin: Origin, request: ClientRequest, forwarded: bool) {
        if self.starting.is_some() {
            return self.answer(
                origin,
                Err(ClientError::Unavailable("the node is starting")),
            );
        }
        if self.pending.len() >= self.cfg.pending_max {
            return self.answer(
                origin,
                Err(ClientError::Unavailable("too many requests in flight")),
            );
        }
        let storage_nodes = self
            .layout
            .nodes()
            .filter(|(_, role)| role.stores_data())
            .count();
        if storage_nodes == 0 {
            // A node that joined but has not yet heard of the first commit (or a cluster
            // whose layout was never committed): not a bad request, a cluster not ready.
            return self.answer(
                origin,
                Err(ClientError::Unavailable("no layout is committed yet")),
            );
        }
        let opts = match Resolved::new(&self.cfg.bucket_props, &request.options, storage_nodes) {
            Ok(opts) => opts,
            Err(e) => return self.answer(origin, Err(e.into())),
        };
        let partition = self.layout.partition_of(&request.bucket, &request.key);
        let me = self.cfg.id;
        let targets = targets(&self.layout, partition, opts.n, |n| {
            n == me || self.is_healthy(n, now_ms)
        });
        if targets.iter().any(|t| t.node == me) {
            let key = ObjectKey {
                partition,
                bucket: request.bucket,
                key: request.key,
            };
            return self.coordinate(now_ms, origin, key, request.op, targets, opts);
        }
        let first = targets.iter().find(|t| t.primary).or(targets.first());
        match (first, forwarded) {
            (Some(t), false) => {
                let to = t.node;
                // The coordinator answers within `timeout_ms`; wait a little longer, so a
                // slow but healthy coordinator is not taken for a dead one.
                let wait = opts.timeout_ms.saturating_add(FORWARD_SLACK_MS);
                let id = self.register(now_ms, wait, Pending::Forward { origin, to });
                self.send(to, PeerMessage::Forward { id, request });
            }
            (_, true) => self.answer(
                origin,
                Err(ClientError::Unavailable(
                    "forwarded to a node that holds no replica",
                )),
            ),
            (None, false) => self.answer(
                origin,
                Err(ClientError::Unavailable("no replica is reachable")),
            ),
        }
    }

    fn coordinate(
        &mut self,
        now_ms: u64,
        origin: Origin,
        key: ObjectKey,
        op: ClientOp,
        targets: Vec<Target>,
        opts: Resolved,
    ) {
        match op {
            ClientOp::Update(op @ cairn_crdt::Op::Register(_)) => {
                self.start_read(now_ms, origin, key, targets, opts, Then::Apply(op))
            }
            ClientOp::Update(op) => self.start_write(now_ms, origin, key, targets, opts, op),
            ClientOp::Read => self.start_read(now_ms, origin, key, targets, opts, Then::Reply),
            ClientOp::Delete => self.start_read(now_ms, origin, key, targets, opts, Then::Delete),
        }
    }

    // ---- writes ----

    fn start_write(
        &mut self,
        now_ms: u64,
        origin: Origin,
        key: ObjectKey,
        targets: Vec<Target>,
        opts: Resolved,
        op: cairn_crdt::Op,
    ) {
        let current = match self.load_all(&key) {
            Ok(v) => v,
            Err(e) => return self.answer(origin, Err(e.into())),
        };
        let mut value = current.unwrap_or_else(|| Value::empty(op.value_type()));
        let replica = Replica {
            actor: self.fresh_actor(key.partition),
            now: self.tick(now_ms),
        };
        let delta = match value.apply(&op, replica) {
            Ok(delta) => delta,
            Err(e) => return self.answer(origin, Err(e.into())),
        };
        let reply = update_reply(&opts, &value);
        self.stage_write(now_ms, origin, key, targets, opts, value, delta, reply);
    }

    #[allow(clippy::too_many_arguments)]
    fn stage_write(
        &mut self,
        now_ms: u64,
        origin: Origin,
        key: ObjectKey,
        targets: Vec<Target>,
        opts: Resolved,
        value: Value,
        delta: Value,
        reply: ClientReply,
    ) {
        let hint_for = self.my_hint_for(&targets);
        if self.check_hint_room(&key, hint_for).is_err() {
            return self.answer(
                origin,
                Err(ClientError::Unavailable(
                    "this fallback's hint backlog is full",
                )),
            );
        }
        let tombstone =
            matches!(reply, ClientReply::Deleted).then(|| crate::aae::state_hash(&value));
        let token = match self.save(key.clone(), hint_for, value) {
            Ok(t) => t,
            Err(e) => return self.answer(origin, Err(e.into())),
        };
        let state = WriteState {
            origin,
            key,
            targets,
            opts,
            delta,
            reply: Some(reply),
            acked: SmallVec::new(),
            failed: Vec::new(),
            tombstone,
        };
        let id = self.register(now_ms, opts.timeout_ms, Pending::Write(state));
        self.waiters.insert(token, Waiter::LocalWrite(id));
        // The delta goes out now, while the local write is still being made durable: the
        // two fsyncs overlap instead of adding up. Safe for causality because a crash
        // before the local write is durable ends this incarnation, and every start takes
        // a new generation (a new actor), so the dot the replicas hold is never reissued.
        self.send_delta(id);
    }

    fn send_delta(&mut self, id: RequestId) {
        let me = self.cfg.id;
        let Some(Pending::Write(w)) = self.pending.get(&id) else {
            return;
        };
        let sends: Vec<(NodeId, PeerMessage)> = w
            .targets
            .iter()
            .filter(|t| t.node != me)
            .map(|t| {
                let msg = PeerMessage::Replicate {
                    id: Some(id),
                    key: w.key.clone(),
                    value: w.delta.clone(),
                    hint_for: t.hint_for,
                };
                (t.node, msg)
            })
            .collect();
        for (to, msg) in sends {
            self.send(to, msg);
        }
    }

    /// The coordinator's own apply is durable: count it.
    fn replicate_write(&mut self, now_ms: u64, id: RequestId) {
        let me = self.cfg.id;
        let Some(Pending::Write(w)) = self.pending.get_mut(&id) else {
            return;
        };
        w.acked.push(me);
        self.check_write(now_ms, id);
    }

    fn on_ack(
        &mut self,
        now_ms: u64,
        from: NodeId,
        id: RequestId,
        result: Result<(), ReplicaError>,
    ) {
        match self.pending.get_mut(&id) {
            Some(Pending::Write(w)) => {
                match result {
                    Ok(())
                        if w.targets.iter().any(|t| t.node == from) && !w.acked.contains(&from) =>
                    {
                        w.acked.push(from)
                    }
                    Ok(()) => {}
                    Err(_)
                        if w.targets.iter().any(|t| t.node == from)
                            && !w.failed.contains(&from) =>
                    {
                        w.failed.push(from)
                    }
                    Err(_) => {}
                }
                self.check_write(now_ms, id);
            }
            Some(Pending::Handoff { .. }) => self.on_handoff_ack(id, from, result.is_ok()),
            _ => {}
        }
    }

    fn check_write(&mut self, now_ms: u64, id: RequestId) {
        let Some(Pending::Write(w)) = self.pending.get_mut(&id) else {
            return;
        };
        let acks = w.acked.len();
        let primaries = w
            .acked
            .iter()
            .filter(|n| w.targets.iter().any(|t| t.node == **n && t.primary))
            .count();
        let answered = acks + w.failed.iter().filter(|n| !w.acked.contains(n)).count();
        let done = answered >= w.targets.len();
        // The reply leaves the state when the client is answered, whatever the answer (a
        // set's reply is the whole set: moved, not copied), so `None` means answered.
        let answer = if w.reply.is_none() {
            None
        } else if acks >= usize::from(w.opts.w) && primaries >= usize::from(w.opts.pw) {
            w.reply.take().map(Ok)
        } else if done {
            w.reply = None;
            Some(Err(quorum_error(acks, primaries, w.opts.w, w.opts.pw)))
        } else {
            None
        };
        if let Some(result) = answer {
            let origin = w.origin;
            self.answer(origin, result);
        }
        if done {
            if let Some(Pending::Write(w)) = self.pending.remove(&id) {
                self.maybe_reap(now_ms, w);
            }
        }
    }

    /// A tombstone is reaped only once every primary of its key acknowledged it, and only
    /// after a grace period (Garage's and Riak's lesson: earlier reaping resurrects data).
    fn maybe_reap(&mut self, now_ms: u64, w: WriteState) {
        let Some(state_hash) = w.tombstone else {
            return;
        };
        let everyone = w
            .targets
            .iter()
            .all(|t| t.primary && w.acked.contains(&t.node));
        // Every replica of the partition, not just the request's `n`: a smaller `n` leaves
        // copies on replicas that never saw the delete.
        let replicas = self.layout.replicas(w.key.partition).len();
        if everyone && w.targets.len() == replicas {
            let owners = w.targets.iter().map(|t| t.node).collect();
            let pending = Pending::Reap {
                key: w.key,
                state_hash,
                owners,
            };
            self.register(now_ms, self.cfg.tombstone_grace_ms, pending);
        }
    }

    // ---- reads ----

    fn start_read(
        &mut self,
        now_ms: u64,
        origin: Origin,
        key: ObjectKey,
        targets: Vec<Target>,
        opts: Resolved,
        then: Then,
    ) {
        let me = self.cfg.id;
        let state = ReadState {
            origin,
            key: key.clone(),
            targets: targets.clone(),
            opts,
            replies: Vec::new(),
            failed: Vec::new(),
            replied: false,
            then,
        };
        let id = self.register(now_ms, opts.timeout_ms, Pending::Read(state));
        for t in targets.iter().filter(|t| t.node != me) {
            self.send(
                t.node,
                PeerMessage::Read {
                    id,
                    key: key.clone(),
                    hint_for: t.hint_for,
                },
            );
        }
        let local = self.read_copy(&key, self.my_hint_for(&targets));
        self.on_read_reply(now_ms, me, id, local);
    }

    /// This node's answer to a read: its copy of `key` (or its hints for `hint_for`),
    /// unless it holds the key's partition and has not synced it yet.
    fn read_copy(
        &self,
        key: &ObjectKey,
        hint_for: Option<NodeId>,
    ) -> Result<Option<Value>, ReplicaError> {
        if hint_for.is_none() && self.is_syncing(key.partition) {
            return Err(ReplicaError::Syncing);
        }
        Ok(self.load(key, hint_for)?)
    }

    fn on_read_reply(
        &mut self,
        now_ms: u64,
        from: NodeId,
        id: RequestId,
        result: Result<Option<Value>, ReplicaError>,
    ) {
        let Some(Pending::Read(r)) = self.pending.get_mut(&id) else {
            return;
        };
        let Some(target) = r.targets.iter().find(|t| t.node == from).copied() else {
            return;
        };
        if r.replies.iter().any(|(t, _)| t.node == from) || r.failed.contains(&from) {
            return;
        }
        match result {
            Ok(value) => r.replies.push((target, value)),
            Err(_) => r.failed.push(from),
        }
        self.check_read(now_ms, id);
    }

    fn check_read(&mut self, now_ms: u64, id: RequestId) {
        let Some(Pending::Read(r)) = self.pending.get_mut(&id) else {
            return;
        };
        let done = r.replies.len() + r.failed.len() >= r.targets.len();
        // A fallback that holds nothing for the key knows only that no write went through
        // it. Counted while a primary has yet to answer, it could stand in for a crashed
        // primary that held the last acknowledged write, and a register write's read
        // phase would then stamp below that write (simulator, `--keys 100000`, seed 105).
        // So an empty fallback answer counts once no primary asked is still silent.
        let primary_silent = r.targets.iter().any(|t| {
            t.primary
                && !r.failed.contains(&t.node)
                && !r.replies.iter().any(|(a, _)| a.node == t.node)
        });
        let oks = r
            .replies
            .iter()
            .filter(|(t, v)| t.primary || v.is_some() || !primary_silent)
            .count();
        let primaries = r.replies.iter().filter(|(t, _)| t.primary).count();
        if !r.replied && oks >= usize::from(r.opts.r) && primaries >= usize::from(r.opts.pr) {
            r.replied = true;
            let merged = join_values(r.replies.iter().filter_map(|(_, v)| v.as_ref()));
            if !matches!(r.then, Then::Reply) {
                return self.write_after_read(now_ms, id, merged);
            }
            let origin = r.origin;
            let reply = ClientReply::Value(merged.as_ref().and_then(visible));
            self.answer(origin, Ok(reply));
        } else if !r.replied && done {
            r.replied = true;
            let (origin, err) = (r.origin, quorum_error(oks, primaries, r.opts.r, r.opts.pr));
            self.answer(origin, Err(err));
        }
        if done {
            self.finish_read(id);
        }
    }

    /// Every target answered (or time ran out): repair the ones that are behind.
    fn finish_read(&mut self, id: RequestId) {
        let Some(Pending::Read(r)) = self.pending.remove(&id) else {
            return;
        };
        if !self.cfg.read_repair_enabled {
            return;
        }
        let Some(merged) = join_values(r.replies.iter().filter_map(|(_, v)| v.as_ref())) else {
            return;
        };
        let me = self.cfg.id;
        for (target, value) in &r.replies {
            if value.as_ref() == Some(&merged) {
                continue;
            }
            if target.node == me {
                // Best effort: a failed local repair is retried by the next read.
                let _ = self.merge_local(&r.key, target.hint_for, &merged);
            } else {
                let msg = PeerMessage::Replicate {
                    id: None,
                    key: r.key.clone(),
                    value: merged.clone(),
                    hint_for: target.hint_for,
                };
                self.send(target.node, msg);
            }
        }
    }

    /// A read phase reached its quorum: apply the delete or the operation over what it
    /// saw (joined with the local copy), then write as any update.
    fn write_after_read(&mut self, now_ms: u64, read_id: RequestId, seen: Option<Value>) {
        let Some(Pending::Read(r)) = self.pending.remove(&read_id) else {
            return;
        };
        let local = match self.load_all(&r.key) {
            Ok(v) => v,
            Err(e) => return self.answer(r.origin, Err(e.into())),
        };
        // `local` was taken for this write: join into it rather than copy it.
        let value = match (local, seen) {
            (Some(mut local), Some(seen)) => {
                join_into(&mut local, &seen);
                Some(local)
            }
            (local, seen) => local.or(seen),
        };
        let replica = Replica {
            actor: self.fresh_actor(r.key.partition),
            now: self.tick(now_ms),
        };
        let (value, delta, reply) = match (r.then, value) {
            (Then::Delete, None) => return self.answer(r.origin, Ok(ClientReply::Deleted)),
            (Then::Delete, Some(mut value)) => {
                let delta = value.reset(replica);
                (value, delta, ClientReply::Deleted)
            }
            (Then::Apply(op), value) => {
                let mut value = value.unwrap_or_else(|| Value::empty(op.value_type()));
                match value.apply(&op, replica) {
                    Ok(delta) => {
                        let reply = update_reply(&r.opts, &value);
                        (value, delta, reply)
                    }
                    Err(e) => return self.answer(r.origin, Err(e.into())),
                }
            }
            (Then::Reply, _) => return,
        };
        self.stage_write(
            now_ms, r.origin, r.key, r.targets, r.opts, value, delta, reply,
        );
    }

    // ---- replica side ----

    fn replicate(
        &mut self,
        from: NodeId,
        id: Option<RequestId>,
        key: ObjectKey,
        value: Value,
        hint_for: Option<NodeId>,
    ) {
        let result = self
            .check_hint_room(&key, hint_for)
            .and_then(|()| self.merge_local(&key, hint_for, &value));
        match result {
            Ok(token) => {
                if let Some(id) = id {
                    self.waiters.insert(token, Waiter::Ack { to: from, id });
                }
            }
            Err(e) => {
                if let Some(id) = id {
                    self.send(from, PeerMessage::ReplicateAck { id, result: Err(e) });
                }
            }
        }
    }

    /// A fallback keeps a new hint only while its backlog is under both bounds: past them
    /// it refuses to stand in for another key (the coordinator counts a failure, and the
    /// client's write is indeterminate), but it keeps merging into hints it already holds,
    /// so nothing it has accepted is ever dropped.
    fn check_hint_room(
        &self,
        key: &ObjectKey,
        hint_for: Option<NodeId>,
    ) -> Result<(), ReplicaError> {
        let Some(owner) = hint_for else { return Ok(()) };
        if self.store.hint(owner, key)?.is_some() {
            return Ok(());
        }
        let backlog = self.store.hint_backlog()?;
        if backlog.count >= self.cfg.hint_count_max || backlog.bytes >= self.cfg.hint_bytes_max {
            return Err(ReplicaError::HintBacklogFull {
                count: backlog.count,
                bytes: backlog.bytes,
            });
        }
        Ok(())
    }

    /// Merges `value` into the local copy (or hint) and stages the result.
    fn merge_local(
        &mut self,
        key: &ObjectKey,
        hint_for: Option<NodeId>,
        value: &Value,
    ) -> Result<WriteToken, ReplicaError> {
        let merged = match self.load_for_update(key, hint_for)? {
            Some(mut mine) => {
                join_into(&mut mine, value);
                mine
            }
            None => value.clone(),
        };
        Ok(self.save(key.clone(), hint_for, merged)?)
    }

    // ---- hinted handoff ----

    /// Sends hints to owners that are reachable, a bounded batch per owner.
    fn deliver_hints(&mut self, now_ms: u64) {
        let Ok(counts) = self.store.hint_counts() else {
            return;
        };
        for (owner, _) in counts {
            if owner == self.cfg.id || !self.is_healthy(owner, now_ms) {
                continue;
            }
            let in_flight = self.handoffs.iter().filter(|(o, _)| *o == owner).count();
            let room = self.cfg.hint_batch_max.saturating_sub(in_flight);
            if room == 0 {
                continue;
            }
            // The first hints may be the ones in flight: read past them.
            let Ok(batch) = self.store.hints(owner, None, room + in_flight) else {
                continue;
            };
            let fresh = batch
                .into_iter()
                .filter(|(k, _)| !self.handoffs.contains(&(owner, k.clone())));
            let fresh: Vec<(ObjectKey, Value)> = fresh.take(room).collect();
            for (key, value) in fresh {
                let timeout = self.cfg.handoff_timeout_ms;
                let id = self.register(
                    now_ms,
                    timeout,
                    Pending::Handoff {
                        owner,
                        key: key.clone(),
                        sent: value.clone(),
                    },
                );
                self.handoffs.insert((owner, key.clone()));
                self.send(
                    owner,
                    PeerMessage::Replicate {
                        id: Some(id),
                        key,
                        value,
                        hint_for: None,
                    },
                );
            }
        }
    }

    fn on_handoff_ack(&mut self, id: RequestId, from: NodeId, ok: bool) {
        if !matches!(self.pending.get(&id), Some(Pending::Handoff { owner, .. }) if *owner == from)
        {
            return;
        }
        let Some(Pending::Handoff { owner, key, sent }) = self.pending.remove(&id) else {
            return;
        };
        self.handoffs.remove(&(owner, key.clone()));
        if !ok {
            return;
        }
        // Remove the hint only if nothing merged into it since it was sent.
        let unchanged = matches!(self.store.hint(owner, &key), Ok(Some(now)) if now == sent);
        if unchanged {
            // The mark first: a crash must not keep the removal and lose the mark.
            self.mark_dropped(key.partition);
            let _ = self.store.stage_hint_removal(owner, &key);
        }
    }

    // ---- plumbing ----

    fn expire(&mut self, now_ms: u64, id: RequestId) {
        match self.pending.get(&id) {
            Some(Pending::Write(w)) => {
                let silent: Vec<NodeId> = w
                    .targets
                    .iter()
                    .map(|t| t.node)
                    .filter(|n| !w.acked.contains(n))
                    .collect();
                self.suspect(silent);
                if let Some(Pending::Write(w)) = self.pending.get_mut(&id) {
                    w.failed = w
                        .targets
                        .iter()
                        .map(|t| t.node)
                        .filter(|n| !w.acked.contains(n))
                        .collect();
                }
                self.check_write(now_ms, id);
                self.pending.remove(&id);
            }
            Some(Pending::Read(r)) => {
                let silent: Vec<NodeId> = r
                    .targets
                    .iter()
                    .map(|t| t.node)
                    .filter(|n| !r.replies.iter().any(|(t, _)| t.node == *n))
                    .collect();
                self.suspect(silent);
                if let Some(Pending::Read(r)) = self.pending.get_mut(&id) {
                    let answered: Vec<NodeId> = r.replies.iter().map(|(t, _)| t.node).collect();
                    r.failed = r
                        .targets
                        .iter()
                        .map(|t| t.node)
                        .filter(|n| !answered.contains(n))
                        .collect();
                }
                self.check_read(now_ms, id);
                self.pending.remove(&id);
            }
            Some(Pending::Forward { origin, to }) => {
                // A silent coordinator is routed around until it answers a probe.
                let (origin, to) = (*origin, *to);
                self.pending.remove(&id);
                self.suspect(vec![to]);
                self.answer(
                    origin,
                    Err(ClientError::Unavailable(
                        "the coordinator did not answer in time",
                    )),
                );
            }
            Some(Pending::Aae { .. }) => self.end_aae(id),
            Some(Pending::Reap { .. }) => {
                if let Some(Pending::Reap {
                    key,
                    state_hash,
                    owners,
                }) = self.pending.remove(&id)
                {
                    let me = self.cfg.id;
                    for owner in owners.into_iter().filter(|o| *o != me) {
                        self.send(
                            owner,
                            PeerMessage::Reap {
                                key: key.clone(),
                                state_hash,
                            },
                        );
                    }
                    self.reap(&key, state_hash);
                }
            }
            Some(Pending::Handoff { .. }) => {
                // The owner is still away: probe it, and deliver again once it answers.
                if let Some(Pending::Handoff { owner, key, .. }) = self.pending.remove(&id) {
                    self.handoffs.remove(&(owner, key));
                    self.suspect(vec![owner]);
                }
            }
            None => {}
        }
    }

    /// Request timeouts feed failure detection: a node that let one pass is probed until
    /// it answers, and routed around meanwhile.
    fn suspect(&mut self, nodes: Vec<NodeId>) {
        let me = self.cfg.id;
        self.down.extend(nodes.into_iter().filter(|n| *n != me));
    }

    fn register(&mut self, now_ms: u64, timeout_ms: u64, pending: Pending) -> RequestId {
        self.next_id += 1;
        let id = RequestId(self.next_id);
        self.pending.insert(id, pending);
        self.deadlines.insert(now_ms.saturating_add(timeout_ms), id);
        id
    }

    fn answer(&mut self, origin: Origin, result: Result<ClientReply, ClientError>) {
        match origin {
            Origin::Client(tag) => self.outputs.push_back(Output::Reply { tag, result }),
            Origin::Peer { from, id } => self.send(from, PeerMessage::ForwardReply { id, result }),
        }
    }

    fn send(&mut self, to: NodeId, msg: PeerMessage) {
        self.outputs.push_back(Output::Send { to, msg });
    }

    fn tick(&mut self, now_ms: u64) -> cairn_crdt::Timestamp {
        self.hlc.tick(now_ms)
    }

    fn my_hint_for(&self, targets: &[Target]) -> Option<NodeId> {
        targets
            .iter()
            .find(|t| t.node == self.cfg.id)
            .and_then(|t| t.hint_for)
    }

    fn load(&self, key: &ObjectKey, hint_for: Option<NodeId>) -> Result<Option<Value>, StoreError> {
        match hint_for {
            Some(owner) => self.store.hint(owner, key),
            None => self.store.object(key),
        }
    }

    /// Like [`load`](Self::load), for a caller that stages the value it changes next
    /// ([`Store::object_for_update`]).
    fn load_for_update(
        &self,
        key: &ObjectKey,
        hint_for: Option<NodeId>,
    ) -> Result<Option<Value>, StoreError> {
        match hint_for {
            Some(owner) => self.store.hint(owner, key),
            None => self.store.object_for_update(key),
        }
    }

    fn save(
        &mut self,
        key: ObjectKey,
        hint_for: Option<NodeId>,
        value: Value,
    ) -> Result<WriteToken, StoreError> {
        match hint_for {
            Some(owner) => self.store.stage_hint(owner, key, value),
            None => self.store.stage_object(key, value),
        }
    }
}

/// What an acknowledged update answers: the value after it, unless the request asked for
/// an acknowledgement only.
fn update_reply(opts: &Resolved, value: &Value) -> ClientReply {
    if opts.ack_only {
        ClientReply::Applied
    } else {
        ClientReply::Value(visible(value))
    }
}

fn quorum_error(
    answered: usize,
    primaries: usize,
    required: u8,
    primaries_required: u8,
) -> ClientError {
    ClientError::QuorumNotReached {
        answered: u8::try_from(answered).unwrap_or(u8::MAX),
        required,
        primaries: u8::try_from(primaries).unwrap_or(u8::MAX),
        primaries_required,
    }
}

fn check_key(request: &ClientRequest) -> Result<(), ClientError> {
    if request.bucket.is_empty() || request.bucket.len() > BUCKET_BYTES_MAX {
        return Err(ClientError::InvalidKey("bucket must be 1..=256 bytes"));
    }
    if request.key.is_empty() || request.key.len() > KEY_BYTES_MAX {
        return Err(ClientError::InvalidKey("key must be 1..=1024 bytes"));
    }
    Ok(())
}

/// SplitMix64's finaliser: spreads node ids, generations and partitions into actor ids.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// What the node's unit tests share.
#[cfg(test)]
pub(crate) mod test_util {
    use cairn_ring::{Capacity, Layout, LayoutConfig, NodeId, NodeRole, Zone};

    use super::Node;
    use crate::msg::{Output, PeerMessage};
    use crate::store::{NodeMeta, Store};
    use crate::MemStore;

    /// A store that was synced when it was last closed.
    pub(crate) fn synced_store() -> MemStore {
        let mut store = MemStore::new();
        store.stage_meta(NodeMeta::default()).unwrap();
        store.commit();
        store
    }

    /// Every message `node` has queued, with its receiver (client replies dropped).
    pub(crate) fn sent(node: &mut Node<MemStore>) -> Vec<(NodeId, PeerMessage)> {
        std::iter::from_fn(|| node.poll_output())
            .filter_map(|o| match o {
                Output::Send { to, msg } => Some((to, msg)),
                Output::Reply { .. } => None,
            })
            .collect()
    }

    /// A committed layout of nodes `1..=nodes` in one zone: 16 partitions, three replicas.
    pub(crate) fn committed_layout(nodes: u64) -> Layout {
        let mut layout = Layout::new(LayoutConfig::new(16, 3).unwrap());
        for id in 1..=nodes {
            let role = NodeRole::new("127.0.0.1:7000", Zone::new("z").unwrap(), Capacity(1));
            layout.stage_node(NodeId(id), role, NodeId(1)).unwrap();
        }
        layout.commit().unwrap();
        layout
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemStore;
    use cairn_crdt::{CounterOp, Op};
    use cairn_ring::{Capacity, LayoutConfig, NodeRole, Zone};

    #[test]
    fn a_node_without_a_committed_layout_is_unavailable_not_misconfigured() {
        let mut layout = Layout::new(LayoutConfig::new(16, 3).unwrap());
        let role = NodeRole::new("127.0.0.1:7000", Zone::new("z").unwrap(), Capacity(1));
        layout.stage_node(NodeId(1), role, NodeId(1)).unwrap();
        let mut node = Node::new(Config::new(NodeId(1), 7), layout, MemStore::new(), 0).unwrap();
        let started = node.store_mut().commit();
        node.handle_persisted(0, &started);
        let request = ClientRequest {
            bucket: b"b".as_slice().into(),
            key: b"k".as_slice().into(),
            op: ClientOp::Update(Op::Counter(CounterOp::Increment(1))),
            options: Default::default(),
        };
        node.handle_client(1, ClientTag(1), request);
        assert_eq!(
            node.poll_output(),
            Some(Output::Reply {
                tag: ClientTag(1),
                result: Err(ClientError::Unavailable("no layout is committed yet")),
            })
        );
    }

    fn register(value: &[u8], wall_ms: u64) -> Value {
        let mut v = Value::empty(cairn_crdt::ValueType::Register);
        let op = Op::Register(cairn_crdt::RegisterOp::Assign(value.to_vec()));
        let now = cairn_crdt::Timestamp {
            wall_ms,
            logical: 0,
        };
        let replica = cairn_crdt::Replica {
            actor: cairn_crdt::Actor(5),
            now,
        };
        v.apply(&op, replica).unwrap();
        v
    }

    /// Seed 105 of the simulator with 100,000 keys, as one coordinator sees it: write 23
    /// was acknowledged by two primaries, one of them crashed, and the next write's read
    /// phase asks the third primary and a fallback. The fallback's empty answer must not
    /// complete the read before the primary holding 23 answers.
    #[test]
    fn a_read_phase_waits_for_a_primary_before_counting_an_empty_fallback() {
        let layout = test_util::committed_layout(4);
        let p = layout.partition_of(b"b", b"r");
        let owners = layout.replicas(p).to_vec();
        let (crashed, holder, me) = (owners[0], owners[1], owners[2]);
        let fallback = (1..=4).map(NodeId).find(|n| !owners.contains(n)).unwrap();
        let store = test_util::synced_store();
        let mut node = Node::new(Config::new(me, 7), layout, store, 0).unwrap();
        let started = node.store_mut().commit();
        node.handle_persisted(0, &started);
        node.down.insert(crashed);
        let _ = test_util::sent(&mut node);
        let request = ClientRequest {
            bucket: b"b".as_slice().into(),
            key: b"r".as_slice().into(),
            op: ClientOp::Update(Op::Register(cairn_crdt::RegisterOp::Assign(b"28".to_vec()))),
            options: Default::default(),
        };
        node.handle_client(10, ClientTag(1), request);
        let reads: Vec<(NodeId, RequestId)> = test_util::sent(&mut node)
            .into_iter()
            .filter_map(|(to, m)| match m {
                PeerMessage::Read { id, .. } => Some((to, id)),
                _ => None,
            })
            .collect();
        let to = |n: NodeId| {
            reads
                .iter()
                .find(|(t, _)| *t == n)
                .map(|(_, id)| *id)
                .unwrap()
        };
        let (from_fallback, from_holder) = (to(fallback), to(holder));
        let empty = PeerMessage::ReadReply {
            id: from_fallback,
            result: Ok(None),
        };
        node.handle_peer(11, fallback, empty);
        let early = test_util::sent(&mut node);
        assert!(
            !early
                .iter()
                .any(|(_, m)| matches!(m, PeerMessage::Replicate { .. })),
            "the write went out on the fallback's empty answer: {early:?}"
        );
        // Write 23, stamped by a coordinator whose clock ran ahead.
        let v23 = register(b"23", 1_000_000);
        let held = PeerMessage::ReadReply {
            id: from_holder,
            result: Ok(Some(v23.clone())),
        };
        node.handle_peer(12, holder, held);
        let written = test_util::sent(&mut node)
            .into_iter()
            .find_map(|(_, m)| match m {
                PeerMessage::Replicate { value, .. } => Some(value),
                _ => None,
            })
            .expect("the write");
        let mut joined = written.clone();
        crate::values::join_into(&mut joined, &v23);
        let Value::Register(r) = joined else {
            panic!("a register: {joined:?}")
        };
        assert_eq!(r.value(), Some(b"28".as_slice()), "28 orders after 23");
    }
}
