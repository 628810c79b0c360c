//! How connections and sessions end: a client's DISCONNECT, the broker's own termination of a
//! connection, the separation of a connection from its session, wills, and session removal.

use super::changes::Change;
use super::termination::Termination;
use super::timers::TimerKind;
use super::{Broker, ConnectionId};
use crate::session::SessionKey;
use mqtt_codec::{
    ByteStr, DisconnectPacket, Packet, Properties, ProtocolVersion, PublishPacket, ReasonCode, Will,
};
use std::time::{Duration, Instant};
use tracing::warn;

impl Broker {
    /// A client's DISCONNECT: the connection closes, with its will only if the reason asks.
    pub(super) fn handle_disconnect(
        &mut self,
        connection: ConnectionId,
        disconnect: DisconnectPacket,
        now: Instant,
    ) -> Result<(), Termination> {
        let conn = &self.connections[&connection];
        if let Some(expiry) = disconnect.properties.session_expiry_interval {
            // The rule is about what the CONNECT said, not what the broker granted: a client
            // whose request was capped to 0 may still name an interval here (spec 3.14.2.2.2).
            if conn.requested_session_expiry == 0 && expiry != 0 {
                return Err(Termination::SessionExpiryAfterZero);
            }
            let granted = expiry.min(self.config.max_session_expiry);
            self.sessions.get_mut(conn.session).expiry_interval = granted;
        }
        // A normal DISCONNECT discards the will; reason 0x04 asks for it [MQTT-3.14.4-3].
        let publish_will = disconnect.reason_code == ReasonCode::DisconnectWithWillMessage;
        self.outputs.close(connection);
        self.detach(connection, publish_will, now);
        Ok(())
    }

    /// Closes `connection` from the broker's side: DISCONNECT with the reason for 5.0 clients,
    /// one log line, the will published, the connection forgotten.
    pub(super) fn terminate(
        &mut self,
        connection: ConnectionId,
        termination: Termination,
        now: Instant,
    ) {
        // A connection still in enhanced authentication has had no CONNACK, and no DISCONNECT
        // may come before one [MQTT-3.14.0-1]: it is refused with a CONNACK [MQTT-4.12.0-4].
        if let Some(pending) = self.pending_authentications.remove(&connection) {
            self.refuse_connect(connection, &pending.connect, &pending.info, &termination);
            return;
        }
        let reason = termination.reason_code();
        let client_id = self.client_id(connection).unwrap_or("").to_string();
        let protocol = self.connections.get(&connection).map(|c| c.protocol);
        if !matches!(termination, Termination::SessionTakenOver) {
            warn!(
                connection = %connection,
                client_id = %client_id,
                "disconnecting client {client_id:?}: {reason}: {termination}"
            );
        }
        if protocol == Some(ProtocolVersion::V5) {
            let properties = Properties {
                reason_string: Some(ByteStr::from(termination.to_string())),
                ..Properties::default()
            };
            let disconnect = Packet::Disconnect(DisconnectPacket {
                reason_code: reason,
                properties,
            });
            self.emit(connection, &disconnect);
        }
        self.outputs.close(connection);
        if self.connections.contains_key(&connection) {
            self.detach(connection, true, now);
        }
    }

    /// Separates a connection from its session: the will goes out (or waits for its delay) if
    /// `publish_will`, and the session ends or starts its expiry countdown.
    pub(super) fn detach(&mut self, connection: ConnectionId, publish_will: bool, now: Instant) {
        let Some(conn) = self.connections.remove(&connection) else {
            return;
        };
        let key = conn.session;
        let generation = self.sessions.next_generation(key);
        let session = self.sessions.get_mut(key);
        session.connection = None;
        let expiry = session.expiry_interval;

        let mut will_at = None;
        if publish_will && let Some(will) = conn.will {
            let delay = will.properties.will_delay_interval.unwrap_or(0);
            if delay == 0 || expiry == 0 {
                self.publish_will(will, now);
            } else {
                // Published when the delay passes or the session ends, whichever is first
                // [MQTT-3.1.3-9].
                let at = now + Duration::from_secs(u64::from(delay.min(expiry)));
                will_at = Some(at);
                self.sessions.get_mut(key).pending_will = Some(will);
                self.timers.schedule(
                    at,
                    TimerKind::WillDelay {
                        session: key,
                        generation,
                    },
                );
            }
        }

        match expiry {
            0 => {
                self.remove_session(key);
                return;
            }
            u32::MAX => {}
            seconds => {
                let at = now + Duration::from_secs(u64::from(seconds));
                self.sessions.get_mut(key).expires_at = Some(at);
                let kind = TimerKind::SessionExpiry {
                    session: key,
                    generation,
                };
                self.timers.schedule(at, kind);
            }
        }
        self.record_session(key, will_at);
    }

    /// Publishes a will as a message from no session (so No Local spares nobody).
    pub(super) fn publish_will(&mut self, will: Box<Will>, now: Instant) {
        let will = *will;
        let mut properties = will.properties;
        // What only a will or only the hop from its client has does not travel on.
        properties.will_delay_interval = None;
        properties.topic_alias = None;
        properties.subscription_identifiers.clear();
        let publish = PublishPacket {
            dup: false,
            qos: will.qos,
            retain: will.retain,
            topic: will.topic,
            packet_id: None,
            properties,
            payload: will.payload,
        };
        self.forward(&publish);
        self.publish_message(None, publish, now);
    }

    /// Deletes a session and everything it subscribed to.
    pub(super) fn remove_session(&mut self, key: SessionKey) {
        let Some(session) = self.sessions.remove(key) else {
            return;
        };
        if session.recorded {
            let removed = Change::SessionRemoved {
                session: session.store_id,
            };
            self.changes.push(removed);
        }
        for filter in session.subscriptions.keys() {
            self.subscriptions.remove(key, filter);
        }
    }
}
