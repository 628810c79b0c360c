"""MQTT by hand for the raw-socket tests: packet builders, a tiny parser, and a socket wrapper
with bounded reads. Deliberately minimal and independent of any MQTT library, so that nothing
between a test and the gateway corrects what the test sends.
"""

from __future__ import annotations

import socket
import time

import pytest

from support import WAIT_S

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 12, 13, 14

# ----- building packets --------------------------------------------------------------------------


def varint(value: int) -> bytes:
    """A Variable Byte Integer [MQTT-1.5.5]."""
    out = bytearray()
    while True:
        byte, value = value % 128, value // 128
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def string(text: str) -> bytes:
    """A length-prefixed UTF-8 string."""
    data = text.encode("utf-8")
    return len(data).to_bytes(2, "big") + data


def packet(first_byte: int, body: bytes) -> bytes:
    """Fixed header (type and flags byte, remaining length) + body."""
    return bytes([first_byte]) + varint(len(body)) + body


def connect(level: int, client_id: str, *, protocol_name: str = "MQTT", clean: bool = True,
            keep_alive: int = 60, will: tuple[str, bytes, int] | None = None,
            properties: bytes = b"") -> bytes:
    """CONNECT; `will` is (topic, payload, qos); `properties` are 5.0 CONNECT properties."""
    flags = 0x02 if clean else 0
    if will:
        flags |= 0x04 | (will[2] << 3)
    body = string(protocol_name) + bytes([level, flags]) + keep_alive.to_bytes(2, "big")
    if level == 5:
        body += varint(len(properties)) + properties
    body += string(client_id)
    if will:
        if level == 5:
            body += varint(0)  # will properties
        body += string(will[0]) + len(will[1]).to_bytes(2, "big") + will[1]
    return packet(0x10, body)


def publish(level: int, topic: str, payload: bytes = b"x", *, qos: int = 0, packet_id: int = 0,
            dup: bool = False, retain: bool = False, properties: bytes = b"") -> bytes:
    first = 0x30 | (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
    body = string(topic)
    if qos:
        body += packet_id.to_bytes(2, "big")
    if level == 5:
        body += varint(len(properties)) + properties
    return packet(first, body + payload)


def subscribe(level: int, topic_filter: str, qos: int = 0, packet_id: int = 1) -> bytes:
    body = packet_id.to_bytes(2, "big") + (varint(0) if level == 5 else b"")
    return packet(0x82, body + string(topic_filter) + bytes([qos]))


def ack(kind: int, packet_id: int) -> bytes:
    """PUBACK, PUBREC, PUBREL (flags 0010) or PUBCOMP with reason 0 (omitted)."""
    return packet((kind << 4) | (0x02 if kind == PUBREL else 0), packet_id.to_bytes(2, "big"))


# ----- parsing -----------------------------------------------------------------------------------


def split_one(data: bytes) -> tuple[tuple[int, int, bytes] | None, bytes]:
    """The first whole packet in `data` as (type, flags, body), and the rest; (None, data) when
    the first packet is still incomplete."""
    index, length, shift = 1, 0, 0
    while True:
        if index >= len(data):
            return None, data
        byte = data[index]
        length += (byte & 0x7F) << shift
        index, shift = index + 1, shift + 7
        if not byte & 0x80:
            break
    if len(data) < index + length:
        return None, data
    return (data[0] >> 4, data[0] & 0x0F, data[index:index + length]), data[index + length:]


def split(data: bytes) -> tuple[list[tuple[int, int, bytes]], bytes]:
    """Every whole packet in `data` as (type, flags, body), and the incomplete rest."""
    packets = []
    while data:
        first, rest = split_one(data)
        if first is None:
            break
        packets.append(first)
        data = rest
    return packets, data


def parse(data: bytes) -> list[tuple[int, bytes]]:
    """Bytes from the gateway as (type, body) pairs; fails on a trailing incomplete packet."""
    packets, rest = split(data)
    assert rest == b"", f"incomplete packet at the end: {rest!r}"
    return [(kind, body) for kind, _flags, body in packets]


def publish_fields(level: int, flags: int, body: bytes) -> dict:
    """Topic, QoS, DUP, RETAIN, packet id and payload of a PUBLISH body (5.0 properties skipped)."""
    qos = (flags >> 1) & 3
    length = int.from_bytes(body[:2], "big")
    topic, rest = body[2:2 + length].decode(), body[2 + length:]
    packet_id = None
    if qos:
        packet_id, rest = int.from_bytes(rest[:2], "big"), rest[2:]
    if level == 5:
        prop_length, index, shift = 0, 0, 0
        while True:
            byte = rest[index]
            prop_length += (byte & 0x7F) << shift
            index, shift = index + 1, shift + 7
            if not byte & 0x80:
                break
        rest = rest[index + prop_length:]
    return {"topic": topic, "qos": qos, "dup": bool(flags & 8), "retain": bool(flags & 1),
            "packet_id": packet_id, "payload": rest}


# ----- sockets -----------------------------------------------------------------------------------


class RawClient:
    """A TCP connection to the gateway with a receive buffer, so that packets arriving together
    are returned one by one."""

    def __init__(self, gateway):
        self.sock = socket.create_connection(gateway.address, timeout=WAIT_S)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def __enter__(self):
        return self

    def __exit__(self, *_exc):
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self, timeout: float = WAIT_S) -> tuple[int, int, bytes]:
        """The next packet as (type, flags, body); fails on timeout or if the connection closes."""
        deadline = time.monotonic() + timeout
        while True:
            first, rest = split_one(self.buffer)
            if first is not None:
                self.buffer = rest
                return first
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"no packet from the gateway within {timeout} s "
                            f"(buffered {self.buffer!r})", pytrace=False)
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            assert chunk, f"the gateway closed the connection (buffered {self.buffer!r})"
            self.buffer += chunk

    def read_until_closed(self, timeout: float = WAIT_S) -> bytes:
        """Everything the gateway sends until it closes the connection; fails if it stays open."""
        deadline = time.monotonic() + timeout
        data, self.buffer = self.buffer, b""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"the gateway kept the connection open for {timeout} s "
                            f"(sent {data!r})", pytrace=False)
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                return data
            if not chunk:
                return data
            data += chunk

    def connect(self, level: int, client_id: str, **kwargs) -> tuple[bool, int]:
        """Sends CONNECT and reads the CONNACK; returns (session present, reason code)."""
        self.send(connect(level, client_id, **kwargs))
        kind, _flags, body = self.read()
        assert kind == CONNACK, (kind, body)
        return bool(body[0] & 1), body[1]


def connected(gateway, level: int, client_id: str, **kwargs) -> RawClient:
    """A RawClient whose CONNECT was accepted."""
    client = RawClient(gateway)
    _present, code = client.connect(level, client_id, **kwargs)
    assert code == 0, f"CONNACK refused with 0x{code:02x}"
    return client
