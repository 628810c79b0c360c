//! The gateway binary as a process of its own, for what an in-process gateway cannot show:
//! its exit on SIGTERM, a SIGKILL (kill -9) in the middle of a flow, and its log lines.
//!
//! Every wait is bounded: the addresses within 10 s of the start, the exit within the limit
//! a test gives. Dropping it kills the process (and removes the data directory it made).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

/// The gateway binary with its stderr collected line by line.
pub struct RunningBinary {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    /// The MQTT over TCP address.
    pub addr: SocketAddr,
    /// The HTTP address (WebSocket at `/mqtt`, `/metrics`).
    pub http: SocketAddr,
    /// A data directory this binary made, removed on drop; `None` for one a test passed in.
    own_data_dir: Option<PathBuf>,
}

impl RunningBinary {
    /// Starts the binary on port 0 with a fresh data directory and `extra` flags.
    pub fn start(extra: &[&str]) -> RunningBinary {
        let data_dir = crate::common::test_config().data_dir;
        let mut binary = RunningBinary::start_in(&data_dir, extra);
        binary.own_data_dir = Some(data_dir);
        binary
    }

    /// Starts the binary on port 0 with the store in `data_dir`, which the caller removes.
    pub fn start_in(data_dir: &Path, extra: &[&str]) -> RunningBinary {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args([
                "--tcp",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(data_dir)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("gateway binary starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (address_sender, address_receiver) = mpsc::channel();
        let collected = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                for kind in ["mqtt", "http"] {
                    if let Some(rest) = line.split(&format!("listening {kind} ")).nth(1) {
                        let _ = address_sender.send((kind, rest.trim().to_string()));
                    }
                }
                collected.lock().expect("lines lock").push(line);
            }
        });
        let (mut addr, mut http) = (None, None);
        while addr.is_none() || http.is_none() {
            match address_receiver.recv_timeout(Duration::from_secs(10)) {
                Ok((kind, address)) => {
                    let address: SocketAddr = address.parse().expect("listening address");
                    match kind {
                        "mqtt" => addr = Some(address),
                        _ => http = Some(address),
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "no `listening mqtt` and `listening http` lines: {:?}",
                        lines.lock().expect("lines lock")
                    );
                }
            }
        }
        RunningBinary {
            child,
            lines,
            addr: addr.expect("seen"),
            http: http.expect("seen"),
            own_data_dir: None,
        }
    }

    /// Sends SIGTERM and waits for the process to exit; fails the test if it is still there
    /// after `limit`.
    pub fn terminate(&mut self, limit: Duration) -> ExitStatus {
        let started = std::time::Instant::now();
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM failed");
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the gateway") {
                return status;
            }
            if started.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("the gateway did not exit within {limit:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process with SIGKILL, as `kill -9` does: nothing runs after it, no flush.
    pub fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    /// The log lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("lines lock").clone()
    }

    /// Whether the process is still running (it has not exited or been killed).
    pub fn is_running(&mut self) -> bool {
        self.child
            .try_wait()
            .expect("the gateway's status")
            .is_none()
    }

    /// The process's id, for /proc and prlimit.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for RunningBinary {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("the gateway's log:\n{}", self.lines().join("\n"));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(data_dir) = &self.own_data_dir {
            let _ = std::fs::remove_dir_all(data_dir);
        }
    }
}
