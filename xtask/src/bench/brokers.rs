//! The two brokers of `cargo xtask bench` and the load generator run against them: each broker
//! on its own loopback ports, serving MQTT over TCP and over WebSocket, and killed when its
//! [`Broker`] is dropped.
//!
//! For the security rows a broker may also get [`Extras`]: a TLS listener serving the run's
//! certificate (the gateway's `--mqtts` with `--tls-cert`/`--tls-key`, Mosquitto's
//! [`MOSQUITTO_TLS_CONF`]), or the run's ACL file (the gateway's `--acl-file`, Mosquitto's
//! [`MOSQUITTO_ACL_CONF`]). For the durability rows, persistence ([`Durable`]: the gateway's
//! `--durability`, Mosquitto's [`MOSQUITTO_PERSISTENCE_CONF`]) and a shorter `$SYS` interval;
//! such a broker may be stopped with SIGTERM ([`stop_gracefully`]) and started again on its
//! data. Everything else is as for the other rows.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::security::Pki;
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

/// Appended to [`MOSQUITTO_CONF`] for the TLS rows: a third listener, MQTT over TLS with the
/// run's certificate and key (Mosquitto's defaults otherwise: TLS 1.2 or 1.3, no client
/// certificates).
pub const MOSQUITTO_TLS_CONF: &str = "\
listener {tls_port} 127.0.0.1
certfile {certificate}
keyfile {key}
";

/// Appended to [`MOSQUITTO_CONF`] for the ACL row: the run's ACL file (global, as
/// `per_listener_settings` is off; anonymous clients get the rules before any `user` line).
pub const MOSQUITTO_ACL_CONF: &str = "\
acl_file {acl}
";

/// Appended to [`MOSQUITTO_CONF`] for the durability rows (its later `persistence` line is the
/// one that counts): the in-memory database saved to `{location}/mosquitto.db` every
/// `autosave_interval` seconds (1800 unless [`Durable::autosave_interval`] adds a line) and at
/// exit, and read back at start.
pub const MOSQUITTO_PERSISTENCE_CONF: &str = "\
persistence true
persistence_location {location}/
";

/// What a broker loads beyond the plain configuration.
#[derive(Clone, Copy, Default)]
pub struct Extras<'a> {
    /// A TLS listener serving this certificate and key.
    pub tls: Option<&'a Pki>,
    /// This ACL file.
    pub acl: Option<&'a Path>,
    /// Persistence: Mosquitto's turned on (the gateway's store is always on).
    pub durable: Option<Durable>,
    /// `$SYS/broker/...` every this many seconds (the gateway's `--sys-interval`, Mosquitto's
    /// `sys_interval`), instead of both defaults of 10.
    pub sys_interval: Option<u32>,
}

/// How a durable broker is configured.
#[derive(Clone, Copy, Default)]
pub struct Durable {
    /// The gateway's `--durability MODE`; `None` leaves its default (full).
    pub durability: Option<&'static str>,
    /// Mosquitto's `autosave_interval` in seconds; `None` leaves its default (1800).
    pub autosave_interval: Option<u32>,
}

/// A broker's MQTT-over-TLS listener.
pub struct TlsListener {
    pub port: u16,
    /// The CA that signed its certificate, for `mqtt-bench --tls-ca`.
    pub ca: PathBuf,
}

/// A broker process under test.
pub struct Broker {
    pub name: &'static str,
    pub child: Child,
    /// MQTT over TCP.
    pub port: u16,
    /// MQTT over WebSocket, at `ws://127.0.0.1:{ws_port}/mqtt`.
    pub ws_port: u16,
    /// MQTT over TLS, when the broker has it.
    pub tls: Option<TlsListener>,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The release gateway (see [`gateway::start_release`]), its data under `dir`.
pub fn start_gateway(dir: &Path) -> Result<Broker> {
    start_gateway_with(dir, "gateway", Extras::default())
}

/// The release gateway as [`start_gateway`] starts it, plus `extras`: `--mqtts 127.0.0.1:PORT
/// --tls-cert FILE --tls-key FILE` and `--acl-file FILE`. Ready once every port accepts
/// connections.
pub fn start_gateway_with(dir: &Path, name: &str, extras: Extras) -> Result<Broker> {
    let mut flags: Vec<OsString> = Vec::new();
    let tls = match extras.tls {
        Some(pki) => {
            let tls_port = process::free_port()?;
            flags.extend([
                "--mqtts".into(),
                format!("127.0.0.1:{tls_port}").into(),
                "--tls-cert".into(),
                pki.certificate.clone().into(),
                "--tls-key".into(),
                pki.key.clone().into(),
            ]);
            Some(TlsListener {
                port: tls_port,
                ca: pki.ca.clone(),
            })
        }
        None => None,
    };
    if let Some(acl) = extras.acl {
        flags.extend(["--acl-file".into(), acl.into()]);
    }
    if let Some(mode) = extras.durable.and_then(|durable| durable.durability) {
        flags.extend(["--durability".into(), mode.into()]);
    }
    if let Some(seconds) = extras.sys_interval {
        flags.extend(["--sys-interval".into(), seconds.to_string().into()]);
    }
    let gateway = gateway::start_release(dir, name, &flags)?;
    // Killed on drop, should it not become ready.
    let broker = Broker {
        name: "gateway",
        child: gateway.child,
        port: gateway.tcp_port,
        ws_port: gateway.http_port,
        tls,
    };
    wait_until_ready(&broker)?;
    Ok(broker)
}

/// Mosquitto with [`MOSQUITTO_CONF`], written to `dir/mosquitto.conf`.
pub fn start_mosquitto(dir: &Path) -> Result<Broker> {
    start_mosquitto_with(dir, "mosquitto", Extras::default())
}

/// Mosquitto with [`MOSQUITTO_CONF`] plus, for `extras`, [`MOSQUITTO_TLS_CONF`] and
/// [`MOSQUITTO_ACL_CONF`], written to `dir/{name}.conf`. Ready once every port accepts
/// connections.
pub fn start_mosquitto_with(dir: &Path, name: &str, extras: Extras) -> Result<Broker> {
    let port = process::free_port()?;
    let ws_port = process::free_port()?;
    let conf = mosquitto_conf(dir, name);
    let mut text = MOSQUITTO_CONF
        .replace("{port}", &port.to_string())
        .replace("{ws_port}", &ws_port.to_string());
    let tls = match extras.tls {
        Some(pki) => {
            let tls_port = process::free_port()?;
            text.push_str(
                &MOSQUITTO_TLS_CONF
                    .replace("{tls_port}", &tls_port.to_string())
                    .replace("{certificate}", &pki.certificate.to_string_lossy())
                    .replace("{key}", &pki.key.to_string_lossy()),
            );
            Some(TlsListener {
                port: tls_port,
                ca: pki.ca.clone(),
            })
        }
        None => None,
    };
    if let Some(acl) = extras.acl {
        text.push_str(&MOSQUITTO_ACL_CONF.replace("{acl}", &acl.to_string_lossy()));
    }
    if let Some(durable) = extras.durable {
        let location = mosquitto_persistence_dir(dir, name);
        let _ = std::fs::remove_dir_all(&location);
        std::fs::create_dir_all(&location)?;
        // Mosquitto started as root runs as its own user (`user mosquitto`, the default), which
        // must be able to write its database here.
        std::fs::set_permissions(&location, std::fs::Permissions::from_mode(0o777))?;
        text.push_str(
            &MOSQUITTO_PERSISTENCE_CONF.replace("{location}", &location.to_string_lossy()),
        );
        if let Some(seconds) = durable.autosave_interval {
            text.push_str(&format!("autosave_interval {seconds}\n"));
        }
    }
    if let Some(seconds) = extras.sys_interval {
        text.push_str(&format!("sys_interval {seconds}\n"));
    }
    std::fs::write(&conf, text)?;
    let child = spawn_mosquitto(&conf)?;
    let broker = Broker {
        name: "mosquitto",
        child,
        port,
        ws_port,
        tls,
    };
    wait_until_ready(&broker)?;
    Ok(broker)
}

/// Where Mosquitto called `name` keeps its database when [`Extras::durable`] (`persistence_location`).
pub fn mosquitto_persistence_dir(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}-persistence"))
}

/// The configuration file that [`start_mosquitto_with`] writes for Mosquitto called `name`.
pub fn mosquitto_conf(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.conf"))
}

/// `mosquitto -c conf`, quiet; returns at once.
pub fn spawn_mosquitto(conf: &Path) -> Result<Child> {
    process::command("mosquitto")
        .arg("-c")
        .arg(conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting mosquitto")
}

/// Stops the broker the way its users do, SIGTERM (the gateway flushes its store, Mosquitto
/// saves its database), and waits for it to exit, at most `limit` (then it is killed and this
/// fails). Returns how long it took.
pub fn stop_gracefully(broker: &mut Broker, limit: Duration) -> Result<Duration> {
    let start = Instant::now();
    let pid = broker.child.id().to_string();
    let kill = process::command("kill").args(["-TERM", &pid]).status();
    if !kill.context("running kill")?.success() {
        bail!("kill -TERM {pid} ({}) failed", broker.name);
    }
    while start.elapsed() < limit {
        if let Some(status) = broker.child.try_wait()? {
            if !status.success() {
                println!("  note: {} exited with {status} after SIGTERM", broker.name);
            }
            return Ok(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = broker.child.kill();
    let _ = broker.child.wait();
    bail!("{} did not exit within {limit:?} of SIGTERM", broker.name)
}

/// Waits until each of the broker's ports accepts connections (at most 10 s each; a broker
/// that refused its configuration and exited fails here too).
fn wait_until_ready(broker: &Broker) -> Result<()> {
    let ports = [broker.port, broker.ws_port]
        .into_iter()
        .chain(broker.tls.as_ref().map(|tls| tls.port));
    for port in ports {
        process::wait_for_port(port).with_context(|| format!("starting {}", broker.name))?;
    }
    Ok(())
}

/// Whether `args` run `mqtt-bench` over TLS.
fn over_tls(args: &[String]) -> bool {
    args.windows(2)
        .any(|pair| pair[0] == "--transport" && pair[1] == "tls")
}

/// Runs one `mqtt-bench` mode against `broker` and returns its JSON result. Over TLS
/// (`--transport tls` in `args`), `--addr` is the broker's TLS listener and `--tls-ca` its CA.
pub fn run_load(broker: &Broker, args: &[String]) -> Result<Value> {
    let mut command = process::command(process::target_dir().join("release/mqtt-bench"));
    if over_tls(args) {
        let tls = broker
            .tls
            .as_ref()
            .with_context(|| format!("this {} has no TLS listener", broker.name))?;
        command
            .args(["--addr", &format!("127.0.0.1:{}", tls.port)])
            .arg("--tls-ca")
            .arg(&tls.ca);
    } else {
        command.args(["--addr", &format!("127.0.0.1:{}", broker.port)]);
    }
    command
        .args([
            "--ws-url",
            &format!("ws://127.0.0.1:{}/mqtt", broker.ws_port),
        ])
        .args(["--timeout", "60"])
        .args(args)
        // No backtrace, whatever this environment asks: its error must be its last line.
        .env("RUST_BACKTRACE", "0");
    // Its standard error is passed on once it exits, and its last line ends the error of a
    // failed run, so that a peer's cell can say why (see `peers::failure`).
    let output = command.output().context("running mqtt-bench")?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprint!("{stderr}");
    if !output.status.success() {
        let last = stderr.lines().rev().find(|line| !line.trim().is_empty());
        bail!(
            "`{}` failed ({}): {}",
            process::display(&command),
            output.status,
            last.unwrap_or("no message")
        );
    }
    serde_json::from_slice(&output.stdout).context("mqtt-bench printed no JSON")
}

/// The CPU time the broker's process has used so far, all its threads, user and system
/// (`utime + stime` of `/proc/PID/stat`), in seconds.
pub fn cpu_seconds(broker: &Broker) -> Result<f64> {
    let path = format!("/proc/{}/stat", broker.child.id());
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let ticks = cpu_ticks(&stat).with_context(|| format!("no utime and stime in {path}"))?;
    Ok(ticks as f64 / clock_ticks_per_second())
}

/// `utime + stime` of a /proc/PID/stat line, in clock ticks. The command name, in parentheses,
/// may hold spaces and parentheses itself, so the fields are counted after its last `)`: there
/// the state is field 3, utime field 14 and stime field 15.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let (_, after_name) = stat.rsplit_once(')')?;
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The kernel's USER_HZ (`getconf CLK_TCK`), the unit of /proc's CPU times: 100 on every Linux
/// this runs on, which is also the answer should `getconf` be missing.
fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        process::probe(process::command("getconf").arg("CLK_TCK"))
            .and_then(|ticks| ticks.parse().ok())
            .filter(|&ticks: &f64| ticks > 0.0)
            .unwrap_or(100.0)
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_ticks_from_proc_stat() {
        // A command name with a space and a parenthesis; utime 1500, stime 250.
        let stat = "4242 (my (broker) x) S 1 4242 4242 0 -1 4194560 900 0 0 0 1500 250 0 0 20 0 \
                    9 0 123456 2000000 500 18446744073709551615";
        assert_eq!(cpu_ticks(stat), Some(1750));
        assert_eq!(cpu_ticks("4242 (short) S 1 2"), None);
        // This test's own process has used some CPU by now, and the clock has a tick rate.
        let own = std::fs::read_to_string("/proc/self/stat").unwrap();
        assert!(cpu_ticks(&own).is_some());
        assert!(clock_ticks_per_second() >= 1.0);
    }
}
