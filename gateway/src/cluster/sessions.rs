//! Persistent sessions cluster-wide: each one's records in JetStream, so that its client can
//! resume it on any node, and so that what it holds outlives the node it was on.
//!
//! **The log.** The stream `MQTT-SESSIONS` keeps, on subject `mqtt.sess.<key>` (the client id
//! in unpadded base64url), the change records of the session (broker-core's `Change`s, with
//! each message written into the record that queues it), as JSON arrays, one message per
//! session per batch. Folded in order they give the session: its own fields and will, its
//! subscriptions, its messages in flight and queued, its QoS 2 identifiers awaiting PUBREL.
//! Only the node holding a session writes its subject. A `reset` (a new session of that client
//! id) or an `image` (the whole session, written after every [`COMPACT_AFTER`] records) makes
//! everything before it obsolete, and it is purged; a removed session's subject is purged.
//! While clustered, the node's own store keeps only retained messages: sessions live here.
//!
//! **Durability.** The broker task hands the session records to the [`Writer`] as it hands
//! the others to the local store, and a QoS 1/2 acknowledgement that promises one waits (with
//! `--durability full`) until JetStream has stored it: a message acknowledged to its publisher
//! and held for a persistent session survives the loss of the node.
//!
//! **Moving.** A client that connects with a client id first makes its node [`claim`] the
//! session: the log's last writer, if another node, is asked over NATS to release it; that
//! node closes the client's connection there (a takeover), removes the session, and answers
//! once its last records are in the log. The claiming node then reads the log and adopts the
//! session. If the last writer does not answer because it is gone (NATS: no responders), the
//! log as that node left it is adopted: what it had acknowledged is there.
//!
//! [`claim`]: Claims::claim

use super::link::{ClusterCounters, decode, encode};
use crate::broker_task::{BrokerHandle, Command};
use crate::store::Clock;
use crate::store::format::{options_byte, options_from_byte, protocol_from_level};
use async_nats::jetstream::{self, consumer, stream};
use async_nats::{Client, HeaderMap};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use broker_core::{
    Change, KeptPublish, SessionRecord, StoredEntry, StoredInflight, StoredMessage, StoredSession,
    StoredSubscription,
};
use futures_util::StreamExt;
use mqtt_codec::{ByteStr, PublishPacket, Will};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{OnceCell, mpsc, oneshot, watch};
use tracing::{info, warn};

/// The stream of the sessions' logs.
pub const STREAM: &str = "MQTT-SESSIONS";
/// Records after which the writer replaces a session's log with an image of it.
const COMPACT_AFTER: usize = 1_000;
/// Records waiting for the writer beyond which it counts as behind (the publisher pauses).
const BEHIND_RECORDS: u64 = 100_000;
/// The longest a claim waits for the log or for the node that holds the session.
const CLAIM_TIMEOUT: Duration = Duration::from_secs(3);
/// The first pause after a failed write; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
const ORIGIN: &str = "Mqtt-Origin";

/// The log subject of a client id.
pub fn subject(client_id: &str) -> String {
    format!("mqtt.sess.{}", URL_SAFE_NO_PAD.encode(client_id))
}

/// The subject on which a node answers requests to release a session.
fn release_subject(node: &str) -> String {
    format!("mqtt.node.{}.release", URL_SAFE_NO_PAD.encode(node))
}

/// One record of a session's log. Times are unix milliseconds; messages are encoded MQTT 5.0
/// PUBLISH packets in base64.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "r", rename_all = "snake_case")]
enum Record {
    /// A new session of the client id: what came before does not count.
    Reset,
    /// The whole session: what came before does not count.
    Image(Box<Image>),
    /// The session's own fields.
    Session {
        client_id: String,
        protocol: u8,
        expiry_interval: u32,
        expires_at: Option<u64>,
        connected: bool,
        will: Option<WillRecord>,
    },
    Subscribed {
        filter: String,
        options: u8,
        identifier: Option<u32>,
    },
    Unsubscribed {
        filter: String,
    },
    Queued {
        entry: u64,
        publish: String,
        expires_at: Option<u64>,
        packet_id: Option<u16>,
    },
    Sent {
        entry: u64,
        packet_id: u16,
    },
    Released {
        entry: u64,
    },
    Completed {
        entry: u64,
    },
    Qos2Received {
        packet_id: u16,
    },
    Qos2Released {
        packet_id: u16,
    },
    /// The session ended.
    Removed,
}

/// A will: the message as a PUBLISH, its delay, and when it is due if it waits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct WillRecord {
    publish: String,
    delay: Option<u32>,
    due: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct EntryRecord {
    publish: String,
    expires_at: Option<u64>,
    packet_id: Option<u16>,
    released: bool,
}

/// A session as its log describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Image {
    client_id: String,
    protocol: u8,
    expiry_interval: u32,
    expires_at: Option<u64>,
    connected: bool,
    will: Option<WillRecord>,
    subscriptions: BTreeMap<String, (u8, Option<u32>)>,
    /// Written as a list of pairs: inside a tagged record, JSON keys must be strings.
    #[serde(with = "as_pairs")]
    entries: BTreeMap<u64, EntryRecord>,
    inbound_qos2: BTreeSet<u16>,
}

/// A map with number keys as a list of (key, value) pairs.
mod as_pairs {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    pub fn serialize<V: Serialize, S: Serializer>(
        map: &BTreeMap<u64, V>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(map.iter())
    }

    pub fn deserialize<'de, V: Deserialize<'de>, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<BTreeMap<u64, V>, D::Error> {
        Ok(Vec::<(u64, V)>::deserialize(deserializer)?
            .into_iter()
            .collect())
    }
}

/// The state of a log being folded: no session yet, one, or one that ended.
#[derive(Debug, Default)]
struct Fold {
    image: Option<Image>,
}

impl Fold {
    fn apply(&mut self, record: Record) {
        if let Record::Image(image) = record {
            self.image = Some(*image);
            return;
        }
        if matches!(record, Record::Reset | Record::Removed) {
            self.image = None;
            return;
        }
        if let Record::Session {
            client_id,
            protocol,
            expiry_interval,
            expires_at,
            connected,
            will,
        } = record
        {
            let image = self.image.get_or_insert_with(Image::default);
            image.client_id = client_id;
            image.protocol = protocol;
            image.expiry_interval = expiry_interval;
            image.expires_at = expires_at;
            image.connected = connected;
            image.will = will;
            return;
        }
        // Records of a session whose `session` record is not in the log are of no use.
        let Some(image) = &mut self.image else { return };
        match record {
            Record::Subscribed {
                filter,
                options,
                identifier,
            } => {
                image.subscriptions.insert(filter, (options, identifier));
            }
            Record::Unsubscribed { filter } => {
                image.subscriptions.remove(&filter);
            }
            Record::Queued {
                entry,
                publish,
                expires_at,
                packet_id,
            } => {
                let record = EntryRecord {
                    publish,
                    expires_at,
                    packet_id,
                    released: false,
                };
                image.entries.insert(entry, record);
            }
            Record::Sent { entry, packet_id } => {
                if let Some(record) = image.entries.get_mut(&entry) {
                    record.packet_id = Some(packet_id);
                }
            }
            Record::Released { entry } => {
                if let Some(record) = image.entries.get_mut(&entry) {
                    record.released = true;
                }
            }
            Record::Completed { entry } => {
                image.entries.remove(&entry);
            }
            Record::Qos2Received { packet_id } => {
                image.inbound_qos2.insert(packet_id);
            }
            Record::Qos2Released { packet_id } => {
                image.inbound_qos2.remove(&packet_id);
            }
            Record::Reset | Record::Image(_) | Record::Session { .. } | Record::Removed => {}
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn left(now: u64, at: Option<u64>) -> Option<Duration> {
    at.map(|at| Duration::from_millis(at.saturating_sub(now)))
}

fn encode_publish(publish: PublishPacket) -> Option<String> {
    encode(publish).map(|bytes| STANDARD.encode(bytes))
}

fn decode_publish(text: &str) -> Option<PublishPacket> {
    decode(&STANDARD.decode(text).ok()?)
}

fn will_record(will: &Will, due: Option<u64>) -> Option<WillRecord> {
    let mut properties = will.properties.clone();
    let delay = properties.will_delay_interval.take();
    let publish = PublishPacket {
        dup: false,
        qos: will.qos,
        retain: will.retain,
        topic: will.topic.clone(),
        packet_id: None,
        properties,
        payload: will.payload.clone(),
    };
    Some(WillRecord {
        publish: encode_publish(publish)?,
        delay,
        due,
    })
}

fn will_from(record: &WillRecord) -> Option<Will> {
    let publish = decode_publish(&record.publish)?;
    let mut properties = publish.properties;
    properties.will_delay_interval = record.delay;
    Some(Will {
        topic: publish.topic,
        payload: publish.payload,
        qos: publish.qos,
        retain: publish.retain,
        properties,
    })
}

impl Image {
    /// The session to adopt, as of `now` (unix ms); `None` if it expired.
    fn into_stored(self, now: u64) -> Option<StoredSession> {
        if !self.connected && self.expires_at.is_some_and(|at| at <= now) {
            return None;
        }
        let message = |entry: &EntryRecord| {
            Some(StoredMessage {
                publish: KeptPublish::new(decode_publish(&entry.publish)?),
                expires_in: left(now, entry.expires_at),
            })
        };
        let mut inflight = Vec::new();
        let mut queue = Vec::new();
        for (number, entry) in &self.entries {
            let Some(stored) = message(entry) else {
                continue;
            };
            match entry.packet_id {
                Some(packet_id) => inflight.push(StoredInflight {
                    entry: *number,
                    packet_id,
                    message: stored,
                    released: entry.released,
                }),
                None => queue.push(StoredEntry {
                    entry: *number,
                    message: stored,
                }),
            }
        }
        let next_packet_id = inflight
            .iter()
            .map(|m| m.packet_id)
            .max()
            .map_or(1, |id| id.checked_add(1).unwrap_or(1));
        let will = self.will.as_ref().and_then(will_from);
        let will_in = self.will.as_ref().and_then(|w| left(now, w.due));
        Some(StoredSession {
            id: 0,
            client_id: ByteStr::from(self.client_id),
            protocol: protocol_from_level(self.protocol).ok()?,
            expiry_interval: self.expiry_interval,
            expires_in: (!self.connected)
                .then(|| left(now, self.expires_at))
                .flatten(),
            connected: self.connected,
            subscriptions: self
                .subscriptions
                .into_iter()
                .filter_map(|(filter, (options, identifier))| {
                    Some(StoredSubscription {
                        filter: ByteStr::from(filter),
                        options: options_from_byte(options).ok()?,
                        identifier,
                    })
                })
                .collect(),
            inflight,
            queue,
            inbound_qos2: self.inbound_qos2.into_iter().collect(),
            next_packet_id,
            will,
            will_in,
        })
    }
}

/// What the broker task sends the writer.
#[derive(Debug)]
pub(crate) enum ToWriter {
    /// Change records about sessions, and the count of changes recorded up to them.
    Changes(Vec<Change>, u64),
    /// The session with this store id is being released to another node: its coming
    /// `SessionRemoved` means it moved. Answered once its last records are in the log.
    Moving {
        session: u64,
        reply: oneshot::Sender<()>,
    },
    /// The session with this store id was adopted: its log goes on (no reset).
    Adopted { session: u64 },
}

/// What the writer reports to the broker task, as the store does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LogStatus {
    /// How many changes are in the log: the total sent with the last batch written.
    pub(crate) durable: u64,
    /// Whether the last attempt to write succeeded.
    pub(crate) writable: bool,
}

/// The broker task's end of the writer.
pub(crate) struct SessionSink {
    sender: mpsc::UnboundedSender<ToWriter>,
    /// Its `log_waiting`: records sent and not yet written (the broker slows publishers
    /// beyond [`BEHIND_RECORDS`]).
    counters: Arc<ClusterCounters>,
}

impl SessionSink {
    /// Hands session records to the writer; returns whether it is behind.
    pub(crate) fn push(&self, records: &mut Vec<Change>, total: u64) -> bool {
        let count = records.len() as u64;
        let waiting = self
            .counters
            .log_waiting
            .fetch_add(count, Ordering::Relaxed)
            + count;
        let _ = self
            .sender
            .send(ToWriter::Changes(std::mem::take(records), total));
        waiting > BEHIND_RECORDS
    }

    pub(crate) fn send(&self, message: ToWriter) {
        // Fails only once the writer is gone, at shutdown.
        let _ = self.sender.send(message);
    }
}

/// Per session the writer knows: where its log is, and what its records refer to.
struct Tracked {
    subject: String,
    /// Entry number -> message id, for the messages it holds.
    entries: HashMap<u64, u64>,
    /// Records written since the last reset or image.
    since_image: usize,
}

/// A message several entries may refer to, with how many do.
struct Shared {
    publish: KeptPublish,
    expires_at: Option<u64>,
    references: usize,
}

/// Writes the sessions' records to their logs, in order.
pub(crate) struct Writer {
    jetstream: jetstream::Context,
    node: String,
    clock: Clock,
    sessions: HashMap<u64, Tracked>,
    messages: HashMap<u64, Shared>,
    moving: HashMap<u64, oneshot::Sender<()>>,
    adopted: std::collections::HashSet<u64>,
    /// Sessions whose logs grew past [`COMPACT_AFTER`] records since their last image.
    due: Vec<u64>,
    counters: Arc<ClusterCounters>,
    status: watch::Sender<LogStatus>,
    /// When the writer started (unix ms) and batches written since: message ids for
    /// JetStream's duplicate detection.
    epoch: u64,
    batches: u64,
}

/// One session's records of a batch, ready to go.
struct Group {
    subject: String,
    records: Vec<Record>,
    /// The group starts with a reset: what is older in the log can go.
    fresh: bool,
    /// The session ended (not moved): its whole log can go.
    removed: bool,
}

/// The group of `session` in this batch, made when it has none yet.
fn group_of<'a>(
    groups: &'a mut Vec<Group>,
    index: &mut HashMap<u64, usize>,
    session: u64,
    subject: &str,
) -> &'a mut Group {
    let position = *index.entry(session).or_insert_with(|| {
        groups.push(Group {
            subject: subject.to_owned(),
            records: Vec::new(),
            fresh: false,
            removed: false,
        });
        groups.len() - 1
    });
    &mut groups[position]
}

/// Starts the writer; returns the broker task's sink and the status it reports.
pub(crate) fn start_writer(
    jetstream: jetstream::Context,
    node: String,
    counters: Arc<ClusterCounters>,
) -> (SessionSink, watch::Receiver<LogStatus>) {
    let (sender, receiver) = mpsc::unbounded_channel();
    let (status, status_rx) = watch::channel(LogStatus {
        durable: 0,
        writable: true,
    });
    let writer = Writer {
        jetstream,
        node,
        clock: Clock::now(),
        sessions: HashMap::new(),
        messages: HashMap::new(),
        moving: HashMap::new(),
        adopted: std::collections::HashSet::new(),
        due: Vec::new(),
        counters: counters.clone(),
        status,
        epoch: unix_now(),
        batches: 0,
    };
    tokio::spawn(writer.run(receiver));
    (SessionSink { sender, counters }, status_rx)
}

impl Writer {
    async fn run(mut self, mut receiver: mpsc::UnboundedReceiver<ToWriter>) {
        let mut stream = None;
        while let Some(first) = receiver.recv().await {
            let mut changes = Vec::new();
            let mut total = None;
            let mut take = |message: ToWriter, this: &mut Writer| match message {
                ToWriter::Changes(mut records, upto) => {
                    changes.append(&mut records);
                    total = Some(upto);
                }
                ToWriter::Moving { session, reply } => {
                    this.moving.insert(session, reply);
                }
                ToWriter::Adopted { session } => {
                    this.adopted.insert(session);
                }
            };
            take(first, &mut self);
            while let Ok(message) = receiver.try_recv() {
                take(message, &mut self);
            }
            let count = changes.len();
            let (groups, moved) = self.translate(changes);
            self.write(&mut stream, &groups).await;
            self.counters
                .log_waiting
                .fetch_sub(count as u64, Ordering::Relaxed);
            for session in moved {
                if let Some(reply) = self.moving.remove(&session) {
                    let _ = reply.send(());
                }
            }
            if let Some(total) = total {
                self.status.send_modify(|status| {
                    status.durable = total;
                    status.writable = true;
                });
            }
            self.compact(&mut stream).await;
        }
    }

    /// Turns change records into log records, grouped by session in order of appearance.
    /// Returns the groups and the sessions that moved away in this batch.
    fn translate(&mut self, changes: Vec<Change>) -> (Vec<Group>, Vec<u64>) {
        let mut groups: Vec<Group> = Vec::new();
        let mut index: HashMap<u64, usize> = HashMap::new();
        let mut moved = Vec::new();
        let mut new_messages = Vec::new();
        for change in changes {
            let (session, record) = match change {
                Change::Retained { .. } => continue,
                Change::Message {
                    id,
                    publish,
                    expires_at,
                } => {
                    let expires_at = expires_at.map(|at| self.clock.unix_ms(at));
                    let shared = Shared {
                        publish,
                        expires_at,
                        references: 0,
                    };
                    self.messages.insert(id, shared);
                    new_messages.push(id);
                    continue;
                }
                Change::Session(record) => {
                    let session = record.id;
                    if let std::collections::hash_map::Entry::Vacant(vacant) =
                        self.sessions.entry(session)
                    {
                        vacant.insert(Tracked {
                            subject: subject(&record.client_id),
                            entries: HashMap::new(),
                            since_image: 0,
                        });
                        if !self.adopted.remove(&session) {
                            self.push(&mut groups, &mut index, session, Record::Reset);
                        }
                    }
                    (session, self.session_record(&record))
                }
                Change::SessionRemoved { session } => {
                    let Some(tracked) = self.sessions.remove(&session) else {
                        continue;
                    };
                    for message in tracked.entries.into_values() {
                        self.release_message(message);
                    }
                    if self.moving.contains_key(&session) {
                        moved.push(session);
                        continue;
                    }
                    // The group needs the subject, which went with `tracked`.
                    let group = group_of(&mut groups, &mut index, session, &tracked.subject);
                    group.records.push(Record::Removed);
                    group.removed = true;
                    continue;
                }
                Change::Subscribed {
                    session,
                    filter,
                    options,
                    identifier,
                } => (
                    session,
                    Record::Subscribed {
                        filter: filter.to_string(),
                        options: options_byte(options),
                        identifier,
                    },
                ),
                Change::Unsubscribed { session, filter } => (
                    session,
                    Record::Unsubscribed {
                        filter: filter.to_string(),
                    },
                ),
                Change::Queued {
                    session,
                    entry,
                    message,
                    qos,
                    retain,
                    identifiers,
                    packet_id,
                } => {
                    let Some(shared) = self.messages.get_mut(&message) else {
                        continue;
                    };
                    let Some(tracked) = self.sessions.get_mut(&session) else {
                        continue;
                    };
                    shared.references += 1;
                    if let Some(old) = tracked.entries.insert(entry, message) {
                        self.release_message(old);
                    }
                    let shared = &self.messages[&message];
                    let mut publish = shared.publish.to_packet();
                    publish.qos = qos;
                    publish.retain = retain;
                    publish.properties.subscription_identifiers = identifiers;
                    let Some(publish) = encode_publish(publish) else {
                        continue;
                    };
                    let record = Record::Queued {
                        entry,
                        publish,
                        expires_at: shared.expires_at,
                        packet_id,
                    };
                    (session, record)
                }
                Change::Sent {
                    session,
                    entry,
                    packet_id,
                } => (session, Record::Sent { entry, packet_id }),
                Change::Released { session, entry } => (session, Record::Released { entry }),
                Change::Completed { session, entry } => {
                    if let Some(message) = self
                        .sessions
                        .get_mut(&session)
                        .and_then(|tracked| tracked.entries.remove(&entry))
                    {
                        self.release_message(message);
                    }
                    (session, Record::Completed { entry })
                }
                Change::Qos2Received { session, packet_id } => {
                    (session, Record::Qos2Received { packet_id })
                }
                Change::Qos2Released { session, packet_id } => {
                    (session, Record::Qos2Released { packet_id })
                }
            };
            self.push(&mut groups, &mut index, session, record);
        }
        // A message no session here holds (none this writer knows) is not kept.
        for id in new_messages {
            if self.messages.get(&id).is_some_and(|m| m.references == 0) {
                self.messages.remove(&id);
            }
        }
        (groups, moved)
    }

    /// Appends a record to its session's group (a session this writer does not know, one
    /// restored from the local store before the node joined, has no log and is skipped).
    fn push(
        &mut self,
        groups: &mut Vec<Group>,
        index: &mut HashMap<u64, usize>,
        session: u64,
        record: Record,
    ) {
        let Some(tracked) = self.sessions.get_mut(&session) else {
            return;
        };
        let group = group_of(groups, index, session, &tracked.subject);
        if record == Record::Reset {
            group.fresh = group.records.is_empty();
            tracked.since_image = 0;
        } else {
            tracked.since_image += 1;
            // Every COMPACT_AFTER records, so that a compaction that failed is tried again.
            if tracked.since_image % COMPACT_AFTER == 0 {
                self.due.push(session);
            }
        }
        group.records.push(record);
    }

    fn release_message(&mut self, message: u64) {
        if let Some(shared) = self.messages.get_mut(&message) {
            shared.references = shared.references.saturating_sub(1);
            if shared.references == 0 {
                self.messages.remove(&message);
            }
        }
    }

    fn session_record(&self, record: &SessionRecord) -> Record {
        let due = record.will_at.map(|at| self.clock.unix_ms(at));
        Record::Session {
            client_id: record.client_id.to_string(),
            protocol: record.protocol.level(),
            expiry_interval: record.expiry_interval,
            expires_at: record.expires_at.map(|at| self.clock.unix_ms(at)),
            connected: record.connected,
            will: record
                .will
                .as_deref()
                .and_then(|will| will_record(will, due)),
        }
    }

    /// Writes the groups, retrying until JetStream has them all (the status says the log
    /// cannot write meanwhile, so the broker refuses what it would have to hold).
    async fn write(&mut self, stream: &mut Option<stream::Stream>, groups: &[Group]) {
        if groups.is_empty() {
            return;
        }
        self.batches += 1;
        let mut backoff = MIN_BACKOFF;
        let mut warned = false;
        loop {
            match self.try_write(stream, groups).await {
                Ok(()) => {
                    if warned {
                        info!("cluster: the sessions' log in JetStream is written again");
                    }
                    self.counters.log_failing.store(false, Ordering::Relaxed);
                    return;
                }
                Err(error) => {
                    if !warned {
                        warn!(
                            "cluster: cannot write the sessions' log ({STREAM}): {error}; messages for persistent sessions are refused until it can"
                        );
                        warned = true;
                    }
                    self.status.send_modify(|status| status.writable = false);
                    self.counters.log_failing.store(true, Ordering::Relaxed);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    async fn try_write(
        &self,
        stream: &mut Option<stream::Stream>,
        groups: &[Group],
    ) -> Result<(), String> {
        let stream = match stream {
            Some(stream) => stream,
            None => stream.insert(log_stream(&self.jetstream).await?),
        };
        let mut acks = Vec::with_capacity(groups.len());
        for (number, group) in groups.iter().enumerate() {
            let payload = serde_json::to_vec(&group.records).map_err(|e| e.to_string())?;
            let mut headers = HeaderMap::new();
            headers.insert(ORIGIN, self.node.as_str());
            // A batch written again after a failure is not stored twice.
            let id = format!("{}-{}-{}-{number}", self.node, self.epoch, self.batches);
            headers.insert("Nats-Msg-Id", id.as_str());
            let ack = self
                .jetstream
                .publish_with_headers(group.subject.clone(), headers, payload.into())
                .await
                .map_err(|e| e.to_string())?;
            acks.push(ack);
        }
        for (ack, group) in acks.into_iter().zip(groups) {
            let ack = ack.await.map_err(|e| e.to_string())?;
            if group.removed {
                purge(stream, &group.subject, None).await?;
            } else if group.fresh {
                purge(stream, &group.subject, Some(ack.sequence)).await?;
            }
        }
        Ok(())
    }

    /// Replaces the logs that grew past [`COMPACT_AFTER`] records with an image each.
    async fn compact(&mut self, stream: &mut Option<stream::Stream>) {
        let Some(stream) = stream.as_ref() else {
            return;
        };
        let due: Vec<(u64, String)> = std::mem::take(&mut self.due)
            .into_iter()
            .filter_map(|session| Some((session, self.sessions.get(&session)?.subject.clone())))
            .collect();
        for (session, subject) in due {
            let result = async {
                let Some((image, _, _)) = read(stream, &subject).await? else {
                    return Ok(());
                };
                let records = vec![Record::Image(Box::new(image))];
                let payload = serde_json::to_vec(&records).map_err(|e| e.to_string())?;
                let mut headers = HeaderMap::new();
                headers.insert(ORIGIN, self.node.as_str());
                let ack = self
                    .jetstream
                    .publish_with_headers(subject.clone(), headers, payload.into())
                    .await
                    .map_err(|e| e.to_string())?
                    .await
                    .map_err(|e| e.to_string())?;
                purge(stream, &subject, Some(ack.sequence)).await
            }
            .await;
            match result {
                Ok(()) => {
                    if let Some(tracked) = self.sessions.get_mut(&session) {
                        tracked.since_image = 0;
                    }
                    self.counters.compactions.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => warn!("cluster: could not compact a session's log: {error}"),
            }
        }
    }
}

/// Purges a session's log: all of it, or what is older than `before`. Reading folds from the
/// last reset or image anyway, so the purge only saves space: it keeps the message just
/// before `before` as well, because nats-server 2.9 takes a purge's sequence as inclusive
/// where later servers take it as exclusive.
async fn purge(stream: &stream::Stream, subject: &str, before: Option<u64>) -> Result<(), String> {
    let purge = stream.purge().filter(subject);
    let result = match before {
        Some(sequence) if sequence > 1 => purge.sequence(sequence - 1).await,
        Some(_) => return Ok(()),
        None => purge.await,
    };
    result.map(|_| ()).map_err(|e| e.to_string())
}

/// The sessions' stream, created when missing.
async fn log_stream(jetstream: &jetstream::Context) -> Result<stream::Stream, String> {
    jetstream
        .get_or_create_stream(stream::Config {
            name: STREAM.to_owned(),
            description: Some(
                "MQTT persistent sessions, a log per client id (mqtt-gateway)".into(),
            ),
            subjects: vec!["mqtt.sess.>".to_owned()],
            storage: stream::StorageType::File,
            // A batch written again after a failure within this window is stored once.
            duplicate_window: Duration::from_secs(120),
            max_messages: -1,
            max_bytes: -1,
            max_message_size: -1,
            max_consumers: -1,
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())
}

/// The last writer of a session's log: its node and the record's sequence; `None` if the log
/// is empty or ends with the session's removal.
async fn last_writer(
    stream: &stream::Stream,
    subject: &str,
) -> Result<Option<(String, u64)>, String> {
    match stream.get_last_raw_message_by_subject(subject).await {
        Ok(message) => {
            let records: Vec<Record> =
                serde_json::from_slice(&message.payload).map_err(|e| e.to_string())?;
            if records.last() == Some(&Record::Removed) {
                return Ok(None);
            }
            let origin = message
                .headers
                .get(ORIGIN)
                .map(|value| value.as_str().to_owned())
                .unwrap_or_default();
            Ok(Some((origin, message.sequence)))
        }
        Err(error)
            if matches!(
                error.kind(),
                stream::LastRawMessageErrorKind::NoMessageFound
            ) =>
        {
            Ok(None)
        }
        Err(error) => Err(error.to_string()),
    }
}

/// Reads and folds a session's log: the session, its last writer and last sequence.
async fn read(
    stream: &stream::Stream,
    subject: &str,
) -> Result<Option<(Image, String, u64)>, String> {
    let Some((origin, last)) = last_writer(stream, subject).await? else {
        return Ok(None);
    };
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: subject.to_owned(),
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
    let mut fold = Fold::default();
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| e.to_string())?;
        let sequence = message.info().map_err(|e| e.to_string())?.stream_sequence;
        let records: Vec<Record> =
            serde_json::from_slice(&message.payload).map_err(|e| e.to_string())?;
        for record in records {
            fold.apply(record);
        }
        if sequence >= last {
            break;
        }
    }
    Ok(fold.image.map(|image| (image, origin, last)))
}

/// Why a session could not be claimed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClaimError {
    /// NATS or JetStream cannot be reached: the client is served from this node alone.
    #[error("the cluster is unreachable: {0}")]
    Unreachable(String),
    /// The node holding the session did not release it in time.
    #[error("node {0:?} did not release the session in time")]
    Held(String),
}

/// What connections use to claim their sessions.
pub(crate) struct Claims {
    client: Client,
    jetstream: jetstream::Context,
    node: String,
    stream: OnceCell<stream::Stream>,
}

impl std::fmt::Debug for Claims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claims").field("node", &self.node).finish()
    }
}

#[derive(Serialize, Deserialize)]
struct ReleaseRequest {
    client_id: String,
}

impl Claims {
    pub(crate) fn new(client: Client, node: String) -> Claims {
        Claims {
            jetstream: jetstream::new(client.clone()),
            client,
            node,
            stream: OnceCell::new(),
        }
    }

    /// Makes this node the holder of the session of `client_id` before its CONNECT is
    /// handled: another node holding it releases it (closing its connection there). Returns
    /// the session to adopt, unless the client starts a new one (`clean_start`) or there is
    /// none in the cluster.
    pub(crate) async fn claim(
        &self,
        client_id: &str,
        clean_start: bool,
    ) -> Result<Option<StoredSession>, ClaimError> {
        if self.client.connection_state() != async_nats::connection::State::Connected {
            return Err(ClaimError::Unreachable("not connected to NATS".into()));
        }
        let subject = subject(client_id);
        let stream = tokio::time::timeout(
            CLAIM_TIMEOUT,
            self.stream.get_or_try_init(|| log_stream(&self.jetstream)),
        )
        .await
        .map_err(|_| ClaimError::Unreachable("JetStream did not answer".into()))?
        .map_err(ClaimError::Unreachable)?;
        let last = tokio::time::timeout(CLAIM_TIMEOUT, last_writer(stream, &subject))
            .await
            .map_err(|_| ClaimError::Unreachable("JetStream did not answer".into()))?
            .map_err(ClaimError::Unreachable)?;
        let Some((holder, _)) = last else {
            return Ok(None);
        };
        if holder != self.node {
            self.release_from(&holder, client_id).await?;
        }
        if clean_start {
            return Ok(None);
        }
        let image = tokio::time::timeout(CLAIM_TIMEOUT, read(stream, &subject))
            .await
            .map_err(|_| ClaimError::Unreachable("JetStream did not answer".into()))?
            .map_err(ClaimError::Unreachable)?;
        Ok(image.and_then(|(image, _, _)| image.into_stored(unix_now())))
    }

    /// Asks `holder` to release the session; a holder that is gone releases nothing.
    async fn release_from(&self, holder: &str, client_id: &str) -> Result<(), ClaimError> {
        let request = ReleaseRequest {
            client_id: client_id.to_owned(),
        };
        let payload = serde_json::to_vec(&request).unwrap_or_default();
        let asked = self.client.request(release_subject(holder), payload.into());
        match tokio::time::timeout(CLAIM_TIMEOUT, asked).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error))
                if matches!(
                    error.kind(),
                    async_nats::client::RequestErrorKind::NoResponders
                ) =>
            {
                info!(
                    client_id = %client_id,
                    "cluster: node {holder:?}, which held the session of {client_id:?}, is gone; resuming it from the log"
                );
                Ok(())
            }
            Ok(Err(error)) => Err(ClaimError::Unreachable(error.to_string())),
            Err(_) => Err(ClaimError::Held(holder.to_owned())),
        }
    }
}

/// Answers other nodes' requests to release a session held here, until NATS closes.
pub(crate) async fn answer_releases(client: Client, node: String, broker: BrokerHandle) {
    let mut requests = match client.subscribe(release_subject(&node)).await {
        Ok(requests) => requests,
        Err(error) => {
            warn!("cluster: cannot answer session releases: {error}");
            return;
        }
    };
    while let Some(message) = requests.next().await {
        let Some(reply) = message.reply.clone() else {
            continue;
        };
        let Ok(request) = serde_json::from_slice::<ReleaseRequest>(&message.payload) else {
            continue;
        };
        let (done, released) = oneshot::channel();
        let command = Command::Release {
            client_id: request.client_id,
            done,
        };
        if broker.send(command).await.is_err() {
            return;
        }
        let client = client.clone();
        // Answered once the session's last records are in the log, without holding up the
        // next request.
        tokio::spawn(async move {
            if released.await.is_ok() {
                let _ = client.publish(reply, "released".into()).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mqtt_codec::{ProtocolVersion, QoS, RetainHandling, SubscriptionOptions};

    fn publish(topic: &str, payload: &'static [u8], qos: QoS) -> PublishPacket {
        PublishPacket {
            dup: false,
            qos,
            retain: false,
            topic: topic.into(),
            packet_id: None,
            properties: Default::default(),
            payload: bytes::Bytes::from_static(payload),
        }
    }

    #[test]
    fn a_log_folds_into_the_session_it_describes() {
        let now = unix_now();
        let session = Record::Session {
            client_id: "c".into(),
            protocol: 4,
            expiry_interval: 300,
            expires_at: Some(now + 60_000),
            connected: false,
            will: None,
        };
        let queued = |entry, payload| Record::Queued {
            entry,
            publish: encode_publish(publish("a/b", payload, QoS::AtLeastOnce)).unwrap(),
            expires_at: None,
            packet_id: None,
        };
        let options = SubscriptionOptions {
            qos: QoS::AtLeastOnce,
            ..SubscriptionOptions::default()
        };
        let mut fold = Fold::default();
        for record in [
            Record::Subscribed {
                filter: "ignored".into(),
                options: 1,
                identifier: None,
            },
            Record::Reset,
            session,
            Record::Subscribed {
                filter: "a/#".into(),
                options: options_byte(options),
                identifier: Some(7),
            },
            Record::Subscribed {
                filter: "x".into(),
                options: 0,
                identifier: None,
            },
            Record::Unsubscribed { filter: "x".into() },
            queued(1, b"one"),
            queued(2, b"two"),
            queued(3, b"three"),
            Record::Sent {
                entry: 1,
                packet_id: 9,
            },
            Record::Completed { entry: 2 },
            Record::Qos2Received { packet_id: 4 },
            Record::Qos2Received { packet_id: 5 },
            Record::Qos2Released { packet_id: 4 },
        ] {
            fold.apply(record);
        }
        let stored = fold.image.clone().unwrap().into_stored(now).unwrap();
        assert_eq!(stored.client_id.as_str(), "c");
        assert_eq!(stored.protocol, ProtocolVersion::V311);
        assert_eq!(stored.subscriptions.len(), 1);
        assert_eq!(stored.subscriptions[0].filter.as_str(), "a/#");
        assert_eq!(stored.subscriptions[0].options, options);
        assert_eq!(stored.subscriptions[0].identifier, Some(7));
        assert_eq!(stored.inflight.len(), 1);
        assert_eq!(stored.inflight[0].packet_id, 9);
        assert_eq!(&stored.inflight[0].message.publish.payload[..], b"one");
        assert_eq!(stored.next_packet_id, 10);
        let queue: Vec<u64> = stored.queue.iter().map(|q| q.entry).collect();
        assert_eq!(queue, [3]);
        assert_eq!(stored.inbound_qos2, [5]);
        assert!(
            stored
                .expires_in
                .is_some_and(|left| left <= Duration::from_secs(60))
        );

        // An image stands for everything before it, and reads back as it was written.
        let image = fold.image.clone().unwrap();
        let records = vec![Record::Image(Box::new(image.clone()))];
        let written = serde_json::to_vec(&records).unwrap();
        let mut again = Fold::default();
        for record in serde_json::from_slice::<Vec<Record>>(&written).unwrap() {
            again.apply(record);
        }
        assert_eq!(again.image, Some(image));

        fold.apply(Record::Removed);
        assert_eq!(fold.image, None);
    }

    #[test]
    fn an_expired_session_is_not_adopted_but_one_lost_with_its_node_is() {
        let now = unix_now();
        let image = Image {
            client_id: "c".into(),
            protocol: 5,
            expiry_interval: 10,
            expires_at: Some(now - 1),
            ..Image::default()
        };
        assert_eq!(image.clone().into_stored(now), None);
        let lost = Image {
            connected: true,
            expires_at: None,
            ..image
        };
        let stored = lost.into_stored(now).unwrap();
        assert!(stored.connected);
        assert_eq!(stored.expires_in, None);
    }

    #[test]
    fn options_and_wills_survive_the_log() {
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            for handling in [
                RetainHandling::SendAtSubscribe,
                RetainHandling::SendIfNew,
                RetainHandling::DoNotSend,
            ] {
                for (no_local, rap) in [(false, false), (true, false), (false, true), (true, true)]
                {
                    let options = SubscriptionOptions {
                        qos,
                        no_local,
                        retain_as_published: rap,
                        retain_handling: handling,
                    };
                    assert_eq!(options_from_byte(options_byte(options)).ok(), Some(options));
                }
            }
        }
        let mut will = Will {
            topic: "w".into(),
            payload: bytes::Bytes::from_static(b"gone"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Default::default(),
        };
        will.properties.will_delay_interval = Some(30);
        will.properties.content_type = Some("text/plain".into());
        let record = will_record(&will, Some(5)).unwrap();
        assert_eq!(record.delay, Some(30));
        assert_eq!(will_from(&record), Some(will));
    }
}
