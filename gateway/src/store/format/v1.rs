//! Layout version 1, read only to migrate it: the store as the gateway wrote it before change
//! records, a whole snapshot every autosave interval.
//!
//! Tables: `retained` (topic → message), `sessions` (client id → the whole session) and `meta`
//! (`format` = 1, `saved_at_unix_ms`: when the snapshot was written). A message is its time
//! left (milliseconds, `u64::MAX` for none) then its PUBLISH packet as MQTT 5.0 encodes it,
//! behind a `u32` length; integers are big-endian and strings `u32`-length-prefixed. Times are
//! durations left at `saved_at`.

use bytes::{Buf, Bytes, BytesMut};
use mqtt_codec::{
    ByteStr, Packet, ProtocolVersion, PublishPacket, RetainHandling, SubscriptionOptions, Will,
    decode,
};
use redb::TableDefinition;
use std::time::Duration;

use super::{DecodeError, qos_from_bits};

/// The version-1 tables; `retained` and `meta` keep their names in version 2.
pub(in crate::store) const RETAINED: TableDefinition<&str, &[u8]> =
    TableDefinition::new("retained");
pub(in crate::store) const SESSIONS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("sessions");
/// The `meta` key of the time the snapshot was written, unix milliseconds.
pub(in crate::store) const SAVED_AT: &str = "saved_at_unix_ms";

/// A duration that is absent (no expiry).
const NO_EXPIRY: u64 = u64::MAX;

/// A message with the time it had left at `saved_at`.
#[derive(Debug)]
pub(in crate::store) struct Message {
    pub(in crate::store) publish: PublishPacket,
    pub(in crate::store) expires_in: Option<Duration>,
}

/// One subscription of a session.
#[derive(Debug)]
pub(in crate::store) struct Subscription {
    pub(in crate::store) filter: ByteStr,
    pub(in crate::store) options: SubscriptionOptions,
    pub(in crate::store) identifier: Option<u32>,
}

/// A message in flight.
#[derive(Debug)]
pub(in crate::store) struct Inflight {
    pub(in crate::store) packet_id: u16,
    pub(in crate::store) released: bool,
    pub(in crate::store) message: Message,
}

/// A session as version 1 stored it (its client id is the key).
#[derive(Debug)]
pub(in crate::store) struct Session {
    pub(in crate::store) protocol: ProtocolVersion,
    pub(in crate::store) expiry_interval: u32,
    pub(in crate::store) expires_in: Option<Duration>,
    pub(in crate::store) subscriptions: Vec<Subscription>,
    pub(in crate::store) inflight: Vec<Inflight>,
    pub(in crate::store) queue: Vec<Message>,
    pub(in crate::store) inbound_qos2: Vec<u16>,
    pub(in crate::store) pending_will: Option<(Will, Duration)>,
}

fn need(buf: &Bytes, count: usize) -> Result<(), DecodeError> {
    if buf.remaining() < count {
        return Err(format!(
            "truncated: {count} bytes needed, {} left",
            buf.remaining()
        ));
    }
    Ok(())
}

fn get_u8(buf: &mut Bytes) -> Result<u8, DecodeError> {
    need(buf, 1)?;
    Ok(buf.get_u8())
}

fn get_u16(buf: &mut Bytes) -> Result<u16, DecodeError> {
    need(buf, 2)?;
    Ok(buf.get_u16())
}

fn get_u32(buf: &mut Bytes) -> Result<u32, DecodeError> {
    need(buf, 4)?;
    Ok(buf.get_u32())
}

fn get_u64(buf: &mut Bytes) -> Result<u64, DecodeError> {
    need(buf, 8)?;
    Ok(buf.get_u64())
}

fn get_duration(buf: &mut Bytes) -> Result<Option<Duration>, DecodeError> {
    let millis = get_u64(buf)?;
    Ok((millis != NO_EXPIRY).then(|| Duration::from_millis(millis)))
}

fn get_str(buf: &mut Bytes) -> Result<ByteStr, DecodeError> {
    let len = get_u32(buf)? as usize;
    need(buf, len)?;
    ByteStr::from_utf8(buf.split_to(len)).map_err(|e| e.to_string())
}

/// A count that cannot exceed the bytes left (each item takes at least one), so that a corrupt
/// one cannot make the decoder loop for long.
fn get_count(buf: &mut Bytes) -> Result<u32, DecodeError> {
    let count = get_u32(buf)?;
    need(buf, count as usize)?;
    Ok(count)
}

/// A message: time left, then the PUBLISH packet as MQTT 5.0 encodes it.
pub(in crate::store) fn decode_message(buf: &mut Bytes) -> Result<Message, DecodeError> {
    let expires_in = get_duration(buf)?;
    let len = get_u32(buf)? as usize;
    need(buf, len)?;
    let mut packet = BytesMut::from(&buf.split_to(len)[..]);
    match decode(&mut packet, ProtocolVersion::V5, usize::MAX) {
        Ok(Some(Packet::Publish(mut publish))) => {
            // Version 1 stored a placeholder identifier, which the codec requires for QoS > 0.
            publish.packet_id = None;
            Ok(Message {
                publish,
                expires_in,
            })
        }
        Ok(other) => Err(format!("expected a PUBLISH, found {other:?}")),
        Err(error) => Err(error.to_string()),
    }
}

fn options_from_byte(byte: u8) -> Result<SubscriptionOptions, DecodeError> {
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

pub(in crate::store) fn decode_session(buf: &mut Bytes) -> Result<Session, DecodeError> {
    let protocol = super::protocol_from_level(get_u8(buf)?)?;
    let expiry_interval = get_u32(buf)?;
    let expires_in = get_duration(buf)?;
    // The next packet identifier to try: version 2 derives it from the messages in flight.
    let _next_packet_id = get_u16(buf)?;
    let mut subscriptions = Vec::new();
    for _ in 0..get_count(buf)? {
        let filter = get_str(buf)?;
        let options = options_from_byte(get_u8(buf)?)?;
        let identifier = Some(get_u32(buf)?).filter(|id| *id != 0);
        subscriptions.push(Subscription {
            filter,
            options,
            identifier,
        });
    }
    let mut inflight = Vec::new();
    for _ in 0..get_count(buf)? {
        let packet_id = get_u16(buf)?;
        let released = get_u8(buf)? != 0;
        let message = decode_message(buf)?;
        inflight.push(Inflight {
            packet_id,
            released,
            message,
        });
    }
    let mut queue = Vec::new();
    for _ in 0..get_count(buf)? {
        queue.push(decode_message(buf)?);
    }
    let mut inbound_qos2 = Vec::new();
    for _ in 0..get_count(buf)? {
        inbound_qos2.push(get_u16(buf)?);
    }
    let pending_will = match get_u8(buf)? {
        0 => None,
        _ => {
            let left = get_duration(buf)?.unwrap_or_default();
            // A will was stored as the message it would become.
            let publish = decode_message(buf)?.publish;
            Some((
                Will {
                    topic: publish.topic,
                    payload: publish.payload,
                    qos: publish.qos,
                    retain: publish.retain,
                    properties: publish.properties,
                },
                left,
            ))
        }
    };
    if buf.has_remaining() {
        return Err(format!("{} unexpected trailing bytes", buf.remaining()));
    }
    Ok(Session {
        protocol,
        expiry_interval,
        expires_in,
        subscriptions,
        inflight,
        queue,
        inbound_qos2,
        pending_will,
    })
}
