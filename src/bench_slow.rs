//! `cairn bench --slow-log`: every measured request slower than a threshold, one JSON
//! line each, so that a tail can be laid beside the servers' own traces.
//!
//! A latency percentile says how slow the tail is, not when it happened. Session 18 and
//! session 22 each built a throwaway load generator to find that out. Both found the
//! slow requests in bursts, and the bursts' times then pointed at the cause: the
//! applier's transactions, and log stalls shared by three nodes on one disk
//! (ARCHITECTURE.md).

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Most requests a slow log keeps; past it they are counted, not kept. ~6 MB of lines,
/// and a bound on memory when the threshold is below the usual latency.
pub(crate) const SLOW_LOG_MAX: usize = 100_000;

/// One slow request.
#[derive(Clone, Copy, Debug)]
struct Slow {
    /// When it was sent (closed loop) or meant to be (open loop).
    sent: Instant,
    latency: Duration,
    /// The load generator's own delay before it started (open loop only).
    late: Option<Duration>,
    ok: bool,
}

/// The slow requests of one run, and the file they go to.
#[derive(Debug)]
pub(crate) struct SlowLog {
    threshold: Duration,
    kept: Mutex<Vec<Slow>>,
    not_kept: AtomicU64,
    file: std::fs::File,
}

/// What [`SlowLog::write`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Written {
    pub(crate) lines: usize,
    /// Slow requests past [`SLOW_LOG_MAX`], counted only.
    pub(crate) not_written: u64,
}

impl SlowLog {
    /// Creates (or empties) the file at `path` now, so that a path that cannot be
    /// written fails before the run rather than after it.
    pub(crate) fn create(path: &Path, threshold: Duration) -> std::io::Result<SlowLog> {
        Ok(SlowLog {
            threshold,
            kept: Mutex::new(Vec::new()),
            not_kept: AtomicU64::new(0),
            file: std::fs::File::create(path)?,
        })
    }

    /// Notes a measured request, if it was slow.
    pub(crate) fn note(&self, sent: Instant, latency: Duration, late: Option<Duration>, ok: bool) {
        if latency < self.threshold {
            return;
        }
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() < SLOW_LOG_MAX {
            kept.push(Slow {
                sent,
                latency,
                late,
                ok,
            });
        } else {
            self.not_kept.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Writes the slow requests to the file in the order they were sent, each as
    /// `{"at_ms", "unix_ms", "latency_us", "late_us", "ok"}`. `at_ms` counts from
    /// `start`, the measured window's start (negative for a closed-loop request sent
    /// during the warm-up that finished inside the window); `unix_ms` is the same moment
    /// on the wall clock, for servers' logs, taken with `start` at `start_unix`.
    pub(crate) fn write(&self, start: Instant, start_unix: SystemTime) -> std::io::Result<Written> {
        let start_unix_ms = start_unix
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| micros(d) as f64 / 1e3);
        // Written once, at the end of the run: the list is taken, not copied.
        let mut kept = std::mem::take(&mut *self.kept.lock().unwrap_or_else(|e| e.into_inner()));
        kept.sort_by_key(|s| s.sent);
        let mut out = std::io::BufWriter::new(&self.file);
        for s in &kept {
            let at_ms = signed_ms(s.sent, start);
            let line = serde_json::json!({
                "at_ms": at_ms,
                "unix_ms": start_unix_ms + at_ms,
                "latency_us": micros(s.latency),
                "late_us": s.late.map(micros),
                "ok": s.ok,
            });
            writeln!(out, "{line}")?;
        }
        out.flush()?;
        Ok(Written {
            lines: kept.len(),
            not_written: self.not_kept.load(Ordering::Relaxed),
        })
    }
}

/// `d` in whole microseconds (saturating).
pub(crate) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Milliseconds from `start` to `at` to the microsecond, negative if `at` came first.
fn signed_ms(at: Instant, start: Instant) -> f64 {
    // From whole microseconds, so that the line reads 5.623, not 5.6230599999.
    let ms = |d: Duration| micros(d) as f64 / 1e3;
    match at.checked_duration_since(start) {
        Some(after) => ms(after),
        None => -ms(start.duration_since(at)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_slow_requests_are_kept_and_written_in_send_order() {
        let path = std::env::temp_dir().join(format!("cairn-slow-{}.jsonl", std::process::id()));
        let log = SlowLog::create(&path, Duration::from_millis(5)).unwrap();
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        log.note(
            at(20),
            Duration::from_millis(9),
            Some(Duration::from_micros(300)),
            true,
        );
        log.note(at(10), Duration::from_millis(4), None, true); // Fast: not kept.
        log.note(at(5), Duration::from_millis(5), None, false);
        let unix = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let written = log.write(at(10), unix).unwrap();
        assert_eq!(
            written,
            Written {
                lines: 2,
                not_written: 0
            }
        );
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).ok();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["at_ms"], -5.0, "sent before the window began");
        assert_eq!(lines[0]["unix_ms"], 1_699_999_999_995.0);
        assert_eq!(lines[0]["latency_us"], 5_000);
        assert_eq!(lines[0]["late_us"], serde_json::Value::Null);
        assert_eq!(lines[0]["ok"], false);
        assert_eq!(lines[1]["at_ms"], 10.0);
        assert_eq!(lines[1]["late_us"], 300);
        // Whole microseconds: 1.234, not 1.234567.
        assert_eq!(
            signed_ms(at(0) + Duration::from_nanos(1_234_567), at(0)),
            1.234
        );
    }

    #[test]
    fn past_the_bound_slow_requests_are_counted_not_kept() {
        let path =
            std::env::temp_dir().join(format!("cairn-slow-max-{}.jsonl", std::process::id()));
        let log = SlowLog::create(&path, Duration::ZERO).unwrap();
        std::fs::remove_file(&path).ok();
        let now = Instant::now();
        for _ in 0..SLOW_LOG_MAX + 3 {
            log.note(now, Duration::from_millis(1), None, true);
        }
        assert_eq!(log.kept.lock().unwrap().len(), SLOW_LOG_MAX);
        assert_eq!(log.not_kept.load(Ordering::Relaxed), 3);
    }
}
