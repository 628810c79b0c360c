//! MQTT 5.0 enhanced authentication with `SCRAM-SHA-256` over real connections, spoken by a
//! small SCRAM client written here from RFC 5802 (its own PBKDF2/HMAC steps, sharing nothing
//! with the gateway's code): success with a server signature the client checks, wrong
//! passwords and unknown users refused alike (0x86, same shape of server-first message),
//! malformed messages (0x80), re-authentication (AUTH 0x00 or DISCONNECT), the ACL applied to
//! the SCRAM user, the lock-out, reloads, an exchange that another connection cannot finish,
//! and a login over WebSocket, the browser's way in.

use crate::common::*;
use crate::security::Files;
use crate::web_support::http_request;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use mqtt_codec::{
    AuthPacket, ByteStr, ConnAckPacket, ConnectPacket, Packet, Properties, ProtocolVersion, QoS,
    ReasonCode, Subscription,
};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;

const METHOD: &str = "SCRAM-SHA-256";

/// The client's side of one exchange.
struct ScramClient {
    password: String,
    nonce: String,
    first_bare: String,
    /// The ServerSignature the server-final message must carry, once the final one is made.
    expected_signature: Option<Vec<u8>>,
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

impl ScramClient {
    fn new(user: &str, password: &str) -> ScramClient {
        use rand::Rng;
        let nonce: String = rand::thread_rng()
            .sample_iter(rand::distributions::Alphanumeric)
            .take(24)
            .map(char::from)
            .collect();
        let name = user.replace('=', "=3D").replace(',', "=2C");
        ScramClient {
            password: password.to_string(),
            first_bare: format!("n={name},r={nonce}"),
            nonce,
            expected_signature: None,
        }
    }

    fn client_first(&self) -> String {
        format!("n,,{}", self.first_bare)
    }

    /// The client-final message answering `server_first`.
    fn client_final(&mut self, server_first: &str) -> String {
        let mut combined = None;
        let mut salt = None;
        let mut iterations = None;
        for attribute in server_first.split(',') {
            match attribute.split_once('=') {
                Some(("r", value)) => combined = Some(value.to_string()),
                Some(("s", value)) => salt = Some(STANDARD.decode(value).expect("base64 salt")),
                Some(("i", value)) => iterations = Some(value.parse::<u32>().expect("count")),
                _ => {}
            }
        }
        let combined = combined.expect("r= in server-first");
        assert!(
            combined.starts_with(&self.nonce) && combined.len() > self.nonce.len(),
            "the server's nonce extends ours"
        );
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(
            self.password.as_bytes(),
            &salt.expect("s= in server-first"),
            iterations.expect("i= in server-first"),
            &mut salted,
        );
        let client_key = hmac(&salted, b"Client Key");
        let stored_key = Sha256::digest(&client_key);
        let without_proof = format!("c=biws,r={combined}");
        let auth_message = format!("{},{server_first},{without_proof}", self.first_bare);
        let signature = hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = hmac(&salted, b"Server Key");
        self.expected_signature = Some(hmac(&server_key, auth_message.as_bytes()));
        format!("{without_proof},p={}", STANDARD.encode(proof))
    }

    /// Whether `server_final` proves the server knows the verifier.
    fn verifies(&self, server_final: &[u8]) -> bool {
        let expected = self
            .expected_signature
            .as_ref()
            .expect("final message made");
        server_final == format!("v={}", STANDARD.encode(expected)).as_bytes()
    }
}

fn scram_properties(data: &str) -> Properties {
    Properties {
        authentication_method: Some(ByteStr::from(METHOD)),
        authentication_data: Some(Bytes::copy_from_slice(data.as_bytes())),
        ..Properties::default()
    }
}

fn scram_connect(client_id: &str, client_first: &str) -> ConnectPacket {
    let mut connect = connect_packet(ProtocolVersion::V5, client_id);
    connect.properties = scram_properties(client_first);
    connect
}

fn auth(reason_code: ReasonCode, data: &str) -> Packet {
    Packet::Auth(AuthPacket {
        reason_code,
        properties: scram_properties(data),
    })
}

/// The server-first message of an AUTH 0x18, checking the method.
fn server_first_of(packet: &Packet) -> String {
    match packet {
        Packet::Auth(auth) if auth.reason_code == ReasonCode::ContinueAuthentication => {
            assert_eq!(
                auth.properties.authentication_method.as_deref(),
                Some(METHOD)
            );
            let data = auth.properties.authentication_data.as_deref();
            String::from_utf8(data.expect("server-first").to_vec()).expect("UTF-8")
        }
        other => panic!("expected AUTH 0x18, got {other:?}"),
    }
}

/// A connection that sent its SCRAM CONNECT and got the server-first message.
async fn begin(addr: SocketAddr, client_id: &str, client: &ScramClient) -> (TestClient, String) {
    let mut connection = TestClient::open(addr).await;
    let connect = scram_connect(client_id, &client.client_first());
    connection.send(Packet::Connect(connect)).await;
    let server_first = server_first_of(&connection.expect_packet().await);
    (connection, server_first)
}

async fn expect_connack(connection: &mut TestClient) -> ConnAckPacket {
    match connection.expect_packet().await {
        Packet::ConnAck(connack) => connack,
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

/// A whole SCRAM login: the CONNACK, whose server signature, on success, the client checked.
async fn login(
    addr: SocketAddr,
    client_id: &str,
    user: &str,
    password: &str,
) -> (TestClient, ConnAckPacket) {
    let mut client = ScramClient::new(user, password);
    let (mut connection, server_first) = begin(addr, client_id, &client).await;
    let last = client.client_final(&server_first);
    connection
        .send(auth(ReasonCode::ContinueAuthentication, &last))
        .await;
    let connack = expect_connack(&mut connection).await;
    if connack.reason_code == ReasonCode::Success {
        assert_eq!(
            connack.properties.authentication_method.as_deref(),
            Some(METHOD)
        );
        let server_final = connack.properties.authentication_data.as_deref();
        assert!(
            client.verifies(server_final.expect("server-final in the CONNACK")),
            "the server's signature checks out"
        );
    }
    (connection, connack)
}

async fn logged_in(addr: SocketAddr, client_id: &str, user: &str, password: &str) -> TestClient {
    let (connection, connack) = login(addr, client_id, user, password).await;
    assert_eq!(connack.reason_code, ReasonCode::Success, "{connack:?}");
    connection
}

/// Re-authenticates on a connected client: the packet that ends the exchange (AUTH 0x00 with
/// a checked signature, or DISCONNECT).
async fn reauthenticate(connection: &mut TestClient, user: &str, password: &str) -> Packet {
    let mut client = ScramClient::new(user, password);
    connection
        .send(auth(ReasonCode::ReAuthenticate, &client.client_first()))
        .await;
    let answer = connection.expect_packet().await;
    if matches!(answer, Packet::Disconnect(_)) {
        return answer;
    }
    let last = client.client_final(&server_first_of(&answer));
    connection
        .send(auth(ReasonCode::ContinueAuthentication, &last))
        .await;
    let end = connection.expect_packet().await;
    if let Packet::Auth(success) = &end {
        assert_eq!(success.reason_code, ReasonCode::Success);
        assert_eq!(
            success.properties.authentication_method.as_deref(),
            Some(METHOD)
        );
        let server_final = success.properties.authentication_data.as_deref();
        assert!(client.verifies(server_final.expect("server-final in the AUTH")));
    }
    end
}

/// A gateway with alice, bob and the admin in its password file, an ACL giving each user
/// their own subtree, and anonymous clients refused.
async fn scram_gateway(
    files: &Files,
    adjust: impl FnOnce(&mut gateway::config::GatewayConfig),
) -> TestGateway {
    let passwords = files.passwords(&[
        ("alice", "alice's password"),
        ("bob", "bob's password"),
        ("admin", "admin password"),
    ]);
    let acl = files.write(
        "acl",
        "user alice\ntopic readwrite alice/#\nuser bob\ntopic readwrite bob/#\nuser admin\ntopic readwrite #\n",
    );
    TestGateway::start_with(move |config| {
        config.security.password_file = Some(passwords);
        config.security.acl_file = Some(acl);
        config.security.admin_users = vec!["admin".into()];
        adjust(config);
    })
    .await
}

#[tokio::test]
async fn a_scram_login_succeeds_without_a_connect_password_and_proves_the_server() {
    let files = Files::new("scram-login");
    let gateway = scram_gateway(&files, |_| {}).await;
    let mut alice = logged_in(gateway.addr, "alice-1", "alice", "alice's password").await;
    alice.subscribe("alice/#", QoS::AtLeastOnce).await;
    alice.publish("alice/x", "hello", QoS::AtLeastOnce).await;
    assert_eq!(alice.expect_message().await.topic, "alice/x");

    // The CONNECT may name the user too, as long as it is the same one.
    let mut client = ScramClient::new("bob", "bob's password");
    let mut connect = scram_connect("bob-1", &client.client_first());
    connect.username = Some(ByteStr::from("bob"));
    let mut connection = TestClient::open(gateway.addr).await;
    connection.send(Packet::Connect(connect)).await;
    let server_first = server_first_of(&connection.expect_packet().await);
    let last = client.client_final(&server_first);
    connection
        .send(auth(ReasonCode::ContinueAuthentication, &last))
        .await;
    assert_eq!(
        expect_connack(&mut connection).await.reason_code,
        ReasonCode::Success
    );

    // The session belongs to the SCRAM user (the API shows it).
    let admin = format!("Basic {}", STANDARD.encode("admin:admin password"));
    let clients = http_request(
        gateway.http,
        "GET",
        "/api/v1/clients",
        &[("Authorization", &admin)],
    )
    .await
    .json();
    let alice_entry = clients
        .as_array()
        .expect("a list")
        .iter()
        .find(|c| c["id"] == "alice-1")
        .unwrap_or_else(|| panic!("alice-1 in {clients}"));
    assert_eq!(alice_entry["username"], "alice", "{alice_entry}");
}

#[tokio::test]
async fn wrong_passwords_and_unknown_users_get_0x86_after_the_same_exchange() {
    let files = Files::new("scram-refused");
    // A user from Mosquitto's file (no SCRAM verifier) beside those of `gateway passwd`.
    let mut text = std::fs::read_to_string(files.passwords(&[("alice", "alice's password")]))
        .expect("read passwords");
    text.push_str("legacy:$7$101$MDEyMzQ1Njc4OWFi$EO/lLlkeUgIiBaS8G8UK0ZMP1u508TA7Tl+AdJ1cEsmlbGyEPAERErpfq84j1kepISs0UzmcdL4ucgZ2uodxfQ==\n");
    let passwords = files.write("passwords", &text);
    let gateway = TestGateway::start_with(move |config| {
        config.security.password_file = Some(passwords);
    })
    .await;

    let shape = |server_first: &str, client: &ScramClient| -> (usize, usize, String) {
        let parts: Vec<&str> = server_first.split(',').collect();
        assert_eq!(parts.len(), 3, "r=,s=,i=");
        let nonce = parts[0].strip_prefix("r=").expect("r=");
        assert!(nonce.starts_with(&client.nonce));
        let salt = parts[1].strip_prefix("s=").expect("s=");
        (nonce.len(), salt.len(), parts[2].to_string())
    };
    let mut shapes = Vec::new();
    let mut salts = Vec::new();
    for (user, password) in [
        ("alice", "not alice's password"),
        ("nobody", "a guess"),
        ("nobody", "another guess"),
        ("legacy", "secret"),
    ] {
        let mut client = ScramClient::new(user, password);
        let (mut connection, server_first) = begin(gateway.addr, "guesser", &client).await;
        shapes.push(shape(&server_first, &client));
        salts.push((user, server_first.split(',').nth(1).map(str::to_string)));
        let last = client.client_final(&server_first);
        connection
            .send(auth(ReasonCode::ContinueAuthentication, &last))
            .await;
        let connack = expect_connack(&mut connection).await;
        assert_eq!(
            connack.reason_code,
            ReasonCode::BadUserNameOrPassword,
            "{user}"
        );
        assert_eq!(connack.properties.authentication_data, None, "{user}");
        connection.expect_closed().await;
    }
    assert!(
        shapes.windows(2).all(|pair| pair[0] == pair[1]),
        "the same shape for every user: {shapes:?}"
    );
    assert_eq!(shapes[0].2, "i=4096");
    assert_eq!(
        salts[1].1, salts[2].1,
        "an unknown user's salt does not change"
    );
    assert_ne!(salts[0].1, salts[1].1);
    // The right password of a user without a verifier still works without SCRAM.
    let mut connect = connect_packet(ProtocolVersion::V5, "legacy");
    connect.username = Some(ByteStr::from("legacy"));
    connect.password = Some(Bytes::from_static(b"secret"));
    TestClient::connect_accepted(gateway.addr, connect).await;
}

#[tokio::test]
async fn malformed_scram_messages_get_0x80() {
    let files = Files::new("scram-malformed");
    let gateway = scram_gateway(&files, |_| {}).await;
    for first in [
        "",
        "garbage",
        "p=tls-server-end-point,,n=alice,r=abc",
        "n,,m=ext,n=alice,r=abc",
        "n,,n=alice",
    ] {
        let (_, connack) =
            TestClient::connect_with(gateway.addr, scram_connect("bad", first)).await;
        assert_eq!(
            connack.reason_code,
            ReasonCode::UnspecifiedError,
            "{first:?}"
        );
    }
    // A well-formed start, then a final message that does not parse or does not match.
    let finals: [fn(&str) -> String; 3] = [
        |_: &str| "p=AAAA".to_string(),
        |combined: &str| format!("c=biws,r={combined},p=AAAA"),
        |combined: &str| format!("c=eSws,r={combined},p={}", STANDARD.encode([0u8; 32])),
    ];
    for last in finals {
        let client = ScramClient::new("alice", "alice's password");
        let (mut connection, server_first) = begin(gateway.addr, "bad", &client).await;
        let combined = server_first
            .split(',')
            .next()
            .and_then(|r| r.strip_prefix("r="))
            .expect("r=");
        connection
            .send(auth(ReasonCode::ContinueAuthentication, &last(combined)))
            .await;
        assert_eq!(
            expect_connack(&mut connection).await.reason_code,
            ReasonCode::UnspecifiedError
        );
    }
}

#[tokio::test]
async fn re_authentication_succeeds_or_disconnects() {
    let files = Files::new("scram-reauth");
    let gateway = scram_gateway(&files, |_| {}).await;
    let mut alice = logged_in(gateway.addr, "alice-re", "alice", "alice's password").await;
    for round in 0..2 {
        let end = reauthenticate(&mut alice, "alice", "alice's password").await;
        assert!(
            matches!(&end, Packet::Auth(a) if a.reason_code == ReasonCode::Success),
            "round {round}: {end:?}"
        );
    }
    alice.subscribe("alice/#", QoS::AtMostOnce).await;

    // A wrong password ends the connection with DISCONNECT 0x87 (DISCONNECT has no 0x86).
    let end = reauthenticate(&mut alice, "alice", "wrong").await;
    assert!(
        matches!(&end, Packet::Disconnect(d) if d.reason_code == ReasonCode::NotAuthorized),
        "{end:?}"
    );
    alice.expect_closed().await;

    // Another user, even with their right password: 0x87 at once.
    let mut alice = logged_in(gateway.addr, "alice-re", "alice", "alice's password").await;
    let end = reauthenticate(&mut alice, "bob", "bob's password").await;
    assert!(
        matches!(&end, Packet::Disconnect(d) if d.reason_code == ReasonCode::NotAuthorized),
        "{end:?}"
    );
    alice.expect_closed().await;

    // A client that connected with a password has no method to re-authenticate with.
    let mut connect = connect_packet(ProtocolVersion::V5, "bob-password");
    connect.username = Some(ByteStr::from("bob"));
    connect.password = Some(Bytes::from_static(b"bob's password"));
    let (mut bob, _) = TestClient::connect_accepted(gateway.addr, connect).await;
    let end = reauthenticate(&mut bob, "bob", "bob's password").await;
    assert!(
        matches!(&end, Packet::Disconnect(d) if d.reason_code == ReasonCode::ProtocolError),
        "{end:?}"
    );
}

#[tokio::test]
async fn the_acl_applies_to_the_scram_user() {
    let files = Files::new("scram-acl");
    let gateway = scram_gateway(&files, |_| {}).await;
    let mut alice = logged_in(gateway.addr, "alice-acl", "alice", "alice's password").await;
    let ack = alice
        .subscribe_with(
            vec![
                Subscription {
                    filter: ByteStr::from("alice/#"),
                    options: options(QoS::AtLeastOnce),
                },
                Subscription {
                    filter: ByteStr::from("bob/#"),
                    options: options(QoS::AtLeastOnce),
                },
            ],
            Properties::default(),
        )
        .await;
    assert_eq!(
        ack.reason_codes,
        [ReasonCode::GrantedQoS1, ReasonCode::NotAuthorized]
    );
    let ack = alice
        .publish_packet(publish_packet("bob/x", "no", QoS::AtLeastOnce, false))
        .await
        .expect("PUBACK");
    assert_eq!(ack.reason_code, ReasonCode::NotAuthorized);
    let mut bob = logged_in(gateway.addr, "bob-acl", "bob", "bob's password").await;
    bob.publish("alice/for-alice", "yes", QoS::AtLeastOnce)
        .await;
    bob.expect_silence(QUIET).await;
    alice.expect_silence(QUIET).await;
    // Bob's `#` is granted (it overlaps bob/#), and what it catches is filtered by what he may
    // read: alice's message reaches her, not him; his own reaches him, and it is the first.
    bob.subscribe("#", QoS::AtLeastOnce).await;
    alice.publish("alice/own", "mine", QoS::AtLeastOnce).await;
    assert_eq!(alice.expect_message().await.topic, "alice/own");
    bob.publish("bob/own", "his", QoS::AtLeastOnce).await;
    assert_eq!(bob.expect_message().await.topic, "bob/own");
}

#[tokio::test]
async fn an_exchange_cannot_be_finished_by_another_connection_or_user() {
    let files = Files::new("scram-binding");
    let gateway = scram_gateway(&files, |_| {}).await;
    // Two connections with one client identifier: alice's and bob's exchanges.
    let mut alice = ScramClient::new("alice", "alice's password");
    let (mut alice_connection, alice_first) = begin(gateway.addr, "shared", &alice).await;
    let bob = ScramClient::new("bob", "bob's password");
    let (mut bob_connection, _) = begin(gateway.addr, "shared", &bob).await;
    // Bob's connection sends alice's (valid) final message: it is being accepted as bob.
    let alice_last = alice.client_final(&alice_first);
    bob_connection
        .send(auth(ReasonCode::ContinueAuthentication, &alice_last))
        .await;
    assert_eq!(
        expect_connack(&mut bob_connection).await.reason_code,
        ReasonCode::NotAuthorized
    );
    // Alice's exchange is still hers to finish.
    alice_connection
        .send(auth(ReasonCode::ContinueAuthentication, &alice_last))
        .await;
    let connack = expect_connack(&mut alice_connection).await;
    assert_eq!(connack.reason_code, ReasonCode::Success);
    assert!(
        alice.verifies(
            connack
                .properties
                .authentication_data
                .as_deref()
                .expect("v=")
        )
    );
}

#[tokio::test]
async fn failed_scram_logins_count_towards_the_lock_out() {
    let files = Files::new("scram-lockout");
    let gateway = scram_gateway(&files, |config| config.security.lockout.threshold = 3).await;
    for attempt in 0..3 {
        let (_, connack) = login(gateway.addr, "guesser", "alice", "guess").await;
        assert_eq!(
            connack.reason_code,
            ReasonCode::BadUserNameOrPassword,
            "attempt {attempt}"
        );
    }
    let client = ScramClient::new("alice", "alice's password");
    let (_, connack) =
        TestClient::connect_with(gateway.addr, scram_connect("alice", &client.client_first()))
            .await;
    assert_eq!(
        connack.reason_code,
        ReasonCode::NotAuthorized,
        "locked out: no exchange at all"
    );
}

#[tokio::test]
async fn a_reload_brings_new_passwords_to_scram() {
    let files = Files::new("scram-reload");
    let gateway = scram_gateway(&files, |_| {}).await;
    let path = files.passwords(&[("alice", "the new one")]);
    assert!(
        std::fs::read_to_string(path)
            .expect("read")
            .contains(":SCRAM-SHA-256$4096:")
    );
    gateway.reload();
    let (_, connack) = login(gateway.addr, "a", "alice", "alice's password").await;
    assert_eq!(connack.reason_code, ReasonCode::BadUserNameOrPassword);
    logged_in(gateway.addr, "a", "alice", "the new one").await;
    let (_, connack) = login(gateway.addr, "b", "bob", "bob's password").await;
    assert_eq!(
        connack.reason_code,
        ReasonCode::BadUserNameOrPassword,
        "bob is gone"
    );
}

#[tokio::test]
async fn other_ways_in_are_unchanged_and_other_methods_get_0x8c() {
    let files = Files::new("scram-others");
    let gateway = scram_gateway(&files, |_| {}).await;
    let mut connect = connect_packet(ProtocolVersion::V5, "password-user");
    connect.username = Some(ByteStr::from("alice"));
    connect.password = Some(Bytes::from_static(b"alice's password"));
    TestClient::connect_accepted(gateway.addr, connect).await;
    let (_, connack) =
        TestClient::connect_with(gateway.addr, connect_packet(ProtocolVersion::V5, "anon")).await;
    assert_eq!(connack.reason_code, ReasonCode::NotAuthorized, "anonymous");

    let mut other = connect_packet(ProtocolVersion::V5, "other-method");
    other.properties.authentication_method = Some(ByteStr::from("SCRAM-SHA-1"));
    let (_, connack) = TestClient::connect_with(gateway.addr, other).await;
    assert_eq!(connack.reason_code, ReasonCode::BadAuthenticationMethod);

    // A CONNECT User Name that is not the SCRAM user: 0x86, before any exchange.
    let client = ScramClient::new("alice", "alice's password");
    let mut connect = scram_connect("mismatch", &client.client_first());
    connect.username = Some(ByteStr::from("bob"));
    let (_, connack) = TestClient::connect_with(gateway.addr, connect).await;
    assert_eq!(connack.reason_code, ReasonCode::BadUserNameOrPassword);
}

#[tokio::test]
async fn without_a_password_file_scram_is_an_unknown_method() {
    let files = Files::new("scram-none");
    let secret = files.write(
        "jwt-secret",
        "an HS256 secret long enough for the token keys",
    );
    for security in [false, true] {
        let secret = secret.clone();
        let gateway = TestGateway::start_with(move |config| {
            if security {
                config.security.jwt_secret_file = Some(secret);
            }
        })
        .await;
        let client = ScramClient::new("alice", "alice's password");
        let (_, connack) =
            TestClient::connect_with(gateway.addr, scram_connect("alice", &client.client_first()))
                .await;
        assert_eq!(
            connack.reason_code,
            ReasonCode::BadAuthenticationMethod,
            "security configured: {security}"
        );
    }
}

#[tokio::test]
async fn a_scram_login_over_websocket() {
    let files = Files::new("scram-ws");
    let passwords = files.passwords(&[("dashboard", "dashboard password")]);
    let harness = crate::web_support::Harness::start_with(move |config| {
        config.security.password_file = Some(passwords);
    })
    .await;
    let mut client = ScramClient::new("dashboard", "dashboard password");
    let mut connection =
        crate::web_support::Client::open_ws(&harness.ws_url(), ProtocolVersion::V5).await;
    let connect = scram_connect("dashboard-ws", &client.client_first());
    connection.send(&Packet::Connect(connect)).await;
    let server_first = server_first_of(&connection.expect_packet().await);
    let last = client.client_final(&server_first);
    connection
        .send(&auth(ReasonCode::ContinueAuthentication, &last))
        .await;
    match connection.expect_packet().await {
        Packet::ConnAck(connack) => {
            assert_eq!(connack.reason_code, ReasonCode::Success);
            let server_final = connack.properties.authentication_data.as_deref();
            assert!(client.verifies(server_final.expect("v=")));
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
    connection.subscribe("dashboard/#", QoS::AtMostOnce).await;
}

/// The whole handshake up to CONNACK is bounded by `--connect-timeout`, not only the wait for
/// CONNECT: a client that sends its SCRAM CONNECT, gets the server-first AUTH 0x18 and then
/// says nothing is closed at the connect timeout (without a CONNACK: it was never accepted),
/// instead of holding its connection and exchange forever. One that finishes within the
/// timeout is not cut off after it.
#[tokio::test]
async fn an_exchange_left_unanswered_is_closed_at_the_connect_timeout() {
    let files = Files::new("scram-stalled");
    let gateway = scram_gateway(&files, |config| {
        config.connect_timeout = std::time::Duration::from_secs(1);
    })
    .await;

    let client = ScramClient::new("alice", "alice's password");
    let (mut stalled, _server_first) = begin(gateway.addr, "stalled", &client).await;
    // Open until shortly before the 1 s timeout, closed by 1 s after it at the latest.
    stalled
        .expect_silence(std::time::Duration::from_millis(700))
        .await;
    stalled
        .expect_closed_within(std::time::Duration::from_millis(1300))
        .await;

    // A login that ends in time stays connected past the timeout.
    let mut alice = logged_in(gateway.addr, "alice-1", "alice", "alice's password").await;
    alice
        .expect_silence(std::time::Duration::from_millis(1500))
        .await;
    alice.ping().await;
    alice.disconnect().await;
    gateway.shutdown(WAIT).await;
}
