"""The article this project grew from, run against the gateway: its subscriber (`article/server.py`)
and its publisher (`article/client.py`), re-created from /work/shared/seeds/ (see their headers for
the few changes: host/port from the environment, paho 2 compatibility, and the publisher waiting
for its publish instead of racing paho's network thread to the interpreter's exit).

Both scripts name their client after the current second (`time.strftime('%Y%m%d%H%M%S')`), so
started in different seconds they talk, and started in the same second they collide on one client
identifier; both cases are here.
"""

from __future__ import annotations

import ast
import json
import os
import pathlib
import re
import sys
import time

import pytest

from support import WAIT_S, poll, wait_until

ARTICLE = pathlib.Path(__file__).resolve().parent / "article"
#: The article's message (ASCII "!" as in the article).
MESSAGE = "我是一条测试数据!"
#: What the subscriber prints once connected; the article's typo is part of it.
CONNECTED = r"^connected to mqtt with resurt code\s+0$"
#: The `data` field: the publisher's local time, `time.strftime('%Y-%m-%d %H-%M-%S')`.
DATA_FORMAT = "%Y-%m-%d %H-%M-%S"
#: How the server prints a readiness probe.
PROBE = r"^\{'msg': 'probe'"

#: Installed with PYTHONPATH in the same-second test: pins `time.localtime()` to the second given
#: in ARTICLE_FROZEN_EPOCH, as if both scripts had started within that second. Only `localtime`
#: is pinned (paho's timers use `time.time`/`time.monotonic`), and the scripts are unchanged.
FROZEN_CLOCK = '''
import os, time
_frozen = os.environ.get("ARTICLE_FROZEN_EPOCH")
if _frozen:
    _localtime = time.localtime
    time.localtime = lambda secs=None: _localtime(float(_frozen))
'''


def script_env(gateway, **extra: str) -> dict[str, str]:
    env = dict(
        os.environ,
        MQTT_HOST=gateway.mqtt_host,
        MQTT_PORT=str(gateway.mqtt_port),
        # The scripts print to a pipe: without these, Python would buffer their output until exit
        # and could pick an ASCII encoding for the Chinese text under a C locale.
        PYTHONUNBUFFERED="1",
        PYTHONIOENCODING="utf-8",
    )
    env.update(extra)
    return env


def start_server(spawn, env):
    return spawn([sys.executable, str(ARTICLE / "server.py")], env=env, name="article server")


def wait_until_subscribed(server, make_client, gateway) -> None:
    """The server prints when connected, not when subscribed: publish a JSON probe on `test`
    (the server prints every message it gets) until one comes out."""
    server.wait_for_line(CONNECTED)
    prober = make_client("interop-prober")
    prober.connect(gateway.address)
    deadline = time.monotonic() + WAIT_S
    attempt = 0
    while not server.matching(PROBE):
        assert time.monotonic() < deadline, f"no probe printed; server output:\n{server.output()}"
        attempt += 1
        prober.publish("test", json.dumps({"msg": "probe", "data": str(attempt)}), qos=1)
        poll(lambda: server.matching(PROBE), 0.5, server.cond)
    prober.disconnect()


def printed_messages(server) -> list[dict]:
    """The article's messages the server printed (`print(payload)` of the decoded JSON dict)."""
    return [ast.literal_eval(line) for line in server.matching(r"^\{'msg': '(?!probe')")]


def test_article_publisher_reaches_article_subscriber(gateway, spawn, make_client):
    """The article's scenario as its author ran it: start the server, then the client (in a later
    second, so with another client id); the server prints the client's JSON, Chinese intact."""
    observer = make_client("interop-observer")
    observer.connect(gateway.address)
    observer.subscribe("test")

    server = start_server(spawn, script_env(gateway))
    wait_until_subscribed(server, make_client, gateway)

    # The server's id is the second it started in, at or before now: start the client in a later
    # second so that the two ids differ, as they do when a person starts one after the other.
    ready = time.time()
    wait_until(lambda: int(time.time()) > int(ready), 2.0, lambda: "the clock did not move")
    before = time.time()
    client = spawn([sys.executable, str(ARTICLE / "client.py")], env=script_env(gateway),
                   name="article client")
    assert client.wait(timeout=15) == 0, client.output()
    after = time.time()
    assert client.matching(r"^Successful send message!$"), client.output()

    server.wait_for_line(r"^\{'msg': '" + re.escape(MESSAGE))
    [printed] = printed_messages(server)
    assert set(printed) == {"msg", "data"}
    assert printed["msg"] == MESSAGE
    sent_at = time.mktime(time.strptime(printed["data"], DATA_FORMAT))
    assert int(before) - 1 <= sent_at <= after + 1, printed

    # On the wire: the JSON text exactly as `json.dumps(..., ensure_ascii=False)` makes it, UTF-8,
    # with the Chinese characters themselves rather than \\u escapes.
    wait_until(lambda: [m for m in observer.messages if MESSAGE.encode() in m.payload], WAIT_S,
               lambda: f"observer: {observer.messages}")
    raw = [m.payload for m in observer.messages if MESSAGE.encode() in m.payload]
    assert raw == [json.dumps(printed, ensure_ascii=False).encode("utf-8")]
    assert "\\u" not in raw[0].decode("utf-8")

    # Two client ids, no takeover.
    assert not gateway.log_lines("session taken over"), gateway.log_text()


def test_article_scripts_started_in_the_same_second_collide(gateway, spawn, make_client, tmp_path):
    """Started within one second, the two scripts use the SAME client id, and the client's
    CONNECT takes the session over [MQTT-3.1.4-3]: the gateway closes the server's (older)
    connection, logging one line that names the id, and with CleanSession=1 the server's session
    and its subscription to `test` are discarded [MQTT-3.1.2-6].

    What a user sees:
    - the server prints `connected to mqtt with resurt code  0`, then, when the client starts,
      nothing about the takeover (3.1.1 has no DISCONNECT from the server; the article sets no
      `on_disconnect`): paho's `loop_forever` reconnects about 1 s later and the server prints
      the `connected ...` line a second time (it subscribes again in `on_connect`);
    - the client prints `Successful send message!` and exits 0, yet its message is lost: it was
      routed while the server was away and no session held the subscription. The server never
      prints `Start server!` for it. The article warns about exactly this in the client's
      docstring ("如果与服务器id相同,则无法接收到消息": with the server's id, no message arrives);
    - the gateway logs one info line: `client "<id>" connected again from <client's address>
      (<connection>); closing its older connection from <server's address> (session taken over)`.
    Had the client stayed connected, the server's reconnection would in turn take the client's
    session over, and the two would knock each other off about once a second.

    "Started in the same second" is made certain, not left to chance, by pinning the scripts'
    `time.localtime()` to one second (FROZEN_CLOCK); the scripts themselves are unchanged.
    """
    hook = tmp_path / "frozen-clock"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(FROZEN_CLOCK)
    frozen = int(time.time())
    client_id = time.strftime("%Y%m%d%H%M%S", time.localtime(frozen))
    env = script_env(gateway, ARTICLE_FROZEN_EPOCH=str(frozen),
                     PYTHONPATH=os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")])))
    observer = make_client("interop-observer")
    observer.connect(gateway.address)
    observer.subscribe("test")

    server = start_server(spawn, env)
    wait_until_subscribed(server, make_client, gateway)
    assert len(server.matching(CONNECTED)) == 1
    assert not gateway.log_lines(re.escape(client_id)), gateway.log_text()

    client = spawn([sys.executable, str(ARTICLE / "client.py")], env=env, name="article client")
    takeover = gateway.wait_for_log(
        rf'client "{client_id}" connected again from \S+ \(.*\); '
        rf"closing its older connection from \S+ \(session taken over\)"
    )
    assert client.wait(timeout=15) == 0, client.output()
    assert client.matching(r"^Successful send message!$"), client.output()
    # The message did go out: a bystander subscribed to `test` gets it ...
    wait_until(lambda: [m for m in observer.messages if MESSAGE.encode() in m.payload], WAIT_S,
               lambda: f"observer: {observer.messages}")

    # ... while the server, knocked off, comes back (paho's reconnect, ~1 s later) ...
    server.wait_for_line(CONNECTED, count=2, timeout=WAIT_S)
    # ... without the message: it was routed between the takeover and the server's return.
    assert printed_messages(server) == [], server.output()
    assert len(server.matching(r"^Start server!$")) == len(server.matching(PROBE))

    # Exactly one gateway line names the client id: the takeover. The server's reconnection found
    # the client gone (it exited right after its publish), so it took nothing over.
    assert gateway.log_lines(re.escape(client_id)) == [takeover], gateway.log_text()
