//! One pipeline step: the generator at an offered rate for a warm-up and a steady window, then the
//! drain. Throughput and latency are measured over the steady window only, from the stores' own
//! timestamps; the drain is reported apart.

use std::time::{Duration, Instant};

use keel_generator::{DriverOptions, Report};
use keel_safestore::quote_ident;
use keel_system_tests::Stack;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::profile::{self, CpuShares, StageTime};

/// How long a step's warm-up and steady window last.
#[derive(Debug, Clone, Copy)]
pub struct StepTimes {
    pub warm_up: Duration,
    pub window: Duration,
    /// The longest the drain after a step may take before the step counts as not drained.
    pub drain_bound: Duration,
}

#[derive(Debug)]
pub struct StepResult {
    pub offered: f64,
    /// Legs accepted in the steady window, per second.
    pub accepted: f64,
    /// Legs whose every notification went out in the steady window, per second (notifications
    /// in the window divided by notifications per leg).
    pub notified: f64,
    /// The smaller of the two: what the pipeline carried end to end in the window.
    pub sustained: f64,
    /// Seconds from the generator's stop until every matched trade of the step had its settlement
    /// notification; None when the drain bound passed first.
    pub drain_seconds: Option<f64>,
    pub ack_p50: f64,
    pub ack_p99: f64,
    /// Last leg accepted to the settlement notification (SETTLED or SETTLEMENT_FAILED), for trades
    /// whose last leg came in the steady window.
    pub settle_p50: f64,
    pub settle_p99: f64,
    pub messages_per_leg: f64,
    /// Rows Keel's stores wrote (inserted, updated, deleted) per leg.
    pub rows_per_leg: f64,
    /// Rows the brokers' storage wrote per leg.
    pub broker_rows_per_leg: f64,
    pub payload_bytes: f64,
    /// Requests that got 429 and waited their `Retry-After`.
    pub throttled: u64,
    pub cpu: Option<CpuShares>,
    /// What each stage's time went to over the window (with the CPU profile).
    pub stages: Vec<StageTime>,
}

/// Each outbox, and whether it is in settlement's database.
const OUTBOXES: [(&str, bool); 4] = [
    ("ingress", false),
    ("ingestion", false),
    ("matching", false),
    ("settlement", true),
];

/// Rows written by Keel's stores and by the brokers' storage so far (Postgres's own counters, cheap
/// to read inside the window).
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    keel_rows: i64,
    broker_rows: i64,
}

/// Reads the counters of every cluster in `clusters` (any connection to each).
async fn counters(stack: &Stack, clusters: &[PgPool]) -> anyhow::Result<Counters> {
    let (tm_database, st_database) = (
        database_of(&stack.database_url),
        database_of(&stack.st_database_url),
    );
    let mut counters = Counters::default();
    for cluster in clusters {
        let (keel_rows, broker_rows): (i64, i64) = sqlx::query_as(
            "SELECT coalesce(sum(tup_inserted + tup_updated + tup_deleted) FILTER (WHERE datname IN ($1, $2)), 0)::bigint,
                    coalesce(sum(tup_inserted + tup_updated + tup_deleted) FILTER (WHERE datname LIKE '%\\_kafka\\_%'), 0)::bigint
             FROM pg_stat_database",
        )
        .bind(tm_database)
        .bind(st_database)
        .fetch_one(cluster)
        .await?;
        counters.keel_rows += keel_rows;
        counters.broker_rows += broker_rows;
    }
    Ok(counters)
}

/// Broker messages Keel produced between two times (its outboxes' rows), and their average size.
async fn messages_between(stack: &Stack, (from, to): (f64, f64)) -> anyhow::Result<(i64, f64)> {
    let (mut messages, mut bytes) = (0i64, 0i64);
    for (schema, settlement) in OUTBOXES {
        let schema = quote_ident(schema);
        let db = if settlement { &stack.st_db } else { &stack.db };
        let (count, size): (i64, i64) = sqlx::query_as(&format!(
            "SELECT count(*), coalesce(sum(octet_length(payload)), 0)::bigint FROM {schema}.outbox
             WHERE created_at BETWEEN to_timestamp($1) AND to_timestamp($2)"
        ))
        .bind(from)
        .bind(to)
        .fetch_one(db)
        .await?;
        messages += count;
        bytes += size;
    }
    Ok((messages, bytes as f64 / messages.max(1) as f64))
}

fn database_of(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

/// Runs the generator against `stack`, checking that nothing but the mix's invalid legs was
/// refused or failed.
pub async fn generate(
    stack: &Stack,
    options: DriverOptions,
    stop: CancellationToken,
) -> anyhow::Result<Report> {
    let report = keel_generator::run(
        stack.client(),
        &keel_system_tests::participants(),
        options,
        stop,
    )
    .await?;
    let invalid = report.trades.get("invalid").copied().unwrap_or(0);
    anyhow::ensure!(
        report.legs_failed == 0 && report.legs_refused == invalid,
        "submissions failed: {} failed, {} refused ({invalid} invalid by design)",
        report.legs_failed,
        report.legs_refused
    );
    Ok(report)
}

/// One step at `rate` legs/s. With `profile`, the CPU of every process is sampled over the window.
pub async fn step(
    stack: &Stack,
    clusters: &[PgPool],
    prefix: &str,
    seed: u64,
    rate: f64,
    times: StepTimes,
    profile: bool,
) -> anyhow::Result<StepResult> {
    let options = DriverOptions {
        duration: Some(times.warm_up + times.window),
        ..DriverOptions::at_rate(rate, seed, prefix)
    };
    let begun = Instant::now();
    let db_begun: f64 = sqlx::query_scalar("SELECT extract(epoch FROM now())::float8")
        .fetch_one(&stack.db)
        .await?;
    let (window_start, window_end) = (
        db_begun + times.warm_up.as_secs_f64(),
        db_begun + (times.warm_up + times.window).as_secs_f64(),
    );
    let generator = {
        let options = options.clone();
        async move { generate(stack, options, CancellationToken::new()).await }
    };
    let measuring = async {
        tokio::time::sleep(times.warm_up).await;
        let before = counters(stack, clusters).await?;
        let cpu_before = if profile {
            Some((
                profile::sample(stack, clusters).await?,
                profile::stage_counters(stack).await?,
            ))
        } else {
            None
        };
        tokio::time::sleep(times.window).await;
        let after = counters(stack, clusters).await?;
        let (cpu, stages) = match cpu_before {
            Some((cpu_before, stages_before)) => {
                let cpu = profile::shares(
                    &cpu_before,
                    &profile::sample(stack, clusters).await?,
                    crate::num_cpus(),
                );
                let stages = profile::stage_times(
                    &stages_before,
                    &profile::stage_counters(stack).await?,
                    cpu.seconds,
                );
                (Some(cpu), stages)
            }
            None => (None, Vec::new()),
        };
        Ok::<_, anyhow::Error>((before, after, cpu, stages))
    };
    let (report, measured) = tokio::join!(generator, measuring);
    let report = report?;
    let (before, after, cpu, stages) = measured?;
    let stopped = Instant::now();
    anyhow::ensure!(
        stopped.duration_since(begun) < times.warm_up + times.window + Duration::from_secs(30),
        "the generator overran its step by more than 30 s"
    );

    let pattern = format!("{prefix}-%");
    let to_settle = (report.trades.get("matching").copied().unwrap_or(0)
        + report.trades.get("failing").copied().unwrap_or(0)) as i64;
    // Drained: every matched trade of the step settled (or failed to) and both parties were told.
    let drained_at = loop {
        let done: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM matching.trades
             WHERE status IN ('SETTLED', 'SETTLEMENT_FAILED') AND trade_ref LIKE $1",
        )
        .bind(&pattern)
        .fetch_one(&stack.db)
        .await?;
        let notified = done >= to_settle
            && sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM notification.notifications
                 WHERE status IN ('SETTLED', 'SETTLEMENT_FAILED') AND body->>'trade_ref' LIKE $1",
            )
            .bind(&pattern)
            .fetch_one(&stack.db)
            .await?
                >= to_settle * 2;
        if notified {
            break Some(stopped.elapsed().as_secs_f64());
        }
        if stopped.elapsed() > times.drain_bound {
            eprintln!(
                "{prefix}: {done} of {} settlement notifications after the drain bound",
                to_settle * 2
            );
            break None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    let window_seconds = times.window.as_secs_f64();
    let (accepted_in_window, notifications_in_window, legs, notifications): (i64, i64, i64, i64) =
        sqlx::query_as(
            "SELECT (SELECT count(*) FROM ingress.submissions
                     WHERE trade_ref LIKE $1 AND received_at BETWEEN to_timestamp($2) AND to_timestamp($3)),
                    (SELECT count(*) FROM notification.notifications
                     WHERE body->>'trade_ref' LIKE $1 AND created_at BETWEEN to_timestamp($2) AND to_timestamp($3)),
                    (SELECT count(*) FROM ingress.submissions WHERE trade_ref LIKE $1),
                    (SELECT count(*) FROM notification.notifications WHERE body->>'trade_ref' LIKE $1)",
        )
        .bind(&pattern)
        .bind(window_start)
        .bind(window_end)
        .fetch_one(&stack.db)
        .await?;
    let notifications_per_leg = notifications as f64 / legs.max(1) as f64;
    let (settle_p50, settle_p99) =
        settle_percentiles(&stack.db, &pattern, (window_start, window_end)).await?;
    let window_legs = accepted_in_window.max(1) as f64;
    let accepted = accepted_in_window as f64 / window_seconds;
    let notified =
        notifications_in_window as f64 / notifications_per_leg.max(1e-9) / window_seconds;
    let (messages, payload_bytes) = messages_between(stack, (window_start, window_end)).await?;
    let messages = messages as f64;
    Ok(StepResult {
        offered: rate,
        accepted,
        notified,
        sustained: accepted.min(notified),
        drain_seconds: drained_at,
        ack_p50: report.percentile(0.5).unwrap_or(0.0),
        ack_p99: report.percentile(0.99).unwrap_or(0.0),
        settle_p50,
        settle_p99,
        messages_per_leg: messages / window_legs,
        rows_per_leg: (after.keel_rows - before.keel_rows) as f64 / window_legs,
        broker_rows_per_leg: (after.broker_rows - before.broker_rows) as f64 / window_legs,
        payload_bytes,
        throttled: report.throttled,
        cpu,
        stages,
    })
}

/// Last leg accepted to settlement notification (SETTLED or SETTLEMENT_FAILED), p50 and p99 in ms,
/// over the trades whose refs match `pattern` and whose last leg came between the two times
/// (seconds since the epoch).
pub async fn settle_percentiles(
    db: &PgPool,
    pattern: &str,
    (from, to): (f64, f64),
) -> anyhow::Result<(f64, f64)> {
    let (p50, p99): (Option<f64>, Option<f64>) = sqlx::query_as(
        "WITH legs AS (
             SELECT trade_id, max(received_at) AS last_leg
             FROM ingress.submissions WHERE trade_ref LIKE $1 GROUP BY trade_id
             HAVING max(received_at) BETWEEN to_timestamp($2) AND to_timestamp($3)),
         done AS (
             SELECT trade_id, max(created_at) AS notified
             FROM notification.notifications
             WHERE status IN ('SETTLED', 'SETTLEMENT_FAILED') AND body->>'trade_ref' LIKE $1 GROUP BY trade_id)
         SELECT (percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM d.notified - l.last_leg)) * 1000)::float8,
                (percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM d.notified - l.last_leg)) * 1000)::float8
         FROM legs l JOIN done d USING (trade_id)",
    )
    .bind(pattern)
    .bind(from)
    .bind(to)
    .fetch_one(db)
    .await?;
    Ok((p50.unwrap_or(f64::NAN), p99.unwrap_or(f64::NAN)))
}
