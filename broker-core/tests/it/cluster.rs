//! What the core gives a cluster link: interest changes (first and last subscription to a
//! filter), the messages published here to forward, and messages from other nodes routed
//! locally but never forwarded again. Nothing of it happens on a single node.

use crate::common::*;
use broker_core::InterestChange::{self, Added, Removed};
use mqtt_codec::{Packet, QoS, ReasonCode};

fn sorted(mut changes: Vec<InterestChange>) -> Vec<InterestChange> {
    changes.sort_by_key(|change| format!("{change:?}"));
    changes
}

#[test]
fn a_single_node_records_nothing() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("a"));
    h.subscribe(A, "x/#", QoS::AtMostOnce);
    h.publish(A, qos0("x/1", "m"));
    assert!(h.broker.take_interest().is_empty());
    assert!(h.broker.take_forwards().is_empty());
}

#[test]
fn interest_follows_the_first_and_last_subscription_to_each_filter() {
    let mut h = Harness::new();
    // Subscribed before the link started: reported as added when it starts.
    h.connect_ok(A, v5("a"));
    h.subscribe(A, "x/#", QoS::AtMostOnce);
    h.broker.set_clustered();
    assert_eq!(h.broker.take_interest(), [Added("x/#".into())]);

    h.connect_ok(B, v5("b"));
    h.subscribe(B, "x/#", QoS::AtLeastOnce);
    // The same subscription again only changes its options.
    h.subscribe(B, "x/#", QoS::AtMostOnce);
    h.subscribe(B, "y/+", QoS::AtMostOnce);
    assert_eq!(h.broker.take_interest(), [Added("y/+".into())]);

    h.unsubscribe(A, &["x/#"]);
    assert!(
        h.broker.take_interest().is_empty(),
        "b still subscribes to x/#"
    );
    // A clean session's subscriptions end with it.
    h.disconnect(B);
    assert_eq!(
        sorted(h.broker.take_interest()),
        [Removed("x/#".into()), Removed("y/+".into())]
    );
}

#[test]
fn an_offline_persistent_session_keeps_its_interest() {
    let mut h = Harness::new();
    h.broker.set_clustered();
    h.connect_ok(A, v5_persistent("a", 3600));
    h.subscribe(A, "x/#", QoS::AtLeastOnce);
    h.disconnect(A);
    assert_eq!(
        h.broker.take_interest(),
        [Added("x/#".into())],
        "no removal while the session lives"
    );
    h.advance_and_tick(secs(3601));
    assert_eq!(
        h.broker.take_interest(),
        [Removed("x/#".into())],
        "gone with the expired session"
    );
}

#[test]
fn a_shared_group_counts_once_for_its_filter() {
    let mut h = Harness::new();
    h.broker.set_clustered();
    h.connect_ok(A, v5("a"));
    h.connect_ok(B, v5("b"));
    h.subscribe(A, "$share/g/x/+", QoS::AtMostOnce);
    h.subscribe(B, "$share/g/x/+", QoS::AtMostOnce);
    h.subscribe(B, "x/+", QoS::AtMostOnce);
    assert_eq!(h.broker.take_interest(), [Added("x/+".into())]);
    h.unsubscribe(B, &["x/+", "$share/g/x/+"]);
    assert!(
        h.broker.take_interest().is_empty(),
        "a's group membership remains"
    );
    h.unsubscribe(A, &["$share/g/x/+"]);
    assert_eq!(h.broker.take_interest(), [Removed("x/+".into())]);
}

#[test]
fn messages_published_here_are_forwarded_once_as_routed_but_not_sys() {
    let mut h = Harness::new();
    h.broker.set_clustered();
    h.connect_ok(A, v5("a"));
    h.publish(A, qos0("x/1", "zero"));
    h.publish(A, retained(qos1("x/2", "one", 7)));
    h.connect_ok(B, with_will(v311("b"), will("wills/b", "gone")));
    h.lose(B);
    let forwards = h.broker.take_forwards();
    let summary: Vec<(&str, QoS, bool, Option<u16>)> = forwards
        .iter()
        .map(|p| (p.topic.as_str(), p.qos, p.retain, p.packet_id))
        .collect();
    assert_eq!(
        summary,
        [
            ("x/1", QoS::AtMostOnce, false, None),
            ("x/2", QoS::AtLeastOnce, true, None),
            ("wills/b", QoS::AtMostOnce, false, None)
        ],
        "the packet id is the publisher's link's, not the message's"
    );
    assert_eq!(forwards[1].payload.as_ref(), b"one");
    assert!(h.broker.take_forwards().is_empty(), "taken once");

    let mut config = quiet_config();
    config.sys_interval = Some(secs(10));
    let mut sys = Harness::with_config(config);
    sys.broker.set_clustered();
    sys.tick();
    assert!(
        sys.broker.take_forwards().is_empty(),
        "$SYS describes this node only"
    );
}

#[test]
fn a_clustered_node_does_not_say_no_matching_subscribers() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("a"));
    h.broker.set_clustered();
    let outputs = h.publish(A, qos1("nobody/here", "m", 1));
    let acks: Vec<ReasonCode> = sent_to(&outputs, A)
        .into_iter()
        .filter_map(|packet| match packet {
            Packet::PubAck(ack) => Some(ack.reason_code),
            _ => None,
        })
        .collect();
    assert_eq!(
        acks,
        [ReasonCode::Success],
        "another node may have subscribers"
    );
}

#[test]
fn a_message_from_another_node_reaches_local_subscribers_is_retained_and_not_forwarded() {
    let mut h = Harness::new();
    h.broker.set_clustered();
    h.connect_ok(A, v5("a"));
    h.subscribe(A, "x/#", QoS::AtLeastOnce);
    h.drain();
    let mut remote = retained(qos1("x/remote", "from b", 99));
    remote.dup = true;
    assert_eq!(h.broker.publish_from_cluster(remote, h.now), 1);
    let delivered = publishes(&h.drain(), A);
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].payload.as_ref(), b"from b");
    assert_eq!(delivered[0].qos, QoS::AtLeastOnce);
    assert!(!delivered[0].dup, "a first delivery here");
    assert!(
        h.broker.take_forwards().is_empty(),
        "never forwarded again: no loops"
    );
    // Retained here too: a later subscriber on this node gets it.
    h.connect_ok(B, v5("b"));
    let outputs = h.subscribe(B, "x/remote", QoS::AtMostOnce);
    assert_eq!(payloads(&outputs, B), ["from b"]);
}

#[test]
fn a_retained_message_of_the_cluster_is_kept_here_without_routing_and_cleared_by_an_empty_one() {
    let mut h = Harness::new();
    h.broker.set_clustered();
    h.connect_ok(A, v5("a"));
    h.subscribe(A, "r/#", QoS::AtMostOnce);
    h.drain();
    h.broker.retain_from_cluster(qos0("r/1", "kept"), h.now);
    assert!(
        publishes(&h.drain(), A).is_empty(),
        "not routed: it reached subscribers when published"
    );
    assert!(h.broker.take_forwards().is_empty());
    h.connect_ok(B, v5("b"));
    let outputs = h.subscribe(B, "r/#", QoS::AtMostOnce);
    assert_eq!(payloads(&outputs, B), ["kept"]);
    let delivered = publishes(&outputs, B);
    assert!(delivered[0].retain, "delivered as retained");

    h.broker.retain_from_cluster(qos0("r/1", ""), h.now);
    h.connect_ok(C, v5("c"));
    let outputs = h.subscribe(C, "r/#", QoS::AtMostOnce);
    assert!(payloads(&outputs, C).is_empty(), "cleared");
}

#[test]
fn a_nodes_connack_names_it_to_5_0_clients() {
    let mut config = quiet_config();
    config.node_name = Some("node-b".into());
    let mut h = Harness::with_config(config);
    let outputs = h.connect(A, v5("a"));
    let properties = connack(&outputs, A).properties;
    let names: Vec<(&str, &str)> = properties
        .user_properties
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(names, [("node", "node-b")]);
    let mut single = Harness::new();
    let outputs = single.connect(A, v5("a"));
    assert!(
        connack(&outputs, A).properties.user_properties.is_empty(),
        "a single node says nothing"
    );
}

/// A broker that records changes, as a cluster node's does (its sessions' log needs them).
fn recording_node() -> Harness {
    let mut h = Harness::with_config(broker_core::BrokerConfig {
        persistence: broker_core::Persistence::Relaxed,
        ..quiet_config()
    });
    h.broker.set_clustered();
    h
}

#[test]
fn a_released_session_leaves_as_a_takeover_with_its_last_records() {
    let mut h = recording_node();
    h.connect_ok(A, v5_persistent("mover", 300));
    h.subscribe(A, "x/#", QoS::AtLeastOnce);
    assert_eq!(h.broker.take_interest(), [Added("x/#".into())]);
    let mut records = Vec::new();
    h.broker.take_changes(&mut records);

    let released = h.broker.release_session("mover", h.now);
    let outputs = h.drain();
    assert_disconnected(&outputs, A, ReasonCode::SessionTakenOver);
    let mut records = Vec::new();
    h.broker.take_changes(&mut records);
    let Some(broker_core::Change::Session(last)) = records.first() else {
        panic!("the session's last own fields first: {records:?}");
    };
    assert!(!last.connected, "offline when it left");
    assert_eq!(Some(last.id), released);
    assert_eq!(
        records.last(),
        Some(&broker_core::Change::SessionRemoved { session: last.id })
    );
    assert_eq!(h.broker.take_interest(), [Removed("x/#".into())]);
    assert_eq!(h.broker.release_session("mover", h.now), None, "gone");

    // A session that ends with its connection has nothing to hand over, but its connection
    // is closed all the same.
    h.connect_ok(B, v5("clean"));
    assert_eq!(h.broker.release_session("clean", h.now), None);
    assert_disconnected(&h.drain(), B, ReasonCode::SessionTakenOver);
}

#[test]
fn an_adopted_session_resumes_here_with_its_queue_and_its_interest() {
    // The session as its first node left it: subscribed, with two messages queued.
    let mut first = recording_node();
    first.connect_ok(A, v5_persistent("mover", 300));
    first.subscribe(A, "x/#", QoS::AtLeastOnce);
    first.disconnect(A);
    first.connect_ok(B, v5("publisher"));
    first.publish(B, qos1("x/1", "one", 1));
    first.publish(B, qos1("x/2", "two", 2));
    let snapshot = first.broker.snapshot(first.now);
    let stored = snapshot
        .sessions
        .into_iter()
        .find(|s| s.client_id.as_str() == "mover")
        .expect("the session");

    let mut second = recording_node();
    second.broker.take_interest();
    let id = second.broker.adopt_session(stored.clone(), second.now);
    assert!(id.is_some());
    assert_eq!(second.broker.take_interest(), [Added("x/#".into())]);
    let mut records = Vec::new();
    second.broker.take_changes(&mut records);
    assert!(
        matches!(records.as_slice(), [broker_core::Change::Session(record)] if Some(record.id) == id),
        "recorded as a session of this node: {records:?}"
    );
    assert_eq!(
        second.broker.adopt_session(stored, second.now),
        None,
        "a client id already here is not adopted again"
    );

    let outputs = second.connect(A, v5_persistent("mover", 300));
    assert!(connack(&outputs, A).session_present);
    assert_eq!(payloads(&outputs, A), ["one", "two"]);
}

#[test]
fn the_will_of_a_client_lost_with_its_node_goes_out_when_its_session_is_adopted() {
    let mut first = recording_node();
    first.connect_ok(
        A,
        with_will(v5_persistent("lost", 300), will("wills/lost", "gone")),
    );
    let mut stored = first.broker.snapshot(first.now).sessions.remove(0);
    assert!(stored.connected, "the node died with the client connected");
    stored.id = 7;

    let mut second = recording_node();
    second.connect_ok(B, v5("watcher"));
    second.subscribe(B, "wills/#", QoS::AtMostOnce);
    second.broker.adopt_session(stored, second.now);
    assert_eq!(payloads(&second.drain(), B), ["gone"]);
}
