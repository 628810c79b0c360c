//! `cargo xtask soak [--minutes N] [--debug]`: the gateway under a mixed load for N minutes
//! (default 30), checked for losses and for memory or descriptors that keep growing.
//!
//! Builds the gateway and the load generator (`mqtt-bench`, release builds unless `--debug`),
//! starts the gateway on free loopback ports with a fresh `--data-dir` under `target/soak` and
//! `--max-queued-messages 1000` (so that the slow consumer's queue overflows and the policy for
//! it is exercised, while the other persistent sessions stay far below), and runs `mqtt-bench
//! soak` against it, which prints a line of figures every minute (every 10 s in runs under 5
//! minutes), a summary, and fails on a lost acknowledged message or on growth after the
//! warm-up (the load and the checks are described in `bench/src/soak.rs`). Then the gateway is
//! stopped with SIGTERM and must exit 0 within 10 s. Its log (warnings and errors) goes to
//! `target/soak/gateway.log`.
//!
//! `cargo xtask test` runs `--minutes 0.5 --debug`: the debug binaries are those its earlier
//! steps built (a release build would add minutes), the rates are those of the full run, and
//! every loss check runs; the growth check is skipped there (it needs 2 minutes of samples
//! after a warm-up of at least 3), and says so.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::process::{self, target_dir};

/// Minutes of load when `--minutes` is not given.
const DEFAULT_MINUTES: f64 = 30.0;

/// The gateway's bound on each session's queue during the soak.
const MAX_QUEUED_MESSAGES: &str = "1000";

/// What `cargo xtask soak` was asked for.
#[derive(Debug, PartialEq)]
struct Options {
    seconds: u64,
    debug: bool,
}

/// `cargo xtask soak [--minutes N] [--debug]`.
pub fn run(args: &[String]) -> Result<()> {
    let options = parse(args)?;
    let profile = if options.debug { "debug" } else { "release" };
    let mut build = process::cargo();
    build.arg("build");
    if !options.debug {
        build.arg("--release");
    }
    build.args([
        "-p",
        "gateway",
        "--bin",
        "gateway",
        "-p",
        "bench",
        "--bin",
        "mqtt-bench",
    ]);
    process::run(&mut build)?;

    let dir = target_dir().join("soak");
    let data = dir.join("data");
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let log_path = dir.join("gateway.log");
    let log =
        File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let tcp_port = process::free_port()?;
    let http_port = process::free_port()?;
    let binaries = target_dir().join(profile);
    let mut command = process::command(binaries.join("gateway"));
    command
        .args(["--tcp", &format!("127.0.0.1:{tcp_port}")])
        .args(["--http", &format!("127.0.0.1:{http_port}")])
        .arg("--data-dir")
        .arg(&data)
        .args(["--max-queued-messages", MAX_QUEUED_MESSAGES])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log);
    println!("$ {}", process::display(&command));
    let child = command.spawn().context("starting the gateway")?;
    let mut gateway = Gateway { child };
    process::wait_for_port(tcp_port)?;
    process::wait_for_port(http_port)?;

    let interval = if options.seconds >= 300 { 60 } else { 10 };
    let mut soak = process::command(binaries.join("mqtt-bench"));
    soak.args(["--addr", &format!("127.0.0.1:{tcp_port}"), "soak"])
        .args(["--seconds", &options.seconds.to_string()])
        .args(["--interval", &interval.to_string()])
        .args(["--pid", &gateway.child.id().to_string()])
        .args(["--metrics", &format!("127.0.0.1:{http_port}")])
        // The summary says what failed; a backtrace of where main returned adds nothing.
        .env("RUST_LIB_BACKTRACE", "0");
    let started = Instant::now();
    let result = process::run(&mut soak);
    let stopped = gateway.stop();
    println!(
        "soak: {:.0} s in all; gateway log: {} ({})",
        started.elapsed().as_secs_f64(),
        log_path.display(),
        log_summary(&log_path)
    );
    result.context("the soak failed (see its summary above)")?;
    stopped
}

/// `--minutes N` (a positive number, fractions allowed: `--minutes 0.5`) and `--debug`.
fn parse(args: &[String]) -> Result<Options> {
    let mut options = Options {
        seconds: (DEFAULT_MINUTES * 60.0) as u64,
        debug: false,
    };
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--debug" => options.debug = true,
            "--minutes" => {
                let value = rest.next().context("--minutes takes a number")?;
                match value.parse::<f64>() {
                    Ok(minutes) if minutes.is_finite() && minutes * 60.0 >= 1.0 => {
                        options.seconds = (minutes * 60.0).round() as u64;
                    }
                    _ => bail!("--minutes takes a number of at least 1/60 (got {value:?})"),
                }
            }
            _ => bail!("usage: cargo xtask soak [--minutes N] [--debug] (got {args:?})"),
        }
    }
    Ok(options)
}

/// The soak's gateway: stopped (SIGTERM, then SIGKILL after 10 s) however the soak ends.
struct Gateway {
    child: Child,
}

impl Gateway {
    /// SIGTERM, and a clean exit (status 0) within 10 s.
    fn stop(&mut self) -> Result<()> {
        let _ = process::command("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                if status.success() {
                    return Ok(());
                }
                bail!("the gateway exited with {status} after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        bail!("the gateway did not exit within 10 s of SIGTERM (killed)")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `N warnings, M errors` in the gateway's log.
fn log_summary(path: &PathBuf) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let count = |level: &str| text.lines().filter(|line| line.contains(level)).count();
    format!("{} warnings, {} errors", count(" WARN "), count(" ERROR "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|arg| arg.to_string()).collect()
    }

    #[test]
    fn minutes_default_to_30_and_take_fractions() {
        assert_eq!(
            parse(&[]).unwrap(),
            Options {
                seconds: 1800,
                debug: false
            }
        );
        assert_eq!(
            parse(&args(&["--minutes", "0.5", "--debug"])).unwrap(),
            Options {
                seconds: 30,
                debug: true
            }
        );
        assert_eq!(parse(&args(&["--minutes", "5"])).unwrap().seconds, 300);
        assert!(parse(&args(&["--minutes", "0"])).is_err());
        assert!(parse(&args(&["--minutes", "-1"])).is_err());
        assert!(parse(&args(&["--minutes"])).is_err());
        assert!(parse(&args(&["--seconds", "30"])).is_err());
    }
}
