//! Crowds: what the gateway does when more clients come than it may or can serve, and after a
//! storm of them.
//!
//! - At `--max-connections` a new connection is closed at once (before any MQTT; a WebSocket
//!   upgrade is answered 503), the connected clients are served as before, and once some leave
//!   their slots are taken again.
//! - Out of file descriptors (the real binary, its `RLIMIT_NOFILE` lowered with `prlimit`), the
//!   same: each new connection, MQTT or HTTP, is accepted and closed at once rather than left
//!   waiting in the listen queue, one warning says so per listener, the connected clients are
//!   served, and connections are accepted again once some close.
//! - A storm of 3,000 connection attempts, half of them abandoned mid-handshake in every way a
//!   client can (TCP only, part of a CONNECT, a CONNECT whose CONNACK is never read, a
//!   WebSocket upgrade cut short), the others completing CONNECT and DISCONNECT over TCP and
//!   WebSocket, leaves nothing behind: `/metrics` shows the connections, clients, sessions
//!   and live tasks of before, and the process holds no more file descriptors than before.
//!
//! Counts are in the hundreds or thousands, and every wait is bounded.

use crate::binary::RunningBinary;
use crate::common::{Bystanders, TestClient, TestGateway, WAIT, connect_packet};
use crate::web_support::{Client, encode_packet, metric, scrape, ws_refusal};
use mqtt_codec::{Packet, ProtocolVersion};
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use ProtocolVersion::{V5, V311};

/// How a connection attempt ended.
enum Attempt {
    /// CONNACK received; the client is connected.
    Accepted(TestClient),
    /// The gateway closed the connection without a packet.
    Refused,
}

/// Opens a TCP connection, sends a 3.1.1 CONNECT and waits for the answer: a CONNACK, or the
/// connection closed. A connection left waiting for [`WAIT`] fails the test, since a refused
/// client must be told.
async fn attempt(addr: SocketAddr, client_id: &str) -> Attempt {
    let mut stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
        .await
        .expect("TCP connect timed out")
        .expect("TCP connect");
    let local_addr = stream.local_addr().expect("local address");
    let connect = encode_packet(&Packet::Connect(connect_packet(V311, client_id)), V311);
    // A gateway that closed the connection at once may make this write fail; the read says so.
    let _ = stream.write_all(&connect).await;
    let mut client = TestClient::over(stream, local_addr);
    client.set_version(V311);
    match client.try_packet(WAIT).await {
        Some(Packet::ConnAck(connack)) if !connack.reason_code.is_error() => {
            Attempt::Accepted(client)
        }
        Some(other) => {
            panic!("{client_id}: expected CONNACK or the connection closed, got {other:?}")
        }
        None => {
            // Nothing within WAIT, or closed: only the second passes.
            client.expect_closed_within(Duration::from_millis(10)).await;
            Attempt::Refused
        }
    }
}

/// A connected client, retrying for a few seconds while the gateway still refuses (a slot or a
/// descriptor is given back when the gateway has finished with a closed connection).
async fn attempt_until_accepted(addr: SocketAddr, client_id: &str) -> TestClient {
    let deadline = Instant::now() + 2 * WAIT;
    loop {
        match attempt(addr, client_id).await {
            Attempt::Accepted(client) => return client,
            Attempt::Refused if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Attempt::Refused => panic!("{client_id}: still refused after {:?}", 2 * WAIT),
        }
    }
}

/// At `--max-connections` every new connection is closed at once and a WebSocket upgrade gets
/// 503, the connected clients keep exchanging messages, and once clients leave their slots are
/// taken again (each refusal is counted, and only refusals are).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_reached_and_recovered() {
    const MAXIMUM: usize = 150;
    let gateway = TestGateway::start_with(|config| config.max_connections = MAXIMUM).await;
    let addr = gateway.addr;
    let ws_url = format!("ws://{}/mqtt", gateway.http);
    let mut bystanders = Bystanders::join(addr).await;
    let mut held = Vec::new();
    for index in 0..MAXIMUM - 2 {
        let id = format!("held-{index}");
        let version = if index % 2 == 0 { V311 } else { V5 };
        held.push(TestClient::connect(addr, version, &id).await);
    }

    for index in 0..30 {
        match attempt(addr, &format!("extra-{index}")).await {
            Attempt::Refused => {}
            Attempt::Accepted(_) => panic!("connection {} accepted beyond the maximum", index + 1),
        }
    }
    assert_eq!(ws_refusal(&ws_url, Some("mqtt"), None).await, 503);
    bystanders.check().await;

    // 50 leave, half of them with DISCONNECT, half by dropping the connection.
    for (index, client) in held.drain(..50).enumerate() {
        if index % 2 == 0 {
            client.disconnect().await;
        } else {
            client.drop_connection();
        }
    }
    let deadline = Instant::now() + WAIT;
    loop {
        let text = scrape(gateway.http).await;
        if metric(&text, "mqtt_connections{transport=\"tcp\"}") == (MAXIMUM - 50) as f64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the closed connections are still counted:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for index in 0..50 {
        match attempt(addr, &format!("back-{index}")).await {
            Attempt::Accepted(client) => held.push(client),
            Attempt::Refused => panic!("connection {index} refused below the maximum"),
        }
    }
    assert!(matches!(
        attempt(addr, "one-too-many").await,
        Attempt::Refused
    ));
    bystanders.check().await;
    for client in &mut held {
        client.ping().await;
    }

    let text = scrape(gateway.http).await;
    assert_eq!(
        metric(
            &text,
            "mqtt_connections_refused_at_limit_total{limit=\"max_connections\"}"
        ),
        // 30 over TCP, the WebSocket upgrade, and the last one.
        32.0
    );
    assert_eq!(
        metric(&text, "mqtt_clients_connected"),
        MAXIMUM as f64,
        "{text}"
    );
    gateway.shutdown(WAIT).await;
}

/// The gateway binary, its stderr collected line by line.
struct Binary {
    process: RunningBinary,
    pid: u32,
    mqtt: SocketAddr,
    http: SocketAddr,
}

impl Binary {
    /// Starts the gateway on loopback port 0 with `extra` flags, once it has logged both
    /// listeners.
    fn start(extra: &[&str]) -> Binary {
        let process = RunningBinary::start(extra);
        Binary {
            pid: process.pid(),
            mqtt: process.addr,
            http: process.http,
            process,
        }
    }

    /// File descriptors the process holds now.
    fn descriptors(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid))
            .expect("/proc/PID/fd")
            .count()
    }

    /// Sets the process's soft and hard `RLIMIT_NOFILE`.
    fn limit_descriptors(&self, limit: usize) {
        let status = Command::new("prlimit")
            .arg("--pid")
            .arg(self.pid.to_string())
            .arg(format!("--nofile={limit}:{limit}"))
            .status()
            .expect("prlimit runs (util-linux)");
        assert!(status.success(), "prlimit failed");
    }

    /// The log lines that contain every one of `parts`.
    fn log_lines(&self, parts: &[&str]) -> Vec<String> {
        self.process
            .lines()
            .into_iter()
            .filter(|line| parts.iter().all(|part| line.contains(part)))
            .collect()
    }

    /// Waits (at most [`WAIT`]) until the log has a line with every one of `parts`.
    async fn expect_log_line(&self, parts: &[&str]) {
        let deadline = Instant::now() + WAIT;
        while self.log_lines(parts).is_empty() {
            assert!(
                Instant::now() < deadline,
                "no log line with {parts:?}:\n{}",
                self.process.lines().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// An HTTP request on a fresh connection, where the gateway may close it unanswered: the bytes
/// of the answer, or `None` if it was closed without one. Fails if nothing happens in [`WAIT`].
async fn http_answer(http: SocketAddr, path: &str) -> Option<Vec<u8>> {
    let exchange = async {
        let mut stream = TcpStream::connect(http).await.expect("HTTP connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n");
        let _ = stream.write_all(request.as_bytes()).await;
        let mut answer = Vec::new();
        match stream.read_to_end(&mut answer).await {
            Ok(_) if !answer.is_empty() => Some(answer),
            _ => None,
        }
    };
    tokio::time::timeout(WAIT, exchange)
        .await
        .expect("an HTTP connection left waiting")
}

/// Out of file descriptors, the gateway closes each new connection (MQTT and HTTP) at once,
/// logs one warning per listener for the whole shortage, keeps serving its clients, and
/// accepts again once some connections close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_file_descriptors_refuses_cleanly_and_recovers() {
    // Room for about this many more connections once the limit is set.
    const ROOM: usize = 40;
    let binary = Binary::start(&[]);
    let addr = binary.mqtt;
    let mut bystanders = Bystanders::join(addr).await;
    binary.limit_descriptors(binary.descriptors() + ROOM);

    let mut held = Vec::new();
    let mut refused = 0;
    for index in 0..ROOM + 30 {
        match attempt(addr, &format!("crowd-{index}")).await {
            Attempt::Accepted(client) => held.push(client),
            Attempt::Refused => refused += 1,
        }
    }
    assert!(
        held.len() > ROOM / 2 && refused >= 20,
        "{} held, {refused} refused",
        held.len()
    );
    assert_eq!(http_answer(binary.http, "/healthz").await, None);
    bystanders.check().await;
    for client in &mut held {
        client.ping().await;
    }
    for kind in ["mqtt", "http"] {
        assert_eq!(
            binary
                .log_lines(&[&format!("{kind} 127.0.0.1:"), "out of file descriptors"])
                .len(),
            1,
            "one warning for the {kind} listener:\n{}",
            binary.process.lines().join("\n")
        );
    }

    // Ten leave; after a quiet second (the episode's end), connections are accepted again.
    for client in held.drain(..10) {
        client.drop_connection();
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    held.push(attempt_until_accepted(addr, "back-again").await);
    binary
        .expect_log_line(&["mqtt 127.0.0.1:", "accepting connections again"])
        .await;
    bystanders.check().await;
    let answer = http_answer(binary.http, "/metrics").await.expect("metrics");
    let text = String::from_utf8_lossy(&answer);
    assert_eq!(
        metric(
            &text,
            "mqtt_connections_refused_at_limit_total{limit=\"file_descriptors\"}"
        ),
        (refused + 1) as f64,
        "the MQTT connections and the HTTP one"
    );
}

/// Bytes of the first part of a WebSocket upgrade request for `/mqtt`.
fn upgrade_request(http: SocketAddr) -> String {
    format!(
        "GET /mqtt HTTP/1.1\r\nHost: {http}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: mqtt\r\n\r\n"
    )
}

/// One attempt of the storm, by `index`: even ones are abandoned mid-handshake in four ways,
/// odd ones complete CONNECT/CONNACK and DISCONNECT over TCP (3.1.1, 5.0) or WebSocket.
async fn storm_attempt(index: usize, mqtt: SocketAddr, http: SocketAddr) {
    let id = format!("storm-{index}");
    let connect = |version| encode_packet(&Packet::Connect(connect_packet(version, &id)), version);
    let open = |to| async move { TcpStream::connect(to).await.expect("TCP connect") };
    // Writes may fail where the gateway already saw the peer go; that is the point.
    match index % 8 {
        0 => drop(open(mqtt).await),
        2 => {
            let mut stream = open(mqtt).await;
            let _ = stream.write_all(&connect(V5)[..6]).await;
        }
        4 => {
            let mut stream = open(mqtt).await;
            let _ = stream.write_all(&connect(V311)).await;
        }
        6 => {
            let mut stream = open(http).await;
            let request = upgrade_request(http);
            // Every other one stops halfway through the request, the rest before the answer.
            let cut = if index % 16 == 6 {
                request.len() / 2
            } else {
                request.len()
            };
            let _ = stream.write_all(&request.as_bytes()[..cut]).await;
        }
        1 | 3 => {
            let version = if index % 8 == 1 { V311 } else { V5 };
            TestClient::connect(mqtt, version, &id)
                .await
                .disconnect()
                .await;
        }
        _ => {
            let version = if index % 8 == 5 { V311 } else { V5 };
            let mut client = Client::ws(&format!("ws://{http}/mqtt"), version, &id).await;
            client.send(&Packet::Disconnect(Default::default())).await;
            client.expect_closed().await;
        }
    }
}

/// What must come back to its level after a storm.
#[derive(Debug)]
struct Levels {
    tcp: f64,
    ws: f64,
    clients: f64,
    sessions: f64,
    tasks: f64,
    descriptors: usize,
}

async fn levels(binary: &Binary) -> Levels {
    let text = scrape(binary.http).await;
    Levels {
        tcp: metric(&text, "mqtt_connections{transport=\"tcp\"}"),
        ws: metric(&text, "mqtt_connections{transport=\"ws\"}"),
        clients: metric(&text, "mqtt_clients_connected"),
        sessions: metric(&text, "mqtt_sessions"),
        tasks: metric(&text, "mqtt_tasks"),
        descriptors: {
            // The scrape's own connection may take a moment to be closed on the gateway's side.
            tokio::time::sleep(Duration::from_millis(50)).await;
            binary.descriptors()
        },
    }
}

impl Levels {
    /// Whether these levels are back to `before`'s: the same counts, and no more descriptors.
    fn back_to(&self, before: &Levels) -> bool {
        (self.tcp, self.ws, self.clients, self.sessions, self.tasks)
            == (
                before.tcp,
                before.ws,
                before.clients,
                before.sessions,
                before.tasks,
            )
            && self.descriptors <= before.descriptors
    }
}

/// 3,000 connection attempts from 64 concurrent loops, half abandoned mid-handshake, half
/// completing; afterwards the gateway holds the connections, clients, sessions, tasks and file
/// descriptors it held before, and served its bystanders throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_storm_leaves_nothing_behind() {
    const ATTEMPTS: usize = 3000;
    const LOOPS: usize = 64;
    let binary = Binary::start(&["--connect-timeout", "5"]);
    let mut bystanders = Bystanders::join(binary.mqtt).await;
    let before = levels(&binary).await;
    assert_eq!(
        (before.tcp, before.clients, before.sessions),
        (2.0, 2.0, 2.0)
    );

    let next = Arc::new(AtomicUsize::new(0));
    let loops: Vec<_> = (0..LOOPS)
        .map(|_| {
            let next = next.clone();
            let (mqtt, http) = (binary.mqtt, binary.http);
            tokio::spawn(async move {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= ATTEMPTS {
                        break;
                    }
                    storm_attempt(index, mqtt, http).await;
                }
            })
        })
        .collect();
    let storm = async {
        for handle in loops {
            handle.await.expect("a storm loop failed");
        }
    };
    tokio::time::timeout(Duration::from_secs(60), storm)
        .await
        .expect("the storm took over a minute");
    bystanders.check().await;

    // The abandoned connections end as soon as the gateway sees them go (a read of nothing, a
    // failed write), well within the connect timeout.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let after = levels(&binary).await;
        if after.back_to(&before) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "left behind after the storm: before {before:?}, after {after:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
