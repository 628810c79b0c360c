//! Chaos under load: the real gateway binary carries two numbered streams between well-behaved
//! clients (QoS 1 from a 5.0 publisher over TCP to a subscriber over WebSocket, QoS 2 from a
//! 3.1.1 publisher over WebSocket to a subscriber over TCP) while, round after round, other
//! peers attack the same process: random bytes, truncated and oversized packets, valid packets
//! in the wrong order, half-open connections, resets (`SO_LINGER` 0), and WebSocket abuse (a
//! text message, a 16 MiB frame, bytes that are not frames, an upgrade without subprotocol, a
//! ping flood, and fragmented messages, which are legal and must work).
//!
//! It asserts that both streams arrive whole, in order and without a QoS 2 duplicate; that the
//! log names each bad peer (by address, or by client id once it has one) in exactly one line,
//! and each peer that broke no rule in none (PUBREL for unknown identifiers, answered PUBCOMP
//! 0x92; a reset between packets, which the network can do to anyone; a ping flood; fragmented
//! messages), with no other warning, error or panic; and that the process's resident memory,
//! measured after a warm-up with the same streams and again once every attacker is gone, grows
//! by at most 10 %. An upgrade offering no subprotocol is refused with 400, as DESIGN.md's
//! WebSocket interface (`mqtt` or `mqttv3.1`) has it.
//!
//! Sizes are bounded (3,000 messages per stream, at most [`MAX_ROUNDS`] rounds of 26 attacking
//! peers), and every wait has a deadline, so the test ends in seconds or fails.

use crate::binary::RunningBinary;
use crate::web_support::{Client, connect_packet, encode_packet, get, publish_packet};
use bytes::{Buf, Bytes, BytesMut};
use mqtt_codec::{
    DisconnectPacket, Packet, Properties, ProtocolVersion, PubAckPacket, QoS, ReasonCode, decode,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::Instant;

const V5: ProtocolVersion = ProtocolVersion::V5;
const V311: ProtocolVersion = ProtocolVersion::V311;

/// Messages in each stream, in the warm-up and under attack.
const STREAM_MESSAGES: u32 = 3000;
/// Messages a stream publisher keeps unacknowledged.
const WINDOW: usize = 32;
/// The gateway's `--max-packet-size`: the oversized packets and the 16 MiB frame are beyond it.
const MAX_PACKET_SIZE: usize = 1 << 20;
/// The gateway's `--connect-timeout`, seconds.
const CONNECT_TIMEOUT_SECONDS: u64 = 2;
/// Rounds of attacks: one starts every [`ROUND_INTERVAL`] while the streams run, at least
/// [`MIN_ROUNDS`] and at most [`MAX_ROUNDS`].
const MIN_ROUNDS: u32 = 2;
const MAX_ROUNDS: u32 = 8;
const ROUND_INTERVAL: Duration = Duration::from_millis(250);
/// How long a peer waits for the gateway to answer or close: several connect timeouts.
const PEER_WAIT: Duration = Duration::from_secs(10);
/// Growth of resident memory allowed after the attacks, over the warm baseline.
const RSS_GROWTH_ALLOWED: f64 = 0.10;

/// The gateway binary, its stderr collected line by line.
struct GatewayProcess {
    binary: RunningBinary,
    endpoints: Endpoints,
}

/// Where the gateway listens.
#[derive(Clone, Copy, Debug)]
struct Endpoints {
    mqtt: SocketAddr,
    http: SocketAddr,
}

impl Endpoints {
    fn ws_url(&self) -> String {
        format!("ws://{}/mqtt", self.http)
    }
}

impl GatewayProcess {
    fn start() -> GatewayProcess {
        let binary = RunningBinary::start(&[
            "--max-packet-size",
            &MAX_PACKET_SIZE.to_string(),
            "--connect-timeout",
            &CONNECT_TIMEOUT_SECONDS.to_string(),
            "--sys-interval",
            "0",
        ]);
        let endpoints = Endpoints {
            mqtt: binary.addr,
            http: binary.http,
        };
        GatewayProcess { binary, endpoints }
    }

    /// Resident memory of the process, KiB (VmRSS in /proc).
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.binary.pid()))
            .expect("/proc status of the gateway");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS line")
    }

    fn lines(&self) -> Vec<String> {
        self.binary.lines()
    }

    /// Waits until the gateway has no connection open (the API reads its counters).
    async fn wait_for_no_connections(&self) {
        let deadline = Instant::now() + PEER_WAIT;
        loop {
            let stats = get(self.endpoints.http, "/api/v1/stats").await.json();
            let open: u64 = stats["connections"]
                .as_object()
                .expect("connections by transport")
                .values()
                .map(|count| count.as_u64().expect("a count"))
                .sum();
            if open == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "connections still open after {PEER_WAIT:?}: {stats}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A peer and what the log should say about it.
#[derive(Debug)]
struct Peer {
    what: &'static str,
    /// Its address (`127.0.0.1:port`) or its client id, as the log names it.
    marker: String,
    /// Lines expected to name it: 1 for a bad peer, 0 for one that broke no rule.
    lines: usize,
}

impl Peer {
    fn bad(what: &'static str, marker: impl ToString) -> Peer {
        Peer {
            what,
            marker: marker.to_string(),
            lines: 1,
        }
    }

    fn legal(what: &'static str, marker: impl ToString) -> Peer {
        Peer {
            what,
            marker: marker.to_string(),
            lines: 0,
        }
    }
}

/// Whether `line` names `marker` as a whole (`127.0.0.1:4000` is not `127.0.0.1:40001`).
fn mentions(line: &str, marker: &str) -> bool {
    line.match_indices(marker).any(|(at, _)| {
        !line[at + marker.len()..]
            .chars()
            .next()
            .is_some_and(|next| next.is_ascii_alphanumeric() || next == '-' || next == '_')
    })
}

// The streams.

/// A numbered payload, padded to a typical sensor reading's size.
fn numbered_payload(number: u32) -> Bytes {
    Bytes::from(format!("{number:08} {:>56}", "reading"))
}

fn payload_number(payload: &[u8]) -> u32 {
    std::str::from_utf8(&payload[..8])
        .ok()
        .and_then(|digits| digits.parse().ok())
        .unwrap_or_else(|| panic!("not a numbered payload: {payload:?}"))
}

async fn stream_client(
    endpoints: Endpoints,
    over_ws: bool,
    version: ProtocolVersion,
    id: &str,
) -> Client {
    let client = if over_ws {
        Client::open_ws(&endpoints.ws_url(), version).await
    } else {
        Client::open_tcp(endpoints.mqtt, version).await
    };
    client.connect_with(connect_packet(version, id)).await
}

async fn disconnect(mut client: Client) {
    client
        .send(&Packet::Disconnect(DisconnectPacket {
            reason_code: ReasonCode::NORMAL_DISCONNECTION,
            properties: Properties::default(),
        }))
        .await;
    client.expect_closed().await;
}

/// Publishes `count` numbered messages at `qos`, keeping [`WINDOW`] unacknowledged, and
/// completes every flow.
async fn publish_numbered(mut client: Client, topic: &str, qos: QoS, count: u32) -> Client {
    let (mut sent, mut completed) = (0, 0);
    let mut in_flight = HashSet::new();
    while completed < count {
        while sent < count && in_flight.len() < WINDOW {
            let id = client.packet_id();
            let mut publish = publish_packet(topic, numbered_payload(sent), qos, false);
            publish.packet_id = Some(id);
            client.send(&Packet::Publish(publish)).await;
            in_flight.insert(id);
            sent += 1;
        }
        match client.expect_packet().await {
            Packet::PubAck(ack) if qos == QoS::AtLeastOnce => {
                assert_eq!(ack.reason_code, ReasonCode::Success, "{ack:?}");
                assert!(in_flight.remove(&ack.packet_id), "PUBACK for {ack:?}");
                completed += 1;
            }
            Packet::PubRec(received) if qos == QoS::ExactlyOnce => {
                assert_eq!(received.reason_code, ReasonCode::Success, "{received:?}");
                assert!(in_flight.contains(&received.packet_id), "{received:?}");
                client
                    .send(&Packet::PubRel(PubAckPacket::new(received.packet_id)))
                    .await;
            }
            Packet::PubComp(complete) if qos == QoS::ExactlyOnce => {
                assert!(in_flight.remove(&complete.packet_id), "{complete:?}");
                completed += 1;
            }
            other => panic!("publisher at {qos:?} got {other:?}"),
        }
    }
    client
}

/// Receives `count` numbered messages at `qos` and acknowledges them: each must be the next
/// number, so a lost, reordered or duplicated message fails here.
async fn receive_numbered(mut client: Client, qos: QoS, count: u32) -> Client {
    let mut next = 0;
    let mut unreleased = HashSet::new();
    while next < count || !unreleased.is_empty() {
        match client.expect_packet().await {
            Packet::Publish(publish) => {
                assert_eq!(publish.qos, qos, "{publish:?}");
                let number = payload_number(&publish.payload);
                assert!(
                    number >= next,
                    "message {number} arrived again after {}: a duplicate at {qos:?}",
                    next - 1
                );
                assert_eq!(number, next, "message {next} lost (or late) at {qos:?}");
                next += 1;
                let id = publish.packet_id.expect("QoS 1 or 2");
                if qos == QoS::AtLeastOnce {
                    client.send(&Packet::PubAck(PubAckPacket::new(id))).await;
                } else {
                    assert!(unreleased.insert(id), "packet id {id} reused before PUBREL");
                    client.send(&Packet::PubRec(PubAckPacket::new(id))).await;
                }
            }
            Packet::PubRel(release) if qos == QoS::ExactlyOnce => {
                assert!(unreleased.remove(&release.packet_id), "{release:?}");
                client
                    .send(&Packet::PubComp(PubAckPacket::new(release.packet_id)))
                    .await;
            }
            other => panic!("subscriber at {qos:?} got {other:?}"),
        }
    }
    client
}

/// One numbered stream from a publisher to a subscriber, each over its own transport.
async fn stream(endpoints: Endpoints, label: &str, qos: QoS, publisher_over_ws: bool) {
    let version = if qos == QoS::AtLeastOnce { V5 } else { V311 };
    let topic = format!("chaos/stream/{}", qos as u8);
    let name = |role: &str| format!("{label}-{role}-qos{}", qos as u8);
    let mut subscriber =
        stream_client(endpoints, !publisher_over_ws, version, &name("subscriber")).await;
    subscriber.subscribe(&topic, qos).await;
    let publisher = stream_client(endpoints, publisher_over_ws, version, &name("publisher")).await;
    let receiving = tokio::spawn(receive_numbered(subscriber, qos, STREAM_MESSAGES));
    let publisher = publish_numbered(publisher, &topic, qos, STREAM_MESSAGES).await;
    let subscriber = receiving.await.expect("the subscriber completes");
    disconnect(publisher).await;
    disconnect(subscriber).await;
}

/// Both streams at once: QoS 1 from TCP to WebSocket, QoS 2 from WebSocket to TCP.
async fn both_streams(endpoints: Endpoints, label: &'static str) {
    let qos1 = tokio::spawn(stream(endpoints, label, QoS::AtLeastOnce, false));
    let qos2 = tokio::spawn(stream(endpoints, label, QoS::ExactlyOnce, true));
    qos1.await.expect("the QoS 1 stream completes");
    qos2.await.expect("the QoS 2 stream completes");
}

// Raw TCP peers.

async fn open_tcp(endpoints: Endpoints) -> (TcpStream, SocketAddr) {
    let stream = tokio::time::timeout(PEER_WAIT, TcpStream::connect(endpoints.mqtt))
        .await
        .expect("TCP connect in time")
        .expect("TCP connect");
    stream.set_nodelay(true).expect("nodelay");
    let local = stream.local_addr().expect("local address");
    (stream, local)
}

fn encoded(packet: &Packet, version: ProtocolVersion) -> Vec<u8> {
    encode_packet(packet, version).to_vec()
}

fn connect_bytes(version: ProtocolVersion, client_id: &str, keep_alive: u16) -> Vec<u8> {
    let mut connect = connect_packet(version, client_id);
    connect.keep_alive = keep_alive;
    encoded(&Packet::Connect(connect), version)
}

/// Writes `bytes`, ignoring an error: the gateway may close before reading them all.
async fn write_ignoring_errors(stream: &mut TcpStream, bytes: &[u8]) {
    let _ = tokio::time::timeout(PEER_WAIT, stream.write_all(bytes)).await;
}

/// Reads what the gateway sends until it closes the connection; panics after [`PEER_WAIT`].
async fn until_closed(stream: &mut TcpStream, what: &str) -> BytesMut {
    let mut received = BytesMut::new();
    let read = async {
        loop {
            match stream.read_buf(&mut received).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    if tokio::time::timeout(PEER_WAIT, read).await.is_err() {
        panic!("{what}: the gateway did not close the connection within {PEER_WAIT:?}");
    }
    received
}

/// The packets in `bytes`.
fn packets_in(mut bytes: BytesMut, version: ProtocolVersion) -> Vec<Packet> {
    let mut packets = Vec::new();
    while let Some(packet) = decode(&mut bytes, version, usize::MAX).expect("the gateway's bytes") {
        packets.push(packet);
    }
    packets
}

/// Reads until one whole packet arrived.
async fn read_packet(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    version: ProtocolVersion,
) -> Packet {
    let read = async {
        loop {
            if let Some(packet) = decode(buf, version, usize::MAX).expect("the gateway's bytes") {
                return packet;
            }
            let count = stream.read_buf(buf).await.expect("read");
            assert!(count > 0, "the gateway closed the connection");
        }
    };
    tokio::time::timeout(PEER_WAIT, read)
        .await
        .expect("a packet in time")
}

/// A TCP connection with its CONNECT accepted.
async fn connected_tcp(
    endpoints: Endpoints,
    version: ProtocolVersion,
    client_id: &str,
    keep_alive: u16,
) -> (TcpStream, SocketAddr) {
    let (mut stream, local) = open_tcp(endpoints).await;
    stream
        .write_all(&connect_bytes(version, client_id, keep_alive))
        .await
        .expect("send CONNECT");
    match read_packet(&mut stream, &mut BytesMut::new(), version).await {
        Packet::ConnAck(connack) => assert_eq!(connack.reason_code, ReasonCode::Success),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    (stream, local)
}

/// Expects the gateway's last words on `stream` to be DISCONNECT `reason` (5.0), then the close.
async fn expect_disconnect(stream: &mut TcpStream, what: &str, reason: ReasonCode) {
    let packets = packets_in(until_closed(stream, what).await, V5);
    match packets.last() {
        Some(Packet::Disconnect(disconnect)) => {
            assert_eq!(disconnect.reason_code, reason, "{what}: {disconnect:?}")
        }
        other => panic!("{what}: expected DISCONNECT {reason:?}, got {other:?}"),
    }
}

fn random_bytes(seed: u64, count: usize) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..count).map(|_| rng.r#gen()).collect()
}

/// A PUBLISH whose remaining length claims `size` bytes, and that many bytes after it.
fn oversized_publish(size: usize) -> Vec<u8> {
    let mut packet = vec![0x30];
    let mut length = size;
    loop {
        let mut byte = (length % 128) as u8;
        length /= 128;
        if length > 0 {
            byte |= 0x80;
        }
        packet.push(byte);
        if length == 0 {
            break;
        }
    }
    packet.extend_from_slice(&[0, 1, b'x']);
    packet.resize(packet.len() + size - 3, b'x');
    packet
}

/// A SUBSCRIBE (5.0) of one filter, written by hand since the filter may be invalid.
fn raw_subscribe(filter: &[u8]) -> Vec<u8> {
    let mut body = vec![0, 1, 0];
    body.extend_from_slice(&(filter.len() as u16).to_be_bytes());
    body.extend_from_slice(filter);
    body.push(1);
    let mut packet = vec![0x82, body.len() as u8];
    packet.extend(body);
    packet
}

/// Closes with a reset (`SO_LINGER` 0) rather than a FIN. Linux keeps what arrived before the
/// reset readable (even on a connection not yet accepted), so the gateway always reads those
/// bytes first, then the reset.
fn reset(stream: TcpStream) {
    stream.set_zero_linger().expect("SO_LINGER 0");
    drop(stream);
}

async fn random_before_connect(endpoints: Endpoints, seed: u64) -> Peer {
    let what = "random bytes before CONNECT";
    let (mut stream, local) = open_tcp(endpoints).await;
    write_ignoring_errors(&mut stream, &random_bytes(seed, 4096)).await;
    until_closed(&mut stream, what).await;
    Peer::bad(what, local)
}

async fn random_after_connect(endpoints: Endpoints, id: String, seed: u64) -> Peer {
    let what = "random bytes after CONNECT";
    let (mut stream, _) = connected_tcp(endpoints, V5, &id, 2).await;
    write_ignoring_errors(&mut stream, &random_bytes(seed, 4096)).await;
    until_closed(&mut stream, what).await;
    Peer::bad(what, id)
}

async fn half_connect_then_end(endpoints: Endpoints) -> Peer {
    let what = "half a CONNECT, then the end of the stream";
    let (mut stream, local) = open_tcp(endpoints).await;
    let connect = connect_bytes(V311, "never-finished", 30);
    stream
        .write_all(&connect[..connect.len() / 2])
        .await
        .expect("write");
    stream.shutdown().await.expect("FIN");
    until_closed(&mut stream, what).await;
    Peer::bad(what, local)
}

async fn truncated_publish_then_end(endpoints: Endpoints, id: String) -> Peer {
    let what = "a truncated PUBLISH, then the end of the stream";
    let (mut stream, local) = connected_tcp(endpoints, V311, &id, 30).await;
    let mut publish = publish_packet(
        "chaos/truncated",
        numbered_payload(7),
        QoS::AtLeastOnce,
        false,
    );
    publish.packet_id = Some(1);
    let mut publish = encoded(&Packet::Publish(publish), V311);
    publish.truncate(publish.len() - 5);
    stream.write_all(&publish).await.expect("write");
    stream.shutdown().await.expect("FIN");
    until_closed(&mut stream, what).await;
    Peer::bad(what, local)
}

async fn oversized_publish_after_connect(endpoints: Endpoints, id: String) -> Peer {
    let what = "a PUBLISH beyond --max-packet-size";
    let (mut stream, _) = connected_tcp(endpoints, V5, &id, 30).await;
    let (mut reader, mut writer) = stream.split();
    let big = oversized_publish(2 * MAX_PACKET_SIZE);
    let write = async {
        let _ = tokio::time::timeout(PEER_WAIT, writer.write_all(&big)).await;
    };
    let read = async {
        let mut received = BytesMut::new();
        let _ = tokio::time::timeout(PEER_WAIT, async {
            while let Ok(1..) = reader.read_buf(&mut received).await {}
        })
        .await;
        received
    };
    let ((), received) = tokio::join!(write, read);
    match packets_in(received, V5).last() {
        Some(Packet::Disconnect(disconnect)) => {
            assert_eq!(disconnect.reason_code, ReasonCode::PacketTooLarge)
        }
        other => panic!("{what}: expected DISCONNECT 0x95, got {other:?}"),
    }
    Peer::bad(what, id)
}

async fn oversized_connect(endpoints: Endpoints) -> Peer {
    let what = "a CONNECT beyond --max-packet-size";
    let (mut stream, local) = open_tcp(endpoints).await;
    let mut big = oversized_publish(2 * MAX_PACKET_SIZE);
    big[0] = 0x10;
    write_ignoring_errors(&mut stream, &big).await;
    until_closed(&mut stream, what).await;
    Peer::bad(what, local)
}

async fn publish_before_connect(endpoints: Endpoints) -> Peer {
    let what = "PUBLISH before CONNECT";
    let (mut stream, local) = open_tcp(endpoints).await;
    let publish = publish_packet(
        "chaos/stream/1",
        numbered_payload(0),
        QoS::AtMostOnce,
        false,
    );
    write_ignoring_errors(&mut stream, &encoded(&Packet::Publish(publish), V5)).await;
    let received = until_closed(&mut stream, what).await;
    assert!(received.is_empty(), "{what}: answered {received:?}");
    Peer::bad(what, local)
}

async fn second_connect(endpoints: Endpoints, id: String) -> Peer {
    let what = "a second CONNECT";
    let (mut stream, _) = connected_tcp(endpoints, V5, &id, 30).await;
    write_ignoring_errors(&mut stream, &connect_bytes(V5, &id, 30)).await;
    expect_disconnect(&mut stream, what, ReasonCode::ProtocolError).await;
    Peer::bad(what, id)
}

async fn pubrel_for_unknown_ids(endpoints: Endpoints, id: String) -> Peer {
    let what = "PUBREL for unknown packet ids";
    let (mut stream, _) = connected_tcp(endpoints, V5, &id, 30).await;
    let mut releases = Vec::new();
    for packet_id in 1..=200 {
        releases.extend(encoded(&Packet::PubRel(PubAckPacket::new(packet_id)), V5));
    }
    stream.write_all(&releases).await.expect("write");
    // Spec 4.3.3: a PUBREL for an identifier the server does not hold is completed anyway,
    // 5.0 saying why (0x92); nothing to end the connection for.
    let mut buf = BytesMut::new();
    for packet_id in 1..=200 {
        match read_packet(&mut stream, &mut buf, V5).await {
            Packet::PubComp(complete) => {
                assert_eq!(complete.packet_id, packet_id);
                assert_eq!(
                    complete.reason_code,
                    ReasonCode::PacketIdentifierNotFound,
                    "{complete:?}"
                );
            }
            other => panic!("{what}: expected PUBCOMP, got {other:?}"),
        }
    }
    let disconnect = Packet::Disconnect(DisconnectPacket {
        reason_code: ReasonCode::NORMAL_DISCONNECTION,
        properties: Properties::default(),
    });
    stream
        .write_all(&encoded(&disconnect, V5))
        .await
        .expect("write");
    until_closed(&mut stream, what).await;
    Peer::legal(what, id)
}

async fn subscribe_bad_filter(endpoints: Endpoints, id: String, filter: &'static [u8]) -> Peer {
    let what = "SUBSCRIBE with a bad filter";
    let (mut stream, _) = connected_tcp(endpoints, V5, &id, 30).await;
    write_ignoring_errors(&mut stream, &raw_subscribe(filter)).await;
    expect_disconnect(&mut stream, what, ReasonCode::MalformedPacket).await;
    Peer::bad(what, id)
}

async fn silent_tcp(endpoints: Endpoints) -> Peer {
    let what = "a TCP connection that sends nothing";
    let (mut stream, local) = open_tcp(endpoints).await;
    until_closed(&mut stream, what).await;
    Peer::bad(what, local)
}

async fn half_connect_then_silence(endpoints: Endpoints) -> Peer {
    let what = "half a CONNECT, then silence";
    let (mut stream, local) = open_tcp(endpoints).await;
    let connect = connect_bytes(V5, "half-open", 30);
    stream
        .write_all(&connect[..connect.len() / 2])
        .await
        .expect("write");
    until_closed(&mut stream, what).await;
    Peer::bad(what, local)
}

async fn connect_then_silence(endpoints: Endpoints, id: String) -> Peer {
    let what = "CONNECT with keep alive 1 s, then silence";
    let (mut stream, _) = connected_tcp(endpoints, V5, &id, 1).await;
    expect_disconnect(&mut stream, what, ReasonCode::KeepAliveTimeout).await;
    Peer::bad(what, id)
}

async fn reset_inside_connect(endpoints: Endpoints) -> Peer {
    let (mut stream, local) = open_tcp(endpoints).await;
    let connect = connect_bytes(V5, "reset-inside", 30);
    stream.write_all(&connect[..5]).await.expect("write");
    reset(stream);
    Peer::bad("a reset inside a CONNECT", local)
}

async fn reset_inside_publish(endpoints: Endpoints, id: String) -> Peer {
    let (mut stream, local) = connected_tcp(endpoints, V5, &id, 30).await;
    let mut publish = publish_packet("chaos/reset", numbered_payload(1), QoS::AtLeastOnce, false);
    publish.packet_id = Some(1);
    let publish = encoded(&Packet::Publish(publish), V5);
    stream.write_all(&publish[..10]).await.expect("write");
    reset(stream);
    Peer::bad("a reset inside a PUBLISH", local)
}

async fn reset_between_packets(endpoints: Endpoints, id: String) -> Peer {
    // A connection lost between packets is not bad input: a network can do that to anyone.
    let (stream, _) = connected_tcp(endpoints, V5, &id, 30).await;
    reset(stream);
    Peer::legal("a reset between packets", id)
}

// Raw WebSocket peers: frames written by hand over TCP.

/// The mask of every frame sent (clients must mask; the value does not matter).
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xa;

/// A masked frame's header for a payload of `length` bytes.
fn frame_header(opcode: u8, fin: bool, length: usize) -> Vec<u8> {
    let mut header = vec![if fin { 0x80 } else { 0 } | opcode];
    if length < 126 {
        header.push(0x80 | length as u8);
    } else if length <= 0xffff {
        header.push(0x80 | 126);
        header.extend_from_slice(&(length as u16).to_be_bytes());
    } else {
        header.push(0x80 | 127);
        header.extend_from_slice(&(length as u64).to_be_bytes());
    }
    header.extend_from_slice(&MASK);
    header
}

fn frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut frame = frame_header(opcode, fin, payload.len());
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    frame
}

/// A WebSocket client over a plain `TcpStream`.
struct RawWebSocket {
    stream: TcpStream,
    local: SocketAddr,
    /// Bytes read from the socket, not yet parsed into frames.
    read: BytesMut,
    /// The payloads of binary messages, not yet decoded into packets.
    mqtt: BytesMut,
    pongs: usize,
}

/// Sends an upgrade request for `/mqtt`, offering `protocol` if any; returns the socket and
/// the status of the answer.
async fn upgrade(endpoints: Endpoints, protocol: Option<&str>) -> (RawWebSocket, u16) {
    let stream = tokio::time::timeout(PEER_WAIT, TcpStream::connect(endpoints.http))
        .await
        .expect("TCP connect in time")
        .expect("TCP connect");
    stream.set_nodelay(true).expect("nodelay");
    let local = stream.local_addr().expect("local address");
    let mut socket = RawWebSocket {
        stream,
        local,
        read: BytesMut::new(),
        mqtt: BytesMut::new(),
        pongs: 0,
    };
    let protocol = protocol
        .map(|protocol| format!("Sec-WebSocket-Protocol: {protocol}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "GET /mqtt HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         {protocol}\r\n",
        endpoints.http
    );
    socket
        .stream
        .write_all(request.as_bytes())
        .await
        .expect("upgrade request");
    let head_end = tokio::time::timeout(PEER_WAIT, async {
        loop {
            if let Some(at) = socket.read.windows(4).position(|w| w == b"\r\n\r\n") {
                return at + 4;
            }
            let count = socket
                .stream
                .read_buf(&mut socket.read)
                .await
                .expect("read");
            assert!(count > 0, "closed before the upgrade answer");
        }
    })
    .await
    .expect("an upgrade answer in time");
    let head = String::from_utf8_lossy(&socket.read[..head_end]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {head}"));
    socket.read.advance(head_end);
    (socket, status)
}

impl RawWebSocket {
    /// An upgraded WebSocket (subprotocol `mqtt`).
    async fn open(endpoints: Endpoints) -> RawWebSocket {
        let (socket, status) = upgrade(endpoints, Some("mqtt")).await;
        assert_eq!(status, 101, "upgrade refused");
        socket
    }

    /// An upgraded WebSocket whose CONNECT was accepted.
    async fn connected(endpoints: Endpoints, client_id: &str) -> RawWebSocket {
        let mut socket = RawWebSocket::open(endpoints).await;
        socket
            .send(&frame(OP_BINARY, true, &connect_bytes(V5, client_id, 30)))
            .await;
        match socket.next_packet().await {
            Some(Packet::ConnAck(connack)) => assert_eq!(connack.reason_code, ReasonCode::Success),
            other => panic!("expected CONNACK, got {other:?}"),
        }
        socket
    }

    async fn send(&mut self, bytes: &[u8]) {
        tokio::time::timeout(PEER_WAIT, self.stream.write_all(bytes))
            .await
            .expect("write in time")
            .expect("write");
    }

    /// The next frame from the gateway (opcode, payload), or `None` when the socket closes.
    async fn next_frame(&mut self) -> Option<(u8, Bytes)> {
        let read = async {
            loop {
                if let Some(frame) = self.parse_frame() {
                    return Some(frame);
                }
                match self.stream.read_buf(&mut self.read).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        };
        tokio::time::timeout(PEER_WAIT, read)
            .await
            .expect("a frame or the close in time")
    }

    fn parse_frame(&mut self) -> Option<(u8, Bytes)> {
        let buf = &self.read[..];
        if buf.len() < 2 {
            return None;
        }
        assert_eq!(buf[1] & 0x80, 0, "the server masked a frame");
        let (length, header) = match buf[1] & 0x7f {
            126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
            127 if buf.len() >= 10 => {
                let bytes: [u8; 8] = buf[2..10].try_into().expect("8 bytes");
                (u64::from_be_bytes(bytes) as usize, 10)
            }
            126 | 127 => return None,
            length => (length as usize, 2),
        };
        if buf.len() < header + length {
            return None;
        }
        let opcode = buf[0] & 0x0f;
        self.read.advance(header);
        Some((opcode, self.read.split_to(length).freeze()))
    }

    /// The next MQTT packet (pongs counted, pings skipped), or `None` at a close.
    async fn next_packet(&mut self) -> Option<Packet> {
        loop {
            if let Some(packet) = decode(&mut self.mqtt, V5, usize::MAX).expect("packet") {
                return Some(packet);
            }
            match self.next_frame().await? {
                (OP_BINARY | OP_CONTINUATION, payload) => self.mqtt.extend_from_slice(&payload),
                (OP_PONG, _) => self.pongs += 1,
                (OP_PING, _) => {}
                (OP_CLOSE, _) => return None,
                (opcode, _) => panic!("unexpected opcode {opcode}"),
            }
        }
    }

    /// Reads until the gateway closes; returns the close frame's code, if it sent one.
    async fn until_closed(&mut self) -> Option<u16> {
        loop {
            match self.next_frame().await {
                None => return None,
                Some((OP_CLOSE, payload)) if payload.len() >= 2 => {
                    return Some(u16::from_be_bytes([payload[0], payload[1]]));
                }
                Some((OP_CLOSE, _)) => return None,
                Some(_) => {}
            }
        }
    }
}

async fn upgrade_without_subprotocol(endpoints: Endpoints) -> Peer {
    // DESIGN.md: `/mqtt` accepts `mqtt` and `mqttv3.1`; an upgrade offering neither is refused.
    let (socket, status) = upgrade(endpoints, None).await;
    assert_eq!(status, 400, "an upgrade without subprotocol");
    Peer::bad("an upgrade without subprotocol", socket.local)
}

async fn text_message(endpoints: Endpoints, id: String) -> Peer {
    let mut socket = RawWebSocket::connected(endpoints, &id).await;
    socket.send(&frame(OP_TEXT, true, b"not MQTT")).await;
    assert_eq!(
        socket.until_closed().await,
        Some(1003),
        "close code for text"
    );
    Peer::bad("a text message", socket.local)
}

async fn huge_frame(endpoints: Endpoints, id: String) -> Peer {
    let mut socket = RawWebSocket::connected(endpoints, &id).await;
    let length = 16 << 20;
    let header = frame_header(OP_BINARY, true, length);
    let (mut reader, mut writer) = socket.stream.split();
    let write = async {
        let _ = tokio::time::timeout(PEER_WAIT, async {
            writer.write_all(&header).await?;
            let chunk = vec![0u8; 64 << 10];
            for _ in 0..length / chunk.len() {
                writer.write_all(&chunk).await?;
            }
            std::io::Result::Ok(())
        })
        .await;
    };
    let read = async {
        let mut sink = Vec::new();
        tokio::time::timeout(PEER_WAIT, reader.read_to_end(&mut sink))
            .await
            .is_ok()
    };
    let ((), closed) = tokio::join!(write, read);
    assert!(closed, "a 16 MiB frame: the gateway did not close");
    Peer::bad("a 16 MiB frame", socket.local)
}

async fn random_after_upgrade(endpoints: Endpoints, seed: u64) -> Peer {
    let mut socket = RawWebSocket::open(endpoints).await;
    let _ = socket.stream.write_all(&random_bytes(seed, 4096)).await;
    socket.until_closed().await;
    Peer::bad("random bytes instead of frames", socket.local)
}

async fn garbage_in_binary_message(endpoints: Endpoints, seed: u64) -> Peer {
    let mut socket = RawWebSocket::open(endpoints).await;
    let mut garbage = random_bytes(seed, 512);
    // A reserved packet type, so that the garbage cannot pass for a CONNECT.
    garbage[0] = 0x00;
    socket.send(&frame(OP_BINARY, true, &garbage)).await;
    socket.until_closed().await;
    Peer::bad("garbage in a binary message", socket.local)
}

async fn silent_websocket(endpoints: Endpoints) -> Peer {
    let mut socket = RawWebSocket::open(endpoints).await;
    socket.until_closed().await;
    Peer::bad("a WebSocket that sends nothing", socket.local)
}

async fn fragmented_messages(endpoints: Endpoints, id: String) -> Peer {
    // RFC 6455 5.4: a message may be fragmented, and control frames may come between its
    // fragments; a packet split across continuation frames must arrive whole.
    let topic = format!("chaos/fragments/{id}");
    let mut socket = RawWebSocket::connected(endpoints, &id).await;
    socket
        .send(&frame(OP_BINARY, true, &raw_subscribe(topic.as_bytes())))
        .await;
    assert!(matches!(
        socket.next_packet().await,
        Some(Packet::SubAck(_))
    ));
    const COUNT: u16 = 100;
    for number in 0..COUNT {
        let mut publish = publish_packet(
            &topic,
            numbered_payload(number.into()),
            QoS::AtLeastOnce,
            false,
        );
        publish.packet_id = Some(number + 1);
        let bytes = encoded(&Packet::Publish(publish), V5);
        let (first, rest) = bytes.split_at(3);
        let (middle, last) = rest.split_at(rest.len() / 2);
        let mut frames = frame(OP_BINARY, false, first);
        frames.extend(frame(OP_PING, true, b"between fragments"));
        frames.extend(frame(OP_CONTINUATION, false, middle));
        frames.extend(frame(OP_CONTINUATION, true, last));
        socket.send(&frames).await;
    }
    let (mut acknowledged, mut received) = (0, 0);
    while acknowledged < COUNT || received < COUNT {
        match socket.next_packet().await {
            Some(Packet::PubAck(ack)) => {
                assert_eq!(ack.packet_id, acknowledged + 1);
                acknowledged += 1;
            }
            Some(Packet::Publish(publish)) => {
                assert_eq!(payload_number(&publish.payload), u32::from(received));
                let ack = PubAckPacket::new(publish.packet_id.expect("QoS 1"));
                socket
                    .send(&frame(OP_BINARY, true, &encoded(&Packet::PubAck(ack), V5)))
                    .await;
                received += 1;
            }
            other => panic!("fragmented messages: got {other:?}"),
        }
    }
    socket
        .send(&frame(OP_CLOSE, true, &1000u16.to_be_bytes()))
        .await;
    socket.until_closed().await;
    Peer::legal("fragmented messages", id)
}

async fn ping_flood(endpoints: Endpoints, id: String) -> Peer {
    let mut socket = RawWebSocket::connected(endpoints, &id).await;
    let ping = frame(OP_PING, true, &[b'p'; 125]);
    let flood: Vec<u8> = ping
        .iter()
        .copied()
        .cycle()
        .take(ping.len() * 2000)
        .collect();
    socket.send(&flood).await;
    socket
        .send(&frame(OP_BINARY, true, &encoded(&Packet::PingReq, V5)))
        .await;
    assert_eq!(socket.next_packet().await, Some(Packet::PingResp));
    assert!(socket.pongs > 0, "no pong");
    socket
        .send(&frame(OP_CLOSE, true, &1000u16.to_be_bytes()))
        .await;
    socket.until_closed().await;
    Peer::legal("a ping flood", id)
}

/// One round of every attack at once; returns the peers with what the log should say.
async fn attack_round(endpoints: Endpoints, round: u32) -> Vec<Peer> {
    let id = |name: &str| format!("chaos-{round}-{name}");
    let seed = u64::from(round) * 100;
    let mut attacks = JoinSet::new();
    attacks.spawn(random_before_connect(endpoints, seed + 1));
    attacks.spawn(random_before_connect(endpoints, seed + 2));
    attacks.spawn(random_after_connect(endpoints, id("garbage"), seed + 3));
    attacks.spawn(half_connect_then_end(endpoints));
    attacks.spawn(truncated_publish_then_end(endpoints, id("truncated")));
    attacks.spawn(oversized_publish_after_connect(endpoints, id("oversized")));
    attacks.spawn(oversized_connect(endpoints));
    attacks.spawn(publish_before_connect(endpoints));
    attacks.spawn(second_connect(endpoints, id("second")));
    attacks.spawn(pubrel_for_unknown_ids(endpoints, id("pubrel")));
    attacks.spawn(subscribe_bad_filter(endpoints, id("midhash"), b"chaos/#/x"));
    attacks.spawn(subscribe_bad_filter(endpoints, id("emptyfilter"), b""));
    attacks.spawn(silent_tcp(endpoints));
    attacks.spawn(half_connect_then_silence(endpoints));
    attacks.spawn(connect_then_silence(endpoints, id("silent")));
    attacks.spawn(reset_inside_connect(endpoints));
    attacks.spawn(reset_inside_publish(endpoints, id("resetpublish")));
    attacks.spawn(reset_between_packets(endpoints, id("reset")));
    attacks.spawn(upgrade_without_subprotocol(endpoints));
    attacks.spawn(text_message(endpoints, id("text")));
    attacks.spawn(huge_frame(endpoints, id("huge")));
    attacks.spawn(random_after_upgrade(endpoints, seed + 4));
    attacks.spawn(garbage_in_binary_message(endpoints, seed + 5));
    attacks.spawn(silent_websocket(endpoints));
    attacks.spawn(fragmented_messages(endpoints, id("fragments")));
    attacks.spawn(ping_flood(endpoints, id("pings")));
    attacks.join_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_survive_attacks_with_one_log_line_per_bad_peer_and_no_memory_growth() {
    let started = std::time::Instant::now();
    let mut gateway = GatewayProcess::start();
    let endpoints = gateway.endpoints;

    // Warm up with the same streams, so that what the allocator keeps from normal work is in
    // the baseline.
    both_streams(endpoints, "warmup").await;
    gateway.wait_for_no_connections().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let baseline = gateway.rss_kib();

    // A round of attacks starts every ROUND_INTERVAL while the streams run (at least
    // MIN_ROUNDS, at most MAX_ROUNDS), so rounds overlap each other and the streams.
    let streams = tokio::spawn(both_streams(endpoints, "stream"));
    let mut rounds = JoinSet::new();
    let mut round = 0;
    while round < MAX_ROUNDS && (round < MIN_ROUNDS || !streams.is_finished()) {
        rounds.spawn(attack_round(endpoints, round));
        round += 1;
        tokio::time::sleep(ROUND_INTERVAL).await;
    }
    let peers: Vec<Peer> = rounds.join_all().await.into_iter().flatten().collect();
    streams
        .await
        .expect("both streams complete, whole and in order");

    gateway.wait_for_no_connections().await;
    assert!(gateway.binary.is_running(), "the gateway exited");
    let deadline = Instant::now() + PEER_WAIT;
    let limit = (baseline as f64 * (1.0 + RSS_GROWTH_ALLOWED)) as u64;
    let mut after = gateway.rss_kib();
    while after > limit && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        after = gateway.rss_kib();
    }
    eprintln!(
        "chaos: {round} rounds of {} peers, RSS {baseline} KiB warm, {after} KiB after, {:?} in all",
        peers.len() / round as usize,
        started.elapsed()
    );

    let lines = gateway.lines();
    let log = lines.join("\n");
    let mut wrong = Vec::new();
    for peer in &peers {
        let naming: Vec<&String> = lines
            .iter()
            .filter(|line| mentions(line, &peer.marker))
            .collect();
        if naming.len() != peer.lines {
            wrong.push(format!(
                "{} ({}): {} lines, expected {}: {naming:#?}",
                peer.what,
                peer.marker,
                naming.len(),
                peer.lines
            ));
        }
    }
    assert!(wrong.is_empty(), "{}\nlog:\n{log}", wrong.join("\n"));
    assert!(
        !lines
            .iter()
            .any(|line| line.contains(" ERROR ") || line.contains("panicked")),
        "errors in the log:\n{log}"
    );
    let warnings = lines.iter().filter(|line| line.contains(" WARN ")).count();
    let bad: usize = peers.iter().map(|peer| peer.lines).sum();
    assert_eq!(
        warnings, bad,
        "one warning per bad peer and no other:\n{log}"
    );
    assert!(
        after <= limit,
        "resident memory grew from {baseline} KiB to {after} KiB (more than {:.0} %)",
        RSS_GROWTH_ALLOWED * 100.0
    );
}
