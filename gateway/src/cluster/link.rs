//! The cluster link's task: between the broker task and NATS.
//!
//! - **Interest**: for each filter local sessions subscribe to (the core counts them, see
//!   broker-core's cluster.rs), the task holds one NATS subscription per subject of the filter
//!   (subject.rs), dropped when the filter's last subscription goes. NATS then carries a
//!   message only to the nodes whose subscriptions match it.
//! - **Forwards**: each message published here is published to NATS once, on its topic's
//!   subject, as an encoded MQTT 5.0 PUBLISH (so every property crosses exactly), with this
//!   node's name and a sequence number in headers. The connection is made with `no_echo`, so
//!   NATS never hands a node its own messages: nothing loops.
//! - **Retained messages** published here also go to the cluster's bucket (retained.rs), which
//!   every node mirrors.
//! - **Shared groups** with members here get their messages through queue subscriptions on a
//!   second connection (shared.rs), which NATS balances among the nodes.
//! - **From other nodes**: messages of all subscriptions arrive here. Two of this node's
//!   filters may both match one topic (`a/+` and `a/#`), so NATS delivers such a message once
//!   per matching subscription: the (origin, sequence) pairs seen last are remembered, and a
//!   message is handed to the broker task once.
//!
//! Delivery across nodes is NATS core's: at most once. A message forwarded while NATS is
//! unreachable is buffered by the client up to its limit, then dropped and counted; local
//! delivery never waits for NATS. The broker task never waits for this task either: forwards
//! wait in a bounded queue (full: dropped and counted), interest changes in an unbounded one
//! (at most one entry per filter change).

use super::sessions::{self, Claims, LogStatus, SessionSink};
use super::subject;
use crate::broker_task::{BrokerHandle, Command};
use crate::config::ClusterConfig;
use async_nats::{Client, ConnectOptions, Event, HeaderMap, ServerAddr};
use broker_core::{Broker, Forward, InterestChange};
use bytes::BytesMut;
use futures_util::StreamExt;
use mqtt_codec::{Packet, ProtocolVersion, PublishPacket, QoS};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

/// The subjects' first token: the cluster's messages live under it in NATS.
pub const PREFIX: &str = "mqtt";
/// Forwards waiting for the link task.
const FORWARD_QUEUE: usize = 65_536;
/// Messages from other nodes waiting for the link task, from all subscriptions.
const INCOMING_QUEUE: usize = 4096;
/// (origin, sequence) pairs remembered to deliver a message once when several of this node's
/// subscriptions match it: far more than can be in flight between two of them.
const SEEN: usize = 65_536;
/// Largest message accepted from another node (an encoded PUBLISH).
const MAX_FORWARDED: usize = 256 * 1024 * 1024;

const ORIGIN: &str = "Mqtt-Origin";
const SEQUENCE: &str = "Mqtt-Seq";

/// What the cluster link reports to `/metrics` and `/healthz`.
#[derive(Debug, Default)]
pub struct ClusterCounters {
    /// Whether the NATS connection is up.
    pub connected: AtomicBool,
    /// Messages published to NATS for other nodes.
    pub forwarded: AtomicU64,
    /// Messages received from other nodes and handed to the broker.
    pub received: AtomicU64,
    /// Messages that did not cross: the forward queue was full, NATS refused them, or one
    /// from another node could not be read.
    pub dropped: AtomicU64,
    /// Times the NATS connection was lost.
    pub disconnects: AtomicU64,
    /// The link's lag: messages published here waiting to be handed to NATS.
    pub forward_waiting: AtomicU64,
    /// The sessions' log's lag: change records waiting to be written to JetStream.
    pub log_waiting: AtomicU64,
    /// Whether the last write to the sessions' log failed.
    pub log_failing: AtomicBool,
    /// Sessions this node took in from another node (or from the log of a lost one).
    pub sessions_adopted: AtomicU64,
    /// Sessions this node released to another node.
    pub sessions_released: AtomicU64,
    /// Session logs replaced by an image of the session.
    pub compactions: AtomicU64,
    /// Times the NATS client dropped messages of a subscription this node read too slowly.
    pub slow_consumer: AtomicU64,
}

/// The broker task's end of the link.
pub(crate) struct ClusterSide {
    interest: mpsc::UnboundedSender<InterestChange>,
    forwards: mpsc::Sender<Forward>,
    counters: Arc<ClusterCounters>,
    /// Where the sessions' change records go (sessions.rs).
    pub(crate) sessions: SessionSink,
    /// How much of them is in JetStream.
    pub(crate) log_status: watch::Receiver<LogStatus>,
}

impl ClusterSide {
    /// Counts a session taken in from another node.
    pub(crate) fn adopted(&self) {
        self.counters
            .sessions_adopted
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a session released to another node.
    pub(crate) fn released(&self) {
        self.counters
            .sessions_released
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Hands the broker's interest changes and forwards to the link task, never waiting.
    /// Returns whether the forwards queue is more than half full: the publisher whose messages
    /// filled it should pause, as it does for a slow local consumer, rather than have them
    /// dropped once it is full.
    pub(crate) fn flush(&self, broker: &mut Broker) -> bool {
        for change in broker.take_interest() {
            // Fails only once the link task is gone, at shutdown.
            let _ = self.interest.send(change);
        }
        for forward in broker.take_forwards() {
            if self.forwards.try_send(forward).is_err() {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        let waiting = self.forwards.max_capacity() - self.forwards.capacity();
        self.counters
            .forward_waiting
            .store(waiting as u64, Ordering::Relaxed);
        waiting > FORWARD_QUEUE / 2
    }
}

/// Connects to NATS (in the background: a node starts while NATS is down, and its local
/// clients are served meanwhile) and starts the link task and the sessions' writer. Returns
/// the broker task's side and what connections claim their sessions with.
pub(crate) async fn start(
    config: &ClusterConfig,
    broker: BrokerHandle,
    counters: Arc<ClusterCounters>,
) -> Result<(ClusterSide, Arc<Claims>, JoinHandle<()>), ClusterError> {
    let (servers, options) = connect_options(config).await?;
    let events = counters.clone();
    let options = options
        .name(&config.node_name)
        .no_echo()
        .retry_on_initial_connect()
        .max_reconnects(None)
        .event_callback(move |event| {
            let counters = events.clone();
            async move { note_event(&counters, &event) }
        });
    let client = options
        .connect(servers)
        .await
        .map_err(|error| ClusterError::Connect(error.to_string()))?;
    let (interest, interest_rx) = mpsc::unbounded_channel();
    let (forwards, forwards_rx) = mpsc::channel(FORWARD_QUEUE);
    let (retained, retained_rx) = mpsc::channel(FORWARD_QUEUE);
    // Ends when the link task drops its side of `retained`.
    tokio::spawn(super::retained::run(
        async_nats::jetstream::new(client.clone()),
        broker.clone(),
        retained_rx,
        counters.clone(),
    ));
    let (session_sink, log_status) = sessions::start_writer(
        async_nats::jetstream::new(client.clone()),
        config.node_name.clone(),
        counters.clone(),
    );
    // Ends when NATS closes the subscription, at shutdown.
    tokio::spawn(sessions::answer_releases(
        client.clone(),
        config.node_name.clone(),
        broker.clone(),
    ));
    let claims = Arc::new(Claims::new(client.clone(), config.node_name.clone()));
    let shared =
        super::shared::SharedGroups::connect(config, broker.clone(), counters.clone()).await?;
    let link = Link {
        client,
        shared,
        retained,
        node: config.node_name.clone(),
        broker,
        counters: counters.clone(),
        subscriptions: HashMap::new(),
        sequence: 0,
        seen: Seen::default(),
    };
    info!(
        node = %config.node_name,
        "cluster: joining through {}",
        config.servers.iter().map(|url| redacted(url)).collect::<Vec<_>>().join(", ")
    );
    let task = tokio::spawn(link.run(interest_rx, forwards_rx));
    Ok((
        ClusterSide {
            interest,
            forwards,
            counters,
            sessions: session_sink,
            log_status,
        },
        claims,
        task,
    ))
}

/// The servers of `config` and the options every NATS connection of this node starts from:
/// the credentials (the client does not take them from a URL itself: those of the first URL
/// that has some, a user and password or a token alone; or a `.creds` file) and the root
/// certificates.
pub(super) async fn connect_options(
    config: &ClusterConfig,
) -> Result<(Vec<ServerAddr>, ConnectOptions), ClusterError> {
    let servers = config
        .servers
        .iter()
        .map(|url| {
            url.parse::<ServerAddr>()
                .map_err(|error| ClusterError::Server {
                    url: redacted(url),
                    reason: error.to_string(),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut options = ConnectOptions::new();
    if let Some(server) = servers.iter().find(|server| server.username().is_some()) {
        let user = server.username().unwrap_or_default().to_owned();
        options = match server.password() {
            Some(password) => options.user_and_password(user, password.to_owned()),
            None => options.token(user),
        };
    }
    if let Some(path) = &config.credentials {
        options =
            options
                .credentials_file(path)
                .await
                .map_err(|source| ClusterError::Credentials {
                    path: path.display().to_string(),
                    source,
                })?;
    }
    if let Some(path) = &config.ca {
        options = options.add_root_certificates(path.clone());
    }
    Ok((servers, options))
}

/// Why the cluster link could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A `--cluster` URL is not one.
    #[error("cluster server {url}: {reason}")]
    Server { url: String, reason: String },
    /// The credentials file could not be read.
    #[error("cluster credentials {path}: {source}")]
    Credentials {
        path: String,
        source: std::io::Error,
    },
    /// The NATS client refused its options.
    #[error("cluster: {0}")]
    Connect(String),
}

fn note_event(counters: &ClusterCounters, event: &Event) {
    match event {
        Event::Connected => {
            counters.connected.store(true, Ordering::Relaxed);
            info!("cluster: connected to NATS");
        }
        Event::Disconnected => {
            counters.connected.store(false, Ordering::Relaxed);
            counters.disconnects.fetch_add(1, Ordering::Relaxed);
            warn!("cluster: lost NATS; local delivery goes on, other nodes' messages wait for it");
        }
        Event::SlowConsumer(_) => {
            // The client's buffer for one subscription overflowed: NATS messages were lost.
            counters.slow_consumer.fetch_add(1, Ordering::Relaxed);
            warn!(
                "cluster: messages from other nodes arrive faster than this node takes them; NATS dropped some"
            );
        }
        other => info!("cluster: NATS {other}"),
    }
}

/// A URL for the log: without the user and password or token it may carry.
fn redacted(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://***@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

struct Link {
    client: Client,
    /// The shared groups' queue subscriptions, on a connection of their own (shared.rs).
    shared: super::shared::SharedGroups,
    /// The retained messages published here, for the cluster's bucket (retained.rs).
    retained: mpsc::Sender<PublishPacket>,
    node: String,
    broker: BrokerHandle,
    counters: Arc<ClusterCounters>,
    /// Filter -> the tasks reading its subjects' subscriptions (aborting one unsubscribes).
    subscriptions: HashMap<String, Vec<JoinHandle<()>>>,
    sequence: u64,
    seen: Seen,
}

impl Link {
    async fn run(
        mut self,
        mut interest: mpsc::UnboundedReceiver<InterestChange>,
        mut forwards: mpsc::Receiver<Forward>,
    ) {
        let (incoming_tx, mut incoming) = mpsc::channel(INCOMING_QUEUE);
        loop {
            tokio::select! {
                change = interest.recv() => match change {
                    Some(change) => self.follow(change, &incoming_tx).await,
                    None => break,
                },
                forward = forwards.recv() => match forward {
                    Some(forward) => self.forward(forward).await,
                    None => break,
                },
                Some(message) = incoming.recv() => self.receive(message).await,
            }
        }
        for (_, tasks) in self.subscriptions.drain() {
            tasks.iter().for_each(JoinHandle::abort);
        }
    }

    async fn follow(
        &mut self,
        change: InterestChange,
        incoming: &mpsc::Sender<async_nats::Message>,
    ) {
        match change {
            InterestChange::Added(filter) => {
                let mut tasks = Vec::new();
                for subject in subject::filter_subjects(PREFIX, &filter) {
                    match self.client.subscribe(subject.clone()).await {
                        Ok(mut subscriber) => {
                            let incoming = incoming.clone();
                            tasks.push(tokio::spawn(async move {
                                while let Some(message) = subscriber.next().await {
                                    if incoming.send(message).await.is_err() {
                                        break;
                                    }
                                }
                            }));
                        }
                        Err(error) => warn!("cluster: could not subscribe to {subject}: {error}"),
                    }
                }
                self.subscriptions.insert(filter, tasks);
            }
            InterestChange::Removed(filter) => {
                if let Some(tasks) = self.subscriptions.remove(&filter) {
                    tasks.iter().for_each(JoinHandle::abort);
                }
            }
            group @ (InterestChange::GroupAdded { .. } | InterestChange::GroupRemoved { .. }) => {
                self.shared.follow(group).await;
            }
        }
    }

    async fn forward(
        &mut self,
        Forward {
            publish,
            groups_served,
        }: Forward,
    ) {
        if publish.retain && self.retained.try_send(publish.clone()).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
        self.sequence += 1;
        let subject = subject::topic_subject(PREFIX, &publish.topic);
        let mut headers = HeaderMap::new();
        headers.insert(ORIGIN, self.node.as_str());
        headers.insert(SEQUENCE, self.sequence.to_string().as_str());
        if groups_served {
            headers.insert(super::shared::GROUPS_SERVED, "1");
        }
        let Some(payload) = encode(publish) else {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        match self
            .client
            .publish_with_headers(subject, headers, payload)
            .await
        {
            Ok(()) => {
                self.counters.forwarded.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    async fn receive(&mut self, message: async_nats::Message) {
        let headers = message.headers.as_ref();
        let origin = headers.and_then(|h| h.get(ORIGIN)).map(|v| v.as_str());
        let sequence = headers
            .and_then(|h| h.get(SEQUENCE))
            .and_then(|v| v.as_str().parse::<u64>().ok());
        let (Some(origin), Some(sequence)) = (origin, sequence) else {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if !self.seen.insert(origin, sequence) {
            return;
        }
        // The subject says which topic the message is for: a PUBLISH for another one did not
        // come from a node of this cluster.
        let publish = decode(&message.payload).filter(|publish| {
            subject::subject_topic(PREFIX, message.subject.as_str()).as_deref()
                == Some(publish.topic.as_str())
        });
        let Some(publish) = publish else {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            warn!(
                "cluster: a message from {origin} on {} is not a PUBLISH to its topic; dropped",
                message.subject
            );
            return;
        };
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        // Waits while the broker task is busy: NATS holds the rest meanwhile.
        let _ = self
            .broker
            .send(Command::FromCluster(Box::new(publish)))
            .await;
    }
}

/// A message as it crosses: an MQTT 5.0 PUBLISH, whatever protocol its publisher spoke.
pub(super) fn encode(mut publish: PublishPacket) -> Option<bytes::Bytes> {
    // A packet id is part of a QoS 1/2 PUBLISH's encoding; it means nothing across nodes.
    publish.packet_id = (publish.qos != QoS::AtMostOnce).then_some(1);
    let mut buffer = BytesMut::new();
    mqtt_codec::encode(&Packet::Publish(publish), ProtocolVersion::V5, &mut buffer).ok()?;
    Some(buffer.freeze())
}

pub(super) fn decode(payload: &[u8]) -> Option<PublishPacket> {
    let mut buffer = BytesMut::from(payload);
    match mqtt_codec::decode(&mut buffer, ProtocolVersion::V5, MAX_FORWARDED) {
        Ok(Some(Packet::Publish(publish))) if buffer.is_empty() => Some(publish),
        _ => None,
    }
}

/// The (origin, sequence) pairs seen last, at most `SEEN` of them.
#[derive(Default)]
struct Seen {
    set: HashSet<(Arc<str>, u64)>,
    order: VecDeque<(Arc<str>, u64)>,
    origins: HashMap<String, Arc<str>>,
}

impl Seen {
    /// Whether the pair is new (and remembers it).
    fn insert(&mut self, origin: &str, sequence: u64) -> bool {
        let origin = match self.origins.get(origin) {
            Some(name) => name.clone(),
            None => {
                let name: Arc<str> = Arc::from(origin);
                self.origins.insert(origin.to_owned(), name.clone());
                name
            }
        };
        let key = (origin, sequence);
        if !self.set.insert(key.clone()) {
            return false;
        }
        self.order.push_back(key);
        if self.order.len() > SEEN
            && let Some(oldest) = self.order.pop_front()
        {
            self.set.remove(&oldest);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mqtt_codec::Properties;

    #[test]
    fn a_message_crosses_with_its_properties_and_flags() {
        let mut properties = Properties {
            content_type: Some("application/json".into()),
            message_expiry_interval: Some(60),
            ..Properties::default()
        };
        properties.user_properties.push(("k".into(), "v".into()));
        let publish = PublishPacket {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: true,
            topic: "a/b".into(),
            packet_id: None,
            properties,
            payload: bytes::Bytes::from_static(b"{\"t\":1}"),
        };
        let crossed = decode(&encode(publish.clone()).expect("encodes")).expect("decodes");
        assert_eq!(crossed.topic.as_str(), "a/b");
        assert_eq!(crossed.qos, QoS::AtLeastOnce);
        assert!(crossed.retain);
        assert_eq!(crossed.payload, publish.payload);
        assert_eq!(crossed.properties, publish.properties);
        assert_eq!(decode(b"not a packet"), None);
    }

    #[test]
    fn a_message_seen_twice_is_delivered_once_and_memory_is_bounded() {
        let mut seen = Seen::default();
        assert!(seen.insert("a", 1));
        assert!(!seen.insert("a", 1));
        assert!(seen.insert("b", 1), "another node's sequence is its own");
        for sequence in 2..(SEEN as u64 + 10) {
            assert!(seen.insert("a", sequence));
        }
        assert!(seen.set.len() <= SEEN);
        assert!(seen.insert("a", 1), "long forgotten");
    }

    #[test]
    fn urls_lose_their_credentials_in_the_log() {
        assert_eq!(
            redacted("nats://user:secret@host:4222"),
            "nats://***@host:4222"
        );
        assert_eq!(redacted("nats://token@host"), "nats://***@host");
        assert_eq!(redacted("nats://host:4222"), "nats://host:4222");
    }
}
