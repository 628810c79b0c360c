//! Gateways as nodes of one cluster over a real nats-server (Debian's `nats-server`), started
//! here on a free loopback port: messages published on one node reach subscribers on the
//! others, once each, whatever their QoS, with MQTT's matching rules (wildcards, `$` topics)
//! kept across NATS, and without echoes.
//!
//! A node learns of another's subscription through NATS a moment after the SUBACK, so each
//! test first waits for that: it publishes probes until the subscriber gets one.

use crate::binary::RunningBinary;
use crate::common::*;
use crate::web_support::get;
use gateway::config::ClusterConfig;
use mqtt_codec::QoS;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A nats-server with JetStream on a free loopback port, killed on drop (its store with it).
pub(crate) struct Nats {
    child: Child,
    pub(crate) port: u16,
    store: std::path::PathBuf,
    /// Flags beyond the address, port and JetStream store (kept for a restart).
    extra: Vec<String>,
}

impl Nats {
    pub(crate) fn start() -> Nats {
        Nats::start_with(&[])
    }

    pub(crate) fn start_with(extra: &[&str]) -> Nats {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let store =
            std::env::temp_dir().join(format!("cluster-test-nats-{port}-{}", std::process::id()));
        let extra: Vec<String> = extra.iter().map(|flag| flag.to_string()).collect();
        Nats {
            child: Nats::spawn(port, &store, &extra),
            port,
            store,
            extra,
        }
    }

    fn spawn(port: u16, store: &std::path::Path, extra: &[String]) -> Child {
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(store)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "nats-server runs (Debian's package nats-server; `cargo xtask test` installs it)",
            );
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server listens within 10 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }

    /// Kills the server, as a crash would.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on its port.
    fn start_again(&mut self) {
        self.child = Nats::spawn(self.port, &self.store, &self.extra);
    }

    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

pub(crate) async fn node(nats: &Nats, name: &str) -> TestGateway {
    node_at(&nats.url(), name).await
}

/// A node joining through `url` (which may carry credentials).
async fn node_at(url: &str, name: &str) -> TestGateway {
    TestGateway::start_with(|config| {
        config.cluster = Some(ClusterConfig {
            servers: vec![url.to_owned()],
            node_name: name.to_owned(),
            credentials: None,
            ca: None,
        });
    })
    .await
}

/// Publishes QoS 0 probes to `topic` from `publisher` until `subscriber` receives one (its
/// subscription reached NATS), then waits for the probes still under way and drops them.
pub(crate) async fn await_interest(
    subscriber: &mut TestClient,
    publisher: &mut TestClient,
    topic: &str,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        publisher
            .publish_packet(publish_packet(topic, "probe", QoS::AtMostOnce, false))
            .await;
        if subscriber
            .try_packet(Duration::from_millis(50))
            .await
            .is_some()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "interest in {topic} crossed within 10 s"
        );
    }
    while subscriber
        .try_packet(Duration::from_millis(200))
        .await
        .is_some()
    {}
}

/// The next message that is not a probe of [`await_interest`] (one can still be on its way
/// after the wait on a loaded machine).
pub(crate) async fn next_message(client: &mut TestClient) -> mqtt_codec::PublishPacket {
    loop {
        let message = client.expect_message().await;
        if message.payload.as_ref() != b"probe" {
            return message;
        }
    }
}

#[tokio::test]
async fn messages_from_other_nodes_arrive_once_at_every_qos() {
    let nats = Nats::start();
    let (a, b, c) = (
        node(&nats, "a").await,
        node(&nats, "b").await,
        node(&nats, "c").await,
    );
    let mut subscriber = TestClient::v5(a.addr, "sub-on-a").await;
    subscriber.subscribe("sensors/#", QoS::ExactlyOnce).await;
    let mut on_b = TestClient::v5(b.addr, "pub-on-b").await;
    let mut on_c = TestClient::v311(c.addr, "pub-on-c").await;
    await_interest(&mut subscriber, &mut on_b, "sensors/probe").await;
    await_interest(&mut subscriber, &mut on_c, "sensors/probe").await;

    let mut sent = Vec::new();
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        for (publisher, name) in [(&mut on_b, "b"), (&mut on_c, "c")] {
            let payload = format!("{name} at {qos:?}");
            publisher
                .publish_packet(publish_packet("sensors/room1/temp", &payload, qos, false))
                .await;
            sent.push((payload, qos));
        }
    }
    let mut received = Vec::new();
    for _ in 0..sent.len() {
        let message = next_message(&mut subscriber).await;
        received.push((
            String::from_utf8_lossy(&message.payload).into_owned(),
            message.qos,
        ));
    }
    subscriber.expect_silence(Duration::from_millis(500)).await;
    received.sort_by(|x, y| x.0.cmp(&y.0));
    sent.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(received, sent, "each message once, at its publisher's QoS");

    // The link's figures: b forwarded its three (and probes), a received them.
    let figure = |text: &str, name: &str| -> f64 {
        text.lines()
            .find_map(|line| {
                line.strip_prefix(name)
                    .and_then(|rest| rest.strip_prefix(' '))
            })
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in /metrics"))
    };
    let on_b = String::from_utf8(get(b.http, "/metrics").await.body).expect("text");
    let on_a = String::from_utf8(get(a.http, "/metrics").await.body).expect("text");
    assert_eq!(figure(&on_b, "mqtt_cluster_connected"), 1.0);
    assert!(figure(&on_b, "mqtt_cluster_forwarded_total") >= 3.0);
    assert!(figure(&on_a, "mqtt_cluster_received_total") >= 6.0);
    assert_eq!(figure(&on_a, "mqtt_cluster_dropped_total"), 0.0);
    let single = TestGateway::start().await;
    let alone = String::from_utf8(get(single.http, "/metrics").await.body).expect("text");
    assert!(
        !alone.contains("mqtt_cluster_"),
        "a single node has no cluster figures"
    );
}

#[tokio::test]
async fn overlapping_filters_and_the_publishers_own_node_get_one_copy() {
    let nats = Nats::start();
    let (a, b) = (node(&nats, "a").await, node(&nats, "b").await);
    // Two filters of one node match the topic: NATS delivers the message to both subscriptions.
    let mut on_a = TestClient::v5(a.addr, "overlap").await;
    on_a.subscribe("home/+", QoS::AtMostOnce).await;
    on_a.subscribe("home/#", QoS::AtMostOnce).await;
    on_a.subscribe("#", QoS::AtMostOnce).await;
    let mut other_on_a = TestClient::v5(a.addr, "plus-only").await;
    other_on_a.subscribe("home/+", QoS::AtMostOnce).await;
    // A subscriber on the publisher's own node: local delivery, and no echo through NATS.
    let mut local = TestClient::v5(b.addr, "local").await;
    local.subscribe("home/#", QoS::AtMostOnce).await;
    let mut publisher = TestClient::v5(b.addr, "publisher").await;
    await_interest(&mut other_on_a, &mut publisher, "home/probe").await;
    while on_a.try_packet(Duration::from_millis(200)).await.is_some() {}
    while local.try_packet(Duration::from_millis(200)).await.is_some() {}

    for i in 0..20 {
        publisher
            .publish_packet(publish_packet(
                "home/kitchen",
                &i.to_string(),
                QoS::AtMostOnce,
                false,
            ))
            .await;
    }
    for client in [&mut on_a, &mut other_on_a, &mut local] {
        for i in 0..20 {
            let message = next_message(client).await;
            assert_eq!(
                message.payload.as_ref(),
                i.to_string().as_bytes(),
                "in order, once each"
            );
        }
        client.expect_silence(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn wildcards_keep_away_from_dollar_topics_across_nodes() {
    let nats = Nats::start();
    let (a, b) = (node(&nats, "a").await, node(&nats, "b").await);
    let mut everything = TestClient::v5(a.addr, "everything").await;
    everything.subscribe("#", QoS::AtMostOnce).await;
    everything.subscribe("+/status", QoS::AtMostOnce).await;
    let mut dollar = TestClient::v5(a.addr, "dollar").await;
    dollar.subscribe("$app/#", QoS::AtMostOnce).await;
    let mut publisher = TestClient::v5(b.addr, "publisher").await;
    await_interest(&mut everything, &mut publisher, "probe").await;
    await_interest(&mut dollar, &mut publisher, "$app/probe").await;
    while everything
        .try_packet(Duration::from_millis(200))
        .await
        .is_some()
    {}

    // Levels NATS would read as separators or wildcards, and empty levels, cross as they are.
    let topics = ["$app/status", "dev.1/status", "a*/>", "/x//", "$app/a b"];
    for topic in topics {
        publisher
            .publish_packet(publish_packet(topic, topic, QoS::AtMostOnce, false))
            .await;
    }
    let mut got: Vec<String> = Vec::new();
    for _ in 0..3 {
        got.push(next_message(&mut everything).await.topic.to_string());
    }
    everything.expect_silence(Duration::from_millis(500)).await;
    got.sort();
    assert_eq!(
        got,
        ["/x//", "a*/>", "dev.1/status"],
        "never a $ topic through # or +"
    );
    let mut dollars = vec![
        next_message(&mut dollar).await.topic.to_string(),
        next_message(&mut dollar).await.topic.to_string(),
    ];
    dollars.sort();
    assert_eq!(dollars, ["$app/a b", "$app/status"]);
    dollar.expect_silence(Duration::from_millis(300)).await;
}

/// A figure of a node's /metrics.
pub(crate) async fn figure(node: &TestGateway, name: &str) -> f64 {
    let text = String::from_utf8(get(node.http, "/metrics").await.body).expect("text");
    text.lines()
        .find_map(|line| {
            line.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} in /metrics"))
}

#[tokio::test]
async fn losing_nats_keeps_local_delivery_and_crossing_resumes_when_it_returns() {
    let mut nats = Nats::start();
    let (a, b) = (node(&nats, "a").await, node(&nats, "b").await);
    let mut on_a = TestClient::v5(a.addr, "sub-on-a").await;
    on_a.subscribe("t/#", QoS::AtLeastOnce).await;
    let mut on_b = TestClient::v5(b.addr, "sub-on-b").await;
    on_b.subscribe("t/#", QoS::AtLeastOnce).await;
    let mut publisher = TestClient::v5(b.addr, "publisher").await;
    await_interest(&mut on_a, &mut publisher, "t/probe").await;
    while on_b.try_packet(Duration::from_millis(200)).await.is_some() {}

    nats.kill();
    // b notices (its client's ping or the closed socket), and counts it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while figure(&b, "mqtt_cluster_connected").await != 0.0 {
        assert!(Instant::now() < deadline, "the outage seen within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let health = get(b.http, "/healthz").await;
    assert_eq!(
        health.status, 200,
        "still healthy: local clients are served"
    );
    let body = String::from_utf8_lossy(&health.body);
    assert!(
        body.starts_with("ok\ncluster disconnected: local delivery only\nlag: "),
        "{body}"
    );
    // While NATS is away, b acknowledges and delivers locally at once.
    let ack = publisher
        .publish_packet(publish_packet(
            "t/during",
            "during",
            QoS::AtLeastOnce,
            false,
        ))
        .await
        .expect("a PUBACK");
    assert_eq!(ack.reason_code, mqtt_codec::ReasonCode::Success);
    let local = next_message(&mut on_b).await;
    assert_eq!(local.payload.as_ref(), b"during");
    nats.start_again();

    // Crossing resumes once the nodes are back on NATS (the client reconnects with backoff).
    let deadline = Instant::now() + Duration::from_secs(30);
    'resumed: loop {
        publisher
            .publish_packet(publish_packet("t/after", "after", QoS::AtMostOnce, false))
            .await;
        while let Some(packet) = on_a.try_packet(Duration::from_millis(100)).await {
            if let mqtt_codec::Packet::Publish(message) = packet
                && message.payload.as_ref() == b"after"
            {
                break 'resumed;
            }
        }
        assert!(
            Instant::now() < deadline,
            "crossing resumed within 30 s of NATS's return"
        );
    }
    assert!(
        figure(&b, "mqtt_cluster_disconnects_total").await >= 1.0,
        "the outage is counted"
    );
    assert_eq!(figure(&b, "mqtt_cluster_connected").await, 1.0);
    let health = get(b.http, "/healthz").await;
    let health = String::from_utf8_lossy(&health.body);
    assert!(
        health.starts_with("ok\ncluster connected\nlag: "),
        "{health}"
    );
    assert!(health.ends_with(" session records to log\n"), "{health}");
}

/// What a new subscriber on `node` to `filter` gets at once: the retained messages' payloads.
/// A message published meanwhile may also reach it, live (its interest may cross before the
/// message does): that one is not retained for it, and is left out.
async fn retained_on(node: &TestGateway, filter: &str, client_id: &str) -> Vec<String> {
    let mut client = TestClient::v5(node.addr, client_id).await;
    client.subscribe(filter, QoS::AtMostOnce).await;
    let mut payloads = Vec::new();
    while let Some(packet) = client.try_packet(Duration::from_millis(300)).await {
        if let mqtt_codec::Packet::Publish(message) = packet
            && message.retain
        {
            payloads.push(String::from_utf8_lossy(&message.payload).into_owned());
        }
    }
    payloads.sort();
    payloads
}

#[tokio::test]
async fn retained_messages_are_the_clusters_on_every_node() {
    let nats = Nats::start();
    let (a, b, c) = (
        node(&nats, "a").await,
        node(&nats, "b").await,
        node(&nats, "c").await,
    );
    let mut on_a = TestClient::v5(a.addr, "retainer").await;
    on_a.publish_packet(publish_packet(
        "status/door",
        "open",
        QoS::AtLeastOnce,
        true,
    ))
    .await;
    on_a.publish_packet(publish_packet("status/light", "on", QoS::AtMostOnce, true))
        .await;

    // No node had a subscriber for them: a new one on c gets them from c's own retained set,
    // once the bucket's change reached it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let got = retained_on(&c, "status/#", &format!("late-{attempt}")).await;
        if got == ["on", "open"] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "retained messages reached c within 10 s: {got:?}"
        );
    }

    // Cleared on b (an empty retained message): gone on every node.
    let mut on_b = TestClient::v5(b.addr, "clearer").await;
    on_b.publish_packet(publish_packet("status/door", "", QoS::AtLeastOnce, true))
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        attempt += 1;
        let on_a_now = retained_on(&a, "status/#", &format!("after-a-{attempt}")).await;
        let on_c_now = retained_on(&c, "status/#", &format!("after-c-{attempt}")).await;
        if on_a_now == ["on"] && on_c_now == ["on"] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the clear reached a and c within 10 s: {on_a_now:?} {on_c_now:?}"
        );
    }
}

#[tokio::test]
async fn credentials_in_the_url_let_a_node_in_and_never_reach_its_log() {
    let nats = Nats::start_with(&["--user", "gateway", "--pass", "s3cret-pw"]);
    let url = format!("nats://gateway:s3cret-pw@127.0.0.1:{}", nats.port);
    let mut a = RunningBinary::start(&["--cluster", &url, "--node-name", "a"]);
    let b = node_at(&url, "b").await;
    let mut on_a = TestClient::v5(a.addr, "sub-on-a").await;
    on_a.subscribe("auth/#", QoS::AtMostOnce).await;
    let mut on_b = TestClient::v5(b.addr, "pub-on-b").await;
    await_interest(&mut on_a, &mut on_b, "auth/probe").await;

    // A wrong password: the node starts and serves its clients, and is not let into NATS.
    let wrong = format!("nats://gateway:wrong-pw@127.0.0.1:{}", nats.port);
    let mut refused = RunningBinary::start(&["--cluster", &wrong, "--node-name", "c"]);
    let mut local = TestClient::v5(refused.addr, "local-on-c").await;
    local.subscribe("auth/#", QoS::AtMostOnce).await;
    let mut publisher = TestClient::v5(refused.addr, "pub-on-c").await;
    publisher
        .publish_packet(publish_packet("auth/local", "here", QoS::AtMostOnce, false))
        .await;
    assert_eq!(next_message(&mut local).await.payload.as_ref(), b"here");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = String::from_utf8(get(refused.http, "/healthz").await.body).expect("text");
        if text.starts_with("ok\ncluster disconnected: local delivery only\n") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "c is not in the cluster: {text:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    for binary in [&mut a, &mut refused] {
        binary.terminate(Duration::from_secs(10));
        let lines = binary.lines();
        assert!(
            lines
                .iter()
                .any(|line| line.contains("joining through nats://***@127.0.0.1:")),
            "the URL is logged without its credentials: {lines:?}"
        );
        for secret in ["s3cret-pw", "wrong-pw"] {
            assert!(
                !lines.iter().any(|line| line.contains(secret)),
                "{secret} in the log: {lines:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_token_in_the_url_lets_nodes_in() {
    let nats = Nats::start_with(&["--auth", "t0ken-for-nodes"]);
    let url = format!("nats://t0ken-for-nodes@127.0.0.1:{}", nats.port);
    let a = node_at(&url, "a").await;
    let b = node_at(&url, "b").await;
    let mut on_a = TestClient::v5(a.addr, "sub-on-a").await;
    on_a.subscribe("token/#", QoS::AtMostOnce).await;
    let mut on_b = TestClient::v5(b.addr, "pub-on-b").await;
    await_interest(&mut on_a, &mut on_b, "token/probe").await;
    assert_eq!(figure(&a, "mqtt_cluster_connected").await, 1.0);
}

/// Publishes QoS 0 probes to `topic` from `publisher` until every one of `members` (of one
/// shared group, on their nodes) received one: each member's node then holds the group's queue
/// subscription in NATS. Then drops the probes still under way.
async fn await_group(members: &mut [&mut TestClient], publisher: &mut TestClient, topic: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut reached = vec![false; members.len()];
    while reached.contains(&false) {
        publisher
            .publish_packet(publish_packet(topic, "probe", QoS::AtMostOnce, false))
            .await;
        for (member, reached) in members.iter_mut().zip(reached.iter_mut()) {
            while member.try_packet(Duration::from_millis(20)).await.is_some() {
                *reached = true;
            }
        }
        assert!(
            Instant::now() < deadline,
            "every member of the group on {topic} reached within 10 s: {reached:?}"
        );
    }
    for member in members.iter_mut() {
        while member
            .try_packet(Duration::from_millis(300))
            .await
            .is_some()
        {}
    }
}

/// The payloads of the messages `client` receives (each acknowledged), probes left out, until
/// nothing came for a second.
async fn received_payloads(client: &mut TestClient) -> Vec<String> {
    let mut payloads = Vec::new();
    while let Some(packet) = client.try_packet(Duration::from_secs(1)).await {
        if let mqtt_codec::Packet::Publish(message) = packet {
            client.acknowledge(&message).await;
            if message.payload.as_ref() != b"probe" {
                payloads.push(String::from_utf8_lossy(&message.payload).into_owned());
            }
        }
    }
    payloads
}

/// How many times each payload is in `payloads`.
fn counted(payloads: &[String]) -> std::collections::BTreeMap<&str, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for payload in payloads {
        *counts.entry(payload.as_str()).or_insert(0) += 1;
    }
    counts
}

#[tokio::test]
async fn a_shared_group_spread_over_nodes_gets_each_message_once_in_the_cluster() {
    let nats = Nats::start();
    let (a, b, c) = (
        node(&nats, "a").await,
        node(&nats, "b").await,
        node(&nats, "c").await,
    );
    // The group g has a member on a and one on b; the group h (same filter) one on c; and a
    // plain subscription to the same filter on a, beside g's member.
    let mut member_a = TestClient::v5(a.addr, "g-on-a").await;
    member_a
        .subscribe("$share/g/jobs/+", QoS::ExactlyOnce)
        .await;
    let mut member_b = TestClient::v5(b.addr, "g-on-b").await;
    member_b
        .subscribe("$share/g/jobs/+", QoS::ExactlyOnce)
        .await;
    let mut other_group = TestClient::v5(c.addr, "h-on-c").await;
    other_group
        .subscribe("$share/h/jobs/+", QoS::ExactlyOnce)
        .await;
    let mut plain = TestClient::v5(a.addr, "plain-on-a").await;
    plain.subscribe("jobs/+", QoS::ExactlyOnce).await;
    let mut publishers = [
        ("a", TestClient::v5(a.addr, "pub-on-a").await),
        ("b", TestClient::v311(b.addr, "pub-on-b").await),
        ("c", TestClient::v5(c.addr, "pub-on-c").await),
    ];
    await_group(
        &mut [&mut member_a, &mut member_b],
        &mut publishers[2].1,
        "jobs/probe",
    )
    .await;
    await_group(&mut [&mut other_group], &mut publishers[0].1, "jobs/probe").await;
    for (_, publisher) in &mut publishers[1..] {
        await_interest(&mut plain, publisher, "jobs/probe").await;
    }
    for member in [&mut member_a, &mut member_b, &mut other_group] {
        while member
            .try_packet(Duration::from_millis(300))
            .await
            .is_some()
        {}
    }

    let mut sent = Vec::new();
    for round in 0..10 {
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            for (name, publisher) in &mut publishers {
                let payload = format!("{name} {qos:?} {round}");
                publisher
                    .publish_packet(publish_packet("jobs/build", &payload, qos, false))
                    .await;
                sent.push(payload);
            }
        }
    }
    sent.sort();

    let on_a = received_payloads(&mut member_a).await;
    let on_b = received_payloads(&mut member_b).await;
    let group: Vec<String> = on_a.iter().chain(&on_b).cloned().collect();
    let counts = counted(&group);
    let mut duplicates = 0;
    for payload in &sent {
        let times = counts.get(payload.as_str()).copied().unwrap_or(0);
        if payload.contains("AtLeastOnce") {
            assert!(times >= 1, "{payload:?} reached g at least once");
            duplicates += times - 1;
        } else {
            assert_eq!(times, 1, "{payload:?} reached g once, on one node");
        }
    }
    eprintln!(
        "group g: {} on a, {} on b, {duplicates} QoS 1 duplicates",
        on_a.len(),
        on_b.len()
    );
    assert_eq!(group.len(), sent.len() + duplicates, "nothing else");
    assert!(
        !on_a.is_empty() && !on_b.is_empty(),
        "both nodes' members got some: a {}, b {}",
        on_a.len(),
        on_b.len()
    );

    // Another group with the same filter, and a plain subscription, each get every message once.
    for client in [&mut other_group, &mut plain] {
        let mut got = received_payloads(client).await;
        got.sort();
        assert_eq!(got, sent);
    }
}

#[tokio::test]
async fn a_group_on_one_node_gets_the_messages_of_every_node_its_own_included() {
    let nats = Nats::start();
    let (a, b) = (node(&nats, "a").await, node(&nats, "b").await);
    let mut first = TestClient::v5(a.addr, "first").await;
    first.subscribe("$share/g/work/#", QoS::AtLeastOnce).await;
    let mut second = TestClient::v311(a.addr, "second").await;
    second.subscribe("$share/g/work/#", QoS::AtLeastOnce).await;
    let mut on_a = TestClient::v5(a.addr, "pub-on-a").await;
    let mut on_b = TestClient::v5(b.addr, "pub-on-b").await;
    await_group(&mut [&mut first, &mut second], &mut on_b, "work/probe").await;

    let mut sent = Vec::new();
    for i in 0..10 {
        for (name, publisher) in [("a", &mut on_a), ("b", &mut on_b)] {
            let payload = format!("{name} {i}");
            publisher
                .publish_packet(publish_packet("work", &payload, QoS::AtLeastOnce, false))
                .await;
            sent.push(payload);
        }
    }
    sent.sort();
    let from_first = received_payloads(&mut first).await;
    let from_second = received_payloads(&mut second).await;
    let mut got: Vec<String> = from_first.iter().chain(&from_second).cloned().collect();
    got.sort();
    assert_eq!(got, sent, "each once, from either node");
    assert!(
        !from_first.is_empty() && !from_second.is_empty(),
        "the node shares them among its members: {} and {}",
        from_first.len(),
        from_second.len()
    );
}

/// Reads what `client` has now (each message acknowledged), for `wait`: the payloads of the
/// messages other than probes, and whether a probe came.
async fn read_for(client: &mut TestClient, wait: Duration) -> (Vec<String>, bool) {
    let mut payloads = Vec::new();
    let mut probed = false;
    while let Some(packet) = client.try_packet(wait).await {
        if let mqtt_codec::Packet::Publish(message) = packet {
            client.acknowledge(&message).await;
            if message.payload.as_ref() == b"probe" {
                probed = true;
            } else {
                payloads.push(String::from_utf8_lossy(&message.payload).into_owned());
            }
        }
    }
    (payloads, probed)
}

#[tokio::test]
async fn a_node_cut_off_from_nats_serves_its_groups_its_own_messages_and_none_twice() {
    let mut nats = Nats::start();
    let (a, b) = (node(&nats, "a").await, node(&nats, "b").await);
    let mut member_a = TestClient::v5(a.addr, "g-on-a").await;
    member_a.subscribe("$share/g/o/#", QoS::AtLeastOnce).await;
    let mut member_b = TestClient::v5(b.addr, "g-on-b").await;
    member_b.subscribe("$share/g/o/#", QoS::AtLeastOnce).await;
    let mut on_a = TestClient::v5(a.addr, "pub-on-a").await;
    let mut on_b = TestClient::v5(b.addr, "pub-on-b").await;
    await_group(&mut [&mut member_a, &mut member_b], &mut on_b, "o/probe").await;

    nats.kill();
    // Once a's groups' connection noticed, a's messages reach its member here.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        on_a.publish_packet(publish_packet("o/probe", "probe", QoS::AtMostOnce, false))
            .await;
        if read_for(&mut member_a, Duration::from_millis(100)).await.1 {
            break;
        }
        assert!(Instant::now() < deadline, "a serves its group within 30 s");
    }
    let mut on_member_a = Vec::new();
    let mut on_member_b = Vec::new();
    let mut during = Vec::new();
    for i in 0..10 {
        let payload = format!("during {i}");
        on_a.publish_packet(publish_packet("o/x", &payload, QoS::AtLeastOnce, false))
            .await;
        during.push(payload);
    }
    on_member_a.extend(read_for(&mut member_a, Duration::from_millis(300)).await.0);
    assert_eq!(on_member_a, during, "at once, in order, on a");

    // NATS returns: a's marked messages reach NATS, and no group gets them again.
    nats.start_again();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut back = [false, false];
    while back != [true, true] {
        on_b.publish_packet(publish_packet("o/probe", "probe", QoS::AtMostOnce, false))
            .await;
        for (member, (seen, back)) in [&mut member_a, &mut member_b].into_iter().zip(
            [&mut on_member_a, &mut on_member_b]
                .into_iter()
                .zip(&mut back),
        ) {
            let (payloads, probed) = read_for(member, Duration::from_millis(50)).await;
            seen.extend(payloads);
            *back |= probed;
        }
        assert!(
            Instant::now() < deadline,
            "both members balanced again within 30 s: {back:?}"
        );
    }
    // And a's own connection is back too (the two reconnect each at its pace): what a
    // publishes now reaches NATS at once.
    let deadline = Instant::now() + Duration::from_secs(30);
    while figure(&a, "mqtt_cluster_connected").await != 1.0 {
        assert!(Instant::now() < deadline, "a back on NATS within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut after = Vec::new();
    for i in 0..20 {
        let payload = format!("after {i}");
        on_a.publish_packet(publish_packet("o/x", &payload, QoS::AtLeastOnce, false))
            .await;
        after.push(payload);
    }
    on_member_a.extend(received_payloads(&mut member_a).await);
    on_member_b.extend(received_payloads(&mut member_b).await);
    let mut got: Vec<String> = on_member_a.iter().chain(&on_member_b).cloned().collect();
    got.sort();
    let mut sent: Vec<String> = during.into_iter().chain(after).collect();
    sent.sort();
    assert_eq!(got, sent, "each once in the group");
    assert!(
        on_member_b
            .iter()
            .any(|payload| payload.starts_with("after")),
        "balanced again: b's member gets some of a's messages"
    );
}
