//! The `$SYS/broker/...` statistics topics, published retained every `sys_interval`, with the
//! names Mosquitto uses so that existing dashboards and scripts read them as they are.

use super::Broker;
use bytes::Bytes;
use mqtt_codec::{ByteStr, Properties, PublishPacket, QoS};
use std::time::Instant;

impl Broker {
    /// Publishes the current statistics.
    pub(super) fn publish_sys(&mut self, now: Instant) {
        let stats = self.stats();
        let uptime = now.saturating_duration_since(self.started_at).as_secs();
        let entries: [(&str, String); 16] = [
            ("$SYS/broker/version", self.config.version.clone()),
            ("$SYS/broker/uptime", format!("{uptime} seconds")),
            (
                "$SYS/broker/clients/connected",
                stats.clients_connected.to_string(),
            ),
            ("$SYS/broker/clients/total", stats.sessions.to_string()),
            (
                "$SYS/broker/clients/maximum",
                stats.clients_maximum.to_string(),
            ),
            (
                "$SYS/broker/clients/disconnected",
                stats
                    .sessions
                    .saturating_sub(stats.clients_connected)
                    .to_string(),
            ),
            (
                "$SYS/broker/messages/received",
                stats.packets_received.to_string(),
            ),
            ("$SYS/broker/messages/sent", stats.packets_sent.to_string()),
            (
                "$SYS/broker/publish/messages/received",
                stats.publish_received.iter().sum::<u64>().to_string(),
            ),
            (
                "$SYS/broker/publish/messages/sent",
                stats.publish_sent.iter().sum::<u64>().to_string(),
            ),
            (
                "$SYS/broker/publish/messages/dropped",
                stats.dropped.iter().sum::<u64>().to_string(),
            ),
            (
                "$SYS/broker/bytes/received",
                stats.bytes_received.to_string(),
            ),
            ("$SYS/broker/bytes/sent", stats.bytes_sent.to_string()),
            (
                "$SYS/broker/subscriptions/count",
                stats.subscriptions.to_string(),
            ),
            (
                "$SYS/broker/retained messages/count",
                stats.retained_messages.to_string(),
            ),
            (
                "$SYS/broker/store/messages/count",
                stats.queued_messages.to_string(),
            ),
        ];
        for (topic, value) in entries {
            let publish = PublishPacket {
                dup: false,
                qos: QoS::AtMostOnce,
                retain: true,
                topic: ByteStr::from_static(topic),
                packet_id: None,
                properties: Properties::default(),
                payload: Bytes::from(value),
            };
            self.publish_message(None, publish, now);
        }
    }
}
