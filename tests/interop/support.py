"""Helpers for the interop tests: a paho-mqtt client wrapper that works the same on paho 1.6 and
2.x, a subprocess wrapper that collects output lines, and bounded waiting.

Every wait here has a timeout (`WAIT_S` by default) and fails the test with what was seen so far,
so a test never hangs and never synchronizes with a fixed sleep: it waits for an observable event
(a CONNACK, a SUBACK, a message, a line of output, a process exit).

Negative checks ("X is not delivered") use a marker instead of a pause: the same publisher sends
X, then a marker on a topic the subscriber does receive; the gateway keeps one publisher's messages
in order towards a subscriber, so once the marker is in, X would have been in before it.
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import threading
import time
from typing import Any, Callable

import paho.mqtt.client as mqtt
import pytest

from conftest import PAHO_MAJOR, new_client

#: Default bound of every wait, seconds. Generous for a loaded 2-core machine, still far below
#: anything a person would wait for.
WAIT_S = 5.0


def under_ci() -> bool:
    """Whether this runs under CI: `CI` set to anything but empty, `0` or `false`, as xtask
    reads it (`.ci/run` sets `CI=true`)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false")


def require(present: bool, message: str) -> None:
    """Skips the calling test when a prerequisite is missing, except under CI, where that fails
    it: a green CI run has run every test."""
    if present:
        return
    if under_ci():
        pytest.fail(f"{message}, which CI must have", pytrace=False)
    pytest.skip(message)


def code_of(value: Any) -> int:
    """A paho reason code (int, paho 1 `ReasonCodes`, paho 2 `ReasonCode`) as an int."""
    return int(getattr(value, "value", value))


def poll(condition: Callable[[], Any], timeout: float,
         lock: threading.Condition | None = None) -> Any:
    """`condition()`'s first truthy value within `timeout` s, else its last (falsy) value.

    With `lock`, waits on that condition variable (the producer notifies it) between checks;
    otherwise re-checks every 50 ms.
    """
    deadline = time.monotonic() + timeout
    if lock is None:
        lock = threading.Condition()
    with lock:
        while True:
            value = condition()
            if value:
                return value
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return value
            lock.wait(timeout=min(remaining, 0.05))


def wait_until(condition: Callable[[], Any], timeout: float, describe: Callable[[], str],
               lock: threading.Condition | None = None) -> Any:
    """Like `poll`, but fails the test with `describe()` when the time is up."""
    value = poll(condition, timeout, lock)
    if not value:
        pytest.fail(f"timed out after {timeout} s: {describe()}", pytrace=False)
    return value


@dataclasses.dataclass
class Received:
    """One message as a subscriber got it (copied out of paho's MQTTMessage)."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    properties: Any  # paho Properties (5.0) or None

    def prop(self, name: str, default: Any = None) -> Any:
        """A 5.0 property by paho's attribute name (e.g. `ContentType`), else `default`."""
        return getattr(self.properties, name, default) if self.properties is not None else default


@dataclasses.dataclass
class ConnAck:
    session_present: bool
    reason_code: int
    properties: Any


class PahoClient:
    """A paho client on its own network thread (`loop_start`) whose callbacks record everything.

    The callback signatures differ between paho 1.6 (`VERSION1`, with extra arguments for 5.0)
    and paho 2 (`VERSION2`, chosen by `conftest.new_client`); the handlers take `*args` and pick
    the arguments by position, which this class normalizes into plain values.
    """

    def __init__(self, client_id: str = "", protocol: int = mqtt.MQTTv311,
                 clean_session: bool | None = None, name: str | None = None,
                 reconnect: bool = True, transport: str = "tcp"):
        self.protocol = protocol
        self.name = name or client_id or "client"
        # reconnect=False: after losing the connection paho's thread does not reconnect by itself.
        # transport="websockets": MQTT over WebSocket (set the path with client.ws_set_options).
        kwargs: dict[str, Any] = {"protocol": protocol, "reconnect_on_failure": reconnect,
                                  "transport": transport}
        if protocol != mqtt.MQTTv5:
            kwargs["clean_session"] = True if clean_session is None else clean_session
        self.client = new_client(client_id, **kwargs)
        self.cond = threading.Condition()
        self.connacks: list[ConnAck] = []
        self.disconnects: list[tuple[int, Any]] = []
        self.subacks: dict[int, list[int]] = {}
        self.unsubacks: set[int] = set()
        self.messages: list[Received] = []
        self.looping = False
        client = self.client
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_unsubscribe = self._on_unsubscribe
        client.on_message = self._on_message

    # ----- callbacks (paho's network thread) ------------------------------------------------

    def _on_connect(self, _client, _userdata, flags, reason_code, *rest):
        if isinstance(flags, dict):  # paho 1: {"session present": 0 or 1}
            present = bool(flags.get("session present"))
        else:  # paho 2: ConnectFlags
            present = bool(flags.session_present)
        with self.cond:
            self.connacks.append(ConnAck(present, code_of(reason_code), rest[0] if rest else None))
            self.cond.notify_all()

    def _on_disconnect(self, _client, _userdata, *args):
        if PAHO_MAJOR >= 2:  # (flags, reason_code, properties)
            reason_code, properties = args[1], args[2]
        else:  # (rc) for 3.x, (rc, properties) for 5.0
            reason_code, properties = args[0], (args[1] if len(args) > 1 else None)
        with self.cond:
            self.disconnects.append((code_of(reason_code), properties))
            self.cond.notify_all()

    def _on_subscribe(self, _client, _userdata, mid, granted, *_rest):
        with self.cond:
            self.subacks[mid] = [code_of(code) for code in granted]
            self.cond.notify_all()

    def _on_unsubscribe(self, _client, _userdata, mid, *_rest):
        with self.cond:
            self.unsubacks.add(mid)
            self.cond.notify_all()

    def _on_message(self, _client, _userdata, message):
        received = Received(
            message.topic,
            bytes(message.payload),
            message.qos,
            bool(message.retain),
            getattr(message, "properties", None),
        )
        with self.cond:
            self.messages.append(received)
            self.cond.notify_all()

    # ----- actions, each waiting for the broker's answer ---------------------------------

    def _wait(self, condition: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
        return wait_until(condition, timeout, lambda: f"{self.name}: {what}", self.cond)

    def connect(self, address: tuple[str, int], keepalive: int = 60, clean_start: bool = True,
                properties: Any = None, expect_code: int | None = 0) -> ConnAck:
        """Connects, starts the network thread, and waits for the CONNACK."""
        seen = len(self.connacks)
        host, port = address
        if self.protocol == mqtt.MQTTv5:
            self.client.connect(host, port, keepalive, clean_start=clean_start, properties=properties)
        else:
            self.client.connect(host, port, keepalive)
        if not self.looping:
            self.client.loop_start()
            self.looping = True
        connack = self._wait(lambda: self.connacks[seen] if len(self.connacks) > seen else None,
                             "no CONNACK")
        if expect_code is not None:
            assert connack.reason_code == expect_code, f"{self.name}: CONNACK {connack}"
        return connack

    def subscribe(self, topic: str, qos: int = 0, options: Any = None,
                  properties: Any = None) -> list[int]:
        """Subscribes and returns the SUBACK's codes (granted QoS or failure codes)."""
        if options is not None:
            result, mid = self.client.subscribe(topic, options=options, properties=properties)
        elif properties is not None:
            result, mid = self.client.subscribe(topic, qos, properties=properties)
        else:
            result, mid = self.client.subscribe(topic, qos)
        assert result == mqtt.MQTT_ERR_SUCCESS, f"{self.name}: subscribe returned {result}"
        return self._wait(lambda: self.subacks.get(mid), f"no SUBACK for {topic!r}")

    def unsubscribe(self, topic: str) -> None:
        result, mid = self.client.unsubscribe(topic)
        assert result == mqtt.MQTT_ERR_SUCCESS, f"{self.name}: unsubscribe returned {result}"
        self._wait(lambda: mid in self.unsubacks, f"no UNSUBACK for {topic!r}")

    def publish(self, topic: str, payload: bytes | str | None = None, qos: int = 0,
                retain: bool = False, properties: Any = None, wait: bool = True):
        """Publishes; with `wait`, returns only once paho completed the flow (PUBACK/PUBCOMP,
        or the bytes written for QoS 0)."""
        info = self.client.publish(topic, payload, qos, retain, properties)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS, f"{self.name}: publish to {topic!r} returned {info.rc}"
        if wait:
            info.wait_for_publish(WAIT_S)
            assert info.is_published(), f"{self.name}: publish to {topic!r} not completed in {WAIT_S} s"
        return info

    def disconnect(self, properties: Any = None) -> None:
        """Sends DISCONNECT, waits for paho to report the disconnection, stops the thread."""
        seen = len(self.disconnects)
        if properties is not None:
            self.client.disconnect(properties=properties)
        else:
            self.client.disconnect()
        self._wait(lambda: len(self.disconnects) > seen, "on_disconnect not called")
        self.stop()

    def stop(self) -> None:
        if self.looping:
            self.client.loop_stop()
            self.looping = False

    def close(self) -> None:
        """Teardown: best-effort disconnect, then stop the network thread."""
        try:
            if self.client.is_connected():
                self.client.disconnect()
        finally:
            self.stop()

    # ----- received messages -------------------------------------------------------------

    def wait_messages(self, count: int, topic: str | None = None,
                      timeout: float = WAIT_S) -> list[Received]:
        """Waits until `count` messages (on `topic`, if given) arrived; returns all of those."""

        def matching():
            with self.cond:
                return [m for m in self.messages if topic is None or m.topic == topic]

        self._wait(lambda: len(matching()) >= count,
                   f"expected {count} message(s) on {topic or 'any topic'}, got "
                   f"{[(m.topic, m.payload[:60]) for m in matching()]}", timeout)
        return matching()

    def wait_message(self, topic: str, timeout: float = WAIT_S) -> Received:
        """The first message on `topic`, waiting for it if needed."""
        return self.wait_messages(1, topic, timeout)[0]

    def wait_disconnect(self, timeout: float = WAIT_S) -> tuple[int, Any]:
        return self._wait(lambda: self.disconnects[0] if self.disconnects else None,
                          "not disconnected", timeout)

    def topics(self) -> list[str]:
        with self.cond:
            return [m.topic for m in self.messages]


def properties(packet_type: int, **values: Any):
    """A paho `Properties` for `packet_type` (e.g. `PacketTypes.PUBLISH`) with `values` set."""
    from paho.mqtt.properties import Properties

    props = Properties(packet_type)
    for name, value in values.items():
        setattr(props, name, value)
    return props


class Process:
    """A subprocess whose stdout (and stderr, merged unless `stderr=False`) is read line by line
    by a thread, so tests can wait for a line without blocking on a full pipe."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None,
                 stdin: Any = subprocess.DEVNULL, merge_stderr: bool = True, name: str | None = None):
        self.args = args
        self.name = name or os.path.basename(args[0])
        self.process = subprocess.Popen(
            args,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
            env=env,
        )
        self.lines: list[str] = []
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        if not merge_stderr:
            self.error_lines: list[str] = []
            threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read(self) -> None:
        for raw in iter(self.process.stdout.readline, b""):
            with self.cond:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\r\n"))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def _read_stderr(self) -> None:
        for raw in iter(self.process.stderr.readline, b""):
            with self.cond:
                self.error_lines.append(raw.decode("utf-8", "replace").rstrip("\r\n"))

    def output(self) -> str:
        with self.cond:
            return "\n".join(self.lines)

    def matching(self, pattern: str) -> list[str]:
        regex = re.compile(pattern)
        with self.cond:
            return [line for line in self.lines if regex.search(line)]

    def wait_for_line(self, pattern: str, count: int = 1, timeout: float = WAIT_S) -> list[str]:
        """Waits until `count` lines match `pattern`; returns the matching lines."""

        def found():
            lines = self.matching(pattern)
            return lines if len(lines) >= count else None

        return wait_until(
            found,
            timeout,
            lambda: f"{self.name}: expected {count} line(s) matching {pattern!r}; exit code "
                    f"{self.process.poll()}; output:\n{self.output()}",
            self.cond,
        )

    def wait(self, timeout: float = WAIT_S) -> int:
        """Waits for the process to exit; returns its exit code (fails the test on timeout)."""
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.name} did not exit within {timeout} s; output:\n{self.output()}",
                        pytrace=False)
        self.reader.join(timeout=WAIT_S)
        return code

    def signal(self, number: int) -> None:
        if self.process.poll() is None:
            self.process.send_signal(number)

    def kill(self) -> None:
        """SIGKILL (no chance to send DISCONNECT) and reap."""
        self.signal(signal.SIGKILL)
        self.process.wait(timeout=WAIT_S)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=WAIT_S)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
