//! Decoding: bytes in, packets out.
//!
//! [`decode`] looks at the front of a `BytesMut` that a transport keeps appending to. Invariants:
//!
//! - Too few bytes is `Ok(None)` and nothing is consumed, so the caller simply reads more and
//!   calls again.
//! - The announced size is checked against the maximum packet size as soon as the fixed header
//!   is complete, before any of the body arrives, and nothing is ever reserved or allocated
//!   from the announced length: a peer that announces 256 MB costs us nothing until it sends it.
//! - On success exactly one packet is consumed. The packet is frozen into one `Bytes` and every
//!   string and payload of the result is a slice of it, so a PUBLISH reaches every subscriber
//!   without a copy.
//! - Every read is bounds-checked through [`Reader`]; arbitrary input yields an error, never a
//!   panic. After an error the buffer's contents are unspecified: the connection must be closed.

use crate::{
    AuthPacket, ByteStr, ConnAckPacket, ConnectPacket, DecodeError, DisconnectPacket, Packet,
    Properties, ProtocolVersion, PubAckPacket, PublishPacket, QoS, ReasonCode, RetainHandling,
    SubAckPacket, SubscribePacket, Subscription, SubscriptionOptions, UnsubAckPacket,
    UnsubscribePacket, Will, property_id as id, topic,
};
use alloc::{string::String, vec::Vec};
use bytes::{Bytes, BytesMut};

/// Decodes the first packet in `buf`.
///
/// Returns `Ok(None)`, consuming nothing, while the packet is incomplete. A packet whose total
/// size (fixed header included) exceeds `max_packet_size` is refused as soon as its fixed header
/// is readable. CONNECT is decoded according to its own protocol name and level; every other
/// packet according to `version`.
pub fn decode(
    buf: &mut BytesMut,
    version: ProtocolVersion,
    max_packet_size: usize,
) -> Result<Option<Packet>, DecodeError> {
    decode_from::<false>(buf, version, max_packet_size)
}

/// [`decode`] for a client: only the packets a server sends. CONNECT, SUBSCRIBE, UNSUBSCRIBE
/// and PINGREQ are refused with [`DecodeError::UnexpectedPacket`] (a protocol error), and
/// their decoders are not linked into a program that calls only this, such as the browser
/// client, whose size budget counts every kilobyte.
pub fn decode_from_server(
    buf: &mut BytesMut,
    version: ProtocolVersion,
    max_packet_size: usize,
) -> Result<Option<Packet>, DecodeError> {
    decode_from::<true>(buf, version, max_packet_size)
}

#[inline(always)]
fn decode_from<const FROM_SERVER: bool>(
    buf: &mut BytesMut,
    version: ProtocolVersion,
    max_packet_size: usize,
) -> Result<Option<Packet>, DecodeError> {
    let Some(header) = FixedHeader::parse(buf)? else {
        return Ok(None);
    };
    let kind = PacketKind::from_first_byte(header.first_byte, version)?;
    let size = header.packet_size();
    if size > max_packet_size {
        return Err(DecodeError::PacketTooLarge {
            size,
            maximum: max_packet_size,
        });
    }
    if buf.len() < size {
        return Ok(None);
    }
    let frame = buf.split_to(size).freeze();
    let mut reader = Reader {
        frame,
        position: header.header_len,
        end: size,
        packet: kind.name(),
    };
    let packet = decode_body::<FROM_SERVER>(kind, header.first_byte & 0x0F, &mut reader, version)?;
    reader.expect_end()?;
    Ok(Some(packet))
}

/// The total size (fixed header plus remaining length) of the first packet in `buf`, or
/// `Ok(None)` while the fixed header itself is incomplete.
pub fn packet_length(buf: &[u8]) -> Result<Option<usize>, DecodeError> {
    Ok(FixedHeader::parse(buf)?.map(|header| header.packet_size()))
}

/// The first byte and the remaining length, once both are complete.
struct FixedHeader {
    first_byte: u8,
    /// 1 plus the number of remaining-length bytes (2..=5).
    header_len: usize,
    remaining_length: usize,
}

impl FixedHeader {
    fn parse(buf: &[u8]) -> Result<Option<FixedHeader>, DecodeError> {
        let Some(&first_byte) = buf.first() else {
            return Ok(None);
        };
        let mut remaining_length = 0usize;
        // Non-minimal encodings (0x80 0x00 for 0) are accepted: the value is still unambiguous
        // and refusing them gains nothing. A fifth byte is the only hard limit.
        for index in 0..4 {
            let Some(&byte) = buf.get(1 + index) else {
                return Ok(None);
            };
            remaining_length |= usize::from(byte & 0x7F) << (7 * index);
            if byte & 0x80 == 0 {
                return Ok(Some(FixedHeader {
                    first_byte,
                    header_len: 2 + index,
                    remaining_length,
                }));
            }
        }
        Err(DecodeError::RemainingLengthTooLong)
    }

    /// At most 5 + 268,435,455, so this cannot overflow even on 32-bit targets.
    fn packet_size(&self) -> usize {
        self.header_len + self.remaining_length
    }
}

/// The packet type from the high nibble, checked together with its flags.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PacketKind {
    Connect,
    ConnAck,
    Publish,
    PubAck,
    PubRec,
    PubRel,
    PubComp,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    PingReq,
    PingResp,
    Disconnect,
    Auth,
}

impl PacketKind {
    fn from_first_byte(byte: u8, version: ProtocolVersion) -> Result<PacketKind, DecodeError> {
        let kind = match byte >> 4 {
            1 => PacketKind::Connect,
            2 => PacketKind::ConnAck,
            3 => PacketKind::Publish,
            4 => PacketKind::PubAck,
            5 => PacketKind::PubRec,
            6 => PacketKind::PubRel,
            7 => PacketKind::PubComp,
            8 => PacketKind::Subscribe,
            9 => PacketKind::SubAck,
            10 => PacketKind::Unsubscribe,
            11 => PacketKind::UnsubAck,
            12 => PacketKind::PingReq,
            13 => PacketKind::PingResp,
            14 => PacketKind::Disconnect,
            15 if version.is_v5() => PacketKind::Auth,
            15 => return Err(DecodeError::AuthBeforeV5),
            reserved => return Err(DecodeError::ReservedPacketType(reserved)),
        };
        let flags = byte & 0x0F;
        let valid = match kind {
            // PUBLISH flags carry DUP, QoS and RETAIN; they are checked while decoding it.
            PacketKind::Publish => true,
            // MQTT 3.1 clients set DUP on retried PUBREL/SUBSCRIBE/UNSUBSCRIBE (3.1 only said
            // "QoS 1" for them), so 3.1 tolerates that bit; later versions fix the nibble.
            PacketKind::PubRel | PacketKind::Subscribe | PacketKind::Unsubscribe => {
                flags == 0b0010 || (version == ProtocolVersion::V31 && flags == 0b1010)
            }
            _ => flags == 0,
        };
        if !valid {
            return Err(DecodeError::InvalidHeaderFlags {
                packet: kind.name(),
                flags,
            });
        }
        Ok(kind)
    }

    fn name(self) -> &'static str {
        match self {
            PacketKind::Connect => "CONNECT",
            PacketKind::ConnAck => "CONNACK",
            PacketKind::Publish => "PUBLISH",
            PacketKind::PubAck => "PUBACK",
            PacketKind::PubRec => "PUBREC",
            PacketKind::PubRel => "PUBREL",
            PacketKind::PubComp => "PUBCOMP",
            PacketKind::Subscribe => "SUBSCRIBE",
            PacketKind::SubAck => "SUBACK",
            PacketKind::Unsubscribe => "UNSUBSCRIBE",
            PacketKind::UnsubAck => "UNSUBACK",
            PacketKind::PingReq => "PINGREQ",
            PacketKind::PingResp => "PINGRESP",
            PacketKind::Disconnect => "DISCONNECT",
            PacketKind::Auth => "AUTH",
        }
    }

    /// The reason codes MQTT 5.0 defines for this packet (spec 3.2.2.2, 3.4.2.1, 3.5.2.1,
    /// 3.6.2.1, 3.7.2.1, 3.9.3, 3.11.3, 3.14.2.1, 3.15.2.1).
    fn reason_codes(self) -> &'static [u8] {
        match self {
            PacketKind::ConnAck => &[
                0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90,
                0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
            ],
            PacketKind::PubAck | PacketKind::PubRec => {
                &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99]
            }
            PacketKind::PubRel | PacketKind::PubComp => &[0x00, 0x92],
            PacketKind::SubAck => &[
                0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
            ],
            PacketKind::UnsubAck => &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91],
            PacketKind::Disconnect => &[
                0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93,
                0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1,
                0xA2,
            ],
            PacketKind::Auth => &[0x00, 0x18, 0x19],
            _ => &[],
        }
    }
}

const TRUNCATED: &str = "a field extends past the end of the packet or its properties [MQTT-2.2.3]";
const TRAILING: &str = "bytes remain after the last field of the packet [MQTT-2.2.3]";

/// A bounds-checked cursor over one frozen frame. Slices it hands out share the frame.
struct Reader {
    frame: Bytes,
    position: usize,
    /// Exclusive end of what may be read: the frame's end, or a property block's end.
    end: usize,
    packet: &'static str,
}

impl Reader {
    fn remaining(&self) -> usize {
        self.end.saturating_sub(self.position)
    }

    fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    fn malformed(&self, detail: &'static str) -> DecodeError {
        DecodeError::Malformed {
            packet: self.packet,
            detail,
        }
    }

    fn expect_end(&self) -> Result<(), DecodeError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(self.malformed(TRAILING))
        }
    }

    /// Takes `len` bytes as a shared slice of the frame.
    fn take(&mut self, len: usize) -> Result<Bytes, DecodeError> {
        if len > self.remaining() {
            return Err(self.malformed(TRUNCATED));
        }
        let start = self.position;
        self.position += len;
        Ok(self.frame.slice(start..self.position))
    }

    /// Everything up to the current end (a PUBLISH payload, a list of reason codes).
    fn take_rest(&mut self) -> Bytes {
        let start = self.position.min(self.end);
        self.position = self.end;
        self.frame.slice(start..self.end)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        let byte = match self.frame.get(self.position) {
            Some(&byte) if self.position < self.end => byte,
            _ => return Err(self.malformed(TRUNCATED)),
        };
        self.position += 1;
        Ok(byte)
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes([self.u8()?, self.u8()?]))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes([
            self.u8()?,
            self.u8()?,
            self.u8()?,
            self.u8()?,
        ]))
    }

    fn variable_integer(&mut self) -> Result<u32, DecodeError> {
        let mut value = 0u32;
        for index in 0..4 {
            let byte = self.u8()?;
            value |= u32::from(byte & 0x7F) << (7 * index);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::VariableByteIntegerTooLong)
    }

    fn packet_id(&mut self) -> Result<u16, DecodeError> {
        match self.u16()? {
            0 => Err(DecodeError::ZeroPacketIdentifier),
            packet_id => Ok(packet_id),
        }
    }

    /// Binary Data: a two-byte length and that many bytes (spec 1.5.6).
    fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }

    /// UTF-8 Encoded String (spec 1.5.4).
    fn string(&mut self) -> Result<ByteStr, DecodeError> {
        let bytes = self.binary()?;
        utf8(&bytes)?;
        Ok(ByteStr::from_validated_utf8(bytes))
    }

    /// Runs `read` over the next `len` bytes only, then requires it to have used them all.
    fn within<T>(
        &mut self,
        len: usize,
        read: impl FnOnce(&mut Reader) -> Result<T, DecodeError>,
    ) -> Result<T, DecodeError> {
        if len > self.remaining() {
            return Err(self.malformed(TRUNCATED));
        }
        let outer_end = self.end;
        self.end = self.position + len;
        let value = read(self)?;
        self.expect_end()?;
        self.end = outer_end;
        Ok(value)
    }

    /// A reason code that MQTT 5.0 defines for `kind`.
    fn reason_code(&mut self, kind: PacketKind) -> Result<ReasonCode, DecodeError> {
        let byte = self.u8()?;
        reason_code_for(kind, byte)
    }
}

/// Checks a UTF-8 Encoded String once and returns its text. `str::from_utf8` already refuses
/// surrogates and overlong forms, which the specification also forbids; U+0000 is checked on
/// top [MQTT-1.5.4-2].
#[expect(
    clippy::manual_contains,
    reason = "`contains` brings memchr, which the wasm client pays for in code size"
)]
fn utf8(bytes: &[u8]) -> Result<&str, DecodeError> {
    let text = core::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8)?;
    if bytes.iter().any(|&byte| byte == 0) {
        return Err(DecodeError::NullCharacter);
    }
    Ok(text)
}

fn reason_code_for(kind: PacketKind, byte: u8) -> Result<ReasonCode, DecodeError> {
    match ReasonCode::from_u8(byte) {
        Some(code) if kind.reason_codes().contains(&byte) => Ok(code),
        _ => Err(DecodeError::InvalidReasonCode {
            packet: kind.name(),
            code: byte,
        }),
    }
}

/// With `FROM_SERVER`, the packets only clients send are refused and their decoders unused.
fn decode_body<const FROM_SERVER: bool>(
    kind: PacketKind,
    flags: u8,
    reader: &mut Reader,
    version: ProtocolVersion,
) -> Result<Packet, DecodeError> {
    Ok(match kind {
        PacketKind::Connect if !FROM_SERVER => Packet::Connect(decode_connect(reader)?),
        PacketKind::ConnAck => Packet::ConnAck(decode_connack(reader, version)?),
        PacketKind::Publish => Packet::Publish(decode_publish(reader, flags, version)?),
        PacketKind::PubAck => Packet::PubAck(decode_puback(reader, kind, version)?),
        PacketKind::PubRec => Packet::PubRec(decode_puback(reader, kind, version)?),
        PacketKind::PubRel => Packet::PubRel(decode_puback(reader, kind, version)?),
        PacketKind::PubComp => Packet::PubComp(decode_puback(reader, kind, version)?),
        PacketKind::Subscribe if !FROM_SERVER => {
            Packet::Subscribe(decode_subscribe(reader, version)?)
        }
        PacketKind::SubAck => Packet::SubAck(decode_suback(reader, version)?),
        PacketKind::Unsubscribe if !FROM_SERVER => {
            Packet::Unsubscribe(decode_unsubscribe(reader, version)?)
        }
        PacketKind::UnsubAck => Packet::UnsubAck(decode_unsuback(reader, version)?),
        // The caller's end-of-packet check refuses a non-zero remaining length.
        PacketKind::PingReq if !FROM_SERVER => Packet::PingReq,
        PacketKind::PingResp => Packet::PingResp,
        PacketKind::Disconnect => Packet::Disconnect(decode_disconnect(reader, version)?),
        PacketKind::Auth => Packet::Auth(decode_auth(reader)?),
        PacketKind::Connect
        | PacketKind::Subscribe
        | PacketKind::Unsubscribe
        | PacketKind::PingReq => {
            return Err(DecodeError::UnexpectedPacket {
                packet: reader.packet,
            });
        }
    })
}

fn decode_connect(reader: &mut Reader) -> Result<ConnectPacket, DecodeError> {
    // The protocol name is read as raw bytes: an unknown name must produce
    // UnsupportedProtocol (so a server can answer CONNACK 0x01/0x84), not a UTF-8 error.
    let name = reader.binary()?;
    let level = reader.u8()?;
    let protocol = match (&name[..], level) {
        (b"MQIsdp", 3) => ProtocolVersion::V31,
        (b"MQTT", 4) => ProtocolVersion::V311,
        (b"MQTT", 5) => ProtocolVersion::V5,
        _ => {
            return Err(DecodeError::UnsupportedProtocol {
                name: String::from_utf8_lossy(&name).into_owned(),
                level,
            });
        }
    };
    let flags = reader.u8()?;
    if flags & 0x01 != 0 {
        return Err(DecodeError::ConnectReservedFlag);
    }
    let clean_start = flags & 0x02 != 0;
    let has_will = flags & 0x04 != 0;
    let will_qos_bits = (flags >> 3) & 0x03;
    let will_retain = flags & 0x20 != 0;
    let has_password = flags & 0x40 != 0;
    let has_username = flags & 0x80 != 0;
    let will_qos = QoS::from_bits(will_qos_bits).ok_or(DecodeError::InvalidWillFlags)?;
    if !has_will && (will_qos_bits != 0 || will_retain) {
        return Err(DecodeError::InvalidWillFlags);
    }
    // 5.0 dropped this rule so that a password can carry a token without a user name.
    if has_password && !has_username && !protocol.is_v5() {
        return Err(DecodeError::PasswordWithoutUsername);
    }
    let keep_alive = reader.u16()?;
    let properties = if protocol.is_v5() {
        let properties = read_properties(reader, &CONNECT_RULES)?;
        if properties.authentication_data.is_some() && properties.authentication_method.is_none() {
            return Err(DecodeError::InvalidPropertyValue {
                property: id::AUTHENTICATION_DATA,
                detail: "Authentication Data without Authentication Method (spec 3.1.2.11.10)",
            });
        }
        properties
    } else {
        Properties::default()
    };
    let client_id = reader.string()?;
    let will = if has_will {
        let properties = if protocol.is_v5() {
            read_properties(reader, &WILL_RULES)?
        } else {
            Properties::default()
        };
        let topic = reader.binary()?;
        topic::validate_topic_name(utf8(&topic)?)?;
        let topic = ByteStr::from_validated_utf8(topic);
        let payload = reader.binary()?;
        Some(Will {
            topic,
            payload,
            qos: will_qos,
            retain: will_retain,
            properties,
        })
    } else {
        None
    };
    let username = if has_username {
        Some(reader.string()?)
    } else {
        None
    };
    let password = if has_password {
        Some(reader.binary()?)
    } else {
        None
    };
    Ok(ConnectPacket {
        protocol,
        clean_start,
        keep_alive,
        client_id,
        will,
        username,
        password,
        properties,
    })
}

fn decode_connack(
    reader: &mut Reader,
    version: ProtocolVersion,
) -> Result<ConnAckPacket, DecodeError> {
    let acknowledge_flags = reader.u8()?;
    let code = reader.u8()?;
    // MQTT 3.1 had no session present flag: the whole byte was "reserved, not used".
    let session_present = match version {
        ProtocolVersion::V31 => false,
        _ if acknowledge_flags & 0xFE != 0 => {
            return Err(reader.malformed(
                "CONNACK acknowledge flags bits 7-1 are reserved and must be 0 [MQTT-3.2.2-1]",
            ));
        }
        _ => acknowledge_flags & 0x01 != 0,
    };
    let reason_code = if version.is_v5() {
        reason_code_for(PacketKind::ConnAck, code)?
    } else {
        ReasonCode::from_connect_return_code(code).ok_or(DecodeError::InvalidReasonCode {
            packet: "CONNACK",
            code,
        })?
    };
    if session_present && code != 0 {
        return Err(reader.malformed(
            "session present must be 0 with a non-zero reason code [MQTT-3.2.2-4] [MQTT-3.2.2-6]",
        ));
    }
    let properties = if version.is_v5() {
        read_properties(reader, &CONNACK_RULES)?
    } else {
        Properties::default()
    };
    Ok(ConnAckPacket {
        session_present,
        reason_code,
        properties,
    })
}

fn decode_publish(
    reader: &mut Reader,
    flags: u8,
    version: ProtocolVersion,
) -> Result<PublishPacket, DecodeError> {
    let dup = flags & 0x08 != 0;
    let qos = QoS::from_bits((flags >> 1) & 0x03).ok_or(DecodeError::InvalidQoS)?;
    let retain = flags & 0x01 != 0;
    if dup && qos == QoS::AtMostOnce {
        return Err(DecodeError::DupWithQoS0);
    }
    let topic = reader.binary()?;
    let topic_text = utf8(&topic)?;
    let packet_id = if qos == QoS::AtMostOnce {
        None
    } else {
        Some(reader.packet_id()?)
    };
    let properties = if version.is_v5() {
        read_properties(reader, &PUBLISH_RULES)?
    } else {
        Properties::default()
    };
    // With a Topic Alias the sender may leave the name empty and let the alias stand for it
    // (spec 3.3.2.3.4); the broker resolves the alias, the codec only checks the shape.
    let alias_stands_for_topic =
        version.is_v5() && topic.is_empty() && properties.topic_alias.is_some();
    if version.is_v5() && topic.is_empty() && !alias_stands_for_topic {
        return Err(DecodeError::EmptyTopicWithoutAlias);
    }
    if !alias_stands_for_topic {
        topic::validate_topic_name(topic_text)?;
    }
    Ok(PublishPacket {
        dup,
        qos,
        retain,
        topic: ByteStr::from_validated_utf8(topic),
        packet_id,
        properties,
        payload: reader.take_rest(),
    })
}

fn decode_puback(
    reader: &mut Reader,
    kind: PacketKind,
    version: ProtocolVersion,
) -> Result<PubAckPacket, DecodeError> {
    let packet_id = reader.packet_id()?;
    let mut packet = PubAckPacket::new(packet_id);
    // 5.0: remaining length 2 means Success without properties, 3 a reason code alone.
    if version.is_v5() && !reader.is_empty() {
        packet.reason_code = reader.reason_code(kind)?;
        if !reader.is_empty() {
            packet.properties = read_properties(reader, &ack_rules(kind.name()))?;
        }
    }
    Ok(packet)
}

fn decode_subscribe(
    reader: &mut Reader,
    version: ProtocolVersion,
) -> Result<SubscribePacket, DecodeError> {
    let packet_id = reader.packet_id()?;
    let properties = if version.is_v5() {
        read_properties(reader, &SUBSCRIBE_RULES)?
    } else {
        Properties::default()
    };
    let mut subscriptions = Vec::new();
    while !reader.is_empty() {
        let filter = reader.binary()?;
        let filter_text = utf8(&filter)?;
        topic::validate_topic_filter(filter_text)?;
        let options = subscription_options(reader.u8()?, filter_text, version)?;
        let filter = ByteStr::from_validated_utf8(filter);
        subscriptions.push(Subscription { filter, options });
    }
    if subscriptions.is_empty() {
        return Err(DecodeError::NoTopicFilters {
            packet: "SUBSCRIBE",
        });
    }
    Ok(SubscribePacket {
        packet_id,
        properties,
        subscriptions,
    })
}

fn subscription_options(
    byte: u8,
    filter: &str,
    version: ProtocolVersion,
) -> Result<SubscriptionOptions, DecodeError> {
    let invalid = DecodeError::InvalidSubscriptionOptions(byte);
    let qos = QoS::from_bits(byte & 0x03).ok_or(invalid.clone())?;
    if !version.is_v5() {
        // 3.1.1 [MQTT-3.8.3-4]: the upper six bits are reserved.
        if byte & 0xFC != 0 {
            return Err(invalid);
        }
        return Ok(SubscriptionOptions {
            qos,
            ..SubscriptionOptions::default()
        });
    }
    if byte & 0xC0 != 0 {
        return Err(invalid);
    }
    let no_local = byte & 0x04 != 0;
    // A shared subscription would otherwise never deliver to the group member that published.
    if no_local && filter.starts_with(topic::SHARED_PREFIX) {
        return Err(DecodeError::NoLocalOnSharedSubscription);
    }
    let retain_handling = match (byte >> 4) & 0x03 {
        0 => RetainHandling::SendAtSubscribe,
        1 => RetainHandling::SendIfNew,
        2 => RetainHandling::DoNotSend,
        _ => return Err(invalid),
    };
    Ok(SubscriptionOptions {
        qos,
        no_local,
        retain_as_published: byte & 0x08 != 0,
        retain_handling,
    })
}

fn decode_suback(
    reader: &mut Reader,
    version: ProtocolVersion,
) -> Result<SubAckPacket, DecodeError> {
    let packet_id = reader.packet_id()?;
    let properties = if version.is_v5() {
        read_properties(reader, &ack_rules("SUBACK"))?
    } else {
        Properties::default()
    };
    let codes = reader.take_rest();
    let reason_codes = codes
        .iter()
        .map(|&code| {
            if version.is_v5() {
                reason_code_for(PacketKind::SubAck, code)
            } else {
                // 3.1.1 return codes: granted QoS 0-2 or 0x80 failure [MQTT-3.9.3-2].
                match code {
                    0x00 => Ok(ReasonCode::GRANTED_QOS_0),
                    0x01 => Ok(ReasonCode::GrantedQoS1),
                    0x02 => Ok(ReasonCode::GrantedQoS2),
                    0x80 => Ok(ReasonCode::UnspecifiedError),
                    _ => Err(DecodeError::InvalidReasonCode {
                        packet: "SUBACK",
                        code,
                    }),
                }
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SubAckPacket {
        packet_id,
        properties,
        reason_codes,
    })
}

fn decode_unsubscribe(
    reader: &mut Reader,
    version: ProtocolVersion,
) -> Result<UnsubscribePacket, DecodeError> {
    let packet_id = reader.packet_id()?;
    let properties = if version.is_v5() {
        read_properties(reader, &UNSUBSCRIBE_RULES)?
    } else {
        Properties::default()
    };
    let mut filters = Vec::new();
    while !reader.is_empty() {
        let filter = reader.binary()?;
        // A filter that could never have been subscribed is malformed here too (spec 4.7.3).
        topic::validate_topic_filter(utf8(&filter)?)?;
        filters.push(ByteStr::from_validated_utf8(filter));
    }
    if filters.is_empty() {
        return Err(DecodeError::NoTopicFilters {
            packet: "UNSUBSCRIBE",
        });
    }
    Ok(UnsubscribePacket {
        packet_id,
        properties,
        filters,
    })
}

fn decode_unsuback(
    reader: &mut Reader,
    version: ProtocolVersion,
) -> Result<UnsubAckPacket, DecodeError> {
    let packet_id = reader.packet_id()?;
    let mut packet = UnsubAckPacket {
        packet_id,
        properties: Properties::default(),
        reason_codes: Vec::new(),
    };
    if version.is_v5() {
        packet.properties = read_properties(reader, &ack_rules("UNSUBACK"))?;
        packet.reason_codes = reader
            .take_rest()
            .iter()
            .map(|&code| reason_code_for(PacketKind::UnsubAck, code))
            .collect::<Result<_, _>>()?;
    }
    Ok(packet)
}

fn decode_disconnect(
    reader: &mut Reader,
    version: ProtocolVersion,
) -> Result<DisconnectPacket, DecodeError> {
    let mut packet = DisconnectPacket::default();
    // 5.0: remaining length 0 is a normal disconnection; 1 is a reason code alone.
    if version.is_v5() && !reader.is_empty() {
        packet.reason_code = reader.reason_code(PacketKind::Disconnect)?;
        if !reader.is_empty() {
            packet.properties = read_properties(reader, &DISCONNECT_RULES)?;
        }
    }
    Ok(packet)
}

fn decode_auth(reader: &mut Reader) -> Result<AuthPacket, DecodeError> {
    let mut packet = AuthPacket::default();
    // Remaining length 0 means Success without properties (spec 3.15.2.1).
    if !reader.is_empty() {
        packet.reason_code = reader.reason_code(PacketKind::Auth)?;
        if !reader.is_empty() {
            packet.properties = read_properties(reader, &AUTH_RULES)?;
        }
    }
    Ok(packet)
}

/// Which properties a packet (or a will) may carry, and which of those may repeat.
struct PropertyRules {
    packet: &'static str,
    allowed: u64,
    repeatable: u64,
}

/// A bit per property identifier; every identifier is below 64.
const fn mask(ids: &[u8]) -> u64 {
    let mut bits = 0u64;
    let mut index = 0;
    while index < ids.len() {
        bits |= 1 << ids[index];
        index += 1;
    }
    bits
}

const KNOWN_PROPERTIES: u64 = mask(&[
    id::PAYLOAD_FORMAT_INDICATOR,
    id::MESSAGE_EXPIRY_INTERVAL,
    id::CONTENT_TYPE,
    id::RESPONSE_TOPIC,
    id::CORRELATION_DATA,
    id::SUBSCRIPTION_IDENTIFIER,
    id::SESSION_EXPIRY_INTERVAL,
    id::ASSIGNED_CLIENT_IDENTIFIER,
    id::SERVER_KEEP_ALIVE,
    id::AUTHENTICATION_METHOD,
    id::AUTHENTICATION_DATA,
    id::REQUEST_PROBLEM_INFORMATION,
    id::WILL_DELAY_INTERVAL,
    id::REQUEST_RESPONSE_INFORMATION,
    id::RESPONSE_INFORMATION,
    id::SERVER_REFERENCE,
    id::REASON_STRING,
    id::RECEIVE_MAXIMUM,
    id::TOPIC_ALIAS_MAXIMUM,
    id::TOPIC_ALIAS,
    id::MAXIMUM_QOS,
    id::RETAIN_AVAILABLE,
    id::USER_PROPERTY,
    id::MAXIMUM_PACKET_SIZE,
    id::WILDCARD_SUBSCRIPTION_AVAILABLE,
    id::SUBSCRIPTION_IDENTIFIER_AVAILABLE,
    id::SHARED_SUBSCRIPTION_AVAILABLE,
]);

const USER_ONLY: u64 = mask(&[id::USER_PROPERTY]);

const CONNECT_RULES: PropertyRules = PropertyRules {
    packet: "CONNECT",
    allowed: mask(&[
        id::SESSION_EXPIRY_INTERVAL,
        id::RECEIVE_MAXIMUM,
        id::MAXIMUM_PACKET_SIZE,
        id::TOPIC_ALIAS_MAXIMUM,
        id::REQUEST_RESPONSE_INFORMATION,
        id::REQUEST_PROBLEM_INFORMATION,
        id::USER_PROPERTY,
        id::AUTHENTICATION_METHOD,
        id::AUTHENTICATION_DATA,
    ]),
    repeatable: USER_ONLY,
};

const WILL_RULES: PropertyRules = PropertyRules {
    packet: "will",
    allowed: mask(&[
        id::PAYLOAD_FORMAT_INDICATOR,
        id::MESSAGE_EXPIRY_INTERVAL,
        id::CONTENT_TYPE,
        id::RESPONSE_TOPIC,
        id::CORRELATION_DATA,
        id::WILL_DELAY_INTERVAL,
        id::USER_PROPERTY,
    ]),
    repeatable: USER_ONLY,
};

const CONNACK_RULES: PropertyRules = PropertyRules {
    packet: "CONNACK",
    allowed: mask(&[
        id::SESSION_EXPIRY_INTERVAL,
        id::RECEIVE_MAXIMUM,
        id::MAXIMUM_QOS,
        id::RETAIN_AVAILABLE,
        id::MAXIMUM_PACKET_SIZE,
        id::ASSIGNED_CLIENT_IDENTIFIER,
        id::TOPIC_ALIAS_MAXIMUM,
        id::REASON_STRING,
        id::USER_PROPERTY,
        id::WILDCARD_SUBSCRIPTION_AVAILABLE,
        id::SUBSCRIPTION_IDENTIFIER_AVAILABLE,
        id::SHARED_SUBSCRIPTION_AVAILABLE,
        id::SERVER_KEEP_ALIVE,
        id::RESPONSE_INFORMATION,
        id::SERVER_REFERENCE,
        id::AUTHENTICATION_METHOD,
        id::AUTHENTICATION_DATA,
    ]),
    repeatable: USER_ONLY,
};

const PUBLISH_RULES: PropertyRules = PropertyRules {
    packet: "PUBLISH",
    allowed: mask(&[
        id::PAYLOAD_FORMAT_INDICATOR,
        id::MESSAGE_EXPIRY_INTERVAL,
        id::TOPIC_ALIAS,
        id::RESPONSE_TOPIC,
        id::CORRELATION_DATA,
        id::USER_PROPERTY,
        id::SUBSCRIPTION_IDENTIFIER,
        id::CONTENT_TYPE,
    ]),
    // A message matching several subscriptions carries each one's identifier (spec 3.3.4).
    repeatable: mask(&[id::USER_PROPERTY, id::SUBSCRIPTION_IDENTIFIER]),
};

/// PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK and UNSUBACK: a reason string and user properties.
const fn ack_rules(packet: &'static str) -> PropertyRules {
    PropertyRules {
        packet,
        allowed: mask(&[id::REASON_STRING, id::USER_PROPERTY]),
        repeatable: USER_ONLY,
    }
}

const SUBSCRIBE_RULES: PropertyRules = PropertyRules {
    packet: "SUBSCRIBE",
    allowed: mask(&[id::SUBSCRIPTION_IDENTIFIER, id::USER_PROPERTY]),
    repeatable: USER_ONLY,
};

const UNSUBSCRIBE_RULES: PropertyRules = PropertyRules {
    packet: "UNSUBSCRIBE",
    allowed: USER_ONLY,
    repeatable: USER_ONLY,
};

const DISCONNECT_RULES: PropertyRules = PropertyRules {
    packet: "DISCONNECT",
    allowed: mask(&[
        id::SESSION_EXPIRY_INTERVAL,
        id::REASON_STRING,
        id::USER_PROPERTY,
        id::SERVER_REFERENCE,
    ]),
    repeatable: USER_ONLY,
};

const AUTH_RULES: PropertyRules = PropertyRules {
    packet: "AUTH",
    allowed: mask(&[
        id::AUTHENTICATION_METHOD,
        id::AUTHENTICATION_DATA,
        id::REASON_STRING,
        id::USER_PROPERTY,
    ]),
    repeatable: USER_ONLY,
};

/// Reads a property length and the properties it covers (spec 2.2.2).
fn read_properties(reader: &mut Reader, rules: &PropertyRules) -> Result<Properties, DecodeError> {
    let len = reader.variable_integer()?;
    // u32 -> usize cannot fail on 32- or 64-bit targets; saturate rather than assume.
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    reader.within(len, |reader| {
        let mut properties = Properties::default();
        let mut seen = 0u64;
        while !reader.is_empty() {
            // Identifiers are Variable Byte Integers, but every defined one fits in one byte
            // below 0x80, so any other first byte is simply unknown.
            let property = reader.u8()?;
            let bit = 1u64.checked_shl(u32::from(property)).unwrap_or(0);
            if bit & KNOWN_PROPERTIES == 0 {
                return Err(DecodeError::UnknownProperty(property));
            }
            if bit & rules.allowed == 0 {
                return Err(DecodeError::PropertyNotAllowed {
                    packet: rules.packet,
                    property,
                });
            }
            if seen & bit != 0 && rules.repeatable & bit == 0 {
                return Err(DecodeError::DuplicateProperty(property));
            }
            seen |= bit;
            read_property_value(reader, property, &mut properties)?;
        }
        Ok(properties)
    })
}

fn invalid_value(property: u8, detail: &'static str) -> DecodeError {
    DecodeError::InvalidPropertyValue { property, detail }
}

/// A byte that the specification restricts to 0 or 1.
fn boolean_byte(reader: &mut Reader, property: u8) -> Result<u8, DecodeError> {
    match reader.u8()? {
        value @ (0 | 1) => Ok(value),
        _ => Err(invalid_value(property, "must be 0 or 1 (spec 2.2.2.2)")),
    }
}

fn non_zero_u16(reader: &mut Reader, property: u8) -> Result<u16, DecodeError> {
    match reader.u16()? {
        0 => Err(invalid_value(property, "must not be 0 (spec 2.2.2.2)")),
        value => Ok(value),
    }
}

fn read_property_value(
    reader: &mut Reader,
    property: u8,
    properties: &mut Properties,
) -> Result<(), DecodeError> {
    let p = properties;
    // Grouped by the shape of the value: each shape is read by one piece of code, and only
    // the field it lands in is chosen per property (smaller code; the wasm client counts it).
    match property {
        id::PAYLOAD_FORMAT_INDICATOR
        | id::REQUEST_PROBLEM_INFORMATION
        | id::REQUEST_RESPONSE_INFORMATION
        | id::MAXIMUM_QOS
        | id::RETAIN_AVAILABLE
        | id::WILDCARD_SUBSCRIPTION_AVAILABLE
        | id::SUBSCRIPTION_IDENTIFIER_AVAILABLE
        | id::SHARED_SUBSCRIPTION_AVAILABLE => {
            let value = Some(boolean_byte(reader, property)?);
            *match property {
                id::PAYLOAD_FORMAT_INDICATOR => &mut p.payload_format_indicator,
                id::REQUEST_PROBLEM_INFORMATION => &mut p.request_problem_information,
                id::REQUEST_RESPONSE_INFORMATION => &mut p.request_response_information,
                id::MAXIMUM_QOS => &mut p.maximum_qos,
                id::RETAIN_AVAILABLE => &mut p.retain_available,
                id::WILDCARD_SUBSCRIPTION_AVAILABLE => &mut p.wildcard_subscription_available,
                id::SUBSCRIPTION_IDENTIFIER_AVAILABLE => &mut p.subscription_identifier_available,
                _ => &mut p.shared_subscription_available,
            } = value;
        }
        id::MESSAGE_EXPIRY_INTERVAL | id::SESSION_EXPIRY_INTERVAL | id::WILL_DELAY_INTERVAL => {
            let value = Some(reader.u32()?);
            *match property {
                id::MESSAGE_EXPIRY_INTERVAL => &mut p.message_expiry_interval,
                id::SESSION_EXPIRY_INTERVAL => &mut p.session_expiry_interval,
                _ => &mut p.will_delay_interval,
            } = value;
        }
        id::SERVER_KEEP_ALIVE | id::TOPIC_ALIAS_MAXIMUM => {
            let value = Some(reader.u16()?);
            *match property {
                id::SERVER_KEEP_ALIVE => &mut p.server_keep_alive,
                _ => &mut p.topic_alias_maximum,
            } = value;
        }
        id::RECEIVE_MAXIMUM | id::TOPIC_ALIAS => {
            let value = Some(non_zero_u16(reader, property)?);
            *match property {
                id::RECEIVE_MAXIMUM => &mut p.receive_maximum,
                _ => &mut p.topic_alias,
            } = value;
        }
        id::CONTENT_TYPE
        | id::ASSIGNED_CLIENT_IDENTIFIER
        | id::AUTHENTICATION_METHOD
        | id::RESPONSE_INFORMATION
        | id::SERVER_REFERENCE
        | id::REASON_STRING => {
            let value = Some(reader.string()?);
            *match property {
                id::CONTENT_TYPE => &mut p.content_type,
                id::ASSIGNED_CLIENT_IDENTIFIER => &mut p.assigned_client_identifier,
                id::AUTHENTICATION_METHOD => &mut p.authentication_method,
                id::RESPONSE_INFORMATION => &mut p.response_information,
                id::SERVER_REFERENCE => &mut p.server_reference,
                _ => &mut p.reason_string,
            } = value;
        }
        id::CORRELATION_DATA | id::AUTHENTICATION_DATA => {
            let value = Some(reader.binary()?);
            *match property {
                id::CORRELATION_DATA => &mut p.correlation_data,
                _ => &mut p.authentication_data,
            } = value;
        }
        id::RESPONSE_TOPIC => {
            let response_topic = reader.binary()?;
            // It is used as the topic name of the response [MQTT-3.3.2-14].
            topic::validate_topic_name(utf8(&response_topic)?)?;
            p.response_topic = Some(ByteStr::from_validated_utf8(response_topic));
        }
        id::SUBSCRIPTION_IDENTIFIER => match reader.variable_integer()? {
            // The upper bound 268,435,455 is the largest four-byte Variable Byte Integer.
            0 => {
                return Err(invalid_value(
                    property,
                    "Subscription Identifier must be 1 to 268435455 (spec 3.8.2.1.2)",
                ));
            }
            value => p.subscription_identifiers.push(value),
        },
        id::USER_PROPERTY => {
            let name = reader.string()?;
            let value = reader.string()?;
            p.user_properties.push((name, value));
        }
        id::MAXIMUM_PACKET_SIZE => match reader.u32()? {
            0 => return Err(invalid_value(property, "must not be 0 (spec 3.1.2.11.4)")),
            value => p.maximum_packet_size = Some(value),
        },
        // read_properties only passes known identifiers.
        unknown => return Err(DecodeError::UnknownProperty(unknown)),
    }
    Ok(())
}
