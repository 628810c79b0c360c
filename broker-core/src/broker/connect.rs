//! CONNECT: a new connection is checked, authenticated, refused or accepted; an accepted one
//! takes over an older connection of the same client, gets its session (new or resumed) and a
//! CONNACK that states the broker's limits.

use super::connection::Access;
use super::limits;
use super::termination::Termination;
use super::timers::TimerKind;
use super::{Broker, Connection, ConnectionId, ConnectionInfo};
use crate::auth::{AuthDecision, Authentication, ClientIdentity, Grant};
use crate::lazy::{LazyMap, LazySet};
use bytes::Bytes;
use mqtt_codec::{
    AuthPacket, ByteStr, ConnAckPacket, ConnectPacket, Packet, Properties, ProtocolVersion,
    ReasonCode, Will, encoded_len,
};
use std::time::Instant;
use tracing::{debug, info, warn};

/// A CONNECT on its way to being accepted: checked, its client identifier settled, perhaps
/// waiting for an enhanced authentication exchange to finish.
#[derive(Debug)]
pub(super) struct ConnectRequest {
    pub connect: ConnectPacket,
    /// The client identifier: the CONNECT's, or one the broker assigned.
    pub client_id: ByteStr,
    /// Whether the broker assigned `client_id` (the CONNACK then tells the client).
    pub assigned: bool,
    pub info: ConnectionInfo,
    /// What the gateway established about the client's credentials.
    pub authentication: Authentication,
}

impl Broker {
    /// A new connection's CONNECT packet (decoded by the transport, which also enforces that it
    /// comes first [MQTT-3.1.0-1]), with what was established about its credentials.
    pub fn handle_connect(
        &mut self,
        connection: ConnectionId,
        connect: ConnectPacket,
        info: ConnectionInfo,
        authentication: Authentication,
        now: Instant,
    ) {
        self.stats.packets_received += 1;
        let protocol = connect.protocol;
        if self.connections.contains_key(&connection)
            || self.pending_authentications.contains_key(&connection)
        {
            self.terminate(connection, Termination::SecondConnect, now);
            return;
        }
        let (client_id, assigned) = match self.check_connect(&connect) {
            Ok(identifier) => identifier,
            Err(termination) => {
                self.refuse_connect(connection, &connect, &info, &termination);
                return;
            }
        };
        if let Authentication::Refused(reason) = authentication {
            self.stats.auth_failures += 1;
            let termination = Termination::CredentialsRefused(reason);
            self.refuse_connect(connection, &connect, &info, &termination);
            return;
        }
        let request = ConnectRequest {
            connect,
            client_id,
            assigned,
            info,
            authentication,
        };
        match self.auth.authenticate(&request.connect, &request.client_id) {
            AuthDecision::Accept(properties) => {
                // Accepted in one step, the CONNACK still names the method [MQTT-4.12.0-5].
                let properties = with_method(properties, &request.connect);
                self.accept_connect(connection, request, properties, now)
            }
            // An exchange needs a 5.0 client that named a method: the server must not send
            // AUTH to any other [MQTT-4.12.0-6].
            AuthDecision::Continue(properties)
                if protocol.is_v5()
                    && request.connect.properties.authentication_method.is_some() =>
            {
                let auth = Packet::Auth(AuthPacket {
                    reason_code: ReasonCode::ContinueAuthentication,
                    properties: with_method(properties, &request.connect),
                });
                let maximum = request.connect.properties.maximum_packet_size;
                self.outputs.send(connection, protocol, maximum, &auth);
                self.pending_authentications.insert(connection, request);
            }
            AuthDecision::Continue(_) => {
                self.stats.auth_failures += 1;
                let termination = Termination::AuthenticationMethodMissing;
                self.refuse_connect(connection, &request.connect, &request.info, &termination);
            }
            AuthDecision::Refuse(reason) => {
                self.stats.auth_failures += 1;
                let termination = Termination::AuthenticationRefused(reason);
                self.refuse_connect(connection, &request.connect, &request.info, &termination);
            }
        }
    }

    /// The checks a CONNECT must pass before authentication; its client identifier, and
    /// whether the broker assigned it.
    fn check_connect(&mut self, connect: &ConnectPacket) -> Result<(ByteStr, bool), Termination> {
        let (client_id, assigned) = if connect.client_id.is_empty() {
            // 3.1 requires an identifier; 3.1.1 allows an empty one only with clean session
            // (3.1.1: [MQTT-3.1.3-7] [MQTT-3.1.3-8]); 5.0 always assigns one [MQTT-3.1.3-6].
            let allowed = match connect.protocol {
                ProtocolVersion::V31 => false,
                ProtocolVersion::V311 => connect.clean_start,
                ProtocolVersion::V5 => true,
            };
            if !allowed {
                return Err(Termination::EmptyClientId);
            }
            (self.assign_client_id(), true)
        } else {
            // Detached: the id lives as long as the session, the read buffer should not.
            (connect.client_id.detached(), false)
        };
        if client_id.len() > self.config.max_client_id_len {
            return Err(Termination::ClientIdTooLong);
        }
        if connect
            .will
            .as_ref()
            .is_some_and(|will| will.retain && !self.config.retain_available)
        {
            return Err(Termination::WillRetainUnavailable);
        }
        if let Some(will) = &connect.will {
            limits::check_topic(&self.config, &will.topic, false)
                .map_err(Termination::WillTopicOverLimit)?;
        }
        let will_properties = connect.will.as_ref().map(|will| &will.properties);
        let blocks = std::iter::once(&connect.properties).chain(will_properties);
        if !limits::user_properties_within(&self.config, blocks) {
            return Err(Termination::UserPropertiesOverLimit);
        }
        if let Some(maximum) = self.config.max_keep_alive
            && !connect.protocol.is_v5()
            && (connect.keep_alive == 0 || connect.keep_alive > maximum)
        {
            return Err(Termination::KeepAliveAboveMaximum {
                requested: connect.keep_alive,
                maximum,
            });
        }
        Ok((client_id, assigned))
    }

    fn assign_client_id(&mut self) -> ByteStr {
        loop {
            let candidate = ByteStr::from(format!("auto-{:012x}", self.next_assigned_id));
            self.next_assigned_id += 1;
            if !self.sessions.contains(&candidate) {
                return candidate;
            }
        }
    }

    /// Answers a CONNECT with an error CONNACK (a 5.0 client also reads why) and closes.
    pub(super) fn refuse_connect(
        &mut self,
        connection: ConnectionId,
        connect: &ConnectPacket,
        info: &ConnectionInfo,
        termination: &Termination,
    ) {
        let protocol = connect.protocol;
        let reason = termination.reason_code();
        if let Termination::CredentialsRefused(_) = termination {
            // Logged where the credentials were checked, with why: one line per refusal.
            debug!(connection = %connection, "refusing CONNECT: {reason}: {termination}");
        } else {
            warn!(
                connection = %connection,
                peer = %info.remote_address,
                "refusing CONNECT: {reason}: {termination}"
            );
        }
        self.stats.connections_refused += 1;
        if !protocol.is_v5() && !termination.has_v3_return_code() {
            self.outputs.close(connection);
            return;
        }
        let mut properties = Properties::default();
        if protocol.is_v5() {
            properties.reason_string = Some(ByteStr::from(termination.to_string()));
        }
        let connack = Packet::ConnAck(ConnAckPacket {
            session_present: false,
            reason_code: reason,
            properties,
        });
        let maximum = connect.properties.maximum_packet_size;
        self.outputs.send(connection, protocol, maximum, &connack);
        self.outputs.close(connection);
    }

    /// Accepts an authenticated CONNECT: takes over an older connection with the same client
    /// identifier, starts or resumes the session, answers CONNACK and resends what was in
    /// flight.
    pub(super) fn accept_connect(
        &mut self,
        connection: ConnectionId,
        request: ConnectRequest,
        auth_properties: Properties,
        now: Instant,
    ) {
        let ConnectRequest {
            connect,
            client_id,
            assigned,
            info,
            authentication,
        } = request;
        let protocol = connect.protocol;
        let Grant {
            username,
            mut permissions,
            valid_until,
        } = match authentication {
            Authentication::Verified(grant) => *grant,
            _ => Grant::default(),
        };
        // Verified credentials may name the user (a token's subject, a certificate's CN).
        let username = username.or_else(|| connect.username.as_ref().map(ByteStr::detached));

        // A will is a publication like any other: a client may not leave one on a topic it could
        // not publish to itself, or dropping the connection would get past the ACL. Refuse at
        // CONNECT, where the client learns why [MQTT-3.1.4-2].
        if let Some(will) = &connect.will {
            let identity = ClientIdentity {
                client_id: &client_id,
                username: username.as_deref(),
            };
            let allowed = self.auth.authorize_publish(&identity, &will.topic)
                && permissions
                    .as_mut()
                    .is_none_or(|p| p.may_publish(&will.topic));
            if !allowed {
                let termination = Termination::WillNotAuthorized;
                self.refuse_connect(connection, &connect, &info, &termination);
                return;
            }
        }

        let requested_expiry = match protocol {
            ProtocolVersion::V5 => connect.properties.session_expiry_interval.unwrap_or(0),
            // 3.1.1: a clean session ends with the connection, otherwise it lasts forever.
            _ if connect.clean_start => 0,
            _ => u32::MAX,
        };
        let expiry = requested_expiry.min(self.config.max_session_expiry);

        // Only a 5.0 client can be told to use another keep alive (Server Keep Alive in the
        // CONNACK); an older one goes on pinging at its own pace, so its own value is the one to
        // enforce [MQTT-3.2.2-22].
        // A cap (`max_keep_alive`) is told the same way; an older client above it was refused.
        let keep_alive = match (self.config.server_keep_alive, self.config.max_keep_alive) {
            (Some(server_keep_alive), _) if protocol.is_v5() => server_keep_alive,
            (None, Some(maximum))
                if protocol.is_v5()
                    && (connect.keep_alive == 0 || connect.keep_alive > maximum) =>
            {
                maximum
            }
            _ => connect.keep_alive,
        };
        let mut ack_properties = auth_properties;
        if protocol.is_v5() {
            if assigned {
                ack_properties.assigned_client_identifier = Some(client_id.clone());
            }
            if expiry != requested_expiry {
                ack_properties.session_expiry_interval = Some(expiry);
            }
            self.state_limits(&mut ack_properties);
            if keep_alive != connect.keep_alive {
                // The client must use it instead of its own [MQTT-3.2.2-21].
                ack_properties.server_keep_alive = Some(keep_alive);
            }
            if connect.properties.request_response_information == Some(1) {
                ack_properties.response_information =
                    Some(ByteStr::from(format!("response/{client_id}")));
            }
            if let Some(node) = &self.config.node_name {
                ack_properties
                    .user_properties
                    .push((ByteStr::from("node"), ByteStr::from(node.as_str())));
            }
        }
        // The CONNACK must come before anything else [MQTT-3.2.0-1] and within the client's
        // Maximum Packet Size [MQTT-3.1.2-24]: a client whose maximum leaves no room for it even
        // without Reason String and User Properties is refused (0x95), before it takes over a
        // connection or a session, rather than accepted without a CONNACK.
        if let Some(maximum) = connect.properties.maximum_packet_size {
            let mut bare = ack_properties.clone();
            bare.reason_string = None;
            bare.user_properties.clear();
            let connack = Packet::ConnAck(ConnAckPacket {
                session_present: false,
                reason_code: ReasonCode::Success,
                properties: bare,
            });
            let size = encoded_len(&connack, protocol).unwrap_or(usize::MAX);
            if size > maximum as usize {
                let termination = Termination::ConnAckTooLarge { size, maximum };
                self.refuse_connect(connection, &connect, &info, &termination);
                return;
            }
        }

        // Take over an existing connection with the same identifier [MQTT-3.1.4-3].
        let existing = self.sessions.find(&client_id);
        if let Some(key) = existing
            && let Some(older) = self.sessions.get(key).connection
        {
            let old_peer = self
                .connections
                .get(&older)
                .map(|c| c.info.remote_address.clone())
                .unwrap_or_default();
            info!(
                client_id = %client_id,
                "client {client_id:?} connected again from {} ({}); closing its older connection from {old_peer} (session taken over)",
                info.remote_address, connection
            );
            self.terminate(older, Termination::SessionTakenOver, now);
        }

        // The takeover may have ended the older session (expiry 0), so look again.
        let (key, session_present) = match self.sessions.find(&client_id) {
            Some(key) if !connect.clean_start => (key, true),
            Some(key) => {
                self.remove_session(key);
                (self.sessions.create(client_id.clone(), protocol), false)
            }
            None => (self.sessions.create(client_id.clone(), protocol), false),
        };
        self.sessions.next_generation(key);
        let session = self.sessions.get_mut(key);
        session.connection = Some(connection);
        session.expiry_interval = expiry;
        session.protocol = protocol;
        // A reconnect before the will delay elapsed cancels the will [MQTT-3.1.3-9].
        session.pending_will = None;
        session.expires_at = None;

        let properties = &connect.properties;
        let conn = Connection {
            session: key,
            info,
            protocol,
            username,
            connected_at: now,
            last_activity: now,
            keep_alive,
            will: connect.will.as_ref().map(detached_will),
            receive_maximum: properties.receive_maximum.unwrap_or(u16::MAX),
            maximum_packet_size: properties.maximum_packet_size,
            topic_alias_maximum: properties.topic_alias_maximum.unwrap_or(0),
            outbound_aliases: LazyMap::new(),
            inbound_aliases: LazyMap::new(),
            authentication_method: properties.authentication_method.clone().map(Box::new),
            requested_session_expiry: requested_expiry,
            held_acks: 0,
            owed_resends: 0,
            access: permissions.map(|permissions| {
                Box::new(Access {
                    permissions: Some(permissions),
                    refusals_logged: LazySet::new(),
                })
            }),
        };
        if keep_alive > 0 {
            self.timers
                .schedule(conn.keep_alive_deadline(), TimerKind::KeepAlive(connection));
        }
        if let Some(at) = valid_until {
            self.timers
                .schedule(at, TimerKind::CredentialsExpiry(connection));
        }
        self.connections.insert(connection, Box::new(conn));
        // Connected, with the connection's will: what a restart after a crash goes by.
        self.record_session(key, None);
        self.stats.clients_maximum = self
            .stats
            .clients_maximum
            .max(self.connections.len() as u64);

        let connack = Packet::ConnAck(ConnAckPacket {
            session_present,
            reason_code: ReasonCode::Success,
            properties: ack_properties,
        });
        self.emit(connection, &connack);
        self.resume(key, now);
    }

    /// The broker's limits, as a 5.0 CONNACK states those that differ from the defaults.
    fn state_limits(&self, properties: &mut Properties) {
        let config = &self.config;
        if config.receive_maximum != u16::MAX {
            properties.receive_maximum = Some(config.receive_maximum);
        }
        properties.maximum_packet_size = Some(config.max_packet_size);
        if config.topic_alias_maximum > 0 {
            properties.topic_alias_maximum = Some(config.topic_alias_maximum);
        }
        if !config.retain_available {
            properties.retain_available = Some(0);
        }
        if let Some(server_keep_alive) = config.server_keep_alive {
            properties.server_keep_alive = Some(server_keep_alive);
        }
    }
}

/// A copy of a will that shares nothing with the CONNECT's read buffer; it lives as long as the
/// connection (or its will delay).
fn detached_will(will: &Will) -> Box<Will> {
    Box::new(Will {
        topic: will.topic.detached(),
        payload: Bytes::copy_from_slice(&will.payload),
        ..will.clone()
    })
}

/// Adds the CONNECT's authentication method to AUTH/CONNACK properties [MQTT-4.12.0-5].
pub(super) fn with_method(mut properties: Properties, connect: &ConnectPacket) -> Properties {
    if properties.authentication_method.is_none() {
        properties.authentication_method = connect.properties.authentication_method.clone();
    }
    properties
}
