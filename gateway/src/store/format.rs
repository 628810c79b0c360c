//! The encoding of stored values: a retained message, or a session with its subscriptions,
//! in-flight and queued messages and pending will. Keys (topic, client id) are the database's.
//!
//! A message is its time left, then its PUBLISH packet as MQTT 5.0 encodes it (so every property
//! survives, whatever version its publisher spoke), behind a length. Integers are big-endian,
//! strings and packets are length-prefixed, and an absent duration is [`NO_EXPIRY`]. Decoding
//! never panics on bad input: a truncated or foreign value is an error naming what was wrong,
//! which the store reports with the entry's key.
//!
//! Invariant: any change to this encoding bumps [`VERSION`].

use broker_core::{StoredInflight, StoredMessage, StoredSession, StoredSubscription};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use mqtt_codec::{
    ByteStr, Packet, ProtocolVersion, PublishPacket, QoS, RetainHandling, SubscriptionOptions,
    Will, decode, encode,
};
use std::time::Duration;

/// Version of this encoding; a store written by another version is refused.
pub(super) const VERSION: u64 = 1;

/// A duration that is absent (no expiry).
const NO_EXPIRY: u64 = u64::MAX;

fn put_duration(buf: &mut BytesMut, duration: Option<Duration>) {
    buf.put_u64(duration.map_or(NO_EXPIRY, |d| d.as_millis() as u64));
}

fn get_duration(buf: &mut Bytes) -> Result<Option<Duration>, String> {
    let millis = get_u64(buf)?;
    Ok((millis != NO_EXPIRY).then(|| Duration::from_millis(millis)))
}

fn need(buf: &Bytes, count: usize) -> Result<(), String> {
    if buf.remaining() < count {
        return Err(format!(
            "truncated: {count} bytes needed, {} left",
            buf.remaining()
        ));
    }
    Ok(())
}

fn get_u8(buf: &mut Bytes) -> Result<u8, String> {
    need(buf, 1)?;
    Ok(buf.get_u8())
}

fn get_u16(buf: &mut Bytes) -> Result<u16, String> {
    need(buf, 2)?;
    Ok(buf.get_u16())
}

fn get_u32(buf: &mut Bytes) -> Result<u32, String> {
    need(buf, 4)?;
    Ok(buf.get_u32())
}

fn get_u64(buf: &mut Bytes) -> Result<u64, String> {
    need(buf, 8)?;
    Ok(buf.get_u64())
}

fn put_str(buf: &mut BytesMut, text: &str) {
    buf.put_u32(text.len() as u32);
    buf.put_slice(text.as_bytes());
}

fn get_str(buf: &mut Bytes) -> Result<ByteStr, String> {
    let len = get_u32(buf)? as usize;
    need(buf, len)?;
    ByteStr::from_utf8(buf.split_to(len)).map_err(|e| e.to_string())
}

/// A message: time left, then the PUBLISH packet as MQTT 5.0 encodes it.
pub(super) fn encode_message(message: &StoredMessage, buf: &mut BytesMut) {
    put_duration(buf, message.expires_in);
    let mut publish = message.publish.clone();
    // The codec requires an identifier for QoS > 0; the stored one is a placeholder.
    publish.packet_id = (publish.qos != QoS::AtMostOnce).then_some(1);
    let mut packet = BytesMut::new();
    encode(&Packet::Publish(publish), ProtocolVersion::V5, &mut packet)
        .expect("a PUBLISH the broker accepted can be encoded");
    buf.put_u32(packet.len() as u32);
    buf.put_slice(&packet);
}

pub(super) fn decode_message(buf: &mut Bytes) -> Result<StoredMessage, String> {
    let expires_in = get_duration(buf)?;
    let len = get_u32(buf)? as usize;
    need(buf, len)?;
    let mut packet = BytesMut::from(&buf.split_to(len)[..]);
    match decode(&mut packet, ProtocolVersion::V5, usize::MAX) {
        Ok(Some(Packet::Publish(mut publish))) => {
            publish.packet_id = None;
            Ok(StoredMessage {
                publish,
                expires_in,
            })
        }
        Ok(other) => Err(format!("expected a PUBLISH, found {other:?}")),
        Err(error) => Err(error.to_string()),
    }
}

fn options_byte(options: SubscriptionOptions) -> u8 {
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

fn options_from_byte(byte: u8) -> Result<SubscriptionOptions, String> {
    Ok(SubscriptionOptions {
        qos: QoS::from_bits(byte & 0b11).ok_or("invalid QoS")?,
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

pub(super) fn encode_session(session: &StoredSession, buf: &mut BytesMut) {
    buf.put_u8(session.protocol.level());
    buf.put_u32(session.expiry_interval);
    put_duration(buf, session.expires_in);
    buf.put_u16(session.next_packet_id);
    buf.put_u32(session.subscriptions.len() as u32);
    for subscription in &session.subscriptions {
        put_str(buf, &subscription.filter);
        buf.put_u8(options_byte(subscription.options));
        buf.put_u32(subscription.identifier.unwrap_or(0));
    }
    buf.put_u32(session.inflight.len() as u32);
    for inflight in &session.inflight {
        buf.put_u16(inflight.packet_id);
        buf.put_u8(u8::from(inflight.released));
        encode_message(&inflight.message, buf);
    }
    buf.put_u32(session.queue.len() as u32);
    for message in &session.queue {
        encode_message(message, buf);
    }
    buf.put_u32(session.inbound_qos2.len() as u32);
    for id in &session.inbound_qos2 {
        buf.put_u16(*id);
    }
    match &session.pending_will {
        None => buf.put_u8(0),
        Some((will, left)) => {
            buf.put_u8(1);
            put_duration(buf, Some(*left));
            // A will is stored as the message it will become.
            let message = StoredMessage {
                publish: PublishPacket {
                    dup: false,
                    qos: will.qos,
                    retain: will.retain,
                    topic: will.topic.clone(),
                    packet_id: None,
                    properties: mqtt_codec::Properties {
                        will_delay_interval: None,
                        ..will.properties.clone()
                    },
                    payload: will.payload.clone(),
                },
                expires_in: None,
            };
            encode_message(&message, buf);
        }
    }
}

pub(super) fn decode_session(buf: &mut Bytes) -> Result<StoredSession, String> {
    let protocol = match get_u8(buf)? {
        3 => ProtocolVersion::V31,
        4 => ProtocolVersion::V311,
        5 => ProtocolVersion::V5,
        level => return Err(format!("unknown protocol level {level}")),
    };
    let expiry_interval = get_u32(buf)?;
    let expires_in = get_duration(buf)?;
    let next_packet_id = get_u16(buf)?;
    let mut subscriptions = Vec::new();
    for _ in 0..get_u32(buf)? {
        let filter = get_str(buf)?;
        let options = options_from_byte(get_u8(buf)?)?;
        let identifier = Some(get_u32(buf)?).filter(|id| *id != 0);
        subscriptions.push(StoredSubscription {
            filter,
            options,
            identifier,
        });
    }
    let mut inflight = Vec::new();
    for _ in 0..get_u32(buf)? {
        let packet_id = get_u16(buf)?;
        let released = get_u8(buf)? != 0;
        let message = decode_message(buf)?;
        inflight.push(StoredInflight {
            packet_id,
            message,
            released,
        });
    }
    let mut queue = Vec::new();
    for _ in 0..get_u32(buf)? {
        queue.push(decode_message(buf)?);
    }
    let mut inbound_qos2 = Vec::new();
    for _ in 0..get_u32(buf)? {
        inbound_qos2.push(get_u16(buf)?);
    }
    let pending_will = match get_u8(buf)? {
        0 => None,
        _ => {
            let left = get_duration(buf)?.unwrap_or_default();
            let message = decode_message(buf)?;
            let publish = message.publish;
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
    Ok(StoredSession {
        // The key of the entry; the caller fills it in.
        client_id: ByteStr::new(),
        protocol,
        expiry_interval,
        expires_in,
        subscriptions,
        inflight,
        queue,
        inbound_qos2,
        next_packet_id,
        pending_will,
    })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use broker_core::Snapshot;
    use mqtt_codec::Properties;

    fn message(topic: &str, qos: QoS, expires_in: Option<Duration>) -> StoredMessage {
        StoredMessage {
            publish: PublishPacket {
                dup: false,
                qos,
                retain: false,
                topic: ByteStr::from(topic),
                packet_id: None,
                properties: Properties {
                    user_properties: vec![(ByteStr::from("k"), ByteStr::from("v"))],
                    content_type: Some(ByteStr::from("application/json")),
                    ..Properties::default()
                },
                payload: Bytes::from_static(b"{\"temp\": 21.5}"),
            },
            expires_in,
        }
    }

    /// A snapshot using every part of the encoding.
    pub(in crate::store) fn snapshot() -> Snapshot {
        let mut retained = message("sensors/a", QoS::AtLeastOnce, Some(Duration::from_secs(60)));
        retained.publish.retain = true;
        Snapshot {
            retained: vec![retained],
            sessions: vec![StoredSession {
                client_id: ByteStr::from("device-1"),
                protocol: ProtocolVersion::V5,
                expiry_interval: 3600,
                expires_in: Some(Duration::from_secs(3000)),
                subscriptions: vec![StoredSubscription {
                    filter: ByteStr::from("$share/g/sensors/#"),
                    options: SubscriptionOptions {
                        qos: QoS::ExactlyOnce,
                        no_local: false,
                        retain_as_published: true,
                        retain_handling: RetainHandling::SendIfNew,
                    },
                    identifier: Some(7),
                }],
                inflight: vec![StoredInflight {
                    packet_id: 42,
                    message: message("sensors/b", QoS::ExactlyOnce, None),
                    released: true,
                }],
                queue: vec![message("sensors/c", QoS::AtLeastOnce, None)],
                inbound_qos2: vec![3, 9],
                next_packet_id: 43,
                pending_will: Some((
                    Will {
                        topic: ByteStr::from("status/device-1"),
                        payload: Bytes::from_static(b"offline"),
                        qos: QoS::AtLeastOnce,
                        retain: true,
                        properties: Properties::default(),
                    },
                    Duration::from_secs(5),
                )),
            }],
        }
    }

    #[test]
    fn truncated_values_are_reported_not_panicked_on() {
        let mut buf = BytesMut::new();
        encode_session(&snapshot().sessions[0], &mut buf);
        for cut in 0..buf.len() {
            let mut bytes = Bytes::copy_from_slice(&buf[..cut]);
            assert!(decode_session(&mut bytes).is_err(), "cut at {cut}");
        }
    }
}
