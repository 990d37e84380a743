//! Cairn's transport: QUIC ([quinn]) with mutual TLS ([rustls] on *ring*), one request
//! and one reply per bidirectional stream (or one request and no reply per
//! unidirectional stream, peers only: [`Endpoint::tell`]), and a cache of long-lived
//! connections.
//!
//! Every node runs one [`Endpoint`]: it serves requests from peers and clients
//! ([`Endpoint::serve`] with a [`Handler`]) and calls other nodes ([`Endpoint::call`]) from
//! the same UDP socket. The SDK and the CLI use a client-only endpoint
//! ([`Endpoint::client`]). The payloads are opaque bytes here; `cairn-proto` gives them
//! meaning.
//!
//! ```
//! use std::sync::Arc;
//! use cairn_net::{cert::Ca, Alpn, Endpoint, Handler, Identity, NetConfig};
//!
//! struct Echo;
//! impl Handler for Echo {
//!     async fn handle(&self, _: Alpn, _: std::net::SocketAddr, request: Vec<u8>) -> Result<Vec<u8>, String> {
//!         Ok(request)
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let ca = Ca::generate("example cluster")?;
//! let node = ca.issue_node("node-1", &[])?;
//! let node = Identity::from_pem(&ca.cert_pem(), &node.cert_pem, &node.key_pem)?;
//! let server = Endpoint::bind("127.0.0.1:0".parse()?, &node, NetConfig::default())?;
//! let serving = tokio::spawn({
//!     let server = server.clone();
//!     async move { server.serve(Arc::new(Echo)).await }
//! });
//!
//! let alice = ca.issue_client("alice")?;
//! let alice = Identity::from_pem(&ca.cert_pem(), &alice.cert_pem, &alice.key_pem)?;
//! let client = Endpoint::client(&alice, NetConfig::default())?;
//! let reply = client.call(server.local_addr()?, Alpn::Client, b"hello").await?;
//! assert_eq!(reply, b"hello");
//!
//! client.close().await;
//! server.close().await;
//! serving.await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Frames
//!
//! A request is one frame written on a fresh bidirectional stream, which the caller then
//! finishes; the reply is one frame on the same stream, which the server then finishes:
//!
//! ```text
//! [u32 big-endian payload length][u8 PROTOCOL_VERSION][u8 kind][payload]
//! ```
//!
//! The length counts the payload only. Request kinds: 0 request, 1 ping. Reply kinds: 0 ok,
//! 1 pong, 2 error (payload: a UTF-8 message). A reader takes exactly the six header
//! bytes, refuses another version (naming both) and a length above `frame_bytes_max`
//! (default [`FRAME_BYTES_MAX`]) before allocating anything, then reads exactly the payload.
//! A bad request frame (version, length, kind, truncation) is answered with an error frame
//! and ends its stream only: the connection and the endpoint keep serving. The codec is
//! the pure [`frame`] module; `proto-docs/framing.md` draws it byte by byte.
//!
//! # Security model
//!
//! Mutual TLS 1.3 against one cluster CA ([`cert::Ca`]); nothing else is trusted (no
//! system roots). Both sides present certificates signed by the CA and both check the
//! other's:
//!
//! - **Node certificates** ([`cert::Ca::issue_node`]) carry the DNS name
//!   [`NODE_SERVER_NAME`] and are valid as TLS server and client. Only they can serve, and
//!   only they may use the peer ALPN ([`ALPN_PEER`]): the server checks the name after the
//!   handshake and closes the connection of anyone else.
//! - **Client certificates** ([`cert::Ca::issue_client`]) are client-only and lack that
//!   name, so they can call nodes on the client ALPN ([`ALPN_CLIENT`]) and nothing more: a
//!   leaked application credential cannot pose as a node to its peers.
//!
//! Every node's certificate carries the same fixed name, and everyone dials with it as the
//! TLS server name. Nodes are found by address (and addresses change: containers, DHCP,
//! NAT), so a per-host name would tie certificates to deployment details without adding
//! safety: what a caller needs to know is "this is a node of my cluster", which the CA
//! signature plus the node name says. Telling nodes apart is the application's job (node
//! ids in the protocol), not the transport's. The certificates may carry each host's
//! names and addresses too, for tools that check them.
//!
//! With TLS 1.3 the client finishes its handshake before the server has checked the
//! client's certificate, so a refusal would surface only on first use. The endpoint
//! therefore sends a ping on every new connection before using it, and a refusal comes
//! back from the call as [`NetError::Refused`] (the remote refused us) or
//! [`NetError::Handshake`] (we refused the remote). 0-RTT is off: requests change state
//! and 0-RTT data can be replayed.
//!
//! Only the *ring* provider is used, chosen explicitly per configuration (no process-wide
//! default is installed, no aws-lc-rs).

mod cache;
pub mod cert;
mod config;
mod endpoint;
mod error;
pub mod frame;
mod identity;
mod serve;
mod stream;
mod tls;
mod traffic;

pub use config::NetConfig;
pub use endpoint::Endpoint;
pub use error::NetError;
pub use identity::Identity;
pub use serve::Handler;
pub use traffic::Datagrams;

/// The protocol version byte in every frame. A frame of another version is refused.
pub const PROTOCOL_VERSION: u8 = 1;
/// Default limit on a frame's payload (64 MiB). A frame declaring more is answered with an
/// error frame and its stream is reset; the connection stays up.
pub const FRAME_BYTES_MAX: usize = 64 << 20;
/// ALPN identifier of node-to-node traffic. Needs a node certificate.
/// Version 2: peer batches travel one-way on unidirectional streams, which version 1
/// nodes refuse, so the two do not connect. Version 3: replica sync (the anti-entropy
/// fetch says whether the exchange was complete, and a replica may refuse a read as
/// syncing), which version 2 nodes cannot decode.
pub const ALPN_PEER: &[u8] = b"cairn-peer/4";
/// ALPN identifier of client (SDK, CLI) traffic. Any certificate of the CA will do.
pub const ALPN_CLIENT: &[u8] = b"cairn-client/1";
/// The DNS name in every node certificate; peers and clients dial every node with it as the
/// TLS server name (see the crate docs for why one fixed name).
pub const NODE_SERVER_NAME: &str = "cairn-node";

/// Which protocol a connection speaks, negotiated by TLS ALPN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Alpn {
    /// Node to node ([`ALPN_PEER`]).
    Peer,
    /// Client to node ([`ALPN_CLIENT`]).
    Client,
}

impl Alpn {
    /// The ALPN identifier on the wire.
    pub fn id(self) -> &'static [u8] {
        match self {
            Alpn::Peer => ALPN_PEER,
            Alpn::Client => ALPN_CLIENT,
        }
    }

    /// The protocol of a wire identifier, if it is one of ours.
    pub fn from_id(id: &[u8]) -> Option<Alpn> {
        [Alpn::Peer, Alpn::Client]
            .into_iter()
            .find(|alpn| alpn.id() == id)
    }
}
