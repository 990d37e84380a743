//! One enum over every type: what the store keeps under a key.

use std::fmt;

use crate::counter::{Counter, CounterOp};
use crate::error::{ApplyError, TypeMismatch};
use crate::flag::{Flag, FlagOp};
use crate::map::{Map, MapOp};
use crate::mvreg::{MvReg, MvRegOp};
use crate::register::{Register, RegisterOp};
use crate::set::{Set, SetOp};
use crate::{Crdt, Replica};

/// The type of a value. The first write to a key fixes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ValueType {
    /// [`Counter`]
    Counter,
    /// [`Set`]
    Set,
    /// [`Map`]
    Map,
    /// [`Register`]
    Register,
    /// [`Flag`]
    Flag,
    /// [`MvReg`]
    MvReg,
}

impl ValueType {
    /// Every type, in tag order.
    pub const ALL: [ValueType; 6] = [
        ValueType::Counter,
        ValueType::Set,
        ValueType::Map,
        ValueType::Register,
        ValueType::Flag,
        ValueType::MvReg,
    ];

    /// The type's name in the HTTP API and the CLI.
    pub const fn name(self) -> &'static str {
        match self {
            ValueType::Counter => "counter",
            ValueType::Set => "set",
            ValueType::Map => "map",
            ValueType::Register => "register",
            ValueType::Flag => "flag",
            ValueType::MvReg => "mvreg",
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A typed convergent value: full state or delta alike.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// A PN-counter.
    Counter(Counter),
    /// An add-wins set.
    Set(Set),
    /// A reset-remove map.
    Map(Map),
    /// A last-writer-wins register.
    Register(Register),
    /// An enable-wins flag.
    Flag(Flag),
    /// A multi-value register.
    MvReg(MvReg),
}

/// An operation on a value of one type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// On a counter.
    Counter(CounterOp),
    /// On a set.
    Set(SetOp),
    /// On a map.
    Map(MapOp),
    /// On a register.
    Register(RegisterOp),
    /// On a flag.
    Flag(FlagOp),
    /// On a multi-value register.
    MvReg(MvRegOp),
}

impl Op {
    /// The type of value the operation applies to.
    pub fn value_type(&self) -> ValueType {
        match self {
            Op::Counter(_) => ValueType::Counter,
            Op::Set(_) => ValueType::Set,
            Op::Map(_) => ValueType::Map,
            Op::Register(_) => ValueType::Register,
            Op::Flag(_) => ValueType::Flag,
            Op::MvReg(_) => ValueType::MvReg,
        }
    }
}

macro_rules! value_from {
    ($($variant:ident),*) => {$(
        impl From<$variant> for Value {
            fn from(v: $variant) -> Value {
                Value::$variant(v)
            }
        }
    )*};
}

value_from!(Counter, Set, Map, Register, Flag, MvReg);

impl Value {
    /// The empty value of a type: what a key holds before its first write.
    pub fn empty(ty: ValueType) -> Value {
        match ty {
            ValueType::Counter => Value::Counter(Counter::default()),
            ValueType::Set => Value::Set(Set::default()),
            ValueType::Map => Value::Map(Map::default()),
            ValueType::Register => Value::Register(Register::default()),
            ValueType::Flag => Value::Flag(Flag::default()),
            ValueType::MvReg => Value::MvReg(MvReg::default()),
        }
    }

    /// The value's type.
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::Counter(_) => ValueType::Counter,
            Value::Set(_) => ValueType::Set,
            Value::Map(_) => ValueType::Map,
            Value::Register(_) => ValueType::Register,
            Value::Flag(_) => ValueType::Flag,
            Value::MvReg(_) => ValueType::MvReg,
        }
    }

    /// Merges a state or delta of the same type; another type is an error, never a panic.
    pub fn merge(&mut self, other: &Value) -> Result<(), TypeMismatch> {
        match (self, other) {
            (Value::Counter(a), Value::Counter(b)) => a.merge(b),
            (Value::Set(a), Value::Set(b)) => a.merge(b),
            (Value::Map(a), Value::Map(b)) => a.merge(b),
            (Value::Register(a), Value::Register(b)) => a.merge(b),
            (Value::Flag(a), Value::Flag(b)) => a.merge(b),
            (Value::MvReg(a), Value::MvReg(b)) => a.merge(b),
            (mine, theirs) => {
                return Err(TypeMismatch {
                    expected: theirs.value_type(),
                    found: mine.value_type(),
                })
            }
        }
        Ok(())
    }

    /// Removes everything this replica observed (a delete) and returns the delta.
    pub fn reset(&mut self, replica: Replica) -> Value {
        match self {
            Value::Counter(v) => Value::Counter(v.reset(replica)),
            Value::Set(v) => Value::Set(v.reset(replica)),
            Value::Map(v) => Value::Map(v.reset(replica)),
            Value::Register(v) => Value::Register(v.reset(replica)),
            Value::Flag(v) => Value::Flag(v.reset(replica)),
            Value::MvReg(v) => Value::MvReg(v.reset(replica)),
        }
    }

    /// True when the value shows nothing (never written, or reset): reads as not found.
    pub fn is_bottom(&self) -> bool {
        match self {
            Value::Counter(v) => v.is_bottom(),
            Value::Set(v) => v.is_bottom(),
            Value::Map(v) => v.is_bottom(),
            Value::Register(v) => v.is_bottom(),
            Value::Flag(v) => v.is_bottom(),
            Value::MvReg(v) => v.is_bottom(),
        }
    }

    /// Applies an operation at `replica` and returns its delta. On error nothing changed.
    pub fn apply(&mut self, op: &Op, replica: Replica) -> Result<Value, ApplyError> {
        Ok(match (self, op) {
            (Value::Counter(v), Op::Counter(o)) => Value::Counter(v.apply(o, replica)?),
            (Value::Set(v), Op::Set(o)) => Value::Set(v.apply(o, replica)?),
            (Value::Map(v), Op::Map(o)) => Value::Map(v.apply(o, replica)?),
            (Value::Register(v), Op::Register(o)) => Value::Register(v.apply(o, replica)?),
            (Value::Flag(v), Op::Flag(o)) => Value::Flag(v.apply(o, replica)?),
            (Value::MvReg(v), Op::MvReg(o)) => Value::MvReg(v.apply(o, replica)?),
            (v, o) => {
                let mismatch = TypeMismatch {
                    expected: o.value_type(),
                    found: v.value_type(),
                };
                return Err(mismatch.into());
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Actor, Timestamp};

    #[test]
    fn cross_type_apply_and_merge_are_typed_errors() {
        let replica = Replica {
            actor: Actor(1),
            now: Timestamp::ZERO,
        };
        let mut counter = Value::empty(ValueType::Counter);
        let err = counter
            .apply(&Op::Flag(FlagOp::Enable), replica)
            .unwrap_err();
        let mismatch = TypeMismatch {
            expected: ValueType::Flag,
            found: ValueType::Counter,
        };
        assert_eq!(err, ApplyError::TypeMismatch(mismatch));
        assert_eq!(counter.merge(&Value::empty(ValueType::Flag)), Err(mismatch));
        assert_eq!(counter, Value::empty(ValueType::Counter));
    }
}
