//! The embedded store: retained messages and persistent sessions in a redb database under
//! `--data-dir`, so that they survive a restart.
//!
//! The broker core describes each change to that state as a [`Change`] record; the
//! [`writer`] thread applies them in batches, one durable transaction each, and the gateway
//! reads the whole state back with [`Store::load`] once, at start. Each record touches a few
//! rows, never the whole state:
//!
//! | table           | key                        | value                                      |
//! |-----------------|----------------------------|--------------------------------------------|
//! | `meta`          | `"format"`                 | the layout version ([`format::VERSION`])   |
//! | `retained`      | topic                      | expiry and message                         |
//! | `sessions`      | session id                 | client id, protocol, expiry, will          |
//! | `subscriptions` | (session id, filter)       | options, subscription identifier           |
//! | `messages`      | message id                 | expiry and message, stored once            |
//! | `entries`       | (session id, entry number) | message id, QoS, retain, identifiers,      |
//! |                 |                            | packet id (0: queued), released            |
//! | `inbound`       | (session id, packet id)    | nothing: a QoS 2 id awaiting PUBREL        |
//!
//! How each value is encoded is [`format`](mod@format)'s. Times are absolute wall-clock unix
//! milliseconds ([`Clock`] converts the core's `Instant`s), so the time the gateway was down
//! needs no bookkeeping. A message that several sessions hold is one `messages` row that their
//! entries refer to; it is deleted with its last entry. A store in layout version 1 (whole snapshots)
//! is migrated when it is opened; any other version, or a file that does not decode, is refused
//! with an error naming the file, never silently replaced.
//!
//! Invariant: outside [`Store::apply`], `references` (once counted) holds, for each message
//! id, the number of `entries` rows that refer to it; a `messages` row with none is deleted in
//! the transaction that removed its last entry. A failed transaction changes neither: its
//! counts are kept aside until it commits, and after a failure they are counted again from
//! the file, which a commit that failed late may have reached after all.

pub(crate) mod format;
mod migrate;
pub(crate) mod writer;

pub(crate) use writer::{ChangeSink, StoreCounters, StoreStatus};

/// What the rest of the gateway (`/metrics`) sees of the store: its counters and status.
#[derive(Clone, Debug)]
pub(crate) struct StoreView {
    /// Commits, records written, write errors.
    pub(crate) counters: std::sync::Arc<StoreCounters>,
    /// Whether it can write.
    pub(crate) status: tokio::sync::watch::Receiver<StoreStatus>,
}

use broker_core::{
    Change, KeptPublish, Snapshot, StoredEntry, StoredInflight, StoredMessage, StoredSession,
    StoredSubscription,
};
use format::{DecodeError, EntryValue, MessageParts, SessionValue};
use mqtt_codec::ByteStr;
use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition, TableError, WriteTransaction,
};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use thiserror::Error;
use tracing::{info, warn};

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const RETAINED: TableDefinition<&str, &[u8]> = TableDefinition::new("retained");
const SESSIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("sessions");
const SUBSCRIPTIONS: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("subscriptions");
const MESSAGES: TableDefinition<u64, &[u8]> = TableDefinition::new("messages");
const ENTRIES: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("entries");
const INBOUND: TableDefinition<(u64, u16), ()> = TableDefinition::new("inbound");
/// The `meta` key holding the layout version.
const FORMAT_KEY: &str = "format";
/// The database file in the data directory.
const FILE_NAME: &str = "gateway.redb";

/// Why the store could not be opened, read or written. Each names the database file.
#[derive(Debug, Error)]
pub enum StoreError {
    /// redb could not open the file: locked by another gateway, unreadable, or not a database.
    #[error("cannot open store {path}: {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// What redb said.
        source: Box<redb::DatabaseError>,
    },
    /// The file was written in a layout this gateway does not read.
    #[error(
        "store {path} was written in layout version {found}; this gateway reads versions 1 \
         (migrated) and {current}",
        current = format::VERSION
    )]
    Version {
        /// The database file.
        path: PathBuf,
        /// The version it holds.
        found: u64,
    },
    /// The file holds something that does not decode.
    #[error("store {path} is corrupt: {detail}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What was wrong, and where.
        detail: String,
    },
    /// A read or write failed (I/O error, disk full).
    #[error("store {path}: {source}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// What redb said.
        source: Box<redb::Error>,
    },
}

/// A failure inside the store, before it is given the file's path.
#[derive(Debug)]
enum Failure {
    Database(redb::Error),
    Corrupt(String),
    Version(u64),
}

macro_rules! from_redb {
    ($($error:ty),*) => {$(
        impl From<$error> for Failure {
            fn from(error: $error) -> Self {
                Failure::Database(error.into())
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::StorageError,
    redb::TableError,
    redb::TransactionError,
    redb::CommitError,
    redb::SetDurabilityError
);

/// A value of `table` under `key` did not decode.
fn corrupt(table: &str, key: impl fmt::Debug) -> impl FnOnce(DecodeError) -> Failure {
    move |detail| Failure::Corrupt(format!("table {table}, key {key:?}: {detail}"))
}

/// Converts the core's `Instant`s into wall-clock unix milliseconds, which mean the same to the
/// next process. Made once at start, so that all the times of a run agree with each other.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    instant: Instant,
    unix_ms: u64,
}

impl Clock {
    /// The clock as of now.
    pub(crate) fn now() -> Clock {
        Clock::new(Instant::now(), SystemTime::now())
    }

    /// A clock on which `instant` is `system`.
    pub(crate) fn new(instant: Instant, system: SystemTime) -> Clock {
        Clock {
            instant,
            unix_ms: unix_ms(system),
        }
    }

    /// `at` in unix milliseconds.
    pub(crate) fn unix_ms(&self, at: Instant) -> u64 {
        match at.checked_duration_since(self.instant) {
            Some(after) => self.unix_ms.saturating_add(millis(after)),
            None => self.unix_ms.saturating_sub(millis(self.instant - at)),
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, millis)
}

fn unix_now() -> u64 {
    unix_ms(SystemTime::now())
}

/// The time left from `now` until `at` (both unix milliseconds); zero if it has passed.
fn left(now: u64, at: Option<u64>) -> Option<Duration> {
    at.map(|at| Duration::from_millis(at.saturating_sub(now)))
}

/// Opens the database file; called again to reopen it after a failed write.
type Opener = Box<dyn Fn() -> Result<Database, redb::DatabaseError> + Send>;

/// The database, and the reference counts of its messages.
pub(crate) struct Store {
    path: PathBuf,
    /// `None` after a failed write until it is reopened.
    database: Option<Database>,
    opener: Opener,
    /// Entries per message id; `None` until counted (at load, or at the first write).
    references: Option<HashMap<u64, u32>>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("open", &self.database.is_some())
            .finish_non_exhaustive()
    }
}

/// Memory redb may keep for pages it read or wrote. Its default, 1 GiB, would hold most of a
/// large store in memory a second time (the broker holds the state already); the store reads
/// it only at start, and a commit touches few pages, which the kernel's page cache serves.
const CACHE_BYTES: usize = 4 * 1024 * 1024;

/// The positions of the retained records that a later record of the same batch replaces: a
/// retained row depends on nothing else, so only the last write of a topic needs doing. A
/// publisher that rewrites a few topics fast then costs a commit a row per topic, not per
/// message.
fn superseded_retained(changes: &[Change]) -> HashSet<usize> {
    let mut last: HashMap<&str, usize> = HashMap::new();
    let mut superseded = HashSet::new();
    for (index, change) in changes.iter().enumerate() {
        if let Change::Retained { topic, .. } = change
            && let Some(earlier) = last.insert(topic.as_str(), index)
        {
            superseded.insert(earlier);
        }
    }
    superseded
}

impl Store {
    /// Opens (or creates) `gateway.redb` in `directory`, migrating a layout-version-1 store to
    /// the current layout in one transaction. A store in another layout, or a corrupt one, is
    /// refused.
    pub(crate) fn open(directory: &Path) -> Result<Store, StoreError> {
        let path = directory.join(FILE_NAME);
        let file = path.clone();
        let open = move || {
            redb::Builder::new()
                .set_cache_size(CACHE_BYTES)
                .create(&file)
        };
        Store::open_with(path, Box::new(open))
    }

    fn open_with(path: PathBuf, opener: Opener) -> Result<Store, StoreError> {
        let database = opener().map_err(|source| StoreError::Open {
            path: path.clone(),
            source: Box::new(source),
        })?;
        let store = Store {
            path,
            database: Some(database),
            opener,
            references: None,
        };
        store.prepare().map_err(|failure| store.error(failure))?;
        Ok(store)
    }

    /// The database file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, failure: Failure) -> StoreError {
        let path = self.path.clone();
        match failure {
            Failure::Database(source) => StoreError::Database {
                path,
                source: Box::new(source),
            },
            Failure::Corrupt(detail) => StoreError::Corrupt { path, detail },
            Failure::Version(found) => StoreError::Version { path, found },
        }
    }

    fn database(&self) -> Result<&Database, Failure> {
        self.database
            .as_ref()
            .ok_or(Failure::Database(redb::Error::DatabaseClosed))
    }

    /// Reads the layout version: creates the tables in an empty file, migrates version 1.
    fn prepare(&self) -> Result<(), Failure> {
        let database = self.database()?;
        let read = database.begin_read()?;
        let tables: Vec<String> = read
            .list_tables()?
            .map(|table| redb::TableHandle::name(&table).to_string())
            .collect();
        let version = match read.open_table(META) {
            Ok(meta) => meta.get(FORMAT_KEY)?.map(|version| version.value()),
            Err(TableError::TableDoesNotExist(_)) => None,
            Err(error) => return Err(error.into()),
        };
        drop(read);
        match version {
            Some(format::VERSION) => Ok(()),
            Some(1) => {
                let write = begin_write(database)?;
                let migrated = migrate::from_v1(&write, unix_now())?;
                write.commit()?;
                info!(
                    "store: migrated {} from layout version 1 to {}: {} sessions, {} retained \
                     messages",
                    self.path.display(),
                    format::VERSION,
                    migrated.sessions,
                    migrated.retained
                );
                Ok(())
            }
            Some(found) => Err(Failure::Version(found)),
            None if tables.is_empty() => {
                let write = begin_write(database)?;
                create_tables(&write)?;
                write.commit()?;
                Ok(())
            }
            None => Err(Failure::Corrupt(format!(
                "it holds tables ({}) but no layout version",
                tables.join(", ")
            ))),
        }
    }

    /// Reads the whole state, with each time as the time left from now. Retained messages that
    /// expired while the gateway was down are left out and deleted; sessions, messages and
    /// wills whose time ran out are given zero, and the core ends them at its first timeout.
    pub(crate) fn load(&mut self) -> Result<Snapshot, StoreError> {
        self.load_at(unix_now())
    }

    fn load_at(&mut self, now: u64) -> Result<Snapshot, StoreError> {
        let started = Instant::now();
        let (snapshot, references, garbage) = self
            .read_state(now)
            .map_err(|failure| self.error(failure))?;
        self.references = Some(references);
        if !garbage.is_empty()
            && let Err(failure) = self.collect_garbage(&garbage)
        {
            // What it would delete is not in the snapshot, so the state is right; the next
            // start tries again.
            warn!(
                "store: cannot delete what is left over: {}",
                self.error(failure)
            );
        }
        let (queued, inflight, subscriptions) = snapshot.sessions.iter().fold(
            (0, 0, 0),
            |(queued, inflight, subscriptions), session| {
                (
                    queued + session.queue.len(),
                    inflight + session.inflight.len(),
                    subscriptions + session.subscriptions.len(),
                )
            },
        );
        info!(
            "store: recovered {} sessions ({queued} queued and {inflight} in-flight messages, \
             {subscriptions} subscriptions) and {} retained messages from {} in {} ms",
            snapshot.sessions.len(),
            snapshot.retained.len(),
            self.path.display(),
            started.elapsed().as_millis()
        );
        Ok(snapshot)
    }

    fn read_state(&self, now: u64) -> Result<(Snapshot, HashMap<u64, u32>, Garbage), Failure> {
        let read = self.database()?.begin_read()?;
        let mut garbage = Garbage::default();
        let retained = read_retained(&read, now, &mut garbage)?;

        let mut messages = HashMap::new();
        let mut next_message_id = 1;
        for row in open_read(&read, MESSAGES)?.iter()? {
            let (id, value) = row?;
            let id = id.value();
            let message =
                format::decode_message(value.value(), true).map_err(corrupt("messages", id))?;
            messages.insert(id, message);
            next_message_id = next_message_id.max(id + 1);
        }

        let mut sessions = Vec::new();
        let mut index = HashMap::new();
        for row in open_read(&read, SESSIONS)?.iter()? {
            let (id, value) = row?;
            let id = id.value();
            let session = format::decode_session(value.value()).map_err(corrupt("sessions", id))?;
            index.insert(id, sessions.len());
            sessions.push(stored_session(id, session, now));
        }

        for row in open_read(&read, SUBSCRIPTIONS)?.iter()? {
            let (key, value) = row?;
            let (session, filter) = key.value();
            let Some(&position) = index.get(&session) else {
                garbage.subscriptions.push((session, filter.to_string()));
                continue;
            };
            let (options, identifier) = format::decode_subscription(value.value())
                .map_err(corrupt("subscriptions", (session, filter)))?;
            sessions[position].subscriptions.push(StoredSubscription {
                filter: ByteStr::from(filter),
                options,
                identifier,
            });
        }

        let mut references: HashMap<u64, u32> = HashMap::new();
        for row in open_read(&read, ENTRIES)?.iter()? {
            let (key, value) = row?;
            let (session, entry) = key.value();
            let Some(&position) = index.get(&session) else {
                garbage.entries.push((session, entry));
                continue;
            };
            let value = format::decode_entry(value.value())
                .map_err(corrupt("entries", (session, entry)))?;
            let Some(message) = messages.get(&value.message) else {
                return Err(Failure::Corrupt(format!(
                    "entry {entry} of session {session} refers to message {}, which is not in \
                     the store",
                    value.message
                )));
            };
            *references.entry(value.message).or_default() += 1;
            let stored = StoredMessage {
                expires_in: left(now, message.expires_at),
                publish: KeptPublish::new(entry_publish(message, &value)),
            };
            let session = &mut sessions[position];
            if value.packet_id == 0 {
                session.queue.push(StoredEntry {
                    entry,
                    message: stored,
                });
            } else {
                session.inflight.push(StoredInflight {
                    entry,
                    packet_id: value.packet_id,
                    message: stored,
                    released: value.released,
                });
            }
        }
        garbage.messages = messages
            .keys()
            .filter(|id| !references.contains_key(id))
            .copied()
            .collect();

        for row in open_read(&read, INBOUND)?.iter()? {
            let (key, _) = row?;
            let (session, packet_id) = key.value();
            match index.get(&session) {
                Some(&position) => sessions[position].inbound_qos2.push(packet_id),
                None => garbage.inbound.push((session, packet_id)),
            }
        }

        for session in &mut sessions {
            // The identifier after the last one sent, as the session would have tried next.
            let last = session.inflight.last().map_or(0, |m| m.packet_id);
            session.next_packet_id = last.checked_add(1).unwrap_or(1);
        }
        sessions.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        let snapshot = Snapshot {
            retained,
            sessions,
            next_message_id,
        };
        Ok((snapshot, references, garbage))
    }

    fn collect_garbage(&self, garbage: &Garbage) -> Result<(), Failure> {
        if garbage.orphans() > 0 {
            warn!(
                "store: deleting {} rows of sessions that are not in the store",
                garbage.orphans()
            );
        }
        let write = begin_write(self.database()?)?;
        {
            let mut retained = write.open_table(RETAINED)?;
            for topic in &garbage.retained {
                retained.remove(topic.as_str())?;
            }
            let mut messages = write.open_table(MESSAGES)?;
            for id in &garbage.messages {
                messages.remove(id)?;
            }
            let mut subscriptions = write.open_table(SUBSCRIPTIONS)?;
            for (session, filter) in &garbage.subscriptions {
                subscriptions.remove((*session, filter.as_str()))?;
            }
            let mut entries = write.open_table(ENTRIES)?;
            for key in &garbage.entries {
                entries.remove(key)?;
            }
            let mut inbound = write.open_table(INBOUND)?;
            for key in &garbage.inbound {
                inbound.remove(key)?;
            }
        }
        write.commit()?;
        Ok(())
    }

    /// Applies `changes` in order, in one durable transaction. On an error nothing was
    /// written: the caller retries later with the same records (and any newer ones after them).
    pub(crate) fn apply(&mut self, changes: &[Change], clock: &Clock) -> Result<(), StoreError> {
        self.try_apply(changes, clock).map_err(|failure| {
            // After an I/O error redb wants the database reopened, and a commit that failed
            // late may have reached the disk after all: reopen, and count the references again
            // from what is really there.
            self.database = None;
            self.references = None;
            self.error(failure)
        })
    }

    fn try_apply(&mut self, changes: &[Change], clock: &Clock) -> Result<(), Failure> {
        if self.database.is_none() {
            self.database = Some((self.opener)().map_err(redb::Error::from)?);
        }
        if self.references.is_none() {
            self.references = Some(self.count_references()?);
        }
        let references = self.references.as_ref().expect("counted above");
        let write = begin_write(self.database()?)?;
        let superseded = superseded_retained(changes);
        let counts = {
            let mut tables = Tables::open(&write, references)?;
            for (index, change) in changes.iter().enumerate() {
                if !superseded.contains(&index) {
                    tables.apply(change, clock)?;
                }
            }
            tables.finish()?
        };
        write.commit()?;
        let references = self.references.as_mut().expect("counted above");
        for (id, count) in counts {
            if count == 0 {
                references.remove(&id);
            } else {
                references.insert(id, count);
            }
        }
        Ok(())
    }

    fn count_references(&self) -> Result<HashMap<u64, u32>, Failure> {
        let read = self.database()?.begin_read()?;
        let mut references: HashMap<u64, u32> = HashMap::new();
        for row in open_read(&read, ENTRIES)?.iter()? {
            let (key, value) = row?;
            let message =
                format::entry_message(value.value()).map_err(corrupt("entries", key.value()))?;
            *references.entry(message).or_default() += 1;
        }
        Ok(references)
    }

    /// The reference counts as kept in memory, and as counted afresh from the file.
    #[cfg(test)]
    fn references_both_ways(&mut self) -> (HashMap<u64, u32>, HashMap<u64, u32>) {
        let counted = self.count_references().expect("count");
        let kept = self.references.clone().unwrap_or_else(|| counted.clone());
        (kept, counted)
    }
}

fn begin_write(database: &Database) -> Result<WriteTransaction, Failure> {
    let mut write = database.begin_write()?;
    // The default, but what the whole design rests on: a commit is on disk when it returns.
    write.set_durability(Durability::Immediate)?;
    Ok(write)
}

fn create_tables(write: &WriteTransaction) -> Result<(), Failure> {
    write
        .open_table(META)?
        .insert(FORMAT_KEY, format::VERSION)?;
    write.open_table(RETAINED)?;
    write.open_table(SESSIONS)?;
    write.open_table(SUBSCRIPTIONS)?;
    write.open_table(MESSAGES)?;
    write.open_table(ENTRIES)?;
    write.open_table(INBOUND)?;
    Ok(())
}

/// Opens a table that a store in the current layout always has.
fn open_read<K: redb::Key + 'static, V: redb::Value + 'static>(
    read: &ReadTransaction,
    table: TableDefinition<K, V>,
) -> Result<redb::ReadOnlyTable<K, V>, Failure> {
    read.open_table(table).map_err(|error| match error {
        TableError::TableDoesNotExist(name) => Failure::Corrupt(format!("table {name} is missing")),
        error => error.into(),
    })
}

fn read_retained(
    read: &ReadTransaction,
    now: u64,
    garbage: &mut Garbage,
) -> Result<Vec<StoredMessage>, Failure> {
    let table = open_read(read, RETAINED)?;
    let mut retained = Vec::with_capacity(usize::try_from(table.len()?).unwrap_or(0));
    for row in table.iter()? {
        let (topic, value) = row?;
        let topic = topic.value();
        let message =
            format::decode_message(value.value(), false).map_err(corrupt("retained", topic))?;
        if message.expires_at.is_some_and(|at| at <= now) {
            garbage.retained.push(topic.to_string());
            continue;
        }
        let expires_in = left(now, message.expires_at);
        let mut publish = message.into_publish();
        publish.topic = ByteStr::from(topic);
        retained.push(StoredMessage {
            publish: KeptPublish::new(publish),
            expires_in,
        });
    }
    Ok(retained)
}

/// A session's own fields, with times as time left; its subscriptions, messages and QoS 2
/// identifiers come from their own tables.
fn stored_session(id: u64, session: SessionValue, now: u64) -> StoredSession {
    StoredSession {
        id,
        client_id: session.client_id,
        protocol: session.protocol,
        expiry_interval: session.expiry_interval,
        expires_in: left(now, session.expires_at),
        connected: session.connected,
        subscriptions: Vec::new(),
        inflight: Vec::new(),
        queue: Vec::new(),
        inbound_qos2: Vec::new(),
        next_packet_id: 1,
        will: session.will,
        will_in: left(now, session.will_at),
    }
}

/// The message of an entry as it is delivered: its QoS, retain flag and identifiers are the
/// entry's.
fn entry_publish(message: &format::StoredValue, entry: &EntryValue) -> mqtt_codec::PublishPacket {
    let mut publish = message.clone().into_publish();
    publish.qos = entry.qos;
    publish.retain = entry.retain;
    publish.properties.subscription_identifiers = entry.identifiers.clone();
    publish
}

/// Rows that load found unneeded: expired retained messages, messages no entry refers to, and
/// rows of sessions that are not in the store.
#[derive(Debug, Default)]
struct Garbage {
    retained: Vec<String>,
    messages: Vec<u64>,
    subscriptions: Vec<(u64, String)>,
    entries: Vec<(u64, u64)>,
    inbound: Vec<(u64, u16)>,
}

impl Garbage {
    fn orphans(&self) -> usize {
        self.subscriptions.len() + self.entries.len() + self.inbound.len()
    }

    fn is_empty(&self) -> bool {
        self.retained.is_empty() && self.messages.is_empty() && self.orphans() == 0
    }
}

/// The tables of one write transaction, with the reference counts it changes.
struct Tables<'txn> {
    retained: redb::Table<'txn, &'static str, &'static [u8]>,
    sessions: redb::Table<'txn, u64, &'static [u8]>,
    subscriptions: redb::Table<'txn, (u64, &'static str), &'static [u8]>,
    messages: redb::Table<'txn, u64, &'static [u8]>,
    entries: redb::Table<'txn, (u64, u64), &'static [u8]>,
    inbound: redb::Table<'txn, (u64, u16), ()>,
    /// The counts as committed, untouched until the transaction commits.
    committed: &'txn HashMap<u64, u32>,
    /// The counts this transaction changed.
    counts: HashMap<u64, u32>,
    /// Messages whose count fell to zero, or that were written: deleted at the end if they are
    /// still unreferenced then (a later record of the batch may refer to them again).
    unreferenced: Vec<u64>,
    buffer: Vec<u8>,
}

impl<'txn> Tables<'txn> {
    fn open(
        write: &'txn WriteTransaction,
        committed: &'txn HashMap<u64, u32>,
    ) -> Result<Self, Failure> {
        Ok(Tables {
            retained: write.open_table(RETAINED)?,
            sessions: write.open_table(SESSIONS)?,
            subscriptions: write.open_table(SUBSCRIPTIONS)?,
            messages: write.open_table(MESSAGES)?,
            entries: write.open_table(ENTRIES)?,
            inbound: write.open_table(INBOUND)?,
            committed,
            counts: HashMap::new(),
            unreferenced: Vec::new(),
            buffer: Vec::new(),
        })
    }

    fn count(&mut self, message: u64) -> &mut u32 {
        let committed = self.committed.get(&message).copied().unwrap_or(0);
        self.counts.entry(message).or_insert(committed)
    }

    fn refer(&mut self, message: u64) {
        *self.count(message) += 1;
    }

    fn release(&mut self, message: u64) {
        let count = self.count(message);
        *count = count.saturating_sub(1);
        if *count == 0 {
            self.unreferenced.push(message);
        }
    }

    fn apply(&mut self, change: &Change, clock: &Clock) -> Result<(), Failure> {
        let buffer = &mut self.buffer;
        buffer.clear();
        match change {
            Change::Retained {
                topic,
                message: Some(message),
            } => {
                let (publish, expires_at) = message;
                let mut parts = MessageParts::kept(publish, expires_at.map(|at| clock.unix_ms(at)));
                parts.topic = None;
                format::encode_message(&parts, buffer);
                self.retained.insert(topic.as_str(), buffer.as_slice())?;
            }
            Change::Retained {
                topic,
                message: None,
            } => {
                self.retained.remove(topic.as_str())?;
            }
            Change::Session(record) => {
                let value = SessionValue {
                    client_id: record.client_id.clone(),
                    protocol: record.protocol,
                    expiry_interval: record.expiry_interval,
                    connected: record.connected,
                    expires_at: record.expires_at.map(|at| clock.unix_ms(at)),
                    will: record.will.as_deref().cloned(),
                    will_at: record.will_at.map(|at| clock.unix_ms(at)),
                };
                format::encode_session(&value, buffer);
                self.sessions.insert(record.id, buffer.as_slice())?;
            }
            Change::SessionRemoved { session } => self.remove_session(*session)?,
            Change::Subscribed {
                session,
                filter,
                options,
                identifier,
            } => {
                format::encode_subscription(*options, *identifier, buffer);
                self.subscriptions
                    .insert((*session, filter.as_str()), buffer.as_slice())?;
            }
            Change::Unsubscribed { session, filter } => {
                self.subscriptions.remove((*session, filter.as_str()))?;
            }
            Change::Message {
                id,
                publish,
                expires_at,
            } => {
                let mut parts = MessageParts::kept(publish, expires_at.map(|at| clock.unix_ms(at)));
                parts.identifiers = false;
                format::encode_message(&parts, buffer);
                self.messages.insert(id, buffer.as_slice())?;
                // Unreferenced until an entry refers to it, which the next record does.
                self.count(*id);
                self.unreferenced.push(*id);
            }
            Change::Queued {
                session,
                entry,
                message,
                qos,
                retain,
                identifiers,
                packet_id,
            } => {
                let value = EntryValue {
                    message: *message,
                    qos: *qos,
                    retain: *retain,
                    packet_id: packet_id.unwrap_or(0),
                    released: false,
                    identifiers: identifiers.clone(),
                };
                format::encode_entry(&value, buffer);
                let replaced = self
                    .entries
                    .insert((*session, *entry), buffer.as_slice())?
                    .map(|old| format::entry_message(old.value()))
                    .transpose()
                    .map_err(corrupt("entries", (*session, *entry)))?;
                // Counted from what the table held, so that a record applied twice (a batch
                // retried after a commit that did land) counts once.
                self.refer(*message);
                if let Some(old) = replaced {
                    self.release(old);
                }
            }
            Change::Sent {
                session,
                entry,
                packet_id,
            } => self.update_entry(*session, *entry, |value| value.packet_id = *packet_id)?,
            Change::Released { session, entry } => {
                self.update_entry(*session, *entry, |value| value.released = true)?;
            }
            Change::Completed { session, entry } => {
                let removed = self
                    .entries
                    .remove((*session, *entry))?
                    .map(|old| format::entry_message(old.value()))
                    .transpose()
                    .map_err(corrupt("entries", (*session, *entry)))?;
                if let Some(message) = removed {
                    self.release(message);
                }
            }
            Change::Qos2Received { session, packet_id } => {
                self.inbound.insert((*session, *packet_id), ())?;
            }
            Change::Qos2Released { session, packet_id } => {
                self.inbound.remove((*session, *packet_id))?;
            }
        }
        Ok(())
    }

    /// Rewrites an entry, if it is still there.
    fn update_entry(
        &mut self,
        session: u64,
        entry: u64,
        update: impl FnOnce(&mut EntryValue),
    ) -> Result<(), Failure> {
        let Some(old) = self.entries.get((session, entry))? else {
            return Ok(());
        };
        let mut value =
            format::decode_entry(old.value()).map_err(corrupt("entries", (session, entry)))?;
        drop(old);
        update(&mut value);
        self.buffer.clear();
        format::encode_entry(&value, &mut self.buffer);
        self.entries
            .insert((session, entry), self.buffer.as_slice())?;
        Ok(())
    }

    fn remove_session(&mut self, session: u64) -> Result<(), Failure> {
        self.sessions.remove(session)?;
        let end = match session.checked_add(1) {
            Some(next) => Bound::Excluded((next, "")),
            None => Bound::Unbounded,
        };
        let all_filters = (Bound::Included((session, "")), end);
        self.subscriptions.retain_in(all_filters, |_, _| false)?;
        self.inbound
            .retain_in((session, 0)..=(session, u16::MAX), |_, _| false)?;
        let mut released = Vec::new();
        for row in self.entries.range((session, 0)..=(session, u64::MAX))? {
            let (key, value) = row?;
            let message =
                format::entry_message(value.value()).map_err(corrupt("entries", key.value()))?;
            released.push(message);
        }
        self.entries
            .retain_in((session, 0)..=(session, u64::MAX), |_, _| false)?;
        for message in released {
            self.release(message);
        }
        Ok(())
    }

    /// Deletes the messages left unreferenced, and returns the changed counts.
    fn finish(mut self) -> Result<HashMap<u64, u32>, Failure> {
        for id in std::mem::take(&mut self.unreferenced) {
            if self.counts.get(&id) == Some(&0) {
                self.messages.remove(id)?;
            }
        }
        Ok(self.counts)
    }
}

#[cfg(test)]
mod tests;
