#![allow(clippy::unwrap_used)]
//! Anti-entropy alone repairs what hinted handoff and read repair cannot: each scenario
//! turns both off, breaks replicas one way, and checks that the trees bring every primary
//! level again — and, as a control, that nothing does with anti-entropy off too.

use cairn_core::{ClientError, ClientOp, ClientReply, Config, Quorum, RequestOptions};
use cairn_crdt::{CounterOp, Op};
use cairn_sim::Cluster;

const KEYS: usize = 40;

fn aae_only(cfg: &mut Config) {
    cfg.handoff_enabled = false;
    cfg.read_repair_enabled = false;
}

fn nothing(cfg: &mut Config) {
    aae_only(cfg);
    cfg.aae_enabled = false;
}

fn incr() -> ClientOp {
    ClientOp::Update(Op::Counter(CounterOp::Increment(1)))
}

fn key(i: usize) -> String {
    format!("k{i}")
}

/// Writes every key once (`w = one`: some replicas may miss it), then returns how many keys
/// have diverging primaries right after the fault, and after 20 simulated seconds.
fn run(
    mut c: Cluster,
    fault: impl FnOnce(&mut Cluster),
    heal: impl FnOnce(&mut Cluster),
) -> (usize, usize) {
    let one = RequestOptions {
        w: Some(Quorum::One),
        ..Default::default()
    };
    fault(&mut c);
    for i in 0..KEYS {
        let at = i % 5;
        let _ = c.call(at, &key(i), incr(), one);
    }
    heal(&mut c);
    let diverged = (0..KEYS).filter(|i| !c.converged(&key(*i))).count();
    c.advance(20_000);
    let left = (0..KEYS).filter(|i| !c.converged(&key(*i))).count();
    (diverged, left)
}

/// What the control run, with anti-entropy off, must show.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Control {
    /// Nothing repairs the replicas.
    NothingRepairs,
    /// The replica restored empty syncs anyway: until it has, its reads count for nothing,
    /// so replica sync runs its exchanges with or without `aae_enabled`.
    SyncRepairs,
}

fn scenario(fault: fn(&mut Cluster), heal: fn(&mut Cluster), control: Control) {
    let (diverged, left) = run(Cluster::with_config(5, 3, 16, 3, aae_only), fault, heal);
    println!("with anti-entropy: {diverged} keys diverged, {left} left after 20 s");
    assert!(diverged > 0, "the fault must make replicas diverge");
    assert_eq!(
        left, 0,
        "anti-entropy left {left} of {diverged} keys diverged"
    );
    let (diverged, left) = run(Cluster::with_config(5, 3, 16, 3, nothing), fault, heal);
    match control {
        Control::NothingRepairs => assert!(
            left > 0 && left == diverged,
            "without anti-entropy nothing repairs them"
        ),
        Control::SyncRepairs => assert!(
            diverged > 0 && left == 0,
            "replica sync repairs the restored replica: {left} of {diverged} left"
        ),
    }
}

#[test]
fn a_replica_that_missed_writes_during_a_partition_without_handoff() {
    scenario(|c| c.isolate(0), |c| c.heal(), Control::NothingRepairs);
}

#[test]
fn a_fallback_that_crashed_and_lost_its_hints() {
    scenario(
        |c| c.isolate(0),
        |c| {
            for i in 1..5 {
                c.drop_hints(i);
            }
            c.heal();
        },
        Control::NothingRepairs,
    );
}

#[test]
fn a_replica_restored_empty() {
    scenario(
        |_| {},
        |c| {
            c.advance(1_000);
            c.crash(0, true);
            c.restart(0);
        },
        Control::SyncRepairs,
    );
}

#[test]
fn a_replica_restored_empty_counts_toward_no_read_quorum_until_synced() {
    let mut c = Cluster::new(3, 3, 16, 3);
    let owners = c.owners("r");
    let (a, b, late) = (owners[0], owners[1], owners[2]);
    // Acknowledged by a and b (the default w = 2); the third replica is cut off.
    c.isolate(late);
    assert!(c.call(a, "r", incr(), RequestOptions::default()).is_ok());
    // b loses its store; then a is cut off and the third replica is back.
    c.crash(b, true);
    c.restart(b);
    c.heal();
    c.isolate(a);
    assert!(c.syncing() > 0, "b started empty");
    // b and the third replica form a read quorum, and neither holds the write. Counting
    // b's empty copy would read "not found" for an acknowledged write.
    let read = c.call(b, "r", ClientOp::Read, RequestOptions::default());
    assert!(
        matches!(read, Err(ClientError::QuorumNotReached { .. })),
        "b's copy must not count yet: {read:?}"
    );
    // Once a is back, b syncs with it and reads count again.
    c.heal();
    c.await_synced(10_000);
    let read = c.call(b, "r", ClientOp::Read, RequestOptions::default());
    assert!(
        matches!(read, Ok(ClientReply::Value(Some(_)))),
        "the synced replica reads the write: {read:?}"
    );
}

fn all() -> RequestOptions {
    RequestOptions {
        r: Some(Quorum::All),
        w: Some(Quorum::All),
        ..Default::default()
    }
}

fn not_found(c: &mut Cluster, at: usize, key: &str) -> bool {
    matches!(
        c.call(at, key, ClientOp::Read, RequestOptions::default()),
        Ok(cairn_core::ClientReply::Value(None))
    )
}

#[test]
fn a_tombstone_every_primary_holds_is_reaped_after_its_grace_period() {
    let mut c = Cluster::with_config(3, 3, 16, 3, |cfg| cfg.tombstone_grace_ms = 5_000);
    assert!(c.call(0, "t", incr(), all()).is_ok());
    assert!(c.call(1, "t", ClientOp::Delete, all()).is_ok());
    c.advance(1_000);
    assert!(
        c.owners("t").iter().all(|&i| c.copy(i, "t").is_some()),
        "kept during the grace period"
    );
    c.advance(6_000);
    assert!(
        c.owners("t").iter().all(|&i| c.copy(i, "t").is_none()),
        "reaped everywhere"
    );
    c.advance(5_000);
    assert!(
        c.owners("t").iter().all(|&i| c.copy(i, "t").is_none()),
        "anti-entropy brings nothing back"
    );
    assert!(not_found(&mut c, 2, "t"));
}

#[test]
fn a_replica_that_missed_the_delete_does_not_resurrect_the_value() {
    let mut c = Cluster::with_config(5, 3, 16, 3, |cfg| cfg.tombstone_grace_ms = 1_000);
    let owners = c.owners("z");
    assert!(c.call(owners[0], "z", incr(), all()).is_ok());
    // One primary is cut off while the key is deleted: a fallback takes its share.
    c.isolate(owners[2]);
    let _ = c.call(owners[0], "z", ClientOp::Delete, RequestOptions::default());
    assert!(c
        .call(owners[0], "z", ClientOp::Delete, RequestOptions::default())
        .is_ok());
    c.advance(5_000);
    assert!(
        c.copy(owners[0], "z").is_some(),
        "not every primary acknowledged: no reaping"
    );
    // It comes back holding the old value; hints, read repair and anti-entropy meet it.
    c.heal();
    c.advance(20_000);
    for &i in &owners {
        assert!(
            not_found(&mut c, i, "z"),
            "node {i} resurrected the deleted value"
        );
    }
    assert!(c.converged("z"));
}

#[test]
fn a_fallback_at_its_hint_bound_refuses_new_keys_but_keeps_what_it_holds() {
    let mut c = Cluster::with_config(4, 3, 16, 3, |cfg| cfg.hint_count_max = 1);
    let owners = c.owners("h0");
    let same: Vec<String> = (1..500)
        .map(|i| format!("h{i}"))
        .filter(|k| c.owners(k) == owners)
        .take(1)
        .collect();
    let (first, second) = ("h0".to_string(), same[0].clone());
    let away = owners[2];
    c.isolate(away);
    let _ = c.call(owners[0], &first, incr(), all()); // notices `away` is silent
    assert!(
        c.call(owners[0], &first, incr(), all()).is_ok(),
        "the fallback keeps one hint"
    );
    let refused = c.call(owners[0], &second, incr(), all());
    assert!(
        matches!(
            refused,
            Err(cairn_core::ClientError::QuorumNotReached { .. })
        ),
        "a second key is refused: {refused:?}"
    );
    assert!(
        c.call(owners[0], &first, incr(), all()).is_ok(),
        "the held hint still merges"
    );
    let fallback = (0..4).find(|i| !owners.contains(i)).unwrap();
    let backlog = c.node(fallback).unwrap().hint_backlog().unwrap();
    assert_eq!(backlog.count, 1);
    c.heal();
    c.advance(5_000);
    assert_eq!(
        c.node(fallback).unwrap().hint_backlog().unwrap().count,
        0,
        "delivered and dropped"
    );
}

/// Preloads `total` keys written by `write(i)`, lets one node miss 1% of later updates
/// (no hints, no read repair), heals, and measures what anti-entropy moves until every
/// primary agrees: `(diverged keys, their state bytes, bytes moved)`.
fn one_percent_divergence(
    total: usize,
    write: impl Fn(usize, u64) -> ClientOp,
) -> (usize, u64, u64) {
    let mut c = Cluster::with_config(5, 3, 16, 3, aae_only);
    for i in 0..total {
        assert!(c.call(i % 5, &key(i), write(i, 0), all()).is_ok());
    }
    c.advance(3_000);
    let totals = |c: &Cluster| {
        let stats = (0..5).filter_map(|i| c.node(i)).map(|n| n.aae_stats());
        stats.fold(0, |acc, s| acc + s.bytes_sent + s.protocol_bytes)
    };
    c.isolate(0);
    let one = RequestOptions {
        w: Some(Quorum::One),
        ..Default::default()
    };
    // Node 0 holds 3 of 5 replicas: updating 2% of keys diverges about 1% of them.
    for i in (0..total).step_by(50) {
        // The first tries may be forwarded to the isolated node (and lost); then routing
        // knows it is away.
        assert!((0..5).any(|_| c.call(1 + i % 4, &key(i), write(i, 1), one).is_ok()));
    }
    c.heal();
    let start = totals(&c);
    let diverged: Vec<usize> = (0..total).filter(|i| !c.converged(&key(*i))).collect();
    let state_bytes: u64 = diverged
        .iter()
        .filter_map(|i| {
            let copies = c
                .owners(&key(*i))
                .into_iter()
                .filter_map(|o| c.copy(o, &key(*i)));
            copies
                .map(|v| cairn_proto::encode_value(&v).len() as u64)
                .max()
        })
        .sum();
    for _ in 0..200 {
        if (0..total).all(|i| c.converged(&key(i))) {
            break;
        }
        c.advance(100);
    }
    assert!(
        (0..total).all(|i| c.converged(&key(i))),
        "not converged after 20 s"
    );
    (diverged.len(), state_bytes, totals(&c) - start)
}

fn keys_under_test() -> usize {
    // 2,000 keys in CI; the note's figures come from CAIRN_AAE_KEYS=10000.
    std::env::var("CAIRN_AAE_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

#[test]
fn repairing_one_percent_of_sets_moves_at_most_three_times_their_size() {
    let total = keys_under_test();
    let write = |i: usize, round: u64| {
        let members = (0..40)
            .map(|m| format!("member-{i}-{round}-{m:04}").into_bytes())
            .collect();
        ClientOp::Update(Op::Set(cairn_crdt::SetOp::Add(members)))
    };
    let (diverged, state, moved) = one_percent_divergence(total, write);
    println!(
        "sets: {diverged} of {total} keys diverged ({state} B of state); anti-entropy moved {moved} B ({:.2}x)",
        moved as f64 / state as f64
    );
    assert!(diverged > 0);
    assert!(
        moved <= 3 * state,
        "moved {moved} B for {state} B of divergent state"
    );
}

#[test]
fn repairing_one_percent_of_counters_is_dominated_by_hashes() {
    let total = keys_under_test();
    let (diverged, state, moved) = one_percent_divergence(total, |_, _| incr());
    // Counters encode in about 27 bytes, less than the hashes that find them: reported,
    // not asserted (see the issue note).
    println!(
        "counters: {diverged} of {total} keys diverged ({state} B of state); anti-entropy moved {moved} B ({:.2}x)",
        moved as f64 / state as f64
    );
    assert!(diverged > 0);
}

/// Keys in one partition beyond what one exchange lists (`AAE_KEYS_MAX`), spread over
/// its segments as hashing spreads them.
const MANY: usize = 3 * cairn_core::AAE_KEYS_MAX;

/// A cluster of three with one partition, every key of `0..MANY` written to all three.
fn many_keys() -> Cluster {
    let mut c = Cluster::with_config(3, 3, 1, 3, aae_only);
    for i in 0..MANY {
        assert!(c.call(i % 3, &key(i), incr(), all()).is_ok());
    }
    c
}

fn missing(c: &Cluster, node: usize) -> usize {
    (0..MANY)
        .filter(|i| c.copy(node, &key(*i)).is_none())
        .count()
}

#[test]
fn a_replica_that_missed_more_keys_than_one_exchange_lists_gets_them_all() {
    let mut c = many_keys();
    // Node 0 misses a second write to every key.
    c.isolate(0);
    let one = RequestOptions {
        w: Some(Quorum::One),
        ..Default::default()
    };
    for i in 0..MANY {
        assert!(c.call(1 + i % 2, &key(i), incr(), one).is_ok());
    }
    c.heal();
    let diverged = (0..MANY).filter(|i| !c.converged(&key(*i))).count();
    assert_eq!(diverged, MANY);
    c.advance(60_000);
    let left = (0..MANY).filter(|i| !c.converged(&key(*i))).count();
    assert_eq!(left, 0, "{left} of {MANY} keys still diverged after 60 s");
}

/// Keys that all fall in segment 0 of their partition, more than one exchange lists.
fn one_segment_keys() -> Vec<String> {
    let segments = cairn_core::aae::SEGMENTS as u64;
    (0..)
        .map(|i| format!("s{i}"))
        .filter(|k| cairn_ring::key_hash(b"b", k.as_bytes()) % segments == 0)
        .take(cairn_core::AAE_KEYS_MAX + 512)
        .collect()
}

#[test]
fn a_replica_that_missed_more_keys_of_one_segment_than_one_exchange_lists_gets_them_all() {
    let keys = one_segment_keys();
    let mut c = Cluster::with_config(3, 3, 1, 3, aae_only);
    // Node 0 misses every write.
    c.isolate(0);
    let one = RequestOptions {
        w: Some(Quorum::One),
        ..Default::default()
    };
    for (i, k) in keys.iter().enumerate() {
        assert!(c.call(1 + i % 2, k, incr(), one).is_ok());
    }
    c.heal();
    c.advance(60_000);
    let left = keys.iter().filter(|k| !c.converged(k)).count();
    assert_eq!(
        left,
        0,
        "{left} of {} keys still diverged after 60 s",
        keys.len()
    );
}

#[test]
fn a_replica_restored_empty_syncs_more_keys_than_one_exchange_lists() {
    let mut c = many_keys();
    let repaired = |c: &Cluster| -> u64 {
        (1..3)
            .filter_map(|i| c.node(i))
            .map(|n| n.aae_stats().keys_repaired)
            .sum()
    };
    let before = repaired(&c);
    c.crash(0, true);
    c.restart(0);
    c.await_synced(30_000);
    assert_eq!(missing(&c, 0), 0);
    // Each key crosses about once: the node syncs a partition with one peer at a time,
    // so the second peer finds the first one's repairs there. Both at once sent 2x
    // (6,144 repairs for 3,072 keys).
    let sent = repaired(&c) - before;
    assert!(
        sent <= MANY as u64 * 11 / 10,
        "its peers sent {sent} repairs for {MANY} keys"
    );
}
