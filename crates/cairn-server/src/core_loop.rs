//! The core thread: the one place the [`Node`] lives.
//!
//! `cairn-core` is a synchronous state machine and the store's `stage_*` calls may block
//! while the group-commit queue is full, so the node runs on a dedicated thread rather
//! than on the async runtime. Everything reaches it as an [`Event`] through one bounded
//! channel; its outputs leave as peer sends (spawned on the runtime) and client replies
//! (oneshot channels).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_core::{
    ClientError, ClientOp, ClientReply, ClientRequest, ClientTag, Node, Output, PeerMessage,
};
use cairn_ring::{Layout, NodeId, NodeRole, PlanError};
use cairn_store::RedbStore;
use tokio::sync::oneshot;

use crate::metrics::{Metrics, RequestKind};
use crate::peer::Outbound;
use crate::state::StateDir;
use crate::status::{self, Status};

/// Most events waiting for the core thread; beyond it requests are refused as overloaded
/// and peer messages dropped (the protocol tolerates loss).
pub const EVENTS_MAX: usize = 16_384;

/// Longest the core thread sleeps without looking at its timers.
const IDLE_WAIT: Duration = Duration::from_millis(200);

/// How often the layout is compared with the one on disk.
const LAYOUT_SAVE_EVERY: Duration = Duration::from_millis(500);

/// What a client request comes back as.
pub type ClientResult = Result<ClientReply, ClientError>;

/// Something for the core thread to do.
pub enum Event {
    /// A client request.
    Client {
        /// The request.
        request: ClientRequest,
        /// Where the answer goes.
        reply: oneshot::Sender<ClientResult>,
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

/// The async side's way in.
#[derive(Clone)]
pub struct CoreHandle {
    tx: SyncSender<Event>,
}

/// Why the core thread did not take an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Its queue is full.
    Overloaded,
    /// It has stopped.
    Stopped,
}

impl CoreHandle {
    /// A handle sending into `tx`.
    pub fn new(tx: SyncSender<Event>) -> Self {
        CoreHandle { tx }
    }

    /// Queues `event` without waiting.
    pub fn send(&self, event: Event) -> Result<(), Refused> {
        self.tx.try_send(event).map_err(|e| match e {
            TrySendError::Full(_) => Refused::Overloaded,
            TrySendError::Disconnected(_) => Refused::Stopped,
        })
    }

    /// Like [`ask`](Self::ask), but waits for room in a full queue instead of refusing
    /// (for the one event that must get through: shutdown).
    pub async fn ask_blocking<T: Send + 'static>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Event,
    ) -> Result<T, Refused> {
        let (tx, rx) = oneshot::channel();
        let event = make(tx);
        let sender = self.tx.clone();
        let sent = tokio::task::spawn_blocking(move || sender.send(event).is_ok()).await;
        if !matches!(sent, Ok(true)) {
            return Err(Refused::Stopped);
        }
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

impl Clock {
    /// Now.
    pub fn now_ms(self) -> u64 {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        wall.saturating_add_signed(self.offset_ms)
    }
}

/// A client request waiting for its answer.
struct Waiting {
    reply: oneshot::Sender<ClientResult>,
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

/// The core thread's state.
pub struct Core {
    node: Node<RedbStore>,
    clock: Clock,
    outbound: Outbound,
    state: StateDir,
    replies: HashMap<ClientTag, Waiting>,
    metrics: Arc<Metrics>,
    next_tag: u64,
    saved_layout: Layout,
    layout_checked: Instant,
    /// Set by the store's writer when it has tokens for us; cleared when we take them.
    persisted_flag: Arc<AtomicBool>,
    name: String,
    http: SocketAddr,
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
    ) -> Self {
        let saved_layout = node.layout().clone();
        Core {
            node,
            clock,
            outbound,
            state,
            replies: HashMap::new(),
            metrics,
            next_tag: 0,
            saved_layout,
            layout_checked: Instant::now(),
            persisted_flag,
            name,
            http,
        }
    }

    /// Runs until a `Shutdown` event (or every sender is gone).
    pub fn run(mut self, rx: Receiver<Event>) {
        loop {
            let wait = self.wait_time();
            match rx.recv_timeout(wait) {
                Ok(Event::Shutdown { grace, done }) => {
                    let result = self.shut_down(&rx, grace);
                    let _ = done.send(result);
                    return;
                }
                Ok(event) => self.handle(event),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            self.step();
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
    fn step(&mut self) {
        let now = self.clock.now_ms();
        self.persisted_flag.store(false, Ordering::Release);
        let tokens = self.node.store().take_persisted();
        if !tokens.is_empty() {
            self.node.handle_persisted(now, &tokens);
        }
        if self.node.poll_timeout().is_some_and(|at| at <= now) {
            self.node.handle_timeout(now);
        }
        self.drain_outputs(now);
        if self.layout_checked.elapsed() >= LAYOUT_SAVE_EVERY {
            self.layout_checked = Instant::now();
            self.save_layout();
        }
    }

    fn handle(&mut self, event: Event) {
        let now = self.clock.now_ms();
        match event {
            Event::Client { request, reply } => {
                let tag = ClientTag(self.next_tag);
                self.next_tag += 1;
                let waiting = Waiting {
                    reply,
                    kind: kind_of(&request),
                    since: Instant::now(),
                };
                let kind = waiting.kind;
                self.replies.insert(tag, waiting);
                self.node.handle_client(now, tag, request);
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
            Event::Peer { from, msg } => self.node.handle_peer(now, from, msg),
            Event::Join { id, role, reply } => {
                let _ = reply.send(self.join(id, role));
            }
            Event::Commit { dry_run, reply } => {
                let _ = reply.send(self.commit(dry_run));
            }
            Event::Status { reply } => {
                let _ = reply.send(status::collect(&self.node, &self.name, self.http, now));
            }
            Event::Persisted => {}
            Event::Shutdown { done, .. } => {
                let _ = done.send(Err("shutdown handled twice".into()));
            }
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
        loop {
            while let Some(out) = self.node.poll_output() {
                match out {
                    Output::Reply { tag, result } => {
                        if let Some(w) = self.replies.remove(&tag) {
                            let outcome = outcome(&result);
                            let took = w.since.elapsed();
                            let took_us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
                            tracing::debug!(tag = tag.0, outcome, took_us, "client reply");
                            self.metrics.request(w.kind, outcome, took);
                            let _ = w.reply.send(result);
                        }
                    }
                    Output::Send { to, msg } if to == self.node.id() => local.push(msg),
                    Output::Send { to, msg } => self.outbound.send(self.node.layout(), to, &msg),
                }
            }
            if local.is_empty() {
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

    /// Serves events until every client request has its answer or `grace` passes, then
    /// closes the store.
    fn shut_down(mut self, rx: &Receiver<Event>, grace: Duration) -> Result<(), String> {
        let deadline = Instant::now() + grace;
        // Client requests only: the node's background work (late acknowledgements, hints,
        // tombstones waiting out their grace) is durable locally and resumes after restart.
        while !self.replies.is_empty() && Instant::now() < deadline {
            match rx.recv_timeout(self.wait_time()) {
                Ok(Event::Client { reply, .. }) => {
                    let _ = reply.send(Err(ClientError::Unavailable("the node is shutting down")));
                }
                Ok(event) => self.handle(event),
                Err(_) => {}
            }
            self.step();
        }
        self.save_layout();
        for (_, w) in self.replies.drain() {
            // Still in flight after the grace period: possibly applied, so indeterminate.
            let e = ClientError::Unavailable("the coordinator did not answer in time");
            let _ = w.reply.send(Err(e));
        }
        self.node.into_store().close().map_err(|e| e.to_string())
    }
}
