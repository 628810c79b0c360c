//! What a cluster of gateways needs from the core. The gateway's cluster link carries it over
//! NATS (gateway/src/cluster/); the core knows nothing of NATS. All of it is off until
//! [`Broker::set_clustered`], so a single node pays nothing:
//!
//! - **Interest**: the topic filters this node's sessions subscribe to (plain subscriptions and
//!   the filters of shared groups), counted, so the link hears of a filter when its first
//!   subscription appears and when its last one goes ([`Broker::take_interest`]). Offline
//!   persistent sessions keep their subscriptions, so messages for them keep coming.
//! - **Forwards**: every message published here by a client or a will, as routed (its topic
//!   alias resolved, its publication authorized), for the other nodes
//!   ([`Broker::take_forwards`]). `$SYS` messages describe this node and stay here; other `$`
//!   topics cross like any.
//! - **Messages from other nodes** ([`Broker::publish_from_cluster`]) are routed to the local
//!   subscriptions as a local one would be, retained here too when RETAIN is set, and never
//!   forwarded again, so nothing loops.
//! - **Retained messages of the cluster** ([`Broker::retain_from_cluster`]), which the link
//!   reads from the cluster's shared store, are kept here without routing.
//! - **Sessions moving between nodes**: a session another node's client resumes is released
//!   here ([`Broker::release_session`]: its connection closed as a takeover, the session
//!   removed), after its last changes were recorded; the node resuming it adopts it
//!   ([`Broker::adopt_session`]) from the cluster's copy of those records.

use super::Broker;
use super::persist::StoredSession;
use super::termination::Termination;
use crate::HashMap;
use mqtt_codec::PublishPacket;
use std::time::Instant;
use tracing::info;

/// A filter that local sessions started or stopped subscribing to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InterestChange {
    /// The first subscription to the filter here.
    Added(String),
    /// The last subscription to the filter here went.
    Removed(String),
}

/// How many local subscriptions (a shared group counts once) each filter has.
#[derive(Default)]
pub(super) struct Interest {
    counts: HashMap<String, u32>,
    /// Changes are recorded only for a cluster link, which takes them.
    recording: bool,
    changes: Vec<InterestChange>,
}

impl Interest {
    pub fn add(&mut self, filter: &str) {
        if let Some(count) = self.counts.get_mut(filter) {
            *count += 1;
            return;
        }
        self.counts.insert(filter.to_owned(), 1);
        if self.recording {
            self.changes.push(InterestChange::Added(filter.to_owned()));
        }
    }

    pub fn remove(&mut self, filter: &str) {
        let Some(count) = self.counts.get_mut(filter) else {
            return;
        };
        *count -= 1;
        if *count == 0 {
            self.counts.remove(filter);
            if self.recording {
                self.changes
                    .push(InterestChange::Removed(filter.to_owned()));
            }
        }
    }

    /// Starts recording, with every filter subscribed to so far as added.
    fn start(&mut self) {
        self.recording = true;
        let mut filters: Vec<&String> = self.counts.keys().collect();
        filters.sort();
        self.changes = filters
            .into_iter()
            .map(|filter| InterestChange::Added(filter.clone()))
            .collect();
    }
}

impl Broker {
    /// Makes this broker a node of a cluster: from now on it records interest changes (starting
    /// with every filter subscribed to so far, such as restored sessions') and the messages to
    /// forward, for the cluster link to take.
    pub fn set_clustered(&mut self) {
        if self.forwards.is_none() {
            self.forwards = Some(Vec::new());
            self.subscriptions.interest.start();
        }
    }

    /// The interest changes since the last call, in order.
    pub fn take_interest(&mut self) -> Vec<InterestChange> {
        std::mem::take(&mut self.subscriptions.interest.changes)
    }

    /// The messages published here since the last call, for the other nodes, in order.
    pub fn take_forwards(&mut self) -> Vec<PublishPacket> {
        self.forwards
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// A message published on another node: retained here when RETAIN is set and routed to
    /// every matching local subscription, not forwarded. Returns the subscriptions it reached.
    pub fn publish_from_cluster(&mut self, mut publish: PublishPacket, now: Instant) -> usize {
        publish.dup = false;
        publish.packet_id = None;
        publish.properties.topic_alias = None;
        publish.properties.subscription_identifiers.clear();
        self.publish_message(None, publish, now)
    }

    /// The retained message of a topic as the cluster keeps it (set anywhere, or cleared with
    /// an empty payload): kept here, so that subscribers here get it, without routing it (the
    /// message itself reached this node's subscribers when it was published, if they were).
    pub fn retain_from_cluster(&mut self, mut publish: PublishPacket, now: Instant) {
        publish.dup = false;
        publish.retain = true;
        publish.packet_id = None;
        publish.properties.topic_alias = None;
        publish.properties.subscription_identifiers.clear();
        let expires_at = publish
            .properties
            .message_expiry_interval
            .map(|seconds| now + std::time::Duration::from_secs(u64::from(seconds)));
        self.keep_retained(&publish, expires_at);
    }

    /// Keeps a copy of a message published here for the other nodes (when clustered).
    pub(super) fn forward(&mut self, publish: &PublishPacket) {
        if let Some(forwards) = &mut self.forwards
            && !publish.topic.starts_with("$SYS")
        {
            forwards.push(publish.clone());
        }
    }

    /// Lets another node resume the session of `client_id`: its connection, if any, is closed
    /// as a takeover (DISCONNECT 0x8E for 5.0; its will goes out as in any takeover), and the
    /// session leaves this broker with its subscriptions. A will still waiting for its delay
    /// is dropped: the client resumed its session before the delay ran out [MQTT-3.1.3-9].
    ///
    /// Returns the session's store id if it was recorded (persistent): its last records,
    /// offline, precede a [`Change::SessionRemoved`](super::Change::SessionRemoved), which here
    /// means "moved", not "ended". `None` if there was no such session, or one that ended with
    /// its connection.
    pub fn release_session(&mut self, client_id: &str, now: Instant) -> Option<u64> {
        let key = self.sessions.find(client_id)?;
        if let Some(connection) = self.sessions.get(key).connection {
            info!(
                client_id = %client_id,
                "client {client_id:?} resumed its session on another node; closing its connection here (session taken over)"
            );
            self.terminate(connection, Termination::SessionTakenOver, now);
        }
        // The takeover ended a session of expiry 0 with its connection.
        let key = self.sessions.find(client_id)?;
        let session = self.sessions.get(key);
        let moved = session.recorded.then_some(session.store_id);
        self.remove_session(key);
        moved
    }

    /// Takes in a session released by another node, as the cluster's records describe it,
    /// unless a session of that client id is here already. It is recorded as a new session
    /// of this broker, whose store id is returned. A will already due (its node was lost with
    /// the client connected, and the will has no delay) goes out now: the client's connection
    /// ended when its node did.
    pub fn adopt_session(&mut self, mut stored: StoredSession, now: Instant) -> Option<u64> {
        if self.sessions.contains(&stored.client_id) {
            return None;
        }
        stored.id = 0;
        let (key, will_at) = self.restore_session(stored, now);
        self.record_session(key, will_at);
        let id = self.sessions.get(key).store_id;
        if will_at.is_some_and(|at| at <= now) {
            self.handle_timeout(now);
        }
        Some(id)
    }
}
