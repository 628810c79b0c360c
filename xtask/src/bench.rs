//! `cargo xtask bench`: the gateway and Mosquitto side by side, under the same load generator
//! (`mqtt-bench`), in one run.
//!
//! Both brokers run on their own loopback ports, each serving MQTT over TCP and over WebSocket
//! (the gateway at `ws://127.0.0.1:HTTP/mqtt`, Mosquitto on a `protocol websockets` listener);
//! every mode runs against each, interleaved (A B, then B A, ...), at least three times, and the
//! table shows medians and the ratio gateway/Mosquitto. Two rows are derived rather than measured:
//! the gateway's WebSocket fan-in over its own TCP fan-in, and its fan-in with an ACL over its
//! fan-in without (see below), from the same runs. Results also go to
//! `target/bench/latest.json` and a bar chart of the ratios to `target/bench/ratios.svg`. Memory
//! per idle connection is measured on freshly started brokers, so earlier loads do not leave
//! freed memory to hide the cost.
//!
//! Each throughput row is followed by a CPU row: the CPU seconds the broker's process spent
//! (`utime + stime` of `/proc/PID/stat`, all threads, read right before and right after each
//! run) per million messages its subscribers received, so that a broker that is faster by
//! burning more cores shows it.
//!
//! `--peers` adds rumqttd 0.20.0 and mqttv5-cli 0.29.10's broker (see [`peers`]: installed into
//! `target/peers` when missing, each on its own loopback ports, configured as Mosquitto is as far
//! as each can be). Every part runs them beside the other two, in the same interleaving (all
//! brokers forwards, then backwards), and the table gets a column per peer and `gateway/best`,
//! the gateway over the best other broker, Mosquitto included. A peer without a figure in a row
//! says why in its cell: it has no ACL file, no persistence, or failed to start, crashed, timed
//! out or lost messages (a peer's failure is noted and the benchmark goes on; the gateway's or
//! Mosquitto's still ends it).
//!
//! The security rows run the fan-in load against two more pairs of brokers (with `--peers`, the
//! peers too: a TLS listener with the same files, but not the ACL), started next to the first
//! and kept for all runs, each pair loaded alike (see [`security`] for the files):
//! - TLS: each broker gets a third listener, MQTT over TLS on a loopback port, serving the same
//!   certificate and key, made with `openssl` at the start of the run (X.509 v3, ECDSA P-256,
//!   `subjectAltName = IP:127.0.0.1`, signed by a throwaway CA that `mqtt-bench --tls-ca`
//!   trusts). The gateway: `--mqtts 127.0.0.1:PORT --tls-cert server.pem --tls-key server.key`
//!   (rustls, aws-lc-rs). Mosquitto: [`brokers::MOSQUITTO_TLS_CONF`] (`listener PORT 127.0.0.1`,
//!   `certfile`, `keyfile`; OpenSSL). The clients are rustls with aws-lc-rs, TCP_NODELAY; with
//!   them both brokers negotiate TLS 1.3 and TLS13_AES_256_GCM_SHA384 (key exchange: the
//!   gateway X25519MLKEM768, Debian's Mosquitto 2.0.11 X25519), which each result records.
//! - ACL: each broker reads the same generated ACL of 100 rules (the gateway `--acl-file FILE`,
//!   Mosquitto [`brokers::MOSQUITTO_ACL_CONF`], `acl_file FILE`), neither with authentication,
//!   so every client is anonymous and the rules before the first `user` line apply; two of them
//!   grant the fan-in topics, after 44 others that a broker scanning in order passes first.
//!   The ACL fan-in is measured right after the plain fan-in in each run, the brokers in the
//!   same order, and a derived row divides each broker's ACL fan-in by its own fan-in without
//!   an ACL (the goal: the ACL costs the gateway at most 10%). Measured a minute apart, in the
//!   table's order, the gateway's ratio read 0.65x in a full run where back-to-back runs read
//!   about 0.9x: on a shared machine the load drifts within a minute. With `--quick` the
//!   gateway's fan-in runs last tens of milliseconds, too short to judge 10%.
//!
//! Then the browser rows (see [`browser`] and [`page`]): client-wasm and MQTT.js in headless
//! Chromium, each alone in a page and both in one page, receiving a 64-byte QoS 0 stream from
//! each broker over WebSocket (the gateway coalesces packets into frames, Mosquitto sends one
//! frame per packet), and the latency of a 1000 msg/s stream to each; derived rows give
//! wasm/MQTT.js in one page and gateway+wasm over Mosquitto+MQTT.js. Skipped, with a note, when
//! there is no Chromium.
//!
//! Then the durability rows (see [`durability`]): fan-in QoS 1 into a persistent session with
//! the gateway's `--durability full` against Mosquitto with `persistence true`, and each broker
//! holding a million retained messages (100,000 with `--quick`): latency meanwhile, memory per
//! message, and the time to recover them after SIGTERM.
//!
//! Then the crowd rows (see [`crowds`]): each broker, fresh, holding 19,000 idle connections
//! (5,000 with `--quick`), its whole resident memory and what each connection costs.
//!
//! Right after the crowds, the fleet rows (see [`fleet`]): 10,000 devices over TCP (1,000 with `--quick`), each
//! publishing one QoS 1 JSON message a second, and 5 WebSocket dashboards on `fleet/#`: the
//! broker's CPU and memory, publish-to-dashboard latency, and every message accounted for.
//!
//! The browser part ends with the dashboard under a steady load (see [`dashboard`]): frame
//! intervals at 1,000 and 10,000 msg/s over 40 series, frame work, long tasks and JS heap,
//! printed before the table and kept in latest.json under `browser.dashboard` (the gateway alone
//! serves it: no ratio).
//!
//! `--only brokers|crowds|fleet|durability|browser|dashboard` runs one part (`--browser-only` is
//! `--only browser`, which includes the dashboard); the table and latest.json then hold that
//! part's rows.
//!
//! The brokers and the load generator are in [`brokers`], the peers in [`peers`]; rows, table
//! and chart in [`report`].

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::process;
use brokers::{
    Broker, Extras, MOSQUITTO_ACL_CONF, MOSQUITTO_CONF, MOSQUITTO_TLS_CONF, cpu_seconds,
    ensure_mosquitto, run_load,
};
use page::Launcher;
use peers::{Contender, Peer, contenders, failure};
use report::{Better, Cell, Row, machine, ratio_chart, render_table};
use security::{ACL_RULES, Pki};

mod brokers;
mod browser;
mod cluster;
mod crowds;
mod dashboard;
mod durability;
mod fleet;
mod page;
mod peers;
mod report;
mod security;

/// Which brokers a figure runs against (the gateway, Mosquitto and the peers, each configured
/// alike); each set is started once for all runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Setup {
    /// MQTT over TCP and WebSocket, nothing else.
    Plain,
    /// Plus a TLS listener with the run's certificate.
    Tls,
    /// Plus the run's ACL.
    Acl,
}

impl Setup {
    const ALL: [Setup; 3] = [Setup::Plain, Setup::Tls, Setup::Acl];

    /// What the brokers load beyond the plain configuration.
    fn extras<'a>(self, pki: &'a Pki, acl: &'a Path) -> Extras<'a> {
        match self {
            Setup::Plain => Extras::default(),
            Setup::Tls => Extras {
                tls: Some(pki),
                ..Extras::default()
            },
            Setup::Acl => Extras {
                acl: Some(acl),
                ..Extras::default()
            },
        }
    }

    /// Ends the names of the brokers' files (data directory, configuration).
    fn suffix(self) -> &'static str {
        match self {
            Setup::Plain => "",
            Setup::Tls => "-tls",
            Setup::Acl => "-acl",
        }
    }
}

/// One figure of the table: a mode of `mqtt-bench`, its arguments, and the JSON field read.
struct Figure {
    name: &'static str,
    args: Vec<String>,
    field: &'static str,
    unit: &'static str,
    better: Better,
    /// Further fields of the result shown on the per-run line (they are in latest.json anyway).
    details: &'static [&'static str],
    /// The brokers it runs against.
    setup: Setup,
    /// The figure this one is measured right after, in each run, with the brokers in the same
    /// order: a ratio between the two then compares runs seconds apart rather than minutes
    /// (the load of a shared machine drifts in between).
    after: Option<&'static str>,
}

/// The TCP fan-in figure that the WebSocket one is compared with.
const TCP_FANIN_QOS0: &str = "fan-in QoS 0 (4 publishers)";
/// The WebSocket fan-in figure whose ratio to [`TCP_FANIN_QOS0`] is a goal of its own.
const WS_FANIN_QOS0: &str = "WS fan-in QoS 0 (4 publishers)";
/// The derived row: the gateway's [`WS_FANIN_QOS0`] over its [`TCP_FANIN_QOS0`].
const WS_OVER_TCP: &str = "WS fan-in QoS 0 / own TCP";
/// DESIGN.md's goal for [`WS_OVER_TCP`]: WebSocket throughput at least 0.8x our own TCP.
const WS_OVER_TCP_GOAL: f64 = 0.8;
/// The fan-in figure of [`TCP_FANIN_QOS0`]'s load against brokers that load the ACL.
const ACL_FANIN_QOS0: &str = "fan-in QoS 0 with a 100-rule ACL (4 publishers)";
/// The derived row: [`ACL_FANIN_QOS0`] over [`TCP_FANIN_QOS0`], each broker against itself.
const ACL_OVER_PLAIN: &str = "ACL fan-in / own fan-in";
/// The goal for [`ACL_OVER_PLAIN`]: the ACL costs the gateway at most 10% of its fan-in.
const ACL_OVER_PLAIN_GOAL: f64 = 0.9;

/// The broker figures. Counts are per publisher (fan-in) or per stream (fan-out); they are sized
/// so that the gateway's runs last about half a second or more, since shorter runs are mostly
/// noise, while Mosquitto's stay near ten seconds each.
fn figures(quick: bool) -> Vec<Figure> {
    let scale = |full: u64, small: u64| if quick { small } else { full }.to_string();
    let throughput =
        |name, transport: &str, mode: &str, qos: &str, clients: (&str, &str), messages: String| {
            Figure {
                name,
                args: [
                    "--transport",
                    transport,
                    mode,
                    clients.0,
                    clients.1,
                    "--messages",
                    &messages,
                    "--qos",
                    qos,
                    "--size",
                    "64",
                ]
                .map(String::from)
                .to_vec(),
                field: "messages_per_second",
                unit: "msg/s",
                better: Better::Higher,
                details: &[],
                setup: Setup::Plain,
                after: None,
            }
        };
    vec![
        throughput(
            TCP_FANIN_QOS0,
            "tcp",
            "fanin",
            "0",
            ("--publishers", "4"),
            scale(250_000, 20_000),
        ),
        throughput(
            "fan-in QoS 1 (4 publishers)",
            "tcp",
            "fanin",
            "1",
            ("--publishers", "4"),
            scale(150_000, 10_000),
        ),
        throughput(
            "fan-out QoS 0 (1 to 10)",
            "tcp",
            "fanout",
            "0",
            ("--subscribers", "10"),
            scale(200_000, 10_000),
        ),
        throughput(
            "fan-out QoS 1 (1 to 10)",
            "tcp",
            "fanout",
            "1",
            ("--subscribers", "10"),
            scale(50_000, 5_000),
        ),
        throughput(
            WS_FANIN_QOS0,
            "ws",
            "fanin",
            "0",
            ("--publishers", "4"),
            scale(250_000, 20_000),
        ),
        throughput(
            "WS fan-in QoS 1 (4 publishers)",
            "ws",
            "fanin",
            "1",
            ("--publishers", "4"),
            scale(150_000, 10_000),
        ),
        throughput(
            "WS fan-out QoS 0 (1 to 10)",
            "ws",
            "fanout",
            "0",
            ("--subscribers", "10"),
            scale(200_000, 10_000),
        ),
        Figure {
            setup: Setup::Tls,
            ..throughput(
                "TLS fan-in QoS 0 (4 publishers)",
                "tls",
                "fanin",
                "0",
                ("--publishers", "4"),
                scale(250_000, 20_000),
            )
        },
        Figure {
            setup: Setup::Tls,
            ..throughput(
                "TLS fan-in QoS 1 (4 publishers)",
                "tls",
                "fanin",
                "1",
                ("--publishers", "4"),
                scale(150_000, 10_000),
            )
        },
        // The load of TCP_FANIN_QOS0, measured right after it, so that the two compare.
        Figure {
            setup: Setup::Acl,
            after: Some(TCP_FANIN_QOS0),
            ..throughput(
                ACL_FANIN_QOS0,
                "tcp",
                "fanin",
                "0",
                ("--publishers", "4"),
                scale(250_000, 20_000),
            )
        },
        Figure {
            name: "latency p50 at 1000 msg/s",
            args: latency_args(quick),
            field: "p50_us",
            unit: "us",
            better: Better::Lower,
            details: &[],
            setup: Setup::Plain,
            after: None,
        },
        Figure {
            name: "latency p99 at 1000 msg/s",
            args: latency_args(quick),
            field: "p99_us",
            unit: "us",
            better: Better::Lower,
            details: &[],
            setup: Setup::Plain,
            after: None,
        },
        Figure {
            name: "connection rate",
            args: ["connrate", "--connections", &scale(4000, 1000)]
                .map(String::from)
                .to_vec(),
            field: "connections_per_second",
            unit: "conn/s",
            better: Better::Higher,
            details: &[],
            setup: Setup::Plain,
            after: None,
        },
        Figure {
            name: "1 MiB over WebSocket",
            // Up to 20 rounds in 5 s: plenty for the gateway, while a broker that needs seconds
            // per megabyte (Mosquitto's WebSocket listener does) runs its one round only.
            args: [
                "big",
                "--size",
                "1048576",
                "--repeats",
                &scale(20, 5),
                "--seconds",
                "5",
            ]
            .map(String::from)
            .to_vec(),
            field: "ws_median_ms",
            unit: "ms",
            better: Better::Lower,
            details: &["repeats", "ws_max_ms", "tcp_median_ms"],
            setup: Setup::Plain,
            after: None,
        },
    ]
}

fn latency_args(quick: bool) -> Vec<String> {
    let seconds = if quick { "2" } else { "10" };
    ["latency", "--rate", "1000", "--seconds", seconds]
        .map(String::from)
        .to_vec()
}

/// The parts of the benchmark, in the order they run; `--only PART` runs one of them.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    /// The load generator's rows over TCP, WebSocket and TLS, with an ACL, and idle memory.
    Brokers,
    /// The crowd rows ([`crowds`]).
    Crowds,
    /// The fleet rows ([`fleet`]).
    Fleet,
    /// The store's rows ([`durability`]).
    Durability,
    /// The browser rows ([`browser`]).
    Browser,
    /// The dashboard's figures ([`dashboard`]), part of the browser part but runnable alone.
    Dashboard,
}

impl Part {
    fn parse(name: &str) -> Result<Part> {
        Ok(match name {
            "brokers" => Part::Brokers,
            "crowds" => Part::Crowds,
            "fleet" => Part::Fleet,
            "durability" => Part::Durability,
            "browser" => Part::Browser,
            "dashboard" => Part::Dashboard,
            other => bail!(
                "unknown part {other:?} (expected brokers, crowds, fleet, durability, browser \
                 or dashboard)"
            ),
        })
    }

    /// Whether `--only self` runs `part`.
    fn includes(self, part: Part) -> bool {
        self == part || (self == Part::Browser && part == Part::Dashboard)
    }
}

/// `cargo xtask bench [--quick] [--runs N] [--only brokers|crowds|fleet|durability|browser|
/// dashboard | --browser-only] [--no-browser] [--instrumented] [--peers]`, or `cargo xtask bench
/// --cluster [--quick] [--runs N]` (three nodes against one, see [`cluster`]).
pub fn run(args: &[String]) -> Result<()> {
    let mut quick = false;
    let mut runs = None;
    let mut browser = true;
    let mut only = None;
    let mut launcher = Launcher::Plain;
    let mut three_nodes = false;
    let mut peers: &[Peer] = &[];
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--runs" => runs = Some(rest.next().context("--runs needs a number")?.parse()?),
            "--only" => only = Some(Part::parse(rest.next().context("--only needs a part")?)?),
            "--browser-only" => only = Some(Part::Browser),
            "--no-browser" => browser = false,
            "--instrumented" => launcher = Launcher::Instrumented,
            "--cluster" => three_nodes = true,
            "--peers" => peers = &Peer::ALL,
            other => bail!(
                "unknown bench argument {other:?} (expected --quick, --runs N, --only PART, \
                 --browser-only, --no-browser, --instrumented, --peers, --cluster)"
            ),
        }
    }
    let runs: usize = runs.unwrap_or(if quick { 1 } else { 3 });
    if three_nodes {
        return cluster::run(quick, runs);
    }
    let part = |part: Part| only.is_none_or(|only| only.includes(part));
    ensure_mosquitto()?;
    peers::ensure_installed(peers)?;
    process::run(process::cargo().args(["build", "--release", "-p", "gateway", "-p", "bench"]))?;
    let dir = process::target_dir().join("bench");
    std::fs::create_dir_all(&dir)?;
    let mut rows = Vec::new();
    if part(Part::Brokers) {
        rows.extend(broker_rows(quick, runs, &dir, peers)?);
    }
    if part(Part::Crowds) {
        rows.extend(crowds::rows(quick, runs, &dir, peers)?);
    }
    if part(Part::Fleet) {
        rows.extend(fleet::rows(quick, runs, &dir, peers)?);
    }
    if part(Part::Durability) {
        rows.extend(durability::rows(quick, runs, &dir, peers)?);
    }
    let mut browser_report = json!(null);
    if browser && (part(Part::Browser) || part(Part::Dashboard)) {
        match browser::prerequisites(launcher)? {
            Ok(package) => {
                browser_report = json!({ "launcher": launcher.describe(), "package": package });
                if part(Part::Browser) {
                    rows.extend(browser::rows(quick, runs, &dir, launcher, peers)?);
                }
                if part(Part::Dashboard) {
                    browser_report["dashboard"] = dashboard::run(runs)?;
                }
            }
            Err(why) => println!("note: skipping the browser rows: {why}"),
        }
    }

    // The dashboard's figures are printed as it runs: with `--only dashboard` there is no table.
    if !rows.is_empty() {
        print!("{}", render_table(&rows, runs));
    }
    let json_rows: Vec<Value> = rows.iter().map(Row::to_json).collect();
    let report = json!({
        "runs": runs,
        "quick": quick,
        "machine": machine(),
        "mosquitto_config": MOSQUITTO_CONF,
        "peers": peers::report(peers),
        "security": security_report(),
        "crowds": crowds::report(quick),
        "fleet": fleet::report(quick),
        "durability": durability::report(quick),
        "browser": browser_report,
        "figures": json_rows,
    });
    let json_path = dir.join("latest.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&report)?)?;
    let svg_path = dir.join("ratios.svg");
    std::fs::write(&svg_path, ratio_chart(&json_rows))?;
    println!("wrote {} and {}", json_path.display(), svg_path.display());
    Ok(())
}

/// The order the figures are measured in within a run, each with the index whose parity decides
/// its order of brokers: the table's order, except that a figure with `after` comes right after
/// that figure and takes its order of brokers.
fn schedule(figures: &[Figure]) -> Result<Vec<(usize, usize)>> {
    let mut plan = Vec::with_capacity(figures.len());
    for (index, figure) in figures.iter().enumerate() {
        if figure.after.is_some() {
            continue;
        }
        plan.push((index, index));
        let companions = figures.iter().enumerate();
        for (companion, _) in companions.filter(|(_, other)| other.after == Some(figure.name)) {
            plan.push((companion, index));
        }
    }
    if plan.len() != figures.len() {
        bail!("a figure is to be measured after one that is not in the table or follows another");
    }
    Ok(plan)
}

/// How the security rows' brokers are configured, for latest.json.
fn security_report() -> Value {
    json!({
        "certificate": "X.509 v3, ECDSA P-256, subjectAltName IP:127.0.0.1, serverAuth, \
                        signed by a CA made in the same run (openssl); the same files for both",
        "tls": {
            "gateway_args": "--mqtts 127.0.0.1:{tls_port} --tls-cert server.pem --tls-key server.key",
            "mosquitto_config": format!("{MOSQUITTO_CONF}{MOSQUITTO_TLS_CONF}"),
        },
        "acl": {
            "rules": ACL_RULES,
            "gateway_args": "--acl-file acl.conf",
            "mosquitto_config": format!("{MOSQUITTO_CONF}{MOSQUITTO_ACL_CONF}"),
            "file": security::acl_text(),
        },
    })
}

/// Where one broker's runs of one figure stand: values, results, CPU per million messages
/// delivered (throughput figures), and why the last failed run failed.
#[derive(Clone, Default)]
struct Tally {
    samples: Vec<f64>,
    results: Vec<Value>,
    cpu: Vec<f64>,
    failed: Option<String>,
}

impl Tally {
    /// Its cell with `samples` and `results` (its own, or its CPU figures), or why there are
    /// none: the broker could not serve the row (`cannot`), or failed every run.
    fn cell(
        &self,
        broker: &'static str,
        cannot: Option<&str>,
        samples: Vec<f64>,
        results: Vec<Value>,
    ) -> Cell {
        if samples.is_empty() {
            let why = cannot
                .map(str::to_string)
                .or_else(|| self.failed.clone())
                .unwrap_or_else(|| "no figure".to_string());
            return Cell::missing(broker, why);
        }
        Cell::new(broker, samples, results)
    }
}

/// A broker of the broker rows as started for one setup: running, or why not.
type Slot = std::result::Result<Broker, String>;

/// The rows of the load generator's figures (TCP, WebSocket, TLS, ACL, latency, connections,
/// 1 MiB, idle memory), each throughput row followed by its CPU row, and the derived
/// WebSocket/TCP and ACL/plain rows; a column per broker of `contenders`.
fn broker_rows(quick: bool, runs: usize, dir: &Path, peers: &[Peer]) -> Result<Vec<Row>> {
    let figures = figures(quick);
    let contenders = contenders(peers);
    // tallies[figure][broker], in `contenders`' order; the last figure is the memory per idle
    // connection.
    let mut tallies = vec![vec![Tally::default(); contenders.len()]; figures.len() + 1];
    // Why a broker could not serve a setup, per setup.
    let mut cannot: Vec<(Setup, Vec<Option<String>>)> = Vec::new();
    let width = figures.iter().map(|f| f.name.len()).max().unwrap_or(30);
    let plan = schedule(&figures)?;

    {
        let pki = Pki::generate(&dir.join("tls"))?;
        let acl = security::write_acl(dir)?;
        // The brokers per setup, in Setup::ALL's order.
        let mut setups: Vec<(Setup, Vec<Slot>)> = Vec::new();
        for setup in Setup::ALL {
            let extras = setup.extras(&pki, &acl);
            let mut slots = Vec::new();
            for contender in &contenders {
                slots.push(contender.start(dir, setup.suffix(), extras)?);
            }
            cannot.push((
                setup,
                slots
                    .iter()
                    .map(|slot| slot.as_ref().err().cloned())
                    .collect(),
            ));
            setups.push((setup, slots));
        }
        for run in 0..runs {
            for &(index, order_index) in &plan {
                let figure = &figures[index];
                let (_, slots) = setups
                    .iter_mut()
                    .find(|(setup, _)| *setup == figure.setup)
                    .context("every setup is started")?;
                // Forwards, then backwards: with two brokers, A B then B A as always.
                let mut order: Vec<usize> = (0..slots.len()).collect();
                if (run + order_index) % 2 == 1 {
                    order.reverse();
                }
                for slot in order {
                    let Ok(broker) = &mut slots[slot] else {
                        continue;
                    };
                    let peer = matches!(contenders[slot], Contender::Peer(_));
                    let tally = &mut tallies[index][slot];
                    if peer && let Ok(Some(status)) = broker.child.try_wait() {
                        // Its earlier figures stand; it serves no more of this setup's rows.
                        println!("  note: {} exited ({status})", broker.name);
                        tally.failed = Some(format!("crashed ({status})"));
                        slots[slot] = Err(format!("crashed ({status})"));
                        continue;
                    }
                    let cpu_before = cpu_seconds(broker)?;
                    let result = match run_load(broker, &figure.args) {
                        Ok(result) => result,
                        Err(error) if peer => {
                            tally.failed = Some(failure(broker, figure.name, &error));
                            continue;
                        }
                        Err(error) => return Err(error),
                    };
                    let cpu = cpu_seconds(broker)? - cpu_before;
                    let value = result[figure.field]
                        .as_f64()
                        .with_context(|| format!("no {} in {result}", figure.field))?;
                    if result.get("lost").and_then(Value::as_u64).unwrap_or(0) > 0 {
                        println!(
                            "  note: {} lost messages in {}: {result}",
                            broker.name, figure.name
                        );
                    }
                    let mut details: String = figure
                        .details
                        .iter()
                        .map(|field| format!("  {field}={}", result[field]))
                        .collect();
                    // CPU seconds per million messages delivered, for the throughput rows.
                    let delivered = result["received"].as_f64().unwrap_or(0.0);
                    if figure.field == THROUGHPUT && delivered > 0.0 {
                        let per_million = cpu / delivered * 1e6;
                        details.push_str(&format!("  cpu {per_million:.2} s/M msgs"));
                        tally.cpu.push(per_million);
                    }
                    println!(
                        "run {}/{runs} {:<width$} {:<9} {value:>12.1} {}{details}",
                        run + 1,
                        figure.name,
                        broker.name,
                        figure.unit
                    );
                    tally.samples.push(value);
                    tally.results.push(result);
                }
            }
        }
    }

    // Idle connections on fresh brokers, forwards then backwards.
    let idle = figures.len();
    let idle_connections = if quick { "500" } else { "2000" };
    for run in 0..runs {
        let mut order: Vec<usize> = (0..contenders.len()).collect();
        if run % 2 == 1 {
            order.reverse();
        }
        for slot in order {
            let tally = &mut tallies[idle][slot];
            let mut broker = match contenders[slot].start_plain(dir)? {
                Ok(broker) => broker,
                Err(why) => {
                    tally.failed = Some(why);
                    continue;
                }
            };
            let pid = broker.child.id().to_string();
            let args = ["idle", "--connections", idle_connections, "--pid", &pid].map(String::from);
            let result = match run_load(&broker, &args) {
                Ok(result) => result,
                Err(error) if matches!(contenders[slot], Contender::Peer(_)) => {
                    tally.failed = Some(failure(&mut broker, "idle connections", &error));
                    continue;
                }
                Err(error) => return Err(error),
            };
            let value = result["kb_per_connection"]
                .as_f64()
                .context("no kb_per_connection")?;
            println!(
                "run {}/{runs} {:<width$} {:<9} {value:>12.2} KB",
                run + 1,
                "memory per idle connection",
                broker.name
            );
            tally.samples.push(value);
            tally.results.push(result);
        }
    }

    let mut rows = Vec::new();
    for (index, tallies) in tallies.iter().enumerate() {
        let (name, unit, better, setup) = match figures.get(index) {
            Some(figure) => (figure.name, figure.unit, figure.better, Some(figure.setup)),
            None => ("memory per idle connection", "KB", Better::Lower, None),
        };
        let why = |slot: usize| -> Option<String> {
            let setup = setup?;
            let (_, whys) = cannot.iter().find(|(each, _)| *each == setup)?;
            whys[slot].clone()
        };
        // The figures' cells, or with `cpu` the CPU figures' (whose runs' results are in the
        // figures' cells already).
        let cells = |cpu: bool| -> Vec<Cell> {
            contenders
                .iter()
                .zip(tallies)
                .enumerate()
                .map(|(slot, (contender, tally))| {
                    let (samples, results) = if cpu {
                        (tally.cpu.clone(), Vec::new())
                    } else {
                        (tally.samples.clone(), tally.results.clone())
                    };
                    tally.cell(contender.name(), why(slot).as_deref(), samples, results)
                })
                .collect()
        };
        let measured = cells(false);
        rows.push(Row::of(name, unit, better, measured));
        if figures
            .get(index)
            .is_some_and(|figure| figure.field == THROUGHPUT)
        {
            let mut cpu = Row::of(
                format!("{name}: CPU s per 1M delivered"),
                "s",
                Better::Lower,
                cells(true),
            );
            cpu.note = Some(
                "broker's utime+stime over the run / messages delivered; lower is better".into(),
            );
            rows.push(cpu);
        }
    }
    let websocket = own_ratio(
        &rows,
        OwnRatio {
            name: WS_OVER_TCP,
            numerator: WS_FANIN_QOS0,
            denominator: TCP_FANIN_QOS0,
            goal: WS_OVER_TCP_GOAL,
            ratio_of: "gateway WS / gateway TCP (the other columns: each broker's WS / TCP)",
            note: "ratio = gateway WS / gateway TCP; goal 0.8x",
        },
    )?;
    // Right after the WebSocket throughput rows it is derived from (and their CPU rows).
    let after = rows
        .iter()
        .rposition(|row| row.name.starts_with("WS "))
        .map_or(rows.len(), |index| index + 1);
    rows.insert(after, websocket);
    let acl = own_ratio(
        &rows,
        OwnRatio {
            name: ACL_OVER_PLAIN,
            numerator: ACL_FANIN_QOS0,
            denominator: TCP_FANIN_QOS0,
            goal: ACL_OVER_PLAIN_GOAL,
            ratio_of: "gateway with the ACL / gateway without (the other columns: each \
                       broker's with / without)",
            note: "ratio = gateway with ACL / without; goal 0.9x",
        },
    )?;
    let after = rows
        .iter()
        .rposition(|row| row.name.starts_with(ACL_FANIN_QOS0))
        .map_or(rows.len(), |index| index + 1);
    rows.insert(after, acl);
    Ok(rows)
}

/// The field of a throughput figure, whose rows get a CPU row.
const THROUGHPUT: &str = "messages_per_second";

/// A derived row that divides two figures of the same broker.
struct OwnRatio {
    name: &'static str,
    numerator: &'static str,
    denominator: &'static str,
    /// The gateway's goal for the ratio.
    goal: f64,
    ratio_of: &'static str,
    note: &'static str,
}

/// The derived row `spec.numerator / spec.denominator`, each broker against itself (the goal is
/// the gateway's own ratio, the other brokers' are shown for comparison). Medians over medians,
/// with the per-run ratios (same run, same order of brokers) as samples; a broker without
/// either figure says why.
fn own_ratio(rows: &[Row], spec: OwnRatio) -> Result<Row> {
    let find = |name: &str| {
        rows.iter()
            .find(|row| row.name == name)
            .with_context(|| format!("no {name:?} figure"))
    };
    let (denominator, numerator) = (find(spec.denominator)?, find(spec.numerator)?);
    let cells: Vec<Cell> = numerator
        .cells
        .iter()
        .zip(&denominator.cells)
        .map(|(numerator, denominator)| {
            if let Some(why) = numerator.missing.as_ref().or(denominator.missing.as_ref()) {
                return Cell::missing(numerator.broker, why.clone());
            }
            let per_run = numerator
                .samples
                .iter()
                .zip(&denominator.samples)
                .map(|(numerator, denominator)| numerator / denominator)
                .collect();
            let mut cell = Cell::new(numerator.broker, per_run, Vec::new());
            cell.derived = Some(numerator.median() / denominator.median());
            cell
        })
        .collect();
    let mut row = Row::of(spec.name, "x", Better::Higher, cells);
    // The gateway's own ratio, as the goal is stated.
    row.ratio = row.gateway();
    row.ratio_of = Some(spec.ratio_of);
    row.goal = Some(spec.goal);
    row.note = Some(spec.note.into());
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ACL row's name says how many rules the ACL has, and its load is the plain fan-in's.
    #[test]
    fn the_acl_figure_matches_the_acl_and_the_plain_load() {
        assert!(ACL_FANIN_QOS0.contains(&format!("{ACL_RULES}-rule")));
        for quick in [false, true] {
            let figures = figures(quick);
            let find = |name| figures.iter().find(|figure| figure.name == name).unwrap();
            let (plain, acl) = (find(TCP_FANIN_QOS0), find(ACL_FANIN_QOS0));
            assert_eq!(plain.args, acl.args);
            assert!(plain.setup == Setup::Plain && acl.setup == Setup::Acl);
        }
    }

    /// Every figure is measured once a run; the ACL fan-in right after the plain one, with the
    /// brokers in the same order; the others in the table's order, alternating.
    #[test]
    fn the_acl_fan_in_is_measured_right_after_the_plain_one() {
        let figures = figures(true);
        let plan = schedule(&figures).unwrap();
        let mut measured: Vec<usize> = plan.iter().map(|&(index, _)| index).collect();
        measured.sort_unstable();
        assert_eq!(measured, (0..figures.len()).collect::<Vec<_>>());
        let at = |name| {
            plan.iter()
                .position(|&(index, _)| figures[index].name == name)
                .unwrap()
        };
        assert_eq!(at(ACL_FANIN_QOS0), at(TCP_FANIN_QOS0) + 1);
        assert_eq!(plan[at(ACL_FANIN_QOS0)].1, plan[at(TCP_FANIN_QOS0)].1);
        let others: Vec<usize> = plan
            .iter()
            .filter(|&&(index, _)| figures[index].after.is_none())
            .map(|&(index, order)| {
                assert_eq!(index, order);
                index
            })
            .collect();
        assert!(others.windows(2).all(|pair| pair[0] < pair[1]));
    }
}
