//! Long simulator sweeps: `cargo run --release -p cairn-sim -- --seeds N --start S`.
//!
//! Runs seeds `S..S+N` with mixed faults, prints each failing seed with the command that
//! replays it, and ends with a summary line and the simulated throughput. `--verbose`
//! prints every seed's summary, and for a failing one its faults and the history of
//! each key it broke.

use std::process::ExitCode;
use std::time::Instant;

use cairn_sim::{Sim, SimConfig};

struct Args {
    seeds: u64,
    start: u64,
    keys: usize,
    verbose: bool,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        seeds: 100,
        start: 0,
        keys: 0,
        verbose: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut number = |name: &str| -> Result<u64, String> {
            let v = it.next().ok_or(format!("{name} needs a number"))?;
            v.parse()
                .map_err(|_| format!("{name}: `{v}` is not a number"))
        };
        match flag.as_str() {
            "--seeds" => args.seeds = number("--seeds")?,
            "--start" => args.start = number("--start")?,
            "--keys" => {
                args.keys = usize::try_from(number("--keys")?).map_err(|e| e.to_string())?
            }
            "--verbose" | "-v" => args.verbose = true,
            "--help" | "-h" => return Err(String::new()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("cairn-sim: {e}");
            }
            eprintln!("usage: cairn-sim [--seeds N] [--start S] [--keys K] [--verbose]");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let (mut failed, mut ops, mut repaired, mut messages) = (0u64, 0usize, 0u64, 0u64);
    let mut convergence: Vec<u64> = Vec::new();
    for seed in args.start..args.start.saturating_add(args.seeds) {
        let report = Sim::new(SimConfig::with_keys(seed, args.keys)).run();
        ops += report.ops;
        messages += report.messages;
        repaired += report.aae_keys_repaired;
        convergence.extend(report.convergence_ms);
        if args.verbose {
            println!(
                "seed {seed}: {} ops, {} messages, converged in {:?} ms, {} keys repaired by anti-entropy, {} violations",
                report.ops,
                report.messages,
                report.convergence_ms,
                report.aae_keys_repaired,
                report.violations.len()
            );
        }
        if !report.violations.is_empty() {
            failed += 1;
            println!("FAILED seed {seed}: replay with `cargo run --release -p cairn-sim -- --seeds 1 --start {seed} --verbose`");
            for v in &report.violations {
                println!("  {}: {}", v.key, v.what);
            }
            if args.verbose {
                print_failure(&report);
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    convergence.sort_unstable();
    if let (Some(max), false) = (convergence.last(), convergence.is_empty()) {
        let p50 = convergence[convergence.len() / 2];
        println!(
            "convergence after the heal (simulated): p50 {:.1} s, max {:.1} s over {} runs; anti-entropy repaired {repaired} keys",
            p50 as f64 / 1000.0,
            *max as f64 / 1000.0,
            convergence.len()
        );
    }
    println!(
        "{} seeds, {failed} failed; {ops} client operations and {messages} peer messages in {secs:.1} s = {:.0} simulated ops/s, {:.0} messages/s",
        args.seeds,
        ops as f64 / secs.max(1e-9),
        messages as f64 / secs.max(1e-9)
    );
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The faults of a failed run, and the history of every key it broke.
fn print_failure(report: &cairn_sim::Report) {
    println!("  faults:");
    for (at, fault) in &report.faults {
        println!("    {at:>6} ms  {fault}");
    }
    let broken: std::collections::BTreeSet<&str> =
        report.violations.iter().map(|v| v.key.as_str()).collect();
    for key in broken {
        // A violation that is not about one key (routing) has no history.
        let mut history = report.history.iter().filter(|e| e.key == key).peekable();
        if history.peek().is_none() {
            continue;
        }
        println!("  history of {key}:");
        for e in history {
            println!(
                "    {:>6}..{:>6} ms  client {:>2}  {:?}  {:?}",
                e.invoke_ms, e.complete_ms, e.client, e.outcome, e.action
            );
        }
    }
}
