//! SUBSCRIBE and UNSUBSCRIBE: authorization, the session's own list of filters and the
//! subscription tree changed together, the SUBACK/UNSUBACK, and the retained messages a new
//! subscription receives.

use super::changes::Change;
use super::limits;
use super::subscriptions::SubscriberEntry;
use super::termination::Termination;
use super::{Broker, ConnectionId};
use crate::auth::ClientIdentity;
use crate::session::{SessionKey, SessionSubscription};
use mqtt_codec::{
    ByteStr, Packet, Properties, QoS, ReasonCode, RetainHandling, SubAckPacket, SubscribePacket,
    SubscriptionOptions, UnsubAckPacket, UnsubscribePacket, topic,
};
use std::time::Instant;
use tracing::info;

impl Broker {
    pub(super) fn handle_subscribe(
        &mut self,
        connection: ConnectionId,
        subscribe: SubscribePacket,
        now: Instant,
    ) -> Result<(), Termination> {
        let conn = self
            .connections
            .get_mut(&connection)
            .expect("caller checked");
        let protocol = conn.protocol;
        let key = conn.session;
        let username = conn.username.clone();
        let client_id = self.sessions.get(key).client_id.clone();
        let identifier = subscribe
            .properties
            .subscription_identifiers
            .first()
            .copied();
        let mut reason_codes = Vec::with_capacity(subscribe.subscriptions.len());
        let mut retained_to_send = Vec::new();
        let changes_before = self.changes.total();
        // A refusal in the SUBACK: 3.1.1 has the one failure code 0x80.
        let refusal = |code: ReasonCode| {
            if protocol.is_v5() {
                code
            } else {
                ReasonCode::UnspecifiedError
            }
        };
        let properties_accepted =
            limits::user_properties_within(&self.config, [&subscribe.properties]);

        for subscription in &subscribe.subscriptions {
            let filter = &subscription.filter;
            let options = subscription.options;
            let shared = topic::parse_shared(filter).ok().flatten().is_some();
            if shared && options.no_local {
                return Err(Termination::NoLocalOnSharedSubscription(filter.detached()));
            }
            if !properties_accepted {
                reason_codes.push(ReasonCode::QuotaExceeded);
                continue;
            }
            if let Err(limit) = limits::check_topic(&self.config, filter, true) {
                info!(client_id = %client_id, "subscription to a filter of {limit} refused");
                reason_codes.push(refusal(ReasonCode::TopicFilterInvalid));
                continue;
            }
            let identity = ClientIdentity {
                client_id: &client_id,
                username: username.as_deref(),
            };
            let conn = self
                .connections
                .get_mut(&connection)
                .expect("caller checked");
            if !(self.auth.authorize_subscribe(&identity, filter) && conn.may_subscribe(filter)) {
                info!(client_id = %client_id, "subscription to {filter:?} not authorized");
                reason_codes.push(refusal(ReasonCode::NotAuthorized));
                continue;
            }
            // Replacing a subscription does not add one.
            let held = &self.sessions.get(key).subscriptions;
            let maximum = self.config.max_subscriptions_per_client;
            if held.len() >= maximum && held.get(filter).is_none() {
                info!(
                    client_id = %client_id,
                    "subscription to {filter:?} refused: the session holds {maximum}, the maximum"
                );
                reason_codes.push(refusal(ReasonCode::QuotaExceeded));
                continue;
            }
            let existed = self.subscribe(key, filter, options, identifier);
            let session = self.sessions.get(key);
            if session.recorded {
                self.changes.push(Change::Subscribed {
                    session: session.store_id,
                    filter: filter.detached(),
                    options,
                    identifier,
                });
            }
            // Retained messages go to new non-shared subscriptions as Retain Handling says
            // [MQTT-3.3.1-9] [MQTT-3.8.4-4].
            let send_retained = !shared
                && match options.retain_handling {
                    RetainHandling::SendAtSubscribe => true,
                    RetainHandling::SendIfNew => !existed,
                    RetainHandling::DoNotSend => false,
                };
            if send_retained {
                retained_to_send.push((filter.clone(), options.qos));
            }
            reason_codes.push(match options.qos {
                QoS::AtMostOnce => ReasonCode::GRANTED_QOS_0,
                QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
                QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
            });
        }

        let suback = Packet::SubAck(SubAckPacket {
            packet_id: subscribe.packet_id,
            properties: Properties::default(),
            reason_codes,
        });
        // The subscriptions of a persistent session are durable before the client hears of
        // them.
        let promises_changes = self.changes.total() > changes_before;
        self.acknowledge(connection, suback, promises_changes);
        for (filter, granted) in retained_to_send {
            self.send_retained(key, &filter, granted, identifier, now);
        }
        Ok(())
    }

    /// Subscribes session `key` to `filter`, in its own list and in the tree or its shared
    /// group. Returns whether it already had a subscription to that filter (now replaced).
    pub(super) fn subscribe(
        &mut self,
        key: SessionKey,
        filter: &ByteStr,
        options: SubscriptionOptions,
        identifier: Option<u32>,
    ) -> bool {
        let subscription = SessionSubscription {
            options,
            identifier,
        };
        // Detached: kept as long as the subscription, unlike the SUBSCRIBE's buffer.
        let session = self.sessions.get_mut(key);
        let existed = session
            .subscriptions
            .insert(filter.detached(), subscription)
            .is_some();
        let entry = SubscriberEntry {
            options,
            identifier,
        };
        self.subscriptions.add(key, filter, entry);
        existed
    }

    /// Sends the retained messages matching a new subscription, at most at its granted QoS.
    fn send_retained(
        &mut self,
        key: SessionKey,
        filter: &str,
        granted: QoS,
        identifier: Option<u32>,
        now: Instant,
    ) {
        let v5 = self.sessions.get(key).protocol.is_v5();
        for message in self.retained.matching(filter, now) {
            let mut publish = message.publish;
            publish.qos = publish.qos.min(granted);
            // Sent because of a new subscription: the retain flag is set (3.1.1:
            // [MQTT-3.3.1-8]; 5.0 says so in 3.3.1.3).
            publish.retain = true;
            publish.dup = false;
            publish.packet_id = None;
            publish.properties.subscription_identifiers.clear();
            if v5 && let Some(identifier) = identifier {
                publish.properties.subscription_identifiers.push(identifier);
            }
            self.deliver(key, publish, message.expires_at, now);
        }
    }

    pub(super) fn handle_unsubscribe(
        &mut self,
        connection: ConnectionId,
        unsubscribe: UnsubscribePacket,
    ) {
        let key = self.connections[&connection].session;
        let mut reason_codes = Vec::with_capacity(unsubscribe.filters.len());
        for filter in &unsubscribe.filters {
            let session = self.sessions.get_mut(key);
            if session.subscriptions.remove(filter).is_some() {
                if session.recorded {
                    self.changes.push(Change::Unsubscribed {
                        session: session.store_id,
                        filter: filter.detached(),
                    });
                }
                self.subscriptions.remove(key, filter);
                reason_codes.push(ReasonCode::Success);
            } else {
                reason_codes.push(ReasonCode::NoSubscriptionExisted);
            }
        }
        let unsuback = Packet::UnsubAck(UnsubAckPacket {
            packet_id: unsubscribe.packet_id,
            properties: Properties::default(),
            reason_codes,
        });
        // Not a promise of its own, but it must not overtake an earlier acknowledgement.
        self.acknowledge(connection, unsuback, false);
    }
}
