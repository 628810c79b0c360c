//! The `gateway` binary: parses flags, starts the gateway, reloads its security files on
//! SIGHUP, and shuts it down cleanly on SIGINT or SIGTERM (exit code 0 within 5 seconds).
//! `gateway passwd FILE USER` manages a password file instead.

use anyhow::Context;
use broker_core::AllowAll;
use clap::Parser;
use gateway::Gateway;
use gateway::config::{Cli, Command};
use gateway::security::password_file::{PasswordFile, PasswordFileError};
use std::io::{BufRead, IsTerminal};
use std::path::Path;
use std::time::Duration;
use tracing_subscriber::EnvFilter;

/// Time allowed for connections to flush and close at shutdown (DESIGN: exit within 5 s).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(4);

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    let mut cli = Cli::parse();
    if let Some(Command::Passwd { delete, file, user }) = cli.command.take() {
        return passwd(&file, &user, delete);
    }
    let config = cli.into_config()?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(serve(config))
}

async fn serve(config: gateway::config::GatewayConfig) -> anyhow::Result<()> {
    // Listen for the signals before the listeners announce themselves: whoever started us may
    // send SIGTERM as soon as it reads a `listening` line, and a signal that arrives before
    // its handler is installed kills the process instead of shutting it down cleanly.
    let signal = shutdown_signal()?;
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot listen for SIGHUP")?;
    let gateway = Gateway::start(config, Box::new(AllowAll)).await?;
    let mut signal = std::pin::pin!(signal);
    loop {
        tokio::select! {
            () = &mut signal => break,
            _ = hangup.recv() => {
                tracing::info!("SIGHUP: reloading certificates, the password file and the ACL");
                gateway.reload();
            }
        }
    }
    tracing::info!("shutting down");
    if let Err(error) = gateway.shutdown(SHUTDOWN_GRACE).await {
        tracing::warn!("{error}");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Installs the SIGTERM and SIGINT handlers now; the returned future completes at the first
/// of them (a signal received before it is polled is not lost).
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}

/// `gateway passwd [--delete] FILE USER`.
fn passwd(file: &Path, user: &str, delete: bool) -> anyhow::Result<()> {
    let mut passwords = match PasswordFile::load(file) {
        Ok(passwords) => passwords,
        Err(PasswordFileError::Read { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound && !delete =>
        {
            PasswordFile::default()
        }
        Err(error) => return Err(error.into()),
    };
    if delete {
        anyhow::ensure!(
            passwords.remove(user),
            "no user {user:?} in {}",
            file.display()
        );
    } else {
        let password = read_password()?;
        anyhow::ensure!(!password.is_empty(), "the password is empty");
        passwords.set(user, password.as_bytes())?;
    }
    passwords.save(file)?;
    let done = if delete { "removed" } else { "set" };
    eprintln!("{done} user {user:?} in {}", file.display());
    Ok(())
}

/// The new password: typed twice at the terminal without echo, or the first line of standard
/// input when it is not a terminal (for scripts).
fn read_password() -> anyhow::Result<String> {
    if !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        return Ok(line.trim_end_matches(['\n', '\r']).to_string());
    }
    let first = rpassword::prompt_password("Password: ").context("cannot read the password")?;
    let second =
        rpassword::prompt_password("Reenter password: ").context("cannot read the password")?;
    anyhow::ensure!(first == second, "the passwords do not match");
    Ok(first)
}
