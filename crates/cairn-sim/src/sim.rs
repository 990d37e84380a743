//! The simulated world: nodes, a faulty network, virtual time, clients, and faults.

use std::collections::BTreeMap;

use cairn_core::{
    join_values, ClientError, ClientOp, ClientReply, ClientRequest, ClientTag, Config, MemStore,
    Node, ObjectKey, Output, PeerMessage, Quorum, RequestOptions, Store,
};
use cairn_crdt::{CounterOp, FieldOp, MapOp, MvRegOp, Op, RegisterOp, SetOp, Value};
use cairn_ring::{Layout, NodeId};

use crate::history::{self, id_of, Action, Entry, Outcome, Violation};
use crate::nemesis::Shape;
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
    /// Once per run, restart a node on an empty disk (it takes a new actor).
    pub wipes: bool,
    /// Pause nodes (as SIGSTOP does) for up to a few seconds.
    pub pauses: bool,
    /// Make single links lossy or slow.
    pub flaky_links: bool,
    /// Step nodes' clocks forwards and backwards.
    pub clock_jumps: bool,
    /// Largest clock offset of a node, ms.
    pub skew_ms_max: u64,
    /// Restart nodes with their clocks ahead, then soon again with them behind that
    /// start (needs `crashes` and `clock_jumps`): the second start's clock is earlier
    /// than the first's, which once left a node routed around for its whole run.
    pub bounces: bool,
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
            pauses: false,
            flaky_links: false,
            clock_jumps: false,
            skew_ms_max: 0,
            bounces: false,
            interval_ms: (u64::MAX / 4, u64::MAX / 4),
        }
    }

    /// Every fault at once: drops, duplicates, reordering, partitions of every shape,
    /// crashes and restarts (one on an empty disk), pauses, lossy and slow links, clock
    /// skew and jumps, and restarts across a clock stepped back.
    pub fn mixed() -> Self {
        Faults {
            drop: 0.05,
            duplicate: 0.02,
            delay_ms: (1, 15),
            partitions: true,
            crashes: true,
            wipes: true,
            pauses: true,
            flaky_links: true,
            clock_jumps: true,
            skew_ms_max: 200,
            bounces: true,
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
    /// Extra counter keys written once each before the faults start (and then by the
    /// workload too): the size of the data set whose convergence is measured.
    pub keys: usize,
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
            keys: 0,
        }
    }

    /// [`SimConfig::mixed`] over `keys` extra counter keys (preloaded), for convergence
    /// measurements.
    pub fn with_keys(seed: u64, keys: usize) -> Self {
        SimConfig {
            keys,
            ..SimConfig::mixed(seed)
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
    /// Simulated ms from the last fault's heal until every primary of every partition
    /// held the same tree (hinted handoff and anti-entropy alone, no reads).
    pub convergence_ms: Option<u64>,
    /// Objects anti-entropy sent to repair a replica, over all nodes.
    pub aae_keys_repaired: u64,
    /// The faults injected, with the simulated ms each began (for replaying a failure).
    pub faults: Vec<(u64, String)>,
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
/// After the heal, replicas must agree within this long (DESIGN.md §4.4).
const CONVERGE_MS_MAX: u64 = 60_000;
/// Longest a new cluster may take to sync its empty stores before the workload starts
/// (a node that never does is a violation after the heal).
const FORM_MS_MAX: u64 = 10_000;
/// After convergence, every node must route to every other within this long (two
/// liveness timeouts). Data can converge while a node is routed around (it still starts
/// exchanges itself), so this is checked apart, as the nemesis harness does.
const ROUTING_MS_MAX: u64 = 10_000;
/// How often convergence is checked after the heal.
const CONVERGE_CHECK_MS: u64 = 100;
/// Clients that preload the extra keys, in parallel.
const PRELOAD_CLIENTS: usize = 64;

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
        /// The incarnation of `to` the message's connection reaches (see `Sim::send`).
        to_run: u64,
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
    Request {
        client: usize,
        node: usize,
        tag: u64,
        request: Box<ClientRequest>,
    },
    ClientTimeout {
        client: usize,
        tag: u64,
    },
    Fault,
    /// The second half of [`Fault::Bounce`].
    BounceBack {
        node: usize,
    },
    EndWorkload,
}

/// One fault the nemesis can inject.
#[derive(Clone, Copy, Debug)]
enum Fault {
    Partition(Shape),
    Heal,
    Crash,
    Restart,
    Wipe,
    Pause,
    Lossy,
    Slow,
    ClockJump,
    /// Restart a node with its clock ahead, then soon restart it again with its clock
    /// behind that start: its second start's clock is earlier than its first's.
    Bounce,
}

/// A client's operation in flight.
#[derive(Debug)]
enum Phase {
    /// Reading a key before a remove or a multi-value write.
    Reading { key: usize },
    /// The operation itself, recorded in the history when it ends.
    Writing { entry: Entry },
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
    /// Starts so far: which incarnation runs (or ran last).
    runs: u64,
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
    net: crate::nemesis::Net,
    wiped: bool,
    /// Updates answered in the wrong shape: a value to an `ack_only` request, or
    /// `Applied` to one that asked for the value.
    reply_violations: Vec<Violation>,
    /// What `Report::faults` returns.
    fault_log: Vec<(u64, String)>,
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
                runs: 0,
            });
        }
        // The workload's clients, then the preload's.
        let clients = (0..cfg.clients + PRELOAD_CLIENTS)
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
            net: crate::nemesis::Net::new(cfg.nodes),
            wiped: false,
            reply_violations: Vec::new(),
            fault_log: Vec::new(),
            cfg,
        };
        for i in 0..sim.nodes.len() {
            sim.start_node(i);
        }
        sim
    }

    /// Runs the workload with faults, heals, lets hints and repairs finish, and checks.
    pub fn run(mut self) -> Report {
        self.form();
        self.preload();
        let start = self.now;
        for c in 0..self.cfg.clients {
            let at = start + self.rng.range(0, 10);
            self.schedule(at, Event::ClientStep { client: c });
        }
        let first_fault = self.fault_delay();
        self.schedule(first_fault, Event::Fault);
        self.schedule(start + self.cfg.workload_ms, Event::EndWorkload);
        self.run_until(start + self.cfg.workload_ms);
        let healed = self.now;
        let mut convergence_ms = None;
        while self.now < healed + CONVERGE_MS_MAX {
            self.run_until(self.now + CONVERGE_CHECK_MS);
            let clients_done = self.clients.iter().all(|c| c.tag.is_none());
            if clients_done && self.trees_agree() {
                convergence_ms = Some(self.now - healed);
                break;
            }
        }
        let routing_deadline = self.now + ROUTING_MS_MAX;
        while (!self.routed_around().is_empty() || self.syncing()) && self.now < routing_deadline {
            self.run_until(self.now + CONVERGE_CHECK_MS);
        }
        let mut violations: Vec<Violation> = self
            .routed_around()
            .into_iter()
            .map(|(node, around)| Violation {
                key: "(routing)".to_string(),
                what: format!(
                    "node {node} still routes around nodes {around:?} {ROUTING_MS_MAX} ms after the replicas converged"
                ),
            })
            .collect();
        // A node whose store started empty must finish syncing once the network heals,
        // or its reads never count again.
        for (i, n) in self.nodes.iter().enumerate() {
            let syncing = n.node.as_ref().map(Node::syncing_partitions);
            if let Some(partitions) = syncing.filter(|p| !p.is_empty()) {
                violations.push(Violation {
                    key: "(sync)".to_string(),
                    what: format!(
                        "node {i} still syncs partitions {partitions:?} {ROUTING_MS_MAX} ms after the replicas converged"
                    ),
                });
            }
        }
        for key in self.divergent_keys() {
            let what = format!(
                "replicas did not converge after the heal: {:?}",
                self.copies(&key)
            );
            violations.push(Violation { key, what });
        }
        let finals = self.final_values();
        violations.extend(history::check(&self.history, &finals));
        violations.append(&mut self.reply_violations);
        let aae_keys_repaired = self
            .nodes
            .iter()
            .filter_map(|n| n.node.as_ref())
            .map(|n| n.aae_stats().keys_repaired)
            .sum();
        Report {
            seed: self.cfg.seed,
            ops: self.history.len(),
            history: self.history,
            violations,
            messages: self.messages,
            end_ms: self.now,
            convergence_ms,
            aae_keys_repaired,
            faults: self.fault_log,
        }
    }

    /// Writes every extra key once (`w = all`), before any fault.
    /// Lets the new cluster's nodes sync their empty stores (`Node::syncing_partitions`)
    /// on a clean network before the workload, as `cairn dev` and the server tests wait
    /// for: a store lost later in the run syncs under the faults.
    fn form(&mut self) {
        self.faulty = false;
        let deadline = self.now + FORM_MS_MAX;
        while self.now < deadline && self.syncing() {
            let until = self.now + 1;
            self.run_until(until);
        }
        self.faulty = true;
    }

    /// Whether a running node still syncs a partition.
    fn syncing(&self) -> bool {
        let running = self.nodes.iter().filter_map(|n| n.node.as_ref());
        running
            .into_iter()
            .any(|n| !n.syncing_partitions().is_empty())
    }

    fn preload(&mut self) {
        let mut next = 0;
        while next < self.cfg.keys
            || self.clients[self.cfg.clients..]
                .iter()
                .any(|c| c.tag.is_some())
        {
            for c in self.cfg.clients..self.cfg.clients + PRELOAD_CLIENTS {
                if next < self.cfg.keys && self.clients[c].tag.is_none() {
                    let key = format!("n{next}");
                    next += 1;
                    let entry = self.entry_for(c, &key, Action::Incr(1));
                    let op = ClientOp::Update(Op::Counter(CounterOp::Increment(1)));
                    let options = RequestOptions {
                        w: Some(Quorum::All),
                        ..Default::default()
                    };
                    self.request_with(c, key.as_bytes(), op, Phase::Writing { entry }, options);
                }
            }
            let until = self.now + 1;
            self.run_until(until);
        }
    }

    /// Each running node that routes around another running node, with those it avoids
    /// (as node indexes).
    fn routed_around(&self) -> Vec<(usize, Vec<usize>)> {
        let up: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].node.is_some())
            .collect();
        up.iter()
            .filter_map(|&i| {
                let node = self.nodes[i].node.as_ref()?;
                let now = self.local_now(i);
                let around: Vec<usize> = up
                    .iter()
                    .copied()
                    .filter(|&j| !node.is_healthy(self.nodes[j].id, now))
                    .collect();
                (!around.is_empty()).then_some((i, around))
            })
            .collect()
    }

    /// Whether every node runs and every partition's primaries hold equal trees.
    fn trees_agree(&self) -> bool {
        if self.nodes.iter().any(|n| n.node.is_none()) {
            return false;
        }
        self.layout.partitions().all(|p| {
            let trees = self
                .layout
                .replicas(p)
                .iter()
                .filter_map(|id| self.node_index(*id))
                .map(|i| {
                    self.nodes[i]
                        .node
                        .as_ref()
                        .and_then(|n| n.store().aae_tree(p).ok())
                });
            let trees: Vec<_> = trees.collect();
            trees.windows(2).all(|w| w[0] == w[1])
        })
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
        // A paused node handles nothing until it resumes; its inputs wait, as in a socket.
        let target = match &event {
            Event::Deliver { to, .. } => Some(*to),
            Event::Commit { node } | Event::Timer { node } | Event::Request { node, .. } => {
                Some(*node)
            }
            _ => None,
        };
        if let Some(i) = target {
            let until = self.net.paused_until(i);
            if until > self.now {
                return self.schedule(until, event);
            }
        }
        match event {
            Event::Request {
                client,
                node,
                tag,
                request,
            } => self.receive_request(client, node, tag, *request),
            Event::Deliver {
                from,
                to,
                to_run,
                msg,
            } => self.deliver(from, to, to_run, *msg),
            Event::Commit { node } => self.commit(node),
            Event::Timer { node } => self.timer(node),
            Event::ClientStep { client } => self.client_step(client),
            Event::ClientTimeout { client, tag } => self.client_timeout(client, tag),
            Event::Fault => self.fault(),
            Event::BounceBack { node } => {
                self.fault_log
                    .push((self.now, format!("the bounce back of node {node}")));
                self.restart_with_skew(node, -self.max_skew());
            }
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
        self.nodes[i].runs += 1;
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
        if self.rng.chance(drop) || self.rng.chance(self.net.loss(from, to)) {
            return;
        }
        // As over QUIC, a message reaches one incarnation of its receiver: the one running
        // now, or the next if none is (a connection made when it is back). Duplicates and
        // retransmits ride the same connection, so no copy reaches a later incarnation,
        // whose in-memory state (the forwards it has seen) starts empty. 0-RTT, which
        // could replay into a new process, is off (`cairn-net`'s TLS config).
        let receiver = &self.nodes[to];
        let to_run = receiver.runs + u64::from(receiver.node.is_none());
        let copies = if self.rng.chance(dup) { 2 } else { 1 };
        for _ in 0..copies {
            let at = self.now + self.rng.range(lo, hi) + self.net.delay(from, to);
            self.schedule(
                at,
                Event::Deliver {
                    from,
                    to,
                    to_run,
                    msg: Box::new(msg.clone()),
                },
            );
        }
    }

    fn deliver(&mut self, from: usize, to: usize, to_run: u64, msg: PeerMessage) {
        if !self.net.can_talk(from, to) || self.nodes[to].runs != to_run {
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
        let kinds = self.fault_kinds();
        if !kinds.is_empty() {
            let kind = kinds[self.rng.index(kinds.len())];
            self.inject(kind);
        }
        let next = self.fault_delay();
        self.schedule(next, Event::Fault);
    }

    fn fault_kinds(&self) -> Vec<Fault> {
        let f = &self.cfg.faults;
        let mut kinds = Vec::new();
        if f.partitions {
            kinds.extend([
                Fault::Partition(Shape::Halves),
                Fault::Partition(Shape::Isolate),
            ]);
            kinds.extend([
                Fault::Partition(Shape::MajorityRing),
                Fault::Partition(Shape::Bridge),
                Fault::Heal,
            ]);
        }
        if f.crashes {
            kinds.extend([Fault::Crash, Fault::Restart, Fault::Restart]);
        }
        if f.wipes && !self.wiped {
            kinds.push(Fault::Wipe);
        }
        if f.pauses {
            kinds.push(Fault::Pause);
        }
        if f.flaky_links {
            kinds.extend([Fault::Lossy, Fault::Slow]);
        }
        if f.clock_jumps && f.skew_ms_max > 0 {
            kinds.push(Fault::ClockJump);
            if f.crashes && f.bounces {
                kinds.push(Fault::Bounce);
            }
        }
        kinds
    }

    fn inject(&mut self, kind: Fault) {
        let n = self.nodes.len();
        let i = self.rng.index(n);
        self.fault_log
            .push((self.now, format!("{kind:?}, drawn node {i}")));
        match kind {
            Fault::Partition(shape) => self.net.partition(shape, &mut self.rng),
            Fault::Heal => self.net.heal(self.now),
            Fault::Crash => self.crash_node(i, false),
            Fault::Restart => {
                let down: Vec<usize> = (0..n).filter(|&i| self.nodes[i].node.is_none()).collect();
                if !down.is_empty() {
                    let pick = down[self.rng.index(down.len())];
                    self.start_node(pick);
                }
            }
            Fault::Wipe => {
                self.wiped = true;
                self.crash_node(i, true);
                self.start_node(i);
            }
            Fault::Pause => {
                let until = self.now + self.rng.range(200, 3_000);
                self.net.pause(i, until);
            }
            Fault::Lossy => {
                let j = (i + 1 + self.rng.index(n - 1)) % n;
                let loss = 0.3 + self.rng.below(40) as f64 / 100.0;
                self.net.make_lossy(i, j, loss);
            }
            Fault::Slow => {
                let j = (i + 1 + self.rng.index(n - 1)) % n;
                let ms = self.rng.range(50, 300);
                self.net.make_slow(i, j, ms);
            }
            Fault::ClockJump => {
                let max = self.cfg.faults.skew_ms_max;
                self.nodes[i].skew_ms = self.rng.range(0, 2 * max) as i64 - max as i64;
            }
            Fault::Bounce => {
                // Back within `skew_ms_max`: the second start's clock (that far behind)
                // is then still earlier than the first start's (that far ahead).
                self.restart_with_skew(i, self.max_skew());
                let back = self.now + self.rng.range(1, self.cfg.faults.skew_ms_max);
                self.schedule(back, Event::BounceBack { node: i });
            }
        }
    }

    fn max_skew(&self) -> i64 {
        i64::try_from(self.cfg.faults.skew_ms_max).unwrap_or(i64::MAX)
    }

    /// Crashes node `i` if it runs, sets its clock offset and starts it.
    fn restart_with_skew(&mut self, i: usize, skew_ms: i64) {
        if self.workload_over {
            return;
        }
        self.crash_node(i, false);
        self.nodes[i].skew_ms = skew_ms;
        self.start_node(i);
    }

    fn end_workload(&mut self) {
        self.workload_over = true;
        self.faulty = false;
        self.net.heal(self.now);
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
        if self.cfg.keys > 0 && self.rng.chance(0.5) {
            let key = format!("n{}", self.rng.index(self.cfg.keys));
            let by = self.rng.range(0, 8) as i64 - 3;
            let entry = self.entry_for(c, &key, Action::Incr(by));
            let op = ClientOp::Update(Op::Counter(CounterOp::Increment(by)));
            return self.request_with(
                c,
                key.as_bytes(),
                op,
                Phase::Writing { entry },
                RequestOptions::default(),
            );
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
        self.entry_for(client, KEYS[key].0, action)
    }

    fn entry_for(&self, client: usize, key: &str, action: Action) -> Entry {
        Entry {
            client: u32::try_from(client).unwrap_or(u32::MAX),
            key: key.to_string(),
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
        let node = self.rng.index(self.nodes.len());
        // Every other request asks for an acknowledgement only, so the sweeps check those
        // writes too (chosen by tag, not drawn, to leave the random sequence as it was).
        let options = RequestOptions {
            ack_only: tag % 2 == 0,
            ..options
        };
        let request = Box::new(ClientRequest {
            bucket: BUCKET.into(),
            key: key.into(),
            op,
            options,
        });
        self.schedule(
            self.now,
            Event::Request {
                client: c,
                node,
                tag,
                request,
            },
        );
        self.schedule(
            self.now + CLIENT_TIMEOUT_MS,
            Event::ClientTimeout { client: c, tag },
        );
    }

    /// A client's request reaches its node (later, if the node is paused).
    fn receive_request(&mut self, c: usize, i: usize, tag: u64, request: ClientRequest) {
        if self.clients[c].tag != Some(tag) {
            return;
        }
        let now = self.local_now(i);
        match self.nodes[i].node.as_mut() {
            Some(node) => {
                node.handle_client(now, ClientTag(tag), request);
                self.after_input(i);
            }
            // Connection refused: the request never reached a node.
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
        if let (Some(Phase::Writing { entry }), Ok(reply)) = (&self.clients[c].phase, &result) {
            // Requests with even tags ask for an acknowledgement only (`request_with`).
            let ack_only = tag % 2 == 0;
            let deleted = matches!(reply, ClientReply::Deleted);
            if !deleted && ack_only != matches!(reply, ClientReply::Applied) {
                let what = format!("an update with ack_only = {ack_only} was answered {reply:?}");
                let key = entry.key.clone();
                self.reply_violations.push(Violation { key, what });
            }
        }
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
        if !self.workload_over && c < self.cfg.clients {
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

    /// Every key the run may have written.
    fn all_keys(&self) -> impl Iterator<Item = String> + '_ {
        let extra = (0..self.cfg.keys).map(|i| format!("n{i}"));
        KEYS.iter().map(|(k, _)| k.to_string()).chain(extra)
    }

    fn divergent_keys(&self) -> Vec<String> {
        self.all_keys()
            .filter(|key| {
                let copies = self.copies(key);
                copies.windows(2).any(|w| w[0] != w[1])
            })
            .collect()
    }

    fn final_values(&self) -> BTreeMap<String, Option<Value>> {
        self.all_keys()
            .map(|key| {
                let copies = self.copies(&key);
                let value = join_values(copies.iter().flatten());
                (key, value)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends a ping from node 0 to node 1 after `before`, runs `meanwhile` while it is in
    /// flight, delivers it, and says whether node 1 handled it.
    fn ping_arrives(sim: &mut Sim, before: fn(&mut Sim), meanwhile: fn(&mut Sim)) -> bool {
        before(sim);
        sim.send(0, sim.nodes[1].id, PeerMessage::Ping);
        let key = sim
            .events
            .iter()
            .find(|(_, e)| matches!(e, Event::Deliver { from: 0, to: 1, .. }))
            .map(|(k, _)| *k)
            .expect("the ping in flight");
        let Some(Event::Deliver { to_run, msg, .. }) = sim.events.remove(&key) else {
            unreachable!("found above");
        };
        meanwhile(sim);
        let handled = sim.messages;
        sim.deliver(0, 1, to_run, *msg);
        sim.messages > handled
    }

    fn restart_node_1(sim: &mut Sim) {
        sim.crash_node(1, false);
        sim.start_node(1);
    }

    #[test]
    fn a_message_reaches_the_incarnation_it_was_sent_to_and_never_the_next() {
        let mut sim = Sim::new(SimConfig {
            faults: Faults::none(),
            ..SimConfig::mixed(7)
        });
        sim.start_node(0);
        sim.start_node(1);
        sim.events.clear();
        let nothing: fn(&mut Sim) = |_| {};
        assert!(ping_arrives(&mut sim, nothing, nothing), "lost on the way");
        // A copy (a duplicate, or one delayed) still in flight when the receiver restarts
        // is lost with the old connection: the new incarnation has forgotten the forwards
        // it saw, and would coordinate a duplicated forward twice.
        assert!(
            !ping_arrives(&mut sim, nothing, restart_node_1),
            "reached a later incarnation"
        );
        // Sent while the receiver is down: the connection made when it is back reaches it.
        assert!(
            ping_arrives(
                &mut sim,
                |sim| sim.crash_node(1, false),
                |sim| sim.start_node(1)
            ),
            "lost though sent while the receiver was down"
        );
    }
}
