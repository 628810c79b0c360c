//! The `gateway` binary as the commands use it: built with cargo, run in the foreground for
//! `cargo xtask run`, and started in the background for the tests that cannot start one
//! themselves and for the benchmark.
//!
//! Every gateway started here listens on loopback only, on ports chosen for it (never the
//! defaults, which a gateway the developer runs may hold), with a data directory of its own
//! that it starts without. The tests' gateway is the debug build and is stopped the way users
//! stop it (SIGTERM, a clean shutdown); the benchmark's is the release build and is killed,
//! except where the benchmark times its restart on the data it left ([`restart_release`]).

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::process::{self, target_dir};

/// `cargo build -p gateway --bin gateway`: the debug binary, `target/debug/gateway`.
pub fn build() -> Result<()> {
    process::run(process::cargo().args(["build", "-p", "gateway", "--bin", "gateway"]))
}

/// The debug binary that [`build`] makes.
pub fn debug_binary() -> PathBuf {
    target_dir().join("debug/gateway")
}

/// `cargo xtask run [args]`: the gateway in release mode, in the foreground, with `args` passed
/// through (after a leading `--`, if any).
pub fn run_release(args: &[String]) -> Result<()> {
    // `cargo xtask run -- --tcp ...` works as well as `cargo xtask run --tcp ...`.
    let args = args.strip_prefix(&["--".to_string()]).unwrap_or(args);
    let mut gateway = process::cargo();
    gateway
        .args([
            "run",
            "--release",
            "-p",
            "gateway",
            "--bin",
            "gateway",
            "--",
        ])
        .args(args)
        // The gateway may read a password from the terminal (`gateway passwd`).
        .stdin(Stdio::inherit());
    process::run(&mut gateway)
}

/// `target/debug/gateway` on free loopback ports, for tests that cannot start one themselves.
pub struct TestGateway {
    child: Child,
    /// The HTTP listener's address (`127.0.0.1:PORT`).
    pub http: String,
    data_dir: PathBuf,
}

impl TestGateway {
    /// Starts the gateway (with `extra_args` after the listeners and the data directory) and
    /// waits (at most 15 s) for its `listening http` line.
    pub fn start(extra_args: &[&str]) -> Result<TestGateway> {
        let data_dir = target_dir().join("client-wasm-test-data");
        let _ = std::fs::remove_dir_all(&data_dir);
        let mut child = process::command(debug_binary())
            .args([
                "--tcp",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(&data_dir)
            .args(extra_args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting target/debug/gateway")?;
        let stderr = child.stderr.take().context("gateway stderr")?;
        let (sender, receiver) = std::sync::mpsc::channel();
        // Reads every line, so the gateway never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some((_, address)) = line.split_once("listening http ") {
                    let _ = sender.send(address.trim().to_string());
                }
            }
        });
        match receiver.recv_timeout(Duration::from_secs(15)) {
            Ok(http) => {
                println!("gateway for the browser tests: http {http}");
                Ok(TestGateway {
                    child,
                    http,
                    data_dir,
                })
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the gateway did not announce its HTTP listener within 15 s")
            }
        }
    }

    /// SIGTERM (the gateway's clean shutdown), then waits for it.
    pub fn stop(mut self) {
        let _ = process::command("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// A release gateway started by [`start_release`]: its process and its two ports.
pub struct ReleaseGateway {
    pub child: Child,
    /// MQTT over TCP.
    pub tcp_port: u16,
    /// HTTP, with MQTT over WebSocket at `ws://127.0.0.1:{http_port}/mqtt`.
    pub http_port: u16,
}

/// `target/release/gateway` on two free loopback ports with a fresh data directory
/// `dir/{name}-data` ([`release_data_dir`]) and `extra` flags, logging warnings only, once both
/// ports accept connections (at most 10 s each). The caller owns the process (the benchmark
/// kills it).
pub fn start_release(dir: &Path, name: &str, extra: &[OsString]) -> Result<ReleaseGateway> {
    let data = release_data_dir(dir, name);
    let _ = std::fs::remove_dir_all(&data);
    let tcp_port = process::free_port()?;
    let http_port = process::free_port()?;
    let child = release_command(&data, tcp_port, http_port, extra)
        .env("RUST_LOG", "warn")
        .spawn()
        .context("starting the gateway")?;
    let mut gateway = ReleaseGateway {
        child,
        tcp_port,
        http_port,
    };
    let ready = process::wait_for_port(tcp_port).and_then(|()| process::wait_for_port(http_port));
    if let Err(error) = ready {
        let _ = gateway.child.kill();
        let _ = gateway.child.wait();
        return Err(error);
    }
    Ok(gateway)
}

/// The data directory [`start_release`] gives the gateway called `name`.
pub fn release_data_dir(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}-data"))
}

/// A release gateway whose log [`restart_release`] reads.
pub struct LoggedGateway {
    pub gateway: ReleaseGateway,
    /// Just before the process was spawned.
    pub spawned: Instant,
    /// Each line of its standard error, with when it was read.
    pub lines: Receiver<(Instant, String)>,
}

/// `target/release/gateway` on two free loopback ports and the existing data directory `data`
/// (whatever its store holds is recovered), with `extra` flags, logging at info level for the
/// gateway's own modules (`warn,gateway=info`): its log is read line by line, each line sent
/// to [`LoggedGateway::lines`] with the time it was read (warnings and errors are also
/// printed). Returns at once; the caller waits for the lines it needs.
pub fn restart_release(data: &Path, extra: &[OsString]) -> Result<LoggedGateway> {
    let tcp_port = process::free_port()?;
    let http_port = process::free_port()?;
    let mut command = release_command(data, tcp_port, http_port, extra);
    command
        .env("RUST_LOG", "warn,gateway=info")
        .stderr(Stdio::piped());
    let spawned = Instant::now();
    let mut child = command.spawn().context("starting the gateway")?;
    let stderr = child.stderr.take().context("gateway stderr")?;
    let (sender, lines) = std::sync::mpsc::channel();
    // Reads every line, so the gateway never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("WARN") || line.contains("ERROR") {
                eprintln!("{line}");
            }
            // The receiver may be gone: keep draining.
            let _ = sender.send((Instant::now(), line));
        }
    });
    Ok(LoggedGateway {
        gateway: ReleaseGateway {
            child,
            tcp_port,
            http_port,
        },
        spawned,
        lines,
    })
}

/// The release gateway's command line: its listeners on loopback, `data`, then `extra`.
fn release_command(data: &Path, tcp_port: u16, http_port: u16, extra: &[OsString]) -> Command {
    let mut command = process::command(target_dir().join("release/gateway"));
    command
        .args(["--tcp", &format!("127.0.0.1:{tcp_port}")])
        .args(["--http", &format!("127.0.0.1:{http_port}")])
        .arg("--data-dir")
        .arg(data)
        .args(extra)
        .stdout(Stdio::null());
    command
}
