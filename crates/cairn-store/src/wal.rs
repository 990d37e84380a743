//! The write-ahead log: where a write becomes durable.
//!
//! A redb commit costs a fixed ~100 µs of page bookkeeping plus an fsync of every page it
//! dirtied, scattered over the file. A log append costs one sequential write and an
//! fsync of a page or two. So the writer appends each batch to this log, syncs it and
//! reports the batch durable; a second thread applies batches to redb afterwards, many
//! at a time (up to `APPLY_WAIT` of them), each commit synced (a *checkpoint*; with
//! `Durability::None` only those the log's restart asks for). Reads never look here:
//! until a batch is applied its writes are in the overlay.
//!
//! ## The file, byte by byte
//!
//! ```text
//! header, in two slots (offsets 0 and 2048; HEADER_BYTES reserved), lap N in slot N % 2:
//!   "CAIRNWAL" | version u32 LE (1) | 0u32 | lap u64 LE | epoch u64 LE
//!   | previous epoch u64 LE | previous end u64 LE | xxh3-64 of the 48 bytes before it
//!   The valid slot with the higher lap is the header; a torn write of the new one leaves
//!   the old one in force.
//! records, from offset HEADER_BYTES, back to back:
//!   xxh3-64 of the rest, u64 LE | payload length u32 LE | epoch u64 LE | payload
//! payload: ops, each a tag byte and its fields (see `encode_ops`)
//! ```
//!
//! An *epoch* is a random number naming one lap of the log. Records carry it, so what
//! an earlier lap left further on in the file (the log is rewritten from the start, never
//! truncated, so that appends overwrite blocks the file system already holds) is never
//! taken for a record of this lap, even when user bytes inside an old payload happen to
//! look like a record: the epoch is not guessable.
//!
//! ## What redb and the log agree on
//!
//! Every redb commit made by the applier records in `meta`, with the writes it applies,
//! the epoch and the end offset of the last record it applied (`wal` record,
//! [`Applied`]). At open:
//! - the header's epoch equals the recorded one: records from the recorded offset on are
//!   replayed;
//! - the header's *previous* lap (epoch and end) equals the recorded one: the log was
//!   restarted after a checkpoint that applied all of the previous lap; every record is
//!   replayed;
//! - anything else (no header, damaged headers, another store's log, a store file older
//!   or newer than its log): nothing is replayed, and the caller treats the store as one
//!   that may have lost writes.
//!
//! Replay stops at the first record that is short, fails its checksum, or has another
//! epoch: that is the torn tail of a crash (never reported durable). Records are whole
//! values of rows, so applying one twice is harmless.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

use cairn_core::StoreError;
use redb::StorageBackend;
use xxhash_rust::xxh3::xxh3_64;

use crate::format::DiskKey;
use crate::writer::Op;

/// Bytes reserved for the header at the start of the file.
pub(crate) const HEADER_BYTES: u64 = 4096;

/// The log restarts from its beginning (after a checkpoint) once it is this long, by
/// default (`Options::wal_restart_bytes`), or from an eighth before, right after an
/// applier commit (`writer::Restart`). The file is this long (plus a step) from the
/// start, written with zeros, so no append has to grow it: growing a file makes its next
/// fsync commit file-system metadata, which on ext4 waits for other files' dirty data
/// too (measured: 120–230 ms log syncs while the file grew beside a busy redb file).
pub const WAL_RESTART_BYTES: u64 = 16 << 20;

/// A node's log length before it starts over: [`WAL_RESTART_BYTES`] plus up to half again,
/// in whole pages, chosen by `seed` (a node draws one at random at every start).
///
/// Not one length for every node: a restart waits for the applier's checkpoint, and every
/// write on the node waits with it. Replicas log the same writes, so logs of one length
/// fill together and restart together, and while two of three replicas wait no write
/// quorum of two escapes. On a store of 300,000 keys such a wait took 130–460 ms (the
/// checkpoint waits for the applier's commit in progress, and each commit there takes
/// 100–500 ms), and each burst of slow requests at 8k increments/s lined up with two
/// nodes' restarts within ~250 ms of each other (session 31). Spread over half a length,
/// two replicas' restarts meet only by chance.
pub fn spread_restart_bytes(seed: u64) -> u64 {
    WAL_RESTART_BYTES + (seed % (WAL_RESTART_BYTES / 2)) / HEADER_BYTES * HEADER_BYTES
}

/// The file grows by at least this much at a time, written with zeros, when a record
/// does not fit (a batch larger than the space left before a restart).
pub const WAL_GROW_BYTES: u64 = 1 << 20;

const MAGIC: &[u8; 8] = b"CAIRNWAL";
const VERSION: u32 = 1;
const HEADER_USED: usize = 56;
/// Where the second header slot starts.
const SLOT_2: u64 = 2048;
const RECORD_HEAD: usize = 20;

/// What a synced redb commit holds of the log: everything of `epoch` before `end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Applied {
    pub(crate) epoch: u64,
    pub(crate) end: u64,
}

/// The log's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    /// Counts restarts of this file; the higher valid slot wins.
    pub(crate) lap: u64,
    pub(crate) epoch: u64,
    /// The lap before, as redb recorded it when it held all of it.
    pub(crate) previous: Applied,
}

/// What open found in the log.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Found {
    /// The log has no header: a new store, or a store from before the log existed.
    Empty,
    /// The header is damaged or names another lap: nothing was replayed.
    Unrelated,
    /// These batches (each a list of ops), in order, are to be replayed; the lap's epoch
    /// and the end of its last whole record.
    Replay {
        epoch: u64,
        end: u64,
        batches: Vec<Vec<Op>>,
    },
}

/// A random epoch, seeded by the operating system (std's `RandomState`).
pub(crate) fn fresh_epoch() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(0x00CA_1A4E);
    h.finish() | 1
}

/// The log, open for appending.
#[derive(Debug)]
pub(crate) struct Wal {
    backend: Box<dyn StorageBackend>,
    name: String,
    epoch: u64,
    /// Where the next record goes.
    end: u64,
    /// The file's length.
    len: u64,
    /// Restart once the log is this long.
    restart_bytes: u64,
    /// The current lap's number.
    lap: u64,
}

impl Wal {
    /// Starts a new lap at the beginning of the file: writes a header with a fresh epoch
    /// naming `previous` (what redb holds) and syncs it. The caller must have made redb
    /// hold `previous` first. The file is first grown (with zeros) to hold
    /// `restart_bytes` of log.
    pub(crate) fn restart(
        backend: Box<dyn StorageBackend>,
        name: String,
        previous: Applied,
        restart_bytes: u64,
    ) -> Result<Wal, StoreError> {
        let len = backend.len().map_err(|e| io(&name, &e))?;
        let lap = match read_header(&*backend, &name)? {
            Slots::Header(h) => h.lap,
            Slots::Zeros | Slots::Damaged => 0,
        };
        let mut wal = Wal {
            backend,
            name,
            epoch: 0,
            end: HEADER_BYTES,
            len,
            restart_bytes: restart_bytes.max(HEADER_BYTES + 1),
            lap,
        };
        wal.ensure(wal.restart_bytes + WAL_GROW_BYTES)?;
        wal.restart_lap(previous)?;
        Ok(wal)
    }

    /// Whether the log is long enough to start over.
    pub(crate) fn wants_restart(&self) -> bool {
        self.end >= self.restart_bytes
    }

    /// Whether the log is long enough to ask for the checkpoint its restart needs: an
    /// eighth before [`wants_restart`](Self::wants_restart), so the checkpoint usually
    /// ends before the log is full (see `writer::Restart`).
    pub(crate) fn wants_checkpoint(&self) -> bool {
        self.end >= self.restart_bytes - self.restart_bytes / 8
    }

    fn restart_lap(&mut self, previous: Applied) -> Result<(), StoreError> {
        let header = Header {
            lap: self.lap.wrapping_add(1),
            epoch: fresh_epoch(),
            previous,
        };
        self.ensure(HEADER_BYTES)?;
        let slot = if header.lap % 2 == 0 { 0 } else { SLOT_2 };
        self.backend
            .write(slot, &encode_header(header))
            .map_err(|e| io(&self.name, &e))?;
        self.lap = header.lap;
        self.sync()?;
        self.epoch = header.epoch;
        self.end = HEADER_BYTES;
        Ok(())
    }

    /// Restarts the log (see [`Wal::restart`]).
    pub(crate) fn restart_in_place(&mut self) -> Result<(), StoreError> {
        let previous = Applied {
            epoch: self.epoch,
            end: self.end,
        };
        self.restart_lap(previous)
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Where the next record goes (the end of the last one).
    pub(crate) fn end(&self) -> u64 {
        self.end
    }

    /// Appends one record holding `ops` (not synced).
    pub(crate) fn append<'a>(
        &mut self,
        ops: impl Iterator<Item = &'a Op>,
    ) -> Result<(), StoreError> {
        let mut rec = vec![0u8; RECORD_HEAD];
        encode_ops(ops, &mut rec);
        let payload = u32::try_from(rec.len() - RECORD_HEAD).map_err(|_| {
            StoreError::Io(format!(
                "{}: a batch too large for one log record",
                self.name
            ))
        })?;
        rec[8..12].copy_from_slice(&payload.to_le_bytes());
        rec[12..20].copy_from_slice(&self.epoch.to_le_bytes());
        let sum = xxh3_64(&rec[8..]);
        rec[..8].copy_from_slice(&sum.to_le_bytes());
        self.ensure(self.end + rec.len() as u64)?;
        self.backend
            .write(self.end, &rec)
            .map_err(|e| io(&self.name, &e))?;
        self.end += rec.len() as u64;
        Ok(())
    }

    /// Makes everything appended durable.
    pub(crate) fn sync(&self) -> Result<(), StoreError> {
        self.backend
            .sync_data(false)
            .map_err(|e| io(&self.name, &e))
    }

    /// Grows the file with zeros to at least `need` bytes, by whole `WAL_GROW_BYTES`.
    fn ensure(&mut self, need: u64) -> Result<(), StoreError> {
        if need <= self.len {
            return Ok(());
        }
        let target = need.div_ceil(WAL_GROW_BYTES) * WAL_GROW_BYTES;
        let zeros = vec![0u8; usize::try_from(WAL_GROW_BYTES).unwrap_or(1 << 20)];
        let mut at = self.len;
        while at < target {
            let n = (target - at).min(zeros.len() as u64);
            let chunk = zeros.get(..usize::try_from(n).unwrap_or(0)).unwrap_or(&[]);
            self.backend
                .write(at, chunk)
                .map_err(|e| io(&self.name, &e))?;
            at += n;
        }
        self.len = target;
        Ok(())
    }
}

fn io(name: &str, e: &std::io::Error) -> StoreError {
    StoreError::Io(format!("{name}: {e}"))
}

fn encode_header(h: Header) -> Vec<u8> {
    let mut b = Vec::with_capacity(HEADER_USED);
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&VERSION.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&h.lap.to_le_bytes());
    b.extend_from_slice(&h.epoch.to_le_bytes());
    b.extend_from_slice(&h.previous.epoch.to_le_bytes());
    b.extend_from_slice(&h.previous.end.to_le_bytes());
    let sum = xxh3_64(&b);
    b.extend_from_slice(&sum.to_le_bytes());
    b
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        a.copy_from_slice(s);
    }
    u64::from_le_bytes(a)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        a.copy_from_slice(s);
    }
    u32::from_le_bytes(a)
}

/// The header, if the first bytes are a whole, undamaged one.
pub(crate) fn decode_header(b: &[u8]) -> Option<Header> {
    let b = b.get(..HEADER_USED)?;
    if &b[..8] != MAGIC || u32_at(b, 8) != VERSION || xxh3_64(&b[..48]) != u64_at(b, 48) {
        return None;
    }
    Some(Header {
        lap: u64_at(b, 16),
        epoch: u64_at(b, 24),
        previous: Applied {
            epoch: u64_at(b, 32),
            end: u64_at(b, 40),
        },
    })
}

/// What the two header slots hold.
enum Slots {
    /// Nothing was ever written (a new, zero-filled or empty file).
    Zeros,
    /// Neither slot holds a whole header.
    Damaged,
    /// The header in force: the valid slot with the higher lap.
    Header(Header),
}

fn read_header(backend: &dyn StorageBackend, name: &str) -> Result<Slots, StoreError> {
    let len = backend.len().map_err(|e| io(name, &e))?;
    let mut best: Option<Header> = None;
    let mut zeros = true;
    for slot in [0, SLOT_2] {
        if slot + HEADER_USED as u64 > len {
            continue;
        }
        let b = backend.read(slot, HEADER_USED).map_err(|e| io(name, &e))?;
        zeros &= b.iter().all(|&x| x == 0);
        if let Some(h) = decode_header(&b) {
            if best.is_none_or(|old| h.lap > old.lap) {
                best = Some(h);
            }
        }
    }
    Ok(match best {
        Some(h) => Slots::Header(h),
        None if zeros => Slots::Zeros,
        None => Slots::Damaged,
    })
}

/// Reads the log in `backend` against what redb holds (`applied`; `None` for a store
/// that never recorded one) and returns what to replay.
pub(crate) fn recover(
    backend: &dyn StorageBackend,
    name: &str,
    applied: Option<Applied>,
) -> Result<Found, StoreError> {
    let len = backend.len().map_err(|e| io(name, &e))?;
    let header = match read_header(backend, name)? {
        Slots::Zeros => return Ok(Found::Empty),
        Slots::Damaged => return Ok(Found::Unrelated),
        Slots::Header(h) => h,
    };
    let Some(applied) = applied else {
        return Ok(Found::Unrelated);
    };
    let start = if header.epoch == applied.epoch {
        applied.end.max(HEADER_BYTES)
    } else if header.previous == applied {
        HEADER_BYTES
    } else {
        return Ok(Found::Unrelated);
    };
    let mut batches = Vec::new();
    let mut at = start;
    while let Some((ops, next)) = record_at(backend, name, header.epoch, at, len)? {
        batches.push(ops);
        at = next;
    }
    Ok(Found::Replay {
        epoch: header.epoch,
        end: at,
        batches,
    })
}

/// The record at `at`, if a whole one of `epoch` is there; its ops and where the next
/// record starts.
fn record_at(
    backend: &dyn StorageBackend,
    name: &str,
    epoch: u64,
    at: u64,
    len: u64,
) -> Result<Option<(Vec<Op>, u64)>, StoreError> {
    if at + RECORD_HEAD as u64 > len {
        return Ok(None);
    }
    let head = backend.read(at, RECORD_HEAD).map_err(|e| io(name, &e))?;
    let payload = u64::from(u32_at(&head, 8));
    let end = at + RECORD_HEAD as u64 + payload;
    // `end <= len` bounds what is read (and allocated) by the file's length.
    if u64_at(&head, 12) != epoch || end > len {
        return Ok(None);
    }
    let whole = backend
        .read(
            at,
            usize::try_from(end - at).map_err(|_| corrupt(name, at))?,
        )
        .map_err(|e| io(name, &e))?;
    if xxh3_64(whole.get(8..).unwrap_or(&[])) != u64_at(&whole, 0) {
        return Ok(None);
    }
    // A record that passes its checksum was written whole by us; ops that do not decode
    // are damage (or a bug), not a torn tail.
    let ops =
        decode_ops(whole.get(RECORD_HEAD..).unwrap_or(&[])).ok_or_else(|| corrupt(name, at))?;
    Ok(Some((ops, end)))
}

fn corrupt(name: &str, at: u64) -> StoreError {
    StoreError::Corrupt(format!(
        "{name}: the log record at offset {at} passes its checksum but does not decode"
    ))
}

const TAG_OBJECT: u8 = 1;
const TAG_OBJECT_REMOVAL: u8 = 2;
const TAG_SEGMENT: u8 = 3;
const TAG_HINT: u8 = 4;
const TAG_HINT_REMOVAL: u8 = 5;
const TAG_TOTALS: u8 = 6;
const TAG_NODE: u8 = 7;

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    // Keys and records are far below 4 GiB (values are bounded long before).
    out.extend_from_slice(&u32::try_from(b.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(b);
}

/// A row write (`tags.0`, key, record) or removal (`tags.1`, key).
fn put_row(out: &mut Vec<u8>, tags: (u8, u8), key: &[u8], record: Option<&[u8]>) {
    out.push(if record.is_some() { tags.0 } else { tags.1 });
    put_bytes(out, key);
    if let Some(r) = record {
        put_bytes(out, r);
    }
}

/// Ops as bytes: a tag, then the op's fields (byte strings as `[len u32 LE] [bytes]`).
pub(crate) fn encode_ops<'a>(ops: impl Iterator<Item = &'a Op>, out: &mut Vec<u8>) {
    for op in ops {
        match op {
            Op::Object { key, record } => {
                put_row(
                    out,
                    (TAG_OBJECT, TAG_OBJECT_REMOVAL),
                    key,
                    record.as_deref(),
                );
            }
            Op::Segment { key, hash } => {
                out.push(TAG_SEGMENT);
                out.extend_from_slice(key);
                out.extend_from_slice(&hash.to_le_bytes());
            }
            Op::Hint { key, record } => {
                put_row(out, (TAG_HINT, TAG_HINT_REMOVAL), key, record.as_deref());
            }
            Op::Totals { owner, totals } => {
                out.push(TAG_TOTALS);
                out.extend_from_slice(owner);
                out.extend_from_slice(&totals.0.to_le_bytes());
                out.extend_from_slice(&totals.1.to_le_bytes());
            }
            Op::Node(r) => {
                out.push(TAG_NODE);
                put_bytes(out, r);
            }
        }
    }
}

/// A cursor over a payload; every read is checked.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
    fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }
    fn bytes(&mut self) -> Option<Vec<u8>> {
        self.slice().map(<[u8]>::to_vec)
    }

    fn key(&mut self) -> Option<DiskKey> {
        self.slice().map(DiskKey::from_slice)
    }

    fn slice(&mut self) -> Option<&'a [u8]> {
        let n = u32::from_le_bytes(self.array()?);
        self.take(usize::try_from(n).ok()?)
    }
}

/// The ops of a payload, or `None` if it is not exactly a list of them.
pub(crate) fn decode_ops(payload: &[u8]) -> Option<Vec<Op>> {
    let mut r = Reader(payload);
    let mut ops = Vec::new();
    while let Some(&[tag]) = r.take(1) {
        ops.push(match tag {
            TAG_OBJECT => Op::Object {
                key: r.key()?,
                record: Some(r.bytes()?),
            },
            TAG_OBJECT_REMOVAL => Op::Object {
                key: r.key()?,
                record: None,
            },
            TAG_SEGMENT => Op::Segment {
                key: r.array()?,
                hash: r.u64()?,
            },
            TAG_HINT => Op::Hint {
                key: r.bytes()?,
                record: Some(r.bytes()?),
            },
            TAG_HINT_REMOVAL => Op::Hint {
                key: r.bytes()?,
                record: None,
            },
            TAG_TOTALS => Op::Totals {
                owner: r.array()?,
                totals: (r.u64()?, r.u64()?),
            },
            TAG_NODE => Op::Node(r.bytes()?),
            _ => return None,
        });
    }
    Some(ops)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::cast_possible_truncation)]
mod tests {
    use std::sync::{Arc, Mutex};

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn restart_lengths_spread_over_half_a_length_in_whole_pages() {
        let lengths: Vec<u64> = (0..1000u64)
            .map(|i| spread_restart_bytes(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
            .collect();
        for &l in &lengths {
            assert!(
                (WAL_RESTART_BYTES..WAL_RESTART_BYTES * 3 / 2).contains(&l),
                "{l}"
            );
            assert_eq!(l % HEADER_BYTES, 0, "{l}");
        }
        let (lo, hi) = (lengths.iter().min(), lengths.iter().max());
        let spread = hi.zip(lo).map_or(0, |(h, l)| h - l);
        assert!(spread > WAL_RESTART_BYTES * 2 / 5, "spread {spread}");
        assert_eq!(spread_restart_bytes(0), WAL_RESTART_BYTES);
        assert_eq!(spread_restart_bytes(u64::MAX) % HEADER_BYTES, 0);
    }

    /// An in-memory file the test can still see after handing it to the log.
    #[derive(Clone, Debug, Default)]
    struct Mem(Arc<Mutex<Vec<u8>>>);

    impl StorageBackend for Mem {
        fn len(&self) -> Result<u64, std::io::Error> {
            Ok(self.0.lock().unwrap().len() as u64)
        }
        fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>, std::io::Error> {
            let b = self.0.lock().unwrap();
            let at = offset as usize;
            b.get(at..at + len)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))
        }
        fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
            self.0.lock().unwrap().resize(len as usize, 0);
            Ok(())
        }
        fn sync_data(&self, _: bool) -> Result<(), std::io::Error> {
            Ok(())
        }
        fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
            let mut b = self.0.lock().unwrap();
            let at = offset as usize;
            if b.len() < at + data.len() {
                b.resize(at + data.len(), 0);
            }
            b[at..at + data.len()].copy_from_slice(data);
            Ok(())
        }
    }

    fn batch(i: u8) -> Vec<Op> {
        vec![
            Op::Object {
                key: DiskKey::from_slice(&[0, 1, i]),
                record: Some(vec![i; 3]),
            },
            Op::Segment {
                key: [0, 1, 0, i],
                hash: u64::from(i) * 7,
            },
            Op::Object {
                key: DiskKey::from_slice(&[9]),
                record: None,
            },
            Op::Hint {
                key: vec![i],
                record: Some(vec![]),
            },
            Op::Hint {
                key: vec![i, i],
                record: None,
            },
            Op::Totals {
                owner: [i; 8],
                totals: (1, 2),
            },
            Op::Node(vec![1, 2, 3]),
        ]
    }

    /// What redb holds in these tests before the log's first lap.
    const BEFORE: Applied = Applied {
        epoch: 42,
        end: 4321,
    };

    /// A log whose previous lap is `previous`, with `n` batches appended.
    fn log_with(n: u8, previous: Applied) -> (Mem, Wal, Vec<u64>) {
        let mem = Mem::default();
        let mut wal = Wal::restart(Box::new(mem.clone()), "t.wal".into(), previous, 8192).unwrap();
        let mut ends = Vec::new();
        for i in 0..n {
            wal.append(batch(i).iter()).unwrap();
            ends.push(wal.end());
        }
        (mem, wal, ends)
    }

    fn replayed(found: Found) -> Vec<Vec<Op>> {
        match found {
            Found::Replay { batches, .. } => batches,
            other => panic!("expected a replay, got {other:?}"),
        }
    }

    #[test]
    fn a_new_lap_replays_whole_and_a_recorded_end_replays_the_rest() {
        let (mem, wal, ends) = log_with(3, BEFORE);
        let all = recover(&mem, "t", Some(BEFORE)).unwrap();
        assert_eq!(replayed(all), vec![batch(0), batch(1), batch(2)]);
        let rest = Applied {
            epoch: wal.epoch(),
            end: ends[0],
        };
        let found = recover(&mem, "t", Some(rest)).unwrap();
        assert_eq!(
            found,
            Found::Replay {
                epoch: wal.epoch(),
                end: ends[2],
                batches: vec![batch(1), batch(2)],
            }
        );
    }

    #[test]
    fn replay_stops_at_a_torn_record() {
        let (mem, _, ends) = log_with(3, BEFORE);
        let applied = Some(BEFORE);
        for cut in [ends[1] + 1, ends[2] - 1] {
            let mut torn = mem.0.lock().unwrap().clone();
            torn[cut as usize..ends[2] as usize].fill(0);
            let m = Mem(Arc::new(Mutex::new(torn)));
            assert_eq!(replayed(recover(&m, "t", applied).unwrap()).len(), 2);
        }
        // A flipped byte inside the middle record ends the replay there too.
        let mut flipped = mem.0.lock().unwrap().clone();
        flipped[ends[0] as usize + RECORD_HEAD + 2] ^= 1;
        let m = Mem(Arc::new(Mutex::new(flipped)));
        assert_eq!(replayed(recover(&m, "t", applied).unwrap()).len(), 1);
    }

    #[test]
    fn records_of_an_earlier_lap_are_never_replayed() {
        let (mem, mut wal, _) = log_with(5, BEFORE);
        let old = Applied {
            epoch: wal.epoch(),
            end: wal.end(),
        };
        wal.restart_in_place().unwrap();
        wal.append(batch(9).iter()).unwrap();
        // The old lap's later records are still in the file, after the new one.
        let found = recover(&mem, "t", Some(old)).unwrap();
        assert_eq!(replayed(found), vec![batch(9)]);
        // A store that holds only part of the previous lap is not this log's base.
        let part = Applied {
            end: old.end - 1,
            ..old
        };
        assert_eq!(recover(&mem, "t", Some(part)).unwrap(), Found::Unrelated);
    }

    #[test]
    fn a_torn_new_header_leaves_the_old_one_in_force() {
        let (mem, mut wal, ends) = log_with(2, BEFORE);
        let first = Applied {
            epoch: wal.epoch(),
            end: wal.end(),
        };
        let before_restart = mem.0.lock().unwrap().clone();
        wal.restart_in_place().unwrap();
        // Lap 2 went to slot 0; tear it as a crash during the restart could.
        let mut torn = mem.0.lock().unwrap().clone();
        torn[..HEADER_USED].copy_from_slice(&before_restart[..HEADER_USED]);
        torn[..20].copy_from_slice(&mem.0.lock().unwrap()[..20]);
        let m = Mem(Arc::new(Mutex::new(torn)));
        // redb holds all of lap 1 (the checkpoint before a restart): nothing to replay.
        let found = recover(&m, "t", Some(first)).unwrap();
        assert_eq!(
            found,
            Found::Replay {
                epoch: first.epoch,
                end: ends[1],
                batches: vec![],
            }
        );
    }

    #[test]
    fn a_log_that_does_not_match_the_store_is_not_replayed() {
        let (mem, _, _) = log_with(2, BEFORE);
        assert_eq!(
            recover(&mem, "t", Some(Applied { epoch: 7, end: 0 })).unwrap(),
            Found::Unrelated
        );
        assert_eq!(recover(&mem, "t", None).unwrap(), Found::Unrelated);
        let mut damaged = mem.0.lock().unwrap().clone();
        // The first lap's header is in the second slot.
        damaged[SLOT_2 as usize + 17] ^= 0x40;
        let m = Mem(Arc::new(Mutex::new(damaged)));
        let applied = Some(BEFORE);
        assert_eq!(recover(&m, "t", applied).unwrap(), Found::Unrelated);
        assert_eq!(
            recover(&Mem::default(), "t", applied).unwrap(),
            Found::Empty
        );
        let zeros = Mem(Arc::new(Mutex::new(vec![0; 8192])));
        assert_eq!(recover(&zeros, "t", applied).unwrap(), Found::Empty);
    }

    #[test]
    fn a_checksummed_record_that_does_not_decode_is_damage() {
        let (mem, wal, _) = log_with(0, BEFORE);
        let payload = [0xEEu8, 1, 2];
        let mut rec = vec![0u8; RECORD_HEAD];
        rec.extend_from_slice(&payload);
        rec[8..12].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        rec[12..20].copy_from_slice(&wal.epoch().to_le_bytes());
        let sum = xxh3_64(&rec[8..]);
        rec[..8].copy_from_slice(&sum.to_le_bytes());
        mem.write(HEADER_BYTES, &rec).unwrap();
        let e = recover(&mem, "t.wal", Some(BEFORE)).unwrap_err();
        assert!(
            matches!(&e, StoreError::Corrupt(m) if m.contains("t.wal") && m.contains("4096")),
            "{e:?}"
        );
    }

    #[test]
    fn the_file_is_made_whole_up_front_and_laps_reuse_it() {
        let (mem, mut wal, _) = log_with(3, BEFORE);
        let len = mem.len().unwrap();
        assert!(len >= 8192 + WAL_GROW_BYTES && len % WAL_GROW_BYTES == 0);
        assert!(mem.0.lock().unwrap()[wal.end() as usize..]
            .iter()
            .all(|&b| b == 0));
        while !wal.wants_restart() {
            wal.append(batch(1).iter()).unwrap();
        }
        wal.restart_in_place().unwrap();
        wal.append(batch(1).iter()).unwrap();
        assert_eq!(mem.len().unwrap(), len, "a lap overwrites");
        // A record larger than what is left grows the file by whole steps.
        let big = [Op::Node(vec![7; len as usize])];
        wal.append(big.iter()).unwrap();
        assert_eq!(mem.len().unwrap(), len + WAL_GROW_BYTES);
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        let bytes = || proptest::collection::vec(any::<u8>(), 0..40);
        prop_oneof![
            (bytes(), proptest::option::of(bytes())).prop_map(|(key, record)| Op::Object {
                key: DiskKey::from_vec(key),
                record
            }),
            (any::<[u8; 4]>(), any::<u64>()).prop_map(|(key, hash)| Op::Segment { key, hash }),
            (bytes(), proptest::option::of(bytes()))
                .prop_map(|(key, record)| Op::Hint { key, record }),
            (any::<[u8; 8]>(), any::<(u64, u64)>())
                .prop_map(|(owner, totals)| Op::Totals { owner, totals }),
            bytes().prop_map(Op::Node),
        ]
    }

    proptest! {
        #[test]
        fn ops_round_trip(ops in proptest::collection::vec(arb_op(), 0..20)) {
            let mut b = Vec::new();
            encode_ops(ops.iter(), &mut b);
            prop_assert_eq!(decode_ops(&b), Some(ops));
        }

        #[test]
        fn any_bytes_decode_or_are_refused_without_panic(
            b in proptest::collection::vec(any::<u8>(), 0..200)
        ) {
            let _ = decode_ops(&b);
            let _ = decode_header(&b);
        }
    }
}
