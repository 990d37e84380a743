//! The slow-request log: a warning for each client request this node coordinated that
//! took at least the configured threshold (`slow_request_ms`), like Cassandra's slow query
//! log. It names the request's tag (the debug log's "client request" line maps a tag to
//! the request id its peer messages carry), operation, value type, outcome and time.
//! The time is the latency histogram's (`cairn_request_duration_seconds`): from the core
//! turn that took the request to its answer. Time in the network and in the core's queue
//! before that turn is not in it; a client sees it (`cairn bench --slow-log`).
//!
//! A node that stalls makes every request in flight slow at once, so the lines are
//! bounded: at most [`SLOW_LINES_PER_SECOND`] each second; the next line written says how
//! many were held back before it.

use std::time::{Duration, Instant};

/// Most slow-request lines a node writes per second.
pub const SLOW_LINES_PER_SECOND: u32 = 20;

/// What to do with one answered request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Faster than the threshold (or the log is off).
    Fast,
    /// Write it, with how many slow requests were held back since the last line.
    Write { held_back: u64 },
    /// Slow, but this second's lines are used up: counted for the next line.
    HoldBack,
}

/// The threshold and this second's count of lines.
#[derive(Debug)]
pub(crate) struct SlowLog {
    /// `None`: no log.
    threshold: Option<Duration>,
    /// When the current second of lines began.
    second: Option<Instant>,
    written: u32,
    held_back: u64,
}

impl SlowLog {
    pub(crate) fn new(threshold: Option<Duration>) -> Self {
        SlowLog {
            threshold,
            second: None,
            written: 0,
            held_back: 0,
        }
    }

    /// Judges a request that took `took` and was answered at `at`.
    pub(crate) fn judge(&mut self, took: Duration, at: Instant) -> Verdict {
        match self.threshold {
            Some(t) if took >= t => {}
            _ => return Verdict::Fast,
        }
        let new_second = self
            .second
            .is_none_or(|s| at.saturating_duration_since(s) >= Duration::from_secs(1));
        if new_second {
            self.second = Some(at);
            self.written = 0;
        }
        if self.written >= SLOW_LINES_PER_SECOND {
            self.held_back = self.held_back.saturating_add(1);
            return Verdict::HoldBack;
        }
        self.written += 1;
        Verdict::Write {
            held_back: std::mem::take(&mut self.held_back),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn only_requests_at_or_over_the_threshold_are_slow() {
        let mut log = SlowLog::new(Some(100 * MS));
        let at = Instant::now();
        assert_eq!(log.judge(99 * MS, at), Verdict::Fast);
        assert_eq!(log.judge(100 * MS, at), Verdict::Write { held_back: 0 });
        let mut off = SlowLog::new(None);
        assert_eq!(off.judge(Duration::from_secs(60), at), Verdict::Fast);
    }

    #[test]
    fn a_second_holds_at_most_its_lines_and_the_next_line_counts_the_rest() {
        let mut log = SlowLog::new(Some(MS));
        let start = Instant::now();
        let verdicts: Vec<_> = (0..SLOW_LINES_PER_SECOND + 5)
            .map(|i| log.judge(MS, start + i * MS))
            .collect();
        let written = verdicts.iter().filter(|v| **v != Verdict::HoldBack).count();
        assert_eq!(written, SLOW_LINES_PER_SECOND as usize);
        assert_eq!(verdicts.last(), Some(&Verdict::HoldBack));
        // Still within the first second: held back too.
        assert_eq!(log.judge(MS, start + 999 * MS), Verdict::HoldBack);
        // A second after the first line, lines are written again, the first with the count.
        let later = start + 1000 * MS;
        assert_eq!(log.judge(MS, later), Verdict::Write { held_back: 6 });
        assert_eq!(log.judge(MS, later), Verdict::Write { held_back: 0 });
    }
}
