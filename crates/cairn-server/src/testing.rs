//! A single node in this process, for doc-tests and examples that need a real server:
//! real redb file, real QUIC with certificates, the HTTP API, on loopback ports.

use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cairn_net::cert::{write_private, write_public, Ca};
use tokio::sync::oneshot;

use crate::config::RawConfig;

/// A running node; dropping it shuts it down gracefully and removes its data.
#[derive(Debug)]
pub struct LocalNode {
    dir: PathBuf,
    quic: SocketAddr,
    http: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn free_port() -> std::io::Result<u16> {
    loop {
        let port = UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
}

fn io(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl LocalNode {
    /// Starts a one-node cluster in a fresh temporary directory and waits until it serves.
    pub fn start() -> std::io::Result<LocalNode> {
        let dir = std::env::temp_dir().join(format!(
            "cairn-local-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let quic = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let http = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let raw = RawConfig {
            data: Some(dir.clone()),
            listen: Some(quic.to_string()),
            http: Some(http.to_string()),
            ..RawConfig::default()
        };
        let config = raw.validate().map_err(io)?;
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("cairn-local-node".into())
            .spawn(move || {
                let Ok(runtime) = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                else {
                    return;
                };
                let shutdown = async {
                    let _ = stopped.await;
                };
                if let Err(e) = runtime.block_on(crate::run(config, shutdown)) {
                    eprintln!("local node failed: {e}");
                }
            })?;
        let node = LocalNode {
            dir,
            quic,
            http,
            stop: Some(stop),
            thread: Some(thread),
        };
        node.wait_serving()?;
        node.issue_client_cert()?;
        Ok(node)
    }

    /// Waits until the node answers requests. Its HTTP port opens before its first
    /// metadata write is durable, and until then it refuses every request as "the node is
    /// starting" (503); a slow first fsync made an SDK doctest fail that way. So a read of
    /// a key must get any other answer (404 here).
    fn wait_serving(&self) -> std::io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.answers_requests() {
            if Instant::now() > deadline {
                return Err(io("the local node did not start in 30 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Whether a read over HTTP gets an answer other than 503.
    fn answers_requests(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut stream) = TcpStream::connect(self.http) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let request =
            "GET /v1/buckets/probe/keys/probe HTTP/1.1\r\nHost: local\r\nConnection: close\r\n\r\n";
        let mut status = [0u8; 12];
        stream.write_all(request.as_bytes()).is_ok()
            && stream.read_exact(&mut status).is_ok()
            && status.starts_with(b"HTTP/1.1 ")
            && !status.ends_with(b"503")
    }

    fn issue_client_cert(&self) -> std::io::Result<()> {
        let tls = self.dir.join("tls");
        let read = |f: &str| std::fs::read_to_string(tls.join(f));
        let ca = Ca::from_pem(&read("ca.pem")?, &read("ca-key.pem")?).map_err(io)?;
        let issued = ca.issue_client("local-client").map_err(io)?;
        write_public(&self.client_cert(), &issued.cert_pem, true)?;
        write_private(&self.client_key(), &issued.key_pem, true)
    }

    /// The node's QUIC address (for the SDK).
    pub fn quic(&self) -> SocketAddr {
        self.quic
    }

    /// The node's HTTP URL.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.http)
    }

    /// The development CA's certificate.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("tls").join("ca.pem")
    }

    /// A client certificate signed by that CA.
    pub fn client_cert(&self) -> PathBuf {
        self.dir.join("tls").join("client.pem")
    }

    /// Its key.
    pub fn client_key(&self) -> PathBuf {
        self.dir.join("tls").join("client-key.pem")
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for LocalNode {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
