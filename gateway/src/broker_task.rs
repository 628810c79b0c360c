//! The task that owns the broker core. Connections, the HTTP handlers and the gateway send it
//! commands through a [`BrokerHandle`] (one bounded channel); it feeds them to the core and
//! queues the frames the core encoded in the connections' outboxes without ever waiting on a
//! client.
//!
//! Invariant: `peers` holds exactly the connections that announced themselves and were neither
//! closed by the core nor reported lost.

use crate::cluster::link::ClusterSide;
use crate::cluster::sessions::{LogStatus, ToWriter};
use crate::cluster::shared::GroupMessage;
use crate::counters::TransportCounters;
use crate::link::{ConnectionLink, Credit, PushError, Throttle};
use crate::store::{ChangeSink, StoreStatus};
use broker_core::{
    AuthHook, Authentication, Broker, BrokerConfig, Change, ClientSummary, ConnectionId,
    ConnectionInfo, DropReason, FrameKind, Output, RetainedSummary, Snapshot, Stats, StoredSession,
    SubscriptionSummary,
};
use mqtt_codec::{ConnectPacket, DecodeError, Packet, PublishPacket, QoS};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::sync::mpsc::error::{SendError, TrySendError};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, warn};

/// Connections by id: ids are the gateway's own counter, and foldhash beats SipHash on them.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// How many commands the broker task handles before it routes outputs and checks timers.
const COMMAND_BATCH: usize = 256;

/// The longest a publisher waits for a congested outbox to drain before it reads again. A
/// consumer that stays congested longer is shed instead (QoS 0 beyond its outbox limit).
const OUTBOX_PAUSE: Duration = Duration::from_millis(50);

/// How long a publisher whose messages went to a congested session queue waits before reading
/// more: long enough for the consumer to acknowledge a batch, short enough to go unnoticed.
const QUEUE_PAUSE: Duration = Duration::from_millis(2);

/// How long a publisher whose messages outran the store waits before reading more: about one
/// commit.
const STORE_PAUSE: Duration = Duration::from_millis(10);

/// Requests from connections and from the HTTP API to the broker task.
#[derive(Debug)]
pub(crate) enum Command {
    /// A connection was accepted; its link's outbox receives what the broker sends it.
    Open {
        /// The connection.
        connection: ConnectionId,
        /// Where its packets go, and its read credits and pause.
        link: Arc<ConnectionLink>,
    },
    /// The connection's first packet.
    Connect {
        /// The connection.
        connection: ConnectionId,
        /// The CONNECT packet.
        packet: Box<ConnectPacket>,
        /// Transport facts for the API.
        info: ConnectionInfo,
        /// What was established about the client's credentials.
        authentication: Authentication,
        /// In a cluster: the client's session, released by the node that held it, to adopt
        /// before the CONNECT is handled (cluster/sessions.rs).
        adopt: Option<Box<StoredSession>>,
    },
    /// Packets decoded from one read, in order.
    Packets {
        /// The connection.
        connection: ConnectionId,
        /// The packets.
        packets: Vec<Packet>,
        /// Returned to the connection when the command is dropped after handling: it limits
        /// how many reads of one connection wait here.
        credit: Credit,
    },
    /// The connection sent bytes that are not a valid packet.
    DecodeError {
        /// The connection.
        connection: ConnectionId,
        /// What was wrong.
        error: DecodeError,
        /// Transport facts, for the log line.
        info: ConnectionInfo,
    },
    /// The connection ended without the broker asking for it.
    Lost {
        /// The connection.
        connection: ConnectionId,
    },
    /// A message published on another node of the cluster.
    FromCluster(Box<PublishPacket>),
    /// A retained message of the cluster (set or cleared), from its shared store.
    RetainFromCluster(Box<PublishPacket>),
    /// Another node's client resumes this session: release it, and answer once its last
    /// records are in the cluster's log.
    Release {
        /// The session's client id.
        client_id: String,
        /// Answered when the other node may read the session.
        done: oneshot::Sender<()>,
    },
    /// A message the cluster chose this node to deliver to one of its shared groups.
    ToGroup(Box<GroupMessage>),
    /// Whether the cluster balances this node's shared groups (their NATS connection is up).
    GroupsBalanced(bool),
    /// A question from the HTTP API.
    Query(Query),
    /// Disconnect every client (DISCONNECT 0x8B for 5.0) and stop.
    Shutdown,
}

/// Read-only questions and administrative actions from the HTTP API.
#[derive(Debug)]
pub(crate) enum Query {
    /// Broker counters.
    Stats(oneshot::Sender<Stats>),
    /// Connected clients.
    Clients(oneshot::Sender<Vec<ClientSummary>>),
    /// All subscriptions.
    Subscriptions(oneshot::Sender<Vec<SubscriptionSummary>>),
    /// Retained messages matching an optional filter.
    Retained(Option<String>, oneshot::Sender<Vec<RetainedSummary>>),
    /// Disconnect a client by id; answers whether it was connected.
    Disconnect(String, oneshot::Sender<bool>),
}

/// The way to the broker task: a clone of the sending end of its command channel. Connections,
/// the HTTP handlers and the gateway each hold one; the task stops once every clone is gone or
/// [`BrokerHandle::shutdown`] was handled.
#[derive(Clone, Debug)]
pub(crate) struct BrokerHandle {
    commands: mpsc::Sender<Command>,
}

/// Why the broker task did not answer a [`Query`].
#[derive(Debug, Error)]
pub(crate) enum AskError {
    /// The broker task has stopped (the gateway is shutting down).
    #[error("the broker is not running")]
    Stopped,
    /// The broker task did not answer within the time given.
    #[error("the broker did not answer within {0:?}")]
    TimedOut(Duration),
}

impl BrokerHandle {
    /// Wraps the sending end of the broker task's command channel.
    pub(crate) fn new(commands: mpsc::Sender<Command>) -> Self {
        BrokerHandle { commands }
    }

    /// Queues a command, waiting while the queue is full (backpressure on the sender); fails
    /// once the broker task is gone. The channel's own future, so that a connection task that
    /// stores it stores nothing more.
    pub(crate) fn send(
        &self,
        command: Command,
    ) -> impl Future<Output = Result<(), SendError<Command>>> + Send + '_ {
        self.commands.send(command)
    }

    /// Queues a command if the queue has room now.
    pub(crate) fn try_send(&self, command: Command) -> Result<(), TrySendError<Command>> {
        self.commands.try_send(command)
    }

    /// Sends a query and waits, at most `timeout`, for its answer: the bound keeps a stuck
    /// broker from piling up HTTP requests (they fail with 503 instead).
    pub(crate) async fn ask<T>(
        &self,
        query: impl FnOnce(oneshot::Sender<T>) -> Query,
        timeout: Duration,
    ) -> Result<T, AskError> {
        let (reply, answer) = oneshot::channel();
        let exchange = async {
            self.commands
                .send(Command::Query(query(reply)))
                .await
                .map_err(|_| AskError::Stopped)?;
            answer.await.map_err(|_| AskError::Stopped)
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| AskError::TimedOut(timeout))?
    }

    /// Asks the broker task to disconnect every client (DISCONNECT 0x8B for 5.0) and stop.
    /// Nothing to do if it is gone already: there is nobody left to tell.
    pub(crate) async fn shutdown(self) {
        let _ = self.commands.send(Command::Shutdown).await;
    }
}

struct Peer {
    link: Arc<ConnectionLink>,
}

/// The broker task's side of the store: where the change records go, and what the store
/// reports back (how many are durable, whether it can write).
#[derive(Debug)]
pub(crate) struct StoreLink {
    /// Takes the records; never blocks.
    pub(crate) sink: ChangeSink,
    /// Changes when a commit succeeds or the store stops or resumes writing.
    pub(crate) status: watch::Receiver<StoreStatus>,
}

/// The broker with the state restored from the store, and what expired while the gateway was
/// down already gone, so that no client can resume it. Built before the listeners are
/// announced: `listening` then means the gateway answers at once, whatever the size of the
/// state. It takes time in proportion to that state, so it runs off the async threads.
pub(crate) fn restored_broker(
    config: BrokerConfig,
    restored: Snapshot,
    auth: Box<dyn AuthHook>,
) -> Broker {
    let mut broker = Broker::new(config, auth, Instant::now());
    broker.restore(restored, Instant::now());
    broker.handle_timeout(Instant::now());
    broker
}

/// Runs the broker until a `Shutdown` command has been handled or every sender is gone. The
/// store's sink is dropped on return, so the writer then writes what is left and stops; so is
/// the cluster link's side, which ends the link task.
pub(crate) async fn run(
    mut broker: Broker,
    store: StoreLink,
    mut commands: mpsc::Receiver<Command>,
    counters: Arc<TransportCounters>,
    cluster: Option<ClusterSide>,
) {
    let StoreLink {
        sink,
        status: mut store_status,
    } = store;
    let mut store = StoreSide {
        sink,
        records: Vec::new(),
        session_records: Vec::new(),
        durable: Durable::default(),
    };
    let mut log_status = cluster.as_ref().map(|side| side.log_status.clone());
    let mut store_running = true;
    let mut peers: HashMap<ConnectionId, Peer> = HashMap::default();
    let mut reported = (0u64, 0u64);
    // One timer for the whole loop, moved only when the core's next deadline changes: a fresh
    // `Sleep` per wake-up was registered in tokio's timer wheel while the task waited and taken
    // out again when a command woke it, two trips through the timer's lock on every message.
    let mut timer = std::pin::pin!(tokio::time::sleep_until(tokio::time::Instant::now()));
    let mut timer_at: Option<Instant> = None;
    loop {
        let deadline = broker.next_deadline();
        if let Some(at) = deadline
            && timer_at != Some(at)
        {
            timer.as_mut().reset(at.into());
            timer_at = Some(at);
        }
        let mut stop = false;
        tokio::select! {
            biased;
            // First, so that a busy command queue never delays the acknowledgements that
            // waited for the store.
            changed = store_status.changed(), if store_running => {
                if changed.is_ok() {
                    let status = *store_status.borrow_and_update();
                    if cluster.is_some() {
                        store.durable.store = status.durable;
                        store.durable.store_failing = !status.writable;
                        store.durable.apply(&mut broker);
                    } else {
                        broker.set_store_writable(status.writable);
                        // The acknowledgements that waited for these changes go out.
                        broker.changes_durable(status.durable);
                    }
                } else {
                    // Only at shutdown, or if the writer thread died (it logged why).
                    store_running = false;
                }
            }
            Some(status) = log_changed(&mut log_status) => {
                store.durable.log = status.durable;
                store.durable.log_failing = !status.writable;
                store.durable.apply(&mut broker);
            }
            command = commands.recv() => {
                let Some(command) = command else { break };
                let now = Instant::now();
                let cluster = cluster.as_ref();
                stop |= handle_and_route(&mut broker, &mut peers, command, now, &mut store, cluster);
                // Take what else is waiting, so that a burst costs one wake-up.
                for _ in 1..COMMAND_BATCH {
                    match commands.try_recv() {
                        Ok(command) => {
                            stop |= handle_and_route(&mut broker, &mut peers, command, now, &mut store, cluster);
                        }
                        Err(_) => break,
                    }
                }
            }
            () = timer.as_mut(), if deadline.is_some() => {
                // Elapsed: set again for whatever deadline comes next, even the same one.
                timer_at = None;
                let received = counters.bytes_received.load(Ordering::Relaxed);
                let sent = counters.bytes_sent.load(Ordering::Relaxed);
                broker.record_bytes(received - reported.0, sent - reported.1);
                reported = (received, sent);
                broker.handle_timeout(Instant::now());
            }
        }
        // Timer outputs (keepalive closes, `$SYS`) and released acknowledgements have no
        // publisher to slow.
        route(&mut broker, &mut peers);
        store.flush(&mut broker, cluster.as_ref());
        if let Some(cluster) = &cluster {
            let _ = cluster.flush(&mut broker);
        }
        if stop {
            close_unannounced(&mut peers, &mut commands);
            break;
        }
    }
}

/// At shutdown, closes the connections the broker never knew: those still waiting to send
/// CONNECT, and those whose `Open` is still queued. The broker's shutdown closed every client it
/// accepted; without this the rest would hold `Gateway::shutdown` up until their connect timeout.
fn close_unannounced(
    peers: &mut HashMap<ConnectionId, Peer>,
    commands: &mut mpsc::Receiver<Command>,
) {
    for (_, peer) in peers.drain() {
        peer.link.close();
    }
    // Refuse further commands, then close whatever announced itself in the meantime.
    commands.close();
    while let Ok(command) = commands.try_recv() {
        if let Command::Open { link, .. } = command {
            link.close();
        }
    }
}

/// Applies one command and routes what it produced. When the packets of a connection sent
/// messages into a congested queue or outbox, that connection is throttled: slowing the
/// publisher is how a fast producer and a slower consumer meet without losing messages.
/// Returns true for `Shutdown`.
fn handle_and_route(
    broker: &mut Broker,
    peers: &mut HashMap<ConnectionId, Peer>,
    command: Command,
    now: Instant,
    store: &mut StoreSide,
    cluster: Option<&ClusterSide>,
) -> bool {
    let source = match &command {
        Command::Packets { connection, .. } => Some(*connection),
        _ => None,
    };
    let stop = handle(broker, peers, command, now, cluster);
    let congested_outbox = route(broker, peers);
    let congested_queue = broker.take_congestion();
    let store_behind = store.flush(broker, cluster);
    let cluster_behind = cluster.is_some_and(|cluster| cluster.flush(broker));
    if let Some(peer) = source.and_then(|source| peers.get(&source)) {
        let now = tokio::time::Instant::now();
        if let Some(congested) = congested_outbox {
            peer.link
                .throttle(Throttle::Outbox(congested), now + OUTBOX_PAUSE);
        } else if congested_queue || cluster_behind {
            peer.link.throttle(Throttle::Queue, now + QUEUE_PAUSE);
        } else if store_behind {
            peer.link.throttle(Throttle::Store, now + STORE_PAUSE);
        }
    }
    stop
}

/// The broker task's end of the store: the sink, and vectors the records pass through.
struct StoreSide {
    sink: ChangeSink,
    records: Vec<Change>,
    /// In a cluster, the records about sessions, which go to the cluster's log instead.
    session_records: Vec<Change>,
    /// In a cluster, how far each of the two is durable.
    durable: Durable,
}

impl StoreSide {
    /// Hands the broker's new change records to the writer (in a cluster, those about
    /// sessions to the cluster's log). Returns whether a writer is behind: the publisher whose
    /// packets made them should pause, or a flood of retained messages would pile up in memory
    /// faster than the disk takes them.
    fn flush(&mut self, broker: &mut Broker, cluster: Option<&ClusterSide>) -> bool {
        let total = broker.take_changes(&mut self.records);
        let Some(cluster) = cluster else {
            return !self.records.is_empty() && self.sink.push(&mut self.records, total);
        };
        if self.records.is_empty() && total == self.durable.taken {
            return false;
        }
        let (retained, sessions): (Vec<Change>, Vec<Change>) = self
            .records
            .drain(..)
            .partition(|change| matches!(change, Change::Retained { .. }));
        self.records = retained;
        self.session_records = sessions;
        self.durable.taken = total;
        let mut behind = false;
        if !self.records.is_empty() {
            self.durable.store_pushed = total;
            behind |= self.sink.push(&mut self.records, total);
        }
        if !self.session_records.is_empty() {
            self.durable.log_pushed = total;
            behind |= cluster.sessions.push(&mut self.session_records, total);
        }
        self.durable.apply(broker);
        behind
    }
}

/// In a cluster, changes go to two writers, the local store (retained messages) and the
/// cluster's log (sessions): the first `n` changes are durable once each writer has written
/// what it was given of them. A writer with nothing outstanding holds nothing up.
#[derive(Debug, Default)]
struct Durable {
    /// Changes recorded so far (the total of the last records taken).
    taken: u64,
    /// The total pushed with the last records each writer was given.
    store_pushed: u64,
    log_pushed: u64,
    /// The totals each writer reported written.
    store: u64,
    log: u64,
    /// Whether each writer's last write failed.
    store_failing: bool,
    log_failing: bool,
}

impl Durable {
    fn apply(&mut self, broker: &mut Broker) {
        let covered = |done: u64, pushed: u64| if done >= pushed { self.taken } else { done };
        let durable =
            covered(self.store, self.store_pushed).min(covered(self.log, self.log_pushed));
        broker.set_store_writable(!self.store_failing && !self.log_failing);
        broker.changes_durable(durable);
    }
}

/// The next status of the cluster's log, if there is one (else never).
async fn log_changed(status: &mut Option<watch::Receiver<LogStatus>>) -> Option<LogStatus> {
    match status {
        Some(receiver) => match receiver.changed().await {
            Ok(()) => Some(*receiver.borrow_and_update()),
            Err(_) => {
                // The writer stopped (at shutdown): no more statuses.
                *status = None;
                std::future::pending().await
            }
        },
        None => std::future::pending().await,
    }
}

/// Applies one command; returns true for `Shutdown`.
fn handle(
    broker: &mut Broker,
    peers: &mut HashMap<ConnectionId, Peer>,
    command: Command,
    now: Instant,
    cluster: Option<&ClusterSide>,
) -> bool {
    match command {
        Command::Open { connection, link } => {
            peers.insert(connection, Peer { link });
        }
        Command::Connect {
            connection,
            packet,
            info,
            authentication,
            adopt,
        } => {
            if !peers.contains_key(&connection) {
                return false;
            }
            if let (Some(stored), Some(cluster)) = (adopt, cluster)
                && let Some(session) = broker.adopt_session(*stored, now)
            {
                // Before the adoption's records: the session's log goes on.
                cluster.sessions.send(ToWriter::Adopted { session });
                cluster.adopted();
            }
            broker.handle_connect(connection, *packet, info, authentication, now);
        }
        Command::Packets {
            connection,
            packets,
            credit: _credit,
        } => {
            for packet in packets {
                broker.handle_packet(connection, packet, now);
            }
        }
        Command::DecodeError {
            connection,
            error,
            info,
        } => broker.handle_decode_error(connection, &error, &info, now),
        Command::Lost { connection } => {
            peers.remove(&connection);
            broker.handle_connection_lost(connection, now);
        }
        Command::FromCluster(publish) => {
            broker.publish_from_cluster(*publish, now);
        }
        Command::RetainFromCluster(publish) => broker.retain_from_cluster(*publish, now),
        Command::Release { client_id, done } => {
            match (broker.release_session(&client_id, now), cluster) {
                // Answered by the log's writer once the session's last records are written.
                (Some(session), Some(cluster)) => {
                    cluster.released();
                    cluster.sessions.send(ToWriter::Moving {
                        session,
                        reply: done,
                    });
                }
                _ => {
                    let _ = done.send(());
                }
            }
        }
        Command::ToGroup(message) => {
            let GroupMessage {
                group,
                filter,
                publish,
            } = *message;
            broker.publish_to_group(&group, &filter, publish, now);
        }
        Command::GroupsBalanced(balanced) => broker.set_groups_balanced(balanced),
        Command::Query(query) => answer(broker, query, now),
        Command::Shutdown => {
            broker.handle_shutdown(now);
            return true;
        }
    }
    false
}

fn answer(broker: &mut Broker, query: Query, now: Instant) {
    // A failed send means the HTTP client went away; nothing to do about it.
    let _ = match query {
        Query::Stats(reply) => reply.send(broker.stats()).map_err(drop),
        Query::Clients(reply) => reply.send(broker.clients()).map_err(drop),
        Query::Subscriptions(reply) => reply.send(broker.subscriptions()).map_err(drop),
        Query::Retained(filter, reply) => reply
            .send(broker.retained(filter.as_deref(), now))
            .map_err(drop),
        Query::Disconnect(client_id, reply) => reply
            .send(broker.disconnect_client(&client_id, now))
            .map_err(drop),
    };
}

/// Queues every pending output. Returns an outbox that took a message while above
/// the soft limit (its connection is not keeping up), if any. An outbox that is so far behind
/// that it sheds messages is not returned: slowing publishers for it would let one dead
/// consumer slow everyone.
fn route(
    broker: &mut Broker,
    peers: &mut HashMap<ConnectionId, Peer>,
) -> Option<Arc<ConnectionLink>> {
    let mut congested = None;
    while let Some(output) = broker.poll_output() {
        match output {
            Output::Send { connection, frame } => {
                let Some(peer) = peers.get(&connection) else {
                    continue;
                };
                let (is_publish, qos0, sets_alias) = match frame.kind {
                    FrameKind::Publish { qos, sets_alias } => {
                        (true, qos == QoS::AtMostOnce, sets_alias)
                    }
                    FrameKind::Control => (false, false, false),
                };
                let pushed = if sets_alias {
                    peer.link.push_unbounded(frame.bytes)
                } else {
                    peer.link.push(frame.bytes)
                };
                match pushed {
                    Ok(()) => {
                        if is_publish && peer.link.is_congested() {
                            congested = Some(peer.link.clone());
                        }
                    }
                    Err(PushError::Closed) => {}
                    Err(PushError::Full) if qos0 => {
                        // QoS 0 promises at most once: shedding it protects everyone else.
                        broker.record_drop(DropReason::SlowConsumer);
                    }
                    Err(PushError::Full) => {
                        // Acknowledgements and QoS 1/2 messages are bounded by the protocol's
                        // windows; reaching the hard limit with them means the peer stopped
                        // reading altogether.
                        warn!(
                            connection = %connection,
                            client_id = broker.client_id(connection).unwrap_or(""),
                            "closing connection: it stopped reading ({} bytes waiting)",
                            peer.link.queued_bytes()
                        );
                        peer.link.close();
                        peers.remove(&connection);
                        broker.handle_connection_lost(connection, Instant::now());
                    }
                }
            }
            Output::Close { connection } => {
                if let Some(peer) = peers.remove(&connection) {
                    debug!(connection = %connection, "closing connection");
                    peer.link.close();
                }
            }
        }
    }
    congested
}
