//! Property test: a persistent QoS 1/2 subscriber that acknowledges in any order, loses its
//! connection and comes back, against a publisher. Whatever the interleaving, every message
//! arrives exactly once as a new message, in publication order, redeliveries carry DUP and
//! their original identifier, the window never exceeds the client's Receive Maximum, and a
//! released QoS 2 message is never sent again.

use crate::common::*;
use broker_core::{ConnectionId, Output};
use mqtt_codec::{Packet, PubAckPacket, QoS};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    /// The publisher sends the next message at QoS 1 (false) or 2 (true).
    Publish(bool),
    /// The subscriber acknowledges (one step of) one of its pending messages.
    Acknowledge(usize),
    /// The subscriber's connection drops.
    Lose,
    /// The subscriber reconnects, resuming its session.
    Reconnect,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<bool>().prop_map(Op::Publish),
        4 => any::<usize>().prop_map(Op::Acknowledge),
        1 => Just(Op::Lose),
        1 => Just(Op::Reconnect),
    ]
}

#[derive(Debug)]
struct Pending {
    packet_id: u16,
    qos: QoS,
    /// PUBREL received: only PUBCOMP is left to send.
    released: bool,
}

/// What a well-behaved client remembers of its session.
struct Subscriber {
    connection: Option<ConnectionId>,
    next_connection: u64,
    receive_maximum: u16,
    pending: Vec<Pending>,
    received: Vec<u32>,
}

impl Subscriber {
    fn connect_packet(&self) -> mqtt_codec::ConnectPacket {
        let mut connect = v5_persistent("subscriber", u32::MAX);
        connect.properties.receive_maximum = Some(self.receive_maximum);
        connect
    }

    /// Takes in what the broker sent to this client, checking the delivery rules.
    fn receive(&mut self, outputs: &[Output]) -> Result<(), TestCaseError> {
        let Some(connection) = self.connection else {
            prop_assert!(
                outputs.iter().all(|o| !matches!(o,
                    Output::Send { connection: c, .. } if c.0 >= 100)),
                "nothing is sent to a subscriber connection that is gone"
            );
            return Ok(());
        };
        for packet in sent_to(outputs, connection) {
            match packet {
                Packet::Publish(publish) => {
                    let packet_id = publish.packet_id.expect("QoS 1 or 2");
                    match self.pending.iter().find(|p| p.packet_id == packet_id) {
                        Some(known) => {
                            prop_assert!(publish.dup, "a redelivery carries DUP");
                            prop_assert!(!known.released, "no PUBLISH after PUBREL [MQTT-4.3.3-6]");
                        }
                        None => {
                            prop_assert!(!publish.dup, "a first delivery has DUP 0");
                            let sequence: u32 = std::str::from_utf8(&publish.payload)
                                .unwrap()
                                .parse()
                                .unwrap();
                            self.received.push(sequence);
                            self.pending.push(Pending {
                                packet_id,
                                qos: publish.qos,
                                released: false,
                            });
                        }
                    }
                }
                Packet::PubRel(release) => {
                    let pending = self
                        .pending
                        .iter_mut()
                        .find(|p| p.packet_id == release.packet_id);
                    prop_assert!(pending.is_some(), "PUBREL for a message in flight");
                    let pending = pending.unwrap();
                    prop_assert_eq!(pending.qos, QoS::ExactlyOnce);
                    pending.released = true;
                }
                Packet::ConnAck(_) => {}
                other => prop_assert!(false, "unexpected {other:?}"),
            }
            prop_assert!(
                self.pending.len() <= usize::from(self.receive_maximum),
                "at most Receive Maximum in flight [MQTT-3.3.4-9]"
            );
        }
        Ok(())
    }

    /// The next acknowledgement for the pending message at `index`.
    fn acknowledge(&mut self, index: usize) -> Option<Packet> {
        if self.pending.is_empty() {
            return None;
        }
        let index = index % self.pending.len();
        let pending = &self.pending[index];
        let ack = PubAckPacket::new(pending.packet_id);
        Some(match (pending.qos, pending.released) {
            (QoS::ExactlyOnce, false) => Packet::PubRec(ack),
            (QoS::ExactlyOnce, true) => {
                self.pending.remove(index);
                Packet::PubComp(ack)
            }
            _ => {
                self.pending.remove(index);
                Packet::PubAck(ack)
            }
        })
    }
}

fn run(receive_maximum: u16, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut h = Harness::new();
    let publisher = ConnectionId(1);
    h.connect_ok(publisher, v5("publisher"));
    let mut subscriber = Subscriber {
        connection: Some(ConnectionId(100)),
        next_connection: 101,
        receive_maximum,
        pending: Vec::new(),
        received: Vec::new(),
    };
    h.connect_ok(ConnectionId(100), subscriber.connect_packet());
    h.subscribe(ConnectionId(100), "t", QoS::ExactlyOnce);
    let mut published = 0u32;

    for op in ops {
        let outputs = match op {
            Op::Publish(exactly_once) => {
                let packet_id = (published % 60_000) as u16 + 1;
                let publish = if exactly_once {
                    qos2("t", &published.to_string(), packet_id)
                } else {
                    qos1("t", &published.to_string(), packet_id)
                };
                published += 1;
                let mut outputs = h.publish(publisher, publish);
                if exactly_once {
                    outputs.extend(h.send(publisher, Packet::PubRel(PubAckPacket::new(packet_id))));
                }
                outputs
            }
            Op::Acknowledge(index) => match subscriber.connection {
                Some(connection) => match subscriber.acknowledge(index) {
                    Some(ack) => h.send(connection, ack),
                    None => Vec::new(),
                },
                None => Vec::new(),
            },
            Op::Lose => match subscriber.connection.take() {
                Some(connection) => h.lose(connection),
                None => Vec::new(),
            },
            Op::Reconnect => {
                if subscriber.connection.is_some() {
                    continue;
                }
                let connection = ConnectionId(subscriber.next_connection);
                subscriber.next_connection += 1;
                subscriber.connection = Some(connection);
                let outputs = h.connect(connection, subscriber.connect_packet());
                prop_assert!(connack(&outputs, connection).session_present);
                outputs
            }
        };
        subscriber.receive(&outputs)?;
    }

    // Come back if needed and acknowledge until nothing is left.
    if subscriber.connection.is_none() {
        let connection = ConnectionId(subscriber.next_connection);
        subscriber.connection = Some(connection);
        let outputs = h.connect(connection, subscriber.connect_packet());
        subscriber.receive(&outputs)?;
    }
    let connection = subscriber.connection.unwrap();
    for _ in 0..10 * (published as usize + 1) {
        let Some(ack) = subscriber.acknowledge(0) else {
            break;
        };
        let outputs = h.send(connection, ack);
        subscriber.receive(&outputs)?;
    }
    prop_assert!(subscriber.pending.is_empty());
    let expected: Vec<u32> = (0..published).collect();
    prop_assert_eq!(
        &subscriber.received,
        &expected,
        "every message once, in order [MQTT-4.6.0-6]"
    );
    prop_assert_eq!(h.broker.stats().queued_messages, 0);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn persistent_subscriber_gets_every_message_once_in_order(
        receive_maximum in 1u16..5,
        ops in prop::collection::vec(op(), 0..80),
    ) {
        run(receive_maximum, ops)?;
    }
}
