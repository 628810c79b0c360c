//! The dashboard's figures in `cargo xtask bench` (`--only dashboard` runs just them):
//! `bench/browser/dashboard.mjs` (a release gateway with the dashboard embedded, the dashboard
//! in headless Chromium subscribed to `load/#`, a publisher over TCP sending `{"temp", "hum"}`
//! to 20 topics, so 40 series, at 1,000 and then 10,000 msg/s) run `runs` times, each figure's
//! median printed per rate and the runs kept for latest.json. The frame intervals are the
//! page's requestAnimationFrame intervals over 10 s of each rate, after a 60 s warm-up (the
//! charts' default window, so that they draw as much as they will).
//!
//! The goal: frame interval p95 at most 20 ms (at least 50 frames/s) at 10,000 msg/s. The bench
//! says whether the median met it and never fails for it; a run fails (and is left out) only
//! when it did not measure what it announces: a publisher that could not hold its rate, a page
//! that did not count every message published or did not make the 40 series.
//!
//! The gateway alone serves the dashboard, so there is no Mosquitto column and no row in the
//! ratio table.

use super::report::{median_or_nan, number};
use crate::{dist, process};
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// The rates the script measures, in its order (msg/s over all 20 topics).
const RATES: [u64; 2] = [1_000, 10_000];

/// The rate of the goal and its frame interval p95 bound.
const GOAL_RATE: u64 = 10_000;
const GOAL_P95_MS: f64 = 20.0;

/// The figures printed per rate, as JSON pointers into a rate's report, with their units.
const FIGURES: [(&str, &str, &str); 14] = [
    ("frames in the 10 s window", "/frames", ""),
    ("frame interval p50", "/frame_interval_ms/p50", "ms"),
    ("frame interval p95", "/frame_interval_ms/p95", "ms"),
    ("frame interval max", "/frame_interval_ms/max", "ms"),
    ("frame work p95", "/frame_work_ms/p95", "ms"),
    ("long tasks", "/long_tasks", ""),
    ("long tasks' share of the window", "/long_task_percent", "%"),
    ("messages published", "/published", ""),
    ("messages received", "/received", ""),
    (
        "publisher's achieved rate",
        "/publisher/achieved_rate",
        "msg/s",
    ),
    ("publisher's worst lateness", "/publisher/max_lag_ms", "ms"),
    (
        "page's rate in the window",
        "/received_per_second_in_window",
        "msg/s",
    ),
    (
        "caught up after the publisher",
        "/caught_up_seconds_after_publisher",
        "s",
    ),
    ("JS heap after GC", "/js_heap_mib", "MiB"),
];

/// Longest a run of the script may take: two rates of about 75 s each, plus each page's time to
/// catch up (at most 60 s each in the script).
const RUN_TIMEOUT_SECONDS: &str = "360";

/// Runs the dashboard's load `runs` times and prints the medians per rate and the goal; returns
/// the runs' reports for latest.json. A failed run is reported and left out.
pub fn run(runs: usize) -> Result<Value> {
    let root = process::root();
    if !root.join("www/dist/index.html").exists() {
        println!("www/dist is missing: building it");
        dist::run()?;
    }
    // The gateway embeds www/dist when built; cargo rebuilds it when the dist changed.
    process::run(process::cargo().args(["build", "--release", "-p", "gateway"]))?;
    println!(
        "\ndashboard: subscribed to load/#, 20 topics of {{temp, hum}} (40 series), \
         frame intervals over 10 s at 1,000 and at 10,000 msg/s"
    );
    let mut reports = Vec::new();
    for run in 1..=runs {
        match run_once() {
            Ok(report) => {
                for rate in RATES {
                    let at = |pointer, unit| shown(figure(&report, rate, pointer), unit);
                    println!(
                        "run {run}/{runs} dashboard at {rate:>6} msg/s  {} frames, interval p50 {} \
                         p95 {} max {} ms, frame work p95 {} ms, {}/{} messages, publisher at \
                         most {} ms late",
                        at("/frames", ""),
                        at("/frame_interval_ms/p50", "ms"),
                        at("/frame_interval_ms/p95", "ms"),
                        at("/frame_interval_ms/max", "ms"),
                        at("/frame_work_ms/p95", "ms"),
                        at("/received", ""),
                        at("/published", ""),
                        at("/publisher/max_lag_ms", "ms"),
                    );
                }
                reports.push(report);
            }
            Err(error) => println!("run {run}/{runs} dashboard failed, left out: {error:#}"),
        }
    }
    let medians = |rate, pointer| {
        let samples: Vec<f64> = reports
            .iter()
            .map(|report| figure(report, rate, pointer))
            .collect();
        median_or_nan(&samples)
    };
    let [low, high] = RATES.map(|rate| format!("{rate} msg/s"));
    println!(
        "\ndashboard figures (medians of {} runs) {low:>15} {high:>14}",
        reports.len()
    );
    for (name, pointer, unit) in FIGURES {
        let [low, high] = RATES.map(|rate| shown(medians(rate, pointer), unit));
        println!("  {name:<32} {low:>14} {high:>14} {unit}");
    }
    let p95 = medians(GOAL_RATE, "/frame_interval_ms/p95");
    let verdict = if p95 <= GOAL_P95_MS {
        "met"
    } else if p95.is_nan() {
        "not measured"
    } else {
        "not met"
    };
    println!(
        "  goal: frame interval p95 <= {GOAL_P95_MS} ms (>= 50 frames/s) at 10,000 msg/s: \
         median {} ms, {verdict}",
        number(p95)
    );
    Ok(json!({
        "topics": 20,
        "series": 40,
        "rates": RATES,
        "window_seconds": 10,
        "goal": {
            "rate": GOAL_RATE,
            "frame_interval_p95_ms": GOAL_P95_MS,
            "median_p95_ms": p95,
            "met": p95 <= GOAL_P95_MS,
        },
        "runs": reports,
    }))
}

/// A figure as printed: counts, rates and percentages whole, milliseconds and the rest as
/// [`number`] shows them.
fn shown(value: f64, unit: &str) -> String {
    match unit {
        "" | "msg/s" | "%" => format!("{value:.0}"),
        _ => number(value),
    }
}

/// One figure of a run's report at `rate`, NaN when absent.
fn figure(report: &Value, rate: u64, pointer: &str) -> f64 {
    report["rates"]
        .as_array()
        .and_then(|rates| rates.iter().find(|at| at["rate"].as_u64() == Some(rate)))
        .and_then(|at| at.pointer(pointer))
        .and_then(Value::as_f64)
        .unwrap_or(f64::NAN)
}

/// One run of the script: its `dashboard: {JSON}` line.
fn run_once() -> Result<Value> {
    let root = process::root();
    let output = process::command("timeout")
        .args([RUN_TIMEOUT_SECONDS, "node"])
        .arg(root.join("bench/browser/dashboard.mjs"))
        .env("GATEWAY_BIN", process::target_dir().join("release/gateway"))
        .output()
        .context("running node bench/browser/dashboard.mjs")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix("dashboard: "));
    match (output.status.success(), line) {
        (true, Some(line)) => Ok(serde_json::from_str(line)?),
        _ => bail!(
            "{}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ),
    }
}
