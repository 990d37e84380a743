//! Placement properties over random clusters, with the measured figures printed
//! (`cargo test -p cairn-ring --test ring properties -- --nocapture`).
//!
//! Clusters: `n_max` in {2, 3}; `n_max..=8` nodes; 1 to 4 zones drawn per node; capacities
//! 1 to 4; `Q` the next power of two `>= 16 x nodes` (times 1 or 2). `PROPTEST_CASES`
//! sets the number of cases (256 by default).

use std::cell::RefCell;
use std::collections::BTreeMap;

use cairn_ring::{Layout, LayoutConfig, NodeId, PartitionId};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use crate::{check_placement, role, ADMIN};

#[derive(Clone, Debug)]
struct Cluster {
    q: u16,
    n: u8,
    /// `(zone index, capacity)` of nodes `1..=len`.
    nodes: Vec<(usize, u64)>,
}

fn cluster(capacities: std::ops::RangeInclusive<u64>) -> impl Strategy<Value = Cluster> {
    (2u8..=3, 1usize..=4, 0u32..=1).prop_flat_map(move |(n, zones, doubling)| {
        let node = (0..zones, capacities.clone());
        prop::collection::vec(node, usize::from(n)..=8).prop_map(move |nodes| {
            let q = (16 * nodes.len()).next_power_of_two() << doubling;
            let q = u16::try_from(q).expect("at most 256");
            Cluster { q, n, nodes }
        })
    })
}

/// Clusters of equal capacities whose nodes are dealt to zones round-robin: the zone rules
/// bind less often, so more cases test the movement bounds.
fn even_cluster() -> impl Strategy<Value = Cluster> {
    (2u8..=3, 1usize..=4, 0u32..=1).prop_flat_map(|(n, zones, doubling)| {
        (usize::from(n)..=8).prop_map(move |k| {
            let q = (16 * k).next_power_of_two() << doubling;
            let q = u16::try_from(q).expect("at most 256");
            let nodes = (0..k).map(|i| (i % zones, 1)).collect();
            Cluster { q, n, nodes }
        })
    })
}

fn zone_name(zone: usize) -> String {
    format!("z{zone}")
}

fn build(cluster: &Cluster, order: &[usize]) -> Layout {
    let config = LayoutConfig::new(cluster.q, cluster.n).expect("valid shape");
    let mut layout = Layout::new(config);
    for &i in order {
        let (zone, capacity) = cluster.nodes[i];
        let id = NodeId(i as u64 + 1);
        layout
            .stage_node(id, role(&zone_name(zone), capacity), ADMIN)
            .expect("stages");
    }
    layout.commit().expect("placeable");
    layout
}

/// The ideal, fractional slot count of each node (in node order): proportional to
/// capacity where no bound binds, found by water-filling independently of the crate's
/// integer apportionment. Bounds: a node holds at most `Q` slots (one per partition); a
/// zone at most `Q` when there are `>= n` zones, at least `Q` when there are fewer.
fn ideal(cluster: &Cluster) -> Vec<f64> {
    let (q, n) = (f64::from(cluster.q), usize::from(cluster.n));
    let zone_ids: std::collections::BTreeSet<usize> = cluster.nodes.iter().map(|x| x.0).collect();
    let zones: Vec<Vec<usize>> = zone_ids
        .iter()
        .map(|z| {
            (0..cluster.nodes.len())
                .filter(|&i| cluster.nodes[i].0 == *z)
                .collect()
        })
        .collect();
    let cap = |i: usize| cluster.nodes[i].1 as f64;
    let raw = |members: &[usize], lambda: f64| -> f64 {
        members.iter().map(|&i| q.min(lambda * cap(i))).sum()
    };
    let zone_total = |members: &[usize], lambda: f64| -> f64 {
        let r = raw(members, lambda);
        if zones.len() >= n {
            r.min(q)
        } else {
            r.max(q)
        }
    };
    let target = n as f64 * q;
    let lambda = bisect(
        |l| zones.iter().map(|m| zone_total(m, l)).sum::<f64>(),
        target,
    );
    let mut out = vec![0.0; cluster.nodes.len()];
    for members in &zones {
        let total = zone_total(members, lambda);
        let mu = bisect(|m| raw(members, m), total);
        for &i in members {
            out[i] = q.min(mu * cap(i));
        }
    }
    out
}

/// The `x` with `f(x) == target` for a non-decreasing `f` (to 1e-9 relative).
fn bisect(f: impl Fn(f64) -> f64, target: f64) -> f64 {
    let (mut lo, mut hi) = (0.0, 1.0);
    while f(hi) < target && hi < 1e12 {
        hi *= 2.0;
    }
    for _ in 0..200 {
        let mid = (lo + hi) / 2.0;
        if f(mid) < target {
            lo = mid
        } else {
            hi = mid
        }
    }
    hi
}

fn slots(layout: &Layout, nodes: usize) -> Vec<u32> {
    let counts = layout.slot_counts();
    (1..=nodes as u64)
        .map(|id| counts.get(&NodeId(id)).copied().unwrap_or(0))
        .collect()
}

fn run<S: Strategy>(strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    let mut runner = TestRunner::new(Config::default());
    if let Err(e) = runner.run(&strategy, test) {
        panic!("{e}");
    }
}

#[test]
fn every_partition_spans_its_zones() {
    run(cluster(1..=4), |c| {
        let order: Vec<usize> = (0..c.nodes.len()).collect();
        prop_assert_eq!(check_placement(&build(&c, &order)), Ok(()));
        Ok(())
    });
}

/// "Within 10%": `|slots_i - ideal_i| <= 0.10 x ideal_i` for every node, where `ideal_i`
/// is the water-filled share above (`n x Q x capacity_i / total capacity` when no bound
/// binds; exactly `Q`, the cap, for a node whose share would exceed one replica per
/// partition). Nodes of 1..4 capacity units and `Q >= 16 x nodes` keep every unbounded
/// share at 12 slots or more, where one slot of rounding is under 10%. A zone cap can
/// squeeze a crowded zone's nodes below that (7 slots at the least here); for ideal
/// shares under 10 slots the test asserts less than one slot of rounding instead.
#[test]
fn shares_follow_capacity_within_ten_percent() {
    let worst = RefCell::new((0.0f64, 0.0f64, f64::MAX));
    run(cluster(1..=4), |c| {
        let order: Vec<usize> = (0..c.nodes.len()).collect();
        let layout = build(&c, &order);
        let ideal = ideal(&c);
        for (i, (&got, want)) in slots(&layout, c.nodes.len()).iter().zip(&ideal).enumerate() {
            let deviation = (f64::from(got) - want).abs() / want;
            let mut w = worst.borrow_mut();
            w.0 = w.0.max(deviation);
            w.1 = w.1.max((f64::from(got) - want).abs());
            w.2 = w.2.min(*want);
            let off = (f64::from(got) - want).abs();
            prop_assert!(
                deviation <= 0.10 || (*want < 10.0 && off < 1.0),
                "node {}: {} slots, ideal {:.2}: {:?}",
                i + 1,
                got,
                want,
                c
            );
        }
        Ok(())
    });
    let (rel, abs, least) = worst.into_inner();
    eprintln!(
        "shares: max deviation from the ideal share {:.2}% ({abs:.2} slots at most; \
         smallest ideal share {least:.2} slots)",
        rel * 100.0
    );
}

/// Adding one node (same capacity as the others) to `k` nodes moves at most
/// `1.2 x Q x n / (k + 1)` slots whenever the zone rules do not hand the new node more
/// than its capacity share `Q x n / (k + 1)`. Forced cases (a new zone that every
/// partition must now reach, or a small zone whose fixed total the newcomer shares) are
/// measured and printed, not bounded. "Extra" slots are those moved beyond the new
/// node's own.
#[test]
fn adding_a_node_moves_little() {
    let stats = RefCell::new(MoveStats::default());
    // Mostly into an existing zone; sometimes into a new one (zone 4), which every
    // partition may then have to reach.
    let clusters = prop_oneof![1 => cluster(1..=1), 3 => even_cluster()];
    let strategy = clusters.prop_flat_map(|c| {
        let zones: Vec<usize> = c.nodes.iter().map(|x| x.0).collect();
        (
            Just(c),
            prop_oneof![4 => prop::sample::select(zones), 1 => Just(4)],
        )
    });
    run(strategy, |(c, zone)| {
        let mut grown = c.clone();
        grown.nodes.push((zone, 1));
        let order: Vec<usize> = (0..c.nodes.len()).collect();
        let mut layout = build(&c, &order);
        let new = NodeId(grown.nodes.len() as u64);
        layout
            .stage_node(new, role(&zone_name(zone), 1), ADMIN)
            .expect("stages");
        let moved = layout.commit().expect("placeable").moved_slots();
        prop_assert_eq!(check_placement(&layout), Ok(()));
        let gained = layout.slot_counts()[&new];
        let k = c.nodes.len() as f64;
        let plain = f64::from(c.q) * f64::from(c.n) / (k + 1.0);
        let bound = 1.2 * plain;
        // Free: the zone rules hand the new node no more than its capacity share.
        let free = ideal(&grown)[c.nodes.len()] <= plain + 1e-6;
        stats.borrow_mut().record(free, moved as f64 / bound);
        stats.borrow_mut().extra(free, moved - u64::from(gained));
        if free {
            prop_assert!(
                moved as f64 <= bound,
                "moved {} > bound {:.1}: {:?}",
                moved,
                bound,
                grown
            );
        }
        Ok(())
    });
    stats
        .into_inner()
        .print("add one node", "the bound 1.2 x Q x n / (k+1)");
}

/// Removing a node moves its slots and, where the zone rules make the survivors' new
/// shares fall unevenly on the removed node's partitions, a little more. Measured and
/// printed; asserted: exactly the removed node's slots in one zone of equal capacities
/// (no zone rule), at most 1.5 times them whenever no bound binds.
#[test]
fn removing_a_node_moves_mostly_its_slots() {
    let stats = RefCell::new(MoveStats::default());
    let strategy = prop_oneof![1 => cluster(1..=1), 2 => even_cluster()]
        .prop_filter("a node to spare", |c| c.nodes.len() > usize::from(c.n));
    run((strategy, any::<prop::sample::Index>()), |(c, gone)| {
        let order: Vec<usize> = (0..c.nodes.len()).collect();
        let mut layout = build(&c, &order);
        let gone = gone.index(c.nodes.len());
        let id = NodeId(gone as u64 + 1);
        let held = layout.slot_counts()[&id];
        layout.stage_remove(id, ADMIN).expect("stages");
        let moved = layout.commit().expect("placeable").moved_slots();
        prop_assert_eq!(check_placement(&layout), Ok(()));
        let mut shrunk = c.clone();
        shrunk.nodes.remove(gone);
        let free = unconstrained(&c) && unconstrained(&shrunk);
        prop_assert!(moved >= u64::from(held));
        stats
            .borrow_mut()
            .record(free, moved as f64 / f64::from(held));
        stats.borrow_mut().extra(free, moved - u64::from(held));
        if c.nodes.iter().all(|x| x.0 == c.nodes[0].0) {
            prop_assert_eq!(moved, u64::from(held), "one zone: {:?}", c);
        }
        if free {
            prop_assert!(
                moved as f64 <= 1.5 * f64::from(held),
                "moved {} of {}: {:?}",
                moved,
                held,
                c
            );
        }
        Ok(())
    });
    stats
        .into_inner()
        .print("remove one node", "the removed node's slots");
}

/// Unequal capacities: adding or removing a node, measured against the slots the added
/// node gains or the removed node held.
#[test]
fn changes_with_unequal_capacities_are_measured() {
    let stats = RefCell::new(MoveStats::default());
    run(
        (cluster(1..=4), 0usize..5, 1u64..=4),
        |(c, zone, capacity)| {
            let order: Vec<usize> = (0..c.nodes.len()).collect();
            let mut layout = build(&c, &order);
            let new = NodeId(c.nodes.len() as u64 + 1);
            layout
                .stage_node(new, role(&zone_name(zone), capacity), ADMIN)
                .expect("stages");
            let moved = layout.commit().expect("placeable").moved_slots();
            let gained = layout.slot_counts()[&new];
            prop_assert_eq!(check_placement(&layout), Ok(()));
            prop_assert!(moved >= u64::from(gained));
            stats
                .borrow_mut()
                .record(true, moved as f64 / f64::from(gained.max(1)));
            Ok(())
        },
    );
    stats
        .into_inner()
        .print("add one node, unequal capacities", "the new node's slots");
}

/// Whether no bound binds, with at least a slot to spare: every ideal share is the plain
/// capacity share, and every node and zone is a slot or more away from its cap or floor.
/// At a bound the zone rule dictates which partitions a zone must be in (say, every one),
/// and that, not capacity, decides what moves.
fn unconstrained(c: &Cluster) -> bool {
    let total: u64 = c.nodes.iter().map(|x| x.1).sum();
    let (q, n) = (f64::from(c.q), usize::from(c.n));
    let slots = q * n as f64;
    let plain: Vec<f64> = c
        .nodes
        .iter()
        .map(|x| slots * x.1 as f64 / total as f64)
        .collect();
    let ideal = ideal(c);
    let proportional = ideal.iter().zip(&plain).all(|(a, b)| (a - b).abs() < 1e-6);
    let mut zone_totals: BTreeMap<usize, f64> = BTreeMap::new();
    for (i, share) in plain.iter().enumerate() {
        *zone_totals.entry(c.nodes[i].0).or_default() += share;
    }
    let zones = zone_totals.len();
    let zones_free = zone_totals.values().all(|t| {
        if zones >= n {
            *t <= q - 1.0
        } else {
            *t >= q + 1.0
        }
    });
    let nodes_free = plain.iter().all(|t| *t <= q - 1.0);
    proportional && zones_free && nodes_free
}

#[derive(Default)]
struct MoveStats {
    free: (u32, f64),
    forced: (u32, f64),
    /// Largest number of slots moved beyond the removed node's, unconstrained and forced.
    extra: (u64, u64),
}

impl MoveStats {
    fn record(&mut self, free: bool, ratio: f64) {
        let slot = if free {
            &mut self.free
        } else {
            &mut self.forced
        };
        slot.0 += 1;
        slot.1 = slot.1.max(ratio);
    }

    fn extra(&mut self, free: bool, slots: u64) {
        let slot = if free {
            &mut self.extra.0
        } else {
            &mut self.extra.1
        };
        *slot = (*slot).max(slots);
    }

    fn print(&self, what: &str, against: &str) {
        eprintln!(
            "{what}: max moved / {against} = {:.3} over {} unconstrained cases; {:.3} over {} zone-forced cases (max extra slots {} / {})",
            self.free.1, self.free.0, self.forced.1, self.forced.0, self.extra.0, self.extra.1
        );
    }
}

#[test]
fn placement_is_deterministic_and_ignores_input_order() {
    let strategy = cluster(1..=4).prop_flat_map(|c| {
        let order: Vec<usize> = (0..c.nodes.len()).collect();
        (Just(c), Just(order).prop_shuffle())
    });
    run(strategy, |(c, shuffled)| {
        let order: Vec<usize> = (0..c.nodes.len()).collect();
        let reversed: Vec<usize> = order.iter().rev().copied().collect();
        let a = build(&c, &order);
        prop_assert_eq!(&a, &build(&c, &order));
        prop_assert_eq!(&a, &build(&c, &shuffled));
        prop_assert_eq!(&a, &build(&c, &reversed));
        Ok(())
    });
}

#[test]
fn recomputing_an_unchanged_roster_moves_nothing() {
    run(cluster(1..=4), |c| {
        let order: Vec<usize> = (0..c.nodes.len()).collect();
        let mut layout = build(&c, &order);
        // Re-stage node 1 with its own role: the plan must keep every slot and order.
        let (zone, capacity) = c.nodes[0];
        layout
            .stage_node(NodeId(1), role(&zone_name(zone), capacity), ADMIN)
            .expect("stages");
        let plan = layout.plan().expect("placeable");
        prop_assert_eq!(plan.moved_slots(), 0);
        prop_assert!(plan.moves().is_empty());
        let p0 = PartitionId(0);
        prop_assert_eq!(plan.replicas(p0), layout.replicas(p0));
        Ok(())
    });
}

#[test]
fn slot_counts_sum_to_q_times_n() {
    run(cluster(1..=4), |c| {
        let order: Vec<usize> = (0..c.nodes.len()).collect();
        let layout = build(&c, &order);
        let total: u32 = layout.slot_counts().values().sum();
        prop_assert_eq!(total, u32::from(c.q) * u32::from(c.n));
        let per_node: BTreeMap<_, _> = layout.slot_counts();
        prop_assert!(per_node.values().all(|&s| s <= u32::from(c.q)));
        Ok(())
    });
}
