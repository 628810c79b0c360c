"""Accounts and access rules with clients nobody here wrote: a password file made by Debian's
`mosquitto_passwd` and extended by `gateway passwd`, paho-mqtt with right and wrong passwords
(the CONNACK codes per version), the ACL seen by `mosquitto_pub`/`mosquitto_sub`, tokens as
paho passwords, and a check that no secret used here appears in the gateway's log, its API or
its metrics.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import pathlib
import shutil
import subprocess
import time
import urllib.request

import paho.mqtt.client as mqtt
import pytest

from conftest import PAHO_MAJOR, gateway_binary, start_gateway, stop_gateway
from support import WAIT_S, PahoClient, Process, require

@pytest.fixture(autouse=True)
def mosquitto_tools() -> None:
    """mosquitto_passwd and mosquitto_pub must be there (under CI a missing one fails the test)."""
    require(
        bool(shutil.which("mosquitto_passwd") and shutil.which("mosquitto_pub")),
        "mosquitto and mosquitto-clients are not installed (cargo xtask test installs them as root)",
    )

#: Every secret these tests use; none may appear in anything the gateway prints or serves.
DEVICE_PASSWORD = "mosquitto-made password 7"
OPERATOR_PASSWORD = "gateway-made password 9"
WRONG_PASSWORD = "not the password at all"
JWT_SECRET = "a shared HS256 secret of more than thirty-two bytes"

ACL = """\
user device
topic write sensors/#
pattern write devices/%c/status

user operator
topic read sensors/#
topic readwrite commands/#
topic deny sensors/private/#
"""


def jwt(claims: dict) -> str:
    """An HS256 JSON Web Token, made the long way (no JWT library on the Python side)."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    signature = hmac.new(JWT_SECRET.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(signature)}"


@pytest.fixture
def secured(tmp_path: pathlib.Path):
    """A gateway with a password file (one user by mosquitto_passwd, one by gateway passwd), the
    ACL above and a token secret. Yields (gateway, the password file's text)."""
    passwords = tmp_path / "passwords"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(passwords), "device", DEVICE_PASSWORD],
        check=True, capture_output=True, timeout=WAIT_S,
    )
    added = subprocess.run(
        [str(gateway_binary()), "passwd", str(passwords), "operator"],
        input=(OPERATOR_PASSWORD + "\n").encode(), capture_output=True, timeout=WAIT_S * 4,
    )
    assert added.returncode == 0, added.stderr.decode()
    assert OPERATOR_PASSWORD not in (added.stdout + added.stderr).decode()
    text = passwords.read_text()
    assert text.startswith("device:$7$") and "\noperator:$argon2id$" in text, "both formats"
    assert oct(passwords.stat().st_mode & 0o777) == "0o600"
    acl = tmp_path / "acl"
    acl.write_text(ACL)
    secret = tmp_path / "jwt-secret"
    secret.write_text(JWT_SECRET)
    gateway = start_gateway(tmp_path / "data", [
        "--password-file", str(passwords), "--acl-file", str(acl),
        "--jwt-secret-file", str(secret), "--admin-user", "operator",
    ])
    try:
        yield gateway, text
    finally:
        stop_gateway(gateway)


def paho(client_id: str, protocol: int, user: str | None, password: str | None) -> PahoClient:
    client = PahoClient(client_id, protocol=protocol, reconnect=False)
    if user is not None or password is not None:
        client.client.username_pw_set(user, password)
    return client


#: 3.1.1 return codes 4 and 5 as each paho reports them: paho 2 names them with the 5.0 reason
#: codes they correspond to (134, 135), paho 1 gives the byte as it came.
V311_BAD, V311_NOT_AUTHORIZED = (134, 135) if PAHO_MAJOR >= 2 else (4, 5)


@pytest.mark.parametrize("protocol, bad, anonymous", [
    pytest.param(mqtt.MQTTv311, V311_BAD, V311_NOT_AUTHORIZED, id="v3.1.1"),
    pytest.param(mqtt.MQTTv5, 134, 135, id="v5"),
])
def test_paho_gets_each_version_s_codes(secured, protocol, bad, anonymous):
    gateway, _ = secured
    cases = [
        ("device", DEVICE_PASSWORD, 0),
        ("operator", OPERATOR_PASSWORD, 0),
        ("device", WRONG_PASSWORD, bad),
        ("nobody", DEVICE_PASSWORD, bad),
        (None, None, anonymous),
    ]
    for index, (user, password, expected) in enumerate(cases):
        client = paho(f"paho-{index}", protocol, user, password)
        try:
            client.connect(gateway.address, expect_code=expected)
        finally:
            client.close()


def mosquitto(gateway, tool: str, *args: str) -> list[str]:
    return [tool, "-h", gateway.mqtt_host, "-p", str(gateway.mqtt_port), *args]


def test_mosquitto_clients_see_the_acl(secured):
    gateway, _ = secured
    sub = Process(["stdbuf", "-oL", *mosquitto(
        gateway, "mosquitto_sub", "-V", "5", "-u", "operator", "-P", OPERATOR_PASSWORD,
        "-t", "#", "-q", "1", "-d", "-v", "-W", "20",
    )], name="mosquitto_sub")
    try:
        check_deliveries(gateway, sub)
    finally:
        sub.process.kill()
        sub.process.wait(timeout=WAIT_S)


def check_deliveries(gateway, sub: Process) -> None:
    sub.wait_for_line(r"received SUBACK")
    for topic, payload in [("sensors/room1/temp", "21.5"), ("sensors/private/x", "secret reading"),
                           ("devices/dev-1/status", "online")]:
        result = subprocess.run(mosquitto(
            gateway, "mosquitto_pub", "-V", "5", "-i", "dev-1", "-u", "device",
            "-P", DEVICE_PASSWORD, "-t", topic, "-m", payload, "-q", "1", "-d",
        ), capture_output=True, timeout=WAIT_S * 2)
        assert result.returncode == 0, result.stderr.decode()
    # The device may not write where no rule lets it: PUBACK 0x87 (135), and nothing delivered.
    refused = subprocess.run(mosquitto(
        gateway, "mosquitto_pub", "-V", "5", "-i", "dev-1", "-u", "device", "-P", DEVICE_PASSWORD,
        "-t", "commands/all", "-m", "reboot", "-q", "1", "-d",
    ), capture_output=True, timeout=WAIT_S * 2)
    assert "RC:135" in refused.stdout.decode() + refused.stderr.decode()
    sub.wait_for_line(r"^sensors/room1/temp 21\.5$")
    time.sleep(0.5)
    received = sub.matching(r"^(?!Client |Subscribed )\S+ ")
    assert received == ["sensors/room1/temp 21.5"], (
        "the operator's # receives what it may read: not sensors/private (denied), not the "
        f"device's status (no read rule), not the refused command: {received}"
    )


def test_a_token_is_a_password_for_paho(secured):
    gateway, _ = secured
    token = jwt({"sub": "operator", "exp": int(time.time()) + 600})
    client = paho("token-holder", mqtt.MQTTv5, "operator", token)
    try:
        client.connect(gateway.address)
        assert client.subscribe("sensors/#", 1) == [1]
    finally:
        client.close()
    expired = jwt({"sub": "operator", "exp": int(time.time()) - 3600})
    client = paho("late", mqtt.MQTTv311, "operator", expired)
    try:
        client.connect(gateway.address, expect_code=V311_BAD)
    finally:
        client.close()


def test_no_secret_reaches_the_log_the_api_or_the_metrics(secured):
    gateway, password_file = secured
    token = jwt({"sub": "operator", "exp": int(time.time()) + 600})
    attempts = [("device", DEVICE_PASSWORD), ("device", WRONG_PASSWORD), ("operator", token),
                ("operator", WRONG_PASSWORD), ("nobody", OPERATOR_PASSWORD)]
    connected = []
    for index, (user, password) in enumerate(attempts):
        client = paho(f"leak-{index}", mqtt.MQTTv5, user, password)
        client.connect(gateway.address, expect_code=None)
        connected.append(client)
    try:
        gateway.wait_for_log(r"refusing CONNECT")
        # As the admin, so that what the API serves is the data, not a refusal.
        credentials = base64.b64encode(f"operator:{OPERATOR_PASSWORD}".encode()).decode()
        served = "".join(
            urllib.request.urlopen(urllib.request.Request(
                gateway.http_url + path, headers={"Authorization": f"Basic {credentials}"},
            ), timeout=WAIT_S).read().decode()
            for path in ["/api/v1/clients", "/api/v1/stats", "/metrics"]
        )
        assert '"username":"device"' in served, "the admin sees the clients"
    finally:
        for client in connected:
            client.close()
    hashes = [line.split(":", 1)[1] for line in password_file.splitlines() if ":" in line]
    secrets = [DEVICE_PASSWORD, OPERATOR_PASSWORD, WRONG_PASSWORD, JWT_SECRET, token, credentials,
               *hashes]
    # Pieces of the hashes too: a salt or digest printed alone is still a leak.
    secrets += [part for entry in hashes for part in entry.split("$") if len(part) >= 16]
    everything = gateway.log_text() + served
    for secret in secrets:
        assert secret not in everything, f"a secret ({secret[:4]}...) leaked"
    assert "refusing CONNECT" in gateway.log_text(), "the refusals were logged (names, not secrets)"


def test_gateway_passwd_adds_replaces_and_deletes(tmp_path: pathlib.Path):
    passwords = tmp_path / "passwords"

    def passwd(*args: str, password: str = "") -> subprocess.CompletedProcess:
        return subprocess.run([str(gateway_binary()), "passwd", *args], input=f"{password}\n".encode(),
                              capture_output=True, timeout=WAIT_S * 4)

    assert passwd(str(passwords), "a", password="first").returncode == 0
    assert passwd(str(passwords), "b", password="second").returncode == 0
    before = passwords.read_text()
    assert passwd(str(passwords), "a", password="changed").returncode == 0
    after = passwords.read_text()
    assert [line.split(":")[0] for line in after.splitlines()] == ["a", "b"]
    assert after.splitlines()[0] != before.splitlines()[0], "a's hash was replaced"
    assert after.splitlines()[1] == before.splitlines()[1], "b's was kept"
    deleted = passwd("--delete", str(passwords), "a")
    assert deleted.returncode == 0, deleted.stderr.decode()
    assert [line.split(":")[0] for line in passwords.read_text().splitlines()] == ["b"]
    missing = passwd("--delete", str(passwords), "a")
    assert missing.returncode != 0 and b"no user" in missing.stderr
    empty = passwd(str(passwords), "c", password="")
    assert empty.returncode != 0 and b"empty" in empty.stderr
