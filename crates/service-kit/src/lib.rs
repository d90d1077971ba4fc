//! How a Keel service process is put together, written once:
//! config → telemetry → ops endpoints → routing controls; then, each time the service's processing
//! control opens: safe-store (migrated) → outbox relay → consumers, until the control closes (or
//! cannot be read for longer than the bound); on the shutdown signal, drain.

mod regional;

pub use regional::{clusters, Regional};

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use keel_arc::ControlConfig;
use keel_platform::ops::{self, Readiness};
use keel_routing::{App, RegionConfig};
use keel_safestore::{PgPool, Retention, StoreOptions};
use keel_streaming::{
    consumer::BatchConsumer, ConsumerOptions, Handler, Instances, KafkaOptions, OutboxRelay,
    RelayOptions,
};
use keel_topology::{Kind, Service};
use serde::{Deserialize, Serialize};
use sqlx::migrate::Migrator;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// What every service is configured with.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct StageConfig {
    /// The region this process runs in; one of `regions`.
    pub region: String,
    /// Every region's Kafka, ingress, databases and ops endpoints.
    pub regions: BTreeMap<String, RegionConfig>,
    /// The ARC cluster and how the routing controls are read.
    pub control: ControlConfig,
    pub db_max_connections: u32,
    /// Kafka tuning; the brokers come from `regions`.
    pub kafka: KafkaOptions,
    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    pub ops_listen: SocketAddr,
    pub max_batch: usize,
    /// Milliseconds a batch waits to fill once its first message is in.
    pub batch_linger_ms: u64,
    /// This process's share of its stage's partitions, when the stage runs as several instances in
    /// one region (`instances.index` of `instances.count`).
    pub instances: Instances,
    /// How long inbox and outbox rows are kept.
    pub retention: Retention,
}

impl Default for StageConfig {
    fn default() -> Self {
        Self {
            region: "us-east-1".to_owned(),
            regions: BTreeMap::new(),
            control: ControlConfig::default(),
            db_max_connections: 8,
            kafka: KafkaOptions::default(),
            ops_listen: "127.0.0.1:0".parse().expect("literal address"),
            max_batch: 1000,
            batch_linger_ms: 5,
            instances: Instances::default(),
            retention: Retention::default(),
        }
    }
}

impl StageConfig {
    /// This process's region.
    pub fn local(&self) -> Result<&RegionConfig, StageError> {
        self.regions.get(&self.region).ok_or_else(|| {
            StageError::Config(format!(
                "region {:?} is not among the configured regions ({})",
                self.region,
                self.regions.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })
    }

    /// `app`'s database in this process's region.
    pub fn database_url(&self, app: App) -> Result<String, StageError> {
        self.local()?
            .databases
            .get(app.name())
            .cloned()
            .ok_or_else(|| {
                StageError::Config(format!(
                    "no database for {app} in region {} (regions.{}.databases.{app})",
                    self.region, self.region
                ))
            })
    }

    /// The Kafka cluster of this process's region.
    pub fn local_kafka(&self) -> Result<KafkaOptions, StageError> {
        let mut kafka = self.kafka.clone();
        kafka.brokers = self.local()?.kafka.clone();
        Ok(kafka)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("configuration: {0}")]
    Config(String),
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

/// What a stage's handler and background tasks get to work with, for one processing session.
pub struct StageContext {
    pub pool: PgPool,
    /// Cancelled when the session ends: shutdown, or the processing gate closed.
    pub shutdown: CancellationToken,
    /// Wake the outbox relay after committing outbox rows outside the consumer.
    pub relay_wake: Arc<Notify>,
    pub readiness: Readiness,
    kafka: KafkaOptions,
    consumer_options: ConsumerOptions,
}

pub type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Why a stage could not set up a session (such as reference data that does not load).
pub type BuildError = Box<dyn std::error::Error + Send + Sync>;

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
            if let Err(error) = consumer.run(shutdown.clone()).await {
                // Stays up, unready, so the alarm is visible and nothing is skipped silently.
                tracing::error!(%error, topic, "consumer stopped");
                readiness.set_unready(topic, error.to_string());
                shutdown.cancelled().await;
            }
            readiness.remove(topic);
        })
    }
}

/// One stage: a consuming service of the topology, with its schema's migrations. It consumes its
/// main input into the handler `run` builds, and owns its schema in its application's database.
pub struct Stage {
    service: &'static Service,
    migrations: &'static Migrator,
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

/// Sets gauge `name` from `read` at once and then every `every`, until `shutdown`: work a stage can
/// only see in its store (trades stuck past their date). A failed read is logged and leaves the
/// gauge as it was.
pub async fn gauge_from_store<F, Fut>(
    name: &'static str,
    every: Duration,
    shutdown: CancellationToken,
    mut read: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<i64, sqlx::Error>>,
{
    loop {
        match read().await {
            Ok(value) => metrics::gauge!(name).set(value as f64),
            Err(error) => tracing::warn!(gauge = name, %error, "cannot read the gauge"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// Retires the safe-store's inbox and outbox rows older than the retention, every interval, in
/// bounded rounds.
pub async fn retire_old_messages(
    pool: PgPool,
    retention: Retention,
    relay_wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let batch = retention.batch.max(1);
    run_in_rounds(
        "retention",
        retention.interval(),
        batch as usize,
        relay_wake,
        shutdown,
        || async {
            let retired = keel_safestore::retire(&pool, retention.messages(), batch).await?;
            metrics::counter!("keel_retired_rows_total").increment(retired);
            Ok(retired as usize)
        },
    )
    .await
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

/// Serves `/healthz`, `/readyz` and `/metrics` on `listen` until `shutdown`.
pub async fn serve_ops(
    name: &'static str,
    region: &str,
    listen: SocketAddr,
    readiness: &Readiness,
    shutdown: &CancellationToken,
) -> Result<tokio::task::JoinHandle<std::io::Result<()>>, StageError> {
    let metrics = ops::install_metrics(name, region);
    let listen_error = |source| StageError::Listen {
        addr: listen,
        source,
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(listen_error)?;
    tracing::info!(ops = %listener.local_addr().map_err(listen_error)?, "ops endpoints up");
    Ok(tokio::spawn(ops::serve(
        listener,
        ops::router(readiness.clone(), metrics),
        shutdown.clone(),
    )))
}

/// Waits for tasks to end, for at most 10 s.
pub async fn drain(tasks: Vec<tokio::task::JoinHandle<()>>) {
    let all = async {
        for task in tasks {
            let _ = task.await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(10), all)
        .await
        .is_err()
    {
        tracing::warn!("drain took longer than 10 s; going on anyway");
    }
}

impl Stage {
    /// Panics if `service` consumes nothing: only a stage of the topology runs as one.
    pub fn new(service: &'static Service, migrations: &'static Migrator) -> Self {
        assert!(
            service.kind == Kind::Stage && !service.consumes.is_empty(),
            "{} is not a stage of the topology",
            service.name
        );
        Self {
            service,
            migrations,
        }
    }

    fn main_input(&self) -> &'static str {
        self.service.consumes[0]
    }

    fn dead_letter_topic(&self) -> &'static str {
        self.service
            .dead_letter_topic()
            .expect("a stage has a dead-letter topic")
    }

    /// Runs the stage until `shutdown`. Each time its processing control opens, `build` makes the
    /// handler and any background tasks (such as a sweeper) from the connected context.
    pub async fn run<H, B>(
        self,
        config: StageConfig,
        shutdown: CancellationToken,
        build: B,
    ) -> Result<(), StageError>
    where
        H: Handler,
        B: AsyncFn(&StageContext) -> Result<(H, Vec<Task>), BuildError>,
    {
        let readiness = Readiness::default();
        let store = StoreOptions {
            url: config.database_url(self.service.app)?,
            schema: self.service.schema.to_owned(),
            max_connections: config.db_max_connections,
        };
        let kafka = config.local_kafka()?;
        let ops_server = serve_ops(
            self.service.name,
            &config.region,
            config.ops_listen,
            &readiness,
            &shutdown,
        )
        .await?;
        let regional = Regional::start(
            self.service.app,
            &config.region,
            &config.regions,
            &config.control,
            shutdown.clone(),
        );
        let clusters = clusters(&config.regions, &config.kafka);
        let this = &self;
        regional
            .run_while_processing(&readiness, &shutdown, |session| {
                let (store, kafka, clusters, readiness, regional) = (
                    store.clone(),
                    kafka.clone(),
                    clusters.clone(),
                    readiness.clone(),
                    regional.clone(),
                );
                let build = &build;
                let config = &config;
                async move {
                    this.session(
                        config, store, kafka, clusters, regional, readiness, session, build,
                    )
                    .await
                    .map_err(|e| e.to_string())
                }
            })
            .await;
        let _ = ops_server.await;
        Ok(())
    }

    /// One processing session: connect and migrate, then relay and consume until `session` ends.
    #[allow(clippy::too_many_arguments)]
    async fn session<H, B>(
        &self,
        config: &StageConfig,
        store: StoreOptions,
        kafka: KafkaOptions,
        clusters: BTreeMap<String, KafkaOptions>,
        regional: Regional,
        readiness: Readiness,
        session: CancellationToken,
        build: &B,
    ) -> Result<(), BuildError>
    where
        H: Handler,
        B: AsyncFn(&StageContext) -> Result<(H, Vec<Task>), BuildError>,
    {
        let Some(pool) = connect_store(&store, self.migrations, &session).await? else {
            return Ok(());
        };
        // Every input and output, so that no stage waits for another to create a topic.
        let topics: Vec<&str> = self.service.topics().collect();
        keel_streaming::admin::ensure_topics(&kafka, &topics).await?;

        let relayed: Vec<String> = self.service.relayed().map(str::to_owned).collect();
        let relay = OutboxRelay::new(
            clusters,
            Arc::new(regional),
            relayed.clone(),
            pool.clone(),
            RelayOptions::default(),
        );
        let mut consumer_options = ConsumerOptions::new(self.service.name, self.main_input());
        consumer_options.cluster = config.region.clone();
        consumer_options.dead_letter_topic = Some(self.dead_letter_topic().to_owned());
        consumer_options.max_batch = config.max_batch;
        consumer_options.linger = Duration::from_millis(config.batch_linger_ms);
        consumer_options.instances = config.instances;
        let context = StageContext {
            pool: pool.clone(),
            shutdown: session.clone(),
            relay_wake: relay.waker(),
            readiness,
            kafka,
            consumer_options,
        };
        let built = build(&context).await;
        let (handler, tasks) = match built {
            Ok(built) => built,
            Err(error) => {
                pool.close().await;
                return Err(error);
            }
        };
        let main_consumer = context.consume(self.main_input(), handler);
        let mut running = vec![
            tokio::spawn(main_consumer),
            tokio::spawn(relay.run(session.clone())),
            keel_streaming::spawn_depth_gauge(pool.clone(), relayed, session.clone()),
            tokio::spawn(retire_old_messages(
                pool.clone(),
                config.retention.clone(),
                context.relay_wake.clone(),
                session.clone(),
            )),
        ];
        running.extend(tasks.into_iter().map(tokio::spawn));
        context.readiness.set_ready("session");
        session.cancelled().await;
        drain(running).await;
        pool.close().await;
        Ok(())
    }
}

#[cfg(test)]
mod deployment_tests {
    use super::*;

    /// The variables the deployment gives this process are settings its configuration takes.
    #[test]
    fn it_takes_every_variable_the_deployment_gives_it() {
        keel_platform::config::assert_takes_deployment_variables::<StageConfig>(
            env!("CARGO_MANIFEST_DIR"),
            "ingestion",
        );
    }
}
