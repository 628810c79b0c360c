//! `cargo xtask dist` (the browser parts) and `cargo xtask run` (dist, then the gateway).
//!
//! dist: `client-wasm` is built with the size-first `wasm-release` profile, bound with the
//! wasm-bindgen CLI pinned by Cargo.lock into the npm package `client-wasm/pkg`, and shrunk with
//! `wasm-opt -Oz` from the npm package `binaryen`; then `www` runs its npm `build` script.
//! Parts that do not exist yet are skipped with a note.

use anyhow::{Context, Result, bail};

use crate::prerequisites::{self, WASM_TARGET};
use crate::process::{self, root, target_dir};
use crate::test::has_gateway_binary;

/// `cargo xtask run [args]`: dist when there is a browser client, then the gateway in release
/// mode with `args` passed through.
pub fn run_gateway(args: &[String]) -> Result<()> {
    if root().join("client-wasm").exists() {
        run()?;
    }
    if !has_gateway_binary() {
        bail!("there is no gateway binary crate yet (gateway/ is in progress)");
    }
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
        .stdin(std::process::Stdio::inherit());
    process::run(&mut gateway)
}

/// `cargo xtask dist`: builds whichever of client-wasm and www exist.
pub fn run() -> Result<()> {
    if root().join("client-wasm/Cargo.toml").exists() {
        client_wasm()?;
    } else {
        println!("note: no client-wasm crate yet; skipping the npm package");
    }
    if root().join("www/package.json").exists() {
        www()?;
    } else {
        println!("note: no www/package.json yet; skipping the dashboard build");
    }
    Ok(())
}

/// Builds `client-wasm/pkg`: cargo build, wasm-bindgen `--target web`, `wasm-opt -Oz`.
fn client_wasm() -> Result<()> {
    prerequisites::ensure_wasm_target()?;
    let version = prerequisites::wasm_bindgen_locked_version()?
        .context("client-wasm exists but wasm-bindgen is not in Cargo.lock")?;
    prerequisites::ensure_wasm_bindgen_cli(&version)?;
    if root().join("package.json").exists() {
        prerequisites::ensure_npm_dependencies()?;
    }

    process::run(process::cargo().args([
        "build",
        "-p",
        "client-wasm",
        "--target",
        WASM_TARGET,
        "--profile",
        "wasm-release",
    ]))?;
    let wasm = target_dir()
        .join(WASM_TARGET)
        .join("wasm-release/client_wasm.wasm");
    let out_dir = root().join("client-wasm/pkg");
    let mut bindgen = process::command(prerequisites::wasm_bindgen_program());
    bindgen
        .arg(&wasm)
        .args(["--target", "web", "--out-dir"])
        .arg(&out_dir);
    process::run(&mut bindgen)?;

    // The features rustc enables by default for wasm32-unknown-unknown (wasm-opt must accept
    // them), and no custom sections left in what browsers download.
    let bound = out_dir.join("client_wasm_bg.wasm");
    let mut optimize = process::command("npx");
    optimize
        .args(["--yes", "--package=binaryen", "--", "wasm-opt", "-Oz"])
        .args([
            "--enable-bulk-memory",
            "--enable-multivalue",
            "--enable-mutable-globals",
            "--enable-nontrapping-float-to-int",
            "--enable-reference-types",
            "--enable-sign-ext",
            "--strip-debug",
            "--strip-producers",
            "--strip-target-features",
        ])
        .arg(&bound)
        .arg("-o")
        .arg(&bound);
    process::run(&mut optimize)
}

/// Builds the dashboard with its npm `build` script.
fn www() -> Result<()> {
    if root().join("package.json").exists() {
        prerequisites::ensure_npm_dependencies()?;
    }
    let mut build = process::command("npm");
    build.args(["run", "build"]).current_dir(root().join("www"));
    process::run(&mut build)
}
