//! Observed-remove map of named, typed fields with reset-remove semantics.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::causal::{CausalContext, Dot, InvalidState};
use crate::counter::{self, PnEntry};
use crate::dotstore::{DotFun, DotMap, DotSet, DotStore};
use crate::error::{ApplyError, CounterOverflow};
use crate::limits::{Bound, MAP_DEPTH_MAX};
use crate::register::LwwEntry;
use crate::{Crdt, Replica};

/// The type of a map field. It is part of the field's key: `("a", Counter)` and
/// `("a", Set)` are two fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FieldType {
    /// A counter field.
    Counter,
    /// A set field.
    Set,
    /// A last-writer-wins register field.
    Register,
    /// An enable-wins flag field.
    Flag,
    /// A nested map.
    Map,
}

impl FieldType {
    /// Every field type.
    pub const ALL: [FieldType; 5] = [
        FieldType::Counter,
        FieldType::Set,
        FieldType::Register,
        FieldType::Flag,
        FieldType::Map,
    ];
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            FieldType::Counter => "counter",
            FieldType::Set => "set",
            FieldType::Register => "register",
            FieldType::Flag => "flag",
            FieldType::Map => "map",
        };
        f.write_str(name)
    }
}

/// A field's name and type.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FieldKey {
    /// The name, UTF-8.
    pub name: Box<str>,
    /// The type.
    pub ty: FieldType,
}

impl FieldKey {
    /// A key from a name and a type.
    pub fn new(name: &str, ty: FieldType) -> Self {
        FieldKey {
            name: name.into(),
            ty,
        }
    }
}

/// A field's causal state: a dot store that shares the map's context.
///
/// Counters hold one dot per actor carrying that actor's cumulative totals; registers hold
/// each concurrent write under its dot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Field {
    /// A counter.
    Counter(DotFun<PnEntry>),
    /// A set.
    Set(DotMap<Box<[u8]>, DotSet>),
    /// A last-writer-wins register.
    Register(DotFun<LwwEntry>),
    /// An enable-wins flag.
    Flag(DotSet),
    /// A nested map.
    Map(DotMap<FieldKey, Field>),
}

impl Field {
    /// The field's type.
    pub fn ty(&self) -> FieldType {
        match self {
            Field::Counter(_) => FieldType::Counter,
            Field::Set(_) => FieldType::Set,
            Field::Register(_) => FieldType::Register,
            Field::Flag(_) => FieldType::Flag,
            Field::Map(_) => FieldType::Map,
        }
    }

    /// An empty field of type `ty`.
    fn empty(ty: FieldType) -> Field {
        match ty {
            FieldType::Counter => Field::Counter(DotFun::default()),
            FieldType::Set => Field::Set(DotMap::default()),
            FieldType::Register => Field::Register(DotFun::default()),
            FieldType::Flag => Field::Flag(DotSet::default()),
            FieldType::Map => Field::Map(DotMap::default()),
        }
    }

    /// The field's observable value.
    pub fn value(&self) -> Result<FieldValue, CounterOverflow> {
        Ok(match self {
            Field::Counter(dots) => {
                FieldValue::Counter(counter::total(dots.iter().map(|(_, e)| *e))?)
            }
            Field::Set(members) => FieldValue::Set(members.0.keys().cloned().collect()),
            Field::Register(writes) => {
                let winner = writes.iter().map(|(_, e)| e).max();
                FieldValue::Register(winner.map(|e| e.value.clone()).unwrap_or_default())
            }
            Field::Flag(dots) => FieldValue::Flag(!dots.is_empty()),
            Field::Map(fields) => FieldValue::Map(map_value(fields)?),
        })
    }
}

impl DotStore for Field {
    fn is_empty(&self) -> bool {
        match self {
            Field::Counter(s) => s.is_empty(),
            Field::Set(s) => s.is_empty(),
            Field::Register(s) => s.is_empty(),
            Field::Flag(s) => s.is_empty(),
            Field::Map(s) => s.is_empty(),
        }
    }

    fn join(&mut self, self_ctx: &CausalContext, other: &Self, other_ctx: &CausalContext) {
        match (self, other) {
            (Field::Counter(a), Field::Counter(b)) => {
                a.join(self_ctx, b, other_ctx);
                // An actor's newer entry was made knowing all its older ones (they were in
                // its context: counted into it, or reset), so it replaces them; without
                // this a replica that missed the delta in between would count twice.
                a.keep_newest_per_actor();
            }
            (Field::Set(a), Field::Set(b)) => a.join(self_ctx, b, other_ctx),
            (Field::Register(a), Field::Register(b)) => a.join(self_ctx, b, other_ctx),
            (Field::Flag(a), Field::Flag(b)) => a.join(self_ctx, b, other_ctx),
            (Field::Map(a), Field::Map(b)) => a.join(self_ctx, b, other_ctx),
            // The type is part of the key, and `Map::from_parts` checks it.
            _ => debug_assert!(false, "field variants under one key differ"),
        }
    }

    fn remove_covered(&mut self, ctx: &CausalContext) {
        match self {
            Field::Counter(s) => s.remove_covered(ctx),
            Field::Set(s) => s.remove_covered(ctx),
            Field::Register(s) => s.remove_covered(ctx),
            Field::Flag(s) => s.remove_covered(ctx),
            Field::Map(s) => s.remove_covered(ctx),
        }
    }

    fn for_each_dot(&self, f: &mut dyn FnMut(Dot)) {
        match self {
            Field::Counter(s) => s.for_each_dot(f),
            Field::Set(s) => s.for_each_dot(f),
            Field::Register(s) => s.for_each_dot(f),
            Field::Flag(s) => s.for_each_dot(f),
            Field::Map(s) => s.for_each_dot(f),
        }
    }
}

/// A field's observable value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldValue {
    /// A counter's value.
    Counter(i64),
    /// A set's members, in byte order.
    Set(Vec<Box<[u8]>>),
    /// A register's winning value.
    Register(Box<[u8]>),
    /// A flag's value.
    Flag(bool),
    /// A nested map's fields.
    Map(BTreeMap<FieldKey, FieldValue>),
}

/// One step of the path to what a deferred remove removes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathStep {
    /// Into a field.
    Field(FieldKey),
    /// Into a member of a set field (always last).
    Member(Box<[u8]>),
}

/// An operation on one field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldOp {
    /// Adds to a counter field.
    Increment(i64),
    /// Adds members to a set field.
    Add(Vec<Vec<u8>>),
    /// Removes members of a set field, as far as the operation's context observed them.
    RemoveMembers(Vec<Vec<u8>>),
    /// Assigns a register field.
    Assign(Vec<u8>),
    /// Enables a flag field.
    Enable,
    /// Disables a flag field, as far as the operation's context observed it.
    Disable,
    /// Updates fields of a nested map field.
    Update(Vec<(String, FieldOp)>),
    /// Removes a field of the given type, as far as the operation's context observed it.
    Remove(FieldType),
}

impl FieldOp {
    /// The type of the field the operation addresses.
    pub fn field_type(&self) -> FieldType {
        match self {
            FieldOp::Increment(_) => FieldType::Counter,
            FieldOp::Add(_) | FieldOp::RemoveMembers(_) => FieldType::Set,
            FieldOp::Assign(_) => FieldType::Register,
            FieldOp::Enable | FieldOp::Disable => FieldType::Flag,
            FieldOp::Update(_) => FieldType::Map,
            FieldOp::Remove(ty) => *ty,
        }
    }
}

/// Updates to a map, applied in order as one operation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MapOp {
    /// `(field name, operation)` pairs.
    pub updates: Vec<(String, FieldOp)>,
    /// The context of the read that removes and disables are based on. Without one they
    /// act on what the coordinating replica has observed.
    pub context: Option<CausalContext>,
}

/// An observed-remove map from `(name, type)` to nested counters, sets, registers, flags
/// and maps, all sharing one causal context.
///
/// **Remove semantics: reset-remove.** Removing a field (or a set member, or disabling a
/// flag) drops every dot the remover's context observed under it. An update concurrent
/// with the remove survives, and the field then holds only what the remover did not
/// observe: a set keeps just the concurrently added members, a register the concurrent
/// write, a nested map the concurrently updated fields. A counter keeps one dot per actor
/// carrying that actor's cumulative totals, so an increment concurrent with the remove
/// keeps its actor's *whole* contribution (including what the remover saw of that actor),
/// while the other actors' observed contributions are reset. Removes whose context is
/// ahead of the replica are deferred exactly as in [`crate::Set`].
///
/// **Laws.** The dot-store join applied recursively, so a join; an update's delta holds the
/// new dots in place plus the dots they supersede, and `old.merge(&delta) == new`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Map {
    fields: DotMap<FieldKey, Field>,
    ctx: CausalContext,
    /// Separate pairs, for the reason given on [`crate::Set`]'s field.
    deferred: BTreeSet<(Vec<PathStep>, CausalContext)>,
}

/// The address of one field inside a map: keys from the top.
type FieldPath = [FieldKey];

impl Map {
    /// The fields' observable values (fails if a counter field left the `i64` range).
    pub fn value(&self) -> Result<BTreeMap<FieldKey, FieldValue>, CounterOverflow> {
        map_value(&self.fields)
    }

    /// The top-level fields' causal states.
    pub fn fields(&self) -> impl Iterator<Item = (&FieldKey, &Field)> + '_ {
        self.fields.0.iter()
    }

    /// Every dot this replica has seen: what a client passes back with a remove.
    pub fn context(&self) -> &CausalContext {
        &self.ctx
    }

    /// Removes waiting for their context, by path.
    pub fn deferred(&self) -> impl Iterator<Item = (&[PathStep], &CausalContext)> + '_ {
        self.deferred.iter().map(|(p, c)| (p.as_slice(), c))
    }

    /// Rebuilds a map from decoded parts, checking what a decoder cannot.
    pub fn from_parts(
        fields: BTreeMap<FieldKey, Field>,
        ctx: CausalContext,
        deferred: Vec<(Vec<PathStep>, CausalContext)>,
    ) -> Result<Self, InvalidState> {
        check_fields(&fields, &ctx, 1)?;
        let tree = DotMap(fields);
        if !dots_unique(&tree) {
            return Err(InvalidState("one dot under two fields or members"));
        }
        let fields = tree.0;
        if deferred
            .iter()
            .any(|(p, c)| p.is_empty() || ctx.descends(c))
        {
            return Err(InvalidState(
                "deferred remove that is empty or already applicable",
            ));
        }
        if !deferred.windows(2).all(|w| w[0] < w[1]) {
            return Err(InvalidState("deferred removes not sorted and unique"));
        }
        let deferred = deferred.into_iter().collect();
        let map = Map {
            fields: DotMap(fields),
            ctx,
            deferred,
        };
        let mut settled = map.clone();
        settled.settle_deferred();
        if settled != map {
            return Err(InvalidState(
                "deferred remove that should have been applied",
            ));
        }
        Ok(map)
    }

    fn field(&self, path: &FieldPath) -> Option<&Field> {
        let (first, rest) = path.split_first()?;
        let mut field = self.fields.0.get(first)?;
        for key in rest {
            match field {
                Field::Map(inner) => field = inner.0.get(key)?,
                _ => return None,
            }
        }
        Some(field)
    }

    fn field_count(&self) -> usize {
        fn count(fields: &DotMap<FieldKey, Field>) -> usize {
            fields
                .0
                .values()
                .map(|f| 1 + if let Field::Map(m) = f { count(m) } else { 0 })
                .sum()
        }
        count(&self.fields)
    }

    /// The delta of one leaf operation at `path`, computed against the current state.
    fn leaf_delta(
        &self,
        path: &FieldPath,
        op: &FieldOp,
        observed: Option<&CausalContext>,
        replica: Replica,
    ) -> Result<Map, ApplyError> {
        let current = self.field(path);
        let mut delta = Map::default();
        let leaf = match op {
            FieldOp::Increment(by) => {
                let dots = match current {
                    Some(Field::Counter(d)) => d.clone(),
                    _ => DotFun::default(),
                };
                // An actor's entry is cumulative, so its newest dot holds all of it.
                let mut own = PnEntry::default();
                for (dot, entry) in dots.iter().filter(|(d, _)| d.actor == replica.actor) {
                    delta.ctx.insert(dot);
                    own = *entry;
                }
                let updated = own.add(*by).ok_or(ApplyError::CounterOverflow)?;
                let value = counter::total(dots.iter().map(|(_, e)| *e))?;
                i64::try_from(i128::from(value) + i128::from(*by))
                    .map_err(|_| ApplyError::CounterOverflow)?;
                let dot = self
                    .ctx
                    .next_dot(replica.actor)
                    .ok_or(ApplyError::DotsExhausted)?;
                delta.ctx.insert(dot);
                Field::Counter(DotFun::single(dot, updated))
            }
            FieldOp::Add(members) => self.add_delta(current, members, &mut delta, replica)?,
            FieldOp::Assign(value) => {
                Bound::RegisterBytes.check(value.len())?;
                let newest = match current {
                    Some(Field::Register(writes)) => writes.iter().map(|(_, e)| e.ts).max(),
                    _ => None,
                };
                if let Some(f) = current {
                    f.for_each_dot(&mut |d| delta.ctx.insert(d));
                }
                let dot = self
                    .ctx
                    .next_dot(replica.actor)
                    .ok_or(ApplyError::DotsExhausted)?;
                delta.ctx.insert(dot);
                Field::Register(DotFun::single(dot, LwwEntry::after(newest, value, replica)))
            }
            FieldOp::Enable => {
                if let Some(f) = current {
                    f.for_each_dot(&mut |d| delta.ctx.insert(d));
                }
                let dot = self
                    .ctx
                    .next_dot(replica.actor)
                    .ok_or(ApplyError::DotsExhausted)?;
                delta.ctx.insert(dot);
                Field::Flag(DotSet::single(dot))
            }
            FieldOp::Disable | FieldOp::Remove(_) => {
                let steps: Vec<PathStep> = path.iter().cloned().map(PathStep::Field).collect();
                self.remove_dots(dots_of(current), steps, observed, &mut delta);
                Field::empty(op.field_type())
            }
            FieldOp::RemoveMembers(members) => {
                for m in members {
                    Bound::MemberBytes.check(m.len())?;
                    let dots = match current {
                        Some(Field::Set(s)) => s.0.get(m.as_slice()),
                        _ => None,
                    };
                    let mut steps: Vec<PathStep> =
                        path.iter().cloned().map(PathStep::Field).collect();
                    steps.push(PathStep::Member(m.as_slice().into()));
                    self.remove_dots(dots_of(dots), steps, observed, &mut delta);
                }
                Field::empty(FieldType::Set)
            }
            FieldOp::Update(_) => unreachable!("nested updates are split into leaves by `apply`"),
        };
        delta.fields = nest(path, leaf);
        Ok(delta)
    }

    fn add_delta(
        &self,
        current: Option<&Field>,
        members: &[Vec<u8>],
        delta: &mut Map,
        replica: Replica,
    ) -> Result<Field, ApplyError> {
        let existing = match current {
            Some(Field::Set(s)) => Some(s),
            _ => None,
        };
        let members: BTreeSet<&[u8]> = members.iter().map(|m| m.as_slice()).collect();
        let fresh = members
            .iter()
            .filter(|m| existing.is_none_or(|s| !s.0.contains_key(**m)))
            .count();
        Bound::SetMembers.check(existing.map_or(0, |s| s.0.len()) + fresh)?;
        let first = self.ctx.max_counter(replica.actor);
        let mut added = DotMap::default();
        for (i, m) in (1u64..).zip(members) {
            Bound::MemberBytes.check(m.len())?;
            let counter = first.checked_add(i).ok_or(ApplyError::DotsExhausted)?;
            let dot = Dot::new(replica.actor, counter);
            if let Some(old) = existing.and_then(|s| s.0.get(m)) {
                old.for_each_dot(&mut |d| delta.ctx.insert(d));
            }
            delta.ctx.insert(dot);
            added.0.insert(m.into(), DotSet::single(dot));
        }
        Ok(Field::Set(added))
    }

    /// Puts the dots `observed` saw under `steps` into the delta's context (removing them),
    /// and defers the remove when `observed` is ahead of this replica.
    fn remove_dots(
        &self,
        held: Vec<Dot>,
        steps: Vec<PathStep>,
        observed: Option<&CausalContext>,
        delta: &mut Map,
    ) {
        for d in held {
            if observed.is_none_or(|c| c.contains(d)) {
                delta.ctx.insert(d);
            }
        }
        if let Some(c) = observed {
            if !self.ctx.descends(c) {
                delta.deferred.insert((steps, c.clone()));
            }
        }
    }

    /// Splits `updates` into leaf operations with their paths, checking static bounds.
    fn leaves<'a>(
        updates: &'a [(String, FieldOp)],
        prefix: &mut Vec<FieldKey>,
        out: &mut Vec<(Vec<FieldKey>, &'a FieldOp)>,
    ) -> Result<(), ApplyError> {
        Bound::OpItems.check(updates.len() + out.len())?;
        Bound::MapDepth.check(prefix.len() + 1)?;
        for (name, op) in updates {
            Bound::FieldNameBytes.check(name.len())?;
            prefix.push(FieldKey::new(name, op.field_type()));
            match op {
                FieldOp::Update(inner) => Self::leaves(inner, prefix, out)?,
                FieldOp::Add(m) | FieldOp::RemoveMembers(m) => {
                    Bound::OpItems.check(m.len())?;
                    out.push((prefix.clone(), op));
                }
                _ => out.push((prefix.clone(), op)),
            }
            prefix.pop();
        }
        Ok(())
    }

    fn apply_leaves(
        &mut self,
        leaves: &[(Vec<FieldKey>, &FieldOp)],
        observed: Option<&CausalContext>,
        replica: Replica,
    ) -> Result<Map, ApplyError> {
        let mut delta = Map::default();
        for (path, op) in leaves {
            let step = self.leaf_delta(path, op, observed, replica)?;
            self.merge(&step);
            delta.merge(&step);
        }
        Bound::MapFields.check(self.field_count())?;
        Bound::DeferredRemoves.check(self.deferred.len())?;
        Ok(delta)
    }

    fn settle_deferred(&mut self) {
        let Map {
            fields,
            ctx,
            deferred,
        } = self;
        deferred.retain(|(path, observed)| {
            remove_at(fields, path, observed);
            !ctx.descends(observed)
        });
    }
}

impl Crdt for Map {
    type Op = MapOp;

    fn reset(&mut self, _replica: Replica) -> Self {
        let mut observed = CausalContext::new();
        self.fields.for_each_dot(&mut |d| observed.insert(d));
        let delta = Map {
            ctx: observed,
            ..Map::default()
        };
        self.merge(&delta);
        delta
    }

    fn is_bottom(&self) -> bool {
        self.fields.is_empty()
    }

    fn merge(&mut self, other: &Self) {
        self.fields.join(&self.ctx, &other.fields, &other.ctx);
        self.ctx.join(&other.ctx);
        self.deferred.extend(other.deferred.iter().cloned());
        self.settle_deferred();
    }

    fn apply(&mut self, op: &MapOp, replica: Replica) -> Result<Self, ApplyError> {
        let mut leaves = Vec::new();
        Self::leaves(&op.updates, &mut Vec::new(), &mut leaves)?;
        if leaves.len() == 1 {
            // A single leaf computes its delta before touching `self`, so an error leaves
            // the state as it was; apply it and check the bounds on a copy otherwise.
            let before = self.clone();
            return self
                .apply_leaves(&leaves, op.context.as_ref(), replica)
                .inspect_err(|_| {
                    *self = before;
                });
        }
        let mut work = self.clone();
        let delta = work.apply_leaves(&leaves, op.context.as_ref(), replica)?;
        *self = work;
        Ok(delta)
    }
}

/// The dots a store holds (none when absent).
fn dots_of<S: DotStore>(store: Option<&S>) -> Vec<Dot> {
    let mut dots = Vec::new();
    if let Some(s) = store {
        s.for_each_dot(&mut |d| dots.push(d));
    }
    dots
}

/// A field tree holding `leaf` at `path`.
fn nest(path: &FieldPath, leaf: Field) -> DotMap<FieldKey, Field> {
    let mut fields = DotMap::default();
    let Some((last, parents)) = path.split_last() else {
        return fields;
    };
    if !leaf.is_empty() {
        fields.0.insert(last.clone(), leaf);
    }
    for key in parents.iter().rev() {
        if fields.is_empty() {
            break;
        }
        let mut outer = DotMap::default();
        outer.0.insert(key.clone(), Field::Map(fields));
        fields = outer;
    }
    fields
}

/// Drops the dots `observed` holds under `path`, pruning what becomes empty.
fn remove_at(fields: &mut DotMap<FieldKey, Field>, path: &[PathStep], observed: &CausalContext) {
    let Some((PathStep::Field(key), rest)) = path.split_first() else {
        return;
    };
    let Some(field) = fields.0.get_mut(key) else {
        return;
    };
    match (field, rest) {
        (field, []) => field.remove_covered(observed),
        (Field::Map(inner), rest) => remove_at(inner, rest, observed),
        (Field::Set(members), [PathStep::Member(m)]) => {
            if let Some(dots) = members.0.get_mut(m) {
                dots.remove_covered(observed);
                if dots.is_empty() {
                    members.0.remove(m);
                }
            }
        }
        _ => {}
    }
    if fields.0.get(key).is_some_and(|f| f.is_empty()) {
        fields.0.remove(key);
    }
}

fn map_value(
    fields: &DotMap<FieldKey, Field>,
) -> Result<BTreeMap<FieldKey, FieldValue>, CounterOverflow> {
    fields
        .0
        .iter()
        .map(|(k, f)| Ok((k.clone(), f.value()?)))
        .collect()
}

fn check_fields(
    fields: &BTreeMap<FieldKey, Field>,
    ctx: &CausalContext,
    depth: usize,
) -> Result<(), InvalidState> {
    if depth > MAP_DEPTH_MAX {
        return Err(InvalidState("map nested deeper than MAP_DEPTH_MAX"));
    }
    for (key, field) in fields {
        if key.ty != field.ty() || field.is_empty() {
            return Err(InvalidState(
                "map field whose type differs from its key, or empty",
            ));
        }
        let mut outside = false;
        field.for_each_dot(&mut |d| outside |= !ctx.contains(d));
        if outside {
            return Err(InvalidState("map dot outside the map's context"));
        }
        match field {
            Field::Map(inner) => check_fields(&inner.0, ctx, depth + 1)?,
            Field::Counter(entries) if !one_dot_per_actor(entries) => {
                return Err(InvalidState("map counter with two dots of one actor"));
            }

            Field::Set(members) if members.0.values().any(|d| d.is_empty()) => {
                return Err(InvalidState("map set member without dots"));
            }
            _ => {}
        }
    }
    Ok(())
}

/// A counter field holds one dot per actor: the newest (see `Field::join`).
fn one_dot_per_actor(entries: &DotFun<PnEntry>) -> bool {
    let actors: BTreeSet<_> = entries.iter().map(|(d, _)| d.actor).collect();
    actors.len() == entries.len()
}

/// Whether every dot in the tree sits in one place only (a dot names one event).
pub(crate) fn dots_unique<S: DotStore>(store: &S) -> bool {
    let (mut seen, mut unique) = (BTreeSet::new(), true);
    store.for_each_dot(&mut |d| unique &= seen.insert(d));
    unique
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Actor, Timestamp};

    fn at(actor: u64) -> Replica {
        Replica {
            actor: Actor(actor),
            now: Timestamp {
                wall_ms: actor,
                logical: 0,
            },
        }
    }

    fn update(map: &mut Map, actor: u64, updates: Vec<(&str, FieldOp)>) -> Map {
        let updates = updates
            .into_iter()
            .map(|(n, op)| (n.to_string(), op))
            .collect();
        map.apply(
            &MapOp {
                updates,
                context: None,
            },
            at(actor),
        )
        .unwrap()
    }

    fn get(map: &Map, name: &str, ty: FieldType) -> Option<FieldValue> {
        map.value().unwrap().get(&FieldKey::new(name, ty)).cloned()
    }

    #[test]
    fn nested_updates_land_in_place() {
        let mut m = Map::default();
        update(
            &mut m,
            1,
            vec![
                ("views", FieldOp::Increment(3)),
                (
                    "cart",
                    FieldOp::Update(vec![(
                        "items".into(),
                        FieldOp::Add(vec![b"apple".to_vec()]),
                    )]),
                ),
            ],
        );
        assert_eq!(
            get(&m, "views", FieldType::Counter),
            Some(FieldValue::Counter(3))
        );
        let Some(FieldValue::Map(cart)) = get(&m, "cart", FieldType::Map) else {
            panic!()
        };
        assert_eq!(
            cart.get(&FieldKey::new("items", FieldType::Set)),
            Some(&FieldValue::Set(vec![Box::from(&b"apple"[..])]))
        );
    }

    #[test]
    fn remove_resets_a_set_field_to_its_concurrent_adds() {
        let mut a = Map::default();
        update(&mut a, 1, vec![("s", FieldOp::Add(vec![b"old".to_vec()]))]);
        let mut b = a.clone();
        update(&mut a, 1, vec![("s", FieldOp::Remove(FieldType::Set))]);
        update(&mut b, 2, vec![("s", FieldOp::Add(vec![b"new".to_vec()]))]);
        a.merge(&b);
        assert_eq!(
            get(&a, "s", FieldType::Set),
            Some(FieldValue::Set(vec![Box::from(&b"new"[..])]))
        );
    }

    #[test]
    fn counter_reset_keeps_the_concurrent_actors_whole_contribution_only() {
        let mut a = Map::default();
        update(&mut a, 1, vec![("c", FieldOp::Increment(10))]);
        update(&mut a, 2, vec![("c", FieldOp::Increment(5))]);
        let mut b = a.clone();
        update(&mut a, 3, vec![("c", FieldOp::Remove(FieldType::Counter))]);
        update(&mut b, 2, vec![("c", FieldOp::Increment(1))]);
        a.merge(&b);
        // Actor 1's observed 10 is reset; actor 2's cumulative 5 + 1 survives.
        assert_eq!(
            get(&a, "c", FieldType::Counter),
            Some(FieldValue::Counter(6))
        );
    }

    #[test]
    fn a_replica_that_missed_an_increment_does_not_count_an_actor_twice() {
        // Found by the simulator (seeds 4056, 5551): the delta of a third increment only
        // supersedes the second's dot; a replica holding the first and missing the second
        // counted the first and the third.
        let mut coordinator = Map::default();
        let first = update(&mut coordinator, 1, vec![("n", FieldOp::Increment(5))]);
        let _second = update(&mut coordinator, 1, vec![("n", FieldOp::Increment(2))]);
        let third = update(&mut coordinator, 1, vec![("n", FieldOp::Increment(3))]);
        let mut replica = Map::default();
        replica.merge(&first);
        replica.merge(&third);
        assert_eq!(
            get(&replica, "n", FieldType::Counter),
            Some(FieldValue::Counter(10))
        );
        replica.merge(&coordinator);
        assert_eq!(replica, coordinator);
    }

    #[test]
    fn observed_remove_of_a_field_removes_it_everywhere() {
        let mut a = Map::default();
        update(&mut a, 1, vec![("r", FieldOp::Assign(b"x".to_vec()))]);
        let mut b = a.clone();
        update(&mut b, 2, vec![("r", FieldOp::Remove(FieldType::Register))]);
        a.merge(&b);
        assert_eq!(a.value().unwrap(), BTreeMap::new());
    }

    #[test]
    fn failed_multi_leaf_update_changes_nothing() {
        let mut m = Map::default();
        update(&mut m, 1, vec![("c", FieldOp::Increment(i64::MAX))]);
        let before = m.clone();
        let updates = vec![
            ("d".to_string(), FieldOp::Increment(1)),
            ("c".to_string(), FieldOp::Increment(1)),
        ];
        let err = m
            .apply(
                &MapOp {
                    updates,
                    context: None,
                },
                at(1),
            )
            .unwrap_err();
        assert_eq!(err, ApplyError::CounterOverflow);
        assert_eq!(m, before);
    }

    #[test]
    fn depth_bound_is_a_typed_error() {
        let mut op = FieldOp::Increment(1);
        for _ in 0..MAP_DEPTH_MAX {
            op = FieldOp::Update(vec![("m".into(), op)]);
        }
        let mut m = Map::default();
        let err = m.apply(
            &MapOp {
                updates: vec![("top".into(), op)],
                context: None,
            },
            at(1),
        );
        assert!(matches!(
            err,
            Err(ApplyError::TooLarge {
                bound: Bound::MapDepth,
                ..
            })
        ));
    }
}
