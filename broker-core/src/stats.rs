//! Counters the broker keeps for `$SYS/broker/...`, `/metrics` and the HTTP API.
//!
//! The broker task is the only writer; readers get a copy through `Broker::stats`.

/// Why a message was not delivered to a subscriber.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The session's queue reached its message or byte bound.
    QueueFull,
    /// The message expiry interval passed before it could be sent.
    Expired,
    /// The message exceeds the subscriber's Maximum Packet Size.
    PacketTooLarge,
    /// A QoS 0 message for a session whose client is offline.
    Offline,
    /// The gateway dropped a QoS 0 message for a connection whose socket could not keep up.
    SlowConsumer,
    /// The subscriber may not read the message's topic (its permissions changed, or a
    /// wildcard covers topics it may not read).
    NotAuthorized,
}

impl DropReason {
    /// Every reason, for exporters that list them all.
    pub const ALL: [DropReason; 6] = [
        DropReason::QueueFull,
        DropReason::Expired,
        DropReason::PacketTooLarge,
        DropReason::Offline,
        DropReason::SlowConsumer,
        DropReason::NotAuthorized,
    ];

    /// Label used in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::Expired => "expired",
            DropReason::PacketTooLarge => "packet_too_large",
            DropReason::Offline => "offline_qos0",
            DropReason::SlowConsumer => "slow_consumer",
            DropReason::NotAuthorized => "not_authorized",
        }
    }
}

/// Broker-wide counters and gauges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections that completed CONNECT and are online now.
    pub clients_connected: u64,
    /// Sessions held, online or not.
    pub sessions: u64,
    /// Highest number of clients connected at once.
    pub clients_maximum: u64,
    /// CONNECT attempts refused (bad credentials, invalid id, ...).
    pub connections_refused: u64,
    /// Authentication failures among the refusals.
    pub auth_failures: u64,
    /// Packets received from clients, of every type.
    pub packets_received: u64,
    /// Packets sent to clients, of every type.
    pub packets_sent: u64,
    /// PUBLISH packets received, by QoS.
    pub publish_received: [u64; 3],
    /// PUBLISH packets sent, by QoS.
    pub publish_sent: [u64; 3],
    /// Payload bytes received in PUBLISH packets, by QoS.
    pub publish_bytes_received: [u64; 3],
    /// Payload bytes sent in PUBLISH packets, by QoS.
    pub publish_bytes_sent: [u64; 3],
    /// Bytes read from connections (reported by the gateway).
    pub bytes_received: u64,
    /// Bytes written to connections (reported by the gateway).
    pub bytes_sent: u64,
    /// Messages dropped, by [`DropReason`] in the order of `DropReason::ALL`.
    pub dropped: [u64; DropReason::ALL.len()],
    /// Subscriptions held (one per session and filter).
    pub subscriptions: u64,
    /// Retained messages held.
    pub retained_messages: u64,
    /// Messages waiting in session queues or in flight.
    pub queued_messages: u64,
}

impl Stats {
    /// Messages dropped for `reason`.
    pub fn dropped_for(&self, reason: DropReason) -> u64 {
        self.dropped[reason as usize]
    }

    /// Counts one dropped message.
    pub fn record_drop(&mut self, reason: DropReason) {
        self.dropped[reason as usize] += 1;
    }
}
