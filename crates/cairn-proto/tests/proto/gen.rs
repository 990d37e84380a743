//! Generators: values reached by applying random operations at a few replicas and merging
//! (so every state is one the types can really be in, deferred removes included), and
//! random operations and contexts.

use proptest::prelude::*;
use proptest::sample::Index;

use cairn_crdt::limits::MAP_DEPTH_MAX;
use cairn_crdt::{
    Actor, CausalContext, Counter, CounterOp, Crdt, Dot, FieldOp, FieldType, Flag, FlagOp, Map,
    MapOp, MvReg, MvRegOp, Op, Register, RegisterOp, Replica, Set, SetOp, Timestamp, Value,
};

/// Actors of the replicas: small, middling and large ids, so varints of every width show up.
pub(crate) const ACTORS: [u64; 3] = [1, 300, 1 << 40];

#[derive(Clone, Debug)]
pub(crate) enum Step<O> {
    Apply { at: usize, op: O },
    Sync { from: usize, to: usize },
}

fn replica(at: usize, step: usize) -> Replica {
    Replica {
        actor: Actor(ACTORS[at]),
        now: Timestamp {
            wall_ms: 1_700_000_000_000 + (step as u64 * 37) % 100,
            logical: (step % 3) as u32,
        },
    }
}

/// Every delta made and every replica's final state.
pub(crate) fn play<T: Crdt, O>(steps: &[Step<O>], resolve: impl Fn(&[T], &O) -> T::Op) -> Vec<T> {
    let mut states = vec![T::default(); ACTORS.len()];
    let mut out = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        match step {
            Step::Apply { at, op } => {
                let op = resolve(&states, op);
                if let Ok(delta) = states[*at].apply(&op, replica(*at, i)) {
                    out.push(delta);
                }
            }
            Step::Sync { from, to } => {
                let from = states[*from].clone();
                states[*to].merge(&from);
            }
        }
    }
    out.extend(states);
    out
}

fn steps<O: std::fmt::Debug>(op: impl Strategy<Value = O>) -> impl Strategy<Value = Vec<Step<O>>> {
    let n = ACTORS.len();
    let step = prop_oneof![
        3 => (0..n, op).prop_map(|(at, op)| Step::Apply { at, op }),
        1 => (0..n, 0..n).prop_map(|(from, to)| Step::Sync { from, to }),
    ];
    prop::collection::vec(step, 0..40)
}

/// One of the states a history reached (a delta or a replica's final state).
fn reached<T: Crdt, O: std::fmt::Debug + Clone + 'static>(
    op: impl Strategy<Value = O> + 'static,
    resolve: impl Fn(&[T], &O) -> T::Op + Clone + 'static,
) -> impl Strategy<Value = T> {
    (steps(op), any::<Index>()).prop_map(move |(steps, pick)| {
        let all = play(&steps, resolve.clone());
        pick.get(&all).clone()
    })
}

/// Members that share prefixes (as keys do), plus the odd empty or arbitrary one.
pub(crate) fn member() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => (0..40u32).prop_map(|i| format!("item:{i:04}").into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..12),
        1 => Just(Vec::new()),
    ]
}

fn members() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(member(), 1..4)
}

/// Whose read a remove's context comes from: none, or a replica that may be ahead.
fn read_from() -> impl Strategy<Value = Option<usize>> {
    prop_oneof![1 => Just(None), 3 => (0..ACTORS.len()).prop_map(Some)]
}

fn context_of<T>(
    states: &[T],
    from: Option<usize>,
    ctx: impl Fn(&T) -> &CausalContext,
) -> Option<CausalContext> {
    from.map(|j| ctx(&states[j]).clone())
}

pub(crate) fn amount() -> impl Strategy<Value = i64> {
    prop_oneof![4 => -5i64..5, 1 => any::<i64>()]
}

pub(crate) fn counter() -> impl Strategy<Value = Counter> {
    let reached = reached(amount(), |_: &[Counter], by: &i64| {
        CounterOp::Increment(*by)
    });
    // A reset leaves floors, which no operation makes; then more increments above them.
    (reached, any::<bool>(), amount()).prop_map(|(mut c, reset, by)| {
        if reset {
            c.reset(replica(0, 0));
            let _ = c.apply(&CounterOp::Increment(by), replica(1, 1));
        }
        c
    })
}

#[derive(Clone, Debug)]
enum SetT {
    Add(Vec<Vec<u8>>),
    Remove(Vec<Vec<u8>>, Option<usize>),
}

pub(crate) fn set() -> impl Strategy<Value = Set> {
    let op = prop_oneof![
        2 => members().prop_map(SetT::Add),
        1 => (members(), read_from()).prop_map(|(m, r)| SetT::Remove(m, r)),
    ];
    reached(op, |states: &[Set], op: &SetT| match op {
        SetT::Add(m) => SetOp::Add(m.clone()),
        SetT::Remove(m, r) => SetOp::Remove {
            members: m.clone(),
            context: context_of(states, *r, Set::context),
        },
    })
}

pub(crate) fn register() -> impl Strategy<Value = Register> {
    reached(member(), |_: &[Register], v: &Vec<u8>| {
        RegisterOp::Assign(v.clone())
    })
}

pub(crate) fn flag() -> impl Strategy<Value = Flag> {
    let op = prop_oneof![Just(FlagOp::Enable), Just(FlagOp::Disable)];
    reached(op, |_: &[Flag], op: &FlagOp| *op)
}

pub(crate) fn mvreg() -> impl Strategy<Value = MvReg> {
    reached(
        (member(), read_from()),
        |states: &[MvReg], (v, r): &(Vec<u8>, Option<usize>)| MvRegOp::Write {
            value: v.clone(),
            context: context_of(states, *r, MvReg::context),
        },
    )
}

fn field_name() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "b", "cart", "é"]).prop_map(String::from)
}

fn field_type() -> impl Strategy<Value = FieldType> {
    prop::sample::select(vec![
        FieldType::Counter,
        FieldType::Set,
        FieldType::Register,
        FieldType::Flag,
        FieldType::Map,
    ])
}

/// Field operations nested up to `depth` maps deep.
pub(crate) fn field_op(depth: usize) -> BoxedStrategy<FieldOp> {
    let leaf = prop_oneof![
        amount().prop_map(FieldOp::Increment),
        members().prop_map(FieldOp::Add),
        members().prop_map(FieldOp::RemoveMembers),
        member().prop_map(FieldOp::Assign),
        Just(FieldOp::Enable),
        Just(FieldOp::Disable),
        field_type().prop_map(FieldOp::Remove),
    ];
    if depth <= 1 {
        return leaf.boxed();
    }
    prop_oneof![
        3 => leaf,
        2 => prop::collection::vec((field_name(), field_op(depth - 1)), 0..3)
            .prop_map(FieldOp::Update),
    ]
    .boxed()
}

fn updates() -> impl Strategy<Value = Vec<(String, FieldOp)>> {
    prop::collection::vec((field_name(), field_op(3)), 1..4)
}

pub(crate) fn map() -> impl Strategy<Value = Map> {
    reached(
        (updates(), read_from()),
        |states: &[Map], (u, r): &(Vec<(String, FieldOp)>, Option<usize>)| MapOp {
            updates: u.clone(),
            context: context_of(states, *r, Map::context),
        },
    )
}

pub(crate) fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        counter().prop_map(Value::Counter),
        set().prop_map(Value::Set),
        map().prop_map(Value::Map),
        register().prop_map(Value::Register),
        flag().prop_map(Value::Flag),
        mvreg().prop_map(Value::MvReg),
    ]
}

/// Arbitrary contexts: dots of a few actors, contiguous runs and gaps, huge counters.
pub(crate) fn context() -> impl Strategy<Value = CausalContext> {
    let counter = prop_oneof![4 => 1u64..12, 1 => any::<u64>()];
    let dot =
        (prop::sample::select(ACTORS.to_vec()), counter).prop_map(|(a, c)| Dot::new(Actor(a), c));
    prop::collection::vec(dot, 0..16).prop_map(CausalContext::from_dots)
}

pub(crate) fn op() -> impl Strategy<Value = Op> {
    let ctx = || prop::option::of(context());
    prop_oneof![
        amount().prop_map(|by| Op::Counter(CounterOp::Increment(by))),
        members().prop_map(|m| Op::Set(SetOp::Add(m))),
        (members(), ctx())
            .prop_map(|(members, context)| Op::Set(SetOp::Remove { members, context })),
        (
            prop::collection::vec((field_name(), field_op(MAP_DEPTH_MAX)), 0..4),
            ctx()
        )
            .prop_map(|(updates, context)| Op::Map(MapOp { updates, context })),
        member().prop_map(|v| Op::Register(RegisterOp::Assign(v))),
        prop_oneof![Just(FlagOp::Enable), Just(FlagOp::Disable)].prop_map(Op::Flag),
        (member(), ctx()).prop_map(|(value, context)| Op::MvReg(MvRegOp::Write { value, context })),
    ]
}
