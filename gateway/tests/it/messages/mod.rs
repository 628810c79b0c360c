//! Loopback tests of message delivery, one module per concern: retained messages, QoS 1 and 2
//! flows (redelivery, ordering), overlapping and shared subscriptions, topic aliases, message
//! expiry, flow control, and `$` topics. Each test is named after the normative statement it
//! checks (OASIS MQTT 3.1.1 and 5.0 numbering; the doc comment says which).

mod dollar_topics;
mod flow_control;
mod message_expiry;
mod qos;
mod retained;
mod subscriptions;
mod topic_aliases;

use mqtt_codec::{ByteStr, Properties, Subscription, SubscriptionOptions};

/// A subscription to `filter` with `options`.
fn subscription(filter: &str, options: SubscriptionOptions) -> Subscription {
    Subscription {
        filter: ByteStr::from(filter),
        options,
    }
}

/// Properties carrying the Subscription Identifier `identifier`.
fn with_identifier(identifier: u32) -> Properties {
    Properties {
        subscription_identifiers: vec![identifier],
        ..Properties::default()
    }
}
