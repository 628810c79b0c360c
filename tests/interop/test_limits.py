"""The limits a public broker needs, as paho clients see them (the README's "Limits and their
defaults"): each test starts a gateway with one flag set low and crosses it.

Runs on both paho generations; every wait is bounded.
"""

from __future__ import annotations

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes

from support import WAIT_S, properties, wait_until

MODERN = [
    pytest.param(mqtt.MQTTv311, id="v3.1.1"),
    pytest.param(mqtt.MQTTv5, id="v5"),
]


@pytest.mark.gateway_args("--max-subscriptions-per-client", "2")
@pytest.mark.parametrize("protocol", MODERN)
def test_a_subscription_beyond_the_maximum_is_refused_in_the_suback(gateway, make_client,
                                                                     protocol):
    """0x97 Quota exceeded (3.1.1: 0x80); replacing a filter the client holds still works."""
    client = make_client("many-filters", protocol=protocol)
    client.connect(gateway.address)
    assert client.subscribe("a", 1) == [1]
    assert client.subscribe("b", 1) == [1]
    assert client.subscribe("c", 1) == [0x97 if protocol == mqtt.MQTTv5 else 0x80]
    assert client.subscribe("a", 0) == [0]


@pytest.mark.gateway_args("--max-topic-levels", "3", "--max-topic-length", "64")
@pytest.mark.parametrize("protocol", MODERN)
def test_topics_beyond_the_limits_are_refused(gateway, make_client, protocol):
    """A filter: 0x8F Topic Filter invalid (3.1.1: 0x80). A QoS 0 PUBLISH: DISCONNECT 0x90 Topic
    Name invalid (3.1.1: the connection closed)."""
    v5 = protocol == mqtt.MQTTv5
    client = make_client("deep-topics", protocol=protocol, reconnect=False)
    client.connect(gateway.address)
    assert client.subscribe("a/b/#", 0) == [0]
    assert client.subscribe("a/b/c/d", 0) == [0x8F if v5 else 0x80]
    assert client.subscribe("x" * 65, 0) == [0x8F if v5 else 0x80]
    # Not through PahoClient.publish, which asserts success: the gateway may close the
    # connection before paho has finished with the message.
    client.client.publish("a/b/c/d", "too deep", 0)
    reason, _properties = client.wait_disconnect()
    if v5:
        assert reason == 0x90, hex(reason)
    else:
        assert reason != 0


@pytest.mark.gateway_args("--max-user-properties", "2")
def test_a_publish_beyond_the_user_property_limit_is_refused_with_0x97(gateway, make_client):
    client = make_client("properties", protocol=mqtt.MQTTv5, reconnect=False)
    client.connect(gateway.address)
    client.publish("t", "fine", qos=0,
                   properties=properties(PacketTypes.PUBLISH, UserProperty=[("a", "1"), ("b", "2")]))
    many = properties(PacketTypes.PUBLISH, UserProperty=[("a", "1"), ("b", "2"), ("c", "3")])
    client.client.publish("t", "too many", 0, properties=many)
    reason, _properties = client.wait_disconnect()
    assert reason == 0x97, hex(reason)


@pytest.mark.gateway_args("--max-keep-alive", "30")
def test_the_keep_alive_cap_is_told_to_5_0_clients_and_refuses_3_1_1_clients(gateway,
                                                                              make_client):
    """5.0: Server Keep Alive 30 in the CONNACK for a client asking 60; 3.1.1 asking 60: the
    connection closed without CONNACK [MQTT-3.2.2-6]; 3.1.1 asking 30: accepted."""
    modern = make_client("keep-alive-v5", protocol=mqtt.MQTTv5, reconnect=False)
    connack = modern.connect(gateway.address, keepalive=60)
    assert connack.properties.ServerKeepAlive == 30

    old = make_client("keep-alive-v311", protocol=mqtt.MQTTv311, reconnect=False)
    host, port = gateway.address
    old.client.connect(host, port, 60)
    old.client.loop_start()
    old.looping = True
    reason, _properties = old.wait_disconnect()
    assert reason != 0
    assert old.connacks == []
    gateway.wait_for_log(r"keep alive 60 s .* above the maximum of 30 s")

    fine = make_client("keep-alive-v311-fine", protocol=mqtt.MQTTv311)
    fine.connect(gateway.address, keepalive=30)


@pytest.mark.gateway_args("--max-client-id-len", "23")
@pytest.mark.parametrize("protocol", MODERN)
def test_a_client_id_one_beyond_the_maximum_is_refused(gateway, make_client, protocol):
    """23 bytes accepted; 24 refused with 0x85 Client Identifier not valid (3.1.1: 0x02)."""
    make_client("a" * 23, protocol=protocol).connect(gateway.address)
    refused = make_client("b" * 24, protocol=protocol, reconnect=False)
    connack = refused.connect(gateway.address, expect_code=None)
    if protocol == mqtt.MQTTv5:
        assert connack.reason_code == 0x85, connack
    else:
        # paho 2 reports the 3.1.1 return code 0x02 as its 5.0 equivalent, 0x85.
        assert connack.reason_code in (2, 0x85), connack
    wait_until(lambda: not refused.client.is_connected(), WAIT_S, lambda: "still connected")
