//! Who is subscribed to what: the subscription tree and the shared subscription groups.
//!
//! A plain subscription is an entry of the tree under its filter, keyed by its session. A shared
//! subscription `$share/{group}/{filter}` makes its session a member of a [`SharedGroup`], and
//! the group, not the session, has one entry in the tree under the inner filter; a message to
//! the group goes to one member in turn.
//!
//! On a node of a cluster that balances the groups, matching skips them (but for `$SYS`
//! messages, which stay on their node): the cluster balances their messages among the nodes,
//! and the link hands each group its own ([`Subscriptions::collect_group_match`]).
//!
//! Invariants: a group is in the tree and in the index exactly while it has members; a group key
//! in the tree refers to a live group. Each session also keeps its own list of filters (see
//! [`crate::session::Session::subscriptions`]); the broker changes both together.

use super::cluster::{Interest, stays_on_node};
use crate::HashMap;
use crate::session::SessionKey;
use crate::sessions::Sessions;
use crate::tree::SubscriptionTree;
use mqtt_codec::{ByteStr, SubscriptionOptions, topic};

/// A shared group's slot in [`Subscriptions`]; reused once the group has no members.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct GroupKey(u32);

impl GroupKey {
    fn index(self) -> usize {
        self.0 as usize
    }
}

/// What the tree stores per filter: a session or a shared group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Subscriber {
    Session(SessionKey),
    Group(GroupKey),
}

/// One subscription's options, as matching needs them.
#[derive(Clone, Copy, Debug)]
pub(super) struct SubscriberEntry {
    pub options: SubscriptionOptions,
    pub identifier: Option<u32>,
}

/// A shared subscription group; messages go to one member in turn.
#[derive(Debug)]
struct SharedGroup {
    members: Vec<(SessionKey, SubscriberEntry)>,
    next: usize,
}

impl SharedGroup {
    /// The next member, round robin, preferring connected sessions.
    fn pick(&mut self, sessions: &Sessions) -> Option<(SessionKey, SubscriberEntry)> {
        let count = self.members.len();
        if count == 0 {
            return None;
        }
        let start = self.next % count;
        let chosen = (0..count)
            .map(|offset| (start + offset) % count)
            .find(|&index| sessions.is_online(self.members[index].0))
            .unwrap_or(start);
        self.next = chosen + 1;
        Some(self.members[chosen])
    }
}

/// One match of a PUBLISH against a subscription.
#[derive(Clone, Copy, Debug)]
pub(super) struct Match {
    pub session: SessionKey,
    /// The shared group that chose this session; each group's delivery is its own copy.
    pub group: Option<GroupKey>,
    pub options: SubscriptionOptions,
    pub identifier: Option<u32>,
}

#[derive(Default)]
pub(super) struct Subscriptions {
    tree: SubscriptionTree<Subscriber, SubscriberEntry>,
    groups: Vec<Option<SharedGroup>>,
    free_groups: Vec<GroupKey>,
    /// Groups by their full filter, `$share/{group}/{filter}`.
    group_index: HashMap<ByteStr, GroupKey>,
    /// The filters subscribed to here, for a cluster (see cluster.rs).
    pub interest: Interest,
    /// On a node of a cluster that balances the groups: [`Subscriptions::collect_matches`]
    /// leaves them out.
    groups_by_cluster: bool,
}

impl Subscriptions {
    /// Makes this a node of a cluster's subscriptions: interest is recorded from now on (with
    /// what is here already).
    pub fn start_cluster(&mut self) {
        let groups = self.group_index.keys().filter_map(|full| {
            let shared = topic::parse_shared(full).ok().flatten()?;
            Some((shared.group, shared.filter))
        });
        self.interest.start(groups);
    }

    /// Whether shared groups get messages only through [`Subscriptions::collect_group_match`]
    /// (a cluster balances them) or also from [`Subscriptions::collect_matches`].
    pub fn set_groups_by_cluster(&mut self, by_cluster: bool) {
        self.groups_by_cluster = by_cluster;
    }

    /// See [`Subscriptions::set_groups_by_cluster`].
    pub fn groups_by_cluster(&self) -> bool {
        self.groups_by_cluster
    }

    /// The number of subscriptions: plain ones and shared group memberships.
    pub fn len(&self) -> usize {
        let groups = self.groups.iter().flatten();
        let members: usize = groups.clone().map(|g| g.members.len()).sum();
        // Each group has one entry in the tree, which is not a subscription of its own.
        self.tree.len() + members - groups.count()
    }

    /// Subscribes `session` to `filter` (plain or `$share/...`), replacing the options of a
    /// subscription it already had to the same filter.
    pub fn add(&mut self, session: SessionKey, filter: &ByteStr, entry: SubscriberEntry) {
        match topic::parse_shared(filter).ok().flatten() {
            None => {
                let replaced = self
                    .tree
                    .insert(filter, Subscriber::Session(session), entry);
                if replaced.is_none() {
                    self.interest.add(filter.as_str());
                }
            }
            Some(shared) => {
                let group_key = match self.group_index.get(filter) {
                    Some(&group_key) => group_key,
                    None => self.add_group(filter, shared.group, shared.filter),
                };
                let group = self.groups[group_key.index()]
                    .as_mut()
                    .expect("indexed group exists");
                match group
                    .members
                    .iter_mut()
                    .find(|(member, _)| *member == session)
                {
                    Some(member) => member.1 = entry,
                    None => group.members.push((session, entry)),
                }
            }
        }
    }

    fn add_group(&mut self, full_filter: &ByteStr, name: &str, inner_filter: &str) -> GroupKey {
        let group = Some(SharedGroup {
            members: Vec::new(),
            next: 0,
        });
        let group_key = match self.free_groups.pop() {
            Some(key) => {
                self.groups[key.index()] = group;
                key
            }
            None => {
                self.groups.push(group);
                GroupKey(u32::try_from(self.groups.len() - 1).expect("fewer than 2^32 groups"))
            }
        };
        self.group_index.insert(full_filter.detached(), group_key);
        self.interest.add_group(name, inner_filter);
        let entry = SubscriberEntry {
            options: SubscriptionOptions::default(),
            identifier: None,
        };
        self.tree
            .insert(inner_filter, Subscriber::Group(group_key), entry);
        group_key
    }

    /// Removes `session`'s subscription to `filter` (plain or `$share/...`), if any.
    pub fn remove(&mut self, session: SessionKey, filter: &ByteStr) {
        let Some(shared) = topic::parse_shared(filter).ok().flatten() else {
            if self
                .tree
                .remove(filter, &Subscriber::Session(session))
                .is_some()
            {
                self.interest.remove(filter.as_str());
            }
            return;
        };
        let Some(&group_key) = self.group_index.get(filter) else {
            return;
        };
        let group = self.groups[group_key.index()]
            .as_mut()
            .expect("indexed group exists");
        group.members.retain(|(member, _)| *member != session);
        if group.members.is_empty() {
            self.tree
                .remove(shared.filter, &Subscriber::Group(group_key));
            self.interest.remove_group(shared.group, shared.filter);
            self.group_index.remove(filter);
            self.groups[group_key.index()] = None;
            self.free_groups.push(group_key);
        }
    }

    /// Appends to `matches` every subscription `topic` matches: each plain one except a No
    /// Local subscription of `publisher` [MQTT-3.8.3-3], and for each shared group the member
    /// whose turn it is (unless a cluster balances the groups: then they get only what stays
    /// on this node, `$SYS`).
    pub fn collect_matches(
        &mut self,
        topic: &str,
        publisher: Option<SessionKey>,
        sessions: &Sessions,
        matches: &mut Vec<Match>,
    ) {
        let groups = &mut self.groups;
        let groups_by_cluster = self.groups_by_cluster;
        self.tree
            .for_each_match(topic, |subscriber, entry| match subscriber {
                Subscriber::Session(session) => {
                    if !(entry.options.no_local && publisher == Some(*session)) {
                        matches.push(Match {
                            session: *session,
                            group: None,
                            options: entry.options,
                            identifier: entry.identifier,
                        });
                    }
                }
                Subscriber::Group(_) if groups_by_cluster && !stays_on_node(topic) => {}
                Subscriber::Group(group_key) => {
                    if let Some(group) = groups[group_key.index()].as_mut()
                        && let Some((session, entry)) = group.pick(sessions)
                    {
                        matches.push(Match {
                            session,
                            group: Some(*group_key),
                            options: entry.options,
                            identifier: entry.identifier,
                        });
                    }
                }
            });
    }

    /// Appends to `matches` the member of the shared group `$share/{group}/{filter}` whose
    /// turn it is, if the group has members here.
    pub fn collect_group_match(
        &mut self,
        group: &str,
        filter: &str,
        sessions: &Sessions,
        matches: &mut Vec<Match>,
    ) {
        let full_filter = format!("{}{group}/{filter}", topic::SHARED_PREFIX);
        let Some(&group_key) = self.group_index.get(full_filter.as_str()) else {
            return;
        };
        if let Some(group) = self.groups[group_key.index()].as_mut()
            && let Some((session, entry)) = group.pick(sessions)
        {
            matches.push(Match {
                session,
                group: Some(group_key),
                options: entry.options,
                identifier: entry.identifier,
            });
        }
    }
}
