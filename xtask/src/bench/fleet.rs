//! The fleet rows of `cargo xtask bench` (`--only fleet`): the workload the gateway exists for.
//! 10,000 devices (1,000 with `--quick`), each on its own MQTT connection over TCP, publish one
//! QoS 1 JSON message a second to `fleet/<id>/telemetry`, and 5 dashboards subscribed to
//! `fleet/#` over WebSocket receive all of it (`mqtt-bench fleet`, see bench/src/fleet.rs for
//! the load: the ramp, the phases, one message in flight per device, how loss is counted).
//!
//! Rows, each the median over the runs: the broker's CPU over the measured window (utime +
//! stime from `/proc/PID/stat`, % of one core), its VmRSS at the end of the window, and the
//! publish-to-dashboard latency p50 and p99 of the messages sent in the window. Every run also
//! checks that every dashboard got every message: each run's line says how many were lost or
//! came twice, the results in latest.json keep the counts, and a loss is reported after the
//! runs (it does not stop the benchmark: a broker that drops messages is a finding).
//!
//! The brokers are the gateway, Mosquitto and the peers of `--peers`, a column each; each is
//! started fresh for each round, so that no earlier load leaves its memory behind, and the
//! order alternates between runs (forwards, then backwards). A peer that fails to start or
//! fails the load has a cell that says why. Each broker's `Max open files` must exceed the
//! fleet by [`SPARE_DESCRIPTORS`], checked as for the crowds.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::brokers::{Broker, run_load};
use super::crowds::open_files_limit;
use super::peers::{Contender, Peer, contenders, failure};
use super::report::{Better, Cell, Row};

/// Descriptors a broker needs besides one per connection: listeners, the store, standard
/// streams, the dashboards.
const SPARE_DESCRIPTORS: u64 = 200;

/// Dashboards (WebSocket subscribers on `fleet/#`).
const DASHBOARDS: u64 = 5;

/// The fleet's size and timeline, and the names of its rows.
struct Load {
    devices: u64,
    warmup: u64,
    seconds: u64,
    cpu: &'static str,
    rss: &'static str,
    p50: &'static str,
    p99: &'static str,
}

impl Load {
    fn new(quick: bool) -> Load {
        if quick {
            Load {
                devices: 1_000,
                warmup: 3,
                seconds: 10,
                cpu: "fleet 1,000 devices: broker CPU",
                rss: "fleet 1,000 devices: broker RSS",
                p50: "fleet 1,000 devices: latency p50",
                p99: "fleet 1,000 devices: latency p99",
            }
        } else {
            Load {
                devices: 10_000,
                warmup: 10,
                seconds: 30,
                cpu: "fleet 10,000 devices: broker CPU",
                rss: "fleet 10,000 devices: broker RSS",
                p50: "fleet 10,000 devices: latency p50",
                p99: "fleet 10,000 devices: latency p99",
            }
        }
    }

    fn args(&self, pid: u32) -> Vec<String> {
        [
            "fleet".to_string(),
            "--devices".into(),
            self.devices.to_string(),
            "--subscribers".into(),
            DASHBOARDS.to_string(),
            "--warmup".into(),
            self.warmup.to_string(),
            "--seconds".into(),
            self.seconds.to_string(),
            "--pid".into(),
            pid.to_string(),
        ]
        .to_vec()
    }
}

/// The fields of `mqtt-bench fleet`'s result that make the rows, with a short label for the
/// per-run line, the row's unit and the factor from the result's unit to the row's.
const FIGURES: [(&str, &str, &str, f64); 4] = [
    ("broker_cpu_percent", "cpu", "%", 1.0),
    ("broker_rss_kb", "rss", "MB", 1.0 / 1024.0),
    ("p50_us", "p50", "us", 1.0),
    ("p99_us", "p99", "us", 1.0),
];

/// The fleet rows, a column per broker (the gateway, Mosquitto, then `peers`): broker CPU (%),
/// RSS (MB), latency p50 and p99 (us).
pub fn rows(quick: bool, runs: usize, dir: &Path, peers: &[Peer]) -> Result<Vec<Row>> {
    let brokers = contenders(peers);
    let load = Load::new(quick);
    let needed = load.devices + DASHBOARDS + SPARE_DESCRIPTORS;
    // samples[figure][broker], results[broker]: in the order of `brokers`.
    let mut samples = vec![vec![Vec::new(); brokers.len()]; FIGURES.len()];
    let mut results: Vec<Vec<Value>> = vec![Vec::new(); brokers.len()];
    let mut failed: Vec<Option<String>> = vec![None; brokers.len()];
    let mut losses = Vec::new();
    for run in 0..runs {
        let mut order: Vec<usize> = (0..brokers.len()).collect();
        if run % 2 == 1 {
            order.reverse();
        }
        for slot in order {
            let contender = brokers[slot];
            let mut broker = match contender.start_plain(dir)? {
                Ok(broker) => broker,
                Err(why) => {
                    failed[slot] = Some(why);
                    continue;
                }
            };
            let limit = check_limit(&broker, needed)?;
            let args = load.args(broker.child.id());
            let mut result = match run_load(&broker, &args) {
                Ok(result) => result,
                Err(error) if matches!(contender, Contender::Peer(_)) => {
                    failed[slot] = Some(failure(&mut broker, "under the fleet", &error));
                    continue;
                }
                Err(error) => {
                    return Err(error.context(format!("{} under the fleet", broker.name)));
                }
            };
            result["max_open_files"] = json!(limit);
            let lost = result["lost"].as_u64().context("no lost")?;
            let duplicates = result["duplicates"].as_u64().context("no duplicates")?;
            let mut line = format!("run {}/{runs} fleet {:<9}", run + 1, broker.name);
            for (figure, &(field, label, unit, factor)) in FIGURES.iter().enumerate() {
                let value = result[field]
                    .as_f64()
                    .with_context(|| format!("no {field} in {result}"))?
                    * factor;
                line.push_str(&format!("  {label}={value:.1} {unit}"));
                samples[figure][slot].push(value);
            }
            // The generator shares the machine: its CPU and the devices' skipped ticks say
            // whether the broker kept up.
            println!(
                "{line}  sent={} lost={lost} duplicates={duplicates} missed_ticks={} \
                 mqtt-bench cpu={:.1} %",
                result["sent"],
                result["missed_ticks"],
                result["bench_cpu_percent"].as_f64().unwrap_or(f64::NAN)
            );
            if lost > 0 || duplicates > 0 {
                losses.push(format!(
                    "{} (run {}): {lost} lost, {duplicates} twice, of {} sent to each of \
                     {DASHBOARDS} dashboards",
                    broker.name,
                    run + 1,
                    result["sent"]
                ));
            }
            results[slot].push(result);
        }
    }
    if losses.is_empty() {
        println!("fleet: every dashboard got every message once, in every run");
    } else {
        println!(
            "note: fleet: messages lost or duplicated: {}",
            losses.join("; ")
        );
    }
    let rows = [load.cpu, load.rss, load.p50, load.p99]
        .into_iter()
        .zip(FIGURES)
        .zip(samples)
        .map(|((name, (_, _, unit, _)), samples)| {
            let cells = brokers
                .iter()
                .zip(samples)
                .zip(&results)
                .zip(&failed)
                .map(|(((broker, samples), results), failed)| match failed {
                    Some(why) if samples.is_empty() => Cell::missing(broker.name(), why.clone()),
                    _ => Cell::new(broker.name(), samples, results.clone()),
                })
                .collect();
            Row::of(name, unit, Better::Lower, cells)
        })
        .collect();
    Ok(rows)
}

/// Fails unless `broker` may open `needed` files; returns its limit.
fn check_limit(broker: &Broker, needed: u64) -> Result<u64> {
    let limit = open_files_limit(&broker.child.id().to_string())?;
    if limit < needed {
        bail!(
            "{} may open {limit} files, fewer than the {needed} the fleet needs (raise \
             `ulimit -n`, or run with --quick)",
            broker.name
        );
    }
    Ok(limit)
}

/// How the fleet rows are run, for latest.json.
pub fn report(quick: bool) -> Value {
    let load = Load::new(quick);
    json!({
        "devices": load.devices,
        "dashboards": DASHBOARDS,
        "load": "mqtt-bench fleet: devices over TCP (MQTT 3.1.1, keep alive 60 s, connected \
                 at 1000/s), each publishing one QoS 1 JSON message a second on \
                 fleet/<id>/telemetry at its own phase of the second, PUBACK awaited (one in \
                 flight); dashboards over WebSocket on fleet/# at QoS 1",
        "timeline": format!(
            "ramp, {} s warm-up, {} s measured window, drain until nothing arrives for 3 s",
            load.warmup, load.seconds
        ),
        "figures": "broker utime + stime over the window (% of one core), VmRSS at its end; \
                    latency from the send time in the payload to the dashboard's decoding, \
                    messages sent in the window, all dashboards; lost = sent and never \
                    received, summed over dashboards",
        "brokers": "each freshly started, alone, one round per broker per run, forwards then \
                    backwards; the gateway with its defaults, Mosquitto and the peers with the \
                    bench's configurations",
        "limits": format!(
            "each broker's Max open files at least devices + {DASHBOARDS} + \
             {SPARE_DESCRIPTORS}, checked; each result has it as max_open_files"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both fleets fit under the usual limit of 20,000 files per process, with room to spare.
    #[test]
    fn the_fleets_fit_under_twenty_thousand_files() {
        for quick in [false, true] {
            assert!(Load::new(quick).devices + DASHBOARDS + SPARE_DESCRIPTORS <= 20_000);
        }
    }
}
