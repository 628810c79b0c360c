//! Backpressure signal: the broker reports when it queued a message for an online client whose
//! queue is half full, so the gateway can slow the publisher instead of dropping messages later.

use crate::common::*;
use broker_core::BrokerConfig;
use mqtt_codec::QoS;

fn small_queue() -> BrokerConfig {
    BrokerConfig {
        max_inflight: 1,
        max_queued_messages: 4,
        ..quiet_config()
    }
}

#[test]
fn congestion_is_reported_when_an_online_queue_is_half_full() {
    let mut h = Harness::with_config(small_queue());
    h.connect_ok(A, v5("subscriber"));
    h.subscribe(A, "t", QoS::AtLeastOnce);
    h.connect_ok(B, v5("publisher"));
    assert!(!h.broker.take_congestion());
    // One in flight, then the queue fills: 1 queued is below half of 4, 2 is half.
    h.publish(B, qos1("t", "1", 1));
    h.publish(B, qos1("t", "2", 2));
    assert!(
        !h.broker.take_congestion(),
        "one queued of four is not congestion"
    );
    h.publish(B, qos1("t", "3", 3));
    assert!(h.broker.take_congestion(), "two queued of four is");
    assert!(!h.broker.take_congestion(), "the flag is taken once");
}

#[test]
fn offline_queues_never_report_congestion() {
    let mut h = Harness::with_config(small_queue());
    h.connect_ok(A, v5_persistent("away", 600));
    h.subscribe(A, "t", QoS::AtLeastOnce);
    h.disconnect(A);
    h.connect_ok(B, v5("publisher"));
    for id in 1..=4 {
        h.publish(B, qos1("t", "m", id));
    }
    assert!(
        !h.broker.take_congestion(),
        "an absent client must not slow down every publisher"
    );
}
