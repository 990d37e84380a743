//! The on-disk format: tables, key encodings and record encodings, byte by byte.
//!
//! Every table is `&[u8] -> &[u8]` so that the bytes are ours, not a serde or redb type
//! layout: the format changes only when [`FORMAT_VERSION`] says so. Integers are big-endian
//! in keys (so byte order is numeric order) and little-endian in records.
//!
//! | table        | key                                   | value                                |
//! |--------------|---------------------------------------|--------------------------------------|
//! | `meta`       | a name (`format`, `node`, `session`, `wal`) | see `MetaKey`                |
//! | `objects`    | `object_key`                          | `[1] [state hash u64 LE] [encode_value]`, or `[2] [state hash u64 LE]` (a stub) |
//! | `large_objects` | `object_key` of a stub             | `[1] [state hash u64 LE] [encode_value]` |
//! | `objects`    | `segment_key`: `[partition u16 BE] [segment u16 BE]` | `[segment hash u64 LE]` (absent = 0) |
//! | `hints`      | `[owner u64 BE] [plain key]`           | `[1] [encode_value]`                 |
//! | `hint_totals`| `[owner u64 BE]`                      | `[count u64 LE] [bytes u64 LE]`      |
//!
//! `plain key` is `[partition u16 BE] [escaped bucket] [0x00 0x00] [key]`, where the
//! bucket's `0x00` bytes are written `0x00 0x01`. The terminator sorts before every escaped
//! byte, so byte order on plain keys is exactly `ObjectKey`'s order (partition, bucket,
//! key). `object_key` is `[partition u16 BE] [segment u16 BE] [escaped bucket] [0x00 0x00]
//! [key]`: the plain key with the object's anti-entropy segment
//! (`cairn_core::aae::segment_of`) after the partition, so one segment's objects are one
//! range of the `objects` table and no separate index is kept. Within a segment, byte
//! order is `ObjectKey` order.
//!
//! A segment's hash lives in the `objects` table too, at `segment_key` (the 4-byte
//! `[partition] [segment]` prefix, which sorts just before that segment's objects; object
//! keys are at least 6 bytes long, so the length tells the two rows apart). An update then
//! dirties the one leaf page holding both the object and its segment's hash, not two.
//!
//! An object record over [`LARGE_RECORD_BYTES`] is written to `large_objects` and a stub
//! with its state hash to `objects`, so that rows of small values (counters, registers)
//! share pages with each other and not with large sets and maps. Anti-entropy reads hashes
//! from the stubs; a read follows a stub to its record. An inline record over the bound is
//! valid too (a file whose upgrade to format 5 was cut short); its next write moves it.
//!
//! Format 2 kept the segment hashes in a separate `aae_segments` table with the same keys
//! and values. Format 1 keyed `objects` by the plain key and kept an `aae_keys` table
//! (`[partition] [segment] [plain key]` → `[state hash u64 LE]`); format 0 had neither
//! `aae_keys`, `aae_segments` nor `hint_totals`. Open upgrades all three (`derived::upgrade`).

use cairn_core::aae::{segment_of, state_hash_of_encoding, SegmentId};
use cairn_core::{NodeMeta, ObjectKey, StoreError};
use cairn_crdt::Value;
use cairn_ring::{NodeId, PartitionId};
use redb::TableDefinition;
use smallvec::SmallVec;

/// The layout this code writes. Format 0 is the layout before the derived tables
/// (`aae_keys`, `aae_segments`, `hint_totals`) existed; format 1 keyed objects without
/// their segment and kept the `aae_keys` index; format 2 kept the segment hashes in their
/// own `aae_segments` table; format 3 had no write-ahead log (format 4 adds the `wal` meta
/// record and the log file beside the store, so a build that does not replay the log
/// refuses the file); format 4 kept every object record inline (format 5 keeps records
/// over [`LARGE_RECORD_BYTES`] in `large_objects`); open upgrades all five (see
/// `RedbStore::open`).
pub const FORMAT_VERSION: u32 = 5;

/// Record version byte of object and hint records.
const RECORD_V1: u8 = 1;

pub(crate) type Bytes = TableDefinition<'static, &'static [u8], &'static [u8]>;

pub(crate) const META: TableDefinition<'static, &'static str, &'static [u8]> =
    TableDefinition::new("meta");
pub(crate) const OBJECTS: Bytes = TableDefinition::new("objects");
/// Object records over [`LARGE_RECORD_BYTES`], at their `objects` key; `objects` holds a
/// [`large_stub`] in their place (format 5).
pub(crate) const LARGE_OBJECTS: Bytes = TableDefinition::new("large_objects");
/// Format 1's segment index; dropped by the upgrade to format 2.
pub(crate) const AAE_KEYS_V1: Bytes = TableDefinition::new("aae_keys");
/// Where the upgrade to format 2 builds the re-keyed objects before renaming them.
pub(crate) const OBJECTS_UPGRADE: Bytes = TableDefinition::new("objects_upgrade");
/// Formats 1 and 2's segment hashes; dropped by the upgrade to format 3 (they moved into
/// `objects`).
pub(crate) const AAE_SEGMENTS_V2: Bytes = TableDefinition::new("aae_segments");
pub(crate) const HINTS: Bytes = TableDefinition::new("hints");
pub(crate) const HINT_TOTALS: Bytes = TableDefinition::new("hint_totals");

/// Names in the `meta` table.
pub(crate) struct MetaKey;

impl MetaKey {
    /// `[format u32 LE]`.
    pub(crate) const FORMAT: &'static str = "format";
    /// `[1] [generation u64 LE]`: the node's [`NodeMeta`].
    pub(crate) const NODE: &'static str = "node";
    /// `[1] [clean u8] [durability u8] [has identity u8] [device u64 LE] [inode u64 LE]`:
    /// the last session, see [`Session`].
    pub(crate) const SESSION: &'static str = "session";
    /// `[1] [epoch u64 LE] [end u64 LE]`: how much of the write-ahead log this file holds
    /// (format 4; see `wal`). Absent until the first open in format 4.
    pub(crate) const WAL: &'static str = "wal";
    /// Reserved for the layout the node last saw (issue 4); no bytes are written yet.
    #[allow(dead_code)] // Named now so no other record takes the name.
    pub(crate) const LAYOUT: &'static str = "layout";
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

// ---- keys ----

/// Bytes of an object's on-disk key kept inline, without an allocation. At 32, a
/// 20-byte bucket with a 9-byte key (35 bytes on disk, the comparison script's) spilled,
/// and one node's batched increments were ~10% slower than with 64 (alternating runs).
pub(crate) const DISK_KEY_INLINE: usize = 64;

/// An object's on-disk key ([`object_key`]), inline up to [`DISK_KEY_INLINE`] bytes. A
/// write looks its key up in the decoded-value cache and the overlay, and files it in
/// both: inline, a key's bytes are compared on the cache line the lookup already
/// fetched, and the four copies a write made cost four allocations (two of them freed
/// on the applier's thread).
pub(crate) type DiskKey = SmallVec<[u8; DISK_KEY_INLINE]>;

/// The hasher of maps keyed by clients' bytes ([`DiskKey`]s): keyed with a random seed
/// per map, so a client cannot choose keys that collide, and several times faster than
/// SipHash on short keys.
pub(crate) type KeyedHash = foldhash::fast::RandomState;

/// Encodes an object key: `[partition] [segment] [escaped bucket] [00 00] [key]`.
pub(crate) fn object_key(key: &ObjectKey) -> DiskKey {
    let mut out = DiskKey::with_capacity(6 + key.bucket.len() + key.key.len() + 2);
    out.extend_from_slice(&segment_key(key.partition, segment_of(key)));
    push_escaped(&mut out, key);
    out
}

/// The partition of an object's on-disk key (its first two bytes; 0 for a key too short
/// to be one, which no staged or stored object has).
pub(crate) fn key_partition(k: &[u8]) -> u16 {
    match k {
        [a, b, ..] => u16::from_be_bytes([*a, *b]),
        _ => 0,
    }
}

/// The segment of an object's on-disk key (its third and fourth bytes), if it has them.
pub(crate) fn key_segment(k: &[u8]) -> Option<SegmentId> {
    match k {
        [_, _, c, d, ..] => Some(SegmentId(u16::from_be_bytes([*c, *d]))),
        _ => None,
    }
}

/// The plain key `[partition] [escaped bucket] [00 00] [key]` (hints; format 1 objects).
#[cfg(test)]
pub(crate) fn plain_key(key: &ObjectKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + key.bucket.len() + key.key.len());
    push_plain_key(&mut out, key);
    out
}

fn push_plain_key(out: &mut impl Extend<u8>, key: &ObjectKey) {
    out.extend(key.partition.0.to_be_bytes());
    push_escaped(out, key);
}

/// `[escaped bucket] [00 00] [key]`.
fn push_escaped(out: &mut impl Extend<u8>, key: &ObjectKey) {
    for &b in key.bucket.iter() {
        out.extend(escaped(&b).iter().copied());
    }
    out.extend([0, 0]);
    out.extend(key.key.iter().copied());
}

/// A bucket's byte as its escaped encoding has it: a zero is escaped as `00 01`, so
/// `00 00` ends the bucket.
fn escaped(b: &u8) -> &[u8] {
    if *b == 0 {
        &[0, 1]
    } else {
        std::slice::from_ref(b)
    }
}

/// Whether `disk` is [`object_key`]`(key)`, checked without building it (a key hash,
/// an escape and a copy): the partition and the escaped key must match, and the segment
/// follows from them.
pub(crate) fn is_object_key_of(disk: &[u8], key: &ObjectKey) -> bool {
    let Some((head, mut rest)) = disk.split_first_chunk::<4>() else {
        return false;
    };
    if head[..2] != key.partition.0.to_be_bytes() {
        return false;
    }
    for b in key.bucket.iter() {
        let Some(after) = rest.strip_prefix(escaped(b)) else {
            return false;
        };
        rest = after;
    }
    rest.strip_prefix(&[0, 0]) == Some(&key.key[..])
}

/// Decodes [`object_key`], checking that the segment is the key's.
pub(crate) fn decode_object_key(bytes: &[u8]) -> Result<ObjectKey, StoreError> {
    let (seg, rest) = bytes
        .split_first_chunk::<4>()
        .ok_or_else(|| corrupt("object key shorter than its partition and segment"))?;
    let (p, s) = decode_segment_key(seg)?;
    let key = decode_escaped(p, rest)?;
    if segment_of(&key) != s {
        return Err(corrupt("object key in the wrong segment"));
    }
    Ok(key)
}

/// Decodes [`plain_key`].
pub(crate) fn decode_plain_key(bytes: &[u8]) -> Result<ObjectKey, StoreError> {
    let (p, rest) = bytes
        .split_first_chunk::<2>()
        .ok_or_else(|| corrupt("object key shorter than its partition"))?;
    decode_escaped(PartitionId(u16::from_be_bytes(*p)), rest)
}

fn decode_escaped(partition: PartitionId, rest: &[u8]) -> Result<ObjectKey, StoreError> {
    let mut bucket = Vec::new();
    let mut i = 0;
    loop {
        match (rest.get(i), rest.get(i + 1)) {
            (Some(0), Some(0)) => break,
            (Some(0), Some(1)) => {
                bucket.push(0);
                i += 2;
            }
            (Some(0), _) | (None, _) => return Err(corrupt("object key with a bad bucket")),
            (Some(&b), _) => {
                bucket.push(b);
                i += 1;
            }
        }
    }
    Ok(ObjectKey {
        partition,
        bucket: bucket.into_boxed_slice(),
        key: rest[i + 2..].into(),
    })
}

/// `[partition] [segment]`: the key of a segment hash and the prefix of its objects' keys.
pub(crate) fn segment_key(p: PartitionId, s: SegmentId) -> [u8; 4] {
    let [a, b] = p.0.to_be_bytes();
    let [c, d] = s.0.to_be_bytes();
    [a, b, c, d]
}

/// Whether a key of the `objects` table is a [`segment_key`] (a segment hash) rather than
/// an [`object_key`].
pub(crate) fn is_segment_key(bytes: &[u8]) -> bool {
    bytes.len() == 4
}

/// Decodes [`segment_key`].
pub(crate) fn decode_segment_key(bytes: &[u8]) -> Result<(PartitionId, SegmentId), StoreError> {
    match bytes {
        [a, b, c, d] => Ok((
            PartitionId(u16::from_be_bytes([*a, *b])),
            SegmentId(u16::from_be_bytes([*c, *d])),
        )),
        _ => Err(corrupt("segment key is not 4 bytes")),
    }
}

/// `[owner] [plain key]`.
pub(crate) fn hint_key(owner: NodeId, key: &ObjectKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + key.bucket.len() + key.key.len());
    out.extend_from_slice(&owner.0.to_be_bytes());
    push_plain_key(&mut out, key);
    out
}

/// Decodes [`hint_key`].
pub(crate) fn decode_hint_key(bytes: &[u8]) -> Result<(NodeId, ObjectKey), StoreError> {
    let (owner, rest) = bytes
        .split_first_chunk::<8>()
        .ok_or_else(|| corrupt("hint key shorter than its owner"))?;
    Ok((NodeId(u64::from_be_bytes(*owner)), decode_plain_key(rest)?))
}

/// `[owner u64 BE]`.
pub(crate) fn owner_key(owner: NodeId) -> [u8; 8] {
    owner.0.to_be_bytes()
}

/// Decodes [`owner_key`].
pub(crate) fn decode_owner_key(bytes: &[u8]) -> Result<NodeId, StoreError> {
    let b: [u8; 8] = bytes
        .try_into()
        .map_err(|_| corrupt("hint owner key is not 8 bytes"))?;
    Ok(NodeId(u64::from_be_bytes(b)))
}

// ---- records ----

/// Bytes before the value in an object record: the version and the state hash.
const OBJECT_HEADER_BYTES: usize = 9;

/// First byte of an `objects` row whose record is in `large_objects` (format 5).
const RECORD_LARGE: u8 = 2;

/// Object records longer than this are kept in `large_objects`, with a stub in `objects`.
///
/// Why: `objects` is ordered by partition and segment, so every page of it mixes
/// buckets. A page holding one set of a few kilobytes is copied whole whenever a counter
/// next to it changes; with ~85 MB of sets beside 10,000 counters, batched increments
/// ran ~20% slower and the applier's CPU went from ~31% to ~45% of a core. Kept apart,
/// small rows pack densely and a large record's pages change only when it does. 256
/// bytes keeps counters (a few actors), registers, flags and sets of a few elements
/// inline, where a read is one lookup, and at least ~14 rows on a 4 KiB page.
pub const LARGE_RECORD_BYTES: usize = 256;

/// `[1] [hash] [value]`, and the hash: the state hash of the value's encoding, which is
/// written once, behind room left for the header (one encoding serves both).
pub(crate) fn object_record(value: &Value) -> (u64, Vec<u8>) {
    // Sized once for the header and a small value, which the encoding then need not grow.
    let mut header = Vec::with_capacity(OBJECT_HEADER_BYTES + cairn_proto::VALUE_RESERVE_BYTES);
    header.resize(OBJECT_HEADER_BYTES, 0);
    let mut out = cairn_proto::encode_value_after(header, value);
    let (header, encoded) = out.split_at_mut(OBJECT_HEADER_BYTES);
    let hash = state_hash_of_encoding(encoded);
    header[0] = RECORD_V1;
    header[1..].copy_from_slice(&hash.to_le_bytes());
    (hash, out)
}

/// Whether an `objects` row is a [`large_stub`].
pub(crate) fn is_large_stub(row: &[u8]) -> bool {
    row.first() == Some(&RECORD_LARGE)
}

/// `[2] [hash]`: what `objects` holds for an object `record` kept in `large_objects`.
/// `None` if `record` is not over [`LARGE_RECORD_BYTES`] (it is kept inline).
pub(crate) fn large_stub(record: &[u8]) -> Option<[u8; OBJECT_HEADER_BYTES]> {
    let hash = record.get(1..OBJECT_HEADER_BYTES)?;
    if record.len() <= LARGE_RECORD_BYTES {
        return None;
    }
    let mut out = [RECORD_LARGE; OBJECT_HEADER_BYTES];
    out[1..].copy_from_slice(hash);
    Some(out)
}

/// The state hash of an `objects` row (a record or a [`large_stub`]), without decoding
/// the value.
pub(crate) fn object_record_hash(bytes: &[u8]) -> Result<u64, StoreError> {
    match bytes.split_first() {
        Some((&(RECORD_V1 | RECORD_LARGE), rest)) => Ok(u64_le(rest, "object record")?),
        Some((v, _)) => Err(StoreError::Corrupt(format!(
            "object record version {v}, expected {RECORD_V1} (or {RECORD_LARGE}, a stub)"
        ))),
        None => Err(corrupt("empty object record")),
    }
}

/// Decodes an object record: its state hash and value.
pub(crate) fn decode_object_record(bytes: &[u8]) -> Result<(u64, Value), StoreError> {
    if is_large_stub(bytes) {
        return Err(corrupt("a large object's stub where its record belongs"));
    }
    let hash = object_record_hash(bytes)?;
    let value = decode(&bytes[OBJECT_HEADER_BYTES..], "object")?;
    Ok((hash, value))
}

/// Decodes the `objects` row `row` at key `k`, following a [`large_stub`] into `large`
/// (`None` where the file has no `large_objects` table: formats before 5).
pub(crate) fn decode_object_row(
    large: Option<&impl redb::ReadableTable<&'static [u8], &'static [u8]>>,
    k: &[u8],
    row: &[u8],
) -> Result<(u64, Value), StoreError> {
    if !is_large_stub(row) {
        return decode_object_record(row);
    }
    let stub = object_record_hash(row)?;
    let got = match large {
        Some(t) => t.get(k).map_err(crate::error::storage_error)?,
        None => None,
    };
    let record = got.ok_or_else(|| corrupt("a large object's stub without its record"))?;
    let (hash, value) = decode_object_record(record.value())?;
    if hash != stub {
        return Err(corrupt(
            "a large object's record and stub disagree on its hash",
        ));
    }
    Ok((hash, value))
}

/// `[1] [value]`, and the value's encoded size (the record less its version byte).
pub(crate) fn hint_record(value: &Value) -> (u64, Vec<u8>) {
    let out = cairn_proto::encode_value_after(vec![RECORD_V1], value);
    (out.len().saturating_sub(1) as u64, out)
}

/// The encoded value inside a hint record.
pub(crate) fn hint_record_value(bytes: &[u8]) -> Result<&[u8], StoreError> {
    match bytes.split_first() {
        Some((&RECORD_V1, rest)) => Ok(rest),
        Some((v, _)) => Err(StoreError::Corrupt(format!(
            "hint record version {v}, expected {RECORD_V1}"
        ))),
        None => Err(corrupt("empty hint record")),
    }
}

/// Decodes a hint record.
pub(crate) fn decode_hint_record(bytes: &[u8]) -> Result<Value, StoreError> {
    decode(hint_record_value(bytes)?, "hint")
}

fn decode(bytes: &[u8], what: &str) -> Result<Value, StoreError> {
    cairn_proto::decode_value(bytes)
        .map_err(|e| StoreError::Corrupt(format!("{what} value does not decode: {e}")))
}

pub(crate) fn u64_le(bytes: &[u8], what: &str) -> Result<u64, StoreError> {
    let b = bytes
        .first_chunk::<8>()
        .ok_or_else(|| StoreError::Corrupt(format!("{what} shorter than 8 bytes")))?;
    Ok(u64::from_le_bytes(*b))
}

/// `[count] [bytes]`.
pub(crate) fn totals_record(count: u64, bytes: u64) -> [u8; 16] {
    let mut out = [0; 16];
    out[..8].copy_from_slice(&count.to_le_bytes());
    out[8..].copy_from_slice(&bytes.to_le_bytes());
    out
}

/// Decodes [`totals_record`].
pub(crate) fn decode_totals_record(bytes: &[u8]) -> Result<(u64, u64), StoreError> {
    if bytes.len() != 16 {
        return Err(corrupt("hint totals record is not 16 bytes"));
    }
    Ok((
        u64_le(bytes, "hint count")?,
        u64_le(&bytes[8..], "hint bytes")?,
    ))
}

/// Node metadata, record version 3: `[3] [generation u64 LE] [epochs u32 LE] then per
/// epoch [partition u16 LE] [epoch u64 LE] (partitions ascending) [dropped u32 LE] then per
/// dropped partition [partition u16 LE] (ascending) [unsynced u8: 0 or 1]`. Version 2 (the
/// same without the last byte, before replica sync) is still read as synced, and version 1
/// (`[1] [generation]`, before per-partition epochs) as a generation with no epochs.
const NODE_RECORD_V3: u8 = 3;
const NODE_RECORD_V2: u8 = 2;

/// Encodes [`NodeMeta`].
pub(crate) fn node_record(meta: &NodeMeta) -> Vec<u8> {
    let mut out = Vec::with_capacity(18 + meta.epochs.len() * 10 + meta.dropped.len() * 2);
    out.push(NODE_RECORD_V3);
    out.extend_from_slice(&meta.generation.to_le_bytes());
    let count = |n: usize| u32::try_from(n).expect("at most 2^16 partitions exist");
    out.extend_from_slice(&count(meta.epochs.len()).to_le_bytes());
    for (p, e) in &meta.epochs {
        out.extend_from_slice(&p.0.to_le_bytes());
        out.extend_from_slice(&e.to_le_bytes());
    }
    out.extend_from_slice(&count(meta.dropped.len()).to_le_bytes());
    for p in &meta.dropped {
        out.extend_from_slice(&p.0.to_le_bytes());
    }
    out.push(u8::from(meta.unsynced));
    out
}

/// Reads `N` bytes off the front of `bytes`.
fn take<'a, const N: usize>(bytes: &mut &'a [u8]) -> Result<&'a [u8; N], StoreError> {
    let (head, rest) = bytes
        .split_first_chunk::<N>()
        .ok_or_else(|| corrupt("node metadata record is truncated"))?;
    *bytes = rest;
    Ok(head)
}

/// Decodes [`node_record`] (and version 1).
pub(crate) fn decode_node_record(bytes: &[u8]) -> Result<NodeMeta, StoreError> {
    let mut meta = NodeMeta::default();
    match bytes.split_first() {
        Some((&RECORD_V1, rest)) if rest.len() == 8 => {
            meta.generation = u64_le(rest, "generation")?;
        }
        Some((&version @ (NODE_RECORD_V2 | NODE_RECORD_V3), mut rest)) => {
            meta.generation = u64::from_le_bytes(*take::<8>(&mut rest)?);
            for _ in 0..u32::from_le_bytes(*take::<4>(&mut rest)?) {
                let p = PartitionId(u16::from_le_bytes(*take::<2>(&mut rest)?));
                let e = u64::from_le_bytes(*take::<8>(&mut rest)?);
                if meta.epochs.insert(p, e).is_some() {
                    return Err(corrupt("node metadata names a partition's epoch twice"));
                }
            }
            for _ in 0..u32::from_le_bytes(*take::<4>(&mut rest)?) {
                let p = PartitionId(u16::from_le_bytes(*take::<2>(&mut rest)?));
                if !meta.dropped.insert(p) {
                    return Err(corrupt("node metadata names a dropped partition twice"));
                }
            }
            if version == NODE_RECORD_V3 {
                meta.unsynced = match take::<1>(&mut rest)? {
                    [0] => false,
                    [1] => true,
                    _ => return Err(corrupt("node metadata's sync flag is not 0 or 1")),
                };
            }
            if !rest.is_empty() {
                return Err(corrupt("node metadata record has trailing bytes"));
            }
        }
        _ => return Err(corrupt("node metadata record is malformed")),
    }
    Ok(meta)
}

/// What the previous process recorded about its session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Session {
    /// Written last by `close`: everything was flushed and synced.
    pub(crate) clean: bool,
    /// Whether the session synced every commit it reported.
    pub(crate) synced: bool,
    /// `(device, inode)` of the file, when the platform has one.
    pub(crate) identity: Option<(u64, u64)>,
}

/// Encodes a [`Session`].
pub(crate) fn session_record(s: &Session) -> [u8; 20] {
    let mut out = [0; 20];
    out[0] = RECORD_V1;
    out[1] = u8::from(s.clean);
    out[2] = u8::from(s.synced);
    if let Some((dev, ino)) = s.identity {
        out[3] = 1;
        out[4..12].copy_from_slice(&dev.to_le_bytes());
        out[12..20].copy_from_slice(&ino.to_le_bytes());
    }
    out
}

/// Decodes a [`Session`].
pub(crate) fn decode_session_record(bytes: &[u8]) -> Result<Session, StoreError> {
    let flag = |b: u8| match b {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(corrupt("session record has a bad flag")),
    };
    match bytes {
        [RECORD_V1, clean, synced, has_id, rest @ ..] if rest.len() == 16 => Ok(Session {
            clean: flag(*clean)?,
            synced: flag(*synced)?,
            identity: flag(*has_id)?
                .then(|| {
                    Ok::<_, StoreError>((u64_le(rest, "device")?, u64_le(&rest[8..], "inode")?))
                })
                .transpose()?,
        }),
        _ => Err(corrupt("session record is malformed")),
    }
}

/// Encodes how much of the log redb holds.
pub(crate) fn wal_record(a: crate::wal::Applied) -> [u8; 17] {
    let mut out = [0; 17];
    out[0] = RECORD_V1;
    out[1..9].copy_from_slice(&a.epoch.to_le_bytes());
    out[9..17].copy_from_slice(&a.end.to_le_bytes());
    out
}

/// Decodes [`wal_record`].
pub(crate) fn decode_wal_record(bytes: &[u8]) -> Result<crate::wal::Applied, StoreError> {
    match bytes {
        [RECORD_V1, rest @ ..] if rest.len() == 16 => Ok(crate::wal::Applied {
            epoch: u64_le(rest, "log epoch")?,
            end: u64_le(&rest[8..], "log end")?,
        }),
        _ => Err(corrupt("log record in meta is malformed")),
    }
}

/// Decodes the format version.
pub(crate) fn decode_format(bytes: &[u8]) -> Result<u32, StoreError> {
    let b: [u8; 4] = bytes
        .try_into()
        .map_err(|_| corrupt("format version is not 4 bytes"))?;
    Ok(u32::from_le_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(p: u16, b: &[u8], k: &[u8]) -> ObjectKey {
        ObjectKey {
            partition: PartitionId(p),
            bucket: b.into(),
            key: k.into(),
        }
    }

    #[test]
    fn object_key_bytes_sort_like_object_keys() {
        let parts: &[&[u8]] = &[
            b"", b"\0", b"\0\0", b"\0\x01", b"\x01", b"a", b"a\0", b"a\0\xff", b"ab", b"\xff",
        ];
        let mut keys = Vec::new();
        for p in [0, 1, 0x100] {
            for b in parts {
                for k in parts {
                    keys.push(key(p, b, k));
                }
            }
        }
        for x in &keys {
            assert_eq!(&decode_object_key(&object_key(x)).unwrap(), x);
            assert_eq!(&decode_plain_key(&plain_key(x)).unwrap(), x);
            for y in &keys {
                assert_eq!(plain_key(x).cmp(&plain_key(y)), x.cmp(y), "{x:?} vs {y:?}");
                assert_eq!(
                    is_object_key_of(&object_key(x), y),
                    x == y,
                    "{x:?} vs {y:?}"
                );
                let by_segment = (x.partition, segment_of(x)).cmp(&(y.partition, segment_of(y)));
                assert_eq!(
                    object_key(x).cmp(&object_key(y)),
                    by_segment.then(x.cmp(y)),
                    "{x:?} vs {y:?}"
                );
            }
        }
    }

    #[test]
    fn object_keys_in_the_wrong_segment_are_refused() {
        let k = key(3, b"b", b"k");
        let mut bytes = object_key(&k);
        bytes[3] ^= 1;
        assert!(decode_object_key(&bytes).is_err());
    }

    #[test]
    fn records_round_trip_and_refuse_garbage() {
        let s = Session {
            clean: true,
            synced: false,
            identity: Some((3, 4)),
        };
        assert_eq!(decode_session_record(&session_record(&s)).unwrap(), s);
        assert!(decode_session_record(&[1, 2, 0, 0]).is_err());
        assert!(object_record_hash(&[3; 9]).is_err());
        // A stub carries the record's hash, and is no record itself.
        let (hash, large) = object_record(&Value::Set(Default::default()));
        assert_eq!(large_stub(&large), None, "small records stay inline");
        let large = [&large[..], &[0; LARGE_RECORD_BYTES][..]].concat();
        let stub = large_stub(&large).unwrap();
        assert!(is_large_stub(&stub) && !is_large_stub(&large));
        assert_eq!(object_record_hash(&stub).unwrap(), hash);
        assert!(decode_object_record(&stub).is_err());
        let none: Option<&redb::ReadOnlyTable<&'static [u8], &'static [u8]>> = None;
        assert!(matches!(
            decode_object_row(none, b"k", &stub),
            Err(StoreError::Corrupt(_))
        ));
        let (_, mut record) = object_record(&Value::Counter(Default::default()));
        record.truncate(OBJECT_HEADER_BYTES);
        record.extend_from_slice(b"junk");
        assert!(decode_object_record(&record).is_err());
        assert!(decode_object_key(&[0, 0, 5, 0, 7]).is_err());
        assert!(decode_totals_record(&[0; 15]).is_err());
    }

    #[test]
    fn node_records_round_trip_and_read_versions_1_and_2() {
        let mut m = NodeMeta {
            generation: 9,
            unsynced: true,
            ..NodeMeta::default()
        };
        m.epochs.insert(PartitionId(3), 2);
        m.epochs.insert(PartitionId(700), 1);
        m.dropped.insert(PartitionId(5));
        let rec = node_record(&m);
        assert_eq!(decode_node_record(&rec).unwrap(), m);
        for cut in 0..rec.len() {
            assert!(
                decode_node_record(&rec[..cut]).is_err(),
                "truncated at {cut}"
            );
        }
        let mut long = rec.clone();
        long.push(0);
        assert!(decode_node_record(&long).is_err());
        let v1 = [&[1u8][..], &7u64.to_le_bytes()].concat();
        let old = decode_node_record(&v1).unwrap();
        assert_eq!((old.generation, old.epochs.len()), (7, 0));
        // Version 2 is version 3 without the sync flag, and reads as synced.
        let mut v2 = rec[..rec.len() - 1].to_vec();
        v2[0] = 2;
        let old = decode_node_record(&v2).unwrap();
        assert_eq!(
            (old.epochs, old.dropped),
            (m.epochs.clone(), m.dropped.clone())
        );
        assert!(!old.unsynced);
        let mut bad_flag = rec.clone();
        *bad_flag.last_mut().unwrap() = 2;
        assert!(decode_node_record(&bad_flag).is_err());
    }
}
