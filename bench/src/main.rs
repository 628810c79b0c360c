//! `mqtt-bench`: the load generator used by `cargo xtask bench` and by hand.
//!
//! Every mode talks MQTT 3.1.1 to one broker, over TCP (`--addr`), over TLS (`--transport tls
//! --addr 127.0.0.1:PORT --tls-ca FILE`, the broker's certificate naming that IP address) or over
//! WebSocket (`--transport ws --ws-url ws://127.0.0.1:PORT/mqtt`), is bounded in message count and
//! in seconds, and prints one JSON object with its figures on standard output (over TLS, the
//! throughput and latency figures also say what the handshake negotiated). Clients encode with
//! `mqtt-codec` once up front and write pre-encoded batches (over WebSocket one batch is one
//! binary message), and subscribers count packets from their fixed headers, so that the generator
//! is not what limits the measurement. The `big` mode times one large message from a WebSocket
//! publisher to a WebSocket and a TCP subscriber. The `publish` mode only publishes, for
//! subscribers outside this process (the browser benchmark's page).
//!
//! For the durability rows: `fanin --persistent` gives the subscriber a persistent session
//! (clean session 0), so that a broker with a store keeps each QoS 1 message for it;
//! `load-retained` fills a broker with retained messages on distinct topics, pipelined, and
//! `retained-count` waits until the broker's `$SYS/broker/retained messages/count` says it holds
//! them (after a restart, say). Both brokers publish that count every `sys_interval`.
//!
//! For a cluster (`cargo xtask bench --cluster`): `--sub-addr` and `--pub-addr` put the
//! subscribers and the publishers of `fanin`, `fanout` and `latency` on brokers of their own
//! (nodes of one cluster), and the load then first waits for interest to cross, with probes
//! ([`await_interest`]); `--ahead N` keeps the publishers of `fanin` and `fanout` at most N
//! messages ahead of the slowest subscriber ([`Gate`]).
//!
//! The `soak` mode (module `soak`) holds a mixed load for minutes against one broker, samples
//! its memory and descriptors, and checks at the end that nothing acknowledged was lost.

mod fleet;
mod soak;
mod transport;

use anyhow::{Context, Result, bail, ensure};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use clap::{Parser, Subcommand};
use mqtt_codec::{
    ByteStr, ConnectPacket, Packet, Properties, ProtocolVersion, PublishPacket, QoS,
    SubscribePacket, Subscription, SubscriptionOptions, decode, encode,
};
use serde::Serialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use transport::{Kind, Reader, Target, Writer};

/// Packets encoded and written per batch by a publisher.
const BATCH: usize = 64;
/// A run ends when no message arrived for this long.
const STALL: Duration = Duration::from_secs(3);

#[derive(Debug, Parser)]
#[command(name = "mqtt-bench", about = "MQTT load generator (loopback only)")]
struct Cli {
    /// Broker address for MQTT over TCP, or over TLS with `--transport tls`; must be a
    /// loopback address.
    #[arg(long, default_value = "127.0.0.1:1883", global = true)]
    addr: SocketAddr,
    /// Transport of the clients: `tcp` (to --addr), `tls` (to --addr, with --tls-ca) or `ws`
    /// (to --ws-url).
    #[arg(long, value_enum, default_value = "tcp", global = true)]
    transport: Kind,
    /// PEM file of the CA that signed the broker's TLS certificate, which must name the IP
    /// address of --addr; needed by `--transport tls`.
    #[arg(long, value_name = "FILE", global = true)]
    tls_ca: Option<PathBuf>,
    /// Broker URL for MQTT over WebSocket; a literal loopback IP and an explicit port.
    #[arg(long, default_value = "ws://127.0.0.1:8080/mqtt", global = true)]
    ws_url: String,
    /// Stop counting after this many seconds; the whole run gives up a little later.
    #[arg(long, default_value_t = 60, global = true)]
    timeout: u64,
    /// The `fanin`, `fanout` and `latency` subscribers connect here rather than to --addr
    /// (repeated: spread over them in turn), for a cluster whose nodes are different brokers.
    /// With this or --pub-addr the mode first waits for interest (see [`await_interest`]).
    /// Over --transport tcp or tls.
    #[arg(long, value_name = "ADDR", global = true)]
    sub_addr: Vec<SocketAddr>,
    /// The `fanin`, `fanout` and `latency` publishers connect here rather than to --addr
    /// (repeated: spread over them in turn).
    #[arg(long, value_name = "ADDR", global = true)]
    pub_addr: Vec<SocketAddr>,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// P publishers on distinct topics, one `#` subscriber.
    Fanin {
        #[arg(long, default_value_t = 4)]
        publishers: usize,
        /// Messages per publisher.
        #[arg(long, default_value_t = 100_000)]
        messages: u64,
        #[arg(long, default_value_t = 64)]
        size: usize,
        #[arg(long, default_value_t = 0)]
        qos: u8,
        /// QoS 1 messages in flight per publisher.
        #[arg(long, default_value_t = 64)]
        window: usize,
        /// Fail (exit 1) if any message is lost.
        #[arg(long)]
        expect_all: bool,
        /// Publishers wait while they are this many messages ahead of the subscriber (0: never,
        /// full speed): see [`Gate`].
        #[arg(long, default_value_t = 0)]
        ahead: u64,
        /// The subscriber holds a persistent session (clean session 0, a fixed client id),
        /// which any previous run's session is discarded before and after; with --qos 1 its
        /// subscription is QoS 1, so the broker keeps each message for it until acknowledged.
        #[arg(long)]
        persistent: bool,
    },
    /// One publisher, N subscribers on its topic.
    Fanout {
        #[arg(long, default_value_t = 10)]
        subscribers: usize,
        #[arg(long, default_value_t = 50_000)]
        messages: u64,
        #[arg(long, default_value_t = 64)]
        size: usize,
        #[arg(long, default_value_t = 0)]
        qos: u8,
        #[arg(long, default_value_t = 64)]
        window: usize,
        /// The publisher waits while it is this many messages ahead of the slowest subscriber
        /// (0: never, full speed): see [`Gate`].
        #[arg(long, default_value_t = 0)]
        ahead: u64,
        #[arg(long)]
        expect_all: bool,
    },
    /// N idle connections; the broker's resident memory is read from /proc before and after.
    Idle {
        #[arg(long, default_value_t = 2000)]
        connections: usize,
        /// Process id of the broker, for /proc/PID/status.
        #[arg(long)]
        pid: u32,
    },
    /// Connections opened (CONNECT, CONNACK, DISCONNECT) as fast as C concurrent loops can.
    Connrate {
        #[arg(long, default_value_t = 4000)]
        connections: usize,
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
    },
    /// One publisher at a fixed rate with a timestamp in each payload, one subscriber.
    Latency {
        /// Messages per second.
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        #[arg(long, default_value_t = 64)]
        size: usize,
    },
    /// One large QoS 1 message at a time from a WebSocket publisher to a WebSocket subscriber
    /// and a TCP subscriber (so it needs both --ws-url and --addr; --transport does not apply),
    /// each delivery timed end to end. Each round must end within --timeout.
    Big {
        /// Payload bytes.
        #[arg(long, default_value_t = 1 << 20)]
        size: usize,
        /// Rounds at most.
        #[arg(long, default_value_t = 20)]
        repeats: usize,
        /// No new round starts after this many seconds (at least one round runs): a broker
        /// that takes seconds per large message is measured without stretching the run.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Publishes one QoS 0 stream on one topic for subscribers outside this process (the
    /// browser benchmark's page): at full speed in pre-encoded batches, or at `--rate` messages
    /// per second with the send time in each payload. Prints when it started, on the wall clock
    /// a browser on this machine shares, so that the subscriber can time the whole stream.
    Publish {
        #[arg(long, default_value = "bench/browser")]
        topic: String,
        #[arg(long, default_value_t = 200_000)]
        messages: u64,
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Messages per second, each payload starting with the microseconds since the Unix
        /// epoch at its send as a big-endian u64; 0 (the default): full speed, no timestamps.
        #[arg(long, default_value_t = 0)]
        rate: u64,
    },
    /// Loads retained messages, each on a topic of its own (`bench/retained/{i / 1000}/{i %
    /// 1000}`), published QoS 0 by pipelining clients at full speed; each publisher then waits
    /// for a PINGRESP (the broker has handled everything before it: the rate is timed to
    /// there), and the mode waits until the broker's `$SYS/broker/retained messages/count`
    /// reaches the number loaded (at most --timeout).
    LoadRetained {
        /// Retained messages in all.
        #[arg(long, default_value_t = 100_000)]
        messages: u64,
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Clients sharing the load, each publishing its own range of topics.
        #[arg(long, default_value_t = 2)]
        publishers: usize,
    },
    /// Waits until the broker's `$SYS/broker/retained messages/count` reaches --at-least (at
    /// most --timeout), and prints the last count read.
    RetainedCount {
        #[arg(long)]
        at_least: u64,
    },
    /// A mixed load for `--seconds` (fan-in, fan-out, QoS 0/1/2, retained churn, sessions
    /// coming and going, a slow consumer, a latency probe) over TCP to --addr, a line of figures
    /// every `--interval`, and checks at the end: nothing acknowledged lost, memory and
    /// descriptors not growing after the warm-up. Ignores --timeout and --transport.
    Soak(soak::SoakArgs),
    /// Many devices over TCP, each publishing one QoS 1 JSON message a second to its own topic,
    /// and a few WebSocket dashboards on `fleet/#` (module `fleet`): broker CPU and memory,
    /// publish-to-dashboard latency, and every message accounted for. Ignores --timeout and
    /// --transport.
    Fleet(fleet::FleetArgs),
}

#[derive(Debug, Serialize)]
struct Throughput {
    mode: &'static str,
    qos: u8,
    /// Whether the subscriber held a persistent session.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    persistent: bool,
    /// The publishers' lead over the subscribers, at most (`--ahead`; absent: unbounded).
    #[serde(skip_serializing_if = "is_zero")]
    ahead: u64,
    expected: u64,
    received: u64,
    lost: u64,
    seconds: f64,
    messages_per_second: f64,
    /// Over TLS: the protocol version, cipher suite and key exchange group negotiated.
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<String>,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

#[derive(Debug, Serialize)]
struct Idle {
    mode: &'static str,
    connections: usize,
    rss_before_kb: u64,
    rss_after_kb: u64,
    kb_per_connection: f64,
}

#[derive(Debug, Serialize)]
struct ConnectionRate {
    mode: &'static str,
    connections: usize,
    seconds: f64,
    connections_per_second: f64,
}

#[derive(Debug, Serialize)]
struct Latency {
    mode: &'static str,
    sent: u64,
    received: u64,
    p50_us: f64,
    p90_us: f64,
    p99_us: f64,
    p999_us: f64,
    max_us: f64,
    /// Over TLS: the protocol version, cipher suite and key exchange group negotiated.
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<String>,
}

#[derive(Debug, Serialize)]
struct Publish {
    mode: &'static str,
    messages: u64,
    /// Messages per second asked for; 0 for full speed.
    rate: u64,
    /// Wall clock (microseconds since the Unix epoch) just before the first write.
    started_us: u64,
    /// From the first write until the broker had read the last message.
    seconds: f64,
    messages_per_second: f64,
}

#[derive(Debug, Serialize)]
struct LoadRetained {
    mode: &'static str,
    messages: u64,
    size: usize,
    publishers: usize,
    /// From the first write until every publisher had its PINGRESP: both brokers answer a
    /// PINGREQ in order, after the messages before it.
    seconds: f64,
    /// `messages` over `seconds`.
    messages_per_second: f64,
    /// From the first write until `$SYS/broker/retained messages/count` read at least
    /// `messages` (it is published every `sys_interval`, so this is coarse).
    confirmed_seconds: f64,
    /// The broker's count when it was confirmed (its own `$SYS` messages count too).
    retained_count: u64,
}

#[derive(Debug, Serialize)]
struct RetainedCount {
    mode: &'static str,
    at_least: u64,
    retained_count: u64,
    /// Until the count was read at or above `at_least`.
    seconds: f64,
}

#[derive(Debug, Serialize)]
struct Big {
    mode: &'static str,
    size: usize,
    /// Rounds run (fewer than asked when --seconds ran out).
    repeats: usize,
    /// From the publisher's write to the complete packet decoded by the WebSocket subscriber.
    ws_median_ms: f64,
    ws_max_ms: f64,
    /// The same for the TCP subscriber.
    tcp_median_ms: f64,
    tcp_max_ms: f64,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let placement = Placement::new(&cli)?;
    let target = Target::new(cli.transport, cli.addr, cli.ws_url, cli.tls_ca.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let deadline = Duration::from_secs(cli.timeout);
    // Counting stops at `deadline`; this bounds the rest (connecting, waiting for acknowledgements,
    // draining) so that no mode can hang, whatever the broker does.
    let limit = match &cli.mode {
        Mode::Soak(args) => args.limit(),
        Mode::Fleet(args) => args.limit(),
        _ => deadline + 2 * STALL + Duration::from_secs(10),
    };
    let run = run_mode(cli.mode, target, placement, deadline);
    runtime.block_on(async move {
        tokio::time::timeout(limit, run)
            .await
            .with_context(|| format!("gave up after {} s", limit.as_secs()))?
    })
}

/// Runs one mode and prints its JSON line.
async fn run_mode(
    mode: Mode,
    target: Target,
    placement: Option<Placement>,
    deadline: Duration,
) -> Result<()> {
    let placement = placement.unwrap_or_else(|| Placement::alone(&target));
    match mode {
        Mode::Fanin {
            publishers,
            messages,
            size,
            qos,
            window,
            ahead,
            expect_all,
            persistent,
        } => {
            let load = FanIn {
                publishers,
                messages,
                size,
                qos,
                window,
                ahead,
                subscriber: if persistent {
                    Session::Persistent
                } else {
                    Session::Clean
                },
            };
            let result = fan_in(&placement, &load, deadline).await?;
            report_throughput(&result, expect_all)
        }
        Mode::Fanout {
            subscribers,
            messages,
            size,
            qos,
            window,
            ahead,
            expect_all,
        } => {
            let load = FanOut {
                subscribers,
                messages,
                size,
                qos,
                window,
                ahead,
            };
            let result = fan_out(&placement, &load, deadline).await?;
            report_throughput(&result, expect_all)
        }
        Mode::Idle { connections, pid } => {
            let result = idle(&target, connections, pid).await?;
            println!("{}", serde_json::to_string(&result)?);
            Ok(())
        }
        Mode::Connrate {
            connections,
            concurrency,
        } => {
            let result = connection_rate(&target, connections, concurrency).await?;
            println!("{}", serde_json::to_string(&result)?);
            Ok(())
        }
        Mode::Latency {
            rate,
            seconds,
            size,
        } => {
            let result = latency(&placement, rate, seconds, size).await?;
            println!("{}", serde_json::to_string(&result)?);
            Ok(())
        }
        Mode::Big {
            size,
            repeats,
            seconds,
        } => {
            let budget = Duration::from_secs(seconds);
            let result = big(&target, size, repeats, budget, deadline).await?;
            println!("{}", serde_json::to_string(&result)?);
            Ok(())
        }
        Mode::Publish {
            topic,
            messages,
            size,
            rate,
        } => {
            let result = publish_stream(&target, &topic, messages, size, rate).await?;
            println!("{}", serde_json::to_string(&result)?);
            Ok(())
        }
        Mode::LoadRetained {
            messages,
            size,
            publishers,
        } => {
            let result = load_retained(&target, messages, size, publishers, deadline).await?;
            println!("{}", serde_json::to_string(&result)?);
            Ok(())
        }
        Mode::Soak(args) => soak::run(target.tcp, args).await,
        Mode::Fleet(args) => fleet::report(&fleet::run(&target, &args).await?, &args),
        Mode::RetainedCount { at_least } => {
            let start = Instant::now();
            let count = await_retained_count(&target, at_least, start + deadline).await?;
            let result = RetainedCount {
                mode: "retained-count",
                at_least,
                retained_count: count,
                seconds: start.elapsed().as_secs_f64(),
            };
            println!("{}", serde_json::to_string(&result)?);
            Ok(())
        }
    }
}

fn report_throughput(result: &Throughput, expect_all: bool) -> Result<()> {
    println!("{}", serde_json::to_string(result)?);
    if expect_all && result.lost > 0 {
        bail!("{} of {} messages lost", result.lost, result.expected);
    }
    Ok(())
}

/// The load QoS: 0 or 1 (the loads the benchmark compares; QoS 2 is tested, not benchmarked).
fn qos_of(qos: u8) -> Result<QoS> {
    match qos {
        0 => Ok(QoS::AtMostOnce),
        1 => Ok(QoS::AtLeastOnce),
        _ => bail!("mqtt-bench loads QoS 0 or 1"),
    }
}

/// A connected client with a clean session: CONNECT sent and CONNACK received.
async fn connect(target: &Target, client_id: &str) -> Result<(Reader, Writer)> {
    connect_session(target, client_id, Session::Clean).await
}

/// Which session a client asks for in its CONNECT (MQTT 3.1.1's clean session flag).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Session {
    /// Clean session 1: the broker discards any previous session and this one ends with the
    /// connection.
    Clean,
    /// Clean session 0: the broker keeps the session (subscriptions, QoS 1 messages) after the
    /// connection ends, and resumes a previous one.
    Persistent,
}

/// A connected client: CONNECT sent (with the clean session flag of `session`) and CONNACK
/// received.
async fn connect_session(
    target: &Target,
    client_id: &str,
    session: Session,
) -> Result<(Reader, Writer)> {
    let (mut reader, mut writer) = target.open().await?;
    let connect = Packet::Connect(ConnectPacket {
        protocol: ProtocolVersion::V311,
        clean_start: session == Session::Clean,
        keep_alive: 60,
        client_id: ByteStr::from(client_id),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    });
    let mut buf = BytesMut::new();
    encode(&connect, ProtocolVersion::V311, &mut buf)?;
    writer.write_all(&buf).await?;
    match read_packet(&mut reader, &mut BytesMut::new()).await? {
        Packet::ConnAck(ack) if !ack.reason_code.is_error() => Ok((reader, writer)),
        other => bail!("{client_id}: connection refused: {other:?}"),
    }
}

async fn read_packet(reader: &mut Reader, buf: &mut BytesMut) -> Result<Packet> {
    loop {
        if let Some(packet) = decode(buf, ProtocolVersion::V311, usize::MAX)? {
            return Ok(packet);
        }
        if reader.read_buf(buf).await? == 0 {
            bail!("connection closed by the broker");
        }
    }
}

/// Subscribes and waits for the SUBACK. Bytes read past the SUBACK are dropped: for filters
/// that match no retained message, whose messages come only once the caller publishes.
async fn subscribe(reader: &mut Reader, writer: &mut Writer, filter: &str, qos: QoS) -> Result<()> {
    subscribe_keeping(reader, writer, filter, qos, &mut BytesMut::new()).await
}

/// Subscribes and waits for the SUBACK, leaving in `buf` what was read past it: the retained
/// messages the broker sends right after may arrive in the same read.
async fn subscribe_keeping(
    reader: &mut Reader,
    writer: &mut Writer,
    filter: &str,
    qos: QoS,
    buf: &mut BytesMut,
) -> Result<()> {
    let packet = Packet::Subscribe(SubscribePacket {
        packet_id: 1,
        properties: Properties::default(),
        subscriptions: vec![Subscription {
            filter: ByteStr::from(filter),
            options: SubscriptionOptions {
                qos,
                ..SubscriptionOptions::default()
            },
        }],
    });
    let mut out = BytesMut::new();
    encode(&packet, ProtocolVersion::V311, &mut out)?;
    writer.write_all(&out).await?;
    match read_packet(reader, buf).await? {
        Packet::SubAck(ack) if ack.reason_codes.iter().all(|c| !c.is_error()) => Ok(()),
        other => bail!("subscription to {filter} refused: {other:?}"),
    }
}

fn publish_bytes(topic: &str, payload: Bytes, qos: QoS, packet_id: u16, out: &mut BytesMut) {
    encode_publish(topic, payload, qos, packet_id, false, out);
}

/// Appends one PUBLISH to `out`, with the retain flag when `retain`.
fn encode_publish(
    topic: &str,
    payload: Bytes,
    qos: QoS,
    packet_id: u16,
    retain: bool,
    out: &mut BytesMut,
) {
    let packet = Packet::Publish(PublishPacket {
        dup: false,
        qos,
        retain,
        topic: ByteStr::from(topic),
        packet_id: (qos != QoS::AtMostOnce).then_some(packet_id),
        properties: Properties::default(),
        payload,
    });
    encode(&packet, ProtocolVersion::V311, out).expect("benchmark packets are valid");
}

/// How a publisher paces itself: QoS 1 messages in flight, and the load's [`Gate`] if any.
struct Flow {
    window: usize,
    gate: Option<Arc<Gate>>,
}

/// Just a window: no gate.
impl From<usize> for Flow {
    fn from(window: usize) -> Flow {
        Flow { window, gate: None }
    }
}

/// Keeps the publishers of a load at most `ahead` messages ahead of its slowest subscriber
/// (`--ahead`): each subscriber is to receive every message published, so what was published
/// less what the slowest received is what is still on its way. A cluster's nodes forward
/// through bounded queues and NATS, which drop what overflows; with the gate the load measures
/// what the cluster carries without overrunning them. When the slowest subscriber received
/// nothing for [`STALL`] (messages lost), the publishers go on, and the loss is counted.
struct Gate {
    ahead: u64,
    published: AtomicU64,
    received: Vec<Arc<AtomicU64>>,
}

impl Gate {
    fn new(ahead: u64, received: &[Arc<AtomicU64>]) -> Option<Arc<Gate>> {
        (ahead > 0).then(|| {
            Arc::new(Gate {
                ahead,
                published: AtomicU64::new(0),
                received: received.to_vec(),
            })
        })
    }

    /// Waits until `count` more messages may be published, then counts them as published.
    async fn admit(&self, count: u64) {
        let published = self.published.fetch_add(count, Ordering::Relaxed) + count;
        let slowest = || {
            self.received
                .iter()
                .map(|received| received.load(Ordering::Relaxed))
                .min()
                .unwrap_or(u64::MAX)
        };
        let mut floor = slowest();
        let mut progress = Instant::now();
        while published.saturating_sub(floor) > self.ahead && progress.elapsed() < STALL {
            // A millisecond is little next to the time `ahead` messages take to cross.
            tokio::time::sleep(Duration::from_millis(1)).await;
            let now = slowest();
            if now > floor {
                floor = now;
                progress = Instant::now();
            }
        }
    }
}

/// Publishes `messages` messages on `topic`; QoS 1 keeps at most `window` in flight, and a
/// gate, if any, keeps the load from running ahead of its subscribers.
async fn publisher(
    target: Target,
    client_id: String,
    topic: String,
    messages: u64,
    size: usize,
    qos: QoS,
    flow: impl Into<Flow>,
) -> Result<()> {
    let Flow { window, gate } = flow.into();
    let (mut reader, mut writer) = connect(&target, &client_id).await?;
    let payload = Bytes::from(vec![b'x'; size]);
    if qos == QoS::AtMostOnce {
        let mut batch = BytesMut::new();
        for _ in 0..BATCH {
            publish_bytes(&topic, payload.clone(), qos, 0, &mut batch);
        }
        let mut sent = 0;
        while sent + BATCH as u64 <= messages {
            if let Some(gate) = &gate {
                gate.admit(BATCH as u64).await;
            }
            writer.write_all(&batch).await?;
            sent += BATCH as u64;
        }
        if let Some(gate) = &gate {
            gate.admit(messages - sent).await;
        }
        let mut rest = BytesMut::new();
        for _ in sent..messages {
            publish_bytes(&topic, payload.clone(), qos, 0, &mut rest);
        }
        writer.write_all(&rest).await?;
        // A PINGREQ answered means the broker has read everything before it.
        writer.write_all(&[0xC0, 0x00]).await?;
        let mut buf = BytesMut::new();
        while !matches!(read_packet(&mut reader, &mut buf).await?, Packet::PingResp) {}
        return Ok(());
    }

    let permits = Arc::new(Semaphore::new(window));
    let acker = {
        let permits = permits.clone();
        tokio::spawn(async move {
            let mut buf = BytesMut::new();
            let mut completed = 0;
            while completed < messages {
                if let Packet::PubAck(_) = read_packet(&mut reader, &mut buf).await? {
                    completed += 1;
                    permits.add_permits(1);
                }
            }
            Ok::<_, anyhow::Error>(completed)
        })
    };
    let mut sent = 0u64;
    let mut batch = BytesMut::new();
    while sent < messages {
        let count = (messages - sent).min(BATCH as u64).min(window as u64) as u32;
        permits.acquire_many(count).await?.forget();
        if let Some(gate) = &gate {
            gate.admit(u64::from(count)).await;
        }
        batch.clear();
        for offset in 0..u64::from(count) {
            let packet_id = ((sent + offset) % u64::from(u16::MAX)) as u16 + 1;
            publish_bytes(&topic, payload.clone(), qos, packet_id, &mut batch);
        }
        writer.write_all(&batch).await?;
        sent += u64::from(count);
    }
    let completed = acker.await??;
    ensure!(
        completed == messages,
        "{client_id}: only {completed} of {messages} acknowledged"
    );
    Ok(())
}

/// Counts PUBLISH packets until `expected` arrived or nothing came for [`STALL`]; answers
/// QoS 1 with PUBACK. Returns the count and the time of the last arrival. A late probe of
/// [`await_interest`] is neither counted nor taken for an arrival.
async fn count_messages(
    mut reader: Reader,
    mut writer: Writer,
    expected: u64,
    received: Arc<AtomicU64>,
    deadline: Instant,
) -> Result<Instant> {
    let mut buf = BytesMut::with_capacity(256 * 1024);
    let mut acks = BytesMut::new();
    let mut count = 0u64;
    let mut last = Instant::now();
    while count < expected && Instant::now() < deadline {
        if buf.capacity() - buf.len() < 64 * 1024 {
            buf.reserve(256 * 1024);
        }
        let read = tokio::time::timeout(STALL, reader.read_buf(&mut buf)).await;
        match read {
            Err(_) => break,
            Ok(Ok(0)) => bail!("subscriber disconnected by the broker after {count} messages"),
            Ok(Ok(_)) => {}
            Ok(Err(error)) => return Err(error),
        }
        let before = count;
        // Walk the fixed headers: counting does not need a full decode.
        let mut view = &buf[..];
        let mut consumed = 0;
        while let Some((header, body_start, total)) = frame(view) {
            if header >> 4 == 3 {
                let body = &view[body_start..total];
                let topic_len = usize::from(u16::from_be_bytes([body[0], body[1]]));
                let qos1 = (header >> 1) & 0b11 == 1;
                if qos1 {
                    let id = &body[2 + topic_len..4 + topic_len];
                    acks.put_slice(&[0x40, 0x02, id[0], id[1]]);
                }
                let payload = 2 + topic_len + if qos1 { 2 } else { 0 };
                if !body
                    .get(payload..)
                    .is_some_and(|bytes| bytes.starts_with(PROBE))
                {
                    count += 1;
                }
            }
            view = &view[total..];
            consumed += total;
        }
        buf.advance(consumed);
        if count > before {
            last = Instant::now();
        }
        received.store(count, Ordering::Relaxed);
        if !acks.is_empty() {
            writer.write_all(&acks).await?;
            acks.clear();
        }
    }
    Ok(last)
}

/// The first byte, the offset of the body and the total length of the first complete packet.
fn frame(bytes: &[u8]) -> Option<(u8, usize, usize)> {
    let header = *bytes.first()?;
    let mut length = 0usize;
    for (index, byte) in bytes.iter().skip(1).take(4).enumerate() {
        length |= usize::from(byte & 0x7F) << (7 * index);
        if byte & 0x80 == 0 {
            let body_start = index + 2;
            let total = body_start + length;
            return (bytes.len() >= total).then_some((header, body_start, total));
        }
    }
    None
}

/// Where the clients of the `fanin`, `fanout` and `latency` modes connect: all to the one
/// broker of --addr (or --ws-url) by default; with --sub-addr or --pub-addr, the subscribers
/// and the publishers each to their own brokers (nodes of one cluster), spread over them in
/// turn, and the load then waits for interest first ([`await_interest`]).
#[derive(Clone, Debug)]
struct Placement {
    /// Subscriber `i` connects to `subscribers[i % len]`.
    subscribers: Vec<Target>,
    /// Publisher `i` connects to `publishers[i % len]`.
    publishers: Vec<Target>,
    /// Whether the load waits for interest with probes.
    probe: bool,
}

impl Placement {
    /// From --sub-addr and --pub-addr (either defaults to --addr); `None` when neither is given.
    fn new(cli: &Cli) -> Result<Option<Placement>> {
        if cli.sub_addr.is_empty() && cli.pub_addr.is_empty() {
            return Ok(None);
        }
        ensure!(
            cli.transport != Kind::Ws,
            "--sub-addr and --pub-addr are MQTT over TCP or TLS addresses: not with --transport ws"
        );
        let targets = |addresses: &[SocketAddr]| -> Result<Vec<Target>> {
            let addresses = if addresses.is_empty() {
                std::slice::from_ref(&cli.addr)
            } else {
                addresses
            };
            addresses
                .iter()
                .map(|&address| {
                    let url = cli.ws_url.clone();
                    Target::new(cli.transport, address, url, cli.tls_ca.as_deref())
                })
                .collect()
        };
        Ok(Some(Placement {
            subscribers: targets(&cli.sub_addr)?,
            publishers: targets(&cli.pub_addr)?,
            probe: true,
        }))
    }

    /// Every client on `target`, no probes: the modes as they always ran.
    fn alone(target: &Target) -> Placement {
        Placement {
            subscribers: vec![target.clone()],
            publishers: vec![target.clone()],
            probe: false,
        }
    }

    fn subscriber(&self, index: usize) -> &Target {
        &self.subscribers[index % self.subscribers.len()]
    }

    fn publisher(&self, index: usize) -> &Target {
        &self.publishers[index % self.publishers.len()]
    }
}

/// How every probe's payload starts (then the probing broker's index): no load message does,
/// so a probe that arrives late is skipped rather than counted.
const PROBE: &[u8] = b"mqtt-bench probe ";
/// Longest wait for interest to cross to one broker.
const INTEREST_WAIT: Duration = Duration::from_secs(10);
/// A probe is published again when none arrived for this long.
const PROBE_EVERY: Duration = Duration::from_millis(50);
/// The probes are over once a subscriber received none for this long.
const PROBE_SILENCE: Duration = Duration::from_millis(200);

/// Waits until a message published on each of the publishers' brokers reaches each subscriber.
/// In a cluster, a subscription made on one node reaches the other nodes a few milliseconds
/// after its SUBACK, and what they forward meanwhile is for nobody: a load started at once
/// would lose its first messages. So a client on each publishers' broker publishes QoS 0
/// probes on `topic` (which the subscribers' filter matches), one every [`PROBE_EVERY`], until
/// the subscriber has read one of that broker's probes; then the subscribers read on until
/// none came for [`PROBE_SILENCE`]. A probe still on its way is skipped by the counting
/// ([`PROBE`]). On a single broker the first probe arrives at once.
async fn await_interest(
    placement: &Placement,
    subscribers: &mut [&mut Reader],
    topic: &str,
) -> Result<()> {
    let mut brokers: Vec<&Target> = Vec::new();
    for target in &placement.publishers {
        if !brokers.iter().any(|known| known.tcp == target.tcp) {
            brokers.push(target);
        }
    }
    let mut buffers: Vec<BytesMut> = subscribers.iter().map(|_| BytesMut::new()).collect();
    for (index, target) in brokers.into_iter().enumerate() {
        let (_reader, mut writer) = connect(target, &format!("bench-probe-{index}")).await?;
        let payload = Bytes::from([PROBE, index.to_string().as_bytes()].concat());
        let mut probe = BytesMut::new();
        publish_bytes(topic, payload.clone(), QoS::AtMostOnce, 0, &mut probe);
        let deadline = Instant::now() + INTEREST_WAIT;
        for (reader, buf) in subscribers.iter_mut().zip(&mut buffers) {
            loop {
                writer.write_all(&probe).await?;
                if read_probe(reader, buf, &payload, PROBE_EVERY).await? {
                    break;
                }
                ensure!(
                    Instant::now() < deadline,
                    "interest in {topic} did not reach the broker at {} within {} s",
                    target.tcp,
                    INTEREST_WAIT.as_secs()
                );
            }
        }
    }
    let drained = subscribers
        .iter_mut()
        .zip(&mut buffers)
        .map(|(reader, buf)| drain_probes(reader, buf));
    futures_util::future::try_join_all(drained).await?;
    Ok(())
}

/// Reads packets for at most `wait`; whether one was a PUBLISH with `payload`.
async fn read_probe(
    reader: &mut Reader,
    buf: &mut BytesMut,
    payload: &[u8],
    wait: Duration,
) -> Result<bool> {
    let until = tokio::time::Instant::now() + wait;
    // Cancelling `read_packet` loses nothing: what it read stays in `buf`.
    while let Ok(packet) = tokio::time::timeout_at(until, read_packet(reader, buf)).await {
        if let Packet::Publish(publish) = packet? {
            if publish.payload == payload {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Reads the probes still coming until none came for [`PROBE_SILENCE`] and no packet is half
/// read, so that the counting starts on a packet boundary.
async fn drain_probes(reader: &mut Reader, buf: &mut BytesMut) -> Result<()> {
    let deadline = Instant::now() + INTEREST_WAIT;
    loop {
        match tokio::time::timeout(PROBE_SILENCE, read_packet(reader, buf)).await {
            Ok(packet) => {
                packet?;
            }
            Err(_) if buf.is_empty() => return Ok(()),
            Err(_) => ensure!(
                Instant::now() < deadline,
                "a packet stayed half read after the probes"
            ),
        }
    }
}

/// The `fanin` mode's load.
struct FanIn {
    publishers: usize,
    /// Messages per publisher.
    messages: u64,
    size: usize,
    qos: u8,
    /// QoS 1 messages in flight per publisher.
    window: usize,
    /// The publishers' lead over the subscriber, at most (0: unbounded).
    ahead: u64,
    /// The subscriber's session.
    subscriber: Session,
}

/// The subscriber's client id in the `fanin` mode.
const FAN_IN_SUBSCRIBER: &str = "bench-sub";

async fn fan_in(placement: &Placement, load: &FanIn, timeout: Duration) -> Result<Throughput> {
    let target = placement.subscriber(0);
    let qos_level = qos_of(load.qos)?;
    let persistent = load.subscriber == Session::Persistent;
    if persistent {
        // A session left by an earlier run would hold its subscription and messages.
        discard_session(target, FAN_IN_SUBSCRIBER).await?;
    }
    let (mut reader, mut writer) =
        connect_session(target, FAN_IN_SUBSCRIBER, load.subscriber).await?;
    subscribe(&mut reader, &mut writer, "bench/fanin/#", qos_level).await?;
    if placement.probe {
        await_interest(placement, &mut [&mut reader], "bench/fanin/probe").await?;
    }
    let expected = load.messages * load.publishers as u64;
    let received = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let counter = tokio::spawn(count_messages(
        reader,
        writer,
        expected,
        received.clone(),
        start + timeout,
    ));
    let gate = Gate::new(load.ahead, std::slice::from_ref(&received));
    let mut tasks = Vec::new();
    for index in 0..load.publishers {
        let flow = Flow {
            window: load.window,
            gate: gate.clone(),
        };
        tasks.push(tokio::spawn(publisher(
            placement.publisher(index).clone(),
            format!("bench-pub-{index}"),
            format!("bench/fanin/{index}"),
            load.messages,
            load.size,
            qos_level,
            flow,
        )));
    }
    for task in tasks {
        task.await??;
    }
    let last = counter.await??;
    if persistent {
        // Not left to the next run, nor kept in the broker's store.
        discard_session(target, FAN_IN_SUBSCRIBER).await?;
    }
    let received = received.load(Ordering::Relaxed);
    let seconds = last.duration_since(start).as_secs_f64();
    Ok(Throughput {
        mode: "fanin",
        qos: load.qos,
        persistent,
        ahead: load.ahead,
        expected,
        received,
        lost: expected.saturating_sub(received),
        seconds,
        messages_per_second: received as f64 / seconds,
        tls: target.negotiated(),
    })
}

/// Ends any session of `client_id`: connects with a clean session (which discards the stored
/// one) and disconnects, then waits (at most a second) for the broker to close the connection,
/// so that a next CONNECT with this id comes after the broker has handled this one.
async fn discard_session(target: &Target, client_id: &str) -> Result<()> {
    let (mut reader, mut writer) = connect(target, client_id).await?;
    writer.write_all(&[0xE0, 0x00]).await?;
    let mut buf = BytesMut::new();
    let closed = async {
        while reader.read_buf(&mut buf).await? > 0 {
            buf.clear();
        }
        Ok::<_, anyhow::Error>(())
    };
    // A broker that keeps the socket open a while is no error: the session is gone anyway.
    let _ = tokio::time::timeout(Duration::from_secs(1), closed).await;
    Ok(())
}

/// The `fanout` mode's load.
struct FanOut {
    subscribers: usize,
    /// Messages published (each subscriber is to receive them all).
    messages: u64,
    size: usize,
    qos: u8,
    /// QoS 1 messages in flight for the publisher.
    window: usize,
    /// The publisher's lead over the slowest subscriber, at most (0: unbounded).
    ahead: u64,
}

async fn fan_out(placement: &Placement, load: &FanOut, timeout: Duration) -> Result<Throughput> {
    let &FanOut {
        subscribers,
        messages,
        size,
        qos,
        window,
        ahead,
    } = load;
    let qos_level = qos_of(qos)?;
    let received: Vec<Arc<AtomicU64>> = (0..subscribers)
        .map(|_| Arc::new(AtomicU64::new(0)))
        .collect();
    let mut connected = Vec::new();
    for index in 0..subscribers {
        let target = placement.subscriber(index);
        let (mut reader, mut writer) = connect(target, &format!("bench-sub-{index}")).await?;
        subscribe(&mut reader, &mut writer, "bench/fanout", qos_level).await?;
        connected.push((reader, writer));
    }
    if placement.probe {
        let mut readers: Vec<&mut Reader> =
            connected.iter_mut().map(|(reader, _)| reader).collect();
        await_interest(placement, &mut readers, "bench/fanout").await?;
    }
    let start = Instant::now();
    let counters: Vec<_> = connected
        .into_iter()
        .zip(&received)
        .map(|((reader, writer), count)| {
            tokio::spawn(count_messages(
                reader,
                writer,
                messages,
                count.clone(),
                start + timeout,
            ))
        })
        .collect();
    let flow = Flow {
        window,
        gate: Gate::new(ahead, &received),
    };
    publisher(
        placement.publisher(0).clone(),
        "bench-pub".into(),
        "bench/fanout".into(),
        messages,
        size,
        qos_level,
        flow,
    )
    .await?;
    let mut last = start;
    for counter in counters {
        last = last.max(counter.await??);
    }
    let expected = messages * subscribers as u64;
    let total: u64 = received.iter().map(|c| c.load(Ordering::Relaxed)).sum();
    let seconds = last.duration_since(start).as_secs_f64();
    Ok(Throughput {
        mode: "fanout",
        qos,
        persistent: false,
        ahead,
        expected,
        received: total,
        lost: expected.saturating_sub(total),
        seconds,
        messages_per_second: total as f64 / seconds,
        tls: placement.subscriber(0).negotiated(),
    })
}

async fn latency(placement: &Placement, rate: u64, seconds: u64, size: usize) -> Result<Latency> {
    ensure!(
        rate > 0 && size >= 8,
        "rate must be positive and size at least 8 bytes"
    );
    let target = placement.subscriber(0);
    let (mut reader, mut writer) = connect(target, "bench-lat-sub").await?;
    subscribe(&mut reader, &mut writer, "bench/latency", QoS::AtMostOnce).await?;
    if placement.probe {
        await_interest(placement, &mut [&mut reader], "bench/latency").await?;
    }
    let (_pub_reader, mut pub_writer) = connect(placement.publisher(0), "bench-lat-pub").await?;
    let base = Instant::now();
    let total = rate * seconds;
    let receiver = tokio::spawn(async move {
        let mut buf = BytesMut::new();
        let mut samples = Vec::with_capacity(total as usize);
        while (samples.len() as u64) < total {
            let packet = tokio::time::timeout(STALL, read_packet(&mut reader, &mut buf)).await;
            let Ok(packet) = packet else { break };
            if let Packet::Publish(publish) = packet? {
                if publish.payload.starts_with(PROBE) {
                    continue;
                }
                let sent = u64::from_be_bytes(publish.payload[..8].try_into()?);
                let now = base.elapsed().as_nanos() as u64;
                samples.push(now.saturating_sub(sent));
            }
        }
        Ok::<_, anyhow::Error>(samples)
    });
    let interval = Duration::from_nanos(1_000_000_000 / rate);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut out = BytesMut::new();
    for _ in 0..total {
        ticker.tick().await;
        let mut payload = BytesMut::with_capacity(size);
        payload.put_u64(base.elapsed().as_nanos() as u64);
        payload.resize(size, b'x');
        out.clear();
        publish_bytes(
            "bench/latency",
            payload.freeze(),
            QoS::AtMostOnce,
            0,
            &mut out,
        );
        pub_writer.write_all(&out).await?;
    }
    let mut samples = receiver.await??;
    samples.sort_unstable();
    let percentile_us = |p: f64| percentile(&samples, p) / 1000.0;
    Ok(Latency {
        mode: "latency",
        sent: total,
        received: samples.len() as u64,
        p50_us: percentile_us(0.50),
        p90_us: percentile_us(0.90),
        p99_us: percentile_us(0.99),
        p999_us: percentile_us(0.999),
        max_us: samples.last().map_or(f64::NAN, |&v| v as f64 / 1000.0),
        tls: target.negotiated(),
    })
}

/// The nearest-rank percentile `p` (0 to 1) of `sorted` (ascending): the smallest sample with
/// at least a fraction `p` of the samples at or below it; NaN when there are none.
fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    // Less a hair: 100 * 0.07 is 7.000000000000001 in floating point, whose ceiling would
    // take the 8th sample.
    let rank = (sorted.len() as f64 * p - 1e-9).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64
}

/// Microseconds since the Unix epoch: the clock a browser's `performance.timeOrigin +
/// performance.now()` reads too, so a page on this machine can subtract it from its own.
fn epoch_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_micros() as u64)
}

/// The `publish` mode: `messages` QoS 0 messages on `topic`, at full speed (`rate` 0) or at
/// `rate` per second with the send time in the first 8 payload bytes. Returns once the broker has
/// read them all (a PINGREQ sent after the last one is answered).
async fn publish_stream(
    target: &Target,
    topic: &str,
    messages: u64,
    size: usize,
    rate: u64,
) -> Result<Publish> {
    ensure!(
        rate == 0 || size >= 8,
        "a timed stream needs payloads of at least 8 bytes"
    );
    let started_us;
    let start;
    // Nanoseconds between sends, none at full speed.
    let spacing = 1_000_000_000u64.checked_div(rate);
    if let Some(spacing) = spacing {
        let (mut reader, mut writer) = connect(target, "bench-publish").await?;
        let mut ticker = tokio::time::interval(Duration::from_nanos(spacing));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut out = BytesMut::new();
        ticker.tick().await;
        started_us = epoch_us();
        start = Instant::now();
        for index in 0..messages {
            if index > 0 {
                ticker.tick().await;
            }
            let mut payload = BytesMut::with_capacity(size);
            payload.put_u64(epoch_us());
            payload.resize(size, b'x');
            out.clear();
            publish_bytes(topic, payload.freeze(), QoS::AtMostOnce, 0, &mut out);
            writer.write_all(&out).await?;
        }
        writer.write_all(&[0xC0, 0x00]).await?;
        let mut buf = BytesMut::new();
        while !matches!(read_packet(&mut reader, &mut buf).await?, Packet::PingResp) {}
    } else {
        started_us = epoch_us();
        start = Instant::now();
        publisher(
            target.clone(),
            "bench-publish".into(),
            topic.into(),
            messages,
            size,
            QoS::AtMostOnce,
            1,
        )
        .await?;
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(Publish {
        mode: "publish",
        messages,
        rate,
        started_us,
        seconds,
        messages_per_second: messages as f64 / seconds,
    })
}

/// The topic of the `index`th retained message: a thousand topics per level-3 node, so that the
/// broker's tree has the shape of many devices' topics rather than one flat level.
fn retained_topic(index: u64) -> String {
    format!("bench/retained/{}/{}", index / 1000, index % 1000)
}

/// `0..messages` cut into `publishers` contiguous ranges, as even as can be (some may be empty).
fn shares(messages: u64, publishers: usize) -> Vec<std::ops::Range<u64>> {
    let share = messages.div_ceil(publishers as u64);
    (0..publishers as u64)
        .map(|index| {
            let first = (index * share).min(messages);
            first..(first + share).min(messages)
        })
        .collect()
}

/// Bytes of PUBLISH packets a loader encodes before writing them at once.
const LOAD_CHUNK: usize = 128 * 1024;

/// The `load-retained` mode: `messages` retained QoS 0 messages of `size` bytes on distinct
/// topics, split in contiguous ranges among `publishers` pipelining clients, then confirmed by
/// the broker's `$SYS` count. Fails unless confirmed by `deadline` (from the start).
async fn load_retained(
    target: &Target,
    messages: u64,
    size: usize,
    publishers: usize,
    deadline: Duration,
) -> Result<LoadRetained> {
    ensure!(publishers > 0, "--publishers must be positive");
    let payload = Bytes::from(vec![b'x'; size]);
    let mut clients = Vec::with_capacity(publishers);
    for index in 0..publishers {
        clients.push(connect(target, &format!("bench-retain-{index}")).await?);
    }
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(publishers);
    let shares = shares(messages, publishers);
    for ((mut reader, mut writer), share) in clients.into_iter().zip(shares) {
        let payload = payload.clone();
        tasks.push(tokio::spawn(async move {
            let mut chunk = BytesMut::with_capacity(LOAD_CHUNK + 256);
            for message in share {
                let topic = retained_topic(message);
                encode_publish(
                    &topic,
                    payload.clone(),
                    QoS::AtMostOnce,
                    0,
                    true,
                    &mut chunk,
                );
                if chunk.len() >= LOAD_CHUNK {
                    writer.write_all(&chunk).await?;
                    chunk.clear();
                }
            }
            // A PINGREQ answered means the broker has read everything before it.
            chunk.put_slice(&[0xC0, 0x00]);
            writer.write_all(&chunk).await?;
            let mut buf = BytesMut::new();
            while !matches!(read_packet(&mut reader, &mut buf).await?, Packet::PingResp) {}
            Ok::<_, anyhow::Error>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let seconds = start.elapsed().as_secs_f64();
    let retained_count = await_retained_count(target, messages, start + deadline).await?;
    Ok(LoadRetained {
        mode: "load-retained",
        messages,
        size,
        publishers,
        seconds,
        messages_per_second: messages as f64 / seconds,
        confirmed_seconds: start.elapsed().as_secs_f64(),
        retained_count,
    })
}

/// The topic where both brokers publish how many retained messages they hold.
const RETAINED_COUNT_TOPIC: &str = "$SYS/broker/retained messages/count";

/// Subscribes to [`RETAINED_COUNT_TOPIC`] and reads its updates until one says at least
/// `at_least`; returns that count. Fails at `deadline` with the last count read.
async fn await_retained_count(target: &Target, at_least: u64, deadline: Instant) -> Result<u64> {
    let (mut reader, mut writer) = connect(target, "bench-retained-count").await?;
    // The retained count follows the SUBACK at once, maybe in the same read.
    let mut buf = BytesMut::new();
    subscribe_keeping(
        &mut reader,
        &mut writer,
        RETAINED_COUNT_TOPIC,
        QoS::AtMostOnce,
        &mut buf,
    )
    .await?;
    let mut last = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let packet = tokio::time::timeout(left, read_packet(&mut reader, &mut buf)).await;
        let Ok(packet) = packet else {
            bail!(
                "{RETAINED_COUNT_TOPIC} did not reach {at_least} in time (last read: {})",
                last.map_or("nothing".to_string(), |count: u64| count.to_string())
            );
        };
        if let Packet::Publish(publish) = packet? {
            if publish.topic.as_str() != RETAINED_COUNT_TOPIC {
                continue;
            }
            let count = parse_count(&publish.payload)
                .with_context(|| format!("{RETAINED_COUNT_TOPIC}: {:?}", publish.payload))?;
            last = Some(count);
            if count >= at_least {
                writer.write_all(&[0xE0, 0x00]).await?;
                return Ok(count);
            }
        }
    }
}

/// A `$SYS` counter's payload: a decimal number as text.
fn parse_count(payload: &[u8]) -> Option<u64> {
    std::str::from_utf8(payload).ok()?.trim().parse().ok()
}

/// Resident memory of a process, from /proc/PID/status.
fn rss_kb(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS line")
}

async fn idle(target: &Target, connections: usize, pid: u32) -> Result<Idle> {
    // Warm the broker up with a few connections so one-off allocations are not counted.
    let mut warm = Vec::new();
    for index in 0..16 {
        warm.push(connect(target, &format!("bench-warm-{index}")).await?);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kb(pid)?;
    let mut held = Vec::with_capacity(connections);
    for index in 0..connections {
        held.push(connect(target, &format!("bench-idle-{index}")).await?);
    }
    // Let the broker settle (freed buffers returned, timers armed) before reading.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_kb(pid)?;
    drop(held);
    drop(warm);
    Ok(Idle {
        mode: "idle",
        connections,
        rss_before_kb: before,
        rss_after_kb: after,
        kb_per_connection: after.saturating_sub(before) as f64 / connections as f64,
    })
}

async fn connection_rate(
    target: &Target,
    connections: usize,
    concurrency: usize,
) -> Result<ConnectionRate> {
    let start = Instant::now();
    let per_loop = connections / concurrency.max(1);
    let mut loops = Vec::new();
    for worker in 0..concurrency.max(1) {
        let target = target.clone();
        loops.push(tokio::spawn(async move {
            for index in 0..per_loop {
                let (_reader, mut writer) =
                    connect(&target, &format!("bench-rate-{worker}-{index}")).await?;
                writer.write_all(&[0xE0, 0x00]).await?;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for task in loops {
        task.await??;
    }
    let seconds = start.elapsed().as_secs_f64();
    let done = per_loop * concurrency.max(1);
    Ok(ConnectionRate {
        mode: "connrate",
        connections: done,
        seconds,
        connections_per_second: done as f64 / seconds,
    })
}

/// Times up to `repeats` deliveries of one `size`-byte QoS 1 message published over WebSocket, to
/// a WebSocket subscriber and a TCP subscriber at once. One round at a time: the next message
/// leaves once both subscribers have it and the publisher has its PUBACK, so each figure is the
/// time of a lone large message, not of a queue of them. No round starts after `budget`, and each
/// must end within `round_limit`.
async fn big(
    target: &Target,
    size: usize,
    repeats: usize,
    budget: Duration,
    round_limit: Duration,
) -> Result<Big> {
    ensure!(repeats > 0, "--repeats must be positive");
    let ws = target.with_kind(Kind::Ws);
    let tcp = target.with_kind(Kind::Tcp);
    let (mut ws_reader, mut ws_writer) = connect(&ws, "bench-big-ws-sub").await?;
    subscribe(
        &mut ws_reader,
        &mut ws_writer,
        "bench/big",
        QoS::AtLeastOnce,
    )
    .await?;
    let (mut tcp_reader, mut tcp_writer) = connect(&tcp, "bench-big-tcp-sub").await?;
    subscribe(
        &mut tcp_reader,
        &mut tcp_writer,
        "bench/big",
        QoS::AtLeastOnce,
    )
    .await?;
    let (mut pub_reader, mut pub_writer) = connect(&ws, "bench-big-pub").await?;
    let payload = Bytes::from(vec![b'x'; size]);
    let (mut ws_buf, mut tcp_buf, mut pub_buf) =
        (BytesMut::new(), BytesMut::new(), BytesMut::new());
    let mut ws_ms = Vec::with_capacity(repeats);
    let mut tcp_ms = Vec::with_capacity(repeats);
    let mut packet = BytesMut::with_capacity(size + 64);
    let began = Instant::now();
    for round in 0..repeats {
        if round > 0 && began.elapsed() >= budget {
            break;
        }
        let packet_id = (round % usize::from(u16::MAX)) as u16 + 1;
        // Encoded before the clock starts: the figure is the brokers', not the encoder's.
        packet.clear();
        publish_bytes(
            "bench/big",
            payload.clone(),
            QoS::AtLeastOnce,
            packet_id,
            &mut packet,
        );
        let start = Instant::now();
        let publish = async {
            pub_writer.write_all(&packet).await?;
            wait_for_puback(&mut pub_reader, &mut pub_buf, packet_id).await
        };
        let round_trip = async {
            tokio::try_join!(
                publish,
                receive_one(&mut ws_reader, &mut ws_writer, &mut ws_buf, size),
                receive_one(&mut tcp_reader, &mut tcp_writer, &mut tcp_buf, size),
            )
        };
        let ((), ws_at, tcp_at) = tokio::time::timeout(round_limit, round_trip)
            .await
            .with_context(|| format!("round {round}: not delivered within {round_limit:?}"))??;
        ws_ms.push(ws_at.duration_since(start).as_secs_f64() * 1000.0);
        tcp_ms.push(tcp_at.duration_since(start).as_secs_f64() * 1000.0);
    }
    let (ws_median_ms, ws_max_ms) = median_and_max(&mut ws_ms);
    let (tcp_median_ms, tcp_max_ms) = median_and_max(&mut tcp_ms);
    Ok(Big {
        mode: "big",
        size,
        repeats: ws_ms.len(),
        ws_median_ms,
        ws_max_ms,
        tcp_median_ms,
        tcp_max_ms,
    })
}

/// Reads until the PUBACK of `packet_id` (a few other packets at most: nothing else is due).
async fn wait_for_puback(reader: &mut Reader, buf: &mut BytesMut, packet_id: u16) -> Result<()> {
    for _ in 0..16 {
        if let Packet::PubAck(ack) = read_packet(reader, buf).await? {
            if ack.packet_id == packet_id {
                return Ok(());
            }
        }
    }
    bail!("no PUBACK for packet {packet_id}")
}

/// Reads one PUBLISH of `size` payload bytes, acknowledges it and returns when it was complete.
async fn receive_one(
    reader: &mut Reader,
    writer: &mut Writer,
    buf: &mut BytesMut,
    size: usize,
) -> Result<Instant> {
    // Room for the whole packet up front, so reading it is not a series of small regrowths.
    buf.reserve(size + 64);
    for _ in 0..16 {
        if let Packet::Publish(publish) = read_packet(reader, buf).await? {
            let at = Instant::now();
            ensure!(
                publish.payload.len() == size,
                "received {} payload bytes, sent {size}",
                publish.payload.len()
            );
            if let Some(id) = publish.packet_id {
                let [high, low] = id.to_be_bytes();
                writer.write_all(&[0x40, 0x02, high, low]).await?;
            }
            return Ok(at);
        }
    }
    bail!("no PUBLISH among the packets received")
}

/// The median (the mean of the middle two for an even count) and the maximum; NaN when empty.
fn median_and_max(values: &mut [f64]) -> (f64, f64) {
    if values.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    let median = if values.len() % 2 == 0 {
        (values[middle - 1] + values[middle]) / 2.0
    } else {
        values[middle]
    };
    (median, values[values.len() - 1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
    use tokio_tungstenite::tungstenite::http::HeaderValue;
    use tokio_tungstenite::tungstenite::http::header::SEC_WEBSOCKET_PROTOCOL;

    /// Nearest rank: p99 of 1..=100 is 99, of 1..=1000 990; floating point does not push a
    /// rank up (100 * 0.07 is a hair above 7); the ends clamp; no samples give NaN.
    #[test]
    fn percentiles_take_the_nearest_rank() {
        let hundred: Vec<u64> = (1..=100).collect();
        let thousand: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&hundred, 0.50), 50.0);
        assert_eq!(percentile(&hundred, 0.99), 99.0);
        assert_eq!(percentile(&hundred, 0.07), 7.0);
        assert_eq!(percentile(&hundred, 0.0), 1.0);
        assert_eq!(percentile(&hundred, 1.0), 100.0);
        assert_eq!(percentile(&thousand, 0.99), 990.0);
        assert_eq!(percentile(&thousand, 0.999), 999.0);
        assert_eq!(percentile(&[42], 0.99), 42.0);
        assert!(percentile(&[], 0.5).is_nan());
    }

    /// The loaders' ranges cover every message once, in order, even when they do not divide.
    #[test]
    fn retained_loads_are_shared_without_gaps_or_overlaps() {
        for (messages, publishers) in [(10, 4), (2, 4), (0, 3), (1_000_000, 2), (7, 1)] {
            let ranges = shares(messages, publishers);
            assert_eq!(ranges.len(), publishers);
            let all: Vec<u64> = ranges.into_iter().flatten().collect();
            assert_eq!(
                all,
                (0..messages).collect::<Vec<_>>(),
                "{messages} in {publishers}"
            );
        }
        assert_eq!(retained_topic(0), "bench/retained/0/0");
        assert_eq!(retained_topic(1_234_567), "bench/retained/1234/567");
        assert_ne!(retained_topic(1_000), retained_topic(1));
    }

    /// `$SYS` counters are decimal text, with or without surrounding whitespace.
    #[test]
    fn sys_counts_parse() {
        assert_eq!(parse_count(b"1000016"), Some(1_000_016));
        assert_eq!(parse_count(b" 12\n"), Some(12));
        assert_eq!(parse_count(b"12 messages"), None);
        assert_eq!(parse_count(&[0xff]), None);
    }

    /// The retained count that a broker sends in the same segment as the SUBACK is read, not
    /// dropped with the bytes past the SUBACK (which then left the reader inside a packet).
    #[tokio::test]
    async fn reads_a_retained_count_that_arrives_with_the_suback() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut scratch = [0u8; 256];
            // CONNECT, then SUBSCRIBE: small enough to come in one read each.
            let _ = socket.read(&mut scratch).await.unwrap();
            socket.write_all(&[0x20, 2, 0, 0]).await.unwrap();
            let _ = socket.read(&mut scratch).await.unwrap();
            let mut answer = BytesMut::from(&[0x90, 3, 0, 1, 0][..]);
            let count = Bytes::from_static(b"1000016");
            encode_publish(
                RETAINED_COUNT_TOPIC,
                count,
                QoS::AtMostOnce,
                0,
                true,
                &mut answer,
            );
            socket.write_all(&answer).await.unwrap();
            // Until the client's DISCONNECT and close.
            while socket.read(&mut scratch).await.unwrap_or(0) > 0 {}
        });
        let url = "ws://127.0.0.1:1/mqtt".to_string();
        let target = Target::new(Kind::Tcp, address, url, None).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let count = await_retained_count(&target, 1_000_000, deadline)
            .await
            .unwrap();
        assert_eq!(count, 1_000_016);
        server.await.unwrap();
    }

    /// A late probe of `await_interest` is not counted, at either QoS (a QoS 1 one is still
    /// acknowledged), and a load message is counted whatever its payload.
    #[tokio::test]
    async fn counts_load_messages_and_skips_late_probes() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let mut packets = BytesMut::new();
        let probe = Bytes::from([PROBE, b"0"].concat());
        let load = Bytes::from_static(b"probe? no: a load message");
        publish_bytes("t", load.clone(), QoS::AtMostOnce, 0, &mut packets);
        publish_bytes("t", probe.clone(), QoS::AtMostOnce, 0, &mut packets);
        publish_bytes("t", probe, QoS::AtLeastOnce, 7, &mut packets);
        publish_bytes("t", load.clone(), QoS::AtLeastOnce, 8, &mut packets);
        publish_bytes("t", load, QoS::AtMostOnce, 0, &mut packets);
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            socket.write_all(&packets).await.unwrap();
            // The two PUBACKs, for packet ids 7 and 8.
            let mut acks = [0u8; 8];
            socket.read_exact(&mut acks).await.unwrap();
            acks
        });
        let url = "ws://127.0.0.1:1/mqtt".to_string();
        let target = Target::new(Kind::Tcp, address, url, None).unwrap();
        let (reader, writer) = target.open().await.unwrap();
        let received = Arc::new(AtomicU64::new(0));
        let deadline = Instant::now() + Duration::from_secs(10);
        count_messages(reader, writer, 3, received.clone(), deadline)
            .await
            .unwrap();
        assert_eq!(received.load(Ordering::Relaxed), 3);
        assert_eq!(
            server.await.unwrap(),
            [0x40, 2, 0, 7, 0x40, 2, 0, 8],
            "both QoS 1 messages acknowledged"
        );
    }

    /// The gate admits messages while the publishers are at most `ahead` in front of the
    /// slowest subscriber, holds them once they would be further, and lets them go as that
    /// subscriber catches up.
    #[tokio::test]
    async fn the_gate_holds_publishers_ahead_of_the_slowest_subscriber() {
        let received = [Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0))];
        assert!(Gate::new(0, &received).is_none(), "0: no gate");
        let gate = Gate::new(100, &received).unwrap();
        gate.admit(100).await;
        let held = tokio::spawn({
            let gate = gate.clone();
            async move { gate.admit(50).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!held.is_finished(), "150 published, none received");
        received[0].store(150, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!held.is_finished(), "the other subscriber has none yet");
        received[1].store(60, Ordering::Relaxed);
        tokio::time::timeout(Duration::from_secs(1), held)
            .await
            .expect("admitted once the slowest is 90 behind")
            .unwrap();
    }

    /// Over WebSocket, the subscriber counts packets whatever the message boundaries: a packet
    /// cut inside its fixed header, one cut inside its payload, and the rest of one packet plus
    /// a whole other packet in a single message.
    #[tokio::test]
    async fn counts_packets_across_websocket_messages() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut packets = BytesMut::new();
        for _ in 0..3 {
            let payload = Bytes::from_static(&[7; 300]);
            publish_bytes("t", payload, QoS::AtMostOnce, 0, &mut packets);
        }
        let packets = packets.freeze();
        let server = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            // The shape of tungstenite's handshake callback, whose error is an HTTP response.
            #[allow(clippy::result_large_err)]
            let echo_mqtt = |_: &Request, mut response: Response| {
                let protocol = HeaderValue::from_static("mqtt");
                response
                    .headers_mut()
                    .insert(SEC_WEBSOCKET_PROTOCOL, protocol);
                Ok(response)
            };
            let mut socket = tokio_tungstenite::accept_hdr_async(socket, echo_mqtt)
                .await
                .unwrap();
            for range in [0..1, 1..200, 200..400, 400..packets.len()] {
                let piece = packets.slice(range);
                socket.send(Message::Binary(piece)).await.unwrap();
            }
            // Open until the client goes, so that its reads do not end early.
            let _ = socket.next().await;
        });
        let url = format!("ws://127.0.0.1:{port}/mqtt");
        let target = Target::new(Kind::Ws, "127.0.0.1:1".parse().unwrap(), url, None).unwrap();
        let (reader, writer) = target.open().await.unwrap();
        let received = Arc::new(AtomicU64::new(0));
        let deadline = Instant::now() + Duration::from_secs(10);
        count_messages(reader, writer, 3, received.clone(), deadline)
            .await
            .unwrap();
        assert_eq!(received.load(Ordering::Relaxed), 3);
        server.abort();
    }
}
