//! What all listeners share: connection identifiers, the bound on open connections, accepting
//! when the process runs out of file descriptors ([`Acceptor`]) and the TLS handshake
//! ([`tls_handshake`]); and the accept loops of the MQTT listeners, which hand each connection
//! to [`connection::run`] over a [`TcpTransport`] (`run_tcp`) or, once its TLS handshake is
//! done, a [`TlsTransport`] (`run_tls`). (WebSocket connections arrive through the HTTP
//! listeners' `/mqtt` upgrade instead.)
//!
//! A crowd beyond a limit is refused, never queued: at `--max-connections` (or the bound per
//! address) a new connection is closed as soon as it is accepted, before any MQTT, as
//! Mosquitto does at its `max_connections`; out of file descriptors, the [`Acceptor`] spends a
//! descriptor it keeps in reserve to accept and close each waiting connection, so that clients
//! are told at once rather than left in the listen queue, and the loop waits for the next
//! connection instead of retrying the failed accept. Either kind of refusal is one warning when
//! it begins and one line when connections are accepted again (a [`RefusalEpisode`]), whatever
//! the number refused, and is counted for `/metrics`.
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
use std::fs::File;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

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
    /// Set while refusing at `maximum`: the fast path's way to skip `episode`.
    refusing: AtomicBool,
    /// The refusals at `maximum`, so that a storm of connections logs one line, not thousands.
    episode: Mutex<RefusalEpisode>,
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
                episode: Mutex::new(RefusalEpisode::default()),
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
            limits
                .counters
                .refused_max_connections
                .fetch_add(1, Ordering::Relaxed);
            let mut episode = limits.episode.lock().unwrap_or_else(|e| e.into_inner());
            // Under the lock, so that an admission ending the episode cannot clear it after.
            limits.refusing.store(true, Ordering::Relaxed);
            if episode.refuse(Instant::now()) {
                warn!(
                    "refusing connection from {peer}: {} connections are open (--max-connections); \
                     new connections are closed at once until some end",
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
        if limits.refusing.load(Ordering::Relaxed) {
            let mut episode = limits.episode.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(refused) = episode.admit(Instant::now()) {
                limits.refusing.store(false, Ordering::Relaxed);
                info!(
                    "accepting connections again: {refused} refused at --max-connections ({})",
                    limits.maximum
                );
            }
        }
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

/// How long refusals must have stopped before a [`RefusalEpisode`] is over: a gateway at a
/// limit that frees a slot now and then admits one connection between refusals, and that is
/// still the same episode.
const EPISODE_QUIET: Duration = Duration::from_secs(1);

/// A run of refused connections, logged once when it begins and once when it ends rather than
/// once per connection.
#[derive(Debug, Default)]
pub(crate) struct RefusalEpisode {
    /// When the last refusal happened and how many there were since the episode began; `None`
    /// outside an episode.
    current: Option<(Instant, u64)>,
}

impl RefusalEpisode {
    /// Counts a refusal at `now`; true when it begins an episode (the caller logs it).
    pub(crate) fn refuse(&mut self, now: Instant) -> bool {
        match &mut self.current {
            Some((last, refused)) => {
                *last = now;
                *refused += 1;
                false
            }
            None => {
                self.current = Some((now, 1));
                true
            }
        }
    }

    /// Counts an admission at `now`; the number refused when it ends an episode, that is when
    /// the last refusal was at least [`EPISODE_QUIET`] ago.
    pub(crate) fn admit(&mut self, now: Instant) -> Option<u64> {
        match self.current {
            Some((last, refused)) if now.saturating_duration_since(last) >= EPISODE_QUIET => {
                self.current = None;
                Some(refused)
            }
            _ => None,
        }
    }
}

/// How long to wait before accepting again after a failure that a retry cannot fix at once
/// (out of descriptors with no reserve left, out of kernel memory).
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// A listening socket that keeps accepting through a shortage of file descriptors.
///
/// When `accept` fails with EMFILE or ENFILE, the connection stays in the kernel's queue and
/// the socket stays readable, so retrying at once would spin, and sleeping would leave clients
/// waiting (and the queue full) for as long as the shortage lasts. Instead the acceptor closes
/// the descriptor it keeps in reserve (`/dev/null`, opened at start), accepts the waiting
/// connection with it, closes that at once (its client sees the connection closed, as at
/// `--max-connections`) and opens the reserve again. Each failure thus takes one connection off
/// the queue, and once the queue is empty the loop waits for readiness like any other. If the
/// reserve cannot be had back (another task took the descriptor), failed accepts are retried
/// every [`ACCEPT_RETRY`] instead.
#[derive(Debug)]
pub(crate) struct Acceptor {
    listener: TcpListener,
    /// What it is and where, for the log: `mqtt 127.0.0.1:1883`.
    name: String,
    reserve: Option<File>,
    /// The refusals for lack of descriptors (and other failed accepts).
    episode: RefusalEpisode,
    counters: Arc<TransportCounters>,
}

impl Acceptor {
    /// An acceptor for `listener` of `kind` (mqtt, mqtts, http, https), counting in `counters`.
    pub(crate) fn new(kind: &str, listener: TcpListener, counters: Arc<TransportCounters>) -> Self {
        let name = match listener.local_addr() {
            Ok(address) => format!("{kind} {address}"),
            Err(_) => kind.to_owned(),
        };
        Acceptor {
            listener,
            name,
            reserve: open_reserve(),
            episode: RefusalEpisode::default(),
            counters,
        }
    }

    /// The next connection. Cancel-safe: a connection is either returned or left in the queue.
    pub(crate) async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            match self.listener.accept().await {
                Ok(accepted) => {
                    if let Some(refused) = self.episode.admit(Instant::now()) {
                        info!(
                            "{}: accepting connections again ({refused} refused)",
                            self.name
                        );
                    }
                    return accepted;
                }
                // The peer gave up before its connection was accepted: nothing to do.
                Err(error) if is_connection_error(&error) => {}
                Err(error) if is_out_of_descriptors(&error) => self.refuse_one(&error).await,
                Err(error) => {
                    if self.episode.refuse(Instant::now()) {
                        warn!("{}: accept failed: {error}; retrying", self.name);
                    }
                    tokio::time::sleep(ACCEPT_RETRY).await;
                }
            }
        }
    }

    /// Out of descriptors: closes the connection at the head of the queue with the reserve's
    /// descriptor, or waits a little when there is no reserve.
    async fn refuse_one(&mut self, error: &io::Error) {
        if self.episode.refuse(Instant::now()) {
            warn!(
                "{}: out of file descriptors ({error}): refusing new connections until some \
                 close (raise `ulimit -n`, or lower --max-connections below it)",
                self.name
            );
        }
        let Some(reserve) = self.reserve.take() else {
            tokio::time::sleep(ACCEPT_RETRY).await;
            self.reserve = open_reserve();
            return;
        };
        drop(reserve);
        // The socket is still readable (a failed accept does not clear its readiness), so this
        // first poll accepts; `None` means the client left in between.
        if let Some(Ok((stream, _))) = self.listener.accept().now_or_never() {
            drop(stream);
            self.counters
                .refused_out_of_descriptors
                .fetch_add(1, Ordering::Relaxed);
        }
        self.reserve = open_reserve();
    }
}

/// A descriptor to spend when the process runs out: `/dev/null`, opened for reading.
fn open_reserve() -> Option<File> {
    File::open("/dev/null").ok()
}

/// EMFILE (this process's limit, `ulimit -n`) or ENFILE (the system's).
fn is_out_of_descriptors(error: &io::Error) -> bool {
    // EMFILE and ENFILE on Linux; std has no ErrorKind for them.
    matches!(error.raw_os_error(), Some(24 | 23))
}

/// A connection that failed between the handshake and `accept`: the next one is unaffected.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    )
}

/// The next connection on `acceptor`, or `None` once `shutdown` is cancelled.
pub(crate) async fn accept(
    acceptor: &mut Acceptor,
    shutdown: &CancellationToken,
) -> Option<(TcpStream, SocketAddr)> {
    tokio::select! {
        () = shutdown.cancelled() => None,
        accepted = acceptor.accept() => Some(accepted),
    }
}

impl axum::serve::Listener for Acceptor {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        Acceptor::accept(self).await
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
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
    mut listener: Acceptor,
    context: ConnectionContext,
    limiter: ConnectionLimiter,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    // One copy for all of this listener's connections.
    let context = Arc::new(context);
    while let Some((stream, peer)) = accept(&mut listener, &shutdown).await {
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
        let serve = connection::run(transport, limiter.next_id(), info, context.clone(), permit);
        tracker.spawn(serve);
    }
}

/// Accepts MQTT over TLS connections on `listener` until `shutdown` is cancelled. Each
/// connection takes the TLS configuration in force when it is accepted, and runs its
/// handshake in its own task.
pub(crate) async fn run_tls(
    mut listener: Acceptor,
    configs: Arc<ServerConfigs>,
    context: ConnectionContext,
    limiter: ConnectionLimiter,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    let context = Arc::new(context);
    while let Some((stream, peer)) = accept(&mut listener, &shutdown).await {
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
        // arguments of `run` only until it starts. The permit goes with the handshake, and on
        // to the connection if there is one.
        let handshake = async move {
            let stream = tls_handshake("mqtts", acceptor, stream, peer, timeout, &shutdown).await;
            stream.map(|stream| (stream, permit))
        };
        let serve = handshake.then(move |stream| {
            OptionFuture::from(stream.map(|(stream, permit)| {
                let info = ConnectionInfo {
                    transport: TransportKind::Tls,
                    remote_address: peer.to_string().into(),
                };
                connection::run(TlsTransport::new(stream), connection, info, context, permit)
            }))
        });
        tracker.spawn(serve);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An episode begins with its first refusal, survives admissions that come while refusals
    /// continue, and ends with the first admission a quiet second after the last refusal.
    #[test]
    fn refusal_episodes_begin_once_and_end_after_a_quiet_second() {
        let start = Instant::now();
        let at = |millis| start + Duration::from_millis(millis);
        let mut episode = RefusalEpisode::default();
        assert_eq!(episode.admit(at(0)), None);
        assert!(episode.refuse(at(0)));
        assert!(!episode.refuse(at(10)));
        assert_eq!(episode.admit(at(500)), None);
        assert!(!episode.refuse(at(900)));
        assert_eq!(episode.admit(at(1800)), None);
        assert_eq!(episode.admit(at(1900)), Some(3));
        assert_eq!(episode.admit(at(3000)), None);
        assert!(episode.refuse(at(3000)));
    }
}
