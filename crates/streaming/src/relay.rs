use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use keel_safestore::PgPool;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::util::Timeout;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{retry, KafkaOptions, MESSAGE_ID_HEADER};

#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// Rows published per round.
    pub batch: i64,
    /// How often an idle relay looks for rows nobody woke it for (written by another process).
    pub idle_poll: Duration,
}

impl Default for RelayOptions {
    fn default() -> Self {
        Self {
            batch: 1000,
            idle_poll: Duration::from_millis(200),
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error("reading the outbox: {0}")]
    Store(#[from] sqlx::Error),
    #[error("publishing to kafka: {0}")]
    Kafka(#[from] KafkaError),
}

/// Publishes a service's outbox, in order, with the idempotent producer; a row is marked published only
/// after the broker acknowledged it. A crash in between re-publishes it, and consumers dedup by id.
pub struct OutboxRelay {
    kafka: KafkaOptions,
    pool: PgPool,
    options: RelayOptions,
    wake: Arc<Notify>,
}

impl OutboxRelay {
    pub fn new(kafka: KafkaOptions, pool: PgPool, options: RelayOptions) -> Self {
        Self {
            kafka,
            pool,
            options,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Notify this after committing outbox rows, so they go out without waiting for the next poll.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    fn producer(&self) -> Result<FutureProducer, KafkaError> {
        let mut config = self.kafka.client_config();
        config
            .set("acks", "all")
            .set("linger.ms", self.kafka.linger_ms.to_string())
            .set("message.timeout.ms", "30000");
        if self.kafka.idempotent_producer {
            config.set("enable.idempotence", "true");
        } else {
            config
                .set("enable.idempotence", "false")
                .set("max.in.flight.requests.per.connection", "1");
        }
        config.create()
    }

    pub async fn run(self, shutdown: CancellationToken) -> Result<(), KafkaError> {
        let mut producer = self.producer()?;
        let mut delays = retry::backoff();
        let mut depth_checked = Instant::now();
        while !shutdown.is_cancelled() {
            if depth_checked.elapsed() > Duration::from_secs(5) {
                if let Ok(depth) = keel_safestore::outbox_depth(&self.pool).await {
                    metrics::gauge!("keel_outbox_depth").set(depth as f64);
                }
                depth_checked = Instant::now();
            }
            match self.publish_round(&producer).await {
                Ok(0) => {
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(self.options.idle_poll) => {}
                    }
                }
                Ok(_) => delays = retry::backoff(),
                Err(error) => {
                    let delay = delays.next().unwrap_or(Duration::from_secs(5));
                    tracing::warn!(%error, ?delay, "outbox relay round failed; retrying");
                    if let Some(fatal) = producer.client().fatal_error() {
                        tracing::warn!(
                            ?fatal,
                            "idempotent producer hit a fatal error; replacing it"
                        );
                        producer = self.producer()?;
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
        let _ = producer.flush(Timeout::After(Duration::from_secs(5)));
        Ok(())
    }

    /// Publishes one round of rows; returns how many were published.
    async fn publish_round(&self, producer: &FutureProducer) -> Result<usize, RelayError> {
        let rows = keel_safestore::unpublished(&self.pool, self.options.batch).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut deliveries = Vec::with_capacity(rows.len());
        let mut enqueue_error = None;
        for row in &rows {
            let id = row.message_id.to_string();
            let record = FutureRecord::to(&row.topic)
                .key(&row.key)
                .payload(&row.payload)
                .headers(OwnedHeaders::new().insert(Header {
                    key: MESSAGE_ID_HEADER,
                    value: Some(&id),
                }));
            match producer.send_result(record) {
                Ok(delivery) => deliveries.push((row.id, delivery)),
                Err((error, _)) => {
                    // Typically a full local queue: publish what is queued, the rest goes next round.
                    enqueue_error = Some(error);
                    break;
                }
            }
        }
        let (ids, futures): (Vec<i64>, Vec<_>) = deliveries.into_iter().unzip();
        let results = join_all(futures).await;
        let mut published = Vec::with_capacity(ids.len());
        let mut delivery_error = None;
        for (id, result) in ids.into_iter().zip(results) {
            match result {
                Ok(Ok(_)) => published.push(id),
                Ok(Err((error, _))) => delivery_error = Some(error),
                Err(_canceled) => delivery_error = Some(KafkaError::Canceled),
            }
        }
        keel_safestore::mark_published(&self.pool, &published).await?;
        metrics::counter!("keel_outbox_published_total").increment(published.len() as u64);
        match delivery_error.or(if published.is_empty() {
            enqueue_error
        } else {
            None
        }) {
            Some(error) => Err(error.into()),
            None => Ok(published.len()),
        }
    }
}
