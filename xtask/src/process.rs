//! Paths of the workspace and helpers to run child processes.
//!
//! Every command runs in the workspace root with inherited output, after echoing itself as
//! `$ program args...`, so a log shows exactly what ran. A command that exits non-zero is an
//! error that names the command and its exit status. Also the loopback ports that the
//! processes started here listen on.

use std::ffi::OsStr;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The workspace root: the parent of this crate's directory.
pub fn root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// Cargo's target directory: `$CARGO_TARGET_DIR` when set, else `<root>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root().join(dir),
        _ => root().join("target"),
    }
}

/// Where `cargo install` puts binaries: `$CARGO_HOME/bin`, else `~/.cargo/bin`.
pub fn cargo_bin_dir() -> PathBuf {
    match std::env::var_os("CARGO_HOME") {
        Some(home) if !home.is_empty() => PathBuf::from(home).join("bin"),
        _ => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cargo/bin"),
    }
}

/// A command for the cargo that runs us (`$CARGO`), in the workspace root.
pub fn cargo() -> Command {
    let program = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    command(program)
}

/// A command for `program`, in the workspace root, with no standard input (CI has none).
pub fn command(program: impl AsRef<OsStr>) -> Command {
    let mut command = Command::new(program);
    command.current_dir(root()).stdin(Stdio::null());
    command
}

/// The command line as a person would type it, for logs and error messages: `$CARGO` shows as
/// `cargo`, and arguments with shell metacharacters are single-quoted.
pub fn display(command: &Command) -> String {
    let program = command.get_program();
    let mut line = if std::env::var_os("CARGO").as_deref() == Some(program) {
        "cargo".to_string()
    } else {
        program.to_string_lossy().into_owned()
    };
    for arg in command.get_args() {
        let arg = arg.to_string_lossy();
        let plain = !arg.is_empty()
            && arg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
        line.push(' ');
        if plain {
            line.push_str(&arg);
        } else {
            line.push_str(&format!("'{}'", arg.replace('\'', r"'\''")));
        }
    }
    line
}

/// Echoes and runs `command` with inherited output; fails unless it exits with status 0.
pub fn run(command: &mut Command) -> Result<()> {
    let line = display(command);
    println!("$ {line}");
    let status = command
        .status()
        .with_context(|| format!("could not start `{line}`"))?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}

/// Runs `command` quietly and returns its trimmed standard output, or `None` when it cannot
/// start or exits non-zero. For probes such as `wasm-bindgen --version`.
pub fn probe(command: &mut Command) -> Option<String> {
    let output = command.stderr(Stdio::null()).output().ok()?;
    if !output.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// A loopback port that was free a moment ago, for a process started next to listen on.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits until something accepts connections on `127.0.0.1:port`, for at most 10 s.
pub fn wait_for_port(port: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("nothing listens on 127.0.0.1:{port} after 10 s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_what_a_shell_would_misread() {
        let mut pip = Command::new("python");
        pip.args(["-m", "pip", "install", "paho-mqtt>=2.1,<3", "it's", ""]);
        assert_eq!(
            display(&pip),
            r"python -m pip install 'paho-mqtt>=2.1,<3' 'it'\''s' ''"
        );
    }
}
