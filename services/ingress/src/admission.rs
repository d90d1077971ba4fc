//! Admission control (DESIGN section 3): when the pipeline is too far behind, ingress refuses new
//! submissions with 429 and `Retry-After` instead of queueing them without bound. A monitor reads the
//! backlog of every stage (each relay's outbox, each consumer's lag) a few times a second; the
//! decision is a pure function of those readings. Refusing never touches what was already
//! acknowledged: those legs are in the safe-store and go on at the pipeline's pace.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use keel_routing::{App, Gate};
use keel_safestore::PgPool;
use keel_service_kit::Regional;
use keel_streaming::{KafkaOptions, Watermarks};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// `[admission]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AdmissionConfig {
    /// Messages one stage may be behind (a relay's unpublished outbox rows, or a consumer's lag)
    /// before ingress refuses new submissions. It opens again once every stage is under half of it.
    pub max_backlog: i64,
    /// How often the backlog is read.
    pub check_interval_ms: u64,
    /// What a refusal's `Retry-After` says.
    pub retry_after_seconds: u64,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        Self {
            max_backlog: 10_000,
            check_interval_ms: 200,
            retry_after_seconds: 1,
        }
    }
}

/// One stage's backlog as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backlog {
    /// "matching's outbox", "consumer lag of tm.trades".
    pub what: String,
    pub messages: i64,
}

/// Whether ingress takes submissions now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Open,
    /// Refusing, and why (the stage furthest behind).
    Overloaded {
        reason: String,
    },
}

/// The decision, given the last verdict and what the stages' backlogs are now: refuse above the
/// bound; once refusing, keep refusing until every stage is under half the bound, so the pipeline
/// drains to a latency well inside the budget before taking more (and the verdict does not flap).
pub fn decide(previous: &Verdict, backlogs: &[Backlog], max_backlog: i64) -> Verdict {
    let worst = backlogs.iter().max_by_key(|b| b.messages);
    let Some(worst) = worst else {
        return Verdict::Open;
    };
    let bound = match previous {
        Verdict::Open => max_backlog,
        Verdict::Overloaded { .. } => max_backlog / 2,
    };
    if worst.messages > bound {
        Verdict::Overloaded {
            reason: format!(
                "{} is {} messages behind (bound {max_backlog})",
                worst.what, worst.messages
            ),
        }
    } else {
        Verdict::Open
    }
}

/// Reads every stage's backlog.
pub trait BacklogProbe: Send + Sync + 'static {
    fn read(&self) -> impl std::future::Future<Output = Vec<Backlog>> + Send;
}

/// The verdict as last decided, shared with the request handlers.
#[derive(Clone)]
pub struct Admission {
    verdict: watch::Receiver<Verdict>,
    pub retry_after_seconds: u64,
}

impl Admission {
    /// Always open: for tests and for a disabled bound.
    pub fn open() -> Self {
        let (_, verdict) = watch::channel(Verdict::Open);
        Self {
            verdict,
            retry_after_seconds: 1,
        }
    }

    /// `Err(reason)` while submissions are refused.
    pub fn check(&self) -> Result<(), String> {
        match &*self.verdict.borrow() {
            Verdict::Open => Ok(()),
            Verdict::Overloaded { reason } => Err(reason.clone()),
        }
    }

    /// Starts the monitor: reads `probe` every `check_interval_ms` until `shutdown`.
    pub fn start(
        probe: impl BacklogProbe,
        config: &AdmissionConfig,
        shutdown: CancellationToken,
    ) -> Self {
        let (decided, verdict) = watch::channel(Verdict::Open);
        let every = Duration::from_millis(config.check_interval_ms.max(10));
        let max_backlog = config.max_backlog;
        tokio::spawn(async move {
            loop {
                let backlogs = probe.read().await;
                for backlog in &backlogs {
                    metrics::gauge!("keel_ingress_backlog", "stage" => backlog.what.clone())
                        .set(backlog.messages as f64);
                }
                let next = decide(&decided.borrow(), &backlogs, max_backlog);
                if next != *decided.borrow() {
                    match &next {
                        Verdict::Open => tracing::info!("admission open again"),
                        Verdict::Overloaded { reason } => {
                            tracing::warn!(reason, "overloaded: refusing submissions with 429")
                        }
                    }
                    metrics::gauge!("keel_ingress_admission_open")
                        .set(f64::from(u8::from(next == Verdict::Open)));
                    decided.send_replace(next);
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(every) => {}
                }
            }
        });
        Self {
            verdict,
            retry_after_seconds: config.retry_after_seconds,
        }
    }
}

/// The stages' backlogs from the safe-stores and the brokers: each relay's unpublished rows, and
/// each consumer's lag (the topic's high watermark minus the offset the consumer stored with its
/// effects, in the Kafka of the region where its application processes).
pub struct PipelineProbe {
    /// Each application's database in this region (a standby's copy serves for reading).
    pub databases: BTreeMap<App, PgPool>,
    pub regional: Regional,
    pub clusters: BTreeMap<String, KafkaOptions>,
    pub watermarks: Arc<std::sync::Mutex<BTreeMap<String, Watermarks>>>,
}

impl PipelineProbe {
    pub fn new(
        databases: BTreeMap<App, PgPool>,
        regional: Regional,
        clusters: BTreeMap<String, KafkaOptions>,
    ) -> Self {
        Self {
            databases,
            regional,
            clusters,
            watermarks: Arc::default(),
        }
    }

    async fn outboxes(&self, backlogs: &mut Vec<Backlog>) {
        for hop in keel_reconcile::hops() {
            let Some(pool) = self.databases.get(&hop.upstream.app) else {
                continue;
            };
            let read = tokio::time::timeout(
                Duration::from_secs(1),
                keel_safestore::hop::unpublished(pool, hop.upstream.schema, hop.topic),
            )
            .await;
            if let Ok(Ok(messages)) = read {
                backlogs.push(Backlog {
                    what: format!("{}'s outbox of {}", hop.upstream.schema, hop.topic),
                    messages,
                });
            }
        }
    }

    async fn consumers(&self, backlogs: &mut Vec<Backlog>) {
        for hop in keel_reconcile::hops() {
            let Some(pool) = self.databases.get(&hop.downstream.app) else {
                continue;
            };
            let Some(region) = self
                .regional
                .active_region(hop.downstream.app, Gate::Processing)
            else {
                continue;
            };
            let Some(kafka) = self.clusters.get(&region) else {
                continue;
            };
            let offsets = tokio::time::timeout(
                Duration::from_secs(1),
                keel_safestore::hop::consumer_offsets(
                    pool,
                    hop.downstream.schema,
                    &region,
                    hop.topic,
                ),
            )
            .await;
            let Ok(Ok(offsets)) = offsets else {
                continue;
            };
            let watermarks = self.watermarks.clone();
            let (kafka, topic) = (kafka.clone(), hop.topic);
            let high = tokio::task::spawn_blocking(move || {
                let mut clients = watermarks.lock().expect("watermark clients");
                let client = match clients.get(&kafka.brokers) {
                    Some(client) => client,
                    None => {
                        let client = Watermarks::new(&kafka).ok()?;
                        clients.entry(kafka.brokers.clone()).or_insert(client)
                    }
                };
                client.high(topic, Duration::from_millis(500)).ok()
            })
            .await
            .ok()
            .flatten();
            let Some(high) = high else {
                continue;
            };
            let lag: i64 = high
                .iter()
                .map(|(partition, high)| {
                    (high - offsets.get(partition).copied().unwrap_or(0)).max(0)
                })
                .sum();
            backlogs.push(Backlog {
                what: format!("{}'s consumer of {}", hop.downstream.schema, hop.topic),
                messages: lag,
            });
        }
    }
}

impl BacklogProbe for PipelineProbe {
    async fn read(&self) -> Vec<Backlog> {
        let mut backlogs = Vec::new();
        self.outboxes(&mut backlogs).await;
        self.consumers(&mut backlogs).await;
        backlogs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn behind(what: &str, messages: i64) -> Backlog {
        Backlog {
            what: what.to_owned(),
            messages,
        }
    }

    #[test]
    fn refuses_above_the_bound_naming_the_stage_furthest_behind() {
        let backlogs = [behind("matching", 120), behind("settlement", 90)];
        assert_eq!(decide(&Verdict::Open, &backlogs, 200), Verdict::Open);
        let backlogs = [behind("matching", 120), behind("settlement", 250)];
        let Verdict::Overloaded { reason } = decide(&Verdict::Open, &backlogs, 200) else {
            panic!("over the bound must refuse");
        };
        assert!(
            reason.contains("settlement is 250 messages behind"),
            "{reason}"
        );
    }

    #[test]
    fn once_refusing_opens_only_under_half_the_bound() {
        let refusing = Verdict::Overloaded {
            reason: String::new(),
        };
        assert_ne!(
            decide(&refusing, &[behind("matching", 150)], 200),
            Verdict::Open
        );
        assert_eq!(
            decide(&refusing, &[behind("matching", 100)], 200),
            Verdict::Open
        );
        assert_eq!(decide(&refusing, &[], 200), Verdict::Open);
    }

    struct Fixed(Vec<Backlog>);

    impl BacklogProbe for Fixed {
        async fn read(&self) -> Vec<Backlog> {
            self.0.clone()
        }
    }

    #[tokio::test]
    async fn the_monitor_publishes_its_verdict_to_the_handlers() {
        let shutdown = CancellationToken::new();
        let config = AdmissionConfig {
            max_backlog: 10,
            check_interval_ms: 10,
            retry_after_seconds: 2,
        };
        let admission = Admission::start(
            Fixed(vec![behind("ingestion", 11)]),
            &config,
            shutdown.clone(),
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while admission.check().is_ok() {
            assert!(tokio::time::Instant::now() < deadline, "never refused");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(admission.check().unwrap_err().contains("ingestion"));
        assert_eq!(admission.retry_after_seconds, 2);
        assert!(Admission::open().check().is_ok());
        shutdown.cancel();
    }
}
