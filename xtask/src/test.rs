//! `cargo xtask test`: install what is missing, then run every test, stopping at the first failure.
//!
//! Order: prerequisites, `cargo test` (all targets, then doctests), the dashboard's unit tests
//! (`node --test www/tests/unit`), the wasm build gate of `mqtt-codec`, then the interop tests
//! under `tests/interop` once per paho-mqtt generation against a freshly built `gateway`, then
//! the dashboard's browser tests (`tests/browser/dashboard`: `cargo xtask dist`, a gateway built
//! with the dashboard embedded, Chromium through playwright-core). A step whose inputs do not
//! exist yet is skipped with a note.
//! A summary with each step's duration is printed at the end, also after a failure.

use std::path::Path;

use anyhow::Result;

use crate::prerequisites::{self, VENVS, WASM_TARGET};
use crate::process::{self, root, target_dir};
use crate::steps::Steps;

/// Runs every step, prints the summary, and returns the first failure.
pub fn run() -> Result<()> {
    let mut steps = Steps::default();
    let result = run_steps(&mut steps);
    steps.print_summary();
    match &result {
        Ok(()) => println!("\ncargo xtask test: every step passed"),
        Err(_) => println!("\ncargo xtask test: FAILED (see the error below)"),
    }
    result
}

/// The steps of `cargo xtask test`, in order.
fn run_steps(steps: &mut Steps) -> Result<()> {
    prerequisites::ensure_all(steps)?;

    steps.run("cargo test --workspace --all-targets", || {
        process::run(process::cargo().args(["test", "--workspace", "--all-targets"]))
    })?;
    steps.run("cargo test --workspace --doc", || {
        process::run(process::cargo().args(["test", "--workspace", "--doc"]))
    })?;

    let www_unit = "node --test www/tests/unit";
    if root().join("www/tests/unit").exists() {
        steps.run(www_unit, || {
            process::run(
                process::command("node")
                    .args(["--test", "www/tests/unit/"])
                    .current_dir(root()),
            )
        })?;
    } else {
        steps.skip(www_unit, "no www/tests/unit yet");
    }

    let wasm_gate = "wasm build gate: mqtt-codec for wasm32";
    if root().join("mqtt-codec/Cargo.toml").exists() {
        steps.run(wasm_gate, || {
            process::run(process::cargo().args([
                "build",
                "-p",
                "mqtt-codec",
                "--target",
                WASM_TARGET,
            ]))
        })?;
    } else {
        steps.skip(wasm_gate, "no mqtt-codec crate yet");
    }

    interop(steps)?;
    dashboard_browser_tests(steps)
}

/// Builds the browser parts and a gateway that embeds them, then runs the dashboard's browser
/// tests against it (each test file starts its own gateway on free ports).
fn dashboard_browser_tests(steps: &mut Steps) -> Result<()> {
    let name = "browser tests: dashboard";
    let tests_dir = root().join("tests/browser/dashboard");
    if !tests_dir.exists() {
        steps.skip(name, "no tests/browser/dashboard yet");
        return Ok(());
    }
    if !root().join("client-wasm/Cargo.toml").exists() || !root().join("www/package.json").exists()
    {
        steps.skip(name, "the dashboard needs client-wasm and www");
        return Ok(());
    }
    let chromium = std::env::var_os("CHROMIUM").unwrap_or_else(|| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        steps.skip(
            name,
            "no Chromium at /usr/bin/chromium (set CHROMIUM to another)",
        );
        return Ok(());
    }
    steps.run("cargo xtask dist", crate::dist::run)?;
    steps.run(
        "cargo build -p gateway --bin gateway (dashboard embedded)",
        || process::run(process::cargo().args(["build", "-p", "gateway", "--bin", "gateway"])),
    )?;
    let paho2 = VENVS
        .iter()
        .find(|venv| venv.name == "paho2")
        .expect("a paho2 virtualenv");
    steps.run(name, || {
        let mut node = process::command("node");
        node.args(["--test", "--test-concurrency=1", "tests/browser/dashboard/"])
            .current_dir(root())
            .env("GATEWAY_BIN", target_dir().join("debug/gateway"))
            .env("PAHO_PYTHON", paho2.python())
            .env("CHROMIUM", &chromium);
        process::run(&mut node)
    })
}

/// Builds the gateway and runs `pytest tests/interop` with each paho-mqtt virtualenv.
fn interop(steps: &mut Steps) -> Result<()> {
    let interop_dir = root().join("tests/interop");
    if !has_python_tests(&interop_dir) {
        steps.skip("interop tests", "no tests/interop/test_*.py yet");
        return Ok(());
    }
    if !has_gateway_binary() {
        steps.skip("interop tests", "no gateway binary crate yet");
        return Ok(());
    }
    steps.run("cargo build -p gateway --bin gateway", || {
        process::run(process::cargo().args(["build", "-p", "gateway", "--bin", "gateway"]))
    })?;
    let gateway = target_dir().join("debug/gateway");
    for venv in &VENVS {
        steps.run(&format!("pytest tests/interop ({})", venv.name), || {
            let mut pytest = process::command(venv.python());
            pytest
                .args(["-m", "pytest", "tests/interop", "-q"])
                .env("GATEWAY_BIN", &gateway);
            process::run(&mut pytest)
        })?;
    }
    Ok(())
}

/// Whether `dir` holds at least one `test_*.py` file.
fn has_python_tests(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|entry| {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        name.starts_with("test_") && name.ends_with(".py")
    })
}

/// Whether the `gateway` crate exists with a `gateway` binary target.
pub fn has_gateway_binary() -> bool {
    let crate_dir = root().join("gateway");
    let Ok(manifest) = std::fs::read_to_string(crate_dir.join("Cargo.toml")) else {
        return false;
    };
    crate_dir.join("src/main.rs").exists()
        || crate_dir.join("src/bin/gateway.rs").exists()
        || crate_dir.join("src/bin/gateway/main.rs").exists()
        || manifest.contains("[[bin]]")
}
