//! The examples in `examples/` against a `cairn dev` cluster, each checking the claims it
//! prints (`--short` keeps them quick). `cargo test --workspace` builds the examples.

use std::path::PathBuf;
use std::process::Command;

use crate::cluster::{start_dev, temp_dir};

fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let debug = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let path = debug.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo test --workspace` (or `cargo build --examples`)",
        path.display()
    );
    path
}

#[test]
fn the_examples_run_against_cairn_dev_and_their_claims_hold() {
    let root = temp_dir("examples");
    let dev = start_dev(&root);
    let quic = dev.quic;
    let nodes: Vec<String> = (0..3).map(|i| format!("127.0.0.1:{}", quic + i)).collect();
    for name in ["like_counter", "shopping_cart", "session_store"] {
        let mut cmd = Command::new(example(name));
        cmd.arg("--dir").arg(&root).arg("--short");
        for n in &nodes {
            cmd.args(["--node", n]);
        }
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{name} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("OK ") && !stdout.contains("FAIL"),
            "{name}:\n{stdout}"
        );
    }
    drop(dev);
    std::fs::remove_dir_all(&root).ok();
}
