//! Property tests: every type obeys the laws of `Crdt` over random histories with
//! concurrent updates, removes carrying contexts read elsewhere (deferred removes),
//! dropped, duplicated and reordered deltas, and full-state exchanges.

use cairn_crdt::laws::{self, Step};
use cairn_crdt::{
    CausalContext, Counter, CounterOp, Crdt, FieldOp, FieldType, Flag, FlagOp, Map, MapOp, MvReg,
    MvRegOp, Register, RegisterOp, Set, SetOp, Value,
};
use proptest::prelude::*;

const REPLICAS: usize = 3;

fn steps<O: std::fmt::Debug>(op: impl Strategy<Value = O>) -> impl Strategy<Value = Vec<Step<O>>> {
    let step = prop_oneof![
        4 => (0..REPLICAS, op).prop_map(|(at, op)| Step::Apply { at, op }),
        3 => (any::<usize>(), 0..REPLICAS).prop_map(|(delta, to)| Step::Deliver { delta, to }),
        1 => (0..REPLICAS, 0..REPLICAS).prop_map(|(from, to)| Step::Sync { from, to }),
        1 => (0..REPLICAS).prop_map(|at| Step::Reset { at }),
    ];
    prop::collection::vec(step, 1..60)
}

fn member() -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(vec![
        b"a".to_vec(),
        b"b".to_vec(),
        b"c".to_vec(),
        b"d".to_vec(),
    ])
}

/// Which replica's read a remove's context comes from: none, or replica `j` (which may be
/// ahead of the replica applying the remove, forcing a deferred remove).
fn read_from() -> impl Strategy<Value = Option<usize>> {
    prop_oneof![1 => Just(None), 3 => (0..REPLICAS).prop_map(Some)]
}

fn context_of<T>(
    states: &[T],
    from: Option<usize>,
    ctx: impl Fn(&T) -> &CausalContext,
) -> Option<CausalContext> {
    from.map(|j| ctx(&states[j]).clone())
}

fn check<T: Crdt + Into<Value>>(
    result: Result<laws::Outcome<T>, laws::Violation>,
) -> Result<(), TestCaseError> {
    let outcome = result.map_err(|v| TestCaseError::fail(v.to_string()))?;
    // Every state a history reaches must survive the wire format unchanged.
    let states = outcome.snapshots.into_iter().chain([outcome.converged]);
    for state in states.map(Into::<Value>::into) {
        let bytes = cairn_proto::encode_value(&state);
        prop_assert_eq!(cairn_proto::decode_value(&bytes), Ok(state));
    }
    Ok(())
}

#[derive(Clone, Debug)]
enum SetT {
    Add(Vec<Vec<u8>>),
    Remove(Vec<u8>, Option<usize>),
}

#[derive(Clone, Debug)]
enum MvT {
    Write(u8, Option<usize>),
}

#[derive(Clone, Debug)]
struct MapT {
    updates: Vec<(String, FieldOp)>,
    read_from: Option<usize>,
}

fn field_op(nested: bool) -> BoxedStrategy<FieldOp> {
    let leaf = prop_oneof![
        (-5i64..5).prop_map(FieldOp::Increment),
        prop::collection::vec(member(), 1..3).prop_map(FieldOp::Add),
        prop::collection::vec(member(), 1..2).prop_map(FieldOp::RemoveMembers),
        member().prop_map(FieldOp::Assign),
        Just(FieldOp::Enable),
        Just(FieldOp::Disable),
        prop::sample::select(vec![
            FieldType::Counter,
            FieldType::Set,
            FieldType::Register,
            FieldType::Flag,
            FieldType::Map,
        ])
        .prop_map(FieldOp::Remove),
    ];
    if !nested {
        return leaf.boxed();
    }
    prop_oneof![
        4 => leaf,
        1 => prop::collection::vec((field_name(), field_op(false)), 1..3).prop_map(FieldOp::Update),
    ]
    .boxed()
}

fn field_name() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["x".to_string(), "y".to_string()])
}

proptest! {

    #[test]
    fn counter_laws(history in steps(-1000i64..1000)) {
        check(laws::run::<Counter, _>(REPLICAS, &history, |_, _, by| Some(CounterOp::Increment(*by))))?;
    }

    #[test]
    fn counter_laws_near_overflow(history in steps(prop_oneof![Just(i64::MAX), Just(i64::MIN), -2i64..2])) {
        check(laws::run::<Counter, _>(REPLICAS, &history, |_, _, by| Some(CounterOp::Increment(*by))))?;
    }

    #[test]
    fn set_laws(history in steps(prop_oneof![
        prop::collection::vec(member(), 1..3).prop_map(SetT::Add),
        (member(), read_from()).prop_map(|(m, r)| SetT::Remove(m, r)),
    ])) {
        check(laws::run::<Set, _>(REPLICAS, &history, |states, _, t| Some(match t {
            SetT::Add(ms) => SetOp::Add(ms.clone()),
            SetT::Remove(m, from) => SetOp::Remove {
                members: vec![m.clone()],
                context: context_of(states, *from, Set::context),
            },
        })))?;
    }

    #[test]
    fn map_laws(history in steps(
        (prop::collection::vec((field_name(), field_op(true)), 1..3), read_from())
            .prop_map(|(updates, read_from)| MapT { updates, read_from })
    )) {
        check(laws::run::<Map, _>(REPLICAS, &history, |states, _, t| Some(MapOp {
            updates: t.updates.clone(),
            context: context_of(states, t.read_from, Map::context),
        })))?;
    }

    #[test]
    fn register_laws(history in steps(any::<u8>())) {
        check(laws::run::<Register, _>(REPLICAS, &history, |_, _, v| Some(RegisterOp::Assign(vec![*v]))))?;
    }

    #[test]
    fn flag_laws(history in steps(any::<bool>())) {
        check(laws::run::<Flag, _>(REPLICAS, &history, |_, _, on| {
            Some(if *on { FlagOp::Enable } else { FlagOp::Disable })
        }))?;
    }

    #[test]
    fn mvreg_laws(history in steps((any::<u8>(), read_from()).prop_map(|(v, r)| MvT::Write(v, r)))) {
        check(laws::run::<MvReg, _>(REPLICAS, &history, |states, _, MvT::Write(v, from)| {
            Some(MvRegOp::Write { value: vec![*v], context: context_of(states, *from, MvReg::context) })
        }))?;
    }

    /// The small-delta merge path of `Set` and the full merge agree.
    #[test]
    fn set_merge_paths_agree(history in steps(prop_oneof![
        prop::collection::vec(member(), 1..3).prop_map(SetT::Add),
        (member(), read_from()).prop_map(|(m, r)| SetT::Remove(m, r)),
    ])) {
        let mut states = vec![Set::default(); REPLICAS];
        let mut deltas = Vec::new();
        for (i, step) in history.iter().enumerate() {
            if let Step::Apply { at, op } = step {
                let op = match op {
                    SetT::Add(ms) => SetOp::Add(ms.clone()),
                    SetT::Remove(m, from) => SetOp::Remove {
                        members: vec![m.clone()],
                        context: context_of(&states, *from, Set::context),
                    },
                };
                let replica = cairn_crdt::Replica {
                    actor: cairn_crdt::Actor(*at as u64 + 1),
                    now: cairn_crdt::Timestamp::ZERO,
                };
                if let Ok(d) = states[*at].apply(&op, replica) {
                    deltas.push(d);
                }
            }
            if let (Some(d), true) = (deltas.last(), i % 2 == 0) {
                let target = i % REPLICAS;
                let mut fast = states[target].clone();
                fast.merge(d);
                let mut full = states[target].clone();
                full.merge_full(d);
                prop_assert_eq!(&fast, &full);
                states[target] = fast;
            }
        }
    }
}
