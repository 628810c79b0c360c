//! Retained messages cluster-wide, in a JetStream key-value bucket (`mqtt-retained`): one key
//! per topic, holding the retained message as an encoded MQTT 5.0 PUBLISH, or deleted when it
//! was cleared. Every node writes the retained messages published on it, and watches the whole
//! bucket to keep its own retained set equal to the cluster's, so a new subscriber on any node
//! gets the retained messages published on any other, from its own node's memory.
//!
//! The bucket needs JetStream (`nats-server -js`). Until it is reachable, the task retries
//! every `RETRY` (logging once), and retained messages stay on the node they were published
//! on, as on a single node; puts made meanwhile wait in the queue, up to its bound.
//!
//! A key is the topic's bytes in unpadded base64url: key-value keys allow only
//! `[-/_=.a-zA-Z0-9]`, and this keeps every topic, reversibly.

use super::link::{ClusterCounters, decode, encode};
use crate::broker_task::{BrokerHandle, Command};
use async_nats::jetstream::{self, kv};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::StreamExt;
use mqtt_codec::{ByteStr, PublishPacket};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{info, warn};

pub const BUCKET: &str = "mqtt-retained";
/// Wait between attempts to reach the bucket.
const RETRY: Duration = Duration::from_secs(2);

/// The key of a topic's retained message.
pub fn key(topic: &str) -> String {
    URL_SAFE_NO_PAD.encode(topic.as_bytes())
}

/// The topic of a key, or None for a key that is not one of ours.
pub fn topic(key: &str) -> Option<String> {
    let bytes = URL_SAFE_NO_PAD.decode(key).ok()?;
    String::from_utf8(bytes)
        .ok()
        .filter(|topic| !topic.is_empty())
}

/// Keeps the bucket and this node's retained set in step: writes what `puts` brings (the
/// retained messages published here), applies every change of the bucket through `broker`.
pub(crate) async fn run(
    jetstream: jetstream::Context,
    broker: BrokerHandle,
    mut puts: mpsc::Receiver<PublishPacket>,
    counters: Arc<ClusterCounters>,
) {
    let mut warned = false;
    loop {
        let store = match bucket(&jetstream).await {
            Ok(store) => store,
            Err(error) => {
                if !warned {
                    warn!(
                        "cluster: retained messages stay on their node until JetStream's {BUCKET} bucket is reachable: {error}"
                    );
                    warned = true;
                }
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        let mut watch = match store.watch_with_history(">").await {
            Ok(watch) => watch,
            Err(error) => {
                warn!("cluster: cannot watch {BUCKET}: {error}");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        if warned {
            info!("cluster: retained messages shared through {BUCKET} again");
            warned = false;
        }
        loop {
            tokio::select! {
                put = puts.recv() => {
                    let Some(publish) = put else { return };
                    write(&store, publish, &counters).await;
                }
                entry = watch.next() => match entry {
                    Some(Ok(entry)) => apply(&broker, entry, &counters).await,
                    // The watch ended (NATS went away): set it up again.
                    _ => break,
                },
            }
        }
    }
}

/// The bucket, created when missing. Created as the stream a key-value bucket is (NATS's ADR-8:
/// one message per subject, roll-ups allowed, direct gets), not through `create_key_value`,
/// which reads account fields that Debian's nats-server 2.9 does not send.
async fn bucket(jetstream: &jetstream::Context) -> Result<kv::Store, String> {
    if let Ok(store) = jetstream.get_key_value(BUCKET).await {
        return Ok(store);
    }
    jetstream
        .get_or_create_stream(jetstream::stream::Config {
            name: format!("KV_{BUCKET}"),
            description: Some("MQTT retained messages, one per topic (mqtt-gateway)".to_owned()),
            subjects: vec![format!("$KV.{BUCKET}.>")],
            max_messages_per_subject: 1,
            discard: jetstream::stream::DiscardPolicy::New,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            max_messages: -1,
            max_bytes: -1,
            max_message_size: -1,
            max_consumers: -1,
            ..Default::default()
        })
        .await
        .map_err(|error| error.to_string())?;
    jetstream
        .get_key_value(BUCKET)
        .await
        .map_err(|error| error.to_string())
}

async fn write(store: &kv::Store, publish: PublishPacket, counters: &ClusterCounters) {
    let key = key(&publish.topic);
    let written = if publish.payload.is_empty() {
        store.delete(&key).await.map_err(|error| error.to_string())
    } else {
        match encode(publish) {
            Some(value) => store
                .put(&key, value)
                .await
                .map(|_| ())
                .map_err(|error| error.to_string()),
            None => Err("not encodable".to_owned()),
        }
    };
    if written.is_err() {
        counters.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

async fn apply(broker: &BrokerHandle, entry: kv::Entry, counters: &ClusterCounters) {
    let Some(topic) = topic(&entry.key) else {
        return;
    };
    let publish = match entry.operation {
        kv::Operation::Put => match decode(&entry.value) {
            Some(publish) if publish.topic.as_str() == topic => publish,
            _ => {
                counters.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
        },
        // A cleared retained message: an empty one clears it here too.
        kv::Operation::Delete | kv::Operation::Purge => PublishPacket {
            dup: false,
            qos: mqtt_codec::QoS::AtMostOnce,
            retain: true,
            topic: ByteStr::from(topic),
            packet_id: None,
            properties: Default::default(),
            payload: bytes::Bytes::new(),
        },
    };
    let _ = broker
        .send(Command::RetainFromCluster(Box::new(publish)))
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_topic_has_a_valid_key_and_back() {
        for topic in ["a/b", "/", "$SYS/x", "a b.c*>/ü", "x//y"] {
            let key = key(topic);
            assert!(
                key.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c)),
                "{key}"
            );
            assert_eq!(super::topic(&key).as_deref(), Some(topic));
        }
        assert_eq!(topic("not base64!"), None);
        assert_eq!(topic(""), None);
    }
}
