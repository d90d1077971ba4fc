//! settlement: `st.instructions` → delivery-versus-payment postings on the double-entry ledger →
//! `tm.settlement-results`; plus the settlement cycle for instructions dated later than their arrival.
//!
//! The settlement application's own database holds the `settlement` schema: the safe-store tables,
//! the reference data (loaded from a file at start), instructions, postings and positions.

mod book;
mod cycle;
mod handler;
mod ledger_store;
mod reference;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use keel_messages::topics;
use keel_safestore::StoreOptions;
use keel_service_kit::{Stage, StageConfig};
use serde::{Deserialize, Serialize};

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
struct Config {
    #[serde(flatten)]
    stage: StageConfig,
    settlement: SettlementConfig,
}

/// The `[settlement]` table: the settlement application's settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
struct SettlementConfig {
    /// The settlement application's database; the top-level `database_url` is trade matching's.
    database_url: String,
    /// Participants, accounts, brokers' commission and opening balances (JSON).
    reference_data: String,
    /// How often the settlement cycle looks for instructions whose settlement date has come.
    cycle_interval_ms: u64,
}

impl Default for SettlementConfig {
    fn default() -> Self {
        Self {
            database_url: "postgres://keel@127.0.0.1:54322/keel_st".to_owned(),
            reference_data: "deploy/local/reference-data.json".to_owned(),
            cycle_interval_ms: 1_000,
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut config: Config = keel_platform::config::load()?;
    let _telemetry = keel_platform::telemetry::init("settlement");
    let shutdown = keel_platform::shutdown::on_signal();
    config.stage.database_url = config.settlement.database_url.clone();

    let reference = Arc::new(reference::read(&config.settlement.reference_data)?);
    let store = StoreOptions {
        url: config.stage.database_url.clone(),
        schema: "settlement".to_owned(),
        max_connections: 1,
    };
    let Some(pool) = keel_service_kit::connect_store(&store, &MIGRATIONS, &shutdown).await? else {
        return Ok(());
    };
    let mut tx = pool.begin().await?;
    reference::load(&mut tx, &reference)
        .await
        .context("loading reference data")?;
    tx.commit().await?;
    pool.close().await;

    let stage = Stage {
        name: "settlement",
        schema: "settlement",
        topic: topics::INSTRUCTIONS,
        dead_letter_topic: topics::ST_DEAD_LETTERS,
        produces: &[topics::SETTLEMENT_RESULTS],
        migrations: &MIGRATIONS,
    };
    let cycle_every = Duration::from_millis(config.settlement.cycle_interval_ms);
    stage
        .run(config.stage, shutdown, |context| {
            let cycle = cycle::run(
                context.pool.clone(),
                reference.clone(),
                cycle_every,
                context.relay_wake.clone(),
                context.shutdown.clone(),
            );
            (handler::Settlement { reference }, vec![Box::pin(cycle)])
        })
        .await?;
    Ok(())
}
