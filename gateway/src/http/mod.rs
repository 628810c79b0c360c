//! The HTTP surface, one axum router ([`app`]): `/` (the dashboard, [`dashboard`]), `/mqtt`
//! (MQTT over WebSocket, [`upgrade`]), `/metrics` (Prometheus), `/api/v1/...` (JSON, [`api`])
//! and `/healthz`.
//!
//! [`HttpState`] is what every handler gets; the children reach it as `super::HttpState` (as
//! axum's examples do), and this module knows each child only by the handler or router it
//! mounts. Handlers never touch broker state: they ask the broker task
//! ([`BrokerHandle::ask`](crate::broker_task::BrokerHandle::ask), bounded by a timeout) or read
//! atomic counters. The router needs the peer address, so it is served with
//! `into_make_service_with_connect_info::<SocketAddr>()` over HTTP, and with the same
//! `ConnectInfo<SocketAddr>` request extension over HTTPS ([`https`]), which also adds a
//! [`TlsConnection`].

mod api;
pub mod dashboard;
pub(crate) mod https;
mod upgrade;

use crate::broker_task::Query;
use crate::connection::ConnectionContext;
use crate::listeners::ConnectionLimiter;
use crate::metrics::Metrics;
use crate::origin::OriginPolicy;
use crate::security::HttpAccess;
use crate::store::StoreView;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Router, routing::get};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::task::TaskTracker;

/// Time the broker task has to answer the health check.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// Time the broker task has to answer a query of the API or a scrape of `/metrics`.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// What the HTTP handlers share; cheap to clone (one per request).
#[derive(Clone, Debug)]
pub(crate) struct HttpState {
    /// The broker task's channel, counters and connection settings, as TCP connections get them.
    pub(crate) context: ConnectionContext,
    /// The bound on open connections, shared with the TCP listeners.
    pub(crate) limiter: ConnectionLimiter,
    /// Tracks WebSocket connection tasks so that shutdown waits for them.
    pub(crate) tracker: TaskTracker,
    /// Which web pages may open a WebSocket.
    pub(crate) origins: Arc<OriginPolicy>,
    /// The Prometheus recorder.
    pub(crate) metrics: Arc<Metrics>,
    /// The store's counters and status, for `/metrics`.
    pub(crate) store: StoreView,
    /// The cluster link's counters, for `/metrics`; None on a single node.
    pub(crate) cluster: Option<Arc<crate::cluster::ClusterCounters>>,
    /// The MQTT over TCP listeners, shown when the dashboard was not built.
    pub(crate) mqtt_addresses: Arc<[SocketAddr]>,
}

/// The request extension of every request that came over HTTPS: `/mqtt` makes it a `wss`
/// connection whose client certificate (if the handshake verified one) names the client.
#[derive(Clone, Debug)]
pub(crate) struct TlsConnection {
    /// The Common Name of the verified client certificate.
    pub(crate) certificate_name: Option<Arc<str>>,
}

/// The gateway's HTTP routes. The API and the metrics are guarded ([`guard_api`],
/// [`guard_metrics`]); `/healthz`, the dashboard and `/mqtt` are not (MQTT checks its own
/// credentials in CONNECT).
pub(crate) fn app(state: HttpState) -> Router {
    let api = api::router().layer(middleware::from_fn_with_state(state.clone(), guard_api));
    let metrics = get(metrics).layer(middleware::from_fn_with_state(state.clone(), guard_metrics));
    Router::new()
        .route("/mqtt", get(upgrade::serve))
        .route("/metrics", metrics)
        .route("/healthz", get(health))
        .nest("/api/v1", api)
        .fallback(dashboard::serve)
        .with_state(state)
}

/// Lets a request through to the API only with an admin's credentials, once authentication
/// is configured.
async fn guard_api(State(state): State<HttpState>, request: Request, next: Next) -> Response {
    guard(state, request, next, false).await
}

/// Lets a scrape through to `/metrics` only with an admin's credentials or the metrics token,
/// once either is configured.
async fn guard_metrics(State(state): State<HttpState>, request: Request, next: Next) -> Response {
    guard(state, request, next, true).await
}

async fn guard(state: HttpState, request: Request, next: Next, scrape: bool) -> Response {
    let Some(security) = &state.context.security else {
        return next.run(request).await;
    };
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    let address = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip());
    let certificate_name = request
        .extensions()
        .get::<TlsConnection>()
        .and_then(|tls| tls.certificate_name.as_deref());
    let access = security
        .authorize_http(authorization, certificate_name, address, scrape)
        .await;
    match access {
        HttpAccess::Allowed => next.run(request).await,
        HttpAccess::Unauthorized(why) => (
            StatusCode::UNAUTHORIZED,
            [(
                header::WWW_AUTHENTICATE,
                "Basic realm=\"mqtt-gateway\", Bearer realm=\"mqtt-gateway\"",
            )],
            axum::Json(serde_json::json!({ "error": why })),
        )
            .into_response(),
        HttpAccess::Forbidden => (
            StatusCode::FORBIDDEN,
            axum::Json(serde_json::json!({ "error": "not an admin user" })),
        )
            .into_response(),
    }
}

/// `GET /healthz`: 200 while the broker task answers, 503 otherwise. A node of a cluster adds
/// lines on its link to NATS and the link's lag; losing NATS keeps the node healthy (its local
/// clients are served), so it does not change the status.
async fn health(State(state): State<HttpState>) -> Response {
    use std::sync::atomic::Ordering::Relaxed;
    match state.context.broker.ask(Query::Stats, HEALTH_TIMEOUT).await {
        Ok(_) => match &state.cluster {
            None => "ok\n".into_response(),
            Some(cluster) => {
                let link = if cluster.connected.load(Relaxed) {
                    "cluster connected"
                } else {
                    "cluster disconnected: local delivery only"
                };
                let forwards = cluster.forward_waiting.load(Relaxed);
                let records = cluster.log_waiting.load(Relaxed);
                format!(
                    "ok\n{link}\nlag: {forwards} messages to forward, {records} session records to log\n"
                )
                .into_response()
            }
        },
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, format!("{error}\n")).into_response(),
    }
}

/// `GET /metrics`: the Prometheus text exposition.
async fn metrics(State(state): State<HttpState>) -> Response {
    match state.context.broker.ask(Query::Stats, QUERY_TIMEOUT).await {
        Ok(stats) => {
            let locked = state
                .context
                .security
                .as_ref()
                .map_or(0, |security| security.locked_addresses());
            let text = state.metrics.render(
                &stats,
                &state.context.counters,
                locked,
                &state.store,
                state.cluster.as_deref(),
            );
            (
                [(
                    header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                text,
            )
                .into_response()
        }
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, format!("{error}\n")).into_response(),
    }
}
