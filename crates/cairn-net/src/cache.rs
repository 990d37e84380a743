//! The connection cache: one long-lived connection per (address, ALPN), shared by every
//! caller, re-dialled when it dies, with exponential backoff between failed dials.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use quinn::Connection;

use crate::{Alpn, NetError};

/// Cache key: a connection serves one ALPN to one address.
pub(crate) type Key = (SocketAddr, Alpn);

/// One entry per (address, ALPN) ever dialled. Entries are small and the addresses are the
/// cluster's nodes (or, for a client, the nodes it talks to), so the map is not pruned.
#[derive(Default)]
pub(crate) struct Cache {
    slots: Mutex<HashMap<Key, Arc<Slot>>>,
}

#[derive(Default)]
struct Slot {
    /// The live connection, read without waiting on a dial in progress.
    current: Mutex<Option<Connection>>,
    /// Held while dialling, so that concurrent callers wait for one dial instead of each
    /// starting their own.
    dial: tokio::sync::Mutex<Backoff>,
    /// Whether the live connection has heard from its remote since it last sent.
    heard: Mutex<Heard>,
}

/// What [`Cache::stalled`] remembers of one connection: the datagrams it had received
/// when last looked at, and since when it has sent without receiving one more.
#[derive(Default)]
struct Heard {
    connection: Option<usize>,
    received: u64,
    unanswered_since: Option<Instant>,
}

#[derive(Default)]
struct Backoff {
    failures: u32,
    retry_at: Option<Instant>,
}

/// A connection from the cache, and whether it was already there (so may have died
/// unnoticed) or was dialled for this call.
pub(crate) struct Cached {
    pub(crate) connection: Connection,
    pub(crate) reused: bool,
}

impl Cache {
    /// The live connection for `key`, dialling with `dial` if there is none. While the
    /// last dial's backoff lasts, fails fast with [`NetError::Backoff`].
    pub(crate) async fn get<F, Fut>(
        &self,
        key: Key,
        backoff: impl Fn(u32) -> Duration,
        dial: F,
    ) -> Result<Cached, NetError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Connection, NetError>>,
    {
        let slot = self.slot(key);
        if let Some(connection) = slot.live() {
            return Ok(Cached {
                connection,
                reused: true,
            });
        }
        let mut state = slot.dial.lock().await;
        // Another caller may have dialled while we waited for the lock.
        if let Some(connection) = slot.live() {
            return Ok(Cached {
                connection,
                reused: false,
            });
        }
        if let Some(wait) = state.remaining(Instant::now()) {
            return Err(NetError::Backoff(wait));
        }
        match dial().await {
            Ok(connection) => {
                *state = Backoff::default();
                *lock(&slot.current) = Some(connection.clone());
                Ok(Cached {
                    connection,
                    reused: false,
                })
            }
            Err(NetError::Closed) => Err(NetError::Closed),
            Err(error) => {
                state.failed(Instant::now(), &backoff);
                Err(error)
            }
        }
    }

    /// Forgets `connection` if it is still the one cached for `key` (a newer one is kept).
    pub(crate) fn evict(&self, key: Key, connection: &Connection) {
        let slot = self.slot(key);
        let mut current = lock(&slot.current);
        if current.as_ref().map(Connection::stable_id) == Some(connection.stable_id()) {
            *current = None;
        }
    }

    /// The connection cached for `key` if it has sent without receiving a single
    /// datagram back for `stall` or longer. A live remote acknowledges within a round trip
    /// (and answers keep-alives); one that is cut off, paused or gone does not, and QUIC
    /// then retransmits on a backoff that doubles each time, so without this the
    /// connection could stay silent for tens of seconds after a heal.
    pub(crate) fn stalled(&self, key: Key, now: Instant, stall: Duration) -> Option<Connection> {
        let slot = self.slot(key);
        let connection = slot.live()?;
        let received = connection.stats().udp_rx.datagrams;
        let mut heard = lock(&slot.heard);
        if heard.connection != Some(connection.stable_id()) || heard.received != received {
            *heard = Heard {
                connection: Some(connection.stable_id()),
                received,
                unanswered_since: None,
            };
            return None;
        }
        let since = heard.unanswered_since?;
        (now.saturating_duration_since(since) >= stall).then_some(connection)
    }

    /// Notes that `connection`, cached for `key`, has just sent: it should hear back.
    pub(crate) fn sent(&self, key: Key, connection: &Connection, now: Instant) {
        let slot = self.slot(key);
        let mut heard = lock(&slot.heard);
        if heard.connection == Some(connection.stable_id()) && heard.unanswered_since.is_none() {
            heard.unanswered_since = Some(now);
        }
    }

    /// Forgets every connection (the endpoint is closing them).
    pub(crate) fn clear(&self) {
        lock(&self.slots).clear();
    }

    fn slot(&self, key: Key) -> Arc<Slot> {
        Arc::clone(lock(&self.slots).entry(key).or_default())
    }
}

impl Slot {
    /// The cached connection if it has not closed; a closed one is dropped here.
    fn live(&self) -> Option<Connection> {
        let mut current = lock(&self.current);
        if current.as_ref()?.close_reason().is_some() {
            *current = None;
        }
        current.clone()
    }
}

impl Backoff {
    fn remaining(&self, now: Instant) -> Option<Duration> {
        let wait = self.retry_at?.checked_duration_since(now)?;
        (!wait.is_zero()).then_some(wait)
    }

    fn failed(&mut self, now: Instant, backoff: impl Fn(u32) -> Duration) {
        self.failures = self.failures.saturating_add(1);
        self.retry_at = Some(now + backoff(self.failures));
    }
}

/// The crate's locks guard plain data with no invariant a panic could break halfway (the
/// cache's slots, the traffic counts), so a poisoned lock is used as is.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_blocks_until_it_ends() {
        let start = Instant::now();
        let mut state = Backoff::default();
        assert_eq!(state.remaining(start), None);
        state.failed(start, |n| Duration::from_secs(u64::from(n)));
        assert_eq!(state.remaining(start), Some(Duration::from_secs(1)));
        assert_eq!(state.remaining(start + Duration::from_secs(1)), None);
        state.failed(start, |n| Duration::from_secs(u64::from(n)));
        assert_eq!(state.remaining(start), Some(Duration::from_secs(2)));
    }
}
