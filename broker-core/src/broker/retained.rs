//! Retained messages, by topic.
//!
//! A retained message may stay for months and there may be millions, so each is kept as a
//! [`KeptPublish`] (properties boxed, and only when set) with its expiry. Topic and payload are
//! copied out of the read buffer they arrived in, which should not live as long. Callers see a
//! [`RetainedMessage`], the PUBLISH rebuilt. Expired messages are dropped when they are next
//! looked at.

use crate::session::KeptPublish;
use bytes::Bytes;
use hashbrown::{HashTable, hash_table};
use mqtt_codec::{Properties, PublishPacket, topic};
use std::hash::BuildHasher;
use std::time::Instant;

/// A retained message as callers see it.
#[derive(Clone, Debug)]
pub(super) struct RetainedMessage {
    pub publish: PublishPacket,
    pub expires_at: Option<Instant>,
}

/// What is kept for one topic.
#[derive(Debug)]
struct Retained {
    publish: KeptPublish,
    expires_at: Option<Instant>,
}

impl Retained {
    fn alive(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }

    fn message(&self) -> RetainedMessage {
        RetainedMessage {
            publish: self.publish.to_packet(),
            expires_at: self.expires_at,
        }
    }
}

/// The messages in a table keyed by their own topic, so that a topic is kept once: a map from
/// topic to message would hold a second handle to it, and sharing its bytes between two handles
/// costs a shared header besides (about 80 bytes a message in all).
#[derive(Default)]
pub(super) struct RetainedMessages {
    by_topic: HashTable<Retained>,
    hasher: foldhash::fast::RandomState,
}

impl RetainedMessages {
    pub fn len(&self) -> usize {
        self.by_topic.len()
    }

    fn hash(&self, topic: &str) -> u64 {
        self.hasher.hash_one(topic)
    }

    /// Retains `publish` on its topic, or clears the topic for an empty payload, which is not
    /// stored [MQTT-3.3.1-6].
    /// Returns the message as kept, if one was.
    pub fn retain(
        &mut self,
        publish: &PublishPacket,
        expires_at: Option<Instant>,
    ) -> Option<&KeptPublish> {
        if publish.payload.is_empty() {
            let topic = publish.topic.as_str();
            if let Ok(found) = self
                .by_topic
                .find_entry(self.hash(topic), |r| r.publish.topic.as_str() == topic)
            {
                found.remove();
            }
            return None;
        }
        let mut detached = publish.clone();
        detached.topic = publish.topic.detached();
        detached.payload = Bytes::copy_from_slice(&publish.payload);
        Some(self.insert(KeptPublish::new(detached), expires_at))
    }

    /// Adds a message that shares no buffer with others (one restored from the store).
    pub fn insert(
        &mut self,
        mut publish: KeptPublish,
        expires_at: Option<Instant>,
    ) -> &KeptPublish {
        // Set per hop, never part of what is kept.
        if let Some(properties) = publish.properties.as_deref_mut() {
            properties.topic_alias = None;
            properties.subscription_identifiers.clear();
            if *properties == Properties::default() {
                publish.properties = None;
            }
        }
        publish.retain = true;
        let retained = Retained {
            publish,
            expires_at,
        };
        let hash = self.hash(&retained.publish.topic);
        let hasher = &self.hasher;
        let entry = self.by_topic.entry(
            hash,
            |r| r.publish.topic == retained.publish.topic,
            |r| hasher.hash_one(r.publish.topic.as_str()),
        );
        let slot = match entry {
            hash_table::Entry::Occupied(mut occupied) => {
                *occupied.get_mut() = retained;
                occupied.into_mut()
            }
            hash_table::Entry::Vacant(vacant) => vacant.insert(retained).into_mut(),
        };
        &slot.publish
    }

    /// Makes room for `additional` more topics at once, rather than growing step by step
    /// (a restart restores a million in one go).
    pub fn reserve(&mut self, additional: usize) {
        let hasher = &self.hasher;
        self.by_topic
            .reserve(additional, |r| hasher.hash_one(r.publish.topic.as_str()));
    }

    /// The live messages as kept, with their expiry, in no order.
    pub fn iter_kept(&self, now: Instant) -> impl Iterator<Item = (&KeptPublish, Option<Instant>)> {
        self.by_topic
            .iter()
            .filter(move |retained| retained.alive(now))
            .map(|retained| (&retained.publish, retained.expires_at))
    }

    /// The live messages whose topic matches `filter`, by topic; expired ones are dropped.
    pub fn matching(&mut self, filter: &str, now: Instant) -> Vec<RetainedMessage> {
        if !filter.contains(['+', '#']) {
            // A filter without wildcards names one topic: a lookup, not a walk through every
            // retained message (there may be millions).
            let hash = self.hash(filter);
            return match self
                .by_topic
                .find_entry(hash, |r| r.publish.topic.as_str() == filter)
            {
                Ok(found) if found.get().alive(now) => vec![found.get().message()],
                Ok(expired) => {
                    expired.remove();
                    Vec::new()
                }
                Err(_) => Vec::new(),
            };
        }
        self.by_topic.retain(|retained| retained.alive(now));
        let mut messages: Vec<RetainedMessage> = self
            .by_topic
            .iter()
            .filter(|retained| topic::matches(filter, &retained.publish.topic))
            .map(Retained::message)
            .collect();
        messages.sort_by(|a, b| a.publish.topic.cmp(&b.publish.topic));
        messages
    }

    /// The live messages matching `filter` (every one for `None`), in no order.
    pub fn iter_live<'a>(
        &'a self,
        filter: Option<&'a str>,
        now: Instant,
    ) -> impl Iterator<Item = RetainedMessage> + 'a {
        self.by_topic
            .iter()
            .filter(move |retained| retained.alive(now))
            .filter(move |retained| {
                filter.is_none_or(|f| topic::matches(f, &retained.publish.topic))
            })
            .map(Retained::message)
    }
}
