//! The browser rows of `cargo xtask bench`: which pages run against which broker, and the rows
//! (medians, ratios, goals) made of their results. The page, its server and the browser are in
//! [`super::page`].
//!
//! Page configurations: client-wasm alone with `onMessages` (one callback per WebSocket frame),
//! alone with `onMessage` (one per message), MQTT.js alone, both in one page (they share its main
//! thread), each on a full-speed stream of 64-byte QoS 0 messages; and each client alone on a
//! 1000 msg/s stream for latency. Derived rows: wasm/MQTT.js in one page (goal 2x) and
//! gateway+wasm over Mosquitto+MQTT.js (goal 10x, and 170k msg/s).

use super::brokers::{Broker, run_load};
use super::page::{self, Launcher, PageServer};
use super::peers::{Contender, Peer, contenders};
use super::report::{Better, Cell, Row, number};
use crate::{dist, prerequisites, process};
use anyhow::Result;
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

/// One page configuration: the clients in the page (see bench/browser/bench.js), and whether
/// the stream is the timed low-rate one (latency) rather than the full-speed one (throughput).
struct BrowserPage {
    clients: &'static str,
    latency: bool,
}

const fn page_of(clients: &'static str, latency: bool) -> BrowserPage {
    BrowserPage { clients, latency }
}

const BROWSER_PAGES: [BrowserPage; 6] = [
    page_of("wasm", false),
    page_of("wasm-each", false),
    page_of("mqttjs", false),
    page_of("wasm,mqttjs", false),
    page_of("wasm", true),
    page_of("mqttjs", true),
];

/// A browser row: one client's figure in one page configuration ([`BROWSER_PAGES`] index).
struct BrowserFigure {
    name: &'static str,
    page: usize,
    client: &'static str,
    /// `messages_per_second`, or a percentile of `latencyUs`.
    field: &'static str,
}

const fn figure(
    name: &'static str,
    page: usize,
    client: &'static str,
    field: &'static str,
) -> BrowserFigure {
    BrowserFigure {
        name,
        page,
        client,
        field,
    }
}

const BROWSER_WASM_ALONE: &str = "browser wasm onMessages, alone";
const BROWSER_MQTTJS_ALONE: &str = "browser MQTT.js, alone";
const BROWSER_WASM_SHARED: &str = "browser wasm, page shared";
const BROWSER_MQTTJS_SHARED: &str = "browser MQTT.js, page shared";
const RATE: &str = "messages_per_second";

const BROWSER_FIGURES: [BrowserFigure; 9] = [
    figure(BROWSER_WASM_ALONE, 0, "wasm", RATE),
    figure("browser wasm onMessage, alone", 1, "wasm-each", RATE),
    figure(BROWSER_MQTTJS_ALONE, 2, "mqttjs", RATE),
    figure(BROWSER_WASM_SHARED, 3, "wasm", RATE),
    figure(BROWSER_MQTTJS_SHARED, 3, "mqttjs", RATE),
    figure("browser wasm latency p50", 4, "wasm", "p50"),
    figure("browser wasm latency p99", 4, "wasm", "p99"),
    figure("browser MQTT.js latency p50", 5, "mqttjs", "p50"),
    figure("browser MQTT.js latency p99", 5, "mqttjs", "p99"),
];

/// DESIGN.md and issue 7: wasm at least 2x MQTT.js's messages per second in the same page.
const WASM_OVER_MQTTJS_GOAL: f64 = 2.0;
/// Issue 7: gateway + client-wasm at least 10x Mosquitto + MQTT.js (and 170k msg/s).
const GATEWAY_WASM_OVER_MOSQUITTO_MQTTJS_GOAL: f64 = 10.0;

/// Gets what the browser rows need: Chromium (Debian's package, as the tests install it), the
/// npm dependencies (MQTT.js) and client-wasm's package (built by `cargo xtask dist` when it
/// is missing). `Ok(Err(why))` when the rows cannot run; else a description of the package.
pub fn prerequisites(launcher: Launcher) -> Result<Result<Value, String>> {
    prerequisites::ensure_debian_packages()?;
    let chromium = page::chromium_path();
    if !chromium.exists() {
        return Ok(Err(format!(
            "no Chromium at {} (Debian's package chromium; set CHROMIUM to another)",
            chromium.display()
        )));
    }
    if launcher == Launcher::Instrumented
        && process::probe(process::command("node").arg("--version")).is_none()
    {
        return Ok(Err("--instrumented needs node (Playwright)".into()));
    }
    prerequisites::ensure_npm_dependencies()?;
    let [package, mqtt_js] = page::page_inputs();
    if !package.exists() {
        println!("client-wasm/pkg is missing: building it");
        dist::run()?;
    }
    if !mqtt_js.exists() {
        return Ok(Err(format!(
            "no MQTT.js browser build at {}",
            mqtt_js.display()
        )));
    }
    let wasm = package.with_file_name("client_wasm_bg.wasm");
    let built = std::fs::metadata(&wasm)
        .and_then(|meta| meta.modified())
        .ok();
    let sources = ["client-wasm/src", "client-wasm/js", "mqtt-codec/src"]
        .map(|dir| newest_modified(&process::root().join(dir)))
        .into_iter()
        .flatten()
        .max();
    let stale = matches!((built, sources), (Some(built), Some(sources)) if sources > built);
    if stale {
        println!(
            "note: client-wasm/pkg is older than client-wasm's sources; the browser rows measure \
             the package as built (`cargo xtask dist` rebuilds it)"
        );
    }
    let size = std::fs::metadata(&wasm).map_or(0, |meta| meta.len());
    Ok(Ok(
        json!({ "wasm_bytes": size, "older_than_sources": stale }),
    ))
}

/// The newest modification time of the files under `dir`.
fn newest_modified(dir: &Path) -> Option<std::time::SystemTime> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let time = if entry.file_type().ok()?.is_dir() {
            newest_modified(&entry.path())
        } else {
            entry.metadata().and_then(|meta| meta.modified()).ok()
        };
        newest = newest.max(time);
    }
    newest
}

/// The browser rows: each page configuration against both brokers (fresh ones), interleaved,
/// `runs` times, then the derived ratios. A page that fails or stalls is reported and left out
/// of the medians (its browser killed), so one bad run does not end the benchmark.
pub fn rows(
    quick: bool,
    runs: usize,
    dir: &Path,
    launcher: Launcher,
    peers: &[Peer],
) -> Result<Vec<Row>> {
    let messages: u64 = if quick { 50_000 } else { 200_000 };
    let latency_messages: u64 = if quick { 2_000 } else { 5_000 };
    let limit = Duration::from_secs(if quick { 60 } else { 120 });
    let mut server = PageServer::start(&dir.join("browser"), launcher)?;
    println!(
        "\nbrowser rows: {}, {messages} messages of 64 B at QoS 0 (latency: {latency_messages} at \
         1000 msg/s)",
        launcher.describe()
    );
    let contenders = contenders(peers);
    // samples[figure][broker], results alike, brokers in `contenders`' order.
    let mut samples = vec![vec![Vec::new(); contenders.len()]; BROWSER_FIGURES.len()];
    let mut results: Vec<Vec<Vec<Value>>> =
        vec![vec![Vec::new(); contenders.len()]; BROWSER_FIGURES.len()];
    // Why a broker has no figure: it did not start, or its last page failed.
    let mut failed: Vec<Option<String>> = vec![None; contenders.len()];
    let mut brokers = Vec::new();
    for contender in &contenders {
        brokers.push(contender.start_plain(dir)?);
    }
    for run in 0..runs {
        for (index, page) in BROWSER_PAGES.iter().enumerate() {
            // Forwards, then backwards: with two brokers, A B then B A.
            let mut order: Vec<usize> = (0..contenders.len()).collect();
            if (run + index) % 2 == 1 {
                order.reverse();
            }
            for slot in order {
                restart_if_exited(&mut brokers[slot], contenders[slot], dir)?;
                let broker = match &brokers[slot] {
                    Ok(broker) => broker,
                    Err(why) => {
                        failed[slot] = Some(why.clone());
                        continue;
                    }
                };
                let count = if page.latency {
                    latency_messages
                } else {
                    messages
                };
                let query = [
                    ("broker", format!("ws://127.0.0.1:{}/mqtt", broker.ws_port)),
                    ("clients", page.clients.to_string()),
                    ("count", count.to_string()),
                    ("latency", u8::from(page.latency).to_string()),
                ];
                let publish = |topic: &str| {
                    let mut args = vec!["publish", "--topic", topic, "--size", "64"];
                    let count = count.to_string();
                    args.extend(["--messages", &count]);
                    if page.latency {
                        args.extend(["--rate", "1000"]);
                    }
                    let args: Vec<String> = args.into_iter().map(String::from).collect();
                    run_load(broker, &args)
                };
                let label = format!(
                    "run {}/{runs} browser {:<11} {}{:<9}",
                    run + 1,
                    page.clients,
                    if page.latency { "latency " } else { "" },
                    broker.name
                );
                let result = match server.run_page(&query, limit, publish) {
                    Ok(result) => result,
                    Err(error) => {
                        println!("{label} failed, left out: {error:#}");
                        failed[slot] = Some("page failed".into());
                        continue;
                    }
                };
                let mut line = label;
                for client in result["clients"].as_array().into_iter().flatten() {
                    let received = client["received"].as_u64().unwrap_or(0);
                    let per_callback =
                        received as f64 / client["callbacks"].as_f64().unwrap_or(1.0);
                    if page.latency {
                        let latency = &client["latencyUs"];
                        let _ = write!(
                            line,
                            "  {} p50 {} p99 {} us",
                            client["name"].as_str().unwrap_or("?"),
                            number(latency["p50"].as_f64().unwrap_or(f64::NAN)),
                            number(latency["p99"].as_f64().unwrap_or(f64::NAN)),
                        );
                    } else {
                        let _ = write!(
                            line,
                            "  {} {} msg/s ({:.1} msg/callback)",
                            client["name"].as_str().unwrap_or("?"),
                            number(client["messages_per_second"].as_f64().unwrap_or(f64::NAN)),
                            per_callback,
                        );
                    }
                    if received < count {
                        let _ = write!(line, " LOST {}", count - received);
                    }
                }
                let settled = result["settle_seconds"].as_f64().unwrap_or(f64::NAN);
                println!("{line}  (browser settled in {settled:.1} s)");
                for (figure_index, figure) in BROWSER_FIGURES.iter().enumerate() {
                    if figure.page != index {
                        continue;
                    }
                    let client = result["clients"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|client| client["name"] == figure.client);
                    let value = client.and_then(|client| {
                        if page.latency {
                            client["latencyUs"][figure.field].as_f64()
                        } else {
                            client[figure.field].as_f64()
                        }
                    });
                    if let Some(value) = value {
                        samples[figure_index][slot].push(value);
                        results[figure_index][slot].push(result.clone());
                    }
                }
            }
        }
    }
    drop(brokers);

    let names: Vec<&'static str> = contenders.iter().map(|each| each.name()).collect();
    // A broker's cell from its samples, or why it has none.
    let cell = |slot: usize, samples: Vec<f64>, results: Vec<Value>| -> Cell {
        match &failed[slot] {
            Some(why) if samples.is_empty() => Cell::missing(names[slot], why.clone()),
            _ if samples.is_empty() => Cell::missing(names[slot], "no figure"),
            _ => Cell::new(names[slot], samples, results),
        }
    };
    let mut rows: Vec<Row> = BROWSER_FIGURES
        .iter()
        .zip(samples.into_iter().zip(results))
        .map(|(figure, (samples, results))| {
            let latency = BROWSER_PAGES[figure.page].latency;
            let (unit, better) = if latency {
                ("us", Better::Lower)
            } else {
                ("msg/s", Better::Higher)
            };
            let cells = samples
                .into_iter()
                .zip(results)
                .enumerate()
                .map(|(slot, (samples, results))| cell(slot, samples, results))
                .collect();
            Row::of(figure.name, unit, better, cells)
        })
        .collect();
    let find = |rows: &[Row], name: &str| -> Vec<Vec<f64>> {
        rows.iter()
            .find(|row| row.name == name)
            .map(|row| row.cells.iter().map(|cell| cell.samples.clone()).collect())
            .unwrap_or_else(|| vec![Vec::new(); names.len()])
    };
    // wasm / MQTT.js from the same pages (both clients of a page succeed or fail together).
    let (wasm, mqtt_js) = (
        find(&rows, BROWSER_WASM_SHARED),
        find(&rows, BROWSER_MQTTJS_SHARED),
    );
    let shared: Vec<Cell> = (0..names.len())
        .map(|slot| {
            let per_run = wasm[slot]
                .iter()
                .zip(&mqtt_js[slot])
                .map(|(wasm, mqtt_js)| wasm / mqtt_js)
                .collect();
            cell(slot, per_run, Vec::new())
        })
        .collect();
    let mut shared_row = Row::of(
        "browser wasm / MQTT.js, page shared",
        "x",
        Better::Higher,
        shared,
    );
    shared_row.ratio = shared_row.gateway();
    shared_row.ratio_of =
        Some("wasm / MQTT.js in one page, from the gateway (the other columns: from each broker)");
    shared_row.goal = Some(WASM_OVER_MQTTJS_GOAL);
    shared_row.note = Some("ratio = wasm/MQTT.js from the gateway; goal 2x".into());
    // The gateway with client-wasm against each other broker with MQTT.js.
    let (wasm, mqtt_js) = (
        find(&rows, BROWSER_WASM_ALONE),
        find(&rows, BROWSER_MQTTJS_ALONE),
    );
    let cross: Vec<Cell> = (0..names.len())
        .map(|slot| {
            let samples = if slot == 0 {
                wasm[0].clone()
            } else {
                mqtt_js[slot].clone()
            };
            cell(slot, samples, Vec::new())
        })
        .collect();
    let mut cross_row = Row::of(
        "browser gateway+wasm / Mosq.+MQTT.js",
        "msg/s",
        Better::Higher,
        cross,
    );
    cross_row.ratio_of = Some(
        "gateway + client-wasm (onMessages) over Mosquitto + MQTT.js, each alone in its page \
         (the peers' columns: each peer + MQTT.js)",
    );
    cross_row.goal = Some(GATEWAY_WASM_OVER_MOSQUITTO_MQTTJS_GOAL);
    cross_row.note = Some("gateway+wasm over Mosquitto+MQTT.js; goal 10x and 170k msg/s".into());
    let after = rows
        .iter()
        .position(|row| row.name == BROWSER_MQTTJS_SHARED)
        .map_or(rows.len(), |index| index + 1);
    rows.insert(after, cross_row);
    rows.insert(after, shared_row);
    Ok(rows)
}

/// Starts a new broker in place of one that exited (or was killed by something else on this
/// machine), so that one lost broker does not fail every later run; a peer that cannot be
/// started again serves no more pages, and its cells say why.
fn restart_if_exited(
    slot: &mut Result<Broker, String>,
    contender: Contender,
    dir: &Path,
) -> Result<()> {
    let Ok(broker) = slot else {
        return Ok(());
    };
    let Ok(Some(status)) = broker.child.try_wait() else {
        return Ok(());
    };
    println!(
        "note: {} exited ({status}); starting a new one",
        broker.name
    );
    *slot = contender.start_plain(dir)?;
    Ok(())
}
