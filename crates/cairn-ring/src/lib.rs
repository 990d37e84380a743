//! Cairn's ring: which nodes hold which keys.
//!
//! This crate does no I/O, reads no clock and draws no random numbers; everything it
//! computes is a function of its inputs, identical on every node.
//!
//! # The model
//!
//! - A key `(bucket, key)` hashes ([`key_hash`], XXH3-64 with a length-prefixed bucket)
//!   to one of `Q` **partitions** (a power of two, default 64, at most 4096, fixed when
//!   the cluster is created): the top `log2(Q)` bits of the hash.
//! - A [`Layout`] lists the nodes (address, [`Zone`], [`Capacity`]) and gives each
//!   partition an ordered **replica set** of `n_max` distinct nodes that spans
//!   `min(n_max, zones)` zones, with each node's share of slots proportional to its
//!   capacity (at most one slot per partition per node). Placement is a minimum-cost
//!   flow that keeps as many of the previous version's slots as possible (see
//!   [`assign`] for the algorithm and its guarantees).
//! - Changes are **staged** ([`Layout::stage_node`], [`Layout::stage_remove`], ...),
//!   shown by [`Layout::plan`] (what moves), and made a new [`LayoutVersion`] by
//!   [`Layout::commit`]. Layouts **merge** as a CRDT for gossip: the higher version
//!   wins, staged changes merge per node by last-writer-wins.
//! - The named decisions: [`Layout::partition_of`], [`Layout::replicas`],
//!   [`Layout::preference_list`] (primaries with health, then fallbacks),
//!   [`Layout::write_sets`] and [`Layout::read_set`] (while a partition's data moves,
//!   DESIGN.md §4.6), [`Layout::mark_synced`].
//!
//! ```
//! use cairn_ring::{Capacity, Layout, LayoutConfig, NodeId, NodeRole, Zone};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut layout = Layout::new(LayoutConfig::new(64, 3)?);
//! let admin = NodeId(1);
//! for (id, zone) in [(1, "dc-a"), (2, "dc-b"), (3, "dc-c")] {
//!     let role = NodeRole::new(format!("10.0.0.{id}:7070"), Zone::new(zone)?, Capacity(100));
//!     layout.stage_node(NodeId(id), role, admin)?;
//! }
//! let plan = layout.commit()?;
//! assert_eq!(plan.moved_slots(), 64 * 3);
//!
//! // Every key lives on three nodes, one per zone.
//! let p = layout.partition_of(b"users", b"alice");
//! assert_eq!(layout.replicas(p).len(), 3);
//!
//! // A fourth node takes a quarter of the slots; only those move.
//! let role = NodeRole::new("10.0.0.4:7070", Zone::new("dc-a")?, Capacity(100));
//! layout.stage_node(NodeId(4), role, admin)?;
//! let plan = layout.plan()?;
//! assert_eq!(plan.moved_slots(), 32); // dc-a's 64 slots, now shared by nodes 1 and 4
//! layout.commit()?;
//!
//! // Moved partitions take writes on their old and new sets until marked synced.
//! let moving: Vec<_> = layout.moving_partitions().collect();
//! assert_eq!(moving.len(), 32);
//! assert_eq!(layout.write_sets(moving[0]).sets().count(), 2);
//! layout.mark_synced(moving[0]);
//! assert_eq!(layout.write_sets(moving[0]).sets().count(), 1);
//!
//! // With node 2 down, its replica's writes go to a fallback with a hint.
//! let prefs = layout.preference_list(p, 3, |node| node != NodeId(2));
//! assert!(prefs.sloppy_targets().iter().all(|t| t.node != NodeId(2)));
//! # Ok(())
//! # }
//! ```

pub mod assign;
mod error;
mod flow;
mod ids;
mod layout;
pub mod limits;
mod node;
mod partition;
mod preference;
pub mod quota;
mod stage;

pub use error::{ConfigMismatch, InvalidLayout, PlanError, StageError};
pub use ids::{Capacity, InvalidZone, LayoutVersion, NodeId, PartitionId, Zone};
pub use layout::{Layout, PartitionMove, Plan, WriteSets};
pub use node::NodeRole;
pub use partition::{key_hash, ConfigError, LayoutConfig, Partitioning};
pub use preference::{PreferenceList, Primary, Target};
pub use stage::{NodeChange, Stage, Staged, Stamp};
