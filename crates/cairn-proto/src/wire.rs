//! Wire building blocks shared by every layout: borrowed byte strings, dots, causal
//! contexts, and the body reader that insists on exactly one canonical encoding.
//!
//! Wire structs are plain serde types with explicit integer widths (never `usize`); they
//! borrow from the value being encoded or from the bytes being decoded, so neither
//! direction copies member bytes twice.

use std::collections::BTreeSet;

use cairn_crdt::{Actor, CausalContext, Dot, VersionVector};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{invalid, DecodeError};

/// A byte string: a varint length, then the bytes. Borrowed from the input on decode.
///
/// Serde's `Vec<u8>` would write the same bytes but read them one element at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Bytes<'a>(pub(crate) &'a [u8]);

impl Serialize for Bytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Bytes<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <&'a [u8]>::deserialize(d).map(Bytes)
    }
}

impl Bytes<'_> {
    pub(crate) fn boxed(self) -> Box<[u8]> {
        self.0.into()
    }
}

/// An owned byte string with the crate's borrowed `Bytes` layout (a varint length, then the bytes), read
/// in one copy rather than element by element as serde's `Vec<u8>` would be. For the
/// message types of other crates (peer messages, the client protocol) that own their
/// fields. Decoding needs a borrowing deserializer (`postcard::from_bytes`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ByteBuf(pub Vec<u8>);

impl Serialize for ByteBuf {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for ByteBuf {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <&'de [u8]>::deserialize(d).map(|b| ByteBuf(b.to_vec()))
    }
}

impl std::ops::Deref for ByteBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<u8>> for ByteBuf {
    fn from(v: Vec<u8>) -> Self {
        ByteBuf(v)
    }
}

/// Serde adapter (`#[serde(with = "…")]`): a `Vec<u8>` field laid out as a [`ByteBuf`].
pub(crate) mod byte_vec {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the bytes as one byte string.
    pub(crate) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    /// Reads them in one copy.
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        super::ByteBuf::deserialize(d).map(|b| b.0)
    }
}

/// Serde adapter: an `Option<Vec<u8>>` field laid out as an `Option<ByteBuf>`.
pub(crate) mod opt_byte_vec {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// Writes the bytes, if any, as one byte string.
    pub(crate) fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        v.as_deref().map(serde_bytes_ref).serialize(s)
    }

    /// Reads them in one copy.
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<super::ByteBuf>::deserialize(d).map(|b| b.map(|b| b.0))
    }

    fn serde_bytes_ref(b: &[u8]) -> super::Bytes<'_> {
        super::Bytes(b)
    }
}

/// One dot: `(actor, counter)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct DotWire {
    pub(crate) actor: u64,
    pub(crate) counter: u64,
}

impl From<Dot> for DotWire {
    fn from(d: Dot) -> Self {
        DotWire {
            actor: d.actor.0,
            counter: d.counter,
        }
    }
}

impl From<DotWire> for Dot {
    fn from(d: DotWire) -> Self {
        Dot::new(Actor(d.actor), d.counter)
    }
}

/// Dots in order, as a wire list.
pub(crate) fn dots_wire(dots: impl Iterator<Item = Dot>) -> Vec<DotWire> {
    dots.map(DotWire::from).collect()
}

/// Wire dots back to dots (order is checked by the dot store that takes them).
pub(crate) fn dots(wire: &[DotWire]) -> Vec<Dot> {
    wire.iter().map(|&d| Dot::from(d)).collect()
}

/// A causal context: the version vector as sorted `(actor, counter)` pairs, then the dot
/// cloud in dot order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ContextWire {
    pub(crate) vv: Vec<(u64, u64)>,
    pub(crate) cloud: Vec<DotWire>,
}

impl From<&CausalContext> for ContextWire {
    fn from(ctx: &CausalContext) -> Self {
        ContextWire {
            vv: ctx.vv().iter().map(|(a, n)| (a.0, n)).collect(),
            cloud: dots_wire(ctx.cloud().iter().copied()),
        }
    }
}

impl TryFrom<&ContextWire> for CausalContext {
    type Error = DecodeError;

    fn try_from(wire: &ContextWire) -> Result<Self, DecodeError> {
        let vv = VersionVector::from_sorted(wire.vv.iter().map(|&(a, n)| (Actor(a), n)).collect())?;
        // A `BTreeSet` would quietly sort and deduplicate; the bytes must already be canonical.
        if !strictly_increasing(&wire.cloud) {
            return Err(invalid("causal context cloud not sorted and unique"));
        }
        let cloud: BTreeSet<Dot> = wire.cloud.iter().map(|&d| Dot::from(d)).collect();
        Ok(CausalContext::from_parts(vv, cloud)?)
    }
}

/// An optional context, as operations carry one.
pub(crate) fn context_opt(
    wire: Option<&ContextWire>,
) -> Result<Option<CausalContext>, DecodeError> {
    wire.map(CausalContext::try_from).transpose()
}

/// Whether `items` is sorted with no duplicates.
pub(crate) fn strictly_increasing<T: Ord>(items: &[T]) -> bool {
    items.windows(2).all(|w| w[0] < w[1])
}

/// Appends the postcard encoding of `wire` to `out`.
pub(crate) fn write_body<T: Serialize>(wire: &T, out: Vec<u8>) -> Vec<u8> {
    postcard::to_extend(wire, out)
        .expect("postcard writes into a Vec without error: every sequence has a known length")
}

/// Reads a whole body as `T`, refusing leftovers and non-canonical varints.
///
/// Postcard accepts a varint written in more bytes than needed (`80 00` for 0). Every
/// other choice in a body is fixed by the layout, so the body is canonical exactly when
/// re-encoding what was read takes as many bytes as were given: measuring is cheaper than
/// comparing.
pub(crate) fn read_body<'a, T>(body: &'a [u8]) -> Result<T, DecodeError>
where
    T: Deserialize<'a> + Serialize,
{
    let (wire, rest) = postcard::take_from_bytes::<T>(body)?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes { count: rest.len() });
    }
    let size = postcard::serialize_with_flavor(&wire, postcard::ser_flavors::Size::default())?;
    if size != body.len() {
        return Err(DecodeError::Malformed(
            postcard::Error::DeserializeBadVarint,
        ));
    }
    Ok(wire)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlong_varint_is_refused() {
        let canonical: Vec<u8> = postcard::to_allocvec(&(0u64, 5u32)).unwrap();
        assert_eq!(read_body::<(u64, u32)>(&canonical), Ok((0, 5)));
        assert_eq!(
            read_body::<(u64, u32)>(&[0x80, 0x00, 0x05]),
            Err(DecodeError::Malformed(
                postcard::Error::DeserializeBadVarint
            ))
        );
    }

    #[test]
    fn bytes_match_serde_vec_layout() {
        let ours = postcard::to_allocvec(&Bytes(b"abc")).unwrap();
        let serde_vec = postcard::to_allocvec(&b"abc".to_vec()).unwrap();
        assert_eq!(ours, serde_vec);
        let owned = postcard::to_allocvec(&ByteBuf(b"abc".to_vec())).unwrap();
        assert_eq!(owned, serde_vec);
        assert_eq!(postcard::from_bytes::<ByteBuf>(&owned).unwrap().0, b"abc");
    }
}
