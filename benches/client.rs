//! SDK (QUIC, `cairn-client/1`) against HTTP/JSON for the same operation, a counter
//! increment, on one local node with durable (fsync) storage, in one run:
//!
//! - round-trip latency of one client doing increments one after another (p50, p99);
//! - throughput of 64 concurrent tasks (SDK) or threads (HTTP, keep-alive connections).
//!
//! Each measure runs `ROUNDS` times; the table shows the median and the spread (min–max).
//! The node runs in this process (its own runtime threads), so client and server share
//! this machine's two cores, as they do for every benchmark here.
//!
//! `cargo bench --bench client` (`-- --quick` for a short run).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_client::Client;
use cairn_server::testing::LocalNode;

const ROUNDS: usize = 3;
const CONCURRENCY: usize = 64;

struct Plan {
    sequential: usize,
    window: Duration,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    // Nearest rank: the index is below len, so the float fits.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn sdk_latency(client: &Client, n: usize) -> (Duration, Duration) {
    let counter = client.counter("bench", "sdk-seq");
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        counter.increment(1).await.expect("increment");
        lat.push(t.elapsed());
    }
    lat.sort();
    (percentile(&lat, 0.50), percentile(&lat, 0.99))
}

async fn sdk_throughput(client: &Client, window: Duration) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for t in 0..CONCURRENCY {
        let (client, done, stop) = (client.clone(), done.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let counter = client.counter("bench", format!("sdk-par-{t}"));
            while !stop.load(Ordering::Relaxed) {
                if counter.increment(1).await.is_ok() {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let start = Instant::now();
    tokio::time::sleep(window).await;
    let n = done.load(Ordering::Relaxed);
    let secs = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    n as f64 / secs
}

fn http_increment(agent: &ureq::Agent, url: &str) {
    agent
        .post(url)
        .set("content-type", "application/json")
        .send_string(r#"{"type":"counter","op":{"increment":1}}"#)
        .expect("http increment")
        .into_string()
        .expect("body");
}

fn http_latency(base: &str, n: usize) -> (Duration, Duration) {
    let agent = ureq::AgentBuilder::new().build();
    let url = format!("{base}/v1/buckets/bench/keys/http-seq");
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        http_increment(&agent, &url);
        lat.push(t.elapsed());
    }
    lat.sort();
    (percentile(&lat, 0.50), percentile(&lat, 0.99))
}

fn http_throughput(base: &str, window: Duration) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..CONCURRENCY)
        .map(|t| {
            let (done, stop) = (done.clone(), stop.clone());
            let url = format!("{base}/v1/buckets/bench/keys/http-par-{t}");
            std::thread::spawn(move || {
                let agent = ureq::AgentBuilder::new().build();
                while !stop.load(Ordering::Relaxed) {
                    http_increment(&agent, &url);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let start = Instant::now();
    std::thread::sleep(window);
    let n = done.load(Ordering::Relaxed);
    let secs = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    n as f64 / secs
}

fn median_spread(mut xs: Vec<f64>) -> (f64, f64, f64) {
    xs.sort_by(f64::total_cmp);
    (xs[xs.len() / 2], xs[0], xs[xs.len() - 1])
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let plan = if quick {
        Plan {
            sequential: 200,
            window: Duration::from_secs(1),
        }
    } else {
        Plan {
            sequential: 2000,
            window: Duration::from_secs(5),
        }
    };
    let node = LocalNode::start().expect("a local node starts");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let client = runtime.block_on(async {
        Client::builder()
            .nodes([node.quic()])
            .ca_cert(node.ca_cert())
            .client_cert(node.client_cert(), node.client_key())
            .build()
            .await
            .expect("client")
    });
    let base = node.http_url();
    // Warm-up: connections, the store's first commits.
    runtime.block_on(sdk_latency(&client, 100));
    http_latency(&base, 100);

    let (mut sdk_p50, mut sdk_p99, mut sdk_tput) = (vec![], vec![], vec![]);
    let (mut http_p50, mut http_p99, mut http_tput) = (vec![], vec![], vec![]);
    for round in 0..ROUNDS {
        let (p50, p99) = runtime.block_on(sdk_latency(&client, plan.sequential));
        sdk_p50.push(ms(p50));
        sdk_p99.push(ms(p99));
        let (p50, p99) = http_latency(&base, plan.sequential);
        http_p50.push(ms(p50));
        http_p99.push(ms(p99));
        sdk_tput.push(runtime.block_on(sdk_throughput(&client, plan.window)));
        http_tput.push(http_throughput(&base, plan.window));
        eprintln!("round {} of {ROUNDS} done", round + 1);
    }
    println!(
        "counter increment, one local node, durability fsync; median [min max] of {ROUNDS} rounds"
    );
    println!(
        "{:<34} {:>24} {:>24} {:>8}",
        "measure", "SDK (QUIC)", "HTTP/JSON", "SDK/HTTP"
    );
    let row = |name: &str, sdk: Vec<f64>, http: Vec<f64>, unit: &str| {
        let (s, s0, s1) = median_spread(sdk);
        let (h, h0, h1) = median_spread(http);
        println!(
            "{name:<34} {:>24} {:>24} {:>8.2}",
            format!("{s:.3} [{s0:.3} {s1:.3}] {unit}"),
            format!("{h:.3} [{h0:.3} {h1:.3}] {unit}"),
            s / h
        );
    };
    row("latency p50, 1 client", sdk_p50, http_p50, "ms");
    row("latency p99, 1 client", sdk_p99, http_p99, "ms");
    row(
        &format!("throughput, {CONCURRENCY} concurrent"),
        sdk_tput,
        http_tput,
        "op/s",
    );
}
