//! The compact set layout.
//!
//! A large set is mostly member bytes and one dot per member, so both are squeezed:
//!
//! - **members** are front-coded: each is written as the length of the prefix it shares
//!   with the member before it (at most [`SHARED_PREFIX_MAX`] bytes) and the rest;
//! - **dots** become one varint code each. The set's actors are listed once, sorted, and a
//!   dot is written as the index of its actor plus the zigzagged difference between its
//!   counter and the counter of the previous dot of the same actor (0 at first), with a
//!   low bit saying whether another dot of the same member follows:
//!
//!   `code = ((zigzag(counter - prev[actor]) * actors + index) << 1) | more`
//!
//!   Members added one after another by the same few actors have counters that step by
//!   small amounts in member order, so most codes fit one byte.
//!
//! Every choice is fixed (maximal shared prefix, listed actors exactly those used), so a
//! set has one encoding, and the decoder refuses any other.

use cairn_crdt::{Actor, CausalContext, Dot, DotSet, Member, Set};
use serde::ser::{SerializeSeq, SerializeStruct};
use serde::{Deserialize, Serialize, Serializer};

use crate::error::{invalid, DecodeError};
use crate::wire::{strictly_increasing, Bytes, ContextWire};

/// The longest prefix a member may share with the previous one, in bytes.
///
/// It bounds what a decoder builds from each member record (at most this many bytes more
/// than the record holds), so a hostile body cannot grow a member by its whole length at
/// every step. 127 keeps the length in one varint byte.
pub const SHARED_PREFIX_MAX: u32 = 127;

/// A set: context, actors, front-coded members, one code per dot, deferred removes.
#[derive(Serialize, Deserialize)]
pub(crate) struct SetWire<'a> {
    ctx: ContextWire,
    actors: Vec<u64>,
    #[serde(borrow)]
    members: Vec<(u32, Bytes<'a>)>,
    dots: Vec<u128>,
    #[serde(borrow)]
    deferred: Vec<(Bytes<'a>, ContextWire)>,
}

impl<'a> From<&'a Set> for SetWire<'a> {
    fn from(set: &'a Set) -> Self {
        let actors = all_actors_sorted(set);
        let deferred = set.deferred().map(|(m, c)| (Bytes(m), c.into()));
        SetWire {
            ctx: set.context().into(),
            members: front_code(set.entries().map(|(m, _)| m)),
            dots: dot_codes(set.entries().map(|(_, d)| d), &actors),
            actors,
            deferred: deferred.collect(),
        }
    }
}

/// A set as the encoder writes it: the bytes of [`SetWire`], serialized straight from the
/// set. Building a `SetWire` first costs two vectors as long as the set (member records
/// and dot codes) and a sort of every dot's actor; a node encodes a set on every write, so
/// this is most of that cost. `SetWire` stays the one definition of the layout: decoding
/// reads it, and a test checks that both write the same bytes.
pub(crate) struct SetOut<'a> {
    set: &'a Set,
    actors: Vec<u64>,
}

impl<'a> SetOut<'a> {
    pub(crate) fn new(set: &'a Set) -> Self {
        SetOut {
            set,
            actors: actors_of(set),
        }
    }
}

impl Serialize for SetOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let deferred: Vec<(Bytes<'_>, ContextWire)> = self
            .set
            .deferred()
            .map(|(m, c)| (Bytes(m), c.into()))
            .collect();
        let mut st = s.serialize_struct("SetWire", 5)?;
        st.serialize_field("ctx", &ContextWire::from(self.set.context()))?;
        st.serialize_field("actors", &self.actors)?;
        st.serialize_field("members", &FrontCoded(self.set))?;
        let codes = DotCodes {
            set: self.set,
            actors: &self.actors,
        };
        st.serialize_field("dots", &codes)?;
        st.serialize_field("deferred", &deferred)?;
        st.end()
    }
}

/// The members of a set as [`front_code`] records, serialized as they are made.
struct FrontCoded<'a>(&'a Set);

impl Serialize for FrontCoded<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        let mut prev: &[u8] = &[];
        for m in self.0.members() {
            let shared = common_prefix(prev, m);
            seq.serialize_element(&(shared, Bytes(&m[shared as usize..])))?;
            prev = m;
        }
        seq.end()
    }
}

/// The dots of a set as [`dot_codes`], serialized as they are made.
struct DotCodes<'a> {
    set: &'a Set,
    actors: &'a [u64],
}

impl Serialize for DotCodes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let count = self.set.entries().map(|(_, d)| d.len()).sum();
        let mut seq = s.serialize_seq(Some(count))?;
        let mut codes = Coder::new(self.actors);
        for (_, dots) in self.set.entries() {
            let mut it = dots.iter().peekable();
            while let Some(dot) = it.next() {
                let code = codes.code(dot, it.peek().is_some());
                // Postcard writes every unsigned integer as the same LEB128 varint, so a
                // code that fits 64 bits takes the cheaper u64 path to the same bytes.
                match u64::try_from(code) {
                    Ok(c) => seq.serialize_element(&c)?,
                    Err(_) => seq.serialize_element(&code)?,
                }
            }
        }
        seq.end()
    }
}

/// The set's actors, sorted, each once. Sets have few actors, so each new one is put in
/// place as found; past [`ACTORS_INSERTED_MAX`] that would be quadratic, and every dot's
/// actor is sorted instead.
fn actors_of(set: &Set) -> Vec<u64> {
    let mut actors: Vec<u64> = Vec::new();
    let mut last = None;
    for dot in set.entries().flat_map(|(_, dots)| dots.iter()) {
        let a = dot.actor.0;
        if last == Some(a) {
            continue;
        }
        last = Some(a);
        if let Err(i) = actors.binary_search(&a) {
            if actors.len() == ACTORS_INSERTED_MAX {
                return all_actors_sorted(set);
            }
            actors.insert(i, a);
        }
    }
    actors
}

/// Most actors [`actors_of`] inserts one by one.
const ACTORS_INSERTED_MAX: usize = 64;

fn all_actors_sorted(set: &Set) -> Vec<u64> {
    let mut actors: Vec<u64> = set
        .entries()
        .flat_map(|(_, dots)| dots.iter().map(|d| d.actor.0))
        .collect();
    actors.sort_unstable();
    actors.dedup();
    actors
}

/// Makes dot codes in member order (see the module docs).
struct Coder<'a> {
    actors: &'a [u64],
    prev: Vec<u64>,
    /// The last actor coded and its index: consecutive dots often share an actor.
    last: Option<(u64, usize)>,
}

impl<'a> Coder<'a> {
    fn new(actors: &'a [u64]) -> Self {
        Coder {
            actors,
            prev: vec![0; actors.len()],
            last: None,
        }
    }

    /// The code of `dot`, the next dot in member order; `more` when the same member has
    /// another dot after it.
    fn code(&mut self, dot: Dot, more: bool) -> u128 {
        let a = dot.actor.0;
        let index = match self.last {
            Some((la, i)) if la == a => i,
            _ => {
                let i = self
                    .actors
                    .binary_search(&a)
                    .expect("every actor of the set's dots is listed");
                self.last = Some((a, i));
                i
            }
        };
        let delta = dot.counter.wrapping_sub(self.prev[index]);
        self.prev[index] = dot.counter;
        // Fewer actors than dots, and fewer dots than fit in memory, so no product
        // overflows: zigzag < 2^64, actors < 2^60, shifted left by one < 2^125.
        let n = self.actors.len() as u128;
        let body = u128::from(zigzag(delta)) * n + index as u128;
        (body << 1) | u128::from(more)
    }
}

impl TryFrom<SetWire<'_>> for Set {
    type Error = DecodeError;

    fn try_from(wire: SetWire<'_>) -> Result<Self, DecodeError> {
        let members = front_decode(&wire.members)?;
        let dots = decode_dots(&wire.dots, &wire.actors, members.len())?;
        let entries = members.into_iter().zip(dots).collect();
        let deferred = wire
            .deferred
            .iter()
            .map(|(m, c)| Ok((Member::from_slice(m.0), CausalContext::try_from(c)?)))
            .collect::<Result<Vec<_>, DecodeError>>()?;
        Ok(Set::from_parts(entries, (&wire.ctx).try_into()?, deferred)?)
    }
}

/// Members, sorted, as `(shared prefix length, rest)` records.
fn front_code<'a>(members: impl Iterator<Item = &'a [u8]>) -> Vec<(u32, Bytes<'a>)> {
    let mut prev: &[u8] = &[];
    members
        .map(|m| {
            let shared = common_prefix(prev, m);
            prev = m;
            (shared, Bytes(&m[shared as usize..]))
        })
        .collect()
}

/// The length of the common prefix of `a` and `b`, capped at [`SHARED_PREFIX_MAX`].
fn common_prefix(a: &[u8], b: &[u8]) -> u32 {
    let same = a.iter().zip(b).take(SHARED_PREFIX_MAX as usize);
    let n = same.take_while(|(x, y)| x == y).count();
    u32::try_from(n).expect("capped at SHARED_PREFIX_MAX, a u32")
}

/// Rebuilds front-coded members, refusing anything but the canonical, increasing form.
fn front_decode(records: &[(u32, Bytes<'_>)]) -> Result<Vec<Member>, DecodeError> {
    let mut members: Vec<Member> = Vec::with_capacity(records.len());
    for &(shared, Bytes(rest)) in records {
        let prev: &[u8] = members.last().map_or(&[], |m| &**m);
        let n = usize::try_from(shared).unwrap_or(usize::MAX);
        if shared > SHARED_PREFIX_MAX || n > prev.len() {
            return Err(invalid(
                "set member shares more than the previous member holds",
            ));
        }
        // The shared prefix is maximal: a shorter one followed by the same byte is another
        // spelling of the same member.
        if shared < SHARED_PREFIX_MAX && rest.first().is_some_and(|b| prev.get(n) == Some(b)) {
            return Err(invalid("set member front coding not canonical"));
        }
        // Short members stay inline: no allocation.
        let mut member = Member::with_capacity(n + rest.len());
        member.extend_from_slice(&prev[..n]);
        member.extend_from_slice(rest);
        if !members.is_empty() && *member <= *prev {
            return Err(invalid("set members not sorted and unique"));
        }
        members.push(member);
    }
    Ok(members)
}

/// One code per dot, members in order, dots of a member in order.
fn dot_codes<'a>(members: impl Iterator<Item = &'a DotSet>, actors: &[u64]) -> Vec<u128> {
    let mut coder = Coder::new(actors);
    let mut codes = Vec::new();
    for dots in members {
        let mut it = dots.iter().peekable();
        while let Some(dot) = it.next() {
            codes.push(coder.code(dot, it.peek().is_some()));
        }
    }
    codes
}

/// Rebuilds every member's dots, checking counts, indices and ranges.
fn decode_dots(codes: &[u128], actors: &[u64], members: usize) -> Result<Vec<DotSet>, DecodeError> {
    if !strictly_increasing(actors) {
        return Err(invalid("set actors not sorted and unique"));
    }
    // Every listed actor is used by some dot, so there are at least as many codes.
    if actors.len() > codes.len() || (actors.is_empty() && members > 0) {
        return Err(invalid("set actor list does not match its dots"));
    }
    let n = actors.len() as u128;
    let mut prev = vec![0u64; actors.len()];
    let mut used = vec![false; actors.len()];
    let mut codes = codes.iter();
    let mut out = Vec::with_capacity(members);
    let mut next_dot = || -> Result<(Dot, bool), DecodeError> {
        let code = codes
            .next()
            .ok_or(invalid("set has fewer dot codes than its members need"))?;
        let (index, zz) = split_code(code >> 1, n).ok_or(invalid("set dot code without actors"))?;
        let index = usize::try_from(index).map_err(|_| invalid("set dot code out of range"))?;
        let zz = u64::try_from(zz).map_err(|_| invalid("set dot code overflows"))?;
        let counter = prev[index].wrapping_add(unzigzag(zz));
        prev[index] = counter;
        used[index] = true;
        Ok((Dot::new(Actor(actors[index]), counter), code & 1 == 1))
    };
    for _ in 0..members {
        // Most members hold one dot: no buffer for them (a decode of a large set would
        // otherwise allocate once per member for nothing).
        let (first, mut more) = next_dot()?;
        if !more {
            out.push(DotSet::single(first));
            continue;
        }
        let mut dots = vec![first];
        while more {
            let (dot, again) = next_dot()?;
            dots.push(dot);
            more = again;
        }
        out.push(DotSet::from_sorted(dots)?);
    }
    if codes.next().is_some() {
        return Err(invalid("set has more dot codes than its members hold"));
    }
    if used.contains(&false) {
        return Err(invalid("set lists an actor that no dot uses"));
    }
    Ok(out)
}

/// `(body % n, body / n)`: an actor index and a zigzagged delta. Bodies almost always fit
/// 64 bits, where the division is one instruction rather than a 128-bit routine.
/// `None` for no actors (which the caller has refused already).
fn split_code(body: u128, n: u128) -> Option<(u128, u128)> {
    match (u64::try_from(body), u64::try_from(n)) {
        (Ok(b), Ok(n)) => Some((u128::from(b.checked_rem(n)?), u128::from(b.checked_div(n)?))),
        _ => Some((body.checked_rem(n)?, body.checked_div(n)?)),
    }
}

/// A wrapping difference, read as signed and folded so small magnitudes are small codes.
fn zigzag(delta: u64) -> u64 {
    let v = delta as i64;
    ((v << 1) ^ (v >> 63)) as u64
}

/// The inverse of [`zigzag`]: a wrapping difference to add to the previous counter.
fn unzigzag(z: u64) -> u64 {
    (z >> 1) ^ (z & 1).wrapping_neg()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dot_code_splits_the_same_on_the_64_bit_path_and_the_128_bit_one() {
        let bodies = [
            0,
            1,
            2,
            1 << 20,
            u128::from(u64::MAX) - 1,
            u128::from(u64::MAX),
        ];
        let wide = [1u128 << 64, (1 << 64) + 5, u128::MAX >> 1];
        for n in [1u128, 2, 3, 16, u128::from(u64::MAX)] {
            for body in bodies.iter().chain(&wide) {
                assert_eq!(
                    split_code(*body, n),
                    Some((body % n, body / n)),
                    "{body} {n}"
                );
            }
        }
        assert_eq!(split_code(7, 0), None, "no actors");
        assert_eq!(split_code(1 << 70, 0), None, "no actors, wide body");
    }

    /// A set of `members` members whose dots come from `actors` actors taking turns, with
    /// counters from `base` on (each used once); every third member has a second dot, and
    /// a remove of a member waits for a dot the set has not seen.
    fn set_of(members: usize, actors: u64, base: u64) -> Set {
        let mut next = 0u64;
        let mut dot = |i: u64| {
            next += 1;
            Dot::new(Actor(1 + i % actors), base + next)
        };
        let mut entries = Vec::new();
        for i in 0..members as u64 {
            let mut dots = vec![dot(i)];
            if i % 3 == 0 {
                dots.push(dot(i + 1));
            }
            dots.sort();
            let member = Member::from_slice(format!("m{i:06}").as_bytes());
            entries.push((member, DotSet::from_sorted(dots).unwrap()));
        }
        let ctx = CausalContext::from_dots(entries.iter().flat_map(|(_, d)| d.iter()));
        let unseen = CausalContext::from_dots([Dot::new(Actor(u64::MAX), 5)]);
        let deferred = vec![(Member::from_slice(b"m000000"), unseen)];
        Set::from_parts(entries, ctx, deferred).unwrap()
    }

    #[test]
    fn the_encoder_writes_exactly_the_bytes_of_set_wire() {
        for (members, actors, base) in [
            (0, 1, 0),
            (1, 1, 0),
            (100, 3, 0),
            (300, 70, 0),          // past ACTORS_INSERTED_MAX
            (50, 5, u64::MAX / 3), // first codes past 64 bits
        ] {
            let set = set_of(members, actors, base);
            assert_eq!(set.deferred().count(), 1);
            let direct = postcard::to_allocvec(&SetOut::new(&set)).unwrap();
            let wire = postcard::to_allocvec(&SetWire::from(&set)).unwrap();
            assert_eq!(
                direct, wire,
                "{members} members, {actors} actors, base {base}"
            );
            assert_eq!(actors_of(&set), all_actors_sorted(&set));
        }
        let many = set_of(300, 70, 0);
        assert!(
            actors_of(&many).len() > ACTORS_INSERTED_MAX,
            "the fallback ran"
        );
    }

    #[test]
    fn postcard_writes_a_u64_and_a_u128_of_one_value_alike() {
        for v in [0u64, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let narrow = postcard::to_allocvec(&v).unwrap();
            let wide = postcard::to_allocvec(&u128::from(v)).unwrap();
            assert_eq!(narrow, wide, "{v}");
        }
    }

    #[test]
    fn zigzag_round_trips_and_keeps_small_steps_small() {
        for d in [0u64, 1, 2, u64::MAX, u64::MAX - 1, 1 << 63, 12345] {
            assert_eq!(unzigzag(zigzag(d)), d);
        }
        assert_eq!(zigzag(1), 2);
        assert_eq!(zigzag(u64::MAX), 1); // -1
    }

    #[test]
    fn front_coding_is_canonical() {
        let members: Vec<&[u8]> = vec![b"apple", b"apply", b"b"];
        let coded = front_code(members.iter().copied());
        assert_eq!(coded[1], (4, Bytes(b"y")));
        let decoded = front_decode(&coded).unwrap();
        assert_eq!(decoded.iter().map(|m| &**m).collect::<Vec<_>>(), members);
        // "apply" spelled with a shorter shared prefix decodes to the same member: refused.
        let other = [(0, Bytes(b"apple")), (3, Bytes(b"ly"))];
        assert!(front_decode(&other).is_err());
        // Sharing more than the previous member holds, or going backwards: refused.
        assert!(front_decode(&[(0, Bytes(b"a")), (2, Bytes(b"b"))]).is_err());
        assert!(front_decode(&[(0, Bytes(b"b")), (0, Bytes(b"a"))]).is_err());
        assert!(front_decode(&[(0, Bytes(b"a")), (1, Bytes(b""))]).is_err());
    }

    #[test]
    fn long_shared_prefixes_are_capped() {
        let a = vec![7u8; 300];
        let mut b = a.clone();
        b.push(1);
        let coded = front_code([&a[..], &b[..]].into_iter());
        assert_eq!(coded[1].0, SHARED_PREFIX_MAX);
        let decoded = front_decode(&coded).unwrap();
        assert_eq!(&*decoded[1], &b[..]);
    }

    #[test]
    fn dot_codes_check_counts_and_ranges() {
        let actors = [1u64, 9];
        let sets = [
            DotSet::from_sorted(vec![Dot::new(Actor(1), 5), Dot::new(Actor(9), 2)]).unwrap(),
            DotSet::single(Dot::new(Actor(1), 3)),
        ];
        let codes = dot_codes(sets.iter(), &actors);
        assert_eq!(decode_dots(&codes, &actors, 2).unwrap(), sets);
        assert!(decode_dots(&codes, &actors, 1).is_err(), "too many codes");
        assert!(decode_dots(&codes, &actors, 3).is_err(), "too few codes");
        assert!(decode_dots(&codes, &[1, 9, 10], 2).is_err(), "unused actor");
        assert!(decode_dots(&codes, &[9, 1], 2).is_err(), "unsorted actors");
        assert!(
            decode_dots(&[u128::MAX], &[1], 1).is_err(),
            "overflowing code"
        );
        assert!(decode_dots(&[0], &[], 1).is_err(), "no actors");
    }
}
