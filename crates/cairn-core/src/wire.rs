//! Peer messages as bytes: [`encode_peer`] and [`decode_peer`].
//!
//! The transport carries these bytes inside its frames (`proto-docs/framing.md`); this
//! module only turns a [`PeerMessage`] into a postcard body and back. Values and operations
//! inside a message use `cairn-proto`'s versioned envelopes, so a value has the same bytes
//! on the wire as on disk. Decoding is total: any input gives a message or a
//! [`WireError`], never a panic, and nothing is allocated beyond a constant factor of the
//! input (postcard bounds every length by the bytes left).
//!
//! The body starts with [`WIRE_VERSION`]; a peer that sends another version is refused
//! with [`WireError::Version`], which names both.

use cairn_crdt::limits::Bound;
use cairn_crdt::{ApplyError, TypeMismatch, ValueType};
use cairn_ring::{Layout, NodeId, PartitionId};
use serde::{Deserialize, Serialize};

use crate::msg::{ClientError, ClientOp, ClientReply, ClientRequest, PeerMessage, ReplicaError};
use crate::options::{InvalidOptions, Quorum, RequestOptions};
use crate::store::{ObjectKey, StoreError};
use crate::RequestId;

/// Quorums travel in the client protocol's spelling.
use cairn_proto::client::Quorum as WireQuorum;

/// The version of the peer message layout; the first byte of every encoded message.
pub const WIRE_VERSION: u8 = 1;

/// Why bytes are not a peer message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// No bytes.
    #[error("empty message")]
    Empty,
    /// The sender speaks another layout version.
    #[error("peer message version {found}, this node reads version {supported}")]
    Version {
        /// The version byte found.
        found: u8,
        /// The version this build reads.
        supported: u8,
    },
    /// The body does not parse.
    #[error("malformed peer message: {0}")]
    Malformed(String),
}

/// Encodes `msg` with its sender's id.
pub fn encode_peer(from: NodeId, msg: &PeerMessage) -> Vec<u8> {
    let wire = Envelope {
        from: from.0,
        msg: WireMsg::from_msg(msg),
    };
    // Serialising plain data into a Vec cannot fail; a bare version byte would be
    // refused by the receiver, which is the right outcome should it ever happen.
    postcard::to_extend(&wire, vec![WIRE_VERSION]).unwrap_or_else(|_| vec![WIRE_VERSION])
}

/// Decodes a message and the id its sender gave.
pub fn decode_peer(bytes: &[u8]) -> Result<(NodeId, PeerMessage), WireError> {
    let (&version, body) = bytes.split_first().ok_or(WireError::Empty)?;
    if version != WIRE_VERSION {
        return Err(WireError::Version {
            found: version,
            supported: WIRE_VERSION,
        });
    }
    let envelope: Envelope = postcard::from_bytes(body).map_err(malformed)?;
    Ok((NodeId(envelope.from), envelope.msg.into_msg()?))
}

fn malformed(e: impl std::fmt::Display) -> WireError {
    WireError::Malformed(e.to_string())
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    from: u64,
    msg: WireMsg,
}

use cairn_proto::ByteBuf as Bytes;

/// The serde mirror of [`PeerMessage`]; values and ops travel as `cairn-proto` bytes.
#[derive(Serialize, Deserialize)]
enum WireMsg {
    Forward {
        id: u64,
        request: WireRequest,
    },
    ForwardReply {
        id: u64,
        result: Result<WireReply, WireClientError>,
    },
    Replicate {
        id: Option<u64>,
        key: WireKey,
        value: Bytes,
        hint_for: Option<u64>,
    },
    ReplicateAck {
        id: u64,
        result: Result<(), WireReplicaError>,
    },
    Read {
        id: u64,
        key: WireKey,
        hint_for: Option<u64>,
    },
    AaeRoot {
        id: u64,
        partition: u16,
        root: u64,
    },
    AaeRootReply {
        id: u64,
        partition: u16,
        in_sync: bool,
    },
    AaeBranches {
        id: u64,
        partition: u16,
        branches: Vec<u64>,
    },
    AaeSegments {
        id: u64,
        partition: u16,
        branches: Vec<u16>,
        segments: Vec<(u16, u64)>,
    },
    AaeKeys {
        id: u64,
        partition: u16,
        segments: Vec<u16>,
        after: Option<WireKey>,
        keys: Vec<(WireKey, u64)>,
    },
    AaeRepair {
        key: WireKey,
        value: Bytes,
    },
    AaeFetch {
        id: u64,
        keys: Vec<WireKey>,
        complete: bool,
        next: Option<WireKey>,
    },
    Reap {
        key: WireKey,
        state_hash: u64,
    },
    Gossip {
        layout: Box<Layout>,
        beats: Vec<(u64, u64, u64)>,
    },
    Ping,
    Pong,
    ReadReply {
        id: u64,
        result: Result<Option<Bytes>, WireReplicaError>,
    },
}

#[derive(Serialize, Deserialize)]
struct WireKey {
    partition: u16,
    bucket: Bytes,
    key: Bytes,
}

#[derive(Serialize, Deserialize)]
struct WireRequest {
    bucket: Bytes,
    key: Bytes,
    op: WireOp,
    options: WireOptions,
}

#[derive(Serialize, Deserialize)]
enum WireOp {
    Update(Bytes),
    Read,
    Delete,
    /// An update answered with an acknowledgement only (`RequestOptions::ack_only`). A
    /// variant of its own rather than a field of the options, so that every other message
    /// keeps the bytes older peers decode.
    Apply(Bytes),
}

#[derive(Serialize, Deserialize)]
struct WireOptions {
    n: Option<u8>,
    r: Option<WireQuorum>,
    w: Option<WireQuorum>,
    pr: Option<WireQuorum>,
    pw: Option<WireQuorum>,
    timeout_ms: Option<u64>,
}

#[derive(Serialize, Deserialize)]
enum WireReply {
    Value(Option<Bytes>),
    Deleted,
    Applied,
}

#[derive(Serialize, Deserialize)]
enum WireClientError {
    QuorumNotReached {
        answered: u8,
        required: u8,
        primaries: u8,
        primaries_required: u8,
    },
    TypeMismatch {
        expected: u8,
        found: u8,
    },
    CounterOverflow,
    TooLarge {
        bound: u8,
        size: u64,
        max: u64,
    },
    DotsExhausted,
    InvalidOptions(String),
    InvalidKey(String),
    Unavailable(String),
    Store(WireStoreError),
}

#[derive(Serialize, Deserialize)]
enum WireReplicaError {
    TypeMismatch { expected: u8, found: u8 },
    Store(WireStoreError),
    WrongPartition,
    HintBacklogFull { count: u64, bytes: u64 },
    Syncing,
}

#[derive(Serialize, Deserialize)]
enum WireStoreError {
    Io(String),
    Corrupt(String),
}

// --- To the wire ---

impl WireMsg {
    fn from_msg(msg: &PeerMessage) -> WireMsg {
        match msg {
            PeerMessage::Forward { id, request } => WireMsg::Forward {
                id: id.0,
                request: WireRequest::from_request(request),
            },
            PeerMessage::ForwardReply { id, result } => WireMsg::ForwardReply {
                id: id.0,
                result: match result {
                    Ok(reply) => Ok(WireReply::from_reply(reply)),
                    Err(e) => Err(WireClientError::from_error(e)),
                },
            },
            PeerMessage::Replicate {
                id,
                key,
                value,
                hint_for,
            } => WireMsg::Replicate {
                id: id.map(|i| i.0),
                key: WireKey::from_key(key),
                value: cairn_proto::encode_value(value).into(),
                hint_for: hint_for.map(|n| n.0),
            },
            PeerMessage::ReplicateAck { id, result } => WireMsg::ReplicateAck {
                id: id.0,
                result: result
                    .as_ref()
                    .map(|_| ())
                    .map_err(WireReplicaError::from_error),
            },
            PeerMessage::Read { id, key, hint_for } => WireMsg::Read {
                id: id.0,
                key: WireKey::from_key(key),
                hint_for: hint_for.map(|n| n.0),
            },
            PeerMessage::AaeRoot {
                id,
                partition,
                root,
            } => WireMsg::AaeRoot {
                id: id.0,
                partition: partition.0,
                root: *root,
            },
            PeerMessage::AaeRootReply {
                id,
                partition,
                in_sync,
            } => WireMsg::AaeRootReply {
                id: id.0,
                partition: partition.0,
                in_sync: *in_sync,
            },
            PeerMessage::AaeBranches {
                id,
                partition,
                branches,
            } => WireMsg::AaeBranches {
                id: id.0,
                partition: partition.0,
                branches: branches.clone(),
            },
            PeerMessage::AaeSegments {
                id,
                partition,
                branches,
                segments,
            } => WireMsg::AaeSegments {
                id: id.0,
                partition: partition.0,
                branches: branches.clone(),
                segments: segments.clone(),
            },
            PeerMessage::AaeKeys {
                id,
                partition,
                segments,
                after,
                keys,
            } => WireMsg::AaeKeys {
                id: id.0,
                partition: partition.0,
                segments: segments.clone(),
                after: after.as_ref().map(WireKey::from_key),
                keys: keys
                    .iter()
                    .map(|(k, h)| (WireKey::from_key(k), *h))
                    .collect(),
            },
            PeerMessage::AaeRepair { key, value } => WireMsg::AaeRepair {
                key: WireKey::from_key(key),
                value: cairn_proto::encode_value(value).into(),
            },
            PeerMessage::AaeFetch {
                id,
                keys,
                complete,
                next,
            } => WireMsg::AaeFetch {
                id: id.0,
                keys: keys.iter().map(WireKey::from_key).collect(),
                complete: *complete,
                next: next.as_ref().map(WireKey::from_key),
            },
            PeerMessage::Reap { key, state_hash } => WireMsg::Reap {
                key: WireKey::from_key(key),
                state_hash: *state_hash,
            },
            PeerMessage::Gossip { layout, beats } => WireMsg::Gossip {
                layout: layout.clone(),
                beats: beats.iter().map(|(n, g, b)| (n.0, *g, *b)).collect(),
            },
            PeerMessage::Ping => WireMsg::Ping,
            PeerMessage::Pong => WireMsg::Pong,
            PeerMessage::ReadReply { id, result } => WireMsg::ReadReply {
                id: id.0,
                result: match result {
                    Ok(value) => Ok(value.as_ref().map(|v| cairn_proto::encode_value(v).into())),
                    Err(e) => Err(WireReplicaError::from_error(e)),
                },
            },
        }
    }
}

impl WireKey {
    fn from_key(key: &ObjectKey) -> WireKey {
        WireKey {
            partition: key.partition.0,
            bucket: key.bucket.to_vec().into(),
            key: key.key.to_vec().into(),
        }
    }
}

impl WireRequest {
    fn from_request(r: &ClientRequest) -> WireRequest {
        let o = &r.options;
        WireRequest {
            bucket: r.bucket.to_vec().into(),
            key: r.key.to_vec().into(),
            op: match &r.op {
                ClientOp::Update(op) if o.ack_only => {
                    WireOp::Apply(cairn_proto::encode_op(op).into())
                }
                ClientOp::Update(op) => WireOp::Update(cairn_proto::encode_op(op).into()),
                ClientOp::Read => WireOp::Read,
                ClientOp::Delete => WireOp::Delete,
            },
            options: WireOptions {
                n: o.n,
                r: o.r.map(WireQuorum::from),
                w: o.w.map(WireQuorum::from),
                pr: o.pr.map(WireQuorum::from),
                pw: o.pw.map(WireQuorum::from),
                timeout_ms: o.timeout_ms,
            },
        }
    }
}

impl WireReply {
    fn from_reply(reply: &ClientReply) -> WireReply {
        match reply {
            ClientReply::Value(v) => {
                WireReply::Value(v.as_ref().map(|v| cairn_proto::encode_value(v).into()))
            }
            ClientReply::Deleted => WireReply::Deleted,
            ClientReply::Applied => WireReply::Applied,
        }
    }
}

fn type_index(t: ValueType) -> u8 {
    let index = ValueType::ALL.iter().position(|&x| x == t).unwrap_or(0);
    u8::try_from(index).unwrap_or(0)
}

/// Every bound, in a fixed order: the wire names a bound by its index here.
const BOUNDS: [Bound; 9] = [
    Bound::MemberBytes,
    Bound::SetMembers,
    Bound::MapFields,
    Bound::MapDepth,
    Bound::FieldNameBytes,
    Bound::RegisterBytes,
    Bound::Siblings,
    Bound::DeferredRemoves,
    Bound::OpItems,
];

impl WireClientError {
    fn from_error(e: &ClientError) -> WireClientError {
        match e {
            ClientError::QuorumNotReached {
                answered,
                required,
                primaries,
                primaries_required,
            } => WireClientError::QuorumNotReached {
                answered: *answered,
                required: *required,
                primaries: *primaries,
                primaries_required: *primaries_required,
            },
            ClientError::TypeMismatch(t) => WireClientError::TypeMismatch {
                expected: type_index(t.expected),
                found: type_index(t.found),
            },
            ClientError::Refused(a) => Self::from_apply(a),
            ClientError::InvalidOptions(o) => WireClientError::InvalidOptions(o.0.clone()),
            ClientError::InvalidKey(why) => WireClientError::InvalidKey((*why).to_owned()),
            ClientError::Unavailable(why) => WireClientError::Unavailable((*why).to_owned()),
            ClientError::Store(s) => WireClientError::Store(WireStoreError::from_error(s)),
        }
    }

    fn from_apply(a: &ApplyError) -> WireClientError {
        match a {
            ApplyError::CounterOverflow => WireClientError::CounterOverflow,
            ApplyError::TooLarge { bound, size, max } => WireClientError::TooLarge {
                bound: BOUNDS
                    .iter()
                    .position(|b| b == bound)
                    .and_then(|i| u8::try_from(i).ok())
                    .unwrap_or(0),
                size: *size as u64,
                max: *max as u64,
            },
            ApplyError::DotsExhausted => WireClientError::DotsExhausted,
            ApplyError::TypeMismatch(t) => WireClientError::TypeMismatch {
                expected: type_index(t.expected),
                found: type_index(t.found),
            },
            other => WireClientError::Unavailable(other.to_string()),
        }
    }
}

impl WireReplicaError {
    fn from_error(e: &ReplicaError) -> WireReplicaError {
        match e {
            ReplicaError::TypeMismatch(t) => WireReplicaError::TypeMismatch {
                expected: type_index(t.expected),
                found: type_index(t.found),
            },
            ReplicaError::Store(s) => WireReplicaError::Store(WireStoreError::from_error(s)),
            ReplicaError::WrongPartition => WireReplicaError::WrongPartition,
            ReplicaError::HintBacklogFull { count, bytes } => WireReplicaError::HintBacklogFull {
                count: *count,
                bytes: *bytes,
            },
            ReplicaError::Syncing => WireReplicaError::Syncing,
        }
    }
}

impl WireStoreError {
    fn from_error(e: &StoreError) -> WireStoreError {
        match e {
            StoreError::Io(s) => WireStoreError::Io(s.clone()),
            StoreError::Corrupt(s) => WireStoreError::Corrupt(s.clone()),
        }
    }
}

// --- From the wire ---

fn value(bytes: &[u8]) -> Result<cairn_crdt::Value, WireError> {
    cairn_proto::decode_value(bytes).map_err(malformed)
}

fn partition(p: u16) -> Result<PartitionId, WireError> {
    // The layout decides which partitions exist; the node checks the key's hash against
    // the partition it names (ReplicaError::WrongPartition), so any u16 is accepted here.
    Ok(PartitionId(p))
}

impl WireMsg {
    fn into_msg(self) -> Result<PeerMessage, WireError> {
        Ok(match self {
            WireMsg::Forward { id, request } => PeerMessage::Forward {
                id: RequestId(id),
                request: request.into_request()?,
            },
            WireMsg::ForwardReply { id, result } => PeerMessage::ForwardReply {
                id: RequestId(id),
                result: match result {
                    Ok(reply) => Ok(reply.into_reply()?),
                    Err(e) => Err(e.into_error()?),
                },
            },
            WireMsg::Replicate {
                id,
                key,
                value: v,
                hint_for,
            } => PeerMessage::Replicate {
                id: id.map(RequestId),
                key: key.into_key()?,
                value: value(&v)?,
                hint_for: hint_for.map(NodeId),
            },
            WireMsg::ReplicateAck { id, result } => PeerMessage::ReplicateAck {
                id: RequestId(id),
                result: match result {
                    Ok(()) => Ok(()),
                    Err(e) => Err(e.into_error()?),
                },
            },
            WireMsg::Read { id, key, hint_for } => PeerMessage::Read {
                id: RequestId(id),
                key: key.into_key()?,
                hint_for: hint_for.map(NodeId),
            },
            WireMsg::AaeRoot {
                id,
                partition: p,
                root,
            } => PeerMessage::AaeRoot {
                id: RequestId(id),
                partition: partition(p)?,
                root,
            },
            WireMsg::AaeRootReply {
                id,
                partition: p,
                in_sync,
            } => PeerMessage::AaeRootReply {
                id: RequestId(id),
                partition: partition(p)?,
                in_sync,
            },
            WireMsg::AaeBranches {
                id,
                partition: p,
                branches,
            } => PeerMessage::AaeBranches {
                id: RequestId(id),
                partition: partition(p)?,
                branches,
            },
            WireMsg::AaeSegments {
                id,
                partition: p,
                branches,
                segments,
            } => PeerMessage::AaeSegments {
                id: RequestId(id),
                partition: partition(p)?,
                branches,
                segments,
            },
            WireMsg::AaeKeys {
                id,
                partition: p,
                segments,
                after,
                keys,
            } => PeerMessage::AaeKeys {
                id: RequestId(id),
                partition: partition(p)?,
                segments,
                after: after.map(WireKey::into_key).transpose()?,
                keys: keys
                    .into_iter()
                    .map(|(k, h)| Ok((k.into_key()?, h)))
                    .collect::<Result<_, WireError>>()?,
            },
            WireMsg::AaeRepair { key, value: v } => PeerMessage::AaeRepair {
                key: key.into_key()?,
                value: value(&v)?,
            },
            WireMsg::AaeFetch {
                id,
                keys,
                complete,
                next,
            } => PeerMessage::AaeFetch {
                id: RequestId(id),
                keys: keys
                    .into_iter()
                    .map(WireKey::into_key)
                    .collect::<Result<_, _>>()?,
                complete,
                next: next.map(WireKey::into_key).transpose()?,
            },
            WireMsg::Reap { key, state_hash } => PeerMessage::Reap {
                key: key.into_key()?,
                state_hash,
            },
            WireMsg::Gossip { layout, beats } => PeerMessage::Gossip {
                layout,
                beats: beats
                    .into_iter()
                    .map(|(n, g, b)| (NodeId(n), g, b))
                    .collect(),
            },
            WireMsg::Ping => PeerMessage::Ping,
            WireMsg::Pong => PeerMessage::Pong,
            WireMsg::ReadReply { id, result } => PeerMessage::ReadReply {
                id: RequestId(id),
                result: match result {
                    Ok(v) => Ok(v.as_deref().map(value).transpose()?),
                    Err(e) => Err(e.into_error()?),
                },
            },
        })
    }
}

impl WireKey {
    fn into_key(self) -> Result<ObjectKey, WireError> {
        Ok(ObjectKey {
            partition: partition(self.partition)?,
            bucket: self.bucket.0.into_boxed_slice(),
            key: self.key.0.into_boxed_slice(),
        })
    }
}

impl WireRequest {
    fn into_request(self) -> Result<ClientRequest, WireError> {
        let o = self.options;
        let q = |q: Option<WireQuorum>| q.map(Quorum::from);
        let ack_only = matches!(self.op, WireOp::Apply(_));
        Ok(ClientRequest {
            bucket: self.bucket.0.into_boxed_slice(),
            key: self.key.0.into_boxed_slice(),
            op: match self.op {
                WireOp::Update(bytes) | WireOp::Apply(bytes) => {
                    ClientOp::Update(cairn_proto::decode_op(&bytes).map_err(malformed)?)
                }
                WireOp::Read => ClientOp::Read,
                WireOp::Delete => ClientOp::Delete,
            },
            options: RequestOptions {
                n: o.n,
                r: q(o.r),
                w: q(o.w),
                pr: q(o.pr),
                pw: q(o.pw),
                timeout_ms: o.timeout_ms,
                ack_only,
            },
        })
    }
}

impl WireReply {
    fn into_reply(self) -> Result<ClientReply, WireError> {
        Ok(match self {
            WireReply::Value(v) => ClientReply::Value(v.as_deref().map(value).transpose()?),
            WireReply::Deleted => ClientReply::Deleted,
            WireReply::Applied => ClientReply::Applied,
        })
    }
}

fn value_type(index: u8) -> Result<ValueType, WireError> {
    ValueType::ALL
        .get(usize::from(index))
        .copied()
        .ok_or_else(|| WireError::Malformed(format!("unknown value type {index}")))
}

fn mismatch(expected: u8, found: u8) -> Result<TypeMismatch, WireError> {
    Ok(TypeMismatch {
        expected: value_type(expected)?,
        found: value_type(found)?,
    })
}

/// The reasons this build gives for `Unavailable` and `InvalidKey`. A reason from another
/// build that is not among them arrives as [`UNKNOWN_REASON`].
const REASONS: &[&str] = &[
    "too many forwards to remember",
    "the node is starting",
    "no layout is committed yet",
    "too many requests in flight",
    "forwarded to a node that holds no replica",
    "no replica is reachable",
    "this fallback's hint backlog is full",
    "the coordinator did not answer in time",
    "bucket must be 1..=256 bytes",
    "key must be 1..=1024 bytes",
];

/// What a reason this build does not know becomes.
pub const UNKNOWN_REASON: &str = "refused by a peer (reason unknown to this version)";

fn reason(text: &str) -> &'static str {
    REASONS
        .iter()
        .find(|r| **r == text)
        .copied()
        .unwrap_or(UNKNOWN_REASON)
}

fn usize_of(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

impl WireClientError {
    fn into_error(self) -> Result<ClientError, WireError> {
        Ok(match self {
            WireClientError::QuorumNotReached {
                answered,
                required,
                primaries,
                primaries_required,
            } => ClientError::QuorumNotReached {
                answered,
                required,
                primaries,
                primaries_required,
            },
            WireClientError::TypeMismatch { expected, found } => {
                ClientError::TypeMismatch(mismatch(expected, found)?)
            }
            WireClientError::CounterOverflow => ClientError::Refused(ApplyError::CounterOverflow),
            WireClientError::TooLarge { bound, size, max } => {
                let bound = BOUNDS
                    .get(usize::from(bound))
                    .copied()
                    .ok_or_else(|| WireError::Malformed(format!("unknown bound {bound}")))?;
                ClientError::Refused(ApplyError::TooLarge {
                    bound,
                    size: usize_of(size),
                    max: usize_of(max),
                })
            }
            WireClientError::DotsExhausted => ClientError::Refused(ApplyError::DotsExhausted),
            WireClientError::InvalidOptions(s) => ClientError::InvalidOptions(InvalidOptions(s)),
            WireClientError::InvalidKey(s) => ClientError::InvalidKey(reason(&s)),
            WireClientError::Unavailable(s) => ClientError::Unavailable(reason(&s)),
            WireClientError::Store(s) => ClientError::Store(s.into_error()),
        })
    }
}

impl WireReplicaError {
    fn into_error(self) -> Result<ReplicaError, WireError> {
        Ok(match self {
            WireReplicaError::TypeMismatch { expected, found } => {
                ReplicaError::TypeMismatch(mismatch(expected, found)?)
            }
            WireReplicaError::Store(s) => ReplicaError::Store(s.into_error()),
            WireReplicaError::WrongPartition => ReplicaError::WrongPartition,
            WireReplicaError::HintBacklogFull { count, bytes } => {
                ReplicaError::HintBacklogFull { count, bytes }
            }
            WireReplicaError::Syncing => ReplicaError::Syncing,
        })
    }
}

impl WireStoreError {
    fn into_error(self) -> StoreError {
        match self {
            WireStoreError::Io(s) => StoreError::Io(s),
            WireStoreError::Corrupt(s) => StoreError::Corrupt(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_crdt::{Actor, Counter, CounterOp, Crdt, Op, Replica, Timestamp, Value};
    use cairn_ring::LayoutConfig;

    fn key() -> ObjectKey {
        ObjectKey {
            partition: PartitionId(3),
            bucket: b"b".as_slice().into(),
            key: b"k".as_slice().into(),
        }
    }

    fn counter() -> Value {
        let mut c = Counter::default();
        let at = Replica {
            actor: Actor(9),
            now: Timestamp::ZERO,
        };
        c.apply(&CounterOp::Increment(5), at).unwrap();
        Value::Counter(c)
    }

    fn samples() -> Vec<PeerMessage> {
        let request = ClientRequest {
            bucket: b"likes".as_slice().into(),
            key: b"post".as_slice().into(),
            op: ClientOp::Update(Op::Counter(CounterOp::Increment(2))),
            options: RequestOptions {
                w: Some(Quorum::Count(2)),
                timeout_ms: Some(500),
                ..Default::default()
            },
        };
        let quorum = ClientError::QuorumNotReached {
            answered: 1,
            required: 2,
            primaries: 1,
            primaries_required: 0,
        };
        let ack_only = ClientRequest {
            options: RequestOptions {
                ack_only: true,
                ..request.options
            },
            ..request.clone()
        };
        vec![
            PeerMessage::Forward {
                id: RequestId(1),
                request,
            },
            PeerMessage::Forward {
                id: RequestId(4),
                request: ack_only,
            },
            PeerMessage::ForwardReply {
                id: RequestId(1),
                result: Ok(ClientReply::Value(Some(counter()))),
            },
            PeerMessage::ForwardReply {
                id: RequestId(4),
                result: Ok(ClientReply::Applied),
            },
            PeerMessage::ForwardReply {
                id: RequestId(2),
                result: Err(quorum),
            },
            PeerMessage::ForwardReply {
                id: RequestId(3),
                result: Err(ClientError::Unavailable("no replica is reachable")),
            },
            PeerMessage::ForwardReply {
                id: RequestId(4),
                result: Err(ClientError::Refused(ApplyError::TooLarge {
                    bound: Bound::OpItems,
                    size: 5000,
                    max: 4096,
                })),
            },
            PeerMessage::Replicate {
                id: Some(RequestId(5)),
                key: key(),
                value: counter(),
                hint_for: Some(NodeId(7)),
            },
            PeerMessage::ReplicateAck {
                id: RequestId(5),
                result: Err(ReplicaError::HintBacklogFull { count: 1, bytes: 2 }),
            },
            PeerMessage::Read {
                id: RequestId(6),
                key: key(),
                hint_for: None,
            },
            PeerMessage::ReadReply {
                id: RequestId(6),
                result: Ok(None),
            },
            PeerMessage::ReadReply {
                id: RequestId(6),
                result: Err(ReplicaError::Syncing),
            },
            PeerMessage::AaeSegments {
                id: RequestId(8),
                partition: PartitionId(1),
                branches: vec![1, 2],
                segments: vec![(4, 5)],
            },
            PeerMessage::AaeKeys {
                id: RequestId(8),
                partition: PartitionId(1),
                segments: vec![4],
                after: Some(key()),
                keys: vec![(key(), 77)],
            },
            PeerMessage::AaeFetch {
                id: RequestId(8),
                keys: vec![key()],
                complete: true,
                next: Some(key()),
            },
            PeerMessage::Gossip {
                layout: Box::new(Layout::new(LayoutConfig::new(16, 3).unwrap())),
                beats: vec![(NodeId(1), 2, 3)],
            },
            PeerMessage::Ping,
            PeerMessage::Pong,
        ]
    }

    #[test]
    fn every_sample_round_trips() {
        for msg in samples() {
            let bytes = encode_peer(NodeId(42), &msg);
            assert_eq!(decode_peer(&bytes), Ok((NodeId(42), msg)));
        }
    }

    #[test]
    fn other_versions_and_garbage_are_typed_errors() {
        assert_eq!(decode_peer(&[]), Err(WireError::Empty));
        assert_eq!(
            decode_peer(&[9, 0]),
            Err(WireError::Version {
                found: 9,
                supported: WIRE_VERSION
            })
        );
        let bytes = encode_peer(NodeId(1), &samples()[5]);
        for cut in 1..bytes.len() {
            assert!(decode_peer(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    proptest::proptest! {
        #[test]
        fn decoding_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let mut input = vec![WIRE_VERSION];
            input.extend_from_slice(&bytes);
            let _ = decode_peer(&input);
        }
    }
}
