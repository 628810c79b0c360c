//! The task that owns the broker core. Connections send it commands over one bounded channel;
//! it feeds them to the core, encodes the core's outputs with each connection's protocol
//! version, and queues them in the connections' outboxes without ever waiting on a client.
//!
//! Invariant: `peers` holds exactly the connections that announced themselves and were neither
//! closed by the core nor reported lost.

use crate::outbox::{Outbox, PushError};
use broker_core::{
    AuthHook, Broker, BrokerConfig, ClientSummary, ConnectionId, ConnectionInfo, DropReason,
    Output, RetainedSummary, Stats, SubscriptionSummary,
};
use bytes::BytesMut;
use mqtt_codec::{ConnectPacket, DecodeError, Packet, ProtocolVersion, QoS, encode};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

/// How many commands the broker task handles before it routes outputs and checks timers.
const COMMAND_BATCH: usize = 256;

/// Requests from connections and from the HTTP API to the broker task.
#[derive(Debug)]
pub enum Command {
    /// A connection was accepted; its outbox receives what the broker sends it.
    Open {
        /// The connection.
        connection: ConnectionId,
        /// Where its packets go.
        outbox: Arc<Outbox>,
    },
    /// The connection's first packet.
    Connect {
        /// The connection.
        connection: ConnectionId,
        /// The CONNECT packet.
        packet: Box<ConnectPacket>,
        /// Transport facts for the API.
        info: ConnectionInfo,
    },
    /// Packets decoded from one read, in order.
    Packets {
        /// The connection.
        connection: ConnectionId,
        /// The packets.
        packets: Vec<Packet>,
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
    /// A question from the HTTP API.
    Query(Query),
    /// Disconnect every client (DISCONNECT 0x8B for 5.0) and stop.
    Shutdown,
}

/// Read-only questions and administrative actions from the HTTP API.
#[derive(Debug)]
pub enum Query {
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

/// Byte counters the transports update and the broker reads for `$SYS` and metrics.
#[derive(Debug, Default)]
pub struct TransportCounters {
    /// Bytes read from all connections.
    pub bytes_received: AtomicU64,
    /// Bytes written to all connections.
    pub bytes_sent: AtomicU64,
    /// Network connections open now, by transport, for `/metrics`.
    pub open_connections: crate::metrics::OpenConnections,
}

/// Limits the broker task applies to outboxes.
#[derive(Clone, Copy, Debug)]
pub struct OutboxLimits {
    /// Above this many queued bytes, QoS 0 messages for the connection are dropped.
    pub soft_bytes: usize,
}

struct Peer {
    outbox: Arc<Outbox>,
    protocol: ProtocolVersion,
}

/// Runs the broker until a `Shutdown` command has been handled or every sender is gone.
pub async fn run(
    config: BrokerConfig,
    auth: Box<dyn AuthHook>,
    mut commands: mpsc::Receiver<Command>,
    counters: Arc<TransportCounters>,
    limits: OutboxLimits,
) {
    let mut broker = Broker::new(config, auth, Instant::now());
    let mut peers: HashMap<ConnectionId, Peer> = HashMap::new();
    let mut scratch = BytesMut::new();
    let mut reported = (0u64, 0u64);
    loop {
        let deadline = broker.next_deadline();
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        let mut stop = false;
        tokio::select! {
            biased;
            command = commands.recv() => {
                let Some(command) = command else { break };
                let now = Instant::now();
                stop |= handle(&mut broker, &mut peers, command, now);
                // Take what else is waiting before routing, so that a burst costs one pass.
                for _ in 1..COMMAND_BATCH {
                    match commands.try_recv() {
                        Ok(command) => stop |= handle(&mut broker, &mut peers, command, now),
                        Err(_) => break,
                    }
                }
            }
            () = sleep => {
                let received = counters.bytes_received.load(Ordering::Relaxed);
                let sent = counters.bytes_sent.load(Ordering::Relaxed);
                broker.record_bytes(received - reported.0, sent - reported.1);
                reported = (received, sent);
                broker.handle_timeout(Instant::now());
            }
        }
        route(&mut broker, &mut peers, &mut scratch, limits);
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
        peer.outbox.close();
    }
    // Refuse further commands, then close whatever announced itself in the meantime.
    commands.close();
    while let Ok(command) = commands.try_recv() {
        if let Command::Open { outbox, .. } = command {
            outbox.close();
        }
    }
}

/// Applies one command; returns true for `Shutdown`.
fn handle(
    broker: &mut Broker,
    peers: &mut HashMap<ConnectionId, Peer>,
    command: Command,
    now: Instant,
) -> bool {
    match command {
        Command::Open { connection, outbox } => {
            peers.insert(
                connection,
                Peer {
                    outbox,
                    protocol: ProtocolVersion::V311,
                },
            );
        }
        Command::Connect {
            connection,
            packet,
            info,
        } => {
            if let Some(peer) = peers.get_mut(&connection) {
                peer.protocol = packet.protocol;
                broker.handle_connect(connection, *packet, info, now);
            }
        }
        Command::Packets {
            connection,
            packets,
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

/// Encodes and queues every pending output.
fn route(
    broker: &mut Broker,
    peers: &mut HashMap<ConnectionId, Peer>,
    scratch: &mut BytesMut,
    limits: OutboxLimits,
) {
    while let Some(output) = broker.poll_output() {
        match output {
            Output::Send { connection, packet } => {
                let Some(peer) = peers.get(&connection) else {
                    continue;
                };
                if let Packet::Publish(publish) = &packet
                    && publish.qos == QoS::AtMostOnce
                    && peer.outbox.queued_bytes() > limits.soft_bytes
                {
                    // QoS 0 promises at most once: shedding it protects the other clients.
                    broker.record_drop(DropReason::SlowConsumer);
                    continue;
                }
                // Encode into one shared block so frames are slices of it, not an allocation
                // each.
                if scratch.capacity() < 4096 {
                    scratch.reserve(64 * 1024);
                }
                if let Err(error) = encode(&packet, peer.protocol, scratch) {
                    warn!(connection = %connection, "cannot encode {}: {error}", packet.name());
                    continue;
                }
                let frame = scratch.split().freeze();
                match peer.outbox.push(frame) {
                    Ok(()) => {}
                    Err(PushError::Closed) => {}
                    Err(PushError::Full) => {
                        warn!(
                            connection = %connection,
                            client_id = broker.client_id(connection).unwrap_or(""),
                            "closing connection: its socket does not keep up ({} bytes waiting)",
                            peer.outbox.queued_bytes()
                        );
                        peer.outbox.close();
                        peers.remove(&connection);
                        broker.handle_connection_lost(connection, Instant::now());
                    }
                }
            }
            Output::Close { connection } => {
                if let Some(peer) = peers.remove(&connection) {
                    debug!(connection = %connection, "closing connection");
                    peer.outbox.close();
                }
            }
        }
    }
    // Keep the scratch buffer from growing without bound after one huge packet.
    if scratch.capacity() > 1 << 20 {
        *scratch = BytesMut::new();
    }
}
