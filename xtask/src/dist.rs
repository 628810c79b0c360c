//! `cargo xtask dist` (the browser parts) and `cargo xtask run` (dist, then the gateway).
//!
//! dist: `client-wasm` is built with the size-first `wasm-release` profile, bound with the
//! wasm-bindgen CLI pinned by Cargo.lock into the npm package `client-wasm/pkg`, and shrunk with
//! `wasm-opt -Oz` from the npm package `binaryen`; the package gets its own `package.json` and
//! README, the shipped scripts are minified by esbuild (a dev dependency of the npm workspace),
//! and the sizes browsers download are printed. Then `www` runs its npm `build` script.
//! Parts that do not exist yet are skipped with a note.

use std::path::Path;

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
    // Stale files (a renamed snippet) must not reach the package.
    if out_dir.exists() {
        std::fs::remove_dir_all(&out_dir)
            .with_context(|| format!("removing {}", out_dir.display()))?;
    }
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
    process::run(&mut optimize)?;

    write_package_files(&out_dir)?;
    let mut scripts = vec![out_dir.join("client_wasm.js")];
    collect_js(&out_dir.join("snippets"), &mut scripts)?;
    for script in &scripts {
        minify_script(script)?;
    }
    let sizes = package_sizes(&out_dir)?;
    print_package_sizes(&sizes);
    Ok(())
}

/// The npm manifest of `client-wasm/pkg`. wasm-bindgen's own has no `exports`, `files` or
/// version of ours, so it is replaced.
fn package_manifest(version: &str) -> String {
    format!(
        r#"{{
  "name": "client-wasm",
  "version": "{version}",
  "description": "MQTT 3.1.1 and 5.0 client for browsers and Web Workers, over WebSocket, in WebAssembly",
  "license": "MIT OR Apache-2.0",
  "type": "module",
  "main": "./client_wasm.js",
  "module": "./client_wasm.js",
  "types": "./client_wasm.d.ts",
  "exports": {{
    ".": {{
      "types": "./client_wasm.d.ts",
      "import": "./client_wasm.js",
      "default": "./client_wasm.js"
    }},
    "./client_wasm_bg.wasm": "./client_wasm_bg.wasm",
    "./package.json": "./package.json"
  }},
  "files": [
    "client_wasm.js",
    "client_wasm.d.ts",
    "client_wasm_bg.wasm",
    "client_wasm_bg.wasm.d.ts",
    "snippets/",
    "README.md"
  ],
  "sideEffects": [
    "./snippets/*"
  ],
  "keywords": ["mqtt", "websocket", "wasm", "iot"]
}}
"#
    )
}

/// Writes `package.json` and copies the README into the package.
fn write_package_files(out_dir: &Path) -> Result<()> {
    let manifest = out_dir.join("package.json");
    std::fs::write(&manifest, package_manifest(env!("CARGO_PKG_VERSION")))
        .with_context(|| format!("writing {}", manifest.display()))?;
    let readme = root().join("client-wasm/README.md");
    std::fs::copy(&readme, out_dir.join("README.md"))
        .with_context(|| format!("copying {}", readme.display()))?;
    Ok(())
}

/// Minifies a shipped script in place with esbuild: whitespace, comments (the documentation
/// lives in the `.d.ts`) and local names. No `--format`, so esbuild keeps the module's
/// top-level names (`MqttClient`, `MqttMessage`) as they are. Node then parses the result.
fn minify_script(path: &Path) -> Result<()> {
    let esbuild = root().join("node_modules/.bin/esbuild");
    if !esbuild.exists() {
        bail!(
            "{} is missing: esbuild is a dev dependency of the npm workspace (npm ci)",
            esbuild.display()
        );
    }
    let mut minify = process::command(&esbuild);
    minify
        .arg(path)
        .arg("--minify")
        .arg("--allow-overwrite")
        .arg("--log-level=warning")
        // wasm-bindgen's glue names the support module once per import group in one object.
        .arg("--log-override:duplicate-object-key=silent")
        .arg(format!("--outfile={}", path.display()));
    process::run(&mut minify)?;
    process::run(process::command("node").arg("--check").arg(path))
}

/// One shipped file's size, raw and gzipped.
pub struct FileSize {
    /// Path relative to the package.
    pub name: String,
    /// Bytes on disk.
    pub raw: u64,
    /// Bytes after `gzip -9`.
    pub gzipped: u64,
}

/// The sizes of what browsers download: the .wasm, the JS glue and its snippets.
pub fn package_sizes(out_dir: &Path) -> Result<Vec<FileSize>> {
    let mut files = vec![
        out_dir.join("client_wasm_bg.wasm"),
        out_dir.join("client_wasm.js"),
    ];
    collect_js(&out_dir.join("snippets"), &mut files)?;
    files
        .iter()
        .map(|path| {
            let raw = std::fs::metadata(path)
                .with_context(|| format!("reading {}", path.display()))?
                .len();
            let mut gzip = process::command("sh");
            gzip.arg("-c").arg("gzip -9 -c \"$0\" | wc -c").arg(path);
            let gzipped = process::probe(&mut gzip)
                .and_then(|count| count.parse().ok())
                .with_context(|| format!("gzip -9 of {}", path.display()))?;
            let name = path
                .strip_prefix(out_dir)
                .unwrap_or(path)
                .display()
                .to_string();
            Ok(FileSize { name, raw, gzipped })
        })
        .collect()
}

fn collect_js(dir: &Path, files: &mut Vec<std::path::PathBuf>) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries {
        let path = entry?.path();
        if path.is_dir() {
            collect_js(&path, files)?;
        } else if path.extension().is_some_and(|extension| extension == "js") {
            files.push(path);
        }
    }
    Ok(())
}

/// Prints one line per file and the gzipped total.
pub fn print_package_sizes(sizes: &[FileSize]) {
    println!("client-wasm package (what browsers download):");
    for size in sizes {
        println!(
            "  {:>8} bytes  {:>7} gzipped  {}",
            size.raw, size.gzipped, size.name
        );
    }
    let total: u64 = sizes.iter().map(|size| size.gzipped).sum();
    println!("  total {total} bytes gzipped");
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
