//! The flat map layout.
//!
//! A map's fields form a tree (maps nest), but the layout is a flat list of field records
//! in depth-first order, each naming its parent by position: 0 for the top level, `i` for
//! the `i`-th record (1-based), which must be a map record still open at that point. No
//! wire type is recursive, so hostile nesting cannot overflow the decoder's stack; the
//! decoder rebuilds the tree with an explicit stack and refuses nesting deeper than
//! [`MAP_DEPTH_MAX`] before building it.

use std::collections::BTreeMap;

use cairn_crdt::limits::MAP_DEPTH_MAX;
use cairn_crdt::{
    CausalContext, DotFun, DotMap, DotSet, Field, FieldKey, FieldType, LwwEntry, Map, PathStep,
    PnEntry,
};
use serde::{Deserialize, Serialize};

use crate::error::{invalid, DecodeError};
use crate::value::LwwWire;
use crate::wire::{dots, dots_wire, Bytes, ContextWire, DotWire};

/// A map: its context, its field records, its deferred removes.
#[derive(Serialize, Deserialize)]
pub(crate) struct MapWire<'a> {
    ctx: ContextWire,
    #[serde(borrow)]
    fields: Vec<FieldWire<'a>>,
    #[serde(borrow)]
    deferred: Vec<(Vec<StepWire<'a>>, ContextWire)>,
}

/// One field: its parent record (0 for the top level), its name, its typed body.
#[derive(Serialize, Deserialize)]
pub(crate) struct FieldWire<'a> {
    parent: u32,
    name: &'a str,
    #[serde(borrow)]
    body: BodyWire<'a>,
}

/// A field's causal state; the variant index is the field's type tag.
#[derive(Serialize, Deserialize)]
pub(crate) enum BodyWire<'a> {
    /// `(dot, inc, dec)`: one per actor, carrying that actor's cumulative totals.
    Counter(Vec<(DotWire, u64, u64)>),
    /// `(member, dots)` in member order.
    Set(#[serde(borrow)] Vec<(Bytes<'a>, Vec<DotWire>)>),
    /// `(dot, write)` in dot order.
    Register(#[serde(borrow)] Vec<(DotWire, LwwWire<'a>)>),
    /// The enables, in dot order.
    Flag(Vec<DotWire>),
    /// A nested map: its fields are the records that name this one as parent.
    Map,
}

/// A field type on the wire, in [`FieldType`]'s order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum FieldTypeWire {
    Counter,
    Set,
    Register,
    Flag,
    Map,
}

impl From<FieldType> for FieldTypeWire {
    fn from(ty: FieldType) -> Self {
        match ty {
            FieldType::Counter => FieldTypeWire::Counter,
            FieldType::Set => FieldTypeWire::Set,
            FieldType::Register => FieldTypeWire::Register,
            FieldType::Flag => FieldTypeWire::Flag,
            FieldType::Map => FieldTypeWire::Map,
        }
    }
}

impl From<FieldTypeWire> for FieldType {
    fn from(ty: FieldTypeWire) -> Self {
        match ty {
            FieldTypeWire::Counter => FieldType::Counter,
            FieldTypeWire::Set => FieldType::Set,
            FieldTypeWire::Register => FieldType::Register,
            FieldTypeWire::Flag => FieldType::Flag,
            FieldTypeWire::Map => FieldType::Map,
        }
    }
}

/// One step of a deferred remove's path.
#[derive(Serialize, Deserialize)]
pub(crate) enum StepWire<'a> {
    /// Into the field `(name, type)`.
    Field(&'a str, FieldTypeWire),
    /// Into a member of the set field named by the previous step.
    Member(#[serde(borrow)] Bytes<'a>),
}

impl<'a> From<&'a PathStep> for StepWire<'a> {
    fn from(step: &'a PathStep) -> Self {
        match step {
            PathStep::Field(key) => StepWire::Field(&key.name, key.ty.into()),
            PathStep::Member(m) => StepWire::Member(Bytes(m)),
        }
    }
}

impl<'a> From<&'a Map> for MapWire<'a> {
    fn from(map: &'a Map) -> Self {
        let deferred = map.deferred().map(|(path, c)| {
            let steps = path.iter().map(StepWire::from).collect();
            (steps, c.into())
        });
        MapWire {
            ctx: map.context().into(),
            fields: records(map),
            deferred: deferred.collect(),
        }
    }
}

impl TryFrom<MapWire<'_>> for Map {
    type Error = DecodeError;

    fn try_from(wire: MapWire<'_>) -> Result<Self, DecodeError> {
        let fields = build_tree(wire.fields)?;
        let mut deferred = Vec::with_capacity(wire.deferred.len());
        for (steps, ctx) in &wire.deferred {
            deferred.push((path(steps)?, CausalContext::try_from(ctx)?));
        }
        // `from_parts` checks that the (path, context) pairs are sorted and unique.
        let ctx = CausalContext::try_from(&wire.ctx)?;
        Ok(Map::from_parts(fields, ctx, deferred)?)
    }
}

/// The field tree as records, depth first, fields of each map in key order.
fn records(map: &Map) -> Vec<FieldWire<'_>> {
    type Level<'a> = Box<dyn Iterator<Item = (&'a FieldKey, &'a Field)> + 'a>;
    let mut out = Vec::new();
    let mut stack: Vec<(u32, Level<'_>)> = vec![(0, Box::new(map.fields()))];
    while let Some((parent, level)) = stack.last_mut() {
        let parent = *parent;
        let Some((key, field)) = level.next() else {
            stack.pop();
            continue;
        };
        out.push(FieldWire {
            parent,
            name: &key.name,
            body: body(field),
        });
        if let Field::Map(inner) = field {
            let index = u32::try_from(out.len()).expect("a map holds fewer than 2^32 fields");
            stack.push((index, Box::new(inner.iter())));
        }
    }
    out
}

fn body(field: &Field) -> BodyWire<'_> {
    match field {
        Field::Counter(d) => BodyWire::Counter(
            d.iter()
                .map(|(dot, e)| (dot.into(), e.inc, e.dec))
                .collect(),
        ),
        Field::Set(members) => BodyWire::Set(
            members
                .iter()
                .map(|(m, d)| (Bytes(m), dots_wire(d.iter())))
                .collect(),
        ),
        Field::Register(d) => {
            BodyWire::Register(d.iter().map(|(dot, e)| (dot.into(), e.into())).collect())
        }
        Field::Flag(d) => BodyWire::Flag(dots_wire(d.iter())),
        Field::Map(_) => BodyWire::Map,
    }
}

/// A map field still taking children while the records are read.
struct Open {
    record: u32,
    key: FieldKey,
    children: Vec<(FieldKey, Field)>,
}

/// Rebuilds the field tree from depth-first records without recursion.
///
/// A record's parent must be the innermost open map or one enclosing it (closing the maps
/// in between); anything else is not depth-first order. Fields of one map must come in
/// strictly increasing key order, as the encoder writes them.
fn build_tree(records: Vec<FieldWire<'_>>) -> Result<BTreeMap<FieldKey, Field>, DecodeError> {
    let mut top: Vec<(FieldKey, Field)> = Vec::new();
    let mut open: Vec<Open> = Vec::new();
    for (i, record) in records.into_iter().enumerate() {
        let index = u32::try_from(i + 1).map_err(|_| invalid("map has too many field records"))?;
        while open.last().map_or(0, |o| o.record) != record.parent {
            close(&mut open, &mut top)?;
        }
        if open.len() >= MAP_DEPTH_MAX {
            return Err(invalid("map nested deeper than MAP_DEPTH_MAX"));
        }
        let (ty, field) = field(record.body)?;
        let key = FieldKey {
            name: record.name.into(),
            ty,
        };
        let siblings = open.last_mut().map_or(&mut top, |o| &mut o.children);
        if siblings.last().is_some_and(|(k, _)| *k >= key) {
            return Err(invalid("map fields not sorted and unique"));
        }
        match field {
            Some(field) => siblings.push((key, field)),
            None => open.push(Open {
                record: index,
                key,
                children: Vec::new(),
            }),
        }
    }
    while !open.is_empty() {
        close(&mut open, &mut top)?;
    }
    Ok(top.into_iter().collect())
}

/// Closes the innermost open map, adding it to its parent.
fn close(open: &mut Vec<Open>, top: &mut Vec<(FieldKey, Field)>) -> Result<(), DecodeError> {
    let Some(done) = open.pop() else {
        return Err(invalid(
            "map record's parent is not an enclosing map record",
        ));
    };
    let field = Field::Map(DotMap::new(done.children.into_iter().collect()));
    let siblings = open.last_mut().map_or(top, |o| &mut o.children);
    siblings.push((done.key, field));
    Ok(())
}

/// A record's body as a field, or `None` for a nested map (its children come later).
fn field(body: BodyWire<'_>) -> Result<(FieldType, Option<Field>), DecodeError> {
    Ok(match body {
        BodyWire::Counter(entries) => {
            let entries = entries
                .into_iter()
                .map(|(d, inc, dec)| (d.into(), PnEntry { inc, dec }));
            let field = Field::Counter(DotFun::from_sorted(entries.collect())?);
            (FieldType::Counter, Some(field))
        }
        BodyWire::Set(members) => {
            if !members.windows(2).all(|w| w[0].0 .0 < w[1].0 .0) {
                return Err(invalid("map set members not sorted and unique"));
            }
            let mut out = BTreeMap::new();
            for (m, d) in members {
                out.insert(m.boxed(), DotSet::from_sorted(dots(&d))?);
            }
            (FieldType::Set, Some(Field::Set(DotMap::new(out))))
        }
        BodyWire::Register(writes) => {
            let writes = writes
                .into_iter()
                .map(|(d, w)| (d.into(), LwwEntry::from(w)));
            let field = Field::Register(DotFun::from_sorted(writes.collect())?);
            (FieldType::Register, Some(field))
        }
        BodyWire::Flag(d) => (
            FieldType::Flag,
            Some(Field::Flag(DotSet::from_sorted(dots(&d))?)),
        ),
        BodyWire::Map => (FieldType::Map, None),
    })
}

/// A deferred remove's path. Valid paths go through map fields to the removed field, and
/// may end with one member of a set field; at most [`MAP_DEPTH_MAX`] fields deep.
fn path(steps: &[StepWire<'_>]) -> Result<Vec<PathStep>, DecodeError> {
    let (fields, member) = match steps.split_last() {
        Some((StepWire::Member(m), rest)) => (rest, Some(*m)),
        _ => (steps, None),
    };
    if fields.is_empty() || fields.len() > MAP_DEPTH_MAX {
        return Err(invalid("map deferred remove path empty or too deep"));
    }
    let mut out = Vec::with_capacity(steps.len());
    for (i, step) in fields.iter().enumerate() {
        let StepWire::Field(name, ty) = step else {
            return Err(invalid(
                "map deferred remove path has a member before its end",
            ));
        };
        let last = i + 1 == fields.len();
        let fits = if last {
            member.is_none() || *ty == FieldTypeWire::Set
        } else {
            *ty == FieldTypeWire::Map
        };
        if !fits {
            return Err(invalid(
                "map deferred remove path through a field of the wrong type",
            ));
        }
        out.push(PathStep::Field(FieldKey::new(name, (*ty).into())));
    }
    out.extend(member.map(|m| PathStep::Member(m.boxed())));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(parent: u32, name: &str, body: BodyWire<'static>) -> FieldWire<'static> {
        let name: &'static str = Box::leak(name.to_string().into_boxed_str());
        FieldWire { parent, name, body }
    }

    fn flag() -> BodyWire<'static> {
        BodyWire::Flag(vec![DotWire {
            actor: 1,
            counter: 1,
        }])
    }

    #[test]
    fn records_must_be_depth_first_and_sorted() {
        let ok = vec![
            record(0, "a", BodyWire::Map),
            record(1, "x", flag()),
            record(0, "b", flag()),
        ];
        assert_eq!(build_tree(ok).unwrap().len(), 2);
        let leaf_parent = vec![record(0, "a", flag()), record(1, "x", flag())];
        assert!(build_tree(leaf_parent).is_err());
        let later_parent = vec![record(2, "a", flag()), record(0, "b", BodyWire::Map)];
        assert!(build_tree(later_parent).is_err());
        let reopened = vec![
            record(0, "a", BodyWire::Map),
            record(0, "b", flag()),
            record(1, "x", flag()),
        ];
        assert!(build_tree(reopened).is_err());
        let unsorted = vec![record(0, "b", flag()), record(0, "a", flag())];
        assert!(build_tree(unsorted).is_err());
    }

    #[test]
    fn deep_nesting_is_refused_before_it_is_built() {
        let deep: Vec<_> = (0..10_000).map(|i| record(i, "m", BodyWire::Map)).collect();
        assert!(build_tree(deep).is_err());
    }

    #[test]
    fn paths_have_the_shapes_removes_make() {
        let f = |n: &'static str, t| StepWire::Field(n, t);
        let m = StepWire::Member(Bytes(b"x"));
        assert!(path(&[f("a", FieldTypeWire::Map), f("s", FieldTypeWire::Set)]).is_ok());
        assert!(path(&[f("s", FieldTypeWire::Set), StepWire::Member(Bytes(b"x"))]).is_ok());
        assert!(path(&[f("c", FieldTypeWire::Counter), m]).is_err());
        assert!(path(&[f("c", FieldTypeWire::Counter), f("d", FieldTypeWire::Flag)]).is_err());
        assert!(path(&[]).is_err());
        assert!(path(&[StepWire::Member(Bytes(b"x"))]).is_err());
    }
}
