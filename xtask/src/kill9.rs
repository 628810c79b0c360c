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

/// One line per round, then one total line per test and one over everything.
fn summarize(rounds: &[Value]) -> String {
    let number = |round: &Value, key: &str| round.get(key).and_then(Value::as_u64).unwrap_or(0);
    let mut out = String::from("kill -9 rounds:\n");
    if rounds.is_empty() {
        out.push_str("  (no round finished)\n");
    }
    // (test, rounds, acked, received, lost, duplicates), in the order the tests ran.
    let mut totals: Vec<(String, u64, u64, u64, u64, u64)> = Vec::new();
    for round in rounds {
        let test = round.get("test").and_then(Value::as_str).unwrap_or("?");
        let protocol = round.get("protocol").and_then(Value::as_str).unwrap_or("?");
        let [acked, received, lost, duplicates] =
            ["acked", "received", "lost", "duplicates"].map(|key| number(round, key));
        out.push_str(&format!(
            "  {test:<8} round {:>3} {protocol:<6}  acked {acked:>5}  received {received:>5}  \
             lost {lost}  duplicates {duplicates}\n",
            number(round, "round"),
        ));
        let index = match totals.iter().position(|total| total.0 == test) {
            Some(index) => index,
            None => {
                totals.push((test.to_string(), 0, 0, 0, 0, 0));
                totals.len() - 1
            }
        };
        let total = &mut totals[index];
        total.1 += 1;
        total.2 += acked;
        total.3 += received;
        total.4 += lost;
        total.5 += duplicates;
    }
    let mut all = (0, 0, 0, 0, 0);
    for (test, count, acked, received, lost, duplicates) in &totals {
        out.push_str(&format!(
            "  {test:<8} total: {count} rounds, acked {acked}, received {received}, lost {lost}, \
             duplicates {duplicates}\n"
        ));
        all = (
            all.0 + count,
            all.1 + acked,
            all.2 + received,
            all.3 + lost,
            all.4 + duplicates,
        );
    }
    out.push_str(&format!(
        "total: {} rounds, acked {}, received {}, lost {}, duplicates {}",
        all.0, all.1, all.2, all.3, all.4
    ));
    out
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
            r#"{"test": "qos2", "round": 1, "protocol": "v3.1.1", "acked": 1001, "received": 3000, "lost": 1, "duplicates": 0}"#,
        ]
        .iter()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
        let summary = summarize(&rounds);
        assert!(
            summary.contains(
                "qos1     total: 2 rounds, acked 2100, received 6002, lost 0, duplicates 2"
            ),
            "{summary}"
        );
        assert!(
            summary.ends_with("total: 3 rounds, acked 3101, received 9002, lost 1, duplicates 2"),
            "{summary}"
        );
        assert_eq!(summary.lines().count(), 1 + 3 + 2 + 1, "{summary}");
    }

    #[test]
    fn no_rounds_say_so() {
        assert!(summarize(&[]).contains("(no round finished)"));
    }
}
