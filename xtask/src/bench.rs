//! `cargo xtask bench`: the gateway and Mosquitto side by side, under the same load generator
//! (`mqtt-bench`), in one run.
//!
//! Both brokers run on their own loopback ports; every mode runs against each, interleaved
//! (A B, then B A, ...), at least three times, and the table shows medians and the ratio
//! gateway/Mosquitto. Results also go to `target/bench/latest.json` and a bar chart of the
//! ratios to `target/bench/ratios.svg`. Memory per idle connection is measured on freshly
//! started brokers, so earlier loads do not leave freed memory to hide the cost.

use crate::process;
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The Mosquitto configuration: TCP_NODELAY like the gateway, unlimited queues so that QoS 1
/// loses nothing, and the same in-flight window as the gateway's default.
const MOSQUITTO_CONF: &str = "\
listener {port} 127.0.0.1
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
}

fn figures(quick: bool) -> Vec<Figure> {
    let scale = |full: u64, small: u64| if quick { small } else { full }.to_string();
    let throughput =
        |name, mode: &str, qos: &str, clients: (&str, &str), messages: String| Figure {
            name,
            args: [
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
        };
    vec![
        throughput(
            "fan-in QoS 0 (4 publishers)",
            "fanin",
            "0",
            ("--publishers", "4"),
            scale(100_000, 20_000),
        ),
        throughput(
            "fan-in QoS 1 (4 publishers)",
            "fanin",
            "1",
            ("--publishers", "4"),
            scale(50_000, 10_000),
        ),
        throughput(
            "fan-out QoS 0 (1 to 10)",
            "fanout",
            "0",
            ("--subscribers", "10"),
            scale(50_000, 10_000),
        ),
        throughput(
            "fan-out QoS 1 (1 to 10)",
            "fanout",
            "1",
            ("--subscribers", "10"),
            scale(20_000, 5_000),
        ),
        Figure {
            name: "latency p50 at 1000 msg/s",
            args: latency_args(quick),
            field: "p50_us",
            unit: "us",
            better: Better::Lower,
        },
        Figure {
            name: "latency p99 at 1000 msg/s",
            args: latency_args(quick),
            field: "p99_us",
            unit: "us",
            better: Better::Lower,
        },
        Figure {
            name: "connection rate",
            args: ["connrate", "--connections", &scale(4000, 1000)]
                .map(String::from)
                .to_vec(),
            field: "connections_per_second",
            unit: "conn/s",
            better: Better::Higher,
        },
    ]
}

fn latency_args(quick: bool) -> Vec<String> {
    let seconds = if quick { "2" } else { "5" };
    ["latency", "--rate", "1000", "--seconds", seconds]
        .map(String::from)
        .to_vec()
}

/// A broker process under test.
struct Broker {
    name: &'static str,
    child: Child,
    port: u16,
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
    };
    wait_for_port(port)?;
    Ok(broker)
}

fn start_mosquitto(dir: &Path) -> Result<Broker> {
    let port = free_port()?;
    let conf = dir.join("mosquitto.conf");
    std::fs::write(&conf, MOSQUITTO_CONF.replace("{port}", &port.to_string()))?;
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
    };
    wait_for_port(port)?;
    Ok(broker)
}

/// Runs one `mqtt-bench` mode against `port` and returns its JSON result.
fn run_load(port: u16, args: &[String]) -> Result<Value> {
    let mut command = process::command(process::target_dir().join("release/mqtt-bench"));
    command
        .args(["--addr", &format!("127.0.0.1:{port}"), "--timeout", "60"])
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

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 0 {
        (values[middle - 1] + values[middle]) / 2.0
    } else {
        values[middle]
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

/// `cargo xtask bench [--quick] [--runs N]`.
pub fn run(args: &[String]) -> Result<()> {
    let mut quick = false;
    let mut runs = None;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--runs" => runs = Some(rest.next().context("--runs needs a number")?.parse()?),
            other => bail!("unknown bench argument {other:?} (expected --quick, --runs N)"),
        }
    }
    let runs: usize = runs.unwrap_or(if quick { 1 } else { 3 });
    ensure_mosquitto()?;
    process::run(process::cargo().args(["build", "--release", "-p", "gateway", "-p", "bench"]))?;
    let dir = process::target_dir().join("bench");
    std::fs::create_dir_all(&dir)?;
    let figures = figures(quick);
    // samples[figure][broker] for broker 0 = gateway, 1 = mosquitto.
    let mut samples = vec![[Vec::new(), Vec::new()]; figures.len() + 1];

    {
        let gateway = start_gateway(&dir)?;
        let mosquitto = start_mosquitto(&dir)?;
        for run in 0..runs {
            for (index, figure) in figures.iter().enumerate() {
                let order: [&Broker; 2] = if (run + index) % 2 == 0 {
                    [&gateway, &mosquitto]
                } else {
                    [&mosquitto, &gateway]
                };
                for broker in order {
                    let result = run_load(broker.port, &figure.args)?;
                    let value = result[figure.field]
                        .as_f64()
                        .with_context(|| format!("no {} in {result}", figure.field))?;
                    if result.get("lost").and_then(Value::as_u64).unwrap_or(0) > 0 {
                        println!(
                            "  note: {} lost messages in {}: {result}",
                            broker.name, figure.name
                        );
                    }
                    let slot = usize::from(broker.name == "mosquitto");
                    samples[index][slot].push(value);
                    println!(
                        "run {}/{runs} {:<28} {:<9} {value:>12.1} {}",
                        run + 1,
                        figure.name,
                        broker.name,
                        figure.unit
                    );
                }
            }
        }
    }

    // Idle connections on fresh brokers, A B A B.
    let idle_connections = if quick { "500" } else { "2000" };
    for run in 0..runs {
        for slot in [run % 2, 1 - run % 2] {
            let broker = if slot == 0 {
                start_gateway(&dir)?
            } else {
                start_mosquitto(&dir)?
            };
            let pid = broker.child.id().to_string();
            let args = ["idle", "--connections", idle_connections, "--pid", &pid].map(String::from);
            let result = run_load(broker.port, &args)?;
            let value = result["kb_per_connection"]
                .as_f64()
                .context("no kb_per_connection")?;
            println!(
                "run {}/{runs} {:<28} {:<9} {value:>12.2} KB",
                run + 1,
                "memory per idle connection",
                broker.name
            );
            samples[figures.len()][slot].push(value);
        }
    }

    let mut rows = Vec::new();
    let mut names: Vec<(&str, &str, Better)> =
        figures.iter().map(|f| (f.name, f.unit, f.better)).collect();
    names.push(("memory per idle connection", "KB", Better::Lower));
    let mut table = String::new();
    writeln!(
        table,
        "\n{:<30} {:>14} {:>14} {:>8}  (medians of {runs} runs; ratio = gateway/Mosquitto)",
        "figure", "gateway", "mosquitto", "ratio"
    )?;
    for (index, (name, unit, better)) in names.iter().enumerate() {
        let gateway = median(&mut samples[index][0]);
        let mosquitto = median(&mut samples[index][1]);
        let ratio = gateway / mosquitto;
        writeln!(
            table,
            "{name:<30} {gateway:>10.1} {unit:<3} {mosquitto:>10.1} {unit:<3} {ratio:>7.2}x{}",
            if *better == Better::Lower {
                "  (lower is better)"
            } else {
                ""
            }
        )?;
        rows.push(json!({
            "figure": name,
            "unit": unit,
            "better": if *better == Better::Higher { "higher" } else { "lower" },
            "gateway": gateway,
            "mosquitto": mosquitto,
            "ratio": ratio,
            "gateway_samples": samples[index][0],
            "mosquitto_samples": samples[index][1],
        }));
    }
    print!("{table}");
    let report = json!({
        "runs": runs,
        "quick": quick,
        "machine": machine(),
        "mosquitto_config": MOSQUITTO_CONF,
        "figures": rows,
    });
    let json_path = dir.join("latest.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&report)?)?;
    let svg_path = dir.join("ratios.svg");
    std::fs::write(&svg_path, ratio_chart(&rows))?;
    println!("wrote {} and {}", json_path.display(), svg_path.display());
    Ok(())
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
/// figure is better higher or lower.
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
        let good = if lower_better {
            ratio <= 1.0
        } else {
            ratio >= 1.0
        };
        let y = 35.0 + row_height * index as f64;
        let (from, to) = (x(1.0).min(x(ratio)), x(1.0).max(x(ratio)));
        let _ = writeln!(
            svg,
            "<text x='10' y='{ty}'>{name}{hint}</text><rect x='{from}' y='{y}' width='{w}' height='18' fill='{color}'/><text x='{tx}' y='{ty}'>{ratio:.2}x</text>",
            ty = y + 13.0,
            name = row["figure"].as_str().unwrap_or(""),
            hint = if lower_better { " (lower better)" } else { "" },
            w = (to - from).max(1.0),
            color = if good { "#2a9d5c" } else { "#d1495b" },
            tx = to + 4.0,
        );
    }
    svg.push_str("</svg>\n");
    svg
}
