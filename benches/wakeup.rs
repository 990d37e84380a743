//! What one cross-thread wakeup costs on this machine: two threads pass a token back and
//! forth over bounded channels, the same handoff a node makes between its runtime thread
//! and its store threads (and, before the core became a task, its core thread).
//!
//! Run: `cargo bench --bench wakeup` (a few seconds), and `taskset -c 0 cargo bench
//! --bench wakeup` to see the same with both threads on one CPU. It prints the median of
//! five runs of 50,000 round trips (two wakeups each), wall time and process CPU time
//! (`/proc/self/stat`, Linux), with the range. On the 2-vCPU development VM (whose guest
//! kernel halts idle vCPUs without polling first) a round trip between two vCPUs took
//! ~35 µs wall and ~25 µs of CPU, against ~6.4 µs on one vCPU: a wakeup that reaches an
//! idle vCPU costs about ten microseconds of CPU. ARCHITECTURE.md explains why that sets
//! a 3-node cluster's CPU per operation at low load.

#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::mpsc::sync_channel;
use std::time::Instant;

const ROUND_TRIPS: u32 = 50_000;
const RUNS: usize = 5;

/// User plus system CPU time of this process, in seconds.
fn process_cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at the state field.
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    // utime and stime are fields 14 and 15 of the file, 11 and 12 after the name;
    // clock ticks are 100 per second on Linux.
    ticks(11)
        .zip(ticks(12))
        .map_or(0.0, |(u, s)| (u + s) / 100.0)
}

/// One run: (wall µs, CPU µs) per round trip.
fn run() -> (f64, f64) {
    let (to_echo, echo_in) = sync_channel::<u32>(1);
    let (to_main, main_in) = sync_channel::<u32>(1);
    let echo = std::thread::spawn(move || {
        for token in echo_in {
            if to_main.send(token).is_err() {
                break;
            }
        }
    });
    let (start, cpu) = (Instant::now(), process_cpu_secs());
    for token in 0..ROUND_TRIPS {
        to_echo.send(token).unwrap();
        main_in.recv().unwrap();
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = process_cpu_secs() - cpu;
    drop(to_echo);
    echo.join().unwrap();
    let per = |secs: f64| secs / f64::from(ROUND_TRIPS) * 1e6;
    (per(wall), per(cpu))
}

fn median_and_range(mut xs: Vec<f64>) -> String {
    xs.sort_by(f64::total_cmp);
    let (lo, mid, hi) = (xs[0], xs[xs.len() / 2], xs[xs.len() - 1]);
    format!("{mid:.1} µs [{lo:.1} {hi:.1}]")
}

fn main() {
    let runs: Vec<(f64, f64)> = (0..RUNS).map(|_| run()).collect();
    let wall = median_and_range(runs.iter().map(|r| r.0).collect());
    let cpu = median_and_range(runs.iter().map(|r| r.1).collect());
    println!(
        "thread round trip over channels ({ROUND_TRIPS} per run, {RUNS} runs, median [min max]):"
    );
    println!("  wall {wall}");
    println!("  CPU  {cpu}");
}
