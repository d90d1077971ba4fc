//! The machine's ceiling for Keel's durable work, measured on the same broker and Postgres cluster as
//! the pipeline, in the same run, with no Keel logic: messages shaped like Keel's (its average
//! payload size, keyed, no headers) produced with the idempotent producer (acks=all) and consumed
//! back, while Postgres takes the rows Keel writes per message (same count, same payload size) in
//! batched commits. Both sides run at once and are kept in step, since on one machine they share
//! the cores as Keel's processes do; the ceiling is the message rate they sustain together.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_streaming::KafkaOptions;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// Keel's traffic as measured in the pipeline step.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Broker messages per leg.
    pub messages_per_leg: f64,
    /// Postgres rows written (inserted, updated or deleted) per broker message.
    pub rows_per_message: f64,
    /// Average message payload, in bytes.
    pub payload_bytes: usize,
    pub partitions: i32,
    pub linger_ms: u32,
}

/// Which sides of the durable work to run: both (the ceiling), or one alone (to see which binds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sides {
    Both,
    BrokerOnly,
    PostgresOnly,
}

#[derive(Debug, Clone, Copy)]
pub struct Ceiling {
    pub messages_per_second: f64,
    pub rows_per_second: f64,
    pub legs_per_second: f64,
}

/// How far one side may run ahead of the other, in messages.
const SLACK: u64 = 2_000;
/// Messages per Postgres commit.
const MESSAGES_PER_COMMIT: u64 = 100;

pub async fn measure(
    brokers: &str,
    databases: &[&str],
    shape: Shape,
    duration: Duration,
    sides: Sides,
) -> anyhow::Result<Ceiling> {
    let topic = "bench.ceiling";
    let kafka = KafkaOptions {
        brokers: brokers.to_owned(),
        partitions: shape.partitions,
        ..KafkaOptions::default()
    };
    keel_streaming::admin::ensure_topics(&kafka, &[topic]).await?;
    // One writer per database, as Keel's applications each write their own.
    let mut pools = Vec::new();
    for url in databases {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(url)
            .await?;
        sqlx::raw_sql(
            "DROP SCHEMA IF EXISTS bench CASCADE; CREATE SCHEMA bench;
             CREATE TABLE bench.rows (id uuid PRIMARY KEY, key text NOT NULL, payload text NOT NULL,
                                      created_at timestamptz NOT NULL DEFAULT now());
             CREATE INDEX ON bench.rows (created_at);",
        )
        .execute(&pool)
        .await?;
        pools.push(pool);
    }

    let consumed = Arc::new(AtomicU64::new(0));
    let written = Arc::new(AtomicU64::new(0));
    // A side left out counts as always done, so the other runs unpaced.
    let unpaced = Arc::new(AtomicU64::new(u64::MAX / 2));
    let (consumed_pace, written_pace) = match sides {
        Sides::Both => (consumed.clone(), written.clone()),
        Sides::BrokerOnly => (consumed.clone(), unpaced.clone()),
        Sides::PostgresOnly => (unpaced.clone(), written.clone()),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let payload =
        serde_json::json!({"pad": "x".repeat(shape.payload_bytes.saturating_sub(12))}).to_string();
    let started = Instant::now();

    let reader = {
        let (consumed, stop, brokers) = (consumed.clone(), stop.clone(), brokers.to_owned());
        let partitions = shape.partitions;
        std::thread::spawn(move || -> anyhow::Result<()> {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &brokers)
                .set("group.id", "bench-ceiling")
                .set("enable.auto.commit", "false")
                .set("fetch.wait.max.ms", "100")
                .create()?;
            let mut assignment = TopicPartitionList::new();
            for partition in 0..partitions {
                assignment.add_partition_offset(topic, partition, Offset::End)?;
            }
            consumer.assign(&assignment)?;
            while !stop.load(Ordering::Relaxed) {
                if let Some(Ok(message)) = consumer.poll(Duration::from_millis(50)) {
                    if message.payload().is_some() {
                        consumed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Ok(())
        })
    };
    // Let the consumer take its position at the end before anything is produced.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let producer_task = {
        let (consumed, written, stop) = (consumed_pace.clone(), written_pace.clone(), stop.clone());
        let enabled = sides != Sides::PostgresOnly;
        let payload = payload.clone();
        tokio::spawn(async move {
            let producer: FutureProducer = ClientConfig::new()
                .set("bootstrap.servers", &kafka.brokers)
                .set("enable.idempotence", "true")
                .set("acks", "all")
                .set("linger.ms", shape.linger_ms.to_string())
                .create()?;
            let mut produced = 0u64;
            let mut deliveries = Vec::new();
            while enabled && !stop.load(Ordering::Relaxed) {
                if produced > written.load(Ordering::Relaxed) + SLACK
                    || produced > consumed.load(Ordering::Relaxed) + 4 * SLACK
                {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                for _ in 0..100 {
                    let key = format!("IM-ALPHA|BR-NORTH|C-{produced}");
                    match producer.send_result(FutureRecord::to(topic).key(&key).payload(&payload))
                    {
                        Ok(delivery) => {
                            deliveries.push(delivery);
                            produced += 1;
                        }
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(2)).await;
                            break;
                        }
                    }
                }
                if deliveries.len() > 5_000 {
                    for delivery in deliveries.drain(..) {
                        delivery.await?.map_err(|(e, _)| e)?;
                    }
                }
            }
            for delivery in deliveries {
                let _ = delivery.await;
            }
            Ok::<_, anyhow::Error>(())
        })
    };

    let rows_per_commit = (shape.rows_per_message * MESSAGES_PER_COMMIT as f64).round() as usize;
    let writer_pools = if sides == Sides::BrokerOnly {
        Vec::new()
    } else {
        pools.clone()
    };
    let writers: Vec<_> = writer_pools
        .into_iter()
        .map(|pool| {
            let (consumed, written, stop) =
                (consumed_pace.clone(), written.clone(), stop.clone());
            let payload = payload.clone();
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if written.load(Ordering::Relaxed) > consumed.load(Ordering::Relaxed) + SLACK {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        continue;
                    }
                    let ids: Vec<uuid::Uuid> =
                        (0..rows_per_commit).map(|_| uuid::Uuid::new_v4()).collect();
                    let payloads = vec![payload.clone(); ids.len()];
                    sqlx::query(
                        "INSERT INTO bench.rows (id, key, payload)
                         SELECT id, 'IM-ALPHA|BR-NORTH|C', p FROM UNNEST($1::uuid[], $2::text[]) AS u(id, p)",
                    )
                    .bind(&ids)
                    .bind(&payloads)
                    .execute(&pool)
                    .await?;
                    written.fetch_add(MESSAGES_PER_COMMIT, Ordering::Relaxed);
                }
                Ok::<_, sqlx::Error>(())
            })
        })
        .collect();

    tokio::time::sleep(duration).await;
    let elapsed = started.elapsed().as_secs_f64() - 2.0;
    let done = match sides {
        Sides::Both => consumed
            .load(Ordering::Relaxed)
            .min(written.load(Ordering::Relaxed)),
        Sides::BrokerOnly => consumed.load(Ordering::Relaxed),
        Sides::PostgresOnly => written.load(Ordering::Relaxed),
    } as f64;
    stop.store(true, Ordering::Relaxed);
    producer_task.await??;
    for writer in writers {
        writer.await??;
    }
    tokio::task::spawn_blocking(move || reader.join().expect("reader"))
        .await?
        .map_err(|e| anyhow::anyhow!("ceiling consumer: {e}"))?;
    for pool in pools {
        sqlx::raw_sql("DROP SCHEMA bench CASCADE")
            .execute(&pool)
            .await?;
        pool.close().await;
    }

    let messages_per_second = done / elapsed;
    Ok(Ceiling {
        messages_per_second,
        rows_per_second: messages_per_second * shape.rows_per_message,
        legs_per_second: messages_per_second / shape.messages_per_leg,
    })
}
