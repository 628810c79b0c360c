//! The cluster link: this gateway as one node of several that share one topic space over NATS.
//! See the README's "Running a cluster".
//!
//! - `subject.rs` maps MQTT topics and filters to NATS subjects and back.
//! - `link.rs` is the task between the broker task and NATS: interest, forwards, and the
//!   messages of other nodes.
//! - `shared.rs` balances shared groups across the nodes (NATS queue subscriptions).
//! - `retained.rs` keeps the cluster's retained messages in a JetStream key-value bucket.
//! - `sessions.rs` keeps persistent sessions in JetStream and moves them between nodes.
pub(crate) mod link;
pub(crate) mod retained;
pub(crate) mod sessions;
pub(crate) mod shared;
pub(crate) mod subject;

pub use link::{ClusterCounters, ClusterError};
