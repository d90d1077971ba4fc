//! matching: `tm.trades` → pair legs, append status history → `tm.events`, and send each MATCHED
//! trade's allocations → `st.instructions`; `tm.settlement-results` → SETTLED, SETTLEMENT_FAILED or
//! the answer to a cancel; plus the expiry sweeper.

mod handler;
mod store;
mod sweeper;

use std::time::Duration;

use keel_lifecycle::MatchPolicy;
use keel_messages::topics;
use keel_service_kit::{Stage, StageConfig, Task};
use keel_topology::MATCHING;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
struct Config {
    #[serde(flatten)]
    stage: StageConfig,
    matching: MatchingConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
struct MatchingConfig {
    /// Largest absolute price difference that still matches, as a decimal string ("0" = exact).
    price_tolerance: rust_decimal::Decimal,
    /// Seconds a lone leg waits for its counterpart.
    match_window_seconds: i64,
    /// How often the sweeper looks for legs whose window has run out.
    sweep_interval_ms: u64,
}

impl Default for MatchingConfig {
    fn default() -> Self {
        Self {
            price_tolerance: rust_decimal::Decimal::ZERO,
            match_window_seconds: 86_400,
            sweep_interval_ms: 1_000,
        }
    }
}

/// How often the trades stuck past their settlement date are counted.
const STUCK_EVERY: Duration = Duration::from_secs(15);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: Config = keel_platform::config::load()?;
    let _telemetry = keel_platform::telemetry::init(MATCHING.name);
    let shutdown = keel_platform::shutdown::on_signal();
    let policy = MatchPolicy {
        price_tolerance: config.matching.price_tolerance,
        match_window: chrono::Duration::seconds(config.matching.match_window_seconds),
    };
    let sweep_every = Duration::from_millis(config.matching.sweep_interval_ms);
    let stage = Stage::new(&MATCHING, &keel_migrations::MATCHING);
    stage
        .run(config.stage, shutdown, async |context| {
            let sweeper = sweeper::run(
                context.pool.clone(),
                policy.clone(),
                sweep_every,
                context.relay_wake.clone(),
                context.shutdown.clone(),
            );
            let results = context.consume(
                topics::SETTLEMENT_RESULTS,
                handler::SettlementResults {
                    policy: policy.clone(),
                },
            );
            let pool = context.pool.clone();
            let stuck = keel_service_kit::gauge_from_store(
                "keel_trades_matched_past_settlement_date",
                STUCK_EVERY,
                context.shutdown.clone(),
                move || store::matched_past_settlement_date(pool.clone()),
            );
            let tasks: Vec<Task> = vec![Box::pin(sweeper), results, Box::pin(stuck)];
            Ok((
                handler::Matching {
                    policy: policy.clone(),
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
            "matching",
        );
    }
}
