//! `/api/v1/...`: the broker's state as JSON, and disconnecting a client.
//!
//! Every answer comes from the broker task through a [`Query`] with a oneshot reply
//! ([`BrokerHandle::ask`](crate::broker_task::BrokerHandle::ask)), bounded by [`QUERY_TIMEOUT`]
//! so that a stuck broker yields 503 instead of piling up requests. The JSON shapes are this
//! module's own types, kept stable for the dashboard and for scripts; errors are
//! `{"error": "..."}` with the matching status.
//!
//! Routes (relative to `/api/v1`): `GET /clients`, `GET /clients/{id}`, `DELETE /clients/{id}`
//! (204, or 404 for an unknown id), `GET /subscriptions`, `GET /retained?filter=F&limit=N`,
//! `GET /stats`.

use super::{HttpState, QUERY_TIMEOUT};
use crate::broker_task::{AskError, Query};
use crate::counters::TRANSPORTS;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use broker_core::{ClientSummary, DropReason, RetainedSummary, Stats, SubscriptionSummary};
use mqtt_codec::{ProtocolVersion, RetainHandling};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use thiserror::Error;

/// Bytes of a retained payload shown in `/retained`.
pub(crate) const PREVIEW_BYTES: usize = 256;

/// Retained messages listed by default, and at most.
const RETAINED_LIMIT: usize = 1000;
const RETAINED_LIMIT_MAX: usize = 100_000;

/// Why an API request failed.
#[derive(Debug, Error)]
pub(crate) enum ApiError {
    /// No such resource.
    #[error("{0}")]
    NotFound(String),
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The method is not allowed on this route.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The broker task has stopped, or did not answer within [`QUERY_TIMEOUT`].
    #[error(transparent)]
    Broker(#[from] AskError),
}

/// The body of every error answer.
#[derive(Debug, Deserialize, Serialize)]
pub(crate) struct ErrorBody {
    /// What went wrong, for people.
    pub(crate) error: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self {
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Broker(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        let body = ErrorBody {
            error: self.to_string(),
        };
        (status, Json(body)).into_response()
    }
}

/// The `/api/v1` routes.
pub(super) fn router() -> Router<HttpState> {
    Router::new()
        .route("/clients", get(clients))
        .route("/clients/{id}", get(client).delete(disconnect_client))
        .route("/subscriptions", get(subscriptions))
        .route("/retained", get(retained))
        .route("/stats", get(stats))
        .fallback(|| async { ApiError::NotFound("no such API route".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
}

/// One connected client.
#[derive(Debug, Deserialize, Serialize)]
pub(crate) struct ClientJson {
    /// Client identifier.
    pub(crate) id: String,
    /// `tcp`, `tls`, `ws` or `wss`.
    pub(crate) transport: String,
    /// `3.1`, `3.1.1` or `5.0`.
    pub(crate) protocol_version: String,
    /// Peer address.
    pub(crate) address: String,
    /// User name, if any.
    pub(crate) username: Option<String>,
    /// When the CONNECT was accepted, RFC 3339 in UTC.
    pub(crate) connected_since: String,
    /// Seconds since then.
    pub(crate) connected_seconds: u64,
    /// Keep alive in force, seconds.
    pub(crate) keep_alive: u16,
    /// Subscriptions held by its session.
    pub(crate) subscriptions: usize,
    /// Messages queued or in flight towards it.
    pub(crate) queued: usize,
}

impl ClientJson {
    fn new(client: ClientSummary, now: Instant, wall_now: SystemTime) -> Self {
        let age = now.saturating_duration_since(client.connected_at);
        ClientJson {
            id: client.client_id,
            transport: client.transport.as_str().to_owned(),
            protocol_version: protocol_name(client.protocol).to_owned(),
            address: client.remote_address,
            username: client.username,
            connected_since: rfc3339(wall_now.checked_sub(age).unwrap_or(wall_now)),
            connected_seconds: age.as_secs(),
            keep_alive: client.keep_alive,
            subscriptions: client.subscriptions,
            queued: client.queued,
        }
    }
}

/// One subscription.
#[derive(Debug, Deserialize, Serialize)]
pub(crate) struct SubscriptionJson {
    /// Client identifier of the session.
    pub(crate) client_id: String,
    /// Filter as subscribed (with `$share/...` if shared).
    pub(crate) filter: String,
    /// Maximum QoS.
    pub(crate) qos: u8,
    /// No Local option.
    pub(crate) no_local: bool,
    /// Retain As Published option.
    pub(crate) retain_as_published: bool,
    /// Retain Handling option (0, 1 or 2).
    pub(crate) retain_handling: u8,
    /// Whether the session's client is connected.
    pub(crate) online: bool,
}

impl From<SubscriptionSummary> for SubscriptionJson {
    fn from(summary: SubscriptionSummary) -> Self {
        let options = summary.options;
        SubscriptionJson {
            client_id: summary.client_id,
            filter: summary.filter,
            qos: options.qos as u8,
            no_local: options.no_local,
            retain_as_published: options.retain_as_published,
            retain_handling: match options.retain_handling {
                RetainHandling::SendAtSubscribe => 0,
                RetainHandling::SendIfNew => 1,
                RetainHandling::DoNotSend => 2,
            },
            online: summary.online,
        }
    }
}

/// One retained message, with a preview of its payload.
#[derive(Debug, Deserialize, Serialize)]
pub(crate) struct RetainedJson {
    /// Topic name.
    pub(crate) topic: String,
    /// QoS it was published with.
    pub(crate) qos: u8,
    /// Payload size in bytes.
    pub(crate) size: usize,
    /// The first [`PREVIEW_BYTES`] of the payload, as text or in base64.
    pub(crate) payload: String,
    /// `utf8` when the payload is text, `base64` otherwise.
    pub(crate) encoding: String,
    /// Whether `payload` shows only the start of the payload.
    pub(crate) truncated: bool,
}

impl From<RetainedSummary> for RetainedJson {
    fn from(summary: RetainedSummary) -> Self {
        let (payload, encoding, truncated) = preview(&summary.payload);
        RetainedJson {
            topic: summary.topic,
            qos: summary.qos as u8,
            size: summary.payload.len(),
            payload,
            encoding: encoding.to_owned(),
            truncated,
        }
    }
}

/// Broker counters and gauges.
#[derive(Debug, Deserialize, Serialize)]
pub(crate) struct StatsJson {
    /// Network connections open now, by transport.
    pub(crate) connections: BTreeMap<String, u64>,
    /// Clients connected now.
    pub(crate) clients_connected: u64,
    /// Highest number of clients connected at once.
    pub(crate) clients_maximum: u64,
    /// Sessions held, online or not.
    pub(crate) sessions: u64,
    /// CONNECT attempts refused.
    pub(crate) connections_refused: u64,
    /// Authentication failures.
    pub(crate) auth_failures: u64,
    /// Control packets received.
    pub(crate) packets_received: u64,
    /// Control packets sent.
    pub(crate) packets_sent: u64,
    /// PUBLISH packets received, by QoS (`"0"`, `"1"`, `"2"`).
    pub(crate) messages_received: BTreeMap<String, u64>,
    /// PUBLISH packets sent, by QoS.
    pub(crate) messages_sent: BTreeMap<String, u64>,
    /// Payload bytes received.
    pub(crate) payload_bytes_received: u64,
    /// Payload bytes sent.
    pub(crate) payload_bytes_sent: u64,
    /// Bytes read from connections.
    pub(crate) bytes_received: u64,
    /// Bytes written to connections.
    pub(crate) bytes_sent: u64,
    /// Messages dropped, by reason.
    pub(crate) dropped: BTreeMap<String, u64>,
    /// Subscriptions held.
    pub(crate) subscriptions: u64,
    /// Retained messages held.
    pub(crate) retained_messages: u64,
    /// Messages waiting in session queues or in flight.
    pub(crate) queued_messages: u64,
}

fn by_qos(counts: [u64; 3]) -> BTreeMap<String, u64> {
    counts
        .into_iter()
        .enumerate()
        .map(|(qos, count)| (qos.to_string(), count))
        .collect()
}

impl StatsJson {
    fn new(stats: Stats, state: &HttpState) -> Self {
        let counters = &state.context.counters;
        StatsJson {
            connections: TRANSPORTS
                .into_iter()
                .map(|t| (t.as_str().to_owned(), counters.open_connections.get(t)))
                .collect(),
            clients_connected: stats.clients_connected,
            clients_maximum: stats.clients_maximum,
            sessions: stats.sessions,
            connections_refused: stats.connections_refused,
            auth_failures: stats.auth_failures,
            packets_received: stats.packets_received,
            packets_sent: stats.packets_sent,
            messages_received: by_qos(stats.publish_received),
            messages_sent: by_qos(stats.publish_sent),
            payload_bytes_received: stats.publish_bytes_received.iter().sum(),
            payload_bytes_sent: stats.publish_bytes_sent.iter().sum(),
            bytes_received: counters.bytes_received.load(Ordering::Relaxed),
            bytes_sent: counters.bytes_sent.load(Ordering::Relaxed),
            dropped: DropReason::ALL
                .into_iter()
                .map(|r| (r.as_str().to_owned(), stats.dropped_for(r)))
                .collect(),
            subscriptions: stats.subscriptions,
            retained_messages: stats.retained_messages,
            queued_messages: stats.queued_messages,
        }
    }
}

async fn all_clients(state: &HttpState) -> Result<Vec<ClientJson>, ApiError> {
    let clients = state
        .context
        .broker
        .ask(Query::Clients, QUERY_TIMEOUT)
        .await?;
    let (now, wall_now) = (Instant::now(), SystemTime::now());
    Ok(clients
        .into_iter()
        .map(|client| ClientJson::new(client, now, wall_now))
        .collect())
}

async fn clients(State(state): State<HttpState>) -> Result<Json<Vec<ClientJson>>, ApiError> {
    all_clients(&state).await.map(Json)
}

async fn client(
    State(state): State<HttpState>,
    Path(id): Path<String>,
) -> Result<Json<ClientJson>, ApiError> {
    all_clients(&state)
        .await?
        .into_iter()
        .find(|client| client.id == id)
        .map(Json)
        .ok_or_else(|| unknown_client(&id))
}

async fn disconnect_client(
    State(state): State<HttpState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let query = |reply| Query::Disconnect(id.clone(), reply);
    if state.context.broker.ask(query, QUERY_TIMEOUT).await? {
        tracing::info!("client {id:?} disconnected through the API");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(unknown_client(&id))
    }
}

fn unknown_client(id: &str) -> ApiError {
    ApiError::NotFound(format!("no client {id:?} is connected"))
}

async fn subscriptions(
    State(state): State<HttpState>,
) -> Result<Json<Vec<SubscriptionJson>>, ApiError> {
    let list = state
        .context
        .broker
        .ask(Query::Subscriptions, QUERY_TIMEOUT)
        .await?;
    Ok(Json(list.into_iter().map(SubscriptionJson::from).collect()))
}

/// Query string of `/retained`.
#[derive(Debug, Deserialize)]
struct RetainedParams {
    /// Topic filter the topics must match; all of them when absent or empty.
    filter: Option<String>,
    /// Most messages listed.
    limit: Option<usize>,
}

async fn retained(
    State(state): State<HttpState>,
    params: Result<axum::extract::Query<RetainedParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<RetainedJson>>, ApiError> {
    let axum::extract::Query(params) =
        params.map_err(|rejection| ApiError::BadRequest(rejection.body_text()))?;
    let filter = params.filter.filter(|f| !f.is_empty());
    if let Some(filter) = &filter {
        mqtt_codec::topic::validate_topic_filter(filter).map_err(|error| {
            ApiError::BadRequest(format!("invalid topic filter {filter:?}: {error}"))
        })?;
    }
    let limit = params
        .limit
        .unwrap_or(RETAINED_LIMIT)
        .min(RETAINED_LIMIT_MAX);
    let query = |reply| Query::Retained(filter, reply);
    let list = state.context.broker.ask(query, QUERY_TIMEOUT).await?;
    Ok(Json(
        list.into_iter()
            .take(limit)
            .map(RetainedJson::from)
            .collect(),
    ))
}

async fn stats(State(state): State<HttpState>) -> Result<Json<StatsJson>, ApiError> {
    let stats = state
        .context
        .broker
        .ask(Query::Stats, QUERY_TIMEOUT)
        .await?;
    Ok(Json(StatsJson::new(stats, &state)))
}

fn protocol_name(version: ProtocolVersion) -> &'static str {
    match version {
        ProtocolVersion::V31 => "3.1",
        ProtocolVersion::V311 => "3.1.1",
        ProtocolVersion::V5 => "5.0",
    }
}

/// The start of `payload` for people: text when it is UTF-8 without control characters (other
/// than whitespace), base64 otherwise; and whether it was cut.
fn preview(payload: &[u8]) -> (String, &'static str, bool) {
    let truncated = payload.len() > PREVIEW_BYTES;
    let head = &payload[..payload.len().min(PREVIEW_BYTES)];
    let text = match std::str::from_utf8(head) {
        Ok(text) => Some(text),
        // The cut fell inside a character: show the text up to it.
        Err(error) if truncated && error.error_len().is_none() => {
            std::str::from_utf8(&head[..error.valid_up_to()]).ok()
        }
        Err(_) => None,
    };
    match text {
        Some(text) if !text.chars().any(|c| c.is_control() && !c.is_whitespace()) => {
            (text.to_owned(), "utf8", truncated)
        }
        _ => (
            base64::engine::general_purpose::STANDARD.encode(head),
            "base64",
            truncated,
        ),
    }
}

/// Formats a time as RFC 3339 in UTC with millisecond precision.
fn rfc3339(time: SystemTime) -> String {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_epoch.as_secs();
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since_epoch.subsec_millis()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn payload_previews() {
        assert_eq!(preview(b"21.5"), ("21.5".into(), "utf8", false));
        assert_eq!(preview(b"a\nb"), ("a\nb".into(), "utf8", false));
        assert_eq!(preview(&[0, 1, 0xff]), ("AAH/".into(), "base64", false));
        assert_eq!(preview(b"nul\0"), ("bnVsAA==".into(), "base64", false));
        let long = "x".repeat(PREVIEW_BYTES + 10);
        assert_eq!(
            preview(long.as_bytes()),
            ("x".repeat(PREVIEW_BYTES), "utf8", true)
        );
        // A two-byte character straddling the cut is left out, not turned into base64.
        let straddling = format!("{}é", "x".repeat(PREVIEW_BYTES - 1));
        assert_eq!(
            preview(straddling.as_bytes()),
            ("x".repeat(PREVIEW_BYTES - 1), "utf8", true)
        );
    }

    #[test]
    fn rfc3339_dates() {
        let at = |seconds: u64| rfc3339(UNIX_EPOCH + Duration::from_secs(seconds));
        assert_eq!(at(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00.000Z");
        assert_eq!(at(1_709_251_199), "2024-02-29T23:59:59.000Z");
        assert_eq!(at(4_102_444_800), "2100-01-01T00:00:00.000Z");
    }
}
