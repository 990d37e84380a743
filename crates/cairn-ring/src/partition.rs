//! From `(bucket, key)` to a partition, and the cluster's fixed shape: how many partitions
//! and how many replicas each.

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3;

use crate::limits::{PARTITIONS_DEFAULT, PARTITIONS_MAX, REPLICATION_DEFAULT, REPLICATION_MAX};
use crate::{NodeId, PartitionId};

/// The stable 64-bit hash of a key: XXH3-64 (seed 0) of
/// `len(bucket) as u64 little-endian || bucket || key`.
///
/// The length prefix makes the framing unambiguous: `("ab", "c")` and `("a", "bc")` hash
/// differently. This function is part of the on-disk and wire contract; changing it moves
/// every key, so golden values pin it in the tests.
pub fn key_hash(bucket: &[u8], key: &[u8]) -> u64 {
    // A write hashes its key several times (its partition, its segment, its on-disk
    // key); streaming XXH3 sets up a ~600-byte state each time, so typical keys are
    // hashed in one shot from a copy on the stack. Both give the same hash.
    let len = 8 + bucket.len() + key.len();
    if len <= KEY_HASH_STACK_BYTES {
        let mut bytes = [0u8; KEY_HASH_STACK_BYTES];
        bytes[..8].copy_from_slice(&(bucket.len() as u64).to_le_bytes());
        bytes[8..8 + bucket.len()].copy_from_slice(bucket);
        bytes[8 + bucket.len()..len].copy_from_slice(key);
        return xxhash_rust::xxh3::xxh3_64(&bytes[..len]);
    }
    let mut hasher = Xxh3::new();
    hasher.update(&(bucket.len() as u64).to_le_bytes());
    hasher.update(bucket);
    hasher.update(key);
    hasher.digest()
}

/// Longest hashed input [`key_hash`] copies to the stack.
const KEY_HASH_STACK_BYTES: usize = 256;

/// The rendezvous hash of a node for a partition: orders new replicas within a set and
/// fallbacks in a preference list, so that each partition has its own stable order and
/// load spreads evenly when a node fails. XXH3-64 of `partition u16 LE || node u64 LE`.
pub(crate) fn rendezvous(partition: PartitionId, node: NodeId) -> u64 {
    let mut bytes = [0u8; 10];
    bytes[..2].copy_from_slice(&partition.0.to_le_bytes());
    bytes[2..].copy_from_slice(&node.0.to_le_bytes());
    xxhash_rust::xxh3::xxh3_64(&bytes)
}

/// The number of partitions `Q`: a power of two from 1 to [`PARTITIONS_MAX`], fixed when
/// the cluster is created. A key's partition is the top `log2(Q)` bits of its hash, so
/// partitions are contiguous ranges of the hash space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u16", into = "u16")]
pub struct Partitioning {
    bits: u8,
}

impl Partitioning {
    /// `count` partitions; it must be a power of two no larger than [`PARTITIONS_MAX`].
    pub fn new(count: u16) -> Result<Self, ConfigError> {
        if !count.is_power_of_two() || count > PARTITIONS_MAX {
            return Err(ConfigError::Partitions { count });
        }
        let bits = u8::try_from(count.trailing_zeros()).expect("at most 15 bits");
        Ok(Self { bits })
    }

    /// `Q`.
    pub fn count(self) -> u16 {
        1 << self.bits
    }

    /// The partition that holds keys with this [`key_hash`].
    pub fn partition_of_hash(self, hash: u64) -> PartitionId {
        if self.bits == 0 {
            return PartitionId(0);
        }
        let top = hash >> (64 - u32::from(self.bits));
        PartitionId(u16::try_from(top).expect("at most 12 bits remain"))
    }

    /// The partition of `(bucket, key)`.
    pub fn partition_of(self, bucket: &[u8], key: &[u8]) -> PartitionId {
        self.partition_of_hash(key_hash(bucket, key))
    }

    /// Every partition, in order.
    pub fn partitions(self) -> impl Iterator<Item = PartitionId> {
        (0..self.count()).map(PartitionId)
    }
}

impl Default for Partitioning {
    fn default() -> Self {
        Self::new(PARTITIONS_DEFAULT).expect("the default is a valid count")
    }
}

impl TryFrom<u16> for Partitioning {
    type Error = ConfigError;

    fn try_from(count: u16) -> Result<Self, ConfigError> {
        Self::new(count)
    }
}

impl From<Partitioning> for u16 {
    fn from(partitioning: Partitioning) -> u16 {
        partitioning.count()
    }
}

/// The cluster's shape, fixed at creation: `Q` partitions of `n_max` replicas each.
/// Buckets choose their `n <= n_max`; they use the first `n` replicas of each set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawConfig", into = "RawConfig")]
pub struct LayoutConfig {
    partitions: Partitioning,
    replication: u8,
}

impl LayoutConfig {
    /// `partitions` partitions (a power of two up to [`PARTITIONS_MAX`]) of `replication`
    /// replicas each (1 to [`REPLICATION_MAX`]).
    pub fn new(partitions: u16, replication: u8) -> Result<Self, ConfigError> {
        if replication == 0 || replication > REPLICATION_MAX {
            return Err(ConfigError::Replication { replication });
        }
        Ok(Self {
            partitions: Partitioning::new(partitions)?,
            replication,
        })
    }

    /// How keys map to partitions.
    pub fn partitioning(self) -> Partitioning {
        self.partitions
    }

    /// `Q`.
    pub fn partitions(self) -> u16 {
        self.partitions.count()
    }

    /// `n_max`: the size of every partition's replica set.
    pub fn replication(self) -> u8 {
        self.replication
    }
}

impl Default for LayoutConfig {
    /// [`PARTITIONS_DEFAULT`] partitions of [`REPLICATION_DEFAULT`] replicas.
    fn default() -> Self {
        Self::new(PARTITIONS_DEFAULT, REPLICATION_DEFAULT).expect("the defaults are valid")
    }
}

#[derive(Serialize, Deserialize)]
struct RawConfig {
    partitions: u16,
    replication: u8,
}

impl TryFrom<RawConfig> for LayoutConfig {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Self, ConfigError> {
        Self::new(raw.partitions, raw.replication)
    }
}

impl From<LayoutConfig> for RawConfig {
    fn from(config: LayoutConfig) -> Self {
        Self {
            partitions: config.partitions(),
            replication: config.replication,
        }
    }
}

/// A cluster shape that [`LayoutConfig::new`] refuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The partition count is not a power of two between 1 and [`PARTITIONS_MAX`].
    #[error("the partition count must be a power of two from 1 to {PARTITIONS_MAX}, not {count}")]
    Partitions {
        /// The rejected count.
        count: u16,
    },
    /// The replication factor is not between 1 and [`REPLICATION_MAX`].
    #[error("the replication factor must be from 1 to {REPLICATION_MAX}, not {replication}")]
    Replication {
        /// The rejected factor.
        replication: u8,
    },
}
