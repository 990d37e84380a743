//! The endpoint: one quinn endpoint that serves and calls.

use std::future::Future;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quinn::{ConnectError, Connection, EndpointConfig, TokioRuntime};
use tokio::time::timeout;
use tracing::debug;

use crate::cache::{Cache, Cached, Key};
use crate::frame::{ReplyKind, RequestKind, HEADER_BYTES};
use crate::serve::{serve_connection, Handler, Limits};
use crate::stream::{self, connection_error, ReadFailure, CLOSE_SHUTDOWN, CLOSE_STALLED};
use crate::traffic::{Datagrams, Traffic};
use crate::{tls, Alpn, Identity, NetConfig, NetError, NODE_SERVER_NAME};

/// How long [`Endpoint::close`] waits for peers to acknowledge the close.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// One QUIC endpoint on one UDP socket: a server (after [`Endpoint::bind`]) and a client
/// at once. Cheap to clone; clones share the socket, the connections and the cache.
#[derive(Clone)]
pub struct Endpoint {
    inner: Arc<Inner>,
}

struct Inner {
    quic: quinn::Endpoint,
    serves: bool,
    peer_client: quinn::ClientConfig,
    client_client: quinn::ClientConfig,
    config: NetConfig,
    cache: Cache,
    closed: AtomicBool,
    traffic: Arc<Traffic>,
}

impl Endpoint {
    /// Binds UDP `addr` and serves both ALPNs. Remotes must present a certificate signed
    /// by the identity's CA; the peer ALPN also needs a node certificate. The identity must
    /// itself be a node certificate (clients check the server name [`NODE_SERVER_NAME`]).
    ///
    /// Call from within a tokio runtime with I/O and time enabled.
    pub fn bind(
        addr: SocketAddr,
        identity: &Identity,
        config: NetConfig,
    ) -> Result<Endpoint, NetError> {
        config.validate()?;
        if !identity.is_node() {
            return Err(NetError::Tls(format!(
                "serving needs a node certificate (valid for {NODE_SERVER_NAME}); this is a client certificate"
            )));
        }
        let server = tls::server_config(identity, &config)?;
        let socket =
            UdpSocket::bind(addr).map_err(|e| NetError::io(format!("binding UDP {addr}"), e))?;
        Endpoint::build(
            socket,
            restartable(identity),
            Some(server),
            identity,
            config,
        )
    }

    /// A client-only endpoint on an ephemeral port (no server configuration, nothing
    /// accepted): for the SDK and the CLI. Any certificate signed by the CA will do.
    ///
    /// Call from within a tokio runtime with I/O and time enabled.
    pub fn client(identity: &Identity, config: NetConfig) -> Result<Endpoint, NetError> {
        config.validate()?;
        // Dual-stack where the system allows, so both IPv4 and IPv6 nodes can be dialled.
        let socket = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0))
            .or_else(|_| UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)))
            .map_err(|e| NetError::io("binding a UDP socket", e))?;
        Endpoint::build(socket, EndpointConfig::default(), None, identity, config)
    }

    fn build(
        socket: UdpSocket,
        endpoint: EndpointConfig,
        server: Option<quinn::ServerConfig>,
        identity: &Identity,
        config: NetConfig,
    ) -> Result<Endpoint, NetError> {
        if tokio::runtime::Handle::try_current().is_err() {
            let error = std::io::Error::other("not called from within a tokio runtime");
            return Err(NetError::io("starting the QUIC endpoint", error));
        }
        let serves = server.is_some();
        let runtime = Arc::new(TokioRuntime);
        let quic = quinn::Endpoint::new(endpoint, server, socket, runtime)
            .map_err(|e| NetError::io("starting the QUIC endpoint", e))?;
        let inner = Inner {
            quic,
            serves,
            peer_client: tls::client_config(identity, &config, Alpn::Peer)?,
            client_client: tls::client_config(identity, &config, Alpn::Client)?,
            config,
            cache: Cache::default(),
            closed: AtomicBool::new(false),
            traffic: Arc::default(),
        };
        Ok(Endpoint {
            inner: Arc::new(inner),
        })
    }

    /// The local UDP address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> Result<SocketAddr, NetError> {
        self.inner
            .quic
            .local_addr()
            .map_err(|e| NetError::io("reading the local address", e))
    }

    /// The settings this endpoint runs with.
    pub fn config(&self) -> &NetConfig {
        &self.inner.config
    }

    /// Accepts connections until [`Endpoint::close`]: a task per connection and per
    /// request stream, `handler` called for each request frame. Bad frames get an error
    /// reply (a one-way stream: a stop and a log line) and end their stream only. Returns
    /// at once on a client-only endpoint.
    pub async fn serve<H: Handler>(&self, handler: Arc<H>) {
        if !self.inner.serves {
            debug!("serve called on a client-only endpoint");
            return;
        }
        let limits = Limits {
            frame_bytes_max: self.inner.config.frame_bytes_max,
            request_timeout: self.inner.config.call_timeout,
        };
        while let Some(incoming) = self.inner.quic.accept().await {
            let traffic = Arc::clone(&self.inner.traffic);
            tokio::spawn(serve_connection(
                incoming,
                Arc::clone(&handler),
                limits,
                traffic,
            ));
        }
        debug!("endpoint stopped accepting");
    }

    /// Sends `request` to `addr` on a fresh stream of the cached connection for
    /// (`addr`, `alpn`) and returns the reply payload.
    ///
    /// Connects as needed; a new connection is proven with a ping first (with TLS 1.3 a
    /// client learns that the server refused its certificate only on first use), so a
    /// refusal comes back as [`NetError::Refused`] or [`NetError::Handshake`]. After a
    /// failed connection attempt, calls to that address fail fast with
    /// [`NetError::Backoff`] until the backoff (doubling from `backoff_min` to
    /// `backoff_max`) ends. The request is never re-sent: a call whose request may have
    /// reached the remote fails rather than risk applying it twice.
    pub async fn call(
        &self,
        addr: SocketAddr,
        alpn: Alpn,
        request: &[u8],
    ) -> Result<Vec<u8>, NetError> {
        let max = self.inner.config.frame_bytes_max;
        if request.len() > max {
            let len = request.len() as u64;
            return Err(NetError::FrameTooLarge { len, max });
        }
        let (kind, payload) = self
            .exchange(addr, alpn, RequestKind::Request, request)
            .await?;
        match kind {
            ReplyKind::Ok => Ok(payload),
            other => Err(NetError::BadFrame(format!(
                "a request was answered with {other:?}"
            ))),
        }
    }

    /// Sends `request` to `addr` on a fresh unidirectional stream of the cached peer
    /// connection, with no reply: `Ok` means it was handed to QUIC (which retransmits it
    /// until the connection fails), not that the remote took it. For messages whose loss
    /// the protocol tolerates; a request and its reply cost four datagrams on an idle
    /// connection (request, its acknowledgement, reply, its acknowledgement), a one-way
    /// request about one and a half. Connects, proves and backs off as [`Endpoint::call`]
    /// does.
    pub async fn tell(&self, addr: SocketAddr, request: &[u8]) -> Result<(), NetError> {
        let max = self.inner.config.frame_bytes_max;
        if request.len() > max {
            let len = request.len() as u64;
            return Err(NetError::FrameTooLarge { len, max });
        }
        let key = (addr, Alpn::Peer);
        self.drop_stalled(key);
        self.on_connection(addr, Alpn::Peer, |c| async move {
            let sent = self.tell_on(c.clone(), request).await;
            if sent.is_ok() {
                self.inner.cache.sent(key, &c, Instant::now());
            }
            sent
        })
        .await
    }

    async fn tell_on(&self, connection: Connection, request: &[u8]) -> Result<(), Stage> {
        let max = self.inner.config.frame_bytes_max;
        let send = async {
            let mut send = connection
                .open_uni()
                .await
                .map_err(|e| Stage::Open(connection_error(e)))?;
            stream::write_frame(&mut send, RequestKind::Request.into(), request, max)
                .await
                .map_err(Stage::After)
        };
        match timeout(self.inner.config.stall_timeout, send).await {
            Ok(result) => result,
            Err(_) => {
                // No room for that long: the remote has stopped answering, and QUIC's
                // retransmissions back off ever further. Closed, the connection leaves
                // the cache (`settle`) and the next send dials again.
                give_up(&connection);
                Err(Stage::After(NetError::Timeout))
            }
        }
    }

    /// Checks that `addr` is reachable and accepts us on `alpn`: connects if needed and
    /// sends a ping.
    pub async fn ping(&self, addr: SocketAddr, alpn: Alpn) -> Result<(), NetError> {
        match self.exchange(addr, alpn, RequestKind::Ping, &[]).await? {
            (ReplyKind::Pong, _) => Ok(()),
            (other, _) => Err(NetError::BadFrame(format!(
                "a ping was answered with {other:?}"
            ))),
        }
    }

    /// Stops accepting, closes every connection with code 0 and reason `shutdown`, and
    /// waits (at most a second) for the remotes to acknowledge. Later calls fail with
    /// [`NetError::Closed`].
    pub async fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        self.inner.quic.close(CLOSE_SHUTDOWN, b"shutdown");
        self.inner.cache.clear();
        if timeout(CLOSE_WAIT, self.inner.quic.wait_idle())
            .await
            .is_err()
        {
            debug!("connections still closing after {CLOSE_WAIT:?}");
        }
    }

    /// UDP datagrams sent and received over the connections this endpoint accepted, since
    /// it started (for metrics; see `traffic.rs` for why only accepted ones).
    pub fn accepted_datagrams(&self) -> Datagrams {
        self.inner.traffic.totals()
    }

    /// Number of open connections, incoming and outgoing (for metrics).
    pub fn connection_count(&self) -> usize {
        self.inner.quic.open_connections()
    }

    /// Test support: writes `bytes` as they are on a fresh stream of the cached connection
    /// to (`addr`, `alpn`), finishes it, and returns every byte of the reply stream. For
    /// sending malformed frames; not part of the supported API.
    #[doc(hidden)]
    pub async fn raw_exchange(
        &self,
        addr: SocketAddr,
        alpn: Alpn,
        bytes: &[u8],
    ) -> Result<Vec<u8>, NetError> {
        let cached = self.connection(addr, alpn).await?;
        let (mut send, mut recv) = cached
            .connection
            .open_bi()
            .await
            .map_err(connection_error)?;
        // The server may stop reading early (a bad header); its reply still comes.
        let written = send.write_all(bytes).await;
        if written.is_ok() {
            stream::finish(&mut send)?;
        }
        let limit = HEADER_BYTES + self.inner.config.frame_bytes_max;
        let reply = recv.read_to_end(limit).await;
        reply.map_err(|e| NetError::BadFrame(format!("raw reply: {e}")))
    }

    /// Test support: writes `bytes` on a fresh unidirectional stream of the cached
    /// connection to (`addr`, `alpn`) without finishing it, and returns the stop code the
    /// server answers with (`None` if it read the stream instead), within `call_timeout`.
    /// Not part of the supported API.
    #[doc(hidden)]
    pub async fn raw_one_way(
        &self,
        addr: SocketAddr,
        alpn: Alpn,
        bytes: &[u8],
    ) -> Result<Option<u64>, NetError> {
        let cached = self.connection(addr, alpn).await?;
        let mut send = cached
            .connection
            .open_uni()
            .await
            .map_err(connection_error)?;
        send.write_all(bytes)
            .await
            .map_err(|e| NetError::BadFrame(format!("raw write: {e}")))?;
        let stopped = timeout(self.inner.config.call_timeout, send.stopped()).await;
        match stopped {
            Ok(Ok(code)) => Ok(code.map(u64::from)),
            Ok(Err(e)) => Err(NetError::BadFrame(format!("raw stream: {e}"))),
            Err(_) => Err(NetError::Timeout),
        }
    }

    /// One frame out, one frame back, on the cached connection, within `call_timeout`.
    async fn exchange(
        &self,
        addr: SocketAddr,
        alpn: Alpn,
        kind: RequestKind,
        payload: &[u8],
    ) -> Result<(ReplyKind, Vec<u8>), NetError> {
        let key = (addr, alpn);
        self.drop_stalled(key);
        self.on_connection(addr, alpn, |c| self.exchange_on(c, key, kind, payload))
            .await
    }

    /// Gives up the connection cached for `key` if it has sent for `stall_timeout`
    /// without hearing anything back (see [`Cache::stalled`]), so that this request dials
    /// afresh instead of joining the silence.
    fn drop_stalled(&self, key: Key) {
        let stall = self.inner.config.stall_timeout;
        if let Some(stalled) = self.inner.cache.stalled(key, Instant::now(), stall) {
            give_up(&stalled);
            self.inner.cache.evict(key, &stalled);
        }
    }

    /// Runs `attempt` on the cached connection for (`addr`, `alpn`). If the stream could
    /// not even be opened, nothing was sent, so one retry on a fresh connection is safe (a
    /// cached connection can die unnoticed).
    async fn on_connection<T, F, Fut>(
        &self,
        addr: SocketAddr,
        alpn: Alpn,
        attempt: F,
    ) -> Result<T, NetError>
    where
        F: Fn(Connection) -> Fut,
        Fut: Future<Output = Result<T, Stage>>,
    {
        let cached = self.connection(addr, alpn).await?;
        let result = attempt(cached.connection.clone()).await;
        match result {
            Err(Stage::Open(_)) if cached.reused => {
                self.inner.cache.evict((addr, alpn), &cached.connection);
                let cached = self.connection(addr, alpn).await?;
                let result = attempt(cached.connection.clone()).await;
                self.settle(addr, alpn, &cached.connection, result)
            }
            other => self.settle(addr, alpn, &cached.connection, other),
        }
    }

    /// Drops a connection that turned out dead, and flattens the result.
    fn settle<T>(
        &self,
        addr: SocketAddr,
        alpn: Alpn,
        connection: &Connection,
        result: Result<T, Stage>,
    ) -> Result<T, NetError> {
        if connection.close_reason().is_some() {
            self.inner.cache.evict((addr, alpn), connection);
        }
        result.map_err(Stage::into_error)
    }

    async fn exchange_on(
        &self,
        connection: Connection,
        key: Key,
        kind: RequestKind,
        payload: &[u8],
    ) -> Result<(ReplyKind, Vec<u8>), Stage> {
        let max = self.inner.config.frame_bytes_max;
        let call = async {
            let (mut send, mut recv) = connection
                .open_bi()
                .await
                .map_err(|e| Stage::Open(connection_error(e)))?;
            // A remote acknowledges the request within a round trip, however long its
            // answer takes, so the silence rule holds for calls as for one-way sends.
            self.inner.cache.sent(key, &connection, Instant::now());
            request(&mut send, &mut recv, kind, payload, max)
                .await
                .map_err(Stage::After)
        };
        match timeout(self.inner.config.call_timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(Stage::After(NetError::Timeout)),
        }
    }

    /// The cached connection for (`addr`, `alpn`), dialled if needed.
    async fn connection(&self, addr: SocketAddr, alpn: Alpn) -> Result<Cached, NetError> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(NetError::Closed);
        }
        let config = &self.inner.config;
        let cached = self
            .inner
            .cache
            .get(
                (addr, alpn),
                |failures| config.backoff(failures),
                || self.dial(addr, alpn),
            )
            .await?;
        Ok(cached)
    }

    /// Connects and proves the connection with a ping, within `connect_timeout`.
    async fn dial(&self, addr: SocketAddr, alpn: Alpn) -> Result<Connection, NetError> {
        let client = match alpn {
            Alpn::Peer => self.inner.peer_client.clone(),
            Alpn::Client => self.inner.client_client.clone(),
        };
        let connecting = self
            .inner
            .quic
            .connect_with(client, addr, NODE_SERVER_NAME)
            .map_err(connect_error)?;
        let max = self.inner.config.frame_bytes_max;
        let attempt = async {
            let connection = connecting.await.map_err(connection_error)?;
            if let Err(error) = prove(&connection, max).await {
                connection.close(CLOSE_SHUTDOWN, b"ping failed");
                return Err(error);
            }
            Ok(connection)
        };
        let limit = self.inner.config.connect_timeout;
        let result = timeout(limit, attempt).await;
        let connected = result
            .map_err(|_| NetError::Connect(format!("no connection to {addr} within {limit:?}")))?;
        match &connected {
            Ok(_) => debug!(%addr, ?alpn, "connected"),
            Err(error) => debug!(%addr, ?alpn, %error, "connection attempt failed"),
        }
        connected
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("local_addr", &self.inner.quic.local_addr().ok())
            .field("serves", &self.inner.serves)
            .field("connections", &self.connection_count())
            .finish_non_exhaustive()
    }
}

/// Where an exchange failed: before anything was sent, or after.
enum Stage {
    Open(NetError),
    After(NetError),
}

impl Stage {
    fn into_error(self) -> NetError {
        match self {
            Stage::Open(error) | Stage::After(error) => error,
        }
    }
}

/// Writes one request frame and reads the reply frame. An error frame becomes
/// [`NetError::Remote`]. If the write fails (the server stopped reading a request it
/// refused), the reply is still read: it says why.
async fn request(
    send: &mut quinn::SendStream,
    recv: &mut quinn::RecvStream,
    kind: RequestKind,
    payload: &[u8],
    max: usize,
) -> Result<(ReplyKind, Vec<u8>), NetError> {
    let written = stream::write_frame(send, kind.into(), payload, max).await;
    let reply = stream::read_frame(recv, max).await;
    let (kind, payload) = match (written, reply) {
        (_, Ok(reply)) => reply,
        (Err(error), Err(_)) | (Ok(()), Err(ReadFailure::Stream(error))) => return Err(error),
        (Ok(()), Err(ReadFailure::Frame(error))) => return Err(error.into()),
    };
    match ReplyKind::try_from(kind)? {
        ReplyKind::Error => Err(NetError::Remote(
            String::from_utf8_lossy(&payload).into_owned(),
        )),
        kind => Ok((kind, payload)),
    }
}

/// Closes a connection whose remote has stopped answering (`NetConfig::stall_timeout`).
fn give_up(connection: &Connection) {
    let remote = connection.remote_address();
    debug!(%remote, "connection stalled; closed");
    connection.close(CLOSE_STALLED, b"stalled");
}

/// The first exchange on a new connection: a ping whose pong proves the server accepted
/// our certificate (and, on the peer ALPN, that it is a node certificate).
async fn prove(connection: &Connection, max: usize) -> Result<(), NetError> {
    let (mut send, mut recv) = connection.open_bi().await.map_err(connection_error)?;
    match request(&mut send, &mut recv, RequestKind::Ping, &[], max).await? {
        (ReplyKind::Pong, _) => Ok(()),
        (other, _) => Err(NetError::Handshake(format!(
            "the remote answered a ping with {other:?}"
        ))),
    }
}

fn connect_error(error: ConnectError) -> NetError {
    match error {
        ConnectError::EndpointStopping => NetError::Closed,
        other => NetError::Connect(other.to_string()),
    }
}

/// A serving endpoint's QUIC settings that outlive the process: the key of its stateless
/// resets and the key its connection ids are signed with, both derived from its private
/// key. A node restarted on the same address with the same certificate then recognises
/// the connection ids of the process before it and answers their packets with a reset
/// its peers can verify, so they drop the old connection and dial again at their first
/// packet. With quinn's random keys the new process dropped those packets as foreign and
/// the peers kept sending into the old connection until its idle timeout: ~10 s in which
/// a restarted node heard nothing from them (its sync after a lost disk took 10.5–11 s
/// every time in the nemesis runs). The keys are one-way hashes of the private key, so
/// they reveal nothing of it, and only its holder can forge a reset.
fn restartable(identity: &Identity) -> EndpointConfig {
    let reset = derive(identity, b"stateless reset");
    let mut config = EndpointConfig::new(Arc::new(ring::hmac::Key::new(
        ring::hmac::HMAC_SHA256,
        &reset,
    )));
    let ids = derive(identity, b"connection ids");
    let mut id_key = [0u8; 8];
    id_key.copy_from_slice(&ids[..8]);
    let id_key = u64::from_le_bytes(id_key);
    config.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(id_key))
    });
    config.min_reset_interval(MIN_RESET_INTERVAL);
    config
}

/// Least time between two stateless resets: none. quinn's default, 20 ms, answers one
/// stale packet and drops the rest until it has passed, which a node restarted under load
/// always meets: every peer's and client's old connection sends at once. The dropped
/// ones wait for their next retransmission, each later than the last; after a partition
/// had grown a peer's backoff, a wiped node in the nemesis runs heard nothing from that
/// peer and synced only after 17.6–32.6 s. The limit guards against resets sent for other services' packets;
/// here a reset answers only a packet whose connection id this key signed (a forged one
/// passes with odds of 2^-40) and is smaller than that packet, so it amplifies nothing.
const MIN_RESET_INTERVAL: Duration = Duration::ZERO;

/// SHA-256 of a label and the identity's private key.
fn derive(identity: &Identity, label: &[u8]) -> [u8; 32] {
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    digest.update(b"cairn endpoint key v1\0");
    digest.update(label);
    digest.update(b"\0");
    digest.update(identity.key.secret_der());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.finish().as_ref());
    out
}
