//! `cargo xtask test`: install what is missing, then run every test, stopping at the first failure.
//!
//! Order: prerequisites, `cargo test` (all targets, then doctests), the dashboard's unit tests
//! (`node --test www/tests/unit`), the wasm build gate of `mqtt-codec`, then the interop tests
//! under `tests/interop` once per paho-mqtt generation against a freshly built `gateway`, then
//! the dashboard's browser tests (`tests/browser/dashboard`: `cargo xtask dist`, a gateway built
//! with the dashboard embedded, Chromium through playwright-core). Between the two, client-wasm:
//! its package build and size budget, its wasm-bindgen tests in headless Chromium against a
//! gateway started here, and the Playwright test of the packed package (`tests/browser/client`).
//! A step whose inputs do not exist yet is skipped with a note.
//! A summary with each step's duration is printed at the end, also after a failure.

use std::path::Path;

use anyhow::{Context, Result, bail};

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
    client_wasm_tests(steps)?;
    dashboard_browser_tests(steps)
}

/// The size budget of the wasm package (DESIGN.md, issue #5): what browsers download (the
/// `.wasm` and the JS module), each file gzipped, at most 35 KB. Above it the run fails.
const PACKAGE_BUDGET_BYTES: u64 = 35 * 1024;

/// client-wasm: the package build and its size budget, the wasm-bindgen tests in headless
/// Chromium against a gateway started here, and the Playwright test of the packed package.
fn client_wasm_tests(steps: &mut Steps) -> Result<()> {
    if !root().join("client-wasm/Cargo.toml").exists() {
        steps.skip("client-wasm tests", "no client-wasm crate yet");
        return Ok(());
    }
    if !has_gateway_binary() {
        steps.skip("client-wasm tests", "no gateway binary crate yet");
        return Ok(());
    }
    let chromium = std::env::var_os("CHROMIUM").unwrap_or_else(|| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() || !Path::new(CHROMEDRIVER).exists() {
        steps.skip(
            "client-wasm tests",
            "no Chromium and chromedriver at /usr/bin (Debian's chromium, chromium-driver)",
        );
        return Ok(());
    }
    steps.run("cargo build -p gateway --bin gateway", || {
        process::run(process::cargo().args(["build", "-p", "gateway", "--bin", "gateway"]))
    })?;
    steps.run("cargo xtask dist", crate::dist::run)?;
    steps.run("client-wasm package size budget", || {
        let sizes = crate::dist::package_sizes(&root().join("client-wasm/pkg"))?;
        crate::dist::print_package_sizes(&sizes);
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
            .env("GATEWAY_BIN", target_dir().join("debug/gateway"))
            .env("CLIENT_WASM_PKG", root().join("client-wasm/pkg"))
            .env("CHROMIUM", &chromium);
        process::run(&mut node)
    })
}

/// Debian's chromedriver, which wasm-bindgen-test-runner drives.
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// `target/debug/gateway` on free loopback ports, for tests that cannot start one themselves.
struct TestGateway {
    child: std::process::Child,
    /// The HTTP listener's address (`127.0.0.1:PORT`).
    http: String,
    data_dir: std::path::PathBuf,
}

impl TestGateway {
    /// Starts the gateway and waits (at most 15 s) for its `listening http` line.
    fn start(extra_args: &[&str]) -> Result<TestGateway> {
        use std::io::{BufRead, BufReader};
        let data_dir = target_dir().join("client-wasm-test-data");
        let _ = std::fs::remove_dir_all(&data_dir);
        let mut child = process::command(target_dir().join("debug/gateway"))
            .args([
                "--tcp",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(&data_dir)
            .args(extra_args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
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
        match receiver.recv_timeout(std::time::Duration::from_secs(15)) {
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
    fn stop(mut self) {
        let _ = process::command("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
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
