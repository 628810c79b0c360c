//! What all listeners share: connection identifiers and the bound on open connections; and the
//! accept loop of the MQTT over TCP listeners, which hands each connection to
//! [`connection::run`] over a [`TcpTransport`]. (WebSocket connections arrive through the HTTP
//! listeners' `/mqtt` upgrade instead.)
//!
//! Invariants: every connection task, whatever its listener, holds a [`ConnectionPermit`] for
//! its whole life, so at most `maximum` connections are open at once; connection identifiers
//! are never reused within a gateway.

use crate::connection::{self, ConnectionContext};
use crate::transport::tcp::TcpTransport;
use broker_core::{ConnectionId, ConnectionInfo, Transport as TransportKind};
use futures_util::FutureExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

/// Hands out connection identifiers and enforces the maximum number of connections.
#[derive(Clone, Debug)]
pub(crate) struct ConnectionLimiter {
    permits: Arc<Semaphore>,
    next_id: Arc<AtomicU64>,
    /// Set while refusing, so a storm of connections logs one line, not thousands.
    refusing: Arc<AtomicBool>,
    maximum: usize,
}

impl ConnectionLimiter {
    /// A limiter allowing `maximum` open connections.
    pub(crate) fn new(maximum: usize) -> Self {
        ConnectionLimiter {
            permits: Arc::new(Semaphore::new(maximum)),
            next_id: Arc::new(AtomicU64::new(1)),
            refusing: Arc::new(AtomicBool::new(false)),
            maximum,
        }
    }

    /// A fresh connection identifier.
    pub(crate) fn next_id(&self) -> ConnectionId {
        ConnectionId(self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// A permit for one more connection, or `None` (logged once per episode) at the limit.
    pub(crate) fn try_acquire(&self, peer: &str) -> Option<ConnectionPermit> {
        match self.permits.try_acquire() {
            Ok(permit) => {
                permit.forget();
                self.refusing.store(false, Ordering::Relaxed);
                Some(ConnectionPermit(self.permits.clone()))
            }
            Err(_) => {
                if !self.refusing.swap(true, Ordering::Relaxed) {
                    warn!(
                        "refusing connection from {peer}: {} connections are open (the maximum)",
                        self.maximum
                    );
                }
                None
            }
        }
    }
}

/// One open connection's place under the limit, given back when dropped. Half the size of
/// tokio's `OwnedSemaphorePermit` (which also counts its permits), and every connection's task
/// holds one.
#[derive(Debug)]
pub(crate) struct ConnectionPermit(Arc<Semaphore>);

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.0.add_permits(1);
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
        let Some(permit) = limiter.try_acquire(&peer.to_string()) else {
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
