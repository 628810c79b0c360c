"""TLS with clients nobody here wrote: Debian's `mosquitto_pub`/`mosquitto_sub` and paho-mqtt
(1.6 and 2.x, `tls_set`) over `--mqtts`, paho over `wss://.../mqtt`, Python's `ssl` module on
`--mqtts` and `--https`, with certificates made here by Debian's `openssl` CLI.

The certificates are X.509 v3 (rustls refuses v1): a CA, a server certificate for 127.0.0.1 and
localhost (subjectAltName, serverAuth), client certificates with a CN (clientAuth), a second CA
with its own client certificate, and an expired client certificate. Debian 12's `openssl x509
-req` (OpenSSL 3.0) cannot date a certificate in the past, so the expired one is signed by
`openssl ca` with explicit `-startdate`/`-enddate` (a throw-away CA database next to the
certificates): a real expired certificate, no clock tricks (no faketime, no Python
`cryptography`, which the paho virtualenvs do not have). The server keys come in the three formats the gateway reads:
PKCS#8 (`openssl genpkey`), SEC1 (`openssl ecparam -genkey`) and PKCS#1 (`openssl genrsa
-traditional`).

Each test starts its own gateways (`conftest.start_gateway` with `--mqtts`/`--https` on port 0)
and stops them at teardown, after the clients and subprocesses it started (by PID).
"""

from __future__ import annotations

import dataclasses
import gc
import os
import pathlib
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
import warnings

import paho.mqtt.client as mqtt
import pytest

from conftest import PAHO_MAJOR, Gateway, start_gateway, stop_gateway
from support import WAIT_S, PahoClient, Process, code_of, poll, require, wait_until

#: Tools these tests run. `cargo xtask test` installs them (Debian packages openssl, mosquitto-
#: clients; stdbuf is coreutils), so under CI a missing one fails instead of skipping.
TOOLS = ["openssl", "mosquitto_pub", "mosquitto_sub", "stdbuf"]

#: mosquitto_sub's own time limit (-W), above every wait of the tests themselves.
SUB_LIMIT_S = 20
#: Bound of one openssl or mosquitto_pub run.
TOOL_TIMEOUT_S = 30

#: X.509 v3 extensions for each kind of certificate, in one file for `-extfile`.
EXTENSIONS = """\
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""

#: A minimal `openssl ca` configuration: the only way of the openssl CLI (3.0) to choose a
#: certificate's dates freely, which the expired certificate needs.
CA_CONFIG = """\
[ca]
default_ca = throwaway

[throwaway]
database = {dir}/index.txt
new_certs_dir = {dir}
serial = {dir}/serial
default_md = sha256
policy = any
unique_subject = no
copy_extensions = none

[any]
commonName = supplied
"""

#: The PEM header of each key format, to be sure a key is in the format a test claims.
KEY_HEADERS = {
    "pkcs8": "-----BEGIN PRIVATE KEY-----",
    "sec1": "-----BEGIN EC PRIVATE KEY-----",
    "pkcs1": "-----BEGIN RSA PRIVATE KEY-----",
}


def require_tools() -> None:
    """Skips the test when a tool is missing, except under CI, where that fails it."""
    missing = [tool for tool in TOOLS if not shutil.which(tool)]
    require(not missing, f"missing {', '.join(missing)} (cargo xtask test installs them as root)")


@pytest.fixture(autouse=True)
def tools_present():
    require_tools()


def openssl(*args: str, cwd: pathlib.Path | None = None) -> str:
    result = subprocess.run(["openssl", *args], capture_output=True, timeout=TOOL_TIMEOUT_S, cwd=cwd)
    if result.returncode != 0:
        pytest.fail(f"openssl {' '.join(args)} failed:\n{result.stderr.decode()}", pytrace=False)
    return result.stdout.decode()


@dataclasses.dataclass
class Issued:
    """A certificate and its key, as files."""

    cert: pathlib.Path
    key: pathlib.Path


class Authority:
    """A CA made by `openssl req -x509`, issuing certificates with `openssl x509 -req`."""

    def __init__(self, directory: pathlib.Path, name: str):
        self.directory = directory
        self.name = name
        self.extensions = directory / "extensions.cnf"
        if not self.extensions.exists():
            self.extensions.write_text(EXTENSIONS)
        self.root = self._key(f"{name}-ca", "pkcs8")
        self.cert = directory / f"{name}-ca.crt"
        openssl("req", "-x509", "-new", "-key", str(self.root), "-subj", f"/CN={name} test CA",
                "-days", "2", "-config", str(self.extensions), "-extensions", "ca",
                "-out", str(self.cert))

    def _key(self, stem: str, form: str, directory: pathlib.Path | None = None) -> pathlib.Path:
        path = (directory or self.directory) / f"{stem}.key"
        if form == "pkcs8":
            openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-out", str(path))
        elif form == "sec1":
            openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(path))
        elif form == "pkcs1":
            openssl("genrsa", "-traditional", "-out", str(path), "2048")
        else:
            raise ValueError(form)
        assert path.read_text().startswith(KEY_HEADERS[form]), f"{path} is not {form}"
        return path

    def _request(self, stem: str, common_name: str, form: str,
                 directory: pathlib.Path | None = None) -> tuple[pathlib.Path, pathlib.Path]:
        key = self._key(stem, form, directory)
        request = (directory or self.directory) / f"{stem}.csr"
        openssl("req", "-new", "-key", str(key), "-subj", f"/CN={common_name}", "-out", str(request))
        return key, request

    def issue(self, stem: str, common_name: str, kind: str, form: str = "pkcs8",
              directory: pathlib.Path | None = None) -> Issued:
        """A certificate valid now, of `kind` "server" (for 127.0.0.1 and localhost) or
        "client", with a fresh key in `form`; its files in `directory` (default: the CA's)."""
        key, request = self._request(stem, common_name, form, directory or self.directory)
        cert = (directory or self.directory) / f"{stem}.crt"
        openssl("x509", "-req", "-in", str(request), "-CA", str(self.cert), "-CAkey", str(self.root),
                "-set_serial", "0x" + secrets.token_hex(8), "-days", "2",
                "-extfile", str(self.extensions), "-extensions", kind, "-out", str(cert))
        text = openssl("x509", "-in", str(cert), "-noout", "-text")
        assert "Version: 3 (0x2)" in text, f"{cert} is not X.509 v3"
        return Issued(cert, key)

    def issue_expired(self, stem: str, common_name: str) -> Issued:
        """A client certificate valid only in January 2020, by `openssl ca`."""
        key, request = self._request(stem, common_name, "pkcs8")
        database = self.directory / f"{stem}-ca-db"
        database.mkdir()
        (database / "index.txt").write_text("")
        (database / "serial").write_text(secrets.token_hex(8) + "\n")
        config = database / "ca.cnf"
        config.write_text(CA_CONFIG.format(dir=database))
        cert = self.directory / f"{stem}.crt"
        openssl("ca", "-batch", "-config", str(config), "-cert", str(self.cert),
                "-keyfile", str(self.root), "-in", str(request), "-out", str(cert), "-notext",
                "-startdate", "20200101000000Z", "-enddate", "20200201000000Z",
                "-extfile", str(self.extensions), "-extensions", "client")
        # Expired, and otherwise sound: only its dates can be why the gateway refuses it.
        checked = subprocess.run(["openssl", "x509", "-in", str(cert), "-noout", "-checkend", "0"],
                                 capture_output=True, timeout=TOOL_TIMEOUT_S)
        assert checked.returncode == 1, f"{cert} should have expired: {checked.stdout.decode()}"
        verified = openssl("verify", "-no_check_time", "-purpose", "sslclient",
                           "-CAfile", str(self.cert), str(cert))
        assert verified.strip().endswith("OK"), verified
        return Issued(cert, key)


@dataclasses.dataclass
class Pki:
    """Everything the tests share (read-only): two CAs and their certificates."""

    directory: pathlib.Path
    ca: Authority
    server: Issued  # CN gateway, PKCS#8 key
    device: Issued  # CN device-7
    other_ca: Authority
    intruder: Issued  # CN device-7 too, but from the other CA
    expired: Issued  # CN device-7, January 2020


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    require_tools()  # before tools_present, which is function-scoped
    directory = tmp_path_factory.mktemp("pki")
    ca = Authority(directory, "main")
    other = Authority(directory, "other")
    return Pki(
        directory=directory,
        ca=ca,
        server=ca.issue("server", "gateway", "server"),
        device=ca.issue("device", "device-7", "client"),
        other_ca=other,
        intruder=other.issue("intruder", "device-7", "client"),
        expired=ca.issue_expired("expired", "device-7"),
    )


class Harness:
    """What one test started: gateways, paho clients, subprocesses. `close` stops the clients
    and processes (by PID) first, then the gateways (asserting their clean exit)."""

    def __init__(self, tmp_path: pathlib.Path):
        self.tmp_path = tmp_path
        self.gateways: list[Gateway] = []
        self.clients: list[PahoClient] = []
        self.processes: list[Process] = []

    def gateway(self, server: Issued, *flags: str, https: bool = True) -> Gateway:
        """A gateway with `--mqtts` (and `--https`) on port 0 serving `server`'s certificate."""
        listeners = ["--mqtts", "127.0.0.1:0"] + (["--https", "127.0.0.1:0"] if https else [])
        data = self.tmp_path / f"data-{len(self.gateways)}"
        running = start_gateway(data, [*listeners, "--tls-cert", str(server.cert),
                                       "--tls-key", str(server.key), *flags])
        self.gateways.append(running)
        assert running.mqtts_port is not None
        return running

    def paho(self, client_id: str, protocol: int = mqtt.MQTTv311, ca: pathlib.Path | None = None,
             identity: Issued | None = None, **kwargs) -> PahoClient:
        """A PahoClient; with `ca`, TLS through paho's own `tls_set` (and `identity` as the
        client certificate)."""
        client = PahoClient(client_id, protocol=protocol, **kwargs)
        self.clients.append(client)
        if ca is not None:
            client.client.tls_set(
                ca_certs=str(ca),
                certfile=str(identity.cert) if identity else None,
                keyfile=str(identity.key) if identity else None,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        return client

    def spawn(self, args: list[str], name: str) -> Process:
        process = Process(args, name=name)
        self.processes.append(process)
        return process

    def close(self) -> None:
        try:
            for client in self.clients:
                client.close()
            for process in self.processes:
                process.close()
        finally:
            for running in self.gateways:
                stop_gateway(running)


@pytest.fixture
def harness(tmp_path: pathlib.Path):
    started = Harness(tmp_path)
    try:
        yield started
    finally:
        started.close()


# ----- helpers ------------------------------------------------------------------------------


def mosquitto_tls(tool: str, port: int, ca: pathlib.Path | None,
                  identity: Issued | None = None, *args: str) -> list[str]:
    """A mosquitto_pub/sub command line for 127.0.0.1:`port`, with `--cafile` (TLS) and
    `--cert/--key` when given."""
    command = [tool, "-h", "127.0.0.1", "-p", str(port)]
    if ca is not None:
        command += ["--cafile", str(ca)]
    if identity is not None:
        command += ["--cert", str(identity.cert), "--key", str(identity.key)]
    return command + list(args)


def mosquitto_pub(port: int, ca: pathlib.Path | None, identity: Issued | None, *args: str):
    """Runs mosquitto_pub (with -d: its debug lines tell whether a CONNACK came); returns
    (exit code, its output)."""
    result = subprocess.run(mosquitto_tls("mosquitto_pub", port, ca, identity, "-d", *args),
                            capture_output=True, timeout=TOOL_TIMEOUT_S)
    return result.returncode, (result.stdout + result.stderr).decode("utf-8", "replace")


def mosquitto_sub(harness: Harness, port: int, ca: pathlib.Path | None, identity: Issued | None,
                  *args: str) -> Process:
    """A `mosquitto_sub -v -d` (line-buffered), once it reports its SUBACK."""
    process = harness.spawn(["stdbuf", "-oL", *mosquitto_tls(
        "mosquitto_sub", port, ca, identity, "-v", "-d", "-W", str(SUB_LIMIT_S), *args)],
        name="mosquitto_sub")
    process.wait_for_line(r"received SUBACK")
    return process


def received(process: Process) -> list[str]:
    """The `topic payload` lines a `mosquitto_sub -v -d` printed (not its debug lines)."""
    return process.matching(r"^(?!Client |Subscribed )\S+ ")


def peer(port: int, ca: pathlib.Path, alpn: list[str] | None = None) -> tuple[str, str | None]:
    """A fresh TLS connection with Python's `ssl` (verifying the chain and 127.0.0.1):
    (the server certificate's CN, the ALPN protocol chosen)."""
    context = ssl.create_default_context(cafile=str(ca))
    if alpn:
        context.set_alpn_protocols(alpn)
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            subject = dict(pair for rdn in tls.getpeercert()["subject"] for pair in rdn)
            return subject["commonName"], tls.selected_alpn_protocol()


def get_https(gateway: Gateway, path: str, ca: pathlib.Path) -> tuple[int, str]:
    context = ssl.create_default_context(cafile=str(ca))
    with urllib.request.urlopen(gateway.https_url + path, timeout=WAIT_S, context=context) as answer:
        return answer.status, answer.read().decode()


def handshake_failures(gateway: Gateway, kind: str) -> list[str]:
    """The gateway's warnings about failed TLS handshakes on its `kind` listeners."""
    return gateway.log_lines(rf"\b{kind}\b.*TLS handshake failed")


def wait_for_failures(gateway: Gateway, kind: str, count: int) -> list[str]:
    """Waits until the gateway logged `count` failed handshakes on `kind`; returns them."""

    def enough():
        lines = handshake_failures(gateway, kind)
        return lines if len(lines) >= count else None

    return wait_until(
        enough, WAIT_S,
        lambda: f"expected {count} failed {kind} handshake(s) in the log:\n{gateway.log_text()}",
    )


def connection_end(client: PahoClient, address: tuple[str, int]) -> str:
    """Connects and drives paho's loop in this thread (no network thread: paho 1.6's dies of an
    `SSLError` without calling on_disconnect) until the connection ends; returns how it ended.
    Fails the test if it is still open after WAIT_S."""
    try:
        client.client.connect(*address)
    except (ssl.SSLError, OSError) as error:
        return f"connect raised {error!r}"
    deadline = time.monotonic() + WAIT_S
    ended = None
    try:
        while time.monotonic() < deadline:
            try:
                code = client.client.loop(timeout=0.1)
            except (ssl.SSLError, OSError) as error:
                ended = f"loop raised {error!r}"
                return ended
            if code != mqtt.MQTT_ERR_SUCCESS:
                ended = f"loop returned {code}"
                return ended
    finally:
        if ended is None and client.client.is_connected():
            client.client.disconnect()
        sock = client.client.socket()
        if sock is not None:
            sock.close()
    pytest.fail(f"{client.name}: still connected after {WAIT_S} s (CONNACKs {client.connacks})",
                pytrace=False)


# ----- mosquitto_pub / mosquitto_sub ----------------------------------------------------------


@pytest.mark.parametrize("version", [pytest.param("mqttv311", id="v3.1.1"), pytest.param("5", id="v5")])
def test_mosquitto_over_mqtts_shares_one_topic_space_with_tcp(pki, harness, version):
    gateway = harness.gateway(pki.server)
    tcp = harness.paho("tcp-subscriber")
    tcp.connect(gateway.address)
    assert tcp.subscribe("tls/#", 1) == [1]
    sub = mosquitto_sub(harness, gateway.mqtts_port, pki.ca.cert, None,
                        "-V", version, "-t", "tls/#", "-q", "1", "-C", "2")

    # mosquitto_pub over TLS -> mosquitto_sub over TLS and paho over TCP.
    code, output = mosquitto_pub(gateway.mqtts_port, pki.ca.cert, None, "-V", version,
                                 "-t", "tls/from-mqtts", "-m", "sealed", "-q", "1")
    assert code == 0, output
    sub.wait_for_line(r"^tls/from-mqtts sealed$")
    assert tcp.wait_message("tls/from-mqtts").payload == b"sealed"

    # paho over TCP -> mosquitto_sub over TLS.
    tcp.publish("tls/from-tcp", b"plain", qos=1)
    sub.wait_for_line(r"^tls/from-tcp plain$")
    assert sub.wait(timeout=WAIT_S) == 0, sub.output()
    assert received(sub) == ["tls/from-mqtts sealed", "tls/from-tcp plain"]

    # The mqtts port speaks only TLS: plain MQTT gets no CONNACK there.
    code, output = mosquitto_pub(gateway.mqtts_port, None, None, "-V", version,
                                 "-t", "tls/plain-on-tls", "-m", "x")
    assert code != 0 and "received CONNACK" not in output, output
    wait_for_failures(gateway, "mqtts", 1)


def test_mosquitto_client_certificates_from_the_client_ca_only(pki, harness):
    gateway = harness.gateway(pki.server, "--tls-client-ca", str(pki.ca.cert))
    tcp = harness.paho("tcp-observer")
    tcp.connect(gateway.address)  # the TCP listener asks for no certificate
    assert tcp.subscribe("certs/#", 1) == [1]
    sub = mosquitto_sub(harness, gateway.mqtts_port, pki.ca.cert, pki.device,
                        "-t", "certs/#", "-q", "1", "-C", "2")

    code, output = mosquitto_pub(gateway.mqtts_port, pki.ca.cert, pki.device,
                                 "-t", "certs/accepted", "-m", "1", "-q", "1")
    assert code == 0 and "received CONNACK" in output, output

    refused = {
        "no client certificate": None,
        "a certificate from another CA": pki.intruder,
        "an expired certificate": pki.expired,
    }
    for index, (why, identity) in enumerate(refused.items()):
        code, output = mosquitto_pub(gateway.mqtts_port, pki.ca.cert, identity,
                                     "-t", f"certs/refused-{index}", "-m", why, "-q", "1")
        assert code != 0 and "received CONNACK" not in output, f"{why}: accepted\n{output}"
    failures = wait_for_failures(gateway, "mqtts", len(refused))
    assert any("expired" in line for line in failures), failures

    # A marker from the accepted certificate: had a refused message got through, it came first.
    code, output = mosquitto_pub(gateway.mqtts_port, pki.ca.cert, pki.device,
                                 "-t", "certs/marker", "-m", "2", "-q", "1")
    assert code == 0, output
    assert sub.wait(timeout=WAIT_S) == 0, sub.output()
    assert received(sub) == ["certs/accepted 1", "certs/marker 2"]
    tcp.wait_message("certs/marker")
    assert tcp.topics() == ["certs/accepted", "certs/marker"]


def test_a_client_trusting_another_ca_fails_its_handshake(pki, harness):
    gateway = harness.gateway(pki.server)
    # The same clients trusting the right CA get through: only the trust differs.
    code, output = mosquitto_pub(gateway.mqtts_port, pki.ca.cert, None, "-t", "trust/ok", "-m", "1")
    assert code == 0 and "received CONNACK" in output, output
    assert peer(gateway.mqtts_port, pki.ca.cert)[0] == "gateway"
    trusting = harness.paho("trusting", ca=pki.ca.cert)
    trusting.connect(gateway.mqtts_address)

    code, output = mosquitto_pub(gateway.mqtts_port, pki.other_ca.cert, None,
                                 "-t", "trust/wrong", "-m", "1")
    assert code != 0 and "received CONNACK" not in output, output
    assert "certificate verify failed" in output, output

    with pytest.raises(ssl.SSLCertVerificationError):
        peer(gateway.mqtts_port, pki.other_ca.cert)
    with pytest.raises(ssl.SSLCertVerificationError):
        peer(gateway.https_port, pki.other_ca.cert, ["http/1.1"])

    suspicious = harness.paho("suspicious", ca=pki.other_ca.cert, reconnect=False)
    with warnings.catch_warnings():
        # paho does not close the socket whose handshake failed; collect it here, quietly.
        warnings.simplefilter("ignore", ResourceWarning)
        with pytest.raises(ssl.SSLCertVerificationError):
            suspicious.connect(gateway.mqtts_address)
        gc.collect()
    assert not suspicious.connacks


# ----- paho-mqtt --------------------------------------------------------------------------


PROTOCOLS = [pytest.param(mqtt.MQTTv311, id="v3.1.1"), pytest.param(mqtt.MQTTv5, id="v5")]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_paho_tls_set_with_a_client_certificate(pki, harness, protocol):
    gateway = harness.gateway(pki.server, "--tls-client-ca", str(pki.ca.cert))
    device = harness.paho(f"paho-tls-{protocol}", protocol, ca=pki.ca.cert, identity=pki.device)
    device.connect(gateway.mqtts_address)
    assert device.client.socket().version() in ("TLSv1.2", "TLSv1.3")
    assert device.subscribe("paho/tls/#", 1) == [1]

    # From a TCP client, and from itself over TLS.
    tcp = harness.paho("paho-tcp")
    tcp.connect(gateway.address)
    tcp.publish("paho/tls/from-tcp", b"over tcp", qos=1)
    device.publish("paho/tls/from-tls", b"over tls", qos=1)
    assert device.wait_message("paho/tls/from-tcp").payload == b"over tcp"
    assert device.wait_message("paho/tls/from-tls").payload == b"over tls"
    assert device.disconnects == []

    # The same paho without its certificate gets no session: the handshake fails (TLS 1.2) or
    # the gateway's alert ends the connection before any CONNACK (TLS 1.3).
    bare = harness.paho(f"paho-bare-{protocol}", protocol, ca=pki.ca.cert, reconnect=False)
    ended = connection_end(bare, gateway.mqtts_address)
    assert bare.connacks == [], f"a CONNACK without a client certificate ({ended})"
    wait_for_failures(gateway, "mqtts", 1)


#: Grants by user name: with --tls-identity-as-username the certificate's CN (device-7) is it.
IDENTITY_ACL = """\
# anonymous clients
topic readwrite public/#

user device-7
topic readwrite devices/device-7/#
topic read public/#

user operator
topic readwrite #
"""

#: SUBACK failure codes: 0x80 in 3.1.1, 0x87 (not authorized) in 5.0.
SUBACK_REFUSED = {mqtt.MQTTv311: 0x80, mqtt.MQTTv5: 0x87}


def identity_gateway(harness: Harness, pki: Pki) -> Gateway:
    acl = harness.tmp_path / "acl"
    acl.write_text(IDENTITY_ACL)
    return harness.gateway(pki.server, "--tls-client-ca", str(pki.ca.cert),
                           "--tls-identity-as-username", "--acl-file", str(acl),
                           "--allow-anonymous")


def record_pubacks(client: PahoClient) -> dict[int, int]:
    """mid -> the PUBACK's reason code, recorded from paho 2's on_publish (paho 1.6 does not
    report it)."""
    codes: dict[int, int] = {}

    def on_publish(_client, _userdata, mid, reason_code=None, _properties=None):
        with client.cond:
            codes[mid] = code_of(reason_code) if reason_code is not None else 0
            client.cond.notify_all()

    client.client.on_publish = on_publish
    return codes


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_paho_the_certificate_cn_is_the_user_name_in_the_acl(pki, harness, protocol):
    gateway = identity_gateway(harness, pki)
    device = harness.paho(f"cn-{protocol}", protocol, ca=pki.ca.cert, identity=pki.device)
    pubacks = record_pubacks(device)
    device.connect(gateway.mqtts_address)  # no user name, no password: the certificate is all

    # device-7's grants, not anonymous ones (which hold nothing under devices/).
    assert device.subscribe("devices/device-7/#", 1) == [1]
    assert device.subscribe("public/#", 1) == [1]
    assert device.subscribe("devices/device-8/#", 1) == [SUBACK_REFUSED[protocol]]

    # An anonymous TCP client shares the topic space: device-7 reads what it writes to public/.
    anonymous = harness.paho("anonymous-tcp")
    anonymous.connect(gateway.address)
    anonymous.publish("public/news", b"hello", qos=1)
    assert device.wait_message("public/news").payload == b"hello"

    # device-7 may write under its own topic, not to public/ (read only): refused with 0x87 on
    # 5.0 (paho 2 reports it), and never delivered, which the marker after it proves.
    denied = device.publish("public/announce", b"not allowed", qos=1)
    allowed = device.publish("devices/device-7/state", b"on", qos=1)
    assert device.wait_message("devices/device-7/state").payload == b"on"
    assert "public/announce" not in device.topics()
    assert "public/announce" not in anonymous.topics()
    if protocol == mqtt.MQTTv5 and PAHO_MAJOR >= 2:
        wait_until(lambda: allowed.mid in pubacks and denied.mid in pubacks, WAIT_S,
                   lambda: f"PUBACKs {pubacks}", device.cond)
        assert pubacks[denied.mid] == 0x87, pubacks
        assert pubacks[allowed.mid] == 0, pubacks


def test_a_claimed_user_name_does_not_override_the_certificate(pki, harness):
    gateway = identity_gateway(harness, pki)
    # Over TLS with device-7's certificate, claiming to be the operator (who may write anywhere).
    claimant = harness.paho("claimant", mqtt.MQTTv5, ca=pki.ca.cert, identity=pki.device)
    claimant.client.username_pw_set("operator")
    connack = claimant.connect(gateway.mqtts_address, expect_code=None)
    if connack.reason_code == 0:
        assert claimant.subscribe("operator/#", 1) == [0x87], "the operator's grants"
        assert claimant.subscribe("devices/device-7/#", 1) == [1], "device-7's grants"
    else:
        assert connack.reason_code >= 0x80, connack  # a refusal is as safe

    # Over TCP, a name without a certificate (and no password file) is anonymous.
    impostor = harness.paho("impostor", mqtt.MQTTv5)
    impostor.client.username_pw_set("device-7")
    connack = impostor.connect(gateway.address, expect_code=None)
    if connack.reason_code == 0:
        assert impostor.subscribe("devices/device-7/#", 1) == [0x87], "device-7's grants"
        assert impostor.subscribe("public/#", 1) == [1], "anonymous grants"
    else:
        assert connack.reason_code >= 0x80, connack


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_paho_over_wss_with_a_client_certificate(pki, harness, protocol):
    gateway = identity_gateway(harness, pki)
    device = harness.paho(f"wss-{protocol}", protocol, ca=pki.ca.cert, identity=pki.device,
                          transport="websockets")
    device.client.ws_set_options(path="/mqtt")
    device.connect(("127.0.0.1", gateway.https_port))
    # The CN reached the WebSocket's MQTT session through the HTTPS listener.
    assert device.subscribe("devices/device-7/#", 1) == [1]
    assert device.subscribe("public/#", 1) == [1]
    subprocess.run(mosquitto_tls("mosquitto_pub", gateway.mqtt_port, None, None,
                                 "-t", "public/wss", "-m", "to the browser side", "-q", "1"),
                   check=True, capture_output=True, timeout=TOOL_TIMEOUT_S)
    assert device.wait_message("public/wss").payload == b"to the browser side"


# ----- reloading the certificate on SIGHUP ----------------------------------------------------


def replace(target: Issued, source: Issued) -> None:
    """Puts `source`'s files in place of `target`'s, each by an atomic rename."""
    for old, new in ((target.cert, source.cert), (target.key, source.key)):
        staged = old.with_suffix(old.suffix + ".new")
        shutil.copyfile(new, staged)
        os.replace(staged, old)


def test_sighup_serves_a_new_certificate_while_connected_clients_carry_on(pki, harness):
    # The files the gateway reads: first CN gateway-one with a SEC1 key, then CN gateway-two
    # with an RSA PKCS#1 key, both from the same CA.
    live = pki.ca.issue("live", "gateway-one", "server", "sec1", harness.tmp_path)
    renewed = pki.ca.issue("renewed", "gateway-two", "server", "pkcs1", harness.tmp_path)
    gateway = harness.gateway(live)
    assert peer(gateway.mqtts_port, pki.ca.cert) == ("gateway-one", None)
    assert peer(gateway.https_port, pki.ca.cert, ["http/1.1"]) == ("gateway-one", "http/1.1")

    early = harness.paho("early", ca=pki.ca.cert)
    early.connect(gateway.mqtts_address)
    assert early.subscribe("reload/#", 1) == [1]
    early.publish("reload/before", b"0", qos=1)
    early.wait_message("reload/before")

    replace(live, renewed)
    gateway.process.send_signal(signal.SIGHUP)
    seen = poll(lambda: peer(gateway.mqtts_port, pki.ca.cert)[0] == "gateway-two", WAIT_S)
    assert seen, f"still {peer(gateway.mqtts_port, pki.ca.cert)} after SIGHUP\n{gateway.log_text()}"
    assert peer(gateway.https_port, pki.ca.cert, ["http/1.1"]) == ("gateway-two", "http/1.1")
    assert get_https(gateway, "/healthz", pki.ca.cert)[0] == 200

    # The client connected before keeps its session: it publishes and receives, from itself and
    # from a new TLS connection, and it was never disconnected (nor reconnected by paho).
    early.publish("reload/after", b"1", qos=1)
    assert early.wait_message("reload/after").payload == b"1"
    code, output = mosquitto_pub(gateway.mqtts_port, pki.ca.cert, None,
                                 "-t", "reload/from-new", "-m", "2", "-q", "1")
    assert code == 0, output
    assert early.wait_message("reload/from-new").payload == b"2"
    late = harness.paho("late", ca=pki.ca.cert)
    late.connect(gateway.mqtts_address)
    late.publish("reload/late", b"3", qos=1)
    assert early.wait_message("reload/late").payload == b"3"
    assert early.disconnects == [] and len(early.connacks) == 1
    assert gateway.process.poll() is None


def test_sighup_with_broken_files_keeps_the_certificate_in_force(pki, harness):
    live = pki.ca.issue("kept", "gateway-kept", "server", directory=harness.tmp_path)
    stranger = pki.ca.issue("stranger", "stranger", "server", directory=harness.tmp_path)
    gateway = harness.gateway(live)
    early = harness.paho("early", ca=pki.ca.cert)
    early.connect(gateway.mqtts_address)
    assert early.subscribe("kept/#", 1) == [1]

    broken = {
        "a key that does not match the certificate": stranger.key.read_text(),
        "a key file that is no PEM at all": "this is not a private key\n",
    }
    for index, (why, text) in enumerate(broken.items(), start=1):
        live.key.write_text(text)
        gateway.process.send_signal(signal.SIGHUP)
        # One warning per failed reload (its wording is the gateway's business).
        wait_until(lambda: len(gateway.log_lines(r"WARN.*reload")) >= index, WAIT_S,
                   lambda: f"{why}: no warning after SIGHUP\n{gateway.log_text()}")
        assert gateway.process.poll() is None, f"{why}: the gateway exited\n{gateway.log_text()}"
        assert peer(gateway.mqtts_port, pki.ca.cert) == ("gateway-kept", None), why
        assert peer(gateway.https_port, pki.ca.cert, ["http/1.1"]) == ("gateway-kept", "http/1.1"), why
        code, output = mosquitto_pub(gateway.mqtts_port, pki.ca.cert, None,
                                     "-t", f"kept/{index}", "-m", why, "-q", "1")
        assert code == 0, f"{why}: {output}"
        assert early.wait_message(f"kept/{index}").payload == why.encode()
    key_material = [line for line in stranger.key.read_text().splitlines() if "-----" not in line]
    for line in key_material:
        assert line not in gateway.log_text(), "the key's content stays out of the log"
    assert early.disconnects == [] and len(early.connacks) == 1
