//! `cargo xtask fuzz [--minutes N] [TARGET...]`: runs every cargo-fuzz target under `fuzz/`
//! (or the ones named) for N minutes each (default 10), one after the other, and prints each
//! target's executions and any crash.
//!
//! Stable Rust is enough: cargo-fuzz runs with `--sanitizer none`, whose flags (sancov passes,
//! `--cfg fuzzing`) are all stable; only AddressSanitizer needs `-Z`, and the fuzzed crates deny
//! `unsafe`, so it would find nothing a panic does not. cargo-fuzz is installed (`cargo install
//! cargo-fuzz --locked`) when missing. Each target runs as one libFuzzer process (one core, as
//! `-jobs=1`), its corpus in `fuzz/corpus/<target>` (kept between runs, not committed), also
//! reading `fuzz/regressions/<target>` when it exists: the inputs of past crashes, which the
//! workspace's tests replay too. A crash input is written under `fuzz/artifacts/<target>/`; the
//! run goes on with the next target and fails at the end.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::Stdio;

use anyhow::{Context, Result, bail};

use crate::process::{self, root};

/// Minutes per target when `--minutes` is not given.
const DEFAULT_MINUTES: u32 = 10;

/// What one target's run came to.
struct Outcome {
    target: String,
    executions: Option<u64>,
    crash: Option<String>,
}

/// `cargo xtask fuzz [--minutes N] [TARGET...]`.
pub fn run(args: &[String]) -> Result<()> {
    let (minutes, mut targets) = parse_args(args)?;
    ensure_cargo_fuzz()?;
    let available = list_targets()?;
    if targets.is_empty() {
        targets = available.clone();
    }
    for target in &targets {
        if !available.contains(target) {
            bail!(
                "no fuzz target `{target}` (there are: {})",
                available.join(", ")
            );
        }
    }
    let mut outcomes = Vec::new();
    for target in &targets {
        outcomes.push(run_target(target, minutes)?);
    }
    println!("\nfuzzing, {minutes} min per target:");
    for outcome in &outcomes {
        let executions = outcome
            .executions
            .map_or_else(|| "?".to_string(), |count| count.to_string());
        let result = outcome.crash.as_deref().unwrap_or("no crash");
        println!(
            "  {:<24} {executions:>12} executions  {result}",
            outcome.target
        );
    }
    let crashed: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.crash.is_some())
        .map(|o| o.target.as_str())
        .collect();
    if !crashed.is_empty() {
        bail!("crashes in {}", crashed.join(", "));
    }
    Ok(())
}

fn parse_args(args: &[String]) -> Result<(u32, Vec<String>)> {
    let mut minutes = DEFAULT_MINUTES;
    let mut targets = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--minutes" => {
                let value = args.next().context("--minutes needs a number")?;
                minutes = value
                    .parse()
                    .with_context(|| format!("--minutes {value}: not a whole number"))?;
                if minutes == 0 {
                    bail!("--minutes must be at least 1");
                }
            }
            other if other.starts_with('-') => bail!("unknown option `{other}`"),
            target => targets.push(target.to_string()),
        }
    }
    Ok((minutes, targets))
}

fn fuzz_dir() -> PathBuf {
    root().join("fuzz")
}

/// Installs cargo-fuzz unless `cargo fuzz` already answers.
fn ensure_cargo_fuzz() -> Result<()> {
    if process::probe(process::cargo().args(["fuzz", "--version"])).is_some() {
        return Ok(());
    }
    process::run(process::cargo().args(["install", "cargo-fuzz", "--locked"]))
}

/// The targets `cargo fuzz list` reports.
fn list_targets() -> Result<Vec<String>> {
    let output = process::cargo()
        .args(["fuzz", "list"])
        .current_dir(fuzz_dir())
        .output()
        .context("running cargo fuzz list")?;
    if !output.status.success() {
        bail!(
            "cargo fuzz list failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_string)
        .collect())
}

/// Builds and runs one target for `minutes`, echoing libFuzzer's progress (without its
/// line per new input) and picking out the executions and a crash.
fn run_target(target: &str, minutes: u32) -> Result<Outcome> {
    let corpus = fuzz_dir().join("corpus").join(target);
    std::fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;
    let mut command = process::cargo();
    command
        .current_dir(fuzz_dir())
        .args([
            "fuzz",
            "run",
            "--release",
            "--debug-assertions",
            "--sanitizer",
            "none",
        ])
        .arg(target)
        .arg(&corpus);
    let regressions = fuzz_dir().join("regressions").join(target);
    if regressions.is_dir() {
        command.arg(&regressions);
    }
    command.args([
        "--".to_string(),
        format!("-max_total_time={}", u64::from(minutes) * 60),
        "-print_final_stats=1".to_string(),
    ]);
    println!("\n$ (in fuzz/) {}", process::display(&command));
    let mut child = command
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", process::display(&command)))?;
    let stderr = child.stderr.take().expect("piped");
    let mut outcome = Outcome {
        target: target.to_string(),
        executions: None,
        crash: None,
    };
    for line in BufReader::new(stderr).lines() {
        let line = line.context("reading the fuzzer's output")?;
        if let Some(count) = line.strip_prefix("stat::number_of_executed_units:") {
            outcome.executions = count.trim().parse().ok();
        }
        if let Some((_, path)) = line.split_once("Test unit written to ") {
            outcome.crash = Some(format!("CRASH: {}", path.trim()));
        }
        // `#1234\tNEW cov: ...` and `\tNEW_FUNC[1/2]: ...`: a line per input added to the
        // corpus and per function first reached, too many to show.
        let new_input = (line.starts_with('#')
            && matches!(line.split_whitespace().nth(1), Some("NEW" | "REDUCE")))
            || line.trim_start().starts_with("NEW_FUNC");
        if !new_input {
            eprintln!("{line}");
        }
    }
    let status = child.wait().context("waiting for the fuzzer")?;
    if !status.success() && outcome.crash.is_none() {
        outcome.crash = Some(format!("FAILED: {status}"));
    }
    Ok(outcome)
}
