//! Loopback tests of TLS: MQTT over TLS (`--mqtts`) and the HTTP surface over TLS (`--https`,
//! with WSS at `/mqtt`), sharing one topic space with plain TCP; client certificates
//! (`--tls-client-ca`) and their CN as the user name (`--tls-identity-as-username`); handshakes
//! that fail or never come; reloading the certificate without dropping connections; and start
//! errors. Certificates come from [`crate::pki`].

use crate::common::{TestClient, connect_packet};
use crate::pki::{Pki, server_common_name, tls_connect};
use crate::web_support::{self, Client, Harness, HttpResponse, WAIT, http_request_over};
use broker_core::AllowAll;
use bytes::Bytes;
use gateway::config::GatewayConfig;
use gateway::security::tls::TlsSettings;
use gateway::{Gateway, StartError};
use mqtt_codec::{
    ByteStr, Packet, Properties, ProtocolVersion, QoS, ReasonCode, Subscription,
    SubscriptionOptions,
};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::Connector;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const HTTP_ALPN: &[&[u8]] = &[b"http/1.1"];

/// A gateway with one mqtts and one https listener besides its TCP and HTTP ones, serving the
/// certificate `pki.server("server", "gateway-1")`.
struct TlsGateway {
    harness: Harness,
    mqtts: SocketAddr,
    https: SocketAddr,
}

impl TlsGateway {
    /// Starts it; `client_ca` requires client certificates from `pki`'s CA.
    async fn start(
        pki: &Pki,
        client_ca: bool,
        adjust: impl FnOnce(&mut GatewayConfig),
    ) -> TlsGateway {
        let server = pki.server("server", "gateway-1");
        let client_ca = client_ca.then(|| pki.ca_file());
        let harness = Harness::start_with(|config| {
            config.mqtts = vec!["127.0.0.1:0".parse().expect("address")];
            config.https = vec!["127.0.0.1:0".parse().expect("address")];
            config.tls = Some(TlsSettings {
                certificate: server.certificate,
                key: server.key,
                client_ca,
            });
            adjust(config);
        })
        .await;
        let gateway = harness.gateway();
        TlsGateway {
            mqtts: gateway.mqtts_addresses()[0],
            https: gateway.https_addresses()[0],
            harness,
        }
    }

    /// `wss://localhost:PORT/mqtt`.
    fn wss_url(&self) -> String {
        format!("wss://localhost:{}/mqtt", self.https.port())
    }

    /// `GET path` over HTTPS as a client configured by `config`, checking that ALPN chose
    /// HTTP/1.1.
    async fn https_get(&self, config: Arc<rustls::ClientConfig>, path: &str) -> HttpResponse {
        let stream = tls_connect(self.https, config)
            .await
            .expect("HTTPS handshake");
        assert_eq!(
            stream.get_ref().1.alpn_protocol(),
            Some(&b"http/1.1"[..]),
            "ALPN"
        );
        http_request_over(stream, self.https, "GET", path, &[]).await
    }
}

/// A connected MQTT 5.0 client over TLS with a clean session.
async fn mqtts_client(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    client_id: &str,
) -> TestClient {
    let stream = tls_connect(addr, config).await.expect("TLS handshake");
    let local_addr = stream.get_ref().0.local_addr().expect("local address");
    let connect = connect_packet(ProtocolVersion::V5, client_id);
    let (client, connack) = TestClient::over(stream, local_addr)
        .send_connect(connect)
        .await;
    assert_eq!(connack.reason_code, ReasonCode::Success, "{connack:?}");
    client
}

/// Tries to connect over TLS and send CONNECT: the CONNACK's reason code, or why the
/// connection failed (the handshake, or the first read: with TLS 1.3 a refused client
/// certificate shows there).
async fn try_mqtts(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    client_id: &str,
) -> Result<ReasonCode, String> {
    use futures_util::{SinkExt, StreamExt};
    let stream = tls_connect(addr, config)
        .await
        .map_err(|error| format!("handshake: {error}"))?;
    let mut framed = tokio_util::codec::Framed::new(
        stream,
        mqtt_codec::MqttCodec::new(ProtocolVersion::V5, 1 << 20),
    );
    let connect = Packet::Connect(connect_packet(ProtocolVersion::V5, client_id));
    tokio::time::timeout(WAIT, framed.send(connect))
        .await
        .expect("sending CONNECT timed out")
        .map_err(|error| format!("send: {error}"))?;
    match tokio::time::timeout(WAIT, framed.next()).await {
        Err(_) => panic!("neither a CONNACK nor a close within {WAIT:?}"),
        Ok(None) => Err("closed".into()),
        Ok(Some(Err(error))) => Err(format!("read: {error}")),
        Ok(Some(Ok(Packet::ConnAck(connack)))) => Ok(connack.reason_code),
        Ok(Some(Ok(other))) => panic!("expected CONNACK, got {other:?}"),
    }
}

/// The rustls connector of a `wss://` client of `pki`.
fn wss_connector(pki: &Pki, identity: Option<&crate::pki::Identity>) -> Connector {
    Connector::Rustls(pki.client_config(identity, HTTP_ALPN))
}

/// Whether the connection ends (end of stream or an error) within [`WAIT`], with nothing
/// received first.
async fn closed_by_gateway(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 64];
    loop {
        match tokio::time::timeout(WAIT, stream.read(&mut byte)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // A TLS alert, say: keep reading until the close.
            Ok(Ok(_)) => {}
        }
    }
}

/// MQTT 5 over TLS and plain TCP share one topic space: a TLS client's messages reach a TCP
/// subscriber and the other way round, at QoS 0, 1 and 2, a large message (several TLS
/// records) arrives whole, and a burst arrives in order; the API shows the client as `tls`.
#[tokio::test]
async fn mqtts_client_exchanges_messages_with_a_tcp_client() {
    let pki = Pki::new("mqtts");
    let gateway = TlsGateway::start(&pki, false, |_| {}).await;
    let mut tcp = TestClient::v5(gateway.harness.tcp, "tcp-client").await;
    tcp.subscribe("from-tls/#", QoS::ExactlyOnce).await;
    let mut secure = mqtts_client(gateway.mqtts, pki.client_config(None, &[]), "tls-client").await;
    secure.subscribe("from-tcp/#", QoS::ExactlyOnce).await;

    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let payload = format!("over TLS at {qos:?}");
        secure.publish("from-tls/hello", &payload, qos).await;
        let received = tcp.expect_message().await;
        assert_eq!(received.topic, "from-tls/hello");
        assert_eq!(received.payload, payload.as_bytes());

        let payload = format!("over TCP at {qos:?}");
        tcp.publish("from-tcp/hello", &payload, qos).await;
        let received = secure.expect_message().await;
        assert_eq!(received.topic, "from-tcp/hello");
        assert_eq!(received.payload, payload.as_bytes());
    }

    let large = "x".repeat(100 * 1024);
    tcp.publish("from-tcp/large", &large, QoS::AtLeastOnce)
        .await;
    assert_eq!(secure.expect_message().await.payload.len(), large.len());
    secure
        .publish("from-tls/large", &large, QoS::AtLeastOnce)
        .await;
    assert_eq!(tcp.expect_message().await.payload.len(), large.len());

    for index in 0..200 {
        tcp.publish("from-tcp/burst", &index.to_string(), QoS::AtMostOnce)
            .await;
    }
    for index in 0..200 {
        let received = secure.expect_message().await;
        assert_eq!(received.payload, index.to_string().as_bytes());
    }

    let clients = web_support::get(gateway.harness.http, "/api/v1/clients")
        .await
        .json();
    let transport = |id: &str| {
        clients
            .as_array()
            .expect("a list")
            .iter()
            .find(|client| client["id"] == id)
            .map(|client| client["transport"].clone())
    };
    assert_eq!(transport("tls-client"), Some("tls".into()), "{clients}");
    assert_eq!(transport("tcp-client"), Some("tcp".into()), "{clients}");

    secure.disconnect().await;
    gateway.harness.shutdown(WAIT).await;
}

/// With `--tls-client-ca`, a client certificate signed by that CA and valid now is required:
/// none, one from another CA and an expired one are refused at the handshake, and the
/// gateway goes on serving everyone else.
#[tokio::test]
async fn client_certificates_must_come_from_the_configured_ca_and_be_valid() {
    let pki = Pki::new("client-ca");
    let stranger = Pki::new("stranger");
    let gateway = TlsGateway::start(&pki, true, |_| {}).await;

    let refusals = [
        ("no certificate", pki.client_config(None, &[])),
        (
            "another CA",
            pki.client_config(Some(&stranger.client("intruder")), &[]),
        ),
        (
            "expired",
            pki.client_config(Some(&pki.expired_client("old-device")), &[]),
        ),
    ];
    for (case, config) in refusals {
        let outcome = try_mqtts(gateway.mqtts, config, case).await;
        assert!(outcome.is_err(), "{case}: {outcome:?}");
    }

    let device = pki.client("device-1");
    let outcome = try_mqtts(
        gateway.mqtts,
        pki.client_config(Some(&device), &[]),
        "device-1",
    )
    .await;
    assert_eq!(outcome, Ok(ReasonCode::Success));

    // WSS asks for the same certificates.
    let refused = web_support::ws_handshake_with(
        &gateway.wss_url(),
        Some("mqtt"),
        None,
        Some(wss_connector(&pki, None)),
    )
    .await;
    assert!(refused.is_err(), "WSS without a client certificate");
    let mut wss = Client::open_wss(
        &gateway.wss_url(),
        ProtocolVersion::V5,
        wss_connector(&pki, Some(&device)),
    )
    .await
    .connect_with(web_support::connect_packet(
        ProtocolVersion::V5,
        "wss-device",
    ))
    .await;
    wss.subscribe("ok", QoS::AtMostOnce).await;

    // Plain TCP is untouched by all of it.
    let tcp = TestClient::v5(gateway.harness.tcp, "bystander").await;
    tcp.disconnect().await;
    gateway.harness.shutdown(WAIT).await;
}

/// With `--tls-identity-as-username`, the CN of the verified client certificate is the user
/// name, over MQTT over TLS and over WSS alike: the ACL grants by it, and the API shows it,
/// whatever user name the CONNECT carries. A TCP client, having no certificate, is anonymous
/// and refused.
#[tokio::test]
async fn certificate_common_name_is_the_user_name() {
    let pki = Pki::new("identity");
    let acl = pki.path("acl");
    std::fs::write(
        &acl,
        "user device-7\ntopic readwrite devices/device-7/#\n\
         user sensor-9\ntopic readwrite sensors/sensor-9/#\n",
    )
    .expect("write ACL");
    let gateway = TlsGateway::start(&pki, true, |config| {
        config.security.tls_identity_as_username = true;
        config.security.acl_file = Some(acl.clone());
        // Its certificate makes device-7 an admin of the API over HTTPS too.
        config.security.admin_users = vec!["device-7".into()];
    })
    .await;

    let device = pki.client("device-7");
    let stream = tls_connect(gateway.mqtts, pki.client_config(Some(&device), &[]))
        .await
        .expect("TLS handshake");
    let local_addr = stream.get_ref().0.local_addr().expect("local address");
    let mut connect = connect_packet(ProtocolVersion::V5, "device-client");
    connect.username = Some(ByteStr::from("someone-else"));
    let (mut mqtts, connack) = TestClient::over(stream, local_addr)
        .send_connect(connect)
        .await;
    assert_eq!(connack.reason_code, ReasonCode::Success, "{connack:?}");
    let subscription = |filter: &str| Subscription {
        filter: ByteStr::from(filter),
        options: SubscriptionOptions {
            qos: QoS::AtLeastOnce,
            ..SubscriptionOptions::default()
        },
    };
    let ack = mqtts
        .subscribe_with(
            vec![
                subscription("devices/device-7/#"),
                subscription("devices/other/#"),
            ],
            Properties::default(),
        )
        .await;
    assert_eq!(
        ack.reason_codes,
        vec![ReasonCode::GrantedQoS1, ReasonCode::NotAuthorized]
    );

    let sensor = pki.client("sensor-9");
    let mut wss = Client::open_wss(
        &gateway.wss_url(),
        ProtocolVersion::V5,
        wss_connector(&pki, Some(&sensor)),
    )
    .await
    .connect_with(web_support::connect_packet(
        ProtocolVersion::V5,
        "sensor-client",
    ))
    .await;
    wss.subscribe("sensors/sensor-9/#", QoS::AtLeastOnce).await;

    let clients = gateway
        .https_get(
            pki.client_config(Some(&device), &[b"http/1.1"]),
            "/api/v1/clients",
        )
        .await
        .json();
    let find = |id: &str| {
        clients
            .as_array()
            .expect("a list")
            .iter()
            .find(|client| client["id"] == id)
            .map(|client| (client["transport"].clone(), client["username"].clone()))
    };
    assert_eq!(
        find("device-client"),
        Some(("tls".into(), "device-7".into())),
        "{clients}"
    );
    assert_eq!(
        find("sensor-client"),
        Some(("wss".into(), "sensor-9".into())),
        "{clients}"
    );

    let (_, connack) = TestClient::connect_with(
        gateway.harness.tcp,
        connect_packet(ProtocolVersion::V5, "tcp-anonymous"),
    )
    .await;
    assert_eq!(connack.reason_code, ReasonCode::NotAuthorized);
    mqtts.disconnect().await;
    gateway.harness.shutdown(WAIT).await;
}

/// MQTT over WSS: a browser-style client on the https listener exchanges messages with a TCP
/// client, the gateway's own https origin is same-origin while a foreign one is refused.
#[tokio::test]
async fn wss_client_exchanges_messages_with_a_tcp_client() {
    let pki = Pki::new("wss");
    let gateway = TlsGateway::start(&pki, false, |_| {}).await;
    let mut tcp = Client::tcp(gateway.harness.tcp, ProtocolVersion::V5, "tcp-client").await;
    tcp.subscribe("from-wss/#", QoS::AtLeastOnce).await;
    let mut wss = Client::open_wss(
        &gateway.wss_url(),
        ProtocolVersion::V5,
        wss_connector(&pki, None),
    )
    .await
    .connect_with(web_support::connect_packet(
        ProtocolVersion::V5,
        "wss-client",
    ))
    .await;
    wss.subscribe("from-tcp/#", QoS::AtLeastOnce).await;

    let message = |topic: &str, payload: &'static [u8]| {
        web_support::publish_packet(topic, Bytes::from_static(payload), QoS::AtLeastOnce, false)
    };
    wss.publish(message("from-wss/hello", b"over WSS")).await;
    assert_eq!(tcp.expect_message().await.payload, &b"over WSS"[..]);
    tcp.publish(message("from-tcp/hello", b"over TCP")).await;
    assert_eq!(wss.expect_message().await.payload, &b"over TCP"[..]);

    // Origin: the gateway's own https origin (its Host), and a stranger's.
    let host = format!("gateway.example:{}", gateway.https.port());
    let upgrade = |origin: String| {
        let mut request = gateway.wss_url().into_client_request().expect("request");
        let headers = request.headers_mut();
        headers.insert("Host", host.parse().expect("header"));
        headers.insert("Origin", origin.parse().expect("header"));
        headers.insert("Sec-WebSocket-Protocol", "mqtt".parse().expect("header"));
        tokio_tungstenite::connect_async_tls_with_config(
            request,
            None,
            false,
            Some(wss_connector(&pki, None)),
        )
    };
    let same = tokio::time::timeout(WAIT, upgrade(format!("https://{host}")))
        .await
        .expect("upgrade in time");
    assert!(same.is_ok(), "same origin: {same:?}");
    let foreign = tokio::time::timeout(WAIT, upgrade("https://evil.example".into()))
        .await
        .expect("upgrade in time");
    match foreign {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 403)
        }
        other => panic!("a foreign origin was not refused: {other:?}"),
    }
    gateway.harness.shutdown(WAIT).await;
}

/// The HTTPS listener serves the same surface as HTTP, with ALPN `http/1.1`: `/healthz`, the
/// API and `/metrics`, whose connection gauge counts TLS and WSS connections.
#[tokio::test]
async fn https_serves_health_api_and_metrics() {
    let pki = Pki::new("https");
    let gateway = TlsGateway::start(&pki, false, |_| {}).await;
    let config = pki.client_config(None, HTTP_ALPN);

    let health = gateway.https_get(config.clone(), "/healthz").await;
    assert_eq!((health.status, health.text()), (200, "ok\n".to_string()));
    let stats = gateway.https_get(config.clone(), "/api/v1/stats").await;
    assert_eq!(stats.status, 200);
    stats.json();

    let _mqtts = mqtts_client(gateway.mqtts, pki.client_config(None, &[]), "tls-client").await;
    let _wss = Client::open_wss(
        &gateway.wss_url(),
        ProtocolVersion::V5,
        wss_connector(&pki, None),
    )
    .await
    .connect_with(web_support::connect_packet(
        ProtocolVersion::V5,
        "wss-client",
    ))
    .await;
    let metrics = gateway.https_get(config, "/metrics").await;
    assert_eq!(metrics.status, 200);
    let text = metrics.text();
    for line in [
        "mqtt_connections{transport=\"tls\"} 1",
        "mqtt_connections{transport=\"wss\"} 1",
        "mqtt_connections{transport=\"tcp\"} 0",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
    }
    gateway.harness.shutdown(WAIT).await;
}

/// A reload (SIGHUP) reads the certificate and key again: new connections, MQTT and HTTPS,
/// get the new certificate, while a connection opened before goes on publishing and
/// receiving with the old one.
#[tokio::test]
async fn reload_gives_new_connections_the_new_certificate() {
    let pki = Pki::new("reload");
    let gateway = TlsGateway::start(&pki, false, |_| {}).await;
    let client_config = pki.client_config(None, &[]);
    let stream = tls_connect(gateway.mqtts, client_config.clone())
        .await
        .expect("TLS handshake");
    assert_eq!(server_common_name(&stream), "gateway-1");
    let local_addr = stream.get_ref().0.local_addr().expect("local address");
    let (mut before, _) = TestClient::over(stream, local_addr)
        .send_connect(connect_packet(ProtocolVersion::V5, "before"))
        .await;
    before.subscribe("news/#", QoS::AtLeastOnce).await;

    // Same files, new content: another key and CN.
    pki.server("server", "gateway-2");
    gateway.harness.gateway().reload();

    let stream = tls_connect(gateway.mqtts, client_config.clone())
        .await
        .expect("TLS handshake");
    assert_eq!(server_common_name(&stream), "gateway-2");
    let local_addr = stream.get_ref().0.local_addr().expect("local address");
    let (mut after, _) = TestClient::over(stream, local_addr)
        .send_connect(connect_packet(ProtocolVersion::V5, "after"))
        .await;
    after.subscribe("news/#", QoS::AtLeastOnce).await;
    let https = tls_connect(gateway.https, pki.client_config(None, HTTP_ALPN))
        .await
        .expect("HTTPS handshake");
    assert_eq!(server_common_name(&https), "gateway-2");

    before
        .publish("news/old", "from before", QoS::AtLeastOnce)
        .await;
    after
        .publish("news/new", "from after", QoS::AtLeastOnce)
        .await;
    for client in [&mut before, &mut after] {
        assert_eq!(client.expect_message().await.payload, "from before");
        assert_eq!(client.expect_message().await.payload, "from after");
    }
    before.disconnect().await;
    after.disconnect().await;
    gateway.harness.shutdown(WAIT).await;
}

/// A reload whose files do not load (a key that is not PEM, a key that belongs to another
/// certificate) keeps the certificate in force.
#[tokio::test]
async fn reload_with_broken_files_keeps_the_old_certificate() {
    let pki = Pki::new("broken-reload");
    let gateway = TlsGateway::start(&pki, false, |_| {}).await;
    let client_config = pki.client_config(None, &[]);
    let server_key = pki.path("server.key");

    let replacement = pki.server("replacement", "gateway-2");
    std::fs::copy(&replacement.certificate, pki.path("server.crt")).expect("copy certificate");
    std::fs::write(&server_key, "not a key\n").expect("break the key");
    gateway.harness.gateway().reload();
    let stream = tls_connect(gateway.mqtts, client_config.clone())
        .await
        .expect("TLS handshake");
    assert_eq!(server_common_name(&stream), "gateway-1");

    // A well-formed key, but not the certificate's.
    let other = pki.server("other", "gateway-3");
    std::fs::copy(&other.key, &server_key).expect("copy key");
    gateway.harness.gateway().reload();
    let stream = tls_connect(gateway.mqtts, client_config.clone())
        .await
        .expect("TLS handshake");
    assert_eq!(server_common_name(&stream), "gateway-1");

    // Fixed: the next reload takes it.
    std::fs::copy(&replacement.key, &server_key).expect("copy key");
    gateway.harness.gateway().reload();
    let stream = tls_connect(gateway.mqtts, client_config)
        .await
        .expect("TLS handshake");
    assert_eq!(server_common_name(&stream), "gateway-2");
    gateway.harness.shutdown(WAIT).await;
}

/// Handshakes run in the connections' own tasks: a peer that says nothing does not hold up
/// the accept loop, and is closed after the connect timeout; bytes that are not TLS close the
/// connection at once; shutdown does not wait for handshakes in progress.
#[tokio::test]
async fn failed_and_silent_handshakes_close_only_their_connection() {
    let pki = Pki::new("handshakes");
    let gateway = TlsGateway::start(&pki, false, |config| {
        config.connect_timeout = Duration::from_secs(1);
    })
    .await;
    let mut silent = TcpStream::connect(gateway.mqtts).await.expect("connect");
    let mut silent_https = TcpStream::connect(gateway.https).await.expect("connect");

    let mut garbage = TcpStream::connect(gateway.mqtts).await.expect("connect");
    garbage
        .write_all(b"\x10\x10\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x00\x00")
        .await
        .expect("write");
    assert!(closed_by_gateway(&mut garbage).await, "garbage on mqtts");
    let mut plain_http = TcpStream::connect(gateway.https).await.expect("connect");
    plain_http
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("write");
    assert!(
        closed_by_gateway(&mut plain_http).await,
        "plain HTTP on https"
    );

    // The silent peers are still waiting, and others get through meanwhile.
    let mut client = mqtts_client(gateway.mqtts, pki.client_config(None, &[]), "meanwhile").await;
    client.ping().await;
    let health = gateway
        .https_get(pki.client_config(None, HTTP_ALPN), "/healthz")
        .await;
    assert_eq!(health.status, 200);

    // The connect timeout (1 s) ends the silent handshakes.
    assert!(closed_by_gateway(&mut silent).await, "silent mqtts peer");
    assert!(
        closed_by_gateway(&mut silent_https).await,
        "silent https peer"
    );

    let _waiting = TcpStream::connect(gateway.mqtts).await.expect("connect");
    let _waiting_https = TcpStream::connect(gateway.https).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = tokio::time::Instant::now();
    gateway.harness.shutdown(Duration::from_secs(4)).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "shutdown took {:?}",
        started.elapsed()
    );
    client
        .expect_disconnect(ReasonCode::ServerShuttingDown)
        .await;
}

/// Shutdown: a 5.0 client over TLS gets DISCONNECT 0x8B like any other, a WSS one is closed,
/// an idle HTTPS keep-alive connection is closed, and the gateway drains in time.
#[tokio::test]
async fn shutdown_disconnects_tls_clients_and_drains() {
    let pki = Pki::new("tls-shutdown");
    let gateway = TlsGateway::start(&pki, false, |_| {}).await;
    let mut mqtts = mqtts_client(gateway.mqtts, pki.client_config(None, &[]), "tls-client").await;
    let mut wss = Client::open_wss(
        &gateway.wss_url(),
        ProtocolVersion::V5,
        wss_connector(&pki, None),
    )
    .await
    .connect_with(web_support::connect_packet(
        ProtocolVersion::V5,
        "wss-client",
    ))
    .await;
    // An HTTPS connection kept alive after one request.
    let mut keep_alive = tls_connect(gateway.https, pki.client_config(None, HTTP_ALPN))
        .await
        .expect("HTTPS handshake");
    keep_alive
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("write");
    let mut answer = [0u8; 512];
    let read = tokio::time::timeout(WAIT, keep_alive.read(&mut answer))
        .await
        .expect("answer in time")
        .expect("answer");
    assert!(answer[..read].starts_with(b"HTTP/1.1 200"));

    // Spawned: the WebSocket's closing handshake waits for this test to read.
    let shutdown = tokio::spawn(gateway.harness.shutdown(Duration::from_secs(3)));
    mqtts
        .expect_disconnect(ReasonCode::ServerShuttingDown)
        .await;
    mqtts.expect_closed().await;
    match wss.expect_packet().await {
        Packet::Disconnect(disconnect) => {
            assert_eq!(disconnect.reason_code, ReasonCode::ServerShuttingDown)
        }
        other => panic!("expected DISCONNECT, got {other:?}"),
    }
    wss.expect_closed().await;
    tokio::time::timeout(WAIT, shutdown)
        .await
        .expect("shutdown in time")
        .expect("shutdown task");
    let rest = tokio::time::timeout(WAIT, keep_alive.read(&mut answer))
        .await
        .expect("closed in time");
    assert!(matches!(rest, Ok(0) | Err(_)), "{rest:?}");
}

/// Start errors: TLS files that do not load name the file at fault, and an https address in
/// use is a bind error of kind "https".
#[tokio::test]
async fn tls_start_errors_name_the_file_or_the_listener() {
    let pki = Pki::new("start-errors");
    let server = pki.server("server", "gateway-1");
    let missing = pki.path("missing.crt");
    let mut config = crate::common::test_config();
    config.mqtts = vec!["127.0.0.1:0".parse().expect("address")];
    config.tls = Some(TlsSettings {
        certificate: missing.clone(),
        key: server.key.clone(),
        client_ca: None,
    });
    let data_dir = config.data_dir.clone();
    let error = Gateway::start(config, Box::new(AllowAll))
        .await
        .expect_err("a missing certificate");
    let _ = std::fs::remove_dir_all(data_dir);
    assert!(matches!(error, StartError::Tls { .. }), "{error:?}");
    assert!(
        error.to_string().contains(&missing.display().to_string()),
        "{error}"
    );

    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut config = crate::common::test_config();
    config.https = vec![taken.local_addr().expect("address")];
    config.tls = Some(TlsSettings {
        certificate: server.certificate,
        key: server.key,
        client_ca: None,
    });
    let data_dir = config.data_dir.clone();
    match Gateway::start(config, Box::new(AllowAll)).await {
        Err(StartError::Bind { kind, .. }) => assert_eq!(kind, "https"),
        other => panic!("expected a bind error, got {other:?}"),
    }
    let _ = std::fs::remove_dir_all(data_dir);
}
