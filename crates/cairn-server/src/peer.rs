//! Peer traffic over `cairn-net`: what a request payload holds, the handler that feeds
//! the core, and the outbound side that carries the node's sends.
//!
//! A peer payload starts with a kind byte: [`KIND_BATCH`] (postcard `cairn_core::wire`
//! messages, sent one-way on a unidirectional stream: replies travel as messages of their
//! own), [`KIND_CORE`] (one such message; as a request with a reply it is answered with an
//! empty payload once queued) or [`KIND_JOIN`] (a postcard [`JoinRequest`], answered with
//! the postcard layout that now stages the joiner).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use cairn_core::wire::{decode_peer, encode_peer};
use cairn_core::PeerMessage;
use cairn_net::{Alpn, Endpoint, Handler};
use cairn_proto::ByteBuf;
use cairn_ring::{Capacity, Layout, NodeId, NodeRole, Zone};
use serde::{Deserialize, Serialize};

use crate::core_loop::{CoreHandle, Event, Refused};
use crate::metrics::Metrics;

/// A core message follows.
pub const KIND_CORE: u8 = 0;
/// A join request follows.
pub const KIND_JOIN: u8 = 1;
/// A postcard list of `cairn_core::wire` messages follows (sent one-way; as a request with
/// a reply it is answered like [`KIND_CORE`]).
pub const KIND_BATCH: u8 = 2;

/// A node asking to be staged into the cluster.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct JoinRequest {
    /// Its id.
    pub id: u64,
    /// Where peers reach it.
    pub addr: String,
    /// Its zone.
    pub zone: String,
    /// Its capacity.
    pub capacity: u64,
}

/// Serves peer requests by handing them to the core.
pub struct PeerHandler {
    core: CoreHandle,
    me: NodeId,
    metrics: Arc<Metrics>,
}

impl PeerHandler {
    /// A handler feeding `core`, the core of node `me`, counting refusals in `metrics`.
    pub fn new(core: CoreHandle, me: NodeId, metrics: Arc<Metrics>) -> Self {
        PeerHandler { core, me, metrics }
    }

    /// Hands one message to the core; a message it cannot take is counted (batches come
    /// one-way, so the sender never hears of it).
    fn core_message(&self, body: &[u8]) -> Result<Vec<u8>, String> {
        let taken = self.take_message(body);
        if taken.is_err() {
            self.metrics
                .peer_messages_refused
                .fetch_add(1, Ordering::Relaxed);
        }
        taken
    }

    fn take_message(&self, body: &[u8]) -> Result<Vec<u8>, String> {
        let (from, msg) = decode_peer(body).map_err(|e| e.to_string())?;
        if tracing::enabled!(tracing::Level::DEBUG) {
            let req = request_label(from, self.me, &msg);
            let from = crate::status::node_name(from);
            tracing::debug!(%from, kind = kind_name(&msg), req, "peer message in");
        }
        match self.core.send(Event::Peer { from, msg }) {
            Ok(()) => Ok(Vec::new()),
            Err(Refused::Overloaded) => Err("overloaded: message dropped".into()),
            Err(Refused::Stopped) => Err("the node is stopping".into()),
        }
    }

    fn batch(&self, body: &[u8]) -> Result<Vec<u8>, String> {
        let msgs: Vec<ByteBuf> = postcard::from_bytes(body).map_err(|e| {
            // Its messages are unknown: the frame counts as one.
            self.metrics
                .peer_messages_refused
                .fetch_add(1, Ordering::Relaxed);
            format!("malformed peer batch: {e}")
        })?;
        // A message this node cannot take (one a newer peer sends, or one that meets a full
        // queue) must not cost the rest of the batch: each is handed over on its own, and
        // the first error is answered once all were tried.
        let mut first_error = None;
        for m in &msgs {
            if let Err(e) = self.core_message(m) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(Vec::new()), Err)
    }

    async fn join(&self, body: &[u8]) -> Result<Vec<u8>, String> {
        let req: JoinRequest =
            postcard::from_bytes(body).map_err(|e| format!("malformed join request: {e}"))?;
        let zone = Zone::new(req.zone).map_err(|e| e.to_string())?;
        let role = NodeRole::new(req.addr, zone, Capacity(req.capacity));
        let id = NodeId(req.id);
        let layout = self
            .core
            .ask(|reply| Event::Join { id, role, reply })
            .await
            .map_err(|e| format!("{e:?}"))??;
        postcard::to_allocvec(&layout).map_err(|e| e.to_string())
    }
}

impl Handler for PeerHandler {
    async fn handle(
        &self,
        alpn: Alpn,
        _peer: SocketAddr,
        request: Vec<u8>,
    ) -> Result<Vec<u8>, String> {
        if alpn == Alpn::Client {
            return Ok(crate::client_api::handle(&self.core, &request).await);
        }
        match request.split_first() {
            Some((&KIND_CORE, body)) => self.core_message(body),
            Some((&KIND_JOIN, body)) => self.join(body).await,
            Some((&KIND_BATCH, body)) => self.batch(body),
            Some((kind, _)) => Err(format!("unknown peer request kind {kind}")),
            None => Err("empty peer request".into()),
        }
    }
}

/// Most messages waiting for one peer; beyond it new ones are dropped (the protocol
/// tolerates loss: timeouts, retries, hints and anti-entropy cover it).
pub const PEER_QUEUE_MAX: usize = 8192;
/// Most bytes waiting for one peer (large repairs fill this before the count bound).
pub const PEER_QUEUE_BYTES_MAX: usize = 64 << 20;
/// Most messages in one batch frame.
pub const BATCH_MESSAGES_MAX: usize = 512;
/// Most message bytes in one batch frame (well under the transport's frame bound).
pub const BATCH_BYTES_MAX: usize = 8 << 20;
/// Batches being handed to QUIC for one peer at once (each send ends once its stream is
/// written: sends are one-way).
pub const PEER_SENDERS: usize = 4;

/// Messages waiting for one peer.
struct PeerQueue {
    addr: SocketAddr,
    msgs: std::collections::VecDeque<Vec<u8>>,
    /// Bytes in `msgs`.
    bytes: usize,
    /// Sender tasks running for this peer.
    senders: usize,
}

/// Carries the node's sends to its peers. Messages to one peer queue up while up to
/// [`PEER_SENDERS`] sends are under way, and leave together in one batch frame on a
/// one-way stream ([`Endpoint::tell`]): under load a stream (and its packets) carries
/// many messages, idle it carries one at once. A send fails only when QUIC cannot take
/// it (no connection, a closed stream, or no room for `NetConfig::stall_timeout`, which
/// closes the connection so the next send dials again); a message the peer drops on
/// arrival (its core's queue full) is not reported back, like one lost in flight: the
/// protocol's timeouts, retries, hints and anti-entropy cover both.
pub struct Outbound {
    me: NodeId,
    endpoint: Endpoint,
    runtime: tokio::runtime::Handle,
    queues: Arc<Mutex<HashMap<NodeId, PeerQueue>>>,
    addrs: Mutex<HashMap<String, Option<SocketAddr>>>,
    metrics: Arc<Metrics>,
}

impl Outbound {
    /// Sends as `me` through `endpoint`, spawning on `runtime`.
    pub fn new(
        me: NodeId,
        endpoint: Endpoint,
        runtime: tokio::runtime::Handle,
        metrics: Arc<Metrics>,
    ) -> Self {
        Outbound {
            me,
            endpoint,
            runtime,
            queues: Arc::new(Mutex::new(HashMap::new())),
            addrs: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    fn addr_of(&self, layout: &Layout, to: NodeId) -> Option<SocketAddr> {
        let text = layout.node(to).map(|r| r.addr.clone()).or_else(|| {
            layout.staged().change(to).and_then(|s| match &s.change {
                cairn_ring::NodeChange::Set(role) => Some(role.addr.clone()),
                cairn_ring::NodeChange::Remove => None,
            })
        })?;
        let mut cache = self.addrs.lock().unwrap_or_else(|p| p.into_inner());
        *cache.entry(text).or_insert_with_key(|t| t.parse().ok())
    }

    /// Queues `msg` for `to`, dropping it when the node's address is unknown or its
    /// queue is full.
    pub fn send(&self, layout: &Layout, to: NodeId, msg: &PeerMessage) {
        let Some(addr) = self.addr_of(layout, to) else {
            tracing::debug!(to = %crate::status::node_name(to), "no address for peer; message dropped");
            return;
        };
        if tracing::enabled!(tracing::Level::DEBUG) {
            let req = request_label(self.me, to, msg);
            let to = crate::status::node_name(to);
            tracing::debug!(%to, kind = kind_name(msg), req, "peer message out");
        }
        let bytes = encode_peer(self.me, msg);
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        let q = queues.entry(to).or_insert_with(|| PeerQueue {
            addr,
            msgs: std::collections::VecDeque::new(),
            bytes: 0,
            senders: 0,
        });
        q.addr = addr;
        if q.msgs.len() >= PEER_QUEUE_MAX || q.bytes + bytes.len() > PEER_QUEUE_BYTES_MAX {
            drop(queues);
            tracing::debug!("peer queue full; message dropped");
            self.metrics
                .peer_sends_dropped
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        q.bytes += bytes.len();
        q.msgs.push_back(bytes);
        self.metrics
            .peer_sends_in_flight
            .fetch_add(1, Ordering::Relaxed);
        if q.senders < PEER_SENDERS {
            q.senders += 1;
            drop(queues);
            self.runtime.spawn(drain(
                to,
                self.queues.clone(),
                self.endpoint.clone(),
                self.metrics.clone(),
            ));
        }
    }
}

/// Sends `to`'s queued messages in batches until its queue is empty.
async fn drain(
    to: NodeId,
    queues: Arc<Mutex<HashMap<NodeId, PeerQueue>>>,
    endpoint: Endpoint,
    metrics: Arc<Metrics>,
) {
    loop {
        let (addr, batch) = {
            let mut all = queues.lock().unwrap_or_else(|p| p.into_inner());
            let Some(q) = all.get_mut(&to) else { return };
            if q.msgs.is_empty() {
                q.senders = q.senders.saturating_sub(1);
                return;
            }
            let mut batch = Vec::new();
            let mut bytes = 0;
            while let Some(m) = q.msgs.front() {
                if !batch.is_empty()
                    && (batch.len() >= BATCH_MESSAGES_MAX || bytes + m.len() > BATCH_BYTES_MAX)
                {
                    break;
                }
                bytes += m.len();
                q.bytes = q.bytes.saturating_sub(m.len());
                batch.extend(q.msgs.pop_front().map(ByteBuf));
            }
            (q.addr, batch)
        };
        let count = batch.len() as u64;
        let payload = match postcard::to_extend(&batch, vec![KIND_BATCH]) {
            Ok(payload) => payload,
            Err(_) => {
                metrics
                    .peer_sends_in_flight
                    .fetch_sub(count, Ordering::Relaxed);
                continue;
            }
        };
        metrics
            .peer_messages_sent
            .fetch_add(count, Ordering::Relaxed);
        metrics.peer_batches_sent.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = endpoint.tell(addr, &payload).await {
            tracing::debug!(%addr, error = %e, count, "peer send failed");
            metrics
                .peer_sends_failed
                .fetch_add(count, Ordering::Relaxed);
        }
        metrics
            .peer_sends_in_flight
            .fetch_sub(count, Ordering::Relaxed);
    }
}

/// Asks the node at `seed` to stage `req`; returns the layout it answered with.
pub async fn join(
    endpoint: &Endpoint,
    seed: SocketAddr,
    req: &JoinRequest,
) -> Result<Layout, String> {
    let mut payload = vec![KIND_JOIN];
    payload.extend_from_slice(&postcard::to_allocvec(req).map_err(|e| e.to_string())?);
    let reply = endpoint
        .call(seed, Alpn::Peer, &payload)
        .await
        .map_err(|e| e.to_string())?;
    postcard::from_bytes(&reply).map_err(|e| format!("the seed answered with no layout: {e}"))
}

/// The request a message belongs to, as `coordinator:id` (the coordinator is the sender
/// of requests and the receiver of replies), so logs on every node can be joined on it.
pub fn request_label(from: NodeId, to: NodeId, msg: &PeerMessage) -> Option<String> {
    let (coordinator, id) = match msg {
        PeerMessage::Forward { id, .. }
        | PeerMessage::Read { id, .. }
        | PeerMessage::AaeRoot { id, .. }
        | PeerMessage::AaeBranches { id, .. }
        | PeerMessage::AaeKeys { id, .. } => (from, *id),
        PeerMessage::Replicate { id: Some(id), .. } => (from, *id),
        PeerMessage::ForwardReply { id, .. }
        | PeerMessage::ReplicateAck { id, .. }
        | PeerMessage::ReadReply { id, .. }
        | PeerMessage::AaeRootReply { id, .. }
        | PeerMessage::AaeSegments { id, .. }
        | PeerMessage::AaeFetch { id, .. } => (to, *id),
        _ => return None,
    };
    Some(format!(
        "{}:{}",
        crate::status::node_name(coordinator),
        id.0
    ))
}

/// The message's variant name, for logs.
pub fn kind_name(msg: &PeerMessage) -> &'static str {
    match msg {
        PeerMessage::Forward { .. } => "forward",
        PeerMessage::ForwardReply { .. } => "forward_reply",
        PeerMessage::Replicate { .. } => "replicate",
        PeerMessage::ReplicateAck { .. } => "replicate_ack",
        PeerMessage::Read { .. } => "read",
        PeerMessage::ReadReply { .. } => "read_reply",
        PeerMessage::AaeRoot { .. } => "aae_root",
        PeerMessage::AaeRootReply { .. } => "aae_root_reply",
        PeerMessage::AaeBranches { .. } => "aae_branches",
        PeerMessage::AaeSegments { .. } => "aae_segments",
        PeerMessage::AaeKeys { .. } => "aae_keys",
        PeerMessage::AaeRepair { .. } => "aae_repair",
        PeerMessage::AaeFetch { .. } => "aae_fetch",
        PeerMessage::Reap { .. } => "reap",
        PeerMessage::Gossip { .. } => "gossip",
        PeerMessage::Ping => "ping",
        PeerMessage::Pong => "pong",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_that_does_not_decode_costs_only_itself_in_a_batch() {
        let (core, mut queue) = crate::core_loop::queue();
        let metrics = Arc::new(Metrics::default());
        let handler = PeerHandler::new(core, NodeId(1), Arc::clone(&metrics));
        let ping = encode_peer(NodeId(2), &PeerMessage::Ping);
        let batch = vec![ByteBuf(ping.clone()), ByteBuf(vec![1, 0xff]), ByteBuf(ping)];
        let body = postcard::to_allocvec(&batch).unwrap();
        assert!(handler.batch(&body).is_err(), "the bad message is reported");
        let delivered = std::iter::from_fn(|| queue.try_recv().ok()).count();
        assert_eq!(delivered, 2, "the messages around it still reach the core");
        assert_eq!(metrics.peer_messages_refused.load(Ordering::Relaxed), 1);
        assert!(handler.batch(&[0xff, 0xff]).is_err());
        assert_eq!(metrics.peer_messages_refused.load(Ordering::Relaxed), 2);
    }
}
