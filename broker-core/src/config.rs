//! Broker limits and capabilities. Every bound the broker enforces lives here with its default.

use crate::broker::Persistence;
use std::time::Duration;

/// Settings of the broker core. `Default` gives values that need no tuning for a single node.
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    /// Largest packet accepted from a client, in bytes (sent to 5.0 clients as Maximum Packet
    /// Size). Transports decode with the same limit.
    pub max_packet_size: u32,
    /// QoS 1 and 2 PUBLISH packets a client may have unacknowledged towards the server
    /// (Receive Maximum sent in CONNACK); exceeding it closes the connection with 0x93.
    pub receive_maximum: u16,
    /// Upper bound on QoS 1 and 2 messages in flight towards one client, whatever the client's
    /// own Receive Maximum allows.
    pub max_inflight: u16,
    /// Messages queued for one session beyond the in-flight window (online or offline). Only
    /// QoS 1 and 2 messages queue (QoS 0 goes out at once, or is dropped while the client is
    /// offline); beyond the bound the new message is dropped and counted as `QueueFull`.
    pub max_queued_messages: usize,
    /// Payload bytes queued for one session beyond the in-flight window.
    pub max_queued_bytes: usize,
    /// Topic aliases a 5.0 client may use towards the server (Topic Alias Maximum in CONNACK).
    pub topic_alias_maximum: u16,
    /// When set, overrides the client's keep alive (5.0 Server Keep Alive).
    pub server_keep_alive: Option<u16>,
    /// Largest session expiry interval granted, seconds.
    pub max_session_expiry: u32,
    /// Whether retained messages are supported.
    pub retain_available: bool,
    /// How often `$SYS/broker/...` statistics are published; `None` disables them.
    pub sys_interval: Option<Duration>,
    /// Maximum client identifier length accepted, in bytes.
    pub max_client_id_len: usize,
    /// Version string published in `$SYS/broker/version`.
    pub version: String,
    /// Whether changes are recorded for a store, and whether acknowledgements wait for them.
    pub persistence: Persistence,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            max_packet_size: 16 * 1024 * 1024,
            receive_maximum: 1024,
            max_inflight: 256,
            max_queued_messages: 10_000,
            max_queued_bytes: 64 * 1024 * 1024,
            topic_alias_maximum: 1024,
            server_keep_alive: None,
            max_session_expiry: u32::MAX,
            retain_available: true,
            sys_interval: Some(Duration::from_secs(10)),
            max_client_id_len: 256,
            version: concat!("mqtt-gateway ", env!("CARGO_PKG_VERSION")).to_string(),
            persistence: Persistence::Off,
        }
    }
}
