//! Long simulator sweeps: `cargo run --release -p cairn-sim -- --seeds N --start S`.
//!
//! Runs seeds `S..S+N` with mixed faults, prints each failing seed with the command that
//! replays it, and ends with a summary line and the simulated throughput.

use std::process::ExitCode;
use std::time::Instant;

use cairn_sim::{Sim, SimConfig};

struct Args {
    seeds: u64,
    start: u64,
    verbose: bool,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        seeds: 100,
        start: 0,
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
            eprintln!("usage: cairn-sim [--seeds N] [--start S] [--verbose]");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let (mut failed, mut ops) = (0u64, 0usize);
    for seed in args.start..args.start.saturating_add(args.seeds) {
        let report = Sim::new(SimConfig::mixed(seed)).run();
        ops += report.ops;
        if args.verbose {
            println!(
                "seed {seed}: {} ops, {} messages, {} violations",
                report.ops,
                report.messages,
                report.violations.len()
            );
        }
        if !report.violations.is_empty() {
            failed += 1;
            println!("FAILED seed {seed}: replay with `cargo run --release -p cairn-sim -- --seeds 1 --start {seed} --verbose`");
            for v in &report.violations {
                println!("  {}: {}", v.key, v.what);
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{} seeds, {failed} failed; {ops} client operations in {secs:.1} s = {:.0} simulated ops/s",
        args.seeds,
        ops as f64 / secs.max(1e-9)
    );
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
