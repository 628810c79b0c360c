"""The gateway process as a whole, seen by clients: shutdown on SIGTERM (DESIGN.md: stop
accepting, DISCONNECT 0x8B to 5.0 clients, flush the store, exit 0 within 5 s), signals right
after start, and retained messages and sessions surviving a restart on the same data directory.
"""

from __future__ import annotations

import signal

import paho.mqtt.client as mqtt

from paho.mqtt.packettypes import PacketTypes

from conftest import PAHO_MAJOR, start_gateway, stop_gateway
from rawmqtt import DISCONNECT, connected, parse
from support import PahoClient, properties


def test_sigterm_right_after_the_listening_lines_is_a_clean_shutdown(tmp_path):
    """Whoever starts the gateway may send SIGTERM as soon as it reads the `listening` lines: the
    handlers must already be in place, or the signal kills the process (exit -15, no flush).
    Ten starts, because a missing handler shows only when the signal wins a race."""
    for attempt in range(10):
        running = start_gateway(tmp_path / f"data-{attempt}")
        running.process.send_signal(signal.SIGTERM)
        stop_gateway(running)  # asserts exit code 0


def test_sigterm_sends_v5_clients_disconnect_0x8b_and_exits_cleanly(gateway, make_client):
    """5.0 clients get DISCONNECT 0x8B Server shutting down; 3.1.1 clients just see the close."""
    with connected(gateway, 5, "raw-v5") as raw_v5, connected(gateway, 4, "raw-v311") as raw_v311:
        v5 = make_client("paho-v5", protocol=mqtt.MQTTv5, reconnect=False)
        v5.connect(gateway.address)
        v311 = make_client("paho-v311", protocol=mqtt.MQTTv311, reconnect=False)
        v311.connect(gateway.address)
        gateway.process.send_signal(signal.SIGTERM)

        received = parse(raw_v5.read_until_closed())
        assert [kind for kind, _ in received] == [DISCONNECT], received
        assert received[0][1][0] == 0x8B, received
        assert raw_v311.read_until_closed() == b""

        reason, _properties = v5.wait_disconnect()
        if PAHO_MAJOR >= 2:
            assert reason == 0x8B, hex(reason)
        else:
            # paho 1.6.1 reads a DISCONNECT's reason code only when the remaining length is
            # above 2 (client.py, _handle_disconnect), so a bare `e0 01 8b` (valid: properties
            # may be omitted, MQTT 5.0 3.14.2.2.1) reaches its on_disconnect as 7, "connection
            # lost". The raw client above shows what was sent.
            assert reason in (0x8B, mqtt.MQTT_ERR_CONN_LOST), reason
        assert v311.wait_disconnect()[0] != 0
    assert gateway.process.wait(timeout=5) == 0, gateway.log_text()
    gateway.wait_for_log(r"stopped")


def test_retained_messages_and_sessions_survive_a_restart(tmp_path):
    """SIGTERM flushes the store; a gateway started on the same data directory has the retained
    message and the persistent session (with the message queued for it) back."""
    data_dir = tmp_path / "data"
    clients: list[PahoClient] = []

    def client(*args, **kwargs) -> PahoClient:
        made = PahoClient(*args, **kwargs)
        clients.append(made)
        return made

    expiry = properties(PacketTypes.CONNECT, SessionExpiryInterval=3600)
    first = start_gateway(data_dir)
    try:
        sleeper = client("sleeper", protocol=mqtt.MQTTv5)
        sleeper.connect(first.address, clean_start=True, properties=expiry)
        sleeper.subscribe("restart/#", 1)
        sleeper.disconnect()
        publisher = client("restart-pub", protocol=mqtt.MQTTv311)
        publisher.connect(first.address)
        publisher.publish("restart/retained", "kept across restarts", qos=1, retain=True)
        publisher.publish("restart/queued", "waiting for the sleeper", qos=1)
        publisher.disconnect()
    finally:
        for made in clients:
            made.close()
        stop_gateway(first)

    second = start_gateway(data_dir)
    try:
        late = client("restart-late", protocol=mqtt.MQTTv311)
        late.connect(second.address)
        late.subscribe("restart/retained", 1)
        kept = late.wait_message("restart/retained")
        assert (kept.payload, kept.retain) == (b"kept across restarts", True)

        sleeper = client("sleeper", protocol=mqtt.MQTTv5)
        connack = sleeper.connect(second.address, clean_start=False, properties=expiry)
        assert connack.session_present is True
        got = sleeper.wait_messages(2)
        # Both were published while it slept, in this order (the retained one reaches an
        # existing subscription as a plain message).
        assert [(m.topic, m.payload, m.retain) for m in got] == [
            ("restart/retained", b"kept across restarts", False),
            ("restart/queued", b"waiting for the sleeper", False),
        ]
    finally:
        for made in clients:
            made.close()
        stop_gateway(second)
