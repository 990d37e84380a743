//! Throwaway: dump one key and its segment from a node's store.
use cairn_core::aae::{leaf, segment_of, state_hash};
use cairn_core::{ObjectKey, Store};
use cairn_ring::Partitioning;
use cairn_store::{Options, RedbStore};

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap();
    let bucket = args.next().unwrap();
    let key = args.next().unwrap();
    let store = RedbStore::open(&path, Options::new(12345)).unwrap();
    let p = Partitioning::new(64)
        .unwrap()
        .partition_of(bucket.as_bytes(), key.as_bytes());
    let k = ObjectKey {
        partition: p,
        bucket: bucket.as_bytes().into(),
        key: key.as_bytes().into(),
    };
    let seg = segment_of(&k);
    let v = store.object(&k).unwrap();
    println!("partition {:?} segment {:?}", p, seg);
    match &v {
        Some(v) => println!("state_hash {:016x}\nvalue {:?}", state_hash(v), v),
        None => println!("absent"),
    }
    let tree = store.aae_tree(p).unwrap();
    println!("tree segment {:016x}", tree.segments()[seg.0 as usize]);
    let keys = store.aae_keys(p, &[seg], 10_000).unwrap();
    let mut x = 0u64;
    for (ok, h) in &keys {
        let actual = store.object(ok).unwrap().map(|v| state_hash(&v));
        println!(
            "  key {:?} listed {:016x} actual {:x?}",
            String::from_utf8_lossy(&ok.key),
            h,
            actual
        );
        x ^= leaf(ok, *h);
    }
    println!("xor of listed leaves {:016x}", x);
    // whole-tree check
    let mut bad = 0;
    for s in 0..1024u16 {
        let ks = store
            .aae_keys(p, &[cairn_core::aae::SegmentId(s)], 10_000)
            .unwrap();
        let mut x = 0u64;
        for (ok, h) in &ks {
            x ^= leaf(ok, *h);
            let a = store.object(ok).unwrap().map(|v| state_hash(&v));
            if a != Some(*h) {
                println!("  listed hash mismatch {:?}", ok);
            }
        }
        if x != tree.segments()[s as usize] {
            bad += 1;
            println!(
                "  segment {s} tree {:016x} xor {:016x}",
                tree.segments()[s as usize],
                x
            );
        }
    }
    println!("bad segments in partition: {bad}");
}
