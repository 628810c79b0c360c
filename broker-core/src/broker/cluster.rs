//! What a cluster of gateways needs from the core. The gateway's cluster link carries it over
//! NATS (gateway/src/cluster/); the core knows nothing of NATS. All of it is off until
//! [`Broker::set_clustered`], so a single node pays nothing:
//!
//! - **Interest**: the topic filters this node's sessions subscribe to, counted, so the link
//!   hears of a filter when its first subscription appears and when its last one goes
//!   ([`Broker::take_interest`]); and apart from them the shared groups that have members here
//!   (a group's filter is not a plain filter's interest). Offline persistent sessions keep their
//!   subscriptions, so messages for them keep coming.
//! - **Forwards**: every message published here by a client or a will, as routed (its topic
//!   alias resolved, its publication authorized), for the other nodes
//!   ([`Broker::take_forwards`]). `$SYS` messages describe this node and stay here (its
//!   groups included); other `$` topics cross like any.
//! - **Messages from other nodes** ([`Broker::publish_from_cluster`]) are routed to the local
//!   subscriptions as a local one would be, retained here too when RETAIN is set, and never
//!   forwarded again, so nothing loops.
//! - **Shared groups are the cluster's**: a group `$share/{group}/{filter}` with members on
//!   several nodes gets each message once in the cluster, not once per node. So a clustered
//!   node routes no message to its groups on the way every message takes (neither its own
//!   clients' nor other nodes'); the link hands it, through the cluster's balancing (for this
//!   node's own messages too), the messages its groups are to get, each for one group
//!   ([`Broker::publish_to_group`]). While the cluster cannot balance them (the link says so,
//!   [`Broker::set_groups_balanced`]; so it is at first), the node's groups get the messages
//!   published here as on a single node, and those are forwarded marked
//!   ([`Forward::groups_served`]) so that no group gets them again through the cluster once it
//!   can: a group then misses rather than repeats them.
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
    /// The shared group `$share/{group}/{filter}` has its first member here.
    GroupAdded {
        /// The group's name.
        group: String,
        /// Its topic filter.
        filter: String,
    },
    /// The shared group's last member here went.
    GroupRemoved {
        /// The group's name.
        group: String,
        /// Its topic filter.
        filter: String,
    },
}

/// A message published here, for the other nodes.
#[derive(Clone, Debug)]
pub struct Forward {
    /// The message, as routed here.
    pub publish: PublishPacket,
    /// Published while the cluster could not balance shared groups: this node's groups got it
    /// here, and no group is to get it through the cluster.
    pub groups_served: bool,
}

/// How many local plain subscriptions each filter has (shared groups are reported apart, as
/// their first member comes and their last one goes: see subscriptions.rs).
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

    /// The shared group `$share/{group}/{filter}` got its first member here.
    pub fn add_group(&mut self, group: &str, filter: &str) {
        if self.recording {
            self.changes.push(InterestChange::GroupAdded {
                group: group.to_owned(),
                filter: filter.to_owned(),
            });
        }
    }

    /// The shared group lost its last member here.
    pub fn remove_group(&mut self, group: &str, filter: &str) {
        if self.recording {
            self.changes.push(InterestChange::GroupRemoved {
                group: group.to_owned(),
                filter: filter.to_owned(),
            });
        }
    }

    /// Starts recording, with every filter subscribed to so far and every group with members
    /// (`(group, filter)`) as added.
    pub fn start<'a>(&mut self, groups: impl Iterator<Item = (&'a str, &'a str)>) {
        self.recording = true;
        let mut filters: Vec<&String> = self.counts.keys().collect();
        filters.sort();
        let mut groups: Vec<(&str, &str)> = groups.collect();
        groups.sort();
        self.changes = filters
            .into_iter()
            .map(|filter| InterestChange::Added(filter.clone()))
            .chain(
                groups
                    .into_iter()
                    .map(|(group, filter)| InterestChange::GroupAdded {
                        group: group.to_owned(),
                        filter: filter.to_owned(),
                    }),
            )
            .collect();
    }
}

impl Broker {
    /// Makes this broker a node of a cluster: from now on it records interest changes (starting
    /// with every filter subscribed to so far, such as restored sessions') and the messages to
    /// forward, for the cluster link to take; and once [`Broker::set_groups_balanced`] says
    /// so, its shared groups get messages only through [`Broker::publish_to_group`].
    pub fn set_clustered(&mut self) {
        if self.forwards.is_none() {
            self.forwards = Some(Vec::new());
            self.subscriptions.start_cluster();
        }
    }

    /// Whether the cluster balances this node's shared groups (the link's way to them is up).
    /// When it does, the groups get messages only through [`Broker::publish_to_group`]; when
    /// it does not, they get those published here, as on a single node, and those are
    /// forwarded marked [`Forward::groups_served`]. Nothing changes on a single node.
    pub fn set_groups_balanced(&mut self, balanced: bool) {
        if self.forwards.is_some() {
            self.subscriptions.set_groups_by_cluster(balanced);
        }
    }

    /// The interest changes since the last call, in order.
    pub fn take_interest(&mut self) -> Vec<InterestChange> {
        std::mem::take(&mut self.subscriptions.interest.changes)
    }

    /// The messages published here since the last call, for the other nodes, in order.
    pub fn take_forwards(&mut self) -> Vec<Forward> {
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
        // Never to the groups here, even while the cluster cannot balance them: the cluster
        // hands them what they are to get of it, or its node served its own groups (see
        // `Forward::groups_served`).
        let groups_by_cluster = self.subscriptions.groups_by_cluster();
        self.subscriptions.set_groups_by_cluster(true);
        let reached = self.publish_message(None, publish, now);
        self.subscriptions.set_groups_by_cluster(groups_by_cluster);
        reached
    }

    /// A message for the shared group `$share/{group}/{filter}` alone, which the cluster chose
    /// this node to deliver (from any node, this one included): it goes to one member of the
    /// group, and to nothing else; it is not retained (the nodes' retained sets follow the
    /// cluster's store) nor forwarded. Returns the subscriptions it reached: 0 when the group
    /// has no member here any more (its last one left while the message was on its way).
    pub fn publish_to_group(
        &mut self,
        group: &str,
        filter: &str,
        mut publish: PublishPacket,
        now: Instant,
    ) -> usize {
        publish.dup = false;
        publish.packet_id = None;
        publish.properties.topic_alias = None;
        publish.properties.subscription_identifiers.clear();
        // The cluster hands the group only what its filter matches; anything else is not its.
        if !mqtt_codec::topic::matches(filter, &publish.topic) {
            return 0;
        }
        let expires_at = publish
            .properties
            .message_expiry_interval
            .map(|seconds| now + std::time::Duration::from_secs(u64::from(seconds)));
        let mut matches = std::mem::take(&mut self.matches);
        matches.clear();
        self.subscriptions
            .collect_group_match(group, filter, &self.sessions, &mut matches);
        let reached = self.deliver_matches(&publish, &mut matches, expires_at, now);
        self.matches = matches;
        reached
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
            && !stays_on_node(&publish.topic)
        {
            forwards.push(Forward {
                publish: publish.clone(),
                groups_served: !self.subscriptions.groups_by_cluster(),
            });
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

/// Whether messages to `topic` stay on the node they are published on: `$SYS` topics describe
/// it. So they are not forwarded, and this node's groups get them here.
pub(super) fn stays_on_node(topic: &str) -> bool {
    topic.starts_with("$SYS")
}
