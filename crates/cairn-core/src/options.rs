//! Replication options: `n`, `r`, `w`, `pr`, `pw`, timeouts; bucket defaults and
//! per-request overrides, resolved once into numbers the coordinator can count with.

use std::fmt;

/// A quorum as clients name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quorum {
    /// One replica.
    One,
    /// A majority of `n`: `n / 2 + 1`.
    Quorum,
    /// All `n` replicas.
    All,
    /// An explicit count (0 is allowed for `pr`/`pw`: no strict-primary requirement).
    Count(u8),
}

impl Quorum {
    /// The count this level means for `n` replicas.
    pub fn resolve(self, n: u8) -> u8 {
        match self {
            Quorum::One => 1,
            Quorum::Quorum => n / 2 + 1,
            Quorum::All => n,
            Quorum::Count(k) => k,
        }
    }

    /// Parses `one`, `quorum`, `all` or a number.
    pub fn parse(text: &str) -> Option<Quorum> {
        text.parse::<cairn_proto::client::Quorum>()
            .ok()
            .map(Quorum::from)
    }
}

/// The client protocol spells quorums the same way; the core keeps its own type so that
/// its API does not move with a wire format.
impl From<cairn_proto::client::Quorum> for Quorum {
    fn from(q: cairn_proto::client::Quorum) -> Quorum {
        use cairn_proto::client::Quorum as Wire;
        match q {
            Wire::One => Quorum::One,
            Wire::Quorum => Quorum::Quorum,
            Wire::All => Quorum::All,
            Wire::Count(k) => Quorum::Count(k),
        }
    }
}

impl From<Quorum> for cairn_proto::client::Quorum {
    fn from(q: Quorum) -> cairn_proto::client::Quorum {
        use cairn_proto::client::Quorum as Wire;
        match q {
            Quorum::One => Wire::One,
            Quorum::Quorum => Wire::Quorum,
            Quorum::All => Wire::All,
            Quorum::Count(k) => Wire::Count(k),
        }
    }
}

impl fmt::Display for Quorum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Quorum::One => f.write_str("one"),
            Quorum::Quorum => f.write_str("quorum"),
            Quorum::All => f.write_str("all"),
            Quorum::Count(k) => write!(f, "{k}"),
        }
    }
}

/// Largest replication factor a bucket may ask for.
pub const N_MAX: u8 = 9;
/// Longest request timeout a client may ask for.
pub const TIMEOUT_MS_MAX: u64 = 60_000;

/// A bucket's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BucketProps {
    /// Replicas per key.
    pub n: u8,
    /// Replies a read waits for.
    pub r: Quorum,
    /// Acknowledgements a write waits for.
    pub w: Quorum,
    /// Of the read replies, how many must come from primaries.
    pub pr: Quorum,
    /// Of the write acknowledgements, how many must come from primaries.
    pub pw: Quorum,
    /// How long a request may take.
    pub timeout_ms: u64,
}

impl Default for BucketProps {
    fn default() -> Self {
        BucketProps {
            n: 3,
            r: Quorum::Quorum,
            w: Quorum::Quorum,
            pr: Quorum::Count(0),
            pw: Quorum::Count(0),
            timeout_ms: 5_000,
        }
    }
}

/// What one request overrides.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestOptions {
    /// Replicas per key (only lower than the bucket's makes sense).
    pub n: Option<u8>,
    /// Read quorum.
    pub r: Option<Quorum>,
    /// Write quorum.
    pub w: Option<Quorum>,
    /// Primary read quorum.
    pub pr: Option<Quorum>,
    /// Primary write quorum.
    pub pw: Option<Quorum>,
    /// Timeout.
    pub timeout_ms: Option<u64>,
    /// Answer an update with [`ClientReply::Applied`](crate::ClientReply::Applied) rather
    /// than the value after it: the same write, without encoding and sending back a value
    /// that may be a large set or map. Ignored by reads and deletes.
    pub ack_only: bool,
}

/// Options resolved to counts, valid for the cluster they were resolved against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// Replicas per key.
    pub n: u8,
    /// Replies a read waits for (`1..=n`).
    pub r: u8,
    /// Acknowledgements a write waits for (`1..=n`).
    pub w: u8,
    /// Primary replies a read needs (`0..=r`).
    pub pr: u8,
    /// Primary acknowledgements a write needs (`0..=w`).
    pub pw: u8,
    /// Timeout in milliseconds.
    pub timeout_ms: u64,
    /// An update answers [`ClientReply::Applied`](crate::ClientReply::Applied), not the
    /// value.
    pub ack_only: bool,
}

/// Options that cannot be satisfied, with the reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid request options: {0}")]
pub struct InvalidOptions(pub String);

impl Resolved {
    /// Applies `req` over `bucket` and checks the result against the `nodes` replicas the
    /// cluster can give a key (its storage nodes, at most the layout's replication).
    pub fn new(
        bucket: &BucketProps,
        req: &RequestOptions,
        nodes: usize,
    ) -> Result<Self, InvalidOptions> {
        let n = req.n.unwrap_or(bucket.n);
        if n == 0 || n > N_MAX {
            return Err(InvalidOptions(format!("n = {n} must be in 1..={N_MAX}")));
        }
        if usize::from(n) > nodes {
            return Err(InvalidOptions(format!(
                "n = {n} but the cluster has {nodes} nodes"
            )));
        }
        let count = |q: Option<Quorum>, default: Quorum| q.unwrap_or(default).resolve(n);
        let resolved = Resolved {
            n,
            r: count(req.r, bucket.r),
            w: count(req.w, bucket.w),
            pr: count(req.pr, bucket.pr),
            pw: count(req.pw, bucket.pw),
            timeout_ms: req.timeout_ms.unwrap_or(bucket.timeout_ms),
            ack_only: req.ack_only,
        };
        resolved.check()
    }

    fn check(self) -> Result<Self, InvalidOptions> {
        let bad = |what: &str, v: u8, lo: u8, hi: u8| {
            Err(InvalidOptions(format!(
                "{what} = {v} must be in {lo}..={hi} (n = {})",
                self.n
            )))
        };
        if !(1..=self.n).contains(&self.r) {
            return bad("r", self.r, 1, self.n);
        }
        if !(1..=self.n).contains(&self.w) {
            return bad("w", self.w, 1, self.n);
        }
        if self.pr > self.r {
            return bad("pr", self.pr, 0, self.r);
        }
        if self.pw > self.w {
            return bad("pw", self.pw, 0, self.w);
        }
        if self.timeout_ms == 0 || self.timeout_ms > TIMEOUT_MS_MAX {
            return Err(InvalidOptions(format!(
                "timeout_ms must be in 1..={TIMEOUT_MS_MAX}"
            )));
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(n, level, count)` — the quorum arithmetic, table-driven.
    const LEVELS: &[(u8, Quorum, u8)] = &[
        (1, Quorum::Quorum, 1),
        (2, Quorum::Quorum, 2),
        (3, Quorum::Quorum, 2),
        (4, Quorum::Quorum, 3),
        (5, Quorum::Quorum, 3),
        (3, Quorum::One, 1),
        (3, Quorum::All, 3),
        (5, Quorum::All, 5),
        (3, Quorum::Count(2), 2),
    ];

    #[test]
    fn levels_resolve() {
        for &(n, q, want) in LEVELS {
            assert_eq!(q.resolve(n), want, "{q} of {n}");
        }
    }

    #[test]
    fn parse_round_trips() {
        for q in [Quorum::One, Quorum::Quorum, Quorum::All, Quorum::Count(2)] {
            assert_eq!(Quorum::parse(&q.to_string()), Some(q));
        }
        assert_eq!(Quorum::parse("most"), None);
    }

    #[test]
    fn request_overrides_bucket_and_is_checked() {
        let bucket = BucketProps::default();
        let req = RequestOptions {
            w: Some(Quorum::All),
            pw: Some(Quorum::Count(1)),
            ..Default::default()
        };
        let r = Resolved::new(&bucket, &req, 5).unwrap();
        assert_eq!((r.n, r.r, r.w, r.pr, r.pw), (3, 2, 3, 0, 1));
        let too_many = RequestOptions {
            w: Some(Quorum::Count(4)),
            ..Default::default()
        };
        assert!(Resolved::new(&bucket, &too_many, 5).is_err());
        let pr_over_r = RequestOptions {
            r: Some(Quorum::One),
            pr: Some(Quorum::Count(2)),
            ..Default::default()
        };
        assert!(Resolved::new(&bucket, &pr_over_r, 5).is_err());
        assert!(
            Resolved::new(&bucket, &RequestOptions::default(), 2).is_err(),
            "n > nodes"
        );
    }
}
