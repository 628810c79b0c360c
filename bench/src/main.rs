//! `mqtt-bench`: the load generator used by `cargo xtask bench` and by hand.
//!
//! Every mode talks MQTT 3.1.1 over TCP to one broker address, is bounded in message count and
//! in seconds, and prints one JSON object with its figures on standard output. Clients encode
//! with `mqtt-codec` once up front and write pre-encoded batches, and subscribers count packets
//! from their fixed headers, so that the generator is not what limits the measurement.

use anyhow::{Context, Result, bail, ensure};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use clap::{Parser, Subcommand};
use mqtt_codec::{
    ByteStr, ConnectPacket, Packet, Properties, ProtocolVersion, PublishPacket, QoS,
    SubscribePacket, Subscription, SubscriptionOptions, decode, encode,
};
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Semaphore;

/// Packets encoded and written per batch by a publisher.
const BATCH: usize = 64;
/// A run ends when no message arrived for this long.
const STALL: Duration = Duration::from_secs(3);

#[derive(Debug, Parser)]
#[command(name = "mqtt-bench", about = "MQTT load generator (loopback only)")]
struct Cli {
    /// Broker address; must be a loopback address.
    #[arg(long, default_value = "127.0.0.1:1883", global = true)]
    addr: SocketAddr,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 60, global = true)]
    timeout: u64,
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
}

#[derive(Debug, Serialize)]
struct Throughput {
    mode: &'static str,
    qos: u8,
    expected: u64,
    received: u64,
    lost: u64,
    seconds: f64,
    messages_per_second: f64,
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
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    ensure!(
        cli.addr.ip().is_loopback(),
        "mqtt-bench only loads loopback addresses, not {}",
        cli.addr
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let deadline = Duration::from_secs(cli.timeout);
    runtime.block_on(async move {
        match cli.mode {
            Mode::Fanin {
                publishers,
                messages,
                size,
                qos,
                window,
                expect_all,
            } => {
                let result =
                    fan_in(cli.addr, publishers, messages, size, qos, window, deadline).await?;
                report_throughput(&result, expect_all)
            }
            Mode::Fanout {
                subscribers,
                messages,
                size,
                qos,
                window,
                expect_all,
            } => {
                let result =
                    fan_out(cli.addr, subscribers, messages, size, qos, window, deadline).await?;
                report_throughput(&result, expect_all)
            }
            Mode::Idle { connections, pid } => {
                let result = idle(cli.addr, connections, pid).await?;
                println!("{}", serde_json::to_string(&result)?);
                Ok(())
            }
            Mode::Connrate {
                connections,
                concurrency,
            } => {
                let result = connection_rate(cli.addr, connections, concurrency).await?;
                println!("{}", serde_json::to_string(&result)?);
                Ok(())
            }
            Mode::Latency {
                rate,
                seconds,
                size,
            } => {
                let result = latency(cli.addr, rate, seconds, size).await?;
                println!("{}", serde_json::to_string(&result)?);
                Ok(())
            }
        }
    })
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

/// A connected client: CONNECT sent and CONNACK received.
async fn connect(addr: SocketAddr, client_id: &str) -> Result<(OwnedReadHalf, OwnedWriteHalf)> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect to {addr}"))?;
    stream.set_nodelay(true)?;
    let (mut reader, mut writer) = stream.into_split();
    let connect = Packet::Connect(ConnectPacket {
        protocol: ProtocolVersion::V311,
        clean_start: true,
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

async fn read_packet(reader: &mut OwnedReadHalf, buf: &mut BytesMut) -> Result<Packet> {
    loop {
        if let Some(packet) = decode(buf, ProtocolVersion::V311, usize::MAX)? {
            return Ok(packet);
        }
        if reader.read_buf(buf).await? == 0 {
            bail!("connection closed by the broker");
        }
    }
}

async fn subscribe(
    reader: &mut OwnedReadHalf,
    writer: &mut OwnedWriteHalf,
    filter: &str,
    qos: QoS,
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
    let mut buf = BytesMut::new();
    encode(&packet, ProtocolVersion::V311, &mut buf)?;
    writer.write_all(&buf).await?;
    match read_packet(reader, &mut BytesMut::new()).await? {
        Packet::SubAck(ack) if ack.reason_codes.iter().all(|c| !c.is_error()) => Ok(()),
        other => bail!("subscription to {filter} refused: {other:?}"),
    }
}

fn publish_bytes(topic: &str, payload: Bytes, qos: QoS, packet_id: u16, out: &mut BytesMut) {
    let packet = Packet::Publish(PublishPacket {
        dup: false,
        qos,
        retain: false,
        topic: ByteStr::from(topic),
        packet_id: (qos != QoS::AtMostOnce).then_some(packet_id),
        properties: Properties::default(),
        payload,
    });
    encode(&packet, ProtocolVersion::V311, out).expect("benchmark packets are valid");
}

/// Publishes `messages` messages on `topic`; QoS 1 keeps at most `window` in flight.
async fn publisher(
    addr: SocketAddr,
    client_id: String,
    topic: String,
    messages: u64,
    size: usize,
    qos: QoS,
    window: usize,
) -> Result<()> {
    let (mut reader, mut writer) = connect(addr, &client_id).await?;
    let payload = Bytes::from(vec![b'x'; size]);
    if qos == QoS::AtMostOnce {
        let mut batch = BytesMut::new();
        for _ in 0..BATCH {
            publish_bytes(&topic, payload.clone(), qos, 0, &mut batch);
        }
        let mut sent = 0;
        while sent + BATCH as u64 <= messages {
            writer.write_all(&batch).await?;
            sent += BATCH as u64;
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
/// QoS 1 with PUBACK. Returns the count and the time of the last arrival.
async fn count_messages(
    mut reader: OwnedReadHalf,
    mut writer: OwnedWriteHalf,
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
            Ok(Err(error)) => return Err(error.into()),
        }
        last = Instant::now();
        // Walk the fixed headers: counting does not need a full decode.
        let mut view = &buf[..];
        let mut consumed = 0;
        while let Some((header, body_start, total)) = frame(view) {
            if header >> 4 == 3 {
                count += 1;
                if (header >> 1) & 0b11 == 1 {
                    let body = &view[body_start..total];
                    let topic_len = usize::from(u16::from_be_bytes([body[0], body[1]]));
                    let id = &body[2 + topic_len..4 + topic_len];
                    acks.put_slice(&[0x40, 0x02, id[0], id[1]]);
                }
            }
            view = &view[total..];
            consumed += total;
        }
        buf.advance(consumed);
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

async fn fan_in(
    addr: SocketAddr,
    publishers: usize,
    messages: u64,
    size: usize,
    qos: u8,
    window: usize,
    timeout: Duration,
) -> Result<Throughput> {
    let qos_level = qos_of(qos)?;
    let (mut reader, mut writer) = connect(addr, "bench-sub").await?;
    subscribe(&mut reader, &mut writer, "bench/fanin/#", qos_level).await?;
    let expected = messages * publishers as u64;
    let received = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let counter = tokio::spawn(count_messages(
        reader,
        writer,
        expected,
        received.clone(),
        start + timeout,
    ));
    let mut tasks = Vec::new();
    for index in 0..publishers {
        tasks.push(tokio::spawn(publisher(
            addr,
            format!("bench-pub-{index}"),
            format!("bench/fanin/{index}"),
            messages,
            size,
            qos_level,
            window,
        )));
    }
    for task in tasks {
        task.await??;
    }
    let last = counter.await??;
    let received = received.load(Ordering::Relaxed);
    let seconds = last.duration_since(start).as_secs_f64();
    Ok(Throughput {
        mode: "fanin",
        qos,
        expected,
        received,
        lost: expected.saturating_sub(received),
        seconds,
        messages_per_second: received as f64 / seconds,
    })
}

async fn fan_out(
    addr: SocketAddr,
    subscribers: usize,
    messages: u64,
    size: usize,
    qos: u8,
    window: usize,
    timeout: Duration,
) -> Result<Throughput> {
    let qos_level = qos_of(qos)?;
    let received: Vec<Arc<AtomicU64>> = (0..subscribers)
        .map(|_| Arc::new(AtomicU64::new(0)))
        .collect();
    let mut connected = Vec::new();
    for index in 0..subscribers {
        let (mut reader, mut writer) = connect(addr, &format!("bench-sub-{index}")).await?;
        subscribe(&mut reader, &mut writer, "bench/fanout", qos_level).await?;
        connected.push((reader, writer));
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
    publisher(
        addr,
        "bench-pub".into(),
        "bench/fanout".into(),
        messages,
        size,
        qos_level,
        window,
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
        expected,
        received: total,
        lost: expected.saturating_sub(total),
        seconds,
        messages_per_second: total as f64 / seconds,
    })
}

async fn latency(addr: SocketAddr, rate: u64, seconds: u64, size: usize) -> Result<Latency> {
    ensure!(
        rate > 0 && size >= 8,
        "rate must be positive and size at least 8 bytes"
    );
    let (mut reader, mut writer) = connect(addr, "bench-lat-sub").await?;
    subscribe(&mut reader, &mut writer, "bench/latency", QoS::AtMostOnce).await?;
    let (_pub_reader, mut pub_writer) = connect(addr, "bench-lat-pub").await?;
    let base = Instant::now();
    let total = rate * seconds;
    let receiver = tokio::spawn(async move {
        let mut buf = BytesMut::new();
        let mut samples = Vec::with_capacity(total as usize);
        while (samples.len() as u64) < total {
            let packet = tokio::time::timeout(STALL, read_packet(&mut reader, &mut buf)).await;
            let Ok(packet) = packet else { break };
            if let Packet::Publish(publish) = packet? {
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
    let percentile = |p: f64| -> f64 {
        if samples.is_empty() {
            return f64::NAN;
        }
        let index = ((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[index] as f64 / 1000.0
    };
    Ok(Latency {
        mode: "latency",
        sent: total,
        received: samples.len() as u64,
        p50_us: percentile(0.50),
        p90_us: percentile(0.90),
        p99_us: percentile(0.99),
        p999_us: percentile(0.999),
        max_us: samples.last().map_or(f64::NAN, |&v| v as f64 / 1000.0),
    })
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

async fn idle(addr: SocketAddr, connections: usize, pid: u32) -> Result<Idle> {
    // Warm the broker up with a few connections so one-off allocations are not counted.
    let mut warm = Vec::new();
    for index in 0..16 {
        warm.push(connect(addr, &format!("bench-warm-{index}")).await?);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kb(pid)?;
    let mut held = Vec::with_capacity(connections);
    for index in 0..connections {
        held.push(connect(addr, &format!("bench-idle-{index}")).await?);
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
    addr: SocketAddr,
    connections: usize,
    concurrency: usize,
) -> Result<ConnectionRate> {
    let start = Instant::now();
    let per_loop = connections / concurrency.max(1);
    let mut loops = Vec::new();
    for worker in 0..concurrency.max(1) {
        loops.push(tokio::spawn(async move {
            for index in 0..per_loop {
                let (_reader, mut writer) =
                    connect(addr, &format!("bench-rate-{worker}-{index}")).await?;
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
