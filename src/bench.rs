//! `cairn bench`: a load generator in the style of YCSB and basho_bench.
//!
//! Closed loop (`--concurrency` workers, each sending its next request when the last
//! answered) or open loop (`--rate` requests per second, each timed from the moment it
//! was *meant* to be sent, so a stalled server shows up in the latencies instead of
//! slowing the load: no coordinated omission). Latencies go into HdrHistograms; the
//! report gives p50/p99/p99.9/max and throughput, as text and optionally JSON. After a
//! counter workload every key is read back and checked against the acknowledged
//! increments.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_client::{Client, Options, Quorum};
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::bench_slow::{micros, SlowLog};

/// Most keys a run may use (the zipfian table and the per-key counts are O(keys)).
const KEYS_MAX: u64 = 10_000_000;
/// Most load-generator threads (`--threads`).
const THREADS_MAX: usize = 256;
/// Counter reads in flight while a reused bucket's starting values are read.
const BASELINE_READS: usize = 64;
/// How long the starting values of a reused bucket's counters are retried when some
/// cannot be read (r = all), e.g. a cluster whose nodes are still starting: a new node
/// refuses reads until it has synced. Counters still unread then are left unchecked.
const BASELINE_WAIT: Duration = Duration::from_secs(10);
/// Pause between two rounds of those retries.
const BASELINE_RETRY_PAUSE: Duration = Duration::from_millis(250);

/// Most requests in flight in open-loop mode when `--concurrency` is not given.
const OPEN_LOOP_IN_FLIGHT: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Workload {
    /// Increment a counter.
    CounterIncr,
    /// Add a random member to a set, acknowledged without the set (like Redis's SADD,
    /// which answers a count).
    SetAdd,
    /// Increment a counter field and assign a register field of a map.
    MapUpdate,
    /// Assign a register.
    RegisterPut,
    /// Read a register (keys are loaded first).
    RegisterGet,
    /// YCSB A: 50% reads, 50% updates.
    YcsbA,
    /// YCSB B: 95% reads, 5% updates.
    YcsbB,
    /// YCSB C: reads only.
    YcsbC,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Distribution {
    /// Every key equally likely.
    Uniform,
    /// Zipfian with θ = 0.99 (YCSB's), hot keys scattered over the key space.
    Zipfian,
    /// One key for everything.
    Hot,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Target {
    /// YCSB workloads over counters (update = increment).
    Counter,
    /// YCSB workloads over registers (update = assign).
    Register,
}

#[derive(Args, Debug)]
pub(crate) struct BenchArgs {
    /// What to run.
    #[arg(long, value_enum, default_value = "counter-incr")]
    workload: Workload,
    /// Value type of the YCSB workloads.
    #[arg(long, value_enum, default_value = "register")]
    ycsb_type: Target,
    /// Nodes' QUIC addresses (SDK) or HTTP URLs (with --http), comma separated.
    #[arg(long, default_value = "127.0.0.1:7000")]
    nodes: String,
    /// Go through the HTTP API instead of the native protocol.
    #[arg(long)]
    http: bool,
    /// `cairn dev` directory holding ca/ca.pem and client/client.pem (SDK only).
    #[arg(long, default_value = "./cairn-dev")]
    dir: PathBuf,
    /// Distinct keys.
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
    /// Key distribution.
    #[arg(long, value_enum, default_value = "uniform")]
    distribution: Distribution,
    /// Closed loop: workers. Open loop: most requests in flight.
    #[arg(long)]
    concurrency: Option<usize>,
    /// Open loop: requests per second (omit for a closed loop).
    #[arg(long)]
    rate: Option<u64>,
    /// Operations per request (SDK only; a batch frame).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Seconds measured.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Bytes per register value.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Write acknowledgements to wait for (a number, one, quorum, all).
    #[arg(long)]
    w: Option<String>,
    /// Read replies to wait for.
    #[arg(long)]
    r: Option<String>,
    /// Write the report as JSON here too.
    #[arg(long)]
    json: Option<PathBuf>,
    /// No live progress line.
    #[arg(long)]
    no_progress: bool,
    /// Also report the CPU these processes used per operation (e.g. the servers).
    #[arg(long, value_delimiter = ',')]
    pids: Vec<u32>,
    /// Bucket to use (default: a fresh one per run, so counters start at zero). A bucket
    /// used before keeps its keys, as a Redis keyspace does between runs; counters are
    /// then read before the run and checked from where they stood.
    #[arg(long)]
    bucket: Option<String>,
    /// Threads of the load generator. One, like redis-benchmark's default, leaves the
    /// other cores to the servers; raise it when one core cannot drive them.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Also write every measured request slower than --slow-ms here, one JSON object per
    /// line in the order sent: `at_ms` (from the measured window's start), `unix_ms` (the
    /// same moment on the wall clock), `latency_us`, `late_us` (open loop: the
    /// generator's own delay) and `ok`. Lay it beside the
    /// servers' logs or traces to see when the tail happened. At most 100,000 lines.
    #[arg(long)]
    slow_log: Option<PathBuf>,
    /// The threshold of --slow-log, in milliseconds.
    #[arg(long, default_value_t = 10.0)]
    slow_ms: f64,
}

/// How requests reach the cluster.
#[derive(Clone)]
enum Conn {
    Sdk(Client),
    Http(Arc<HttpPool>),
}

/// One key operation of a workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Act {
    Incr,
    SetAdd,
    MapUpdate,
    Put,
    Get,
    CounterGet,
}

fn parse_quorum(text: &Option<String>) -> Result<Option<Quorum>, String> {
    text.as_deref().map(str::parse).transpose()
}

/// Picks keys: uniform, zipfian (YCSB's generator, θ = 0.99, scrambled) or one hot key.
struct KeyChooser {
    dist: Distribution,
    n: u64,
    zipf: Option<Zipf>,
}

struct Zipf {
    alpha: f64,
    zetan: f64,
    eta: f64,
    theta: f64,
}

impl Zipf {
    fn new(n: u64, theta: f64) -> Zipf {
        let zeta = |k: u64| (1..=k).map(|i| 1.0 / (i as f64).powf(theta)).sum::<f64>();
        let zetan = zeta(n);
        let zeta2 = zeta(2);
        Zipf {
            alpha: 1.0 / (1.0 - theta),
            zetan,
            eta: (1.0 - (2.0 / n as f64).powf(1.0 - theta)) / (1.0 - zeta2 / zetan),
            theta,
        }
    }

    /// A rank in `0..n` (0 the most popular).
    fn sample(&self, n: u64, u: f64) -> u64 {
        let uz = u * self.zetan;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1;
        }
        // In [0, n] for u in [0, 1): the float fits a u64.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let rank = (n as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        rank.min(n - 1)
    }
}

impl KeyChooser {
    fn new(dist: Distribution, n: u64) -> KeyChooser {
        let zipf = (dist == Distribution::Zipfian).then(|| Zipf::new(n, 0.99));
        KeyChooser { dist, n, zipf }
    }

    fn pick(&self, rng: &mut SmallRng) -> u64 {
        match (self.dist, &self.zipf) {
            (Distribution::Hot, _) => 0,
            (Distribution::Zipfian, Some(z)) => {
                // Scramble ranks so the hot keys land on different partitions.
                let rank = z.sample(self.n, rng.gen::<f64>());
                rank.wrapping_mul(0x9E37_79B9_7F4A_7C15) % self.n
            }
            _ => rng.gen_range(0..self.n),
        }
    }
}

/// Chooses each request's action.
fn action(w: Workload, target: Target, rng: &mut SmallRng) -> Act {
    let update = match target {
        Target::Counter => Act::Incr,
        Target::Register => Act::Put,
    };
    let read = match target {
        Target::Counter => Act::CounterGet,
        Target::Register => Act::Get,
    };
    let reads = |p: f64, rng: &mut SmallRng| if rng.gen::<f64>() < p { read } else { update };
    match w {
        Workload::CounterIncr => Act::Incr,
        Workload::SetAdd => Act::SetAdd,
        Workload::MapUpdate => Act::MapUpdate,
        Workload::RegisterPut => Act::Put,
        Workload::RegisterGet => Act::Get,
        Workload::YcsbA => reads(0.5, rng),
        Workload::YcsbB => reads(0.95, rng),
        Workload::YcsbC => read,
    }
}

/// What every worker shares.
struct Shared {
    conn: Conn,
    bucket: String,
    options: Options,
    value: Vec<u8>,
    keys: KeyChooser,
    workload: Workload,
    target: Target,
    batch: usize,
    /// Acknowledged and failed increments per key (counter workloads only).
    acked: Vec<AtomicU64>,
    failed: Vec<AtomicU64>,
    /// Each counter's value before the run (`None`: it could not be read, so it is not
    /// checked); zero in a fresh bucket.
    start: Vec<Option<i64>>,
    /// Set once the measured window is over; the pacer watches it too.
    stop: Arc<AtomicBool>,
    /// The measured window: its start once begun, and its end once over. The closed loop
    /// measures the requests that finish inside it; the open loop those meant to leave
    /// inside it, however late they finish.
    window: std::sync::Mutex<(Option<Instant>, Option<Instant>)>,
    done: AtomicU64,
    errors: AtomicU64,
    /// With `--slow-log`: the measured requests over its threshold.
    slow: Option<SlowLog>,
}

fn key_name(k: u64) -> String {
    format!("k{k:08}")
}

impl Shared {
    fn set_window(&self, start: Option<Instant>, end: Option<Instant>) {
        *self.window.lock().unwrap_or_else(|e| e.into_inner()) = (start, end);
    }

    /// Whether the measured window is open now.
    fn measuring(&self) -> bool {
        let (start, end) = *self.window.lock().unwrap_or_else(|e| e.into_inner());
        start.is_some() && end.is_none()
    }

    /// Notes a measured request for `--slow-log`, if asked for.
    fn note_slow(&self, sent: Instant, latency: Duration, late: Option<Duration>, ok: bool) {
        if let Some(log) = &self.slow {
            log.note(sent, latency, late, ok);
        }
    }

    /// Whether a request meant to leave at `intended` is one the run measures.
    fn in_window(&self, intended: Instant) -> bool {
        let (start, end) = *self.window.lock().unwrap_or_else(|e| e.into_inner());
        start.is_some_and(|s| intended >= s) && end.is_none_or(|e| intended < e)
    }

    /// Runs one request (`batch` operations); returns whether it succeeded.
    async fn one(&self, rng: &mut SmallRng) -> bool {
        let mut items = Vec::with_capacity(self.batch);
        for _ in 0..self.batch {
            items.push((self.keys.pick(rng), action(self.workload, self.target, rng)));
        }
        let member = format!("m{}", rng.gen::<u32>());
        let ok = match &self.conn {
            Conn::Sdk(c) if items.len() > 1 => self.sdk_batch(c, &items, &member).await,
            Conn::Sdk(c) => self.sdk_one(c, items[0], &member).await,
            Conn::Http(h) => self.http_one(h, items[0], &member).await,
        };
        for (key, act) in &items {
            if *act == Act::Incr {
                let slot = usize::try_from(*key).unwrap_or(0);
                let counts = if ok { &self.acked } else { &self.failed };
                if let Some(c) = counts.get(slot) {
                    c.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        ok
    }

    async fn sdk_one(&self, c: &Client, (key, act): (u64, Act), member: &str) -> bool {
        let key = key_name(key);
        let b = &self.bucket;
        let o = self.options;
        match act {
            Act::Incr => c.counter(b, &key).with(o).increment(1).await.is_ok(),
            Act::CounterGet => c.counter(b, &key).with(o).get().await.is_ok(),
            Act::SetAdd => c.set(b, &key).with(o).insert(member).await.is_ok(),
            Act::MapUpdate => c
                .map(b, &key)
                .with(o)
                .update(|m| {
                    m.counter("n").increment(1);
                    m.register("last").assign(member);
                })
                .await
                .is_ok(),
            Act::Put => c
                .register(b, &key)
                .with(o)
                .assign(&self.value)
                .await
                .is_ok(),
            Act::Get => c.register(b, &key).with(o).get().await.is_ok(),
        }
    }

    async fn sdk_batch(&self, c: &Client, items: &[(u64, Act)], member: &str) -> bool {
        let ops = items
            .iter()
            .map(|(key, act)| {
                let op = match act {
                    Act::Incr => Some(cairn_client::BatchOp::increment(1)),
                    Act::SetAdd => Some(cairn_client::BatchOp::add(member).ack_only()),
                    Act::Put => Some(cairn_client::BatchOp::assign(&self.value)),
                    Act::Get | Act::CounterGet => None,
                    Act::MapUpdate => Some(cairn_client::BatchOp::map_increment("n", 1)),
                };
                (self.bucket.clone(), key_name(*key), op)
            })
            .collect();
        match c.batch(ops, self.options).await {
            Ok(results) => results.iter().all(Result::is_ok),
            Err(_) => false,
        }
    }

    async fn http_one(&self, h: &HttpPool, (key, act): (u64, Act), member: &str) -> bool {
        let mut path = format!(
            "/v1/buckets/{}/keys/{}{}",
            self.bucket,
            key_name(key),
            h.query
        );
        if act == Act::SetAdd {
            path.push(if h.query.is_empty() { '?' } else { '&' });
            path.push_str("ack_only=true");
        }
        let body = match act {
            Act::Incr => Some(json!({"type": "counter", "op": {"increment": 1}})),
            Act::SetAdd => Some(json!({"type": "set", "op": {"add": [member]}})),
            Act::MapUpdate => Some(json!({"type": "map", "op": {"update": {
                "n": {"type": "counter", "op": {"increment": 1}},
                "last": {"type": "register", "op": {"assign": member}}}}})),
            Act::Put => Some(
                json!({"type": "register", "op": {"assign": String::from_utf8_lossy(&self.value)}}),
            ),
            Act::Get | Act::CounterGet => None,
        };
        match h.request(&path, body).await {
            Ok(status) => {
                status == 200
                    || (status == 204 && act == Act::SetAdd)
                    || (status == 404 && body_is_read(act))
            }
            Err(_) => false,
        }
    }
}

fn body_is_read(act: Act) -> bool {
    matches!(act, Act::Get | Act::CounterGet)
}

/// A keep-alive HTTP/1.1 client pool over the nodes' URLs.
struct HttpPool {
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Full<bytes::Bytes>,
    >,
    urls: Vec<String>,
    next: AtomicU64,
    query: String,
}

impl HttpPool {
    async fn request(&self, path: &str, body: Option<serde_json::Value>) -> Result<u16, String> {
        self.exchange(path, body).await.map(|(status, _)| status)
    }

    /// A counter's value, read with `r=all`; 0 for one never written (as the SDK reads
    /// it), `None` when the read failed.
    async fn counter(&self, bucket: &str, key: &str) -> Option<i64> {
        let path = format!("/v1/buckets/{bucket}/keys/{key}?r=all");
        let (status, body) = self.exchange(&path, None).await.ok()?;
        match status {
            200 => serde_json::from_slice::<serde_json::Value>(&body).ok()?["value"].as_i64(),
            404 => Some(0),
            _ => None,
        }
    }

    async fn exchange(
        &self,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(u16, bytes::Bytes), String> {
        use http_body_util::BodyExt;
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let base = &self.urls[usize::try_from(n).unwrap_or(0) % self.urls.len()];
        let uri: hyper::Uri = format!("{base}{path}")
            .parse()
            .map_err(|e| format!("{e}"))?;
        let (method, bytes) = match body {
            Some(b) => (hyper::Method::POST, bytes::Bytes::from(b.to_string())),
            None => (hyper::Method::GET, bytes::Bytes::new()),
        };
        let req = hyper::Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes))
            .map_err(|e| e.to_string())?;
        let resp = self.client.request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        // Read the whole body: the connection is then reused.
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        Ok((status, body))
    }
}

/// CPU seconds (user + system) a process has used, from /proc.
fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let text = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // USER_HZ is 100 on Linux everywhere it matters.
    Some(ticks / 100.0)
}

pub(crate) fn run(args: BenchArgs) -> Result<(), String> {
    if args.keys == 0 || args.keys > KEYS_MAX {
        return Err(format!("--keys must be 1..={KEYS_MAX}"));
    }
    if args.batch == 0 || args.batch > cairn_proto::client::BATCH_MAX {
        return Err(format!(
            "--batch must be 1..={}",
            cairn_proto::client::BATCH_MAX
        ));
    }
    for (name, secs) in [("--warmup", args.warmup), ("--duration", args.duration)] {
        if !(0.0..=86_400.0).contains(&secs) {
            return Err(format!("{name} must be 0..=86400 seconds"));
        }
    }
    if args.duration == 0.0 {
        return Err("--duration must be above zero".into());
    }
    if args.concurrency == Some(0) || args.rate == Some(0) {
        return Err("--concurrency and --rate must be at least 1".into());
    }
    if !(1..=THREADS_MAX).contains(&args.threads) {
        return Err(format!("--threads must be 1..={THREADS_MAX}"));
    }
    if !(0.0..=86_400_000.0).contains(&args.slow_ms) {
        return Err("--slow-ms must be 0..=86400000 milliseconds".into());
    }
    if args.batch > 1 && args.http {
        return Err("--batch needs the native protocol (drop --http)".into());
    }
    // One thread is a current-thread runtime: it runs woken tasks in order, so requests
    // that workers issue together leave in shared QUIC packets (the multi-thread
    // scheduler runs a woken connection driver at once, one packet per request). It
    // measured 15 -> 10 us of load-generator CPU per increment.
    let runtime = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    }
    .map_err(|e| e.to_string())?;
    runtime.block_on(bench(args))
}

async fn connect(args: &BenchArgs) -> Result<Conn, String> {
    let nodes: Vec<String> = args.nodes.split(',').map(|s| s.trim().to_owned()).collect();
    if args.http {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_max_idle_per_host(4096)
                .build_http();
        let mut query = Vec::new();
        for (name, v) in [("w", &args.w), ("r", &args.r)] {
            if let Some(v) = v {
                query.push(format!("{name}={v}"));
            }
        }
        let query = if query.is_empty() {
            String::new()
        } else {
            format!("?{}", query.join("&"))
        };
        return Ok(Conn::Http(Arc::new(HttpPool {
            client,
            urls: nodes
                .into_iter()
                .map(|u| u.trim_end_matches('/').to_owned())
                .collect(),
            next: AtomicU64::new(0),
            query,
        })));
    }
    let client = Client::builder()
        .nodes(nodes)
        .ca_cert(args.dir.join("ca/ca.pem"))
        .client_cert(
            args.dir.join("client/client.pem"),
            args.dir.join("client/client-key.pem"),
        )
        .build()
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    Ok(Conn::Sdk(client))
}

async fn bench(args: BenchArgs) -> Result<(), String> {
    let slow = match &args.slow_log {
        Some(path) => Some(
            SlowLog::create(path, Duration::from_secs_f64(args.slow_ms / 1e3))
                .map_err(|e| format!("{}: {e}", path.display()))?,
        ),
        None => None,
    };
    let conn = connect(&args).await?;
    let options = Options {
        w: parse_quorum(&args.w)?,
        r: parse_quorum(&args.r)?,
        ..Options::default()
    };
    let counting = matches!(args.workload, Workload::CounterIncr)
        || (args.ycsb_type == Target::Counter
            && matches!(args.workload, Workload::YcsbA | Workload::YcsbB));
    let slots = if counting {
        usize::try_from(args.keys).unwrap_or(0)
    } else {
        0
    };
    let bucket = args.bucket.clone().unwrap_or_else(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        format!("bench-{t}")
    });
    let start = match &args.bucket {
        Some(_) => baseline(&conn, &bucket, slots).await,
        None => vec![Some(0); slots],
    };
    let shared = Arc::new(Shared {
        conn,
        bucket,
        options,
        value: vec![b'v'; args.value_size],
        keys: KeyChooser::new(args.distribution, args.keys),
        workload: args.workload,
        target: args.ycsb_type,
        batch: args.batch,
        acked: (0..slots).map(|_| AtomicU64::new(0)).collect(),
        failed: (0..slots).map(|_| AtomicU64::new(0)).collect(),
        start,
        stop: Arc::new(AtomicBool::new(false)),
        window: std::sync::Mutex::new((None, None)),
        done: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        slow,
    });
    if matches!(
        args.workload,
        Workload::RegisterGet | Workload::YcsbA | Workload::YcsbB | Workload::YcsbC
    ) {
        load(&shared, args.keys).await;
    }
    let pids_cpu0: Vec<Option<f64>> = args.pids.iter().map(|p| cpu_seconds(Some(*p))).collect();
    let self_cpu0 = cpu_seconds(None);
    let (hist, lateness, measured) = match args.rate {
        None => {
            let (hist, measured) =
                closed_loop(&shared, args.concurrency.unwrap_or(64), &args).await;
            (hist, None, measured)
        }
        Some(rate) => {
            let run = open_loop(
                &shared,
                rate,
                args.concurrency.unwrap_or(OPEN_LOOP_IN_FLIGHT),
                &args,
            )
            .await?;
            (run.latency, Some(run.lateness), run.measured)
        }
    };
    let ops = hist.len() * u64::try_from(args.batch).unwrap_or(1);
    let errors = shared.errors.load(Ordering::Relaxed);
    let throughput = ops as f64 / measured.as_secs_f64();
    let self_cpu = self_cpu0.zip(cpu_seconds(None)).map(|(a, b)| b - a);
    let server_cpu: f64 = args
        .pids
        .iter()
        .zip(&pids_cpu0)
        .filter_map(|(p, c0)| c0.zip(cpu_seconds(Some(*p))).map(|(a, b)| b - a))
        .sum();
    let check = if counting {
        Some(check_counters(&shared).await)
    } else {
        None
    };
    let q = |p: f64| hist.value_at_quantile(p);
    let mut report = json!({
        "workload": format!("{:?}", args.workload),
        "protocol": if args.http { "http" } else { "native" },
        "distribution": format!("{:?}", args.distribution),
        "keys": args.keys,
        "mode": match args.rate { Some(r) => json!({"open_loop_rate": r}), None => json!({"closed_loop_concurrency": args.concurrency.unwrap_or(64)}) },
        "batch": args.batch,
        "seconds": measured.as_secs_f64(),
        "operations": ops,
        "errors": errors,
        "throughput_ops_per_s": throughput,
        "latency_us": {"p50": q(0.5), "p99": q(0.99), "p999": q(0.999), "max": hist.max(), "mean": hist.mean()},
        "client_cpu_us_per_op": self_cpu.map(|c| c * 1e6 / ops.max(1) as f64),
    });
    if let Some(l) = &lateness {
        let q = |p: f64| l.value_at_quantile(p);
        report["send_lateness_us"] =
            json!({"p50": q(0.5), "p99": q(0.99), "p999": q(0.999), "max": l.max()});
    }
    if !args.pids.is_empty() {
        report["server_cpu_us_per_op"] = json!(server_cpu * 1e6 / ops.max(1) as f64);
    }
    if let Some(c) = &check {
        report["counter_check"] = c.clone();
    }
    if let Some(written) = write_slow_log(&shared, &args)? {
        report["slow_log"] = written;
    }
    print_report(&report);
    if let Some(path) = &args.json {
        std::fs::write(
            path,
            serde_json::to_string_pretty(&report).unwrap_or_default(),
        )
        .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    match check {
        Some(c) if c["ok"] != json!(true) => Err(check_failure(&c)),
        _ => Ok(()),
    }
}

/// Writes `--slow-log`, if asked for, and says what it wrote (for the report).
fn write_slow_log(shared: &Shared, args: &BenchArgs) -> Result<Option<serde_json::Value>, String> {
    let (Some(log), Some(path)) = (&shared.slow, &args.slow_log) else {
        return Ok(None);
    };
    let (start, _) = *shared.window.lock().unwrap_or_else(|e| e.into_inner());
    let start = start.unwrap_or_else(Instant::now);
    // The window's start on the wall clock, for lines laid beside servers' logs.
    let now = std::time::SystemTime::now();
    let start_unix = now.checked_sub(start.elapsed()).unwrap_or(now);
    let written = log
        .write(start, start_unix)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Some(json!({
        "path": path.display().to_string(),
        "threshold_ms": args.slow_ms,
        "written": written.lines,
        "not_written": written.not_written,
    })))
}

/// Writes every key once so reads find values.
async fn load(shared: &Arc<Shared>, keys: u64) {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (shared, next) = (shared.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= keys {
                    return;
                }
                let act = match shared.target {
                    Target::Counter if shared.workload != Workload::RegisterGet => Act::Incr,
                    _ => Act::Put,
                };
                let ok = match &shared.conn {
                    Conn::Sdk(c) => shared.sdk_one(c, (k, act), "load").await,
                    Conn::Http(h) => shared.http_one(h, (k, act), "load").await,
                };
                if act == Act::Incr {
                    let counts = if ok { &shared.acked } else { &shared.failed };
                    if let Some(c) = counts.get(usize::try_from(k).unwrap_or(0)) {
                        c.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

fn new_histogram() -> Histogram<u64> {
    // 1 µs to 100 s at 3 significant digits; the bounds are constants, so this holds.
    Histogram::new_with_bounds(1, 100_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = micros(d).max(1);
    let _ = h.record(us.min(h.high()));
}

/// Drives warm-up and measurement; returns when the measured window is over.
async fn phases(shared: &Shared, args: &BenchArgs) -> Duration {
    let progress = !args.no_progress;
    tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
    shared.done.store(0, Ordering::Relaxed);
    shared.errors.store(0, Ordering::Relaxed);
    let start = Instant::now();
    shared.set_window(Some(start), None);
    let total = Duration::from_secs_f64(args.duration);
    let mut last = (Instant::now(), 0);
    while start.elapsed() < total {
        tokio::time::sleep(Duration::from_millis(500).min(total.saturating_sub(start.elapsed())))
            .await;
        if progress {
            let done = shared.done.load(Ordering::Relaxed);
            let rate = (done - last.1) as f64 / last.0.elapsed().as_secs_f64();
            last = (Instant::now(), done);
            let pct = (start.elapsed().as_secs_f64() / total.as_secs_f64() * 100.0).min(100.0);
            // 0..=20 cells.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let bar = "#".repeat((pct / 5.0) as usize);
            eprint!(
                "\r[{bar:<20}] {pct:5.1}%  {done} requests  {rate:9.0}/s  errors {}   ",
                shared.errors.load(Ordering::Relaxed)
            );
        }
    }
    shared.set_window(Some(start), Some(Instant::now()));
    shared.stop.store(true, Ordering::Release);
    if progress {
        eprintln!();
    }
    start.elapsed()
}

async fn closed_loop(
    shared: &Arc<Shared>,
    workers: usize,
    args: &BenchArgs,
) -> (Histogram<u64>, Duration) {
    let mut tasks = Vec::new();
    for w in 0..workers {
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = SmallRng::seed_from_u64(w as u64);
            let mut hist = new_histogram();
            while !shared.stop.load(Ordering::Acquire) {
                let t = Instant::now();
                let ok = shared.one(&mut rng).await;
                if shared.measuring() {
                    let took = t.elapsed();
                    record(&mut hist, took);
                    shared.note_slow(t, took, None, ok);
                    shared.done.fetch_add(1, Ordering::Relaxed);
                    if !ok {
                        shared.errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            hist
        }));
    }
    let measured = phases(shared, args).await;
    let mut hist = new_histogram();
    for t in tasks {
        if let Ok(h) = t.await {
            let _ = hist.add(&h);
        }
    }
    (hist, measured)
}

/// Longest the pacer sleeps before looking at the stop flag again.
const PACER_NAP: Duration = Duration::from_millis(50);

/// Shortest the pacer sleeps. Above one request per granule (5,000/s), one wakeup hands
/// over every request that came due meanwhile, so the pacer wakes at most 5,000 times a
/// second rather than once per request. Waking per request took ~12% of a core at
/// 18,000/s on the 2-core machine the comparison runs on, CPU the nodes under test
/// lacked. The requests it holds leave up to this much late (less its own wakeup's
/// delay), which their latency and the reported lateness both count.
const PACER_GRANULE: Duration = Duration::from_micros(200);

/// What an open-loop run measured.
struct OpenLoop {
    /// From each request's intended send time to its answer.
    latency: Histogram<u64>,
    /// From each request's intended send time to the moment its task started (before the
    /// client encodes and sends it): the load generator's own delay, included in
    /// `latency`.
    lateness: Histogram<u64>,
    measured: Duration,
}

/// The moment request `i` is meant to leave, `rate` per second after `start` (`None`
/// past what the clock can count, centuries on).
fn intended_at(start: Instant, rate: u64, i: u64) -> Option<Instant> {
    // Whole nanoseconds from the start: no drift from a rounded interval.
    let nanos = u128::from(i) * 1_000_000_000 / u128::from(rate.max(1));
    start.checked_add(Duration::from_nanos(u64::try_from(nanos).ok()?))
}

/// The open loop's clock: yields each request's intended send time once it has come,
/// never one early, sleeping at least [`PACER_GRANULE`] between wakeups, until `stop` is
/// set.
///
/// It runs on the generator's runtime thread and sleeps on an [`Alarm`], not a tokio
/// timer: those tick in whole milliseconds, and a sleep ends on the first tick after its
/// deadline, so requests left up to about a millisecond late, a tick's worth at once.
/// Timed from the intended moment (as they must be), that delay counted as the server's:
/// one node at 2,000/s measured p50 1.39 ms this way, against 0.25 ms for one request at
/// a time. What delay is left, CPU waits included, is reported as the generator's
/// lateness.
struct Pacer {
    start: Instant,
    rate: u64,
    /// The next request's number.
    next: u64,
    stop: Arc<AtomicBool>,
    alarm: Alarm,
}

impl Pacer {
    fn new(rate: u64, stop: Arc<AtomicBool>) -> std::io::Result<Self> {
        Ok(Pacer {
            start: Instant::now(),
            rate,
            next: 0,
            stop,
            alarm: Alarm::new()?,
        })
    }

    /// The next intended send time, once it has come; `None` once told to stop (or past
    /// what the clock can count).
    async fn due(&mut self) -> Option<Instant> {
        loop {
            if self.stop.load(Ordering::Acquire) {
                return None;
            }
            let intended = intended_at(self.start, self.rate, self.next)?;
            let now = Instant::now();
            if intended <= now {
                self.next += 1;
                return Some(intended);
            }
            let nap = intended.saturating_duration_since(now);
            if self
                .alarm
                .sleep(nap.clamp(PACER_GRANULE, PACER_NAP))
                .await
                .is_err()
            {
                return None;
            }
        }
    }
}

/// A sleep precise to microseconds on the runtime's own thread: a `timerfd` the runtime
/// polls with its sockets. Until session 27 the pacer was a thread of its own that slept
/// and handed each due time to the runtime through a queue: two threads woken per
/// granule instead of one, on the two cores the nodes under test share.
#[cfg(target_os = "linux")]
struct Alarm(tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>);

#[cfg(target_os = "linux")]
impl Alarm {
    fn new() -> std::io::Result<Self> {
        use rustix::time::{timerfd_create, TimerfdClockId, TimerfdFlags};
        let flags = TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC;
        let fd = timerfd_create(TimerfdClockId::Monotonic, flags)?;
        // Deprecated because an arbitrary `AsRawFd` may hand back another descriptor
        // later (tokio#8587); an `OwnedFd` owned by the `AsyncFd` cannot. `register`, the
        // replacement, is an `unsafe fn`, and the workspace forbids unsafe code.
        #[allow(deprecated)]
        let fd = tokio::io::unix::AsyncFd::new(fd)?;
        Ok(Alarm(fd))
    }

    /// Sleeps for `nap` (more than zero: a zero `it_value` would disarm the timer).
    async fn sleep(&self, nap: Duration) -> std::io::Result<()> {
        use rustix::time::{timerfd_settime, Itimerspec, TimerfdTimerFlags, Timespec};
        let value = Timespec {
            tv_sec: i64::try_from(nap.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(nap.subsec_nanos()),
        };
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let spec = Itimerspec {
            it_interval: zero,
            it_value: value,
        };
        timerfd_settime(self.0.get_ref(), TimerfdTimerFlags::empty(), &spec)?;
        loop {
            let mut ready = self.0.readable().await?;
            // The expiry count (8 bytes); reading it rearms readiness.
            let mut expiries = [0u8; 8];
            match ready.try_io(|fd| Ok(rustix::io::read(fd.get_ref(), &mut expiries)?)) {
                Ok(read) => return read.map(drop),
                Err(_would_block) => continue,
            }
        }
    }
}

/// Elsewhere, tokio's millisecond timer: coarser, as the pacer's doc says.
#[cfg(not(target_os = "linux"))]
struct Alarm;

#[cfg(not(target_os = "linux"))]
impl Alarm {
    fn new() -> std::io::Result<Self> {
        Ok(Alarm)
    }

    async fn sleep(&self, nap: Duration) -> std::io::Result<()> {
        tokio::time::sleep(nap).await;
        Ok(())
    }
}

async fn open_loop(
    shared: &Arc<Shared>,
    rate: u64,
    in_flight: usize,
    args: &BenchArgs,
) -> Result<OpenLoop, String> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Duration, Duration)>();
    let mut pacer = Pacer::new(rate, shared.stop.clone())
        .map_err(|e| format!("cannot start the open loop's timer: {e}"))?;
    let permits = Arc::new(tokio::sync::Semaphore::new(in_flight));
    let driver = {
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut rng = SmallRng::seed_from_u64(7);
            // Past the window nothing more is sent.
            while let Some(intended) = pacer.due().await {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                let (shared, tx) = (shared.clone(), tx.clone());
                let seed = rng.gen::<u64>();
                tokio::spawn(async move {
                    let mut rng = SmallRng::seed_from_u64(seed);
                    let late = intended.elapsed();
                    let ok = shared.one(&mut rng).await;
                    // By when it was meant to leave, not when it finished: the slowest
                    // requests of the window end after it, and they are the tail.
                    if shared.in_window(intended) {
                        // One reading, so the slow log and the histogram agree.
                        let took = intended.elapsed();
                        shared.note_slow(intended, took, Some(late), ok);
                        let _ = tx.send((took, late));
                        shared.done.fetch_add(1, Ordering::Relaxed);
                        if !ok {
                            shared.errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    drop(permit);
                });
            }
        })
    };
    let collector = tokio::spawn(async move {
        let (mut latency, mut lateness) = (new_histogram(), new_histogram());
        while let Some((d, late)) = rx.recv().await {
            record(&mut latency, d);
            record(&mut lateness, late);
        }
        (latency, lateness)
    });
    let measured = phases(shared, args).await;
    // The pacer sees the stop flag within a nap, which ends the driver.
    let _ = driver.await;
    let (latency, lateness) = collector
        .await
        .unwrap_or_else(|_| (new_histogram(), new_histogram()));
    Ok(OpenLoop {
        latency,
        lateness,
        measured,
    })
}

/// One counter's value, read from every replica (`None`: the read failed).
async fn read_counter(conn: &Conn, bucket: &str, k: u64) -> Option<i64> {
    let key = key_name(k);
    match conn {
        Conn::Sdk(c) => {
            let all = Options::new().r(Quorum::All);
            c.counter(bucket, &key).with(all).get().await.ok()
        }
        Conn::Http(h) => h.counter(bucket, &key).await,
    }
}

/// Every counter's value before a run in a bucket that may hold them already. Counters
/// that cannot be read are retried for up to [`BASELINE_WAIT`]; any still unread are
/// named on stderr, and the check after the run skips them.
async fn baseline(conn: &Conn, bucket: &str, slots: usize) -> Vec<Option<i64>> {
    let mut start = vec![None; slots];
    let deadline = Instant::now() + BASELINE_WAIT;
    let mut missing: Vec<usize> = (0..slots).collect();
    loop {
        for (k, v) in counters_now(conn, bucket, &missing).await {
            start[k] = v;
        }
        missing.retain(|k| start[*k].is_none());
        if missing.is_empty() {
            return start;
        }
        if Instant::now() >= deadline {
            eprintln!(
                "cairn bench: {} of {slots} counters could not be read before the run \
                 (r = all, retried for {} s); they will be unchecked. Is every node up \
                 and synced?",
                missing.len(),
                BASELINE_WAIT.as_secs()
            );
            return start;
        }
        tokio::time::sleep(BASELINE_RETRY_PAUSE).await;
    }
}

/// The values of counters `keys` (`None` where the read failed), read
/// [`BASELINE_READS`] at a time.
async fn counters_now(conn: &Conn, bucket: &str, keys: &[usize]) -> Vec<(usize, Option<i64>)> {
    let mut out = Vec::with_capacity(keys.len());
    let mut reads = tokio::task::JoinSet::new();
    for &k in keys {
        if reads.len() >= BASELINE_READS {
            if let Some(Ok(done)) = reads.join_next().await {
                out.push(done);
            }
        }
        let (conn, bucket) = (conn.clone(), bucket.to_owned());
        reads.spawn(async move { (k, read_counter(&conn, &bucket, k as u64).await) });
    }
    while let Some(done) = reads.join_next().await {
        if let Ok(done) = done {
            out.push(done);
        }
    }
    out
}

/// How a counter's growth over a run compares with the increments sent to it.
#[derive(Debug, PartialEq, Eq)]
enum Growth {
    /// At least every acknowledged increment, at most every one sent.
    Within,
    /// Less than was acknowledged: an acknowledged increment is missing.
    Short,
    /// More than was sent, or less than it started at with nothing acknowledged: someone
    /// else changed it (another load generator on the same bucket), or an increment was
    /// applied twice.
    Over,
}

/// Judges a counter that grew by `added` after `acked` acknowledged increments and
/// `failed` ones that failed or timed out (those may or may not have been applied).
fn judge(added: i64, acked: u64, failed: u64) -> Growth {
    let Ok(added) = u64::try_from(added) else {
        // It went down: acknowledged increments are missing, if there were any.
        return if acked > 0 {
            Growth::Short
        } else {
            Growth::Over
        };
    };
    if added < acked {
        Growth::Short
    } else if added > acked.saturating_add(failed) {
        Growth::Over
    } else {
        Growth::Within
    }
}

/// Reads every counter back (r = all) and checks acknowledged ≤ value - start ≤ sent. A
/// key whose value could not be read, before or after the run, is unchecked, and fails
/// the check if it had acknowledged increments.
async fn check_counters(shared: &Shared) -> serde_json::Value {
    let (mut checked, mut acked_total, mut read_total) = (0u64, 0u64, 0i64);
    let (mut short, mut over) = (0u64, 0u64);
    // Keys with acknowledged increments whose value could not be read before, or after.
    let (mut unread_before, mut unread_after) = (0u64, 0u64);
    for (k, acked) in shared.acked.iter().enumerate() {
        let acked = acked.load(Ordering::Relaxed);
        let failed = shared.failed[k].load(Ordering::Relaxed);
        if acked + failed == 0 {
            continue;
        }
        let Some(start) = shared.start[k] else {
            unread_before += u64::from(acked > 0);
            continue;
        };
        let Some(value) = read_counter(&shared.conn, &shared.bucket, k as u64).await else {
            unread_after += u64::from(acked > 0);
            continue;
        };
        let added = value.saturating_sub(start);
        checked += 1;
        acked_total += acked;
        read_total += added;
        match judge(added, acked, failed) {
            Growth::Within => {}
            Growth::Short => short += 1,
            Growth::Over => over += 1,
        }
    }
    let unchecked = unread_before + unread_after;
    json!({"keys_checked": checked, "keys_unchecked": unchecked,
        "keys_unread_before": unread_before, "keys_unread_after": unread_after,
        "acknowledged": acked_total, "read": read_total,
        "keys_out_of_bounds": short + over, "keys_short": short, "keys_over": over,
        "ok": short + over == 0 && unchecked == 0})
}

/// What a failed counter check found, for the error the command ends with.
fn check_failure(c: &serde_json::Value) -> String {
    let n = |k: &str| c[k].as_u64().unwrap_or(0);
    let mut found = Vec::new();
    if n("keys_short") > 0 {
        found.push(format!(
            "counters lacking acknowledged increments: {}",
            n("keys_short")
        ));
    }
    if n("keys_over") > 0 {
        found.push(format!(
            "counters changed other than by this run's increments (another writer on this bucket?): {}",
            n("keys_over")
        ));
    }
    if n("keys_unread_before") > 0 {
        found.push(format!(
            "counters that could not be read before the run (was the cluster still starting?): {}",
            n("keys_unread_before")
        ));
    }
    if n("keys_unread_after") > 0 {
        found.push(format!(
            "counters that could not be read back: {}",
            n("keys_unread_after")
        ));
    }
    if found.is_empty() {
        found.push("the report does not say why".to_string());
    }
    format!("counter check failed: {}", found.join("; "))
}

fn print_report(r: &serde_json::Value) {
    let l = &r["latency_us"];
    println!(
        "{} over {} ({} keys, {}), {}: {} ops in {:.1} s = {:.0} op/s, {} errors",
        r["workload"].as_str().unwrap_or("?"),
        r["protocol"].as_str().unwrap_or("?"),
        r["keys"],
        r["distribution"].as_str().unwrap_or("?"),
        r["mode"],
        r["operations"],
        r["seconds"].as_f64().unwrap_or(0.0),
        r["throughput_ops_per_s"].as_f64().unwrap_or(0.0),
        r["errors"],
    );
    println!(
        "latency µs: p50 {}  p99 {}  p99.9 {}  max {}  (mean {:.0})",
        l["p50"],
        l["p99"],
        l["p999"],
        l["max"],
        l["mean"].as_f64().unwrap_or(0.0)
    );
    let late = &r["send_lateness_us"];
    if !late.is_null() {
        println!(
            "started late by µs (the load generator's own share of the above): p50 {}  p99 {}  p99.9 {}  max {}",
            late["p50"], late["p99"], late["p999"], late["max"]
        );
    }
    if let Some(c) = r["client_cpu_us_per_op"].as_f64() {
        print!("CPU per op: load generator {c:.1} µs");
        if let Some(s) = r["server_cpu_us_per_op"].as_f64() {
            print!(", servers {s:.1} µs");
        }
        println!();
    }
    if let Some(c) = r.get("counter_check") {
        println!(
            "counter check: {} keys ({} unreadable), {} increments acknowledged, counters grew {}: {}",
            c["keys_checked"],
            c["keys_unchecked"],
            c["acknowledged"],
            c["read"],
            if c["ok"] == json!(true) {
                "every acknowledged increment is there"
            } else if c["keys_short"] != json!(0) {
                "MISSING INCREMENTS"
            } else if c["keys_over"] != json!(0) {
                "COUNTERS CHANGED BY ANOTHER WRITER"
            } else {
                "COUNTERS THAT COULD NOT BE READ"
            }
        );
    }
    let slow = &r["slow_log"];
    if !slow.is_null() {
        println!(
            "requests over {} ms: {} written to {} ({} more not written)",
            slow["threshold_ms"],
            slow["written"],
            slow["path"].as_str().unwrap_or("?"),
            slow["not_written"]
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counter_is_judged_against_what_was_acknowledged_and_sent() {
        assert_eq!(judge(5, 5, 0), Growth::Within);
        assert_eq!(
            judge(7, 5, 2),
            Growth::Within,
            "failed ones may have landed"
        );
        assert_eq!(judge(4, 5, 2), Growth::Short);
        assert_eq!(
            judge(-1, 2, 0),
            Growth::Short,
            "went down, lost acknowledged ones"
        );
        assert_eq!(
            judge(-1, 0, 3),
            Growth::Over,
            "went down, nothing acknowledged"
        );
        assert_eq!(judge(8, 5, 2), Growth::Over);
        let c = json!({"keys_short": 0, "keys_over": 3, "keys_unchecked": 3,
            "keys_unread_before": 2, "keys_unread_after": 1});
        let e = check_failure(&c);
        assert!(
            e.contains(
                "changed other than by this run's increments (another writer on this bucket?): 3"
            ),
            "{e}"
        );
        assert!(e.contains("could not be read back: 1"), "{e}");
        assert!(
            e.contains("could not be read before the run (was the cluster still starting?): 2"),
            "{e}"
        );
        assert!(!e.contains("lack"), "{e}");
    }

    #[test]
    fn intended_send_times_keep_the_rate_without_drift() {
        let start = Instant::now();
        let at = |rate, i| intended_at(start, rate, i).unwrap() - start;
        assert_eq!(at(1000, 1) - at(1000, 0), Duration::from_millis(1));
        // 3 per second does not divide a second: the times stay on the exact thirds
        // instead of adding up a rounded interval.
        assert_eq!(at(3, 3_000_000), Duration::from_secs(1_000_000));
        assert_eq!(at(3, 1), Duration::from_nanos(333_333_333));
        // Past what a Duration of nanoseconds holds: no time, so the pacer stops,
        // rather than a wrapped one or a panic.
        assert_eq!(intended_at(start, 1, u64::MAX), None);
    }

    #[test]
    fn the_pacer_yields_each_intended_time_once_it_has_come_and_stops_when_told() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let stop = Arc::new(AtomicBool::new(false));
            let mut pacer = Pacer::new(1000, stop.clone()).unwrap();
            let mut times = Vec::new();
            for _ in 0..20 {
                let intended = pacer.due().await.unwrap();
                // Never early.
                assert!(intended <= Instant::now());
                times.push(intended);
            }
            // On the exact schedule: each 1 ms after the one before, none skipped or
            // repeated.
            for pair in times.windows(2) {
                assert_eq!(pair[1] - pair[0], Duration::from_millis(1));
            }
            // Faster than one per granule, times come in bursts, still on the schedule
            // and none early.
            let mut fast = Pacer::new(100_000, Arc::new(AtomicBool::new(false))).unwrap();
            let mut last = None;
            for _ in 0..2000 {
                let intended = fast.due().await.unwrap();
                assert!(intended <= Instant::now());
                if let Some(last) = last {
                    assert_eq!(intended - last, Duration::from_micros(10));
                }
                last = Some(intended);
            }
            // Told to stop, it yields nothing more, even mid-schedule.
            stop.store(true, Ordering::Release);
            assert_eq!(pacer.due().await, None);
        });
    }

    #[test]
    fn the_alarm_never_rings_early() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let alarm = Alarm::new().unwrap();
            for nap in [Duration::from_micros(200), Duration::from_millis(3)] {
                let before = Instant::now();
                alarm.sleep(nap).await.unwrap();
                assert!(before.elapsed() >= nap, "{nap:?}");
            }
        });
    }

    #[test]
    fn zipfian_ranks_stay_in_range_and_favour_the_first() {
        let n = 1000;
        let z = Zipf::new(n, 0.99);
        let mut rng = SmallRng::seed_from_u64(1);
        let mut counts = vec![0u32; 1000];
        for _ in 0..100_000 {
            let r = z.sample(n, rng.gen::<f64>());
            counts[usize::try_from(r).unwrap()] += 1;
        }
        assert!(counts[0] > counts[1] && counts[1] > counts[10] && counts[10] > counts[500]);
        // θ = 0.99 over 1,000 keys: the top key draws roughly 13% of requests.
        assert!((8_000..20_000).contains(&counts[0]), "{}", counts[0]);
        let chooser = KeyChooser::new(Distribution::Zipfian, n);
        assert!((0..10_000).all(|_| chooser.pick(&mut rng) < n));
        assert_eq!(KeyChooser::new(Distribution::Hot, n).pick(&mut rng), 0);
    }

    #[test]
    fn ycsb_mixes_match_their_ratios() {
        let mut rng = SmallRng::seed_from_u64(2);
        let reads = (0..10_000)
            .filter(|_| action(Workload::YcsbB, Target::Register, &mut rng) == Act::Get)
            .count();
        assert!((9_300..9_700).contains(&reads), "{reads}");
        assert!(
            (0..100).all(|_| action(Workload::YcsbC, Target::Counter, &mut rng) == Act::CounterGet)
        );
    }
}
