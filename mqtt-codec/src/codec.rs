//! A `tokio_util::codec` adapter over [`decode`](crate::decode) and [`encode`](crate::encode),
//! for transports built on tokio (behind the `tokio-util` feature so wasm builds pull no tokio).
//!
//! Invariants: the codec follows the connection's protocol version, which a CONNECT fixes: a
//! decoded CONNECT (server side) or an encoded one (client side) sets [`MqttCodec::version`].
//! While a packet is incomplete the decoder reserves only the bytes that packet still lacks, and
//! only after its size passed the maximum packet size check.

use crate::{DecodeError, EncodeError, Packet, ProtocolVersion};
use bytes::BytesMut;
use thiserror::Error;
use tokio_util::codec::{Decoder, Encoder};

/// MQTT framing for `tokio_util::codec::Framed`.
#[derive(Clone, Debug)]
pub struct MqttCodec {
    /// The protocol version used for every packet but CONNECT; updated by CONNECT packets.
    pub version: ProtocolVersion,
    /// Packets larger than this (fixed header included) are refused with
    /// [`DecodeError::PacketTooLarge`].
    pub max_packet_size: usize,
}

impl MqttCodec {
    /// A codec for `version` that accepts packets of up to `max_packet_size` bytes.
    pub fn new(version: ProtocolVersion, max_packet_size: usize) -> Self {
        MqttCodec {
            version,
            max_packet_size,
        }
    }
}

/// Why reading or writing a framed MQTT stream failed.
#[derive(Debug, Error)]
pub enum CodecError {
    /// The underlying transport failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer sent bytes that are not a valid packet.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A packet could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

impl Decoder for MqttCodec {
    type Item = Packet;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Packet>, CodecError> {
        match crate::decode(src, self.version, self.max_packet_size)? {
            Some(packet) => {
                if let Packet::Connect(connect) = &packet {
                    self.version = connect.protocol;
                }
                Ok(Some(packet))
            }
            None => {
                // decode has already refused a packet over the maximum, so this reservation is
                // bounded by max_packet_size; growing once beats doubling through many reads.
                if let Ok(Some(len)) = crate::packet_length(src) {
                    if let Some(missing) = len.checked_sub(src.len()) {
                        src.reserve(missing);
                    }
                }
                Ok(None)
            }
        }
    }
}

impl Encoder<&Packet> for MqttCodec {
    type Error = CodecError;

    fn encode(&mut self, packet: &Packet, dst: &mut BytesMut) -> Result<(), CodecError> {
        crate::encode(packet, self.version, dst)?;
        if let Packet::Connect(connect) = packet {
            self.version = connect.protocol;
        }
        Ok(())
    }
}

impl Encoder<Packet> for MqttCodec {
    type Error = CodecError;

    fn encode(&mut self, packet: Packet, dst: &mut BytesMut) -> Result<(), CodecError> {
        <Self as Encoder<&Packet>>::encode(self, &packet, dst)
    }
}
