//! One network connection as the broker sees it, from its accepted CONNECT to its close.
//!
//! Connection state lives for one network connection; everything that must survive a
//! reconnect lives in the session. A [`Connection`] owns what the client told us in its
//! CONNECT (its limits, its will, its keep alive) and the topic aliases in both directions.

use crate::auth::Permissions;
use crate::lazy::{LazyMap, LazySet};
use crate::session::SessionKey;
use mqtt_codec::{ByteStr, ProtocolVersion, Will};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Identifies one network connection; chosen by the gateway, unique for the broker's lifetime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u64);

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// The transport a connection arrived on, for the API and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// MQTT over plain TCP.
    Tcp,
    /// MQTT over TLS.
    Tls,
    /// MQTT over WebSocket.
    WebSocket,
    /// MQTT over WebSocket over TLS.
    WebSocketTls,
}

impl Transport {
    /// Short name used in metrics labels and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::WebSocket => "ws",
            Transport::WebSocketTls => "wss",
        }
    }
}

/// Facts about a connection that the broker reports but does not act on.
#[derive(Clone, Debug)]
pub struct ConnectionInfo {
    /// How the client reached us.
    pub transport: Transport,
    /// The peer's address, as text; shared by the connection's task and the broker.
    pub remote_address: Arc<str>,
}

/// Per-connection state of an accepted client.
#[derive(Debug)]
pub(super) struct Connection {
    pub session: SessionKey,
    pub info: ConnectionInfo,
    pub protocol: ProtocolVersion,
    pub username: Option<ByteStr>,
    pub connected_at: Instant,
    pub last_activity: Instant,
    /// Keep alive in force, seconds (0: none).
    pub keep_alive: u16,
    /// Boxed: most clients leave no will, and a `Will` is large.
    pub will: Option<Box<Will>>,
    /// The client's Receive Maximum: QoS 1/2 messages it accepts in flight.
    pub receive_maximum: u16,
    /// The client's Maximum Packet Size, if it set one.
    pub maximum_packet_size: Option<u32>,
    /// Topic aliases the client accepts from us.
    pub topic_alias_maximum: u16,
    /// Aliases we assigned for outgoing topics.
    pub outbound_aliases: LazyMap<ByteStr, u16>,
    /// Aliases the client assigned for incoming topics.
    pub inbound_aliases: LazyMap<u16, ByteStr>,
    /// The authentication method of the CONNECT, for re-authentication; boxed as only
    /// enhanced authentication sets it.
    pub authentication_method: Option<Box<ByteStr>>,
    /// The Session Expiry Interval the CONNECT asked for (before the broker's cap): only a
    /// CONNECT with 0 forbids setting one at DISCONNECT.
    pub requested_session_expiry: u32,
    /// Acknowledgements to it held until the store has written what they promise.
    pub held_acks: u32,
    /// Messages in flight from an earlier connection not yet sent again on this one: the last
    /// `owed_resends` of the session's window, sent as acknowledgements make room, so that the
    /// client never has more than its Receive Maximum unacknowledged [MQTT-3.3.4-9].
    pub owed_resends: usize,
    /// What the client may do and which refusals were logged; boxed, since most clients have
    /// neither (one pointer per idle connection).
    pub access: Option<Box<Access>>,
}

/// A connection's permissions and its logged refusals.
#[derive(Debug, Default)]
pub(super) struct Access {
    /// What the client may do, from its verified credentials; `None`: everything.
    pub permissions: Option<Box<dyn Permissions>>,
    /// Topics whose refused PUBLISH was logged (bounded by [`MAX_REFUSALS_LOGGED`]), so that a
    /// client retrying in a loop costs one log line per topic.
    pub refusals_logged: LazySet<ByteStr>,
}

/// Refused topics remembered per connection for logging once; past it, no more are logged.
const MAX_REFUSALS_LOGGED: usize = 64;

/// The alias an outgoing PUBLISH may use, from [`Connection::outbound_alias`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum OutboundAlias {
    /// The topic already has this alias: it stands for the topic.
    Known(u16),
    /// The topic may take this alias: it travels with the topic this once, and is recorded
    /// only if the message is sent.
    New(u16),
}

impl Connection {
    /// Whether a refused PUBLISH to `topic` is the first from this client (to be logged).
    pub fn first_refusal(&mut self, topic: &ByteStr) -> bool {
        let logged = &mut self.access.get_or_insert_default().refusals_logged;
        logged.len() < MAX_REFUSALS_LOGGED && logged.insert(topic.detached())
    }

    fn permissions(&mut self) -> Option<&mut Box<dyn Permissions>> {
        self.access.as_mut()?.permissions.as_mut()
    }

    /// Whether the client may publish to `topic`, as its credentials say.
    pub fn may_publish(&mut self, topic: &str) -> bool {
        self.permissions().is_none_or(|p| p.may_publish(topic))
    }

    /// Whether the client may subscribe to `filter`, as its credentials say.
    pub fn may_subscribe(&mut self, filter: &str) -> bool {
        self.permissions().is_none_or(|p| p.may_subscribe(filter))
    }

    /// Whether a message on `topic` may be delivered to the client, as its credentials say.
    pub fn may_receive(&mut self, topic: &str) -> bool {
        self.permissions().is_none_or(|p| p.may_receive(topic))
    }

    /// The number of QoS 1/2 messages that may be in flight towards the client: its Receive
    /// Maximum, capped by the broker's.
    pub fn window(&self, max_inflight: u16) -> usize {
        usize::from(self.receive_maximum.min(max_inflight).max(1))
    }

    /// When the connection times out if nothing more arrives.
    pub fn keep_alive_deadline(&self) -> Instant {
        // The server allows one and a half keep alive periods [MQTT-3.1.2-22] (in 3.1.1,
        // [MQTT-3.1.2-24]).
        self.last_activity + Duration::from_millis(u64::from(self.keep_alive) * 1500)
    }

    /// Whether a QoS 0 message with no per-receiver properties goes to this client as the same
    /// bytes as to any other client of its protocol version: it takes no topic aliases.
    pub fn takes_plain_frames(&self) -> bool {
        self.topic_alias_maximum == 0
    }

    /// The alias for an outgoing message on `topic`, if the client takes aliases and one is
    /// known or still free.
    pub fn outbound_alias(&self, topic: &ByteStr) -> Option<OutboundAlias> {
        if self.topic_alias_maximum == 0 {
            return None;
        }
        if let Some(&alias) = self.outbound_aliases.get(topic) {
            return Some(OutboundAlias::Known(alias));
        }
        let next = self.outbound_aliases.len() + 1;
        (next <= usize::from(self.topic_alias_maximum)).then_some(OutboundAlias::New(next as u16))
    }
}
