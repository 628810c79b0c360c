//! The store's tests: records applied and loaded back, shared messages, migration of the
//! format-1 fixture, refusal of foreign files, and writes that fail and are retried.

use super::*;
use crate::config::Durability;
use broker_core::{KeptPublish, SessionRecord};
use bytes::Bytes;
use mqtt_codec::{
    Properties, ProtocolVersion, PublishPacket, QoS, RetainHandling, SubscriptionOptions, Will,
};
use redb::backends::FileBackend;
use redb::{StorageBackend, TableHandle};
use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::sync::watch;

const HOUR: Duration = Duration::from_secs(3600);

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static COUNT: AtomicU64 = AtomicU64::new(0);
        let unique = COUNT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "gateway-store-{name}-{}-{unique}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn file(&self) -> PathBuf {
        self.0.join(FILE_NAME)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn publish(topic: &str, payload: &'static [u8], qos: QoS) -> PublishPacket {
    PublishPacket {
        dup: false,
        qos,
        retain: false,
        topic: ByteStr::from(topic),
        packet_id: None,
        properties: Properties::EMPTY,
        payload: Bytes::from_static(payload),
    }
}

fn options(qos: QoS) -> SubscriptionOptions {
    SubscriptionOptions {
        qos,
        no_local: false,
        retain_as_published: false,
        retain_handling: RetainHandling::SendAtSubscribe,
    }
}

fn session(id: u64, client_id: &str) -> SessionRecord {
    SessionRecord {
        id,
        client_id: ByteStr::from(client_id),
        protocol: ProtocolVersion::V5,
        expiry_interval: 3600,
        expires_at: None,
        connected: true,
        will: None,
        will_at: None,
    }
}

fn message(id: u64, publish: PublishPacket) -> Change {
    Change::Message {
        id,
        publish: KeptPublish::new(publish),
        expires_at: None,
    }
}

fn queued(session: u64, entry: u64, message: u64, packet_id: Option<u16>) -> Change {
    Change::Queued {
        session,
        entry,
        message,
        qos: QoS::AtLeastOnce,
        retain: false,
        identifiers: Vec::new(),
        packet_id,
    }
}

/// The rows of a table.
fn rows<K: redb::Key + 'static, V: redb::Value + 'static>(
    store: &Store,
    table: TableDefinition<K, V>,
) -> u64 {
    let read = store.database().unwrap().begin_read().unwrap();
    read.open_table(table).unwrap().len().unwrap()
}

/// The in-memory reference counts must always be what the file says.
fn assert_references_right(store: &mut Store) {
    let (kept, counted) = store.references_both_ways();
    assert_eq!(
        kept, counted,
        "reference counts drifted from the entries table"
    );
}

/// A store whose file sits in a fresh temporary directory.
fn open(dir: &TempDir) -> Store {
    Store::open(&dir.0).unwrap()
}

#[test]
fn every_change_kind_survives_apply_and_load() {
    let dir = TempDir::new("kinds");
    let base = Instant::now();
    let clock = Clock::new(base, SystemTime::now());
    let mut store = open(&dir);

    let mut retained = publish("r/a", b"A", QoS::AtLeastOnce);
    retained.retain = true;
    retained.properties.content_type = Some(ByteStr::from("text/plain"));
    retained.properties.user_properties = vec![(ByteStr::from("k"), ByteStr::from("v"))];
    retained.properties.message_expiry_interval = Some(3600);
    let mut cleared = publish("r/b", b"B", QoS::AtMostOnce);
    cleared.retain = true;

    let will = Will {
        topic: ByteStr::from("status/alpha"),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: Properties {
            will_delay_interval: Some(10),
            correlation_data: Some(Bytes::from_static(b"\x00\x01")),
            response_topic: Some(ByteStr::from("reply/alpha")),
            payload_format_indicator: Some(1),
            ..Properties::EMPTY
        },
    };
    let alpha = SessionRecord {
        connected: false,
        expires_at: Some(base + HOUR),
        will: Some(Box::new(will.clone())),
        will_at: Some(base + Duration::from_secs(10)),
        ..session(1, "alpha")
    };
    let beta = SessionRecord {
        protocol: ProtocolVersion::V311,
        expiry_interval: u32::MAX,
        ..session(2, "beta")
    };
    let shared_options = SubscriptionOptions {
        qos: QoS::ExactlyOnce,
        no_local: true,
        retain_as_published: true,
        retain_handling: RetainHandling::DoNotSend,
    };
    // The copy the first recipient got, subscription identifier and all: the store keeps the
    // message once, and each entry its own identifiers.
    let mut one = publish("s/1", b"one", QoS::ExactlyOnce);
    one.properties.subscription_identifiers = vec![7];
    let changes = vec![
        Change::Retained {
            topic: ByteStr::from("r/a"),
            message: Some((KeptPublish::new(retained.clone()), Some(base + HOUR))),
        },
        Change::Retained {
            topic: ByteStr::from("r/b"),
            message: Some((KeptPublish::new(cleared), None)),
        },
        Change::Retained {
            topic: ByteStr::from("r/b"),
            message: None,
        },
        Change::Session(Box::new(alpha)),
        Change::Session(Box::new(beta)),
        Change::Session(Box::new(session(3, "gamma"))),
        Change::Subscribed {
            session: 1,
            filter: ByteStr::from("s/#"),
            options: options(QoS::AtLeastOnce),
            identifier: Some(7),
        },
        Change::Subscribed {
            session: 1,
            filter: ByteStr::from("$share/g/t/+"),
            options: shared_options,
            identifier: None,
        },
        Change::Subscribed {
            session: 1,
            filter: ByteStr::from("x"),
            options: options(QoS::AtMostOnce),
            identifier: None,
        },
        Change::Unsubscribed {
            session: 1,
            filter: ByteStr::from("x"),
        },
        Change::Subscribed {
            session: 2,
            filter: ByteStr::from("s/#"),
            options: options(QoS::ExactlyOnce),
            identifier: None,
        },
        Change::Message {
            id: 10,
            publish: KeptPublish::new(one),
            expires_at: Some(base + HOUR),
        },
        Change::Queued {
            session: 1,
            entry: 1,
            message: 10,
            qos: QoS::AtLeastOnce,
            retain: false,
            identifiers: vec![7],
            packet_id: None,
        },
        Change::Queued {
            session: 2,
            entry: 1,
            message: 10,
            qos: QoS::ExactlyOnce,
            retain: true,
            identifiers: Vec::new(),
            packet_id: Some(5),
        },
        message(11, publish("s/2", b"two", QoS::AtLeastOnce)),
        queued(1, 2, 11, None),
        message(12, publish("s/3", b"three", QoS::AtLeastOnce)),
        queued(1, 3, 12, None),
        Change::Sent {
            session: 1,
            entry: 1,
            packet_id: 17,
        },
        Change::Released {
            session: 2,
            entry: 1,
        },
        Change::Completed {
            session: 1,
            entry: 2,
        },
        Change::Qos2Received {
            session: 1,
            packet_id: 100,
        },
        Change::Qos2Received {
            session: 1,
            packet_id: 200,
        },
        Change::Qos2Released {
            session: 1,
            packet_id: 100,
        },
        // A session that goes with everything it held.
        Change::Subscribed {
            session: 3,
            filter: ByteStr::from("g"),
            options: options(QoS::AtLeastOnce),
            identifier: None,
        },
        message(13, publish("g", b"gamma only", QoS::AtLeastOnce)),
        queued(3, 1, 13, None),
        queued(3, 2, 10, Some(1)),
        Change::Qos2Received {
            session: 3,
            packet_id: 5,
        },
        Change::SessionRemoved { session: 3 },
    ];
    store.apply(&changes, &clock).unwrap();
    assert_references_right(&mut store);
    drop(store);

    let mut store = open(&dir);
    let loaded = store.load_at(clock.unix_ms(base)).unwrap();

    let with_entry = |mut publish: PublishPacket, qos, retain, identifiers| {
        publish.qos = qos;
        publish.retain = retain;
        publish.properties.subscription_identifiers = identifiers;
        publish
    };
    let expected = Snapshot {
        retained: vec![StoredMessage {
            publish: KeptPublish::new(retained),
            expires_in: Some(HOUR),
        }],
        sessions: vec![
            StoredSession {
                id: 1,
                client_id: ByteStr::from("alpha"),
                protocol: ProtocolVersion::V5,
                expiry_interval: 3600,
                expires_in: Some(HOUR),
                connected: false,
                subscriptions: vec![
                    StoredSubscription {
                        filter: ByteStr::from("$share/g/t/+"),
                        options: shared_options,
                        identifier: None,
                    },
                    StoredSubscription {
                        filter: ByteStr::from("s/#"),
                        options: options(QoS::AtLeastOnce),
                        identifier: Some(7),
                    },
                ],
                inflight: vec![StoredInflight {
                    entry: 1,
                    packet_id: 17,
                    message: StoredMessage {
                        publish: KeptPublish::new(with_entry(
                            publish("s/1", b"one", QoS::ExactlyOnce),
                            QoS::AtLeastOnce,
                            false,
                            vec![7],
                        )),
                        expires_in: Some(HOUR),
                    },
                    released: false,
                }],
                queue: vec![StoredEntry {
                    entry: 3,
                    message: StoredMessage {
                        publish: KeptPublish::new(publish("s/3", b"three", QoS::AtLeastOnce)),
                        expires_in: None,
                    },
                }],
                inbound_qos2: vec![200],
                next_packet_id: 18,
                will: Some(will),
                will_in: Some(Duration::from_secs(10)),
            },
            StoredSession {
                id: 2,
                client_id: ByteStr::from("beta"),
                protocol: ProtocolVersion::V311,
                expiry_interval: u32::MAX,
                expires_in: None,
                connected: true,
                subscriptions: vec![StoredSubscription {
                    filter: ByteStr::from("s/#"),
                    options: options(QoS::ExactlyOnce),
                    identifier: None,
                }],
                inflight: vec![StoredInflight {
                    entry: 1,
                    packet_id: 5,
                    message: StoredMessage {
                        publish: KeptPublish::new(with_entry(
                            publish("s/1", b"one", QoS::ExactlyOnce),
                            QoS::ExactlyOnce,
                            true,
                            Vec::new(),
                        )),
                        expires_in: Some(HOUR),
                    },
                    released: true,
                }],
                queue: Vec::new(),
                inbound_qos2: Vec::new(),
                next_packet_id: 6,
                will: None,
                will_in: None,
            },
        ],
        next_message_id: 13,
    };
    assert_eq!(loaded, expected);
    // Message 11 went with its last entry, 13 with its session; 10 and 12 are still held.
    assert_eq!(rows(&store, MESSAGES), 2);
    assert_eq!(rows(&store, SUBSCRIPTIONS), 3);
    assert_eq!(rows(&store, INBOUND), 1);
    assert_references_right(&mut store);
}

#[test]
fn a_message_held_by_two_sessions_is_stored_once_and_goes_with_its_last_entry() {
    let dir = TempDir::new("shared");
    let clock = Clock::now();
    let mut store = open(&dir);
    let big = publish("big", &[0x55; 10_000], QoS::AtLeastOnce);
    store
        .apply(
            &[
                Change::Session(Box::new(session(1, "a"))),
                Change::Session(Box::new(session(2, "b"))),
                message(1, big),
                queued(1, 1, 1, None),
                queued(2, 1, 1, None),
            ],
            &clock,
        )
        .unwrap();
    assert_eq!(rows(&store, MESSAGES), 1);
    assert_eq!(rows(&store, ENTRIES), 2);

    let completed = |session| Change::Completed { session, entry: 1 };
    store.apply(&[completed(1)], &clock).unwrap();
    assert_eq!(rows(&store, MESSAGES), 1, "still held by session 2");
    assert_references_right(&mut store);
    store.apply(&[completed(2)], &clock).unwrap();
    assert_eq!(rows(&store, MESSAGES), 0, "gone with its last entry");
    assert_eq!(rows(&store, ENTRIES), 0);
    assert_references_right(&mut store);

    // A message whose entries come and go within one batch never stays behind either.
    store
        .apply(
            &[
                message(2, publish("t", b"x", QoS::AtLeastOnce)),
                queued(1, 2, 2, None),
                Change::Completed {
                    session: 1,
                    entry: 2,
                },
                queued(2, 2, 2, None),
            ],
            &clock,
        )
        .unwrap();
    assert_eq!(
        rows(&store, MESSAGES),
        1,
        "re-referenced later in the batch"
    );
    store
        .apply(
            &[Change::Completed {
                session: 2,
                entry: 2,
            }],
            &clock,
        )
        .unwrap();
    assert_eq!(rows(&store, MESSAGES), 0);
    assert_references_right(&mut store);
}

#[test]
fn a_removed_session_takes_its_rows_and_unshared_messages_with_it() {
    let dir = TempDir::new("removed");
    let clock = Clock::now();
    let mut store = open(&dir);
    let mut changes = vec![
        Change::Session(Box::new(session(1, "a"))),
        Change::Session(Box::new(session(2, "b"))),
    ];
    for session in [1, 2] {
        changes.push(Change::Subscribed {
            session,
            filter: ByteStr::from("a/#"),
            options: options(QoS::AtLeastOnce),
            identifier: None,
        });
        changes.push(Change::Qos2Received {
            session,
            packet_id: 9,
        });
    }
    changes.extend([
        message(1, publish("a/shared", b"both", QoS::AtLeastOnce)),
        queued(1, 1, 1, Some(1)),
        queued(2, 1, 1, None),
        message(2, publish("a/own", b"only a", QoS::AtLeastOnce)),
        queued(1, 2, 2, None),
        message(3, publish("a/own2", b"only a", QoS::AtLeastOnce)),
        queued(1, 3, 3, None),
    ]);
    store.apply(&changes, &clock).unwrap();
    store
        .apply(&[Change::SessionRemoved { session: 1 }], &clock)
        .unwrap();
    assert_eq!(rows(&store, SESSIONS), 1);
    assert_eq!(rows(&store, SUBSCRIPTIONS), 1);
    assert_eq!(rows(&store, INBOUND), 1);
    assert_eq!(rows(&store, ENTRIES), 1);
    assert_eq!(rows(&store, MESSAGES), 1, "only the message b still holds");
    assert_references_right(&mut store);
    let loaded = store.load().unwrap();
    assert_eq!(loaded.sessions.len(), 1);
    assert_eq!(loaded.sessions[0].client_id, "b");
    assert_eq!(
        loaded.sessions[0].queue[0].message.publish.topic,
        "a/shared"
    );
    assert_eq!(loaded.sessions[0].inbound_qos2, vec![9]);
}

#[test]
fn entries_keep_their_order_packet_ids_and_released_flags() {
    let dir = TempDir::new("order");
    let clock = Clock::now();
    let mut store = open(&dir);
    let mut changes = vec![Change::Session(Box::new(session(1, "a")))];
    // More than 256 entries, so that the order is numeric, not that of the bytes' first digit.
    for entry in 1..=300u64 {
        changes.push(message(entry, publish("o", b"x", QoS::ExactlyOnce)));
        let in_flight = entry <= 3;
        let packet_id = u16::try_from(entry).unwrap() + 1000;
        changes.push(queued(1, entry, entry, in_flight.then_some(packet_id)));
    }
    changes.push(Change::Released {
        session: 1,
        entry: 2,
    });
    changes.push(Change::Sent {
        session: 1,
        entry: 4,
        packet_id: 2004,
    });
    // Updates of entries that are gone change nothing.
    changes.push(Change::Sent {
        session: 1,
        entry: 999,
        packet_id: 1,
    });
    changes.push(Change::Released {
        session: 1,
        entry: 999,
    });
    store.apply(&changes, &clock).unwrap();
    let loaded = store.load().unwrap();
    let session = &loaded.sessions[0];
    let inflight: Vec<(u64, u16, bool)> = session
        .inflight
        .iter()
        .map(|m| (m.entry, m.packet_id, m.released))
        .collect();
    assert_eq!(
        inflight,
        vec![
            (1, 1001, false),
            (2, 1002, true),
            (3, 1003, false),
            (4, 2004, false)
        ]
    );
    let queue: Vec<u64> = session.queue.iter().map(|m| m.entry).collect();
    assert_eq!(queue, (5..=300).collect::<Vec<_>>());
    assert_eq!(session.next_packet_id, 2005);
    assert_eq!(loaded.next_message_id, 301);
}

#[test]
fn only_the_last_retained_record_of_a_topic_in_a_batch_is_written() {
    let dir = TempDir::new("superseded");
    let clock = Clock::now();
    let mut store = open(&dir);
    let retained = |topic: &str, payload: &'static [u8]| {
        let mut publish = publish(topic, payload, QoS::AtLeastOnce);
        publish.retain = true;
        Change::Retained {
            topic: ByteStr::from(topic),
            message: Some((KeptPublish::new(publish), None)),
        }
    };
    let cleared = |topic: &str| Change::Retained {
        topic: ByteStr::from(topic),
        message: None,
    };
    let batch = [
        retained("a", b"1"),
        retained("b", b"1"),
        retained("a", b"2"),
        cleared("b"),
        retained("c", b"1"),
        cleared("c"),
        retained("c", b"3"),
    ];
    assert_eq!(
        superseded_retained(&batch),
        HashSet::from([0, 1, 4, 5]),
        "each topic's earlier records"
    );
    store.apply(&batch, &clock).unwrap();
    let loaded = store.load().unwrap();
    let held: Vec<(String, Vec<u8>)> = loaded
        .retained
        .iter()
        .map(|m| (m.publish.topic.to_string(), m.publish.payload.to_vec()))
        .collect();
    assert_eq!(
        held,
        [
            ("a".to_string(), b"2".to_vec()),
            ("c".to_string(), b"3".to_vec())
        ]
    );
}

#[test]
fn times_are_absolute_so_downtime_counts() {
    let dir = TempDir::new("times");
    let clock = Clock::now();
    let now = Instant::now();
    let mut store = open(&dir);
    let mut retained = publish("r", b"1", QoS::AtMostOnce);
    retained.retain = true;
    store
        .apply(
            &[
                Change::Retained {
                    topic: ByteStr::from("r"),
                    message: Some((KeptPublish::new(retained), Some(now + HOUR))),
                },
                Change::Session(Box::new(SessionRecord {
                    connected: false,
                    expires_at: Some(now + HOUR),
                    ..session(1, "a")
                })),
            ],
            &clock,
        )
        .unwrap();
    drop(store);

    let mut store = open(&dir);
    let loaded = store.load().unwrap();
    let left = loaded.retained[0].expires_in.unwrap();
    assert!(
        left <= HOUR && left > HOUR - Duration::from_secs(60),
        "{left:?}"
    );
    let left = loaded.sessions[0].expires_in.unwrap();
    assert!(
        left <= HOUR && left > HOUR - Duration::from_secs(60),
        "{left:?}"
    );

    // Half an hour later: half an hour left.
    let later = clock.unix_ms(now) + 1_800_000;
    let loaded = store.load_at(later).unwrap();
    assert_eq!(loaded.retained[0].expires_in, Some(HOUR / 2));
    assert_eq!(loaded.sessions[0].expires_in, Some(HOUR / 2));

    // Two hours later the retained message is gone, from the file too; the session is given
    // zero, and the core ends it.
    let loaded = store.load_at(clock.unix_ms(now) + 7_200_000).unwrap();
    assert!(loaded.retained.is_empty());
    assert_eq!(loaded.sessions[0].expires_in, Some(Duration::ZERO));
    assert_eq!(rows(&store, RETAINED), 0);
}

#[test]
fn the_clock_converts_instants_either_side_of_its_origin() {
    let origin = Instant::now();
    let clock = Clock::new(origin, UNIX_EPOCH + Duration::from_secs(1_000));
    assert_eq!(clock.unix_ms(origin), 1_000_000);
    assert_eq!(
        clock.unix_ms(origin + Duration::from_millis(1500)),
        1_001_500
    );
    if let Some(before) = origin.checked_sub(Duration::from_secs(2)) {
        assert_eq!(clock.unix_ms(before), 998_000);
    }
}

/// The saved_at of a format-1 file, read directly.
fn saved_at(file: &Path) -> u64 {
    let database = Database::open(file).unwrap();
    let read = database.begin_read().unwrap();
    let meta = read.open_table(META).unwrap();
    assert_eq!(meta.get(FORMAT_KEY).unwrap().unwrap().value(), 1);
    meta.get(format::v1::SAVED_AT).unwrap().unwrap().value()
}

#[test]
fn the_format_1_fixture_is_migrated_with_everything_it_holds() {
    let dir = TempDir::new("fixture");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-format-1.redb");
    std::fs::copy(&fixture, dir.file()).unwrap();
    let saved_at = saved_at(&dir.file());
    let mut store = open(&dir);
    // As if the gateway had been down a minute.
    let minute = Duration::from_secs(60);
    let loaded = store.load_at(saved_at + 60_000).unwrap();
    drop(store);

    let day = Duration::from_secs(86_400);
    assert_eq!(loaded.retained.len(), 2);
    let expiring = &loaded.retained[0];
    let expiring_properties = expiring.publish.properties.as_deref().unwrap();
    assert_eq!(expiring.publish.topic, "fixture/retained/expiring");
    assert_eq!(expiring.publish.payload, "expires in a day");
    assert_eq!(expiring.publish.qos, QoS::AtLeastOnce);
    assert!(expiring.publish.retain);
    assert_eq!(
        expiring_properties.content_type.as_deref(),
        Some("text/plain")
    );
    assert_eq!(expiring_properties.message_expiry_interval, Some(86_400));
    let left = expiring.expires_in.unwrap();
    assert!(left <= day - minute && left > day - minute * 2, "{left:?}");
    let plain = &loaded.retained[1];
    assert_eq!(plain.publish.topic, "fixture/retained/plain");
    assert_eq!(plain.publish.payload, "21.5");
    assert_eq!(plain.publish.properties, None);
    assert_eq!(plain.expires_in, None);

    assert_eq!(loaded.sessions.len(), 2);
    let v311 = &loaded.sessions[0];
    assert_eq!(v311.client_id, "fixture-v311");
    assert_eq!(v311.protocol, ProtocolVersion::V311);
    assert_eq!(v311.expiry_interval, u32::MAX);
    assert_eq!(v311.expires_in, None);
    assert!(!v311.connected);
    assert_eq!(v311.subscriptions.len(), 1);
    assert_eq!(v311.subscriptions[0].filter, "fixture/exactly/#");
    assert_eq!(v311.subscriptions[0].options.qos, QoS::ExactlyOnce);
    assert!(v311.inflight.is_empty());
    assert_eq!(v311.queue.len(), 1);
    let once = &v311.queue[0].message.publish;
    assert_eq!(
        (once.topic.as_str(), &once.payload[..], once.qos),
        (
            "fixture/exactly/once",
            &b"exactly once"[..],
            QoS::ExactlyOnce
        )
    );
    assert!(v311.inbound_qos2.is_empty());
    assert_eq!(v311.will, None);

    let v5 = &loaded.sessions[1];
    assert_eq!(v5.client_id, "fixture-v5");
    assert_eq!(v5.protocol, ProtocolVersion::V5);
    assert_eq!(v5.expiry_interval, 86_400);
    let left = v5.expires_in.unwrap();
    assert!(left <= day - minute && left > day - minute * 2, "{left:?}");
    let filters: Vec<(&str, QoS, Option<u32>)> = v5
        .subscriptions
        .iter()
        .map(|s| (s.filter.as_str(), s.options.qos, s.identifier))
        .collect();
    assert_eq!(
        filters,
        vec![
            ("$share/g/fixture/shared/+", QoS::AtLeastOnce, None),
            ("fixture/queue/#", QoS::AtLeastOnce, Some(7)),
        ]
    );
    assert!(v5.inflight.is_empty());
    type Queued<'a> = (u64, &'a str, &'a [u8], QoS, Vec<u32>);
    let queue: Vec<Queued<'_>> = v5
        .queue
        .iter()
        .map(|q| {
            let p = &q.message.publish;
            (
                q.entry,
                p.topic.as_str(),
                &p.payload[..],
                p.qos,
                p.subscription_identifiers().to_vec(),
            )
        })
        .collect();
    assert_eq!(
        queue,
        vec![
            (
                1,
                "fixture/queue/1",
                &b"queued one"[..],
                QoS::AtLeastOnce,
                vec![7]
            ),
            (
                2,
                "fixture/queue/2",
                &b"queued two"[..],
                QoS::AtLeastOnce,
                vec![7]
            ),
            (
                3,
                "fixture/shared/a",
                &b"queued three"[..],
                QoS::AtLeastOnce,
                vec![]
            ),
        ]
    );
    let two = &v5.queue[1].message;
    assert_eq!(
        two.publish.properties.as_deref().unwrap().user_properties,
        vec![(ByteStr::from("k"), ByteStr::from("v"))]
    );
    let left = two.expires_in.unwrap();
    assert!(left <= day - minute && left > day - minute * 2, "{left:?}");
    assert_eq!(v5.queue[0].message.expires_in, None);
    assert!(v5.inbound_qos2.is_empty());
    assert_eq!(v5.will, None);
    assert_eq!(loaded.next_message_id, 5, "4 messages, one per entry");

    // Migrated once: the file is in the current layout now, and says the same.
    let mut store = open(&dir);
    let version = {
        let read = store.database().unwrap().begin_read().unwrap();
        let meta = read.open_table(META).unwrap();
        meta.get(FORMAT_KEY).unwrap().unwrap().value()
    };
    assert_eq!(version, format::VERSION);
    assert_eq!(store.load_at(saved_at + 60_000).unwrap(), loaded);
    assert_references_right(&mut store);

    // Two days on, the expiring retained message is gone and the v5 session due to expire.
    let loaded = store.load_at(saved_at + 2 * 86_400_000).unwrap();
    assert_eq!(loaded.retained.len(), 1);
    assert_eq!(loaded.sessions[1].expires_in, Some(Duration::ZERO));
}

#[test]
fn truncated_format_1_values_are_errors_not_panics() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-format-1.redb");
    let dir = TempDir::new("v1-truncated");
    std::fs::copy(&fixture, dir.file()).unwrap();
    let database = Database::open(dir.file()).unwrap();
    let read = database.begin_read().unwrap();
    let mut values = 0;
    for table in [format::v1::SESSIONS, format::v1::RETAINED] {
        for row in read.open_table(table).unwrap().iter().unwrap() {
            let (key, value) = row.unwrap();
            let value = value.value();
            let decode = |bytes: &[u8]| {
                let mut bytes = Bytes::copy_from_slice(bytes);
                if table.name() == "sessions" {
                    format::v1::decode_session(&mut bytes).map(drop)
                } else {
                    format::v1::decode_message(&mut bytes).map(drop)
                }
            };
            decode(value).unwrap();
            for cut in 0..value.len() {
                assert!(
                    decode(&value[..cut]).is_err(),
                    "{} cut at {cut}",
                    key.value()
                );
            }
            values += 1;
        }
    }
    assert_eq!(values, 2 + 18);
}

#[test]
fn a_store_of_another_layout_version_is_refused() {
    let dir = TempDir::new("version");
    {
        let database = Database::create(dir.file()).unwrap();
        let write = database.begin_write().unwrap();
        write
            .open_table(META)
            .unwrap()
            .insert(FORMAT_KEY, 9)
            .unwrap();
        write.commit().unwrap();
    }
    let error = Store::open(&dir.0).unwrap_err();
    assert!(matches!(error, StoreError::Version { found: 9, .. }));
    assert_eq!(
        error.to_string(),
        format!(
            "store {} was written in layout version 9; this gateway reads versions 1 (migrated) \
             and 2",
            dir.file().display()
        )
    );
}

#[test]
fn a_file_of_garbage_is_refused_and_left_alone() {
    let dir = TempDir::new("garbage");
    let garbage: Vec<u8> = (0..20_000u32).map(|i| (i * 7919 % 251) as u8).collect();
    std::fs::write(dir.file(), &garbage).unwrap();
    let error = Store::open(&dir.0).unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains(&dir.file().display().to_string()),
        "{message}"
    );
    assert_eq!(std::fs::read(dir.file()).unwrap(), garbage, "never reset");
}

#[test]
fn tables_without_a_layout_version_are_refused() {
    let dir = TempDir::new("unversioned");
    {
        let database = Database::create(dir.file()).unwrap();
        let write = database.begin_write().unwrap();
        write
            .open_table(RETAINED)
            .unwrap()
            .insert("t", &b"x"[..])
            .unwrap();
        write.commit().unwrap();
    }
    let error = Store::open(&dir.0).unwrap_err();
    assert!(matches!(error, StoreError::Corrupt { .. }), "{error}");
    assert!(error.to_string().contains("no layout version"), "{error}");
}

#[test]
fn a_value_that_does_not_decode_is_refused_with_its_table_and_the_file() {
    let dir = TempDir::new("corrupt");
    let mut store = open(&dir);
    {
        let write = store.database().unwrap().begin_write().unwrap();
        write
            .open_table(SESSIONS)
            .unwrap()
            .insert(4, &[9u8, 0, 0][..])
            .unwrap();
        write.commit().unwrap();
    }
    let error = store.load().unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, StoreError::Corrupt { .. }), "{message}");
    assert!(message.contains("table sessions, key 4"), "{message}");
    assert!(
        message.contains(&dir.file().display().to_string()),
        "{message}"
    );
}

/// A file backend whose writes fail while `fail` is set, as on a full disk.
#[derive(Debug)]
struct FlakyBackend {
    inner: FileBackend,
    fail: Arc<AtomicBool>,
    /// Whether only the sync fails (the data written, the commit not confirmed).
    sync_only: bool,
}

impl FlakyBackend {
    fn check(&self, sync: bool) -> Result<(), std::io::Error> {
        if self.fail.load(Ordering::SeqCst) && (sync || !self.sync_only) {
            return Err(std::io::Error::other("no space left on device (test)"));
        }
        Ok(())
    }
}

impl StorageBackend for FlakyBackend {
    fn len(&self) -> Result<u64, std::io::Error> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        self.check(false)?;
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> Result<(), std::io::Error> {
        self.check(true)?;
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        self.check(false)?;
        self.inner.write(offset, data)
    }
}

/// A store on a file whose writes fail while the returned flag is set.
fn flaky_store(dir: &TempDir, sync_only: bool) -> (Store, Arc<AtomicBool>) {
    let fail = Arc::new(AtomicBool::new(false));
    let file = dir.file();
    let flag = fail.clone();
    let opener: Opener = Box::new(move || {
        let handle = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&file)?;
        redb::Builder::new().create_with_backend(FlakyBackend {
            inner: FileBackend::new(handle)?,
            fail: flag.clone(),
            sync_only,
        })
    });
    (Store::open_with(dir.file(), opener).unwrap(), fail)
}

fn retry_after_failure(sync_only: bool) {
    let dir = TempDir::new("retry");
    let clock = Clock::now();
    let (mut store, fail) = flaky_store(&dir, sync_only);
    store
        .apply(
            &[
                Change::Session(Box::new(session(1, "a"))),
                Change::Session(Box::new(session(2, "b"))),
                message(1, publish("m/1", b"1", QoS::AtLeastOnce)),
                queued(1, 1, 1, None),
                queued(2, 1, 1, None),
            ],
            &clock,
        )
        .unwrap();

    let batch = vec![
        Change::Completed {
            session: 1,
            entry: 1,
        },
        Change::Completed {
            session: 2,
            entry: 1,
        },
        message(2, publish("m/2", b"2", QoS::AtLeastOnce)),
        queued(1, 2, 2, None),
    ];
    fail.store(true, Ordering::SeqCst);
    let error = store.apply(&batch, &clock).unwrap_err();
    assert!(
        error
            .to_string()
            .contains(&dir.file().display().to_string()),
        "{error}"
    );
    // Still failing: the retry fails too, reopening or not.
    assert!(store.apply(&batch, &clock).is_err());
    fail.store(false, Ordering::SeqCst);

    // The retry carries the failed records and what came after them.
    let mut retry = batch.clone();
    retry.push(queued(2, 2, 2, Some(3)));
    store.apply(&retry, &clock).unwrap();
    assert_references_right(&mut store);
    assert_eq!(
        rows(&store, MESSAGES),
        1,
        "message 1 went with its last entry"
    );
    let loaded = store.load().unwrap();
    let entries: Vec<Vec<(u64, &str)>> = loaded
        .sessions
        .iter()
        .map(|s| {
            let queued = s
                .queue
                .iter()
                .map(|q| (q.entry, q.message.publish.topic.as_str()));
            let inflight = s
                .inflight
                .iter()
                .map(|m| (m.entry, m.message.publish.topic.as_str()));
            inflight.chain(queued).collect()
        })
        .collect();
    assert_eq!(entries, vec![vec![(2, "m/2")], vec![(2, "m/2")]]);
}

#[test]
fn a_batch_that_failed_to_write_is_applied_once_when_retried() {
    retry_after_failure(false);
}

#[test]
fn a_batch_whose_sync_failed_is_applied_once_when_retried() {
    retry_after_failure(true);
}

#[test]
fn records_applied_twice_leave_the_same_state() {
    // What a retry after a commit that failed late but reached the disk does.
    let dir = TempDir::new("twice");
    let clock = Clock::now();
    let mut store = open(&dir);
    let batch = vec![
        Change::Session(Box::new(session(1, "a"))),
        message(1, publish("m/1", b"1", QoS::AtLeastOnce)),
        queued(1, 1, 1, None),
        message(2, publish("m/2", b"2", QoS::AtLeastOnce)),
        queued(1, 2, 2, None),
        Change::Completed {
            session: 1,
            entry: 1,
        },
    ];
    store.apply(&batch, &clock).unwrap();
    let once = store.load().unwrap();
    store.references = None;
    store.apply(&batch, &clock).unwrap();
    assert_references_right(&mut store);
    assert_eq!(store.load().unwrap(), once);
    assert_eq!(rows(&store, MESSAGES), 1);
}

// The writer.

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// Waits until the status satisfies `done`.
async fn wait_for(
    status: &mut watch::Receiver<StoreStatus>,
    done: impl Fn(&StoreStatus) -> bool,
) -> StoreStatus {
    let waited = tokio::time::timeout(Duration::from_secs(10), status.wait_for(done));
    *waited.await.expect("status in time").expect("writer alive")
}

#[test]
fn the_writer_commits_every_push_in_order_and_reports_it_durable() {
    let dir = TempDir::new("writer");
    let counters = Arc::new(StoreCounters::default());
    runtime().block_on(async {
        let store = open(&dir);
        let (sink, mut status, task) = writer::start(
            store,
            Durability::Full,
            Duration::from_secs(5),
            counters.clone(),
        );
        let mut total = 0;
        let mut records = vec![Change::Session(Box::new(session(1, "a")))];
        total += 1;
        sink.push(&mut records, total);
        assert!(records.is_empty(), "the records were moved");
        for entry in 1..=200 {
            records.push(message(entry, publish("w", b"x", QoS::AtLeastOnce)));
            records.push(queued(1, entry, entry, None));
            total += 2;
            sink.push(&mut records, total);
        }
        let reported = wait_for(&mut status, |s| s.durable == total).await;
        assert!(reported.writable);
        drop(sink);
        task.await.unwrap();
    });
    let commits = counters.commits.load(Ordering::Relaxed);
    assert!((1..=201).contains(&commits), "{commits} commits");
    assert_eq!(counters.changes_written.load(Ordering::Relaxed), 401);
    assert_eq!(counters.write_errors.load(Ordering::Relaxed), 0);
    let loaded = open(&dir).load().unwrap();
    let entries: Vec<u64> = loaded.sessions[0].queue.iter().map(|q| q.entry).collect();
    assert_eq!(entries, (1..=200).collect::<Vec<_>>());
}

#[test]
fn the_relaxed_writer_waits_its_interval_between_commits_but_flushes_when_closed() {
    let dir = TempDir::new("relaxed");
    let counters = Arc::new(StoreCounters::default());
    let interval = Duration::from_millis(300);
    runtime().block_on(async {
        let store = open(&dir);
        let (sink, mut status, task) =
            writer::start(store, Durability::Relaxed, interval, counters.clone());
        sink.push(&mut vec![Change::Session(Box::new(session(1, "a")))], 1);
        wait_for(&mut status, |s| s.durable == 1).await;
        let first = Instant::now();
        sink.push(&mut vec![Change::Session(Box::new(session(2, "b")))], 2);
        wait_for(&mut status, |s| s.durable == 2).await;
        // Less a little for the time between the first commit and our wake-up.
        assert!(first.elapsed() >= interval - Duration::from_millis(50));
        // Pushed and closed at once: written at close, not an interval later.
        sink.push(&mut vec![Change::Session(Box::new(session(3, "c")))], 3);
        drop(sink);
        task.await.unwrap();
    });
    assert_eq!(counters.commits.load(Ordering::Relaxed), 3);
    assert_eq!(open(&dir).load().unwrap().sessions.len(), 3);
}

#[test]
fn the_writer_reports_an_outage_retries_and_recovers() {
    let dir = TempDir::new("outage");
    let counters = Arc::new(StoreCounters::default());
    let (store, fail) = flaky_store(&dir, false);
    runtime().block_on(async {
        let (sink, mut status, task) = writer::start(
            store,
            Durability::Full,
            Duration::from_secs(5),
            counters.clone(),
        );
        sink.push(&mut vec![Change::Session(Box::new(session(1, "a")))], 1);
        wait_for(&mut status, |s| s.durable == 1).await;

        fail.store(true, Ordering::SeqCst);
        sink.push(
            &mut vec![
                message(1, publish("o", b"1", QoS::AtLeastOnce)),
                queued(1, 1, 1, None),
            ],
            3,
        );
        let down = wait_for(&mut status, |s| !s.writable).await;
        assert_eq!(down.durable, 1);
        // More arrives during the outage, and goes in with the failed batch.
        sink.push(
            &mut vec![Change::Completed {
                session: 1,
                entry: 1,
            }],
            4,
        );
        // Let it fail at least twice, then heal the disk.
        tokio::time::sleep(Duration::from_millis(500)).await;
        fail.store(false, Ordering::SeqCst);
        let up = wait_for(&mut status, |s| s.writable && s.durable == 4).await;
        assert_eq!(up.durable, 4);
        drop(sink);
        task.await.unwrap();
    });
    assert!(counters.write_errors.load(Ordering::Relaxed) >= 2);
    let mut store = open(&dir);
    assert_references_right(&mut store);
    assert_eq!(rows(&store, MESSAGES), 0);
    assert_eq!(rows(&store, ENTRIES), 0);
}

#[test]
fn a_writer_closed_during_an_outage_gives_up_in_bounded_time() {
    let dir = TempDir::new("give-up");
    let counters = Arc::new(StoreCounters::default());
    let (store, fail) = flaky_store(&dir, false);
    fail.store(true, Ordering::SeqCst);
    let started = Instant::now();
    runtime().block_on(async {
        let (sink, _status, task) = writer::start(
            store,
            Durability::Full,
            Duration::from_secs(5),
            counters.clone(),
        );
        sink.push(&mut vec![Change::Session(Box::new(session(1, "a")))], 1);
        drop(sink);
        task.await.unwrap();
    });
    assert!(started.elapsed() < Duration::from_secs(4));
    assert!(counters.write_errors.load(Ordering::Relaxed) >= 1);
}

/// Loads a million retained 64-byte messages, and reports the time and the bytes per message.
/// Run with `cargo test -p gateway --release --lib -- --ignored --nocapture load_speed`.
#[test]
#[ignore = "a measurement: run it in a release build"]
fn load_speed_of_a_million_retained_messages() {
    let dir = TempDir::new("bench");
    let clock = Clock::now();
    let mut store = open(&dir);
    let payload = [0x42u8; 64];
    let count = 1_000_000u32;
    let started = Instant::now();
    for chunk in 0..count / 100_000 {
        let changes: Vec<Change> = (0..100_000)
            .map(|i| {
                let topic = ByteStr::from(format!("bench/{}/sensor-{:06}", chunk, i));
                let mut message = publish("", b"", QoS::AtMostOnce);
                message.topic = topic.clone();
                message.retain = true;
                message.payload = Bytes::copy_from_slice(&payload);
                Change::Retained {
                    topic,
                    message: Some((KeptPublish::new(message), None)),
                }
            })
            .collect();
        store.apply(&changes, &clock).unwrap();
    }
    println!("wrote {count} retained messages in {:?}", started.elapsed());
    drop(store);
    let size = std::fs::metadata(dir.file()).unwrap().len();
    let mut store = open(&dir);
    let started = Instant::now();
    let loaded = store.load().unwrap();
    let took = started.elapsed();
    assert_eq!(loaded.retained.len(), count as usize);
    println!(
        "loaded {count} retained messages in {took:?}; file {size} bytes, {} bytes per message \
         (topic 21 bytes, payload 64)",
        size / u64::from(count)
    );
}
