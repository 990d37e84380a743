//! Cairn's durable storage: [`cairn_core::Store`] on [redb](https://www.redb.org), with
//! group commit.
//!
//! One redb file per node holds the objects, their anti-entropy trees (updated in the same
//! transaction as each object), hints with running totals, and node metadata; a
//! write-ahead log beside it (`node.redb.wal`) is where writes become durable. The node
//! stages writes from its own thread; a single writer thread appends them to the log in
//! batches, one fsync per batch, and reports each write's [`WriteToken`] once it is
//! durable. An applier thread then writes the batches it gathered for up to
//! [`APPLY_WAIT`] into redb in one transaction (synced with [`Durability::Fsync`]: a
//! checkpoint) that also records how much of the log redb holds; open replays the rest of
//! the log. The driver
//! drains the tokens ([`RedbStore::take_persisted`] or [`RedbStore::wait_persisted`]) and
//! passes them to `Node::handle_persisted`; nothing is acknowledged before.
//!
//! ```
//! use cairn_core::{ObjectKey, Store};
//! use cairn_crdt::{Value, ValueType};
//! use cairn_ring::PartitionId;
//! use cairn_store::{Options, RedbStore};
//!
//! # fn main() -> Result<(), cairn_core::StoreError> {
//! let dir = std::env::temp_dir().join(format!("cairn-store-doc-{}", std::process::id()));
//! # let _ = std::fs::remove_dir_all(&dir);
//! std::fs::create_dir_all(&dir).map_err(|e| cairn_core::StoreError::Io(e.to_string()))?;
//! let mut store = RedbStore::open(dir.join("node.redb"), Options::new(0x5eed))?;
//! let key = ObjectKey { partition: PartitionId(3), bucket: b"b".as_slice().into(), key: b"k".as_slice().into() };
//! let token = store.stage_object(key.clone(), Value::empty(ValueType::Counter))?;
//! assert!(store.object(&key)?.is_some(), "a node reads its own staged writes");
//! store.flush()?;
//! assert_eq!(store.take_persisted(), vec![token]);
//! store.close()?;
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(())
//! # }
//! ```
//!
//! # Durability and generations
//!
//! With [`Durability::Fsync`] (the default) a token is reported only after the log record
//! that holds it is synced, so a crash loses nothing reported and the node keeps its
//! actors (unless the log itself is lost: [`RotationReason::LogLost`]).
//! With [`Durability::None`] (tests and benchmarks only) tokens are reported before the
//! data is synced; a crash may then lose reported writes, so the next open after an
//! unclean shutdown takes a new storage generation (DESIGN.md §4.2). See
//! [`RotationReason`] for every case.

mod backend;
mod derived;
mod error;
pub mod format;
mod open;
mod overlay;
mod store;
mod wal;
mod warm;
mod writer;

use std::sync::Arc;
use std::time::Duration;

pub use cairn_core::{Backlog, NodeMeta, ObjectKey, Store, StoreError, WriteToken};
pub use derived::Audit;
pub use open::{Recovery, Rotation, RotationReason};
pub use store::{RedbStore, Stats, HELD_WRITES_MAX};
pub use wal::{spread_restart_bytes, WAL_GROW_BYTES, WAL_RESTART_BYTES, WAL_RESTART_BYTES_MAX};
pub use writer::{
    APPLY_BYTES_MAX, APPLY_QUEUE_BATCHES, APPLY_WAIT, APPLY_WRITES_MAX, BATCH_BYTES_MAX,
    FORGET_WRITES_PER_LOCK, UNAPPLIED_BYTES_MAX,
};

/// Most writes in one log record (one fsync), by default. Large enough that a batch's
/// fsync is shared by hundreds of writes; small enough that a record stays a few
/// megabytes.
pub const BATCH_WRITES_MAX: usize = 1024;
/// How long the writer waits for more writes once it has one, by default: none. Writes
/// that arrive during a log fsync already form the next batch, so waiting only adds
/// latency; a single writer then pays about one fsync per write.
pub const BATCH_WAIT: Duration = Duration::ZERO;
/// Most staged writes queued for the writer, by default. A full queue blocks the staging
/// thread until the writer frees room (backpressure: the disk is the bottleneck, and the
/// node's event loop should feel it rather than buffer without bound).
pub const QUEUE_WRITES_MAX: usize = 8192;
/// How much less CPU the applier thread asks for than the store's other threads, by
/// default: it runs `nice` this many steps above the thread that opened the store (capped
/// at 19; Linux only). Applying is off the durability path, but each of its redb
/// transactions is a burst of ~10 ms of CPU (200 ms of writes, ~2.5 µs a row); on a busy
/// two-core machine a burst at the same priority delays the requests in flight behind
/// it. At 10 the scheduler gives the applier about a tenth of a normal thread's share
/// while they compete, and all of an idle core otherwise. Measured (ARCHITECTURE.md):
/// 3 nodes at half their peak, p99.9 ~13.3 ms at 0 against ~10.4 ms at 10; peak
/// throughput unchanged; at 19 a saturated single node sometimes fell behind.
pub const APPLIER_NICE: i32 = 10;
/// redb's page cache, by default.
pub const CACHE_BYTES: usize = 64 << 20;
/// The decoded values of recently written objects kept for their next update, by default
/// (estimated decoded bytes; `Options::warm_bytes`). 10,000 sets of ~100 members fit.
pub const WARM_BYTES: u64 = 128 << 20;
/// Upper bounds, in microseconds, of the buckets [`Stats::commit_buckets`] counts log
/// commits (append and fsync of one batch) in. On the development VM a commit took
/// ~270 µs on average (41,550 commits of one node in a 3-node run at 8k increments/s);
/// the upper buckets are for disks that stall (two of those commits took 250 ms–1 s).
pub const COMMIT_BUCKETS_US: [u64; 14] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
    5_000_000,
];

/// When the writer's commits reach the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// Every batch is synced (fsync) before its writes are reported durable. The default,
    /// and the only mode for production.
    #[default]
    Fsync,
    /// Batches are appended to the log without syncing and reported at once (the applier
    /// still checkpoints redb, so the file does not grow without bound). For tests and
    /// benchmarks: a crash may lose reported writes, and the next open takes a new
    /// generation.
    None,
}

/// How to open a store.
#[derive(Clone)]
pub struct Options {
    /// When commits reach the disk.
    pub durability: Durability,
    /// Most writes per batch ([`BATCH_WRITES_MAX`]).
    pub batch_writes_max: usize,
    /// How long to wait for a batch to fill ([`BATCH_WAIT`]).
    pub batch_wait: Duration,
    /// Bound of the writer's queue ([`QUEUE_WRITES_MAX`]).
    pub queue_writes_max: usize,
    /// redb's cache ([`CACHE_BYTES`]).
    pub cache_bytes: usize,
    /// Decoded values of recently written objects, kept for their next update
    /// ([`WARM_BYTES`], an estimate of their memory; 0 keeps none).
    pub warm_bytes: u64,
    /// About how long a lap of the log is before the next starts ([`WAL_RESTART_BYTES`];
    /// at most [`WAL_RESTART_BYTES_MAX`]); laps alternate between two areas, so the log
    /// file is about twice this long.
    pub wal_restart_bytes: u64,
    /// A number never used before by this node (the driver draws it at random at every
    /// start, like `cairn_core::Config::incarnation_nonce`); it becomes the new storage
    /// generation when open must rotate it.
    pub incarnation_nonce: u64,
    /// How much lower the applier thread's CPU priority is ([`APPLIER_NICE`]; 0 leaves
    /// it as is).
    pub applier_nice: i32,
    /// Check every page's checksum at open (reads the whole file once). Without it, damage
    /// to a data page shows only when the page is read, as [`StoreError::Corrupt`].
    pub verify_at_open: bool,
    /// Called by the writer thread after each batch is reported (wake the driver's loop
    /// here; do not block).
    pub on_persisted: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl Options {
    /// The defaults, with the given incarnation nonce.
    pub fn new(incarnation_nonce: u64) -> Self {
        Options {
            durability: Durability::Fsync,
            batch_writes_max: BATCH_WRITES_MAX,
            batch_wait: BATCH_WAIT,
            queue_writes_max: QUEUE_WRITES_MAX,
            cache_bytes: CACHE_BYTES,
            warm_bytes: WARM_BYTES,
            wal_restart_bytes: WAL_RESTART_BYTES,
            incarnation_nonce,
            applier_nice: APPLIER_NICE,
            verify_at_open: true,
            on_persisted: None,
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("durability", &self.durability)
            .field("batch_writes_max", &self.batch_writes_max)
            .field("batch_wait", &self.batch_wait)
            .field("queue_writes_max", &self.queue_writes_max)
            .field("cache_bytes", &self.cache_bytes)
            .field("warm_bytes", &self.warm_bytes)
            .field("wal_restart_bytes", &self.wal_restart_bytes)
            .field("incarnation_nonce", &self.incarnation_nonce)
            .field("applier_nice", &self.applier_nice)
            .field("verify_at_open", &self.verify_at_open)
            .field("on_persisted", &self.on_persisted.is_some())
            .finish()
    }
}
