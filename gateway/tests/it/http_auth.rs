//! The HTTP API and `/metrics` behind credentials once authentication is configured: anonymous,
//! wrong, non-admin and admin requests on every route (HTTP Basic and bearer tokens), the
//! metrics token, `/healthz` left open, and no data in a refusal.

use crate::common::*;
use crate::security::Files;
use crate::web_support::{HttpResponse, http_request};
use base64::Engine;
use jsonwebtoken::{EncodingKey, Header, encode};
use std::net::SocketAddr;

const SECRET: &str = "the HS256 secret of the HTTP tests, long enough";
const METRICS_TOKEN: &str = "scrape-token-0123456789abcdef";

const API_ROUTES: [&str; 5] = [
    "/api/v1/clients",
    "/api/v1/clients/someone",
    "/api/v1/subscriptions",
    "/api/v1/retained",
    "/api/v1/stats",
];

async fn secured_gateway(files: &Files) -> TestGateway {
    let password_file = files.passwords(&[("admin", "admin-pass"), ("alice", "alice-pass")]);
    let secret = files.write("jwt-secret", SECRET);
    let token = files.write("metrics-token", METRICS_TOKEN);
    TestGateway::start_with(move |config| {
        config.security.password_file = Some(password_file);
        config.security.jwt_secret_file = Some(secret);
        config.security.metrics_token_file = Some(token);
        config.security.admin_users = vec!["admin".into()];
        // This test fails on purpose more often than the lock-out allows.
        config.security.lockout.threshold = 1000;
    })
    .await
}

fn basic(user: &str, password: &str) -> String {
    let pair = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

fn bearer_for(subject: &str) -> String {
    let claims = serde_json::json!({
        "sub": subject,
        "exp": jsonwebtoken::get_current_timestamp() + 600,
    });
    let token = encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign");
    format!("Bearer {token}")
}

async fn get_with(http: SocketAddr, path: &str, authorization: Option<&str>) -> HttpResponse {
    let headers: Vec<(&str, &str)> = authorization
        .map(|value| ("Authorization", value))
        .into_iter()
        .collect();
    http_request(http, "GET", path, &headers).await
}

/// A refusal carries its status and an error, and nothing of what the route would show.
fn assert_refused(response: &HttpResponse, status: u16, path: &str) {
    assert_eq!(response.status, status, "{path}: {response:?}");
    let body = response.json();
    assert!(body["error"].is_string(), "{path}: {body}");
    assert_eq!(
        body.as_object().map(|o| o.len()),
        Some(1),
        "{path}: only the error: {body}"
    );
}

#[tokio::test]
async fn every_api_route_needs_an_admin() {
    let files = Files::new("api");
    let gateway = secured_gateway(&files).await;
    let _client = TestClient::connect_accepted(gateway.addr, {
        let mut connect = connect_packet(mqtt_codec::ProtocolVersion::V5, "someone");
        connect.username = Some("alice".into());
        connect.password = Some(bytes::Bytes::from_static(b"alice-pass"));
        connect
    })
    .await;
    let admin = basic("admin", "admin-pass");
    let admin_token = bearer_for("admin");
    let alice = basic("alice", "alice-pass");
    let alice_token = bearer_for("alice");
    let wrong = basic("admin", "wrong");
    for path in API_ROUTES {
        let anonymous = get_with(gateway.http, path, None).await;
        assert_refused(&anonymous, 401, path);
        let challenge = anonymous.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.contains("Basic") && challenge.contains("Bearer"),
            "{challenge}"
        );
        assert_refused(&get_with(gateway.http, path, Some(&wrong)).await, 401, path);
        assert_refused(
            &get_with(gateway.http, path, Some("Bearer not-a-token")).await,
            401,
            path,
        );
        assert_refused(&get_with(gateway.http, path, Some(&alice)).await, 403, path);
        assert_refused(
            &get_with(gateway.http, path, Some(&alice_token)).await,
            403,
            path,
        );
        assert_eq!(
            get_with(gateway.http, path, Some(&admin)).await.status,
            200,
            "{path}"
        );
        assert_eq!(
            get_with(gateway.http, path, Some(&admin_token))
                .await
                .status,
            200,
            "{path}"
        );
    }
    // The metrics token is for scraping only.
    let scrape = format!("Bearer {METRICS_TOKEN}");
    assert_refused(
        &get_with(gateway.http, "/api/v1/stats", Some(&scrape)).await,
        401,
        "stats",
    );
    let deleted = http_request(
        gateway.http,
        "DELETE",
        "/api/v1/clients/someone",
        &[("Authorization", &alice)],
    )
    .await;
    assert_eq!(deleted.status, 403, "a non-admin disconnects nobody");
}

#[tokio::test]
async fn metrics_take_an_admin_or_the_scrape_token_and_health_stays_open() {
    let files = Files::new("metrics");
    let gateway = secured_gateway(&files).await;
    assert_refused(
        &get_with(gateway.http, "/metrics", None).await,
        401,
        "metrics",
    );
    let wrong = format!("Bearer {METRICS_TOKEN}x");
    assert_refused(
        &get_with(gateway.http, "/metrics", Some(&wrong)).await,
        401,
        "metrics",
    );
    let alice = basic("alice", "alice-pass");
    assert_refused(
        &get_with(gateway.http, "/metrics", Some(&alice)).await,
        403,
        "metrics",
    );
    let scrape = format!("Bearer {METRICS_TOKEN}");
    let scraped = get_with(gateway.http, "/metrics", Some(&scrape)).await;
    assert_eq!(scraped.status, 200);
    assert!(scraped.text().contains("mqtt_clients_connected"));
    let admin = basic("admin", "admin-pass");
    assert_eq!(
        get_with(gateway.http, "/metrics", Some(&admin))
            .await
            .status,
        200
    );
    assert_eq!(get_with(gateway.http, "/healthz", None).await.status, 200);
}

#[tokio::test]
async fn a_metrics_token_alone_guards_the_metrics_and_leaves_the_api_open() {
    let files = Files::new("token-only");
    let token = files.write("metrics-token", &format!("{METRICS_TOKEN}\n"));
    let gateway =
        TestGateway::start_with(move |config| config.security.metrics_token_file = Some(token))
            .await;
    assert_refused(
        &get_with(gateway.http, "/metrics", None).await,
        401,
        "metrics",
    );
    let scrape = format!("Bearer {METRICS_TOKEN}");
    assert_eq!(
        get_with(gateway.http, "/metrics", Some(&scrape))
            .await
            .status,
        200
    );
    assert_eq!(
        get_with(gateway.http, "/api/v1/stats", None).await.status,
        200
    );
}
