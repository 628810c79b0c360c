//! Session state: what the broker keeps for a client identifier across connections.
//!
//! A session holds the client's subscriptions, the QoS 1/2 messages in flight towards it, the
//! messages queued behind them, and the packet identifiers of QoS 2 messages it sent that await
//! PUBREL. Invariants: `inflight` is in send order and its packet identifiers are distinct;
//! `queued_bytes` is the sum of the queued payload sizes.
//!
//! What only some clients need is out of line (the lazy collections, a boxed will): see
//! [`crate::lazy`].

use crate::ConnectionId;
use crate::lazy::{LazyDeque, LazyMap, LazySet};
use bytes::Bytes;
use mqtt_codec::{
    ByteStr, Properties, ProtocolVersion, PublishPacket, QoS, SubscriptionOptions, Will,
};
use std::time::Instant;

/// A session's slot in the session table ([`crate::sessions::Sessions`]). Keys are reused once a
/// session is removed; timers that may outlive a session also carry its generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct SessionKey(u32);

impl SessionKey {
    pub fn new(index: usize) -> Self {
        SessionKey(u32::try_from(index).expect("fewer than 2^32 sessions"))
    }

    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// A subscription as the session remembers it (the subscription tree holds the same data for
/// matching).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SessionSubscription {
    pub options: SubscriptionOptions,
    pub identifier: Option<u32>,
}

/// A PUBLISH as the broker keeps it (queued, in flight, retained, or in a change record): there
/// may be millions, so the properties, which take hundreds of bytes even when empty, are boxed
/// and only when set. Topic and payload share their bytes with every other copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeptPublish {
    /// The topic name.
    pub topic: ByteStr,
    /// The payload.
    pub payload: Bytes,
    /// Its QoS.
    pub qos: QoS,
    /// Its retain flag.
    pub retain: bool,
    /// Its properties, if it has any.
    pub properties: Option<Box<Properties>>,
}

impl KeptPublish {
    /// Keeps a PUBLISH; its packet identifier and DUP flag are set again when it is sent.
    pub fn new(publish: PublishPacket) -> Self {
        let PublishPacket {
            qos,
            retain,
            topic,
            properties,
            payload,
            ..
        } = publish;
        let properties = (properties != Properties::default()).then(|| Box::new(properties));
        KeptPublish {
            topic,
            payload,
            qos,
            retain,
            properties,
        }
    }

    /// The PUBLISH to send, without packet identifier.
    pub fn to_packet(&self) -> PublishPacket {
        PublishPacket {
            dup: false,
            qos: self.qos,
            retain: self.retain,
            topic: self.topic.clone(),
            packet_id: None,
            properties: self.properties.as_deref().cloned().unwrap_or_default(),
            payload: self.payload.clone(),
        }
    }

    /// The subscription identifiers it carries.
    pub fn subscription_identifiers(&self) -> &[u32] {
        self.properties
            .as_ref()
            .map_or(&[], |p| &p.subscription_identifiers)
    }
}

/// A message waiting for a free slot in the in-flight window (or for the client to return).
#[derive(Clone, Debug)]
pub(crate) struct QueuedMessage {
    /// The PUBLISH as it will be sent, without packet identifier or topic alias.
    pub publish: KeptPublish,
    /// When the message expires, from its Message Expiry Interval.
    pub expires_at: Option<Instant>,
    /// Its number within the session, in arrival order (see
    /// [`crate::broker::Change::Queued`]); 0 for a session that is not recorded.
    pub entry: u64,
}

/// A QoS 1 or 2 message sent and not yet fully acknowledged.
#[derive(Clone, Debug)]
pub(crate) struct InflightMessage {
    pub packet_id: u16,
    pub message: QueuedMessage,
    /// PUBREC received and PUBREL sent: only PUBCOMP is awaited.
    pub released: bool,
}

#[derive(Debug)]
pub(crate) struct Session {
    pub client_id: ByteStr,
    /// The session's identifier in the store, unique among the sessions of this broker.
    pub store_id: u64,
    /// Whether the store holds the session: its changes are recorded (see
    /// [`crate::broker::Change`]). True exactly while its expiry interval is not 0, if the
    /// broker records changes at all.
    pub recorded: bool,
    /// The number the next queued message gets.
    pub next_entry: u64,
    /// The connection currently attached, if the client is online.
    pub connection: Option<ConnectionId>,
    /// Changes whenever the session is attached or detached; timers carry the value they were
    /// set for, so a timer outlived by a reconnect is recognised and ignored.
    pub generation: u64,
    /// Seconds the session outlives its connection; `u32::MAX` means forever.
    pub expiry_interval: u32,
    /// When the session expires: set while it is offline with a finite interval.
    pub expires_at: Option<Instant>,
    pub protocol: ProtocolVersion,
    pub subscriptions: LazyMap<ByteStr, SessionSubscription>,
    pub inflight: LazyDeque<InflightMessage>,
    pub queue: LazyDeque<QueuedMessage>,
    pub queued_bytes: usize,
    pub next_packet_id: u16,
    /// QoS 2 packet identifiers received and delivered, awaiting the client's PUBREL.
    pub inbound_qos2: LazySet<u16>,
    /// A will waiting for its Will Delay Interval after the connection was lost.
    pub pending_will: Option<Box<Will>>,
    /// Whether a queue overflow was already logged since the client last drained its queue.
    pub overflow_logged: bool,
}

impl Session {
    pub fn new(client_id: ByteStr, protocol: ProtocolVersion, store_id: u64) -> Self {
        Session {
            client_id,
            store_id,
            recorded: false,
            next_entry: 1,
            connection: None,
            generation: 0,
            expiry_interval: 0,
            expires_at: None,
            protocol,
            subscriptions: LazyMap::new(),
            inflight: LazyDeque::new(),
            queue: LazyDeque::new(),
            queued_bytes: 0,
            next_packet_id: 1,
            inbound_qos2: LazySet::new(),
            pending_will: None,
            overflow_logged: false,
        }
    }

    /// A packet identifier not used by any message in flight [MQTT-2.2.1-4] (3.1.1:
    /// [MQTT-2.2.1-3]), for the message numbered `entry`.
    ///
    /// A recorded session's identifier follows from the entry's number, so that after a crash
    /// that lost the record of a send, the message goes out again under the identifier it had:
    /// a QoS 2 receiver still holding it knows the message (it may deliver on PUBLISH), where a
    /// new identifier would make it a second one. The caller guarantees the window is smaller
    /// than 65,535, so a free identifier exists.
    pub fn allocate_packet_id(&mut self, entry: u64) -> u16 {
        if entry != 0 {
            self.next_packet_id = (entry % 65_535) as u16 + 1;
        }
        loop {
            let candidate = self.next_packet_id;
            self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
            if !self.inflight.iter().any(|m| m.packet_id == candidate) {
                return candidate;
            }
        }
    }

    pub fn push_queue(&mut self, message: QueuedMessage) {
        self.queued_bytes += message.publish.payload.len();
        self.queue.push_back(message);
    }

    pub fn pop_queue(&mut self) -> Option<QueuedMessage> {
        let message = self.queue.pop_front()?;
        self.queued_bytes -= message.publish.payload.len();
        if self.queue.is_empty() {
            self.overflow_logged = false;
        }
        Some(message)
    }

    /// Position of the in-flight message with `packet_id`. Clients acknowledge in order almost
    /// always, so the search usually stops at the front.
    pub fn inflight_position(&self, packet_id: u16) -> Option<usize> {
        self.inflight.iter().position(|m| m.packet_id == packet_id)
    }

    /// A number for a message entering the session, if the session is recorded.
    pub fn new_entry(&mut self) -> u64 {
        if !self.recorded {
            return 0;
        }
        let entry = self.next_entry;
        self.next_entry += 1;
        entry
    }

    /// Messages queued or in flight towards the client.
    pub fn pending_messages(&self) -> usize {
        self.queue.len() + self.inflight.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sessions may queue thousands of messages and a broker may retain millions: what one
    /// costs beyond its topic and payload stays small (a whole `PublishPacket` is over 500
    /// bytes, most of it empty properties).
    #[test]
    fn a_kept_message_is_small() {
        assert!(
            size_of::<KeptPublish>() <= 80,
            "{}",
            size_of::<KeptPublish>()
        );
        assert!(
            size_of::<QueuedMessage>() <= 112,
            "{}",
            size_of::<QueuedMessage>()
        );
        assert!(
            size_of::<PublishPacket>() > 400,
            "the comparison is still worth making"
        );
    }

    #[test]
    fn a_kept_message_gives_back_the_packet() {
        let mut publish = PublishPacket {
            dup: true,
            qos: QoS::ExactlyOnce,
            retain: true,
            topic: ByteStr::from("a/b"),
            packet_id: Some(7),
            properties: Properties::default(),
            payload: Bytes::from_static(b"x"),
        };
        let plain = KeptPublish::new(publish.clone());
        assert!(plain.properties.is_none(), "no box for empty properties");
        publish.properties.content_type = Some(ByteStr::from("text/plain"));
        publish.properties.subscription_identifiers.push(3);
        let kept = KeptPublish::new(publish.clone());
        assert_eq!(kept.subscription_identifiers(), [3]);
        let back = kept.to_packet();
        assert_eq!((back.dup, back.packet_id), (false, None));
        assert_eq!(
            back,
            PublishPacket {
                dup: false,
                packet_id: None,
                ..publish
            }
        );
    }
}
