//! Shared helpers: a seeded generator, temporary directories, keys and values.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use cairn_core::ObjectKey;
use cairn_crdt::{
    Actor, CounterOp, FlagOp, Op, RegisterOp, Replica, SetOp, Timestamp, Value, ValueType,
};
use cairn_ring::PartitionId;
use cairn_store::{Durability, Options};

/// xorshift64*: seeded, so a failing case replays from its printed seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("cairn-store-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn file(&self) -> PathBuf {
        self.0.join("node.redb")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Options for tests: fast commits unless a test says otherwise, and a short log that
/// starts over often (so crashes meet every step of a restart).
pub fn opts(durability: Durability) -> Options {
    let mut o = Options::new(0xC0FFEE);
    o.durability = durability;
    o.wal_restart_bytes = 5 << 10;
    o
}

/// The partitions [`key`] draws from: neighbours, and ones that differ from them in
/// either byte of the on-disk key only.
pub const PARTITIONS: [u16; 4] = [0, 1, 256, 4095];

/// One of a few keys over a few partitions and buckets that share prefixes and zero bytes.
pub fn key(rng: &mut Rng) -> ObjectKey {
    const BUCKETS: [&[u8]; 3] = [b"b", b"b\0", b"bb"];
    ObjectKey {
        partition: PartitionId(PARTITIONS[rng.below(PARTITIONS.len() as u64) as usize]),
        bucket: BUCKETS[rng.below(3) as usize].into(),
        key: format!("k{}", rng.below(12)).into_bytes().into(),
    }
}

/// A value of a random type with a few random operations applied; about one in ten is
/// a [`large_set`].
pub fn value(rng: &mut Rng) -> Value {
    if rng.chance(10) {
        return large_set(rng);
    }
    let types = [
        ValueType::Counter,
        ValueType::Set,
        ValueType::Register,
        ValueType::Flag,
    ];
    let ty = types[rng.below(types.len() as u64) as usize];
    let mut v = Value::empty(ty);
    for _ in 0..rng.below(4) {
        let op = match ty {
            ValueType::Counter => Op::Counter(CounterOp::Increment(rng.below(100) as i64 - 50)),
            ValueType::Set => Op::Set(SetOp::Add(vec![format!("m{}", rng.below(20)).into_bytes()])),
            ValueType::Register => {
                Op::Register(RegisterOp::Assign(rng.next().to_le_bytes().to_vec()))
            }
            _ => Op::Flag(if rng.chance(50) {
                FlagOp::Enable
            } else {
                FlagOp::Disable
            }),
        };
        let replica = Replica {
            actor: Actor(rng.below(3) + 1),
            now: Timestamp {
                wall_ms: rng.below(1000),
                logical: 0,
            },
        };
        v.apply(&op, replica).unwrap();
    }
    v
}

/// A set of 30 random members: its record is over the bound the store keeps inline, so
/// it is kept in `large_objects` (a few members of `value`'s sets are not).
pub fn large_set(rng: &mut Rng) -> Value {
    let mut v = Value::empty(ValueType::Set);
    for _ in 0..30 {
        let member = format!("{:016x}", rng.next()).into_bytes();
        let replica = Replica {
            actor: Actor(rng.below(3) + 1),
            now: Timestamp::ZERO,
        };
        v.apply(&Op::Set(SetOp::Add(vec![member])), replica)
            .unwrap();
    }
    v
}
