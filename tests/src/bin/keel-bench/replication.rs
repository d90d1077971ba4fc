//! Two regions with replicated databases: how far the trade-matching standby trails its primary
//! under generator load, and what synchronous replication costs ingress's acknowledgement.
//!
//! Per mode, a fresh two-region stack (per application a primary in us-east-1 and a streaming
//! standby in us-west-2), a warm-up, single legs one at a time (the acknowledgement's own cost),
//! then the generator's default mix at one offered rate, and a sampler reading the
//! primary's `pg_stat_replication` every 100 ms: bytes of WAL not yet replayed on the standby, and
//! Postgres's own `replay_lag` (the time from a commit on the primary to its replay on the standby;
//! it reads NULL while the standby is idle and caught up).

use std::time::Duration;

use keel_generator::{percentile, DriverOptions};
use keel_system_tests::{connect, wait_replayed, App, Stack, StackOptions, WEST};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::generate;

const WARM_UP: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_secs(6);

#[derive(Debug)]
pub struct ReplicationRow {
    pub synchronous: bool,
    pub quiet_ack_p50: f64,
    pub quiet_ack_p99: f64,
    pub legs: u64,
    pub ack_p50: f64,
    pub ack_p90: f64,
    pub ack_p99: f64,
    /// Last leg accepted to the settlement notification, for the trades of the loaded run.
    pub settle_p50: f64,
    pub settle_p99: f64,
    pub lag_bytes_p50: f64,
    pub lag_bytes_p99: f64,
    pub lag_bytes_max: f64,
    pub replay_lag_ms_p50: f64,
    pub replay_lag_ms_p99: f64,
    pub replay_lag_ms_max: f64,
}

pub async fn measure(synchronous: bool, rate: f64, seconds: u64) -> anyhow::Result<ReplicationRow> {
    let mode = if synchronous { "sync" } else { "async" };
    let stack = Stack::start(
        &format!("bench_replication_{mode}"),
        StackOptions {
            release: true,
            ..StackOptions::replicated_two_regions(synchronous)
        },
    )
    .await?;
    eprintln!(
        "replication ({mode}): stack up; logs in {}",
        stack.dir.join("logs").display()
    );
    let primary = stack.db.clone();
    anyhow::ensure!(
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM pg_stat_replication")
            .fetch_one(&primary)
            .await?
            == 1,
        "the trade-matching primary has no streaming standby"
    );

    // Warm-up, not measured: the services' first sessions, connection pools and the first
    // checkpoint after the standby's base backup.
    generate(
        &stack,
        DriverOptions {
            duration: Some(WARM_UP),
            ..DriverOptions::at_rate(rate, 1, &format!("W{mode}"))
        },
    )
    .await?;

    // The commit's own cost: one leg per request, one request at a time, at a light rate.
    let quiet = generate(
        &stack,
        DriverOptions {
            duration: Some(QUIET),
            batch: 1,
            concurrency: 1,
            ..DriverOptions::at_rate(50.0, 2, &format!("Q{mode}"))
        },
    )
    .await?;

    let stop = CancellationToken::new();
    let sampler = tokio::spawn(sample_lag(primary, stop.clone()));
    let options = DriverOptions {
        duration: Some(Duration::from_secs(seconds)),
        ..DriverOptions::at_rate(rate, 0, &format!("R{mode}"))
    };
    let report = generate(&stack, options).await;
    stop.cancel();
    let (bytes, replay_ms) = sampler.await??;
    let report = report?;
    // The standby holds what was acknowledged (checked again here so the figures describe a
    // replicating pair, not a broken one).
    let standby = connect(&stack.regions[WEST].databases[&App::TradeMatching]).await?;
    wait_replayed(&stack.db, &standby, Duration::from_secs(30)).await?;
    let (settle_p50, settle_p99) = settle_latency(&stack, &format!("R{mode}-%")).await?;

    let at = |samples: &[f64], p| percentile(samples, p).unwrap_or(0.0);
    Ok(ReplicationRow {
        synchronous,
        quiet_ack_p50: quiet.percentile(0.5).unwrap_or(0.0),
        quiet_ack_p99: quiet.percentile(0.99).unwrap_or(0.0),
        legs: report.legs_accepted,
        ack_p50: report.percentile(0.5).unwrap_or(0.0),
        ack_p90: report.percentile(0.9).unwrap_or(0.0),
        ack_p99: report.percentile(0.99).unwrap_or(0.0),
        settle_p50,
        settle_p99,
        lag_bytes_p50: at(&bytes, 0.5),
        lag_bytes_p99: at(&bytes, 0.99),
        lag_bytes_max: at(&bytes, 1.0),
        replay_lag_ms_p50: at(&replay_ms, 0.5),
        replay_lag_ms_p99: at(&replay_ms, 0.99),
        replay_lag_ms_max: at(&replay_ms, 1.0),
    })
}

/// Last leg accepted to settlement notification, p50 and p99 in ms, for the trades whose refs match
/// `pattern`, once every one of them that settles has (bounded).
async fn settle_latency(stack: &Stack, pattern: &str) -> anyhow::Result<(f64, f64)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (matched, notified): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM matching.status_history h JOIN matching.trades t USING (trade_id)
                     WHERE h.status = 'MATCHED' AND t.trade_ref LIKE $1),
                    (SELECT count(DISTINCT trade_id) FROM notification.notifications
                     WHERE status IN ('SETTLED', 'SETTLEMENT_FAILED') AND body->>'trade_ref' LIKE $1)",
        )
        .bind(pattern)
        .fetch_one(&stack.db)
        .await?;
        if notified >= matched || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    crate::pipeline::settle_percentiles(&stack.db, pattern, (0.0, 1e10)).await
}

/// Samples the standby's replay lag on the primary until `stop`: bytes, and `replay_lag` in ms
/// (only while Postgres reports one).
async fn sample_lag(
    primary: PgPool,
    stop: CancellationToken,
) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    let (mut bytes, mut replay_ms) = (Vec::new(), Vec::new());
    while !stop.is_cancelled() {
        let (lag_bytes, lag_ms): (f64, Option<f64>) = sqlx::query_as(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::float8,
                    (extract(epoch FROM replay_lag) * 1000)::float8
             FROM pg_stat_replication",
        )
        .fetch_one(&primary)
        .await?;
        bytes.push(lag_bytes);
        replay_ms.extend(lag_ms);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok((bytes, replay_ms))
}
