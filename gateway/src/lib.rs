//! The MQTT gateway: transports, the task that owns the broker core, and the HTTP surface.
//!
//! [`Gateway::start`] binds every listener and spawns the tasks; [`Gateway::shutdown`] stops
//! accepting, sends 5.0 clients DISCONNECT 0x8B, flushes, and waits for every task to end. Tests
//! start a gateway on port 0 and read the bound addresses back.
//!
//! The way of a message: a transport (`transport::tcp`, `transport::tls`, `transport::ws`)
//! reads bytes; the connection task (`connection`) decodes them into packets and sends them to
//! the broker task (`broker_task`) through its `BrokerHandle`; the broker core encodes what it
//! sends, and the broker task pushes those frames into each receiver's `ConnectionLink`
//! (`link`), whose connection task writes them through its transport. Connections are accepted
//! by `listeners` (TCP, and TLS with its handshake) and by `http`'s `/mqtt` upgrade (WebSocket,
//! over HTTP or over HTTPS from `http::https`); both TLS listeners take the certificate in
//! force from `security::tls`. `counters` are the atomics the transports count in and
//! `metrics` and the API read; `store` writes the broker's change records to disk.
//!
//! No two modules import each other: `http` and `transport` are parents whose children reach
//! them through `super::`, and the dependencies between the others go one way.

// Only what the binary and the tests use is public: `config` (the binary builds a
// `GatewayConfig` from its flags, tests build one directly), `dashboard` (tests check the
// embedded files), and the error types that `Gateway::start` names. Everything else is the
// gateway's own business.
mod broker_task;
mod cluster;
pub mod config;
mod connection;
mod counters;
mod http;
mod link;
mod listeners;
mod metrics;
mod origin;
mod parking;
pub mod security;
mod store;
mod transport;

pub use http::dashboard;
pub use origin::InvalidOrigin;
pub use store::StoreError;

use axum::serve::ListenerExt;
use broker_core::{AuthHook, BrokerConfig, Persistence};
use broker_task::BrokerHandle;
use config::{Durability, GatewayConfig};
use connection::{ConnectionContext, ConnectionSettings};
use counters::TransportCounters;
use link::OutboxLimits;
use listeners::{Acceptor, ConnectionLimiter};
use security::tls::ServerConfigs;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

/// Commands waiting for the broker task. A full queue makes readers wait (backpressure), and a
/// short one keeps that backlog small: each command can hold a whole read of packets, so the
/// queue, not the sockets, would otherwise absorb a burst that a slow consumer cannot take.
const COMMAND_QUEUE: usize = 128;

/// Time one batch of writes to a connection may take, whatever the transport. A peer that reads
/// nothing for this long is not coming back, and its connection is dropped; without the bound
/// its connection task would wait on it forever.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Time a connection has to flush what is queued and close once the broker closed it (shutdown,
/// takeover, a protocol error), and for the WebSocket closing handshake.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the gateway could not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// A listener could not bind its address.
    #[error("cannot listen on {kind} {address}: {source}")]
    Bind {
        /// Listener kind (mqtt, mqtts, http, https).
        kind: &'static str,
        /// The address.
        address: SocketAddr,
        /// The I/O error.
        source: io::Error,
    },
    /// The embedded store could not be opened or read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An `--allowed-origin` is not an origin.
    #[error(transparent)]
    AllowedOrigin(#[from] InvalidOrigin),
    /// The data directory could not be created.
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// A password, ACL or token key file could not be loaded.
    #[error(transparent)]
    Security(#[from] security::SecurityError),
    /// The TLS certificate, key or client CA could not be loaded.
    #[error(
        "cannot load TLS certificate {} with key {}: {source}",
        .certificate.display(),
        .key.display()
    )]
    Tls {
        /// The certificate file (`--tls-cert`).
        certificate: std::path::PathBuf,
        /// The key file (`--tls-key`).
        key: std::path::PathBuf,
        /// What is wrong, naming the file at fault.
        source: security::tls::TlsError,
    },
    /// The cluster link could not start (a bad `--cluster` URL or credentials file).
    #[error(transparent)]
    Cluster(#[from] cluster::ClusterError),
}

/// Why shutdown did not complete cleanly.
#[derive(Debug, Error)]
pub enum ShutdownError {
    /// Some connection tasks were still running when the grace period ended.
    #[error("{0} connection tasks did not finish within the shutdown grace period")]
    Timeout(usize),
}

/// A running gateway.
#[derive(Debug)]
pub struct Gateway {
    security: Option<Arc<security::Security>>,
    /// The TLS configurations of the mqtts and https listeners, when there are any.
    tls: Option<Arc<ServerConfigs>>,
    mqtt_addresses: Vec<SocketAddr>,
    http_addresses: Vec<SocketAddr>,
    mqtts_addresses: Vec<SocketAddr>,
    https_addresses: Vec<SocketAddr>,
    stop_accepting: CancellationToken,
    tracker: TaskTracker,
    /// The lot of quiet TCP connections, closed at shutdown once they have all ended.
    parking: Option<parking::Parking>,
    broker: BrokerHandle,
    broker_task: JoinHandle<()>,
    store: JoinHandle<()>,
    /// The cluster link's task, which ends after the broker task.
    cluster: Option<JoinHandle<()>>,
}

impl Gateway {
    /// Binds every listener of `config` and starts serving.
    pub async fn start(config: GatewayConfig, auth: Box<dyn AuthHook>) -> Result<Self, StartError> {
        let origins = Arc::new(origin::OriginPolicy::new(&config.allowed_origins)?);
        let security = security::Security::load(config.security.clone())?;
        std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        // Only TLS listeners need the files; without them `--tls-*` has nothing to configure.
        let tls = match &config.tls {
            Some(settings) if !(config.mqtts.is_empty() && config.https.is_empty()) => {
                let configs =
                    ServerConfigs::load(settings.clone()).map_err(|source| StartError::Tls {
                        certificate: settings.certificate.clone(),
                        key: settings.key.clone(),
                        source,
                    })?;
                Some(Arc::new(configs))
            }
            _ => None,
        };
        let tcp_listeners = bind_all("mqtt", &config.tcp).await?;
        let http_listeners = bind_all("http", &config.http).await?;
        let mqtts_listeners = bind_all("mqtts", &config.mqtts).await?;
        let https_listeners = bind_all("https", &config.https).await?;

        let mut store = store::Store::open(&config.data_dir)?;
        let mut restored = store.load()?;
        if config.cluster.is_some() && !restored.sessions.is_empty() {
            // In a cluster, sessions live in JetStream (cluster/sessions.rs); these were kept
            // by this node before it joined one, and their clients resume them nowhere.
            warn!(
                "{} persistent sessions in {} are not resumed: in a cluster, sessions live in JetStream",
                restored.sessions.len(),
                config.data_dir.display()
            );
            restored.sessions.clear();
        }
        let store_counters = Arc::new(store::StoreCounters::default());
        let (sink, status, store_task) = store::writer::start(
            store,
            config.durability,
            config.autosave_interval,
            store_counters.clone(),
        );
        let store_view = store::StoreView {
            counters: store_counters,
            status: status.clone(),
        };

        let (commands, receiver) = mpsc::channel(COMMAND_QUEUE);
        let counters = Arc::new(TransportCounters::default());
        let broker_config = BrokerConfig {
            persistence: match config.durability {
                Durability::Full => Persistence::Full,
                Durability::Relaxed => Persistence::Relaxed,
            },
            node_name: config
                .cluster
                .as_ref()
                .map(|cluster| cluster.node_name.clone()),
            ..config.broker.clone()
        };
        // SCRAM-SHA-256 enhanced authentication, from the password file.
        let auth = security::scram_hook::ScramHook::wrap(security.clone(), auth);
        let mut restored_broker = tokio::task::spawn_blocking(move || {
            broker_task::restored_broker(broker_config, restored, auth)
        })
        .await
        .unwrap_or_else(|failed| std::panic::resume_unwind(failed.into_panic()));
        let broker = BrokerHandle::new(commands);
        let cluster_counters = Arc::new(cluster::ClusterCounters::default());
        let cluster = match &config.cluster {
            Some(cluster_config) => {
                restored_broker.set_clustered();
                let (side, claims, task) =
                    cluster::link::start(cluster_config, broker.clone(), cluster_counters.clone())
                        .await?;
                Some((side, (claims, task)))
            }
            None => None,
        };
        let (cluster_side, cluster_rest) = cluster.unzip();
        let (claims, cluster_task) = cluster_rest.unzip();
        let broker_task = tokio::spawn(broker_task::run(
            restored_broker,
            broker_task::StoreLink { sink, status },
            receiver,
            counters.clone(),
            cluster_side,
        ));

        let tracker = TaskTracker::new();
        // Quiet TCP connections wait here without a task; without it (the system refused an
        // epoll set) they keep their tasks, which costs memory, not correctness.
        let parking = match parking::Parking::start(counters.clone()) {
            Ok(lot) => Some(connection::IdleParking {
                lot,
                tracker: tracker.clone(),
            }),
            Err(error) => {
                warn!("idle connections keep their tasks: cannot start the parking lot: {error}");
                None
            }
        };
        let context = ConnectionContext {
            broker: broker.clone(),
            counters,
            settings: ConnectionSettings {
                connect_timeout: config.connect_timeout,
                max_packet_size: config.broker.max_packet_size as usize,
                outbox_limits: Arc::new(OutboxLimits {
                    hard_bytes: config.outbox_limit,
                    soft_bytes: config.outbox_soft_limit,
                }),
                close_timeout: CLOSE_TIMEOUT,
                write_timeout: WRITE_TIMEOUT,
                max_inbound_rate: config.max_inbound_rate,
            },
            security: security.clone(),
            claims,
            parking: parking.clone(),
        };
        let limiter = ConnectionLimiter::new(
            config.max_connections,
            config
                .max_connections_per_ip
                .unwrap_or(config.max_connections),
            context.counters.clone(),
        );
        let stop_accepting = CancellationToken::new();

        let mut mqtt_addresses = Vec::new();
        for listener in tcp_listeners {
            let address = listener
                .local_addr()
                .expect("bound listener has an address");
            info!("listening mqtt {address}");
            mqtt_addresses.push(address);
            tracker.spawn(listeners::run_tcp(
                Acceptor::new("mqtt", listener, context.counters.clone()),
                context.clone(),
                limiter.clone(),
                tracker.clone(),
                stop_accepting.clone(),
            ));
        }
        let mut mqtts_addresses = Vec::new();
        for listener in mqtts_listeners {
            let address = listener
                .local_addr()
                .expect("bound listener has an address");
            let configs = tls.clone().expect("TLS is loaded for TLS listeners");
            info!("listening mqtts {address}");
            mqtts_addresses.push(address);
            tracker.spawn(listeners::run_tls(
                Acceptor::new("mqtts", listener, context.counters.clone()),
                configs,
                context.clone(),
                limiter.clone(),
                tracker.clone(),
                stop_accepting.clone(),
            ));
        }
        let http_state = http::HttpState {
            context: context.clone(),
            limiter: limiter.clone(),
            tracker: tracker.clone(),
            origins,
            metrics: Arc::new(metrics::Metrics::new()),
            store: store_view,
            cluster: config.cluster.is_some().then(|| cluster_counters.clone()),
            mqtt_addresses: mqtt_addresses.clone().into(),
        };
        let mut http_addresses = Vec::new();
        for listener in http_listeners {
            let address = listener
                .local_addr()
                .expect("bound listener has an address");
            info!("listening http {address}");
            http_addresses.push(address);
            let stop = stop_accepting.clone();
            let app =
                http::app(http_state.clone()).into_make_service_with_connect_info::<SocketAddr>();
            // `tap_io` only for axum's `ConnectInfo<SocketAddr>`, which it provides for a
            // listener of its own or one wrapped so.
            let listener = Acceptor::new("http", listener, context.counters.clone()).tap_io(|_| {});
            tracker.spawn(async move {
                let serve = axum::serve(listener, app)
                    .with_graceful_shutdown(async move { stop.cancelled().await });
                if let Err(error) = serve.await {
                    tracing::error!("http listener {address} failed: {error}");
                }
            });
        }

        let mut https_addresses = Vec::new();
        for listener in https_listeners {
            let address = listener
                .local_addr()
                .expect("bound listener has an address");
            let configs = tls.clone().expect("TLS is loaded for TLS listeners");
            info!("listening https {address}");
            https_addresses.push(address);
            tracker.spawn(http::https::run(
                Acceptor::new("https", listener, context.counters.clone()),
                http_state.clone(),
                configs,
                stop_accepting.clone(),
            ));
        }

        Ok(Gateway {
            security,
            tls,
            mqtt_addresses,
            http_addresses,
            mqtts_addresses,
            https_addresses,
            stop_accepting,
            tracker,
            parking: parking.map(|parking| parking.lot),
            broker,
            broker_task,
            store: store_task,
            cluster: cluster_task,
        })
    }

    /// Reads the TLS certificate and key, the password file, the ACL and the token keys again
    /// (SIGHUP). Connections stay (established TLS connections keep the certificate they were
    /// opened with); a file that fails to load keeps its previous version in force, and says
    /// why in the log.
    pub fn reload(&self) {
        if let Some(tls) = &self.tls {
            // Logged either way; a failure keeps the configuration in force.
            let _ = tls.reload();
        }
        if let Some(security) = &self.security {
            security.reload();
        }
    }

    /// Addresses of the MQTT over TCP listeners, as bound (port 0 resolved).
    pub fn mqtt_addresses(&self) -> &[SocketAddr] {
        &self.mqtt_addresses
    }

    /// Addresses of the HTTP listeners, as bound.
    pub fn http_addresses(&self) -> &[SocketAddr] {
        &self.http_addresses
    }

    /// Addresses of the MQTT over TLS listeners, as bound.
    pub fn mqtts_addresses(&self) -> &[SocketAddr] {
        &self.mqtts_addresses
    }

    /// Addresses of the HTTPS listeners, as bound.
    pub fn https_addresses(&self) -> &[SocketAddr] {
        &self.https_addresses
    }

    /// Stops accepting, disconnects every client (DISCONNECT 0x8B for 5.0), lets the store
    /// write the last changes, and waits up to `grace` for all of it.
    pub async fn shutdown(self, grace: Duration) -> Result<(), ShutdownError> {
        self.stop_accepting.cancel();
        self.broker.shutdown().await;
        self.tracker.close();
        let finished = tokio::time::timeout(grace, async {
            // Parked connections count as tracked tasks: once they have all ended, the lot is
            // empty and its task can end.
            self.tracker.wait().await;
            if let Some(parking) = &self.parking {
                parking.close();
            }
            let _ = self.broker_task.await;
            // The broker task dropped its sink; the writer ends once the last changes are written.
            let _ = self.store.await;
            // And its side of the cluster link, which ends the link task.
            if let Some(cluster) = self.cluster {
                let _ = cluster.await;
            }
        })
        .await;
        match finished {
            Ok(()) => Ok(()),
            Err(_) => Err(ShutdownError::Timeout(self.tracker.len())),
        }
    }
}

/// Binds a listener of `kind` (for the error and the log) on each of `addresses`.
async fn bind_all(
    kind: &'static str,
    addresses: &[SocketAddr],
) -> Result<Vec<TcpListener>, StartError> {
    let mut listeners = Vec::with_capacity(addresses.len());
    for &address in addresses {
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| StartError::Bind {
                kind,
                address,
                source,
            })?;
        listeners.push(listener);
    }
    Ok(listeners)
}
