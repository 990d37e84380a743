//! Shows one key as each of several stopped nodes' stores hold it, and whether their
//! anti-entropy trees agree with their objects: what a non-converging cluster left behind.
//!
//! ```text
//! cargo run --release -p cairn-store --example inspect -- \
//!     --partitions 64 nemesis m0 copy/n0/cairn.redb copy/n1/cairn.redb
//! ```
//!
//! Open **copies**: opening replays the log and takes a new storage generation, as a
//! node's start does.

use cairn_core::aae::{leaf, segment_of, state_hash, SegmentId};
use cairn_core::{join_values, ObjectKey, Store};
use cairn_crdt::Value;
use cairn_ring::{PartitionId, Partitioning};
use cairn_store::{Options, RedbStore};

/// Most keys listed per segment when a tree is checked against its objects.
const KEYS_PER_SEGMENT_MAX: usize = 1 << 20;

fn main() {
    if let Err(e) = run() {
        eprintln!("inspect: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut partitions = 64;
    if args.first().map(String::as_str) == Some("--partitions") {
        partitions = args
            .get(1)
            .and_then(|p| p.parse().ok())
            .ok_or("--partitions takes a power of two")?;
        args.drain(..2);
    }
    let [bucket, key, files @ ..] = args.as_slice() else {
        return Err("usage: inspect [--partitions Q] BUCKET KEY STORE_FILE...".into());
    };
    let ring = Partitioning::new(partitions).map_err(|e| e.to_string())?;
    let key = ObjectKey {
        partition: ring.partition_of(bucket.as_bytes(), key.as_bytes()),
        bucket: bucket.as_bytes().into(),
        key: key.as_bytes().into(),
    };
    println!(
        "partition {} segment {}",
        key.partition.0,
        segment_of(&key).0
    );
    let mut values = Vec::new();
    for file in files {
        let store = RedbStore::open(file, Options::new(rand_nonce())).map_err(|e| e.to_string())?;
        let value = store.object(&key).map_err(|e| e.to_string())?;
        let bad = bad_segments(&store, key.partition)?;
        match &value {
            Some(v) => println!(
                "{file}: state hash {:016x}, {bad} segments unlike their objects\n  {v:?}",
                state_hash(v)
            ),
            None => println!("{file}: absent, {bad} segments unlike their objects"),
        }
        values.extend(value);
    }
    if let Some(join) = join_values(values.iter()) {
        let hash = state_hash(&join);
        let equal: Vec<bool> = values.iter().map(|v| v == &join).collect();
        println!("join: state hash {hash:016x}; each copy equal to it: {equal:?}");
    }
    Ok(())
}

/// Segments of `partition` whose tree hash is not the XOR of their keys' leaves, or whose
/// listed state hashes are not their objects'.
fn bad_segments(store: &RedbStore, partition: PartitionId) -> Result<usize, String> {
    let tree = store.aae_tree(partition).map_err(|e| e.to_string())?;
    let mut bad = 0;
    for (s, &want) in tree.segments().iter().enumerate() {
        let segment = SegmentId(u16::try_from(s).map_err(|e| e.to_string())?);
        let keys = store
            .aae_keys(partition, &[segment], None, KEYS_PER_SEGMENT_MAX)
            .map_err(|e| e.to_string())?;
        let mut xor = 0;
        let mut listed_right = true;
        for (k, hash) in &keys {
            xor ^= leaf(k, *hash);
            let object: Option<Value> = store.object(k).map_err(|e| e.to_string())?;
            listed_right &= object.map(|v| state_hash(&v)) == Some(*hash);
        }
        if xor != want || !listed_right {
            bad += 1;
        }
    }
    Ok(bad)
}

/// A start's nonce (the store's new generation if it must rotate one).
fn rand_nonce() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::process::id())
}
