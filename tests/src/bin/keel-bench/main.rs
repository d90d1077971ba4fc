//! `make bench`: how fast Keel runs on this machine, and how close that is to the machine's own
//! ceiling for the same durable work, measured in the same run. Prints markdown tables (the figures
//! kept in docs/benchmarks.md come from here).
//!
//! Sections (`KEEL_BENCH_SECTIONS`, `pipeline,replication` by default; `drills` and `soak` on
//! request):
//!
//! - `pipeline`: one region, the full path through settlement and notification, on a release
//!   stack. Steps at increasing offered rates (`KEEL_BENCH_RATES`), each a warm-up and a steady
//!   window (`KEEL_BENCH_STEP_SECONDS`) measured apart from the drain after it; after the first
//!   step, the ceiling (`ceiling`) shaped by what that step measured (messages per leg, rows per
//!   message, payload size); the CPU share of every process over each window (`profile`); and last
//!   an overload step at twice the best sustained rate, where ingress answers 429.
//! - `replication`: two regions with streaming standbys: the standby's lag and ingress's
//!   acknowledgement under load, asynchronous and synchronous (`replication`).
//! - `drills`: planned rotations and the loss of a region under load, with RTO and RPO (`drills`).
//! - `soak`: half the sustained rate (`KEEL_BENCH_SOAK_RATE`) for `KEEL_BENCH_SOAK_MINUTES` (30),
//!   latency per minute, to show drift (`soak`).

use std::fmt::Write;
use std::time::Duration;

use anyhow::Context;
use keel_generator::DriverOptions;
use keel_system_tests::{Stack, StackOptions};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

mod ceiling;
mod drills;
mod pipeline;
mod profile;
mod replication;
mod soak;

use pipeline::{StepResult, StepTimes};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let sections =
        std::env::var("KEEL_BENCH_SECTIONS").unwrap_or_else(|_| "pipeline,replication".into());
    let sections: Vec<&str> = sections.split(',').map(str::trim).collect();
    for section in &sections {
        anyhow::ensure!(
            ["pipeline", "replication", "drills", "soak"].contains(section),
            "KEEL_BENCH_SECTIONS: unknown section {section:?} (pipeline, replication, drills, soak)"
        );
    }
    let mut out = String::new();
    if sections.contains(&"pipeline") {
        out += &pipeline_section().await?;
    }
    if sections.contains(&"replication") {
        out += &replication_section().await?;
    }
    if sections.contains(&"drills") {
        out += &drills::section().await?;
    }
    if sections.contains(&"soak") {
        out += &soak::section().await?;
    }
    println!("{out}");
    Ok(())
}

/// The environment variable `name` parsed, or `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: &str) -> anyhow::Result<T> {
    let value = std::env::var(name).unwrap_or_else(|_| default.to_owned());
    value
        .trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("{name}={value:?} is not a valid value"))
}

pub fn num_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// A connection to the Postgres cluster the stacks use (`KEEL_TEST_PG`), for the statistics.
pub async fn admin() -> anyhow::Result<PgPool> {
    let url =
        std::env::var("KEEL_TEST_PG").context("KEEL_TEST_PG is not set (make bench sets it)")?;
    Ok(sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&url)
        .await?)
}

fn step_times() -> anyhow::Result<StepTimes> {
    Ok(StepTimes {
        warm_up: Duration::from_secs(5),
        window: Duration::from_secs(env_or("KEEL_BENCH_STEP_SECONDS", "30")?),
        drain_bound: Duration::from_secs(180),
    })
}

/// The ceiling, the steps at increasing rates, the overload step; tables and the profile.
async fn pipeline_section() -> anyhow::Result<String> {
    let rates: Vec<f64> = std::env::var("KEEL_BENCH_RATES")
        .unwrap_or_else(|_| "500,1000,2000,3000,4000".into())
        .split(',')
        .map(|r| {
            r.trim()
                .parse()
                .context("KEEL_BENCH_RATES is a comma-separated list of legs/s")
        })
        .collect::<anyhow::Result<_>>()?;
    let times = step_times()?;
    // As `make up` runs it: each application's database in a Postgres cluster of its own, the
    // broker's log in another (the test cluster), so their WAL and fsyncs do not queue together.
    let stack = Stack::start(
        "bench",
        StackOptions {
            release: true,
            replicated: true,
            ..StackOptions::default()
        },
    )
    .await?;
    let admin = admin().await?;
    let clusters = [stack.db.clone(), stack.st_db.clone(), admin.clone()];
    eprintln!("stack up; logs in {}", stack.dir.join("logs").display());

    let mut rows: Vec<StepResult> = Vec::new();
    let mut ceiling = None;
    for (index, rate) in rates.iter().enumerate() {
        let row = pipeline::step(
            &stack,
            &clusters,
            &format!("B{index}"),
            index as u64,
            *rate,
            times,
            true,
        )
        .await?;
        eprintln!(
            "offered {rate:.0} legs/s: sustained {:.0}, drain {:?}",
            row.sustained, row.drain_seconds
        );
        let saturated = row.drain_seconds.is_none_or(|d| d > 5.0) || row.sustained < 0.9 * rate;
        if ceiling.is_none() {
            let shape = ceiling::Shape {
                messages_per_leg: row.messages_per_leg,
                rows_per_message: row.rows_per_leg / row.messages_per_leg,
                payload_bytes: row.payload_bytes as usize,
                partitions: 1,
                linger_ms: keel_streaming::KafkaOptions::default().linger_ms,
            };
            let databases = [stack.database_url.as_str(), stack.st_database_url.as_str()];
            let measure = |sides| {
                ceiling::measure(
                    &stack.kafka_brokers,
                    &databases,
                    shape,
                    Duration::from_secs(15),
                    sides,
                )
            };
            let both = measure(ceiling::Sides::Both).await?;
            let broker = measure(ceiling::Sides::BrokerOnly).await?;
            let postgres = measure(ceiling::Sides::PostgresOnly).await?;
            eprintln!("ceiling: {both:?}, broker alone {broker:?}, Postgres alone {postgres:?} for {shape:?}");
            ceiling = Some((shape, both, broker, postgres));
        }
        rows.push(row);
        if saturated {
            break;
        }
    }
    let (shape, ceiling, broker_alone, postgres_alone) = ceiling.expect("at least one step");
    let best = rows.iter().map(|r| r.sustained).fold(0.0, f64::max);

    // Twice what it carried: ingress must refuse the excess and keep the accepted legs' latency.
    let overload = pipeline::step(&stack, &clusters, "BOVER", 99, 2.0 * best, times, false).await?;
    eprintln!("overload at {:.0} legs/s: {overload:?}", 2.0 * best);

    let mut out = String::new();
    writeln!(out)?;
    writeln!(out, "Keel, one region, the full path through settlement and notification, everything on this {}-core machine; {} s steady window per step after a {} s warm-up; the drain after the step is reported apart.", num_cpus(), times.window.as_secs(), times.warm_up.as_secs())?;
    writeln!(out)?;
    writeln!(out, "| offered legs/s | accepted legs/s | notified legs/s | sustained legs/s | drain s | ack p50 / p99 ms | submit→settled p50 / p99 ms | messages/leg | rows/leg (+ broker storage) | 429s | of ceiling |")?;
    writeln!(
        out,
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )?;
    for row in rows.iter().chain([&overload]) {
        writeln!(
            out,
            "| {:.0}{} | {:.0} | {:.0} | {:.0} | {} | {:.1} / {:.1} | {:.0} / {:.0} | {:.2} | {:.1} (+{:.1}) | {} | {:.2} |",
            row.offered,
            if std::ptr::eq(row, &overload) { " (2× overload)" } else { "" },
            row.accepted,
            row.notified,
            row.sustained,
            row.drain_seconds.map_or("not in 180 s".to_owned(), |d| format!("{d:.1}")),
            row.ack_p50,
            row.ack_p99,
            row.settle_p50,
            row.settle_p99,
            row.messages_per_leg,
            row.rows_per_leg,
            row.broker_rows_per_leg,
            row.throttled,
            row.sustained / ceiling.legs_per_second,
        )?;
    }
    writeln!(out)?;
    writeln!(out, "Ceiling for the same durable work (same broker and Postgres, same run, no Keel logic): {:.0} messages/s of {} bytes produced (idempotent, acks=all) and consumed, with {:.1} rows per message in batched commits ({:.0} rows/s), = **{:.0} legs/s** at {:.2} messages per leg. Best sustained: **{best:.0} legs/s = {:.2} of the ceiling**.",
        ceiling.messages_per_second,
        shape.payload_bytes,
        shape.rows_per_message,
        ceiling.rows_per_second,
        ceiling.legs_per_second,
        shape.messages_per_leg,
        best / ceiling.legs_per_second)?;
    writeln!(out)?;
    writeln!(out, "Each side alone, to see which binds: the broker alone carries {:.0} messages/s (= {:.0} legs/s); Postgres alone takes {:.0} rows/s (= {:.0} legs/s).",
        broker_alone.messages_per_second,
        broker_alone.legs_per_second,
        postgres_alone.rows_per_second,
        postgres_alone.legs_per_second)?;
    if let Some(top) = rows
        .iter()
        .rev()
        .find_map(|r| r.cpu.as_ref().map(|c| (r, c)))
    {
        let (row, cpu) = top;
        writeln!(out)?;
        writeln!(out, "Where the CPU went at {:.0} legs/s offered ({:.0} s window; the machine was {:.0} % busy):", row.offered, cpu.seconds, 100.0 * cpu.machine_busy)?;
        writeln!(out)?;
        writeln!(out, "| process | share of the machine |")?;
        writeln!(out, "|---|---:|")?;
        for (label, share) in &cpu.shares {
            if *share >= 0.005 {
                writeln!(out, "| {label} | {:.1} % |", 100.0 * share)?;
            }
        }
        writeln!(out)?;
        writeln!(out, "Where each stage's time went in the same window (a stage busy near 100 % of the window is the bottleneck):")?;
        writeln!(out)?;
        writeln!(
            out,
            "| stage | busy committing | per commit | ms per commit |"
        )?;
        writeln!(out, "|---|---:|---:|---:|")?;
        for stage in &row.stages {
            writeln!(
                out,
                "| {} | {:.0} % | {:.1} | {:.1} |",
                stage.stage,
                100.0 * stage.busy,
                stage.per_commit,
                stage.millis_per_commit
            )?;
        }
    }
    Ok(out)
}

/// Asynchronous, then synchronous replication at `KEEL_BENCH_REPLICATION_RATE` legs/s, alternating
/// for `KEEL_BENCH_REPLICATION_ROUNDS` rounds (default 1) so run-to-run noise shows next to the
/// difference.
async fn replication_section() -> anyhow::Result<String> {
    let rate: f64 = env_or("KEEL_BENCH_REPLICATION_RATE", "1000")?;
    let rounds: u32 = env_or("KEEL_BENCH_REPLICATION_ROUNDS", "1")?;
    let seconds: u64 = env_or("KEEL_BENCH_REPLICATION_SECONDS", "30")?;
    let mut rows = Vec::new();
    for round in 1..=rounds {
        for synchronous in [false, true] {
            let row = replication::measure(synchronous, rate, seconds).await?;
            eprintln!("replication round {round}: {row:?}");
            rows.push((round, row));
        }
    }
    let mut out = String::new();
    writeln!(out)?;
    writeln!(out, "Two regions, each application's database replicated from us-east-1 to a streaming standby in us-west-2, both regions' services and brokers running ({rate:.0} legs/s offered for {seconds} s after a 5 s warm-up and 6 s of one leg at a time; lag sampled every 100 ms on the primary)")?;
    writeln!(out)?;
    writeln!(out, "| replication | round | one leg at a time: ack p50 / p99 ms | under load: accepted legs/s | ack p50 / p90 / p99 ms | submit→settled p50 / p99 ms | standby behind, bytes p50 / p99 / max | replay_lag ms p50 / p99 / max |")?;
    writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|")?;
    for (round, row) in &rows {
        let mode = if row.synchronous {
            "synchronous"
        } else {
            "asynchronous"
        };
        writeln!(
            out,
            "| {mode} | {round} | {:.1} / {:.1} | {:.0} | {:.1} / {:.1} / {:.1} | {:.0} / {:.0} | {:.0} / {:.0} / {:.0} | {:.1} / {:.1} / {:.1} |",
            row.quiet_ack_p50,
            row.quiet_ack_p99,
            row.legs as f64 / seconds as f64,
            row.ack_p50,
            row.ack_p90,
            row.ack_p99,
            row.settle_p50,
            row.settle_p99,
            row.lag_bytes_p50,
            row.lag_bytes_p99,
            row.lag_bytes_max,
            row.replay_lag_ms_p50,
            row.replay_lag_ms_p99,
            row.replay_lag_ms_max,
        )?;
    }
    Ok(out)
}

/// Runs the generator against `stack` for `options.duration` (required), checking that nothing
/// but the mix's invalid legs was refused or failed.
pub async fn generate(
    stack: &Stack,
    options: DriverOptions,
) -> anyhow::Result<keel_generator::Report> {
    anyhow::ensure!(options.duration.is_some(), "a bench run needs a duration");
    pipeline::generate(stack, options, CancellationToken::new()).await
}
