//! The core task: the one place the [`Node`] lives.
//!
//! `cairn-core` is a synchronous state machine. It runs as one task on the async runtime,
//! beside the QUIC and HTTP tasks that feed it, so handing it a request and taking its
//! answer back are a queue push and a task wake on the same thread, not a wake-up of
//! another thread (on the development VM each such wake-up costs ~10 µs of CPU; see
//! ARCHITECTURE.md, "The node runs as a task on the I/O runtime"). Everything reaches it
//! as an [`Event`] through one bounded channel; it handles what is queued, a turn at a
//! time, and its outputs leave as peer sends (spawned on the runtime) and client replies
//! (oneshot channels, or a client batch's slots in its `batch_reply::BatchReplies`).
//!
//! Its calls into the store do not wait on the disk: writes are staged and made durable
//! by the store's own threads, which report back with [`Event::Persisted`]. Some calls
//! still block the runtime thread for a while, as they blocked the core thread before:
//! reads of rows outside the page cache (an anti-entropy key listing, the hint scans of
//! a status report), the first write to a partition (which builds its segment tree from
//! 1,024 rows), saving a changed layout (two fsyncs, on membership changes), and handing
//! a turn's held writes to a full group-commit queue at the turn's end (back-pressure;
//! the log writer needs no runtime thread to drain it, so that wait ends). With one
//! runtime thread (the default), connections wait meanwhile too; `--io-threads` above
//! one lets other workers serve them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_core::{
    ClientError, ClientOp, ClientReply, ClientRequest, ClientTag, Node, Output, PeerMessage,
};
use cairn_ring::{Layout, NodeId, NodeRole, PlanError};
use cairn_store::RedbStore;
use rustc_hash::FxHashMap;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::mpsc::{Receiver, Sender};
use tokio::sync::oneshot;

use crate::batch_reply::BatchSlot;
use crate::metrics::{Finished, Metrics, RequestKind};
use crate::peer::Outbound;
use crate::slow::{SlowLog, Verdict};
use crate::state::StateDir;
use crate::status::{self, Status};

/// Most events waiting for the core; beyond it requests are refused as overloaded and
/// peer messages dropped (the protocol tolerates loss).
pub const EVENTS_MAX: usize = 16_384;

/// Most events the core takes from its queue in one turn; it yields to the runtime's
/// other tasks (the connections it answers on) between turns. A turn's writes share one
/// log commit (see `Core::hold_writes`), so under load a longer turn means fewer commits:
/// 256 against 64, one node batched 16 per frame went from ~56 to ~170 writes per
/// commit (~128k → ~147k increments/s) and 3 nodes from ~16.2k to ~17.7k/s, medians of
/// alternating runs, with the half-peak tail of increments no worse. Unbatched at 64
/// clients a turn rarely holds 64 events, so it did not change there. Every answer of a
/// turn, reads included, waits for the whole turn; YCSB B (95% reads) on one node at 64
/// clients measured ~90k operations/s with turns of 64 and ~85k with 256 (medians of 8
/// alternating rounds; single rounds ranged 74k–103k), which is noise: 64 clients
/// cannot queue more than 64 requests, so the two run the same turns.
pub const EVENTS_PER_TURN: usize = 256;

/// Longest the core sleeps without looking at its timers.
const IDLE_WAIT: Duration = Duration::from_millis(200);

/// How often the layout is compared with the one on disk.
const LAYOUT_SAVE_EVERY: Duration = Duration::from_millis(500);

/// What a client request comes back as.
pub type ClientResult = Result<ClientReply, ClientError>;

/// Something for the core to do.
pub enum Event {
    /// A client request.
    Client {
        /// The request.
        request: ClientRequest,
        /// Where the answer goes.
        reply: oneshot::Sender<ClientResult>,
    },
    /// A client request that is one of a batch: its answer goes to the batch's slot.
    ClientInBatch {
        /// The request.
        request: ClientRequest,
        /// Its place among the batch's answers.
        slot: BatchSlot,
    },
    /// A message from a peer.
    Peer {
        /// The sender.
        from: NodeId,
        /// The message.
        msg: PeerMessage,
    },
    /// A node asks to join: stage it and answer with the layout.
    Join {
        /// The joining node.
        id: NodeId,
        /// Its role.
        role: NodeRole,
        /// The layout with the node staged, or why not.
        reply: oneshot::Sender<Result<Layout, String>>,
    },
    /// Commit the staged layout changes (`dry_run`: only compute the plan).
    Commit {
        /// Only show the plan.
        dry_run: bool,
        /// The plan's summary, or why there is none.
        reply: oneshot::Sender<Result<status::PlanSummary, PlanError>>,
    },
    /// Report the node's view of the cluster.
    Status {
        /// Where the report goes.
        reply: oneshot::Sender<Status>,
    },
    /// The store made writes durable (a wake-up; the tokens are taken from the store).
    Persisted,
    /// Stop once requests in flight are answered (or `grace` passes), then close the store.
    Shutdown {
        /// Longest wait for requests in flight.
        grace: Duration,
        /// Told when the store is closed (`Err`: closing failed).
        done: oneshot::Sender<Result<(), String>>,
    },
}

/// The way in to the core: a bounded queue.
#[derive(Clone)]
pub struct CoreHandle {
    tx: Sender<Event>,
}

/// The queue a [`CoreHandle`] feeds, for [`Core::run`].
pub type CoreQueue = Receiver<Event>;

/// A handle and the queue it feeds, [`EVENTS_MAX`] deep.
pub fn queue() -> (CoreHandle, CoreQueue) {
    let (tx, rx) = tokio::sync::mpsc::channel(EVENTS_MAX);
    (CoreHandle { tx }, rx)
}

/// Why the core did not take an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Its queue is full.
    Overloaded,
    /// It has stopped.
    Stopped,
}

impl CoreHandle {
    /// Queues `event` without waiting (from async code or any thread).
    pub fn send(&self, event: Event) -> Result<(), Refused> {
        self.tx.try_send(event).map_err(|e| match e {
            TrySendError::Full(_) => Refused::Overloaded,
            TrySendError::Closed(_) => Refused::Stopped,
        })
    }

    /// Like [`ask`](Self::ask), but waits for room in a full queue instead of refusing
    /// (for the one event that must get through: shutdown).
    pub async fn ask_blocking<T: Send + 'static>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Event,
    ) -> Result<T, Refused> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).await.map_err(|_| Refused::Stopped)?;
        rx.await.map_err(|_| Refused::Stopped)
    }

    /// Sends a request built around a fresh oneshot and waits for the answer.
    pub async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Event,
    ) -> Result<T, Refused> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx))?;
        rx.await.map_err(|_| Refused::Stopped)
    }
}

/// The wall clock the node runs on, in Unix milliseconds, with a test-only offset.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// Added to the system clock (clock-skew tests).
    pub offset_ms: i64,
}

/// A turn's time: read once when the turn begins and shared by its events. The node's
/// clock counts milliseconds and a turn lasts about one under load, while reading both
/// clocks for each of a turn's hundreds of events cost ~2% of the I/O thread's samples
/// (one node, batched).
#[derive(Clone, Copy, Debug)]
struct Now {
    /// The node's clock, Unix milliseconds.
    ms: u64,
    /// When the turn began: a request taken in it waited in the queue until then.
    at: Instant,
}

impl Clock {
    /// Now.
    pub fn now_ms(self) -> u64 {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        wall.saturating_add_signed(self.offset_ms)
    }

    fn now(self) -> Now {
        Now {
            ms: self.now_ms(),
            at: Instant::now(),
        }
    }
}

/// Where a client request's answer goes.
enum ReplyTo {
    One(oneshot::Sender<ClientResult>),
    InBatch(BatchSlot),
}

impl ReplyTo {
    fn send(self, result: ClientResult) {
        match self {
            // A requester that gave up no longer listens: nothing to do.
            ReplyTo::One(reply) => drop(reply.send(result)),
            ReplyTo::InBatch(slot) => slot.send(result),
        }
    }
}

/// A client request waiting for its answer.
struct Waiting {
    reply: ReplyTo,
    kind: RequestKind,
    since: Instant,
}

fn kind_of(request: &ClientRequest) -> RequestKind {
    match &request.op {
        ClientOp::Update(op) => RequestKind {
            op: "update",
            ty: op.value_type().name(),
        },
        ClientOp::Read => RequestKind {
            op: "read",
            ty: "any",
        },
        ClientOp::Delete => RequestKind {
            op: "delete",
            ty: "any",
        },
    }
}

/// `ok`, or the error's code as the HTTP API names it.
fn outcome(result: &ClientResult) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(e) => crate::client_api::code(e),
    }
}

/// The core's state.
pub struct Core {
    node: Node<RedbStore>,
    clock: Clock,
    outbound: Outbound,
    state: StateDir,
    /// Keyed by the core's own sequence numbers: a fast unkeyed hash is safe.
    replies: FxHashMap<ClientTag, Waiting>,
    metrics: Arc<Metrics>,
    /// Requests answered in this step, counted in `metrics` at its end (one lock).
    finished: Vec<Finished>,
    next_tag: u64,
    saved_layout: Layout,
    layout_checked: Instant,
    /// When this run started syncing its store, until the node says it is done.
    syncing_since: Option<Instant>,
    /// Set by the store's writer when it has tokens for us; cleared when we take them.
    persisted_flag: Arc<AtomicBool>,
    name: String,
    http: SocketAddr,
    slow: SlowLog,
}

impl Core {
    /// A core around a started node.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        node: Node<RedbStore>,
        clock: Clock,
        outbound: Outbound,
        state: StateDir,
        persisted_flag: Arc<AtomicBool>,
        name: String,
        http: SocketAddr,
        metrics: Arc<Metrics>,
        slow_request: Option<Duration>,
    ) -> Self {
        let saved_layout = node.layout().clone();
        let syncing_since = node.unsynced().then(Instant::now);
        Core {
            node,
            clock,
            outbound,
            state,
            replies: FxHashMap::default(),
            metrics,
            finished: Vec::new(),
            next_tag: 0,
            saved_layout,
            layout_checked: Instant::now(),
            syncing_since,
            persisted_flag,
            name,
            http,
            slow: SlowLog::new(slow_request),
        }
    }

    /// Runs until a `Shutdown` event (or every sender is gone). Each turn takes up to
    /// [`EVENTS_PER_TURN`] queued events, or sleeps until one arrives or a timer is due.
    pub async fn run(mut self, mut rx: CoreQueue) {
        let mut events = Vec::with_capacity(EVENTS_PER_TURN);
        loop {
            let wait = self.wait_time();
            match tokio::time::timeout(wait, rx.recv_many(&mut events, EVENTS_PER_TURN)).await {
                Ok(0) => {
                    // Every handle is gone (the store holds one, so only after a failed
                    // start): close the store off the runtime's threads all the same.
                    let _ = self.shut_down(Vec::new(), &mut rx, Duration::ZERO).await;
                    return;
                }
                Ok(_) => {}
                Err(_) => {
                    // A timer may be due.
                    self.hold_writes();
                    self.step(self.clock.now());
                    self.release_writes();
                }
            }
            let now = self.clock.now();
            let mut taken = events.drain(..);
            self.hold_writes();
            for event in taken.by_ref() {
                if let Event::Shutdown { grace, done } = event {
                    self.release_writes();
                    let rest: Vec<Event> = taken.collect();
                    let result = self.shut_down(rest, &mut rx, grace).await;
                    let _ = done.send(result);
                    return;
                }
                self.handle(event, now);
                self.step(now);
            }
            drop(taken);
            self.release_writes();
            // A full turn leaves room for the connections to send what it answered and to
            // read more (`recv_many` alone would not yield while events are queued).
            tokio::task::yield_now().await;
        }
    }

    /// Holds the writes the core stages from here until
    /// [`release_writes`](Self::release_writes): a turn's writes then reach the log writer
    /// together at its end, one wake-up and one commit for them all (one node batched 16
    /// per frame: ~23 → ~58 writes per log commit with turns of 64 events, ~170 with 256).
    /// The first write of a turn waits for the rest of the turn's work (up to
    /// [`EVENTS_PER_TURN`] events and their steps, blocking ones included: a first
    /// write to a partition builds its tree, a changed layout is saved with two fsyncs);
    /// under load the log writer is busy meanwhile, and idle a turn is one event.
    fn hold_writes(&mut self) {
        self.node.store_mut().hold();
    }

    /// Sends the held writes on. If the log writer has failed they are lost, never
    /// reported durable, and their requests time out; every later write fails with it.
    fn release_writes(&mut self) {
        if let Err(e) = self.node.store_mut().release() {
            tracing::warn!(error = %e, "held writes could not reach the store's log writer");
        }
    }

    fn wait_time(&self) -> Duration {
        let now = self.clock.now_ms();
        match self.node.poll_timeout() {
            Some(at) => Duration::from_millis(at.saturating_sub(now)).min(IDLE_WAIT),
            None => IDLE_WAIT,
        }
    }

    /// After any event: durable writes, timers, outputs, the layout file.
    fn step(&mut self, now: Now) {
        self.persisted_flag.store(false, Ordering::Release);
        let tokens = self.node.store().take_persisted();
        if !tokens.is_empty() {
            self.node.handle_persisted(now.ms, &tokens);
        }
        if self.node.poll_timeout().is_some_and(|at| at <= now.ms) {
            self.node.handle_timeout(now.ms);
        }
        self.drain_outputs(now.ms);
        if now.at.saturating_duration_since(self.layout_checked) >= LAYOUT_SAVE_EVERY {
            self.layout_checked = now.at;
            self.save_layout();
            self.log_synced(now.at);
        }
    }

    /// Says once when a store that started empty has synced every partition.
    fn log_synced(&mut self, now: Instant) {
        if let Some(since) = self.syncing_since.filter(|_| !self.node.unsynced()) {
            let secs = now.saturating_duration_since(since).as_secs_f64();
            tracing::info!(
                secs,
                "synced every partition with its other replicas: reads count here again"
            );
            self.syncing_since = None;
        }
    }

    fn handle(&mut self, event: Event, now: Now) {
        match event {
            Event::Client { request, reply } => {
                self.client_request(request, ReplyTo::One(reply), now)
            }
            Event::ClientInBatch { request, slot } => {
                self.client_request(request, ReplyTo::InBatch(slot), now)
            }
            Event::Peer { from, msg } => self.node.handle_peer(now.ms, from, msg),
            Event::Join { id, role, reply } => {
                let _ = reply.send(self.join(id, role));
            }
            Event::Commit { dry_run, reply } => {
                let _ = reply.send(self.commit(dry_run));
            }
            Event::Status { reply } => {
                let _ = reply.send(status::collect(&self.node, &self.name, self.http, now.ms));
            }
            Event::Persisted => {}
            Event::Shutdown { done, .. } => {
                let _ = done.send(Err("shutdown handled twice".into()));
            }
        }
    }

    fn client_request(&mut self, request: ClientRequest, reply: ReplyTo, now: Now) {
        let tag = ClientTag(self.next_tag);
        self.next_tag += 1;
        let waiting = Waiting {
            reply,
            kind: kind_of(&request),
            since: now.at,
        };
        let kind = waiting.kind;
        self.replies.insert(tag, waiting);
        self.node.handle_client(now.ms, tag, request);
        if tracing::enabled!(tracing::Level::DEBUG) {
            // The coordinator's id: peer messages about this request carry it.
            let req = self
                .node
                .request_for(tag)
                .map(|id| format!("{}:{}", status::node_name(self.node.id()), id.0));
            tracing::debug!(
                tag = tag.0,
                req,
                op = kind.op,
                ty = kind.ty,
                "client request"
            );
        }
    }

    fn join(&mut self, id: NodeId, role: NodeRole) -> Result<Layout, String> {
        let mut layout = self.node.layout().clone();
        if layout.node(id) != Some(&role) {
            layout
                .stage_node(id, role.clone(), self.node.id())
                .map_err(|e| e.to_string())?;
            tracing::info!(node = %status::node_name(id), addr = %role.addr, zone = %role.zone.as_str(), "staged a joining node; commit to give it partitions");
            self.node.set_layout(layout.clone());
            self.save_layout();
        }
        Ok(layout)
    }

    fn commit(&mut self, dry_run: bool) -> Result<status::PlanSummary, PlanError> {
        let before = self.node.layout().clone();
        let mut layout = before.clone();
        let plan = if dry_run {
            layout.plan()?
        } else {
            layout.commit()?
        };
        let summary = status::PlanSummary::new(&plan, &before, dry_run);
        if !dry_run {
            tracing::info!(
                version = summary.version,
                moved_slots = summary.moved_slots,
                "committed a new layout"
            );
            self.node.set_layout(layout);
            self.save_layout();
        }
        Ok(summary)
    }

    fn drain_outputs(&mut self, now: u64) {
        let mut local = Vec::new();
        // Read once, at the first reply: a step's replies are answered together.
        let mut answered_at = None;
        loop {
            while let Some(out) = self.node.poll_output() {
                match out {
                    Output::Reply { tag, result } => {
                        if let Some(w) = self.replies.remove(&tag) {
                            let outcome = outcome(&result);
                            let at = *answered_at.get_or_insert_with(Instant::now);
                            let took = at.saturating_duration_since(w.since);
                            let took_us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
                            tracing::debug!(tag = tag.0, outcome, took_us, "client reply");
                            if let Verdict::Write { held_back } = self.slow.judge(took, at) {
                                tracing::warn!(
                                    tag = tag.0,
                                    op = %w.kind.op,
                                    ty = %w.kind.ty,
                                    outcome = %outcome,
                                    took_ms = took_us / 1000,
                                    held_back,
                                    "slow request"
                                );
                            }
                            self.finished.push(Finished {
                                kind: w.kind,
                                outcome,
                                took,
                            });
                            w.reply.send(result);
                        }
                    }
                    Output::Send { to, msg } if to == self.node.id() => local.push(msg),
                    Output::Send { to, msg } => self.outbound.send(self.node.layout(), to, &msg),
                }
            }
            if local.is_empty() {
                self.metrics.requests_finished(&self.finished);
                self.finished.clear();
                return;
            }
            let me = self.node.id();
            for msg in local.drain(..) {
                self.node.handle_peer(now, me, msg);
            }
        }
    }

    fn save_layout(&mut self) {
        if *self.node.layout() == self.saved_layout {
            return;
        }
        match self.state.save_layout(self.node.layout()) {
            Ok(()) => self.saved_layout = self.node.layout().clone(),
            Err(e) => tracing::warn!(error = %e, "cannot save the layout; will retry"),
        }
    }

    /// Serves events (`queued` first: those that came with the shutdown) until every
    /// client request has its answer or `grace` passes, then closes the store.
    async fn shut_down(
        mut self,
        queued: Vec<Event>,
        rx: &mut CoreQueue,
        grace: Duration,
    ) -> Result<(), String> {
        let deadline = Instant::now() + grace;
        for event in queued {
            self.handle_while_stopping(event);
        }
        self.step(self.clock.now());
        // Client requests only: the node's background work (late acknowledgements, hints,
        // tombstones waiting out their grace) is durable locally and resumes after restart.
        while !self.replies.is_empty() && Instant::now() < deadline {
            let wait = self
                .wait_time()
                .min(deadline.saturating_duration_since(Instant::now()));
            match tokio::time::timeout(wait, rx.recv()).await {
                Ok(Some(event)) => self.handle_while_stopping(event),
                Ok(None) => break,
                Err(_) => {}
            }
            self.step(self.clock.now());
        }
        self.save_layout();
        for (_, w) in self.replies.drain() {
            // Still in flight after the grace period: possibly applied, so indeterminate.
            let e = ClientError::Unavailable("the coordinator did not answer in time");
            w.reply.send(Err(e));
        }
        // Closing flushes the store and waits for its threads: off the runtime's threads.
        let store = self.node.into_store();
        match tokio::task::spawn_blocking(move || store.close()).await {
            Ok(closed) => closed.map_err(|e| e.to_string()),
            Err(e) => Err(format!("closing the store failed: {e}")),
        }
    }

    /// An event that arrives once shutdown has begun: new client requests are refused,
    /// everything else is handled (a reply may finish a request in flight).
    fn handle_while_stopping(&mut self, event: Event) {
        match event {
            Event::Client { reply, .. } => {
                let _ = reply.send(Err(ClientError::Unavailable("the node is shutting down")));
            }
            Event::ClientInBatch { slot, .. } => {
                slot.send(Err(ClientError::Unavailable("the node is shutting down")));
            }
            event => self.handle(event, self.clock.now()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RawConfig;
    use cairn_core::RequestOptions;
    use cairn_net::{Endpoint, NetConfig};

    /// A core over a real store and endpoint in `dir`, a new one-node cluster, and the way
    /// into it, built as the server builds them.
    async fn core_in(dir: &std::path::Path) -> (Core, CoreHandle, CoreQueue) {
        let raw = RawConfig {
            data: Some(dir.to_owned()),
            listen: Some("127.0.0.1:0".into()),
            http: Some("127.0.0.1:0".into()),
            ..RawConfig::default()
        };
        let config = raw.validate().unwrap();
        let state = StateDir::open(dir).unwrap();
        let (id, _) = state.node_id().unwrap();
        let identity = crate::tls::identity(&config, &state).unwrap();
        let endpoint = Endpoint::bind(config.listen, &identity, NetConfig::default()).unwrap();
        let layout = crate::layout(&config, &state, id, &endpoint).await.unwrap();
        let parts = crate::core_parts(&config, state, id, layout, &endpoint).unwrap();
        (parts.core, parts.handle, parts.queue)
    }

    fn increment() -> ClientRequest {
        ClientRequest {
            bucket: b"b".to_vec().into(),
            key: b"k".to_vec().into(),
            op: ClientOp::Update(cairn_crdt::Op::Counter(cairn_crdt::CounterOp::Increment(1))),
            options: RequestOptions::default(),
        }
    }

    /// Asks for increments until the new node serves them (it answers "starting" until its
    /// generation is durable).
    async fn until_serving(handle: &CoreHandle) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let reply = handle.ask(increment_event).await;
            if matches!(reply, Ok(Ok(_))) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the node never served: {reply:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A core running in a fresh directory, past its start (serving increments): the
    /// directory, the way into it, and its task.
    async fn serving_core() -> (std::path::PathBuf, CoreHandle, tokio::task::JoinHandle<()>) {
        let dir = std::env::temp_dir().join(format!("cairn-core-{}", rand::random::<u64>()));
        let (core, handle, queue) = core_in(&dir).await;
        let running = tokio::spawn(core.run(queue));
        until_serving(&handle).await;
        (dir, handle, running)
    }

    fn increment_event(reply: oneshot::Sender<ClientResult>) -> Event {
        Event::Client {
            request: increment(),
            reply,
        }
    }

    /// The writes of one turn are held until it ends, then go to the log together: a
    /// status asked in the same turn as two increments sees both held, and they are
    /// answered (so sent and made durable) after it. (One thread: the events are queued
    /// before the core next runs.)
    #[tokio::test(flavor = "current_thread")]
    async fn a_turn_holds_its_writes_until_it_ends() {
        let (dir, handle, running) = serving_core().await;
        let (first, first_done) = oneshot::channel();
        let (second, second_done) = oneshot::channel();
        let (status, seen) = oneshot::channel();
        for event in [
            increment_event(first),
            increment_event(second),
            Event::Status { reply: status },
        ] {
            assert!(handle.send(event).is_ok());
        }
        let seen = seen.await.unwrap();
        assert_eq!(seen.store.held_writes, 2, "held during the turn");
        assert!(matches!(first_done.await, Ok(Ok(_))));
        assert!(matches!(second_done.await, Ok(Ok(_))));
        let after = handle.ask(|reply| Event::Status { reply }).await.unwrap();
        assert_eq!(after.store.held_writes, 0, "sent when the turn ended");
        let (done, closed) = oneshot::channel();
        let grace = Duration::from_secs(5);
        assert!(handle.send(Event::Shutdown { grace, done }).is_ok());
        drop(handle);
        running.await.unwrap();
        assert_eq!(closed.await, Ok(Ok(())));
        std::fs::remove_dir_all(&dir).ok();
    }

    /// Events that arrive in one turn with a shutdown: those before it are served, those
    /// after it answered as refused (not dropped), and the store is closed cleanly. (One
    /// thread: the three events are queued before the core next runs.)
    #[tokio::test(flavor = "current_thread")]
    async fn a_shutdown_mid_turn_answers_every_event_and_closes_the_store() {
        let (dir, handle, running) = serving_core().await;
        let (before, served) = oneshot::channel();
        let (done, closed) = oneshot::channel();
        let (after, refused) = oneshot::channel();
        let grace = Duration::from_secs(5);
        for event in [
            increment_event(before),
            Event::Shutdown { grace, done },
            increment_event(after),
        ] {
            assert!(handle.send(event).is_ok());
        }
        drop(handle);
        running.await.unwrap();
        let served = served.await;
        assert!(
            matches!(served, Ok(Ok(_))),
            "served before the shutdown: {served:?}"
        );
        assert!(
            matches!(refused.await, Ok(Err(ClientError::Unavailable(m))) if m.contains("shutting down")),
            "refused after it"
        );
        assert_eq!(closed.await, Ok(Ok(())));
        let store = RedbStore::open(
            dir.join("cairn.redb"),
            cairn_store::Options::new(rand::random::<u64>()),
        )
        .unwrap();
        assert!(
            store.recovery().previous_clean,
            "closed with its clean marker"
        );
        drop(store);
        std::fs::remove_dir_all(&dir).ok();
    }
}
