//! `cargo xtask dist`: the browser parts, the npm package of client-wasm and the dashboard.
//!
//! dist: `client-wasm` is built with the size-first `wasm-release` profile, bound with the
//! wasm-bindgen CLI pinned by Cargo.lock into the npm package `client-wasm/pkg`, and shrunk with
//! `wasm-opt` from the npm package `binaryen`, which also shortens the names the glue and the
//! module know each other by; the glue and `js/support.js` are bundled into one minified module
//! by esbuild (a dev dependency of the npm workspace), the package gets its own `package.json`
//! and README, and the sizes browsers download are printed. Then `www` runs its npm `build`
//! script.

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::prerequisites::{self, WASM_TARGET};
use crate::process::{self, root, target_dir};

/// `cargo xtask dist`: builds client-wasm's package, then the dashboard (which uses it).
pub fn run() -> Result<()> {
    client_wasm()?;
    www()
}

/// Builds `client-wasm/pkg`: cargo build, wasm-bindgen `--target web`, `wasm-opt -Oz`, names
/// minified, scripts bundled into one and minified.
fn client_wasm() -> Result<()> {
    prerequisites::ensure_wasm_target()?;
    prerequisites::ensure_wasm_bindgen_cli(&prerequisites::wasm_bindgen_locked_version()?)?;
    prerequisites::ensure_npm_dependencies()?;

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
    let mut optimize = wasm_opt()?;
    optimize
        .args([
            // Lets wasm-opt fold constant offsets into loads and stores (0.1 KB gzipped), which
            // is sound when nothing touches the first KiB of memory. Rust's wasm32 module puts
            // its data from 1 MiB and its stack below that, growing down from 1 MiB: only a
            // stack of nearly 1 MiB would reach the first KiB, and that is an overflow anyway.
            "--low-memory-unused",
            // Flattening the code and running the relooper again before -Oz finds smaller
            // control flow than -Oz alone (0.1 KB gzipped); -Oz runs twice after it.
            "--flatten",
            "--rereloop",
            "-Oz",
            "-Oz",
            // Repeats all of the above while it still shrinks the module (a few dozen bytes).
            "--converge",
            "--strip-debug",
            "--strip-producers",
            "--strip-target-features",
        ])
        .arg(&bound)
        .arg("-o")
        .arg(&bound);
    process::run(&mut optimize)?;

    minify_names(&out_dir)?;
    bundle_scripts(&out_dir)?;
    write_package_files(&out_dir)?;
    check_links(&out_dir)?;
    let sizes = package_sizes(&out_dir)?;
    print_package_sizes(&sizes);
    Ok(())
}

/// `wasm-opt` from the npm package `binaryen` (a dev dependency of the npm workspace, pinned
/// exactly: another wasm-opt would ship another module), accepting the features rustc enables
/// by default for wasm32-unknown-unknown.
fn wasm_opt() -> Result<std::process::Command> {
    let wasm_opt = root().join("node_modules/.bin/wasm-opt");
    if !wasm_opt.exists() {
        bail!(
            "{} is missing: binaryen is a dev dependency of the npm workspace (npm ci)",
            wasm_opt.display()
        );
    }
    let mut command = process::command(&wasm_opt);
    command.args([
        "--enable-bulk-memory",
        "--enable-multivalue",
        "--enable-mutable-globals",
        "--enable-nontrapping-float-to-int",
        "--enable-reference-types",
        "--enable-sign-ext",
    ]);
    Ok(command)
}

/// Shortens the names by which the glue and the module know each other. wasm-bindgen names
/// each import after its function and a 16-digit hash (`__wbg_set_onclose_078935cf8d0fb024`),
/// and every name is spelt out in the module and again in the glue: about 2 KB gzipped of the
/// package. wasm-opt renames the imports, exports and import modules to one- or two-letter
/// names and prints the mapping, which [`rename_in_glue`] applies to the glue; the raw
/// exports' names in the `.d.ts` files follow. [`check_links`] then proves the two still fit
/// (a name the glue lacks fails the build here, not in a user's page).
fn minify_names(out_dir: &Path) -> Result<()> {
    let wasm = out_dir.join("client_wasm_bg.wasm");
    let mut minify = wasm_opt()?;
    minify
        .arg("--minify-imports-and-exports-and-modules")
        .arg(&wasm)
        .arg("-o")
        .arg(&wasm);
    let mapping = output(&mut minify)?;
    let mapping = NameMapping::parse(&mapping)?;
    let module = single_import_module(&wasm)?;

    let glue_path = out_dir.join("client_wasm.js");
    let glue = std::fs::read_to_string(&glue_path)
        .with_context(|| format!("reading {}", glue_path.display()))?;
    let glue = rename_in_glue(&glue, &mapping, &module)?;
    std::fs::write(&glue_path, glue).with_context(|| format!("writing {}", glue_path.display()))?;
    for types in ["client_wasm.d.ts", "client_wasm_bg.wasm.d.ts"] {
        let path = out_dir.join(types);
        let mut text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        for (name, short) in &mapping.exports {
            for prefix in ["readonly ", "export const "] {
                text = replace_name(
                    &text,
                    &format!("{prefix}{name}"),
                    &format!("{prefix}{short}"),
                );
            }
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }

    Ok(())
}

/// Instantiates the package's module through its glue's `initSync` in Node, which proves that
/// the glue provides every import the module names.
fn check_links(out_dir: &Path) -> Result<()> {
    let glue_path = out_dir.join("client_wasm.js");
    let wasm = out_dir.join("client_wasm_bg.wasm");
    let mut link = process::command("node");
    link.args([
        "--input-type=module",
        "-e",
        "const { pathToFileURL } = await import('node:url');\n\
         const { readFileSync } = await import('node:fs');\n\
         const glue = await import(pathToFileURL(process.argv[1]));\n\
         glue.initSync({ module: readFileSync(process.argv[2]) });",
    ])
    .arg(&glue_path)
    .arg(&wasm);
    process::run(&mut link)
}

/// What `wasm-opt --minify-imports-and-exports-and-modules` printed: `(module, name, short)`
/// per import and `(name, short)` per export.
#[derive(Debug, Default)]
struct NameMapping {
    imports: Vec<(String, String, String)>,
    exports: Vec<(String, String)>,
}

impl NameMapping {
    fn parse(text: &str) -> Result<NameMapping> {
        let json: serde_json::Value =
            serde_json::from_str(text).context("wasm-opt's name mapping is not JSON")?;
        let strings = |entry: &serde_json::Value| -> Vec<String> {
            entry
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|item| item.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut mapping = NameMapping::default();
        for entry in json["imports"].as_array().into_iter().flatten() {
            let [module, name, short] = <[String; 3]>::try_from(strings(entry))
                .map_err(|_| anyhow::anyhow!("unexpected import entry {entry}"))?;
            mapping.imports.push((module, name, short));
        }
        for entry in json["exports"].as_array().into_iter().flatten() {
            let [name, short] = <[String; 2]>::try_from(strings(entry))
                .map_err(|_| anyhow::anyhow!("unexpected export entry {entry}"))?;
            mapping.exports.push((name, short));
        }
        if mapping.imports.is_empty() || mapping.exports.is_empty() {
            bail!("wasm-opt printed no name mapping");
        }
        Ok(mapping)
    }
}

/// The one module every import of `wasm` comes from after minification, read by Node.
fn single_import_module(wasm: &Path) -> Result<String> {
    let mut list = process::command("node");
    list.args([
        "-e",
        "const bytes = require('node:fs').readFileSync(process.argv[1]);\n\
         const imports = WebAssembly.Module.imports(new WebAssembly.Module(bytes));\n\
         console.log(JSON.stringify([...new Set(imports.map((i) => i.module))]));",
    ])
    .arg(wasm);
    let modules: Vec<String> =
        serde_json::from_str(&output(&mut list)?).context("reading the module's import modules")?;
    match <[String; 1]>::try_from(modules) {
        Ok([module]) => Ok(module),
        Err(modules) => bail!("expected one import module after minification, found {modules:?}"),
    }
}

/// The glue with the minified names: each import of its own object (`import0`) renamed in
/// place, the imports from snippet modules added to that object under their short names, the
/// one import module returned, and every `wasm.export` renamed. Written against the glue of
/// wasm-bindgen `--target web` (pinned in Cargo.lock); a shape it does not recognise is an
/// error, never a silent half-rename.
fn rename_in_glue(glue: &str, mapping: &NameMapping, module: &str) -> Result<String> {
    // `"./path": importN,` lines of the object `__wbg_get_imports` returns.
    const RETURN_START: &str = "    return {\n        __proto__: null,\n";
    let start = glue
        .find(RETURN_START)
        .context("the glue's import object was not found")?;
    let end = start
        + glue[start..]
            .find("\n    };\n")
            .context("the glue's import object does not end")?
        + "\n    };\n".len();
    let mut variables = std::collections::HashMap::new();
    for line in glue[start + RETURN_START.len()..end].lines() {
        if let Some((path, variable)) = line.trim().trim_end_matches(',').split_once(": ") {
            variables.insert(path.trim_matches('"').to_string(), variable.to_string());
        }
    }
    let mut renamed = String::with_capacity(glue.len());
    renamed.push_str(&glue[..start]);
    renamed.push_str(&format!("    return {{ {module:?}: import0 }};\n"));
    renamed.push_str(&glue[end..]);
    let mut glue = renamed;

    let mut added = String::new();
    for (path, name, short) in &mapping.imports {
        let variable = variables
            .get(path)
            .with_context(|| format!("the glue does not import module {path}"))?;
        if variable == "import0" {
            let key = format!("\n        {name}: ");
            if glue.matches(&key).count() != 1 {
                bail!("import {name} is not defined exactly once in the glue");
            }
            glue = glue.replacen(&key, &format!("\n        {short}: "), 1);
        } else {
            added.push_str(&format!("        {short}: {variable}.{name},\n"));
        }
    }
    const OBJECT_START: &str = "    const import0 = {\n        __proto__: null,\n";
    if glue.matches(OBJECT_START).count() != 1 {
        bail!("the glue's import0 object was not found");
    }
    glue = glue.replacen(OBJECT_START, &format!("{OBJECT_START}{added}"), 1);

    for (name, short) in &mapping.exports {
        glue = replace_name(&glue, &format!("wasm.{name}"), &format!("wasm.{short}"));
    }
    Ok(glue)
}

/// Replaces `from` wherever it is a whole name: not preceded or followed by a character that
/// continues a JS identifier.
fn replace_name(text: &str, from: &str, to: &str) -> String {
    let continues = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '$';
    let mut result = String::with_capacity(text.len());
    let mut copied = 0;
    for (index, _) in text.match_indices(from) {
        let before = text[..index].chars().next_back();
        let after = text[index + from.len()..].chars().next();
        if before.is_some_and(continues) || after.is_some_and(continues) {
            continue;
        }
        result.push_str(&text[copied..index]);
        result.push_str(to);
        copied = index + from.len();
    }
    result.push_str(&text[copied..]);
    result
}

/// Runs `command` (echoed), failing unless it exits with 0; returns its standard output.
fn output(command: &mut std::process::Command) -> Result<String> {
    let line = process::display(command);
    println!("$ {line}");
    let output = command
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("could not start `{line}`"))?;
    if !output.status.success() {
        bail!("`{line}` failed ({})", output.status);
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
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
    "README.md"
  ],
  "sideEffects": false,
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

/// Bundles the glue and the snippets it imports (`js/support.js`) into the one module
/// `client_wasm.js` with esbuild, and minifies it: whitespace, comments (the documentation
/// lives in the `.d.ts`) and names, including those the two files knew each other by, which
/// only a bundle can shorten. The module keeps its exports (`MqttClient`, `initSync`, the
/// default `init`). One module is also one request and one gzip stream: 0.4 KB gzipped less
/// than the two minified apart. The snippets go; Node then parses the result.
fn bundle_scripts(out_dir: &Path) -> Result<()> {
    let esbuild = root().join("node_modules/.bin/esbuild");
    if !esbuild.exists() {
        bail!(
            "{} is missing: esbuild is a dev dependency of the npm workspace (npm ci)",
            esbuild.display()
        );
    }
    let glue = out_dir.join("client_wasm.js");
    let mut bundle = process::command(&esbuild);
    bundle
        .arg(&glue)
        .args(["--bundle", "--format=esm", "--minify", "--allow-overwrite"])
        .arg("--log-level=warning")
        // wasm-bindgen's glue imports the support module once per import group, by the same
        // path: the repeats are dropped (their imports are unused; wasm-bindgen's package.json
        // says the snippets have side effects, hence the warning).
        .arg("--log-override:duplicate-object-key=silent")
        .arg("--log-override:ignored-bare-import=silent")
        .arg(format!("--outfile={}", glue.display()));
    process::run(&mut bundle)?;
    let snippets = out_dir.join("snippets");
    std::fs::remove_dir_all(&snippets)
        .with_context(|| format!("removing {}", snippets.display()))?;
    process::run(process::command("node").arg("--check").arg(&glue))
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

/// The sizes of what browsers download: the .wasm and the JS module.
pub fn package_sizes(out_dir: &Path) -> Result<Vec<FileSize>> {
    let files = [
        out_dir.join("client_wasm_bg.wasm"),
        out_dir.join("client_wasm.js"),
    ];
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
    prerequisites::ensure_npm_dependencies()?;
    let mut build = process::command("npm");
    build.args(["run", "build"]).current_dir(root().join("www"));
    process::run(&mut build)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parts of wasm-bindgen's `--target web` glue that [`rename_in_glue`] touches.
    const GLUE: &str = r#"import * as import1 from "./snippets/x/support.js"
function __wbg_get_imports() {
    const import0 = {
        __proto__: null,
        __wbg_now_b8535541ea1e8bc4: function() {
            return performance.now();
        },
        __wbg_send_d83d0891cf698779: function(arg0) {
            arg0.send();
        },
    };
    return {
        __proto__: null,
        "./client_wasm_bg.js": import0,
        "./snippets/x/support.js": import1,
    };
}
function call(ptr) { return wasm.mqttclient_end(ptr) + wasm.mqttclient_end_all(ptr); }
"#;

    #[test]
    fn glue_names_follow_the_mapping() {
        let mapping = NameMapping {
            imports: vec![
                (
                    "./client_wasm_bg.js".into(),
                    "__wbg_now_b8535541ea1e8bc4".into(),
                    "a".into(),
                ),
                (
                    "./client_wasm_bg.js".into(),
                    "__wbg_send_d83d0891cf698779".into(),
                    "b".into(),
                ),
                (
                    "./snippets/x/support.js".into(),
                    "deliver".into(),
                    "c".into(),
                ),
            ],
            exports: vec![("mqttclient_end".into(), "d".into())],
        };
        let glue = rename_in_glue(GLUE, &mapping, "a").unwrap();
        assert!(glue.contains("        c: import1.deliver,\n        a: function() {"));
        assert!(glue.contains("        b: function(arg0) {"));
        assert!(glue.contains("    return { \"a\": import0 };\n}"));
        // A longer export that merely starts with a renamed one keeps its name.
        assert!(glue.contains("wasm.d(ptr) + wasm.mqttclient_end_all(ptr)"));
        assert!(!glue.contains("__wbg_now"));
    }

    #[test]
    fn an_unknown_glue_shape_is_an_error() {
        let mapping = NameMapping {
            imports: vec![(
                "./client_wasm_bg.js".into(),
                "__wbg_gone".into(),
                "a".into(),
            )],
            exports: vec![],
        };
        assert!(rename_in_glue(GLUE, &mapping, "a").is_err());
        assert!(rename_in_glue("export {}", &NameMapping::default(), "a").is_err());
    }

    #[test]
    fn names_are_replaced_only_whole() {
        let table = [
            (
                "readonly memory: M;",
                "readonly memory",
                "readonly a",
                "readonly a: M;",
            ),
            (
                "wasm.free(1); xwasm.free(2)",
                "wasm.free",
                "wasm.b",
                "wasm.b(1); xwasm.free(2)",
            ),
            ("wasm.free_all()", "wasm.free", "wasm.b", "wasm.free_all()"),
        ];
        for (text, from, to, expected) in table {
            assert_eq!(replace_name(text, from, to), expected, "{text}");
        }
    }
}
