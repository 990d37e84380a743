//! Crash consistency: a redb `StorageBackend` that records every write and sync, so a
//! crash can be simulated after any of them. The image after a crash holds everything
//! synced, plus any subset of the unsynced writes and length changes, some of them torn
//! (redb assumes only that single bytes are written atomically). At every point of a random workload, the
//! reopened store must open without complaint, hold every write reported persisted
//! before that point, equal the model after some prefix of the staged writes (batches
//! commit whole and in order), and have anti-entropy trees and hint totals that match
//! its objects and hints.

use std::io;
use std::sync::{Arc, Mutex};

use cairn_core::{MemStore, NodeMeta, ObjectKey, Store, WriteToken};
use cairn_crdt::Value;
use cairn_ring::{NodeId, PartitionId};
use cairn_store::{Durability, RedbStore};
use redb::StorageBackend;

use crate::util::{opts, value, Rng};

#[derive(Clone, Debug)]
enum Event {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
    Sync,
}

/// The store's two files: redb's and the write-ahead log.
pub const FILES: usize = 2;

#[derive(Debug, Default)]
struct State {
    current: [Vec<u8>; FILES],
    /// Every change and sync, to either file, in the order they happened.
    log: Vec<(usize, Event)>,
}

/// A disk holding the store's files. Reads see every write; the log says which of them
/// a crash could keep.
#[derive(Clone, Debug, Default)]
pub struct Disk(Arc<Mutex<State>>);

/// One file of a [`Disk`], as a redb backend.
#[derive(Clone, Debug)]
pub struct CrashBackend {
    disk: Disk,
    file: usize,
}

impl Disk {
    pub fn with_images(images: [Vec<u8>; FILES]) -> Self {
        Disk(Arc::new(Mutex::new(State {
            current: images,
            log: Vec::new(),
        })))
    }

    /// The redb file (0) or the log (1).
    pub fn file(&self, file: usize) -> CrashBackend {
        CrashBackend {
            disk: self.clone(),
            file,
        }
    }

    fn events(&self) -> usize {
        self.0.lock().unwrap().log.len()
    }

    fn log(&self) -> Vec<(usize, Event)> {
        self.0.lock().unwrap().log.clone()
    }

    fn images(&self) -> [Vec<u8>; FILES] {
        self.0.lock().unwrap().current.clone()
    }

    /// Opens the store on this disk.
    fn open(
        &self,
        name: &str,
        durability: Durability,
    ) -> Result<RedbStore, cairn_core::StoreError> {
        RedbStore::open_backend(self.file(0), self.file(1), name, opts(durability))
    }
}

fn apply(image: &mut Vec<u8>, e: &Event, torn_at: Option<usize>) {
    match e {
        Event::Write { offset, data } => {
            let data = &data[..torn_at.unwrap_or(data.len()).min(data.len())];
            let start = usize::try_from(*offset).unwrap();
            if image.len() < start + data.len() {
                image.resize(start + data.len(), 0);
            }
            image[start..start + data.len()].copy_from_slice(data);
        }
        Event::SetLen(n) => image.resize(usize::try_from(*n).unwrap(), 0),
        Event::Sync => {}
    }
}

/// Which unsynced changes a crash keeps.
#[derive(Clone, Copy, Debug)]
enum Keep {
    None,
    All,
    /// Data written in place reached the disk, but no change of a file's length did: a
    /// journaling file system may commit the two separately.
    NoLengths,
    /// Any subset, some writes torn.
    Random,
}

/// The disk after a crash once the first `cut` events happened: for each file, every
/// change before that file's last sync, then some of its later ones (`keep`).
fn crash_images(
    bases: &[Vec<u8>; FILES],
    log: &[(usize, Event)],
    cut: usize,
    keep: Keep,
    rng: &mut Rng,
) -> [Vec<u8>; FILES] {
    let mut images = bases.clone();
    for (f, image) in images.iter_mut().enumerate() {
        let synced = log[..cut]
            .iter()
            .rposition(|(g, e)| *g == f && matches!(e, Event::Sync))
            .map_or(0, |i| i + 1);
        for (_, e) in log[..synced].iter().filter(|(g, _)| *g == f) {
            apply(image, e, None);
        }
        for (_, e) in log[synced..cut].iter().filter(|(g, _)| *g == f) {
            let kept = match keep {
                Keep::None => false,
                Keep::All => true,
                Keep::NoLengths => !matches!(e, Event::SetLen(_)),
                Keep::Random => rng.chance(50),
            };
            if kept {
                let torn = (matches!(keep, Keep::Random) && rng.chance(20)).then(|| match e {
                    Event::Write { data, .. } => rng.below(data.len() as u64 + 1) as usize,
                    _ => 0,
                });
                apply(image, e, torn);
            }
        }
    }
    images
}

fn random_keep(rng: &mut Rng) -> Keep {
    [Keep::None, Keep::All, Keep::NoLengths, Keep::Random][rng.below(4) as usize]
}

impl CrashBackend {
    fn with<T>(&self, f: impl FnOnce(&mut Vec<u8>, &mut Vec<(usize, Event)>) -> T) -> T {
        let mut s = self.disk.0.lock().unwrap();
        let State { current, log } = &mut *s;
        f(&mut current[self.file], log)
    }
}

impl StorageBackend for CrashBackend {
    fn len(&self) -> Result<u64, io::Error> {
        Ok(self.with(|image, _| image.len() as u64))
    }

    fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>, io::Error> {
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        self.with(|image, _| {
            image
                .get(start..start + len)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end"))
        })
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        let n = usize::try_from(len).map_err(io::Error::other)?;
        self.with(|image, log| {
            image.resize(n, 0);
            log.push((self.file, Event::SetLen(len)));
        });
        Ok(())
    }

    fn sync_data(&self, _eventual: bool) -> Result<(), io::Error> {
        self.with(|_, log| log.push((self.file, Event::Sync)));
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        let e = Event::Write {
            offset,
            data: data.to_vec(),
        };
        self.with(|image, log| {
            apply(image, &e, None);
            log.push((self.file, e));
        });
        Ok(())
    }
}

/// Every key the workload uses.
fn keys() -> Vec<ObjectKey> {
    let mut out = Vec::new();
    for p in 0..2 {
        for k in 0..6 {
            out.push(ObjectKey {
                partition: PartitionId(p),
                bucket: b"b".as_slice().into(),
                key: format!("k{k}").into_bytes().into(),
            });
        }
    }
    out
}

/// Everything a store holds, as the trait reads it.
#[derive(Debug, PartialEq)]
struct Digest {
    objects: Vec<Option<Value>>,
    hints: Vec<Vec<(ObjectKey, Value)>>,
    meta: Option<NodeMeta>,
}

fn digest(s: &impl Store) -> Digest {
    Digest {
        objects: keys().iter().map(|k| s.object(k).unwrap()).collect(),
        hints: (0..2)
            .map(|o| s.hints(NodeId(o), None, 1000).unwrap())
            .collect(),
        meta: s.meta().unwrap(),
    }
}

enum Write {
    Object(ObjectKey, Value),
    Removal(ObjectKey),
    Hint(NodeId, ObjectKey, Value),
    HintRemoval(NodeId, ObjectKey),
    Meta(u64),
}

fn stage(s: &mut impl Store, w: &Write) -> WriteToken {
    match w {
        Write::Object(k, v) => s.stage_object(k.clone(), v.clone()),
        Write::Removal(k) => s.stage_object_removal(k),
        Write::Hint(o, k, v) => s.stage_hint(*o, k.clone(), v.clone()),
        Write::HintRemoval(o, k) => s.stage_hint_removal(*o, k),
        Write::Meta(g) => s.stage_meta(NodeMeta {
            generation: *g,
            ..NodeMeta::default()
        }),
    }
    .unwrap()
}

fn random_write(rng: &mut Rng, keys: &[ObjectKey]) -> Write {
    let k = keys[rng.below(keys.len() as u64) as usize].clone();
    let o = NodeId(rng.below(2));
    match rng.below(10) {
        0..=4 => Write::Object(k, value(rng)),
        5 => Write::Removal(k),
        6 | 7 => Write::Hint(o, k, value(rng)),
        8 => Write::HintRemoval(o, k),
        _ => Write::Meta(rng.below(1000)),
    }
}

/// `durability`: with `Fsync` every write reported durable must survive and the store
/// never rotates; with `None` nothing is promised, but the store must still open and
/// equal the model after some prefix of the writes (a rotation, which says writes may be
/// lost, is allowed).
fn crash_everywhere(seed: u64, writes: usize, durability: Durability) {
    let mut rng = Rng::new(seed);
    let keys = keys();
    // A store with some history, closed cleanly: the base image.
    let first = Disk::default();
    let mut store = first.open("crash.redb", Durability::Fsync).unwrap();
    let mut model = MemStore::new();
    for _ in 0..10 {
        let w = random_write(&mut rng, &keys);
        stage(&mut store, &w);
        stage(&mut model, &w);
    }
    model.commit();
    store.close().unwrap();
    let base = first.images();

    // The workload, recording when each token was seen reported.
    let disk = Disk::with_images(base.clone());
    let mut store = disk.open("crash.redb", durability).unwrap();
    let opened_at = disk.events();
    let mut prefixes = vec![digest(&model)];
    let mut acked: Vec<(usize, u64)> = Vec::new(); // (event count when seen, seq)
    let mut staged = 0;
    while staged < writes {
        for _ in 0..=rng.below(6) {
            let w = random_write(&mut rng, &keys);
            let WriteToken(seq) = stage(&mut store, &w);
            stage(&mut model, &w);
            model.commit();
            prefixes.push(digest(&model));
            staged += 1;
            assert_eq!(seq as usize, staged);
        }
        if rng.chance(50) {
            store.flush().unwrap();
        }
        let seen = disk.events();
        acked.extend(store.take_persisted().into_iter().map(|t| (seen, t.0)));
    }
    store.flush().unwrap();
    let seen = disk.events();
    acked.extend(store.take_persisted().into_iter().map(|t| (seen, t.0)));
    let log = disk.log();
    drop(store);
    // Header writes (either slot) after open: each begins a lap. Four laps reach a lower
    // lap that reuses older space and the lap after it.
    let laps = log[opened_at..]
        .iter()
        .filter(|(f, e)| {
            *f == 1
                && matches!(
                    e,
                    Event::Write {
                        offset: 0 | 2048,
                        ..
                    }
                )
        })
        .count();
    assert!(
        laps >= 4,
        "seed {seed}: the log began {laps} laps; laps that reuse space go untested"
    );

    let mut older = 0;
    let mut replays = 0;
    // From the first event: a crash while the store opens is a crash too.
    for cut in 0..=log.len() {
        let keep = random_keep(&mut rng);
        let images = crash_images(&base, &log, cut, keep, &mut rng);
        let ctx = format!(
            "seed {seed}, crash after event {cut} of {} keeping {keep:?}",
            log.len()
        );
        let reopened = Disk::with_images(images)
            .open("crash.redb", durability)
            .unwrap_or_else(|e| panic!("{ctx}: a crash image was refused: {e}"));
        let rotated = reopened.recovery().rotated;
        if durability == Durability::Fsync {
            assert_eq!(rotated, None, "{ctx}: fsync durability never rotates");
        }
        let audit = reopened.audit().unwrap();
        assert!(audit.problems.is_empty(), "{ctx}: {:?}", audit.problems);
        let must = acked
            .iter()
            .filter(|(at, _)| *at <= cut && durability == Durability::Fsync)
            .map(|(_, s)| *s as usize)
            .max()
            .unwrap_or(0);
        let mut got = digest(&reopened);
        // A rotation gives the node a new generation, marked unsynced: what it was is
        // what the prefix holds.
        if let (Some(r), Some(meta)) = (rotated, got.meta.as_mut()) {
            assert_eq!(meta.generation, r.to, "{ctx}");
            meta.generation = r.from;
            meta.unsynced = false;
        }
        assert!(
            prefixes[must..].contains(&got),
            "{ctx}: the store is not the model after any prefix from {must} (acknowledged) on"
        );
        older += usize::from(prefixes.last() != Some(&got));
        replays += usize::from(reopened.recovery().replayed > 0);
    }
    assert!(
        replays > 0,
        "seed {seed}: no crash point replayed the log; the cuts test nothing"
    );
    assert!(
        older > 0,
        "seed {seed}: no crash point lost anything; the cuts test nothing"
    );
    eprintln!(
        "seed {seed}: {} events, {} crash points, {older} lost unacknowledged writes, \
         {replays} replayed the log, {laps} laps",
        log.len(),
        log.len() + 1
    );
}

#[test]
fn every_acknowledged_write_survives_a_crash_anywhere() {
    for seed in 1..=3 {
        crash_everywhere(seed, 80, Durability::Fsync);
    }
}

/// Without fsync a crash may lose writes, across laps of the log too, but what opens is
/// always the model after a prefix of them.
#[test]
fn without_fsync_a_crash_anywhere_leaves_a_prefix_of_the_writes() {
    for seed in 4..=5 {
        crash_everywhere(seed, 80, Durability::None);
    }
}

/// A register holding `len` bytes, so a few of them make the file grow.
fn big_register(len: usize, seed: u8) -> Value {
    let mut v = Value::empty(cairn_crdt::ValueType::Register);
    let replica = cairn_crdt::Replica {
        actor: cairn_crdt::Actor(1),
        now: cairn_crdt::Timestamp {
            wall_ms: 1,
            logical: 0,
        },
    };
    let op = cairn_crdt::Op::Register(cairn_crdt::RegisterOp::Assign(vec![seed; len]));
    v.apply(&op, replica).unwrap();
    v
}

/// redb grows the file (`set_len`) during a commit and then writes a header naming the
/// new length. A file system may persist the header write and not the length change
/// (they are data and metadata, committed separately), and redb cannot open a file
/// shorter than its header says. This crashes a growing commit at every point, keeping
/// every unsynced write and no unsynced length change.
#[test]
fn a_crash_that_loses_the_files_growth_loses_no_acknowledged_write() {
    let base = {
        let d = Disk::default();
        d.open("grow.redb", Durability::Fsync)
            .unwrap()
            .close()
            .unwrap();
        d.images()
    };
    let disk = Disk::with_images(base.clone());
    let mut store = disk.open("grow.redb", Durability::Fsync).unwrap();
    let opened_at = disk.events();
    let keys: Vec<ObjectKey> = keys().into_iter().take(8).collect();
    for (i, k) in keys.iter().enumerate() {
        store
            .stage_object(k.clone(), big_register(512 * 1024, i as u8))
            .unwrap();
    }
    store.flush().unwrap();
    let acked_at = disk.events();
    assert_eq!(store.take_persisted().len(), keys.len());
    let log = disk.log();
    drop(store);
    assert!(
        log[opened_at..]
            .iter()
            .any(|(f, e)| *f == 0 && matches!(e, Event::SetLen(n) if *n as usize > base[0].len())),
        "the workload never grew the file; the test tests nothing"
    );

    for cut in opened_at..=log.len() {
        let images = crash_images(&base, &log, cut, Keep::NoLengths, &mut Rng::new(1));
        let ctx = format!("crash after event {cut} of {}", log.len());
        let reopened = Disk::with_images(images)
            .open("grow.redb", Durability::Fsync)
            .unwrap_or_else(|e| panic!("{ctx}: a crash image was refused: {e}"));
        let audit = reopened.audit().unwrap();
        assert!(audit.problems.is_empty(), "{ctx}: {:?}", audit.problems);
        if cut >= acked_at {
            for (i, k) in keys.iter().enumerate() {
                assert_eq!(
                    reopened.object(k).unwrap(),
                    Some(big_register(512 * 1024, i as u8)),
                    "{ctx}: an acknowledged write is gone"
                );
            }
        }
    }
}

/// A store whose log is gone after an unclean shutdown takes a new generation; a crash
/// at any point of that open must not leave a store that later opens as if nothing was
/// lost (the rotation is committed with the open's first write).
#[test]
fn a_lost_log_rotates_even_when_the_open_that_sees_it_crashes() {
    let meta7 = NodeMeta {
        generation: 7,
        ..NodeMeta::default()
    };
    let d = Disk::default();
    let mut s = d.open("lost.redb", Durability::Fsync).unwrap();
    s.stage_meta(meta7.clone()).unwrap();
    s.close().unwrap();
    let s = d.open("lost.redb", Durability::Fsync).unwrap();
    let [db, _] = d.images(); // Taken while open: the session is unclean.
    drop(s);
    let base = [db, Vec::new()]; // ... and the log is lost.
    let disk = Disk::with_images(base.clone());
    let opened = disk.open("lost.redb", Durability::Fsync).unwrap();
    assert_eq!(
        opened.recovery().rotated.map(|r| r.reason),
        Some(cairn_store::RotationReason::LogLost)
    );
    let log = disk.log();
    drop(opened);
    let mut rng = Rng::new(5);
    for cut in 0..=log.len() {
        let keep = random_keep(&mut rng);
        let images = crash_images(&base, &log, cut, keep, &mut rng);
        let again = Disk::with_images(images)
            .open("lost.redb", Durability::Fsync)
            .unwrap();
        let generation = again.meta().unwrap().map(|m| m.generation);
        assert_ne!(
            generation,
            Some(7),
            "crash after event {cut} of {} keeping {keep:?}: the lost log was forgotten",
            log.len()
        );
    }
}

#[test]
fn the_crash_backend_loses_unsynced_writes() {
    // The harness itself: with no sync, a crash keeps nothing new.
    let base = {
        let d = Disk::default();
        d.open("x", Durability::Fsync).unwrap().close().unwrap();
        d.images()
    };
    let disk = Disk::with_images(base.clone());
    let mut store = disk.open("x", Durability::None).unwrap();
    let k = keys()[0].clone();
    store
        .stage_object(k.clone(), Value::empty(cairn_crdt::ValueType::Counter))
        .unwrap();
    store.flush().unwrap();
    let log = disk.log();
    let mut rng = Rng::new(3);
    let mut lost = false;
    for _ in 0..8 {
        let keep = random_keep(&mut rng);
        let images = crash_images(&base, &log, log.len(), keep, &mut rng);
        let s = Disk::with_images(images)
            .open("x", Durability::None)
            .unwrap();
        lost |= s.object(&k).unwrap().is_none();
    }
    assert!(
        lost,
        "a None-durability write was never lost: the backend is not simulating crashes"
    );
    drop(store);
}
