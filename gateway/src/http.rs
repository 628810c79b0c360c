//! The HTTP surface. For now the health check; the dashboard, MQTT over WebSocket, `/metrics`
//! and the JSON API join this router as they land.

use axum::{Router, routing::get};

/// The gateway's HTTP routes.
pub fn app() -> Router {
    Router::new().route("/healthz", get(|| async { "ok\n" }))
}
