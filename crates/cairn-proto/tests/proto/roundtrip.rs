//! `decode(encode(x)) == x` and `encode(decode(b)) == b` for every kind.

use proptest::prelude::*;

use cairn_crdt::{CausalContext, Op, Value};
use cairn_proto::{
    decode_context, decode_op, decode_value, encode_context, encode_op, encode_value,
    FORMAT_VERSION,
};

use crate::gen;

fn value_round_trips(v: Value) -> Result<(), TestCaseError> {
    let bytes = encode_value(&v);
    prop_assert_eq!(bytes[0], FORMAT_VERSION);
    let back = decode_value(&bytes).map_err(|e| TestCaseError::fail(format!("{e}: {v:?}")))?;
    prop_assert_eq!(&back, &v);
    prop_assert_eq!(encode_value(&back), bytes);
    Ok(())
}

fn op_round_trips(op: Op) -> Result<(), TestCaseError> {
    let bytes = encode_op(&op);
    let back = decode_op(&bytes).map_err(|e| TestCaseError::fail(format!("{e}: {op:?}")))?;
    prop_assert_eq!(&back, &op);
    prop_assert_eq!(encode_op(&back), bytes);
    Ok(())
}

fn context_round_trips(ctx: CausalContext) -> Result<(), TestCaseError> {
    let bytes = encode_context(&ctx);
    let back = decode_context(&bytes).map_err(|e| TestCaseError::fail(format!("{e}: {ctx:?}")))?;
    prop_assert_eq!(&back, &ctx);
    prop_assert_eq!(encode_context(&back), bytes);
    Ok(())
}

proptest! {
    #[test]
    fn counters(c in gen::counter()) {
        value_round_trips(Value::Counter(c))?;
    }

    #[test]
    fn sets(s in gen::set()) {
        value_round_trips(Value::Set(s))?;
    }

    #[test]
    fn maps(m in gen::map()) {
        value_round_trips(Value::Map(m))?;
    }

    #[test]
    fn registers(r in gen::register()) {
        value_round_trips(Value::Register(r))?;
    }

    #[test]
    fn flags(f in gen::flag()) {
        value_round_trips(Value::Flag(f))?;
    }

    #[test]
    fn mvregs(r in gen::mvreg()) {
        value_round_trips(Value::MvReg(r))?;
    }

    #[test]
    fn ops(op in gen::op()) {
        op_round_trips(op)?;
    }

    #[test]
    fn contexts(ctx in gen::context()) {
        context_round_trips(ctx)?;
    }
}

#[test]
fn empty_values_round_trip() {
    for ty in cairn_crdt::ValueType::ALL {
        value_round_trips(Value::empty(ty)).unwrap();
    }
    context_round_trips(CausalContext::new()).unwrap();
}

/// The generators reach the interesting shapes: deferred removes, nested maps, siblings.
#[test]
fn generators_reach_interesting_states() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let mut runner = TestRunner::deterministic();
    let mut sample = |s: &dyn Fn(&mut TestRunner) -> bool| (0..300).any(|_| s(&mut runner));
    assert!(sample(&|r| gen::set()
        .new_tree(r)
        .unwrap()
        .current()
        .deferred()
        .count()
        > 0));
    assert!(sample(&|r| gen::map()
        .new_tree(r)
        .unwrap()
        .current()
        .deferred()
        .count()
        > 0));
    assert!(sample(&|r| {
        let map = gen::map().new_tree(r).unwrap().current();
        let nested = map
            .fields()
            .any(|(_, f)| matches!(f, cairn_crdt::Field::Map(_)));
        nested
    }));
    assert!(sample(&|r| gen::mvreg()
        .new_tree(r)
        .unwrap()
        .current()
        .values()
        .count()
        > 1));
    assert!(sample(&|r| gen::counter()
        .new_tree(r)
        .unwrap()
        .current()
        .entries()
        .count()
        > 1));
}
