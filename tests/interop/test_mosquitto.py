"""Debian's mosquitto clients (`mosquitto_pub`, `mosquitto_sub`, libmosquitto 2.0) against the
gateway, with MQTT 3.1.1 (`-V mqttv311`) and 5.0 (`-V 5`).

`mosquitto_sub` runs with `-d` (its debug lines tell when the SUBACK arrived, so publishing starts
only once it is subscribed), `-F %j` (one JSON object per message: topic, qos, retain, payload,
and for 5.0 the properties), `-C N` (exit after N messages) and `-W` (a backstop timeout).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import paho.mqtt.client as mqtt
import pytest

from support import WAIT_S, require

@pytest.fixture(autouse=True)
def mosquitto_clients() -> None:
    """mosquitto_pub/sub must be there (under CI a missing one fails the test)."""
    require(
        bool(shutil.which("mosquitto_pub") and shutil.which("mosquitto_sub") and shutil.which("stdbuf")),
        "mosquitto-clients is not installed (cargo xtask test installs it as root)",
    )

VERSIONS = [pytest.param("mqttv311", id="v3.1.1"), pytest.param("5", id="v5")]
#: mosquitto_sub's own time limit (-W), above every wait of the test itself.
SUB_LIMIT_S = 20


class MosquittoSub:
    """A running `mosquitto_sub -d -F %j` and what it printed."""

    def __init__(self, spawn, gateway, version: str, topic: str, count: int, *extra: str,
                 qos: int = 2, client_id: str | None = None, formatted: str = "%j"):
        # A pipe makes stdio buffer whole blocks, and mosquitto_sub flushes only after messages,
        # not after its debug lines (such as the SUBACK one): ask for line buffering.
        args = [
            "stdbuf", "-oL", "mosquitto_sub", "-h", gateway.mqtt_host, "-p", str(gateway.mqtt_port),
            "-V", version, "-t", topic, "-q", str(qos), "-C", str(count),
            "-W", str(SUB_LIMIT_S), "-d", "-F", formatted, *extra,
        ]
        if client_id:
            args += ["-i", client_id]
        self.process = spawn(args, name=f"mosquitto_sub -V {version}")

    def wait_subscribed(self) -> None:
        self.process.wait_for_line(r"received SUBACK")

    def finish(self) -> list[dict]:
        """Waits for it to exit after its -C messages; returns them (parsed %j lines)."""
        code = self.process.wait(timeout=WAIT_S)
        assert code == 0, f"mosquitto_sub exited with {code}:\n{self.process.output()}"
        return self.messages()

    def messages(self) -> list[dict]:
        return [json.loads(line) for line in self.process.matching(r"^\{")]


def mosquitto_pub(gateway, version: str, *args: str, stdin: bytes | None = None) -> None:
    """Runs `mosquitto_pub` to completion (bounded) and checks that it succeeded."""
    command = ["mosquitto_pub", "-h", gateway.mqtt_host, "-p", str(gateway.mqtt_port),
               "-V", version, *args]
    result = subprocess.run(command, input=stdin, capture_output=True, timeout=WAIT_S * 2)
    assert result.returncode == 0, (
        f"{' '.join(command)} exited with {result.returncode}: {result.stderr.decode()}"
    )


def paho_protocol(version: str) -> int:
    return mqtt.MQTTv5 if version == "5" else mqtt.MQTTv311


@pytest.mark.parametrize("qos", [0, 1, 2])
@pytest.mark.parametrize("version", VERSIONS)
def test_mosquitto_sub_receives_from_mosquitto_pub(gateway, spawn, version, qos):
    sub = MosquittoSub(spawn, gateway, version, "mosq/qos/#", 3, qos=2)
    sub.wait_subscribed()
    for n in range(3):
        mosquitto_pub(gateway, version, "-t", f"mosq/qos/{n}", "-m", f"message {n}", "-q", str(qos))
    got = [(m["topic"], m["payload"], m["qos"], m["retain"]) for m in sub.finish()]
    expected = [(f"mosq/qos/{n}", f"message {n}", qos, 0) for n in range(3)]
    if qos == 0:
        # Three separate connections: a QoS 0 mosquitto_pub exits without waiting for the
        # gateway, so their order is not promised; with QoS 1/2 it waits for PUBACK/PUBCOMP.
        got.sort()
    assert got == expected


@pytest.mark.parametrize("version", VERSIONS)
def test_retained_message_with_r(gateway, spawn, version):
    mosquitto_pub(gateway, version, "-t", "mosq/ret/a", "-m", "kept", "-q", "1", "-r")
    late = MosquittoSub(spawn, gateway, version, "mosq/ret/#", 1)
    [got] = late.finish()
    assert (got["topic"], got["payload"], got["retain"], got["qos"]) == ("mosq/ret/a", "kept", 1, 1)

    # `-r -n` (a null retained message) clears it: a new subscriber's first message is a marker
    # published after its SUBACK.
    mosquitto_pub(gateway, version, "-t", "mosq/ret/a", "-n", "-q", "1", "-r")
    latest = MosquittoSub(spawn, gateway, version, "mosq/ret/#", 1)
    latest.wait_subscribed()
    mosquitto_pub(gateway, version, "-t", "mosq/ret/marker", "-m", "m", "-q", "1")
    [got] = latest.finish()
    assert (got["topic"], got["retain"]) == ("mosq/ret/marker", 0)


def test_user_property_from_mosquitto_pub_reaches_a_v5_paho_subscriber(gateway, make_client, spawn):
    paho = make_client("paho-v5", protocol=mqtt.MQTTv5)
    paho.connect(gateway.address)
    paho.subscribe("mosq/props", 1)
    sub = MosquittoSub(spawn, gateway, "5", "mosq/props", 1)
    sub.wait_subscribed()
    mosquitto_pub(gateway, "5", "-t", "mosq/props", "-m", "with properties", "-q", "1",
                  "-D", "publish", "user-property", "a", "b",
                  "-D", "publish", "content-type", "text/plain")
    got = paho.wait_message("mosq/props")
    assert got.payload == b"with properties"
    assert got.prop("UserProperty") == [("a", "b")]
    assert got.prop("ContentType") == "text/plain"
    [seen] = sub.finish()
    assert seen["properties"]["user-properties"] == {"a": "b"}
    assert seen["properties"]["content-type"] == "text/plain"


@pytest.mark.parametrize("version", VERSIONS)
def test_mosquitto_pub_l_streams_lines(gateway, spawn, version):
    lines = ["first line", "第二行", "third, with spaces  ", "4"]
    sub = MosquittoSub(spawn, gateway, version, "mosq/lines", len(lines))
    sub.wait_subscribed()
    stdin = "".join(f"{line}\n" for line in lines).encode("utf-8")
    mosquitto_pub(gateway, version, "-t", "mosq/lines", "-l", "-q", "1", stdin=stdin)
    assert [m["payload"] for m in sub.finish()] == lines


@pytest.mark.parametrize("version", VERSIONS)
def test_256_kib_payload_from_a_file(gateway, make_client, spawn, tmp_path, version):
    payload = os.urandom(256 * 1024)
    path = tmp_path / "payload.bin"
    path.write_bytes(payload)
    paho = make_client("paho-big", protocol=paho_protocol(version))
    paho.connect(gateway.address)
    paho.subscribe("mosq/big", 1)
    # %l: payload length, %x: the payload in hex (binary-safe on one line).
    sub = MosquittoSub(spawn, gateway, version, "mosq/big", 1, formatted="%l %x")
    sub.wait_subscribed()
    mosquitto_pub(gateway, version, "-t", "mosq/big", "-f", str(path), "-q", "1")
    got = paho.wait_message("mosq/big")
    assert got.payload == payload
    assert sub.process.wait(timeout=WAIT_S) == 0, sub.process.output()
    [line] = sub.process.matching(r"^\d+ [0-9a-f]+$")
    length, hexed = line.split()
    assert int(length) == len(payload)
    assert bytes.fromhex(hexed) == payload


@pytest.mark.parametrize("version", VERSIONS)
def test_mosquitto_sub_will_options(gateway, make_client, spawn, version):
    """`mosquitto_sub --will-*`: killed (no DISCONNECT), its will is published, retained as
    asked; leaving normally (DISCONNECT after its -C messages), no will.

    The normal exit is its `-C 1`, not SIGTERM: mosquitto_sub's SIGTERM handler calls into
    libmosquitto from the signal handler, which deadlocks when the signal lands while the
    library holds a lock (seen here right after a SUBACK), and for 5.0 it sends DISCONNECT
    with reason 0x04 "with will message", which asks for the will on purpose.
    """
    watcher = make_client("will-watcher", protocol=paho_protocol(version))
    watcher.connect(gateway.address)
    watcher.subscribe("mosq/will/#", 1)
    will_args = ["--will-topic", "mosq/will/gone", "--will-payload", "bye from mosquitto_sub",
                 "--will-qos", "1", "--will-retain"]

    doomed = MosquittoSub(spawn, gateway, version, "mosq/anything", 1, *will_args,
                          client_id="mosq-doomed")
    doomed.wait_subscribed()
    doomed.process.kill()
    will = watcher.wait_message("mosq/will/gone")
    assert (will.payload, will.qos, will.retain) == (b"bye from mosquitto_sub", 1, False)

    # --will-retain: a later subscriber finds it retained.
    late = MosquittoSub(spawn, gateway, version, "mosq/will/#", 1)
    [stored] = late.finish()
    assert (stored["topic"], stored["payload"], stored["retain"]) == (
        "mosq/will/gone", "bye from mosquitto_sub", 1)

    # Leaving normally sends DISCONNECT (reason 0x00 for 5.0), which discards the will
    # [MQTT-3.1.2-10]; a marker published after it exited then arrives with no will before it.
    polite = MosquittoSub(spawn, gateway, version, "mosq/polite/exit", 1, "--will-topic",
                          "mosq/will/polite", "--will-payload", "should not appear",
                          client_id="mosq-polite")
    polite.wait_subscribed()
    publisher = make_client("will-marker", protocol=paho_protocol(version))
    publisher.connect(gateway.address)
    publisher.publish("mosq/polite/exit", "time to go", qos=1)
    [last] = polite.finish()
    assert last["payload"] == "time to go"
    assert polite.process.matching(r"sending DISCONNECT"), polite.process.output()
    publisher.publish("mosq/will/marker", "m", qos=1)
    watcher.wait_message("mosq/will/marker")
    assert "mosq/will/polite" not in watcher.topics()
