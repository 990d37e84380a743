//! The `cairn` binary: server and CLI. Until the server lands it reports what this build
//! contains and checks the convergent types end to end.

use std::process::ExitCode;

use cairn_crdt::{Actor, Crdt, Replica, Set, SetOp, Timestamp, Value, ValueType};

const USAGE: &str = "usage: cairn [--version | selftest]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None => {
            print_status();
            ExitCode::SUCCESS
        }
        Some("--version" | "-V") => {
            println!("cairn {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some("selftest") => selftest(),
        Some(other) => {
            eprintln!("cairn: unknown argument `{other}`\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn print_status() {
    println!(
        "cairn {}: a CRDT-first, Dynamo-style replicated key-value store",
        env!("CARGO_PKG_VERSION")
    );
    println!();
    println!("This build holds the engine, not yet the server: convergent types, their wire");
    println!("format, the ring, the node as a state machine, its simulator, and storage.");
    let types: Vec<&str> = ValueType::ALL.iter().map(|t| t.name()).collect();
    println!("  types:        {}", types.join(", "));
    println!("  wire format:  version {}", cairn_proto::FORMAT_VERSION);
    println!("  not yet:      QUIC transport, server, HTTP API, SDK (see ARCHITECTURE.md)");
    println!();
    println!("See a cluster survive faults: cargo run --release -p cairn-sim -- --seeds 100");
    println!();
    println!("Run `cairn selftest` to merge two replicas through the wire format.");
}

/// Two replicas update a set concurrently, ship their states as bytes, and converge.
fn selftest() -> ExitCode {
    let at = |a| Replica {
        actor: Actor(a),
        now: Timestamp::ZERO,
    };
    let (mut left, mut right) = (Set::default(), Set::default());
    let added = [(&mut left, 1, "left"), (&mut right, 2, "right")]
        .into_iter()
        .all(|(set, actor, member)| {
            set.apply(&SetOp::Add(vec![member.into()]), at(actor))
                .is_ok()
        });
    if !added {
        eprintln!("selftest failed: an add was refused");
        return ExitCode::FAILURE;
    }
    let bytes = cairn_proto::encode_value(&Value::Set(right));
    match cairn_proto::decode_value(&bytes) {
        Ok(Value::Set(theirs)) => {
            left.merge(&theirs);
            let members: Vec<String> = left
                .members()
                .map(|m| String::from_utf8_lossy(m).into_owned())
                .collect();
            println!("selftest: merged set = {members:?}");
            ExitCode::SUCCESS
        }
        Ok(other) => {
            eprintln!("selftest failed: decoded a {}", other.value_type());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("selftest failed: {e}");
            ExitCode::FAILURE
        }
    }
}
