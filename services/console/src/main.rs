//! keel-console: the operators' console (DESIGN section 9), at `[console] listen` (127.0.0.1:8080
//! locally). Server-rendered pages that poll their fragments (htmx): both regions and both
//! applications, live; buttons that drive the same runbook as keelctl, through keel-operations, for
//! operators who signed in against the registry; every action in the audit trail.

mod app;
mod config;
mod error;
mod routes;
mod runs;
mod sessions;
mod views;

use anyhow::Context;
use keel_operations_live::{Config, DynamoStore};

use crate::app::AppState;
use crate::config::ConsoleSection;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    keel_operations_live::use_local_pgpass();
    let _telemetry = keel_platform::telemetry::init("console");
    let config: Config = keel_platform::config::load()?;
    let ConsoleSection { console } = keel_platform::config::load()?;
    let registry = config.operators.registry()?;
    DynamoStore::new(&config.runbook)
        .ensure_table()
        .await
        .context("the runbook store (for the audit trail)")?;
    let state = AppState::new(&config, &console, registry);
    let listener = tokio::net::TcpListener::bind(&console.listen)
        .await
        .with_context(|| format!("listening on {}", console.listen))?;
    tracing::info!(listen = %console.listen, "console up");
    let shutdown = keel_platform::shutdown::on_signal();
    axum::serve(listener, routes::router(state))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await?;
    Ok(())
}
