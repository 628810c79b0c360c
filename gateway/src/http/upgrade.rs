//! `GET /mqtt`: the WebSocket upgrade that starts an MQTT connection.
//!
//! The upgrade is refused before any MQTT happens when the page's `Origin` may not connect (403,
//! see [`crate::origin`]), when the client offers neither the `mqtt` nor the `mqttv3.1`
//! subprotocol (400), or at the connection limit (503). The chosen subprotocol is echoed, since
//! browsers fail a handshake whose answer names none.
//!
//! Past the upgrade the connection is served by the same [`connection::run`] as TCP, over the
//! [`WebSocketTransport`] adapter. A request that came over HTTPS (it carries a
//! [`TlsConnection`]) makes a `wss` connection, whose client certificate's CN, if any, the
//! transport reports as [`certificate_name`](crate::transport::Transport::certificate_name).

use super::{HttpState, TlsConnection};
use crate::connection;
use crate::metrics::RefusedUpgrade;
use crate::origin::OriginRefusal;
use crate::transport::ws::WebSocketTransport;
use axum::Extension;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use broker_core::{ConnectionInfo, Transport as TransportKind};
use std::net::SocketAddr;
use tracing::{debug, warn};

/// Subprotocols accepted on `/mqtt`: `mqtt` (3.1.1 and 5.0) and `mqttv3.1` (older clients).
pub(crate) const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];

/// Picks the first subprotocol the client offers (its order is its preference, RFC 6455
/// 4.1) that MQTT over WebSocket uses. The header may be repeated and each is a comma list.
pub(crate) fn select_subprotocol(headers: &HeaderMap) -> Option<HeaderValue> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&byte| byte == b','))
        .map(<[u8]>::trim_ascii)
        .find(|token| SUBPROTOCOLS.iter().any(|known| known.as_bytes() == *token))
        .and_then(|token| HeaderValue::from_bytes(token).ok())
}

/// `GET /mqtt`: checks the origin, the subprotocol and the connection limit, then upgrades and
/// serves MQTT on the WebSocket until it ends.
pub(super) async fn serve(
    State(state): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    tls: Option<Extension<TlsConnection>>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let mut upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            let status = rejection.status();
            let why = rejection.body_text();
            return (
                status,
                format!("/mqtt is MQTT over WebSocket and needs a WebSocket upgrade: {why}\n"),
            )
                .into_response();
        }
    };
    let origin = headers.get(header::ORIGIN);
    if let Err(refusal) = state.origins.check(
        origin.map(HeaderValue::as_bytes),
        headers.get(header::HOST).map(HeaderValue::as_bytes),
    ) {
        let origin = String::from_utf8_lossy(origin.map_or(&[][..], HeaderValue::as_bytes));
        let why = match refusal {
            OriginRefusal::Malformed => "is not a valid origin",
            OriginRefusal::NotAllowed => {
                "is neither this gateway's origin, localhost, nor an --allowed-origin"
            }
        };
        warn!("refusing WebSocket from {peer}: origin {origin:?} {why}");
        state.metrics.record_refused_upgrade(RefusedUpgrade::Origin);
        return (
            StatusCode::FORBIDDEN,
            format!("origin {origin:?} may not connect to this gateway (see --allowed-origin)\n"),
        )
            .into_response();
    }
    let Some(protocol) = select_subprotocol(&headers) else {
        warn!("refusing WebSocket from {peer}: no MQTT subprotocol offered");
        state
            .metrics
            .record_refused_upgrade(RefusedUpgrade::Subprotocol);
        return (
            StatusCode::BAD_REQUEST,
            "MQTT over WebSocket needs the Sec-WebSocket-Protocol header to offer \"mqtt\" or \
             \"mqttv3.1\"\n",
        )
            .into_response();
    };
    let Some(permit) = state.limiter.try_acquire(peer) else {
        state
            .metrics
            .record_refused_upgrade(RefusedUpgrade::ConnectionLimit);
        return (StatusCode::SERVICE_UNAVAILABLE, "too many connections\n").into_response();
    };
    upgrade.set_selected_protocol(protocol);
    let context = state.context.clone();
    let connection = state.limiter.next_id();
    // Counted from now, so that shutdown also waits for an upgrade still in progress.
    let tracked = state.tracker.token();
    // A message holds at least one packet, so the packet limit bounds messages as well; the
    // library refuses larger ones before buffering them.
    let max_size = context.settings.max_packet_size;
    upgrade
        .max_message_size(max_size)
        .max_frame_size(max_size)
        // The library zero-fills this much before every socket read: its default of 128 KiB
        // cost more than the read itself when reads bring a few kilobytes.
        .read_buffer_size(WS_READ_CHUNK)
        .on_failed_upgrade(move |error| debug!("WebSocket upgrade from {peer} failed: {error}"))
        .on_upgrade(move |socket| async move {
            let (transport, certificate_name) = match tls {
                None => (TransportKind::WebSocket, None),
                Some(Extension(tls)) => (TransportKind::WebSocketTls, tls.certificate_name),
            };
            let info = ConnectionInfo {
                transport,
                remote_address: peer.to_string().into(),
            };
            let socket = WebSocketTransport::new(socket).with_certificate_name(certificate_name);
            connection::run(socket, connection, info, context, permit).await;
            drop(tracked);
        })
}

/// How much the WebSocket library reads from the socket at a time.
const WS_READ_CHUNK: usize = 16 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subprotocol_selection_follows_the_client_order() {
        let select = |values: &[&str]| {
            let mut headers = HeaderMap::new();
            for value in values {
                headers.append(
                    header::SEC_WEBSOCKET_PROTOCOL,
                    HeaderValue::from_str(value).unwrap(),
                );
            }
            select_subprotocol(&headers).map(|v| v.to_str().unwrap().to_owned())
        };
        assert_eq!(select(&["mqtt"]).as_deref(), Some("mqtt"));
        assert_eq!(select(&["mqttv3.1, mqtt"]).as_deref(), Some("mqttv3.1"));
        assert_eq!(select(&["wamp,  mqtt "]).as_deref(), Some("mqtt"));
        assert_eq!(select(&["wamp", "mqtt"]).as_deref(), Some("mqtt"));
        assert_eq!(select(&["MQTT"]), None);
        assert_eq!(select(&["mqtt5"]), None);
        assert_eq!(select(&[]), None);
    }
}
