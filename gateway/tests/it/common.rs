//! Shared pieces of the loopback tests: a gateway on port 0 with a throwaway data directory, and
//! a raw MQTT test client over `Framed<_, MqttCodec>` (a TCP stream, or any [`ClientStream`]
//! such as a TLS one) that can send any packet (or any bytes) and assert what comes back.
//!
//! Every wait has a timeout of a few seconds at most, so a gateway that misbehaves fails the test
//! instead of hanging it.

use broker_core::AllowAll;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use gateway::Gateway;
use gateway::config::GatewayConfig;
use mqtt_codec::{
    ByteStr, CodecError, ConnAckPacket, ConnectPacket, DisconnectPacket, MqttCodec, Packet,
    Properties, ProtocolVersion, PubAckPacket, PublishPacket, QoS, ReasonCode, SubAckPacket,
    SubscribePacket, Subscription, SubscriptionOptions, UnsubscribePacket, Will,
};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::codec::Framed;

/// How long a test waits for a packet it expects. Generous for a loaded 2-core machine, short
/// enough that a broken gateway fails fast.
pub const WAIT: Duration = Duration::from_secs(3);

/// How long a test listens to make sure nothing arrives.
pub const QUIET: Duration = Duration::from_millis(300);

/// Largest packet the test client accepts from the gateway.
const CLIENT_MAX_PACKET: usize = 1 << 20;

/// Sends log lines to the test harness, which shows them only for failing tests.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// A configuration for tests: loopback port 0 for every listener, a fresh data directory, no
/// `$SYS` traffic unless a test asks for it.
pub fn test_config() -> GatewayConfig {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let unique = NEXT.fetch_add(1, Ordering::Relaxed);
    let data_dir = std::env::temp_dir().join(format!(
        "gateway-test-{}-{unique}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    let mut config = GatewayConfig {
        tcp: vec!["127.0.0.1:0".parse().expect("valid address")],
        http: vec!["127.0.0.1:0".parse().expect("valid address")],
        data_dir,
        ..GatewayConfig::default()
    };
    config.broker.sys_interval = None;
    config
}

/// A running gateway that removes its data directory when dropped.
pub struct TestGateway {
    gateway: Option<Gateway>,
    /// The MQTT over TCP address.
    pub addr: SocketAddr,
    /// The HTTP address (API, metrics).
    pub http: SocketAddr,
    data_dir: PathBuf,
}

impl TestGateway {
    /// Starts a gateway with the test defaults.
    pub async fn start() -> TestGateway {
        Self::start_with(|_| {}).await
    }

    /// Starts a gateway with the test defaults changed by `adjust`.
    pub async fn start_with(adjust: impl FnOnce(&mut GatewayConfig)) -> TestGateway {
        init_logging();
        let mut config = test_config();
        adjust(&mut config);
        let data_dir = config.data_dir.clone();
        let gateway = Gateway::start(config, Box::new(AllowAll))
            .await
            .expect("gateway starts");
        let addr = gateway.mqtt_addresses()[0];
        let http = gateway.http_addresses()[0];
        TestGateway {
            gateway: Some(gateway),
            addr,
            http,
            data_dir,
        }
    }

    /// Reloads the security files, as SIGHUP does.
    pub fn reload(&self) {
        self.gateway.as_ref().expect("gateway running").reload();
    }

    /// Shuts the gateway down and returns how long it took.
    pub async fn shutdown(mut self, grace: Duration) -> Duration {
        let gateway = self.gateway.take().expect("gateway still running");
        let started = Instant::now();
        gateway
            .shutdown(grace)
            .await
            .expect("gateway shuts down within the grace period");
        started.elapsed()
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// A CONNECT with clean start, keep alive 30 s (long enough never to matter unless a test sets
/// it), and no will.
pub fn connect_packet(version: ProtocolVersion, client_id: &str) -> ConnectPacket {
    ConnectPacket {
        protocol: version,
        clean_start: true,
        keep_alive: 30,
        client_id: ByteStr::from(client_id),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    }
}

/// A will message on `topic`.
pub fn will(topic: &str, payload: &'static str) -> Will {
    Will {
        topic: ByteStr::from(topic),
        payload: Bytes::from_static(payload.as_bytes()),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Properties::default(),
    }
}

/// A PUBLISH without packet identifier (the client assigns one when sending QoS 1 and 2).
pub fn publish_packet(topic: &str, payload: &str, qos: QoS, retain: bool) -> PublishPacket {
    PublishPacket {
        dup: false,
        qos,
        retain,
        topic: ByteStr::from(topic),
        packet_id: None,
        properties: Properties::default(),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
    }
}

/// Subscription options with just a QoS.
pub fn options(qos: QoS) -> SubscriptionOptions {
    SubscriptionOptions {
        qos,
        ..SubscriptionOptions::default()
    }
}

/// A byte stream a [`TestClient`] can speak MQTT over: TCP, TLS over TCP...
pub trait ClientStream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> ClientStream for T {}

/// A raw MQTT client for tests.
pub struct TestClient {
    framed: Framed<Box<dyn ClientStream>, MqttCodec>,
    /// Packets read while waiting for a particular one, handed out first by `expect_packet`.
    pending: VecDeque<Packet>,
    next_packet_id: u16,
    /// The client's local address (how the gateway's log lines name it).
    pub local_addr: SocketAddr,
}

impl TestClient {
    /// Opens a TCP connection and sends nothing.
    pub async fn open(addr: SocketAddr) -> TestClient {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("TCP connect timed out")
            .expect("TCP connect");
        stream.set_nodelay(true).expect("set TCP_NODELAY");
        let local_addr = stream.local_addr().expect("local address");
        TestClient::over(stream, local_addr)
    }

    /// A client over an open `stream` on which nothing was sent yet; `local_addr` is its
    /// TCP connection's local address.
    pub fn over(stream: impl ClientStream + 'static, local_addr: SocketAddr) -> TestClient {
        let stream: Box<dyn ClientStream> = Box::new(stream);
        TestClient {
            framed: Framed::new(
                stream,
                MqttCodec::new(ProtocolVersion::V5, CLIENT_MAX_PACKET),
            ),
            pending: VecDeque::new(),
            next_packet_id: 1,
            local_addr,
        }
    }

    /// Opens a connection, sends `connect` and returns the CONNACK, whatever its reason code.
    pub async fn connect_with(
        addr: SocketAddr,
        connect: ConnectPacket,
    ) -> (TestClient, ConnAckPacket) {
        TestClient::open(addr).await.send_connect(connect).await
    }

    /// Sends `connect` on this fresh connection and returns the CONNACK, whatever its reason
    /// code.
    pub async fn send_connect(mut self, connect: ConnectPacket) -> (TestClient, ConnAckPacket) {
        self.send(Packet::Connect(connect)).await;
        let connack = match self.expect_packet().await {
            Packet::ConnAck(connack) => connack,
            other => panic!("expected CONNACK, got {other:?}"),
        };
        (self, connack)
    }

    /// Connects with `connect` and asserts that the gateway accepted it.
    pub async fn connect_accepted(
        addr: SocketAddr,
        connect: ConnectPacket,
    ) -> (TestClient, ConnAckPacket) {
        let (client, connack) = Self::connect_with(addr, connect).await;
        assert_eq!(
            connack.reason_code,
            ReasonCode::Success,
            "CONNACK {connack:?}"
        );
        (client, connack)
    }

    /// A connected client speaking `version` with a clean session.
    pub async fn connect(
        addr: SocketAddr,
        version: ProtocolVersion,
        client_id: &str,
    ) -> TestClient {
        Self::connect_accepted(addr, connect_packet(version, client_id))
            .await
            .0
    }

    /// A connected MQTT 5.0 client with a clean session.
    pub async fn v5(addr: SocketAddr, client_id: &str) -> TestClient {
        Self::connect(addr, ProtocolVersion::V5, client_id).await
    }

    /// A connected MQTT 3.1.1 client with a clean session.
    pub async fn v311(addr: SocketAddr, client_id: &str) -> TestClient {
        Self::connect(addr, ProtocolVersion::V311, client_id).await
    }

    /// The protocol version the client speaks (fixed by the CONNECT it sent).
    pub fn version(&self) -> ProtocolVersion {
        self.framed.codec().version
    }

    /// Decodes what the gateway sends as `version` from now on (for a CONNECT sent as raw
    /// bytes, which the codec does not see).
    pub fn set_version(&mut self, version: ProtocolVersion) {
        self.framed.codec_mut().version = version;
    }

    /// A fresh packet identifier.
    pub fn packet_id(&mut self) -> u16 {
        let id = self.next_packet_id;
        self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
        id
    }

    /// Sends one packet.
    pub async fn send(&mut self, packet: Packet) {
        tokio::time::timeout(WAIT, self.framed.send(packet))
            .await
            .expect("sending a packet timed out")
            .expect("sending a packet");
    }

    /// Sends bytes as they are, for malformed input.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        let stream = self.framed.get_mut();
        tokio::time::timeout(WAIT, stream.write_all(bytes))
            .await
            .expect("sending bytes timed out")
            .expect("sending bytes");
    }

    /// Reads the next packet from the socket (not from `pending`), within `timeout`.
    async fn read(&mut self, timeout: Duration) -> Result<Option<Packet>, String> {
        match tokio::time::timeout(timeout, self.framed.next()).await {
            Err(_) => Err(format!("nothing received within {timeout:?}")),
            Ok(None) => Ok(None),
            Ok(Some(Ok(packet))) => Ok(Some(packet)),
            Ok(Some(Err(CodecError::Io(error)))) => Err(format!("connection failed: {error}")),
            Ok(Some(Err(error))) => panic!("the gateway sent something undecodable: {error}"),
        }
    }

    /// The next packet, within `timeout`; panics on timeout or if the connection ends.
    pub async fn expect_packet_within(&mut self, timeout: Duration) -> Packet {
        if let Some(packet) = self.pending.pop_front() {
            return packet;
        }
        match self.read(timeout).await {
            Ok(Some(packet)) => packet,
            Ok(None) => panic!("expected a packet, but the gateway closed the connection"),
            Err(error) => panic!("expected a packet: {error}"),
        }
    }

    /// The next packet within `timeout`, or `None` if nothing came or the connection ended.
    pub async fn try_packet(&mut self, timeout: Duration) -> Option<Packet> {
        if let Some(packet) = self.pending.pop_front() {
            return Some(packet);
        }
        self.read(timeout).await.ok().flatten()
    }

    /// The next packet, within [`WAIT`].
    pub async fn expect_packet(&mut self) -> Packet {
        self.expect_packet_within(WAIT).await
    }

    /// Reads until a packet for which `wanted` returns `Some`, keeping the others for later.
    async fn expect_matching<T>(&mut self, what: &str, wanted: impl Fn(&Packet) -> Option<T>) -> T {
        if let Some(index) = self.pending.iter().position(|p| wanted(p).is_some()) {
            let packet = self.pending.remove(index).expect("index in range");
            return wanted(&packet).expect("matched before");
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read(left).await {
                Ok(Some(packet)) => match wanted(&packet) {
                    Some(value) => return value,
                    None => self.pending.push_back(packet),
                },
                Ok(None) => panic!("expected {what}, but the gateway closed the connection"),
                Err(error) => panic!("expected {what}: {error} (also got {:?})", self.pending),
            }
        }
    }

    /// The next PUBLISH (without acknowledging it).
    pub async fn expect_publish(&mut self) -> PublishPacket {
        match self.expect_packet().await {
            Packet::Publish(publish) => publish,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    /// The next PUBLISH, acknowledged as its QoS requires (the QoS 2 flow completed).
    pub async fn expect_message(&mut self) -> PublishPacket {
        let publish = self.expect_publish().await;
        self.acknowledge(&publish).await;
        publish
    }

    /// Acknowledges a received PUBLISH: PUBACK for QoS 1, PUBREC/PUBREL/PUBCOMP for QoS 2.
    pub async fn acknowledge(&mut self, publish: &PublishPacket) {
        match (publish.qos, publish.packet_id) {
            (QoS::AtMostOnce, _) => {}
            (QoS::AtLeastOnce, Some(id)) => self.send(Packet::PubAck(PubAckPacket::new(id))).await,
            (QoS::ExactlyOnce, Some(id)) => {
                self.send(Packet::PubRec(PubAckPacket::new(id))).await;
                let released = self
                    .expect_matching("PUBREL", |p| match p {
                        Packet::PubRel(ack) if ack.packet_id == id => Some(ack.clone()),
                        _ => None,
                    })
                    .await;
                assert_eq!(released.reason_code, ReasonCode::Success);
                self.send(Packet::PubComp(PubAckPacket::new(id))).await;
            }
            (qos, None) => panic!("PUBLISH at {qos:?} without packet identifier"),
        }
    }

    /// Expects a DISCONNECT with `reason` (5.0), returning it.
    pub async fn expect_disconnect(&mut self, reason: ReasonCode) -> DisconnectPacket {
        match self.expect_packet().await {
            Packet::Disconnect(disconnect) => {
                assert_eq!(
                    disconnect.reason_code, reason,
                    "DISCONNECT reason, got {disconnect:?}"
                );
                disconnect
            }
            other => panic!("expected DISCONNECT {reason:?}, got {other:?}"),
        }
    }

    /// Expects the gateway to close the connection (end of stream or reset) within `timeout`,
    /// with no packet before that.
    pub async fn expect_closed_within(&mut self, timeout: Duration) {
        if let Some(packet) = self.pending.pop_front() {
            panic!("expected the connection to close, got {packet:?}");
        }
        match self.read(timeout).await {
            Ok(None) => {}
            Ok(Some(packet)) => panic!("expected the connection to close, got {packet:?}"),
            Err(error) if error.starts_with("connection failed") => {}
            Err(error) => panic!("expected the connection to close: {error}"),
        }
    }

    /// Expects the gateway to close the connection within [`WAIT`].
    pub async fn expect_closed(&mut self) {
        self.expect_closed_within(WAIT).await;
    }

    /// How the gateway answers a protocol error: DISCONNECT with `reason` then close for 5.0,
    /// just close for older versions [MQTT-4.13.1-1] [MQTT-4.8.0-1].
    pub async fn expect_refused(&mut self, reason: ReasonCode) {
        if self.version().is_v5() {
            self.expect_disconnect(reason).await;
        }
        self.expect_closed().await;
    }

    /// Expects nothing to arrive for `duration`, and the connection to stay open.
    pub async fn expect_silence(&mut self, duration: Duration) {
        if let Some(packet) = self.pending.pop_front() {
            panic!("expected silence, got {packet:?}");
        }
        match tokio::time::timeout(duration, self.framed.next()).await {
            Err(_) => {}
            Ok(None) => panic!("expected silence, but the gateway closed the connection"),
            Ok(Some(Ok(packet))) => panic!("expected silence, got {packet:?}"),
            Ok(Some(Err(error))) => panic!("expected silence, got an error: {error}"),
        }
    }

    /// Subscribes with the given subscriptions and SUBSCRIBE properties; returns the SUBACK.
    pub async fn subscribe_with(
        &mut self,
        subscriptions: Vec<Subscription>,
        properties: Properties,
    ) -> SubAckPacket {
        let packet_id = self.packet_id();
        self.send(Packet::Subscribe(SubscribePacket {
            packet_id,
            properties,
            subscriptions,
        }))
        .await;
        self.expect_matching("SUBACK", |p| match p {
            Packet::SubAck(ack) if ack.packet_id == packet_id => Some(ack.clone()),
            _ => None,
        })
        .await
    }

    /// Subscribes to `filter` with `qos` and asserts that it was granted.
    pub async fn subscribe(&mut self, filter: &str, qos: QoS) {
        let ack = self
            .subscribe_with(
                vec![Subscription {
                    filter: ByteStr::from(filter),
                    options: options(qos),
                }],
                Properties::default(),
            )
            .await;
        let granted = match qos {
            QoS::AtMostOnce => ReasonCode::GRANTED_QOS_0,
            QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
            QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
        };
        assert_eq!(ack.reason_codes, vec![granted], "SUBACK for {filter:?}");
    }

    /// Unsubscribes from `filter`, waiting for the UNSUBACK.
    pub async fn unsubscribe(&mut self, filter: &str) {
        let packet_id = self.packet_id();
        self.send(Packet::Unsubscribe(UnsubscribePacket {
            packet_id,
            properties: Properties::default(),
            filters: vec![ByteStr::from(filter)],
        }))
        .await;
        self.expect_matching("UNSUBACK", |p| match p {
            Packet::UnsubAck(ack) if ack.packet_id == packet_id => Some(()),
            _ => None,
        })
        .await;
    }

    /// Publishes `publish` (assigning a packet identifier for QoS 1 and 2) and completes its
    /// acknowledgement flow. Returns the PUBACK or PUBREC (QoS 0: `None`).
    pub async fn publish_packet(&mut self, mut publish: PublishPacket) -> Option<PubAckPacket> {
        if publish.qos != QoS::AtMostOnce && publish.packet_id.is_none() {
            publish.packet_id = Some(self.packet_id());
        }
        let qos = publish.qos;
        let id = publish.packet_id;
        self.send(Packet::Publish(publish)).await;
        match (qos, id) {
            (QoS::AtMostOnce, _) => None,
            (QoS::AtLeastOnce, Some(id)) => Some(
                self.expect_matching("PUBACK", |p| match p {
                    Packet::PubAck(ack) if ack.packet_id == id => Some(ack.clone()),
                    _ => None,
                })
                .await,
            ),
            (QoS::ExactlyOnce, Some(id)) => {
                let received = self
                    .expect_matching("PUBREC", |p| match p {
                        Packet::PubRec(ack) if ack.packet_id == id => Some(ack.clone()),
                        _ => None,
                    })
                    .await;
                if !received.reason_code.is_error() {
                    self.send(Packet::PubRel(PubAckPacket::new(id))).await;
                    self.expect_matching("PUBCOMP", |p| match p {
                        Packet::PubComp(ack) if ack.packet_id == id => Some(()),
                        _ => None,
                    })
                    .await;
                }
                Some(received)
            }
            (_, None) => unreachable!("identifier assigned above"),
        }
    }

    /// Publishes `payload` to `topic` and completes the acknowledgement flow.
    pub async fn publish(&mut self, topic: &str, payload: &str, qos: QoS) {
        self.publish_packet(publish_packet(topic, payload, qos, false))
            .await;
    }

    /// Publishes a retained message and completes the acknowledgement flow.
    pub async fn publish_retained(&mut self, topic: &str, payload: &str, qos: QoS) {
        self.publish_packet(publish_packet(topic, payload, qos, true))
            .await;
    }

    /// Sends PINGREQ and waits for PINGRESP: a round trip through the broker, so everything
    /// this client sent before has been handled.
    pub async fn ping(&mut self) {
        self.send(Packet::PingReq).await;
        self.expect_matching("PINGRESP", |p| matches!(p, Packet::PingResp).then_some(()))
            .await;
    }

    /// Sends a normal DISCONNECT and waits for the gateway to close the connection. Messages
    /// that were on their way (`$SYS` updates, say) are skipped.
    pub async fn disconnect(mut self) {
        self.send(Packet::Disconnect(DisconnectPacket::default()))
            .await;
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read(left).await {
                Ok(None) => return,
                Ok(Some(Packet::Publish(_))) => {}
                Ok(Some(packet)) => panic!("expected the connection to close, got {packet:?}"),
                Err(error) if error.starts_with("connection failed") => return,
                Err(error) => panic!("expected the connection to close: {error}"),
            }
        }
    }

    /// Closes the socket without DISCONNECT (an abnormal loss, for the gateway).
    pub fn drop_connection(self) {
        drop(self);
    }
}

/// Two clients that exchange messages through the gateway, to show that a misbehaving
/// connection did not disturb anybody else.
pub struct Bystanders {
    subscriber: TestClient,
    publisher: TestClient,
    sent: usize,
}

impl Bystanders {
    /// A 5.0 subscriber and a 3.1.1 publisher on `bystander/#`, checked once.
    pub async fn join(addr: SocketAddr) -> Bystanders {
        let mut subscriber = TestClient::v5(addr, "bystander-subscriber").await;
        subscriber.subscribe("bystander/#", QoS::AtLeastOnce).await;
        let publisher = TestClient::v311(addr, "bystander-publisher").await;
        let mut bystanders = Bystanders {
            subscriber,
            publisher,
            sent: 0,
        };
        bystanders.check().await;
        bystanders
    }

    /// Publishes one message at QoS 0 and one at QoS 1 and asserts both arrive, in order.
    pub async fn check(&mut self) {
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
            self.sent += 1;
            let payload = format!("message {}", self.sent);
            self.publisher
                .publish("bystander/news", &payload, qos)
                .await;
            let received = self.subscriber.expect_message().await;
            assert_eq!(received.topic, "bystander/news");
            assert_eq!(received.payload, payload.as_bytes(), "bystander message");
        }
    }
}
