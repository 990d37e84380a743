//! Transport settings and their validation.

use std::sync::Arc;
use std::time::Duration;

use quinn::{IdleTimeout, TransportConfig, VarInt};

use crate::{NetError, FRAME_BYTES_MAX};

/// Transport settings for an [`Endpoint`](crate::Endpoint). Checked once by
/// [`NetConfig::validate`] when the endpoint is built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetConfig {
    /// A connection with no traffic for this long is dead (default 10 s).
    pub idle_timeout: Duration,
    /// Keep-alive interval; must be below `idle_timeout` so that a live but quiet
    /// connection never times out (default 3 s).
    pub keep_alive: Duration,
    /// Most concurrent requests of each kind (bidirectional streams for requests with a
    /// reply, unidirectional ones for one-way requests) a remote may have open on one
    /// connection it dialled to this endpoint; further ones wait for a slot (default 1024;
    /// quinn's default is 100). A remote may open none on a connection this endpoint
    /// dialled.
    pub max_concurrent_streams: u32,
    /// Longest a new connection may take: QUIC handshake plus the first ping (default 2 s).
    pub connect_timeout: Duration,
    /// Longest a whole call may take once connected: open a stream, write the request,
    /// read the reply. The server also gives a remote this long to send a request (default
    /// 10 s).
    pub call_timeout: Duration,
    /// Longest a one-way send ([`Endpoint::tell`](crate::Endpoint::tell)) may wait for
    /// room on its connection (a stream slot, flow-control credit), and longest any
    /// connection may send (one-way sends and calls) without receiving a datagram back,
    /// before it is given up as stalled and closed, so the next send or call dials again
    /// (default 2 s; at most `call_timeout`). A remote that stopped answering (cut off,
    /// paused, or restarted) leaves QUIC retransmitting on a backoff that doubles each
    /// time: after a partition of a few seconds the connection sent nothing for tens of
    /// seconds more, healed or not, and a node restarted meanwhile heard nothing from that
    /// peer (a nemesis wipe synced after 17.6–32.6 s). A fresh connection is tried within
    /// `backoff_max` of the heal. Sends normally find room in microseconds, and a live
    /// remote acknowledges within a round trip, however long its answer takes.
    pub stall_timeout: Duration,
    /// Wait after the first failed connection attempt to an address; doubles per further
    /// failure (default 100 ms).
    pub backoff_min: Duration,
    /// Longest wait between connection attempts (default 5 s).
    pub backoff_max: Duration,
    /// Largest frame payload sent or accepted (default [`FRAME_BYTES_MAX`], at most
    /// `u32::MAX`).
    pub frame_bytes_max: usize,
}

impl Default for NetConfig {
    fn default() -> NetConfig {
        NetConfig {
            idle_timeout: Duration::from_secs(10),
            keep_alive: Duration::from_secs(3),
            max_concurrent_streams: 1024,
            connect_timeout: Duration::from_secs(2),
            call_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(2),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            frame_bytes_max: FRAME_BYTES_MAX,
        }
    }
}

impl NetConfig {
    /// Checks every setting; an error names the first one out of range.
    pub fn validate(&self) -> Result<(), NetError> {
        let nonzero = [
            ("idle_timeout", self.idle_timeout),
            ("keep_alive", self.keep_alive),
            ("connect_timeout", self.connect_timeout),
            ("call_timeout", self.call_timeout),
            ("stall_timeout", self.stall_timeout),
            ("backoff_min", self.backoff_min),
        ];
        if let Some((name, _)) = nonzero.iter().find(|(_, value)| value.is_zero()) {
            return Err(bad(format!("{name} must be above zero")));
        }
        if self.keep_alive >= self.idle_timeout {
            return Err(bad(format!(
                "keep_alive ({:?}) must be below idle_timeout ({:?})",
                self.keep_alive, self.idle_timeout
            )));
        }
        if self.stall_timeout > self.call_timeout {
            return Err(bad("stall_timeout must be at most call_timeout"));
        }
        if self.backoff_max < self.backoff_min {
            return Err(bad("backoff_max must be at least backoff_min"));
        }
        if self.max_concurrent_streams == 0 {
            return Err(bad("max_concurrent_streams must be above zero"));
        }
        if self.frame_bytes_max == 0 || u32::try_from(self.frame_bytes_max).is_err() {
            return Err(bad("frame_bytes_max must be between 1 and u32::MAX"));
        }
        IdleTimeout::try_from(self.idle_timeout)
            .map_err(|_| bad("idle_timeout is too large for QUIC"))?;
        Ok(())
    }

    /// The quinn transport settings these values imply (call after [`Self::validate`]),
    /// for the side that serves (`serving`) or the side that dials. Only a served
    /// connection accepts streams; a dialled one lets the remote open none, so nothing a
    /// remote sends there sits unread in a buffer until the connection ends.
    pub(crate) fn transport(&self, serving: bool) -> Result<Arc<TransportConfig>, NetError> {
        let idle = IdleTimeout::try_from(self.idle_timeout)
            .map_err(|_| bad("idle_timeout is too large for QUIC"))?;
        let streams = VarInt::from_u32(if serving {
            self.max_concurrent_streams
        } else {
            0
        });
        let mut transport = TransportConfig::default();
        transport
            .max_concurrent_bidi_streams(streams)
            // Requests with a reply use bidirectional streams; one-way requests
            // (`Endpoint::tell`, peers only) use unidirectional ones.
            .max_concurrent_uni_streams(streams)
            .max_idle_timeout(Some(idle))
            .keep_alive_interval(Some(self.keep_alive));
        Ok(Arc::new(transport))
    }

    /// The wait before the next attempt after `failures` consecutive failed attempts
    /// (at least one): `backoff_min * 2^(failures-1)`, capped at `backoff_max`.
    pub(crate) fn backoff(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.backoff_min
            .saturating_mul(1 << doublings)
            .min(self.backoff_max)
    }
}

fn bad(message: impl Into<String>) -> NetError {
    NetError::Config(message.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        NetConfig::default().validate().unwrap();
    }

    #[test]
    fn keep_alive_must_be_below_idle_timeout() {
        let config = NetConfig {
            keep_alive: Duration::from_secs(10),
            ..NetConfig::default()
        };
        assert!(matches!(config.validate(), Err(NetError::Config(m)) if m.contains("keep_alive")));
    }

    #[test]
    fn a_stall_may_last_no_longer_than_a_call() {
        let config = NetConfig {
            stall_timeout: Duration::from_secs(11),
            ..NetConfig::default()
        };
        assert!(config.validate().is_err());
    }

    #[test]
    fn zero_and_oversized_values_are_refused() {
        let zero_streams = NetConfig {
            max_concurrent_streams: 0,
            ..NetConfig::default()
        };
        assert!(zero_streams.validate().is_err());
        let zero_timeout = NetConfig {
            call_timeout: Duration::ZERO,
            ..NetConfig::default()
        };
        assert!(zero_timeout.validate().is_err());
        let inverted = NetConfig {
            backoff_max: Duration::from_millis(1),
            ..NetConfig::default()
        };
        assert!(inverted.validate().is_err());
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let config = NetConfig::default();
        let waits: Vec<_> = (1..=8).map(|n| config.backoff(n)).collect();
        let expected_ms = [100, 200, 400, 800, 1600, 3200, 5000, 5000];
        let expected: Vec<_> = expected_ms.map(Duration::from_millis).to_vec();
        assert_eq!(waits, expected);
        assert_eq!(config.backoff(u32::MAX), config.backoff_max);
    }
}
