//! cairn-store's benchmark: durable writes per second with 1, 16 and 64 writers in flight,
//! single-writer latency against the cost of one fsync on this disk, read latency, and the
//! bytes written per update to one member of a 100k-member set.
//!
//! `cargo bench -p cairn-store --bench store` (add `-- --quick` for a smoke run;
//! `CAIRN_BENCH_ONLY=64` measures only the writes with 64 in flight, for profiling). Each
//! figure is measured in 3 runs on fresh files; the median and the spread (min–max) are
//! printed. Files go to `target/cairn-store-bench` (the disk under test), or to
//! `$CAIRN_BENCH_DIR`.
//!
//! "Writers" are staged writes in flight: one thread, like the node's, keeps W writes
//! staged and stages a new one for each token reported durable.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation,
    missing_docs
)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_core::{ObjectKey, Store, WriteToken};
use cairn_crdt::{Actor, CounterOp, Op, Replica, SetOp, Timestamp, Value, ValueType};
use cairn_ring::PartitionId;
use cairn_store::{Durability, Options, RedbStore};
use redb::StorageBackend;

const RUNS: usize = 3;

fn dir() -> PathBuf {
    let d = std::env::var_os("CAIRN_BENCH_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/cairn-store-bench"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn fresh(name: &str) -> PathBuf {
    let p = dir().join(name);
    let _ = std::fs::remove_file(&p);
    p
}

fn key(i: u64) -> ObjectKey {
    ObjectKey {
        partition: PartitionId(u16::try_from(i % 64).unwrap()),
        bucket: b"bench".as_slice().into(),
        key: format!("key-{i:08}").into_bytes().into(),
    }
}

fn counter(i: u64) -> Value {
    let mut v = Value::empty(ValueType::Counter);
    let r = Replica {
        actor: Actor(1 + i % 3),
        now: Timestamp::default(),
    };
    v.apply(&Op::Counter(CounterOp::Increment(1 + (i % 7) as i64)), r)
        .unwrap();
    v
}

struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Median and spread of a figure over the runs.
fn summary(name: &str, unit: &str, mut xs: Vec<f64>) {
    xs.sort_by(|a, b| a.total_cmp(b));
    let med = xs[xs.len() / 2];
    println!(
        "{name:<44} median {med:>12.1} {unit:<8} (min {:.1}, max {:.1}, runs {})",
        xs[0],
        xs[xs.len() - 1],
        xs.len()
    );
}

/// One fsync of a 4 KiB overwrite, as the disk does it.
fn fsync_cost(iters: usize) -> (Duration, Duration) {
    let p = fresh("fsync.probe");
    let mut f = std::fs::File::create(&p).unwrap();
    let page = vec![7u8; 4096];
    f.write_all(&page).unwrap();
    f.sync_all().unwrap();
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        use std::os::unix::fs::FileExt;
        f.write_all_at(&page, 0).unwrap();
        let t = Instant::now();
        f.sync_data().unwrap();
        times.push(t.elapsed());
    }
    times.sort();
    (pct(&times, 0.5), pct(&times, 0.99))
}

/// Keeps `inflight` writes staged; returns writes/s and each write's stage-to-durable
/// latency.
fn durable_writes(inflight: usize, total: u64) -> (f64, Vec<Duration>, f64, f64) {
    let path = fresh(&format!("writes-{inflight}.redb"));
    let (backend, written) = counting(&path);
    let o = Options::new(1);
    let mut s = RedbStore::open_backend(backend, wal(&path), "writes.redb", o).unwrap();
    let mut rng = Lcg(inflight as u64);
    let mut started = std::collections::HashMap::new();
    let mut latencies = Vec::with_capacity(total as usize);
    let t0 = Instant::now();
    let mut staged = 0u64;
    let mut stage =
        |s: &mut RedbStore,
         staged: &mut u64,
         started: &mut std::collections::HashMap<WriteToken, Instant>| {
            let i = rng.next(100_000);
            let tok = s.stage_object(key(i), counter(i)).unwrap();
            started.insert(tok, Instant::now());
            *staged += 1;
        };
    while staged < (inflight as u64).min(total) {
        stage(&mut s, &mut staged, &mut started);
    }
    let mut done = 0u64;
    while done < total {
        for t in s.wait_persisted(Duration::from_secs(5)).unwrap() {
            latencies.push(started.remove(&t).unwrap().elapsed());
            done += 1;
            if staged < total {
                stage(&mut s, &mut staged, &mut started);
            }
        }
    }
    let rate = total as f64 / t0.elapsed().as_secs_f64();
    let st = s.stats();
    let per_batch = st.writes as f64 / st.batches.max(1) as f64;
    let bytes_per_write = written.load(Ordering::Relaxed) as f64 / total as f64;
    s.close().unwrap();
    latencies.sort();
    (rate, latencies, per_batch, bytes_per_write)
}

/// Read latency of committed objects, 100k keys loaded; and `aae_tree`'s cost, the first
/// call for a partition (which reads its 1024 segment hashes) and later ones.
fn reads(n: u64) -> (Duration, Duration, Duration, Duration) {
    let path = fresh("reads.redb");
    let mut o = Options::new(1);
    o.durability = Durability::None;
    let mut s = RedbStore::open(&path, o).unwrap();
    for i in 0..100_000 {
        s.stage_object(key(i), counter(i)).unwrap();
    }
    s.flush().unwrap();
    s.take_persisted();
    let mut rng = Lcg(9);
    let mut times = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let k = key(rng.next(100_000));
        let t = Instant::now();
        let v = s.object(&k).unwrap();
        times.push(t.elapsed());
        assert!(v.is_some());
    }
    times.sort();
    let mut first = Vec::new();
    for p in 0..64 {
        let t = Instant::now();
        std::hint::black_box(s.aae_tree(PartitionId(p)).unwrap());
        first.push(t.elapsed());
    }
    first.sort();
    let mut later = Vec::new();
    for i in 0..10_000u16 {
        let t = Instant::now();
        std::hint::black_box(s.aae_tree(PartitionId(i % 64)).unwrap());
        later.push(t.elapsed());
    }
    later.sort();
    s.close().unwrap();
    (
        pct(&times, 0.5),
        pct(&times, 0.99),
        pct(&first, 0.5),
        pct(&later, 0.5),
    )
}

/// A file backend that counts the bytes redb writes.
#[derive(Debug)]
struct Counting {
    inner: redb::backends::FileBackend,
    written: Arc<AtomicU64>,
}

impl StorageBackend for Counting {
    fn len(&self) -> std::io::Result<u64> {
        self.inner.len()
    }
    fn read(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        self.inner.read(offset, len)
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.inner.set_len(len)
    }
    fn sync_data(&self, eventual: bool) -> std::io::Result<()> {
        self.inner.sync_data(eventual)
    }
    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.written.fetch_add(data.len() as u64, Ordering::Relaxed);
        self.inner.write(offset, data)
    }
}

/// The write-ahead log beside `path`, new.
fn wal(path: &Path) -> redb::backends::FileBackend {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(RedbStore::wal_path(path))
        .unwrap();
    redb::backends::FileBackend::new(file).unwrap()
}

/// Bytes written per one-member update of a set of `members`, and the set's encoded size.
fn counting(path: &Path) -> (Counting, Arc<AtomicU64>) {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .unwrap();
    let written = Arc::new(AtomicU64::new(0));
    let backend = Counting {
        inner: redb::backends::FileBackend::new(file).unwrap(),
        written: Arc::clone(&written),
    };
    (backend, written)
}

fn big_set_update(members: usize, updates: usize) -> (f64, usize) {
    let path = fresh("bigset.redb");
    let (backend, written) = counting(&path);
    let mut s =
        RedbStore::open_backend(backend, wal(&path), "bigset.redb", Options::new(1)).unwrap();
    let r = Replica {
        actor: Actor(1),
        now: Timestamp::default(),
    };
    let mut set = Value::empty(ValueType::Set);
    for chunk in (0..members).collect::<Vec<_>>().chunks(4096) {
        let add = chunk
            .iter()
            .map(|i| format!("member-{i:08}").into_bytes())
            .collect();
        set.apply(&Op::Set(SetOp::Add(add)), r).unwrap();
    }
    let k = key(0);
    s.stage_object(k.clone(), set.clone()).unwrap();
    s.flush().unwrap();
    let before = written.load(Ordering::Relaxed);
    for u in 0..updates {
        let m = format!("new-{u:08}").into_bytes();
        set.apply(&Op::Set(SetOp::Add(vec![m])), r).unwrap();
        s.stage_object(k.clone(), set.clone()).unwrap();
        s.flush().unwrap();
    }
    let per = (written.load(Ordering::Relaxed) - before) as f64 / updates as f64;
    let size = cairn_proto::encode_value(&set).len();
    s.close().unwrap();
    (per, size)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let scale = if quick { 10 } else { 1 };
    println!("cairn-store bench, files in {}", dir().display());
    let mut fs = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let (p50, p99) = fsync_cost(2000 / scale);
        fs.0.push(p50.as_secs_f64() * 1e6);
        fs.1.push(p99.as_secs_f64() * 1e6);
    }
    summary("fsync (4 KiB overwrite + fdatasync) p50", "us", fs.0);
    summary("fsync p99", "us", fs.1);
    for (inflight, total) in [(1usize, 3_000u64), (16, 40_000), (64, 150_000)] {
        if let Ok(only) = std::env::var("CAIRN_BENCH_ONLY") {
            if only != inflight.to_string() {
                continue;
            }
        }
        let total = total / scale as u64;
        let mut rates = Vec::new();
        let (mut p50, mut p99, mut batch, mut bytes) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..RUNS {
            let (rate, lat, per_batch, per_write) = durable_writes(inflight, total);
            bytes.push(per_write);
            rates.push(rate);
            p50.push(pct(&lat, 0.5).as_secs_f64() * 1e6);
            p99.push(pct(&lat, 0.99).as_secs_f64() * 1e6);
            batch.push(per_batch);
        }
        summary(
            &format!("durable writes/s, {inflight} in flight"),
            "writes/s",
            rates,
        );
        summary(
            &format!("  stage-to-durable p50, {inflight} in flight"),
            "us",
            p50,
        );
        summary(
            &format!("  stage-to-durable p99, {inflight} in flight"),
            "us",
            p99,
        );
        summary(
            &format!("  writes per commit, {inflight} in flight"),
            "writes",
            batch,
        );
        summary(
            &format!("  bytes written per write, {inflight} in flight"),
            "bytes",
            bytes,
        );
    }
    if std::env::var_os("CAIRN_BENCH_ONLY").is_some() {
        return;
    }
    let (mut r50, mut r99, mut t1, mut tn) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let (p50, p99, first, later) = reads(200_000 / scale as u64);
        r50.push(p50.as_secs_f64() * 1e6);
        r99.push(p99.as_secs_f64() * 1e6);
        t1.push(first.as_secs_f64() * 1e6);
        tn.push(later.as_secs_f64() * 1e6);
    }
    summary("read p50 (100k keys, committed)", "us", r50);
    summary("read p99", "us", r99);
    summary("aae_tree p50, first call for a partition", "us", t1);
    summary("aae_tree p50, later calls", "us", tn);
    let mut bytes = Vec::new();
    let mut size = 0;
    for _ in 0..RUNS {
        let (per, s) = big_set_update(100_000, 20 / scale.min(10));
        bytes.push(per);
        size = s;
    }
    summary(
        "bytes written per 1-member update, 100k set",
        "bytes",
        bytes,
    );
    println!("  (the set's encoding is {size} bytes)");
    let _ = std::fs::remove_dir_all(dir());
}
