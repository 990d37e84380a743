//! Cairn's convergent data types: every value a replica stores, and the rules by which
//! replicas merge them without coordination.
//!
//! This crate does no I/O, reads no clock and draws no random numbers: time comes in as a
//! [`Timestamp`] inside the [`Replica`] that applies an operation.
//!
//! # The model
//!
//! A client never sends a state. It sends an **operation** ([`Op`]) to a replica, which
//! applies it with *its own* [`Actor`] (one per replica incarnation, DESIGN.md §4.2) and
//! gets back a **delta**: a small value of the same type that, merged into any replica,
//! carries the operation's effect there. Full states and deltas merge the same way.
//!
//! ```
//! use cairn_crdt::{Actor, Crdt, Replica, Set, SetOp, Timestamp};
//!
//! let at = |a| Replica { actor: Actor(a), now: Timestamp::ZERO };
//! let (mut left, mut right) = (Set::default(), Set::default());
//!
//! // Two replicas take writes concurrently...
//! let delta = left.apply(&SetOp::Add(vec![b"rust".to_vec()]), at(1)).unwrap();
//! right.apply(&SetOp::Add(vec![b"crdt".to_vec()]), at(2)).unwrap();
//!
//! // ...then exchange a delta one way and the full state the other.
//! right.merge(&delta);
//! left.merge(&right);
//! assert_eq!(left, right);
//! assert_eq!(left.members().collect::<Vec<_>>(), [&b"crdt"[..], &b"rust"[..]]);
//!
//! // A remove carries the context the client read: it removes only what it saw.
//! let seen = left.context().clone();
//! left.apply(&SetOp::Remove { members: vec![b"rust".to_vec()], context: Some(seen) }, at(1))
//!     .unwrap();
//! assert!(!left.contains(b"rust"));
//! ```
//!
//! # Laws
//!
//! Every type implements [`Crdt`], whose merge is a join; [`laws`] checks that once,
//! generically, for property tests and fuzz targets alike.

mod causal;
mod counter;
mod dotstore;
mod error;
mod flag;
pub mod laws;
pub mod limits;
mod map;
mod mvreg;
mod register;
mod set;
mod value;

pub use causal::{Actor, CausalContext, Dot, InvalidState, VersionVector};
pub use counter::{Counter, CounterOp, PnEntry};
pub use dotstore::{DotFun, DotMap, DotSet};
pub use error::{ApplyError, CounterOverflow, TypeMismatch};
pub use flag::{Flag, FlagOp};
pub use limits::Bound;
pub use map::{Field, FieldKey, FieldOp, FieldType, FieldValue, Map, MapOp, PathStep};
pub use mvreg::{MvReg, MvRegOp};
pub use register::{ClockDrift, Hlc, LwwEntry, Register, RegisterOp, Timestamp};
pub use set::{Member, Set, SetOp, MEMBER_INLINE_BYTES};
pub use value::{Op, Value, ValueType};

/// The replica applying an operation: its actor and its hybrid-logical-clock reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Replica {
    /// The replica incarnation's actor.
    pub actor: Actor,
    /// Now, as the replica's [`Hlc`] reads it.
    pub now: Timestamp,
}

/// A convergent replicated data type with delta mutators.
///
/// # Laws
///
/// For all states `a`, `b`, `c` reachable by operations and merges:
/// - **commutative:** `a ⊔ b == b ⊔ a`;
/// - **associative:** `(a ⊔ b) ⊔ c == a ⊔ (b ⊔ c)`;
/// - **idempotent:** `a ⊔ a == a`;
/// - **delta:** if `apply(op)` (or `reset`) turns `a` into `a'` and returns `δ`, then
///   `a ⊔ δ == a'`.
///
/// Together they make replicas that have received the same deltas and states, in any
/// order, any number of times, equal. [`laws`] checks all of them.
pub trait Crdt: Clone + PartialEq + std::fmt::Debug + Default {
    /// The operations clients send.
    type Op;

    /// Joins `other` (a full state or a delta) into `self`.
    fn merge(&mut self, other: &Self);

    /// Applies `op` at `replica` and returns its delta. On error `self` is unchanged.
    fn apply(&mut self, op: &Self::Op, replica: Replica) -> Result<Self, ApplyError>;

    /// Removes everything this replica has observed (a delete) and returns the delta.
    /// Updates concurrent with the reset survive it, as with every observed remove.
    fn reset(&mut self, replica: Replica) -> Self;

    /// True when the value shows nothing: never written, or reset since its last update.
    /// A key whose value is bottom reads as not found.
    fn is_bottom(&self) -> bool;
}
