//! Expires lone legs whose match window has run out. Runs beside the consumer; both lock the trade
//! rows they change, and the sweeper skips rows the consumer holds, so they never wait on each other.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use keel_lifecycle::{Command, MatchPolicy, Trade};
use keel_safestore::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::store;

const BATCH: usize = 500;

pub async fn run(
    pool: PgPool,
    policy: MatchPolicy,
    every: Duration,
    relay_wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    keel_service_kit::run_in_rounds("expiry sweep", every, BATCH, relay_wake, shutdown, || {
        sweep_once(&pool, &policy)
    })
    .await
}

async fn sweep_once(pool: &PgPool, policy: &MatchPolicy) -> Result<usize, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let now = chrono::Utc::now();
    let mut trades: HashMap<_, Trade> = sqlx::query_scalar!(
        r#"SELECT state AS "state: sqlx::types::Json<Trade>" FROM matching.trades
           WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED"#,
        now,
        BATCH as i64
    )
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|state| (state.0.trade_id, state.0))
    .collect();
    let mut changes = store::Changes::default();
    for trade in trades.values_mut() {
        let effects = trade.apply(Command::Expire { now }, policy);
        changes.record(trade, effects);
    }
    let expired = trades.len();
    let events = store::save(&mut tx, &trades, &changes).await?;
    keel_safestore::enqueue(&mut tx, &events).await?;
    tx.commit().await?;
    Ok(expired)
}
