"""Bad input from a raw socket (Python's `socket`, no MQTT library): the gateway closes the
offending connection, for 5.0 first sending DISCONNECT with the reason code where it can, and a
paho client connected meanwhile goes on receiving messages.

Packets are built by hand (rawmqtt.py), byte by byte, so that nothing between the test and the
gateway "fixes" them.
"""

from __future__ import annotations

import time

import paho.mqtt.client as mqtt
import pytest

from support import WAIT_S
from rawmqtt import CONNACK, DISCONNECT, RawClient, connect, connected, packet, parse, publish, string, subscribe


# ----- the bystander -----------------------------------------------------------------------------


@pytest.fixture
def bystander(gateway, make_client):
    """A paho subscriber and publisher connected before the bad input; after it, `check()`
    asserts they are still connected and a message still flows."""
    subscriber = make_client("bystander-sub", protocol=mqtt.MQTTv5)
    subscriber.connect(gateway.address)
    subscriber.subscribe("bystander/#", 1)
    publisher = make_client("bystander-pub", protocol=mqtt.MQTTv311)
    publisher.connect(gateway.address)
    publisher.publish("bystander/before", "before", qos=1)
    subscriber.wait_message("bystander/before")

    class Bystander:
        messages = subscriber

        @staticmethod
        def check():
            publisher.publish("bystander/after", "after", qos=1)
            assert subscriber.wait_message("bystander/after").payload == b"after"
            assert subscriber.disconnects == [] and publisher.disconnects == []
            assert subscriber.client.is_connected() and publisher.client.is_connected()

    return Bystander


# ----- before CONNECT: closed, nothing sent -------------------------------------------------------

BEFORE_CONNECT = [
    pytest.param(b"\xff\xff\xff\xff\xff\xff", id="garbage"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", id="an-http-request"),
    pytest.param(b"\xc0\x00", id="pingreq-before-connect"),
    pytest.param(subscribe(4, "a/#"), id="subscribe-before-connect"),
    pytest.param(publish(4, "a/b"), id="publish-before-connect"),
    # A remaining length whose fifth byte still says "more" [MQTT-1.5.5 / 2.2.3].
    pytest.param(b"\x10\xff\xff\xff\xff\x7f", id="connect-with-a-5-byte-length"),
]


@pytest.mark.parametrize("data", BEFORE_CONNECT)
def test_bad_first_packet_closes_the_connection(gateway, bystander, data):
    """The first packet must be a well-formed CONNECT [MQTT-3.1.0-1]: anything else and the
    gateway closes the connection without a CONNACK [MQTT-4.8.0-1]."""
    with RawClient(gateway) as raw:
        raw.send(data)
        assert raw.read_until_closed() == b""
    bystander.check()


def test_unsupported_protocol_level_gets_connack_0x01(gateway, bystander):
    """3.1.1: a protocol level the server does not support gets CONNACK 0x01 and the close
    [MQTT-3.1.2-2]."""
    with RawClient(gateway) as raw:
        raw.send(connect(7, "level-7"))
        assert parse(raw.read_until_closed()) == [(CONNACK, b"\x00\x01")]
    bystander.check()


# ----- after CONNECT -----------------------------------------------------------------------------

AFTER_CONNECT = [
    # (protocol level, what is sent after the CONNACK, reason codes a 5.0 DISCONNECT may carry)
    # A Topic Name must not contain wildcards [MQTT-3.3.2-2]; 5.0: 0x90 Topic Name invalid.
    pytest.param(4, publish(4, "a/+"), None, id="v3.1.1-publish-to-a/+"),
    pytest.param(4, publish(4, "a/#"), None, id="v3.1.1-publish-to-a/#"),
    pytest.param(5, publish(5, "a/+"), {0x90}, id="v5-publish-to-a/+"),
    pytest.param(5, publish(5, "#"), {0x90}, id="v5-publish-to-#"),
    # An empty Topic Name: malformed in 3.1.1 [MQTT-4.7.3-1]; in 5.0 a Protocol Error when no
    # Topic Alias comes with it (5.0 section 3.3.2.1).
    pytest.param(4, publish(4, ""), None, id="v3.1.1-publish-to-empty-topic"),
    pytest.param(5, publish(5, ""), {0x82}, id="v5-publish-to-empty-topic"),
    # Topic Alias 0 is not permitted [MQTT-3.3.2-8]: 0x94 Topic Alias invalid, or a plain
    # Protocol Error (the spec's 0x94 text speaks of aliases above the maximum).
    pytest.param(5, publish(5, "a", properties=b"\x23\x00\x00"), {0x82, 0x94},
                 id="v5-topic-alias-0"),
    # An empty topic with an alias never set: Protocol Error (5.0 section 3.3.2.3.4).
    pytest.param(5, publish(5, "", properties=b"\x23\x00\x01"), {0x82}, id="v5-unknown-topic-alias"),
    # A second CONNECT is a protocol violation [MQTT-3.1.0-2]; 5.0: 0x82 Protocol Error.
    pytest.param(4, connect(4, "again"), None, id="v3.1.1-second-connect"),
    pytest.param(5, connect(5, "again"), {0x82}, id="v5-second-connect"),
    # PUBLISH with QoS 3 [MQTT-3.3.1-4]: malformed.
    pytest.param(4, packet(0x36, string("a") + b"\x00\x01x"), None, id="v3.1.1-publish-qos-3"),
    pytest.param(5, packet(0x36, string("a") + b"\x00\x01\x00x"), {0x81}, id="v5-publish-qos-3"),
    # Packet type 0 is reserved (forbidden) [MQTT-2.1.2]: malformed (or a protocol error).
    pytest.param(4, b"\x00\x00", None, id="v3.1.1-reserved-type-0"),
    pytest.param(5, b"\x00\x00", {0x81, 0x82}, id="v5-reserved-type-0"),
    # Garbage after a good CONNECT: its remaining length runs past 4 bytes [MQTT-1.5.5-1].
    pytest.param(5, b"\xff\xff\xff\xff\xff\xff", {0x81}, id="v5-garbage"),
    # SUBSCRIBE with reserved flags 0000 instead of 0010 [MQTT-3.8.1-1]: malformed.
    pytest.param(5, packet(0x80, b"\x00\x01\x00" + string("a") + b"\x00"), {0x81},
                 id="v5-subscribe-with-bad-flags"),
]


@pytest.mark.parametrize("level, data, reasons", AFTER_CONNECT)
def test_protocol_violation_after_connect_closes_the_connection(gateway, bystander, level, data,
                                                                reasons):
    """3.1.1: the connection is closed, nothing sent [MQTT-4.8.0-1]. 5.0: a DISCONNECT with the
    reason code first (the server may send one before closing [MQTT-4.13.1-1]; this gateway
    promises it), then the close."""
    with connected(gateway, level, f"bad-v{level}") as raw:
        raw.send(data)
        received = parse(raw.read_until_closed())
    if reasons is None:
        assert received == []
    else:
        assert len(received) == 1 and received[0][0] == DISCONNECT, received
        reason = received[0][1][0]
        assert reason in reasons, (
            f"DISCONNECT reason 0x{reason:02x} ({received[0][1][1:]!r}), expected "
            + " or ".join(f"0x{r:02x}" for r in sorted(reasons))
        )
    bystander.check()


@pytest.mark.gateway_args("--connect-timeout", "1")
def test_a_silent_or_slow_connection_is_closed_after_the_connect_timeout(gateway, bystander):
    """No CONNECT (or half of one) within the connect timeout: closed [MQTT-3.1.0-1 / DESIGN]."""
    half = connect(4, "slowloris")[:7]
    with RawClient(gateway) as silent, RawClient(gateway) as slow:
        started = time.monotonic()
        slow.send(half)
        assert silent.read_until_closed() == b""
        assert slow.read_until_closed() == b""
        assert time.monotonic() - started >= 0.5  # the timeout, not an immediate refusal
    gateway.wait_for_log(r"no CONNECT within")
    bystander.check()


@pytest.mark.parametrize("level", [4, 5])
def test_a_client_that_stops_pinging_is_dropped_and_its_will_published(gateway, bystander, level):
    """Keep alive 1 s and then silence: the gateway closes the connection after 1.5 x the keep
    alive [MQTT-3.1.2-24] (5.0: DISCONNECT 0x8D Keep Alive timeout first) and publishes the will,
    as for any connection that ends without DISCONNECT [MQTT-3.1.2-8]."""
    with connected(gateway, level, f"silent-v{level}", keep_alive=1,
                   will=("bystander/will", b"stopped pinging", 1)) as raw:
        started = time.monotonic()
        received = parse(raw.read_until_closed(timeout=WAIT_S))
        elapsed = time.monotonic() - started
    assert elapsed >= 1.0, f"closed after {elapsed:.2f} s, before the keep alive ran out"
    if level == 5:
        assert [kind for kind, _body in received] == [DISCONNECT], received
        assert received[0][1][0] == 0x8D, received
    else:
        assert received == []
    will = bystander.messages.wait_message("bystander/will")
    assert (will.payload, will.qos) == (b"stopped pinging", 1)
    bystander.check()
