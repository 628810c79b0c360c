//! `cargo xtask bench`: the gateway and Mosquitto side by side, under the same load generator
//! (`mqtt-bench`), in one run.
//!
//! Both brokers run on their own loopback ports, each serving MQTT over TCP and over WebSocket
//! (the gateway at `ws://127.0.0.1:HTTP/mqtt`, Mosquitto on a `protocol websockets` listener);
//! every mode runs against each, interleaved (A B, then B A, ...), at least three times, and the
//! table shows medians and the ratio gateway/Mosquitto. One row is derived rather than measured:
//! the gateway's WebSocket fan-in over its own TCP fan-in, from the same runs. Results also go to
//! `target/bench/latest.json` and a bar chart of the ratios to `target/bench/ratios.svg`. Memory
//! per idle connection is measured on freshly started brokers, so earlier loads do not leave
//! freed memory to hide the cost.
//!
//! Then the browser rows (see [`browser`] and [`page`]): client-wasm and MQTT.js in headless
//! Chromium, each alone in a page and both in one page, receiving a 64-byte QoS 0 stream from
//! each broker over WebSocket (the gateway coalesces packets into frames, Mosquitto sends one
//! frame per packet), and the latency of a 1000 msg/s stream to each; derived rows give
//! wasm/MQTT.js in one page and gateway+wasm over Mosquitto+MQTT.js. Skipped, with a note, when
//! there is no Chromium.
//!
//! The brokers and the load generator are in [`brokers`]; rows, table and chart in [`report`].

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::process;
use brokers::{Broker, MOSQUITTO_CONF, ensure_mosquitto, run_load, start_gateway, start_mosquitto};
use page::Launcher;
use report::{Better, Row, machine, ratio_chart, render_table};

mod brokers;
mod browser;
mod page;
mod report;

/// One figure of the table: a mode of `mqtt-bench`, its arguments, and the JSON field read.
struct Figure {
    name: &'static str,
    args: Vec<String>,
    field: &'static str,
    unit: &'static str,
    better: Better,
    /// Further fields of the result shown on the per-run line (they are in latest.json anyway).
    details: &'static [&'static str],
}

/// The TCP fan-in figure that the WebSocket one is compared with.
const TCP_FANIN_QOS0: &str = "fan-in QoS 0 (4 publishers)";
/// The WebSocket fan-in figure whose ratio to [`TCP_FANIN_QOS0`] is a goal of its own.
const WS_FANIN_QOS0: &str = "WS fan-in QoS 0 (4 publishers)";
/// The derived row: the gateway's [`WS_FANIN_QOS0`] over its [`TCP_FANIN_QOS0`].
const WS_OVER_TCP: &str = "WS fan-in QoS 0 / own TCP";
/// DESIGN.md's goal for [`WS_OVER_TCP`]: WebSocket throughput at least 0.8x our own TCP.
const WS_OVER_TCP_GOAL: f64 = 0.8;

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
            name: "latency p50 at 1000 msg/s",
            args: latency_args(quick),
            field: "p50_us",
            unit: "us",
            better: Better::Lower,
            details: &[],
        },
        Figure {
            name: "latency p99 at 1000 msg/s",
            args: latency_args(quick),
            field: "p99_us",
            unit: "us",
            better: Better::Lower,
            details: &[],
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
        },
    ]
}

fn latency_args(quick: bool) -> Vec<String> {
    let seconds = if quick { "2" } else { "10" };
    ["latency", "--rate", "1000", "--seconds", seconds]
        .map(String::from)
        .to_vec()
}

/// `cargo xtask bench [--quick] [--runs N] [--browser-only | --no-browser] [--instrumented]`.
pub fn run(args: &[String]) -> Result<()> {
    let mut quick = false;
    let mut runs = None;
    let mut browser = true;
    let mut browser_only = false;
    let mut launcher = Launcher::Plain;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--runs" => runs = Some(rest.next().context("--runs needs a number")?.parse()?),
            "--browser-only" => browser_only = true,
            "--no-browser" => browser = false,
            "--instrumented" => launcher = Launcher::Instrumented,
            other => bail!(
                "unknown bench argument {other:?} (expected --quick, --runs N, --browser-only, \
                 --no-browser, --instrumented)"
            ),
        }
    }
    let runs: usize = runs.unwrap_or(if quick { 1 } else { 3 });
    ensure_mosquitto()?;
    process::run(process::cargo().args(["build", "--release", "-p", "gateway", "-p", "bench"]))?;
    let dir = process::target_dir().join("bench");
    std::fs::create_dir_all(&dir)?;
    let mut rows = if browser_only {
        Vec::new()
    } else {
        broker_rows(quick, runs, &dir)?
    };
    let mut browser_report = json!(null);
    if browser {
        match browser::prerequisites(launcher)? {
            Ok(package) => {
                browser_report = json!({ "launcher": launcher.describe(), "package": package });
                rows.extend(browser::rows(quick, runs, &dir, launcher)?);
            }
            Err(why) => println!("note: skipping the browser rows: {why}"),
        }
    }

    let table = render_table(&rows, runs);
    print!("{table}");
    let json_rows: Vec<Value> = rows.iter().map(Row::to_json).collect();
    let report = json!({
        "runs": runs,
        "quick": quick,
        "machine": machine(),
        "mosquitto_config": MOSQUITTO_CONF,
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

/// The rows of the load generator's figures (TCP, WebSocket, latency, connections, 1 MiB, idle
/// memory) and the derived WebSocket/TCP row.
fn broker_rows(quick: bool, runs: usize, dir: &Path) -> Result<Vec<Row>> {
    let figures = figures(quick);
    // samples[figure][broker] for broker 0 = gateway, 1 = mosquitto; the last figure is the
    // memory per idle connection. results[..][..] holds the whole JSON of each run.
    let mut samples = vec![[Vec::new(), Vec::new()]; figures.len() + 1];
    let mut results: Vec<[Vec<Value>; 2]> = vec![[Vec::new(), Vec::new()]; figures.len() + 1];

    {
        let gateway = start_gateway(dir)?;
        let mosquitto = start_mosquitto(dir)?;
        for run in 0..runs {
            for (index, figure) in figures.iter().enumerate() {
                let order: [&Broker; 2] = if (run + index) % 2 == 0 {
                    [&gateway, &mosquitto]
                } else {
                    [&mosquitto, &gateway]
                };
                for broker in order {
                    let result = run_load(broker, &figure.args)?;
                    let value = result[figure.field]
                        .as_f64()
                        .with_context(|| format!("no {} in {result}", figure.field))?;
                    if result.get("lost").and_then(Value::as_u64).unwrap_or(0) > 0 {
                        println!(
                            "  note: {} lost messages in {}: {result}",
                            broker.name, figure.name
                        );
                    }
                    let details: String = figure
                        .details
                        .iter()
                        .map(|field| format!("  {field}={}", result[field]))
                        .collect();
                    println!(
                        "run {}/{runs} {:<30} {:<9} {value:>12.1} {}{details}",
                        run + 1,
                        figure.name,
                        broker.name,
                        figure.unit
                    );
                    let slot = usize::from(broker.name == "mosquitto");
                    samples[index][slot].push(value);
                    results[index][slot].push(result);
                }
            }
        }
    }

    // Idle connections on fresh brokers, A B A B.
    let idle_connections = if quick { "500" } else { "2000" };
    for run in 0..runs {
        for slot in [run % 2, 1 - run % 2] {
            let broker = if slot == 0 {
                start_gateway(dir)?
            } else {
                start_mosquitto(dir)?
            };
            let pid = broker.child.id().to_string();
            let args = ["idle", "--connections", idle_connections, "--pid", &pid].map(String::from);
            let result = run_load(&broker, &args)?;
            let value = result["kb_per_connection"]
                .as_f64()
                .context("no kb_per_connection")?;
            println!(
                "run {}/{runs} {:<30} {:<9} {value:>12.2} KB",
                run + 1,
                "memory per idle connection",
                broker.name
            );
            samples[figures.len()][slot].push(value);
            results[figures.len()][slot].push(result);
        }
    }

    let mut names: Vec<(&'static str, &'static str, Better)> =
        figures.iter().map(|f| (f.name, f.unit, f.better)).collect();
    names.push(("memory per idle connection", "KB", Better::Lower));
    let mut rows: Vec<Row> = names
        .into_iter()
        .zip(samples.into_iter().zip(results))
        .map(|((name, unit, better), (samples, results))| {
            Row::measured(name, unit, better, samples, results)
        })
        .collect();
    let derived = own_websocket_ratio(&rows)?;
    // Right after the WebSocket throughput rows it is derived from.
    let after = rows
        .iter()
        .rposition(|row| row.name.starts_with("WS "))
        .map_or(rows.len(), |index| index + 1);
    rows.insert(after, derived);
    Ok(rows)
}

/// The derived row: WebSocket fan-in over TCP fan-in, each broker against itself (the goal is
/// the gateway's own ratio, Mosquitto's is shown for comparison). Medians over medians, with the
/// per-run ratios (same run, same order of brokers) as samples.
fn own_websocket_ratio(rows: &[Row]) -> Result<Row> {
    let find = |name: &str| {
        rows.iter()
            .find(|row| row.name == name)
            .with_context(|| format!("no {name:?} figure"))
    };
    let (tcp, ws) = (find(TCP_FANIN_QOS0)?, find(WS_FANIN_QOS0)?);
    let per_run = |slot: usize| -> Vec<f64> {
        ws.samples[slot]
            .iter()
            .zip(&tcp.samples[slot])
            .map(|(ws, tcp)| ws / tcp)
            .collect()
    };
    let own = ws.gateway / tcp.gateway;
    Ok(Row {
        name: WS_OVER_TCP,
        unit: "x",
        better: Better::Higher,
        gateway: own,
        mosquitto: ws.mosquitto / tcp.mosquitto,
        ratio: own,
        ratio_of: Some("gateway WS / gateway TCP (the mosquitto column: Mosquitto's WS / TCP)"),
        goal: Some(WS_OVER_TCP_GOAL),
        note: Some("ratio = gateway WS / gateway TCP; goal 0.8x"),
        samples: [per_run(0), per_run(1)],
        results: [Vec::new(), Vec::new()],
    })
}
