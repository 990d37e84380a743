//! The Cairn node as a state machine: it coordinates requests with quorums, applies and
//! merges replicas, repairs what reads find stale, keeps hints for nodes that are down and
//! hands them back — all without I/O.
//!
//! A driver (the server, or the simulator) feeds a [`Node`] its inputs — client requests,
//! peer messages, timer ticks, and notice that staged writes are durable — and carries out
//! its outputs: messages to peers and replies to clients. Time enters as `now_ms`
//! arguments; storage sits behind the [`Store`] trait, whose failure contract is written on
//! the trait. [`MemStore`] keeps staged writes apart from durable ones, so a simulated
//! crash loses exactly what a real one may.
//!
//! ```
//! use cairn_core::{ClientOp, ClientReply, ClientRequest, ClientTag, Config, MemStore, Node, Output};
//! use cairn_crdt::{CounterOp, Op, Value};
//! use cairn_ring::{Capacity, Layout, LayoutConfig, NodeId, NodeRole, Zone};
//!
//! // A one-node cluster with one replica per key.
//! let mut layout = Layout::new(LayoutConfig::new(16, 1).unwrap());
//! let role = NodeRole::new("127.0.0.1:7000", Zone::new("local").unwrap(), Capacity(1));
//! layout.stage_node(NodeId(1), role, NodeId(1)).unwrap();
//! layout.commit().unwrap();
//! let mut bucket = cairn_core::BucketProps::default();
//! bucket.n = 1;
//! let mut config = Config::new(NodeId(1), 42);
//! config.bucket_props = bucket;
//! let mut node = Node::new(config, layout, MemStore::new(), 0).unwrap();
//! // A node coordinates nothing until its new generation is durable.
//! let started = node.store_mut().commit();
//! node.handle_persisted(0, &started);
//! let request = ClientRequest {
//!     bucket: b"likes".as_slice().into(),
//!     key: b"post:1".as_slice().into(),
//!     op: ClientOp::Update(Op::Counter(CounterOp::Increment(1))),
//!     options: Default::default(),
//! };
//! node.handle_client(0, ClientTag(7), request);
//! // Nothing is acknowledged before the store says the write is durable.
//! assert!(node.poll_output().is_none());
//! let durable = node.store_mut().commit();
//! node.handle_persisted(1, &durable);
//! match node.poll_output() {
//!     Some(Output::Reply { tag, result: Ok(ClientReply::Value(Some(Value::Counter(c)))) }) => {
//!         assert_eq!(tag, ClientTag(7));
//!         assert_eq!(c.value(), Ok(1));
//!     }
//!     other => panic!("unexpected {other:?}"),
//! }
//! ```

pub mod aae;
mod msg;
mod node;
mod options;
mod placement;
mod store;
mod values;
pub mod wire;

pub use msg::{
    ClientError, ClientOp, ClientReply, ClientRequest, ClientTag, Output, PeerMessage,
    ReplicaError, RequestId, BUCKET_BYTES_MAX, KEY_BYTES_MAX,
};
pub use node::{AaeStats, Config, Node, AAE_KEYS_MAX, AAE_SEGMENTS_MAX, SYNC_EXCHANGES_MAX};
pub use options::{
    BucketProps, InvalidOptions, Quorum, RequestOptions, Resolved, N_MAX, TIMEOUT_MS_MAX,
};
pub use placement::{targets, Target};
pub use store::{aae_order, Backlog, MemStore, NodeMeta, ObjectKey, Store, StoreError, WriteToken};
pub use values::{join_into, join_values, visible};
