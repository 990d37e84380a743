//! A deterministic simulator for Cairn clusters, in the manner of FoundationDB's and
//! TigerBeetle's: many [`cairn_core::Node`]s on one thread, virtual time, one seeded random
//! generator, and a network that drops, delays, reorders and duplicates messages, splits
//! the cluster and heals it, while nodes crash, restart and run with skewed clocks.
//!
//! A run records every client operation (invoke and complete times, outcome), heals every
//! fault, lets hints and read repair finish, and then checks the history against the
//! converged values ([`history::check`]). The same seed always gives the same history.
//!
//! ```
//! let report = cairn_sim::Sim::new(cairn_sim::SimConfig::mixed(7)).run();
//! assert!(report.violations.is_empty(), "{:?}", report.violations);
//! assert!(report.ops > 0);
//! ```

mod cluster;
pub mod history;
mod nemesis;
mod rng;
mod sim;

pub use cluster::Cluster;
pub use rng::Rng;
pub use sim::{Faults, Report, Sim, SimConfig};

use cairn_ring::{Capacity, Layout, LayoutConfig, NodeId, NodeRole, Zone};

/// The layout a simulation uses: nodes `1..=nodes` with equal capacity spread round-robin
/// over `zones` zones, `partitions` partitions, `n` replicas each.
///
/// # Panics
/// On settings no cluster can have (more replicas than nodes, a bad partition count):
/// a simulation's configuration is the test's own, not outside input.
pub fn layout(nodes: usize, zones: usize, partitions: u16, n: u8) -> Layout {
    let config = LayoutConfig::new(partitions, n).expect("a valid partition count and n");
    let mut layout = Layout::new(config);
    for i in 0..nodes {
        let zone = Zone::new(format!("z{}", i % zones.max(1))).expect("a valid zone name");
        let role = NodeRole::new(format!("sim-{i}"), zone, Capacity(100));
        let id = NodeId(i as u64 + 1);
        layout
            .stage_node(id, role, NodeId(1))
            .expect("a valid node");
    }
    layout.commit().expect("a feasible layout");
    layout
}
