//! The dashboard's figures in the browser part of `cargo xtask bench`: `bench/browser/dashboard.mjs`
//! (a release gateway with the dashboard embedded, the dashboard in Chromium, a burst of 30,000
//! messages at 10,000 msg/s) run `runs` times, each figure's median printed and the runs kept
//! for latest.json. These were timing assertions of the dashboard's browser test; there they
//! could only fail on a loaded machine, here they are measured. The gateway alone serves the
//! dashboard, so there is no Mosquitto column and no row in the ratio table.

use super::report::{median_or_nan, number};
use crate::{dist, process};
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// The figures printed, as JSON pointers into the script's report, with their units.
const FIGURES: [(&str, &str, &str); 8] = [
    ("frames during the burst", "/frames", ""),
    ("frame interval p50", "/frame_interval_ms/p50", "ms"),
    ("frame interval p95", "/frame_interval_ms/p95", "ms"),
    ("frame interval max", "/frame_interval_ms/max", "ms"),
    ("frame work p95", "/frame_work_ms/p95", "ms"),
    ("long tasks", "/long_tasks", ""),
    (
        "caught up after the publisher",
        "/caught_up_seconds_after_publisher",
        "s",
    ),
    ("JS heap after GC", "/js_heap_mib", "MiB"),
];

/// Longest a run of the script may take (its own waits are bounded well within it).
const RUN_TIMEOUT_SECONDS: &str = "180";

/// Runs the dashboard burst `runs` times and prints the medians; returns the runs' reports for
/// latest.json. A failed run is reported and left out.
pub fn run(runs: usize) -> Result<Value> {
    let root = process::root();
    if !root.join("www/dist/index.html").exists() {
        println!("www/dist is missing: building it");
        dist::run()?;
    }
    // The gateway embeds www/dist when built; cargo rebuilds it when the dist changed.
    process::run(process::cargo().args(["build", "--release", "-p", "gateway"]))?;
    println!("\ndashboard: 30,000 messages at 10,000 msg/s into the dashboard (demo/#)");
    let mut reports = Vec::new();
    for run in 1..=runs {
        match run_once() {
            Ok(report) => {
                println!(
                    "run {run}/{runs} dashboard  {} frames, interval p50 {} ms max {} ms, heap {} MiB",
                    number(figure(&report, "/frames")),
                    number(figure(&report, "/frame_interval_ms/p50")),
                    number(figure(&report, "/frame_interval_ms/max")),
                    number(figure(&report, "/js_heap_mib")),
                );
                reports.push(report);
            }
            Err(error) => println!("run {run}/{runs} dashboard failed, left out: {error:#}"),
        }
    }
    println!("\ndashboard figures (medians of {} runs)", reports.len());
    for (name, pointer, unit) in FIGURES {
        let samples: Vec<f64> = reports
            .iter()
            .map(|report| figure(report, pointer))
            .collect();
        println!(
            "  {name:<32} {:>10} {unit}",
            number(median_or_nan(&samples))
        );
    }
    Ok(json!({ "messages": 30_000, "rate": 10_000, "runs": reports }))
}

/// One figure of a report, NaN when absent.
fn figure(report: &Value, pointer: &str) -> f64 {
    report
        .pointer(pointer)
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
