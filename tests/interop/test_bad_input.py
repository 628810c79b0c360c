"""Bad input from a raw socket (Python's `socket`, no MQTT library): the gateway closes the
offending connection, for 5.0 first sending DISCONNECT with the reason code where it can, and a
paho client connected meanwhile goes on receiving messages.

Packets are built by hand below, byte by byte, so that nothing between the test and the gateway
"fixes" them.
"""

from __future__ import annotations

import socket
import time

import paho.mqtt.client as mqtt
import pytest

from support import WAIT_S

CONNACK, PUBLISH, DISCONNECT = 2, 3, 14

# ----- packet building ---------------------------------------------------------------------------


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value % 128, value // 128
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def string(text: str) -> bytes:
    data = text.encode("utf-8")
    return len(data).to_bytes(2, "big") + data


def packet(first_byte: int, body: bytes) -> bytes:
    return bytes([first_byte]) + varint(len(body)) + body


def connect(level: int, client_id: str, protocol_name: str = "MQTT") -> bytes:
    """CONNECT with Clean Session/Start, keep alive 60, no will, no credentials."""
    body = string(protocol_name) + bytes([level, 0x02]) + (60).to_bytes(2, "big")
    if level == 5:
        body += varint(0)  # no properties
    return packet(0x10, body + string(client_id))


def publish(level: int, topic: str, payload: bytes = b"x") -> bytes:
    """QoS 0 PUBLISH (no packet identifier)."""
    body = string(topic) + (varint(0) if level == 5 else b"")
    return packet(0x30, body + payload)


def subscribe(level: int, topic_filter: str) -> bytes:
    body = (1).to_bytes(2, "big") + (varint(0) if level == 5 else b"")
    return packet(0x82, body + string(topic_filter) + b"\x00")


def parse(data: bytes) -> list[tuple[int, bytes]]:
    """Splits bytes from the gateway into (packet type, body) pairs."""
    packets = []
    while data:
        kind, index, length, shift = data[0] >> 4, 1, 0, 0
        while True:
            byte = data[index]
            length += (byte & 0x7F) << shift
            index, shift = index + 1, shift + 7
            if not byte & 0x80:
                break
        packets.append((kind, data[index:index + length]))
        data = data[index + length:]
    return packets


# ----- socket helpers ----------------------------------------------------------------------------


def open_socket(gateway) -> socket.socket:
    sock = socket.create_connection(gateway.address, timeout=WAIT_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_packet(sock: socket.socket) -> tuple[int, bytes]:
    """One whole packet (bounded by the socket timeout); fails if the connection closes first."""
    data = b""
    while True:
        try:
            packets = parse(data)
            return packets[0]
        except IndexError:
            pass  # incomplete
        chunk = sock.recv(65536)
        assert chunk, f"connection closed while waiting for a packet (got {data!r})"
        data += chunk


def read_until_closed(sock: socket.socket, timeout: float = WAIT_S) -> bytes:
    """Everything the gateway sends until it closes the connection; fails if it stays open."""
    deadline = time.monotonic() + timeout
    data = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(f"the gateway kept the connection open for {timeout} s (sent {data!r})",
                        pytrace=False)
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def connected_socket(gateway, level: int, client_id: str) -> socket.socket:
    sock = open_socket(gateway)
    sock.sendall(connect(level, client_id))
    kind, body = read_packet(sock)
    assert kind == CONNACK, (kind, body)
    assert body[1] == 0, f"CONNACK refused: {body!r}"
    return sock


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
    with open_socket(gateway) as sock:
        sock.sendall(data)
        assert read_until_closed(sock) == b""
    bystander.check()


def test_unsupported_protocol_level_gets_connack_0x01(gateway, bystander):
    """3.1.1: a protocol level the server does not support gets CONNACK 0x01 and the close
    [MQTT-3.1.2-2]."""
    with open_socket(gateway) as sock:
        sock.sendall(connect(7, "level-7"))
        assert parse(read_until_closed(sock)) == [(CONNACK, b"\x00\x01")]
    bystander.check()


# ----- after CONNECT -----------------------------------------------------------------------------

AFTER_CONNECT = [
    # (protocol level, what is sent after the CONNACK, reason codes a 5.0 DISCONNECT may carry)
    # A Topic Name must not contain wildcards [MQTT-3.3.2-2]; 5.0: 0x90 Topic Name invalid.
    pytest.param(4, publish(4, "a/+"), None, id="v3.1.1-publish-to-a/+"),
    pytest.param(4, publish(4, "a/#"), None, id="v3.1.1-publish-to-a/#"),
    pytest.param(5, publish(5, "a/+"), {0x90}, id="v5-publish-to-a/+"),
    pytest.param(5, publish(5, "#"), {0x90}, id="v5-publish-to-#"),
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
    with connected_socket(gateway, level, f"bad-v{level}") as sock:
        sock.sendall(data)
        received = parse(read_until_closed(sock))
    if reasons is None:
        assert received == []
    else:
        assert len(received) == 1 and received[0][0] == DISCONNECT, received
        reason = received[0][1][0]
        assert reason in reasons, f"DISCONNECT reason 0x{reason:02x}, expected one of " + ", ".join(
            f"0x{r:02x}" for r in sorted(reasons))
    bystander.check()


@pytest.mark.gateway_args("--connect-timeout", "1")
def test_a_silent_or_slow_connection_is_closed_after_the_connect_timeout(gateway, bystander):
    """No CONNECT (or half of one) within the connect timeout: closed [MQTT-3.1.0-1 / DESIGN]."""
    half = connect(4, "slowloris")[:7]
    with open_socket(gateway) as silent, open_socket(gateway) as slow:
        started = time.monotonic()
        slow.sendall(half)
        assert read_until_closed(silent) == b""
        assert read_until_closed(slow) == b""
        assert time.monotonic() - started >= 0.5  # the timeout, not an immediate refusal
    gateway.wait_for_log(r"no CONNECT within")
    bystander.check()
