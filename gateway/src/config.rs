//! Gateway settings from command-line flags and an optional TOML file (`--config`).
//!
//! Every flag has the same name as a key in the file (kebab-case); a flag given on the command
//! line wins over the file, and the file wins over the defaults, which need no file at all.

use crate::security::SecurityConfig;
use crate::security::lockout::LockoutPolicy;
use crate::security::tls::TlsSettings;
use broker_core::BrokerConfig;
use clap::Parser;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

/// The gateway's settings after flags, file and defaults are merged.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// MQTT over TCP listeners.
    pub tcp: Vec<SocketAddr>,
    /// HTTP listeners (dashboard, WebSocket, metrics, API).
    pub http: Vec<SocketAddr>,
    /// Directory of the embedded store.
    pub data_dir: PathBuf,
    /// Broker limits and capabilities.
    pub broker: BrokerConfig,
    /// Open connections allowed at once.
    pub max_connections: usize,
    /// Time allowed between accepting a connection and receiving its CONNECT (on TLS
    /// listeners, for the handshake and then again for the CONNECT).
    pub connect_timeout: Duration,
    /// Bytes waiting for one connection's socket beyond which QoS 0 messages to it are
    /// dropped (and a peer that stopped reading altogether is closed).
    pub outbox_limit: usize,
    /// Bytes waiting for one connection's socket beyond which the publishers sending to it
    /// are slowed down.
    pub outbox_soft_limit: usize,
    /// Web origins allowed to open a WebSocket besides the gateway's own and localhost ones.
    pub allowed_origins: Vec<String>,
    /// Whether acknowledgements wait for the store (see [`Durability`]).
    pub durability: Durability,
    /// With relaxed durability, the longest a change waits before it is written.
    pub autosave_interval: Duration,
    /// MQTT over TLS listeners.
    pub mqtts: Vec<SocketAddr>,
    /// HTTPS listeners (the HTTP surface over TLS, WSS at `/mqtt`).
    pub https: Vec<SocketAddr>,
    /// The TLS certificate, key and client CA, required by `mqtts` and `https`.
    pub tls: Option<TlsSettings>,
    /// Open connections allowed at once from one IP address; `None`: as many as in all (one
    /// address may be a NAT in front of a whole fleet).
    pub max_connections_per_ip: Option<usize>,
    /// Bytes per second read from one connection at most; `None`: no bound. A client that sends
    /// faster is read more slowly (never disconnected for it).
    pub max_inbound_rate: Option<u64>,
    /// Authentication and authorization.
    pub security: SecurityConfig,
    /// The cluster link over NATS; None for a single node (the default).
    pub cluster: Option<ClusterConfig>,
}

/// How this node joins a cluster (see the README's "Running a cluster").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    /// NATS server URLs (`nats://host:port`, `tls://host:port`; user and password, or a token,
    /// in the URL as NATS clients take them); the client tries them all.
    pub servers: Vec<String>,
    /// This node's name, unique in the cluster: it marks the messages this node forwards.
    pub node_name: String,
    /// A NATS credentials file (JWT and NKey seed), if the servers ask for one.
    pub credentials: Option<PathBuf>,
    /// PEM root certificates the servers' TLS certificates are checked against, besides the
    /// system's.
    pub ca: Option<PathBuf>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            tcp: vec![SocketAddr::from(([127, 0, 0, 1], 1883))],
            http: vec![SocketAddr::from(([127, 0, 0, 1], 8080))],
            data_dir: PathBuf::from("./data"),
            broker: BrokerConfig::default(),
            max_connections: 100_000,
            connect_timeout: Duration::from_secs(10),
            outbox_limit: 64 * 1024 * 1024,
            outbox_soft_limit: 1024 * 1024,
            allowed_origins: Vec::new(),
            durability: Durability::Full,
            autosave_interval: Duration::from_secs(5),
            mqtts: Vec::new(),
            https: Vec::new(),
            tls: None,
            max_connections_per_ip: None,
            max_inbound_rate: None,
            security: SecurityConfig::default(),
            cluster: None,
        }
    }
}

/// What a PUBACK, PUBREC or SUBACK promises about the store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Durability {
    /// The acknowledgement of a message that reached a persistent session or the retained set
    /// (or of a persistent session's subscription) is sent once it is on disk: a crash right
    /// after loses nothing acknowledged. Writes are grouped, so this costs latency, not
    /// throughput.
    #[default]
    Full,
    /// Acknowledgements go out at once and the store writes every `--autosave-interval`: a
    /// crash loses up to that much.
    Relaxed,
}

/// Command-line interface of the `gateway` binary.
#[derive(Debug, Parser)]
#[command(
    name = "gateway",
    version,
    about = "MQTT gateway: broker over TCP and WebSocket with a live dashboard",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// A command other than running the gateway.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// TOML file with any of the settings below (flags win over the file).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Every other setting.
    #[command(flatten)]
    pub settings: Settings,
}

/// Commands besides running the gateway.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Adds a user to a password file or changes their password (read from the terminal
    /// without echo, twice, or from the first line of standard input when it is not a
    /// terminal); with --delete, removes the user. The file is written atomically, mode 0600.
    Passwd {
        /// Remove the user instead.
        #[arg(long)]
        delete: bool,
        /// The password file (created if missing).
        file: PathBuf,
        /// The user name.
        user: String,
    },
}

/// Settings that can come from flags or from the TOML file.
#[derive(Debug, Default, Deserialize, clap::Args)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    /// MQTT over TCP listener address (repeatable) [default: 127.0.0.1:1883].
    #[arg(long = "tcp", value_name = "ADDR")]
    #[serde(default)]
    pub tcp: Vec<SocketAddr>,
    /// HTTP listener address (repeatable) [default: 127.0.0.1:8080].
    #[arg(long = "http", value_name = "ADDR")]
    #[serde(default)]
    pub http: Vec<SocketAddr>,
    /// Web origin (scheme://host[:port]) whose pages may open a WebSocket, besides the
    /// gateway's own origin and localhost ones (repeatable; `*` allows any).
    #[arg(long = "allowed-origin", value_name = "ORIGIN")]
    #[serde(default)]
    pub allowed_origin: Vec<String>,
    /// Directory of the embedded store [default: ./data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// NATS server of the cluster this node joins, `nats://HOST:PORT` (repeatable, for seeds;
    /// `tls://` for TLS; credentials in the URL as NATS clients take them) [default: none, a
    /// single node].
    #[arg(long = "cluster", value_name = "URL")]
    #[serde(default)]
    pub cluster: Vec<String>,
    /// This node's name in the cluster, unique among its nodes [default: node-<random>].
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,
    /// NATS credentials file (.creds) for the cluster's servers.
    #[arg(long, value_name = "FILE")]
    pub cluster_creds: Option<PathBuf>,
    /// PEM root certificates for the cluster servers' TLS, besides the system's.
    #[arg(long, value_name = "FILE")]
    pub cluster_ca: Option<PathBuf>,
    /// Open connections allowed at once [default: 100000].
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Seconds allowed between accepting a connection and its CONNECT; over TLS, the handshake
    /// gets as long again before that [default: 10].
    #[arg(long, value_name = "SECONDS")]
    pub connect_timeout: Option<u64>,
    /// Largest packet accepted, bytes [default: 16777216].
    #[arg(long, value_name = "BYTES")]
    pub max_packet_size: Option<u32>,
    /// QoS 1/2 messages a client may have unacknowledged towards the broker [default: 1024].
    #[arg(long, value_name = "N")]
    pub receive_maximum: Option<u16>,
    /// QoS 1/2 messages in flight towards one client [default: 256].
    #[arg(long, value_name = "N")]
    pub max_inflight: Option<u16>,
    /// Messages queued per session beyond the in-flight window [default: 10000].
    #[arg(long, value_name = "N")]
    pub max_queued_messages: Option<usize>,
    /// Payload bytes queued per session [default: 67108864].
    #[arg(long, value_name = "BYTES")]
    pub max_queued_bytes: Option<usize>,
    /// Overrides clients' keep alive, seconds (sent to 5.0 clients as Server Keep Alive).
    #[arg(long, value_name = "SECONDS")]
    pub server_keep_alive: Option<u16>,
    /// Longest keep alive granted, seconds: a 5.0 client asking for more, or for none, is told
    /// this one (Server Keep Alive); a 3.1.1 one is refused; 0: no cap [default: 0].
    #[arg(long, value_name = "SECONDS")]
    pub max_keep_alive: Option<u16>,
    /// Longest client identifier accepted, bytes (at least 23) [default: 256].
    #[arg(long, value_name = "BYTES")]
    pub max_client_id_len: Option<usize>,
    /// Subscriptions one client may hold; more are refused in the SUBACK [default: 1000].
    #[arg(long, value_name = "N")]
    pub max_subscriptions_per_client: Option<usize>,
    /// Longest topic name or filter accepted, bytes [default: 4096].
    #[arg(long, value_name = "BYTES")]
    pub max_topic_length: Option<usize>,
    /// Most levels in a topic name or filter [default: 128].
    #[arg(long, value_name = "N")]
    pub max_topic_levels: Option<usize>,
    /// Most User Properties in one packet [default: 32].
    #[arg(long, value_name = "N")]
    pub max_user_properties: Option<usize>,
    /// Most bytes of User Property names and values in one packet [default: 8192].
    #[arg(long, value_name = "BYTES")]
    pub max_user_properties_bytes: Option<usize>,
    /// Bytes per second read from one connection; a client sending faster is slowed down, not
    /// disconnected; 0: no bound [default: 0].
    #[arg(long, value_name = "BYTES_PER_SEC")]
    pub max_inbound_rate: Option<u64>,
    /// Seconds between `$SYS/broker/...` updates; 0 turns them off [default: 10].
    #[arg(long, value_name = "SECONDS")]
    pub sys_interval: Option<u64>,
    /// Whether PUBACK, PUBREC and SUBACK wait until what they promise is on disk (full), or
    /// the store writes every --autosave-interval and a crash may lose that much (relaxed)
    /// [default: full].
    #[arg(long, value_name = "MODE")]
    pub durability: Option<Durability>,
    /// With --durability relaxed, seconds between writes to the store [default: 5].
    #[arg(long, value_name = "SECONDS")]
    pub autosave_interval: Option<u64>,
    /// MQTT over TLS listener address (repeatable; 8883 is the usual port). Needs --tls-cert
    /// and --tls-key.
    #[arg(long = "mqtts", value_name = "ADDR")]
    #[serde(default)]
    pub mqtts: Vec<SocketAddr>,
    /// HTTPS listener address (repeatable): the HTTP surface over TLS, WSS at /mqtt. Needs
    /// --tls-cert and --tls-key.
    #[arg(long = "https", value_name = "ADDR")]
    #[serde(default)]
    pub https: Vec<SocketAddr>,
    /// The server's certificate chain, PEM, leaf first (reloaded on SIGHUP).
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The server's private key, PEM: PKCS#8, PKCS#1 or SEC1 (reloaded on SIGHUP).
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM) on the TLS listeners.
    #[arg(long, value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// A client certificate's Common Name becomes the client's user name.
    #[arg(long)]
    #[serde(default)]
    pub tls_identity_as_username: bool,
    /// Users and their password hashes (argon2id from `gateway passwd`, or Mosquitto's
    /// `mosquitto_passwd` entries); reloaded on SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Access rules in Mosquitto's acl_file syntax; reloaded on SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub acl_file: Option<PathBuf>,
    /// HS256 secret (at least 32 bytes) for JSON Web Tokens sent as passwords.
    #[arg(long, value_name = "FILE")]
    pub jwt_secret_file: Option<PathBuf>,
    /// RS256 or ES256 public key (PEM) for JSON Web Tokens sent as passwords.
    #[arg(long, value_name = "FILE")]
    pub jwt_public_key: Option<PathBuf>,
    /// JWKS document of the RSA and P-256 keys for JSON Web Tokens sent as passwords.
    #[arg(long, value_name = "FILE")]
    pub jwks_file: Option<PathBuf>,
    /// Accept clients that send no credentials although authentication is configured.
    #[arg(long)]
    #[serde(default)]
    pub allow_anonymous: bool,
    /// Open connections allowed at once from one IP address [default: --max-connections].
    #[arg(long, value_name = "N")]
    pub max_connections_per_ip: Option<usize>,
    /// Failed authentications from one address within a minute after which it is refused for
    /// a minute without its passwords being checked; 0 turns this off [default: 10].
    #[arg(long, value_name = "N")]
    pub max_auth_failures: Option<u32>,
    /// A user who may read the HTTP API and the metrics once authentication is configured, by
    /// HTTP Basic (the password file) or a bearer token whose `sub` it is (repeatable).
    #[arg(long = "admin-user", value_name = "USER")]
    #[serde(default)]
    pub admin_user: Vec<String>,
    /// A file whose first line is a bearer token that may scrape /metrics (Prometheus'
    /// `authorization: { credentials_file: ... }`); reloaded on SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub metrics_token_file: Option<PathBuf>,
}

/// Why the settings could not be loaded.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys.
    #[error("invalid config file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: Box<toml::de::Error>,
    },
    /// The TLS settings do not fit together.
    #[error("{0}")]
    Tls(&'static str),
}

impl Settings {
    /// Reads settings from a TOML file.
    pub fn from_file(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    /// Settings given here override `base`.
    pub fn over(self, base: Settings) -> Settings {
        Settings {
            tcp: if self.tcp.is_empty() {
                base.tcp
            } else {
                self.tcp
            },
            http: if self.http.is_empty() {
                base.http
            } else {
                self.http
            },
            allowed_origin: if self.allowed_origin.is_empty() {
                base.allowed_origin
            } else {
                self.allowed_origin
            },
            data_dir: self.data_dir.or(base.data_dir),
            cluster: if self.cluster.is_empty() {
                base.cluster
            } else {
                self.cluster
            },
            node_name: self.node_name.or(base.node_name),
            cluster_creds: self.cluster_creds.or(base.cluster_creds),
            cluster_ca: self.cluster_ca.or(base.cluster_ca),
            max_connections: self.max_connections.or(base.max_connections),
            connect_timeout: self.connect_timeout.or(base.connect_timeout),
            max_packet_size: self.max_packet_size.or(base.max_packet_size),
            receive_maximum: self.receive_maximum.or(base.receive_maximum),
            max_inflight: self.max_inflight.or(base.max_inflight),
            max_queued_messages: self.max_queued_messages.or(base.max_queued_messages),
            max_queued_bytes: self.max_queued_bytes.or(base.max_queued_bytes),
            server_keep_alive: self.server_keep_alive.or(base.server_keep_alive),
            max_keep_alive: self.max_keep_alive.or(base.max_keep_alive),
            max_client_id_len: self.max_client_id_len.or(base.max_client_id_len),
            max_subscriptions_per_client: self
                .max_subscriptions_per_client
                .or(base.max_subscriptions_per_client),
            max_topic_length: self.max_topic_length.or(base.max_topic_length),
            max_topic_levels: self.max_topic_levels.or(base.max_topic_levels),
            max_user_properties: self.max_user_properties.or(base.max_user_properties),
            max_user_properties_bytes: self
                .max_user_properties_bytes
                .or(base.max_user_properties_bytes),
            max_inbound_rate: self.max_inbound_rate.or(base.max_inbound_rate),
            sys_interval: self.sys_interval.or(base.sys_interval),
            durability: self.durability.or(base.durability),
            autosave_interval: self.autosave_interval.or(base.autosave_interval),
            mqtts: if self.mqtts.is_empty() {
                base.mqtts
            } else {
                self.mqtts
            },
            https: if self.https.is_empty() {
                base.https
            } else {
                self.https
            },
            tls_cert: self.tls_cert.or(base.tls_cert),
            tls_key: self.tls_key.or(base.tls_key),
            tls_client_ca: self.tls_client_ca.or(base.tls_client_ca),
            tls_identity_as_username: self.tls_identity_as_username
                || base.tls_identity_as_username,
            password_file: self.password_file.or(base.password_file),
            acl_file: self.acl_file.or(base.acl_file),
            jwt_secret_file: self.jwt_secret_file.or(base.jwt_secret_file),
            jwt_public_key: self.jwt_public_key.or(base.jwt_public_key),
            jwks_file: self.jwks_file.or(base.jwks_file),
            allow_anonymous: self.allow_anonymous || base.allow_anonymous,
            max_connections_per_ip: self.max_connections_per_ip.or(base.max_connections_per_ip),
            max_auth_failures: self.max_auth_failures.or(base.max_auth_failures),
            admin_user: if self.admin_user.is_empty() {
                base.admin_user
            } else {
                self.admin_user
            },
            metrics_token_file: self.metrics_token_file.or(base.metrics_token_file),
        }
    }

    /// The full configuration: these settings over the defaults. A TLS listener without a
    /// certificate and key is an error.
    pub fn into_config(self) -> Result<GatewayConfig, ConfigError> {
        let mut config = GatewayConfig::default();
        if !self.tcp.is_empty() {
            config.tcp = self.tcp;
        }
        if !self.http.is_empty() {
            config.http = self.http;
        }
        config.allowed_origins = self.allowed_origin;
        if let Some(dir) = self.data_dir {
            config.data_dir = dir;
        }
        if !self.cluster.is_empty() {
            config.cluster = Some(ClusterConfig {
                servers: self.cluster,
                node_name: self.node_name.unwrap_or_else(random_node_name),
                credentials: self.cluster_creds,
                ca: self.cluster_ca,
            });
        }
        if let Some(value) = self.max_connections {
            config.max_connections = value;
        }
        if let Some(seconds) = self.connect_timeout {
            config.connect_timeout = Duration::from_secs(seconds);
        }
        if let Some(seconds) = self.autosave_interval {
            config.autosave_interval = Duration::from_secs(seconds.max(1));
        }
        if let Some(durability) = self.durability {
            config.durability = durability;
        }
        let broker = &mut config.broker;
        if let Some(value) = self.max_packet_size {
            broker.max_packet_size = value;
        }
        if let Some(value) = self.receive_maximum {
            broker.receive_maximum = value.max(1);
        }
        if let Some(value) = self.max_inflight {
            broker.max_inflight = value.max(1);
        }
        if let Some(value) = self.max_queued_messages {
            broker.max_queued_messages = value;
        }
        if let Some(value) = self.max_queued_bytes {
            broker.max_queued_bytes = value;
        }
        if self.server_keep_alive.is_some() {
            broker.server_keep_alive = self.server_keep_alive;
        }
        if let Some(seconds) = self.sys_interval {
            broker.sys_interval = (seconds > 0).then(|| Duration::from_secs(seconds));
        }
        if let Some(seconds) = self.max_keep_alive {
            broker.max_keep_alive = (seconds > 0).then_some(seconds);
        }
        if let Some(value) = self.max_client_id_len {
            // Every server must accept 1 to 23 bytes [MQTT-3.1.3-5].
            broker.max_client_id_len = value.max(23);
        }
        if let Some(value) = self.max_subscriptions_per_client {
            broker.max_subscriptions_per_client = value;
        }
        if let Some(value) = self.max_topic_length {
            broker.max_topic_length = value.max(1);
        }
        if let Some(value) = self.max_topic_levels {
            broker.max_topic_levels = value.max(1);
        }
        if let Some(value) = self.max_user_properties {
            broker.max_user_properties = value;
        }
        if let Some(value) = self.max_user_properties_bytes {
            broker.max_user_properties_bytes = value;
        }
        config.max_inbound_rate = self.max_inbound_rate.filter(|&rate| rate > 0);
        config.mqtts = self.mqtts;
        config.https = self.https;
        let client_ca = self.tls_client_ca.is_some();
        config.tls = match (self.tls_cert, self.tls_key) {
            (Some(certificate), Some(key)) => Some(TlsSettings {
                certificate,
                key,
                client_ca: self.tls_client_ca,
            }),
            (None, None) if !client_ca => None,
            (None, None) => {
                return Err(ConfigError::Tls(
                    "--tls-client-ca needs --tls-cert and --tls-key",
                ));
            }
            _ => return Err(ConfigError::Tls("--tls-cert and --tls-key go together")),
        };
        let listeners = !(config.mqtts.is_empty() && config.https.is_empty());
        match (config.tls.is_some(), listeners) {
            (false, true) => {
                return Err(ConfigError::Tls(
                    "--mqtts and --https need --tls-cert and --tls-key",
                ));
            }
            (true, false) => {
                return Err(ConfigError::Tls(
                    "--tls-cert and --tls-key are for --mqtts or --https listeners; none is given",
                ));
            }
            _ => {}
        }
        if self.tls_identity_as_username && !client_ca {
            return Err(ConfigError::Tls(
                "--tls-identity-as-username needs --tls-client-ca: without it no client certificate is asked for",
            ));
        }
        config.max_connections_per_ip = self.max_connections_per_ip.map(|value| value.max(1));
        let mut lockout = LockoutPolicy::default();
        if let Some(threshold) = self.max_auth_failures {
            // 0 turns the back-off off: no count reaches it.
            lockout.threshold = if threshold == 0 { u32::MAX } else { threshold };
        }
        config.security = SecurityConfig {
            password_file: self.password_file,
            acl_file: self.acl_file,
            jwt_secret_file: self.jwt_secret_file,
            jwt_public_key: self.jwt_public_key,
            jwks_file: self.jwks_file,
            allow_anonymous: self.allow_anonymous,
            tls_identity_as_username: self.tls_identity_as_username,
            lockout,
            admin_users: self.admin_user,
            metrics_token_file: self.metrics_token_file,
        };
        Ok(config)
    }
}

impl Cli {
    /// Merges the flags over the config file (if any) over the defaults.
    pub fn into_config(self) -> Result<GatewayConfig, ConfigError> {
        let file = match &self.config {
            Some(path) => Settings::from_file(path)?,
            None => Settings::default(),
        };
        self.settings.over(file).into_config()
    }
}

/// A node name for a node started without `--node-name`: unique enough that two nodes do not
/// take each other's forwarded messages for their own.
fn random_node_name() -> String {
    use argon2::password_hash::rand_core::{OsRng, RngCore};
    format!("node-{:08x}", OsRng.next_u32())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_file_and_file_over_defaults() {
        let file: Settings =
            toml::from_str("tcp = [\"0.0.0.0:1884\"]\nmax-inflight = 10\nsys-interval = 0\n")
                .unwrap();
        let flags = Settings {
            max_inflight: Some(20),
            ..Settings::default()
        };
        let config = flags.over(file).into_config().unwrap();
        assert_eq!(config.tcp, vec!["0.0.0.0:1884".parse().unwrap()]);
        assert_eq!(config.http, vec!["127.0.0.1:8080".parse().unwrap()]);
        assert_eq!(config.broker.max_inflight, 20);
        assert_eq!(config.broker.sys_interval, None);
    }

    #[test]
    fn tls_settings_that_cannot_work_are_refused_with_why() {
        let path = || Some(PathBuf::from("x.pem"));
        let address = || vec!["127.0.0.1:8883".parse().unwrap()];
        let cases = [
            (
                Settings {
                    mqtts: address(),
                    ..Settings::default()
                },
                "--mqtts and --https need",
            ),
            (
                Settings {
                    tls_cert: path(),
                    ..Settings::default()
                },
                "go together",
            ),
            (
                Settings {
                    tls_client_ca: path(),
                    ..Settings::default()
                },
                "--tls-client-ca needs",
            ),
            (
                Settings {
                    tls_cert: path(),
                    tls_key: path(),
                    ..Settings::default()
                },
                "none is given",
            ),
            (
                Settings {
                    https: address(),
                    tls_cert: path(),
                    tls_key: path(),
                    tls_identity_as_username: true,
                    ..Settings::default()
                },
                "needs --tls-client-ca",
            ),
        ];
        for (settings, expected) in cases {
            let error = settings.into_config().unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
        }
        let fine = Settings {
            https: address(),
            tls_cert: path(),
            tls_key: path(),
            tls_client_ca: path(),
            tls_identity_as_username: true,
            ..Settings::default()
        };
        assert!(fine.into_config().is_ok());
    }

    #[test]
    fn every_limit_has_a_flag_and_a_key_of_the_same_name() {
        let file: Settings = toml::from_str(
            "max-keep-alive = 300\nmax-client-id-len = 64\nmax-subscriptions-per-client = 10\n\
             max-topic-length = 100\nmax-topic-levels = 8\nmax-user-properties = 4\n\
             max-user-properties-bytes = 512\nmax-inbound-rate = 65536\n",
        )
        .unwrap();
        let config = Settings::default().over(file).into_config().unwrap();
        let broker = &config.broker;
        assert_eq!(broker.max_keep_alive, Some(300));
        assert_eq!(broker.max_client_id_len, 64);
        assert_eq!(broker.max_subscriptions_per_client, 10);
        assert_eq!(broker.max_topic_length, 100);
        assert_eq!(broker.max_topic_levels, 8);
        assert_eq!(broker.max_user_properties, 4);
        assert_eq!(broker.max_user_properties_bytes, 512);
        assert_eq!(config.max_inbound_rate, Some(65536));

        let cli = Cli::try_parse_from([
            "gateway",
            "--max-keep-alive",
            "0",
            "--max-client-id-len",
            "5",
            "--max-inbound-rate",
            "0",
            "--max-subscriptions-per-client",
            "3",
            "--max-topic-length",
            "7",
            "--max-topic-levels",
            "2",
            "--max-user-properties",
            "1",
            "--max-user-properties-bytes",
            "9",
        ])
        .unwrap();
        let config = cli.into_config().unwrap();
        let broker = &config.broker;
        // 0 turns the cap and the rate off; a client id bound below 23 is raised to 23.
        assert_eq!(broker.max_keep_alive, None);
        assert_eq!(config.max_inbound_rate, None);
        assert_eq!(broker.max_client_id_len, 23);
        assert_eq!(broker.max_subscriptions_per_client, 3);
        assert_eq!(broker.max_topic_length, 7);
        assert_eq!(broker.max_topic_levels, 2);
        assert_eq!(broker.max_user_properties, 1);
        assert_eq!(broker.max_user_properties_bytes, 9);
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<Settings>("no-such-setting = 1").is_err());
    }
}
