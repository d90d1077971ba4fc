//! The soak: the generator at half the sustained rate for half an hour, on a release stack with
//! retention and the continuous reconciler's work in the stores, latency read per minute from the
//! stores' timestamps. Drift shows as the last minutes' latency against the first ones', and as
//! stores growing past what the rate explains.

use std::fmt::Write;
use std::time::Duration;

use keel_generator::DriverOptions;
use keel_system_tests::{Stack, StackOptions};
use tokio_util::sync::CancellationToken;

use crate::{env_or, pipeline};

pub async fn section() -> anyhow::Result<String> {
    let rate: f64 = env_or("KEEL_BENCH_SOAK_RATE", "1000")?;
    let minutes: u64 = env_or("KEEL_BENCH_SOAK_MINUTES", "30")?;
    let stack = Stack::start(
        "bench_soak",
        StackOptions {
            release: true,
            ..StackOptions::default()
        },
    )
    .await?;
    eprintln!(
        "soak: stack up; logs in {}",
        stack.dir.join("logs").display()
    );
    let started: f64 = sqlx::query_scalar("SELECT extract(epoch FROM now())::float8")
        .fetch_one(&stack.db)
        .await?;
    let report = pipeline::generate(
        &stack,
        DriverOptions {
            duration: Some(Duration::from_secs(minutes * 60)),
            ..DriverOptions::at_rate(rate, 7, "SOAK")
        },
        CancellationToken::new(),
    )
    .await?;
    // Let the last minute's trades settle before reading it.
    tokio::time::sleep(Duration::from_secs(10)).await;

    let mut out = String::new();
    writeln!(out)?;
    writeln!(out, "Soak: {rate:.0} legs/s offered for {minutes} minutes, one region, release build; {} legs accepted, ack p50 / p99 {:.1} / {:.1} ms over the whole run, {} answered 429.", report.legs_accepted, report.percentile(0.5).unwrap_or(0.0), report.percentile(0.99).unwrap_or(0.0), report.throttled)?;
    writeln!(out)?;
    writeln!(
        out,
        "| minute | legs accepted | submit→settled p50 ms | p99 ms |"
    )?;
    writeln!(out, "|---:|---:|---:|---:|")?;
    let mut p99s = Vec::new();
    for minute in 0..minutes {
        let from = started + 60.0 * minute as f64;
        let to = from + 60.0;
        let legs: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM ingress.submissions
             WHERE trade_ref LIKE 'SOAK-%' AND received_at BETWEEN to_timestamp($1) AND to_timestamp($2)",
        )
        .bind(from)
        .bind(to)
        .fetch_one(&stack.db)
        .await?;
        let (p50, p99) = pipeline::settle_percentiles(&stack.db, "SOAK-%", (from, to)).await?;
        p99s.push(p99);
        writeln!(out, "| {} | {legs} | {p50:.0} | {p99:.0} |", minute + 1)?;
    }
    let mean = |values: &[f64]| values.iter().sum::<f64>() / values.len().max(1) as f64;
    let span = (p99s.len() / 6).max(1);
    let (first, last) = (
        mean(&p99s[1.min(p99s.len())..(1 + span).min(p99s.len())]),
        mean(&p99s[p99s.len().saturating_sub(span)..]),
    );
    let sizes: Vec<(String, i64)> = sqlx::query_as(
        "SELECT n.nspname::text || '.' || c.relname::text, pg_total_relation_size(c.oid)
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind = 'r' AND n.nspname IN ('ingress', 'ingestion', 'matching', 'notification')
         ORDER BY 2 DESC LIMIT 6",
    )
    .fetch_all(&stack.db)
    .await?;
    writeln!(out)?;
    writeln!(out, "p99 of minutes 2 to {}: {first:.0} ms; of the last {span}: {last:.0} ms (ratio {:.2}). Largest tables at the end: {}.",
        1 + span,
        last / first,
        sizes.iter().map(|(t, b)| format!("{t} {:.0} MB", *b as f64 / 1e6)).collect::<Vec<_>>().join(", "))?;
    Ok(out)
}
