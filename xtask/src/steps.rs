//! Named steps with timings, and the summary printed at the end of `cargo xtask test`.
//!
//! A step either runs (and succeeds or fails) or is skipped with a one-line reason. The first
//! failure stops the run: its error names the step, and the summary still lists what ran.
//! Only what the machine lacks (a browser a non-root run could not install) may skip a step,
//! and never under CI, where it fails instead: a green CI run has run every step.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// How a step ended.
enum Outcome {
    /// It ran and succeeded.
    Passed,
    /// It did not run; the text says why.
    Skipped(String),
    /// It ran and failed.
    Failed,
}

/// One line of the summary.
struct Record {
    /// The step's name, as printed when it started.
    name: String,
    /// How long it took (zero when skipped).
    duration: Duration,
    /// How it ended.
    outcome: Outcome,
}

/// The steps of one xtask command, in the order they ran.
#[derive(Default)]
pub struct Steps {
    /// What ran so far.
    records: Vec<Record>,
}

impl Steps {
    /// Runs `body` as the step `name`; its error, if any, is returned naming the step.
    pub fn run(&mut self, name: &str, body: impl FnOnce() -> Result<()>) -> Result<()> {
        println!("\n==> {name}");
        let start = Instant::now();
        let result = body();
        let outcome = match result {
            Ok(()) => Outcome::Passed,
            Err(_) => Outcome::Failed,
        };
        self.records.push(Record {
            name: name.to_string(),
            duration: start.elapsed(),
            outcome,
        });
        result.with_context(|| format!("step `{name}` failed"))
    }

    /// Records the step `name` as skipped, printing the reason on one line.
    pub fn skip(&mut self, name: &str, reason: &str) {
        println!("\n==> {name}: skipped ({reason})");
        self.records.push(Record {
            name: name.to_string(),
            duration: Duration::ZERO,
            outcome: Outcome::Skipped(reason.to_string()),
        });
    }

    /// The step `name` cannot run because the machine lacks what `reason` names: under CI (see
    /// [`under_ci`]) that fails the step; elsewhere it is skipped with that reason.
    pub fn missing(&mut self, name: &str, reason: &str) -> Result<()> {
        if under_ci() {
            return self.run(name, || anyhow::bail!("{reason}, which CI must have"));
        }
        self.skip(name, reason);
        Ok(())
    }

    /// Prints one line per step: outcome, duration and name, then the total time.
    pub fn print_summary(&self) {
        println!("\nsummary:");
        let mut total = Duration::ZERO;
        for record in &self.records {
            total += record.duration;
            let (label, note) = match &record.outcome {
                Outcome::Passed => ("ok", String::new()),
                Outcome::Skipped(reason) => ("skipped", format!(" ({reason})")),
                Outcome::Failed => ("FAILED", String::new()),
            };
            println!(
                "  {label:<8} {:>8}  {}{note}",
                format_duration(record.duration),
                record.name
            );
        }
        println!("  total    {:>8}", format_duration(total));
    }
}

/// Whether this runs under CI: `CI` set to anything but empty, `0` or `false` (`.ci/run` runs
/// with `CI=true`).
pub fn under_ci() -> bool {
    is_ci(std::env::var("CI").ok().as_deref())
}

/// Whether a value of `CI` means CI.
fn is_ci(value: Option<&str>) -> bool {
    value.is_some_and(|value| !matches!(value.trim(), "" | "0" | "false"))
}

/// `4.2s` under a minute, `3m07s` above.
fn format_duration(duration: Duration) -> String {
    let seconds = duration.as_secs_f64();
    if seconds < 60.0 {
        format!("{seconds:.1}s")
    } else {
        let whole = duration.as_secs();
        format!("{}m{:02}s", whole / 60, whole % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(format_duration(Duration::from_millis(4_249)), "4.2s");
        assert_eq!(format_duration(Duration::from_secs(187)), "3m07s");
    }

    #[test]
    fn ci_is_any_value_but_off() {
        for (value, ci) in [
            (None, false),
            (Some(""), false),
            (Some("0"), false),
            (Some("false"), false),
            (Some("true"), true),
            (Some("1"), true),
        ] {
            assert_eq!(is_ci(value), ci, "{value:?}");
        }
    }

    #[test]
    fn a_failed_step_is_named_in_the_error() {
        let mut steps = Steps::default();
        let error = steps
            .run("the step", || anyhow::bail!("the cause"))
            .unwrap_err();
        assert_eq!(format!("{error:#}"), "step `the step` failed: the cause");
        assert!(matches!(steps.records[0].outcome, Outcome::Failed));
    }
}
