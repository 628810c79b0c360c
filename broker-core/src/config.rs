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
    /// The name of the cluster node this broker is, if it is one: sent to 5.0 clients in the
    /// CONNACK as the User Property `node`, so that a client (the dashboard) can say which node
    /// it reached behind a load balancer.
    pub node_name: Option<String>,
    /// Maximum client identifier length accepted, in bytes; a longer one is refused with
    /// CONNACK 0x85 (3.1.1: 0x02). Every server must accept 23 [MQTT-3.1.3-5], so the
    /// gateway's `--max-client-id-len` never sets less.
    pub max_client_id_len: usize,
    /// Subscriptions one session may hold. A SUBSCRIBE filter beyond it (replacing an existing
    /// filter does not count) is refused in the SUBACK with 0x97 Quota exceeded (3.1.1: 0x80).
    pub max_subscriptions_per_client: usize,
    /// Longest topic name or filter accepted, in bytes (the wire allows 65,535). Beyond it a
    /// filter is refused in the SUBACK with 0x8F (3.1.1: 0x80), and a PUBLISH is refused with
    /// 0x90 Topic Name invalid (PUBACK/PUBREC for QoS 1/2, DISCONNECT for QoS 0; 3.1.1 clients
    /// are disconnected).
    pub max_topic_length: usize,
    /// Most levels (`/`-separated parts) in a topic name or filter, answered as for
    /// `max_topic_length`. The subscription tree is walked one call per level.
    pub max_topic_levels: usize,
    /// Most User Properties in one packet (CONNECT and its will count together). Beyond it, or
    /// beyond `max_user_properties_bytes`, the packet is refused with 0x97 Quota exceeded: in the
    /// CONNACK, the PUBACK/PUBREC of a QoS 1/2 PUBLISH, every code of a SUBACK, or a DISCONNECT.
    pub max_user_properties: usize,
    /// Most bytes of User Property names and values in one packet.
    pub max_user_properties_bytes: usize,
    /// The longest keep alive granted, seconds; `None`: no cap. A 5.0 client asking for more,
    /// or for 0 (none), is given this one as Server Keep Alive [MQTT-3.2.2-21]; an older client
    /// cannot be told, so it is refused (the connection closed without CONNACK, as no 3.1.1
    /// return code fits [MQTT-3.2.2-6]). `server_keep_alive`, when set, wins for 5.0 clients.
    pub max_keep_alive: Option<u16>,
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
            node_name: None,
            max_client_id_len: 256,
            max_subscriptions_per_client: 1_000,
            max_topic_length: 4_096,
            max_topic_levels: 128,
            max_user_properties: 32,
            max_user_properties_bytes: 8 * 1024,
            max_keep_alive: None,
            version: concat!("mqtt-gateway ", env!("CARGO_PKG_VERSION")).to_string(),
            persistence: Persistence::Off,
        }
    }
}
