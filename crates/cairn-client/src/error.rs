//! What can go wrong, as types a caller can match on.

use cairn_proto::client::{ErrorKind, ErrorReply};

/// A failed request.
///
/// Two errors are **indeterminate** for writes: [`Error::QuorumNotReached`] and
/// [`Error::Timeout`] (and [`Error::Indeterminate`]) mean the update may still be applied
/// by the replicas that received it. Reads can simply be retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Too few replicas answered in time.
    #[error("quorum not reached: {answered} answered ({primaries} primaries), {required} required ({primaries_required} primaries)")]
    QuorumNotReached {
        /// Replicas that answered.
        answered: u8,
        /// Replicas needed (`r` or `w`).
        required: u8,
        /// Primaries among those that answered.
        primaries: u8,
        /// Primaries needed (`pr` or `pw`).
        primaries_required: u8,
        /// The node's explanation.
        message: String,
    },
    /// The key holds another type than the operation is for.
    #[error("type mismatch: {0}")]
    TypeMismatch(String),
    /// A key, value or operation passes a bound.
    #[error("too large: {0}")]
    TooLarge(String),
    /// The operation was refused (a counter overflow).
    #[error("refused: {0}")]
    Refused(String),
    /// The request is malformed or its options cannot be met by the cluster.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// No node could serve the request (none reachable, none with a replica, starting).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The coordinator did not answer within the request's timeout.
    #[error("timed out")]
    Timeout,
    /// The request was sent but its answer was lost (the node went away): it may or may
    /// not have been applied. Not retried automatically, since a retry could apply it twice.
    #[error("indeterminate: {0}")]
    Indeterminate(String),
    /// The node's queue is full; back off and retry.
    #[error("overloaded: {0}")]
    Overloaded(String),
    /// The node's storage failed.
    #[error("storage: {0}")]
    Storage(String),
    /// The client could not be set up (certificates, addresses).
    #[error("configuration: {0}")]
    Config(String),
    /// A node answered with bytes this client cannot read (a version mismatch).
    #[error("protocol: {0}")]
    Protocol(String),
}

impl From<ErrorReply> for Error {
    fn from(e: ErrorReply) -> Self {
        let m = e.message;
        match e.kind {
            ErrorKind::QuorumNotReached => Error::QuorumNotReached {
                answered: e.answered,
                required: e.required,
                primaries: e.primaries,
                primaries_required: e.primaries_required,
                message: m,
            },
            ErrorKind::TypeMismatch => Error::TypeMismatch(m),
            ErrorKind::TooLarge => Error::TooLarge(m),
            ErrorKind::Refused => Error::Refused(m),
            ErrorKind::Invalid => Error::Invalid(m),
            ErrorKind::Timeout => Error::Timeout,
            ErrorKind::Overloaded => Error::Overloaded(m),
            ErrorKind::Storage => Error::Storage(m),
            _ => Error::Unavailable(m),
        }
    }
}

/// The crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
