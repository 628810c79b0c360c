"""The store's promise (DESIGN.md, "The store"): once the gateway sent the PUBACK (QoS 1) or
PUBREC (QoS 2) of a message that reached a persistent session or the retained set, or the SUBACK
of a persistent session's subscription, a kill -9 right after loses none of them. With the
default `--durability full`, which these tests use without naming it.

Each kill test kills a real gateway with SIGKILL in the middle of a stream of acknowledgements
(from another thread, once a third of them arrived), restarts it on the same data directory and
checks that everything acknowledged is there. The loops (QoS 1, QoS 2, retained) repeat
`DURABILITY_ROUNDS` times (default 1; `cargo xtask kill9` runs more), each round on the store
the previous rounds left, alternating MQTT 5.0 and 3.1.1, and print one line per round:
`durability test=... round=... acked=... received=... lost=... duplicates=...`.

The loops keep a second subscriber connected through the kill, and the publisher resumes its
session afterwards as a client does (PUBREL, resends with DUP=1, packet ids reused once free),
so in-flight QoS 2 state on both sides is checked too; two tests kill right after a PUBCOMP
(publisher side, subscriber side) to check that each step of the QoS 2 handshake is stored
before the packet that ends it goes out.

Also: expiry of sessions and messages counts the time the gateway was down; wills survive a
crash (a connected client's, and one waiting for its delay); a corrupt store is refused; a store
written by the previous release (format 1) is migrated; a full disk refuses what it cannot store,
visibly, and recovers.

The publishing side is a raw connection (durability.Flows): paho reports neither a PUBREC nor a
reason code, and resends by itself. The receiving side is paho, whichever generation runs.
"""

from __future__ import annotations

import calendar
import collections
import contextlib
import errno
import os
import pathlib
import random
import re
import shutil
import signal
import socket
import subprocess
import time
from typing import Callable

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes

from conftest import REPO_ROOT, start_gateway, stop_gateway
from durability import (
    QUOTA_EXCEEDED, ROUNDS, Flows, KillWhen, Receiver, StoreLoad, connect_packet, kill9, metric,
    reap, recovered_line,
    report_round, run_to_exit, wait_disconnected,
)
from rawmqtt import CONNACK, PUBACK, RawClient, publish as raw_publish, split_one
from support import PahoClient, properties, require, wait_until

#: Messages per kill round (and retained messages per round: TOPICS x VERSIONS).
N = 3000
#: The kill goes out once this many were acknowledged (in the first round; see `round_plan`).
KILL_AT = N // 3
#: Session expiry of the persistent sessions, seconds.
LONG = 3600
#: The counter of failed store writes on /metrics. The brief named it
#: `gateway_store_write_errors_total`; the gateway and its README call it this, like its other
#: metrics (`mqtt_*`).
STORE_WRITE_ERRORS = "mqtt_store_write_errors_total"
#: How long a restarted gateway may take to hand a few thousand queued messages to paho.
COLLECT_S = 60.0


def round_plan(test: str, index: int, window: int) -> tuple[int, int]:
    """(window, kill threshold) of a round. The first round of each test: the gateway's whole
    Receive Maximum and KILL_AT. Later ones vary both (seeded by test and round, so a failing
    round can be run again): with the whole window the gateway commits about a window per
    batch and the kill lands on the same batch boundary every time; smaller windows and other
    thresholds put it at other points of a commit (before it, during, between it and the acks)."""
    if index == 0:
        return window, KILL_AT
    rng = random.Random(f"{test}/{index}")
    return min(window, rng.choice([1024, 256, 64, 16, 4])), rng.randrange(N // 6, N // 2)


def paho_protocol(level: int) -> int:
    return mqtt.MQTTv5 if level == 5 else mqtt.MQTTv311


def level_name(level: int) -> str:
    return "v5" if level == 5 else "v3.1.1"


def level_of_round(index: int, offset: int) -> int:
    """Rounds alternate 5.0 and 3.1.1; `offset` picks which one a test starts with, so that
    a default run (one round per test) covers both."""
    return (5, 4)[(index + offset) % 2]


def session_client(client_id: str, level: int) -> PahoClient:
    """A paho client for a persistent session (3.1.1: CleanSession=0; 5.0: see `connect`)."""
    return PahoClient(client_id, protocol=paho_protocol(level), clean_session=False,
                      name=client_id, reconnect=False)


def connect_session(client: PahoClient, address, level: int, *, resume: bool,
                    expiry: int = LONG):
    """Connects a persistent session: 5.0 with Clean Start = not `resume` and a session expiry
    of `expiry` s; 3.1.1 with CleanSession=0 (its client ids here are fresh, so a first
    connection starts empty)."""
    if level == 5:
        return client.connect(address, clean_start=not resume,
                              properties=properties(PacketTypes.CONNECT,
                                                    SessionExpiryInterval=expiry))
    return client.connect(address)


def wait_for_payload(client: PahoClient, topic: str, payload: bytes, timeout: float):
    """Waits until `client` received `payload` on `topic` (scanning only what is new each
    time, so a few thousand messages stay cheap)."""
    seen = [0]

    def arrived():
        messages = client.messages
        for message in messages[seen[0]:]:
            if message.topic == topic and message.payload == payload:
                return True
        seen[0] = len(messages)
        return False

    wait_until(arrived, timeout, lambda: f"{client.name}: no {payload!r} on {topic} "
               f"({len(client.messages)} messages so far)", client.cond)


def close_all(*clients) -> None:
    for client in clients:
        if client is not None:
            client.close()


def persistent_flows(address, level: int, client_id: str) -> Flows:
    """A raw connection for a persistent session (5.0: expiry LONG)."""
    return Flows(address, level, client_id, clean=level == 5, expiry=LONG if level == 5 else None)


def publish_then_kill(gateway, flows: Flows, threshold: int, send,
                      count: Callable[[], int] | None = None) -> KillWhen:
    """Runs `send()` (which drives `flows`) while another thread kills the gateway with SIGKILL
    once `count()` (by default: `flows`'s acknowledgements) reaches `threshold`; reaps the
    gateway. Returns the killer."""
    killer = KillWhen(gateway, flows.cond, count or (lambda: len(flows.acked)), threshold)
    killer.start()
    try:
        send()
    finally:
        killer.cancel()
        killer.join(timeout=5)
    assert killer.killed_at is not None, (
        f"the kill never went out: {len(flows.acked)} acknowledged of {len(flows.sent)} sent, "
        f"connection lost: {flows.lost}\n" + gateway.log_text())
    kill9(gateway)
    return killer


# ----- 1 and 2: kill -9 while QoS 1 / QoS 2 messages for a persistent session are acknowledged --


def kill_round(gateway, data_dir: pathlib.Path, qos: int, level: int, index: int):
    """One round: a persistent subscriber goes offline (paho), another stays connected (raw,
    `durability.Receiver`); a publisher sends N numbered messages at `qos`; SIGKILL after
    KILL_AT acknowledgements; restart; the publisher resumes its session as a client would
    (PUBREL for what got PUBREC, the rest again with DUP=1, then what it never sent, then
    `end`); both subscribers resume theirs and collect. Returns the restarted gateway.

    Each must get every acknowledged message, and in the end all N; at QoS 2, each exactly
    once. The connected one also checks the gateway's side of deliveries in flight at the
    kill: what it had completed (PUBCOMP) must not come again as a new PUBLISH. Returns the
    restarted gateway and what was wrong with the counts.

    What it never sent goes out with packet ids freed before the kill (their flows completed:
    PUBACK, or PUBCOMP) first, as a client reuses ids: a gateway that restored a finished QoS 2
    id as still awaiting PUBREL would take such a new message for a duplicate and drop it."""
    topic = f"kill9/q{qos}/r{index}"
    sub_id, pub_id = f"k9-sub-q{qos}-r{index}", f"k9-pub-q{qos}-r{index}"
    subscriber = session_client(sub_id, level)
    try:
        connect_session(subscriber, gateway.address, level, resume=False)
        assert subscriber.subscribe(topic, qos) == [qos]
        subscriber.disconnect()
    finally:
        subscriber.close()

    live = Receiver(level, f"k9-live-q{qos}-r{index}", topic, qos)
    live.connect(gateway.address, resume=False)
    publisher = persistent_flows(gateway.address, level, pub_id)
    assert publisher.connect()[1] == 0
    window, threshold = round_plan(f"qos{qos}", index, publisher.window)
    publisher.window = window
    messages = [(number, topic, b"%d" % number) for number in range(1, N + 1)]
    started = time.monotonic()
    killer = publish_then_kill(gateway, publisher, threshold,
                               lambda: publisher.publish_all(messages, qos))
    publish_s = time.monotonic() - started
    publisher.close()
    live.close()
    live_before = len(live.payloads)
    assert not publisher.refused, f"refused: {dict(list(publisher.refused.items())[:10])}"
    acked = set(publisher.acked)
    sent = set(publisher.sent)
    pubrec_only = acked - publisher.completed  # QoS 2: PUBREC came, PUBCOMP did not

    gateway = start_gateway(data_dir)
    with reaped_on_error(gateway):
        recovered = recovered_line(gateway)
        # At least the acknowledged messages are back, queued for the subscriber.
        assert recovered["queued"] + recovered["inflight"] >= len(acked), (recovered, len(acked))

        subscriber = session_client(sub_id, level)
        try:
            connack = connect_session(subscriber, gateway.address, level, resume=True)
            assert connack.session_present, f"{sub_id}'s session did not survive the kill"
            assert live.connect(gateway.address, resume=True), \
                f"{live.client_id}'s session did not survive the kill"

            # The publisher resumes its session: unacknowledged ones again with DUP=1 and their
            # packet ids (the gateway may have stored some of them before the kill).
            publisher.address, publisher.clean = gateway.address, False
            present, code, _props = publisher.connect()
            assert (present, code) == (True, 0), f"{pub_id}'s session did not survive the kill"
            publisher.window = min(publisher.window, window)  # the round's window again
            resent = [message for message in messages if message[0] in sent - acked]
            free_ids = iter(sorted(publisher.completed - publisher.refused.keys()))
            fresh = [(next(free_ids, number), topic, payload)
                     for number, topic, payload in messages if number not in sent]
            reused = {int(payload): packet_id for packet_id, _topic, payload in fresh
                      if packet_id != int(payload)}
            publisher.publish_all(resent + fresh + [(N + 1, topic, b"end")], qos,
                                  dup=frozenset(sent - acked), release=sorted(pubrec_only))
            assert not publisher.lost, (
                f"the restarted gateway closed the resuming publisher's connection (DISCONNECT "
                f"{publisher.disconnected!r}) after {len(publisher.completed)} completed flows; "
                f"it resent {len(sent - acked)} with DUP=1, released {len(pubrec_only)} and sent "
                f"{len(fresh)} more, {len(reused)} of them with ids freed before the kill\n"
                + tail(gateway))
            assert not publisher.refused, f"refused after the restart: {publisher.refused}"
            publisher.disconnect()

            wait_for_payload(subscriber, topic, b"end", COLLECT_S)
            live.wait_for(b"end", COLLECT_S)
            with subscriber.cond:
                numbers = [int(m.payload) for m in subscriber.messages
                           if m.topic == topic and m.payload != b"end"]
            with live.cond:
                live_numbers = [int(payload) for payload in live.payloads if payload != b"end"]
            subscriber.disconnect()
        finally:
            subscriber.close()
            publisher.close()
            live.close()

        counts = collections.Counter(numbers)
        lost = sorted(acked - counts.keys())
        missing = sorted(set(range(1, N + 1)) - counts.keys())
        duplicates = sum(count - 1 for count in counts.values())
        live_counts = collections.Counter(live_numbers)
        live_lost = sorted(acked - live_counts.keys())
        live_missing = sorted(set(range(1, N + 1)) - live_counts.keys())
        live_duplicates = sum(count - 1 for count in live_counts.values())
        report_round({
            "test": f"qos{qos}", "round": index + 1, "rounds": ROUNDS,
            "protocol": level_name(level),
            "window": window,
            "threshold": threshold, "sent": len(sent), "acked": len(acked),
            "killed_at": killer.killed_at, "received": len(numbers), "lost": len(lost),
            "duplicates": duplicates,
            "missing_after_resume": len(missing), "reused_ids": len(reused),
            "live_before_kill": live_before, "live_received": len(live_numbers),
            "live_lost": len(live_lost), "live_duplicates": live_duplicates,
            "live_missing_after_resume": len(live_missing), "publish_s": round(publish_s, 2),
            "recovered_queued": recovered["queued"], "recovered_ms": recovered["ms"],
        })
        problems = []
        if lost:
            problems.append(f"{len(lost)} acknowledged messages lost at the kill, e.g. {lost[:20]}")
        missing_reused = [(number, reused[number]) for number in missing if number in reused]
        if missing_reused:
            problems.append(
                f"{len(missing_reused)} messages sent after the restart with packet ids whose "
                f"flows had completed before the kill were acknowledged but never delivered (the "
                f"gateway took them for duplicates), e.g. (message, id) {missing_reused[:10]}")
        elif missing:
            problems.append(f"{len(missing)} messages never arrived although the publisher resent "
                            f"them after the restart, e.g. {missing[:20]}")
        if live_lost:
            problems.append(f"the connected subscriber lost {len(live_lost)} acknowledged "
                            f"messages, e.g. {live_lost[:20]}")
        elif live_missing:
            problems.append(f"the connected subscriber never got {len(live_missing)} messages, "
                            f"e.g. {live_missing[:20]}")
        if qos == 2 and duplicates:
            doubled = sorted(number for number, count in counts.items() if count > 1)
            problems.append(f"QoS 2 delivered {duplicates} duplicates, e.g. {doubled[:20]}")
        if qos == 2 and live_duplicates:
            doubled = sorted(number for number, count in live_counts.items() if count > 1)
            problems.append(
                f"QoS 2 delivered {live_duplicates} duplicates to the subscriber connected at the "
                f"kill (sent again as new PUBLISHes after it had completed them), "
                f"e.g. {doubled[:20]}")
    return gateway, [f"round {index + 1} ({level_name(level)}): {problem}" for problem in problems]


def kill_loop(tmp_path: pathlib.Path, qos: int, offset: int) -> None:
    """ROUNDS rounds on one data directory. A round whose counts are wrong is reported and the
    next round runs (so that `cargo xtask kill9` shows how often); a round that cannot finish
    (a timeout, a refused connection) ends the test at once."""
    data_dir = tmp_path / "data"
    gateway = start_gateway(data_dir)
    problems: list[str] = []
    try:
        for index in range(ROUNDS):
            with earlier_problems(problems):
                gateway, found = kill_round(gateway, data_dir, qos,
                                            level_of_round(index, offset), index)
            problems += found
        stop_gateway(gateway)
        gateway = None
    finally:
        reap(gateway)
    assert not problems, "\n".join(problems)


@contextlib.contextmanager
def reaped_on_error(gateway):
    """A gateway a round restarted is the caller's once the round returns it; if the round
    fails before, it is stopped here (the caller still holds the one it killed)."""
    try:
        yield
    except BaseException:
        reap(gateway)
        raise


@contextlib.contextmanager
def earlier_problems(problems: list[str]):
    """A round that fails outright also reports what the rounds before it found."""
    try:
        yield
    except (AssertionError, pytest.fail.Exception) as error:
        if not problems:
            raise
        pytest.fail(f"{error}\n--- and in earlier rounds ---\n" + "\n".join(problems),
                    pytrace=False)


def test_kill9_loses_no_acknowledged_qos1_message(tmp_path):
    """QoS 1: every PUBACKed message reaches the persistent subscriber after a kill -9 (zero
    lost; duplicates are allowed and counted)."""
    kill_loop(tmp_path, 1, 0)


def test_kill9_loses_and_duplicates_no_qos2_message(tmp_path):
    """QoS 2: every PUBRECed message reaches the subscriber after a kill -9, and no message
    arrives twice, also after the publisher resends its unacknowledged ones with DUP=1
    (the gateway kept the packet ids awaiting PUBREL)."""
    kill_loop(tmp_path, 2, 1)


# ----- 2b: each step of a QoS 2 handshake is durable before the next packet goes out ----------

HANDSHAKES = 20
LEVELS = [pytest.param(4, id="v3.1.1"), pytest.param(5, id="v5")]


@pytest.mark.parametrize("level", LEVELS)
def test_kill9_right_after_pubcomp_a_reused_packet_id_carries_a_new_message(tmp_path, level):
    """A publisher completes HANDSHAKES QoS 2 flows (PUBLISH, PUBREC, PUBREL, PUBCOMP); the
    gateway is killed the moment the last PUBCOMP is read. After the restart the publisher
    resumes its session and sends new messages with the same packet ids, which are free again
    [MQTT-2.2.1-3 (5.0: 2.2.1-3)]. Each must be delivered: had the gateway sent a PUBCOMP before
    the release of its packet id was stored, it would restore the id as awaiting PUBREL and
    answer the new message with PUBREC as a duplicate, and drop it (an acknowledged message
    lost), or close the publisher for exceeding its receive maximum."""
    data_dir = tmp_path / "data"
    gateway = start_gateway(data_dir)
    topic = f"handshake/pub/v{level}"
    subscriber = None
    try:
        subscriber = session_client(f"hs-pub-sub-v{level}", level)
        connect_session(subscriber, gateway.address, level, resume=False)
        assert subscriber.subscribe(topic, 2) == [2]
        subscriber.disconnect()
        subscriber.close()

        publisher = persistent_flows(gateway.address, level, f"hs-pub-v{level}")
        assert publisher.connect()[1] == 0
        first = [(packet_id, topic, b"first-%d" % packet_id)
                 for packet_id in range(1, HANDSHAKES + 1)]
        # The kill goes out on the publishing thread as soon as the last PUBCOMP is read (a
        # second thread would wait for Python's thread switch, time enough for a commit).
        publisher.after_acks = lambda: (len(publisher.completed) == HANDSHAKES
                                        and gateway.process.send_signal(signal.SIGKILL))
        load = StoreLoad(gateway.address)
        load.start_and_wait(gateway)
        try:
            publisher.publish_all(first, 2)
        finally:
            load.stop()
        publisher.after_acks = None
        kill9(gateway)
        publisher.close()
        assert len(publisher.completed) == HANDSHAKES and not publisher.refused

        gateway = start_gateway(data_dir)
        publisher.address, publisher.clean = gateway.address, False
        present, code, _props = publisher.connect()
        assert (present, code) == (True, 0), "the publisher's session did not survive the kill"
        second = [(packet_id, topic, b"second-%d" % packet_id)
                  for packet_id in range(1, HANDSHAKES + 1)]
        publisher.publish_all(second + [(HANDSHAKES + 1, topic, b"end")], 2)
        assert not publisher.lost, (f"the gateway closed the publisher (DISCONNECT "
                                    f"{publisher.disconnected!r})\n" + tail(gateway))
        assert len(publisher.acked) == HANDSHAKES + 1, publisher.acked

        subscriber = session_client(f"hs-pub-sub-v{level}", level)
        assert connect_session(subscriber, gateway.address, level, resume=True).session_present
        wait_for_payload(subscriber, topic, b"end", COLLECT_S)
        got = collections.Counter(m.payload for m in subscriber.messages)
        expected = [payload for _id, _topic, payload in first + second] + [b"end"]
        missing = [payload for payload in expected if payload not in got]
        assert not missing, (f"{len(missing)} messages acknowledged with PUBREC after the restart "
                             f"were never delivered: {missing}")
        assert all(count == 1 for count in got.values()), got
        subscriber.disconnect()
        subscriber.close()
        subscriber = None
        stop_gateway(gateway)
        gateway = None
    finally:
        close_all(subscriber)
        reap(gateway)


@pytest.mark.parametrize("level", LEVELS)
def test_kill9_right_after_pubrel_a_completed_delivery_is_not_sent_again(tmp_path, level):
    """A connected subscriber receives HANDSHAKES QoS 2 messages, and answers their PUBLISHes
    only once the publisher has its PUBRECs (the messages are stored); then PUBREC, PUBREL,
    PUBCOMP, while `StoreLoad` keeps the store's commits long, and the gateway is killed the
    moment the subscriber has answered the last PUBREL. After the restart it resumes its
    session: nothing it completed may come again as a PUBLISH (once the gateway sent PUBREL
    it must not send the PUBLISH again [MQTT-4.3.3-4 (3.1.1: 4.3.3-1)]); the subscriber has
    forgotten those ids, so that would be a duplicate."""
    data_dir = tmp_path / "data"
    gateway = start_gateway(data_dir)
    topic = f"handshake/sub/v{level}"
    receiver = Receiver(level, f"hs-sub-v{level}", topic, 2)
    try:
        receiver.connect(gateway.address, resume=False)
        receiver.hold_pubrec = True
        publisher = Flows(gateway.address, level, f"hs-sub-pub-v{level}")
        assert publisher.connect()[1] == 0
        messages = [(packet_id, topic, b"m-%d" % packet_id)
                    for packet_id in range(1, HANDSHAKES + 1)]
        publisher.publish_all(messages, 2)
        assert len(publisher.completed) == HANDSHAKES, publisher.completed
        publisher.close()
        wait_until(lambda: len(receiver.held_pubrecs) == HANDSHAKES, 10,
                   lambda: f"the subscriber got {len(receiver.payloads)} messages",
                   receiver.cond)
        # The kill goes out on the receiving thread right after the last PUBCOMP.
        receiver.after_pubcomp = lambda completed: (completed == HANDSHAKES and
                                                    gateway.process.send_signal(signal.SIGKILL))
        load = StoreLoad(gateway.address)
        load.start_and_wait(gateway)
        try:
            receiver.release_pubrecs()
            wait_until(lambda: gateway.process.poll() is not None, 10,
                       lambda: f"no kill: {receiver.completed} deliveries completed",
                       receiver.cond)
        finally:
            load.stop()
        receiver.after_pubcomp = None
        kill9(gateway)
        receiver.close()

        gateway = start_gateway(data_dir)
        recovered = recovered_line(gateway)
        print(f"durability test=handshake-sub recovered={recovered} load_sent={load.sent}")
        assert receiver.connect(gateway.address, resume=True), \
            "the subscriber's session did not survive the kill"
        marker = Flows(gateway.address, level, f"hs-sub-marker-v{level}")
        assert marker.connect()[1] == 0
        marker.publish_all([(1, topic, b"end")], 2)
        receiver.wait_for(b"end", COLLECT_S)
        marker.disconnect()
        again = sorted((payload for payload, count in receiver.counts.items() if count > 1),
                       key=lambda payload: int(payload.split(b"-")[1]) if b"-" in payload else 0)
        assert not again, (f"{len(again)} completed QoS 2 deliveries were sent again as new "
                           f"PUBLISHes after the restart: {again}")
        assert sorted(receiver.counts) == sorted([payload for _i, _t, payload in messages]
                                                 + [b"end"]), receiver.counts
        receiver.close()
        stop_gateway(gateway)
        gateway = None
    finally:
        receiver.close()
        reap(gateway)


# ----- 3: retained messages ---------------------------------------------------------------------

TOPICS, VERSIONS = 300, 10


def retained_round(gateway, data_dir: pathlib.Path, level: int, index: int):
    """N retained QoS 1 messages: VERSIONS rounds over TOPICS topics; SIGKILL after KILL_AT
    PUBACKs; after the restart each topic with an acknowledged version holds that version or a
    later one that was sent (a later one may have been stored without its PUBACK getting out)."""
    prefix = f"kill9/retained/r{index}"
    publisher = Flows(gateway.address, level, f"k9-ret-pub-r{index}")
    assert publisher.connect()[1] == 0
    publisher.window, threshold = round_plan("retained", index, publisher.window)
    messages = []
    for version in range(VERSIONS):
        for topic in range(TOPICS):
            number = version * TOPICS + topic + 1
            messages.append((number, f"{prefix}/{topic}", b"%d" % version))
    killer = publish_then_kill(
        gateway, publisher, threshold, lambda: publisher.publish_all(messages, 1, retain=True))
    publisher.close()
    assert not publisher.refused, publisher.refused
    last_acked: dict[str, int] = {}
    last_sent: dict[str, int] = {}
    for number, topic, payload in messages:
        if number in publisher.sent:
            last_sent[topic] = int(payload)
        if number in publisher.acked:
            last_acked[topic] = max(last_acked.get(topic, -1), int(payload))

    gateway = start_gateway(data_dir)
    with reaped_on_error(gateway):
        recovered = recovered_line(gateway)
        reader = PahoClient(f"k9-ret-reader-r{index}", protocol=paho_protocol(level),
                            reconnect=False)
        marker = PahoClient(f"k9-ret-marker-r{index}", protocol=mqtt.MQTTv311, reconnect=False)
        try:
            reader.connect(gateway.address)
            assert reader.subscribe(f"{prefix}/#", 1) == [1]
            marker.connect(gateway.address)
            marker.publish(f"{prefix}/end", "end", qos=1)
            wait_for_payload(reader, f"{prefix}/end", b"end", COLLECT_S)
            with reader.cond:
                got = [(m.topic, int(m.payload)) for m in reader.messages if m.retain]
        finally:
            close_all(reader, marker)

        have = dict(got)
        assert len(have) == len(got), "a topic's retained message came twice"
        lost = sorted(topic for topic, version in last_acked.items()
                      if have.get(topic, -1) < version)
        unknown = sorted(topic for topic, version in have.items()
                         if version > last_sent.get(topic, -1))
        newer = sum(1 for topic, version in last_acked.items() if have.get(topic, -1) > version)
        report_round({
            "test": "retained", "round": index + 1, "rounds": ROUNDS, "protocol": level_name(level),
            "window": publisher.window, "threshold": threshold,
            "sent": len(publisher.sent), "acked": len(publisher.acked),
            "killed_at": killer.killed_at, "acked_topics": len(last_acked), "received": len(got),
            "lost": len(lost), "newer_than_acked": newer, "duplicates": 0,
            "recovered_retained": recovered["retained"],
        })
        problems = []
        if lost:
            problems.append(f"{len(lost)} topics lost their last acknowledged retained message: "
                            + ", ".join(f"{t}: acked {last_acked[t]}, got {have.get(t)}"
                                        for t in lost[:10]))
        if unknown:
            problems.append(f"retained versions that were never sent: {unknown[:10]}")
    return gateway, [f"round {index + 1} ({level_name(level)}): {problem}" for problem in problems]


def test_kill9_loses_no_acknowledged_retained_message(tmp_path):
    """Every topic keeps its last acknowledged retained message through a kill -9 (see
    `retained_round`; rounds as in `kill_loop`)."""
    data_dir = tmp_path / "data"
    gateway = start_gateway(data_dir)
    problems: list[str] = []
    try:
        for index in range(ROUNDS):
            with earlier_problems(problems):
                gateway, found = retained_round(gateway, data_dir, level_of_round(index, 0), index)
            problems += found
        stop_gateway(gateway)
        gateway = None
    finally:
        reap(gateway)
    assert not problems, "\n".join(problems)


# ----- 4: subscriptions -------------------------------------------------------------------------

K = 300


def test_kill9_loses_no_acknowledged_subscription(tmp_path):
    """A persistent session subscribes to K filters (exact, `+` and `#`), one SUBSCRIBE each,
    16 unanswered at a time; SIGKILL after K/3 SUBACKs. After the restart the session is
    present and each SUBACKed filter still delivers."""
    data_dir = tmp_path / "data"
    gateway = start_gateway(data_dir)
    clients: list[PahoClient] = []
    try:
        filters, topics = [], {}
        for i in range(1, K + 1):
            base = f"subs/{i}"
            topic_filter, topic = [(base, base), (f"{base}/+", f"{base}/x"),
                                   (f"{base}/#", f"{base}/y/z")][i % 3]
            filters.append((i, topic_filter))
            topics[i] = topic
        session = Flows(gateway.address, 5, "k9-subs", clean=True, expiry=LONG)
        assert session.connect()[1] == 0
        publish_then_kill(gateway, session, K // 3, lambda: session.subscribe_all(filters, 1, 16))
        session.close()
        assert not session.refused, session.refused
        acked = sorted(session.acked)
        assert all(code == 1 for code in session.acked.values()), session.acked

        gateway = start_gateway(data_dir)
        subscriber = session_client("k9-subs", 5)
        clients.append(subscriber)
        assert connect_session(subscriber, gateway.address, 5, resume=True).session_present, \
            "the subscribing session did not survive the kill"
        assert subscriber.subscribe("subs-end", 1) == [1]
        publisher = PahoClient("k9-subs-pub", protocol=mqtt.MQTTv311, reconnect=False)
        clients.append(publisher)
        publisher.connect(gateway.address)
        for i in range(1, K + 1):
            publisher.publish(topics[i], b"%d" % i, qos=1, wait=False)
        publisher.publish("subs-end", "end", qos=1)
        wait_for_payload(subscriber, "subs-end", b"end", COLLECT_S)
        received = set(subscriber.topics())
        lost = [(i, dict(filters)[i]) for i in acked if topics[i] not in received]
        print(f"durability test=subscriptions sent={len(session.sent)} acked={len(acked)} "
              f"delivering={sum(1 for i in range(1, K + 1) if topics[i] in received)} "
              f"lost={len(lost)}")
        assert not lost, f"{len(lost)} acknowledged subscriptions lost, e.g. {lost[:10]}"
        close_all(*clients)
        clients.clear()
        stop_gateway(gateway)
        gateway = None
    finally:
        close_all(*clients)
        reap(gateway)


# ----- 5: expiry across a restart ---------------------------------------------------------------


def test_message_and_session_expiry_count_the_time_the_gateway_was_down(tmp_path):
    """Queued for an offline session: a message with expiry 2 s, one without, one with 60 s.
    Also a session with expiry 3 s, offline. The gateway stops, stays down 4 s, restarts: the
    2 s message and the 3 s session are gone, the others arrive (the 60 s one with its expiry
    shortened by the time down), and the long session is still there."""
    data_dir = tmp_path / "data"
    gateway = start_gateway(data_dir)
    clients: list[PahoClient] = []
    try:
        keeper = session_client("exp-keeper", 5)
        clients.append(keeper)
        connect_session(keeper, gateway.address, 5, resume=False)
        assert keeper.subscribe("exp/#", 1) == [1]
        keeper.disconnect()
        short = session_client("exp-short", 5)
        clients.append(short)
        connect_session(short, gateway.address, 5, resume=False, expiry=3)
        assert short.subscribe("exp-short/#", 1) == [1]
        short.disconnect()

        publisher = PahoClient("exp-pub", protocol=mqtt.MQTTv5, reconnect=False)
        clients.append(publisher)
        publisher.connect(gateway.address)
        publisher.publish("exp/a", "expires", qos=1,
                          properties=properties(PacketTypes.PUBLISH, MessageExpiryInterval=2))
        publisher.publish("exp/b", "stays", qos=1)
        publisher.publish("exp/c", "lasts", qos=1,
                          properties=properties(PacketTypes.PUBLISH, MessageExpiryInterval=60))
        published = time.monotonic()
        publisher.disconnect()
        close_all(*clients)
        clients.clear()
        stop_gateway(gateway)
        gateway = None
        time.sleep(max(0.0, published + 4.0 - time.monotonic()))

        gateway = start_gateway(data_dir)
        # Raw, and at once: the gateway must not resume a session whose time ran out while it
        # was down, however early the client comes back.
        short = Flows(gateway.address, 5, "exp-short", clean=False, expiry=3)
        present, code, _props = short.connect()
        short.disconnect()
        assert (present, code) == (False, 0), \
            "a session with expiry 3 s is still present after 4 s, part of it with the gateway down"
        keeper = session_client("exp-keeper", 5)
        clients.append(keeper)
        assert connect_session(keeper, gateway.address, 5, resume=True).session_present
        wait_for_payload(keeper, "exp/c", b"lasts", COLLECT_S)
        down = time.monotonic() - published
        got = [(m.topic, m.payload) for m in keeper.messages]
        assert got == [("exp/b", b"stays"), ("exp/c", b"lasts")], got
        left = keeper.messages[1].prop("MessageExpiryInterval")
        assert left is not None and 1 <= left <= 60 - int(down) + 1, (
            f"the 60 s message arrived {down:.1f} s after it was published with "
            f"{left} s left")
        assert keeper.messages[0].prop("MessageExpiryInterval") is None
        close_all(*clients)
        clients.clear()
        stop_gateway(gateway)
        gateway = None
    finally:
        close_all(*clients)
        reap(gateway)


# ----- 6: wills across a crash ------------------------------------------------------------------


def will_subscriber(gateway, client_id: str, topic: str) -> None:
    """A persistent 5.0 session subscribed to `topic` at QoS 1, left offline."""
    subscriber = session_client(client_id, 5)
    try:
        connect_session(subscriber, gateway.address, 5, resume=False)
        assert subscriber.subscribe(topic, 1) == [1]
        subscriber.disconnect()
    finally:
        subscriber.close()


def sync_store(gateway, client_id: str) -> None:
    """Makes everything the gateway recorded so far durable before returning: the SUBACK of a
    persistent session waits for the store, and for every change recorded before it."""
    flows = Flows(gateway.address, 5, client_id, clean=True, expiry=LONG)
    assert flows.connect()[1] == 0
    flows.subscribe_all([(1, f"sync/{client_id}")], 1, 1)
    assert list(flows.acked) == [1], (flows.acked, flows.refused, flows.lost)
    flows.disconnect()


def count_after_marker(gateway, subscriber: PahoClient, topic: str, marker_topic: str) -> int:
    """Publishes a marker after everything else and returns how many messages on `topic`
    arrived before it."""
    publisher = PahoClient("will-marker", protocol=mqtt.MQTTv311, reconnect=False)
    try:
        publisher.connect(gateway.address)
        publisher.publish(marker_topic, "marker", qos=1)
        wait_for_payload(subscriber, marker_topic, b"marker", 10)
    finally:
        publisher.close()
    return sum(1 for m in subscriber.messages if m.topic == topic)


def test_will_of_a_client_connected_at_the_crash_is_published_after_the_restart(tmp_path):
    """A 5.0 client with a will (delay 2 s) on a persistent session (expiry 60 s) is connected
    when the gateway is killed: its connection is lost without DISCONNECT, so its will is due
    [MQTT-3.1.2-8]. After the restart its session is offline, and the will goes out once the
    delay has passed: not before 2 s after the kill (the earliest the connection was lost), by
    2 s + 3 s after the restart (the gateway may count the delay from either), exactly once."""
    data_dir = tmp_path / "data"
    gateway = start_gateway(data_dir)
    subscriber = None
    try:
        will_subscriber(gateway, "will-crash-sub", "will/crash")
        raw = RawClient(gateway)
        raw.send(connect_packet(5, "will-crash", clean=True, expiry=60,
                                will=("will/crash", b"gone", 1), will_delay=2))
        assert raw.read()[0] == CONNACK
        sync_store(gateway, "will-crash-sync")
        kill9(gateway)
        killed = time.monotonic()
        raw.close()

        gateway = start_gateway(data_dir)
        restarted = time.monotonic()
        subscriber = session_client("will-crash-sub", 5)
        assert connect_session(subscriber, gateway.address, 5, resume=True).session_present
        wait_for_payload(subscriber, "will/crash", b"gone", 5.0 + 2.0)
        arrived = time.monotonic() - restarted
        assert time.monotonic() - killed >= 2.0 - 0.1, (
            f"the will came {time.monotonic() - killed:.2f} s after the kill, before its delay")
        # Any second copy (at start and again when due, say) would be out by now.
        time.sleep(max(0.0, restarted + 3.5 - time.monotonic()))
        assert subscriber.subscribe("will-marker", 1) == [1]
        count = count_after_marker(gateway, subscriber, "will/crash", "will-marker")
        print(f"durability test=will-crash arrived_after_restart_s={arrived:.2f} copies={count}")
        assert count == 1, f"the will arrived {count} times"
        subscriber.close()
        subscriber = None
        stop_gateway(gateway)
        gateway = None
    finally:
        close_all(subscriber)
        reap(gateway)


def test_pending_wills_survive_a_kill9_and_keep_their_due_time(tmp_path):
    """Two 5.0 clients lose their connections (no DISCONNECT) while the gateway runs: one with
    will delay 3 s, one with 9 s; their wills wait. The gateway is killed, stays down 4 s, and
    restarts: the 3 s will, due while the gateway was down, is published at once (well before
    another 3 s); the 9 s one when due, counted from the lost connection, not from the restart
    and not at once. Each exactly once."""
    data_dir = tmp_path / "data"
    gateway = start_gateway(data_dir)
    subscriber = None
    try:
        will_subscriber(gateway, "will-pend-sub", "will/pending/#")

        lost_at = {}
        for name, delay in (("short", 3), ("long", 9)):
            raw = RawClient(gateway)
            raw.send(connect_packet(5, f"will-{name}", clean=True, expiry=60,
                                    will=(f"will/pending/{name}", name.encode(), 1),
                                    will_delay=delay))
            assert raw.read()[0] == CONNACK
            raw.close()  # no DISCONNECT: the will waits for its delay
            lost_at[name] = time.monotonic()
            wait_disconnected(gateway, f"will-{name}")
        sync_store(gateway, "will-pend-sync")
        kill9(gateway)
        time.sleep(max(0.0, lost_at["short"] + 4.0 - time.monotonic()))

        gateway = start_gateway(data_dir)
        restarted = time.monotonic()
        subscriber = session_client("will-pend-sub", 5)
        assert connect_session(subscriber, gateway.address, 5, resume=True).session_present
        wait_for_payload(subscriber, "will/pending/short", b"short", 5.0)
        short_after_restart = time.monotonic() - restarted
        assert short_after_restart < 2.0, (
            f"the will due while the gateway was down came {short_after_restart:.2f} s after "
            "the restart: its delay started again")
        assert not [m for m in subscriber.messages if m.topic == "will/pending/long"], (
            f"the 9 s will came {time.monotonic() - lost_at['long']:.1f} s after its connection "
            "was lost")
        wait_for_payload(subscriber, "will/pending/long", b"long", 12.0)
        long_after_loss = time.monotonic() - lost_at["long"]
        assert 8.5 <= long_after_loss <= 9.0 + 3.0, (
            f"the 9 s will came {long_after_loss:.2f} s after its connection was lost")
        assert subscriber.subscribe("will-marker", 1) == [1]
        count_short = count_after_marker(gateway, subscriber, "will/pending/short", "will-marker")
        count_long = sum(1 for m in subscriber.messages if m.topic == "will/pending/long")
        print(f"durability test=will-pending short_after_restart_s={short_after_restart:.2f} "
              f"long_after_loss_s={long_after_loss:.2f} copies={count_short},{count_long}")
        assert (count_short, count_long) == (1, 1)
        subscriber.close()
        subscriber = None
        stop_gateway(gateway)
        gateway = None
    finally:
        close_all(subscriber)
        reap(gateway)


# ----- 7: a corrupt store, and the previous release's ----------------------------------------


@pytest.mark.parametrize("damage", ["garbage", "header"])
def test_a_corrupt_store_is_refused_naming_the_file(tmp_path, damage):
    """`garbage`: gateway.redb is 64 KiB of random bytes. `header`: a real store (written by the
    gateway, with a session and a retained message) whose first 4 KiB are overwritten. Either
    way the gateway exits non-zero before listening, says which file, and leaves it as it was
    (no repair that drops data, no fresh store over it)."""
    data_dir = tmp_path / "data"
    path = data_dir / "gateway.redb"
    if damage == "garbage":
        data_dir.mkdir()
        path.write_bytes(random.Random(7).randbytes(64 * 1024))
    else:
        gateway = start_gateway(data_dir)
        try:
            client = PahoClient("corrupt-pub", protocol=mqtt.MQTTv311, reconnect=False)
            client.connect(gateway.address)
            client.publish("corrupt/retained", "x", qos=1, retain=True)
            client.close()
        finally:
            stop_gateway(gateway)
        with open(path, "r+b") as store:
            store.write(random.Random(8).randbytes(4096))
    before = path.read_bytes()
    code, output = run_to_exit(data_dir)
    assert code is not None, f"the gateway kept running on a corrupt store:\n{output}"
    assert code != 0, f"the gateway exited 0 on a corrupt store:\n{output}"
    assert "listening mqtt" not in output, output
    assert str(path) in output, f"the error does not name {path}:\n{output}"
    assert path.read_bytes() == before, "the refused store was modified"


FIXTURE = REPO_ROOT / "gateway" / "tests" / "fixtures" / "store-format-1.redb"
DAY = 86400


def test_a_store_of_format_1_is_migrated(tmp_path):
    """The previous release's store (the fixture it wrote; its README lists what it holds)
    opens: the recovered line counts what the README lists, a second start reads the migrated
    store the same, and over MQTT each session resumes with its queued messages (properties
    and subscription identifiers included) and its subscriptions, and the retained messages
    are there. The two messages with a day's expiry are expected while surely unexpired (the
    README's date + 1 day), and gone once surely expired."""
    require(FIXTURE.exists(), f"{FIXTURE.relative_to(REPO_ROOT)} is missing")
    readme = (FIXTURE.parent / "README.md").read_text(encoding="utf-8")
    made = re.search(r"How it was made \((\d{4}-\d{2}-\d{2})", readme)
    assert made, "the fixture's README no longer says when it was made"
    made_day = calendar.timegm(time.strptime(made[1], "%Y-%m-%d"))
    now = time.time()
    # Made some time that day, they expire some time the next day.
    expiring = True if now < made_day + DAY else False if now > made_day + 2 * DAY else None

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    shutil.copyfile(FIXTURE, data_dir / "gateway.redb")
    counts = []
    for _ in range(2):
        gateway = start_gateway(data_dir)
        try:
            counts.append(recovered_line(gateway))
        finally:
            stop_gateway(gateway)
    keys = ("sessions", "queued", "inflight", "subscriptions", "retained")
    first, second = ({key: got[key] for key in keys} for got in counts)
    print(f"durability test=migration recovered={first} expiring_expected={expiring}")
    assert first == second, f"the migrated store reads differently the second time: {counts}"
    if expiring is not None:
        extra = 1 if expiring else 0
        assert first == {"sessions": 2, "queued": 3 + extra, "inflight": 0, "subscriptions": 3,
                         "retained": 1 + extra}, first

    gateway = start_gateway(data_dir)
    clients: list[PahoClient] = []
    try:
        v5 = session_client("fixture-v5", 5)
        v311 = session_client("fixture-v311", 4)
        retained = PahoClient("fixture-reader", protocol=mqtt.MQTTv5, reconnect=False)
        publisher = PahoClient("fixture-pub", protocol=mqtt.MQTTv311, reconnect=False)
        clients += [v5, v311, retained, publisher]
        assert connect_session(v5, gateway.address, 5, resume=True, expiry=DAY).session_present
        assert connect_session(v311, gateway.address, 4, resume=True).session_present
        retained.connect(gateway.address)
        assert retained.subscribe("fixture/retained/#", 1) == [1]
        # Their subscriptions came along: what is published now reaches them after the queue.
        publisher.connect(gateway.address)
        for topic in ("fixture/queue/after", "fixture/shared/after", "fixture/exactly/after",
                      "fixture/retained/zz-after"):
            publisher.publish(topic, "after", qos=1)
        wait_for_payload(v5, "fixture/queue/after", b"after", COLLECT_S)
        wait_for_payload(v5, "fixture/shared/after", b"after", COLLECT_S)
        wait_for_payload(v311, "fixture/exactly/after", b"after", COLLECT_S)
        wait_for_payload(retained, "fixture/retained/zz-after", b"after", COLLECT_S)

        got = [(m.topic, m.payload, m.qos, m.prop("SubscriptionIdentifier"))
               for m in v5.messages]
        queued = [("fixture/queue/1", b"queued one", 1, [7])]
        if expiring is not False:
            queued.append(("fixture/queue/2", b"queued two", 1, [7]))
        queued.append(("fixture/shared/a", b"queued three", 1, None))
        after = [("fixture/queue/after", b"after", 1, [7]),
                 ("fixture/shared/after", b"after", 1, None)]
        if expiring is None:
            got = [m for m in got if m[0] != "fixture/queue/2"]
            queued = [m for m in queued if m[0] != "fixture/queue/2"]
        assert got == queued + after, got
        for message in v5.messages:
            if message.topic == "fixture/queue/2":
                assert message.prop("UserProperty") == [("k", "v")], message.properties
                left = message.prop("MessageExpiryInterval")
                assert left is not None and 0 < left <= made_day + 2 * DAY - now, left

        assert [(m.topic, m.payload, m.qos) for m in v311.messages] == [
            ("fixture/exactly/once", b"exactly once", 2),
            ("fixture/exactly/after", b"after", 1)]

        kept = {m.topic: m for m in retained.messages if m.retain}
        assert kept["fixture/retained/plain"].payload == b"21.5"
        if expiring:
            message = kept["fixture/retained/expiring"]
            assert message.payload == b"expires in a day"
            assert message.prop("ContentType") == "text/plain"
        elif expiring is False:
            assert "fixture/retained/expiring" not in kept
        close_all(*clients)
        clients.clear()
        stop_gateway(gateway)
        gateway = None
    finally:
        close_all(*clients)
        reap(gateway)


# ----- 8: a full disk ---------------------------------------------------------------------------


def tail(gateway, lines: int = 30) -> str:
    """The last lines the gateway printed, for assertion messages."""
    with gateway.changed:
        return "--- the gateway's last lines ---\n" + "\n".join(gateway.log[-lines:])


def fill(directory: pathlib.Path) -> pathlib.Path:
    """Writes a filler file until the file system is full; returns its path."""
    filler = directory / "filler"
    chunk = b"\0" * (64 * 1024)
    with open(filler, "wb", buffering=0) as out:
        try:
            while True:
                out.write(chunk)
        except OSError as error:
            if error.errno != errno.ENOSPC:
                raise
        small = b"\0" * 512
        try:
            while True:
                out.write(small)
        except OSError as error:
            if error.errno != errno.ENOSPC:
                raise
    return filler


def publish_v5(raw: RawClient, topic: str, payload: bytes, packet_id: int,
               timeout: float = 10.0, send: bool = True) -> int | str:
    """One QoS 1 PUBLISH (unless not `send`) and the next packet, which must be its PUBACK:
    its reason code, or "closed" if the connection closed, or "no answer" if nothing came
    within `timeout` s."""
    try:
        if send:
            raw.send(raw_publish(5, topic, payload, qos=1, packet_id=packet_id))
        deadline = time.monotonic() + timeout
        while True:
            first, rest = split_one(raw.buffer)
            if first is not None:
                raw.buffer = rest
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "no answer"
            raw.sock.settimeout(remaining)
            try:
                chunk = raw.sock.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                return "closed"
            raw.buffer += chunk
    except ConnectionError:
        return "closed"
    kind, _flags, body = first
    assert kind == PUBACK and int.from_bytes(body[:2], "big") == packet_id, (kind, body)
    return body[2] if len(body) > 2 else 0


def read_puback(raw: RawClient, packet_id: int, timeout: float) -> int | str:
    """The reason code of the PUBACK for `packet_id` that `raw` is waiting for (see
    `publish_v5`), without sending anything."""
    return publish_v5(raw, "", b"", packet_id, timeout, send=False)


def test_a_full_disk_refuses_what_it_cannot_store_and_recovers(tmp_path):
    """The store lives on a 16 MiB tmpfs that a filler file fills up; a persistent session
    subscribed to `full/#` is offline. A 256 KiB QoS 1 message for it (A) makes the store's
    write fail: /metrics counts it. From then on, while the store cannot write, a new 5.0
    publisher's QoS 1 messages for the session are refused with PUBACK 0x97, and a 3.1.1
    publisher's connection is closed. A itself may be refused too, or its PUBACK held until it
    is stored. The filler goes: the gateway writes again by itself (log line), publishing
    works, and the session receives every message acknowledged with 0x00, none refused."""
    require(os.geteuid() == 0, "mounting a tmpfs needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.fail(f"could not mount a tmpfs at {mount} (as root): {result.stderr.strip()}",
                    pytrace=False)
    gateway = None
    clients = []
    try:
        data_dir = mount / "data"
        gateway = start_gateway(data_dir)
        sleeper = session_client("full-sleeper", 5)
        clients.append(sleeper)
        connect_session(sleeper, gateway.address, 5, resume=False)
        assert sleeper.subscribe("full/#", 1) == [1]
        sleeper.disconnect()
        first = RawClient(gateway)
        clients.append(first)
        assert first.connect(5, "full-first") == (False, 0)
        assert publish_v5(first, "full/ok", b"before", 1) == 0, "a message before the disk filled"
        filler = fill(mount)

        # A: the store has to grow by 256 KiB and cannot.
        payload = random.Random(9).randbytes(256 * 1024)
        first.send(raw_publish(5, "full/a", b"A:" + payload, qos=1, packet_id=2))
        wait_until(lambda: (metric(gateway, STORE_WRITE_ERRORS) or 0) > 0, 10,
                   lambda: f"{STORE_WRITE_ERRORS} stayed 0 with the disk full\n"
                   + tail(gateway))
        errors = metric(gateway, STORE_WRITE_ERRORS)

        second = RawClient(gateway)
        clients.append(second)
        assert second.connect(5, "full-second") == (False, 0)
        for packet_id, payload_b in ((1, b"refused-1"), (2, b"refused-2")):
            code = publish_v5(second, "full/refused", payload_b, packet_id, timeout=5)
            assert code == QUOTA_EXCEEDED, (
                f"QoS 1 message {payload_b!r} for a persistent session while the store cannot "
                f"write: {code!r}, not PUBACK 0x97\n" + tail(gateway))

        with RawClient(gateway) as v311:
            assert v311.connect(4, "full-v311") == (False, 0)
            v311.send(raw_publish(4, "full/refused", b"v311", qos=1, packet_id=1))
            answer = v311.read_until_closed(timeout=10)
            assert not answer.startswith(b"\x40"), "the 3.1.1 publisher got a PUBACK"

        filler.unlink()
        deadline = time.monotonic() + 10
        packet_id = 10
        while True:
            code = publish_v5(second, "full/after", b"after-%d" % packet_id, packet_id)
            assert isinstance(code, int), f"after the disk freed: {code}\n" + tail(gateway)
            if code == 0:
                break
            assert code == QUOTA_EXCEEDED, hex(code)
            assert time.monotonic() < deadline, "still refusing 10 s after the disk freed\n" \
                + tail(gateway)
            time.sleep(0.2)
            packet_id += 1
        recovered_id = packet_id
        gateway.wait_for_log(r"store: writing again", timeout=5)
        code_a = read_puback(first, 2, timeout=10)
        assert code_a in (0, QUOTA_EXCEEDED), f"A: {code_a!r} after the disk freed"

        sleeper = session_client("full-sleeper", 5)
        clients.append(sleeper)
        assert connect_session(sleeper, gateway.address, 5, resume=True).session_present
        wait_for_payload(sleeper, "full/after", b"after-%d" % recovered_id, COLLECT_S)
        got = [(m.topic, m.payload[:2]) for m in sleeper.messages]
        expected = [("full/ok", b"be")] + ([("full/a", b"A:")] if code_a == 0 else [])
        expected.append(("full/after", b"af"))
        print(f"durability test=disk-full write_errors={errors} a=0x{code_a:02x} "
              f"after_tries={recovered_id - 9}")
        assert got == expected, f"the session received {got}"
        close_all(*[c for c in clients if isinstance(c, PahoClient)])
        stop_gateway(gateway)
        gateway = None
    finally:
        for client in clients:
            client.close()
        reap(gateway)
        subprocess.run(["umount", str(mount)], check=False)
