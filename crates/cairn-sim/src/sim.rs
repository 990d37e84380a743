//! The simulated world: nodes, a faulty network, virtual time, clients, and faults.

use std::collections::BTreeMap;

use cairn_core::{
    join_values, ClientError, ClientOp, ClientReply, ClientRequest, ClientTag, Config, MemStore,
    Node, ObjectKey, Output, PeerMessage, Quorum, RequestOptions, Store,
};
use cairn_crdt::{CounterOp, FieldOp, MapOp, MvRegOp, Op, RegisterOp, SetOp, Value};
use cairn_ring::{Layout, NodeId};

use crate::history::{self, id_of, Action, Entry, Outcome, Violation};
use crate::rng::Rng;

/// Which faults a run injects.
#[derive(Clone, Debug)]
pub struct Faults {
    /// Probability a message is lost.
    pub drop: f64,
    /// Probability a message is delivered twice.
    pub duplicate: f64,
    /// Message delay range, ms (random delays reorder messages).
    pub delay_ms: (u64, u64),
    /// Split the nodes into two groups now and then.
    pub partitions: bool,
    /// Crash nodes (losing uncommitted writes) and restart them.
    pub crashes: bool,
    /// Sometimes restart a crashed node on an empty disk.
    pub wipes: bool,
    /// Largest clock offset of a node, ms.
    pub skew_ms_max: u64,
    /// Time between faults, ms.
    pub interval_ms: (u64, u64),
}

impl Faults {
    /// A perfect network and no faults.
    pub fn none() -> Self {
        Faults {
            drop: 0.0,
            duplicate: 0.0,
            delay_ms: (1, 2),
            partitions: false,
            crashes: false,
            wipes: false,
            skew_ms_max: 0,
            interval_ms: (u64::MAX / 4, u64::MAX / 4),
        }
    }

    /// Every fault at once: drops, duplicates, reordering, partitions, crashes, skew.
    pub fn mixed() -> Self {
        Faults {
            drop: 0.05,
            duplicate: 0.02,
            delay_ms: (1, 15),
            partitions: true,
            crashes: true,
            wipes: false,
            skew_ms_max: 200,
            interval_ms: (100, 600),
        }
    }
}

/// One simulation run's settings.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The seed every random choice derives from.
    pub seed: u64,
    /// Nodes in the cluster.
    pub nodes: usize,
    /// Zones the nodes spread over.
    pub zones: usize,
    /// Partitions (`Q`).
    pub partitions: u16,
    /// Replicas per key.
    pub n: u8,
    /// Concurrent clients.
    pub clients: usize,
    /// How long clients issue operations, simulated ms.
    pub workload_ms: u64,
    /// The faults injected during the workload.
    pub faults: Faults,
}

impl SimConfig {
    /// Five nodes in three zones, `n = 3`, mixed faults.
    pub fn mixed(seed: u64) -> Self {
        SimConfig {
            seed,
            nodes: 5,
            zones: 3,
            partitions: 16,
            n: 3,
            clients: 6,
            workload_ms: 2_000,
            faults: Faults::mixed(),
        }
    }
}

/// What a run produced.
#[derive(Clone, Debug)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// Every client operation.
    pub history: Vec<Entry>,
    /// Broken guarantees (empty when the run passed).
    pub violations: Vec<Violation>,
    /// Client operations completed (any outcome).
    pub ops: usize,
    /// Peer messages delivered.
    pub messages: u64,
    /// Simulated time at the end, ms.
    pub end_ms: u64,
}

/// Keys the workload uses, with the type each holds.
const KEYS: &[(&str, Kind)] = &[
    ("c0", Kind::Counter),
    ("c1", Kind::Counter),
    ("s0", Kind::Set),
    ("s1", Kind::Set),
    ("m0", Kind::Map),
    ("r0", Kind::Register),
    ("r1", Kind::Register),
    ("v0", Kind::MvReg),
];
const BUCKET: &[u8] = b"sim";
/// A client gives up on a request after this long and records it indeterminate.
const CLIENT_TIMEOUT_MS: u64 = 3_000;
/// After the workload: time for hints to go home before the repair reads.
const SETTLE_MS: u64 = 4_000;
/// Rounds of repair reads before declaring that replicas failed to converge.
const REPAIR_ROUNDS: usize = 6;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Counter,
    Set,
    Map,
    Register,
    MvReg,
}

#[derive(Debug)]
enum Event {
    /// Boxed: events sit in a B-tree that shifts them around, and messages are large.
    Deliver {
        from: usize,
        to: usize,
        msg: Box<PeerMessage>,
    },
    Commit {
        node: usize,
    },
    Timer {
        node: usize,
    },
    ClientStep {
        client: usize,
    },
    ClientTimeout {
        client: usize,
        tag: u64,
    },
    Fault,
    EndWorkload,
}

/// A client's operation in flight.
#[derive(Debug)]
enum Phase {
    /// Reading a key before a remove or a multi-value write.
    Reading { key: usize },
    /// The operation itself, recorded in the history when it ends.
    Writing { entry: Entry },
    /// A repair read after the workload; not recorded.
    Repairing,
}

#[derive(Debug)]
struct Client {
    tag: Option<u64>,
    phase: Option<Phase>,
}

#[derive(Debug)]
struct SimNode {
    id: NodeId,
    node: Option<Node<MemStore>>,
    parked: Option<MemStore>,
    skew_ms: i64,
    commit_at: Option<u64>,
    timer_at: Option<u64>,
    group: u8,
}

/// The simulated cluster.
pub struct Sim {
    cfg: SimConfig,
    rng: Rng,
    now: u64,
    seq: u64,
    events: BTreeMap<(u64, u64), Event>,
    nodes: Vec<SimNode>,
    layout: Layout,
    clients: Vec<Client>,
    history: Vec<Entry>,
    next_tag: u64,
    next_unique: u64,
    workload_over: bool,
    faulty: bool,
    messages: u64,
}

impl Sim {
    /// A cluster ready to run `cfg`.
    pub fn new(cfg: SimConfig) -> Self {
        let mut rng = Rng::new(cfg.seed);
        let layout = crate::layout(cfg.nodes, cfg.zones, cfg.partitions, cfg.n);
        let mut nodes = Vec::with_capacity(cfg.nodes);
        for i in 0..cfg.nodes {
            let id = NodeId(i as u64 + 1);
            let max = cfg.faults.skew_ms_max as i64;
            let skew_ms = if max > 0 {
                rng.range(0, 2 * max as u64) as i64 - max
            } else {
                0
            };
            nodes.push(SimNode {
                id,
                node: None,
                parked: Some(MemStore::new()),
                skew_ms,
                commit_at: None,
                timer_at: None,
                group: 0,
            });
        }
        // The workload's clients, then one repair client per key.
        let clients = (0..cfg.clients + KEYS.len())
            .map(|_| Client {
                tag: None,
                phase: None,
            })
            .collect();
        let mut sim = Sim {
            rng,
            now: 0,
            seq: 0,
            events: BTreeMap::new(),
            nodes,
            layout,
            clients,
            history: Vec::new(),
            next_tag: 0,
            next_unique: 0,
            workload_over: false,
            faulty: true,
            messages: 0,
            cfg,
        };
        for i in 0..sim.nodes.len() {
            sim.start_node(i);
        }
        sim
    }

    /// Runs the workload with faults, heals, lets hints and repairs finish, and checks.
    pub fn run(mut self) -> Report {
        for c in 0..self.cfg.clients {
            let at = self.rng.range(0, 10);
            self.schedule(at, Event::ClientStep { client: c });
        }
        let first_fault = self.fault_delay();
        self.schedule(first_fault, Event::Fault);
        self.schedule(self.cfg.workload_ms, Event::EndWorkload);
        let settle_until = self.cfg.workload_ms + CLIENT_TIMEOUT_MS + SETTLE_MS;
        self.run_until(settle_until);
        let mut converged = false;
        for _ in 0..REPAIR_ROUNDS {
            self.repair_round();
            let until = self.now + 2 * CLIENT_TIMEOUT_MS;
            self.run_until(until);
            if self.divergent_keys().is_empty() {
                converged = true;
                break;
            }
        }
        let mut violations = Vec::new();
        if !converged {
            for key in self.divergent_keys() {
                let downs: Vec<Vec<NodeId>> = self
                    .nodes
                    .iter()
                    .map(|n| {
                        n.node
                            .as_ref()
                            .map(|n| n.down().collect())
                            .unwrap_or_default()
                    })
                    .collect();
                let p = self.layout.partition_of(BUCKET, key.as_bytes());
                let what = format!(
                    "replicas did not converge after the heal: {:?} owners {:?} downs {downs:?}",
                    self.copies(&key),
                    self.layout.replicas(p)
                );
                violations.push(Violation { key, what });
            }
        }
        let finals = self.final_values();
        violations.extend(history::check(&self.history, &finals));
        Report {
            seed: self.cfg.seed,
            ops: self.history.len(),
            history: self.history,
            violations,
            messages: self.messages,
            end_ms: self.now,
        }
    }

    fn run_until(&mut self, until: u64) {
        while let Some(entry) = self.events.first_entry() {
            if entry.key().0 > until {
                break;
            }
            let ((at, _), event) = entry.remove_entry();
            self.now = at;
            self.dispatch(event);
        }
        self.now = self.now.max(until);
    }

    fn dispatch(&mut self, event: Event) {
        match event {
            Event::Deliver { from, to, msg } => self.deliver(from, to, *msg),
            Event::Commit { node } => self.commit(node),
            Event::Timer { node } => self.timer(node),
            Event::ClientStep { client } => self.client_step(client),
            Event::ClientTimeout { client, tag } => self.client_timeout(client, tag),
            Event::Fault => self.fault(),
            Event::EndWorkload => self.end_workload(),
        }
    }

    fn schedule(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.events.insert((at, self.seq), event);
    }

    // ---- nodes ----

    fn local_now(&self, i: usize) -> u64 {
        (self.now as i64 + self.nodes[i].skew_ms).max(0) as u64
    }

    fn start_node(&mut self, i: usize) {
        let Some(store) = self.nodes[i].parked.take() else {
            return;
        };
        let nonce = self.rng.next_u64();
        let cfg = Config::new(self.nodes[i].id, nonce);
        let now = self.local_now(i);
        match Node::new(cfg, self.layout.clone(), store, now) {
            Ok(node) => self.nodes[i].node = Some(node),
            Err(e) => unreachable!("MemStore never fails: {e}"),
        }
        self.nodes[i].timer_at = None;
        self.nodes[i].commit_at = None;
        self.after_input(i);
    }

    fn crash_node(&mut self, i: usize, wipe: bool) {
        let Some(node) = self.nodes[i].node.take() else {
            return;
        };
        let mut store = node.into_store();
        store.crash();
        if wipe {
            store.wipe();
        }
        self.nodes[i].parked = Some(store);
    }

    fn node_index(&self, id: NodeId) -> Option<usize> {
        self.nodes.iter().position(|n| n.id == id)
    }

    /// Drains a node's outputs and schedules its commit and timer.
    fn after_input(&mut self, i: usize) {
        while let Some(out) = self.nodes[i].node.as_mut().and_then(|n| n.poll_output()) {
            match out {
                Output::Send { to, msg } => self.send(i, to, msg),
                Output::Reply { tag, result } => self.client_reply(tag.0, result),
            }
        }
        let Some(node) = self.nodes[i].node.as_ref() else {
            return;
        };
        let (staged, timeout) = (node.store().staged_len() > 0, node.poll_timeout());
        if staged && self.nodes[i].commit_at.is_none() {
            // Group commit: whatever is staged within the next millisecond shares a flush.
            let at = self.now + 1;
            self.nodes[i].commit_at = Some(at);
            self.schedule(at, Event::Commit { node: i });
        }
        if let Some(local) = timeout {
            let at = (local as i64 - self.nodes[i].skew_ms).max(self.now as i64 + 1) as u64;
            if self.nodes[i]
                .timer_at
                .is_none_or(|t| at < t || t < self.now)
            {
                self.nodes[i].timer_at = Some(at);
                self.schedule(at, Event::Timer { node: i });
            }
        }
    }

    fn commit(&mut self, i: usize) {
        self.nodes[i].commit_at = None;
        let now = self.local_now(i);
        let Some(node) = self.nodes[i].node.as_mut() else {
            return;
        };
        let tokens = node.store_mut().commit();
        node.handle_persisted(now, &tokens);
        self.after_input(i);
    }

    fn timer(&mut self, i: usize) {
        if self.nodes[i].timer_at.is_some_and(|t| t > self.now) {
            return;
        }
        self.nodes[i].timer_at = None;
        let now = self.local_now(i);
        let Some(node) = self.nodes[i].node.as_mut() else {
            return;
        };
        node.handle_timeout(now);
        self.after_input(i);
    }

    // ---- network ----

    fn send(&mut self, from: usize, to: NodeId, msg: PeerMessage) {
        let Some(to) = self.node_index(to) else {
            return;
        };
        let f = &self.cfg.faults;
        let (drop, dup, (lo, hi)) = if self.faulty {
            (f.drop, f.duplicate, f.delay_ms)
        } else {
            (0.0, 0.0, f.delay_ms)
        };
        if self.rng.chance(drop) {
            return;
        }
        let copies = if self.rng.chance(dup) { 2 } else { 1 };
        for _ in 0..copies {
            let at = self.now + self.rng.range(lo, hi);
            self.schedule(
                at,
                Event::Deliver {
                    from,
                    to,
                    msg: Box::new(msg.clone()),
                },
            );
        }
    }

    fn deliver(&mut self, from: usize, to: usize, msg: PeerMessage) {
        if self.nodes[from].group != self.nodes[to].group {
            return;
        }
        let now = self.local_now(to);
        let from_id = self.nodes[from].id;
        let Some(node) = self.nodes[to].node.as_mut() else {
            return;
        };
        self.messages += 1;
        node.handle_peer(now, from_id, msg);
        self.after_input(to);
    }

    // ---- faults ----

    fn fault_delay(&mut self) -> u64 {
        let (lo, hi) = self.cfg.faults.interval_ms;
        self.now.saturating_add(self.rng.range(lo, hi))
    }

    fn fault(&mut self) {
        if self.workload_over {
            return;
        }
        let f = self.cfg.faults.clone();
        match self.rng.below(4) {
            0 if f.partitions => {
                for n in &mut self.nodes {
                    n.group = 0;
                }
                let cut = 1 + self.rng.index(self.nodes.len() - 1);
                let mut order: Vec<usize> = (0..self.nodes.len()).collect();
                for k in (1..order.len()).rev() {
                    let j = self.rng.index(k + 1);
                    order.swap(k, j);
                }
                for &i in &order[..cut] {
                    self.nodes[i].group = 1;
                }
            }
            1 if f.partitions => {
                for n in &mut self.nodes {
                    n.group = 0;
                }
            }
            2 if f.crashes => {
                let i = self.rng.index(self.nodes.len());
                let wipe = f.wipes && self.rng.chance(0.5);
                self.crash_node(i, wipe);
            }
            3 if f.crashes => {
                let down: Vec<usize> = (0..self.nodes.len())
                    .filter(|&i| self.nodes[i].node.is_none())
                    .collect();
                if !down.is_empty() {
                    let i = down[self.rng.index(down.len())];
                    self.start_node(i);
                }
            }
            _ => {}
        }
        let next = self.fault_delay();
        self.schedule(next, Event::Fault);
    }

    fn end_workload(&mut self) {
        self.workload_over = true;
        self.faulty = false;
        for n in &mut self.nodes {
            n.group = 0;
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i].node.is_none() {
                self.start_node(i);
            }
        }
    }

    // ---- clients ----

    fn client_step(&mut self, c: usize) {
        if self.workload_over || self.clients[c].tag.is_some() {
            return;
        }
        let key = self.rng.index(KEYS.len());
        match KEYS[key].1 {
            Kind::Set if self.rng.chance(0.3) => {
                self.request(c, key, ClientOp::Read, Phase::Reading { key })
            }
            Kind::MvReg => self.request(c, key, ClientOp::Read, Phase::Reading { key }),
            kind => {
                let (op, action) = self.write_for(kind);
                let entry = self.entry(c, key, action);
                self.request(c, key, ClientOp::Update(op), Phase::Writing { entry });
            }
        }
    }

    fn unique(&mut self) -> u64 {
        self.next_unique += 1;
        self.next_unique
    }

    /// A blind write for `kind`.
    fn write_for(&mut self, kind: Kind) -> (Op, Action) {
        match kind {
            Kind::Counter => {
                let by = self.rng.range(0, 8) as i64 - 3;
                (Op::Counter(CounterOp::Increment(by)), Action::Incr(by))
            }
            Kind::Set | Kind::MvReg => {
                let x = self.unique();
                (
                    Op::Set(SetOp::Add(vec![x.to_be_bytes().to_vec()])),
                    Action::SetAdd(x),
                )
            }
            Kind::Map => {
                let (by, tag) = (self.rng.range(1, 3) as i64, self.unique());
                let updates = vec![
                    ("n".to_string(), FieldOp::Increment(by)),
                    (
                        "tags".to_string(),
                        FieldOp::Add(vec![tag.to_be_bytes().to_vec()]),
                    ),
                ];
                (
                    Op::Map(MapOp {
                        updates,
                        context: None,
                    }),
                    Action::MapUpdate { by, tag },
                )
            }
            Kind::Register => {
                let v = self.unique();
                (
                    Op::Register(RegisterOp::Assign(v.to_be_bytes().to_vec())),
                    Action::RegPut(v),
                )
            }
        }
    }

    fn entry(&self, client: usize, key: usize, action: Action) -> Entry {
        Entry {
            client: u32::try_from(client).unwrap_or(u32::MAX),
            key: KEYS[key].0.to_string(),
            action,
            invoke_ms: self.now,
            complete_ms: self.now,
            outcome: Outcome::Indeterminate,
        }
    }

    fn request(&mut self, c: usize, key: usize, op: ClientOp, phase: Phase) {
        self.request_with(
            c,
            KEYS[key].0.as_bytes(),
            op,
            phase,
            RequestOptions::default(),
        );
    }

    fn request_with(
        &mut self,
        c: usize,
        key: &[u8],
        op: ClientOp,
        phase: Phase,
        options: RequestOptions,
    ) {
        self.next_tag += 1;
        let tag = self.next_tag;
        self.clients[c].tag = Some(tag);
        self.clients[c].phase = Some(phase);
        let i = self.rng.index(self.nodes.len());
        let request = ClientRequest {
            bucket: BUCKET.into(),
            key: key.into(),
            op,
            options,
        };
        let now = self.local_now(i);
        match self.nodes[i].node.as_mut() {
            Some(node) => {
                node.handle_client(now, ClientTag(tag), request);
                self.schedule(
                    self.now + CLIENT_TIMEOUT_MS,
                    Event::ClientTimeout { client: c, tag },
                );
                self.after_input(i);
            }
            // Connection refused: the request never left the client.
            None => self.finish(c, Outcome::Failed, None),
        }
    }

    fn client_reply(&mut self, tag: u64, result: Result<ClientReply, ClientError>) {
        let Some(c) = self.clients.iter().position(|cl| cl.tag == Some(tag)) else {
            return;
        };
        let outcome = match &result {
            Ok(_) => Outcome::Ok,
            Err(
                ClientError::QuorumNotReached { .. }
                | ClientError::Unavailable(_)
                | ClientError::Store(_),
            ) => Outcome::Indeterminate,
            Err(_) => Outcome::Failed,
        };
        let value = match result {
            Ok(ClientReply::Value(v)) => v,
            _ => None,
        };
        self.finish(c, outcome, Some(value));
    }

    fn client_timeout(&mut self, c: usize, tag: u64) {
        if self.clients[c].tag == Some(tag) {
            self.finish(c, Outcome::Indeterminate, None);
        }
    }

    /// The client's current request ended; record it or start the write its read enables.
    fn finish(&mut self, c: usize, outcome: Outcome, read: Option<Option<Value>>) {
        self.clients[c].tag = None;
        match self.clients[c].phase.take() {
            Some(Phase::Writing { mut entry }) => {
                entry.outcome = outcome;
                entry.complete_ms = self.now;
                self.history.push(entry);
            }
            Some(Phase::Reading { key })
                if outcome == Outcome::Ok && self.follow_read(c, key, read.flatten()) =>
            {
                return;
            }
            _ => {}
        }
        if !self.workload_over {
            let think = self.rng.range(0, 5);
            self.schedule(self.now + think, Event::ClientStep { client: c });
        }
    }

    /// After a read: remove one seen member of a set, or write a multi-value register with
    /// the read's context. Returns whether a request was sent.
    fn follow_read(&mut self, c: usize, key: usize, value: Option<Value>) -> bool {
        match (KEYS[key].1, value) {
            (Kind::Set, Some(Value::Set(set))) => {
                let members: Vec<Vec<u8>> = set.members().map(<[u8]>::to_vec).collect();
                let Some(pick) =
                    (!members.is_empty()).then(|| members[self.rng.index(members.len())].clone())
                else {
                    return false;
                };
                let Some(x) = id_of(&pick) else { return false };
                let op = Op::Set(SetOp::Remove {
                    members: vec![pick],
                    context: Some(set.context().clone()),
                });
                let entry = self.entry(c, key, Action::SetRemove(x));
                self.request(c, key, ClientOp::Update(op), Phase::Writing { entry });
                true
            }
            (Kind::MvReg, read) => {
                let (context, saw) = match read {
                    Some(Value::MvReg(r)) => (
                        Some(r.context().clone()),
                        r.values().filter_map(id_of).collect(),
                    ),
                    _ => (None, Vec::new()),
                };
                let value = self.unique();
                let op = Op::MvReg(MvRegOp::Write {
                    value: value.to_be_bytes().to_vec(),
                    context,
                });
                let entry = self.entry(c, key, Action::MvPut { value, saw });
                self.request(c, key, ClientOp::Update(op), Phase::Writing { entry });
                true
            }
            _ => false,
        }
    }

    // ---- convergence ----

    /// Reads every key from every replica (`r = n`), so read repair brings them level.
    fn repair_round(&mut self) {
        for (k, (key, _)) in KEYS.iter().enumerate() {
            let c = self.cfg.clients + k;
            if self.clients[c].tag.is_some() {
                continue;
            }
            let options = RequestOptions {
                r: Some(Quorum::All),
                ..Default::default()
            };
            self.request_with(c, key.as_bytes(), ClientOp::Read, Phase::Repairing, options);
        }
    }

    /// Each key's copies on its primaries, by node.
    fn copies(&self, key: &str) -> Vec<Option<Value>> {
        let partition = self.layout.partition_of(BUCKET, key.as_bytes());
        let object = ObjectKey {
            partition,
            bucket: BUCKET.into(),
            key: key.as_bytes().into(),
        };
        let owners = self
            .layout
            .replicas(partition)
            .iter()
            .take(usize::from(self.cfg.n));
        owners
            .filter_map(|id| self.node_index(*id))
            .map(|i| {
                self.nodes[i]
                    .node
                    .as_ref()
                    .and_then(|n| n.store().object(&object).ok().flatten())
            })
            .collect()
    }

    fn divergent_keys(&self) -> Vec<String> {
        KEYS.iter()
            .filter(|(key, _)| {
                let copies = self.copies(key);
                copies.windows(2).any(|w| w[0] != w[1])
            })
            .map(|(key, _)| key.to_string())
            .collect()
    }

    fn final_values(&self) -> BTreeMap<String, Option<Value>> {
        KEYS.iter()
            .map(|(key, _)| {
                let copies = self.copies(key);
                (key.to_string(), join_values(copies.iter().flatten()))
            })
            .collect()
    }
}
