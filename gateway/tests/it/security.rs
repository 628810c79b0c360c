//! Accounts, ACLs and tokens over real connections: the CONNACK codes per version for right and
//! wrong passwords and for anonymous clients, the ACL governing SUBSCRIBE, PUBLISH and each
//! delivery, `$SYS` visibility, reloads changing what a connected client may do, tokens as
//! passwords (expiry at CONNECT and mid-session, subjects, topic claims), the brute-force
//! back-off and the limit per address, and their counters in `/metrics`.

use crate::common::*;
use crate::web_support::{HttpResponse, get, http_request};
use base64::Engine;
use gateway::security::SecurityConfig;
use gateway::security::lockout::LockoutPolicy;
use gateway::security::password_file::PasswordFile;
use jsonwebtoken::{EncodingKey, Header, encode};
use mqtt_codec::{ByteStr, ConnectPacket, Packet, ProtocolVersion, QoS, ReasonCode};
use std::path::PathBuf;
use std::time::Duration;

const SECRET: &[u8] = b"the HS256 secret of these tests, long enough";

/// A directory of security files (passwords, ACLs, keys) that removes itself; the HTTP
/// authorization tests use it too.
pub struct Files(PathBuf);

impl Files {
    pub fn new(name: &str) -> Files {
        let directory = std::env::temp_dir().join(format!(
            "gateway-security-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        std::fs::create_dir_all(&directory).expect("test directory");
        Files(directory)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write test file");
        path
    }

    /// A password file with `users` (name, password).
    pub fn passwords(&self, users: &[(&str, &str)]) -> PathBuf {
        let mut file = PasswordFile::default();
        for (user, password) in users {
            file.set(user, password.as_bytes()).expect("hash");
        }
        let path = self.0.join("passwords");
        file.save(&path).expect("save password file");
        path
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn with_credentials(
    version: ProtocolVersion,
    client_id: &str,
    user: Option<&str>,
    password: Option<&str>,
) -> ConnectPacket {
    let mut connect = connect_packet(version, client_id);
    connect.username = user.map(ByteStr::from);
    connect.password = password.map(|p| bytes::Bytes::copy_from_slice(p.as_bytes()));
    connect
}

async fn connack_for(addr: std::net::SocketAddr, connect: ConnectPacket) -> ReasonCode {
    TestClient::connect_with(addr, connect).await.1.reason_code
}

async fn client(
    addr: std::net::SocketAddr,
    version: ProtocolVersion,
    client_id: &str,
    user: &str,
    password: &str,
) -> TestClient {
    let connect = with_credentials(version, client_id, Some(user), Some(password));
    TestClient::connect_accepted(addr, connect).await.0
}

fn security(
    adjust: impl FnOnce(&mut SecurityConfig),
) -> impl FnOnce(&mut gateway::config::GatewayConfig) {
    move |config| adjust(&mut config.security)
}

async fn get_as(http: std::net::SocketAddr, path: &str, authorization: &str) -> HttpResponse {
    let response = http_request(http, "GET", path, &[("Authorization", authorization)]).await;
    assert_eq!(response.status, 200, "{path}: {response:?}");
    response
}

fn basic(user: &str, password: &str) -> String {
    let pair = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// `GET path` from 127.0.0.2, with the admin credentials of the lock-out test, as text.
async fn get_from_other_address(http: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.2:0".parse().expect("address"))
        .expect("bind 127.0.0.2");
    let mut stream = socket.connect(http).await.expect("connect");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {http}\r\nAuthorization: {}\r\nConnection: close\r\n\r\n",
        basic("alice", "right")
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    tokio::time::timeout(WAIT, stream.read_to_string(&mut response))
        .await
        .expect("answer in time")
        .expect("read");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

#[tokio::test]
async fn passwords_are_checked_with_each_version_s_connack_codes() {
    let files = Files::new("passwords");
    let passwords = files.passwords(&[("alice", "correct horse"), ("admin", "admin pass")]);
    let gateway = TestGateway::start_with(security(|s| {
        s.password_file = Some(passwords);
        s.admin_users = vec!["admin".into()];
    }))
    .await;
    let addr = gateway.addr;
    use ProtocolVersion::{V5, V311};
    let cases = [
        (
            V5,
            Some("alice"),
            Some("correct horse"),
            ReasonCode::Success,
        ),
        (
            V311,
            Some("alice"),
            Some("correct horse"),
            ReasonCode::Success,
        ),
        (
            V5,
            Some("alice"),
            Some("wrong"),
            ReasonCode::BadUserNameOrPassword,
        ),
        (
            V311,
            Some("alice"),
            Some("wrong"),
            ReasonCode::BadUserNameOrPassword,
        ),
        (
            V5,
            Some("mallory"),
            Some("correct horse"),
            ReasonCode::BadUserNameOrPassword,
        ),
        (V5, Some("alice"), None, ReasonCode::BadUserNameOrPassword),
        (V5, None, None, ReasonCode::NotAuthorized),
        (V311, None, None, ReasonCode::NotAuthorized),
    ];
    for (index, (version, user, password, expected)) in cases.into_iter().enumerate() {
        let connect = with_credentials(version, &format!("c{index}"), user, password);
        assert_eq!(
            connack_for(addr, connect).await,
            expected,
            "{version:?} {user:?} with password {}",
            password.is_some()
        );
    }
    let metrics = get_as(gateway.http, "/metrics", &basic("admin", "admin pass"))
        .await
        .text();
    for line in [
        "mqtt_auth_accepted_total{method=\"password\"} 2",
        "mqtt_auth_refused_total{reason=\"bad_password\"} 4",
        "mqtt_auth_refused_total{reason=\"anonymous\"} 2",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
}

#[tokio::test]
async fn allow_anonymous_admits_clients_without_credentials_but_not_wrong_ones() {
    let files = Files::new("anonymous");
    let passwords = files.passwords(&[("alice", "correct horse")]);
    let gateway = TestGateway::start_with(security(|s| {
        s.password_file = Some(passwords);
        s.allow_anonymous = true;
    }))
    .await;
    let anonymous = with_credentials(ProtocolVersion::V5, "anon", None, None);
    assert_eq!(
        connack_for(gateway.addr, anonymous).await,
        ReasonCode::Success
    );
    let wrong = with_credentials(ProtocolVersion::V5, "w", Some("alice"), Some("nope"));
    assert_eq!(
        connack_for(gateway.addr, wrong).await,
        ReasonCode::BadUserNameOrPassword
    );
}

const ACL: &str = "\
topic read public/#

user alice
topic readwrite alice/#
topic deny alice/secret
topic read public/#

user admin
topic readwrite #
topic read $SYS/#
";

async fn acl_gateway(files: &Files, acl: &str, sys: bool) -> TestGateway {
    let passwords = files.passwords(&[("alice", "a-pass"), ("admin", "admin-pass")]);
    let acl = files.write("acl", acl);
    TestGateway::start_with(move |config| {
        config.security.password_file = Some(passwords);
        config.security.acl_file = Some(acl);
        config.security.allow_anonymous = true;
        if sys {
            config.broker.sys_interval = Some(Duration::from_secs(1));
        }
    })
    .await
}

#[tokio::test]
async fn the_acl_governs_subscribe_publish_and_every_delivery() {
    let files = Files::new("acl");
    let gateway = acl_gateway(&files, ACL, false).await;
    let addr = gateway.addr;
    let mut alice5 = client(addr, ProtocolVersion::V5, "alice5", "alice", "a-pass").await;
    let mut alice3 = client(addr, ProtocolVersion::V311, "alice3", "alice", "a-pass").await;
    let mut admin = client(addr, ProtocolVersion::V5, "admin", "admin", "admin-pass").await;

    // SUBSCRIBE: refused where the filter can receive nothing readable, 0x87 / 0x80.
    for (client, refused) in [
        (&mut alice5, ReasonCode::NotAuthorized),
        (&mut alice3, ReasonCode::UnspecifiedError),
    ] {
        let ack = client
            .subscribe_with(
                vec![
                    mqtt_codec::Subscription {
                        filter: ByteStr::from("#"),
                        options: options(QoS::AtLeastOnce),
                    },
                    mqtt_codec::Subscription {
                        filter: ByteStr::from("admin/#"),
                        options: options(QoS::AtLeastOnce),
                    },
                    mqtt_codec::Subscription {
                        filter: ByteStr::from("alice/secret"),
                        options: options(QoS::AtLeastOnce),
                    },
                ],
                Default::default(),
            )
            .await;
        assert_eq!(
            ack.reason_codes,
            [ReasonCode::GrantedQoS1, refused, refused],
            "# overlaps alice/#; admin/# reads nothing; alice/secret is denied"
        );
    }

    // Deliveries through the granted `#`: only what alice may read.
    for (topic, readable) in [
        ("alice/notes", true),
        ("public/news", true),
        ("admin/keys", false),
        ("alice/secret", false),
    ] {
        admin.publish(topic, topic, QoS::AtLeastOnce).await;
        for alice in [&mut alice5, &mut alice3] {
            if readable {
                assert_eq!(alice.expect_message().await.topic, topic);
            } else {
                alice.expect_silence(QUIET).await;
            }
        }
    }

    // PUBLISH: refused with 0x87 for 5.0 (3.1.1 has no code to say it), never delivered.
    let mut watcher = client(addr, ProtocolVersion::V5, "watcher", "admin", "admin-pass").await;
    watcher.subscribe("#", QoS::AtLeastOnce).await;
    let ack = alice5
        .publish_packet(publish_packet("admin/x", "no", QoS::AtLeastOnce, false))
        .await
        .expect("PUBACK");
    assert_eq!(ack.reason_code, ReasonCode::NotAuthorized);
    alice3.publish("alice/secret", "no", QoS::AtLeastOnce).await;
    watcher.expect_silence(QUIET).await;
    alice5.publish("alice/ok", "yes", QoS::AtLeastOnce).await;
    assert_eq!(watcher.expect_message().await.topic, "alice/ok");

    // Anonymous clients get the rules before any `user` line.
    let mut anonymous = TestClient::v5(addr, "anon").await;
    anonymous.subscribe("public/#", QoS::AtMostOnce).await;
    let ack = anonymous
        .publish_packet(publish_packet("public/x", "no", QoS::AtLeastOnce, false))
        .await
        .expect("PUBACK");
    assert_eq!(ack.reason_code, ReasonCode::NotAuthorized);
}

#[tokio::test]
async fn sys_topics_are_visible_only_where_a_rule_names_them() {
    let files = Files::new("sys");
    let gateway = acl_gateway(&files, ACL, true).await;
    let mut alice = client(gateway.addr, ProtocolVersion::V5, "a", "alice", "a-pass").await;
    let ack = alice
        .subscribe_with(
            vec![mqtt_codec::Subscription {
                filter: ByteStr::from("$SYS/#"),
                options: options(QoS::AtMostOnce),
            }],
            Default::default(),
        )
        .await;
    assert_eq!(ack.reason_codes, [ReasonCode::NotAuthorized]);
    let mut admin = client(
        gateway.addr,
        ProtocolVersion::V5,
        "b",
        "admin",
        "admin-pass",
    )
    .await;
    admin.subscribe("$SYS/#", QoS::AtMostOnce).await;
    assert!(admin.expect_message().await.topic.starts_with("$SYS/"));
}

#[tokio::test]
async fn a_reload_changes_what_a_connected_client_may_do_and_a_broken_file_changes_nothing() {
    let files = Files::new("reload");
    let gateway = acl_gateway(&files, ACL, false).await;
    let mut alice = client(gateway.addr, ProtocolVersion::V5, "a", "alice", "a-pass").await;
    let publish = |topic: &str| publish_packet(topic, "x", QoS::AtLeastOnce, false);
    let refused = alice
        .publish_packet(publish("shared/x"))
        .await
        .expect("PUBACK");
    assert_eq!(refused.reason_code, ReasonCode::NotAuthorized);

    files.write("acl", &format!("{ACL}\nuser alice\ntopic write shared/#\n"));
    gateway.reload();
    let accepted = alice
        .publish_packet(publish("shared/x"))
        .await
        .expect("PUBACK");
    assert_ne!(
        accepted.reason_code,
        ReasonCode::NotAuthorized,
        "same connection"
    );

    files.write("acl", "user alice\nfrobnicate shared/#\n");
    gateway.reload();
    let still = alice
        .publish_packet(publish("shared/y"))
        .await
        .expect("PUBACK");
    assert_ne!(
        still.reason_code,
        ReasonCode::NotAuthorized,
        "the old ACL stays"
    );
}

fn token(claims: serde_json::Value) -> String {
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET),
    )
    .expect("sign")
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

async fn token_gateway(files: &Files, acl: Option<&str>) -> TestGateway {
    let secret = files.write("jwt-secret", std::str::from_utf8(SECRET).expect("text"));
    let acl = acl.map(|text| files.write("acl", text));
    TestGateway::start_with(move |config| {
        config.security.jwt_secret_file = Some(secret);
        config.security.acl_file = acl;
        config.security.admin_users = vec!["dashboard-7".into()];
    })
    .await
}

#[tokio::test]
async fn tokens_name_their_subject_and_are_refused_when_expired_or_early() {
    let files = Files::new("tokens");
    let gateway = token_gateway(&files, None).await;
    let addr = gateway.addr;
    let valid = token(serde_json::json!({"sub": "dashboard-7", "exp": now() + 600}));
    let connect = with_credentials(ProtocolVersion::V5, "dash", None, Some(&valid));
    let (_dash, connack) = TestClient::connect_accepted(addr, connect).await;
    assert_eq!(connack.reason_code, ReasonCode::Success);
    let clients = get_as(gateway.http, "/api/v1/clients", &format!("Bearer {valid}"))
        .await
        .json();
    assert_eq!(clients[0]["username"], "dashboard-7");

    for (claims, user) in [
        (serde_json::json!({"sub": "a", "exp": now() - 3600}), None),
        (
            serde_json::json!({"sub": "a", "exp": now() + 7200, "nbf": now() + 3600}),
            None,
        ),
        (
            serde_json::json!({"sub": "a", "exp": now() + 600}),
            Some("b"),
        ),
    ] {
        let connect = with_credentials(ProtocolVersion::V5, "x", user, Some(&token(claims)));
        assert_eq!(
            connack_for(addr, connect).await,
            ReasonCode::BadUserNameOrPassword
        );
    }
    let forged = encode(
        &Header::default(),
        &serde_json::json!({"sub": "a", "exp": now() + 600}),
        &EncodingKey::from_secret(b"someone else's secret of sufficient length"),
    )
    .expect("sign");
    // 3.1.1 has no password without a user name [MQTT-3.1.2-22]: the token's subject.
    let connect = with_credentials(ProtocolVersion::V311, "y", Some("a"), Some(&forged));
    assert_eq!(
        connack_for(addr, connect).await,
        ReasonCode::BadUserNameOrPassword
    );
}

#[tokio::test]
async fn a_token_that_expires_mid_session_closes_its_connection() {
    let files = Files::new("expiry");
    let gateway = token_gateway(&files, None).await;
    let short = token(serde_json::json!({"sub": "brief", "exp": now() + 2}));
    let connect = with_credentials(ProtocolVersion::V5, "brief", None, Some(&short));
    let (mut client, _) = TestClient::connect_accepted(gateway.addr, connect).await;
    let disconnect = tokio::time::timeout(Duration::from_secs(5), client.expect_packet())
        .await
        .expect("DISCONNECT within 5 s");
    match disconnect {
        Packet::Disconnect(d) => assert_eq!(d.reason_code, ReasonCode::MaximumConnectTime),
        other => panic!("expected DISCONNECT 0xA0, got {other:?}"),
    }
    client.expect_closed().await;
}

#[tokio::test]
async fn a_token_s_topic_claim_restricts_its_bearer_within_the_acl() {
    let files = Files::new("claims");
    let gateway = token_gateway(&files, Some("pattern readwrite devices/%u/#\n")).await;
    let claims = serde_json::json!({
        "sub": "d7", "exp": now() + 600,
        "mqtt": {"publish": ["devices/d7/telemetry"], "subscribe": ["devices/d7/commands"]}
    });
    let connect = with_credentials(ProtocolVersion::V5, "d7", None, Some(&token(claims)));
    let (mut device, _) = TestClient::connect_accepted(gateway.addr, connect).await;
    let ok = device
        .publish_packet(publish_packet(
            "devices/d7/telemetry",
            "1",
            QoS::AtLeastOnce,
            false,
        ))
        .await
        .expect("PUBACK");
    assert_ne!(ok.reason_code, ReasonCode::NotAuthorized);
    // The ACL allows devices/d7/#, the token only its two topics.
    let refused = device
        .publish_packet(publish_packet(
            "devices/d7/status",
            "1",
            QoS::AtLeastOnce,
            false,
        ))
        .await
        .expect("PUBACK");
    assert_eq!(refused.reason_code, ReasonCode::NotAuthorized);
    // The token allows nothing the ACL does not.
    let claims = serde_json::json!({"sub": "d8", "exp": now() + 600, "mqtt": {"publish": ["#"]}});
    let connect = with_credentials(ProtocolVersion::V5, "d8", None, Some(&token(claims)));
    let (mut other, _) = TestClient::connect_accepted(gateway.addr, connect).await;
    let refused = other
        .publish_packet(publish_packet(
            "devices/d7/telemetry",
            "1",
            QoS::AtLeastOnce,
            false,
        ))
        .await
        .expect("PUBACK");
    assert_eq!(refused.reason_code, ReasonCode::NotAuthorized);
}

#[tokio::test]
async fn repeated_failures_lock_an_address_out_even_with_the_right_password() {
    let files = Files::new("lockout");
    let passwords = files.passwords(&[("alice", "right")]);
    let gateway = TestGateway::start_with(security(|s| {
        s.password_file = Some(passwords);
        s.admin_users = vec!["alice".into()];
        s.lockout = LockoutPolicy {
            threshold: 3,
            ..LockoutPolicy::default()
        };
    }))
    .await;
    for attempt in 0..3 {
        let wrong = with_credentials(ProtocolVersion::V5, "a", Some("alice"), Some("wrong"));
        assert_eq!(
            connack_for(gateway.addr, wrong).await,
            ReasonCode::BadUserNameOrPassword,
            "attempt {attempt}"
        );
    }
    let right = with_credentials(ProtocolVersion::V5, "a", Some("alice"), Some("right"));
    assert_eq!(
        connack_for(gateway.addr, right).await,
        ReasonCode::NotAuthorized,
        "locked out: the password is not even checked"
    );
    // Read from another loopback address: this one is locked out of the HTTP API as well.
    let metrics = get_from_other_address(gateway.http, "/metrics").await;
    for line in [
        "mqtt_auth_locked_addresses 1",
        "mqtt_auth_refused_total{reason=\"locked_out\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
}

#[tokio::test]
async fn connections_beyond_the_limit_per_address_are_refused_and_counted() {
    let gateway = TestGateway::start_with(|config| config.max_connections_per_ip = Some(2)).await;
    let _first = TestClient::v5(gateway.addr, "one").await;
    let _second = TestClient::v5(gateway.addr, "two").await;
    let mut third = TestClient::open(gateway.addr).await;
    third.expect_closed().await;
    drop(_first);
    // The place is given back once the first connection's task ends.
    let mut fourth = None;
    for _ in 0..50 {
        let mut client = TestClient::open(gateway.addr).await;
        client
            .send(Packet::Connect(connect_packet(ProtocolVersion::V5, "four")))
            .await;
        if let Some(Packet::ConnAck(_)) = client.try_packet(QUIET).await {
            fourth = Some(client);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(fourth.is_some(), "a place frees up when a connection ends");
    let metrics = get(gateway.http, "/metrics").await.text();
    assert!(
        metrics.lines().any(
            |l| l.starts_with("mqtt_connections_refused_per_address_total ") && !l.ends_with(" 0")
        ),
        "{metrics}"
    );
}
