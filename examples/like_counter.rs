//! A like counter hammered by many concurrent tasks, through every node at once: the
//! total always adds up, with no read-modify-write and no conflict code.
//!
//! ```sh
//! cargo run --release -- dev --nodes 3          # in one terminal
//! cargo run --release --example like_counter -- --node 127.0.0.1:7000 --node 127.0.0.1:7001 --node 127.0.0.1:7002
//! ```

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use cairn_client::{Options, Quorum};

#[tokio::main]
async fn main() -> Result<(), cairn_client::Error> {
    let args = common::Args::parse();
    let (tasks, per_task) = if args.short { (16, 20) } else { (64, 200) };
    let key = format!("post:{}", std::process::id());
    let acked = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for t in 0..tasks {
        let client = args.client(t).await?;
        let (key, acked, failed) = (key.clone(), acked.clone(), failed.clone());
        handles.push(tokio::spawn(async move {
            let likes = client.counter("likes", &key);
            for _ in 0..per_task {
                match likes.increment(1).await {
                    Ok(_) => acked.fetch_add(1, Ordering::Relaxed),
                    // Indeterminate: it may or may not have been counted.
                    Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    for h in handles {
        let _ = h.await;
    }
    let (acked, failed) = (
        acked.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    let client = args.client(1).await?;
    let total = client
        .counter("likes", &key)
        .with(Options::new().r(Quorum::All))
        .get()
        .await?;
    println!(
        "{tasks} tasks x {per_task} increments of likes/{key} through {} node(s)",
        args.nodes.len()
    );
    println!("acknowledged {acked}, failed (indeterminate) {failed}; the counter reads {total}");
    let total = u64::try_from(total).unwrap_or(u64::MAX);
    common::check(
        "every acknowledged increment is counted, and nothing more than was sent",
        (acked..=acked + failed).contains(&total),
    );
    Ok(())
}
