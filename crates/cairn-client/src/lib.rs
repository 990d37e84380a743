//! The Rust SDK for [Cairn]: counters, sets, maps and registers that replicas merge on
//! the server, so your program never writes conflict code.
//!
//! The client speaks Cairn's native protocol (QUIC, ALPN `cairn-client/1`, mutual TLS
//! with the cluster's CA) to any node; the node coordinates the request with the replicas.
//!
//! # Connecting
//!
//! Give the client one or more nodes' QUIC addresses, the cluster CA and a client
//! certificate (`cairn cert client`; `cairn dev` writes one to `cairn-dev/client/`). It
//! learns the other nodes from the first that answers.
//!
//! ```
//! use cairn_client::{Client, Options, Quorum};
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let node = cairn_server::testing::LocalNode::start()?;
//! # let (addr, ca, cert, key) = (node.quic().to_string(), node.ca_cert(), node.client_cert(), node.client_key());
//! let client = Client::builder()
//!     .nodes([addr])                   // e.g. "127.0.0.1:7000"
//!     .ca_cert(ca)                     // e.g. "cairn-dev/ca/ca.pem"
//!     .client_cert(cert, key)          // e.g. "cairn-dev/client/client.pem", "…-key.pem"
//!     .build()
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! # Counters
//!
//! Increments from any number of clients and nodes add up; no read-modify-write.
//!
//! ```
//! # use cairn_client::Client;
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let node = cairn_server::testing::LocalNode::start()?;
//! # let client = Client::builder().nodes([node.quic()]).ca_cert(node.ca_cert()).client_cert(node.client_cert(), node.client_key()).build().await?;
//! let likes = client.counter("likes", "post:1");
//! assert_eq!(likes.increment(1).await?, 1);
//! assert_eq!(likes.increment(41).await?, 42);
//! assert_eq!(likes.get().await?, 42);
//! # Ok(()) }
//! ```
//!
//! # Sets
//!
//! Adds win over concurrent removes. A remove takes the value you read, so it removes
//! only what you saw: a member someone else added meanwhile stays.
//!
//! ```
//! # use cairn_client::Client;
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let node = cairn_server::testing::LocalNode::start()?;
//! # let client = Client::builder().nodes([node.quic()]).ca_cert(node.ca_cert()).client_cert(node.client_cert(), node.client_key()).build().await?;
//! let tags = client.set("posts", "post:1:tags");
//! tags.add_all(["rust", "crdt", "draft"]).await?;
//! let seen = tags.members().await?;
//! let after = tags.remove(&seen, ["draft"]).await?;
//! assert_eq!(after.strings(), ["crdt", "rust"]);
//! // When you do not need the set back (it may be large), insert: the node answers with
//! // an acknowledgement only.
//! tags.insert("review").await?;
//! assert!(tags.members().await?.contains("review"));
//! # Ok(()) }
//! ```
//!
//! # Maps
//!
//! A map holds counters, sets, registers, flags and maps; one update changes any of
//! them at once.
//!
//! ```
//! # use cairn_client::Client;
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let node = cairn_server::testing::LocalNode::start()?;
//! # let client = Client::builder().nodes([node.quic()]).ca_cert(node.ca_cert()).client_cert(node.client_cert(), node.client_key()).build().await?;
//! let post = client.map("posts", "post:1");
//! let value = post
//!     .update(|m| {
//!         m.counter("views").increment(1);
//!         m.set("tags").add("rust");
//!         m.register("title").assign("Hello, Cairn");
//!         m.flag("published").enable();
//!     })
//!     .await?;
//! assert_eq!(value.counter("views"), 1);
//! assert_eq!(value.register("title").as_deref(), Some(b"Hello, Cairn".as_slice()));
//! assert!(value.flag("published"));
//! # Ok(()) }
//! ```
//!
//! # Registers, flags, multi-value registers
//!
//! A register keeps the last write (by a hybrid logical clock: a write that starts after
//! another was acknowledged wins). A multi-value register keeps concurrent writes as
//! siblings for you to resolve; the next write passes back the value it read.
//!
//! ```
//! # use cairn_client::Client;
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let node = cairn_server::testing::LocalNode::start()?;
//! # let client = Client::builder().nodes([node.quic()]).ca_cert(node.ca_cert()).client_cert(node.client_cert(), node.client_key()).build().await?;
//! client.register("sessions", "s1").assign("alice").await?;
//! assert_eq!(client.register("sessions", "s1").get_string().await?.as_deref(), Some("alice"));
//! assert!(client.flag("features", "dark-mode").enable().await?);
//! let cart = client.mvreg("carts", "bob");
//! let first = cart.overwrite("apple").await?;
//! let second = cart.assign(&first, "apple,pear").await?;
//! assert_eq!(second.siblings, [b"apple,pear".to_vec()]);
//! # Ok(()) }
//! ```
//!
//! # Options and errors
//!
//! `r`, `w`, `pr`, `pw` and the timeout can be set for the client
//! ([`ClientBuilder::options`]) or per call (`.with(...)` on a handle). Errors are
//! [`Error`] values: [`Error::QuorumNotReached`] names how many replicas answered.
//!
//! ```
//! # use cairn_client::{Client, Error, Options, Quorum};
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let node = cairn_server::testing::LocalNode::start()?;
//! # let client = Client::builder().nodes([node.quic()]).ca_cert(node.ca_cert()).client_cert(node.client_cert(), node.client_key()).build().await?;
//! let strict = Options::new().w(Quorum::All).timeout(std::time::Duration::from_secs(2));
//! client.counter("likes", "post:2").with(strict).increment(1).await?;
//! // A one-node cluster cannot give three replicas:
//! let three = client.counter("likes", "post:2").with(Options::new().w(Quorum::Count(3)));
//! assert!(matches!(three.increment(1).await, Err(Error::Invalid(_))));
//! // The key is a counter, not a set:
//! assert!(matches!(client.set("likes", "post:2").add("x").await, Err(Error::TypeMismatch(_))));
//! # Ok(()) }
//! ```
//!
//! # Failover and retries
//!
//! The client keeps a connection to each node it uses. When a node cannot be reached
//! (the connection fails before the request is sent), or turns a request away before
//! applying anything ([`Error::Unavailable`], [`Error::Overloaded`]: starting, stopping,
//! full, no replica reachable), any request goes to the next node, which then serves
//! the client's later requests too. Once a request has been sent, only **reads** are
//! retried elsewhere: a lost answer to a write is [`Error::Indeterminate`], because
//! sending an increment again could count it twice. Writes whose repetition is harmless
//! (set adds, register assigns) can be retried by the caller. A read whose connection
//! broke after it left (a restarted node resets its old connections) is first sent once
//! more to the same node on a new connection, then to the next.
//!
//! A client built with [`ClientBuilder::pinned`] keeps to the nodes it was given: it
//! does not learn the others, so it fails over only among those.
//!
//! [Cairn]: https://example.invalid/cairn

mod batch;
mod client;
mod error;
mod handles;

pub use batch::{BatchItem, BatchOp};
pub use cairn_crdt::{FieldKey, FieldType, FieldValue, Value};
pub use client::{Client, ClientBuilder, Options, Quorum, NODES_MAX};
pub use error::{Error, Result};
pub use handles::{
    Counter, CounterField, Flag, FlagField, Map, MapUpdate, MapValue, MvReg, MvValue, Register,
    RegisterField, Set, SetField, SetValue,
};
