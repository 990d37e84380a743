//! States and deltas: one layout per value type, chosen by the kind tag.
//!
//! Counters, registers, flags and multi-value registers are small and written plainly;
//! sets ([`crate::set`]) and maps ([`crate::map`]) have layouts of their own.

use cairn_crdt::{
    Actor, Counter, DotFun, DotSet, Flag, LwwEntry, MvReg, PnEntry, Register, Timestamp, Value,
    ValueType,
};
use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};

use crate::error::DecodeError;
use crate::wire::{dots, dots_wire, read_body, write_body, Bytes, ContextWire, DotWire};
use crate::{map, set};

/// The kind tag of a value type: counter 1, set 2, map 3, register 4, flag 5, mvreg 6.
pub(crate) const fn tag(ty: ValueType) -> u8 {
    match ty {
        ValueType::Counter => 1,
        ValueType::Set => 2,
        ValueType::Map => 3,
        ValueType::Register => 4,
        ValueType::Flag => 5,
        ValueType::MvReg => 6,
    }
}

/// The value type a kind tag names, offset by `base` (0 for values, 15 for operations).
pub(crate) fn type_of_tag(tag: u8, base: u8) -> Option<ValueType> {
    let index = usize::from(tag.checked_sub(base + 1)?);
    ValueType::ALL.get(index).copied()
}

/// Writes `value`'s body after `header`.
pub(crate) fn encode(value: &Value, header: Vec<u8>) -> Vec<u8> {
    match value {
        Value::Counter(c) => write_body(&CounterOut(c), header),
        Value::Set(s) => write_body(&set::SetOut::new(s), header),
        Value::Map(m) => write_body(&map::MapWire::from(m), header),
        Value::Register(r) => write_body(&RegisterWire::from(r), header),
        Value::Flag(f) => write_body(&FlagWire::from(f), header),
        Value::MvReg(r) => write_body(&MvRegWire::from(r), header),
    }
}

/// Reads the body of a value of type `ty`.
pub(crate) fn decode(ty: ValueType, body: &[u8]) -> Result<Value, DecodeError> {
    Ok(match ty {
        ValueType::Counter => Value::Counter(read_body::<CounterWire>(body)?.try_into()?),
        ValueType::Set => Value::Set(read_body::<set::SetWire<'_>>(body)?.try_into()?),
        ValueType::Map => Value::Map(read_body::<map::MapWire<'_>>(body)?.try_into()?),
        ValueType::Register => Value::Register(read_body::<RegisterWire<'_>>(body)?.into()),
        ValueType::Flag => Value::Flag(read_body::<FlagWire>(body)?.try_into()?),
        ValueType::MvReg => Value::MvReg(read_body::<MvRegWire<'_>>(body)?.try_into()?),
    })
}

/// A counter: per-actor totals in actor order, then per-actor reset floors.
#[derive(Serialize, Deserialize)]
pub(crate) struct CounterWire {
    entries: Vec<PnWire>,
    floors: Vec<PnWire>,
}

#[derive(Serialize, Deserialize)]
struct PnWire {
    actor: u64,
    inc: u64,
    dec: u64,
}

fn pn_wire((a, e): (Actor, PnEntry)) -> PnWire {
    PnWire {
        actor: a.0,
        inc: e.inc,
        dec: e.dec,
    }
}

/// A counter written as [`CounterWire`] straight from its entries: every update's record
/// and answer encode one, and collecting the wire form first cost an allocation each.
struct CounterOut<'a>(&'a Counter);

impl Serialize for CounterOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("CounterWire", 2)?;
        st.serialize_field("entries", &PnList(self.0.entries()))?;
        st.serialize_field("floors", &PnList(self.0.floors()))?;
        st.end()
    }
}

/// A sequence of entries, serialized as they are read (the iterator knows its length).
struct PnList<I>(I);

impl<I: ExactSizeIterator<Item = (Actor, PnEntry)> + Clone> Serialize for PnList<I> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.clone().map(pn_wire))
    }
}

impl TryFrom<CounterWire> for Counter {
    type Error = DecodeError;

    fn try_from(wire: CounterWire) -> Result<Self, DecodeError> {
        let parse = |list: Vec<PnWire>| -> Vec<(Actor, PnEntry)> {
            let pairs = list.into_iter().map(|e| {
                let totals = PnEntry {
                    inc: e.inc,
                    dec: e.dec,
                };
                (Actor(e.actor), totals)
            });
            pairs.collect()
        };
        Ok(Counter::from_parts(
            parse(wire.entries),
            parse(wire.floors),
        )?)
    }
}

/// A last-writer-wins register: the winning write, if any, then the newest reset mark.
#[derive(Serialize, Deserialize)]
pub(crate) struct RegisterWire<'a> {
    #[serde(borrow)]
    entry: Option<LwwWire<'a>>,
    cleared: Option<MarkWire>,
}

/// A register reset: its timestamp and actor.
#[derive(Serialize, Deserialize)]
pub(crate) struct MarkWire {
    wall_ms: u64,
    logical: u32,
    actor: u64,
}

/// One write of a register: `(wall_ms, logical)` is its timestamp.
#[derive(Serialize, Deserialize)]
pub(crate) struct LwwWire<'a> {
    pub(crate) wall_ms: u64,
    pub(crate) logical: u32,
    pub(crate) actor: u64,
    #[serde(borrow)]
    pub(crate) value: Bytes<'a>,
}

impl<'a> From<&'a LwwEntry> for LwwWire<'a> {
    fn from(e: &'a LwwEntry) -> Self {
        LwwWire {
            wall_ms: e.ts.wall_ms,
            logical: e.ts.logical,
            actor: e.actor.0,
            value: Bytes(&e.value),
        }
    }
}

impl From<LwwWire<'_>> for LwwEntry {
    fn from(w: LwwWire<'_>) -> Self {
        let ts = Timestamp {
            wall_ms: w.wall_ms,
            logical: w.logical,
        };
        LwwEntry {
            ts,
            actor: Actor(w.actor),
            value: w.value.boxed(),
        }
    }
}

impl<'a> From<&'a Register> for RegisterWire<'a> {
    fn from(r: &'a Register) -> Self {
        RegisterWire {
            entry: r.entry().map(LwwWire::from),
            cleared: r.cleared().map(|(ts, actor)| MarkWire {
                wall_ms: ts.wall_ms,
                logical: ts.logical,
                actor: actor.0,
            }),
        }
    }
}

impl From<RegisterWire<'_>> for Register {
    fn from(wire: RegisterWire<'_>) -> Self {
        let cleared = wire.cleared.map(|m| {
            let ts = Timestamp {
                wall_ms: m.wall_ms,
                logical: m.logical,
            };
            (ts, Actor(m.actor))
        });
        Register::from_parts(wire.entry.map(LwwEntry::from), cleared)
    }
}

/// An enable-wins flag: its context, then the enables that hold it on.
#[derive(Serialize, Deserialize)]
pub(crate) struct FlagWire {
    ctx: ContextWire,
    dots: Vec<DotWire>,
}

impl From<&Flag> for FlagWire {
    fn from(f: &Flag) -> Self {
        FlagWire {
            ctx: f.context().into(),
            dots: dots_wire(f.dots().iter()),
        }
    }
}

impl TryFrom<FlagWire> for Flag {
    type Error = DecodeError;

    fn try_from(wire: FlagWire) -> Result<Self, DecodeError> {
        let held = DotSet::from_sorted(dots(&wire.dots))?;
        Ok(Flag::from_parts(held, (&wire.ctx).try_into()?)?)
    }
}

/// A multi-value register: its context, then the siblings in dot order.
#[derive(Serialize, Deserialize)]
pub(crate) struct MvRegWire<'a> {
    ctx: ContextWire,
    #[serde(borrow)]
    siblings: Vec<(DotWire, Bytes<'a>)>,
}

impl<'a> From<&'a MvReg> for MvRegWire<'a> {
    fn from(r: &'a MvReg) -> Self {
        let siblings = r.siblings().iter().map(|(d, v)| (d.into(), Bytes(v)));
        MvRegWire {
            ctx: r.context().into(),
            siblings: siblings.collect(),
        }
    }
}

impl TryFrom<MvRegWire<'_>> for MvReg {
    type Error = DecodeError;

    fn try_from(wire: MvRegWire<'_>) -> Result<Self, DecodeError> {
        let siblings = wire.siblings.iter().map(|&(d, v)| (d.into(), v.boxed()));
        let siblings = DotFun::from_sorted(siblings.collect())?;
        Ok(MvReg::from_parts(siblings, (&wire.ctx).try_into()?)?)
    }
}
