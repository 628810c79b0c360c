//! The `gateway` binary: parses flags, starts the gateway, and shuts it down cleanly on SIGINT
//! or SIGTERM (exit code 0 within 5 seconds).

use anyhow::Context;
use broker_core::AllowAll;
use clap::Parser;
use gateway::Gateway;
use gateway::config::Cli;
use std::io::IsTerminal;
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
    let cli = Cli::parse();
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
    let gateway = Gateway::start(config, Box::new(AllowAll)).await?;
    signal.await;
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
