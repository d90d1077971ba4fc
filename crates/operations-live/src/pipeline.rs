//! The pipeline port over the stages' stores: their queues (outbox depth, and consumer lag from the
//! region's broker), reconciliation and replay in each application's active database, and the
//! checks after a move (no duplicate notification, the ledger verifies).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use keel_operations::ports::{Pipeline, PipelineError, Queues, Verification};
use keel_operations::{active_regions, ActiveError};
use keel_reconcile::hops_of;
use keel_rotation::Reconciled;
use keel_routing::App;
use keel_safestore::quote_ident;
use keel_topology::services_of;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

use crate::brokers::consumer_lag;
use crate::config::Config;
use crate::controls::ArcControls;
use crate::reconcile::{active_pools, reconcile_hops, ReconcileError, Repairing, Window};
use crate::store::DynamoStore;

pub struct StorePipeline {
    config: Config,
    /// Where repairs are audited: the runbook's own store.
    store: Arc<DynamoStore>,
}

impl StorePipeline {
    pub fn new(config: &Config, store: Arc<DynamoStore>) -> Self {
        StorePipeline {
            config: config.clone(),
            store,
        }
    }

    /// Where each application is active, and its database there when it answers: the other
    /// applications' may not (their region lost too, before their own failover), and are named
    /// instead.
    async fn active(
        &self,
        app: App,
    ) -> Result<(BTreeMap<App, String>, BTreeMap<App, PgPool>, Vec<String>), ReconcileError> {
        let regions = active_regions(
            &ArcControls::new(&self.config),
            &self.config.region_names(),
            &App::ALL,
        )
        .await?;
        let others: Vec<App> = App::ALL.into_iter().filter(|a| *a != app).collect();
        let (pools, unreachable) = active_pools(&self.config, &regions, &others).await?;
        Ok((regions, pools, unreachable))
    }
}

fn from_reconcile(error: ReconcileError) -> PipelineError {
    match error {
        ReconcileError::Active(ActiveError::Controls(e)) => PipelineError::Controls(e),
        ReconcileError::Store(e) => PipelineError::Store(e),
        ReconcileError::Config(e) => PipelineError::Configuration(e.to_string()),
        ReconcileError::PastRetention { .. } => PipelineError::Configuration(error.to_string()),
        ReconcileError::Replay { .. } => PipelineError::Broker(error.to_string()),
        ReconcileError::NowhereToReplay { .. } | ReconcileError::NotSeenDownstream { .. } => {
            PipelineError::Repair(error.to_string())
        }
        _ => PipelineError::Database(error.to_string()),
    }
}

/// `app`'s outbox rows waiting for the relay, and its consumers' stored offsets, in `pool`.
async fn outboxes_and_offsets(
    pool: &PgPool,
    app: App,
    region: &str,
) -> Result<(i64, Vec<(String, i32, i64)>), sqlx::Error> {
    let mut depth = 0;
    let mut offsets = Vec::new();
    for schema in services_of(app).map(|service| quote_ident(service.schema)) {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(format!("{schema}.outbox"))
            .fetch_one(pool)
            .await?;
        if !exists {
            continue;
        }
        depth += sqlx::query_scalar::<_, i64>(&format!(
            "SELECT count(*) FROM {schema}.outbox o
             LEFT JOIN {schema}.relay_progress p USING (topic)
             WHERE o.id > coalesce(p.id, 0)"
        ))
        .fetch_one(pool)
        .await?;
        offsets.extend(
            sqlx::query_as::<_, (String, i32, i64)>(&format!(
                "SELECT topic, partition, next_offset FROM {schema}.consumer_offsets WHERE cluster = $1"
            ))
            .bind(region)
            .fetch_all(pool)
            .await?,
        );
    }
    Ok((depth, offsets))
}

#[async_trait]
impl Pipeline for StorePipeline {
    async fn queues(&self, app: App, region: &str) -> Result<Queues, PipelineError> {
        let database =
            |e: String| PipelineError::Database(format!("{app}'s database in {region}: {e}"));
        let url = self
            .config
            .database_url(app, region)
            .map_err(|e| PipelineError::Configuration(e.to_string()))?;
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(|e| database(e.to_string()))?;
        let read = outboxes_and_offsets(&pool, app, region).await;
        pool.close().await;
        let (outbox_depth, offsets) = read.map_err(|e| database(e.to_string()))?;
        let brokers = &self
            .config
            .region(region)
            .map_err(|e| PipelineError::Configuration(e.to_string()))?
            .kafka;
        let consumer_lag = consumer_lag(brokers, &offsets)
            .await
            .map_err(|e| PipelineError::Broker(e.to_string()))?;
        Ok(Queues {
            outbox_depth,
            consumer_lag,
        })
    }

    async fn reconcile(&self, app: App, run_id: &str) -> Result<Reconciled, PipelineError> {
        let (regions, pools, skipped) = self.active(app).await.map_err(from_reconcile)?;
        // A hop between the applications waits for the other one's failover when its database
        // does not answer; that failover reconciles it.
        let hops: Vec<_> = hops_of(app)
            .filter(|hop| {
                pools.contains_key(&hop.upstream.app) && pools.contains_key(&hop.downstream.app)
            })
            .collect();
        let repairing = Repairing::new(&self.config, &self.store, run_id.to_owned(), &regions);
        let window = Window {
            seconds: self.config.runbook.reconcile_window_seconds,
            settle_seconds: 0.0,
        };
        let result = match window.within(&self.config.retention) {
            Ok(()) => reconcile_hops(&pools, &hops, window, Some(&repairing)).await,
            Err(e) => Err(e),
        };
        for pool in pools.values() {
            pool.close().await;
        }
        Ok(result.map_err(from_reconcile)?.tally(skipped))
    }

    async fn verify(&self, app: App) -> Result<Verification, PipelineError> {
        let (regions, pools, unreachable) = self.active(app).await.map_err(from_reconcile)?;
        let mut verification = Verification {
            seen: unreachable,
            problems: Vec::new(),
        };
        if let Some(tm) = pools.get(&App::TradeMatching) {
            let duplicates = sqlx::query_scalar!(
                r#"SELECT count(*) - count(DISTINCT (trade_id, body->>'history_seq', recipient)) AS "duplicates!"
                   FROM notification.notifications"#
            )
            .fetch_one(tm)
            .await;
            match duplicates {
                Ok(0) => verification
                    .seen
                    .push("no duplicate notification".to_owned()),
                Ok(n) => verification
                    .problems
                    .push(format!("{n} duplicate notification(s)")),
                Err(e) => verification.problems.push(format!("notifications: {e}")),
            }
        }
        let settlement_reachable = pools.contains_key(&App::Settlement);
        for pool in pools.values() {
            pool.close().await;
        }
        if settlement_reachable {
            let url = self
                .config
                .database_url(App::Settlement, &regions[&App::Settlement])
                .map_err(|e| PipelineError::Configuration(e.to_string()))?;
            match crate::ledger::check(url).await {
                Ok(v) => verification.seen.push(format!(
                    "ledger balances: {} settled instructions, {} postings, {} positions",
                    v.instructions, v.postings, v.positions
                )),
                Err(e) => verification.problems.push(e.to_string()),
            }
        }
        Ok(verification)
    }
}
