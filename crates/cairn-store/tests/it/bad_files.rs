//! Damaged and foreign files are refused at open with an error that names the file and
//! says what to do; never a panic, never an empty store in their place. A flip in bytes
//! that hold nothing (free pages) may open, but then every read equals the original.

use std::path::Path;

use cairn_core::{ObjectKey, Store, StoreError};
use cairn_crdt::Value;
use cairn_store::{Durability, RedbStore};

use crate::util::{key, opts, value, Rng, TempDir};

/// A closed store with some objects; returns them.
fn make(path: &Path) -> Vec<(ObjectKey, Value)> {
    let mut rng = Rng::new(5);
    let mut s = RedbStore::open(path, opts(Durability::Fsync)).unwrap();
    let mut written = std::collections::BTreeMap::new();
    for _ in 0..200 {
        let (k, v) = (key(&mut rng), value(&mut rng));
        s.stage_object(k.clone(), v.clone()).unwrap();
        written.insert(k, v);
    }
    s.close().unwrap();
    written.into_iter().collect()
}

fn assert_refused(path: &Path, e: &StoreError, what: &str) {
    let StoreError::Corrupt(msg) = e else {
        panic!("{what}: expected Corrupt, got {e:?}");
    };
    assert!(
        msg.contains(&path.display().to_string()),
        "{what}: names the file: {msg}"
    );
    assert!(
        msg.contains("move the file aside"),
        "{what}: says what to do: {msg}"
    );
}

/// Either refused clearly, or every object reads back as written.
fn refused_or_intact(path: &Path, objects: &[(ObjectKey, Value)], what: &str) -> bool {
    match RedbStore::open(path, opts(Durability::Fsync)) {
        Err(e) => {
            assert_refused(path, &e, what);
            true
        }
        Ok(s) => {
            for (k, v) in objects {
                match s.object(k) {
                    Ok(got) => assert_eq!(got.as_ref(), Some(v), "{what}: opened but lost {k:?}"),
                    Err(StoreError::Corrupt(_)) => {}
                    Err(e) => panic!("{what}: {e:?}"),
                }
            }
            false
        }
    }
}

#[test]
fn truncated_files_are_refused() {
    let dir = TempDir::new("truncated");
    let path = dir.file();
    let objects = make(&path);
    let good = std::fs::read(&path).unwrap();
    for len in [0, 1, 100, 4096, good.len() / 2, good.len() - 4096] {
        std::fs::write(&path, &good[..len]).unwrap();
        let e = RedbStore::open(&path, opts(Durability::Fsync)).unwrap_err();
        assert_refused(&path, &e, &format!("truncated to {len}"));
    }
    std::fs::write(&path, &good).unwrap();
    assert!(
        !refused_or_intact(&path, &objects, "restored"),
        "the good file opens again"
    );
}

#[test]
fn zeroed_files_are_refused() {
    let dir = TempDir::new("zeroed");
    let path = dir.file();
    let objects = make(&path);
    let good = std::fs::read(&path).unwrap();
    std::fs::write(&path, vec![0; good.len()]).unwrap();
    let e = RedbStore::open(&path, opts(Durability::Fsync)).unwrap_err();
    assert_refused(&path, &e, "all zero");
    let mut refused = 0;
    // The first pages (header, tables), then pages anywhere: each opens with a full check.
    let pages = good.len() / 4096;
    let mut rng = Rng::new(12);
    let chosen = (0..8).chain((0..24).map(|_| 8 + rng.below((pages - 8) as u64) as usize));
    for page in chosen.map(|p| p * 4096) {
        let mut bad = good.clone();
        let end = (page + 4096).min(bad.len());
        bad[page..end].fill(0);
        std::fs::write(&path, &bad).unwrap();
        refused += usize::from(refused_or_intact(
            &path,
            &objects,
            &format!("page at {page} zeroed"),
        ));
    }
    assert!(refused > 0);
}

#[test]
fn bit_flips_are_refused_or_harmless() {
    let dir = TempDir::new("flipped");
    let path = dir.file();
    let objects = make(&path);
    let good = std::fs::read(&path).unwrap();
    let mut rng = Rng::new(11);
    let mut refused = 0;
    // The header and the first pages (where the tables live), then anywhere.
    let positions: Vec<usize> = (0..64)
        .map(|i| i * 97 % 8192)
        .chain((0..150).map(|_| rng.below(good.len() as u64) as usize))
        .collect();
    for pos in positions {
        let mut bad = good.clone();
        bad[pos] ^= 1 << rng.below(8);
        std::fs::write(&path, &bad).unwrap();
        refused += usize::from(refused_or_intact(
            &path,
            &objects,
            &format!("bit flip at {pos}"),
        ));
    }
    assert!(refused > 10, "only {refused} flips refused");
}

#[test]
fn foreign_files_are_refused() {
    let dir = TempDir::new("foreign");
    let path = dir.file();
    std::fs::write(&path, b"# not a database\nhello\n".repeat(500)).unwrap();
    let e = RedbStore::open(&path, opts(Durability::Fsync)).unwrap_err();
    assert_refused(&path, &e, "text file");

    // A redb database, but someone else's.
    std::fs::remove_file(&path).unwrap();
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        let t: redb::TableDefinition<'_, u64, u64> = redb::TableDefinition::new("theirs");
        txn.open_table(t).unwrap().insert(1, 2).unwrap();
        txn.commit().unwrap();
    }
    let e = RedbStore::open(&path, opts(Durability::Fsync)).unwrap_err();
    assert_refused(&path, &e, "another program's redb file");
    assert!(format!("{e}").contains("not a Cairn store"), "{e}");
}

#[test]
fn a_missing_directory_is_an_io_error_not_a_new_store() {
    let dir = TempDir::new("missing");
    let path = dir.path().join("no/such/dir/node.redb");
    let e = RedbStore::open(&path, opts(Durability::Fsync)).unwrap_err();
    assert!(matches!(e, StoreError::Io(_)), "{e:?}");
    assert!(!path.exists());
}
