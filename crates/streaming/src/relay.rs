use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use keel_platform::trace;
use keel_safestore::{PendingMessage, PgPool};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer as _};
use rdkafka::util::Timeout;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{retry, KafkaOptions};

#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// Rows read from the outbox at a time.
    pub batch: i64,
    /// Messages sent and not yet acknowledged by the broker, at most.
    pub max_in_flight: usize,
    /// How often an idle relay looks for rows nobody woke it for (written by another process).
    pub idle_poll: Duration,
    /// How often progress is recorded while messages keep flowing (always once caught up).
    pub save_every: Duration,
}

impl Default for RelayOptions {
    fn default() -> Self {
        Self {
            batch: 1000,
            max_in_flight: 10_000,
            idle_poll: Duration::from_millis(200),
            save_every: Duration::from_millis(50),
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
    #[error("reading or recording the outbox: {0}")]
    Store(#[from] sqlx::Error),
    #[error("publishing to kafka: {0}")]
    Kafka(#[from] KafkaError),
}

/// A message handed to the producer and not yet acknowledged.
struct InFlight {
    topic: String,
    /// Its outbox row id.
    id: i64,
    delivery: DeliveryFuture,
}

/// Publishes a service's outbox, per topic in row id order (commit order: see
/// `keel_safestore::enqueue`), with the idempotent producer. It
/// sends continuously, up to `max_in_flight` unacknowledged messages, while an acknowledging task
/// follows the broker's acknowledgements in send order and records, per topic, the position up to
/// which everything is acknowledged. A crash re-publishes what was sent after the last recorded
/// position, and consumers drop those by message id. A failed delivery rewinds every topic to its
/// acknowledged position and sends again from there.
///
/// Instances of a scaled-out stage share one outbox: a session-level advisory lock lets one relay
/// publish at a time, and another takes over when its holder's connection ends.
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
            .set("compression.type", kafka.compression.as_str())
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

    /// Relays until `shutdown`, holding the outbox's relay lock while it does.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut delays = retry::backoff();
        let mut waiting_logged = false;
        while !shutdown.is_cancelled() {
            let lock = match keel_safestore::try_singleton(&self.pool, "outbox-relay").await {
                Ok(Some(lock)) => lock,
                Ok(None) => {
                    if !waiting_logged {
                        tracing::info!("another instance relays this outbox; standing by");
                        waiting_logged = true;
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                    continue;
                }
                Err(error) => {
                    let delay = delays.next().unwrap_or(Duration::from_secs(5));
                    tracing::warn!(%error, ?delay, "cannot take the relay lock; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    continue;
                }
            };
            waiting_logged = false;
            delays = retry::backoff();
            self.relay(lock, &shutdown).await;
        }
    }

    /// Relays while the lock's connection lives. Returns on shutdown, or when the lock may be lost.
    async fn relay(
        &self,
        mut lock: sqlx::pool::PoolConnection<sqlx::Postgres>,
        shutdown: &CancellationToken,
    ) {
        let mut producers: BTreeMap<String, FutureProducer> = BTreeMap::new();
        let mut delays = retry::backoff();
        let mut checked = Instant::now();
        'session: while !shutdown.is_cancelled() {
            let Ok(acked) = keel_safestore::relay_progress(&self.pool, &self.topics).await else {
                tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(5))).await;
                continue;
            };
            let mut sent = acked.clone();
            let (to_acker, acks) = mpsc::channel(self.options.max_in_flight.max(1));
            let acker = tokio::spawn(acknowledge(
                self.pool.clone(),
                acks,
                acked,
                self.options.save_every,
            ));
            let mut lock_lost = false;
            let sending: Result<(), RelayError> = loop {
                if shutdown.is_cancelled() || acker.is_finished() {
                    break Ok(());
                }
                if checked.elapsed() > Duration::from_secs(1) {
                    // The lock lives as long as this connection: a relay that lost it stops.
                    if let Err(error) = sqlx::query("SELECT 1").execute(&mut *lock).await {
                        tracing::warn!(%error, "the relay lock's connection failed; letting go");
                        lock_lost = true;
                        break Ok(());
                    }
                    checked = Instant::now();
                }
                let sent_now = match self.send_round(&mut producers, &mut sent, &to_acker).await {
                    Ok(sent_now) => sent_now,
                    Err(error) => break Err(error),
                };
                if sent_now < self.options.batch as usize {
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(self.options.idle_poll) => {}
                    }
                }
            };
            // Let the acknowledgements in flight land (bounded), so their progress is recorded.
            drop(to_acker);
            let acknowledged = tokio::time::timeout(Duration::from_secs(5), acker).await;
            let finished = acknowledged.is_ok();
            let outcome = match (sending, acknowledged) {
                (Err(error), _) | (Ok(()), Ok(Ok(Err(error)))) => Err(error),
                (Ok(()), Ok(Err(_panicked))) => Err(RelayError::Kafka(KafkaError::Canceled)),
                (Ok(()), _) => Ok(()),
            };
            if lock_lost {
                break 'session;
            }
            if let Err(error) = outcome {
                let delay = delays.next().unwrap_or(Duration::from_secs(5));
                tracing::warn!(%error, ?delay, "outbox relay failed; sending again from the acknowledged position");
                producers.retain(|cluster, producer| match producer.client().fatal_error() {
                    Some(fatal) => {
                        tracing::warn!(cluster, ?fatal, "producer hit a fatal error; replacing it");
                        false
                    }
                    None => true,
                });
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep(delay) => {}
                }
            } else if !finished {
                tracing::warn!(
                    "acknowledgements still outstanding at shutdown; they are sent again next time"
                );
            } else {
                delays = retry::backoff();
            }
        }
        for producer in producers.values() {
            let _ = producer.flush(Timeout::After(Duration::from_secs(5)));
        }
    }

    /// Which cluster each routed topic goes to now; held topics are left out.
    fn routes(&self) -> BTreeMap<String, String> {
        let mut routes = BTreeMap::new();
        let mut held = 0;
        for topic in &self.topics {
            match self.destinations.cluster_for(topic) {
                Some(cluster) if self.clusters.contains_key(&cluster) => {
                    routes.insert(topic.clone(), cluster);
                }
                destination => {
                    if let Some(cluster) = destination {
                        tracing::warn!(
                            topic,
                            cluster,
                            "no Kafka cluster configured for this region; holding the topic"
                        );
                    }
                    held += 1;
                }
            }
        }
        metrics::gauge!("keel_outbox_held_topics").set(held as f64);
        routes
    }

    /// Reads the next rows after what was sent and hands them to the producers; returns how many.
    async fn send_round(
        &self,
        producers: &mut BTreeMap<String, FutureProducer>,
        sent: &mut std::collections::HashMap<String, i64>,
        to_acker: &mpsc::Sender<InFlight>,
    ) -> Result<usize, RelayError> {
        let routes = self.routes();
        if routes.is_empty() {
            return Ok(0);
        }
        let cursors: Vec<(String, i64)> = routes
            .keys()
            .map(|topic| (topic.clone(), sent.get(topic).copied().unwrap_or_default()))
            .collect();
        let rows =
            keel_safestore::unpublished_after(&self.pool, &cursors, self.options.batch).await?;
        for cluster in routes.values() {
            if !producers.contains_key(cluster) {
                producers.insert(cluster.clone(), Self::producer(&self.clusters[cluster])?);
            }
        }
        let count = rows.len();
        for row in rows {
            let producer = &producers[&routes[&row.topic]];
            let headers = publish_headers(&row);
            let delivery = loop {
                let mut record = FutureRecord::to(&row.topic)
                    .key(&row.key)
                    .payload(&row.payload);
                if let Some(headers) = &headers {
                    record = record.headers(headers.clone());
                }
                match producer.send_result(record) {
                    Ok(delivery) => break delivery,
                    Err((
                        KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                        _,
                    )) => {
                        // The producer's own queue is full: let it drain.
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    Err((error, _)) => return Err(error.into()),
                }
            };
            sent.insert(row.topic.clone(), row.id);
            let in_flight = InFlight {
                id: row.id,
                topic: row.topic,
                delivery,
            };
            if to_acker.send(in_flight).await.is_err() {
                // The acknowledging task stopped on a failure; the caller sees why.
                return Ok(count);
            }
        }
        metrics::counter!("keel_outbox_sent_total").increment(count as u64);
        Ok(count)
    }
}

/// Follows acknowledgements in send order, moving each topic's acknowledged position, and records
/// it every `save_every` and whenever it has caught up. Ends with an error at the first failed
/// delivery, having recorded everything acknowledged before it.
async fn acknowledge(
    pool: PgPool,
    mut in_flight: mpsc::Receiver<InFlight>,
    mut acked: std::collections::HashMap<String, i64>,
    save_every: Duration,
) -> Result<(), RelayError> {
    let mut unsaved: BTreeMap<String, i64> = BTreeMap::new();
    let mut saved_at = Instant::now();
    let mut published = 0u64;
    let mut outcome = Ok(());
    while let Some(message) = in_flight.recv().await {
        match message.delivery.await {
            Ok(Ok(_)) => {
                acked.insert(message.topic.clone(), message.id);
                unsaved.insert(message.topic, message.id);
                published += 1;
            }
            Ok(Err((error, _))) => {
                outcome = Err(error.into());
                break;
            }
            Err(_canceled) => {
                outcome = Err(KafkaError::Canceled.into());
                break;
            }
        }
        if !unsaved.is_empty() && (in_flight.is_empty() || saved_at.elapsed() >= save_every) {
            save(&pool, &mut unsaved, &mut published).await?;
            saved_at = Instant::now();
        }
    }
    save(&pool, &mut unsaved, &mut published).await?;
    outcome
}

async fn save(
    pool: &PgPool,
    unsaved: &mut BTreeMap<String, i64>,
    published: &mut u64,
) -> Result<(), RelayError> {
    if unsaved.is_empty() {
        return Ok(());
    }
    let progress: Vec<(String, i64)> = std::mem::take(unsaved).into_iter().collect();
    keel_safestore::save_relay_progress(pool, &progress).await?;
    metrics::counter!("keel_outbox_published_total").increment(*published);
    *published = 0;
    Ok(())
}

/// The record's `traceparent`: a `publish` span of the relay's, continuing the trace of the work
/// that wrote the row. None when traces are not exported or the row has no trace.
fn publish_headers(row: &PendingMessage) -> Option<OwnedHeaders> {
    let parent = row.traceparent.as_deref().filter(|_| trace::exported())?;
    let span = tracing::info_span!("publish", topic = %row.topic, message_id = %row.message_id);
    trace::continue_from(&span, parent);
    let traceparent = trace::traceparent(&span)?;
    Some(OwnedHeaders::new().insert(Header {
        key: trace::HEADER,
        value: Some(&traceparent),
    }))
}

/// Publishes stored outbox messages again, straight into `kafka`: reconciliation's replay into the
/// region where the receiving application processes, whatever the relays' routing says at the
/// moment. The records are the relay's own (key and payload), so consumers drop what they already
/// have. Returns once every record is acknowledged by the broker.
pub async fn republish(
    kafka: &KafkaOptions,
    messages: &[PendingMessage],
) -> Result<usize, KafkaError> {
    let producer = OutboxRelay::producer(kafka)?;
    let deliveries = messages.iter().map(|message| {
        let mut record = FutureRecord::to(&message.topic)
            .key(&message.key)
            .payload(&message.payload);
        if let Some(traceparent) = &message.traceparent {
            record = record.headers(OwnedHeaders::new().insert(Header {
                key: trace::HEADER,
                value: Some(traceparent),
            }));
        }
        producer.send(record, Timeout::After(Duration::from_secs(30)))
    });
    for delivery in join_all(deliveries).await {
        delivery.map_err(|(error, _)| error)?;
    }
    Ok(messages.len())
}

/// Keeps the relay's outbox-depth gauge current: rows of `topics` waiting to be published.
pub fn spawn_depth_gauge(
    pool: PgPool,
    topics: Vec<String>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Ok(depth) = keel_safestore::outbox_depth(&pool, &topics, 1_000_000).await {
                metrics::gauge!("keel_outbox_depth").set(depth as f64);
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
        }
    })
}
