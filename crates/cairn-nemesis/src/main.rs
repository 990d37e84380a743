//! `cairn-nemesis`: run the harness from the command line.
//!
//! ```sh
//! cargo build --release && sudo target/release/cairn-nemesis --faults 10 --seed 7
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use cairn_nemesis::{run, Config, RunError};

const USAGE: &str = "usage: cairn-nemesis [--cairn PATH] [--seed N] [--faults N] [--fault-secs S] [--clients N] [--out DIR]";

fn parse() -> Result<Config, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut config = Config {
        cairn: exe.with_file_name("cairn"),
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(1),
        faults: 10,
        fault_secs: 6.0,
        clients: 10,
        out: PathBuf::from("nemesis-out"),
        converge_secs: 120.0,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        let bad = |f: &str| format!("{f}: not a number\n{USAGE}");
        match flag.as_str() {
            "--cairn" => config.cairn = PathBuf::from(value()?),
            "--seed" => config.seed = value()?.parse().map_err(|_| bad("--seed"))?,
            "--faults" => config.faults = value()?.parse().map_err(|_| bad("--faults"))?,
            "--fault-secs" => {
                config.fault_secs = value()?.parse().map_err(|_| bad("--fault-secs"))?
            }
            "--clients" => config.clients = value()?.parse().map_err(|_| bad("--clients"))?,
            "--out" => config.out = PathBuf::from(value()?),
            _ => return Err(USAGE.to_owned()),
        }
    }
    if !(0.5..=3600.0).contains(&config.fault_secs) || config.clients == 0 {
        return Err(format!(
            "--fault-secs must be 0.5..=3600 and --clients at least 1\n{USAGE}"
        ));
    }
    Ok(config)
}

fn main() -> ExitCode {
    let config = match parse() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(&config) {
        Ok(report) => {
            print!("{}", report.text);
            println!("history: {}", config.out.join("history.jsonl").display());
            if report.violations.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(RunError::Unsupported(why)) => {
            println!("cairn-nemesis: skipped: {why}");
            ExitCode::SUCCESS
        }
        Err(RunError::Failed(why)) => {
            eprintln!("cairn-nemesis: {why}");
            ExitCode::FAILURE
        }
    }
}
