//! Opening a store: create, verify, upgrade, decide whether the generation rotates, start
//! the writer; and closing it cleanly.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Condvar, Mutex};

use cairn_core::{NodeMeta, StoreError};
use redb::backends::FileBackend;
use redb::{Builder, Database, StorageBackend};

use crate::backend::SyncedGrowth;
use crate::error::{
    at_open, commit_error, database_error, refuse, storage_error, table_error, txn_error,
};
use crate::format::{
    self, MetaKey, Session, FORMAT_VERSION, HINTS, HINT_TOTALS, LARGE_OBJECTS, META, OBJECTS,
};
use crate::overlay::Overlay;
use crate::store::RedbStore;
use crate::wal::{self, Applied, Found, Wal};
use crate::writer::{self, Batching, Counters, Done, Shared};
use crate::{derived, Durability, Options};

/// What open found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// The file was created by this open.
    pub created: bool,
    /// The previous process closed the store cleanly.
    pub previous_clean: bool,
    /// redb's integrity check found damage and rolled back to an earlier commit.
    pub repaired: bool,
    /// The format the file had, when open upgraded it.
    pub upgraded_from: Option<u32>,
    /// The storage generation changed.
    pub rotated: Option<Rotation>,
    /// Batches replayed from the write-ahead log (reported durable, not yet in redb when
    /// the previous process stopped).
    pub replayed: usize,
}

/// A storage generation replaced at open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rotation {
    /// The generation the file had.
    pub from: u64,
    /// The one it has now.
    pub to: u64,
    /// Why.
    pub reason: RotationReason,
}

/// Why open took a new storage generation: the store may have lost writes it had reported
/// durable, so the node's actors of the old generation may already have dots that this
/// store no longer holds (DESIGN.md §4.2, Riak's KV679).
///
/// With [`Durability::Fsync`] and an unclean shutdown (crash, kill, power loss) nothing
/// reported is lost — every reported write was in a synced commit — and the generation is
/// kept. A store with no metadata at all (new or lost disk) has no generation to rotate:
/// the node takes a fresh one from its incarnation nonce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RotationReason {
    /// The previous session reported writes before syncing them ([`Durability::None`]) and
    /// did not close cleanly.
    UnsyncedCrash,
    /// The previous session did not close cleanly and its write-ahead log is missing,
    /// damaged, or belongs to another copy of the store, so writes it reported may be
    /// gone.
    LogLost,
    /// The file is not the one the previous session wrote (another device or inode): it
    /// was copied or restored from a backup, which may predate reported writes.
    FileReplaced,
    /// The integrity check found damage and redb rolled back to an earlier commit.
    Repaired,
    /// The file has no session record, so nothing is known about how it was closed.
    NoSession,
}

impl RedbStore {
    /// Opens the store in `path`, creating it if there is no file there.
    ///
    /// A file that exists but is not a whole, undamaged Cairn store (truncated, zeroed,
    /// bit-flipped, written by something else, or by a newer format) is refused with
    /// [`StoreError::Corrupt`] naming the file and what to do; it is never replaced by an
    /// empty store. A new file is built beside `path` and renamed into place, so a crash
    /// during creation leaves no half-made file at `path`.
    ///
    /// The write-ahead log lives beside it, in `path` with `.wal` appended; it is created
    /// when missing and must move with the file.
    pub fn open(path: impl AsRef<Path>, opts: Options) -> Result<RedbStore, StoreError> {
        let path = path.as_ref();
        let file = path.display().to_string();
        guard(&file, || open_file(path, &file, opts))
    }

    /// The write-ahead log's path for a store at `path`.
    pub fn wal_path(path: impl AsRef<Path>) -> std::path::PathBuf {
        let mut p = path.as_ref().as_os_str().to_owned();
        p.push(".wal");
        p.into()
    }

    /// Opens a store on any redb [`StorageBackend`]s (in-memory ones, or test backends
    /// that simulate crashes): `backend` for redb, `wal` for the write-ahead log. An empty
    /// backend gets a new store. `name` stands for the file in errors.
    pub fn open_backend(
        backend: impl StorageBackend,
        wal: impl StorageBackend,
        name: &str,
        opts: Options,
    ) -> Result<RedbStore, StoreError> {
        guard(name, || open_backend(backend, Box::new(wal), name, opts))
    }

    /// Stops the writer after it drained the queue and, if every commit succeeded, records
    /// a clean shutdown in a synced commit (which also syncs what [`Durability::None`]
    /// left unsynced).
    pub(crate) fn shutdown(&mut self) -> Result<(), StoreError> {
        // Held writes are staged writes: a clean close keeps them. If the writer has
        // failed they cannot be, and its failure is returned below.
        let _ = self.release();
        let Some(tx) = self.tx.take() else {
            return Ok(());
        };
        drop(tx);
        // Let go of the read snapshot this store keeps.
        self.objects_view.get_mut().take();
        // The applier stops once both the log writer and the store let go of its queue.
        drop(self.hurry.take());
        if let Some(h) = self.writer.take() {
            if h.join().is_err() {
                return Err(StoreError::Io(format!(
                    "{}: the writer thread panicked",
                    self.file
                )));
            }
        }
        if let Some(e) = &self.shared.done().failed {
            return Err(e.clone());
        }
        let session = Session {
            clean: true,
            synced: self.synced,
            identity: self.identity,
        };
        write_session(&self.shared.db, &session)
    }
}

/// Runs an open, turning a panic inside redb into a refusal. redb trusts its checksums
/// and asserts on some damage it meets before checking them (a file shorter than its
/// header says, a zeroed page); bytes from disk must never crash the node.
fn guard(
    file: &str,
    f: impl FnOnce() -> Result<RedbStore, StoreError>,
) -> Result<RedbStore, StoreError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(refuse(
                file,
                &format!("it is damaged (redb failed reading it: {msg})"),
            ))
        }
    }
}

fn open_file(path: &Path, file: &str, opts: Options) -> Result<RedbStore, StoreError> {
    let created = !path.exists();
    if created {
        create(path, file)?;
    }
    let handle = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| StoreError::Io(format!("cannot open {file}: {e}")))?;
    // `create_with_backend` would make a new store in an empty file; an empty file where
    // a store should be is damage, not a fresh start.
    let len = handle
        .metadata()
        .map_err(|e| StoreError::Io(format!("cannot open {file}: {e}")))?
        .len();
    if len == 0 {
        return Err(refuse(file, "it is empty (truncated to 0 bytes)"));
    }
    let backend = FileBackend::new(handle).map_err(|e| database_error(file, e))?;
    let db = Builder::new()
        .set_cache_size(opts.cache_bytes)
        .create_with_backend(SyncedGrowth(backend))
        .map_err(|e| database_error(file, e))?;
    let wal = open_wal(path, file)?;
    start(
        db,
        wal,
        file.to_string(),
        file_identity(path),
        opts,
        created,
    )
}

/// The log file beside `path`, created if missing (its directory entry synced, so the
/// log a crash leaves is found).
fn open_wal(path: &Path, file: &str) -> Result<Box<dyn StorageBackend>, StoreError> {
    let wal_path = RedbStore::wal_path(path);
    let io = |e: std::io::Error| StoreError::Io(format!("cannot open {}: {e}", wal_path.display()));
    let existed = wal_path.exists();
    let handle = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&wal_path)
        .map_err(io)?;
    if !existed {
        sync_dir(path).map_err(io)?;
    }
    let backend = FileBackend::new(handle).map_err(|e| database_error(file, e))?;
    Ok(Box::new(backend))
}

fn sync_dir(path: &Path) -> std::io::Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => std::fs::File::open(dir).and_then(|d| d.sync_all()),
        None => Ok(()),
    }
}

fn open_backend(
    backend: impl StorageBackend,
    wal: Box<dyn StorageBackend>,
    name: &str,
    opts: Options,
) -> Result<RedbStore, StoreError> {
    let len = backend.len();
    let created = len.map_err(|e| StoreError::Io(format!("{name}: {e}")))? == 0;
    let db = Builder::new()
        .set_cache_size(opts.cache_bytes)
        .create_with_file_format_v3(true)
        .create_with_backend(SyncedGrowth(backend))
        .map_err(|e| database_error(name, e))?;
    if created {
        initialize(&db, None).map_err(|e| at_open(name, e))?;
    }
    start(db, wal, name.to_string(), None, opts, created)
}

/// Builds a new store beside `path` and renames it into place.
fn create(path: &Path, file: &str) -> Result<(), StoreError> {
    let io = |e: std::io::Error| StoreError::Io(format!("cannot create {file}: {e}"));
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".new");
    let tmp = Path::new(&tmp);
    if tmp.exists() {
        // Left by a crash during an earlier creation: it never held data.
        std::fs::remove_file(tmp).map_err(io)?;
    }
    let db = Builder::new()
        .create_with_file_format_v3(true)
        .create(tmp)
        .map_err(|e| database_error(file, e))?;
    initialize(&db, file_identity(tmp))?;
    drop(db);
    std::fs::rename(tmp, path).map_err(io)?;
    sync_dir(path).map_err(io)?;
    Ok(())
}

/// Creates every table, the format record and a clean session, in one synced commit.
pub(crate) fn initialize(db: &Database, identity: Option<(u64, u64)>) -> Result<(), StoreError> {
    let txn = db.begin_write().map_err(txn_error)?;
    {
        let mut meta = txn.open_table(META).map_err(table_error)?;
        meta.insert(MetaKey::FORMAT, &FORMAT_VERSION.to_le_bytes()[..])
            .map_err(storage_error)?;
        let session = Session {
            clean: true,
            synced: true,
            identity,
        };
        meta.insert(MetaKey::SESSION, &format::session_record(&session)[..])
            .map_err(storage_error)?;
        for t in [OBJECTS, LARGE_OBJECTS, HINTS, HINT_TOTALS] {
            txn.open_table(t).map_err(table_error)?;
        }
    }
    txn.commit().map_err(commit_error)
}

fn start(
    mut db: Database,
    wal: Box<dyn StorageBackend>,
    file: String,
    identity: Option<(u64, u64)>,
    opts: Options,
    created: bool,
) -> Result<RedbStore, StoreError> {
    let repaired =
        opts.verify_at_open && !db.check_integrity().map_err(|e| database_error(&file, e))?;
    let format = read_format(&db).map_err(|e| at_open(&file, e))?;
    let upgraded_from = match format {
        Some(v) if v == FORMAT_VERSION => None,
        Some(v) if v < FORMAT_VERSION => {
            derived::upgrade(&db, v).map_err(|e| at_open(&file, e))?;
            Some(v)
        }
        Some(v) => {
            return Err(refuse(
                &file,
                &format!(
                    "it is in Cairn store format {v}, newer than this build reads \
                     ({FORMAT_VERSION}); run the newer cairn binary that wrote it"
                ),
            ))
        }
        None => {
            return Err(refuse(
                &file,
                "it is a redb database but not a Cairn store (it has no Cairn format record)",
            ))
        }
    };
    let Meta {
        node,
        session,
        applied,
    } = read_meta(&db).map_err(|e| at_open(&file, e))?;
    let wal_name = format!("{file}.wal");
    let found = wal::recover(&*wal, &wal_name, applied).map_err(|e| at_open(&wal_name, e))?;
    let Replay {
        batches,
        mark,
        log_lost,
    } = replay_plan(found, applied);
    // What the node metadata will be once the log is replayed.
    let node = match replayed_node(&batches).map_err(|e| at_open(&wal_name, e))? {
        Some(n) => Some(n),
        None => node,
    };
    let synced = opts.durability == Durability::Fsync;
    let reason = rotation_reason(session, identity, repaired, log_lost);
    let rotated = match (reason, &node) {
        (Some(reason), Some(old)) => Some(Rotation {
            from: old.generation,
            to: fresh_generation(old.generation, opts.incarnation_nonce),
            reason,
        }),
        _ => None,
    };
    let this = Session {
        clean: false,
        synced,
        identity,
    };
    // A new generation gives every partition a new actor; epochs and dropped marks carry
    // over unchanged (they only ever add rotations). Every reason to rotate is a store
    // that may have lost writes it reported durable, so the node syncs before its reads
    // count again (cairn-core's `node/sync.rs`).
    let new_meta = match (rotated, node) {
        (Some(r), Some(old)) => Some(NodeMeta {
            generation: r.to,
            unsynced: true,
            ..old
        }),
        _ => None,
    };
    // The replayed writes, the log's mark, this session and any new generation go in one
    // synced commit, before the log starts over: a crash anywhere in open then finds
    // either the old log (and decides again) or all of it done, never a restarted log
    // beside a rotation that was not written.
    commit_open(&db, &batches, mark, &this, new_meta.as_ref()).map_err(|e| at_open(&file, e))?;
    let wal = Wal::restart(wal, wal_name.clone(), mark, opts.wal_restart_bytes)
        .map_err(|e| at_open(&wal_name, e))?;
    let recovery = Recovery {
        created,
        previous_clean: session.is_some_and(|s| s.clean),
        repaired,
        upgraded_from,
        rotated,
        replayed: batches.len(),
    };
    spawn(db, wal, file, identity, opts, recovery)
}

/// What open does with the log.
struct Replay {
    /// Batches to apply, in order.
    batches: Vec<Vec<writer::Op>>,
    /// What redb holds of the log once they are applied.
    mark: Applied,
    /// Whether the log cannot be trusted to hold every reported write (see `wal`).
    log_lost: bool,
}

fn replay_plan(found: Found, applied: Option<Applied>) -> Replay {
    let fresh = Applied {
        epoch: wal::fresh_epoch(),
        end: wal::HEADER_BYTES,
    };
    match found {
        Found::Replay {
            epoch,
            end,
            batches,
        } => Replay {
            batches,
            mark: Applied { epoch, end },
            log_lost: false,
        },
        Found::Empty => Replay {
            batches: Vec::new(),
            mark: fresh,
            log_lost: applied.is_some(),
        },
        Found::Unrelated => Replay {
            batches: Vec::new(),
            mark: fresh,
            log_lost: true,
        },
    }
}

/// The node metadata the last replayed batch that sets it sets.
fn replayed_node(batches: &[Vec<writer::Op>]) -> Result<Option<NodeMeta>, StoreError> {
    let last = batches.iter().flatten().rev().find_map(|op| match op {
        writer::Op::Node(r) => Some(r),
        _ => None,
    });
    last.map(|r| format::decode_node_record(r)).transpose()
}

/// One synced commit: the replayed batches, the log's mark, the session record and new
/// node metadata.
fn commit_open(
    db: &Database,
    batches: &[Vec<writer::Op>],
    mark: Applied,
    session: &Session,
    node: Option<&NodeMeta>,
) -> Result<(), StoreError> {
    let txn = db.begin_write().map_err(txn_error)?;
    writer::apply(&txn, batches.iter().flatten())?;
    {
        let mut meta = txn.open_table(META).map_err(table_error)?;
        meta.insert(MetaKey::WAL, &format::wal_record(mark)[..])
            .map_err(storage_error)?;
        meta.insert(MetaKey::SESSION, &format::session_record(session)[..])
            .map_err(storage_error)?;
        if let Some(n) = node {
            meta.insert(MetaKey::NODE, &format::node_record(n)[..])
                .map_err(storage_error)?;
        }
    }
    txn.commit().map_err(commit_error)
}

/// Whether the previous session may have lost writes it reported (see [`RotationReason`]).
fn rotation_reason(
    prev: Option<Session>,
    identity: Option<(u64, u64)>,
    repaired: bool,
    log_lost: bool,
) -> Option<RotationReason> {
    let Some(prev) = prev else {
        return Some(RotationReason::NoSession);
    };
    if repaired {
        Some(RotationReason::Repaired)
    } else if !prev.clean && !prev.synced {
        Some(RotationReason::UnsyncedCrash)
    } else if !prev.clean && log_lost {
        Some(RotationReason::LogLost)
    } else if prev.identity.is_some() && identity.is_some() && prev.identity != identity {
        Some(RotationReason::FileReplaced)
    } else {
        None
    }
}

/// The nonce, unless it happens to equal the old generation.
fn fresh_generation(old: u64, nonce: u64) -> u64 {
    if nonce == old {
        nonce.wrapping_add(1)
    } else {
        nonce
    }
}

fn spawn(
    db: Database,
    wal: Wal,
    file: String,
    identity: Option<(u64, u64)>,
    opts: Options,
    recovery: Recovery,
) -> Result<RedbStore, StoreError> {
    let hint_totals = {
        let txn = db.begin_read().map_err(txn_error)?;
        derived::stored_totals(&txn.open_table(HINT_TOTALS).map_err(table_error)?)?
    };
    let shared = Arc::new(Shared {
        db,
        overlay: Mutex::new(Overlay::default()),
        // Open committed, synced, everything the log held: the lap before the first one.
        done: Mutex::new(Done {
            synced: Some(wal.previous()),
            ..Done::default()
        }),
        done_cv: Condvar::new(),
        failed: AtomicBool::new(false),
        on_persisted: opts.on_persisted.clone(),
        counters: Counters::default(),
        commits: AtomicU64::new(0),
    });
    let (tx, rx) = sync_channel(opts.queue_writes_max.max(1));
    let batching = Batching {
        writes_max: opts.batch_writes_max.max(1),
        wait: opts.batch_wait,
        durability: opts.durability,
    };
    let (apply_tx, apply_rx) = sync_channel(writer::APPLY_QUEUE_BATCHES);
    let durability = opts.durability;
    let applier_nice = opts.applier_nice;
    let cannot = |e: std::io::Error| StoreError::Io(format!("{file}: cannot start a thread: {e}"));
    let for_applier = Arc::clone(&shared);
    let hurrying = writer::Hurrying::default();
    let for_applier_hurrying = hurrying.clone();
    let applier = std::thread::Builder::new()
        .name("cairn-store-apply".into())
        .spawn(move || {
            // Best effort: at normal priority the applier still works, only with more
            // effect on request latency.
            let _ = writer::lower_priority(applier_nice);
            writer::guarded(&for_applier, "applier", || {
                writer::apply_loop(&for_applier, &apply_rx, durability, &for_applier_hurrying);
            });
        })
        .map_err(cannot)?;
    let apply_tx = writer::ApplyTx::new(apply_tx, applier.thread().clone(), hurrying);
    let hurry = apply_tx.clone();
    let for_writer = Arc::clone(&shared);
    let writer = std::thread::Builder::new()
        .name("cairn-store-writer".into())
        .spawn(move || {
            writer::guarded(&for_writer, "writer", || {
                writer::run(&for_writer, &rx, wal, batching, &apply_tx);
            });
            // The applier finishes what it has once the log writer is gone.
            drop(apply_tx);
            // The applier records its own panic (`guarded`).
            let _ = applier.join();
        })
        .map_err(cannot)?;
    Ok(RedbStore {
        shared,
        tx: Some(tx),
        hurry: Some(hurry),
        writer: Some(writer),
        next_seq: 0,
        file,
        recovery,
        synced: opts.durability == Durability::Fsync,
        identity,
        last_read: Default::default(),
        hint_totals,
        objects_view: Default::default(),
        warm: std::cell::RefCell::new(crate::warm::Warm::new(opts.warm_bytes)),
        held: Vec::new(),
        holding: false,
    })
}

fn read_format(db: &Database) -> Result<Option<u32>, StoreError> {
    let txn = db.begin_read().map_err(txn_error)?;
    let meta = match txn.open_table(META) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(table_error(e)),
    };
    let got = meta.get(MetaKey::FORMAT).map_err(storage_error)?;
    got.map(|g| format::decode_format(g.value())).transpose()
}

/// What `meta` holds besides the format.
struct Meta {
    node: Option<NodeMeta>,
    session: Option<Session>,
    /// How much of the log redb holds.
    applied: Option<Applied>,
}

/// The `meta` records, after checking that every table exists.
fn read_meta(db: &Database) -> Result<Meta, StoreError> {
    let txn = db.begin_read().map_err(txn_error)?;
    for t in [OBJECTS, LARGE_OBJECTS, HINTS, HINT_TOTALS] {
        txn.open_table(t).map_err(table_error)?;
    }
    let meta = txn.open_table(META).map_err(table_error)?;
    let node = meta.get(MetaKey::NODE).map_err(storage_error)?;
    let node = node
        .map(|g| format::decode_node_record(g.value()))
        .transpose()?;
    let session = meta.get(MetaKey::SESSION).map_err(storage_error)?;
    let session = session
        .map(|g| format::decode_session_record(g.value()))
        .transpose()?;
    let applied = meta.get(MetaKey::WAL).map_err(storage_error)?;
    let applied = applied
        .map(|g| format::decode_wal_record(g.value()))
        .transpose()?;
    Ok(Meta {
        node,
        session,
        applied,
    })
}

/// Writes the session record (and new node metadata) in a synced commit.
fn write_session(db: &Database, s: &Session) -> Result<(), StoreError> {
    let txn = db.begin_write().map_err(txn_error)?;
    {
        let mut meta = txn.open_table(META).map_err(table_error)?;
        meta.insert(MetaKey::SESSION, &format::session_record(s)[..])
            .map_err(storage_error)?;
    }
    txn.commit().map_err(commit_error)
}

#[cfg(unix)]
fn file_identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn file_identity(_: &Path) -> Option<(u64, u64)> {
    None
}
