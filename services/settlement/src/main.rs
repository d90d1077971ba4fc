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

use keel_service_kit::{Stage, StageConfig, Task};
use keel_topology::SETTLEMENT;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
struct Config {
    #[serde(flatten)]
    stage: StageConfig,
    /// Participants, securities, accounts, brokers' commission and opening balances (JSON), the
    /// file ingress screens blocks against.
    reference_data: String,
    settlement: SettlementConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            stage: StageConfig::default(),
            reference_data: "deploy/local/reference-data.json".to_owned(),
            settlement: SettlementConfig::default(),
        }
    }
}

/// The `[settlement]` table: the settlement application's settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
struct SettlementConfig {
    /// How often the settlement cycle looks for instructions whose settlement date has come.
    cycle_interval_ms: u64,
}

impl Default for SettlementConfig {
    fn default() -> Self {
        Self {
            cycle_interval_ms: 1_000,
        }
    }
}

/// How often the instructions stuck past their settlement date are counted.
const STUCK_EVERY: Duration = Duration::from_secs(15);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: Config = keel_platform::config::load()?;
    let _telemetry = keel_platform::telemetry::init(SETTLEMENT.name);
    let shutdown = keel_platform::shutdown::on_signal();
    let reference = Arc::new(reference::read(&config.reference_data)?);
    let stage = Stage::new(&SETTLEMENT, &keel_migrations::SETTLEMENT);
    let cycle_every = Duration::from_millis(config.settlement.cycle_interval_ms);
    stage
        .run(config.stage, shutdown, async |context| {
            // The reference data is loaded in the session: only the primary can take it, and a
            // standby region's process waits warm without touching its database.
            let mut tx = context.pool.begin().await?;
            reference::load(&mut tx, &reference)
                .await
                .map_err(|error| format!("loading reference data: {error}"))?;
            tx.commit().await?;
            let cycle = cycle::run(
                context.pool.clone(),
                reference.clone(),
                cycle_every,
                context.relay_wake.clone(),
                context.shutdown.clone(),
            );
            let pool = context.pool.clone();
            let stuck = keel_service_kit::gauge_from_store(
                "keel_instructions_pending_past_settlement_date",
                STUCK_EVERY,
                context.shutdown.clone(),
                move || cycle::pending_past_settlement_date(pool.clone()),
            );
            let tasks: Vec<Task> = vec![Box::pin(cycle), Box::pin(stuck)];
            Ok((
                handler::Settlement {
                    reference: reference.clone(),
                },
                tasks,
            ))
        })
        .await?;
    Ok(())
}

#[cfg(test)]
mod deployment_tests {
    use super::*;

    /// The variables the deployment gives this process are settings its configuration takes.
    #[test]
    fn it_takes_every_variable_the_deployment_gives_it() {
        keel_platform::config::assert_takes_deployment_variables::<Config>(
            env!("CARGO_MANIFEST_DIR"),
            "settlement",
        );
    }
}
