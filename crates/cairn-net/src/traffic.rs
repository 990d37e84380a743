//! Datagrams sent and received over the connections an endpoint accepted, for metrics.
//!
//! quinn counts per connection; the total is what the accepted connections that closed
//! counted plus what the open ones count now. Only accepted connections are counted: a
//! connection's handle keeps it open, and the connection's own serving task already holds
//! one for as long as it lives, so tracking adds nothing to its life (a dialled connection
//! is closed by dropping its last handle). Across a cluster every connection is accepted
//! by exactly one node, so the nodes' sums cover all peer traffic once. Packets per
//! operation is what a node's CPU follows most closely on loopback (each datagram is a
//! system call and, on an idle receiver, a wake-up).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use quinn::Connection;

use crate::cache::lock;

/// Datagrams over an endpoint's connections since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Datagrams {
    /// UDP datagrams sent.
    pub sent: u64,
    /// UDP datagrams received.
    pub received: u64,
}

/// The endpoint's connections and what its closed ones counted.
#[derive(Default)]
pub(crate) struct Traffic {
    /// Open accepted connections by quinn's stable id; each leaves when its serving task
    /// ends, so this holds no more than the endpoint's open connections.
    open: Mutex<HashMap<usize, Connection>>,
    closed_sent: AtomicU64,
    closed_received: AtomicU64,
}

impl Traffic {
    /// Counts `connection` until the returned guard drops (when its serving task ends).
    pub(crate) fn track(self: &Arc<Self>, connection: &Connection) -> Tracked {
        lock(&self.open).insert(connection.stable_id(), connection.clone());
        Tracked {
            traffic: Arc::clone(self),
            connection: connection.clone(),
        }
    }

    /// Moves a connection's counts into the closed totals.
    fn forget(&self, connection: &Connection) {
        // Removed and counted under one lock, so a total never counts it twice or not at
        // all.
        let mut open = lock(&self.open);
        if open.remove(&connection.stable_id()).is_some() {
            let stats = connection.stats();
            self.closed_sent
                .fetch_add(stats.udp_tx.datagrams, Ordering::Relaxed);
            self.closed_received
                .fetch_add(stats.udp_rx.datagrams, Ordering::Relaxed);
        }
    }

    /// Everything counted so far.
    pub(crate) fn totals(&self) -> Datagrams {
        let open = lock(&self.open);
        let mut total = Datagrams {
            sent: self.closed_sent.load(Ordering::Relaxed),
            received: self.closed_received.load(Ordering::Relaxed),
        };
        for connection in open.values() {
            let stats = connection.stats();
            total.sent = total.sent.saturating_add(stats.udp_tx.datagrams);
            total.received = total.received.saturating_add(stats.udp_rx.datagrams);
        }
        total
    }
}

/// A connection counted by [`Traffic`] while this lives.
pub(crate) struct Tracked {
    traffic: Arc<Traffic>,
    connection: Connection,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.traffic.forget(&self.connection);
    }
}
