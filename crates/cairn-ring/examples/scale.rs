//! Times placement on large clusters: `cargo run --release -p cairn-ring --example scale`.

use std::time::Instant;

use cairn_ring::{Capacity, Layout, LayoutConfig, NodeId, NodeRole, Zone};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for (q, nodes, zones) in [
        (256u16, 32u64, 4u64),
        (4096, 64, 4),
        (4096, 255, 8),
        (4096, 255, 255),
    ] {
        let mut layout = Layout::new(LayoutConfig::new(q, 3)?);
        let role = |i: u64| -> Result<NodeRole, Box<dyn std::error::Error>> {
            let zone = Zone::new(format!("z{}", i % zones))?;
            Ok(NodeRole::new(format!("n{i}"), zone, Capacity(1 + i % 3)))
        };
        for i in 0..nodes {
            layout.stage_node(NodeId(i), role(i)?, NodeId(0))?;
        }
        let start = Instant::now();
        layout.commit()?;
        let first = start.elapsed();
        layout.stage_node(NodeId(nodes), role(nodes)?, NodeId(0))?;
        let start = Instant::now();
        let plan = layout.commit()?;
        println!(
            "Q={q} nodes={nodes} zones={zones}: first placement {first:?}, adding a node {:?} ({} slots moved)",
            start.elapsed(),
            plan.moved_slots()
        );
    }
    Ok(())
}
