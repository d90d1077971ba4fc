//! ingestion: `tm.submissions` → validate again → `tm.trades` (a leg, a rejection or a cancel).

mod handler;

use keel_service_kit::{Stage, StageConfig};
use keel_topology::INGESTION;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: StageConfig = keel_platform::config::load()?;
    let _telemetry = keel_platform::telemetry::init(INGESTION.name);
    let shutdown = keel_platform::shutdown::on_signal();
    let stage = Stage::new(&INGESTION, &keel_migrations::INGESTION);
    stage
        .run(config, shutdown, async |_| {
            Ok((handler::Ingestion, Vec::new()))
        })
        .await?;
    Ok(())
}
