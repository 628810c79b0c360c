//! `cargo xtask`: the project's orchestration, in plain Rust so that it runs wherever cargo does.
//!
//! `cargo xtask test` installs what the tests need when it is missing and then runs every test;
//! `run` builds the browser parts and starts the gateway; `dist` builds the browser parts;
//! `bench` runs the benchmarks; `cluster` starts a cluster on loopback. Each command has its module (`test`, `dist`, `bench`; `run` is
//! `dist` then [`gateway::run_release`]); the modules they share (`gateway`, `prerequisites`,
//! `process`, `steps`) import none of the commands, and no two modules import each other.

mod bench;
mod cluster;
mod dist;
mod fuzz;
mod gateway;
mod kill9;
mod mutants;
mod prerequisites;
mod process;
mod soak;
mod steps;
mod test;

use std::process::ExitCode;

use anyhow::{Result, bail};

/// What `cargo xtask help` (or no arguments) prints.
const USAGE: &str = "\
usage: cargo xtask <command> [args...]

commands:
  test          install what the tests need if missing, then run every test
  run [args]    build the browser parts, then start the gateway;
                args go to the gateway (e.g. cargo xtask run --tcp 0.0.0.0:1883)
  dist          build client-wasm into client-wasm/pkg and the www dashboard
  bench [--quick] [--runs N] [--browser-only | --no-browser] [--instrumented]
                the gateway and Mosquitto side by side under the same load,
                over TCP and WebSocket, then client-wasm and MQTT.js in
                headless Chromium; prints medians and ratios, writes
                target/bench/latest.json and target/bench/ratios.svg
                (--quick: a smoke run; --instrumented: the browser rows
                through Playwright, to see what DevTools costs; --only
                brokers|crowds|fleet|durability|browser|dashboard: one
                part; --cluster: three cluster nodes against one instead,
                into target/bench/cluster.json)
  cluster [--nodes N]
                a cluster on loopback: nats-server with JetStream and N release
                gateways (default 3, named a, b, c...) joined to it; prints
                each node's MQTT address and dashboard; Ctrl-C stops it
  kill9 [--rounds N]
                kill -9 the gateway mid-stream N times (default 20) in each
                durability loop (QoS 1, QoS 2, retained) and check that
                nothing acknowledged was lost; prints each round's counts
                and the totals
  fuzz [--minutes N] [TARGET...]
                run every cargo-fuzz target under fuzz/ (or those named) for
                N minutes each (default 10) on stable Rust, installing
                cargo-fuzz if missing; prints each target's executions and
                any crash (its input under fuzz/artifacts/)
  soak [--minutes N] [--debug]
                a mixed load on the release gateway (--debug: debug builds)
                for N minutes (default 30; fractions allowed); a line of
                figures a minute, then fails on a lost acknowledged message
                or on memory or descriptors growing after the warm-up
  mutants [--crate mqtt-codec|broker-core] [--shard K/N] [--jobs N] [--file PATH...]
          [--re REGEX] [--summary]
                mutation testing (cargo-mutants, installed if missing) of
                mqtt-codec and broker-core against their own tests; prints
                caught, missed, unviable, timeouts and the share of viable
                mutants caught per crate (details under target/mutants/);
                --re: only the mutants named so; --summary: merge the runs
                kept instead of running
  help          print this text
";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let command = args.next();
    let rest: Vec<String> = args.collect();
    let result = match command.as_deref() {
        None | Some("help" | "-h" | "--help") => {
            print!("{USAGE}");
            Ok(())
        }
        Some("test") => no_extra_args("test", &rest).and_then(|()| test::run()),
        Some("run") => dist::run().and_then(|()| gateway::run_release(&rest)),
        Some("dist") => no_extra_args("dist", &rest).and_then(|()| dist::run()),
        Some("bench") => bench::run(&rest),
        Some("cluster") => cluster::run(&rest),
        Some("kill9") => kill9::run(&rest),
        Some("fuzz") => fuzz::run(&rest),
        Some("soak") => soak::run(&rest),
        Some("mutants") => mutants::run(&rest),
        Some(other) => {
            eprint!("unknown command `{other}`\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Fails when a command that takes no arguments was given some.
fn no_extra_args(command: &str, rest: &[String]) -> Result<()> {
    if rest.is_empty() {
        Ok(())
    } else {
        bail!("`cargo xtask {command}` takes no arguments (got {rest:?})")
    }
}
