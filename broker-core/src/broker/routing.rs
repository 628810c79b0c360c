//! A PUBLISH from a client: its topic alias resolved, its topic and QoS 2 state checked, its
//! publication authorized and acknowledged; and any message (a client's, a will, `$SYS`)
//! retained and routed to every matching subscription, one copy per session.

use super::changes::Change;
use super::delivery::Target;
use super::limits;
use super::output::SharedFrames;
use super::subscriptions::Match;
use super::termination::Termination;
use super::{Broker, ConnectionId};
use crate::auth::ClientIdentity;
use crate::session::SessionKey;
use mqtt_codec::{
    Packet, Properties, ProtocolVersion, PubAckPacket, PublishPacket, QoS, ReasonCode, topic,
};
use std::time::{Duration, Instant};
use tracing::{debug, warn};

impl Broker {
    /// A PUBLISH from a client.
    pub(super) fn handle_publish(
        &mut self,
        connection: ConnectionId,
        mut publish: PublishPacket,
        now: Instant,
    ) -> Result<(), Termination> {
        let conn = self
            .connections
            .get_mut(&connection)
            .expect("caller checked");
        let protocol = conn.protocol;
        if !publish.properties.subscription_identifiers.is_empty() {
            return Err(Termination::SubscriptionIdentifierFromClient);
        }
        // The configured bounds, before the topic is kept for an alias.
        let over_limit = if publish.topic.is_empty() {
            // An alias's topic was checked when it was set.
            None
        } else {
            limits::check_topic(&self.config, &publish.topic, false)
                .err()
                .map(Termination::TopicNameOverLimit)
        };
        let over_limit = over_limit.or_else(|| {
            (!limits::user_properties_within(&self.config, [&publish.properties]))
                .then_some(Termination::UserPropertiesOverLimit)
        });
        if let Some(termination) = over_limit {
            return self.refuse_publish(connection, protocol, &publish, termination);
        }
        let conn = self
            .connections
            .get_mut(&connection)
            .expect("caller checked");

        // Resolve the topic alias before anything looks at the topic [MQTT-3.3.2-12].
        if let Some(alias) = publish.properties.topic_alias.take() {
            let maximum = self.config.topic_alias_maximum;
            if alias == 0 || alias > maximum {
                return Err(Termination::TopicAliasOutOfRange { alias, maximum });
            }
            if publish.topic.is_empty() {
                match conn.inbound_aliases.get(&alias) {
                    Some(topic) => publish.topic = topic.clone(),
                    None => return Err(Termination::TopicAliasUnknown(alias)),
                }
            } else {
                conn.inbound_aliases.insert(alias, publish.topic.detached());
            }
        }
        if let Err(error) = topic::validate_topic_name(&publish.topic) {
            return Err(Termination::TopicNameInvalid(error));
        }
        if publish.retain && !self.config.retain_available {
            return Err(Termination::RetainUnavailable);
        }

        let key = conn.session;
        let qos = publish.qos;
        let packet_id = publish.packet_id;
        self.stats.publish_received[qos as usize] += 1;
        self.stats.publish_bytes_received[qos as usize] += publish.payload.len() as u64;

        if qos == QoS::ExactlyOnce {
            let id = packet_id.expect("codec guarantees an id for QoS 2");
            let inbound = &self.sessions.get(key).inbound_qos2;
            if inbound.contains(&id) {
                // A resent PUBLISH whose first copy was delivered: acknowledge again, deliver
                // nothing [MQTT-4.3.3-10].
                self.acknowledge(connection, Packet::PubRec(PubAckPacket::new(id)), false);
                return Ok(());
            }
            let maximum = self.config.receive_maximum;
            if inbound.len() >= usize::from(maximum) {
                return Err(Termination::ReceiveMaximumExceeded(maximum));
            }
        }

        // Borrowed field by field, and the connection looked up once: no reference count is
        // touched on this path, which every message takes.
        let client_id = self.sessions.get(key).client_id.as_str();
        let identity = ClientIdentity {
            client_id,
            username: conn.username.as_deref(),
        };
        let allowed = self.auth.authorize_publish(&identity, &publish.topic)
            && conn.may_publish(&publish.topic);
        let mut reason = ReasonCode::Success;
        let changes_before = self.changes.total();
        if allowed {
            if qos != QoS::AtMostOnce && !self.changes.writable() && self.must_store(&publish) {
                // Acknowledging it would promise what the store cannot keep.
                if !protocol.is_v5() {
                    return Err(Termination::StoreUnavailable);
                }
                reason = ReasonCode::QuotaExceeded;
            } else {
                publish.dup = false;
                publish.packet_id = None;
                self.forward(&publish);
                let reached = self.publish_message(Some(key), publish, now);
                // Other nodes of a cluster may have subscribers: this one cannot tell.
                if reached == 0 && protocol.is_v5() && self.forwards.is_none() {
                    reason = ReasonCode::NoMatchingSubscribers;
                }
            }
        } else {
            if conn.first_refusal(&publish.topic) {
                warn!(
                    client_id = %client_id,
                    "publish to {:?} not authorized (logged once per client and topic)",
                    publish.topic.as_str()
                );
            }
            reason = ReasonCode::NotAuthorized;
        }

        let ack = |id| PubAckPacket {
            packet_id: id,
            reason_code: if protocol.is_v5() {
                reason
            } else {
                ReasonCode::Success
            },
            properties: Properties::default(),
        };
        let packet = match (qos, packet_id) {
            (QoS::AtLeastOnce, Some(id)) => Packet::PubAck(ack(id)),
            (QoS::ExactlyOnce, Some(id)) => {
                let session = self.sessions.get_mut(key);
                if !reason.is_error() {
                    session.inbound_qos2.insert(id);
                    if session.recorded {
                        self.changes.push(Change::Qos2Received {
                            session: session.store_id,
                            packet_id: id,
                        });
                    }
                }
                Packet::PubRec(ack(id))
            }
            _ => return Ok(()),
        };
        // Sent once what it promises is durable: the message in the sessions and retained set
        // it reached, and for QoS 2 that its packet identifier was seen.
        let promises_changes = self.changes.total() > changes_before;
        self.acknowledge(connection, packet, promises_changes);
        Ok(())
    }

    /// Refuses a PUBLISH beyond a configured bound. A 5.0 QoS 1/2 one is answered in its
    /// PUBACK/PUBREC, which concerns that packet alone (spec 4.13.2); nothing else can carry
    /// the reason (a QoS 0 PUBLISH has no acknowledgement, 3.1.1 none that refuses), so then
    /// the connection ends with `termination`.
    fn refuse_publish(
        &mut self,
        connection: ConnectionId,
        protocol: ProtocolVersion,
        publish: &PublishPacket,
        termination: Termination,
    ) -> Result<(), Termination> {
        let (true, Some(packet_id)) = (protocol.is_v5(), publish.packet_id) else {
            return Err(termination);
        };
        debug!(connection = %connection, "PUBLISH refused: {termination}");
        let ack = PubAckPacket {
            packet_id,
            reason_code: termination.reason_code(),
            properties: Properties::default(),
        };
        let packet = match publish.qos {
            QoS::ExactlyOnce => Packet::PubRec(ack),
            _ => Packet::PubAck(ack),
        };
        self.acknowledge(connection, packet, false);
        Ok(())
    }

    /// Whether a message would have to be stored: it is retained, or a recorded session
    /// subscribes to it at QoS 1 or 2.
    fn must_store(&mut self, publish: &PublishPacket) -> bool {
        if publish.retain && !publish.topic.starts_with('$') {
            return true;
        }
        let mut matches = std::mem::take(&mut self.matches);
        matches.clear();
        self.subscriptions
            .collect_matches(&publish.topic, None, &self.sessions, &mut matches);
        let stored = matches
            .iter()
            .any(|m| m.options.qos != QoS::AtMostOnce && self.sessions.get(m.session).recorded);
        self.matches = matches;
        stored
    }

    /// Sets (or, with an empty payload, clears) the retained message of `publish`'s topic, and
    /// records it for the store.
    pub(super) fn keep_retained(&mut self, publish: &PublishPacket, expires_at: Option<Instant>) {
        let kept = self.retained.retain(publish, expires_at);
        // `$SYS` topics are published afresh at every start.
        if !publish.topic.starts_with('$') {
            // The record shares the kept copy's bytes; a clear needs the topic alone.
            let topic = kept.map_or_else(|| publish.topic.detached(), |k| k.topic.clone());
            let message = kept.map(|kept| (kept.clone(), expires_at));
            self.changes.push(Change::Retained { topic, message });
        }
    }

    /// Retains (if asked) and routes a message to every matching subscription, from
    /// `publisher` (none for a will or `$SYS`). Returns the number of subscriptions it reached.
    pub(super) fn publish_message(
        &mut self,
        publisher: Option<SessionKey>,
        publish: PublishPacket,
        now: Instant,
    ) -> usize {
        let expires_at = publish
            .properties
            .message_expiry_interval
            .map(|seconds| now + Duration::from_secs(u64::from(seconds)));
        if publish.retain {
            self.keep_retained(&publish, expires_at);
        }

        let mut matches = std::mem::take(&mut self.matches);
        matches.clear();
        self.subscriptions
            .collect_matches(&publish.topic, publisher, &self.sessions, &mut matches);
        let reached = self.deliver_matches(&publish, &mut matches, expires_at, now);
        self.matches = matches;
        reached
    }

    /// Delivers a message to the sessions of `matches`. Returns the number of subscriptions it
    /// reached.
    pub(super) fn deliver_matches(
        &mut self,
        publish: &PublishPacket,
        matches: &mut [Match],
        expires_at: Option<Instant>,
        now: Instant,
    ) -> usize {
        // One copy per session, at the highest QoS of its matching subscriptions, carrying every
        // matching subscription identifier [MQTT-3.3.4-2] [MQTT-3.3.4-3]. A shared group's
        // delivery is a copy of its own.
        matches.sort_unstable_by_key(|m| (m.session, m.group));
        let reached = matches.len();
        let mut shared = SharedFrames::default();
        // The message as recorded for the store once a recorded session holds a copy.
        let mut stored = None;
        for same in matches.chunk_by(|a, b| (a.session, a.group) == (b.session, b.group)) {
            let max_qos = same.iter().map(|m| m.options.qos).max();
            let qos = publish.qos.min(max_qos.unwrap_or(QoS::AtMostOnce));
            // Forwarded messages keep the retain flag only with Retain As Published
            // [MQTT-3.3.1-12] [MQTT-3.3.1-13].
            let retain = publish.retain && same.iter().any(|m| m.options.retain_as_published);
            let identifiers = same.iter().filter_map(|m| m.identifier);

            let (mut delivery, mut target) = self.delivery_to(same[0].session);
            // The common case, a QoS 0 message with nothing particular to the receiver, goes
            // out as bytes shared with every other such receiver.
            if let Target {
                online: Some((connection, conn)),
                ..
            } = &mut target
                && qos == QoS::AtMostOnce
                && expires_at.is_none()
                && identifiers.clone().next().is_none()
                && conn.takes_plain_frames()
            {
                delivery.send_shared(*connection, conn, publish, retain, &mut shared);
                continue;
            }
            let mut copy = publish.clone();
            copy.qos = qos;
            copy.retain = retain;
            copy.properties.subscription_identifiers.clear();
            if target.session.protocol.is_v5() {
                copy.properties.subscription_identifiers.extend(identifiers);
            }
            delivery.deliver(target, copy, expires_at, now, &mut stored);
        }
        reached
    }
}
