//! The `cairn` binary: the server, a local development cluster, certificates, cluster
//! administration and data commands over the HTTP API.

mod bench;
mod bench_slow;
mod dev;
mod http_client;

/// mimalloc rather than glibc's malloc: a node allocates and frees many small buffers
/// across threads (frames, encoded objects, overlay entries), where glibc spent 5-8% of
/// a node's CPU (`malloc_consolidate`, `_int_malloc`, `unlink_chunk` in `perf`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;

use cairn_crdt::{Actor, Crdt, Replica, Set, SetOp, Timestamp, Value};
use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value as Json};

use http_client::segment;

#[derive(Parser)]
#[command(
    name = "cairn",
    version,
    about = "Cairn: a CRDT-first, Dynamo-style replicated key-value store"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node (embedded defaults: data in ./cairn-data, QUIC 127.0.0.1:7000, HTTP 127.0.0.1:8000).
    Server(ServerArgs),
    /// Run a local cluster of N nodes on 127.0.0.1 sharing a generated CA; Ctrl-C stops it.
    Dev(dev::DevArgs),
    /// Make certificates: a cluster CA, node and client certificates (PEM, keys mode 0600).
    #[command(subcommand)]
    Cert(CertCommand),
    /// Cluster administration.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Counters.
    #[command(subcommand)]
    Counter(CounterCommand),
    /// Add-wins sets of strings.
    #[command(subcommand)]
    Set(SetCommand),
    /// Last-writer-wins registers.
    #[command(subcommand)]
    Register(RegisterCommand),
    /// Maps of counters, sets, registers, flags and maps.
    #[command(subcommand)]
    Map(MapCommand),
    /// Delete a key.
    Delete(KeyArgs),
    /// Load generator: YCSB-style workloads, closed or open loop, latency percentiles.
    Bench(bench::BenchArgs),
    /// Merge two replicas of a set through the wire format (no server needed).
    Selftest,
}

#[derive(Args)]
struct ServerArgs {
    /// A TOML file with the settings below (flags and CAIRN_* variables override it).
    #[arg(long, env = "CAIRN_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory [default: ./cairn-data].
    #[arg(long)]
    data: Option<PathBuf>,
    /// QUIC address for peers [default: 127.0.0.1:7000].
    #[arg(long)]
    listen: Option<String>,
    /// Address peers dial, when listen is a wildcard.
    #[arg(long)]
    advertise: Option<String>,
    /// HTTP address [default: 127.0.0.1:8000].
    #[arg(long)]
    http: Option<String>,
    /// QUIC address of a node of the cluster to join (first start only).
    #[arg(long)]
    join: Option<String>,
    /// Zone (failure domain) [default: default].
    #[arg(long)]
    zone: Option<String>,
    /// Relative capacity; 0 for a gateway [default: 100].
    #[arg(long)]
    capacity: Option<u64>,
    /// Name for logs [default: cairn-PORT].
    #[arg(long)]
    name: Option<String>,
    /// Replicas per key of a new cluster (fixed at its first node) [default: 1].
    #[arg(long)]
    replication: Option<u8>,
    /// Partitions of a new cluster, a power of two [default: 64].
    #[arg(long)]
    partitions: Option<u16>,
    /// fsync (default) or none (tests and benchmarks only: acknowledged writes may be lost).
    #[arg(long)]
    durability: Option<String>,
    /// Cluster CA certificate.
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// This node's certificate.
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// This node's key.
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// Test-only: shift this node's wall clock by this many milliseconds.
    #[arg(long, hide = true, allow_hyphen_values = true)]
    clock_offset_ms: Option<i64>,
    /// How long a first start keeps asking the --join node, in milliseconds [default: 30000].
    #[arg(long)]
    join_patience_ms: Option<u64>,
    /// Threads serving QUIC and HTTP and running the node's core [default: 1].
    #[arg(long)]
    io_threads: Option<usize>,
    /// MiB for the decoded values of recent writes, kept for their key's next update
    /// (estimated) [default: 128; 0 keeps none].
    #[arg(long)]
    warm_mib: Option<u64>,
    /// Log client requests this node coordinates that take at least this many
    /// milliseconds, at most 20 lines a second [default: 500; 0 logs none].
    #[arg(long)]
    slow_request_ms: Option<u64>,
}

#[derive(Subcommand)]
enum CertCommand {
    /// A new cluster CA: DIR/ca.pem and DIR/ca-key.pem.
    Ca {
        /// Output directory.
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// A node certificate signed by the CA in --ca-dir: OUT/NAME.pem and OUT/NAME-key.pem.
    Node {
        /// Where ca.pem and ca-key.pem are.
        #[arg(long, default_value = ".")]
        ca_dir: PathBuf,
        /// The node's name.
        #[arg(long)]
        name: String,
        /// Addresses or DNS names the node is reached at (repeatable).
        #[arg(long)]
        host: Vec<String>,
        /// Output directory.
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// A client certificate (for the SDK) signed by the CA in --ca-dir.
    Client {
        /// Where ca.pem and ca-key.pem are.
        #[arg(long, default_value = ".")]
        ca_dir: PathBuf,
        /// The client's name.
        #[arg(long)]
        name: String,
        /// Output directory.
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
}

#[derive(Args, Clone)]
struct NodeArg {
    /// The node's HTTP URL.
    #[arg(long, env = "CAIRN_NODE", default_value = "http://127.0.0.1:8000")]
    node: String,
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Nodes, zones, liveness, partitions, staged changes.
    Status(NodeArg),
    /// What committing the staged changes would move.
    Plan(NodeArg),
    /// Commit the staged changes as a new layout version.
    Commit(NodeArg),
}

#[derive(Args)]
struct KeyArgs {
    /// Bucket.
    bucket: String,
    /// Key.
    key: String,
    #[command(flatten)]
    node: NodeArg,
    /// Replies a read waits for (a number, one, quorum, all).
    #[arg(long)]
    r: Option<String>,
    /// Acknowledgements a write waits for.
    #[arg(long)]
    w: Option<String>,
    /// Request timeout in milliseconds.
    #[arg(long)]
    timeout_ms: Option<u64>,
}

#[derive(Subcommand)]
enum CounterCommand {
    /// Add to a counter (negative to subtract).
    Incr {
        #[command(flatten)]
        key: KeyArgs,
        /// Amount.
        #[arg(default_value_t = 1, allow_hyphen_values = true)]
        by: i64,
    },
    /// Read a counter.
    Get(KeyArgs),
}

#[derive(Subcommand)]
enum SetCommand {
    /// Add members.
    Add {
        #[command(flatten)]
        key: KeyArgs,
        /// Members.
        #[arg(required = true)]
        members: Vec<String>,
    },
    /// Remove members (as far as a read just now observed them).
    Remove {
        #[command(flatten)]
        key: KeyArgs,
        /// Members.
        #[arg(required = true)]
        members: Vec<String>,
    },
    /// Read a set.
    Get(KeyArgs),
}

#[derive(Subcommand)]
enum RegisterCommand {
    /// Assign a register.
    Put {
        #[command(flatten)]
        key: KeyArgs,
        /// The value.
        value: String,
    },
    /// Read a register.
    Get(KeyArgs),
}

#[derive(Subcommand)]
enum MapCommand {
    /// Update a map: OP is the API's map op, e.g. '{"update": {"views": {"type": "counter", "op": {"increment": 1}}}}'.
    Update {
        #[command(flatten)]
        key: KeyArgs,
        /// The map op as JSON.
        op: String,
    },
    /// Read a map.
    Get(KeyArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Server(args) => server(args),
        Command::Dev(args) => dev::run(args),
        Command::Cert(cmd) => cert(cmd),
        Command::Cluster(cmd) => cluster(cmd),
        Command::Counter(cmd) => counter(cmd),
        Command::Set(cmd) => set(cmd),
        Command::Register(cmd) => register(cmd),
        Command::Map(cmd) => map(cmd),
        Command::Delete(key) => delete(&key),
        Command::Bench(args) => bench::run(args),
        Command::Selftest => selftest(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cairn: {e}");
            ExitCode::FAILURE
        }
    }
}

fn server(args: ServerArgs) -> Result<(), String> {
    init_logs();
    let file = match &args.config {
        Some(path) => cairn_server::RawConfig::from_file(path).map_err(|e| e.to_string())?,
        None => cairn_server::RawConfig::default(),
    };
    let env =
        cairn_server::RawConfig::from_env(|k| std::env::var(k).ok()).map_err(|e| e.to_string())?;
    let flags = cairn_server::RawConfig {
        data: args.data,
        listen: args.listen,
        advertise: args.advertise,
        http: args.http,
        join: args.join,
        zone: args.zone,
        capacity: args.capacity,
        name: args.name,
        replication: args.replication,
        partitions: args.partitions,
        durability: args.durability,
        tls_ca: args.tls_ca,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        clock_offset_ms: args.clock_offset_ms,
        join_patience_ms: args.join_patience_ms,
        io_threads: args.io_threads,
        warm_mib: args.warm_mib,
        slow_request_ms: args.slow_request_ms,
    };
    let config = file
        .layer(env)
        .layer(flags)
        .validate()
        .map_err(|e| e.to_string())?;
    let runtime = io_runtime(config.io_threads)
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime
        .block_on(cairn_server::run(config, shutdown_signal()))
        .map_err(|e| e.to_string())
}

/// The runtime for QUIC, HTTP and the node's core (one task). One thread runs a
/// current-thread runtime: it runs woken tasks in the order they woke, so the answers a
/// core turn completes are all written to their streams before the connection's driver
/// runs and packs them into a few packets. The multi-thread scheduler runs a task woken
/// by another at once (its LIFO slot): after each answer is written, the driver ran and
/// sent it alone. Measured with a 3-node cluster and one node (ARCHITECTURE.md): ~0.9
/// datagrams per answer against ~0.19, and ~0.6x the server CPU per operation.
fn io_runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    builder.enable_all().build()
}

fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the node with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM"),
        _ = int.recv() => tracing::info!("SIGINT"),
    }
}

fn cert(cmd: CertCommand) -> Result<(), String> {
    use cairn_net::cert::{write_private, write_public, Ca};
    let load_ca = |dir: &PathBuf| -> Result<Ca, String> {
        let read = |f: &str| {
            std::fs::read_to_string(dir.join(f))
                .map_err(|e| format!("{}: {e}", dir.join(f).display()))
        };
        Ca::from_pem(&read("ca.pem")?, &read("ca-key.pem")?).map_err(|e| e.to_string())
    };
    let write = |dir: &PathBuf, name: &str, cert: &str, key: &str| -> Result<(), String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let (c, k) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}-key.pem")),
        );
        write_public(&c, cert, false).map_err(|e| format!("{}: {e}", c.display()))?;
        write_private(&k, key, false).map_err(|e| format!("{}: {e}", k.display()))?;
        println!("wrote {} and {} (mode 0600)", c.display(), k.display());
        Ok(())
    };
    match cmd {
        CertCommand::Ca { out } => {
            let ca = Ca::generate("cairn cluster CA").map_err(|e| e.to_string())?;
            write(&out, "ca", &ca.cert_pem(), &ca.key_pem())
        }
        CertCommand::Node {
            ca_dir,
            name,
            host,
            out,
        } => {
            let issued = load_ca(&ca_dir)?
                .issue_node(&name, &host)
                .map_err(|e| e.to_string())?;
            write(&out, &name, &issued.cert_pem, &issued.key_pem)
        }
        CertCommand::Client { ca_dir, name, out } => {
            let issued = load_ca(&ca_dir)?
                .issue_client(&name)
                .map_err(|e| e.to_string())?;
            write(&out, &name, &issued.cert_pem, &issued.key_pem)
        }
    }
}

/// Sends a request and returns the body of a 2xx answer, or the API's error message.
fn call(node: &str, method: &str, path: &str, body: Option<&Json>) -> Result<Json, String> {
    let resp = http_client::request(node, method, path, body)?;
    if (200..300).contains(&resp.status) {
        return Ok(resp.body);
    }
    let message = resp.body["error"]["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| resp.body.to_string());
    let code = resp.body["error"]["code"].as_str().unwrap_or("error");
    Err(format!("{} {code}: {message}", resp.status))
}

fn cluster(cmd: ClusterCommand) -> Result<(), String> {
    match cmd {
        ClusterCommand::Status(n) => {
            let s = call(&n.node, "GET", "/v1/cluster", None)?;
            print_status(&s);
            Ok(())
        }
        ClusterCommand::Plan(n) => print(&call(&n.node, "GET", "/v1/cluster/plan", None)?),
        ClusterCommand::Commit(n) => print(&call(&n.node, "POST", "/v1/cluster/commit", None)?),
    }
}

fn print_status(s: &Json) {
    println!(
        "layout version {}  replication {}  partitions {}  (answered by {} {})",
        s["layout_version"],
        s["replication"],
        s["partitions"],
        s["name"].as_str().unwrap_or("?"),
        s["node"].as_str().unwrap_or("?")
    );
    println!(
        "{:<18} {:<22} {:<10} {:>8} {:>10} {:>6} {:>9}  {:<4}",
        "NODE", "ADDRESS", "ZONE", "CAPACITY", "PARTITIONS", "HINTS", "LAST AAE", "UP"
    );
    let text = |v: &Json| match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    };
    for n in s["nodes"].as_array().into_iter().flatten() {
        let me = if n["self"].as_bool() == Some(true) {
            "  (this node)"
        } else {
            ""
        };
        let up = if n["up"].as_bool() == Some(true) {
            "up"
        } else {
            "DOWN"
        };
        let aae = match n["last_aae_ms_ago"].as_u64() {
            Some(ms) => format!("{:.1}s ago", ms as f64 / 1000.0),
            None => "-".to_owned(),
        };
        println!(
            "{:<18} {:<22} {:<10} {:>8} {:>10} {:>6} {:>9}  {up:<4}{me}",
            text(&n["id"]),
            text(&n["addr"]),
            text(&n["zone"]),
            text(&n["capacity"]),
            text(&n["partitions"]),
            text(&n["hints_for"]),
            aae,
        );
    }
    for c in s["staged"].as_array().into_iter().flatten() {
        println!(
            "staged: {} {} {}",
            c["change"].as_str().unwrap_or("?"),
            c["node"].as_str().unwrap_or("?"),
            c["addr"].as_str().unwrap_or("")
        );
    }
    println!(
        "hints kept here: {} ({} bytes); requests in flight: {}",
        s["hints"], s["hint_bytes"], s["in_flight"]
    );
    let syncing = s["syncing"].as_array().map_or(0, Vec::len);
    if syncing > 0 {
        println!(
            "syncing {syncing} partitions after starting with an empty store: \
             their reads go to the other replicas until then"
        );
    }
}

fn print(v: &Json) -> Result<(), String> {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    Ok(())
}

fn key_path(k: &KeyArgs, extra: &[(&str, String)]) -> String {
    let mut query: Vec<String> = Vec::new();
    for (name, v) in [("r", &k.r), ("w", &k.w)] {
        if let Some(v) = v {
            query.push(format!("{name}={}", segment(v)));
        }
    }
    if let Some(t) = k.timeout_ms {
        query.push(format!("timeout_ms={t}"));
    }
    for (name, v) in extra {
        query.push(format!("{name}={}", segment(v)));
    }
    let mut path = format!(
        "/v1/buckets/{}/keys/{}",
        segment(&k.bucket),
        segment(&k.key)
    );
    if !query.is_empty() {
        path.push('?');
        path.push_str(&query.join("&"));
    }
    path
}

fn get_value(k: &KeyArgs) -> Result<Option<Json>, String> {
    let resp = http_client::request(&k.node.node, "GET", &key_path(k, &[]), None)?;
    match resp.status {
        200 => Ok(Some(resp.body)),
        404 => Ok(None),
        _ => call(&k.node.node, "GET", &key_path(k, &[]), None).map(Some),
    }
}

fn show(k: &KeyArgs) -> Result<(), String> {
    match get_value(k)? {
        Some(v) => print(&v["value"]),
        None => Err(format!("not found: {}/{}", k.bucket, k.key)),
    }
}

fn update(k: &KeyArgs, body: Json) -> Result<(), String> {
    let v = call(&k.node.node, "POST", &key_path(k, &[]), Some(&body))?;
    print(&v["value"])
}

fn counter(cmd: CounterCommand) -> Result<(), String> {
    match cmd {
        CounterCommand::Incr { key, by } => {
            update(&key, json!({"type": "counter", "op": {"increment": by}}))
        }
        CounterCommand::Get(key) => show(&key),
    }
}

fn set(cmd: SetCommand) -> Result<(), String> {
    match cmd {
        SetCommand::Add { key, members } => {
            update(&key, json!({"type": "set", "op": {"add": members}}))
        }
        SetCommand::Remove { key, members } => {
            // Remove what a read observed: concurrent adds elsewhere survive (add wins).
            let context = get_value(&key)?
                .map(|v| v["context"].clone())
                .unwrap_or(Json::Null);
            update(
                &key,
                json!({"type": "set", "op": {"remove": members}, "context": context}),
            )
        }
        SetCommand::Get(key) => show(&key),
    }
}

fn register(cmd: RegisterCommand) -> Result<(), String> {
    match cmd {
        RegisterCommand::Put { key, value } => {
            update(&key, json!({"type": "register", "op": {"assign": value}}))
        }
        RegisterCommand::Get(key) => show(&key),
    }
}

fn map(cmd: MapCommand) -> Result<(), String> {
    match cmd {
        MapCommand::Update { key, op } => {
            let op: Json = serde_json::from_str(&op).map_err(|e| format!("OP is not JSON: {e}"))?;
            update(&key, json!({"type": "map", "op": op}))
        }
        MapCommand::Get(key) => show(&key),
    }
}

fn delete(k: &KeyArgs) -> Result<(), String> {
    call(&k.node.node, "DELETE", &key_path(k, &[]), None)?;
    println!("deleted {}/{}", k.bucket, k.key);
    Ok(())
}

/// Two replicas update a set concurrently, ship their states as bytes, and converge.
fn selftest() -> Result<(), String> {
    let at = |a| Replica {
        actor: Actor(a),
        now: Timestamp::ZERO,
    };
    let (mut left, mut right) = (Set::default(), Set::default());
    for (set, actor, member) in [(&mut left, 1, "left"), (&mut right, 2, "right")] {
        set.apply(&SetOp::Add(vec![member.into()]), at(actor))
            .map_err(|e| format!("selftest failed: {e}"))?;
    }
    let bytes = cairn_proto::encode_value(&Value::Set(right));
    match cairn_proto::decode_value(&bytes) {
        Ok(Value::Set(theirs)) => {
            left.merge(&theirs);
            let members: Vec<String> = left
                .members()
                .map(|m| String::from_utf8_lossy(m).into_owned())
                .collect();
            println!("selftest: merged set = {members:?}");
            Ok(())
        }
        Ok(other) => Err(format!("selftest failed: decoded a {}", other.value_type())),
        Err(e) => Err(format!("selftest failed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use tokio::runtime::RuntimeFlavor;

    #[test]
    fn one_io_thread_runs_the_current_thread_scheduler() -> std::io::Result<()> {
        let one = super::io_runtime(1)?;
        assert_eq!(one.handle().runtime_flavor(), RuntimeFlavor::CurrentThread);
        let two = super::io_runtime(2)?;
        assert_eq!(two.handle().runtime_flavor(), RuntimeFlavor::MultiThread);
        Ok(())
    }
}
