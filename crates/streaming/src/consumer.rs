use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use keel_messages::Message as KeelMessage;
use keel_platform::trace;
use keel_safestore::{DeadLetter, Origin, Outgoing, PgPool};
use rdkafka::consumer::{CommitMode, Consumer as _, StreamConsumer};
use rdkafka::message::{Headers as _, Message as _, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use serde::de::DeserializeOwned;
use sqlx::PgConnection;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{retry, KafkaOptions};

/// A consumed message that decoded, with its position.
#[derive(Debug, Clone)]
pub struct Inbound<M> {
    pub message_id: Uuid,
    pub body: M,
    pub partition: i32,
    pub offset: i64,
    /// The message as received, kept in the inbox.
    pub raw: String,
    /// When it was produced (the record's timestamp, ms since the epoch), if the broker says.
    pub produced_ms: Option<i64>,
    /// The trace it continues (the record's `traceparent` header), if any.
    pub traceparent: Option<String>,
}

/// A service's business step. `apply` runs inside the batch transaction with the messages never seen
/// before, and returns what to send on; the consumer writes inbox, outbox and offsets around it.
pub trait Handler: Send + Sync + 'static {
    type Message: DeserializeOwned + KeelMessage + Send + Sync;

    fn apply(
        &self,
        conn: &mut PgConnection,
        batch: &[&Inbound<Self::Message>],
    ) -> impl Future<Output = Result<Vec<Outgoing>, sqlx::Error>> + Send;
}

/// When poison messages stop the consumer instead of being set aside one by one: a stream that is
/// mostly poison means something upstream is broken, and skipping it all would hide that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoisonLimit {
    pub max_consecutive: u32,
    /// At most this many among the last `window` messages.
    pub max_in_window: u32,
    pub window: u32,
}

impl Default for PoisonLimit {
    fn default() -> Self {
        Self {
            max_consecutive: 10,
            max_in_window: 50,
            window: 1000,
        }
    }
}

/// Counts poison against a [`PoisonLimit`].
#[derive(Debug, Clone, Default)]
pub struct PoisonBudget {
    consecutive: u32,
    recent: std::collections::VecDeque<bool>,
    in_window: u32,
}

impl PoisonBudget {
    /// Records one message's outcome; `Err` names the limit it broke.
    pub fn record(&mut self, limit: &PoisonLimit, poison: bool) -> Result<(), String> {
        self.consecutive = if poison { self.consecutive + 1 } else { 0 };
        self.recent.push_back(poison);
        self.in_window += u32::from(poison);
        while self.recent.len() > limit.window as usize {
            if self.recent.pop_front() == Some(true) {
                self.in_window -= 1;
            }
        }
        if self.consecutive > limit.max_consecutive {
            return Err(format!(
                "{} poison messages in a row (limit {})",
                self.consecutive, limit.max_consecutive
            ));
        }
        if self.in_window > limit.max_in_window {
            return Err(format!(
                "{} poison messages in the last {} (limit {})",
                self.in_window,
                self.recent.len(),
                limit.max_in_window
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct ConsumerOptions {
    /// Consumer group, used only for advisory offset commits (lag dashboards).
    pub group_id: String,
    /// The Kafka cluster read from (the region's name): stored offsets are per cluster.
    pub cluster: String,
    pub topic: String,
    /// Where poison messages are published, besides the service's dead-letter table.
    pub dead_letter_topic: Option<String>,
    pub max_batch: usize,
    /// How long a batch waits to fill once its first message is in.
    pub linger: Duration,
    pub poison: PoisonLimit,
    /// Which share of the topic's partitions this process consumes: partition `p` belongs to
    /// instance `p % instances.count`. Several instances of a stage split a topic this way, by
    /// configuration, and each partition keeps the exactly-once protocol on its own.
    pub instances: Instances,
}

/// This process's place among a scaled-out stage's instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Instances {
    /// 0-based.
    pub index: u32,
    pub count: u32,
}

impl Default for Instances {
    fn default() -> Self {
        Self { index: 0, count: 1 }
    }
}

impl Instances {
    /// Whether this instance consumes `partition`.
    pub fn owns(&self, partition: i32) -> bool {
        let count = self.count.max(1) as i64;
        i64::from(partition).rem_euclid(count) == i64::from(self.index)
    }
}

impl ConsumerOptions {
    pub fn new(group_id: &str, topic: &str) -> Self {
        Self {
            group_id: group_id.to_owned(),
            cluster: String::new(),
            topic: topic.to_owned(),
            dead_letter_topic: None,
            max_batch: 1000,
            linger: Duration::from_millis(5),
            poison: PoisonLimit::default(),
            instances: Instances::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error("kafka client for {topic}: {source}")]
    Kafka {
        topic: String,
        source: rdkafka::error::KafkaError,
    },
    #[error(
        "KEEL-E001 consumer of {topic} stopped: {reason}; the last poison message is at partition {partition} \
         offset {offset} (see runbooks/poison-message.md)"
    )]
    PoisonLimit {
        topic: String,
        partition: i32,
        offset: i64,
        reason: String,
    },
    #[error("KEEL-E002 consumer of {topic} stopped: cannot record the dead letter at partition {partition} offset {offset}: {source}")]
    Store {
        topic: String,
        partition: i32,
        offset: i64,
        source: sqlx::Error,
    },
}

/// The exactly-once batch consumer of one topic for one service.
pub struct BatchConsumer<H> {
    options: ConsumerOptions,
    kafka: KafkaOptions,
    pool: PgPool,
    handler: H,
    relay_wake: Arc<Notify>,
}

enum BatchFailure {
    Transient(sqlx::Error),
    Permanent(sqlx::Error),
}

impl<H: Handler> BatchConsumer<H> {
    pub fn new(
        options: ConsumerOptions,
        kafka: KafkaOptions,
        pool: PgPool,
        handler: H,
        relay_wake: Arc<Notify>,
    ) -> Self {
        Self {
            options,
            kafka,
            pool,
            handler,
            relay_wake,
        }
    }

    /// Consumes until `shutdown`; returns an error only when the consumer must not go on by itself.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ConsumerError> {
        let topic = self.options.topic.clone();
        let kafka_error = |source| ConsumerError::Kafka {
            topic: topic.clone(),
            source,
        };
        let consumer: StreamConsumer = self
            .kafka
            .client_config()
            .set("group.id", &self.options.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", self.kafka.fetch_wait_ms.to_string())
            .set("allow.auto.create.topics", "false")
            .create()
            .map_err(kafka_error)?;
        let consumer = Arc::new(consumer);

        let Some(partitions) = self.wait_for_partitions(&consumer, &shutdown).await else {
            return Ok(());
        };
        let instances = self.options.instances;
        let partitions: Vec<i32> = partitions
            .into_iter()
            .filter(|p| instances.owns(*p))
            .collect();
        if partitions.is_empty() {
            tracing::warn!(
                topic,
                ?instances,
                "no partition of this topic falls to this instance; it consumes nothing"
            );
            shutdown.cancelled().await;
            return Ok(());
        }
        let Some(stored) = self
            .with_retry(&shutdown, || {
                keel_safestore::load_offsets(&self.pool, &self.options.cluster, &topic)
            })
            .await
        else {
            return Ok(());
        };
        let mut assignment = TopicPartitionList::new();
        for partition in &partitions {
            let offset = stored
                .get(partition)
                .map_or(Offset::Beginning, |next| Offset::Offset(*next));
            assignment
                .add_partition_offset(&topic, *partition, offset)
                .map_err(kafka_error)?;
        }
        consumer.assign(&assignment).map_err(kafka_error)?;
        tracing::info!(
            topic,
            ?partitions,
            ?stored,
            "consumer assigned from the offsets stored in Postgres"
        );

        let (advice, advised) = tokio::sync::watch::channel(BTreeMap::new());
        let _advisor = self.kafka.advisory_commits.then(|| {
            tokio_util::task::AbortOnDropHandle::new(tokio::spawn(advise_again(
                consumer.clone(),
                topic.clone(),
                advised,
            )))
        });
        let mut budget = PoisonBudget::default();
        let mut lag_reported = Instant::now();
        loop {
            let waiting = Instant::now();
            let batch = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                batch = self.next_batch(&consumer) => batch,
            };
            // Time spent waiting for messages, beside the time spent committing them: together they
            // say whether a stage is short of work or of speed.
            metrics::histogram!("keel_consumer_wait_seconds", "topic" => topic.clone())
                .record(waiting.elapsed().as_secs_f64());
            let started = Instant::now();
            let Some(next_offsets) = self.process(batch, &mut budget, &shutdown).await? else {
                return Ok(());
            };
            metrics::histogram!("keel_consumer_batch_seconds", "topic" => topic.clone())
                .record(started.elapsed().as_secs_f64());
            self.relay_wake.notify_one();
            let report_lag = lag_reported.elapsed() > Duration::from_secs(5);
            if report_lag {
                lag_reported = Instant::now();
            }
            self.advise_kafka(&consumer, &next_offsets, report_lag);
            advice.send_replace(next_offsets);
        }
    }

    async fn wait_for_partitions(
        &self,
        consumer: &Arc<StreamConsumer>,
        shutdown: &CancellationToken,
    ) -> Option<Vec<i32>> {
        let mut delays = retry::backoff();
        loop {
            let probe = consumer.clone();
            let topic = self.options.topic.clone();
            let found = tokio::task::spawn_blocking(move || {
                let metadata = probe.fetch_metadata(Some(&topic), Duration::from_secs(5))?;
                Ok::<_, rdkafka::error::KafkaError>(
                    metadata
                        .topics()
                        .iter()
                        .filter(|t| t.name() == topic && t.error().is_none())
                        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                        .collect::<Vec<i32>>(),
                )
            })
            .await
            .expect("metadata probe does not panic");
            match found {
                Ok(partitions) if !partitions.is_empty() => return Some(partitions),
                Ok(_) => tracing::warn!(
                    topic = self.options.topic,
                    "topic does not exist yet; waiting"
                ),
                Err(error) => {
                    tracing::warn!(topic = self.options.topic, %error, "cannot read topic metadata; retrying")
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                _ = tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(5))) => {}
            }
        }
    }

    async fn next_batch(&self, consumer: &StreamConsumer) -> Vec<OwnedMessage> {
        let mut batch = Vec::new();
        while batch.is_empty() {
            match consumer.recv().await {
                Ok(message) => batch.push(message.detach()),
                Err(error) => {
                    tracing::warn!(topic = self.options.topic, %error, "kafka consumer error");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        let deadline = Instant::now() + self.options.linger;
        while batch.len() < self.options.max_batch {
            match tokio::time::timeout_at(deadline, consumer.recv()).await {
                Ok(Ok(message)) => batch.push(message.detach()),
                Ok(Err(error)) => {
                    tracing::warn!(topic = self.options.topic, %error, "kafka consumer error");
                    break;
                }
                Err(_) => break,
            }
        }
        batch
    }

    /// Commits one polled batch exactly once. Returns the next offset per partition, or `None` on
    /// shutdown (nothing of the batch was committed then, and it will be polled again).
    async fn process(
        &self,
        batch: Vec<OwnedMessage>,
        budget: &mut PoisonBudget,
        shutdown: &CancellationToken,
    ) -> Result<Option<BTreeMap<i32, i64>>, ConsumerError> {
        let mut inbound = Vec::with_capacity(batch.len());
        let mut dead = Vec::new();
        let mut next_offsets = BTreeMap::new();
        for message in &batch {
            next_offsets.insert(message.partition(), message.offset() + 1);
            let decoded = self.decode(message);
            self.check_poison(
                budget,
                matches!(decoded, Decoded::Dead(_)),
                message.partition(),
                message.offset(),
            )?;
            match decoded {
                Decoded::Message(message) => inbound.push(message),
                Decoded::Dead(letter) => dead.push(letter),
            }
        }
        match self
            .commit_retrying(&inbound, &dead, &next_offsets, shutdown)
            .await
        {
            Ok(true) => return Ok(Some(next_offsets)),
            Ok(false) => return Ok(None),
            Err(error) => {
                tracing::warn!(topic = self.options.topic, %error, "batch failed; retrying it message by message");
            }
        }

        // Isolation: one transaction per message, in offset order, so the stored position never passes
        // a message whose effect is not committed.
        let mut items: Vec<(i32, i64, Decoded<H::Message>)> = inbound
            .into_iter()
            .map(|m| (m.partition, m.offset, Decoded::Message(m)))
            .chain(
                dead.into_iter()
                    .map(|l| (l.partition, l.offset, Decoded::Dead(l))),
            )
            .collect();
        items.sort_by_key(|(partition, offset, _)| (*partition, *offset));
        for (partition, offset, item) in items {
            let next = BTreeMap::from([(partition, offset + 1)]);
            let letter = match item {
                Decoded::Message(message) => match self
                    .commit_retrying(std::slice::from_ref(&message), &[], &next, shutdown)
                    .await
                {
                    Ok(true) => continue,
                    Ok(false) => return Ok(None),
                    Err(error) => {
                        self.check_poison(budget, true, partition, offset)?;
                        self.dead_letter_for(&batch, &message, &error)
                    }
                },
                Decoded::Dead(letter) => letter,
            };
            match self
                .commit_retrying(&[], std::slice::from_ref(&letter), &next, shutdown)
                .await
            {
                Ok(true) => {}
                Ok(false) => return Ok(None),
                Err(source) => {
                    return Err(ConsumerError::Store {
                        topic: self.options.topic.clone(),
                        partition,
                        offset,
                        source,
                    })
                }
            }
        }
        Ok(Some(next_offsets))
    }

    fn check_poison(
        &self,
        budget: &mut PoisonBudget,
        poison: bool,
        partition: i32,
        offset: i64,
    ) -> Result<(), ConsumerError> {
        budget
            .record(&self.options.poison, poison)
            .map_err(|reason| {
                // Stays set until the process restarts: the consumer does not consume again.
                metrics::gauge!("keel_consumer_poison_stopped", "topic" => self.options.topic.clone())
                    .set(1.0);
                ConsumerError::PoisonLimit {
                    topic: self.options.topic.clone(),
                    partition,
                    offset,
                    reason,
                }
            })
    }

    /// Commits, retrying transient failures with backoff. `Ok(false)`: shut down before committing.
    async fn commit_retrying(
        &self,
        inbound: &[Inbound<H::Message>],
        dead: &[DeadLetter],
        next_offsets: &BTreeMap<i32, i64>,
        shutdown: &CancellationToken,
    ) -> Result<bool, sqlx::Error> {
        let mut delays = retry::backoff();
        loop {
            match self.commit(inbound, dead, next_offsets).await {
                Ok(()) => return Ok(true),
                Err(BatchFailure::Permanent(error)) => return Err(error),
                Err(BatchFailure::Transient(error)) => {
                    let delay = delays.next().unwrap_or(Duration::from_secs(5));
                    tracing::warn!(topic = self.options.topic, %error, ?delay, "batch rolled back; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(false),
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    fn decode(&self, message: &OwnedMessage) -> Decoded<H::Message> {
        let payload = message.payload().unwrap_or_default();
        match serde_json::from_slice::<H::Message>(payload) {
            Ok(body) => Decoded::Message(Inbound {
                message_id: body.message_id(),
                body,
                partition: message.partition(),
                offset: message.offset(),
                raw: String::from_utf8_lossy(payload).into_owned(),
                produced_ms: message.timestamp().to_millis(),
                traceparent: message.headers().and_then(|headers| {
                    headers
                        .iter()
                        .find(|h| h.key == trace::HEADER)
                        .and_then(|h| h.value)
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                }),
            }),
            Err(error) => Decoded::Dead(DeadLetter {
                message_id: None,
                topic: self.options.topic.clone(),
                partition: message.partition(),
                offset: message.offset(),
                key: message
                    .key()
                    .map(|k| String::from_utf8_lossy(k).into_owned()),
                payload: Some(payload.to_vec()),
                error: format!("undecodable message: {error}"),
            }),
        }
    }

    fn dead_letter_for(
        &self,
        batch: &[OwnedMessage],
        message: &Inbound<H::Message>,
        error: &sqlx::Error,
    ) -> DeadLetter {
        let original = batch
            .iter()
            .find(|m| m.partition() == message.partition && m.offset() == message.offset);
        DeadLetter {
            message_id: Some(message.message_id),
            topic: self.options.topic.clone(),
            partition: message.partition,
            offset: message.offset,
            key: original
                .and_then(|m| m.key())
                .map(|k| String::from_utf8_lossy(k).into_owned()),
            payload: original.and_then(|m| m.payload()).map(<[u8]>::to_vec),
            error: format!("processing failed permanently: {error}"),
        }
    }

    /// The one transaction per batch: inbox, handler effects, dead letters, outbox, offsets.
    async fn commit(
        &self,
        inbound: &[Inbound<H::Message>],
        dead: &[DeadLetter],
        next_offsets: &BTreeMap<i32, i64>,
    ) -> Result<(), BatchFailure> {
        let classify = |error: sqlx::Error| {
            if keel_safestore::is_transient(&error) {
                BatchFailure::Transient(error)
            } else {
                BatchFailure::Permanent(error)
            }
        };
        let topic = self.options.topic.as_str();
        let mut tx = self.pool.begin().await.map_err(classify)?;

        let ids: Vec<(Uuid, Origin<'_>)> = inbound
            .iter()
            .map(|m| {
                (
                    m.message_id,
                    Origin {
                        topic,
                        partition: m.partition,
                        offset: m.offset,
                        payload: &m.raw,
                    },
                )
            })
            .collect();
        let fresh = keel_safestore::claim_inbox(&mut tx, &ids)
            .await
            .map_err(classify)?;
        // A message can also repeat inside one batch (a relay that re-sent it): keep its first copy.
        let mut taken = HashSet::new();
        let new_messages: Vec<&Inbound<H::Message>> = inbound
            .iter()
            .filter(|m| fresh.contains(&m.message_id) && taken.insert(m.message_id))
            .collect();

        // One `consume` span per message that carries a trace, alive until the batch commits; what
        // the handler sends on about the same trade (same key) continues it.
        let spans: HashMap<String, tracing::Span> = if trace::exported() {
            new_messages
                .iter()
                .filter_map(|m| {
                    let parent = m.traceparent.as_deref()?;
                    let span = tracing::info_span!("consume", topic, message_id = %m.message_id);
                    trace::continue_from(&span, parent);
                    Some((m.body.key(), span))
                })
                .collect()
        } else {
            HashMap::new()
        };
        let mut outgoing = self
            .handler
            .apply(&mut tx, &new_messages)
            .await
            .map_err(classify)?;
        for message in outgoing.iter_mut().filter(|m| m.traceparent.is_none()) {
            message.traceparent = spans.get(&message.key).and_then(trace::traceparent);
        }
        for letter in dead {
            keel_safestore::record_dead_letter(&mut tx, letter)
                .await
                .map_err(classify)?;
            if let Some(dlq) = &self.options.dead_letter_topic {
                outgoing.push(dead_letter_message(dlq, letter));
            }
        }
        keel_safestore::enqueue(&mut tx, &outgoing)
            .await
            .map_err(classify)?;
        let positions: Vec<keel_safestore::Position> = next_offsets
            .iter()
            .map(|(partition, next)| keel_safestore::Position {
                partition: *partition,
                next: *next,
                produced_ms: inbound
                    .iter()
                    .filter(|m| m.partition == *partition)
                    .filter_map(|m| m.produced_ms)
                    .max(),
            })
            .collect();
        keel_safestore::save_offsets(&mut tx, &self.options.cluster, topic, &positions)
            .await
            .map_err(classify)?;
        tx.commit().await.map_err(classify)?;

        let duplicates = inbound.len() - new_messages.len();
        metrics::counter!("keel_consumer_messages_total", "topic" => topic.to_owned(), "outcome" => "processed")
            .increment(new_messages.len() as u64);
        metrics::counter!("keel_consumer_messages_total", "topic" => topic.to_owned(), "outcome" => "duplicate")
            .increment(duplicates as u64);
        metrics::counter!("keel_consumer_messages_total", "topic" => topic.to_owned(), "outcome" => "dead_letter")
            .increment(dead.len() as u64);
        for letter in dead {
            tracing::error!(
                topic,
                partition = letter.partition,
                offset = letter.offset,
                error = letter.error,
                "poison message set aside in dead_letters"
            );
        }
        Ok(())
    }

    /// Reports lag, and optionally commits to Kafka for dashboards; Postgres holds the real position.
    fn advise_kafka(
        &self,
        consumer: &Arc<StreamConsumer>,
        next_offsets: &BTreeMap<i32, i64>,
        report_lag: bool,
    ) {
        let topic = self.options.topic.as_str();
        let mut list = TopicPartitionList::new();
        for (partition, next) in next_offsets {
            let _ = list.add_partition_offset(topic, *partition, Offset::Offset(*next));
        }
        if self.kafka.advisory_commits {
            if let Err(error) = consumer.commit(&list, CommitMode::Async) {
                tracing::debug!(topic, %error, "advisory offset commit failed");
            }
        }
        if report_lag {
            // Watermarks need a broker round trip; read them off the async path, now and then.
            let consumer = consumer.clone();
            let topic = topic.to_owned();
            let next_offsets = next_offsets.clone();
            tokio::task::spawn_blocking(move || {
                for (partition, next) in next_offsets {
                    if let Ok((_, high)) =
                        consumer.fetch_watermarks(&topic, partition, Duration::from_secs(1))
                    {
                        metrics::gauge!("keel_consumer_lag", "topic" => topic.clone(), "partition" => partition.to_string())
                            .set((high - next).max(0) as f64);
                    }
                }
            });
        }
    }

    async fn with_retry<T, F, Fut>(&self, shutdown: &CancellationToken, mut attempt: F) -> Option<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, sqlx::Error>>,
    {
        let mut delays = retry::backoff();
        loop {
            match attempt().await {
                Ok(value) => return Some(value),
                Err(error) => {
                    tracing::warn!(topic = self.options.topic, %error, "database unavailable; retrying")
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                _ = tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(5))) => {}
            }
        }
    }
}

/// One message off the broker: decoded for the handler, or a dead letter to record.
enum Decoded<M> {
    Message(Inbound<M>),
    Dead(DeadLetter),
}

fn dead_letter_message(topic: &str, letter: &DeadLetter) -> Outgoing {
    let origin = format!("{}|{}|{}", letter.topic, letter.partition, letter.offset);
    Outgoing {
        message_id: Uuid::new_v5(&Uuid::NAMESPACE_OID, origin.as_bytes()),
        topic: topic.to_owned(),
        key: letter.key.clone().unwrap_or_default(),
        payload: serde_json::json!({
            "origin": {"topic": letter.topic, "partition": letter.partition, "offset": letter.offset},
            "message_id": letter.message_id,
            "error": letter.error,
            "payload": letter.payload.as_deref().map(String::from_utf8_lossy),
        })
        .to_string(),
        traceparent: None,
    }
}

/// How often the advisor looks whether the broker has been told the newest position.
const ADVISE_AGAIN_EVERY: Duration = Duration::from_secs(2);

/// Makes sure the broker comes to hold the newest position sent on `advised`. The per-batch
/// commits are asynchronous, and one that fails (the broker restarting, its group coordinator not
/// yet known again) is not retried by librdkafka: a consumer that goes idle afterwards would leave
/// the broker's view behind for good. Every [`ADVISE_AGAIN_EVERY`], a position the advisor has not
/// seen committed is committed synchronously, until one succeeds. Stops when its handle is dropped.
async fn advise_again(
    consumer: Arc<StreamConsumer>,
    topic: String,
    mut advised: tokio::sync::watch::Receiver<BTreeMap<i32, i64>>,
) {
    let mut confirmed = BTreeMap::new();
    loop {
        tokio::time::sleep(ADVISE_AGAIN_EVERY).await;
        let wanted = advised.borrow_and_update().clone();
        if wanted.is_empty() || wanted == confirmed {
            continue;
        }
        let mut list = TopicPartitionList::new();
        for (partition, next) in &wanted {
            let _ = list.add_partition_offset(&topic, *partition, Offset::Offset(*next));
        }
        let consumer = consumer.clone();
        let committed =
            tokio::task::spawn_blocking(move || consumer.commit(&list, CommitMode::Sync)).await;
        match committed {
            Ok(Ok(())) => confirmed = wanted,
            Ok(Err(error)) => tracing::debug!(topic, %error, "advisory offset commit failed"),
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poison_in_a_row_stops_after_the_limit() {
        let limit = PoisonLimit {
            max_consecutive: 3,
            max_in_window: 100,
            window: 1000,
        };
        let mut budget = PoisonBudget::default();
        for _ in 0..3 {
            budget.record(&limit, true).unwrap();
        }
        assert!(budget
            .record(&limit, true)
            .unwrap_err()
            .contains("4 poison messages in a row"));
    }

    #[test]
    fn a_good_message_resets_the_run_but_not_the_window() {
        let limit = PoisonLimit {
            max_consecutive: 2,
            max_in_window: 3,
            window: 10,
        };
        let mut budget = PoisonBudget::default();
        for poison in [true, true, false, true, false] {
            budget.record(&limit, poison).unwrap();
        }
        assert!(budget
            .record(&limit, true)
            .unwrap_err()
            .contains("in the last"));
    }

    #[test]
    fn old_poison_leaves_the_window() {
        let limit = PoisonLimit {
            max_consecutive: 5,
            max_in_window: 1,
            window: 3,
        };
        let mut budget = PoisonBudget::default();
        budget.record(&limit, true).unwrap();
        for _ in 0..3 {
            budget.record(&limit, false).unwrap();
        }
        budget.record(&limit, true).unwrap();
    }

    #[test]
    fn instances_split_every_partition_exactly_once() {
        for count in 1..=4u32 {
            for partition in 0..16 {
                let owners = (0..count)
                    .filter(|index| {
                        Instances {
                            index: *index,
                            count,
                        }
                        .owns(partition)
                    })
                    .count();
                assert_eq!(owners, 1, "partition {partition} of {count} instances");
            }
        }
        let first = Instances { index: 0, count: 2 };
        assert!(first.owns(0) && first.owns(2) && !first.owns(1) && !first.owns(3));
    }
}
