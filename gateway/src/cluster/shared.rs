//! Shared groups balanced across the nodes: a message for `$share/{group}/{filter}` is
//! delivered once in the cluster, to one member on one node, however many nodes the group's
//! members are spread over.
//!
//! NATS does the choosing, with queue subscriptions: for each group with members here, this
//! node holds one queue subscription per subject of the group's filter (subject.rs), all under
//! one queue name made of the group and the filter ([`queue_name`]), and NATS hands each message
//! to one subscription of each queue name. The node's messages reach NATS once, through the
//! link's forwards; a clustered broker routes none to its groups itself (broker-core's
//! cluster.rs). So every message, this node's own included, comes back to the group through
//! NATS, and a group on one node only costs a round trip to NATS.
//!
//! The queue subscriptions live on a second NATS connection of the node: the link's connection
//! is made with `no_echo` (so that a node never hears its own messages on its plain
//! subscriptions), and NATS would never hand that connection the node's own messages, not even
//! for a queue. This connection publishes nothing.
//!
//! A message chosen for this node is handed to the broker task for its group alone
//! ([`broker_core::Broker::publish_to_group`]); if the group's last member here left meanwhile,
//! it is lost, as any message between nodes may be (NATS core: at most once).
//!
//! While this connection is down, the broker serves its groups with the messages published on
//! this node, as a single node would, and marks those it forwards meanwhile (the header
//! [`GROUPS_SERVED`]): no group gets them through NATS, when the client sends them on its
//! return. The connection's events tell the broker ([`Command::GroupsBalanced`]); it starts
//! down.

use super::link::{self, ClusterCounters, ClusterError, PREFIX};
use super::subject;
use crate::broker_task::{BrokerHandle, Command};
use crate::config::ClusterConfig;
use async_nats::{Client, Event, Subscriber};
use broker_core::InterestChange;
use futures_util::StreamExt;
use mqtt_codec::PublishPacket;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

/// The header of a message whose node served its own groups with it (published while its
/// groups' connection was down): no group is to get it through NATS.
pub(super) const GROUPS_SERVED: &str = "Mqtt-Groups-Served";

/// A message the cluster chose this node to deliver to one of its shared groups.
#[derive(Debug)]
pub(crate) struct GroupMessage {
    /// The group's name.
    pub(crate) group: String,
    /// The group's topic filter.
    pub(crate) filter: String,
    /// The message.
    pub(crate) publish: PublishPacket,
}

/// The node's shared groups in NATS: the connection that holds their queue subscriptions, and
/// the tasks that read them.
pub(super) struct SharedGroups {
    client: Client,
    broker: BrokerHandle,
    counters: Arc<ClusterCounters>,
    /// (group, filter) -> the tasks reading its subjects' queue subscriptions (aborting one
    /// unsubscribes).
    subscriptions: HashMap<(String, String), Vec<JoinHandle<()>>>,
}

impl SharedGroups {
    /// Opens the node's second NATS connection (in the background, as the link's: it retries
    /// for ever).
    pub(super) async fn connect(
        config: &ClusterConfig,
        broker: BrokerHandle,
        counters: Arc<ClusterCounters>,
    ) -> Result<Self, ClusterError> {
        let (servers, options) = link::connect_options(config).await?;
        // The client's callback may hold nothing that waits on the broker task: the latest
        // state goes through a watch to a task that tells the broker (and ends with the client).
        let (balanced_tx, balanced_rx) = watch::channel(false);
        tokio::spawn(tell_balanced(balanced_rx, broker.clone()));
        let client = options
            .name(format!("{} shared groups", config.node_name))
            .retry_on_initial_connect()
            .max_reconnects(None)
            .event_callback(move |event| {
                note_event(&balanced_tx, &event);
                async {}
            })
            .connect(servers)
            .await
            .map_err(|error| ClusterError::Connect(error.to_string()))?;
        Ok(SharedGroups {
            client,
            broker,
            counters,
            subscriptions: HashMap::new(),
        })
    }

    /// Follows a group's first member here (queue subscriptions) and its last one's leaving
    /// (none); other changes are the link's.
    pub(super) async fn follow(&mut self, change: InterestChange) {
        match change {
            InterestChange::GroupAdded { group, filter } => {
                let queue = queue_name(&group, &filter);
                let mut tasks = Vec::new();
                for subject in subject::filter_subjects(PREFIX, &filter) {
                    match self
                        .client
                        .queue_subscribe(subject.clone(), queue.clone())
                        .await
                    {
                        Ok(subscriber) => tasks.push(tokio::spawn(deliver(
                            subscriber,
                            group.clone(),
                            filter.clone(),
                            self.broker.clone(),
                            self.counters.clone(),
                        ))),
                        Err(error) => {
                            warn!("cluster: could not subscribe to {subject} for a group: {error}");
                        }
                    }
                }
                if let Some(old) = self.subscriptions.insert((group, filter), tasks) {
                    old.iter().for_each(JoinHandle::abort);
                }
            }
            InterestChange::GroupRemoved { group, filter } => {
                if let Some(tasks) = self.subscriptions.remove(&(group, filter)) {
                    tasks.iter().for_each(JoinHandle::abort);
                }
            }
            InterestChange::Added(_) | InterestChange::Removed(_) => {}
        }
    }
}

impl Drop for SharedGroups {
    /// Unsubscribes: the link is gone, and with it the broker task's interest.
    fn drop(&mut self) {
        for (_, tasks) in self.subscriptions.drain() {
            tasks.iter().for_each(JoinHandle::abort);
        }
    }
}

/// Hands the messages of one queue subscription to the broker task, for its group.
async fn deliver(
    mut subscriber: Subscriber,
    group: String,
    filter: String,
    broker: BrokerHandle,
    counters: Arc<ClusterCounters>,
) {
    while let Some(message) = subscriber.next().await {
        if message
            .headers
            .as_ref()
            .is_some_and(|headers| headers.get(GROUPS_SERVED).is_some())
        {
            continue;
        }
        // The subject says which topic the message is for: a PUBLISH for another one did not
        // come from a node of this cluster.
        let publish = link::decode(&message.payload).filter(|publish| {
            subject::subject_topic(PREFIX, message.subject.as_str()).as_deref()
                == Some(publish.topic.as_str())
        });
        let Some(publish) = publish else {
            counters.dropped.fetch_add(1, Ordering::Relaxed);
            warn!(
                "cluster: a message on {} for a group is not a PUBLISH to its topic; dropped",
                message.subject
            );
            continue;
        };
        counters.received.fetch_add(1, Ordering::Relaxed);
        let message = GroupMessage {
            group: group.clone(),
            filter: filter.clone(),
            publish,
        };
        // Waits while the broker task is busy: the client holds the rest meanwhile.
        if broker
            .send(Command::ToGroup(Box::new(message)))
            .await
            .is_err()
        {
            break;
        }
    }
}

/// Logs the connection's events, and notes whether NATS balances the groups.
fn note_event(balanced: &watch::Sender<bool>, event: &Event) {
    let balanced_now = match event {
        Event::Connected => {
            info!("cluster: shared groups connected to NATS");
            true
        }
        Event::Disconnected => {
            warn!("cluster: shared groups lost NATS; this node's messages go to its groups here");
            false
        }
        other => {
            info!("cluster: shared groups: NATS {other}");
            return;
        }
    };
    balanced.send_replace(balanced_now);
}

/// Tells the broker task whether NATS balances the groups, each time that changes.
async fn tell_balanced(mut balanced: watch::Receiver<bool>, broker: BrokerHandle) {
    while balanced.changed().await.is_ok() {
        let now = *balanced.borrow_and_update();
        if broker.send(Command::GroupsBalanced(now)).await.is_err() {
            break;
        }
    }
}

/// The NATS queue name of a group: its name and filter, `{group}/{filter}`, with every byte but
/// ASCII letters, digits, `-` and `_` written `%XX`. One token, valid in NATS whatever the
/// group and filter hold; and distinct groups get distinct names (a group's name has no `/`,
/// and `%` itself is escaped).
fn queue_name(group: &str, filter: &str) -> String {
    let mut name = String::with_capacity(group.len() + filter.len() + 8);
    let whole = group.bytes().chain([b'/']).chain(filter.bytes());
    for byte in whole {
        if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' {
            name.push(char::from(byte));
        } else {
            write!(name, "%{byte:02X}").expect("writing to a String");
        }
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_are_single_tokens_and_tell_groups_apart() {
        let cases = [
            ("g", "x/+", "g%2Fx%2F%2B"),
            ("workers", "jobs/#", "workers%2Fjobs%2F%23"),
            ("a.b", "c d", "a%2Eb%2Fc%20d"),
            ("g", "$SYS/>*", "g%2F%24SYS%2F%3E%2A"),
            ("ü-_", "%", "%C3%BC-_%2F%25"),
        ];
        for (group, filter, name) in cases {
            assert_eq!(queue_name(group, filter), name, "{group:?} {filter:?}");
        }
        // The same bytes split differently are different groups.
        assert_ne!(queue_name("a", "b/c"), queue_name("a%2Fb", "c"));
        assert_ne!(queue_name("g", "x/+"), queue_name("g", "x/#"));
        assert_ne!(queue_name("g", "x/+"), queue_name("h", "x/+"));
    }
}
