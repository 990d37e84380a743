//! ARCHITECTURE.md's invariants, checked from `cargo metadata` and the sources:
//! the pure crates never depend on async runtimes, sockets, storage engines, clocks or
//! unseeded randomness, and dependencies only point down the layer stack.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// Crates that must stay free of I/O, time and randomness (DESIGN.md §2).
const PURE: &[&str] = &["cairn-crdt", "cairn-proto", "cairn-ring", "cairn-core"];

/// Crates no pure crate may pull in, directly or transitively.
const FORBIDDEN: &[&str] = &[
    "tokio",
    "async-std",
    "mio",
    "socket2",
    "quinn",
    "quinn-proto",
    "rustls",
    "redb",
    "rand",
    "getrandom",
    "axum",
    "hyper",
];

/// Which workspace crates each crate may depend on (nothing points up).
const ALLOWED_WORKSPACE_DEPS: &[(&str, &[&str])] = &[
    ("cairn-crdt", &[]),
    ("cairn-proto", &["cairn-crdt"]),
    ("cairn-ring", &[]),
    ("cairn-core", &["cairn-crdt", "cairn-proto", "cairn-ring"]),
    ("cairn-sim", &["cairn-core", "cairn-crdt", "cairn-ring"]),
    (
        "cairn-store",
        &["cairn-core", "cairn-crdt", "cairn-proto", "cairn-ring"],
    ),
    ("cairn-net", &[]),
    (
        "cairn-nemesis",
        &["cairn-client", "cairn-crdt", "cairn-sim"],
    ),
    ("cairn-client", &["cairn-crdt", "cairn-net", "cairn-proto"]),
    (
        "cairn-server",
        &[
            "cairn-core",
            "cairn-crdt",
            "cairn-net",
            "cairn-proto",
            "cairn-ring",
            "cairn-store",
        ],
    ),
    (
        "cairn",
        &[
            "cairn-client",
            "cairn-crdt",
            "cairn-net",
            "cairn-proto",
            "cairn-server",
        ],
    ),
];

/// Normal (non-dev, non-build) dependency graph of the workspace, by package name.
fn normal_deps() -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON");
    let names: BTreeMap<&str, &str> = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| {
            (
                p["id"].as_str().expect("id"),
                p["name"].as_str().expect("name"),
            )
        })
        .collect();
    let mut graph = BTreeMap::new();
    for node in meta["resolve"]["nodes"].as_array().expect("resolve graph") {
        let from = names[node["id"].as_str().expect("id")].to_string();
        let deps = node["deps"].as_array().expect("deps").iter().filter(|d| {
            d["dep_kinds"]
                .as_array()
                .expect("kinds")
                .iter()
                .any(|k| k["kind"].is_null())
        });
        let to = deps
            .map(|d| names[d["pkg"].as_str().expect("pkg")].to_string())
            .collect();
        graph.insert(from, to);
    }
    graph
}

fn closure(graph: &BTreeMap<String, BTreeSet<String>>, root: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![root.to_string()];
    while let Some(name) = stack.pop() {
        for dep in graph.get(&name).into_iter().flatten() {
            if seen.insert(dep.clone()) {
                stack.push(dep.clone());
            }
        }
    }
    seen
}

#[test]
fn pure_crates_pull_in_no_io_time_or_randomness() {
    let graph = normal_deps();
    for krate in PURE {
        let deps = closure(&graph, krate);
        let bad: Vec<&&str> = FORBIDDEN.iter().filter(|f| deps.contains(**f)).collect();
        assert!(bad.is_empty(), "{krate} depends on {bad:?}");
    }
}

#[test]
fn workspace_dependencies_point_down() {
    let graph = normal_deps();
    for (krate, allowed) in ALLOWED_WORKSPACE_DEPS {
        let direct = graph
            .get(*krate)
            .unwrap_or_else(|| panic!("{krate} is in the workspace"));
        for dep in direct.iter().filter(|d| d.starts_with("cairn")) {
            assert!(
                allowed.contains(&dep.as_str()),
                "{krate} must not depend on {dep}"
            );
        }
    }
}

#[test]
fn only_cairn_net_knows_quinn_and_only_cairn_store_knows_redb() {
    let graph = normal_deps();
    for (owner, engine) in [("cairn-net", "quinn"), ("cairn-store", "redb")] {
        for (krate, deps) in graph.iter().filter(|(k, _)| k.starts_with("cairn")) {
            if krate != owner {
                assert!(
                    !deps.contains(engine),
                    "{krate} uses {engine} directly; go through {owner}"
                );
            }
        }
    }
}

#[test]
fn one_crypto_provider_only() {
    let graph = normal_deps();
    for krate in ["cairn", "cairn-server", "cairn-net"] {
        let deps = closure(&graph, krate);
        assert!(deps.contains("ring"), "{krate} should use ring");
        assert!(
            !deps.contains("aws-lc-rs") && !deps.contains("aws-lc-sys"),
            "{krate} pulls in aws-lc"
        );
    }
}

#[test]
fn pure_crates_never_read_the_clock_or_entropy() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for krate in PURE {
        for file in rust_files(&root.join("crates").join(krate).join("src")) {
            let text = std::fs::read_to_string(&file).expect("source is readable");
            for needle in [
                "SystemTime",
                "Instant::now",
                "thread_rng",
                "std::net",
                "std::fs",
            ] {
                assert!(!text.contains(needle), "{} uses {needle}", file.display());
            }
        }
    }
}

fn rust_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("source dir exists") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}
