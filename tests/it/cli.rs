//! The `cairn` binary as a user runs it.

use std::process::Command;

fn cairn(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(args)
        .output()
        .expect("cairn runs")
}

#[test]
fn version_and_status() {
    let out = cairn(&["--version"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("cairn "));
    let out = cairn(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for command in [
        "server", "dev", "cert", "cluster", "counter", "set", "register", "map", "delete",
    ] {
        assert!(help.contains(command), "{help}");
    }
}

#[test]
fn selftest_merges_through_the_wire_format() {
    let out = cairn(&["selftest"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(r#"["left", "right"]"#), "{stdout}");
}

#[test]
fn unknown_argument_is_a_usage_error() {
    let out = cairn(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .to_lowercase()
        .contains("usage"));
}

/// A slow log that cannot be written fails the run before it connects anywhere (the
/// node named here does not exist), not after a run's worth of load.
#[test]
fn bench_fails_early_on_a_slow_log_it_cannot_write() {
    let path = "/nonexistent-cairn-dir/slow.jsonl";
    let out = cairn(&["bench", "--nodes", "127.0.0.1:9", "--slow-log", path]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(path), "{stderr}");
    assert!(!stderr.contains("connect"), "{stderr}");
}

#[test]
fn bench_refuses_settings_it_cannot_run() {
    for args in [
        &["bench", "--duration=-1"][..],
        &["bench", "--warmup", "NaN"][..],
        &["bench", "--concurrency", "0"][..],
        &["bench", "--rate", "0"][..],
        &["bench", "--keys", "0"][..],
        &["bench", "--batch", "4", "--http"][..],
        &["bench", "--slow-ms", "NaN"][..],
        &["bench", "--slow-ms=-1"][..],
    ] {
        let out = cairn(args);
        // Refused before connecting anywhere (no cluster runs here).
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("must") || stderr.contains("needs"),
            "{args:?}: {stderr}"
        );
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("panicked"),
            "{args:?}"
        );
    }
}
