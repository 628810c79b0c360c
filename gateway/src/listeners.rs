//! What all listeners share: connection identifiers, the bound on open connections and the TLS
//! handshake ([`tls_handshake`]); and the accept loops of the MQTT listeners, which hand each
//! connection to [`connection::run`] over a [`TcpTransport`] (`run_tcp`) or, once its TLS
//! handshake is done, a [`TlsTransport`] (`run_tls`). (WebSocket connections arrive through
//! the HTTP listeners' `/mqtt` upgrade instead.)
//!
//! Invariants: every connection task, whatever its listener, holds a [`ConnectionPermit`] for
//! its whole life (a TLS one from before its handshake), so at most `maximum` connections are
//! open at once, and, where a lower bound per address is set, at most that many from one IP
//! address; connection identifiers are never reused within a gateway. An accept loop never
//! waits on a peer: TLS handshakes run in the connection's own task, bounded by the connect
//! timeout and cut short by shutdown.

use crate::connection::{self, ConnectionContext};
use crate::counters::TransportCounters;
use crate::security::tls::ServerConfigs;
use crate::transport::tcp::TcpTransport;
use crate::transport::tls::TlsTransport;
use broker_core::{ConnectionId, ConnectionInfo, Transport as TransportKind};
use futures_util::FutureExt;
use futures_util::future::OptionFuture;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
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
                Some(Box::new(peer.ip()))
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

/// One open connection's place under the limits, given back when dropped. Every connection's
/// task holds one, so it is two pointers: the address is boxed, and only where addresses are
/// counted.
#[derive(Debug)]
pub(crate) struct ConnectionPermit {
    limits: Arc<Limits>,
    /// The address it counts against, when addresses are counted.
    address: Option<Box<IpAddr>>,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.limits.permits.add_permits(1);
        if let (Some(address), Some(per_address)) = (&self.address, &self.limits.per_address) {
            let mut open = per_address.open.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(count) = open.get_mut(&**address) {
                *count -= 1;
                if *count == 0 {
                    open.remove(&**address);
                }
            }
        }
    }
}

/// The next connection on `listener`, or `None` once `shutdown` is cancelled. A failed accept
/// (out of file descriptors and the like) is logged and retried after a pause instead of
/// spinning.
pub(crate) async fn accept(
    listener: &TcpListener,
    shutdown: &CancellationToken,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return None,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok(accepted) => return Some(accepted),
            Err(error) => {
                warn!("accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Runs the TLS handshake of a connection accepted by a listener of `kind` (mqtts, https),
/// for at most `timeout` and not past `shutdown`. A handshake that fails (an unknown or
/// expired client certificate, none where one is required, bytes that are not TLS, a peer that
/// says nothing) is one warning naming the listener kind, the peer and the reason, and the
/// connection is closed.
pub(crate) async fn tls_handshake(
    kind: &'static str,
    acceptor: TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    timeout: Duration,
    shutdown: &CancellationToken,
) -> Option<TlsStream<TcpStream>> {
    let handshake = tokio::time::timeout(timeout, acceptor.accept(stream));
    let result = tokio::select! {
        () = shutdown.cancelled() => return None,
        result = handshake => result,
    };
    match result {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(error)) => {
            warn!("closing {kind} connection from {peer}: TLS handshake failed: {error}");
            None
        }
        Err(_) => {
            warn!("closing {kind} connection from {peer}: no TLS handshake within {timeout:?}");
            None
        }
    }
}

/// Accepts MQTT over TCP connections on `listener` until `shutdown` is cancelled.
pub(crate) async fn run_tcp(
    listener: TcpListener,
    context: ConnectionContext,
    limiter: ConnectionLimiter,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    // One copy for all of this listener's connections.
    let context = Arc::new(context);
    while let Some((stream, peer)) = accept(&listener, &shutdown).await {
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

/// Accepts MQTT over TLS connections on `listener` until `shutdown` is cancelled. Each
/// connection takes the TLS configuration in force when it is accepted, and runs its
/// handshake in its own task.
pub(crate) async fn run_tls(
    listener: TcpListener,
    configs: Arc<ServerConfigs>,
    context: ConnectionContext,
    limiter: ConnectionLimiter,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    let context = Arc::new(context);
    while let Some((stream, peer)) = accept(&listener, &shutdown).await {
        let Some(permit) = limiter.try_acquire(peer) else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let acceptor = TlsAcceptor::from(configs.mqtt());
        let timeout = context.settings.connect_timeout;
        let connection = limiter.next_id();
        let context = context.clone();
        let shutdown = shutdown.clone();
        // The handshake, then the connection: `then` holds one of them at a time, and the
        // arguments of `run` only until it starts.
        let handshake =
            async move { tls_handshake("mqtts", acceptor, stream, peer, timeout, &shutdown).await };
        let serve = handshake.then(move |stream| {
            OptionFuture::from(stream.map(|stream| {
                let info = ConnectionInfo {
                    transport: TransportKind::Tls,
                    remote_address: peer.to_string().into(),
                };
                connection::run(TlsTransport::new(stream), connection, info, context)
            }))
        });
        tracker.spawn(serve.map(move |_| drop(permit)));
    }
}
