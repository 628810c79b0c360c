//! What all listeners share: connection identifiers and the bound on open connections; and the
//! accept loop of the MQTT over TCP listeners, which hands each connection to
//! [`connection::run`] over a [`TcpTransport`]. (WebSocket connections arrive through the HTTP
//! listeners' `/mqtt` upgrade instead.)
//!
//! Invariants: every connection task, whatever its listener, holds a [`ConnectionPermit`] for
//! its whole life, so at most `maximum` connections are open at once, and, where a lower bound
//! per address is set, at most that many from one IP address; connection identifiers are never
//! reused within a gateway.

use crate::connection::{self, ConnectionContext};
use crate::counters::TransportCounters;
use crate::transport::tcp::TcpTransport;
use broker_core::{ConnectionId, ConnectionInfo, Transport as TransportKind};
use futures_util::FutureExt;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

/// Hands out connection identifiers and enforces the maximum number of connections, in all
/// and per address.
#[derive(Clone, Debug)]
pub(crate) struct ConnectionLimiter {
    shared: Arc<Limits>,
}

#[derive(Debug)]
struct Limits {
    permits: Semaphore,
    next_id: AtomicU64,
    /// Set while refusing, so a storm of connections logs one line, not thousands.
    refusing: AtomicBool,
    maximum: usize,
    /// Open connections by address, kept only when the bound per address is below `maximum`.
    per_address: Option<PerAddress>,
    counters: Arc<TransportCounters>,
}

#[derive(Debug)]
struct PerAddress {
    maximum: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl ConnectionLimiter {
    /// A limiter allowing `maximum` open connections, `per_address` of them from one IP address.
    pub(crate) fn new(
        maximum: usize,
        per_address: usize,
        counters: Arc<TransportCounters>,
    ) -> Self {
        let per_address = (per_address < maximum).then(|| PerAddress {
            maximum: per_address,
            open: Mutex::new(HashMap::new()),
        });
        ConnectionLimiter {
            shared: Arc::new(Limits {
                permits: Semaphore::new(maximum),
                next_id: AtomicU64::new(1),
                refusing: AtomicBool::new(false),
                maximum,
                per_address,
                counters,
            }),
        }
    }

    /// A fresh connection identifier.
    pub(crate) fn next_id(&self) -> ConnectionId {
        ConnectionId(self.shared.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// A permit for one more connection from `peer`, or `None` at a limit (logged once per
    /// episode for the overall one, once per refused connection for the per-address one:
    /// those name the address that is refused).
    pub(crate) fn try_acquire(&self, peer: SocketAddr) -> Option<ConnectionPermit> {
        let limits = &self.shared;
        let Ok(permit) = limits.permits.try_acquire() else {
            if !limits.refusing.swap(true, Ordering::Relaxed) {
                warn!(
                    "refusing connection from {peer}: {} connections are open (the maximum)",
                    limits.maximum
                );
            }
            return None;
        };
        let address = match &limits.per_address {
            None => None,
            Some(per_address) => {
                let mut open = per_address.open.lock().unwrap_or_else(|e| e.into_inner());
                let count = open.entry(peer.ip()).or_default();
                if *count >= per_address.maximum {
                    drop(open);
                    limits
                        .counters
                        .refused_per_address
                        .fetch_add(1, Ordering::Relaxed);
                    warn!(
                        "refusing connection from {peer}: {} connections from {} are open (--max-connections-per-ip)",
                        per_address.maximum,
                        peer.ip()
                    );
                    return None;
                }
                *count += 1;
                Some(peer.ip())
            }
        };
        permit.forget();
        limits.refusing.store(false, Ordering::Relaxed);
        Some(ConnectionPermit {
            limits: self.shared.clone(),
            address,
        })
    }
}

/// One open connection's place under the limits, given back when dropped.
#[derive(Debug)]
pub(crate) struct ConnectionPermit {
    limits: Arc<Limits>,
    /// The address it counts against, when addresses are counted.
    address: Option<IpAddr>,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.limits.permits.add_permits(1);
        if let (Some(address), Some(per_address)) = (self.address, &self.limits.per_address) {
            let mut open = per_address.open.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(count) = open.get_mut(&address) {
                *count -= 1;
                if *count == 0 {
                    open.remove(&address);
                }
            }
        }
    }
}

/// Accepts connections on `listener` until `shutdown` is cancelled.
pub(crate) async fn run_tcp(
    listener: TcpListener,
    context: ConnectionContext,
    limiter: ConnectionLimiter,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    // One copy for all of this listener's connections.
    let context = Arc::new(context);
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: back off instead of spinning.
                warn!("accept failed: {error}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(permit) = limiter.try_acquire(peer) else {
            continue;
        };
        // Small MQTT packets must not wait for Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        let info = ConnectionInfo {
            transport: TransportKind::Tcp,
            remote_address: peer.to_string().into(),
        };
        let transport = TcpTransport::new(stream);
        let serve = connection::run(transport, limiter.next_id(), info, context.clone());
        // `map` rather than an `async` block, which would hold the arguments of `run` besides
        // its future for the connection's lifetime.
        tracker.spawn(serve.map(move |()| drop(permit)));
    }
}
