//! Embeds the dashboard into the gateway: every file of `www/dist` (built by `cargo xtask dist`)
//! becomes a static byte slice in the binary, so `target/release/gateway` is self-contained.
//!
//! The script writes `$OUT_DIR/dashboard_assets.rs`, included by `src/http/dashboard.rs`: a table
//! of URL path, `include_bytes!` of the file, and an entity tag (a hash of the content). When
//! `www/dist/index.html` does not exist the table is empty and the gateway serves a page that
//! says how to build the dashboard.
//!
//! Rebuilds: with a dist, cargo watches `www/dist` (the whole tree); without one it watches `www/`
//! so that a dist appearing there is noticed. Never a missing path: cargo treats those as always
//! changed and would rebuild the gateway on every build.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let www = manifest_dir.join("../www");
    let dist = www.join("dist");

    let mut files = Vec::new();
    if dist.join("index.html").is_file() {
        println!("cargo::rerun-if-changed={}", dist.display());
        collect(&dist, &mut files);
        files.sort();
    } else if www.is_dir() {
        println!("cargo::rerun-if-changed={}", www.display());
    } else {
        println!("cargo::rerun-if-changed=build.rs");
    }

    let mut table = String::from("&[\n");
    for file in &files {
        let relative = file.strip_prefix(&dist).expect("collected under dist");
        let url_path: String = relative
            .components()
            .map(|part| format!("/{}", part.as_os_str().to_string_lossy()))
            .collect();
        let bytes = std::fs::read(file).expect("read a dist file");
        let absolute = file.canonicalize().expect("canonical path of a dist file");
        let _ = writeln!(
            table,
            "    Asset {{ path: {url_path:?}, bytes: include_bytes!({absolute:?}), etag: \"\\\"{:016x}\\\"\" }},",
            fnv1a(&bytes)
        );
    }
    table.push(']');

    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo"));
    std::fs::write(
        out.join("dashboard_assets.rs"),
        format!(
            "/// The files of `www/dist`, sorted by path.\npub static ASSETS: &[Asset] = {table};\n"
        ),
    )
    .expect("write dashboard_assets.rs");
}

/// Every regular file under `dir`, recursively.
fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).expect("read a dist directory");
    for entry in entries {
        let path = entry.expect("a dist directory entry").path();
        if path.is_dir() {
            collect(&path, files);
        } else if path.is_file() {
            files.push(path);
        }
    }
}

/// 64-bit FNV-1a: a stable content hash for entity tags, with no dependency.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}
