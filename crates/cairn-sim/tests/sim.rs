#![allow(clippy::unwrap_used)]
//! The simulator as a test: seeded sweeps with mixed faults, determinism, and scripted
//! regressions for bugs the sweeps found.

use cairn_core::{ClientError, ClientOp, ClientReply, Quorum, RequestOptions};
use cairn_crdt::{CounterOp, Op, RegisterOp, SetOp, Value};
use cairn_sim::history::Outcome;
use cairn_sim::{Cluster, Sim, SimConfig};

/// Seeds `cargo test` runs; `cargo run --release -p cairn-sim -- --seeds N` runs more.
const SEEDS: u64 = 2_000;

#[test]
fn mixed_fault_sweep_finds_no_violation() {
    let mut failures = Vec::new();
    let (mut ops, mut indeterminate) = (0, 0);
    for seed in 0..SEEDS {
        let report = Sim::new(SimConfig::mixed(seed)).run();
        ops += report.ops;
        indeterminate += report
            .history
            .iter()
            .filter(|e| e.outcome == Outcome::Indeterminate)
            .count();
        if !report.violations.is_empty() {
            failures.push(format!(
                "seed {seed}: {:?}\n  replay: cargo run --release -p cairn-sim -- --seeds 1 --start {seed} --verbose",
                report.violations
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failing seeds:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The faults must bite, or the sweep proves nothing.
    assert!(ops > 10_000, "only {ops} operations");
    assert!(
        indeterminate > ops / 50,
        "only {indeterminate} of {ops} operations met a fault"
    );
}

#[test]
fn the_same_seed_gives_the_same_history() {
    let a = Sim::new(SimConfig::mixed(4242)).run();
    let b = Sim::new(SimConfig::mixed(4242)).run();
    assert_eq!(a.history, b.history);
    assert_eq!((a.messages, a.end_ms), (b.messages, b.end_ms));
    let c = Sim::new(SimConfig::mixed(4243)).run();
    assert_ne!(a.history, c.history, "different seeds should differ");
}

fn incr(by: i64) -> ClientOp {
    ClientOp::Update(Op::Counter(CounterOp::Increment(by)))
}

fn counter(reply: Result<ClientReply, ClientError>) -> i64 {
    match reply {
        Ok(ClientReply::Value(Some(Value::Counter(c)))) => c.value().unwrap(),
        Ok(ClientReply::Value(None)) => 0,
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_forwarded_increment_is_applied_once_even_if_the_forward_is_duplicated() {
    // Found by the sweep: a duplicated Forward was coordinated twice.
    let mut c = Cluster::new(5, 3, 16, 3);
    let owners = c.owners("k");
    let outsider = (0..5).find(|i| !owners.contains(i)).unwrap();
    c.set_duplicate(true);
    assert_eq!(
        counter(c.call(outsider, "k", incr(1), RequestOptions::default())),
        1
    );
    c.set_duplicate(false);
    c.advance(100);
    assert_eq!(counter(c.call(owners[0], "k", ClientOp::Read, all())), 1);
}

#[test]
fn an_ack_only_update_is_answered_without_its_value_directly_and_when_forwarded() {
    let mut c = Cluster::new(5, 3, 16, 3);
    let owners = c.owners("s");
    let outsider = (0..5).find(|i| !owners.contains(i)).unwrap();
    let add = |x: &str| ClientOp::Update(Op::Set(SetOp::Add(vec![x.as_bytes().to_vec()])));
    let quiet = RequestOptions {
        ack_only: true,
        ..all()
    };
    assert_eq!(
        c.call(owners[0], "s", add("a"), quiet),
        Ok(ClientReply::Applied)
    );
    assert_eq!(
        c.call(outsider, "s", add("b"), quiet),
        Ok(ClientReply::Applied)
    );
    // A register assign reads before it writes: that path answers the same way.
    let register_owners = c.owners("r");
    let register_outsider = (0..5).find(|i| !register_owners.contains(i)).unwrap();
    for node in [register_owners[0], register_outsider] {
        assert_eq!(
            c.call(node, "r", assign("x"), quiet),
            Ok(ClientReply::Applied)
        );
    }
    // Without the option the value comes back, and reads ignore the option.
    let Ok(ClientReply::Value(Some(Value::Set(set)))) = c.call(outsider, "s", add("c"), all())
    else {
        panic!("an update without ack_only answers its value")
    };
    assert_eq!(set.members().count(), 3);
    let read = c.call(owners[1], "s", ClientOp::Read, quiet);
    let Ok(ClientReply::Value(Some(Value::Set(set)))) = read else {
        panic!("{read:?}")
    };
    assert_eq!(
        set.members().collect::<Vec<_>>(),
        [&b"a"[..], &b"b"[..], &b"c"[..]]
    );
}

fn all() -> RequestOptions {
    RequestOptions {
        r: Some(Quorum::All),
        w: Some(Quorum::All),
        ..Default::default()
    }
}

fn assign(v: &str) -> ClientOp {
    ClientOp::Update(Op::Register(RegisterOp::Assign(v.as_bytes().to_vec())))
}

#[test]
fn a_register_write_after_an_acknowledged_one_wins_despite_a_lagging_clock() {
    // Found by the sweep: the later write's coordinator had missed the earlier write and
    // its clock lagged, so last-writer-wins kept the older value.
    let mut c = Cluster::new(3, 3, 16, 3);
    let owners = c.owners("r");
    let (a, b, lagging) = (owners[0], owners[1], owners[2]);
    c.skew(lagging, -500);
    c.isolate(lagging);
    assert!(c
        .call(a, "r", assign("first"), RequestOptions::default())
        .is_ok());
    c.heal();
    c.cut(lagging, a);
    assert!(c
        .call(lagging, "r", assign("second"), RequestOptions::default())
        .is_ok());
    c.heal();
    let read = c.call(b, "r", ClientOp::Read, all());
    let Ok(ClientReply::Value(Some(Value::Register(r)))) = read else {
        panic!("{read:?}")
    };
    assert_eq!(r.value(), Some(&b"second"[..]));
}

#[test]
fn a_crashed_node_never_reissues_a_dot_and_a_wiped_one_takes_a_new_actor() {
    let mut c = Cluster::new(3, 3, 16, 3);
    let owners = c.owners("s");
    let add = |x: &str| ClientOp::Update(Op::Set(SetOp::Add(vec![x.as_bytes().to_vec()])));
    let one = RequestOptions {
        w: Some(Quorum::One),
        ..Default::default()
    };
    let node = owners[0];
    assert!(c.call(node, "s", add("a"), one).is_ok());
    let generation = c.node(node).unwrap().generation();
    c.crash(node, false);
    c.restart(node);
    let restarted = c.node(node).unwrap().generation();
    assert_ne!(restarted, generation, "every start takes a new generation");
    let generation = restarted;
    c.crash(node, true);
    c.restart(node);
    assert_ne!(
        c.node(node).unwrap().generation(),
        generation,
        "an empty disk takes a new generation"
    );
    c.isolate(node);
    assert!(c.call(node, "s", add("b"), one).is_ok());
    c.heal();
    // Until the wiped node has synced, its copy counts toward no read quorum (r = all).
    c.await_synced(10_000);
    let read = c.call(owners[1], "s", ClientOp::Read, all());
    let Ok(ClientReply::Value(Some(Value::Set(set)))) = read else {
        panic!("{read:?}")
    };
    // Had the wiped node reused its old actor, "b" would carry the dot of "a" and one of
    // them would vanish in the merge.
    assert_eq!(set.members().collect::<Vec<_>>(), [&b"a"[..], &b"b"[..]]);
}

#[test]
fn writes_go_to_a_fallback_with_a_hint_and_come_home() {
    let mut c = Cluster::new(5, 3, 16, 3);
    let owners = c.owners("h");
    let down = owners[2];
    c.isolate(down);
    // The first request notices the silent primary (it times out); later ones route around it.
    let _ = c.call(owners[0], "h", incr(1), all());
    let r = c.call(owners[0], "h", incr(2), all());
    assert!(
        r.is_ok(),
        "w = all is met with a fallback standing in: {r:?}"
    );
    assert_eq!(c.copy(down, "h"), None);
    c.heal();
    c.advance(2_000);
    let home = c.copy(down, "h").map(|v| match v {
        Value::Counter(c) => c.value().unwrap(),
        other => panic!("{other:?}"),
    });
    assert!(home >= Some(2), "the hint went home: {home:?}");
}

#[test]
fn delete_reads_not_found_and_a_later_update_starts_fresh() {
    let mut c = Cluster::new(3, 3, 16, 3);
    assert_eq!(
        counter(c.call(0, "d", incr(5), RequestOptions::default())),
        5
    );
    assert!(matches!(
        c.call(1, "d", ClientOp::Delete, RequestOptions::default()),
        Ok(ClientReply::Deleted)
    ));
    assert!(matches!(
        c.call(2, "d", ClientOp::Read, all()),
        Ok(ClientReply::Value(None))
    ));
    assert_eq!(
        counter(c.call(2, "d", incr(2), RequestOptions::default())),
        2
    );
}

#[test]
fn quorum_errors_name_how_many_answered() {
    let mut c = Cluster::new(3, 3, 16, 3);
    let owners = c.owners("q");
    c.isolate(owners[1]);
    c.isolate(owners[2]);
    let strict = RequestOptions {
        pw: Some(Quorum::Count(2)),
        ..Default::default()
    };
    match c.call(owners[0], "q", incr(1), strict) {
        Err(ClientError::QuorumNotReached {
            answered,
            required,
            primaries,
            primaries_required,
        }) => {
            assert_eq!(
                (answered, required, primaries, primaries_required),
                (1, 2, 1, 2)
            );
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// Reads `key` at node `at` until a read succeeds: by then routing has learnt from
/// timeouts which primaries are away, and a write goes straight to the fallbacks (reads
/// have no effect to leave behind when they fail).
fn learn_who_is_down(c: &mut Cluster, at: usize, key: &str, options: RequestOptions) {
    for _ in 0..10 {
        if c.call(at, key, ClientOp::Read, options).is_ok() {
            return;
        }
    }
    panic!("no read succeeded");
}

#[test]
fn a_fallback_that_handed_its_hint_back_never_reuses_its_dots() {
    // Found by the sweep (seed 4056): a fallback coordinated on its hinted copy, handed it
    // home and dropped it, then coordinated again on an empty copy and reissued its dots,
    // so the owner kept one increment of two.
    let mut c = Cluster::new(5, 3, 16, 3);
    let owners = c.owners("k");
    let fallback = (0..5).find(|i| !owners.contains(i)).unwrap();
    let mut acked = 0;
    for round in 0..2 {
        for &o in &owners {
            c.isolate(o);
        }
        learn_who_is_down(&mut c, fallback, "k", RequestOptions::default());
        assert!(c
            .call(fallback, "k", incr(1), RequestOptions::default())
            .is_ok());
        acked += 1;
        c.heal();
        c.advance(5_000);
        let backlog = c.node(fallback).unwrap().hint_backlog().unwrap();
        assert_eq!(backlog.count, 0, "round {round}: hints went home");
    }
    let total = counter(c.call(owners[0], "k", ClientOp::Read, all()));
    assert_eq!(total, acked);
}

#[test]
fn gossip_tells_every_node_who_is_down_and_a_restarted_node_rejoins_by_itself() {
    let mut c = Cluster::new(5, 3, 16, 3);
    c.advance(3_000);
    let owners = c.owners("g");
    let gone = owners[1];
    let id = |i: usize| cairn_ring::NodeId(i as u64 + 1);
    c.crash(gone, false);
    // No requests: only heartbeats stop moving.
    c.advance(8_000);
    let now = c.now();
    for i in (0..5).filter(|&i| i != gone) {
        assert!(
            !c.node(i).unwrap().is_healthy(id(gone), now),
            "node {i} still routes to the crashed node"
        );
    }
    // A node that never talked to it routes around it on the first try.
    let outsider = (0..5).find(|i| !owners.contains(i)).unwrap();
    let first = c.call(outsider, "g", incr(1), all());
    assert!(
        first.is_ok(),
        "w = all through a fallback at once: {first:?}"
    );
    c.restart(gone);
    c.advance(4_000);
    let now = c.now();
    for i in (0..5).filter(|&i| i != gone) {
        assert!(
            c.node(i).unwrap().is_healthy(id(gone), now),
            "node {i} has not seen the restart"
        );
    }
    c.advance(5_000);
    assert_eq!(
        counter(c.call(gone, "g", ClientOp::Read, all())),
        1,
        "the hint came home"
    );
}

#[test]
fn hints_survive_a_restart_of_the_fallback() {
    let mut c = Cluster::with_config(5, 3, 16, 3, |cfg| cfg.aae_enabled = false);
    let owners = c.owners("s");
    let away = owners[2];
    c.isolate(away);
    // `r = all`: the read succeeds once the silent primary has a stand-in.
    learn_who_is_down(&mut c, owners[0], "s", all());
    let write = c.call(owners[0], "s", incr(7), all());
    assert!(write.is_ok(), "{write:?}");
    let fallback = (0..5)
        .find(|&i| c.node(i).unwrap().hint_backlog().unwrap().count > 0)
        .unwrap();
    c.crash(fallback, false);
    c.restart(fallback);
    assert_eq!(
        c.node(fallback).unwrap().hint_backlog().unwrap().count,
        1,
        "the hint is durable"
    );
    c.heal();
    c.advance(5_000);
    assert_eq!(c.node(fallback).unwrap().hint_backlog().unwrap().count, 0);
    let home = match c.copy(away, "s") {
        Some(Value::Counter(k)) => k.value().unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(home, 7, "delivered after the restart (anti-entropy is off)");
}

#[test]
fn staged_state_that_leaked_before_a_crash_never_shares_a_dot_with_later_writes() {
    // Found in review: a read served a staged (not yet durable) add to another node; the
    // coordinator crashed before its commit and, restarted with the same actor, gave its
    // next add the same dot, which the other node took for the one it had seen.
    let add = |x: &str| ClientOp::Update(Op::Set(SetOp::Add(vec![x.as_bytes().to_vec()])));
    let mut c = Cluster::new(3, 3, 16, 3);
    let owners = c.owners("s");
    let (a, b, other) = (owners[0], owners[1], owners[2]);
    let one = RequestOptions {
        w: Some(Quorum::One),
        ..Default::default()
    };
    c.request(a, "s", add("x"), one); // staged at `a`, not durable
    c.request(b, "s", ClientOp::Read, all()); // reads `a`'s staged copy
    c.deliver_only();
    c.deliver_only();
    c.commit(b);
    c.commit(other); // read repair made the leaked add durable elsewhere
    c.crash(a, false); // `a` loses its staged add
    c.restart(a);
    assert!(c.call(a, "s", add("y"), one).is_ok());
    c.advance(3_000);
    let read = c.call(b, "s", ClientOp::Read, all());
    let Ok(ClientReply::Value(Some(Value::Set(set)))) = read else {
        panic!("{read:?}")
    };
    assert!(
        set.contains(b"y"),
        "the acknowledged add was lost: {:?}",
        set.members().collect::<Vec<_>>()
    );
}

#[test]
fn a_node_restarted_with_its_clock_behind_its_last_start_is_seen_up_again() {
    // The nemesis harness found it (seed 2211): a node ran with its clock 20 s ahead,
    // then restarted with a true clock. Its liveness generation is its clock at start,
    // so it went backwards; peers kept the higher one, saw its heartbeat never move, and
    // routed around it for good: no hint came home and no anti-entropy reached it.
    let mut c = Cluster::new(5, 3, 16, 3);
    c.advance(3_000);
    let owners = c.owners("g");
    let node = owners[1];
    let id = cairn_ring::NodeId(node as u64 + 1);
    c.crash(node, false);
    c.skew(node, 20_000);
    c.restart(node);
    c.advance(3_000);
    c.crash(node, false);
    c.skew(node, 0);
    // Written once peers see it down: a fallback holds the hint for it.
    c.advance(8_000);
    assert!(c.call(owners[0], "g", incr(1), all()).is_ok());
    c.restart(node);
    // Past the liveness timeout, so a heartbeat that never moved would show.
    c.advance(8_000);
    let now = c.now();
    for i in (0..5).filter(|&i| i != node) {
        assert!(
            c.node(i).unwrap().is_healthy(id, now),
            "node {i} still routes around the restarted node"
        );
    }
    assert_eq!(
        c.copy(node, "g"),
        c.copy(owners[0], "g"),
        "the hint came home"
    );
}
