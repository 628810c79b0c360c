//! Migration of a layout-version-1 store (one whole snapshot) to the current layout, in the
//! caller's write transaction: the file holds either layout, never a mix.
//!
//! Version 1 kept times as durations left when the snapshot was saved (`saved_at`); they
//! become absolute times from `saved_at`, which ages them by the downtime just as version 1's
//! loader did. Sessions get ids in client id order, their entries numbers in send order (in
//! flight first, then queued), and each message its own id (version 1 kept a copy per session
//! anyway). Retained `$` topics (`$SYS`) are left behind: the core publishes them afresh.

use super::format::v1;
use super::format::{self, EntryValue, MessageParts, SessionValue};
use super::{ENTRIES, Failure, INBOUND, MESSAGES, META, RETAINED, SESSIONS, SUBSCRIPTIONS};
use super::{FORMAT_KEY, corrupt, create_tables, millis};
use bytes::Bytes;
use redb::{ReadableTable, TableError, WriteTransaction};
use std::time::Duration;

/// What was migrated.
#[derive(Debug)]
pub(super) struct Migrated {
    pub(super) sessions: usize,
    pub(super) retained: usize,
}

/// Rewrites the version-1 tables in the current layout; `now` stands in for a missing
/// `saved_at`.
pub(super) fn from_v1(write: &WriteTransaction, now: u64) -> Result<Migrated, Failure> {
    let saved_at = write
        .open_table(META)?
        .get(v1::SAVED_AT)?
        .map_or(now, |at| at.value());
    let at = |left: Option<Duration>| left.map(|left| saved_at.saturating_add(millis(left)));

    let mut retained = Vec::new();
    for (topic, bytes) in read_v1(write, v1::RETAINED)? {
        // Version 1 saved the `$SYS` topics too. The core publishes them afresh at every start
        // and never records them, so a migrated copy would stay in the store, stale, for good.
        if topic.starts_with('$') {
            continue;
        }
        let message =
            v1::decode_message(&mut Bytes::from(bytes)).map_err(corrupt("retained", &topic))?;
        retained.push((topic, message));
    }
    let mut sessions = Vec::new();
    for (client_id, bytes) in read_v1(write, v1::SESSIONS)? {
        let session =
            v1::decode_session(&mut Bytes::from(bytes)).map_err(corrupt("sessions", &client_id))?;
        sessions.push((client_id, session));
    }
    write.delete_table(v1::RETAINED)?;
    write.delete_table(v1::SESSIONS)?;
    write.open_table(META)?.remove(v1::SAVED_AT)?;
    create_tables(write)?;

    let mut buffer = Vec::new();
    let mut retained_table = write.open_table(RETAINED)?;
    for (topic, message) in &retained {
        buffer.clear();
        let mut parts = MessageParts::publish(&message.publish, at(message.expires_in));
        parts.topic = None;
        format::encode_message(&parts, &mut buffer);
        retained_table.insert(topic.as_str(), buffer.as_slice())?;
    }

    let mut session_table = write.open_table(SESSIONS)?;
    let mut subscriptions = write.open_table(SUBSCRIPTIONS)?;
    let mut messages = write.open_table(MESSAGES)?;
    let mut entries = write.open_table(ENTRIES)?;
    let mut inbound = write.open_table(INBOUND)?;
    let mut message_id = 0;
    // Version 1's table iterated in client id order: so are the ids.
    for (id, (client_id, session)) in (1u64..).zip(&sessions) {
        let (will, will_at) = match &session.pending_will {
            Some((will, left)) => (Some(will.clone()), at(Some(*left))),
            None => (None, None),
        };
        let value = SessionValue {
            client_id: client_id.as_str().into(),
            protocol: session.protocol,
            expiry_interval: session.expiry_interval,
            // Version 1 saved at shutdown, after the clients were gone, and gave a connected
            // session its whole interval as time left: either way it counts from `saved_at`.
            connected: false,
            expires_at: at(session.expires_in),
            will,
            will_at,
        };
        buffer.clear();
        format::encode_session(&value, &mut buffer);
        session_table.insert(id, buffer.as_slice())?;

        for subscription in &session.subscriptions {
            buffer.clear();
            format::encode_subscription(subscription.options, subscription.identifier, &mut buffer);
            subscriptions.insert((id, subscription.filter.as_str()), buffer.as_slice())?;
        }

        let inflight = session
            .inflight
            .iter()
            .map(|m| (&m.message, m.packet_id, m.released));
        let queued = session.queue.iter().map(|message| (message, 0, false));
        for (entry, (message, packet_id, released)) in (1u64..).zip(inflight.chain(queued)) {
            message_id += 1;
            let publish = &message.publish;
            let mut parts = MessageParts::publish(publish, at(message.expires_in));
            parts.identifiers = false;
            buffer.clear();
            format::encode_message(&parts, &mut buffer);
            messages.insert(message_id, buffer.as_slice())?;
            let value = EntryValue {
                message: message_id,
                qos: publish.qos,
                retain: publish.retain,
                packet_id,
                released,
                identifiers: publish.properties.subscription_identifiers.clone(),
            };
            buffer.clear();
            format::encode_entry(&value, &mut buffer);
            entries.insert((id, entry), buffer.as_slice())?;
        }

        for packet_id in &session.inbound_qos2 {
            inbound.insert((id, *packet_id), ())?;
        }
    }
    write
        .open_table(META)?
        .insert(FORMAT_KEY, format::VERSION)?;
    Ok(Migrated {
        sessions: sessions.len(),
        retained: retained.len(),
    })
}

/// The rows of a version-1 table (none if it was never written), copied out so that the table
/// can be deleted.
fn read_v1(
    write: &WriteTransaction,
    table: redb::TableDefinition<&str, &[u8]>,
) -> Result<Vec<(String, Vec<u8>)>, Failure> {
    let table = match write.open_table(table) {
        Ok(table) => table,
        Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(error) => return Err(error.into()),
    };
    let mut rows = Vec::new();
    for row in table.iter()? {
        let (key, value) = row?;
        rows.push((key.value().to_string(), value.value().to_vec()));
    }
    Ok(rows)
}
