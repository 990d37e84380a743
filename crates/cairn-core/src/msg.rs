//! The node's vocabulary: what clients ask, what peers tell each other, what comes back.
//!
//! These are plain values. The simulator passes them as they are; the transport (a later
//! issue) encodes them with `cairn-proto`'s codecs. Every collection in them is bounded by
//! the frame it arrives in and by the limits in `cairn_crdt::limits`.

use cairn_crdt::{ApplyError, Op, TypeMismatch, Value};
use cairn_ring::{Layout, NodeId, PartitionId};

use crate::options::{InvalidOptions, RequestOptions};
use crate::store::{ObjectKey, StoreError};

/// Tags a client request so its reply can find its way back; chosen by the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientTag(pub u64);

/// Names one request a node coordinates or forwarded; unique within that node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// Largest bucket name, in bytes.
pub const BUCKET_BYTES_MAX: usize = 256;
/// Largest key, in bytes.
pub const KEY_BYTES_MAX: usize = 1024;

/// What a client asks of a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientOp {
    /// Apply an operation; the reply carries the value after it.
    Update(Op),
    /// Read the value.
    Read,
    /// Delete what the replicas read by the delete have observed (a causal tombstone).
    Delete,
}

/// A client's request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientRequest {
    /// The bucket.
    pub bucket: Box<[u8]>,
    /// The key.
    pub key: Box<[u8]>,
    /// What to do.
    pub op: ClientOp,
    /// Per-request overrides of the bucket's options.
    pub options: RequestOptions,
}

/// A successful answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientReply {
    /// The value (after the update, for updates); `None` when not found or deleted.
    Value(Option<Value>),
    /// A delete was acknowledged.
    Deleted,
    /// An update asked to be answered without its value
    /// ([`RequestOptions::ack_only`](crate::RequestOptions::ack_only)) was acknowledged.
    Applied,
}

/// Why a request failed. `QuorumNotReached` after a write means *indeterminate*: the
/// update may still be applied by the replicas that did receive it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Too few replicas answered in time.
    #[error("quorum not reached: {answered} answered ({primaries} primaries), {required} required ({primaries_required} primaries)")]
    QuorumNotReached {
        /// Replicas that answered successfully.
        answered: u8,
        /// How many were needed.
        required: u8,
        /// Primaries among those that answered.
        primaries: u8,
        /// Primaries needed.
        primaries_required: u8,
    },
    /// The operation does not fit the key's type.
    #[error(transparent)]
    TypeMismatch(#[from] TypeMismatch),
    /// The operation was refused (a bound, an overflow).
    #[error("operation refused: {0}")]
    Refused(ApplyError),
    /// The options cannot be satisfied.
    #[error(transparent)]
    InvalidOptions(#[from] InvalidOptions),
    /// The bucket or key is empty or too long.
    #[error("invalid key: {0}")]
    InvalidKey(&'static str),
    /// No node that could serve the request is reachable.
    #[error("unavailable: {0}")]
    Unavailable(&'static str),
    /// The coordinator's storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ApplyError> for ClientError {
    fn from(e: ApplyError) -> Self {
        match e {
            ApplyError::TypeMismatch(t) => ClientError::TypeMismatch(t),
            other => ClientError::Refused(other),
        }
    }
}

/// A replica's failure to serve a peer request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplicaError {
    /// The stored value has another type.
    #[error(transparent)]
    TypeMismatch(#[from] TypeMismatch),
    /// The replica's storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The key does not hash to the partition the message names.
    #[error("the key does not belong to the partition named")]
    WrongPartition,
    /// The replica keeps as many hints as its bounds allow and stands in for no new key.
    #[error("hint backlog full ({count} hints, {bytes} bytes)")]
    HintBacklogFull {
        /// Hints kept.
        count: u64,
        /// Their bytes.
        bytes: u64,
    },
    /// The replica's store started empty and has not yet synced this partition with the
    /// other replicas, so its copy may lack acknowledged writes: it counts toward no read
    /// quorum (DESIGN.md §4; docs/decisions/replica-sync-after-store-loss.md).
    #[error("the replica is syncing this partition after starting with an empty store")]
    Syncing,
}

/// What nodes send each other.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerMessage {
    /// A client request handed to a node that can coordinate it.
    Forward {
        /// The sender's id for the forward.
        id: RequestId,
        /// The request.
        request: ClientRequest,
    },
    /// The coordinator's answer to a forward.
    ForwardReply {
        /// The forward's id at its sender.
        id: RequestId,
        /// The answer.
        result: Result<ClientReply, ClientError>,
    },
    /// Merge `value` (a delta or a full state) into the replica of `key`; with `hint_for`,
    /// keep it as a hint for that node instead. `id` is `None` for repairs nobody waits on.
    Replicate {
        /// The coordinator's request, when it waits for an acknowledgement.
        id: Option<RequestId>,
        /// The object.
        key: ObjectKey,
        /// The delta or state.
        value: Value,
        /// The intended owner, when the receiver stands in for it.
        hint_for: Option<NodeId>,
    },
    /// The value of a `Replicate` is durable at the sender (or failed).
    ReplicateAck {
        /// The coordinator's request.
        id: RequestId,
        /// Durable, or why not.
        result: Result<(), ReplicaError>,
    },
    /// Send back your replica of `key` (or your hint for `hint_for`).
    Read {
        /// The coordinator's request.
        id: RequestId,
        /// The object.
        key: ObjectKey,
        /// The owner whose hint to read, when the receiver stands in for it.
        hint_for: Option<NodeId>,
    },
    /// Anti-entropy, step 0: the sender's root hash of `partition`.
    AaeRoot {
        /// The exchange.
        id: RequestId,
        /// The partition both replicate.
        partition: PartitionId,
        /// The root hash.
        root: u64,
    },
    /// Whether the roots agree (if not, the exchange goes on with `AaeBranches`).
    AaeRootReply {
        /// The exchange.
        id: RequestId,
        /// The partition.
        partition: PartitionId,
        /// The roots are equal: nothing to repair.
        in_sync: bool,
    },
    /// Anti-entropy, step 1: the sender's branch hashes of `partition`.
    AaeBranches {
        /// The exchange.
        id: RequestId,
        /// The partition both replicate.
        partition: PartitionId,
        /// `aae::BRANCHES` hashes.
        branches: Vec<u64>,
    },
    /// Step 2: the segment hashes of the branches that differ (none: in sync).
    AaeSegments {
        /// The exchange.
        id: RequestId,
        /// The partition.
        partition: PartitionId,
        /// The differing branches.
        branches: Vec<u16>,
        /// `(segment, hash)` for every non-empty segment of those branches (most segments
        /// of a lightly loaded partition are empty, so they are left out).
        segments: Vec<(u16, u64)>,
    },
    /// Step 3: the sender's keys and state hashes in the segments that differ, in
    /// [`aae_order`](crate::store::aae_order) after `after`.
    AaeKeys {
        /// The exchange.
        id: RequestId,
        /// The partition.
        partition: PartitionId,
        /// The differing segments.
        segments: Vec<u16>,
        /// Where the list starts (exclusive): the `next` of the pair's last exchange, so
        /// successive exchanges walk the differing keys however many there are.
        after: Option<ObjectKey>,
        /// `(key, state hash)`, at most `AAE_KEYS_MAX`.
        keys: Vec<(ObjectKey, u64)>,
    },
    /// Step 4: the sender's state of a key the receiver holds differently; the receiver
    /// merges it and sends back the join if it held something the sender lacked.
    AaeRepair {
        /// The object.
        key: ObjectKey,
        /// The sender's state.
        value: Value,
    },
    /// Step 4: send me your states of these keys; the exchange is over when it arrives.
    AaeFetch {
        /// The exchange.
        id: RequestId,
        /// Keys the receiver holds differently or alone.
        keys: Vec<ObjectKey>,
        /// The sender held nothing the receiver lacks in the segments compared: the
        /// lists started at the first key, neither was cut at `AAE_KEYS_MAX`, and the
        /// sender sent no repair.
        complete: bool,
        /// The last key compared, when a list was cut: the pair's next exchange lists
        /// keys after it. `None`: the keys after `after` were compared to the end.
        next: Option<ObjectKey>,
    },
    /// Remove the tombstone at `key` if its state still hashes to `state_hash`.
    Reap {
        /// The object.
        key: ObjectKey,
        /// The tombstone's state hash.
        state_hash: u64,
    },
    /// The sender's layout, to merge (gossip).
    Gossip {
        /// The layout.
        layout: Box<Layout>,
        /// `(node, generation, heartbeat)` for every node the sender has heard of.
        beats: Vec<(NodeId, u64, u64)>,
    },
    /// Are you there? (Sent to nodes believed down.)
    Ping,
    /// Yes.
    Pong,
    /// A replica's answer to `Read`; `None` is not-found (it counts toward `r`).
    ReadReply {
        /// The coordinator's request.
        id: RequestId,
        /// The replica, or why it could not be read.
        result: Result<Option<Value>, ReplicaError>,
    },
}

/// What a node asks its driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Send a message to a peer.
    Send {
        /// The receiver.
        to: NodeId,
        /// The message.
        msg: PeerMessage,
    },
    /// Answer a client.
    Reply {
        /// The tag the driver gave the request.
        tag: ClientTag,
        /// The answer.
        result: Result<ClientReply, ClientError>,
    },
}
