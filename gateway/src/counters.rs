//! Counters that the transports update and others read: bytes in and out of every connection,
//! and the network connections open now, by transport.
//!
//! They are atomics shared through one `Arc<TransportCounters>`, so that a connection task counts
//! without sending anything: the broker task reads the byte counts on its timer (for `$SYS`), and
//! `/metrics` and `/api/v1/stats` read everything when asked. Neither owns them, which is why
//! they live here rather than in the broker task's module or in the metrics module.
//!
//! Invariant: an [`OpenConnections`] slot counts exactly the live [`OpenConnection`] guards of its
//! transport (each connection task holds one from its start to its end, before and after
//! CONNECT alike: the broker only knows clients that completed CONNECT).

use crate::security::{Method, Refusal};
use broker_core::Transport;
use std::sync::atomic::{AtomicU64, Ordering};

/// Every transport, in the order of [`OpenConnections`]' slots.
pub(crate) const TRANSPORTS: [Transport; 4] = [
    Transport::Tcp,
    Transport::Tls,
    Transport::WebSocket,
    Transport::WebSocketTls,
];

fn slot(transport: Transport) -> usize {
    match transport {
        Transport::Tcp => 0,
        Transport::Tls => 1,
        Transport::WebSocket => 2,
        Transport::WebSocketTls => 3,
    }
}

/// Byte counters the transports update and the broker reads for `$SYS` and metrics.
#[derive(Debug, Default)]
pub(crate) struct TransportCounters {
    /// Bytes read from all connections.
    pub(crate) bytes_received: AtomicU64,
    /// Bytes written to all connections.
    pub(crate) bytes_sent: AtomicU64,
    /// Network connections open now, by transport, for `/metrics`.
    pub(crate) open_connections: OpenConnections,
    /// Of those, the TCP connections parked now for being quiet, as the parking lot counts
    /// them (see [`crate::parking`]).
    pub(crate) parked_connections: AtomicU64,
    /// Parked connections resumed so far: how often quiet connections speak again.
    pub(crate) resumed_connections: AtomicU64,
    /// CONNECTs accepted, by [`Method`] in the order of `Method::ALL`.
    pub(crate) auth_accepted: [AtomicU64; Method::ALL.len()],
    /// CONNECTs refused by the credentials check, by [`Refusal::index`].
    pub(crate) auth_refused: [AtomicU64; Refusal::LABELS.len()],
    /// Connections refused because their address had too many open already.
    pub(crate) refused_per_address: AtomicU64,
    /// Connections refused because `--max-connections` were open.
    pub(crate) refused_max_connections: AtomicU64,
    /// Connections closed as soon as accepted because the process was out of file descriptors.
    pub(crate) refused_out_of_descriptors: AtomicU64,
}

impl TransportCounters {
    /// Counts the outcome of one credentials check.
    pub(crate) fn record_authentication(&self, outcome: Result<Method, Refusal>) {
        let count = match outcome {
            Ok(method) => &self.auth_accepted[method as usize],
            Err(refusal) => &self.auth_refused[refusal.index()],
        };
        count.fetch_add(1, Ordering::Relaxed);
    }
}

/// Network connections open now, by transport (including those still waiting for CONNECT).
#[derive(Debug, Default)]
pub(crate) struct OpenConnections {
    counts: [AtomicU64; 4],
}

impl OpenConnections {
    /// Counts a connection as open until the returned guard is dropped.
    pub(crate) fn open(&self, transport: Transport) -> OpenConnection<'_> {
        self.counts[slot(transport)].fetch_add(1, Ordering::Relaxed);
        OpenConnection {
            count: &self.counts[slot(transport)],
        }
    }

    /// The guard of a connection coming back from the parking lot: its count, which
    /// [`OpenConnection::park`] left in place, is taken over, not counted again.
    pub(crate) fn resumed(&self, transport: Transport) -> OpenConnection<'_> {
        OpenConnection {
            count: &self.counts[slot(transport)],
        }
    }

    /// Connections open now over `transport`.
    pub(crate) fn get(&self, transport: Transport) -> u64 {
        self.counts[slot(transport)].load(Ordering::Relaxed)
    }
}

/// Keeps one connection counted in [`OpenConnections`] while it lives.
#[derive(Debug)]
pub(crate) struct OpenConnection<'a> {
    count: &'a AtomicU64,
}

impl OpenConnection<'_> {
    /// Leaves the connection counted while it is parked, without a task to hold its guard;
    /// [`OpenConnections::resumed`] gives it one again.
    pub(crate) fn park(self) {
        std::mem::forget(self);
    }
}

impl Drop for OpenConnection<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_connection_guards_count() {
        let open = OpenConnections::default();
        let first = open.open(Transport::WebSocket);
        let second = open.open(Transport::WebSocket);
        assert_eq!(open.get(Transport::WebSocket), 2);
        assert_eq!(open.get(Transport::Tcp), 0);
        drop(first);
        assert_eq!(open.get(Transport::WebSocket), 1);
        drop(second);
        assert_eq!(open.get(Transport::WebSocket), 0);
    }
}
