//! `cargo xtask mutants [--crate mqtt-codec|broker-core] [--shard K/N] [--jobs N] [--file PATH...]`:
//! mutation testing of the two core crates with cargo-mutants, and each crate's score.
//!
//! cargo-mutants changes one thing in the code at a time (a function body replaced by a default
//! value, an operator swapped, a condition negated), builds, and runs the tests: a mutant the
//! tests notice is *caught*, one they pass with is *missed*, one that does not build is
//! *unviable*, and one whose tests outrun the timeout is a *timeout* (usually a loop that no
//! longer ends). The score printed per crate is the share of viable mutants caught:
//! `caught / (caught + missed + timeouts)`; a timeout counts against the score, since no test
//! failed (the test run was killed). Unviable mutants are left out: the compiler, not a test,
//! refused them.
//!
//! Each crate is mutated against its own tests (`--package P --test-package P`: unit tests and
//! its `tests/` binaries), in a copy of the workspace under `target/mutants/scratch` (cargo-mutants'
//! default copy, with git-ignored files left out), so the worktree stays untouched and can be
//! edited while a run goes on. `mqtt-codec` is built with its `tokio-util` feature so that its
//! `MqttCodec` adapter is compiled and tested too. Results go to
//! `target/mutants/<crate>/<run>/mutants.out` (`<run>`: `all`, `shard-K-of-N` or
//! `files-...`), where
//! `missed.txt` lists the survivors and `diff/` shows each mutation. Exclusions, each with the
//! reason it cannot be observed, live in `.cargo/mutants.toml`, which cargo-mutants reads itself.
//! cargo-mutants is installed (`cargo install --locked cargo-mutants`) when missing.
//!
//! Each mutant rebuilds the crate, so a full run takes a while on a small machine: `--shard K/N`
//! runs the K-th of N slices (K from 0, as cargo-mutants counts), `--file PATH` only the mutants
//! in the files named (the crate is then the one holding them), and `--jobs N` (default 1)
//! builds and tests N mutants at once, each in its own copy; `--re REGEX` only the mutants whose
//! names match (to run survivors again once a test was added). `--summary` runs nothing: it merges
//! every run kept under `target/mutants/<crate>/` (a mutant's latest outcome wins, so a file run
//! again after a test was added updates the count) and prints the same table, saying how many of
//! the crate's mutants the runs covered.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::process::{self, root, target_dir};

/// The crates `cargo xtask mutants` knows how to mutate, with the cargo features their tests
/// need.
const CRATES: [(&str, &[&str]); 2] = [("mqtt-codec", &["tokio-util"]), ("broker-core", &[])];

/// The smallest test timeout, in seconds: cargo-mutants sets it from the baseline run, but other
/// work on a shared machine can slow an unmutated test run a lot, and a false timeout would
/// count against the score.
const MINIMUM_TEST_TIMEOUT_SECONDS: u32 = 60;

/// What the command line asked for.
#[derive(Debug, Default, PartialEq)]
struct Options {
    crates: Vec<String>,
    shard: Option<(u32, u32)>,
    files: Vec<String>,
    /// A regular expression for the mutants' names (`--re`), to run some again.
    pattern: Option<String>,
    jobs: u32,
    summary: bool,
}

/// The outcome counts of one crate's run, from cargo-mutants' `outcomes.json`.
#[derive(Debug, Default, PartialEq)]
struct Counts {
    caught: u64,
    missed: u64,
    unviable: u64,
    timeouts: u64,
}

impl Counts {
    /// The share of viable mutants caught, in percent; `None` when no mutant was viable.
    fn score(&self) -> Option<f64> {
        let viable = self.caught + self.missed + self.timeouts;
        (viable > 0).then(|| 100.0 * self.caught as f64 / viable as f64)
    }
}

/// `cargo xtask mutants ...`.
pub fn run(args: &[String]) -> Result<()> {
    let options = parse_args(args)?;
    let crates = select_crates(&options)?;
    if options.summary {
        return summarize(&crates);
    }
    ensure_cargo_mutants()?;
    let mut results = Vec::new();
    for (name, features) in crates {
        let output = output_dir(name, &options);
        run_crate(name, features, &options, &output)?;
        let mutants_out = output.join("mutants.out");
        if !mutants_out.join("outcomes.json").exists() {
            // cargo-mutants writes nothing when the filters leave no mutant.
            bail!("no mutant of {name} matches the --file / --re given");
        }
        let text = read_outcomes(&mutants_out)?;
        let outcomes =
            parse_outcomes(&text).with_context(|| format!("reading {}", mutants_out.display()))?;
        results.push((name, outcomes, mutants_out));
    }
    let mut run_label = match (options.shard, options.files.is_empty()) {
        (Some((k, n)), _) => format!(" (shard {k}/{n})"),
        (None, false) => format!(" (files: {})", options.files.join(", ")),
        (None, true) => String::new(),
    };
    if options.pattern.is_some() {
        run_label.push_str(" (mutants matching --re)");
    }
    println!("\nmutation testing{run_label}; score = caught / (caught + missed + timeouts):");
    for (name, outcomes, mutants_out) in &results {
        print_crate(name, outcomes);
        println!("    details: {}", mutants_out.display());
    }
    Ok(())
}

/// `--summary`: every run kept for each crate, merged.
fn summarize(crates: &[(&'static str, &'static [&'static str])]) -> Result<()> {
    println!("mutation testing, all runs kept under target/mutants/ merged (a mutant's latest");
    println!("outcome wins); score = caught / (caught + missed + timeouts):");
    for (name, _) in crates {
        let crate_dir = target_dir().join("mutants").join(name);
        let mut runs = Vec::new();
        for entry in std::fs::read_dir(&crate_dir)
            .into_iter()
            .flatten()
            .flatten()
        {
            let mutants_out = entry.path().join("mutants.out");
            if let Ok(text) = read_outcomes(&mutants_out) {
                let json: Value = serde_json::from_str(&text)
                    .with_context(|| format!("reading {}", mutants_out.display()))?;
                let start = json["start_time"].as_str().unwrap_or_default().to_string();
                runs.push((start, text));
            }
        }
        // Oldest first, so that later outcomes replace earlier ones.
        runs.sort();
        let mut merged = std::collections::BTreeMap::new();
        for (_, text) in &runs {
            merged.extend(parse_outcomes(text)?);
        }
        // Only the mutants cargo-mutants generates now count: one excluded since (see
        // `.cargo/mutants.toml`), or from code that changed, is left out.
        let current = list_mutants(name)?;
        let kept: Vec<(String, Outcome)> = merged
            .into_iter()
            .filter(|(mutant, _)| current.contains(mutant))
            .collect();
        print_crate(name, &kept);
        println!(
            "    {} runs; {} of the crate's {} mutants have an outcome",
            runs.len(),
            kept.len(),
            current.len()
        );
    }
    Ok(())
}

/// The names of the mutants cargo-mutants generates for the crate now (`--list`, with the
/// exclusions of `.cargo/mutants.toml`).
fn list_mutants(name: &str) -> Result<std::collections::BTreeSet<String>> {
    let output = process::cargo()
        .args(["mutants", "--list", "--package", name])
        .output()
        .context("running cargo mutants --list")?;
    if !output.status.success() {
        bail!(
            "cargo mutants --list failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect())
}

/// One crate's line of counts and score, then its missed mutants and timeouts by name.
fn print_crate(name: &str, outcomes: &[(String, Outcome)]) {
    let counts = count(outcomes);
    let score = counts
        .score()
        .map_or_else(|| "n/a".to_string(), |score| format!("{score:.1} %"));
    println!(
        "  {name:<12} caught {:>4}  missed {:>4}  unviable {:>4}  timeouts {:>4}  score {score}",
        counts.caught, counts.missed, counts.unviable, counts.timeouts
    );
    for (mutant, outcome) in outcomes {
        match outcome {
            Outcome::Missed => println!("    missed: {mutant}"),
            Outcome::Timeout => println!("    timeout: {mutant}"),
            Outcome::Caught | Outcome::Unviable | Outcome::Other => {}
        }
    }
}

fn parse_args(args: &[String]) -> Result<Options> {
    let mut options = Options {
        jobs: 1,
        ..Options::default()
    };
    let mut args = args.iter().peekable();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--crate" => {
                let name = args.next().context("--crate needs a crate name")?;
                if !CRATES.iter().any(|(known, _)| known == name) {
                    bail!("--crate {name}: not one of {}", crate_names().join(", "));
                }
                options.crates.push(name.clone());
            }
            "--shard" => {
                let value = args.next().context("--shard needs K/N")?;
                options.shard = Some(parse_shard(value)?);
            }
            "--jobs" => {
                let value = args.next().context("--jobs needs a number")?;
                options.jobs = value
                    .parse()
                    .ok()
                    .filter(|&jobs| jobs > 0)
                    .with_context(|| format!("--jobs {value}: not a whole number above 0"))?;
            }
            "--file" => {
                while let Some(path) = args.next_if(|next| !next.starts_with("--")) {
                    options.files.push(path.clone());
                }
                if options.files.is_empty() {
                    bail!("--file needs at least one path");
                }
            }
            "--re" => {
                let pattern = args.next().context("--re needs a regular expression")?;
                options.pattern = Some(pattern.clone());
            }
            "--summary" => options.summary = true,
            other => bail!("unknown argument `{other}`"),
        }
    }
    if options.summary
        && (options.shard.is_some() || !options.files.is_empty() || options.pattern.is_some())
    {
        bail!("--summary merges the runs kept; it takes no --shard, --file or --re");
    }
    if options.shard.is_some() && !options.files.is_empty() {
        bail!("--shard and --file do not go together: shard the whole crate, or name files");
    }
    Ok(options)
}

/// `K/N` with `K < N`, as cargo-mutants numbers shards (from 0).
fn parse_shard(value: &str) -> Result<(u32, u32)> {
    let parsed = value
        .split_once('/')
        .and_then(|(k, n)| Some((k.parse::<u32>().ok()?, n.parse::<u32>().ok()?)));
    match parsed {
        Some((k, n)) if k < n => Ok((k, n)),
        _ => bail!("--shard {value}: expected K/N with 0 <= K < N"),
    }
}

fn crate_names() -> Vec<&'static str> {
    CRATES.iter().map(|(name, _)| *name).collect()
}

/// The crates to run: those named, else those holding the `--file` paths, else both.
fn select_crates(options: &Options) -> Result<Vec<(&'static str, &'static [&'static str])>> {
    let mut selected: Vec<_> = CRATES
        .iter()
        .copied()
        .filter(|(name, _)| options.crates.is_empty() || options.crates.iter().any(|c| c == name))
        .collect();
    if options.files.is_empty() {
        return Ok(selected);
    }
    for file in &options.files {
        if !selected
            .iter()
            .any(|(name, _)| Path::new(file).starts_with(name))
        {
            bail!(
                "--file {file}: not under the directory of {} (paths are relative to the \
                 workspace root, e.g. broker-core/src/tree.rs)",
                selected
                    .iter()
                    .map(|(name, _)| *name)
                    .collect::<Vec<_>>()
                    .join(" or ")
            );
        }
    }
    selected.retain(|(name, _)| {
        options
            .files
            .iter()
            .any(|file| Path::new(file).starts_with(name))
    });
    Ok(selected)
}

/// `target/mutants/<crate>/<run>`.
fn output_dir(name: &str, options: &Options) -> PathBuf {
    let mut run = match (options.shard, options.files.is_empty()) {
        (Some((k, n)), _) => format!("shard-{k}-of-{n}"),
        (None, false) => format!("files-{}", run_name(&options.files)),
        (None, true) => "all".to_string(),
    };
    if let Some(pattern) = &options.pattern {
        run = format!("{run}-re-{}", run_name(std::slice::from_ref(pattern)));
    }
    target_dir().join("mutants").join(name).join(run)
}

/// `<first file's stem>-<hash of the list>`: runs on different files (or patterns) keep their
/// own results, and the same ones run again replace theirs.
fn run_name(files: &[String]) -> String {
    let mut sorted: Vec<&str> = files.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.dedup();
    // FNV-1a: stable across runs and Rust versions, unlike std's hasher.
    let hash = sorted
        .join("\n")
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
    let stem = Path::new(sorted[0])
        .file_stem()
        .map_or_else(String::new, |stem| {
            stem.to_string_lossy()
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .take(16)
                .collect()
        });
    format!("{stem}-{:08x}", hash as u32)
}

/// Installs cargo-mutants unless `cargo mutants` already answers.
fn ensure_cargo_mutants() -> Result<()> {
    if process::probe(process::cargo().args(["mutants", "--version"])).is_some() {
        return Ok(());
    }
    process::run(process::cargo().args(["install", "--locked", "cargo-mutants"]))
}

/// Runs cargo-mutants on one crate. Its exit status says whether mutants were missed (2) or
/// timed out (3): those are results, read from `outcomes.json`; anything else non-zero (the
/// unmutated tests failing, a usage error) is an error.
fn run_crate(name: &str, features: &[&str], options: &Options, output: &Path) -> Result<()> {
    let scratch = target_dir().join("mutants").join("scratch");
    std::fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    std::fs::create_dir_all(output).with_context(|| format!("creating {}", output.display()))?;
    let mut command = process::cargo();
    command
        // cargo-mutants copies the tree into a temporary directory under $TMPDIR.
        .env("TMPDIR", &scratch)
        .args(["mutants", "--package", name, "--test-package", name])
        .args(["--gitignore", "true", "--colors", "never"])
        .arg("--minimum-test-timeout")
        .arg(MINIMUM_TEST_TIMEOUT_SECONDS.to_string())
        .arg("--jobs")
        .arg(options.jobs.to_string())
        .arg("--output")
        .arg(output);
    if !features.is_empty() {
        command.arg("--features").arg(features.join(","));
    }
    if let Some((k, n)) = options.shard {
        command.arg("--shard").arg(format!("{k}/{n}"));
    }
    // cargo-mutants matches a `--file` holding a slash against the whole path from the
    // workspace root, as the paths are given here.
    for file in &options.files {
        command.arg("--file").arg(file);
    }
    if let Some(pattern) = &options.pattern {
        command.arg("--re").arg(pattern);
    }
    println!("\n$ {}", process::display(&command));
    let status = run_status(&mut command)?;
    match status.code() {
        Some(0 | 2 | 3) => Ok(()),
        _ => bail!("cargo mutants on {name} failed ({status})"),
    }
}

fn run_status(command: &mut Command) -> Result<std::process::ExitStatus> {
    command
        .current_dir(root())
        .status()
        .with_context(|| format!("could not start `{}`", process::display(command)))
}

/// The text of `<mutants.out>/outcomes.json`.
fn read_outcomes(mutants_out: &Path) -> Result<String> {
    let path = mutants_out.join("outcomes.json");
    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

/// What became of one mutant.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Outcome {
    Caught,
    Missed,
    Unviable,
    Timeout,
    /// Anything else cargo-mutants may report (a failure to run the tests at all).
    Other,
}

/// Each mutant's name and outcome, from an `outcomes.json` (the baseline left out).
fn parse_outcomes(text: &str) -> Result<Vec<(String, Outcome)>> {
    let json: Value = serde_json::from_str(text)?;
    let outcomes = json["outcomes"]
        .as_array()
        .context("no `outcomes` list")?
        .iter()
        .filter_map(|entry| {
            let name = entry["scenario"]["Mutant"]["name"].as_str()?;
            let outcome = match entry["summary"].as_str()? {
                "CaughtMutant" => Outcome::Caught,
                "MissedMutant" => Outcome::Missed,
                "Unviable" => Outcome::Unviable,
                "Timeout" => Outcome::Timeout,
                _ => Outcome::Other,
            };
            Some((name.to_string(), outcome))
        })
        .collect();
    Ok(outcomes)
}

fn count(outcomes: &[(String, Outcome)]) -> Counts {
    let mut counts = Counts::default();
    for (_, outcome) in outcomes {
        match outcome {
            Outcome::Caught => counts.caught += 1,
            Outcome::Missed => counts.missed += 1,
            Outcome::Unviable => counts.unviable += 1,
            Outcome::Timeout => counts.timeouts += 1,
            Outcome::Other => {}
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn parses_crate_shard_jobs_and_files() {
        let options = parse_args(&args("--crate broker-core --shard 2/8 --jobs 2")).unwrap();
        assert_eq!(
            options,
            Options {
                crates: vec!["broker-core".into()],
                shard: Some((2, 8)),
                files: vec![],
                pattern: None,
                jobs: 2,
                summary: false,
            }
        );
        let options = parse_args(&args(
            "--file broker-core/src/tree.rs broker-core/src/lazy.rs",
        ))
        .unwrap();
        assert_eq!(
            options.files,
            ["broker-core/src/tree.rs", "broker-core/src/lazy.rs"]
        );
        assert_eq!(options.jobs, 1);
        assert!(parse_args(&args("--crate gateway")).is_err());
        assert!(parse_args(&args("--shard 8/8")).is_err());
        assert!(parse_args(&args("--shard 1")).is_err());
        assert!(parse_args(&args("--file")).is_err());
        assert!(parse_args(&args("--jobs 0")).is_err());
        assert!(parse_args(&args("--shard 0/2 --file broker-core/src/tree.rs")).is_err());
        assert!(
            parse_args(&args("--summary --crate mqtt-codec"))
                .unwrap()
                .summary
        );
        assert!(parse_args(&args("--summary --shard 0/2")).is_err());
        let options = parse_args(&args("--crate mqtt-codec --re decode.rs:113")).unwrap();
        assert_eq!(options.pattern.as_deref(), Some("decode.rs:113"));
    }

    #[test]
    fn files_pick_their_crate() {
        let options = parse_args(&args("--file broker-core/src/tree.rs")).unwrap();
        let names: Vec<_> = select_crates(&options)
            .unwrap()
            .iter()
            .map(|(name, _)| *name)
            .collect();
        assert_eq!(names, ["broker-core"]);
        let options =
            parse_args(&args("--crate mqtt-codec --file broker-core/src/tree.rs")).unwrap();
        assert!(select_crates(&options).is_err());
    }

    #[test]
    fn score_is_viable_mutants_caught() {
        let entry = |name: &str, summary: &str| {
            format!(r#"{{"scenario": {{"Mutant": {{"name": "{name}"}}}}, "summary": "{summary}"}}"#)
        };
        let mut entries = vec![r#"{"scenario": "Baseline", "summary": "Success"}"#.to_string()];
        for (count, summary) in [
            (15, "CaughtMutant"),
            (3, "MissedMutant"),
            (5, "Unviable"),
            (2, "Timeout"),
        ] {
            entries.extend((0..count).map(|i| entry(&format!("{summary} {i}"), summary)));
        }
        let text = format!(r#"{{"outcomes": [{}]}}"#, entries.join(","));
        let outcomes = parse_outcomes(&text).unwrap();
        assert_eq!(outcomes.len(), 25, "the baseline is not a mutant");
        let counts = count(&outcomes);
        assert_eq!(
            counts,
            Counts {
                caught: 15,
                missed: 3,
                unviable: 5,
                timeouts: 2,
            }
        );
        assert_eq!(counts.score(), Some(75.0));
        assert_eq!(Counts::default().score(), None);
    }

    #[test]
    fn file_runs_keep_their_own_results() {
        let one = run_name(&["broker-core/src/tree.rs".into()]);
        assert!(one.starts_with("tree-"), "{one}");
        let both = run_name(&[
            "broker-core/src/tree.rs".into(),
            "broker-core/src/lazy.rs".into(),
        ]);
        let swapped = run_name(&[
            "broker-core/src/lazy.rs".into(),
            "broker-core/src/tree.rs".into(),
        ]);
        assert_eq!(both, swapped);
        assert_ne!(one, both);
    }
}
