//! The `cairn server` processes, one per namespace: start, join, commit, kill, pause,
//! restart.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::net::Net;

const PATIENCE: Duration = Duration::from_secs(60);

struct Node {
    ns: String,
    addr: std::net::Ipv4Addr,
    data: PathBuf,
    child: Option<Child>,
}

/// The cluster under test.
pub(crate) struct Cluster {
    cairn: PathBuf,
    dir: PathBuf,
    nodes: Vec<Node>,
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A tiny HTTP/1.1 exchange with a node (from the root namespace, over the bridge).
fn http(addr: SocketAddr, method: &str, path: &str) -> Result<(u16, String), String> {
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut text = String::new();
    s.read_to_string(&mut text).map_err(|e| e.to_string())?;
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    Ok((status, body))
}

fn cluster_json(addr: SocketAddr) -> Option<serde_json::Value> {
    let (status, body) = http(addr, "GET", "/v1/cluster").ok()?;
    (status == 200)
        .then(|| serde_json::from_str(&body).ok())
        .flatten()
}

fn wait(what: &str, mut ok: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + PATIENCE;
    while !ok() {
        if Instant::now() > deadline {
            return Err(format!("never happened: {what}"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

impl Cluster {
    /// Makes certificates, starts every node in its namespace, joins and commits.
    pub(crate) fn start(cairn: &Path, net: &Net, out: &Path) -> Result<Cluster, String> {
        let dir = out.join("cluster");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        run(Command::new(cairn)
            .args(["cert", "ca", "--out"])
            .arg(dir.join("ca")))?;
        run(Command::new(cairn)
            .args(["cert", "client", "--name", "client", "--ca-dir"])
            .arg(dir.join("ca"))
            .arg("--out")
            .arg(dir.join("client")))?;
        let mut cluster = Cluster {
            cairn: cairn.to_owned(),
            dir: dir.clone(),
            nodes: Vec::new(),
        };
        for i in 0..net.nodes {
            let data = dir.join(format!("n{i}"));
            let host = net.addr(i).to_string();
            run(Command::new(cairn)
                .args([
                    "cert", "node", "--name", "node", "--host", &host, "--ca-dir",
                ])
                .arg(dir.join("ca"))
                .arg("--out")
                .arg(&data))?;
            cluster.nodes.push(Node {
                ns: net.ns(i),
                addr: net.addr(i),
                data,
                child: None,
            });
            cluster.spawn(i, None)?;
            cluster.wait_healthy(i)?;
        }
        let first = cluster.http(0);
        let n = net.nodes;
        wait("every node staged", || {
            cluster_json(first).is_some_and(|s| s["staged"].as_array().map_or(0, Vec::len) == n)
        })?;
        let (status, body) = http(first, "POST", "/v1/cluster/commit")?;
        if status != 200 {
            return Err(format!("commit: {status} {body}"));
        }
        for i in 0..n {
            let addr = cluster.http(i);
            wait("every node knows the layout and has synced", || {
                cluster_json(addr).is_some_and(|s| {
                    s["nodes"].as_array().map_or(0, Vec::len) == n
                        && s["staged"].as_array().is_some_and(Vec::is_empty)
                        && s["syncing"].as_array().is_some_and(Vec::is_empty)
                })
            })?;
        }
        Ok(cluster)
    }

    fn http(&self, i: usize) -> SocketAddr {
        SocketAddr::from((self.nodes[i].addr, 8000))
    }

    /// Node `i`'s QUIC address.
    pub(crate) fn quic(&self, i: usize) -> SocketAddr {
        SocketAddr::from((self.nodes[i].addr, 7000))
    }

    /// The nodes node `i` routes around now (`up: false` in its cluster status), by index;
    /// an error if it does not answer.
    pub(crate) fn routed_around(&self, i: usize) -> Result<Vec<usize>, String> {
        let status = cluster_json(self.http(i)).ok_or("no cluster status")?;
        let nodes = status["nodes"]
            .as_array()
            .ok_or("a cluster status without nodes")?;
        Ok(nodes
            .iter()
            .filter(|n| n["up"] == false)
            .filter_map(|n| {
                let addr = n["addr"].as_str()?;
                (0..self.nodes.len()).find(|&j| self.quic(j).to_string() == addr)
            })
            .collect())
    }

    pub(crate) fn ca(&self) -> PathBuf {
        self.dir.join("ca").join("ca.pem")
    }

    pub(crate) fn client_cert(&self) -> PathBuf {
        self.dir.join("client").join("client.pem")
    }

    pub(crate) fn client_key(&self) -> PathBuf {
        self.dir.join("client").join("client-key.pem")
    }

    fn spawn(&mut self, i: usize, clock_offset_ms: Option<i64>) -> Result<(), String> {
        let first = self.quic(0).to_string();
        let node = &self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.data.join("server.log"))
            .map_err(|e| e.to_string())?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let (quic, http) = (format!("{}:7000", node.addr), format!("{}:8000", node.addr));
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &node.ns])
            .arg(&self.cairn)
            .args([
                "server",
                "--name",
                &format!("n{i}"),
                "--listen",
                &quic,
                "--http",
                &http,
            ])
            .args(["--replication", "3", "--data"])
            .arg(&node.data)
            .arg("--tls-ca")
            .arg(self.ca())
            .arg("--tls-cert")
            .arg(node.data.join("node.pem"))
            .arg("--tls-key")
            .arg(node.data.join("node-key.pem"))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err);
        if i > 0 {
            cmd.args(["--join", &first]);
        }
        if let Some(ms) = clock_offset_ms {
            cmd.arg(format!("--clock-offset-ms={ms}"));
        }
        let child = cmd.spawn().map_err(|e| format!("node {i}: {e}"))?;
        self.nodes[i].child = Some(child);
        Ok(())
    }

    fn wait_healthy(&self, i: usize) -> Result<(), String> {
        let addr = self.http(i);
        wait(&format!("node {i} serves"), || {
            http(addr, "GET", "/health").is_ok_and(|(s, _)| s == 200)
        })
    }

    /// SIGKILL.
    pub(crate) fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kills node `i`, deletes its store (the redb file and its write-ahead log) and
    /// starts it again: a replaced disk under a node that keeps its name.
    pub(crate) fn wipe(&mut self, i: usize) -> Result<(), String> {
        self.kill(i);
        // The server's `StateDir::store_files`, named here: the harness drives the
        // server as a black box and does not link it (tests/it/architecture.rs).
        for name in ["cairn.redb", "cairn.redb.wal"] {
            let file = self.nodes[i].data.join(name);
            match std::fs::remove_file(&file) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("deleting {}: {e}", file.display())),
            }
        }
        self.spawn(i, None)?;
        self.wait_healthy(i)
    }

    /// Sends `signal` (`-STOP`, `-CONT`, `-TERM`) to node `i`.
    pub(crate) fn signal(&self, i: usize, signal: &str) -> Result<(), String> {
        let pid = self.nodes[i]
            .child
            .as_ref()
            .map(Child::id)
            .ok_or("node not running")?;
        run(Command::new("kill").args([signal, &pid.to_string()]))
    }

    /// Stops node `i` (if running) with SIGTERM and starts it again.
    pub(crate) fn restart(&mut self, i: usize, clock_offset_ms: Option<i64>) -> Result<(), String> {
        self.terminate(i);
        self.spawn(i, clock_offset_ms)?;
        self.wait_healthy(i)
    }

    fn terminate(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops every node (SIGCONT first, in case one is paused).
    pub(crate) fn stop_all(&mut self) {
        for i in 0..self.nodes.len() {
            let _ = self.signal(i, "-CONT");
            self.terminate(i);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // A run that failed half-way must not leave servers behind.
        self.stop_all();
    }
}
