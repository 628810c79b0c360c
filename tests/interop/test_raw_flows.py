"""QoS flows at the byte level, where a client library would hide them: duplicates of an
unreleased QoS 2 PUBLISH, redelivery of unacknowledged messages when a session resumes, and topic
aliases. The other side of each flow is a paho client.
"""

from __future__ import annotations

import paho.mqtt.client as mqtt
import pytest

from rawmqtt import (
    PUBACK, PUBCOMP, PUBLISH, PUBREC, PUBREL, SUBACK, RawClient, ack, connected, publish,
    publish_fields, subscribe,
)

LEVELS = [pytest.param(4, id="v3.1.1"), pytest.param(5, id="v5")]
#: 5.0 CONNECT property Session Expiry Interval = 300 s (3.1.1 needs only CleanSession=0).
SESSION_EXPIRY_300 = b"\x11\x00\x00\x01\x2c"


def packet_id(body: bytes) -> int:
    return int.from_bytes(body[:2], "big")


def expect(raw: RawClient, kind: int, identifier: int | None = None) -> tuple[int, bytes]:
    got_kind, flags, body = raw.read()
    assert got_kind == kind, f"expected packet type {kind}, got {got_kind} ({body!r})"
    if identifier is not None:
        assert packet_id(body) == identifier, f"packet id {packet_id(body)}, expected {identifier}"
    return flags, body


def persistent(level: int) -> dict:
    if level == 5:
        return {"clean": False, "properties": SESSION_EXPIRY_300}
    return {"clean": False}


@pytest.mark.parametrize("level", LEVELS)
def test_a_duplicate_qos2_publish_is_delivered_once(gateway, make_client, level):
    """A QoS 2 PUBLISH sent again (DUP=1) before PUBREL is acknowledged again with PUBREC but not
    delivered again [MQTT-4.3.3-2 (3.1.1: method B); 5.0 MQTT-4.3.3-10]."""
    subscriber = make_client("q2-sub", protocol=mqtt.MQTTv5)
    subscriber.connect(gateway.address)
    subscriber.subscribe("flow/q2", 2)
    with connected(gateway, level, "q2-raw-pub") as raw:
        raw.send(publish(level, "flow/q2", b"once", qos=2, packet_id=7))
        expect(raw, PUBREC, 7)
        raw.send(publish(level, "flow/q2", b"once", qos=2, packet_id=7, dup=True))
        expect(raw, PUBREC, 7)
        raw.send(ack(PUBREL, 7))
        expect(raw, PUBCOMP, 7)
        # Released, the identifier is free again: the same id now carries a new message.
        raw.send(publish(level, "flow/q2", b"second", qos=2, packet_id=7))
        expect(raw, PUBREC, 7)
        raw.send(ack(PUBREL, 7))
        expect(raw, PUBCOMP, 7)
    got = subscriber.wait_messages(2, "flow/q2")
    assert [(m.payload, m.qos) for m in got] == [(b"once", 2), (b"second", 2)]


@pytest.mark.parametrize("level", LEVELS)
def test_an_unacknowledged_qos1_message_is_resent_with_dup_on_resume(gateway, make_client, level):
    """The client vanishes before its PUBACK; when it resumes the session, the gateway re-sends
    the PUBLISH with its original packet id and DUP=1 [MQTT-4.4.0-1, MQTT-3.3.1-1]."""
    client_id = f"resume-q1-v{level}"
    publisher = make_client("q1-pub", protocol=mqtt.MQTTv311)
    publisher.connect(gateway.address)
    with connected(gateway, level, client_id, **persistent(level)) as raw:
        raw.send(subscribe(level, "flow/q1", qos=1))
        expect(raw, SUBACK, 1)
        publisher.publish("flow/q1", "m1", qos=1)
        flags, body = expect(raw, PUBLISH)
        first = publish_fields(level, flags, body)
        assert (first["payload"], first["qos"], first["dup"]) == (b"m1", 1, False)
        # Gone without a PUBACK.

    with RawClient(gateway) as raw:
        session_present, code = raw.connect(level, client_id, **persistent(level))
        assert (session_present, code) == (True, 0)
        flags, body = expect(raw, PUBLISH)
        again = publish_fields(level, flags, body)
        assert again == dict(first, dup=True)
        raw.send(ack(PUBACK, again["packet_id"]))
        # Acknowledged now: the next message is a new one, not the old one once more.
        publisher.publish("flow/q1", "m2", qos=1)
        flags, body = expect(raw, PUBLISH)
        after = publish_fields(level, flags, body)
        assert (after["payload"], after["dup"]) == (b"m2", False)
        raw.send(ack(PUBACK, after["packet_id"]))


@pytest.mark.parametrize("level", LEVELS)
def test_an_unfinished_qos2_flow_resumes_with_pubrel(gateway, make_client, level):
    """The client answered PUBREC and vanished before PUBCOMP: on resume the gateway re-sends the
    PUBREL, not the PUBLISH [MQTT-4.4.0-1, MQTT-4.3.3-4], so the message is not delivered twice."""
    client_id = f"resume-q2-v{level}"
    publisher = make_client("q2-pub", protocol=mqtt.MQTTv311)
    publisher.connect(gateway.address)
    with connected(gateway, level, client_id, **persistent(level)) as raw:
        raw.send(subscribe(level, "flow/q2r", qos=2))
        expect(raw, SUBACK, 1)
        publisher.publish("flow/q2r", "exactly once", qos=2)
        flags, body = expect(raw, PUBLISH)
        first = publish_fields(level, flags, body)
        assert (first["payload"], first["qos"]) == (b"exactly once", 2)
        raw.send(ack(PUBREC, first["packet_id"]))
        flags, _body = expect(raw, PUBREL, first["packet_id"])
        assert flags == 0x02  # PUBREL's reserved flags [MQTT-3.6.1-1]
        # Gone without a PUBCOMP.

    with RawClient(gateway) as raw:
        assert raw.connect(level, client_id, **persistent(level)) == (True, 0)
        expect(raw, PUBREL, first["packet_id"])
        raw.send(ack(PUBCOMP, first["packet_id"]))
        publisher.publish("flow/q2r", "next", qos=2)
        flags, body = expect(raw, PUBLISH)
        assert publish_fields(level, flags, body)["payload"] == b"next"


def test_v5_topic_aliases_from_a_client(gateway, make_client):
    """A client sets alias 1 with a topic, then uses it with an empty topic, then maps it to
    another topic [MQTT-3.3.2-12]; subscribers see the real topics."""
    subscriber = make_client("alias-sub", protocol=mqtt.MQTTv5)
    subscriber.connect(gateway.address)
    subscriber.subscribe("alias/#", 1)
    alias_1 = b"\x23\x00\x01"
    with connected(gateway, 5, "alias-raw-pub") as raw:
        raw.send(publish(5, "alias/t", b"a", properties=alias_1))
        raw.send(publish(5, "", b"b", properties=alias_1))
        raw.send(publish(5, "alias/u", b"c", properties=alias_1))
        raw.send(publish(5, "", b"d", qos=1, packet_id=1, properties=alias_1))
        expect(raw, PUBACK, 1)
    got = subscriber.wait_messages(4)
    assert [(m.topic, m.payload) for m in got] == [
        ("alias/t", b"a"), ("alias/t", b"b"), ("alias/u", b"c"), ("alias/u", b"d")]
