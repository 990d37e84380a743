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
//! ## Laps in two areas
//!
//! The log is written in *laps*. Laps alternate between two areas of the file: the lower
//! one starts at `HEADER_BYTES`, the upper one where the lower lap before it ended (or at
//! the restart length, if that is further on). A new lap overwrites the lap before the
//! previous one, never the previous one, so it needs redb to hold durably only that older
//! lap, which the applier has usually finished long ago: the log writer waits for a
//! checkpoint only when the applier is a whole lap behind (or, with `Durability::None`,
//! every other lap). Version 1 rewrote a single area, so every restart waited for a
//! checkpoint of the whole lap (110–580 ms on a store of 300,000 keys), and every write
//! on the node with it. A lower lap that follows an upper one never writes at or past
//! that upper lap's start; the first lap after open is lower and unbounded (open left
//! redb holding everything the file held).
//!
//! ## The file, byte by byte
//!
//! ```text
//! header, in two slots (offsets 0 and 2048; HEADER_BYTES reserved), lap N in slot N % 2:
//!   "CAIRNWAL" | version u32 LE (2) | 0u32 | lap u64 LE | epoch u64 LE | start u64 LE
//!   | previous epoch u64 LE | previous end u64 LE | xxh3-64 of the 56 bytes before it
//!   The valid slot with the higher lap is the header in force; a torn write of the new
//!   one leaves the old one in force. The other slot holds the previous lap's header.
//!   Version 1 (read, never written) has no start: its laps all start at HEADER_BYTES.
//! records, from the lap's start, back to back:
//!   xxh3-64 of the rest, u64 LE | payload length u32 LE | epoch u64 LE | payload
//! payload: ops, each a tag byte and its fields (see `encode_ops`)
//! ```
//!
//! An *epoch* is a random number naming one lap of the log. Records carry it, so what
//! an earlier lap left further on in the file (the log is rewritten, never truncated, so
//! that appends overwrite blocks the file system already holds) is never taken for a
//! record of this lap, even when user bytes inside an old payload happen to look like a
//! record: the epoch is not guessable.
//!
//! ## What redb and the log agree on
//!
//! Every redb commit made by the applier records in `meta`, with the writes it applies,
//! the epoch and the end offset of the last record it applied (`wal` record,
//! [`Applied`]). At open, with the current lap's header in force and the previous lap's
//! header in the other slot:
//! - the recorded epoch is the current lap's: records from the recorded offset on are
//!   replayed;
//! - the recorded epoch is the previous lap's (and the offset not past its end, which the
//!   current header names): the rest of the previous lap, then every record of the
//!   current one;
//! - the recorded mark is the end of the lap before the previous one (which the previous
//!   lap's header names): all of the previous lap, then all of the current one;
//! - anything else (no header, damaged headers, another store's log, a store file older
//!   or newer than its log), or a previous lap that does not read whole up to its end:
//!   nothing is replayed, and the caller treats the store as one that may have lost
//!   writes. The log writer starts a lap only when redb holds the lap before the
//!   previous one, and the previous lap's records are synced before the new header, so
//!   none of these happens after a crash.
//!
//! The current lap's replay stops at the first record that is short, fails its checksum,
//! or has another epoch: that is the torn tail of a crash (never reported durable).
//! Records are whole values of rows, so applying one twice is harmless.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

use cairn_core::StoreError;
use redb::StorageBackend;
use xxhash_rust::xxh3::xxh3_64;

use crate::format::DiskKey;
use crate::writer::Op;

/// Bytes reserved for the header at the start of the file.
pub(crate) const HEADER_BYTES: u64 = 4096;

/// A lap of the log ends once it holds about this much, by default
/// (`Options::wal_restart_bytes`), and the next starts in the other area. The file is
/// twice this long (plus a step) from the start, written with zeros, so no append has to
/// grow it: growing a file makes its next fsync commit file-system metadata, which on
/// ext4 waits for other files' dirty data too (measured: 120–230 ms log syncs while the
/// file grew beside a busy redb file).
pub const WAL_RESTART_BYTES: u64 = 16 << 20;

/// A node's log length before it starts over: [`WAL_RESTART_BYTES`] plus up to half again,
/// in whole pages, chosen by `seed` (a node draws one at random at every start).
///
/// Not one length for every node: a restart may wait for the applier's checkpoint (when
/// the applier is a whole lap behind), and every write on the node waits with it.
/// Replicas log the same writes, so logs of one length fill together and restart
/// together, and while two of three replicas wait no write quorum of two escapes. Before
/// laps alternated between two areas every restart waited: on a store of 300,000 keys
/// 130–460 ms, and each burst of slow requests at 8k increments/s lined up with two
/// nodes' restarts within ~250 ms of each other (session 31). Spread over half a length,
/// two replicas' restarts meet only by chance.
pub fn spread_restart_bytes(seed: u64) -> u64 {
    WAL_RESTART_BYTES + (seed % (WAL_RESTART_BYTES / 2)) / HEADER_BYTES * HEADER_BYTES
}

/// The file grows by at least this much at a time, written with zeros, when a record
/// does not fit (a batch larger than the space left before a restart).
pub const WAL_GROW_BYTES: u64 = 1 << 20;

/// Longest lap the log accepts (`Options::wal_restart_bytes` beyond it is taken as it):
/// the file is written with zeros for two laps at open.
pub const WAL_RESTART_BYTES_MAX: u64 = 1 << 30;

const MAGIC: &[u8; 8] = b"CAIRNWAL";
/// The header version written: 2 names where its lap starts.
const VERSION: u32 = 2;
/// Version 1 (sessions before laps alternated): every lap starts at `HEADER_BYTES`.
const VERSION_1: u32 = 1;
const HEADER_USED: usize = 64;
const HEADER_USED_1: usize = 56;
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
    /// Where the lap's first record goes.
    pub(crate) start: u64,
    /// The lap before: its epoch and where it ended.
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
    /// Where the lap's first record went.
    start: u64,
    /// Where the next record goes.
    end: u64,
    /// No record of this lap reaches past this: where the previous lap starts, for a
    /// lower lap after an upper one (`u64::MAX`: no bound).
    limit: u64,
    /// The lap before this one, as its header names it.
    previous: Applied,
    /// The file's length.
    len: u64,
    /// A lap is about this long (its record bytes plus `HEADER_BYTES`).
    restart_bytes: u64,
    /// The current lap's number.
    lap: u64,
}

impl Wal {
    /// Starts a new lap in the lower area: writes a header with a fresh epoch naming
    /// `previous` (what redb holds) and syncs it. The caller must have made redb hold
    /// `previous` first, so no earlier lap is needed again and this lap has no bound. The
    /// file is first grown (with zeros) to hold both areas.
    pub(crate) fn restart(
        backend: Box<dyn StorageBackend>,
        name: String,
        previous: Applied,
        restart_bytes: u64,
    ) -> Result<Wal, StoreError> {
        let len = backend.len().map_err(|e| io(&name, &e))?;
        let lap = match read_header(&*backend, &name)? {
            Slots::Header(h, _) => h.lap,
            Slots::Zeros | Slots::Damaged => 0,
        };
        let restart_bytes = restart_bytes.clamp(HEADER_BYTES + 1, WAL_RESTART_BYTES_MAX);
        let mut wal = Wal {
            backend,
            name,
            epoch: 0,
            start: HEADER_BYTES,
            end: HEADER_BYTES,
            limit: u64::MAX,
            previous,
            len,
            restart_bytes,
            lap,
        };
        wal.ensure(2 * restart_bytes + WAL_GROW_BYTES)?;
        wal.begin_lap(previous, HEADER_BYTES, u64::MAX)?;
        Ok(wal)
    }

    /// Whether this lap is long enough to end.
    pub(crate) fn wants_restart(&self) -> bool {
        self.end - self.start + HEADER_BYTES >= self.restart_bytes
    }

    /// Whether a record of `bytes` fits in this lap (a lower lap stops short of the upper
    /// lap before it; the caller starts the next lap, in the upper area, if not).
    pub(crate) fn has_room(&self, bytes: usize) -> bool {
        self.end.saturating_add(bytes as u64) <= self.limit
    }

    fn begin_lap(&mut self, previous: Applied, start: u64, limit: u64) -> Result<(), StoreError> {
        let header = Header {
            lap: self.lap.wrapping_add(1),
            epoch: fresh_epoch(),
            start,
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
        self.start = start;
        self.end = start;
        self.limit = limit;
        self.previous = previous;
        Ok(())
    }

    /// Ends this lap and starts the next in the other area. The caller must have made
    /// redb hold the lap before this one ([`Wal::previous`]), which the next lap
    /// overwrites. This lap's records are synced first: the next header names its end,
    /// and open replays it whole from there.
    pub(crate) fn next_lap(&mut self) -> Result<(), StoreError> {
        self.sync()?;
        let ending = Applied {
            epoch: self.epoch,
            end: self.end,
        };
        let (start, limit) = if self.start == HEADER_BYTES {
            let upper = self.end.max(self.restart_bytes);
            (upper.div_ceil(HEADER_BYTES) * HEADER_BYTES, u64::MAX)
        } else {
            (HEADER_BYTES, self.start)
        };
        self.begin_lap(ending, start, limit)
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The lap before this one: its epoch and where it ended.
    pub(crate) fn previous(&self) -> Applied {
        self.previous
    }

    /// Where the next record goes (the end of the last one).
    pub(crate) fn end(&self) -> u64 {
        self.end
    }

    /// `ops` as one record of this lap (the epoch is in it: encode again after a
    /// restart).
    pub(crate) fn record<'a>(
        &self,
        ops: impl Iterator<Item = &'a Op>,
    ) -> Result<Vec<u8>, StoreError> {
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
        Ok(rec)
    }

    /// Appends a record made by [`Wal::record`] for this lap (not synced). One that does
    /// not fit ([`Wal::has_room`]) is refused: it would overwrite the previous lap.
    pub(crate) fn write_record(&mut self, rec: &[u8]) -> Result<(), StoreError> {
        if !self.has_room(rec.len()) {
            return Err(StoreError::Io(format!(
                "{}: a record of {} bytes at {} would cross the previous lap at {}",
                self.name,
                rec.len(),
                self.end,
                self.limit
            )));
        }
        self.ensure(self.end + rec.len() as u64)?;
        self.backend
            .write(self.end, rec)
            .map_err(|e| io(&self.name, &e))?;
        self.end += rec.len() as u64;
        Ok(())
    }

    /// Appends one record holding `ops` (not synced).
    #[cfg(test)]
    pub(crate) fn append<'a>(
        &mut self,
        ops: impl Iterator<Item = &'a Op>,
    ) -> Result<(), StoreError> {
        let rec = self.record(ops)?;
        self.write_record(&rec)
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
    b.extend_from_slice(&h.start.to_le_bytes());
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

/// The header, if the first bytes are a whole, undamaged one (of version 2, or 1).
pub(crate) fn decode_header(b: &[u8]) -> Option<Header> {
    if b.get(..8)? != MAGIC {
        return None;
    }
    // Version 1 has no start field: the fields after the epoch sit 8 bytes earlier.
    let (used, start) = match u32_at(b, 8) {
        VERSION => (HEADER_USED, Some(u64_at(b, 32))),
        VERSION_1 => (HEADER_USED_1, None),
        _ => return None,
    };
    let b = b.get(..used)?;
    let sum_at = used - 8;
    if xxh3_64(&b[..sum_at]) != u64_at(b, sum_at) {
        return None;
    }
    let previous_at = sum_at - 16;
    Some(Header {
        lap: u64_at(b, 16),
        epoch: u64_at(b, 24),
        start: start.unwrap_or(HEADER_BYTES),
        previous: Applied {
            epoch: u64_at(b, previous_at),
            end: u64_at(b, previous_at + 8),
        },
    })
}

/// What the two header slots hold.
enum Slots {
    /// Nothing was ever written (a new, zero-filled or empty file).
    Zeros,
    /// Neither slot holds a whole header.
    Damaged,
    /// The header in force (the valid slot with the higher lap), and the other slot's,
    /// if that one is valid too.
    Header(Header, Option<Header>),
}

fn read_header(backend: &dyn StorageBackend, name: &str) -> Result<Slots, StoreError> {
    let len = backend.len().map_err(|e| io(name, &e))?;
    let mut valid: Vec<Header> = Vec::with_capacity(2);
    let mut zeros = true;
    for slot in [0, SLOT_2] {
        if slot + HEADER_USED as u64 > len {
            continue;
        }
        let b = backend.read(slot, HEADER_USED).map_err(|e| io(name, &e))?;
        zeros &= b.iter().all(|&x| x == 0);
        valid.extend(decode_header(&b));
    }
    valid.sort_unstable_by_key(|h| std::cmp::Reverse(h.lap));
    Ok(match (valid.first(), valid.get(1)) {
        (Some(&h), other) => Slots::Header(h, other.copied()),
        (None, _) if zeros => Slots::Zeros,
        (None, _) => Slots::Damaged,
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
    let (header, other) = match read_header(backend, name)? {
        Slots::Zeros => return Ok(Found::Empty),
        Slots::Damaged => return Ok(Found::Unrelated),
        Slots::Header(h, other) => (h, other),
    };
    let Some(applied) = applied else {
        return Ok(Found::Unrelated);
    };
    let mut batches = Vec::new();
    let start = if header.epoch == applied.epoch {
        applied.end.max(header.start)
    } else {
        // What redb lacks of the previous lap: from its recorded offset, or all of it
        // when redb holds exactly the lap before (which the previous lap's header names).
        let previous = header.previous;
        let from = if applied.epoch == previous.epoch && applied.end <= previous.end {
            Some(applied.end)
        } else {
            other
                .filter(|o| {
                    o.lap.wrapping_add(1) == header.lap
                        && o.epoch == previous.epoch
                        && o.previous == applied
                })
                .map(|o| o.start)
        };
        let Some(from) = from else {
            return Ok(Found::Unrelated);
        };
        // Synced whole before the current lap began: short of its end is damage.
        if !replay_to(backend, name, previous, from, len, &mut batches)? {
            return Ok(Found::Unrelated);
        }
        header.start
    };
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

/// Reads the records of lap `to.epoch` from `from` into `batches`; whether they end
/// exactly at `to.end`.
fn replay_to(
    backend: &dyn StorageBackend,
    name: &str,
    to: Applied,
    from: u64,
    len: u64,
    batches: &mut Vec<Vec<Op>>,
) -> Result<bool, StoreError> {
    let mut at = from;
    while at < to.end {
        match record_at(backend, name, to.epoch, at, len)? {
            Some((ops, next)) => {
                batches.push(ops);
                at = next;
            }
            None => return Ok(false),
        }
    }
    Ok(at == to.end)
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
    // A mark read from redb could be anything: no overflow on its way to a refusal.
    if at
        .checked_add(RECORD_HEAD as u64)
        .is_none_or(|head_end| head_end > len)
    {
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

    impl Mem {
        /// A copy of this file with `change` made to its bytes (a crash image, a damaged
        /// file).
        fn altered(&self, change: impl FnOnce(&mut Vec<u8>)) -> Mem {
            let mut bytes = self.0.lock().unwrap().clone();
            change(&mut bytes);
            Mem(Arc::new(Mutex::new(bytes)))
        }
    }

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
            let m = mem.altered(|b| b[cut as usize..ends[2] as usize].fill(0));
            assert_eq!(replayed(recover(&m, "t", applied).unwrap()).len(), 2);
        }
        // A flipped byte inside the middle record ends the replay there too.
        let m = mem.altered(|b| b[ends[0] as usize + RECORD_HEAD + 2] ^= 1);
        assert_eq!(replayed(recover(&m, "t", applied).unwrap()).len(), 1);
    }

    /// The current lap's mark: its epoch and end.
    fn mark(wal: &Wal) -> Applied {
        Applied {
            epoch: wal.epoch(),
            end: wal.end(),
        }
    }

    #[test]
    fn records_of_an_earlier_lap_are_never_replayed() {
        let (mem, mut wal, _) = log_with(5, BEFORE);
        wal.next_lap().unwrap();
        wal.append(batch(7).iter()).unwrap();
        let second = mark(&wal);
        wal.next_lap().unwrap();
        wal.append(batch(9).iter()).unwrap();
        // Lap 3 overwrote the start of lap 1, whose later records are still there.
        assert_eq!(wal.end(), ends_after_one_batch());
        let found = recover(&mem, "t", Some(second)).unwrap();
        assert_eq!(replayed(found), vec![batch(9)]);
        // A mark inside a record of the previous lap does not read to its end.
        let torn = Applied {
            end: second.end - 1,
            ..second
        };
        assert_eq!(recover(&mem, "t", Some(torn)).unwrap(), Found::Unrelated);
    }

    /// Where a lower lap's first record (`batch(i)`) ends.
    fn ends_after_one_batch() -> u64 {
        let (_, _, ends) = log_with(1, BEFORE);
        ends[0]
    }

    #[test]
    fn laps_alternate_between_the_two_areas_and_a_lower_lap_stops_short_of_the_upper() {
        let (_, mut wal, _) = log_with(0, BEFORE);
        while !wal.wants_restart() {
            wal.append(batch(1).iter()).unwrap();
        }
        let lower_end = wal.end();
        wal.next_lap().unwrap();
        let upper = wal.end();
        assert!(upper >= lower_end && upper >= 8192 && upper % HEADER_BYTES == 0);
        while !wal.wants_restart() {
            wal.append(batch(1).iter()).unwrap();
        }
        assert!(wal.end() - upper + HEADER_BYTES >= 8192, "a whole lap");
        wal.next_lap().unwrap();
        assert_eq!(wal.end(), HEADER_BYTES);
        let small = wal.record(batch(1).iter()).unwrap();
        assert!(wal.has_room(small.len()));
        assert!(!wal.has_room((upper - HEADER_BYTES) as usize + 1));
        assert!(wal.has_room((upper - HEADER_BYTES) as usize));
    }

    /// A log whose lap 1 holds `batch(0..3)` (ending at `ends`) and whose lap 2 has
    /// begun; and the mark of a redb that holds lap 1's first record only.
    fn second_lap_begun() -> (Mem, Wal, Vec<u64>, Applied) {
        let (mem, mut wal, ends) = log_with(3, BEFORE);
        let part = Applied {
            epoch: wal.epoch(),
            end: ends[0],
        };
        wal.next_lap().unwrap();
        (mem, wal, ends, part)
    }

    #[test]
    fn the_rest_of_the_previous_lap_is_replayed_before_the_current_one() {
        let (mem, mut wal, ends, part) = second_lap_begun();
        wal.append(batch(8).iter()).unwrap();
        wal.append(batch(9).iter()).unwrap();
        let end = wal.end();
        assert_eq!(
            recover(&mem, "t", Some(part)).unwrap(),
            Found::Replay {
                epoch: wal.epoch(),
                end,
                batches: vec![batch(1), batch(2), batch(8), batch(9)],
            }
        );
        // A mark past the previous lap's end is not this log's.
        let past = Applied {
            end: ends[2] + 1,
            ..part
        };
        assert_eq!(recover(&mem, "t", Some(past)).unwrap(), Found::Unrelated);
    }

    #[test]
    fn the_rest_of_an_upper_lap_is_replayed_before_the_lower_lap_after_it() {
        let (mem, mut wal, _) = log_with(1, BEFORE);
        wal.next_lap().unwrap();
        wal.append(batch(4).iter()).unwrap();
        let part = mark(&wal);
        wal.append(batch(5).iter()).unwrap();
        wal.next_lap().unwrap();
        wal.append(batch(9).iter()).unwrap();
        let found = recover(&mem, "t", Some(part)).unwrap();
        assert_eq!(replayed(found), vec![batch(5), batch(9)]);
    }

    #[test]
    fn all_of_the_previous_lap_is_replayed_when_redb_holds_the_lap_before_it() {
        let (mem, mut wal, _) = log_with(2, BEFORE);
        wal.next_lap().unwrap();
        wal.append(batch(5).iter()).unwrap();
        wal.append(batch(6).iter()).unwrap();
        wal.next_lap().unwrap();
        wal.append(batch(9).iter()).unwrap();
        // redb holds exactly lap 1 (`Durability::None`: its commits are not synced,
        // only the checkpoint before lap 2 was): lap 2 from its start, then lap 3.
        let found = recover(&mem, "t", Some(wal_previous_of_lap_2(&mem))).unwrap();
        assert_eq!(replayed(found), vec![batch(5), batch(6), batch(9)]);
        // With lap 2's header damaged that is not known: nothing is replayed.
        let m = mem.altered(|b| b[17] ^= 0x40); // Lap 2 is in slot 0.
        let found = recover(&m, "t", Some(wal_previous_of_lap_2(&mem))).unwrap();
        assert_eq!(found, Found::Unrelated);
    }

    /// What lap 2's header (slot 0) names as its previous lap.
    fn wal_previous_of_lap_2(mem: &Mem) -> Applied {
        let b = mem.0.lock().unwrap()[..HEADER_USED].to_vec();
        let h = decode_header(&b).unwrap();
        assert_eq!(h.lap, 2);
        h.previous
    }

    #[test]
    fn a_previous_lap_damaged_before_its_end_is_not_replayed() {
        let (mem, mut wal, ends, part) = second_lap_begun();
        wal.append(batch(8).iter()).unwrap();
        let m = mem.altered(|b| b[ends[1] as usize + RECORD_HEAD + 2] ^= 1);
        assert_eq!(recover(&m, "t", Some(part)).unwrap(), Found::Unrelated);
    }

    #[test]
    fn a_version_1_log_is_replayed_from_the_start_of_the_file() {
        let (mem, wal, _) = log_with(2, BEFORE);
        // Rewrite lap 1's header (slot 2) as version 1 wrote it: no start field.
        let mut v1 = Vec::new();
        v1.extend_from_slice(MAGIC);
        v1.extend_from_slice(&VERSION_1.to_le_bytes());
        v1.extend_from_slice(&0u32.to_le_bytes());
        v1.extend_from_slice(&1u64.to_le_bytes());
        v1.extend_from_slice(&wal.epoch().to_le_bytes());
        v1.extend_from_slice(&BEFORE.epoch.to_le_bytes());
        v1.extend_from_slice(&BEFORE.end.to_le_bytes());
        let sum = xxh3_64(&v1);
        v1.extend_from_slice(&sum.to_le_bytes());
        v1.resize(HEADER_USED, 0);
        mem.write(SLOT_2, &v1).unwrap();
        let h = decode_header(&v1).unwrap();
        assert_eq!((h.lap, h.start, h.previous), (1, HEADER_BYTES, BEFORE));
        let found = recover(&mem, "t", Some(BEFORE)).unwrap();
        assert_eq!(replayed(found), vec![batch(0), batch(1)]);
    }

    #[test]
    fn a_torn_new_header_leaves_the_old_one_in_force() {
        let (mem, mut wal, ends) = log_with(2, BEFORE);
        let first = Applied {
            epoch: wal.epoch(),
            end: wal.end(),
        };
        let before_restart = mem.0.lock().unwrap().clone();
        wal.next_lap().unwrap();
        // Lap 2 went to slot 0; tear it as a crash during the restart could.
        let new_header = mem.0.lock().unwrap()[..20].to_vec();
        let m = mem.altered(|b| {
            b[..HEADER_USED].copy_from_slice(&before_restart[..HEADER_USED]);
            b[..20].copy_from_slice(&new_header);
        });
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
        // The first lap's header is in the second slot.
        let m = mem.altered(|b| b[SLOT_2 as usize + 17] ^= 0x40);
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
        wal.next_lap().unwrap();
        wal.append(batch(1).iter()).unwrap();
        assert_eq!(
            mem.len().unwrap(),
            len,
            "the upper lap is in the file already"
        );
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
