//! The embedded store: retained messages and persistent sessions in a redb database under
//! `--data-dir`, so they survive a restart.
//!
//! The broker task takes a snapshot every autosave interval and at shutdown; the store task
//! encodes it off the broker's thread and writes, in one transaction, only the entries whose
//! bytes changed since the last write. This module owns the database (tables, keys, the diff
//! against what was written); how one value is encoded is [`format`](mod@format)'s, whose
//! version is kept in the `meta` table so that a store written by another version is refused.
//!
//! Invariant: `written` mirrors the database: a key is in it exactly when the table holds it,
//! with the hash of the stored bytes.

mod format;

use broker_core::Snapshot;
use bytes::{Bytes, BytesMut};
use mqtt_codec::ByteStr;
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
/// The `meta` key holding [`format::VERSION`].
const FORMAT_KEY: &str = "format";

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
                if format.is_some_and(|f| f != format::VERSION) {
                    return Err(StoreError::Corrupt {
                        key: FORMAT_KEY.into(),
                        detail: format!(
                            "format {format:?}, this gateway reads {}",
                            format::VERSION
                        ),
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
                    let mut session = format::decode_session(&mut buf).map_err(corrupt)?;
                    session.client_id = ByteStr::from(key.as_str());
                    snapshot.sessions.push(session);
                } else {
                    snapshot
                        .retained
                        .push(format::decode_message(&mut buf).map_err(corrupt)?);
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
            format::encode_message(message, &mut buf);
            fresh.insert(
                ("retained", message.publish.topic.to_string()),
                buf.to_vec(),
            );
        }
        for session in &snapshot.sessions {
            let mut buf = BytesMut::new();
            format::encode_session(session, &mut buf);
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
            meta.insert(FORMAT_KEY, format::VERSION)
                .map_err(database_error)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use format::tests::snapshot;

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
}
