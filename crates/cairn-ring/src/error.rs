//! One error type per operation: staging a change, planning or committing a layout,
//! merging a peer's layout, decoding one.

use crate::limits::{ADDR_LEN_MAX, NODES_MAX, TRANSITION_DEPTH_MAX};
use crate::{LayoutConfig, NodeId, PartitionId};

/// A change [`Layout`](crate::Layout)'s `stage_*` methods refuse. The stage is unchanged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StageError {
    /// The node is neither in the layout nor staged, so it has no role to change.
    #[error("node {0} is not in the layout")]
    UnknownNode(NodeId),
    /// The node's address is longer than [`ADDR_LEN_MAX`] bytes.
    #[error("a node address must be at most {ADDR_LEN_MAX} bytes, not {len}")]
    AddressTooLong {
        /// The address's length in bytes.
        len: usize,
    },
    /// The stage already holds changes for [`NODES_MAX`] nodes.
    #[error("at most {NODES_MAX} nodes may have staged changes")]
    TooManyChanges,
}

/// Why a staged layout cannot be planned or committed. The layout is unchanged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// No node has a non-zero capacity.
    #[error("no node has any capacity")]
    NoCapacity,
    /// Fewer nodes with capacity than replicas per partition.
    #[error("{needed} replicas per partition need {needed} nodes with capacity, only {available} have any")]
    NotEnoughNodes {
        /// `n_max`.
        needed: u8,
        /// Nodes with a non-zero capacity.
        available: usize,
    },
    /// The staged layout would hold more than [`NODES_MAX`] nodes.
    #[error("a layout holds at most {NODES_MAX} nodes, the staged one has {nodes}")]
    TooManyNodes {
        /// Nodes in the staged layout.
        nodes: usize,
    },
    /// A partition already keeps [`TRANSITION_DEPTH_MAX`] older replica sets whose data
    /// has not been marked synced; commit again once its moves complete.
    #[error("partition {partition} still moves data from {TRANSITION_DEPTH_MAX} older layouts")]
    TransitionBacklog {
        /// The first such partition.
        partition: PartitionId,
    },
    /// Nothing is staged.
    #[error("nothing is staged")]
    NothingStaged,
    /// The layout version is `u64::MAX`.
    #[error("the layout version cannot grow")]
    VersionExhausted,
    /// The placement solver placed fewer slots than it must. The apportionment only
    /// produces placeable quotas, so this is a bug; it is an error rather than a panic
    /// because layouts arrive from peers.
    #[error("placement failed: placed {placed} of {needed} replica slots (a bug)")]
    Unplaceable {
        /// Slots placed.
        placed: u64,
        /// Slots needed: `Q x n_max`.
        needed: u64,
    },
}

/// A peer's layout for another cluster shape; [`Layout::merge`](crate::Layout::merge)
/// leaves ours unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot merge a layout of shape {theirs:?} into one of shape {ours:?}")]
pub struct ConfigMismatch {
    /// Our shape.
    pub ours: LayoutConfig,
    /// The peer's shape.
    pub theirs: LayoutConfig,
}

/// A decoded layout that breaks the layout's invariants.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid layout: {0}")]
pub struct InvalidLayout(pub(crate) &'static str);
