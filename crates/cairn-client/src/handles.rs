//! Typed handles on one key: what you can do to a counter, a set, a map, a register, a
//! flag or a multi-value register.

use std::collections::BTreeMap;

use cairn_crdt::{
    CausalContext, CounterOp, FieldKey, FieldOp, FieldType, FieldValue, FlagOp, MapOp, MvRegOp, Op,
    RegisterOp, SetOp, Value, ValueType,
};

use crate::client::{KeyRef, Options};
use crate::error::{Error, Result};

macro_rules! handle {
    ($name:ident, $doc:literal) => {
        #[doc = $doc]
        #[derive(Clone, Debug)]
        pub struct $name {
            key: KeyRef,
        }

        impl $name {
            pub(crate) fn new(key: KeyRef) -> Self {
                Self { key }
            }

            /// This handle with `options` over the client's (per call: chain it).
            pub fn with(mut self, options: Options) -> Self {
                self.key.options = options.over(self.key.options);
                self
            }
        }
    };
}

handle!(Counter, "A counter; see [`crate::Client::counter`].");
handle!(Set, "An add-wins set; see [`crate::Client::set`].");
handle!(Map, "A map; see [`crate::Client::map`].");
handle!(
    Register,
    "A last-writer-wins register; see [`crate::Client::register`]."
);
handle!(Flag, "An enable-wins flag; see [`crate::Client::flag`].");
handle!(
    MvReg,
    "A multi-value register; see [`crate::Client::mvreg`]."
);

fn bytes_of<I, M>(members: I) -> Vec<Vec<u8>>
where
    I: IntoIterator<Item = M>,
    M: AsRef<[u8]>,
{
    members.into_iter().map(|m| m.as_ref().to_vec()).collect()
}

/// The value decoded as the type asked for (the client checked the type already).
fn mismatch(v: &Value) -> Error {
    Error::Protocol(format!("unexpected {} value", v.value_type()))
}

impl Counter {
    /// Adds `by` (negative to subtract); returns the value after it.
    pub async fn increment(&self, by: i64) -> Result<i64> {
        let v = self
            .key
            .update(Op::Counter(CounterOp::Increment(by)), ValueType::Counter)
            .await?;
        counter_value(&v)
    }

    /// The value; 0 for a counter never written.
    pub async fn get(&self) -> Result<i64> {
        match self.key.read(ValueType::Counter).await? {
            Some(v) => counter_value(&v),
            None => Ok(0),
        }
    }
}

fn counter_value(v: &Value) -> Result<i64> {
    match v {
        Value::Counter(c) => c.value().map_err(|e| Error::Refused(e.to_string())),
        other => Err(mismatch(other)),
    }
}

/// A set as read: its members and the context a later remove passes back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetValue {
    /// Members in byte order.
    pub members: Vec<Vec<u8>>,
    /// What the read observed.
    pub context: CausalContext,
}

impl SetValue {
    fn of(v: &Value) -> Result<SetValue> {
        match v {
            Value::Set(s) => Ok(SetValue {
                members: s.members().map(<[u8]>::to_vec).collect(),
                context: s.context().clone(),
            }),
            other => Err(mismatch(other)),
        }
    }

    /// Whether `member` is in the set.
    pub fn contains(&self, member: impl AsRef<[u8]>) -> bool {
        self.members
            .binary_search_by(|m| m.as_slice().cmp(member.as_ref()))
            .is_ok()
    }

    /// The members as text (invalid UTF-8 replaced).
    pub fn strings(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| String::from_utf8_lossy(m).into_owned())
            .collect()
    }
}

impl Set {
    /// Adds one member; returns the set after it.
    pub async fn add(&self, member: impl AsRef<[u8]>) -> Result<SetValue> {
        self.add_all([member]).await
    }

    /// Adds members in one operation.
    pub async fn add_all<I, M>(&self, members: I) -> Result<SetValue>
    where
        I: IntoIterator<Item = M>,
        M: AsRef<[u8]>,
    {
        let op = Op::Set(SetOp::Add(bytes_of(members)));
        SetValue::of(&self.key.update(op, ValueType::Set).await?)
    }

    /// Adds one member, answered by the acknowledgement alone: like [`add`](Self::add),
    /// without the node encoding and sending back the whole set, which for a large set
    /// costs more than the write.
    pub async fn insert(&self, member: impl AsRef<[u8]>) -> Result<()> {
        self.insert_all([member]).await
    }

    /// Adds members in one operation, answered by the acknowledgement alone.
    pub async fn insert_all<I, M>(&self, members: I) -> Result<()>
    where
        I: IntoIterator<Item = M>,
        M: AsRef<[u8]>,
    {
        self.key.apply(Op::Set(SetOp::Add(bytes_of(members)))).await
    }

    /// Removes `members` as far as `seen` (a value this client read) observed them:
    /// adds made elsewhere since then survive (add wins).
    pub async fn remove<I, M>(&self, seen: &SetValue, members: I) -> Result<SetValue>
    where
        I: IntoIterator<Item = M>,
        M: AsRef<[u8]>,
    {
        let op = Op::Set(SetOp::Remove {
            members: bytes_of(members),
            context: Some(seen.context.clone()),
        });
        SetValue::of(&self.key.update(op, ValueType::Set).await?)
    }

    /// The members (empty for a set never written).
    pub async fn members(&self) -> Result<SetValue> {
        match self.key.read(ValueType::Set).await? {
            Some(v) => SetValue::of(&v),
            None => Ok(SetValue::default()),
        }
    }
}

/// A map as read: its fields and the context a later remove passes back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MapValue {
    /// Fields by name and type.
    pub fields: BTreeMap<FieldKey, FieldValue>,
    /// What the read observed.
    pub context: CausalContext,
}

impl MapValue {
    fn of(v: &Value) -> Result<MapValue> {
        match v {
            Value::Map(m) => Ok(MapValue {
                fields: m.value().map_err(|e| Error::Refused(e.to_string()))?,
                context: m.context().clone(),
            }),
            other => Err(mismatch(other)),
        }
    }

    fn field(&self, name: &str, ty: FieldType) -> Option<&FieldValue> {
        self.fields.get(&FieldKey::new(name, ty))
    }

    /// A counter field (0 if absent).
    pub fn counter(&self, name: &str) -> i64 {
        match self.field(name, FieldType::Counter) {
            Some(FieldValue::Counter(n)) => *n,
            _ => 0,
        }
    }

    /// A set field's members (empty if absent).
    pub fn set(&self, name: &str) -> Vec<Vec<u8>> {
        match self.field(name, FieldType::Set) {
            Some(FieldValue::Set(m)) => m.iter().map(|b| b.to_vec()).collect(),
            _ => Vec::new(),
        }
    }

    /// A register field.
    pub fn register(&self, name: &str) -> Option<Vec<u8>> {
        match self.field(name, FieldType::Register) {
            Some(FieldValue::Register(v)) => Some(v.to_vec()),
            _ => None,
        }
    }

    /// A flag field (false if absent).
    pub fn flag(&self, name: &str) -> bool {
        matches!(
            self.field(name, FieldType::Flag),
            Some(FieldValue::Flag(true))
        )
    }

    /// A nested map field.
    pub fn map(&self, name: &str) -> Option<&BTreeMap<FieldKey, FieldValue>> {
        match self.field(name, FieldType::Map) {
            Some(FieldValue::Map(m)) => Some(m),
            _ => None,
        }
    }
}

/// The updates one [`Map::update`] applies, in order, as one operation.
#[derive(Debug, Default)]
pub struct MapUpdate {
    updates: Vec<(String, FieldOp)>,
}

impl MapUpdate {
    fn push(&mut self, name: &str, op: FieldOp) {
        self.updates.push((name.to_owned(), op));
    }

    /// A counter field.
    pub fn counter<'a>(&'a mut self, name: &'a str) -> CounterField<'a> {
        CounterField { update: self, name }
    }

    /// A set field.
    pub fn set<'a>(&'a mut self, name: &'a str) -> SetField<'a> {
        SetField { update: self, name }
    }

    /// A register field.
    pub fn register<'a>(&'a mut self, name: &'a str) -> RegisterField<'a> {
        RegisterField { update: self, name }
    }

    /// A flag field.
    pub fn flag<'a>(&'a mut self, name: &'a str) -> FlagField<'a> {
        FlagField { update: self, name }
    }

    /// Updates a nested map field.
    pub fn map(&mut self, name: &str, f: impl FnOnce(&mut MapUpdate)) {
        let mut inner = MapUpdate::default();
        f(&mut inner);
        self.push(name, FieldOp::Update(inner.updates));
    }

    /// Removes the field `name`, whatever its type (as far as the update's context saw it).
    pub fn remove(&mut self, name: &str) {
        for ty in FieldType::ALL {
            self.push(name, FieldOp::Remove(ty));
        }
    }
}

/// See [`MapUpdate::counter`].
#[derive(Debug)]
pub struct CounterField<'a> {
    update: &'a mut MapUpdate,
    name: &'a str,
}

impl CounterField<'_> {
    /// Adds `by`.
    pub fn increment(self, by: i64) {
        self.update.push(self.name, FieldOp::Increment(by));
    }
}

/// See [`MapUpdate::set`].
#[derive(Debug)]
pub struct SetField<'a> {
    update: &'a mut MapUpdate,
    name: &'a str,
}

impl SetField<'_> {
    /// Adds a member.
    pub fn add(self, member: impl AsRef<[u8]>) {
        self.update
            .push(self.name, FieldOp::Add(vec![member.as_ref().to_vec()]));
    }

    /// Removes a member (as far as the update's context saw it).
    pub fn remove(self, member: impl AsRef<[u8]>) {
        self.update.push(
            self.name,
            FieldOp::RemoveMembers(vec![member.as_ref().to_vec()]),
        );
    }
}

/// See [`MapUpdate::register`].
#[derive(Debug)]
pub struct RegisterField<'a> {
    update: &'a mut MapUpdate,
    name: &'a str,
}

impl RegisterField<'_> {
    /// Assigns the register.
    pub fn assign(self, value: impl AsRef<[u8]>) {
        self.update
            .push(self.name, FieldOp::Assign(value.as_ref().to_vec()));
    }
}

/// See [`MapUpdate::flag`].
#[derive(Debug)]
pub struct FlagField<'a> {
    update: &'a mut MapUpdate,
    name: &'a str,
}

impl FlagField<'_> {
    /// Enables the flag.
    pub fn enable(self) {
        self.update.push(self.name, FieldOp::Enable);
    }

    /// Disables the flag (as far as the update's context saw it).
    pub fn disable(self) {
        self.update.push(self.name, FieldOp::Disable);
    }
}

impl Map {
    /// Applies the updates `f` makes, as one operation; returns the map after it. Removes
    /// act on what the coordinating replica has seen; use [`Map::update_seen`] to act on
    /// what you read.
    pub async fn update(&self, f: impl FnOnce(&mut MapUpdate)) -> Result<MapValue> {
        self.apply(None, f).await
    }

    /// Like [`Map::update`], with removes acting on what `seen` (a value this client read)
    /// observed: updates made elsewhere since then survive.
    pub async fn update_seen(
        &self,
        seen: &MapValue,
        f: impl FnOnce(&mut MapUpdate),
    ) -> Result<MapValue> {
        self.apply(Some(seen.context.clone()), f).await
    }

    async fn apply(
        &self,
        context: Option<CausalContext>,
        f: impl FnOnce(&mut MapUpdate),
    ) -> Result<MapValue> {
        let mut update = MapUpdate::default();
        f(&mut update);
        if update.updates.is_empty() {
            return Err(Error::Invalid(
                "a map update must change at least one field".into(),
            ));
        }
        let op = Op::Map(MapOp {
            updates: update.updates,
            context,
        });
        MapValue::of(&self.key.update(op, ValueType::Map).await?)
    }

    /// The map (empty for a map never written).
    pub async fn get(&self) -> Result<MapValue> {
        match self.key.read(ValueType::Map).await? {
            Some(v) => MapValue::of(&v),
            None => Ok(MapValue::default()),
        }
    }
}

impl Register {
    /// Assigns `value`: it wins over every write acknowledged before this one started.
    pub async fn assign(&self, value: impl AsRef<[u8]>) -> Result<()> {
        let op = Op::Register(RegisterOp::Assign(value.as_ref().to_vec()));
        self.key.update(op, ValueType::Register).await.map(|_| ())
    }

    /// The value (`None`: never written or deleted).
    pub async fn get(&self) -> Result<Option<Vec<u8>>> {
        match self.key.read(ValueType::Register).await? {
            Some(Value::Register(r)) => Ok(r.value().map(<[u8]>::to_vec)),
            Some(other) => Err(mismatch(&other)),
            None => Ok(None),
        }
    }

    /// The value as text (invalid UTF-8 replaced).
    pub async fn get_string(&self) -> Result<Option<String>> {
        Ok(self
            .get()
            .await?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }
}

impl Flag {
    /// Enables the flag (enable wins over a concurrent disable).
    pub async fn enable(&self) -> Result<bool> {
        self.set(FlagOp::Enable).await
    }

    /// Disables the flag.
    pub async fn disable(&self) -> Result<bool> {
        self.set(FlagOp::Disable).await
    }

    async fn set(&self, op: FlagOp) -> Result<bool> {
        match self.key.update(Op::Flag(op), ValueType::Flag).await? {
            Value::Flag(f) => Ok(f.value()),
            other => Err(mismatch(&other)),
        }
    }

    /// Whether the flag is enabled (false if never written).
    pub async fn get(&self) -> Result<bool> {
        match self.key.read(ValueType::Flag).await? {
            Some(Value::Flag(f)) => Ok(f.value()),
            Some(other) => Err(mismatch(&other)),
            None => Ok(false),
        }
    }
}

/// A multi-value register as read: every concurrent value, and the context the next
/// write passes back to supersede them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MvValue {
    /// The siblings.
    pub siblings: Vec<Vec<u8>>,
    /// What the read observed.
    pub context: CausalContext,
}

impl MvValue {
    fn of(v: &Value) -> Result<MvValue> {
        match v {
            Value::MvReg(m) => {
                let mut siblings: Vec<Vec<u8>> = m.values().map(<[u8]>::to_vec).collect();
                siblings.sort();
                Ok(MvValue {
                    siblings,
                    context: m.context().clone(),
                })
            }
            other => Err(mismatch(other)),
        }
    }
}

impl MvReg {
    /// Writes `value`, superseding the siblings `seen` holds (a value this client read);
    /// writes made elsewhere since then stay as siblings.
    pub async fn assign(&self, seen: &MvValue, value: impl AsRef<[u8]>) -> Result<MvValue> {
        self.write(Some(seen.context.clone()), value).await
    }

    /// Writes `value` without having read: it supersedes every value the coordinating
    /// replica has seen (concurrent writes it has not seen stay as siblings).
    pub async fn overwrite(&self, value: impl AsRef<[u8]>) -> Result<MvValue> {
        self.write(None, value).await
    }

    async fn write(
        &self,
        context: Option<CausalContext>,
        value: impl AsRef<[u8]>,
    ) -> Result<MvValue> {
        let op = Op::MvReg(MvRegOp::Write {
            value: value.as_ref().to_vec(),
            context,
        });
        MvValue::of(&self.key.update(op, ValueType::MvReg).await?)
    }

    /// The siblings (none if never written).
    pub async fn get(&self) -> Result<MvValue> {
        match self.key.read(ValueType::MvReg).await? {
            Some(v) => MvValue::of(&v),
            None => Ok(MvValue::default()),
        }
    }
}
