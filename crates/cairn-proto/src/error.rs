//! Why bytes did not decode.

use std::fmt;

use cairn_crdt::InvalidState;

/// The family of things an encoding can hold, named by the envelope's kind tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// A state or delta ([`cairn_crdt::Value`]): tags 1 to 6.
    Value,
    /// An operation ([`cairn_crdt::Op`]): tags 16 to 21.
    Op,
    /// A causal context ([`cairn_crdt::CausalContext`]): tag 32.
    Context,
}

impl Kind {
    /// The family a kind tag belongs to, if any.
    pub fn of_tag(tag: u8) -> Option<Kind> {
        match tag {
            1..=6 => Some(Kind::Value),
            16..=21 => Some(Kind::Op),
            32 => Some(Kind::Context),
            _ => None,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Value => "a value",
            Kind::Op => "an operation",
            Kind::Context => "a causal context",
        })
    }
}

/// Why bytes did not decode. Every input gives a value or one of these, never a panic.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// There were no bytes at all.
    #[error("empty input")]
    Empty,
    /// The first byte names a format version this build cannot read.
    #[error("unknown format version {found} (this build reads version {supported})")]
    UnknownVersion {
        /// The version byte found.
        found: u8,
        /// The version this build reads.
        supported: u8,
    },
    /// The kind tag is not one of the family asked for (a value's bytes given to
    /// [`crate::decode_op`], say), or is no known tag at all.
    #[error("wrong kind: expected {expected}, found tag {found} ({})", describe(*.found))]
    WrongKind {
        /// What the caller asked to decode.
        expected: Kind,
        /// The kind tag found.
        found: u8,
    },
    /// The body is truncated, is not postcard for the expected layout, or writes a varint
    /// in more bytes than needed (see `proto-docs/encoding.md`, "Canonical form").
    #[error("malformed body: {0}")]
    Malformed(postcard::Error),
    /// The body decoded but bytes were left over.
    #[error("{count} trailing bytes after the body")]
    TrailingBytes {
        /// How many bytes were left.
        count: usize,
    },
    /// The body parsed but describes a state that breaks an invariant, or is not written
    /// in the one canonical way.
    #[error(transparent)]
    Invalid(#[from] InvalidState),
}

impl From<postcard::Error> for DecodeError {
    fn from(e: postcard::Error) -> Self {
        DecodeError::Malformed(e)
    }
}

/// Shorthand for the invariant errors the decoders themselves find.
pub(crate) fn invalid(why: &'static str) -> DecodeError {
    DecodeError::Invalid(InvalidState(why))
}

fn describe(tag: u8) -> String {
    match Kind::of_tag(tag) {
        Some(kind) => kind.to_string(),
        None => "unknown".to_string(),
    }
}
