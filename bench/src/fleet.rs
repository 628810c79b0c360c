//! The `fleet` mode: the workload the gateway exists for. Many devices, each on its own MQTT
//! connection over TCP, publish one small QoS 1 JSON message a second to a topic of their own
//! (`fleet/<id>/telemetry`), and a few dashboards subscribed to `fleet/#` over WebSocket receive
//! all of it.
//!
//! - Devices: MQTT 3.1.1, clean session, keep alive 60 s, connected at `--connect-rate` per
//!   second (a ramp, not a storm of simultaneous handshakes). Device `i` of `N` publishes at
//!   `i/N` of every second (phases spread evenly, so the broker sees a steady stream rather
//!   than a burst on each second), QoS 1, and waits for the PUBACK before its next message: at
//!   most one in flight each, like a device's MQTT library. A tick that comes while the device
//!   still waits (the broker was slower than a second) is skipped and counted, not made up.
//!   Payload: `{"id":I,"seq":S,"t":T,"temp":X}`, `t` the send time in microseconds on this
//!   process's monotonic clock.
//! - Dashboards: `--subscribers` WebSocket clients on `fleet/#` at QoS 1 (so a broker may not
//!   drop their messages; each is acknowledged as it is read). Each one decodes every payload,
//!   checks that the topic names the payload's device, marks the sequence number in a bitset
//!   per device (duplicates and out-of-order arrivals are counted), and times messages sent in
//!   the measured window from `t` to their decoding.
//! - Timeline: dashboards subscribe; devices connect (the ramp) and start publishing as each is
//!   connected; once all are, `--warmup` seconds, then the measured window of `--seconds`, in
//!   which the broker's CPU time (utime + stime of `/proc/PID/stat`, as % of one core) and this
//!   process's are taken, and the broker's VmRSS at its end. Devices publish nothing due after
//!   the window; the dashboards then have until nothing arrives for [`STALL`] to receive the
//!   rest. Lost = messages sent (written by a device) that a dashboard never received, summed
//!   over dashboards: the run checks that every dashboard gets every message.
//!
//! The process holds one socket per device and per dashboard, so it raises its soft
//! `RLIMIT_NOFILE` to the hard limit at start and fails, naming both, if that is still too low.

use anyhow::{Context, Result, bail, ensure};
use bytes::{BufMut, Bytes, BytesMut};
use mqtt_codec::{Packet, ProtocolVersion, QoS, decode};
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::transport::{Kind, Reader, Target, Writer};
use crate::{STALL, connect, percentile, publish_bytes, rss_kb, subscribe, wait_for_puback};

/// Descriptors the process needs besides one socket per client: the runtime, standard streams.
const SPARE_DESCRIPTORS: u64 = 64;

/// A device that gets no CONNACK, or no PUBACK, within this long fails the run: the broker is
/// not keeping up with the fleet at all.
const ANSWER_LIMIT: Duration = Duration::from_secs(20);

/// How long after its scheduled end the ramp may run before the run fails.
const RAMP_SLACK: Duration = Duration::from_secs(30);

/// The `fleet` mode's options.
#[derive(Debug, clap::Args)]
pub struct FleetArgs {
    /// Device connections (MQTT over TCP to --addr).
    #[arg(long, default_value_t = 10_000)]
    devices: usize,
    /// Dashboards: WebSocket subscribers (to --ws-url) on `fleet/#`.
    #[arg(long, default_value_t = 5)]
    subscribers: usize,
    /// Device connections opened per second during the ramp.
    #[arg(long, default_value_t = 1000)]
    connect_rate: u64,
    /// Seconds of publishing after the last device connected, before the measured window.
    #[arg(long, default_value_t = 10)]
    warmup: u64,
    /// Seconds of the measured window.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Process id of the broker, for its CPU time (/proc/PID/stat) and VmRSS; without it the
    /// broker figures are null.
    #[arg(long)]
    pid: Option<u32>,
    /// Fail (exit 1) if any dashboard misses a message or gets one twice.
    #[arg(long)]
    expect_all: bool,
}

impl FleetArgs {
    /// The longest the whole mode may take: the ramp, the warm-up and the window, plus a
    /// minute for the slack of the ramp, the drain and the goodbyes. (`--timeout` does not
    /// apply: the timeline is set by these options.)
    pub fn limit(&self) -> Duration {
        let ramp = self.devices as u64 / self.connect_rate.max(1);
        Duration::from_secs(ramp + self.warmup + self.seconds + 60) + RAMP_SLACK
    }
}

/// What the mode prints.
#[derive(Debug, Serialize)]
pub struct Fleet {
    mode: &'static str,
    devices: usize,
    subscribers: usize,
    /// From the first connection attempt until every device had its CONNACK.
    ramp_seconds: f64,
    warmup_seconds: u64,
    /// The measured window.
    seconds: f64,
    /// Messages written by the devices in the whole run (every dashboard should get each).
    sent: u64,
    /// Of those, the ones sent in the measured window.
    sent_in_window: u64,
    /// `sent_in_window` over the window: the devices' count when the broker keeps up.
    publish_rate: f64,
    /// Ticks skipped because the device still waited for its previous PUBACK.
    missed_ticks: u64,
    /// Distinct messages received, summed over the dashboards.
    received: u64,
    /// The fewest distinct messages any one dashboard received.
    min_received: u64,
    /// Sent but never received, summed over the dashboards.
    lost: u64,
    /// Received again after the first time, summed over the dashboards.
    duplicates: u64,
    /// Received after a later message of the same device, summed over the dashboards.
    reordered: u64,
    /// Publish-to-dashboard latency of the messages sent in the window, over all dashboards.
    latency_samples: usize,
    p50_us: f64,
    p90_us: f64,
    p99_us: f64,
    max_us: f64,
    /// PUBLISH written to PUBACK read, at the devices, in the window.
    puback_p50_us: f64,
    puback_p99_us: f64,
    /// The broker's utime + stime over the window, in % of one core.
    broker_cpu_percent: Option<f64>,
    /// The broker's VmRSS at the end of the window.
    broker_rss_kb: Option<u64>,
    /// This process's CPU over the window, in % of one core (it shares the machine).
    bench_cpu_percent: f64,
    /// This process's soft RLIMIT_NOFILE after raising it.
    open_files_limit: u64,
}

/// What the devices and the dashboards share.
struct Shared {
    /// The zero of the `t` field: microseconds since this instant.
    base: Instant,
    devices: usize,
    /// The measured window, once the last device is connected and the warm-up is known; the
    /// devices stop publishing at its end.
    window: watch::Receiver<Option<Window>>,
    connected: AtomicUsize,
}

#[derive(Clone, Copy, Debug)]
struct Window {
    start: Instant,
    end: Instant,
}

impl Window {
    fn contains(&self, at: Instant) -> bool {
        self.start <= at && at < self.end
    }
}

/// One device's account of its run.
#[derive(Debug, Default)]
struct DeviceTally {
    sent: u64,
    sent_in_window: u64,
    missed_ticks: u64,
    /// PUBLISH to PUBACK, microseconds, for the messages sent in the window.
    puback_us: Vec<u64>,
}

/// The payload every device sends.
#[derive(Debug, Deserialize)]
struct Telemetry {
    id: usize,
    seq: u64,
    t: u64,
    // Read so that a dashboard pays for the whole document, as a real one does.
    #[allow(dead_code)]
    temp: f64,
}

/// One dashboard's account of its run.
#[derive(Debug)]
struct DashboardTally {
    ledger: Ledger,
    latency_us: Vec<u64>,
}

/// Which messages one dashboard received: per device, a bit per sequence number (sequence
/// numbers start at 0 and go up by one, so the bits stay dense) and the next one expected.
#[derive(Debug)]
struct Ledger {
    seen: Vec<Vec<u64>>,
    next_seq: Vec<u64>,
    /// Distinct messages received.
    unique: u64,
    /// Messages received again.
    duplicates: u64,
    /// Messages received after a later one of the same device.
    reordered: u64,
}

impl Ledger {
    fn new(devices: usize) -> Ledger {
        Ledger {
            seen: vec![Vec::new(); devices],
            next_seq: vec![0; devices],
            unique: 0,
            duplicates: 0,
            reordered: 0,
        }
    }

    /// Records message `seq` of `device` (below the device count); returns whether it is the
    /// first time.
    fn record(&mut self, device: usize, seq: u64) -> bool {
        let bits = &mut self.seen[device];
        let word = (seq / 64) as usize;
        if bits.len() <= word {
            bits.resize(word + 1, 0);
        }
        let bit = 1u64 << (seq % 64);
        if bits[word] & bit != 0 {
            self.duplicates += 1;
            return false;
        }
        bits[word] |= bit;
        self.unique += 1;
        let next = &mut self.next_seq[device];
        if seq < *next {
            self.reordered += 1;
        } else {
            *next = seq + 1;
        }
        true
    }
}

/// Runs the fleet against `target` (devices to its TCP address, dashboards to its WebSocket URL).
pub async fn run(target: &Target, args: &FleetArgs) -> Result<Fleet> {
    ensure!(
        args.devices > 0 && args.subscribers > 0 && args.connect_rate > 0 && args.seconds > 0,
        "--devices, --subscribers, --connect-rate and --seconds must be positive"
    );
    let open_files_limit = raise_open_files_limit(args.devices + args.subscribers)?;
    let devices_target = target.with_kind(Kind::Tcp);
    let dashboards_target = target.with_kind(Kind::Ws);
    let (window_sender, window) = watch::channel(None);
    let shared = Arc::new(Shared {
        base: Instant::now(),
        devices: args.devices,
        window,
        connected: AtomicUsize::new(0),
    });

    // Dashboards first: everything the devices send has somewhere to go.
    let (stop_sender, stop) = watch::channel(false);
    let mut dashboards = Vec::with_capacity(args.subscribers);
    let mut progress = Vec::with_capacity(args.subscribers);
    for index in 0..args.subscribers {
        let client_id = format!("fleet-dashboard-{index}");
        let (mut reader, mut writer) = connect(&dashboards_target, &client_id).await?;
        subscribe(&mut reader, &mut writer, "fleet/#", QoS::AtLeastOnce)
            .await
            .with_context(|| format!("{client_id}: subscribing"))?;
        let unique = Arc::new(AtomicU64::new(0));
        progress.push(unique.clone());
        let shared = shared.clone();
        let stop = stop.clone();
        dashboards.push(tokio::spawn(async move {
            dashboard(reader, writer, &shared, unique, stop)
                .await
                .context(client_id)
        }));
    }

    // The ramp: device i connects at i / rate seconds.
    let ramp_start = Instant::now();
    let mut devices = JoinSet::new();
    for index in 0..args.devices {
        let connect_at = ramp_start + Duration::from_secs(index as u64) / args.connect_rate as u32;
        let target = devices_target.clone();
        let shared = shared.clone();
        devices.spawn(async move {
            device(&target, &shared, index, connect_at)
                .await
                .with_context(|| format!("device {index}"))
        });
    }
    let ramp_limit = ramp_start
        + Duration::from_secs(args.devices as u64) / args.connect_rate as u32
        + RAMP_SLACK;
    let mut tallies = Vec::with_capacity(args.devices);
    while shared.connected.load(Ordering::Relaxed) < args.devices {
        // A device that failed to connect ends the run now, not after the window.
        if let Some(finished) = devices.try_join_next() {
            tallies.push(finished??);
        }
        if Instant::now() > ramp_limit {
            bail!(
                "only {} of {} devices connected within {:?}",
                shared.connected.load(Ordering::Relaxed),
                args.devices,
                ramp_limit - ramp_start
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ramp_seconds = ramp_start.elapsed().as_secs_f64();

    let start = Instant::now() + Duration::from_secs(args.warmup);
    let window = Window {
        start,
        end: start + Duration::from_secs(args.seconds),
    };
    window_sender.send_replace(Some(window));
    tokio::time::sleep_until(window.start.into()).await;
    let broker_before = args.pid.map(cpu_ticks).transpose()?;
    let bench_before = cpu_ticks_of("self")?;
    tokio::time::sleep_until(window.end.into()).await;
    let broker_after = args.pid.map(cpu_ticks).transpose()?;
    let bench_after = cpu_ticks_of("self")?;
    let broker_rss_kb = args.pid.map(rss_kb).transpose()?;
    let window_seconds = window.end.duration_since(window.start).as_secs_f64();
    let percent_of_core = |before: u64, after: u64| {
        let ticks_per_second = rustix::param::clock_ticks_per_second() as f64;
        after.saturating_sub(before) as f64 / ticks_per_second / window_seconds * 100.0
    };
    let broker_cpu_percent = broker_before
        .zip(broker_after)
        .map(|(before, after)| percent_of_core(before, after));
    let bench_cpu_percent = percent_of_core(bench_before, bench_after);

    while let Some(finished) = devices.join_next().await {
        tallies.push(finished??);
    }
    let sent: u64 = tallies.iter().map(|tally| tally.sent).sum();

    // The drain: until every dashboard has every message, or nothing arrives for STALL.
    let mut last_total = u64::MAX;
    let mut last_change = Instant::now();
    loop {
        let total: u64 = progress
            .iter()
            .map(|unique| unique.load(Ordering::Relaxed))
            .sum();
        if total >= sent * args.subscribers as u64 || last_change.elapsed() >= STALL {
            break;
        }
        if total != last_total {
            last_total = total;
            last_change = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop_sender.send_replace(true);
    let mut boards = Vec::with_capacity(args.subscribers);
    for dashboard in dashboards {
        boards.push(dashboard.await??);
    }

    let mut latency: Vec<u64> = boards
        .iter_mut()
        .flat_map(|board| std::mem::take(&mut board.latency_us))
        .collect();
    latency.sort_unstable();
    let mut puback: Vec<u64> = tallies
        .iter_mut()
        .flat_map(|tally| std::mem::take(&mut tally.puback_us))
        .collect();
    puback.sort_unstable();
    let sent_in_window = tallies.iter().map(|tally| tally.sent_in_window).sum();
    let received = boards.iter().map(|board| board.ledger.unique).sum();
    Ok(Fleet {
        mode: "fleet",
        devices: args.devices,
        subscribers: args.subscribers,
        ramp_seconds,
        warmup_seconds: args.warmup,
        seconds: window_seconds,
        sent,
        sent_in_window,
        publish_rate: sent_in_window as f64 / window_seconds,
        missed_ticks: tallies.iter().map(|tally| tally.missed_ticks).sum(),
        received,
        min_received: boards
            .iter()
            .map(|board| board.ledger.unique)
            .min()
            .unwrap_or(0),
        lost: boards
            .iter()
            .map(|board| sent.saturating_sub(board.ledger.unique))
            .sum(),
        duplicates: boards.iter().map(|board| board.ledger.duplicates).sum(),
        reordered: boards.iter().map(|board| board.ledger.reordered).sum(),
        latency_samples: latency.len(),
        p50_us: percentile(&latency, 0.50),
        p90_us: percentile(&latency, 0.90),
        p99_us: percentile(&latency, 0.99),
        max_us: latency.last().map_or(f64::NAN, |&max| max as f64),
        puback_p50_us: percentile(&puback, 0.50),
        puback_p99_us: percentile(&puback, 0.99),
        broker_cpu_percent,
        broker_rss_kb,
        bench_cpu_percent,
        open_files_limit,
    })
}

/// Prints the result; with `--expect-all`, fails if a dashboard missed a message or got one
/// twice.
pub fn report(result: &Fleet, args: &FleetArgs) -> Result<()> {
    println!("{}", serde_json::to_string(result)?);
    if args.expect_all && (result.lost > 0 || result.duplicates > 0) {
        bail!(
            "the dashboards lost {} and got {} twice of {} messages sent, each",
            result.lost,
            result.duplicates,
            result.sent
        );
    }
    Ok(())
}

/// One device: connects at `connect_at`, then publishes at its phase of every second until the
/// window's end, one QoS 1 message in flight at most.
async fn device(
    target: &Target,
    shared: &Shared,
    index: usize,
    connect_at: Instant,
) -> Result<DeviceTally> {
    tokio::time::sleep_until(connect_at.into()).await;
    let client_id = format!("fleet-device-{index}");
    let (mut reader, mut writer) = tokio::time::timeout(ANSWER_LIMIT, connect(target, &client_id))
        .await
        .context("no CONNACK in time")??;
    shared.connected.fetch_add(1, Ordering::Relaxed);
    let topic = format!("fleet/{index}/telemetry");
    let phase = Duration::from_secs(1) * index as u32 / shared.devices as u32;
    // The device's first tick: the first one of its phase after it connected.
    let mut next = shared.base + phase;
    let mut tally = DeviceTally::default();
    let mut packet = BytesMut::with_capacity(128);
    let mut buf = BytesMut::new();
    loop {
        let now = Instant::now();
        while next < now {
            next += Duration::from_secs(1);
            if tally.sent > 0 {
                tally.missed_ticks += 1;
            }
        }
        if shared
            .window
            .borrow()
            .is_some_and(|window| next >= window.end)
        {
            break;
        }
        tokio::time::sleep_until(next.into()).await;
        let seq = tally.sent;
        let packet_id = (seq % u64::from(u16::MAX)) as u16 + 1;
        // The send time as the dashboards will read it back, whole microseconds, so that both
        // sides agree on which messages were sent in the window.
        let t = Instant::now().duration_since(shared.base).as_micros() as u64;
        let sent_at = shared.base + Duration::from_micros(t);
        let payload = format!(
            r#"{{"id":{index},"seq":{seq},"t":{t},"temp":{:.1}}}"#,
            temperature(index, seq)
        );
        packet.clear();
        publish_bytes(
            &topic,
            Bytes::from(payload),
            QoS::AtLeastOnce,
            packet_id,
            &mut packet,
        );
        writer.write_all(&packet).await?;
        tally.sent += 1;
        tokio::time::timeout(
            ANSWER_LIMIT,
            wait_for_puback(&mut reader, &mut buf, packet_id),
        )
        .await
        .with_context(|| format!("no PUBACK for message {seq} in time"))??;
        // Read again: the window may have become known while this device slept.
        let window = *shared.window.borrow();
        if window.is_some_and(|window| window.contains(sent_at)) {
            tally.sent_in_window += 1;
            tally.puback_us.push(sent_at.elapsed().as_micros() as u64);
        }
        next += Duration::from_secs(1);
    }
    // DISCONNECT: a clean goodbye, so that the broker publishes no will and logs no error.
    writer.write_all(&[0xE0, 0x00]).await?;
    Ok(tally)
}

/// A plausible temperature in degrees Celsius, different per device and message.
fn temperature(index: usize, seq: u64) -> f64 {
    18.0 + ((index as u64 * 7 + seq * 3) % 80) as f64 / 10.0
}

/// One dashboard: reads `fleet/#` until `stop`, acknowledging each QoS 1 message, and keeps its
/// tally; `unique` follows its count of distinct messages for the drain.
async fn dashboard(
    mut reader: Reader,
    mut writer: Writer,
    shared: &Shared,
    unique: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) -> Result<DashboardTally> {
    let mut tally = DashboardTally {
        ledger: Ledger::new(shared.devices),
        latency_us: Vec::new(),
    };
    let mut buf = BytesMut::with_capacity(256 * 1024);
    let mut acks = BytesMut::new();
    loop {
        let read = tokio::select! {
            read = reader.read_buf(&mut buf) => read?,
            _ = stop.wait_for(|stop| *stop) => break,
        };
        if read == 0 {
            bail!("disconnected by the broker");
        }
        let arrived = Instant::now();
        let window = *shared.window.borrow();
        while let Some(packet) = decode(&mut buf, ProtocolVersion::V311, usize::MAX)? {
            let Packet::Publish(publish) = packet else {
                continue;
            };
            if let Some(id) = publish.packet_id {
                acks.put_slice(&[0x40, 0x02]);
                acks.put_u16(id);
            }
            let telemetry: Telemetry = serde_json::from_slice(&publish.payload)
                .with_context(|| format!("a payload on {}", publish.topic.as_str()))?;
            let device = topic_device(publish.topic.as_str());
            ensure!(
                device == Some(telemetry.id) && telemetry.id < shared.devices,
                "device {} published on {}",
                telemetry.id,
                publish.topic.as_str()
            );
            if !tally.ledger.record(telemetry.id, telemetry.seq) {
                continue;
            }
            let sent_at = shared.base + Duration::from_micros(telemetry.t);
            if window.is_some_and(|window| window.contains(sent_at)) {
                tally
                    .latency_us
                    .push(arrived.saturating_duration_since(sent_at).as_micros() as u64);
            }
        }
        if buf.is_empty() && buf.capacity() > 1 << 20 {
            // A burst grew the buffer; do not keep a megabyte per dashboard for it.
            buf = BytesMut::with_capacity(256 * 1024);
        } else if buf.capacity() - buf.len() < 16 * 1024 {
            buf.reserve(256 * 1024);
        }
        unique.store(tally.ledger.unique, Ordering::Relaxed);
        if !acks.is_empty() {
            writer.write_all(&acks).await?;
            acks.clear();
        }
    }
    Ok(tally)
}

/// The device id in `fleet/<id>/telemetry`.
fn topic_device(topic: &str) -> Option<usize> {
    topic
        .strip_prefix("fleet/")?
        .strip_suffix("/telemetry")?
        .parse()
        .ok()
}

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit, and fails unless that leaves
/// room for `clients` sockets; returns the new soft limit.
fn raise_open_files_limit(clients: usize) -> Result<u64> {
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            },
        )
        .context("raising the soft RLIMIT_NOFILE to the hard limit")?;
    }
    let soft = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    let needed = clients as u64 + SPARE_DESCRIPTORS;
    if soft < needed {
        bail!(
            "the fleet needs {needed} open files ({clients} clients and {SPARE_DESCRIPTORS} to \
             spare), but the hard RLIMIT_NOFILE is {soft} (raise `ulimit -Hn`, or run fewer \
             --devices)"
        );
    }
    Ok(soft)
}

/// The CPU time (utime + stime, in clock ticks) of process `pid` so far.
fn cpu_ticks(pid: u32) -> Result<u64> {
    cpu_ticks_of(&pid.to_string())
}

/// The CPU time of `/proc/{pid}/stat` (`pid` may be `self`), in clock ticks.
fn cpu_ticks_of(pid: &str) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_cpu_ticks(&stat).with_context(|| format!("no utime and stime in {path}"))
}

/// utime + stime from the text of `/proc/PID/stat`: fields 14 and 15, counted after the
/// command name, which is in parentheses and may itself hold spaces and parentheses.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;
    use broker_core::AllowAll;
    use gateway::Gateway;
    use gateway::config::GatewayConfig;

    /// utime and stime are read after the command name, whatever it holds.
    #[test]
    fn cpu_ticks_are_read_after_the_command_name() {
        let stat = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 \
                    3 0 100 1000000 200 18446744073709551615";
        assert_eq!(parse_cpu_ticks(stat), Some(300));
        assert_eq!(parse_cpu_ticks("4242 (short) S 1"), None);
        assert!(cpu_ticks_of("self").is_ok());
    }

    /// Each device's messages are counted once, duplicates and late arrivals apart, and a gap
    /// is a message missing from `unique`.
    #[test]
    fn the_ledger_counts_duplicates_reorders_and_gaps() {
        let mut ledger = Ledger::new(2);
        for (device, seq, new) in [
            (0, 0, true),
            (0, 1, true),
            (0, 1, false),
            (1, 0, true),
            (0, 3, true),
            (0, 2, true),
            (1, 200, true),
            (1, 200, false),
        ] {
            assert_eq!(ledger.record(device, seq), new, "device {device} seq {seq}");
        }
        assert_eq!(ledger.unique, 6);
        assert_eq!(ledger.duplicates, 2);
        assert_eq!(ledger.reordered, 1);
        // Device 0 sent 5 (0..=4), device 1 sent 201: 206 - 6 never came.
        assert_eq!(206 - ledger.unique, 200);
    }

    #[test]
    fn topics_name_their_device() {
        assert_eq!(topic_device("fleet/17/telemetry"), Some(17));
        assert_eq!(topic_device("fleet/17/status"), None);
        assert_eq!(topic_device("fleet//telemetry"), None);
    }

    /// A small fleet against the real gateway (in this process, on loopback port 0): every
    /// dashboard gets every message once, in order, and the latency is measured.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_small_fleet_loses_nothing_through_the_gateway() {
        let data_dir =
            std::env::temp_dir().join(format!("mqtt-bench-fleet-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data_dir);
        let mut config = GatewayConfig {
            tcp: vec!["127.0.0.1:0".parse().unwrap()],
            http: vec!["127.0.0.1:0".parse().unwrap()],
            data_dir: data_dir.clone(),
            ..GatewayConfig::default()
        };
        config.broker.sys_interval = None;
        let gateway = Gateway::start(config, Box::new(AllowAll)).await.unwrap();
        let ws_url = format!("ws://{}/mqtt", gateway.http_addresses()[0]);
        let target = Target::new(Kind::Tcp, gateway.mqtt_addresses()[0], ws_url, None).unwrap();
        let args = FleetArgs {
            devices: 200,
            subscribers: 2,
            connect_rate: 1000,
            warmup: 1,
            seconds: 2,
            pid: None,
            expect_all: true,
        };
        let result = tokio::time::timeout(args.limit(), run(&target, &args))
            .await
            .expect("the fleet ends in time")
            .unwrap();
        // Every device published in the warm-up and the window: at least 3 messages each.
        assert!(result.sent >= 3 * 200, "{result:?}");
        assert_eq!(result.lost, 0, "{result:?}");
        assert_eq!(result.duplicates, 0, "{result:?}");
        assert_eq!(result.reordered, 0, "{result:?}");
        assert_eq!(result.min_received, result.sent, "{result:?}");
        assert_eq!(result.received, 2 * result.sent, "{result:?}");
        assert_eq!(
            result.latency_samples as u64,
            2 * result.sent_in_window,
            "{result:?}"
        );
        assert!(
            result.p50_us > 0.0 && result.p99_us >= result.p50_us,
            "{result:?}"
        );
        assert!(result.broker_cpu_percent.is_none() && result.broker_rss_kb.is_none());
        assert!(report(&result, &args).is_ok());
        gateway.shutdown(Duration::from_secs(5)).await.unwrap();
        let _ = std::fs::remove_dir_all(&data_dir);
    }
}
