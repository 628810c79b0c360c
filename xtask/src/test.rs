//! `cargo xtask test`: install what is missing, then run every test, stopping at the first failure.
//!
//! Order: prerequisites, `cargo test` (all targets, then doctests), the dashboard's unit tests
//! (`node --test www/tests/unit`), the wasm build gate of `mqtt-codec`, then the interop tests
//! under `tests/interop` once per paho-mqtt generation against a freshly built `gateway`, a
//! 30-second soak (`cargo xtask soak --minutes 0.5 --debug`: its loss checks), then
//! the dashboard's browser tests (`tests/browser/dashboard`: `cargo xtask dist`, a gateway built
//! with the dashboard embedded, Chromium through playwright-core). Between the two, client-wasm:
//! its package build and size budget, its wasm-bindgen tests in headless Chromium against a
//! gateway started here, and the Playwright test of the packed package (`tests/browser/client`).
//! Every part of the project is required: one that is missing fails its step. Only the browser
//! steps may be skipped, when Chromium is missing and could not be installed (not root), and
//! never under CI (see [`Steps::missing`]).
//! A summary with each step's duration is printed at the end, also after a failure.

use std::ffi::OsString;
use std::path::Path;

use anyhow::{Result, bail};

use crate::dist;
use crate::gateway::{self, TestGateway};
use crate::prerequisites::{self, VENVS, WASM_TARGET};
use crate::process::{self, root};
use crate::soak;
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

    steps.run("node --test www/tests/unit", || {
        process::run(
            process::command("node")
                .args(["--test", "www/tests/unit/"])
                .current_dir(root()),
        )
    })?;
    steps.run("wasm build gate: mqtt-codec for wasm32", || {
        process::run(process::cargo().args(["build", "-p", "mqtt-codec", "--target", WASM_TARGET]))
    })?;

    interop(steps)?;
    steps.run("cargo xtask soak --minutes 0.5 --debug", || {
        soak::run(&["--minutes".into(), "0.5".into(), "--debug".into()])
    })?;
    client_wasm_tests(steps)?;
    dashboard_browser_tests(steps)
}

/// The size budget of the wasm package (DESIGN.md, issue #5): what browsers download (the
/// `.wasm` and the JS module), each file gzipped, at most 35 KB. Above it the run fails.
const PACKAGE_BUDGET_BYTES: u64 = 35 * 1024;

/// client-wasm: the package build and its size budget, the wasm-bindgen tests in headless
/// Chromium against a gateway started here, and the Playwright test of the packed package.
fn client_wasm_tests(steps: &mut Steps) -> Result<()> {
    let chromium = chromium();
    if !Path::new(&chromium).exists() || !Path::new(CHROMEDRIVER).exists() {
        return steps.missing(
            "client-wasm tests",
            "no Chromium and chromedriver at /usr/bin (Debian's chromium, chromium-driver)",
        );
    }
    steps.run("cargo build -p gateway --bin gateway", gateway::build)?;
    steps.run("cargo xtask dist", dist::run)?;
    steps.run("client-wasm package size budget", || {
        let sizes = dist::package_sizes(&root().join("client-wasm/pkg"))?;
        dist::print_package_sizes(&sizes);
        let total: u64 = sizes.iter().map(|size| size.gzipped).sum();
        if total > PACKAGE_BUDGET_BYTES {
            bail!(
                "the client-wasm package is {total} bytes gzipped, over its budget of \
                 {PACKAGE_BUDGET_BYTES}"
            );
        }
        println!(
            "  within the budget of {PACKAGE_BUDGET_BYTES} bytes gzipped ({} to spare)",
            PACKAGE_BUDGET_BYTES - total
        );
        Ok(())
    })?;
    steps.run(
        "client-wasm: wasm-bindgen-test in headless Chromium",
        || {
            let gateway = TestGateway::start(&["--max-packet-size", "65536"])?;
            let runner =
                prerequisites::wasm_bindgen_program().with_file_name("wasm-bindgen-test-runner");
            let mut test = process::cargo();
            test.args([
                "test",
                "-p",
                "client-wasm",
                "--target",
                WASM_TARGET,
                "--test",
                "browser",
            ])
            .env("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER", runner)
            .env("CHROMEDRIVER", CHROMEDRIVER)
            .env("WASM_BINDGEN_TEST_TIMEOUT", "180")
            .env(
                "WASM_BINDGEN_TEST_WEBDRIVER_JSON",
                root().join("client-wasm/webdriver.json"),
            )
            .env(
                "CLIENT_WASM_TEST_WS_URL",
                format!("ws://{}/mqtt", gateway.http),
            );
            let result = process::run(&mut test);
            gateway.stop();
            result
        },
    )?;
    steps.run("client-wasm: Playwright test of the packed package", || {
        let mut node = process::command("node");
        node.args(["--test", "--test-concurrency=1", "tests/browser/client/"])
            .env("GATEWAY_BIN", gateway::debug_binary())
            .env("CLIENT_WASM_PKG", root().join("client-wasm/pkg"))
            .env("CHROMIUM", &chromium);
        process::run(&mut node)
    })
}

/// Debian's chromedriver, which wasm-bindgen-test-runner drives.
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Builds the browser parts and a gateway that embeds them, then runs the dashboard's browser
/// tests against it (each test file starts its own gateway on free ports).
fn dashboard_browser_tests(steps: &mut Steps) -> Result<()> {
    let name = "browser tests: dashboard";
    let chromium = chromium();
    if !Path::new(&chromium).exists() {
        return steps.missing(
            name,
            "no Chromium at /usr/bin/chromium (set CHROMIUM to another)",
        );
    }
    steps.run("cargo xtask dist", dist::run)?;
    steps.run(
        "cargo build -p gateway --bin gateway (dashboard embedded)",
        gateway::build,
    )?;
    // The plain `cargo test` ran before the dashboard was built, so its dashboard tests saw
    // the page that says so; now they check the embedded files.
    steps.run("cargo test -p gateway dashboard (embedded)", || {
        let mut test = process::cargo();
        test.args(["test", "-p", "gateway", "--test", "it", "dashboard::"])
            .env("GATEWAY_EXPECT_DASHBOARD", "1");
        process::run(&mut test)
    })?;
    let paho2 = VENVS
        .iter()
        .find(|venv| venv.name == "paho2")
        .expect("a paho2 virtualenv");
    steps.run(name, || {
        let mut node = process::command("node");
        node.args(["--test", "--test-concurrency=1", "tests/browser/dashboard/"])
            .current_dir(root())
            .env("GATEWAY_BIN", gateway::debug_binary())
            .env("PAHO_PYTHON", paho2.python())
            .env("CHROMIUM", &chromium);
        process::run(&mut node)
    })
}

/// Builds the gateway and runs `pytest tests/interop` with each paho-mqtt virtualenv.
fn interop(steps: &mut Steps) -> Result<()> {
    steps.run("cargo build -p gateway --bin gateway", gateway::build)?;
    for venv in &VENVS {
        steps.run(&format!("pytest tests/interop ({})", venv.name), || {
            let mut pytest = process::command(venv.python());
            pytest
                .args(["-m", "pytest", "tests/interop", "-q"])
                .env("GATEWAY_BIN", gateway::debug_binary());
            process::run(&mut pytest)
        })?;
    }
    Ok(())
}

/// The Chromium the browser tests drive: `$CHROMIUM`, else Debian's.
fn chromium() -> OsString {
    std::env::var_os("CHROMIUM").unwrap_or_else(|| "/usr/bin/chromium".into())
}
