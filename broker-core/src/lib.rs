//! The MQTT broker as a deterministic state machine.
//!
//! The gateway owns one [`Broker`] on one task and feeds it inputs: a new connection's CONNECT
//! ([`Broker::handle_connect`]), every later packet ([`Broker::handle_packet`]), a lost connection
//! ([`Broker::handle_connection_lost`]) and the passing of time ([`Broker::handle_timeout`]). The
//! broker answers through [`Broker::poll_output`]: packets to send and connections to close.
//!
//! There are no sockets, no clock reads and no async here: time is an argument, so tests step the
//! broker with a fake clock and every behaviour is reproducible.

mod auth;
mod broker;
mod config;
mod lazy;
mod session;
mod sessions;
mod stats;
mod tree;

pub use auth::{
    AllowAll, AuthDecision, AuthHook, Authentication, ClientIdentity, Grant, Permissions,
};
pub use broker::{
    Broker, Change, ClientSummary, ConnectionId, ConnectionInfo, Forward, Frame, FrameKind,
    InterestChange, Output, Persistence, RetainedSummary, SessionRecord, Snapshot, StoredEntry,
    StoredInflight, StoredMessage, StoredSession, StoredSubscription, SubscriptionSummary,
    Termination, TopicLimit, Transport,
};
pub use config::BrokerConfig;
pub use session::KeptPublish;
pub use stats::{DropReason, Stats};
pub use tree::SubscriptionTree;

/// The broker's hash maps. Keys are topics and client ids chosen by clients, so the hasher is
/// randomly seeded as std's is; foldhash is several times faster than std's SipHash on the short
/// keys of the routing path.
pub(crate) type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
