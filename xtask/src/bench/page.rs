//! The page of the browser rows of `cargo xtask bench`, its HTTP server and the browser that
//! opens it: MQTT clients in headless Chromium receiving a stream from a broker over WebSocket,
//! counted where a web application would see them (in JS callbacks).
//!
//! A small HTTP server here (std only, one thread per request, loopback) serves a snapshot of
//! `bench/browser/` (the page), `client-wasm/pkg/` (under `/pkg/`) and MQTT.js's browser build
//! (`/mqtt.esm.js`), and takes the page's posts: `/ready` once its clients have subscribed,
//! `/result` with the counts, `/error`. Each page run gets its own Chromium, started as a plain
//! process in its own process group with a fresh profile and no remote debugging: a DevTools
//! session (what Playwright attaches to every page) receives an event per WebSocket frame, and
//! that alone cut these rates by about two thirds when measured here. The `instrumented` launcher
//! opens the same page through Playwright instead, to show that difference.
//!
//! Every wait is bounded (the page's ready and result, the publisher), and the browser's whole
//! process group is killed when its run ends, however it ends.

use crate::process::{self, root};
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

/// Largest request body the server takes (a result with raw latency samples is the biggest).
const MAX_BODY: usize = 16 << 20;
/// Time the page may take from launch to its `/ready` (Chromium's start, the connections).
const READY_TIMEOUT: Duration = Duration::from_secs(45);
/// Longest wait for a freshly started browser to go quiet before the stream starts.
const SETTLE_LIMIT: Duration = Duration::from_secs(15);
/// What a publisher may take at most (`mqtt-bench --timeout 60` gives up after 76 s).
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(80);

/// How the page is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Launcher {
    /// `chromium --headless=new URL`, no DevTools session: what the figures are.
    Plain,
    /// The same page opened through Playwright (playwright-core), which attaches DevTools to it.
    Instrumented,
}

impl Launcher {
    pub fn describe(self) -> &'static str {
        match self {
            Launcher::Plain => "headless Chromium, no DevTools session attached",
            Launcher::Instrumented => "Chromium driven by Playwright (DevTools attached)",
        }
    }
}

/// What the page posted.
struct Post {
    path: String,
    body: Value,
}

/// The page's HTTP server and its snapshot of the files it serves.
pub struct PageServer {
    port: u16,
    posts: Receiver<Post>,
    /// The site's snapshot and the browsers' profiles live here.
    dir: PathBuf,
    chromium: PathBuf,
    launcher: Launcher,
    runs: u64,
}

/// The Chromium binary: `$CHROMIUM`, else Debian's.
pub fn chromium_path() -> PathBuf {
    std::env::var_os("CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

/// What the page imports: client-wasm's package and MQTT.js's browser build.
pub fn page_inputs() -> [PathBuf; 2] {
    [
        root().join("client-wasm/pkg/client_wasm.js"),
        root().join("node_modules/mqtt/dist/mqtt.esm.js"),
    ]
}

impl PageServer {
    /// Copies the page, the wasm package and MQTT.js into `dir/site` (so a rebuild of the
    /// package during the run changes nothing) and starts serving it on a free loopback port.
    pub fn start(dir: &Path, launcher: Launcher) -> Result<PageServer> {
        let site = dir.join("site");
        let _ = std::fs::remove_dir_all(&site);
        std::fs::create_dir_all(site.join("pkg"))?;
        for name in ["index.html", "bench.js"] {
            std::fs::copy(root().join("bench/browser").join(name), site.join(name))
                .with_context(|| format!("copying bench/browser/{name}"))?;
        }
        copy_dir(&root().join("client-wasm/pkg"), &site.join("pkg"))?;
        let [_, mqtt_js] = page_inputs();
        std::fs::copy(&mqtt_js, site.join("mqtt.esm.js"))
            .with_context(|| format!("copying {}", mqtt_js.display()))?;

        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let (sender, posts) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (site, sender) = (site.clone(), sender.clone());
                std::thread::spawn(move || {
                    let _ = serve(stream, &site, &sender);
                });
            }
        });
        Ok(PageServer {
            port,
            posts,
            dir: dir.to_path_buf(),
            chromium: chromium_path(),
            launcher,
            runs: 0,
        })
    }

    /// Opens the page with `query`, waits for its clients to subscribe, runs `publish` with the
    /// page's topic (a fresh one per page, so nothing left of an earlier page receives anything;
    /// it returns the publisher's JSON, with `started_us`), and returns the page's result with
    /// each client's end-to-end rate added: messages over the time from the publisher's first
    /// write to the client's last callback. `limit` bounds the page's wait for messages.
    pub fn run_page(
        &mut self,
        query: &[(&str, String)],
        limit: Duration,
        publish: impl FnOnce(&str) -> Result<Value>,
    ) -> Result<Value> {
        self.runs += 1;
        let run = self.runs.to_string();
        let topic = format!("bench/browser/{run}");
        let mut url = format!(
            "http://127.0.0.1:{}/index.html?run={run}&topic={}",
            self.port,
            encode_query(&topic)
        );
        for (key, value) in query {
            url.push_str(&format!("&{key}={}", encode_query(value)));
        }
        url.push_str(&format!("&limit={}", limit.as_secs()));
        // Posts left over from an earlier page are of no interest.
        while self.posts.try_recv().is_ok() {}
        let result_timeout = limit + Duration::from_secs(20);
        let lifetime = READY_TIMEOUT + SETTLE_LIMIT + PUBLISH_TIMEOUT + result_timeout;
        let browser = Browser::launch(self, &url, &run, lifetime)?;
        self.wait_for(&run, "/ready", READY_TIMEOUT)
            .with_context(|| format!("the page never got ready ({url})"))?;
        let settled = browser.settle(self.launcher);
        let publisher = publish(&topic)?;
        // The page gives up `limit` after ready, or 5 s after its last message; then posts.
        let mut result = self
            .wait_for(&run, "/result", result_timeout)
            .with_context(|| format!("the page posted no result ({url})"))?;
        drop(browser);
        let started = publisher["started_us"].as_f64().unwrap_or(f64::NAN);
        if let Some(clients) = result["clients"].as_array_mut() {
            for client in clients {
                let received = client["received"].as_f64().unwrap_or(0.0);
                let last = client["lastUs"].as_f64().unwrap_or(f64::NAN);
                let seconds = (last - started) / 1e6;
                client["seconds"] = json!(seconds);
                client["messages_per_second"] = json!(received / seconds);
            }
        }
        result["publisher"] = publisher;
        result["url"] = json!(url);
        result["launcher"] = json!(self.launcher.describe());
        result["settle_seconds"] = json!(settled.as_secs_f64());
        Ok(result)
    }

    /// Waits for the page of `run` to post to `path`; an `/error` post fails at once.
    fn wait_for(&self, run: &str, path: &str, timeout: Duration) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let post = match self.posts.recv_timeout(left) {
                Ok(post) => post,
                Err(RecvTimeoutError::Timeout) => bail!("no {path} within {timeout:?}"),
                Err(RecvTimeoutError::Disconnected) => bail!("the page server stopped"),
            };
            if post.body["run"].as_str() != Some(run) {
                continue;
            }
            if post.path == "/error" {
                let message = post.body["message"].as_str().unwrap_or("?");
                let first = message.lines().next().unwrap_or(message);
                bail!("the page failed: {first}");
            }
            if post.path == path {
                return Ok(post.body);
            }
        }
    }
}

/// A browser running one page, killed (its whole process group) when dropped.
struct Browser {
    child: Child,
    profile: PathBuf,
}

impl Browser {
    fn launch(server: &PageServer, url: &str, run: &str, lifetime: Duration) -> Result<Browser> {
        let profile = server.dir.join(format!("profile-{run}"));
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile)?;
        let log = std::fs::File::create(server.dir.join("chromium.log"))?;
        // Under coreutils' `timeout`, which also ends the browser should this process die
        // before it could (an interrupted benchmark must not leave Chromium running).
        let mut command = process::command("timeout");
        command.args(["--kill-after=5", &format!("{}", lifetime.as_secs())]);
        match server.launcher {
            Launcher::Plain => {
                command
                    .arg(&server.chromium)
                    .arg("--headless=new")
                    .args(CHROMIUM_FLAGS)
                    .arg(format!("--user-data-dir={}", profile.display()))
                    .arg(url);
            }
            Launcher::Instrumented => {
                command
                    .arg("node")
                    .arg(root().join("bench/browser/playwright.mjs"))
                    .arg(url)
                    .env("CHROMIUM", &server.chromium)
                    .env("CHROMIUM_FLAGS", CHROMIUM_FLAGS.join(" "));
            }
        }
        command
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        let child = command
            .spawn()
            .with_context(|| format!("starting `{}`", process::display(&command)))?;
        Ok(Browser { child, profile })
    }
}

impl Browser {
    /// Waits until the browser's processes have used almost no CPU for half a second, and
    /// returns how long that took. When the page says it is ready Chromium is still starting:
    /// its own UI renderer alone was measured here using 0.6 s of CPU in the next second or two,
    /// which on two cores halved the first stream's rate. Playwright's browser runs in a process
    /// group of its own, out of sight, so that launcher gets a fixed 3 s first.
    fn settle(&self, launcher: Launcher) -> Duration {
        let start = Instant::now();
        if launcher == Launcher::Instrumented {
            std::thread::sleep(Duration::from_secs(3));
        }
        let group = self.child.id();
        let window = Duration::from_millis(250);
        let mut quiet_windows = 0;
        while quiet_windows < 2 && start.elapsed() < SETTLE_LIMIT {
            let before = group_cpu_ticks(group);
            std::thread::sleep(window);
            // At most 3 ticks (30 ms at Linux's 100 Hz) in 250 ms: about a tenth of a core.
            let busy = group_cpu_ticks(group).saturating_sub(before) > 3;
            quiet_windows = if busy { 0 } else { quiet_windows + 1 };
        }
        start.elapsed()
    }
}

/// CPU time (user and system, in clock ticks) of the live processes of a process group, from
/// /proc; 0 where there is no /proc.
fn group_cpu_ticks(group: u32) -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut total = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // After the command name in parentheses: state, ppid, pgrp, ..., utime (12th), stime.
        let Some((_, fields)) = stat.rsplit_once(") ") else {
            continue;
        };
        let fields: Vec<&str> = fields.split_whitespace().collect();
        if fields.get(2).and_then(|pgrp| pgrp.parse::<u32>().ok()) != Some(group) {
            continue;
        }
        let ticks = |index: usize| -> u64 {
            fields
                .get(index)
                .and_then(|value| value.parse().ok())
                .unwrap_or(0)
        };
        total += ticks(11) + ticks(12);
    }
    total
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The group first politely (Playwright then closes the browser it started in a group
        // of its own), then for good.
        let group = format!("-{}", self.child.id());
        let signal = |name: &str| {
            let _ = process::command("kill")
                .args([name, "--", &group])
                .stderr(Stdio::null())
                .status();
        };
        signal("-TERM");
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        signal("-KILL");
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Chromium's flags besides `--headless` and the profile: nothing that talks to the network
/// (this machine's is closed), no throttling of a page that nobody looks at.
const CHROMIUM_FLAGS: [&str; 13] = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
    "--mute-audio",
];

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Percent-encodes what a query value may not hold as is.
fn encode_query(value: &str) -> String {
    value
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b',' => {
                char::from(byte).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// Answers one HTTP/1.1 request: GET a file of the site, or POST a JSON body to the channel.
fn serve(stream: TcpStream, site: &Path, posts: &Sender<Post>) -> Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let path = target.split('?').next().unwrap_or("/").to_string();
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut stream = stream;
    if method == "POST" {
        if length > MAX_BODY {
            return respond(&mut stream, "413 Payload Too Large", "text/plain", b"");
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let _ = posts.send(Post { path, body });
        return respond(&mut stream, "204 No Content", "text/plain", b"");
    }
    let relative = Path::new(path.trim_start_matches('/'));
    let safe = relative
        .components()
        .all(|component| matches!(component, Component::Normal(_)));
    let file = if path == "/" {
        Some(site.join("index.html"))
    } else {
        safe.then(|| site.join(relative))
    };
    match file.and_then(|file| std::fs::read(&file).ok().map(|bytes| (file, bytes))) {
        Some((file, bytes)) => {
            let kind = match file.extension().and_then(|e| e.to_str()) {
                Some("html") => "text/html; charset=utf-8",
                Some("js" | "mjs") => "text/javascript; charset=utf-8",
                Some("wasm") => "application/wasm",
                Some("json") => "application/json",
                _ => "application/octet-stream",
            };
            respond(&mut stream, "200 OK", kind, &bytes)
        }
        None => respond(&mut stream, "404 Not Found", "text/plain", b"not found\n"),
    }
}

fn respond(stream: &mut TcpStream, status: &str, kind: &str, body: &[u8]) -> Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            encode_query("ws://127.0.0.1:80/mqtt"),
            "ws%3A%2F%2F127.0.0.1%3A80%2Fmqtt"
        );
        assert_eq!(encode_query("wasm,mqttjs"), "wasm,mqttjs");
    }
}
