//! Shared pieces of the WebSocket, HTTP API and metrics tests: a gateway on loopback port 0 with
//! both listeners and a throwaway data directory, one raw MQTT test client that speaks over TCP
//! or over WebSocket (tokio-tungstenite, `ws://` or `wss://`), and a minimal HTTP/1.1 client
//! over `TcpStream` or any other byte stream (a TLS one for HTTPS).
//!
//! Every wait is bounded by [`WAIT`], so a misbehaving gateway fails a test instead of hanging it.

use broker_core::{AllowAll, AuthHook};
use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use gateway::Gateway;
use gateway::config::GatewayConfig;
use mqtt_codec::{
    ByteStr, ConnectPacket, Packet, Properties, ProtocolVersion, PubAckPacket, PublishPacket, QoS,
    ReasonCode, SubscribePacket, Subscription, SubscriptionOptions, decode, encode,
};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

/// How long a test waits for something it expects.
pub const WAIT: Duration = Duration::from_secs(5);

/// Largest packet the test client accepts.
const CLIENT_MAX_PACKET: usize = 4 << 20;

/// A WebSocket client stream.
pub type WsStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// A running gateway on loopback port 0; removes its data directory when dropped.
pub struct Harness {
    gateway: Option<Gateway>,
    /// MQTT over TCP.
    pub tcp: SocketAddr,
    /// HTTP (WebSocket, API, metrics).
    pub http: SocketAddr,
    data_dir: PathBuf,
}

impl Harness {
    /// A gateway with the test defaults (no `$SYS` traffic).
    pub async fn start() -> Harness {
        Self::start_with(|_| {}).await
    }

    /// A gateway with the test defaults changed by `adjust`.
    pub async fn start_with(adjust: impl FnOnce(&mut GatewayConfig)) -> Harness {
        Self::start_with_auth(adjust, Box::new(AllowAll)).await
    }

    /// A gateway with the test defaults changed by `adjust`, and `auth`.
    pub async fn start_with_auth(
        adjust: impl FnOnce(&mut GatewayConfig),
        auth: Box<dyn AuthHook>,
    ) -> Harness {
        init_logging();
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let data_dir = std::env::temp_dir().join(format!(
            "gateway-web-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&data_dir);
        let mut config = GatewayConfig {
            tcp: vec!["127.0.0.1:0".parse().expect("address")],
            http: vec!["127.0.0.1:0".parse().expect("address")],
            data_dir: data_dir.clone(),
            ..GatewayConfig::default()
        };
        config.broker.sys_interval = None;
        adjust(&mut config);
        let gateway = Gateway::start(config, auth).await.expect("gateway starts");
        Harness {
            tcp: gateway.mqtt_addresses()[0],
            http: gateway.http_addresses()[0],
            gateway: Some(gateway),
            data_dir,
        }
    }

    /// Shuts the gateway down, asserting that it drains within `grace`.
    pub async fn shutdown(mut self, grace: Duration) {
        let gateway = self.gateway.take().expect("still running");
        gateway.shutdown(grace).await.expect("clean shutdown");
    }

    /// `ws://.../mqtt` of this gateway.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/mqtt", self.http)
    }

    /// The running gateway.
    pub fn gateway(&self) -> &Gateway {
        self.gateway.as_ref().expect("still running")
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// Opens a WebSocket to `url` with the given `Sec-WebSocket-Protocol` and `Origin` headers.
/// A refused upgrade is `Err(tungstenite::Error::Http(response))`.
pub async fn ws_handshake(
    url: &str,
    protocols: Option<&str>,
    origin: Option<&str>,
) -> Result<(WsStream, tungstenite::handshake::client::Response), tungstenite::Error> {
    ws_handshake_with(url, protocols, origin, None).await
}

/// [`ws_handshake`] through `connector` (for `wss://` with a client configuration of the
/// test's own); `None` is a plain connection for `ws://`.
pub async fn ws_handshake_with(
    url: &str,
    protocols: Option<&str>,
    origin: Option<&str>,
    connector: Option<Connector>,
) -> Result<(WsStream, tungstenite::handshake::client::Response), tungstenite::Error> {
    let mut request = url.into_client_request()?;
    if let Some(protocols) = protocols {
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", protocols.parse().expect("header"));
    }
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("Origin", origin.parse().expect("header"));
    }
    let connect = tokio_tungstenite::connect_async_tls_with_config(request, None, false, connector);
    tokio::time::timeout(WAIT, connect)
        .await
        .expect("WebSocket handshake timed out")
}

/// The HTTP status of a refused WebSocket upgrade.
pub async fn ws_refusal(url: &str, protocols: Option<&str>, origin: Option<&str>) -> u16 {
    match ws_handshake(url, protocols, origin).await {
        Ok((_, response)) => panic!("upgrade accepted: {response:?}"),
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(error) => panic!("upgrade failed without an HTTP answer: {error}"),
    }
}

/// A CONNECT with clean start and keep alive 60 s.
pub fn connect_packet(version: ProtocolVersion, client_id: &str) -> ConnectPacket {
    ConnectPacket {
        protocol: version,
        clean_start: true,
        keep_alive: 60,
        client_id: ByteStr::from(client_id),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    }
}

/// A PUBLISH; the client fills in the packet identifier for QoS 1 and 2.
pub fn publish_packet(topic: &str, payload: Bytes, qos: QoS, retain: bool) -> PublishPacket {
    PublishPacket {
        dup: false,
        qos,
        retain,
        topic: ByteStr::from(topic),
        packet_id: None,
        properties: Properties::default(),
        payload,
    }
}

/// Encodes one packet.
pub fn encode_packet(packet: &Packet, version: ProtocolVersion) -> BytesMut {
    let mut buf = BytesMut::new();
    encode(packet, version, &mut buf).expect("encodable packet");
    buf
}

/// How the test client reaches the gateway.
pub enum Link {
    /// MQTT over TCP.
    Tcp(TcpStream),
    /// MQTT over WebSocket.
    Ws(Box<WsStream>),
}

/// A raw MQTT client over TCP or WebSocket.
pub struct Client {
    link: Link,
    buf: BytesMut,
    pending: VecDeque<Packet>,
    next_packet_id: u16,
    /// The protocol version of the CONNECT sent.
    pub version: ProtocolVersion,
    /// WebSocket messages received so far (binary ones).
    pub ws_messages: usize,
}

impl Client {
    /// Wraps a link on which nothing was sent yet.
    pub fn new(link: Link, version: ProtocolVersion) -> Client {
        Client {
            link,
            buf: BytesMut::new(),
            pending: VecDeque::new(),
            next_packet_id: 1,
            version,
            ws_messages: 0,
        }
    }

    /// A TCP connection with nothing sent yet.
    pub async fn open_tcp(addr: SocketAddr, version: ProtocolVersion) -> Client {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("TCP connect timed out")
            .expect("TCP connect");
        stream.set_nodelay(true).expect("nodelay");
        Client::new(Link::Tcp(stream), version)
    }

    /// A WebSocket (subprotocol `mqtt`) with nothing sent yet.
    pub async fn open_ws(url: &str, version: ProtocolVersion) -> Client {
        let (stream, _) = ws_handshake(url, Some("mqtt"), None)
            .await
            .expect("WebSocket upgrade");
        Client::new(Link::Ws(Box::new(stream)), version)
    }

    /// Sends `connect` and expects a successful CONNACK.
    pub async fn connect_with(mut self, connect: ConnectPacket) -> Client {
        self.version = connect.protocol;
        self.send(&Packet::Connect(connect)).await;
        match self.expect_packet().await {
            Packet::ConnAck(connack) => {
                assert_eq!(connack.reason_code, ReasonCode::Success, "{connack:?}")
            }
            other => panic!("expected CONNACK, got {other:?}"),
        }
        self
    }

    /// A `wss://` WebSocket (subprotocol `mqtt`) through `connector`, with nothing sent yet.
    pub async fn open_wss(url: &str, version: ProtocolVersion, connector: Connector) -> Client {
        let (stream, _) = ws_handshake_with(url, Some("mqtt"), None, Some(connector))
            .await
            .expect("WebSocket upgrade");
        Client::new(Link::Ws(Box::new(stream)), version)
    }

    /// A connected TCP client with a clean session.
    pub async fn tcp(addr: SocketAddr, version: ProtocolVersion, client_id: &str) -> Client {
        Client::open_tcp(addr, version)
            .await
            .connect_with(connect_packet(version, client_id))
            .await
    }

    /// A connected WebSocket client with a clean session.
    pub async fn ws(url: &str, version: ProtocolVersion, client_id: &str) -> Client {
        Client::open_ws(url, version)
            .await
            .connect_with(connect_packet(version, client_id))
            .await
    }

    /// The WebSocket stream (panics for TCP).
    pub fn ws_stream(&mut self) -> &mut WsStream {
        match &mut self.link {
            Link::Ws(stream) => stream,
            Link::Tcp(_) => panic!("not a WebSocket client"),
        }
    }

    /// Sends bytes: one TCP write, or one binary WebSocket message.
    pub async fn send_bytes(&mut self, bytes: Bytes) {
        let sent = async {
            match &mut self.link {
                Link::Tcp(stream) => stream.write_all(&bytes).await.map_err(|e| e.to_string()),
                Link::Ws(stream) => stream
                    .send(Message::Binary(bytes))
                    .await
                    .map_err(|e| e.to_string()),
            }
        };
        tokio::time::timeout(WAIT, sent)
            .await
            .expect("sending timed out")
            .expect("sending");
    }

    /// Sends one packet.
    pub async fn send(&mut self, packet: &Packet) {
        let bytes = encode_packet(packet, self.version).freeze();
        self.send_bytes(bytes).await;
    }

    /// Reads more bytes into the buffer; false at the end of the stream.
    async fn fill(&mut self) -> bool {
        match &mut self.link {
            Link::Tcp(stream) => {
                self.buf.reserve(64 * 1024);
                match stream.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => false,
                    Ok(_) => true,
                }
            }
            Link::Ws(stream) => loop {
                match stream.next().await {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return false,
                    Some(Ok(Message::Binary(data))) => {
                        self.ws_messages += 1;
                        self.buf.extend_from_slice(&data);
                        return true;
                    }
                    Some(Ok(Message::Text(text))) => panic!("the gateway sent text: {text}"),
                    Some(Ok(_)) => {}
                }
            },
        }
    }

    /// The next packet, or `None` if the gateway closed the connection, within `timeout`.
    pub async fn next_packet_within(&mut self, timeout: Duration) -> Option<Packet> {
        self.read_within(timeout)
            .await
            .unwrap_or_else(|| panic!("nothing received within {timeout:?}"))
    }

    /// Expects nothing to arrive for `duration`, and the connection to stay open.
    pub async fn expect_silence(&mut self, duration: Duration) {
        match self.read_within(duration).await {
            None => {}
            Some(None) => panic!("expected silence, but the gateway closed the connection"),
            Some(Some(packet)) => panic!("expected silence, got {packet:?}"),
        }
    }

    /// Expects the connection to end within `timeout` with no packet first.
    pub async fn expect_closed_within(&mut self, timeout: Duration) {
        if let Some(packet) = self.next_packet_within(timeout).await {
            panic!("expected the connection to close, got {packet:?}");
        }
    }

    /// The next packet (`Some(None)`: the connection ended), or `None` if nothing happened
    /// within `timeout`. Cancel-safe: bytes read stay in the buffer.
    async fn read_within(&mut self, timeout: Duration) -> Option<Option<Packet>> {
        if let Some(packet) = self.pending.pop_front() {
            return Some(Some(packet));
        }
        let read = async {
            loop {
                match decode(&mut self.buf, self.version, CLIENT_MAX_PACKET) {
                    Ok(Some(packet)) => return Some(packet),
                    Ok(None) => {}
                    Err(error) => panic!("the gateway sent an undecodable packet: {error}"),
                }
                if !self.fill().await {
                    return None;
                }
            }
        };
        tokio::time::timeout(timeout, read).await.ok()
    }

    /// The next packet within [`WAIT`]; panics if the connection ends.
    pub async fn expect_packet(&mut self) -> Packet {
        self.next_packet_within(WAIT)
            .await
            .expect("expected a packet, but the gateway closed the connection")
    }

    /// Expects the connection to end within [`WAIT`] with no packet first.
    pub async fn expect_closed(&mut self) {
        self.expect_closed_within(WAIT).await;
    }

    /// A fresh packet identifier.
    pub fn packet_id(&mut self) -> u16 {
        let id = self.next_packet_id;
        self.next_packet_id = self.next_packet_id.wrapping_add(1).max(1);
        id
    }

    /// Reads until a packet `wanted` accepts, keeping the others for later.
    pub async fn expect_matching<T>(
        &mut self,
        what: &str,
        wanted: impl Fn(&Packet) -> Option<T>,
    ) -> T {
        if let Some(index) = self.pending.iter().position(|p| wanted(p).is_some()) {
            let packet = self.pending.remove(index).expect("in range");
            return wanted(&packet).expect("matched");
        }
        let mut skipped = VecDeque::new();
        loop {
            let Some(packet) = self.next_packet_within(WAIT).await else {
                panic!("expected {what}, but the connection closed (got {skipped:?})");
            };
            if let Some(value) = wanted(&packet) {
                skipped.append(&mut self.pending);
                self.pending = skipped;
                return value;
            }
            skipped.push_back(packet);
        }
    }

    /// Subscribes to `filter` and expects it granted at `qos`.
    pub async fn subscribe(&mut self, filter: &str, qos: QoS) {
        let packet_id = self.packet_id();
        let subscribe = SubscribePacket {
            packet_id,
            properties: Properties::default(),
            subscriptions: vec![Subscription {
                filter: ByteStr::from(filter),
                options: SubscriptionOptions {
                    qos,
                    ..SubscriptionOptions::default()
                },
            }],
        };
        self.send(&Packet::Subscribe(subscribe)).await;
        let codes = self
            .expect_matching("SUBACK", |p| match p {
                Packet::SubAck(ack) if ack.packet_id == packet_id => Some(ack.reason_codes.clone()),
                _ => None,
            })
            .await;
        let granted = match qos {
            QoS::AtMostOnce => ReasonCode::Success,
            QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
            QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
        };
        assert_eq!(codes, vec![granted], "SUBACK for {filter}");
    }

    /// Publishes and completes the QoS flow (PUBACK, or PUBREC/PUBREL/PUBCOMP).
    pub async fn publish(&mut self, mut publish: PublishPacket) {
        let qos = publish.qos;
        let packet_id = (qos != QoS::AtMostOnce).then(|| self.packet_id());
        publish.packet_id = packet_id;
        self.send(&Packet::Publish(publish)).await;
        let Some(id) = packet_id else { return };
        if qos == QoS::AtLeastOnce {
            self.expect_matching("PUBACK", |p| match p {
                Packet::PubAck(ack) if ack.packet_id == id => Some(()),
                _ => None,
            })
            .await;
        } else {
            self.expect_matching("PUBREC", |p| match p {
                Packet::PubRec(ack) if ack.packet_id == id => Some(()),
                _ => None,
            })
            .await;
            self.send(&Packet::PubRel(PubAckPacket::new(id))).await;
            self.expect_matching("PUBCOMP", |p| match p {
                Packet::PubComp(ack) if ack.packet_id == id => Some(()),
                _ => None,
            })
            .await;
        }
    }

    /// The next PUBLISH, acknowledged as its QoS requires.
    pub async fn expect_message(&mut self) -> PublishPacket {
        let publish = self
            .expect_matching("PUBLISH", |p| match p {
                Packet::Publish(publish) => Some(publish.clone()),
                _ => None,
            })
            .await;
        match (publish.qos, publish.packet_id) {
            (QoS::AtMostOnce, _) => {}
            (QoS::AtLeastOnce, Some(id)) => self.send(&Packet::PubAck(PubAckPacket::new(id))).await,
            (QoS::ExactlyOnce, Some(id)) => {
                self.send(&Packet::PubRec(PubAckPacket::new(id))).await;
                self.expect_matching("PUBREL", |p| match p {
                    Packet::PubRel(ack) if ack.packet_id == id => Some(()),
                    _ => None,
                })
                .await;
                self.send(&Packet::PubComp(PubAckPacket::new(id))).await;
            }
            (qos, None) => panic!("PUBLISH at {qos:?} without packet identifier"),
        }
        publish
    }
}

/// An HTTP response as the minimal client read it.
#[derive(Debug)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Header names (lower case) and values.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("UTF-8 body")
    }

    /// The body as JSON, checking the content type.
    pub fn json(&self) -> serde_json::Value {
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

/// Sends one HTTP/1.1 request (`Connection: close`) and reads the whole response.
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> HttpResponse {
    let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
        .await
        .expect("HTTP connect timed out")
        .expect("HTTP connect");
    http_request_over(stream, addr, method, path, headers).await
}

/// [`http_request`] over an open `stream` (a TLS one for HTTPS) to the server at `addr`.
pub async fn http_request_over(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> HttpResponse {
    let exchange = async {
        let mut request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
        if !headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("host"))
        {
            request.push_str(&format!("Host: {addr}\r\n"));
        }
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .expect("HTTP write");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.expect("HTTP read");
        raw
    };
    let raw = tokio::time::timeout(WAIT, exchange)
        .await
        .expect("HTTP request timed out");
    parse_response(&raw)
}

/// `GET path`.
pub async fn get(addr: SocketAddr, path: &str) -> HttpResponse {
    http_request(addr, "GET", path, &[]).await
}

/// `/metrics` as text.
pub async fn scrape(http: SocketAddr) -> String {
    let response = get(http, "/metrics").await;
    assert_eq!(response.status, 200, "{response:?}");
    response.text()
}

/// The value of one series (`name` or `name{label="value"}`) in a Prometheus exposition.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        .trim()
        .parse()
        .expect("a number")
}

fn parse_response(raw: &[u8]) -> HttpResponse {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of HTTP headers");
    let head = std::str::from_utf8(&raw[..end]).expect("ASCII headers");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let mut parts = status_line.splitn(3, ' ');
    assert_eq!(parts.next(), Some("HTTP/1.1"), "{status_line}");
    let status = parts
        .next()
        .and_then(|code| code.parse().ok())
        .expect("status code");
    let headers: Vec<(String, String)> = lines
        .map(|line| {
            let (name, value) = line.split_once(':').expect("header line");
            (name.trim().to_ascii_lowercase(), value.trim().to_owned())
        })
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let find = |name: &str| {
        headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, v)| v.clone())
    };
    if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        body = dechunk(&body);
    } else if let Some(length) = find("content-length") {
        let length: usize = length.parse().expect("content length");
        assert_eq!(body.len(), length, "body length");
    }
    HttpResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size_text = std::str::from_utf8(&data[..line_end]).expect("chunk size");
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .expect("hex chunk size");
        data = &data[line_end + 2..];
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}
