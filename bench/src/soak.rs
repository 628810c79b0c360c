//! `mqtt-bench soak`: a mixed load held for minutes against one broker, with the broker's
//! resources sampled and every acknowledged message accounted for at the end.
//!
//! The load, over plain TCP (MQTT 3.1.1), each stream at a fixed rate:
//! - fan-in: four publishers (QoS 1, 1, 2 and 0) into one subscriber of `soak/in/+`;
//! - fan-out: one QoS 1 and one QoS 0 stream to ten subscribers of `soak/out/+`;
//! - retained churn: one QoS 1 publisher setting and clearing retained messages on a rotating
//!   set of topics (`soak/retained/0..63`); at the end a fresh subscriber must find exactly the
//!   set the publisher's acknowledged history leaves;
//! - persistent sessions that come and go: eight clients (QoS 1 and QoS 2 streams of their own)
//!   connect, read a while, leave (DISCONNECT or a dropped socket), stay away a while (their
//!   messages queue) and resume, which must find their session present;
//! - clean sessions that come and go: short connections subscribing to the retained topics and
//!   to the fan-out's QoS 0 stream;
//! - a slow consumer: a persistent session that reads at a bounded rate below its streams' for a
//!   while, drops off, stays away, and catches up; its queue overflows the broker's bound
//!   (`--max-queued-messages`), which the broker's policy answers by dropping the new message and
//!   counting it (`mqtt_messages_dropped_total{reason="queue_full"}`);
//! - a probe: a QoS 0 stream at 100 msg/s whose payloads carry their send time, for latency.
//!
//! Every payload carries its stream's number and a sequence number. Each receiver tracks, per
//! stream, which numbers arrived and how often. At the end, after the publishers have had every
//! message acknowledged and the receivers have drained: a QoS 1 or 2 message acknowledged to its
//! publisher and missing at a receiver that was subscribed throughout (connected, or holding a
//! persistent session) is a failure; a QoS 2 message received twice is a failure (the receiver
//! keeps the QoS 2 packet identifiers between PUBREC and PUBREL across reconnections, as the
//! protocol asks, so a redelivery with DUP is not counted twice); QoS 1 duplicates and QoS 0
//! losses are reported. The slow consumer's QoS 1 messages are checked against the policy: those
//! missing must be exactly the messages the broker reports dropped for a full queue (no other
//! session's queue comes near the bound).
//!
//! Every `--sample` seconds the broker's resident memory (`VmRSS` of /proc/PID/status), its open
//! descriptors (/proc/PID/fd) and its connections (`/metrics`) are sampled; every `--interval`
//! seconds one line shows them with the messages delivered per second and the probe's latency.
//! After the warm-up, memory or descriptors that keep growing fail the run (see [`growth`]).

use anyhow::{Context, Result, bail, ensure};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use mqtt_codec::{
    ByteStr, ConnectPacket, Packet, Properties, ProtocolVersion, PubAckPacket, PublishPacket, QoS,
    SubscribePacket, Subscription, SubscriptionOptions, decode, encode,
};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

/// The soak mode's options.
#[derive(Debug, clap::Args)]
pub struct SoakArgs {
    /// Seconds of load (the drain and the checks come after).
    #[arg(long, default_value_t = 1800)]
    seconds: u64,
    /// Seconds between two printed lines.
    #[arg(long, default_value_t = 60)]
    interval: u64,
    /// Seconds between two samples of the broker's memory, descriptors and connections.
    #[arg(long, default_value_t = 5)]
    sample: u64,
    /// Seconds of warm-up that the growth check leaves out; default: the larger of 3 minutes
    /// and a fifth of the run.
    #[arg(long)]
    warmup: Option<u64>,
    /// Process id of the broker, for /proc/PID/status and /proc/PID/fd.
    #[arg(long)]
    pid: u32,
    /// The broker's HTTP address, for `/metrics` (connections, messages dropped).
    #[arg(long)]
    metrics: SocketAddr,
    /// Multiplies every stream's rate.
    #[arg(long, default_value_t = 1.0)]
    rate_scale: f64,
}

impl SoakArgs {
    /// The longest the whole mode may take: the load, then at most a few minutes of setup,
    /// drain and checks.
    pub fn limit(&self) -> Duration {
        Duration::from_secs(self.seconds + 240)
    }

    fn warmup(&self) -> u64 {
        self.warmup.unwrap_or((self.seconds / 5).max(180))
    }
}

/// The growth check runs only when the samples after the warm-up span at least this long:
/// a slope over less is noise (connections come and go every second).
const MIN_CHECKED_SPAN: Duration = Duration::from_secs(120);

/// Payload bytes of every message: stream (4), sequence (8), send time (8), padding.
const PAYLOAD: usize = 64;

/// QoS 1/2 messages a publisher keeps in flight.
const WINDOW: usize = 64;

/// Retained topics the retained churn rotates over.
const RETAINED_TOPICS: u64 = 64;

/// How often a receiver pings the broker: well within the keep alive of 60 s.
const PING_EVERY: Duration = Duration::from_secs(20);

/// The longest a write to the broker may take before the run fails.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// The clock every send time is measured on (the probe's publisher and subscriber share it).
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Where the run is; every client loop watches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Publishers publish, clients come and go.
    Running,
    /// Publishers stop and wait for their acknowledgements; receivers stay (or come back)
    /// connected and read at full speed until everything queued arrived.
    Draining,
    /// Everyone disconnects.
    Stopped,
}

/// One numbered stream: a publisher and its topic.
#[derive(Clone, Debug)]
struct Stream {
    id: u32,
    name: String,
    topic: String,
    qos: QoS,
    /// Messages per second.
    rate: f64,
    /// Retained churn: the topic rotates over [`RETAINED_TOPICS`], and some messages clear.
    retained_churn: bool,
}

/// What a receiver expects: the streams it must hold in full (or, for the slow consumer, as
/// its policy allows), and those whose losses are only reported.
#[derive(Clone, Debug)]
struct Expectation {
    receiver: String,
    stream: u32,
    /// Checked for gaps (QoS 1/2 to a session subscribed throughout).
    strict: bool,
    /// The slow consumer's QoS 1 stream: gaps must match the broker's queue-full drops.
    slow_policy: bool,
}

/// Which sequence numbers of one stream a receiver got, and how many twice or more.
#[derive(Debug, Default)]
struct Track {
    seen: Vec<u64>,
    distinct: u64,
    duplicates: u64,
}

impl Track {
    fn mark(&mut self, sequence: u64) {
        let (word, bit) = ((sequence / 64) as usize, sequence % 64);
        if word >= self.seen.len() {
            self.seen.resize(word + 1, 0);
        }
        if self.seen[word] & (1 << bit) != 0 {
            self.duplicates += 1;
        } else {
            self.seen[word] |= 1 << bit;
            self.distinct += 1;
        }
    }

    /// Sequence numbers below `sent` never received.
    fn missing(&self, sent: u64) -> u64 {
        sent.saturating_sub(self.distinct)
    }
}

/// A receiver's tracks by stream.
type Tracks = Arc<Mutex<HashMap<u32, Track>>>;

/// What every task shares.
struct Shared {
    target: SocketAddr,
    phase: watch::Receiver<Phase>,
    /// PUBLISH packets received by every receiver (duplicates too).
    delivered: AtomicU64,
    /// The probe's latencies in microseconds since the last printed line, and over the run.
    probe_interval: Mutex<Vec<u64>>,
    probe_all: Mutex<Vec<u64>>,
    /// Connections opened by the clients that come and go.
    persistent_resumes: AtomicU64,
    clean_connections: AtomicU64,
    /// Times the broker closed the slow consumer's connection.
    slow_disconnected: AtomicU64,
}

impl Shared {
    fn phase(&self) -> Phase {
        *self.phase.borrow()
    }
}

/// A payload: the stream, the sequence number and the send time, padded.
fn payload(stream: u32, sequence: u64) -> Bytes {
    let mut bytes = BytesMut::with_capacity(PAYLOAD);
    bytes.put_u32(stream);
    bytes.put_u64(sequence);
    bytes.put_u64(epoch().elapsed().as_nanos() as u64);
    bytes.resize(PAYLOAD, b'x');
    bytes.freeze()
}

/// The stream, sequence number and send time (nanoseconds since [`epoch`]) of a payload.
fn parse_payload(mut bytes: &[u8]) -> Option<(u32, u64, u64)> {
    if bytes.len() < 20 {
        return None;
    }
    Some((bytes.get_u32(), bytes.get_u64(), bytes.get_u64()))
}

/// One MQTT 3.1.1 client over TCP: reading is cancel-safe (whatever was read stays in `buf`),
/// and packets to send are queued in `out` and written by [`Client::flush`].
struct Client {
    stream: TcpStream,
    buf: BytesMut,
    out: BytesMut,
    /// Bytes made room for before each read: small for the slow consumer while it is slow.
    read_size: usize,
}

impl Client {
    /// Connects and returns the client and the CONNACK's session present flag.
    async fn connect(target: SocketAddr, client_id: &str, clean: bool) -> Result<(Client, bool)> {
        let connecting = async {
            let stream = TcpStream::connect(target).await?;
            stream.set_nodelay(true)?;
            let mut client = Client {
                stream,
                buf: BytesMut::new(),
                out: BytesMut::new(),
                read_size: 64 * 1024,
            };
            client.queue(&Packet::Connect(ConnectPacket {
                protocol: ProtocolVersion::V311,
                clean_start: clean,
                keep_alive: 60,
                client_id: ByteStr::from(client_id),
                will: None,
                username: None,
                password: None,
                properties: Properties::default(),
            }));
            client.flush().await?;
            match client.next().await? {
                Packet::ConnAck(ack) if !ack.reason_code.is_error() => {
                    Ok((client, ack.session_present))
                }
                other => bail!("connection refused: {other:?}"),
            }
        };
        tokio::time::timeout(Duration::from_secs(10), connecting)
            .await
            .with_context(|| format!("{client_id}: no CONNACK within 10 s"))?
            .with_context(|| format!("{client_id}: connecting"))
    }

    fn queue(&mut self, packet: &Packet) {
        encode(packet, ProtocolVersion::V311, &mut self.out).expect("soak packets are valid");
    }

    async fn flush(&mut self) -> Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        tokio::time::timeout(WRITE_TIMEOUT, self.stream.write_all(&self.out))
            .await
            .context("a write to the broker took over 30 s")??;
        self.out.clear();
        Ok(())
    }

    /// The next packet. Cancel-safe: a read cut short leaves its bytes in `buf`.
    async fn next(&mut self) -> Result<Packet> {
        loop {
            if let Some(packet) = decode(&mut self.buf, ProtocolVersion::V311, usize::MAX)? {
                return Ok(packet);
            }
            if self.buf.capacity() - self.buf.len() < self.read_size / 2 {
                self.buf.reserve(self.read_size);
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                bail!("connection closed by the broker");
            }
        }
    }

    /// Subscribes to `filters` and waits for the SUBACK (every filter granted), handling the
    /// messages that may come first (a resumed session's).
    async fn subscribe(
        &mut self,
        filters: &[(&str, QoS)],
        inbound: &mut Inbound,
        shared: &Shared,
    ) -> Result<()> {
        self.queue(&Packet::Subscribe(SubscribePacket {
            packet_id: 1,
            properties: Properties::default(),
            subscriptions: filters
                .iter()
                .map(|(filter, qos)| Subscription {
                    filter: ByteStr::from(*filter),
                    options: SubscriptionOptions {
                        qos: *qos,
                        ..SubscriptionOptions::default()
                    },
                })
                .collect(),
        }));
        self.flush().await?;
        let waiting = async {
            loop {
                match self.next().await? {
                    Packet::SubAck(ack) => {
                        ensure!(
                            ack.reason_codes.iter().all(|code| !code.is_error()),
                            "subscription refused: {ack:?}"
                        );
                        return Ok(());
                    }
                    packet => inbound.handle(packet, self, shared)?,
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .context("no SUBACK within 10 s")?
    }

    /// DISCONNECT, written at once (errors ignored: the client is leaving anyway).
    async fn disconnect(mut self) {
        self.out.put_slice(&[0xE0, 0x00]);
        let _ = self.flush().await;
    }
}

/// The receiving side of a session: records each message in the receiver's tracks, answers
/// QoS 1 and 2, and keeps the QoS 2 identifiers received but not yet released (which outlive
/// a connection when the session does).
struct Inbound {
    tracks: Tracks,
    pending_qos2: HashSet<u16>,
    /// Probe latencies go to [`Shared::probe_interval`].
    probe: bool,
}

impl Inbound {
    fn new(probe: bool) -> Inbound {
        Inbound {
            tracks: Tracks::default(),
            pending_qos2: HashSet::new(),
            probe,
        }
    }

    /// Handles one packet; answers are queued in `client` (not flushed).
    fn handle(&mut self, packet: Packet, client: &mut Client, shared: &Shared) -> Result<()> {
        match packet {
            Packet::Publish(publish) => {
                let counted = match (publish.qos, publish.packet_id) {
                    (QoS::AtMostOnce, _) => true,
                    (QoS::AtLeastOnce, Some(id)) => {
                        client.queue(&Packet::PubAck(PubAckPacket::new(id)));
                        true
                    }
                    (QoS::ExactlyOnce, Some(id)) => {
                        client.queue(&Packet::PubRec(PubAckPacket::new(id)));
                        // A PUBLISH whose identifier awaits its PUBREL is a redelivery.
                        self.pending_qos2.insert(id)
                    }
                    _ => bail!("a QoS 1/2 PUBLISH without a packet identifier"),
                };
                shared.delivered.fetch_add(1, Ordering::Relaxed);
                if counted && !publish.payload.is_empty() {
                    self.record(&publish.payload, shared)?;
                }
            }
            Packet::PubRel(release) => {
                self.pending_qos2.remove(&release.packet_id);
                client.queue(&Packet::PubComp(PubAckPacket::new(release.packet_id)));
            }
            Packet::PingResp => {}
            other => bail!("unexpected packet {other:?}"),
        }
        Ok(())
    }

    fn record(&mut self, payload: &[u8], shared: &Shared) -> Result<()> {
        let (stream, sequence, sent) =
            parse_payload(payload).with_context(|| format!("a foreign payload {payload:?}"))?;
        self.tracks
            .lock()
            .expect("tracks lock")
            .entry(stream)
            .or_default()
            .mark(sequence);
        if self.probe {
            let now = epoch().elapsed().as_nanos() as u64;
            let micros = now.saturating_sub(sent) / 1000;
            shared
                .probe_interval
                .lock()
                .expect("probe lock")
                .push(micros);
            shared.probe_all.lock().expect("probe lock").push(micros);
        }
        Ok(())
    }
}

/// What a publisher reports: how many messages it sent, all of them acknowledged.
#[derive(Debug)]
struct Published {
    stream: u32,
    sent: u64,
}

/// Publishes `stream` at its rate while the phase is `Running`, then waits for its
/// acknowledgements (QoS 2: through PUBCOMP).
async fn publisher(stream: Stream, shared: Arc<Shared>) -> Result<Published> {
    let client_id = format!("soak-pub-{}", stream.name);
    let (mut client, _) = Client::connect(shared.target, &client_id, true).await?;
    let mut phase = shared.phase.clone();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let per_tick = stream.rate / 100.0;
    // Under backpressure the publisher falls behind its rate rather than bursting after.
    let most_credit = (stream.rate / 10.0).max(1.0);
    let mut credit = 0.0;
    let mut sent = 0u64;
    let mut in_flight: HashMap<u16, u64> = HashMap::new();
    let mut next_id: u16 = 0;
    let mut running = true;
    // Armed when the load ends.
    let drain_deadline = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(drain_deadline);
    loop {
        if !running && in_flight.is_empty() {
            break;
        }
        tokio::select! {
            _ = tick.tick(), if running => {
                credit = (credit + per_tick).min(most_credit);
                while credit >= 1.0 && in_flight.len() < WINDOW {
                    credit -= 1.0;
                    let packet_id = (stream.qos != QoS::AtMostOnce).then(|| {
                        next_id = next_id % u16::MAX + 1;
                        next_id
                    });
                    if let Some(id) = packet_id {
                        in_flight.insert(id, sent);
                    }
                    client.queue(&publish_packet(&stream, sent, packet_id));
                    sent += 1;
                }
                client.flush().await?;
            }
            changed = phase.changed(), if running => {
                if changed.is_err() || *phase.borrow() != Phase::Running {
                    running = false;
                    drain_deadline.as_mut().reset(tokio::time::Instant::now() + Duration::from_secs(60));
                }
            }
            () = &mut drain_deadline, if !running => {
                bail!("{client_id}: {} messages unacknowledged 60 s after the load", in_flight.len());
            }
            packet = client.next() => {
                match packet.with_context(|| format!("{client_id}: reading acknowledgements"))? {
                    Packet::PubAck(ack) if stream.qos == QoS::AtLeastOnce => {
                        ensure!(in_flight.remove(&ack.packet_id).is_some(), "{client_id}: PUBACK for unknown {}", ack.packet_id);
                    }
                    Packet::PubRec(ack) if stream.qos == QoS::ExactlyOnce => {
                        ensure!(in_flight.contains_key(&ack.packet_id), "{client_id}: PUBREC for unknown {}", ack.packet_id);
                        client.queue(&Packet::PubRel(PubAckPacket::new(ack.packet_id)));
                        client.flush().await?;
                    }
                    Packet::PubComp(ack) if stream.qos == QoS::ExactlyOnce => {
                        ensure!(in_flight.remove(&ack.packet_id).is_some(), "{client_id}: PUBCOMP for unknown {}", ack.packet_id);
                    }
                    other => bail!("{client_id}: unexpected {other:?}"),
                }
            }
        }
    }
    client.disconnect().await;
    Ok(Published {
        stream: stream.id,
        sent,
    })
}

/// Whether message `sequence` of a retained churn clears its topic (an empty retained
/// message): every third round over the topics does.
fn clears(sequence: u64) -> bool {
    (sequence / RETAINED_TOPICS) % 3 == 2
}

fn retained_topic(sequence: u64) -> String {
    format!("soak/retained/{}", sequence % RETAINED_TOPICS)
}

fn publish_packet(stream: &Stream, sequence: u64, packet_id: Option<u16>) -> Packet {
    let (topic, retain, payload) = if stream.retained_churn {
        let body = if clears(sequence) {
            Bytes::new()
        } else {
            payload(stream.id, sequence)
        };
        (retained_topic(sequence), true, body)
    } else {
        (stream.topic.clone(), false, payload(stream.id, sequence))
    };
    Packet::Publish(PublishPacket {
        dup: false,
        qos: stream.qos,
        retain,
        topic: ByteStr::from(topic.as_str()),
        packet_id,
        properties: Properties::default(),
        payload,
    })
}

/// A subscriber connected throughout (a clean session): subscribes, reports ready, reads until
/// the phase is `Stopped`. Any disconnection is a failure.
async fn steady_subscriber(
    client_id: String,
    filters: Vec<(String, QoS)>,
    probe: bool,
    tracks: Tracks,
    ready: tokio::sync::oneshot::Sender<()>,
    shared: Arc<Shared>,
) -> Result<()> {
    let (mut client, _) = Client::connect(shared.target, &client_id, true).await?;
    let mut inbound = Inbound::new(probe);
    inbound.tracks = tracks;
    let filters: Vec<(&str, QoS)> = filters.iter().map(|(f, q)| (f.as_str(), *q)).collect();
    client
        .subscribe(&filters, &mut inbound, &shared)
        .await
        .with_context(|| format!("{client_id}: subscribing"))?;
    let _ = ready.send(());
    let mut phase = shared.phase.clone();
    // Until `Stopped`: the end only applies while `Running`, and the load ends long before.
    let end = tokio::time::Instant::now() + Duration::from_secs(365 * 24 * 3600);
    read_until(
        &mut client,
        &mut inbound,
        &mut phase,
        end,
        None,
        true,
        &shared,
    )
    .await
    .with_context(|| format!("{client_id}: reading"))?;
    client.disconnect().await;
    Ok(())
}

/// A small deterministic generator for the clients' times (xorshift64).
struct Random(u64);

impl Random {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }

    fn millis(&mut self, low: u64, high: u64) -> Duration {
        Duration::from_millis(low + self.below(high - low))
    }
}

/// How a session that comes and goes behaves.
struct Visits {
    /// Online for a time in this range (milliseconds), at full speed...
    online: (u64, u64),
    /// ...then away for a time in this range.
    offline: (u64, u64),
    /// The slow consumer: before each visit at full speed, a visit reading at most this many
    /// messages per second for `slow_for`; so it falls behind, catches up, then stays away.
    slow: Option<(f64, Duration)>,
}

/// A persistent session that comes and goes until the phase leaves `Running`, then stays
/// connected reading at full speed until `Stopped`. Every reconnection must find the session.
#[allow(clippy::too_many_arguments)]
async fn persistent_visitor(
    client_id: String,
    filters: Vec<(String, QoS)>,
    tracks: Tracks,
    visits: Visits,
    seed: u64,
    ready: tokio::sync::oneshot::Sender<()>,
    shared: Arc<Shared>,
) -> Result<()> {
    let mut random = Random(seed | 1);
    let mut inbound = Inbound::new(false);
    inbound.tracks = tracks;
    let filters: Vec<(&str, QoS)> = filters.iter().map(|(f, q)| (f.as_str(), *q)).collect();
    // A session left from an earlier run would hold other messages.
    let (client, _) = Client::connect(shared.target, &client_id, true).await?;
    client.disconnect().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (mut client, present) = Client::connect(shared.target, &client_id, false).await?;
    ensure!(
        !present,
        "{client_id}: a session was present after a clean one"
    );
    client
        .subscribe(&filters, &mut inbound, &shared)
        .await
        .with_context(|| format!("{client_id}: subscribing"))?;
    let _ = ready.send(());
    let mut phase = shared.phase.clone();
    let mut abrupt = false;
    loop {
        // One visit: slow first (the slow consumer), then at full speed.
        if let Some((rate, slow_for)) = visits.slow {
            if shared.phase() == Phase::Running {
                client.read_size = 2048;
                let end = tokio::time::Instant::now() + slow_for;
                let outcome = read_until(
                    &mut client,
                    &mut inbound,
                    &mut phase,
                    end,
                    Some(rate),
                    true,
                    &shared,
                )
                .await;
                client.read_size = 64 * 1024;
                match outcome {
                    Ok(()) => {}
                    Err(error) if is_closed(&error) => {
                        shared.slow_disconnected.fetch_add(1, Ordering::Relaxed);
                        client = resume(&shared, &client_id).await?;
                    }
                    Err(error) => return Err(error.context(client_id)),
                }
            }
        }
        let online = random.millis(visits.online.0, visits.online.1);
        let end = tokio::time::Instant::now() + online;
        let outcome = read_until(
            &mut client,
            &mut inbound,
            &mut phase,
            end,
            None,
            true,
            &shared,
        )
        .await;
        match outcome {
            Ok(()) => {}
            Err(error) if visits.slow.is_some() && is_closed(&error) => {
                shared.slow_disconnected.fetch_add(1, Ordering::Relaxed);
                client = resume(&shared, &client_id).await?;
                continue;
            }
            Err(error) => return Err(error.context(client_id)),
        }
        match shared.phase() {
            Phase::Running => {}
            Phase::Draining => continue,
            Phase::Stopped => break,
        }
        // Leave, alternately with DISCONNECT and by dropping the socket, and come back.
        abrupt = !abrupt;
        if abrupt {
            client.flush().await?;
            drop(client);
        } else {
            client.flush().await?;
            client.disconnect().await;
        }
        let away = random.millis(visits.offline.0, visits.offline.1);
        tokio::select! {
            () = tokio::time::sleep(away) => {}
            _ = phase.wait_for(|phase| *phase != Phase::Running) => {}
        }
        client = resume(&shared, &client_id).await?;
    }
    client.disconnect().await;
    Ok(())
}

/// Reconnects a persistent session, which must be present.
async fn resume(shared: &Shared, client_id: &str) -> Result<Client> {
    let (client, present) = Client::connect(shared.target, client_id, false).await?;
    ensure!(
        present,
        "{client_id}: its persistent session was gone on reconnecting"
    );
    shared.persistent_resumes.fetch_add(1, Ordering::Relaxed);
    Ok(client)
}

fn is_closed(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .to_string()
            .contains("connection closed by the broker")
    }) || error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionReset)
    })
}

/// Reads and answers until `end` while the phase is `Running`; then, if `through_drain`, until
/// it is `Stopped` (at full speed), else at once. At most `rate` messages per second while
/// `Running`, when given. Pings the broker every [`PING_EVERY`], as its keep alive asks of a
/// client that sends nothing else (a QoS 0 subscriber).
#[allow(clippy::too_many_arguments)]
async fn read_until(
    client: &mut Client,
    inbound: &mut Inbound,
    phase: &mut watch::Receiver<Phase>,
    end: tokio::time::Instant,
    rate: Option<f64>,
    through_drain: bool,
    shared: &Shared,
) -> Result<()> {
    let started = tokio::time::Instant::now();
    let mut handled = 0u64;
    let mut ping = tokio::time::interval_at(started + PING_EVERY, PING_EVERY);
    loop {
        let now_phase = *phase.borrow();
        let over = match now_phase {
            Phase::Running => tokio::time::Instant::now() >= end,
            Phase::Draining => !through_drain,
            Phase::Stopped => true,
        };
        if over {
            return Ok(());
        }
        let slow = rate.filter(|_| now_phase == Phase::Running);
        if let Some(rate) = slow {
            // Hold the pace: the next message may be handled at `handled / rate` seconds.
            let due = started + Duration::from_secs_f64(handled as f64 / rate);
            if due > tokio::time::Instant::now() {
                tokio::time::sleep_until(due.min(end)).await;
                continue;
            }
        }
        tokio::select! {
            _ = phase.changed() => {}
            () = tokio::time::sleep_until(end), if now_phase == Phase::Running => {}
            _ = ping.tick() => {
                client.out.put_slice(&[0xC0, 0x00]);
                client.flush().await?;
            }
            packet = client.next() => {
                inbound.handle(packet?, client, shared)?;
                handled += 1;
                // At full speed, answer a whole read at once.
                if slow.is_some() || client.buf.is_empty() {
                    client.flush().await?;
                }
            }
        }
    }
}

/// A clean session that comes and goes: connects, subscribes to the retained topics and the
/// fan-out's QoS 0 stream, reads a while, leaves (DISCONNECT or a dropped socket), until the
/// phase leaves `Running`. It checks nothing (its subscription starts and ends with it); it
/// churns connections, sessions, subscriptions and retained deliveries.
async fn clean_visitor(index: usize, shared: Arc<Shared>) -> Result<()> {
    let mut random = Random(0x9e37_79b9_7f4a_7c15 ^ index as u64);
    let mut count = 0u64;
    while shared.phase() == Phase::Running {
        count += 1;
        let client_id = format!("soak-clean-{index}-{count}");
        let (mut client, present) = Client::connect(shared.target, &client_id, true).await?;
        ensure!(
            !present,
            "{client_id}: clean session with a session present"
        );
        shared.clean_connections.fetch_add(1, Ordering::Relaxed);
        let mut inbound = Inbound::new(false);
        let filters = [
            ("soak/retained/#", QoS::AtLeastOnce),
            ("soak/out/q0", QoS::AtMostOnce),
        ];
        client.subscribe(&filters, &mut inbound, &shared).await?;
        let mut phase = shared.phase.clone();
        let end = tokio::time::Instant::now() + random.millis(200, 1000);
        read_until(
            &mut client,
            &mut inbound,
            &mut phase,
            end,
            None,
            false,
            &shared,
        )
        .await
        .with_context(|| format!("{client_id}: reading"))?;
        if random.below(2) == 0 {
            drop(client);
        } else {
            client.disconnect().await;
        }
        tokio::time::sleep(random.millis(50, 300)).await;
    }
    Ok(())
}

/// The retained set a fresh subscriber finds: topic to (stream, sequence).
async fn retained_now(shared: &Shared) -> Result<HashMap<String, u64>> {
    let (mut client, _) = Client::connect(shared.target, "soak-retained-check", true).await?;
    client.queue(&Packet::Subscribe(SubscribePacket {
        packet_id: 1,
        properties: Properties::default(),
        subscriptions: vec![Subscription {
            filter: ByteStr::from("soak/retained/#"),
            options: SubscriptionOptions::default(),
        }],
    }));
    // The broker answers in order: the SUBACK, the retained messages, then the PINGRESP.
    client.out.put_slice(&[0xC0, 0x00]);
    client.flush().await?;
    let mut found = HashMap::new();
    let reading = async {
        loop {
            match client.next().await? {
                Packet::SubAck(_) => {}
                Packet::PingResp => return Ok::<_, anyhow::Error>(()),
                Packet::Publish(publish) if publish.retain => {
                    let (_, sequence, _) = parse_payload(&publish.payload)
                        .context("a retained message with a foreign payload")?;
                    found.insert(publish.topic.as_str().to_string(), sequence);
                }
                other => bail!("retained check: unexpected {other:?}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), reading)
        .await
        .context("retained check: no PINGRESP within 10 s")??;
    client.disconnect().await;
    Ok(found)
}

/// The retained set that `sent` messages of the churn leave: each topic's last message, unless
/// it cleared the topic.
fn expected_retained(sent: u64) -> HashMap<String, u64> {
    let mut expected = HashMap::new();
    for sequence in sent.saturating_sub(RETAINED_TOPICS)..sent {
        if !clears(sequence) {
            expected.insert(retained_topic(sequence), sequence);
        }
    }
    expected
}

/// One sample of the broker.
#[derive(Clone, Copy, Debug)]
struct Sample {
    /// Seconds since the load started.
    at: f64,
    rss_kb: u64,
    fds: u64,
    connections: u64,
}

/// The broker's resident memory (kB) and open descriptors.
fn process_sample(pid: u32) -> Result<(u64, u64)> {
    let rss = crate::rss_kb(pid)?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .with_context(|| format!("reading /proc/{pid}/fd"))?
        .count() as u64;
    Ok((rss, fds))
}

/// The broker's `/metrics`: open connections (all transports) and the messages it dropped
/// because a session's queue was full.
#[derive(Debug, Default, Clone, Copy)]
struct Metrics {
    connections: u64,
    queue_full: u64,
}

async fn metrics(address: SocketAddr) -> Result<Metrics> {
    let fetch = async {
        let mut stream = TcpStream::connect(address).await?;
        let request =
            format!("GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, anyhow::Error>(String::from_utf8_lossy(&response).into_owned())
    };
    let text = tokio::time::timeout(Duration::from_secs(10), fetch)
        .await
        .context("GET /metrics took over 10 s")??;
    ensure!(
        text.starts_with("HTTP/1.1 200"),
        "GET /metrics: {}",
        text.lines().next().unwrap_or("")
    );
    Ok(parse_metrics(&text))
}

fn parse_metrics(text: &str) -> Metrics {
    let mut metrics = Metrics::default();
    for line in text.lines() {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        if name.starts_with("mqtt_connections{") {
            metrics.connections += value as u64;
        } else if name == "mqtt_messages_dropped_total{reason=\"queue_full\"}" {
            metrics.queue_full = value as u64;
        }
    }
    metrics
}

/// Nearest-rank percentiles (`crate::percentile`) of microseconds, as milliseconds.
fn latency_text(samples: &mut [u64]) -> String {
    if samples.is_empty() {
        return "p50 - p99 - max - (no probe message)".to_string();
    }
    samples.sort_unstable();
    let ms = |us: f64| us / 1000.0;
    format!(
        "p50 {:.2} p99 {:.2} max {:.2} ms",
        ms(crate::percentile(samples, 0.50)),
        ms(crate::percentile(samples, 0.99)),
        ms(*samples.last().expect("not empty") as f64)
    )
}

fn clock(seconds: f64) -> String {
    let seconds = seconds.round() as u64;
    format!("{}:{:02}", seconds / 60, seconds % 60)
}

/// Samples the broker every `sample` seconds and prints a line every `interval` seconds, until
/// `load` is over.
async fn sampler(
    args: SampleArgs,
    shared: Arc<Shared>,
    samples: Arc<Mutex<Vec<Sample>>>,
) -> Result<()> {
    let start = tokio::time::Instant::now();
    let mut tick = tokio::time::interval_at(start + args.sample, args.sample);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_line = (0.0, 0u64);
    loop {
        tick.tick().await;
        let at = start.elapsed().as_secs_f64();
        let (rss_kb, fds) = process_sample(args.pid)?;
        let connections = metrics(args.metrics).await?.connections;
        samples.lock().expect("samples lock").push(Sample {
            at,
            rss_kb,
            fds,
            connections,
        });
        let done = at + 0.5 >= args.load.as_secs_f64();
        if at - last_line.0 + 0.5 >= args.interval.as_secs_f64() || done {
            let delivered = shared.delivered.load(Ordering::Relaxed);
            let rate = (delivered - last_line.1) as f64 / (at - last_line.0);
            let mut probe = std::mem::take(&mut *shared.probe_interval.lock().expect("probe"));
            println!(
                "soak {:>6}  delivered {:>6.0} msg/s  latency {}  rss {:.1} MiB  fds {}  connections {}",
                clock(at),
                rate,
                latency_text(&mut probe),
                rss_kb as f64 / 1024.0,
                fds,
                connections
            );
            last_line = (at, delivered);
        }
        if done {
            return Ok(());
        }
    }
}

#[derive(Clone, Copy)]
struct SampleArgs {
    pid: u32,
    metrics: SocketAddr,
    sample: Duration,
    interval: Duration,
    load: Duration,
}

/// The verdict of the growth check on one resource.
#[derive(Debug, PartialEq)]
pub(crate) struct Growth {
    /// Least-squares slope over the samples after the warm-up, per minute.
    pub slope_per_minute: f64,
    /// Median of the first three samples after the warm-up, and of the last three.
    pub first: f64,
    pub last: f64,
    /// Whether it keeps growing: the slope above `slope_limit` per minute AND the last median
    /// above the first by more than `rise_fraction` of it plus `rise_margin`.
    pub growing: bool,
}

/// The growth check over `(minute, value)` samples taken after the warm-up (at least 6).
/// A resource keeps growing when both hold:
/// - the least-squares slope of the samples is above `slope_limit` per minute, and
/// - the median of the last three samples is above the median of the first three by more
///   than `rise_fraction` of the first plus `rise_margin`.
///
/// The slope alone would flag a plateau reached just after the warm-up, and the rise alone a
/// single spike at the end; a leak shows both. Medians of three rather than single samples,
/// because connections (and their descriptors) come and go every second.
pub(crate) fn growth(
    samples: &[(f64, f64)],
    slope_limit: f64,
    rise_fraction: f64,
    rise_margin: f64,
) -> Option<Growth> {
    if samples.len() < 6 {
        return None;
    }
    let n = samples.len() as f64;
    let mean_t = samples.iter().map(|s| s.0).sum::<f64>() / n;
    let mean_v = samples.iter().map(|s| s.1).sum::<f64>() / n;
    let covariance: f64 = samples
        .iter()
        .map(|(t, v)| (t - mean_t) * (v - mean_v))
        .sum();
    let variance: f64 = samples.iter().map(|(t, _)| (t - mean_t).powi(2)).sum();
    let slope_per_minute = if variance > 0.0 {
        covariance / variance
    } else {
        0.0
    };
    let median = |part: &[(f64, f64)]| {
        let mut values: Vec<f64> = part.iter().map(|s| s.1).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let first = median(&samples[..3]);
    let last = median(&samples[samples.len() - 3..]);
    let growing =
        slope_per_minute > slope_limit && last > first * (1.0 + rise_fraction) + rise_margin;
    Some(Growth {
        slope_per_minute,
        first,
        last,
        growing,
    })
}

/// Memory keeps growing above 256 KiB per minute with a rise of more than 10 % (see [`growth`]).
const RSS_SLOPE_KB_PER_MINUTE: f64 = 256.0;
const RSS_RISE: f64 = 0.10;
/// Descriptors keep growing above one per minute with a rise of more than 10 % plus 5.
const FD_SLOPE_PER_MINUTE: f64 = 1.0;
const FD_RISE: f64 = 0.10;
const FD_MARGIN: f64 = 5.0;

/// The streams of the load at `scale` times their rates.
fn streams(scale: f64) -> Vec<Stream> {
    let mut streams = Vec::new();
    let mut add = |name: String, topic: String, qos: QoS, rate: f64| {
        streams.push(Stream {
            id: streams.len() as u32,
            name,
            topic,
            qos,
            rate: rate * scale,
            retained_churn: false,
        });
    };
    for (index, qos) in [
        QoS::AtLeastOnce,
        QoS::AtLeastOnce,
        QoS::ExactlyOnce,
        QoS::AtMostOnce,
    ]
    .into_iter()
    .enumerate()
    {
        add(format!("in{index}"), format!("soak/in/{index}"), qos, 400.0);
    }
    add(
        "out-q1".into(),
        "soak/out/q1".into(),
        QoS::AtLeastOnce,
        150.0,
    );
    add(
        "out-q0".into(),
        "soak/out/q0".into(),
        QoS::AtMostOnce,
        150.0,
    );
    for index in 0..PERSISTENT_VISITORS {
        add(
            format!("visit{index}"),
            format!("soak/visit/{index}"),
            visitor_qos(index),
            40.0,
        );
    }
    add(
        "slow-q1".into(),
        "soak/slow/q1".into(),
        QoS::AtLeastOnce,
        200.0,
    );
    add(
        "slow-q0".into(),
        "soak/slow/q0".into(),
        QoS::AtMostOnce,
        200.0,
    );
    add("probe".into(), "soak/probe".into(), QoS::AtMostOnce, 100.0);
    add("retained".into(), String::new(), QoS::AtLeastOnce, 100.0);
    let retained = streams.last_mut().expect("just added");
    retained.retained_churn = true;
    streams
}

const FAN_OUT_SUBSCRIBERS: usize = 10;
const PERSISTENT_VISITORS: usize = 8;
const CLEAN_VISITORS: usize = 2;

/// Persistent visitors alternate QoS 1 and QoS 2 streams.
fn visitor_qos(index: usize) -> QoS {
    if index % 2 == 0 {
        QoS::AtLeastOnce
    } else {
        QoS::ExactlyOnce
    }
}

fn qos_number(qos: QoS) -> u8 {
    qos as u8
}

/// Runs the soak and prints its lines and summary; fails when a check fails.
pub async fn run(target: SocketAddr, args: SoakArgs) -> Result<()> {
    ensure!(
        target.ip().is_loopback() && args.metrics.ip().is_loopback(),
        "the soak runs against a broker on loopback only"
    );
    ensure!(args.seconds > 0 && args.interval > 0 && args.sample > 0 && args.rate_scale > 0.0);
    let _ = epoch();
    let (phase_sender, phase) = watch::channel(Phase::Running);
    let shared = Arc::new(Shared {
        target,
        phase,
        delivered: AtomicU64::new(0),
        probe_interval: Mutex::default(),
        probe_all: Mutex::default(),
        persistent_resumes: AtomicU64::new(0),
        clean_connections: AtomicU64::new(0),
        slow_disconnected: AtomicU64::new(0),
    });
    let streams = streams(args.rate_scale);
    let by_name = |name: &str| {
        streams
            .iter()
            .find(|stream| stream.name == name)
            .expect("a stream of that name")
            .clone()
    };
    let before = metrics(args.metrics).await?;

    // Receivers first, so that each stream's first message finds them subscribed.
    let mut expectations = Vec::new();
    let mut receivers: Vec<(String, Tracks, JoinHandle<Result<()>>)> = Vec::new();
    let mut readiness = Vec::new();
    let mut expect = |receiver: &str, stream: &Stream, slow_policy: bool| {
        expectations.push(Expectation {
            receiver: receiver.to_string(),
            stream: stream.id,
            strict: stream.qos != QoS::AtMostOnce && !slow_policy,
            slow_policy,
        });
    };
    let mut steady = |name: String, filters: Vec<(String, QoS)>, probe: bool| {
        let tracks = Tracks::default();
        let (ready, waiting) = tokio::sync::oneshot::channel();
        readiness.push(waiting);
        let task = tokio::spawn(steady_subscriber(
            name.clone(),
            filters,
            probe,
            tracks.clone(),
            ready,
            shared.clone(),
        ));
        receivers.push((name, tracks, task));
    };
    steady(
        "soak-fanin-sub".into(),
        vec![("soak/in/+".into(), QoS::ExactlyOnce)],
        false,
    );
    for index in 0..4 {
        expect("soak-fanin-sub", &by_name(&format!("in{index}")), false);
    }
    for index in 0..FAN_OUT_SUBSCRIBERS {
        let name = format!("soak-fanout-sub-{index}");
        steady(
            name.clone(),
            vec![("soak/out/+".into(), QoS::ExactlyOnce)],
            false,
        );
        expect(&name, &by_name("out-q1"), false);
        expect(&name, &by_name("out-q0"), false);
    }
    steady(
        "soak-probe-sub".into(),
        vec![("soak/probe".into(), QoS::AtMostOnce)],
        true,
    );
    expect("soak-probe-sub", &by_name("probe"), false);
    let mut visitor = |name: String, filters: Vec<(String, QoS)>, visits: Visits, seed: u64| {
        let tracks = Tracks::default();
        let (ready, waiting) = tokio::sync::oneshot::channel();
        readiness.push(waiting);
        let task = tokio::spawn(persistent_visitor(
            name.clone(),
            filters,
            tracks.clone(),
            visits,
            seed,
            ready,
            shared.clone(),
        ));
        receivers.push((name, tracks, task));
    };
    for index in 0..PERSISTENT_VISITORS {
        let name = format!("soak-visitor-{index}");
        let stream = by_name(&format!("visit{index}"));
        visitor(
            name.clone(),
            vec![(stream.topic.clone(), stream.qos)],
            Visits {
                online: (1000, 3000),
                offline: (500, 2000),
                slow: None,
            },
            index as u64 + 1,
        );
        expect(&name, &stream, false);
    }
    visitor(
        "soak-slow".into(),
        vec![("soak/slow/+".into(), QoS::AtLeastOnce)],
        Visits {
            online: (10_000, 10_001),
            offline: (5000, 5001),
            slow: Some((100.0 * args.rate_scale, Duration::from_secs(20))),
        },
        99,
    );
    expect("soak-slow", &by_name("slow-q1"), true);
    expect("soak-slow", &by_name("slow-q0"), false);
    for waiting in readiness {
        tokio::time::timeout(Duration::from_secs(30), waiting)
            .await
            .context("the receivers did not subscribe within 30 s")?
            .context("a receiver failed before subscribing")?;
    }

    let load = Duration::from_secs(args.seconds);
    let warmup = args.warmup();
    println!(
        "soak: {} s of load against {target} (gateway pid {}), warm-up {warmup} s; {} streams, \
         {} steady subscribers, {} persistent and {CLEAN_VISITORS} clean visitors, a slow consumer",
        args.seconds,
        args.pid,
        streams.len(),
        FAN_OUT_SUBSCRIBERS + 2,
        PERSISTENT_VISITORS,
    );
    let samples = Arc::new(Mutex::new(Vec::new()));
    let load_end = tokio::time::Instant::now() + load;
    let sampling = tokio::spawn(sampler(
        SampleArgs {
            pid: args.pid,
            metrics: args.metrics,
            sample: Duration::from_secs(args.sample),
            interval: Duration::from_secs(args.interval),
            load,
        },
        shared.clone(),
        samples.clone(),
    ));
    let publishers: Vec<_> = streams
        .iter()
        .map(|stream| tokio::spawn(publisher(stream.clone(), shared.clone())))
        .collect();
    let clean: Vec<_> = (0..CLEAN_VISITORS)
        .map(|index| tokio::spawn(clean_visitor(index, shared.clone())))
        .collect();

    let mut failures = Vec::new();
    // The last sample is taken at the end of the load, before anyone leaves: a sample during
    // the drain would count the clients leaving as a fall.
    let sampled = sampling.await?;
    tokio::time::sleep_until(load_end).await;
    phase_sender.send_replace(Phase::Draining);
    let mut sent: HashMap<u32, u64> = HashMap::new();
    for task in publishers {
        match task.await? {
            Ok(published) => {
                sent.insert(published.stream, published.sent);
            }
            Err(error) => failures.push(format!("publisher: {error:#}")),
        }
    }
    for task in clean {
        if let Err(error) = task.await? {
            failures.push(format!("clean visitor: {error:#}"));
        }
    }
    // Drained when nothing arrived for 3 s (at most 120 s).
    let drain_start = Instant::now();
    let mut last = (shared.delivered.load(Ordering::Relaxed), Instant::now());
    while last.1.elapsed() < Duration::from_secs(3)
        && drain_start.elapsed() < Duration::from_secs(120)
    {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let delivered = shared.delivered.load(Ordering::Relaxed);
        if delivered != last.0 {
            last = (delivered, Instant::now());
        }
    }
    let retained = retained_now(&shared).await;
    phase_sender.send_replace(Phase::Stopped);
    let mut tracks_by_receiver = HashMap::new();
    for (name, tracks, task) in receivers {
        if let Err(error) = task.await? {
            failures.push(format!("{name}: {error:#}"));
        }
        tracks_by_receiver.insert(name, tracks);
    }
    let after = metrics(args.metrics).await?;
    if let Err(error) = sampled {
        failures.push(format!("sampling the gateway: {error:#}"));
    }

    // The summary.
    let delivered = shared.delivered.load(Ordering::Relaxed);
    println!(
        "\nsoak summary: {} s of load, drained in {:.1} s; {delivered} messages delivered ({:.0} msg/s)",
        args.seconds,
        drain_start.elapsed().as_secs_f64(),
        delivered as f64 / args.seconds as f64
    );
    let mut all = std::mem::take(&mut *shared.probe_all.lock().expect("probe"));
    println!("  probe latency over the run: {}", latency_text(&mut all));
    let samples = samples.lock().expect("samples").clone();
    growth_report(&samples, warmup, &mut failures);

    let queue_full = after.queue_full.saturating_sub(before.queue_full);
    println!("  streams (receiver: sent, missing, duplicates):");
    let mut qos0_lost = Vec::new();
    for expectation in &expectations {
        let stream = streams
            .iter()
            .find(|stream| stream.id == expectation.stream)
            .expect("expected streams exist");
        let Some(&count) = sent.get(&stream.id) else {
            continue;
        };
        let tracks = tracks_by_receiver[&expectation.receiver]
            .lock()
            .expect("tracks")
            .remove(&stream.id)
            .unwrap_or_default();
        let missing = tracks.missing(count);
        let duplicates = tracks.duplicates;
        let mut verdict = "ok";
        if expectation.strict && missing > 0 {
            verdict = "FAIL: acknowledged messages lost";
        } else if stream.qos == QoS::ExactlyOnce && duplicates > 0 {
            verdict = "FAIL: QoS 2 duplicates";
        } else if expectation.slow_policy && missing != queue_full {
            verdict = "FAIL: losses differ from the gateway's queue_full drops";
        } else if stream.qos == QoS::AtMostOnce {
            verdict = "(QoS 0: reported only)";
            if missing > 0 {
                qos0_lost.push(format!(
                    "{} -> {}: {missing}",
                    stream.name, expectation.receiver
                ));
            }
        } else if expectation.slow_policy {
            verdict = "ok: as many as the gateway dropped for a full queue";
        }
        if verdict.starts_with("FAIL") {
            failures.push(format!(
                "{} (QoS {}) -> {}: {} of {count} missing, {duplicates} duplicates",
                stream.name,
                qos_number(stream.qos),
                expectation.receiver,
                missing
            ));
        }
        println!(
            "    {:<7} QoS {} -> {:<20} sent {count:>8}  missing {missing:>6}  duplicates {duplicates:>5}  {verdict}",
            stream.name,
            qos_number(stream.qos),
            expectation.receiver,
        );
    }
    // The policy disconnects a consumer only once QoS 1/2 frames pass its 64 MiB outbox, which
    // the in-flight window keeps a reading consumer far from.
    let slow_disconnected = shared.slow_disconnected.load(Ordering::Relaxed);
    println!(
        "  slow consumer: {queue_full} messages dropped by the gateway for a full queue (its policy: \
         --max-queued-messages, then drop the new message and count it), disconnected by the \
         gateway {slow_disconnected} times{}",
        if slow_disconnected == 0 {
            ""
        } else {
            ": FAIL (a consumer that reads is kept)"
        }
    );
    if slow_disconnected > 0 {
        failures.push(format!(
            "the gateway disconnected the slow consumer {slow_disconnected} times"
        ));
    }
    if qos0_lost.is_empty() {
        println!("  QoS 0 losses (reported only): none");
    } else {
        println!("  QoS 0 losses (reported only): {}", qos0_lost.join(", "));
    }
    let retained_sent = sent.get(&by_name("retained").id).copied().unwrap_or(0);
    match retained {
        Ok(found) => {
            let expected = expected_retained(retained_sent);
            if found == expected {
                println!(
                    "  retained churn: {retained_sent} set or cleared; the final set ({} of {RETAINED_TOPICS} topics) is exactly the acknowledged one: ok",
                    found.len()
                );
            } else {
                let wrong = RETAINED_TOPICS as usize
                    - (0..RETAINED_TOPICS)
                        .map(retained_topic)
                        .filter(|topic| found.get(topic) == expected.get(topic))
                        .count();
                println!("  retained churn: FAIL: {wrong} topics differ from the acknowledged set");
                failures.push(format!(
                    "retained: {wrong} of {RETAINED_TOPICS} topics differ from the acknowledged set"
                ));
            }
        }
        Err(error) => failures.push(format!("retained check: {error:#}")),
    }
    println!(
        "  visitors: {} persistent sessions resumed (each present), {} clean connections",
        shared.persistent_resumes.load(Ordering::Relaxed),
        shared.clean_connections.load(Ordering::Relaxed)
    );
    if failures.is_empty() {
        println!("soak: PASS");
        Ok(())
    } else {
        println!("soak: FAIL");
        for failure in &failures {
            println!("  - {failure}");
        }
        bail!("{} soak check(s) failed", failures.len())
    }
}

/// Prints the growth check of memory and descriptors (or why it is skipped) and records a
/// failure for a resource that keeps growing.
fn growth_report(samples: &[Sample], warmup: u64, failures: &mut Vec<String>) {
    let checked: Vec<&Sample> = samples
        .iter()
        .filter(|sample| sample.at >= warmup as f64)
        .collect();
    let span = match (checked.first(), checked.last()) {
        (Some(first), Some(last)) => last.at - first.at,
        _ => 0.0,
    };
    if span < MIN_CHECKED_SPAN.as_secs_f64() {
        println!(
            "  growth check: skipped ({:.0} s of samples after the {warmup} s warm-up; it needs {} s)",
            span,
            MIN_CHECKED_SPAN.as_secs()
        );
        return;
    }
    let series = |value: fn(&Sample) -> f64| -> Vec<(f64, f64)> {
        checked
            .iter()
            .map(|sample| (sample.at / 60.0, value(sample)))
            .collect()
    };
    let rss = growth(
        &series(|s| s.rss_kb as f64),
        RSS_SLOPE_KB_PER_MINUTE,
        RSS_RISE,
        0.0,
    );
    let fds = growth(
        &series(|s| s.fds as f64),
        FD_SLOPE_PER_MINUTE,
        FD_RISE,
        FD_MARGIN,
    );
    for (name, unit, verdict, scale) in [("rss", "MiB", rss, 1024.0), ("fds", "", fds, 1.0)] {
        let Some(verdict) = verdict else { continue };
        let text = format!(
            "{name}: {:.1}{unit} after the warm-up, {:.1}{unit} at the end, slope {:+.3}{unit}/min",
            verdict.first / scale,
            verdict.last / scale,
            verdict.slope_per_minute / scale
        );
        if verdict.growing {
            println!("  growth check: {text}: FAIL, keeps growing");
            failures.push(format!("{text}: keeps growing"));
        } else {
            println!("  growth check: {text}: ok");
        }
    }
    let peak = checked.iter().map(|s| s.connections).max().unwrap_or(0);
    println!("  connections after the warm-up: at most {peak}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minutes(values: &[f64]) -> Vec<(f64, f64)> {
        values
            .iter()
            .enumerate()
            .map(|(index, value)| (index as f64, *value))
            .collect()
    }

    /// A steady leak is caught; a plateau, noise, a lone spike at the end and a fall are not.
    #[test]
    fn growth_needs_a_slope_and_a_rise() {
        let leak: Vec<f64> = (0..20).map(|m| 40_000.0 + 500.0 * m as f64).collect();
        let verdict = growth(&minutes(&leak), 256.0, 0.10, 0.0).unwrap();
        assert!(verdict.growing, "{verdict:?}");
        assert!((verdict.slope_per_minute - 500.0).abs() < 1e-6);

        let flat: Vec<f64> = (0..20)
            .map(|m| 40_000.0 + if m % 2 == 0 { 300.0 } else { -300.0 })
            .collect();
        assert!(!growth(&minutes(&flat), 256.0, 0.10, 0.0).unwrap().growing);

        // A slow drift: a slope, but under a 10 % rise over the run.
        let drift: Vec<f64> = (0..20).map(|m| 40_000.0 + 150.0 * m as f64).collect();
        assert!(!growth(&minutes(&drift), 100.0, 0.10, 0.0).unwrap().growing);

        let mut spike = vec![40_000.0; 20];
        spike[19] = 60_000.0;
        assert!(!growth(&minutes(&spike), 256.0, 0.10, 0.0).unwrap().growing);

        let fall: Vec<f64> = (0..20).map(|m| 60_000.0 - 500.0 * m as f64).collect();
        assert!(!growth(&minutes(&fall), 256.0, 0.10, 0.0).unwrap().growing);

        // Descriptors: a margin keeps a few connections more at the end from counting.
        let fds: Vec<f64> = (0..20).map(|m| 40.0 + (m / 4) as f64).collect();
        assert!(!growth(&minutes(&fds), 1.0, 0.10, 5.0).unwrap().growing);
        let fd_leak: Vec<f64> = (0..20).map(|m| 40.0 + 2.0 * m as f64).collect();
        assert!(growth(&minutes(&fd_leak), 1.0, 0.10, 5.0).unwrap().growing);

        assert!(growth(&minutes(&leak[..5]), 256.0, 0.10, 0.0).is_none());
    }

    /// Tracks count each sequence number once and the repeats apart, across bitmap words.
    #[test]
    fn tracks_count_missing_and_duplicates() {
        let mut track = Track::default();
        for sequence in [0, 1, 2, 64, 65, 200, 2, 64] {
            track.mark(sequence);
        }
        assert_eq!(track.distinct, 6);
        assert_eq!(track.duplicates, 2);
        assert_eq!(track.missing(201), 195);
        assert_eq!(Track::default().missing(10), 10);
    }

    /// The final retained set is each topic's last message unless it cleared the topic.
    #[test]
    fn the_expected_retained_set_follows_the_churn() {
        assert!(expected_retained(0).is_empty());
        let three = expected_retained(3);
        assert_eq!(three.len(), 3);
        assert_eq!(three["soak/retained/2"], 2);
        // The third round (sequences 128..192) clears: after 130 messages, topics 0 and 1 are
        // cleared and the others hold the second round's messages.
        let cleared = expected_retained(130);
        assert_eq!(cleared.len(), 62);
        assert!(!cleared.contains_key("soak/retained/0"));
        assert_eq!(cleared["soak/retained/2"], 66);
        // A fourth round sets them again.
        assert_eq!(expected_retained(193)["soak/retained/0"], 192);
    }

    #[test]
    fn payloads_round_trip_and_metrics_parse() {
        let bytes = payload(7, 123_456);
        assert_eq!(bytes.len(), PAYLOAD);
        let (stream, sequence, _) = parse_payload(&bytes).unwrap();
        assert_eq!((stream, sequence), (7, 123_456));
        assert!(parse_payload(b"short").is_none());

        let text = "HTTP/1.1 200 OK\r\n\r\n# TYPE mqtt_connections gauge\n\
                    mqtt_connections{transport=\"tcp\"} 41\n\
                    mqtt_connections{transport=\"ws\"} 2\n\
                    mqtt_messages_dropped_total{reason=\"queue_full\"} 1830\n\
                    mqtt_messages_dropped_total{reason=\"slow_consumer\"} 7\n";
        let metrics = parse_metrics(text);
        assert_eq!(metrics.connections, 43);
        assert_eq!(metrics.queue_full, 1830);
    }
}
