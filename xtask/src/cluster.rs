//! `cargo xtask cluster [--nodes N]`: a cluster on this machine, to try one. Debian's
//! nats-server with JetStream on a free loopback port (its store under `target/cluster/`),
//! then N release gateways (default 3) named a, b, c, ... on free loopback ports, each with its
//! data under `target/cluster/{name}-data`, joined to it. Prints each node's MQTT address and
//! dashboard, then waits: Ctrl-C stops nats-server and the nodes with it, and whatever is left
//! is ended by its PID.

use std::ffi::OsString;
use std::path::Path;
use std::process::{Child, Stdio};

use anyhow::{Context, Result, bail};

use crate::gateway::{self, ReleaseGateway};
use crate::process::{self, target_dir};
use crate::{dist, prerequisites};

const DEFAULT_NODES: usize = 3;
const MAX_NODES: usize = 26;

pub fn run(args: &[String]) -> Result<()> {
    let nodes = match args {
        [] => DEFAULT_NODES,
        [flag, n] if flag == "--nodes" => n.parse().context("--nodes takes a number")?,
        _ => bail!("usage: cargo xtask cluster [--nodes N]"),
    };
    if !(1..=MAX_NODES).contains(&nodes) {
        bail!("--nodes takes 1 to {MAX_NODES}");
    }
    prerequisites::ensure_debian_packages()?;
    dist::run()?;
    process::run(process::cargo().args(["build", "--release", "-p", "gateway"]))?;

    let dir = target_dir().join("cluster");
    std::fs::create_dir_all(&dir)?;
    let (mut nats, nats_port) = spawn_nats(&dir)?;
    let mut started: Vec<(String, ReleaseGateway)> = Vec::new();
    let result = start_nodes(&dir, nats_port, nodes, &mut started);
    if let Err(error) = result {
        stop(&mut nats, &mut started);
        return Err(error);
    }
    println!("\nnats-server with JetStream: nats://127.0.0.1:{nats_port}");
    for (name, node) in &started {
        println!(
            "node {name}: mqtt://127.0.0.1:{}  dashboard http://127.0.0.1:{}/",
            node.tcp_port, node.http_port
        );
    }
    println!("\nCtrl-C stops the cluster.");
    // Ctrl-C reaches nats-server and the nodes too (one process group); this returns then.
    let _ = nats.wait();
    stop(&mut nats, &mut started);
    Ok(())
}

/// Debian's nats-server with JetStream on a free loopback port, its store under `dir/nats`,
/// quiet; returns at once ([`start_nodes`] waits for its port).
pub fn spawn_nats(dir: &Path) -> Result<(Child, u16)> {
    let nats_port = process::free_port()?;
    let nats = process::command("nats-server")
        .args([
            "-a",
            "127.0.0.1",
            "-p",
            &nats_port.to_string(),
            "-js",
            "-sd",
        ])
        .arg(dir.join("nats"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting nats-server")?;
    Ok((nats, nats_port))
}

/// Once nats-server accepts connections: `nodes` release gateways named a, b, c, ..., each
/// joined to it, appended to `started` as they come up (so that the caller stops those on an
/// error too).
pub fn start_nodes(
    dir: &Path,
    nats_port: u16,
    nodes: usize,
    started: &mut Vec<(String, ReleaseGateway)>,
) -> Result<()> {
    process::wait_for_port(nats_port)?;
    for index in 0..nodes {
        let name = char::from(b'a' + u8::try_from(index).expect("at most 26 nodes")).to_string();
        let extra: Vec<OsString> = [
            "--cluster".to_owned(),
            format!("nats://127.0.0.1:{nats_port}"),
            "--node-name".to_owned(),
            name.clone(),
        ]
        .into_iter()
        .map(OsString::from)
        .collect();
        let node = gateway::start_release(dir, &name, &extra)?;
        started.push((name, node));
    }
    Ok(())
}

/// Ends whatever is still running, by PID.
pub fn stop(nats: &mut Child, started: &mut [(String, ReleaseGateway)]) {
    for (_, node) in started.iter_mut() {
        let _ = node.child.kill();
        let _ = node.child.wait();
    }
    let _ = nats.kill();
    let _ = nats.wait();
}
