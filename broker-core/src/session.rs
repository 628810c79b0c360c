//! Session state: what the broker keeps for a client identifier across connections.
//!
//! A session holds the client's subscriptions, the QoS 1/2 messages in flight towards it, the
//! messages queued behind them, and the packet identifiers of QoS 2 messages it sent that await
//! PUBREL. Invariants: `inflight` is in send order and its packet identifiers are distinct;
//! `queued_bytes` is the sum of the queued payload sizes.
//!
//! Every client has a session, and most clients never subscribe, never receive QoS 1 or 2 and
//! leave no will, so what only some need is out of line: [`LazyMap`], [`LazySet`] and
//! [`LazyDeque`] allocate at their first element, and a will is boxed.

use crate::ConnectionId;
use crate::HashMap;
use mqtt_codec::{ByteStr, ProtocolVersion, PublishPacket, SubscriptionOptions, Will};
use std::borrow::Borrow;
use std::collections::{HashSet, VecDeque};
use std::hash::Hash;
use std::ops::{Index, IndexMut};
use std::time::Instant;

/// Index of a session in the broker's session table.
pub(crate) type SessionKey = usize;

/// A subscription as the session remembers it (the tree holds the same data for matching).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SessionSubscription {
    pub options: SubscriptionOptions,
    pub identifier: Option<u32>,
}

/// A message waiting for a free slot in the in-flight window (or for the client to return).
#[derive(Clone, Debug)]
pub(crate) struct QueuedMessage {
    /// The PUBLISH as it will be sent, without packet identifier or topic alias.
    pub publish: PublishPacket,
    /// When the message expires, from its Message Expiry Interval.
    pub expires_at: Option<Instant>,
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
    /// The connection currently attached, if the client is online.
    pub connection: Option<ConnectionId>,
    /// Changes whenever the session is attached or detached; timers carry the value they were
    /// set for, so a timer outlived by a reconnect is recognised and ignored.
    pub generation: u64,
    /// Seconds the session outlives its connection; `u32::MAX` means forever.
    pub expiry_interval: u32,
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
    pub fn new(client_id: ByteStr, protocol: ProtocolVersion, generation: u64) -> Self {
        Session {
            client_id,
            connection: None,
            generation,
            expiry_interval: 0,
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
    /// [MQTT-2.2.1-3]).
    ///
    /// The caller guarantees the window is smaller than 65,535, so a free one exists.
    pub fn allocate_packet_id(&mut self) -> u16 {
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
}

/// A `HashMap` that takes one pointer, and allocates nothing, until its first entry (an empty
/// `HashMap` takes 48 bytes). Once allocated it stays, as a `HashMap` keeps its capacity.
// The box is the point: it is what makes the empty map one pointer.
#[allow(clippy::box_collection)]
#[derive(Debug)]
pub(crate) struct LazyMap<K, V>(Option<Box<HashMap<K, V>>>);

impl<K: Eq + Hash, V> LazyMap<K, V> {
    pub fn new() -> Self {
        LazyMap(None)
    }

    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |map| map.len())
    }

    pub fn get<Q: Eq + Hash + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.0.as_ref()?.get(key)
    }

    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        self.0.get_or_insert_default().insert(key, value)
    }

    pub fn remove<Q: Eq + Hash + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        self.0.as_mut()?.remove(key)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.0.iter().flat_map(|map| map.iter())
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.0.iter().flat_map(|map| map.keys())
    }
}

/// A `HashSet` that takes one pointer, and allocates nothing, until its first element.
#[allow(clippy::box_collection)]
#[derive(Debug)]
pub(crate) struct LazySet<T>(Option<Box<HashSet<T>>>);

impl<T: Eq + Hash> LazySet<T> {
    pub fn new() -> Self {
        LazySet(None)
    }

    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |set| set.len())
    }

    pub fn contains(&self, value: &T) -> bool {
        self.0.as_ref().is_some_and(|set| set.contains(value))
    }

    pub fn insert(&mut self, value: T) -> bool {
        self.0.get_or_insert_default().insert(value)
    }

    pub fn remove(&mut self, value: &T) -> bool {
        self.0.as_mut().is_some_and(|set| set.remove(value))
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.0.iter().flat_map(|set| set.iter())
    }
}

impl<T: Eq + Hash> FromIterator<T> for LazySet<T> {
    fn from_iter<I: IntoIterator<Item = T>>(values: I) -> Self {
        let set: HashSet<T> = values.into_iter().collect();
        LazySet((!set.is_empty()).then(|| Box::new(set)))
    }
}

/// A `VecDeque` that takes one pointer, and allocates nothing, until its first element (an
/// empty `VecDeque` takes 32 bytes).
#[allow(clippy::box_collection)]
#[derive(Debug)]
pub(crate) struct LazyDeque<T>(Option<Box<VecDeque<T>>>);

impl<T> LazyDeque<T> {
    pub fn new() -> Self {
        LazyDeque(None)
    }

    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |deque| deque.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn push_back(&mut self, value: T) {
        self.0.get_or_insert_default().push_back(value);
    }

    pub fn pop_front(&mut self) -> Option<T> {
        self.0.as_mut()?.pop_front()
    }

    pub fn remove(&mut self, index: usize) -> Option<T> {
        self.0.as_mut()?.remove(index)
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.0.iter().flat_map(|deque| deque.iter())
    }
}

impl<T> Index<usize> for LazyDeque<T> {
    type Output = T;

    fn index(&self, index: usize) -> &T {
        match &self.0 {
            Some(deque) => &deque[index],
            None => panic!("index {index} out of an empty deque"),
        }
    }
}

impl<T> IndexMut<usize> for LazyDeque<T> {
    fn index_mut(&mut self, index: usize) -> &mut T {
        match &mut self.0 {
            Some(deque) => &mut deque[index],
            None => panic!("index {index} out of an empty deque"),
        }
    }
}

impl<T> FromIterator<T> for LazyDeque<T> {
    fn from_iter<I: IntoIterator<Item = T>>(values: I) -> Self {
        let deque: VecDeque<T> = values.into_iter().collect();
        LazyDeque((!deque.is_empty()).then(|| Box::new(deque)))
    }
}
