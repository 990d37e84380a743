//! Joining replicas' values, including the corner where two replicas disagree on a type.

use cairn_crdt::Value;

/// The join of `values`, or `None` when there are none.
///
/// The first write fixes a key's type, but two first writes of different types can race
/// at different replicas. Replicas must still converge, so the join is lexicographic: the
/// smallest [`cairn_crdt::ValueType`] wins outright and values of that type merge. (The
/// other type's acknowledged write is then lost; ARCHITECTURE.md records this.)
pub fn join_values<'a>(values: impl IntoIterator<Item = &'a Value>) -> Option<Value> {
    let mut values = values.into_iter();
    let mut out = values.next()?.clone();
    for v in values {
        join_into(&mut out, v);
    }
    Some(out)
}

/// Joins `v` into `acc` in place, by the rule of [`join_values`]. A replica merging a
/// delta into the value it owns uses this: `join_values` would copy the whole value
/// first (for a set, every member) only to drop the original.
pub fn join_into(acc: &mut Value, v: &Value) {
    if acc.value_type() == v.value_type() {
        let merged = acc.merge(v);
        debug_assert!(merged.is_ok(), "same types merge");
    } else if v.value_type() < acc.value_type() {
        *acc = v.clone();
    }
}

/// What a read shows: nothing for a value with no visible content (never written, or
/// deleted), else the value.
pub fn visible(value: &Value) -> Option<Value> {
    (!value.is_bottom()).then(|| value.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_crdt::{Actor, CounterOp, Op, Replica, SetOp, Timestamp, ValueType};

    #[test]
    fn join_of_mixed_types_is_order_independent() {
        let at = Replica {
            actor: Actor(1),
            now: Timestamp::ZERO,
        };
        let mut counter = Value::empty(ValueType::Counter);
        counter
            .apply(&Op::Counter(CounterOp::Increment(2)), at)
            .unwrap();
        let mut set = Value::empty(ValueType::Set);
        set.apply(&Op::Set(SetOp::Add(vec![b"x".to_vec()])), at)
            .unwrap();
        let ab = join_values([&counter, &set]);
        let ba = join_values([&set, &counter]);
        assert_eq!(ab, ba);
        assert_eq!(ab.map(|v| v.value_type()), Some(ValueType::Counter));
        assert_eq!(join_values(std::iter::empty()), None);
    }
}
