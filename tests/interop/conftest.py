"""Fixtures for the interop tests: a real `gateway` process on free loopback ports, and paho-mqtt.

`cargo xtask test` runs this directory once per paho-mqtt generation (1.6.1 and 2.x), each from
its own virtualenv under target/venv/, with GATEWAY_BIN set to the freshly built debug binary.
By hand: `cargo build -p gateway && target/venv/paho2/bin/python -m pytest tests/interop -q`.
Tests take the `gateway` and `paho_major` fixtures as arguments, and may import the helpers:
`from conftest import PAHO_MAJOR, new_client` (and `start_gateway`/`stop_gateway` to run more
gateways than the fixture's one). `make_client` and `spawn` are factories of paho clients and
subprocesses (support.py) that are cleaned up before the gateway stops.

The `gateway` fixture starts `$GATEWAY_BIN --tcp 127.0.0.1:0 --http 127.0.0.1:0 --data-dir <tmp>`,
waits for its `listening mqtt <addr>` and `listening http <addr>` log lines to learn the ports the
kernel chose, and at teardown sends SIGTERM and asserts a clean exit (code 0 within 5 s), as the
gateway's shutdown contract in DESIGN.md promises. A test may send SIGTERM right after the
`listening` lines, so the gateway must install its signal handlers before it prints them.

A test passes extra gateway flags with a marker, e.g. `@pytest.mark.gateway_args("--sys-interval",
"1")`. The gateway's output is captured line by line in `gateway.log`; `gateway.wait_for_log(regex)`
waits (bounded) for a line, `gateway.log_lines(regex)` lists the matching lines so far. The log
level is forced to `info` (RUST_LOG), whatever the caller's environment says, because the fixture
and some tests read info lines.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import pathlib
import re
import signal
import subprocess
import threading
import time

import pytest

#: How long the gateway may take to print its listening lines.
STARTUP_TIMEOUT_S = 30.0
#: How long the gateway may take to exit after SIGTERM (DESIGN.md: within 5 s).
SHUTDOWN_TIMEOUT_S = 5.0

#: `listening <kind> <addr>` anywhere in a line: the logger adds a timestamp and level before it.
LISTENING = re.compile(r"listening (?P<kind>mqtts?|https?) (?P<addr>\S+)")
#: Terminal colour codes, in case the logger adds them even to a pipe.
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]

#: The installed paho-mqtt's major version: 1 or 2 (their client constructors and callbacks differ).
PAHO_MAJOR = int(importlib.metadata.version("paho-mqtt").split(".")[0])


def split_address(addr: str) -> tuple[str, int]:
    """`127.0.0.1:1883` -> ("127.0.0.1", 1883); `[::1]:1883` -> ("::1", 1883)."""
    host, _, port = addr.rpartition(":")
    return host.strip("[]"), int(port)


@dataclasses.dataclass
class Gateway:
    """A running gateway process and where it listens."""

    process: subprocess.Popen
    data_dir: pathlib.Path
    mqtt_host: str
    mqtt_port: int
    http_host: str
    http_port: int
    #: Every line the gateway printed so far (stdout and stderr merged), without colour codes.
    log: list[str]
    #: Notified whenever a line is appended to `log` (and when the output ends).
    changed: threading.Condition = dataclasses.field(default_factory=threading.Condition, repr=False)
    #: The thread reading the output into `log`.
    reader: threading.Thread | None = dataclasses.field(default=None, repr=False)
    #: The MQTT over TLS listener's port, when the gateway was started with `--mqtts`.
    mqtts_port: int | None = None
    #: The HTTPS listener's port, when the gateway was started with `--https`.
    https_port: int | None = None

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) of the MQTT over TCP listener."""
        return self.mqtt_host, self.mqtt_port

    @property
    def http_url(self) -> str:
        """Base URL of the HTTP listener, e.g. `http://127.0.0.1:41234`."""
        return f"http://{self.http_host}:{self.http_port}"

    @property
    def ws_url(self) -> str:
        """URL of MQTT over WebSocket, e.g. `ws://127.0.0.1:41234/mqtt`."""
        return f"ws://{self.http_host}:{self.http_port}/mqtt"

    @property
    def mqtts_address(self) -> tuple[str, int]:
        """(host, port) of the MQTT over TLS listener (`--mqtts`; the TCP listener's host)."""
        assert self.mqtts_port is not None, "the gateway was started without --mqtts"
        return self.mqtt_host, self.mqtts_port

    @property
    def https_url(self) -> str:
        """Base URL of the HTTPS listener (`--https`), e.g. `https://127.0.0.1:41235`."""
        assert self.https_port is not None, "the gateway was started without --https"
        return f"https://{self.http_host}:{self.https_port}"

    def log_text(self) -> str:
        """The gateway's output so far, for assertion messages."""
        with self.changed:
            return "\n".join(self.log)

    def log_lines(self, pattern: str) -> list[str]:
        """The lines printed so far in which the regular expression `pattern` is found."""
        regex = re.compile(pattern)
        with self.changed:
            return [line for line in self.log if regex.search(line)]

    def wait_for_log(self, pattern: str, timeout: float = 5.0) -> str:
        """Waits up to `timeout` seconds for a line matching `pattern`; returns it or fails."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for line in self.log:
                    if regex.search(line):
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.changed.wait(timeout=min(remaining, 0.2))
        pytest.fail(
            f"no gateway log line matching {pattern!r} within {timeout} s\n--- its output ---\n"
            + self.log_text(),
            pytrace=False,
        )


def gateway_binary() -> pathlib.Path:
    """`$GATEWAY_BIN`, else target/debug/gateway if it was built."""
    configured = os.environ.get("GATEWAY_BIN")
    if configured:
        return pathlib.Path(configured)
    built = REPO_ROOT / "target" / "debug" / "gateway"
    if built.exists():
        return built
    pytest.fail("set GATEWAY_BIN to the gateway binary (cargo xtask test does), or cargo build -p gateway")


def _read_lines(stream, log: list[str], changed: threading.Condition) -> None:
    """Reads the gateway's output to its end, so its pipe never fills and blocks it."""
    for raw in iter(stream.readline, b""):
        line = ANSI_ESCAPE.sub("", raw.decode("utf-8", "replace")).rstrip("\r\n")
        with changed:
            log.append(line)
            changed.notify_all()
    with changed:
        changed.notify_all()


def _listening(log: list[str]) -> dict[str, str]:
    """The first address of each listener kind announced in `log`."""
    found: dict[str, str] = {}
    for line in log:
        match = LISTENING.search(line)
        if match:
            found.setdefault(match["kind"], match["addr"])
    return found


def _stop(process: subprocess.Popen) -> tuple[int, bool]:
    """SIGTERM, wait up to SHUTDOWN_TIMEOUT_S, then SIGKILL. Returns (exit code, whether killed)."""
    if process.poll() is not None:
        return process.returncode, False
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=SHUTDOWN_TIMEOUT_S), False
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait(), True


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers", "gateway_args(*flags): extra command-line flags for the `gateway` fixture"
    )


def start_gateway(data_dir: pathlib.Path, extra: list[str] = ()) -> Gateway:
    """Starts the gateway on port 0 with `data_dir` and `extra` flags, and returns once it has
    announced both listeners (fails the test otherwise). Stop it with `stop_gateway`.

    When `extra` holds `--mqtts` or `--https`, it also waits for those listeners and returns
    the first one's port of each kind as `mqtts_port` / `https_port`; the hosts are expected to
    be the TCP and HTTP listeners' (all on 127.0.0.1 in these tests)."""
    command = [
        str(gateway_binary()),
        "--tcp", "127.0.0.1:0",
        "--http", "127.0.0.1:0",
        "--data-dir", str(data_dir),
        *extra,
    ]
    # The fixture and tests read `info` lines: a RUST_LOG=warn in the caller's shell would hide them.
    env = dict(os.environ, NO_COLOR="1", RUST_LOG="info")
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    log: list[str] = []
    changed = threading.Condition()
    reader = threading.Thread(target=_read_lines, args=(process.stdout, log, changed), daemon=True)
    reader.start()

    wanted = {"mqtt", "http"}
    wanted |= {kind for kind in ("mqtts", "https") if f"--{kind}" in extra}
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    with changed:
        while True:
            found = _listening(log)
            if wanted <= found.keys():
                break
            remaining = deadline - time.monotonic()
            if process.poll() is not None or remaining <= 0:
                break
            changed.wait(timeout=min(remaining, 0.2))
    if not wanted <= found.keys():
        exited = process.poll()
        _stop(process)
        reader.join(timeout=1)
        reason = (f"did not announce its listeners ({', '.join(sorted(wanted))}) in time"
                  if exited is None else f"exited with {exited}")
        pytest.fail(
            f"gateway {reason}: {' '.join(command)}\n--- its output ---\n" + "\n".join(log),
            pytrace=False,
        )

    mqtt_host, mqtt_port = split_address(found["mqtt"])
    http_host, http_port = split_address(found["http"])
    tls_ports = {kind: split_address(found[kind])[1] if kind in found else None
                 for kind in ("mqtts", "https")}
    return Gateway(process, data_dir, mqtt_host, mqtt_port, http_host, http_port, log, changed, reader,
                   mqtts_port=tls_ports["mqtts"], https_port=tls_ports["https"])


def stop_gateway(running: Gateway) -> None:
    """SIGTERM (unless it exited already), then asserts the clean exit DESIGN.md promises:
    code 0 within SHUTDOWN_TIMEOUT_S."""
    try:
        code, killed = _stop(running.process)
    finally:
        running.reader.join(timeout=1)
        running.process.stdout.close()
    assert not killed, (
        f"gateway did not exit within {SHUTDOWN_TIMEOUT_S} s of SIGTERM\n" + running.log_text()
    )
    assert code == 0, f"gateway exited with {code} after SIGTERM\n" + running.log_text()


@pytest.fixture
def gateway(tmp_path: pathlib.Path, request: pytest.FixtureRequest):
    """A fresh gateway on free loopback ports with its own data directory; stopped at teardown."""
    extra = [str(flag) for marker in request.node.iter_markers("gateway_args") for flag in marker.args]
    running = start_gateway(tmp_path / "data", extra)
    try:
        yield running
    finally:
        stop_gateway(running)


@pytest.fixture
def paho_major() -> int:
    """The installed paho-mqtt's major version (1 or 2)."""
    return PAHO_MAJOR


def new_client(client_id: str = "", **kwargs):
    """A `paho.mqtt.client.Client` for either paho generation.

    paho 2 requires a callback API version: this picks VERSION2, whose callbacks take
    `reason_code` and `properties` (e.g. `on_connect(client, userdata, flags, reason_code,
    properties)`); paho 1 uses the old signatures (`on_connect(client, userdata, flags, rc)`).
    Branch on `PAHO_MAJOR` (or the `paho_major` fixture) where a test's callbacks differ.
    """
    import paho.mqtt.client as mqtt

    if PAHO_MAJOR >= 2:
        kwargs.setdefault("callback_api_version", mqtt.CallbackAPIVersion.VERSION2)
    return mqtt.Client(client_id=client_id, **kwargs)


@pytest.fixture
def make_client(gateway):
    """Factory of `support.PahoClient`s, each closed (DISCONNECT, thread stopped) at teardown,
    before the gateway fixture (which it depends on, for that order) stops the gateway."""
    from support import PahoClient

    made: list = []

    def make(*args, **kwargs):
        client = PahoClient(*args, **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def spawn(gateway):
    """Factory of `support.Process`es (subprocesses with collected output), killed at teardown
    before the gateway stops."""
    from support import Process

    started: list = []

    def start(*args, **kwargs):
        process = Process(*args, **kwargs)
        started.append(process)
        return process

    yield start
    for process in started:
        process.close()
