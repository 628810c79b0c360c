//! The encoding of the store's values, layout version 2 (keys are redb's own tuple types; see
//! the table definitions in [`super`]).
//!
//! A value is a few fixed-width big-endian integers, flags packed in a byte, and
//! length-prefixed strings (lengths are LEB128 varints); a message's payload is the rest of its
//! value, so it needs no length. Times are absolute wall-clock unix milliseconds, so that a
//! value stays true however long the gateway is down. Properties are stored as a bit mask of
//! those present followed by their values; a message or will carries only the properties a
//! PUBLISH or a will may carry, and those are all that is stored. This is the gateway's own
//! encoding rather than the MQTT codec's: loading a million retained messages decodes a million
//! values, and this takes a few dozen nanoseconds each.
//!
//! Decoding never panics on bad input: a truncated or foreign value is an error saying what was
//! wrong, which the store reports with the table, key and file.
//!
//! Invariant: any change to this encoding (or to the tables) bumps [`VERSION`]; the previous
//! layout is only read, by [`v1`], to migrate it.

pub(super) mod v1;

use bytes::Bytes;
use mqtt_codec::Properties;
use mqtt_codec::{
    ByteStr, ProtocolVersion, PublishPacket, QoS, RetainHandling, SubscriptionOptions, Will,
};

/// The layout version this gateway writes, kept in the `meta` table.
pub(super) const VERSION: u64 = 2;

/// Why a value could not be decoded.
pub(super) type DecodeError = String;

/// Reads a value front to back.
pub(super) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes }
    }

    fn take(&mut self, count: usize) -> Result<&'a [u8], DecodeError> {
        if self.rest.len() < count {
            return Err(format!(
                "truncated: {count} bytes needed, {} left",
                self.rest.len()
            ));
        }
        let (taken, rest) = self.rest.split_at(count);
        self.rest = rest;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let bytes = self.take(N)?;
        Ok(bytes.try_into().expect("N bytes taken"))
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint longer than 64 bits".into())
    }

    /// A length that must fit in what is left, so that a corrupt one cannot make us allocate.
    fn length(&mut self) -> Result<usize, DecodeError> {
        let length = self.varint()?;
        match usize::try_from(length) {
            Ok(length) if length <= self.rest.len() => Ok(length),
            _ => Err(format!(
                "length {length} exceeds the {} bytes left",
                self.rest.len()
            )),
        }
    }

    fn bytes(&mut self) -> Result<Bytes, DecodeError> {
        let length = self.length()?;
        Ok(Bytes::copy_from_slice(self.take(length)?))
    }

    fn string(&mut self) -> Result<ByteStr, DecodeError> {
        let length = self.length()?;
        let bytes = self.take(length)?;
        let text = std::str::from_utf8(bytes).map_err(|e| format!("invalid UTF-8: {e}"))?;
        Ok(ByteStr::from(text))
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }

    /// Checks that the value was read to its end.
    fn finish(&self) -> Result<(), DecodeError> {
        match self.rest.len() {
            0 => Ok(()),
            left => Err(format!("{left} unexpected trailing bytes")),
        }
    }
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn qos_from_bits(bits: u8) -> Result<QoS, DecodeError> {
    QoS::from_bits(bits).ok_or_else(|| format!("invalid QoS {bits}"))
}

/// The protocol, as its CONNECT level byte.
pub(crate) fn protocol_from_level(level: u8) -> Result<ProtocolVersion, DecodeError> {
    match level {
        3 => Ok(ProtocolVersion::V31),
        4 => Ok(ProtocolVersion::V311),
        5 => Ok(ProtocolVersion::V5),
        level => Err(format!("unknown protocol level {level}")),
    }
}

// The bits of a properties mask: one per property a PUBLISH or a will may carry.
const PAYLOAD_FORMAT: u16 = 1 << 0;
const MESSAGE_EXPIRY: u16 = 1 << 1;
const CONTENT_TYPE: u16 = 1 << 2;
const RESPONSE_TOPIC: u16 = 1 << 3;
const CORRELATION_DATA: u16 = 1 << 4;
const USER_PROPERTIES: u16 = 1 << 5;
const TOPIC_ALIAS: u16 = 1 << 6;
const WILL_DELAY: u16 = 1 << 7;
const SUBSCRIPTION_IDENTIFIERS: u16 = 1 << 8;

/// Whether `properties` holds only what [`put_properties`] stores (minus the subscription
/// identifiers, which the caller may leave out on purpose).
fn only_message_properties(properties: &Properties) -> bool {
    let stored = Properties {
        payload_format_indicator: properties.payload_format_indicator,
        message_expiry_interval: properties.message_expiry_interval,
        content_type: properties.content_type.clone(),
        response_topic: properties.response_topic.clone(),
        correlation_data: properties.correlation_data.clone(),
        subscription_identifiers: properties.subscription_identifiers.clone(),
        user_properties: properties.user_properties.clone(),
        topic_alias: properties.topic_alias,
        will_delay_interval: properties.will_delay_interval,
        ..Properties::EMPTY
    };
    stored == *properties
}

/// The mask of the properties [`put_properties`] stores.
fn properties_mask(properties: &Properties, identifiers: bool) -> u16 {
    let present = |set: bool, bit: u16| if set { bit } else { 0 };
    present(
        properties.payload_format_indicator.is_some(),
        PAYLOAD_FORMAT,
    ) | present(properties.message_expiry_interval.is_some(), MESSAGE_EXPIRY)
        | present(properties.content_type.is_some(), CONTENT_TYPE)
        | present(properties.response_topic.is_some(), RESPONSE_TOPIC)
        | present(properties.correlation_data.is_some(), CORRELATION_DATA)
        | present(!properties.user_properties.is_empty(), USER_PROPERTIES)
        | present(properties.topic_alias.is_some(), TOPIC_ALIAS)
        | present(properties.will_delay_interval.is_some(), WILL_DELAY)
        | present(
            identifiers && !properties.subscription_identifiers.is_empty(),
            SUBSCRIPTION_IDENTIFIERS,
        )
}

/// `mask u16`, then each property present, in the order of the mask's bits.
fn put_properties(out: &mut Vec<u8>, properties: &Properties, mask: u16) {
    debug_assert!(
        only_message_properties(properties),
        "a message or will carries a property the store does not keep: {properties:?}"
    );
    out.extend_from_slice(&mask.to_be_bytes());
    if let Some(indicator) = properties.payload_format_indicator {
        out.push(indicator);
    }
    if let Some(seconds) = properties.message_expiry_interval {
        out.extend_from_slice(&seconds.to_be_bytes());
    }
    if let Some(content_type) = &properties.content_type {
        put_bytes(out, content_type.as_bytes());
    }
    if let Some(topic) = &properties.response_topic {
        put_bytes(out, topic.as_bytes());
    }
    if let Some(data) = &properties.correlation_data {
        put_bytes(out, data);
    }
    if mask & USER_PROPERTIES != 0 {
        put_varint(out, properties.user_properties.len() as u64);
        for (name, value) in &properties.user_properties {
            put_bytes(out, name.as_bytes());
            put_bytes(out, value.as_bytes());
        }
    }
    if let Some(alias) = properties.topic_alias {
        out.extend_from_slice(&alias.to_be_bytes());
    }
    if let Some(seconds) = properties.will_delay_interval {
        out.extend_from_slice(&seconds.to_be_bytes());
    }
    if mask & SUBSCRIPTION_IDENTIFIERS != 0 {
        put_identifiers(out, &properties.subscription_identifiers);
    }
}

fn get_properties(reader: &mut Reader<'_>) -> Result<Properties, DecodeError> {
    let mask = reader.u16()?;
    if mask >= SUBSCRIPTION_IDENTIFIERS << 1 {
        return Err(format!("unknown properties in mask {mask:#06x}"));
    }
    let mut properties = Properties::EMPTY;
    if mask & PAYLOAD_FORMAT != 0 {
        properties.payload_format_indicator = Some(reader.u8()?);
    }
    if mask & MESSAGE_EXPIRY != 0 {
        properties.message_expiry_interval = Some(reader.u32()?);
    }
    if mask & CONTENT_TYPE != 0 {
        properties.content_type = Some(reader.string()?);
    }
    if mask & RESPONSE_TOPIC != 0 {
        properties.response_topic = Some(reader.string()?);
    }
    if mask & CORRELATION_DATA != 0 {
        properties.correlation_data = Some(reader.bytes()?);
    }
    if mask & USER_PROPERTIES != 0 {
        let count = reader.length()?;
        let mut pairs = Vec::with_capacity(count);
        for _ in 0..count {
            pairs.push((reader.string()?, reader.string()?));
        }
        properties.user_properties = pairs;
    }
    if mask & TOPIC_ALIAS != 0 {
        properties.topic_alias = Some(reader.u16()?);
    }
    if mask & WILL_DELAY != 0 {
        properties.will_delay_interval = Some(reader.u32()?);
    }
    if mask & SUBSCRIPTION_IDENTIFIERS != 0 {
        properties.subscription_identifiers = get_identifiers(reader)?;
    }
    Ok(properties)
}

fn put_identifiers(out: &mut Vec<u8>, identifiers: &[u32]) {
    put_varint(out, identifiers.len() as u64);
    for identifier in identifiers {
        put_varint(out, u64::from(*identifier));
    }
}

fn get_identifiers(reader: &mut Reader<'_>) -> Result<Vec<u32>, DecodeError> {
    let count = reader.length()?;
    let mut identifiers = Vec::with_capacity(count);
    for _ in 0..count {
        let identifier = reader.varint()?;
        let identifier = u32::try_from(identifier)
            .map_err(|_| format!("subscription identifier {identifier} out of range"))?;
        identifiers.push(identifier);
    }
    Ok(identifiers)
}

// The flags byte of a message.
const QOS_BITS: u8 = 0b11;
const RETAIN: u8 = 1 << 2;
const HAS_EXPIRY: u8 = 1 << 3;
const HAS_PROPERTIES: u8 = 1 << 4;

/// A message or will as stored: what a PUBLISH carries, and when it expires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct StoredValue {
    pub(super) qos: QoS,
    pub(super) retain: bool,
    /// Unix milliseconds.
    pub(super) expires_at: Option<u64>,
    pub(super) properties: Properties,
    /// Empty where the topic is the table's key.
    pub(super) topic: ByteStr,
    pub(super) payload: Bytes,
}

impl StoredValue {
    /// The message as a PUBLISH without a packet identifier.
    pub(super) fn into_publish(self) -> PublishPacket {
        PublishPacket {
            dup: false,
            qos: self.qos,
            retain: self.retain,
            topic: self.topic,
            packet_id: None,
            properties: self.properties,
            payload: self.payload,
        }
    }

    pub(super) fn into_will(self) -> Will {
        Will {
            topic: self.topic,
            payload: self.payload,
            qos: self.qos,
            retain: self.retain,
            properties: self.properties,
        }
    }
}

/// The parts of a message to encode.
pub(super) struct MessageParts<'a> {
    pub(super) qos: QoS,
    pub(super) retain: bool,
    /// Unix milliseconds.
    pub(super) expires_at: Option<u64>,
    /// `None` for none at all.
    pub(super) properties: Option<&'a Properties>,
    /// Whether the subscription identifiers are stored: not for a message that entries refer
    /// to, since each entry carries its own.
    pub(super) identifiers: bool,
    /// `None` where the topic is the table's key.
    pub(super) topic: Option<&'a str>,
    pub(super) payload: &'a [u8],
}

impl<'a> MessageParts<'a> {
    pub(super) fn publish(publish: &'a PublishPacket, expires_at: Option<u64>) -> Self {
        MessageParts {
            qos: publish.qos,
            retain: publish.retain,
            expires_at,
            properties: Some(&publish.properties),
            identifiers: true,
            topic: Some(&publish.topic),
            payload: &publish.payload,
        }
    }

    pub(super) fn kept(publish: &'a broker_core::KeptPublish, expires_at: Option<u64>) -> Self {
        MessageParts {
            qos: publish.qos,
            retain: publish.retain,
            expires_at,
            properties: publish.properties.as_deref(),
            identifiers: true,
            topic: Some(&publish.topic),
            payload: &publish.payload,
        }
    }

    pub(super) fn will(will: &'a Will) -> Self {
        MessageParts {
            qos: will.qos,
            retain: will.retain,
            expires_at: None,
            properties: Some(&will.properties),
            identifiers: true,
            topic: Some(&will.topic),
            payload: &will.payload,
        }
    }
}

/// `flags`, `[expires_at u64]`, `[properties]`, `[topic]`, then the payload to the end.
pub(super) fn encode_message(message: &MessageParts<'_>, out: &mut Vec<u8>) {
    let mask = message.properties.map_or(0, |properties| {
        properties_mask(properties, message.identifiers)
    });
    let mut flags = message.qos as u8;
    if message.retain {
        flags |= RETAIN;
    }
    if message.expires_at.is_some() {
        flags |= HAS_EXPIRY;
    }
    if mask != 0 {
        flags |= HAS_PROPERTIES;
    }
    out.push(flags);
    if let Some(at) = message.expires_at {
        out.extend_from_slice(&at.to_be_bytes());
    }
    if let Some(properties) = message.properties.filter(|_| mask != 0) {
        put_properties(out, properties, mask);
    }
    if let Some(topic) = message.topic {
        put_bytes(out, topic.as_bytes());
    }
    out.extend_from_slice(message.payload);
}

/// Decodes a message; `with_topic` says whether the value holds its topic.
pub(super) fn decode_message(bytes: &[u8], with_topic: bool) -> Result<StoredValue, DecodeError> {
    let mut reader = Reader::new(bytes);
    let flags = reader.u8()?;
    if flags & !(QOS_BITS | RETAIN | HAS_EXPIRY | HAS_PROPERTIES) != 0 {
        return Err(format!("unknown message flags {flags:#04x}"));
    }
    let qos = qos_from_bits(flags & QOS_BITS)?;
    let expires_at = if flags & HAS_EXPIRY != 0 {
        Some(reader.u64()?)
    } else {
        None
    };
    let properties = if flags & HAS_PROPERTIES != 0 {
        get_properties(&mut reader)?
    } else {
        Properties::EMPTY
    };
    let topic = if with_topic {
        reader.string()?
    } else {
        ByteStr::new()
    };
    Ok(StoredValue {
        qos,
        retain: flags & RETAIN != 0,
        expires_at,
        properties,
        topic,
        payload: Bytes::copy_from_slice(reader.rest()),
    })
}

// The flags byte of a session.
const CONNECTED: u8 = 1 << 0;
const SESSION_EXPIRES: u8 = 1 << 1;
const HAS_WILL: u8 = 1 << 2;
const WILL_DUE: u8 = 1 << 3;

/// A persistent session's own fields, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct SessionValue {
    pub(super) client_id: ByteStr,
    pub(super) protocol: ProtocolVersion,
    pub(super) expiry_interval: u32,
    pub(super) connected: bool,
    /// Unix milliseconds.
    pub(super) expires_at: Option<u64>,
    pub(super) will: Option<Will>,
    /// When a waiting will is due, unix milliseconds.
    pub(super) will_at: Option<u64>,
}

/// `level u8`, `expiry interval u32`, `flags`, `[expires_at u64]`, `[will_at u64]`, client id,
/// then the will (a message with its topic) to the end.
pub(super) fn encode_session(session: &SessionValue, out: &mut Vec<u8>) {
    out.push(session.protocol.level());
    out.extend_from_slice(&session.expiry_interval.to_be_bytes());
    let mut flags = 0;
    if session.connected {
        flags |= CONNECTED;
    }
    if session.expires_at.is_some() {
        flags |= SESSION_EXPIRES;
    }
    if session.will.is_some() {
        flags |= HAS_WILL;
    }
    if session.will_at.is_some() {
        flags |= WILL_DUE;
    }
    out.push(flags);
    for at in [session.expires_at, session.will_at].into_iter().flatten() {
        out.extend_from_slice(&at.to_be_bytes());
    }
    put_bytes(out, session.client_id.as_bytes());
    if let Some(will) = &session.will {
        encode_message(&MessageParts::will(will), out);
    }
}

pub(super) fn decode_session(bytes: &[u8]) -> Result<SessionValue, DecodeError> {
    let mut reader = Reader::new(bytes);
    let protocol = protocol_from_level(reader.u8()?)?;
    let expiry_interval = reader.u32()?;
    let flags = reader.u8()?;
    if flags & !(CONNECTED | SESSION_EXPIRES | HAS_WILL | WILL_DUE) != 0 {
        return Err(format!("unknown session flags {flags:#04x}"));
    }
    let expires_at = if flags & SESSION_EXPIRES != 0 {
        Some(reader.u64()?)
    } else {
        None
    };
    let will_at = if flags & WILL_DUE != 0 {
        Some(reader.u64()?)
    } else {
        None
    };
    let client_id = reader.string()?;
    let will = if flags & HAS_WILL != 0 {
        Some(decode_message(reader.rest(), true)?.into_will())
    } else {
        reader.finish()?;
        None
    };
    Ok(SessionValue {
        client_id,
        protocol,
        expiry_interval,
        connected: flags & CONNECTED != 0,
        expires_at,
        will,
        will_at,
    })
}

/// Subscription options as one byte, as in a v5 SUBSCRIBE.
pub(crate) fn options_byte(options: SubscriptionOptions) -> u8 {
    let retain_handling = match options.retain_handling {
        RetainHandling::SendAtSubscribe => 0,
        RetainHandling::SendIfNew => 1,
        RetainHandling::DoNotSend => 2,
    };
    options.qos as u8
        | u8::from(options.no_local) << 2
        | u8::from(options.retain_as_published) << 3
        | retain_handling << 4
}

/// The options of [`options_byte`]'s byte.
pub(crate) fn options_from_byte(byte: u8) -> Result<SubscriptionOptions, DecodeError> {
    if byte & 0b1100_0000 != 0 {
        return Err(format!("invalid subscription options {byte:#04x}"));
    }
    Ok(SubscriptionOptions {
        qos: qos_from_bits(byte & 0b11)?,
        no_local: byte & 0b100 != 0,
        retain_as_published: byte & 0b1000 != 0,
        retain_handling: match (byte >> 4) & 0b11 {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendIfNew,
            2 => RetainHandling::DoNotSend,
            _ => return Err("invalid retain handling".into()),
        },
    })
}

/// `options u8`, `identifier u32` (0: none; a real one is at least 1).
pub(super) fn encode_subscription(
    options: SubscriptionOptions,
    identifier: Option<u32>,
    out: &mut Vec<u8>,
) {
    out.push(options_byte(options));
    out.extend_from_slice(&identifier.unwrap_or(0).to_be_bytes());
}

pub(super) fn decode_subscription(
    bytes: &[u8],
) -> Result<(SubscriptionOptions, Option<u32>), DecodeError> {
    let mut reader = Reader::new(bytes);
    let options = options_from_byte(reader.u8()?)?;
    let identifier = Some(reader.u32()?).filter(|id| *id != 0);
    reader.finish()?;
    Ok((options, identifier))
}

// The flags byte of an entry.
const RELEASED: u8 = 1 << 3;

/// A message in a session's queue or in flight, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct EntryValue {
    /// The id of its message in the `messages` table.
    pub(super) message: u64,
    pub(super) qos: QoS,
    pub(super) retain: bool,
    /// Its packet identifier; 0 while it is queued.
    pub(super) packet_id: u16,
    /// PUBREC received (in flight at QoS 2 only).
    pub(super) released: bool,
    pub(super) identifiers: Vec<u32>,
}

/// `message u64`, `flags`, `packet id u16`, then the subscription identifiers.
pub(super) fn encode_entry(entry: &EntryValue, out: &mut Vec<u8>) {
    out.extend_from_slice(&entry.message.to_be_bytes());
    let mut flags = entry.qos as u8;
    if entry.retain {
        flags |= RETAIN;
    }
    if entry.released {
        flags |= RELEASED;
    }
    out.push(flags);
    out.extend_from_slice(&entry.packet_id.to_be_bytes());
    put_identifiers(out, &entry.identifiers);
}

pub(super) fn decode_entry(bytes: &[u8]) -> Result<EntryValue, DecodeError> {
    let mut reader = Reader::new(bytes);
    let message = reader.u64()?;
    let flags = reader.u8()?;
    if flags & !(QOS_BITS | RETAIN | RELEASED) != 0 {
        return Err(format!("unknown entry flags {flags:#04x}"));
    }
    let packet_id = reader.u16()?;
    let identifiers = get_identifiers(&mut reader)?;
    reader.finish()?;
    Ok(EntryValue {
        message,
        qos: qos_from_bits(flags & QOS_BITS)?,
        retain: flags & RETAIN != 0,
        packet_id,
        released: flags & RELEASED != 0,
        identifiers,
    })
}

/// The message id of an entry, without decoding the rest (the reference counts need only it).
pub(super) fn entry_message(bytes: &[u8]) -> Result<u64, DecodeError> {
    Reader::new(bytes).u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_property() -> Properties {
        Properties {
            payload_format_indicator: Some(1),
            message_expiry_interval: Some(60),
            content_type: Some(ByteStr::from("application/json")),
            response_topic: Some(ByteStr::from("reply/to")),
            correlation_data: Some(Bytes::from_static(b"\x00\xff")),
            subscription_identifiers: vec![1, 268_435_455],
            user_properties: vec![
                (ByteStr::from("k"), ByteStr::from("v")),
                (ByteStr::from("k"), ByteStr::from("again")),
            ],
            topic_alias: Some(3),
            will_delay_interval: Some(30),
            ..Properties::EMPTY
        }
    }

    fn encoded_message(properties: &Properties, identifiers: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let parts = MessageParts {
            qos: QoS::ExactlyOnce,
            retain: true,
            expires_at: Some(1_800_000_000_000),
            properties: Some(properties),
            identifiers,
            topic: Some("a/b"),
            payload: b"payload",
        };
        encode_message(&parts, &mut out);
        out
    }

    #[test]
    fn a_message_keeps_every_property_a_publish_or_will_carries() {
        let properties = every_property();
        let decoded = decode_message(&encoded_message(&properties, true), true).unwrap();
        assert_eq!(
            decoded,
            StoredValue {
                qos: QoS::ExactlyOnce,
                retain: true,
                expires_at: Some(1_800_000_000_000),
                properties,
                topic: ByteStr::from("a/b"),
                payload: Bytes::from_static(b"payload"),
            }
        );
    }

    #[test]
    fn a_message_without_identifiers_leaves_them_out() {
        let properties = Properties {
            subscription_identifiers: vec![7],
            ..Properties::EMPTY
        };
        let encoded = encoded_message(&properties, false);
        let decoded = decode_message(&encoded, true).unwrap();
        assert_eq!(decoded.properties, Properties::EMPTY);
        // No properties at all: not even the mask is written.
        assert_eq!(encoded.len(), 1 + 8 + 1 + 3 + 7);
    }

    #[test]
    fn truncated_or_foreign_values_are_errors_not_panics() {
        let message = encoded_message(&every_property(), true);
        // A message's payload runs to the end, so only cuts before it can be detected.
        let payload_start = message.len() - b"payload".len();
        for cut in 0..payload_start {
            assert!(
                decode_message(&message[..cut], true).is_err(),
                "cut at {cut}"
            );
        }
        let session = SessionValue {
            client_id: ByteStr::from("client"),
            protocol: ProtocolVersion::V5,
            expiry_interval: 60,
            connected: false,
            expires_at: Some(1),
            will: None,
            will_at: Some(2),
        };
        let mut encoded = Vec::new();
        encode_session(&session, &mut encoded);
        assert_eq!(decode_session(&encoded).unwrap(), session);
        for cut in 0..encoded.len() {
            assert!(decode_session(&encoded[..cut]).is_err(), "cut at {cut}");
        }
        let entry = EntryValue {
            message: 9,
            qos: QoS::AtLeastOnce,
            retain: false,
            packet_id: 4,
            released: true,
            identifiers: vec![300, 1],
        };
        let mut encoded = Vec::new();
        encode_entry(&entry, &mut encoded);
        assert_eq!(decode_entry(&encoded).unwrap(), entry);
        for cut in 0..encoded.len() {
            assert!(decode_entry(&encoded[..cut]).is_err(), "cut at {cut}");
        }
        // Flags this version never writes.
        assert!(decode_message(&[0xff], false).is_err());
        assert!(decode_entry(&[0, 0, 0, 0, 0, 0, 0, 1, 0x80, 0, 0, 0]).is_err());
        // A length longer than the value.
        assert!(decode_session(&[5, 0, 0, 0, 0, 0, 0xff, 0x7f]).is_err());
    }

    #[test]
    fn subscription_options_round_trip() {
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            for retain_handling in [
                RetainHandling::SendAtSubscribe,
                RetainHandling::SendIfNew,
                RetainHandling::DoNotSend,
            ] {
                for (no_local, retain_as_published) in
                    [(false, false), (true, false), (false, true), (true, true)]
                {
                    let options = SubscriptionOptions {
                        qos,
                        no_local,
                        retain_as_published,
                        retain_handling,
                    };
                    let mut encoded = Vec::new();
                    encode_subscription(options, Some(5), &mut encoded);
                    assert_eq!(decode_subscription(&encoded).unwrap(), (options, Some(5)));
                }
            }
        }
    }
}
