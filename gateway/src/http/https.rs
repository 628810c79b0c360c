//! The HTTPS listeners: the same router as HTTP ([`super::app`]) behind TLS with ALPN
//! `http/1.1`, so `/mqtt` is MQTT over secure WebSocket.
//!
//! The accept loop never waits on a peer: each connection gets its own tracked task, which runs
//! the TLS handshake ([`listeners::tls_handshake`], bounded by the connect timeout), then serves
//! HTTP/1.1 with upgrades through hyper, as `axum::serve` does for plain HTTP. Every request
//! carries the peer address (`ConnectInfo<SocketAddr>`, as on plain HTTP) and a
//! [`TlsConnection`] extension, by which `/mqtt` knows its WebSocket is `wss` and learns the
//! client certificate's CN.
//!
//! Shutdown: cancelling the token stops the accept loop, cuts handshakes short and asks each
//! connection to close once its request in progress is answered (an idle keep-alive connection
//! closes at once; a request in progress gets the close grace period). Upgraded WebSockets
//! are past hyper by then; the broker's shutdown closes them like every MQTT connection.

use super::{HttpState, TlsConnection, app};
use crate::listeners;
use crate::security::tls::{ServerConfigs, common_name};
use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower_service::Service;
use tracing::debug;

/// Serves HTTPS on `listener` until `shutdown` is cancelled; each connection takes the TLS
/// configuration in force when it is accepted.
pub(crate) async fn run(
    mut listener: listeners::Acceptor,
    state: HttpState,
    configs: Arc<ServerConfigs>,
    shutdown: CancellationToken,
) {
    let tracker = state.tracker.clone();
    let timeouts = Timeouts {
        handshake: state.context.settings.connect_timeout,
        close: state.context.settings.close_timeout,
    };
    let router = app(state);
    while let Some((stream, peer)) = listeners::accept(&mut listener, &shutdown).await {
        let acceptor = TlsAcceptor::from(configs.https());
        tracker.spawn(serve_connection(
            acceptor,
            stream,
            peer,
            timeouts,
            router.clone(),
            shutdown.clone(),
        ));
    }
}

/// The bounds of an HTTPS connection's waits besides hyper's own.
#[derive(Clone, Copy, Debug)]
struct Timeouts {
    /// For the TLS handshake: the connect timeout.
    handshake: Duration,
    /// For the request in progress at shutdown.
    close: Duration,
}

/// One HTTPS connection: the handshake, then HTTP/1.1 requests until either side closes.
async fn serve_connection(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    timeouts: Timeouts,
    router: Router,
    shutdown: CancellationToken,
) {
    // MQTT over the WebSocket must not wait for Nagle's algorithm either.
    let _ = stream.set_nodelay(true);
    let Some(stream) = listeners::tls_handshake(
        "https",
        acceptor,
        stream,
        peer,
        timeouts.handshake,
        &shutdown,
    )
    .await
    else {
        return;
    };
    let certificate_name = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(common_name)
        .map(Arc::from);
    let tls = TlsConnection { certificate_name };
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        let extensions = request.extensions_mut();
        extensions.insert(ConnectInfo(peer));
        extensions.insert(tls.clone());
        // A `Router` is always ready, so `call` needs no `poll_ready` first.
        router.clone().call(request)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The timer bounds the wait for a request's headers (30 s by default): a peer that opens
    // a connection and sends nothing does not keep it forever.
    builder.timer(TokioTimer::new());
    let mut connection = pin!(
        builder
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades()
    );
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                debug!("HTTPS connection from {peer} failed: {error}");
            }
            return;
        }
        () = shutdown.cancelled() => connection.as_mut().graceful_shutdown(),
    }
    // A request still arriving at shutdown gets the close grace period, not hyper's 30 s.
    match tokio::time::timeout(timeouts.close, connection).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => debug!("HTTPS connection from {peer} failed: {error}"),
        Err(_) => debug!("HTTPS connection from {peer} closed at shutdown mid-request"),
    }
}
