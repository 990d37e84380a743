//! Errors of applying an operation or merging values.

use crate::limits::Bound;
use crate::value::ValueType;

/// Why an operation was refused. The state is unchanged when this is returned.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// A counter's value would leave the `i64` range.
    #[error("counter overflow: the value would leave the i64 range")]
    CounterOverflow,
    /// The operation would pass a named bound.
    #[error("{bound} too large: {size} > {max}")]
    TooLarge {
        /// Which bound.
        bound: Bound,
        /// The size the operation asked for.
        size: usize,
        /// The bound's value.
        max: usize,
    },
    /// The coordinating actor has used every dot counter (only hostile state gets here).
    #[error("the actor has no dot counters left")]
    DotsExhausted,
    /// The operation is for another type than the value's.
    #[error(transparent)]
    TypeMismatch(#[from] TypeMismatch),
}

/// An operation or state of one type met a value of another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("type mismatch: the value is a {found}, the request is for a {expected}")]
pub struct TypeMismatch {
    /// The type the request is for.
    pub expected: ValueType,
    /// The type the stored value has.
    pub found: ValueType,
}

/// A counter's value left the `i64` range (concurrent increments can do that).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("counter overflow: the value is outside the i64 range")]
pub struct CounterOverflow;

impl From<CounterOverflow> for ApplyError {
    fn from(_: CounterOverflow) -> Self {
        ApplyError::CounterOverflow
    }
}
