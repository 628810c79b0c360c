//! Retained messages, by topic.
//!
//! A retained message is kept as received, with the retain flag set, its topic and payload
//! copied out of the read buffer they arrived in (a retained message may stay for months, the
//! buffer should not). Expired messages are dropped when they are next looked at.

use crate::HashMap;
use bytes::Bytes;
use mqtt_codec::{ByteStr, PublishPacket, topic};
use std::time::Instant;

/// A retained message.
#[derive(Clone, Debug)]
pub(super) struct RetainedMessage {
    pub publish: PublishPacket,
    pub expires_at: Option<Instant>,
}

impl RetainedMessage {
    fn alive(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

#[derive(Default)]
pub(super) struct RetainedMessages {
    by_topic: HashMap<ByteStr, RetainedMessage>,
}

impl RetainedMessages {
    pub fn len(&self) -> usize {
        self.by_topic.len()
    }

    /// Retains `publish` on its topic, or clears the topic for an empty payload, which is not
    /// stored [MQTT-3.3.1-6].
    pub fn retain(&mut self, publish: &PublishPacket, expires_at: Option<Instant>) {
        if publish.payload.is_empty() {
            self.by_topic.remove(&publish.topic);
            return;
        }
        let mut stored = publish.clone();
        stored.topic = publish.topic.detached();
        stored.payload = Bytes::copy_from_slice(&publish.payload);
        self.insert(RetainedMessage {
            publish: stored,
            expires_at,
        });
    }

    /// Adds a message that shares no buffer with others (one restored from the store).
    pub fn insert(&mut self, message: RetainedMessage) {
        self.by_topic.insert(message.publish.topic.clone(), message);
    }

    /// The live messages whose topic matches `filter`, by topic; expired ones are dropped.
    pub fn matching(&mut self, filter: &str, now: Instant) -> Vec<RetainedMessage> {
        self.by_topic.retain(|_, message| message.alive(now));
        let mut messages: Vec<RetainedMessage> = self
            .by_topic
            .iter()
            .filter(|(name, _)| topic::matches(filter, name))
            .map(|(_, message)| message.clone())
            .collect();
        messages.sort_by(|a, b| a.publish.topic.cmp(&b.publish.topic));
        messages
    }

    /// The live messages matching `filter` (every one for `None`), in no order.
    pub fn iter_live<'a>(
        &'a self,
        filter: Option<&'a str>,
        now: Instant,
    ) -> impl Iterator<Item = &'a RetainedMessage> {
        self.by_topic
            .iter()
            .filter(move |(_, message)| message.alive(now))
            .filter(move |(name, _)| filter.is_none_or(|f| topic::matches(f, name)))
            .map(|(_, message)| message)
    }
}
