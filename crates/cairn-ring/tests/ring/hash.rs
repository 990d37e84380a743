//! Hash stability: these values are part of the storage contract. If one changes, every
//! key of every cluster moves partition.

use cairn_ring::{key_hash, LayoutConfig, PartitionId, Partitioning};

/// `(bucket, key, key_hash, partition at Q = 64, partition at Q = 4096)`.
const GOLDEN: &[(&str, &str, u64, u16, u16)] = &[
    ("", "", 0xc77b_3abb_6f87_acd9, 49, 3191),
    ("users", "alice", 0x2dee_f3ce_24b5_756b, 11, 734),
    ("users", "bob", 0x9c40_073b_5fc2_55fe, 39, 2500),
    ("ab", "c", 0xce70_6513_2bc1_ba7c, 51, 3303),
    ("a", "bc", 0xa417_c064_999b_5134, 41, 2625),
    ("photos", "2024/01/01.jpg", 0xdd24_2a64_9faa_1036, 55, 3538),
];

#[test]
fn golden_hashes_and_partitions() {
    let q64 = LayoutConfig::default().partitioning();
    let q4096 = Partitioning::new(4096).expect("4096 is allowed");
    for &(bucket, key, hash, p64, p4096) in GOLDEN {
        let (bucket, key) = (bucket.as_bytes(), key.as_bytes());
        assert_eq!(key_hash(bucket, key), hash, "{bucket:?} {key:?}");
        assert_eq!(q64.partition_of(bucket, key), PartitionId(p64));
        assert_eq!(q4096.partition_of(bucket, key), PartitionId(p4096));
    }
}

/// Short inputs are hashed in one shot from the stack, long ones streamed: the two give
/// one function, on both sides of the switch (256 bytes with the 8-byte prefix).
#[test]
fn long_and_short_keys_hash_alike() {
    for len in [0, 1, 242, 243, 244, 5_000] {
        let key = vec![b'k'; len];
        let mut framed = 5u64.to_le_bytes().to_vec();
        framed.extend_from_slice(b"users");
        framed.extend_from_slice(&key);
        let whole = xxhash_rust::xxh3::xxh3_64(&framed);
        assert_eq!(key_hash(b"users", &key), whole, "key of {len} bytes");
    }
}

#[test]
fn the_bucket_is_length_prefixed() {
    assert_ne!(key_hash(b"ab", b"c"), key_hash(b"a", b"bc"));
    assert_ne!(key_hash(b"", b"abc"), key_hash(b"abc", b""));
}

#[test]
fn partitions_are_the_top_bits() {
    let q = Partitioning::new(16).expect("valid");
    assert_eq!(q.partition_of_hash(0), PartitionId(0));
    assert_eq!(q.partition_of_hash(0x0fff_ffff_ffff_ffff), PartitionId(0));
    assert_eq!(q.partition_of_hash(0x1000_0000_0000_0000), PartitionId(1));
    assert_eq!(q.partition_of_hash(u64::MAX), PartitionId(15));
    let one = Partitioning::new(1).expect("valid");
    assert_eq!(one.partition_of_hash(u64::MAX), PartitionId(0));
    let max = Partitioning::new(4096).expect("valid");
    assert_eq!(max.partition_of_hash(u64::MAX), PartitionId(4095));
}

#[test]
fn keys_spread_over_partitions() {
    let q = LayoutConfig::default().partitioning();
    let mut counts = [0u32; 64];
    for i in 0..64_000u32 {
        counts[q.partition_of(b"bucket", &i.to_le_bytes()).index()] += 1;
    }
    // 1000 expected per partition; a fair hash stays well within +-15%.
    assert!(
        counts.iter().all(|&c| (850..=1150).contains(&c)),
        "{counts:?}"
    );
}
