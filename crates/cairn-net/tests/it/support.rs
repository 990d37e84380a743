//! Shared helpers: certificates, an echo handler, a served endpoint.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cairn_net::cert::Ca;
use cairn_net::{Alpn, Endpoint, Handler, Identity, NetConfig};
use tokio::task::JoinHandle;

/// Longest any test may run before it is declared hung.
pub const HANG: Duration = Duration::from_secs(60);

/// Runs a test body, failing instead of hanging.
pub async fn bounded<T>(body: impl Future<Output = T>) -> T {
    tokio::time::timeout(HANG, body).await.expect("test hung")
}

pub fn node(ca: &Ca, name: &str) -> Identity {
    let issued = ca.issue_node(name, &["127.0.0.1".to_string()]).unwrap();
    Identity::from_pem(&ca.cert_pem(), &issued.cert_pem, &issued.key_pem).unwrap()
}

pub fn client(ca: &Ca, name: &str) -> Identity {
    let issued = ca.issue_client(name).unwrap();
    Identity::from_pem(&ca.cert_pem(), &issued.cert_pem, &issued.key_pem).unwrap()
}

pub fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Replies with the ALPN it saw (`P` or `C`) followed by the request; `fail` is answered
/// with an error, and `panic` panics. Counts its calls.
#[derive(Default)]
pub struct Echo {
    pub calls: AtomicUsize,
}

impl Echo {
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Handler for Echo {
    async fn handle(
        &self,
        alpn: Alpn,
        _peer: SocketAddr,
        request: Vec<u8>,
    ) -> Result<Vec<u8>, String> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if request == b"fail" {
            return Err("asked to fail".to_string());
        }
        if request == b"panic" {
            // Yield first, so the panic comes from a later poll, not the first.
            tokio::task::yield_now().await;
            panic!("asked to panic");
        }
        let tag = match alpn {
            Alpn::Peer => b'P',
            Alpn::Client => b'C',
        };
        Ok([&[tag][..], &request].concat())
    }
}

/// An endpoint serving a handler in a background task.
pub struct Server<H> {
    pub endpoint: Endpoint,
    pub addr: SocketAddr,
    pub handler: Arc<H>,
    task: JoinHandle<()>,
}

impl<H: Handler> Server<H> {
    pub fn start(
        addr: SocketAddr,
        identity: &Identity,
        config: NetConfig,
        handler: H,
    ) -> Server<H> {
        let endpoint = Endpoint::bind(addr, identity, config).unwrap();
        let addr = endpoint.local_addr().unwrap();
        let handler = Arc::new(handler);
        let task = tokio::spawn({
            let endpoint = endpoint.clone();
            let handler = Arc::clone(&handler);
            async move { endpoint.serve(handler).await }
        });
        Server {
            endpoint,
            addr,
            handler,
            task,
        }
    }

    /// Closes the endpoint and waits for the serve loop to end.
    pub async fn stop(self) {
        self.endpoint.close().await;
        self.task.await.unwrap();
    }
}

pub fn echo_server(identity: &Identity) -> Server<Echo> {
    Server::start(localhost(), identity, NetConfig::default(), Echo::default())
}
