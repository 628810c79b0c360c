//! What the tests need beyond cargo, each checked first and installed only when missing.
//!
//! Every install prints one `installing ...` line before it runs, so a log tells what a run
//! changed on the machine. Checks are cheap (a path, `dpkg-query`, a `--version`), so a second
//! `cargo xtask test` installs nothing. Debian packages are installed only when running as root;
//! otherwise a note names what is missing and the run goes on.

use std::path::Path;
use std::time::SystemTime;

use anyhow::{Context, Result};

use crate::process::{self, root, target_dir};
use crate::steps::Steps;

/// The Rust target of the browser client; `mqtt-codec` must build for it too.
pub const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// Debian packages the interop, browser and cluster tests use (`openssl`: the CLI that makes
/// the TLS tests' certificates, which minimal Debian images do not have; `nats-server`: the
/// NATS the cluster tests' nodes share).
const DEBIAN_PACKAGES: [&str; 6] = [
    "mosquitto",
    "mosquitto-clients",
    "chromium",
    "chromium-driver",
    "openssl",
    "nats-server",
];

/// A Python virtualenv under `target/venv/` with one version range of paho-mqtt and pytest.
pub struct Venv {
    /// Directory name under `target/venv/`; also the name in logs.
    pub name: &'static str,
    /// The pip requirement for paho-mqtt.
    requirement: &'static str,
    /// Whether an installed paho-mqtt version satisfies `requirement`.
    accepts: fn(&str) -> bool,
}

/// The two paho-mqtt generations the interop tests run against: 1.x (still the most deployed)
/// and 2.x (new callback API).
pub const VENVS: [Venv; 2] = [
    Venv {
        name: "paho1",
        requirement: "paho-mqtt==1.6.1",
        accepts: |version| version == "1.6.1",
    },
    Venv {
        name: "paho2",
        requirement: "paho-mqtt>=2.1,<3",
        accepts: |version| matches!(major_minor(version), Some((2, minor)) if minor >= 1),
    },
];

impl Venv {
    /// The virtualenv's directory.
    pub fn dir(&self) -> std::path::PathBuf {
        target_dir().join("venv").join(self.name)
    }

    /// The virtualenv's Python interpreter.
    pub fn python(&self) -> std::path::PathBuf {
        self.dir().join("bin/python")
    }
}

/// Checks and, where missing, installs everything `cargo xtask test` needs, one step each.
pub fn ensure_all(steps: &mut Steps) -> Result<()> {
    steps.run("wasm32 target", ensure_wasm_target)?;
    steps.run("Debian packages", ensure_debian_packages)?;
    for venv in &VENVS {
        steps.run(&format!("python venv {}", venv.name), || ensure_venv(venv))?;
    }
    steps.run("npm dependencies", ensure_npm_dependencies)?;
    steps.run("wasm-bindgen CLI", || {
        ensure_wasm_bindgen_cli(&wasm_bindgen_locked_version()?)
    })
}

/// Adds the wasm32 target to the toolchain unless its standard library is already there.
pub fn ensure_wasm_target() -> Result<()> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = process::probe(process::command(rustc).args(["--print", "sysroot"]))
        .context("`rustc --print sysroot` failed")?;
    let target_lib = Path::new(&sysroot).join("lib/rustlib").join(WASM_TARGET);
    if target_lib.exists() {
        println!("{WASM_TARGET}: present");
        return Ok(());
    }
    println!("installing Rust target {WASM_TARGET}");
    process::run(process::command("rustup").args(["target", "add", WASM_TARGET]))
}

/// Installs the missing Debian packages with apt-get when root; otherwise notes them.
pub fn ensure_debian_packages() -> Result<()> {
    if process::probe(process::command("dpkg-query").arg("--version")).is_none() {
        println!(
            "note: no dpkg-query (not Debian?); install yourself: {}",
            DEBIAN_PACKAGES.join(" ")
        );
        return Ok(());
    }
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .into_iter()
        .filter(|package| !debian_package_installed(package))
        .collect();
    if missing.is_empty() {
        println!("present: {}", DEBIAN_PACKAGES.join(" "));
        return Ok(());
    }
    if !is_root() {
        println!(
            "note: not root, so not installing; missing: {0}\n      \
             install with: sudo apt-get install {0}",
            missing.join(" ")
        );
        return Ok(());
    }
    for package in &missing {
        println!("installing Debian package {package}");
    }
    process::run(process::command("apt-get").args(["update", "-q"]))?;
    // With recommended packages, as on the machines where Chromium was seen to work (fonts).
    let mut install = process::command("apt-get");
    install
        .args(["install", "-y", "-q"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive");
    process::run(&mut install)
}

/// Whether dpkg reports `package` as installed.
fn debian_package_installed(package: &str) -> bool {
    let status =
        process::probe(process::command("dpkg-query").args(["-W", "-f=${Status}", package]));
    status.as_deref() == Some("install ok installed")
}

/// Whether this process runs as root (user id 0).
fn is_root() -> bool {
    process::probe(process::command("id").arg("-u")).as_deref() == Some("0")
}

/// Creates the virtualenv if needed and installs paho-mqtt and pytest unless the right
/// versions are already there.
fn ensure_venv(venv: &Venv) -> Result<()> {
    let python = venv.python();
    let installed = process::probe(process::command(&python).args([
        "-c",
        "import importlib.metadata, pytest; print(importlib.metadata.version('paho-mqtt'))",
    ]));
    if let Some(version) = &installed {
        if (venv.accepts)(version) {
            println!("{}: paho-mqtt {version} and pytest present", venv.name);
            return Ok(());
        }
    }
    if process::probe(process::command(&python).arg("--version")).is_none() {
        println!("installing Python virtualenv {}", venv.dir().display());
        // --clear: a venv whose interpreter no longer runs (e.g. Python moved) is rebuilt.
        let mut create = process::command("python3");
        create.args(["-m", "venv", "--clear"]).arg(venv.dir());
        process::run(&mut create)?;
    }
    println!(
        "installing {} and pytest into {}",
        venv.requirement, venv.name
    );
    let mut pip = process::command(&python);
    pip.args(["-m", "pip", "install", "-q"])
        .args([venv.requirement, "pytest"])
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        .env("PIP_NO_INPUT", "1");
    process::run(&mut pip)
}

/// Runs `npm ci` (or `npm install` without a lockfile) unless `node_modules` is newer than
/// `package.json` and `package-lock.json`.
pub fn ensure_npm_dependencies() -> Result<()> {
    let root = root();
    let installed = modified(&root.join("node_modules/.package-lock.json"));
    let inputs = [
        modified(&root.join("package.json")),
        modified(&root.join("package-lock.json")),
    ];
    if let Some(installed) = installed {
        if inputs.iter().flatten().all(|input| *input <= installed) {
            println!("node_modules: up to date");
            return Ok(());
        }
    }
    let verb = if root.join("package-lock.json").exists() {
        "ci"
    } else {
        "install"
    };
    println!("installing npm dependencies (npm {verb})");
    process::run(process::command("npm").args([verb, "--no-audit", "--no-fund"]))
}

/// A file's modification time, or `None` when it does not exist.
fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path)
        .and_then(|meta| meta.modified())
        .ok()
}

/// The version of the `wasm-bindgen` crate pinned in Cargo.lock (client-wasm depends on it).
pub fn wasm_bindgen_locked_version() -> Result<String> {
    let path = root().join("Cargo.lock");
    let lock =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    locked_version(&lock, "wasm-bindgen")
        .with_context(|| format!("no wasm-bindgen in {}", path.display()))
}

/// The wasm-bindgen CLI: the one in cargo's bin directory if there, else the one on `PATH`.
pub fn wasm_bindgen_program() -> std::path::PathBuf {
    let installed = process::cargo_bin_dir().join("wasm-bindgen");
    if installed.exists() {
        installed
    } else {
        "wasm-bindgen".into()
    }
}

/// Installs `wasm-bindgen-cli` at `version` unless `wasm-bindgen --version` already says it.
///
/// The CLI must match the crate exactly: wasm-bindgen refuses a module built by another version.
pub fn ensure_wasm_bindgen_cli(version: &str) -> Result<()> {
    let current = process::probe(process::command(wasm_bindgen_program()).arg("--version"));
    // `wasm-bindgen 0.2.100` (possibly followed by a commit hash).
    if current
        .as_deref()
        .and_then(|line| line.split_whitespace().nth(1))
        == Some(version)
    {
        println!("wasm-bindgen {version}: present");
        return Ok(());
    }
    println!("installing wasm-bindgen-cli {version}");
    let mut install = process::cargo();
    install.args([
        "install",
        "wasm-bindgen-cli",
        "--version",
        version,
        "--no-default-features",
    ]);
    process::run(&mut install)
}

/// The version of the first `[[package]]` named `name` in the text of a Cargo.lock.
fn locked_version(lock: &str, name: &str) -> Option<String> {
    let mut in_named_package = false;
    for line in lock.lines().map(str::trim) {
        if line == "[[package]]" {
            in_named_package = false;
        } else if let Some(value) = line.strip_prefix("name = ") {
            in_named_package = value.trim_matches('"') == name;
        } else if let Some(value) = line.strip_prefix("version = ") {
            if in_named_package {
                return Some(value.trim_matches('"').to_string());
            }
        }
    }
    None
}

/// `(major, minor)` of a version such as `2.1.0`.
fn major_minor(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCK: &str = r#"
# This file is automatically @generated by Cargo.
version = 4

[[package]]
name = "wasm-bindgen-backend"
version = "0.2.99"

[[package]]
name = "wasm-bindgen"
version = "0.2.100"
source = "registry+https://github.com/rust-lang/crates.io-index"
dependencies = [
 "wasm-bindgen-macro",
]
"#;

    #[test]
    fn finds_the_exact_crate_in_cargo_lock() {
        assert_eq!(
            locked_version(LOCK, "wasm-bindgen").as_deref(),
            Some("0.2.100")
        );
        assert_eq!(
            locked_version(LOCK, "wasm-bindgen-backend").as_deref(),
            Some("0.2.99")
        );
        assert_eq!(locked_version(LOCK, "wasm-bindgen-macro"), None);
        assert_eq!(locked_version("version = 4\n", "wasm-bindgen"), None);
    }

    #[test]
    fn venv_version_ranges() {
        let [paho1, paho2] = &VENVS;
        assert!((paho1.accepts)("1.6.1"));
        assert!(!(paho1.accepts)("1.6.0"));
        assert!(!(paho1.accepts)("2.1.0"));
        assert!((paho2.accepts)("2.1.0"));
        assert!((paho2.accepts)("2.3.12"));
        assert!(!(paho2.accepts)("2.0.0"));
        assert!(!(paho2.accepts)("3.0.0"));
        assert!(!(paho2.accepts)("1.6.1"));
    }
}
