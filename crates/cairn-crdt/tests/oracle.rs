//! Cairn's types against the `crdts` crate as a reference oracle, where the semantics
//! match: the same histories must show the same values at every replica after every step.
//!
//! `crdts` applies operations only in causal order, so these histories ship full states
//! (`Sync`) rather than deltas; the law tests cover out-of-order deltas.

use std::collections::BTreeSet;

use cairn_crdt::{Actor, Counter, CounterOp, Crdt, MvReg, MvRegOp, Replica, Set, SetOp, Timestamp};
use crdts::{CmRDT, CvRDT};
use proptest::prelude::*;

const REPLICAS: usize = 3;

#[derive(Clone, Debug)]
enum Step<O> {
    Apply(usize, O),
    Sync(usize, usize),
}

fn steps<O: std::fmt::Debug>(op: impl Strategy<Value = O>) -> impl Strategy<Value = Vec<Step<O>>> {
    let step = prop_oneof![
        3 => (0..REPLICAS, op).prop_map(|(at, op)| Step::Apply(at, op)),
        1 => (0..REPLICAS, 0..REPLICAS).prop_map(|(from, to)| Step::Sync(from, to)),
    ];
    prop::collection::vec(step, 1..50)
}

fn at(i: usize) -> Replica {
    Replica {
        actor: Actor(i as u64),
        now: Timestamp::ZERO,
    }
}

fn member() -> impl Strategy<Value = u8> {
    0u8..5
}

#[derive(Clone, Debug)]
enum SetT {
    Add(u8),
    /// Remove with the context read at another replica (possibly ahead: deferred).
    Remove(u8, usize),
}

proptest! {
    #[test]
    fn counter_matches_pncounter(history in steps(-50i64..50)) {
        let mut ours = vec![Counter::default(); REPLICAS];
        let mut theirs = vec![crdts::PNCounter::<u64>::new(); REPLICAS];
        for step in &history {
            match *step {
                Step::Apply(i, by) => {
                    ours[i].apply(&CounterOp::Increment(by), at(i)).unwrap();
                    let op = if by >= 0 {
                        theirs[i].inc_many(i as u64, by.unsigned_abs())
                    } else {
                        theirs[i].dec_many(i as u64, by.unsigned_abs())
                    };
                    theirs[i].apply(op);
                }
                Step::Sync(from, to) => {
                    let (o, t) = (ours[from].clone(), theirs[from].clone());
                    ours[to].merge(&o);
                    theirs[to].merge(t);
                }
            }
            for (o, t) in ours.iter().zip(&theirs) {
                prop_assert_eq!(o.value().unwrap().to_string(), t.read().to_string());
            }
        }
    }

    #[test]
    fn set_matches_orswot(history in steps(prop_oneof![
        member().prop_map(SetT::Add),
        (member(), 0..REPLICAS).prop_map(|(m, from)| SetT::Remove(m, from)),
    ])) {
        let mut ours = vec![Set::default(); REPLICAS];
        let mut theirs = vec![crdts::Orswot::<u8, u64>::new(); REPLICAS];
        for step in &history {
            match step {
                Step::Apply(i, SetT::Add(m)) => {
                    ours[*i].apply(&SetOp::Add(vec![vec![*m]]), at(*i)).unwrap();
                    let ctx = theirs[*i].read_ctx().derive_add_ctx(*i as u64);
                    let op = theirs[*i].add(*m, ctx);
                    theirs[*i].apply(op);
                }
                Step::Apply(i, SetT::Remove(m, from)) => {
                    let context = Some(ours[*from].context().clone());
                    ours[*i].apply(&SetOp::Remove { members: vec![vec![*m]], context }, at(*i)).unwrap();
                    let ctx = theirs[*from].read_ctx().derive_rm_ctx();
                    let op = theirs[*i].rm(*m, ctx);
                    theirs[*i].apply(op);
                }
                Step::Sync(from, to) => {
                    let (o, t) = (ours[*from].clone(), theirs[*from].clone());
                    ours[*to].merge(&o);
                    theirs[*to].merge(t);
                }
            }
            for (o, t) in ours.iter().zip(&theirs) {
                let ours: BTreeSet<u8> = o.members().map(|m| m[0]).collect();
                let theirs: BTreeSet<u8> = t.read().val.into_iter().collect();
                prop_assert_eq!(ours, theirs);
            }
        }
    }

    #[test]
    fn mvreg_matches_mvreg(history in steps(any::<u8>())) {
        let mut ours = vec![MvReg::default(); REPLICAS];
        let mut theirs = vec![crdts::MVReg::<u8, u64>::new(); REPLICAS];
        for step in &history {
            match *step {
                Step::Apply(i, v) => {
                    let context = Some(ours[i].context().clone());
                    ours[i].apply(&MvRegOp::Write { value: vec![v], context }, at(i)).unwrap();
                    let ctx = theirs[i].read().derive_add_ctx(i as u64);
                    let op = theirs[i].write(v, ctx);
                    theirs[i].apply(op);
                }
                Step::Sync(from, to) => {
                    let (o, t) = (ours[from].clone(), theirs[from].clone());
                    ours[to].merge(&o);
                    theirs[to].merge(t);
                }
            }
            for (o, t) in ours.iter().zip(&theirs) {
                let mut ours: Vec<u8> = o.values().map(|v| v[0]).collect();
                let mut theirs = t.read().val;
                ours.sort_unstable();
                theirs.sort_unstable();
                prop_assert_eq!(ours, theirs);
            }
        }
    }
}
