//! The connection to a cluster: node list, options, failover.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_crdt::{Op, Value, ValueType};
use cairn_net::{Alpn, Endpoint, Identity, NetConfig, NetError};
use cairn_proto::client::{self as wire, Action, KeyRequest, Request, Response};

use crate::error::{Error, Result};
use crate::handles::{Counter, Flag, Map, MvReg, Register, Set};

/// A quorum: how many replicas must answer.
pub use cairn_proto::client::Quorum;

/// Most nodes a client remembers.
pub const NODES_MAX: usize = 256;

/// How long the client waits beyond a request's own timeout before it gives up on a node.
const CLIENT_SLACK: Duration = Duration::from_secs(2);

/// The request timeout when none is set (the server's bucket default).
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Per-request options; unset fields take the bucket's defaults on the server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Replies a read waits for.
    pub r: Option<Quorum>,
    /// Acknowledgements a write waits for.
    pub w: Option<Quorum>,
    /// Of those replies, how many from primaries.
    pub pr: Option<Quorum>,
    /// Of those acknowledgements, how many from primaries.
    pub pw: Option<Quorum>,
    /// How long the coordinator may take. It bounds each try: a request that goes on to
    /// another node, or a read sent again after a lost connection, may take longer in all.
    pub timeout: Option<Duration>,
}

impl Options {
    /// No overrides.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets `r`.
    pub fn r(mut self, q: Quorum) -> Self {
        self.r = Some(q);
        self
    }
    /// Sets `w`.
    pub fn w(mut self, q: Quorum) -> Self {
        self.w = Some(q);
        self
    }
    /// Sets `pr`.
    pub fn pr(mut self, q: Quorum) -> Self {
        self.pr = Some(q);
        self
    }
    /// Sets `pw`.
    pub fn pw(mut self, q: Quorum) -> Self {
        self.pw = Some(q);
        self
    }
    /// Sets the timeout.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }

    /// `self`'s settings, falling back to `base` where `self` has none.
    pub(crate) fn over(self, base: Options) -> Options {
        Options {
            r: self.r.or(base.r),
            w: self.w.or(base.w),
            pr: self.pr.or(base.pr),
            pw: self.pw.or(base.pw),
            timeout: self.timeout.or(base.timeout),
        }
    }

    pub(crate) fn wire(self) -> wire::Options {
        wire::Options {
            r: self.r,
            w: self.w,
            pr: self.pr,
            pw: self.pw,
            timeout_ms: self
                .timeout
                .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX).max(1)),
        }
    }
}

/// Builds a [`Client`]; see the crate docs.
#[derive(Debug, Default)]
pub struct ClientBuilder {
    nodes: Vec<String>,
    ca: Option<PathBuf>,
    cert: Option<(PathBuf, PathBuf)>,
    options: Options,
    pinned: bool,
}

impl ClientBuilder {
    /// QUIC addresses (`ip:port`) of one or more nodes; the rest of the cluster is learned
    /// from the first that answers (unless [`pinned`](Self::pinned)).
    pub fn nodes<I, S>(mut self, nodes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: ToString,
    {
        self.nodes.extend(nodes.into_iter().map(|n| n.to_string()));
        self
    }

    /// The cluster CA's certificate (PEM file).
    pub fn ca_cert(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca = Some(path.into());
        self
    }

    /// This client's certificate and key (PEM files), from `cairn cert client`.
    pub fn client_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.cert = Some((cert.into(), key.into()));
        self
    }

    /// Options every request starts from.
    pub fn options(mut self, options: Options) -> Self {
        self.options = options;
        self
    }

    /// Talks only to the nodes given: the client does not learn the rest of the cluster,
    /// so it never fails over to a node it was not given (it still does among those).
    /// For callers that must know which node each request entered through (the nemesis
    /// harness judges each side of a partition by it) or that must stay on some nodes.
    pub fn pinned(mut self) -> Self {
        self.pinned = true;
        self
    }

    /// Connects: loads the certificates, reaches a node and learns the cluster's nodes
    /// (a pinned client only checks that one answers).
    pub async fn build(self) -> Result<Client> {
        let ca = self
            .ca
            .ok_or_else(|| Error::Config("ca_cert is required".into()))?;
        let (cert, key) = self
            .cert
            .ok_or_else(|| Error::Config("client_cert is required".into()))?;
        let identity =
            Identity::load(&ca, &cert, &key).map_err(|e| Error::Config(e.to_string()))?;
        let mut nodes = Vec::new();
        for n in &self.nodes {
            let addr: SocketAddr = n
                .parse()
                .map_err(|_| Error::Config(format!("node {n:?} is not an ip:port address")))?;
            nodes.push(addr);
        }
        if nodes.is_empty() {
            return Err(Error::Config(
                "at least one node address is required".into(),
            ));
        }
        let config = NetConfig {
            // Requests carry their own deadlines; the transport's is only a backstop.
            call_timeout: Duration::from_secs(75),
            ..NetConfig::default()
        };
        let endpoint =
            Endpoint::client(&identity, config).map_err(|e| Error::Config(e.to_string()))?;
        let client = Client {
            inner: Arc::new(Inner {
                endpoint,
                nodes: Mutex::new(nodes),
                preferred: AtomicUsize::new(0),
                options: self.options,
                pinned: self.pinned,
            }),
        };
        client.refresh_nodes().await?;
        Ok(client)
    }
}

/// A connection to a Cairn cluster. Cheap to clone; clones share connections.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    endpoint: Endpoint,
    nodes: Mutex<Vec<SocketAddr>>,
    /// Index of the node that answered last.
    preferred: AtomicUsize,
    options: Options,
    /// Whether the node list stays as given ([`ClientBuilder::pinned`]).
    pinned: bool,
}

/// Whether a request may be sent again after it may have reached a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Reads: sending again is harmless.
    Always,
    /// Writes: only when it never left this client (a retry could apply it twice).
    IfNeverSent,
}

impl Client {
    /// Starts a [`ClientBuilder`].
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// A counter.
    pub fn counter(&self, bucket: impl AsRef<[u8]>, key: impl AsRef<[u8]>) -> Counter {
        Counter::new(self.key(bucket, key))
    }

    /// An add-wins set.
    pub fn set(&self, bucket: impl AsRef<[u8]>, key: impl AsRef<[u8]>) -> Set {
        Set::new(self.key(bucket, key))
    }

    /// A map of counters, sets, registers, flags and maps.
    pub fn map(&self, bucket: impl AsRef<[u8]>, key: impl AsRef<[u8]>) -> Map {
        Map::new(self.key(bucket, key))
    }

    /// A last-writer-wins register.
    pub fn register(&self, bucket: impl AsRef<[u8]>, key: impl AsRef<[u8]>) -> Register {
        Register::new(self.key(bucket, key))
    }

    /// An enable-wins flag.
    pub fn flag(&self, bucket: impl AsRef<[u8]>, key: impl AsRef<[u8]>) -> Flag {
        Flag::new(self.key(bucket, key))
    }

    /// A multi-value register: reads return every concurrent write.
    pub fn mvreg(&self, bucket: impl AsRef<[u8]>, key: impl AsRef<[u8]>) -> MvReg {
        MvReg::new(self.key(bucket, key))
    }

    /// Deletes `bucket/key` (what the replicas read by the delete have observed).
    pub async fn delete(&self, bucket: impl AsRef<[u8]>, key: impl AsRef<[u8]>) -> Result<()> {
        let k = self.key(bucket, key);
        k.send(Action::Delete, Retry::IfNeverSent).await.map(|_| ())
    }

    /// The options every request starts from.
    pub(crate) fn default_options(&self) -> Options {
        self.inner.options
    }

    /// The QUIC addresses this client knows (for a pinned client, exactly those given).
    pub fn nodes(&self) -> Vec<SocketAddr> {
        self.inner.lock_nodes().clone()
    }

    fn key(&self, bucket: impl AsRef<[u8]>, key: impl AsRef<[u8]>) -> KeyRef {
        KeyRef {
            client: self.clone(),
            bucket: bucket.as_ref().to_vec(),
            key: key.as_ref().to_vec(),
            options: Options::default(),
        }
    }

    /// Asks a node for the cluster's nodes and remembers them (unless
    /// [`pinned`](ClientBuilder::pinned): then it only checks that a node answers).
    pub async fn refresh_nodes(&self) -> Result<()> {
        let learned = match self
            .send(&Request::Nodes, Retry::Always, DEFAULT_TIMEOUT)
            .await?
        {
            Response::Nodes(addrs) => addrs,
            other => return Err(Error::Protocol(format!("asked for nodes, got {other:?}"))),
        };
        if self.inner.pinned {
            return Ok(());
        }
        let mut nodes = self.inner.lock_nodes();
        for addr in learned.iter().filter_map(|a| a.parse::<SocketAddr>().ok()) {
            if !nodes.contains(&addr) && nodes.len() < NODES_MAX {
                nodes.push(addr);
            }
        }
        Ok(())
    }

    /// Sends `request` to the preferred node, failing over to the others as `retry` allows.
    pub(crate) async fn send(
        &self,
        request: &Request,
        retry: Retry,
        timeout: Duration,
    ) -> Result<Response> {
        let bytes = wire::encode_request(request);
        let nodes = self.nodes();
        let start = self.inner.preferred.load(Ordering::Relaxed);
        let mut last = Error::Unavailable("no node address known".into());
        for i in 0..nodes.len() {
            let index = (start + i) % nodes.len();
            let addr = nodes[index];
            let mut outcome = self.attempt(addr, &bytes, timeout).await?;
            if retry == Retry::Always && matches!(outcome, Attempt::Lost(_)) {
                // The node most likely restarted: its new incarnation resets every old
                // connection at the first packet. The next call dials afresh, so a read
                // goes to the same node once more rather than fail where it is the only
                // node (a pinned client) or leave the node the client prefers.
                tracing::debug!(%addr, "connection lost; reading again on a new one");
                outcome = self.attempt(addr, &bytes, timeout).await?;
            }
            let err = match outcome {
                Attempt::Answered(response) => {
                    self.inner.preferred.store(index, Ordering::Relaxed);
                    return Ok(response);
                }
                Attempt::NotServed(e) => {
                    last = e;
                    continue;
                }
                Attempt::Lost(e) | Attempt::Unknown(e) => e,
            };
            if retry == Retry::IfNeverSent {
                return Err(err);
            }
            last = err;
        }
        Err(last)
    }

    /// One try of a request at one node.
    async fn attempt(&self, addr: SocketAddr, bytes: &[u8], timeout: Duration) -> Result<Attempt> {
        let call = self.inner.endpoint.call(addr, Alpn::Client, bytes);
        let reply = match tokio::time::timeout(timeout.saturating_add(CLIENT_SLACK), call).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) if never_sent(&e) => {
                tracing::debug!(%addr, error = %e, "node unreachable; trying the next");
                return Ok(Attempt::NotServed(Error::Unavailable(format!(
                    "{addr}: {e}"
                ))));
            }
            Ok(Err(e @ NetError::ConnectionLost(_))) => {
                return Ok(Attempt::Lost(Error::Indeterminate(format!("{addr}: {e}"))));
            }
            Ok(Err(e)) => {
                return Ok(Attempt::Unknown(Error::Indeterminate(format!(
                    "{addr}: {e}"
                ))))
            }
            Err(_) => return Ok(Attempt::Unknown(Error::Timeout)),
        };
        let response = wire::decode_response(&reply).map_err(|e| Error::Protocol(e.to_string()))?;
        if let Response::Error(e) = &response {
            // Refused before anything was applied (the node is starting, stopping,
            // overloaded, or reaches no replica): another node may serve it, even a write.
            if matches!(
                e.kind,
                wire::ErrorKind::Unavailable | wire::ErrorKind::Overloaded
            ) {
                tracing::debug!(%addr, message = %e.message, "node refused; trying the next");
                return Ok(Attempt::NotServed(Error::from(e.clone())));
            }
        }
        Ok(Attempt::Answered(response))
    }
}

/// How one try of a request at one node ended.
enum Attempt {
    /// The node answered (perhaps with an error of the request's own).
    Answered(Response),
    /// Nothing was applied: the request never reached the node, or the node refused it
    /// before doing anything. Any request may go to another node.
    NotServed(Error),
    /// The connection broke after the request left: it may have been applied.
    Lost(Error),
    /// No answer in time, or a broken exchange: it may have been applied.
    Unknown(Error),
}

impl Inner {
    fn lock_nodes(&self) -> std::sync::MutexGuard<'_, Vec<SocketAddr>> {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Errors that prove the request never reached a node, so any request may go elsewhere.
fn never_sent(e: &NetError) -> bool {
    matches!(
        e,
        NetError::Connect(_) | NetError::Handshake(_) | NetError::Backoff(_) | NetError::Refused(_)
    )
}

/// One key of one client, with the options its handle carries.
#[derive(Clone, Debug)]
pub(crate) struct KeyRef {
    pub(crate) client: Client,
    pub(crate) bucket: Vec<u8>,
    pub(crate) key: Vec<u8>,
    pub(crate) options: Options,
}

impl KeyRef {
    fn options(&self) -> Options {
        self.options.over(self.client.inner.options)
    }

    /// Runs `action` and returns the value it answered with.
    pub(crate) async fn send(&self, action: Action, retry: Retry) -> Result<Option<Value>> {
        let options = self.options();
        let request = Request::Key(KeyRequest {
            bucket: self.bucket.clone(),
            key: self.key.clone(),
            action,
            options: options.wire(),
        });
        let timeout = options.timeout.unwrap_or(DEFAULT_TIMEOUT);
        match self.client.send(&request, retry, timeout).await? {
            Response::Value(bytes) => {
                Response::value(&bytes).map_err(|e| Error::Protocol(e.to_string()))
            }
            Response::Deleted | Response::Applied => Ok(None),
            Response::Error(e) => Err(e.into()),
            other => Err(Error::Protocol(format!("unexpected answer {other:?}"))),
        }
    }

    /// Applies `op` (never retried once sent).
    pub(crate) async fn update(&self, op: Op, ty: ValueType) -> Result<Value> {
        let bytes = cairn_proto::encode_op(&op);
        let value = self.send(Action::Update(bytes), Retry::IfNeverSent).await?;
        let value = value.unwrap_or_else(|| Value::empty(ty));
        expect_type(value, ty)
    }

    /// Applies `op`, answered by an acknowledgement alone (never retried once sent).
    pub(crate) async fn apply(&self, op: Op) -> Result<()> {
        let bytes = cairn_proto::encode_op(&op);
        self.send(Action::Apply(bytes), Retry::IfNeverSent).await?;
        Ok(())
    }

    /// Reads the value (`None`: not found), retried on another node if need be.
    pub(crate) async fn read(&self, ty: ValueType) -> Result<Option<Value>> {
        match self.send(Action::Read, Retry::Always).await? {
            Some(v) => expect_type(v, ty).map(Some),
            None => Ok(None),
        }
    }
}

fn expect_type(v: Value, ty: ValueType) -> Result<Value> {
    if v.value_type() == ty {
        Ok(v)
    } else {
        Err(Error::TypeMismatch(format!(
            "the key holds a {}, not a {ty}",
            v.value_type()
        )))
    }
}
