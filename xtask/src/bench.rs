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

use crate::process;
use anyhow::{Context, Result, bail};
use page::Launcher;
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod browser;
mod page;

/// The Mosquitto configuration: TCP_NODELAY like the gateway, unlimited queues so that QoS 1
/// loses nothing, and the same in-flight window as the gateway's default. The second listener is
/// MQTT over WebSocket: Debian's 2.0.11 links libwebsockets statically (so `ldd` does not show
/// it), which sets TCP_NODELAY on its sockets itself.
const MOSQUITTO_CONF: &str = "\
listener {port} 127.0.0.1
listener {ws_port} 127.0.0.1
protocol websockets
allow_anonymous true
set_tcp_nodelay true
max_queued_messages 0
max_inflight_messages 256
persistence false
";

/// Which way a figure improves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Better {
    Higher,
    Lower,
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

/// A broker process under test.
struct Broker {
    name: &'static str,
    child: Child,
    /// MQTT over TCP.
    port: u16,
    /// MQTT over WebSocket, at `ws://127.0.0.1:{ws_port}/mqtt`.
    ws_port: u16,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_for_port(port: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("nothing listens on 127.0.0.1:{port} after 10 s")
}

fn start_gateway(dir: &Path) -> Result<Broker> {
    let port = free_port()?;
    let http = free_port()?;
    let data = dir.join("gateway-data");
    let _ = std::fs::remove_dir_all(&data);
    let child = process::command(process::target_dir().join("release/gateway"))
        .args(["--tcp", &format!("127.0.0.1:{port}")])
        .args(["--http", &format!("127.0.0.1:{http}")])
        .arg("--data-dir")
        .arg(&data)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .context("starting the gateway")?;
    let broker = Broker {
        name: "gateway",
        child,
        port,
        ws_port: http,
    };
    wait_for_port(port)?;
    wait_for_port(http)?;
    Ok(broker)
}

fn start_mosquitto(dir: &Path) -> Result<Broker> {
    let port = free_port()?;
    let ws_port = free_port()?;
    let conf = dir.join("mosquitto.conf");
    let text = MOSQUITTO_CONF
        .replace("{port}", &port.to_string())
        .replace("{ws_port}", &ws_port.to_string());
    std::fs::write(&conf, text)?;
    let child = process::command("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting mosquitto")?;
    let broker = Broker {
        name: "mosquitto",
        child,
        port,
        ws_port,
    };
    wait_for_port(port)?;
    wait_for_port(ws_port)?;
    Ok(broker)
}

/// Runs one `mqtt-bench` mode against `broker` and returns its JSON result.
fn run_load(broker: &Broker, args: &[String]) -> Result<Value> {
    let mut command = process::command(process::target_dir().join("release/mqtt-bench"));
    command
        .args(["--addr", &format!("127.0.0.1:{}", broker.port)])
        .args([
            "--ws-url",
            &format!("ws://127.0.0.1:{}/mqtt", broker.ws_port),
        ])
        .args(["--timeout", "60"])
        .args(args);
    let output = command
        .stderr(Stdio::inherit())
        .output()
        .context("running mqtt-bench")?;
    if !output.status.success() {
        bail!("`{}` failed", process::display(&command));
    }
    serde_json::from_slice(&output.stdout).context("mqtt-bench printed no JSON")
}

/// The median (the mean of the middle two for an even count); the samples keep their run order.
fn median(values: &[f64]) -> f64 {
    let mut values = values.to_vec();
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 0 {
        (values[middle - 1] + values[middle]) / 2.0
    } else {
        values[middle]
    }
}

/// The median, or NaN when a figure has no runs (a browser page that failed every time).
fn median_or_nan(values: &[f64]) -> f64 {
    if values.is_empty() {
        f64::NAN
    } else {
        median(values)
    }
}

/// Ensures Mosquitto is installed (Debian's package), installing it when running as root.
fn ensure_mosquitto() -> Result<()> {
    if process::probe(process::command("mosquitto").arg("-h")).is_some()
        || Path::new("/usr/sbin/mosquitto").exists()
    {
        return Ok(());
    }
    println!("installing Debian package mosquitto");
    process::run(process::command("apt-get").args(["update", "-q"]))?;
    process::run(
        process::command("apt-get")
            .args(["install", "-y", "-q", "mosquitto"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
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

/// One line of the table, the chart and `latest.json`.
struct Row {
    name: &'static str,
    unit: &'static str,
    better: Better,
    /// Medians.
    gateway: f64,
    mosquitto: f64,
    /// gateway/Mosquitto, unless `ratio_of` says otherwise.
    ratio: f64,
    /// What `ratio` divides when it is not gateway/Mosquitto.
    ratio_of: Option<&'static str>,
    /// The ratio the row is judged by when it is not parity with Mosquitto.
    goal: Option<f64>,
    /// What the table says after the ratio when it is not plain gateway/Mosquitto.
    note: Option<&'static str>,
    /// Per-run values, [gateway, mosquitto].
    samples: [Vec<f64>; 2],
    /// Per-run JSON results of `mqtt-bench`, [gateway, mosquitto]; empty for a derived row.
    results: [Vec<Value>; 2],
}

impl Row {
    /// A row of measured runs: medians and their plain gateway/Mosquitto ratio.
    fn measured(
        name: &'static str,
        unit: &'static str,
        better: Better,
        samples: [Vec<f64>; 2],
        results: [Vec<Value>; 2],
    ) -> Row {
        let gateway = median_or_nan(&samples[0]);
        let mosquitto = median_or_nan(&samples[1]);
        Row {
            name,
            unit,
            better,
            gateway,
            mosquitto,
            ratio: gateway / mosquitto,
            ratio_of: None,
            goal: None,
            note: None,
            samples,
            results,
        }
    }

    fn to_json(&self) -> Value {
        let mut row = json!({
            "figure": self.name,
            "unit": self.unit,
            "better": if self.better == Better::Higher { "higher" } else { "lower" },
            "gateway": self.gateway,
            "mosquitto": self.mosquitto,
            "ratio": self.ratio,
            "gateway_samples": self.samples[0],
            "mosquitto_samples": self.samples[1],
            "gateway_results": self.results[0],
            "mosquitto_results": self.results[1],
        });
        if let Some(ratio_of) = self.ratio_of {
            row["ratio_of"] = json!(ratio_of);
        }
        if let Some(goal) = self.goal {
            row["goal"] = json!(goal);
        }
        row
    }
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

/// The table printed at the end: medians, units and ratios, each row saying which way is better
/// when that is not obvious, and what its ratio is when it is not gateway/Mosquitto.
fn render_table(rows: &[Row], runs: usize) -> String {
    let mut table = String::new();
    let _ = writeln!(
        table,
        "\n{:<32} {:>18} {:>18} {:>9}  (medians of {runs} runs; ratio = gateway/Mosquitto)",
        "figure", "gateway", "mosquitto", "ratio"
    );
    for row in rows {
        let note = match (row.note, row.better) {
            (Some(note), _) => format!("  ({note})"),
            (None, Better::Lower) => "  (lower is better)".to_string(),
            (None, Better::Higher) => String::new(),
        };
        let _ = writeln!(
            table,
            "{:<32} {:>12} {:<5} {:>12} {:<5} {:>8}x{note}",
            row.name,
            number(row.gateway),
            row.unit,
            number(row.mosquitto),
            row.unit,
            ratio(row.ratio),
        );
    }
    table
}

/// A figure with one decimal, or two below 10 (milliseconds, kilobytes, ratios).
fn number(value: f64) -> String {
    if value.abs() < 10.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.1}")
    }
}

/// A ratio with two decimals, or with its first significant digits when it is that small.
fn ratio(value: f64) -> String {
    if value != 0.0 && value.abs() < 0.01 {
        format!("{value:.1e}")
    } else {
        format!("{value:.2}")
    }
}

/// What the numbers were measured on.
fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let mosquitto = Command::new("mosquitto")
        .arg("-h")
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default();
    json!({ "cpu": cpu, "cores": cores, "mosquitto": mosquitto })
}

/// A horizontal bar chart of the ratios on a log scale, 1x marked; each bar says whether the
/// figure is better higher or lower. A bar is green when it beats parity, or, for a row with a
/// goal of its own (the gateway's WebSocket over its TCP), when it meets that goal.
fn ratio_chart(rows: &[Value]) -> String {
    let width = 760.0;
    let left = 260.0;
    let row_height = 28.0;
    let height = 50.0 + row_height * rows.len() as f64;
    let span = width - left - 60.0;
    // log10 scale from 0.1x to 100x.
    let x = |ratio: f64| left + span * ((ratio.clamp(0.1, 100.0).log10() + 1.0) / 3.0);
    let mut svg = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' \
         font-family='sans-serif' font-size='12'>\n<rect width='100%' height='100%' fill='white'/>\n\
         <text x='10' y='20' font-size='14'>gateway / Mosquitto (log scale, 1x = parity)</text>\n"
    );
    for tick in [0.1, 1.0, 10.0, 100.0] {
        let _ = writeln!(
            svg,
            "<line x1='{0}' x2='{0}' y1='30' y2='{1}' stroke='#ccc'/><text x='{0}' y='{2}' text-anchor='middle'>{tick}x</text>",
            x(tick),
            height - 15.0,
            height - 3.0
        );
    }
    for (index, row) in rows.iter().enumerate() {
        let ratio = row["ratio"].as_f64().unwrap_or(1.0);
        let lower_better = row["better"] == "lower";
        let goal = row["goal"].as_f64().unwrap_or(1.0);
        let good = if lower_better {
            ratio <= goal
        } else {
            ratio >= goal
        };
        let y = 35.0 + row_height * index as f64;
        let (from, to) = (x(1.0).min(x(ratio)), x(1.0).max(x(ratio)));
        let _ = writeln!(
            svg,
            "<text x='10' y='{ty}'>{name}{hint}</text><rect x='{from}' y='{y}' width='{w}' height='18' fill='{color}'/><text x='{tx}' y='{ty}'>{ratio:.2}x</text>",
            ty = y + 13.0,
            name = row["figure"].as_str().unwrap_or(""),
            hint = if let Some(goal) = row["goal"].as_f64() {
                format!(" (goal {goal}x)")
            } else if lower_better {
                " (lower better)".to_string()
            } else {
                String::new()
            },
            w = (to - from).max(1.0),
            color = if good { "#2a9d5c" } else { "#d1495b" },
            tx = to + 4.0,
        );
    }
    svg.push_str("</svg>\n");
    svg
}
