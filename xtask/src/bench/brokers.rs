//! The two brokers of `cargo xtask bench` and the load generator run against them: each broker
//! on its own loopback ports, serving MQTT over TCP and over WebSocket, and killed when its
//! [`Broker`] is dropped.

use std::path::Path;
use std::process::{Child, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::{gateway, process};

/// The Mosquitto configuration: TCP_NODELAY like the gateway, unlimited queues so that QoS 1
/// loses nothing, and the same in-flight window as the gateway's default. The second listener is
/// MQTT over WebSocket: Debian's 2.0.11 links libwebsockets statically (so `ldd` does not show
/// it), which sets TCP_NODELAY on its sockets itself.
pub const MOSQUITTO_CONF: &str = "\
listener {port} 127.0.0.1
listener {ws_port} 127.0.0.1
protocol websockets
allow_anonymous true
set_tcp_nodelay true
max_queued_messages 0
max_inflight_messages 256
persistence false
";

/// A broker process under test.
pub struct Broker {
    pub name: &'static str,
    pub child: Child,
    /// MQTT over TCP.
    pub port: u16,
    /// MQTT over WebSocket, at `ws://127.0.0.1:{ws_port}/mqtt`.
    pub ws_port: u16,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The release gateway (see [`gateway::start_release`]), its data under `dir`.
pub fn start_gateway(dir: &Path) -> Result<Broker> {
    let gateway = gateway::start_release(dir)?;
    Ok(Broker {
        name: "gateway",
        child: gateway.child,
        port: gateway.tcp_port,
        ws_port: gateway.http_port,
    })
}

pub fn start_mosquitto(dir: &Path) -> Result<Broker> {
    let port = process::free_port()?;
    let ws_port = process::free_port()?;
    let conf = dir.join("mosquitto.conf");
    let text = MOSQUITTO_CONF
        .replace("{port}", &port.to_string())
        .replace("{ws_port}", &ws_port.to_string());
    std::fs::write(&conf, text)?;
    let child = process::command("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting mosquitto")?;
    let broker = Broker {
        name: "mosquitto",
        child,
        port,
        ws_port,
    };
    process::wait_for_port(port)?;
    process::wait_for_port(ws_port)?;
    Ok(broker)
}

/// Runs one `mqtt-bench` mode against `broker` and returns its JSON result.
pub fn run_load(broker: &Broker, args: &[String]) -> Result<Value> {
    let mut command = process::command(process::target_dir().join("release/mqtt-bench"));
    command
        .args(["--addr", &format!("127.0.0.1:{}", broker.port)])
        .args([
            "--ws-url",
            &format!("ws://127.0.0.1:{}/mqtt", broker.ws_port),
        ])
        .args(["--timeout", "60"])
        .args(args);
    let output = command
        .stderr(Stdio::inherit())
        .output()
        .context("running mqtt-bench")?;
    if !output.status.success() {
        bail!("`{}` failed", process::display(&command));
    }
    serde_json::from_slice(&output.stdout).context("mqtt-bench printed no JSON")
}

/// Ensures Mosquitto is installed (Debian's package), installing it when running as root.
pub fn ensure_mosquitto() -> Result<()> {
    if process::probe(process::command("mosquitto").arg("-h")).is_some()
        || Path::new("/usr/sbin/mosquitto").exists()
    {
        return Ok(());
    }
    println!("installing Debian package mosquitto");
    process::run(process::command("apt-get").args(["update", "-q"]))?;
    process::run(
        process::command("apt-get")
            .args(["install", "-y", "-q", "mosquitto"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}
