//! Credentials checked before CONNECT ([`Authentication`]) and the permissions they carry:
//! refusals with the right CONNACK per version, publications, subscriptions and deliveries
//! governed by the client's [`Permissions`], the verified user name, and expiry mid-session.

use crate::common::*;
use broker_core::{Authentication, DropReason, Grant, Permissions};
use mqtt_codec::{ByteStr, Packet, QoS, ReasonCode, topic};
use std::time::Instant;

/// Grants reading `read` filters and writing `write` filters, and counts the questions asked.
#[derive(Debug, Default)]
struct Filters {
    read: Vec<&'static str>,
    write: Vec<&'static str>,
}

impl Permissions for Filters {
    fn may_publish(&mut self, topic_name: &str) -> bool {
        self.write.iter().any(|f| topic::matches(f, topic_name))
    }

    fn may_subscribe(&mut self, filter: &str) -> bool {
        self.read.iter().any(|f| topic::filters_overlap(f, filter))
    }

    fn may_receive(&mut self, topic_name: &str) -> bool {
        self.read.iter().any(|f| topic::matches(f, topic_name))
    }
}

fn verified(read: &[&'static str], write: &[&'static str]) -> Authentication {
    Authentication::Verified(Box::new(Grant {
        username: None,
        permissions: Some(Box::new(Filters {
            read: read.to_vec(),
            write: write.to_vec(),
        })),
        valid_until: None,
    }))
}

#[test]
fn refused_credentials_get_the_version_s_connack_code() {
    let cases = [
        (v5("a"), ReasonCode::BadUserNameOrPassword, 0x86),
        (v5("b"), ReasonCode::NotAuthorized, 0x87),
        (v311("c"), ReasonCode::BadUserNameOrPassword, 0x04),
        (v311("d"), ReasonCode::NotAuthorized, 0x05),
    ];
    for (index, (connect, reason, wire)) in cases.into_iter().enumerate() {
        let mut h = Harness::new();
        let connection = broker_core::ConnectionId(index as u64 + 1);
        let protocol = connect.protocol;
        let outputs = h.connect_with(connection, connect, Authentication::Refused(reason));
        assert!(closed(&outputs, connection));
        let Some(broker_core::Output::Send { frame, .. }) = outputs.first() else {
            panic!("no CONNACK: {outputs:#?}");
        };
        // The return code as a client of that version reads it: the fourth byte.
        assert_eq!(frame.bytes[3], wire, "{protocol:?} {reason:?}");
        assert_eq!(h.broker.stats().auth_failures, 1);
    }
}

#[test]
fn publications_outside_the_write_grants_are_refused_and_not_delivered() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("watcher"));
    h.subscribe(A, "#", QoS::AtLeastOnce);
    let outputs = h.connect_with(B, v5("device"), verified(&[], &["devices/7/#"]));
    assert_eq!(connack(&outputs, B).reason_code, ReasonCode::Success);

    let outputs = h.publish(B, qos1("devices/7/temp", "21", 1));
    assert_eq!(payloads(&outputs, A), ["21"]);
    assert_eq!(acks(&outputs, B, is_puback), [(1, ReasonCode::Success)]);

    let outputs = h.publish(B, qos1("devices/8/temp", "22", 2));
    assert!(
        payloads(&outputs, A).is_empty(),
        "a refused PUBLISH is dropped"
    );
    assert_eq!(
        acks(&outputs, B, is_puback),
        [(2, ReasonCode::NotAuthorized)]
    );
    assert!(!closed(&outputs, B), "and the client stays connected");
}

#[test]
fn subscriptions_that_can_receive_nothing_are_refused_per_version() {
    let mut h = Harness::new();
    h.connect_with(A, v5("five"), verified(&["sensors/#"], &[]));
    h.connect_with(B, v311("three"), verified(&["sensors/#"], &[]));
    for (connection, refused) in [
        (A, ReasonCode::NotAuthorized),
        (B, ReasonCode::UnspecifiedError),
    ] {
        let outputs = h.send(
            connection,
            Packet::Subscribe(subscribe_packet(
                1,
                &[
                    ("sensors/+/temp", options(QoS::AtMostOnce)),
                    ("admin/#", options(QoS::AtMostOnce)),
                ],
                None,
            )),
        );
        assert_eq!(
            suback(&outputs, connection).reason_codes,
            [granted(QoS::AtMostOnce), refused]
        );
    }
}

#[test]
fn a_granted_wildcard_never_delivers_a_topic_the_client_may_not_read() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    h.connect_with(B, v5("reader"), verified(&["public/#"], &[]));
    h.connect_with(C, v311("old-reader"), verified(&["public/#"], &[]));
    for connection in [B, C] {
        let outputs = h.subscribe(connection, "#", QoS::AtLeastOnce);
        assert_eq!(
            suback(&outputs, connection).reason_codes,
            [granted(QoS::AtLeastOnce)],
            "# overlaps public/#"
        );
    }
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
        let outputs = h.publish(A, publish_packet("public/news", qos, "yes", 1));
        assert_eq!(payloads(&outputs, B), ["yes"]);
        assert_eq!(payloads(&outputs, C), ["yes"]);
        let outputs = h.publish(A, publish_packet("private/diary", qos, "no", 2));
        assert!(payloads(&outputs, B).is_empty(), "{qos:?}");
        assert!(payloads(&outputs, C).is_empty(), "{qos:?}");
    }
    assert_eq!(
        h.broker.stats().dropped_for(DropReason::NotAuthorized),
        4,
        "two clients, two QoS"
    );
}

#[test]
fn retained_messages_on_unreadable_topics_are_not_sent_on_subscribe() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    h.publish(A, retained(qos0("public/a", "open")));
    h.publish(A, retained(qos0("private/b", "closed")));
    h.connect_with(B, v5("reader"), verified(&["public/#"], &[]));
    let outputs = h.subscribe(B, "#", QoS::AtMostOnce);
    assert_eq!(payloads(&outputs, B), ["open"]);
}

#[test]
fn messages_queued_while_offline_are_checked_when_the_client_returns() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    // First connected with wide permissions, subscribed, then gone.
    h.connect_with(B, v5_persistent("reader", 600), verified(&["#"], &[]));
    h.subscribe(B, "#", QoS::AtLeastOnce);
    h.lose(B);
    h.publish(A, qos1("public/x", "1", 1));
    h.publish(A, qos1("private/y", "2", 2));
    // Back with narrower ones: only what it may read now is delivered.
    let outputs = h.connect_with(
        C,
        v5_persistent("reader", 600),
        verified(&["public/#"], &[]),
    );
    assert_eq!(payloads(&outputs, C), ["1"]);
    assert_eq!(h.broker.stats().dropped_for(DropReason::NotAuthorized), 1);
}

#[test]
fn a_will_outside_the_write_grants_refuses_the_connect() {
    let mut h = Harness::new();
    let connect = with_will(v5("device"), will("alarms/all", "gone"));
    let outputs = h.connect_with(A, connect, verified(&[], &["devices/#"]));
    assert_eq!(connack(&outputs, A).reason_code, ReasonCode::NotAuthorized);
    let connect = with_will(v5("device"), will("devices/7/status", "gone"));
    let outputs = h.connect_with(B, connect, verified(&[], &["devices/#"]));
    assert_eq!(connack(&outputs, B).reason_code, ReasonCode::Success);
}

#[test]
fn the_verified_user_name_replaces_the_connect_s() {
    let mut h = Harness::new();
    let mut connect = v5("dash");
    connect.username = Some(ByteStr::from("claimed"));
    let grant = Grant {
        username: Some(ByteStr::from("token-subject")),
        ..Grant::default()
    };
    h.connect_with(A, connect, Authentication::Verified(Box::new(grant)));
    let clients = h.broker.clients();
    assert_eq!(clients[0].username.as_deref(), Some("token-subject"));
}

#[test]
fn the_connection_closes_when_its_credentials_expire() {
    let mut h = Harness::new();
    let valid_until: Instant = h.now + secs(30);
    let grant = Grant {
        valid_until: Some(valid_until),
        ..Grant::default()
    };
    h.connect_with(A, v5("five"), Authentication::Verified(Box::new(grant)));
    let grant = Grant {
        valid_until: Some(valid_until),
        ..Grant::default()
    };
    h.connect_with(B, v311("three"), Authentication::Verified(Box::new(grant)));
    let outputs = h.advance_and_tick(secs(29));
    assert!(!closed(&outputs, A) && !closed(&outputs, B));
    let outputs = h.advance_and_tick(secs(1));
    assert_disconnected(&outputs, A, ReasonCode::MaximumConnectTime);
    assert!(
        closed(&outputs, B),
        "a 3.1.1 client is closed without DISCONNECT"
    );
    assert_eq!(disconnect_reason(&outputs, B), None);
}
