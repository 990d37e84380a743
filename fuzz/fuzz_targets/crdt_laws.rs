//! The CRDT laws on fuzzed histories: `cairn_crdt::laws::run` applies operations and resets
//! (deletes) at three replicas, delivers deltas (dropped, duplicated, reordered) and full
//! states, and checks commutativity, associativity, idempotence, the delta law and
//! convergence. Removes, disables and multi-value writes carry the context another replica
//! read, which may be ahead of the replica applying them, so deferred removes are exercised.
//! A violated law panics with the states that show it. The converged state must also
//! survive the wire.

#![no_main]

use arbitrary::Arbitrary;
use cairn_crdt::laws::{self, Step};
use cairn_crdt::{
    CausalContext, Counter, CounterOp, Crdt, FieldOp, FieldType, Flag, FlagOp, Map, MapOp, MvReg,
    MvRegOp, Register, RegisterOp, Set, SetOp, Value,
};
use libfuzzer_sys::fuzz_target;

const REPLICAS: usize = 3;
/// Longest history run per input, so each input stays fast.
const STEPS_MAX: usize = 64;

#[derive(Arbitrary, Debug)]
enum History {
    Counter(Vec<FuzzStep<i64>>),
    Set(Vec<FuzzStep<SetT>>),
    Map(Vec<FuzzStep<MapT>>),
    Register(Vec<FuzzStep<Vec<u8>>>),
    Flag(Vec<FuzzStep<bool>>),
    MvReg(Vec<FuzzStep<MvT>>),
}

#[derive(Arbitrary, Debug)]
enum FuzzStep<O> {
    Apply { at: u8, op: O },
    Deliver { delta: u8, to: u8 },
    Reset { at: u8 },
    Sync { from: u8, to: u8 },
}

/// Whose read a remove's context comes from: `None` for the coordinator's own view.
type ReadFrom = Option<u8>;

#[derive(Arbitrary, Debug)]
enum SetT {
    Add(Vec<u8>),
    Remove(Vec<u8>, ReadFrom),
}

#[derive(Arbitrary, Debug)]
struct MvT {
    value: u8,
    read_from: ReadFrom,
}

#[derive(Arbitrary, Debug)]
struct MapT {
    updates: Vec<(Path, Leaf)>,
    read_from: ReadFrom,
}

/// Where a leaf operation lands: up to two maps deep (`depth` modulo 3), so nesting stays
/// shallow without a recursive `Arbitrary` type.
#[derive(Arbitrary, Debug)]
struct Path {
    depth: u8,
    names: [u8; 3],
}

#[derive(Arbitrary, Debug)]
enum Leaf {
    Increment(i8),
    Add(Vec<u8>),
    RemoveMembers(Vec<u8>),
    Assign(u8),
    Enable,
    Disable,
    Remove(u8),
    EmptyUpdate,
}

fn member(i: u8) -> Vec<u8> {
    vec![b'm', i % 6]
}

fn members(idx: &[u8]) -> Vec<Vec<u8>> {
    idx.iter().take(4).map(|&i| member(i)).collect()
}

fn name(i: u8) -> String {
    ["a", "b", "c"][usize::from(i % 3)].to_string()
}

fn context<T>(
    states: &[T],
    from: ReadFrom,
    ctx: impl Fn(&T) -> &CausalContext,
) -> Option<CausalContext> {
    from.map(|j| ctx(&states[usize::from(j) % states.len()]).clone())
}

fn steps<O>(fuzzed: Vec<FuzzStep<O>>) -> Vec<Step<O>> {
    let at = |x: u8| usize::from(x) % REPLICAS;
    let step = |s| match s {
        FuzzStep::Apply { at: a, op } => Step::Apply { at: at(a), op },
        FuzzStep::Deliver { delta, to } => Step::Deliver {
            delta: usize::from(delta),
            to: at(to),
        },
        FuzzStep::Reset { at: a } => Step::Reset { at: at(a) },
        FuzzStep::Sync { from, to } => Step::Sync {
            from: at(from),
            to: at(to),
        },
    };
    fuzzed.into_iter().take(STEPS_MAX).map(step).collect()
}

fn field_op(path: &Path, leaf: &Leaf) -> (String, FieldOp) {
    let types = [
        FieldType::Counter,
        FieldType::Set,
        FieldType::Register,
        FieldType::Flag,
        FieldType::Map,
    ];
    let op = match leaf {
        Leaf::Increment(by) => FieldOp::Increment(i64::from(*by)),
        Leaf::Add(m) => FieldOp::Add(members(m)),
        Leaf::RemoveMembers(m) => FieldOp::RemoveMembers(members(m)),
        Leaf::Assign(v) => FieldOp::Assign(vec![*v]),
        Leaf::Enable => FieldOp::Enable,
        Leaf::Disable => FieldOp::Disable,
        Leaf::Remove(t) => FieldOp::Remove(types[usize::from(*t) % types.len()]),
        Leaf::EmptyUpdate => FieldOp::Update(Vec::new()),
    };
    // `names[depth]` is the leaf's field, inside maps `names[0]`, ..., `names[depth - 1]`.
    let depth = usize::from(path.depth) % path.names.len();
    let mut update = (name(path.names[depth]), op);
    for &n in path.names[..depth].iter().rev() {
        update = (name(n), FieldOp::Update(vec![update]));
    }
    update
}

/// Panics on a broken law, and checks the converged state through the wire format.
fn check<T: Crdt>(result: Result<laws::Outcome<T>, laws::Violation>, wrap: fn(T) -> Value) {
    match result {
        Ok(outcome) => {
            let value = wrap(outcome.converged);
            let bytes = cairn_proto::encode_value(&value);
            assert_eq!(cairn_proto::decode_value(&bytes), Ok(value));
        }
        Err(violation) => panic!("{violation}"),
    }
}

fuzz_target!(|history: History| {
    match history {
        History::Counter(s) => check(
            laws::run(REPLICAS, &steps(s), |_: &[Counter], _, by: &i64| {
                Some(CounterOp::Increment(*by))
            }),
            Value::Counter,
        ),
        History::Set(s) => check(
            laws::run(REPLICAS, &steps(s), |states: &[Set], _, op: &SetT| {
                Some(match op {
                    SetT::Add(m) => SetOp::Add(members(m)),
                    SetT::Remove(m, from) => SetOp::Remove {
                        members: members(m),
                        context: context(states, *from, Set::context),
                    },
                })
            }),
            Value::Set,
        ),
        History::Map(s) => check(
            laws::run(REPLICAS, &steps(s), |states: &[Map], _, op: &MapT| {
                let updates = op.updates.iter().take(4).map(|(p, l)| field_op(p, l));
                Some(MapOp {
                    updates: updates.collect(),
                    context: context(states, op.read_from, Map::context),
                })
            }),
            Value::Map,
        ),
        History::Register(s) => check(
            laws::run(REPLICAS, &steps(s), |_: &[Register], _, v: &Vec<u8>| {
                Some(RegisterOp::Assign(v.iter().take(8).copied().collect()))
            }),
            Value::Register,
        ),
        History::Flag(s) => check(
            laws::run(REPLICAS, &steps(s), |_: &[Flag], _, enable: &bool| {
                Some(if *enable {
                    FlagOp::Enable
                } else {
                    FlagOp::Disable
                })
            }),
            Value::Flag,
        ),
        History::MvReg(s) => check(
            laws::run(REPLICAS, &steps(s), |states: &[MvReg], _, op: &MvT| {
                Some(MvRegOp::Write {
                    value: vec![op.value % 4],
                    context: context(states, op.read_from, MvReg::context),
                })
            }),
            Value::MvReg,
        ),
    }
});
