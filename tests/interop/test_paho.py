"""paho-mqtt (whichever generation this virtualenv has: 1.6.1 or 2.x) against the gateway.

Each test starts its own gateway (the `gateway` fixture) and its clients with `make_client`,
which wraps paho so that the same test runs on both generations (see support.PahoClient). Every
wait is bounded; "not delivered" is checked with a marker published after the fact (see
support.py), never with a pause.
"""

from __future__ import annotations

import re
import sys
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.subscribeoptions import SubscribeOptions

from support import WAIT_S, properties, wait_until

PROTOCOLS = [
    pytest.param(mqtt.MQTTv31, id="v3.1"),
    pytest.param(mqtt.MQTTv311, id="v3.1.1"),
    pytest.param(mqtt.MQTTv5, id="v5"),
]
#: 3.1.1 and 5.0: the two the brief requires everywhere; 3.1 is covered by the basic flows.
MODERN = PROTOCOLS[1:]


def session_expiry(seconds: int):
    return properties(PacketTypes.CONNECT, SessionExpiryInterval=seconds)


def topics_before_marker(client, marker: str) -> list[str]:
    """Waits for `marker`, then returns the topics received before it (in order)."""
    client.wait_message(marker)
    topics = client.topics()
    return topics[: topics.index(marker)]


# ----- QoS 0/1/2 ------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_each_qos_pair_delivers_once_at_the_lower_qos(gateway, make_client, protocol):
    """Publish at QoS p to a subscription of QoS s: one delivery at min(p, s) [MQTT-3.8.4-6]."""
    subscriber = make_client("qos-sub", protocol=protocol)
    subscriber.connect(gateway.address)
    for qos in (0, 1, 2):
        assert subscriber.subscribe(f"qos/sub{qos}/#", qos) == [qos]
    publisher = make_client("qos-pub", protocol=protocol)
    publisher.connect(gateway.address)
    expected = []
    for sub_qos in (0, 1, 2):
        for pub_qos in (0, 1, 2):
            topic = f"qos/sub{sub_qos}/pub{pub_qos}"
            publisher.publish(topic, f"{sub_qos}{pub_qos}", qos=pub_qos)
            expected.append((topic, f"{sub_qos}{pub_qos}".encode(), min(sub_qos, pub_qos)))
    publisher.publish("qos/sub2/end", "end", qos=2)
    subscriber.wait_message("qos/sub2/end")
    got = [(m.topic, m.payload, m.qos) for m in subscriber.messages if m.topic != "qos/sub2/end"]
    assert got == expected


@pytest.mark.parametrize("qos", [1, 2])
@pytest.mark.parametrize("protocol", MODERN)
def test_a_burst_arrives_exactly_once_in_order(gateway, make_client, protocol, qos):
    """200 messages sent without waiting for each acknowledgement (paho keeps up to 20 in
    flight): each arrives once, in the order sent [MQTT-4.6.0-6]; at QoS 2 exactly once."""
    subscriber = make_client("burst-sub", protocol=protocol)
    subscriber.connect(gateway.address)
    subscriber.subscribe("burst/#", qos)
    publisher = make_client("burst-pub", protocol=protocol)
    publisher.connect(gateway.address)
    infos = [publisher.publish("burst/n", str(n), qos=qos, wait=False) for n in range(200)]
    for info in infos:
        info.wait_for_publish(WAIT_S)
        assert info.is_published()
    # Anything duplicated would come before the marker, which the same publisher sends last.
    publisher.publish("burst/end", "end", qos=qos)
    got = subscriber.wait_messages(201)
    assert [m.payload for m in got] == [str(n).encode() for n in range(200)] + [b"end"]
    assert {m.qos for m in got} == {qos}


# ----- retained messages ------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", MODERN)
def test_retained_message_reaches_a_late_subscriber_with_the_retain_flag(
        gateway, make_client, protocol):
    early = make_client("retain-early", protocol=protocol)
    early.connect(gateway.address)
    early.subscribe("retained/#", 1)
    publisher = make_client("retain-pub", protocol=protocol)
    publisher.connect(gateway.address)
    publisher.publish("retained/t", "kept", qos=1, retain=True)

    # An established subscription gets it live, with RETAIN 0 [MQTT-3.3.1-9] (5.0: Retain As
    # Published is 0 by default [MQTT-3.3.1-12]).
    live = early.wait_message("retained/t")
    assert (live.payload, live.retain) == (b"kept", False)

    late = make_client("retain-late", protocol=protocol)
    late.connect(gateway.address)
    late.subscribe("retained/#", 1)
    stored = late.wait_message("retained/t")
    assert (stored.payload, stored.qos, stored.retain) == (b"kept", 1, True)  # [MQTT-3.3.1-8]

    # An empty retained payload clears it [MQTT-3.3.1-10]: the next subscriber gets nothing.
    publisher.publish("retained/t", b"", qos=1, retain=True)
    latest = make_client("retain-latest", protocol=protocol)
    latest.connect(gateway.address)
    latest.subscribe("retained/#", 1)
    publisher.publish("retained/marker", "m", qos=1)
    assert topics_before_marker(latest, "retained/marker") == []


# ----- wills --------------------------------------------------------------------------------

#: A publisher with a will that connects, says so, and waits to be killed.
WILL_CLIENT = r"""
import sys, threading, time
import paho.mqtt.client as mqtt
host, port, protocol, topic = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
kwargs = {"client_id": "will-client", "protocol": protocol}
if hasattr(mqtt, "CallbackAPIVersion"):
    kwargs["callback_api_version"] = mqtt.CallbackAPIVersion.VERSION2
client = mqtt.Client(**kwargs)
props = None
if protocol == mqtt.MQTTv5:
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    props = Properties(PacketTypes.WILLMESSAGE)
    props.UserProperty = [("why", "killed")]
    props.ContentType = "text/plain"
client.will_set(topic, b"will-client vanished", qos=1, retain=False, properties=props)
connected = threading.Event()
client.on_connect = lambda *args: connected.set()
client.connect(host, port, 60)
client.loop_start()
if not connected.wait(10):
    sys.exit(3)
print("connected", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("protocol", MODERN)
def test_will_is_published_when_the_client_is_killed(gateway, make_client, spawn, protocol):
    """SIGKILL: the socket closes with no DISCONNECT, so the will goes out [MQTT-3.1.2-8]."""
    watcher = make_client("will-watcher", protocol=protocol)
    watcher.connect(gateway.address)
    watcher.subscribe("wills/#", 1)
    victim = spawn([sys.executable, "-c", WILL_CLIENT, gateway.mqtt_host, str(gateway.mqtt_port),
                    str(protocol), "wills/victim"], name="will client")
    victim.wait_for_line("^connected$", timeout=10)
    assert watcher.messages == []
    victim.kill()

    will = watcher.wait_message("wills/victim")
    assert (will.payload, will.qos, will.retain) == (b"will-client vanished", 1, False)
    if protocol == mqtt.MQTTv5:
        assert will.prop("UserProperty") == [("why", "killed")]
        assert will.prop("ContentType") == "text/plain"


# ----- persistent sessions ---------------------------------------------------------------------


@pytest.mark.parametrize("protocol", MODERN)
def test_messages_queued_while_offline_arrive_after_reconnect(gateway, make_client, protocol):
    v5 = protocol == mqtt.MQTTv5
    # 3.1.1: CleanSession=0; 5.0: Clean Start=0 with a Session Expiry Interval.
    connect_options = {"clean_start": False, "properties": session_expiry(300)} if v5 else {}
    first = make_client("persistent", protocol=protocol, clean_session=False)
    assert first.connect(gateway.address, **connect_options).session_present is False
    first.subscribe("offline/#", 1)
    first.disconnect()

    publisher = make_client("offline-pub", protocol=protocol)
    publisher.connect(gateway.address)
    for n in range(5):
        publisher.publish("offline/n", f"queued {n}", qos=1)

    second = make_client("persistent", protocol=protocol, clean_session=False)
    connack = second.connect(gateway.address, **connect_options)
    assert connack.session_present is True  # [MQTT-3.2.2-2]
    got = second.wait_messages(5)
    assert [(m.topic, m.payload, m.qos) for m in got] == [
        ("offline/n", f"queued {n}".encode(), 1) for n in range(5)
    ]
    # The subscription survived too: live messages keep coming on the resumed session.
    publisher.publish("offline/live", "live", qos=1)
    assert second.wait_message("offline/live").payload == b"live"
    second.disconnect()

    # Clean session / Clean Start=1 discards it [MQTT-3.1.2-6, MQTT-3.1.2-4].
    third = make_client("persistent", protocol=protocol, clean_session=True)
    connack = third.connect(gateway.address, **({"clean_start": True} if v5 else {}))
    assert connack.session_present is False


def test_v5_message_expiry_drops_expired_queued_messages(gateway, make_client):
    """A queued message whose Message Expiry Interval passed is not delivered; one still alive
    arrives with the interval reduced by the time it waited [MQTT-3.3.2-5, MQTT-3.3.2-6]."""
    first = make_client("expiring", protocol=mqtt.MQTTv5)
    first.connect(gateway.address, clean_start=True, properties=session_expiry(300))
    first.subscribe("expiry/#", 1)
    first.disconnect()
    publisher = make_client("expiry-pub", protocol=mqtt.MQTTv5)
    publisher.connect(gateway.address)
    publisher.publish("expiry/short", "short", qos=1,
                      properties=properties(PacketTypes.PUBLISH, MessageExpiryInterval=1))
    publisher.publish("expiry/long", "long", qos=1,
                      properties=properties(PacketTypes.PUBLISH, MessageExpiryInterval=100))
    # Not a synchronization: the point is that this much time passes.
    time.sleep(2.2)
    second = make_client("expiring", protocol=mqtt.MQTTv5)
    assert second.connect(gateway.address, clean_start=False,
                          properties=session_expiry(300)).session_present
    publisher.publish("expiry/marker", "m", qos=1)
    assert topics_before_marker(second, "expiry/marker") == ["expiry/long"]
    remaining = second.messages[0].prop("MessageExpiryInterval")
    assert remaining is not None and 90 <= remaining <= 98, remaining


# ----- wildcards, $SYS, unsubscribe -------------------------------------------------------------


@pytest.mark.parametrize("protocol", MODERN)
def test_wildcard_subscriptions(gateway, make_client, protocol):
    published = ["w/b/c", "w/b", "w", "w/b/c/d", "x/b/c", "w/x/c", "w//c"]
    expected = {
        "w/+/c": ["w/b/c", "w/x/c", "w//c"],
        "w/#": ["w/b/c", "w/b", "w", "w/b/c/d", "w/x/c", "w//c"],  # `#` matches its parent
        "+/b/#": ["w/b/c", "w/b", "w/b/c/d", "x/b/c"],
        "+": ["w"],
        "+/+": ["w/b"],
        "#": published,
    }
    subscribers = {}
    for index, topic_filter in enumerate(expected):
        subscriber = make_client(f"wild-{index}", protocol=protocol)
        subscriber.connect(gateway.address)
        subscriber.subscribe(topic_filter, 1)
        subscriber.subscribe("marker/end", 1)
        subscribers[topic_filter] = subscriber
    publisher = make_client("wild-pub", protocol=protocol)
    publisher.connect(gateway.address)
    for topic in published:
        publisher.publish(topic, topic, qos=1)
    publisher.publish("marker/end", "end", qos=1)
    for topic_filter, subscriber in subscribers.items():
        got = topics_before_marker(subscriber, "marker/end")
        if topic_filter == "#":
            got = [topic for topic in got if topic != "marker/end"]
        assert got == expected[topic_filter], topic_filter


@pytest.mark.gateway_args("--sys-interval", "1")
def test_sys_uptime_on_sys_wildcard_and_not_on_hash(gateway, make_client):
    everything = make_client("hash-sub")
    everything.connect(gateway.address)
    everything.subscribe("#")
    sys_watcher = make_client("sys-sub")
    sys_watcher.connect(gateway.address)
    sys_watcher.subscribe("$SYS/#")

    # Retained at once (the gateway publishes $SYS at start) ...
    first = sys_watcher.wait_message("$SYS/broker/uptime")
    assert first.retain is True
    assert re.fullmatch(rb"\d+ seconds", first.payload), first.payload
    # ... then every second, live (RETAIN 0 on an established subscription).
    updates = sys_watcher.wait_messages(2, "$SYS/broker/uptime", timeout=WAIT_S)
    assert updates[1].retain is False
    assert int(updates[1].payload.split()[0]) >= int(first.payload.split()[0])

    # `#` does not match topics starting with `$` [MQTT-4.7.2-1]: by the time a marker published
    # now reaches the `#` subscriber, no $SYS message came before it.
    publisher = make_client("sys-pub")
    publisher.connect(gateway.address)
    publisher.publish("sys-marker", "m", qos=1)
    assert topics_before_marker(everything, "sys-marker") == []


@pytest.mark.parametrize("protocol", MODERN)
def test_unsubscribe_stops_delivery(gateway, make_client, protocol):
    subscriber = make_client("unsub", protocol=protocol)
    subscriber.connect(gateway.address)
    subscriber.subscribe("unsub/a", 1)
    subscriber.subscribe("unsub/marker", 1)
    publisher = make_client("unsub-pub", protocol=protocol)
    publisher.connect(gateway.address)
    publisher.publish("unsub/a", "before", qos=1)
    assert subscriber.wait_message("unsub/a").payload == b"before"

    subscriber.unsubscribe("unsub/a")
    publisher.publish("unsub/a", "after", qos=1)
    publisher.publish("unsub/marker", "m", qos=1)
    assert topics_before_marker(subscriber, "unsub/marker") == ["unsub/a"]
    assert [m.payload for m in subscriber.messages if m.topic == "unsub/a"] == [b"before"]


@pytest.mark.parametrize("protocol", MODERN)
def test_a_second_connection_with_the_same_client_id_takes_over(gateway, make_client, protocol):
    """The gateway closes the older connection, for 5.0 after a DISCONNECT 0x8E Session taken
    over [MQTT-3.1.4-3], and logs one line naming the client id."""
    first = make_client("twin", protocol=protocol, reconnect=False)
    first.connect(gateway.address)
    second = make_client("twin", protocol=protocol, reconnect=False)
    second.connect(gateway.address)
    reason, _properties = first.wait_disconnect()
    if protocol == mqtt.MQTTv5:
        assert reason == 0x8E, hex(reason)
    else:
        assert reason != 0  # paho's "connection lost": 3.1.1 servers send no DISCONNECT
    gateway.wait_for_log(r'client "twin" connected again .*session taken over')
    assert len(gateway.log_lines(r'"twin"')) == 1, gateway.log_text()
    # The newer connection works.
    second.subscribe("twin/t", 1)
    second.publish("twin/t", "still here", qos=1)
    assert second.wait_message("twin/t").payload == b"still here"
    assert second.disconnects == []


# ----- MQTT 5.0 ----------------------------------------------------------------------------------


def test_v5_properties_reach_v5_subscribers_and_not_311_ones(gateway, make_client):
    v5 = make_client("props-v5", protocol=mqtt.MQTTv5)
    v5.connect(gateway.address)
    v5.subscribe("props/#", options=SubscribeOptions(qos=1))
    v311 = make_client("props-v311", protocol=mqtt.MQTTv311)
    v311.connect(gateway.address)
    v311.subscribe("props/#", 1)
    publisher = make_client("props-pub", protocol=mqtt.MQTTv5)
    publisher.connect(gateway.address)
    sent = properties(
        PacketTypes.PUBLISH,
        UserProperty=[("a", "1"), ("b", "2"), ("a", "3")],
        MessageExpiryInterval=60,
        ContentType="application/json",
        PayloadFormatIndicator=1,
        ResponseTopic="props/reply",
        CorrelationData=b"\x00\x01corr\xff",
    )
    publisher.publish("props/x", '{"k": 1}', qos=1, properties=sent)

    got = v5.wait_message("props/x")
    assert got.payload == b'{"k": 1}'
    # User properties keep their order and duplicates [MQTT-3.3.2-18].
    assert got.prop("UserProperty") == [("a", "1"), ("b", "2"), ("a", "3")]
    assert got.prop("ContentType") == "application/json"  # [MQTT-3.3.2-20]
    assert got.prop("PayloadFormatIndicator") == 1  # [MQTT-3.3.2-4]
    assert got.prop("ResponseTopic") == "props/reply"  # [MQTT-3.3.2-15]
    assert got.prop("CorrelationData") == b"\x00\x01corr\xff"  # [MQTT-3.3.2-16]
    assert 55 <= got.prop("MessageExpiryInterval") <= 60  # [MQTT-3.3.2-6]

    plain = v311.wait_message("props/x")
    assert (plain.payload, plain.qos) == (b'{"k": 1}', 1)


def test_v5_request_response_round_trip(gateway, make_client):
    """A requester names a Response Topic and Correlation Data; the responder answers there with
    the same Correlation Data, and the requester matches the answer to its request."""
    responder = make_client("responder", protocol=mqtt.MQTTv5)
    responder.connect(gateway.address)
    responder.subscribe("service/request", 1)
    requester = make_client("requester", protocol=mqtt.MQTTv5)
    requester.connect(gateway.address)
    requester.subscribe("service/reply/requester", 1)

    for correlation in (b"req-1", b"\x00\xfe-2"):
        requester.publish("service/request", b"ping " + correlation, qos=1, properties=properties(
            PacketTypes.PUBLISH, ResponseTopic="service/reply/requester",
            CorrelationData=correlation))
    requests = responder.wait_messages(2, "service/request")
    for request in requests:
        responder.publish(request.prop("ResponseTopic"), b"pong", qos=1, properties=properties(
            PacketTypes.PUBLISH, CorrelationData=request.prop("CorrelationData")))
    replies = requester.wait_messages(2, "service/reply/requester")
    assert [r.prop("CorrelationData") for r in replies] == [b"req-1", b"\x00\xfe-2"]
    assert {r.payload for r in replies} == {b"pong"}


def test_v5_subscription_options_and_identifiers(gateway, make_client):
    client = make_client("options", protocol=mqtt.MQTTv5)
    client.connect(gateway.address)
    # No Local: not even its own messages come back [MQTT-3.8.3-3].
    client.subscribe("opts/own", options=SubscribeOptions(qos=1, noLocal=True))
    client.subscribe("opts/id/#", options=SubscribeOptions(qos=1),
                     properties=properties(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=7))
    client.subscribe("opts/marker", 1)
    client.publish("opts/own", "mine", qos=1)
    other = make_client("options-other", protocol=mqtt.MQTTv5)
    other.connect(gateway.address)
    other.publish("opts/id/x", "identified", qos=1)
    other.publish("opts/marker", "m", qos=1)
    assert topics_before_marker(client, "opts/marker") == ["opts/id/x"]
    # The identifier comes back with each matching message [MQTT-3.3.4-3].
    assert client.messages[0].prop("SubscriptionIdentifier") == [7]


def test_v5_assigned_client_identifier(gateway, make_client):
    client = make_client("", protocol=mqtt.MQTTv5)
    connack = client.connect(gateway.address)
    assigned = getattr(connack.properties, "AssignedClientIdentifier", None)
    assert assigned, connack.properties  # [MQTT-3.2.2-16]


def test_v5_shared_subscription_splits_messages(gateway, make_client):
    """`$share/g/jobs/#`: each message goes to one member of the group; a plain subscription to
    the same filter still gets every message [MQTT-4.8.2]."""
    members = []
    for index in range(2):
        member = make_client(f"worker-{index}", protocol=mqtt.MQTTv5)
        member.connect(gateway.address)
        member.subscribe("$share/g/jobs/#", options=SubscribeOptions(qos=1))
        members.append(member)
    audit = make_client("audit", protocol=mqtt.MQTTv5)
    audit.connect(gateway.address)
    audit.subscribe("jobs/#", 1)
    publisher = make_client("jobs-pub", protocol=mqtt.MQTTv5)
    publisher.connect(gateway.address)
    jobs = [f"job {n}".encode() for n in range(20)]
    for job in jobs:
        publisher.publish("jobs/work", job, qos=1)

    # Markers until each member has had one: whatever a member got of the jobs came before it.
    sent_markers = 0

    def each_member_has_a_marker() -> bool:
        nonlocal sent_markers
        if all(m.topics().count("jobs/marker") for m in members):
            return True
        sent_markers += 1
        publisher.publish("jobs/marker", "m", qos=1)
        return False

    wait_until(each_member_has_a_marker, WAIT_S, lambda: f"markers sent: {sent_markers}")
    shares = [[m.payload for m in member.messages if m.topic == "jobs/work"] for member in members]
    assert sorted(shares[0] + shares[1]) == sorted(jobs), shares  # each job exactly once
    assert shares[0] and shares[1], f"one member got everything: {shares}"
    for share in shares:  # each member sees its jobs in publication order
        assert share == sorted(share, key=jobs.index)
    assert [m.payload for m in audit.wait_messages(20, "jobs/work")] == jobs


def test_v5_maximum_packet_size_of_a_client_is_respected(gateway, make_client):
    """A message larger than the Maximum Packet Size the client set in CONNECT is not sent to it
    [MQTT-3.1.2-24, MQTT-3.1.2-25]; other subscribers still get it."""
    small = make_client("small-packets", protocol=mqtt.MQTTv5)
    small.connect(gateway.address,
                  properties=properties(PacketTypes.CONNECT, MaximumPacketSize=512))
    small.subscribe("size/#", 1)
    large = make_client("large-packets", protocol=mqtt.MQTTv5)
    large.connect(gateway.address)
    large.subscribe("size/#", 1)
    publisher = make_client("size-pub", protocol=mqtt.MQTTv5)
    publisher.connect(gateway.address)
    publisher.publish("size/big", b"x" * 2000, qos=1)
    publisher.publish("size/fits", b"y" * 100, qos=1)
    assert large.wait_message("size/big").payload == b"x" * 2000
    assert topics_before_marker(small, "size/fits") == []
    assert small.disconnects == []


def test_v5_retain_handling_and_retain_as_published(gateway, make_client):
    """Retain Handling 2 sends no retained messages at subscribe [MQTT-3.3.1-11]; Retain As
    Published keeps the RETAIN flag on live messages [MQTT-3.3.1-13]."""
    publisher = make_client("rh-pub", protocol=mqtt.MQTTv5)
    publisher.connect(gateway.address)
    publisher.publish("rh/kept", "old", qos=1, retain=True)
    client = make_client("rh-sub", protocol=mqtt.MQTTv5)
    client.connect(gateway.address)
    client.subscribe("rh/#", options=SubscribeOptions(qos=1, retainHandling=2, retainAsPublished=True))
    publisher.publish("rh/kept", "new", qos=1, retain=True)
    publisher.publish("rh/plain", "plain", qos=1)
    got = client.wait_messages(2)
    assert [(m.topic, m.payload, m.retain) for m in got] == [
        ("rh/kept", b"new", True), ("rh/plain", b"plain", False)]
