//! The store's threads: the applier runs at a lower CPU priority than its opener.

use std::time::{Duration, Instant};

use cairn_store::{Durability, RedbStore, APPLIER_NICE};

use crate::util::{opts, TempDir};

/// The nice values of this process's threads named `comm` (Linux truncates names to 15
/// bytes).
fn nice_of_threads(comm: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let path = task.path();
        let Ok(name) = std::fs::read_to_string(path.join("comm")) else {
            continue; // The thread ended meanwhile.
        };
        if name.trim_end() != comm {
            continue;
        }
        if let Ok(stat) = std::fs::read_to_string(path.join("stat")) {
            out.push(nice_in(&stat));
        }
    }
    out
}

/// This thread's nice value.
fn my_nice() -> i32 {
    nice_in(&std::fs::read_to_string("/proc/thread-self/stat").unwrap())
}

/// The nice value in a thread's `stat` line: field 19, counting from the pid (fields
/// after the parenthesised name start at 3, the state).
fn nice_in(stat: &str) -> i32 {
    let rest = stat.rsplit_once(')').unwrap().1;
    rest.split_whitespace().nth(16).unwrap().parse().unwrap()
}

#[test]
#[cfg(target_os = "linux")]
fn the_applier_runs_nicer_than_the_thread_that_opened_the_store() {
    let base = my_nice();
    let want = [(base + 3).min(19), (base + APPLIER_NICE).min(19)];
    if want[0] == want[1] || want.contains(&base) {
        eprintln!("skipped: this test runs at nice {base}, too close to the lowest priority");
        return;
    }
    let (dir_a, dir_b) = (TempDir::new("nice-a"), TempDir::new("nice-b"));
    let mut three = opts(Durability::Fsync);
    three.applier_nice = 3;
    let a = RedbStore::open(dir_a.file(), three).unwrap();
    let b = RedbStore::open(dir_b.file(), opts(Durability::Fsync)).unwrap();
    // Other tests' stores run appliers too, at the default; only these two can show a 3.
    // A new applier lowers its own priority once it runs, so look for a while.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = nice_of_threads("cairn-store-app");
    while !want.iter().all(|w| seen.contains(w)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        seen = nice_of_threads("cairn-store-app");
    }
    assert!(
        want.iter().all(|w| seen.contains(w)),
        "appliers at nice {seen:?}, expected {want:?} among them (this thread at {base})"
    );
    drop((a, b));
}
