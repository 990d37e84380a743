//! `cairn dev --nodes N`: N local `cairn server` processes on 127.0.0.1 sharing a
//! generated CA, joined into one cluster and committed. Ctrl-C (or SIGTERM) stops them
//! all with SIGTERM, so each closes its store cleanly.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_net::cert::{write_private, write_public, Ca};
use clap::Args;

use crate::http_client;

/// `println!` that survives a closed stdout (a pipe whose reader went away): the
/// cluster must still stop cleanly.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// Most nodes `cairn dev` starts.
const DEV_NODES_MAX: u16 = 16;

/// How long a node may take to answer `/health`.
const START_PATIENCE: Duration = Duration::from_secs(60);

#[derive(Args)]
pub(crate) struct DevArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 3)]
    nodes: u16,
    /// Directory for the CA and each node's data (kept between runs).
    #[arg(long, default_value = "./cairn-dev")]
    dir: PathBuf,
    /// QUIC port of the first node; the others follow.
    #[arg(long, default_value_t = 7000)]
    quic_port: u16,
    /// HTTP port of the first node; the others follow.
    #[arg(long, default_value_t = 8000)]
    http_port: u16,
    /// fsync (default) or none.
    #[arg(long, default_value = "fsync")]
    durability: String,
}

struct Node {
    name: String,
    http: String,
    child: Child,
    /// The command line that starts this node again (printed when it exits).
    restart: String,
    exited: Option<std::process::ExitStatus>,
}

pub(crate) fn run(args: DevArgs) -> Result<(), String> {
    if args.nodes == 0 || args.nodes > DEV_NODES_MAX {
        return Err(format!("--nodes must be 1..={DEV_NODES_MAX}"));
    }
    let stop = Arc::new(AtomicBool::new(false));
    install_stop_flag(stop.clone())?;
    let ca_dir = args.dir.join("ca");
    let ca = load_or_make_ca(&ca_dir)?;
    let client_dir = args.dir.join("client");
    write_client_cert(&ca, &client_dir)?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the cairn binary: {e}"))?;
    let replication = args.nodes.min(3);
    let mut nodes = Vec::new();
    for i in 0..args.nodes {
        match start_node(&args, &exe, &ca, &ca_dir, i, replication) {
            Ok(node) => nodes.push(node),
            Err(e) => {
                stop_all(&mut nodes);
                return Err(e);
            }
        }
        // Joiners need the first node up before they ask it.
        if i == 0 {
            if let Err(e) = wait_healthy(&nodes[0]) {
                stop_all(&mut nodes);
                return Err(e);
            }
        }
    }
    let ready = nodes
        .iter()
        .try_for_each(wait_healthy)
        .and_then(|()| commit(&nodes[0], args.nodes))
        .and_then(|()| nodes.iter().try_for_each(|n| wait_layout(n, args.nodes)));
    if let Err(e) = ready {
        stop_all(&mut nodes);
        return Err(e);
    }
    say!(
        "cairn dev: {} nodes up (replication {replication})",
        nodes.len()
    );
    for n in &nodes {
        say!("  {}  {}", n.name, n.http);
    }
    say!("try:  curl -s -XPOST {}/v1/buckets/likes/keys/post1 -d '{{\"type\":\"counter\",\"op\":{{\"increment\":1}}}}'", nodes[0].http);
    say!(
        "SDK: nodes {} ca {} client cert {}",
        nodes_quic(args.quic_port, args.nodes),
        ca_dir.join("ca.pem").display(),
        client_dir.join("client.pem").display()
    );
    say!(
        "Ctrl-C stops the cluster; data stays in {}",
        args.dir.display()
    );
    while !stop.load(Ordering::Acquire) {
        for n in &mut nodes {
            if n.exited.is_none() {
                if let Ok(Some(status)) = n.child.try_wait() {
                    say!(
                        "cairn dev: {} exited ({status}); to restart it:\n  {}",
                        n.name,
                        n.restart
                    );
                    n.exited = Some(status);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    stop_all(&mut nodes);
    say!("cairn dev: stopped");
    Ok(())
}

fn install_stop_flag(stop: Arc<AtomicBool>) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            runtime.block_on(async {
                use tokio::signal::unix::{signal, SignalKind};
                if let (Ok(mut term), Ok(mut int)) = (
                    signal(SignalKind::terminate()),
                    signal(SignalKind::interrupt()),
                ) {
                    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
                    stop.store(true, Ordering::Release);
                }
            });
        })
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn load_or_make_ca(dir: &Path) -> Result<Ca, String> {
    let (cert, key) = (dir.join("ca.pem"), dir.join("ca-key.pem"));
    if cert.exists() && key.exists() {
        let read =
            |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
        return Ca::from_pem(&read(&cert)?, &read(&key)?).map_err(|e| e.to_string());
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let ca = Ca::generate("cairn dev CA").map_err(|e| e.to_string())?;
    write_public(&cert, &ca.cert_pem(), true).map_err(|e| format!("{}: {e}", cert.display()))?;
    write_private(&key, &ca.key_pem(), true).map_err(|e| format!("{}: {e}", key.display()))?;
    Ok(ca)
}

fn nodes_quic(base: u16, count: u16) -> String {
    (0..count)
        .filter_map(|i| base.checked_add(i))
        .map(|p| format!("127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A client certificate for the SDK and the examples: `DIR/client/client.pem`.
fn write_client_cert(ca: &Ca, dir: &Path) -> Result<(), String> {
    let (cert, key) = (dir.join("client.pem"), dir.join("client-key.pem"));
    if cert.exists() && key.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let issued = ca
        .issue_client("cairn-dev-client")
        .map_err(|e| e.to_string())?;
    write_public(&cert, &issued.cert_pem, true).map_err(|e| e.to_string())?;
    write_private(&key, &issued.key_pem, true).map_err(|e| e.to_string())
}

fn start_node(
    args: &DevArgs,
    exe: &Path,
    ca: &Ca,
    ca_dir: &Path,
    i: u16,
    replication: u16,
) -> Result<Node, String> {
    let name = format!("node{}", i + 1);
    let data = args.dir.join(&name);
    std::fs::create_dir_all(&data).map_err(|e| format!("{}: {e}", data.display()))?;
    let (cert, key) = (data.join("node.pem"), data.join("node-key.pem"));
    if !cert.exists() || !key.exists() {
        let issued = ca
            .issue_node(&name, &["127.0.0.1".to_owned()])
            .map_err(|e| e.to_string())?;
        write_public(&cert, &issued.cert_pem, true).map_err(|e| e.to_string())?;
        write_private(&key, &issued.key_pem, true).map_err(|e| e.to_string())?;
    }
    let port = |base: u16| base.checked_add(i).ok_or("port out of range");
    let listen = format!("127.0.0.1:{}", port(args.quic_port)?);
    let http = format!("127.0.0.1:{}", port(args.http_port)?);
    let log = std::fs::File::create(data.join("server.log")).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(exe);
    cmd.arg("server")
        .args(["--name", &name, "--listen", &listen, "--http", &http])
        .args([
            "--replication",
            &replication.to_string(),
            "--durability",
            &args.durability,
        ])
        .arg("--data")
        .arg(&data)
        .arg("--tls-ca")
        .arg(ca_dir.join("ca.pem"))
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log);
    if i > 0 {
        cmd.args(["--join", &format!("127.0.0.1:{}", args.quic_port)]);
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {name}: {e}"))?;
    let restart = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    Ok(Node {
        name,
        http: format!("http://{http}"),
        child,
        restart,
        exited: None,
    })
}

fn wait_healthy(node: &Node) -> Result<(), String> {
    let deadline = Instant::now() + START_PATIENCE;
    loop {
        if let Ok(r) = http_client::request(&node.http, "GET", "/health", None) {
            if r.status == 200 {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(format!("{} did not come up; see its server.log", node.name));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Commits once the first node's layout holds every node (staged or committed).
fn commit(first: &Node, nodes: u16) -> Result<(), String> {
    let deadline = Instant::now() + START_PATIENCE;
    loop {
        let status = http_client::request(&first.http, "GET", "/v1/cluster", None)?;
        let committed = status.body["nodes"].as_array().map_or(0, Vec::len);
        let staged = status.body["staged"].as_array().map_or(0, Vec::len);
        if staged == 0 && committed >= usize::from(nodes) {
            return Ok(()); // A restart of an existing dev cluster.
        }
        if committed + staged >= usize::from(nodes) {
            let r = http_client::request(&first.http, "POST", "/v1/cluster/commit", None)?;
            if r.status == 200 {
                return Ok(());
            }
            return Err(format!("commit failed: {}", r.body));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "only {} of {nodes} nodes joined",
                committed + staged
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until `node` has heard of the committed layout with all `count` nodes, and has
/// synced its partitions with their other replicas (a new store refuses reads until then).
fn wait_layout(node: &Node, count: u16) -> Result<(), String> {
    let deadline = Instant::now() + START_PATIENCE;
    loop {
        let status = http_client::request(&node.http, "GET", "/v1/cluster", None)?;
        let nodes = status.body["nodes"].as_array().map_or(0, Vec::len);
        let staged = status.body["staged"].as_array().map_or(0, Vec::len);
        let syncing = status.body["syncing"].as_array().map_or(0, Vec::len);
        if nodes == usize::from(count) && staged == 0 && syncing == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{} never learned the committed layout, or never synced ({syncing} \
                 partitions left)",
                node.name
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn stop_all(nodes: &mut [Node]) {
    for n in nodes.iter_mut() {
        if !matches!(n.child.try_wait(), Ok(None)) {
            continue; // Already gone.
        }
        // SIGTERM: each node finishes its requests and closes its store cleanly.
        let _ = Command::new("kill")
            .args(["-TERM", &n.child.id().to_string()])
            .status();
    }
    for n in nodes.iter_mut() {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match n.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() > deadline => {
                    let _ = n.child.kill();
                    let _ = n.child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}
