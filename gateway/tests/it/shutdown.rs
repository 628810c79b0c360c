//! Loopback tests of shutdown: `Gateway::shutdown` tells 5.0 clients why (DISCONNECT 0x8B),
//! closes everyone else and returns within the grace period; and the real binary, stopped with
//! SIGTERM, exits 0 after logging each misbehaving connection exactly once.

use crate::common::{TestClient, TestGateway, WAIT, connect_packet, publish_packet};
use mqtt_codec::{Packet, ProtocolVersion, QoS, ReasonCode};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;
use tokio::time::Instant;

/// 5.0 [MQTT-3.14.2-1] with reason 0x8B (Server shutting down), spec 4.13.2: at shutdown every
/// 5.0 client gets DISCONNECT 0x8B and is closed, 3.1.1 clients (which have no server DISCONNECT)
/// are closed, connections still waiting to send CONNECT are closed, and `shutdown` returns Ok
/// well within 5 s. New connections are refused afterwards.
#[tokio::test]
async fn mqtt_3_14_2_1_shutdown_disconnects_v5_with_0x8b() {
    let gateway = TestGateway::start().await;
    let addr = gateway.addr;
    let mut v5 = TestClient::v5(addr, "modern").await;
    v5.subscribe("busy/#", QoS::AtLeastOnce).await;
    let mut v311 = TestClient::v311(addr, "classic").await;
    v311.subscribe("busy/#", QoS::AtLeastOnce).await;
    let mut persistent = connect_packet(ProtocolVersion::V5, "persistent");
    persistent.clean_start = false;
    persistent.properties.session_expiry_interval = Some(600);
    let (mut persistent, _) = TestClient::connect_accepted(addr, persistent).await;
    let mut idle = TestClient::open(addr).await;
    // Make sure the gateway has accepted the idle connection before shutting down.
    tokio::time::sleep(Duration::from_millis(100)).await;

    let elapsed = gateway.shutdown(Duration::from_secs(5)).await;
    assert!(
        elapsed < Duration::from_secs(2),
        "shutdown took {elapsed:?}"
    );

    v5.expect_disconnect(ReasonCode::ServerShuttingDown).await;
    v5.expect_closed().await;
    persistent
        .expect_disconnect(ReasonCode::ServerShuttingDown)
        .await;
    persistent.expect_closed().await;
    v311.expect_closed().await;
    idle.expect_closed().await;

    let refused = tokio::time::timeout(WAIT, tokio::net::TcpStream::connect(addr)).await;
    assert!(
        matches!(refused, Ok(Err(_))),
        "the listener is closed after shutdown"
    );
}

/// The gateway binary with its stderr collected line by line.
struct RunningBinary {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    addr: SocketAddr,
    data_dir: std::path::PathBuf,
}

impl RunningBinary {
    fn start(extra: &[&str]) -> RunningBinary {
        let data_dir = crate::common::test_config().data_dir;
        let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args([
                "--tcp",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(&data_dir)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("gateway binary starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (address_sender, address_receiver) = mpsc::channel();
        let collected = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("listening mqtt ").nth(1) {
                    let _ = address_sender.send(rest.trim().to_string());
                }
                collected.lock().expect("lines lock").push(line);
            }
        });
        let addr = match address_receiver.recv_timeout(Duration::from_secs(10)) {
            Ok(addr) => addr.parse().expect("listening address"),
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "no `listening mqtt` line: {:?}",
                    lines.lock().expect("lines lock")
                );
            }
        };
        RunningBinary {
            child,
            lines,
            addr,
            data_dir,
        }
    }

    /// Sends SIGTERM and waits (at most `limit`) for the process to exit.
    fn terminate(&mut self, limit: Duration) -> (ExitStatus, Duration) {
        let started = std::time::Instant::now();
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM failed");
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the gateway") {
                return (status, started.elapsed());
            }
            if started.elapsed() > limit {
                let _ = self.child.kill();
                panic!("the gateway did not exit within {limit:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("lines lock").clone()
    }
}

impl Drop for RunningBinary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// The binary logs every misbehaving connection with exactly one warning line (no storm, no
/// silence), keeps serving, and on SIGTERM sends DISCONNECT 0x8B and exits 0 within 5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_logs_each_bad_connection_once_and_exits_cleanly_on_sigterm() {
    let mut binary = RunningBinary::start(&["--connect-timeout", "1"]);
    let addr = binary.addr;
    let mut bystander = TestClient::v5(addr, "bystander").await;
    bystander.subscribe("ok/#", QoS::AtMostOnce).await;

    // Each case, with the text that identifies its connection in the log.
    let mut cases: Vec<(&str, String)> = Vec::new();

    let mut client = TestClient::open(addr).await;
    client.send_raw(b"\x4fgarbage before connect").await;
    client.expect_closed().await;
    cases.push(("garbage before CONNECT", client.local_addr.to_string()));

    let mut client = TestClient::open(addr).await;
    client.send(Packet::PingReq).await;
    client.expect_closed().await;
    cases.push(("packet before CONNECT", client.local_addr.to_string()));

    let mut client = TestClient::v5(addr, "bad-second-connect").await;
    client
        .send(Packet::Connect(connect_packet(
            ProtocolVersion::V5,
            "again",
        )))
        .await;
    client.expect_refused(ReasonCode::ProtocolError).await;
    cases.push(("second CONNECT", "bad-second-connect".into()));

    let mut client = TestClient::v311(addr, "bad-wildcard").await;
    client
        .send(Packet::Publish(publish_packet(
            "ok/+",
            "x",
            QoS::AtMostOnce,
            false,
        )))
        .await;
    client.expect_closed().await;
    cases.push(("wildcard topic", "bad-wildcard".into()));

    let mut client = TestClient::v5(addr, "bad-utf8").await;
    client.send_raw(b"\x30\x07\x00\x03ok\xff\x00x").await;
    client.expect_refused(ReasonCode::MalformedPacket).await;
    cases.push(("invalid UTF-8", "bad-utf8".into()));

    let mut client = TestClient::v5(addr, "bad-garbage").await;
    client.send_raw(b"\x00\x00").await;
    client.expect_refused(ReasonCode::MalformedPacket).await;
    cases.push(("reserved packet type", "bad-garbage".into()));

    let started = Instant::now();
    let mut client = TestClient::open(addr).await;
    client.expect_closed_within(Duration::from_secs(4)).await;
    assert!(started.elapsed() >= Duration::from_millis(900));
    cases.push(("no CONNECT in time", client.local_addr.to_string()));

    // Everyone else was served throughout.
    let mut publisher = TestClient::v311(addr, "good-publisher").await;
    publisher.publish("ok/still", "fine", QoS::AtMostOnce).await;
    assert_eq!(bystander.expect_message().await.payload, "fine");

    let (status, took) = tokio::task::block_in_place(|| binary.terminate(Duration::from_secs(6)));
    assert!(status.success(), "exit status {status}");
    assert!(took < Duration::from_secs(5), "exit took {took:?}");
    bystander
        .expect_disconnect(ReasonCode::ServerShuttingDown)
        .await;
    bystander.expect_closed().await;
    publisher.expect_closed().await;

    let lines = binary.lines();
    let warnings: Vec<&String> = lines.iter().filter(|line| line.contains("WARN")).collect();
    for (case, marker) in &cases {
        let matching: Vec<&&String> = warnings
            .iter()
            .filter(|line| line.contains(marker.as_str()))
            .collect();
        assert_eq!(
            matching.len(),
            1,
            "{case}: expected one warning mentioning {marker}, got {matching:#?}\nlog:\n{}",
            lines.join("\n")
        );
    }
    assert_eq!(
        warnings.len(),
        cases.len(),
        "one warning per bad connection and no other:\n{}",
        lines.join("\n")
    );
}
