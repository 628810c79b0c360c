//! What all listeners share: connection identifiers and the bound on open connections.

use broker_core::ConnectionId;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::sync::Semaphore;
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
