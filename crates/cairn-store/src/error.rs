//! redb's errors as [`StoreError`]s: damage becomes `Corrupt`, everything else `Io`.

use cairn_core::StoreError;

pub(crate) fn storage_error(e: redb::StorageError) -> StoreError {
    match e {
        redb::StorageError::Corrupted(m) => StoreError::Corrupt(format!("redb: {m}")),
        other => StoreError::Io(format!("redb: {other}")),
    }
}

pub(crate) fn txn_error(e: redb::TransactionError) -> StoreError {
    match e {
        redb::TransactionError::Storage(s) => storage_error(s),
        other => StoreError::Io(format!("redb transaction: {other}")),
    }
}

pub(crate) fn table_error(e: redb::TableError) -> StoreError {
    match e {
        redb::TableError::Storage(s) => storage_error(s),
        // Every table is created with the file: a missing or retyped one is damage.
        other => StoreError::Corrupt(format!("redb table: {other}")),
    }
}

pub(crate) fn commit_error(e: redb::CommitError) -> StoreError {
    match e {
        redb::CommitError::Storage(s) => storage_error(s),
        other => StoreError::Io(format!("redb commit: {other}")),
    }
}

/// What an operator should do about a file that cannot be opened.
pub(crate) const DAMAGED_ADVICE: &str = "Stop the node and move the file aside (keep it for \
     diagnosis); the node then starts with an empty store and a new storage generation, and \
     anti-entropy and read repair restore its data from the other replicas. Do not delete it \
     unless the cluster keeps other replicas of every partition.";

/// A refusal at open that names the file and the remedy.
pub(crate) fn refuse(file: &str, what: &str) -> StoreError {
    StoreError::Corrupt(format!("cannot open {file}: {what}. {DAMAGED_ADVICE}"))
}

/// An open-time error, with the file named.
pub(crate) fn at_open(file: &str, e: StoreError) -> StoreError {
    match e {
        StoreError::Corrupt(m) => refuse(file, &format!("it is damaged ({m})")),
        StoreError::Io(m) => StoreError::Io(format!("cannot open {file}: {m}")),
        other => other,
    }
}

pub(crate) fn database_error(file: &str, e: redb::DatabaseError) -> StoreError {
    match e {
        redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Io(format!(
            "cannot open {file}: another process has it open; stop the other node first"
        )),
        redb::DatabaseError::UpgradeRequired(v) => refuse(
            file,
            &format!("it is in redb file format {v}, which this build cannot read"),
        ),
        redb::DatabaseError::Storage(redb::StorageError::Io(io))
            if io.kind() == std::io::ErrorKind::UnexpectedEof
                || io.kind() == std::io::ErrorKind::InvalidData =>
        {
            refuse(file, &format!("it is truncated or not a database ({io})"))
        }
        redb::DatabaseError::Storage(s) => at_open(file, storage_error(s)),
        other => refuse(file, &format!("redb refused it ({other})")),
    }
}
