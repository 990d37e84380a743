//! Minimum-cost maximum flow (primal-dual): the solver behind placement.
//!
//! Each phase runs Dijkstra on reduced costs (costs plus node potentials, never negative),
//! raises the potentials by the distances, then saturates every shortest path at once with
//! a blocking flow (Dinic) over the *admissible* edges, those of reduced cost zero. Each
//! phase strictly lengthens the shortest augmenting path, so the number of phases is at
//! most the spread of path costs, which placement keeps tiny (costs are -1, 0 or +1 per
//! edge). The result is a maximum flow of minimum cost: no negative cycle is left in the
//! residual graph.
//!
//! Everything runs in index order over arrays, so equal inputs give equal flows.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

const UNREACHED: i64 = i64::MAX;

/// A flow network. Edge `e`'s reverse is `e ^ 1`.
#[derive(Debug, Default)]
pub(crate) struct Network {
    adjacency: Vec<Vec<u32>>,
    edges: Vec<Edge>,
}

#[derive(Clone, Copy, Debug)]
struct Edge {
    to: u32,
    /// Residual capacity.
    cap: u32,
    cost: i32,
}

impl Network {
    pub(crate) fn with_vertices(count: usize) -> Self {
        Self {
            adjacency: vec![Vec::new(); count],
            edges: Vec::new(),
        }
    }

    /// Adds `from -> to` and its reverse; returns the edge's id for [`Self::flow`].
    pub(crate) fn add_edge(&mut self, from: usize, to: usize, cap: u32, cost: i32) -> usize {
        let id = self.edges.len();
        self.edges.push(Edge {
            to: vertex(to),
            cap,
            cost,
        });
        self.edges.push(Edge {
            to: vertex(from),
            cap: 0,
            cost: -cost,
        });
        self.adjacency[from].push(edge_id(id));
        self.adjacency[to].push(edge_id(id + 1));
        id
    }

    /// The flow on edge `id` (the reverse edge's residual capacity).
    pub(crate) fn flow(&self, id: usize) -> u32 {
        self.edges[id ^ 1].cap
    }

    /// Pushes a maximum flow of minimum cost from `source` to `sink`; returns its value.
    ///
    /// The network must have no cycle of negative cost reachable from `source` at the
    /// start (placement's network is acyclic).
    pub(crate) fn min_cost_max_flow(&mut self, source: usize, sink: usize) -> u64 {
        let mut potential = self.initial_potentials(source);
        let mut total = 0;
        loop {
            let dist = self.dijkstra(source, &potential);
            let to_sink = dist[sink];
            if to_sink == UNREACHED {
                return total;
            }
            // min(dist, dist[sink]) keeps every residual reduced cost non-negative, and
            // makes exactly the edges on shortest source-sink paths admissible.
            for (p, d) in potential.iter_mut().zip(&dist) {
                *p += (*d).min(to_sink);
            }
            total += self.blocking_flows(source, sink, &potential);
        }
    }

    /// Shortest distances from `source` by Bellman-Ford (the start network is acyclic,
    /// so this settles in as many rounds as its longest path). Unreached vertices get 0;
    /// they stay unreachable, since new residual edges only join reached vertices.
    fn initial_potentials(&self, source: usize) -> Vec<i64> {
        let mut dist = vec![UNREACHED; self.adjacency.len()];
        dist[source] = 0;
        for _ in 0..self.adjacency.len() {
            let mut changed = false;
            for (u, out) in self.adjacency.iter().enumerate() {
                if dist[u] == UNREACHED {
                    continue;
                }
                for &e in out {
                    let edge = self.edges[e as usize];
                    let through = dist[u] + i64::from(edge.cost);
                    if edge.cap > 0 && through < dist[edge.to as usize] {
                        dist[edge.to as usize] = through;
                        changed = true;
                    }
                }
            }
            if !changed {
                break;
            }
        }
        dist.iter()
            .map(|&d| if d == UNREACHED { 0 } else { d })
            .collect()
    }

    fn reduced(&self, u: usize, edge: Edge, potential: &[i64]) -> i64 {
        i64::from(edge.cost) + potential[u] - potential[edge.to as usize]
    }

    fn dijkstra(&self, source: usize, potential: &[i64]) -> Vec<i64> {
        let mut dist = vec![UNREACHED; self.adjacency.len()];
        let mut heap = BinaryHeap::new();
        dist[source] = 0;
        heap.push(Reverse((0, source)));
        while let Some(Reverse((d, u))) = heap.pop() {
            if d > dist[u] {
                continue;
            }
            for &e in &self.adjacency[u] {
                let edge = self.edges[e as usize];
                if edge.cap == 0 {
                    continue;
                }
                let to = edge.to as usize;
                let through = d + self.reduced(u, edge, potential);
                if through < dist[to] {
                    dist[to] = through;
                    heap.push(Reverse((through, to)));
                }
            }
        }
        dist
    }

    /// Dinic on the admissible subnetwork until the sink is cut off from the source.
    fn blocking_flows(&mut self, source: usize, sink: usize, potential: &[i64]) -> u64 {
        let mut total = 0;
        while let Some(level) = self.levels(source, sink, potential) {
            let mut next_arc = vec![0usize; self.adjacency.len()];
            while let Some(path) =
                self.augmenting_path(source, sink, &level, &mut next_arc, potential)
            {
                let bottleneck = path
                    .iter()
                    .map(|&e| self.edges[e].cap)
                    .min()
                    .expect("a path to a distinct sink has an edge");
                for &e in &path {
                    self.edges[e].cap -= bottleneck;
                    self.edges[e ^ 1].cap += bottleneck;
                }
                total += u64::from(bottleneck);
            }
        }
        total
    }

    fn admissible(&self, u: usize, e: usize, potential: &[i64]) -> bool {
        let edge = self.edges[e];
        edge.cap > 0 && self.reduced(u, edge, potential) == 0
    }

    /// BFS levels over admissible edges, or `None` when the sink is unreachable.
    fn levels(&self, source: usize, sink: usize, potential: &[i64]) -> Option<Vec<u32>> {
        let mut level = vec![u32::MAX; self.adjacency.len()];
        let mut queue = std::collections::VecDeque::from([source]);
        level[source] = 0;
        while let Some(u) = queue.pop_front() {
            for &e in &self.adjacency[u] {
                let to = self.edges[e as usize].to as usize;
                if level[to] == u32::MAX && self.admissible(u, e as usize, potential) {
                    level[to] = level[u] + 1;
                    queue.push_back(to);
                }
            }
        }
        (level[sink] != u32::MAX).then_some(level)
    }

    /// One source-sink path in the level graph, iteratively (paths can be long, so no
    /// recursion), advancing each vertex's current arc past dead ends.
    fn augmenting_path(
        &self,
        source: usize,
        sink: usize,
        level: &[u32],
        next_arc: &mut [usize],
        potential: &[i64],
    ) -> Option<Vec<usize>> {
        let mut path: Vec<usize> = Vec::new();
        let mut u = source;
        while u != sink {
            match self.advance(u, level, next_arc, potential) {
                Some(e) => {
                    path.push(e);
                    u = self.edges[e].to as usize;
                }
                None => {
                    // Dead end: retreat and skip the arc that led here.
                    let back = path.pop()?;
                    u = self.edges[back ^ 1].to as usize;
                    next_arc[u] += 1;
                }
            }
        }
        Some(path)
    }

    fn advance(
        &self,
        u: usize,
        level: &[u32],
        next_arc: &mut [usize],
        potential: &[i64],
    ) -> Option<usize> {
        while let Some(&e) = self.adjacency[u].get(next_arc[u]) {
            let e = e as usize;
            let to = self.edges[e].to as usize;
            if level[to] == level[u] + 1 && self.admissible(u, e, potential) {
                return Some(e);
            }
            next_arc[u] += 1;
        }
        None
    }
}

fn vertex(v: usize) -> u32 {
    u32::try_from(v).expect("placement networks have far fewer than 2^32 vertices")
}

fn edge_id(e: usize) -> u32 {
    u32::try_from(e).expect("placement networks have far fewer than 2^32 edges")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    impl Network {
        /// Whether the residual network has a cycle of negative cost (Bellman-Ford from a
        /// virtual source joined to every vertex): a flow without one is of minimum cost.
        pub(crate) fn has_negative_cycle(&self) -> bool {
            let mut dist = vec![0i64; self.adjacency.len()];
            for _ in 0..=self.adjacency.len() {
                let mut changed = false;
                for (u, out) in self.adjacency.iter().enumerate() {
                    for &e in out {
                        let edge = self.edges[e as usize];
                        let through = dist[u] + i64::from(edge.cost);
                        if edge.cap > 0 && through < dist[edge.to as usize] {
                            dist[edge.to as usize] = through;
                            changed = true;
                        }
                    }
                }
                if !changed {
                    return false;
                }
            }
            true
        }

        fn reaches(&self, from: usize, to: usize) -> bool {
            let mut seen = vec![false; self.adjacency.len()];
            let mut stack = vec![from];
            seen[from] = true;
            while let Some(u) = stack.pop() {
                for &e in &self.adjacency[u] {
                    let edge = self.edges[e as usize];
                    if edge.cap > 0 && !seen[edge.to as usize] {
                        seen[edge.to as usize] = true;
                        stack.push(edge.to as usize);
                    }
                }
            }
            seen[to]
        }
    }

    proptest! {
        /// Random layered networks shaped like placement's (source, two layers, sink) with
        /// costs -1 or 0: the result is a maximum flow (the sink is cut off) of minimum
        /// cost (no negative residual cycle).
        #[test]
        fn flows_are_maximum_and_cheapest(
            left in 1usize..6,
            right in 1usize..6,
            edges in prop::collection::vec((0usize..6, 0usize..6, 1u32..3, -1i32..=0), 0..30),
            supply in prop::collection::vec(1u32..4, 6),
            demand in prop::collection::vec(1u32..4, 6),
        ) {
            let (source, sink) = (0, 1);
            let mut net = Network::with_vertices(2 + left + right);
            for (l, &cap) in supply.iter().take(left).enumerate() {
                net.add_edge(source, 2 + l, cap, 0);
            }
            for (l, r, cap, cost) in edges {
                net.add_edge(2 + l % left, 2 + left + r % right, cap, cost);
            }
            for (r, &cap) in demand.iter().take(right).enumerate() {
                net.add_edge(2 + left + r, sink, cap, 0);
            }
            net.min_cost_max_flow(source, sink);
            prop_assert!(!net.reaches(source, sink));
            prop_assert!(!net.has_negative_cycle());
        }
    }

    #[test]
    fn finds_the_cheaper_of_two_routes() {
        // 0 -> 1 -> 3 costs 0, 0 -> 2 -> 3 costs -1; one unit must take the cheap way.
        let mut net = Network::with_vertices(4);
        net.add_edge(0, 1, 1, 0);
        net.add_edge(0, 2, 1, 0);
        let slow = net.add_edge(1, 3, 1, 0);
        let cheap = net.add_edge(2, 3, 1, -1);
        let mut limited = Network::with_vertices(5);
        limited.add_edge(4, 0, 1, 0);
        for (from, to, cap, cost) in [(0, 1, 1, 0), (0, 2, 1, 0), (1, 3, 1, 0), (2, 3, 1, -1)] {
            limited.add_edge(from, to, cap, cost);
        }
        assert_eq!(net.min_cost_max_flow(0, 3), 2);
        assert_eq!((net.flow(slow), net.flow(cheap)), (1, 1));
        assert_eq!(limited.min_cost_max_flow(4, 3), 1);
        // Edge ids: 0 (4->0), then 2, 4, 6, 8: the -1 edge is id 8.
        assert_eq!((limited.flow(6), limited.flow(8)), (0, 1));
    }

    #[test]
    fn reroutes_through_reverse_edges_to_keep_cheap_edges() {
        // Bipartite: left {1, 2}, right {3, 4}; 1 may go to 3 (cost -1) or 4, 2 only to 3.
        // Max flow needs 1 -> 4, giving up the cheap edge.
        let mut net = Network::with_vertices(6);
        net.add_edge(0, 1, 1, 0);
        net.add_edge(0, 2, 1, 0);
        let cheap = net.add_edge(1, 3, 1, -1);
        let other = net.add_edge(1, 4, 1, 0);
        net.add_edge(2, 3, 1, 0);
        net.add_edge(3, 5, 1, 0);
        net.add_edge(4, 5, 1, 0);
        assert_eq!(net.min_cost_max_flow(0, 5), 2);
        assert_eq!((net.flow(cheap), net.flow(other)), (0, 1));
    }
}
