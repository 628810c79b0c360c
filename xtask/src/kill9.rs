//! `cargo xtask kill9 [--rounds N]`: the store's kill -9 loops, many times over.
//!
//! Runs the first three tests of `tests/interop/test_durability.py` (QoS 1, QoS 2, retained)
//! with `DURABILITY_ROUNDS=N` under the paho2 virtualenv: each round kills a real gateway with
//! SIGKILL in the middle of a stream of acknowledgements and checks, after a restart on the same
//! data directory, that nothing acknowledged was lost. The tests print one line per round; each
//! round also appends its counts to `target/kill9/rounds.jsonl`, which this command sums up at
//! the end (also after a failure, so the table shows the round that failed).
//!
//! The gateway is the debug build, as for the interop suite: the same binary `cargo xtask test`
//! builds (no second, minutes-long release build), with debug assertions and overflow checks
//! on, which turn a broken invariant at a crash or a recovery into a failure rather than a
//! silently wrong store. What is tested is what survives a crash, not how fast; a kill lands
//! mid-stream either way, since the tests kill after a count of acknowledgements, not a time.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::gateway;
use crate::prerequisites::VENVS;
use crate::process::{self, target_dir};

/// Rounds per test when `--rounds` is not given.
const DEFAULT_ROUNDS: u32 = 20;

/// The tests that take `DURABILITY_ROUNDS`.
const TESTS: [&str; 3] = [
    "tests/interop/test_durability.py::test_kill9_loses_no_acknowledged_qos1_message",
    "tests/interop/test_durability.py::test_kill9_loses_and_duplicates_no_qos2_message",
    "tests/interop/test_durability.py::test_kill9_loses_no_acknowledged_retained_message",
];

/// `cargo xtask kill9 [--rounds N]`.
pub fn run(args: &[String]) -> Result<()> {
    let rounds = parse_rounds(args)?;
    let paho2 = VENVS
        .iter()
        .find(|venv| venv.name == "paho2")
        .expect("a paho2 virtualenv");
    let python = paho2.python();
    if process::probe(process::command(&python).args(["-c", "import paho.mqtt, pytest"])).is_none()
    {
        bail!(
            "no paho2 virtualenv with paho-mqtt and pytest at {} (`cargo xtask test` installs it)",
            paho2.dir().display()
        );
    }
    gateway::build()?;

    let report = target_dir().join("kill9/rounds.jsonl");
    std::fs::create_dir_all(report.parent().expect("a parent directory"))?;
    let _ = std::fs::remove_file(&report);
    let mut pytest = process::command(&python);
    pytest
        .args(["-m", "pytest", "-q", "-s"])
        .args(TESTS)
        .env("GATEWAY_BIN", gateway::debug_binary())
        .env("DURABILITY_ROUNDS", rounds.to_string())
        .env("DURABILITY_REPORT", &report);
    let result = process::run(&mut pytest);

    let summary = summarize(&read_report(&report)?);
    println!("\n{summary}");
    result.context("a kill -9 round failed (see its output above)")
}

/// `--rounds N` (N at least 1), or the default.
fn parse_rounds(args: &[String]) -> Result<u32> {
    match args {
        [] => Ok(DEFAULT_ROUNDS),
        [flag, value] if flag == "--rounds" => match value.parse::<u32>() {
            Ok(rounds) if rounds >= 1 => Ok(rounds),
            _ => bail!("--rounds takes a whole number of at least 1 (got {value:?})"),
        },
        _ => bail!("usage: cargo xtask kill9 [--rounds N] (got {args:?})"),
    }
}

/// The rounds the tests reported, one JSON object per line (none if the file is missing).
fn read_report(path: &Path) -> Result<Vec<Value>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    };
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).with_context(|| format!("bad report line {line:?}")))
        .collect()
}

/// The counts of a round that the summary shows and sums, with their labels. `lost` and
/// `duplicates` are the offline subscriber's (retained: topics); `live_*` the subscriber that
/// stayed connected through the kill; `missing_after_resume` what never arrived although the
/// publisher sent it again after the restart.
const COUNTS: [(&str, &str); 7] = [
    ("acked", "acked"),
    ("received", "received"),
    ("lost", "lost"),
    ("duplicates", "duplicates"),
    ("live_lost", "connected: lost"),
    ("live_duplicates", "duplicates"),
    ("missing_after_resume", "missing after resume"),
];

/// One line per round, then one total line per test and one over everything.
fn summarize(rounds: &[Value]) -> String {
    let mut out = String::from("kill -9 rounds:\n");
    if rounds.is_empty() {
        out.push_str("  (no round finished)\n");
    }
    // Per test, in the order the tests ran: rounds and the sums of COUNTS (None: never reported).
    let mut totals: Vec<(String, u64, [Option<u64>; COUNTS.len()])> = Vec::new();
    for round in rounds {
        let test = round.get("test").and_then(Value::as_str).unwrap_or("?");
        let protocol = round.get("protocol").and_then(Value::as_str).unwrap_or("?");
        let values = COUNTS.map(|(key, _)| round.get(key).and_then(Value::as_u64));
        let number = round.get("round").and_then(Value::as_u64).unwrap_or(0);
        out.push_str(&format!("  {test:<8} round {number:>3} {protocol:<6}"));
        out.push_str(&counts_text(&values));
        out.push('\n');
        let index = match totals.iter().position(|total| total.0 == test) {
            Some(index) => index,
            None => {
                totals.push((test.to_string(), 0, [None; COUNTS.len()]));
                totals.len() - 1
            }
        };
        let total = &mut totals[index];
        total.1 += 1;
        add(&mut total.2, &values);
    }
    let mut all = [None; COUNTS.len()];
    let mut all_rounds = 0;
    for (test, count, sums) in &totals {
        out.push_str(&format!("  {test:<8} total: {count} rounds"));
        out.push_str(&counts_text(sums));
        out.push('\n');
        all_rounds += count;
        add(&mut all, sums);
    }
    out.push_str(&format!("total: {all_rounds} rounds"));
    out.push_str(&counts_text(&all));
    out
}

/// Adds `values` to `sums`, a count reported anywhere counting from 0.
fn add(sums: &mut [Option<u64>; COUNTS.len()], values: &[Option<u64>; COUNTS.len()]) {
    for (sum, value) in sums.iter_mut().zip(values) {
        if let Some(value) = value {
            *sum = Some(sum.unwrap_or(0) + value);
        }
    }
}

/// `, acked 1024, received 3000, ...` for the counts that were reported.
fn counts_text(values: &[Option<u64>; COUNTS.len()]) -> String {
    COUNTS
        .iter()
        .zip(values)
        .filter_map(|((_, label), value)| value.map(|value| format!(", {label} {value}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_default_to_20_and_take_a_positive_number() {
        assert_eq!(parse_rounds(&[]).unwrap(), 20);
        let args = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(parse_rounds(&args(&["--rounds", "3"])).unwrap(), 3);
        assert!(parse_rounds(&args(&["--rounds", "0"])).is_err());
        assert!(parse_rounds(&args(&["--rounds"])).is_err());
        assert!(parse_rounds(&args(&["3"])).is_err());
    }

    #[test]
    fn the_summary_sums_each_test_and_everything() {
        let rounds: Vec<Value> = [
            r#"{"test": "qos1", "round": 1, "protocol": "v5", "acked": 1000, "received": 3002, "lost": 0, "duplicates": 2}"#,
            r#"{"test": "qos1", "round": 2, "protocol": "v3.1.1", "acked": 1100, "received": 3000, "lost": 0, "duplicates": 0}"#,
            r#"{"test": "qos2", "round": 1, "protocol": "v3.1.1", "acked": 1001, "received": 3000, "lost": 1, "duplicates": 0, "live_lost": 0, "live_duplicates": 5}"#,
        ]
        .iter()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
        let summary = summarize(&rounds);
        assert!(
            summary.contains(
                "qos1     total: 2 rounds, acked 2100, received 6002, lost 0, duplicates 2\n"
            ),
            "{summary}"
        );
        assert!(
            summary.contains(
                "qos2     round   1 v3.1.1, acked 1001, received 3000, lost 1, duplicates 0, \
                 connected: lost 0, duplicates 5\n"
            ),
            "{summary}"
        );
        assert!(
            summary.ends_with(
                "total: 3 rounds, acked 3101, received 9002, lost 1, duplicates 2, \
                 connected: lost 0, duplicates 5"
            ),
            "{summary}"
        );
        assert_eq!(summary.lines().count(), 1 + 3 + 2 + 1, "{summary}");
    }

    #[test]
    fn no_rounds_say_so() {
        assert!(summarize(&[]).contains("(no round finished)"));
    }
}
