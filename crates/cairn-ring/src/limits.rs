//! Every named bound of the ring (DESIGN.md §4.5: everything that grows has a limit).

/// The most partitions a cluster may have (`Q`): 2^12.
pub const PARTITIONS_MAX: u16 = 4096;

/// The default number of partitions: enough for clusters of up to a few dozen nodes
/// (Riak's rule of thumb: ten or more partitions per node).
pub const PARTITIONS_DEFAULT: u16 = 64;

/// The most replicas a partition may have (`n_max`).
pub const REPLICATION_MAX: u8 = 8;

/// The default number of replicas per partition.
pub const REPLICATION_DEFAULT: u8 = 3;

/// The most nodes a layout may hold. Placement solves a flow problem with one edge per
/// (partition, node) pair, so this bounds its time and memory: at `Q = 4096` with 255
/// nodes in 255 zones a placement takes about 2 s and 180 MB (release build; see
/// `examples/scale.rs`), at `Q = 256` with 32 nodes about 2 ms.
pub const NODES_MAX: usize = 256;

/// The longest zone name, in bytes.
pub const ZONE_LEN_MAX: usize = 64;

/// The longest node address, in bytes.
pub const ADDR_LEN_MAX: usize = 256;

/// How many older replica sets a partition may keep while its data moves: one per commit
/// made before the previous move was marked synced. A commit that would exceed it is
/// refused until the moves catch up.
pub const TRANSITION_DEPTH_MAX: usize = 4;
