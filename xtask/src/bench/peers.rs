//! The peer brokers of `cargo xtask bench --peers`: rumqttd and mqttv5-cli's broker, two MQTT
//! brokers written in Rust, measured beside the gateway and Mosquitto under the same load.
//!
//! Each is installed from crates.io at a pinned version into `target/peers` (`cargo install
//! --root target/peers CRATE --version V`, never onto the user's PATH), when its binary or that
//! version is missing there. Not `--locked`: the lockfiles the two crates shipped no longer
//! build (rumqttd 0.20.0's pins metrics 0.22.1, which today's compiler rejects; mqttv5-cli
//! 0.29.10's pins webpki-roots 1.0.11, which the index no longer offers), so cargo resolves
//! their dependencies afresh within the crates' own version requirements.
//!
//! Each runs on its own free loopback ports, configured as Mosquitto is
//! ([`super::brokers::MOSQUITTO_CONF`]) as far as it can be:
//! - rumqttd ([`RUMQTTD_CONF`], TOML, `rumqttd --config FILE`): an MQTT 3.1.1 listener and a
//!   WebSocket one (3.1.1 over WebSocket at any path; the bench uses `/mqtt`). It has no
//!   persistence, no ACL file and no `$SYS` topics, and no TCP_NODELAY setting (its sockets
//!   keep Nagle's algorithm on). Its queues are its commit log: up to `max_segment_count`
//!   segments of `max_segment_size` bytes per topic filter (1 GiB), more than any row sends,
//!   so no subscriber falls off its end. `max_inflight_count 256` as Mosquitto's
//!   `max_inflight_messages`, although rumqttd caps its outgoing QoS 1 window at 100 in code.
//!   No connection delay (its default is 1 ms between accepts; at 0 its accept loop still
//!   sleeps, which tokio's 1 ms timer tick rounds up: about 1,000 connections a second), no
//!   console or Prometheus listener (they would take fixed ports).
//! - mqttv5 ([`mqttv5_config`], JSON, `mqttv5 broker --config FILE`): its own example
//!   configuration (`mqttv5 broker generate-config`) with the listeners replaced by the run's
//!   (TCP, WebSocket at `/mqtt`, TLS for the TLS rows), storage in memory without persistence,
//!   per-client queues and channels of 1,000,000,000 messages (unlimited in effect: a full
//!   channel drops QoS 0 messages), 256 messages in flight per client, up to 100,000 clients.
//!   It sets TCP_NODELAY on every accepted socket itself.
//!
//! Neither peer is set up with the ACL rows' ACL (rumqttd has no ACL file; mqttv5's has another
//! syntax, which the bench does not translate): their cells say so. In the durability rows
//! rumqttd has nothing to measure (it keeps nothing); mqttv5 runs the persistent-session fan-in
//! with its file store (`storage_config.backend "File"`, persistence on, a fresh directory), but
//! not the large-state rows, which count retained messages through Mosquitto's `$SYS` topic
//! (mqttv5 publishes `$SYS/broker/retained/count` instead).

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::brokers::{
    Broker, Extras, TlsListener, start_gateway, start_gateway_with, start_mosquitto,
    start_mosquitto_with,
};
use crate::process;

/// A peer broker.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Peer {
    Rumqttd,
    Mqttv5,
}

/// rumqttd's configuration; `{port}`, `{ws_port}` are the run's, `{tls}` empty or
/// [`RUMQTTD_TLS_CONF`].
pub const RUMQTTD_CONF: &str = "\
id = 0

[router]
id = 0
max_connections = 100000
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10

[v4.1]
name = \"v4-1\"
listen = \"127.0.0.1:{port}\"
next_connection_delay_ms = 0
    [v4.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 2097152
    max_inflight_count = 256
    dynamic_filters = true

[ws.1]
name = \"ws-1\"
listen = \"127.0.0.1:{ws_port}\"
next_connection_delay_ms = 0
    [ws.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 2097152
    max_inflight_count = 256
    dynamic_filters = true
{tls}";

/// Appended to [`RUMQTTD_CONF`] for the TLS rows: a second MQTT 3.1.1 listener, over TLS
/// (rustls) with the run's certificate and key, no client certificates.
pub const RUMQTTD_TLS_CONF: &str = "
[v4.2]
name = \"v4-2\"
listen = \"127.0.0.1:{tls_port}\"
next_connection_delay_ms = 0
    [v4.2.tls]
    certpath = \"{certificate}\"
    keypath = \"{key}\"
    [v4.2.connections]
    connection_timeout_ms = 60000
    max_payload_size = 2097152
    max_inflight_count = 256
    dynamic_filters = true
";

/// What mqttv5's configuration changes in its example one (`mqttv5 broker generate-config`);
/// the listeners are the run's.
const MQTTV5_SETTINGS: &str = r#"{
  "max_clients": 100000,
  "client_channel_capacity": 1000000000,
  "max_outbound_inflight": 256,
  "quic_config": null,
  "websocket_tls_config": null,
  "tls_config": null,
  "storage_config": {
    "backend": "Memory",
    "enable_persistence": false,
    "max_queued_messages_per_client": 1000000000,
    "max_queued_bytes_per_client": 1099511627776
  }
}"#;

impl Peer {
    pub const ALL: [Peer; 2] = [Peer::Rumqttd, Peer::Mqttv5];

    /// Its name in the table, latest.json and [`Broker::name`].
    pub fn name(self) -> &'static str {
        match self {
            Peer::Rumqttd => "rumqttd",
            Peer::Mqttv5 => "mqttv5",
        }
    }

    /// The crate it is installed from and its pinned version.
    pub fn krate(self) -> (&'static str, &'static str) {
        match self {
            Peer::Rumqttd => ("rumqttd", "0.20.0"),
            Peer::Mqttv5 => ("mqttv5-cli", "0.29.10"),
        }
    }

    /// Its binary under [`install_root`].
    pub fn binary(self) -> PathBuf {
        install_root().join("bin").join(match self {
            Peer::Rumqttd => "rumqttd",
            Peer::Mqttv5 => "mqttv5",
        })
    }

    /// Why it cannot serve a row whose brokers load `extras`, or `None` when it can.
    pub fn cannot_serve(self, extras: &Extras) -> Option<&'static str> {
        match self {
            Peer::Rumqttd if extras.acl.is_some() => Some("no ACL file"),
            Peer::Rumqttd if extras.durable.is_some() => Some("no persistence"),
            Peer::Mqttv5 if extras.acl.is_some() => Some("ACL not set up"),
            _ => None,
        }
    }
}

/// A broker of a row: the gateway, Mosquitto or a peer. A row's brokers are
/// [`contenders`]'s, in that order, which is the order of its cells.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Contender {
    Gateway,
    Mosquitto,
    Peer(Peer),
}

impl Contender {
    pub fn name(self) -> &'static str {
        match self {
            Contender::Gateway => "gateway",
            Contender::Mosquitto => "mosquitto",
            Contender::Peer(peer) => peer.name(),
        }
    }

    /// Starts it fresh with the plain configuration (TCP and WebSocket) under its own name,
    /// as [`start_gateway`] and [`start_mosquitto`] do; see [`Contender::start`].
    pub fn start_plain(self, dir: &Path) -> Result<Result<Broker, String>> {
        match self {
            Contender::Gateway => Ok(Ok(start_gateway(dir)?)),
            Contender::Mosquitto => Ok(Ok(start_mosquitto(dir)?)),
            Contender::Peer(_) => self.start(dir, "", Extras::default()),
        }
    }

    /// Starts it as `{name}{suffix}` with `extras`. `Ok(Err(why))` for a peer that cannot
    /// serve `extras` or failed to start (its error printed): its cells say why. The gateway
    /// or Mosquitto failing to start fails the benchmark, as it always did.
    pub fn start(self, dir: &Path, suffix: &str, extras: Extras) -> Result<Result<Broker, String>> {
        let name = format!("{}{suffix}", self.name());
        match self {
            Contender::Gateway => Ok(Ok(start_gateway_with(dir, &name, extras)?)),
            Contender::Mosquitto => Ok(Ok(start_mosquitto_with(dir, &name, extras)?)),
            Contender::Peer(peer) => {
                if let Some(why) = peer.cannot_serve(&extras) {
                    return Ok(Err(why.to_string()));
                }
                Ok(start_peer(dir, peer, &name, extras).map_err(|error| {
                    println!("  note: {name} did not start: {error:#}");
                    "failed to start".to_string()
                }))
            }
        }
    }
}

/// The brokers of a row: the gateway, Mosquitto, then `peers`.
pub fn contenders(peers: &[Peer]) -> Vec<Contender> {
    [Contender::Gateway, Contender::Mosquitto]
        .into_iter()
        .chain(peers.iter().map(|&peer| Contender::Peer(peer)))
        .collect()
}

/// What a cell says when `broker` failed a run with `error` (printed in full here): `crashed`
/// when the process is gone, else the gist of the load generator's last line (lost messages,
/// a refusal, a disconnection, a timeout), else `failed`.
pub fn failure(broker: &mut Broker, what: &str, error: &anyhow::Error) -> String {
    println!("  note: {} failed {what}: {error:#}", broker.name);
    if let Ok(Some(status)) = broker.child.try_wait() {
        return format!("crashed ({status})");
    }
    gist(&format!("{error:#}")).to_string()
}

/// A few words for a cell from a failed run's error text.
fn gist(error: &str) -> &'static str {
    let error = error.to_lowercase();
    [
        ("messages lost", "lost messages"),
        ("refused", "refused"),
        ("disconnected", "disconnected"),
        ("closed", "disconnected"),
        ("connection reset", "connection reset"),
        ("gave up", "timed out"),
        ("timed out", "timed out"),
        ("deadline", "timed out"),
    ]
    .into_iter()
    .find(|(needle, _)| error.contains(needle))
    .map_or("failed", |(_, gist)| gist)
}

/// Where the peers are installed: `target/peers`.
pub fn install_root() -> PathBuf {
    process::target_dir().join("peers")
}

/// Whether `target/peers` holds `peer` at its pinned version, as cargo records it.
fn installed(peer: Peer) -> bool {
    let (krate, version) = peer.krate();
    let record = std::fs::read_to_string(install_root().join(".crates.toml")).unwrap_or_default();
    peer.binary().exists() && record.contains(&format!("\"{krate} {version} (registry+"))
}

/// Installs each of `peers` that `target/peers` lacks at its pinned version.
pub fn ensure_installed(peers: &[Peer]) -> Result<()> {
    for &peer in peers {
        if installed(peer) {
            continue;
        }
        let (krate, version) = peer.krate();
        println!(
            "installing {krate} {version} into {}",
            install_root().display()
        );
        process::run(
            process::cargo()
                .args(["install", "--root"])
                .arg(install_root())
                .args([krate, "--version", version]),
        )?;
    }
    Ok(())
}

/// Starts `peer` as `name` (its configuration `dir/{name}.toml` or `.json`) with `extras`,
/// which it must be able to serve ([`Peer::cannot_serve`]). Ready once every port accepts
/// connections; killed when the [`Broker`] is dropped.
pub fn start_peer(dir: &Path, peer: Peer, name: &str, extras: Extras) -> Result<Broker> {
    if let Some(why) = peer.cannot_serve(&extras) {
        bail!("{} cannot serve this row: {why}", peer.name());
    }
    let port = process::free_port()?;
    let ws_port = process::free_port()?;
    let tls = match extras.tls {
        Some(pki) => Some(TlsListener {
            port: process::free_port()?,
            ca: pki.ca.clone(),
        }),
        None => None,
    };
    let tls_port = tls.as_ref().map(|tls| tls.port);
    let certificate = extras.tls.map(|pki| (&pki.certificate, &pki.key));
    let child = match peer {
        Peer::Rumqttd => {
            let mut tls_text = String::new();
            if let (Some(tls_port), Some((certificate, key))) = (tls_port, certificate) {
                tls_text = RUMQTTD_TLS_CONF
                    .replace("{tls_port}", &tls_port.to_string())
                    .replace("{certificate}", &certificate.to_string_lossy())
                    .replace("{key}", &key.to_string_lossy());
            }
            let text = RUMQTTD_CONF
                .replace("{port}", &port.to_string())
                .replace("{ws_port}", &ws_port.to_string())
                .replace("{tls}", &tls_text);
            // rumqttd's config crate picks the format by the file's extension.
            let conf = dir.join(format!("{name}.toml"));
            std::fs::write(&conf, text)?;
            spawn(peer, &dir.join(format!("{name}.log")), |command| {
                command.arg("--quiet").arg("--config").arg(&conf);
            })?
        }
        Peer::Mqttv5 => {
            let example = example_mqttv5_config()?;
            let listeners = Listeners {
                port,
                ws_port,
                tls: tls_port.zip(certificate),
            };
            let conf = dir.join(format!("{name}.json"));
            let mut config = mqttv5_config(example, &listeners)?;
            if extras.durable.is_some() {
                // Its file store, fresh: sessions, their queued messages and the retained ones.
                let storage = dir.join(format!("{name}-storage"));
                let _ = std::fs::remove_dir_all(&storage);
                std::fs::create_dir_all(&storage)?;
                config["storage_config"]["backend"] = json!("File");
                config["storage_config"]["base_dir"] = json!(storage);
                config["storage_config"]["enable_persistence"] = json!(true);
            }
            if let Some(seconds) = extras.sys_interval {
                config["sys_topics_interval"] = json!(format!("{seconds}s"));
            }
            std::fs::write(&conf, serde_json::to_string_pretty(&config)?)?;
            spawn(peer, &dir.join(format!("{name}.log")), |command| {
                command.args(["broker", "--config"]).arg(&conf);
            })?
        }
    };
    let broker = Broker {
        name: peer.name(),
        child,
        port,
        ws_port,
        tls,
    };
    for port in [port, ws_port].into_iter().chain(tls_port) {
        process::wait_for_port(port)
            .with_context(|| format!("starting {name} (its output: {name}.log)"))?;
    }
    Ok(broker)
}

/// `peer`'s binary with the arguments `configure` adds, its output (warnings and errors: a
/// configuration it refuses, say) to `log`; returns at once.
fn spawn(
    peer: Peer,
    log: &Path,
    configure: impl FnOnce(&mut std::process::Command),
) -> Result<Child> {
    let mut command = process::command(peer.binary());
    configure(&mut command);
    let output =
        std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    command
        .stdout(output.try_clone()?)
        .stderr(output)
        .spawn()
        .with_context(|| format!("starting {}", peer.binary().display()))
}

/// mqttv5's own example configuration, as JSON.
fn example_mqttv5_config() -> Result<Value> {
    let binary = Peer::Mqttv5.binary();
    let output = process::command(&binary)
        .args(["broker", "generate-config", "--format", "json"])
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", binary.display()))?;
    if !output.status.success() {
        bail!("`{} broker generate-config` failed", binary.display());
    }
    serde_json::from_slice(&output.stdout).context("mqttv5's example configuration is not JSON")
}

/// The run's listeners for a peer.
struct Listeners<'a> {
    port: u16,
    ws_port: u16,
    /// The TLS port, certificate and key.
    tls: Option<(u16, (&'a PathBuf, &'a PathBuf))>,
}

/// mqttv5's configuration: `example` with [`MQTTV5_SETTINGS`] and the run's listeners.
fn mqttv5_config(mut example: Value, listeners: &Listeners) -> Result<Value> {
    let settings: Value = serde_json::from_str(MQTTV5_SETTINGS)?;
    merge(&mut example, &settings);
    example["bind_addresses"] = json!([format!("127.0.0.1:{}", listeners.port)]);
    let websocket = example
        .get_mut("websocket_config")
        .filter(|config| config.is_object())
        .context("mqttv5's example configuration has no websocket_config")?;
    websocket["bind_addresses"] = json!([format!("127.0.0.1:{}", listeners.ws_port)]);
    websocket["path"] = json!("/mqtt");
    if let Some((port, (certificate, key))) = listeners.tls {
        example["tls_config"] = json!({
            "cert_file": certificate,
            "key_file": key,
            "ca_file": null,
            "require_client_cert": false,
            "bind_addresses": [format!("127.0.0.1:{port}")],
        });
    }
    Ok(example)
}

/// Writes `patch`'s fields into `base`, objects field by field.
fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(base), Value::Object(patch)) => {
            for (key, value) in patch {
                match base.get_mut(key) {
                    Some(existing) if existing.is_object() && value.is_object() => {
                        merge(existing, value)
                    }
                    _ => {
                        base.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (base, patch) => *base = patch.clone(),
    }
}

/// How the peers are installed and configured, for latest.json.
pub fn report(peers: &[Peer]) -> Value {
    let mut report = json!({});
    for &peer in peers {
        let (krate, version) = peer.krate();
        let config = match peer {
            Peer::Rumqttd => json!({
                "file": RUMQTTD_CONF,
                "tls": RUMQTTD_TLS_CONF,
            }),
            Peer::Mqttv5 => json!({
                "changes_to_example": serde_json::from_str::<Value>(MQTTV5_SETTINGS)
                    .unwrap_or(Value::Null),
                "listeners": "bind_addresses, websocket_config (path /mqtt) and, for TLS, \
                              tls_config: the run's loopback ports",
            }),
        };
        report[peer.name()] = json!({
            "crate": krate,
            "version": version,
            "binary": peer.binary(),
            "config": config,
        });
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The settings merge into an example field by field, keeping what they do not name.
    #[test]
    fn mqttv5_settings_merge_into_the_example() {
        let example = json!({
            "max_clients": 10000,
            "websocket_config": { "bind_addresses": ["0.0.0.0:8080"], "path": "/ws" },
            "storage_config": { "backend": "file", "base_dir": "./mqtt_storage",
                                "cleanup_interval": "1h" },
            "quic_config": { "cert_file": "/path/to/server.crt" },
            "tls_config": { "cert_file": "/path/to/server.crt" },
        });
        let certificate = PathBuf::from("/run/server.pem");
        let key = PathBuf::from("/run/server.key");
        let listeners = Listeners {
            port: 1000,
            ws_port: 1001,
            tls: Some((1002, (&certificate, &key))),
        };
        let config = mqttv5_config(example, &listeners).unwrap();
        assert_eq!(config["max_clients"], 100000);
        assert_eq!(config["bind_addresses"], json!(["127.0.0.1:1000"]));
        assert_eq!(
            config["websocket_config"],
            json!({ "bind_addresses": ["127.0.0.1:1001"], "path": "/mqtt" })
        );
        assert_eq!(config["storage_config"]["backend"], "Memory");
        assert_eq!(config["storage_config"]["enable_persistence"], false);
        assert_eq!(config["storage_config"]["cleanup_interval"], "1h");
        assert_eq!(config["quic_config"], Value::Null);
        assert_eq!(
            config["tls_config"]["bind_addresses"],
            json!(["127.0.0.1:1002"])
        );
        assert_eq!(config["tls_config"]["key_file"], "/run/server.key");
        let plain = Listeners {
            tls: None,
            ..listeners
        };
        let config = mqttv5_config(json!({ "websocket_config": {} }), &plain).unwrap();
        assert_eq!(config["tls_config"], Value::Null);
        assert!(mqttv5_config(json!({}), &plain).is_err());
    }

    #[test]
    fn a_failure_reads_as_a_few_words() {
        assert_eq!(
            gist("`mqtt-bench fanin` failed (exit status: 1): Error: 3 of 40 messages lost"),
            "lost messages"
        );
        assert_eq!(gist("x: Error: gave up after 76 s"), "timed out");
        assert_eq!(
            gist("Error: bench-pub-0: connection refused: ConnAck"),
            "refused"
        );
        assert_eq!(
            gist("Error: WebSocket protocol error: Connection reset without closing handshake"),
            "connection reset"
        );
        assert_eq!(gist("something else"), "failed");
    }

    /// Every placeholder of rumqttd's configuration is filled.
    #[test]
    fn rumqttd_placeholders() {
        for text in [RUMQTTD_CONF, RUMQTTD_TLS_CONF] {
            let filled = text
                .replace("{port}", "1")
                .replace("{ws_port}", "2")
                .replace("{tls_port}", "3")
                .replace("{certificate}", "c")
                .replace("{key}", "k")
                .replace("{tls}", "");
            assert!(!filled.contains('{'), "{filled}");
        }
    }
}
