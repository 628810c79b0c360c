"""MQTT.js (npm `mqtt`, run by node) over `ws://HOST:PORT/mqtt` sharing one topic space with
TCP clients: a browser-style client receives what `mosquitto_pub` publishes over TCP, and a TCP
subscriber receives what MQTT.js publishes over WebSocket."""

import json
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
CLIENT = pathlib.Path(__file__).with_name("mqttjs") / "client.mjs"
MQTT_JS = ROOT / "node_modules" / "mqtt" / "package.json"

def run_mqttjs(spawn, gateway, filter_: str, count: int, *publish: str):
    # `cargo xtask test` installs both; a missing one is a setup error, not a reason to skip.
    assert shutil.which("node"), "node is not on PATH"
    assert MQTT_JS.exists(), "npm package mqtt missing: run `npm ci` at the repository root"
    return spawn(["node", str(CLIENT), gateway.ws_url, filter_, str(count), *publish],
                 name="mqtt.js")


@pytest.mark.parametrize("qos", ["0", "1", "2"])
def test_mqttjs_over_websocket_receives_from_mosquitto_pub_over_tcp(gateway, spawn, qos):
    client = run_mqttjs(spawn, gateway, "interop/ws/#", 1)
    client.wait_for_line(r"^subscribed$")
    subprocess.run(
        ["mosquitto_pub", "-h", gateway.mqtt_host, "-p", str(gateway.mqtt_port),
         "-t", "interop/ws/temp", "-m", '{"temp": 21.5}', "-q", qos],
        check=True, timeout=10,
    )
    line = client.wait_for_line(r"^\{")[0]
    assert json.loads(line) == {"topic": "interop/ws/temp", "payload": '{"temp": 21.5}',
                                "qos": int(qos)}
    assert client.process.wait(timeout=10) == 0, client.output()


def test_mosquitto_sub_over_tcp_receives_from_mqttjs_over_websocket(gateway, spawn):
    subscriber = spawn(
        ["stdbuf", "-oL", "mosquitto_sub", "-h", gateway.mqtt_host, "-p", str(gateway.mqtt_port),
         "-t", "interop/tcp/#", "-v", "-C", "1", "-W", "10", "-q", "1", "-d"],
        name="mosquitto_sub",
    )
    subscriber.wait_for_line(r"SUBACK")
    publisher = run_mqttjs(spawn, gateway, "interop/unused", 0, "interop/tcp/hello",
                           "from the browser side")
    publisher.wait_for_line(r"^published$")
    subscriber.wait_for_line(r"^interop/tcp/hello from the browser side$")
    assert subscriber.process.wait(timeout=10) == 0, subscriber.output()
