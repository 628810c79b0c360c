//! What the broker asks the gateway to do, and the queue it asks through.
//!
//! The broker encodes, not the transport, so that a message going to many subscribers is encoded
//! once per protocol version and its bytes shared: fan-out then costs a reference count per
//! subscriber instead of a packet copy and an encoding. [`Outputs`] owns the queue of
//! [`Output`]s, the block packets are encoded into, and the counts of what was sent; it is also
//! the one place a PUBLISH is measured against its receiver's Maximum Packet Size.

use super::ConnectionId;
use bytes::{Bytes, BytesMut};
use mqtt_codec::{Packet, Properties, ProtocolVersion, QoS, encode};
use std::collections::VecDeque;
use tracing::{debug, warn};

/// What the broker asks the gateway to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Write `frame` to the connection.
    Send {
        /// Target connection.
        connection: ConnectionId,
        /// The encoded packet.
        frame: Frame,
    },
    /// Flush what was sent before, then close the connection. The broker has already forgotten
    /// it; telling the broker it was lost afterwards is harmless.
    Close {
        /// The connection to close.
        connection: ConnectionId,
    },
}

/// One packet, encoded for its connection's protocol version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The packet's bytes.
    pub bytes: Bytes,
    /// The protocol version it was encoded with.
    pub protocol: ProtocolVersion,
    /// What the gateway needs to know about it when the connection is slow.
    pub kind: FrameKind,
}

/// What kind of packet a [`Frame`] holds, as far as the gateway's outbox policy cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    /// An application message.
    Publish {
        /// Its delivery QoS: QoS 0 may be shed for a consumer that does not keep up.
        qos: QoS,
        /// It sets up an outbound topic alias, so it must reach the client even then: every
        /// later message using the alias would be meaningless without it.
        sets_alias: bool,
    },
    /// Any other packet.
    Control,
}

impl FrameKind {
    fn of(packet: &Packet) -> FrameKind {
        match packet {
            Packet::Publish(publish) => FrameKind::Publish {
                qos: publish.qos,
                sets_alias: publish.properties.topic_alias.is_some() && !publish.topic.is_empty(),
            },
            _ => FrameKind::Control,
        }
    }
}

/// A PUBLISH larger than its receiver's Maximum Packet Size: it is discarded for that receiver
/// as if it had been sent [MQTT-3.1.2-25].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct TooLarge;

/// Counts of what went out, which only the output queue sees.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct SentCounts {
    pub packets: u64,
    /// PUBLISH packets by QoS.
    pub publish: [u64; 3],
    /// Their payload bytes by QoS.
    pub publish_bytes: [u64; 3],
}

/// The queue of outputs, with the block packets are encoded into.
#[derive(Default)]
pub(super) struct Outputs {
    queue: VecDeque<Output>,
    /// Where packets are encoded; frames are split off it, so that they are slices of one
    /// allocation rather than one allocation each.
    scratch: BytesMut,
    sent: SentCounts,
}

impl Outputs {
    /// The next output to perform.
    pub fn pop(&mut self) -> Option<Output> {
        self.queue.pop_front()
    }

    pub fn sent(&self) -> SentCounts {
        self.sent
    }

    /// Queues a control packet (anything but a PUBLISH to a client, which goes through
    /// [`Outputs::send_publish`]), encoded with `protocol`, for a client whose Maximum Packet
    /// Size is `maximum`. A packet that would exceed it goes without its Reason String and User
    /// Properties [MQTT-3.2.2-19] [MQTT-3.2.2-20] (the same rule for every packet that carries
    /// them); one still too large is not sent [MQTT-3.1.2-24].
    pub fn send(
        &mut self,
        connection: ConnectionId,
        protocol: ProtocolVersion,
        maximum: Option<u32>,
        packet: &Packet,
    ) {
        debug_assert!(!matches!(packet, Packet::Publish(_)));
        let fits = |bytes: &Bytes| maximum.is_none_or(|maximum| bytes.len() <= maximum as usize);
        let Some(bytes) = self.encode(packet, protocol) else {
            return;
        };
        if fits(&bytes) {
            self.push(connection, bytes, protocol, FrameKind::Control);
            return;
        }
        let mut bare = packet.clone();
        if let Some(properties) = optional_properties(&mut bare) {
            properties.reason_string = None;
            properties.user_properties.clear();
            if let Some(bytes) = self.encode(&bare, protocol).filter(fits) {
                self.push(connection, bytes, protocol, FrameKind::Control);
                return;
            }
        }
        debug!(
            connection = %connection,
            "{} not sent: larger than the client's maximum packet size",
            packet.name()
        );
    }

    /// Encodes a PUBLISH and queues it for a receiver whose Maximum Packet Size is `maximum`.
    pub fn send_publish(
        &mut self,
        connection: ConnectionId,
        protocol: ProtocolVersion,
        maximum: Option<u32>,
        packet: &Packet,
    ) -> Result<(), TooLarge> {
        let Packet::Publish(publish) = packet else {
            unreachable!("send_publish takes a PUBLISH");
        };
        let kind = FrameKind::of(packet);
        let Some(bytes) = self.encode(packet, protocol) else {
            return Err(TooLarge);
        };
        self.send_encoded_publish(
            connection,
            protocol,
            maximum,
            bytes,
            kind,
            publish.payload.len(),
        )
    }

    /// Queues a PUBLISH encoded before (shared by several receivers), unless it is larger than
    /// the receiver's Maximum Packet Size: the one place that size is checked, on the bytes that
    /// would be sent [MQTT-3.1.2-24].
    pub fn send_encoded_publish(
        &mut self,
        connection: ConnectionId,
        protocol: ProtocolVersion,
        maximum: Option<u32>,
        bytes: Bytes,
        kind: FrameKind,
        payload_len: usize,
    ) -> Result<(), TooLarge> {
        if maximum.is_some_and(|maximum| bytes.len() > maximum as usize) {
            return Err(TooLarge);
        }
        if let FrameKind::Publish { qos, .. } = kind {
            self.sent.publish[qos as usize] += 1;
            self.sent.publish_bytes[qos as usize] += payload_len as u64;
        }
        self.push(connection, bytes, protocol, kind);
        Ok(())
    }

    /// Asks the gateway to flush and close `connection`.
    pub fn close(&mut self, connection: ConnectionId) {
        self.queue.push_back(Output::Close { connection });
    }

    fn push(
        &mut self,
        connection: ConnectionId,
        bytes: Bytes,
        protocol: ProtocolVersion,
        kind: FrameKind,
    ) {
        self.sent.packets += 1;
        self.queue.push_back(Output::Send {
            connection,
            frame: Frame {
                bytes,
                protocol,
                kind,
            },
        });
    }

    /// Encodes `packet` for `protocol` into the shared block.
    pub fn encode(&mut self, packet: &Packet, protocol: ProtocolVersion) -> Option<Bytes> {
        if self.scratch.capacity() < 4096 {
            self.scratch.reserve(64 * 1024);
        }
        match encode(packet, protocol, &mut self.scratch) {
            Ok(()) => {
                let bytes = self.scratch.split().freeze();
                // One huge packet must not keep a huge block alive for every later frame.
                if self.scratch.capacity() > 1 << 20 {
                    self.scratch = BytesMut::new();
                }
                Some(bytes)
            }
            Err(error) => {
                // Only a packet beyond the protocol's size limits fails to encode: the broker
                // checked what it could, so this is worth a warning, and the packet is skipped.
                self.scratch.clear();
                warn!("cannot encode {} for {protocol:?}: {error}", packet.name());
                None
            }
        }
    }
}

/// The properties of a packet the server sends that may hold a Reason String or User
/// Properties, which are left out rather than exceed the client's Maximum Packet Size.
fn optional_properties(packet: &mut Packet) -> Option<&mut Properties> {
    match packet {
        Packet::ConnAck(p) => Some(&mut p.properties),
        Packet::PubAck(p) | Packet::PubRec(p) | Packet::PubRel(p) | Packet::PubComp(p) => {
            Some(&mut p.properties)
        }
        Packet::SubAck(p) => Some(&mut p.properties),
        Packet::UnsubAck(p) => Some(&mut p.properties),
        Packet::Disconnect(p) => Some(&mut p.properties),
        Packet::Auth(p) => Some(&mut p.properties),
        _ => None,
    }
}

/// The encodings of one message's plain QoS 0 copies, by protocol version and retain flag,
/// while it is being routed.
#[derive(Default)]
pub(super) struct SharedFrames([Option<Bytes>; 6]);

impl SharedFrames {
    pub fn slot(&mut self, protocol: ProtocolVersion, retain: bool) -> &mut Option<Bytes> {
        let version = match protocol {
            ProtocolVersion::V31 => 0,
            ProtocolVersion::V311 => 1,
            ProtocolVersion::V5 => 2,
        };
        &mut self.0[version * 2 + usize::from(retain)]
    }
}
