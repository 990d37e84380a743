//! Real `cairn server` processes on loopback: replication across nodes, a node killed
//! with SIGKILL and restarted, hints handed back, a peer from another CA refused, garbage
//! on both ports, and a clean SIGTERM.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

#[path = "../../src/http_client.rs"]
#[allow(dead_code, unreachable_pub)]
mod http_client;

/// Generous bound on anything the cluster must do eventually; never a timing assertion.
const PATIENCE: Duration = Duration::from_secs(60);

pub(crate) fn cairn() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
}

pub(crate) fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cairn-it-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A free loopback port (UDP and TCP are checked by binding both).
pub(crate) fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

pub(crate) fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Makes a CA in `dir` and returns it.
pub(crate) fn make_ca(dir: &Path) {
    run_ok(cairn().args(["cert", "ca", "--out"]).arg(dir));
}

pub(crate) struct Server {
    pub(crate) name: String,
    pub(crate) data: PathBuf,
    pub(crate) quic: SocketAddr,
    pub(crate) http: String,
    pub(crate) ca: PathBuf,
    pub(crate) extra: Vec<String>,
    pub(crate) child: Option<Child>,
}

impl Server {
    pub(crate) fn new(root: &Path, ca_dir: &Path, name: &str, extra: &[&str]) -> Server {
        let data = root.join(name);
        std::fs::create_dir_all(&data).unwrap();
        run_ok(
            cairn()
                .args([
                    "cert",
                    "node",
                    "--name",
                    name,
                    "--host",
                    "127.0.0.1",
                    "--ca-dir",
                ])
                .arg(ca_dir)
                .arg("--out")
                .arg(&data),
        );
        Server {
            name: name.to_owned(),
            quic: SocketAddr::from(([127, 0, 0, 1], free_port())),
            http: format!("http://127.0.0.1:{}", free_port()),
            data,
            ca: ca_dir.join("ca.pem"),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        }
    }

    pub(crate) fn log(&self) -> PathBuf {
        self.data.join("server.log")
    }

    pub(crate) fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .unwrap();
        let child = cairn()
            .arg("server")
            .args(["--name", &self.name, "--listen", &self.quic.to_string()])
            .args(["--http", self.http.trim_start_matches("http://")])
            .arg("--data")
            .arg(&self.data)
            .arg("--tls-ca")
            .arg(&self.ca)
            .arg("--tls-cert")
            .arg(self.data.join(format!("{}.pem", self.name)))
            .arg("--tls-key")
            .arg(self.data.join(format!("{}-key.pem", self.name)))
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.wait_healthy();
    }

    fn wait_healthy(&mut self) {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if let Ok(r) = http_client::request(&self.http, "GET", "/health", None) {
                if r.status == 200 {
                    return;
                }
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("{} exited ({status}):\n{}", self.name, self.log_text());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{} never became healthy:\n{}", self.name, self.log_text());
    }

    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
    }

    pub(crate) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM, then the exit status.
    pub(crate) fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        let ok = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = c.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "{} ignored SIGTERM", self.name);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> http_client::Response {
        http_client::request(&self.http, method, path, body).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

pub(crate) fn incr(node: &Server, key: &str, query: &str) -> http_client::Response {
    node.call(
        "POST",
        &format!("/v1/buckets/likes/keys/{key}{query}"),
        Some(&json!({"type": "counter", "op": {"increment": 1}})),
    )
}

pub(crate) fn read(node: &Server, key: &str, query: &str) -> http_client::Response {
    node.call("GET", &format!("/v1/buckets/likes/keys/{key}{query}"), None)
}

/// Increments until one is acknowledged; returns how many were sent. A failed attempt
/// is indeterminate (it may still be applied), so a counter ends between the
/// acknowledged increments and the attempts.
fn incr_until_acked(node: &Server, key: &str, query: &str) -> u64 {
    let mut tries = 0;
    eventually("an increment is acknowledged", || {
        tries += 1;
        (incr(node, key, query).status == 200).then_some(())
    });
    tries
}

/// Increments twenty keys `{prefix}0..` once each through `node`, retrying until
/// acknowledged: each key with how many tries it took.
fn incr_keys_until_acked(node: &Server, prefix: &str, query: &str) -> Vec<(String, u64)> {
    (0..20)
        .map(|i| {
            let key = format!("{prefix}{i}");
            let tries = incr_until_acked(node, &key, query);
            (key, tries)
        })
        .collect()
}

fn assert_within(body: &Value, acked: u64, tries: u64) {
    let v = body["value"].as_u64().unwrap_or(u64::MAX);
    assert!(
        (acked..=tries).contains(&v),
        "{body}: expected {acked}..={tries}"
    );
}

/// Retries `f` until it returns `Some`, or panics with `what`.
pub(crate) fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Whether `observer`'s cluster status shows `node` up (the view it routes by).
fn shows_up(observer: &Server, node: &Server) -> Option<bool> {
    let status = observer.call("GET", "/v1/cluster", None).body;
    let addr = node.quic.to_string();
    let entry = status["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["addr"] == addr.as_str())?;
    entry["up"].as_bool()
}

pub(crate) fn hints(node: &Server) -> u64 {
    node.call("GET", "/v1/cluster", None).body["hints"]
        .as_u64()
        .unwrap_or(u64::MAX)
}

/// Three nodes, two replicas per key (so every key has a fallback that can keep hints).
pub(crate) fn three_nodes(root: &Path) -> Vec<Server> {
    cluster_of(root, 3, &["--replication", "2", "--durability", "fsync"])
}

/// `count` nodes (2 or more), the first started with `first` (the layout's settings),
/// the others joining it; returned once the layout is committed and every node synced.
fn cluster_of(root: &Path, count: usize, first: &[&str]) -> Vec<Server> {
    let ca = root.join("ca");
    make_ca(&ca);
    let mut first = Server::new(root, &ca, "n1", first);
    first.start();
    let join = first.quic.to_string();
    let mut nodes = vec![first];
    for i in 2..=count {
        let mut s = Server::new(root, &ca, &format!("n{i}"), &["--join", &join]);
        s.start();
        nodes.push(s);
    }
    // The first node could not commit alone (two replicas need two nodes): all are
    // staged once every joiner is.
    eventually("every node staged", || {
        let s = nodes[0].call("GET", "/v1/cluster", None).body;
        (s["staged"].as_array()?.len() == count).then_some(())
    });
    let commit = nodes[0].call("POST", "/v1/cluster/commit", None);
    assert_eq!(commit.status, 200, "{}", commit.body);
    // Every node learns the committed layout through gossip, and syncs its new store
    // with the other replicas (reads count once it has).
    for n in &nodes {
        eventually("layout gossiped and synced", || {
            let s = n.call("GET", "/v1/cluster", None).body;
            (s["nodes"].as_array()?.len() == count
                && s["staged"].as_array()?.is_empty()
                && s["syncing"].as_array()?.is_empty())
            .then_some(())
        });
    }
    nodes
}

#[test]
fn a_cluster_of_processes_replicates_survives_a_kill_and_converges() {
    let root = temp_dir("cluster");
    let mut nodes = three_nodes(&root);

    // Written through one node, read through another.
    let mut tries = 0;
    for _ in 0..5 {
        tries += incr_until_acked(&nodes[0], "post1", "");
    }
    let r = read(&nodes[1], "post1", "");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_within(&r.body, 5, tries);

    // One node killed. Before any request to it could time out, gossip alone shows it
    // down in another node's status (which used to show only request timeouts, and
    // said `up` here).
    nodes[2].kill();
    eventually("node 1 shows the killed node down", || {
        (shows_up(&nodes[1], &nodes[2]) == Some(false)).then_some(())
    });
    // Writes with w=2 still succeed (a fallback keeps a hint).
    let keys = incr_keys_until_acked(&nodes[0], "k", "?w=2");
    for (key, tries) in &keys {
        // Until the second node also sees the killed one down it may forward there and
        // time out (a 5xx a client retries); every answer it gives is right.
        let r = eventually("a read with a node down", || {
            let r = read(&nodes[1], key, "?r=2");
            (r.status < 500).then_some(r)
        });
        assert_eq!(r.status, 200, "{key}: {}", r.body);
        assert_within(&r.body, 1, *tries);
    }
    let kept: u64 = hints(&nodes[0]) + hints(&nodes[1]);
    assert!(
        kept > 0,
        "some of 20 keys have the killed node as a primary, so hints are kept"
    );

    // Restarted: it shows up again, its hints come home and every replica agrees.
    nodes[2].start();
    eventually("node 1 shows the restarted node up", || {
        (shows_up(&nodes[1], &nodes[2]) == Some(true)).then_some(())
    });
    eventually("hints handed back", || {
        (hints(&nodes[0]) + hints(&nodes[1]) == 0).then_some(())
    });
    for (key, _) in &keys {
        let values: Vec<Value> = nodes
            .iter()
            .map(|n| read(n, key, "?r=all").body["value"].clone())
            .collect();
        assert!(values[0].is_i64(), "{key}: {values:?}");
        assert!(values.iter().all(|v| *v == values[0]), "{key}: {values:?}");
    }

    // What an operator sees: metrics, and per-node status.
    let metrics = nodes[0].call("GET", "/metrics", None);
    let text = metrics.body.as_str().unwrap_or_default().to_owned();
    for needle in [
        "cairn_requests_total{op=\"update\",type=\"counter\",outcome=\"ok\"}",
        "cairn_request_duration_seconds_bucket{op=\"read\"",
        "cairn_store_batches_total",
        "cairn_store_commit_duration_seconds_bucket{le=\"0.001\"}",
        "cairn_aae_exchanges_total",
        "cairn_quic_connections",
        "cairn_hints_for{node=",
        "cairn_store_unapplied_writes",
        "cairn_store_unapplied_bytes",
    ] {
        assert!(
            text.contains(needle),
            "{needle} missing from /metrics:\n{text}"
        );
    }
    // The counters written above were staged here too: their decoded values are kept.
    let warm = text
        .lines()
        .find_map(|l| l.strip_prefix("cairn_store_warm_values "))
        .and_then(|v| v.parse::<f64>().ok());
    assert!(warm.is_some_and(|n| n > 0.0), "warm values {warm:?}");
    // Node 0 replicated those writes to its peers: one batch frame carries one or more.
    let (messages, batches) = (
        metric_sum(&nodes[0], "cairn_peer_messages_sent_total"),
        metric_sum(&nodes[0], "cairn_peer_batches_sent_total"),
    );
    assert!(
        batches > 0.0 && messages >= batches,
        "peer messages {messages}, batches {batches}"
    );
    let status = nodes[0].call("GET", "/v1/cluster", None).body;
    let peers_exchanged = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["last_aae_ms_ago"].is_u64())
        .count();
    assert!(
        peers_exchanged >= 1,
        "no anti-entropy exchange recorded: {status}"
    );
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn a_node_restarted_on_an_empty_store_syncs_before_its_reads_count() {
    let root = temp_dir("resync");
    let mut nodes = three_nodes(&root); // Two replicas per key.
    let keys = incr_keys_until_acked(&nodes[0], "kept", "?w=2");
    // Node 1 stops. Node 2's store is lost (a replaced disk; its name, certificates and
    // layout stay), and it comes back as an owner with nothing.
    nodes[1].kill();
    restart_empty(&mut nodes[2]);
    let committed = |s: &Value| s["nodes"].as_array().is_some_and(|n| n.len() == 3);
    let status = eventually("node 2 learns the committed layout", || {
        let s = nodes[2].call("GET", "/v1/cluster", None).body;
        committed(&s).then_some(s)
    });
    // It cannot sync what it shares with node 1 while node 1 is down. Reads of those keys
    // that need a primary's answer (pr = 1) find only node 2's own empty copy: counted,
    // it would read "not found" for acknowledged increments.
    for (key, tries) in &keys {
        let r = read(&nodes[2], key, "?r=1&pr=1");
        assert_ne!(r.status, 404, "{key}: the empty store's copy counted");
        if r.status == 200 {
            assert_within(&r.body, 1, *tries);
        }
    }
    let syncing = status["syncing"].as_array().map_or(0, Vec::len);
    assert!(syncing > 0, "nothing to sync with node 1 down: {status}");
    // Node 1 is back: node 2 syncs, and every read counts and sees the writes.
    nodes[1].start();
    eventually("node 2 synced", || {
        let s = nodes[2].call("GET", "/v1/cluster", None).body;
        (committed(&s) && s["syncing"].as_array()?.is_empty()).then_some(())
    });
    // What an operator reads in its log: why reads were refused, and when they count.
    eventually("the synced node says so in its log", || {
        let log = nodes[2].log_text();
        (log.contains("the store started empty") && log.contains("synced every partition"))
            .then_some(())
    });
    for (key, tries) in &keys {
        let r = eventually("a read through the synced node", || {
            let r = read(&nodes[2], key, "?r=1&pr=1");
            (r.status < 500).then_some(r)
        });
        assert_eq!(r.status, 200, "{key}: {}", r.body);
        assert_within(&r.body, 1, *tries);
    }
    std::fs::remove_dir_all(&root).ok();
}

/// Loses `node`'s store (a replaced disk: its name, certificates and layout stay) and
/// starts it again, an owner with nothing.
fn restart_empty(node: &mut Server) {
    node.kill();
    let state = cairn_server::state::StateDir::open(&node.data).unwrap();
    for file in state.store_files() {
        std::fs::remove_file(file).unwrap();
    }
    node.start();
}

/// Keys of bucket `likes` that all fall in one anti-entropy segment, more of them than one
/// exchange lists (`AAE_KEYS_MAX`, 1,024): only the exchanges' key cursor reaches them
/// all (ARCHITECTURE.md, "Anti-entropy walks the differing keys with a cursor").
fn one_segment_keys() -> Vec<String> {
    (0..)
        .map(|i| format!("s{i}"))
        .filter(|k| cairn_ring::key_hash(b"likes", k.as_bytes()) % 1024 == 0)
        .take(1_024 + 256)
        .collect()
}

#[test]
fn a_node_restored_empty_syncs_more_keys_of_one_segment_than_one_exchange_lists() {
    let root = temp_dir("resync-segment");
    // One partition, both nodes replicate it: every key is on both.
    let flags = [
        "--replication",
        "2",
        "--partitions",
        "1",
        "--durability",
        "fsync",
    ];
    let mut nodes = cluster_of(&root, 2, &flags);
    let keys = one_segment_keys();
    for key in &keys {
        let r = incr(&nodes[0], key, "?w=2");
        assert_eq!(r.status, 200, "{key}: {}", r.body);
    }
    restart_empty(&mut nodes[1]);
    eventually("node 2 synced", || {
        let s = nodes[1].call("GET", "/v1/cluster", None).body;
        s["syncing"].as_array()?.is_empty().then_some(())
    });
    // Node 1 stops: node 2 answers every read alone, from what it synced.
    nodes[0].kill();
    let missing: Vec<&String> = keys
        .iter()
        .filter(|key| {
            let r = read(&nodes[1], key, "?r=1");
            r.status != 200 || r.body["value"] != 1
        })
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} keys not synced, first {:?}",
        missing.len(),
        keys.len(),
        missing.first()
    );
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn a_node_from_another_ca_cannot_join() {
    let root = temp_dir("foreign");
    let ca = root.join("ca");
    make_ca(&ca);
    let mut member = Server::new(&root, &ca, "m1", &[]);
    member.start();
    let other_ca = root.join("other-ca");
    make_ca(&other_ca);
    let mut intruder = Server::new(
        &root,
        &other_ca,
        "x1",
        &["--join", &member.quic.to_string()],
    );
    intruder.extra.push("--join-patience-ms".into());
    intruder.extra.push("2000".into());
    let log = std::fs::File::create(intruder.log()).unwrap();
    let out = cairn()
        .arg("server")
        .args(["--name", "x1", "--listen", &intruder.quic.to_string()])
        .args(["--http", intruder.http.trim_start_matches("http://")])
        .arg("--data")
        .arg(&intruder.data)
        .arg("--tls-ca")
        .arg(&intruder.ca)
        .arg("--tls-cert")
        .arg(intruder.data.join("x1.pem"))
        .arg("--tls-key")
        .arg(intruder.data.join("x1-key.pem"))
        .args(&intruder.extra)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .status()
        .unwrap();
    assert!(!out.success(), "a node with a foreign certificate started");
    assert!(
        intruder.log_text().contains("cannot join"),
        "{}",
        intruder.log_text()
    );
    let s = member.call("GET", "/v1/cluster", None).body;
    assert!(
        s["staged"].as_array().unwrap().is_empty(),
        "the intruder was staged: {s}"
    );
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn garbage_gets_errors_and_sigterm_leaves_a_clean_store() {
    let root = temp_dir("garbage");
    let ca = root.join("ca");
    make_ca(&ca);
    let mut node = Server::new(&root, &ca, "g1", &[]);
    node.start();

    // Garbage datagrams on the QUIC port.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    for size in [1, 7, 1200, 1500, 65_000] {
        let junk: Vec<u8> = (0..size).map(|i| (i * 7 + 3) as u8).collect();
        udp.send_to(&junk, node.quic).unwrap();
    }

    // Garbage and oversized frames from an authenticated peer: error frames, and the
    // connection and the node keep serving.
    garbage_frames(&node);

    // Malformed HTTP: each gets a 4xx with the error shape.
    let long_key = "k".repeat(2000);
    let big = json!({"type": "set", "op": {"add": ["x".repeat(9 << 20)]}});
    let cases: Vec<(&str, String, Option<Value>, u16)> = vec![
        (
            "POST",
            "/v1/buckets/b/keys/k".into(),
            Some(json!("not an object")),
            400,
        ),
        (
            "POST",
            "/v1/buckets/b/keys/k".into(),
            Some(json!({"type": "bogus", "op": {}})),
            400,
        ),
        (
            "POST",
            "/v1/buckets/b/keys/k".into(),
            Some(json!({"type": "counter", "op": {"increment": "x"}})),
            400,
        ),
        (
            "POST",
            format!("/v1/buckets/b/keys/{long_key}"),
            Some(json!({"type": "counter", "op": {"increment": 1}})),
            413,
        ),
        ("POST", "/v1/buckets/b/keys/k".into(), Some(big), 413),
        ("GET", "/v1/buckets/b/keys/%FF%FE".into(), None, 400),
        ("GET", "/v1/buckets/b/keys/k?r=lots".into(), None, 400),
        (
            "POST",
            "/v1/buckets/b/keys/k?ack_only=maybe".into(),
            Some(json!({"type": "counter", "op": {"increment": 1}})),
            400,
        ),
        (
            "GET",
            "/v1/buckets/b/keys/k?ack_only=true".into(),
            None,
            400,
        ),
        ("GET", "/v1/buckets/b/keys/missing".into(), None, 404),
        ("GET", "/no/such/endpoint".into(), None, 404),
    ];
    for (method, path, body, want) in cases {
        let r = node.call(method, &path, body.as_ref());
        assert_eq!(
            r.status,
            want,
            "{method} {}: {}",
            &path[..path.len().min(60)],
            r.body
        );
        assert!(r.body["error"]["code"].is_string(), "{}", r.body);
    }
    let raw = raw_http(&node.http, b"POST /v1/buckets/b/keys/k HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 4\r\nConnection: close\r\n\r\n\xff\xfe{}");
    assert!(raw.starts_with("HTTP/1.1 400"), "{raw}");
    // A type mismatch is a 409.
    assert_eq!(incr(&node, "typed", "").status, 200);
    let r = node.call(
        "POST",
        "/v1/buckets/likes/keys/typed",
        Some(&json!({"type": "set", "op": {"add": ["a"]}})),
    );
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (409, Some("type_mismatch"))
    );

    // An ack-only update: 204 and no body, and the write is there.
    let r = node.call(
        "POST",
        "/v1/buckets/tags/keys/quiet?ack_only=true",
        Some(&json!({"type": "set", "op": {"add": ["a", "b"]}})),
    );
    assert_eq!(r.status, 204, "{}", r.body);
    let r = node.call("GET", "/v1/buckets/tags/keys/quiet", None);
    assert_eq!(r.body["value"], json!(["a", "b"]), "{}", r.body);

    // Still serving.
    assert_eq!(incr(&node, "after", "").status, 200);

    // SIGTERM: a clean exit, and the restart finds a clean store (no actor rotation).
    assert!(node.terminate().success(), "{}", node.log_text());
    node.start();
    let log = node.log_text();
    let restart = log.rsplit("node id").next().unwrap_or_default();
    assert!(
        restart.contains("previous_clean=true") && restart.contains("rotated=None"),
        "{restart}"
    );
    assert_eq!(read(&node, "after", "").body["value"], json!(1));
    std::fs::remove_dir_all(&root).ok();
}

fn raw_http(base: &str, request: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(base.trim_start_matches("http://")).unwrap();
    s.write_all(request).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// `count` consecutive free loopback ports (UDP and TCP), for `cairn dev`.
pub(crate) fn free_port_run(count: u16) -> u16 {
    let mut base = free_port();
    loop {
        let free = (0..count).all(|i| {
            let Some(p) = base.checked_add(i) else {
                return false;
            };
            UdpSocket::bind(("127.0.0.1", p)).is_ok()
                && std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()
        });
        if free && base.checked_add(count).is_some() {
            return base;
        }
        base = free_port();
    }
}

/// A `cairn dev --nodes 3` on free ports, stopped with SIGTERM when dropped.
pub(crate) struct Dev {
    pub(crate) proc: KillOnDrop,
    /// What it prints after announcing the cluster.
    pub(crate) rest: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
    /// The first node's QUIC port (the others follow).
    pub(crate) quic: u16,
    /// The HTTP URLs it printed.
    pub(crate) urls: Vec<String>,
}

/// Starts `cairn dev --nodes 3` in `root` and waits until it says the cluster is up.
pub(crate) fn start_dev(root: &Path) -> Dev {
    use std::io::{BufRead, BufReader};
    let (quic, http) = (free_port_run(3), free_port_run(3));
    let mut child = cairn()
        .args(["dev", "--nodes", "3", "--dir"])
        .arg(root)
        .args([
            "--quic-port",
            &quic.to_string(),
            "--http-port",
            &http.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut rest = BufReader::new(child.stdout.take().unwrap()).lines();
    let proc = KillOnDrop(child);
    let mut urls = Vec::new();
    for line in rest.by_ref() {
        let line = line.unwrap();
        if let Some(url) = line.split_whitespace().find(|w| w.starts_with("http://")) {
            if line.trim_start().starts_with("node") {
                urls.push(url.to_owned());
            }
        }
        if line.starts_with("Ctrl-C") {
            break;
        }
    }
    Dev {
        proc,
        rest,
        quic,
        urls,
    }
}

#[test]
fn cairn_dev_starts_a_joined_cluster_and_stops_it_cleanly() {
    let root = temp_dir("dev");
    let Dev {
        proc: dev,
        rest: lines,
        urls,
        ..
    } = start_dev(&root);
    assert_eq!(urls.len(), 3, "cairn dev printed {urls:?}");
    let body = json!({"type": "counter", "op": {"increment": 2}});
    let r = http_client::request(&urls[0], "POST", "/v1/buckets/b/keys/k", Some(&body)).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let r = http_client::request(&urls[2], "GET", "/v1/buckets/b/keys/k", None).unwrap();
    assert_eq!(r.body["value"], json!(2), "{}", r.body);
    let status = http_client::request(&urls[1], "GET", "/v1/cluster", None)
        .unwrap()
        .body;
    assert_eq!(
        status["nodes"].as_array().map(Vec::len),
        Some(3),
        "{status}"
    );
    assert_eq!(status["replication"], json!(3));

    let ok = Command::new("kill")
        .args(["-TERM", &dev.0.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let mut dev = dev;
    assert!(dev.0.wait().unwrap().success());
    assert!(rest.iter().any(|l| l.contains("stopped")), "{rest:?}");
    for node in ["node1", "node2", "node3"] {
        let log = std::fs::read_to_string(root.join(node).join("server.log")).unwrap();
        assert!(log.contains("marked clean"), "{node}:\n{log}");
    }
    std::fs::remove_dir_all(&root).ok();
}

/// Stops `cairn dev` (and so its nodes) with SIGTERM if a test fails half-way.
pub(crate) struct KillOnDrop(pub(crate) Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.0.id().to_string()])
                .status();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn cairn_bench_runs_a_workload_and_checks_the_counters() {
    let root = temp_dir("bench");
    let ca = root.join("ca");
    make_ca(&ca);
    let mut node = Server::new(&root, &ca, "b1", &[]);
    node.start();
    // cairn bench reads the CA and a client certificate from a `cairn dev`-shaped dir.
    run_ok(
        cairn()
            .args(["cert", "client", "--name", "client", "--ca-dir"])
            .arg(&ca)
            .arg("--out")
            .arg(root.join("client")),
    );
    let report = root.join("report.json");
    let slow = root.join("slow.jsonl");
    for extra in [
        &["--concurrency", "8"][..],
        &["--rate", "300", "--batch", "4"][..],
    ] {
        let out = run_ok(
            cairn()
                .args([
                    "bench",
                    "--workload",
                    "counter-incr",
                    "--keys",
                    "50",
                    "--no-progress",
                ])
                .args([
                    "--warmup",
                    "0.2",
                    "--duration",
                    "1",
                    "--nodes",
                    &node.quic.to_string(),
                ])
                .arg("--dir")
                .arg(&root)
                .arg("--json")
                .arg(&report)
                // Every measured request is "slow" at 0 ms, so all of them are listed.
                .args(["--slow-ms", "0", "--slow-log"])
                .arg(&slow)
                .args(extra),
        );
        assert!(
            out.contains("every acknowledged increment is there"),
            "{out}"
        );
        let json: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        assert!(json["operations"].as_u64().unwrap() > 0, "{json}");
        assert!(json["latency_us"]["p999"].as_u64().is_some(), "{json}");
        let open_loop = extra.contains(&"--rate");
        slow_log_lists_every_request(&slow, &json, open_loop);
        if open_loop {
            // The pacer keeps to the rate (300 requests of 4 a second, for a second;
            // wide bounds, for a window measured on a busy machine): neither unpaced nor
            // stalled.
            let ops = json["operations"].as_u64().unwrap();
            assert!((600..=2400).contains(&ops), "{json}");
            // Its own delay is reported beside the latency it is a part of (a structural
            // check; the pacer's timing has its own unit test).
            let (late, latency) = (&json["send_lateness_us"], &json["latency_us"]);
            for q in ["p50", "max"] {
                assert!(
                    late[q].as_u64().unwrap() <= latency[q].as_u64().unwrap(),
                    "{json}"
                );
            }
        } else {
            assert!(json["send_lateness_us"].is_null(), "{json}");
        }
    }
    answers_share_packets(&node, &root);
    let http = run_ok(
        cairn()
            .args([
                "bench",
                "--http",
                "--workload",
                "ycsb-a",
                "--ycsb-type",
                "counter",
            ])
            .args(["--keys", "20", "--distribution", "zipfian", "--no-progress"])
            .args(["--warmup", "0.2", "--duration", "1", "--nodes", &node.http]),
    );
    assert!(
        http.contains("every acknowledged increment is there"),
        "{http}"
    );
    let quick = |args: &[&str]| {
        run_ok(
            cairn()
                .args([
                    "bench",
                    "--keys",
                    "50",
                    "--no-progress",
                    "--concurrency",
                    "4",
                ])
                .args(["--warmup", "0.2", "--duration", "0.5"])
                .args(args)
                .arg("--dir")
                .arg(&root)
                .arg("--json")
                .arg(&report),
        )
    };
    // A bucket used twice: the second run checks the counters from where they stood
    // (checked from zero, it would find more than it sent).
    // Over HTTP too, where a counter never written reads as a 404.
    let quic = node.quic.to_string();
    for (nodes, bucket) in [
        (&["--nodes", &quic][..], "again"),
        (&["--nodes", &node.http, "--http"], "again-http"),
    ] {
        for _ in 0..2 {
            let run = [nodes, &["--workload", "counter-incr", "--bucket", bucket]].concat();
            let out = quick(&run);
            assert!(
                out.contains("every acknowledged increment is there"),
                "{out}"
            );
            let json: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
            let checked = json["counter_check"]["keys_checked"].as_u64().unwrap();
            assert!(checked > 0, "{json}");
        }
    }
    // Set adds are acknowledged without the set, natively and over HTTP (204).
    for nodes in [node.quic.to_string(), node.http.clone()] {
        let mut args = vec!["--workload", "set-add", "--nodes", &nodes];
        if nodes.starts_with("http") {
            args.push("--http");
        }
        quick(&args);
        let json: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        assert_eq!(json["errors"], 0, "{json}");
        assert!(json["operations"].as_u64().unwrap() > 0, "{json}");
    }
    std::fs::remove_dir_all(&root).ok();
}

/// A reused bucket's counters are read (r = all) before the run, to check their growth
/// after it. Those reads fail while a replica is down or a new node still syncs, as when
/// a bench starts beside `cairn dev`; the generator retries them rather than leaving
/// every counter unchecked (which failed the check: "could not be read back").
#[test]
fn cairn_bench_retries_the_starting_values_while_a_node_is_down() {
    let root = temp_dir("bench-baseline");
    let mut nodes = cluster_of(&root, 3, &["--replication", "3"]);
    run_ok(
        cairn()
            .args(["cert", "client", "--name", "client", "--ca-dir"])
            .arg(root.join("ca"))
            .arg("--out")
            .arg(root.join("client")),
    );
    nodes[2].kill();
    let bench = cairn()
        .args(["bench", "--workload", "counter-incr", "--keys", "50"])
        .args([
            "--bucket",
            "starting",
            "--concurrency",
            "4",
            "--no-progress",
        ])
        .args(["--warmup", "0", "--duration", "0.5"])
        .args(["--nodes", &nodes[0].quic.to_string()])
        .arg("--dir")
        .arg(&root)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    nodes[2].start();
    let out = bench.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("every acknowledged increment is there"),
        "{stdout}\n{stderr}"
    );
    assert!(!stderr.contains("could not be read"), "{stderr}");
    drop(nodes);
    std::fs::remove_dir_all(&root).ok();
}

/// `--slow-log` at 0 ms: one line per measured request, in the order sent, each with
/// its latency and, in the open loop, the generator's delay within it and a send time
/// inside the window.
fn slow_log_lists_every_request(path: &Path, report: &Value, open_loop: bool) {
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let requests = report["operations"].as_u64().unwrap() / report["batch"].as_u64().unwrap();
    assert_eq!(lines.len() as u64, requests, "{report}");
    assert_eq!(report["slow_log"]["written"], requests, "{report}");
    let window_ms = report["seconds"].as_f64().unwrap() * 1e3;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1e3;
    let mut last = f64::MIN;
    for l in &lines {
        let (at, latency) = (
            l["at_ms"].as_f64().unwrap(),
            l["latency_us"].as_u64().unwrap(),
        );
        // The wall clock of the same moment: within the last minute (the run took ~2 s).
        let unix = l["unix_ms"].as_f64().unwrap();
        assert!((now_ms - 60_000.0..now_ms).contains(&unix), "{l}");
        assert!(at >= last, "in send order: {l}");
        last = at;
        assert_eq!(l["ok"], true, "{l}");
        if open_loop {
            assert!((0.0..window_ms).contains(&at), "{l}");
            assert!(l["late_us"].as_u64().unwrap() <= latency, "{l}");
        } else {
            assert!(at < window_ms && l["late_us"].is_null(), "{l}");
        }
    }
}

/// The sum of every sample of metric `name` (all label sets) in `node`'s /metrics.
fn metric_sum(node: &Server, name: &str) -> f64 {
    let metrics = node.call("GET", "/metrics", None);
    let text = metrics.body.as_str().unwrap_or_default().to_owned();
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let value = match rest.strip_prefix('{') {
                Some(labelled) => labelled.split_once("} ")?.1,
                None => rest.strip_prefix(' ')?,
            };
            value.parse::<f64>().ok()
        })
        .sum()
}

/// With many requests in flight, a node sends several answers per datagram: the answers a
/// core turn completes are written before the connection's driver runs. (On tokio's
/// multi-thread runtime the driver ran after each answer, one datagram per answer: the
/// binary with `--io-threads 2` fails this check.)
fn answers_share_packets(node: &Server, root: &Path) {
    let sent = || metric_sum(node, "cairn_quic_accepted_datagrams_sent_total");
    let answered = || metric_sum(node, "cairn_requests_total");
    let before = (sent(), answered());
    run_ok(
        cairn()
            .args(["bench", "--workload", "counter-incr", "--keys", "1000"])
            .args(["--concurrency", "64", "--no-progress", "--warmup", "0"])
            .args(["--duration", "1", "--nodes", &node.quic.to_string()])
            .arg("--dir")
            .arg(root),
    );
    let (datagrams, answers) = (sent() - before.0, answered() - before.1);
    eprintln!("{datagrams} datagrams for {answers} answers");
    assert!(answers > 100.0, "only {answers} answers");
    assert!(datagrams > 0.0, "no datagrams counted");
    assert!(
        datagrams < 0.4 * answers,
        "{datagrams} datagrams sent for {answers} answers: answers no longer share packets"
    );
}

/// Sends malformed frames and payloads to `node` over real mutual-TLS QUIC.
fn garbage_frames(node: &Server) {
    use cairn_net::{Alpn, Endpoint, Identity, NetConfig, NetError};
    let identity = Identity::load(
        &node.ca,
        &node.data.join(format!("{}.pem", node.name)),
        &node.data.join(format!("{}-key.pem", node.name)),
    )
    .unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let ep = Endpoint::client(&identity, NetConfig::default()).unwrap();
        // Frame = [u32 BE length][version][kind][payload]; an error reply has kind 2.
        let huge = [&0x7fff_ffffu32.to_be_bytes()[..], &[1, 0]].concat();
        for junk in [
            &b"not a frame at all"[..],
            &[0, 0, 0, 1, 9, 0, 0][..],
            &huge[..],
        ] {
            let reply = ep.raw_exchange(node.quic, Alpn::Peer, junk).await.unwrap();
            assert_eq!(
                reply.get(5),
                Some(&2),
                "an error frame for {junk:?}: {reply:?}"
            );
        }
        // A well-formed frame whose payload is garbage: the handler's error comes back.
        let bad = ep.call(node.quic, Alpn::Peer, &[0, 0xff, 0xee]).await;
        assert!(matches!(bad, Err(NetError::Remote(_))), "{bad:?}");
        let reply = ep.call(node.quic, Alpn::Client, &[1, 0xff]).await.unwrap();
        let decoded = cairn_proto::client::decode_response(&reply).unwrap();
        assert!(
            matches!(decoded, cairn_proto::client::Response::Error(_)),
            "{decoded:?}"
        );
        // The same connection still works.
        let nodes = cairn_proto::client::encode_request(&cairn_proto::client::Request::Nodes);
        assert!(ep.call(node.quic, Alpn::Client, &nodes).await.is_ok());
    });
}

/// The slow-request log (`--slow-request-ms`): a request that waits for a stopped
/// replica is logged by its coordinator, with its outcome and time; fast ones are not.
#[test]
fn a_request_slower_than_the_threshold_is_logged_by_its_coordinator() {
    let root = temp_dir("slow-log");
    let mut nodes = cluster_of(
        &root,
        2,
        &["--replication", "2", "--slow-request-ms", "400"],
    );
    let quick_started = Instant::now();
    let r = incr(&nodes[0], "quick", "?w=all");
    assert_eq!(r.status, 200, "{}", r.body);
    // On a machine too loaded to answer it well under the threshold, it may be logged too.
    let quick_was_quick = quick_started.elapsed() < Duration::from_millis(200);

    // The second replica stops answering (SIGSTOP) but keeps its connections, so a
    // write that needs it waits out its timeout, then fails: about a second.
    let pid = nodes[1].child.as_ref().expect("running").id().to_string();
    run_ok(Command::new("kill").args(["-STOP", &pid]));
    let r = incr(&nodes[0], "stuck", "?w=all&timeout_ms=1000");
    run_ok(Command::new("kill").args(["-CONT", &pid]));
    assert_eq!(r.status, 503, "{}", r.body);

    let log = eventually("the slow request logged", || {
        let log = nodes[0].log_text();
        log.contains("slow request").then_some(log)
    });
    let slow: Vec<&str> = log.lines().filter(|l| l.contains("slow request")).collect();
    if quick_was_quick {
        assert_eq!(slow.len(), 1, "only the stuck write is slow:\n{log}");
    }
    let line = *slow.last().expect("found above");
    assert!(line.contains(" WARN "), "{line}");
    for field in [
        "op=update",
        "ty=counter",
        "outcome=quorum_not_reached",
        "held_back=0",
    ] {
        assert!(line.contains(field), "{field} missing: {line}");
    }
    let took: u64 = line
        .split("took_ms=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("took_ms missing: {line}"));
    assert!((1000..5000).contains(&took), "{line}");
    for n in &mut nodes {
        n.kill();
    }
}
