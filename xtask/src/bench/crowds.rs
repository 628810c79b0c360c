//! The crowd rows of `cargo xtask bench` (`--only crowds`): each broker, freshly started, holds
//! a crowd of idle MQTT connections, as many as this machine's per-process file limit allows
//! with room to spare: 19,000 under the usual `ulimit -n` of 20,000 (5,000 with `--quick`).
//!
//! `mqtt-bench idle --connections N --pid PID` opens 16 warm-up connections, reads the broker's
//! VmRSS, opens N more (MQTT 3.1.1, clean session, keep alive 60 s, CONNACK awaited, one after
//! another), waits a second and reads VmRSS again; it fails if any connection is refused, so a
//! broker that cannot hold the crowd fails the run rather than giving a smaller figure. Rows:
//! the broker's whole VmRSS holding the crowd, and what each connection added (after minus
//! before, over N). One round per broker in each run, A B then B A, each broker fresh.
//!
//! With `--peers`, rumqttd and mqttv5 ([`super::peers`]) are measured alike; a peer that
//! fails to hold the crowd gets a cell saying why rather than a figure.
//!
//! Every broker must be able to hold the crowd, and this is checked rather than assumed: the
//! gateway's `--max-connections` is 100,000 by default, Mosquitto's `max_connections` is
//! unlimited unless set ([`super::brokers::MOSQUITTO_CONF`] sets none), and the peers are
//! configured for 100,000 clients; each holds one file
//! descriptor per connection, so before a round the broker's own `Max open files` (from
//! `/proc/PID/limits`; Mosquitto, started as root, changes user but keeps the limit it
//! inherits) must exceed the crowd by [`SPARE_DESCRIPTORS`], and so must this process's, which
//! `mqtt-bench` inherits. Each result records the broker's limit.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::brokers::{Broker, run_load};
use super::peers::{Contender, Peer, contenders, failure};
use super::report::{Better, Cell, Row};

/// Descriptors a process needs besides one per connection: listeners, the store, the warm-up
/// connections, standard streams.
const SPARE_DESCRIPTORS: u64 = 200;

/// The crowd's size and the names of its rows.
struct Crowd {
    connections: u64,
    total: &'static str,
    per_connection: &'static str,
}

impl Crowd {
    fn new(quick: bool) -> Crowd {
        if quick {
            Crowd {
                connections: 5_000,
                total: "RSS holding 5,000 idle connections",
                per_connection: "memory per connection, 5,000 idle",
            }
        } else {
            Crowd {
                connections: 19_000,
                total: "RSS holding 19,000 idle connections",
                per_connection: "memory per connection, 19,000 idle",
            }
        }
    }
}

/// The two crowd rows: VmRSS holding the crowd (MB) and per connection (KB), a column per
/// broker (the gateway, Mosquitto, then `peers`).
pub fn rows(quick: bool, runs: usize, dir: &Path, peers: &[Peer]) -> Result<Vec<Row>> {
    let crowd = Crowd::new(quick);
    let needed = crowd.connections + SPARE_DESCRIPTORS;
    let own = open_files_limit("self")?;
    if own < needed {
        bail!(
            "the crowd rows hold {} connections, so mqtt-bench and the brokers need `ulimit -n` \
             of at least {needed}; it is {own} (raise it, or run with --quick)",
            crowd.connections
        );
    }
    let connections = crowd.connections.to_string();
    let contenders = contenders(peers);
    // Per broker, in `contenders`' order.
    let mut totals = vec![Vec::new(); contenders.len()];
    let mut per_connection = vec![Vec::new(); contenders.len()];
    let mut results: Vec<Vec<Value>> = vec![Vec::new(); contenders.len()];
    let mut failed: Vec<Option<String>> = vec![None; contenders.len()];
    for run in 0..runs {
        // Forwards, then backwards: with two brokers, A B then B A.
        let mut order: Vec<usize> = (0..contenders.len()).collect();
        if run % 2 == 1 {
            order.reverse();
        }
        for slot in order {
            let contender = contenders[slot];
            let mut broker = match contender.start_plain(dir)? {
                Ok(broker) => broker,
                Err(why) => {
                    failed[slot] = Some(why);
                    continue;
                }
            };
            let limit = check_limit(&broker, needed)?;
            let pid = broker.child.id().to_string();
            let args = ["idle", "--connections", &connections, "--pid", &pid].map(String::from);
            let mut result = match run_load(&broker, &args) {
                Ok(result) => result,
                Err(error) if matches!(contender, Contender::Peer(_)) => {
                    let what = format!("holding {connections} connections");
                    failed[slot] = Some(failure(&mut broker, &what, &error));
                    continue;
                }
                Err(error) => {
                    return Err(
                        error.context(format!("{} holding {connections} connections", broker.name))
                    );
                }
            };
            let after_kb = result["rss_after_kb"].as_f64().context("no rss_after_kb")?;
            let each_kb = result["kb_per_connection"]
                .as_f64()
                .context("no kb_per_connection")?;
            result["max_open_files"] = json!(limit);
            println!(
                "run {}/{runs} {connections} idle connections: {:<9} {:>7.1} MB, {each_kb:.2} KB \
                 per connection",
                run + 1,
                broker.name,
                after_kb / 1024.0
            );
            totals[slot].push(after_kb / 1024.0);
            per_connection[slot].push(each_kb);
            results[slot].push(result);
        }
    }
    let cells = |samples: Vec<Vec<f64>>| -> Vec<Cell> {
        contenders
            .iter()
            .zip(samples)
            .zip(&results)
            .zip(&failed)
            .map(|(((contender, samples), results), failed)| match failed {
                Some(why) if samples.is_empty() => Cell::missing(contender.name(), why.clone()),
                _ => Cell::new(contender.name(), samples, results.clone()),
            })
            .collect()
    };
    Ok(vec![
        Row::of(crowd.total, "MB", Better::Lower, cells(totals)),
        Row::of(
            crowd.per_connection,
            "KB",
            Better::Lower,
            cells(per_connection),
        ),
    ])
}

/// Fails unless `broker` may open `needed` files; returns its limit.
fn check_limit(broker: &Broker, needed: u64) -> Result<u64> {
    let limit = open_files_limit(&broker.child.id().to_string())?;
    if limit < needed {
        bail!(
            "{} may open {limit} files, fewer than the {needed} the crowd needs",
            broker.name
        );
    }
    Ok(limit)
}

/// The soft `Max open files` of process `pid` (or `self`), from `/proc/PID/limits`.
pub(super) fn open_files_limit(pid: &str) -> Result<u64> {
    let path = format!("/proc/{pid}/limits");
    let limits = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|soft| match soft {
            "unlimited" => Some(u64::MAX),
            number => number.parse().ok(),
        })
        .with_context(|| format!("no `Max open files` in {path}"))
}

/// How the crowd rows are run, for latest.json.
pub fn report(quick: bool) -> Value {
    let crowd = Crowd::new(quick);
    json!({
        "connections": crowd.connections,
        "load": "mqtt-bench idle: 16 warm-up connections, VmRSS, then N MQTT 3.1.1 connections \
                 (clean session, keep alive 60 s, CONNACK awaited, one after another), 1 s, VmRSS",
        "brokers": "each freshly started, alone, one round per broker per run; the gateway with \
                    its defaults (--max-connections 100000), Mosquitto with the bench's \
                    configuration (no max_connections: unlimited), the peers (--peers) with \
                    theirs (rumqttd max_connections 100000, mqttv5 max_clients 100000)",
        "limits": format!(
            "each broker's and mqtt-bench's Max open files at least N + {SPARE_DESCRIPTORS}, \
             checked; each result has the broker's as max_open_files"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_file_limit() {
        assert!(open_files_limit("self").unwrap() > 0);
    }

    /// Both crowds fit under the usual limit of 20,000 files per process, with room to spare.
    #[test]
    fn the_crowds_fit_under_twenty_thousand_files() {
        for quick in [false, true] {
            assert!(Crowd::new(quick).connections + SPARE_DESCRIPTORS <= 20_000);
        }
    }
}
