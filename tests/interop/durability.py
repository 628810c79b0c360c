"""Helpers for test_durability.py: a raw MQTT connection that keeps many QoS 1/2 PUBLISHes or
SUBSCRIBEs in flight and records which ones the gateway acknowledged (`Flows`), a thread that
kills the gateway with SIGKILL once enough were acknowledged (`KillWhen`), a raw subscriber that
stays connected through a kill and resumes its session afterwards (`Receiver`), a load that keeps
the store's commits long (`StoreLoad`), and the bits around a killed gateway (reaping it, its
`store: recovered` line, its metrics).

Raw sockets rather than paho where acknowledgements count: paho reports neither a PUBREC nor a
PUBACK's reason code, resends by itself after a reconnect, and deduplicates QoS 2 on its own.
The other receiving side is paho (see test_durability.py), so both generations are exercised.
"""

from __future__ import annotations

import collections
import json
import os
import pathlib
import re
import select
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from typing import Callable

import pytest

from conftest import Gateway, gateway_binary
from rawmqtt import (
    CONNACK, DISCONNECT, PUBACK, PUBCOMP, PUBREC, PUBREL, SUBACK, ack, packet, publish,
    publish_fields, split_one, string, varint,
)
from support import WAIT_S

#: kill -9 rounds of the loop tests (1 to 3); `cargo xtask kill9` sets more.
ROUNDS = int(os.environ.get("DURABILITY_ROUNDS", "1"))
#: Where each round appends one JSON line with its counts (`cargo xtask kill9` reads it).
REPORT = os.environ.get("DURABILITY_REPORT")

#: 5.0 property identifiers used here.
SESSION_EXPIRY, RECEIVE_MAXIMUM, WILL_DELAY = 0x11, 0x21, 0x18
#: 5.0 reason code Quota exceeded.
QUOTA_EXCEEDED = 0x97


def u32_property(identifier: int, value: int) -> bytes:
    return bytes([identifier]) + value.to_bytes(4, "big")


def read_varint(data: bytes, index: int) -> tuple[int, int]:
    """(value, index after it) of the Variable Byte Integer at `index`."""
    value, shift = 0, 0
    while True:
        byte = data[index]
        value += (byte & 0x7F) << shift
        index, shift = index + 1, shift + 7
        if not byte & 0x80:
            return value, index


#: Size of each 5.0 property's value by identifier: bytes, or "v" (varint), "s" (string or
#: binary data: 2-byte length), "p" (string pair).
_PROPERTY_SIZES = {
    0x01: 1, 0x02: 4, 0x03: "s", 0x08: "s", 0x09: "s", 0x0B: "v", 0x11: 4, 0x12: "s", 0x13: 2,
    0x15: "s", 0x16: "s", 0x17: 1, 0x18: 4, 0x19: 1, 0x1A: "s", 0x1C: "s", 0x1F: "s", 0x21: 2,
    0x22: 2, 0x23: 2, 0x24: 1, 0x25: 1, 0x26: "p", 0x27: 4, 0x28: 1, 0x29: 1, 0x2A: 1,
}


def parse_properties(data: bytes) -> dict[int, object]:
    """A 5.0 property block (without its length) as {identifier: value}; ints for numbers,
    bytes for strings and binary data (a pair: (bytes, bytes); repeated ones: the last)."""
    props: dict[int, object] = {}
    index = 0
    while index < len(data):
        identifier, index = read_varint(data, index)
        size = _PROPERTY_SIZES[identifier]
        if size == "v":
            props[identifier], index = read_varint(data, index)
        elif size == "s":
            length = int.from_bytes(data[index:index + 2], "big")
            props[identifier] = data[index + 2:index + 2 + length]
            index += 2 + length
        elif size == "p":
            first = int.from_bytes(data[index:index + 2], "big")
            key = data[index + 2:index + 2 + first]
            index += 2 + first
            second = int.from_bytes(data[index:index + 2], "big")
            props[identifier] = (key, data[index + 2:index + 2 + second])
            index += 2 + second
        else:
            props[identifier] = int.from_bytes(data[index:index + size], "big")
            index += size
    return props


def connect_packet(level: int, client_id: str, *, clean: bool, expiry: int | None = None,
                   will: tuple[str, bytes, int] | None = None, will_delay: int | None = None,
                   keep_alive: int = 60) -> bytes:
    """CONNECT for 3.1.1 (level 4) or 5.0 (level 5): `expiry` is the 5.0 Session Expiry
    Interval, `will` (topic, payload, qos) a will, `will_delay` its 5.0 Will Delay Interval."""
    flags = 0x02 if clean else 0
    if will:
        flags |= 0x04 | (will[2] << 3)
    body = string("MQTT") + bytes([level, flags]) + keep_alive.to_bytes(2, "big")
    if level == 5:
        props = u32_property(SESSION_EXPIRY, expiry) if expiry is not None else b""
        body += varint(len(props)) + props
    body += string(client_id)
    if will:
        if level == 5:
            will_props = u32_property(WILL_DELAY, will_delay) if will_delay is not None else b""
            body += varint(len(will_props)) + will_props
        body += string(will[0]) + len(will[1]).to_bytes(2, "big") + will[1]
    return packet(0x10, body)


def subscribe_packet(level: int, packet_id: int, topic_filter: str, qos: int) -> bytes:
    body = packet_id.to_bytes(2, "big") + (varint(0) if level == 5 else b"")
    return packet(0x82, body + string(topic_filter) + bytes([qos]))


def ack_code(level: int, body: bytes) -> int:
    """Reason code of a PUBACK/PUBREC/PUBCOMP body (0 when omitted, and always in 3.1.1)."""
    return body[2] if level == 5 and len(body) > 2 else 0


def suback_codes(level: int, body: bytes) -> list[int]:
    index = 2
    if level == 5:
        length, index = read_varint(body, index)
        index += length
    return list(body[index:])


class Flows:
    """One raw MQTT connection that sends requests (QoS 1/2 PUBLISHes or SUBSCRIBEs, each with
    its own packet identifier) as fast as a window of unacknowledged ones allows, and records
    what the gateway answered: `acked` (PUBACK, PUBREC or SUBACK with a success code),
    `refused` (a failure code), `completed` (the flow is over: PUBACK, PUBCOMP, SUBACK).

    Used from one thread at a time (`run`); `cond` is notified after each batch of
    acknowledgements, so another thread may wait for a count (see `KillWhen`).
    """

    def __init__(self, address: tuple[str, int], level: int, client_id: str, *,
                 clean: bool = True, expiry: int | None = None, timeout: float = 20.0):
        self.address = address
        self.level = level
        self.client_id = client_id
        self.clean = clean
        self.expiry = expiry
        #: How long `run` waits for the gateway before failing the test.
        self.timeout = timeout
        self.cond = threading.Condition()
        self.acked: dict[int, int] = {}  # packet id -> code, in the order they arrived
        self.refused: dict[int, int] = {}
        self.completed: set[int] = set()
        #: Packet ids whose PUBLISH/SUBSCRIBE has been written to the socket.
        self.sent: set[int] = set()
        #: Whether the gateway closed the connection (or vanished) before everything completed.
        self.lost = False
        #: The reason code of a DISCONNECT from the gateway, if one came.
        self.disconnected: int | None = None
        #: Called (on the thread that runs the flows) after each batch of acknowledgements was
        #: recorded, before anything more is sent: for a kill that must land at once.
        self.after_acks: Callable[[], None] | None = None
        self.sock: socket.socket | None = None
        self.buffer = b""
        self.window = 0

    # ----- connection ------------------------------------------------------------------------

    def connect(self) -> tuple[bool, int, dict]:
        """Connects and reads the CONNACK: (session present, reason code, 5.0 properties).
        The window becomes the gateway's Receive Maximum (5.0) or 256 (3.1.1, which has none)."""
        self.close()
        self.sock = socket.create_connection(self.address, timeout=WAIT_S)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""
        self.lost = False
        self.sock.sendall(connect_packet(self.level, self.client_id, clean=self.clean,
                                         expiry=self.expiry))
        kind, _flags, body = self._read_packet(WAIT_S)
        assert kind == CONNACK, f"{self.client_id}: expected CONNACK, got type {kind}"
        props: dict = {}
        if self.level == 5 and len(body) > 2:
            length, index = read_varint(body, 2)
            props = parse_properties(body[index:index + length])
        self.window = int(props.get(RECEIVE_MAXIMUM, 65535)) if self.level == 5 else 256
        return bool(body[0] & 1), body[1], props

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None

    def disconnect(self) -> None:
        """A normal DISCONNECT (reason 0: no will), then close."""
        if self.sock is not None:
            try:
                self.sock.sendall(b"\xe0\x00")
            except OSError:
                pass
        self.close()

    def _read_packet(self, timeout: float) -> tuple[int, int, bytes]:
        deadline = time.monotonic() + timeout
        while True:
            first, rest = split_one(self.buffer)
            if first is not None:
                self.buffer = rest
                return first
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"{self.client_id}: no packet from the gateway within {timeout} s",
                            pytrace=False)
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            assert chunk, f"{self.client_id}: the gateway closed the connection"
            self.buffer += chunk

    # ----- the pipelined flows --------------------------------------------------------------

    def publish_all(self, messages: list[tuple[int, str, bytes]], qos: int, *,
                    retain: bool = False, dup: frozenset[int] = frozenset(),
                    release: list[int] = (), properties: bytes = b"") -> None:
        """Publishes `messages` ((packet id, topic, payload), ids unique among unfinished
        flows) at `qos`, first sending PUBREL for the QoS 2 ids in `release` (their PUBREC came
        on an earlier connection); ids in `dup` go out with DUP=1 (a resend after a resume).
        Returns when every flow completed or the connection was lost."""
        requests = collections.deque()
        for packet_id in release:
            requests.append((packet_id, ack(PUBREL, packet_id), True))
        for packet_id, topic, payload in messages:
            data = publish(self.level, topic, payload, qos=qos, packet_id=packet_id,
                           retain=retain, dup=packet_id in dup, properties=properties)
            requests.append((packet_id, data, False))
        self._run(requests, qos)

    def subscribe_all(self, filters: list[tuple[int, str]], qos: int, window: int) -> None:
        """One SUBSCRIBE per (packet id, filter), at most `window` unanswered at once."""
        self.window = window
        requests = collections.deque(
            (packet_id, subscribe_packet(self.level, packet_id, topic_filter, qos), False)
            for packet_id, topic_filter in filters)
        self._run(requests, None)

    def _run(self, requests: collections.deque, qos: int | None) -> None:
        """Sends `requests` ((packet id, bytes, whether it is a PUBREL)) while fewer than
        `window` flows are open, reads the answers, and answers PUBREC with PUBREL."""
        open_flows = len([r for r in requests if r[2]])  # PUBRELs: flows already open
        outgoing = bytearray()
        quiet_since = time.monotonic()
        while True:
            # Everything that may go now: PUBRELs always, new flows within the window.
            while (requests and (requests[0][2] or open_flows < self.window)
                   and len(outgoing) < 65536):
                packet_id, data, is_release = requests.popleft()
                outgoing += data
                if not is_release:
                    open_flows += 1
                    self.sent.add(packet_id)
            if not requests and open_flows == 0 and not outgoing:
                return
            try:
                if outgoing:
                    self.sock.settimeout(self.timeout)
                    self.sock.sendall(outgoing)
                    outgoing = bytearray()
                # Wait for answers only when nothing more may be sent.
                can_send = bool(requests) and open_flows < self.window
                readable, _, _ = select.select([self.sock], [], [], 0 if can_send else 0.5)
                if not readable:
                    if not can_send and time.monotonic() - quiet_since > self.timeout:
                        pytest.fail(f"{self.client_id}: no acknowledgement for {self.timeout} s "
                                    f"with {open_flows} flows open", pytrace=False)
                    continue
                chunk = self.sock.recv(262144)
            except (ConnectionError, socket.timeout, OSError) as error:
                if isinstance(error, socket.timeout):
                    pytest.fail(f"{self.client_id}: the gateway stopped reading for "
                                f"{self.timeout} s", pytrace=False)
                self.lost = True
                return
            if not chunk:
                self.lost = True
                return
            quiet_since = time.monotonic()
            self.buffer += chunk
            with self.cond:
                while True:
                    first, self.buffer = split_one(self.buffer)
                    if first is None:
                        break
                    kind, _flags, body = first
                    packet_id = int.from_bytes(body[:2], "big")
                    if kind == PUBACK or (kind == PUBREC and qos == 2):
                        code = ack_code(self.level, body)
                        if code < 0x80:
                            self.acked[packet_id] = code
                            if kind == PUBREC:
                                outgoing += ack(PUBREL, packet_id)
                                continue
                        else:
                            self.refused[packet_id] = code
                        self.completed.add(packet_id)
                        open_flows -= 1
                    elif kind == PUBCOMP:
                        self.completed.add(packet_id)
                        open_flows -= 1
                    elif kind == DISCONNECT:
                        self.disconnected = body[0] if body else 0
                        self.lost = True
                    elif kind == SUBACK:
                        codes = suback_codes(self.level, body)
                        if codes and all(code < 0x80 for code in codes):
                            self.acked[packet_id] = codes[0]
                        else:
                            self.refused[packet_id] = codes[0] if codes else -1
                        self.completed.add(packet_id)
                        open_flows -= 1
                    else:
                        pytest.fail(f"{self.client_id}: unexpected packet type {kind}",
                                    pytrace=False)
                self.cond.notify_all()
            if self.after_acks is not None:
                self.after_acks()
            if self.lost:
                return


class KillWhen(threading.Thread):
    """Sends SIGKILL to the gateway once `count()` (read under `cond`, which the producer
    notifies) reaches `threshold`; gives up after `timeout` s, or when cancelled short of the
    threshold. `killed_at` is the count when the signal went out (None if it never did)."""

    def __init__(self, gateway: Gateway, cond: threading.Condition, count: Callable[[], int],
                 threshold: int, timeout: float = 60.0):
        super().__init__(daemon=True)
        self.gateway = gateway
        self.cond = cond
        self.count = count
        self.threshold = threshold
        self.timeout = timeout
        self.killed_at: int | None = None
        self.cancelled = False

    def run(self) -> None:
        with self.cond:
            self.cond.wait_for(
                lambda: self.cancelled or self.count() >= self.threshold, self.timeout)
            # Reached just before the producer finished (and cancelled): still a kill.
            if self.count() >= self.threshold:
                self.gateway.process.send_signal(signal.SIGKILL)
                self.killed_at = self.count()

    def cancel(self) -> None:
        with self.cond:
            self.cancelled = True
            self.cond.notify_all()


def kill9(gateway: Gateway) -> None:
    """SIGKILL (if not sent already), reap, and close its output; asserts it died of it."""
    if gateway.process.poll() is None:
        gateway.process.send_signal(signal.SIGKILL)
    code = gateway.process.wait(timeout=WAIT_S)
    gateway.reader.join(timeout=1)
    gateway.process.stdout.close()
    assert code == -signal.SIGKILL, f"the gateway exited with {code}, not by SIGKILL\n" \
        + gateway.log_text()


def reap(gateway: Gateway | None) -> None:
    """Teardown of a gateway a test may have left running, whatever state it is in."""
    if gateway is None:
        return
    if gateway.process.poll() is None:
        gateway.process.kill()
    gateway.process.wait(timeout=WAIT_S)
    gateway.reader.join(timeout=1)
    gateway.process.stdout.close()


def recovered_line(gateway: Gateway) -> dict[str, int]:
    """The counts of the `store: recovered ...` line the gateway printed at start."""
    line = gateway.wait_for_log(r"store: recovered ")
    match = re.search(
        r"store: recovered (?P<sessions>\d+) sessions \((?P<queued>\d+) queued and "
        r"(?P<inflight>\d+) in-flight messages, (?P<subscriptions>\d+) subscriptions\) and "
        r"(?P<retained>\d+) retained messages from (?P<path>\S+) in (?P<ms>\d+) ms", line)
    assert match, f"the recovered line does not have the promised form: {line!r}"
    counts = {key: int(value) for key, value in match.groupdict().items() if key != "path"}
    counts["path"] = match["path"]
    return counts


def run_to_exit(data_dir: pathlib.Path, extra: list[str] = (), timeout: float = 30.0
                ) -> tuple[int | None, str]:
    """Runs the gateway as `start_gateway` would, expecting it to exit by itself; returns
    (exit code, or None if it was still running after `timeout` s and got killed, output)."""
    command = [str(gateway_binary()), "--tcp", "127.0.0.1:0", "--http", "127.0.0.1:0",
               "--data-dir", str(data_dir), *extra]
    env = dict(os.environ, NO_COLOR="1", RUST_LOG="info")
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, env=env)
    try:
        output, _ = process.communicate(timeout=timeout)
        code: int | None = process.returncode
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        code = None
    return code, output.decode("utf-8", "replace")


def http_get(gateway: Gateway, path: str) -> tuple[int, str]:
    """(status, body) of GET `path` on the gateway's HTTP listener."""
    try:
        with urllib.request.urlopen(gateway.http_url + path, timeout=WAIT_S) as answer:
            return answer.status, answer.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8", "replace")


def metric(gateway: Gateway, name: str) -> float | None:
    """The value of the unlabelled sample `name` on /metrics (summed over label sets if it
    has labels), or None when /metrics does not list it."""
    status, body = http_get(gateway, "/metrics")
    assert status == 200, f"/metrics answered {status}: {body[:200]}"
    values = []
    for line in body.splitlines():
        if line.startswith("#"):
            continue
        sample, _, value = line.rpartition(" ")
        if sample == name or sample.startswith(name + "{"):
            values.append(float(value))
    return sum(values) if values else None


def wait_disconnected(gateway: Gateway, client_id: str, timeout: float = WAIT_S) -> None:
    """Waits until the gateway's API no longer lists `client_id` as connected (so the
    gateway has handled the loss of its connection)."""
    deadline = time.monotonic() + timeout
    while True:
        status, body = http_get(gateway, f"/api/v1/clients/{client_id}")
        if status == 404:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"{client_id} still connected after {timeout} s: {status} {body}",
                        pytrace=False)
        time.sleep(0.05)


def report_round(record: dict) -> None:
    """Prints one round's counts and appends them to $DURABILITY_REPORT (JSON lines)."""
    print("durability " + " ".join(f"{key}={value}" for key, value in record.items()), flush=True)
    if REPORT:
        with open(REPORT, "a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")


class Receiver:
    """A raw subscriber that stays connected while the gateway is killed, then resumes its
    session on the restarted gateway, acknowledging as the specification says: QoS 1 with
    PUBACK; QoS 2 with Method A [MQTT-4.3.3-9]: the message is delivered at its first PUBLISH,
    whose packet id then awaits PUBREL, and until that PUBREL a PUBLISH with the same id is a
    duplicate (PUBREC again, not delivered). Its state (the ids awaiting PUBREL) outlives its
    connections, as a client's session state does; it is the only deduplication there is, so
    a gateway that sends again what it already completed shows as a duplicate in `payloads`.
    """

    def __init__(self, level: int, client_id: str, topic: str, qos: int):
        self.level, self.client_id, self.topic, self.qos = level, client_id, topic, qos
        self.cond = threading.Condition()
        #: Payloads delivered, in order, and how often each.
        self.payloads: list[bytes] = []
        self.counts: collections.Counter = collections.Counter()
        self.awaiting_pubrel: set[int] = set()
        #: QoS 2 deliveries completed (PUBREL answered with PUBCOMP).
        self.completed = 0
        #: Called on the reading thread right after each PUBCOMP went out, with `completed`.
        self.after_pubcomp: Callable[[int], None] | None = None
        #: While set, QoS 2 PUBLISHes are delivered but their PUBRECs wait for
        #: `release_pubrecs`.
        self.hold_pubrec = False
        self.held_pubrecs: list[int] = []
        self.send_lock = threading.Lock()
        self.sock: socket.socket | None = None
        self.thread: threading.Thread | None = None
        self.error: str | None = None

    def connect(self, address: tuple[str, int], *, resume: bool) -> bool:
        """Connects (5.0: expiry 3600 s, Clean Start = not `resume`; 3.1.1: CleanSession=0),
        subscribes unless resuming, starts reading; returns the CONNACK's session present."""
        flows = Flows(address, self.level, self.client_id,
                      clean=self.level == 5 and not resume,
                      expiry=3600 if self.level == 5 else None)
        present, code, _props = flows.connect()
        assert code == 0, f"{self.client_id}: CONNACK 0x{code:02x}"
        if not resume:
            flows.subscribe_all([(1, self.topic)], self.qos, 1)
            assert flows.acked.get(1) == self.qos, (flows.acked, flows.refused)
        self.sock, flows.sock = flows.sock, None
        buffer = flows.buffer
        self.thread = threading.Thread(target=self._read, args=(self.sock, buffer), daemon=True)
        self.thread.start()
        return present

    def _read(self, sock: socket.socket, buffer: bytes) -> None:
        sock.settimeout(None)
        while True:
            while True:
                first, buffer = split_one(buffer)
                if first is None:
                    break
                try:
                    self._handle(sock, *first)
                except OSError:
                    return  # the gateway went away while we answered
            try:
                chunk = sock.recv(262144)
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk

    def _handle(self, sock: socket.socket, kind: int, flags: int, body: bytes) -> None:
        if kind == 3:  # PUBLISH
            fields = publish_fields(self.level, flags, body)
            packet_id, qos = fields["packet_id"], fields["qos"]
            deliver = True
            if qos == 2:
                deliver = packet_id not in self.awaiting_pubrel
                self.awaiting_pubrel.add(packet_id)
                with self.send_lock:
                    if self.hold_pubrec:
                        self.held_pubrecs.append(packet_id)
                    else:
                        sock.sendall(ack(PUBREC, packet_id))
            elif qos == 1:
                with self.send_lock:
                    sock.sendall(ack(PUBACK, packet_id))
            if deliver:
                with self.cond:
                    self.payloads.append(fields["payload"])
                    self.counts[fields["payload"]] += 1
                    self.cond.notify_all()
        elif kind == PUBREL:
            packet_id = int.from_bytes(body[:2], "big")
            self.awaiting_pubrel.discard(packet_id)
            with self.send_lock:
                sock.sendall(ack(PUBCOMP, packet_id))
            with self.cond:
                self.completed += 1
                self.cond.notify_all()
            if self.after_pubcomp is not None:
                self.after_pubcomp(self.completed)
        elif kind == DISCONNECT:
            pass
        else:
            with self.cond:
                self.error = f"unexpected packet type {kind}: {body[:20]!r}"
                self.cond.notify_all()

    def release_pubrecs(self) -> None:
        """Sends the PUBRECs held so far (see `hold_pubrec`), and stops holding."""
        with self.send_lock:
            self.hold_pubrec = False
            held, self.held_pubrecs = self.held_pubrecs, []
            self.sock.sendall(b"".join(ack(PUBREC, packet_id) for packet_id in held))

    def wait_for(self, payload: bytes, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while payload not in self.counts:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.error:
                    pytest.fail(f"{self.client_id}: no {payload!r} within {timeout} s "
                                f"({len(self.payloads)} delivered; {self.error or 'no error'})",
                                pytrace=False)
                self.cond.wait(min(remaining, 0.2))

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)  # wakes the reading thread's recv
            except OSError:
                pass
            self.sock.close()
            self.sock = None
        if self.thread is not None:
            self.thread.join(timeout=5)
            assert not self.thread.is_alive(), f"{self.client_id}: its reader did not stop"


class StoreLoad(threading.Thread):
    """Keeps the gateway's store busy: retained QoS 1 messages of 64 KiB on a few topics, 64
    unacknowledged at a time. Each PUBACK waits for its commit, and the next 64 are in before
    that commit ends, so the writer goes from one commit of a few MiB to the next without a
    pause (and never falls behind: the load waits for it). A change recorded meanwhile waits for
    the next commit: a test can kill the gateway after it sent a packet and before the change
    behind that packet is durable, instead of racing a commit of a few hundred microseconds."""

    WINDOW = 64

    def __init__(self, address: tuple[str, int], level: int = 4):
        super().__init__(daemon=True)
        self.sock = socket.create_connection(address, timeout=WAIT_S)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(connect_packet(level, "store-load", clean=True))
        first, self.buffer = split_one(self.sock.recv(16))
        assert first is not None and first[0] == CONNACK
        self.level = level
        self.payload = os.urandom(64 * 1024)
        self.stopped = threading.Event()
        self.sent = 0
        self.acked = 0

    def run(self) -> None:
        try:
            self.sock.settimeout(1.0)
            while not self.stopped.is_set():
                batch = bytearray()
                while self.sent - self.acked < self.WINDOW:
                    self.sent += 1
                    batch += publish(self.level, f"store-load/{self.sent % 8}", self.payload,
                                     qos=1, packet_id=self.sent % 65535 + 1, retain=True)
                if batch:
                    self.sock.sendall(batch)
                try:
                    chunk = self.sock.recv(65536)
                except socket.timeout:
                    continue
                if not chunk:
                    return
                self.buffer += chunk
                while True:
                    first, self.buffer = split_one(self.buffer)
                    if first is None:
                        break
                    if first[0] == PUBACK:
                        self.acked += 1
        except OSError:
            pass  # the gateway was killed, or `stop`

    def start_and_wait(self, gateway: Gateway) -> None:
        """Starts the load and returns once two commits went through with it, so that the
        store's writer is busy from then on (a change arriving now waits for a long commit)."""
        before = metric(gateway, "mqtt_store_commits_total") or 0
        self.start()
        deadline = time.monotonic() + 10
        while (metric(gateway, "mqtt_store_commits_total") or 0) < before + 2:
            assert time.monotonic() < deadline, "the store load made no commit in 10 s"
            time.sleep(0.01)

    def stop(self) -> None:
        self.stopped.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.join(timeout=5)
