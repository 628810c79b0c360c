//! Encoding: packets in, bytes out.
//!
//! Invariants:
//!
//! - Everything that can fail is checked while computing the remaining length, before a byte is
//!   written, so an error leaves the buffer untouched.
//! - [`encode`] reserves exactly once, the packet's computed size, then writes without further
//!   allocation: a broker encodes the same PUBLISH for many subscribers on its hot path.
//! - Fields that 3.1/3.1.1 lack (properties, reason codes other than CONNACK's and SUBACK's) are
//!   left out for those versions; 5.0 uses the short forms the specification allows when the
//!   reason is Success and there are no properties.
//! - Properties are written in ascending identifier order, each repeatable one in the order of
//!   its `Vec`. The encoder writes every property that is set; which ones a packet type allows
//!   is the sender's business (the decoder enforces it on the other side).

use crate::{
    ByteStr, ConnectPacket, EncodeError, MAX_REMAINING_LENGTH, Packet, Properties, ProtocolVersion,
    PublishPacket, QoS, ReasonCode, RetainHandling, SubscriptionOptions, property_id as id,
};
use bytes::{BufMut, Bytes, BytesMut};

/// The number of bytes `packet` takes on the wire, fixed header included.
pub fn encoded_len(packet: &Packet, version: ProtocolVersion) -> Result<usize, EncodeError> {
    encoded_len_as::<false>(packet, version)
}

/// [`encoded_len`] for a client: the packets only servers send (CONNACK, SUBACK, UNSUBACK,
/// PINGRESP) are refused with [`EncodeError::ServerOnly`], and their encoders are not linked
/// into a program that calls only this and [`encode_from_client`], such as the browser client.
pub fn encoded_len_from_client(
    packet: &Packet,
    version: ProtocolVersion,
) -> Result<usize, EncodeError> {
    encoded_len_as::<true>(packet, version)
}

/// Appends `packet` to `buf`, encoded for `version` (for CONNECT, for `packet.protocol`).
///
/// On error nothing is written.
pub fn encode(
    packet: &Packet,
    version: ProtocolVersion,
    buf: &mut BytesMut,
) -> Result<(), EncodeError> {
    encode_as::<false>(packet, version, buf)
}

/// [`encode`] for a client: see [`encoded_len_from_client`].
pub fn encode_from_client(
    packet: &Packet,
    version: ProtocolVersion,
    buf: &mut BytesMut,
) -> Result<(), EncodeError> {
    encode_as::<true>(packet, version, buf)
}

#[inline(always)]
fn encoded_len_as<const FROM_CLIENT: bool>(
    packet: &Packet,
    version: ProtocolVersion,
) -> Result<usize, EncodeError> {
    let remaining_length = remaining_length::<FROM_CLIENT>(packet, version)?;
    Ok(1 + variable_integer_len(remaining_length) + remaining_length)
}

#[inline(always)]
fn encode_as<const FROM_CLIENT: bool>(
    packet: &Packet,
    version: ProtocolVersion,
    buf: &mut BytesMut,
) -> Result<(), EncodeError> {
    let remaining_length = remaining_length::<FROM_CLIENT>(packet, version)?;
    let total = 1 + variable_integer_len(remaining_length) + remaining_length;
    buf.reserve(total);
    let start = buf.len();
    buf.put_u8(first_byte(packet));
    put_variable_integer(buf, remaining_length);
    write_body::<FROM_CLIENT>(packet, version, buf);
    debug_assert_eq!(
        buf.len() - start,
        total,
        "computed and written sizes differ"
    );
    Ok(())
}

fn first_byte(packet: &Packet) -> u8 {
    match packet {
        Packet::Connect(_) => 0x10,
        Packet::ConnAck(_) => 0x20,
        Packet::Publish(publish) => {
            0x30 | u8::from(publish.dup) << 3 | (publish.qos as u8) << 1 | u8::from(publish.retain)
        }
        Packet::PubAck(_) => 0x40,
        Packet::PubRec(_) => 0x50,
        Packet::PubRel(_) => 0x62,
        Packet::PubComp(_) => 0x70,
        Packet::Subscribe(_) => 0x82,
        Packet::SubAck(_) => 0x90,
        Packet::Unsubscribe(_) => 0xA2,
        Packet::UnsubAck(_) => 0xB0,
        Packet::PingReq => 0xC0,
        Packet::PingResp => 0xD0,
        Packet::Disconnect(_) => 0xE0,
        Packet::Auth(_) => 0xF0,
    }
}

/// The largest value a four-byte Variable Byte Integer holds.
const MAX_VARIABLE_INTEGER: usize = MAX_REMAINING_LENGTH;

fn variable_integer_len(value: usize) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

fn put_variable_integer(buf: &mut BytesMut, mut value: usize) {
    loop {
        // Truncation is the point: the low seven bits of what is left.
        let mut byte = (value & 0x7F) as u8;
        value >>= 7;
        if value > 0 {
            byte |= 0x80;
        }
        buf.put_u8(byte);
        if value == 0 {
            return;
        }
    }
}

/// Bytes of a UTF-8 string or binary field, length prefix included.
fn field_len(len: usize) -> Result<usize, EncodeError> {
    if len > usize::from(u16::MAX) {
        return Err(EncodeError::FieldTooLong(len));
    }
    Ok(2 + len)
}

/// The UTF-8 length of a string. `ByteStr`'s `str` view re-checks UTF-8 on every access, so
/// the encoder sizes and writes strings through their bytes.
fn text_len(text: &ByteStr) -> usize {
    text.as_bytes().len()
}

fn text_field(text: &Option<ByteStr>) -> Option<&[u8]> {
    text.as_ref().map(|text| &text.as_bytes()[..])
}

fn put_field(buf: &mut BytesMut, bytes: &[u8]) {
    // field_len checked the length while sizing the packet.
    buf.put_u16(bytes.len() as u16);
    buf.put_slice(bytes);
}

/// Properties and the size of their length prefix, for 5.0; nothing for older versions.
fn properties_block_len(
    properties: &Properties,
    version: ProtocolVersion,
) -> Result<usize, EncodeError> {
    if !version.is_v5() {
        return Ok(0);
    }
    let len = properties_len(properties)?;
    if len > MAX_VARIABLE_INTEGER {
        return Err(EncodeError::PacketTooLarge(len));
    }
    Ok(variable_integer_len(len) + len)
}

/// Sums with saturation: on 32-bit targets shared `Bytes` can add up past `usize::MAX`, and a
/// saturated sum is still correctly refused as too large.
struct Size(usize);

impl Size {
    fn add(&mut self, len: usize) {
        self.0 = self.0.saturating_add(len);
    }

    fn field(&mut self, len: usize) -> Result<(), EncodeError> {
        self.add(1 + field_len(len)?);
        Ok(())
    }

    fn optional_field(&mut self, field: Option<&[u8]>) -> Result<(), EncodeError> {
        match field {
            Some(bytes) => self.field(bytes.len()),
            None => Ok(()),
        }
    }

    fn optional(&mut self, present: bool, value_len: usize) {
        if present {
            self.add(1 + value_len);
        }
    }
}

fn properties_len(p: &Properties) -> Result<usize, EncodeError> {
    let mut size = Size(0);
    size.optional(p.payload_format_indicator.is_some(), 1);
    size.optional(p.message_expiry_interval.is_some(), 4);
    size.optional_field(text_field(&p.content_type))?;
    size.optional_field(text_field(&p.response_topic))?;
    size.optional_field(p.correlation_data.as_deref())?;
    for &identifier in &p.subscription_identifiers {
        let identifier = identifier as usize;
        if identifier > MAX_VARIABLE_INTEGER {
            return Err(EncodeError::VariableByteIntegerTooLarge(identifier));
        }
        size.add(1 + variable_integer_len(identifier));
    }
    size.optional(p.session_expiry_interval.is_some(), 4);
    size.optional_field(text_field(&p.assigned_client_identifier))?;
    size.optional(p.server_keep_alive.is_some(), 2);
    size.optional_field(text_field(&p.authentication_method))?;
    size.optional_field(p.authentication_data.as_deref())?;
    size.optional(p.request_problem_information.is_some(), 1);
    size.optional(p.will_delay_interval.is_some(), 4);
    size.optional(p.request_response_information.is_some(), 1);
    size.optional_field(text_field(&p.response_information))?;
    size.optional_field(text_field(&p.server_reference))?;
    size.optional_field(text_field(&p.reason_string))?;
    size.optional(p.receive_maximum.is_some(), 2);
    size.optional(p.topic_alias_maximum.is_some(), 2);
    size.optional(p.topic_alias.is_some(), 2);
    size.optional(p.maximum_qos.is_some(), 1);
    size.optional(p.retain_available.is_some(), 1);
    for (name, value) in &p.user_properties {
        // One identifier byte for the pair, then two length-prefixed strings.
        size.add(1);
        size.add(field_len(text_len(name))?);
        size.add(field_len(text_len(value))?);
    }
    size.optional(p.maximum_packet_size.is_some(), 4);
    size.optional(p.wildcard_subscription_available.is_some(), 1);
    size.optional(p.subscription_identifier_available.is_some(), 1);
    size.optional(p.shared_subscription_available.is_some(), 1);
    Ok(size.0)
}

/// With `FROM_CLIENT`, the packets only servers send are refused and their sizing unused.
fn remaining_length<const FROM_CLIENT: bool>(
    packet: &Packet,
    version: ProtocolVersion,
) -> Result<usize, EncodeError> {
    let mut size = Size(0);
    match packet {
        Packet::Connect(connect) => connect_len(connect, &mut size)?,
        Packet::ConnAck(connack) if !FROM_CLIENT => {
            size.add(2);
            size.add(properties_block_len(&connack.properties, version)?);
        }
        Packet::Publish(publish) => publish_len(publish, version, &mut size)?,
        Packet::PubAck(ack) | Packet::PubRec(ack) | Packet::PubRel(ack) | Packet::PubComp(ack) => {
            size.add(2);
            if version.is_v5() && !is_short(ack.reason_code, &ack.properties) {
                size.add(1);
                if !ack.properties.is_empty() {
                    size.add(properties_block_len(&ack.properties, version)?);
                }
            }
        }
        Packet::Subscribe(subscribe) => {
            size.add(2);
            size.add(properties_block_len(&subscribe.properties, version)?);
            for subscription in &subscribe.subscriptions {
                size.add(field_len(text_len(&subscription.filter))?);
                size.add(1);
            }
        }
        Packet::SubAck(suback) if !FROM_CLIENT => {
            size.add(2);
            size.add(properties_block_len(&suback.properties, version)?);
            size.add(suback.reason_codes.len());
        }
        Packet::Unsubscribe(unsubscribe) => {
            size.add(2);
            size.add(properties_block_len(&unsubscribe.properties, version)?);
            for filter in &unsubscribe.filters {
                size.add(field_len(text_len(filter))?);
            }
        }
        Packet::UnsubAck(unsuback) if !FROM_CLIENT => {
            size.add(2);
            if version.is_v5() {
                size.add(properties_block_len(&unsuback.properties, version)?);
                size.add(unsuback.reason_codes.len());
            }
        }
        Packet::PingReq => {}
        Packet::PingResp if !FROM_CLIENT => {}
        Packet::ConnAck(_) => return Err(EncodeError::ServerOnly { packet: "CONNACK" }),
        Packet::SubAck(_) => return Err(EncodeError::ServerOnly { packet: "SUBACK" }),
        Packet::UnsubAck(_) => return Err(EncodeError::ServerOnly { packet: "UNSUBACK" }),
        Packet::PingResp => return Err(EncodeError::ServerOnly { packet: "PINGRESP" }),
        Packet::Disconnect(disconnect) => {
            if version.is_v5() && !is_short(disconnect.reason_code, &disconnect.properties) {
                size.add(1);
                if !disconnect.properties.is_empty() {
                    size.add(properties_block_len(&disconnect.properties, version)?);
                }
            }
        }
        Packet::Auth(auth) => {
            if !version.is_v5() {
                return Err(EncodeError::NotInVersion {
                    packet: "AUTH",
                    version,
                });
            }
            if !is_short(auth.reason_code, &auth.properties) {
                size.add(1);
                size.add(properties_block_len(&auth.properties, version)?);
            }
        }
    }
    if size.0 > MAX_REMAINING_LENGTH {
        return Err(EncodeError::PacketTooLarge(size.0));
    }
    Ok(size.0)
}

/// Whether 5.0 lets the reason code and property length be omitted.
fn is_short(reason_code: ReasonCode, properties: &Properties) -> bool {
    reason_code == ReasonCode::Success && properties.is_empty()
}

fn connect_len(connect: &ConnectPacket, size: &mut Size) -> Result<(), EncodeError> {
    let version = connect.protocol;
    // Protocol name, level, flags, keep alive.
    size.add(field_len(version.protocol_name().len())? + 1 + 1 + 2);
    size.add(properties_block_len(&connect.properties, version)?);
    size.add(field_len(text_len(&connect.client_id))?);
    if let Some(will) = &connect.will {
        size.add(properties_block_len(&will.properties, version)?);
        size.add(field_len(text_len(&will.topic))?);
        size.add(field_len(will.payload.len())?);
    }
    if let Some(username) = &connect.username {
        size.add(field_len(text_len(username))?);
    }
    if let Some(password) = &connect.password {
        size.add(field_len(password.len())?);
    }
    Ok(())
}

fn publish_len(
    publish: &PublishPacket,
    version: ProtocolVersion,
    size: &mut Size,
) -> Result<(), EncodeError> {
    if publish.packet_id.is_some() == (publish.qos == QoS::AtMostOnce) {
        return Err(EncodeError::PacketIdentifierMismatch);
    }
    size.add(field_len(text_len(&publish.topic))?);
    if publish.packet_id.is_some() {
        size.add(2);
    }
    size.add(properties_block_len(&publish.properties, version)?);
    size.add(publish.payload.len());
    Ok(())
}

/// Writes what `remaining_length::<FROM_CLIENT>` sized, which refused the rest.
fn write_body<const FROM_CLIENT: bool>(
    packet: &Packet,
    version: ProtocolVersion,
    buf: &mut BytesMut,
) {
    match packet {
        Packet::Connect(connect) => write_connect(connect, buf),
        Packet::ConnAck(connack) if !FROM_CLIENT => {
            // 3.1 had no session present flag; the byte was reserved.
            let session_present = connack.session_present && version != ProtocolVersion::V31;
            buf.put_u8(u8::from(session_present));
            if version.is_v5() {
                buf.put_u8(connack.reason_code.as_u8());
                write_properties(&connack.properties, buf);
            } else {
                buf.put_u8(connack.reason_code.to_connect_return_code());
            }
        }
        Packet::Publish(publish) => {
            put_field(buf, publish.topic.as_bytes());
            if let Some(packet_id) = publish.packet_id {
                buf.put_u16(packet_id);
            }
            if version.is_v5() {
                write_properties(&publish.properties, buf);
            }
            buf.put_slice(&publish.payload);
        }
        Packet::PubAck(ack) | Packet::PubRec(ack) | Packet::PubRel(ack) | Packet::PubComp(ack) => {
            buf.put_u16(ack.packet_id);
            if version.is_v5() && !is_short(ack.reason_code, &ack.properties) {
                buf.put_u8(ack.reason_code.as_u8());
                if !ack.properties.is_empty() {
                    write_properties(&ack.properties, buf);
                }
            }
        }
        Packet::Subscribe(subscribe) => {
            buf.put_u16(subscribe.packet_id);
            if version.is_v5() {
                write_properties(&subscribe.properties, buf);
            }
            for subscription in &subscribe.subscriptions {
                put_field(buf, subscription.filter.as_bytes());
                buf.put_u8(subscription_options_byte(subscription.options, version));
            }
        }
        Packet::SubAck(suback) if !FROM_CLIENT => {
            buf.put_u16(suback.packet_id);
            if version.is_v5() {
                write_properties(&suback.properties, buf);
                for code in &suback.reason_codes {
                    buf.put_u8(code.as_u8());
                }
            } else {
                for code in &suback.reason_codes {
                    // 3.1.1 knows granted QoS 0-2 and a single failure code.
                    buf.put_u8(match code {
                        ReasonCode::Success => 0x00,
                        ReasonCode::GrantedQoS1 => 0x01,
                        ReasonCode::GrantedQoS2 => 0x02,
                        _ => 0x80,
                    });
                }
            }
        }
        Packet::Unsubscribe(unsubscribe) => {
            buf.put_u16(unsubscribe.packet_id);
            if version.is_v5() {
                write_properties(&unsubscribe.properties, buf);
            }
            for filter in &unsubscribe.filters {
                put_field(buf, filter.as_bytes());
            }
        }
        Packet::UnsubAck(unsuback) if !FROM_CLIENT => {
            buf.put_u16(unsuback.packet_id);
            if version.is_v5() {
                write_properties(&unsuback.properties, buf);
                for code in &unsuback.reason_codes {
                    buf.put_u8(code.as_u8());
                }
            }
        }
        Packet::PingReq | Packet::PingResp => {}
        // Refused by `remaining_length::<true>` before anything is written.
        Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) => {}
        Packet::Disconnect(disconnect) => {
            if version.is_v5() && !is_short(disconnect.reason_code, &disconnect.properties) {
                buf.put_u8(disconnect.reason_code.as_u8());
                if !disconnect.properties.is_empty() {
                    write_properties(&disconnect.properties, buf);
                }
            }
        }
        Packet::Auth(auth) => {
            if !is_short(auth.reason_code, &auth.properties) {
                buf.put_u8(auth.reason_code.as_u8());
                write_properties(&auth.properties, buf);
            }
        }
    }
}

fn subscription_options_byte(options: SubscriptionOptions, version: ProtocolVersion) -> u8 {
    let qos = options.qos as u8;
    if !version.is_v5() {
        return qos;
    }
    let retain_handling = match options.retain_handling {
        RetainHandling::SendAtSubscribe => 0,
        RetainHandling::SendIfNew => 1,
        RetainHandling::DoNotSend => 2,
    };
    qos | u8::from(options.no_local) << 2
        | u8::from(options.retain_as_published) << 3
        | retain_handling << 4
}

fn write_connect(connect: &ConnectPacket, buf: &mut BytesMut) {
    let version = connect.protocol;
    put_field(buf, version.protocol_name().as_bytes());
    buf.put_u8(version.level());
    let mut flags = u8::from(connect.clean_start) << 1;
    if let Some(will) = &connect.will {
        flags |= 0x04 | (will.qos as u8) << 3 | u8::from(will.retain) << 5;
    }
    flags |= u8::from(connect.password.is_some()) << 6;
    flags |= u8::from(connect.username.is_some()) << 7;
    buf.put_u8(flags);
    buf.put_u16(connect.keep_alive);
    if version.is_v5() {
        write_properties(&connect.properties, buf);
    }
    put_field(buf, connect.client_id.as_bytes());
    if let Some(will) = &connect.will {
        if version.is_v5() {
            write_properties(&will.properties, buf);
        }
        put_field(buf, will.topic.as_bytes());
        put_field(buf, &will.payload);
    }
    if let Some(username) = &connect.username {
        put_field(buf, username.as_bytes());
    }
    if let Some(password) = &connect.password {
        put_field(buf, password);
    }
}

/// Writes the property length and the properties; sizes were checked by `properties_len`.
fn write_properties(p: &Properties, buf: &mut BytesMut) {
    // Computing the length again costs a few additions and avoids threading sizes through.
    let len = properties_len(p).unwrap_or(0);
    put_variable_integer(buf, len);
    put_byte_property(
        buf,
        id::PAYLOAD_FORMAT_INDICATOR,
        p.payload_format_indicator,
    );
    put_four_byte_integer_property(buf, id::MESSAGE_EXPIRY_INTERVAL, p.message_expiry_interval);
    put_string_property(
        buf,
        id::CONTENT_TYPE,
        p.content_type.as_ref().map(|s| s.as_bytes()),
    );
    put_string_property(
        buf,
        id::RESPONSE_TOPIC,
        p.response_topic.as_ref().map(|s| s.as_bytes()),
    );
    put_string_property(buf, id::CORRELATION_DATA, p.correlation_data.as_ref());
    for &identifier in &p.subscription_identifiers {
        buf.put_u8(id::SUBSCRIPTION_IDENTIFIER);
        put_variable_integer(buf, identifier as usize);
    }
    put_four_byte_integer_property(buf, id::SESSION_EXPIRY_INTERVAL, p.session_expiry_interval);
    put_string_property(
        buf,
        id::ASSIGNED_CLIENT_IDENTIFIER,
        p.assigned_client_identifier.as_ref().map(|s| s.as_bytes()),
    );
    put_two_byte_integer_property(buf, id::SERVER_KEEP_ALIVE, p.server_keep_alive);
    put_string_property(
        buf,
        id::AUTHENTICATION_METHOD,
        p.authentication_method.as_ref().map(|s| s.as_bytes()),
    );
    put_string_property(buf, id::AUTHENTICATION_DATA, p.authentication_data.as_ref());
    put_byte_property(
        buf,
        id::REQUEST_PROBLEM_INFORMATION,
        p.request_problem_information,
    );
    put_four_byte_integer_property(buf, id::WILL_DELAY_INTERVAL, p.will_delay_interval);
    put_byte_property(
        buf,
        id::REQUEST_RESPONSE_INFORMATION,
        p.request_response_information,
    );
    put_string_property(
        buf,
        id::RESPONSE_INFORMATION,
        p.response_information.as_ref().map(|s| s.as_bytes()),
    );
    put_string_property(
        buf,
        id::SERVER_REFERENCE,
        p.server_reference.as_ref().map(|s| s.as_bytes()),
    );
    put_string_property(
        buf,
        id::REASON_STRING,
        p.reason_string.as_ref().map(|s| s.as_bytes()),
    );
    put_two_byte_integer_property(buf, id::RECEIVE_MAXIMUM, p.receive_maximum);
    put_two_byte_integer_property(buf, id::TOPIC_ALIAS_MAXIMUM, p.topic_alias_maximum);
    put_two_byte_integer_property(buf, id::TOPIC_ALIAS, p.topic_alias);
    put_byte_property(buf, id::MAXIMUM_QOS, p.maximum_qos);
    put_byte_property(buf, id::RETAIN_AVAILABLE, p.retain_available);
    for (name, value) in &p.user_properties {
        buf.put_u8(id::USER_PROPERTY);
        put_field(buf, name.as_bytes());
        put_field(buf, value.as_bytes());
    }
    put_four_byte_integer_property(buf, id::MAXIMUM_PACKET_SIZE, p.maximum_packet_size);
    put_byte_property(
        buf,
        id::WILDCARD_SUBSCRIPTION_AVAILABLE,
        p.wildcard_subscription_available,
    );
    put_byte_property(
        buf,
        id::SUBSCRIPTION_IDENTIFIER_AVAILABLE,
        p.subscription_identifier_available,
    );
    put_byte_property(
        buf,
        id::SHARED_SUBSCRIPTION_AVAILABLE,
        p.shared_subscription_available,
    );
}

// One helper per shape of value, so that each property costs a call rather than its own copy
// of the writes (which matters in the wasm client; the gateway's build inlines them anyway).
fn put_byte_property(buf: &mut BytesMut, property: u8, value: Option<u8>) {
    if let Some(value) = value {
        buf.put_u8(property);
        buf.put_u8(value);
    }
}

fn put_two_byte_integer_property(buf: &mut BytesMut, property: u8, value: Option<u16>) {
    if let Some(value) = value {
        buf.put_u8(property);
        buf.put_u16(value);
    }
}

fn put_four_byte_integer_property(buf: &mut BytesMut, property: u8, value: Option<u32>) {
    if let Some(value) = value {
        buf.put_u8(property);
        buf.put_u32(value);
    }
}

fn put_string_property(buf: &mut BytesMut, property: u8, value: Option<&Bytes>) {
    if let Some(bytes) = value {
        buf.put_u8(property);
        put_field(buf, bytes);
    }
}
