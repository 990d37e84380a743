//! The set workload shared by `benches/crdt.rs` and `tests/it/sizes.rs`: two replicas of a
//! set written by 16 actors, 90k shared members, then each replica adds 10k of its own and
//! removes 1k of the shared ones (so each holds about 99k members, their merge 108k). The
//! same history is applied to Cairn's `Set` and to `crdts::Orswot`.

#![allow(dead_code, clippy::unwrap_used)]

use cairn_crdt::{Actor, Crdt, Replica, Set, SetOp, Timestamp};
use crdts::CmRDT;

pub(crate) const ACTORS: u64 = 16;
pub(crate) const SHARED: usize = 90_000;
pub(crate) const OWN: usize = 10_000;
pub(crate) const REMOVED: usize = 1_000;

pub(crate) type Orswot = crdts::Orswot<Vec<u8>, u64>;

pub(crate) fn at(actor: u64) -> Replica {
    Replica {
        actor: Actor(actor),
        now: Timestamp::ZERO,
    }
}

pub(crate) fn member(prefix: &str, i: usize) -> Vec<u8> {
    format!("{prefix}:{i:06}").into_bytes()
}

/// Two replicas' states, Cairn's and `crdts`'s.
pub(crate) struct Workload {
    pub(crate) ours: (Set, Set),
    pub(crate) theirs: (Orswot, Orswot),
}

fn add_both(ours: &mut Set, theirs: &mut Orswot, actor: u64, m: Vec<u8>) {
    ours.apply(&SetOp::Add(vec![m.clone()]), at(actor)).unwrap();
    let ctx = theirs.read_ctx().derive_add_ctx(actor);
    let op = theirs.add(m, ctx);
    theirs.apply(op);
}

fn remove_both(ours: &mut Set, theirs: &mut Orswot, actor: u64, m: Vec<u8>) {
    let context = Some(ours.context().clone());
    ours.apply(
        &SetOp::Remove {
            members: vec![m.clone()],
            context,
        },
        at(actor),
    )
    .unwrap();
    let ctx = theirs.read_ctx().derive_rm_ctx();
    let op = theirs.rm(m, ctx);
    theirs.apply(op);
}

impl Workload {
    pub(crate) fn new() -> Self {
        let (mut ours, mut theirs) = (Set::default(), Orswot::new());
        for i in 0..SHARED {
            add_both(&mut ours, &mut theirs, i as u64 % ACTORS, member("item", i));
        }
        let mut a = (ours.clone(), theirs.clone());
        let mut b = (ours, theirs);
        for i in 0..OWN {
            let actor = i as u64 % (ACTORS / 2);
            add_both(&mut a.0, &mut a.1, actor, member("left", i));
            add_both(&mut b.0, &mut b.1, actor + ACTORS / 2, member("right", i));
        }
        for i in 0..REMOVED {
            remove_both(&mut a.0, &mut a.1, 0, member("item", i * 7));
            remove_both(&mut b.0, &mut b.1, ACTORS / 2, member("item", i * 11));
        }
        Workload {
            ours: (a.0, b.0),
            theirs: (a.1, b.1),
        }
    }
}
