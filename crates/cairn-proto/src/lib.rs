//! Cairn's versioned encodings of convergent values, operations and causal contexts.
//!
//! Every encoding is an **envelope** — a format version byte, a kind tag byte — followed
//! by a [postcard] body laid out for that kind, with nothing after it:
//!
//! ```text
//! +---------+-----+----------------------------+
//! | version | tag | postcard body (no trailer) |
//! +---------+-----+----------------------------+
//!   1 byte   1 byte
//! ```
//!
//! | tag    | holds                                                            |
//! |--------|------------------------------------------------------------------|
//! | 1..=6  | a state or delta ([`Value`]): counter, set, map, register, flag, mvreg |
//! | 16..=21| an operation ([`Op`]) on the same types, in the same order       |
//! | 32     | a causal context ([`CausalContext`])                             |
//!
//! `proto-docs/encoding.md` draws each layout byte by byte.
//!
//! ```
//! use cairn_crdt::{Actor, Crdt, Replica, Set, SetOp, Timestamp, Value};
//! use cairn_proto::{decode_value, encode_value, DecodeError, FORMAT_VERSION};
//!
//! let mut set = Set::default();
//! let at = Replica { actor: Actor(1), now: Timestamp::ZERO };
//! set.apply(&SetOp::Add(vec![b"rust".to_vec()]), at).unwrap();
//!
//! let bytes = encode_value(&Value::Set(set.clone()));
//! assert_eq!(bytes[..2], [FORMAT_VERSION, 2]); // version 1, tag 2: a set
//! assert_eq!(decode_value(&bytes), Ok(Value::Set(set)));
//!
//! // Bad bytes are typed errors, never panics.
//! assert_eq!(decode_value(&[]), Err(DecodeError::Empty));
//! assert!(matches!(decode_value(&bytes[..5]), Err(DecodeError::Malformed(_))));
//! ```
//!
//! # What decoding guarantees
//!
//! - **Total.** Any input gives a value or a [`DecodeError`]: no panic, no recursion that
//!   input can deepen (no wire type is recursive; nested map fields and nested map updates
//!   are flat lists), no allocation beyond a constant factor of the input's length.
//! - **Validating.** Values are rebuilt through `cairn-crdt`'s checking constructors
//!   (`Set::from_parts` and friends), so a decoded value keeps every invariant its type
//!   promises; a body that parses but breaks one is [`DecodeError::Invalid`].
//! - **Canonical.** Each value has exactly one encoding and the decoder refuses every
//!   other spelling (unsorted lists, overlong varints, non-maximal shared prefixes), so
//!   `encode(decode(b)) == b` whenever `decode(b)` succeeds. Equal values have equal bytes,
//!   which anti-entropy hashes rely on.
//!
//! Decoding does not apply `cairn_crdt::limits`: those bound what a client may make grow,
//! and repair and handoff must move any state they are given (DESIGN.md §4.7). Decoders
//! are bounded by the frame they read from.
//!
//! # Compatibility
//!
//! [`FORMAT_VERSION`] is 1. A change to any layout takes a new version byte; a reader of
//! version 2 keeps the version-1 decoders and picks by the first byte, while writers keep
//! writing version 1 until every node reads 2 (see `proto-docs/crdt-laws.md`).

pub mod client;
mod error;
mod map;
mod op;
mod set;
mod value;
mod wire;

use cairn_crdt::{CausalContext, Op, Value};

pub use error::{DecodeError, Kind};
pub use set::SHARED_PREFIX_MAX;
pub use wire::ByteBuf;

/// The version of every layout in this crate; byte 0 of every encoding.
pub const FORMAT_VERSION: u8 = 1;

/// The kind tag of a causal context.
const CONTEXT_TAG: u8 = 32;
/// Operation tags are value tags plus this.
const OP_TAG_OFFSET: u8 = 15;

/// Encodes a state or delta.
pub fn encode_value(v: &Value) -> Vec<u8> {
    encode_value_after(Vec::new(), v)
}

/// [`encode_value`], appended to `out` (a caller's header, say), so that the encoding
/// need not be copied behind it.
pub fn encode_value_after(mut out: Vec<u8>, v: &Value) -> Vec<u8> {
    // One allocation for a small value, where growing from the header's size took two or
    // three (session 25, one node batched: with `CounterOut`, encoding fell from 9.0% to
    // 6.9% of the I/O thread's samples).
    out.reserve(VALUE_RESERVE_BYTES);
    out.push(FORMAT_VERSION);
    out.push(value::tag(v.value_type()));
    value::encode(v, out)
}

/// Bytes [`encode_value_after`] makes room for before it writes: enough for any counter
/// of two actors and no reset floors (a two-byte header, a length byte per list, and at
/// most 30 bytes of varints per entry), and for most registers and flags. Larger values
/// grow the buffer from there.
pub const VALUE_RESERVE_BYTES: usize = 64;

/// Decodes a state or delta, checking every invariant of its type.
pub fn decode_value(bytes: &[u8]) -> Result<Value, DecodeError> {
    let (tag, body) = open(bytes)?;
    let ty = value::type_of_tag(tag, 0).ok_or(wrong(Kind::Value, tag))?;
    value::decode(ty, body)
}

/// Encodes an operation.
pub fn encode_op(op: &Op) -> Vec<u8> {
    let tag = value::tag(op.value_type()) + OP_TAG_OFFSET;
    op::encode(op, vec![FORMAT_VERSION, tag])
}

/// Decodes an operation. Map operations nested deeper than
/// [`cairn_crdt::limits::MAP_DEPTH_MAX`] (which no map would apply) are refused.
pub fn decode_op(bytes: &[u8]) -> Result<Op, DecodeError> {
    let (tag, body) = open(bytes)?;
    let ty = value::type_of_tag(tag, OP_TAG_OFFSET).ok_or(wrong(Kind::Op, tag))?;
    op::decode(ty, body)
}

/// Encodes a causal context, as a client passes back with a remove.
pub fn encode_context(ctx: &CausalContext) -> Vec<u8> {
    wire::write_body(
        &wire::ContextWire::from(ctx),
        vec![FORMAT_VERSION, CONTEXT_TAG],
    )
}

/// Decodes a causal context, refusing one that is not in compact canonical form.
pub fn decode_context(bytes: &[u8]) -> Result<CausalContext, DecodeError> {
    let (tag, body) = open(bytes)?;
    if tag != CONTEXT_TAG {
        return Err(wrong(Kind::Context, tag));
    }
    CausalContext::try_from(&wire::read_body::<wire::ContextWire>(body)?)
}

/// Checks the envelope and returns the kind tag and the body.
fn open(bytes: &[u8]) -> Result<(u8, &[u8]), DecodeError> {
    let (&version, rest) = bytes.split_first().ok_or(DecodeError::Empty)?;
    if version != FORMAT_VERSION {
        return Err(DecodeError::UnknownVersion {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let (&tag, body) = rest.split_first().ok_or(DecodeError::Malformed(
        postcard::Error::DeserializeUnexpectedEnd,
    ))?;
    Ok((tag, body))
}

fn wrong(expected: Kind, found: u8) -> DecodeError {
    DecodeError::WrongKind { expected, found }
}
