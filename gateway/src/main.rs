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
    let gateway = Gateway::start(config, Box::new(AllowAll)).await?;
    wait_for_signal().await?;
    tracing::info!("shutting down");
    if let Err(error) = gateway.shutdown(SHUTDOWN_GRACE).await {
        tracing::warn!("{error}");
    }
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    Ok(())
}
