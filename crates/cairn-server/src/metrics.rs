//! Prometheus metrics (`GET /metrics`, text format 0.0.4).
//!
//! Counters and histograms the request path updates live here (atomics; label sets are
//! fixed and small). Gauges — hints, anti-entropy, the store's commits, liveness — are
//! read from the node's [`Status`] when scraped.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::status::Status;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// A latency histogram.
/// A latency histogram. Each observation adds to the one bucket it falls in (past the
/// last bound: none, `count` has it); rendering sums them into Prometheus's cumulative
/// buckets. Adding to every bucket at or above it cost up to 16 atomic increments per
/// request, on the I/O thread.
#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|bound| secs <= *bound) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut below = 0u64;
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            below = below.saturating_add(bucket.load(Ordering::Relaxed));
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {below}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// What a finished client request was.
#[derive(Clone, Copy, Debug)]
pub struct RequestKind {
    /// `update`, `read` or `delete`.
    pub op: &'static str,
    /// The value type for updates, `any` otherwise.
    pub ty: &'static str,
}

/// The request path's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, &'static str, &'static str), u64>>,
    latency: [Histogram; 3],
    /// Peer messages dropped because too many sends were in flight.
    pub peer_sends_dropped: AtomicU64,
    /// Peer messages whose send failed: QUIC could not take them (no connection, a
    /// closed stream, a timeout). Sends are one-way, so a peer's refusals are counted
    /// there, in `peer_messages_refused`.
    pub peer_sends_failed: AtomicU64,
    /// Peer messages this node received and could not take: malformed, its core's queue
    /// full, or the node stopping.
    pub peer_messages_refused: AtomicU64,
    /// Peer sends in flight now.
    pub peer_sends_in_flight: AtomicU64,
    /// Peer messages handed to the transport (each batch frame carries one or more),
    /// failed sends included.
    pub peer_messages_sent: AtomicU64,
    /// Peer batch frames handed to the transport (one QUIC stream each), failed sends
    /// included.
    pub peer_batches_sent: AtomicU64,
}

const OPS: [&str; 3] = ["update", "read", "delete"];

/// A finished request: what it was, its outcome (`ok` or an error code), how long it took.
#[derive(Clone, Copy, Debug)]
pub struct Finished {
    /// Operation and value type.
    pub kind: RequestKind,
    /// `ok` or the error's code.
    pub outcome: &'static str,
    /// From the core taking it to its answer.
    pub took: Duration,
}

impl Metrics {
    /// Counts finished requests under one lock: the core answers a log commit's worth
    /// (hundreds, under load) at once. A run of requests with the same labels is one
    /// map update.
    pub fn requests_finished(&self, done: &[Finished]) {
        let Some(first) = done.first() else {
            return;
        };
        let mut requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        let label = |f: &Finished| (f.kind.op, f.kind.ty, f.outcome);
        let (mut run, mut n) = (label(first), 0u64);
        for f in done {
            if label(f) != run {
                *requests.entry(run).or_default() += n;
                (run, n) = (label(f), 0);
            }
            n += 1;
        }
        *requests.entry(run).or_default() += n;
        drop(requests);
        for f in done {
            if let Some(i) = OPS.iter().position(|o| *o == f.kind.op) {
                self.latency[i].observe(f.took);
            }
        }
    }

    /// The text exposition: these counters, then gauges from `status`.
    pub fn render(
        &self,
        status: &Status,
        connections: usize,
        datagrams: cairn_net::Datagrams,
    ) -> String {
        let mut out = String::new();
        let requests = self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        header(&mut out, "cairn_requests_total", "counter", "Client requests coordinated or forwarded by this node, by operation, value type and outcome.");
        for ((op, ty, outcome), n) in &requests {
            let _ = writeln!(
                out,
                "cairn_requests_total{{op=\"{op}\",type=\"{ty}\",outcome=\"{outcome}\"}} {n}"
            );
        }
        let quorum: u64 = requests
            .iter()
            .filter(|((_, _, o), _)| *o == "quorum_not_reached")
            .map(|(_, n)| n)
            .sum();
        header(
            &mut out,
            "cairn_quorum_failures_total",
            "counter",
            "Requests that failed because too few replicas answered.",
        );
        let _ = writeln!(out, "cairn_quorum_failures_total {quorum}");
        header(
            &mut out,
            "cairn_request_duration_seconds",
            "histogram",
            "Client request latency at this node.",
        );
        for (op, h) in OPS.iter().zip(&self.latency) {
            h.render(
                &mut out,
                "cairn_request_duration_seconds",
                &format!("op=\"{op}\""),
            );
        }
        let peer = [
            (
                "cairn_peer_sends_dropped_total",
                "counter",
                "Peer messages dropped: too many sends in flight.",
                &self.peer_sends_dropped,
            ),
            (
                "cairn_peer_sends_failed_total",
                "counter",
                "Peer messages whose send failed (QUIC could not take them; a peer's drops on arrival are not seen here).",
                &self.peer_sends_failed,
            ),
            (
                "cairn_peer_messages_refused_total",
                "counter",
                "Peer messages received and not taken: malformed, the core's queue full, or the node stopping (the sender is not told).",
                &self.peer_messages_refused,
            ),
            (
                "cairn_peer_messages_sent_total",
                "counter",
                "Peer messages handed to the transport, failed sends included (see cairn_peer_sends_failed_total).",
                &self.peer_messages_sent,
            ),
            (
                "cairn_peer_batches_sent_total",
                "counter",
                "Peer batch frames handed to the transport, one stream each, failed sends included; messages over batches is the mean batch size.",
                &self.peer_batches_sent,
            ),
            (
                "cairn_peer_sends_in_flight",
                "gauge",
                "Peer messages queued or being handed to QUIC (the replication backlog before the transport).",
                &self.peer_sends_in_flight,
            ),
        ];
        for (name, kind, help, v) in peer {
            header(&mut out, name, kind, help);
            let _ = writeln!(out, "{name} {}", v.load(Ordering::Relaxed));
        }
        gauge(
            &mut out,
            "cairn_quic_connections",
            "Open QUIC connections (peers and clients).",
            connections as f64,
        );
        counter(
            &mut out,
            "cairn_quic_accepted_datagrams_sent_total",
            "UDP datagrams sent over QUIC connections this node accepted (from clients, and from peers that dialled it); over requests, packets per answer.",
            datagrams.sent,
        );
        counter(
            &mut out,
            "cairn_quic_accepted_datagrams_received_total",
            "UDP datagrams received over QUIC connections this node accepted.",
            datagrams.received,
        );
        render_status(&mut out, status);
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn gauge(out: &mut String, name: &str, help: &str, v: f64) {
    header(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {v}");
}

fn counter(out: &mut String, name: &str, help: &str, v: u64) {
    header(out, name, "counter", help);
    let _ = writeln!(out, "{name} {v}");
}

fn render_status(out: &mut String, s: &Status) {
    gauge(
        out,
        "cairn_layout_version",
        "The committed layout's version.",
        s.layout_version as f64,
    );
    let up = s.nodes.iter().filter(|n| n.up).count();
    gauge(
        out,
        "cairn_nodes",
        "Nodes in the committed layout.",
        s.nodes.len() as f64,
    );
    gauge(
        out,
        "cairn_nodes_up",
        "Nodes this node believes up.",
        up as f64,
    );
    gauge(
        out,
        "cairn_requests_in_flight",
        "Requests this node coordinates or forwarded, in flight.",
        s.in_flight as f64,
    );
    gauge(
        out,
        "cairn_hints",
        "Hints this node keeps for other nodes.",
        s.hints as f64,
    );
    gauge(
        out,
        "cairn_hint_bytes",
        "Bytes of those hints.",
        s.hint_bytes as f64,
    );
    header(
        out,
        "cairn_hints_for",
        "gauge",
        "Hints kept here per intended owner.",
    );
    for n in &s.nodes {
        let _ = writeln!(out, "cairn_hints_for{{node=\"{}\"}} {}", n.id, n.hints_for);
    }
    let a = &s.anti_entropy;
    counter(
        out,
        "cairn_aae_exchanges_total",
        "Anti-entropy exchanges started.",
        a.exchanges,
    );
    counter(
        out,
        "cairn_aae_in_sync_total",
        "Exchanges that found the replicas equal.",
        a.in_sync,
    );
    counter(
        out,
        "cairn_aae_keys_repaired_total",
        "Objects sent to repair a peer.",
        a.keys_repaired,
    );
    counter(
        out,
        "cairn_aae_repair_bytes_total",
        "Bytes of those objects.",
        a.bytes_sent,
    );
    let st = &s.store;
    counter(
        out,
        "cairn_store_batches_total",
        "Batches made durable: write-ahead log records (one fsync each with durability fsync).",
        st.batches,
    );
    counter(
        out,
        "cairn_store_writes_total",
        "Writes made durable; divided by batches: the mean batch size.",
        st.writes,
    );
    counter(
        out,
        "cairn_store_commit_microseconds_total",
        "Time spent appending batches to the write-ahead log (fsync included).",
        st.commit_us,
    );
    commit_histogram(out, st);
    counter(
        out,
        "cairn_store_applies_total",
        "redb transactions applying logged batches to the store, each a synced checkpoint.",
        st.applies,
    );
    counter(
        out,
        "cairn_store_log_restarts_total",
        "Laps of the write-ahead log begun (one every 16-24 MiB of log).",
        st.log_restarts,
    );
    counter(
        out,
        "cairn_store_log_restart_wait_microseconds_total",
        "Time writes waited for a checkpoint before a new lap: only when the applier was a whole lap behind (every write on the node waits with the log).",
        st.log_restart_wait_us,
    );
    gauge(
        out,
        "cairn_store_unapplied_writes",
        "Writes durable in the log and not yet applied to the store file: how far the applier trails.",
        st.unapplied_writes as f64,
    );
    gauge(
        out,
        "cairn_store_unapplied_bytes",
        &format!(
            "About how many bytes they hold; at {} MiB the log stops taking writes until the applier catches up.",
            cairn_store::UNAPPLIED_BYTES_MAX >> 20
        ),
        st.unapplied_bytes as f64,
    );
    gauge(
        out,
        "cairn_store_warm_values",
        "Decoded values of recent writes kept for their next update.",
        st.warm_values as f64,
    );
    gauge(
        out,
        "cairn_store_warm_bytes",
        "Their estimated memory (bounded by the store's warm_bytes).",
        st.warm_bytes as f64,
    );
}

/// The log commits' durations: the disk's fsync latency as the write path sees it.
fn commit_histogram(out: &mut String, st: &crate::status::StoreSummary) {
    let name = "cairn_store_commit_duration_seconds";
    header(
        out,
        name,
        "histogram",
        "Time to append one batch to the write-ahead log and fsync it; durable writes wait for it.",
    );
    for (bound, n) in cairn_store::COMMIT_BUCKETS_US.iter().zip(st.commit_buckets) {
        let le = *bound as f64 / 1e6;
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {n}");
    }
    // The total from the same read as the buckets, so no bucket ever exceeds it.
    let all = st.commit_buckets.last().copied().unwrap_or(0);
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {all}");
    let _ = writeln!(out, "{name}_sum {}", st.commit_us as f64 / 1e6);
    let _ = writeln!(out, "{name}_count {all}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_counts_add_up() {
        let m = Metrics::default();
        let kind = RequestKind {
            op: "update",
            ty: "counter",
        };
        let read = RequestKind {
            op: "read",
            ty: "any",
        };
        let done = |kind, outcome, took| Finished {
            kind,
            outcome,
            took,
        };
        m.requests_finished(&[
            done(kind, "ok", Duration::from_micros(300)),
            done(kind, "ok", Duration::from_millis(30)),
            done(read, "ok", Duration::from_millis(1)),
            done(kind, "quorum_not_reached", Duration::from_millis(3)),
            done(kind, "quorum_not_reached", Duration::from_secs(60)),
        ]);
        let mut out = String::new();
        m.latency[0].render(&mut out, "x", "op=\"update\"");
        assert!(
            out.contains("x_bucket{op=\"update\",le=\"0.0005\"} 1"),
            "{out}"
        );
        assert!(
            out.contains("x_bucket{op=\"update\",le=\"0.005\"} 2"),
            "{out}"
        );
        assert!(
            out.contains("x_bucket{op=\"update\",le=\"0.05\"} 3"),
            "{out}"
        );
        // The minute-long request is past every bound: only +Inf and the count have it.
        assert!(out.contains("x_bucket{op=\"update\",le=\"10\"} 3"), "{out}");
        assert!(
            out.contains("x_bucket{op=\"update\",le=\"+Inf\"} 4"),
            "{out}"
        );
        assert!(out.contains("x_count{op=\"update\"} 4"), "{out}");
        let requests = m.requests.lock().unwrap().clone();
        assert_eq!(requests[&("update", "counter", "ok")], 2);
        assert_eq!(requests[&("read", "any", "ok")], 1);
        assert_eq!(requests[&("update", "counter", "quorum_not_reached")], 2);
    }

    #[test]
    fn the_log_commit_histogram_ends_in_the_batch_count() {
        let mut st = crate::status::StoreSummary {
            batches: 6, // Read apart from the buckets: one more commit since.
            commit_us: 2_500,
            ..Default::default()
        };
        st.commit_buckets[0] = 1;
        st.commit_buckets[1..].fill(4);
        st.commit_buckets[cairn_store::COMMIT_BUCKETS_US.len()] = 5; // One past every bound.
        let mut out = String::new();
        commit_histogram(&mut out, &st);
        let name = "cairn_store_commit_duration_seconds";
        assert!(
            out.contains(&format!("{name}_bucket{{le=\"0.00005\"}} 1")),
            "{out}"
        );
        assert!(
            out.contains(&format!("{name}_bucket{{le=\"5\"}} 4")),
            "{out}"
        );
        assert!(
            out.contains(&format!("{name}_bucket{{le=\"+Inf\"}} 5")),
            "{out}"
        );
        assert!(out.contains(&format!("{name}_sum 0.0025")), "{out}");
        assert!(out.contains(&format!("{name}_count 5")), "{out}");
    }
}
