//! The HTTP surface besides `/metrics` and the dashboard (the `dashboard` module):
//! `/healthz` and every `/api/v1` route, including disconnecting a client and the JSON errors.

use crate::web_support::{Client, Harness, get, http_request, publish_packet};
use bytes::Bytes;
use mqtt_codec::{Packet, ProtocolVersion, QoS, ReasonCode};
use serde_json::Value;

use ProtocolVersion::{V5, V311};

fn error_of(response: &crate::web_support::HttpResponse) -> String {
    response.json()["error"]
        .as_str()
        .expect("an error message")
        .to_owned()
}

#[tokio::test]
async fn healthz_answers_ok() {
    let gateway = Harness::start().await;
    let response = get(gateway.http, "/healthz").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "ok\n");
}

#[tokio::test]
async fn clients_lists_both_transports() {
    let gateway = Harness::start().await;
    let mut tcp = Client::tcp(gateway.tcp, V5, "tcp-client").await;
    tcp.subscribe("a/#", QoS::AtLeastOnce).await;
    tcp.subscribe("b", QoS::AtMostOnce).await;
    let _ws = Client::ws(&gateway.ws_url(), V311, "ws-client").await;

    let response = get(gateway.http, "/api/v1/clients").await;
    assert_eq!(response.status, 200);
    let clients = response.json();
    let clients = clients.as_array().expect("array");
    assert_eq!(clients.len(), 2, "{clients:?}");
    let by_id = |id: &str| {
        clients
            .iter()
            .find(|c| c["id"] == id)
            .unwrap_or_else(|| panic!("{id} listed"))
    };
    let tcp_json = by_id("tcp-client");
    assert_eq!(tcp_json["transport"], "tcp");
    assert_eq!(tcp_json["protocol_version"], "5.0");
    assert_eq!(tcp_json["subscriptions"], 2);
    assert_eq!(tcp_json["queued"], 0);
    assert_eq!(tcp_json["keep_alive"], 60);
    assert!(
        tcp_json["address"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"),
        "{tcp_json}"
    );
    let since = tcp_json["connected_since"].as_str().expect("a time");
    assert!(
        since.len() == 24 && since.ends_with('Z') && since.as_bytes()[10] == b'T',
        "RFC 3339: {since}"
    );
    let ws_json = by_id("ws-client");
    assert_eq!(ws_json["transport"], "ws");
    assert_eq!(ws_json["protocol_version"], "3.1.1");
    assert_eq!(ws_json["subscriptions"], 0);
}

#[tokio::test]
async fn one_client_by_id_or_404() {
    let gateway = Harness::start().await;
    let _client = Client::tcp(gateway.tcp, V311, "dev/1").await;
    // Identifiers may hold a slash: percent-encoded in the path.
    let response = get(gateway.http, "/api/v1/clients/dev%2F1").await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.json()["id"], "dev/1");

    let response = get(gateway.http, "/api/v1/clients/nobody").await;
    assert_eq!(response.status, 404);
    assert!(error_of(&response).contains("nobody"), "{response:?}");
}

#[tokio::test]
async fn delete_disconnects_a_v5_client_with_0x98() {
    let gateway = Harness::start().await;
    let mut client = Client::tcp(gateway.tcp, V5, "victim").await;
    let response = http_request(gateway.http, "DELETE", "/api/v1/clients/victim", &[]).await;
    assert_eq!(response.status, 204, "{response:?}");
    assert!(response.body.is_empty());
    match client.expect_packet().await {
        Packet::Disconnect(disconnect) => {
            assert_eq!(disconnect.reason_code, ReasonCode::AdministrativeAction)
        }
        other => panic!("expected DISCONNECT 0x98, got {other:?}"),
    }
    client.expect_closed().await;
    let response = get(gateway.http, "/api/v1/clients/victim").await;
    assert_eq!(response.status, 404);
}

#[tokio::test]
async fn delete_closes_a_v311_websocket_client() {
    let gateway = Harness::start().await;
    let mut client = Client::ws(&gateway.ws_url(), V311, "ws-victim").await;
    let response = http_request(gateway.http, "DELETE", "/api/v1/clients/ws-victim", &[]).await;
    assert_eq!(response.status, 204, "{response:?}");
    // 3.1.1 has no server DISCONNECT: the connection just ends.
    client.expect_closed().await;
}

#[tokio::test]
async fn delete_of_an_unknown_client_is_404() {
    let gateway = Harness::start().await;
    let response = http_request(gateway.http, "DELETE", "/api/v1/clients/ghost", &[]).await;
    assert_eq!(response.status, 404);
    assert!(error_of(&response).contains("ghost"));
}

#[tokio::test]
async fn subscriptions_lists_filters_and_options() {
    let gateway = Harness::start().await;
    let mut client = Client::ws(&gateway.ws_url(), V5, "subscriber").await;
    client
        .subscribe("sensors/+/temperature", QoS::ExactlyOnce)
        .await;
    client
        .subscribe("$share/group/jobs", QoS::AtLeastOnce)
        .await;

    let response = get(gateway.http, "/api/v1/subscriptions").await;
    assert_eq!(response.status, 200);
    let list = response.json();
    let list = list.as_array().expect("array");
    assert_eq!(list.len(), 2, "{list:?}");
    let find = |filter: &str| list.iter().find(|s| s["filter"] == filter).expect(filter);
    let plain = find("sensors/+/temperature");
    assert_eq!(plain["client_id"], "subscriber");
    assert_eq!(plain["qos"], 2);
    assert_eq!(plain["online"], true);
    assert_eq!(plain["no_local"], false);
    assert_eq!(plain["retain_handling"], 0);
    assert_eq!(find("$share/group/jobs")["qos"], 1);
}

#[tokio::test]
async fn retained_previews_text_and_binary_payloads() {
    let gateway = Harness::start().await;
    let mut publisher = Client::tcp(gateway.tcp, V311, "retainer").await;
    let messages: [(&str, Bytes); 3] = [
        ("home/kitchen/temperature", Bytes::from_static(b"21.5")),
        ("home/kitchen/raw", Bytes::from_static(&[0, 159, 146, 150])),
        ("office/log", Bytes::from("é".repeat(1000))),
    ];
    for (topic, payload) in &messages {
        publisher
            .publish(publish_packet(
                topic,
                payload.clone(),
                QoS::AtLeastOnce,
                true,
            ))
            .await;
    }

    let response = get(gateway.http, "/api/v1/retained").await;
    assert_eq!(response.status, 200);
    let all = response.json();
    let all = all.as_array().expect("array");
    assert_eq!(all.len(), 3, "{all:?}");
    let find = |topic: &str| all.iter().find(|m| m["topic"] == topic).expect(topic);

    let text = find("home/kitchen/temperature");
    assert_eq!(text["payload"], "21.5");
    assert_eq!(text["encoding"], "utf8");
    assert_eq!(text["size"], 4);
    assert_eq!(text["qos"], 1);
    assert_eq!(text["truncated"], false);

    let binary = find("home/kitchen/raw");
    assert_eq!(binary["encoding"], "base64");
    assert_eq!(binary["payload"], "AJ+Slg==");

    let long = find("office/log");
    assert_eq!(long["size"], 2000);
    assert_eq!(long["truncated"], true);
    assert_eq!(long["encoding"], "utf8");
    let preview = long["payload"].as_str().unwrap();
    assert!(
        preview.len() <= 256 && preview.chars().all(|c| c == 'é'),
        "{preview}"
    );

    // Filtered by a topic filter (`#` percent-encoded).
    let response = get(gateway.http, "/api/v1/retained?filter=home/%2B/temperature").await;
    let topics: Vec<Value> = response
        .json()
        .as_array()
        .expect("array")
        .iter()
        .map(|m| m["topic"].clone())
        .collect();
    assert_eq!(topics, ["home/kitchen/temperature"]);
    let response = get(gateway.http, "/api/v1/retained?filter=home/%23").await;
    assert_eq!(response.json().as_array().expect("array").len(), 2);
    let response = get(gateway.http, "/api/v1/retained?limit=1").await;
    assert_eq!(response.json().as_array().expect("array").len(), 1);

    let response = get(gateway.http, "/api/v1/retained?filter=home/%23/x").await;
    assert_eq!(response.status, 400);
    assert!(error_of(&response).contains("filter"), "{response:?}");
    let response = get(gateway.http, "/api/v1/retained?limit=lots").await;
    assert_eq!(response.status, 400);
    error_of(&response);
}

#[tokio::test]
async fn stats_count_clients_and_messages() {
    let gateway = Harness::start().await;
    let mut subscriber = Client::ws(&gateway.ws_url(), V5, "stats-sub").await;
    subscriber.subscribe("s/#", QoS::AtLeastOnce).await;
    let mut publisher = Client::tcp(gateway.tcp, V311, "stats-pub").await;
    publisher
        .publish(publish_packet(
            "s/1",
            Bytes::from_static(b"hello"),
            QoS::AtLeastOnce,
            true,
        ))
        .await;
    subscriber.expect_message().await;

    let response = get(gateway.http, "/api/v1/stats").await;
    assert_eq!(response.status, 200);
    let stats = response.json();
    assert_eq!(stats["clients_connected"], 2, "{stats}");
    assert_eq!(stats["connections"]["tcp"], 1, "{stats}");
    assert_eq!(stats["connections"]["ws"], 1, "{stats}");
    assert_eq!(stats["subscriptions"], 1);
    assert_eq!(stats["retained_messages"], 1);
    assert_eq!(stats["messages_received"]["1"], 1);
    assert_eq!(stats["messages_sent"]["1"], 1);
    assert_eq!(stats["payload_bytes_received"], 5);
    assert!(stats["bytes_received"].as_u64().unwrap() > 0);
    assert_eq!(stats["dropped"]["queue_full"], 0);
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json_errors() {
    let gateway = Harness::start().await;
    let response = get(gateway.http, "/api/v1/nothing-here").await;
    assert_eq!(response.status, 404);
    error_of(&response);
    let response = http_request(gateway.http, "POST", "/api/v1/stats", &[]).await;
    assert_eq!(response.status, 405);
    error_of(&response);
    let response = http_request(gateway.http, "PUT", "/api/v1/clients/x", &[]).await;
    assert_eq!(response.status, 405);
    error_of(&response);
}
