//! MQTT over WebSocket on `/mqtt`, end to end over loopback with tokio-tungstenite as the client:
//! the upgrade (subprotocols, origins, limits), framing (packets across messages and messages
//! holding several packets, text refused, ping, close), interop with TCP clients at every QoS,
//! 1 MiB messages, coalescing of bursts, the connect timeout and keepalive, and shutdown.

use crate::binary::RunningBinary;
use crate::web_support::{
    Client, Harness, Link, WAIT, connect_packet, encode_packet, get, publish_packet, ws_handshake,
    ws_refusal,
};
use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use mqtt_codec::{Packet, ProtocolVersion, PubAckPacket, QoS, ReasonCode};
use std::time::Duration;
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};

use ProtocolVersion::{V5, V311};

fn chosen_protocol(response: &tokio_tungstenite::tungstenite::handshake::client::Response) -> &str {
    response
        .headers()
        .get("sec-websocket-protocol")
        .expect("the chosen subprotocol is echoed")
        .to_str()
        .expect("ASCII")
}

#[tokio::test]
async fn subprotocol_mqtt_or_mqttv31_is_echoed() {
    let gateway = Harness::start().await;
    for offered in ["mqtt", "mqttv3.1"] {
        let (_, response) = ws_handshake(&gateway.ws_url(), Some(offered), None)
            .await
            .expect("upgrade");
        assert_eq!(chosen_protocol(&response), offered);
    }
}

#[tokio::test]
async fn subprotocol_list_picks_the_first_acceptable() {
    let gateway = Harness::start().await;
    for (offered, chosen) in [
        ("mqttv3.1, mqtt", "mqttv3.1"),
        ("mqtt,mqttv3.1", "mqtt"),
        ("wamp, mqtt", "mqtt"),
    ] {
        let (_, response) = ws_handshake(&gateway.ws_url(), Some(offered), None)
            .await
            .expect("upgrade");
        assert_eq!(chosen_protocol(&response), chosen, "offered {offered:?}");
    }
}

#[tokio::test]
async fn subprotocol_absent_or_unknown_is_refused_with_400() {
    let gateway = Harness::start().await;
    assert_eq!(ws_refusal(&gateway.ws_url(), None, None).await, 400);
    assert_eq!(ws_refusal(&gateway.ws_url(), Some("wamp"), None).await, 400);
    assert_eq!(
        ws_refusal(&gateway.ws_url(), Some("MQTT, mqtt5"), None).await,
        400
    );
    // A plain GET (no upgrade) is refused too, and says what the path is for.
    let response = get(gateway.http, "/mqtt").await;
    assert!((400..500).contains(&response.status), "{response:?}");
    assert!(
        response.text().contains("MQTT over WebSocket"),
        "{response:?}"
    );
}

#[tokio::test]
async fn foreign_origin_is_refused_with_403_and_local_ones_accepted() {
    let gateway = Harness::start().await;
    let url = gateway.ws_url();
    assert_eq!(
        ws_refusal(&url, Some("mqtt"), Some("https://evil.example")).await,
        403
    );
    assert_eq!(ws_refusal(&url, Some("mqtt"), Some("null")).await, 403);
    let same_origin = format!("http://{}", gateway.http);
    for origin in [
        "http://localhost:3000",
        "https://127.0.0.1",
        "http://[::1]:5173",
        same_origin.as_str(),
    ] {
        ws_handshake(&url, Some("mqtt"), Some(origin))
            .await
            .unwrap_or_else(|error| panic!("origin {origin} refused: {error}"));
    }
    // Non-browser clients send no Origin.
    ws_handshake(&url, Some("mqtt"), None)
        .await
        .expect("no Origin is accepted");
}

#[tokio::test]
async fn allowed_origin_admits_a_foreign_site() {
    let gateway = Harness::start_with(|config| {
        config.allowed_origins = vec!["https://app.example".into()];
    })
    .await;
    let url = gateway.ws_url();
    let (socket, _) = ws_handshake(&url, Some("mqtt"), Some("https://app.example"))
        .await
        .expect("allowed origin");
    let mut client = Client::new(Link::Ws(Box::new(socket)), V5)
        .connect_with(connect_packet(V5, "allowed"))
        .await;
    client.subscribe("t", QoS::AtMostOnce).await;
    assert_eq!(
        ws_refusal(&url, Some("mqtt"), Some("https://other.example")).await,
        403
    );
}

#[tokio::test]
async fn a_packet_may_span_several_messages_and_frames() {
    let gateway = Harness::start().await;
    let mut client = Client::open_ws(&gateway.ws_url(), V311).await;
    // CONNECT in three binary messages, one byte first so even the fixed header is split.
    let connect = encode_packet(&Packet::Connect(connect_packet(V311, "split")), V311).freeze();
    client.send_bytes(connect.slice(..1)).await;
    client.send_bytes(connect.slice(1..5)).await;
    client.send_bytes(connect.slice(5..)).await;
    assert!(matches!(client.expect_packet().await, Packet::ConnAck(_)));
    client.subscribe("split/topic", QoS::AtLeastOnce).await;

    // A PUBLISH as one fragmented WebSocket message: a binary frame and two continuations.
    let mut publish = publish_packet(
        "split/topic",
        Bytes::from(vec![7u8; 3000]),
        QoS::AtLeastOnce,
        false,
    );
    publish.packet_id = Some(client.packet_id());
    let bytes = encode_packet(&Packet::Publish(publish), V311).freeze();
    let frames = [
        Frame::message(bytes.slice(..1000), OpCode::Data(Data::Binary), false),
        Frame::message(bytes.slice(1000..2000), OpCode::Data(Data::Continue), false),
        Frame::message(bytes.slice(2000..), OpCode::Data(Data::Continue), true),
    ];
    for frame in frames {
        client
            .ws_stream()
            .send(Message::Frame(frame))
            .await
            .expect("send frame");
    }
    let echoed = client.expect_message().await;
    assert_eq!(echoed.payload, Bytes::from(vec![7u8; 3000]));
    assert_eq!(echoed.topic, "split/topic");
}

#[tokio::test]
async fn one_message_may_hold_several_packets() {
    let gateway = Harness::start().await;
    let mut client = Client::open_ws(&gateway.ws_url(), V5).await;
    let mut batch = BytesMut::new();
    batch.extend_from_slice(&encode_packet(
        &Packet::Connect(connect_packet(V5, "batch")),
        V5,
    ));
    let subscribe = mqtt_codec::SubscribePacket {
        packet_id: 1,
        properties: Default::default(),
        subscriptions: vec![mqtt_codec::Subscription {
            filter: "batch/#".into(),
            options: mqtt_codec::SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                ..Default::default()
            },
        }],
    };
    batch.extend_from_slice(&encode_packet(&Packet::Subscribe(subscribe), V5));
    let mut publish = publish_packet(
        "batch/a",
        Bytes::from_static(b"one"),
        QoS::AtLeastOnce,
        false,
    );
    publish.packet_id = Some(2);
    batch.extend_from_slice(&encode_packet(&Packet::Publish(publish), V5));
    batch.extend_from_slice(&encode_packet(&Packet::PingReq, V5));
    client.send_bytes(batch.freeze()).await;

    assert!(matches!(client.expect_packet().await, Packet::ConnAck(_)));
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let packet = client.expect_packet().await;
        if let Packet::Publish(publish) = &packet {
            client
                .send(&Packet::PubAck(PubAckPacket::new(
                    publish.packet_id.expect("QoS 1"),
                )))
                .await;
        }
        seen.push(packet.name());
    }
    seen.sort_unstable();
    assert_eq!(seen, ["PINGRESP", "PUBACK", "PUBLISH", "SUBACK"]);
}

#[tokio::test]
async fn a_text_message_closes_the_socket_with_1003() {
    let gateway = Harness::start().await;
    let mut client = Client::ws(&gateway.ws_url(), V311, "texter").await;
    let socket = client.ws_stream();
    socket
        .send(Message::text("not MQTT"))
        .await
        .expect("send text");
    let close = tokio::time::timeout(WAIT, async {
        while let Some(message) = socket.next().await {
            if let Message::Close(frame) = message.expect("a clean close") {
                return frame;
            }
        }
        panic!("the socket ended without a close frame");
    })
    .await
    .expect("close frame in time");
    assert_eq!(close.expect("a close code").code, CloseCode::Unsupported);
}

#[tokio::test]
async fn ping_is_answered_and_close_ends_the_session() {
    let gateway = Harness::start().await;
    let mut client = Client::ws(&gateway.ws_url(), V311, "pinger").await;
    let socket = client.ws_stream();
    socket
        .send(Message::Ping(Bytes::from_static(b"are you there")))
        .await
        .expect("ping");
    let pong = tokio::time::timeout(WAIT, socket.next())
        .await
        .expect("pong in time")
        .expect("open")
        .expect("pong");
    assert_eq!(pong, Message::Pong(Bytes::from_static(b"are you there")));

    socket.close(None).await.expect("close");
    let ended = tokio::time::timeout(WAIT, async {
        while let Some(Ok(_)) = socket.next().await {}
    })
    .await;
    assert!(ended.is_ok(), "the gateway completes the closing handshake");
    wait_for_clients(&gateway, 0).await;
}

async fn wait_for_clients(gateway: &Harness, count: usize) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let clients = get(gateway.http, "/api/v1/clients").await.json();
        if clients.as_array().expect("array").len() == count {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "clients: {clients}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn websocket_publisher_reaches_tcp_subscriber_at_every_qos() {
    let gateway = Harness::start().await;
    let mut subscriber = Client::tcp(gateway.tcp, V5, "tcp-sub").await;
    subscriber.subscribe("ws2tcp/#", QoS::ExactlyOnce).await;
    let mut publisher = Client::ws(&gateway.ws_url(), V311, "ws-pub").await;
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let payload = Bytes::from(format!("ws says {qos:?}"));
        publisher
            .publish(publish_packet("ws2tcp/x", payload.clone(), qos, false))
            .await;
        let received = subscriber.expect_message().await;
        assert_eq!((received.qos, received.payload), (qos, payload));
    }
}

#[tokio::test]
async fn tcp_publisher_reaches_websocket_subscriber_at_every_qos() {
    let gateway = Harness::start().await;
    let mut subscriber = Client::ws(&gateway.ws_url(), V5, "ws-sub").await;
    subscriber.subscribe("tcp2ws/#", QoS::ExactlyOnce).await;
    let mut publisher = Client::tcp(gateway.tcp, V311, "tcp-pub").await;
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let payload = Bytes::from(format!("tcp says {qos:?}"));
        publisher
            .publish(publish_packet("tcp2ws/x", payload.clone(), qos, false))
            .await;
        let received = subscriber.expect_message().await;
        assert_eq!((received.qos, received.payload), (qos, payload));
    }
}

fn mebibyte(seed: u8) -> Bytes {
    (0..1 << 20)
        .map(|i: u32| (i % 251) as u8 ^ seed)
        .collect::<Vec<u8>>()
        .into()
}

#[tokio::test]
async fn a_mebibyte_message_crosses_both_ways() {
    let gateway = Harness::start().await;
    let mut tcp_subscriber = Client::tcp(gateway.tcp, V311, "big-tcp-sub").await;
    tcp_subscriber.subscribe("big/#", QoS::AtLeastOnce).await;
    let mut ws_subscriber = Client::ws(&gateway.ws_url(), V5, "big-ws-sub").await;
    ws_subscriber.subscribe("big/#", QoS::AtLeastOnce).await;

    // WebSocket to TCP and back to WebSocket.
    let mut ws_publisher = Client::ws(&gateway.ws_url(), V311, "big-ws-pub").await;
    let payload = mebibyte(0);
    ws_publisher
        .publish(publish_packet(
            "big/from-ws",
            payload.clone(),
            QoS::AtLeastOnce,
            false,
        ))
        .await;
    for subscriber in [&mut tcp_subscriber, &mut ws_subscriber] {
        let received = subscriber.expect_message().await;
        assert_eq!(received.topic, "big/from-ws");
        assert!(received.payload == payload, "1 MiB payload intact");
    }

    // TCP to WebSocket.
    let mut tcp_publisher = Client::tcp(gateway.tcp, V5, "big-tcp-pub").await;
    let payload = mebibyte(0x5a);
    tcp_publisher
        .publish(publish_packet(
            "big/from-tcp",
            payload.clone(),
            QoS::AtMostOnce,
            false,
        ))
        .await;
    let received = ws_subscriber.expect_message().await;
    assert_eq!(received.topic, "big/from-tcp");
    assert!(received.payload == payload, "1 MiB payload intact");
}

#[tokio::test]
async fn a_burst_reaches_a_websocket_subscriber_in_fewer_messages() {
    const COUNT: usize = 1000;
    let gateway = Harness::start().await;
    let mut subscriber = Client::ws(&gateway.ws_url(), V311, "burst-sub").await;
    subscriber.subscribe("burst/#", QoS::AtMostOnce).await;
    let messages_before = subscriber.ws_messages;

    // The whole burst in one TCP write, so the broker sees it at once.
    let mut publisher = Client::tcp(gateway.tcp, V311, "burst-pub").await;
    let mut burst = BytesMut::new();
    for index in 0..COUNT {
        let publish = publish_packet(
            "burst/t",
            Bytes::from(format!("message {index}")),
            QoS::AtMostOnce,
            false,
        );
        burst.extend_from_slice(&encode_packet(&Packet::Publish(publish), V311));
    }
    publisher.send_bytes(burst.freeze()).await;

    for index in 0..COUNT {
        let received = subscriber.expect_message().await;
        assert_eq!(received.topic, "burst/t");
        assert_eq!(received.payload, Bytes::from(format!("message {index}")));
    }
    let messages = subscriber.ws_messages - messages_before;
    assert!(
        messages < COUNT,
        "{COUNT} packets arrived in {messages} WebSocket messages: no coalescing"
    );
}

#[tokio::test]
async fn oversized_message_closes_the_connection() {
    let gateway = Harness::start_with(|config| config.broker.max_packet_size = 1024).await;
    let mut client = Client::ws(&gateway.ws_url(), V311, "big").await;
    let publish = publish_packet("t", Bytes::from(vec![0u8; 4096]), QoS::AtMostOnce, false);
    client.send(&Packet::Publish(publish)).await;
    client.expect_closed().await;
}

#[tokio::test]
async fn connection_limit_refuses_upgrades_with_503() {
    let gateway = Harness::start_with(|config| config.max_connections = 1).await;
    let _first = Client::ws(&gateway.ws_url(), V311, "only-one").await;
    assert_eq!(ws_refusal(&gateway.ws_url(), Some("mqtt"), None).await, 503);
}

#[tokio::test]
async fn keepalive_applies_over_websocket() {
    let gateway = Harness::start().await;
    let mut connect = connect_packet(V311, "sleepy");
    connect.keep_alive = 1;
    let mut client = Client::open_ws(&gateway.ws_url(), V311)
        .await
        .connect_with(connect)
        .await;
    // Open until shortly before 1.5 x the keep alive, then closed, with a loose but real bound
    // (1 s beyond the deadline) on when.
    client.expect_silence(Duration::from_millis(1300)).await;
    client
        .expect_closed_within(Duration::from_millis(1200))
        .await;
}

/// A WebSocket that says nothing after the upgrade is held to the connect timeout like a TCP
/// connection: open until shortly before it, closed by 1 s after it at the latest, and
/// logged once (the binary's log, by the connection's address), while a client that did
/// connect is not disturbed. Then one that goes silent after its CONNACK with keep alive 1 s
/// (5.0 here; the 3.1.1 case is `keepalive_applies_over_websocket`): closed at 1.5 s with
/// DISCONNECT 0x8D, also logged once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_websocket_is_closed_at_the_connect_timeout_or_keep_alive_and_logged_once() {
    let binary = RunningBinary::start(&["--connect-timeout", "1"]);
    let url = format!("ws://{}/mqtt", binary.http);
    let mut bystander = Client::ws(&url, V5, "bystander").await;
    bystander.subscribe("ok/#", QoS::AtMostOnce).await;

    let mut silent = Client::open_ws(&url, V5).await;
    let silent_address = local_address(&mut silent);
    silent.expect_silence(Duration::from_millis(700)).await;
    silent
        .expect_closed_within(Duration::from_millis(1300))
        .await;

    let mut connect = connect_packet(V5, "sleepy-5");
    connect.keep_alive = 1;
    let mut sleepy = Client::open_ws(&url, V5).await.connect_with(connect).await;
    sleepy.expect_silence(Duration::from_millis(1300)).await;
    match sleepy.next_packet_within(Duration::from_millis(1200)).await {
        Some(Packet::Disconnect(disconnect)) => {
            assert_eq!(disconnect.reason_code, ReasonCode::KeepAliveTimeout)
        }
        other => panic!("expected DISCONNECT 0x8D, got {other:?}"),
    }
    sleepy.expect_closed().await;

    let mut publisher = Client::ws(&url, V5, "publisher").await;
    publisher
        .publish(publish_packet(
            "ok/still",
            Bytes::from_static(b"fine"),
            QoS::AtMostOnce,
            false,
        ))
        .await;
    assert_eq!(&bystander.expect_message().await.payload[..], b"fine");

    let lines = binary.lines();
    for marker in [silent_address.as_str(), "sleepy-5"] {
        let matching: Vec<&String> = lines
            .iter()
            .filter(|line| line.contains("WARN") && line.contains(marker))
            .collect();
        assert_eq!(
            matching.len(),
            1,
            "one warning for {marker}, got {matching:#?}\nlog:\n{}",
            lines.join("\n")
        );
    }
}

/// The local address of a WebSocket client's TCP connection: the peer address the gateway logs.
fn local_address(client: &mut Client) -> String {
    match client.ws_stream().get_ref() {
        MaybeTlsStream::Plain(stream) => stream.local_addr().expect("local address").to_string(),
        _ => panic!("a plain ws:// connection"),
    }
}

#[tokio::test]
async fn shutdown_disconnects_websocket_clients_and_drains() {
    let gateway = Harness::start().await;
    let mut client = Client::ws(&gateway.ws_url(), V5, "leaving").await;
    let shutdown = tokio::spawn(gateway.shutdown(Duration::from_secs(4)));
    match client.expect_packet().await {
        Packet::Disconnect(disconnect) => {
            assert_eq!(disconnect.reason_code, ReasonCode::ServerShuttingDown)
        }
        other => panic!("expected DISCONNECT, got {other:?}"),
    }
    client.expect_closed().await;
    tokio::time::timeout(WAIT, shutdown)
        .await
        .expect("shutdown in time")
        .expect("shutdown task");
}
