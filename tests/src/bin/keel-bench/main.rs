//! `make bench`: how fast the trade-matching pipeline runs on this machine, and how close that is to
//! the machine's own ceiling for the same durable work. Prints one summary table.
//!
//! 1. Postgres ceiling: a raw loop of batched transactions writing what a stage writes per message
//!    (an inbox row, a state row, an outbox row, the offset), two writers, 100 messages per commit.
//! 2. Broker ceiling: a raw idempotent produce + consume loop of 600-byte keyed messages on tansu.
//! 3. Keel, the full path through settlement: the generator (its default mix of trades, batches of
//!    50) at increasing offered rates; for each, the sustained legs/s to the last settlement
//!    notification, ingress ack p50/p99, submission-to-settlement-notification (SETTLED or
//!    SETTLEMENT_FAILED) p50/p99 measured from the stores' own timestamps, and the share of generated
//!    trades that settled.
//!
//! 4. Two regions, replicated: the standby's replay lag under generator load, and ingress's
//!    acknowledgement latency with asynchronous and with synchronous replication
//!    ([`replication`]).
//!
//! `KEEL_BENCH_SECTIONS=pipeline,replication` picks the sections (both by default).
//!
//! Per leg Keel commits at four stages (ingress, ingestion, matching, notification) and moves four
//! broker messages (one submission, one trade command, two events), so the ceiling in legs/s is
//! min(Postgres messages/s, broker messages/s) / 4. That is trade matching's ceiling: settlement adds
//! an instruction and a result per allocation on top, so the full path's ceiling is lower still.

use std::time::{Duration, Instant};

use anyhow::Context;
use keel_generator::{DriverOptions, Report};
use keel_streaming::KafkaOptions;
use keel_system_tests::{participants, Stack, StackOptions};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use sqlx::postgres::PgPoolOptions;
use tokio_util::sync::CancellationToken;

mod replication;

const STEP_SECONDS: u64 = 15;
const REPLICATION_SECONDS: u64 = 30;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let sections =
        std::env::var("KEEL_BENCH_SECTIONS").unwrap_or_else(|_| "pipeline,replication".into());
    let sections: Vec<&str> = sections.split(',').map(str::trim).collect();
    for section in &sections {
        anyhow::ensure!(
            ["pipeline", "replication"].contains(section),
            "KEEL_BENCH_SECTIONS: unknown section {section:?} (pipeline, replication)"
        );
    }
    let pipeline_tables = if sections.contains(&"pipeline") {
        pipeline().await?
    } else {
        String::new()
    };
    let replication_table = if sections.contains(&"replication") {
        replication_section().await?
    } else {
        String::new()
    };
    println!("{pipeline_tables}{replication_table}");
    Ok(())
}

/// Asynchronous, then synchronous replication at `KEEL_BENCH_REPLICATION_RATE` legs/s (default 60,
/// below the one-region pipeline's saturation on a 2-core machine), alternating for
/// `KEEL_BENCH_REPLICATION_ROUNDS` rounds (default 2) so run-to-run noise shows next to the difference.
async fn replication_section() -> anyhow::Result<String> {
    use std::fmt::Write;
    let rate: f64 = env_or("KEEL_BENCH_REPLICATION_RATE", "60")?;
    let rounds: u32 = env_or("KEEL_BENCH_REPLICATION_ROUNDS", "2")?;
    let mut rows = Vec::new();
    for round in 1..=rounds {
        for synchronous in [false, true] {
            let row = replication::measure(synchronous, rate, REPLICATION_SECONDS).await?;
            eprintln!("replication round {round}: {row:?}");
            rows.push((round, row));
        }
    }
    let mut out = String::new();
    writeln!(out)?;
    writeln!(out, "Two regions, trade matching's database replicated from us-east-1 to a streaming standby in us-west-2 ({rate:.0} legs/s offered for {REPLICATION_SECONDS} s after a 5 s warm-up and 6 s of one leg at a time at 50 legs/s, the generator's default mix; lag sampled every 100 ms on the primary)")?;
    writeln!(out)?;
    writeln!(out, "| replication | round | one leg at a time: ack p50 / p99 ms | under load: accepted legs | ack p50 / p90 / p99 ms | standby behind, bytes p50 / p99 / max | replay_lag ms p50 / p99 / max |")?;
    writeln!(out, "|---|---:|---:|---:|---:|---:|---:|")?;
    for (round, row) in &rows {
        let mode = if row.synchronous {
            "synchronous"
        } else {
            "asynchronous"
        };
        writeln!(
            out,
            "| {mode} | {round} | {:.1} / {:.1} | {} | {:.1} / {:.1} / {:.1} | {:.0} / {:.0} / {:.0} | {:.1} / {:.1} / {:.1} |",
            row.quiet_ack_p50,
            row.quiet_ack_p99,
            row.legs,
            row.ack_p50,
            row.ack_p90,
            row.ack_p99,
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

/// The environment variable `name` parsed, or `default`.
fn env_or<T: std::str::FromStr>(name: &str, default: &str) -> anyhow::Result<T> {
    let value = std::env::var(name).unwrap_or_else(|_| default.to_owned());
    value
        .trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("{name}={value:?} is not a valid value"))
}

/// Sections 1 to 3: the ceilings, then the one-region pipeline at increasing rates.
async fn pipeline() -> anyhow::Result<String> {
    use std::fmt::Write;
    let rates: Vec<f64> = std::env::var("KEEL_BENCH_RATES")
        .unwrap_or_else(|_| "250,500,1000,2000,3000".into())
        .split(',')
        .map(|r| {
            r.trim()
                .parse()
                .context("KEEL_BENCH_RATES is a comma-separated list of legs/s")
        })
        .collect::<anyhow::Result<_>>()?;

    let stack = Stack::start(
        "bench",
        StackOptions {
            release: true,
            ..StackOptions::default()
        },
    )
    .await?;
    eprintln!("stack up; logs in {}", stack.dir.join("logs").display());

    let pg_ceiling = postgres_ceiling(&stack.database_url).await?;
    eprintln!("postgres ceiling: {pg_ceiling:.0} messages/s");
    let broker_ceiling = broker_ceiling(&stack.kafka_brokers).await?;
    eprintln!("broker ceiling: {broker_ceiling:.0} messages/s");
    let ceiling_legs = pg_ceiling.min(broker_ceiling) / 4.0;

    let mut out = String::new();
    let mut rows = Vec::new();
    for (step, rate) in rates.iter().enumerate() {
        let row = keel_step(&stack, step, *rate).await?;
        eprintln!("offered {rate:.0} legs/s: {row:?}");
        let saturated = !row.drained || row.sustained < 0.8 * rate;
        rows.push((*rate, row));
        if saturated {
            break;
        }
    }

    writeln!(out)?;
    writeln!(out, "Keel benchmark (trade matching and settlement, one region, everything on this {}-core machine)",
        num_cpus()
    )?;
    writeln!(out)?;
    writeln!(out, "| offered legs/s | accepted legs | drained | sustained legs/s | ack p50 ms | ack p99 ms | settlement-notification p50 ms | settlement-notification p99 ms | trades | settled | settlement failed | of ceiling |")?;
    writeln!(
        out,
        "|---:|---:|:---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )?;
    for (rate, row) in &rows {
        writeln!(out, "| {rate:.0} | {} | {} | {:.0} | {:.1} | {:.1} | {:.0} | {:.0} | {} | {} ({:.1} %) | {} | {:.0} % |",
            row.legs,
            if row.drained { "yes" } else { "no" },
            row.sustained,
            row.ack_p50,
            row.ack_p99,
            row.e2e_p50,
            row.e2e_p99,
            row.trades,
            row.settled,
            100.0 * row.settled as f64 / row.trades.max(1) as f64,
            row.settlement_failed,
            100.0 * row.sustained / ceiling_legs
        )?;
    }
    let best = rows.iter().map(|(_, r)| r.sustained).fold(0.0, f64::max);
    writeln!(out)?;
    writeln!(out, "| ceiling | messages/s | legs/s (÷4) |")?;
    writeln!(out, "|---|---:|---:|")?;
    writeln!(out, "| Postgres: batched commits of inbox + state + outbox + offset, 2 writers x 100/commit | {pg_ceiling:.0} | {:.0} |", pg_ceiling / 4.0)?;
    writeln!(out, "| tansu: idempotent produce + consume, 600-byte keyed messages | {broker_ceiling:.0} | {:.0} |", broker_ceiling / 4.0)?;
    writeln!(out)?;
    writeln!(out, "Best sustained end to end: {best:.0} legs/s = {:.0} % of the machine's ceiling ({ceiling_legs:.0} legs/s).", 100.0 * best / ceiling_legs)?;
    Ok(out)
}

/// Runs the generator against `stack` with `options` (a duration is required) and checks that
/// nothing but the mix's invalid legs was refused or failed.
async fn generate(stack: &Stack, options: DriverOptions) -> anyhow::Result<Report> {
    anyhow::ensure!(options.duration.is_some(), "a bench run needs a duration");
    let report = keel_generator::run(
        stack.client(),
        &participants(),
        options,
        CancellationToken::new(),
    )
    .await?;
    // Invalid legs are refused by ingress by design; nothing else may be.
    let invalid = report.trades.get("invalid").copied().unwrap_or(0);
    anyhow::ensure!(
        report.legs_failed == 0 && report.legs_refused == invalid,
        "submissions failed: {} failed, {} refused ({invalid} invalid by design)",
        report.legs_failed,
        report.legs_refused
    );
    Ok(report)
}

fn num_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

#[derive(Debug)]
struct StepResult {
    legs: u64,
    trades: u64,
    settled: i64,
    settlement_failed: i64,
    /// Whether every accepted leg reached its final notification within the drain bound.
    drained: bool,
    sustained: f64,
    ack_p50: f64,
    ack_p99: f64,
    e2e_p50: f64,
    e2e_p99: f64,
}

async fn keel_step(stack: &Stack, step: usize, rate: f64) -> anyhow::Result<StepResult> {
    let prefix = format!("B{step}");
    let options = DriverOptions {
        duration: Some(Duration::from_secs(STEP_SECONDS)),
        ..DriverOptions::at_rate(rate, step as u64, &prefix)
    };
    let report = generate(stack, options).await?;
    let trades: u64 = report.trades.values().sum();
    let to_settle = (report.trades.get("matching").copied().unwrap_or(0)
        + report.trades.get("failing").copied().unwrap_or(0)) as i64;
    let pattern = format!("{prefix}-%");
    // Wait for every matched trade's settlement notification (SETTLED or SETTLEMENT_FAILED) to both
    // parties, for a bounded time: a saturated step reports what completed instead.
    let deadline = Instant::now() + Duration::from_secs(120);
    let drained = loop {
        let done: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM notification.notifications
             WHERE status IN ('SETTLED', 'SETTLEMENT_FAILED') AND body->>'trade_ref' LIKE $1",
        )
        .bind(&pattern)
        .fetch_one(&stack.db)
        .await?;
        if done == to_settle * 2 {
            break true;
        }
        if Instant::now() > deadline {
            eprintln!(
                "step {step}: {done} of {} settlement notifications after the drain bound",
                to_settle * 2
            );
            break false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (settled, settlement_failed): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status = 'SETTLED'), count(*) FILTER (WHERE status = 'SETTLEMENT_FAILED')
         FROM matching.trades WHERE trade_ref LIKE $1",
    )
    .bind(&pattern)
    .fetch_one(&stack.db)
    .await?;
    let (seconds, p50, p99): (f64, f64, f64) = sqlx::query_as(
        "WITH legs AS (
             SELECT trade_id, max(received_at) AS last_leg, min(received_at) AS first_leg
             FROM ingress.submissions WHERE trade_ref LIKE $1 GROUP BY trade_id),
         done AS (
             SELECT trade_id, max(created_at) AS notified
             FROM notification.notifications
             WHERE status IN ('SETTLED', 'SETTLEMENT_FAILED') AND body->>'trade_ref' LIKE $1 GROUP BY trade_id)
         SELECT extract(epoch FROM max(d.notified) - min(l.first_leg))::float8,
                (percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM d.notified - l.last_leg)) * 1000)::float8,
                (percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM d.notified - l.last_leg)) * 1000)::float8
         FROM legs l JOIN done d USING (trade_id)",
    )
    .bind(&pattern)
    .fetch_one(&stack.db)
    .await?;
    Ok(StepResult {
        legs: report.legs_accepted,
        trades,
        settled,
        settlement_failed,
        drained,
        sustained: report.legs_accepted as f64 / seconds,
        ack_p50: report.percentile(0.5).unwrap_or(0.0),
        ack_p99: report.percentile(0.99).unwrap_or(0.0),
        e2e_p50: p50,
        e2e_p99: p99,
    })
}

/// Messages per second through batched transactions shaped like one stage's commit.
async fn postgres_ceiling(database_url: &str) -> anyhow::Result<f64> {
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(database_url)
        .await?;
    sqlx::raw_sql(
        "CREATE SCHEMA bench;
         CREATE TABLE bench.inbox (message_id uuid PRIMARY KEY, topic text, partition int, \"offset\" bigint, processed_at timestamptz DEFAULT now());
         CREATE TABLE bench.state (id uuid PRIMARY KEY, state jsonb NOT NULL, updated_at timestamptz DEFAULT now());
         CREATE TABLE bench.outbox (id bigserial PRIMARY KEY, message_id uuid UNIQUE, topic text, key text, payload jsonb, created_at timestamptz DEFAULT now(), published_at timestamptz);
         CREATE TABLE bench.offsets (topic text, partition int, next_offset bigint, PRIMARY KEY (topic, partition));",
    )
    .execute(&pool)
    .await?;
    let payload = serde_json::json!({"block": "x".repeat(500)});
    let deadline = Instant::now() + Duration::from_secs(10);
    let started = Instant::now();
    let workers: Vec<_> = (0..2)
        .map(|worker| {
            let (pool, payload) = (pool.clone(), payload.clone());
            tokio::spawn(async move {
                let mut written = 0u64;
                while Instant::now() < deadline {
                    let ids: Vec<uuid::Uuid> = (0..100).map(|_| uuid::Uuid::new_v4()).collect();
                    let payloads = vec![payload.clone(); ids.len()];
                    let mut tx = pool.begin().await?;
                    sqlx::query("INSERT INTO bench.inbox (message_id, topic, partition, \"offset\") SELECT id, 't', 0, 0 FROM UNNEST($1::uuid[]) id")
                        .bind(&ids).execute(&mut *tx).await?;
                    sqlx::query("INSERT INTO bench.state (id, state) SELECT * FROM UNNEST($1::uuid[], $2::jsonb[])")
                        .bind(&ids).bind(&payloads).execute(&mut *tx).await?;
                    sqlx::query("INSERT INTO bench.outbox (message_id, topic, key, payload) SELECT id, 't', 'k', p FROM UNNEST($1::uuid[], $2::jsonb[]) AS u(id, p)")
                        .bind(&ids).bind(&payloads).execute(&mut *tx).await?;
                    sqlx::query("INSERT INTO bench.offsets VALUES ('t', $1, $2) ON CONFLICT (topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset")
                        .bind(worker).bind(written as i64).execute(&mut *tx).await?;
                    tx.commit().await?;
                    written += ids.len() as u64;
                }
                Ok::<u64, sqlx::Error>(written)
            })
        })
        .collect();
    let mut total = 0;
    for worker in workers {
        total += worker.await??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// Messages per second produced (idempotent, acks=all) and consumed back, end to end.
async fn broker_ceiling(brokers: &str) -> anyhow::Result<f64> {
    const MESSAGES: usize = 40_000;
    let topic = "bench.raw";
    keel_streaming::admin::ensure_topics(
        &KafkaOptions {
            brokers: brokers.to_owned(),
            ..KafkaOptions::default()
        },
        &[topic],
    )
    .await?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "2")
        .create()?;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "bench")
        .set("enable.auto.commit", "false")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    for partition in 0..4 {
        assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let payload = "x".repeat(600);
    let started = Instant::now();
    let reader = std::thread::spawn(move || {
        let mut seen = 0;
        let deadline = Instant::now() + Duration::from_secs(300);
        while seen < MESSAGES && Instant::now() < deadline {
            if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
                seen += usize::from(message.payload().is_some());
            }
        }
        seen
    });
    let mut deliveries = Vec::with_capacity(MESSAGES);
    for i in 0..MESSAGES {
        let key = format!("IM-ALPHA|BR-NORTH|B-{i}");
        loop {
            match producer.send_result(FutureRecord::to(topic).key(&key).payload(&payload)) {
                Ok(delivery) => {
                    deliveries.push(delivery);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }
    for delivery in deliveries {
        delivery.await?.map_err(|(e, _)| e)?;
    }
    let seen = tokio::task::spawn_blocking(move || reader.join().expect("reader")).await?;
    anyhow::ensure!(seen == MESSAGES, "consumed {seen} of {MESSAGES}");
    Ok(MESSAGES as f64 / started.elapsed().as_secs_f64())
}
