//! The durability rows of `cargo xtask bench`: what the gateway's store costs and what it
//! recovers, against Mosquitto with its persistence on, in the same run.
//!
//! - Fan-in QoS 1 into a persistent session: 4 publishers (QoS 1, 64 bytes, 64 in flight each,
//!   as the plain fan-in rows) to one subscriber that holds a persistent session (MQTT 3.1.1,
//!   clean session 0, its subscription QoS 1; `mqtt-bench fanin --persistent`). The gateway
//!   runs with `--durability full`, so each PUBACK waits for the group commit that holds the
//!   message; Mosquitto with `persistence true` and its default `autosave_interval` (1800 s:
//!   it acknowledges from memory and writes its whole database now and then). One pair of
//!   brokers for all runs, interleaved as the other rows. Goal: at least 2x Mosquitto.
//! - Large state: each broker, alone and fresh, is loaded with N retained 64-byte messages on
//!   distinct topics (N = 1,000,000, or 100,000 with `--quick`; `mqtt-bench load-retained`:
//!   QoS 0, two pipelining clients, timed until each has its PINGRESP, then confirmed by
//!   `$SYS/broker/retained messages/count`). While it holds them, the latency of a 100 msg/s
//!   QoS 0 stream between two other clients (10 s, 5 s with `--quick`), with the store at
//!   work: the gateway's default durability (its commits), Mosquitto's `autosave_interval 5`
//!   (a whole save every 5 s). The resident memory the state costs: VmRSS of the broker's
//!   process after the load minus before, over N. Then
//!   the broker is stopped with SIGTERM and started again on its data, and the time to recover
//!   is taken: for the gateway from spawn to its `listening mqtt` line (its `store: recovered
//!   ... in {ms} ms` line is parsed too), for Mosquitto from spawn to its first CONNACK (it
//!   reads its database before it listens); a second row takes both to their first CONNACK
//!   (the gateway of run B in the README still logged `listening mqtt` before its broker had
//!   taken in the state; it now restores first, and the two rows agree).
//!   The recovered count is checked through `$SYS` again. Both brokers publish `$SYS` every
//!   second here, so that the counts confirm quickly. One round per broker in each run, A B
//!   then B A; each is about 20 s for a million messages. Goals: the gateway's p99 under 5 ms,
//!   its recovery of 1,000,000 messages under 3 s.
//!
//! A gateway built before `--durability` existed is measured with its default store, with a
//! note: the rows then compare that store instead.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::brokers::{
    Broker, Durable, Extras, MOSQUITTO_CONF, MOSQUITTO_PERSISTENCE_CONF, mosquitto_conf,
    mosquitto_persistence_dir, run_load, spawn_mosquitto, start_gateway_with, start_mosquitto_with,
    stop_gracefully,
};
use super::peers::{Contender, Peer, contenders, failure};
use super::report::{Better, Cell, Row, median_or_nan, number};
use crate::{gateway, process};

/// The persistent-session fan-in row.
const PERSISTENT_FANIN: &str = "fan-in QoS 1 to a persistent session (4 publishers)";
/// Its goal, as a ratio to Mosquitto.
const PERSISTENT_FANIN_GOAL: f64 = 2.0;
/// The gateway's p99 latency goal while it holds the large state, ms.
const LATENCY_P99_GOAL_MS: f64 = 5.0;
/// The gateway's recovery goal for 1,000,000 retained messages, ms.
const RECOVERY_GOAL_MS: f64 = 3000.0;
/// `$SYS` interval of the large-state brokers, seconds.
const SYS_INTERVAL: u32 = 1;
/// Mosquitto's autosave interval while it holds the large state, seconds.
const MOSQUITTO_AUTOSAVE: u32 = 5;
/// The latency stream's rate while the state is held, messages per second.
const LATENCY_RATE: u64 = 100;
/// Longest a broker may take to exit after SIGTERM (Mosquitto writes its database then).
const STOP_LIMIT: Duration = Duration::from_secs(60);
/// Longest a broker may take to recover its state and accept a client.
const RECOVERY_LIMIT: Duration = Duration::from_secs(60);

/// The names of the large-state rows, for N = 1,000,000 (full) or 100,000 (quick).
struct LargeNames {
    load: &'static str,
    p50: &'static str,
    p99: &'static str,
    max: &'static str,
    memory: &'static str,
    /// Recovery, the gateway to its `listening mqtt` line.
    recovery: &'static str,
    /// Recovery, both to their first CONNACK.
    serving: &'static str,
}

const FULL_NAMES: LargeNames = LargeNames {
    load: "load of 1M retained messages (QoS 0, pipelined)",
    p50: "latency p50 at 100 msg/s, holding 1M retained",
    p99: "latency p99 at 100 msg/s, holding 1M retained",
    max: "latency max at 100 msg/s, holding 1M retained",
    memory: "memory per retained message (1M, 64 B)",
    recovery: "recovery of 1M retained, to `listening mqtt`",
    serving: "recovery of 1M retained, to the first CONNACK",
};

const QUICK_NAMES: LargeNames = LargeNames {
    load: "load of 100k retained messages (QoS 0, pipelined)",
    p50: "latency p50 at 100 msg/s, holding 100k retained",
    p99: "latency p99 at 100 msg/s, holding 100k retained",
    max: "latency max at 100 msg/s, holding 100k retained",
    memory: "memory per retained message (100k, 64 B)",
    recovery: "recovery of 100k retained, to `listening mqtt`",
    serving: "recovery of 100k retained, to the first CONNACK",
};

/// How big the durability rows' loads are.
struct Sizes {
    /// Messages per publisher in the persistent fan-in.
    fan_in_messages: u64,
    /// N, the retained messages of the large state.
    retained: u64,
    /// Seconds of the latency stream.
    latency_seconds: u64,
    names: LargeNames,
}

impl Sizes {
    fn new(quick: bool) -> Sizes {
        if quick {
            Sizes {
                fan_in_messages: 5_000,
                retained: 100_000,
                latency_seconds: 5,
                names: QUICK_NAMES,
            }
        } else {
            Sizes {
                fan_in_messages: 75_000,
                retained: 1_000_000,
                latency_seconds: 10,
                names: FULL_NAMES,
            }
        }
    }
}

/// The durability rows: the persistent fan-in over `runs` runs, then the large state. Each
/// row has a cell per peer of `peers` saying why it was not measured (see [`super::peers`]).
pub fn rows(quick: bool, runs: usize, dir: &Path, peers: &[Peer]) -> Result<Vec<Row>> {
    let sizes = Sizes::new(quick);
    let durability = gateway_has_durability_flag()?;
    if !durability {
        println!(
            "note: this gateway has no --durability flag (built before the new store); the \
             durability rows measure its default store"
        );
    }
    let mut rows = vec![persistent_fan_in(&sizes, runs, dir, durability, peers)?];
    for row in large_state(&sizes, runs, dir)? {
        rows.push(row.with_peers(peers.iter().map(|&peer| {
            // The large-state rounds count the retained messages through Mosquitto's `$SYS`
            // topic, which the gateway publishes too; mqttv5 has its own
            // (`$SYS/broker/retained/count`).
            let why = match peer {
                Peer::Rumqttd => "no persistence",
                Peer::Mqttv5 => "other $SYS count",
            };
            Cell::missing(peer.name(), why)
        })));
    }
    Ok(rows)
}

/// How the durability rows' brokers are configured and loaded, for latest.json.
pub fn report(quick: bool) -> Value {
    let sizes = Sizes::new(quick);
    let persistence = MOSQUITTO_PERSISTENCE_CONF.replace("{location}", "{dir}");
    json!({
        "persistent_fan_in": {
            "load": format!(
                "4 publishers x {} QoS 1 64-byte messages, 64 in flight each, to one MQTT 3.1.1 \
                 subscriber with clean session 0 and a QoS 1 subscription",
                sizes.fan_in_messages
            ),
            "gateway_args": "--durability full",
            "mosquitto_config": format!("{MOSQUITTO_CONF}{persistence}"),
            "goal_ratio": PERSISTENT_FANIN_GOAL,
        },
        "large_state": {
            "retained": sizes.retained,
            "load": "QoS 0 retained, 64-byte payloads, topics bench/retained/{i/1000}/{i%1000}, \
                     2 pipelining publishers, timed until each has its PINGRESP, then confirmed \
                     by $SYS/broker/retained messages/count",
            "latency": format!(
                "{LATENCY_RATE} msg/s QoS 0 for {} s between two other clients",
                sizes.latency_seconds
            ),
            "rounds_per_broker": "one per run",
            "gateway_args": format!("--sys-interval {SYS_INTERVAL} (default durability)"),
            "mosquitto_config": format!(
                "{MOSQUITTO_CONF}{persistence}autosave_interval {MOSQUITTO_AUTOSAVE}\n\
                 sys_interval {SYS_INTERVAL}\n"
            ),
            "memory": "VmRSS after the load (and 1 s) minus before, over the messages loaded",
            "recovery": "SIGTERM, then spawn on the same data: the gateway until its \
                         `listening mqtt` line, Mosquitto until its first CONNACK",
            "goals": { "gateway_p99_ms": LATENCY_P99_GOAL_MS, "gateway_recovery_ms_for_1m": RECOVERY_GOAL_MS },
        },
    })
}

/// Whether `target/release/gateway --help` lists `--durability`.
fn gateway_has_durability_flag() -> Result<bool> {
    let binary = process::target_dir().join("release/gateway");
    let output = process::command(&binary)
        .arg("--help")
        .output()
        .with_context(|| format!("running {} --help", binary.display()))?;
    Ok(String::from_utf8_lossy(&output.stdout).contains("--durability"))
}

/// The persistent-session fan-in against one set of durable brokers (the gateway, Mosquitto
/// and the `peers` that have a store), forwards then backwards.
fn persistent_fan_in(
    sizes: &Sizes,
    runs: usize,
    dir: &Path,
    durability: bool,
    peers: &[Peer],
) -> Result<Row> {
    let args: Vec<String> = [
        "fanin",
        "--publishers",
        "4",
        "--messages",
        &sizes.fan_in_messages.to_string(),
        "--qos",
        "1",
        "--size",
        "64",
        "--persistent",
    ]
    .map(String::from)
    .to_vec();
    // `durability` is the gateway's alone; Mosquitto and mqttv5 turn their persistence on.
    let extras = Extras {
        durable: Some(Durable {
            durability: durability.then_some("full"),
            autosave_interval: None,
        }),
        ..Extras::default()
    };
    let contenders = contenders(peers);
    let mut brokers = Vec::new();
    for contender in &contenders {
        brokers.push(contender.start(dir, "-durable", extras)?);
    }
    let mut samples = vec![Vec::new(); contenders.len()];
    let mut results = vec![Vec::new(); contenders.len()];
    let mut failed: Vec<Option<String>> = brokers
        .iter()
        .map(|broker| broker.as_ref().err().cloned())
        .collect();
    for run in 0..runs {
        let mut order: Vec<usize> = (0..contenders.len()).collect();
        if run % 2 == 1 {
            order.reverse();
        }
        for slot in order {
            let Ok(broker) = &mut brokers[slot] else {
                continue;
            };
            let result = match run_load(broker, &args) {
                Ok(result) => result,
                Err(error) if matches!(contenders[slot], Contender::Peer(_)) => {
                    failed[slot] = Some(failure(broker, PERSISTENT_FANIN, &error));
                    continue;
                }
                Err(error) => return Err(error),
            };
            let value = result["messages_per_second"]
                .as_f64()
                .with_context(|| format!("no messages_per_second in {result}"))?;
            if result["lost"].as_u64().unwrap_or(0) > 0 {
                println!(
                    "  note: {} lost messages in {PERSISTENT_FANIN}: {result}",
                    broker.name
                );
            }
            print_run(run, runs, PERSISTENT_FANIN, broker.name, value, "msg/s", "");
            samples[slot].push(value);
            results[slot].push(result);
        }
    }
    let cells = contenders
        .iter()
        .zip(samples.into_iter().zip(results))
        .zip(failed)
        .map(|((contender, (samples, results)), failed)| match failed {
            Some(why) if samples.is_empty() => Cell::missing(contender.name(), why),
            _ => Cell::new(contender.name(), samples, results),
        })
        .collect();
    let mut row = Row::of(PERSISTENT_FANIN, "msg/s", Better::Higher, cells);
    row.goal = Some(PERSISTENT_FANIN_GOAL);
    row.note = Some(
        if durability {
            "gateway --durability full, Mosquitto persistence true; goal 2x"
        } else {
            "gateway's default store (no --durability), Mosquitto persistence true; goal 2x"
        }
        .into(),
    );
    Ok(row)
}

/// One per-run line, in the style of the other rows.
fn print_run(
    run: usize,
    runs: usize,
    name: &str,
    broker: &str,
    value: f64,
    unit: &str,
    more: &str,
) {
    println!(
        "run {}/{runs} {name:<52} {broker:<9} {value:>12.1} {unit}{more}",
        run + 1
    );
}

/// Which broker a large-state round is about.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Which {
    Gateway,
    Mosquitto,
}

impl Which {
    fn name(self) -> &'static str {
        match self {
            Which::Gateway => "gateway",
            Which::Mosquitto => "mosquitto",
        }
    }
}

/// What one large-state round measured.
struct LargeState {
    load: Value,
    latency: Value,
    rss_before_kb: u64,
    rss_after_kb: u64,
    /// From SIGTERM to exit.
    stop_ms: f64,
    /// The recovery figure: the gateway's spawn to `listening mqtt`, Mosquitto's spawn to its
    /// first CONNACK.
    recovery_ms: f64,
    /// Spawn to the first CONNACK (both).
    connack_ms: f64,
    /// The gateway's `store: recovered` line, parsed.
    store_line: Option<Recovered>,
    /// `mqtt-bench retained-count` on the restarted broker, or why it failed.
    recount: Value,
}

impl LargeState {
    fn bytes_per_message(&self, retained: u64) -> f64 {
        self.rss_after_kb.saturating_sub(self.rss_before_kb) as f64 * 1024.0 / retained as f64
    }

    fn to_json(&self, retained: u64) -> Value {
        json!({
            "retained": retained,
            "load": self.load,
            "latency": self.latency,
            "rss_before_kb": self.rss_before_kb,
            "rss_after_kb": self.rss_after_kb,
            "bytes_per_message": self.bytes_per_message(retained),
            "stop_ms": self.stop_ms,
            "recovery_ms": self.recovery_ms,
            "connack_ms": self.connack_ms,
            "store_line": self.store_line.as_ref().map(|line| json!({
                "sessions": line.sessions,
                "retained": line.retained,
                "ms": line.ms,
            })),
            "recount": self.recount,
        })
    }
}

/// The large-state rows: a round per broker in each of `runs` runs, A B then B A.
fn large_state(sizes: &Sizes, runs: usize, dir: &Path) -> Result<Vec<Row>> {
    let mut rounds: [Vec<LargeState>; 2] = [Vec::new(), Vec::new()];
    for round in 0..runs {
        let order = if round % 2 == 0 {
            [Which::Gateway, Which::Mosquitto]
        } else {
            [Which::Mosquitto, Which::Gateway]
        };
        for which in order {
            let state = large_state_round(which, sizes, dir)?;
            print_large(round, runs, which, &state, sizes);
            rounds[usize::from(which == Which::Mosquitto)].push(state);
        }
    }
    let retained = sizes.retained;
    let results: [Vec<Value>; 2] = rounds
        .each_ref()
        .map(|states| states.iter().map(|s| s.to_json(retained)).collect());
    let figure = |pick: &dyn Fn(&LargeState) -> f64| -> [Vec<f64>; 2] {
        rounds
            .each_ref()
            .map(|states| states.iter().map(pick).collect())
    };
    let latency_ms = |field: &'static str| {
        move |state: &LargeState| state.latency[field].as_f64().unwrap_or(f64::NAN) / 1000.0
    };
    let names = &sizes.names;
    let row =
        |name, unit, better, samples| Row::measured(name, unit, better, samples, results.clone());
    let load = row(
        names.load,
        "msg/s",
        Better::Higher,
        figure(&|state| {
            state.load["messages_per_second"]
                .as_f64()
                .unwrap_or(f64::NAN)
        }),
    );
    let p50 = row(
        names.p50,
        "ms",
        Better::Lower,
        figure(&latency_ms("p50_us")),
    );
    let mut p99 = row(
        names.p99,
        "ms",
        Better::Lower,
        figure(&latency_ms("p99_us")),
    );
    p99.gateway_goal = Some(LATENCY_P99_GOAL_MS);
    p99.note = Some("lower is better; goal: gateway under 5 ms".into());
    let max = row(
        names.max,
        "ms",
        Better::Lower,
        figure(&latency_ms("max_us")),
    );
    let memory = row(
        names.memory,
        "B",
        Better::Lower,
        figure(&|state| state.bytes_per_message(retained)),
    );
    let mut recovery = row(
        names.recovery,
        "ms",
        Better::Lower,
        figure(&|state| state.recovery_ms),
    );
    let mut serving = row(
        names.serving,
        "ms",
        Better::Lower,
        figure(&|state| state.connack_ms),
    );
    let store_ms: Vec<f64> = rounds[0]
        .iter()
        .filter_map(|state| state.store_line.as_ref().map(|line| line.ms))
        .collect();
    let store_says = if store_ms.is_empty() {
        "no `store: recovered` line".to_string()
    } else {
        format!("its store line {} ms", number(median_or_nan(&store_ms)))
    };
    // The goal is for 1,000,000 messages; a quick run's 100,000 only shows the trend.
    if retained >= 1_000_000 {
        recovery.gateway_goal = Some(RECOVERY_GOAL_MS);
        serving.gateway_goal = Some(RECOVERY_GOAL_MS);
    }
    recovery.note = Some(
        format!(
            "gateway: spawn to `listening mqtt`, {store_says}; Mosquitto: spawn to CONNACK; \
             goal: gateway under 3 s for 1M"
        )
        .into(),
    );
    serving.note = Some("spawn to the first CONNACK, both; goal: gateway under 3 s for 1M".into());
    Ok(vec![load, p50, p99, max, memory, recovery, serving])
}

/// The per-round lines of a large-state round.
fn print_large(round: usize, rounds: usize, which: Which, state: &LargeState, sizes: &Sizes) {
    let names = &sizes.names;
    let name = which.name();
    let latency = |field: &str| state.latency[field].as_f64().unwrap_or(f64::NAN) / 1000.0;
    let load = state.load["messages_per_second"]
        .as_f64()
        .unwrap_or(f64::NAN);
    print_run(round, rounds, names.load, name, load, "msg/s", "");
    print_run(round, rounds, names.p50, name, latency("p50_us"), "ms", "");
    print_run(round, rounds, names.p99, name, latency("p99_us"), "ms", "");
    print_run(round, rounds, names.max, name, latency("max_us"), "ms", "");
    let memory = state.bytes_per_message(sizes.retained);
    let rss = format!("  rss {} -> {} KB", state.rss_before_kb, state.rss_after_kb);
    print_run(round, rounds, names.memory, name, memory, "B", &rss);
    let mut more = format!("  stop {:.0} ms", state.stop_ms);
    if let Some(line) = &state.store_line {
        more.push_str(&format!(
            ", store line: {} retained in {} ms",
            line.retained, line.ms
        ));
    }
    if let Some(count) = state.recount["retained_count"].as_u64() {
        more.push_str(&format!(", recounted {count}"));
    }
    print_run(
        round,
        rounds,
        names.recovery,
        name,
        state.recovery_ms,
        "ms",
        &more,
    );
    print_run(
        round,
        rounds,
        names.serving,
        name,
        state.connack_ms,
        "ms",
        "",
    );
}

/// One broker through the large state: fresh start, load, latency, SIGTERM, restart, recount.
fn large_state_round(which: Which, sizes: &Sizes, dir: &Path) -> Result<LargeState> {
    let name = format!("{}-large", which.name());
    let extras = Extras {
        durable: Some(Durable {
            // The gateway's default durability; Mosquitto saving every 5 s.
            durability: None,
            autosave_interval: Some(MOSQUITTO_AUTOSAVE),
        }),
        sys_interval: Some(SYS_INTERVAL),
        ..Extras::default()
    };
    let mut broker = match which {
        Which::Gateway => start_gateway_with(dir, &name, extras)?,
        Which::Mosquitto => start_mosquitto_with(dir, &name, extras)?,
    };
    let pid = broker.child.id();
    // Let it finish starting (a first `$SYS` round, buffers) before the baseline.
    std::thread::sleep(Duration::from_millis(500));
    let rss_before_kb = rss_kb(pid)?;
    let retained = sizes.retained.to_string();
    let load = run_load(
        &broker,
        &["load-retained", "--messages", &retained, "--size", "64"].map(String::from),
    )?;
    std::thread::sleep(Duration::from_secs(1));
    let rss_after_kb = rss_kb(pid)?;
    let latency = run_load(
        &broker,
        &[
            "latency",
            "--rate",
            &LATENCY_RATE.to_string(),
            "--seconds",
            &sizes.latency_seconds.to_string(),
        ]
        .map(String::from),
    )?;
    let stop_ms = millis(stop_gracefully(&mut broker, STOP_LIMIT)?);
    let ports = (broker.port, broker.ws_port);
    drop(broker);
    let (broker, recovery_ms, connack_ms, store_line) = match which {
        Which::Gateway => restart_gateway(dir, &name)?,
        Which::Mosquitto => restart_mosquitto(dir, &name, ports)?,
    };
    let recount = match run_load(
        &broker,
        &["retained-count", "--at-least", &retained].map(String::from),
    ) {
        Ok(result) => result,
        Err(error) => {
            println!(
                "  note: {} did not recover its {retained} retained messages: {error:#}",
                which.name()
            );
            json!({ "error": format!("{error:#}") })
        }
    };
    // Killed: Mosquitto would save its whole database again on SIGTERM.
    drop(broker);
    // The state is hundreds of megabytes; the next round starts fresh anyway.
    let data = match which {
        Which::Gateway => gateway::release_data_dir(dir, &name),
        Which::Mosquitto => mosquitto_persistence_dir(dir, &name),
    };
    let _ = std::fs::remove_dir_all(data);
    Ok(LargeState {
        load,
        latency,
        rss_before_kb,
        rss_after_kb,
        stop_ms,
        recovery_ms,
        connack_ms,
        store_line,
        recount,
    })
}

/// A restarted broker, its recovery time (ms), the time to its first CONNACK (ms), and the
/// gateway's store line.
type Restarted = (Broker, f64, f64, Option<Recovered>);

/// The gateway again on `name`'s data directory (with the large state's flags), timed from
/// spawn to its `listening mqtt` line and to its first CONNACK.
fn restart_gateway(dir: &Path, name: &str) -> Result<Restarted> {
    let flags: Vec<OsString> = vec!["--sys-interval".into(), SYS_INTERVAL.to_string().into()];
    let logged = gateway::restart_release(&gateway::release_data_dir(dir, name), &flags)?;
    // Killed on drop from here on, whatever fails below.
    let broker = Broker {
        name: "gateway",
        child: logged.gateway.child,
        port: logged.gateway.tcp_port,
        ws_port: logged.gateway.http_port,
        tls: None,
    };
    let deadline = logged.spawned + RECOVERY_LIMIT;
    let mut store_line = None;
    let listening = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let (at, line) = logged
            .lines
            .recv_timeout(left)
            .context("the restarted gateway did not log `listening mqtt` in time")?;
        if let Some(recovered) = parse_recovered(&line) {
            store_line = Some(recovered);
        }
        if line.contains("listening mqtt ") {
            break at;
        }
    };
    let connack = first_connack(broker.port, deadline)?;
    // The store line comes before the listeners; should a build log it later, wait a little.
    while store_line.is_none() {
        match logged.lines.recv_timeout(Duration::from_secs(1)) {
            Ok((_, line)) => store_line = parse_recovered(&line),
            Err(_) => break,
        }
    }
    let recovery_ms = millis(listening.duration_since(logged.spawned));
    let connack_ms = millis(connack.duration_since(logged.spawned));
    Ok((broker, recovery_ms, connack_ms, store_line))
}

/// Mosquitto again with `name`'s configuration (the same `ports`, TCP and WebSocket, and the
/// same database), timed from spawn to its first CONNACK.
fn restart_mosquitto(dir: &Path, name: &str, ports: (u16, u16)) -> Result<Restarted> {
    let spawned = Instant::now();
    let child = spawn_mosquitto(&mosquitto_conf(dir, name))?;
    let broker = Broker {
        name: "mosquitto",
        child,
        port: ports.0,
        ws_port: ports.1,
        tls: None,
    };
    let connack = first_connack(broker.port, spawned + RECOVERY_LIMIT)?;
    let ms = millis(connack.duration_since(spawned));
    Ok((broker, ms, ms, None))
}

/// An MQTT 3.1.1 CONNECT: clean session, keep alive 60 s, client id `recover`.
const CONNECT: [u8; 21] = [
    0x10, 19, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 7, b'r', b'e', b'c', b'o', b'v',
    b'e', b'r',
];

/// When the broker on `port` first answered a CONNECT with a successful CONNACK: connects
/// every 5 ms until it accepts, then waits for the answer (a listener bound before the
/// broker serves holds the connection until then). Fails at `deadline`.
fn first_connack(port: u16, deadline: Instant) -> Result<Instant> {
    loop {
        if Instant::now() >= deadline {
            bail!("no CONNACK from 127.0.0.1:{port} in time");
        }
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        let left = deadline.saturating_duration_since(Instant::now());
        stream.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
        let mut answer = [0u8; 4];
        let answered = stream
            .write_all(&CONNECT)
            .and_then(|()| stream.read_exact(&mut answer));
        match answered {
            Ok(()) if answer == [0x20, 2, 0, 0] => return Ok(Instant::now()),
            Ok(()) => bail!("127.0.0.1:{port} answered CONNECT with {answer:02x?}"),
            // Closed while starting (or timed out): try again until the deadline.
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Resident memory of a process, KB, from /proc/PID/status.
fn rss_kb(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    vm_rss_kb(&status).with_context(|| format!("no VmRSS in {path}"))
}

/// The `VmRSS:` line of a /proc/PID/status text, in KB (the kernel writes `VmRSS:\t 1234 kB`).
fn vm_rss_kb(status: &str) -> Option<u64> {
    let value = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?;
    value.trim().strip_suffix("kB")?.trim().parse().ok()
}

/// The gateway's `store: recovered {S} sessions (...) and {R} retained messages from {path} in
/// {ms} ms` line.
#[derive(Debug, PartialEq)]
struct Recovered {
    sessions: u64,
    retained: u64,
    ms: f64,
}

/// The store line's figures, from a whole log line (timestamp, level and target before the
/// message); `None` for any other line. The path may hold spaces, even ` in `.
fn parse_recovered(line: &str) -> Option<Recovered> {
    let (_, message) = line.split_once("store: recovered ")?;
    let sessions = message.split_whitespace().next()?.parse().ok()?;
    let (counts, rest) = message.split_once(" retained messages from ")?;
    let retained = counts.rsplit(' ').next()?.parse().ok()?;
    let (_, time) = rest.trim_end().strip_suffix(" ms")?.rsplit_once(" in ")?;
    let ms = time.trim().parse().ok()?;
    Some(Recovered {
        sessions,
        retained,
        ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_store_line_of_a_log() {
        let line = "2026-12-07T05:40:01.123456Z  INFO gateway::store: store: recovered 3 \
                    sessions (12 queued, 2 in flight) and 1000016 retained messages from \
                    /tmp/bench/gateway-large-data/store.redb in 812 ms";
        assert_eq!(
            parse_recovered(line),
            Some(Recovered {
                sessions: 3,
                retained: 1_000_016,
                ms: 812.0
            })
        );
        // A path with ` in ` in it, a fractional time, no session details.
        let line = "store: recovered 0 sessions () and 7 retained messages from /data in \
                    here/store.redb in 1.5 ms\n";
        assert_eq!(
            parse_recovered(line),
            Some(Recovered {
                sessions: 0,
                retained: 7,
                ms: 1.5
            })
        );
        // The old store's line, and others, are not it.
        assert_eq!(
            parse_recovered(
                "INFO gateway::store: store: loaded 5 retained messages and 0 sessions"
            ),
            None
        );
        assert_eq!(
            parse_recovered("INFO gateway: listening mqtt 127.0.0.1:1883"),
            None
        );
        assert_eq!(
            parse_recovered(
                "store: recovered many sessions and 7 retained messages from x in 1 ms"
            ),
            None
        );
    }

    #[test]
    fn reads_vm_rss_from_proc_status() {
        let status = "Name:\tmosquitto\nVmPeak:\t  300000 kB\nVmRSS:\t  123456 kB\n\
                      RssAnon:\t  100000 kB\n";
        assert_eq!(vm_rss_kb(status), Some(123_456));
        assert_eq!(vm_rss_kb("Name:\tx\nVmHWM:\t 5 kB\n"), None);
        assert_eq!(vm_rss_kb("VmRSS:\t 12 MB\n"), None);
        // The running test's own status has one.
        let own = std::fs::read_to_string("/proc/self/status").unwrap();
        assert!(vm_rss_kb(&own).unwrap() > 0);
    }

    /// The CONNECT's remaining length matches its bytes.
    #[test]
    fn the_recovery_probe_connect_is_well_formed() {
        assert_eq!(usize::from(CONNECT[1]), CONNECT.len() - 2);
        assert_eq!(usize::from(CONNECT[13]), CONNECT.len() - 14);
    }

    /// Row names fit the table's per-run column and both sizes name the same figures.
    #[test]
    fn large_state_names_fit() {
        for names in [FULL_NAMES, QUICK_NAMES] {
            for name in [
                names.load,
                names.p50,
                names.p99,
                names.max,
                names.memory,
                names.recovery,
                names.serving,
            ] {
                assert!(name.len() <= 52, "{name}");
            }
        }
        assert!(PERSISTENT_FANIN.len() <= 52);
    }
}
