//! How a Keel service process is put together, written once:
//! config → telemetry → safe-store (migrated) → outbox relay → consumer → ops endpoints → run until
//! the shutdown signal, then drain.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use keel_platform::ops::{self, Readiness};
use keel_safestore::{PgPool, StoreOptions};
use keel_streaming::{
    consumer::BatchConsumer, ConsumerOptions, Handler, KafkaOptions, OutboxRelay, RelayOptions,
};
use serde::{Deserialize, Serialize};
use sqlx::migrate::Migrator;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// What every pipeline stage is configured with.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct StageConfig {
    pub region: String,
    /// The application's database (the primary in the active region).
    pub database_url: String,
    pub db_max_connections: u32,
    pub kafka: KafkaOptions,
    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    pub ops_listen: SocketAddr,
    pub max_batch: usize,
    /// Milliseconds a batch waits to fill once its first message is in.
    pub batch_linger_ms: u64,
}

impl Default for StageConfig {
    fn default() -> Self {
        Self {
            region: "us-east-1".to_owned(),
            database_url: "postgres://keel@127.0.0.1:54321/keel_tm".to_owned(),
            db_max_connections: 8,
            kafka: KafkaOptions::default(),
            ops_listen: "127.0.0.1:0".parse().expect("literal address"),
            max_batch: 500,
            batch_linger_ms: 5,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error(transparent)]
    Store(#[from] keel_safestore::StoreError),
    #[error("creating topics: {0}")]
    Topics(#[from] keel_streaming::admin::AdminError),
    #[error("ops endpoint {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// What a stage's handler and background tasks get to work with.
pub struct StageContext {
    pub pool: PgPool,
    pub shutdown: CancellationToken,
    /// Wake the outbox relay after committing outbox rows outside the consumer.
    pub relay_wake: Arc<Notify>,
    pub readiness: Readiness,
    kafka: KafkaOptions,
    consumer_options: ConsumerOptions,
}

pub type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

impl StageContext {
    /// Consumes one more topic into `handler`, with the same exactly-once protocol, dead-letter topic
    /// and batching as the stage's main input. Its state shows on `/readyz` under the topic's name.
    pub fn consume<H: Handler>(&self, topic: &'static str, handler: H) -> Task {
        let mut options = self.consumer_options.clone();
        options.topic = topic.to_owned();
        let consumer = BatchConsumer::new(
            options,
            self.kafka.clone(),
            self.pool.clone(),
            handler,
            self.relay_wake.clone(),
        );
        let readiness = self.readiness.clone();
        let shutdown = self.shutdown.clone();
        readiness.register(topic);
        let kafka = self.kafka.clone();
        Box::pin(async move {
            // Another application may produce this topic; create it rather than wait for that.
            if let Err(error) = keel_streaming::admin::ensure_topics(&kafka, &[topic]).await {
                tracing::warn!(%error, topic, "cannot create the topic; the consumer waits for it");
            }
            readiness.set_ready(topic);
            if let Err(error) = consumer.run(shutdown).await {
                // Stays up, unready, so the alarm is visible and nothing is skipped silently.
                tracing::error!(%error, topic, "consumer stopped");
                readiness.set_unready(topic, error.to_string());
            }
        })
    }
}

/// One stage: consumes `topic` into `handler`, owns `schema`.
pub struct Stage {
    pub name: &'static str,
    pub schema: &'static str,
    pub topic: &'static str,
    pub dead_letter_topic: &'static str,
    /// Topics the stage publishes to, created at start so its relay never waits on another stage.
    pub produces: &'static [&'static str],
    pub migrations: &'static Migrator,
}

/// A stage's background job that commits work in bounded rounds (expiring legs, settling due
/// instructions): every `every`, it runs `round` until a round does less than `batch` (so a backlog
/// drains at once), waking the relay after each round that committed something. A failed round is
/// logged and tried again next time.
pub async fn run_in_rounds<F, Fut>(
    job: &'static str,
    every: Duration,
    batch: usize,
    relay_wake: Arc<Notify>,
    shutdown: CancellationToken,
    mut round: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<usize, sqlx::Error>>,
{
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        loop {
            match round().await {
                Ok(0) => break,
                Ok(done) => {
                    tracing::info!(job, done, "round committed");
                    relay_wake.notify_one();
                    if done < batch {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(job, %error, "round failed; retrying next time");
                    break;
                }
            }
        }
    }
}

/// Connects to the safe-store, retrying while the database is not up yet (bounded by shutdown).
pub async fn connect_store(
    options: &StoreOptions,
    migrations: &'static Migrator,
    shutdown: &CancellationToken,
) -> Result<Option<PgPool>, StageError> {
    let mut attempt = 0u32;
    loop {
        match keel_safestore::connect(options, migrations).await {
            Ok(pool) => return Ok(Some(pool)),
            Err(keel_safestore::StoreError::Connect(error)) if attempt < 60 => {
                attempt += 1;
                tracing::warn!(%error, attempt, "database not reachable yet; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(None),
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
            Err(error) => return Err(error.into()),
        }
    }
}

impl Stage {
    /// Runs the stage until `shutdown`. `build` makes the handler and any background tasks (such as
    /// a sweeper) from the connected context.
    pub async fn run<H, B>(
        self,
        config: StageConfig,
        shutdown: CancellationToken,
        build: B,
    ) -> Result<(), StageError>
    where
        H: Handler,
        B: FnOnce(&StageContext) -> (H, Vec<Task>),
    {
        let metrics = ops::install_metrics(self.name, &config.region);
        let readiness = Readiness::default();
        let listener = tokio::net::TcpListener::bind(config.ops_listen)
            .await
            .map_err(|source| StageError::Listen {
                addr: config.ops_listen,
                source,
            })?;
        tracing::info!(ops = %listener.local_addr().map_err(|source| StageError::Listen { addr: config.ops_listen, source })?, "ops endpoints up");
        let ops_server = tokio::spawn(ops::serve(
            listener,
            ops::router(readiness.clone(), metrics),
            shutdown.clone(),
        ));

        let store = StoreOptions {
            url: config.database_url.clone(),
            schema: self.schema.to_owned(),
            max_connections: config.db_max_connections,
        };
        let Some(pool) = connect_store(&store, self.migrations, &shutdown).await? else {
            return Ok(());
        };
        let topics: Vec<&str> = [self.topic, self.dead_letter_topic]
            .into_iter()
            .chain(self.produces.iter().copied())
            .collect();
        keel_streaming::admin::ensure_topics(&config.kafka, &topics).await?;

        let relay = OutboxRelay::new(config.kafka.clone(), pool.clone(), RelayOptions::default());
        let mut consumer_options = ConsumerOptions::new(self.name, self.topic);
        consumer_options.dead_letter_topic = Some(self.dead_letter_topic.to_owned());
        consumer_options.max_batch = config.max_batch;
        consumer_options.linger = Duration::from_millis(config.batch_linger_ms);
        let context = StageContext {
            pool: pool.clone(),
            shutdown: shutdown.clone(),
            relay_wake: relay.waker(),
            readiness: readiness.clone(),
            kafka: config.kafka.clone(),
            consumer_options,
        };
        let (handler, tasks) = build(&context);
        let main_consumer = context.consume(self.topic, handler);

        let relay_task = tokio::spawn(relay.run(shutdown.clone()));
        let consumer_task = tokio::spawn(main_consumer);
        let background: Vec<_> = tasks.into_iter().map(tokio::spawn).collect();

        context.shutdown.cancelled().await;
        let drain = async {
            let _ = consumer_task.await;
            for task in background {
                let _ = task.await;
            }
            if let Ok(Err(error)) = relay_task.await {
                tracing::warn!(%error, "outbox relay ended with an error");
            }
            let _ = ops_server.await;
        };
        if tokio::time::timeout(Duration::from_secs(10), drain)
            .await
            .is_err()
        {
            tracing::warn!("drain took longer than 10 s; exiting anyway");
        }
        pool.close().await;
        Ok(())
    }
}
