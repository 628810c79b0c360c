//! The embedded store: retained messages and persistent sessions in a redb database under
//! `--data-dir`, so they survive a restart.
//!
//! The broker task takes a snapshot every autosave interval and at shutdown; the store task
//! encodes it off the broker's thread and writes, in one transaction, only the entries whose
//! bytes changed since the last write. Messages are stored as MQTT 5.0 PUBLISH packets (so every
//! property survives) behind a small versioned header.
//!
//! Invariant: `written` mirrors the database: a key is in it exactly when the table holds it,
//! with the hash of the stored bytes.

use broker_core::{Snapshot, StoredInflight, StoredMessage, StoredSession, StoredSubscription};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use mqtt_codec::{
    ByteStr, Packet, ProtocolVersion, PublishPacket, QoS, RetainHandling, SubscriptionOptions,
    Will, decode, encode,
};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use thiserror::Error;
use tokio::sync::mpsc;
use tracing::{error, info};

const RETAINED: TableDefinition<&str, &[u8]> = TableDefinition::new("retained");
const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const SAVED_AT: &str = "saved_at_unix_ms";
const FORMAT_KEY: &str = "format";
/// Version of the value encoding below; a store written by another version is refused.
const FORMAT: u64 = 1;
const NO_EXPIRY: u64 = u64::MAX;

/// Why the store could not be opened, read or written.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The database file could not be opened (missing permissions, locked by another gateway).
    #[error("cannot open store {path}: {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// What redb said.
        source: Box<redb::DatabaseError>,
    },
    /// A read or write failed.
    #[error("store operation failed: {0}")]
    Database(String),
    /// The file holds data this version cannot read.
    #[error("store entry {key:?} is corrupt or from another version: {detail}")]
    Corrupt {
        /// The entry's key.
        key: String,
        /// What was wrong.
        detail: String,
    },
}

fn database_error(error: impl std::fmt::Display) -> StoreError {
    StoreError::Database(error.to_string())
}

/// The database and what was last written to it.
#[derive(Debug)]
pub(crate) struct Store {
    database: Database,
    written: HashMap<(&'static str, String), u64>,
}

impl Store {
    /// Opens (or creates) `gateway.redb` in `directory`.
    pub(crate) fn open(directory: &Path) -> Result<Store, StoreError> {
        let path = directory.join("gateway.redb");
        let database = Database::create(&path).map_err(|source| StoreError::Open {
            path: path.clone(),
            source: Box::new(source),
        })?;
        Ok(Store {
            database,
            written: HashMap::new(),
        })
    }

    /// Reads the last snapshot, aged by the time the gateway was down.
    pub(crate) fn load(&mut self) -> Result<Snapshot, StoreError> {
        let read = self.database.begin_read().map_err(database_error)?;
        let mut snapshot = Snapshot::default();
        let saved_at = match read.open_table(META) {
            Ok(meta) => {
                let format = meta
                    .get(FORMAT_KEY)
                    .map_err(database_error)?
                    .map(|v| v.value());
                if format.is_some_and(|f| f != FORMAT) {
                    return Err(StoreError::Corrupt {
                        key: FORMAT_KEY.into(),
                        detail: format!("format {format:?}, this gateway reads {FORMAT}"),
                    });
                }
                meta.get(SAVED_AT)
                    .map_err(database_error)?
                    .map(|v| v.value())
            }
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(snapshot),
            Err(error) => return Err(database_error(error)),
        };
        for (table, is_session) in [(RETAINED, false), (SESSIONS, true)] {
            let table = match read.open_table(table) {
                Ok(table) => table,
                Err(redb::TableError::TableDoesNotExist(_)) => continue,
                Err(error) => return Err(database_error(error)),
            };
            for entry in table.iter().map_err(database_error)? {
                let (key, value) = entry.map_err(database_error)?;
                let key = key.value().to_string();
                let bytes = value.value();
                self.written.insert(
                    (
                        if is_session { "sessions" } else { "retained" },
                        key.clone(),
                    ),
                    hash(bytes),
                );
                let corrupt = |detail: String| StoreError::Corrupt {
                    key: key.clone(),
                    detail,
                };
                let mut buf = Bytes::copy_from_slice(bytes);
                if is_session {
                    let mut session = decode_session(&mut buf).map_err(corrupt)?;
                    session.client_id = ByteStr::from(key.as_str());
                    snapshot.sessions.push(session);
                } else {
                    snapshot
                        .retained
                        .push(decode_message(&mut buf).map_err(corrupt)?);
                }
            }
        }
        let elapsed = saved_at
            .map(|at| unix_millis().saturating_sub(at))
            .map_or(Duration::ZERO, Duration::from_millis);
        info!(
            "store: loaded {} retained messages and {} sessions",
            snapshot.retained.len(),
            snapshot.sessions.len()
        );
        Ok(snapshot.aged(elapsed))
    }

    /// Writes the entries of `snapshot` that changed, and deletes those that are gone.
    pub(crate) fn save(&mut self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let mut fresh: HashMap<(&'static str, String), Vec<u8>> = HashMap::new();
        for message in &snapshot.retained {
            let mut buf = BytesMut::new();
            encode_message(message, &mut buf);
            fresh.insert(
                ("retained", message.publish.topic.to_string()),
                buf.to_vec(),
            );
        }
        for session in &snapshot.sessions {
            let mut buf = BytesMut::new();
            encode_session(session, &mut buf);
            fresh.insert(("sessions", session.client_id.to_string()), buf.to_vec());
        }
        let changed: Vec<(&(&'static str, String), &Vec<u8>)> = fresh
            .iter()
            .filter(|(key, bytes)| self.written.get(*key) != Some(&hash(bytes)))
            .collect();
        let removed: Vec<(&'static str, String)> = self
            .written
            .keys()
            .filter(|key| !fresh.contains_key(*key))
            .cloned()
            .collect();
        if changed.is_empty() && removed.is_empty() {
            return Ok(());
        }

        let write = self.database.begin_write().map_err(database_error)?;
        {
            let mut retained = write.open_table(RETAINED).map_err(database_error)?;
            let mut sessions = write.open_table(SESSIONS).map_err(database_error)?;
            let mut meta = write.open_table(META).map_err(database_error)?;
            for ((table, key), bytes) in &changed {
                let table = if *table == "retained" {
                    &mut retained
                } else {
                    &mut sessions
                };
                table
                    .insert(key.as_str(), bytes.as_slice())
                    .map_err(database_error)?;
            }
            for (table, key) in &removed {
                let table = if *table == "retained" {
                    &mut retained
                } else {
                    &mut sessions
                };
                table.remove(key.as_str()).map_err(database_error)?;
            }
            meta.insert(SAVED_AT, unix_millis())
                .map_err(database_error)?;
            meta.insert(FORMAT_KEY, FORMAT).map_err(database_error)?;
        }
        write.commit().map_err(database_error)?;
        for key in removed {
            self.written.remove(&key);
        }
        for (key, bytes) in fresh {
            self.written.insert(key, hash(&bytes));
        }
        Ok(())
    }
}

/// Writes every snapshot received until the channel closes; the last one is the shutdown
/// snapshot, so returning means everything is on disk.
pub(crate) fn run(mut store: Store, mut snapshots: mpsc::Receiver<Snapshot>) {
    while let Some(snapshot) = snapshots.blocking_recv() {
        if let Err(error) = store.save(&snapshot) {
            // Logged each time: a store that cannot write loses data on the next restart.
            error!("store: {error}");
        }
    }
}

fn hash(bytes: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

// ----- Value encoding ---------------------------------------------------------------------

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
fn encode_message(message: &StoredMessage, buf: &mut BytesMut) {
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

fn decode_message(buf: &mut Bytes) -> Result<StoredMessage, String> {
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

fn encode_session(session: &StoredSession, buf: &mut BytesMut) {
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

fn decode_session(buf: &mut Bytes) -> Result<StoredSession, String> {
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
mod tests {
    use super::*;
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

    fn snapshot() -> Snapshot {
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

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("gateway-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn snapshot_survives_a_reopen() {
        let dir = temp_dir("reopen");
        let original = snapshot();
        {
            let mut store = Store::open(&dir).unwrap();
            store.save(&original).unwrap();
        }
        let mut store = Store::open(&dir).unwrap();
        let loaded = store.load().unwrap();
        assert_eq!(loaded.retained.len(), 1);
        assert_eq!(loaded.retained[0].publish, original.retained[0].publish);
        let session = &loaded.sessions[0];
        let expected = &original.sessions[0];
        assert_eq!(session.client_id, expected.client_id);
        assert_eq!(session.subscriptions, expected.subscriptions);
        assert_eq!(session.inflight, expected.inflight);
        assert_eq!(session.queue, expected.queue);
        assert_eq!(session.inbound_qos2, expected.inbound_qos2);
        assert_eq!(session.next_packet_id, 43);
        assert_eq!(
            session.pending_will.as_ref().unwrap().0,
            expected.pending_will.as_ref().unwrap().0
        );
        // Loading ages the times by the (tiny) downtime, never lengthens them.
        assert!(session.expires_in.unwrap() <= Duration::from_secs(3000));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn removed_entries_are_deleted() {
        let dir = temp_dir("remove");
        let mut store = Store::open(&dir).unwrap();
        store.save(&snapshot()).unwrap();
        store.save(&Snapshot::default()).unwrap();
        drop(store);
        let loaded = Store::open(&dir).unwrap().load().unwrap();
        assert_eq!(loaded, Snapshot::default());
        std::fs::remove_dir_all(&dir).unwrap();
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
