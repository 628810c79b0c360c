//! What the gateway asks of the broker on an operator's behalf: summaries for the HTTP API, an
//! administrative disconnect, and shutdown.

use super::termination::Termination;
use super::{Broker, ConnectionId, Transport};
use bytes::Bytes;
use mqtt_codec::{
    ByteStr, ConnAckPacket, DisconnectPacket, Packet, Properties, ProtocolVersion, QoS, ReasonCode,
    SubscriptionOptions,
};
use std::time::Instant;

/// One connected client, for the HTTP API.
#[derive(Clone, Debug)]
pub struct ClientSummary {
    /// Client identifier.
    pub client_id: String,
    /// Connection identifier.
    pub connection: ConnectionId,
    /// Transport.
    pub transport: Transport,
    /// Protocol version.
    pub protocol: ProtocolVersion,
    /// Peer address.
    pub remote_address: String,
    /// User name, if any.
    pub username: Option<String>,
    /// When the CONNECT was accepted.
    pub connected_at: Instant,
    /// Keep alive in force, seconds.
    pub keep_alive: u16,
    /// Subscriptions held by its session.
    pub subscriptions: usize,
    /// Messages queued or in flight towards it.
    pub queued: usize,
}

/// One subscription, for the HTTP API.
#[derive(Clone, Debug)]
pub struct SubscriptionSummary {
    /// Client identifier of the session.
    pub client_id: String,
    /// Filter as subscribed (with `$share/...` if shared).
    pub filter: String,
    /// Options.
    pub options: SubscriptionOptions,
    /// Whether the session's client is connected.
    pub online: bool,
}

/// One retained message, for the HTTP API.
#[derive(Clone, Debug)]
pub struct RetainedSummary {
    /// Topic name.
    pub topic: String,
    /// Payload.
    pub payload: Bytes,
    /// QoS it was published with.
    pub qos: QoS,
}

impl Broker {
    /// Ends every connection for a server shutdown: 5.0 clients get DISCONNECT 0x8B. Sessions
    /// stay (they are what a restart would resume); wills are not published, since the server,
    /// not the client, is going away.
    pub fn handle_shutdown(&mut self, now: Instant) {
        for (connection, pending) in std::mem::take(&mut self.pending_authentications) {
            // Not accepted yet, so no DISCONNECT [MQTT-3.14.0-1]; 0x8B is not a CONNACK
            // reason, 0x88 is the nearest.
            let connack = Packet::ConnAck(ConnAckPacket {
                session_present: false,
                reason_code: ReasonCode::ServerUnavailable,
                properties: Properties::default(),
            });
            let connect = &pending.connect;
            let maximum = connect.properties.maximum_packet_size;
            self.outputs
                .send(connection, connect.protocol, maximum, &connack);
            self.outputs.close(connection);
        }
        let connections: Vec<(ConnectionId, ProtocolVersion)> = self
            .connections
            .iter()
            .map(|(&connection, conn)| (connection, conn.protocol))
            .collect();
        for (connection, protocol) in connections {
            if protocol.is_v5() {
                let disconnect = Packet::Disconnect(DisconnectPacket {
                    reason_code: ReasonCode::ServerShuttingDown,
                    // The reason string also makes paho 1.6, which reads a DISCONNECT's
                    // reason code only in the long form, report 0x8B.
                    properties: Properties {
                        reason_string: Some(ByteStr::from_static("server shutting down")),
                        ..Properties::default()
                    },
                });
                self.emit(connection, &disconnect);
            }
            self.outputs.close(connection);
            self.detach(connection, false, now);
        }
    }

    /// Disconnects the client with `client_id` (administrative action, 0x98 for 5.0 clients).
    /// Returns whether such a client was connected.
    pub fn disconnect_client(&mut self, client_id: &str, now: Instant) -> bool {
        let connection = self
            .sessions
            .find(client_id)
            .and_then(|key| self.sessions.get(key).connection);
        let Some(connection) = connection else {
            return false;
        };
        self.terminate(connection, Termination::AdministrativeAction, now);
        true
    }

    /// The connected clients, by client identifier.
    pub fn clients(&self) -> Vec<ClientSummary> {
        let mut clients: Vec<ClientSummary> = self
            .connections
            .iter()
            .map(|(&connection, conn)| {
                let session = self.sessions.get(conn.session);
                ClientSummary {
                    client_id: session.client_id.to_string(),
                    connection,
                    transport: conn.info.transport,
                    protocol: conn.protocol,
                    remote_address: conn.info.remote_address.to_string(),
                    username: conn.username.as_ref().map(|u| u.to_string()),
                    connected_at: conn.connected_at,
                    keep_alive: conn.keep_alive,
                    subscriptions: session.subscriptions.len(),
                    queued: session.pending_messages(),
                }
            })
            .collect();
        clients.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        clients
    }

    /// Every subscription of every session, by client identifier and filter.
    pub fn subscriptions(&self) -> Vec<SubscriptionSummary> {
        let mut list: Vec<SubscriptionSummary> = self
            .sessions
            .iter()
            .flat_map(|session| {
                session
                    .subscriptions
                    .iter()
                    .map(|(filter, subscription)| SubscriptionSummary {
                        client_id: session.client_id.to_string(),
                        filter: filter.to_string(),
                        options: subscription.options,
                        online: session.connection.is_some(),
                    })
            })
            .collect();
        list.sort_by(|a, b| (&a.client_id, &a.filter).cmp(&(&b.client_id, &b.filter)));
        list
    }

    /// Retained messages whose topic matches `filter` (all of them for `None`), sorted by topic.
    pub fn retained(&self, filter: Option<&str>, now: Instant) -> Vec<RetainedSummary> {
        let mut list: Vec<RetainedSummary> = self
            .retained
            .iter_live(filter, now)
            .map(|m| RetainedSummary {
                topic: m.publish.topic.to_string(),
                payload: m.publish.payload,
                qos: m.publish.qos,
            })
            .collect();
        list.sort_by(|a, b| a.topic.cmp(&b.topic));
        list
    }
}
