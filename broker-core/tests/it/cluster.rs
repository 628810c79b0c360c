//! What the core gives a cluster link: interest changes (first and last subscription to a
//! filter), the messages published here to forward, and messages from other nodes routed
//! locally but never forwarded again. Nothing of it happens on a single node.

use crate::common::*;
use broker_core::InterestChange::{self, Added, GroupAdded, GroupRemoved, Removed};
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
    h.subscribe(A, "$share/g/x/#", QoS::AtMostOnce);
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

fn group_added(group: &str, filter: &str) -> InterestChange {
    GroupAdded {
        group: group.into(),
        filter: filter.into(),
    }
}

fn group_removed(group: &str, filter: &str) -> InterestChange {
    GroupRemoved {
        group: group.into(),
        filter: filter.into(),
    }
}

#[test]
fn a_shared_group_is_reported_apart_from_its_filter_from_first_to_last_member() {
    let mut h = Harness::new();
    h.broker.set_clustered();
    h.connect_ok(A, v5("a"));
    h.connect_ok(B, v5("b"));
    h.subscribe(A, "$share/g/x/+", QoS::AtMostOnce);
    h.subscribe(B, "$share/g/x/+", QoS::AtMostOnce);
    assert_eq!(
        h.broker.take_interest(),
        [group_added("g", "x/+")],
        "once, with its first member; not as the plain filter's interest"
    );
    h.subscribe(B, "x/+", QoS::AtMostOnce);
    h.subscribe(B, "$share/h/x/+", QoS::AtMostOnce);
    h.subscribe(B, "$share/g/x/#", QoS::AtMostOnce);
    assert_eq!(
        h.broker.take_interest(),
        [
            Added("x/+".into()),
            group_added("h", "x/+"),
            group_added("g", "x/#")
        ],
        "a group is its name and its filter"
    );
    h.unsubscribe(B, &["x/+", "$share/g/x/+"]);
    assert_eq!(
        h.broker.take_interest(),
        [Removed("x/+".into())],
        "a's membership of g keeps the group"
    );
    h.unsubscribe(A, &["$share/g/x/+"]);
    assert_eq!(h.broker.take_interest(), [group_removed("g", "x/+")]);
    h.disconnect(B);
    assert_eq!(
        sorted(h.broker.take_interest()),
        [group_removed("g", "x/#"), group_removed("h", "x/+")]
    );
}

#[test]
fn groups_with_members_before_the_link_started_are_reported_when_it_starts() {
    let mut h = Harness::new();
    h.connect_ok(A, v5_persistent("a", 3600));
    h.subscribe(A, "$share/g/x/+", QoS::AtLeastOnce);
    h.subscribe(A, "y", QoS::AtLeastOnce);
    h.subscribe(A, "$share/b/x/+", QoS::AtLeastOnce);
    assert!(h.broker.take_interest().is_empty(), "not yet clustered");
    h.broker.set_clustered();
    assert_eq!(
        h.broker.take_interest(),
        [
            Added("y".into()),
            group_added("b", "x/+"),
            group_added("g", "x/+")
        ]
    );
    h.broker.set_clustered();
    assert!(h.broker.take_interest().is_empty(), "started once");
}

/// A clustered node with the group `$share/g/x/+` (members a and b), and c subscribing to
/// `x/+` plainly.
fn node_with_a_group() -> Harness {
    let mut h = Harness::new();
    h.broker.set_clustered();
    h.broker.set_groups_balanced(true);
    h.connect_ok(A, v5("a"));
    h.connect_ok(B, v5("b"));
    h.connect_ok(C, v5("c"));
    h.subscribe(A, "$share/g/x/+", QoS::AtLeastOnce);
    h.subscribe(B, "$share/g/x/+", QoS::AtLeastOnce);
    h.subscribe(C, "x/+", QoS::AtLeastOnce);
    h.connect_ok(D, v5("publisher"));
    h.drain();
    h
}

#[test]
fn a_clustered_node_routes_no_message_to_its_groups_on_the_common_way() {
    let mut h = node_with_a_group();
    let outputs = h.publish(D, qos1("x/1", "local", 1));
    assert_eq!(
        payloads(&outputs, C),
        ["local"],
        "plain subscriptions get it"
    );
    assert!(payloads(&outputs, A).is_empty() && payloads(&outputs, B).is_empty());
    let forwards = h.broker.take_forwards();
    assert_eq!(
        forwards.len(),
        1,
        "forwarded: the cluster balances it among the group's nodes, this one included"
    );
    assert!(!forwards[0].groups_served);
    assert_eq!(
        h.broker
            .publish_from_cluster(qos1("x/2", "remote", 5), h.now),
        1
    );
    let outputs = h.drain();
    assert_eq!(payloads(&outputs, C), ["remote"]);
    assert!(payloads(&outputs, A).is_empty() && payloads(&outputs, B).is_empty());

    let mut single = Harness::new();
    single.broker.set_groups_balanced(true);
    single.connect_ok(A, v5("a"));
    single.connect_ok(D, v5("publisher"));
    single.subscribe(A, "$share/g/x/+", QoS::AtLeastOnce);
    let outputs = single.publish(D, qos1("x/1", "alone", 1));
    assert_eq!(
        payloads(&outputs, A),
        ["alone"],
        "a single node's groups are its own"
    );
}

#[test]
fn while_the_cluster_cannot_balance_groups_they_get_this_nodes_messages_marked_as_served() {
    let mut h = Harness::new();
    h.broker.set_clustered();
    h.connect_ok(A, v5("a"));
    h.subscribe(A, "$share/g/x/+", QoS::AtLeastOnce);
    h.connect_ok(D, v5("publisher"));
    h.drain();
    let outputs = h.publish(D, qos1("x/1", "before the link", 1));
    assert_eq!(
        payloads(&outputs, A),
        ["before the link"],
        "not balanced until the link says so"
    );
    h.broker.set_groups_balanced(true);
    let outputs = h.publish(D, qos1("x/2", "balanced", 2));
    assert!(
        payloads(&outputs, A).is_empty(),
        "the cluster hands it over"
    );
    h.broker.set_groups_balanced(false);
    let outputs = h.publish(D, qos1("x/3", "cut off", 3));
    assert_eq!(payloads(&outputs, A), ["cut off"]);
    assert_eq!(
        h.broker
            .publish_from_cluster(qos0("x/4", "from elsewhere"), h.now),
        0,
        "never another node's: the cluster hands it to the group, or that node served its own"
    );
    let outputs = h.publish(D, qos1("x/5", "still cut off", 4));
    assert_eq!(payloads(&outputs, A), ["still cut off"], "unchanged by it");
    let served: Vec<(String, bool)> = h
        .broker
        .take_forwards()
        .into_iter()
        .map(|f| {
            (
                String::from_utf8_lossy(&f.publish.payload).into_owned(),
                f.groups_served,
            )
        })
        .collect();
    assert_eq!(
        served,
        [
            ("before the link".to_owned(), true),
            ("balanced".to_owned(), false),
            ("cut off".to_owned(), true),
            ("still cut off".to_owned(), true)
        ],
        "no group gets a served one again through the cluster"
    );
}

#[test]
fn a_message_for_a_group_reaches_one_member_in_turn_and_nothing_else() {
    let mut h = node_with_a_group();
    let mut members = Vec::new();
    for i in 0..4 {
        let mut message = qos2(&format!("x/{i}"), &i.to_string(), 9);
        message.dup = true;
        message.retain = true;
        assert_eq!(h.broker.publish_to_group("g", "x/+", message, h.now), 1);
        let outputs = h.drain();
        assert!(
            payloads(&outputs, C).is_empty(),
            "not to plain subscriptions"
        );
        let a = publishes(&outputs, A);
        let b = publishes(&outputs, B);
        assert_eq!(a.len() + b.len(), 1, "one member");
        let delivered = a.first().or(b.first()).expect("delivered");
        assert_eq!(delivered.payload.as_ref(), i.to_string().as_bytes());
        assert_eq!(delivered.qos, QoS::AtLeastOnce, "at the member's QoS");
        assert!(!delivered.dup, "a first delivery here");
        assert!(!delivered.retain, "without Retain As Published");
        members.push(if a.is_empty() { "b" } else { "a" });
    }
    assert_eq!(members, ["a", "b", "a", "b"], "round robin");
    assert!(h.broker.take_forwards().is_empty(), "never forwarded");
    h.connect_ok(E, v5("late"));
    let outputs = h.subscribe(E, "x/+", QoS::AtMostOnce);
    assert!(
        payloads(&outputs, E).is_empty(),
        "not retained here: the cluster's store keeps retained messages"
    );
}

#[test]
fn a_message_for_a_group_without_members_here_or_outside_its_filter_reaches_nobody() {
    let mut h = node_with_a_group();
    for (group, filter, topic) in [
        ("other", "x/+", "x/1"),
        ("g", "x/#", "x/1"),
        ("g", "x/+", "y/1"),
        ("g", "x/+", "x/1/2"),
    ] {
        assert_eq!(
            h.broker
                .publish_to_group(group, filter, qos0(topic, "m"), h.now),
            0,
            "{group} {filter} {topic}"
        );
    }
    let outputs = h.drain();
    for client in [A, B, C] {
        assert!(publishes(&outputs, client).is_empty());
    }
    h.unsubscribe(A, &["$share/g/x/+"]);
    h.unsubscribe(B, &["$share/g/x/+"]);
    assert_eq!(
        h.broker
            .publish_to_group("g", "x/+", qos0("x/1", "m"), h.now),
        0,
        "the last member left while it was on its way"
    );
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
        .map(|f| {
            let p = &f.publish;
            (p.topic.as_str(), p.qos, p.retain, p.packet_id)
        })
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
    assert_eq!(forwards[1].publish.payload.as_ref(), b"one");
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

#[test]
fn what_comes_from_the_cluster_expires_by_its_interval_counted_from_arrival() {
    let mut h = Harness::new();
    h.broker.set_clustered();
    h.connect_ok(A, v5_persistent("member", 600));
    h.subscribe(A, "$share/g/t", QoS::AtLeastOnce);
    h.disconnect(A);
    let mut queued = qos1("t", "for the group", 3);
    queued.properties.message_expiry_interval = Some(100);
    assert_eq!(h.broker.publish_to_group("g", "t", queued, h.now), 1);
    let mut kept = qos0("r", "retained");
    kept.properties.message_expiry_interval = Some(100);
    h.broker.retain_from_cluster(kept, h.now);
    h.advance(secs(30));

    let outputs = h.connect(B, v5_persistent("member", 600));
    let delivered = publishes(&outputs, B);
    assert_eq!(
        delivered.len(),
        1,
        "queued for the offline member, not expired"
    );
    assert_eq!(delivered[0].properties.message_expiry_interval, Some(70));
    let outputs = h.subscribe(B, "r", QoS::AtMostOnce);
    let retained = publishes(&outputs, B);
    assert_eq!(retained.len(), 1, "retained, not expired");
    assert_eq!(retained[0].properties.message_expiry_interval, Some(70));
}

#[test]
fn sys_messages_stay_on_their_node_and_reach_its_groups_there() {
    let mut config = quiet_config();
    config.sys_interval = Some(secs(10));
    let mut h = Harness::with_config(config);
    h.broker.set_clustered();
    h.broker.set_groups_balanced(true);
    h.connect_ok(A, v5("a"));
    h.subscribe(A, "$share/g/$SYS/broker/uptime", QoS::AtMostOnce);
    h.drain();
    let outputs = h.advance_and_tick(secs(10));
    assert_eq!(
        publishes(&outputs, A).len(),
        1,
        "not for the cluster to balance"
    );
    assert!(h.broker.take_forwards().is_empty());
}
