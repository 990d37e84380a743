//! Operations: one layout per operation type, chosen by the kind tag.
//!
//! A map operation's nested updates (`FieldOp::Update`) are written flat, like a map's
//! fields: a list of update records in depth-first order, each naming its parent update
//! record by position (0 for the top level). The decoder rebuilds the tree with an explicit
//! stack and refuses nesting deeper than [`MAP_DEPTH_MAX`], the deepest a map can apply.

use cairn_crdt::limits::MAP_DEPTH_MAX;
use cairn_crdt::{CounterOp, FieldOp, FlagOp, MapOp, MvRegOp, Op, RegisterOp, SetOp, ValueType};
use serde::{Deserialize, Serialize};

use crate::error::{invalid, DecodeError};
use crate::map::FieldTypeWire;
use crate::wire::{context_opt, read_body, write_body, Bytes, ContextWire};

/// Writes `op`'s body after `header`.
pub(crate) fn encode(op: &Op, header: Vec<u8>) -> Vec<u8> {
    match op {
        Op::Counter(CounterOp::Increment(by)) => write_body(&CounterOpWire::Increment(*by), header),
        Op::Set(o) => write_body(&SetOpWire::from(o), header),
        Op::Map(o) => write_body(&MapOpWire::from(o), header),
        Op::Register(RegisterOp::Assign(v)) => {
            write_body(&RegisterOpWire::Assign(Bytes(v)), header)
        }
        Op::Flag(o) => write_body(&FlagOpWire::from(*o), header),
        Op::MvReg(MvRegOp::Write { value, context }) => {
            let wire = MvRegOpWire::Write {
                value: Bytes(value),
                context: context.as_ref().map(ContextWire::from),
            };
            write_body(&wire, header)
        }
    }
}

/// Reads the body of an operation on a value of type `ty`.
pub(crate) fn decode(ty: ValueType, body: &[u8]) -> Result<Op, DecodeError> {
    Ok(match ty {
        ValueType::Counter => match read_body::<CounterOpWire>(body)? {
            CounterOpWire::Increment(by) => Op::Counter(CounterOp::Increment(by)),
        },
        ValueType::Set => Op::Set(read_body::<SetOpWire<'_>>(body)?.try_into()?),
        ValueType::Map => Op::Map(read_body::<MapOpWire<'_>>(body)?.try_into()?),
        ValueType::Register => match read_body::<RegisterOpWire<'_>>(body)? {
            RegisterOpWire::Assign(v) => Op::Register(RegisterOp::Assign(v.0.to_vec())),
        },
        ValueType::Flag => Op::Flag(read_body::<FlagOpWire>(body)?.into()),
        ValueType::MvReg => match read_body::<MvRegOpWire<'_>>(body)? {
            MvRegOpWire::Write { value, context } => Op::MvReg(MvRegOp::Write {
                value: value.0.to_vec(),
                context: context_opt(context.as_ref())?,
            }),
        },
    })
}

#[derive(Serialize, Deserialize)]
enum CounterOpWire {
    Increment(i64),
}

#[derive(Serialize, Deserialize)]
enum RegisterOpWire<'a> {
    Assign(#[serde(borrow)] Bytes<'a>),
}

#[derive(Serialize, Deserialize)]
enum MvRegOpWire<'a> {
    Write {
        #[serde(borrow)]
        value: Bytes<'a>,
        context: Option<ContextWire>,
    },
}

#[derive(Serialize, Deserialize)]
enum FlagOpWire {
    Enable,
    Disable,
}

impl From<FlagOp> for FlagOpWire {
    fn from(op: FlagOp) -> Self {
        match op {
            FlagOp::Enable => FlagOpWire::Enable,
            FlagOp::Disable => FlagOpWire::Disable,
        }
    }
}

impl From<FlagOpWire> for FlagOp {
    fn from(op: FlagOpWire) -> Self {
        match op {
            FlagOpWire::Enable => FlagOp::Enable,
            FlagOpWire::Disable => FlagOp::Disable,
        }
    }
}

#[derive(Serialize, Deserialize)]
enum SetOpWire<'a> {
    Add(#[serde(borrow)] Vec<Bytes<'a>>),
    Remove {
        #[serde(borrow)]
        members: Vec<Bytes<'a>>,
        context: Option<ContextWire>,
    },
}

fn bytes_list(items: &[Vec<u8>]) -> Vec<Bytes<'_>> {
    items.iter().map(|m| Bytes(m)).collect()
}

fn owned_list(items: &[Bytes<'_>]) -> Vec<Vec<u8>> {
    items.iter().map(|m| m.0.to_vec()).collect()
}

impl<'a> From<&'a SetOp> for SetOpWire<'a> {
    fn from(op: &'a SetOp) -> Self {
        match op {
            SetOp::Add(members) => SetOpWire::Add(bytes_list(members)),
            SetOp::Remove { members, context } => SetOpWire::Remove {
                members: bytes_list(members),
                context: context.as_ref().map(ContextWire::from),
            },
        }
    }
}

impl TryFrom<SetOpWire<'_>> for SetOp {
    type Error = DecodeError;

    fn try_from(wire: SetOpWire<'_>) -> Result<Self, DecodeError> {
        Ok(match wire {
            SetOpWire::Add(members) => SetOp::Add(owned_list(&members)),
            SetOpWire::Remove { members, context } => SetOp::Remove {
                members: owned_list(&members),
                context: context_opt(context.as_ref())?,
            },
        })
    }
}

/// A map operation: update records depth first, then the optional context.
#[derive(Serialize, Deserialize)]
struct MapOpWire<'a> {
    #[serde(borrow)]
    updates: Vec<UpdateWire<'a>>,
    context: Option<ContextWire>,
}

/// One field operation; `parent` is 0 or the position (1-based) of an `Update` record.
#[derive(Serialize, Deserialize)]
struct UpdateWire<'a> {
    parent: u32,
    name: &'a str,
    #[serde(borrow)]
    op: FieldOpWire<'a>,
}

/// [`FieldOp`] with `Update`'s children moved out into their own records.
#[derive(Serialize, Deserialize)]
enum FieldOpWire<'a> {
    Increment(i64),
    Add(#[serde(borrow)] Vec<Bytes<'a>>),
    RemoveMembers(#[serde(borrow)] Vec<Bytes<'a>>),
    Assign(#[serde(borrow)] Bytes<'a>),
    Enable,
    Disable,
    Update,
    Remove(FieldTypeWire),
}

impl<'a> From<&'a MapOp> for MapOpWire<'a> {
    fn from(op: &'a MapOp) -> Self {
        MapOpWire {
            updates: update_records(&op.updates),
            context: op.context.as_ref().map(ContextWire::from),
        }
    }
}

/// The update tree as records, depth first, without recursion.
fn update_records(updates: &[(String, FieldOp)]) -> Vec<UpdateWire<'_>> {
    let mut out = Vec::new();
    let mut stack = vec![(0u32, updates.iter())];
    while let Some((parent, level)) = stack.last_mut() {
        let parent = *parent;
        let Some((name, op)) = level.next() else {
            stack.pop();
            continue;
        };
        out.push(UpdateWire {
            parent,
            name,
            op: field_op_wire(op),
        });
        if let FieldOp::Update(inner) = op {
            let index =
                u32::try_from(out.len()).expect("an operation holds fewer than 2^32 updates");
            stack.push((index, inner.iter()));
        }
    }
    out
}

fn field_op_wire(op: &FieldOp) -> FieldOpWire<'_> {
    match op {
        FieldOp::Increment(by) => FieldOpWire::Increment(*by),
        FieldOp::Add(m) => FieldOpWire::Add(bytes_list(m)),
        FieldOp::RemoveMembers(m) => FieldOpWire::RemoveMembers(bytes_list(m)),
        FieldOp::Assign(v) => FieldOpWire::Assign(Bytes(v)),
        FieldOp::Enable => FieldOpWire::Enable,
        FieldOp::Disable => FieldOpWire::Disable,
        FieldOp::Update(_) => FieldOpWire::Update,
        FieldOp::Remove(ty) => FieldOpWire::Remove((*ty).into()),
    }
}

impl TryFrom<MapOpWire<'_>> for MapOp {
    type Error = DecodeError;

    fn try_from(wire: MapOpWire<'_>) -> Result<Self, DecodeError> {
        Ok(MapOp {
            updates: build_updates(wire.updates)?,
            context: context_opt(wire.context.as_ref())?,
        })
    }
}

/// An `Update` still taking children while the records are read.
struct Open {
    record: u32,
    name: String,
    children: Vec<(String, FieldOp)>,
}

/// Rebuilds the update tree from depth-first records without recursion (see
/// [`crate::map`] for the same scheme over a map's fields; here order is the operation's).
fn build_updates(records: Vec<UpdateWire<'_>>) -> Result<Vec<(String, FieldOp)>, DecodeError> {
    let mut top = Vec::new();
    let mut open: Vec<Open> = Vec::new();
    for (i, record) in records.into_iter().enumerate() {
        let index =
            u32::try_from(i + 1).map_err(|_| invalid("map operation has too many updates"))?;
        while open.last().map_or(0, |o| o.record) != record.parent {
            close(&mut open, &mut top)?;
        }
        if open.len() >= MAP_DEPTH_MAX {
            return Err(invalid("map operation nested deeper than MAP_DEPTH_MAX"));
        }
        let name = record.name.to_string();
        let op = match record.op {
            FieldOpWire::Increment(by) => FieldOp::Increment(by),
            FieldOpWire::Add(m) => FieldOp::Add(owned_list(&m)),
            FieldOpWire::RemoveMembers(m) => FieldOp::RemoveMembers(owned_list(&m)),
            FieldOpWire::Assign(v) => FieldOp::Assign(v.0.to_vec()),
            FieldOpWire::Enable => FieldOp::Enable,
            FieldOpWire::Disable => FieldOp::Disable,
            FieldOpWire::Remove(ty) => FieldOp::Remove(ty.into()),
            FieldOpWire::Update => {
                open.push(Open {
                    record: index,
                    name,
                    children: Vec::new(),
                });
                continue;
            }
        };
        open.last_mut()
            .map_or(&mut top, |o| &mut o.children)
            .push((name, op));
    }
    while !open.is_empty() {
        close(&mut open, &mut top)?;
    }
    Ok(top)
}

/// Closes the innermost open `Update`, adding it to its parent.
fn close(open: &mut Vec<Open>, top: &mut Vec<(String, FieldOp)>) -> Result<(), DecodeError> {
    let Some(done) = open.pop() else {
        return Err(invalid(
            "map operation record's parent is not an enclosing update",
        ));
    };
    let siblings = open.last_mut().map_or(top, |o| &mut o.children);
    siblings.push((done.name, FieldOp::Update(done.children)));
    Ok(())
}
