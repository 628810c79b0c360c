//! One message to one session: sent now, put in flight, or queued; and the PUBACK, PUBREC,
//! PUBREL and PUBCOMP that move the in-flight window along.
//!
//! A delivery looks the receiving session and its connection up once ([`Broker::delivery_to`])
//! and works on what it found through a [`Delivery`], which borrows the rest of the broker that a
//! delivery touches: the limits, the output queue and the counters. Every PUBLISH to a client
//! leaves through [`Delivery::transmit`] (or, for a QoS 0 message whose bytes are shared by
//! many receivers, [`Delivery::send_shared`]), and its size is checked once, on the encoded
//! bytes, in [`Outputs`].

use super::changes::{Change, Changes};
use super::connection::{Connection, OutboundAlias};
use super::output::{FrameKind, Outputs, SharedFrames};
use super::timers::seconds_until;
use super::{Broker, ConnectionId};
use crate::config::BrokerConfig;
use crate::session::{InflightMessage, KeptPublish, QueuedMessage, Session, SessionKey};
use crate::stats::{DropReason, Stats};
use mqtt_codec::{Packet, PubAckPacket, PublishPacket, QoS, ReasonCode};
use std::time::Instant;
use tracing::warn;

/// The parts of the broker a delivery changes, borrowed for its duration.
pub(super) struct Delivery<'a> {
    config: &'a BrokerConfig,
    outputs: &'a mut Outputs,
    stats: &'a mut Stats,
    congested: &'a mut bool,
    changes: &'a mut Changes,
}

/// The receiving session, and its connection if it is online.
pub(super) struct Target<'a> {
    pub session: &'a mut Session,
    pub online: Option<(ConnectionId, &'a mut Connection)>,
}

impl Broker {
    /// The receiving side of a delivery to `key`, looked up once, and the rest of the broker
    /// that the delivery changes.
    pub(super) fn delivery_to(&mut self, key: SessionKey) -> (Delivery<'_>, Target<'_>) {
        let session = self.sessions.get_mut(key);
        let online = session.connection.and_then(|connection| {
            let conn = self.connections.get_mut(&connection)?;
            Some((connection, &mut **conn))
        });
        let delivery = Delivery {
            config: &self.config,
            outputs: &mut self.outputs,
            stats: &mut self.stats,
            congested: &mut self.congested,
            changes: &mut self.changes,
        };
        (delivery, Target { session, online })
    }

    /// Hands one message to a session: sent now if its window allows, else queued.
    pub(super) fn deliver(
        &mut self,
        key: SessionKey,
        publish: PublishPacket,
        expires_at: Option<Instant>,
        now: Instant,
    ) {
        let (mut delivery, target) = self.delivery_to(key);
        delivery.deliver(target, publish, expires_at, now, &mut None);
    }

    /// Resumes a session on its new connection: unacknowledged messages are sent again with
    /// DUP, in their original order, then the queue drains into the window [MQTT-4.4.0-1]. A
    /// window larger than the new connection's Receive Maximum is sent again as far as it
    /// allows, the rest as acknowledgements make room [MQTT-3.3.4-9].
    pub(super) fn resume(&mut self, key: SessionKey, now: Instant) {
        let (mut delivery, target) = self.delivery_to(key);
        let Target {
            session,
            online: Some((connection, conn)),
        } = target
        else {
            return;
        };
        conn.owed_resends = session.inflight.len();
        delivery.drain(session, connection, conn, now);
    }

    /// Moves queued messages into the window of `key`'s connection while it has room.
    fn drain_queue(&mut self, key: SessionKey, now: Instant) {
        let (mut delivery, target) = self.delivery_to(key);
        if let Some((connection, conn)) = target.online {
            delivery.drain(target.session, connection, conn, now);
        }
    }

    pub(super) fn handle_puback(
        &mut self,
        connection: ConnectionId,
        ack: PubAckPacket,
        now: Instant,
    ) {
        self.complete_inflight(connection, ack.packet_id, QoS::AtLeastOnce, now);
    }

    pub(super) fn handle_pubcomp(
        &mut self,
        connection: ConnectionId,
        ack: PubAckPacket,
        now: Instant,
    ) {
        self.complete_inflight(connection, ack.packet_id, QoS::ExactlyOnce, now);
    }

    /// The last acknowledgement of a message in flight (PUBACK for QoS 1, PUBCOMP for QoS 2):
    /// it leaves the window, and the queue moves up.
    fn complete_inflight(
        &mut self,
        connection: ConnectionId,
        packet_id: u16,
        qos: QoS,
        now: Instant,
    ) {
        let conn = self
            .connections
            .get_mut(&connection)
            .expect("caller checked");
        let key = conn.session;
        let session = self.sessions.get_mut(key);
        if let Some(position) = session.inflight_position(packet_id)
            && session.inflight[position].message.publish.qos == qos
        {
            forget_owed(conn, session, position);
            let removed = session
                .inflight
                .remove(position)
                .expect("position in range");
            if session.recorded {
                self.changes.push(Change::Completed {
                    session: session.store_id,
                    entry: removed.message.entry,
                });
            }
            self.drain_queue(key, now);
        }
    }

    pub(super) fn handle_pubrec(
        &mut self,
        connection: ConnectionId,
        ack: PubAckPacket,
        now: Instant,
    ) {
        let conn = self
            .connections
            .get_mut(&connection)
            .expect("caller checked");
        let key = conn.session;
        let session = self.sessions.get_mut(key);
        // Only a QoS 2 message has a PUBREC; one for a QoS 1 message in flight is answered as
        // for an unknown identifier, and that message still waits for its PUBACK.
        let position = session
            .inflight_position(ack.packet_id)
            .filter(|&p| session.inflight[p].message.publish.qos == QoS::ExactlyOnce);
        let Some(position) = position else {
            let mut answer = PubAckPacket::new(ack.packet_id);
            answer.reason_code = ReasonCode::PacketIdentifierNotFound;
            self.emit(connection, &Packet::PubRel(answer));
            return;
        };
        let (recorded, store_id) = (session.recorded, session.store_id);
        // Once released, the message was accepted by an earlier PUBREC and the exchange waits
        // for PUBCOMP; a later PUBREC, whatever its code, is answered with the PUBREL again
        // rather than ending an exchange whose PUBREL may already be on its way.
        if ack.reason_code.is_error() && !session.inflight[position].released {
            // The receiver refused the message: the exchange ends here, and the message is
            // not sent again [MQTT-4.3.3-4] [MQTT-4.4.0-2].
            forget_owed(conn, session, position);
            let removed = session
                .inflight
                .remove(position)
                .expect("position in range");
            if recorded {
                let entry = removed.message.entry;
                self.changes.push(Change::Completed {
                    session: store_id,
                    entry,
                });
            }
            self.drain_queue(key, now);
            return;
        }
        // A message still owed a resend gets its PUBREL when its turn comes, not now: until
        // then it does not count towards what the client has in flight.
        let owed = position >= session.inflight.len() - conn.owed_resends;
        let inflight = &mut session.inflight[position];
        let promises_changes = !inflight.released && recorded;
        if promises_changes {
            let entry = inflight.message.entry;
            self.changes.push(Change::Released {
                session: store_id,
                entry,
            });
        }
        inflight.released = true;
        if owed {
            return;
        }
        // The receiver forgets the packet identifier at PUBREL: were the release lost in a
        // crash, the PUBLISH sent again after the restart would be a new message to it.
        let pubrel = Packet::PubRel(PubAckPacket::new(ack.packet_id));
        self.acknowledge(connection, pubrel, promises_changes);
    }

    pub(super) fn handle_pubrel(&mut self, connection: ConnectionId, ack: PubAckPacket) {
        let conn = &self.connections[&connection];
        let session = self.sessions.get_mut(conn.session);
        let known = session.inbound_qos2.remove(&ack.packet_id);
        let promises_changes = known && session.recorded;
        if promises_changes {
            self.changes.push(Change::Qos2Released {
                session: session.store_id,
                packet_id: ack.packet_id,
            });
        }
        let mut answer = PubAckPacket::new(ack.packet_id);
        if !known && conn.protocol.is_v5() {
            answer.reason_code = ReasonCode::PacketIdentifierNotFound;
        }
        // After PUBCOMP the client may reuse the identifier for a new message: were the
        // release lost in a crash, that message would be taken for a duplicate and dropped.
        self.acknowledge(connection, Packet::PubComp(answer), promises_changes);
    }
}

/// An in-flight message at `position` leaves the window: if it was still owed a resend on this
/// connection, one fewer is owed.
fn forget_owed(conn: &mut Connection, session: &Session, position: usize) {
    if position >= session.inflight.len() - conn.owed_resends {
        conn.owed_resends -= 1;
    }
}

impl Delivery<'_> {
    /// Hands one message to the target session: sent now if its window allows, else queued.
    /// `stored` is the [`Change::Message`] recorded for an earlier copy of the same message, if
    /// any: a recorded session's entry refers to it, or records it first.
    pub fn deliver(
        &mut self,
        target: Target<'_>,
        publish: PublishPacket,
        expires_at: Option<Instant>,
        now: Instant,
        stored: &mut Option<u64>,
    ) {
        let Target { session, online } = target;
        let Some((connection, conn)) = online else {
            if publish.qos == QoS::AtMostOnce {
                self.stats.record_drop(DropReason::Offline);
            } else {
                let message = QueuedMessage {
                    entry: session.new_entry(),
                    publish: KeptPublish::new(publish),
                    expires_at,
                };
                self.enqueue(session, message, stored);
            }
            return;
        };
        if !conn.may_receive(&publish.topic) {
            self.stats.record_drop(DropReason::NotAuthorized);
            return;
        }
        if publish.qos == QoS::AtMostOnce {
            self.transmit(connection, conn, publish, expires_at, now);
            return;
        }
        let message = QueuedMessage {
            entry: session.new_entry(),
            publish: KeptPublish::new(publish),
            expires_at,
        };
        if session.queue.is_empty()
            && session.inflight.len() < conn.window(self.config.max_inflight)
        {
            if let Some(packet_id) = self.start_inflight(session, connection, conn, message, now) {
                let sent = &session.inflight.back().expect("just sent").message;
                self.record_entry(session, sent, stored, Some(packet_id));
            }
        } else {
            self.enqueue(session, message, stored);
        }
    }

    /// Records a new entry of a recorded session: the [`Change::Message`] first if no other
    /// session recorded this message yet, then the [`Change::Queued`] entry referring to it.
    /// `message` is the entry as queued or sent.
    fn record_entry(
        &mut self,
        session: &Session,
        message: &QueuedMessage,
        stored: &mut Option<u64>,
        packet_id: Option<u16>,
    ) {
        if !session.recorded {
            return;
        }
        let publish = &message.publish;
        let id = match *stored {
            Some(id) => id,
            None => {
                let id = self.changes.next_message_id();
                self.changes.push(Change::Message {
                    id,
                    publish: publish.clone(),
                    expires_at: message.expires_at,
                });
                *stored = Some(id);
                id
            }
        };
        self.changes.push(Change::Queued {
            session: session.store_id,
            entry: message.entry,
            message: id,
            qos: publish.qos,
            retain: publish.retain,
            identifiers: publish.subscription_identifiers().to_vec(),
            packet_id,
        });
    }

    /// Records that an entry of a recorded session left it.
    fn record_completed(&mut self, session: &Session, entry: u64) {
        if session.recorded {
            self.changes.push(Change::Completed {
                session: session.store_id,
                entry,
            });
        }
    }

    fn enqueue(&mut self, session: &mut Session, message: QueuedMessage, stored: &mut Option<u64>) {
        let max_messages = self.config.max_queued_messages;
        let max_bytes = self.config.max_queued_bytes;
        if session.queue.len() >= max_messages
            || session.queued_bytes + message.publish.payload.len() > max_bytes
        {
            if !session.overflow_logged {
                session.overflow_logged = true;
                warn!(
                    client_id = %session.client_id,
                    "queue of client {:?} is full ({} messages, {} bytes); dropping new messages until it drains",
                    session.client_id.as_str(), session.queue.len(), session.queued_bytes
                );
            }
            self.stats.record_drop(DropReason::QueueFull);
            return;
        }
        self.record_entry(session, &message, stored, None);
        session.push_queue(message);
        // An online client whose queue is half full is not keeping up: ask the gateway to slow
        // the publisher down before messages have to be dropped. Offline queues do not count,
        // or one absent client would slow every publisher.
        if session.connection.is_some()
            && (session.queue.len() * 2 >= max_messages || session.queued_bytes * 2 >= max_bytes)
        {
            *self.congested = true;
        }
    }

    /// Moves queued messages into the window while it has room.
    fn drain(
        &mut self,
        session: &mut Session,
        connection: ConnectionId,
        conn: &mut Connection,
        now: Instant,
    ) {
        let window = conn.window(self.config.max_inflight);
        // First what an earlier connection left in flight, in its order, as far as the window
        // allows; the queue waits until it all went out again.
        while conn.owed_resends > 0 && session.inflight.len() - conn.owed_resends < window {
            let index = session.inflight.len() - conn.owed_resends;
            conn.owed_resends -= 1;
            let inflight = &session.inflight[index];
            if inflight.released {
                let pubrel = Packet::PubRel(PubAckPacket::new(inflight.packet_id));
                let maximum = conn.maximum_packet_size;
                self.outputs
                    .send(connection, conn.protocol, maximum, &pubrel);
                continue;
            }
            let mut publish = inflight.message.publish.to_packet();
            publish.dup = true;
            publish.packet_id = Some(inflight.packet_id);
            // Sent once already, so it no longer expires [MQTT-4.3.3-7]; the client still
            // learns how much of the interval is left [MQTT-3.3.2-6].
            if let Some(at) = inflight.message.expires_at {
                publish.properties.message_expiry_interval = Some(seconds_until(now, at).max(1));
            }
            if !self.transmit(connection, conn, publish, None, now) {
                // Too large for the client's new Maximum Packet Size: discarded as if its
                // delivery had completed [MQTT-3.1.2-25].
                let removed = session.inflight.remove(index).expect("index in range");
                self.record_completed(session, removed.message.entry);
            }
        }
        while session.inflight.len() < window {
            let Some(message) = session.pop_queue() else {
                break;
            };
            let entry = message.entry;
            // Queued while the client was away, so not checked against its permissions yet.
            if !conn.may_receive(&message.publish.topic) {
                self.stats.record_drop(DropReason::NotAuthorized);
                self.record_completed(session, entry);
                continue;
            }
            match self.start_inflight(session, connection, conn, message, now) {
                Some(packet_id) if session.recorded => {
                    self.changes.push(Change::Sent {
                        session: session.store_id,
                        entry,
                        packet_id,
                    });
                }
                Some(_) => {}
                None => self.record_completed(session, entry),
            }
        }
    }

    /// Assigns a packet identifier and sends the message; it stays in flight if it was sent,
    /// and its packet identifier is returned.
    fn start_inflight(
        &mut self,
        session: &mut Session,
        connection: ConnectionId,
        conn: &mut Connection,
        message: QueuedMessage,
        now: Instant,
    ) -> Option<u16> {
        let packet_id = session.allocate_packet_id(message.entry);
        let mut publish = message.publish.to_packet();
        publish.packet_id = Some(packet_id);
        if !self.transmit(connection, conn, publish, message.expires_at, now) {
            return None;
        }
        session.inflight.push_back(InflightMessage {
            packet_id,
            message,
            released: false,
        });
        Some(packet_id)
    }

    /// Writes a PUBLISH to a connection, with its remaining expiry and a topic alias where the
    /// client takes them. Returns whether it was sent: an expired message, or one larger than
    /// the client's Maximum Packet Size, is dropped and counted.
    pub fn transmit(
        &mut self,
        connection: ConnectionId,
        conn: &mut Connection,
        mut publish: PublishPacket,
        expires_at: Option<Instant>,
        now: Instant,
    ) -> bool {
        if let Some(at) = expires_at {
            if at <= now {
                self.stats.record_drop(DropReason::Expired);
                return false;
            }
            // The receiver sees how long is left, not the original interval [MQTT-3.3.2-6].
            publish.properties.message_expiry_interval = Some(seconds_until(now, at));
        }
        let (protocol, maximum) = (conn.protocol, conn.maximum_packet_size);
        let Some(alias) = conn.outbound_alias(&publish.topic) else {
            let packet = Packet::Publish(publish);
            return self.send_or_drop(connection, conn, &packet);
        };
        let topic = publish.topic.clone();
        let value = match alias {
            OutboundAlias::Known(value) => {
                // A known alias stands for the topic.
                publish.topic = Default::default();
                value
            }
            OutboundAlias::New(value) => value,
        };
        publish.properties.topic_alias = Some(value);
        let mut packet = Packet::Publish(publish);
        if self
            .outputs
            .send_publish(connection, protocol, maximum, &packet)
            .is_ok()
        {
            if alias == OutboundAlias::New(value) {
                conn.outbound_aliases.insert(topic.detached(), value);
            }
            return true;
        }
        // An alias can make a packet longer than the topic it stands for: a message near the
        // limit goes without one [MQTT-3.1.2-24].
        if let Packet::Publish(publish) = &mut packet {
            publish.topic = topic;
            publish.properties.topic_alias = None;
        }
        self.send_or_drop(connection, conn, &packet)
    }

    /// Sends a PUBLISH as it is, or counts it dropped if it is too large for the client.
    fn send_or_drop(
        &mut self,
        connection: ConnectionId,
        conn: &Connection,
        packet: &Packet,
    ) -> bool {
        let sent =
            self.outputs
                .send_publish(connection, conn.protocol, conn.maximum_packet_size, packet);
        if sent.is_err() {
            self.stats.record_drop(DropReason::PacketTooLarge);
        }
        sent.is_ok()
    }

    /// Sends a plain QoS 0 copy of `publish` (see [`Connection::takes_plain_frames`]), encoding
    /// it only for the first receiver of each protocol version and retain flag.
    pub fn send_shared(
        &mut self,
        connection: ConnectionId,
        conn: &mut Connection,
        publish: &PublishPacket,
        retain: bool,
        shared: &mut SharedFrames,
    ) {
        if !conn.may_receive(&publish.topic) {
            self.stats.record_drop(DropReason::NotAuthorized);
            return;
        }
        let slot = shared.slot(conn.protocol, retain);
        let bytes = match slot {
            Some(bytes) => bytes.clone(),
            None => {
                let mut copy = publish.clone();
                copy.qos = QoS::AtMostOnce;
                copy.retain = retain;
                copy.properties.subscription_identifiers.clear();
                let Some(bytes) = self.outputs.encode(&Packet::Publish(copy), conn.protocol) else {
                    return;
                };
                *slot = Some(bytes.clone());
                bytes
            }
        };
        let kind = FrameKind::Publish {
            qos: QoS::AtMostOnce,
            sets_alias: false,
        };
        let sent = self.outputs.send_encoded_publish(
            connection,
            conn.protocol,
            conn.maximum_packet_size,
            bytes,
            kind,
            publish.payload.len(),
        );
        if sent.is_err() {
            // A QoS 0 message beyond the client's maximum is dropped for it alone
            // [MQTT-3.1.2-25].
            self.stats.record_drop(DropReason::PacketTooLarge);
        }
    }
}
