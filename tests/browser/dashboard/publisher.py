"""A paced MQTT publisher over TCP for the dashboard's browser tests (paho-mqtt 2.x).

Sends COUNT QoS 0 messages to TOPIC at RATE messages per second (in all), in small batches every
millisecond or so (so a 10k/s run is a steady stream, not one burst), then waits until paho has
written the last one to the socket before disconnecting (see the README: a script that exits
right after publish() may send nothing). Prints `sent N` on success.

With --username (and the password in the environment variable PUBLISHER_PASSWORD, so that it
shows in no process list) it signs in; --retain makes every message retained.

Payload kinds: `json` ({"temp": ..., "hum": ...}, varying), `number` (a plain number), `text`
(not numeric), `counter` ({"v": i}), `room` ({"temp": ..., "hum": ..., "env": {"co2": ...}}, a
room sensor whose readings differ from room to room).

--topic may be given several times: each message index then goes to every topic in turn (the
topic's position varies the `room` readings). With --record FILE, each message sent is written
to FILE as `topic<TAB>payload`, one line each, in the order sent.
"""

import argparse
import math
import os
import sys
import time

import paho.mqtt.client as mqtt


def payload(kind: str, index: int, room: int = 0) -> str:
    if kind == "room":
        temp = round(20 + 1.5 * room + 1.5 * math.sin(index / 25 + room), 2)
        hum = round(48 + 3 * room + 4 * math.cos(index / 35 + room), 1)
        co2 = 480 + 50 * room + round(40 * math.sin(index / 50 + 2 * room))
        return f'{{"temp": {temp}, "hum": {hum}, "env": {{"co2": {co2}}}}}'
    if kind == "json":
        temp = round(21.5 + 2 * math.sin(index / 20), 3)
        hum = round(40 + 5 * math.cos(index / 30), 3)
        return f'{{"temp": {temp}, "hum": {hum}}}'
    if kind == "number":
        return str(round(10 * math.sin(index / 10), 4))
    if kind == "text":
        return f"hello {index}"
    if kind == "counter":
        return f'{{"v": {index}}}'
    raise ValueError(kind)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--topic", required=True, action="append")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True, help="messages per second")
    parser.add_argument("--kind", default="json")
    parser.add_argument("--username")
    parser.add_argument("--retain", action="store_true")
    parser.add_argument("--record", help="file to write each message sent to")
    args = parser.parse_args()
    record = open(args.record, "w", encoding="utf-8") if args.record else None

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"dashboard-test-{time.time_ns()}")
    if args.username is not None:
        client.username_pw_set(args.username, os.environ.get("PUBLISHER_PASSWORD"))
    client.connect(args.host, args.port, keepalive=30)
    client.loop_start()
    deadline = time.monotonic() + 10
    while not client.is_connected():
        if time.monotonic() > deadline:
            print("could not connect", file=sys.stderr)
            return 1
        time.sleep(0.01)

    started = time.monotonic()
    last = None
    sent = 0
    for index in range(args.count):
        for room, topic in enumerate(args.topic):
            # Pace by the clock: message i is due at started + i / rate.
            due = started + sent / args.rate
            delay = due - time.monotonic()
            if delay > 0.001:
                time.sleep(delay)
            text = payload(args.kind, index, room)
            last = client.publish(topic, text, qos=0, retain=args.retain)
            sent += 1
            if record is not None:
                record.write(f"{topic}\t{text}\n")
    if record is not None:
        record.close()
    if last is not None:
        last.wait_for_publish(timeout=30)
    elapsed = time.monotonic() - started
    client.disconnect()
    client.loop_stop()
    print(f"sent {sent} in {elapsed:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
