//! The HTTP surface, one axum router: `/` (a placeholder page until the dashboard is embedded),
//! `/mqtt` (MQTT over WebSocket), `/metrics` (Prometheus), `/api/v1/...` (JSON) and `/healthz`.
//!
//! Handlers never touch broker state: they ask the broker task ([`crate::api::ask`], bounded by a
//! timeout) or read atomic counters. The router needs the peer address, so it is served with
//! `into_make_service_with_connect_info::<SocketAddr>()`.

use crate::api::{self, ask};
use crate::broker_task::Query;
use crate::connection::ConnectionContext;
use crate::listeners::ConnectionLimiter;
use crate::metrics::Metrics;
use crate::origin::OriginPolicy;
use crate::websocket;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::{Router, routing::get};
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::task::TaskTracker;

/// Time the broker task has to answer the health check.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// What the HTTP handlers share; cheap to clone (one per request).
#[derive(Clone, Debug)]
pub struct HttpState {
    /// The broker task's channel, counters and connection settings, as TCP connections get them.
    pub context: ConnectionContext,
    /// The bound on open connections, shared with the TCP listeners.
    pub limiter: ConnectionLimiter,
    /// Tracks WebSocket connection tasks so that shutdown waits for them.
    pub tracker: TaskTracker,
    /// Which web pages may open a WebSocket.
    pub origins: Arc<OriginPolicy>,
    /// The Prometheus recorder.
    pub metrics: Arc<Metrics>,
    /// The MQTT over TCP listeners, shown on the landing page.
    pub mqtt_addresses: Arc<[SocketAddr]>,
}

/// The gateway's HTTP routes.
pub fn app(state: HttpState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/mqtt", get(websocket::upgrade))
        .route("/metrics", get(metrics))
        .route("/healthz", get(health))
        .nest("/api/v1", api::router())
        .with_state(state)
}

/// `GET /healthz`: 200 while the broker task answers, 503 otherwise.
async fn health(State(state): State<HttpState>) -> Response {
    match ask(&state.context.commands, Query::Stats, HEALTH_TIMEOUT).await {
        Ok(_) => "ok\n".into_response(),
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, format!("{error}\n")).into_response(),
    }
}

/// `GET /metrics`: the Prometheus text exposition.
async fn metrics(State(state): State<HttpState>) -> Response {
    match ask(&state.context.commands, Query::Stats, api::QUERY_TIMEOUT).await {
        Ok(stats) => {
            let text = state.metrics.render(&stats, &state.context.counters);
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

/// `GET /`: says where things are until the dashboard is embedded.
async fn index(State(state): State<HttpState>, headers: HeaderMap) -> Html<String> {
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("localhost");
    let host = escape(host);
    let mut tcp = String::new();
    for address in state.mqtt_addresses.iter() {
        let _ = write!(
            tcp,
            "<li><code>mqtt://{address}</code> (port {})</li>",
            address.port()
        );
    }
    if tcp.is_empty() {
        tcp.push_str("<li>none configured</li>");
    }
    Html(format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>MQTT gateway</title>
<style>body{{font-family:system-ui,sans-serif;max-width:42rem;margin:2rem auto;padding:0 1rem;line-height:1.5}}code{{background:#eee;padding:0 .2rem}}</style>
</head>
<body>
<h1>MQTT gateway</h1>
<p><strong>The dashboard is not built into this binary yet.</strong> The broker is running; connect to it here:</p>
<ul>
<li>MQTT over WebSocket: <code>ws://{host}/mqtt</code> (subprotocol <code>mqtt</code> or <code>mqttv3.1</code>)</li>
</ul>
<p>MQTT over TCP:</p>
<ul>{tcp}</ul>
<p>Also: <a href="/metrics">/metrics</a> (Prometheus), <a href="/api/v1/stats">/api/v1/stats</a> (JSON API), <a href="/healthz">/healthz</a>.</p>
</body>
</html>
"#
    ))
}

/// Escapes text for HTML (the `Host` header is the client's to choose).
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}
