//! `/metrics`: the broker's counters in the Prometheus text format.
//!
//! The broker task owns the counters ([`Stats`]), so a scrape asks it for a snapshot and copies
//! the values into a Prometheus recorder of the `metrics` crate that this struct owns (not the
//! process-global one: tests run several gateways in one process), then renders it. Nothing runs
//! between scrapes and the exporter has no listener of its own.
//!
//! Open connections per transport, the bytes in and out and the connections refused at a limit
//! come from the transports' own counters ([`crate::counters`]); the live tasks from tokio's
//! runtime metrics, so that a leaked connection task shows even where no counter knows of it. Refused WebSocket upgrades are counted through counter handles
//! registered once with the recorder.

use crate::cluster::ClusterCounters;
use crate::counters::{TRANSPORTS, TransportCounters};
use crate::security::{Method, Refusal};
use crate::store::StoreView;
use broker_core::{DropReason, Stats};
use metrics::{Counter, counter, describe_counter, describe_gauge, gauge, with_local_recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use std::fmt;
use std::sync::atomic::Ordering;

/// Why a WebSocket upgrade was refused, for the `mqtt_websocket_upgrades_refused_total` counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RefusedUpgrade {
    /// The `Origin` header named a site that may not connect.
    Origin,
    /// The client offered no MQTT subprotocol.
    Subprotocol,
    /// The gateway was at its maximum number of connections.
    ConnectionLimit,
}

/// The Prometheus recorder of one gateway.
pub(crate) struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    refused_origin: Counter,
    refused_subprotocol: Counter,
    refused_limit: Counter,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A recorder with every metric described.
    pub(crate) fn new() -> Self {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let (refused_origin, refused_subprotocol, refused_limit) =
            with_local_recorder(&recorder, || {
                describe();
                let name = "mqtt_websocket_upgrades_refused_total";
                (
                    counter!(name, "reason" => "origin"),
                    counter!(name, "reason" => "subprotocol"),
                    counter!(name, "reason" => "connection_limit"),
                )
            });
        Metrics {
            recorder,
            handle,
            refused_origin,
            refused_subprotocol,
            refused_limit,
        }
    }

    /// Counts one refused WebSocket upgrade.
    pub(crate) fn record_refused_upgrade(&self, reason: RefusedUpgrade) {
        match reason {
            RefusedUpgrade::Origin => self.refused_origin.increment(1),
            RefusedUpgrade::Subprotocol => self.refused_subprotocol.increment(1),
            RefusedUpgrade::ConnectionLimit => self.refused_limit.increment(1),
        }
    }

    /// Copies a snapshot into the recorder and renders the Prometheus text exposition.
    pub(crate) fn render(
        &self,
        stats: &Stats,
        counters: &TransportCounters,
        locked_addresses: usize,
        store: &StoreView,
        cluster: Option<&ClusterCounters>,
    ) -> String {
        with_local_recorder(&self.recorder, || {
            record(stats, counters, locked_addresses);
            record_store(store);
            if let Some(cluster) = cluster {
                record_cluster(cluster);
            }
        });
        self.handle.render()
    }
}

const QOS_LABELS: [&str; 3] = ["0", "1", "2"];

fn describe() {
    describe_gauge!(
        "mqtt_connections",
        "Network connections open now, by transport (including those before CONNECT)"
    );
    describe_gauge!(
        "mqtt_connections_parked",
        "TCP connections quiet long enough to wait without a task of their own"
    );
    describe_counter!(
        "mqtt_connections_resumed_total",
        "Parked connections resumed (bytes from the client, or packets or a close for it)"
    );
    describe_gauge!(
        "mqtt_clients_connected",
        "Clients connected now (CONNECT accepted)"
    );
    describe_gauge!(
        "mqtt_clients_maximum",
        "Highest number of clients connected at once"
    );
    describe_gauge!("mqtt_sessions", "Sessions held, online or not");
    describe_counter!(
        "mqtt_connections_refused_total",
        "CONNECT attempts refused (bad credentials, invalid client id, ...)"
    );
    describe_counter!(
        "mqtt_auth_failures_total",
        "Authentication failures among the refused CONNECTs"
    );
    describe_counter!(
        "mqtt_messages_received_total",
        "PUBLISH packets received from clients, by QoS"
    );
    describe_counter!(
        "mqtt_messages_sent_total",
        "PUBLISH packets sent to clients, by QoS"
    );
    describe_counter!(
        "mqtt_payload_bytes_received_total",
        "Payload bytes of the PUBLISH packets received"
    );
    describe_counter!(
        "mqtt_payload_bytes_sent_total",
        "Payload bytes of the PUBLISH packets sent"
    );
    describe_counter!(
        "mqtt_network_bytes_received_total",
        "Bytes read from all connections"
    );
    describe_counter!(
        "mqtt_network_bytes_sent_total",
        "Bytes written to all connections"
    );
    describe_counter!(
        "mqtt_packets_received_total",
        "Control packets received, of every type"
    );
    describe_counter!(
        "mqtt_packets_sent_total",
        "Control packets sent, of every type"
    );
    describe_gauge!(
        "mqtt_subscriptions",
        "Subscriptions held (one per session and filter)"
    );
    describe_gauge!("mqtt_retained_messages", "Retained messages held");
    describe_gauge!(
        "mqtt_queued_messages",
        "Messages waiting in session queues or in flight"
    );
    describe_counter!(
        "mqtt_messages_dropped_total",
        "Messages not delivered to a subscriber, by reason"
    );
    describe_counter!(
        "mqtt_websocket_upgrades_refused_total",
        "WebSocket upgrades on /mqtt refused, by reason"
    );
    describe_counter!(
        "mqtt_auth_accepted_total",
        "CONNECTs whose credentials were accepted, by method"
    );
    describe_counter!(
        "mqtt_auth_refused_total",
        "CONNECTs refused by the credentials check, by reason"
    );
    describe_counter!(
        "mqtt_connections_refused_per_address_total",
        "Connections refused because their address had --max-connections-per-ip open"
    );
    describe_counter!(
        "mqtt_connections_refused_at_limit_total",
        "Connections closed at accept, by limit: max_connections (--max-connections) or \
         file_descriptors (the process's descriptors ran out)"
    );
    describe_gauge!(
        "mqtt_tasks",
        "Tasks alive in the gateway's runtime: one per connection, plus the listeners, the \
         broker, the store and HTTP requests in progress"
    );
    describe_gauge!(
        "mqtt_auth_locked_addresses",
        "Addresses refused for now after too many failed authentications"
    );
    describe_counter!("mqtt_store_commits_total", "Store transactions committed");
    describe_counter!(
        "mqtt_store_changes_written_total",
        "Change records committed to the store"
    );
    describe_counter!(
        "mqtt_store_write_errors_total",
        "Store commits that failed (disk full, I/O error); each retry counts"
    );
    describe_gauge!(
        "mqtt_store_last_commit_seconds",
        "Duration of the last store commit that succeeded"
    );
    describe_gauge!(
        "mqtt_store_writable",
        "1 while the store can write; 0 while it cannot (QoS 1/2 messages it would keep are refused)"
    );
    describe_gauge!(
        "mqtt_cluster_connected",
        "1 while this node's link to the cluster's NATS is up (cluster nodes only)"
    );
    describe_counter!(
        "mqtt_cluster_forwarded_total",
        "Messages published here and handed to NATS for the other nodes"
    );
    describe_counter!(
        "mqtt_cluster_received_total",
        "Messages from other nodes handed to this node's subscribers"
    );
    describe_counter!(
        "mqtt_cluster_dropped_total",
        "Messages that did not cross: the link's queue was full, NATS refused them, or one from another node was unreadable"
    );
    describe_counter!(
        "mqtt_cluster_disconnects_total",
        "Times the link to NATS was lost"
    );
    describe_gauge!(
        "mqtt_cluster_forward_queue",
        "The link's lag: messages published here waiting to be handed to NATS"
    );
    describe_gauge!(
        "mqtt_cluster_session_log_queue",
        "The sessions' log's lag: change records of persistent sessions waiting to be written to JetStream"
    );
    describe_gauge!(
        "mqtt_cluster_session_log_writable",
        "1 while the sessions' log in JetStream can be written; 0 while it cannot (QoS 1/2 messages for persistent sessions are refused)"
    );
    describe_counter!(
        "mqtt_cluster_sessions_adopted_total",
        "Persistent sessions taken in from another node, or from the log of a lost one"
    );
    describe_counter!(
        "mqtt_cluster_slow_consumer_total",
        "Times NATS dropped messages from other nodes because this node read them too slowly"
    );
    describe_counter!(
        "mqtt_cluster_session_log_compactions_total",
        "Session logs replaced by an image of the session (every 1,000 records)"
    );
    describe_counter!(
        "mqtt_cluster_sessions_released_total",
        "Persistent sessions released to another node whose client resumed them there"
    );
}

fn record_store(store: &StoreView) {
    let counters = &store.counters;
    counter!("mqtt_store_commits_total").absolute(counters.commits.load(Ordering::Relaxed));
    counter!("mqtt_store_changes_written_total")
        .absolute(counters.changes_written.load(Ordering::Relaxed));
    counter!("mqtt_store_write_errors_total")
        .absolute(counters.write_errors.load(Ordering::Relaxed));
    let micros = counters.last_commit_micros.load(Ordering::Relaxed);
    gauge!("mqtt_store_last_commit_seconds").set(micros as f64 / 1e6);
    gauge!("mqtt_store_writable").set(if store.status.borrow().writable {
        1.0
    } else {
        0.0
    });
}

/// The cluster link's figures, on a node of a cluster only.
fn record_cluster(cluster: &ClusterCounters) {
    let connected = cluster.connected.load(Ordering::Relaxed);
    gauge!("mqtt_cluster_connected").set(if connected { 1.0 } else { 0.0 });
    counter!("mqtt_cluster_forwarded_total").absolute(cluster.forwarded.load(Ordering::Relaxed));
    counter!("mqtt_cluster_received_total").absolute(cluster.received.load(Ordering::Relaxed));
    counter!("mqtt_cluster_dropped_total").absolute(cluster.dropped.load(Ordering::Relaxed));
    counter!("mqtt_cluster_disconnects_total")
        .absolute(cluster.disconnects.load(Ordering::Relaxed));
    gauge!("mqtt_cluster_forward_queue")
        .set(cluster.forward_waiting.load(Ordering::Relaxed) as f64);
    gauge!("mqtt_cluster_session_log_queue")
        .set(cluster.log_waiting.load(Ordering::Relaxed) as f64);
    let failing = cluster.log_failing.load(Ordering::Relaxed);
    gauge!("mqtt_cluster_session_log_writable").set(if failing { 0.0 } else { 1.0 });
    counter!("mqtt_cluster_sessions_adopted_total")
        .absolute(cluster.sessions_adopted.load(Ordering::Relaxed));
    counter!("mqtt_cluster_sessions_released_total")
        .absolute(cluster.sessions_released.load(Ordering::Relaxed));
    counter!("mqtt_cluster_slow_consumer_total")
        .absolute(cluster.slow_consumer.load(Ordering::Relaxed));
    counter!("mqtt_cluster_session_log_compactions_total")
        .absolute(cluster.compactions.load(Ordering::Relaxed));
}

fn record(stats: &Stats, counters: &TransportCounters, locked_addresses: usize) {
    for transport in TRANSPORTS {
        gauge!("mqtt_connections", "transport" => transport.as_str())
            .set(counters.open_connections.get(transport) as f64);
    }
    gauge!("mqtt_connections_parked")
        .set(counters.parked_connections.load(Ordering::Relaxed) as f64);
    counter!("mqtt_connections_resumed_total")
        .absolute(counters.resumed_connections.load(Ordering::Relaxed));
    gauge!("mqtt_clients_connected").set(stats.clients_connected as f64);
    gauge!("mqtt_clients_maximum").set(stats.clients_maximum as f64);
    gauge!("mqtt_sessions").set(stats.sessions as f64);
    // `absolute` keeps a counter monotonic: it never moves it backwards.
    counter!("mqtt_connections_refused_total").absolute(stats.connections_refused);
    counter!("mqtt_auth_failures_total").absolute(stats.auth_failures);
    for (qos, label) in QOS_LABELS.into_iter().enumerate() {
        counter!("mqtt_messages_received_total", "qos" => label)
            .absolute(stats.publish_received[qos]);
        counter!("mqtt_messages_sent_total", "qos" => label).absolute(stats.publish_sent[qos]);
        counter!("mqtt_payload_bytes_received_total", "qos" => label)
            .absolute(stats.publish_bytes_received[qos]);
        counter!("mqtt_payload_bytes_sent_total", "qos" => label)
            .absolute(stats.publish_bytes_sent[qos]);
    }
    // The transports' own counters are fresher than the copy the broker takes on its timer.
    counter!("mqtt_network_bytes_received_total")
        .absolute(counters.bytes_received.load(Ordering::Relaxed));
    counter!("mqtt_network_bytes_sent_total").absolute(counters.bytes_sent.load(Ordering::Relaxed));
    counter!("mqtt_packets_received_total").absolute(stats.packets_received);
    counter!("mqtt_packets_sent_total").absolute(stats.packets_sent);
    gauge!("mqtt_subscriptions").set(stats.subscriptions as f64);
    gauge!("mqtt_retained_messages").set(stats.retained_messages as f64);
    gauge!("mqtt_queued_messages").set(stats.queued_messages as f64);
    for reason in DropReason::ALL {
        counter!("mqtt_messages_dropped_total", "reason" => reason.as_str())
            .absolute(stats.dropped_for(reason));
    }
    for (method, count) in Method::ALL.iter().zip(&counters.auth_accepted) {
        counter!("mqtt_auth_accepted_total", "method" => method.label())
            .absolute(count.load(Ordering::Relaxed));
    }
    for (label, count) in Refusal::LABELS.iter().zip(&counters.auth_refused) {
        counter!("mqtt_auth_refused_total", "reason" => *label)
            .absolute(count.load(Ordering::Relaxed));
    }
    counter!("mqtt_connections_refused_per_address_total")
        .absolute(counters.refused_per_address.load(Ordering::Relaxed));
    for (limit, count) in [
        ("max_connections", &counters.refused_max_connections),
        ("file_descriptors", &counters.refused_out_of_descriptors),
    ] {
        counter!("mqtt_connections_refused_at_limit_total", "limit" => limit)
            .absolute(count.load(Ordering::Relaxed));
    }
    let tasks = tokio::runtime::Handle::try_current()
        .map_or(0, |runtime| runtime.metrics().num_alive_tasks());
    gauge!("mqtt_tasks").set(tasks as f64);
    gauge!("mqtt_auth_locked_addresses").set(locked_addresses as f64);
}

#[cfg(test)]
mod tests {
    use super::*;
    use broker_core::Transport;

    /// A store that failed 3 writes and cannot write now.
    fn store_view() -> StoreView {
        let counters = crate::store::StoreCounters::default();
        counters.write_errors.store(3, Ordering::Relaxed);
        let (_, status) = tokio::sync::watch::channel(crate::store::StoreStatus {
            durable: 0,
            writable: false,
        });
        StoreView {
            counters: std::sync::Arc::new(counters),
            status,
        }
    }

    #[test]
    fn render_names_every_family_and_label() {
        let metrics = Metrics::new();
        let counters = TransportCounters::default();
        let _open = counters.open_connections.open(Transport::Tcp);
        let stats = Stats {
            publish_received: [3, 2, 1],
            ..Stats::default()
        };
        metrics.record_refused_upgrade(RefusedUpgrade::Origin);
        counters.record_authentication(Err(Refusal::BadPassword));
        counters
            .refused_out_of_descriptors
            .store(5, Ordering::Relaxed);
        let text = metrics.render(&stats, &counters, 2, &store_view(), None);
        for line in [
            "# TYPE mqtt_connections gauge",
            "mqtt_connections{transport=\"tcp\"} 1",
            "mqtt_connections{transport=\"ws\"} 0",
            "# TYPE mqtt_messages_received_total counter",
            "mqtt_messages_received_total{qos=\"0\"} 3",
            "mqtt_messages_received_total{qos=\"2\"} 1",
            "mqtt_messages_dropped_total{reason=\"slow_consumer\"} 0",
            "mqtt_websocket_upgrades_refused_total{reason=\"origin\"} 1",
            "mqtt_auth_refused_total{reason=\"bad_password\"} 1",
            "mqtt_auth_accepted_total{method=\"token\"} 0",
            "mqtt_auth_locked_addresses 2",
            "mqtt_connections_refused_at_limit_total{limit=\"file_descriptors\"} 5",
            "mqtt_connections_refused_at_limit_total{limit=\"max_connections\"} 0",
            "# TYPE mqtt_tasks gauge",
            "# TYPE mqtt_store_write_errors_total counter",
            "mqtt_store_write_errors_total 3",
            "mqtt_store_writable 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }
}
