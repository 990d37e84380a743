//! Derived rows (the anti-entropy segment hashes, kept in `objects`; the hint totals)
//! rebuilt from the primary ones (objects, hints): the format upgrade builds them, and
//! [`RedbStore::audit`] checks the stored ones against a rebuild.

use std::collections::BTreeMap;
use std::ops::Bound;

use cairn_core::aae::{leaf, segment_of, state_hash};
use cairn_core::StoreError;
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::error::{commit_error, storage_error, table_error, txn_error};
use crate::format::{
    self, MetaKey, AAE_KEYS_V1, AAE_SEGMENTS_V2, FORMAT_VERSION, HINTS, HINT_TOTALS, LARGE_OBJECTS,
    META, OBJECTS, OBJECTS_UPGRADE,
};
use crate::store::RedbStore;

/// What the derived tables should hold.
#[derive(Debug, Default, PartialEq, Eq)]
struct Derived {
    segments: BTreeMap<[u8; 4], u64>,
    totals: BTreeMap<[u8; 8], (u64, u64)>,
    objects: u64,
    /// Objects whose record is in `large_objects`.
    large: u64,
    hints: u64,
}

/// What [`RedbStore::audit`] found in the committed state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Audit {
    /// Objects stored.
    pub objects: u64,
    /// Of those, the objects whose record is kept in `large_objects`.
    pub large_objects: u64,
    /// Hints stored.
    pub hints: u64,
    /// Every disagreement between a derived table and the objects or hints; empty when the
    /// store is consistent.
    pub problems: Vec<String>,
}

type Table<'t> = redb::ReadOnlyTable<&'static [u8], &'static [u8]>;

/// Rebuilds the derived rows from `objects` (keys decoded by `decode_key`: the format's
/// own, or an older one's during an upgrade) and `hints`, checking every record. With
/// `segment_rows` (the current format), the segment hashes stored in `objects` are
/// collected into `stored` instead of being read as objects.
fn derive(
    objects: &impl ReadableTable<&'static [u8], &'static [u8]>,
    large: Option<&Table<'_>>,
    decode_key: fn(&[u8]) -> Result<cairn_core::ObjectKey, StoreError>,
    segment_rows: bool,
    hints: &impl ReadableTable<&'static [u8], &'static [u8]>,
    stored: &mut BTreeMap<[u8; 4], u64>,
) -> Result<Derived, StoreError> {
    let mut d = Derived::default();
    for row in objects.iter().map_err(storage_error)? {
        let (k, v) = row.map_err(storage_error)?;
        if segment_rows && format::is_segment_key(k.value()) {
            let (p, s) = format::decode_segment_key(k.value())?;
            let h = format::u64_le(v.value(), "segment hash")?;
            stored.insert(format::segment_key(p, s), h);
            continue;
        }
        let key = decode_key(k.value())?;
        let (hash, value) = format::decode_object_row(large, k.value(), v.value())?;
        d.large += u64::from(format::is_large_stub(v.value()));
        if state_hash(&value) != hash {
            return Err(StoreError::Corrupt(format!(
                "object {key:?}: stored state hash is stale"
            )));
        }
        let s = segment_of(&key);
        *d.segments
            .entry(format::segment_key(key.partition, s))
            .or_default() ^= leaf(&key, hash);
        d.objects += 1;
    }
    d.segments.retain(|_, h| *h != 0);
    for row in hints.iter().map_err(storage_error)? {
        let (k, v) = row.map_err(storage_error)?;
        let (owner, _) = format::decode_hint_key(k.value())?;
        format::decode_hint_record(v.value())?;
        let bytes = format::hint_record_value(v.value())?.len() as u64;
        let t = d.totals.entry(format::owner_key(owner)).or_default();
        t.0 += 1;
        t.1 += bytes;
        d.hints += 1;
    }
    Ok(d)
}

/// The hint totals as stored, by owner key.
pub(crate) fn stored_totals(
    totals: &Table<'_>,
) -> Result<BTreeMap<[u8; 8], (u64, u64)>, StoreError> {
    let mut out = BTreeMap::new();
    for row in totals.iter().map_err(storage_error)? {
        let (k, v) = row.map_err(storage_error)?;
        let owner = format::decode_owner_key(k.value())?;
        out.insert(
            format::owner_key(owner),
            format::decode_totals_record(v.value())?,
        );
    }
    Ok(out)
}

fn open<'t>(
    txn: &redb::ReadTransaction,
    t: TableDefinition<'static, &'static [u8], &'static [u8]>,
) -> Result<Table<'t>, StoreError> {
    txn.open_table(t).map_err(table_error)
}

impl RedbStore {
    /// Rebuilds the anti-entropy segments and the hint totals from the committed objects
    /// and hints, decoding every record (an object keyed under the wrong segment is an
    /// error), and compares them with the stored ones.
    /// Reads every object: for tests, upgrades and an operator's `check` command.
    pub fn audit(&self) -> Result<Audit, StoreError> {
        let txn = self.shared.db.begin_read().map_err(txn_error)?;
        let mut have = BTreeMap::new();
        let large = open(&txn, LARGE_OBJECTS)?;
        let want = derive(
            &open(&txn, OBJECTS)?,
            Some(&large),
            format::decode_object_key,
            true,
            &open(&txn, HINTS)?,
            &mut have,
        )?;
        let have_totals = stored_totals(&open(&txn, HINT_TOTALS)?)?;
        let mut problems = Vec::new();
        for (k, h) in &want.segments {
            if have.get(k) != Some(h) {
                problems.push(format!(
                    "aae segment {k:?}: stored {:?}, expected {h}",
                    have.get(k)
                ));
            }
        }
        for k in have.keys().filter(|k| !want.segments.contains_key(*k)) {
            problems.push(format!(
                "aae segment {k:?} stored but no object hashes there"
            ));
        }
        let large_rows = large.len().map_err(storage_error)?;
        if large_rows != want.large {
            problems.push(format!(
                "large_objects holds {large_rows} records for {} stubs",
                want.large
            ));
        }
        if want.totals != have_totals {
            problems.push(format!(
                "hint totals: stored {have_totals:?}, expected {:?}",
                want.totals
            ));
        }
        Ok(Audit {
            objects: want.objects,
            large_objects: want.large,
            hints: want.hints,
            problems,
        })
    }
}

/// Upgrades a file in format `from` to [`FORMAT_VERSION`] in synced transactions. The
/// format record changes only in the last one that changes tables, so a crash before it
/// leaves the old format, and the next open upgrades again; the large records are moved
/// after it, where a crash leaves a valid file ([`move_large_records`]).
///
/// - Format 0 had the primary tables (`meta`, `objects`, `hints`) in format 1's encodings
///   but none of the derived ones.
/// - Format 1 keyed `objects` by the plain key and kept the `aae_keys` index.
/// - Format 2 kept the segment hashes in their own `aae_segments` table.
/// - Format 3 had no write-ahead log, which open sets up.
/// - Format 4 kept every object record inline in `objects`.
///
/// Formats 0 and 1 re-key the objects with their segment (into a side table, renamed over
/// the old one) and drop `aae_keys`; formats 0 to 2 drop `aae_segments`, write the segment
/// hashes into `objects` and rebuild `hint_totals`, the hashes and totals rebuilt from the
/// objects and hints. Every format then gets `large_objects`, with the new format record,
/// and its large records are moved there ([`move_large_records`]).
pub(crate) fn upgrade(db: &Database, from: u32) -> Result<(), StoreError> {
    match from {
        0..=2 => rebuild_derived(db, from)?,
        3 | 4 => {
            // The tables are those of format 5, less `large_objects`.
            let txn = db.begin_write().map_err(txn_error)?;
            txn.open_table(LARGE_OBJECTS).map_err(table_error)?;
            txn.open_table(META)
                .map_err(table_error)?
                .insert(MetaKey::FORMAT, &FORMAT_VERSION.to_le_bytes()[..])
                .map_err(storage_error)?;
            txn.commit().map_err(commit_error)?;
        }
        _ => {
            return Err(StoreError::Corrupt(format!(
                "no upgrade from format {from}"
            )))
        }
    }
    move_large_records(db)
}

/// Bytes of records [`move_large_records`] moves per transaction: the upgrade of a large
/// store holds this much in memory at a time, not the whole file.
const MOVE_BATCH_BYTES: usize = 64 << 20;

/// Moves every inline object record over [`format::LARGE_RECORD_BYTES`] into
/// `large_objects`, in synced transactions of about [`MOVE_BATCH_BYTES`] each.
///
/// It runs after the format record says 5, where an inline record of any size is valid
/// (the writer moves one when it next writes it): a crash part way leaves a valid file,
/// only a slower one, and an old binary refuses it for its format.
fn move_large_records(db: &Database) -> Result<(), StoreError> {
    let mut after: Option<Vec<u8>> = None;
    loop {
        let txn = db.begin_write().map_err(txn_error)?;
        let next = {
            let mut objects = txn.open_table(OBJECTS).map_err(table_error)?;
            let mut large = txn.open_table(LARGE_OBJECTS).map_err(table_error)?;
            let (batch, next) = large_inline_records(&objects, after.as_deref())?;
            for (k, r) in &batch {
                crate::writer::put_object(&mut objects, &mut large, k, r).map_err(storage_error)?;
            }
            next
        };
        txn.commit().map_err(commit_error)?;
        match next {
            Some(k) => after = Some(k),
            None => return Ok(()),
        }
    }
}

/// A row's key and value bytes.
type Row = (Vec<u8>, Vec<u8>);

/// Inline object records over the bound, in key order after `after`, up to about
/// [`MOVE_BATCH_BYTES`]; and the key to go on after, if the table goes on.
fn large_inline_records(
    objects: &impl ReadableTable<&'static [u8], &'static [u8]>,
    after: Option<&[u8]>,
) -> Result<(Vec<Row>, Option<Vec<u8>>), StoreError> {
    let start = after.map_or(Bound::Unbounded, Bound::Excluded);
    let mut out: Vec<Row> = Vec::new();
    let mut bytes = 0;
    for row in objects
        .range::<&[u8]>((start, Bound::Unbounded))
        .map_err(storage_error)?
    {
        let (k, v) = row.map_err(storage_error)?;
        // Stubs (9 bytes) and segment rows (8) are never over the bound.
        if format::large_stub(v.value()).is_none() {
            continue;
        }
        bytes += v.value().len();
        out.push((k.value().to_vec(), v.value().to_vec()));
        if bytes >= MOVE_BATCH_BYTES {
            let next = out.last().map(|(k, _)| k.clone());
            return Ok((out, next));
        }
    }
    Ok((out, None))
}

/// The upgrade from formats 0 to 2: derived rows rebuilt (see [`upgrade`]).
fn rebuild_derived(db: &Database, from: u32) -> Result<(), StoreError> {
    let rekey = from < 2;
    let decode_key = if rekey {
        format::decode_plain_key
    } else {
        format::decode_object_key
    };
    let read = db.begin_read().map_err(txn_error)?;
    let d = derive(
        &open(&read, OBJECTS)?,
        None,
        decode_key,
        false,
        &open(&read, HINTS)?,
        &mut BTreeMap::new(),
    )?;
    drop(read);
    let put_segments = |t: &mut redb::Table<'_, &'static [u8], &'static [u8]>| {
        for (k, h) in &d.segments {
            t.insert(&k[..], &h.to_le_bytes()[..])
                .map_err(storage_error)?;
        }
        Ok::<_, StoreError>(())
    };
    if rekey {
        // Two commits, because redb 2.6 mishandles a table created and then deleted or
        // renamed in one transaction (its debug assertions fire; the file fails its next
        // integrity check). The first builds the re-keyed objects and their segment hashes
        // in a side table while the file stays in format `from` (a crash leaves it there,
        // and the next upgrade starts over); the second swaps it in and rebuilds the
        // totals with the new format record.
        let txn = db.begin_write().map_err(txn_error)?;
        txn.delete_table(OBJECTS_UPGRADE).map_err(table_error)?;
        {
            let old = txn.open_table(OBJECTS).map_err(table_error)?;
            let mut new = txn.open_table(OBJECTS_UPGRADE).map_err(table_error)?;
            for row in old.iter().map_err(storage_error)? {
                let (k, v) = row.map_err(storage_error)?;
                let key = format::object_key(&format::decode_plain_key(k.value())?);
                new.insert(&key[..], v.value()).map_err(storage_error)?;
            }
            put_segments(&mut new)?;
        }
        txn.commit().map_err(commit_error)?;
    }
    let txn = db.begin_write().map_err(txn_error)?;
    for t in [AAE_KEYS_V1, AAE_SEGMENTS_V2, HINT_TOTALS] {
        txn.delete_table(t).map_err(table_error)?;
    }
    if rekey {
        txn.delete_table(OBJECTS).map_err(table_error)?;
        txn.rename_table(OBJECTS_UPGRADE, OBJECTS)
            .map_err(table_error)?;
    } else {
        put_segments(&mut txn.open_table(OBJECTS).map_err(table_error)?)?;
    }
    txn.open_table(LARGE_OBJECTS).map_err(table_error)?;
    {
        let mut totals = txn.open_table(HINT_TOTALS).map_err(table_error)?;
        for (o, (c, b)) in &d.totals {
            totals
                .insert(&o[..], &format::totals_record(*c, *b)[..])
                .map_err(storage_error)?;
        }
        let mut meta = txn.open_table(META).map_err(table_error)?;
        meta.insert(MetaKey::FORMAT, &FORMAT_VERSION.to_le_bytes()[..])
            .map_err(storage_error)?;
    }
    txn.commit().map_err(commit_error)
}
