use std::collections::BTreeMap;
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

/// Which Kafka cluster each topic goes to now. Topics are region-local, and a topic's messages go to
/// the cluster of the region where its receiving application is active; `None` while that is not
/// known (the application is between regions, or the controls cannot be read), and then the
/// topic's rows wait in the outbox, in order.
pub trait Destinations: Send + Sync + 'static {
    fn cluster_for(&self, topic: &str) -> Option<String>;
}

/// Everything goes to one cluster.
pub struct SingleCluster(pub String);

impl Destinations for SingleCluster {
    fn cluster_for(&self, _topic: &str) -> Option<String> {
        Some(self.0.clone())
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
    /// The Kafka cluster of each region, by region name.
    clusters: BTreeMap<String, KafkaOptions>,
    destinations: Arc<dyn Destinations>,
    /// The topics this relay publishes (rows of other topics are left alone).
    topics: Vec<String>,
    pool: PgPool,
    options: RelayOptions,
    wake: Arc<Notify>,
}

impl OutboxRelay {
    pub fn new(
        clusters: BTreeMap<String, KafkaOptions>,
        destinations: Arc<dyn Destinations>,
        topics: Vec<String>,
        pool: PgPool,
        options: RelayOptions,
    ) -> Self {
        Self {
            clusters,
            destinations,
            topics,
            pool,
            options,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Uses `wake` as the waker: for a relay that is made anew per session while the code that
    /// commits rows holds the waker for good.
    pub fn with_waker(mut self, wake: Arc<Notify>) -> Self {
        self.wake = wake;
        self
    }

    /// Notify this after committing outbox rows, so they go out without waiting for the next poll.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    fn producer(kafka: &KafkaOptions) -> Result<FutureProducer, KafkaError> {
        let mut config = kafka.client_config();
        config
            .set("acks", "all")
            .set("linger.ms", kafka.linger_ms.to_string())
            .set("message.timeout.ms", "30000");
        if kafka.idempotent_producer {
            config.set("enable.idempotence", "true");
        } else {
            config
                .set("enable.idempotence", "false")
                .set("max.in.flight.requests.per.connection", "1");
        }
        config.create()
    }

    pub async fn run(self, shutdown: CancellationToken) -> Result<(), KafkaError> {
        // One producer per cluster, made when first needed.
        let mut producers: BTreeMap<String, FutureProducer> = BTreeMap::new();
        let mut delays = retry::backoff();
        let mut depth_checked = Instant::now();
        while !shutdown.is_cancelled() {
            if depth_checked.elapsed() > Duration::from_secs(5) {
                if let Ok(depth) = keel_safestore::outbox_depth(&self.pool).await {
                    metrics::gauge!("keel_outbox_depth").set(depth as f64);
                }
                depth_checked = Instant::now();
            }
            match self.publish_round(&mut producers).await {
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
                    producers.retain(|cluster, producer| match producer.client().fatal_error() {
                        Some(fatal) => {
                            tracing::warn!(
                                cluster,
                                ?fatal,
                                "producer hit a fatal error; replacing it"
                            );
                            false
                        }
                        None => true,
                    });
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
        for producer in producers.values() {
            let _ = producer.flush(Timeout::After(Duration::from_secs(5)));
        }
        Ok(())
    }

    /// Publishes one round of rows; returns how many were published.
    async fn publish_round(
        &self,
        producers: &mut BTreeMap<String, FutureProducer>,
    ) -> Result<usize, RelayError> {
        let mut routes = BTreeMap::new();
        let mut held = Vec::new();
        for topic in &self.topics {
            match self.destinations.cluster_for(topic) {
                Some(cluster) if self.clusters.contains_key(&cluster) => {
                    routes.insert(topic.as_str(), cluster);
                }
                destination => {
                    if let Some(cluster) = destination {
                        tracing::warn!(
                            topic,
                            cluster,
                            "no Kafka cluster configured for this region; holding the topic"
                        );
                    }
                    held.push(topic.clone());
                }
            }
        }
        metrics::gauge!("keel_outbox_held_topics").set(held.len() as f64);
        let routed: Vec<String> = routes.keys().map(|t| (*t).to_owned()).collect();
        let rows = keel_safestore::unpublished(&self.pool, self.options.batch, &routed).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        for cluster in routes.values() {
            if !producers.contains_key(cluster) {
                producers.insert(cluster.clone(), Self::producer(&self.clusters[cluster])?);
            }
        }
        let mut deliveries = Vec::with_capacity(rows.len());
        let mut enqueue_error = None;
        for row in &rows {
            let producer = &producers[&routes[row.topic.as_str()]];
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

/// Publishes stored outbox messages again, straight into `kafka`: reconciliation's replay into the
/// region where the receiving application processes, whatever the relays' routing says at the
/// moment. The records are the relay's own (key, payload, message-id header), so consumers drop
/// what they already have. Returns once every record is acknowledged by the broker.
pub async fn republish(
    kafka: &KafkaOptions,
    messages: &[keel_safestore::PendingMessage],
) -> Result<usize, KafkaError> {
    let producer = OutboxRelay::producer(kafka)?;
    let ids: Vec<String> = messages.iter().map(|m| m.message_id.to_string()).collect();
    let deliveries = messages.iter().zip(&ids).map(|(message, id)| {
        let record = FutureRecord::to(&message.topic)
            .key(&message.key)
            .payload(&message.payload)
            .headers(OwnedHeaders::new().insert(Header {
                key: MESSAGE_ID_HEADER,
                value: Some(id),
            }));
        producer.send(record, Timeout::After(Duration::from_secs(30)))
    });
    for delivery in join_all(deliveries).await {
        delivery.map_err(|(error, _)| error)?;
    }
    Ok(messages.len())
}
