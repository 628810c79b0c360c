//! Parked connections: a TCP connection quiet for a while (a quarter of a second right after
//! its CONNACK, five to ten seconds once it has had traffic) gives up its task and waits in the parking
//! lot (`mqtt_connections_parked` counts them). Whatever happens to it next must find it as if
//! it had never left: a message for it, a packet from it, its peer vanishing (its will goes
//! out), its keep alive expiring, a takeover of its session, the gateway shutting down; and
//! parking must not change what `/metrics` says is open.

use crate::common::{TestClient, TestGateway, WAIT, connect_packet, options, will};
use crate::web_support::{metric, scrape};
use mqtt_codec::{ProtocolVersion, QoS, ReasonCode, Subscription};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::Instant;

use ProtocolVersion::{V5, V311};

/// The value of one series (`name` or `name{label="value"}`) of `/metrics`.
async fn gauge(http: SocketAddr, series: &str) -> f64 {
    metric(&scrape(http).await, series)
}

async fn parked(http: SocketAddr) -> f64 {
    gauge(http, "mqtt_connections_parked").await
}

/// Waits until exactly `count` connections are parked, for at most `within`.
async fn wait_parked(http: SocketAddr, count: usize, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let now = parked(http).await;
        if now == count as f64 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{now} connections parked after {within:?}, expected {count}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A connection that has had traffic since its CONNACK parks after five to ten seconds of
/// quiet.
const REPARK: Duration = Duration::from_secs(15);

/// Parked clients get their messages, are read, answer pings, park again after traffic, and
/// count as open all the while.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_clients_send_and_receive_as_before() {
    let gateway = TestGateway::start().await;
    let mut subscriber = TestClient::v5(gateway.addr, "parked-subscriber").await;
    subscriber.subscribe("parked/#", QoS::ExactlyOnce).await;
    let mut publisher = TestClient::v311(gateway.addr, "parked-publisher").await;
    // The publisher right after its CONNACK, the subscriber once quiet after subscribing.
    wait_parked(gateway.http, 2, REPARK).await;
    assert_eq!(
        gauge(gateway.http, "mqtt_connections{transport=\"tcp\"}").await,
        2.0,
        "parked connections are open connections"
    );

    // The publisher is woken by its socket, the subscriber by its outbox; each QoS goes
    // through its whole exchange (PUBACK, PUBREC/PUBREL/PUBCOMP) across the resumptions.
    for (qos, payload) in [
        (QoS::AtMostOnce, "zero"),
        (QoS::AtLeastOnce, "one"),
        (QoS::ExactlyOnce, "two"),
    ] {
        publisher.publish("parked/a", payload, qos).await;
        let message = subscriber.expect_message().await;
        assert_eq!(message.payload, payload.as_bytes());
        assert_eq!(message.qos, qos);
    }

    // Back in the lot after a quiet spell, and still served from there.
    wait_parked(gateway.http, 2, REPARK).await;
    subscriber.ping().await;
    publisher
        .publish("parked/b", "after", QoS::AtLeastOnce)
        .await;
    assert_eq!(subscriber.expect_message().await.payload, &b"after"[..]);

    publisher.disconnect().await;
    subscriber.disconnect().await;
    wait_parked(gateway.http, 0, WAIT).await;
    let deadline = Instant::now() + WAIT;
    while gauge(gateway.http, "mqtt_connections{transport=\"tcp\"}").await != 0.0 {
        assert!(Instant::now() < deadline, "connections still counted open");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A keep-alive ping resumes a parked client only for the moment it takes to answer: pings
/// are not traffic that keeps a connection out of the lot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_client_that_only_pings_parks_again_at_once() {
    let gateway = TestGateway::start().await;
    let mut client = TestClient::v311(gateway.addr, "parked-pinger").await;
    wait_parked(gateway.http, 1, WAIT).await;
    let resumed = gauge(gateway.http, "mqtt_connections_resumed_total").await;
    for round in 1..=3 {
        client.ping().await;
        // Well within the five seconds a client with traffic stays out.
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let now = gauge(gateway.http, "mqtt_connections_resumed_total").await;
            if now == resumed + f64::from(round) && parked(gateway.http).await == 1.0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "after ping {round}: resumed {now} (from {resumed}), parked {}",
                parked(gateway.http).await
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A parked client whose socket dies is lost like any other: its will goes out, to another
/// parked client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_client_that_vanishes_is_lost() {
    let gateway = TestGateway::start().await;
    let mut watcher = TestClient::v5(gateway.addr, "parked-watcher").await;
    watcher.subscribe("wills/#", QoS::AtLeastOnce).await;
    let mut connect = connect_packet(V311, "parked-doomed");
    connect.will = Some(will("wills/doomed", "gone"));
    let (doomed, _) = TestClient::connect_accepted(gateway.addr, connect).await;
    wait_parked(gateway.http, 2, REPARK).await;

    doomed.drop_connection();
    let message = watcher.expect_message().await;
    assert_eq!(message.topic, "wills/doomed");
    assert_eq!(message.payload, &b"gone"[..]);
    watcher.disconnect().await;
    wait_parked(gateway.http, 0, WAIT).await;
}

/// A parked client that sends nothing for one and a half keep alives is disconnected from the
/// lot [MQTT-3.1.2-24].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_client_past_its_keep_alive_is_disconnected() {
    let gateway = TestGateway::start().await;
    let mut connect = connect_packet(V5, "parked-sleepy");
    connect.keep_alive = 2;
    let (mut sleepy, _) = TestClient::connect_accepted(gateway.addr, connect).await;
    wait_parked(gateway.http, 1, WAIT).await;
    sleepy.expect_disconnect(ReasonCode::KeepAliveTimeout).await;
    sleepy.expect_closed().await;
    wait_parked(gateway.http, 0, WAIT).await;
}

/// Taking over a parked client's session wakes it to be disconnected, and the new connection
/// gets the session with what was queued for it meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_session_is_taken_over() {
    let gateway = TestGateway::start().await;
    let mut connect = connect_packet(V5, "parked-owner");
    connect.clean_start = false;
    connect.properties.session_expiry_interval = Some(60);
    let (mut first, _) = TestClient::connect_accepted(gateway.addr, connect.clone()).await;
    first
        .subscribe_with(
            vec![Subscription {
                filter: "owned/#".into(),
                options: options(QoS::AtLeastOnce),
            }],
            Default::default(),
        )
        .await;
    wait_parked(gateway.http, 1, REPARK).await;

    let (mut second, connack) = TestClient::connect_accepted(gateway.addr, connect).await;
    assert!(connack.session_present);
    first.expect_disconnect(ReasonCode::SessionTakenOver).await;
    first.expect_closed().await;
    let mut publisher = TestClient::v311(gateway.addr, "owned-publisher").await;
    publisher
        .publish("owned/x", "yours", QoS::AtLeastOnce)
        .await;
    assert_eq!(second.expect_message().await.payload, &b"yours"[..]);
}

/// Shutdown reaches parked clients: each gets its DISCONNECT (0x8B Server shutting down) and
/// shutdown waits for them as for the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_disconnects_parked_clients() {
    let gateway = TestGateway::start().await;
    let mut clients = Vec::new();
    for index in 0..5 {
        clients.push(TestClient::v5(gateway.addr, &format!("parked-{index}")).await);
    }
    wait_parked(gateway.http, 5, WAIT).await;
    let took = gateway.shutdown(WAIT).await;
    assert!(took < WAIT, "shutdown took {took:?}");
    for client in &mut clients {
        client
            .expect_disconnect(ReasonCode::ServerShuttingDown)
            .await;
        client.expect_closed().await;
    }
}

/// A crowd parks, is woken all at once by one message, and parks again; connections that leave
/// free their places in the lot for new ones, which a message for the old ones never wakes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_crowd_gets_every_message_as_members_come_and_go() {
    const CROWD: usize = 200;
    let gateway = TestGateway::start().await;
    let mut crowd = Vec::new();
    for index in 0..CROWD {
        let mut client = TestClient::v311(gateway.addr, &format!("crowd-{index}")).await;
        client.subscribe("crowd/all", QoS::AtLeastOnce).await;
        crowd.push(client);
    }
    let mut publisher = TestClient::v5(gateway.addr, "crowd-publisher").await;
    wait_parked(gateway.http, CROWD + 1, REPARK).await;
    publisher
        .publish("crowd/all", "first", QoS::AtLeastOnce)
        .await;
    for client in &mut crowd {
        assert_eq!(client.expect_message().await.payload, &b"first"[..]);
    }

    // Half leave; newcomers take their slots in the lot.
    for client in crowd.drain(..CROWD / 2) {
        client.disconnect().await;
    }
    for index in 0..CROWD / 2 {
        let mut client = TestClient::v311(gateway.addr, &format!("newcomer-{index}")).await;
        client.subscribe("crowd/new", QoS::AtLeastOnce).await;
        crowd.push(client);
    }
    wait_parked(gateway.http, CROWD + 1, REPARK).await;
    publisher
        .publish("crowd/new", "second", QoS::AtLeastOnce)
        .await;
    for client in &mut crowd[CROWD / 2..] {
        assert_eq!(client.expect_message().await.payload, &b"second"[..]);
    }
    // By now anything sent to the others would have arrived.
    for client in &mut crowd[..CROWD / 2] {
        client.expect_silence(Duration::from_millis(5)).await;
    }
}
