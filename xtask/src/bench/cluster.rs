//! `cargo xtask bench --cluster`: what crossing nodes costs. The same loads of `mqtt-bench`
//! run against one gateway alone (no `--cluster`: the baseline) and against a cluster of three
//! on this machine (Debian's nats-server with JetStream, then nodes a, b and c joined to it, as
//! `cargo xtask cluster` starts them), interleaved (single then cluster, then the other way
//! round), `--runs` times (3, or 1 with `--quick`). Every client of a cluster load is placed so
//! that each message crosses nodes:
//! - fan-in: one `#` subscriber on a, four publishers on b and c (two each), QoS 0 and QoS 1;
//! - fan-out: one publisher on a, ten subscribers on b and c (five each), QoS 0 and QoS 1;
//! - latency: 1,000 msg/s for 5 s (2 s with `--quick`) from a publisher on b to a subscriber
//!   on a, QoS 0, p50 and p99.
//!
//! The baseline runs the same clients on its one node. Both wait for interest before the load
//! (`mqtt-bench --sub-addr/--pub-addr`: probes until every subscriber has one from every
//! publishers' node; on one node the first probe arrives at once), so that no message is sent
//! before a subscription has reached the other nodes.
//!
//! The loads are bounded: a fixed number of messages, QoS 1 with a window of 64 in flight per
//! publisher, and the throughput loads gated (`mqtt-bench --ahead 10000`: the publishers stay
//! at most 10,000 messages ahead of their slowest subscriber; the same on the single node).
//! Delivery across nodes is NATS core's, at most once, and a QoS 1 PUBACK from the publisher's
//! node does not wait for the other nodes, so a load at full speed overruns the nodes' bounded
//! queues and loses messages at either QoS (measured: more than half of a QoS 0 fan-in, more
//! than a third of a QoS 1 one); gated, it measures what the cluster carries. One row runs the QoS 0
//! fan-in at full speed, not gated, to keep showing what overload loses. Every row says how
//! many messages the single node and the cluster lost, as the subscribers counted them; each
//! cluster result also records the nodes' link counters during the run (`cluster_links`:
//! `mqtt_cluster_forwarded_total`, `_received_total`, `_dropped_total`, summed over the nodes).
//! The throughput figures count what arrived, until the last arrival.
//!
//! The table gives medians and the ratio cluster/single; the whole report, with every run's
//! result, goes to `target/bench/cluster.json` (latest.json stays the broker comparison's).

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::report::{machine, median_or_nan};
use crate::gateway::{self, ReleaseGateway};
use crate::{cluster, prerequisites, process};

/// The cluster's nodes, as `cargo xtask cluster` names them.
const NODES: usize = 3;

/// Which of the two setups a load runs against.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Setup {
    /// One gateway, no `--cluster`.
    Single,
    /// nats-server and nodes a, b, c.
    Cluster,
}

/// What each cluster run records of the nodes' `/metrics` (the increase during the run, summed
/// over the nodes): messages handed to NATS, messages from other nodes handed to a broker (a
/// message forwarded once counts once per node it reaches), and messages a link dropped.
const LINK_COUNTERS: [&str; 3] = [
    "mqtt_cluster_forwarded_total",
    "mqtt_cluster_received_total",
    "mqtt_cluster_dropped_total",
];

/// Node indexes in the cluster: a, b, c.
const A: usize = 0;
const B: usize = 1;
const C: usize = 2;

/// One load of the table: its `mqtt-bench` arguments, which nodes its subscribers and its
/// publishers use in the cluster, and the figures read from its result.
struct Load {
    /// The rows' names start with this.
    name: &'static str,
    args: Vec<String>,
    /// Nodes of the subscribers and of the publishers in the cluster, spread in turn.
    subscribers_on: &'static [usize],
    publishers_on: &'static [usize],
    /// (row name suffix, JSON field, unit, higher is better).
    figures: &'static [(&'static str, &'static str, &'static str, bool)],
}

const THROUGHPUT: &[(&str, &str, &str, bool)] = &[("", "messages_per_second", "msg/s", true)];
const LATENCY: &[(&str, &str, &str, bool)] = &[
    (" p50", "p50_us", "us", false),
    (" p99", "p99_us", "us", false),
];

/// `mqtt-bench --ahead`: the throughput loads' publishers stay at most this many messages
/// ahead of their slowest subscriber. Far below what the nodes' queues hold (65,536 forwards
/// waiting for NATS, 4,096 arrivals from it), and about 50 ms of the cluster's fan-in here, so
/// that the figure is what crosses without overrunning them, not capped by the gate.
const AHEAD: &str = "10000";

fn loads(quick: bool) -> Vec<Load> {
    let scale = |full: u64, small: u64| if quick { small } else { full }.to_string();
    // `gated`: with `--ahead AHEAD`.
    let throughput = |name, mode: &str, qos: &str, clients: (&str, &str), gated: bool| {
        let (subscribers_on, publishers_on): (&'static [usize], &'static [usize]) =
            if mode == "fanin" {
                (&[A], &[B, C])
            } else {
                (&[B, C], &[A])
            };
        // Per publisher in fan-in, per stream in fan-out.
        let messages = match (mode, qos) {
            ("fanin", "0") => scale(100_000, 10_000),
            ("fanin", _) => scale(50_000, 5_000),
            (_, "0") => scale(50_000, 5_000),
            _ => scale(20_000, 2_000),
        };
        let mut args: Vec<String> = [
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
        .to_vec();
        if gated {
            args.extend(["--ahead".into(), AHEAD.into()]);
        }
        Load {
            name,
            args,
            subscribers_on,
            publishers_on,
            figures: THROUGHPUT,
        }
    };
    let fan_in = ("--publishers", "4");
    let fan_out = ("--subscribers", "10");
    vec![
        throughput(
            "fan-in QoS 0 (4 publishers on b, c; subscriber on a)",
            "fanin",
            "0",
            fan_in,
            true,
        ),
        throughput(
            "fan-in QoS 1 (4 publishers on b, c; subscriber on a)",
            "fanin",
            "1",
            fan_in,
            true,
        ),
        throughput(
            "fan-out QoS 0 (publisher on a; 10 subscribers on b, c)",
            "fanout",
            "0",
            fan_out,
            true,
        ),
        throughput(
            "fan-out QoS 1 (publisher on a; 10 subscribers on b, c)",
            "fanout",
            "1",
            fan_out,
            true,
        ),
        throughput(
            "fan-in QoS 0 not gated (publishers at full speed)",
            "fanin",
            "0",
            fan_in,
            false,
        ),
        Load {
            name: "latency at 1,000 msg/s (b to a)",
            args: [
                "latency",
                "--rate",
                "1000",
                "--seconds",
                if quick { "2" } else { "5" },
            ]
            .map(String::from)
            .to_vec(),
            subscribers_on: &[A],
            publishers_on: &[B],
            figures: LATENCY,
        },
    ]
}

/// The processes of both setups, ended by PID when dropped.
struct Gateways {
    single: ReleaseGateway,
    nats: Child,
    nodes: Vec<(String, ReleaseGateway)>,
}

impl Gateways {
    fn start(dir: &Path) -> Result<Gateways> {
        let single = gateway::start_release(dir, "single", &[])?;
        let nats_dir = dir.join("nats");
        let _ = std::fs::remove_dir_all(&nats_dir);
        let (mut nats, nats_port) = match cluster::spawn_nats(dir) {
            Ok(started) => started,
            Err(error) => {
                stop(single.child);
                return Err(error);
            }
        };
        let mut nodes = Vec::new();
        if let Err(error) = cluster::start_nodes(dir, nats_port, NODES, &mut nodes) {
            cluster::stop(&mut nats, &mut nodes);
            stop(single.child);
            return Err(error);
        }
        let gateways = Gateways {
            single,
            nats,
            nodes,
        };
        gateways.await_links()?;
        Ok(gateways)
    }

    /// Waits (at most 10 s) until every node says on /metrics that it is connected to NATS.
    fn await_links(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        for (name, node) in &self.nodes {
            loop {
                let connected = sample(&metrics(node.http_port)?, "mqtt_cluster_connected");
                if connected == Some(1.0) {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("node {name} did not connect to nats-server within 10 s");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// `--sub-addr`/`--pub-addr` arguments placing `load`'s clients on `setup`.
    fn placement(&self, setup: Setup, load: &Load) -> Vec<String> {
        let address = |port: u16| format!("127.0.0.1:{port}");
        let mut args = Vec::new();
        match setup {
            Setup::Single => {
                let single = address(self.single.tcp_port);
                args.extend([
                    "--sub-addr".into(),
                    single.clone(),
                    "--pub-addr".into(),
                    single,
                ]);
            }
            Setup::Cluster => {
                for (flag, nodes) in [
                    ("--sub-addr", load.subscribers_on),
                    ("--pub-addr", load.publishers_on),
                ] {
                    for &node in nodes {
                        args.push(flag.into());
                        args.push(address(self.nodes[node].1.tcp_port));
                    }
                }
            }
        }
        args
    }

    /// The cluster links' counters so far ([`LINK_COUNTERS`]), each summed over the nodes.
    fn link_counters(&self) -> Result<[f64; 3]> {
        let mut totals = [0.0; 3];
        for (name, node) in &self.nodes {
            let page = metrics(node.http_port)?;
            for (total, counter) in totals.iter_mut().zip(LINK_COUNTERS) {
                *total += sample(&page, counter)
                    .with_context(|| format!("node {name} has no {counter}"))?;
            }
        }
        Ok(totals)
    }
}

impl Drop for Gateways {
    fn drop(&mut self) {
        cluster::stop(&mut self.nats, &mut self.nodes);
        let _ = self.single.child.kill();
        let _ = self.single.child.wait();
    }
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// One figure's medians and every run's result, per setup ([single, cluster]).
struct Row {
    name: String,
    unit: &'static str,
    higher_is_better: bool,
    samples: [Vec<f64>; 2],
    /// Messages the subscribers missed, and those they were to receive, summed over the runs.
    lost: [u64; 2],
    expected: [u64; 2],
    /// What the cluster's links counted as dropped during the runs.
    link_dropped: f64,
    results: [Vec<Value>; 2],
}

impl Row {
    fn medians(&self) -> [f64; 2] {
        [
            median_or_nan(&self.samples[0]),
            median_or_nan(&self.samples[1]),
        ]
    }

    fn to_json(&self) -> Value {
        let [single, cluster] = self.medians();
        json!({
            "figure": self.name,
            "unit": self.unit,
            "better": if self.higher_is_better { "higher" } else { "lower" },
            "single": single,
            "cluster": cluster,
            "ratio": cluster / single,
            "ratio_of": "cluster / single",
            "single_samples": self.samples[0],
            "cluster_samples": self.samples[1],
            "single_lost": self.lost[0],
            "single_expected": self.expected[0],
            "cluster_lost": self.lost[1],
            "cluster_expected": self.expected[1],
            "cluster_link_dropped": self.link_dropped,
            "single_results": self.results[0],
            "cluster_results": self.results[1],
        })
    }
}

/// Builds, starts both setups, runs every load `runs` times on each, prints the table and
/// writes `target/bench/cluster.json`.
pub fn run(quick: bool, runs: usize) -> Result<()> {
    prerequisites::ensure_debian_packages()?;
    process::run(process::cargo().args(["build", "--release", "-p", "gateway", "-p", "bench"]))?;
    let bench_dir = process::target_dir().join("bench");
    let dir = bench_dir.join("cluster");
    std::fs::create_dir_all(&dir)?;
    let loads = loads(quick);
    let mut rows: Vec<Row> = loads
        .iter()
        .flat_map(|load| {
            load.figures.iter().map(|&(suffix, _, unit, higher)| Row {
                name: format!("{}{suffix}", load.name),
                unit,
                higher_is_better: higher,
                samples: [Vec::new(), Vec::new()],
                lost: [0, 0],
                expected: [0, 0],
                link_dropped: 0.0,
                results: [Vec::new(), Vec::new()],
            })
        })
        .collect();
    {
        let gateways = Gateways::start(&dir)?;
        println!(
            "single gateway: mqtt 127.0.0.1:{}; cluster nodes: {}",
            gateways.single.tcp_port,
            gateways
                .nodes
                .iter()
                .map(|(name, node)| format!("{name} 127.0.0.1:{}", node.tcp_port))
                .collect::<Vec<_>>()
                .join(", ")
        );
        for run in 0..runs {
            let mut first_row = 0;
            for (index, load) in loads.iter().enumerate() {
                let order = if (run + index) % 2 == 0 {
                    [Setup::Single, Setup::Cluster]
                } else {
                    [Setup::Cluster, Setup::Single]
                };
                for setup in order {
                    let slot = usize::from(setup == Setup::Cluster);
                    let before = gateways.link_counters()?;
                    let mut args = gateways.placement(setup, load);
                    args.extend(load.args.iter().cloned());
                    let mut result = mqtt_bench(&args)?;
                    let after = gateways.link_counters()?;
                    let [forwarded, received, link_dropped] =
                        [0, 1, 2].map(|index| after[index] - before[index]);
                    if setup == Setup::Cluster {
                        result["cluster_links"] = json!({
                            "forwarded": forwarded,
                            "received": received,
                            "dropped": link_dropped,
                        });
                    }
                    let (lost, expected) = losses(&result)?;
                    for (offset, &(_, field, unit, _)) in load.figures.iter().enumerate() {
                        let value = result[field]
                            .as_f64()
                            .with_context(|| format!("no {field} in {result}"))?;
                        let row = &mut rows[first_row + offset];
                        println!(
                            "run {}/{runs} {:<60} {:<7} {value:>12.1} {unit}  lost {lost} of \
                             {expected}",
                            run + 1,
                            row.name,
                            if slot == 0 { "single" } else { "cluster" },
                        );
                        row.samples[slot].push(value);
                        row.results[slot].push(result.clone());
                        row.lost[slot] += lost;
                        row.expected[slot] += expected;
                        if setup == Setup::Cluster {
                            row.link_dropped += link_dropped;
                        }
                    }
                    if lost > 0 {
                        println!(
                            "  note: {lost} of {expected} messages lost on the {}{}",
                            if slot == 0 { "single node" } else { "cluster" },
                            if slot == 1 {
                                format!(" (its links counted {link_dropped} dropped)")
                            } else {
                                String::new()
                            }
                        );
                    }
                }
                first_row += load.figures.len();
            }
        }
    }
    print!("{}", render_table(&rows, runs));
    let report = json!({
        "runs": runs,
        "quick": quick,
        "machine": machine(),
        "nodes": NODES,
        "nats_server": process::probe(process::command("nats-server").arg("--version")),
        "figures": rows.iter().map(Row::to_json).collect::<Vec<_>>(),
    });
    let path = bench_dir.join("cluster.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
    println!("wrote {}", path.display());
    Ok(())
}

/// Messages lost and expected in one result: a throughput result's `lost` and `expected`, a
/// latency result's `sent` less `received`.
fn losses(result: &Value) -> Result<(u64, u64)> {
    let field = |name: &str| {
        result[name]
            .as_u64()
            .with_context(|| format!("no {name} in {result}"))
    };
    if result["mode"] == "latency" {
        let sent = field("sent")?;
        Ok((sent.saturating_sub(field("received")?), sent))
    } else {
        Ok((field("lost")?, field("expected")?))
    }
}

/// The table: medians of each setup, the ratio cluster/single, and the losses of each.
fn render_table(rows: &[Row], runs: usize) -> String {
    let width = rows.iter().map(|row| row.name.len()).max().unwrap_or(0);
    let mut table = String::new();
    let _ = writeln!(
        table,
        "\n{:<width$} {:>16} {:>16} {:>7}  lost (single; {NODES} nodes)   (medians of {runs} \
         runs; ratio = {NODES} nodes / single)",
        "figure",
        "single node",
        format!("{NODES} nodes"),
        "ratio"
    );
    for row in rows {
        let [single, cluster] = row.medians();
        let lower = if row.higher_is_better {
            ""
        } else {
            "  (lower is better)"
        };
        let _ = writeln!(
            table,
            "{:<width$} {:>10.1} {:<5} {:>10.1} {:<5} {:>6.2}x  {} of {}; {} of {}{lower}",
            row.name,
            single,
            row.unit,
            cluster,
            row.unit,
            cluster / single,
            row.lost[0],
            row.expected[0],
            row.lost[1],
            row.expected[1],
        );
    }
    table
}

/// Runs `target/release/mqtt-bench` with `args` (at most 60 s of counting) and returns its
/// JSON result.
fn mqtt_bench(args: &[String]) -> Result<Value> {
    let mut command = process::command(process::target_dir().join("release/mqtt-bench"));
    command.args(["--timeout", "60"]).args(args);
    let output = command
        .stderr(Stdio::inherit())
        .output()
        .context("running mqtt-bench")?;
    if !output.status.success() {
        bail!("`{}` failed", process::display(&command));
    }
    serde_json::from_slice(&output.stdout).context("mqtt-bench printed no JSON")
}

/// The gateway's `/metrics` page at `http_port`, with the response's head. HTTP/1.1 by hand
/// over loopback: one GET, the connection closed by the server after the answer.
fn metrics(http_port: u16) -> Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", http_port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut page = String::new();
    stream
        .read_to_string(&mut page)
        .context("reading /metrics")?;
    Ok(page)
}

/// The value of the sample `name` without labels in Prometheus text.
fn sample(page: &str, name: &str) -> Option<f64> {
    page.lines().find_map(|line| {
        line.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|value| value.trim().parse().ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every cluster load places its subscribers and its publishers on different nodes, so that
    /// each message crosses; the rows are named after where the clients are.
    #[test]
    fn every_cluster_load_crosses_nodes() {
        for quick in [false, true] {
            for load in loads(quick) {
                assert!(!load.subscribers_on.is_empty() && !load.publishers_on.is_empty());
                for node in load.subscribers_on {
                    assert!(!load.publishers_on.contains(node), "{}", load.name);
                }
            }
        }
    }

    /// A sample's value is read from its own line, not from a longer name that starts alike.
    #[test]
    fn reads_a_sample_by_its_whole_name() {
        let page = "# TYPE mqtt_cluster_dropped_total counter\n\
                    mqtt_cluster_dropped_total_extra 7\n\
                    mqtt_cluster_dropped_total 3\n\
                    mqtt_cluster_connected 1\n";
        assert_eq!(sample(page, "mqtt_cluster_dropped_total"), Some(3.0));
        assert_eq!(sample(page, "mqtt_cluster_connected"), Some(1.0));
        assert_eq!(sample(page, "mqtt_cluster_received_total"), None);
    }
}
