//! ingestion: `tm.submissions` → validate again → `tm.trades` (a leg, a rejection or a cancel).

mod handler;

use keel_messages::topics;
use keel_routing::App;
use keel_service_kit::{Stage, StageConfig};

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: StageConfig = keel_platform::config::load()?;
    let _telemetry = keel_platform::telemetry::init("ingestion");
    let shutdown = keel_platform::shutdown::on_signal();
    let stage = Stage {
        app: App::TradeMatching,
        name: "ingestion",
        schema: "ingestion",
        topic: topics::SUBMISSIONS,
        dead_letter_topic: topics::TM_DEAD_LETTERS,
        produces: &[topics::TRADES],
        migrations: &MIGRATIONS,
    };
    stage
        .run(config, shutdown, async |_| {
            Ok((handler::Ingestion, Vec::new()))
        })
        .await?;
    Ok(())
}
