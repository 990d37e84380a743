//! The simulated network's faults: which links are cut, lossy or slow, and which nodes are
//! paused. Partition shapes follow Jepsen's nemeses.

use std::collections::{BTreeMap, BTreeSet};

use crate::rng::Rng;

/// Link and node state of the simulated network.
#[derive(Clone, Debug)]
pub(crate) struct Net {
    n: usize,
    cut: BTreeSet<(usize, usize)>,
    lossy: BTreeMap<(usize, usize), f64>,
    slow: BTreeMap<(usize, usize), u64>,
    paused_until: Vec<u64>,
}

/// A partition shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    /// Two random groups.
    Halves,
    /// One node alone.
    Isolate,
    /// Nodes on a ring, each talking only to its neighbours: every node sees a majority
    /// (for five nodes), no two the same one.
    MajorityRing,
    /// Two groups that cannot talk, and one node that talks to both.
    Bridge,
}

impl Net {
    pub(crate) fn new(n: usize) -> Self {
        Net {
            n,
            cut: BTreeSet::new(),
            lossy: BTreeMap::new(),
            slow: BTreeMap::new(),
            paused_until: vec![0; n],
        }
    }

    pub(crate) fn can_talk(&self, a: usize, b: usize) -> bool {
        !self.cut.contains(&(a, b))
    }

    /// Extra loss on the link `a -> b`.
    pub(crate) fn loss(&self, a: usize, b: usize) -> f64 {
        self.lossy.get(&(a, b)).copied().unwrap_or(0.0)
    }

    /// Extra delay on the link `a -> b`.
    pub(crate) fn delay(&self, a: usize, b: usize) -> u64 {
        self.slow.get(&(a, b)).copied().unwrap_or(0)
    }

    /// Until when node `i` is paused (0: running).
    pub(crate) fn paused_until(&self, i: usize) -> u64 {
        self.paused_until[i]
    }

    pub(crate) fn pause(&mut self, i: usize, until: u64) {
        self.paused_until[i] = self.paused_until[i].max(until);
    }

    /// Every link whole, fast and reliable again, and every node running.
    pub(crate) fn heal(&mut self, now: u64) {
        self.cut.clear();
        self.lossy.clear();
        self.slow.clear();
        for p in &mut self.paused_until {
            *p = (*p).min(now);
        }
    }

    /// Replaces the cut links with `shape`.
    pub(crate) fn partition(&mut self, shape: Shape, rng: &mut Rng) {
        self.cut.clear();
        let order = shuffled(self.n, rng);
        match shape {
            Shape::Halves => {
                let split = 1 + rng.index(self.n - 1);
                self.cut_between(&order[..split], &order[split..]);
            }
            Shape::Isolate => self.cut_between(&order[..1], &order[1..]),
            Shape::MajorityRing => {
                for (i, &a) in order.iter().enumerate() {
                    for (j, &b) in order.iter().enumerate() {
                        let distance = i.abs_diff(j).min(self.n - i.abs_diff(j));
                        if distance > 1 {
                            self.cut.insert((a, b));
                        }
                    }
                }
            }
            Shape::Bridge => {
                let rest = &order[1..];
                let split = rest.len() / 2;
                self.cut_between(&rest[..split], &rest[split..]);
            }
        }
    }

    /// Makes the link between `a` and `b` drop `loss` of its messages.
    pub(crate) fn make_lossy(&mut self, a: usize, b: usize, loss: f64) {
        self.lossy.insert((a, b), loss);
        self.lossy.insert((b, a), loss);
    }

    /// Adds `ms` to every message on the link between `a` and `b`.
    pub(crate) fn make_slow(&mut self, a: usize, b: usize, ms: u64) {
        self.slow.insert((a, b), ms);
        self.slow.insert((b, a), ms);
    }

    fn cut_between(&mut self, left: &[usize], right: &[usize]) {
        for &a in left {
            for &b in right {
                self.cut.insert((a, b));
                self.cut.insert((b, a));
            }
        }
    }
}

fn shuffled(n: usize, rng: &mut Rng) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    for k in (1..n).rev() {
        order.swap(k, rng.index(k + 1));
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sees(net: &Net, a: usize) -> usize {
        (0..net.n).filter(|&b| net.can_talk(a, b)).count()
    }

    #[test]
    fn majority_ring_gives_every_node_a_different_majority() {
        let mut net = Net::new(5);
        net.partition(Shape::MajorityRing, &mut Rng::new(3));
        let views: BTreeSet<Vec<usize>> = (0..5)
            .map(|a| (0..5).filter(|&b| net.can_talk(a, b)).collect())
            .collect();
        assert!((0..5).all(|a| sees(&net, a) == 3));
        assert_eq!(views.len(), 5);
    }

    #[test]
    fn bridge_node_talks_to_everyone_and_the_sides_do_not() {
        let mut net = Net::new(5);
        net.partition(Shape::Bridge, &mut Rng::new(9));
        let bridges: Vec<usize> = (0..5).filter(|&a| sees(&net, a) == 5).collect();
        assert_eq!(bridges.len(), 1);
        assert!((0..5)
            .filter(|a| !bridges.contains(a))
            .all(|a| sees(&net, a) < 5));
    }

    #[test]
    fn heal_restores_everything() {
        let mut net = Net::new(4);
        net.partition(Shape::Halves, &mut Rng::new(1));
        net.make_lossy(0, 1, 0.5);
        net.pause(2, 100);
        net.heal(10);
        assert!((0..4).all(|a| (0..4).all(|b| net.can_talk(a, b))));
        assert_eq!((net.loss(0, 1), net.paused_until(2)), (0.0, 10));
    }
}
